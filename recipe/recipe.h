/* Definition files (Apptainer's "recipes"): the parser (header keys, sections, stages, SCIF
 * apps, %arguments templating) and the build that runs them into an image. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "conf/conf.h"
#include "util/error.h"

/* The sections of a stage, in the order a build runs or writes them. */
enum recipe_section {
        RECIPE_HELP,
        RECIPE_SETUP,
        RECIPE_LABELS,
        RECIPE_ENVIRONMENT,
        RECIPE_PRE,
        RECIPE_POST,
        RECIPE_RUNSCRIPT,
        RECIPE_TEST,
        RECIPE_STARTSCRIPT,
        RECIPE_ARGUMENTS,
        RECIPE_FILES, /* its lines are in files[], not in script[] */
        RECIPE_N_SECTIONS,
};

/* The sections of a SCIF app (%appinstall NAME, ...), under /scif/apps/NAME. */
enum recipe_app_section {
        RECIPE_APP_INSTALL,
        RECIPE_APP_RUN,
        RECIPE_APP_ENV,
        RECIPE_APP_LABELS,
        RECIPE_APP_FILES,
        RECIPE_APP_HELP,
        RECIPE_APP_TEST,
        RECIPE_APP_START,
        RECIPE_APP_N_SECTIONS,
};

/* One line of %files: SRC [DST] (DST empty: the same path as SRC). */
struct recipe_file {
        char *src, *dst;
};

/* A %files section; every one with the same argument ("from STAGE", or none: the host) is
 * merged into one, in the order given. */
struct recipe_files {
        char *from; /* the stage named by "from NAME"; NULL: the host */
        struct recipe_file *lines;
        size_t n;
};

struct recipe_kv {
        char *key, *value;
};
/* "KEY VALUE" lines (the first blank splits them; # comments, blank lines skipped), added
 * to *kv (a key given again: the last value); -ENOMEM */
int recipe_labels_add(struct recipe_kv **kv, size_t *n, const char *body);
/* Append a key/value, or replace the value of a key given before; -ENOMEM */
int recipe_kv_set(struct recipe_kv **kv, size_t *n, const char *key, const char *value);
void recipe_kv_free(struct recipe_kv *kv, size_t n);

/* A section given more than once adds its text to the first (Apptainer's rule); the
 * arguments of the last one given win. */
struct recipe_script {
        char *text; /* NULL: the section is absent */
        char *args; /* "-c /bin/bash"; NULL: none */
};

struct recipe_app {
        char *name;
        struct recipe_script script[RECIPE_APP_N_SECTIONS];
        struct recipe_file *files; /* %appfiles */
        size_t n_files;
        struct recipe_kv *labels; /* %applabels */
        size_t n_labels;
};

struct recipe_stage {
        struct recipe_kv *header; /* keys lower-cased, in order */
        size_t n_header;
        const char *bootstrap, *from, *name; /* Bootstrap:, From:, Stage: (in header[]) */
        struct recipe_script script[RECIPE_N_SECTIONS];
        struct recipe_files *files;
        size_t n_files;
        struct recipe_kv *labels; /* %labels, "KEY VALUE" lines; a key given twice: the last */
        size_t n_labels;
        struct recipe_app *apps; /* in the order first named */
        size_t n_apps;
};

struct recipe {
        char *raw; /* the file as written (kept byte-exact in the SIF) */
        size_t raw_len;
        struct recipe_stage *stages;
        size_t n_stages;
        char **unused_args; /* --build-arg keys no template used */
};

const char *recipe_section_name(enum recipe_section s);
const char *recipe_app_section_name(enum recipe_app_section s);
/* The value of a header key (lower-case) of a stage; NULL when absent. */
const char *recipe_header_get(const struct recipe_stage *st, const char *key);

/* Parse a definition file. build_args: "KEY=VALUE" strings (--build-arg and the lines of
 * --build-arg-file, the last one of a key winning over it and over %arguments' default);
 * every {{ KEY }} in the file is replaced before parsing. path names the file in errors. */
int recipe_parse(const char *text, size_t len, char *const *build_args, const char *path, struct recipe *ret,
                 struct hutch_error *err);
void recipe_free(struct recipe *r);
/* "KEY=VALUE" lines of a --build-arg-file (comments and blank lines skipped) appended to
 * *args. */
int recipe_build_args_parse(const char *text, char ***args, struct hutch_error *err);
/* The stage a "%files from NAME" names: its index, or -1. */
int recipe_stage_find(const struct recipe *r, const char *name);

/* ---- building (recipe/build.c) */
struct recipe_build_spec {
        const char *target;
        const char *path; /* the definition file */
        bool sandbox, force, notest, fakeroot;
        bool update;             /* --update: the last stage goes into TARGET, an existing sandbox */
        char **sections;         /* --section: the sections to run (NULL: all; "none": none) */
        bool progress;           /* mksquashfs's progress bar */
        char **build_args;       /* "KEY=VALUE" */
        struct bind_spec *binds; /* --bind: in the containers of %post, %appinstall and %test */
        size_t n_binds;
        bool writable_tmpfs; /* --writable-tmpfs: %test's root writable, its changes dropped */
        bool keep_build;     /* --keep-build: a failed build keeps its folder and names it */
        bool fix_perms;      /* --fix-perms: the owner gets rwX on all of the last stage's rootfs */
        /* --warn-unused-build-args: a --build-arg no template uses is a warning (else an error,
         * as Apptainer's) */
        bool warn_unused_args;
        /* --disable-cache: a registry agent's source is pulled into a temporary folder, not
         * the cache, and removed with it after the build */
        bool disable_cache;
        const struct hutch_conf *conf;
        char **host_env;
};
/* Build every stage of the definition file in a private folder beside the target (each
 * stage's rootfs, bootstrapped, its sections run), then the last stage into the target
 * (SIF, squashfs by its name, or --sandbox folder); the folder is removed whatever happens
 * (but for a failure under keep_build, whose error then names it), so a failed build leaves
 * neither it nor a partial target. As a user the whole build runs
 * as root of a user namespace (runtime_fakeroot_enter). */
int recipe_build(const struct recipe_build_spec *s, struct hutch_error *err);
