/* ext3 overlays for ordinary users, as Apptainer does rootless: the kernel's overlayfs does
 * not take a fuse2fs mount as its upper layer (no d_type), so each image is served by
 * fuse2fs and the root by fuse-overlayfs. Both run under hutch-fuse, a watcher forked in the
 * container's user and mount namespaces but outside its PID namespace and detached from the
 * payload; it ends them once the container has ended (or its launcher or supervisor died),
 * fuse-overlayfs first, then fuse2fs with SIGTERM, on which fuse2fs writes its caches back
 * and marks the filesystem clean: a SIGKILL there would leave it for e2fsck to repair. The
 * helpers hold the mount namespace (they are in it), so its end cannot be what they wait
 * for. A fuse2fs still closing an image holds an OFD lock on it that a new one waits for.
 * The watcher holds each fuse2fs mount until that fuse2fs has ended (struct helper.hold):
 * after pivot_root the mount is detached and fuse-overlayfs holds its last other reference,
 * so without ours fuse-overlayfs's end would end the mount and fuse2fs's loop by itself,
 * and libfuse 2 puts SIGTERM back to its default before the write-back: our SIGTERM, a
 * moment later, then killed fuse2fs in the middle of it (an image e2fsck finds unclean). */
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/magic.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "runtime-internal.h"
#include "util/log.h"
#include "util/process.h"
#include "util/util.h"

#ifndef FUSE_SUPER_MAGIC
#define FUSE_SUPER_MAGIC 0x65735546
#endif

#define HELPER_START_MS 10000 /* a helper that neither mounts nor fails by then is given up */
#define CLOSE_WAIT_MS 10000   /* a fuse2fs of a previous container still closing the image */

/* Helpers are looked for in the system's folders only: never through PATH, which the
 * user (or an image's environment) sets. */
static int helper_find(const char *name, const char *pkg, const struct overlay *o, char *buf, size_t len,
                       struct hutch_error *err)
{
        static const char *const dirs[] = {"/usr/bin", "/usr/sbin", "/bin", "/sbin"};
        for (size_t i = 0; i < ELEMENTSOF(dirs); i++) {
                snprintf(buf, len, "%s/%s", dirs[i], name);
                if (access(buf, X_OK) == 0)
                        return 0;
        }
        return hutch_err(err, -ENOENT, "ext3 overlay '%s' needs %s as a user: install the package '%s'", o->path, name,
                         pkg);
}

int overlays_fuse_check(struct launch_ctx *c, const struct overlay *o, struct hutch_error *err)
{
        int r = helper_find("fuse2fs", "fuse2fs", o, c->fuse2fs, sizeof c->fuse2fs, err);
        if (r < 0)
                return r;
        if ((r = helper_find("fuse-overlayfs", "fuse-overlayfs", o, c->fuse_overlayfs, sizeof c->fuse_overlayfs, err)) <
            0)
                return r;
        if (access("/dev/fuse", R_OK | W_OK) < 0)
                return hutch_err_sys(err, -errno, "ext3 overlay '%s' needs /dev/fuse usable by users (mode 0666)",
                                     o->path);
        c->ovl_fuse = true;
        return 0;
}

/* ---- the watcher, on a copy of the launcher's memory */

struct helper {
        pid_t pid;
        int pidfd;
        int errfd; /* its stderr, read for the line of a failure, drained afterwards */
        int hold;  /* fuse2fs: its mount's root (O_PATH), so that only our SIGTERM ends it */
};

struct watcher {
        struct launch_ctx *c;
        int sock;
        struct helper h[65]; /* fuse2fs per ext3 overlay, fuse-overlayfs last */
        size_t n;
};

/* What a helper that failed wrote, on one line: its lines joined, dev (the image as it was
 * named to the helper) shown as path. */
static void helper_said(const struct helper *h, const char *dev, const char *path, char *buf, size_t len)
{
        char text[2048];
        ssize_t k = read(h->errfd, text, sizeof text - 1);
        size_t n = 0, dl = dev ? strlen(dev) : 0;
        buf[0] = 0;
        for (ssize_t i = 0; i < k && n + 1 < len; i++) {
                if (dl && i + (ssize_t) dl <= k && !memcmp(text + i, dev, dl)) {
                        n += (size_t) snprintf(buf + n, len - n, "%s", path);
                        i += (ssize_t) dl - 1;
                        if (n >= len)
                                n = len - 1;
                        continue;
                }
                char ch = text[i] == '\n' ? ' ' : text[i];
                if (ch == ' ' && (n == 0 || buf[n - 1] == ' '))
                        continue;
                buf[n++] = ch;
        }
        while (n > 0 && buf[n - 1] == ' ')
                n--;
        buf[n] = 0;
}

/* The helpers end in reverse order, each waited for: fuse-overlayfs lets go of the
 * fuse2fs mounts, then each fuse2fs closes its image. */
static void helpers_end(struct watcher *w)
{
        for (size_t i = w->n; i > 0; i--) {
                struct helper *h = &w->h[i - 1];
                kill(h->pid, SIGTERM);
                struct pollfd p = {.fd = h->pidfd, .events = POLLIN};
                if (poll(&p, 1, CLOSE_WAIT_MS) == 0)
                        kill(h->pid, SIGKILL);
                waitpid(h->pid, NULL, 0);
                if (h->hold >= 0)
                        close(h->hold);
        }
        w->n = 0;
}

static _Noreturn void watcher_fail(struct watcher *w, struct hutch_error *err)
{
        helpers_end(w);
        (void) !send(w->sock, err, sizeof *err, MSG_NOSIGNAL);
        _exit(1);
}

/* Wait for a previous container's fuse2fs to let the image go: it holds an OFD lock on it
 * (write for a writer, read for a reader) until it has closed it; the lock taken here is
 * inherited by the new one. There is no event for a released lock: polled. */
static int close_wait(const struct overlay *o, struct hutch_error *err)
{
        struct flock l = {.l_type = o->ro ? F_RDLCK : F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
        for (int ms = 0; fcntl(o->fd, F_OFD_SETLK, &l) < 0; ms += 20) {
                if (errno != EAGAIN && errno != EACCES)
                        return hutch_err_sys(err, -errno, "cannot lock overlay '%s'", o->path);
                if (ms >= CLOSE_WAIT_MS)
                        return hutch_err(err, -EBUSY, "overlay '%s' is still being closed by a previous container",
                                         o->path);
                nanosleep(&(struct timespec){.tv_nsec = 20 * 1000 * 1000}, NULL);
        }
        return 0;
}

/* fuse2fs (libfuse 2) mounts by itself: as the user inside the namespace it needs
 * CAP_SYS_ADMIN of the container's user namespace across its exec (ambient). */
static void ambient_sys_admin(void)
{
        struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
        struct __user_cap_data_struct d[2];
        if (getuid() == 0 || syscall(SYS_capget, &h, d) < 0)
                return;
        d[CAP_TO_INDEX(CAP_SYS_ADMIN)].inheritable |= CAP_TO_MASK(CAP_SYS_ADMIN);
        if (syscall(SYS_capset, &h, d) == 0)
                (void) prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_SYS_ADMIN, 0, 0);
}

enum {
        HELPER_SYS_ADMIN = 1 << 0, /* see ambient_sys_admin */
        /* a mount namespace of its own, a copy of the container's as it is before
         * pivot_root: pivot_root moves the root of every process of the namespace whose
         * root is the old one into the container, where a --pid container's /proc shows
         * none of our processes, and fuse-overlayfs reaches its layers' files through
         * /proc/self/fd (an exec through it failed with ENOENT) */
        HELPER_OWN_MNTNS = 1 << 1,
};

/* Fork and exec argv[0] with keep[] left open across the exec; SIGTERM when we die. */
static int helper_spawn(struct watcher *w, char *const argv[], const int *keep, size_t n_keep, int flags,
                        struct hutch_error *err)
{
        int ep[2];
        if (pipe2(ep, O_CLOEXEC) < 0)
                return hutch_err_sys(err, -errno, "cannot create a pipe for %s", argv[0]);
        pid_t parent = getpid(), pid = fork();
        if (pid == 0) {
                prctl(PR_SET_PDEATHSIG, SIGTERM);
                if (getppid() != parent)
                        _exit(127);
                int null = open("/dev/null", O_RDWR | O_CLOEXEC);
                /* fuse2fs says why it refuses an image on stdout */
                if (null < 0 || dup2(null, STDIN_FILENO) < 0 || dup2(ep[1], STDOUT_FILENO) < 0 ||
                    dup2(ep[1], STDERR_FILENO) < 0)
                        _exit(127);
                for (size_t i = 0; i < n_keep; i++)
                        if (fcntl(keep[i], F_SETFD, 0) < 0)
                                _exit(127);
                if ((flags & HELPER_OWN_MNTNS) && unshare(CLONE_NEWNS) < 0) {
                        dprintf(STDERR_FILENO, "cannot give %s a mount namespace: %s\n", argv[0], strerror(errno));
                        _exit(127);
                }
                if (flags & HELPER_SYS_ADMIN)
                        ambient_sys_admin();
                execv(argv[0], argv);
                dprintf(STDERR_FILENO, "cannot run %s: %s\n", argv[0], strerror(errno));
                _exit(127);
        }
        close(ep[1]);
        if (pid < 0) {
                close(ep[0]);
                return hutch_err_sys(err, -errno, "cannot fork for %s", argv[0]);
        }
        struct helper *h = &w->h[w->n++];
        *h = (struct helper){.pid = pid, .pidfd = pidfd_open_pid(pid), .errfd = ep[0], .hold = -EBADF};
        fcntl(h->errfd, F_SETFL, O_NONBLOCK);
        if (h->pidfd < 0)
                return hutch_err_sys(err, h->pidfd, "pidfd_open");
        return 0;
}

static bool is_fuse_mount(const char *at)
{
        struct statfs sf;
        return statfs(at, &sf) == 0 && sf.f_type == FUSE_SUPER_MAGIC;
}

/* fuse2fs for overlay i, mounted at OVL_DIR/i: waited for through the mount table's
 * change events (POLLPRI on mountinfo) and the helper's pidfd. */
static int fuse2fs_start(struct watcher *w, size_t i, struct hutch_error *err)
{
        const struct overlay *o = &w->c->ovl[i];
        char at[64], dev[64], opts[96];
        snprintf(at, sizeof at, OVL_DIR "/%zu", i);
        int r = close_wait(o, err);
        if (r < 0)
                return r;
        /* the locked fd itself is the image: the file opened and checked, not a path again */
        snprintf(dev, sizeof dev, "/proc/self/fd/%d", o->fd);
        snprintf(opts, sizeof opts, "offset=%llu%s", (unsigned long long) o->offset, o->ro ? ",ro" : "");
        /* -s: one thread; fuse2fs 1.47.0 runs its destroy (the write-back) unlocked beside the
         * requests of other threads, which can leave the bitmaps behind */
        char *argv[] = {w->c->fuse2fs, dev, at, "-f", "-s", "-o", opts, NULL};
        _cleanup_close_ int mi = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
        if (mi < 0)
                return hutch_err_sys(err, -errno, "cannot read the mount table");
        if ((r = helper_spawn(w, argv, &o->fd, 1, HELPER_SYS_ADMIN, err)) < 0)
                return r;
        struct helper *h = &w->h[w->n - 1];
        struct timespec t0, t;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        while (!is_fuse_mount(at)) {
                struct pollfd p[] = {{.fd = mi, .events = POLLPRI}, {.fd = h->pidfd, .events = POLLIN}};
                clock_gettime(CLOCK_MONOTONIC, &t);
                long left = HELPER_START_MS - ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000);
                if (left <= 0 || poll(p, 2, (int) left) == 0)
                        return hutch_err(err, -ETIMEDOUT, "fuse2fs did not mount overlay '%s' in %d s", o->path,
                                         HELPER_START_MS / 1000);
                if (p[1].revents && !is_fuse_mount(at)) {
                        char line[400];
                        helper_said(h, dev, o->path, line, sizeof line);
                        return hutch_err(err, -EIO, "fuse2fs could not mount overlay '%s'%s%s", o->path,
                                         line[0] ? ": " : "", line);
                }
        }
        /* see the top of this file: fuse2fs's loop must end by our SIGTERM, not with its mount */
        if ((h->hold = open(at, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0)
                return hutch_err_sys(err, -errno, "cannot hold the mount of overlay '%s'", o->path);
        return 0;
}

/* fuse-overlayfs at root, on a FUSE mount of ours handed to it as /dev/fd/N (libfuse 3):
 * it needs no privilege; the first stat of root waits for it to answer. */
static int fuse_overlayfs_start(struct watcher *w, const char *image, const char *root, struct hutch_error *err)
{
        struct launch_ctx *c = w->c;
        _cleanup_free_ char *opts = NULL;
        const char *upper_path;
        struct sub_fds f __attribute__((cleanup(sub_fds_close))) = {.n = 0};
        int r = overlay_opts_build(c, image, false, &f, &opts, &upper_path, err);
        if (r < 0)
                return r;
        int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
        if (fd < 0)
                return hutch_err_sys(err, -errno, "cannot open /dev/fuse for the overlay");
        f.fd[f.n++] = fd; /* closed with the others: fuse-overlayfs then holds the only one */
        char mopts[160], dev[32];
        snprintf(mopts, sizeof mopts, "fd=%d,rootmode=40000,user_id=%u,group_id=%u,allow_other,default_permissions", fd,
                 (unsigned) c->ids.inside_uid, (unsigned) c->ids.inside_gid);
        if (mount("fuse-overlayfs", root, "fuse.fuse-overlayfs", MS_NOSUID | MS_NODEV, mopts) < 0)
                return hutch_err_sys(err, -errno, "cannot mount the overlay with FUSE");
        snprintf(dev, sizeof dev, "/dev/fd/%d", fd);
        log_debug("fuse-overlayfs %s", opts);
        /* squash_to_uid/gid (as Apptainer passes them): every file shows as the caller's
         * (root's with --fakeroot). A copy-up of a file whose owner the user namespace does
         * not map (an image's root-owned /home, under a bind's mount point) cannot keep that
         * owner; squashed, it becomes the caller's instead of failing */
        char squash[96];
        snprintf(squash, sizeof squash, "squash_to_uid=%u,squash_to_gid=%u", (unsigned) c->ids.inside_uid,
                 (unsigned) c->ids.inside_gid);
        char *argv[] = {c->fuse_overlayfs, "-f", "-o", opts, "-o", squash, dev, NULL};
        if ((r = helper_spawn(w, argv, f.fd, f.n, HELPER_OWN_MNTNS, err)) < 0)
                return r;
        sub_fds_close(&f);
        f.n = 0;
        struct stat st;
        if (stat(root, &st) < 0) {
                char line[400];
                struct helper *h = &w->h[w->n - 1];
                struct pollfd p = {.fd = h->pidfd, .events = POLLIN};
                poll(&p, 1, 1000);
                helper_said(h, NULL, NULL, line, sizeof line);
                return hutch_err(err, -EIO, "fuse-overlayfs could not serve the overlay%s%s", line[0] ? ": " : "",
                                 line);
        }
        c->root_writable = upper_path != NULL;
        return 0;
}

/* Until the container ends: the end process's pidfd comes from the launcher (EOF before
 * it: the launcher died while setting up); the owner (a batch launcher, an instance's
 * supervisor) ending ends it too. The helpers' stderr is drained so that they never block
 * on it. */
static _Noreturn void watch(struct watcher *w, int owner)
{
        int end = -EBADF;
        char byte;
        ssize_t k = recv_fds(w->sock, &byte, 1, &end, 1);
        if (k == 1 && end >= 0) {
                for (;;) {
                        struct pollfd p[68] = {{.fd = end, .events = POLLIN}, {.fd = owner, .events = POLLIN}};
                        size_t n = 2;
                        for (size_t i = 0; i < w->n; i++)
                                p[n++] = (struct pollfd){.fd = w->h[i].errfd, .events = POLLIN};
                        if (poll(p, n, -1) < 0 && errno != EINTR)
                                break;
                        if (p[0].revents || p[1].revents)
                                break;
                        for (size_t i = 2; i < n; i++) {
                                char buf[4096];
                                if (p[i].revents & POLLIN)
                                        (void) !read(p[i].fd, buf, sizeof buf);
                                else if (p[i].revents)
                                        p[i].fd = -1, w->h[i - 2].errfd = -1;
                        }
                }
        }
        helpers_end(w);
        _exit(0);
}

static _Noreturn void watcher_main(struct launch_ctx *c, int sock, const char *image, const char *root)
{
        struct watcher w = {.c = c, .sock = sock};
        struct hutch_error err = HUTCH_ERROR_INIT;
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        prctl(PR_SET_NAME, "hutch-fuse");
        /* a session of its own, as the image server's: a Ctrl-C or a hangup at the
         * caller's terminal reaches the payload, not the helpers, which end in order after
         * it (fuse-overlayfs first) while the launcher waits. Its stderr stays (debug
         * lines); stdin and stdout go to /dev/null */
        setsid();
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null >= 0 && (dup2(null, STDIN_FILENO) < 0 || dup2(null, STDOUT_FILENO) < 0))
                _exit(1);
        /* nothing of the launcher's but what the helpers need: an image server's socket or
         * an overlay's flock held here would outlive the container */
        int keep[72];
        size_t n = 0;
        keep[n++] = sock;
        keep[n++] = c->owner_pidfd;
        for (size_t i = 0; i < c->n_ovl && n < ELEMENTSOF(keep); i++)
                keep[n++] = c->ovl[i].fd;
        close_all_fds(3, keep, n);
        for (size_t i = 0; i < c->n_ovl; i++)
                if (c->ovl[i].kind == OVERLAY_EXT3 && fuse2fs_start(&w, i, &err) < 0)
                        watcher_fail(&w, &err);
        if (fuse_overlayfs_start(&w, image, root, &err) < 0)
                watcher_fail(&w, &err);
        err.code = 0;
        err.msg[0] = c->root_writable;
        if (send(sock, &err, sizeof err, MSG_NOSIGNAL) < 0)
                watcher_fail(&w, &err);
        watch(&w, c->owner_pidfd);
}

int overlays_fuse_start(struct launch_ctx *c, const char *image, const char *root, struct hutch_error *err)
{
        int sp[2];
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0)
                return hutch_err_sys(err, -errno, "cannot create the overlay watcher's socket");
        fflush(NULL);
        /* our child: the launcher never becomes the payload with a watcher (launch_in_ctx)
         * and reaps it once it has ended, so that nothing of it is left when the caller
         * goes on; an instance's launcher leaves it to the supervisor, the subreaper */
        pid_t pid = fork();
        if (pid == 0) {
                close(sp[0]);
                watcher_main(c, sp[1], image, root);
        }
        close(sp[1]);
        if (pid < 0) {
                close(sp[0]);
                return hutch_err_sys(err, -errno, "cannot fork the overlay watcher");
        }
        struct hutch_error res;
        ssize_t k = recv(sp[0], &res, sizeof res, 0);
        if (k != (ssize_t) sizeof res || res.code < 0) {
                close(sp[0]);
                waitpid(pid, NULL, 0); /* it has ended its helpers and leaves */
                if (k != (ssize_t) sizeof res)
                        return hutch_err(err, -EIO, "the overlay's FUSE watcher ended while mounting it");
                *err = res;
                return res.code;
        }
        c->root_writable = res.msg[0] != 0;
        c->fuse_sock = sp[0];
        c->fuse_pid = pid;
        return 0;
}

void overlays_fuse_arm(struct launch_ctx *c, pid_t end)
{
        if (c->fuse_sock < 0)
                return;
        int fd = pidfd_open_pid(end);
        char byte = 1;
        if (fd < 0 || send_fds(c->fuse_sock, &byte, 1, &fd, 1) < 0)
                log_verbose("cannot tell the overlay watcher which process ends the container, ignoring");
        else
                c->fuse_armed = true;
        if (fd >= 0)
                close(fd);
}

/* The watcher ends once it has ended its helpers, each waited for (at most CLOSE_WAIT_MS
 * each): its end, the EOF here, means every image is written back and closed. */
void overlays_fuse_wait(struct launch_ctx *c)
{
        char byte;
        if (c->fuse_sock < 0)
                return;
        while (recv(c->fuse_sock, &byte, 1, 0) > 0 || errno == EINTR)
                ;
        close(c->fuse_sock);
        c->fuse_sock = -EBADF;
        while (waitpid(c->fuse_pid, NULL, 0) < 0 && errno == EINTR)
                ;
        c->fuse_pid = 0;
}

void overlays_fuse_close(struct launch_ctx *c)
{
        /* not armed (a launch that failed after the mount): our EOF ends the helpers */
        if (c->fuse_sock >= 0 && !c->fuse_armed) {
                overlays_fuse_wait(c);
                return;
        }
        if (c->fuse_sock >= 0)
                close(c->fuse_sock);
        c->fuse_sock = -EBADF;
}
