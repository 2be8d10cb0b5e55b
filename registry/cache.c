/* The registry cache's two kinds of entries, as `hutch cache list|clean` shows and
 * removes them: blobs (blob/blobs/sha256/HEX) and the SIFs made from images
 * (oci-tmp/HEX.sif). An entry being written is locked (its .HEX.lock) and left alone. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "registry-internal.h"
#include "util/util.h"

static const struct {
        enum cache_type type;
        const char *dir;
} cache_dirs[] = {{CACHE_BLOB, "blob/blobs/sha256"}, {CACHE_SIF, "oci-tmp"}};

/* Walk one folder of entries; clean: remove those older than min_age seconds, unless
 * their lock is held. */
static int walk(const char *cache_dir, const char *sub, bool clean, time_t min_age, size_t *ret_n, uint64_t *ret_bytes,
                struct hutch_error *err)
{
        _cleanup_free_ char *p = NULL;
        if (asprintf(&p, "%s/%s", cache_dir, sub) < 0)
                return hutch_err(err, -ENOMEM, "out of memory");
        _cleanup_close_ int fd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return errno == ENOENT ? 0 : hutch_err_sys(err, -errno, "cannot open the cache folder '%s'", p);
        _cleanup_closedir_ DIR *d = dir_stream_at(fd);
        if (!d)
                return hutch_err_sys(err, -errno, "cannot read the cache folder '%s'", p);
        time_t now = time(NULL);
        for (struct dirent *e; (e = readdir(d));) {
                struct stat st;
                if (e->d_name[0] == '.' || fstatat(fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
                        continue;
                /* oci-tmp's REFHEX-ARCH.ref notes (pull.c) go with the SIFs, uncounted */
                bool note = endswith(e->d_name, ".ref");
                if (note && !clean)
                        continue;
                if (clean && (note || now - st.st_mtime >= min_age)) {
                        char lock[300];
                        size_t hl = strcspn(e->d_name, ".");
                        snprintf(lock, sizeof lock, ".%.*s.lock", (int) hl, e->d_name);
                        int lk = openat(fd, lock, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
                        if (lk >= 0 && flock(lk, LOCK_EX | LOCK_NB) < 0) {
                                close(lk); /* being written or read by a pull now */
                                continue;
                        }
                        if (unlinkat(fd, e->d_name, 0) < 0 && errno != ENOENT) {
                                int r = hutch_err_sys(err, -errno, "cannot remove '%s/%s'", p, e->d_name);
                                if (lk >= 0)
                                        close(lk);
                                return r;
                        }
                        if (lk >= 0) {
                                unlinkat(fd, lock, 0);
                                close(lk);
                        }
                        continue;
                }
                (*ret_n)++;
                *ret_bytes += (uint64_t) st.st_size;
        }
        return 0;
}

int registry_cache_usage(const char *cache_dir, struct cache_usage *ret, struct hutch_error *err)
{
        struct cache_usage u = {0};
        int r = walk(cache_dir, cache_dirs[0].dir, false, 0, &u.blobs, &u.blob_bytes, err);
        if (r >= 0)
                r = walk(cache_dir, cache_dirs[1].dir, false, 0, &u.sifs, &u.sif_bytes, err);
        if (r >= 0)
                *ret = u;
        return r;
}

int registry_cache_clean(const char *cache_dir, unsigned types, unsigned days, struct hutch_error *err)
{
        for (size_t i = 0; i < ELEMENTSOF(cache_dirs); i++) {
                size_t n = 0;
                uint64_t bytes = 0;
                if (!(types & cache_dirs[i].type))
                        continue;
                int r = walk(cache_dir, cache_dirs[i].dir, true, (time_t) days * 86400, &n, &bytes, err);
                if (r < 0)
                        return r;
        }
        return 0;
}
