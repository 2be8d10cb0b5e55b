/* cgroups: resource limits for containers and instances. The pure half parses what users
 * write (flags, sizes, Apptainer's cgroups TOML) into struct cgroup_limits and translates
 * it to controller files for cgroup v2 or v1; the other half (manager.c) finds the
 * hierarchy, creates a cgroup beneath the caller's own (or `cgroup parent`), writes the
 * files, moves the launcher in, reads usage, and kills and removes it at the end. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/error.h"

enum cgroup_dev_kind { CG_DEV_WEIGHT, CG_DEV_RBPS, CG_DEV_WBPS, CG_DEV_RIOPS, CG_DEV_WIOPS };

struct cgroup_dev_limit {
        unsigned major, minor;
        enum cgroup_dev_kind kind;
        uint64_t value;
};

#define CG_UNSET (-2)     /* int64 fields: not asked for */
#define CG_UNLIMITED (-1) /* memory swap, pids, cpu quota: no limit */

struct cgroup_limits {
        int64_t cpu_quota;   /* us per period; from --cpus or [cpu] quota */
        uint64_t cpu_period; /* us; 0 = default 100000 */
        uint64_t cpu_shares; /* 0 = unset; 2..262144 */
        char *cpuset_cpus, *cpuset_mems;
        int64_t memory, memory_reservation, memory_swap; /* bytes; swap is memory+swap, as Docker/OCI */
        bool oom_kill_disable;
        int64_t pids;
        unsigned blkio_weight; /* 0 = unset; 10..1000 */
        struct cgroup_dev_limit *devs;
        size_t n_devs;
};

void cgroup_limits_init(struct cgroup_limits *l);
void cgroup_limits_free(struct cgroup_limits *l);
bool cgroup_limits_any(const struct cgroup_limits *l);
/* One command-line flag ("memory", "cpus", "device-read-bps", ...) and its value. -ENOENT
 * when name is not a limit flag. Device flags take DEV:VALUE, DEV a block device path. */
int cgroup_limit_flag(struct cgroup_limits *l, const char *name, const char *value, struct hutch_error *err);
bool cgroup_is_limit_flag(const char *name);
/* Apptainer's cgroups TOML (OCI LinuxResources): [memory] limit, reservation, swap,
 * disableOOMKiller; [cpu] shares, quota, period, cpus, mems; [pids] limit; [blockIO] weight,
 * [[blockIO.weightDevice]], [[blockIO.throttle{Read,Write}{Bps,IOPS}Device]]. Unknown keys
 * are errors (a limit must never be dropped silently). name is for messages. */
int cgroup_toml_parse(const char *text, const char *name, struct cgroup_limits *l, struct hutch_error *err);
/* Admin maxima: each limit of *l above the same limit in max (or unset where max sets one)
 * is lowered to it; returns how many were, naming them in *ret_what (malloc'd). */
int cgroup_limits_clamp(struct cgroup_limits *l, const struct cgroup_limits *max, char **ret_what);
/* Defaults: limits unset in *l are taken from def. */
int cgroup_limits_default(struct cgroup_limits *l, const struct cgroup_limits *def);

/* The limits as one line of their flags and values, "memory=1G,cpus=0.5,pids-limit=100"
 * ("" for none or NULL): for state files, `instance list --all` and the audit trail. */
int cgroup_limits_format(const struct cgroup_limits *l, char **ret);

/* One controller file to write: "cpu.max" = "50000 100000". */
struct cgroup_file {
        const char *controller; /* v1 hierarchy name (memory, cpu, pids, blkio, cpuset); v2: the controller */
        const char *file;
        char *value;
};
void cgroup_files_free(struct cgroup_file *f, size_t n);
/* The files for version 1 or 2, in the order they must be written. -EOPNOTSUPP (err says
 * which limit) for a limit the version cannot express. */
int cgroup_limits_files(const struct cgroup_limits *l, int version, struct cgroup_file **ret, size_t *ret_n,
                        struct hutch_error *err);
/* OCI's conversions to cgroup v2 (as crun and runc). */
uint64_t cgroup_shares_to_weight(uint64_t shares);
uint64_t cgroup_blkio_to_io_weight(uint64_t weight);

/* A created cgroup: one folder (v2) or one per v1 hierarchy. */
#define CGROUP_MAX_DIRS 6
struct cgroup {
        int version;
        char *dirs[CGROUP_MAX_DIRS];
        size_t n_dirs;
};
#define CGROUP_NULL \
        {           \
                0   \
        }

/* Create "name" beneath parent (NULL: the caller's own cgroup; else a path inside the
 * hierarchy, as hutch.conf's `cgroup parent`) and write the limits. On failure nothing is
 * left. name is "hutch-...-PID", PID the process that removes it (cgroup_orphans_clean). */
int cgroup_create(const struct cgroup_limits *l, const char *parent, const char *name, struct cgroup *ret,
                  struct hutch_error *err);
/* Could cgroup_create make a cgroup with these limits here? It does, and removes it: the
 * kernel's word on delegation and controllers. err says why not. */
int cgroup_probe(const struct cgroup_limits *l, const char *parent, struct hutch_error *err);
/* Remove the caller's empty cgroups beneath parent (as cgroup_create's) whose owner, the
 * pid ending their name ("hutch-...-PID"), is gone. cgroup_create does it first. */
void cgroup_orphans_clean(const char *parent);
/* The caller's own cgroup v2 (a systemd unit's, Delegate=yes), for stats: -ENOENT
 * without a cgroup2 mount. Nothing is created. */
int cgroup_own(struct cgroup *ret);
/* Move pid (0: the caller) into every folder of cg. */
int cgroup_enter(const struct cgroup *cg, pid_t pid, struct hutch_error *err);
/* cg's folder opened (O_DIRECTORY, close-on-exec) for a child to be born in it
 * (process_fork_into_cgroup): cgroup v2 only, which has one folder; -EOPNOTSUPP for v1
 * (or none), whose processes are moved in with cgroup_enter. */
int cgroup_open_for_clone(const struct cgroup *cg);
/* Kill what is inside, wait for it to be empty, remove the folders. Clears cg. */
void cgroup_destroy(struct cgroup *cg);
/* Forget cg without touching the kernel. */
void cgroup_release(struct cgroup *cg);
/* Did the kernel's OOM killer kill a process in cg? How many times so far? */
bool cgroup_oom_killed(const struct cgroup *cg);
uint64_t cgroup_oom_kills(const struct cgroup *cg);

struct cgroup_stats {
        uint64_t cpu_usage_ns;
        uint64_t memory_current, memory_limit; /* limit 0: none */
        uint64_t pids_current, pids_limit;     /* limit 0: none */
        uint64_t io_read_bytes, io_write_bytes;
};
/* -errno (-EACCES, -ENOENT) when cg's folders cannot be read. */
int cgroup_stats_read(const struct cgroup *cg, struct cgroup_stats *ret);

/* A cgroup as one line for state files, and back. */
int cgroup_to_string(const struct cgroup *cg, char **ret);
int cgroup_from_string(const char *s, struct cgroup *ret);
