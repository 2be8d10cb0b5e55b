/* podman's registries.conf (containers-registries.conf(5)), read for what a pull needs from
 * it: which registries are insecure (unverified TLS, or plain HTTP when TLS fails) and which
 * are blocked. The files are TOML; this reads the whole grammar's shape (tables, arrays of
 * tables, dotted and quoted keys, every kind of string, arrays and inline tables over lines)
 * and keeps only [[registry]] location/prefix/insecure/blocked and the version 1 tables
 * [registries.insecure] and [registries.block]. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "registry-internal.h"
#include "util/util.h"

#define CONF_MAX (1u << 20)

struct rule {
        char *prefix;
        unsigned flags;
};
struct rules {
        struct rule *v;
        size_t n;
};

struct parser {
        const char *p, *name;
        unsigned line;
        struct hutch_error *err;
};

enum vtype { V_OTHER, V_STRING, V_BOOL, V_STRINGS };
struct value {
        enum vtype type;
        char *s;
        bool b;
        char **strv;
};

static void value_free(struct value *v)
{
        free(v->s);
        strv_free(v->strv);
        *v = (struct value){0};
}

static int fail(struct parser *ps, const char *what)
{
        return hutch_err(ps->err, -EINVAL, "%s:%u: %s", ps->name, ps->line, what);
}

/* spaces and tabs; with newlines: newlines and comments too */
static void skip(struct parser *ps, bool newlines)
{
        for (;;) {
                if (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\r')
                        ps->p++;
                else if (*ps->p == '#')
                        ps->p += strcspn(ps->p, "\n");
                else if (newlines && *ps->p == '\n') {
                        ps->p++;
                        ps->line++;
                } else
                        return;
        }
}

static bool is_bare(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

/* A string at ps->p (opening quote included); *ret its text (escapes other than \" and \\
 * kept as written: no key or value read here needs them). */
static int string_parse(struct parser *ps, char **ret)
{
        char q = *ps->p;
        bool multi = ps->p[1] == q && ps->p[2] == q;
        ps->p += multi ? 3 : 1;
        if (multi && *ps->p == '\n') {
                ps->p++;
                ps->line++;
        }
        char *b = malloc(strlen(ps->p) + 1);
        size_t n = 0;
        if (!b)
                return hutch_err(ps->err, -ENOMEM, "out of memory");
        for (;;) {
                char c = *ps->p;
                if (!c || (c == '\n' && !multi)) {
                        free(b);
                        return fail(ps, "unterminated string");
                }
                if (c == q && (!multi || (ps->p[1] == q && ps->p[2] == q))) {
                        ps->p += multi ? 3 : 1;
                        while (multi && *ps->p == q) /* up to two quotes may end the content */
                                b[n++] = *ps->p++;
                        break;
                }
                if (c == '\n')
                        ps->line++;
                if (c == '\\' && q == '"' && (ps->p[1] == '"' || ps->p[1] == '\\')) {
                        b[n++] = ps->p[1];
                        ps->p += 2;
                        continue;
                }
                if (c == '\\' && q == '"' && ps->p[1]) { /* kept as written, the next char with it */
                        if (ps->p[1] == '\n')
                                ps->line++;
                        b[n++] = *ps->p++;
                }
                b[n++] = *ps->p++;
        }
        b[n] = 0;
        *ret = b;
        return 0;
}

/* A dotted key (bare or quoted parts), joined with "." */
static int key_parse(struct parser *ps, char **ret)
{
        char *k = NULL;
        for (;;) {
                skip(ps, false);
                char *part = NULL;
                if (*ps->p == '"' || *ps->p == '\'') {
                        int r = string_parse(ps, &part);
                        if (r < 0) {
                                free(k);
                                return r;
                        }
                } else {
                        size_t n = 0;
                        while (is_bare(ps->p[n]))
                                n++;
                        if (!n) {
                                free(k);
                                return fail(ps, "expected a key");
                        }
                        part = strndup(ps->p, n);
                        ps->p += n;
                }
                char *j = part ? strjoin(k ? k : "", k ? "." : "", part) : NULL;
                free(part);
                free(k);
                if (!j)
                        return hutch_err(ps->err, -ENOMEM, "out of memory");
                k = j;
                skip(ps, false);
                if (*ps->p != '.') {
                        *ret = k;
                        return 0;
                }
                ps->p++;
        }
}

static int value_parse(struct parser *ps, struct value *ret, unsigned depth);

/* [ values ] or { key = value, ... }; an array of strings is kept (v1's registries lists) */
static int compound_parse(struct parser *ps, struct value *ret, unsigned depth)
{
        bool table = *ps->p == '{';
        char close = table ? '}' : ']';
        ps->p++;
        *ret = (struct value){.type = table ? V_OTHER : V_STRINGS};
        for (;;) {
                skip(ps, !table);
                if (*ps->p == close) {
                        ps->p++;
                        return 0;
                }
                if (table) {
                        char *k = NULL;
                        int r = key_parse(ps, &k);
                        free(k);
                        if (r < 0)
                                return r;
                        skip(ps, false);
                        if (*ps->p++ != '=')
                                return fail(ps, "expected '=' in an inline table");
                        skip(ps, false);
                }
                struct value v;
                int r = value_parse(ps, &v, depth + 1);
                if (r < 0)
                        return r;
                if (ret->type == V_STRINGS && v.type == V_STRING) {
                        if (strv_push(&ret->strv, steal_pointer(&v.s)) < 0) {
                                value_free(&v);
                                return hutch_err(ps->err, -ENOMEM, "out of memory");
                        }
                } else
                        ret->type = V_OTHER;
                value_free(&v);
                skip(ps, !table);
                if (*ps->p == ',')
                        ps->p++;
                else if (*ps->p != close)
                        return fail(ps, table ? "expected ',' or '}'" : "expected ',' or ']'");
        }
}

static int value_parse(struct parser *ps, struct value *ret, unsigned depth)
{
        *ret = (struct value){0};
        if (depth > 32)
                return fail(ps, "values nested too deep");
        if (*ps->p == '"' || *ps->p == '\'') {
                ret->type = V_STRING;
                return string_parse(ps, &ret->s);
        }
        if (*ps->p == '[' || *ps->p == '{') {
                int r = compound_parse(ps, ret, depth);
                if (r < 0)
                        value_free(ret);
                return r;
        }
        /* numbers, dates ("1979-05-27 07:32:00" has a space), booleans: up to a delimiter */
        size_t n = strcspn(ps->p, ",]}#\n");
        while (n && (ps->p[n - 1] == ' ' || ps->p[n - 1] == '\t' || ps->p[n - 1] == '\r'))
                n--;
        if (!n)
                return fail(ps, "expected a value");
        if ((n == 4 && !strncmp(ps->p, "true", 4)) || (n == 5 && !strncmp(ps->p, "false", 5))) {
                ret->type = V_BOOL;
                ret->b = n == 4;
        }
        ps->p += n;
        return 0;
}

static int rule_add(struct rules *rs, const char *prefix, unsigned flags, struct hutch_error *err)
{
        for (size_t i = 0; i < rs->n; i++)
                if (!strcmp(rs->v[i].prefix, prefix)) { /* a later file's entry replaces it */
                        rs->v[i].flags = flags;
                        return 0;
                }
        struct rule *v = realloc(rs->v, (rs->n + 1) * sizeof *v);
        if (!v)
                return hutch_err(err, -ENOMEM, "out of memory");
        rs->v = v;
        if (!(v[rs->n].prefix = strdup(prefix)))
                return hutch_err(err, -ENOMEM, "out of memory");
        v[rs->n++].flags = flags;
        return 0;
}

static void rules_free(struct rules *rs)
{
        for (size_t i = 0; i < rs->n; i++)
                free(rs->v[i].prefix);
        free(rs->v);
        *rs = (struct rules){0};
}

/* The [[registry]] being read: its keys, made a rule when the next table starts */
struct entry {
        bool open;
        char *location, *prefix;
        unsigned flags;
};

static int entry_close(struct entry *e, struct rules *rs, struct hutch_error *err)
{
        int r = 0;
        const char *p = e->prefix && *e->prefix ? e->prefix : e->location;
        if (e->open && p && *p)
                r = rule_add(rs, p, e->flags, err);
        free(e->location);
        free(e->prefix);
        *e = (struct entry){0};
        return r;
}

enum table { TABLE_ROOT, TABLE_REGISTRY, TABLE_V1_INSECURE, TABLE_V1_BLOCK, TABLE_OTHER };

/* key = value in table t */
static int keep(enum table t, const char *key, struct value *v, struct entry *e, struct rules *rs,
                struct hutch_error *err)
{
        unsigned bit = 0;
        if (t == TABLE_ROOT && !strcmp(key, "registries.insecure.registries"))
                t = TABLE_V1_INSECURE, key = "registries";
        else if (t == TABLE_ROOT && !strcmp(key, "registries.block.registries"))
                t = TABLE_V1_BLOCK, key = "registries";
        if ((t == TABLE_V1_INSECURE || t == TABLE_V1_BLOCK) && !strcmp(key, "registries") && v->type == V_STRINGS) {
                for (size_t i = 0; v->strv && v->strv[i]; i++) {
                        int r = rule_add(rs, v->strv[i], t == TABLE_V1_INSECURE ? REGISTRY_INSECURE : REGISTRY_BLOCKED,
                                         err);
                        if (r < 0)
                                return r;
                }
                return 0;
        }
        if (t != TABLE_REGISTRY)
                return 0;
        if (!strcmp(key, "location") && v->type == V_STRING) {
                free(e->location);
                e->location = steal_pointer(&v->s);
        } else if (!strcmp(key, "prefix") && v->type == V_STRING) {
                free(e->prefix);
                e->prefix = steal_pointer(&v->s);
        } else if (!strcmp(key, "insecure") && v->type == V_BOOL)
                bit = REGISTRY_INSECURE;
        else if (!strcmp(key, "blocked") && v->type == V_BOOL)
                bit = REGISTRY_BLOCKED;
        if (bit)
                e->flags = v->b ? e->flags | bit : e->flags & ~bit;
        return 0;
}

/* A table header at ps->p ('[' or '[['): which table follows */
static int header_parse(struct parser *ps, enum table *ret)
{
        bool array = ps->p[1] == '[';
        ps->p += array ? 2 : 1;
        char *k = NULL;
        int r = key_parse(ps, &k);
        if (r < 0)
                return r;
        skip(ps, false);
        if (*ps->p != ']' || (array && ps->p[1] != ']')) {
                free(k);
                return fail(ps, array ? "expected ']]'" : "expected ']'");
        }
        ps->p += array ? 2 : 1;
        if (array && !strcmp(k, "registry"))
                *ret = TABLE_REGISTRY;
        else if (!array && !strcmp(k, "registries.insecure"))
                *ret = TABLE_V1_INSECURE;
        else if (!array && !strcmp(k, "registries.block"))
                *ret = TABLE_V1_BLOCK;
        else
                *ret = TABLE_OTHER;
        free(k);
        return 0;
}

static int conf_parse(const char *text, const char *name, struct rules *rs, struct hutch_error *err)
{
        struct parser ps = {.p = text, .name = name, .line = 1, .err = err};
        struct entry e = {0};
        enum table t = TABLE_ROOT;
        int r = 0;
        for (;;) {
                skip(&ps, true);
                if (!*ps.p)
                        break;
                if (*ps.p == '[') {
                        if ((r = entry_close(&e, rs, err)) < 0 || (r = header_parse(&ps, &t)) < 0)
                                break;
                        e.open = t == TABLE_REGISTRY;
                } else {
                        _cleanup_free_ char *key = NULL;
                        struct value v;
                        if ((r = key_parse(&ps, &key)) < 0)
                                break;
                        skip(&ps, false);
                        if (*ps.p++ != '=') {
                                ps.p--;
                                r = fail(&ps, "expected '=' after a key");
                                break;
                        }
                        skip(&ps, false);
                        if ((r = value_parse(&ps, &v, 0)) < 0)
                                break;
                        r = keep(t, key, &v, &e, rs, err);
                        value_free(&v);
                        if (r < 0)
                                break;
                }
                skip(&ps, false);
                if (*ps.p && *ps.p != '\n') {
                        r = fail(&ps, "expected the end of the line");
                        break;
                }
        }
        if (r >= 0)
                return entry_close(&e, rs, err);
        free(e.location);
        free(e.prefix);
        return r;
}

static int conf_file_read(int dirfd, const char *path, const char *shown, struct rules *rs, struct hutch_error *err)
{
        _cleanup_free_ char *text = NULL;
        size_t len;
        int r = read_regular_at(dirfd, path, CONF_MAX, &text, &len);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return hutch_err_sys(err, r, "cannot read '%s'", shown);
        if (strlen(text) != len)
                return hutch_err(err, -EINVAL, "'%s' holds a NUL byte", shown);
        return conf_parse(text, shown, rs, err);
}

static int cmp_name(const void *a, const void *b)
{
        return strcmp(*(char *const *) a, *(char *const *) b);
}

/* A file, or a folder's *.conf files in name order (the drop-ins); missing: nothing */
static int conf_path_read(const char *path, struct rules *rs, struct hutch_error *err)
{
        struct stat st;
        if (stat(path, &st) < 0)
                return errno == ENOENT || errno == ENOTDIR ? 0 : hutch_err_sys(err, -errno, "cannot read '%s'", path);
        if (!S_ISDIR(st.st_mode))
                return conf_file_read(AT_FDCWD, path, path, rs, err);
        int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
        if (!d) {
                if (fd >= 0)
                        close(fd);
                return hutch_err_sys(err, -errno, "cannot read '%s'", path);
        }
        _cleanup_strv_ char **names = NULL;
        int r = 0;
        for (struct dirent *de; r >= 0 && (de = readdir(d));)
                if (de->d_name[0] != '.' && endswith(de->d_name, ".conf") && strv_extend(&names, de->d_name) < 0)
                        r = hutch_err(err, -ENOMEM, "out of memory");
        if (names)
                qsort(names, strv_length(names), sizeof *names, cmp_name);
        for (size_t i = 0; r >= 0 && names && names[i]; i++) {
                _cleanup_free_ char *shown = strjoin(path, "/", names[i]);
                r = shown ? conf_file_read(dirfd(d), names[i], shown, rs, err)
                          : hutch_err(err, -ENOMEM, "out of memory");
        }
        closedir(d);
        return r;
}

/* As containers/image matches a prefix: the whole reference, or up to a '/', ':' or '@';
 * "*.example.com" matches the hosts beneath example.com at any port (as containers/image),
 * "*.example.com:5000" at that port only. The length matched, or 0. */
static size_t prefix_match(const char *prefix, const char *ref)
{
        size_t n = strlen(prefix);
        if (startswith(prefix, "*.")) {
                size_t hl = strcspn(ref, strchr(prefix, ':') ? "/" : "/:"); /* host[:port], or host */
                size_t sl = n - 1;                                          /* ".example.com[:port]" */
                return hl > sl && !strncmp(ref + hl - sl, prefix + 1, sl) ? n : 0;
        }
        if (strncmp(ref, prefix, n) != 0 || (ref[n] && !strchr("/:@", ref[n])))
                return 0;
        return n;
}

int registries_conf_lookup(const char *const *paths, const char *host, const char *repo, unsigned *ret_flags,
                           struct hutch_error *err)
{
        struct rules rs = {0};
        int r = 0;
        for (size_t i = 0; paths && paths[i] && r >= 0; i++)
                r = conf_path_read(paths[i], &rs, err);
        if (r < 0) {
                rules_free(&rs);
                return r;
        }
        /* containers/image names Docker Hub docker.io */
        _cleanup_free_ char *ref =
                strjoin(!strcmp(host, DOCKER_HUB_HOST) ? "docker.io" : host, repo && *repo ? "/" : "", repo);
        if (!ref) {
                rules_free(&rs);
                return hutch_err(err, -ENOMEM, "out of memory");
        }
        size_t best = 0;
        unsigned flags = 0;
        for (size_t i = 0; i < rs.n; i++) {
                size_t m = prefix_match(rs.v[i].prefix, ref);
                if (m > best) {
                        best = m;
                        flags = rs.v[i].flags;
                }
        }
        rules_free(&rs);
        *ret_flags = flags;
        return 0;
}

int registries_conf_paths(const char *env, const char *home, char *ret[REGISTRIES_CONF_PATHS], struct hutch_error *err)
{
        char *v[REGISTRIES_CONF_PATHS] = {NULL};
        _cleanup_free_ char *user = home ? strjoin(home, "/.config/containers/registries.conf", NULL) : NULL;
        size_t n = 0;
        struct stat st;
        bool ok = !home || user;
        if (env && *env)
                ok = ok && (v[n++] = strjoin(env, NULL, NULL));
        else if (user && stat(user, &st) == 0) {
                v[n++] = steal_pointer(&user);
                ok = ok && (v[n++] = strjoin(v[0], ".d", NULL));
        } else
                ok = ok && (v[n++] = strjoin("/etc/containers/registries.conf", NULL, NULL));
        if (ok && n == 1) {
                ok = (v[n++] = strjoin("/etc/containers/registries.conf.d", NULL, NULL));
                if (ok && home)
                        ok = (v[n++] = strjoin(home, "/.config/containers/registries.conf.d", NULL));
        }
        if (!ok) { /* fail closed: a file left out could be the one blocking a registry */
                for (size_t i = 0; i < n; i++)
                        free(v[i]);
                return hutch_err(err, -ENOMEM, "out of memory listing the registries.conf files");
        }
        memcpy(ret, v, sizeof v);
        return 0;
}
