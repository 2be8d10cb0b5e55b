/* hutch: entry point. Global flags, configuration, and dispatch to one verb. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "image/image.h"
#include "exit.h"
#include "util/log.h"
#include "util/util.h"

#ifndef HUTCH_VERSION
#define HUTCH_VERSION "0.0.0"
#endif

extern char **environ;

static const struct verb {
        const char *name;
        int (*fn)(struct cli *c, const char *verb, int argc, char **argv);
} launch_verbs[] = {
        {"exec", verb_launch}, {"run", verb_launch}, {"shell", verb_launch}, {"test", verb_launch}, {"instance", NULL}};

/* Verbs whose libraries this binary does not load (libcurl, librnp, libsystemd: shared
 * objects that would cost every `hutch exec` their loading): programs of their own, built
 * from cli/ like this one, found by libexec_program and exec'd with this argv (global
 * flags included), as git runs git-remote-https. */
static const struct external_verb {
        const char *verb, *program;
} external_verbs[] = {
        {"pull", "hutch-registry"}, {"push", "hutch-registry"}, {"remote", "hutch-registry"}, {"key", "hutch-sign"},
        {"sign", "hutch-sign"},     {"verify", "hutch-sign"},   {"keyserver", "hutch-sign"},
};

static bool launch_verb(const char *verb)
{
        for (size_t k = 0; k < ELEMENTSOF(launch_verbs); k++)
                if (!strcmp(verb, launch_verbs[k].name))
                        return true;
        return false;
}

static int exec_external(const struct external_verb *v, char **argv)
{
        char path[PATH_MAX];
        struct hutch_error err = HUTCH_ERROR_INIT;
        if (!libexec_program(v->program, path, sizeof path)) {
                hutch_err(&err, -ENOENT, "'%s' needs %s, which is not installed beside hutch", v->verb, v->program);
                return cli_fail(&err);
        }
        argv[0] = (char *) v->program;
        execv(path, argv);
        hutch_err_sys(&err, -errno, "cannot run %s", path);
        return cli_fail(&err);
}

int main(int argc, char **argv)
{
        struct cli c = {.environ = environ, .argv = argv};
        int i = 1;

        /* Every role of this binary (the CLI, the launcher, the supervisor, the image
         * server) waits for children it starts, and so does hutch-init, which inherits
         * this disposition. A SIGCHLD ignored by our caller would have the kernel reap
         * them at once: no exit status, no SIGCHLD, a wait for ever. */
        signal(SIGCHLD, SIG_DFL);
        log_set_level(LOG_LEVEL_INFO);
        for (; i < argc && argv[i][0] == '-'; i++) {
                if (cli_log_flag(argv[i]))
                        continue;
                if (startswith(argv[i], "--in-unit=")) {
                        c.in_unit = argv[i] + strlen("--in-unit=");
                        continue;
                }
                if (startswith(argv[i], "--caller=")) {
                        c.caller = argv[i] + strlen("--caller=");
                        continue;
                }
                if (!strcmp(argv[i], "--nocolor"))
                        continue; /* Apptainer's: hutch's messages have no colour */
                if (!strcmp(argv[i], "--version") || !strcmp(argv[i], "-V")) {
                        printf("hutch version %s\n", HUTCH_VERSION);
                        return 0;
                }
                if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
                        cli_help_print(NULL);
                        return 0;
                }
                return cli_args_error(NULL, "unknown global option '%s'", argv[i]);
        }
        if (i >= argc) {
                cli_help_print(NULL);
                return EXIT_USAGE;
        }
        const char *verb = argv[i];
        int vargc = argc - i;
        char **vargv = argv + i;
        int r;

        if (!strcmp(verb, "version")) {
                printf("%s\n", HUTCH_VERSION);
                return 0;
        }
        if (!strcmp(verb, IMAGE_SERVE_VERB)) /* hidden: a container's image server */
                return image_serve_main(vargc > 1 ? strtoull(vargv[1], NULL, 10) : 0) == 0
                               ? 0
                               : cli_usage_error(NULL, "'%s' is started by hutch itself", verb);
        if (!strcmp(verb, "help")) {
                if (vargc > 1 && !cli_help_has(vargv[1]))
                        return cli_usage_error(NULL, "no help for '%s': not a hutch command", vargv[1]);
                cli_help_print(vargc > 1 ? vargv[1] : NULL);
                return 0;
        }
        if (c.in_unit && (!strcmp(verb, "instance") || !launch_verb(verb)))
                return cli_usage_error(NULL, "--in-unit is hutch's own, for exec, run, shell and test");
        if (c.caller && !c.in_unit)
                return cli_usage_error(NULL, "--caller is hutch's own, for a run inside its unit (--in-unit)");
        for (size_t k = 0; k < ELEMENTSOF(launch_verbs); k++)
                if (!strcmp(verb, launch_verbs[k].name)) {
                        if ((r = cli_load_conf(&c)) != 0)
                                return r;
                        r = launch_verbs[k].fn ? launch_verbs[k].fn(&c, verb, vargc, vargv)
                                               : verb_instance(&c, vargc, vargv);
                        conf_free(&c.conf);
                        return r;
                }
        for (size_t k = 0; k < ELEMENTSOF(external_verbs); k++)
                if (!strcmp(verb, external_verbs[k].verb))
                        return exec_external(&external_verbs[k], argv);
        if (!strcmp(verb, "inspect"))
                r = verb_inspect(&c, vargc, vargv);
        else if (!strcmp(verb, "run-help"))
                r = verb_run_help(&c, vargc, vargv);
        else if (!strcmp(verb, "build"))
                r = verb_build(&c, vargc, vargv);
        else if (!strcmp(verb, "sif"))
                r = verb_sif(&c, vargc, vargv);
        else if (!strcmp(verb, "overlay"))
                r = verb_overlay(&c, vargc, vargv);
        else if (!strcmp(verb, "cache")) {
                if ((r = cli_load_conf(&c)) != 0)
                        return r;
                r = verb_cache(&c, vargc, vargv);
        } else
                return cli_args_error(NULL, "unknown command '%s'", verb);
        conf_free(&c.conf);
        return r;
}
