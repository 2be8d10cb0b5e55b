/* Readiness of an instance (`instance start --ready`): what the option says, and the
 * supervisor's probes: a TCP connect inside the container's network namespace, a command
 * run in the instance as `exec instance://` runs it, and the sd_notify socket a payload
 * sends READY=1 to. Each probe is a child of the supervisor, so its loop never blocks. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "instanced-internal.h"
#include "util/cleanup.h"
#include "util/process.h"
#include "util/util.h"

/* inside the 300 s a systemd unit of hutch allows a start (TimeoutStartSec=) */
#define READY_TIMEOUT_MAX_S 240.0
#define TCP_CONNECT_TIMEOUT_MS 1000

int instance_ready_parse(const char *ready, const char *timeout, struct instance_ready *ret, struct hutch_error *err)
{
        struct instance_ready r = {.kind = INSTANCE_READY_NONE, .timeout_ms = INSTANCE_READY_TIMEOUT_DEFAULT_MS};
        uint64_t port;
        double s;
        if (!ready && timeout)
                return hutch_err(err, -EINVAL, "--ready-timeout needs --ready notify|tcp:PORT|exec:CMD");
        if (!ready) {
                *ret = r;
                return 0;
        }
        if (!strcmp(ready, "notify"))
                r.kind = INSTANCE_READY_NOTIFY;
        else if (startswith(ready, "tcp:")) {
                if (parse_u64_range(ready + 4, 1, 65535, &port) < 0)
                        return hutch_err(err, -EINVAL, "--ready tcp:PORT wants a port from 1 to 65535, not '%s'",
                                         ready + 4);
                r.kind = INSTANCE_READY_TCP;
                r.port = (unsigned) port;
        } else if (startswith(ready, "exec:")) {
                if (!ready[5 + strspn(ready + 5, " \t")])
                        return hutch_err(err, -EINVAL, "--ready exec:CMD wants a command after 'exec:'");
                r.kind = INSTANCE_READY_EXEC;
                r.cmd = ready + 5;
        } else
                return hutch_err(err, -EINVAL, "--ready takes notify, tcp:PORT or exec:CMD, not '%s'", ready);
        if (timeout) {
                if (parse_double_range(timeout, 0, READY_TIMEOUT_MAX_S, &s) < 0 || s <= 0)
                        return hutch_err(err, -EINVAL,
                                         "--ready-timeout wants seconds, more than 0 and at most %.0f, not '%s'",
                                         READY_TIMEOUT_MAX_S, timeout);
                r.timeout_ms = s * 1000 < 1 ? 1 : (unsigned) (s * 1000);
        }
        *ret = r;
        return 0;
}

/* The namespaces of pid that differ from ours, as setns flags. */
static int ns_differ(pid_t pid, int types)
{
        static const struct {
                int flag;
                const char *name;
        } ns[] = {{CLONE_NEWUSER, "user"}, {CLONE_NEWNET, "net"}};
        int flags = 0;
        for (size_t i = 0; i < ELEMENTSOF(ns); i++) {
                char p[64];
                struct stat a, b;
                if (!(types & ns[i].flag))
                        continue;
                snprintf(p, sizeof p, "/proc/%d/ns/%s", (int) pid, ns[i].name);
                if (stat(p, &a) < 0)
                        return -errno;
                snprintf(p, sizeof p, "/proc/self/ns/%s", ns[i].name);
                if (stat(p, &b) < 0)
                        return -errno;
                if (a.st_ino != b.st_ino || a.st_dev != b.st_dev)
                        flags |= ns[i].flag;
        }
        return flags;
}

/* In the probe child: join init's network namespace (through its user namespace, which
 * the caller owns; by init's pidfd, passed as fd 3, else opened here: our parent's child,
 * not reaped before we exit, so its pid is its own), connect to 127.0.0.1:port. */
static int tcp_probe_child(pid_t init, bool have_pidfd, unsigned port)
{
        int pidfd = have_pidfd ? 3 : pidfd_open_pid(init);
        int flags = ns_differ(init, CLONE_NEWUSER | CLONE_NEWNET);
        if (pidfd < 0 || flags < 0)
                return 2;
        /* setns(pidfd, ...) joins them all at once, the user namespace first (Linux 5.8) */
        if (flags && setns(pidfd, flags) < 0)
                return 2;
        int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (s < 0)
                return 2;
        struct timeval tv = {.tv_sec = TCP_CONNECT_TIMEOUT_MS / 1000,
                             .tv_usec = (TCP_CONNECT_TIMEOUT_MS % 1000) * 1000};
        setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t) port)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        return connect(s, (struct sockaddr *) &a, sizeof a) == 0 ? 0 : 1;
}

int ready_probe_start(const struct instance_spec *spec, const struct pidref *init, struct pidref *ret)
{
        const struct instance_ready *r = &spec->ready;
        if (r->kind == INSTANCE_READY_TCP) {
                bool have_pidfd = init->fd >= 0;
                pid_t p = fork_detached(&init->fd, have_pidfd ? 1 : 0);
                if (p < 0)
                        return p;
                if (p == 0)
                        _exit(tcp_probe_child(init->pid, have_pidfd, r->port));
                (void) pidref_set_pid(ret, p); /* our child, not reaped: the pid is its own */
                return 0;
        }
        if (r->kind == INSTANCE_READY_EXEC) {
                /* hutch itself joins the instance, as `hutch exec instance://NAME` does; its
                 * state is written before the first probe */
                char target[INSTANCE_NAME_MAX + 16];
                snprintf(target, sizeof target, "instance://%s", spec->name);
                char *argv[] = {"hutch", "--quiet", "exec", target, "/bin/sh", "-c", (char *) r->cmd, NULL};
                return spawn_child("/proc/self/exe", argv, NULL, 0, ret);
        }
        return -EINVAL;
}

int ready_notify_open(int dir_fd, int *ret_fd, char **ret_path)
{
        char p[64], real[PATH_MAX];
        snprintf(p, sizeof p, "/proc/self/fd/%d", dir_fd);
        ssize_t n = readlink(p, real, sizeof real - 16);
        if (n <= 0)
                return n < 0 ? -errno : -EIO;
        real[n] = 0;
        strcat(real, "/" READY_NOTIFY_NAME);
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        unlinkat(dir_fd, READY_NOTIFY_NAME, 0);
        /* through the folder's fd: the real path may be longer than sun_path */
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        snprintf(a.sun_path, sizeof a.sun_path, "/proc/self/fd/%d/" READY_NOTIFY_NAME, dir_fd);
        if (bind(fd, (struct sockaddr *) &a, sizeof a) < 0)
                return -errno;
        /* a payload running as another uid (--security uid:N) may send; the folder is the
         * caller's alone on the host */
        if (fchmodat(dir_fd, READY_NOTIFY_NAME, 0622, 0) < 0)
                return -errno;
        char *path = strdup(real);
        if (!path)
                return -ENOMEM;
        *ret_path = path;
        *ret_fd = steal_fd(&fd);
        return 0;
}

bool ready_notify_read(int fd)
{
        char buf[4096];
        ssize_t n;
        bool ready = false;
        while ((n = recv(fd, buf, sizeof buf - 1, MSG_DONTWAIT)) >= 0) {
                buf[n] = 0;
                for (char *line = buf, *end; *line; line = end) {
                        end = strchrnul(line, '\n');
                        if (*end)
                                *end++ = 0;
                        if (!strcmp(line, "READY=1"))
                                ready = true;
                }
        }
        return ready;
}
