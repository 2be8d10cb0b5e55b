/* Bridge networks (root, or a user through a setuid-root hutch-net): per network of a
 * container, the bridge with the gateway address (made on first use), a veth pair (host end
 * enslaved to the bridge, ethN in the container, in --network's order), an address from the
 * network's lease file; the default route through the first network — all with
 * libnl-route-3, in-process; the container's side through a netlink socket opened inside
 * its namespace. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/bridge.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/route.h>

#include "net-helper.h"
#include "util/util.h"

#define LEASE_DIR "/run/hutch/net"

static struct nl_sock *nl_open(void)
{
        /* callbacks of the default kind, whatever NLCB told libnl's constructor (hutch-net
         * may run setuid: the caller's environment chooses nothing) */
        struct nl_cb *cb = nl_cb_alloc(NL_CB_DEFAULT);
        struct nl_sock *sk = cb ? nl_socket_alloc_cb(cb) : NULL;
        if (cb)
                nl_cb_put(cb);
        if (sk && nl_connect(sk, NETLINK_ROUTE) < 0) {
                nl_socket_free(sk);
                return NULL;
        }
        return sk;
}

static int nl_fail(struct hutch_error *err, int nlerr, const char *what, const char *name)
{
        return hutch_err(err, -EIO, "cannot %s '%s': %s", what, name, nl_geterror(nlerr));
}

static struct nl_addr *v4_addr(uint32_t a, unsigned prefix)
{
        uint32_t be = htonl(a);
        struct nl_addr *n = nl_addr_build(AF_INET, &be, 4);
        if (n)
                nl_addr_set_prefixlen(n, (int) prefix);
        return n;
}

/* Add a to the interface ifindex; an address already there is fine. */
static int addr_add(struct nl_sock *sk, int ifindex, uint32_t a, unsigned prefix)
{
        struct rtnl_addr *ra = rtnl_addr_alloc();
        struct nl_addr *local = v4_addr(a, prefix);
        int r = -NLE_NOMEM;
        if (ra && local) {
                rtnl_addr_set_ifindex(ra, ifindex);
                rtnl_addr_set_local(ra, local);
                r = rtnl_addr_add(sk, ra, 0);
                if (r == -NLE_EXIST)
                        r = 0;
        }
        nl_addr_put(local);
        rtnl_addr_put(ra);
        return r;
}

static int link_up(struct nl_sock *sk, struct rtnl_link *l)
{
        struct rtnl_link *change = rtnl_link_alloc();
        if (!change)
                return -NLE_NOMEM;
        rtnl_link_set_flags(change, IFF_UP);
        int r = rtnl_link_change(sk, l, change, 0);
        rtnl_link_put(change);
        return r;
}

/* The bridge, made with the gateway address when missing (two containers racing: one
 * makes it, the other finds it). Its ifindex. */
static int bridge_ensure(struct nl_sock *sk, const struct net_bridge_conf *b, struct hutch_error *err)
{
        struct rtnl_link *l = NULL;
        int r = rtnl_link_get_kernel(sk, 0, b->bridge, &l);
        if (r == -NLE_OBJ_NOTFOUND || r == -NLE_NODEV) {
                r = rtnl_link_bridge_add(sk, b->bridge);
                if (r < 0 && r != -NLE_EXIST)
                        return nl_fail(err, r, "create the bridge", b->bridge);
                r = rtnl_link_get_kernel(sk, 0, b->bridge, &l);
        }
        if (r < 0)
                return nl_fail(err, r, "find the bridge", b->bridge);
        int ifindex = rtnl_link_get_ifindex(l);
        if (!rtnl_link_is_bridge(l)) {
                rtnl_link_put(l);
                return hutch_err(err, -EEXIST, "'%s' exists and is not a bridge", b->bridge);
        }
        r = addr_add(sk, ifindex, b->gateway, b->prefix);
        if (r >= 0 && !(rtnl_link_get_flags(l) & IFF_UP))
                r = link_up(sk, l);
        rtnl_link_put(l);
        if (r < 0)
                return nl_fail(err, r, "set up the bridge", b->bridge);
        return ifindex;
}

/* The host end of a veth carries its helper as its alias, "hutch-net PID START". */
#define VETH_ALIAS "hutch-net %d %llu"

/* Whether the helper pid (started at st; 0: any start) is known to be gone: an error that
 * is not "no such process" (out of fds, say) keeps what it holds. */
static bool helper_gone(int pid, unsigned long long st)
{
        unsigned long long now;
        int r = proc_start_time(pid, &now);
        return r == -ENOENT || r == -ESRCH || (r == 0 && st && now != st);
}

/* Delete the veths whose helper is gone (killed, or its cgroup killed): their lease is free
 * again, so their container must not keep the address on the bridge. Only root sets a host
 * link's alias, so no other process can pass for a helper here; a veth named as ours
 * without one is a helper's that died before it set it. */
static void veth_sweep(struct nl_sock *sk)
{
        struct nl_cache *cache = NULL;
        if (rtnl_link_alloc_cache(sk, AF_UNSPEC, &cache) < 0)
                return;
        for (struct nl_object *o = nl_cache_get_first(cache); o; o = nl_cache_get_next(o)) {
                struct rtnl_link *l = (struct rtnl_link *) o;
                const char *alias = rtnl_link_get_ifalias(l), *name = rtnl_link_get_name(l);
                int pid = 0, end = 0;
                unsigned long long st = 0;
                if (alias) {
                        if (sscanf(alias, VETH_ALIAS "%n", &pid, &st, &end) != 2 || alias[end] != 0)
                                continue;
                } else if (!name || sscanf(name, "hv%d%n", &pid, &end) != 1 || (name[end] != 0 && name[end] != '-')) {
                        continue;
                }
                if (pid > 0 && helper_gone(pid, st))
                        rtnl_link_delete(sk, l);
        }
        nl_cache_free(cache);
}

/* The pair, its host end detached and down until veth_plug: a user's container reaches the
 * bridge only once its guard rules are in (nat_add). */
static int veth_make(struct nl_sock *sk, struct helper *h, size_t i, unsigned long long st, struct hutch_error *err)
{
        struct helper_link *k = &h->link[i];
        char peer_name[16], alias[64];
        snprintf(peer_name, sizeof peer_name, "eth%zu", i);
        snprintf(alias, sizeof alias, VETH_ALIAS, (int) getpid(), st);
        struct rtnl_link *veth = rtnl_link_veth_alloc();
        if (!veth)
                return hutch_err(err, -ENOMEM, "out of memory");
        struct rtnl_link *peer = rtnl_link_veth_get_peer(veth);
        rtnl_link_set_name(veth, k->veth);
        rtnl_link_set_name(peer, peer_name);
        rtnl_link_set_ns_fd(peer, h->netns);
        /* the container's MAC follows from its address (net_veth_mac): what a user's guard
         * rules let through */
        unsigned char mac[6];
        net_veth_mac(k->addr, mac);
        struct nl_addr *lladdr = nl_addr_build(AF_LLC, mac, sizeof mac);
        if (lladdr) {
                rtnl_link_set_addr(peer, lladdr);
                nl_addr_put(lladdr);
        }
        int r = rtnl_link_add(sk, veth, NLM_F_CREATE | NLM_F_EXCL);
        rtnl_link_put(peer);
        rtnl_link_veth_release(veth);
        if (r < 0) {
                nl_fail(err, r, "create the veth pair", k->veth);
                k->veth[0] = 0;
                return err->code;
        }
        /* the kernel takes an alias in a change only, not with the link's creation */
        struct rtnl_link *now = NULL, *change = rtnl_link_alloc();
        r = change ? rtnl_link_get_kernel(sk, 0, k->veth, &now) : -NLE_NOMEM;
        if (r >= 0) {
                rtnl_link_set_ifalias(change, alias);
                r = rtnl_link_change(sk, now, change, 0);
        }
        rtnl_link_put(now);
        rtnl_link_put(change);
        return r < 0 ? nl_fail(err, r, "name the helper of veth", k->veth) : 0;
}

/* Inside the container's namespace: lo and ethI up, the address; the default route through
 * the first network's gateway. */
static int inside_configure(struct helper *h, size_t i, struct hutch_error *err)
{
        const struct net_bridge_conf *b = &h->req.bridge[i];
        struct nl_sock *sk = nl_open();
        struct rtnl_link *eth = NULL, *lo = NULL;
        struct rtnl_route *rt = NULL;
        struct nl_addr *gw = NULL, *dst = NULL;
        char name[16];
        snprintf(name, sizeof name, "eth%zu", i);
        int r = sk ? rtnl_link_get_kernel(sk, 0, name, &eth) : -NLE_NOMEM;
        if (r >= 0)
                r = rtnl_link_get_kernel(sk, 0, "lo", &lo);
        if (r >= 0)
                r = addr_add(sk, rtnl_link_get_ifindex(eth), h->link[i].addr, b->prefix);
        if (r >= 0)
                r = link_up(sk, lo);
        if (r >= 0)
                r = link_up(sk, eth);
        if (r >= 0 && i == 0) {
                struct rtnl_nexthop *nh = rtnl_route_nh_alloc();
                rt = rtnl_route_alloc();
                gw = v4_addr(b->gateway, 32);
                dst = nl_addr_build(AF_INET, NULL, 0);
                if (!nh || !rt || !gw || !dst) {
                        rtnl_route_nh_free(nh);
                        r = -NLE_NOMEM;
                } else {
                        nl_addr_set_prefixlen(dst, 0);
                        rtnl_route_set_family(rt, AF_INET);
                        rtnl_route_set_dst(rt, dst);
                        rtnl_route_nh_set_gateway(nh, gw);
                        rtnl_route_nh_set_ifindex(nh, rtnl_link_get_ifindex(eth));
                        rtnl_route_add_nexthop(rt, nh);
                        r = rtnl_route_add(sk, rt, NLM_F_CREATE);
                }
        }
        nl_addr_put(gw);
        nl_addr_put(dst);
        rtnl_route_put(rt);
        rtnl_link_put(eth);
        rtnl_link_put(lo);
        if (sk)
                nl_socket_free(sk);
        if (r < 0)
                return nl_fail(err, r, "configure the container's interface", name);
        return 0;
}

/* The netlink socket of the container's side is opened in its namespace: we enter it for
 * that and come back (a netlink socket stays in the namespace it was made in). */
static int inside(struct helper *h, size_t i, struct hutch_error *err)
{
        _cleanup_close_ int home = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
        if (home < 0 || setns(h->netns, CLONE_NEWNET) < 0)
                return hutch_err_sys(err, -errno, "cannot enter the container's network namespace");
        int r = inside_configure(h, i, err);
        if (setns(home, CLONE_NEWNET) < 0)
                return hutch_err_sys(err, -errno, "cannot return to the host's network namespace");
        return r;
}

/* The host end of network i's veth onto its bridge, and up. */
static int veth_plug(struct helper *h, size_t i, struct hutch_error *err)
{
        struct helper_link *k = &h->link[i];
        struct nl_sock *sk = nl_open();
        struct rtnl_link *now = NULL, *change = rtnl_link_alloc();
        int r = sk && change ? rtnl_link_get_kernel(sk, 0, k->veth, &now) : -NLE_NOMEM;
        if (r >= 0) {
                rtnl_link_set_master(change, k->master);
                rtnl_link_set_flags(change, IFF_UP);
                r = rtnl_link_change(sk, now, change, 0);
        }
        rtnl_link_put(now);
        rtnl_link_put(change);
        if (sk)
                nl_socket_free(sk);
        return r < 0 ? nl_fail(err, r, "plug into its bridge the veth", k->veth) : 0;
}

/* Network i: its lease, its bridge, its veth pair, its side inside. */
static int link_wire(struct helper *h, size_t i, unsigned long long st, struct hutch_error *err)
{
        const struct net_bridge_conf *b = &h->req.bridge[i];
        struct helper_link *k = &h->link[i];
        int r = net_lease_take(h->lease_dir, b, getpid(), st, &k->addr, err);
        if (r < 0) {
                k->addr = 0;
                return r;
        }
        struct nl_sock *sk = nl_open();
        if (!sk)
                return hutch_err(err, -EIO, "cannot open a netlink socket");
        /* hv<pid>, hv<pid>-1, …: 11 characters at most (pid_max 2^22) */
        int n = i == 0 ? snprintf(k->veth, sizeof k->veth, "hv%d", (int) getpid())
                       : snprintf(k->veth, sizeof k->veth, "hv%d-%zu", (int) getpid(), i);
        r = n > 0 && (size_t) n < sizeof k->veth
                    ? bridge_ensure(sk, b, err)
                    : hutch_err(err, -ENAMETOOLONG, "cannot name a veth for network %zu", i);
        /* after the lease: a holder found dead there is dead here too, so its veth goes
         * before its address serves another */
        if (r >= 0) {
                k->master = r;
                veth_sweep(sk);
                r = veth_make(sk, h, i, st, err);
        }
        nl_socket_free(sk);
        if (r >= 0)
                r = inside(h, i, err);
        return r;
}

int bridge_wire(struct helper *h, struct hutch_error *err)
{
        unsigned long long st;
        if (geteuid() != 0)
                return hutch_err(err, -EPERM,
                                 "network '%s' is a bridge, which only root can join (or users through a "
                                 "setuid-root hutch-net)",
                                 h->req.bridge[0].name);
        if (mkdir_p_at(AT_FDCWD, LEASE_DIR, 0700) < 0 && errno != EEXIST)
                return hutch_err_sys(err, -errno, "cannot create %s", LEASE_DIR);
        h->lease_dir = open(LEASE_DIR, O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (h->lease_dir < 0)
                return hutch_err_sys(err, -errno, "cannot open %s", LEASE_DIR);
        int r = proc_start_time(getpid(), &st);
        if (r < 0)
                return hutch_err_sys(err, r, "cannot read our own start time");
        /* a gone helper's veth first, then its rules (a guard goes after what it guards) */
        struct nl_sock *sk = nl_open();
        if (sk) {
                veth_sweep(sk);
                nl_socket_free(sk);
        }
        nat_sweep();
        for (size_t i = 0; r >= 0 && i < h->req.n_bridge; i++)
                r = link_wire(h, i, st, err);
        if (r >= 0)
                r = nat_add(h, err);
        for (size_t i = 0; r >= 0 && i < h->req.n_bridge; i++)
                r = veth_plug(h, i, err);
        /* half-way (the second network full, say): the first network's veth and lease go
         * now, not when hutch-net ends */
        if (r < 0)
                bridge_unwire(h);
        return r;
}

static void veth_delete(struct nl_sock *sk, const char *name)
{
        struct rtnl_link *l = rtnl_link_alloc();
        if (sk && l) {
                rtnl_link_set_name(l, name);
                rtnl_link_delete(sk, l); /* gone with the container's namespace already: fine */
        }
        rtnl_link_put(l);
}

void bridge_unwire(struct helper *h)
{
        nat_remove(h);
        struct nl_sock *sk = NULL;
        for (size_t i = 0; i < h->req.n_bridge && i < NET_NETWORKS_MAX; i++) {
                struct helper_link *k = &h->link[i];
                if (k->veth[0]) {
                        if (!sk)
                                sk = nl_open();
                        veth_delete(sk, k->veth);
                        k->veth[0] = 0;
                }
                if (k->addr && h->lease_dir >= 0)
                        net_lease_release(h->lease_dir, &h->req.bridge[i], k->addr);
                k->addr = 0;
        }
        if (sk)
                nl_socket_free(sk);
        if (h->lease_dir >= 0)
                close(h->lease_dir);
        h->lease_dir = -EBADF;
}
