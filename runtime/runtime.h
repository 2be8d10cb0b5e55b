/* The launcher: namespaces, id maps, rootfs assembly, environment and exec. The batch
 * path ends in execve: the calling process becomes the payload. */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

#include "conf/conf.h"
#include "util/error.h"

enum launch_action { LAUNCH_EXEC, LAUNCH_RUN, LAUNCH_SHELL, LAUNCH_TEST };

struct launch_spec {
        const char *image;
        enum launch_action action;
        char **argv;             /* exec: command and args; run/test/shell: args */
        struct bind_spec *binds; /* -B, --mount, HUTCH_BIND */
        size_t n_binds;
        unsigned no_mount; /* enum no_mount_bit */
        bool contain, cleanenv, no_home, writable, writable_tmpfs, fakeroot;
        bool pid_ns, ipc_ns, uts_ns, no_init;
        const char *hostname, *home, *pwd, *workdir, *shell;
        char **env;      /* forced inside: --env, --env-file, HUTCHENV_* */
        char **host_env; /* the caller's environment */
        const struct hutch_conf *conf;
};

/* Runs the payload. Without a PID namespace this never returns on success: the process is
 * the payload. With one, the caller's process waits and 0 is returned with *ret_status the
 * exit code to pass on (128+N for a signal). Negative on failure, err filled. */
int runtime_launch(const struct launch_spec *spec, int *ret_status, struct hutch_error *err);

/* /etc/subuid-style line lookup: the first range for name or uid. Pure, for tests. */
int subid_find(const char *text, const char *name, uid_t id, unsigned long *ret_start, unsigned long *ret_count);
