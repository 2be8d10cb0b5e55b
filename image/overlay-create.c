/* `overlay create`: a new ext3 image with upper/ and work/ (and the --create-dir folders
 * in upper/) owned by the caller, made by mkfs.ext3 -d from a folder prepared in a private
 * folder beside the target (image/build.c's), then renamed into place. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image-internal.h"
#include "util/util.h"

#define SRC "overlay-src" /* the tree mkfs.ext3 copies, in the private folder */
#define IMG "image"

/* mkfs.ext3 from e2fsprogs: in /usr/sbin or /sbin, which a user's PATH often lacks. */
static const char *mkfs_ext3(void)
{
        static const char *const paths[] = {"/usr/sbin/mkfs.ext3", "/sbin/mkfs.ext3"};
        for (size_t i = 0; i < ELEMENTSOF(paths); i++)
                if (access(paths[i], X_OK) == 0)
                        return paths[i];
        return "mkfs.ext3";
}

int overlay_create_dir_check(const char *dir, struct hutch_error *err)
{
        _cleanup_free_ char *norm = NULL;
        if (!path_is_abs(dir) || path_normalize(dir, &norm) < 0 || !strcmp(norm, "/") || strstr(dir, "/../") ||
            endswith(dir, "/.."))
                return hutch_err(err, -EINVAL, "--create-dir wants an absolute folder path below /, not '%s'", dir);
        return 0;
}

static int tree_prepare(int wfd, char *const *dirs, struct hutch_error *err)
{
        if (mkdirat(wfd, SRC, 0755) < 0 || mkdirat(wfd, SRC "/upper", 0755) < 0 || mkdirat(wfd, SRC "/work", 0755) < 0)
                return hutch_err_sys(err, -errno, "cannot prepare the overlay's folders");
        for (char *const *d = dirs; d && *d; d++) {
                int r = overlay_create_dir_check(*d, err);
                if (r < 0)
                        return r;
                _cleanup_free_ char *p = strjoin(SRC "/upper", *d, NULL);
                if (!p)
                        return hutch_err(err, -ENOMEM, "out of memory");
                if ((r = mkdir_p_at(wfd, p, 0755)) < 0)
                        return hutch_err_sys(err, r, "cannot prepare --create-dir '%s'", *d);
        }
        return 0;
}

static int image_file_make(int wfd, uint64_t size, bool sparse, const char *target, struct hutch_error *err)
{
        _cleanup_close_ int fd = openat(wfd, IMG, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd < 0)
                return hutch_err_sys(err, -errno, "cannot create '%s'", target);
        int r = sparse ? (ftruncate(fd, (off_t) size) < 0 ? errno : 0) : posix_fallocate(fd, 0, (off_t) size);
        if (r != 0)
                return hutch_err_sys(err, -r, "cannot make '%s' %llu MiB large", target,
                                     (unsigned long long) (size >> 20));
        return 0;
}

static int create_in(const struct overlay_create_spec *s, const struct work *w, struct hutch_error *err)
{
        char owner[64], last[400];
        int r = tree_prepare(w->fd, s->create_dirs, err);
        if (r < 0)
                return r;
        if ((r = image_file_make(w->fd, s->size_mib << 20, s->sparse, s->target, err)) < 0)
                return r;
        /* nodiscard: mke2fs would punch holes in the blocks just allocated */
        snprintf(owner, sizeof owner, "root_owner=%u:%u%s", (unsigned) getuid(), (unsigned) getgid(),
                 s->sparse ? "" : ",nodiscard");
        char *argv[] = {(char *) mkfs_ext3(), "-q", "-F", "-t", "ext3", "-d", SRC, "-E", owner, IMG, NULL};
        r = tool_run(w->fd, argv, -1, false, last, sizeof last);
        if (r != 0)
                return tool_error("mkfs.ext3 for", s->target, r, last, err);
        if (renameat2(w->fd, IMG, w->parent, w->base, RENAME_NOREPLACE) < 0)
                return hutch_err_sys(err, -errno, "cannot create '%s'", s->target);
        return 0;
}

int image_overlay_create(const struct overlay_create_spec *s, struct hutch_error *err)
{
        struct stat st;
        if (lstat(s->target, &st) == 0)
                return hutch_err(err, -EEXIST, "'%s' already exists", s->target);
        if (s->size_mib < OVERLAY_SIZE_MIN_MIB)
                return hutch_err(err, -EINVAL, "an overlay of %llu MiB is too small: at least %d MiB",
                                 (unsigned long long) s->size_mib, OVERLAY_SIZE_MIN_MIB);
        struct work w;
        int r = work_make(s->target, &w, err);
        if (r < 0)
                return r;
        r = create_in(s, &w, err);
        char last[1];
        char *argv[] = {"rm", "-rf", "--", SRC, IMG, NULL};
        tool_run(w.fd, argv, -1, false, last, 0);
        work_remove(&w);
        return r;
}
