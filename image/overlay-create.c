/* `overlay create`: a new ext3 image with upper/ and work/ (and the --create-dir folders
 * in upper/) owned by the caller, made by mkfs.ext3 -d from a folder prepared in a private
 * folder beside the target (image/build.c's), then renamed into place, or, when the target
 * is a SIF file, appended to it as its overlay partition (as `apptainer overlay create`). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/file.h>
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
        _cleanup_close_ int fd = openat(wfd, IMG, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return hutch_err_sys(err, -errno, "cannot create '%s'", target);
        int r = sparse ? (ftruncate(fd, (off_t) size) < 0 ? errno : 0) : posix_fallocate(fd, 0, (off_t) size);
        if (r != 0)
                return hutch_err_sys(err, -r, "cannot make '%s' %llu MiB large", target,
                                     (unsigned long long) (size >> 20));
        return 0;
}

#define SIF_ALIGN 4096

/* Append the ext3 image (IMG in wfd) to the SIF as its overlay partition: the data past the
 * end of every object, then its descriptor in a free slot, then the header; the SIF is
 * locked as a writer meanwhile (no container may be writing into it). */
static int sif_overlay_add(const char *target, int wfd, uint64_t size, struct hutch_error *err)
{
        _cleanup_close_ int fd = open(target, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
        _cleanup_close_ int in = openat(wfd, IMG, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || in < 0 || fstat(fd, &st) < 0)
                return hutch_err_sys(err, -errno, "cannot open SIF '%s'", target);
        if (flock(fd, LOCK_EX | LOCK_NB) < 0)
                return hutch_err_sys(err, -errno, "SIF '%s' is in use", target);
        struct sif s;
        int r = sif_load(fd, (uint64_t) st.st_size, &s, err);
        if (r < 0)
                return hutch_err_wrap(err, "'%s'", target);
        const struct sif_descriptor *old = sif_overlay_partition(&s);
        int64_t end = s.header.data_offset + s.header.data_size;
        uint32_t id = 0;
        bool is_signed = false;
        for (size_t i = 0; i < s.n_descr; i++) {
                is_signed |= s.descr[i].datatype == SIF_DATA_SIGNATURE;
                if (s.descr[i].offset + s.descr[i].size > end)
                        end = s.descr[i].offset + s.descr[i].size;
                if (s.descr[i].id > id)
                        id = s.descr[i].id;
        }
        struct sif_header h = s.header;
        sif_free(&s);
        if (old)
                return hutch_err(err, -EEXIST, "SIF '%s' already has an overlay partition", target);
        /* a new object no signature covers would fail every verify after (Apptainer refuses too) */
        if (is_signed)
                return hutch_err(err, -EPERM, "SIF image '%s' is signed: could not add writable overlay", target);
        if (h.descr_free <= 0)
                return hutch_err(err, -ENOSPC, "SIF '%s' has no free descriptor for an overlay partition", target);
        /* the first unused slot of the table */
        _cleanup_free_ uint8_t *tb = malloc((size_t) h.descr_total * SIF_DESCRIPTOR_SIZE);
        if (!tb)
                return hutch_err(err, -ENOMEM, "out of memory");
        if (pread_full(fd, tb, (size_t) h.descr_total * SIF_DESCRIPTOR_SIZE, h.descr_offset) !=
            (ssize_t) h.descr_total * SIF_DESCRIPTOR_SIZE)
                return hutch_err(err, -EIO, "cannot read the descriptors of SIF '%s'", target);
        int64_t slot = 0;
        while (slot < h.descr_total && tb[slot * SIF_DESCRIPTOR_SIZE + 4])
                slot++;
        if (slot == h.descr_total)
                return hutch_err(err, -ENOSPC, "SIF '%s' has no free descriptor for an overlay partition", target);
        int64_t now = time(NULL), off = (end + SIF_ALIGN - 1) / SIF_ALIGN * SIF_ALIGN;
        struct sif_descriptor d = {.datatype = SIF_DATA_PARTITION,
                                   .used = true,
                                   .id = id + 1,
                                   .groupid = 1 | SIF_GROUP_MASK,
                                   .offset = off,
                                   .size = (int64_t) size,
                                   .size_with_padding = off - end + (int64_t) size,
                                   .created = now,
                                   .modified = now,
                                   .fstype = SIF_FS_EXT3,
                                   .parttype = SIF_PART_OVERLAY};
        snprintf(d.arch, sizeof d.arch, "%s", h.arch);
        for (uint64_t done = 0; done < size;) {
                loff_t src = (loff_t) done, dst = (loff_t) (off + (int64_t) done);
                ssize_t n = copy_file_range(in, &src, fd, &dst, size - done, 0);
                if (n <= 0) {
                        r = n < 0 ? -errno : -EIO;
                        (void) !ftruncate(fd, st.st_size);
                        return hutch_err_sys(err, r, "cannot add the overlay partition to SIF '%s'", target);
                }
                done += (uint64_t) n;
        }
        h.descr_free--;
        h.data_size = off + (int64_t) size - h.data_offset;
        h.modified = now;
        uint8_t db[SIF_DESCRIPTOR_SIZE], hb[SIF_HEADER_SIZE];
        sif_descriptor_format(&d, db);
        sif_header_format(&h, hb);
        /* the data reaches the disk before the descriptor names it */
        if (fsync(fd) < 0 ||
            pwrite(fd, db, sizeof db, h.descr_offset + slot * SIF_DESCRIPTOR_SIZE) != (ssize_t) sizeof db ||
            pwrite(fd, hb, sizeof hb, 0) != (ssize_t) sizeof hb || fsync(fd) < 0)
                return hutch_err_sys(err, -EIO, "cannot write the overlay partition of SIF '%s'", target);
        return 0;
}

static int create_in(const struct overlay_create_spec *s, bool into_sif, const struct work *w, struct hutch_error *err)
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
        if (into_sif)
                return sif_overlay_add(s->target, w->fd, s->size_mib << 20, err);
        if (renameat2(w->fd, IMG, w->parent, w->base, RENAME_NOREPLACE) < 0)
                return hutch_err_sys(err, -errno, "cannot create '%s'", s->target);
        return 0;
}

/* An existing SIF file: 1; another existing file: -EEXIST, described; none: 0. */
static int target_is_sif(const char *target, struct hutch_error *err)
{
        struct stat st;
        uint8_t head[48];
        if (lstat(target, &st) < 0)
                return 0;
        _cleanup_close_ int fd = S_ISREG(st.st_mode) ? open(target, O_RDONLY | O_CLOEXEC | O_NOFOLLOW) : -EBADF;
        if (fd >= 0 && pread_full(fd, head, sizeof head, 0) == (ssize_t) sizeof head &&
            !memcmp(head + 32, "SIF_MAGIC", 10))
                return 1;
        return hutch_err(err, -EEXIST, "'%s' already exists (and is not a SIF file to add an overlay to)", target);
}

int image_overlay_create(const struct overlay_create_spec *s, struct hutch_error *err)
{
        int sif = target_is_sif(s->target, err);
        if (sif < 0)
                return sif;
        if (s->size_mib < OVERLAY_SIZE_MIN_MIB)
                return hutch_err(err, -EINVAL, "an overlay of %llu MiB is too small: at least %d MiB",
                                 (unsigned long long) s->size_mib, OVERLAY_SIZE_MIN_MIB);
        struct work w;
        int r = work_make(s->target, &w, err);
        if (r < 0)
                return r;
        r = create_in(s, sif, &w, err);
        char last[1];
        char *argv[] = {"rm", "-rf", "--", SRC, IMG, NULL};
        tool_run(w.fd, argv, -1, false, last, 0);
        work_remove(&w);
        return r;
}
