/* `instance start`, the CLI's half: start a supervisor by a fresh exec (so its memory is
 * its own, not a copy of the CLI's), detached from the caller's session, and wait on a
 * socket until it says the container runs or failed. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "instanced-internal.h"
#include "util/util.h"

/* The supervisor's fd 3 is its socket to us, as LISTEN_FDS numbering starts at 3. */
#define SUPERVISOR_SYNC_FD 3

static _Noreturn void exec_supervisor(const struct instance_spec *spec, int sock)
{
        int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(devnull, 1) < 0 || dup2(devnull, 2) < 0)
                _exit(127);
        if (sock != SUPERVISOR_SYNC_FD && dup2(sock, SUPERVISOR_SYNC_FD) < 0)
                _exit(127);
        if (sock == SUPERVISOR_SYNC_FD)
                fcntl(sock, F_SETFD, 0);
        int keep[] = {SUPERVISOR_SYNC_FD};
        close_all_fds(SUPERVISOR_SYNC_FD, keep, 1);
        execv("/proc/self/exe", spec->supervisor_argv);
        _exit(127);
}

int instance_start(const struct instance_spec *spec, int *ret_status, struct hutch_error *err)
{
        int sp[2];
        *ret_status = -1;
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0)
                return hutch_err_sys(err, -errno, "cannot create the supervisor socket");
        pid_t mid = fork();
        if (mid < 0) {
                close(sp[0]);
                close(sp[1]);
                return hutch_err_sys(err, -errno, "cannot fork the supervisor");
        }
        if (mid == 0) {
                /* own session and no parent to wait for it: the supervisor outlives us */
                close(sp[0]);
                setsid();
                pid_t p = fork();
                if (p == 0)
                        exec_supervisor(spec, sp[1]);
                _exit(p < 0 ? 1 : 0);
        }
        close(sp[1]);
        int ws;
        while (waitpid(mid, &ws, 0) < 0 && errno == EINTR)
                ;
        struct instance_msg m = {0};
        ssize_t n;
        while ((n = recv(sp[0], &m, sizeof m, 0)) < 0 && errno == EINTR)
                ;
        close(sp[0]);
        if (n != (ssize_t) sizeof m)
                return hutch_err(err, -EIO, "the supervisor of instance '%s' exited before the container started",
                                 spec->name);
        if (m.type == INSTANCE_MSG_READY)
                return 0;
        *ret_status = m.status;
        *err = m.err;
        if (!err->msg[0])
                hutch_err(err, -EIO, "instance '%s' failed to start", spec->name);
        return err->code < 0 ? err->code : -EIO;
}
