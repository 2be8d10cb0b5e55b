/* cache list|clean: the per-user decompressed-file cache of squashfs and SIF images
 * (image/cache.c), as `apptainer cache` shows and empties Apptainer's. */
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "exit.h"
#include "image/image.h"
#include "util/util.h"

/* The cache folder (or a level of it) is not the caller's alone: name what is wrong and
 * whose it is, so that the user knows whom to ask. */
static int not_own(const char *xdg, const char *path)
{
        struct hutch_error err = HUTCH_ERROR_INIT;
        _cleanup_free_ char *bad = NULL;
        struct stat st;
        if (file_cache_why_not_own(geteuid(), xdg, &bad, &st) <= 0) {
                hutch_err_sys(&err, -EPERM, "cannot open the cache folder '%s'", path);
                return cli_fail(&err);
        }
        struct passwd *pw = getpwuid(st.st_uid);
        if (st.st_uid != geteuid())
                hutch_err(&err, -EPERM,
                          "'%s' is owned by %s (uid %u), not by you: hutch keeps its cache there and will not use "
                          "another user's; ask them or root to remove it",
                          bad, pw ? pw->pw_name : "an unknown user", (unsigned) st.st_uid);
        else if (!S_ISDIR(st.st_mode))
                hutch_err(&err, -EPERM, "'%s' is not a folder (a symlink or file): remove it", bad);
        else
                hutch_err(&err, -EPERM, "'%s' is writable by others (mode %04o): remove it or chmod go-w it", bad,
                          (unsigned) (st.st_mode & 07777));
        return cli_fail(&err);
}

int verb_cache(struct cli *c, int argc, char **argv)
{
        struct hutch_error err = HUTCH_ERROR_INIT;
        const char *cmd = argc >= 2 ? argv[1] : NULL;
        if (cmd && (!strcmp(cmd, "-h") || !strcmp(cmd, "--help"))) {
                cli_help_print("cache");
                return 0;
        }
        if (!cmd || (strcmp(cmd, "list") != 0 && strcmp(cmd, "clean") != 0))
                return cmd ? cli_usage_error("cache", "unknown cache command '%s'", cmd)
                           : cli_usage_error("cache", "expects list or clean");
        for (int i = 2; i < argc; i++) {
                if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
                        cli_help_print("cache");
                        return 0;
                }
                /* Apptainer's clean asks first unless --force; this cache is only a cache */
                if (strcmp(cmd, "clean") != 0 || (strcmp(argv[i], "-f") != 0 && strcmp(argv[i], "--force") != 0))
                        return cli_usage_error("cache", "unknown option '%s' for 'cache %s'", argv[i], cmd);
        }
        const char *xdg = cli_getenv(c, "XDG_RUNTIME_DIR");
        _cleanup_free_ char *path = NULL;
        if (file_cache_path(geteuid(), xdg, &path) < 0) {
                hutch_err(&err, -ENOMEM, "out of memory");
                return cli_fail(&err);
        }
        _cleanup_close_ int fd = file_cache_open(geteuid(), xdg, false);
        if (fd == -EPERM)
                return not_own(xdg, path);
        if (fd < 0 && fd != -ENOENT) {
                hutch_err_sys(&err, fd, "cannot open the cache folder '%s'", path);
                return cli_fail(&err);
        }
        int r = 0;
        uint64_t bytes = 0;
        size_t files = 0;
        if (!strcmp(cmd, "clean")) {
                if (fd >= 0 && (r = file_cache_trim(fd, 0, NULL)) < 0) {
                        hutch_err_sys(&err, r, "cannot empty the cache folder '%s'", path);
                        return cli_fail(&err);
                }
                return 0;
        }
        if (fd >= 0 && (r = file_cache_usage(fd, &bytes, &files)) < 0) {
                hutch_err_sys(&err, r, "cannot read the cache folder '%s'", path);
                return cli_fail(&err);
        }
        char used[32], cap[32];
        size_format(bytes, used, sizeof used);
        size_format(c->conf.file_cache_size, cap, sizeof cap);
        printf("There are %zu decompressed file(s) using %s of space\nCache folder: %s (at most %s: 'file cache "
               "size' in hutch.conf)\n",
               files, used, path, cap);
        return 0;
}
