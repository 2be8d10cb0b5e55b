/* Instances: long-running containers per user, each kept by one small supervisor process
 * (forked by `instance start`), tracked in per-user state files that are re-checked on
 * every read. No daemon: the CLI starts a supervisor, talks to it through signals and its
 * state, and every reader verifies liveness through the supervisor's lock. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "runtime/runtime.h"
#include "util/error.h"

#define INSTANCE_NAME_MAX 64

enum restart_policy { RESTART_NO, RESTART_ON_FAILURE, RESTART_ALWAYS };
/* --systemd: a unit of the user's systemd manager keeps the supervisor (yes), where one is
 * reachable (auto), or never (no) */
enum instance_systemd { INSTANCE_SYSTEMD_AUTO, INSTANCE_SYSTEMD_YES, INSTANCE_SYSTEMD_NO };

/* --ready: when a start is done. NONE: once the container's processes settle (the
 * default); NOTIFY: the payload sends READY=1 to $NOTIFY_SOCKET; TCP: 127.0.0.1:port in
 * the container's network accepts a connection; EXEC: cmd, run by the container's
 * /bin/sh -c in the instance, exits 0 (retried). */
enum instance_ready_kind { INSTANCE_READY_NONE, INSTANCE_READY_NOTIFY, INSTANCE_READY_TCP, INSTANCE_READY_EXEC };
#define INSTANCE_READY_TIMEOUT_DEFAULT_MS 60000
struct instance_ready {
        enum instance_ready_kind kind;
        unsigned port;
        const char *cmd;
        unsigned timeout_ms; /* the payload not ready by then: the start fails */
};
/* --ready VALUE and --ready-timeout SECONDS (each NULL when not given). */
int instance_ready_parse(const char *ready, const char *timeout, struct instance_ready *ret, struct hutch_error *err);

/* Where a user's state and logs live; filled by cli/ from the caller's environment. */
/* A connection to a supervisor's control socket made ahead (instance_control_connect). */
struct instance_control {
        pid_t supervisor;
        unsigned long long start;
        int fd;
};

struct instance_env {
        uid_t uid;
        const char *xdg_runtime_dir; /* NULL when unset */
        const char *home;
        const char *runtime_base; /* where the users' runtime folders are; NULL: /run/user */
        /* connections instance_stop uses for these supervisors (root's, made before it
         * became the user), else it connects itself */
        const struct instance_control *controls;
        size_t n_controls;
        bool controls_only; /* root as the user: no connection of the user's own, which would name it */
};

struct instance_spec {
        struct launch_spec *launch;
        const char *name;
        enum restart_policy restart;
        unsigned max_restarts; /* on-failure:N; 0 = no limit */
        uint64_t log_max_size; /* 0 = no cap */
        unsigned settle_ms;    /* cap on the wait for the container to settle at start */
        struct instance_ready ready;
        unsigned max_instances; /* hutch.conf 'max instances': per user, this one included; 0 = no limit */
        struct instance_env env;
        const char *job_id; /* the batch job started in (SLURM_JOB_ID, PBS_JOBID, LSB_JOBID), or NULL */
        /* --tie-to-job: the instance is stopped when this process of the job ends (0: not tied) */
        pid_t job_pid;
        unsigned long long job_pid_start;
        /* instance_start execs the supervisor as `supervisor_path instance supervise
         * --sync-fd=N supervisor_args...`, where the args re-state this spec ("--tie=PID:START",
         * "--", "start", the start's own arguments) */
        const char *supervisor_path;
        char *const *supervisor_args;
        enum instance_systemd systemd;
        /* in the supervisor: the systemd unit it runs as (--unit), or NULL, and that unit's
         * $NOTIFY_SOCKET (or NULL) */
        const char *unit;
        const char *notify_socket;
};

/* What the state file of a running instance holds. */
struct instance_state {
        char *name;
        pid_t pid; /* PID 1 of the container, host pid */
        unsigned long long pid_start;
        pid_t supervisor;
        unsigned long long supervisor_start;
        uid_t uid;
        char *image;
        long long started; /* unix time of the first start */
        unsigned restarts;
        char *restart; /* policy as given: no, on-failure:3, always */
        char *log_out, *log_err;
        char *cgroup;  /* cgroup_to_string(), empty without limits */
        char *job;     /* the batch job id, empty outside a job */
        pid_t job_pid; /* tied to the job: its process watched, else 0 */
        char *ip;      /* with a network of its own: the container's IPv4 address, else empty */
        char *ports;   /* published ports, "127.0.0.1:8080->80/tcp,...", else empty */
        char *keeper;  /* "systemd" when a systemd user unit runs the supervisor, else empty */
        char *unit;    /* that unit's name */
        /* the start's own --security seccomp: and privilege flags, which `exec instance://`
         * applies too (instance_security_format); with "seccomp=file", seccomp_json holds
         * the profile, read from seccomp.json in the state folder by instance_state_load */
        char *security;
        char *seccomp_json;
        char *limits; /* cgroup_limits_format() of its limits, empty without */
        char *digest; /* image_digest() of its image ("sha256:HEX"), empty for a folder or until known */
        char *home;   /* HOME inside, as the start set it (-H's destination), for a join to set alike */
};

void instance_state_clear(struct instance_state *st);
void instance_state_free_array(struct instance_state *v, size_t n);
/* "key=value" lines; unknown keys ignored (a newer writer), missing name/pid/supervisor an
 * error. Pure, for tests. */
int instance_state_parse(const char *text, struct instance_state *ret, struct hutch_error *err);
int instance_state_format(const struct instance_state *st, char **ret);
/* A start's security settings as one line of words: "seccomp=default" or "seccomp=file"
 * (the profile's text kept beside the state), "keep-privs", "no-privs", "add-caps=HEX",
 * "drop-caps=HEX"; "" when none. */
int instance_security_format(const struct launch_spec *s, char **ret);
/* What a joining command (`exec instance://`) inherits: the instance's seccomp profile
 * when the command names none of its own, and its privilege flags when it gives none.
 * json: the profile's text for "seccomp=file" (NULL: none kept, -ENOENT). Unknown words
 * are skipped (a newer writer). */
int instance_security_apply(const char *security, const char *json, struct launch_spec *s);

/* hutch-NAME.service, NAME escaped as systemd-escape does; and back. -EINVAL for what is
 * not such a unit. */
int instance_unit_name(const char *name, char *buf, size_t size);
int instance_unit_name_parse(const char *unit, char *buf, size_t size);
int instance_systemd_parse(const char *s, enum instance_systemd *ret, struct hutch_error *err);
/* Limits as "-p" "Name=type:value" words of hutch-systemd, appended to *v. */
int instance_unit_limit_props(const struct cgroup_limits *l, char ***v);

/* Is the caller's systemd user manager reachable ($XDG_RUNTIME_DIR/systemd/private)? */
bool instance_manager_reachable(const struct instance_env *env);
/* A batch run (exec, run, shell, test) whose limits the caller's own cgroup cannot take,
 * as the transient service hutch-run-PID-RANDOM.service of the user's systemd manager:
 * execs hutch-systemd run, which has the manager fork hutch again with args (hutch's own
 * command line after argv[0]) behind the marker --in-unit=UNIT, the limits as the unit's
 * properties and Delegate=yes, the caller's stdio, environment and folder; it waits for the
 * unit and exits with the payload's status. Returns only on failure. */
int instance_batch_unit_exec(const struct instance_env *env, const struct cgroup_limits *l, char *const *args,
                             struct hutch_error *err);
/* --in-unit=UNIT: is this process in that hutch-run-*.service's cgroup? */
bool instance_batch_unit_is_own(const char *unit);

/* A unit file that runs instance name (`instance unit`): ExecStart= the supervisor with
 * the start's arguments, its limits as properties, systemd's Restart=. */
struct instance_unit {
        const char *hutch; /* absolute path of hutch */
        const char *name;
        char *const *args; /* the start's own arguments: [options] IMAGE NAME [ARGS] */
        const char *cwd;
        const char *restart;   /* systemd's Restart=: no, on-failure, always */
        const char *wanted_by; /* NULL: default.target */
        const struct cgroup_limits *limits;
};
int instance_unit_file(const struct instance_unit *u, char **ret);

/* One audit event of an instance (start, stop, exit, restart): a journal entry with
 * HUTCH_* fields, or a syslog line without journald. exit_status -1: none. instance NULL:
 * a batch run's (hutch.conf 'audit batch runs'), its verb in verb, no keeper. */
struct instance_audit {
        const char *event, *instance, *user, *image, *image_digest, *keeper, *unit, *limits, *verb;
        uid_t uid;
        pid_t pid;
        int exit_status;
        unsigned restarts;
        bool requested; /* a stop someone asked for, requested_by the kernel's word on who */
        uid_t requested_by;
};
/* journald's native datagram (KEY=VALUE lines); pure, for tests */
int instance_audit_format(const struct instance_audit *a, char **ret, size_t *ret_len);
void instance_audit(const struct instance_audit *a);

/* [A-Za-z0-9][A-Za-z0-9_.-]{0,63} */
bool instance_name_is_valid(const char *name);
int instance_name_check(const char *name, struct hutch_error *err);
/* "no", "always", "on-failure", "on-failure:N" */
int restart_policy_parse(const char *s, enum restart_policy *ret, unsigned *ret_max, struct hutch_error *err);

/* The folder new NAME folders go to: /run/user/UID/hutch/instances when /run/user/UID is a
 * folder of the user, else $HOME/.hutch/instances/<hostname>: the same from a login shell,
 * cron, su or a batch job, whether XDG_RUNTIME_DIR is set or not. Not created. */
int instance_state_root(const struct instance_env *env, char **ret);
/* Every folder an instance of the user on this host can be in, the one above first: the
 * other of the two, and $XDG_RUNTIME_DIR/hutch/instances when that is the user's. */
int instance_state_roots(const struct instance_env *env, char ***ret);
int instance_log_paths(const struct instance_env *env, const char *name, char **ret_out, char **ret_err);

/* CLI side of `instance start`: execs the supervisor, detached, and waits until the
 * container runs or failed. On a failed payload *ret_status is its exit code (else -1) so
 * the caller can show the container's own error output. */
int instance_start(const struct instance_spec *spec, int *ret_status, struct hutch_error *err);
/* The supervisor's life (`hutch instance supervise`). sync_fd is the socket to whoever
 * started it (-1: none). Returns when the instance is over and everything it had is gone:
 * the container's last exit status (128+N when killed by signal N), for the supervisor to
 * exit with (systemd, scripts and `wait` read it), or -errno when it never ran. */
int instance_supervise(const struct instance_spec *spec, int sync_fd, struct hutch_error *err);
/* A supervisor that cannot even read its spec tells its starter why over sync_fd. */
void instance_sync_fail(int sync_fd, const struct hutch_error *err);

/* Running instances of env's user matching glob (NULL: all), sorted by name. Dead entries
 * are removed; their names are appended to *ret_gone when given. */
int instance_list(const struct instance_env *env, const char *glob, struct instance_state **ret, size_t *ret_n,
                  char ***ret_gone, struct hutch_error *err);
/* Every live supervisor visible in /proc (root: all users), optionally of one uid. */
int instance_list_all(const char *glob, bool one_uid, uid_t uid, struct instance_state **ret, size_t *ret_n,
                      struct hutch_error *err);
/* Exactly one running instance by name; -ENOENT when there is none. */
int instance_find(const struct instance_env *env, const char *name, struct instance_state *ret,
                  struct hutch_error *err);
/* A connection to the control socket of supervisor pid (started at start, owned by owner:
 * both checked with SO_PEERCRED), where a stop is asked for; the supervisor learns the
 * asker's uid from the kernel (SO_PEERCRED again) for the audit trail. -errno when it has
 * none or it is not that process. */
int instance_control_connect(pid_t supervisor, unsigned long long start, uid_t owner);
/* Stop: sig to the payload, SIGKILL after timeout_ms (force: at once); returns once the
 * supervisor and state are gone. Asked over the supervisor's control socket (env's
 * connection to it, or a new one), else by a signal. */
int instance_stop(const struct instance_env *env, const struct instance_state *st, int sig, int timeout_ms, bool force,
                  struct hutch_error *err);
/* exec/run/shell in instance NAME. */
int instance_join(const struct instance_env *env, const char *name, const struct launch_spec *spec, int *ret_status,
                  struct hutch_error *err);
