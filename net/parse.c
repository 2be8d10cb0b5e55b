/* What users and admins write about networks, parsed and checked before anything starts:
 * published ports, Apptainer's --network-args portmap, --dns, --add-host, the --network
 * list against hutch.conf's policy and the named networks in /etc/hutch/network. Pure but
 * for the reads of those files and of ip_unprivileged_port_start. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "net-internal.h"
#include "net.h"
#include "util/log.h"
#include "util/util.h"

static const char *const type_names[] = {
        [NET_TYPE_HOST] = "host",     [NET_TYPE_NONE] = "none",
        [NET_TYPE_PASTA] = "pasta",   [NET_TYPE_SLIRP4NETNS] = "slirp4netns",
        [NET_TYPE_BRIDGE] = "bridge",
};

const char *net_type_name(enum net_type t)
{
        return (size_t) t < ELEMENTSOF(type_names) ? type_names[t] : "?";
}

void net_spec_free(struct net_spec *s)
{
        free(s->publish);
        s->publish = NULL;
        s->n_publish = 0;
        strv_free(s->dns);
        strv_free(s->add_hosts);
        s->dns = s->add_hosts = NULL;
}

bool net_ip_is_valid(const char *s)
{
        unsigned char buf[16];
        return s && (inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1);
}

static int port_parse(const char *s, size_t len, uint16_t *ret)
{
        char num[8];
        uint64_t v;
        if (len == 0 || len >= sizeof num)
                return -EINVAL;
        memcpy(num, s, len);
        num[len] = 0;
        int r = parse_u64_range(num, 1, 65535, &v);
        if (r < 0)
                return r;
        *ret = (uint16_t) v;
        return 0;
}

/* [HOSTIP:]HOSTPORT:CPORT[/tcp|/udp]; an IPv6 host address in brackets. */
static int publish_split(const char *v, struct net_publish *p)
{
        char buf[128];
        if (strlen(v) >= sizeof buf)
                return -EINVAL;
        snprintf(buf, sizeof buf, "%s", v);
        *p = (struct net_publish){.udp = false};
        char *proto = strchr(buf, '/');
        if (proto) {
                *proto++ = 0;
                if (!strcmp(proto, "udp"))
                        p->udp = true;
                else if (strcmp(proto, "tcp") != 0)
                        return -EINVAL;
        }
        char *last = strrchr(buf, ':');
        if (!last || port_parse(last + 1, strlen(last + 1), &p->port) < 0)
                return -EINVAL;
        *last = 0;
        char *hp = strrchr(buf, ':');
        const char *ip = "127.0.0.1";
        if (hp) {
                *hp++ = 0;
                ip = buf;
                size_t n = strlen(buf);
                if (n >= 2 && buf[0] == '[' && buf[n - 1] == ']') {
                        buf[n - 1] = 0;
                        ip = buf + 1;
                }
        } else
                hp = buf;
        if (port_parse(hp, strlen(hp), &p->host_port) < 0)
                return -ERANGE;
        if (!net_ip_is_valid(ip) || strlen(ip) >= sizeof p->host_ip)
                return -EADDRNOTAVAIL;
        memcpy(p->host_ip, ip, strlen(ip) + 1); /* length checked above */
        return 0;
}

bool net_publish_looks_like(const char *word)
{
        struct net_publish p;
        if (!word || !strchr(word, ':') || !strchr("0123456789[", word[0]))
                return false;
        /* a malformed mapping still counts as one (and is refused as such) when it is all
         * digits, dots, colons, brackets and a protocol */
        int r = publish_split(word, &p);
        return r == 0 || strspn(word, "0123456789.:[]abcdefABCDEF/tcpu") == strlen(word);
}

int net_publish_parse(const char *v, struct net_spec *s, struct hutch_error *err)
{
        struct net_publish p;
        int r = publish_split(v, &p);
        if (r == -EADDRNOTAVAIL)
                return hutch_err(err, -EINVAL, "'%s': the host address is not an IP address", v);
        if (r < 0)
                return hutch_err(err, -EINVAL,
                                 "'%s' is not a port mapping [HOSTIP:]HOSTPORT:PORT[/tcp|/udp] with ports 1-65535", v);
        for (size_t i = 0; i < s->n_publish; i++)
                if (s->publish[i].host_port == p.host_port && s->publish[i].udp == p.udp &&
                    !strcmp(s->publish[i].host_ip, p.host_ip))
                        return hutch_err(err, -EINVAL, "host port %u/%s is published twice", p.host_port,
                                         p.udp ? "udp" : "tcp");
        struct net_publish *n = realloc(s->publish, (s->n_publish + 1) * sizeof *n);
        if (!n)
                return hutch_err(err, -ENOMEM, "out of memory");
        n[s->n_publish++] = p;
        s->publish = n;
        s->enabled = true;
        return 0;
}

int net_args_parse(const char *v, struct net_spec *s, struct hutch_error *err)
{
        _cleanup_strv_ char **items = NULL;
        if (strsplit(v, ",;", &items) < 0)
                return hutch_err(err, -ENOMEM, "out of memory");
        for (char **i = items; i && *i; i++) {
                if (!startswith(*i, "portmap="))
                        return hutch_err(err, -EINVAL, "--network-args: '%s' is not portmap=HOSTPORT:PORT/tcp", *i);
                int r = net_publish_parse(*i + strlen("portmap="), s, err);
                if (r < 0)
                        return hutch_err_wrap(err, "--network-args '%s'", *i);
        }
        return 0;
}

int net_dns_parse(const char *v, struct net_spec *s, struct hutch_error *err)
{
        _cleanup_strv_ char **items = NULL;
        if (strsplit(v, ",", &items) < 0)
                return hutch_err(err, -ENOMEM, "out of memory");
        if (!items || !items[0])
                return hutch_err(err, -EINVAL, "--dns wants IP[,IP]");
        for (char **i = items; *i; i++) {
                if (!net_ip_is_valid(*i))
                        return hutch_err(err, -EINVAL, "--dns: '%s' is not an IP address", *i);
                if (strv_extend(&s->dns, *i) < 0)
                        return hutch_err(err, -ENOMEM, "out of memory");
        }
        return 0;
}

/* A host name as /etc/hosts takes it: letters, digits, '-', '.', '_'; no leading '-'. */
static bool is_host_name(const char *s, size_t n)
{
        if (n == 0 || n > 253 || s[0] == '-' || s[0] == '.')
                return false;
        for (size_t i = 0; i < n; i++)
                if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._", s[i]))
                        return false;
        return true;
}

int net_add_host_parse(const char *v, struct net_spec *s, struct hutch_error *err)
{
        const char *colon = strchr(v, ':');
        if (!colon || !is_host_name(v, colon - v))
                return hutch_err(err, -EINVAL, "--add-host wants NAME:IP, not '%s'", v);
        if (!net_ip_is_valid(colon + 1))
                return hutch_err(err, -EINVAL, "--add-host '%s': '%s' is not an IP address", v, colon + 1);
        if (strv_extend(&s->add_hosts, v) < 0)
                return hutch_err(err, -ENOMEM, "out of memory");
        return 0;
}

int net_cidr_parse(const char *s, uint32_t *ret_net, unsigned *ret_prefix)
{
        char buf[32];
        const char *slash = strchr(s, '/');
        uint64_t prefix;
        struct in_addr a;
        if (!slash || (size_t) (slash - s) >= sizeof buf)
                return -EINVAL;
        memcpy(buf, s, slash - s);
        buf[slash - s] = 0;
        if (inet_pton(AF_INET, buf, &a) != 1 || parse_u64_range(slash + 1, 8, 30, &prefix) < 0)
                return -EINVAL;
        uint32_t mask = ~0u << (32 - prefix);
        *ret_net = ntohl(a.s_addr) & mask;
        *ret_prefix = (unsigned) prefix;
        return 0;
}

/* One "key = value" line of a named network's file into b. */
static int bridge_key(struct net_bridge_conf *b, const char *key, const char *val, bool *has_gw)
{
        struct in_addr a;
        if (!strcmp(key, "type"))
                return !strcmp(val, "bridge") ? 0 : -EINVAL;
        if (!strcmp(key, "bridge")) {
                if (!*val || strlen(val) >= sizeof b->bridge || strpbrk(val, "/ \t:"))
                        return -EINVAL;
                snprintf(b->bridge, sizeof b->bridge, "%s", val);
                return 0;
        }
        if (!strcmp(key, "subnet"))
                return net_cidr_parse(val, &b->subnet, &b->prefix);
        if (!strcmp(key, "gateway")) {
                if (inet_pton(AF_INET, val, &a) != 1)
                        return -EINVAL;
                b->gateway = ntohl(a.s_addr);
                *has_gw = true;
                return 0;
        }
        if (!strcmp(key, "masquerade") || !strcmp(key, "users")) {
                bool v = !strcasecmp(val, "yes") || !strcasecmp(val, "true");
                if (!v && strcasecmp(val, "no") && strcasecmp(val, "false"))
                        return -EINVAL;
                *(!strcmp(key, "users") ? &b->users : &b->masquerade) = v;
                return 0;
        }
        return -ENOENT;
}

static char *trim(char *s)
{
        while (*s == ' ' || *s == '\t')
                s++;
        size_t n = strlen(s);
        while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
                s[--n] = 0;
        return s;
}

static bool gateway_fits(const struct net_bridge_conf *b)
{
        uint32_t mask = ~0u << (32 - b->prefix);
        return (b->gateway & mask) == b->subnet && b->gateway != b->subnet && b->gateway != (b->subnet | ~mask);
}

/* A named network: NAME.conf in netdir, "key = value" lines (type, bridge, subnet,
 * gateway, masquerade, users). */
static int named_network_load(const char *netdir, const char *name, struct net_bridge_conf *b, struct hutch_error *err)
{
        char path[512];
        _cleanup_free_ char *text = NULL;
        bool has_gw = false;
        if (!is_host_name(name, strlen(name)) || strlen(name) >= sizeof b->name)
                return hutch_err(err, -EINVAL, "unknown network '%s' (none, pasta, slirp4netns, bridge or a name)",
                                 name);
        snprintf(path, sizeof path, "%s/%s.conf", netdir, name);
        int r = read_regular_at(AT_FDCWD, path, 1 << 16, &text, NULL);
        if (r == -ENOENT)
                return hutch_err(err, -EINVAL,
                                 "unknown network '%s': no %s (none, pasta, slirp4netns, bridge or a name)", name,
                                 path);
        if (r < 0)
                return hutch_err_sys(err, r, "cannot read network '%s' (%s)", name, path);
        snprintf(b->name, sizeof b->name, "%s", name);
        snprintf(b->bridge, sizeof b->bridge, "hutch-%.9s", name);
        b->subnet = 0;
        unsigned line = 0;
        for (char *p = text, *nl; p && *p; p = nl) {
                nl = strchr(p, '\n');
                if (nl)
                        *nl++ = 0;
                line++;
                char *l = trim(p), *eq = strchr(l, '=');
                if (!*l || *l == '#')
                        continue;
                if (!eq)
                        return hutch_err(err, -EINVAL, "%s:%u: not a 'key = value' line", path, line);
                *eq = 0;
                char *key = trim(l), *val = trim(eq + 1);
                r = bridge_key(b, key, val, &has_gw);
                if (r == -ENOENT)
                        return hutch_err(err, -EINVAL, "%s:%u: unknown key '%s'", path, line, key);
                if (r < 0)
                        return hutch_err(err, -EINVAL, "%s:%u: bad value '%s' for '%s'", path, line, val, key);
        }
        if (!b->prefix)
                return hutch_err(err, -EINVAL, "%s names no subnet", path);
        if (!has_gw)
                b->gateway = b->subnet + 1;
        if (!gateway_fits(b))
                return hutch_err(err, -EINVAL, "%s: the gateway is not an address of the subnet", path);
        return 0;
}

static int builtin_bridge(const struct hutch_conf *conf, struct net_bridge_conf *b, struct hutch_error *err)
{
        const char *br = conf->net_bridge ? conf->net_bridge : "hutch0";
        const char *sub = conf->net_subnet ? conf->net_subnet : "10.89.0.0/24";
        snprintf(b->name, sizeof b->name, "bridge");
        if (!*br || strlen(br) >= sizeof b->bridge || strpbrk(br, "/ \t:"))
                return hutch_err(err, -EINVAL, "hutch.conf 'network bridge = %s' is not an interface name", br);
        snprintf(b->bridge, sizeof b->bridge, "%s", br);
        if (net_cidr_parse(sub, &b->subnet, &b->prefix) < 0)
                return hutch_err(err, -EINVAL,
                                 "hutch.conf 'network subnet = %s' is not an IPv4 subnet like 10.89.0.0/24", sub);
        b->gateway = b->subnet + 1;
        b->masquerade = conf->net_masquerade;
        return 0;
}

static enum net_type type_of(const char *name)
{
        for (size_t i = NET_TYPE_NONE; i < ELEMENTSOF(type_names); i++)
                if (!strcmp(name, type_names[i]))
                        return (enum net_type) i;
        return NET_TYPE_HOST; /* a named network */
}

/* Whether hutch.conf's 'network users allow' names network name. */
static bool user_allowed(const struct hutch_conf *conf, const char *name)
{
        _cleanup_strv_ char **allow = NULL;
        if (strsplit(conf->net_users_allow ? conf->net_users_allow : "none,pasta,slirp4netns", ", \t", &allow) < 0)
                return false;
        return strv_contains(allow, name);
}

/* The lowest port users may bind (net.ipv4.ip_unprivileged_port_start; 1024 when unreadable). */
static unsigned unprivileged_port_start(void)
{
        _cleanup_free_ char *t = NULL;
        uint64_t v;
        if (read_full_at(AT_FDCWD, "/proc/sys/net/ipv4/ip_unprivileged_port_start", 64, &t, NULL) < 0)
                return 1024;
        t[strcspn(t, "\n")] = 0;
        return parse_u64_range(t, 0, 65536, &v) == 0 ? (unsigned) v : 1024;
}

/* pasta when installed, else slirp4netns: -p without --network. */
static enum net_type usermode_default(void)
{
        return access("/usr/bin/pasta", X_OK) == 0 || access("/bin/pasta", X_OK) == 0 ? NET_TYPE_PASTA
                                                                                      : NET_TYPE_SLIRP4NETNS;
}

/* --network's list: one network alone, or bridge networks only (each its own veth), each
 * named once. */
static int list_check(char **names, const char *from, const char *list, struct hutch_error *err)
{
        size_t n = strv_length(names);
        if (n > NET_NETWORKS_MAX)
                return hutch_err(err, -EINVAL, "%s '%s': at most %d networks", from, list, NET_NETWORKS_MAX);
        for (size_t i = 0; i < n; i++) {
                for (size_t j = 0; j < i; j++)
                        if (!strcmp(names[i], names[j]))
                                return hutch_err(err, -EINVAL, "%s '%s': network '%s' is named twice", from, list,
                                                 names[i]);
                enum net_type t = type_of(names[i]);
                if (n > 1 && t != NET_TYPE_BRIDGE && t != NET_TYPE_HOST)
                        return hutch_err(err, -EINVAL,
                                         "%s '%s': '%s' cannot be joined with other networks (a list is of "
                                         "bridge networks only)",
                                         from, list, names[i]);
        }
        return 0;
}

static bool subnets_overlap(const struct net_bridge_conf *a, const struct net_bridge_conf *b)
{
        unsigned p = a->prefix < b->prefix ? a->prefix : b->prefix;
        uint32_t mask = ~0u << (32 - p);
        return (a->subnet & mask) == (b->subnet & mask);
}

/* The bridge network name (the built-in one or a named one), after those of s so far: on a
 * bridge and a subnet of its own, as two interfaces on one bridge or one subnet would leave
 * the container's routing to chance. */
static int bridge_add(struct net_spec *s, const char *name, const struct hutch_conf *conf, const char *netdir,
                      struct hutch_error *err)
{
        struct net_bridge_conf *b = &s->bridge[s->n_bridge];
        *b = (struct net_bridge_conf){.prefix = 0};
        int r = !strcmp(name, "bridge") ? builtin_bridge(conf, b, err) : named_network_load(netdir, name, b, err);
        if (r < 0)
                return r;
        for (size_t i = 0; i < s->n_bridge; i++) {
                if (!strcmp(s->bridge[i].bridge, b->bridge))
                        return hutch_err(err, -EINVAL, "networks '%s' and '%s' are both on bridge '%s'",
                                         s->bridge[i].name, b->name, b->bridge);
                if (subnets_overlap(&s->bridge[i], b))
                        return hutch_err(err, -EINVAL, "networks '%s' and '%s' have overlapping subnets",
                                         s->bridge[i].name, b->name);
        }
        s->n_bridge++;
        return 0;
}

/* The checks of published ports: where they can go in, and what users may bind. */
static int publish_check(const struct net_spec *s, enum net_type t, bool root, struct hutch_error *err)
{
        for (size_t i = 0; t == NET_TYPE_BRIDGE && i < s->n_publish; i++)
                if (strchr(s->publish[i].host_ip, ':'))
                        return hutch_err(
                                err, -EINVAL,
                                "network '%s' is a bridge, which publishes on IPv4 host addresses only, not '%s'",
                                s->bridge[0].name, s->publish[i].host_ip);
        if (t == NET_TYPE_NONE && s->n_publish > 0)
                return hutch_err(err, -EINVAL,
                                 "a port is published but network 'none' has no way in: use --network pasta, "
                                 "slirp4netns or bridge");
        /* from elsewhere a published port needs IPv4 forwarding on this host, which a user's
         * bridge turns on only where the admin let its network masquerade */
        for (size_t i = 0; !root && t == NET_TYPE_BRIDGE && !s->bridge[0].masquerade && i < s->n_publish; i++) {
                struct in_addr ip;
                if (inet_pton(AF_INET, s->publish[i].host_ip, &ip) == 1 && (ntohl(ip.s_addr) >> 24) != 127)
                        return hutch_err(err, -EPERM,
                                         "network '%s': a user's container publishes on loopback (127.0.0.0/8) only, "
                                         "not '%s', unless the network masquerades (the admin's 'masquerade = yes')",
                                         s->bridge[0].name, s->publish[i].host_ip);
        }
        if (!root) {
                unsigned low = unprivileged_port_start();
                for (size_t i = 0; i < s->n_publish; i++)
                        if (s->publish[i].host_port < low)
                                return hutch_err(err, -EPERM,
                                                 "host port %u is privileged (below %u): only root may publish it",
                                                 s->publish[i].host_port, low);
        }
        return 0;
}

const char *net_named_dir(char *buf, size_t len)
{
        const char *sys = HUTCH_CONF_PATH, *slash = strrchr(sys, '/');
        snprintf(buf, len, "%.*s/network", slash ? (int) (slash - sys) : 1, slash ? sys : ".");
        return buf;
}

int net_spec_resolve(struct net_spec *s, const char *list, const struct hutch_conf *conf, const char *netdir, bool root,
                     struct hutch_error *err)
{
        _cleanup_strv_ char **names = NULL;
        const char *from = list ? "--network" : "hutch.conf 'network default'";
        bool list_default = !list && !conf->net_default;
        if (!list)
                list = conf->net_default ? conf->net_default : "none";
        if (strsplit(list, ",", &names) < 0)
                return hutch_err(err, -ENOMEM, "out of memory");
        if (!names || !names[0])
                return hutch_err(err, -EINVAL, "%s names no network", from);
        int r = list_check(names, from, list, err);
        if (r < 0)
                return r;
        const char *chosen = names[0];
        enum net_type t = type_of(chosen);
        s->n_bridge = 0;
        if (t == NET_TYPE_BRIDGE || t == NET_TYPE_HOST) {
                t = NET_TYPE_BRIDGE;
                for (char **n = names; *n; n++)
                        if ((r = bridge_add(s, *n, conf, netdir, err)) < 0)
                                return r;
        }
        if (t == NET_TYPE_NONE && s->n_publish > 0 && list_default) {
                t = usermode_default(); /* -p without --network: user-mode networking publishes it */
                chosen = net_type_name(t);
        }
        /* users: each network the admin lets them use, in hutch.conf's list or (a named
         * bridge network) by its own file's 'users = yes'; a bridge also needs hutch-net
         * installed setuid root, which net_helper_start checks */
        for (size_t i = 0; !root && (i == 0 || t == NET_TYPE_BRIDGE) && names[i]; i++) {
                const char *name = t == NET_TYPE_BRIDGE ? names[i] : chosen;
                bool by_file = t == NET_TYPE_BRIDGE && s->bridge[i].users;
                if (!by_file && !user_allowed(conf, name))
                        return hutch_err(err, -EPERM,
                                         "network '%s' is not allowed for users by hutch.conf ('network users "
                                         "allow')%s",
                                         name,
                                         type_of(name) == NET_TYPE_HOST ? " nor by its file ('users = yes')" : "");
        }
        if ((r = publish_check(s, t, root, err)) < 0)
                return r;
        s->type = t;
        s->enabled = true;
        return 0;
}

int net_resolv_text(const struct net_spec *s, char **ret)
{
        size_t cap = 32;
        for (char **d = s->dns; d && *d; d++)
                cap += strlen(*d) + 16;
        char *t = malloc(cap), *p = t;
        if (!t)
                return -ENOMEM;
        p += sprintf(p, "# hutch --dns\n");
        for (char **d = s->dns; d && *d; d++)
                p += sprintf(p, "nameserver %s\n", *d);
        *ret = t;
        return 0;
}

int net_hosts_text(const struct net_spec *s, const char *base, const char *hostname, char **ret)
{
        size_t cap = (base ? strlen(base) : 0) + 128 + (hostname ? 2 * strlen(hostname) : 0);
        for (char **h = s->add_hosts; h && *h; h++)
                cap += strlen(*h) + 4;
        char *t = malloc(cap), *p = t;
        if (!t)
                return -ENOMEM;
        *p = 0;
        if (base && *base)
                p += sprintf(p, "%s%s", base, base[strlen(base) - 1] == '\n' ? "" : "\n");
        else
                p += sprintf(p, "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
        if (hostname && *hostname)
                p += sprintf(p, "127.0.1.1\t%s\n", hostname);
        for (char **h = s->add_hosts; h && *h; h++) {
                const char *c = strchr(*h, ':');
                p += sprintf(p, "%s\t%.*s\n", c + 1, (int) (c - *h), *h);
        }
        *ret = t;
        return 0;
}

void net_ports_format(const struct net_spec *s, char *buf, size_t len)
{
        size_t o = 0;
        buf[0] = 0;
        for (size_t i = 0; i < s->n_publish && o < len; i++) {
                const struct net_publish *p = &s->publish[i];
                bool v6 = strchr(p->host_ip, ':') != NULL;
                int n = snprintf(buf + o, len - o, "%s%s%s%s:%u->%u/%s", i ? "," : "", v6 ? "[" : "", p->host_ip,
                                 v6 ? "]" : "", p->host_port, p->port, p->udp ? "udp" : "tcp");
                if (n < 0)
                        break;
                o += (size_t) n;
        }
        if (o >= len && len > 4)
                strcpy(buf + len - 4, "...");
}

int net_request_recheck(struct net_wire_req *req, const struct hutch_conf *conf, const char *netdir,
                        struct hutch_error *err)
{
        struct net_spec s = {.type = NET_TYPE_HOST};
        char list[NET_NETWORKS_MAX * (sizeof req->bridge[0].name + 1)] = "";
        int r = 0;
        if (req->type != NET_TYPE_BRIDGE || req->n_bridge < 1 || req->n_bridge > NET_NETWORKS_MAX ||
            req->n_publish > NET_PUBLISH_MAX)
                return hutch_err(err, -EINVAL, "a malformed network request");
        for (uint32_t i = 0; i < req->n_bridge; i++) {
                char *name = req->bridge[i].name;
                name[sizeof req->bridge[i].name - 1] = 0;
                if (!name[0] || strchr(name, ','))
                        return hutch_err(err, -EINVAL, "a malformed network request");
                if (i)
                        strcat(list, ",");
                strcat(list, name);
        }
        /* each port as the user would have written it, through the same parser */
        for (uint32_t i = 0; r >= 0 && i < req->n_publish; i++) {
                struct net_publish *p = &req->publish[i];
                char v[96];
                p->host_ip[sizeof p->host_ip - 1] = 0;
                bool v6 = strchr(p->host_ip, ':') != NULL;
                snprintf(v, sizeof v, "%s%s%s:%u:%u/%s", v6 ? "[" : "", p->host_ip, v6 ? "]" : "", p->host_port,
                         p->port, p->udp ? "udp" : "tcp");
                r = net_publish_parse(v, &s, err);
        }
        if (r >= 0)
                r = net_spec_resolve(&s, list, conf, netdir, false, err);
        if (r >= 0 && (s.type != NET_TYPE_BRIDGE || s.n_bridge != req->n_bridge))
                r = hutch_err(err, -EINVAL, "a malformed network request");
        if (r >= 0) {
                memcpy(req->bridge, s.bridge, s.n_bridge * sizeof *s.bridge);
                if (s.n_publish)
                        memcpy(req->publish, s.publish, s.n_publish * sizeof *s.publish);
        }
        net_spec_free(&s);
        return r;
}
