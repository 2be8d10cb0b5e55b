/* The admin's trusted-key policy as data: hutch.conf's 'trusted key = FINGERPRINT
 * [FOLDER...]' lines, which of them govern an image path, and the success cache the lean
 * hutch consults before spawning hutch-sign. No OpenPGP here: the lean hutch links this. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sign.h"
#include "util/cleanup.h"
#include "util/util.h"

static bool is_fingerprint(const char *s, size_t n)
{
        if (n != 40)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!strchr("0123456789abcdefABCDEF", s[i]))
                        return false;
        return true;
}

/* path is folder or beneath it (both absolute and normalised) */
static bool is_beneath(const char *path, const char *folder)
{
        size_t n = strlen(folder);
        while (n > 1 && folder[n - 1] == '/')
                n--;
        if (n == 1 && folder[0] == '/')
                return true;
        return strncmp(path, folder, n) == 0 && (path[n] == '/' || path[n] == 0);
}

int trust_policy_for(char *const *lines, const char *path, char ***ret_fps, struct hutch_error *err)
{
        _cleanup_strv_ char **fps = NULL;

        for (size_t i = 0; lines && lines[i]; i++) {
                _cleanup_strv_ char **w = NULL;
                if (strsplit(lines[i], " \t", &w) < 0)
                        return hutch_err(err, -ENOMEM, "out of memory");
                if (!w[0] || !is_fingerprint(w[0], strlen(w[0])))
                        return hutch_err(err, -EINVAL,
                                         "hutch.conf: 'trusted key = %s': wants a key fingerprint (40 hex digits) "
                                         "and folders",
                                         lines[i]);
                bool applies = !w[1];
                for (size_t k = 1; w[k]; k++) {
                        if (w[k][0] != '/')
                                return hutch_err(err, -EINVAL,
                                                 "hutch.conf: 'trusted key': folder '%s' is not an absolute path",
                                                 w[k]);
                        applies |= is_beneath(path, w[k]);
                }
                if (!applies)
                        continue;
                for (char *p = w[0]; *p; p++)
                        if (*p >= 'a' && *p <= 'f')
                                *p = (char) (*p - 'a' + 'A');
                if (!strv_contains(fps, w[0]) && strv_extend(&fps, w[0]) < 0)
                        return hutch_err(err, -ENOMEM, "out of memory");
        }
        *ret_fps = steal_pointer(&fps);
        return 0;
}

uint64_t trust_policy_hash(char *const *fps)
{
        uint64_t h = 14695981039346656037ull; /* FNV-1a: names cache entries, not a security check */
        for (size_t i = 0; fps && fps[i]; i++)
                for (const char *p = fps[i];; p++) {
                        h = (h ^ (unsigned char) *p) * 1099511628211ull;
                        if (!*p)
                                break;
                }
        return h;
}

/* One level below dirfd: made if missing, not through a symlink, uid's and no one else's
 * to write. */
static int enter_own(int dirfd, const char *name, uid_t uid, bool create)
{
        if (create && mkdirat(dirfd, name, 0700) < 0 && errno != EEXIST)
                return -errno;
        int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        struct stat st;
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0 || st.st_uid != uid || (st.st_mode & 022)) {
                close(fd);
                return -EPERM;
        }
        return fd;
}

int trust_cache_open(uid_t uid, const char *xdg_runtime_dir, bool create)
{
        char own[32];
        bool xdg = dir_is_users(xdg_runtime_dir, uid);
        snprintf(own, sizeof own, "hutch-%u", (unsigned) uid);
        const char *levels[] = {xdg ? "hutch" : own, "trust"};
        int fd = open(xdg ? xdg_runtime_dir : "/dev/shm", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
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

void trust_cache_name(const struct stat *st, uint64_t policy, char *buf, size_t len)
{
        snprintf(buf, len, "t-%llx-%llx-%llx-%lld.%ld-%lld.%ld-%016llx", (unsigned long long) st->st_dev,
                 (unsigned long long) st->st_ino, (unsigned long long) st->st_size, (long long) st->st_mtim.tv_sec,
                 st->st_mtim.tv_nsec, (long long) st->st_ctim.tv_sec, st->st_ctim.tv_nsec, (unsigned long long) policy);
}
