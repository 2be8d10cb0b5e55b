/* exec, run, shell, test: parse launcher options into a struct launch_spec and launch. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "exit.h"
#include "instanced/instanced.h"
#include "runtime/runtime.h"
#include "util/log.h"
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
        OPT_SHELL,
        OPT_DEBUG,
        OPT_VERBOSE,
        OPT_QUIET,
        OPT_SILENT,
        OPT_UTS,
        OPT_NET_IGNORED,
        OPT_RESTART,
        OPT_TIE_TO_JOB,
        OPT_NO_TIE_TO_JOB,
        OPT_LIMIT,
        OPT_APPLY_CGROUPS,
        OPT_CGROUP_PARENT,
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
        {"home", required_argument, NULL, 'H'},
        {"no-home", no_argument, NULL, OPT_NO_HOME},
        {"pwd", required_argument, NULL, OPT_PWD},
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
        {"shell", required_argument, NULL, OPT_SHELL},
        {"debug", no_argument, NULL, OPT_DEBUG},
        {"verbose", no_argument, NULL, OPT_VERBOSE},
        {"quiet", no_argument, NULL, OPT_QUIET},
        {"silent", no_argument, NULL, OPT_SILENT},
        {"restart", required_argument, NULL, OPT_RESTART},
        {"tie-to-job", optional_argument, NULL, OPT_TIE_TO_JOB},
        {"no-tie-to-job", no_argument, NULL, OPT_NO_TIE_TO_JOB},
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
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
};

void launch_args_free(struct launch_args *a)
{
        bind_spec_free_array(a->spec.binds, a->spec.n_binds);
        strv_free(a->spec.env);
        strv_free(a->env_opts);
        strv_free(a->env_files);
        strv_free(a->limit_flags);
        cgroup_limits_free(&a->limits);
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

static int parse_options(struct launch_args *a, const char *verb, int argc, char **argv)
{
        struct launch_spec *s = &a->spec;
        struct hutch_error err = HUTCH_ERROR_INIT;
        int o;

        optind = 1;
        opterr = 0;
        int idx = -1;
        while ((o = getopt_long(argc, argv, "+B:cCeH:W:piwfuh", options, &idx)) != -1) {
                int r = 0;
                switch (o) {
                case OPT_LIMIT: {
                        _cleanup_free_ char *kv = strjoin(options[idx].name, "=", optarg ? optarg : "");
                        r = kv ? strv_extend(&a->limit_flags, kv) : -ENOMEM;
                        break;
                }
                case OPT_APPLY_CGROUPS: a->apply_cgroups = optarg; break;
                case OPT_CGROUP_PARENT:
                        if (optarg[0] != '/' || strstr(optarg, "/..") || strstr(optarg, "//"))
                                return cli_usage_error(verb,
                                                       "--cgroup-parent wants a cgroup path like /user.slice/x, "
                                                       "not '%s'",
                                                       optarg);
                        a->cgroup_parent = optarg;
                        break;
                case 'B': r = bind_spec_parse(optarg, &s->binds, &s->n_binds, &err); break;
                case OPT_MOUNT: r = mount_spec_parse(optarg, &s->binds, &s->n_binds, &err); break;
                case OPT_NO_MOUNT: r = no_mount_parse(optarg, &s->no_mount, &err); break;
                case 'c': s->contain = true; break;
                case 'C': s->contain = s->pid_ns = s->ipc_ns = s->cleanenv = true; break;
                case 'e': s->cleanenv = true; break;
                case OPT_ENV:
                        if (add_env_opt(a, optarg, verb) < 0)
                                return EXIT_USAGE;
                        break;
                case OPT_ENV_FILE: r = strv_extend(&a->env_files, optarg); break;
                case 'H': s->home = optarg; break;
                case OPT_NO_HOME: s->no_home = true; break;
                case OPT_PWD: s->pwd = optarg; break;
                case 'W': s->workdir = optarg; break;
                case 'p': s->pid_ns = true; break;
                case 'i': s->ipc_ns = true; break;
                case OPT_UTS: s->uts_ns = true; break;
                case OPT_HOSTNAME: s->hostname = optarg; break;
                case 'w': s->writable = true; break;
                case OPT_WRITABLE_TMPFS: s->writable_tmpfs = true; break;
                case 'f': s->fakeroot = true; break;
                case 'u': break; /* always a user namespace when not root */
                case OPT_NO_INIT: s->no_init = true; break;
                case OPT_SHELL: s->shell = optarg; break;
                case OPT_RESTART:
                        if (!a->instance)
                                return cli_usage_error(verb, "--restart is an option of 'instance start'");
                        a->restart = optarg;
                        break;
                case OPT_TIE_TO_JOB:
                case OPT_NO_TIE_TO_JOB:
                        if (!a->instance)
                                return cli_usage_error(verb, "--tie-to-job is an option of 'instance start'");
                        if (o == OPT_NO_TIE_TO_JOB || (optarg && !strcmp(optarg, "false")))
                                a->tie_to_job = 0;
                        else if (!optarg || !strcmp(optarg, "true"))
                                a->tie_to_job = 1;
                        else
                                return cli_usage_error(verb, "--tie-to-job takes true or false, not '%s'", optarg);
                        break;
                case OPT_DEBUG: log_set_level(LOG_LEVEL_DEBUG); break;
                case OPT_VERBOSE: log_set_level(LOG_LEVEL_VERBOSE); break;
                case OPT_QUIET: log_set_level(LOG_LEVEL_WARNING); break;
                case OPT_SILENT: log_set_level(LOG_LEVEL_ERROR); break;
                case 'h': cli_help_print(verb); exit(0);
                case '?':
                default:
                        if (optopt)
                                return cli_usage_error(verb, "option '-%c' is unknown or misses its value", optopt);
                        return cli_usage_error(verb, "unknown option '%s'", argv[optind - 1]);
                }
                if (r < 0)
                        return err.msg[0] ? cli_fail(&err) : cli_usage_error(verb, "out of memory");
        }
        return -1;
}

/* HUTCH_BIND and Apptainer's names for the same thing. */
static int env_binds(struct cli *c, struct launch_spec *s)
{
        static const char *const names[] = {"SINGULARITY_BIND", "SINGULARITY_BINDPATH", "APPTAINER_BIND",
                                            "APPTAINER_BINDPATH", "HUTCH_BIND"};
        struct hutch_error err = HUTCH_ERROR_INIT;
        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                const char *v = cli_getenv(c, names[i]);
                if (v && *v && bind_spec_parse(v, &s->binds, &s->n_binds, &err) < 0)
                        return hutch_err_wrap(&err, "%s", names[i]), cli_fail(&err);
        }
        return 0;
}

/* Forced env, lowest priority first: *ENV_ prefixes, then --env-file, then --env. */
static int build_env(struct cli *c, struct launch_args *a)
{
        static const char *const prefixes[] = {"SINGULARITYENV_", "APPTAINERENV_", "HUTCHENV_"};
        struct hutch_error err = HUTCH_ERROR_INIT;

        for (size_t i = 0; i < ELEMENTSOF(prefixes); i++)
                for (char **e = c->environ; e && *e; e++)
                        if (startswith(*e, prefixes[i]) && strchr(*e, '=')) {
                                char *v = strdup(*e + strlen(prefixes[i]));
                                if (!v || strv_env_put(&a->spec.env, v) < 0)
                                        return -ENOMEM;
                        }
        for (char **f = a->env_files; f && *f; f++) {
                _cleanup_free_ char *text = NULL;
                int r = read_full_at(AT_FDCWD, *f, 1 << 20, &text, NULL);
                if (r < 0) {
                        hutch_err_sys(&err, r, "cannot read env file '%s'", *f);
                        return cli_fail(&err);
                }
                if (env_file_parse(text, *f, &a->spec.env, &err) < 0)
                        return cli_fail(&err);
        }
        for (char **e = a->env_opts; e && *e; e++) {
                char *v = strdup(*e);
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
                int r = read_full_at(AT_FDCWD, a->apply_cgroups, 1 << 20, &text, NULL);
                if (r < 0) {
                        hutch_err_sys(&err, r, "cannot read cgroups file '%s'", a->apply_cgroups);
                        return cli_fail(&err);
                }
                if (cgroup_toml_parse(text, a->apply_cgroups, l, &err) < 0)
                        return cli_fail(&err);
        }
        if (limits_from_list(l, a->limit_flags, NULL, &err) < 0)
                return cli_fail(&err);
        struct cgroup_limits def, max;
        cgroup_limits_init(&def);
        cgroup_limits_init(&max);
        int r = limits_from_list(&def, c->conf.limit_defaults, "hutch.conf default", &err);
        if (r >= 0)
                r = limits_from_list(&max, c->conf.limit_maxima, "hutch.conf max", &err);
        if (r >= 0) {
                _cleanup_free_ char *what = NULL;
                cgroup_limits_default(l, &def);
                if (cgroup_limits_clamp(l, &max, &what) > 0)
                        log_warning("lowered to the maximum hutch.conf allows: %s", what);
        }
        cgroup_limits_free(&def);
        cgroup_limits_free(&max);
        if (r < 0)
                return cli_fail(&err);
        if (cgroup_limits_any(l))
                a->spec.limits = l;
        a->spec.cgroup_parent = a->cgroup_parent ? a->cgroup_parent : c->conf.cgroup_parent;
        return 0;
}

int launch_args_parse(struct cli *c, struct launch_args *a, const char *verb, int argc, char **argv)
{
        struct launch_spec *s = &a->spec;
        int r;

        s->conf = &c->conf;
        s->host_env = c->environ;
        if ((r = parse_options(a, verb, argc, argv)) >= 0)
                return r;
        if (optind >= argc)
                return cli_usage_error(verb, "missing IMAGE");
        s->image = argv[optind++];
        a->rest = argv + optind;
        s->argv = a->rest;
        if (!s->shell)
                s->shell =
                        cli_getenv(c, "HUTCH_SHELL") ? cli_getenv(c, "HUTCH_SHELL") : cli_getenv(c, "APPTAINER_SHELL");
        if (s->contain && s->workdir == NULL && cli_getenv(c, "HUTCH_WORKDIR"))
                s->workdir = cli_getenv(c, "HUTCH_WORKDIR");
        if ((r = env_binds(c, s)) != 0 || (r = build_env(c, a)) != 0)
                return r < 0 ? cli_usage_error(verb, "out of memory") : r;
        if ((r = build_limits(c, a)) != 0)
                return r;
        return -1;
}

int verb_launch(struct cli *c, const char *verb, int argc, char **argv)
{
        struct launch_args a = {0};
        struct hutch_error err = HUTCH_ERROR_INIT;
        struct launch_spec *s = &a.spec;
        int r, status = 0;

        s->action = !strcmp(verb, "exec")    ? LAUNCH_EXEC
                    : !strcmp(verb, "run")   ? LAUNCH_RUN
                    : !strcmp(verb, "shell") ? LAUNCH_SHELL
                                             : LAUNCH_TEST;
        if ((r = launch_args_parse(c, &a, verb, argc, argv)) >= 0)
                goto out;
        if (s->action == LAUNCH_EXEC && !s->argv[0]) {
                r = cli_usage_error(verb, "missing COMMAND to execute in '%s'", s->image);
                goto out;
        }
        if (startswith(s->image, "instance://")) {
                struct instance_env env;
                cli_instance_env(c, &env);
                r = instance_join(&env, s->image + strlen("instance://"), s, &status, &err);
        } else
                r = runtime_launch(s, &status, &err);
        r = r < 0 ? cli_fail(&err) : status;
out:
        launch_args_free(&a);
        return r;
}
