/* cache list|clean: the registry cache of blobs and converted images (registry/cache.c)
 * and the per-user decompressed-file cache of squashfs and SIF images (image/cache.c), as
 * `apptainer cache` shows and empties Apptainer's. */
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "exit.h"
#include "image/image.h"
#include "registry/registry.h"
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

enum { CACHE_FILE = 4, CACHE_ALL = CACHE_BLOB | CACHE_SIF | CACHE_FILE };

static unsigned cache_types_parse(const char *v)
{
        unsigned t = 0;
        _cleanup_strv_ char **parts = NULL;
        if (strsplit(v, ",", &parts) < 0)
                return 0;
        for (size_t i = 0; parts && parts[i]; i++) {
                /* Apptainer's per-source names of its cached images are hutch's one kind, sif */
                static const char *const sif_names[] = {"sif", "oci-tmp", "oci", "oras", "library", "shub", "net"};
                unsigned one = !strcmp(parts[i], "blob")   ? CACHE_BLOB
                               : !strcmp(parts[i], "file") ? CACHE_FILE
                               : !strcmp(parts[i], "all")  ? CACHE_ALL
                                                           : 0;
                for (size_t k = 0; k < ELEMENTSOF(sif_names) && !one; k++)
                        if (!strcmp(parts[i], sif_names[k]))
                                one = CACHE_SIF;
                if (!one)
                        return 0;
                t |= one;
        }
        return t;
}

/* The registry cache ($HUTCH_CACHEDIR, default ~/.hutch/cache): blobs and the SIFs made
 * from images. Returns -1 to go on to the decompressed-file cache, else the exit code. */
static int registry_part(struct cli *c, const char *cmd, unsigned types, unsigned days)
{
        struct hutch_error err = HUTCH_ERROR_INIT;
        _cleanup_free_ char *dir = cli_registry_cache_dir(c);
        if (!dir) {
                hutch_err(&err, -ENOENT, "no cache folder: set HOME or HUTCH_CACHEDIR");
                return cli_fail(&err);
        }
        if (!strcmp(cmd, "clean")) {
                if (registry_cache_clean(dir, types & (CACHE_BLOB | CACHE_SIF), days, &err) < 0)
                        return cli_fail(&err);
                return -1;
        }
        struct cache_usage u;
        if (registry_cache_usage(dir, &u, &err) < 0)
                return cli_fail(&err);
        char sb[32], bb[32], tb[32];
        size_format(u.sif_bytes, sb, sizeof sb);
        size_format(u.blob_bytes, bb, sizeof bb);
        size_format(u.sif_bytes + u.blob_bytes, tb, sizeof tb);
        printf("There are %zu container file(s) using %s and %zu oci blob file(s) using %s of space\nTotal space "
               "used: %s\nImage cache folder: %s\n",
               u.sifs, sb, u.blobs, bb, tb, dir);
        return -1;
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
                return cmd ? cli_args_error("cache", "unknown cache command '%s'", cmd)
                           : cli_args_error("cache", "expects list or clean");
        unsigned types = CACHE_ALL;
        unsigned days = 0;
        for (int i = 2; i < argc; i++) {
                if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
                        cli_help_print("cache");
                        return 0;
                }
                const char *a = argv[i];
                if ((!strcmp(a, "-T") || !strcmp(a, "--type")) && i + 1 < argc) {
                        if ((types = cache_types_parse(argv[++i])) == 0)
                                return cli_usage_error("cache",
                                                       "--type takes blob, sif (or Apptainer's oci, oras, "
                                                       "library, shub, net), file or all (a comma list), not '%s'",
                                                       argv[i]);
                } else if ((!strcmp(a, "-D") || !strcmp(a, "--days")) && i + 1 < argc && !strcmp(cmd, "clean")) {
                        uint64_t d;
                        if (parse_u64_range(argv[++i], 1, 100000, &d) < 0)
                                return cli_usage_error("cache", "--days takes a number of days, not '%s'", argv[i]);
                        days = (unsigned) d;
                } else if (strcmp(cmd, "clean") != 0 || (strcmp(a, "-f") != 0 && strcmp(a, "--force") != 0))
                        /* Apptainer's clean asks first unless --force; this cache is only a cache */
                        return cli_args_error("cache", "unknown option '%s' for 'cache %s'", a, cmd);
        }
        if (types & (CACHE_BLOB | CACHE_SIF)) {
                int r = registry_part(c, cmd, types, days);
                if (r >= 0 || !(types & CACHE_FILE))
                        return r >= 0 ? r : 0;
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
