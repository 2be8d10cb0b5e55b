/* The supervisor: one small process per instance, outside the container. It holds the
 * instance's lock, starts the image's server (hutch-squashfs, its child) and the container
 * through a short-lived launcher (a forked child that enters the namespaces, mounts the
 * image, hands the mount to the server and forks the init as the supervisor's own child,
 * then leaves), writes the state file, sends the container's output to size-capped logs,
 * stops the container when its image server reports a crash, restarts per policy and
 * removes everything at the end. One epoll loop over a signalfd, the log pipes, the
 * server's report pipe and a timerfd. It is the child subreaper of its tree and leaves
 * only after every process it started is gone. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "image/image.h"
#include "instanced-internal.h"
#include "runtime/pid1.h"
#include "util/log.h"
#include "util/process.h"
#include "util/util.h"

#define SETTLE_TICK_MS 1
#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS 30000
#define STABLE_RUN_S 10       /* a container that ran this long resets the backoff */
#define TIDY_AFTER_MS 50      /* set-aside logs are removed this long after a start */
#define JOB_END_KILL_MS 10000 /* a payload that ignores SIGTERM at its job's end: SIGKILL, as stop's default */

/* a supervisor is named as an overlay's lock holder by these */
_Static_assert(SUPERVISOR_DIR_FD == OVERLAY_SUPERVISOR_DIR_FD, "the overlay lock holder's instance folder fd");

#define READY_TICK_MS 50        /* --ready: how often the deadline is checked and a TCP probe made */
#define READY_EXEC_EVERY_MS 250 /* --ready exec: the pause between two runs of the command */

enum { EV_SIGNAL, EV_OUT, EV_ERR, EV_TIMER, EV_SERVER, EV_JOB, EV_NOTIFY, EV_CONTROL, EV_ASK };

struct log_sink {
        int dir_fd;
        int fd;
        char *name; /* "NAME.out" */
        uint64_t size, max;
};

struct sup {
        const struct instance_spec *spec;
        struct instance_state st;
        int sync_fd; /* to the CLI until ready */
        int root_fd, dir_fd, lock_fd;
        int epfd, sigfd, timerfd;
        int job_fd; /* --tie-to-job: a pidfd of the job's process */
        /* the control socket (-EBADF without), the connection heard from next, its uid */
        int ctl_fd, ask_fd;
        uid_t ask_uid;
        bool asked; /* the stop was asked for, asked_by the kernel's word on who asked */
        uid_t asked_by;
        /* --overlay: opened and locked for the instance's life, across restarts */
        struct overlay *ovl;
        int out_pipe[2], err_pipe[2];
        struct log_sink out, err;
        struct cgroup cg;     /* the instance's (with limits, or for stats where one can be made) */
        bool cg_is_unit;      /* cg is our systemd unit's own: only read */
        int cg_fd;            /* cg's folder, where inits are born (cgroup v2), or -EBADF */
        char user[64];        /* the user's name, for the audit trail */
        struct pidref init;   /* the container's PID 1, our child; unset when none */
        struct pidref server; /* the image server of the current start, our child; unset when none */
        int self_fd;          /* our pidfd: the image server ends with us */
        int srv_pipe[2];      /* where image servers report a crash, one line each */
        bool server_failed;
        struct hutch_error server_err; /* the first crash line of the current start */
        pid_t ended_early;             /* a child ended as its launcher was killed, not yet logged */
        int ctl_errno;                 /* why there is no control socket, not yet logged */
        bool ready, stopping, finishing, backing_off, tidy_pending, kill_pending;
        bool start_audited; /* the start's audit entry waits for the image's digest */
        int settled_in_row;
        struct timespec settle_start;
        unsigned backoff_ms;
        time_t run_started;
        int exit_status; /* the container's last, as a shell's $?: 128+N when killed by N */
        /* --ready: probing between the first start and readiness; the probe running (our
         * child) or unset; the notify socket and its host path; the launcher's environment with
         * NOTIFY_SOCKET */
        bool probing;
        struct pidref probe;
        struct timespec probe_start;
        long next_probe_ms;
        int notify_fd;
        char *notify_path;
        char **launch_env;
};

static void sink_close(struct log_sink *s)
{
        if (s->fd >= 0)
                close(s->fd);
        s->fd = -EBADF;
        free(s->name);
        s->name = NULL;
}

static int sink_open(struct log_sink *s, bool truncate)
{
        s->fd = openat(s->dir_fd, s->name,
                       O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW | (truncate ? O_TRUNC : 0), 0600);
        if (s->fd < 0)
                return -errno;
        struct stat st;
        s->size = fstat(s->fd, &st) == 0 ? (uint64_t) st.st_size : 0;
        return 0;
}

static void sink_rotate(struct log_sink *s)
{
        char old[INSTANCE_NAME_MAX + 16];
        snprintf(old, sizeof old, "%s.1", s->name);
        renameat(s->dir_fd, s->name, s->dir_fd, old);
        close(s->fd);
        sink_open(s, true);
}

/* Rotation: NAME.out -> NAME.out.1 (replacing the older one), a fresh NAME.out. No file
 * grows past max; a chunk is cut at its last newline that fits, so lines stay whole. */
static void sink_write(struct log_sink *s, const char *buf, size_t n)
{
        while (n > 0 && s->fd >= 0) {
                size_t take = n;
                if (s->max && s->size + n > s->max) {
                        size_t room = s->max > s->size ? s->max - s->size : 0;
                        size_t cut = room;
                        while (cut > 0 && buf[cut - 1] != '\n')
                                cut--;
                        if (cut == 0 && s->size > 0) {
                                sink_rotate(s);
                                continue;
                        }
                        take = cut ? cut : (room ? room : n < s->max ? n : s->max);
                }
                if (write_full(s->fd, buf, take) < 0)
                        return;
                s->size += take;
                buf += take;
                n -= take;
        }
}

/* The supervisor's own lines go into the error log, marked as hutch's. */
static void __attribute__((format(printf, 2, 3))) note(struct sup *u, const char *fmt, ...)
{
        char line[700];
        va_list ap;
        int k = snprintf(line, sizeof line, "hutch: ");
        va_start(ap, fmt);
        k += vsnprintf(line + k, sizeof line - k - 1, fmt, ap);
        va_end(ap);
        if (k > (int) sizeof line - 2)
                k = sizeof line - 2;
        /* a path in the message holds any byte: control bytes would split the line or
         * reach a terminal, so they are written as \xNN */
        char esc[sizeof line * 4];
        int m = 0;
        for (int i = 0; i < k && m < (int) sizeof esc - 6; i++) {
                unsigned char ch = (unsigned char) line[i];
                m += ch < 0x20 || ch == 0x7f ? sprintf(esc + m, "\\x%02x", ch) : (esc[m] = (char) ch, 1);
        }
        memcpy(line, esc, m < (int) sizeof line - 2 ? m : (int) sizeof line - 2);
        k = m < (int) sizeof line - 2 ? m : (int) sizeof line - 2;
        line[k++] = '\n';
        sink_write(&u->err, line, k);
        line[k - 1] = 0;
        syslog(LOG_INFO, "instance %s (uid %u): %s", u->st.name, (unsigned) u->st.uid, line + 7);
}

static void audit(struct sup *u, const char *event, int exit_status)
{
        struct instance_audit a = {.event = event,
                                   .instance = u->st.name,
                                   .user = u->user,
                                   .image = u->st.image,
                                   .image_digest = u->st.digest,
                                   .limits = u->st.limits,
                                   .keeper = u->spec->unit ? "systemd" : "hutch",
                                   .unit = u->spec->unit,
                                   .uid = u->st.uid,
                                   .pid = u->st.pid,
                                   .exit_status = exit_status,
                                   .restarts = u->st.restarts,
                                   .requested = u->asked,
                                   .requested_by = u->asked_by};
        instance_audit(&a);
}

/* The start's audit entry, with the image's digest: read once the CLI has returned (a
 * large image's first start reads it whole; its next starts find it in the user's cache),
 * and kept in the state for `instance list --all`. A digest that cannot be had is logged
 * and left out: it never fails the instance. */
static void audit_start(struct sup *u)
{
        if (u->start_audited)
                return;
        u->start_audited = true;
        const char *home = u->spec->env.home;
        _cleanup_free_ char *cache = home && *home == '/' ? strjoin(home, "/.hutch/cache/digest", NULL) : NULL;
        char d[72];
        struct hutch_error e = HUTCH_ERROR_INIT;
        if (!u->st.digest || !*u->st.digest) {
                if (image_digest(u->st.image, cache, d, &e) >= 0) {
                        free(u->st.digest);
                        u->st.digest = strdup(d);
                        /* not state_save: a state that cannot be written now still holds
                         * everything but the digest, and the instance keeps running */
                        (void) instance_state_write(u->dir_fd, &u->st);
                } else if (e.code != -EISDIR)
                        note(u, "no image digest for the audit trail: %s", e.msg);
        }
        audit(u, "start", -1);
}

/* Under a systemd unit (Type=notify): the manager hears READY=1, STATUS= and STOPPING=1. */
static void tell_manager(struct sup *u, const char *msg)
{
        if (u->spec->unit && u->spec->notify_socket)
                (void) instance_notify(u->spec->notify_socket, msg);
}

static void tell_cli(struct sup *u, int type, int status, const struct hutch_error *err)
{
        if (u->sync_fd < 0)
                return;
        struct process_msg m = {.type = type, .status = status, .pid = u->st.pid};
        if (err)
                m.err = *err;
        (void) process_msg_send(u->sync_fd, &m, -EBADF);
        close(u->sync_fd);
        u->sync_fd = -EBADF;
}

/* The log folder, made and opened before the container starts (it fails the start at
 * once when it cannot be); the files themselves in logs_open, once the container runs. */
static int logs_prepare(struct sup *u, struct hutch_error *err)
{
        _cleanup_free_ char *out = NULL, *errp = NULL;
        int r = instance_log_paths(&u->spec->env, u->spec->name, &out, &errp);
        if (r < 0)
                return hutch_err(err, r, "cannot tell where instance logs go: HOME is not set");
        char *slash = strrchr(out, '/');
        *slash = 0;
        if ((r = mkdir_p_at(AT_FDCWD, out, 0700)) < 0)
                return hutch_err_sys(err, r, "cannot create the log folder '%s'", out);
        int dfd = open(out, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (dfd < 0)
                return hutch_err_sys(err, -errno, "cannot open the log folder '%s'", out);
        /* in a home folder others can write to, the folder may be someone else's: it would
         * then read (and shape) the container's output */
        struct stat st;
        if (fstat(dfd, &st) < 0 || st.st_uid != u->spec->env.uid) {
                close(dfd);
                return hutch_err(err, -EPERM, "the log folder '%s' does not belong to uid %u", out,
                                 (unsigned) u->spec->env.uid);
        }
        if (st.st_mode & 077) /* nobody else's to read or write */
                (void) !fchmod(dfd, st.st_mode & 0700);
        *slash = '/';
        u->out.dir_fd = dfd;
        u->err.dir_fd = dfd;
        u->out.max = u->err.max = u->spec->log_max_size;
        u->out.name = strdup(slash + 1);
        u->err.name = strdup(strrchr(errp, '/') + 1);
        if (!u->out.name || !u->err.name)
                return hutch_err(err, -ENOMEM, "out of memory");
        u->st.log_out = steal_pointer(&out);
        u->st.log_err = steal_pointer(&errp);
        return 0;
}

/* The log files, opened while the container starts (its output waits in the pipes) and
 * appended to, as Apptainer's: a name's earlier runs stay above (rotation bounds them). In
 * a home folder on NFS each open is a round trip to the server. Once; a restart keeps them. */
static int logs_open(struct sup *u, struct hutch_error *err)
{
        int r;
        if (u->out.fd >= 0)
                return 0;
        if ((r = sink_open(&u->out, false)) < 0 || (r = sink_open(&u->err, false)) < 0)
                return hutch_err_sys(err, r, "cannot open the logs of instance '%s'", u->spec->name);
        if (u->ctl_errno) { /* control_setup ran before the log was open */
                note(u, "no control socket (%s): instance stop signals the supervisor", strerror(u->ctl_errno));
                u->ctl_errno = 0;
        }
        return 0;
}

static void note_ended_early(struct sup *u)
{
        if (u->ended_early > 0 && u->err.fd >= 0) {
                note(u, "the launcher was killed; its init (pid %d) was ended before going on", (int) u->ended_early);
                u->ended_early = 0;
        }
}

static void drain(int fd, struct log_sink *s)
{
        char buf[65536];
        ssize_t n;
        while ((n = read(fd, buf, sizeof buf)) > 0)
                sink_write(s, buf, n);
}

/* The launcher: a fork of the supervisor (on a copy of its memory), with stdio on the log
 * pipes; the batch path with a PID namespace makes the init its sibling (the supervisor's
 * child) and returns it once the payload runs; the launcher reports "started" with the
 * init's pidfd, or "failed", through notify and exits. */
static _Noreturn void launcher_main(struct sup *u, int notify, int serve)
{
        struct hutch_error err = HUTCH_ERROR_INIT;
        struct launch_spec spec = *u->spec->launch;
        int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
        /* nothing of the supervisor's reaches the container: not its lock (whose copies
         * would keep the instance "alive"), the CLI's socket or the state folder (the
         * cgroup's folder is close-on-exec: the init is born in it) */
        int keep[] = {notify, serve, u->out_pipe[1], u->err_pipe[1], devnull, u->cg_fd};
        close_all_fds(3, keep, ELEMENTSOF(keep));
        sigset_t all;
        sigfillset(&all);
        sigprocmask(SIG_UNBLOCK, &all, NULL);
        /* No signal ignored: an ignored signal stays ignored across exec, and the init and
         * the payload must start as any service does, whatever the supervisor ignores
         * (SIGPIPE: 'yes | head' ends yes) or the CLI inherited from its caller (a shell's
         * background job ignores SIGINT and SIGQUIT; the payload would then be deaf to
         * instance stop's SIGINT and wait out its timeout). Handlers stay: exec resets
         * them, and a sanitizer's report a crash before it. */
        for (int sig = 1; sig < NSIG; sig++) {
                struct sigaction old;
                if (sigaction(sig, NULL, &old) == 0 && old.sa_handler == SIG_IGN)
                        signal(sig, SIG_DFL);
        }
        prctl(PR_SET_NAME, "hutch-launch");
        if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(u->out_pipe[1], 1) < 0 || dup2(u->err_pipe[1], 2) < 0)
                _exit(255);
        spec.pid_ns = true;
        spec.no_init = false;
        spec.limits = NULL; /* the supervisor made the cgroup; the init is born in it */
        struct launch_instance_io io = LAUNCH_INSTANCE_IO_INIT;
        io.serve_sock = serve;
        if (u->cg.n_dirs && !u->cg_is_unit) {
                io.cgroup = &u->cg;
                io.cgroup_fd = u->cg_fd;
        }
        if (u->notify_path) {
                spec.notify_socket = u->notify_path;
                spec.notify_socket_dst = READY_NOTIFY_DST;
                spec.env = u->launch_env;
        }
        if (runtime_launch(&spec, &io, NULL, &err) < 0) {
                process_msg_fail(notify, &err);
                _exit(255);
        }
        struct process_msg ev = {.type = PROCESS_MSG_STARTED, .pid = io.init.pid};
        snprintf(ev.net_addr, sizeof ev.net_addr, "%s", io.net_addr);
        (void) process_msg_send(notify, &ev, io.init.fd);
        _exit(0);
}

static int epoll_add(int epfd, int fd, int tag)
{
        struct epoll_event e = {.events = EPOLLIN, .data.u32 = tag};
        return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e) < 0 ? -errno : 0;
}

static void timer_arm(struct sup *u, unsigned ms, bool periodic)
{
        struct itimerspec t = {0};
        t.it_value.tv_sec = ms / 1000;
        t.it_value.tv_nsec = (ms % 1000) * 1000000L + (ms == 0);
        if (periodic)
                t.it_interval = t.it_value;
        timerfd_settime(u->timerfd, 0, &t, NULL);
}

static void timer_off(struct sup *u)
{
        struct itimerspec off = {0};
        timerfd_settime(u->timerfd, 0, &off, NULL);
}

static void on_started(struct sup *u, pid_t pid);
static void ready_begin(struct sup *u);
static void on_server_report(struct sup *u);
static void stop_container(struct sup *u, int sig);

/* Calls fn for each child of thread tid of process pid, until fn returns false (then
 * false). A list that cannot be read has no children. */
static bool each_child(pid_t pid, pid_t tid, bool (*fn)(pid_t child, void *arg), void *arg)
{
        char path[96];
        _cleanup_free_ char *kids = NULL;
        snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int) pid, (int) tid);
        if (read_full_at(AT_FDCWD, path, 1 << 16, &kids, NULL) < 0)
                return true;
        for (char *p = kids, *e; *p; p = e) {
                long k = strtol(p, &e, 10);
                if (e == p)
                        break;
                if (k > 0 && !fn((pid_t) k, arg))
                        return false;
        }
        return true;
}

/* The image's server, our child, for a squashfs or SIF image (a folder needs none): the
 * launcher hands it the mount over *ret_sock. */
static int server_start(struct sup *u, int *ret_sock, struct hutch_error *err)
{
        struct stat st;
        int fs[2];
        *ret_sock = -EBADF;
        u->server_failed = false;
        if (stat(u->spec->launch->image, &st) < 0 || S_ISDIR(st.st_mode))
                return 0; /* a missing image fails in the launcher, with its message */
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fs) < 0)
                return hutch_err_sys(err, -errno, "cannot create the image server's socket");
        /* a restart's previous server may not be reaped yet: it ends with its mount, and is
         * reaped as any child; only its pidfd is ours to close */
        pidref_done(&u->server);
        int r = image_serve_process(fs[0], u->self_fd, u->srv_pipe[1], u->spec->launch->conf->file_cache_size,
                                    &u->server, err);
        if (r < 0) {
                close(fs[1]);
                return r;
        }
        *ret_sock = fs[1];
        return 0;
}

/* SIGKILL a child that is none of ours we know: the init a killed launcher made (as our
 * child, CLONE_PARENT) before it could report it. Not reaped yet, so its pid is still its
 * own. */
static bool child_kill_unknown(pid_t child, void *arg)
{
        struct sup *u = arg;
        if (child == u->server.pid || child == u->probe.pid || child == u->init.pid)
                return true;
        if (proc_state(child, child) != 'Z' && kill(child, SIGKILL) == 0)
                u->ended_early = child;
        return true;
}

/* The launcher and its report: the init's pid once the payload runs, or why it failed.
 * Returns the launcher's wait status or -errno, err filled.
 * Every process of the container starts inside the instance's cgroup, and none is ever
 * moved out: the init is born there (runtime_launch: clone3 CLONE_INTO_CGROUP on cgroup
 * v2), or enters it before it does anything else (v1, or a kernel before 5.7); the payload
 * inherits it. The launcher and the FUSE servers it starts stay in the supervisor's cgroup,
 * so that a container at its memory limit cannot starve what serves its files. A cgroup
 * that refuses the init (permissions, pids.max) fails the start. */
static int launcher_run(struct sup *u, int notify, int serve, struct hutch_error *err)
{
        struct pidref launcher = PIDREF_NULL;
        int r = process_fork(FORK_DEATHSIG, &launcher);
        if (r < 0)
                return hutch_err_sys(err, r, "cannot start the launcher");
        if (r == 0)
                launcher_main(u, notify, serve);
        int ws = 0;
        r = pidref_wait(&launcher, 0, &ws);
        pidref_done(&launcher);
        return r < 0 ? r : ws;
}

/* Start the container; returns once its payload runs (or setup failed). */
static int container_start(struct sup *u, struct hutch_error *err)
{
        int sp[2], serve;
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0)
                return hutch_err_sys(err, -errno, "cannot create the launcher socket");
        int r = server_start(u, &serve, err);
        if (r < 0) {
                close(sp[0]);
                close(sp[1]);
                return r;
        }
        int ws = launcher_run(u, sp[1], serve, err);
        close(sp[1]);
        if (serve >= 0)
                close(serve);
        struct process_msg ev = {0};
        _cleanup_close_ int init_fd = -EBADF;
        /* not waiting: an init the launcher made may hold the other end until it execs */
        bool got = ws >= 0 && process_msg_recv(sp[0], MSG_DONTWAIT, &ev, &init_fd) == 1;
        close(sp[0]);
        if (ws >= 0 && WIFSIGNALED(ws) && !(got && ev.type == PROCESS_MSG_STARTED)) {
                /* the launcher was killed before it reported the init: an init it made is
                 * our child all the same, and nobody would tell it the start failed. It is
                 * ended (and with it its PID namespace); the account goes to the log once
                 * it is open */
                each_child(getpid(), getpid(), child_kill_unknown, u);
        }
        u->run_started = time(NULL);
        if (ws < 0)
                return ws;
        if (got && ev.type == PROCESS_MSG_STARTED && ev.pid > 0) {
                pidref_done(&u->init);
                if (init_fd >= 0)
                        u->init = (struct pidref){.pid = ev.pid, .fd = steal_fd(&init_fd)};
                else /* our child, not reaped: the pid is its own */
                        (void) pidref_set_pid(&u->init, ev.pid);
                free(u->st.ip);
                u->st.ip = ev.net_addr[0] ? strdup(ev.net_addr) : NULL;
                on_started(u, ev.pid);
                return 0;
        }
        if (got && ev.type == PROCESS_MSG_FAILED) {
                *err = ev.err;
                return err->code < 0 ? err->code : -EIO;
        }
        int status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
        return hutch_err(err, -EIO, "the launcher of instance '%s' exited with status %d before the container started",
                         u->st.name, status);
}

/* Every task of pid and its descendants sleeping (S), idle (I) or stopped: the container has
 * settled. Running (R), waiting on I/O or a FUSE page-in (D) or a zombie not yet reaped
 * (Z) mean it is still getting up or going down. */
static bool tree_settled(pid_t pid, int depth);

static bool child_settled(pid_t child, void *arg)
{
        return tree_settled(child, *(int *) arg);
}

static bool tree_settled(pid_t pid, int depth)
{
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/task", (int) pid);
        _cleanup_closedir_ DIR *d = opendir(path);
        if (!d || depth > 64)
                return false;
        struct dirent *de;
        while ((de = readdir(d))) {
                if (de->d_name[0] == '.')
                        continue;
                pid_t tid = atoi(de->d_name);
                char st = proc_state(pid, tid);
                if (st != 'S' && st != 'I' && st != 'T' && st != 't')
                        return false;
                int next = depth + 1;
                if (!each_child(pid, tid, child_settled, &next))
                        return false;
        }
        return true;
}

/* An instance whose state cannot be written could be neither listed, stopped nor joined:
 * it is stopped, and a start in progress fails saying why. */
static bool state_save(struct sup *u)
{
        int r = instance_state_write(u->dir_fd, &u->st);
        if (r >= 0)
                return true;
        struct hutch_error e = HUTCH_ERROR_INIT;
        hutch_err_sys(&e, r, "cannot write the state of instance '%s'", u->st.name);
        note(u, "%s: %s; stopping it", e.msg, strerror(-r));
        tell_cli(u, PROCESS_MSG_FAILED, -1, &e);
        stop_container(u, SIGKILL);
        return false;
}

static void on_started(struct sup *u, pid_t pid)
{
        u->st.pid = pid;
        proc_start_time(pid, &u->st.pid_start);
        if (u->ready) { /* a restart */
                state_save(u);
                audit(u, "restart", -1);
                u->tidy_pending = true;
                timer_arm(u, TIDY_AFTER_MS, false);
                return;
        }
        if (u->spec->ready.kind != INSTANCE_READY_NONE) {
                ready_begin(u);
                return;
        }
        clock_gettime(CLOCK_MONOTONIC, &u->settle_start);
        u->settled_in_row = 0;
        timer_arm(u, SETTLE_TICK_MS, true);
}

static long ms_since(const struct timespec *t)
{
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        return (now.tv_sec - t->tv_sec) * 1000 + (now.tv_nsec - t->tv_nsec) / 1000000;
}

/* The container runs and is ready (settled, or as --ready says): the CLI returns, the
 * unit's manager hears READY=1. */
static void became_ready(struct sup *u)
{
        u->ready = true;
        /* the CLI, which returns once told, tends to be woken on our CPU and wait for it:
         * told first, the log line after, the tidying (on_timer) a while later */
        tell_cli(u, PROCESS_MSG_READY, 0, NULL);
        tell_manager(u, "READY=1\nSTATUS=running");
        note(u, "instance started (pid %d, image %s)", (int) u->st.pid, u->st.image);
        u->tidy_pending = true;
        timer_arm(u, TIDY_AFTER_MS, false);
}

static void probe_end(struct sup *u)
{
        u->probing = false;
        timer_off(u);
        (void) pidref_kill(&u->probe, SIGKILL); /* reaped by tree_gone or on SIGCHLD */
}

/* --ready: the state is written first (an exec probe joins through it), then probes run
 * on the timer until one succeeds, READY=1 comes or the timeout passes. */
static void ready_begin(struct sup *u)
{
        if (!state_save(u))
                return;
        u->probing = true;
        u->next_probe_ms = 0;
        clock_gettime(CLOCK_MONOTONIC, &u->probe_start);
        tell_manager(u, "STATUS=waiting for the service to be ready");
        timer_arm(u, READY_TICK_MS, true);
}

static void ready_done(struct sup *u)
{
        probe_end(u);
        became_ready(u);
}

/* Not ready in time: the start fails (the CLI shows the error log) and the container is
 * ended; the supervisor then removes everything as after any failed start. */
static void ready_fail(struct sup *u, const char *why)
{
        struct hutch_error e = HUTCH_ERROR_INIT;
        probe_end(u);
        drain(u->out_pipe[0], &u->out);
        drain(u->err_pipe[0], &u->err);
        note(u, "not ready: %s; stopping it", why);
        hutch_err(&e, -ETIMEDOUT, "instance '%s' failed to start: %s", u->st.name, why);
        tell_cli(u, PROCESS_MSG_FAILED, 0, &e);
        stop_container(u, SIGKILL);
}

static void on_ready_tick(struct sup *u)
{
        const struct instance_ready *r = &u->spec->ready;
        long waited = ms_since(&u->probe_start);
        char why[INSTANCE_NAME_MAX + 200];
        if (waited >= (long) r->timeout_ms) {
                if (r->kind == INSTANCE_READY_NOTIFY)
                        snprintf(why, sizeof why, "no READY=1 on its NOTIFY_SOCKET within %.3g s",
                                 r->timeout_ms / 1000.0);
                else if (r->kind == INSTANCE_READY_TCP)
                        snprintf(why, sizeof why, "nothing accepted connections on port %u within %.3g s", r->port,
                                 r->timeout_ms / 1000.0);
                else
                        snprintf(why, sizeof why, "the --ready command did not succeed within %.3g s",
                                 r->timeout_ms / 1000.0);
                ready_fail(u, why);
                return;
        }
        if (r->kind == INSTANCE_READY_NOTIFY || pidref_is_set(&u->probe) || waited < u->next_probe_ms)
                return;
        int k = ready_probe_start(u->spec, &u->init, &u->probe);
        if (k < 0) {
                snprintf(why, sizeof why, "cannot start its readiness probe: %s", strerror(-k));
                ready_fail(u, why);
        }
}

static void on_probe_exit(struct sup *u, int ws)
{
        pidref_done(&u->probe);
        if (!u->probing)
                return;
        if (WIFEXITED(ws) && WEXITSTATUS(ws) == 0) {
                ready_done(u);
                return;
        }
        u->next_probe_ms =
                ms_since(&u->probe_start) + (u->spec->ready.kind == INSTANCE_READY_EXEC ? READY_EXEC_EVERY_MS : 0);
}

static void on_notify(struct sup *u)
{
        if (ready_notify_read(u->notify_fd) && u->probing)
                ready_done(u);
}

static void on_settle_tick(struct sup *u)
{
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long waited_ms =
                (now.tv_sec - u->settle_start.tv_sec) * 1000 + (now.tv_nsec - u->settle_start.tv_nsec) / 1000000;
        u->settled_in_row = tree_settled(u->st.pid, 0) ? u->settled_in_row + 1 : 0;
        if (u->settled_in_row < 2 && waited_ms < (long) u->spec->settle_ms)
                return;
        timer_off(u);
        if (!state_save(u))
                return;
        became_ready(u);
}

static bool should_restart(struct sup *u, int status)
{
        const struct instance_spec *s = u->spec;
        if (u->stopping || !u->ready || s->restart == RESTART_NO)
                return false;
        if (s->restart == RESTART_ON_FAILURE && status == 0)
                return false;
        return s->max_restarts == 0 || u->st.restarts < s->max_restarts;
}

static void on_container_exit(struct sup *u, int wstatus)
{
        int status = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128 + WTERMSIG(wstatus);
        pidref_done(&u->init);
        /* a container that ended on its image server's EIO: the server's line, written
         * before that EIO, first (it may wait in the pipe behind this signal) */
        on_server_report(u);
        u->exit_status = status;
        if (u->cg.n_dirs && cgroup_oom_killed(&u->cg))
                note(u, "the kernel's OOM killer killed a process of the container (memory limit reached)");
        if (!u->ready) {
                timer_off(u);
                if (u->probing)
                        probe_end(u);
                /* what the container wrote before it exited is in the pipes, maybe not read
                 * yet (the signal can come first in an epoll batch): into the logs before
                 * the CLI reads them to show its error */
                drain(u->out_pipe[0], &u->out);
                drain(u->err_pipe[0], &u->err);
                note(u, "container exited with status %d while starting", status);
                struct hutch_error e = HUTCH_ERROR_INIT;
                hutch_err(&e, -ECHILD, "instance '%s' failed to start: the container exited with status %d", u->st.name,
                          status);
                /* a crashed image server: its line alone (no status: the CLI shows no log,
                 * where the container's reads failed for that one reason) */
                if (u->server_failed)
                        tell_cli(u, PROCESS_MSG_FAILED, -1, &u->server_err);
                else
                        tell_cli(u, PROCESS_MSG_FAILED, status, &e);
                u->finishing = true;
                return;
        }
        if (!should_restart(u, status)) {
                note(u, "container exited with status %d%s", status, u->stopping ? " (stopped)" : "");
                audit_start(u); /* stopped before its start was logged: logged first */
                audit(u, u->stopping ? "stop" : "exit", status);
                u->finishing = true;
                return;
        }
        audit_start(u);
        audit(u, "exit", status);
        if (time(NULL) - u->run_started >= STABLE_RUN_S)
                u->backoff_ms = 0;
        u->backoff_ms = u->backoff_ms ? u->backoff_ms * 2 : BACKOFF_FIRST_MS;
        if (u->backoff_ms > BACKOFF_MAX_MS)
                u->backoff_ms = BACKOFF_MAX_MS;
        u->st.restarts++;
        note(u, "container exited with status %d; restart %u in %u ms", status, u->st.restarts, u->backoff_ms);
        tell_manager(u, "STATUS=restarting after an exit");
        u->backing_off = true;
        timer_arm(u, u->backoff_ms, false);
}

static void child_gone(struct sup *u, pid_t p, int ws)
{
        if (p == u->init.pid)
                on_container_exit(u, ws);
        else if (p == u->probe.pid)
                on_probe_exit(u, ws);
        else if (p == u->server.pid)
                pidref_done(&u->server);
}

/* A line from an image server whose worker crashed: the server answers the container's
 * reads with EIO from then on, so the container is ended (and restarted per policy); a
 * start under way fails with that line. */
static void on_server_report(struct sup *u)
{
        char buf[4096];
        ssize_t n;
        while ((n = read(u->srv_pipe[0], buf, sizeof buf - 1)) > 0) {
                buf[n] = 0;
                for (char *line = buf, *end; *line; line = end) {
                        end = strchrnul(line, '\n');
                        if (*end)
                                *end++ = 0;
                        const char *msg = startswith(line, "hutch: error: ") ? line + 14 : line;
                        if (!*msg)
                                continue;
                        note(u, "%s", msg);
                        if (!u->server_failed) {
                                u->server_failed = true;
                                hutch_err(&u->server_err, -EIO, "%s", msg);
                        }
                }
        }
        if (u->server_failed)
                (void) pidref_kill(&u->init, SIGKILL);
}

static void on_timer(struct sup *u)
{
        uint64_t ticks;
        (void) !read(u->timerfd, &ticks, sizeof ticks);
        if (u->kill_pending) {
                (void) pidref_kill(&u->init, SIGKILL);
                u->kill_pending = false;
        }
        if (u->tidy_pending) { /* a restart's backoff may have taken the timer over: now */
                u->tidy_pending = false;
                if (u->ready)
                        audit_start(u);
        }
        if (u->backing_off) {
                struct hutch_error e = HUTCH_ERROR_INIT;
                u->backing_off = false;
                if (container_start(u, &e) < 0) {
                        note_ended_early(u);
                        note(u, "restart failed: %s", e.msg);
                        u->finishing = true;
                }
                return;
        }
        if (u->probing)
                on_ready_tick(u);
        else if (!u->ready && u->st.pid > 0)
                on_settle_tick(u);
}

static void stop_container(struct sup *u, int sig)
{
        if (!u->stopping)
                tell_manager(u, "STOPPING=1\nSTATUS=stopping");
        u->stopping = true;
        if (pidref_is_set(&u->init))
                (void) pidref_queue(&u->init, sig, HUTCH_INIT_STOP_MARK); /* marked: a stop */
        else
                u->finishing = true;
        if (u->backing_off) {
                u->backing_off = false;
                timer_off(u);
        }
}

/* The batch job the instance is tied to ended: so does the instance. */
static void on_job_end(struct sup *u)
{
        epoll_ctl(u->epfd, EPOLL_CTL_DEL, u->job_fd, NULL);
        if (!u->stopping)
                note(u, "the batch job %s ended (its process %d exited): stopping", u->st.job, (int) u->st.job_pid);
        stop_container(u, SIGTERM);
        u->kill_pending = true;
        timer_arm(u, JOB_END_KILL_MS, false);
}

static void on_signal(struct sup *u)
{
        struct signalfd_siginfo si;
        while (read(u->sigfd, &si, sizeof si) == (ssize_t) sizeof si) {
                if (si.ssi_signo == SIGCHLD) {
                        int ws;
                        pid_t p;
                        while ((p = waitpid(-1, &ws, WNOHANG)) > 0)
                                child_gone(u, p, ws);
                        continue;
                }
                /* SIGTERM/SIGINT/SIGHUP: stop; `instance stop` queues the signal to pass on */
                int sig = SIGTERM;
                if (si.ssi_code == SI_QUEUE && si.ssi_int > 0 && si.ssi_int < 65)
                        sig = si.ssi_int;
                /* kill(2)'s sender is the kernel's word (no other process may send SI_USER,
                 * rt_sigqueueinfo(2)); a queued signal's is the sender's own claim */
                if (!u->asked && (si.ssi_code == SI_USER || si.ssi_code == SI_TKILL)) {
                        u->asked = true;
                        u->asked_by = si.ssi_uid;
                }
                if (!u->stopping)
                        note(u, "stopping (signal %d)", sig);
                stop_container(u, sig);
        }
}

/* The control socket: `instance stop` connects and sends the signal to pass on (an int).
 * Who asked is SO_PEERCRED's uid, taken at connect: root's when root stops another user's
 * instance (it connects before it becomes that user), which a signal sent as that user
 * could not tell. Only the owner and root outside containers are heard; a second
 * connection replaces one that said nothing yet (what the first had sent is acted on
 * before). A stop heard is acknowledged with one byte: a client that gets none (its
 * connection replaced, or no socket) signals instead. Without the socket (the name taken
 * first) the log says so and every stop signals. */
static void control_setup(struct sup *u)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int k = snprintf(sa.sun_path + 1, sizeof sa.sun_path - 1, CONTROL_NAME_FMT, (int) u->st.supervisor,
                         u->st.supervisor_start);
        int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd >= 0 && bind(fd, (struct sockaddr *) &sa, offsetof(struct sockaddr_un, sun_path) + 1 + k) == 0 &&
            listen(fd, 8) == 0 && epoll_add(u->epfd, fd, EV_CONTROL) == 0) {
                u->ctl_fd = fd;
                return;
        }
        u->ctl_errno = errno ? errno : EIO; /* logged once the log is open (logs_open) */
        if (fd >= 0)
                close(fd);
}

static void ask_close(struct sup *u)
{
        if (u->ask_fd < 0)
                return;
        epoll_ctl(u->epfd, EPOLL_CTL_DEL, u->ask_fd, NULL);
        close(u->ask_fd);
        u->ask_fd = -EBADF;
}

/* How deep in nested PID namespaces pid is: the entries of its NSpid (proc(5); status is
 * readable for every process, unlike ns/pid, which root's would not let us read). */
static int pid_ns_depth(const char *pid)
{
        char path[64];
        snprintf(path, sizeof path, "/proc/%s/status", pid);
        _cleanup_free_ char *text = NULL;
        if (read_full_at(AT_FDCWD, path, 1 << 16, &text, NULL) < 0)
                return -1;
        const char *l = strstr(text, "\nNSpid:");
        if (!l)
                return -1;
        int n = 0;
        for (l += 7; *l && *l != '\n'; l++)
                n += (l[-1] == ' ' || l[-1] == '\t') && *l >= '0' && *l <= '9';
        return n;
}

/* The asker is no deeper in nested PID namespaces than we are: not a process of a container
 * (each has a PID namespace beneath ours), which reaches the abstract socket on the host's
 * network and sees its name in /proc/net/unix, but could not signal us. */
static bool outside_containers(pid_t pid)
{
        char p[24];
        snprintf(p, sizeof p, "%d", (int) pid);
        int theirs = pid > 0 ? pid_ns_depth(p) : -1, ours = pid_ns_depth("self");
        return theirs > 0 && ours > 0 && theirs <= ours;
}

static void on_ask(struct sup *u)
{
        int sig = 0;
        ssize_t k = recv(u->ask_fd, &sig, sizeof sig, MSG_DONTWAIT);
        if (k < 0 && errno == EAGAIN)
                return;
        uid_t by = u->ask_uid;
        if (k != (ssize_t) sizeof sig || sig <= 0 || sig >= 65) {
                ask_close(u);
                return;
        }
        (void) send(u->ask_fd, "k", 1, MSG_NOSIGNAL | MSG_DONTWAIT); /* heard: the client need not signal */
        ask_close(u);
        if (!u->asked) {
                u->asked = true;
                u->asked_by = by;
        }
        if (!u->stopping)
                note(u, "stopping (signal %d, asked by uid %u)", sig, (unsigned) by);
        stop_container(u, sig);
}

/* SO_PEERCRED's pid is the asker's at connect: outside_containers reads /proc by that
 * number, which an asker that has since ended could have passed on to another process.
 * Where the kernel has SO_PEERPIDFD (Linux 6.5), the asker's pidfd: it must still be running
 * after /proc was read, so the number was still its own; an asker already gone (the kernel
 * gives no pidfd for it) is not heard. Kernels without the option keep that gap. */
#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif
static bool peer_outside_containers(int fd, pid_t pid)
{
        int pidfd = -EBADF;
        socklen_t pl = sizeof pidfd;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &pl) < 0) {
                if (errno != ENOPROTOOPT) /* e.g. EINVAL: the asker has already ended */
                        return false;
                pidfd = -EBADF;
        }
        bool ok = outside_containers(pid);
        if (pidfd >= 0) {
                struct pollfd p = {.fd = pidfd, .events = POLLIN};
                ok = ok && poll(&p, 1, 0) == 0; /* a pidfd polls readable once its process ended */
                close(pidfd);
        }
        return ok;
}

static void on_control(struct sup *u)
{
        int fd;
        while ((fd = accept4(u->ctl_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK)) >= 0) {
                struct ucred cr;
                socklen_t cl = sizeof cr;
                if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) < 0 || (cr.uid != u->st.uid && cr.uid != 0) ||
                    !peer_outside_containers(fd, cr.pid)) {
                        close(fd);
                        continue;
                }
                if (u->ask_fd >= 0) /* what the one replaced has sent is heard first */
                        on_ask(u);
                ask_close(u);
                if (epoll_add(u->epfd, fd, EV_ASK) < 0) {
                        close(fd);
                        continue;
                }
                u->ask_fd = fd;
                u->ask_uid = cr.uid;
        }
}

/* All children gone (init, FUSE server, helpers)? Reaps what is left. */
static bool tree_gone(struct sup *u)
{
        int ws;
        pid_t p;
        while ((p = waitpid(-1, &ws, WNOHANG)) > 0)
                child_gone(u, p, ws);
        return p < 0 && errno == ECHILD;
}

/* --tie-to-job: a pidfd of the job's process, which polls readable once it exits (Linux
 * 5.3). It works whatever the scheduler does with the job's other processes: under
 * Slurm's proctrack/linuxproc the supervisor, in a session of its own, would outlive it. */
static int job_watch(struct sup *u, struct hutch_error *err)
{
        const struct instance_spec *s = u->spec;
        unsigned long long t;
        if (s->job_pid <= 0)
                return 0;
        u->job_fd = pidfd_open_pid(s->job_pid);
        if (u->job_fd < 0 || proc_start_time(s->job_pid, &t) < 0 || t != s->job_pid_start)
                return hutch_err(err, -ESRCH, "cannot tie instance '%s' to batch job %s: its process %d is gone",
                                 s->name, s->job_id ? s->job_id : "?", (int) s->job_pid);
        u->st.job_pid = s->job_pid;
        if (epoll_add(u->epfd, u->job_fd, EV_JOB) < 0)
                return hutch_err_sys(err, -errno, "cannot set up the supervisor");
        return 0;
}

/* --ready notify: our socket, bound into the container at READY_NOTIFY_DST and named by
 * its NOTIFY_SOCKET (forced, as --env is). */
static int notify_setup(struct sup *u, struct hutch_error *err)
{
        if (u->spec->ready.kind != INSTANCE_READY_NOTIFY)
                return 0;
        int r = ready_notify_open(u->dir_fd, &u->notify_fd, &u->notify_path);
        if (r < 0)
                return hutch_err_sys(err, r, "cannot create the notify socket of instance '%s'", u->spec->name);
        if (epoll_add(u->epfd, u->notify_fd, EV_NOTIFY) < 0)
                return hutch_err_sys(err, -errno, "cannot set up the supervisor");
        char **env = u->spec->launch->env;
        for (size_t i = 0; env && env[i]; i++)
                if (strv_extend(&u->launch_env, env[i]) < 0)
                        return hutch_err(err, -ENOMEM, "out of memory");
        if (strv_extend(&u->launch_env, "NOTIFY_SOCKET=" READY_NOTIFY_DST) < 0)
                return hutch_err(err, -ENOMEM, "out of memory");
        return 0;
}

static int setup(struct sup *u, struct hutch_error *err)
{
        /* hold SUPERVISOR_DIR_FD now, so no fd opened below lands on it */
        int hold = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (hold < 0 || (hold != SUPERVISOR_DIR_FD && dup3(hold, SUPERVISOR_DIR_FD, O_CLOEXEC) < 0))
                return hutch_err_sys(err, -errno, "cannot set up the supervisor");
        if (hold != SUPERVISOR_DIR_FD)
                close(hold);
        int r = instance_claim(&u->spec->env, u->spec->name, u->spec->max_instances, &u->root_fd, &u->dir_fd,
                               &u->lock_fd, err);
        if (r < 0)
                return r;
        unlinkat(u->dir_fd, "state", 0); /* of a supervisor that died */
        if (dup3(u->dir_fd, SUPERVISOR_DIR_FD, O_CLOEXEC) < 0)
                return hutch_err_sys(err, -errno, "cannot keep the state folder open");
        if ((r = logs_prepare(u, err)) < 0)
                return r;
        const struct launch_spec *ls = u->spec->launch;
        /* the profile as the start read it, for `exec instance://` (instance_security_apply) */
        if (ls->seccomp_json &&
            (r = write_file_at(u->dir_fd, "seccomp.json", ls->seccomp_json, strlen(ls->seccomp_json), 0600)) < 0)
                return hutch_err_sys(err, r, "cannot keep the instance's seccomp profile");
        if (ls->n_overlays && (r = image_overlays_open(ls->overlays, ls->n_overlays, true, &u->ovl, err)) < 0)
                return r;
        char name[INSTANCE_NAME_MAX + 32];
        /* the supervisor's pid last: unique across the user's state roots, and whose
         * cgroup it is once the supervisor is gone (cgroup_orphans_clean) */
        snprintf(name, sizeof name, "hutch-%u-%s-%d", (unsigned) u->st.uid, u->spec->name, (int) getpid());
        if (u->spec->unit) {
                /* the unit's cgroup holds the limits (its properties) and the whole tree:
                 * read for stats, never created or removed here */
                u->cg_is_unit = cgroup_own(&u->cg) >= 0;
        } else if (ls->limits && cgroup_limits_any(ls->limits)) {
                if ((r = cgroup_create(ls->limits, ls->cgroup_parent, name, &u->cg, err)) < 0)
                        return r;
        } else {
                /* without limits a cgroup only serves `instance stats`: where none can be
                 * made (rootless, nothing delegated) the instance runs without one */
                struct cgroup_limits none;
                struct hutch_error ignored = HUTCH_ERROR_INIT;
                cgroup_limits_init(&none);
                (void) cgroup_create(&none, ls->cgroup_parent, name, &u->cg, &ignored);
        }
        if (u->cg.n_dirs && cgroup_to_string(&u->cg, &u->st.cgroup) < 0)
                return hutch_err(err, -ENOMEM, "out of memory");
        if (u->cg.n_dirs && !u->cg_is_unit) {
                r = cgroup_open_for_clone(&u->cg);
                if (r < 0 && r != -EOPNOTSUPP)
                        return hutch_err_sys(err, r, "cannot open cgroup '%s'", u->cg.dirs[0]);
                u->cg_fd = r;
        }
        sigset_t ss;
        sigemptyset(&ss);
        sigaddset(&ss, SIGCHLD);
        sigaddset(&ss, SIGTERM);
        sigaddset(&ss, SIGINT);
        sigaddset(&ss, SIGHUP);
        sigprocmask(SIG_BLOCK, &ss, NULL);
        signal(SIGPIPE, SIG_IGN);
        u->sigfd = signalfd(-1, &ss, SFD_CLOEXEC | SFD_NONBLOCK);
        u->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
        u->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (u->sigfd < 0 || u->timerfd < 0 || u->epfd < 0 || pipe2(u->out_pipe, O_CLOEXEC) < 0 ||
            pipe2(u->err_pipe, O_CLOEXEC) < 0 || pipe2(u->srv_pipe, O_CLOEXEC) < 0 ||
            (u->self_fd = pidfd_open_self()) < 0)
                return hutch_err_sys(err, -errno, "cannot set up the supervisor");
        fcntl(u->out_pipe[0], F_SETFL, O_NONBLOCK);
        fcntl(u->err_pipe[0], F_SETFL, O_NONBLOCK);
        fcntl(u->srv_pipe[0], F_SETFL, O_NONBLOCK);
        if (epoll_add(u->epfd, u->sigfd, EV_SIGNAL) < 0 || epoll_add(u->epfd, u->timerfd, EV_TIMER) < 0 ||
            epoll_add(u->epfd, u->out_pipe[0], EV_OUT) < 0 || epoll_add(u->epfd, u->err_pipe[0], EV_ERR) < 0 ||
            epoll_add(u->epfd, u->srv_pipe[0], EV_SERVER) < 0)
                return hutch_err_sys(err, -errno, "cannot set up the supervisor");
        if ((r = job_watch(u, err)) < 0 || (r = notify_setup(u, err)) < 0)
                return r;
        prctl(PR_SET_CHILD_SUBREAPER, 1);
        prctl(PR_SET_NAME, SUPERVISOR_COMM);
        openlog("hutch", LOG_PID, LOG_USER);
        struct passwd *pw = getpwuid(u->st.uid);
        snprintf(u->user, sizeof u->user, "%s", pw ? pw->pw_name : "");
        if (!pw)
                snprintf(u->user, sizeof u->user, "%u", (unsigned) u->st.uid);
        control_setup(u);
        return 0;
}

static void loop(struct sup *u)
{
        for (;;) {
                if (u->finishing && tree_gone(u))
                        return;
                struct epoll_event ev[8];
                int n = epoll_wait(u->epfd, ev, ELEMENTSOF(ev), -1);
                if (n < 0 && errno != EINTR)
                        return;
                for (int i = 0; i < n; i++)
                        switch (ev[i].data.u32) {
                        case EV_SIGNAL: on_signal(u); break;
                        case EV_OUT: drain(u->out_pipe[0], &u->out); break;
                        case EV_ERR: drain(u->err_pipe[0], &u->err); break;
                        case EV_TIMER: on_timer(u); break;
                        case EV_SERVER: on_server_report(u); break;
                        case EV_JOB: on_job_end(u); break;
                        case EV_NOTIFY: on_notify(u); break;
                        case EV_CONTROL: on_control(u); break;
                        case EV_ASK: on_ask(u); break;
                        }
        }
}

int instance_supervise(const struct instance_spec *spec, int sync_fd, struct hutch_error *err)
{
        /* a unit passes the socket as stdin: moved up, /dev/null in its place, so that no
         * fd made later lands on 0-2 (the launcher sets those up for the container) */
        if (sync_fd >= 0 && sync_fd <= 2) {
                int moved = fcntl(sync_fd, F_DUPFD_CLOEXEC, 10), null = open("/dev/null", O_RDWR | O_CLOEXEC);
                if (moved >= 0 && null >= 0 && dup2(null, sync_fd) >= 0)
                        sync_fd = moved;
                if (null >= 0)
                        close(null);
        }
        struct sup u = {
                .spec = spec, .sync_fd = sync_fd, .init = PIDREF_NULL, .server = PIDREF_NULL, .probe = PIDREF_NULL};
        fcntl(sync_fd, F_SETFD, FD_CLOEXEC);
        u.root_fd = u.dir_fd = u.lock_fd = u.epfd = u.sigfd = u.timerfd = u.job_fd = u.ctl_fd = u.ask_fd = -EBADF;
        u.out.fd = u.err.fd = u.out.dir_fd = -EBADF;
        u.out_pipe[0] = u.out_pipe[1] = u.err_pipe[0] = u.err_pipe[1] = -EBADF;
        u.srv_pipe[0] = u.srv_pipe[1] = u.self_fd = u.notify_fd = u.cg_fd = -EBADF;
        u.st.uid = spec->env.uid;
        u.st.supervisor = getpid();
        proc_start_time(u.st.supervisor, &u.st.supervisor_start);
        u.st.started = time(NULL);
        u.st.name = strdup(spec->name);
        u.st.job = strdup(spec->job_id ? spec->job_id : "");
        u.st.image = realpath(spec->launch->image, NULL);
        u.st.restart = strdup(spec->restart == RESTART_NO       ? "no"
                              : spec->restart == RESTART_ALWAYS ? "always"
                                                                : "on-failure");
        if (spec->restart == RESTART_ON_FAILURE && spec->max_restarts) {
                free(u.st.restart);
                if (asprintf(&u.st.restart, "on-failure:%u", spec->max_restarts) < 0)
                        u.st.restart = NULL;
        }
        if (!u.st.image)
                u.st.image = strdup(spec->launch->image);
        if (spec->launch->net && spec->launch->net->n_publish) {
                char ports[1024];
                net_ports_format(spec->launch->net, ports, sizeof ports);
                u.st.ports = strdup(ports);
        }
        if (instance_security_format(spec->launch, &u.st.security) < 0)
                u.st.security = NULL;
        const char *host_home = strv_env_get(spec->launch->host_env, "HOME");
        struct passwd *pw = host_home && *host_home ? NULL : getpwuid(getuid());
        u.st.home = runtime_home_inside(spec->launch, host_home && *host_home ? host_home : pw ? pw->pw_dir : "/");
        if (spec->unit) {
                u.st.keeper = strdup("systemd");
                u.st.unit = strdup(spec->unit);
        }
        int r = cgroup_limits_format(spec->launch->limits, &u.st.limits);
        r = (r < 0 || !u.st.name || !u.st.image || !u.st.restart || !u.st.job || !u.st.security)
                    ? hutch_err(err, -ENOMEM, "out of memory")
                    : 0;
        if (r >= 0)
                r = setup(&u, err);
        if (r >= 0) {
                struct hutch_error lerr = HUTCH_ERROR_INIT;
                r = container_start(&u, err);
                int lr = logs_open(&u, &lerr);
                note_ended_early(&u);
                if (r < 0) {
                        /* an image server's crash makes the launcher fail on EIO: its line,
                         * written before that EIO, says why */
                        on_server_report(&u);
                        if (u.server_failed)
                                *err = u.server_err;
                        else
                                note(&u, "%s", err->msg);
                } else if (lr < 0) {
                        *err = lerr;
                        r = lr;
                        (void) pidref_kill(&u.init, SIGKILL);
                }
                /* an init or FUSE server that got started leaves on its own: wait for it */
                while (r < 0 && (waitpid(-1, NULL, 0) > 0 || errno == EINTR))
                        ;
        }
        if (r < 0) {
                process_msg_fail(sync_fd, err);
        } else {
                loop(&u);
                drain(u.out_pipe[0], &u.out);
                drain(u.err_pipe[0], &u.err);
                tell_cli(&u, PROCESS_MSG_FAILED, -1, NULL);
                if (u.ready)
                        syslog(LOG_INFO, "instance %s (uid %u): gone", u.st.name, (unsigned) u.st.uid);
                r = u.exit_status;
        }
        if (u.cg_is_unit)
                cgroup_release(&u.cg);
        else if (u.cg.n_dirs)
                cgroup_destroy(&u.cg);
        if (u.dir_fd >= 0 && u.lock_fd >= 0)
                instance_dir_remove(u.root_fd, u.dir_fd, spec->name);
        int fds[] = {u.root_fd,     u.dir_fd,      u.lock_fd,     u.epfd,        u.sigfd,
                     u.timerfd,     u.out_pipe[0], u.out_pipe[1], u.err_pipe[0], u.err_pipe[1],
                     u.srv_pipe[0], u.srv_pipe[1], u.self_fd,     u.out.dir_fd,  u.sync_fd,
                     u.job_fd,      u.notify_fd,   u.cg_fd,       u.ctl_fd,      u.ask_fd};
        for (size_t i = 0; i < ELEMENTSOF(fds); i++)
                if (fds[i] >= 0)
                        close(fds[i]);
        sink_close(&u.out);
        sink_close(&u.err);
        pidref_done(&u.init);
        pidref_done(&u.server);
        pidref_done(&u.probe);
        image_overlays_close(u.ovl, spec->launch->n_overlays);
        instance_state_clear(&u.st);
        free(u.notify_path);
        strv_free(u.launch_env);
        return r;
}
