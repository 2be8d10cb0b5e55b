/* Shared between the files of the build: the build's state, the helpers that work inside
 * a rootfs by fd, and the stage steps. */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

#include "recipe.h"
#include "runtime/runtime.h"

struct build_ctx {
        const struct recipe_build_spec *spec;
        struct recipe rec;
        char *work;          /* the private folder (absolute) */
        char *workname;      /* ... its name in its parent */
        int workfd;          /* ... held open, O_DIRECTORY */
        int parentfd;        /* its parent (the target's folder), held open */
        bool fakeroot;       /* the build runs as root of a user namespace */
        bool subids;         /* ... with the caller's subordinate ranges, not its id alone */
        char **pulled;       /* per stage: the cached SIF of a registry agent's source, or NULL */
        bool private_mounts; /* the build has a mount namespace of its own (stage_overlay) */
        bool *overlaid;      /* per stage: its rootfs is an overlay mount (stage_overlay) */
};

/* path resolved inside the root (openat2 RESOLVE_IN_ROOT); -errno */
int root_open(int rootfd, const char *path, int flags);
int root_mkdirs(int rootfd, const char *path, mode_t mode);
int root_write(int rootfd, const char *path, const char *data, size_t len, mode_t mode);
int root_read(int rootfd, const char *path, char **ret);
bool root_exists(int rootfd, const char *path);
char *mfree_str(char *p);

/* A tool (debootstrap, mksquashfs...) on the host with env (KEY=VALUE) added, the fds of
 * keep_fds (-1 ended) inherited; its stdout silenced by -q */
int host_run(char *const argv[], char *const env[], const int *keep_fds);
/* ... with setup(arg) run in the child before the exec (a negative errno fails it) */
int host_run_setup(char *const argv[], char *const env[], const int *keep_fds, int (*setup)(void *arg), void *arg);
/* A section's script (%setup) on the host: its output shown under -q too, as Apptainer's */
int host_run_script(char *const argv[], char *const env[]);
/* A section's script (%post, %test, %appinstall) in the container; its output shown */
int container_run(const struct build_ctx *b, const char *rootfs, enum launch_action action, char *const argv[],
                  char **env, bool writable, const char *pwd, struct hutch_error *err);
/* The argv of a section's script: "-c SHELL" of its header, else /bin/sh with -e (errexit)
 * and -x (trace: each command echoed as "+ cmd" on stderr, as Apptainer runs %setup and
 * %post) */
int script_argv(const char *args, const char *script, bool errexit, bool trace, char ***ret);

/* recipe/stage.c */
int agent_check(const struct build_ctx *b, const struct recipe_stage *st, struct hutch_error *err);
/* The sources of registry agents (docker, docker-archive, oci, oci-archive) into the
 * cache through hutch-registry, before the build enters its user namespace. */
int agents_fetch(struct build_ctx *b, struct hutch_error *err);
/* url with every %{OSVERSION} (any case, as Apptainer's regex) replaced by ver, in *ret
 * (NULL for a NULL url); -EINVAL when url names it and ver is NULL. */
int osversion_subst(const char *url, const char *ver, char **ret);
char *stage_rootfs(const struct build_ctx *b, size_t i);
/* --section: whether the section named runs */
bool section_wanted(const struct build_ctx *b, const char *name);
int stage_build(struct build_ctx *b, size_t i, struct hutch_error *err);
/* labels.json at path: what is there, the build's org.label-schema.* labels when
 * build_labels (they replace the base image's), then labels[]: a key the base image has
 * keeps its value unless force (Apptainer's rule, with its warning) */
int labels_write(int rootfd, const char *path, const struct recipe_stage *st, const struct recipe_kv *labels, size_t n,
                 bool build_labels, bool force, struct hutch_error *err);

/* recipe/fingerprints.c: the 'Fingerprints:' header */
/* Apptainer's reading of the value: a trailing comment dropped, comma-separated, each 40 hex
 * digits (upper-cased in *ret; duplicates dropped); an empty value requires nothing (*ret
 * NULL). */
int fingerprints_parse(const char *value, char ***ret, struct hutch_error *err);
/* From hutch-sign's `verify-report`: the keys that signed every object group, when
 * the image verifies; else its failure in err (-EBADMSG). */
int fingerprints_signers(const char *report, char ***ret, struct hutch_error *err);
/* The stage's source (source: the localimage's From, or the SIF a registry agent pulled) is
 * a SIF that verifies with the caller's keyrings and is signed by every key the stage's
 * 'Fingerprints:' lists; nothing to do without the header. */
int fingerprints_check(const struct build_ctx *b, const struct recipe_stage *st, const char *source,
                       struct hutch_error *err);
