/* The decompressed-file cache. A squashfs start spends most of its time inflating the
 * files its first execs need (busybox: 16 gzip blocks, ~5 ms here), again on every start,
 * since every start is a fresh FUSE mount with an empty page cache. The image server keeps
 * each file it pushes whole (at least one data block, at most PUSH_MAX) in a per-user
 * folder on tmpfs, under a name made of the image file's identity (device, inode, size,
 * modification and change times), the squashfs's offset in it and the file's inode
 * number: a changed or replaced image never matches an old entry (a change time cannot be
 * set back by its owner). Entries are written whole under a temporary name and renamed
 * into place; a hit refreshes the entry's modification time, and the oldest go first when
 * the folder grows past its cap ('file cache size' in hutch.conf). The folder is the
 * user's alone (0700, owner checked at every level below the base), so what it holds is
 * trusted as the user's own files are. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "image.h"
#include "util/util.h"

#define ENTRY_PREFIX "f-"
#define TEMP_PREFIX ".t-"
#define TEMP_STALE_S 600 /* a temporary file this old was left by a server that died */

/* The cache is $XDG_RUNTIME_DIR/hutch/cache when that folder is the user's (as instance
 * state), else /dev/shm/hutch-UID/cache: tmpfs either way, never a home folder that may be
 * on NFS. The base is trusted (the user's own, or the sticky /dev/shm); each level below it
 * is checked. */
static void cache_where(uid_t uid, const char *xdg_runtime_dir, const char **ret_base, char own[32],
                        const char *levels[2])
{
        bool xdg = dir_is_users(xdg_runtime_dir, uid);
        snprintf(own, 32, "hutch-%u", (unsigned) uid);
        *ret_base = xdg ? xdg_runtime_dir : "/dev/shm";
        levels[0] = xdg ? "hutch" : own;
        levels[1] = "cache";
}

int file_cache_path(uid_t uid, const char *xdg_runtime_dir, char **ret)
{
        const char *base, *levels[2];
        char own[32];
        cache_where(uid, xdg_runtime_dir, &base, own, levels);
        return asprintf(ret, "%s/%s/%s", base, levels[0], levels[1]) < 0 ? -ENOMEM : 0;
}

/* Enter (and with create, make) one folder below dirfd: not through a symlink, and only
 * if it is uid's and no one else's to write. */
static int enter_own(int dirfd, const char *name, uid_t uid, bool create)
{
        if (create && mkdirat(dirfd, name, 0700) < 0 && errno != EEXIST)
                return -errno;
        int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        struct stat st;
        if (fstat(fd, &st) < 0 || st.st_uid != uid || (st.st_mode & 022)) {
                close(fd);
                return -EPERM;
        }
        return fd;
}

int file_cache_open(uid_t uid, const char *xdg_runtime_dir, bool create)
{
        const char *base, *levels[2];
        char own[32];
        cache_where(uid, xdg_runtime_dir, &base, own, levels);
        int fd = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        for (size_t i = 0; i < ELEMENTSOF(levels); i++) {
                int next = enter_own(fd, levels[i], uid, create);
                close(fd);
                if (next < 0)
                        return next;
                fd = next;
        }
        return fd;
}

int file_cache_why_not_own(uid_t uid, const char *xdg_runtime_dir, char **ret_path, struct stat *ret_st)
{
        const char *base, *levels[2];
        char own[32];
        cache_where(uid, xdg_runtime_dir, &base, own, levels);
        _cleanup_close_ int fd = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        for (size_t i = 0; i < ELEMENTSOF(levels); i++) {
                struct stat st;
                if (fstatat(fd, levels[i], &st, AT_SYMLINK_NOFOLLOW) < 0)
                        return errno == ENOENT ? 0 : -errno;
                if (st.st_uid != uid || (st.st_mode & 022) || !S_ISDIR(st.st_mode)) {
                        char *p = NULL;
                        if (asprintf(&p, "%s/%s%s%s", base, levels[0], i ? "/" : "", i ? levels[1] : "") < 0)
                                return -ENOMEM;
                        *ret_path = p;
                        *ret_st = st;
                        return 1;
                }
                int next = openat(fd, levels[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (next < 0)
                        return -errno;
                close(fd);
                fd = next;
        }
        return 0;
}

void file_cache_name(const struct file_cache_key *k, char *buf, size_t len)
{
        snprintf(buf, len, ENTRY_PREFIX "%llx-%llx-%llx-%llx-%llx-%llx-%llx", (unsigned long long) k->dev,
                 (unsigned long long) k->ino, (unsigned long long) k->size, (unsigned long long) k->mtime_ns,
                 (unsigned long long) k->ctime_ns, (unsigned long long) k->offset, (unsigned long long) k->inode);
}

int file_cache_get(int dirfd, const struct file_cache_key *k, uint64_t file_size)
{
        char name[FILE_CACHE_NAME_MAX];
        struct stat st;
        file_cache_name(k, name, sizeof name);
        int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
            (file_size && (uint64_t) st.st_size != file_size)) {
                close(fd);
                unlinkat(dirfd, name, 0); /* not what the name promises: never again */
                return -ESTALE;
        }
        futimens(fd, NULL); /* recently used: evicted last */
        return fd;
}

int file_cache_put(int dirfd, const struct file_cache_key *k, const void *data, uint64_t size, uint64_t max,
                   int64_t *used)
{
        static unsigned seq;
        char name[FILE_CACHE_NAME_MAX], tmp[64];
        if (size > max / 2) /* one entry never pushes out the whole cache */
                return -EFBIG;
        file_cache_name(k, name, sizeof name);
        snprintf(tmp, sizeof tmp, TEMP_PREFIX "%ld-%u", (long) gettid(), __atomic_fetch_add(&seq, 1, __ATOMIC_RELAXED));
        int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return -errno;
        int r = write_full(fd, data, size);
        if (close(fd) < 0 && r == 0)
                r = -errno;
        if (r == 0 && renameat(dirfd, tmp, dirfd, name) < 0)
                r = -errno;
        if (r < 0) {
                unlinkat(dirfd, tmp, 0);
                return r;
        }
        /* a scan of the folder costs a stat per entry: once per writer, then again only
         * when its count says the cap is passed (other writers' entries unseen till then) */
        uint64_t left;
        if (used && *used >= 0) {
                *used += (int64_t) ((size + 4095) & ~(uint64_t) 4095);
                if ((uint64_t) *used <= max)
                        return 0;
        }
        r = file_cache_trim(dirfd, max, &left);
        if (used)
                *used = r < 0 ? -1 : (int64_t) left;
        return r;
}

struct entry {
        char *name;
        uint64_t size;
        struct timespec used;
};

static int entry_cmp(const void *a, const void *b)
{
        const struct entry *x = a, *y = b;
        if (x->used.tv_sec != y->used.tv_sec)
                return x->used.tv_sec < y->used.tv_sec ? -1 : 1;
        if (x->used.tv_nsec != y->used.tv_nsec)
                return x->used.tv_nsec < y->used.tv_nsec ? -1 : 1;
        return strcmp(x->name, y->name);
}

/* The entries (and, with temps, the temporary files) in dirfd: sorted oldest first. */
static int entries_read(int dirfd, bool temps, struct entry **ret, size_t *ret_n)
{
        DIR *d = dir_stream_at(dirfd);
        if (!d)
                return -errno;
        struct entry *v = NULL;
        size_t n = 0, cap = 0;
        int r = 0;
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        for (struct dirent *de; (de = readdir(d));) {
                struct stat st;
                bool entry = startswith(de->d_name, ENTRY_PREFIX);
                if (!entry && !startswith(de->d_name, TEMP_PREFIX))
                        continue;
                if (fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
                        continue;
                if (!entry && !temps && now.tv_sec - st.st_mtim.tv_sec < TEMP_STALE_S)
                        continue; /* being written */
                if (n == cap) {
                        struct entry *nv = realloc(v, (cap = cap ? cap * 2 : 64) * sizeof *v);
                        if (!nv) {
                                r = -ENOMEM;
                                break;
                        }
                        v = nv;
                }
                v[n].name = strdup(de->d_name);
                if (!v[n].name) {
                        r = -ENOMEM;
                        break;
                }
                /* a stale temporary file sorts first: it goes before any entry */
                v[n].used = entry ? st.st_mtim : (struct timespec){0};
                v[n++].size = (uint64_t) st.st_blocks * 512;
        }
        closedir(d);
        if (r < 0) {
                for (size_t i = 0; i < n; i++)
                        free(v[i].name);
                free(v);
                return r;
        }
        if (n > 0) /* v is NULL then: qsort's arguments must not be */
                qsort(v, n, sizeof *v, entry_cmp);
        *ret = v;
        *ret_n = n;
        return 0;
}

static void entries_free(struct entry *v, size_t n)
{
        for (size_t i = 0; i < n; i++)
                free(v[i].name);
        free(v);
}

int file_cache_usage(int dirfd, uint64_t *ret_bytes, size_t *ret_files)
{
        struct entry *v;
        size_t n;
        int r = entries_read(dirfd, false, &v, &n);
        if (r < 0)
                return r;
        uint64_t total = 0;
        size_t files = 0;
        for (size_t i = 0; i < n; i++)
                if (startswith(v[i].name, ENTRY_PREFIX)) {
                        total += v[i].size;
                        files++;
                }
        entries_free(v, n);
        *ret_bytes = total;
        *ret_files = files;
        return 0;
}

int file_cache_trim(int dirfd, uint64_t max, uint64_t *ret_left)
{
        struct entry *v;
        size_t n;
        int r = entries_read(dirfd, max == 0, &v, &n);
        if (r < 0)
                return r;
        uint64_t total = 0;
        for (size_t i = 0; i < n; i++)
                total += v[i].size;
        /* past the cap, down to 7/8 of it: the next writes do not scan again at once */
        uint64_t target = total > max ? max - max / 8 : max;
        for (size_t i = 0; i < n && (total > target || !startswith(v[i].name, ENTRY_PREFIX)); i++) {
                if (unlinkat(dirfd, v[i].name, 0) < 0 && errno != ENOENT && r == 0)
                        r = -errno;
                total -= v[i].size;
        }
        entries_free(v, n);
        if (ret_left)
                *ret_left = total;
        return r;
}
