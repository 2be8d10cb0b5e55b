/* The image server as processes: hutch-squashfs (or `hutch serve-image`) is a monitor
 * that forks the worker which parses the image and serves its FUSE mount (image/worker.c).
 * Both confine themselves once what they need is open (an allow-list of system calls, no
 * new privileges, no capabilities, no fd but their own). A crafted image may still crash
 * the worker: the monitor, holding a copy of the FUSE fd, then writes one line on the
 * report fd (the user's stderr, or an instance supervisor's pipe) and answers the mount's
 * requests with EIO until the owner or the mount is gone, so that the container sees an
 * I/O error, never a hang or a dead connection. */
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/fuse.h>
#include <linux/landlock.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "image-internal.h"
#include "util/log.h"
#include "util/process.h"
#include "util/util.h"

/* the server's fds, as image_serve_process sets them up */
enum { SERVE_SOCK_FD = 3, SERVE_OWNER_FD = 4, SERVE_REPORT_FD = 5 };

/* Once the owner has ended, the time the worker has to end on its own (it sees the same
 * pidfd) before it is killed: a worker looping on a crafted image must not outlive it. */
#define WORKER_GRACE_MS 1000

/* ---- Confinement. The allow-lists, sorted by name, come from `strace -f` of real runs
 * (batch and instance, SIF and squashfs, an idle server's release, the cache's writes and
 * trim) plus what their error paths call. Anything else kills the process (SCMP_ACT_KILL_PROCESS): the monitor
 * reports that as SIGSYS, a silent EPERM would leave the container to guess. */
/* clang-format off */
static const int worker_calls[] = {
        SCMP_SYS(brk),             /* malloc */
        SCMP_SYS(clock_gettime),   /* the cache's LRU times, where the vDSO cannot answer */
        SCMP_SYS(close),
        SCMP_SYS(dup),             /* libfuse's perror of a failed /dev/fuse read or write (glibc dups stderr) */
        SCMP_SYS(exit),
        SCMP_SYS(exit_group),
        SCMP_SYS(fstat),           /* cache entries */
        SCMP_SYS(futex),
        SCMP_SYS(geteuid),         /* a cache entry must be ours */
        SCMP_SYS(getgid),          /* squashfuse: the owner of what the image leaves unowned */
        SCMP_SYS(getpid),          /* a debug line */
        SCMP_SYS(getrandom),       /* AddressSanitizer's allocator (a sanitizer build's server) */
        SCMP_SYS(gettid),          /* a cache entry's temporary name */
        SCMP_SYS(getuid),
        SCMP_SYS(madvise),         /* malloc_trim */
        SCMP_SYS(mmap),            /* pushed files; large allocations; threads' stacks */
        SCMP_SYS(mprotect),        /* a thread's stack guard page */
        SCMP_SYS(mremap),
        SCMP_SYS(munmap),
        SCMP_SYS(newfstatat),
        SCMP_SYS(pipe2),           /* libfuse's pipe of a thread, for spliced replies (op_read) */
        SCMP_SYS(poll),
        SCMP_SYS(ppoll),
        SCMP_SYS(pread64),         /* the image; cached fragment blocks */
        SCMP_SYS(read),            /* /dev/fuse */
        SCMP_SYS(restart_syscall),
        SCMP_SYS(rseq),            /* a thread's start (glibc registers its restartable sequences) */
        SCMP_SYS(rt_sigprocmask),  /* a thread's start and end (glibc blocks signals around them) */
        SCMP_SYS(rt_sigreturn),
        SCMP_SYS(sched_yield),     /* a spin lock's back-off (AddressSanitizer's allocator) */
        SCMP_SYS(set_robust_list), /* a thread's start */
        SCMP_SYS(sigaltstack),     /* AddressSanitizer, at exit */
        SCMP_SYS(splice),          /* the image's data stored as is, to /dev/fuse through the pipe */
        SCMP_SYS(sysinfo),         /* qsort sizes its buffer by the memory (the cache's trim) */
        SCMP_SYS(write),           /* /dev/fuse; cache entries */
        SCMP_SYS(vmsplice),        /* a spliced reply's header, into the pipe */
        SCMP_SYS(writev),          /* /dev/fuse: replies and page-cache stores */
};

/* The worker's calls on the cache folder, allowed only where Landlock holds them beneath
 * it (serve_landlock_available): seccomp cannot tell a cache entry from the user's files. */
static const int cache_calls[] = {
        SCMP_SYS(getdents64),      /* the cache's trim */
        SCMP_SYS(openat),          /* cache entries, beneath the cache folder's fd */
        SCMP_SYS(renameat),        /* a cache entry into place */
        SCMP_SYS(renameat2),
        SCMP_SYS(unlinkat),        /* the cache's trim */
        SCMP_SYS(utimensat),       /* a cache hit is marked used */
};

/* fcntl commands the worker may use (libfuse's check of the /dev/fd/N it mounts, fdopendir
 * for the cache's trim). F_SETOWN, F_SETSIG and F_SETFL's O_ASYNC would have the kernel
 * signal any process of the user. */
static const int fcntl_cmds[] = {F_GETFD, F_SETFD, F_GETFL, F_SETPIPE_SZ /* libfuse grows its pipe */};

/* The monitor, once the worker has died: reports, answers EIO. */
static const int monitor_calls[] = {
        SCMP_SYS(close),
        SCMP_SYS(exit),
        SCMP_SYS(exit_group),
        SCMP_SYS(getrandom),       /* AddressSanitizer (a sanitizer build's server) */
        SCMP_SYS(gettid),          /* AddressSanitizer */
        SCMP_SYS(mmap),            /* the buffer for requests, once the worker is gone */
        SCMP_SYS(munmap),
        SCMP_SYS(poll),
        SCMP_SYS(ppoll),
        SCMP_SYS(read),            /* /dev/fuse */
        SCMP_SYS(restart_syscall),
        SCMP_SYS(rt_sigreturn),
        SCMP_SYS(sigaltstack),     /* AddressSanitizer, at exit */
        SCMP_SYS(write),           /* the report; /dev/fuse */
};
/* clang-format on */

/* No capability left, in any set. The bounding set can be changed with CAP_SETPCAP only
 * (as root): without it, one call instead of one per capability. */
static int caps_drop(void)
{
        struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
        struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3] = {0};
        if (syscall(SYS_capget, &h, d) < 0)
                return -errno;
        if (d[CAP_TO_INDEX(CAP_SETPCAP)].effective & CAP_TO_MASK(CAP_SETPCAP))
                for (int cap = 0; cap <= 63; cap++)
                        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno == EINVAL)
                                break;
        prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
        memset(d, 0, sizeof d);
        return syscall(SYS_capset, &h, d) < 0 ? -errno : 0;
}

/* The role's filter as a program for serve_confine; cache: the worker keeps the cache
 * folder (and Landlock holds it beneath it). The worker confines itself while the launcher
 * works up to the mount, off the start's path (libseccomp's first use probes the kernel's
 * features, which costs about as much as the kernel's attach: docs/performance.md). */
static int allow_on_arg(scmp_filter_ctx ctx, int call, unsigned arg, scmp_datum_t value)
{
        /* spelt out: SCMP_A0() leaves fields to the compiler, which clang's
         * -Wmissing-field-initializers refuses */
        struct scmp_arg_cmp cmp = {.arg = arg, .op = SCMP_CMP_EQ, .datum_a = value, .datum_b = 0};
        return seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, call, 1, &cmp);
}

static int allow_all(scmp_filter_ctx ctx, const int *calls, size_t n)
{
        int r = 0;
        for (size_t i = 0; i < n && r >= 0; i++)
                r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, calls[i], 0);
        return r;
}

int serve_filter_build(enum serve_role role, int recv_fd, int send_fd, bool cache, struct serve_filter *ret)
{
        bool worker = role == SERVE_WORKER;
        scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
        if (!ctx)
                return -ENOMEM;
        int p[2] = {-EBADF, -EBADF};
        int r = worker ? allow_all(ctx, worker_calls, ELEMENTSOF(worker_calls))
                       : allow_all(ctx, monitor_calls, ELEMENTSOF(monitor_calls));
        if (r >= 0 && worker && cache)
                r = allow_all(ctx, cache_calls, ELEMENTSOF(cache_calls));
        /* without the cache every open fails as Landlock would fail one outside it: libfuse's
         * mount opens /dev/null to make sure fds 0-2 exist, and copes with a refusal */
        if (r >= 0 && worker && !cache)
                r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EACCES), SCMP_SYS(openat), 0);
        /* the worker's threads (image/worker.c: threads_start): clone only as a thread, which
         * shares this filter and Landlock's domain; clone3, whose flags seccomp cannot see,
         * fails as on an older kernel, and glibc falls back to clone */
        if (r >= 0 && worker) {
                struct scmp_arg_cmp thread = {
                        .arg = 0, .op = SCMP_CMP_MASKED_EQ, .datum_a = CLONE_THREAD, .datum_b = CLONE_THREAD};
                r = seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1, &thread);
        }
        if (r >= 0 && worker)
                r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
        /* libfuse reports a failed read or write of /dev/fuse (ENODEV from a reply to a
         * RELEASE sent as the container ends) with perror, whose stream, dup'ed from
         * stderr, asks isatty (TCGETS) on its first write: "no terminal", else the worker
         * would die of SIGSYS on that line and be reported as crashed */
        if (r >= 0 && worker) {
                struct scmp_arg_cmp other = {.arg = 1, .op = SCMP_CMP_NE, .datum_a = FUSE_DEV_IOC_CLONE, .datum_b = 0};
                r = seccomp_rule_add_array(ctx, SCMP_ACT_ERRNO(ENOTTY), SCMP_SYS(ioctl), 1, &other);
        }
        /* the worker's own device of the mount (image/worker.c: fuse_clone) */
        if (r >= 0 && worker)
                r = allow_on_arg(ctx, SCMP_SYS(ioctl), 1, FUSE_DEV_IOC_CLONE);
        /* glibc's first thread installs its handler of SIGSETXID (SIGRTMIN + 1), which
         * carries set*id calls to every thread: that signal's only */
        if (r >= 0 && worker)
                r = allow_on_arg(ctx, SCMP_SYS(rt_sigaction), 0, 33);
        /* a thread's attributes ask for its CPU mask (AddressSanitizer's thread start, in a
         * sanitizer build's server): ENOSYS, which glibc takes as "no such feature" */
        if (r >= 0 && worker)
                r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(sched_getaffinity), 0);
        for (size_t i = 0; r >= 0 && worker && i < ELEMENTSOF(fcntl_cmds); i++)
                r = allow_on_arg(ctx, SCMP_SYS(fcntl), 1, (scmp_datum_t) fcntl_cmds[i]);
        if (r >= 0 && recv_fd >= 0)
                r = allow_on_arg(ctx, SCMP_SYS(recvmsg), 0, (scmp_datum_t) recv_fd);
        if (r >= 0 && send_fd >= 0)
                r = allow_on_arg(ctx, SCMP_SYS(sendmsg), 0, (scmp_datum_t) send_fd);
        /* the program is a few hundred bytes: it fits in a pipe's buffer */
        if (r >= 0 && pipe2(p, O_CLOEXEC) < 0)
                r = -errno;
        if (r >= 0)
                r = seccomp_export_bpf(ctx, p[1]);
        ssize_t got = r >= 0 ? read(p[0], ret->insn, sizeof ret->insn) : -1;
        if (r >= 0 && (got <= 0 || got % (ssize_t) sizeof ret->insn[0] || got == (ssize_t) sizeof ret->insn))
                r = -E2BIG;
        ret->len = r >= 0 ? (unsigned short) (got / (ssize_t) sizeof ret->insn[0]) : 0;
        for (int i = 0; i < 2; i++)
                if (p[i] >= 0)
                        close(p[i]);
        seccomp_release(ctx);
        return r;
}

bool serve_landlock_available(void)
{
        return syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION) >= 1;
}

/* Landlock (Linux 5.13, where the kernel enables it): no file is reached by path but
 * beneath dir_fd (none: -1), so that a worker the image took over cannot open the user's
 * files by an absolute path or "..", which a seccomp filter cannot tell from a cache
 * entry. Where the kernel has no Landlock the worker serves without the cache, and its
 * seccomp filter then fails every open (EACCES) and allows no rename or removal
 * (serve_filter_build). */
static int landlock_beneath(int dir_fd)
{
        long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
        if (abi < 1)
                return 0;
        struct landlock_ruleset_attr ra = {.handled_access_fs = (1ull << (abi >= 2 ? 14 : 13)) - 1};
        int rfd = (int) syscall(SYS_landlock_create_ruleset, &ra, sizeof ra, 0);
        if (rfd < 0)
                return -errno;
        struct landlock_path_beneath_attr pb = {.allowed_access =
                                                        LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_WRITE_FILE |
                                                        LANDLOCK_ACCESS_FS_READ_DIR | LANDLOCK_ACCESS_FS_REMOVE_FILE |
                                                        LANDLOCK_ACCESS_FS_MAKE_REG,
                                                .parent_fd = dir_fd};
        int r = 0;
        if ((dir_fd >= 0 && syscall(SYS_landlock_add_rule, rfd, LANDLOCK_RULE_PATH_BENEATH, &pb, 0) < 0) ||
            syscall(SYS_landlock_restrict_self, rfd, 0) < 0)
                r = -errno;
        close(rfd);
        return r;
}

int serve_confine(const struct serve_filter *f, const int *keep, size_t n_keep, int dir_fd)
{
        /* fds 0-2 are /dev/null (spawn_detached, spawn_child) */
        close_all_fds(3, keep, n_keep);
        /* no core file in the user's folders: the crash is reported, its memory is the image's */
        struct rlimit none = {0, 0};
        setrlimit(RLIMIT_CORE, &none);
        if (chdir("/") < 0)
                return -errno;
        int r = caps_drop();
        if (r < 0)
                return r;
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                return -errno;
        if ((r = landlock_beneath(dir_fd)) < 0)
                return r;
        struct sock_fprog prog = {.len = f->len, .filter = (struct sock_filter *) f->insn};
        if (f->len == 0)
                return -EINVAL;
        return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) < 0 ? -errno : 0;
}

/* ---- After the worker's crash: every request is answered with EIO (a FUSE_INIT still to
 * come is answered as a server would, so that the requests after it fail with EIO, not
 * with a refused connection), those the worker's threads died on first. */
#define EIO_BUF_SIZE ((1u << 20) + (64u << 10)) /* a request of libfuse's max_write fits */

static void reply(int fuse, const void *msg, size_t len)
{
        while (write(fuse, msg, len) < 0 && errno == EINTR)
                ;
}

static void reply_err(int fuse, uint64_t unique, int error)
{
        struct fuse_out_header h = {.len = sizeof h, .error = -error, .unique = unique};
        reply(fuse, &h, sizeof h);
}

static void reply_init(int fuse, const struct fuse_in_header *in, size_t len)
{
        const struct fuse_init_in *ii = (const void *) (in + 1);
        struct {
                struct fuse_out_header h;
                struct fuse_init_out o;
        } r = {.h = {.len = sizeof r, .unique = in->unique}};
        if (len < sizeof *in + 2 * sizeof(uint32_t)) {
                reply_err(fuse, in->unique, EIO);
                return;
        }
        r.o.major = FUSE_KERNEL_VERSION;
        r.o.minor = ii->minor < FUSE_KERNEL_MINOR_VERSION ? ii->minor : FUSE_KERNEL_MINOR_VERSION;
        r.o.max_readahead = len >= sizeof *in + 3 * sizeof(uint32_t) ? ii->max_readahead : 0;
        r.o.max_write = 4096;
        reply(fuse, &r, sizeof r);
}

/* Answer the worker's requests, then those that come. The ones the worker's device holds
 * (image/worker.c: fuse_clone) are answered through it: with EIO those in_flight names,
 * with ECONNABORTED by the kernel the rest as it is closed. Takes worker_dev. */
static void eio_serve(int fuse, int worker_dev, int owner, const volatile uint64_t *in_flight)
{
        for (unsigned i = 0; i < SERVE_THREADS_MAX; i++)
                if (in_flight[i])
                        reply_err(worker_dev, in_flight[i], EIO);
        if (worker_dev != fuse)
                close(worker_dev);
        char *buf = mmap(NULL, EIO_BUF_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (buf == MAP_FAILED)
                return;
        struct pollfd p[2] = {{.fd = owner, .events = POLLIN}, {.fd = fuse, .events = POLLIN}};
        for (;;) {
                if (poll(p, 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        break;
                }
                if (p[0].revents || (p[1].revents & (POLLERR | POLLHUP | POLLNVAL)))
                        break;
                ssize_t n = read(fuse, buf, EIO_BUF_SIZE);
                if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == ENOENT))
                        continue; /* ENOENT: the request was interrupted meanwhile */
                if (n < (ssize_t) sizeof(struct fuse_in_header))
                        break; /* ENODEV: the mount is gone */
                const struct fuse_in_header *in = (const void *) buf;
                switch (in->opcode) {
                case FUSE_INIT: reply_init(fuse, in, (size_t) n); break;
                case FUSE_FORGET:
                case FUSE_BATCH_FORGET:
                case FUSE_INTERRUPT: break; /* answered by nothing */
                default: reply_err(fuse, in->unique, EIO);
                }
        }
        munmap(buf, EIO_BUF_SIZE);
}

/* The one line: the image's path with control bytes escaped, so that it cannot split a log
 * line, and how the worker ended (path NULL: before the image came). */
static void report(int fd, const char *path, int wstatus)
{
        static const char confine[] = "hutch: error: the image server cannot confine itself (seccomp), so it "
                                      "serves nothing\n";
        char line[PATH_MAX * 4 + 128], why[64];
        if (!path) {
                (void) !write(fd, confine, sizeof confine - 1);
                return;
        }
        size_t k = (size_t) snprintf(line, sizeof line, "hutch: error: image '");
        for (const unsigned char *c = (const unsigned char *) path; *c && k < sizeof line - 100; c++)
                k += (size_t) snprintf(line + k, sizeof line - k, *c < 0x20 || *c == 0x7f ? "\\x%02x" : "%c", *c);
        if (WIFSIGNALED(wstatus)) {
                const char *abbrev = sigabbrev_np(WTERMSIG(wstatus));
                if (abbrev)
                        snprintf(why, sizeof why, "SIG%s", abbrev);
                else
                        snprintf(why, sizeof why, "signal %d", WTERMSIG(wstatus));
        } else
                snprintf(why, sizeof why, "status %d", WEXITSTATUS(wstatus));
        if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == SERVE_EXIT_UNREADABLE)
                k += (size_t) snprintf(line + k, sizeof line - k, "' is corrupt (its server cannot read it)\n");
        else
                k += (size_t) snprintf(line + k, sizeof line - k, "' is corrupt (server ended: %s)\n", why);
        if (k >= sizeof line)
                k = sizeof line - 1;
        (void) !write(fd, line, k);
}

static int worker_wait(pid_t worker)
{
        int ws;
        while (waitpid(worker, &ws, 0) < 0)
                if (errno != EINTR)
                        return 0;
        return ws;
}

/* The monitor's life: take its copy of the FUSE fd and the image's name from the worker
 * (none: nothing was handed over, the worker ends), then wait for the worker's end or the
 * owner's. Until the worker's end it reads nothing but what the worker sent before it
 * looked at the image, so it confines itself only then, off every start's path. */
static int monitor(pid_t worker, int ctl, volatile uint64_t *in_flight)
{
        char path[PATH_MAX];
        int dev[2] = {-EBADF, -EBADF}, wfd = pidfd_open_pid(worker);
        ssize_t n = recv_fds(ctl, path, sizeof path - 1, dev, 2);
        int fuse = dev[0];
        close(ctl);
        if (n <= 0 || dev[0] < 0 || dev[1] < 0 || wfd < 0) {
                /* nothing was handed over, or the worker could not confine itself */
                int ws = worker_wait(worker);
                if (WIFEXITED(ws) && WEXITSTATUS(ws) == SERVE_EXIT_CONFINE)
                        report(SERVE_REPORT_FD, NULL, ws);
                return 0;
        }
        path[n] = 0;
        struct pollfd p[2] = {{.fd = wfd, .events = POLLIN}, {.fd = SERVE_OWNER_FD, .events = POLLIN}};
        int ready;
        while ((ready = poll(p, 2, -1)) < 0 && errno == EINTR)
                ;
        if (ready > 0 && !p[0].revents && p[1].revents) {
                /* the owner is gone: the worker, which sees it too, ends; or is ended */
                while ((ready = poll(p, 1, WORKER_GRACE_MS)) < 0 && errno == EINTR)
                        ;
                if (ready == 0)
                        kill(worker, SIGKILL);
                worker_wait(worker);
                return 0;
        }
        int ws = worker_wait(worker);
        if (WIFEXITED(ws) && WEXITSTATUS(ws) == 0)
                return 0;
        /* confined before it reads the first request the container sends */
        struct serve_filter filter;
        int keep[] = {SERVE_OWNER_FD, SERVE_REPORT_FD, fuse, dev[1]};
        if (serve_filter_build(SERVE_MONITOR, -EBADF, -EBADF, false, &filter) < 0 ||
            serve_confine(&filter, keep, ELEMENTSOF(keep), -EBADF) < 0)
                return 1; /* the mount fails (ENOTCONN) once this ends */
        report(SERVE_REPORT_FD, path, ws);
        eio_serve(fuse, dev[1], SERVE_OWNER_FD, in_flight);
        return 0;
}

int image_serve_main(uint64_t cache_max)
{
        int type = 0;
        socklen_t len = sizeof type;
        if (getsockopt(SERVE_SOCK_FD, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_SEQPACKET)
                return 2; /* not started by image_serve_process() */
        signal(SIGINT, SIG_IGN);
        signal(SIGHUP, SIG_IGN);
        signal(SIGTERM, SIG_IGN);
        signal(SIGPIPE, SIG_IGN);
        /* the unique id of the request each of the worker's threads answers, for the monitor
         * to answer */
        volatile uint64_t *in_flight = mmap(NULL, SERVE_THREADS_MAX * sizeof *in_flight, PROT_READ | PROT_WRITE,
                                            MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        int ctl[2];
        if (in_flight == MAP_FAILED || socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ctl) < 0)
                return 1;
        pid_t worker = fork();
        if (worker == 0) {
                /* a crash ends the worker with its signal, reported as such: no handler (a
                 * sanitizer's) runs in it, whose calls the filter would refuse */
                static const int fatal[] = {SIGBUS, SIGFPE, SIGILL, SIGSEGV};
                for (size_t i = 0; i < ELEMENTSOF(fatal); i++)
                        signal(fatal[i], SIG_DFL);
                prctl(PR_SET_NAME, "hutch-squashfs");
                close(ctl[0]);
                close(SERVE_REPORT_FD);
                _exit(image_serve_worker(SERVE_SOCK_FD, SERVE_OWNER_FD, ctl[1], cache_max, in_flight));
        }
        prctl(PR_SET_NAME, SERVE_MONITOR_COMM);
        close(SERVE_SOCK_FD);
        close(ctl[1]);
        if (worker < 0)
                return 1;
        return monitor(worker, ctl[0], in_flight);
}

/* The server program: hutch-squashfs (image/serve-main.c: the server alone, linked
 * statically, so that it starts without the dynamic loader: the launcher waits for its
 * first answer), found as every program of hutch's is (libexec_program). Else this
 * binary's hidden verb. */
static const char *server_program(char *buf, size_t len)
{
        return libexec_program("hutch-squashfs", buf, len);
}

/* A fresh program, not a fork: a forked server shared the launcher's pages copy-on-write,
 * and the launcher, which goes on working for milliseconds after the early start, paid a
 * fault for each page it wrote (dear on virtual machines: docs/performance.md). */
int image_serve_process(int sock, int owner_fd, int report_fd, uint64_t cache_max, struct pidref *ret,
                        struct hutch_error *err)
{
        char path[PATH_MAX], max[32];
        const char *prog = server_program(path, sizeof path);
        snprintf(max, sizeof max, "%" PRIu64, cache_max);
        char *argv[] = {"hutch-squashfs", prog ? max : IMAGE_SERVE_VERB, prog ? NULL : max, NULL};
        int fds[] = {sock, owner_fd, report_fd};
        const char *exe = prog ? prog : "/proc/self/exe";
        int r = ret ? spawn_child(exe, argv, fds, ELEMENTSOF(fds), ret)
                    : spawn_detached(exe, argv, fds, ELEMENTSOF(fds));
        log_debug("image server: %s", prog ? prog : "hutch " IMAGE_SERVE_VERB);
        close(sock);
        if (r < 0)
                return hutch_err_sys(err, r, "cannot start the squashfuse server");
        return 0;
}
