/* `instance start`, the CLI's half: exec the supervisor (`hutch instance supervise
 * --sync-fd=3 ... -- start ARGS`, detached from the caller's session) and wait on a socket
 * until it says the container runs or failed. The supervisor is a fresh program that parses
 * the same command line again, so the CLI, a systemd unit's ExecStart= and a unit file all
 * start an instance through one code path. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "instanced-internal.h"
#include "util/cleanup.h"
#include "util/process.h"
#include "util/util.h"

int instance_supervisor_argv(const struct instance_spec *spec, int sync_fd, char ***ret)
{
        _cleanup_strv_ char **v = NULL;
        char fdarg[32];
        snprintf(fdarg, sizeof fdarg, "--sync-fd=%d", sync_fd);
        if (strv_extend(&v, spec->supervisor_path) < 0 || strv_extend(&v, "instance") < 0 ||
            strv_extend(&v, "supervise") < 0 || strv_extend(&v, fdarg) < 0)
                return -ENOMEM;
        for (char *const *a = spec->supervisor_args; a && *a; a++)
                if (strv_extend(&v, *a) < 0)
                        return -ENOMEM;
        *ret = steal_pointer(&v);
        return 0;
}

int instance_sync_wait(const struct instance_spec *spec, int sock, int *ret_status, struct hutch_error *err)
{
        struct process_msg m = {0};
        *ret_status = -1;
        if (process_msg_recv(sock, 0, &m, NULL) != 1)
                return hutch_err(err, -EIO, "the supervisor of instance '%s' exited before the container started",
                                 spec->name);
        if (m.type == PROCESS_MSG_READY)
                return 0;
        *ret_status = m.status;
        *err = m.err;
        if (!err->msg[0])
                hutch_err(err, -EIO, "instance '%s' failed to start", spec->name);
        return err->code < 0 ? err->code : -EIO;
}

int instance_start(const struct instance_spec *spec, int *ret_status, struct hutch_error *err)
{
        int sp[2];
        *ret_status = -1;
        if (spec->systemd != INSTANCE_SYSTEMD_NO) {
                bool fallback;
                int r = instance_start_systemd(spec, &fallback, ret_status, err);
                if (!fallback)
                        return r;
        }
        _cleanup_strv_ char **argv = NULL;
        if (instance_supervisor_argv(spec, 3, &argv) < 0)
                return hutch_err(err, -ENOMEM, "out of memory");
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0)
                return hutch_err_sys(err, -errno, "cannot create the supervisor socket");
        /* the supervisor's fd 3 is its socket to us; /proc/self/exe is this very binary,
         * whatever its path became since */
        int r = spawn_detached("/proc/self/exe", argv, &sp[1], 1);
        close(sp[1]);
        if (r < 0) {
                close(sp[0]);
                return hutch_err_sys(err, r, "cannot start the supervisor");
        }
        r = instance_sync_wait(spec, sp[0], ret_status, err);
        close(sp[0]);
        return r;
}

void instance_sync_fail(int sync_fd, const struct hutch_error *err)
{
        process_msg_fail(sync_fd, err);
}
