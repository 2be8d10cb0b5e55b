/* What every program of cli/ shares (hutch and the libexec programs of verbs whose
 * libraries hutch itself does not load): the environment, configuration, logging flags
 * and the one-line error format. */
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
#include "exit.h"
#include "util/log.h"
#include "util/util.h"

#ifndef HUTCH_CONF_PATH
#define HUTCH_CONF_PATH "/etc/hutch/hutch.conf"
#endif

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

int cli_failf(int code, const char *fmt, ...)
{
        struct hutch_error err = HUTCH_ERROR_INIT;
        char msg[sizeof err.msg];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        hutch_err(&err, code, "%s", msg);
        return cli_fail(&err);
}

static int usage_line(int status, const char *verb, const char *fmt, va_list ap)
{
        char msg[1024];
        fputs("hutch: error: ", stderr);
        if (error_context)
                fprintf(stderr, "%s: ", error_context);
        vsnprintf(msg, sizeof msg, fmt, ap);
        print_escaped(msg);
        if (verb)
                fprintf(stderr, " (see 'hutch %s --help')\n", verb);
        else
                fprintf(stderr, " (see 'hutch --help')\n");
        return status;
}

int cli_usage_error(const char *verb, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        int r = usage_line(EXIT_HUTCH_FAILURE, verb, fmt, ap);
        va_end(ap);
        return r;
}

int cli_args_error(const char *verb, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        int r = usage_line(EXIT_USAGE, verb, fmt, ap);
        va_end(ap);
        return r;
}

/* Sources hutch cannot read: a clear "not supported yet" rather than "No such file". */
static const char *const unsupported_prefixes[] = {
        "library://",
        "shub://",
        "http://",
        "https://",
};

/* A definition file: a regular file that is not an image (SIF, squashfs) and whose first
 * meaningful line is a header line ("Bootstrap: ...", "From: ...") or a section ("%post"),
 * so that one without its Bootstrap line is still reported as a definition file. */
bool cli_is_deffile(const char *path)
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
        if (startswith(buf, "hsqs") || startswith(buf, "#!/usr/bin/env run-singularity") || memchr(buf, 0, (size_t) n))
                return false;
        for (char *l = buf; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
                l += strspn(l, " \t");
                if (*l == '#' || *l == '\n' || *l == '\r')
                        continue;
                if (*l == '%')
                        return true;
                size_t k = strspn(l, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789");
                return k > 0 && l[k + strspn(l + k, " \t")] == ':';
        }
        return false;
}

bool cli_is_app_name(const char *s)
{
        static const char ok[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-";
        return s[0] && strspn(s, ok) == strlen(s) && strcmp(s, ".") && strcmp(s, "..");
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
        if (!build && cli_is_deffile(source)) {
                hutch_err(&err, -EINVAL, "'%s' is a definition file: build an image from it with 'hutch build'",
                          source);
                return cli_fail(&err);
        }
        return -1;
}

const char *cli_system_conf_path(void)
{
        return HUTCH_CONF_PATH;
}

/* The system file always, then the user's own (HUTCH_CONF, else ~/.hutch/hutch.conf),
 * which can only tighten it: no variable switches the admin's policy off. */
int cli_load_conf(struct cli *c)
{
        struct hutch_error err = HUTCH_ERROR_INIT;
        const char *path = cli_getenv(c, "HUTCH_CONF");
        const char *home = cli_getenv(c, "HOME");
        _cleanup_free_ char *own = NULL;
        conf_defaults(&c->conf);
        c->conf_loaded = true;
        int r = conf_load_system(&c->conf, HUTCH_CONF_PATH, &err);
        if (r < 0 && r != -ENOENT)
                return cli_fail(&err);
        /* without a system file, Apptainer's built-in 'bind path' (its /etc/hosts is bound
         * anyway): the host's time zone inside; a host without one skips it */
        if (r == -ENOENT && strv_extend(&c->conf.bind_paths, "/etc/localtime") < 0)
                return cli_fail(&(struct hutch_error){.code = -ENOMEM, .msg = "out of memory"});
        if (!path && home && home[0] == '/')
                path = own = strjoin(home, "/.hutch/hutch.conf", NULL);
        if (!path)
                return 0;
        r = conf_load_user(&c->conf, path, &err);
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
