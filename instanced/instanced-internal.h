/* Shared internals of instanced/: the state folder, its lock and the CLI-supervisor channel. */
#pragma once

#include "instanced.h"
#include "util/process.h"

/* The supervisor keeps its instance folder open at this fd, so `instance list --all` can
 * find every instance from the live supervisors in /proc. */
#define SUPERVISOR_DIR_FD 4
#define SUPERVISOR_COMM "hutch-supervise"
/* The supervisor's control socket: abstract, so no one's file system is followed to it
 * (root connects to another user's), named after the supervisor's pid and start time. */
#define CONTROL_NAME_FMT "hutch-control-%d-%llu"

/* The supervisor's command line: spec->supervisor_path instance supervise --sync-fd=N
 * spec->supervisor_args... */
int instance_supervisor_argv(const struct instance_spec *spec, int sync_fd, char ***ret);
/* instance_start through the user's systemd manager; *ret_fallback when --systemd auto
 * found none (nothing was done). */
int instance_start_systemd(const struct instance_spec *spec, bool *ret_fallback, int *ret_status,
                           struct hutch_error *err);
/* One sd_notify message ("READY=1\nSTATUS=...") to the unit's manager. */
int instance_notify(const char *socket_path, const char *msg);
/* The CLI's wait for the supervisor's word on sock. */
int instance_sync_wait(const struct instance_spec *spec, int sock, int *ret_status, struct hutch_error *err);

/* Open (and with create, make) the state root new instances go to; 0700, owned by the
 * caller. */
int state_root_open(const struct instance_env *env, bool create, int *ret_fd, struct hutch_error *err);
/* Every state root of the user that exists (instance_state_roots), each once, the first
 * root's errors reported; the others are skipped when unusable. */
#define STATE_ROOTS_MAX 3
int state_roots_open(const struct instance_env *env, int ret_fds[STATE_ROOTS_MAX], size_t *ret_n,
                     struct hutch_error *err);
/* Lock NAME in the root new instances go to, and make sure no live instance of that name
 * is in another root: -EEXIST when one is. With max > 0, -EUSERS when the user would run
 * more than max instances with this one (counted once it is locked, so two racing starts
 * both see each other). */
int instance_claim(const struct instance_env *env, const char *name, unsigned max, int *ret_root_fd, int *ret_dir_fd,
                   int *ret_lock_fd, struct hutch_error *err);
/* Lock NAME: create NAME/ and NAME/lock, take an OFD write lock without waiting. -EEXIST
 * when a live supervisor holds it. Retries when the file was replaced under us. */
int instance_lock(int root_fd, const char *name, int *ret_dir_fd, int *ret_lock_fd, struct hutch_error *err);
/* Remove NAME's state, lock and folder (the caller holds the lock). */
void instance_dir_remove(int root_fd, int dir_fd, const char *name);
int instance_state_write(int dir_fd, const struct instance_state *st);
/* Read NAME's state if its supervisor is alive: 0 and *ret filled; -ESRCH when the lock is
 * free (stale: removed when remove_stale); -EAGAIN while starting (no state yet). */
/* The state in dir_fd of a live supervisor whose real uid is uid, trusting nothing in it:
 * lock and state must be regular files of uid (no symlink followed, nothing blocks), the
 * read is capped and the state must name uid. -ESRCH when the lock is free. */
int instance_state_read_trusted(int dir_fd, uid_t uid, struct instance_state *ret);
int instance_state_load(int root_fd, const char *name, bool remove_stale, struct instance_state *ret);

/* Readiness probes (ready.c). A probe of spec->ready (TCP or EXEC) for the container whose
 * PID 1 is init (our child), as a child of ours held by *ret, which exits 0 once ready. */
int ready_probe_start(const struct instance_spec *spec, const struct pidref *init, struct pidref *ret);
/* --ready notify: a datagram socket NAME/notify in the instance folder dir_fd (non-blocking);
 * *ret_path its host path, for the container's bind. */
#define READY_NOTIFY_NAME "notify"
#define READY_NOTIFY_DST "/run/hutch/notify"
int ready_notify_open(int dir_fd, int *ret_fd, char **ret_path);
/* Reads what waits on fd: true when a message said READY=1. */
bool ready_notify_read(int fd);
