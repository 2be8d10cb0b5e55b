/* Mount backends for an opened image: a bind mount for sandbox folders, and squashfuse
 * for squashfs/SIF served in-process by a detached helper (libsquashfuse_ll, libfuse3
 * low-level API). The helper is forked after the FUSE mount exists, leaves the payload's
 * process tree (double fork, own session) and exits when the owner's pidfd reports exit:
 * it cannot wait for the mount namespace to die, as its own presence keeps it alive. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/wait.h>
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
        (void) o;
        snprintf(src, sizeof src, "/proc/self/fd/%d", img->fd);
        if (mount(src, target, NULL, MS_BIND | MS_REC, NULL) < 0)
                return hutch_err_sys(err, -errno, "cannot bind sandbox '%s'", img->path);
        if (!img->writable &&
            mount(NULL, target, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) < 0)
                log_debug("read-only remount of sandbox failed (%m), ignoring");
        return 0;
}

static const struct fuse_lowlevel_ops sqfs_ops = {
        .lookup = sqfs_ll_op_lookup,
        .forget = sqfs_ll_op_forget,
        .getattr = sqfs_ll_op_getattr,
        .readlink = sqfs_ll_op_readlink,
        .open = sqfs_ll_op_open,
        .read = sqfs_ll_op_read,
        .release = sqfs_ll_op_release,
        .opendir = sqfs_ll_op_opendir,
        .readdir = sqfs_ll_op_readdir,
        .releasedir = sqfs_ll_op_releasedir,
        .statfs = stfs_ll_op_statfs,
        .getxattr = sqfs_ll_op_getxattr,
        .listxattr = sqfs_ll_op_listxattr,
        .create = sqfs_ll_op_create,
};

/* The helper's whole life: serve requests until the owner exits or the mount goes away. */
static _Noreturn void serve(struct image *img, int fuse_fd, int owner_pidfd)
{
        char *argv[] = {"hutch-squashfuse", NULL};
        struct fuse_args args = FUSE_ARGS_INIT(1, argv);
        char dev[32];
        struct fuse_buf buf = {0};

        struct fuse_session *se = fuse_session_new(&args, &sqfs_ops, sizeof sqfs_ops, &img->sqfs->ll);
        snprintf(dev, sizeof dev, "/dev/fd/%d", fuse_fd);
        /* libfuse >= 3.3: a /dev/fd/N mountpoint means "already mounted, serve this fd" */
        if (!se || fuse_session_mount(se, dev) != 0)
                _exit(1);
        struct pollfd p[2] = {{.fd = owner_pidfd, .events = POLLIN}, {.fd = fuse_fd, .events = POLLIN}};
        for (;;) {
                if (poll(p, 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        break;
                }
                if (p[0].revents)
                        break;
                if (p[1].revents & (POLLERR | POLLHUP | POLLNVAL))
                        break;
                int r = fuse_session_receive_buf(se, &buf);
                if (r == -EINTR || r == -EAGAIN)
                        continue;
                if (r <= 0)
                        break;
                fuse_session_process_buf(se, &buf);
        }
        _exit(0);
}

static int fork_server(struct image *img, int fuse_fd, int owner_pidfd, struct hutch_error *err)
{
        pid_t mid = fork();
        if (mid < 0)
                return hutch_err_sys(err, -errno, "cannot fork the squashfuse server");
        if (mid == 0) {
                /* middle child: its exit orphans the server, so no payload ever reaps it */
                if (fork() != 0)
                        _exit(0);
                setsid(); /* out of the terminal's process group: ^C goes to the payload only */
                prctl(PR_SET_NAME, "hutch-squashfs");
                int null = open("/dev/null", O_RDWR | O_CLOEXEC);
                if (null >= 0) {
                        /* never hold the payload's stdout/stderr: a reader waiting for EOF would hang */
                        dup2(null, 0);
                        dup2(null, 1);
                        dup2(null, 2);
                }
                int keep[] = {fuse_fd, owner_pidfd, img->fd};
                close_all_fds(3, keep, ELEMENTSOF(keep));
                signal(SIGINT, SIG_IGN);
                signal(SIGHUP, SIG_IGN);
                signal(SIGTERM, SIG_IGN);
                signal(SIGPIPE, SIG_IGN);
                serve(img, fuse_fd, owner_pidfd);
        }
        int status;
        while (waitpid(mid, &status, 0) < 0 && errno == EINTR)
                ;
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
        if (mount(img->path, target, "fuse.squashfuse", MS_NOSUID | MS_NODEV | MS_RDONLY, opts) < 0)
                return hutch_err_sys(err, -errno, "cannot mount '%s' with FUSE", img->path);
        r = fork_server(img, fd, o->owner_pidfd, err);
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
