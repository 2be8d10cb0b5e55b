/* Shared internals of net/: the messages between the launcher and hutch-net. */
#pragma once

#include "net.h"

#define NET_PUBLISH_MAX 32

/* launcher → helper, first (before the helper runs): what to wire. Then a one-byte 'n'
 * with the new namespaces' fds (net, user), answered by struct net_wire_reply; then a
 * one-byte 'w' with a pidfd of the process whose end undoes it all. */
struct net_wire_req {
        int type; /* enum net_type */
        struct net_bridge_conf bridge[NET_NETWORKS_MAX];
        uint32_t n_bridge;
        uint32_t n_publish;
        struct net_publish publish[NET_PUBLISH_MAX];
};

/* hutch-net run setuid root by a user (users' bridges): the caller's request checked again
 * against the admin's files, as net_spec_resolve checks a user's --network (the networks
 * allowed for users, privileged host ports), each published port parsed again from its text.
 * The networks' bridges, subnets and flags are replaced by what conf and netdir say: the
 * caller only names them. -EINVAL/-EPERM with one line. */
int net_request_recheck(struct net_wire_req *req, const struct hutch_conf *conf, const char *netdir,
                        struct hutch_error *err);

struct net_wire_reply {
        struct hutch_error err; /* code 0: wired */
};

/* ---- nftables (bridge networks): one table per container, named after the lease holder
 * (hutch-net's pid and start time), so a table whose holder died is known as stale ---- */
#define NET_NAT_TABLE_PREFIX "hutch_"
bool net_nat_table_name(char *buf, size_t len, pid_t holder, unsigned long long start);
/* "hutch_PID_START" → its parts; false for any other name */
bool net_nat_table_parse(const char *name, pid_t *ret_holder, unsigned long long *ret_start);
/* Whether a bridge network of a container needs rules in its table: masquerading on, or a
 * published port (n_publish: the ports published on this network). */
bool net_nat_needed(const struct net_bridge_conf *b, size_t n_publish);
/* The MAC of a container's end of its veth on a bridge, from its address: 0a:58:A:B:C:D. */
void net_veth_mac(uint32_t addr, unsigned char mac[6]);
/* A user's container on a bridge sends only as itself: in the netdev table of the same name,
 * an ingress chain on its veth's host end (veth, network i) lets through IPv4 from addr and
 * ARP saying addr, both from net_veth_mac(addr), and drops everything else (another address
 * or MAC, IPv6, router advertisements). -ENOBUFS when buf is too small. */
int net_guard_rules(char *buf, size_t len, const char *table, size_t i, const char *veth, uint32_t addr);
/* A port published on loopback needs route_localnet on its bridge, which would let every
 * container on it reach this host's loopback-only services (CVE-2020-8558): the bridge's
 * chain in a table of its own, kept as long as the sysctl (never swept), drops what arrives
 * from it for 127.0.0.0/8 but the replies of connections DNAT'd here. Idempotent. */
#define NET_LOCALNET_TABLE "hutch_localnet"
int net_localnet_rules(char *buf, size_t len, const char *bridge, int ifindex);
/* The table's commands for one network in nft's language: DNAT of each published port (from
 * elsewhere and from this host), masquerading of what loopback sends to the container, and of
 * what the container sends out of other interfaces when b->masquerade. Each network's
 * commands may follow another's in one table (add is a no-op for what exists). -EAFNOSUPPORT
 * for a host address that is not IPv4, -ENOBUFS when buf is too small. */
int net_nat_rules(char *buf, size_t len, const char *table, const struct net_bridge_conf *b, uint32_t addr,
                  const struct net_publish *pub, size_t n_publish);
