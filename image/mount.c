/* Mount backends for an opened image: a bind mount for sandbox folders, and squashfuse for
 * squashfs/SIF: the FUSE mount made here and handed to the image server (image/serve.c
 * starts and watches it; image/worker.c serves it). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/mount.h>
#include <unistd.h>

#include "image-internal.h"
#include "util/log.h"
#include "util/util.h"

struct mount_backend {
        const char *name;
        int (*mount)(struct image *img, const char *target, const struct image_mount_opts *o, struct hutch_error *err);
};

static int bind_dir(struct image *img, const char *target, const struct image_mount_opts *o, struct hutch_error *err)
{
        char src[64];
        snprintf(src, sizeof src, "/proc/self/fd/%d", img->fd);
        if (mount(src, target, NULL, MS_BIND | MS_REC, NULL) < 0)
                return hutch_err_sys(err, -errno, "cannot bind sandbox '%s'", img->path);
        /* setuid files of a sandbox have no effect, writable or not (unless root asks) */
        unsigned long f = (img->writable ? 0 : MS_RDONLY) | (o->allow_suid ? 0 : MS_NOSUID);
        if (f && mount(NULL, target, NULL, MS_REMOUNT | MS_BIND | MS_NODEV | f, NULL) < 0)
                log_debug("remount of sandbox failed (%m), ignoring");
        return 0;
}

/* The server is started before the mount exists, and waits on a seqpacket socket;
 * image_mount() makes the mount and sends its FUSE fd and the image's fd over (hand_over).
 * It is a process of its own (image/serve.c), started at a launch's start (batch) or by
 * an instance's supervisor before the launcher, so that its exec and start-up overlap the
 * launcher's work up to the mount. */
static int hand_over(int sock, struct image *img, int fuse_fd, struct hutch_error *err)
{
        struct serve_msg m = {.offset = img->offset, .size = img->size, .format = img->format};
        snprintf(m.path, sizeof m.path, "%s", img->path);
        int fds[2] = {fuse_fd, img->fd};
        if (send_fds(sock, &m, sizeof m, fds, 2) < 0)
                return hutch_err_sys(err, -errno, "cannot hand the FUSE mount of '%s' to its server", img->path);
        return 0;
}

static int mount_squashfuse(struct image *img, const char *target, const struct image_mount_opts *o,
                            struct hutch_error *err)
{
        char opts[256];
        int r = sqfs_handle_open(img, err);
        if (r < 0)
                return r;
        _cleanup_close_ int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
        if (fd < 0)
                return hutch_err_sys(
                        err, -errno,
                        "cannot open /dev/fuse to mount '%s' (squashfs images need FUSE; is /dev/fuse mode 0666?)",
                        img->path);
        /* default_permissions: the kernel checks modes; squashfuse itself does not */
        snprintf(opts, sizeof opts, "fd=%d,rootmode=40000,user_id=%u,group_id=%u,allow_other,default_permissions", fd,
                 (unsigned) o->uid, (unsigned) o->gid);
        if (mount(img->path, target, "fuse.squashfuse", (o->allow_suid ? 0 : MS_NOSUID) | MS_NODEV | MS_RDONLY, opts) <
            0)
                return hutch_err_sys(err, -errno, "cannot mount '%s' with FUSE", img->path);
        if (o->serve_sock < 0)
                return hutch_err(err, -EINVAL, "internal error: no FUSE server for '%s'", img->path);
        r = hand_over(o->serve_sock, img, fd, err);
        if (r < 0) {
                umount2(target, MNT_DETACH);
                return r;
        }
        return 0;
}

static const struct mount_backend backends[] = {
        [IMAGE_FORMAT_DIR] = {"bind", bind_dir},
        [IMAGE_FORMAT_SQUASHFS] = {"squashfuse", mount_squashfuse},
        [IMAGE_FORMAT_SIF] = {"squashfuse", mount_squashfuse},
};

int image_mount(struct image *img, const char *target, const struct image_mount_opts *o, struct hutch_error *err)
{
        const struct mount_backend *b = &backends[img->format];
        log_debug("mounting %s image %s on %s with %s", image_format_name(img->format), img->path, target, b->name);
        return b->mount(img, target, o, err);
}
