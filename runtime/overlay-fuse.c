/* ext3 overlays for ordinary users: each image is served over FUSE by hutch-ext3 (image/ext3.c),
 * whose mount the kernel's overlayfs takes as a layer like any folder (runtime/overlay.c):
 * it keeps file types in directory entries, renames with RENAME_WHITEOUT and stores
 * user.* attributes, what overlayfs asks of an upper layer in a user namespace. The servers
 * run under hutch-fuse, a watcher forked in the container's user and mount namespaces but
 * outside its PID namespace and detached from the payload; it ends them with SIGTERM once
 * the container has ended (or its launcher or supervisor died), on which each writes its
 * image back and marks it clean: a SIGKILL there would leave it for e2fsck. A server still
 * closing an image holds an OFD lock on it that a new one waits for. The watcher holds
 * each mount (struct helper.hold) until its server has ended, so that the server's end is
 * always our SIGTERM's doing, never the mount's. */
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/magic.h>
#include <limits.h>
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

#define HELPER_START_MS 1000 /* a failed server's line: how long to wait for its end */
#define CLOSE_WAIT_MS 10000  /* a server of a previous container still closing the image */

int overlays_fuse_check(struct launch_ctx *c, const struct overlay *o, struct hutch_error *err)
{
        char path[PATH_MAX];
        if (c->ext3_fd < 0 && !libexec_program("hutch-ext3", path, sizeof path))
                return hutch_err(err, -ENOENT,
                                 "ext3 overlay '%s' needs hutch-ext3 as a user (beside hutch or in ../libexec/hutch "
                                 "from it): is hutch installed whole?",
                                 o->path);
        if (c->ext3_fd < 0 && (c->ext3_fd = open(path, O_PATH | O_CLOEXEC)) < 0)
                return hutch_err_sys(err, -errno, "cannot open '%s'", path);
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
        int hold;  /* its mount's root (O_PATH), so that only our SIGTERM ends it */
};

struct watcher {
        struct launch_ctx *c;
        int sock;
        struct helper h[64]; /* hutch-ext3 per ext3 overlay */
        size_t n;
};

/* What a helper that failed wrote, on one line: its lines joined. */
static void helper_said(const struct helper *h, char *buf, size_t len)
{
        char text[2048];
        ssize_t k = read(h->errfd, text, sizeof text - 1);
        size_t n = 0;
        buf[0] = 0;
        for (ssize_t i = 0; i < k && n + 1 < len; i++) {
                char ch = text[i] == '\n' ? ' ' : text[i];
                if (ch == ' ' && (n == 0 || buf[n - 1] == ' '))
                        continue;
                buf[n++] = ch;
        }
        while (n > 0 && buf[n - 1] == ' ')
                n--;
        buf[n] = 0;
}

/* The helpers end in reverse order, each waited for: each closes its image. */
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

/* Wait for a previous container's server to let the image go: it holds an OFD lock on it
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

/* Fork and exec argv[0] with keep[] left open across the exec; SIGTERM when we die. */
static int helper_spawn(struct watcher *w, char *const argv[], const int *keep, size_t n_keep, struct hutch_error *err)
{
        int ep[2];
        if (pipe2(ep, O_CLOEXEC) < 0)
                return hutch_err_sys(err, -errno, "cannot create a pipe for %s", argv[0]);
        /* vfork: the watcher is a copy of the launcher, whose page tables a fork would copy
         * (~1-2 ms); the child only sets up its fds and execs */
        pid_t parent = getpid(), pid = vfork();
        if (pid == 0) {
                prctl(PR_SET_PDEATHSIG, SIGTERM);
                if (getppid() != parent)
                        _exit(127);
                int null = open("/dev/null", O_RDWR | O_CLOEXEC);
                if (null < 0 || dup2(null, STDIN_FILENO) < 0 || dup2(ep[1], STDOUT_FILENO) < 0 ||
                    dup2(ep[1], STDERR_FILENO) < 0)
                        _exit(127);
                for (size_t i = 0; i < n_keep; i++)
                        if (fcntl(keep[i], F_SETFD, 0) < 0)
                                _exit(127);
                syscall(SYS_execveat, w->c->ext3_fd, "", argv, environ, AT_EMPTY_PATH);
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

/* hutch-ext3 for overlay i, on a FUSE mount of ours at OVL_DIR/i handed to it by fd: the
 * first stat of the mount waits for its answer, or fails once it has ended. */
static int ext3_start(struct watcher *w, size_t i, struct hutch_error *err)
{
        const struct launch_ctx *c = w->c;
        const struct overlay *o = &c->ovl[i];
        char at[64], mopts[160], ifd[16], off[24], ffd[16];
        snprintf(at, sizeof at, OVL_DIR "/%zu", i);
        int r = close_wait(o, err);
        if (r < 0)
                return r;
        _cleanup_close_ int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
        if (fd < 0)
                return hutch_err_sys(err, -errno, "cannot open /dev/fuse for overlay '%s'", o->path);
        snprintf(mopts, sizeof mopts, "fd=%d,rootmode=40000,user_id=%u,group_id=%u,allow_other,default_permissions", fd,
                 (unsigned) c->ids.inside_uid, (unsigned) c->ids.inside_gid);
        if (mount("hutch-ext3", at, "fuse.hutch-ext3", MS_NOSUID | MS_NODEV | (o->ro ? MS_RDONLY : 0), mopts) < 0)
                return hutch_err_sys(err, -errno, "cannot mount overlay '%s' with FUSE", o->path);
        /* the locked fd itself is the image: the file opened and checked, not a path again */
        snprintf(ifd, sizeof ifd, "%d", o->fd);
        snprintf(off, sizeof off, "%llu", (unsigned long long) o->offset);
        snprintf(ffd, sizeof ffd, "%d", fd);
        char uid[16], gid[16];
        snprintf(uid, sizeof uid, "%u", (unsigned) c->ids.inside_uid);
        snprintf(gid, sizeof gid, "%u", (unsigned) c->ids.inside_gid);
        char *argv[] = {"hutch-ext3", ifd, off, ffd, o->ro ? "ro" : "rw", uid, gid, NULL};
        const int keep[] = {o->fd, fd};
        if ((r = helper_spawn(w, argv, keep, ELEMENTSOF(keep), err)) < 0)
                return r;
        close(steal_fd(&fd)); /* the server holds the only one: its end is the mount's */
        struct helper *h = &w->h[w->n - 1];
        struct stat st;
        if (stat(at, &st) < 0) {
                char line[400];
                struct pollfd p = {.fd = h->pidfd, .events = POLLIN};
                poll(&p, 1, HELPER_START_MS);
                helper_said(h, line, sizeof line);
                return hutch_err(err, -EIO, "cannot use ext3 overlay '%s'%s%s", o->path, line[0] ? ": " : "", line);
        }
        /* see the top of this file */
        if ((h->hold = open(at, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0)
                return hutch_err_sys(err, -errno, "cannot hold the mount of overlay '%s'", o->path);
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

static _Noreturn void watcher_main(struct launch_ctx *c, int sock)
{
        struct watcher w = {.c = c, .sock = sock};
        struct hutch_error err = HUTCH_ERROR_INIT;
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        prctl(PR_SET_NAME, "hutch-fuse");
        /* a session of its own, as the image server's: a Ctrl-C or a hangup at the
         * caller's terminal reaches the payload, not the helpers, which end in order after
         * it while the launcher waits. Its stderr stays (debug
         * lines); stdin and stdout go to /dev/null */
        setsid();
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null >= 0 && (dup2(null, STDIN_FILENO) < 0 || dup2(null, STDOUT_FILENO) < 0))
                _exit(1);
        /* nothing of the launcher's but what the helpers need: an image server's socket or
         * an overlay's flock held here would outlive the container */
        int keep[73];
        size_t n = 0;
        keep[n++] = sock;
        keep[n++] = c->owner_pidfd;
        keep[n++] = c->ext3_fd;
        for (size_t i = 0; i < c->n_ovl && n < ELEMENTSOF(keep); i++)
                keep[n++] = c->ovl[i].fd;
        close_all_fds(3, keep, n);
        for (size_t i = 0; i < c->n_ovl; i++)
                if (c->ovl[i].kind == OVERLAY_EXT3 && ext3_start(&w, i, &err) < 0)
                        watcher_fail(&w, &err);
        err.code = 0;
        if (send(sock, &err, sizeof err, MSG_NOSIGNAL) < 0)
                watcher_fail(&w, &err);
        watch(&w, c->owner_pidfd);
}

int overlays_fuse_start(struct launch_ctx *c, struct hutch_error *err)
{
        /* the mount points, as attach_all makes them for the other layers */
        if (mkdir(OVL_DIR, 0755) < 0 && errno != EEXIST)
                return hutch_err_sys(err, -errno, "cannot create '%s' in the staging area", OVL_DIR);
        for (size_t i = 0; i < c->n_ovl; i++) {
                char at[64];
                snprintf(at, sizeof at, OVL_DIR "/%zu", i);
                if (c->ovl[i].kind == OVERLAY_EXT3 && mkdir(at, 0755) < 0 && errno != EEXIST)
                        return hutch_err_sys(err, -errno, "cannot create '%s' in the staging area", at);
        }
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
                watcher_main(c, sp[1]);
        }
        close(sp[1]);
        if (pid < 0) {
                close(sp[0]);
                return hutch_err_sys(err, -errno, "cannot fork the overlay watcher");
        }
        c->fuse_sock = sp[0];
        c->fuse_pid = pid;
        return 0;
}

int overlays_fuse_ready(struct launch_ctx *c, struct hutch_error *err)
{
        struct hutch_error res;
        ssize_t k = recv(c->fuse_sock, &res, sizeof res, 0);
        if (k == (ssize_t) sizeof res && res.code >= 0)
                return 0;
        close(c->fuse_sock);
        c->fuse_sock = -EBADF;
        waitpid(c->fuse_pid, NULL, 0); /* it has ended its servers and leaves */
        c->fuse_pid = 0;
        if (k != (ssize_t) sizeof res)
                return hutch_err(err, -EIO, "the overlay's FUSE watcher ended while mounting it");
        *err = res;
        return res.code;
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
        for (;;) {
                ssize_t k = recv(c->fuse_sock, &byte, 1, 0);
                if (k <= 0 && !(k < 0 && errno == EINTR))
                        break;
        }
        close(c->fuse_sock);
        c->fuse_sock = -EBADF;
        while (waitpid(c->fuse_pid, NULL, 0) < 0 && errno == EINTR)
                ;
        c->fuse_pid = 0;
}

void overlays_fuse_close(struct launch_ctx *c)
{
        /* not armed (a launch that failed after the mount): our EOF ends the helpers; the
         * socket stays open for theirs, so only its sending half is shut */
        if (c->fuse_sock >= 0 && !c->fuse_armed) {
                shutdown(c->fuse_sock, SHUT_WR);
                overlays_fuse_wait(c);
                return;
        }
        if (c->fuse_sock >= 0)
                close(c->fuse_sock);
        c->fuse_sock = -EBADF;
}
