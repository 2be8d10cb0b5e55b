/* Joining a running instance: the target's identity is checked through a pidfd, then one
 * setns() on that pidfd enters every namespace that differs from ours (user first, as the
 * kernel orders it), and a fork lands in the instance's PID namespace to exec the payload. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime-internal.h"
#include "util/log.h"
#include "util/process.h"
#include "util/util.h"

static const struct {
        const char *name;
        int flag;
} namespaces[] = {
        {"cgroup", CLONE_NEWCGROUP}, {"ipc", CLONE_NEWIPC},   {"mnt", CLONE_NEWNS},  {"net", CLONE_NEWNET},
        {"pid", CLONE_NEWPID},       {"user", CLONE_NEWUSER}, {"uts", CLONE_NEWUTS},
};

/* The namespaces of pid that are not ours: setns() refuses to "enter" the user namespace a
 * process is already in. */
static int differing_namespaces(pid_t pid, int *ret_flags)
{
        int flags = 0;
        for (size_t i = 0; i < ELEMENTSOF(namespaces); i++) {
                char mine[64], theirs[64];
                struct stat a, b;
                snprintf(mine, sizeof mine, "/proc/self/ns/%s", namespaces[i].name);
                snprintf(theirs, sizeof theirs, "/proc/%d/ns/%s", (int) pid, namespaces[i].name);
                if (stat(theirs, &b) < 0)
                        return -errno;
                if (stat(mine, &a) < 0 || a.st_ino != b.st_ino || a.st_dev != b.st_dev)
                        flags |= namespaces[i].flag;
        }
        *ret_flags = flags;
        return 0;
}

static int join_ctx_make(struct launch_ctx *c, const struct runtime_target *t, struct hutch_error *err)
{
        struct passwd *pw = getpwuid(getuid());
        const char *home_env = strv_env_get(c->spec->host_env, "HOME");
        char cwd[PATH_MAX], num[32];

        snprintf(num, sizeof num, "%u", (unsigned) getuid());
        c->user = strdup(pw ? pw->pw_name : num);
        c->host_home = strdup(home_env && *home_env ? home_env : pw ? pw->pw_dir : "/");
        c->img.path = strdup(t->image ? t->image : "");
        if (getcwd(cwd, sizeof cwd))
                c->cwd = strdup(cwd);
        if (!c->user || !c->host_home || !c->img.path)
                return hutch_err(err, -ENOMEM, "out of memory");
        /* compiled here, on the host, as a launch does; applied last before exec */
        return seccomp_prog_make(c->spec, &c->seccomp, err);
}

/* In the instance's namespaces now: HOME as the instance has it (its start's -H, as
 * Apptainer restores it for a join), unless the join gives its own; env scripts if any. */
static void join_ctx_inside(struct launch_ctx *c, const struct runtime_target *t)
{
        const struct launch_spec *s = c->spec;
        if (s->home || !t->home || !*t->home)
                c->home_dst =
                        s->home ? runtime_home_inside(s, c->host_home) : strdup(getuid() == 0 ? "/root" : c->host_home);
        else
                c->home_dst = strdup(t->home);
        c->has_env_scripts = access("/.singularity.d/env", F_OK) == 0;
}

static int join_target(const struct runtime_target *t, struct hutch_error *err)
{
        _cleanup_close_ int pidfd = pidfd_open_pid(t->pid);
        unsigned long long st;
        int flags = 0, r;

        if (pidfd < 0)
                return hutch_err(err, -ESRCH, "the instance's process %d is gone", (int) t->pid);
        /* the pidfd pins the process from here on; the start time proves it is the right one */
        if (proc_start_time(t->pid, &st) < 0 || st != t->start_time)
                return hutch_err(err, -ESRCH, "the instance's process %d is gone", (int) t->pid);
        if ((r = differing_namespaces(t->pid, &flags)) < 0)
                return hutch_err_sys(err, r, "cannot inspect the namespaces of process %d", (int) t->pid);
        if (flags && setns(pidfd, flags) < 0)
                return hutch_err_sys(err, -errno, "cannot join the namespaces of process %d", (int) t->pid);
        return 0;
}

int runtime_join(const struct launch_spec *spec, const struct runtime_target *t, int *ret_status,
                 struct hutch_error *err)
{
        struct launch_ctx c = LAUNCH_CTX_INIT(spec, NULL);
        int sp[2] = {-EBADF, -EBADF};
        int r = join_ctx_make(&c, t, err);
        if (r >= 0)
                r = join_target(t, err);
        if (r >= 0 && socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0)
                r = hutch_err_sys(err, -errno, "cannot create sync socket");
        if (r < 0) {
                ctx_free(&c);
                return r;
        }
        join_ctx_inside(&c, t);
        c.owner_pidfd = pidfd_open_self();
        /* blocked before the child exists: a payload that exits at once must leave its
         * SIGCHLD pending for child_wait */
        sigset_t all, old;
        sigfillset(&all);
        sigprocmask(SIG_BLOCK, &all, &old);
        pid_t child = fork();
        if (child < 0) {
                r = hutch_err_sys(err, -errno, "cannot fork into the instance");
                sigprocmask(SIG_SETMASK, &old, NULL);
                close(sp[0]);
                close(sp[1]);
                ctx_free(&c);
                return r;
        }
        if (child == 0) {
                sigprocmask(SIG_SETMASK, &old, NULL);
                close(sp[0]);
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                /* getppid() is 0 across the PID namespace boundary: ask the parent's pidfd */
                struct pollfd pp = {.fd = c.owner_pidfd, .events = POLLIN};
                if (c.owner_pidfd < 0 || poll(&pp, 1, 0) != 0)
                        _exit(255);
                payload_exec(&c, err);
                process_msg_fail(sp[1], err);
                _exit(255);
        }
        close(sp[1]);
        struct pidref ch = PIDREF_NULL;
        (void) pidref_set_pid(&ch, child); /* our child, not reaped: the pid is its own */
        r = child_wait(&ch, sp[0], &old, ret_status, err);
        pidref_done(&ch);
        ctx_free(&c);
        return r;
}
