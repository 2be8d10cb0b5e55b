/* Apptainer's cgroups TOML (the OCI LinuxResources layout). Just the TOML this needs:
 * [table], [[array.table]], key = integer | "string" | true/false, # comments. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cgroups.h"
#include "util/util.h"

struct toml_state {
        struct cgroup_limits *l;
        const char *name;
        unsigned line;
        char table[64];
        bool array;
        /* the [[blockIO.*Device]] entry being read */
        long long major, minor, value;
        int dev_kind;
        struct hutch_error *err;
};

static const struct {
        const char *table;
        enum cgroup_dev_kind kind;
        const char *value_key;
} dev_tables[] = {
        {"blockIO.weightDevice", CG_DEV_WEIGHT, "weight"},
        {"blockIO.throttleReadBpsDevice", CG_DEV_RBPS, "rate"},
        {"blockIO.throttleWriteBpsDevice", CG_DEV_WBPS, "rate"},
        {"blockIO.throttleReadIOPSDevice", CG_DEV_RIOPS, "rate"},
        {"blockIO.throttleWriteIOPSDevice", CG_DEV_WIOPS, "rate"},
};

static int flush_dev(struct toml_state *s)
{
        if (s->dev_kind < 0)
                return 0;
        if (s->major < 0 || s->minor < 0 || s->value < 0)
                return hutch_err(s->err, -EINVAL, "%s:%u: [[%s]] needs major, minor and %s", s->name, s->line,
                                 dev_tables[s->dev_kind].table, dev_tables[s->dev_kind].value_key);
        struct cgroup_limits *l = s->l;
        struct cgroup_dev_limit *n = realloc(l->devs, (l->n_devs + 1) * sizeof *n);
        if (!n)
                return hutch_err(s->err, -ENOMEM, "out of memory");
        l->devs = n;
        n[l->n_devs++] = (struct cgroup_dev_limit){(unsigned) s->major, (unsigned) s->minor,
                                                   dev_tables[s->dev_kind].kind, (uint64_t) s->value};
        s->dev_kind = -1;
        return 0;
}

static char *trim(char *s)
{
        while (*s == ' ' || *s == '\t')
                s++;
        char *e = s + strlen(s);
        while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
                *--e = 0;
        return s;
}

enum vtype { V_INT, V_STR, V_BOOL };

/* value text -> one of the three kinds; strings lose their quotes in place */
static int parse_value(char *v, enum vtype *type, long long *num, char **str)
{
        if (*v == '"') {
                char *end = strchr(v + 1, '"');
                if (!end || *trim(end + 1))
                        return -EINVAL;
                *end = 0;
                *str = v + 1;
                *type = V_STR;
                return 0;
        }
        if (!strcmp(v, "true") || !strcmp(v, "false")) {
                *num = v[0] == 't';
                *type = V_BOOL;
                return 0;
        }
        char *end;
        errno = 0;
        *num = strtoll(v, &end, 10);
        if (errno || end == v || *end)
                return -EINVAL;
        *type = V_INT;
        return 0;
}

static int bad(struct toml_state *s, const char *key, const char *why)
{
        return hutch_err(s->err, -EINVAL, "%s:%u: %s.%s: %s", s->name, s->line, s->table, key, why);
}

static int set_key(struct toml_state *s, const char *key, enum vtype t, long long n, const char *str)
{
        struct cgroup_limits *l = s->l;
        const char *tb = s->table;
        if (s->dev_kind >= 0) {
                if (t != V_INT || n < 0)
                        return bad(s, key, "wants a number");
                if (!strcmp(key, "major"))
                        s->major = n;
                else if (!strcmp(key, "minor"))
                        s->minor = n;
                else if (!strcmp(key, dev_tables[s->dev_kind].value_key))
                        s->value = n;
                else
                        return bad(s, key, "is not supported");
                return 0;
        }
        if (!strcmp(tb, "memory") && !strcmp(key, "disableOOMKiller")) {
                if (t != V_BOOL)
                        return bad(s, key, "wants true or false");
                l->oom_kill_disable = n;
                return 0;
        }
        if (!strcmp(tb, "cpu") && (!strcmp(key, "cpus") || !strcmp(key, "mems"))) {
                if (t != V_STR)
                        return bad(s, key, "wants a string like \"0-3\"");
                char **dst = key[0] == 'c' ? &l->cpuset_cpus : &l->cpuset_mems;
                free(*dst);
                *dst = strdup(str);
                return *dst ? 0 : -ENOMEM;
        }
        if (t != V_INT)
                return bad(s, key, "wants a number");
        if (!strcmp(tb, "memory") && !strcmp(key, "limit"))
                l->memory = n < 0 ? CG_UNSET : n;
        else if (!strcmp(tb, "memory") && !strcmp(key, "reservation"))
                l->memory_reservation = n < 0 ? CG_UNSET : n;
        else if (!strcmp(tb, "memory") && !strcmp(key, "swap"))
                l->memory_swap = n < 0 ? CG_UNLIMITED : n;
        else if (!strcmp(tb, "cpu") && !strcmp(key, "shares")) {
                if (n < 2 || n > 262144)
                        return bad(s, key, "wants 2 to 262144");
                l->cpu_shares = (uint64_t) n;
        } else if (!strcmp(tb, "cpu") && !strcmp(key, "quota"))
                l->cpu_quota = n < 0 ? CG_UNLIMITED : n;
        else if (!strcmp(tb, "cpu") && !strcmp(key, "period")) {
                if (n < 1000 || n > 1000000)
                        return bad(s, key, "wants 1000 to 1000000 microseconds");
                l->cpu_period = (uint64_t) n;
        } else if (!strcmp(tb, "pids") && !strcmp(key, "limit"))
                l->pids = n <= 0 ? CG_UNLIMITED : n;
        else if (!strcmp(tb, "blockIO") && !strcmp(key, "weight")) {
                if (n < 10 || n > 1000)
                        return bad(s, key, "wants 10 to 1000");
                l->blkio_weight = (unsigned) n;
        } else
                return bad(s, key, "is not supported by hutch");
        return 0;
}

static int header(struct toml_state *s, char *line)
{
        int r = flush_dev(s);
        if (r < 0)
                return r;
        bool array = line[1] == '[';
        char *name = line + (array ? 2 : 1);
        char *end = strstr(name, array ? "]]" : "]");
        if (!end || *trim(end + (array ? 2 : 1)))
                return hutch_err(s->err, -EINVAL, "%s:%u: malformed table header", s->name, s->line);
        *end = 0;
        name = trim(name);
        snprintf(s->table, sizeof s->table, "%s", name);
        s->array = array;
        s->dev_kind = -1;
        if (array) {
                for (size_t i = 0; i < ELEMENTSOF(dev_tables); i++)
                        if (!strcmp(name, dev_tables[i].table)) {
                                s->dev_kind = (int) i;
                                s->major = s->minor = s->value = -1;
                                return 0;
                        }
                return hutch_err(s->err, -EINVAL, "%s:%u: [[%s]] is not supported by hutch", s->name, s->line, name);
        }
        static const char *const tables[] = {"blockIO", "cpu", "memory", "pids"};
        for (size_t i = 0; i < ELEMENTSOF(tables); i++)
                if (!strcmp(name, tables[i]))
                        return 0;
        return hutch_err(s->err, -EINVAL, "%s:%u: [%s] is not supported by hutch", s->name, s->line, name);
}

int cgroup_toml_parse(const char *text, const char *name, struct cgroup_limits *l, struct hutch_error *err)
{
        struct toml_state s = {.l = l, .name = name, .dev_kind = -1, .err = err};
        int r = 0;
        while (text && *text && r >= 0) {
                size_t n = strcspn(text, "\n");
                _cleanup_free_ char *raw = strndup(text, n);
                text += n + (text[n] == '\n');
                s.line++;
                if (!raw)
                        return hutch_err(err, -ENOMEM, "out of memory");
                /* a '#' outside quotes starts a comment */
                bool q = false;
                for (char *p = raw; *p; p++) {
                        if (*p == '"')
                                q = !q;
                        else if (*p == '#' && !q) {
                                *p = 0;
                                break;
                        }
                }
                char *line = trim(raw);
                if (!*line)
                        continue;
                if (*line == '[') {
                        r = header(&s, line);
                        continue;
                }
                char *eq = strchr(line, '=');
                if (!eq || !s.table[0]) {
                        r = hutch_err(err, -EINVAL, "%s:%u: expected 'key = value' in a [table]", name, s.line);
                        continue;
                }
                *eq = 0;
                char *key = trim(line), *val = trim(eq + 1), *str = NULL;
                enum vtype t;
                long long num = 0;
                if (parse_value(val, &t, &num, &str) < 0) {
                        r = bad(&s, key, "has a value hutch cannot read");
                        continue;
                }
                r = set_key(&s, key, t, num, str);
        }
        return r < 0 ? r : flush_dev(&s);
}
