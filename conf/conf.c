/* hutch.conf: Apptainer-style "key = value" lines without sections, read with inih. A
 * custom reader counts lines, since Debian's inih is built without INI_HANDLER_LINENO. */
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf.h"
#include "util/log.h"
#include "util/util.h"

/* hutch.conf is a few KiB; this cap only stops a runaway file. */
#define CONF_MAX (1u << 20)

void conf_defaults(struct hutch_conf *c)
{
        *c = (struct hutch_conf){
                .mount_home = true,
                .mount_tmp = true,
                .mount_proc = true,
                .mount_sys = true,
                .mount_devpts = true,
                .mount_hostfs = false,
                .mount_dev = MOUNT_DEV_YES,
                .allow_sif = true,
                .allow_squashfs = true,
                .allow_dir = true,
                .user_bind_control = true,
                .enable_overlay = true,
                .instance_log_max_size = 10 << 20,
                .file_cache_size = 128 << 20,
                .instance_ready_timeout = 1000,
        };
}

void conf_free(struct hutch_conf *c)
{
        strv_free(c->bind_paths);
        c->bind_paths = NULL;
        strv_free(c->limit_defaults);
        strv_free(c->limit_maxima);
        c->limit_defaults = c->limit_maxima = NULL;
        free(c->cgroup_parent);
        c->cgroup_parent = NULL;
        free(c->net_default);
        free(c->net_users_allow);
        free(c->net_bridge);
        free(c->net_subnet);
        c->net_default = c->net_users_allow = c->net_bridge = c->net_subnet = NULL;
}

struct parse_state {
        struct hutch_conf *c;
        const char *name;
        unsigned line;
        const char *text;
};

static int parse_bool(const char *v)
{
        if (!strcasecmp(v, "yes") || !strcasecmp(v, "true") || !strcmp(v, "1"))
                return 1;
        if (!strcasecmp(v, "no") || !strcasecmp(v, "false") || !strcmp(v, "0"))
                return 0;
        return -1;
}

enum key_kind { KEY_BOOL, KEY_DEV, KEY_BIND, KEY_ALLOW, KEY_SIZE, KEY_MS, KEY_CGPARENT, KEY_LIMIT, KEY_STR };

/* Sorted by key, looked up by bsearch. */
static const struct conf_key {
        const char *key;
        enum key_kind kind;
        size_t off;
} keys[] = {
        {"allow container dir", KEY_BOOL, offsetof(struct hutch_conf, allow_dir)},
        {"allow container sif", KEY_BOOL, offsetof(struct hutch_conf, allow_sif)},
        {"allow container squashfs", KEY_BOOL, offsetof(struct hutch_conf, allow_squashfs)},
        {"bind path", KEY_BIND, 0},
        {"cgroup parent", KEY_CGPARENT, 0},
        {"default cpus", KEY_LIMIT, 0},
        {"default memory", KEY_LIMIT, 0},
        {"default pids limit", KEY_LIMIT, 0},
        {"enable overlay", KEY_BOOL, offsetof(struct hutch_conf, enable_overlay)},
        {"file cache size", KEY_SIZE, offsetof(struct hutch_conf, file_cache_size)},
        {"instance log max size", KEY_SIZE, offsetof(struct hutch_conf, instance_log_max_size)},
        {"instance ready timeout", KEY_MS, offsetof(struct hutch_conf, instance_ready_timeout)},
        {"max cpus", KEY_LIMIT, 1},
        {"max memory", KEY_LIMIT, 1},
        {"max pids limit", KEY_LIMIT, 1},
        {"mount dev", KEY_DEV, 0},
        {"mount devpts", KEY_BOOL, offsetof(struct hutch_conf, mount_devpts)},
        {"mount home", KEY_BOOL, offsetof(struct hutch_conf, mount_home)},
        {"mount hostfs", KEY_BOOL, offsetof(struct hutch_conf, mount_hostfs)},
        {"mount proc", KEY_BOOL, offsetof(struct hutch_conf, mount_proc)},
        {"mount sys", KEY_BOOL, offsetof(struct hutch_conf, mount_sys)},
        {"mount tmp", KEY_BOOL, offsetof(struct hutch_conf, mount_tmp)},
        {"network bridge", KEY_STR, offsetof(struct hutch_conf, net_bridge)},
        {"network default", KEY_STR, offsetof(struct hutch_conf, net_default)},
        {"network masquerade", KEY_BOOL, offsetof(struct hutch_conf, net_masquerade)},
        {"network subnet", KEY_STR, offsetof(struct hutch_conf, net_subnet)},
        {"network users allow", KEY_STR, offsetof(struct hutch_conf, net_users_allow)},
        {"user bind control", KEY_BOOL, offsetof(struct hutch_conf, user_bind_control)},
};

static int key_cmp(const void *a, const void *b)
{
        return strcmp(a, ((const struct conf_key *) b)->key);
}

static int handler(void *user, const char *section, const char *name, const char *value)
{
        struct parse_state *st = user;
        struct hutch_conf *c = st->c;
        (void) section;

        const struct conf_key *k = bsearch(name, keys, ELEMENTSOF(keys), sizeof keys[0], key_cmp);
        if (!k) {
                log_warning("%s:%u: unknown key '%s', ignoring", st->name, st->line, name);
                c->n_warnings++;
                return 1;
        }
        switch (k->kind) {
        case KEY_BOOL: {
                int b = parse_bool(value);
                if (b < 0) {
                        log_warning("%s:%u: '%s' wants yes or no, not '%s', ignoring", st->name, st->line, name, value);
                        c->n_warnings++;
                } else
                        *(bool *) ((char *) c + k->off) = b;
                break;
        }
        case KEY_DEV:
                if (!strcasecmp(value, "minimal"))
                        c->mount_dev = MOUNT_DEV_MINIMAL;
                else if (parse_bool(value) >= 0)
                        c->mount_dev = parse_bool(value) ? MOUNT_DEV_YES : MOUNT_DEV_NO;
                else {
                        log_warning("%s:%u: 'mount dev' wants yes, no or minimal, not '%s', ignoring", st->name,
                                    st->line, value);
                        c->n_warnings++;
                }
                break;
        case KEY_BIND:
                if (strv_extend(&c->bind_paths, value) < 0)
                        return 0;
                break;
        case KEY_SIZE:
        case KEY_MS: {
                uint64_t v;
                /* a day: a wait longer than that is a typo, and the supervisor keeps it in 32 bits */
                bool ok =
                        k->kind == KEY_SIZE ? size_parse(value, &v) == 0 : parse_u64_range(value, 0, 86400000, &v) == 0;
                if (!ok) {
                        log_warning("%s:%u: '%s' wants %s, not '%s', ignoring", st->name, st->line, name,
                                    k->kind == KEY_SIZE ? "a size (512K, 10M, 1G)" : "milliseconds", value);
                        c->n_warnings++;
                } else
                        *(uint64_t *) ((char *) c + k->off) = v;
                break;
        }
        case KEY_CGPARENT:
                free(c->cgroup_parent);
                c->cgroup_parent = value[0] == '/' ? strdup(value) : NULL;
                if (value[0] != '/') {
                        log_warning("%s:%u: 'cgroup parent' wants a path like /hutch, ignoring", st->name, st->line);
                        c->n_warnings++;
                }
                break;
        case KEY_LIMIT: {
                /* "max pids limit" -> "pids-limit=VALUE"; checked where the limits are parsed */
                const char *what = strchr(name, ' ') + 1;
                char *e = NULL;
                if (asprintf(&e, "%s=%s", !strcmp(what, "pids limit") ? "pids-limit" : what, value) < 0 ||
                    strv_push(k->off ? &c->limit_maxima : &c->limit_defaults, e) < 0)
                        return 0;
                break;
        }
        case KEY_STR: {
                /* checked where it is used (net_spec_resolve), which names the key */
                char **p = (char **) ((char *) c + k->off), *v = strdup(value);
                if (!v)
                        return 0;
                free(*p);
                *p = v;
                break;
        }
        case KEY_ALLOW: break;
        }
        return 1;
}

static char *reader(char *buf, int size, void *stream)
{
        struct parse_state *st = stream;
        if (!*st->text)
                return NULL;
        size_t n = strcspn(st->text, "\n");
        if (n >= (size_t) size)
                n = size - 1;
        memcpy(buf, st->text, n);
        buf[n] = 0;
        st->text += n + (st->text[n] == '\n');
        st->line++;
        return buf;
}

static int parse(struct parse_state *st, struct hutch_error *err)
{
        int r = ini_parse_stream(reader, st, handler, st);
        if (r < 0)
                return hutch_err(err, -ENOMEM, "cannot parse %s", st->name);
        if (r > 0) {
                /* a syntax error: inih reports its line; warn and keep what was read */
                log_warning("%s:%d: not a 'key = value' line, ignoring", st->name, r);
                st->c->n_warnings++;
        }
        return 0;
}

int conf_parse_string(struct hutch_conf *c, const char *text, const char *name, struct hutch_error *err)
{
        struct parse_state st = {.c = c, .name = name, .text = text};
        return parse(&st, err);
}

int conf_file_read(const char *path, size_t max, const char *what, char **ret, struct hutch_error *err)
{
        char size[32];
        int r = read_regular_at(AT_FDCWD, path, max, ret, NULL);
        switch (r) {
        case 0: return 0;
        case -EISDIR: return hutch_err(err, r, "%s '%s' is a folder, not a file", what, path);
        case -EBADFD: return hutch_err(err, r, "%s '%s' is not a regular file (a FIFO, device or socket)", what, path);
        case -EFBIG:
                size_format(max, size, sizeof size);
                return hutch_err(err, r, "%s '%s' is larger than %s", what, path, size);
        default: return hutch_err_sys(err, r, "cannot read %s '%s'", what, path);
        }
}

/* The whole file is read first (capped, never from a FIFO): a line-by-line read of
 * /dev/zero would never end. */
int conf_load(struct hutch_conf *c, const char *path, struct hutch_error *err)
{
        _cleanup_free_ char *text = NULL;
        int r = conf_file_read(path, CONF_MAX, "configuration", &text, err);
        if (r < 0)
                return r;
        return conf_parse_string(c, text, path, err);
}
