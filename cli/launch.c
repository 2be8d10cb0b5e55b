/* exec, run, shell, test: parse launcher options into a struct launch_spec and launch. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "exit.h"
#include "image/image.h"
#include "instanced/instanced.h"
#include "runtime/runtime.h"
#include "util/log.h"
#include "util/process.h"
#include "util/util.h"

enum {
        OPT_MOUNT = 0x100,
        OPT_NO_MOUNT,
        OPT_ENV,
        OPT_ENV_FILE,
        OPT_NO_HOME,
        OPT_PWD,
        OPT_HOSTNAME,
        OPT_WRITABLE_TMPFS,
        OPT_NO_INIT,
        OPT_DEBUG,
        OPT_VERBOSE,
        OPT_QUIET,
        OPT_SILENT,
        OPT_UTS,
        OPT_NET_IGNORED,
        OPT_RESTART,
        OPT_TIE_TO_JOB,
        OPT_NO_TIE_TO_JOB,
        OPT_SYSTEMD,
        OPT_PID_FILE,
        OPT_READY,
        OPT_READY_TIMEOUT,
        OPT_LIMIT,
        OPT_APPLY_CGROUPS,
        OPT_CGROUP_PARENT,
        OPT_NETWORK,
        OPT_NETWORK_ARGS,
        OPT_SECURITY,
        OPT_KEEP_PRIVS,
        OPT_NO_PRIVS,
        OPT_ADD_CAPS,
        OPT_DROP_CAPS,
        OPT_ALLOW_SETUID,
        OPT_PUBLISH,
        OPT_DNS,
        OPT_ADD_HOST,
        OPT_APP,
        OPT_NO_EVAL,
        OPT_NV,
        OPT_ROCM,
        OPT_NO_UMASK,
        OPT_UNSQUASH,
        OPT_NO_HTTPS,
        OPT_DISABLE_CACHE,
        OPT_ENCRYPTED,
        OPT_FUSEMOUNT,
        OPT_COMPAT,
        OPT_NO_NV,
        OPT_NO_ROCM,
        OPT_IGNORE_SUBUID,
        OPT_NO_EFFECT,
};

static const struct option options[] = {
        {"bind", required_argument, NULL, 'B'},
        {"mount", required_argument, NULL, OPT_MOUNT},
        {"no-mount", required_argument, NULL, OPT_NO_MOUNT},
        {"contain", no_argument, NULL, 'c'},
        {"containall", no_argument, NULL, 'C'},
        {"cleanenv", no_argument, NULL, 'e'},
        {"env", required_argument, NULL, OPT_ENV},
        {"env-file", required_argument, NULL, OPT_ENV_FILE},
        {"no-eval", no_argument, NULL, OPT_NO_EVAL},
        {"home", required_argument, NULL, 'H'},
        {"no-home", no_argument, NULL, OPT_NO_HOME},
        {"pwd", required_argument, NULL, OPT_PWD},
        {"cwd", required_argument, NULL, OPT_PWD},
        {"workdir", required_argument, NULL, 'W'},
        {"pid", no_argument, NULL, 'p'},
        {"ipc", no_argument, NULL, 'i'},
        {"uts", no_argument, NULL, OPT_UTS},
        {"hostname", required_argument, NULL, OPT_HOSTNAME},
        {"writable", no_argument, NULL, 'w'},
        {"writable-tmpfs", no_argument, NULL, OPT_WRITABLE_TMPFS},
        {"fakeroot", no_argument, NULL, 'f'},
        {"userns", no_argument, NULL, 'u'},
        {"no-init", no_argument, NULL, OPT_NO_INIT},
        {"shell", required_argument, NULL, 's'},
        {"debug", no_argument, NULL, OPT_DEBUG},
        {"verbose", no_argument, NULL, OPT_VERBOSE},
        {"quiet", no_argument, NULL, OPT_QUIET},
        {"silent", no_argument, NULL, OPT_SILENT},
        {"restart", required_argument, NULL, OPT_RESTART},
        {"tie-to-job", optional_argument, NULL, OPT_TIE_TO_JOB},
        {"no-tie-to-job", no_argument, NULL, OPT_NO_TIE_TO_JOB},
        {"systemd", required_argument, NULL, OPT_SYSTEMD},
        {"pid-file", required_argument, NULL, OPT_PID_FILE},
        {"ready", required_argument, NULL, OPT_READY},
        {"ready-timeout", required_argument, NULL, OPT_READY_TIMEOUT},
        {"apply-cgroups", required_argument, NULL, OPT_APPLY_CGROUPS},
        {"cgroup-parent", required_argument, NULL, OPT_CGROUP_PARENT},
        {"blkio-weight", required_argument, NULL, OPT_LIMIT},
        {"blkio-weight-device", required_argument, NULL, OPT_LIMIT},
        {"cpu-shares", required_argument, NULL, OPT_LIMIT},
        {"cpus", required_argument, NULL, OPT_LIMIT},
        {"cpuset-cpus", required_argument, NULL, OPT_LIMIT},
        {"cpuset-mems", required_argument, NULL, OPT_LIMIT},
        {"device-read-bps", required_argument, NULL, OPT_LIMIT},
        {"device-read-iops", required_argument, NULL, OPT_LIMIT},
        {"device-write-bps", required_argument, NULL, OPT_LIMIT},
        {"device-write-iops", required_argument, NULL, OPT_LIMIT},
        {"memory", required_argument, NULL, OPT_LIMIT},
        {"memory-reservation", required_argument, NULL, OPT_LIMIT},
        {"memory-swap", required_argument, NULL, OPT_LIMIT},
        {"oom-kill-disable", no_argument, NULL, OPT_LIMIT},
        {"pids-limit", required_argument, NULL, OPT_LIMIT},
        /* networks (net/); "-p" is --pid unless a port mapping follows it (parse_options) */
        {"net", no_argument, NULL, 'n'},
        {"network", required_argument, NULL, OPT_NETWORK},
        {"network-args", required_argument, NULL, OPT_NETWORK_ARGS},
        {"security", required_argument, NULL, OPT_SECURITY},
        {"keep-privs", no_argument, NULL, OPT_KEEP_PRIVS},
        {"no-privs", no_argument, NULL, OPT_NO_PRIVS},
        {"add-caps", required_argument, NULL, OPT_ADD_CAPS},
        {"drop-caps", required_argument, NULL, OPT_DROP_CAPS},
        {"allow-setuid", no_argument, NULL, OPT_ALLOW_SETUID},
        {"publish", required_argument, NULL, OPT_PUBLISH},
        {"dns", required_argument, NULL, OPT_DNS},
        {"add-host", required_argument, NULL, OPT_ADD_HOST},
        {"overlay", required_argument, NULL, 'o'},
        {"app", required_argument, NULL, OPT_APP},
        {"nv", no_argument, NULL, OPT_NV},
        {"nvccli", no_argument, NULL, OPT_NV},
        {"rocm", no_argument, NULL, OPT_ROCM},
        {"scratch", required_argument, NULL, 'S'},
        {"no-umask", no_argument, NULL, OPT_NO_UMASK},
        {"unsquash", no_argument, NULL, OPT_UNSQUASH},
        {"no-https", no_argument, NULL, OPT_NO_HTTPS},
        {"nohttps", no_argument, NULL, OPT_NO_HTTPS},
        {"disable-cache", no_argument, NULL, OPT_DISABLE_CACHE},
        {"pem-path", required_argument, NULL, OPT_ENCRYPTED},
        {"passphrase", no_argument, NULL, OPT_ENCRYPTED},
        {"fusemount", required_argument, NULL, OPT_FUSEMOUNT},
        {"compat", no_argument, NULL, OPT_COMPAT},
        {"no-nv", no_argument, NULL, OPT_NO_NV},
        {"no-rocm", no_argument, NULL, OPT_NO_ROCM},
        {"ignore-subuid", no_argument, NULL, OPT_IGNORE_SUBUID},
        /* Apptainer's, with nothing to do here: hutch makes missing mount points itself
         * (--underlay), always uses a user namespace as a user and never the fakeroot
         * command */
        {"underlay", no_argument, NULL, OPT_NO_EFFECT},
        {"ignore-userns", no_argument, NULL, OPT_NO_EFFECT},
        {"ignore-fakeroot-command", no_argument, NULL, OPT_NO_EFFECT},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
};

void launch_args_free(struct launch_args *a)
{
        bind_spec_free_array(a->spec.binds, a->spec.n_binds);
        overlay_spec_free_array(a->spec.overlays, a->spec.n_overlays);
        strv_free(a->spec.env);
        strv_free(a->spec.scratch);
        strv_free(a->spec.no_mount_paths);
        strv_free(a->env_opts);
        strv_free(a->env_files);
        strv_free(a->limit_flags);
        strv_free(a->env_values);
        cgroup_limits_free(&a->limits);
        net_spec_free(&a->net);
        if (a->image_temporary) /* the launch removed it once open, unless it ended before */
                unlink_with_folder(a->image_path);
        free(a->image_path);
        strv_free(a->security);
        free(a->seccomp_text);
        free(a->seccomp_path);
}

/* --env A=1,B=2 is a list (as Apptainer's); a value with a comma but no '=' after it is one. */
static int add_env_opt(struct launch_args *a, const char *v, const char *verb)
{
        _cleanup_strv_ char **parts = NULL;
        bool all_kv = strsplit(v, ",", &parts) >= 0;
        for (char **p = parts; all_kv && p && *p; p++)
                all_kv = strchr(*p, '=') != NULL;
        if (!all_kv || strv_length(parts) < 2)
                return strchr(v, '=') ? strv_extend(&a->env_opts, v)
                                      : -(cli_usage_error(verb, "--env wants KEY=VALUE, not '%s'", v), EINVAL);
        for (char **p = parts; *p; p++)
                if (strv_extend(&a->env_opts, *p) < 0)
                        return -ENOMEM;
        return 0;
}

/* -S/--scratch PATH[,PATH]: normalised, absolute, not "/"; a usage error (its exit code) or
 * 0 / -ENOMEM. */
static int add_scratch(struct launch_spec *s, const char *arg, const char *verb)
{
        _cleanup_strv_ char **v = NULL;
        if (strsplit(arg, ",", &v) < 0)
                return -ENOMEM;
        for (char **d = v; d && *d; d++) {
                char *n = NULL;
                if (path_normalize(*d, &n) < 0 || !strcmp(n, "/")) {
                        free(n);
                        return cli_usage_error(verb, "--scratch wants absolute folders other than /, not '%s'", *d);
                }
                if (strv_push(&s->scratch, n) < 0)
                        return -ENOMEM;
        }
        return 0;
}

/* One option's effect on a: from the command line or from the environment. arg: its value
 * (NULL for a flag), k: its entry in options[]. -1 to go on, else the exit code. */
static int apply_option(struct launch_args *a, const char *verb, size_t k, char *arg)
{
        struct launch_spec *s = &a->spec;
        struct hutch_error err = HUTCH_ERROR_INIT;
        int r = 0;
        switch (options[k].val) {
        case OPT_LIMIT: {
                _cleanup_free_ char *kv = strjoin(options[k].name, "=", arg ? arg : "");
                r = kv ? strv_extend(&a->limit_flags, kv) : -ENOMEM;
                break;
        }
        case OPT_APPLY_CGROUPS: a->apply_cgroups = arg; break;
        case OPT_APP:
                if (!cli_is_app_name(arg))
                        return cli_usage_error(verb, "--app wants an app's name, not '%s'", arg);
                s->app = arg;
                break;
        case OPT_CGROUP_PARENT:
                if (arg[0] != '/' || strstr(arg, "/..") || strstr(arg, "//"))
                        return cli_usage_error(verb, "--cgroup-parent wants a cgroup path like /user.slice/x, not '%s'",
                                               arg);
                a->cgroup_parent = arg;
                break;
        case 'B': r = bind_spec_parse(arg, &s->binds, &s->n_binds, &err); break;
        case 'o': r = overlay_spec_add(arg, &s->overlays, &s->n_overlays, &err); break;
        case OPT_MOUNT: r = mount_spec_parse(arg, &s->binds, &s->n_binds, &err); break;
        case OPT_NO_MOUNT: r = no_mount_parse(arg, &s->no_mount, &s->no_mount_paths, &err); break;
        case 'c': s->contain = true; break;
        case 'C': s->contain = s->pid_ns = s->ipc_ns = s->cleanenv = true; break;
        case 'e': s->cleanenv = true; break;
        case OPT_ENV:
                if (add_env_opt(a, arg, verb) < 0)
                        return EXIT_HUTCH_FAILURE;
                break;
        case OPT_ENV_FILE: r = strv_extend(&a->env_files, arg); break;
        case OPT_NO_EVAL: s->no_eval = true; break;
        case OPT_NV: s->nv = true; break;
        case OPT_ROCM: s->rocm = true; break;
        case 'S':
                if ((r = add_scratch(s, arg, verb)) > 0)
                        return r;
                break;
        case OPT_NO_UMASK: s->no_umask = true; break;
        case OPT_COMPAT: /* Apptainer's OCI/Docker-like defaults */
                s->contain = s->pid_ns = s->ipc_ns = s->cleanenv = true;
                s->no_init = s->no_umask = s->no_eval = s->writable_tmpfs = true;
                break;
        case OPT_NO_NV: s->nv = false; break;
        case OPT_NO_ROCM: s->rocm = false; break;
        case OPT_IGNORE_SUBUID: s->ignore_subuid = true; break;
        case OPT_NO_EFFECT: break;
        case OPT_UNSQUASH: /* hutch's image server reads SquashFS itself: nothing to unpack */
                log_verbose("--unsquash: the image is served as it is, which needs neither FUSE tools nor kernel "
                            "SquashFS");
                break;
        case OPT_NO_HTTPS: a->no_https = true; break;
        case OPT_DISABLE_CACHE: a->disable_cache = true; break;
        case OPT_ENCRYPTED:
                return cli_usage_error(verb,
                                       "--%s: encrypted images are not supported (hutch runs unencrypted SIF, "
                                       "SquashFS, ext3 images and folders)",
                                       options[k].name);
        case OPT_FUSEMOUNT:
                return cli_usage_error(verb, "--fusemount is not supported: mount the FUSE file system on the host "
                                             "and bind it with -B");
        case 'H':
                /* SRC or SRC:DST, as Apptainer's (which refuses a third part too) */
                if (strchr(arg, ':') && strchr(strchr(arg, ':') + 1, ':'))
                        return cli_usage_error(verb,
                                               "--home '%s': home argument has incorrect number of elements: 3 "
                                               "or more (SRC or SRC:DST)",
                                               arg);
                s->home = arg;
                break;
        case OPT_NO_HOME: s->no_home = true; break;
        case OPT_PWD: s->pwd = arg; break;
        case 'W': s->workdir = arg; break;
        case 'p': s->pid_ns = true; break;
        case 'i': s->ipc_ns = true; break;
        case OPT_UTS: s->uts_ns = true; break;
        case OPT_HOSTNAME: s->hostname = arg; break;
        case 'w': s->writable = true; break;
        case OPT_WRITABLE_TMPFS: s->writable_tmpfs = true; break;
        case 'f': s->fakeroot = true; break;
        case 'u': break; /* always a user namespace when not root */
        case OPT_NO_INIT: s->no_init = true; break;
        case 's': s->shell = arg; break;
        case OPT_RESTART:
                if (!a->instance)
                        return cli_args_error(verb, "--restart is an option of 'instance start'");
                a->restart = arg;
                break;
        case OPT_SYSTEMD: a->systemd = arg; break;
        case OPT_PID_FILE:
                if (!a->instance)
                        return cli_args_error(verb, "--pid-file is an option of 'instance start'");
                a->pid_file = arg;
                break;
        case OPT_READY:
        case OPT_READY_TIMEOUT:
                if (!a->instance)
                        return cli_args_error(verb, "--%s is an option of 'instance start'", options[k].name);
                *(options[k].val == OPT_READY ? &a->ready : &a->ready_timeout) = arg;
                break;
        case OPT_TIE_TO_JOB:
        case OPT_NO_TIE_TO_JOB:
                if (!a->instance)
                        return cli_args_error(verb, "--tie-to-job is an option of 'instance start'");
                if (options[k].val == OPT_NO_TIE_TO_JOB || (arg && !strcmp(arg, "false")))
                        a->tie_to_job = 0;
                else if (!arg || !strcmp(arg, "true"))
                        a->tie_to_job = 1;
                else
                        return cli_usage_error(verb, "--tie-to-job takes true or false, not '%s'", arg);
                break;
        case 'n': a->net.enabled = a->net_given = true; break;
        case OPT_NETWORK: a->network = arg; break;
        case OPT_NETWORK_ARGS:
                a->network_args_given = true;
                r = net_args_parse(arg, &a->net, &err);
                break;
        case OPT_SECURITY: r = strv_extend(&a->security, arg); break;
        case OPT_KEEP_PRIVS: s->keep_privs = true; break;
        case OPT_NO_PRIVS: s->no_privs = true; break;
        case OPT_ADD_CAPS: r = runtime_caps_parse(arg, &s->add_caps, &err); break;
        case OPT_DROP_CAPS: r = runtime_caps_parse(arg, &s->drop_caps, &err); break;
        case OPT_ALLOW_SETUID: s->allow_setuid = true; break;
        case OPT_PUBLISH: r = net_publish_parse(arg, &a->net, &err); break;
        case OPT_DNS: r = net_dns_parse(arg, &a->net, &err); break;
        case OPT_ADD_HOST: r = net_add_host_parse(arg, &a->net, &err); break;
        case OPT_DEBUG: log_set_level(LOG_LEVEL_DEBUG); break;
        case OPT_VERBOSE: log_set_level(LOG_LEVEL_VERBOSE); break;
        case OPT_QUIET: log_set_level(LOG_LEVEL_WARNING); break;
        case OPT_SILENT: log_set_level(LOG_LEVEL_ERROR); break;
        case 'h': cli_help_print(verb); exit(0);
        }
        if (r < 0)
                return err.msg[0] ? cli_fail(&err) : cli_usage_error(verb, "out of memory");
        return -1;
}

/* The entry of options[] getopt_long matched: idx for a long option, else the first with
 * that short letter. */
static size_t option_index(int o, int idx)
{
        if (idx >= 0)
                return (size_t) idx;
        size_t k = 0;
        while (options[k].name && options[k].val != o)
                k++;
        return k;
}

/* Go's strconv.ParseBool, which Apptainer's flags use: 1 if true, 0 if false, -1 else. */
static int parse_env_bool(const char *v)
{
        static const char *const yes[] = {"1", "t", "T", "TRUE", "true", "True"};
        static const char *const no[] = {"0", "f", "F", "FALSE", "false", "False"};
        for (size_t i = 0; i < ELEMENTSOF(yes); i++)
                if (!strcmp(v, yes[i]))
                        return 1;
        for (size_t i = 0; i < ELEMENTSOF(no); i++)
                if (!strcmp(v, no[i]))
                        return 0;
        return -1;
}

/* The flag of no value a "--NAME=VALUE" argument names, as Go's pflag takes them
 * ("--cleanenv=false"); SIZE_MAX: none. */
static size_t valued_flag_index(const char *arg)
{
        const char *eq = strchr(arg, '=');
        if (!startswith(arg, "--") || !eq)
                return SIZE_MAX;
        size_t len = (size_t) (eq - arg) - 2;
        for (size_t k = 0; options[k].name; k++)
                if (options[k].has_arg == no_argument && strlen(options[k].name) == len &&
                    !strncmp(options[k].name, arg + 2, len))
                        return k;
        return SIZE_MAX;
}

/* The next option of the command line: its index in options (SIZE_MAX: no more), its
 * value, and whether it is on (false only for a flag of no value given as
 * "--NAME=false"). -1, or the exit status of a refused argument (reported). */
static int option_next(const char *verb, int argc, char **argv, int *before, size_t *ret_k, char **ret_arg,
                       bool *ret_on)
{
        int idx = -1, o = getopt_long(argc, argv, "+B:cCeH:W:S:s:piwfunho:", options, &idx);
        *ret_k = SIZE_MAX;
        *ret_arg = optarg;
        *ret_on = true;
        if (o == -1)
                return -1;
        if (o == '?') {
                /* the argument getopt refused: a whole one only if it moved past exactly
                 * that (a bad letter inside "-Zc" leaves optind where it was) */
                const char *arg = optind == *before + 1 ? argv[*before] : "";
                size_t fk = valued_flag_index(arg);
                if (fk != SIZE_MAX) {
                        int b = parse_env_bool(strchr(arg, '=') + 1);
                        if (b < 0)
                                return cli_args_error(verb, "%s: --%s takes true or false", arg, options[fk].name);
                        *ret_k = fk;
                        *ret_arg = NULL;
                        *ret_on = b;
                        *before = optind;
                        return -1;
                }
                if (startswith(arg, "--"))
                        return cli_args_error(verb, "option '%s' is unknown or misses its value", arg);
                if (optopt)
                        return cli_args_error(verb, "option '-%c' is unknown or misses its value", optopt);
                return cli_args_error(verb, "unknown option '%s'", argv[optind - 1]);
        }
        size_t k = option_index(o, idx);
        /* Apptainer's -p is --pid, podman's -p publishes: a standalone "-p" followed by a
         * port mapping publishes it */
        if (o == 'p' && idx < 0 && !strcmp(argv[optind - 1], "-p") && optind < argc &&
            net_publish_looks_like(argv[optind])) {
                k = option_index(OPT_PUBLISH, -1);
                *ret_arg = argv[optind++];
        }
        *ret_k = k;
        *before = optind;
        return -1;
}

/* Two passes, as Go's pflag takes a flag's last value: the first finds each flag's last
 * value, the second applies the options in order, but no flag whose last value is false
 * ("--cleanenv --cleanenv=false": the environment is kept). A flag given at all, true or
 * false, is over what a variable says (seen). */
static int parse_options(struct launch_args *a, const char *verb, int argc, char **argv, bool *seen)
{
        bool last_on[ELEMENTSOF(options)] = {false};
        size_t k;
        char *arg;
        bool on;
        opterr = 0;
        for (int pass = 0; pass < 2; pass++) {
                int before = 1, r;
                optind = 0; /* glibc: from the start, its state of a short-option group too */
                while ((r = option_next(verb, argc, argv, &before, &k, &arg, &on)) < 0 && k != SIZE_MAX) {
                        bool flag = options[k].has_arg == no_argument;
                        if (pass == 0) {
                                if (flag)
                                        last_on[k] = on;
                                continue;
                        }
                        if (!flag || (on && last_on[k])) {
                                r = apply_option(a, verb, k, arg);
                                if (r >= 0)
                                        return r;
                        }
                        seen[k] = true;
                }
                if (r >= 0)
                        return r;
        }
        return -1;
}

/* ---- Launcher options from the environment, as Apptainer reads them: every option as
 * HUTCH_<NAME>, APPTAINER_<NAME> and SINGULARITY_<NAME> (NAME: the long option upper-cased,
 * '-' as '_'), the first set in that order winning; a flag given on the command line wins
 * over them, except --bind and --mount, whose variables add to the flags (as Apptainer's). */
static const char *const env_prefixes[] = {"HUTCH_", "APPTAINER_", "SINGULARITY_"};

/* Apptainer's names that are not the option's own (its flags' EnvKeys). */
static const struct {
        const char *option, *key;
} env_aliases[] = {
        {"bind", "BINDPATH"},
        {"no-init", "NOSHIMINIT"},
        {"pid", "UNSHARE_PID"},
        {"pwd", "TARGET_PWD"},
};

/* Not from the environment: help, the logging flags (global options of their own) and --env
 * (the *ENV_ prefixes set variables). */
static bool is_env_option(const char *name)
{
        static const char *const not_env[] = {"help", "debug", "verbose", "quiet", "silent", "env"};
        for (size_t i = 0; i < ELEMENTSOF(not_env); i++)
                if (!strcmp(name, not_env[i]))
                        return false;
        return true;
}

/* PREFIX + KEY for the first prefix set to something not blank; *ret_var names it. */
static const char *env_lookup(struct cli *c, const char *key, char *ret_var, size_t len)
{
        const char *found = NULL;
        for (size_t i = 0; i < ELEMENTSOF(env_prefixes); i++) {
                char var[64];
                snprintf(var, sizeof var, "%s%s", env_prefixes[i], key);
                const char *v = cli_getenv(c, var);
                if (!v || !v[strspn(v, " \t")])
                        continue;
                if (!found) {
                        found = v;
                        snprintf(ret_var, len, "%s", var);
                } else if (strcmp(found, v) != 0)
                        log_warning("%s and %s are both set and differ; using %s", ret_var, var, ret_var);
        }
        return found;
}

/* One variable's value, trimmed of blanks, applied as option k. The value lives as long
 * as a. */
static int apply_env_value(struct launch_args *a, const char *verb, size_t k, const char *var, const char *v)
{
        /* Apptainer trims each item of a list option (pflag's string slices), the whole value
         * of the others */
        const char *sep = options[k].val == 'B' || options[k].val == OPT_NO_MOUNT || options[k].val == 'o' ? "," : "";
        _cleanup_free_ char *t = malloc(strlen(v) + 1);
        size_t o = 0;
        if (!t)
                return cli_usage_error(verb, "out of memory");
        for (const char *p = v; *p;) {
                size_t item = strcspn(p, sep), b = strspn(p, " \t"), e = item;
                while (e > b && (p[e - 1] == ' ' || p[e - 1] == '\t'))
                        e--;
                if (o && b < e)
                        t[o++] = ',';
                memcpy(t + o, p + b, e > b ? e - b : 0);
                o += e > b ? e - b : 0;
                p += item + (p[item] == ',');
        }
        t[o] = 0;
        if (options[k].has_arg == no_argument) {
                int b = parse_env_bool(t);
                if (b < 0) {
                        struct hutch_error err = HUTCH_ERROR_INIT;
                        hutch_err(&err, -EINVAL, "%s wants true or false (1, t, TRUE; 0, f, FALSE), not '%s'", var, v);
                        return cli_fail(&err);
                }
                return b ? apply_option(a, verb, k, NULL) : -1;
        }
        if (options[k].val == OPT_LIMIT) {
                /* checked here, where the variable can still be named */
                struct cgroup_limits l;
                struct hutch_error err = HUTCH_ERROR_INIT;
                cgroup_limits_init(&l);
                int r = cgroup_limit_flag(&l, options[k].name, t, &err);
                cgroup_limits_free(&l);
                if (r < 0)
                        return hutch_err_wrap(&err, "%s", var), cli_fail(&err);
        }
        char *keep = steal_pointer(&t);
        if (strv_push(&a->env_values, keep) < 0)
                return cli_usage_error(verb, "out of memory");
        cli_error_context(var);
        int r = apply_option(a, verb, k, keep);
        cli_error_context(NULL);
        return r;
}

static bool is_instance_option(int val)
{
        return val == OPT_RESTART || val == OPT_TIE_TO_JOB || val == OPT_NO_TIE_TO_JOB || val == OPT_PID_FILE ||
               val == OPT_READY || val == OPT_READY_TIMEOUT;
}

static int options_from_env(struct cli *c, struct launch_args *a, const char *verb, const bool *seen)
{
        for (size_t k = 0; options[k].name; k++) {
                const char *name = options[k].name;
                bool adds = options[k].val == 'B' || options[k].val == OPT_MOUNT;
                if ((seen[k] && !adds) || !is_env_option(name) || (is_instance_option(options[k].val) && !a->instance))
                        continue;
                /* the derived key first, then Apptainer's other names for the option */
                for (size_t j = 0; j <= ELEMENTSOF(env_aliases); j++) {
                        char key[48], var[64];
                        if (j > 0 && strcmp(env_aliases[j - 1].option, name) != 0)
                                continue;
                        snprintf(key, sizeof key, "%s", j ? env_aliases[j - 1].key : name);
                        for (char *p = key; *p; p++)
                                *p = *p == '-' ? '_' : (char) toupper((unsigned char) *p);
                        const char *v = env_lookup(c, key, var, sizeof var);
                        /* --workdir from the environment only with --contain, as Apptainer uses it */
                        if (v && options[k].val == 'W' && !a->spec.contain)
                                continue;
                        int r = v ? apply_env_value(a, verb, k, var, v) : -1;
                        if (r >= 0)
                                return r;
                }
        }
        return -1;
}

/* A forced variable's name reaches the container's shell wrapper as shell text: only a
 * POSIX name (as env files require) may pass. from: the prefix or option it came with. */
static int put_forced(struct launch_args *a, const char *entry, const char *from)
{
        size_t kl = strcspn(entry, "=");
        if (!is_valid_env_name(entry, kl)) {
                struct hutch_error err = HUTCH_ERROR_INIT;
                hutch_err(&err, -EINVAL,
                          "%s: '%.*s' is not a variable name (letters, digits and '_', not starting with a digit)",
                          from, (int) kl, entry);
                return cli_fail(&err);
        }
        char *v = strdup(entry);
        return v && strv_env_put(&a->spec.env, v) >= 0 ? 0 : -ENOMEM;
}

/* Forced env, lowest priority first: *ENV_ prefixes, then --env-file, then --env. */
static int build_env(struct cli *c, struct launch_args *a)
{
        static const char *const prefixes[] = {"SINGULARITYENV_", "APPTAINERENV_", "HUTCHENV_"};
        struct hutch_error err = HUTCH_ERROR_INIT;
        int r;

        /* what Apptainer never lets a prefixed variable set (its alwaysOmitKeys): HOME comes
         * from --home, the others are its own settings */
        static const char *const refused[] = {"HOME", "APPTAINER_SHELL", "APPTAINER_APPNAME", "SINGULARITY_SHELL",
                                              "SINGULARITY_APPNAME"};
        for (size_t i = 0; i < ELEMENTSOF(prefixes); i++)
                for (char **e = c->environ; e && *e; e++) {
                        const char *eq = strchr(*e, '=');
                        if (!startswith(*e, prefixes[i]) || !eq)
                                continue;
                        const char *key = *e + strlen(prefixes[i]);
                        size_t kl = (size_t) (eq - key);
                        bool refuse = false;
                        for (size_t k = 0; k < ELEMENTSOF(refused); k++)
                                refuse |= strlen(refused[k]) == kl && !strncmp(key, refused[k], kl);
                        if (refuse) {
                                log_warning("Overriding %.*s environment variable with %.*s is not permitted", (int) kl,
                                            key, (int) (eq - *e), *e);
                                continue;
                        }
                        if (i == 0 && is_valid_env_name(key, kl)) { /* SINGULARITYENV_: Apptainer's words */
                                _cleanup_free_ char *newer = NULL;
                                if (asprintf(&newer, "APPTAINERENV_%.*s", (int) kl, key) < 0)
                                        return -ENOMEM;
                                const char *nv = strv_env_get(c->environ, newer);
                                if (!nv)
                                        log_info("Environment variable %.*s is set, but %s is preferred",
                                                 (int) (eq - *e), *e, newer);
                                else if (strcmp(nv, eq + 1) != 0) {
                                        log_warning("%.*s and %s have different values, using the latter",
                                                    (int) (eq - *e), *e, newer);
                                        log_warning("Skipping environment variable [%s], %.*s is already overridden "
                                                    "with different value [%s]",
                                                    *e, (int) kl, key, nv);
                                }
                        }
                        if ((r = put_forced(a, key, prefixes[i])) != 0)
                                return r;
                }
        /* an env file's values are expanded here, as the file is read (env_file_parse); they
         * reach the container escaped, so its shell does not expand them again */
        for (char **f = a->env_files; f && *f; f++) {
                _cleanup_free_ char *text = NULL;
                _cleanup_strv_ char **vars = NULL; /* its ${NAME}: its own lines' or the host's */
                if (conf_file_read(*f, 1 << 20, "env file", &text, &err) < 0 ||
                    env_file_parse(text, *f, c->environ, &vars, &err) < 0)
                        return cli_fail(&err);
                for (char **v = vars; v && *v; v++) {
                        const char *eq = strchr(*v, '=');
                        _cleanup_free_ char *key = strndup(*v, eq - *v),
                                            *val = a->spec.no_eval ? strdup(eq + 1) : shell_dquote_escape(eq + 1);
                        char *entry = key && val ? strjoin(key, "=", val) : NULL;
                        if (!entry || strv_env_put(&a->spec.env, entry) < 0)
                                return -ENOMEM;
                }
        }
        for (char **e = a->env_opts; e && *e; e++)
                if ((r = put_forced(a, *e, "--env")) != 0)
                        return r;
        /* a forced LD_LIBRARY_PATH keeps the libraries --nv binds reachable (Apptainer appends
         * its libs folder so) */
        const char *ld = strv_env_get(a->spec.env, "LD_LIBRARY_PATH");
        if (ld && *ld) {
                char *v = strjoin("LD_LIBRARY_PATH=", ld, ":/.singularity.d/libs");
                if (!v || strv_env_put(&a->spec.env, v) < 0)
                        return -ENOMEM;
        }
        return 0;
}

/* Options, IMAGE and the rest into a->spec; -1 to go on, else the exit code. */
/* A "name=value" list (flags, hutch.conf defaults and maxima) into limits. */
static int limits_from_list(struct cgroup_limits *l, char *const *list, const char *from, struct hutch_error *err)
{
        for (char *const *kv = list; kv && *kv; kv++) {
                _cleanup_free_ char *name = strndup(*kv, strcspn(*kv, "="));
                const char *v = strchr(*kv, '=') ? strchr(*kv, '=') + 1 : "";
                int r = name ? cgroup_limit_flag(l, name, v, err) : -ENOMEM;
                if (r < 0)
                        return from ? hutch_err_wrap(err, "%s", from) : r;
        }
        return 0;
}

/* --apply-cgroups, then the flags (which win), then hutch.conf's defaults for what is still
 * unset, then its maxima (which win over everything, with a warning). */
static int build_limits(struct cli *c, struct launch_args *a)
{
        struct hutch_error err = HUTCH_ERROR_INIT;
        struct cgroup_limits *l = &a->limits;
        cgroup_limits_init(l);
        if (a->apply_cgroups) {
                _cleanup_free_ char *text = NULL;
                if (conf_file_read(a->apply_cgroups, 1 << 20, "cgroups file", &text, &err) < 0)
                        return cli_fail(&err);
                if (cgroup_toml_parse(text, a->apply_cgroups, l, &err) < 0)
                        return cli_fail(&err);
        }
        if (limits_from_list(l, a->limit_flags, NULL, &err) < 0)
                return cli_fail(&err);
        struct cgroup_limits def, max, umax;
        cgroup_limits_init(&def);
        cgroup_limits_init(&max);
        cgroup_limits_init(&umax);
        int r = limits_from_list(&def, c->conf.limit_defaults, "hutch.conf default", &err);
        if (r >= 0)
                r = limits_from_list(&max, c->conf.limit_maxima, "hutch.conf max", &err);
        /* the user's own maxima apply after the admin's: both hold */
        if (r >= 0)
                r = limits_from_list(&umax, c->conf.limit_maxima_user, "your hutch.conf's max", &err);
        if (r >= 0) {
                _cleanup_free_ char *what = NULL, *uwhat = NULL;
                cgroup_limits_default(l, &def);
                if (cgroup_limits_clamp(l, &max, &what) > 0)
                        log_warning("lowered to the maximum hutch.conf allows: %s", what);
                if (cgroup_limits_clamp(l, &umax, &uwhat) > 0)
                        log_warning("lowered to the maximum your hutch.conf sets: %s", uwhat);
        }
        cgroup_limits_free(&def);
        cgroup_limits_free(&max);
        cgroup_limits_free(&umax);
        if (r < 0)
                return cli_fail(&err);
        if (cgroup_limits_any(l))
                a->spec.limits = l;
        /* the admin's 'cgroup parent' holds for users: a flag may only go deeper */
        if (a->cgroup_parent && conf_cgroup_parent_check(&c->conf, a->cgroup_parent, getuid(), &err) < 0)
                return cli_fail(&err);
        a->spec.cgroup_parent = a->cgroup_parent ? a->cgroup_parent : c->conf.cgroup_parent;
        return 0;
}

/* --net, --network, -p: resolved against hutch.conf's policy and the named networks in the
 * network/ folder beside the system hutch.conf; published host ports must be free now. -1
 * to go on. */
static int build_net(struct cli *c, struct launch_args *a)
{
        struct hutch_error err = HUTCH_ERROR_INIT;
        struct net_spec *n = &a->net;
        a->spec.net = n;
        if (!n->enabled && !a->network)
                return -1;
        if (!a->net_given && (a->network || a->network_args_given)) /* Apptainer's words */
                log_info("Setting --net (required by %s)", a->network ? "--network" : "--network-args");
        /* the admin's folder, beside the system hutch.conf (a user's file only tightens) */
        char netdir[PATH_MAX];
        net_named_dir(netdir, sizeof netdir);
        if (net_spec_resolve(n, a->network, &c->conf, netdir, getuid() == 0, &err) < 0 || net_ports_check(n, &err) < 0)
                return cli_fail(&err);
        return -1;
}

/* One --security value: seccomp:FILE|default, uid:N, gid:N (Apptainer's forms; apparmor:
 * and selinux: are not supported). -1 to go on. */
static int security_one(struct launch_args *a, const char *verb, const char *v)
{
        struct launch_spec *s = &a->spec;
        struct hutch_error err = HUTCH_ERROR_INIT;
        uint64_t n;
        if (startswith(v, "seccomp:")) {
                const char *f = v + 8;
                free(a->seccomp_path);
                if (!(a->seccomp_path = strdup(f)))
                        return cli_usage_error(verb, "out of memory");
                s->seccomp_name = a->seccomp_path;
                if (!strcmp(f, "default")) {
                        s->seccomp_default = true;
                        return -1;
                }
                free(a->seccomp_text);
                a->seccomp_text = NULL;
                if (conf_file_read(f, 1 << 20, "seccomp profile", &a->seccomp_text, &err) < 0)
                        return cli_fail(&err);
                s->seccomp_json = a->seccomp_text;
                s->seccomp_default = false;
                return -1;
        }
        if (startswith(v, "uid:") || startswith(v, "gid:")) {
                if (parse_u64_range(v + 4, 0, UINT32_MAX - 1, &n) < 0)
                        return cli_usage_error(verb, "--security %.4s wants a number, not '%s'", v, v + 4);
                if (v[0] == 'u') {
                        s->has_uid = true;
                        s->uid = (uid_t) n;
                } else {
                        s->has_gid = true;
                        s->gid = (gid_t) n;
                }
                return -1;
        }
        return cli_usage_error(verb, "--security '%s' is not seccomp:PROFILE.json, seccomp:default, uid:N or gid:N", v);
}

/* --security values (comma lists) and the privilege options: which are root's (or
 * fakeroot's) alone is checked here, before anything starts. -1 to go on. */
static int build_security(struct launch_args *a, const char *verb)
{
        struct launch_spec *s = &a->spec;
        int r;
        for (char **p = a->security; p && *p; p++) {
                _cleanup_strv_ char **v = NULL;
                if (strsplit(*p, ",", &v) < 0)
                        return cli_usage_error(verb, "out of memory");
                for (char **q = v; *q; q++)
                        if ((r = security_one(a, verb, *q)) >= 0)
                                return r;
        }
        bool root = getuid() == 0;
        const char *what = NULL;
        if (!root && (s->has_uid || s->has_gid))
                what = "--security uid:/gid:";
        else if (!root && s->allow_setuid)
                what = "--allow-setuid";
        else if (!root && !s->fakeroot && s->keep_privs)
                what = "--keep-privs";
        else if (!root && !s->fakeroot && s->add_caps)
                what = "--add-caps";
        if (what) {
                struct hutch_error err = HUTCH_ERROR_INIT;
                hutch_err(&err, -EPERM, "%s is for root%s only", what,
                          s->has_uid || s->has_gid || s->allow_setuid ? "" : " and --fakeroot");
                return cli_fail(&err);
        }
        return -1;
}

/* Joining a running instance adds a process to a root assembled at its start: options that
 * would shape that root are refused rather than silently ignored. -1 to go on. */
static int join_options_check(const struct launch_spec *s, const char *verb)
{
        if (!startswith(s->image, "instance://"))
                return -1;
        const char *opt = s->n_overlays       ? "--overlay"
                          : s->writable_tmpfs ? "--writable-tmpfs"
                          : s->writable       ? "--writable"
                                              : NULL;
        if (!opt)
                return -1;
        return cli_usage_error(
                verb, "%s cannot be used with %s: an instance's root is set up by 'instance start' (give %s there)",
                opt, s->image, opt);
}

int launch_args_parse(struct cli *c, struct launch_args *a, const char *verb, int argc, char **argv)
{
        struct launch_spec *s = &a->spec;
        int r;

        s->conf = &c->conf;
        s->host_env = c->environ;
        bool seen[ELEMENTSOF(options)] = {false};
        if ((r = parse_options(a, verb, argc, argv, seen)) >= 0)
                return r;
        if (optind >= argc)
                return cli_args_error(verb, "missing IMAGE");
        s->image = argv[optind++];
        if (!cli_is_registry_source(s->image) && (r = cli_source_check(s->image, false)) >= 0)
                return r;
        a->rest = argv + optind;
        s->argv = a->rest;
        if ((r = options_from_env(c, a, verb, seen)) >= 0)
                return r;
        if ((r = join_options_check(s, verb)) >= 0)
                return r;
        if (s->writable && image_file_is_sif(s->image)) {
                /* --writable on a SIF writes into its overlay partition */
                struct hutch_error err = HUTCH_ERROR_INIT;
                if (overlay_spec_writable_sif(s->image, &s->overlays, &s->n_overlays, &err) < 0)
                        return cli_fail(&err);
                s->writable = false;
        }
        /* a throw-away layer beside a lasting one (an --overlay, or -w's SIF overlay): which
         * one takes the writes? Refused, as Apptainer refuses it, here where the command line
         * is read, before any overlay is attached (an ext3 image's superblock is written at
         * its mount). Instances read their command line here too. */
        ssize_t upper = overlay_upper_index(s->overlays, s->n_overlays);
        if (s->writable_tmpfs && upper >= 0) {
                struct hutch_error err = HUTCH_ERROR_INIT;
                hutch_err(&err, -EINVAL,
                          "--writable-tmpfs cannot be used with the writable overlay '%s' (add ':ro' to it)",
                          s->overlays[upper].path);
                return cli_fail(&err);
        }
        if ((r = build_env(c, a)) != 0)
                return r < 0 ? cli_usage_error(verb, "out of memory") : r;
        if ((r = build_limits(c, a)) != 0)
                return r;
        if ((r = build_net(c, a)) >= 0)
                return r;
        if ((r = build_security(a, verb)) >= 0)
                return r;
        if (cli_is_registry_source(s->image)) {
                /* --disable-cache (or APPTAINER_DISABLE_CACHE): a batch run's image is pulled
                 * into a temporary folder and removed once the launch has it open; an
                 * instance's must outlive its start (a restart opens it again) */
                if (a->disable_cache && a->instance) {
                        /* given here, refused; from a site-wide APPTAINER_DISABLE_CACHE, noted */
                        if (seen[option_index(OPT_DISABLE_CACHE, -1)])
                                return cli_usage_error(verb, "--disable-cache: an instance's registry image runs from "
                                                             "the cache; pull it to a file with 'hutch pull "
                                                             "--disable-cache' and start that");
                        log_verbose("DISABLE_CACHE from the environment: an instance's registry image runs from the "
                                    "cache all the same");
                        a->disable_cache = false;
                }
                if ((r = cli_registry_fetch(s->image, a->no_https, a->disable_cache, &a->image_path)) >= 0)
                        return r;
                s->image = a->image_path;
                a->image_temporary = s->image_temporary = a->disable_cache;
        }
        return cli_trust_check(c, s->image);
}

int launch_spec_instance_name(struct launch_spec *s, const char *name)
{
        static const char *const keys[] = {"APPTAINER_INSTANCE", "SINGULARITY_INSTANCE", "HUTCH_INSTANCE"};
        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                if (strv_env_get(s->env, keys[i]))
                        continue;
                _cleanup_free_ char *kv = NULL;
                if (asprintf(&kv, "%s=%s", keys[i], name) < 0)
                        return -ENOMEM;
                if (strv_push(&s->env, steal_pointer(&kv)) < 0)
                        return -ENOMEM;
        }
        return 0;
}

/* A unit written by hand (Type=notify) around `hutch exec|run`: the payload reaches the
 * manager's $NOTIFY_SOCKET. A path is bound at the same path inside and the variable kept
 * even under --cleanenv (unless --env sets it); an abstract socket ('@') lives in the
 * network namespace, so only the host's network reaches it. */
static int notify_passthrough(struct cli *c, struct launch_args *a)
{
        struct launch_spec *s = &a->spec;
        const char *v = cli_getenv(c, "NOTIFY_SOCKET");
        if (!v || !*v)
                return 0;
        if (v[0] == '@') {
                if (a->net.enabled)
                        log_warning("NOTIFY_SOCKET '%s' is an abstract socket, which a container with a network of its "
                                    "own cannot reach",
                                    v);
        } else if (v[0] == '/')
                s->notify_socket = v;
        else
                return 0;
        if (strv_env_get(s->env, "NOTIFY_SOCKET"))
                return 0;
        _cleanup_free_ char *kv = strjoin("NOTIFY_SOCKET=", v, NULL);
        return kv ? strv_push(&s->env, steal_pointer(&kv)) : -ENOMEM;
}

/* Inside a batch job: its scheduler accounts for the job's own processes and cgroup. */
static bool in_batch_job(const struct cli *c)
{
        static const char *const vars[] = {"SLURM_JOB_ID", "PBS_JOBID", "LSB_JOBID"};
        for (size_t i = 0; i < ELEMENTSOF(vars); i++) {
                const char *v = cli_getenv(c, vars[i]);
                if (v && *v)
                        return true;
        }
        return false;
}

/* Who applies a batch run's limits: hutch in a cgroup of its own beneath the caller's
 * (where that is delegated and has the controllers), else, per --systemd or hutch.conf
 * 'systemd' (auto: where a manager is reachable, outside batch jobs and without a cgroup
 * parent named), the user's systemd manager, in a transient service that runs this same
 * command (this process becomes hutch-systemd run and never comes back). -1 to launch
 * here, else the exit code. */
static int limits_keeper(struct cli *c, struct launch_args *a)
{
        struct launch_spec *s = &a->spec;
        struct hutch_error err = HUTCH_ERROR_INIT, why = HUTCH_ERROR_INIT;
        enum instance_systemd mode;
        if (c->in_unit) {
                if (!instance_batch_unit_is_own(c->in_unit)) {
                        hutch_err(&err, -EINVAL, "--in-unit is hutch's own: this is not unit '%s'", c->in_unit);
                        return cli_fail(&err);
                }
                s->limits = NULL; /* the unit's properties hold them */
                return -1;
        }
        if (!s->limits || startswith(s->image, "instance://"))
                return -1;
        if (instance_systemd_parse(a->systemd ? a->systemd : c->conf.systemd, &mode, &err) < 0) {
                cli_error_context(a->systemd ? NULL : "hutch.conf 'systemd'");
                int r = cli_fail(&err);
                cli_error_context(NULL);
                return r;
        }
        struct instance_env env;
        cli_instance_env(c, &env);
        if (mode != INSTANCE_SYSTEMD_YES) {
                if ((mode == INSTANCE_SYSTEMD_AUTO && (in_batch_job(c) || s->cgroup_parent)) ||
                    cgroup_probe(s->limits, s->cgroup_parent, &why) >= 0)
                        return -1;
                bool reachable = instance_manager_reachable(&env);
                if (mode == INSTANCE_SYSTEMD_NO || !reachable) {
                        hutch_err(&err, why.code, "%s; %s", why.msg,
                                  mode == INSTANCE_SYSTEMD_NO
                                          ? (reachable ? "--systemd no keeps them from your systemd user manager, "
                                                         "which could apply them (--systemd auto)"
                                                       : "and --systemd no keeps them from a systemd user manager")
                                          : "and no systemd user manager is reachable to apply them instead (no "
                                            "$XDG_RUNTIME_DIR/systemd/private: `loginctl enable-linger` or a login "
                                            "session starts one)");
                        return cli_fail(&err);
                }
        }
        if (a->image_temporary) /* the unit runs this command again, which pulls it again */
                unlink_with_folder(a->image_path);
        a->image_temporary = false;
        instance_batch_unit_exec(&env, s->limits, c->argv + 1, &err);
        return cli_fail(&err);
}

/* --caller=PID:START:PIDNS inside the unit: a pidfd of the hutch waiting for this run (-1 in
 * *ret_fd where its pid means nothing here: another PID namespace than the manager's, or a
 * kernel without pidfd_open), so that the run ends with it; an error when it has ended. */
static int caller_tie(const char *caller, int *ret_fd, struct hutch_error *err)
{
        unsigned long long pid, start, ns, t;
        char extra;
        struct stat st;
        *ret_fd = -1;
        if (sscanf(caller, "%llu:%llu:%llu%c", &pid, &start, &ns, &extra) != 3 || pid == 0 || pid > INT_MAX)
                return hutch_err(err, -EINVAL, "--caller is hutch's own: '%s' is not PID:START:PIDNS", caller);
        if (stat("/proc/self/ns/pid", &st) < 0 || st.st_ino != ns) {
                log_warning("the hutch that asked for this run is in another PID namespace than the systemd user "
                            "manager: the run will not end should that hutch be killed");
                return 0;
        }
        int fd = pidfd_open_pid((pid_t) pid);
        if (fd == -ENOSYS)
                return 0;
        if (fd < 0 || proc_start_time((pid_t) pid, &t) < 0 || t != start) {
                if (fd >= 0)
                        close(fd);
                return hutch_err(err, -ESRCH, "the hutch that asked for this run (pid %llu) has ended", pid);
        }
        *ret_fd = fd;
        return 0;
}

/* hutch.conf 'audit batch runs': the run's start (status -1) or end as an entry in the
 * journal (or syslog), as an instance's. Never fails the run. */
static void batch_audit(const struct launch_spec *s, const char *verb, int status)
{
        struct passwd *pw = getpwuid(getuid());
        char uid[24];
        snprintf(uid, sizeof uid, "%u", (unsigned) getuid());
        _cleanup_free_ char *limits = NULL;
        if (s->limits && cgroup_limits_format(s->limits, &limits) < 0)
                limits = NULL;
        struct instance_audit a = {.event = status < 0 ? "start" : "end",
                                   .verb = verb,
                                   .user = pw ? pw->pw_name : uid,
                                   .image = s->image,
                                   .limits = limits,
                                   .uid = getuid(),
                                   .pid = getpid(),
                                   .exit_status = status};
        instance_audit(&a);
}

/* Under 'audit batch runs' hutch stays the run's parent, to log its end, and inside a unit
 * tied to its caller (tie_fd), to end the run with it: a child goes on with the launch
 * (which may exec into the payload) and gets the signals this process does. 0 in the
 * child; in the parent 1 once the child ended, its status in *ret_status; or -errno. */
static int audit_parent(int tie_fd, int *ret_status)
{
        sigset_t all, old;
        sigfillset(&all);
        sigprocmask(SIG_BLOCK, &all, &old);
        struct pidref child = PIDREF_NULL;
        int r = process_fork(FORK_DEATHSIG, &child);
        if (r > 0) {
                *ret_status = runtime_forward_until_exit(&child, tie_fd);
                pidref_done(&child);
        }
        sigprocmask(SIG_SETMASK, &old, NULL);
        return r;
}

int verb_launch(struct cli *c, const char *verb, int argc, char **argv)
{
        struct launch_args a = {0};
        struct hutch_error err = HUTCH_ERROR_INIT;
        struct launch_spec *s = &a.spec;
        _cleanup_close_ int tie_fd = -EBADF;
        int r, status = 0;

        s->action = !strcmp(verb, "exec")    ? LAUNCH_EXEC
                    : !strcmp(verb, "run")   ? LAUNCH_RUN
                    : !strcmp(verb, "shell") ? LAUNCH_SHELL
                                             : LAUNCH_TEST;
        if ((r = launch_args_parse(c, &a, verb, argc, argv)) >= 0)
                goto out;
        if (s->action == LAUNCH_EXEC && !s->argv[0]) {
                r = cli_args_error(verb, "missing COMMAND to execute in '%s'", s->image);
                goto out;
        }
        if ((r = limits_keeper(c, &a)) >= 0)
                goto out;
        if (c->in_unit && c->caller && caller_tie(c->caller, &tie_fd, &err) < 0) {
                r = cli_fail(&err);
                goto out;
        }
        if (c->conf.audit_batch || tie_fd >= 0) {
                if (c->conf.audit_batch)
                        batch_audit(s, verb, -1);
                if ((r = audit_parent(tie_fd, &status)) != 0) {
                        r = r < 0 ? (hutch_err_sys(&err, r, "cannot fork"), cli_fail(&err)) : status;
                        if (c->conf.audit_batch)
                                batch_audit(s, verb, r);
                        goto out;
                }
                /* the child: on with the run, whose end the parent logs or ties to the caller */
                closep(&tie_fd);
                tie_fd = -EBADF;
        }
        if (startswith(s->image, "instance://")) {
                struct instance_env env;
                cli_instance_env(c, &env);
                if (launch_spec_instance_name(s, s->image + strlen("instance://")) < 0) {
                        r = cli_usage_error(verb, "out of memory");
                        goto out;
                }
                r = instance_join(&env, s->image + strlen("instance://"), s, &status, &err);
        } else if ((r = notify_passthrough(c, &a)) < 0) {
                r = cli_usage_error(verb, "out of memory");
                goto out;
        } else
                r = runtime_launch(s, NULL, &status, &err);
        r = r < 0 ? cli_fail(&err) : status;
out:
        launch_args_free(&a);
        return r;
}
