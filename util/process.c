/* Process creation and pidrefs (process.h): the fork helper and the pidfd-based signal. */
#include <fcntl.h>
#include <linux/sched.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "process.h"

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

void pidref_done(struct pidref *p)
{
        if (p->fd >= 0) {
                int saved = errno;
                close(p->fd);
                errno = saved;
        }
        *p = PIDREF_NULL;
}

int process_fork(unsigned flags, struct pidref *ret)
{
        int parent_fd = -EBADF, pidfd = -EBADF;
        if (flags & FORK_DEATHSIG) {
                pid_t parent = flags & FORK_SIBLING ? getppid() : getpid();
                parent_fd = (int) syscall(SYS_pidfd_open, parent, 0);
                if (parent_fd < 0)
                        return -errno;
        }
        pid_t pid;
        if (flags & FORK_SIBLING) {
                /* no libc wrapper can make a sibling: clone3 (Linux 5.3), which hands the
                 * pidfd over too, else clone. The exit signal is ours (what our parent gets
                 * for us): clone3 refuses one with CLONE_PARENT */
                struct clone_args ca = {.flags = CLONE_PARENT | CLONE_PIDFD, .pidfd = (uint64_t) (uintptr_t) &pidfd};
                pid = (pid_t) syscall(SYS_clone3, &ca, sizeof ca);
                if (pid < 0 && errno == ENOSYS)
                        pid = (pid_t) syscall(SYS_clone, CLONE_PARENT, 0, NULL, NULL, 0);
        } else {
                pid = fork(); /* libc's: its atfork handlers keep malloc and stdio sound */
        }
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
