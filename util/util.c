/* String vectors, strings, file I/O and fd-relative path helpers. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util.h"

void strv_free(char **v)
{
        if (!v)
                return;
        for (char **p = v; *p; p++)
                free(*p);
        free(v);
}

size_t strv_length(char *const *v)
{
        size_t n = 0;
        while (v && v[n])
                n++;
        return n;
}

int strv_push(char ***v, char *s)
{
        size_t n = strv_length(*v);
        char **nv = realloc(*v, (n + 2) * sizeof(char *));
        if (!nv) {
                free(s);
                return -ENOMEM;
        }
        nv[n] = s;
        nv[n + 1] = NULL;
        *v = nv;
        return 0;
}

int strv_extend(char ***v, const char *s)
{
        char *c = strdup(s);
        if (!c)
                return -ENOMEM;
        return strv_push(v, c);
}

char **strv_copy(char *const *v)
{
        size_t n = strv_length(v);
        char **c = calloc(n + 1, sizeof(char *));
        if (!c)
                return NULL;
        for (size_t i = 0; i < n; i++)
                if (!(c[i] = strdup(v[i]))) {
                        strv_free(c);
                        return NULL;
                }
        return c;
}

bool strv_contains(char *const *v, const char *s)
{
        for (size_t i = 0; v && v[i]; i++)
                if (strcmp(v[i], s) == 0)
                        return true;
        return false;
}

ssize_t strv_env_find(char *const *v, const char *key, size_t keylen)
{
        for (size_t i = 0; v && v[i]; i++)
                if (strncmp(v[i], key, keylen) == 0 && v[i][keylen] == '=')
                        return (ssize_t) i;
        return -1;
}

int strv_env_put(char ***v, char *entry)
{
        const char *eq = strchr(entry, '=');
        if (!eq) {
                free(entry);
                return -EINVAL;
        }
        ssize_t i = strv_env_find(*v, entry, eq - entry);
        if (i >= 0) {
                free((*v)[i]);
                (*v)[i] = entry;
                return 0;
        }
        return strv_push(v, entry);
}

int strv_env_unset(char **v, const char *key)
{
        ssize_t i = strv_env_find(v, key, strlen(key));
        if (i < 0)
                return 0;
        free(v[i]);
        memmove(v + i, v + i + 1, (strv_length(v + i + 1) + 1) * sizeof(char *));
        return 1;
}

const char *strv_env_get(char *const *v, const char *key)
{
        size_t len = strlen(key);
        ssize_t i = strv_env_find(v, key, len);
        return i < 0 ? NULL : v[i] + len + 1;
}

bool startswith(const char *s, const char *prefix)
{
        return strncmp(s, prefix, strlen(prefix)) == 0;
}

bool endswith(const char *s, const char *suffix)
{
        size_t a = strlen(s), b = strlen(suffix);
        return a >= b && strcmp(s + a - b, suffix) == 0;
}

char *strjoin(const char *a, const char *b, const char *c)
{
        size_t la = strlen(a), lb = b ? strlen(b) : 0, lc = c ? strlen(c) : 0;
        char *r = malloc(la + lb + lc + 1);
        if (!r)
                return NULL;
        memcpy(r, a, la);
        if (lb)
                memcpy(r + la, b, lb);
        if (lc)
                memcpy(r + la + lb, c, lc);
        r[la + lb + lc] = 0;
        return r;
}

int strsplit(const char *s, const char *sep, char ***ret)
{
        _cleanup_strv_ char **v = calloc(1, sizeof(char *));
        if (!v)
                return -ENOMEM;
        while (*s) {
                size_t n = strcspn(s, sep);
                if (n > 0) {
                        char *f = strndup(s, n);
                        if (!f || strv_push(&v, f) < 0)
                                return -ENOMEM;
                }
                s += n;
                if (*s)
                        s++;
        }
        *ret = steal_pointer(&v);
        return 0;
}

char *shell_quote(const char *s)
{
        size_t n = 3;
        for (const char *p = s; *p; p++)
                n += *p == '\'' ? 4 : 1;
        char *r = malloc(n), *o = r;
        if (!r)
                return NULL;
        *o++ = '\'';
        for (const char *p = s; *p; p++) {
                if (*p == '\'') {
                        memcpy(o, "'\\''", 4);
                        o += 4;
                } else
                        *o++ = *p;
        }
        *o++ = '\'';
        *o = 0;
        return r;
}

char *shell_dquote(const char *s)
{
        size_t n = strlen(s);
        char *r = malloc(2 * n + 3), *o = r;
        /* what the text is inside of at p: '(' a $( or a ( within one, '{' a ${, '`' a
         * backquote, '"' a quoted string within one of those; empty: the outer quotes */
        char *stack = malloc(n + 1);
        size_t depth = 0;
        if (!r || !stack) {
                free(r);
                free(stack);
                return NULL;
        }
        *o++ = '"';
        for (const char *p = s; *p; p++) {
                char top = depth ? stack[depth - 1] : 0;
                if (*p == '\\' && p[1]) { /* an escape pair stays as written */
                        *o++ = *p++;
                        *o++ = *p;
                        continue;
                }
                if (*p == '\'' && top && top != '"' && top != '`') { /* a single-quoted part: as it is */
                        const char *q = strchr(p + 1, '\'');
                        size_t len = q ? (size_t) (q - p) + 1 : strlen(p);
                        memcpy(o, p, len);
                        o += len;
                        p += len - 1;
                        continue;
                }
                if (*p == '$' && (p[1] == '(' || p[1] == '{')) {
                        stack[depth++] = p[1];
                        *o++ = *p++;
                } else if (*p == '`')
                        top == '`' ? depth-- : (void) (stack[depth++] = '`');
                else if (*p == '(' && (top == '(' || top == '{'))
                        stack[depth++] = '(';
                else if ((*p == ')' && top == '(') || (*p == '}' && top == '{'))
                        depth--;
                else if (*p == '"' && top == '"')
                        depth--;
                else if (*p == '"' && top)
                        stack[depth++] = '"';
                else if (*p == '"' || *p == '\\') /* a bare quote, or a final backslash */
                        *o++ = '\\';
                *o++ = *p;
        }
        *o++ = '"';
        *o = 0;
        free(stack);
        return r;
}

char *shell_dquote_escape(const char *s)
{
        char *r = malloc(2 * strlen(s) + 1), *o = r;
        if (!r)
                return NULL;
        for (const char *p = s; *p; p++) {
                if (strchr("\\$`\"", *p))
                        *o++ = '\\';
                *o++ = *p;
        }
        *o = 0;
        return r;
}

bool is_valid_env_name(const char *s, size_t len)
{
        if (len == 0 || (s[0] >= '0' && s[0] <= '9'))
                return false;
        for (size_t i = 0; i < len; i++) {
                char c = s[i];
                if (!(c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')))
                        return false;
        }
        return true;
}

ssize_t pread_full(int fd, void *buf, size_t len, off_t off)
{
        size_t done = 0;
        while (done < len) {
                ssize_t n = pread(fd, (char *) buf + done, len - done, off + done);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        break;
                done += n;
        }
        return (ssize_t) done;
}

int read_full_at(int dirfd, const char *path, size_t max, char **ret, size_t *ret_len)
{
        _cleanup_close_ int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        return read_fd_full(fd, max, ret, ret_len);
}

int read_fd_full(int fd, size_t max, char **ret, size_t *ret_len)
{
        size_t cap = 4096, len = 0;
        _cleanup_free_ char *buf = malloc(cap + 1);
        if (!buf)
                return -ENOMEM;
        for (;;) {
                if (len == cap) {
                        if (cap >= max)
                                return -EFBIG;
                        cap = cap * 2 > max ? max : cap * 2;
                        char *nb = realloc(buf, cap + 1);
                        if (!nb)
                                return -ENOMEM;
                        buf = nb;
                }
                ssize_t n = read(fd, buf + len, cap - len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        break;
                len += n;
        }
        buf[len] = 0;
        if (ret_len)
                *ret_len = len;
        *ret = steal_pointer(&buf);
        return 0;
}

int read_regular_at(int dirfd, const char *path, size_t max, char **ret, size_t *ret_len)
{
        /* O_NONBLOCK: opening a FIFO with no writer would wait for one */
        _cleanup_close_ int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0)
                return -errno;
        if (S_ISDIR(st.st_mode))
                return -EISDIR;
        /* /dev/null reads as an empty file: the usual way to name none (HUTCH_CONF=/dev/null) */
        bool dev_null = S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 3);
        if (!S_ISREG(st.st_mode) && !dev_null)
                return -EBADFD;
        if ((uint64_t) st.st_size > max)
                return -EFBIG;
        /* the read's own cap stops a file that grows meanwhile */
        return read_fd_full(fd, max, ret, ret_len);
}

int write_full(int fd, const void *buf, size_t len)
{
        const char *p = buf;
        while (len > 0) {
                ssize_t n = write(fd, p, len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += n;
                len -= n;
        }
        return 0;
}

int write_file_at(int dirfd, const char *path, const char *data, size_t len, mode_t mode)
{
        _cleanup_close_ int fd = openat(dirfd, path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
        if (fd < 0)
                return -errno;
        return write_full(fd, data, len);
}

void unlink_with_folder(const char *path)
{
        const char *slash = strrchr(path, '/');
        (void) unlink(path);
        if (!slash || slash == path)
                return;
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%.*s", (int) (slash - path), path);
        (void) rmdir(dir);
}

int mkdir_p_at(int dirfd, const char *path, mode_t mode)
{
        struct stat st;
        /* the usual case, one call: it is there (following symlinks, as the walk does) */
        if (fstatat(dirfd, path, &st, 0) == 0 && S_ISDIR(st.st_mode))
                return 0;
        _cleanup_free_ char *copy = strdup(path);
        if (!copy)
                return -ENOMEM;
        _cleanup_close_ int cur =
                openat(path[0] == '/' ? AT_FDCWD : dirfd, path[0] == '/' ? "/" : ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (cur < 0)
                return -errno;
        char *save = NULL;
        for (char *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
                bool made = mkdirat(cur, c, mode) == 0;
                if (!made && errno != EEXIST)
                        return -errno;
                /* existing components may be symlinks (/home -> /mnt/home on clusters); a
                 * folder made here is opened without following one */
                int next = openat(cur, c, O_PATH | O_DIRECTORY | O_CLOEXEC | (made ? O_NOFOLLOW : 0));
                if (next < 0)
                        return -errno;
                close(cur);
                cur = next;
        }
        return 0;
}

DIR *dir_stream_at(int dirfd)
{
        int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return NULL;
        DIR *d = fdopendir(fd);
        if (!d) {
                int e = errno;
                close(fd);
                errno = e;
        }
        return d;
}

void size_format(uint64_t bytes, char *buf, size_t len)
{
        static const char *const u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
        double v = (double) bytes;
        size_t i = 0;
        while (v >= 1024 && i + 1 < ELEMENTSOF(u)) {
                v /= 1024;
                i++;
        }
        snprintf(buf, len, i ? "%.1f%s" : "%.0f%s", v, u[i]);
}

bool path_is_abs(const char *p)
{
        return p && p[0] == '/';
}

bool dir_is_users(const char *path, uid_t uid)
{
        struct stat st;
        return path_is_abs(path) && stat(path, &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == uid;
}

int path_normalize(const char *path, char **ret)
{
        if (!path_is_abs(path))
                return -EINVAL;
        size_t len = strlen(path);
        _cleanup_free_ char *out = malloc(len + 2);
        if (!out)
                return -ENOMEM;
        size_t o = 0;
        const char *p = path;
        while (*p) {
                while (*p == '/')
                        p++;
                size_t n = strcspn(p, "/");
                if (n == 0)
                        break;
                if (n == 1 && p[0] == '.') {
                        /* skip */
                } else if (n == 2 && p[0] == '.' && p[1] == '.') {
                        while (o > 0 && out[o - 1] != '/')
                                o--;
                        if (o > 0)
                                o--;
                } else {
                        out[o++] = '/';
                        memcpy(out + o, p, n);
                        o += n;
                }
                p += n;
        }
        if (o == 0)
                out[o++] = '/';
        out[o] = 0;
        *ret = steal_pointer(&out);
        return 0;
}

/* The text of /proc/PID[/task/TID]/stat after "pid (comm) ": comm may hold ')' and spaces. */
static int proc_stat_fields(pid_t pid, pid_t tid, char *buf, size_t size, char **ret)
{
        char path[64];
        if (tid > 0)
                snprintf(path, sizeof path, "/proc/%d/task/%d/stat", (int) pid, (int) tid);
        else
                snprintf(path, sizeof path, "/proc/%d/stat", (int) pid);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        ssize_t n = read(fd, buf, size - 1);
        int saved = errno;
        close(fd);
        if (n <= 0)
                return n < 0 ? -saved : -ESRCH;
        buf[n] = 0;
        char *p = strrchr(buf, ')');
        if (!p || p[1] != ' ')
                return -EIO;
        *ret = p + 2;
        return 0;
}

int proc_start_time(pid_t pid, unsigned long long *ret)
{
        char buf[1024], *f;
        int r = proc_stat_fields(pid, 0, buf, sizeof buf, &f);
        if (r < 0)
                return r;
        /* f starts at field 3; the start time is field 22 */
        for (int i = 3; i < 22; i++) {
                f = strchr(f, ' ');
                if (!f)
                        return -EIO;
                f++;
        }
        char *end;
        errno = 0;
        unsigned long long v = strtoull(f, &end, 10);
        if (errno || end == f)
                return -EIO;
        *ret = v;
        return 0;
}

char proc_state(pid_t pid, pid_t tid)
{
        char buf[1024], *f;
        return proc_stat_fields(pid, tid, buf, sizeof buf, &f) < 0 ? 0 : f[0];
}

int fd_move_above(int fd, int min)
{
        if (fd >= min)
                return fd;
        int n = fcntl(fd, F_DUPFD_CLOEXEC, min);
        if (n < 0)
                return -errno;
        close(fd);
        return n;
}

void close_all_fds(int from, const int *keep, size_t n)
{
        /* close_range over the gaps between the kept fds, in order (no /proc read: its
         * getdents cost ~0.7 ms in an instance's launcher) */
        unsigned lo = (unsigned) from;
        for (;;) {
                unsigned next = ~0u;
                for (size_t i = 0; i < n; i++)
                        if (keep[i] >= 0 && (unsigned) keep[i] >= lo && (unsigned) keep[i] < next)
                                next = (unsigned) keep[i];
                if (next > lo)
                        close_range(lo, next == ~0u ? ~0u : next - 1, 0);
                if (next == ~0u)
                        return;
                lo = next + 1;
        }
}

const char *libexec_program(const char *name, char *buf, size_t len)
{
        static const char *const rel[] = {"", "/../libexec/hutch"};
        char self[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n <= 0 || strchr(name, '/'))
                return NULL;
        self[n] = 0;
        char *slash = strrchr(self, '/');
        if (slash)
                *slash = 0;
        for (size_t i = 0; i < ELEMENTSOF(rel); i++) {
                struct stat st;
                if ((size_t) snprintf(buf, len, "%s%s/%s", self, rel[i], name) < len && stat(buf, &st) == 0 &&
                    S_ISREG(st.st_mode) && access(buf, X_OK) == 0)
                        return buf;
        }
        return NULL;
}

int size_parse(const char *s, uint64_t *ret)
{
        static const char units[] = "KMGTPE";
        char *end;
        /* digits and one '.' only: strtod would take "nan", "inf", hex and exponents too */
        size_t int_digits = strspn(s ? s : "", "0123456789"), len = int_digits;
        if (s && s[len] == '.')
                len += 1 + strspn(s + len + 1, "0123456789");
        if (!s || int_digits == 0)
                return -EINVAL;
        _cleanup_free_ char *num = strndup(s, len);
        if (!num)
                return -ENOMEM;
        errno = 0;
        double v = strtod(num, NULL);
        end = (char *) s + len;
        if (errno || !isfinite(v))
                return -ERANGE;
        double mul = 1;
        if (*end) {
                const char *u = strchr(units, end[0] & ~0x20);
                if (!u || !end[0])
                        return -EINVAL;
                for (const char *k = units; k <= u; k++)
                        mul *= 1024;
                end++;
                if ((*end == 'i' || *end == 'I') && (end[1] == 'B' || end[1] == 'b'))
                        end += 2;
                else if (*end == 'B' || *end == 'b')
                        end++;
        }
        if (*end)
                return -EINVAL;
        v *= mul;
        if (v >= 18446744073709551615.0)
                return -ERANGE;
        *ret = (uint64_t) v;
        return 0;
}

int send_fds(int sock, const void *buf, size_t len, const int *fds, size_t n)
{
        union {
                char buf[CMSG_SPACE(8 * sizeof(int))];
                struct cmsghdr align;
        } u;
        struct iovec iov = {.iov_base = (void *) buf, .iov_len = len};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
        if (n > 8) {
                errno = EINVAL;
                return -1;
        }
        if (n > 0) {
                memset(&u, 0, sizeof u);
                mh.msg_control = u.buf;
                mh.msg_controllen = CMSG_SPACE(n * sizeof(int));
                struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SCM_RIGHTS;
                c->cmsg_len = CMSG_LEN(n * sizeof(int));
                memcpy(CMSG_DATA(c), fds, n * sizeof(int));
        }
        return sendmsg(sock, &mh, MSG_NOSIGNAL) < 0 ? -1 : 0;
}

ssize_t recv_fds(int sock, void *buf, size_t len, int *fds, size_t n)
{
        union {
                char buf[CMSG_SPACE(8 * sizeof(int))];
                struct cmsghdr align;
        } u;
        struct iovec iov = {.iov_base = buf, .iov_len = len};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
        ssize_t got;
        do
                got = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
        while (got < 0 && errno == EINTR);
        if (got < 0)
                return -1;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
                if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                        continue;
                size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                int tmp[8];
                memcpy(tmp, CMSG_DATA(c), k * sizeof(int));
                for (size_t i = 0; i < k; i++) {
                        if (i < n)
                                fds[i] = tmp[i];
                        else
                                close(tmp[i]);
                }
        }
        return got;
}

/* nftw has no argument for its callback: the first error, and how many folders it could
 * not read (now fixed: a pass more reads them) */
static int fix_perms_error;
static unsigned fix_perms_unread;

static int fix_perms_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
        (void) ftw;
        mode_t want = st->st_mode & 07777;
        if (type == FTW_D || type == FTW_DNR) {
                want |= S_IRWXU;
                fix_perms_unread += type == FTW_DNR;
        } else if (type == FTW_F)
                want |= S_IRUSR | S_IWUSR | ((st->st_mode & (S_IXGRP | S_IXOTH)) ? S_IXUSR : 0);
        else
                return 0; /* symlinks and the rest keep theirs */
        if (want != (st->st_mode & 07777) && chmod(path, want) < 0 && !fix_perms_error)
                fix_perms_error = -errno;
        return 0;
}

int tree_fix_perms(const char *path)
{
        fix_perms_error = 0;
        /* a folder nftw could not read is made readable, then read by the next pass */
        for (unsigned pass = 0; pass < 64; pass++) {
                fix_perms_unread = 0;
                if (nftw(path, fix_perms_one, 64, FTW_PHYS | FTW_MOUNT) < 0)
                        return -errno;
                if (!fix_perms_unread || fix_perms_error)
                        break;
        }
        return fix_perms_error;
}
