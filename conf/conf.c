/* hutch.conf: Apptainer-style "key = value" lines without sections, read with inih. A
 * custom reader counts lines, since Debian's inih is built without INI_HANDLER_LINENO. */
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

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
                .sessiondir_max_size = 64 << 20, /* Apptainer's default */
                .instance_ready_timeout = 1000,
                .allow_fakeroot = true,
        };
}

void conf_free(struct hutch_conf *c)
{
        strv_free(c->bind_paths);
        c->bind_paths = NULL;
        strv_free(c->trusted_keys);
        c->trusted_keys = NULL;
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
        strv_free(c->limit_container_paths);
        strv_free(c->limit_container_owners);
        strv_free(c->limit_container_paths_user);
        strv_free(c->limit_container_owners_user);
        strv_free(c->limit_maxima_user);
        c->limit_container_paths = c->limit_container_owners = NULL;
        c->limit_container_paths_user = c->limit_container_owners_user = c->limit_maxima_user = NULL;
        free(c->systemd);
        c->systemd = NULL;
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

enum key_kind {
        KEY_BOOL,
        KEY_DEV,
        KEY_BIND,
        KEY_ALLOW,
        KEY_SIZE,
        KEY_MIB,
        KEY_MS,
        KEY_CGPARENT,
        KEY_LIMIT,
        KEY_LIST,
        KEY_COUNT,
        KEY_STR,
        KEY_TRUST
};

/* Sorted by key, looked up by bsearch. */
static const struct conf_key {
        const char *key;
        enum key_kind kind;
        size_t off;
} keys[] = {
        {"allow container dir", KEY_BOOL, offsetof(struct hutch_conf, allow_dir)},
        {"allow container sif", KEY_BOOL, offsetof(struct hutch_conf, allow_sif)},
        {"allow container squashfs", KEY_BOOL, offsetof(struct hutch_conf, allow_squashfs)},
        {"allow fakeroot", KEY_BOOL, offsetof(struct hutch_conf, allow_fakeroot)},
        {"audit batch runs", KEY_BOOL, offsetof(struct hutch_conf, audit_batch)},
        {"bind path", KEY_BIND, 0},
        {"cgroup parent", KEY_CGPARENT, 0},
        {"default cpus", KEY_LIMIT, 0},
        {"default memory", KEY_LIMIT, 0},
        {"default pids limit", KEY_LIMIT, 0},
        {"enable overlay", KEY_BOOL, offsetof(struct hutch_conf, enable_overlay)},
        {"enforce bind paths", KEY_BOOL, offsetof(struct hutch_conf, enforce_bind_paths)},
        {"file cache size", KEY_SIZE, offsetof(struct hutch_conf, file_cache_size)},
        {"instance log max size", KEY_SIZE, offsetof(struct hutch_conf, instance_log_max_size)},
        {"instance ready timeout", KEY_MS, offsetof(struct hutch_conf, instance_ready_timeout)},
        {"limit container owners", KEY_LIST, offsetof(struct hutch_conf, limit_container_owners)},
        {"limit container paths", KEY_LIST, offsetof(struct hutch_conf, limit_container_paths)},
        {"max cpus", KEY_LIMIT, 1},
        {"max instances", KEY_COUNT, offsetof(struct hutch_conf, max_instances)},
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
        {"sessiondir max size", KEY_MIB, offsetof(struct hutch_conf, sessiondir_max_size)},
        {"systemd", KEY_STR, offsetof(struct hutch_conf, systemd)},
        {"trusted key", KEY_TRUST, 0},
        {"user bind control", KEY_BOOL, offsetof(struct hutch_conf, user_bind_control)},
};

static int key_cmp(const void *a, const void *b)
{
        return strcmp(a, ((const struct conf_key *) b)->key);
}

/* Apptainer's 'sessiondir max size': a plain number is MiB; a size with a unit is taken
 * too. 0 (no cap) or at least 1 MiB, the least the staging area's own files need. */
static int mib_parse(const char *value, uint64_t *ret)
{
        uint64_t v;
        int r;
        if (value[0] && !value[strspn(value, "0123456789")]) {
                r = parse_u64_range(value, 0, UINT64_MAX >> 20, &v);
                v <<= 20;
        } else
                r = size_parse(value, &v);
        if (r < 0)
                return r;
        if (v != 0 && v < (1 << 20))
                return -ERANGE;
        *ret = v;
        return 0;
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
        c->set_mask |= UINT64_C(1) << (k - keys);
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
        case KEY_MIB: {
                uint64_t v;
                if (mib_parse(value, &v) < 0) {
                        log_warning("%s:%u: '%s' wants MiB (64) or a size of at least 1M (512M, 2G; 0 = no cap), "
                                    "not '%s', ignoring",
                                    st->name, st->line, name, value);
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
        case KEY_LIST: {
                /* "a, b, c" as in Apptainer's 'limit container paths'; NULL (or empty) lifts it */
                char ***list = (char ***) ((char *) c + k->off);
                _cleanup_strv_ char **v = NULL;
                strv_free(*list);
                *list = NULL;
                if (strsplit(value, ",", &v) < 0)
                        return 0;
                for (char **p = v; *p; p++) {
                        char *w = *p + strspn(*p, " \t");
                        size_t n = strlen(w);
                        while (n > 0 && (w[n - 1] == ' ' || w[n - 1] == '\t'))
                                w[--n] = 0;
                        if (*w && strcmp(w, "NULL") != 0 && strv_extend(list, w) < 0)
                                return 0;
                }
                break;
        }
        case KEY_COUNT: {
                uint64_t v;
                if (parse_u64_range(value, 0, 1000000, &v) < 0) {
                        log_warning("%s:%u: '%s' wants a count (0 = no limit), not '%s', ignoring", st->name, st->line,
                                    name, value);
                        c->n_warnings++;
                } else
                        *(uint64_t *) ((char *) c + k->off) = v;
                break;
        }
        case KEY_TRUST:
                if (strv_extend(&c->trusted_keys, value) < 0)
                        return 0;
                break;
        case KEY_ALLOW: break;
        }
        return 1;
}

/* Where 0 means "no limit" a user's 0 loosens; elsewhere (the cache size) it is the least. */
static bool zero_is_unlimited(const struct conf_key *k)
{
        return k->off == offsetof(struct hutch_conf, instance_log_max_size) ||
               k->off == offsetof(struct hutch_conf, max_instances) ||
               k->off == offsetof(struct hutch_conf, sessiondir_max_size);
}

static void loosen_ignored(struct hutch_conf *sys, const char *name, const char *key)
{
        log_warning("%s: '%s' cannot loosen the system configuration, ignoring", name, key);
        sys->n_warnings++;
}

static void tighten_number(struct hutch_conf *sys, const struct hutch_conf *user, const struct conf_key *k,
                           const char *name)
{
        uint64_t *s = (uint64_t *) ((char *) sys + k->off);
        uint64_t u = *(const uint64_t *) ((const char *) user + k->off);
        if (k->kind == KEY_MS)
                *s = u; /* a wait, not a permission */
        else if (zero_is_unlimited(k) ? u != 0 && (*s == 0 || u <= *s) : u <= *s)
                *s = u;
        else
                loosen_ignored(sys, name, k->key);
}

static void tighten_str(struct hutch_conf *sys, struct hutch_conf *user, const struct conf_key *k, const char *name);

static void tighten_one(struct hutch_conf *sys, struct hutch_conf *user, const struct conf_key *k, const char *name)
{
        switch (k->kind) {
        case KEY_BOOL: {
                /* every yes/no key grants something with yes, but two: enforcing and the
                 * audit of batch runs take away */
                bool *s = (bool *) ((char *) sys + k->off), u = *(bool *) ((char *) user + k->off);
                bool grants = k->off != offsetof(struct hutch_conf, enforce_bind_paths) &&
                              k->off != offsetof(struct hutch_conf, audit_batch);
                if (u != *s && u == grants)
                        loosen_ignored(sys, name, k->key);
                else
                        *s = u;
                break;
        }
        case KEY_DEV:
                if (user->mount_dev > sys->mount_dev)
                        loosen_ignored(sys, name, k->key);
                else
                        sys->mount_dev = user->mount_dev;
                break;
        case KEY_BIND:
                /* the user's own binds, allowed where -B is; under 'enforce bind paths' the
                 * admin's list stays exactly the admin's */
                if (!sys->user_bind_control || sys->enforce_bind_paths) {
                        loosen_ignored(sys, name, k->key);
                        break;
                }
                for (char **b = user->bind_paths; b && *b; b++)
                        if (strv_extend(&sys->bind_paths, *b) < 0)
                                break;
                break;
        case KEY_SIZE:
        case KEY_MIB:
        case KEY_MS:
        case KEY_COUNT: tighten_number(sys, user, k, name); break;
        case KEY_CGPARENT:
                if (sys->cgroup_parent)
                        loosen_ignored(sys, name, k->key);
                else
                        sys->cgroup_parent = steal_pointer(&user->cgroup_parent);
                break;
        case KEY_LIMIT: {
                char ***from = k->off ? &user->limit_maxima : &user->limit_defaults;
                char ***to = k->off ? &sys->limit_maxima_user : &sys->limit_defaults;
                for (char **p = *from; p && *p; p++)
                        if (strv_extend(to, *p) < 0)
                                break;
                strv_free(*from);
                *from = NULL;
                break;
        }
        case KEY_LIST: {
                char ***from = (char ***) ((char *) user + k->off);
                char ***to = k->off == offsetof(struct hutch_conf, limit_container_paths)
                                     ? &sys->limit_container_paths_user
                                     : &sys->limit_container_owners_user;
                strv_free(*to);
                *to = steal_pointer(from);
                break;
        }
        case KEY_STR: tighten_str(sys, user, k, name); break;
        case KEY_TRUST: loosen_ignored(sys, name, k->key); break; /* the site's keys are the admin's */
        case KEY_ALLOW: break;
        }
}

/* Each network of list is one of allowed (comma lists, spaces ignored). */
static bool list_within(const char *list, const char *allowed)
{
        _cleanup_strv_ char **l = NULL, **a = NULL;
        if (strsplit(list, ",", &l) < 0 || strsplit(allowed, ",", &a) < 0)
                return false;
        for (char **p = l; *p; p++) {
                char *w = *p + strspn(*p, " \t");
                size_t n = strcspn(w, " \t");
                bool found = n == 0;
                for (char **q = a; *q && !found; q++) {
                        char *v = *q + strspn(*q, " \t");
                        found = strcspn(v, " \t") == n && !strncmp(v, w, n);
                }
                if (!found)
                        return false;
        }
        return true;
}

static void tighten_str(struct hutch_conf *sys, struct hutch_conf *user, const struct conf_key *k, const char *name)
{
        char **s = (char **) ((char *) sys + k->off), **u = (char **) ((char *) user + k->off);
        bool ok;
        if (k->off == offsetof(struct hutch_conf, net_default))
                ok = true; /* a preference: still checked against the networks users may use */
        else if (k->off == offsetof(struct hutch_conf, systemd))
                ok = true; /* a preference: who keeps the user's own instances */
        else if (k->off == offsetof(struct hutch_conf, net_users_allow))
                ok = list_within(*u, *s ? *s : "none, pasta, slirp4netns");
        else
                ok = false; /* the bridge's interface and subnet are the admin's */
        if (!ok) {
                loosen_ignored(sys, name, k->key);
                return;
        }
        free(*s);
        *s = steal_pointer(u);
}

void conf_tighten(struct hutch_conf *sys, struct hutch_conf *user, const char *name)
{
        for (size_t i = 0; i < ELEMENTSOF(keys); i++)
                if (user->set_mask & (UINT64_C(1) << i))
                        tighten_one(sys, user, &keys[i], name);
        sys->n_warnings += user->n_warnings;
        conf_free(user);
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

int conf_load_system(struct hutch_conf *c, const char *path, struct hutch_error *err)
{
        /* O_NONBLOCK: a FIFO planted there never blocks (it is then refused as no regular file) */
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0)
                return errno == ENOENT ? -ENOENT
                                       : hutch_err_sys(err, -errno, "cannot read system configuration '%s'", path);
        if (!S_ISREG(st.st_mode))
                return hutch_err(err, -EPERM, "system configuration '%s' is not a regular file: refused", path);
        if (st.st_uid != 0 || (st.st_mode & (S_IWGRP | S_IWOTH)))
                return hutch_err(err, -EPERM,
                                 "system configuration '%s' is not owned by root or is writable by group or others: "
                                 "refused (chown root; chmod go-w)",
                                 path);
        char proc[64];
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
        _cleanup_free_ char *text = NULL;
        /* read through the fd checked, not the path again */
        int r = read_regular_at(AT_FDCWD, proc, CONF_MAX, &text, NULL);
        if (r == -EFBIG)
                return hutch_err(err, r, "system configuration '%s' is larger than 1 MiB", path);
        if (r < 0)
                return hutch_err_sys(err, r, "cannot read system configuration '%s'", path);
        r = conf_parse_string(c, text, path, err);
        if (r >= 0)
                c->cgroup_parent_admins = c->cgroup_parent != NULL;
        return r;
}

int conf_load_user(struct hutch_conf *c, const char *path, struct hutch_error *err)
{
        struct hutch_conf u;
        conf_defaults(&u);
        int r = conf_load(&u, path, err);
        if (r < 0) {
                conf_free(&u);
                return r;
        }
        conf_tighten(c, &u, path);
        return 0;
}

static bool path_beneath(const char *path, const char *prefix)
{
        size_t n = strlen(prefix);
        while (n > 1 && prefix[n - 1] == '/')
                n--;
        if (n == 1 && prefix[0] == '/')
                return true;
        return strncmp(path, prefix, n) == 0 && (path[n] == 0 || path[n] == '/');
}

static bool owner_listed(char *const *owners, uid_t uid)
{
        for (char *const *o = owners; o && *o; o++) {
                struct passwd *pw = getpwnam(*o);
                uint64_t n;
                if ((pw && pw->pw_uid == uid) || (!pw && parse_u64_range(*o, 0, UINT32_MAX, &n) == 0 && n == uid))
                        return true;
        }
        return false;
}

static bool path_listed(char *const *paths, const char *real)
{
        for (char *const *p = paths; p && *p; p++)
                if (path_beneath(real, *p))
                        return true;
        return false;
}

int conf_image_check(const struct hutch_conf *c, int fd, const char *path, struct hutch_error *err)
{
        if (!c->limit_container_paths && !c->limit_container_owners && !c->limit_container_paths_user &&
            !c->limit_container_owners_user)
                return 0;
        /* the image as opened: a symlink or a renamed folder cannot move it into a listed path */
        char proc[64], real[PATH_MAX];
        struct stat st;
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(proc, real, sizeof real - 1);
        if (n < 0 || fstat(fd, &st) < 0)
                return hutch_err_sys(err, -errno, "cannot check image '%s' against hutch.conf", path);
        real[n] = 0;
        const char *key = NULL;
        if ((c->limit_container_paths && !path_listed(c->limit_container_paths, real)) ||
            (c->limit_container_paths_user && !path_listed(c->limit_container_paths_user, real)))
                key = "limit container paths";
        else if ((c->limit_container_owners && !owner_listed(c->limit_container_owners, st.st_uid)) ||
                 (c->limit_container_owners_user && !owner_listed(c->limit_container_owners_user, st.st_uid)))
                key = "limit container owners";
        if (key)
                return hutch_err(err, -EPERM, "image '%s' is not allowed by hutch.conf ('%s')", path, key);
        return 0;
}

int conf_bind_check(const struct hutch_conf *c, const char *dst, struct hutch_error *err)
{
        if (!c->enforce_bind_paths)
                return 0;
        for (char **b = c->bind_paths; b && *b; b++) {
                struct bind_spec *v = NULL;
                size_t n = 0;
                struct hutch_error ignored = HUTCH_ERROR_INIT;
                if (bind_spec_parse(*b, &v, &n, &ignored) < 0) {
                        /* what a list parsed before its bad entry is appended: freed all the same */
                        bind_spec_free_array(v, n);
                        continue;
                }
                bool hit = false;
                for (size_t i = 0; i < n && !hit; i++)
                        hit = path_beneath(dst, v[i].dst) || path_beneath(v[i].dst, dst);
                bind_spec_free_array(v, n);
                if (hit)
                        return hutch_err(err, -EPERM,
                                         "bind destination '%s' would cover hutch.conf's 'bind path = %s' "
                                         "('enforce bind paths = yes')",
                                         dst, *b);
        }
        return 0;
}

int conf_cgroup_parent_check(const struct hutch_conf *c, const char *parent, uid_t uid, struct hutch_error *err)
{
        if (uid == 0 || !c->cgroup_parent_admins || !c->cgroup_parent || path_beneath(parent, c->cgroup_parent))
                return 0;
        return hutch_err(err, -EPERM,
                         "--cgroup-parent '%s' is not beneath '%s', the system hutch.conf's 'cgroup parent': name "
                         "a cgroup beneath it, or leave the flag out",
                         parent, c->cgroup_parent);
}
