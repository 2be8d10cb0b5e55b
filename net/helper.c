/* hutch-net's work: wire a container's new network namespace to the host (pasta,
 * slirp4netns or a bridge), then watch the container and undo it all when it ends. It runs
 * detached, in the host's namespaces, as the caller. What it starts (pasta, slirp4netns) is
 * its child with PR_SET_PDEATHSIG, so a SIGKILL of the helper ends it too; the veth goes
 * with the container's namespace, and a bridge lease whose holder is gone is free again. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/nsfs.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "conf/conf.h"
#include "net-helper.h"
#include "util/util.h"

/* Tools are taken from the system's folders only, never from PATH. */
static const char *system_tool(const char *name, char *buf, size_t len)
{
        static const char *const dirs[] = {"/usr/bin", "/usr/sbin", "/bin", "/sbin"};
        for (size_t i = 0; i < ELEMENTSOF(dirs); i++) {
                snprintf(buf, len, "%s/%s", dirs[i], name);
                if (access(buf, X_OK) == 0)
                        return buf;
        }
        return NULL;
}

static bool same_ns(int fd, const char *mine)
{
        struct stat a, b;
        return fstat(fd, &a) == 0 && stat(mine, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev;
}

/* The last line a tool wrote on stderr (read from the pipe until EOF or 64 KiB), trimmed. */
static void last_line(int fd, char *buf, size_t len)
{
        char all[65536];
        size_t n = 0;
        ssize_t k;
        while (n < sizeof all - 1 && (k = read(fd, all + n, sizeof all - 1 - n)) > 0)
                n += (size_t) k;
        while (n && (all[n - 1] == '\n' || all[n - 1] == ' '))
                n--;
        all[n] = 0;
        char *l = strrchr(all, '\n');
        l = l ? l + 1 : all;
        size_t m = strlen(l) < len - 1 ? strlen(l) : len - 1;
        memcpy(buf, l, m);
        buf[m] = 0;
}

/* Start tool (argv) as our child, tied to us: PDEATHSIG, and the fds in keep (made
 * inheritable) plus its stderr on errfd. */
static pid_t tool_start(const char *path, char *const argv[], const int *keep, size_t n, int errfd)
{
        pid_t self = getpid(), pid = fork();
        if (pid != 0)
                return pid < 0 ? -errno : pid;
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != self)
                _exit(127);
        for (size_t i = 0; i < n; i++)
                fcntl(keep[i], F_SETFD, 0);
        if (errfd >= 0)
                dup2(errfd, STDERR_FILENO);
        signal(SIGPIPE, SIG_DFL); /* pasta refuses an ignored SIGPIPE */
        execv(path, argv);
        _exit(127);
}

/* The tool ended before it was ready: why, as it said it. */
static int tool_failed(struct helper *h, const char *tool, int errfd, struct hutch_error *err)
{
        char line[400];
        int ws = 0;
        if (h->tool > 0) {
                kill(h->tool, SIGKILL);
                waitpid(h->tool, &ws, 0);
                h->tool = 0;
        }
        last_line(errfd, line, sizeof line);
        return hutch_err(err, -EIO, "%s failed%s%s", tool, line[0] ? ": " : "", line);
}

static int pasta_start(struct helper *h, struct hutch_error *err)
{
        char path[64], netns[32], userns[32], pidf[32];
        char specs[2][NET_PUBLISH_MAX][96];
        char *argv[32 + 2 * NET_PUBLISH_MAX];
        size_t a = 0, nt = 0, nu = 0;
        int ready[2], errp[2];
        if (!system_tool("pasta", path, sizeof path))
                return hutch_err(err, -ENOENT, "network 'pasta' needs pasta (Debian package passt), not installed");
        if (pipe2(ready, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0)
                return hutch_err_sys(err, -errno, "cannot create a pipe");
        snprintf(netns, sizeof netns, "/proc/self/fd/%d", h->netns);
        snprintf(userns, sizeof userns, "/proc/self/fd/%d", h->userns);
        /* pasta writes its pid file once the namespace is wired: our readiness signal */
        snprintf(pidf, sizeof pidf, "/proc/self/fd/%d", ready[1]);
        argv[a++] = "pasta";
        argv[a++] = "--config-net";
        argv[a++] = "--foreground";
        argv[a++] = "--quiet";
        argv[a++] = "--pid";
        argv[a++] = pidf;
        argv[a++] = "--netns";
        argv[a++] = netns;
        if (!same_ns(h->userns, "/proc/self/ns/user")) {
                argv[a++] = "--userns";
                argv[a++] = userns;
        }
        if (getuid() == 0) {
                /* as root pasta would become nobody, who may not enter the namespace */
                argv[a++] = "--runas";
                argv[a++] = "0";
        }
        for (uint32_t i = 0; i < h->req.n_publish; i++) {
                const struct net_publish *p = &h->req.publish[i];
                char *s = p->udp ? specs[1][nu++] : specs[0][nt++];
                snprintf(s, 96, "%s/%u:%u", p->host_ip, p->host_port, p->port);
                argv[a++] = p->udp ? "-u" : "-t";
                argv[a++] = s;
        }
        /* only what is published: no automatic forwarding either way */
        if (!nt) {
                argv[a++] = "-t";
                argv[a++] = "none";
        }
        if (!nu) {
                argv[a++] = "-u";
                argv[a++] = "none";
        }
        argv[a++] = "-T";
        argv[a++] = "none";
        argv[a++] = "-U";
        argv[a++] = "none";
        argv[a] = NULL;
        int keep[] = {h->netns, h->userns, ready[1]};
        h->tool = tool_start(path, argv, keep, ELEMENTSOF(keep), errp[1]);
        close(ready[1]);
        close(errp[1]);
        if (h->tool < 0) {
                close(ready[0]);
                close(errp[0]);
                return hutch_err_sys(err, h->tool, "cannot start %s", path);
        }
        char buf[32];
        ssize_t n = read(ready[0], buf, sizeof buf);
        close(ready[0]);
        int r = n > 0 ? 0 : tool_failed(h, "pasta", errp[0], err);
        close(errp[0]);
        return r;
}

/* slirp4netns's API: one JSON request, one JSON answer. */
static int slirp_api(const char *sock_path, const char *req, char *ans, size_t len)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        if (strlen(sock_path) >= sizeof sa.sun_path)
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, sock_path, strlen(sock_path) + 1);
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0 || write_full(fd, req, strlen(req)) < 0)
                return -errno;
        shutdown(fd, SHUT_WR);
        size_t n = 0;
        ssize_t k;
        while (n < len - 1 && (k = read(fd, ans + n, len - 1 - n)) > 0)
                n += (size_t) k;
        ans[n] = 0;
        return 0;
}

static int slirp_forward(struct helper *h, const char *api, struct hutch_error *err)
{
        for (uint32_t i = 0; i < h->req.n_publish; i++) {
                const struct net_publish *p = &h->req.publish[i];
                char req[256], ans[512];
                snprintf(req, sizeof req,
                         "{\"execute\": \"add_hostfwd\", \"arguments\": {\"proto\": \"%s\", \"host_addr\": \"%s\", "
                         "\"host_port\": %u, \"guest_port\": %u}}",
                         p->udp ? "udp" : "tcp", p->host_ip, p->host_port, p->port);
                int r = slirp_api(api, req, ans, sizeof ans);
                if (r < 0)
                        return hutch_err_sys(err, r, "cannot reach slirp4netns's API socket");
                if (strstr(ans, "\"error\""))
                        return hutch_err(err, -EADDRINUSE, "slirp4netns cannot publish host port %s:%u/%s: %s",
                                         p->host_ip, p->host_port, p->udp ? "udp" : "tcp", ans);
        }
        return 0;
}

static int slirp_start(struct helper *h, struct hutch_error *err)
{
        char path[64], netns[32], userns[40], readyfd[24], exitfd[24], api[128];
        char *argv[24];
        size_t a = 0;
        int ready[2], errp[2], ex[2];
        if (!system_tool("slirp4netns", path, sizeof path))
                return hutch_err(err, -ENOENT, "network 'slirp4netns' needs slirp4netns, which is not installed");
        if (pipe2(ready, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0 || pipe2(ex, O_CLOEXEC) < 0)
                return hutch_err_sys(err, -errno, "cannot create a pipe");
        /* the API socket lives in a private folder for as long as the forwards take */
        snprintf(h->tmpdir, sizeof h->tmpdir, "/tmp/hutch-net.XXXXXX");
        if (!mkdtemp(h->tmpdir)) {
                h->tmpdir[0] = 0;
                return hutch_err_sys(err, -errno, "cannot create a folder for slirp4netns's socket");
        }
        snprintf(api, sizeof api, "%s/api.sock", h->tmpdir);
        snprintf(netns, sizeof netns, "/proc/self/fd/%d", h->netns);
        snprintf(userns, sizeof userns, "--userns-path=/proc/self/fd/%d", h->userns);
        snprintf(readyfd, sizeof readyfd, "--ready-fd=%d", ready[1]);
        /* slirp4netns ends when this pipe's other end (ours) closes */
        snprintf(exitfd, sizeof exitfd, "--exit-fd=%d", ex[0]);
        h->exit_fd = ex[1];
        argv[a++] = "slirp4netns";
        argv[a++] = "--configure";
        argv[a++] = "--mtu=65520";
        argv[a++] = "--disable-host-loopback";
        argv[a++] = "--netns-type=path";
        if (!same_ns(h->userns, "/proc/self/ns/user"))
                argv[a++] = userns;
        argv[a++] = readyfd;
        argv[a++] = exitfd;
        if (h->req.n_publish) {
                argv[a++] = "--api-socket";
                argv[a++] = api;
        }
        argv[a++] = netns;
        argv[a++] = "tap0";
        argv[a] = NULL;
        int keep[] = {h->netns, h->userns, ready[1], ex[0]};
        h->tool = tool_start(path, argv, keep, ELEMENTSOF(keep), errp[1]);
        close(ready[1]);
        close(errp[1]);
        close(ex[0]);
        if (h->tool < 0) {
                close(ready[0]);
                close(errp[0]);
                return hutch_err_sys(err, h->tool, "cannot start %s", path);
        }
        char buf[8];
        ssize_t n = read(ready[0], buf, sizeof buf);
        close(ready[0]);
        int r = n > 0 ? 0 : tool_failed(h, "slirp4netns", errp[0], err);
        close(errp[0]);
        if (r >= 0)
                r = slirp_forward(h, api, err);
        unlink(api);
        rmdir(h->tmpdir);
        h->tmpdir[0] = 0;
        return r;
}

static int wire(struct helper *h, struct hutch_error *err)
{
        switch (h->req.type) {
        case NET_TYPE_PASTA: return pasta_start(h, err);
        case NET_TYPE_SLIRP4NETNS: return slirp_start(h, err);
        case NET_TYPE_BRIDGE: return bridge_wire(h, err);
        default: return hutch_err(err, -EINVAL, "network type %d needs no helper", h->req.type);
        }
}

static void undo(struct helper *h)
{
        if (h->tool > 0) {
                kill(h->tool, SIGTERM);
                while (waitpid(h->tool, NULL, 0) < 0 && errno == EINTR)
                        ;
                h->tool = 0;
        }
        if (h->exit_fd >= 0)
                close(h->exit_fd);
        h->exit_fd = -EBADF;
        if (h->tmpdir[0]) {
                char api[160];
                snprintf(api, sizeof api, "%s/api.sock", h->tmpdir);
                unlink(api);
                rmdir(h->tmpdir);
        }
        if (h->req.type == NET_TYPE_BRIDGE)
                bridge_unwire(h);
}

/* Whether the process of pidfd lives in the network namespace netns: its pid from the
 * pidfd's fdinfo, its namespace from /proc, and the pidfd not yet readable after that (so
 * the pid was not reused meanwhile). */
static bool pidfd_in_netns(int pidfd, int netns)
{
        char p[64];
        _cleanup_free_ char *info = NULL;
        snprintf(p, sizeof p, "/proc/self/fdinfo/%d", pidfd);
        if (read_full_at(AT_FDCWD, p, 4096, &info, NULL) < 0)
                return false;
        const char *l = strstr(info, "\nPid:");
        int pid = l ? atoi(l + 5) : -1;
        struct stat a, b;
        snprintf(p, sizeof p, "/proc/%d/ns/net", pid);
        struct pollfd pp = {.fd = pidfd, .events = POLLIN};
        return pid > 0 && stat(p, &a) == 0 && fstat(netns, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev &&
               poll(&pp, 1, 0) == 0;
}

/* The container ends when owner's pidfd is readable; a socket closed without one means the
 * launcher failed (or was killed) before the container ran. The owner must live in the
 * namespace wired: a pidfd of another process (PID 1, say) would hold the network, its lease
 * and ports for as long as that runs. */
static void watch(int sock, int netns)
{
        char c;
        int pidfd = -EBADF;
        ssize_t n = recv_fds(sock, &c, 1, &pidfd, 1);
        if (n != 1 || c != 'w' || pidfd < 0)
                return;
        if (pidfd_in_netns(pidfd, netns)) {
                struct pollfd p = {.fd = pidfd, .events = POLLIN};
                while (poll(&p, 1, -1) < 0 && errno == EINTR)
                        ;
        }
        close(pidfd);
}

/* Run setuid root, the rest of the run is the caller's alone. */
static int drop_privileges(struct hutch_error *err)
{
        gid_t g = getgid();
        uid_t u = getuid();
        if (setresgid(g, g, g) < 0 || setresuid(u, u, u) < 0)
                return hutch_err_sys(err, -errno, "cannot drop hutch-net's privileges");
        return 0;
}

/* Run setuid root for a bridge: what the caller set for us that would stop us half-way as
 * root is reset: limits (a file-size limit would truncate the shared lease file and kill us
 * with SIGXFSZ; CPU, real-time CPU, memory), timers that survive exec (SIGALRM at a moment
 * of the caller's choosing), a real-time or idle scheduling policy and niceness; and a
 * terminal's signals no longer reach us. */
static void setuid_harden(void)
{
        static const int unlimited[] = {RLIMIT_FSIZE, RLIMIT_CPU, RLIMIT_RTTIME, RLIMIT_AS, RLIMIT_DATA};
        static const int ignored[] = {SIGXFSZ, SIGINT, SIGQUIT, SIGTSTP,   SIGTTIN,
                                      SIGTTOU, SIGHUP, SIGALRM, SIGVTALRM, SIGPROF};
        static const int timers[] = {ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF};
        struct itimerval off = {{0, 0}, {0, 0}};
        struct sched_param normal = {.sched_priority = 0};
        for (size_t i = 0; i < ELEMENTSOF(timers); i++)
                (void) setitimer(timers[i], &off, NULL);
        (void) sched_setscheduler(0, SCHED_OTHER, &normal);
        (void) setpriority(PRIO_PROCESS, 0, 0);
        struct rlimit inf = {RLIM_INFINITY, RLIM_INFINITY}, stack = {8 << 20, 8 << 20}, files = {1024, 1024},
                      core = {0, 0};
        for (size_t i = 0; i < ELEMENTSOF(unlimited); i++)
                (void) setrlimit(unlimited[i], &inf);
        (void) setrlimit(RLIMIT_STACK, &stack);
        (void) setrlimit(RLIMIT_NOFILE, &files);
        (void) setrlimit(RLIMIT_CORE, &core);
        for (size_t i = 0; i < ELEMENTSOF(ignored); i++)
                signal(ignored[i], SIG_IGN);
}

/* Run setuid root by a user: only a bridge needs root, and only as the system's files let
 * this user have it (the request rechecked, its networks the admin's); anything else runs
 * as the caller from here on. */
static int setuid_admit(struct helper *h, struct hutch_error *err)
{
        if (h->req.type != NET_TYPE_BRIDGE)
                return drop_privileges(err);
        setuid_harden();
        char netdir[PATH_MAX];
        struct hutch_conf conf;
        conf_defaults(&conf);
        int r = conf_load_system(&conf, HUTCH_CONF_PATH, err);
        if (r == -ENOENT)
                r = 0; /* the defaults: no bridge for users */
        if (r >= 0)
                r = net_request_recheck(&h->req, &conf, net_named_dir(netdir, sizeof netdir), err);
        conf_free(&conf);
        return r;
}

/* A user's namespace fd for a bridge: a network namespace, not ours, owned by a user
 * namespace the caller made (where the caller can do all we will do anyway but plug it into
 * the bridge). Then the helper becomes wholly root: the caller can no longer kill it, which
 * would leave the container's address free for another while the container still uses it. */
static int netns_check(int netns, struct hutch_error *err)
{
        uid_t owner = (uid_t) -1;
        if (ioctl(netns, NS_GET_NSTYPE) != CLONE_NEWNET)
                return hutch_err(err, -EINVAL, "the namespace to wire is not a network namespace");
        _cleanup_close_ int userns = ioctl(netns, NS_GET_USERNS);
        if (userns < 0 || ioctl(userns, NS_GET_OWNER_UID, &owner) < 0 || owner != getuid() ||
            same_ns(netns, "/proc/self/ns/net"))
                return hutch_err(err, -EPERM, "the network namespace to wire is not one of the caller's containers");
        if (setgroups(0, NULL) < 0 || setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)
                return hutch_err_sys(err, -errno, "cannot become root");
        return 0;
}

int net_helper_main(int sock, bool setuid_run)
{
        struct helper h = {.netns = -EBADF, .userns = -EBADF, .exit_fd = -EBADF, .lease_dir = -EBADF};
        struct hutch_error err = HUTCH_ERROR_INIT;
        struct net_wire_reply rep = {.err = HUTCH_ERROR_INIT};
        int fds[2] = {-EBADF, -EBADF};
        char c;
        prctl(PR_SET_NAME, "hutch-net");
        signal(SIGPIPE, SIG_IGN);
        if (recv(sock, &h.req, sizeof h.req, 0) != (ssize_t) sizeof h.req || h.req.n_publish > NET_PUBLISH_MAX ||
            h.req.n_bridge > NET_NETWORKS_MAX)
                return 1;
        int r = setuid_run ? setuid_admit(&h, &err) : 0;
        struct hutch_error ignored = HUTCH_ERROR_INIT;
        if (r < 0 && setuid_run && geteuid() == 0)
                (void) drop_privileges(&ignored); /* refused: nothing more as root */
        if (recv_fds(sock, &c, 1, fds, 2) != 1 || c != 'n' || fds[0] < 0 || fds[1] < 0)
                return 1;
        h.netns = fds[0];
        h.userns = fds[1];
        if (r >= 0 && setuid_run && h.req.type == NET_TYPE_BRIDGE) {
                r = netns_check(h.netns, &err);
                h.guard = true;
                if (r < 0 && geteuid() == 0)
                        (void) drop_privileges(&ignored);
        }
        if (r >= 0)
                r = wire(&h, &err);
        if (r < 0) {
                undo(&h);
                rep.err = err;
        }
        (void) !send(sock, &rep, sizeof rep, MSG_NOSIGNAL);
        /* the user namespace stays alive through the container, not through us; the net one
         * is held through the watch (the owner is checked to live in it), so its veth goes
         * with undo, not with the namespace */
        close(h.userns);
        if (r < 0) {
                close(h.netns);
                return 1;
        }
        watch(sock, h.netns);
        close(h.netns);
        undo(&h);
        return 0;
}
