/* libFuzzer target: what users write for networks (net/parse.c): -p/--publish mappings,
 * --network-args portmap lists, --dns, --add-host, subnets; and the nftables rules of a
 * bridge container built from the published ports that parsed (net/nat-rules.c). The input
 * is split at its first newline: the part before it is tried as every kind of value. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "net/net-internal.h"
#include "net/net.h"
#include "util/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct hutch_error err = HUTCH_ERROR_INIT;
        char *text = malloc(size + 1);
        if (!text)
                return 0;
        memcpy(text, data, size);
        text[size] = 0;
        struct net_spec s = {0};
        for (int i = 0; i < 4 && s.n_publish < NET_PUBLISH_MAX; i++)
                (void) net_publish_parse(text, &s, &err);
        (void) net_publish_looks_like(text);
        (void) net_args_parse(text, &s, &err);
        (void) net_dns_parse(text, &s, &err);
        (void) net_add_host_parse(text, &s, &err);
        for (size_t i = 0; i < s.n_publish; i++)
                if (!s.publish[i].host_port || !s.publish[i].port || !net_ip_is_valid(s.publish[i].host_ip))
                        abort(); /* an accepted mapping has both ports and a real host address */
        uint32_t net;
        unsigned prefix;
        if (net_cidr_parse(text, &net, &prefix) == 0 && prefix > 32)
                abort();
        struct net_bridge_conf b = {.name = "fuzz", .bridge = "fuzz0", .masquerade = size & 1};
        char rules[65536];
        pid_t pid;
        unsigned long long st;
        size_t n = s.n_publish < NET_PUBLISH_MAX ? s.n_publish : NET_PUBLISH_MAX;
        if (net_nat_rules(rules, sizeof rules, "hutch_1_2", &b, 0x0a590002, s.publish, n) == 0 &&
            strlen(rules) >= sizeof rules)
                abort();
        (void) net_nat_table_parse(text, &pid, &st);
        net_spec_free(&s);
        free(text);
        return 0;
}
