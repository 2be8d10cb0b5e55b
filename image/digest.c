/* An image's content digest for the audit trail and `instance list --all`: SHA-256 of the
 * bytes of its root file system (a SIF's primary partition, a squashfs file whole), read
 * once per version of the file: the result is kept in a cache folder under the file's
 * device and inode, valid while its size, mtime and ctime (which no user can set back)
 * stay the same. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image.h"
#include "util/sha256.h"
#include "util/util.h"

#define CHUNK (1u << 20)

static bool is_digest(const char *s)
{
        if (strncmp(s, "sha256:", 7) || strlen(s) != 71)
                return false;
        for (const char *p = s + 7; *p; p++)
                if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
                        return false;
        return true;
}

/* A supervisor blocks the signals it reads from a signalfd: one asking it to stop, pending
 * now, ends a long read rather than waiting behind it. */
static bool stop_asked(void)
{
        sigset_t p;
        return sigpending(&p) == 0 && (sigismember(&p, SIGTERM) || sigismember(&p, SIGINT) || sigismember(&p, SIGHUP));
}

static int hash_range(int fd, uint64_t off, uint64_t len, char ret[72])
{
        _cleanup_free_ uint8_t *buf = malloc(CHUNK);
        struct sha256 s;
        uint8_t d[32];
        if (!buf)
                return -ENOMEM;
        (void) posix_fadvise(fd, (off_t) off, (off_t) len, POSIX_FADV_SEQUENTIAL);
        sha256_init(&s);
        while (len > 0) {
                ssize_t n = pread_full(fd, buf, len < CHUNK ? len : CHUNK, (off_t) off);
                if (n < 0)
                        return (int) n;
                if (n == 0)
                        return -EIO; /* shorter than its header says */
                sha256_update(&s, buf, (size_t) n);
                off += (uint64_t) n;
                len -= (uint64_t) n;
                if (stop_asked())
                        return -EINTR;
        }
        sha256_final(&s, d);
        sha256_hex(d, ret);
        return 0;
}

/* The cache entry's first part: what must still hold for its digest to be the file's. */
static void identity(const struct stat *st, const struct image *img, char *buf, size_t size)
{
        snprintf(buf, size, "%lld %lld.%09ld %lld.%09ld %llu %llu ", (long long) st->st_size,
                 (long long) st->st_mtim.tv_sec, st->st_mtim.tv_nsec, (long long) st->st_ctim.tv_sec,
                 st->st_ctim.tv_nsec, (unsigned long long) img->offset, (unsigned long long) img->size);
}

int image_digest(const char *path, const char *cache_dir, char ret[72], struct hutch_error *err)
{
        struct image img = IMAGE_NULL;
        struct stat a, b;
        char key[64], id[160], digest[72];
        int r = image_open(path, false, &img, err);
        if (r < 0)
                return r;
        if (img.format == IMAGE_FORMAT_DIR) {
                image_close(&img);
                return hutch_err(err, -EISDIR, "image '%s' is a folder: it has no digest", path);
        }
        if (fstat(img.fd, &a) < 0) {
                image_close(&img);
                return hutch_err_sys(err, -errno, "cannot read image '%s'", path);
        }
        snprintf(key, sizeof key, "%llx-%llx", (unsigned long long) a.st_dev, (unsigned long long) a.st_ino);
        identity(&a, &img, id, sizeof id);
        _cleanup_close_ int dfd = -EBADF;
        if (cache_dir && mkdir_p_at(AT_FDCWD, cache_dir, 0700) >= 0)
                dfd = open(cache_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        _cleanup_free_ char *entry = NULL;
        if (dfd >= 0 && read_full_at(dfd, key, 512, &entry, NULL) >= 0 && startswith(entry, id)) {
                char *d = entry + strlen(id);
                d[strcspn(d, "\n")] = 0;
                if (is_digest(d)) {
                        memcpy(ret, d, 72);
                        image_close(&img);
                        return 0;
                }
        }
        r = hash_range(img.fd, img.offset, img.size, digest);
        if (r < 0) {
                image_close(&img);
                return hutch_err_sys(err, r, "cannot read image '%s' for its digest", path);
        }
        /* changed while read: the digest is of no one version, so not kept */
        bool same = fstat(img.fd, &b) == 0 && b.st_size == a.st_size && b.st_mtim.tv_sec == a.st_mtim.tv_sec &&
                    b.st_mtim.tv_nsec == a.st_mtim.tv_nsec && b.st_ctim.tv_sec == a.st_ctim.tv_sec &&
                    b.st_ctim.tv_nsec == a.st_ctim.tv_nsec;
        image_close(&img);
        if (dfd >= 0 && same) {
                _cleanup_free_ char *line = strjoin(id, digest, "\n");
                char tmp[80];
                snprintf(tmp, sizeof tmp, "%s.%d", key, (int) getpid());
                /* written aside, then renamed over: a reader sees a whole entry or none */
                if (line && write_file_at(dfd, tmp, line, strlen(line), 0600) >= 0 && renameat(dfd, tmp, dfd, key) < 0)
                        unlinkat(dfd, tmp, 0);
        }
        memcpy(ret, digest, 72);
        return 0;
}
