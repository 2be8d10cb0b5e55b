/* Pure parsers for user-written specs: bind and --mount specs, env files, --no-mount. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "util/log.h"
#include "util/util.h"

void bind_spec_free_array(struct bind_spec *b, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                free(b[i].src);
                free(b[i].dst);
        }
        free(b);
}

static int bind_append(struct bind_spec **v, size_t *n, const char *src, size_t srclen, const char *dst, size_t dstlen,
                       bool ro, struct hutch_error *err)
{
        if (srclen == 0)
                return hutch_err(err, -EINVAL, "bind spec has an empty source");
        if (dstlen > 0 && dst[0] != '/')
                return hutch_err(err, -EINVAL, "bind destination '%.*s' must be an absolute path", (int) dstlen, dst);
        struct bind_spec *nv = realloc(*v, (*n + 1) * sizeof **v);
        if (!nv)
                return hutch_err(err, -ENOMEM, "out of memory");
        *v = nv;
        struct bind_spec *b = &nv[*n];
        b->src = strndup(src, srclen);
        b->dst = dstlen ? strndup(dst, dstlen) : strndup(src, srclen);
        b->ro = ro;
        if (!b->src || !b->dst) {
                free(b->src);
                free(b->dst);
                return hutch_err(err, -ENOMEM, "out of memory");
        }
        if (b->dst[0] != '/') {
                /* no destination given: the (relative) source names the destination too */
                int r = hutch_err(err, -EINVAL, "bind '%s' needs an absolute destination", b->src);
                free(b->src);
                free(b->dst);
                return r;
        }
        (*n)++;
        return 0;
}

static int one_bind(const char *s, size_t len, struct bind_spec **v, size_t *n, struct hutch_error *err)
{
        const char *f[3] = {s, NULL, NULL};
        size_t fl[3] = {len, 0, 0};
        int nf = 1;

        for (size_t i = 0; i < len; i++)
                if (s[i] == ':') {
                        if (nf == 3)
                                return hutch_err(err, -EINVAL, "bind spec '%.*s' has too many ':' fields", (int) len,
                                                 s);
                        fl[nf - 1] = &s[i] - f[nf - 1];
                        f[nf] = &s[i + 1];
                        fl[nf] = len - (i + 1);
                        nf++;
                }
        bool ro = false;
        if (nf == 3) {
                if (fl[2] == 2 && !strncmp(f[2], "ro", 2))
                        ro = true;
                else if (!(fl[2] == 2 && !strncmp(f[2], "rw", 2)))
                        return hutch_err(err, -EINVAL, "bind option '%.*s' is not ro or rw", (int) fl[2], f[2]);
        }
        if (nf >= 2 && fl[1] == 0)
                return hutch_err(err, -EINVAL, "bind spec '%.*s' has an empty destination", (int) len, s);
        return bind_append(v, n, f[0], fl[0], nf >= 2 ? f[1] : NULL, nf >= 2 ? fl[1] : 0, ro, err);
}

int bind_spec_parse(const char *s, struct bind_spec **v, size_t *n, struct hutch_error *err)
{
        while (*s) { /* an empty spec (-B "", "a:b,,c:d") binds nothing, as Apptainer's */
                size_t len = strcspn(s, ",");
                /* each spec trimmed of blanks ("a:/a, b:/b"), as Apptainer's TrimSpace */
                while (len > 0 && isspace((unsigned char) *s)) {
                        s++;
                        len--;
                }
                size_t keep = len;
                while (keep > 0 && isspace((unsigned char) s[keep - 1]))
                        keep--;
                const char *next = s + len;
                len = keep;
                /* "a:b:ro,rw" style options after a comma belong to the previous spec; an ro
                 * among them wins, as in Apptainer */
                if (len == 2 && (!strncmp(s, "ro", 2) || !strncmp(s, "rw", 2)) && *n > 0)
                        (*v)[*n - 1].ro |= s[1] == 'o';
                else if (len > 0) {
                        int r = one_bind(s, len, v, n, err);
                        if (r < 0)
                                return r;
                }
                s = next;
                if (*s == ',')
                        s++;
        }
        return 0;
}

int mount_spec_parse(const char *s, struct bind_spec **v, size_t *n, struct hutch_error *err)
{
        _cleanup_strv_ char **kv = NULL;
        const char *src = NULL, *dst = NULL;
        bool ro = false, is_bind = false;

        if (strsplit(s, ",", &kv) < 0)
                return hutch_err(err, -ENOMEM, "out of memory");
        for (char **p = kv; *p; p++) {
                char *eq = strchr(*p, '=');
                const char *val = eq ? eq + 1 : "";
                size_t kl = eq ? (size_t) (eq - *p) : strlen(*p);
#define KEY(k) (kl == strlen(k) && !strncmp(*p, k, kl))
                if (KEY("type")) {
                        if (strcmp(val, "bind") != 0)
                                return hutch_err(err, -EINVAL, "--mount type '%s' is not supported (only bind)", val);
                        is_bind = true;
                } else if (KEY("source") || KEY("src"))
                        src = val;
                else if (KEY("destination") || KEY("dst") || KEY("target"))
                        dst = val;
                else if (KEY("ro") || KEY("readonly"))
                        ro = !eq || strcmp(val, "false") != 0;
                else if (KEY("rw"))
                        ro = false;
                else if (KEY("bind-propagation"))
                        ;
                else
                        return hutch_err(err, -EINVAL, "--mount: unknown field '%.*s'", (int) kl, *p);
#undef KEY
        }
        if (!is_bind)
                return hutch_err(err, -EINVAL, "--mount '%s' needs type=bind", s);
        if (!src || !dst)
                return hutch_err(err, -EINVAL, "--mount '%s' needs both src= and dst=", s);
        return bind_append(v, n, src, strlen(src), dst, strlen(dst), ro, err);
}

/* $NAME or ${NAME} at *pp (just past the '$'): its value from the variables set above in the
 * file, else from host (Apptainer evaluates an env file with its shell interpreter and the
 * host environment); a '$' before anything else is itself. -ENOTSUP for $(..), ${..:-..}. */
static int expand_var(const char **pp, char *const *file, char *const *host, FILE *out)
{
        const char *p = *pp;
        bool brace = *p == '{';
        if (*p == '(')
                return -ENOTSUP;
        p += brace;
        size_t n = 0;
        while ((p[n] >= 'A' && p[n] <= 'Z') || (p[n] >= 'a' && p[n] <= 'z') || p[n] == '_' ||
               (n > 0 && p[n] >= '0' && p[n] <= '9'))
                n++;
        if (brace && (n == 0 || p[n] != '}'))
                return -ENOTSUP;
        if (n == 0) {
                fputc('$', out);
                return 0;
        }
        _cleanup_free_ char *name = strndup(p, n);
        if (!name)
                return -ENOMEM;
        const char *v = strv_env_get(file, name);
        if (!v)
                v = strv_env_get(host, name);
        fputs(v ? v : "", out);
        *pp = p + n + brace;
        return 0;
}

/* One value: 'literal', "with \" escapes and $VARS", or bare with $VARS (trailing spaces and
 * comments cut). -EBADMSG: malformed; -ENOTSUP: a command substitution or a ${..} form. */
static int unquote_to(const char *v, char *const *file, char *const *host, FILE *out)
{
        if (v[0] == '\'' || v[0] == '"') {
                char q = v[0];
                const char *p = v + 1;
                while (*p && *p != q) {
                        if (q == '"' && *p == '`')
                                return -ENOTSUP;
                        if (q == '"' && *p == '$') {
                                p++;
                                int r = expand_var(&p, file, host, out);
                                if (r < 0)
                                        return r;
                                continue;
                        }
                        if (q == '"' && *p == '\\' && (p[1] == '"' || p[1] == '\\' || p[1] == '$' || p[1] == '`'))
                                p++;
                        fputc(*p++, out);
                }
                if (*p != q)
                        return -EBADMSG;
                p++;
                while (*p == ' ' || *p == '\t')
                        p++;
                return *p && *p != '#' ? -EBADMSG : 0;
        }
        size_t n = strcspn(v, "#");
        while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
                n--;
        for (const char *p = v; p < v + n;) {
                if (*p == '`')
                        return -ENOTSUP;
                if (*p == '$') {
                        p++;
                        int r = expand_var(&p, file, host, out);
                        if (r < 0)
                                return r;
                        continue;
                }
                if (*p == '\\' && p + 1 < v + n)
                        p++;
                fputc(*p++, out);
        }
        return 0;
}

static int unquote(const char *v, char *const *file, char *const *host, char **ret)
{
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        if (!f)
                return -ENOMEM;
        int r = unquote_to(v, file, host, f);
        if (fclose(f) != 0 && r >= 0)
                r = -ENOMEM;
        if (r < 0) {
                free(buf);
                return r;
        }
        *ret = buf;
        return 0;
}

int env_file_parse(const char *text, const char *name, char *const *host, char ***env, struct hutch_error *err)
{
        unsigned line = 0;
        while (*text) {
                size_t n = strcspn(text, "\n");
                _cleanup_free_ char *l = strndup(text, n);
                text += n + (text[n] == '\n');
                line++;
                if (!l)
                        return hutch_err(err, -ENOMEM, "out of memory");
                char *p = l;
                while (*p == ' ' || *p == '\t')
                        p++;
                size_t end = strlen(p);
                while (end > 0 && (p[end - 1] == ' ' || p[end - 1] == '\t' || p[end - 1] == '\r'))
                        p[--end] = 0;
                if (!*p || *p == '#')
                        continue;
                if (startswith(p, "export ")) {
                        p += 7;
                        while (*p == ' ')
                                p++;
                }
                char *eq = strchr(p, '=');
                if (!eq || !is_valid_env_name(p, eq - p))
                        return hutch_err(err, -EINVAL, "%s:%u: not a KEY=VALUE line: '%s'", name, line, l);
                _cleanup_free_ char *val = NULL;
                int r = unquote(eq + 1, *env, host, &val);
                if (r == -ENOTSUP)
                        return hutch_err(
                                err, -EINVAL,
                                "%s:%u: commands and ${...} forms other than ${NAME} are not run in an env file", name,
                                line);
                if (r < 0)
                        return hutch_err(err, r == -ENOMEM ? -ENOMEM : -EINVAL,
                                         "%s:%u: unterminated or malformed quoted value", name, line);
                *eq = 0;
                char *entry = strjoin(p, "=", val);
                if (!entry || strv_env_put(env, entry) < 0)
                        return hutch_err(err, -ENOMEM, "out of memory");
        }
        return 0;
}

/* --no-mount names and the file paths Apptainer also accepts; a handful, read linearly. */
static const struct {
        const char *name;
        unsigned bit;
} no_mount_names[] = {
        {"bind-paths", NO_MOUNT_BIND_PATHS},
        {"cwd", NO_MOUNT_CWD},
        {"dev", NO_MOUNT_DEV},
        {"devpts", NO_MOUNT_DEVPTS},
        {"group", NO_MOUNT_GROUP},
        {"home", NO_MOUNT_HOME},
        {"hostfs", NO_MOUNT_HOSTFS},
        {"hosts", NO_MOUNT_HOSTS},
        {"passwd", NO_MOUNT_PASSWD},
        {"proc", NO_MOUNT_PROC},
        {"resolv.conf", NO_MOUNT_RESOLV},
        {"sys", NO_MOUNT_SYS},
        {"tmp", NO_MOUNT_TMP},
};

static const struct {
        const char *path;
        unsigned bit;
} no_mount_paths[] = {
        {"/etc/group", NO_MOUNT_GROUP},
        {"/etc/hosts", NO_MOUNT_HOSTS},
        {"/etc/passwd", NO_MOUNT_PASSWD},
        {"/etc/resolv.conf", NO_MOUNT_RESOLV},
};

int no_mount_parse(const char *s, unsigned *mask, char ***paths, struct hutch_error *err)
{
        _cleanup_strv_ char **names = NULL;
        if (strsplit(s, ",", &names) < 0)
                return hutch_err(err, -ENOMEM, "out of memory");
        for (char **p = names; *p; p++) {
                bool found = false;
                for (size_t i = 0; i < ELEMENTSOF(no_mount_names) && !found; i++)
                        if (!strcmp(*p, no_mount_names[i].name)) {
                                *mask |= no_mount_names[i].bit;
                                found = true;
                        }
                for (size_t i = 0; i < ELEMENTSOF(no_mount_paths) && !found; i++)
                        if (!strcmp(*p, no_mount_paths[i].path)) {
                                *mask |= no_mount_paths[i].bit;
                                found = true;
                        }
                if (!found && (*p)[0] == '/') {
                        if (strv_extend(paths, *p) < 0)
                                return hutch_err(err, -ENOMEM, "out of memory");
                } else if (!found)
                        log_warning("--no-mount: ignoring unknown mount type '%s' (known: bind-paths, cwd, dev, "
                                    "devpts, home, hostfs, proc, sys, tmp, or a path)",
                                    *p);
        }
        return 0;
}
