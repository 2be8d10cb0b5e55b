/* hutch-net's own internals: the state of one wiring and the bridge (libnl) half of it. */
#pragma once

#include <sys/types.h>

#include "net-internal.h"

struct helper {
        struct net_wire_req req;
        int netns, userns; /* the container's, while wiring */
        pid_t tool;        /* pasta or slirp4netns, our child; 0 when none */
        int exit_fd;       /* slirp4netns's --exit-fd, our end */
        char tmpdir[64];   /* slirp4netns's API socket folder while it exists */
        /* bridge: one link per network, in the request's order */
        struct helper_link {
                uint32_t addr; /* leased, host order; 0 when none */
                int master;    /* its bridge's ifindex */
                char veth[16]; /* host end; "" when none */
        } link[NET_NETWORKS_MAX];
        bool guard;                   /* a user's (setuid): only its own address and MAC pass */
        int lease_dir;                /* the lease folder, while a lease is held */
        char nat_table[64];           /* our nftables table, while it exists */
        int port_fd[NET_PUBLISH_MAX]; /* the published host ports, held */
        size_t n_port_fd;
};

/* A veth pair per network: the host end on its bridge (made, with the gateway address, when
 * missing), ethN in the container with a leased address; the default route through the
 * first. Root. On failure half-way, what was made for the networks before is undone too. */
int bridge_wire(struct helper *h, struct hutch_error *err);
/* Undo every network's veth, lease and the table. */
void bridge_unwire(struct helper *h);

/* A bridge container's nftables tables, named after its helper: ip (DNAT of its published
 * ports, masquerading when the network asks for it) and, for a user's, netdev (its veths'
 * anti-spoofing, net_guard_rules); its host ports held; nothing when it needs none. Root. */
int nat_add(struct helper *h, struct hutch_error *err);
void nat_remove(struct helper *h);
/* Delete the tables whose holder (a hutch-net) is gone. */
void nat_sweep(void);
