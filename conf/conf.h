/* System configuration (hutch.conf, parsed with inih) and the pure parsers for what users
 * write: bind specs, --mount specs, env files, --no-mount names. No side effects. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/error.h"

enum mount_dev { MOUNT_DEV_NO, MOUNT_DEV_MINIMAL, MOUNT_DEV_YES };

struct hutch_conf {
        bool mount_home, mount_tmp, mount_proc, mount_sys, mount_devpts, mount_hostfs;
        enum mount_dev mount_dev;
        bool allow_sif, allow_squashfs, allow_dir;
        bool user_bind_control;
        bool enable_overlay;
        char **bind_paths;               /* "src[:dst[:opts]]" as in the file */
        char *cgroup_parent;             /* 'cgroup parent': where containers' cgroups go; NULL: the caller's */
        bool cgroup_parent_admins;       /* it came from the system file: users' --cgroup-parent stays beneath */
        char **limit_defaults;           /* "memory=4G", "cpus=2", "pids-limit=512": when the user asks for none */
        char **limit_maxima;             /* the same names: an admin's maximum wins over a user's flag */
        uint64_t instance_log_max_size;  /* bytes per log file before rotation; 0 = no cap */
        uint64_t instance_ready_timeout; /* ms `instance start` waits for the container to settle */
        uint64_t file_cache_size;        /* bytes of decompressed files kept per user; 0 = none */
        uint64_t sessiondir_max_size;    /* bytes of the staging tmpfs (--writable-tmpfs, --contain); 0 = no cap */
        /* networks (net/): the --net default, which networks users may use (a comma list of
         * none, pasta, slirp4netns, bridge and named networks), the built-in bridge */
        char *net_default;     /* NULL: none */
        char *net_users_allow; /* NULL: none, pasta, slirp4netns */
        char *net_bridge;      /* NULL: hutch0 */
        char *net_subnet;      /* NULL: 10.89.0.0/24 */
        bool net_masquerade;
        /* Admin policy (hutch.conf(5)); a user's file can only tighten it, see conf_tighten(). */
        bool allow_fakeroot;
        bool audit_batch;                  /* 'audit batch runs': exec|run|shell|test log a start and an end */
        bool enforce_bind_paths;           /* users may not drop or cover the 'bind path' entries */
        uint64_t max_instances;            /* running instances per user; 0 = no limit */
        char **limit_container_paths;      /* an image must lie beneath one of these; NULL: anywhere */
        char **limit_container_owners;     /* an image must belong to one of these users; NULL: anyone */
        char **limit_container_paths_user; /* the same from the user's own file: both must hold */
        char **limit_container_owners_user;
        char **limit_maxima_user; /* the user's own maxima: applied after the admin's */
        uint64_t set_mask;        /* the keys this file set (bit: index in the key table) */
        /* 'trusted key = FINGERPRINT [FOLDER...]' lines as written (sign/: trust_policy_for) */
        char **trusted_keys;
        /* 'systemd': auto (NULL), yes or no: instances as units of the user's manager */
        char *systemd;
        unsigned n_warnings;
};

void conf_defaults(struct hutch_conf *c);
void conf_free(struct hutch_conf *c);
/* Parse path over the defaults already in c. Unknown keys and bad values are warnings with
 * file:line (logged), not errors: an old binary must run with a newer config. A missing file
 * is not an error (-ENOENT returned, c untouched). */
int conf_load(struct hutch_conf *c, const char *path, struct hutch_error *err);
/* A file users name (configuration, env files, cgroups files), read whole: a regular file of
 * at most max bytes, never waiting on a FIFO or device. The error says what is wrong with
 * it, naming it as "<what> '<path>'". */
int conf_file_read(const char *path, size_t max, const char *what, char **ret, struct hutch_error *err);
int conf_parse_string(struct hutch_conf *c, const char *text, const char *name, struct hutch_error *err);

/* The system file: always read, whatever the environment says; refused (-EPERM) unless it
 * is a regular file owned by root and not writable by group or others. -ENOENT when absent
 * (the defaults stay). */
int conf_load_system(struct hutch_conf *c, const char *path, struct hutch_error *err);
/* A user's file (HUTCH_CONF or ~/.hutch/hutch.conf) over the system's c: parsed on its own,
 * then merged by conf_tighten(). -ENOENT when absent. */
int conf_load_user(struct hutch_conf *c, const char *path, struct hutch_error *err);
/* Merge the keys user set into sys, each only in the tighter direction (a 'no' turns a
 * permission off, never on; sizes and counts only shrink; lists of limits both apply).
 * A loosening key is logged (naming the file name) and ignored. user is emptied. Pure, for tests. */
void conf_tighten(struct hutch_conf *sys, struct hutch_conf *user, const char *name);
/* 'limit container paths' and 'limit container owners' (both the admin's and the user's)
 * for an opened image: its real path from fd, its owner from fstat. -EPERM names the key. */
int conf_image_check(const struct hutch_conf *c, int fd, const char *path, struct hutch_error *err);
/* 'enforce bind paths': -EPERM when a user's bind destination dst equals, covers or lies
 * beneath the destination of a 'bind path' entry. */
int conf_bind_check(const struct hutch_conf *c, const char *dst, struct hutch_error *err);
/* --cgroup-parent of a caller with uid: where the system file sets 'cgroup parent', a user
 * (not root) may only name that cgroup or one beneath it; -EPERM otherwise. */
int conf_cgroup_parent_check(const struct hutch_conf *c, const char *parent, uid_t uid, struct hutch_error *err);

struct bind_spec {
        char *src;
        char *dst;
        bool ro;
};
void bind_spec_free_array(struct bind_spec *b, size_t n);
/* "src[:dst[:ro|rw]]"; several separated by commas. Appends to *v / *n. */
int bind_spec_parse(const char *s, struct bind_spec **v, size_t *n, struct hutch_error *err);
/* --mount "type=bind,src=…,dst=…[,ro|readonly]" */
int mount_spec_parse(const char *s, struct bind_spec **v, size_t *n, struct hutch_error *err);

/* An env file: KEY=VALUE lines, # comments, blank lines, optional `export `, values in
 * single or double quotes; $NAME and ${NAME} outside single quotes take the value set above
 * in the file (or in *env), else host's. Appends "KEY=VALUE" to *env. Errors name file:line. */
int env_file_parse(const char *text, const char *name, char *const *host, char ***env, struct hutch_error *err);

/* --no-mount names -> bit mask. */
enum no_mount_bit {
        NO_MOUNT_BIND_PATHS = 1u << 0,
        NO_MOUNT_CWD = 1u << 1,
        NO_MOUNT_DEV = 1u << 2,
        NO_MOUNT_DEVPTS = 1u << 3,
        NO_MOUNT_HOME = 1u << 4,
        NO_MOUNT_HOSTFS = 1u << 5,
        NO_MOUNT_PROC = 1u << 6,
        NO_MOUNT_SYS = 1u << 7,
        NO_MOUNT_TMP = 1u << 8,
        NO_MOUNT_HOSTS = 1u << 9,
        NO_MOUNT_RESOLV = 1u << 10,
        NO_MOUNT_PASSWD = 1u << 11,
        NO_MOUNT_GROUP = 1u << 12,
};
/* --no-mount LIST (as Apptainer's): names set bits of mask; another absolute path is the
 * destination of a hutch.conf 'bind path' to leave out, added to *paths; an unknown name is
 * a warning. Fails only when out of memory. */
int no_mount_parse(const char *s, unsigned *mask, char ***paths, struct hutch_error *err);
