/* The per-user state store: where it lives, names, the state file format, and the lock the
 * supervisor holds for its whole life (an OFD lock: released by the kernel when the
 * supervisor dies, however it dies, so no reader ever trusts a dead entry). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "instanced-internal.h"
#include "util/util.h"

bool instance_name_is_valid(const char *name)
{
        size_t n = name ? strlen(name) : 0;
        if (n == 0 || n > INSTANCE_NAME_MAX)
                return false;
        for (size_t i = 0; i < n; i++) {
                char ch = name[i];
                bool alnum = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
                if (!alnum && (i == 0 || (ch != '_' && ch != '.' && ch != '-')))
                        return false;
        }
        return true;
}

int instance_name_check(const char *name, struct hutch_error *err)
{
        if (!instance_name_is_valid(name))
                return hutch_err(err, -EINVAL,
                                 "invalid instance name '%s': use 1-64 of A-Z a-z 0-9 _ . - starting with a "
                                 "letter or digit",
                                 name ? name : "");
        return 0;
}

int restart_policy_parse(const char *s, enum restart_policy *ret, unsigned *ret_max, struct hutch_error *err)
{
        if (!strcmp(s, "no")) {
                *ret = RESTART_NO;
                *ret_max = 0;
                return 0;
        }
        if (!strcmp(s, "always")) {
                *ret = RESTART_ALWAYS;
                *ret_max = 0;
                return 0;
        }
        if (!strcmp(s, "on-failure")) {
                *ret = RESTART_ON_FAILURE;
                *ret_max = 0;
                return 0;
        }
        if (startswith(s, "on-failure:")) {
                const char *n = s + strlen("on-failure:");
                char *end;
                errno = 0;
                unsigned long v = strtoul(n, &end, 10);
                if (*n >= '0' && *n <= '9' && !*end && !errno && v > 0 && v <= 1000000) {
                        *ret = RESTART_ON_FAILURE;
                        *ret_max = (unsigned) v;
                        return 0;
                }
        }
        return hutch_err(err, -EINVAL, "invalid restart policy '%s': use no, on-failure[:N] or always", s);
}

void instance_state_clear(struct instance_state *st)
{
        free(st->name);
        free(st->image);
        free(st->restart);
        free(st->log_out);
        free(st->log_err);
        free(st->cgroup);
        free(st->job);
        free(st->ip);
        free(st->ports);
        free(st->keeper);
        free(st->unit);
        free(st->security);
        free(st->seccomp_json);
        free(st->limits);
        free(st->digest);
        free(st->home);
        *st = (struct instance_state){0};
}

void instance_state_free_array(struct instance_state *v, size_t n)
{
        for (size_t i = 0; i < n; i++)
                instance_state_clear(&v[i]);
        free(v);
}

enum field_kind { F_STR, F_PID, F_ULL, F_LL, F_UINT };
static const struct field {
        const char *key;
        enum field_kind kind;
        size_t off;
} fields[] = {
        /* sorted by key: looked up with bsearch */
        {"cgroup", F_STR, offsetof(struct instance_state, cgroup)},
        {"digest", F_STR, offsetof(struct instance_state, digest)},
        {"home", F_STR, offsetof(struct instance_state, home)},
        {"image", F_STR, offsetof(struct instance_state, image)},
        {"ip", F_STR, offsetof(struct instance_state, ip)},
        {"job", F_STR, offsetof(struct instance_state, job)},
        {"job_pid", F_PID, offsetof(struct instance_state, job_pid)},
        {"keeper", F_STR, offsetof(struct instance_state, keeper)},
        {"limits", F_STR, offsetof(struct instance_state, limits)},
        {"log_err", F_STR, offsetof(struct instance_state, log_err)},
        {"log_out", F_STR, offsetof(struct instance_state, log_out)},
        {"name", F_STR, offsetof(struct instance_state, name)},
        {"pid", F_PID, offsetof(struct instance_state, pid)},
        {"pid_start", F_ULL, offsetof(struct instance_state, pid_start)},
        {"ports", F_STR, offsetof(struct instance_state, ports)},
        {"restart", F_STR, offsetof(struct instance_state, restart)},
        {"restarts", F_UINT, offsetof(struct instance_state, restarts)},
        {"security", F_STR, offsetof(struct instance_state, security)},
        {"started", F_LL, offsetof(struct instance_state, started)},
        {"supervisor", F_PID, offsetof(struct instance_state, supervisor)},
        {"supervisor_start", F_ULL, offsetof(struct instance_state, supervisor_start)},
        {"uid", F_UINT, offsetof(struct instance_state, uid)},
        {"unit", F_STR, offsetof(struct instance_state, unit)},
};

static int field_cmp(const void *k, const void *f)
{
        return strcmp(k, ((const struct field *) f)->key);
}

/* String values are one line whatever bytes a path holds: '%', control bytes and DEL are
 * written as %XX. */
static bool needs_escape(unsigned char ch)
{
        return ch < 0x20 || ch == 0x7f || ch == '%';
}

static char *value_escape(const char *v)
{
        size_t n = 0;
        for (const char *p = v; *p; p++)
                n += needs_escape(*p) ? 3 : 1;
        char *r = malloc(n + 1), *q = r;
        if (!r)
                return NULL;
        for (const unsigned char *p = (const unsigned char *) v; *p; p++)
                q += needs_escape(*p) ? sprintf(q, "%%%02X", *p) : (*q = (char) *p, 1);
        *q = 0;
        return r;
}

static int hex_digit(char ch)
{
        return ch >= '0' && ch <= '9'   ? ch - '0'
               : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
               : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                                        : -1;
}

static char *value_unescape(const char *v)
{
        char *r = malloc(strlen(v) + 1), *q = r;
        if (!r)
                return NULL;
        for (const char *p = v; *p; p++) {
                int hi, lo;
                if (*p == '%' && (hi = hex_digit(p[1])) >= 0 && (lo = hex_digit(p[2])) >= 0 && (hi || lo)) {
                        *q++ = (char) (hi << 4 | lo);
                        p += 2;
                } else
                        *q++ = *p;
        }
        *q = 0;
        return r;
}

static int field_set(struct instance_state *st, const struct field *f, const char *v)
{
        char *p = (char *) st + f->off, *end;
        if (f->kind == F_STR) {
                char *d = value_unescape(v);
                if (!d)
                        return -ENOMEM;
                free(*(char **) p);
                *(char **) p = d;
                return 0;
        }
        if (!*v || *v == '-')
                return -EINVAL;
        errno = 0;
        unsigned long long n = strtoull(v, &end, 10);
        if (errno || *end)
                return -EINVAL;
        switch (f->kind) {
        case F_PID:
                if (n == 0 || n > 4194304)
                        return -EINVAL;
                *(pid_t *) p = (pid_t) n;
                break;
        case F_ULL: *(unsigned long long *) p = n; break;
        case F_LL:
                if (n > (unsigned long long) LLONG_MAX)
                        return -EINVAL; /* it would be written back negative, which reads as bad */
                *(long long *) p = (long long) n;
                break;
        case F_UINT:
                if (n > 0xffffffffULL)
                        return -EINVAL;
                *(unsigned *) p = (unsigned) n;
                break;
        default: break;
        }
        return 0;
}

int instance_state_parse(const char *text, struct instance_state *ret, struct hutch_error *err)
{
        struct instance_state st = {0};
        unsigned line = 0;
        while (text && *text) {
                size_t n = strcspn(text, "\n");
                line++;
                _cleanup_free_ char *l = strndup(text, n);
                text += n + (text[n] == '\n');
                if (!l) {
                        instance_state_clear(&st);
                        return hutch_err(err, -ENOMEM, "out of memory");
                }
                char *eq = strchr(l, '=');
                if (!*l)
                        continue;
                if (!eq) {
                        instance_state_clear(&st);
                        return hutch_err(err, -EINVAL, "state line %u: no '='", line);
                }
                *eq = 0;
                const struct field *f = bsearch(l, fields, ELEMENTSOF(fields), sizeof fields[0], field_cmp);
                if (!f)
                        continue;
                int r = field_set(&st, f, eq + 1);
                if (r < 0) {
                        instance_state_clear(&st);
                        return hutch_err(err, r, "state line %u: bad value for '%s'", line, l);
                }
        }
        if (!st.name || !instance_name_is_valid(st.name) || st.pid <= 0 || st.supervisor <= 0) {
                instance_state_clear(&st);
                return hutch_err(err, -EINVAL, "state misses name, pid or supervisor");
        }
        *ret = st;
        return 0;
}

int instance_state_format(const struct instance_state *st, char **ret)
{
        char *s = NULL;
        const char *strs[] = {
                st->image ? st->image : "",     st->restart ? st->restart : "no", st->log_out ? st->log_out : "",
                st->log_err ? st->log_err : "", st->cgroup ? st->cgroup : "",     st->job ? st->job : "",
                st->ip ? st->ip : "",           st->ports ? st->ports : "",       st->keeper ? st->keeper : "",
                st->unit ? st->unit : "",       st->security ? st->security : "", st->limits ? st->limits : "",
                st->digest ? st->digest : "",   st->home ? st->home : ""};
        char *e[ELEMENTSOF(strs)] = {NULL}, jp[32] = "";
        if (st->job_pid > 0)
                snprintf(jp, sizeof jp, "job_pid=%d\n", (int) st->job_pid);
        int r = -ENOMEM;
        if (!st->name || !instance_name_is_valid(st->name))
                return -EINVAL;
        for (size_t i = 0; i < ELEMENTSOF(strs); i++)
                if (!(e[i] = value_escape(strs[i])))
                        goto out;
        if (asprintf(&s,
                     "name=%s\npid=%d\npid_start=%llu\nsupervisor=%d\nsupervisor_start=%llu\nuid=%u\n"
                     "image=%s\nstarted=%lld\nrestarts=%u\nrestart=%s\nlog_out=%s\nlog_err=%s\ncgroup=%s\n"
                     "job=%s\nip=%s\nports=%s\n%skeeper=%s\nunit=%s\nsecurity=%s\nlimits=%s\ndigest=%s\nhome=%s\n",
                     st->name, (int) st->pid, st->pid_start, (int) st->supervisor, st->supervisor_start,
                     (unsigned) st->uid, e[0], st->started, st->restarts, e[1], e[2], e[3], e[4], e[5], e[6], e[7], jp,
                     e[8], e[9], e[10], e[11], e[12], e[13]) < 0)
                goto out;
        *ret = s;
        r = 0;
out:
        for (size_t i = 0; i < ELEMENTSOF(e); i++)
                free(e[i]);
        return r;
}

static int host_name(char *buf, size_t size)
{
        if (gethostname(buf, size) < 0 || !*buf || strchr(buf, '/'))
                snprintf(buf, size, "localhost");
        return 0;
}

/* The user's runtime folder, made by logind (pam_systemd) for sessions, cron jobs, su and
 * Slurm steps alike: "RUNTIME_BASE/UID", where it exists and is the user's. */
static char *runtime_dir(const struct instance_env *env)
{
        char *p = NULL;
        if (asprintf(&p, "%s/%u", env->runtime_base ? env->runtime_base : "/run/user", (unsigned) env->uid) < 0)
                return NULL;
        if (!dir_is_users(p, env->uid)) {
                free(p);
                return NULL;
        }
        return p;
}

static int home_root(const struct instance_env *env, char **ret)
{
        char host[256];
        host_name(host, sizeof host);
        if (!env->home || env->home[0] != '/')
                return -ENOENT;
        return asprintf(ret, "%s/.hutch/instances/%s", env->home, host) < 0 ? -ENOMEM : 0;
}

int instance_state_roots(const struct instance_env *env, char ***ret)
{
        _cleanup_strv_ char **v = NULL;
        _cleanup_free_ char *run = runtime_dir(env), *home = NULL;
        int r = home_root(env, &home);
        if (r == -ENOMEM)
                return r;
        char *r0 = run ? strjoin(run, "/hutch/instances", NULL) : NULL;
        if (run && (!r0 || strv_push(&v, r0) < 0))
                return -ENOMEM;
        if (home && strv_extend(&v, home) < 0)
                return -ENOMEM;
        if (dir_is_users(env->xdg_runtime_dir, env->uid)) {
                _cleanup_free_ char *x = strjoin(env->xdg_runtime_dir, "/hutch/instances", NULL);
                if (!x)
                        return -ENOMEM;
                if (!strv_contains(v, x) && strv_extend(&v, x) < 0)
                        return -ENOMEM;
        }
        if (!v)
                return -ENOENT;
        *ret = steal_pointer(&v);
        return 0;
}

int instance_state_root(const struct instance_env *env, char **ret)
{
        _cleanup_free_ char *run = runtime_dir(env);
        if (run) {
                char *p = strjoin(run, "/hutch/instances", NULL);
                if (!p)
                        return -ENOMEM;
                *ret = p;
                return 0;
        }
        return home_root(env, ret);
}

int instance_log_paths(const struct instance_env *env, const char *name, char **ret_out, char **ret_err)
{
        char host[256];
        host_name(host, sizeof host);
        char *o = NULL, *e = NULL;
        if (!env->home || env->home[0] != '/')
                return -ENOENT;
        if (asprintf(&o, "%s/.hutch/logs/%s/%s.out", env->home, host, name) < 0)
                return -ENOMEM;
        if (asprintf(&e, "%s/.hutch/logs/%s/%s.err", env->home, host, name) < 0) {
                free(o);
                return -ENOMEM;
        }
        *ret_out = o;
        *ret_err = e;
        return 0;
}

static int root_open(const char *root, uid_t uid, bool create, int *ret_fd, struct hutch_error *err)
{
        int r;
        if (create && (r = mkdir_p_at(AT_FDCWD, root, 0700)) < 0)
                return hutch_err_sys(err, r, "cannot create the instance state folder '%s'", root);
        int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return errno == ENOENT && !create
                               ? -ENOENT
                               : hutch_err_sys(err, -errno, "cannot open the instance state folder '%s'", root);
        struct stat st;
        if (fstat(fd, &st) < 0 || st.st_uid != uid) {
                close(fd);
                return hutch_err(err, -EPERM, "instance state folder '%s' does not belong to uid %u", root,
                                 (unsigned) uid);
        }
        if ((st.st_mode & 07777) != 0700)
                (void) !fchmod(fd, 0700);
        *ret_fd = fd;
        return 0;
}

int state_root_open(const struct instance_env *env, bool create, int *ret_fd, struct hutch_error *err)
{
        _cleanup_free_ char *root = NULL;
        int r = instance_state_root(env, &root);
        if (r < 0)
                return hutch_err(err, r, "cannot tell where instance state lives: set HOME");
        return root_open(root, env->uid, create, ret_fd, err);
}

int state_roots_open(const struct instance_env *env, int ret_fds[STATE_ROOTS_MAX], size_t *ret_n,
                     struct hutch_error *err)
{
        _cleanup_strv_ char **roots = NULL;
        struct stat seen[STATE_ROOTS_MAX];
        size_t n = 0;
        int r = instance_state_roots(env, &roots);
        if (r < 0)
                return hutch_err(err, r, "cannot tell where instance state lives: set HOME");
        for (size_t i = 0; roots[i] && n < STATE_ROOTS_MAX; i++) {
                int fd;
                struct hutch_error ignored = HUTCH_ERROR_INIT;
                /* the first is where starts go: its errors count; the others may be absent */
                r = root_open(roots[i], env->uid, false, &fd, i == 0 ? err : &ignored);
                if (r == -ENOENT || (r < 0 && i > 0))
                        continue;
                if (r < 0) {
                        while (n > 0)
                                close(ret_fds[--n]);
                        return r;
                }
                bool dup = false;
                if (fstat(fd, &seen[n]) == 0)
                        for (size_t j = 0; j < n; j++)
                                dup |= seen[j].st_dev == seen[n].st_dev && seen[j].st_ino == seen[n].st_ino;
                if (dup)
                        close(fd);
                else
                        ret_fds[n++] = fd;
        }
        *ret_n = n;
        return 0;
}

static bool lock_is_held(int fd);

/* Live instances in a state root: folders whose lock a supervisor holds (ours too: an OFD
 * lock conflicts with every other open of the file, in this process as well). */
static size_t count_live(int root_fd)
{
        int fd = fcntl(root_fd, F_DUPFD_CLOEXEC, 3);
        DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
        size_t n = 0;
        if (!d) {
                if (fd >= 0)
                        close(fd);
                return 0;
        }
        rewinddir(d);
        for (struct dirent *e; (e = readdir(d));) {
                if (!instance_name_is_valid(e->d_name))
                        continue;
                _cleanup_close_ int dfd = openat(root_fd, e->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
                _cleanup_close_ int lfd =
                        dfd < 0 ? -EBADF : openat(dfd, "lock", O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
                if (lfd >= 0 && lock_is_held(lfd))
                        n++;
        }
        closedir(d);
        return n;
}

/* A state folder this process made and locked: removed on return unless disarmed (name
 * NULL), so that no failure of a start leaves it behind. Declared after the fds it uses,
 * it runs before their cleanups close them. */
struct state_dir_guard {
        int root_fd, dir_fd;
        const char *name;
};

static void state_dir_guard_undo(struct state_dir_guard *g)
{
        if (g->name)
                instance_dir_remove(g->root_fd, g->dir_fd, g->name);
}

int instance_claim(const struct instance_env *env, const char *name, unsigned max, int *ret_root_fd, int *ret_dir_fd,
                   int *ret_lock_fd, struct hutch_error *err)
{
        _cleanup_close_ int root = -EBADF, dir = -EBADF, lock = -EBADF;
        int fds[STATE_ROOTS_MAX];
        size_t n = 0;
        int r = state_root_open(env, true, &root, err);
        if (r < 0 || (r = instance_lock(root, name, &dir, &lock, err)) < 0)
                return r;
        _cleanup_(state_dir_guard_undo) struct state_dir_guard guard = {.root_fd = root, .dir_fd = dir, .name = name};
        /* held now: a start in another root that has not seen ours will see it */
        if ((r = state_roots_open(env, fds, &n, err)) < 0)
                return r;
        struct stat a, b;
        bool taken = false;
        size_t live = 0;
        for (size_t i = 0; i < n; i++) {
                if (max > 0)
                        live += count_live(fds[i]);
                struct instance_state st = {0};
                if (!taken && fstat(fds[i], &a) == 0 && fstat(root, &b) == 0 &&
                    (a.st_dev != b.st_dev || a.st_ino != b.st_ino)) {
                        r = instance_state_load(fds[i], name, true, &st);
                        taken = r == 0 || r == -EAGAIN;
                        instance_state_clear(&st);
                }
                close(fds[i]);
        }
        if (taken)
                return hutch_err(err, -EEXIST, "instance %s already exists", name);
        if (max > 0 && live > max)
                return hutch_err(err, -EUSERS,
                                 "you run %u instances already, the most hutch.conf allows ('max instances')", max);
        guard.name = NULL;
        *ret_root_fd = steal_fd(&root);
        *ret_dir_fd = steal_fd(&dir);
        *ret_lock_fd = steal_fd(&lock);
        return 0;
}

#define STATE_MAX 65536 /* a few hundred bytes; paths of 4 KiB each, escaped, still fit */

static int lock_try(int fd)
{
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
        return fcntl(fd, F_OFD_SETLK, &fl) < 0 ? -errno : 0;
}

static bool lock_is_held(int fd)
{
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
        return fcntl(fd, F_OFD_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;
}

int instance_lock(int root_fd, const char *name, int *ret_dir_fd, int *ret_lock_fd, struct hutch_error *err)
{
        for (int attempt = 0; attempt < 20; attempt++) {
                if (mkdirat(root_fd, name, 0700) < 0 && errno != EEXIST)
                        return hutch_err_sys(err, -errno, "cannot create the state folder of instance '%s'", name);
                _cleanup_close_ int dfd = openat(root_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
                if (dfd < 0) {
                        if (errno == ENOENT)
                                continue; /* removed by a supervisor leaving just now */
                        return hutch_err_sys(err, -errno, "cannot open the state folder of instance '%s'", name);
                }
                _cleanup_close_ int lfd = openat(dfd, "lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
                if (lfd < 0) {
                        if (errno == ENOENT)
                                continue;
                        return hutch_err_sys(err, -errno, "cannot open the lock of instance '%s'", name);
                }
                int r = lock_try(lfd);
                if (r == -EAGAIN || r == -EACCES)
                        return hutch_err(err, -EEXIST, "instance %s already exists", name);
                if (r < 0)
                        return hutch_err_sys(err, r, "cannot lock instance '%s'", name);
                /* the lock must be on the file that is there now, not on one a leaving
                 * supervisor unlinked after we opened it */
                struct stat a, b;
                char rel[INSTANCE_NAME_MAX + 8];
                snprintf(rel, sizeof rel, "%s/lock", name);
                if (fstat(lfd, &a) < 0 || fstatat(root_fd, rel, &b, AT_SYMLINK_NOFOLLOW) < 0 || a.st_ino != b.st_ino ||
                    a.st_dev != b.st_dev)
                        continue;
                *ret_dir_fd = steal_fd(&dfd);
                *ret_lock_fd = steal_fd(&lfd);
                return 0;
        }
        return hutch_err(err, -EBUSY, "cannot lock instance '%s': its state keeps changing", name);
}

void instance_dir_remove(int root_fd, int dir_fd, const char *name)
{
        unlinkat(dir_fd, "state", 0);
        unlinkat(dir_fd, "state.tmp", 0);
        unlinkat(dir_fd, READY_NOTIFY_NAME, 0);
        unlinkat(dir_fd, "seccomp.json", 0);
        unlinkat(dir_fd, "lock", 0);
        unlinkat(root_fd, name, AT_REMOVEDIR);
}

int instance_state_write(int dir_fd, const struct instance_state *st)
{
        _cleanup_free_ char *text = NULL;
        int r = instance_state_format(st, &text);
        if (r < 0)
                return r;
        int fd = openat(dir_fd, "state.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return -errno;
        r = write_full(fd, text, strlen(text));
        close(fd);
        if (r < 0)
                return r;
        return renameat(dir_fd, "state.tmp", dir_fd, "state") < 0 ? -errno : 0;
}

/* fd of name in dir_fd: a regular file of uid, never followed through a symlink, never
 * blocking (a FIFO or device put there by its owner is refused, not waited on). */
static int open_owned(int dir_fd, const char *name, int flags, uid_t uid, struct stat *ret_st)
{
        _cleanup_close_ int fd = openat(dir_fd, name, flags | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
        if (fd < 0)
                return -errno;
        if (fstat(fd, ret_st) < 0)
                return -errno;
        if (!S_ISREG(ret_st->st_mode) || ret_st->st_uid != uid)
                return -EPERM;
        return steal_fd(&fd);
}

int instance_state_read_trusted(int dir_fd, uid_t uid, struct instance_state *ret)
{
        struct stat st;
        _cleanup_close_ int lfd = open_owned(dir_fd, "lock", O_RDONLY, uid, &st);
        if (lfd < 0)
                return lfd;
        if (!lock_is_held(lfd))
                return -ESRCH;
        _cleanup_close_ int fd = open_owned(dir_fd, "state", O_RDONLY, uid, &st);
        if (fd < 0)
                return fd;
        if (st.st_size > STATE_MAX)
                return -EFBIG;
        _cleanup_free_ char *buf = malloc(STATE_MAX + 1);
        if (!buf)
                return -ENOMEM;
        ssize_t n = pread_full(fd, buf, STATE_MAX, 0);
        if (n < 0)
                return (int) n;
        buf[n] = 0;
        struct hutch_error e = HUTCH_ERROR_INIT;
        struct instance_state s = {0};
        int r = instance_state_parse(buf, &s, &e);
        if (r < 0)
                return r;
        if (s.uid != uid) { /* a state claiming someone else's instance */
                instance_state_clear(&s);
                return -EPERM;
        }
        *ret = s;
        return 0;
}

int instance_state_load(int root_fd, const char *name, bool remove_stale, struct instance_state *ret)
{
        _cleanup_close_ int dfd = openat(root_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (dfd < 0)
                return -errno;
        _cleanup_close_ int lfd = openat(dfd, "lock", O_RDWR | O_CLOEXEC | O_NOFOLLOW);
        if (lfd < 0 && errno == EACCES)
                lfd = openat(dfd, "lock", O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (lfd >= 0 && lock_is_held(lfd)) {
                _cleanup_free_ char *text = NULL;
                struct hutch_error e = HUTCH_ERROR_INIT;
                int r = read_full_at(dfd, "state", STATE_MAX, &text, NULL);
                if (r < 0)
                        return r == -ENOENT ? -EAGAIN : r;
                r = instance_state_parse(text, ret, &e);
                if (r < 0)
                        return r;
                if (ret->security && strstr(ret->security, "seccomp=file") &&
                    read_full_at(dfd, "seccomp.json", 1 << 20, &ret->seccomp_json, NULL) < 0)
                        ret->seccomp_json = NULL; /* a join then says the profile is gone */
                return 0;
        }
        /* nobody holds the lock: the supervisor is gone (crash, kill -9, reboot) */
        if (remove_stale && (lfd < 0 || lock_try(lfd) == 0))
                instance_dir_remove(root_fd, dfd, name);
        return -ESRCH;
}

int instance_security_format(const struct launch_spec *s, char **ret)
{
        char buf[160] = "";
        size_t n = 0;
        if (s->seccomp_json || s->seccomp_default)
                n += (size_t) snprintf(buf + n, sizeof buf - n, " seccomp=%s", s->seccomp_json ? "file" : "default");
        if (s->keep_privs)
                n += (size_t) snprintf(buf + n, sizeof buf - n, " keep-privs");
        if (s->no_privs)
                n += (size_t) snprintf(buf + n, sizeof buf - n, " no-privs");
        if (s->add_caps)
                n += (size_t) snprintf(buf + n, sizeof buf - n, " add-caps=%llx", (unsigned long long) s->add_caps);
        if (s->drop_caps)
                n += (size_t) snprintf(buf + n, sizeof buf - n, " drop-caps=%llx", (unsigned long long) s->drop_caps);
        *ret = strdup(n ? buf + 1 : "");
        return *ret ? 0 : -ENOMEM;
}

int instance_security_apply(const char *security, const char *json, struct launch_spec *s)
{
        bool own_seccomp = s->seccomp_json || s->seccomp_default;
        bool own_privs = s->keep_privs || s->no_privs || s->add_caps || s->drop_caps;
        const char *p = security ? security : "";
        while (*p) {
                size_t n = strcspn(p, " ");
                char w[64];
                if (n && n < sizeof w) {
                        memcpy(w, p, n);
                        w[n] = 0;
                        unsigned long long v;
                        char *end;
                        if (!strcmp(w, "seccomp=default") && !own_seccomp)
                                s->seccomp_default = true;
                        else if (!strcmp(w, "seccomp=file") && !own_seccomp) {
                                if (!json)
                                        return -ENOENT;
                                s->seccomp_json = json;
                                s->seccomp_name = "the instance's profile";
                        } else if (!strcmp(w, "keep-privs") && !own_privs)
                                s->keep_privs = true;
                        else if (!strcmp(w, "no-privs") && !own_privs)
                                s->no_privs = true;
                        else if ((startswith(w, "add-caps=") || startswith(w, "drop-caps=")) && !own_privs) {
                                errno = 0;
                                v = strtoull(strchr(w, '=') + 1, &end, 16);
                                if (errno || *end || end == strchr(w, '=') + 1)
                                        return -EINVAL;
                                *(w[0] == 'a' ? &s->add_caps : &s->drop_caps) = v;
                        }
                }
                p += n;
                p += strspn(p, " ");
        }
        return 0;
}
