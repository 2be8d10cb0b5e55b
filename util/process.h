/* Processes: a pidref (pid + pidfd) for every child or peer that outlives one statement,
 * and the one fork helper. A pidfd names one process for good, where a pid may be reused
 * once the process is reaped (pidfd_open(2), Linux 5.3). Returns -errno, never prints. */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "error.h"

struct pidref {
        pid_t pid; /* 0 when unset */
        int fd;    /* its pidfd, or -EBADF where none could be had */
};

#define PIDREF_NULL ((struct pidref){.pid = 0, .fd = -EBADF})

static inline bool pidref_is_set(const struct pidref *p)
{
        return p->pid > 0;
}

/* Take pid (a child of ours not yet reaped, or a process known by other means) by a new
 * pidfd. The pidref holds the pid even when no pidfd can be had (-errno then). */
int pidref_set_pid(struct pidref *p, pid_t pid);
/* Signal it through its pidfd (pidfd_send_signal(2), Linux 5.1): never another process
 * that got its pid since. -ESRCH when it is gone (a zombie is gone). */
int pidref_kill(const struct pidref *p, int sig);
/* sig, queued with SI_QUEUE and value as its si_value (sigqueue(3)), through the pidfd
 * where there is one */
int pidref_queue(const struct pidref *p, int sig, int value);
/* Reap it: waitid(2) on its pidfd (P_PIDFD, Linux 5.4), on its pid where it has none (a
 * child not yet reaped keeps its pid). options: 0 or WNOHANG. 1 with *ret_ws its wait
 * status (as waitpid's: WIFEXITED, WTERMSIG...), 0 when WNOHANG and it still runs, or
 * -errno (-ECHILD: not our child, or reaped already). Retries on EINTR. */
int pidref_wait(const struct pidref *p, int options, int *ret_ws);
/* Close the pidfd and forget the process (it is not signalled or reaped). */
void pidref_done(struct pidref *p);
static inline void pidref_donep(struct pidref *p)
{
        pidref_done(p);
}
#define _cleanup_pidref_ __attribute__((cleanup(pidref_donep)))

enum {
        /* the child ends with SIGKILL when its parent does (PR_SET_PDEATHSIG), and at once
         * should the parent already be gone by the time it asks (the re-check systemd's
         * helper makes; the parent is watched by a pidfd taken before the fork, which works
         * across a PID namespace where getppid() says 0) */
        FORK_DEATHSIG = 1 << 0,
        /* the child is our parent's, not ours (CLONE_PARENT): it outlives us, its exit is
         * reported to our parent, and FORK_DEATHSIG ties it to our parent. Only in a
         * single-threaded process: a raw clone runs no atfork handler. */
        FORK_SIBLING = 1 << 1,
};

/* fork(): the child goes on with a copy of this process's memory (never on this memory).
 * 0 in the child; in the parent 1 with *ret the child (its pidfd from CLONE_PIDFD), or
 * -errno. */
int process_fork(unsigned flags, struct pidref *ret);
/* The same, the child born in the cgroup v2 folder cgroup_fd (clone3 CLONE_INTO_CGROUP,
 * Linux 5.7): it never runs in ours, so its every fork, page and CPU cycle is the target's.
 * The kernel checks what a write of the child's pid to cgroup.procs would (permissions,
 * no internal processes, pids.max). -EOPNOTSUPP, with no child, when the kernel has no
 * CLONE_INTO_CGROUP (or cgroup_fd is not a cgroup v2 folder): the caller forks and moves
 * the child instead. Only in a single-threaded process: a raw clone runs no atfork
 * handler. */
int process_fork_into_cgroup(unsigned flags, int cgroup_fd, struct pidref *ret);

/* The one message format of the channels between hutch's processes (SOCK_SEQPACKET, one
 * message each): the CLI and the supervisor it starts, the supervisor and its launcher,
 * a launcher and the init (or payload) it forks. A failure before an exec sends FAILED;
 * the exec itself closes the socket (close-on-exec), so EOF there means "exec'd". */
enum process_msg_type {
        PROCESS_MSG_STARTED = 1, /* launcher -> supervisor: the payload was exec'd (or there is
                                  * none); pid: the init's, its pidfd passed along */
        PROCESS_MSG_READY,       /* supervisor -> CLI: the instance is up; pid: its init's */
        PROCESS_MSG_FAILED,      /* err says why; status: the payload's exit code, or -1 */
};
struct process_msg {
        int type;
        pid_t pid;
        int status;
        struct hutch_error err;
        char net_addr[128]; /* STARTED with a network of its own: its IPv4 addresses (a comma
                             * list, one per network), or "" */
};
/* Send m, with fd (SCM_RIGHTS) unless it is < 0. 0 or -errno. */
int process_msg_send(int sock, const struct process_msg *m, int fd);
/* FAILED with err and status -1: what a child sends before it gives up. */
void process_msg_fail(int sock, const struct hutch_error *err);
/* Receive one message (flags: 0 or MSG_DONTWAIT; EINTR retried). 1 with *ret (and, when
 * ret_fd is not NULL, a fd that came with it in *ret_fd, close-on-exec; else the fd is
 * closed); 0 at EOF or for a message of another size; -errno. */
int process_msg_recv(int sock, int flags, struct process_msg *ret, int *ret_fd);

/* pidfds of ourselves or of pid (-errno). */
int pidfd_open_self(void);
int pidfd_open_pid(pid_t pid);

/* Start the program at path with argv (environment kept) as a detached process: its own
 * session, no parent of ours (it is orphaned at once), stdin/stdout/stderr on /dev/null,
 * fds[i] as fd 3+i (n_fds <= 8) and no other fd. Nothing of this process's memory is
 * copied: two CLONE_VM|CLONE_VFORK children as in posix_spawn, the first exiting once the
 * second has exec'd (fork's copy-on-write costs ~18 us per page touched afterwards on
 * virtual machines like CI's). 0, or -errno when the exec failed. */
int spawn_detached(const char *path, char *const argv[], const int *fds, size_t n_fds);
/* The same, but our child (for a process that watches it: an instance's supervisor and
 * its image server): once it has exec'd, 0 with *ret the child (its pidfd from
 * CLONE_PIDFD), or -errno when the exec failed (the child is reaped then). */
int spawn_child(const char *path, char *const argv[], const int *fds, size_t n_fds, struct pidref *ret);
/* Fork a process set up as spawn_detached's (own session, stdio on /dev/null, fds[i] as
 * fd 3+i, no other fd, no signal handler or blocked signal of ours) that goes on with this
 * process's code on a copy of its memory. Our child until we exit. Flush stdio first. 0 in
 * the child (which _exits 127 when the set-up fails), its pid here, or -errno. */
pid_t fork_detached(const int *fds, size_t n_fds);
/* Run argv (PATH lookup), wait; returns its exit status (128+N if killed) or -errno.
 * quiet: stdout to /dev/null. */
int spawn_wait(char *const argv[], bool quiet);
