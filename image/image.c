/* Opening images: format detection by content (SIF magic, squashfs superblock, folder),
 * and reading single files from inside an image without mounting it (for inspect). */
#include <errno.h>
#include <fcntl.h>
#include <libdeflate.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <dirent.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image-internal.h"
#include "util/log.h"
#include "util/util.h"

#ifndef SQFS_DATA_CACHE_BLOCKS
#define SQFS_DATA_CACHE_BLOCKS 16
#endif
#define SQFS_FRAG_CACHE_BLOCKS 8

const char *image_format_name(enum image_format f)
{
        switch (f) {
        case IMAGE_FORMAT_DIR: return "sandbox";
        case IMAGE_FORMAT_SQUASHFS: return "squashfs";
        case IMAGE_FORMAT_SIF: return "sif";
        }
        return "unknown";
}

static int open_file_image(struct image *img, struct stat *st, struct hutch_error *err)
{
        uint8_t head[64];
        ssize_t n = pread_full(img->fd, head, sizeof head, 0);
        if (n < 0)
                return hutch_err_sys(err, (int) n, "cannot read image '%s'", img->path);
        if (n >= 42 && memcmp(head + 32, "SIF_MAGIC", 9) == 0) {
                struct sif s = {0};
                const struct sif_descriptor *d;
                img->format = IMAGE_FORMAT_SIF;
                int r = sif_load(img->fd, (uint64_t) st->st_size, &s, err);
                if (r >= 0)
                        r = sif_primary_partition(&s, &d, err);
                if (r >= 0) {
                        img->offset = (uint64_t) d->offset;
                        img->size = (uint64_t) d->size;
                }
                sif_free(&s);
                if (r < 0)
                        return hutch_err_wrap(err, "image '%s'", img->path);
        } else if (n >= 4 && memcmp(head, "hsqs", 4) == 0) {
                img->format = IMAGE_FORMAT_SQUASHFS;
                img->offset = 0;
                img->size = (uint64_t) st->st_size;
        } else
                return hutch_err(err, -EINVAL, "image '%s' is not a SIF file, a squashfs file or a folder", img->path);
        int r = squashfs_check(img->fd, img->offset, img->size, &img->size, err);
        if (r < 0)
                return hutch_err_wrap(err, "image '%s'", img->path);
        return 0;
}

int image_open(const char *path, bool writable, struct image *ret, struct hutch_error *err)
{
        struct image img = IMAGE_NULL;
        struct stat st;
        char abs[PATH_MAX];

        if (!realpath(path, abs))
                return hutch_err_sys(err, -errno, "cannot open image '%s'", path);
        img.path = strdup(abs);
        if (!img.path)
                return hutch_err(err, -ENOMEM, "out of memory");
        img.writable = writable;
        /* O_NONBLOCK: a FIFO named as the image must be refused below, not waited on (it
         * changes nothing for a regular file's reads) */
        img.fd = open(abs, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (img.fd < 0 && errno != EACCES) {
                int r = hutch_err_sys(err, -errno, "cannot open image '%s'", path);
                image_close(&img);
                return r;
        }
        if (img.fd < 0 || fstat(img.fd, &st) < 0) {
                int r = hutch_err_sys(err, -errno, "cannot read image '%s'", path);
                image_close(&img);
                return r;
        }
        int r = 0;
        if (S_ISDIR(st.st_mode)) {
                img.format = IMAGE_FORMAT_DIR;
                if (writable && access(abs, W_OK) < 0)
                        r = hutch_err_sys(err, -errno, "cannot write to sandbox '%s'", path);
        } else if (S_ISREG(st.st_mode)) {
                if (writable)
                        r = hutch_err(err, -EROFS, "--writable needs a sandbox folder; '%s' is a read-only %s", path,
                                      "image file");
                else
                        r = open_file_image(&img, &st, err);
        } else
                r = hutch_err(err, -EINVAL, "image '%s' is neither a file nor a folder", path);
        if (r < 0) {
                image_close(&img);
                return r;
        }
        *ret = img;
        return 0;
}

void image_close(struct image *img)
{
        if (img->sqfs)
                sqfs_handle_free(img->sqfs);
        img->sqfs = NULL;
        if (img->fd >= 0)
                close(img->fd);
        img->fd = -EBADF;
        free(img->path);
        img->path = NULL;
}

int sqfs_handle_reset_caches(struct sqfs_handle *h)
{
        sqfs_cache_destroy(&h->ll.fs.data_cache);
        sqfs_cache_destroy(&h->ll.fs.frag_cache);
        if (sqfs_block_cache_init(&h->ll.fs.data_cache, SQFS_DATA_CACHE_BLOCKS) != SQFS_OK ||
            sqfs_block_cache_init(&h->ll.fs.frag_cache, SQFS_FRAG_CACHE_BLOCKS) != SQFS_OK)
                return -ENOMEM;
        return 0;
}

/* gzip squashfs blocks are zlib streams; squashfuse inflates them with zlib's uncompress().
 * libdeflate does the same 2.3x faster here (busybox's 16 blocks: 9.1 ms -> 3.9 ms), and
 * gzip is what mksquashfs and Apptainer build by default. One decompressor per thread, kept
 * for the process's life (libdeflate's decompressors are not shareable between threads). */
static __thread struct libdeflate_decompressor *inflater;

void image_thread_done(void)
{
        libdeflate_free_decompressor(inflater);
        inflater = NULL;
}

static sqfs_err inflate_block(void *in, size_t insz, void *out, size_t *outsz)
{
        struct libdeflate_decompressor *d = inflater;
        if (!d && !(d = inflater = libdeflate_alloc_decompressor()))
                return SQFS_ERR;
        size_t got;
        if (libdeflate_zlib_decompress(d, in, insz, out, *outsz, &got) != LIBDEFLATE_SUCCESS)
                return SQFS_ERR;
        *outsz = got;
        return SQFS_OK;
}

/* squashfuse's mapping of a FUSE inode number to a squashfs inode reference, checked: every
 * request of the kernel's reads only an inode hutch's checks accept. */
static sqfs_inode_id ino_sqfs_checked(sqfs_ll *ll, fuse_ino_t i)
{
        struct sqfs_handle *h = (struct sqfs_handle *) ll;
        return squash_inode_ref_checked(&ll->fs, h->ino_sqfs(ll, i));
}

static int sqfs_fs_open(sqfs *fs, struct image *img, struct hutch_error *err)
{
        uint8_t sb[SQUASHFS_SB_SIZE];
        int r = squashfs_read_check(img->fd, img->offset, img->size, sb, err);
        if (r < 0)
                return hutch_err_wrap(err, "image '%s'", img->path);
        sqfs_err e = sqfs_init(fs, img->fd, (size_t) img->offset);
        if (e != SQFS_OK)
                return hutch_err(err, -EINVAL, "image '%s': cannot read squashfs filesystem (%s)", img->path,
                                 e == SQFS_BADCOMP ? "unsupported compression" : "corrupt");
        if (fs->sb.compression == ZLIB_COMPRESSION)
                fs->decompressor = inflate_block;
        if (squash_open_check(fs, sb) < 0) {
                sqfs_destroy(fs);
                return hutch_err(err, -EINVAL, "image '%s': corrupt squashfs filesystem (bad tables or root)",
                                 img->path);
        }
        return 0;
}

int sqfs_handle_open(struct image *img, struct hutch_error *err)
{
        if (img->sqfs)
                return 0;
        struct sqfs_handle *h = calloc(1, sizeof *h);
        if (!h)
                return hutch_err(err, -ENOMEM, "out of memory");
        int r = sqfs_fs_open(&h->ll.fs, img, err);
        if (r < 0) {
                free(h);
                return r;
        }
        /* squashfuse caches one decompressed data block and three fragment blocks: a binary
         * paged in by execve (out-of-order faults) then decompresses the same blocks again and
         * again, most of a squashfs container's start-up (see docs/performance.md). Keep more:
         * memory is used only by blocks actually read. */
        if (sqfs_handle_reset_caches(h) < 0) {
                sqfs_destroy(&h->ll.fs);
                free(h);
                return hutch_err(err, -ENOMEM, "out of memory for the squashfs cache");
        }
        if (sqfs_ll_init(&h->ll) != SQFS_OK) {
                sqfs_destroy(&h->ll.fs);
                free(h);
                return hutch_err(err, -EINVAL, "image '%s': cannot index squashfs filesystem", img->path);
        }
        h->ino_sqfs = h->ll.ino_sqfs;
        h->ll.ino_sqfs = ino_sqfs_checked;
        img->sqfs = h;
        return 0;
}

void sqfs_handle_free(struct sqfs_handle *h)
{
        squash_forget(&h->ll.fs);
        sqfs_ll_destroy(&h->ll);
        free(h);
}

/* Resolve path inside the squashfs, following symlinks inside the image (bounded). */
static int sqfs_resolve(sqfs *fs, const char *path, sqfs_inode *ret, int depth)
{
        char cur[PATH_MAX] = "";
        const char *p = path;

        if (depth > 16)
                return -ELOOP;
        if (squash_inode_get(fs, sqfs_inode_root(fs), ret) < 0)
                return -EIO;
        while (*p) {
                while (*p == '/')
                        p++;
                size_t n = strcspn(p, "/");
                if (n == 0)
                        break;
                if (strlen(cur) + n + 2 >= sizeof cur)
                        return -ENAMETOOLONG;
                char name[NAME_MAX + 1];
                if (n > NAME_MAX)
                        return -ENAMETOOLONG;
                memcpy(name, p, n);
                name[n] = 0;
                strcat(cur, "/");
                strcat(cur, name);
                p += n;
                sqfs_dir_entry e;
                int r = squash_dir_lookup(fs, ret, name, &e);
                if (r == -ENOTDIR || r == -ENOENT)
                        return -ENOENT;
                if (r < 0 || squash_inode_get(fs, e.inode, ret) < 0)
                        return -EIO;
                if (S_ISLNK(sqfs_mode(ret->base.inode_type))) {
                        char target[PATH_MAX];
                        size_t sz = sizeof target;
                        if (sqfs_readlink(fs, ret, target, &sz) != SQFS_OK)
                                return -EIO;
                        char next[PATH_MAX * 2];
                        char *slash = strrchr(cur, '/');
                        *slash = 0;
                        if (target[0] == '/')
                                snprintf(next, sizeof next, "%s%s", target, p);
                        else
                                snprintf(next, sizeof next, "%s/%s%s", cur, target, p);
                        _cleanup_free_ char *norm = NULL;
                        if (path_normalize(next, &norm) < 0)
                                return -EINVAL;
                        return sqfs_resolve(fs, norm, ret, depth + 1);
                }
        }
        return 0;
}

int image_read_file(struct image *img, const char *path, size_t max, char **ret, size_t *ret_len,
                    struct hutch_error *err)
{
        if (img->format == IMAGE_FORMAT_DIR) {
                _cleanup_close_ int root = openat(img->fd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
                if (root < 0)
                        return hutch_err_sys(err, -errno, "cannot open image '%s'", img->path);
                /* openat2 RESOLVE_IN_ROOT: symlinks in the sandbox resolve inside it; O_PATH
                 * first: a FIFO's open for reading blocks, a device's may act */
                struct open_how how = {.flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_IN_ROOT};
                struct stat st;
                while (*path == '/')
                        path++;
                _cleanup_close_ int fd = (int) syscall(SYS_openat2, root, path, &how, sizeof how);
                if (fd < 0)
                        return errno == ENOENT ? -ENOENT
                                               : hutch_err_sys(err, -errno, "cannot read '%s' in image", path);
                if (fstat(fd, &st) < 0)
                        return hutch_err_sys(err, -errno, "cannot read '%s' in image", path);
                if (!S_ISREG(st.st_mode))
                        return hutch_err(err, -EINVAL, "'/%s' in image '%s' is not a regular file", path, img->path);
                char pbuf[64];
                snprintf(pbuf, sizeof pbuf, "/proc/self/fd/%d", fd);
                int r = read_full_at(AT_FDCWD, pbuf, max, ret, ret_len);
                return r < 0 ? hutch_err_sys(err, r, "cannot read '%s' in image", path) : 0;
        }
        int r = sqfs_handle_open(img, err);
        if (r < 0)
                return r;
        sqfs *fs = &img->sqfs->ll.fs;
        sqfs_inode inode;
        r = sqfs_resolve(fs, path, &inode, 0);
        if (r == -ENOENT)
                return r;
        if (r < 0 || !S_ISREG(sqfs_mode(inode.base.inode_type)))
                return hutch_err(err, r < 0 ? r : -EISDIR, "cannot read '%s' in image '%s'", path, img->path);
        uint64_t size = inode.xtra.reg.file_size;
        if (size > max)
                return hutch_err(err, -EFBIG, "'%s' in image '%s' is too large", path, img->path);
        _cleanup_free_ char *buf = malloc(size + 1);
        if (!buf)
                return hutch_err(err, -ENOMEM, "out of memory");
        ssize_t got = squash_read(fs, &inode, 0, (size_t) size, buf);
        if (got < 0 || (uint64_t) got != size)
                return hutch_err(err, -EIO, "cannot read '%s' in image '%s': corrupt squashfs", path, img->path);
        buf[got] = 0;
        if (ret_len)
                *ret_len = (size_t) got;
        *ret = steal_pointer(&buf);
        return 0;
}

bool image_has_file(struct image *img, const char *path)
{
        _cleanup_free_ char *buf = NULL;
        struct hutch_error e;
        return image_read_file(img, path, 1 << 20, &buf, NULL, &e) >= 0;
}

/* The names of the folders in a folder of the image (symlinks not followed), unsorted;
 * -ENOENT when it is absent or not a folder. */
int image_list_dirs(struct image *img, const char *path, char ***ret, struct hutch_error *err)
{
        _cleanup_strv_ char **v = NULL;
        if (img->format == IMAGE_FORMAT_DIR) {
                _cleanup_close_ int root = openat(img->fd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
                struct open_how how = {.flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC, .resolve = RESOLVE_IN_ROOT};
                while (*path == '/')
                        path++;
                int fd = root < 0 ? -1 : (int) syscall(SYS_openat2, root, *path ? path : ".", &how, sizeof how);
                if (fd < 0)
                        return errno == ENOENT || errno == ENOTDIR
                                       ? -ENOENT
                                       : hutch_err_sys(err, -errno, "cannot read '%s' in image", path);
                DIR *d = fdopendir(fd);
                if (!d) {
                        close(fd);
                        return hutch_err_sys(err, -errno, "cannot read '%s' in image", path);
                }
                struct dirent *de;
                while ((de = readdir(d)))
                        if (de->d_type == DT_DIR && strcmp(de->d_name, ".") && strcmp(de->d_name, "..") &&
                            strv_extend(&v, de->d_name) < 0) {
                                closedir(d);
                                return hutch_err(err, -ENOMEM, "out of memory");
                        }
                closedir(d);
        } else {
                int r = sqfs_handle_open(img, err);
                if (r < 0)
                        return r;
                sqfs *fs = &img->sqfs->ll.fs;
                sqfs_inode inode, child;
                r = sqfs_resolve(fs, path, &inode, 0);
                if (r == -ENOENT || (r >= 0 && !S_ISDIR(sqfs_mode(inode.base.inode_type))))
                        return -ENOENT;
                struct squash_dir dir;
                if (r < 0 || squash_dir_open(fs, &inode, 0, &dir) < 0)
                        return hutch_err(err, -EIO, "cannot read '%s' in image '%s'", path, img->path);
                sqfs_dir_entry e;
                char name[SQUASHFS_NAME_LEN + 1];
                while ((r = squash_dir_next(&dir, &e, name)) > 0) {
                        if (squash_inode_get(fs, e.inode, &child) < 0 || !S_ISDIR(sqfs_mode(child.base.inode_type)))
                                continue;
                        if (strv_extend(&v, name) < 0)
                                return hutch_err(err, -ENOMEM, "out of memory");
                }
                if (r < 0)
                        return hutch_err(err, -EIO, "cannot read '%s' in image '%s': corrupt squashfs", path,
                                         img->path);
        }
        if (!v && !(v = calloc(1, sizeof *v)))
                return hutch_err(err, -ENOMEM, "out of memory");
        *ret = steal_pointer(&v);
        return 0;
}
