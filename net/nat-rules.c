/* The nftables rules of a bridge container, as nft's own command language: pure text, built
 * here (libc only, unit-tested) and run by hutch-net through libnftables (net/nat.c). */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "net-internal.h"
#include "util/util.h"

struct text {
        char *buf;
        size_t len, used;
        bool over;
};

static void put(struct text *t, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->buf + t->used, t->len - t->used, fmt, ap);
        va_end(ap);
        if (n < 0 || (size_t) n >= t->len - t->used)
                t->over = true;
        else
                t->used += (size_t) n;
}

bool net_nat_table_name(char *buf, size_t len, pid_t holder, unsigned long long start)
{
        int n = snprintf(buf, len, "%s%d_%llu", NET_NAT_TABLE_PREFIX, (int) holder, start);
        return n > 0 && (size_t) n < len;
}

bool net_nat_table_parse(const char *name, pid_t *ret_holder, unsigned long long *ret_start)
{
        int pid, end = 0;
        unsigned long long st;
        size_t pl = strlen(NET_NAT_TABLE_PREFIX);
        if (strncmp(name, NET_NAT_TABLE_PREFIX, pl) != 0 || name[pl] < '1' || name[pl] > '9')
                return false;
        if (sscanf(name + pl, "%d_%llu%n", &pid, &st, &end) != 2 || name[pl + (size_t) end] != 0 || pid <= 0)
                return false;
        *ret_holder = pid;
        *ret_start = st;
        return true;
}

bool net_nat_needed(const struct net_bridge_conf *b, size_t n_publish)
{
        return b->masquerade || n_publish > 0;
}

void net_veth_mac(uint32_t addr, unsigned char mac[6])
{
        const unsigned char m[6] = {0x0a, 0x58, addr >> 24, (addr >> 16) & 0xff, (addr >> 8) & 0xff, addr & 0xff};
        memcpy(mac, m, sizeof m);
}

int net_guard_rules(char *buf, size_t len, const char *table, size_t i, const char *veth, uint32_t addr)
{
        struct text t = {.buf = buf, .len = len};
        char a[INET_ADDRSTRLEN], mac[18];
        unsigned char m[6];
        uint32_t be = htonl(addr);
        if (!len || !inet_ntop(AF_INET, &be, a, sizeof a))
                return -EINVAL;
        net_veth_mac(addr, m);
        snprintf(mac, sizeof mac, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
        buf[0] = 0;
        put(&t, "add table netdev %s\n", table);
        put(&t, "add chain netdev %s g%zu { type filter hook ingress device \"%s\" priority filter; policy drop; }\n",
            table, i, veth);
        /* ether type named: a VLAN-tagged frame (its tag stripped before this hook) does
         * not pass as untagged IPv4 or ARP; no DHCP server either */
        put(&t, "add rule netdev %s g%zu ether type ip udp sport 67 drop\n", table, i);
        put(&t, "add rule netdev %s g%zu ether saddr %s ether type arp arp saddr ether %s arp saddr ip %s accept\n",
            table, i, mac, mac, a);
        put(&t, "add rule netdev %s g%zu ether saddr %s ether type ip ip saddr %s accept\n", table, i, mac, a);
        return t.over ? -ENOBUFS : 0;
}

int net_localnet_rules(char *buf, size_t len, const char *bridge, int ifindex)
{
        struct text t = {.buf = buf, .len = len};
        if (!len)
                return -EINVAL;
        buf[0] = 0;
        put(&t, "add table ip %s\n", NET_LOCALNET_TABLE);
        put(&t, "add chain ip %s b%d { type filter hook input priority filter; policy accept; }\n", NET_LOCALNET_TABLE,
            ifindex);
        put(&t, "flush chain ip %s b%d\n", NET_LOCALNET_TABLE, ifindex);
        put(&t, "add rule ip %s b%d iifname \"%s\" ip daddr 127.0.0.0/8 ct status dnat accept\n", NET_LOCALNET_TABLE,
            ifindex, bridge);
        put(&t, "add rule ip %s b%d iifname \"%s\" ip daddr 127.0.0.0/8 drop\n", NET_LOCALNET_TABLE, ifindex, bridge);
        return t.over ? -ENOBUFS : 0;
}

int net_nat_rules(char *buf, size_t len, const char *table, const struct net_bridge_conf *b, uint32_t addr,
                  const struct net_publish *pub, size_t n_publish)
{
        struct text t = {.buf = buf, .len = len};
        char a[INET_ADDRSTRLEN];
        uint32_t be = htonl(addr);
        if (!len || !inet_ntop(AF_INET, &be, a, sizeof a))
                return -EINVAL;
        buf[0] = 0;
        put(&t, "add table ip %s\n", table);
        if (n_publish) {
                /* prerouting: from elsewhere; output: from this host's own processes */
                put(&t, "add chain ip %s pre { type nat hook prerouting priority dstnat; policy accept; }\n", table);
                put(&t, "add chain ip %s out { type nat hook output priority -100; policy accept; }\n", table);
        }
        put(&t, "add chain ip %s post { type nat hook postrouting priority srcnat; policy accept; }\n", table);
        for (size_t i = 0; i < n_publish; i++) {
                const struct net_publish *p = &pub[i];
                struct in_addr ip;
                if (inet_pton(AF_INET, p->host_ip, &ip) != 1)
                        return -EAFNOSUPPORT;
                char match[64];
                /* 0.0.0.0: every address of this host */
                if (ip.s_addr == htonl(INADDR_ANY))
                        snprintf(match, sizeof match, "fib daddr type local");
                else
                        snprintf(match, sizeof match, "ip daddr %s", p->host_ip);
                const char *proto = p->udp ? "udp" : "tcp";
                for (int c = 0; c < 2; c++)
                        put(&t, "add rule ip %s %s %s %s dport %u dnat to %s:%u\n", table, c ? "out" : "pre", match,
                            proto, p->host_port, a, p->port);
        }
        /* a published port reached from this host's loopback: the reply must come back here */
        if (n_publish)
                put(&t, "add rule ip %s post ip saddr 127.0.0.0/8 ip daddr %s masquerade\n", table, a);
        if (b->masquerade)
                put(&t, "add rule ip %s post ip saddr %s oifname != \"%s\" masquerade\n", table, a, b->bridge);
        return t.over ? -ENOBUFS : 0;
}
