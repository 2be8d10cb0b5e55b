/* Process creation and pidrefs (process.h): the fork helper, the vfork-style spawns (set up
 * fds, exec: nothing else runs on the borrowed memory), pidfds. */
#include <fcntl.h>
#include <sched.h>
#include <linux/sched.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "process.h"
#include "util.h"

int pidref_set_pid(struct pidref *p, pid_t pid)
{
        if (pid <= 0)
                return -EINVAL;
        p->pid = pid;
        p->fd = (int) syscall(SYS_pidfd_open, pid, 0);
        if (p->fd < 0) {
                p->fd = -EBADF;
                return -errno;
        }
        fcntl(p->fd, F_SETFD, FD_CLOEXEC); /* pidfd_open's fds are close-on-exec already */
        return 0;
}

int pidref_kill(const struct pidref *p, int sig)
{
        if (!pidref_is_set(p))
                return -ESRCH;
        if (p->fd >= 0)
                return syscall(SYS_pidfd_send_signal, p->fd, sig, NULL, 0) < 0 ? -errno : 0;
        return kill(p->pid, sig) < 0 ? -errno : 0;
}

int pidref_queue(const struct pidref *p, int sig, int value)
{
        if (!pidref_is_set(p))
                return -ESRCH;
        siginfo_t si;
        memset(&si, 0, sizeof si);
        si.si_signo = sig;
        si.si_code = SI_QUEUE;
        si.si_pid = getpid();
        si.si_uid = getuid();
        si.si_value.sival_int = value;
        if (p->fd >= 0)
                return syscall(SYS_pidfd_send_signal, p->fd, sig, &si, 0) < 0 ? -errno : 0;
        return syscall(SYS_rt_sigqueueinfo, p->pid, sig, &si) < 0 ? -errno : 0;
}

int pidref_wait(const struct pidref *p, int options, int *ret_ws)
{
        if (!pidref_is_set(p))
                return -ECHILD;
        siginfo_t si;
        int r;
        bool by_fd = p->fd >= 0;
        for (;;) {
                memset(&si, 0, sizeof si);
                r = by_fd ? waitid(P_PIDFD, (id_t) p->fd, &si, WEXITED | options)
                          : waitid(P_PID, (id_t) p->pid, &si, WEXITED | options);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0 && errno == EINVAL && by_fd) {
                        by_fd = false; /* Linux 5.3 has pidfds but waits by them from 5.4 */
                        continue;
                }
                break;
        }
        if (r < 0)
                return -errno;
        if (si.si_pid == 0)
                return 0; /* WNOHANG: still running */
        /* waitpid's encoding, which the callers' W* macros read */
        int ws = si.si_code == CLD_EXITED ? (si.si_status & 0xff) << 8
                                          : (si.si_status & 0x7f) | (si.si_code == CLD_DUMPED ? 0x80 : 0);
        if (ret_ws)
                *ret_ws = ws;
        return 1;
}

void pidref_done(struct pidref *p)
{
        if (p->fd >= 0) {
                int saved = errno;
                close(p->fd);
                errno = saved;
        }
        *p = PIDREF_NULL;
}

/* clone3 for a sibling or a child born in a cgroup (no libc wrapper makes either). The exit
 * signal of a sibling is ours (what our parent gets for us): clone3 refuses one with
 * CLONE_PARENT. */
static pid_t clone3_child(unsigned flags, int cgroup_fd, int *pidfd)
{
        struct clone_args ca = {.flags = CLONE_PIDFD, .pidfd = (uint64_t) (uintptr_t) pidfd};
        if (flags & FORK_SIBLING)
                ca.flags |= CLONE_PARENT;
        else
                ca.exit_signal = SIGCHLD;
        if (cgroup_fd >= 0) {
                ca.flags |= CLONE_INTO_CGROUP;
                ca.cgroup = (uint64_t) cgroup_fd;
        }
        pid_t pid = (pid_t) syscall(SYS_clone3, &ca, sizeof ca);
        if (pid < 0 && errno == ENOSYS && cgroup_fd < 0) /* Linux < 5.3: no pidfd, no clone3 */
                pid = (pid_t) syscall(SYS_clone, CLONE_PARENT, 0, NULL, NULL, 0);
        /* before 5.7 the larger clone_args is E2BIG (or its unknown flag EINVAL); a folder
         * of cgroup v1 is EBADF */
        if (pid < 0 && cgroup_fd >= 0 && (errno == ENOSYS || errno == E2BIG || errno == EINVAL || errno == EBADF))
                errno = EOPNOTSUPP;
        return pid;
}

int process_fork_into_cgroup(unsigned flags, int cgroup_fd, struct pidref *ret)
{
        int parent_fd = -EBADF, pidfd = -EBADF;
        if (flags & FORK_DEATHSIG) {
                pid_t parent = flags & FORK_SIBLING ? getppid() : getpid();
                parent_fd = (int) syscall(SYS_pidfd_open, parent, 0);
                if (parent_fd < 0)
                        return -errno;
        }
        pid_t pid;
        if ((flags & FORK_SIBLING) || cgroup_fd >= 0)
                pid = clone3_child(flags, cgroup_fd, &pidfd);
        else
                pid = fork(); /* libc's: its atfork handlers keep malloc and stdio sound */
        if (pid < 0) {
                int r = -errno;
                if (parent_fd >= 0)
                        close(parent_fd);
                return r;
        }
        if (pid == 0) {
                if (flags & FORK_DEATHSIG) {
                        struct pollfd pp = {.fd = parent_fd, .events = POLLIN};
                        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || poll(&pp, 1, 0) != 0)
                                _exit(255);
                        close(parent_fd);
                }
                return 0;
        }
        if (parent_fd >= 0)
                close(parent_fd);
        ret->pid = pid;
        ret->fd = pidfd;
        if (pidfd < 0) {
                struct pidref tmp = PIDREF_NULL;
                (void) pidref_set_pid(&tmp, pid);
                ret->fd = tmp.fd;
        }
        return 1;
}

int process_fork(unsigned flags, struct pidref *ret)
{
        return process_fork_into_cgroup(flags, -EBADF, ret);
}

int process_msg_send(int sock, const struct process_msg *m, int fd)
{
        return send_fds(sock, m, sizeof *m, &fd, fd >= 0 ? 1 : 0) < 0 ? -errno : 0;
}

void process_msg_fail(int sock, const struct hutch_error *err)
{
        struct process_msg m = {.type = PROCESS_MSG_FAILED, .status = -1, .err = *err};
        (void) process_msg_send(sock, &m, -EBADF);
}

int process_msg_recv(int sock, int flags, struct process_msg *ret, int *ret_fd)
{
        union {
                char buf[CMSG_SPACE(sizeof(int))];
                struct cmsghdr align;
        } u;
        struct process_msg m;
        struct iovec iov = {.iov_base = &m, .iov_len = sizeof m};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
        ssize_t n;
        do
                n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | flags);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return -errno;
        int fd = -EBADF;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
                if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS && c->cmsg_len == CMSG_LEN(sizeof(int)))
                        memcpy(&fd, CMSG_DATA(c), sizeof fd);
        /* a longer message arrives cut to our size with MSG_TRUNC: another size, so none */
        bool whole = n == (ssize_t) sizeof m && !(mh.msg_flags & MSG_TRUNC);
        if (!whole || (fd >= 0 && !ret_fd)) {
                if (fd >= 0)
                        close(fd);
                fd = -EBADF;
                if (!whole)
                        return 0;
        }
        m.err.msg[sizeof m.err.msg - 1] = 0;
        m.net_addr[sizeof m.net_addr - 1] = 0;
        *ret = m;
        if (ret_fd)
                *ret_fd = fd;
        return 1;
}

int pidfd_open_self(void)
{
        int fd = (int) syscall(SYS_pidfd_open, getpid(), 0);
        return fd < 0 ? -errno : fd;
}

int pidfd_open_pid(pid_t pid)
{
        int fd = (int) syscall(SYS_pidfd_open, pid, 0);
        return fd < 0 ? -errno : fd;
}

struct detached {
        int pidfd; /* spawn_child's child's, from CLONE_PIDFD */
        const char *path;
        char *const *argv;
        const int *fds;
        size_t n_fds;
        char *stack; /* the second child's */
        int err;
};

/* AddressSanitizer cannot follow a child running on a stack of its own in our memory (it
 * warns on every noreturn call there, and its leak checker would scan a stack it does not
 * know): the vfork-style helpers below keep to syscalls, unchecked. */

/* What a detached process starts with: its own session, the default action for every
 * signal we handle, stdin/stdout/stderr on /dev/null, fds[i] as fd 3+i and no other fd, no
 * signal blocked. Syscalls only (it runs on borrowed memory in spawn_detached). */
__attribute__((no_sanitize_address)) static int detach_prepare(const int *fds, size_t n_fds)
{
        int tmp[8];
        struct sigaction dfl = {.sa_handler = SIG_DFL};
        setsid();
        for (int sig = 1; sig < NSIG; sig++) {
                struct sigaction old;
                /* a handler of ours would run on the borrowed memory: default before unblocking */
                if (sigaction(sig, NULL, &old) == 0 && old.sa_handler != SIG_IGN && old.sa_handler != SIG_DFL)
                        sigaction(sig, &dfl, NULL);
        }
        /* above the targets first: they may overlap, with each other or with stdio (a
         * server's report fd is the caller's stderr) */
        for (size_t i = 0; i < n_fds; i++)
                if ((tmp[i] = fcntl(fds[i], F_DUPFD, 3 + (int) n_fds)) < 0)
                        return -errno;
        int null = open("/dev/null", O_RDWR);
        if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0)
                return -errno;
        for (size_t i = 0; i < n_fds; i++)
                if (dup2(tmp[i], 3 + (int) i) < 0)
                        return -errno;
        close_range(3 + (unsigned) n_fds, ~0u, 0);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        return 0;
}

/* Both children run on this process's memory while it is suspended: syscalls only. */
__attribute__((no_sanitize_address)) static int detached_exec(void *p)
{
        struct detached *d = p;
        int r = detach_prepare(d->fds, d->n_fds);
        if (r == 0) {
                execve(d->path, d->argv, environ);
                r = -errno;
        }
        d->err = r;
        _exit(127);
}

__attribute__((no_sanitize_address)) static int detached_orphan(void *p)
{
        struct detached *d = p;
        /* suspended until the grandchild has exec'd; then its parent is gone */
        if (clone(detached_exec, d->stack, CLONE_VM | CLONE_VFORK | SIGCHLD, d) < 0)
                d->err = -errno;
        _exit(0);
}

pid_t fork_detached(const int *fds, size_t n_fds)
{
        if (n_fds > 8)
                return -EINVAL;
        pid_t p = fork();
        if (p < 0)
                return -errno;
        if (p > 0)
                return p;
        int r = detach_prepare(fds, n_fds);
        if (r < 0)
                _exit(127);
        return 0;
}

/* Run fn(d) in a CLONE_VM|CLONE_VFORK child on a stack of its own (two stacks' worth: a
 * child that clones again gives the second to its own child), with every signal blocked
 * meanwhile so no handler of ours runs on the borrowed memory. We are suspended until the
 * child has exec'd or exited, so the stacks are free again when this returns. */
static pid_t vfork_run(int (*fn)(void *), struct detached *d, int flags)
{
        enum { STACK = 64 * 1024 };
        if (d->n_fds > 8)
                return -EINVAL;
        char *stacks = mmap(NULL, 2 * STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
        if (stacks == MAP_FAILED)
                return -errno;
        d->stack = stacks + 2 * STACK; /* stacks grow down */
        sigset_t all, old;
        sigfillset(&all);
        sigprocmask(SIG_SETMASK, &all, &old);
        pid_t child = clone(fn, stacks + STACK, CLONE_VM | CLONE_VFORK | SIGCHLD | flags, d, &d->pidfd);
        int r = child < 0 ? -errno : 0;
        sigprocmask(SIG_SETMASK, &old, NULL);
        munmap(stacks, 2 * STACK);
        return r < 0 ? r : child;
}

int spawn_detached(const char *path, char *const argv[], const int *fds, size_t n_fds)
{
        struct detached d = {.pidfd = -EBADF, .path = path, .argv = argv, .fds = fds, .n_fds = n_fds};
        pid_t mid = vfork_run(detached_orphan, &d, 0);
        if (mid < 0)
                return mid;
        while (waitpid(mid, NULL, 0) < 0 && errno == EINTR)
                ;
        return d.err;
}

int spawn_child(const char *path, char *const argv[], const int *fds, size_t n_fds, struct pidref *ret)
{
        struct detached d = {.pidfd = -EBADF, .path = path, .argv = argv, .fds = fds, .n_fds = n_fds};
        pid_t child = vfork_run(detached_exec, &d, CLONE_PIDFD);
        if (child < 0)
                return child;
        struct pidref p = {.pid = child, .fd = d.pidfd};
        if (d.err < 0) {
                (void) pidref_wait(&p, 0, NULL);
                pidref_done(&p);
                return d.err;
        }
        *ret = p;
        return 0;
}

int spawn_wait(char *const argv[], bool quiet)
{
        pid_t p = fork();
        if (p < 0)
                return -errno;
        if (p == 0) {
                if (quiet) {
                        int null = open("/dev/null", O_WRONLY);
                        if (null >= 0)
                                dup2(null, 1);
                }
                execvp(argv[0], argv);
                _exit(127);
        }
        int status;
        while (waitpid(p, &status, 0) < 0)
                if (errno != EINTR)
                        return -errno;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
