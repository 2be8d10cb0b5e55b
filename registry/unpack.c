/* Layers unpacked into a root folder, in order, with libarchive (tar in gzip, zstd or
 * plain): whiteouts (.wh.NAME) delete what lower layers put there, opaque markers
 * (.wh..wh..opq) empty a folder of what lower layers put there but keep what the same layer
 * adds, as the OCI image spec says. Names resolve inside the root (openat2 RESOLVE_IN_ROOT,
 * a symlink to /usr/lib stays inside it), so no entry reaches outside. */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "registry-internal.h"
#include "util/log.h"
#include "util/util.h"

static int open_in_root(int root_fd, const char *path, int flags)
{
        struct open_how how = {.flags = (uint64_t) (flags | O_CLOEXEC),
                               .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV};
        if (!*path)
                path = ".";
        int fd = (int) syscall(SYS_openat2, root_fd, path, &how, sizeof how);
        return fd < 0 ? -errno : fd;
}

/* Split path into its folder (opened inside the root) and last component. */
static int open_parent(int root_fd, const char *path, const char **ret_base)
{
        const char *slash = strrchr(path, '/');
        *ret_base = slash ? slash + 1 : path;
        if (!slash)
                return open_in_root(root_fd, "", O_RDONLY | O_DIRECTORY);
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%.*s", (int) (slash - path), path);
        return open_in_root(root_fd, dir, O_RDONLY | O_DIRECTORY);
}

int root_mkdir_p(int root_fd, const char *path, mode_t mode)
{
        char sub[PATH_MAX];
        for (const char *p = path;; p++) {
                if (*p != '/' && *p)
                        continue;
                snprintf(sub, sizeof sub, "%.*s", (int) (p - path), path);
                const char *base;
                int fd = open_parent(root_fd, sub, &base);
                if (fd < 0)
                        return fd;
                int r = mkdirat(fd, base, mode) < 0 && errno != EEXIST ? -errno : 0;
                close(fd);
                if (r < 0)
                        return r;
                if (!*p)
                        return 0;
        }
}

int root_write(int root_fd, const char *path, const char *text, mode_t mode, bool replace)
{
        const char *base;
        _cleanup_close_ int dfd = open_parent(root_fd, path, &base);
        if (dfd < 0)
                return dfd;
        if (replace && unlinkat(dfd, base, 0) < 0 && errno != ENOENT)
                return -errno;
        _cleanup_close_ int fd = openat(dfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
        if (fd < 0)
                return -errno;
        if (fchmod(fd, mode) < 0)
                return -errno;
        return write_full(fd, text, strlen(text));
}

/* Remove name in dir_fd and, for a folder, everything in it (never following symlinks). */
static int remove_tree(int dir_fd, const char *name)
{
        struct stat st;
        if (fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return errno == ENOENT ? 0 : -errno;
        if (!S_ISDIR(st.st_mode))
                return unlinkat(dir_fd, name, 0) < 0 && errno != ENOENT ? -errno : 0;
        int fd = openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 && errno == EACCES && fchmodat(dir_fd, name, 0700, 0) == 0)
                fd = openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        fchmod(fd, (st.st_mode & 07777) | 0700);
        DIR *d = fdopendir(fd);
        if (!d) {
                close(fd);
                return -errno;
        }
        int r = 0;
        for (struct dirent *e; (e = readdir(d));) {
                if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                        continue;
                int k = remove_tree(dirfd(d), e->d_name);
                if (k < 0 && r == 0)
                        r = k;
        }
        closedir(d);
        if (unlinkat(dir_fd, name, AT_REMOVEDIR) < 0 && r == 0)
                r = -errno;
        return r;
}

static int cmp_str(const void *a, const void *b)
{
        return strcmp(a, b);
}

/* Empty folder dir (relative to the root) of everything not in added (the same layer's
 * names), keeping the folders the layer added but emptying them in turn. */
static int make_opaque(int root_fd, const char *dir, void **added)
{
        int fd = open_in_root(root_fd, dir, O_RDONLY | O_DIRECTORY);
        if (fd < 0)
                return fd == -ENOENT ? 0 : fd;
        DIR *d = fdopendir(fd);
        if (!d) {
                close(fd);
                return -errno;
        }
        int r = 0;
        for (struct dirent *e; (e = readdir(d)) && r >= 0;) {
                if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                        continue;
                char path[PATH_MAX];
                snprintf(path, sizeof path, "%s%s%s", dir, *dir ? "/" : "", e->d_name);
                struct stat st;
                if (!tfind(path, added, cmp_str))
                        r = remove_tree(dirfd(d), e->d_name);
                else if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode))
                        r = make_opaque(root_fd, path, added);
        }
        closedir(d);
        return r;
}

/* A tar name made relative and plain: "./a//b/" -> "a/b"; NULL (skip) for ".." or "". */
static char *name_clean(const char *name)
{
        char *out = malloc(strlen(name) + 1), *o = out;
        if (!out)
                return NULL;
        for (const char *p = name; *p;) {
                while (*p == '/')
                        p++;
                const char *end = strchrnul(p, '/');
                size_t n = (size_t) (end - p);
                if (n == 0 || (n == 1 && p[0] == '.')) {
                        p = end;
                        continue;
                }
                if (n == 2 && p[0] == '.' && p[1] == '.') {
                        free(out);
                        return NULL;
                }
                if (o != out)
                        *o++ = '/';
                memcpy(o, p, n);
                o += n;
                p = end;
        }
        *o = 0;
        if (!*out) {
                free(out);
                return NULL;
        }
        return out;
}

/* The name with its folder resolved inside the root (symlinks followed there, as a
 * container would see them): libarchive then never meets a symlink on the way, which it
 * refuses. A folder that does not exist yet keeps its name. */
static char *name_resolve(int root_fd, const char *root_path, const char *name)
{
        const char *base;
        int fd = open_parent(root_fd, name, &base);
        if (fd < 0 || base == name) {
                if (fd >= 0)
                        close(fd);
                return strdup(name);
        }
        char link[64], real[PATH_MAX];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(link, real, sizeof real - 1);
        close(fd);
        if (n < 0)
                return strdup(name);
        real[n] = 0;
        size_t rl = strlen(root_path);
        if ((size_t) n < rl || strncmp(real, root_path, rl) != 0 || (real[rl] && real[rl] != '/'))
                return strdup(name);
        const char *rel = real + rl + (real[rl] == '/');
        char *s = NULL;
        if (asprintf(&s, "%s%s%s", rel, *rel ? "/" : "", base) < 0)
                return NULL;
        return s;
}

struct dir_mode {
        mode_t mode;
        char path[]; /* the key */
};

static int cmp_dir_mode(const void *a, const void *b)
{
        return strcmp(((const struct dir_mode *) a)->path, ((const struct dir_mode *) b)->path);
}

/* Remember a folder's mode from its layer when it lacks u+rwx (a user made it u+rwx). */
static int dir_mode_note(void **tree, const char *path, mode_t mode)
{
        struct dir_mode *d = malloc(sizeof *d + strlen(path) + 1);
        if (!d)
                return -ENOMEM;
        d->mode = mode;
        strcpy(d->path, path);
        struct dir_mode **found = tsearch(d, tree, cmp_dir_mode);
        if (!found) {
                free(d);
                return -ENOMEM;
        }
        if (*found != d) {
                (*found)->mode = mode;
                free(d);
        }
        return 0;
}

static int finish_root_fd = -1;

static void dir_mode_apply(const void *node, VISIT v, int depth)
{
        (void) depth;
        if (v != postorder && v != leaf)
                return;
        const struct dir_mode *d = *(const struct dir_mode *const *) node;
        /* A later layer may have put a symlink in the path: the folder is found inside the
         * root only, and a plain *at() call on the path would follow that symlink out. */
        int fd = open_in_root(finish_root_fd, d->path, O_PATH | O_DIRECTORY | O_NOFOLLOW);
        if (fd < 0)
                return;
        struct stat st;
        char link[64];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) /* still a folder */
                (void) chmod(link, d->mode);
        close(fd);
}

void layer_unpack_finish(int root_fd, struct unpack_opts *o)
{
        finish_root_fd = root_fd; /* twalk passes no context */
        twalk(o->dir_modes, dir_mode_apply);
        finish_root_fd = -1;
        tdestroy(o->dir_modes, free);
        o->dir_modes = NULL;
}

struct layer_ctx {
        struct unpack_opts *o;
        int root_fd;
        char root_path[PATH_MAX];
        bool as_root;
        void *added; /* tsearch tree of the names this layer put */
        struct archive *disk;
        size_t skipped_devices;
};

static int entry_apply(struct layer_ctx *L, struct archive *a, struct archive_entry *e, struct hutch_error *err)
{
        _cleanup_free_ char *name = name_clean(archive_entry_pathname(e));
        _cleanup_free_ char *target = NULL;
        if (!name)
                return 0;
        switch (whiteout_classify(name, &target)) {
        case WHITEOUT_OPAQUE: {
                int r = make_opaque(L->root_fd, target ? target : "", &L->added);
                return r < 0 ? hutch_err_sys(err, r, "cannot apply the opaque marker of '/%s'", target) : 0;
        }
        case WHITEOUT_FILE: {
                const char *base;
                if (!target)
                        return hutch_err(err, -ENOMEM, "out of memory");
                int pfd = open_parent(L->root_fd, target, &base);
                if (pfd == -ENOENT)
                        return 0;
                if (pfd < 0)
                        return hutch_err_sys(err, pfd, "cannot apply the whiteout of '/%s'", target);
                int r = remove_tree(pfd, base);
                close(pfd);
                return r < 0 ? hutch_err_sys(err, r, "cannot apply the whiteout of '/%s'", target) : 0;
        }
        case WHITEOUT_BAD: return hutch_err(err, -EBADMSG, "layer entry '/%s' is a whiteout of no file", name);
        case WHITEOUT_NONE: break;
        }
        mode_t type = archive_entry_filetype(e);
        if ((type == AE_IFCHR || type == AE_IFBLK) && !L->as_root) {
                L->skipped_devices++;
                return 0;
        }
        _cleanup_free_ char *real = name_resolve(L->root_fd, L->root_path, name);
        if (!real)
                return hutch_err(err, -ENOMEM, "out of memory");
        archive_entry_set_pathname(e, real);
        const char *hl = archive_entry_hardlink(e);
        if (hl) {
                _cleanup_free_ char *hc = name_clean(hl);
                _cleanup_free_ char *hr = hc ? name_resolve(L->root_fd, L->root_path, hc) : NULL;
                if (!hr)
                        return hutch_err(err, -EINVAL, "layer entry '/%s' links to '%s', outside the image", name, hl);
                archive_entry_set_hardlink(e, hr);
        }
        if (type == AE_IFDIR && !L->as_root && (archive_entry_perm(e) & 0700) != 0700) {
                if (dir_mode_note(&L->o->dir_modes, real, archive_entry_perm(e)) < 0)
                        return hutch_err(err, -ENOMEM, "out of memory");
                archive_entry_set_perm(e, archive_entry_perm(e) | 0700); /* later layers write into it */
        }
        int r = archive_write_header(L->disk, e);
        if (r >= ARCHIVE_WARN && archive_entry_size(e) > 0 && !hl) {
                const void *buf;
                size_t len;
                la_int64_t off;
                while ((r = archive_read_data_block(a, &buf, &len, &off)) == ARCHIVE_OK)
                        if (archive_write_data_block(L->disk, buf, len, off) < ARCHIVE_WARN) {
                                r = ARCHIVE_FATAL;
                                break;
                        }
                if (r == ARCHIVE_EOF)
                        r = ARCHIVE_OK;
                else if (r < ARCHIVE_WARN)
                        return hutch_err(err, -EIO, "cannot unpack '/%s': %s", name,
                                         archive_error_string(a) ? archive_error_string(a)
                                                                 : archive_error_string(L->disk));
        }
        if (r < ARCHIVE_WARN || archive_write_finish_entry(L->disk) < ARCHIVE_WARN) {
                const char *why = archive_error_string(L->disk);
                int code = archive_errno(L->disk) > 0 ? -archive_errno(L->disk) : -EIO;
                return hutch_err(err, code, "cannot unpack '/%s': %s", name, why ? why : "failed");
        }
        char *key = strdup(real);
        if (!key || !tsearch(key, &L->added, cmp_str)) {
                free(key);
                return hutch_err(err, -ENOMEM, "out of memory");
        }
        return 0;
}

/* The layer's bytes for libarchive. With wait_more, the file may still grow: at its end
 * wait_more says whether it is whole now (1), may have grown (0) or will not (< 0). */
struct layer_reader {
        int fd;
        int (*wait_more)(void *ctx);
        void *ctx;
        bool whole;
        char buf[1 << 17];
};

static la_ssize_t layer_read(struct archive *a, void *data, const void **ret)
{
        struct layer_reader *g = data;
        *ret = g->buf;
        for (;;) {
                ssize_t k = read(g->fd, g->buf, sizeof g->buf);
                if (k > 0)
                        return k;
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0) {
                        archive_set_error(a, errno, "%s", strerror(errno));
                        return -1;
                }
                if (g->whole || !g->wait_more)
                        return 0;
                int w = g->wait_more(g->ctx);
                if (w < 0) {
                        archive_set_error(a, -w, "its download did not finish");
                        return -1;
                }
                g->whole = w > 0;
        }
}

int layer_unpack_growing(int root_fd, int in, const char *layer_path, int (*wait_more)(void *ctx), void *ctx,
                         struct unpack_opts *o, struct hutch_error *err)
{
        struct layer_ctx L = {.o = o, .root_fd = root_fd, .as_root = o->as_root};
        char link[64];
        snprintf(link, sizeof link, "/proc/self/fd/%d", root_fd);
        ssize_t n = readlink(link, L.root_path, sizeof L.root_path - 1);
        if (n < 0)
                return hutch_err_sys(err, -errno, "cannot name the unpack folder");
        L.root_path[n] = 0;
        _cleanup_free_ struct layer_reader *g = malloc(sizeof *g);
        if (!g)
                return hutch_err(err, -ENOMEM, "out of memory");
        *g = (struct layer_reader){.fd = in, .wait_more = wait_more, .ctx = ctx};
        /* libarchive writes relative to the working folder */
        _cleanup_close_ int cwd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (fchdir(root_fd) < 0)
                return hutch_err_sys(err, -errno, "cannot enter the unpack folder");
        struct archive *a = archive_read_new();
        L.disk = archive_write_disk_new();
        int flags = ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_XATTR |
                    ARCHIVE_EXTRACT_SECURE_SYMLINKS | ARCHIVE_EXTRACT_SECURE_NODOTDOT |
                    ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS;
        if (o->as_root)
                flags |= ARCHIVE_EXTRACT_OWNER;
        int r = 0;
        if (!a || !L.disk) {
                r = hutch_err(err, -ENOMEM, "out of memory");
                goto out;
        }
        archive_write_disk_set_options(L.disk, flags);
        archive_write_disk_set_standard_lookup(L.disk);
        archive_read_support_filter_gzip(a);
        archive_read_support_filter_zstd(a);
        archive_read_support_filter_none(a);
        archive_read_support_format_tar(a);
        if (archive_read_open(a, g, NULL, layer_read, NULL) != ARCHIVE_OK) {
                r = hutch_err(err, -EIO, "cannot read layer '%s': %s", layer_path, archive_error_string(a));
                goto out;
        }
        for (;;) {
                struct archive_entry *e;
                int k = archive_read_next_header(a, &e);
                if (k == ARCHIVE_EOF)
                        break;
                if (k < ARCHIVE_WARN) {
                        r = hutch_err(err, -EBADMSG, "layer %s is not a valid tar: %s", layer_path,
                                      archive_error_string(a));
                        break;
                }
                if ((r = entry_apply(&L, a, e, err)) < 0)
                        break;
        }
        if (r >= 0 && archive_write_close(L.disk) < ARCHIVE_WARN)
                r = hutch_err(err, -EIO, "cannot finish unpacking '%s': %s", layer_path, archive_error_string(L.disk));
        if (L.skipped_devices)
                log_verbose("left out %zu device node%s: a user cannot create them", L.skipped_devices,
                            L.skipped_devices > 1 ? "s" : "");
out:
        if (a)
                archive_read_free(a);
        if (L.disk)
                archive_write_free(L.disk);
        tdestroy(L.added, free);
        if (cwd >= 0 && fchdir(cwd) < 0)
                log_warning("cannot return to the working folder, ignoring");
        return r;
}

int layer_unpack(int root_fd, const char *layer_path, struct unpack_opts *o, struct hutch_error *err)
{
        /* opened first: a relative name is the caller's, not the root's */
        _cleanup_close_ int in = open(layer_path, O_RDONLY | O_CLOEXEC);
        if (in < 0)
                return hutch_err_sys(err, -errno, "cannot open layer '%s'", layer_path);
        return layer_unpack_growing(root_fd, in, layer_path, NULL, NULL, o, err);
}
