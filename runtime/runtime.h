/* The launcher: namespaces, id maps, rootfs assembly, environment and exec. The batch
 * path ends in execve: the calling process becomes the payload. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "cgroups/cgroups.h"
#include "conf/conf.h"
#include "net/net.h"
#include "util/error.h"
#include "util/process.h"

struct overlay_spec;

enum launch_action { LAUNCH_EXEC, LAUNCH_RUN, LAUNCH_SHELL, LAUNCH_TEST, LAUNCH_START };

struct launch_spec {
        const char *image;
        /* image is a temporary file in a folder of its own (a registry IMAGE pulled without
         * the cache): both are removed as soon as the image is open */
        bool image_temporary;
        enum launch_action action;
        char **argv;             /* exec: command and args; run/test/shell: args */
        struct bind_spec *binds; /* -B, --mount, HUTCH_BIND */
        size_t n_binds;
        unsigned no_mount;     /* enum no_mount_bit */
        char **no_mount_paths; /* --no-mount /PATH: hutch.conf 'bind path' entries bound there */
        bool contain, cleanenv, no_home, writable, writable_tmpfs, fakeroot;
        /* a build's step (recipe/): its staging tmpfs, a %post's /tmp, is not capped by
         * hutch.conf 'sessiondir max size' (downloads and unpacked sources live there) */
        bool session_uncapped;
        bool pid_ns, ipc_ns, uts_ns, no_init;
        /* --nv, --rocm: the host's GPU driver files bound in (runtime/gpu.c); --no-umask:
         * the payload starts with umask 0022, not the caller's */
        bool nv, rocm, no_umask;
        /* --ignore-subuid: --fakeroot maps 0 to the caller alone, whatever /etc/subuid grants */
        bool ignore_subuid;
        /* -S/--scratch: writable folders at these paths (normalised, absolute, not "/"):
         * WORKDIR/scratch/PATH with --workdir, else fresh ones in the staging tmpfs, gone
         * with the container */
        char **scratch;
        /* Resource limits: the launcher stays outside as a small parent that creates the
         * cgroup, waits, reports an OOM kill and removes the cgroup. NULL: none. */
        const struct cgroup_limits *limits;
        const char *cgroup_parent; /* hutch.conf 'cgroup parent'; NULL: the caller's cgroup */
        const char *hostname, *home, *pwd, *workdir, *shell;
        /* --app NAME: a SCIF app of the image (/scif/apps/NAME): its runscript, test or
         * startscript, its bin/ first on PATH, its env scripts and SCIF_* variables */
        const char *app;
        /* forced inside: --env, --env-file, HUTCHENV_*; each value is shell text the
         * container's /bin/sh evaluates as if double-quoted, unless no_eval (--no-eval): then
         * it is set as it is */
        char **env;
        bool no_eval;
        char **host_env; /* the caller's environment */
        const struct hutch_conf *conf;
        /* --net and friends (net/net.h); NULL or not enabled: the host's network */
        const struct net_spec *net;
        /* A unix socket of the host the payload reaches as $NOTIFY_SOCKET (sd_notify): bound
         * read-write at notify_socket_dst (NULL: the same path) inside; a missing one is
         * skipped. Setting the variable is the caller's (spec->env). NULL: none. */
        const char *notify_socket, *notify_socket_dst;
        /* --overlay, in the order given (image/image.h) */
        struct overlay_spec *overlays;
        size_t n_overlays;
        /* --security seccomp:FILE (its JSON text) or seccomp:default; applied last before the
         * exec, after the ids and capabilities below */
        const char *seccomp_json;
        const char *seccomp_name; /* FILE, for errors */
        bool seccomp_default;
        /* root: --security uid:N, gid:N; root and fakeroot: --no-privs, --add-caps, --drop-caps
         * (bit N: capability N); root: --allow-setuid (no no_new_privs, no nosuid on images) */
        bool has_uid, has_gid;
        uid_t uid;
        gid_t gid;
        bool keep_privs, no_privs, allow_setuid;
        uint64_t add_caps, drop_caps;
};

/* What only an instance's launch has, beside its spec: the launcher is a child of the
 * instance's supervisor, which started the image's server and holds the overlays' locks
 * for the container's life (across restarts). The launcher makes the init the
 * supervisor's child (a sibling of its own), hands the init back here once the payload
 * runs, and leaves; PID 1 then outlives a payload that exits 0 (as Apptainer's instances
 * do, whose startscript is often empty) and leaves on SIGTERM/SIGINT/SIGHUP. */
struct launch_instance_io {
        /* in: the socket to the image server the supervisor started (image_serve_process()),
         * taken over (closed) by runtime_launch; -EBADF for a folder, which needs none */
        int serve_sock;
        /* out, once the payload was exec'd: the init (PID 1 of the container), our parent's
         * child, with its pidfd */
        struct pidref init;
        /* in: the instance's cgroup, which its init is born in (clone3 into cgroup_fd, the
         * folder of a cgroup v2, when not -EBADF) or enters first thing; NULL: none */
        const struct cgroup *cgroup;
        int cgroup_fd;
        /* out: with a network namespace of its own, the container's IPv4 addresses, one per
         * network, comma-separated (net_address_get), else "" */
        char net_addr[NET_ADDRS_LEN];
};
#define LAUNCH_INSTANCE_IO_INIT \
        ((struct launch_instance_io){.serve_sock = -EBADF, .init = PIDREF_NULL, .cgroup_fd = -EBADF})

/* Runs the payload. Batch (io NULL): without a PID namespace this never returns on success,
 * the process is the payload; with one, the caller's process waits and 0 is returned with
 * *ret_status the exit code to pass on (128+N for a signal). An instance (io given, with
 * pid_ns set and no limits: the supervisor made the cgroup): 0 once the payload runs, with
 * io->init and io->net_addr filled. Negative on failure, err filled. */
int runtime_launch(const struct launch_spec *spec, struct launch_instance_io *io, int *ret_status,
                   struct hutch_error *err);
/* With every signal blocked since before child existed: pass each one on to it (not the
 * terminal stops) until it exits; its status as an exit code (128+N for signal N). With
 * tie_fd a pidfd (else -1): once that process ends, the child is killed (SIGKILL). */
int runtime_forward_until_exit(const struct pidref *child, int tie_fd);

/* The process identity a joiner needs: PID 1 of an instance and its namespaces. */
struct runtime_target {
        pid_t pid;
        unsigned long long start_time; /* /proc/PID/stat field 22, checked after pidfd_open */
        const char *image;             /* for HUTCH_CONTAINER and friends */
        const char *home;              /* HOME inside as the instance's start set it; NULL: unknown */
};

/* HOME inside the container: -H's destination, /root under --fakeroot, else host_home
 * (the caller's HOME). NULL: out of memory. */
char *runtime_home_inside(const struct launch_spec *s, const char *host_home);

/* exec/run/shell in a running instance: pidfd_open + start-time check, setns into every
 * namespace of the target that differs from ours (one setns call), fork into its PID
 * namespace, exec spec's action there. Waits; *ret_status as runtime_launch. -ESRCH when
 * the target is gone or is another process. */
int runtime_join(const struct launch_spec *spec, const struct runtime_target *t, int *ret_status,
                 struct hutch_error *err);

/* "CAP_SYS_ADMIN,chown,all" into *mask (bit N: capability N). */
int runtime_caps_parse(const char *list, uint64_t *mask, struct hutch_error *err);

/* /etc/subuid-style line lookup: the first range for name or uid. Pure, for tests. */
int subid_find(const char *text, const char *name, uid_t id, unsigned long *ret_start, unsigned long *ret_count);

/* Become root in a new user namespace of this process: with the caller's subordinate id
 * ranges through newuidmap/newgidmap when /etc/subuid and /etc/subgid grant them
 * (*ret_subids true), else with the caller's own ids alone. A rootless build runs whole as
 * that root (as Apptainer's --fakeroot builds do), so that what its scripts chown to other
 * ids stays readable, removable and packable by it. */
int runtime_fakeroot_enter(bool *ret_subids, struct hutch_error *err);
