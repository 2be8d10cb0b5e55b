/* The launcher's side of a private network: loopback up in the new namespace, the checks
 * made before anything starts (published ports free), and the client of the network helper
 * hutch-net, which stays in the host's namespaces to wire ours. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <limits.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "net-internal.h"
#include "util/log.h"
#include "util/process.h"
#include "util/util.h"

int net_loopback_up(struct hutch_error *err)
{
        _cleanup_close_ int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        struct ifreq ifr = {0};
        if (fd < 0)
                return hutch_err_sys(err, -errno, "cannot open a socket in the new network namespace");
        snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "lo");
        if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
                return hutch_err_sys(err, -errno, "cannot read the flags of lo");
        ifr.ifr_flags |= IFF_UP;
        if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
                return hutch_err_sys(err, -errno, "cannot bring lo up");
        return 0;
}

static int sockaddr_make(const char *ip, uint16_t port, struct sockaddr_storage *ss, socklen_t *len)
{
        struct sockaddr_in *a4 = (struct sockaddr_in *) ss;
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *) ss;
        memset(ss, 0, sizeof *ss);
        if (inet_pton(AF_INET, ip, &a4->sin_addr) == 1) {
                a4->sin_family = AF_INET;
                a4->sin_port = htons(port);
                *len = sizeof *a4;
                return AF_INET;
        }
        if (inet_pton(AF_INET6, ip, &a6->sin6_addr) == 1) {
                a6->sin6_family = AF_INET6;
                a6->sin6_port = htons(port);
                *len = sizeof *a6;
                return AF_INET6;
        }
        return -EINVAL;
}

int net_ports_check(const struct net_spec *s, struct hutch_error *err)
{
        for (size_t i = 0; i < s->n_publish; i++) {
                const struct net_publish *p = &s->publish[i];
                struct sockaddr_storage ss;
                socklen_t len;
                int af = sockaddr_make(p->host_ip, p->host_port, &ss, &len);
                if (af < 0)
                        return hutch_err(err, -EINVAL, "'%s' is not an IP address", p->host_ip);
                _cleanup_close_ int fd = socket(af, (p->udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0);
                int one = 1;
                /* as the helper binds it: a port in TIME_WAIT only is free */
                if (fd < 0 || (!p->udp && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0))
                        return hutch_err_sys(err, -errno, "cannot check host port %u", p->host_port);
                if (bind(fd, (struct sockaddr *) &ss, len) < 0) {
                        int e = errno;
                        if (e == EADDRINUSE)
                                return hutch_err(err, -EADDRINUSE, "host port %s:%u/%s is already in use", p->host_ip,
                                                 p->host_port, p->udp ? "udp" : "tcp");
                        return hutch_err_sys(err, -e, "cannot publish on host port %s:%u/%s", p->host_ip, p->host_port,
                                             p->udp ? "udp" : "tcp");
                }
        }
        return 0;
}

void net_address_get(char *buf, size_t len)
{
        struct ifaddrs *ifa = NULL;
        size_t o = 0;
        buf[0] = 0;
        if (getifaddrs(&ifa) < 0)
                return;
        /* getifaddrs lists addresses in interface index order: eth0 was made before eth1 */
        for (struct ifaddrs *i = ifa; i; i = i->ifa_next) {
                char a[INET_ADDRSTRLEN];
                if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || (i->ifa_flags & IFF_LOOPBACK))
                        continue;
                inet_ntop(AF_INET, &((struct sockaddr_in *) i->ifa_addr)->sin_addr, a, sizeof a);
                int n = snprintf(buf + o, len - o, "%s%s", o ? "," : "", a);
                if (n < 0 || (size_t) n >= len - o) {
                        buf[o] = 0; /* whole addresses only */
                        break;
                }
                o += (size_t) n;
        }
        freeifaddrs(ifa);
}

/* ---- the helper's client ---- */

void net_helper_close(struct net_helper *h)
{
        if (h->sock >= 0)
                close(h->sock);
        h->sock = -EBADF;
}

int net_helper_start(const struct net_spec *s, struct net_helper *h, struct hutch_error *err)
{
        char path[PATH_MAX];
        int sp[2];
        h->sock = -EBADF;
        if (!s || s->type == NET_TYPE_HOST || s->type == NET_TYPE_NONE)
                return 0;
        if (s->n_publish > NET_PUBLISH_MAX)
                return hutch_err(err, -E2BIG, "at most %d ports can be published", NET_PUBLISH_MAX);
        if (s->n_bridge > NET_NETWORKS_MAX)
                return hutch_err(err, -E2BIG, "at most %d networks can be joined", NET_NETWORKS_MAX);
        if (!libexec_program("hutch-net", path, sizeof path))
                return hutch_err(err, -ENOENT, "network '%s' needs hutch-net, which is not installed beside hutch",
                                 net_type_name(s->type));
        struct stat st;
        struct statvfs sv;
        if (s->type == NET_TYPE_BRIDGE && getuid() != 0 &&
            (stat(path, &st) < 0 || st.st_uid != 0 || !(st.st_mode & S_ISUID) || statvfs(path, &sv) < 0 ||
             (sv.f_flag & ST_NOSUID)))
                return hutch_err(err, -EPERM,
                                 "network '%s' is a bridge: for users it needs %s installed setuid root (the admin: "
                                 "chmod u+s, on a file system without nosuid)",
                                 s->bridge[0].name, path);
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0)
                return hutch_err_sys(err, -errno, "cannot create the network helper's socket");
        struct net_wire_req req = {
                .type = s->type, .n_bridge = (uint32_t) s->n_bridge, .n_publish = (uint32_t) s->n_publish};
        memcpy(req.bridge, s->bridge, s->n_bridge * sizeof *s->bridge);
        if (s->n_publish) /* no array at all without ports */
                memcpy(req.publish, s->publish, s->n_publish * sizeof *s->publish);
        /* the request goes first: it waits in the socket until the helper reads it */
        if (send(sp[1], &req, sizeof req, MSG_NOSIGNAL) != (ssize_t) sizeof req) {
                int e = -errno;
                close(sp[0]);
                close(sp[1]);
                return hutch_err_sys(err, e, "cannot talk to the network helper");
        }
        char *argv[] = {"hutch-net", "helper", NULL};
        int r = spawn_detached(path, argv, &sp[0], 1);
        close(sp[0]);
        if (r < 0) {
                close(sp[1]);
                return hutch_err_sys(err, r, "cannot start %s", path);
        }
        h->sock = sp[1];
        return 0;
}

int net_helper_wire(struct net_helper *h, struct hutch_error *err)
{
        if (h->sock < 0)
                return 0;
        _cleanup_close_ int netns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
        _cleanup_close_ int userns = open("/proc/self/ns/user", O_RDONLY | O_CLOEXEC);
        if (netns < 0 || userns < 0)
                return hutch_err_sys(err, -errno, "cannot open the new namespaces");
        int fds[] = {netns, userns};
        char go = 'n';
        if (send_fds(h->sock, &go, 1, fds, 2) < 0)
                return hutch_err_sys(err, -errno, "the network helper is gone");
        struct net_wire_reply rep;
        ssize_t n = recv(h->sock, &rep, sizeof rep, 0);
        if (n != (ssize_t) sizeof rep)
                return hutch_err(err, -EIO, "the network helper ended before the network was up");
        if (rep.err.code < 0) {
                *err = rep.err;
                return rep.err.code;
        }
        return 0;
}

int net_helper_watch(struct net_helper *h, pid_t owner, struct hutch_error *err)
{
        if (h->sock < 0)
                return 0;
        _cleanup_close_ int pidfd = pidfd_open_pid(owner);
        if (pidfd < 0) {
                net_helper_close(h);
                return hutch_err_sys(err, pidfd, "cannot watch process %d for the network helper", (int) owner);
        }
        char go = 'w';
        int r = send_fds(h->sock, &go, 1, &pidfd, 1);
        net_helper_close(h);
        if (r < 0)
                return hutch_err_sys(err, -errno, "the network helper is gone");
        return 0;
}
