/* The CLI's side of running instances: list (own, or every live supervisor in /proc),
 * find, stop, join. Nothing here trusts a state file without the supervisor's lock, and
 * root trusts another user's state only as far as the kernel vouches for it. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>
#include <sys/fsuid.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "instanced-internal.h"
#include "util/log.h"
#include "util/process.h"
#include "util/util.h"

static int state_cmp(const void *a, const void *b)
{
        return strcmp(((const struct instance_state *) a)->name, ((const struct instance_state *) b)->name);
}

static int push_state(struct instance_state **v, size_t *n, struct instance_state *st)
{
        struct instance_state *nv = realloc(*v, (*n + 1) * sizeof *nv);
        if (!nv)
                return -ENOMEM;
        *v = nv;
        nv[(*n)++] = *st;
        *st = (struct instance_state){0};
        return 0;
}

static int list_root(int root, const char *glob, struct instance_state **v, size_t *n, char ***ret_gone)
{
        _cleanup_closedir_ DIR *d = dir_stream_at(root);
        if (!d)
                return -errno;
        struct dirent *de;
        while ((de = readdir(d))) {
                if (!instance_name_is_valid(de->d_name) || (glob && fnmatch(glob, de->d_name, 0) != 0))
                        continue;
                struct instance_state st = {0};
                int r = instance_state_load(root, de->d_name, true, &st);
                if (r == -ESRCH && ret_gone)
                        strv_extend(ret_gone, de->d_name);
                if (r < 0)
                        continue;
                if (push_state(v, n, &st) < 0) {
                        instance_state_clear(&st);
                        return -ENOMEM;
                }
        }
        return 0;
}

/* The user's live supervisors whose state no root holds (its folder removed under it, as
 * logind does with /run/user/UID at the last logout), appended to v. */
static void list_unrooted(const char *glob, struct instance_state **v, size_t *n)
{
        struct instance_state *all = NULL;
        size_t na = 0;
        struct hutch_error ignored = HUTCH_ERROR_INIT;
        if (instance_list_all(glob, true, getuid(), &all, &na, &ignored) < 0)
                return;
        for (size_t i = 0; i < na; i++) {
                bool known = false;
                for (size_t j = 0; j < *n && !known; j++)
                        known = (*v)[j].supervisor == all[i].supervisor;
                if (!known)
                        push_state(v, n, &all[i]);
        }
        instance_state_free_array(all, na);
}

int instance_list(const struct instance_env *env, const char *glob, struct instance_state **ret, size_t *ret_n,
                  char ***ret_gone, struct hutch_error *err)
{
        int fds[STATE_ROOTS_MAX];
        size_t nf = 0;
        struct instance_state *v = NULL;
        size_t n = 0;
        int r = state_roots_open(env, fds, &nf, err);
        if (r < 0)
                return r;
        for (size_t i = 0; i < nf; i++) {
                if (r >= 0 && (r = list_root(fds[i], glob, &v, &n, ret_gone)) < 0)
                        hutch_err_sys(err, r, "cannot read the instance state folder");
                close(fds[i]);
        }
        if (r < 0) {
                instance_state_free_array(v, n);
                return r;
        }
        list_unrooted(glob, &v, &n);
        if (n)
                qsort(v, n, sizeof *v, state_cmp);
        *ret = v;
        *ret_n = n;
        return 0;
}

static bool is_supervisor(int pdfd)
{
        char comm[32] = "";
        int fd = openat(pdfd, "comm", O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return false;
        ssize_t k = read(fd, comm, sizeof comm - 1);
        close(fd);
        comm[k > 0 ? k : 0] = 0;
        return !strcmp(comm, SUPERVISOR_COMM "\n");
}

/* The real uid and gid of the process, as the kernel has them ("Uid:\treal\teffective..."). */
static int proc_ids(int pdfd, uid_t *ret_uid, gid_t *ret_gid)
{
        char buf[4096];
        int fd = openat(pdfd, "status", O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        ssize_t k = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (k <= 0)
                return -EIO;
        buf[k] = 0;
        const char *u = strstr(buf, "\nUid:\t"), *g = strstr(buf, "\nGid:\t");
        if (!u || !g)
                return -EIO;
        *ret_uid = (uid_t) strtoul(u + 6, NULL, 10);
        *ret_gid = (gid_t) strtoul(g + 6, NULL, 10);
        return 0;
}

/* The state of the supervisor /proc/PID, as its owner could read it: the folder it holds
 * at SUPERVISOR_DIR_FD is reopened through /proc (not by a path it could point anywhere),
 * with root's file system identity dropped to the process's real uid and gid for every
 * open, and all of it must be that uid's (a forged state cannot claim root's name, hang
 * us on a FIFO or have us read a file its owner cannot). */
static int supervisor_state(int pdfd, pid_t pid, uid_t uid, gid_t gid, struct instance_state *ret)
{
        char link[4096], fdname[32];
        snprintf(fdname, sizeof fdname, "fd/%d", SUPERVISOR_DIR_FD);
        ssize_t k = readlinkat(pdfd, fdname, link, sizeof link - 1);
        if (k <= 0)
                return -ESRCH;
        link[k] = 0;
        const char *name = strrchr(link, '/');
        if (!name || !instance_name_is_valid(++name))
                return -EINVAL;
        bool root = geteuid() == 0;
        uid_t old_uid = root ? (uid_t) setfsuid(uid) : 0;
        gid_t old_gid = root ? (gid_t) setfsgid(gid) : 0;
        struct instance_state st = {0};
        int r = -EPERM;
        _cleanup_close_ int dfd = openat(pdfd, fdname, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NONBLOCK);
        struct stat ds;
        if (dfd >= 0 && fstat(dfd, &ds) == 0 && S_ISDIR(ds.st_mode) && ds.st_uid == uid)
                r = instance_state_read_trusted(dfd, uid, &st);
        if (root) {
                setfsgid(old_gid);
                setfsuid(old_uid);
        }
        if (r < 0)
                return r;
        if (strcmp(st.name, name) != 0 || st.supervisor != pid) {
                instance_state_clear(&st);
                return -EPERM;
        }
        *ret = st;
        return 0;
}

int instance_list_all(const char *glob, bool one_uid, uid_t uid, struct instance_state **ret, size_t *ret_n,
                      struct hutch_error *err)
{
        struct instance_state *v = NULL;
        size_t n = 0;
        _cleanup_closedir_ DIR *d = opendir("/proc");
        if (!d)
                return hutch_err_sys(err, -errno, "cannot read /proc");
        struct dirent *de;
        while ((de = readdir(d))) {
                if (de->d_name[0] < '1' || de->d_name[0] > '9')
                        continue;
                /* everything about the process through this fd: it names that process
                 * only, not another that reuses its pid */
                _cleanup_close_ int pdfd = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                uid_t puid;
                gid_t pgid;
                if (pdfd < 0 || !is_supervisor(pdfd) || proc_ids(pdfd, &puid, &pgid) < 0)
                        continue;
                if ((one_uid && puid != uid) || (geteuid() != 0 && puid != geteuid()))
                        continue;
                struct instance_state st = {0};
                if (supervisor_state(pdfd, (pid_t) atoi(de->d_name), puid, pgid, &st) < 0)
                        continue;
                if ((glob && fnmatch(glob, st.name, 0) != 0) || push_state(&v, &n, &st) < 0) {
                        instance_state_clear(&st);
                        continue;
                }
        }
        if (n)
                qsort(v, n, sizeof *v, state_cmp);
        *ret = v;
        *ret_n = n;
        return 0;
}

int instance_find(const struct instance_env *env, const char *name, struct instance_state *ret, struct hutch_error *err)
{
        int fds[STATE_ROOTS_MAX];
        size_t nf = 0;
        int r = instance_name_check(name, err);
        if (r < 0 || (r = state_roots_open(env, fds, &nf, err)) < 0)
                return r;
        r = -ESRCH;
        for (size_t i = 0; i < nf; i++) {
                if (r == -ESRCH || r == -ENOENT)
                        r = instance_state_load(fds[i], name, true, ret);
                close(fds[i]);
        }
        if (r == -EAGAIN)
                return hutch_err(err, -EAGAIN, "instance '%s' is still starting", name);
        if (r < 0) {
                struct instance_state *v = NULL;
                size_t n = 0;
                list_unrooted(name, &v, &n);
                if (n == 1) {
                        *ret = v[0];
                        free(v);
                        return 0;
                }
                instance_state_free_array(v, n);
                return hutch_err(err, -ENOENT, "no instance named '%s' is running", name);
        }
        return 0;
}

/* A pidfd that is known to be st's supervisor (the start time matches after opening). */
static int supervisor_pidfd(const struct instance_state *st)
{
        int fd = pidfd_open_pid(st->supervisor);
        unsigned long long t;
        if (fd < 0)
                return fd;
        if (proc_start_time(st->supervisor, &t) < 0 || t != st->supervisor_start) {
                close(fd);
                return -ESRCH;
        }
        return fd;
}

/* SIGTERM to the supervisor means "stop"; a queued value names the signal it passes on. */
static int ask_supervisor(int pidfd, int sig)
{
        siginfo_t si = {0};
        si.si_signo = SIGTERM;
        si.si_code = SI_QUEUE;
        si.si_pid = getpid();
        si.si_uid = getuid();
        si.si_value.sival_int = sig;
        return syscall(SYS_pidfd_send_signal, pidfd, SIGTERM, &si, 0) < 0 ? -errno : 0;
}

static bool wait_gone(int pidfd, int timeout_ms)
{
        struct pollfd p = {.fd = pidfd, .events = POLLIN};
        int r;
        while ((r = poll(&p, 1, timeout_ms)) < 0 && errno == EINTR)
                ;
        return r > 0;
}

int instance_control_connect(pid_t supervisor, unsigned long long start, uid_t owner)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int k = snprintf(sa.sun_path + 1, sizeof sa.sun_path - 1, CONTROL_NAME_FMT, (int) supervisor, start);
        /* non-blocking: a full backlog is EAGAIN, not a wait */
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        struct ucred cr;
        socklen_t cl = sizeof cr;
        if (fd < 0 || connect(fd, (struct sockaddr *) &sa, offsetof(struct sockaddr_un, sun_path) + 1 + k) < 0 ||
            getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) < 0)
                return -errno;
        /* the listener's credentials: anyone may bind an abstract name first */
        if (cr.pid != supervisor || cr.uid != owner)
                return -EPERM;
        return steal_fd(&fd);
}

/* The stop asked over the control socket (so that the supervisor knows who asked): env's
 * connection to st's supervisor, or a new one. false when there is no connection, or when
 * the supervisor closes it without its one-byte acknowledgement (a connection another
 * replaced before it spoke, or a supervisor of an older hutch): the caller signals instead.
 * No answer within a second is taken as heard: what was sent is queued and read once the
 * supervisor's loop is free, and signalling too would stop the payload twice. */
static bool ask_over_control(const struct instance_env *env, const struct instance_state *st, int sig)
{
        _cleanup_close_ int own = -EBADF;
        int fd = -EBADF;
        for (size_t i = 0; i < env->n_controls && fd < 0; i++)
                if (env->controls[i].supervisor == st->supervisor && env->controls[i].start == st->supervisor_start)
                        fd = env->controls[i].fd;
        if (fd < 0 && !env->controls_only)
                fd = own = instance_control_connect(st->supervisor, st->supervisor_start, env->uid);
        if (fd < 0 || send(fd, &sig, sizeof sig, MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t) sizeof sig)
                return false;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r;
        char ack = 0;
        while ((r = poll(&p, 1, 1000)) < 0 && errno == EINTR)
                ;
        if (r == 0)
                return true; /* sent and not refused: the supervisor reads it when its loop is free */
        return recv(fd, &ack, 1, MSG_DONTWAIT) == 1 && ack == 'k';
}

int instance_stop(const struct instance_env *env, const struct instance_state *st, int sig, int timeout_ms, bool force,
                  struct hutch_error *err)
{
        _cleanup_close_ int pidfd = supervisor_pidfd(st);
        if (pidfd < 0)
                return hutch_err(err, -ESRCH, "instance '%s' is not running", st->name);
        int r = ask_over_control(env, st, force ? SIGKILL : sig) ? 0 : ask_supervisor(pidfd, force ? SIGKILL : sig);
        if (r < 0)
                return hutch_err_sys(err, r, "cannot signal the supervisor of instance '%s'", st->name);
        if (!force && !wait_gone(pidfd, timeout_ms)) {
                /* Apptainer's words */
                log_info("Killing %s instance of %s (PID=%d) (Timeout)", st->name, st->image ? st->image : "",
                         (int) st->pid);
                ask_supervisor(pidfd, SIGKILL);
        }
        /* the supervisor cleans up and leaves; one that hangs is killed, which takes the
         * container with it (PDEATHSIG chain), and its stale state is removed below */
        if (!wait_gone(pidfd, 10000)) {
                syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
                wait_gone(pidfd, -1);
        }
        int fds[STATE_ROOTS_MAX];
        size_t nf = 0;
        struct hutch_error ignored = HUTCH_ERROR_INIT;
        if (state_roots_open(env, fds, &nf, &ignored) < 0)
                nf = 0;
        for (size_t i = 0; i < nf; i++) {
                struct instance_state again = {0};
                if (instance_state_load(fds[i], st->name, true, &again) == 0)
                        instance_state_clear(&again); /* a new instance of that name already */
                close(fds[i]);
        }
        return 0;
}

int instance_join(const struct instance_env *env, const char *name, const struct launch_spec *spec, int *ret_status,
                  struct hutch_error *err)
{
        struct instance_state st = {0};
        int r = instance_find(env, name, &st, err);
        if (r < 0)
                return r;
        struct runtime_target t = {.pid = st.pid, .start_time = st.pid_start, .image = st.image, .home = st.home};
        /* into the instance's cgroup first, while still outside its user namespace */
        struct cgroup cg = CGROUP_NULL;
        uint64_t ooms = 0;
        if (st.cgroup && *st.cgroup && cgroup_from_string(st.cgroup, &cg) == 0) {
                ooms = cgroup_oom_kills(&cg);
                r = cgroup_enter(&cg, 0, err);
                if (r < 0) {
                        cgroup_release(&cg);
                        instance_state_clear(&st);
                        return r;
                }
        }
        /* the command runs under the instance's seccomp profile and privileges unless it
         * names its own, as what the instance runs does */
        struct launch_spec js = *spec;
        if (instance_security_apply(st.security, st.seccomp_json, &js) < 0)
                r = hutch_err(err, -ENOENT, "instance '%s': its seccomp profile is gone from its state folder", name);
        else
                r = runtime_join(&js, &t, ret_status, err);
        if (r == -ESRCH)
                hutch_err_wrap(err, "instance '%s'", name);
        /* as batch exec says it: the command's SIGKILL came from the OOM killer */
        if (r >= 0 && *ret_status == 128 + SIGKILL && cg.n_dirs && cgroup_oom_kills(&cg) > ooms) {
                struct cgroup_stats cs = {0};
                if (cgroup_stats_read(&cg, &cs) == 0 && cs.memory_limit)
                        log_msg(LOG_LEVEL_ERROR,
                                "the command was killed by the kernel's OOM killer: instance '%s' reached its "
                                "memory limit of %llu MiB",
                                name, (unsigned long long) (cs.memory_limit >> 20));
                else
                        log_msg(LOG_LEVEL_ERROR, "the command was killed by the kernel's OOM killer (instance '%s')",
                                name);
        }
        cgroup_release(&cg);
        instance_state_clear(&st);
        return r;
}
