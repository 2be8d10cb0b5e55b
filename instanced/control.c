/* The CLI's side of running instances: list (own, or every live supervisor in /proc),
 * find, stop, join. Nothing here trusts a state file without the supervisor's lock. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "instanced-internal.h"
#include "util/log.h"
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

int instance_list(const struct instance_env *env, const char *glob, struct instance_state **ret, size_t *ret_n,
                  char ***ret_gone, struct hutch_error *err)
{
        _cleanup_close_ int root = -EBADF;
        struct instance_state *v = NULL;
        size_t n = 0;
        int r = state_root_open(env, false, &root, err);
        if (r == -ENOENT) {
                *ret = NULL;
                *ret_n = 0;
                return 0;
        }
        if (r < 0)
                return r;
        _cleanup_closedir_ DIR *d = fdopendir(dup(root));
        if (!d)
                return hutch_err_sys(err, -errno, "cannot read the instance state folder");
        struct dirent *de;
        while ((de = readdir(d))) {
                if (!instance_name_is_valid(de->d_name) || (glob && fnmatch(glob, de->d_name, 0) != 0))
                        continue;
                struct instance_state st = {0};
                r = instance_state_load(root, de->d_name, true, &st);
                if (r == -ESRCH && ret_gone)
                        strv_extend(ret_gone, de->d_name);
                if (r < 0)
                        continue;
                if (push_state(&v, &n, &st) < 0) {
                        instance_state_clear(&st);
                        instance_state_free_array(v, n);
                        return hutch_err(err, -ENOMEM, "out of memory");
                }
        }
        if (n)
                qsort(v, n, sizeof *v, state_cmp);
        *ret = v;
        *ret_n = n;
        return 0;
}

static bool is_supervisor(const char *pid)
{
        char path[300], comm[32] = "";
        snprintf(path, sizeof path, "/proc/%s/comm", pid);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return false;
        ssize_t k = read(fd, comm, sizeof comm - 1);
        close(fd);
        comm[k > 0 ? k : 0] = 0;
        return !strcmp(comm, SUPERVISOR_COMM "\n");
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
                if (de->d_name[0] < '1' || de->d_name[0] > '9' || !is_supervisor(de->d_name))
                        continue;
                char path[300], link[4096];
                snprintf(path, sizeof path, "/proc/%s/fd/%d", de->d_name, SUPERVISOR_DIR_FD);
                ssize_t k = readlink(path, link, sizeof link - 1);
                if (k <= 0)
                        continue;
                link[k] = 0;
                char *slash = strrchr(link, '/');
                if (!slash || slash == link)
                        continue;
                *slash = 0;
                const char *name = slash + 1;
                if (glob && fnmatch(glob, name, 0) != 0)
                        continue;
                _cleanup_close_ int root = open(link, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                struct instance_state st = {0};
                if (root < 0 || instance_state_load(root, name, false, &st) < 0)
                        continue;
                if ((one_uid && st.uid != uid) || push_state(&v, &n, &st) < 0) {
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
        _cleanup_close_ int root = -EBADF;
        int r = instance_name_check(name, err);
        if (r < 0)
                return r;
        r = state_root_open(env, false, &root, err);
        if (r == -ENOENT)
                return hutch_err(err, -ENOENT, "no instance named '%s' is running", name);
        if (r < 0)
                return r;
        r = instance_state_load(root, name, true, ret);
        if (r == -EAGAIN)
                return hutch_err(err, -EAGAIN, "instance '%s' is still starting", name);
        if (r < 0)
                return hutch_err(err, -ENOENT, "no instance named '%s' is running", name);
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

int instance_stop(const struct instance_env *env, const struct instance_state *st, int sig, int timeout_ms, bool force,
                  struct hutch_error *err)
{
        _cleanup_close_ int pidfd = supervisor_pidfd(st);
        if (pidfd < 0)
                return hutch_err(err, -ESRCH, "instance '%s' is not running", st->name);
        int r = ask_supervisor(pidfd, force ? SIGKILL : sig);
        if (r < 0)
                return hutch_err_sys(err, r, "cannot signal the supervisor of instance '%s'", st->name);
        if (!force && !wait_gone(pidfd, timeout_ms)) {
                log_verbose("instance '%s' did not stop within %d ms, killing it", st->name, timeout_ms);
                ask_supervisor(pidfd, SIGKILL);
        }
        /* the supervisor cleans up and leaves; one that hangs is killed, which takes the
         * container with it (PDEATHSIG chain), and its stale state is removed below */
        if (!wait_gone(pidfd, 10000)) {
                syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
                wait_gone(pidfd, -1);
        }
        _cleanup_close_ int root = -EBADF;
        struct hutch_error ignored = HUTCH_ERROR_INIT;
        if (state_root_open(env, false, &root, &ignored) >= 0) {
                struct instance_state again = {0};
                if (instance_state_load(root, st->name, true, &again) == 0)
                        instance_state_clear(&again); /* a new instance of that name already */
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
        struct runtime_target t = {.pid = st.pid, .start_time = st.pid_start, .image = st.image};
        /* into the instance's cgroup first, while still outside its user namespace */
        struct cgroup cg = CGROUP_NULL;
        if (st.cgroup && *st.cgroup && cgroup_from_string(st.cgroup, &cg) == 0) {
                r = cgroup_enter(&cg, 0, err);
                cgroup_release(&cg);
                if (r < 0) {
                        instance_state_clear(&st);
                        return r;
                }
        }
        r = runtime_join(spec, &t, ret_status, err);
        if (r == -ESRCH)
                hutch_err_wrap(err, "instance '%s'", name);
        instance_state_clear(&st);
        return r;
}
