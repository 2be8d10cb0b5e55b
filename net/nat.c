/* A bridge container's nftables table (rules: net/nat-rules.c), run through libnftables, and
 * the host ports it publishes, held bound by hutch-net for the container's life so nothing
 * else takes them. The table is named after its holder (hutch-net's pid and start time):
 * one whose holder is gone is deleted by the next bridge container's hutch-net (nat_sweep),
 * as its lease is freed. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nftables/libnftables.h>

#include "net-helper.h"
#include "util/util.h"

/* Run cmds; on failure the first line nft wrote in why (NULL: don't care). */
static int nft_run(const char *cmds, char *why, size_t len, char **ret_out)
{
        struct nft_ctx *ctx = nft_ctx_new(NFT_CTX_DEFAULT);
        if (!ctx)
                return -ENOMEM;
        nft_ctx_buffer_output(ctx);
        nft_ctx_buffer_error(ctx);
        int r = nft_run_cmd_from_buffer(ctx, cmds) == 0 ? 0 : -EIO;
        if (r < 0 && why) {
                const char *e = nft_ctx_get_error_buffer(ctx);
                size_t n = e ? strcspn(e, "\n") : 0;
                n = n < len - 1 ? n : len - 1;
                memcpy(why, e ? e : "", n);
                why[n] = 0;
        }
        if (r == 0 && ret_out) {
                const char *o = nft_ctx_get_output_buffer(ctx);
                *ret_out = strdup(o ? o : "");
                if (!*ret_out)
                        r = -ENOMEM;
        }
        nft_ctx_free(ctx);
        return r;
}

static void sysctl_one(const char *path)
{
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd >= 0) {
                (void) !write(fd, "1", 1);
                close(fd);
        }
}

void nat_sweep(void)
{
        char *out = NULL;
        if (nft_run("list tables", NULL, 0, &out) < 0)
                return;
        char cmds[4096];
        size_t used = 0;
        for (char *save = NULL, *l = strtok_r(out, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
                char family[16], name[64];
                pid_t pid;
                unsigned long long st, now;
                if (sscanf(l, "table %15s %63s", family, name) != 2 ||
                    (strcmp(family, "ip") != 0 && strcmp(family, "netdev") != 0) ||
                    !net_nat_table_parse(name, &pid, &st))
                        continue;
                int r = proc_start_time(pid, &now);
                if (!(r == -ENOENT || r == -ESRCH || (r == 0 && now != st)))
                        continue; /* its container still runs, or we cannot tell */
                int n = snprintf(cmds + used, sizeof cmds - used, "delete table %s %s\n", family, name);
                if (n < 0 || (size_t) n >= sizeof cmds - used)
                        break;
                used += (size_t) n;
        }
        free(out);
        if (used)
                (void) nft_run(cmds, NULL, 0, NULL);
}

/* Hold each published host port: bound (and listening, for TCP) but never answered, so no
 * other program binds it while the DNAT rules send its traffic to the container. */
static int ports_hold(struct helper *h, struct hutch_error *err)
{
        for (uint32_t i = 0; i < h->req.n_publish; i++) {
                const struct net_publish *p = &h->req.publish[i];
                struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(p->host_port)};
                int one = 1;
                if (inet_pton(AF_INET, p->host_ip, &sa.sin_addr) != 1)
                        return hutch_err(err, -EAFNOSUPPORT, "a bridge publishes on IPv4 host addresses only, not '%s'",
                                         p->host_ip);
                int fd = socket(AF_INET, (p->udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0);
                if (fd < 0)
                        return hutch_err_sys(err, -errno, "cannot open a socket");
                h->port_fd[h->n_port_fd++] = fd;
                /* TCP only: a UDP port bound with SO_REUSEADDR could be bound again by another */
                if ((!p->udp && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) ||
                    bind(fd, (struct sockaddr *) &sa, sizeof sa) < 0 || (!p->udp && listen(fd, 1) < 0)) {
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

/* The sysctls the rules need in this network namespace: a port published on loopback reaches
 * the first bridge only with route_localnet, turned on once the bridge's guard against it
 * is in (net_localnet_rules); the containers' traffic out, and published ports reached from
 * elsewhere, need IPv4 forwarding. */
static int nat_sysctls(const struct helper *h, struct hutch_error *err)
{
        bool loopback = false, elsewhere = false;
        for (uint32_t i = 0; i < h->req.n_bridge; i++)
                elsewhere |= h->req.bridge[i].masquerade;
        for (uint32_t i = 0; i < h->req.n_publish; i++) {
                struct in_addr ip;
                inet_pton(AF_INET, h->req.publish[i].host_ip, &ip);
                if ((ntohl(ip.s_addr) >> 24) == 127 || ip.s_addr == htonl(INADDR_ANY))
                        loopback = true;
                if ((ntohl(ip.s_addr) >> 24) != 127)
                        elsewhere = true;
        }
        if (loopback) {
                char p[96], rules[1024], why[256];
                if (net_localnet_rules(rules, sizeof rules, h->req.bridge[0].bridge, h->link[0].master) < 0)
                        return hutch_err(err, -ENOBUFS, "cannot write the nftables rules");
                if (nft_run(rules, why, sizeof why, NULL) < 0)
                        return hutch_err(err, -EIO, "cannot add the loopback guard of bridge '%s'%s%s",
                                         h->req.bridge[0].bridge, why[0] ? ": " : "", why);
                snprintf(p, sizeof p, "/proc/sys/net/ipv4/conf/%s/route_localnet", h->req.bridge[0].bridge);
                sysctl_one(p);
        }
        if (elsewhere)
                sysctl_one("/proc/sys/net/ipv4/ip_forward");
        return 0;
}

/* One table for all of a container's networks: the published ports go to the first. */
int nat_add(struct helper *h, struct hutch_error *err)
{
        unsigned long long st;
        bool needed = false;
        for (uint32_t i = 0; i < h->req.n_bridge; i++)
                needed |= net_nat_needed(&h->req.bridge[i], i == 0 ? h->req.n_publish : 0);
        if (!needed && !h->guard)
                return 0;
        int r = ports_hold(h, err);
        if (r < 0)
                return r;
        if ((r = proc_start_time(getpid(), &st)) < 0)
                return hutch_err_sys(err, r, "cannot read our own start time");
        char table[64], why[256];
        if (!net_nat_table_name(table, sizeof table, getpid(), st))
                return hutch_err(err, -ENAMETOOLONG, "nftables table name too long");
        size_t len = 1536 * (size_t) h->req.n_bridge + 512 * (size_t) h->req.n_publish, used = 0;
        _cleanup_free_ char *cmds = malloc(len);
        if (!cmds)
                return hutch_err(err, -ENOMEM, "out of memory");
        for (uint32_t i = 0; i < h->req.n_bridge; i++) {
                const struct net_bridge_conf *b = &h->req.bridge[i];
                size_t np = i == 0 ? h->req.n_publish : 0;
                if (h->guard) {
                        if (net_guard_rules(cmds + used, len - used, table, i, h->link[i].veth, h->link[i].addr) < 0)
                                return hutch_err(err, -ENOBUFS, "cannot write the nftables rules");
                        used += strlen(cmds + used);
                }
                if (!net_nat_needed(b, np))
                        continue;
                r = net_nat_rules(cmds + used, len - used, table, b, h->link[i].addr, h->req.publish, np);
                if (r == -EAFNOSUPPORT)
                        return hutch_err(err, r, "a bridge publishes on IPv4 host addresses only");
                if (r < 0)
                        return hutch_err(err, r, "cannot write the nftables rules");
                used += strlen(cmds + used);
        }
        if (nft_run(cmds, why, sizeof why, NULL) < 0)
                return hutch_err(err, -EIO, "cannot add the nftables rules of network '%s'%s%s", h->req.bridge[0].name,
                                 why[0] ? ": " : "", why);
        snprintf(h->nat_table, sizeof h->nat_table, "%s", table);
        return nat_sysctls(h, err);
}

void nat_remove(struct helper *h)
{
        if (h->nat_table[0]) {
                /* one command each: a batch stops at a table that is not there */
                static const char *const families[] = {"ip", "netdev"};
                for (size_t i = 0; i < ELEMENTSOF(families); i++) {
                        char cmd[96];
                        snprintf(cmd, sizeof cmd, "delete table %s %s\n", families[i], h->nat_table);
                        (void) nft_run(cmd, NULL, 0, NULL);
                }
                h->nat_table[0] = 0;
        }
        for (size_t i = 0; i < h->n_port_fd; i++)
                close(h->port_fd[i]);
        h->n_port_fd = 0;
}
