/* Network namespaces: what --net, --network, -p/--publish, --network-args, --dns and
 * --add-host ask for (parsed and checked before anything starts), loopback-only namespaces
 * made in-process, and the network helper (hutch-net) that wires a namespace to the host with
 * pasta, slirp4netns or a bridge and undoes it when the container ends. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "conf/conf.h"
#include "util/error.h"

enum net_type {
        NET_TYPE_HOST = 0, /* no --net: the host's network, as Apptainer */
        NET_TYPE_NONE,     /* a new namespace with loopback up only */
        NET_TYPE_PASTA,
        NET_TYPE_SLIRP4NETNS,
        NET_TYPE_BRIDGE,
};
const char *net_type_name(enum net_type t);

/* -p [HOSTIP:]HOSTPORT:CPORT[/tcp|/udp] */
struct net_publish {
        char host_ip[46]; /* numeric, IPv4 or IPv6; 127.0.0.1 when not given */
        uint16_t host_port, port;
        bool udp;
};

/* A named network (/etc/hutch/network/NAME.conf) or the built-in bridge. */
struct net_bridge_conf {
        char name[64];   /* the network's name ("bridge" for the built-in one) */
        char bridge[16]; /* the bridge interface (IFNAMSIZ) */
        uint32_t subnet; /* host order */
        unsigned prefix; /* 8..30 */
        uint32_t gateway;
        bool masquerade;
        bool users; /* unprivileged users may use it */
};

/* --network A,B,…: at most this many bridge networks, eth0, eth1, … in list order */
#define NET_NETWORKS_MAX 8
/* The addresses of a container on every network, comma-separated (net_address_get). */
#define NET_ADDRS_LEN 128

struct net_spec {
        bool enabled; /* --net (or -p, which implies it): a network namespace of its own */
        enum net_type type;
        /* with NET_TYPE_BRIDGE: the networks in --network's order, one interface each; the
         * first has the default route and the published ports */
        struct net_bridge_conf bridge[NET_NETWORKS_MAX];
        size_t n_bridge;
        struct net_publish *publish;
        size_t n_publish;
        char **dns;       /* --dns IPs, in order */
        char **add_hosts; /* --add-host "NAME:IP" */
};
void net_spec_free(struct net_spec *s);

/* One -p/--publish value, appended to s. Port 0, > 65535, a malformed mapping, a host IP
 * that is not one: -EINVAL, err names the value. */
int net_publish_parse(const char *v, struct net_spec *s, struct hutch_error *err);
/* Whether word looks like a port mapping ("8080:80", "127.0.0.1:8080:80/tcp"), which is how
 * a "-p" followed by it is told from Apptainer's -p (--pid). */
bool net_publish_looks_like(const char *word);
/* --network-args "portmap=8080:80/tcp" (a comma list; other keys refused). */
int net_args_parse(const char *v, struct net_spec *s, struct hutch_error *err);
/* --dns IP[,IP] */
int net_dns_parse(const char *v, struct net_spec *s, struct hutch_error *err);
/* --add-host NAME:IP (IPv6 allowed after the first colon) */
int net_add_host_parse(const char *v, struct net_spec *s, struct hutch_error *err);
/* An IPv4 or IPv6 address in numeric form. */
bool net_ip_is_valid(const char *s);
/* "10.0.0.0/24" */
int net_cidr_parse(const char *s, uint32_t *ret_net, unsigned *ret_prefix);

/* The admin's folder of named networks, "network" beside the system hutch.conf, in buf. */
const char *net_named_dir(char *buf, size_t len);

/* The hutch.conf and named-network policy, resolved into s: list (--network's comma list,
 * NULL for the default) → s->type and s->bridge. netdir: where named networks are
 * (/etc/hutch/network). root: the caller is root. A list is of bridge networks only (none,
 * pasta and slirp4netns stand alone), each named once, on bridges and subnets of their own.
 * Unknown networks, a network the admin does not let users use, a privileged host port for
 * a user, a list that cannot be: -EINVAL/-EPERM with one line. */
int net_spec_resolve(struct net_spec *s, const char *list, const struct hutch_conf *conf, const char *netdir, bool root,
                     struct hutch_error *err);

/* Each published host port is free now (bound and released, as the helper will bind it):
 * -EADDRINUSE naming the port otherwise. */
int net_ports_check(const struct net_spec *s, struct hutch_error *err);

/* /etc/resolv.conf text for --dns; /etc/hosts text: base (the host's or the image's,
 * may be NULL), then the hostname on 127.0.1.1 and --add-host lines. */
int net_resolv_text(const struct net_spec *s, char **ret);
int net_hosts_text(const struct net_spec *s, const char *base, const char *hostname, char **ret);

/* In the new network namespace: bring loopback up. */
int net_loopback_up(struct hutch_error *err);

/* The IPv4 addresses of the interfaces other than lo in this network namespace, in
 * interface order, comma-separated ("" when none); buf of NET_ADDRS_LEN. */
void net_address_get(char *buf, size_t len);

/* "127.0.0.1:8080->80/tcp, ..." for instance list. */
void net_ports_format(const struct net_spec *s, char *buf, size_t len);

/* The network helper, for pasta, slirp4netns and bridge: hutch-net, started detached
 * before the launcher enters its namespaces (it must stay in the host's). */
struct net_helper {
        int sock; /* our end of its socket, or -EBADF */
};
#define NET_HELPER_NULL        \
        {                      \
                .sock = -EBADF \
        }
/* Start hutch-net for s (nothing for none or host). */
int net_helper_start(const struct net_spec *s, struct net_helper *h, struct hutch_error *err);
/* From inside the new user and network namespaces: hand them to the helper and wait until
 * the network is wired (or why it is not). */
int net_helper_wire(struct net_helper *h, struct hutch_error *err);
/* The container's lifetime to watch: the process whose end undoes everything (PID 1 of the
 * container, or the payload). Closes the socket. */
int net_helper_watch(struct net_helper *h, pid_t owner, struct hutch_error *err);
void net_helper_close(struct net_helper *h);

/* The helper's own side (hutch-net's main): serves the socket at fd, returns its exit code.
 * setuid_run: run setuid root by a user, for a bridge (else it drops to the caller at once). */
int net_helper_main(int fd, bool setuid_run);

/* Address leases of a bridge network: a file of "ADDR PID STARTTIME" lines under an OFD
 * lock, in dir (opened by the caller). A lease whose holder is gone is free again. */
int net_lease_take(int dirfd, const struct net_bridge_conf *b, pid_t holder, unsigned long long holder_start,
                   uint32_t *ret_addr, struct hutch_error *err);
int net_lease_release(int dirfd, const struct net_bridge_conf *b, uint32_t addr);
