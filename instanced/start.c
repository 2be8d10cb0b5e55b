/* `instance start`, the CLI's half: start a supervisor by a fresh exec (so its memory is
 * its own, not a copy of the CLI's; spawned without fork's copy), detached from the
 * caller's session, and wait on a socket until it says the container runs or failed. */
#include <errno.h>
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
        /* the supervisor's fd 3 is its socket to us, as LISTEN_FDS numbering starts at 3 */
        int r = spawn_self_detached(spec->supervisor_argv, &sp[1], 1);
        close(sp[1]);
        if (r < 0) {
                close(sp[0]);
                return hutch_err_sys(err, r, "cannot start the supervisor");
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
