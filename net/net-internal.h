/* Shared internals of net/: the messages between the launcher and hutch-net. */
#pragma once

#include "net.h"

#define NET_PUBLISH_MAX 32

/* launcher → helper, first (before the helper runs): what to wire. Then a one-byte 'n'
 * with the new namespaces' fds (net, user), answered by struct net_wire_reply; then a
 * one-byte 'w' with a pidfd of the process whose end undoes it all. */
struct net_wire_req {
        int type; /* enum net_type */
        struct net_bridge_conf bridge;
        uint32_t n_publish;
        struct net_publish publish[NET_PUBLISH_MAX];
};

struct net_wire_reply {
        struct hutch_error err; /* code 0: wired */
};
