/* net: published ports and portmap parsing, --dns/--add-host, the --network policy, named
 * networks, and bridge address leases (exhaustion, reuse after free, a dead holder's lease,
 * concurrent allocators in several processes). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "net/net-internal.h"
#include "net/net.h"
#include "util/util.h"

static void test_publish(void **state)
{
        (void) state;
        struct net_spec s = {0};
        struct hutch_error err = HUTCH_ERROR_INIT;
        assert_int_equal(net_publish_parse("8080:80", &s, &err), 0);
        assert_string_equal(s.publish[0].host_ip, "127.0.0.1");
        assert_true(s.publish[0].host_port == 8080 && s.publish[0].port == 80 && !s.publish[0].udp);
        assert_true(s.enabled);
        assert_int_equal(net_publish_parse("0.0.0.0:5353:53/udp", &s, &err), 0);
        assert_true(s.publish[1].udp && s.publish[1].host_port == 5353 && s.publish[1].port == 53);
        assert_string_equal(s.publish[1].host_ip, "0.0.0.0");
        assert_int_equal(net_publish_parse("[::1]:8443:443/tcp", &s, &err), 0);
        assert_string_equal(s.publish[2].host_ip, "::1");
        const char *bad[] = {"80",       "0:80",         "80:0",          "65536:80",    "80:70000",
                             "a:80",     "8080:80/sctp", "1.2.3:8080:80", "x.y:8080:80", "8080:80:",
                             ":8080:80", "8080::80",     "-1:80",         "+80:80",      "999999999999999999999:80"};
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                assert_int_equal(net_publish_parse(bad[i], &s, &err), -EINVAL);
                assert_non_null(strstr(err.msg, bad[i]));
        }
        assert_int_equal(net_publish_parse("8080:81", &s, &err), -EINVAL); /* host port twice */
        assert_int_equal(s.n_publish, 3);
        char buf[256];
        net_ports_format(&s, buf, sizeof buf);
        assert_string_equal(buf, "127.0.0.1:8080->80/tcp,0.0.0.0:5353->53/udp,[::1]:8443->443/tcp");
        assert_int_equal(net_args_parse("portmap=9090:90/tcp", &s, &err), 0);
        assert_int_equal(s.n_publish, 4);
        assert_int_equal(net_args_parse("portmap=9091:90/tcp,portmap=9092:91/udp", &s, &err), 0);
        assert_int_equal(s.n_publish, 6);
        assert_int_equal(net_args_parse("ipRange=10.0.0.0/24", &s, &err), -EINVAL);
        assert_int_equal(net_args_parse("portmap=9093", &s, &err), -EINVAL);
        net_spec_free(&s);
}

static void test_looks_like(void **state)
{
        (void) state;
        assert_true(net_publish_looks_like("8080:80"));
        assert_true(net_publish_looks_like("127.0.0.1:8080:80/udp"));
        assert_true(net_publish_looks_like("[::1]:8080:80"));
        assert_true(net_publish_looks_like("0:80")); /* malformed, still a mapping: refused as one */
        assert_false(net_publish_looks_like("image.sif"));
        assert_false(net_publish_looks_like("/tmp/x:y"));
        assert_false(net_publish_looks_like("docker://busybox:latest"));
        assert_false(net_publish_looks_like("8080"));
        assert_false(net_publish_looks_like(NULL));
}

static void test_dns_hosts(void **state)
{
        (void) state;
        struct net_spec s = {0};
        struct hutch_error err = HUTCH_ERROR_INIT;
        assert_int_equal(net_dns_parse("1.1.1.1,2001:db8::1", &s, &err), 0);
        assert_int_equal(net_dns_parse("1.1.1", &s, &err), -EINVAL);
        assert_int_equal(net_dns_parse(",", &s, &err), -EINVAL);
        assert_int_equal(net_add_host_parse("db:10.0.0.5", &s, &err), 0);
        assert_int_equal(net_add_host_parse("v6:fd00::5", &s, &err), 0);
        assert_int_equal(net_add_host_parse("db", &s, &err), -EINVAL);
        assert_int_equal(net_add_host_parse("db:300.0.0.1", &s, &err), -EINVAL);
        assert_int_equal(net_add_host_parse("-x:10.0.0.1", &s, &err), -EINVAL);
        assert_int_equal(net_add_host_parse("a b:10.0.0.1", &s, &err), -EINVAL);
        _cleanup_free_ char *r = NULL, *h = NULL, *h2 = NULL;
        assert_int_equal(net_resolv_text(&s, &r), 0);
        assert_string_equal(r, "# hutch --dns\nnameserver 1.1.1.1\nnameserver 2001:db8::1\n");
        assert_int_equal(net_hosts_text(&s, "127.0.0.1 localhost", "box", &h), 0);
        assert_string_equal(h, "127.0.0.1 localhost\n127.0.1.1\tbox\n10.0.0.5\tdb\nfd00::5\tv6\n");
        assert_int_equal(net_hosts_text(&s, NULL, NULL, &h2), 0);
        assert_non_null(strstr(h2, "localhost"));
        net_spec_free(&s);
}

static char tmpdir[64];

static void write_text(const char *name, const char *text)
{
        char p[256];
        snprintf(p, sizeof p, "%s/%s", tmpdir, name);
        assert_int_equal(write_file_at(AT_FDCWD, p, text, strlen(text), 0644), 0);
}

static void test_resolve(void **state)
{
        (void) state;
        struct hutch_conf conf;
        struct hutch_error err = HUTCH_ERROR_INIT;
        conf_defaults(&conf);
        snprintf(tmpdir, sizeof tmpdir, "/tmp/test_net.XXXXXX");
        assert_non_null(mkdtemp(tmpdir));
        write_text("lab.conf",
                   "# a lab network\ntype = bridge\nbridge = lab0\nsubnet = 10.77.0.0/28\nmasquerade = yes\n");
        write_text("bad.conf", "type = bridge\nsubnet = 10.77.0.0/33\n");
        write_text("gw.conf", "subnet = 10.77.0.0/24\ngateway = 10.78.0.1\n");
        write_text("key.conf", "subnet = 10.77.0.0/24\ncolour = blue\n");

        struct net_spec s = {0};
        assert_int_equal(net_spec_resolve(&s, NULL, &conf, tmpdir, false, &err), 0);
        assert_int_equal(s.type, NET_TYPE_NONE);
        assert_int_equal(net_spec_resolve(&s, "pasta", &conf, tmpdir, false, &err), 0);
        assert_int_equal(s.type, NET_TYPE_PASTA);
        assert_int_equal(net_spec_resolve(&s, "pasta,slirp4netns", &conf, tmpdir, false, &err), -EINVAL);
        assert_int_equal(net_spec_resolve(&s, "bridge", &conf, tmpdir, false, &err), -EPERM);
        assert_int_equal(net_spec_resolve(&s, "bridge", &conf, tmpdir, true, &err), 0);
        assert_int_equal(s.type, NET_TYPE_BRIDGE);
        assert_string_equal(s.bridge[0].bridge, "hutch0");
        assert_true(s.bridge[0].subnet == 0x0a590000 && s.bridge[0].prefix == 24 && s.bridge[0].gateway == 0x0a590001);
        assert_int_equal(net_spec_resolve(&s, "lab", &conf, tmpdir, true, &err), 0);
        assert_string_equal(s.bridge[0].bridge, "lab0");
        assert_true(s.bridge[0].masquerade && s.bridge[0].prefix == 28 && s.bridge[0].gateway == 0x0a4d0001);
        assert_int_equal(s.n_bridge, 1);
        assert_int_equal(net_spec_resolve(&s, "nosuch", &conf, tmpdir, true, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "unknown network 'nosuch'"));
        assert_int_equal(net_spec_resolve(&s, "../etc/x", &conf, tmpdir, true, &err), -EINVAL);
        assert_int_equal(net_spec_resolve(&s, "bad", &conf, tmpdir, true, &err), -EINVAL);
        assert_int_equal(net_spec_resolve(&s, "gw", &conf, tmpdir, true, &err), -EINVAL);
        assert_int_equal(net_spec_resolve(&s, "key", &conf, tmpdir, true, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "colour"));
        /* the admin's policy */
        conf.net_users_allow = strdup("none");
        assert_int_equal(net_spec_resolve(&s, "pasta", &conf, tmpdir, false, &err), -EPERM);
        assert_int_equal(net_spec_resolve(&s, "pasta", &conf, tmpdir, true, &err), 0);
        conf.net_default = strdup("slirp4netns");
        conf.net_users_allow[0] = 0;
        free(conf.net_users_allow);
        conf.net_users_allow = strdup("slirp4netns");
        assert_int_equal(net_spec_resolve(&s, NULL, &conf, tmpdir, false, &err), 0);
        assert_int_equal(s.type, NET_TYPE_SLIRP4NETNS);
        /* published ports: none has no way in; a privileged host port is root's */
        struct net_spec p = {0};
        assert_int_equal(net_publish_parse("80:80", &p, &err), 0);
        assert_int_equal(net_spec_resolve(&p, "slirp4netns", &conf, tmpdir, false, &err), -EPERM);
        assert_non_null(strstr(err.msg, "port 80"));
        assert_int_equal(net_spec_resolve(&p, "none", &conf, tmpdir, true, &err), -EINVAL);
        /* a bridge publishes (root) on IPv4 host addresses only */
        assert_int_equal(net_spec_resolve(&p, "bridge", &conf, tmpdir, true, &err), 0);
        assert_int_equal(net_publish_parse("[::1]:8080:80", &p, &err), 0);
        assert_int_equal(net_spec_resolve(&p, "bridge", &conf, tmpdir, true, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "IPv4 host addresses only"));
        net_spec_free(&p);
        net_spec_free(&s);
        conf_free(&conf);
}

/* hutch-net run setuid by a user: the request checked again, the networks the admin's. */
static void test_request_recheck(void **state)
{
        (void) state;
        struct hutch_conf conf;
        struct hutch_error err = HUTCH_ERROR_INIT;
        conf_defaults(&conf);
        write_text("lab.conf", "type = bridge\nbridge = lab0\nsubnet = 10.77.0.0/28\nusers = yes\n");
        write_text("side.conf", "bridge = side0\nsubnet = 10.78.0.0/24\n");
        struct net_wire_req req = {.type = NET_TYPE_BRIDGE, .n_bridge = 1};
        /* the built-in bridge: not for users unless hutch.conf says so */
        snprintf(req.bridge[0].name, sizeof req.bridge[0].name, "bridge");
        assert_int_equal(net_request_recheck(&req, &conf, tmpdir, &err), -EPERM);
        assert_non_null(strstr(err.msg, "not allowed for users"));
        conf.net_users_allow = strdup("none, bridge");
        /* what the caller says of the bridge is replaced by the admin's */
        snprintf(req.bridge[0].bridge, sizeof req.bridge[0].bridge, "evil0");
        req.bridge[0].subnet = 0x0a630000;
        req.bridge[0].masquerade = true;
        assert_int_equal(net_request_recheck(&req, &conf, tmpdir, &err), 0);
        assert_string_equal(req.bridge[0].bridge, "hutch0");
        assert_true(req.bridge[0].subnet == 0x0a590000 && !req.bridge[0].masquerade);
        /* a named network: by its file's 'users = yes', or not at all */
        snprintf(req.bridge[0].name, sizeof req.bridge[0].name, "lab");
        assert_int_equal(net_request_recheck(&req, &conf, tmpdir, &err), 0);
        assert_string_equal(req.bridge[0].bridge, "lab0");
        snprintf(req.bridge[0].name, sizeof req.bridge[0].name, "side");
        assert_int_equal(net_request_recheck(&req, &conf, tmpdir, &err), -EPERM);
        req.n_bridge = 2;
        snprintf(req.bridge[0].name, sizeof req.bridge[0].name, "bridge");
        snprintf(req.bridge[1].name, sizeof req.bridge[1].name, "side");
        assert_int_equal(net_request_recheck(&req, &conf, tmpdir, &err), -EPERM);
        assert_non_null(strstr(err.msg, "'side'"));
        req.n_bridge = 1;
        /* published ports: parsed again from their text, privileged ones refused */
        req.n_publish = 1;
        snprintf(req.publish[0].host_ip, sizeof req.publish[0].host_ip, "127.0.0.1");
        req.publish[0].host_port = 8080;
        req.publish[0].port = 80;
        assert_int_equal(net_request_recheck(&req, &conf, tmpdir, &err), 0);
        req.publish[0].host_port = 80;
        assert_int_equal(net_request_recheck(&req, &conf, tmpdir, &err), -EPERM);
        req.publish[0].host_port = 8080;
        /* elsewhere than loopback: only on a network that masquerades (forwarding on) */
        snprintf(req.publish[0].host_ip, sizeof req.publish[0].host_ip, "0.0.0.0");
        assert_int_equal(net_request_recheck(&req, &conf, tmpdir, &err), -EPERM);
        assert_non_null(strstr(err.msg, "loopback"));
        write_text("lab.conf", "type = bridge\nbridge = lab0\nsubnet = 10.77.0.0/28\nusers = yes\nmasquerade = yes\n");
        snprintf(req.bridge[0].name, sizeof req.bridge[0].name, "lab");
        assert_int_equal(net_request_recheck(&req, &conf, tmpdir, &err), 0);
        snprintf(req.bridge[0].name, sizeof req.bridge[0].name, "bridge");
        snprintf(req.publish[0].host_ip, sizeof req.publish[0].host_ip, "127.0.0.1");
        snprintf(req.publish[0].host_ip, sizeof req.publish[0].host_ip, "1.2.3.4\"; flush ruleset");
        assert_int_equal(net_request_recheck(&req, &conf, tmpdir, &err), -EINVAL);
        memset(req.publish[0].host_ip, 'x', sizeof req.publish[0].host_ip); /* no NUL */
        assert_int_equal(net_request_recheck(&req, &conf, tmpdir, &err), -EINVAL);
        req.publish[0].port = 0;
        snprintf(req.publish[0].host_ip, sizeof req.publish[0].host_ip, "127.0.0.1");
        assert_int_equal(net_request_recheck(&req, &conf, tmpdir, &err), -EINVAL);
        req.n_publish = 0;
        /* malformed: no network, too many, an unterminated or empty name, another type */
        req.n_bridge = 0;
        assert_int_equal(net_request_recheck(&req, &conf, tmpdir, &err), -EINVAL);
        req.n_bridge = NET_NETWORKS_MAX + 1;
        assert_int_equal(net_request_recheck(&req, &conf, tmpdir, &err), -EINVAL);
        req.n_bridge = 1;
        memset(req.bridge[0].name, 'b', sizeof req.bridge[0].name);
        assert_int_equal(net_request_recheck(&req, &conf, tmpdir, &err), -EINVAL);
        req.bridge[0].name[0] = 0;
        assert_int_equal(net_request_recheck(&req, &conf, tmpdir, &err), -EINVAL);
        snprintf(req.bridge[0].name, sizeof req.bridge[0].name, "../lab");
        assert_int_equal(net_request_recheck(&req, &conf, tmpdir, &err), -EINVAL);
        snprintf(req.bridge[0].name, sizeof req.bridge[0].name, "bridge");
        req.type = NET_TYPE_PASTA;
        assert_int_equal(net_request_recheck(&req, &conf, tmpdir, &err), -EINVAL);
        conf_free(&conf);
}

/* --network A,B,…: bridge networks in order; what cannot be combined is refused in one line. */
static void test_resolve_list(void **state)
{
        (void) state;
        struct hutch_conf conf;
        struct hutch_error err = HUTCH_ERROR_INIT;
        struct net_spec s = {0};
        conf_defaults(&conf);
        write_text("lab.conf", "type = bridge\nbridge = lab0\nsubnet = 10.77.0.0/28\nmasquerade = yes\n");
        write_text("side.conf", "bridge = side0\nsubnet = 10.78.0.0/24\ngateway = 10.78.0.254\n");
        write_text("twin.conf", "bridge = hutch0\nsubnet = 10.79.0.0/24\n");
        write_text("wide.conf", "bridge = wide0\nsubnet = 10.77.0.0/16\n");
        assert_int_equal(net_spec_resolve(&s, "bridge,lab,side", &conf, tmpdir, true, &err), 0);
        assert_int_equal(s.type, NET_TYPE_BRIDGE);
        assert_int_equal(s.n_bridge, 3);
        assert_string_equal(s.bridge[0].name, "bridge");
        assert_string_equal(s.bridge[0].bridge, "hutch0");
        assert_string_equal(s.bridge[1].name, "lab");
        assert_true(s.bridge[1].masquerade && s.bridge[1].subnet == 0x0a4d0000);
        assert_string_equal(s.bridge[2].bridge, "side0");
        assert_true(s.bridge[2].gateway == 0x0a4e00fe);
        /* resolved again: the list starts afresh */
        assert_int_equal(net_spec_resolve(&s, "side", &conf, tmpdir, true, &err), 0);
        assert_int_equal(s.n_bridge, 1);
        assert_string_equal(s.bridge[0].name, "side");
        /* none, pasta and slirp4netns stand alone */
        static const char *const alone[] = {"none,bridge",     "bridge,none", "pasta,bridge",
                                            "lab,slirp4netns", "none,pasta",  "none,none"};
        for (size_t i = 0; i < ELEMENTSOF(alone); i++) {
                assert_int_equal(net_spec_resolve(&s, alone[i], &conf, tmpdir, true, &err), -EINVAL);
                assert_non_null(strstr(err.msg, alone[i]));
        }
        assert_int_equal(net_spec_resolve(&s, "pasta,bridge", &conf, tmpdir, true, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "'pasta' cannot be joined with other networks"));
        /* a network named twice */
        assert_int_equal(net_spec_resolve(&s, "lab,bridge,lab", &conf, tmpdir, true, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "network 'lab' is named twice"));
        assert_int_equal(net_spec_resolve(&s, "bridge,bridge", &conf, tmpdir, true, &err), -EINVAL);
        /* one bridge or overlapping subnets for two networks */
        assert_int_equal(net_spec_resolve(&s, "bridge,twin", &conf, tmpdir, true, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "both on bridge 'hutch0'"));
        assert_int_equal(net_spec_resolve(&s, "lab,wide", &conf, tmpdir, true, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "overlapping subnets"));
        /* an unknown network anywhere in the list; too many */
        assert_int_equal(net_spec_resolve(&s, "bridge,nosuch", &conf, tmpdir, true, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "unknown network 'nosuch'"));
        assert_int_equal(net_spec_resolve(&s, "a,b,c,d,e,f,g,h,i", &conf, tmpdir, true, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "at most 8 networks"));
        /* a user: bridges are root's, in a list too */
        assert_int_equal(net_spec_resolve(&s, "bridge,lab", &conf, tmpdir, false, &err), -EPERM);
        /* published ports go to the first network: IPv4 host addresses only there */
        assert_int_equal(net_publish_parse("[::1]:8080:80", &s, &err), 0);
        assert_int_equal(net_spec_resolve(&s, "lab,bridge", &conf, tmpdir, true, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "network 'lab' is a bridge"));
        net_spec_free(&s);
        conf_free(&conf);
}

static void test_nat_rules(void **state)
{
        (void) state;
        struct net_bridge_conf b = {.name = "lab", .bridge = "lab0"};
        struct hutch_error err = HUTCH_ERROR_INIT;
        struct net_spec s = {0};
        char buf[2048], t[64];
        pid_t pid;
        unsigned long long st;
        /* the table's name carries its holder, and only such a name parses back */
        assert_true(net_nat_table_name(t, sizeof t, 1234, 98765ULL));
        assert_string_equal(t, "hutch_1234_98765");
        assert_true(net_nat_table_parse(t, &pid, &st) && pid == 1234 && st == 98765ULL);
        assert_false(net_nat_table_parse("hutch_1234_98765x", &pid, &st));
        assert_false(net_nat_table_parse("hutch_0_1", &pid, &st));
        assert_false(net_nat_table_parse("hutch_-1_1", &pid, &st));
        assert_false(net_nat_table_parse("nat", &pid, &st));
        assert_false(net_nat_table_name(t, 8, 1234, 98765ULL));
        /* nothing to do: no table */
        assert_false(net_nat_needed(&b, 0));
        /* published ports: DNAT from elsewhere and from this host, loopback masqueraded */
        assert_int_equal(net_publish_parse("18080:80", &s, &err), 0);
        assert_int_equal(net_publish_parse("0.0.0.0:5353:53/udp", &s, &err), 0);
        assert_true(net_nat_needed(&b, s.n_publish));
        assert_int_equal(net_nat_rules(buf, sizeof buf, "hutch_1_2", &b, 0x0a4d0005, s.publish, s.n_publish), 0);
        assert_non_null(strstr(buf, "add table ip hutch_1_2\n"));
        assert_non_null(
                strstr(buf, "add rule ip hutch_1_2 pre ip daddr 127.0.0.1 tcp dport 18080 dnat to 10.77.0.5:80\n"));
        assert_non_null(
                strstr(buf, "add rule ip hutch_1_2 out ip daddr 127.0.0.1 tcp dport 18080 dnat to 10.77.0.5:80\n"));
        assert_non_null(
                strstr(buf, "add rule ip hutch_1_2 out fib daddr type local udp dport 5353 dnat to 10.77.0.5:53\n"));
        assert_non_null(strstr(buf, "post ip saddr 127.0.0.0/8 ip daddr 10.77.0.5 masquerade\n"));
        assert_null(strstr(buf, "oifname"));
        /* route_localnet's guard: from the bridge to 127.0.0.0/8 only what was DNAT'd here */
        assert_int_equal(net_localnet_rules(buf, sizeof buf, "lab0", 7), 0);
        assert_non_null(strstr(buf, "add chain ip hutch_localnet b7 { type filter hook input priority filter; "
                                    "policy accept; }\nflush chain ip hutch_localnet b7\n"));
        assert_non_null(strstr(buf, "add rule ip hutch_localnet b7 iifname \"lab0\" ip daddr 127.0.0.0/8 ct status "
                                    "dnat accept\nadd rule ip hutch_localnet b7 iifname \"lab0\" ip daddr "
                                    "127.0.0.0/8 drop\n"));
        assert_false(net_nat_table_parse(NET_LOCALNET_TABLE, &pid, &st)); /* never swept */
        assert_int_equal(net_localnet_rules(buf, 32, "lab0", 7), -ENOBUFS);
        assert_int_equal(net_nat_rules(buf, sizeof buf, "hutch_1_2", &b, 0x0a4d0005, s.publish, s.n_publish), 0);
        /* masquerading: what leaves by another interface than the bridge */
        b.masquerade = true;
        assert_true(net_nat_needed(&b, 0));
        assert_int_equal(net_nat_rules(buf, sizeof buf, "hutch_1_2", &b, 0x0a4d0005, NULL, 0), 0);
        assert_non_null(strstr(buf, "add rule ip hutch_1_2 post ip saddr 10.77.0.5 oifname != \"lab0\" masquerade\n"));
        assert_null(strstr(buf, "dnat"));
        assert_null(strstr(buf, " pre "));
        /* a user's veth: its own address and MAC only */
        unsigned char mac[6];
        net_veth_mac(0x0a4d0005, mac);
        assert_memory_equal(mac, ((unsigned char[]){0x0a, 0x58, 10, 77, 0, 5}), 6);
        assert_int_equal(net_guard_rules(buf, sizeof buf, "hutch_1_2", 1, "hv7-1", 0x0a4d0005), 0);
        assert_non_null(strstr(buf, "add table netdev hutch_1_2\n"));
        assert_non_null(strstr(buf, "add chain netdev hutch_1_2 g1 { type filter hook ingress device \"hv7-1\" "
                                    "priority filter; policy drop; }\n"));
        assert_non_null(strstr(buf, "add rule netdev hutch_1_2 g1 ether saddr 0a:58:0a:4d:00:05 ether type arp arp "
                                    "saddr ether 0a:58:0a:4d:00:05 arp saddr ip 10.77.0.5 accept\n"));
        assert_non_null(strstr(buf, "add rule netdev hutch_1_2 g1 ether saddr 0a:58:0a:4d:00:05 ether type ip ip "
                                    "saddr 10.77.0.5 accept\n"));
        assert_non_null(strstr(buf, "add rule netdev hutch_1_2 g1 ether type ip udp sport 67 drop\n"));
        assert_int_equal(net_guard_rules(buf, 64, "hutch_1_2", 1, "hv7-1", 0x0a4d0005), -ENOBUFS);
        /* too small a buffer, an IPv6 host address */
        assert_int_equal(net_nat_rules(buf, 64, "hutch_1_2", &b, 0x0a4d0005, s.publish, s.n_publish), -ENOBUFS);
        assert_int_equal(net_publish_parse("[::1]:8080:80", &s, &err), 0);
        assert_int_equal(net_nat_rules(buf, sizeof buf, "hutch_1_2", &b, 0x0a4d0005, s.publish, s.n_publish),
                         -EAFNOSUPPORT);
        net_spec_free(&s);
}

static struct net_bridge_conf small_net(void)
{
        struct net_bridge_conf b = {.name = "t", .bridge = "t0"};
        assert_int_equal(net_cidr_parse("10.9.0.0/29", &b.subnet, &b.prefix), 0);
        b.gateway = b.subnet + 1;
        return b;
}

static void test_lease(void **state)
{
        (void) state;
        struct hutch_error err = HUTCH_ERROR_INIT;
        struct net_bridge_conf b = small_net(); /* .2 to .6: five addresses */
        _cleanup_close_ int dfd = open(tmpdir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        unsigned long long st;
        assert_int_equal(proc_start_time(getpid(), &st), 0);
        uint32_t a[5], x;
        for (int i = 0; i < 5; i++) {
                assert_int_equal(net_lease_take(dfd, &b, getpid(), st, &a[i], &err), 0);
                assert_true(a[i] == b.subnet + 2 + (uint32_t) i);
        }
        assert_int_equal(net_lease_take(dfd, &b, getpid(), st, &x, &err), -EADDRNOTAVAIL);
        assert_non_null(strstr(err.msg, "no free address"));
        assert_int_equal(net_lease_release(dfd, &b, a[2]), 0);
        assert_int_equal(net_lease_take(dfd, &b, getpid(), st, &x, &err), 0);
        assert_true(x == a[2]);
        /* a lease whose holder is gone (another start time: a reused pid) is free again */
        assert_int_equal(net_lease_release(dfd, &b, a[4]), 0);
        assert_int_equal(net_lease_take(dfd, &b, getpid(), st + 1, &x, &err), 0);
        assert_int_equal(net_lease_take(dfd, &b, getpid(), st, &x, &err), 0);
        assert_true(x == a[4]);
        for (int i = 0; i < 5; i++)
                assert_int_equal(net_lease_release(dfd, &b, a[i]), 0);
}

/* Several processes allocate at once: every address distinct, none lost. */
static void test_lease_concurrent(void **state)
{
        (void) state;
        struct net_bridge_conf b = small_net();
        snprintf(b.name, sizeof b.name, "c");
        assert_int_equal(net_cidr_parse("10.9.0.0/26", &b.subnet, &b.prefix), 0);
        b.gateway = b.subnet + 1;
        _cleanup_close_ int dfd = open(tmpdir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        int pipefd[2];
        assert_int_equal(pipe(pipefd), 0);
        enum { KIDS = 8, EACH = 5 };
        pid_t kids[KIDS];
        for (int k = 0; k < KIDS; k++) {
                kids[k] = fork();
                assert_true(kids[k] >= 0);
                if (kids[k] == 0) {
                        struct hutch_error err = HUTCH_ERROR_INIT;
                        unsigned long long st;
                        uint32_t v[EACH];
                        /* the holder is the parent (alive throughout), as a helper would be */
                        if (proc_start_time(getppid(), &st) < 0)
                                _exit(1);
                        for (int i = 0; i < EACH; i++)
                                if (net_lease_take(dfd, &b, getppid(), st, &v[i], &err) < 0)
                                        _exit(2);
                        if (write(pipefd[1], v, sizeof v) != (ssize_t) sizeof v)
                                _exit(3);
                        _exit(0);
                }
        }
        close(pipefd[1]);
        for (int k = 0; k < KIDS; k++) {
                int ws;
                assert_int_equal(waitpid(kids[k], &ws, 0), kids[k]);
                assert_true(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
        }
        uint32_t all[KIDS * EACH];
        assert_int_equal(read(pipefd[0], all, sizeof all), (ssize_t) sizeof all);
        close(pipefd[0]);
        for (int i = 0; i < KIDS * EACH; i++) {
                assert_true(all[i] > b.gateway && all[i] < b.subnet + 63);
                for (int j = 0; j < i; j++)
                        assert_true(all[i] != all[j]);
        }
}

static void test_cleanup(void **state)
{
        (void) state;
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
        assert_int_equal(system(cmd), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_publish),      cmocka_unit_test(test_looks_like),
                cmocka_unit_test(test_dns_hosts),    cmocka_unit_test(test_resolve),
                cmocka_unit_test(test_resolve_list), cmocka_unit_test(test_request_recheck),
                cmocka_unit_test(test_lease),        cmocka_unit_test(test_lease_concurrent),
                cmocka_unit_test(test_cleanup),      cmocka_unit_test(test_nat_rules),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
