/* `instance start`, the CLI's half: fork the supervisor, detached from the caller's
 * session, and wait on a socket until it says the container runs or failed. The
 * supervisor goes on from the CLI's parsed spec on a copy of its memory (no exec: a fresh
 * hutch paid the dynamic loader's page faults and the parse again, ~1 ms a start here; see
 * docs/performance.md). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "instanced-internal.h"
#include "util/util.h"

int instance_start(const struct instance_spec *spec, int *ret_status, struct hutch_error *err)
{
        int sp[2];
        *ret_status = -1;
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0)
                return hutch_err_sys(err, -errno, "cannot create the supervisor socket");
        fflush(NULL); /* nothing buffered is written twice */
        /* the supervisor's fd 3 is its socket to us */
        pid_t pid = fork_detached(&sp[1], 1);
        if (pid == 0) {
                struct hutch_error e = HUTCH_ERROR_INIT;
                int r = instance_supervise(spec, 3, &e);
                exit(r < 0 ? 255 : r);
        }
        close(sp[1]);
        if (pid < 0) {
                close(sp[0]);
                return hutch_err_sys(err, pid, "cannot start the supervisor");
        }
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
