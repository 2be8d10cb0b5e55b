/* Images named by a registry URI (docker://, oras://) or a local OCI source (oci:,
 * oci-archive:, docker-archive:, docker-daemon:) for the running verbs: hutch-registry
 * pulls them into the cache (once: later runs find them there) and prints the cached SIF's
 * path, which the verb then runs as any SIF. Its progress and errors reach the user's
 * terminal directly; its libraries never load into hutch. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "exit.h"
#include "util/log.h"
#include "util/util.h"

bool cli_is_registry_source(const char *s)
{
        return startswith(s, "docker://") || startswith(s, "oras://") || startswith(s, "oci:") ||
               startswith(s, "oci-archive:") || startswith(s, "docker-archive:") || startswith(s, "docker-daemon:");
}

int cli_registry_fetch(const char *uri, bool no_https, bool disable_cache, char **ret_path)
{
        struct hutch_error err = HUTCH_ERROR_INIT;
        char prog[PATH_MAX];
        if (!libexec_program("hutch-registry", prog, sizeof prog)) {
                hutch_err(&err, -ENOENT, "running '%s' needs hutch-registry, which is not installed beside hutch", uri);
                return cli_fail(&err);
        }
        const char *level = log_get_level() >= LOG_LEVEL_DEBUG     ? "--debug"
                            : log_get_level() >= LOG_LEVEL_VERBOSE ? "--verbose"
                            : log_get_level() >= LOG_LEVEL_INFO    ? NULL
                            : log_get_level() >= LOG_LEVEL_WARNING ? "--quiet"
                                                                   : "--silent";
        char *argv[7] = {"hutch-registry"}, **a = argv + 1;
        if (level)
                *a++ = (char *) level;
        *a++ = "cache-pull";
        if (no_https)
                *a++ = "--no-https";
        if (disable_cache)
                *a++ = "--disable-cache";
        *a = (char *) uri;
        int pfd[2];
        if (pipe2(pfd, O_CLOEXEC) < 0) {
                hutch_err_sys(&err, -errno, "cannot run hutch-registry");
                return cli_fail(&err);
        }
        fflush(NULL);
        pid_t pid = fork();
        if (pid < 0) {
                hutch_err_sys(&err, -errno, "cannot run hutch-registry");
                close(pfd[0]);
                close(pfd[1]);
                return cli_fail(&err);
        }
        if (pid == 0) {
                if (dup2(pfd[1], STDOUT_FILENO) < 0)
                        _exit(127);
                execv(prog, argv);
                _exit(127);
        }
        close(pfd[1]);
        char buf[PATH_MAX + 2];
        size_t len = 0;
        for (ssize_t n; len < sizeof buf - 1 && (n = read(pfd[0], buf + len, sizeof buf - 1 - len)) != 0;) {
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        break;
                len += (size_t) n;
        }
        close(pfd[0]);
        buf[len] = 0;
        int status;
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR) {
                        hutch_err_sys(&err, -errno, "cannot wait for hutch-registry");
                        return cli_fail(&err);
                }
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                return WIFEXITED(status) && WEXITSTATUS(status) != 127
                               ? EXIT_HUTCH_FAILURE
                               : (hutch_err(&err, -EIO, "hutch-registry failed"), cli_fail(&err));
        buf[strcspn(buf, "\n")] = 0;
        if (!buf[0] || !(*ret_path = strdup(buf))) {
                hutch_err(&err, -EIO, "hutch-registry named no image for '%s'", uri);
                return cli_fail(&err);
        }
        return -1;
}

char *cli_registry_cache_dir(const struct cli *c)
{
        const char *d = cli_getenv(c, "HUTCH_CACHEDIR"), *home = cli_getenv(c, "HOME");
        char *s = NULL;
        if (d && *d)
                return strdup(d);
        if (home && *home && asprintf(&s, "%s/.hutch/cache", home) >= 0)
                return s;
        return NULL;
}
