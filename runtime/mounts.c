/* Rootfs assembly. In a private mount namespace a tmpfs is mounted on /tmp as the staging
 * area (every host path the container needs was opened as an O_PATH fd before, so covering
 * /tmp hides nothing we use). The image is mounted at /tmp/image and bound to /tmp/root.
 * A mount point that cannot be created because its folder is read-only or not ours (a
 * root-owned folder of a squashfs, seen from a user namespace) is made by covering that
 * folder with a tmpfs that holds the same entries, each bound from the image (Apptainer's
 * "underlay", done lazily, per folder). Every bind goes fd to fd (/proc/self/fd/N), and every
 * destination is resolved with RESOLVE_IN_ROOT so symlinks in the image cannot point a
 * mount outside it. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <linux/mount.h>
#include <linux/openat2.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "runtime-internal.h"
#include "util/log.h"
#include "util/util.h"

#define STAGE STAGE_DIR

/* The container root being assembled; fd is reopened when a tmpfs is stacked on "/". */
struct rootfs {
        int fd;
        char *split[64]; /* folders covered by a tmpfs, made read-only at the end */
        size_t n_split;
};

static int openat2_in_root(int rootfd, const char *path, int flags)
{
        struct open_how how = {.flags = (uint64_t) flags | O_CLOEXEC,
                               .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
        while (*path == '/')
                path++;
        if (!*path)
                path = ".";
        int fd = (int) syscall(SYS_openat2, rootfd, path, &how, sizeof how);
        return fd < 0 ? -errno : fd;
}

static int create_entry(int dirfd, const char *name, bool is_dir)
{
        if (is_dir)
                return mkdirat(dirfd, name, 0755) < 0 && errno != EEXIST ? -errno : 0;
        int f = openat(dirfd, name, O_CREAT | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (f < 0)
                return errno == EISDIR ? 0 : -errno;
        close(f);
        return 0;
}

#define SPLIT_MAX_ENTRIES 4096

struct split_entry {
        char *name;
        int fd; /* O_PATH, or -1 for a symlink */
        char *link;
        bool is_dir;
};

static void split_entries_free(struct split_entry *e, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                free(e[i].name);
                free(e[i].link);
                if (e[i].fd >= 0)
                        close(e[i].fd);
        }
        free(e);
}

static int split_read(int dfd, struct split_entry **ret, size_t *ret_n)
{
        DIR *d = dir_stream_at(dfd);
        if (!d)
                return -errno;
        struct split_entry *v = NULL;
        size_t n = 0;
        struct dirent *de;
        int r = 0;
        while (r == 0 && (de = readdir(d))) {
                struct stat st;
                if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                        continue;
                if (n == SPLIT_MAX_ENTRIES || fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                        r = n == SPLIT_MAX_ENTRIES ? -E2BIG : -errno;
                        break;
                }
                struct split_entry *nv = realloc(v, (n + 1) * sizeof *v);
                if (!nv) {
                        r = -ENOMEM;
                        break;
                }
                v = nv;
                struct split_entry *e = &v[n++];
                *e = (struct split_entry){.name = strdup(de->d_name), .fd = -1, .is_dir = S_ISDIR(st.st_mode)};
                if (S_ISLNK(st.st_mode)) {
                        char buf[PATH_MAX];
                        ssize_t k = readlinkat(dfd, de->d_name, buf, sizeof buf - 1);
                        if (k >= 0) {
                                buf[k] = 0;
                                e->link = strdup(buf);
                        }
                        if (k < 0 || !e->link)
                                r = k < 0 ? -errno : -ENOMEM;
                } else if ((e->fd = openat(dfd, de->d_name, O_PATH | O_NOFOLLOW | O_CLOEXEC)) < 0)
                        r = -errno;
                if (r == 0 && !e->name)
                        r = -ENOMEM;
        }
        closedir(d);
        if (r < 0) {
                split_entries_free(v, n);
                return r;
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

/* An fd of the root names the mount it was opened on, not one stacked on it later. */
static int reopen_root(struct rootfs *rt, struct hutch_error *err)
{
        int fd = open(STAGE "/root", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return hutch_err_sys(err, -errno, "cannot open the container root");
        close(rt->fd);
        rt->fd = fd;
        return 0;
}

static int split_populate(struct rootfs *rt, const char *dir, const struct split_entry *e, size_t n,
                          struct hutch_error *err)
{
        _cleanup_close_ int nd = openat2_in_root(rt->fd, dir, O_RDONLY | O_DIRECTORY);
        if (nd < 0)
                return hutch_err_sys(err, nd, "cannot open the tmpfs on '%s'", dir);
        for (size_t i = 0; i < n; i++) {
                char s[64], t[64];
                int r;
                if (e[i].link) {
                        if (symlinkat(e[i].link, nd, e[i].name) < 0 && errno != EEXIST)
                                return hutch_err_sys(err, -errno, "cannot recreate symlink '%s/%s'", dir, e[i].name);
                        continue;
                }
                if ((r = create_entry(nd, e[i].name, e[i].is_dir)) < 0)
                        return hutch_err_sys(err, r, "cannot recreate '%s/%s'", dir, e[i].name);
                _cleanup_close_ int m = openat(nd, e[i].name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
                snprintf(s, sizeof s, "/proc/self/fd/%d", e[i].fd);
                snprintf(t, sizeof t, "/proc/self/fd/%d", m);
                if (m < 0 || mount(s, t, NULL, MS_BIND | MS_REC, NULL) < 0)
                        return hutch_err_sys(err, -errno, "cannot bind '%s/%s' back", dir, e[i].name);
        }
        return 0;
}

/* Cover the folder dir (inside the root) with a tmpfs holding the same entries. */
static int split_dir(struct rootfs *rt, const char *dir, struct hutch_error *err)
{
        struct split_entry *e = NULL;
        size_t n = 0;
        struct stat st;
        char t[64], opts[32];

        _cleanup_close_ int dfd = openat2_in_root(rt->fd, dir, O_RDONLY | O_DIRECTORY);
        if (dfd < 0 || fstat(dfd, &st) < 0)
                return hutch_err_sys(err, dfd < 0 ? dfd : -errno, "cannot open '%s' in the container", dir);
        int r = split_read(dfd, &e, &n);
        if (r < 0)
                return hutch_err_sys(err, r, "cannot list '%s' in the container to add a mount point", dir);
        log_debug("covering %s with a tmpfs of its %zu entries", dir, n);
        snprintf(t, sizeof t, "/proc/self/fd/%d", dfd);
        snprintf(opts, sizeof opts, "mode=%04o", (unsigned) (st.st_mode & 07777));
        if (mount("hutch", t, "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0)
                r = hutch_err_sys(err, -errno, "cannot cover '%s' with a tmpfs", dir);
        else if (!strcmp(dir, "/") && (r = reopen_root(rt, err)) < 0)
                ;
        else
                r = split_populate(rt, dir, e, n, err);
        split_entries_free(e, n);
        if (r >= 0 && rt->n_split < ELEMENTSOF(rt->split) && (rt->split[rt->n_split] = strdup(dir)))
                rt->n_split++;
        return r;
}

static bool is_not_writable(int r)
{
        return r == -EACCES || r == -EPERM || r == -EROFS || r == -EOVERFLOW;
}

/* Create the missing entry name in the folder pdir of the root (covering pdir with a
 * tmpfs of its entries when pdir cannot take it) and open it O_PATH. */
static int entry_create(struct rootfs *rt, const char *pdir, const char *name, bool is_dir, const char *dst,
                        struct hutch_error *err)
{
        for (int attempt = 0;; attempt++) {
                _cleanup_close_ int d = openat2_in_root(rt->fd, pdir, O_RDONLY | O_DIRECTORY);
                if (d < 0)
                        return hutch_err_sys(err, d, "cannot open '%s' in the container", pdir);
                int r = create_entry(d, name, is_dir);
                if (r == 0) {
                        int fd = openat(d, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
                        return fd < 0 ? hutch_err_sys(err, -errno, "cannot open mount point '%s'", dst) : fd;
                }
                if (attempt > 0 || !is_not_writable(r))
                        return hutch_err_sys(err, r, "cannot create mount point '%s' in the container", dst);
                if ((r = split_dir(rt, pdir, err)) < 0)
                        return r;
        }
}

/* Open (creating if missing) the mount point dst inside the root: each missing folder on
 * the way, from the top down. A root that itself cannot be opened (an image whose root
 * inode its server cannot read answers ENOENT for ".") is an error, not a folder to make. */
static int target_open(struct rootfs *rt, const char *dst, bool is_dir, struct hutch_error *err)
{
        int fd = openat2_in_root(rt->fd, dst, O_PATH);
        if (fd >= 0)
                return fd;
        if (fd != -ENOENT)
                return hutch_err_sys(err, fd, "cannot open mount point '%s' in the container", dst);
        _cleanup_close_ int root = openat2_in_root(rt->fd, "/", O_PATH);
        if (root < 0)
                return hutch_err_sys(err, root, "cannot open the image's root folder (a corrupt image?)");
        _cleanup_free_ char *path = strdup(dst);
        if (!path)
                return hutch_err(err, -ENOMEM, "out of memory");
        /* path is cut at each '/' in turn: path is then the prefix, and its last part the
         * entry to make in the prefix before it */
        for (char *p = path + strspn(path, "/"), *parent_end = p;;) {
                char *slash = strchr(p, '/');
                bool last = !slash || !slash[strspn(slash, "/")];
                if (slash)
                        *slash = 0;
                fd = openat2_in_root(rt->fd, path, O_PATH);
                if (fd == -ENOENT) {
                        char save = *parent_end;
                        *parent_end = 0;
                        _cleanup_free_ char *pdir = strdup(*path ? path : "/");
                        *parent_end = save;
                        if (!pdir)
                                return hutch_err(err, -ENOMEM, "out of memory");
                        fd = entry_create(rt, pdir, p, last ? is_dir : true, dst, err);
                } else if (fd < 0)
                        fd = hutch_err_sys(err, fd, "cannot open mount point '%s' in the container", dst);
                if (fd < 0 || last)
                        return fd;
                close(fd);
                *slash = '/';
                parent_end = slash;
                p = slash + strspn(slash, "/");
        }
}

static unsigned long locked_flags(const char *path)
{
        struct statvfs s;
        unsigned long f = 0;
        if (statvfs(path, &s) < 0)
                return 0;
        /* remounting a bind in a user namespace must keep the flags the host locked */
        if (s.f_flag & ST_NOSUID)
                f |= MS_NOSUID;
        if (s.f_flag & ST_NODEV)
                f |= MS_NODEV;
        if (s.f_flag & ST_NOEXEC)
                f |= MS_NOEXEC;
        if (s.f_flag & ST_NOATIME)
                f |= MS_NOATIME;
        if (s.f_flag & ST_NODIRATIME)
                f |= MS_NODIRATIME;
        if (s.f_flag & ST_RELATIME)
                f |= MS_RELATIME;
        return f;
}

static int remount_ro(const char *path, struct hutch_error *err)
{
        if (mount(NULL, path, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | locked_flags(path), NULL) < 0)
                return hutch_err_sys(err, -errno, "cannot make '%s' read-only", path);
        return 0;
}

static int bind_fd(struct rootfs *rt, int srcfd, bool is_dir, const char *dst, bool ro, struct hutch_error *err)
{
        char s[64], t[64];
        int tfd = target_open(rt, dst, is_dir, err);
        if (tfd < 0)
                return tfd;
        _cleanup_close_ int target = tfd;
        snprintf(s, sizeof s, "/proc/self/fd/%d", srcfd);
        snprintf(t, sizeof t, "/proc/self/fd/%d", target);
        if (mount(s, t, NULL, MS_BIND | MS_REC, NULL) < 0)
                return hutch_err_sys(err, -errno, "cannot bind onto '%s'", dst);
        log_debug("bound %s", dst);
        if (ro) {
                /* the fd names the covered inode; reopen the path to reach the new mount */
                _cleanup_close_ int m = openat2_in_root(rt->fd, dst, O_PATH);
                if (m < 0)
                        return hutch_err_sys(err, m, "cannot reopen '%s'", dst);
                snprintf(t, sizeof t, "/proc/self/fd/%d", m);
                return remount_ro(t, err);
        }
        return 0;
}

/* Attach a host path's detached tree (see struct host_path) at dst. */
static int bind_host(struct rootfs *rt, const struct host_path *h, const char *dst, bool ro, struct hutch_error *err)
{
        if (h->fd < 0)
                return 0;
        if (!dst)
                dst = h->path;
        int tfd = target_open(rt, dst, h->is_dir, err);
        if (tfd < 0)
                return tfd;
        _cleanup_close_ int target = tfd;
        if (syscall(SYS_move_mount, h->fd, "", target, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
                return hutch_err_sys(err, -errno, "cannot bind onto '%s'", dst);
        log_debug("bound %s", dst);
        if (!ro)
                return 0;
        char t[64];
        _cleanup_close_ int m = openat2_in_root(rt->fd, dst, O_PATH);
        if (m < 0)
                return hutch_err_sys(err, m, "cannot reopen '%s'", dst);
        snprintf(t, sizeof t, "/proc/self/fd/%d", m);
        return remount_ro(t, err);
}

static int mount_in(struct rootfs *rt, const char *dst, const char *type, unsigned long flags, const char *data,
                    struct hutch_error *err)
{
        char t[64];
        int tfd = target_open(rt, dst, true, err);
        if (tfd < 0)
                return tfd;
        _cleanup_close_ int target = tfd;
        snprintf(t, sizeof t, "/proc/self/fd/%d", target);
        if (mount(type, t, type, flags, data) < 0)
                return hutch_err_sys(err, -errno, "cannot mount %s on '%s'", type, dst);
        return 0;
}

static int mkdir_stage(const char *sub, struct hutch_error *err)
{
        if (mkdir(sub, 0755) < 0 && errno != EEXIST)
                return hutch_err_sys(err, -errno, "cannot create '%s' in the staging area", sub);
        return 0;
}

static int stage_image(struct launch_ctx *c, struct hutch_error *err)
{
        const struct launch_spec *s = c->spec;
        static const char *const dirs[] = {STAGE "/image",    STAGE "/root",    STAGE "/rw",
                                           STAGE "/rw/upper", STAGE "/rw/work", STAGE "/session"};
        int r;

        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                return hutch_err_sys(err, -errno, "cannot make mounts private");
        /* 'sessiondir max size' caps what --writable-tmpfs and --contain's folders hold: a
         * write past it gets ENOSPC (tmpfs's size=, in bytes, rounded up to pages) */
        char opts[64] = "mode=0755";
        if (s->conf->sessiondir_max_size && !s->session_uncapped)
                snprintf(opts, sizeof opts, "mode=0755,size=%llu", (unsigned long long) s->conf->sessiondir_max_size);
        if (mount("hutch", STAGE, "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0)
                return hutch_err_sys(err, -errno, "cannot mount the staging tmpfs");
        for (size_t i = 0; i < ELEMENTSOF(dirs); i++)
                if ((r = mkdir_stage(dirs[i], err)) < 0)
                        return r;
        struct image_mount_opts o = {
                .uid = c->ids.inside_uid,
                .gid = c->ids.inside_gid,
                .serve_sock = c->serve_sock,
                .kernel_ok = !c->ids.userns,
                .allow_suid = s->allow_setuid,
        };
        /* a user's ext3 overlays: their servers start while the image is mounted */
        if (c->ovl_fuse && (r = overlays_fuse_start(c, err)) < 0)
                return r;
        r = image_mount(&c->img, STAGE "/image", &o, err);
        if (r < 0)
                return r;
        if (s->writable_tmpfs && !s->conf->enable_overlay)
                return hutch_err(err, -EPERM, "--writable-tmpfs needs 'enable overlay = yes' in hutch.conf");
        /* --writable-tmpfs alone: a kernel overlay whose upper layer is the staging tmpfs */
        if (s->writable_tmpfs || c->n_ovl)
                return overlays_stage(c, STAGE "/image", STAGE "/root", err);
        if (mount(STAGE "/image", STAGE "/root", NULL, MS_BIND | MS_REC, NULL) < 0)
                return hutch_err_sys(err, -errno, "cannot bind the image root");
        return 0;
}

static int mount_dev_minimal(struct rootfs *rt, struct hutch_error *err)
{
        static const char *const nodes[] = {"null", "zero", "full", "random", "urandom", "tty"};
        static const char *const links[][2] = {{"fd", "/proc/self/fd"},
                                               {"stdin", "/proc/self/fd/0"},
                                               {"stdout", "/proc/self/fd/1"},
                                               {"stderr", "/proc/self/fd/2"},
                                               {"ptmx", "pts/ptmx"}};
        int r = mount_in(rt, "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755", err);
        if (r < 0)
                return r;
        for (size_t i = 0; i < ELEMENTSOF(nodes); i++) {
                char host[32], dst[32];
                snprintf(host, sizeof host, "/dev/%s", nodes[i]);
                snprintf(dst, sizeof dst, "/dev/%s", nodes[i]);
                _cleanup_close_ int fd = open(host, O_PATH | O_CLOEXEC);
                if (fd < 0)
                        continue;
                if ((r = bind_fd(rt, fd, false, dst, false, err)) < 0)
                        return r;
        }
        _cleanup_close_ int dev = openat2_in_root(rt->fd, "/dev", O_RDONLY | O_DIRECTORY);
        if (dev < 0)
                return hutch_err_sys(err, dev, "cannot open /dev in the container");
        for (size_t i = 0; i < ELEMENTSOF(links); i++)
                (void) symlinkat(links[i][1], dev, links[i][0]);
        if (mount_in(rt, "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620", err) < 0)
                log_verbose("no devpts in the container: %s", err->msg);
        return mount_in(rt, "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777", err);
}

static int mount_system(struct launch_ctx *c, struct rootfs *rt, struct hutch_error *err)
{
        const struct launch_spec *s = c->spec;
        const struct hutch_conf *cf = s->conf;
        int r;

        if (cf->mount_proc && !(s->no_mount & NO_MOUNT_PROC)) {
                if (s->pid_ns)
                        r = mount_in(rt, "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, err);
                else {
                        _cleanup_close_ int p = open("/proc", O_PATH | O_DIRECTORY | O_CLOEXEC);
                        r = p < 0 ? hutch_err_sys(err, -errno, "cannot open /proc")
                                  : bind_fd(rt, p, true, "/proc", false, err);
                }
                if (r < 0)
                        return r;
        }
        if (cf->mount_sys && !(s->no_mount & NO_MOUNT_SYS)) {
                _cleanup_close_ int p = open("/sys", O_PATH | O_DIRECTORY | O_CLOEXEC);
                if (p >= 0 && (r = bind_fd(rt, p, true, "/sys", false, err)) < 0)
                        return r;
        }
        if (!(s->no_mount & NO_MOUNT_DEV) && cf->mount_dev != MOUNT_DEV_NO) {
                if (s->contain || cf->mount_dev == MOUNT_DEV_MINIMAL)
                        r = mount_dev_minimal(rt, err);
                else {
                        _cleanup_close_ int p = open("/dev", O_PATH | O_DIRECTORY | O_CLOEXEC);
                        r = p < 0 ? hutch_err_sys(err, -errno, "cannot open /dev")
                                  : bind_fd(rt, p, true, "/dev", false, err);
                }
                if (r < 0)
                        return r;
        }
        return 0;
}

/* A staging-tmpfs folder standing in for a host folder under --contain. */
/* A fresh folder of the staging tmpfs bound at dst, of the given mode: /tmp and /var/tmp are
 * 1777 as on any system, so a service user inside (apt's _apt in a build's %post, a database
 * dropping to its own uid under --fakeroot) can write there. */
static int bind_session_dir(struct rootfs *rt, const char *name, mode_t mode, const char *dst, struct hutch_error *err)
{
        char p[128];
        snprintf(p, sizeof p, STAGE "/session/%s", name);
        int r = mkdir_stage(p, err);
        if (r < 0)
                return r;
        if (chmod(p, mode) < 0)
                return hutch_err_sys(err, -errno, "cannot set the mode of '%s'", p);
        _cleanup_close_ int fd = open(p, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return hutch_err_sys(err, -errno, "cannot open '%s'", p);
        return bind_fd(rt, fd, true, dst, false, err);
}

/* A file hutch writes (--dns, --add-host), from the staging tmpfs, read-only at dst. */
static int bind_text(struct rootfs *rt, const char *name, const char *text, const char *dst, struct hutch_error *err)
{
        char p[128];
        snprintf(p, sizeof p, STAGE "/session/%s", name);
        int r = write_file_at(AT_FDCWD, p, text, strlen(text), 0644);
        if (r < 0)
                return hutch_err_sys(err, r, "cannot write %s", p);
        _cleanup_close_ int fd = open(p, O_PATH | O_CLOEXEC);
        if (fd < 0)
                return hutch_err_sys(err, -errno, "cannot open %s", p);
        return bind_fd(rt, fd, false, dst, true, err);
}

static bool path_under(const char *path, const char *dir)
{
        size_t n = strlen(dir);
        if (n == 1)
                return true;
        return strncmp(path, dir, n) == 0 && (path[n] == 0 || path[n] == '/');
}

static bool cwd_is_covered(const struct launch_ctx *c)
{
        static const char *const system_dirs[] = {"/bin",  "/boot", "/dev", "/etc",  "/lib", "/lib32", "/lib64",
                                                  "/proc", "/root", "/run", "/sbin", "/sys", "/usr",   "/var"};
        const char *cwd = c->cwd;
        if (!cwd || !strcmp(cwd, "/"))
                return true;
        for (size_t i = 0; i < ELEMENTSOF(system_dirs); i++)
                if (path_under(cwd, system_dirs[i]) && !path_under(cwd, "/var/tmp"))
                        return true;
        if (c->home.fd >= 0 && !strcmp(c->home.path, c->home_dst) && path_under(cwd, c->home.path))
                return true;
        if (c->tmp.fd >= 0 && (path_under(cwd, "/tmp") || path_under(cwd, "/var/tmp")))
                return true;
        for (size_t i = 0; i < c->n_binds; i++)
                if (!strcmp(c->binds[i].src.path, c->binds[i].dst) && path_under(cwd, c->binds[i].src.path))
                        return true;
        return false;
}

static int mount_user_dirs(struct launch_ctx *c, struct rootfs *rt, struct hutch_error *err)
{
        const struct launch_spec *s = c->spec;
        int r;

        if (c->home.fd >= 0)
                r = bind_host(rt, &c->home, c->home_dst, false, err);
        else if (c->home_dst && s->contain && c->want_home)
                r = bind_session_dir(rt, "home", 0755, c->home_dst, err);
        else
                r = 0;
        if (r < 0)
                return r;
        if (c->want_tmp) {
                if (c->tmp.fd >= 0) {
                        if ((r = bind_host(rt, &c->tmp, "/tmp", false, err)) < 0 ||
                            (r = bind_host(rt, &c->vartmp, "/var/tmp", false, err)) < 0)
                                return r;
                } else if ((r = bind_session_dir(rt, "tmp", 01777, "/tmp", err)) < 0 ||
                           (r = bind_session_dir(rt, "var_tmp", 01777, "/var/tmp", err)) < 0)
                        return r;
        }
        for (size_t i = 0; !s->workdir && s->scratch && s->scratch[i]; i++) { /* -S: in the staging tmpfs */
                char name[32];
                snprintf(name, sizeof name, "scratch-%zu", i);
                if ((r = bind_session_dir(rt, name, 0700, s->scratch[i], err)) < 0)
                        return r;
        }
        if (c->cwdp.fd >= 0 && !cwd_is_covered(c)) {
                if ((r = bind_host(rt, &c->cwdp, NULL, false, err)) < 0)
                        return r;
        }
        if ((r = c->hosts_text ? bind_text(rt, "hosts", c->hosts_text, "/etc/hosts", err)
                               : bind_host(rt, &c->hosts, "/etc/hosts", true, err)) < 0 ||
            (r = c->resolv_text ? bind_text(rt, "resolv.conf", c->resolv_text, "/etc/resolv.conf", err)
                                : bind_host(rt, &c->resolv, "/etc/resolv.conf", true, err)) < 0)
                return r;
        for (size_t i = 0; i < c->n_binds; i++)
                if ((r = bind_host(rt, &c->binds[i].src, c->binds[i].dst, c->binds[i].ro, err)) < 0)
                        return hutch_err_wrap(err, "bind '%s'", c->binds[i].src.path);
        return 0;
}

static const char *file_type_name(mode_t m)
{
        return S_ISDIR(m)    ? "a folder"
               : S_ISFIFO(m) ? "a FIFO"
               : S_ISSOCK(m) ? "a socket"
               : S_ISCHR(m)  ? "a character device"
               : S_ISBLK(m)  ? "a block device"
               : S_ISLNK(m)  ? "a symbolic link"
                             : "not a regular file";
}

int regular_file_read(int pathfd, const char *what, size_t max, char **ret, size_t *ret_len, struct hutch_error *err)
{
        struct stat st;
        char p[64];
        if (fstat(pathfd, &st) < 0)
                return hutch_err_sys(err, -errno, "cannot read %s", what);
        if (!S_ISREG(st.st_mode))
                return hutch_err(err, -EINVAL, "%s is %s, not a regular file", what, file_type_name(st.st_mode));
        if ((uint64_t) st.st_size > max)
                return hutch_err(err, -EFBIG, "%s is larger than %zu MiB", what, max >> 20);
        /* the same inode, now known to be a regular file: the open neither blocks nor acts */
        snprintf(p, sizeof p, "/proc/self/fd/%d", pathfd);
        int r = read_full_at(AT_FDCWD, p, max, ret, ret_len);
        if (r == -EFBIG)
                return hutch_err(err, r, "%s is larger than %zu MiB", what, max >> 20);
        return r < 0 ? hutch_err_sys(err, r, "cannot read %s", what) : 0;
}

/* /etc/passwd and /etc/group: the image's, plus the calling user's entry when missing (its
 * primary group under the host's name for it, as Apptainer's). */
static int write_identity(struct launch_ctx *c, struct rootfs *rt, struct hutch_error *err)
{
        const struct launch_spec *s = c->spec;
        static const struct {
                const char *file, *stage;
                unsigned bit;
        } files[] = {{"/etc/passwd", STAGE "/session/passwd", NO_MOUNT_PASSWD},
                     {"/etc/group", STAGE "/session/group", NO_MOUNT_GROUP}};

        if (c->ids.inside_uid == 0)
                return 0; /* root exists in every image */
        for (size_t i = 0; i < ELEMENTSOF(files); i++) {
                if (s->no_mount & files[i].bit)
                        continue;
                _cleanup_free_ char *old = NULL, *line = NULL;
                size_t len = 0;
                _cleanup_close_ int fd = openat2_in_root(rt->fd, files[i].file, O_PATH);
                if (fd >= 0) {
                        char what[64];
                        snprintf(what, sizeof what, "the image's %s", files[i].file);
                        int r = regular_file_read(fd, what, 16 << 20, &old, &len, err);
                        if (r == -EINVAL || r == -EFBIG)
                                return r;
                        if (r < 0)
                                log_verbose("%s, writing a new one", err->msg);
                }
                char key[64];
                if (i == 0) {
                        snprintf(key, sizeof key, ":%u:", (unsigned) c->ids.inside_uid);
                        if (asprintf(&line, "%s:x:%u:%u:%s:%s:%s\n", c->user, (unsigned) c->ids.inside_uid,
                                     (unsigned) c->ids.inside_gid, c->gecos ? c->gecos : "",
                                     c->home_dst ? c->home_dst : "/", c->shell ? c->shell : "/bin/sh") < 0)
                                line = NULL;
                } else {
                        snprintf(key, sizeof key, ":%u:", (unsigned) c->ids.inside_gid);
                        if (asprintf(&line, "%s:x:%u:%s\n",
                                     c->group && c->ids.inside_gid == getgid() ? c->group : c->user,
                                     (unsigned) c->ids.inside_gid, c->user) < 0)
                                line = NULL;
                }
                if (!line)
                        return hutch_err(err, -ENOMEM, "out of memory");
                /* an entry whose id field matches already: keep the image's file untouched */
                bool present = false;
                for (const char *l = old; l && *l && !present;) {
                        const char *f = strchr(l, ':');
                        const char *nl = strchrnul(l, '\n');
                        if (f && f < nl) {
                                const char *id = strchr(f + 1, ':');
                                present = id && id < nl && !strncmp(id, key, strlen(key));
                        }
                        l = *nl ? nl + 1 : nl;
                }
                if (present)
                        continue;
                _cleanup_free_ char *data = NULL;
                bool nl = len > 0 && old[len - 1] != '\n';
                if (asprintf(&data, "%s%s%s", old ? old : "", nl ? "\n" : "", line) < 0)
                        return hutch_err(err, -ENOMEM, "out of memory");
                int r = write_file_at(AT_FDCWD, files[i].stage, data, strlen(data), 0644);
                if (r < 0)
                        return hutch_err_sys(err, r, "cannot write %s", files[i].stage);
                _cleanup_close_ int src = open(files[i].stage, O_PATH | O_CLOEXEC);
                if (src < 0 || (r = bind_fd(rt, src, false, files[i].file, true, err)) < 0)
                        return src < 0 ? hutch_err_sys(err, -errno, "cannot open %s", files[i].stage) : r;
        }
        return 0;
}

static bool has_env_scripts(struct rootfs *rt)
{
        _cleanup_close_ int d = openat2_in_root(rt->fd, "/.singularity.d/env", O_RDONLY | O_DIRECTORY);
        if (d < 0)
                return false;
        _cleanup_closedir_ DIR *dir = fdopendir(d);
        if (!dir)
                return false;
        d = -EBADF;
        struct dirent *de;
        while ((de = readdir(dir)))
                if (endswith(de->d_name, ".sh"))
                        return true;
        return false;
}

/* The image root and every tmpfs that stands in for one of its folders: read-only, as the
 * image is (Apptainer semantics). */
static int make_root_ro(struct rootfs *rt, struct hutch_error *err)
{
        int r = remount_ro(STAGE "/root", err);
        for (size_t i = 0; r >= 0 && i < rt->n_split; i++) {
                char t[64];
                if (!strcmp(rt->split[i], "/"))
                        continue;
                _cleanup_close_ int fd = openat2_in_root(rt->fd, rt->split[i], O_PATH | O_DIRECTORY);
                if (fd < 0)
                        return hutch_err_sys(err, fd, "cannot reopen '%s'", rt->split[i]);
                snprintf(t, sizeof t, "/proc/self/fd/%d", fd);
                r = remount_ro(t, err);
        }
        return r;
}

int rootfs_stage(struct launch_ctx *c, struct hutch_error *err)
{
        return stage_image(c, err);
}

int rootfs_assemble(struct launch_ctx *c, struct hutch_error *err)
{
        struct rootfs rt = {.fd = open(STAGE "/root", O_PATH | O_DIRECTORY | O_CLOEXEC)};
        if (rt.fd < 0)
                return hutch_err_sys(err, -errno, "cannot open the container root");
        int r;
        if ((r = mount_system(c, &rt, err)) >= 0 && (r = mount_user_dirs(c, &rt, err)) >= 0 &&
            (r = write_identity(c, &rt, err)) >= 0) {
                c->has_env_scripts = has_env_scripts(&rt);
                if (!c->spec->writable && !c->root_writable)
                        r = make_root_ro(&rt, err);
        }
        for (size_t i = 0; i < rt.n_split; i++)
                free(rt.split[i]);
        close(rt.fd);
        return r;
}

int rootfs_pivot(struct launch_ctx *c, struct hutch_error *err)
{
        (void) c;
        if (chdir(STAGE "/root") < 0)
                return hutch_err_sys(err, -errno, "cannot enter the container root");
        /* pivot_root(".", "."): the old root stacks on top of the new one; detach it */
        if (syscall(SYS_pivot_root, ".", ".") < 0)
                return hutch_err_sys(err, -errno, "pivot_root failed");
        if (umount2(".", MNT_DETACH) < 0)
                return hutch_err_sys(err, -errno, "cannot detach the host root");
        if (chdir("/") < 0)
                return hutch_err_sys(err, -errno, "cannot chdir to /");
        return 0;
}
