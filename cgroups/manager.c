/* The cgroupfs manager for v2 and v1 (and hybrid hosts: v1 controllers beside an empty
 * cgroup2). The files are written directly rather than through libcgroup: Debian 12's
 * libcgroup 2.0 reads its own cgconfig model and does not know "beneath the caller's own
 * cgroup" or v2 delegation, while discovery is ~40 lines of /proc/self/mountinfo and
 * /proc/self/cgroup, and the writes are plain files. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cgroups.h"
#include "util/log.h"
#include "util/util.h"

/* v1 hierarchies hutch uses, by the name in mountinfo's super options and /proc/self/cgroup */
static const char *const v1_names[] = {"memory", "cpu", "cpuacct", "pids", "blkio", "cpuset"};

struct hier {
        char *mnt; /* mount point */
        char *own; /* the caller's cgroup in it, relative to the mount's root */
};

struct layout {
        struct hier v2;
        struct hier v1[ELEMENTSOF(v1_names)];
};

static void layout_free(struct layout *lo)
{
        free(lo->v2.mnt);
        free(lo->v2.own);
        for (size_t i = 0; i < ELEMENTSOF(v1_names); i++) {
                free(lo->v1[i].mnt);
                free(lo->v1[i].own);
        }
}

static int v1_index(const char *name)
{
        for (size_t i = 0; i < ELEMENTSOF(v1_names); i++)
                if (!strcmp(name, v1_names[i]))
                        return (int) i;
        return -1;
}

static bool has_word(const char *list, const char *word, const char *seps)
{
        _cleanup_strv_ char **v = NULL;
        if (strsplit(list, seps, &v) < 0)
                return false;
        return strv_contains(v, word);
}

/* mountinfo: "id parent maj:min root mountpoint opts - fstype source superopts", read at
 * once and split in place (fopen's 1 KiB reads and sscanf per line took ~0.2 ms of every
 * start with a cgroup). */
static void scan_mounts(struct layout *lo)
{
        _cleanup_free_ char *buf = NULL;
        if (read_full_at(AT_FDCWD, "/proc/self/mountinfo", 16 << 20, &buf, NULL) < 0)
                return;
        for (char *line = buf, *next; line && *line; line = next) {
                next = strchr(line, '\n');
                if (next)
                        *next++ = 0;
                char *dash = strstr(line, " - ");
                if (!dash)
                        continue;
                *dash = 0;
                char *f[5], *save = NULL, *t[3], *save2 = NULL;
                size_t n = 0, m = 0;
                for (char *w = strtok_r(line, " ", &save); w && n < 5; w = strtok_r(NULL, " ", &save))
                        f[n++] = w;
                for (char *w = strtok_r(dash + 3, " ", &save2); w && m < 3; w = strtok_r(NULL, " ", &save2))
                        t[m++] = w;
                if (n < 5 || m < 3)
                        continue;
                const char *mnt = f[4], *fstype = t[0], *super = t[2];
                if (!strcmp(fstype, "cgroup2") && !lo->v2.mnt)
                        lo->v2.mnt = strdup(mnt);
                else if (!strcmp(fstype, "cgroup"))
                        for (size_t i = 0; i < ELEMENTSOF(v1_names); i++)
                                if (!lo->v1[i].mnt && has_word(super, v1_names[i], ","))
                                        lo->v1[i].mnt = strdup(mnt);
        }
}

static void scan_own(struct layout *lo)
{
        _cleanup_fclose_ FILE *f = fopen("/proc/self/cgroup", "re");
        char line[4096];
        while (f && fgets(line, sizeof line, f)) {
                line[strcspn(line, "\n")] = 0;
                char *a = strchr(line, ':'), *b = a ? strchr(a + 1, ':') : NULL;
                if (!b)
                        continue;
                *a = *b = 0;
                if (!strcmp(line, "0") && !a[1]) {
                        free(lo->v2.own);
                        lo->v2.own = strdup(b + 1);
                        continue;
                }
                _cleanup_strv_ char **ctrls = NULL;
                strsplit(a + 1, ",", &ctrls);
                for (char **c = ctrls; c && *c; c++) {
                        int i = v1_index(*c);
                        if (i >= 0 && !lo->v1[i].own)
                                lo->v1[i].own = strdup(b + 1);
                }
        }
}

/* The controllers a set of limits needs, as v2 names; with_stats adds the accounting ones
 * (used when present, never required). */
static void needed(const struct cgroup_limits *l, char ***req)
{
        if (l->cpu_quota != CG_UNSET || l->cpu_shares)
                strv_extend(req, "cpu");
        if (l->cpuset_cpus || l->cpuset_mems)
                strv_extend(req, "cpuset");
        if (l->memory != CG_UNSET || l->memory_reservation != CG_UNSET || l->memory_swap != CG_UNSET ||
            l->oom_kill_disable)
                strv_extend(req, "memory");
        if (l->pids != CG_UNSET)
                strv_extend(req, "pids");
        if (l->blkio_weight || l->n_devs)
                strv_extend(req, "io");
}

static const char *v1_of(const char *v2name)
{
        return !strcmp(v2name, "io") ? "blkio" : v2name;
}

static char *path_in(const struct hier *h, const char *parent)
{
        const char *rel = parent ? parent : h->own;
        if (!rel || !strcmp(rel, "/"))
                return strdup(h->mnt);
        return strjoin(h->mnt, rel[0] == '/' ? "" : "/", rel);
}

static int write_at(const char *dir, const char *file, const char *value)
{
        _cleanup_free_ char *p = strjoin(dir, "/", file);
        if (!p)
                return -ENOMEM;
        int fd = open(p, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        ssize_t n = write(fd, value, strlen(value));
        int r = n < 0 ? -errno : 0;
        close(fd);
        return r;
}

static int read_at(const char *dir, const char *file, char **ret)
{
        _cleanup_free_ char *p = strjoin(dir, "/", file);
        return p ? read_full_at(AT_FDCWD, p, 1 << 20, ret, NULL) : -ENOMEM;
}

static int denied(struct hutch_error *err, int r, const char *what, const char *path, int version)
{
        if (r == -EACCES || r == -EPERM || r == -EROFS)
                return hutch_err(err, r,
                                 version == 1
                                         ? "cannot %s '%s' as uid %u: cgroup v1 is not delegated to users, so limits "
                                           "need root here (or a host with cgroup v2 and a delegated subtree, named "
                                           "by --cgroup-parent or 'cgroup parent' in hutch.conf)"
                                         : "cannot %s '%s' as uid %u: the cgroup v2 subtree is not delegated to you "
                                           "(cgroup.procs and cgroup.subtree_control must be writable; ask for a "
                                           "delegated subtree and name it with --cgroup-parent or 'cgroup parent' in "
                                           "hutch.conf)",
                                 what, path, (unsigned) getuid());
        return hutch_err_sys(err, r, "cannot %s '%s'", what, path);
}

/* "a, b" lists for messages */
static void list_add(char *buf, size_t size, const char *word)
{
        size_t n = strlen(buf);
        snprintf(buf + n, size - n, "%s%s", n ? ", " : "", word);
}

static int pick_version(const struct layout *lo, char **req, const char *parent, struct hutch_error *err)
{
        _cleanup_free_ char *v2dir = NULL, *ctrls = NULL;
        if (lo->v2.mnt && (lo->v2.own || parent)) {
                v2dir = path_in(&lo->v2, parent);
                if (v2dir && read_at(v2dir, "cgroup.controllers", &ctrls) >= 0) {
                        bool all = true;
                        for (char **c = req; c && *c && all; c++)
                                all = has_word(ctrls, *c, " \n");
                        if (all)
                                return 2;
                }
        }
        char missing[200] = "", missing_v2[200] = "";
        for (char **c = req; c && *c; c++) {
                int i = v1_index(v1_of(*c));
                if (i < 0 || !lo->v1[i].mnt || !lo->v1[i].own)
                        list_add(missing, sizeof missing, *c);
                if (ctrls && !has_word(ctrls, *c, " \n"))
                        list_add(missing_v2, sizeof missing_v2, *c);
        }
        if (!missing[0])
                return 1;
        bool any_v1 = false;
        for (size_t i = 0; i < ELEMENTSOF(v1_names); i++)
                any_v1 |= lo->v1[i].mnt != NULL;
        if (ctrls && !any_v1) /* a pure cgroup2 host: its hierarchy is short of controllers here */
                return hutch_err(err, -EOPNOTSUPP,
                                 "cannot enforce the limits: cgroup v2 does not offer the %s controller%s to '%s' (its "
                                 "parent does not enable them for it); name a cgroup that has them with "
                                 "--cgroup-parent or 'cgroup parent' in hutch.conf",
                                 missing_v2, strchr(missing_v2, ',') ? "s" : "", v2dir);
        return hutch_err(err, -EOPNOTSUPP,
                         "cannot enforce the limits: no cgroup v2 with the %s controller%s enabled for this cgroup, "
                         "and no cgroup v1 hierarchy for it",
                         missing, strchr(missing, ',') ? "s" : "");
}

static void rmdirs(struct cgroup *cg)
{
        for (size_t i = cg->n_dirs; i-- > 0;) {
                rmdir(cg->dirs[i]);
                free(cg->dirs[i]);
                cg->dirs[i] = NULL;
        }
        cg->n_dirs = 0;
}

static int add_dir(struct cgroup *cg, const char *parent_dir, const char *name, int version, struct hutch_error *err)
{
        _cleanup_free_ char *dir = strjoin(parent_dir, "/", name);
        if (!dir)
                return hutch_err(err, -ENOMEM, "out of memory");
        for (size_t i = 0; i < cg->n_dirs; i++)
                if (!strcmp(cg->dirs[i], dir))
                        return 0; /* co-mounted hierarchies (cpu,cpuacct) share one folder */
        if (mkdir(dir, 0755) < 0) {
                int r = -errno;
                if (r == -EEXIST && rmdir(dir) == 0 && mkdir(dir, 0755) == 0)
                        goto made; /* an empty one left by a crash */
                return denied(err, r, "create cgroup", dir, version);
        }
made:
        cg->dirs[cg->n_dirs++] = steal_pointer(&dir);
        return 0;
}

static int create_v2(const struct layout *lo, char **req, const char *parent, const char *name, struct cgroup *cg,
                     struct hutch_error *err)
{
        _cleanup_free_ char *pdir = path_in(&lo->v2, parent), *sub = NULL;
        if (!pdir)
                return hutch_err(err, -ENOMEM, "out of memory");
        (void) read_at(pdir, "cgroup.subtree_control", &sub);
        for (char **c = req; c && *c; c++) {
                if (sub && has_word(sub, *c, " \n"))
                        continue;
                char plus[32];
                snprintf(plus, sizeof plus, "+%s", *c);
                int r = write_at(pdir, "cgroup.subtree_control", plus);
                if (r == -EBUSY)
                        return hutch_err(err, r,
                                         "cannot enable the %s controller below '%s': it holds processes (cgroup v2's "
                                         "no-internal-processes rule); name an empty delegated cgroup with "
                                         "--cgroup-parent or 'cgroup parent' in hutch.conf",
                                         *c, pdir);
                if (r < 0)
                        return denied(err, r, "enable controllers in", pdir, 2);
        }
        cg->version = 2;
        return add_dir(cg, pdir, name, 2, err);
}

/* v1 cpuset refuses tasks until cpus and mems are set: inherit the parent's */
static int cpuset_init(const char *dir)
{
        _cleanup_free_ char *parent = strdup(dir);
        if (!parent)
                return -ENOMEM;
        *strrchr(parent, '/') = 0;
        static const char *const files[] = {"cpuset.cpus", "cpuset.mems"};
        for (size_t i = 0; i < ELEMENTSOF(files); i++) {
                _cleanup_free_ char *v = NULL;
                int r = read_at(parent, files[i], &v);
                if (r < 0 || (r = write_at(dir, files[i], v)) < 0)
                        return r;
        }
        return 0;
}

/* A parent named for cgroup v2 on a hybrid host (v1 controllers beside an empty cgroup2):
 * say where the controllers are. */
static int hybrid_hint(const struct layout *lo, const char *parent, int r, struct hutch_error *err)
{
        if (parent && lo->v2.mnt)
                hutch_err_wrap(err,
                               "on this hybrid host the controllers live in cgroup v1, not in cgroup v2 at %s: "
                               "the cgroup parent '%s' is a path in each v1 hierarchy (/sys/fs/cgroup/memory, ...)",
                               lo->v2.mnt, parent);
        return r;
}

static int create_v1(const struct layout *lo, char **req, const char *parent, const char *name, struct cgroup *cg,
                     struct hutch_error *err)
{
        _cleanup_strv_ char **hiers = NULL;
        for (char **c = req; c && *c; c++)
                strv_extend(&hiers, v1_of(*c));
        /* accounting for `instance stats`, where it can be had */
        static const char *const extra[] = {"memory", "cpuacct", "pids"};
        for (size_t i = 0; i < ELEMENTSOF(extra); i++)
                if (!strv_contains(hiers, extra[i]))
                        strv_extend(&hiers, extra[i]);
        cg->version = 1;
        for (char **h = hiers; h && *h; h++) {
                int i = v1_index(*h);
                bool required = strv_contains(req, *h) || (!strcmp(*h, "blkio") && strv_contains(req, "io"));
                if (i < 0 || !lo->v1[i].mnt || !lo->v1[i].own) {
                        if (required)
                                return hutch_err(err, -EOPNOTSUPP, "no cgroup v1 hierarchy for %s", *h);
                        continue;
                }
                _cleanup_free_ char *pdir = path_in(&lo->v1[i], parent);
                struct hutch_error ignored = HUTCH_ERROR_INIT;
                size_t before = cg->n_dirs;
                int r = add_dir(cg, pdir, name, 1, required ? err : &ignored);
                if (r < 0 && required)
                        return hybrid_hint(lo, parent, r, err);
                if (r >= 0 && cg->n_dirs > before && !strcmp(*h, "cpuset") && (r = cpuset_init(cg->dirs[before])) < 0)
                        return hutch_err_sys(err, r, "cannot set up cpuset in '%s'", cg->dirs[before]);
        }
        return 0;
}

/* the folder of cg that has file (v1: the hierarchy's; v2: the one) */
static const char *dir_with(const struct cgroup *cg, const char *file)
{
        for (size_t i = 0; i < cg->n_dirs; i++) {
                _cleanup_free_ char *p = strjoin(cg->dirs[i], "/", file);
                if (p && access(p, F_OK) == 0)
                        return cg->dirs[i];
        }
        return NULL;
}

static int apply(const struct cgroup *cg, const struct cgroup_limits *l, struct hutch_error *err)
{
        struct cgroup_file *f = NULL;
        size_t n = 0;
        int r = cgroup_limits_files(l, cg->version, &f, &n, err);
        for (size_t i = 0; r >= 0 && i < n; i++) {
                const char *dir = dir_with(cg, f[i].file);
                if (!dir) {
                        r = hutch_err(err, -EOPNOTSUPP,
                                      "cannot enforce the limit: this kernel's cgroup has no %s (for %s = %s)",
                                      f[i].file, f[i].controller, f[i].value);
                        break;
                }
                r = write_at(dir, f[i].file, f[i].value);
                if (r < 0)
                        hutch_err_sys(err, r, "cannot set %s/%s to '%s'", dir, f[i].file, f[i].value);
                else
                        log_debug("cgroup: %s/%s = %s", dir, f[i].file, f[i].value);
        }
        cgroup_files_free(f, n);
        return r;
}

/* hutch's cgroups are named "hutch-...-PID", PID the process that made it and removes it
 * (a batch hutch, an instance's supervisor); 0 for any other name. */
static pid_t owner_pid(const char *name)
{
        const char *dash = strrchr(name, '-');
        char *end;
        if (!startswith(name, "hutch-") || dash[1] < '1' || dash[1] > '9')
                return 0;
        long pid = strtol(dash + 1, &end, 10);
        return *end || pid > 4194304 ? 0 : (pid_t) pid;
}

/* Remove the caller's cgroups in dir whose owner is gone (killed with SIGKILL before it
 * could): rmdir, which the kernel refuses while a process or a child cgroup is inside,
 * so a live cgroup is never touched. An owner's pid reused by now keeps its cgroup until
 * that process is gone too. */
static void clean_in(const char *dir)
{
        _cleanup_closedir_ DIR *d = opendir(dir);
        struct dirent *de;
        while (d && (de = readdir(d))) {
                pid_t pid = de->d_type == DT_DIR ? owner_pid(de->d_name) : 0;
                struct stat st;
                if (pid <= 0 || fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || st.st_uid != geteuid() ||
                    kill(pid, 0) == 0 || errno != ESRCH)
                        continue;
                if (unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR) == 0)
                        log_verbose("removed the cgroup %s/%s left by process %d", dir, de->d_name, (int) pid);
        }
}

static void clean_orphans(const struct layout *lo, const char *parent)
{
        const struct hier *h[1 + ELEMENTSOF(v1_names)] = {&lo->v2};
        for (size_t i = 0; i < ELEMENTSOF(v1_names); i++)
                h[i + 1] = &lo->v1[i];
        for (size_t i = 0; i < ELEMENTSOF(h); i++) {
                if (!h[i]->mnt || (!h[i]->own && !parent))
                        continue;
                _cleanup_free_ char *dir = path_in(h[i], parent);
                if (dir)
                        clean_in(dir);
        }
}

void cgroup_orphans_clean(const char *parent)
{
        struct layout lo = {0};
        scan_mounts(&lo);
        scan_own(&lo);
        clean_orphans(&lo, parent);
        layout_free(&lo);
}

int cgroup_own(struct cgroup *ret)
{
        struct layout lo = {0};
        struct cgroup cg = {.version = 2};
        scan_mounts(&lo);
        scan_own(&lo);
        int r = -ENOENT;
        if (lo.v2.mnt && lo.v2.own) {
                cg.dirs[0] = strjoin(lo.v2.mnt, strcmp(lo.v2.own, "/") ? lo.v2.own : "", NULL);
                cg.n_dirs = cg.dirs[0] ? 1 : 0;
                r = cg.dirs[0] ? 0 : -ENOMEM;
        }
        layout_free(&lo);
        if (r >= 0)
                *ret = cg;
        return r;
}

int cgroup_create(const struct cgroup_limits *l, const char *parent, const char *name, struct cgroup *ret,
                  struct hutch_error *err)
{
        struct layout lo = {0};
        struct cgroup cg = {0};
        _cleanup_strv_ char **req = NULL;
        scan_mounts(&lo);
        scan_own(&lo);
        clean_orphans(&lo, parent);
        needed(l, &req);
        /* no limits: a cgroup for accounting (`instance stats`), where memory is counted */
        bool accounting = !req;
        if (accounting)
                strv_extend(&req, "memory");
        int r = pick_version(&lo, req, parent, err);
        if (accounting) {
                strv_free(req);
                req = NULL;
        }
        if (r == 2)
                r = create_v2(&lo, req, parent, name, &cg, err);
        else if (r == 1)
                r = create_v1(&lo, req, parent, name, &cg, err);
        if (r >= 0)
                r = apply(&cg, l, err);
        layout_free(&lo);
        if (r < 0) {
                rmdirs(&cg);
                return r;
        }
        *ret = cg;
        return 0;
}

int cgroup_probe(const struct cgroup_limits *l, const char *parent, struct hutch_error *err)
{
        struct cgroup cg = CGROUP_NULL;
        char name[64];
        snprintf(name, sizeof name, "hutch-probe-%d", (int) getpid());
        int r = cgroup_create(l, parent, name, &cg, err);
        if (r < 0)
                return r;
        /* made, but no process could enter it: beneath a cgroup that holds processes, a
         * threaded controller (cpu) leaves it "domain invalid" (EOPNOTSUPP on entering) */
        _cleanup_free_ char *type = NULL;
        if (cg.version == 2 && cg.n_dirs && read_at(cg.dirs[0], "cgroup.type", &type) >= 0 &&
            startswith(type, "domain invalid"))
                r = hutch_err(err, -EOPNOTSUPP,
                              "cgroup '%s' cannot take processes: its parent holds some (cgroup v2's "
                              "no-internal-processes rule); name an empty delegated cgroup with --cgroup-parent",
                              cg.dirs[0]);
        cgroup_destroy(&cg);
        return r < 0 ? r : 0;
}

int cgroup_enter(const struct cgroup *cg, pid_t pid, struct hutch_error *err)
{
        char v[32];
        snprintf(v, sizeof v, "%d", (int) pid);
        for (size_t i = 0; i < cg->n_dirs; i++) {
                int r = write_at(cg->dirs[i], "cgroup.procs", v);
                if (r < 0)
                        return denied(err, r, "move into cgroup", cg->dirs[i], cg->version);
        }
        return 0;
}

int cgroup_open_for_clone(const struct cgroup *cg)
{
        if (cg->version != 2 || cg->n_dirs != 1)
                return -EOPNOTSUPP;
        int fd = open(cg->dirs[0], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        return fd < 0 ? -errno : fd;
}

static bool kill_all(const char *dir)
{
        _cleanup_free_ char *procs = NULL;
        if (read_at(dir, "cgroup.procs", &procs) < 0)
                return true;
        bool empty = true;
        for (char *p = procs, *e; *p; p = e) {
                long pid = strtol(p, &e, 10);
                if (e == p)
                        break;
                if (pid > 0) {
                        kill((pid_t) pid, SIGKILL);
                        empty = false;
                }
        }
        return empty;
}

void cgroup_destroy(struct cgroup *cg)
{
        if (cg->version == 2 && cg->n_dirs)
                write_at(cg->dirs[0], "cgroup.kill", "1"); /* Linux 5.14; kill_all below otherwise */
        for (int tries = 0; tries < 5000; tries++) {
                bool empty = true;
                for (size_t i = 0; i < cg->n_dirs; i++)
                        empty &= kill_all(cg->dirs[i]);
                if (empty)
                        break;
                struct timespec ts = {0, 1000000};
                nanosleep(&ts, NULL); /* SIGKILLed tasks leave within milliseconds */
        }
        rmdirs(cg);
        cg->version = 0;
}

void cgroup_release(struct cgroup *cg)
{
        for (size_t i = 0; i < cg->n_dirs; i++)
                free(cg->dirs[i]);
        *cg = (struct cgroup){0};
}

static uint64_t key_value(const char *text, const char *key)
{
        size_t k = strlen(key);
        for (const char *p = text; p && *p;) {
                if (!strncmp(p, key, k) && p[k] == ' ')
                        return strtoull(p + k + 1, NULL, 10);
                p = strchr(p, '\n');
                p = p ? p + 1 : NULL;
        }
        return 0;
}

uint64_t cgroup_oom_kills(const struct cgroup *cg)
{
        const char *file = cg->version == 2 ? "memory.events" : "memory.oom_control";
        const char *dir = dir_with(cg, file);
        _cleanup_free_ char *t = NULL;
        return dir && read_at(dir, file, &t) >= 0 ? key_value(t, "oom_kill") : 0;
}

bool cgroup_oom_killed(const struct cgroup *cg)
{
        return cgroup_oom_kills(cg) > 0;
}

static uint64_t read_u64(const struct cgroup *cg, const char *file)
{
        const char *dir = dir_with(cg, file);
        _cleanup_free_ char *t = NULL;
        if (!dir || read_at(dir, file, &t) < 0 || !strncmp(t, "max", 3))
                return 0;
        return strtoull(t, NULL, 10);
}

static void io_bytes(const struct cgroup *cg, struct cgroup_stats *s)
{
        const char *file = cg->version == 2 ? "io.stat" : "blkio.throttle.io_service_bytes";
        const char *dir = dir_with(cg, file);
        _cleanup_free_ char *t = NULL;
        if (!dir || read_at(dir, file, &t) < 0)
                return;
        for (char *line = strtok(t, "\n"); line; line = strtok(NULL, "\n")) {
                char *p;
                if (cg->version == 2) {
                        if ((p = strstr(line, "rbytes=")))
                                s->io_read_bytes += strtoull(p + 7, NULL, 10);
                        if ((p = strstr(line, "wbytes=")))
                                s->io_write_bytes += strtoull(p + 7, NULL, 10);
                } else if ((p = strstr(line, " Read ")))
                        s->io_read_bytes += strtoull(p + 6, NULL, 10);
                else if ((p = strstr(line, " Write ")))
                        s->io_write_bytes += strtoull(p + 7, NULL, 10);
        }
}

int cgroup_stats_read(const struct cgroup *cg, struct cgroup_stats *ret)
{
        struct cgroup_stats s = {0};
        if (!cg->n_dirs)
                return -ENOENT;
        /* a cgroup we may not read (another user's, or gone) is an error, not zero usage */
        for (size_t i = 0; i < cg->n_dirs; i++) {
                _cleanup_free_ char *p = strjoin(cg->dirs[i], "/cgroup.procs", NULL);
                if (!p)
                        return -ENOMEM;
                int fd = open(p, O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        return -errno;
                close(fd);
        }
        if (cg->version == 2) {
                const char *dir = dir_with(cg, "cpu.stat");
                _cleanup_free_ char *t = NULL;
                if (dir && read_at(dir, "cpu.stat", &t) >= 0)
                        s.cpu_usage_ns = key_value(t, "usage_usec") * 1000;
                s.memory_current = read_u64(cg, "memory.current");
                s.memory_limit = read_u64(cg, "memory.max");
        } else {
                s.cpu_usage_ns = read_u64(cg, "cpuacct.usage");
                s.memory_current = read_u64(cg, "memory.usage_in_bytes");
                s.memory_limit = read_u64(cg, "memory.limit_in_bytes");
                if (s.memory_limit >= (1ULL << 62))
                        s.memory_limit = 0; /* v1's "unlimited" is a huge page-rounded number */
        }
        s.pids_current = read_u64(cg, "pids.current");
        s.pids_limit = read_u64(cg, "pids.max");
        io_bytes(cg, &s);
        *ret = s;
        return 0;
}

int cgroup_to_string(const struct cgroup *cg, char **ret)
{
        char *s = NULL;
        if (asprintf(&s, "%d", cg->version) < 0)
                return -ENOMEM;
        for (size_t i = 0; i < cg->n_dirs; i++) {
                char *n = strjoin(s, "\t", cg->dirs[i]);
                free(s);
                if (!n)
                        return -ENOMEM;
                s = n;
        }
        *ret = s;
        return 0;
}

int cgroup_from_string(const char *s, struct cgroup *ret)
{
        _cleanup_strv_ char **v = NULL;
        struct cgroup cg = {0};
        if (strsplit(s, "\t", &v) < 0 || !v || !v[0] || (strcmp(v[0], "1") && strcmp(v[0], "2")))
                return -EINVAL;
        cg.version = v[0][0] - '0';
        for (char **d = v + 1; *d; d++) {
                if ((*d)[0] != '/' || strstr(*d, "/../") || cg.n_dirs >= CGROUP_MAX_DIRS) {
                        cgroup_release(&cg);
                        return -EINVAL;
                }
                cg.dirs[cg.n_dirs++] = strdup(*d);
        }
        *ret = cg;
        return 0;
}
