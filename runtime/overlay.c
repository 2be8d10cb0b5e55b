/* The container root as a kernel overlay: the image at the bottom, the --overlay layers
 * above it in the order given, and on top the last writable overlay's upper/ (or the
 * staging tmpfs for --writable-tmpfs). Each overlay is attached under the staging tmpfs
 * first (STAGE/ovl/N), so the overlay's options name short paths of ours. Extended
 * attributes are the user.overlay.* ones (userxattr) as root too: an overlay folder then
 * reads the same whether a user or root wrote it (opaque folders are such an attribute). */
#include <errno.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <linux/mount.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "runtime-internal.h"
#include "util/log.h"
#include "util/util.h"

int overlays_open(struct launch_ctx *c, struct hutch_error *err)
{
        const struct launch_spec *s = c->spec;
        if (!s->n_overlays)
                return 0;
        if (!s->conf->enable_overlay)
                return hutch_err(err, -EPERM, "--overlay needs 'enable overlay = yes' in hutch.conf");
        int r = image_overlays_open(s->overlays, s->n_overlays, !c->io, &c->ovl, err);
        if (r < 0)
                return r;
        c->n_ovl = s->n_overlays;
        /* as a user, ext3 images are served by hutch-ext3 (runtime/overlay-fuse.c) */
        for (size_t i = 0; i < c->n_ovl && c->ids.userns; i++)
                if (c->ovl[i].kind == OVERLAY_EXT3)
                        return overlays_fuse_check(c, &c->ovl[i], err);
        return 0;
}

/* Each folder overlay's tree, cloned in this mount namespace (a clone must come from the
 * caller's own) before the staging tmpfs covers its path, and checked to be the folder that
 * was opened and locked. */
int overlays_clone(struct launch_ctx *c, struct hutch_error *err)
{
        if (!c->n_ovl)
                return 0;
        c->ovl_tree = malloc(c->n_ovl * sizeof *c->ovl_tree);
        if (!c->ovl_tree)
                return hutch_err(err, -ENOMEM, "out of memory");
        for (size_t i = 0; i < c->n_ovl; i++)
                c->ovl_tree[i] = -EBADF;
        for (size_t i = 0; i < c->n_ovl; i++) {
                const struct overlay *o = &c->ovl[i];
                struct stat a, b;
                if (o->kind != OVERLAY_DIR)
                        continue;
                int tree = (int) syscall(SYS_open_tree, AT_FDCWD, o->path,
                                         OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE | AT_NO_AUTOMOUNT);
                if (tree < 0)
                        return hutch_err_sys(err, -errno, "cannot open overlay '%s'", o->path);
                c->ovl_tree[i] = tree;
                if (fstat(tree, &a) < 0 || fstat(o->fd, &b) < 0 || a.st_dev != b.st_dev || a.st_ino != b.st_ino)
                        return hutch_err(err, -ESTALE, "overlay '%s' was replaced while it was being set up", o->path);
                if (c->io) /* the supervisor holds the locks */
                        continue;
                /* the lock's own clone: the folder alone, never attached (see
                 * image_overlays_keep_across_exec) */
                int lock = (int) syscall(SYS_open_tree, AT_FDCWD, o->path,
                                         OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_NO_AUTOMOUNT);
                if (lock < 0)
                        return hutch_err_sys(err, -errno, "cannot open overlay '%s'", o->path);
                if (fstat(lock, &a) < 0 || a.st_dev != b.st_dev || a.st_ino != b.st_ino) {
                        close(lock);
                        return hutch_err(err, -ESTALE, "overlay '%s' was replaced while it was being set up", o->path);
                }
                int r = image_overlay_lock_move(&c->ovl[i], lock, err);
                close(lock);
                if (r < 0)
                        return r;
        }
        /* a batch container holds its overlays' locks until its last process ends; an
         * instance's are its supervisor's */
        int r = c->io ? 0 : image_overlays_keep_across_exec(c->ovl, c->n_ovl);
        if (r < 0)
                return hutch_err_sys(err, r, "cannot keep the overlays' locks");
        return 0;
}

/* An ext3 overlay as real root: a loop device over the image file's fd (detached by the
 * kernel once the filesystem is unmounted: LO_FLAGS_AUTOCLEAR), mounted at at. */
static int loop_mount(const struct overlay *o, const char *at, struct hutch_error *err)
{
        _cleanup_close_ int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
        if (ctl < 0)
                return hutch_err_sys(err, -errno, "cannot open /dev/loop-control for overlay '%s'", o->path);
        /* another process may take the free device first: LOOP_CONFIGURE says EBUSY then */
        for (int tries = 0; tries < 32; tries++) {
                int n = ioctl(ctl, LOOP_CTL_GET_FREE);
                if (n < 0)
                        return hutch_err_sys(err, -errno, "no free loop device for overlay '%s'", o->path);
                char dev[32];
                snprintf(dev, sizeof dev, "/dev/loop%d", n);
                _cleanup_close_ int lfd = open(dev, (o->ro ? O_RDONLY : O_RDWR) | O_CLOEXEC);
                if (lfd < 0)
                        return hutch_err_sys(err, -errno, "cannot open %s for overlay '%s'", dev, o->path);
                struct loop_config cfg = {.fd = (uint32_t) o->fd};
                cfg.info.lo_offset = o->offset;
                cfg.info.lo_sizelimit = o->size;
                cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR | (o->ro ? LO_FLAGS_READ_ONLY : 0);
                if (ioctl(lfd, LOOP_CONFIGURE, &cfg) < 0) {
                        if (errno == EBUSY)
                                continue;
                        return hutch_err_sys(err, -errno, "cannot set up %s for overlay '%s'", dev, o->path);
                }
                unsigned long flags = MS_NOSUID | MS_NODEV | (o->ro ? MS_RDONLY : 0);
                if (mount(dev, at, "ext3", flags, NULL) < 0 &&
                    (errno != ENODEV || mount(dev, at, "ext4", flags, NULL) < 0))
                        return hutch_err_sys(err, -errno, "cannot mount ext3 overlay '%s'", o->path);
                return 0;
        }
        return hutch_err(err, -EBUSY, "no free loop device for overlay '%s'", o->path);
}

/* name (upper or work) of the overlay attached at at, opened beneath at without following
 * a symlink: an image's "upper -> /" would make a host folder a layer. Its fd's
 * /proc/self/fd/N is what overlayfs gets, so the folder checked is the one used. -ENOENT or
 * -ENOTDIR (err untouched) when it has no such folder. */
static int sub_open(const struct overlay *o, const char *at, const char *name, struct hutch_error *err)
{
        _cleanup_close_ int dfd = open(at, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return hutch_err_sys(err, -errno, "cannot open overlay '%s'", o->path);
        struct open_how how = {.flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
                               .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS};
        int fd = (int) syscall(SYS_openat2, dfd, name, &how, sizeof how);
        if (fd >= 0)
                return fd;
        if (errno == ENOENT || errno == ENOTDIR)
                return -errno;
        if (errno == ELOOP)
                return hutch_err(err, -ELOOP, "overlay '%s': its '%s' is a symbolic link: refused", o->path, name);
        return hutch_err_sys(err, -errno, "cannot open '%s' in overlay '%s'", name, o->path);
}

/* The fds of the folders handed to overlayfs, open until it is mounted. */
struct sub_fds {
        int fd[64];
        size_t n;
};

static void sub_fds_close(struct sub_fds *f)
{
        for (size_t i = 0; i < f->n; i++)
                close(f->fd[i]);
}

/* fd kept in f until overlayfs is mounted; buf gets the path overlayfs is to use for it. */
static int sub_keep(struct sub_fds *f, int fd, char *buf, size_t len, struct hutch_error *err)
{
        if (f->n == ELEMENTSOF(f->fd)) {
                close(fd);
                return hutch_err(err, -E2BIG, "too many overlays");
        }
        f->fd[f->n++] = fd;
        snprintf(buf, len, "/proc/self/fd/%d", fd);
        return 0;
}

/* The folder a layer contributes: upper/ when the overlay has one (it was an upper layer
 * once), else the overlay's own root; as a path through an fd of ours. */
static int layer_path(const struct overlay *o, const char *at, struct sub_fds *f, char *buf, size_t len,
                      struct hutch_error *err)
{
        int fd = sub_open(o, at, "upper", err);
        if (fd == -ENOENT || fd == -ENOTDIR) {
                snprintf(buf, len, "%s", at);
                return 0;
        }
        return fd < 0 ? fd : sub_keep(f, fd, buf, len, err);
}

/* The writable overlay's upper/ and work/, both folders of its own. */
static int upper_paths(const struct overlay *o, const char *at, struct sub_fds *f, char *upper, char *work, size_t len,
                       struct hutch_error *err)
{
        static const char *const name[] = {"upper", "work"};
        char *buf[] = {upper, work};
        for (size_t i = 0; i < ELEMENTSOF(name); i++) {
                int fd = sub_open(o, at, name[i], err);
                if (fd == -ENOENT || fd == -ENOTDIR)
                        return hutch_err(err, fd, "overlay '%s' has no folder %s/", o->path, name[i]);
                int r = fd < 0 ? fd : sub_keep(f, fd, buf[i], len, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int attach_all(struct launch_ctx *c, struct hutch_error *err)
{
        if (mkdir(OVL_DIR, 0755) < 0 && errno != EEXIST)
                return hutch_err_sys(err, -errno, "cannot create '%s' in the staging area", OVL_DIR);
        for (size_t i = 0; i < c->n_ovl; i++) {
                char at[64];
                snprintf(at, sizeof at, OVL_DIR "/%zu", i);
                if (mkdir(at, 0755) < 0 && errno != EEXIST)
                        return hutch_err_sys(err, -errno, "cannot create '%s' in the staging area", at);
                if (c->ovl[i].kind == OVERLAY_EXT3 && c->ovl_fuse)
                        continue; /* hutch-ext3 serves it (overlays_fuse_start) */
                if (c->ovl[i].kind == OVERLAY_EXT3) {
                        int r = loop_mount(&c->ovl[i], at, err);
                        if (r < 0)
                                return r;
                        continue;
                }
                if (syscall(SYS_move_mount, c->ovl_tree[i], "", AT_FDCWD, at, MOVE_MOUNT_F_EMPTY_PATH) < 0)
                        return hutch_err_sys(err, -errno, "cannot attach overlay '%s'", c->ovl[i].path);
                close(c->ovl_tree[i]);
                c->ovl_tree[i] = -EBADF;
        }
        return 0;
}

/* overlayfs's options for the layers attached under OVL_DIR: lowerdir (the top layer
 * first: the later an overlay is given, the higher), then upperdir and workdir when there
 * is an upper layer (*ret_upper names it for messages; NULL: none). The folders' fds are
 * kept in f. */
static int overlay_opts_build(struct launch_ctx *c, const char *image, struct sub_fds *f, char **ret,
                              const char **ret_upper, struct hutch_error *err)
{
        _cleanup_free_ char *lower = strdup(""), *opts = NULL;
        char upper[96] = "", work[96] = "", layer[96];
        const char *upper_path = NULL;
        int r;
        for (size_t i = c->n_ovl; lower && i > 0; i--) {
                char at[64];
                snprintf(at, sizeof at, OVL_DIR "/%zu", i - 1);
                if (!c->ovl[i - 1].ro) {
                        if ((r = upper_paths(&c->ovl[i - 1], at, f, upper, work, sizeof upper, err)) < 0)
                                return r;
                        upper_path = c->ovl[i - 1].path;
                        continue;
                }
                if ((r = layer_path(&c->ovl[i - 1], at, f, layer, sizeof layer, err)) < 0)
                        return r;
                _cleanup_free_ char *old = steal_pointer(&lower);
                lower = strjoin(old, layer, ":");
        }
        if (!upper[0] && c->spec->writable_tmpfs) { /* beside a writable overlay: refused by the CLI */
                snprintf(upper, sizeof upper, STAGE_DIR "/rw/upper");
                snprintf(work, sizeof work, STAGE_DIR "/rw/work");
                upper_path = "--writable-tmpfs";
        }
        if (!lower)
                return hutch_err(err, -ENOMEM, "out of memory");
        if ((upper[0] ? asprintf(&opts, "lowerdir=%s%s,upperdir=%s,workdir=%s,userxattr", lower, image, upper, work)
                      : asprintf(&opts, "lowerdir=%s%s,userxattr", lower, image)) < 0) {
                opts = NULL;
                return hutch_err(err, -ENOMEM, "out of memory");
        }
        *ret = steal_pointer(&opts);
        *ret_upper = upper_path;
        return 0;
}

int overlays_stage(struct launch_ctx *c, const char *image, const char *root, struct hutch_error *err)
{
        _cleanup_free_ char *opts = NULL;
        const char *upper_path = NULL;
        struct sub_fds f __attribute__((cleanup(sub_fds_close))) = {.n = 0};
        int r = attach_all(c, err);
        if (r < 0 || (c->ovl_fuse && (r = overlays_fuse_ready(c, err)) < 0))
                return r;
        if ((r = overlay_opts_build(c, image, &f, &opts, &upper_path, err)) < 0)
                return r;
        log_debug("overlay %s", opts);
        if (mount("overlay", root, "overlay", 0, opts) < 0) {
                if (upper_path)
                        return hutch_err_sys(err, -errno, "cannot mount the overlay whose upper layer is '%s'",
                                             upper_path);
                return hutch_err_sys(err, -errno, "cannot mount the read-only overlays");
        }
        c->root_writable = upper_path != NULL;
        return 0;
}
