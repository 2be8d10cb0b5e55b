/* Conversions between a sandbox folder, a squashfs file and a SIF file, and the SIF writer.
 * Every target is written beside its final name and renamed into place, so a failure
 * leaves neither a partial file nor a changed target. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "image.h"
#include "util/log.h"
#include "util/util.h"

#define SIF_DESCRIPTORS 48
#define SIF_DESCR_OFFSET 4096
#define SIF_ALIGN 4096

static int copy_range(int in, off_t off, uint64_t len, int out, off_t out_off)
{
        while (len > 0) {
                ssize_t n = copy_file_range(in, &off, out, &out_off, len > (1u << 30) ? (1u << 30) : len, 0);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EXDEV || errno == ENOSYS || errno == EINVAL) {
                                char buf[65536];
                                ssize_t k = pread(in, buf, len < sizeof buf ? len : sizeof buf, off);
                                if (k <= 0)
                                        return k < 0 ? -errno : -EIO;
                                if (pwrite(out, buf, k, out_off) != k)
                                        return -EIO;
                                off += k;
                                out_off += k;
                                len -= k;
                                continue;
                        }
                        return -errno;
                }
                if (n == 0)
                        return -EIO;
                len -= n;
        }
        return 0;
}

static const char *host_arch_code(void)
{
        struct utsname u;
        static const struct {
                const char *machine, *goarch;
        } m[] = {{"x86_64", "amd64"},    {"aarch64", "arm64"}, {"i686", "386"},
                 {"ppc64le", "ppc64le"}, {"s390x", "s390x"},   {"riscv64", "riscv64"}};
        if (uname(&u) == 0)
                for (size_t i = 0; i < ELEMENTSOF(m); i++)
                        if (!strcmp(u.machine, m[i].machine))
                                return sif_arch_code(m[i].goarch);
        return "00";
}

int sif_write(const char *target, int sqfs_fd, const char *deffile, const char *inspect_json, struct hutch_error *err)
{
        struct sif_header h = {.launch = "#!/usr/bin/env run-singularity\n", .version = "01"};
        struct sif_descriptor d[3];
        struct stat st;
        int64_t now = time(NULL);

        if (fstat(sqfs_fd, &st) < 0)
                return hutch_err_sys(err, -errno, "cannot stat squashfs");
        snprintf(h.arch, sizeof h.arch, "%s", host_arch_code());
        if (getrandom(h.id, sizeof h.id, 0) != sizeof h.id)
                return hutch_err_sys(err, -errno, "getrandom");
        h.id[6] = (h.id[6] & 0x0f) | 0x40; /* UUID version 4, variant 1 */
        h.id[8] = (h.id[8] & 0x3f) | 0x80;
        h.created = h.modified = now;
        h.descr_total = SIF_DESCRIPTORS;
        h.descr_free = SIF_DESCRIPTORS - 3;
        h.descr_offset = SIF_DESCR_OFFSET;
        h.descr_size = SIF_DESCRIPTORS * SIF_DESCRIPTOR_SIZE;
        h.data_offset = h.descr_offset + h.descr_size;

        const char *blobs[2] = {deffile ? deffile : "", inspect_json ? inspect_json : "{}"};
        int32_t types[3] = {SIF_DATA_DEFFILE, SIF_DATA_GENERICJSON, SIF_DATA_PARTITION};
        int64_t end = h.data_offset;
        memset(d, 0, sizeof d);
        for (int i = 0; i < 3; i++) {
                int64_t size = i < 2 ? (int64_t) strlen(blobs[i]) : st.st_size;
                int64_t off = i < 2 ? end : (end + SIF_ALIGN - 1) / SIF_ALIGN * SIF_ALIGN;
                d[i] = (struct sif_descriptor){
                        .datatype = types[i],
                        .used = true,
                        .id = (uint32_t) i + 1,
                        .groupid = 1 | SIF_GROUP_MASK,
                        .offset = off,
                        .size = size,
                        .size_with_padding = off - end + size,
                        .created = now,
                        .modified = now,
                };
                end = off + size;
        }
        d[2].fstype = SIF_FS_SQUASH;
        d[2].parttype = SIF_PART_PRIMSYS;
        snprintf(d[2].arch, sizeof d[2].arch, "%s", h.arch);
        h.data_size = end - h.data_offset;

        _cleanup_close_ int fd = open(target, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0755);
        if (fd < 0)
                return hutch_err_sys(err, -errno, "cannot create '%s'", target);
        uint8_t hb[SIF_HEADER_SIZE];
        _cleanup_free_ uint8_t *tb = calloc(SIF_DESCRIPTORS, SIF_DESCRIPTOR_SIZE);
        if (!tb)
                return hutch_err(err, -ENOMEM, "out of memory");
        sif_header_format(&h, hb);
        for (int i = 0; i < 3; i++)
                sif_descriptor_format(&d[i], tb + i * SIF_DESCRIPTOR_SIZE);
        int r = 0;
        if (pwrite(fd, hb, sizeof hb, 0) != (ssize_t) sizeof hb ||
            pwrite(fd, tb, h.descr_size, h.descr_offset) != (ssize_t) h.descr_size ||
            pwrite(fd, blobs[0], d[0].size, d[0].offset) != (ssize_t) d[0].size ||
            pwrite(fd, blobs[1], d[1].size, d[1].offset) != (ssize_t) d[1].size)
                r = -EIO;
        if (r >= 0)
                r = copy_range(sqfs_fd, 0, (uint64_t) st.st_size, fd, d[2].offset);
        if (r >= 0 && fsync(fd) < 0)
                r = -errno;
        if (r < 0)
                return hutch_err_sys(err, r, "cannot write SIF '%s'", target);
        return 0;
}

static int make_tmp_name(const char *target, char **ret)
{
        char *t = NULL;
        if (asprintf(&t, "%s.hutch-tmp-%d", target, (int) getpid()) < 0)
                return -ENOMEM;
        *ret = t;
        return 0;
}

static void remove_tree(const char *path)
{
        char *argv[] = {"rm", "-rf", "--", (char *) path, NULL};
        spawn_wait(argv, true);
}

/* Squashfs bytes of img in a new file at path (mksquashfs for folders). */
static int squashfs_from(struct image *img, const char *path, struct hutch_error *err)
{
        if (img->format == IMAGE_FORMAT_DIR) {
                char *argv[] = {"mksquashfs",
                                img->path,
                                (char *) path,
                                "-noappend",
                                "-quiet",
                                "-no-progress",
                                getuid() != 0 ? "-all-root" : NULL,
                                NULL};
                int r = spawn_wait(argv, true);
                if (r != 0) {
                        unlink(path);
                        return hutch_err(err, r < 0 ? r : -EIO, "mksquashfs of '%s' failed (%s %d)", img->path,
                                         r < 0 ? "error" : "exit status", r < 0 ? -r : r);
                }
                return 0;
        }
        _cleanup_close_ int out = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (out < 0)
                return hutch_err_sys(err, -errno, "cannot create '%s'", path);
        int r = copy_range(img->fd, (off_t) img->offset, img->size, out, 0);
        if (r < 0) {
                unlink(path);
                return hutch_err_sys(err, r, "cannot write '%s'", path);
        }
        return 0;
}

static int build_sandbox(struct image *img, const char *tmp, struct hutch_error *err)
{
        if (img->format == IMAGE_FORMAT_DIR) {
                char *argv[] = {"cp", "-a", "--", img->path, (char *) tmp, NULL};
                if (spawn_wait(argv, false) != 0) {
                        remove_tree(tmp);
                        return hutch_err(err, -EIO, "copying '%s' failed", img->path);
                }
                return 0;
        }
        _cleanup_free_ char *sq = strjoin(tmp, ".sqfs", NULL);
        if (!sq)
                return hutch_err(err, -ENOMEM, "out of memory");
        int r = squashfs_from(img, sq, err);
        if (r < 0)
                return r;
        char *argv[] = {"unsquashfs", "-no-progress", "-quiet", "-d", (char *) tmp, sq, NULL};
        r = spawn_wait(argv, true);
        unlink(sq);
        if (r != 0) {
                remove_tree(tmp);
                return hutch_err(err, -EIO, "unsquashfs of '%s' failed", img->path);
        }
        return 0;
}

static char *default_deffile(struct image *img)
{
        char *d = NULL;
        if (image_read_file(img, "/.singularity.d/Singularity", 1 << 20, &d, NULL, &(struct hutch_error){0}) >= 0)
                return d;
        if (asprintf(&d, "bootstrap: localimage\nfrom: %s\n", img->path) < 0)
                return NULL;
        return d;
}

static int build_file(struct image *img, const struct build_spec *b, const char *tmp, bool sif, struct hutch_error *err)
{
        if (!sif)
                return squashfs_from(img, tmp, err);
        _cleanup_free_ char *sq = strjoin(tmp, ".sqfs", NULL), *def = NULL, *json = NULL;
        if (!sq)
                return hutch_err(err, -ENOMEM, "out of memory");
        int r = squashfs_from(img, sq, err);
        if (r < 0)
                return r;
        def = b->deffile ? strdup(b->deffile) : default_deffile(img);
        if (image_inspect_json(img, IMAGE_META_ALL, &json, err) < 0)
                json = NULL;
        _cleanup_close_ int fd = open(sq, O_RDONLY | O_CLOEXEC);
        r = fd < 0 ? hutch_err_sys(err, -errno, "cannot reopen '%s'", sq) : sif_write(tmp, fd, def, json, err);
        unlink(sq);
        if (r < 0)
                unlink(tmp);
        return r;
}

int image_build(const struct build_spec *b, struct hutch_error *err)
{
        struct image img = IMAGE_NULL;
        struct stat st;
        bool sandbox = b->sandbox;
        bool sif = !sandbox && !endswith(b->target, ".sqfs") && !endswith(b->target, ".squashfs");
        _cleanup_free_ char *tmp = NULL;

        if (lstat(b->target, &st) == 0 && !b->force)
                return hutch_err(err, -EEXIST, "build target '%s' already exists; use --force to overwrite it",
                                 b->target);
        int r = image_open(b->source, false, &img, err);
        if (r < 0)
                return r;
        if (make_tmp_name(b->target, &tmp) < 0) {
                image_close(&img);
                return hutch_err(err, -ENOMEM, "out of memory");
        }
        log_verbose("building %s from %s image %s", b->target, image_format_name(img.format), img.path);
        r = sandbox ? build_sandbox(&img, tmp, err) : build_file(&img, b, tmp, sif, err);
        image_close(&img);
        if (r < 0)
                return r;
        if (lstat(b->target, &st) == 0 && S_ISDIR(st.st_mode))
                remove_tree(b->target);
        if (rename(tmp, b->target) < 0) {
                r = hutch_err_sys(err, -errno, "cannot move the new image to '%s'", b->target);
                remove_tree(tmp);
                return r;
        }
        return 0;
}
