/* hutch: entry point. Global flags, configuration, and dispatch to one verb. */
#include <errno.h>
#include <fcntl.h>
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
#ifndef HUTCH_CONF_PATH
#define HUTCH_CONF_PATH "/etc/hutch/hutch.conf"
#endif

extern char **environ;

const char *cli_getenv(const struct cli *c, const char *key)
{
        return strv_env_get(c->environ, key);
}

/* Errors name paths, keys and values users, files and images chose: what reaches the
 * terminal is escaped (an ESC in an env file is shown as \x1b, never obeyed). */
static void print_escaped(const char *s)
{
        char buf[4096];
        str_escape(buf, sizeof buf, s);
        fputs(buf, stderr);
}

static const char *error_context;

void cli_error_context(const char *what)
{
        error_context = what;
}

int cli_fail(const struct hutch_error *err)
{
        fputs("hutch: error: ", stderr);
        if (error_context)
                fprintf(stderr, "%s: ", error_context);
        print_escaped(err->msg[0] ? err->msg : strerror(-err->code));
        fputc('\n', stderr);
        return EXIT_HUTCH_FAILURE;
}

int cli_usage_error(const char *verb, const char *fmt, ...)
{
        char msg[1024];
        va_list ap;
        fputs("hutch: error: ", stderr);
        if (error_context)
                fprintf(stderr, "%s: ", error_context);
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        print_escaped(msg);
        if (verb)
                fprintf(stderr, " (see 'hutch %s --help')\n", verb);
        else
                fprintf(stderr, " (see 'hutch --help')\n");
        return EXIT_USAGE;
}

/* Sources of other issues' making: a clear "not supported yet" rather than "No such file". */
static const char *const unsupported_prefixes[] = {
        "docker://",  "docker-daemon:", "docker-archive:", "oci:",    "oci-archive:",
        "library://", "oras://",        "shub://",         "http://", "https://",
};

/* A definition file: a regular file whose first meaningful line is "Bootstrap: ...". */
static bool is_deffile(const char *path)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
        struct stat st;
        char buf[4096];
        if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
                return false;
        ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
        if (n <= 0)
                return false;
        buf[n] = 0;
        for (char *l = buf; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
                l += strspn(l, " \t");
                if (*l == '#' || *l == '\n' || *l == '\r')
                        continue;
                return !strncasecmp(l, "bootstrap", 9) && l[9 + strspn(l + 9, " \t")] == ':';
        }
        return false;
}

int cli_source_check(const char *source, bool build)
{
        struct hutch_error err = HUTCH_ERROR_INIT;
        for (size_t i = 0; i < ELEMENTSOF(unsupported_prefixes); i++)
                if (startswith(source, unsupported_prefixes[i])) {
                        hutch_err(&err, -ENOTSUP,
                                  "'%s': %s sources are not supported yet (use a SIF file, a squashfs file or a "
                                  "folder)",
                                  source, unsupported_prefixes[i]);
                        return cli_fail(&err);
                }
        if (build && is_deffile(source)) {
                hutch_err(&err, -ENOTSUP,
                          "'%s' is a definition file: building from definition files is not supported yet (build "
                          "from a folder, a squashfs file or a SIF file)",
                          source);
                return cli_fail(&err);
        }
        return -1;
}

int cli_load_conf(struct cli *c)
{
        struct hutch_error err = HUTCH_ERROR_INIT;
        const char *path = cli_getenv(c, "HUTCH_CONF");
        if (!path)
                path = HUTCH_CONF_PATH;
        conf_defaults(&c->conf);
        c->conf_loaded = true;
        int r = conf_load(&c->conf, path, &err);
        if (r < 0 && r != -ENOENT)
                return cli_fail(&err);
        return 0;
}

bool cli_log_flag(const char *a)
{
        if (!strcmp(a, "-d") || !strcmp(a, "--debug"))
                log_set_level(LOG_LEVEL_DEBUG);
        else if (!strcmp(a, "-v") || !strcmp(a, "--verbose"))
                log_set_level(LOG_LEVEL_VERBOSE);
        else if (!strcmp(a, "-q") || !strcmp(a, "--quiet"))
                log_set_level(LOG_LEVEL_WARNING);
        else if (!strcmp(a, "-s") || !strcmp(a, "--silent"))
                log_set_level(LOG_LEVEL_ERROR);
        else
                return false;
        return true;
}

static const struct verb {
        const char *name;
        int (*fn)(struct cli *c, const char *verb, int argc, char **argv);
} launch_verbs[] = {
        {"exec", verb_launch}, {"run", verb_launch}, {"shell", verb_launch}, {"test", verb_launch}, {"instance", NULL}};

int main(int argc, char **argv)
{
        struct cli c = {.environ = environ};
        int i = 1;

        log_set_level(LOG_LEVEL_INFO);
        for (; i < argc && argv[i][0] == '-'; i++) {
                if (cli_log_flag(argv[i]))
                        continue;
                if (!strcmp(argv[i], "--version") || !strcmp(argv[i], "-V")) {
                        printf("hutch version %s\n", HUTCH_VERSION);
                        return 0;
                }
                if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
                        cli_help_print(NULL);
                        return 0;
                }
                return cli_usage_error(NULL, "unknown global option '%s'", argv[i]);
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
        for (size_t k = 0; k < ELEMENTSOF(launch_verbs); k++)
                if (!strcmp(verb, launch_verbs[k].name)) {
                        if ((r = cli_load_conf(&c)) != 0)
                                return r;
                        r = launch_verbs[k].fn ? launch_verbs[k].fn(&c, verb, vargc, vargv)
                                               : verb_instance(&c, vargc, vargv);
                        conf_free(&c.conf);
                        return r;
                }
        if (!strcmp(verb, "inspect"))
                r = verb_inspect(&c, vargc, vargv);
        else if (!strcmp(verb, "run-help"))
                r = verb_run_help(&c, vargc, vargv);
        else if (!strcmp(verb, "build"))
                r = verb_build(&c, vargc, vargv);
        else if (!strcmp(verb, "sif"))
                r = verb_sif(&c, vargc, vargv);
        else if (!strcmp(verb, "cache")) {
                if ((r = cli_load_conf(&c)) != 0)
                        return r;
                r = verb_cache(&c, vargc, vargv);
        } else
                return cli_usage_error(NULL, "unknown command '%s'", verb);
        conf_free(&c.conf);
        return r;
}
