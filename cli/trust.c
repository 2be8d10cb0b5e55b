/* The site's trusted-key policy on the launch path: when hutch.conf's 'trusted key' lines
 * govern the image, hutch-sign checks its signatures (a child: librnp and libcrypto stay out
 * of this binary) before anything is mounted; a success is remembered by the image file's
 * identity, so later starts of the unchanged file cost a stat and a lookup. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "exit.h"
#include "sign/sign.h"
#include "util/cleanup.h"
#include "util/util.h"

extern char **environ;

static bool cached(const struct cli *c, const char *path, char *const *fps)
{
        struct stat st;
        char name[TRUST_CACHE_NAME_MAX];
        _cleanup_close_ int dirfd = trust_cache_open(geteuid(), cli_getenv(c, "XDG_RUNTIME_DIR"), false);
        if (dirfd < 0 || stat(path, &st) < 0)
                return false;
        trust_cache_name(&st, trust_policy_hash(fps), name, sizeof name);
        return faccessat(dirfd, name, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
}

int cli_trust_check(struct cli *c, const char *image)
{
        struct hutch_error err = HUTCH_ERROR_INIT;
        _cleanup_strv_ char **fps = NULL;
        char real[PATH_MAX], prog[PATH_MAX];
        const char *path = image;

        if (!c->conf.trusted_keys || startswith(image, "instance://"))
                return -1;
        /* a file the launch cannot open fails there, with its own words; a URI or a
         * missing file is governed only by lines without folders */
        if (realpath(image, real))
                path = real;
        if (trust_policy_for(c->conf.trusted_keys, path, &fps, &err) < 0)
                return cli_fail(&err);
        if (!fps || cached(c, path, fps))
                return -1;
        if (path != real) {
                hutch_err(&err, -EPERM,
                          "'%s' is refused by the site's image policy (hutch.conf 'trusted key'): only signed SIF "
                          "files run",
                          image);
                return cli_fail(&err);
        }
        if (!libexec_program("hutch-sign", prog, sizeof prog)) {
                hutch_err(&err, -ENOENT,
                          "the site's image policy needs hutch-sign, which is not installed beside hutch");
                return cli_fail(&err);
        }
        char *argv[] = {"hutch-sign", "policy-check", real, NULL};
        pid_t pid;
        int r = posix_spawn(&pid, prog, NULL, NULL, argv, c->environ);
        if (r != 0) {
                hutch_err_sys(&err, -r, "cannot run %s", prog);
                return cli_fail(&err);
        }
        int status = 0;
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR) {
                        hutch_err_sys(&err, -errno, "cannot wait for %s", prog);
                        return cli_fail(&err);
                }
        /* hutch-sign said why in its one line */
        return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? -1 : EXIT_HUTCH_FAILURE;
}
