/* Shared by the verbs of cli/: the only place that reads argv and the environment, prints
 * results and errors, and chooses exit codes. */
#pragma once

#include <stdbool.h>

#include "conf/conf.h"
#include "instanced/instanced.h"
#include "runtime/runtime.h"
#include "util/error.h"

struct cli {
        char **environ;
        char **argv; /* hutch's whole command line, for a run through the systemd user manager */
        /* --in-unit=UNIT (hidden, put there by hutch itself): this is that run, inside
         * hutch-run-*.service, whose properties hold the limits */
        const char *in_unit;
        /* --caller=PID:START:PIDNS (hidden, with --in-unit): the hutch waiting for that unit
         * (hutch-systemd run); the run ends when it does */
        const char *caller;
        struct hutch_conf conf;
        bool conf_loaded;
};

int cli_load_conf(struct cli *c);
/* The system hutch.conf this build reads. */
const char *cli_system_conf_path(void);
/* Print "hutch: error: <msg>" and return EXIT_HUTCH_FAILURE. */
int cli_fail(const struct hutch_error *err);
/* The same for a message made here (code: the error's errno, -ENOENT etc.). */
int cli_failf(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "hutch: error: <msg> (see 'hutch VERB --help')": a value hutch refuses, EXIT_HUTCH_FAILURE
 * (255); cli_args_error: a command line Apptainer's parser would reject (unknown verb or
 * option, an option without its value, the wrong number of arguments), EXIT_USAGE (1), as
 * Apptainer. */
int cli_usage_error(const char *verb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int cli_args_error(const char *verb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* While set, errors printed start with "<what>: " (the variable a value came from). */
void cli_error_context(const char *what);
const char *cli_getenv(const struct cli *c, const char *key);
/* true when arg is one of the global logging flags (and applies it) */
bool cli_log_flag(const char *arg);
void cli_help_print(const char *verb);
bool cli_help_has(const char *verb);
/* docker://, library://, ... (and for build, a definition file): "not supported yet", one
 * line, and the exit code; -1 when source may go on. */
int cli_source_check(const char *source, bool build);
/* A regular file whose first meaningful line is "Bootstrap: ..." */
bool cli_is_deffile(const char *path);
/* A SCIF app's name: letters, digits, '.', '_', '-' (not "." or "..") */
bool cli_is_app_name(const char *s);

/* docker://, oras://: pulled into the cache by hutch-registry; *ret_path the cached SIF.
 * disable_cache: pulled into a temporary folder of its own instead, *ret_path the SIF in
 * it, which the caller removes with the folder (unlink_with_folder). Returns -1 to go on,
 * else the exit code (the error printed). */
bool cli_is_registry_source(const char *s);
int cli_registry_fetch(const char *uri, bool no_https, bool disable_cache, char **ret_path);
/* $HUTCH_CACHEDIR, else ~/.hutch/cache; NULL without either. */
char *cli_registry_cache_dir(const struct cli *c);

int verb_launch(struct cli *c, const char *verb, int argc, char **argv);
int verb_inspect(struct cli *c, int argc, char **argv);
int verb_run_help(struct cli *c, int argc, char **argv);
int verb_build(struct cli *c, int argc, char **argv);
int verb_sif(struct cli *c, int argc, char **argv);
int verb_cache(struct cli *c, int argc, char **argv);
int verb_overlay(struct cli *c, int argc, char **argv);

/* The launcher options every running verb shares (exec, run, shell, test, instance start). */
struct launch_args {
        struct launch_spec spec;
        char **env_opts; /* --env, in order */
        char **env_files;
        char **rest;   /* after IMAGE */
        bool instance; /* accept --restart */
        const char *restart;
        int tie_to_job;     /* --tie-to-job[=true|false]: 1, 0; -1 when not given */
        char **limit_flags; /* \"memory=32M\", in order */
        char **env_values;  /* option values read from APPTAINER_<OPTION> and friends */
        const char *apply_cgroups;
        const char *cgroup_parent; /* --cgroup-parent */
        struct cgroup_limits limits;

        const char *systemd;                /* --systemd auto|yes|no */
        struct net_spec net;                /* --net, -p, --network-args, --dns, --add-host */
        const char *network;                /* --network as given */
        bool net_given, network_args_given; /* --net, --network-args on the command line */
        char *image_path;                   /* the cached SIF of a registry IMAGE */
        bool image_temporary;               /* ... pulled with --disable-cache: ours to remove */
        char **security;                    /* --security values, in order */
        char *seccomp_text;                 /* the profile --security seccomp:FILE names */
        char *seccomp_path;                 /* FILE */
        const char *pid_file;               /* --pid-file: the instance's pid, for Type=forking units */
        const char *ready, *ready_timeout;  /* --ready, --ready-timeout as given */
        bool no_https, disable_cache;       /* for a registry IMAGE */
};
int launch_args_parse(struct cli *c, struct launch_args *a, const char *verb, int argc, char **argv);
/* hutch.conf's trusted-key policy for image (cli/trust.c): -1 to go on, else the exit code
 * after the one error line. */
int cli_trust_check(struct cli *c, const char *image);
void launch_args_free(struct launch_args *a);
/* APPTAINER_INSTANCE, SINGULARITY_INSTANCE and HUTCH_INSTANCE=name inside (as Apptainer
 * sets them in an instance and in its joins), unless --env set them. */
int launch_spec_instance_name(struct launch_spec *s, const char *name);

void cli_instance_env(const struct cli *c, struct instance_env *ret);
int verb_instance(struct cli *c, int argc, char **argv);
