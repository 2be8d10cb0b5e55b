# Networks (net/): --net --network none, published ports through pasta and slirp4netns,
# instances' addresses and ports, bad input; bridges only inside a network namespace this
# test makes (root).
. "$(dirname "$0")/lib.sh"
I=$IMAGES/image.sif

# only lo, up, and nothing else
run "$HUTCH" exec --net --network none "$I" cat /proc/net/dev
check "--network none: only lo" '[ "$RC" -eq 0 ] && [ "$(tail -n +3 "$OUT" | wc -l)" -eq 1 ] && out_has "lo:"'
run "$HUTCH" exec --network none "$I" true
check "--network without --net: Apptainer's note that it sets --net" '[ "$RC" -eq 0 ] && err_has "^INFO: *Setting --net (required by --network)$"'
run "$HUTCH" exec --net --network none "$I" true
check "... not with --net given" '[ "$RC" -eq 0 ] && ! err_has "Setting --net"'
run "$HUTCH" exec --net "$I" sh -c 'ping -c1 -W1 127.0.0.1 >/dev/null 2>&1 || nc -l -p 7777 -e true & sleep 0.1; echo x | nc 127.0.0.1 7777; cat /sys/class/net/lo/operstate /sys/class/net/lo/flags'
check "--net alone is none, loopback is up" '[ "$RC" -eq 0 ] && out_has "0x9"'
run "$HUTCH" exec --net --hostname box --add-host db:10.1.2.3 --dns 192.0.2.53 "$I" sh -c 'hostname; cat /etc/hosts /etc/resolv.conf'
check "--hostname, --add-host and --dns" '[ "$RC" -eq 0 ] && out_has "^box$" && out_has "10.1.2.3	db" && out_has "127.0.1.1	box" && out_has "nameserver 192.0.2.53"'
run "$HUTCH" exec --dns 192.0.2.53 "$I" cat /proc/net/dev
check "--dns alone keeps the host network" '[ "$RC" -eq 0 ] && [ "$(tail -n +3 "$OUT" | wc -l)" -ge 1 ] && [ "$(grep -c : "$OUT")" -eq "$(grep -c : /proc/net/dev)" ]'
run "$HUTCH" exec -p "$I" true
check "-p before IMAGE is still --pid" '[ "$RC" -eq 0 ]'

# bad input: one line, nothing started
run "$HUTCH" exec --net --network nosuch "$I" true
check "unknown network" 'fails_with "unknown network .nosuch."'
for l in pasta,slirp4netns none,bridge bridge,pasta; do
	run "$HUTCH" exec --net --network $l "$I" true
	check "--network $l: only bridge networks make a list" 'fails_with "cannot be joined with other networks"'
done
run "$HUTCH" exec --net --network bridge,bridge "$I" true
check "a network named twice" 'fails_with "network .bridge. is named twice"'
for bad in 0:80 80:0 65536:80 8080:99999 x:80 8080:80/sctp 300.1.1.1:8080:80; do
	run "$HUTCH" exec -p "$bad" "$I" true
	check "-p $bad refused" 'fails_with "$bad"'
done
run "$HUTCH" exec --network-args "portmap=8080" "$I" true
check "malformed portmap" 'fails_with "portmap"'
run "$HUTCH" exec --dns 1.2.3 "$I" true
check "--dns that is not an IP" 'fails_with "not an IP address"'
run "$HUTCH" exec --add-host db "$I" true
check "--add-host without an IP" 'fails_with "NAME:IP"'
run "$HUTCH" exec --net --network none -p 18080:80 "$I" true
check "a port published on none" 'fails_with "no way in"'
if [ "$(id -u)" -ne 0 ]; then
	run "$HUTCH" exec --net --network pasta -p 80:8080 "$I" true
	check "a privileged host port for a user" 'fails_with "port 80 is privileged"'
	run "$HUTCH" exec --net --network bridge "$I" true
	check "bridge is root's" 'fails_with "only root"'
fi
leftovers "networks"

# user-mode networking: a batch container, then an instance serving http on a published port
PORT=$((20000 + $$ % 20000))
for n in pasta slirp4netns; do
	run "$HUTCH" exec --net --network $n "$I" cat /proc/net/dev
	check "$n: lo and one interface" '[ "$RC" -eq 0 ] && [ "$(tail -n +3 "$OUT" | wc -l)" -eq 2 ]'
	leftovers "$n batch"
	PORT=$((PORT + 1))
	HUTCH_TEST_PORT=8080 run "$HUTCH" instance start --net --network $n -p 127.0.0.1:$PORT:8080 "$I" web
	check "$n: instance with a published port starts" '[ "$RC" -eq 0 ]'
	check "$n: the published port answers from the host" 'wait_for "http_get $PORT | grep -q \"200 OK\""'
	run "$HUTCH" instance list
	check "$n: instance list shows the address and the port" 'out_has "PORTS" && awk "\$1==\"web\"{print \$3}" "$OUT" | grep -q "^[0-9.]*$" && out_has "127.0.0.1:$PORT->8080/tcp"'
	run "$HUTCH" instance list --json
	check "$n: --json too" 'out_has "\"ports\": \"127.0.0.1:$PORT->8080/tcp\"" && grep -q "\"ip\": \"[0-9]" "$OUT"'
	run "$HUTCH" exec instance://web cat /proc/net/dev
	check "$n: exec instance:// joins its network" '[ "$RC" -eq 0 ] && [ "$(tail -n +3 "$OUT" | wc -l)" -eq 2 ]'
	run "$HUTCH" instance start --net --network $n -p 127.0.0.1:$PORT:8080 "$I" web2
	check "$n: a port already taken fails naming it" 'fails_with "$PORT"'
	run "$HUTCH" instance stop web
	check "$n: stop" '[ "$RC" -eq 0 ]'
	leftovers "$n instance"
done

# SIGKILL of the supervisor: the helper and its pasta go with the container
HUTCH_TEST_PORT=8080 run "$HUTCH" instance start --net --network pasta -p 127.0.0.1:$PORT:8080 "$I" killed
sup=$(pgrep -u "$(id -u)" -x hutch-supervise | head -1)
[ -n "$sup" ] && kill -9 "$sup"
check "after kill -9 of the supervisor no helper is left" 'wait_for "[ -z \"\$(hutch_procs)\" ]" 50'
run "$HUTCH" instance list
leftovers "kill -9"

# bridge (root): only inside a network namespace made here, so the host's interfaces are
# never touched
if [ "$(id -u)" -eq 0 ]; then
	cat > "$T/bridge.sh" <<'EOS'
set -u
ip link set lo up
leases=/run/hutch/net/bridge.leases
HUTCH_TEST_PORT=8080 "$HUTCH" instance start --net --network bridge "$I" br1 || echo "start failed"
a=$("$HUTCH" instance list --json | sed -n 's/.*"ip": "\(10\.[0-9.]*\)".*/\1/p')
echo "addr1=$a"
"$HUTCH" exec --net --network bridge "$I" sh -c "ip -4 -o addr show eth0; ip route; printf 'GET / HTTP/1.0\r\n\r\n' | nc $a 8080 | head -1"
"$HUTCH" exec instance://br1 ip -4 -o addr show eth0 | sed 's/^/joined: /'
ip -o link | grep -c 'master hutch0' | sed 's/^/veths=/'
"$HUTCH" instance stop br1 >/dev/null 2>&1
echo "after-stop veths=$(ip -o link | grep -c 'master hutch0') leases=$(grep -c . $leases)"
HUTCH_TEST_PORT=8080 "$HUTCH" instance start --net --network bridge "$I" br2 >/dev/null 2>&1
kill -9 "$(pgrep -u 0 -x hutch-supervise | head -1)"
for i in $(seq 50); do [ -z "$(pgrep -u 0 -x hutch-net)" ] && break; sleep 0.1; done
"$HUTCH" instance list >/dev/null 2>&1
echo "after-kill veths=$(ip -o link | grep -c 'master hutch0') helpers=$(pgrep -c -u 0 -x hutch-net)"
"$HUTCH" exec --net --network bridge "$I" ip -4 -o addr show eth0 | sed 's/^/reused: /'
# a published port: from this namespace's loopback to the instance, the port held meanwhile
HUTCH_TEST_PORT=8080 "$HUTCH" instance start --net --network bridge -p 18080:8080 "$I" brp >/dev/null 2>&1 || echo "brp failed"
for i in $(seq 50); do
	r=$( (exec 3<>/dev/tcp/127.0.0.1/18080 && printf 'GET / HTTP/1.0\r\n\r\n' >&3 && head -1 <&3) 2>/dev/null)
	[ -n "$r" ] && break
	sleep 0.1
done
echo "published: $r"
echo "tables=$(nft list tables | grep -c ' hutch_')"
"$HUTCH" exec --net --network bridge -p 18080:80 "$I" true 2>&1 | sed 's/^/taken: /'
"$HUTCH" exec --net --network bridge -p '[::1]:18081:80' "$I" true 2>&1 | sed 's/^/v6: /'
"$HUTCH" instance stop brp >/dev/null 2>&1
echo "after-publish-stop tables=$(nft list tables | grep -c ' hutch_')"
# its hutch-net killed: the table outlives it until the next bridge container's hutch-net
HUTCH_TEST_PORT=8080 "$HUTCH" instance start --net --network bridge -p 18082:8080 "$I" brk >/dev/null 2>&1 || echo "brk failed"
kill -9 "$(pgrep -u 0 -x hutch-net | head -1)"
"$HUTCH" instance stop brk >/dev/null 2>&1
echo "stale tables=$(nft list tables | grep -c ' hutch_')"
"$HUTCH" exec --net --network bridge "$I" true
echo "swept tables=$(nft list tables | grep -c ' hutch_')"
EOS
	run env HUTCH="$HUTCH" I="$I" unshare -n bash "$T/bridge.sh"
	a=$(sed -n 's/^addr1=//p' "$OUT")
	check "bridge: an instance gets an address of the subnet" 'echo "$a" | grep -q "^10\.89\.0\.[0-9]*$"'
	check "bridge: a second container gets another address, a default route, and reaches the first" \
		'grep "eth0" "$OUT" | grep -v "$a/" | grep -q "inet 10.89.0" && out_has "default via 10.89.0.1" && out_has "200 OK"'
	check "bridge: exec instance:// sees the instance's eth0" 'out_has "joined: .*inet $a/24"'
	check "bridge: after stop no veth and no lease" 'out_has "after-stop veths=0 leases=0"'
	check "bridge: after kill -9 of the supervisor no veth and no helper" 'out_has "after-kill veths=0 helpers=0"'
	check "bridge: the crashed container's lease is free again" 'out_has "reused: .*inet 10.89.0.2/24"'
	check "bridge: a published port answers on this host's loopback" 'out_has "published: HTTP/1.[01] 200"'
	check "bridge: a published port is one nftables table" 'out_has "^tables=1$"'
	check "bridge: a published port is held: a second container cannot take it" \
		'out_has "taken: hutch: error: host port 127.0.0.1:18080/tcp is already in use"'
	check "bridge: an IPv6 host address is refused" 'out_has "v6: hutch: error: .*IPv4 host addresses only"'
	check "bridge: after stop no table is left" 'out_has "after-publish-stop tables=0"'
	check "bridge: a killed hutch-net's table goes with the next bridge container" \
		'out_has "stale tables=1" && out_has "swept tables=0"'
	leftovers "bridge"

	# masquerading, turned on by a named network the admin writes: staged beside the system
	# hutch.conf on an overlay in a private mount namespace; the "outside" is a namespace of
	# its own behind a veth, with no route back to the bridge's subnet
	cat > "$T/masq.sh" <<'EOS'
set -u
ip link set lo up
SYS=$("$HUTCH" help | sed -n 's/^System configuration: //p')
d=$(dirname "$SYS")
while [ ! -d "$d" ]; do d=$(dirname "$d"); done
mkdir -p "$T/mq/up" "$T/mq/wk"
mount -t overlay overlay -o "lowerdir=$d,upperdir=$T/mq/up,workdir=$T/mq/wk" "$d" || echo "cannot stage"
mkdir -p "$(dirname "$SYS")/network"
printf 'type = bridge\nbridge = hutchm0\nsubnet = 10.91.0.0/24\nmasquerade = yes\n' > "$(dirname "$SYS")/network/masq.conf"
unshare -n sleep 60 &
out=$!
for i in $(seq 50); do [ "$(readlink /proc/$out/ns/net)" != "$(readlink /proc/self/ns/net)" ] && break; sleep 0.05; done
ip link add up0 type veth peer name up1
ip link set up1 netns "$out"
ip addr add 10.99.0.1/24 dev up0
ip link set up0 up
nsenter -t "$out" -n sh -c 'ip link set lo up; ip addr add 10.99.0.2/24 dev up1; ip link set up1 up'
# a server outside that answers with the address it sees
nsenter -t "$out" -n python3 -c '
import socket
s = socket.socket(); s.bind(("10.99.0.2", 9000)); s.listen(8)
while True:
    c, a = s.accept(); c.sendall((a[0] + "\n").encode()); c.close()' &
srv=$!
for i in $(seq 50); do nsenter -t "$out" -n ss -ltn | grep -q ':9000 ' && break; sleep 0.1; done
"$HUTCH" exec --net --network masq "$I" nc -w 3 10.99.0.2 9000 | sed 's/^/masq: /'
echo "after-masq tables=$(nft list tables | grep -c ' hutch_')"
"$HUTCH" exec --net --network bridge "$I" nc -w 2 10.99.0.2 9000 | sed 's/^/plain: /'
kill "$srv" "$out"
wait
EOS
	run env HUTCH="$HUTCH" I="$I" T="$T" unshare -n -m --propagation private bash "$T/masq.sh"
	check "masquerade: the outside sees the host's address" 'out_has "^masq: 10.99.0.1$"'
	check "masquerade: without it the outside cannot answer" '! out_has "^plain: "'
	check "masquerade: no table left" 'out_has "after-masq tables=0"'
	leftovers "masquerade"

	# several networks (--network A,B): eth0 and eth1, one veth and one lease each, a peer
	# reached on each; cleanup after stop, after kill -9, and after a failure half-way (the
	# second network full: the first's veth and lease are undone)
	cat > "$T/multi.sh" <<'EOS'
set -u
t0=$(date +%s%N)
ip link set lo up
SYS=$("$HUTCH" help | sed -n 's/^System configuration: //p')
d=$(dirname "$SYS")
while [ ! -d "$d" ]; do d=$(dirname "$d"); done
mkdir -p "$T/mn/up" "$T/mn/wk"
mount -t overlay overlay -o "lowerdir=$d,upperdir=$T/mn/up,workdir=$T/mn/wk" "$d" || echo "cannot stage"
mkdir -p "$(dirname "$SYS")/network"
printf 'bridge = hutchs0\nsubnet = 10.92.0.0/24\n' > "$(dirname "$SYS")/network/side.conf"
# one address only (.2; .1 is the gateway)
printf 'bridge = hutchf0\nsubnet = 10.93.0.0/30\n' > "$(dirname "$SYS")/network/full.conf"
L=/run/hutch/net
state() {
	echo "veths=$(ip -o link | grep -c 'master hutch0'),$(ip -o link | grep -c 'master hutchs0') leases=$(grep -c . $L/bridge.leases),$(grep -c . $L/side.leases)"
}
export HUTCH_TEST_PORT=8080
"$HUTCH" instance start --net --network bridge "$I" mpa >/dev/null || echo "mpa failed"
"$HUTCH" instance start --net --network side "$I" mpb >/dev/null || echo "mpb failed"
a=$("$HUTCH" instance list --json | tr -d '\n\t ' | sed 's/},{/}\n{/g' | sed -n 's/.*"instance":"mpa".*"ip":"\([0-9.]*\)".*/\1/p')
b=$("$HUTCH" instance list --json | tr -d '\n\t ' | sed 's/},{/}\n{/g' | sed -n 's/.*"instance":"mpb".*"ip":"\([0-9.]*\)".*/\1/p')
echo "peers=$a,$b"
echo "before $(state)"
"$HUTCH" instance start --net --network bridge,side "$I" m2 >/dev/null || echo "m2 failed"
"$HUTCH" instance list --json | tr -d '\n\t ' | sed 's/},{/}\n{/g' | grep '"instance":"m2"' | sed 's/^/json: /'
"$HUTCH" instance list | awk '$1=="m2"{print "list: " $3}'
"$HUTCH" exec instance://m2 sh -c "ip -4 -o addr; ip route; for p in $a $b; do printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 2 \$p 8080 | head -1 | sed \"s/^/reach \$p: /\"; done"
echo "running $(state)"
# its end by kill -9 of its supervisor (the batch run below ends the plain way)
init=$("$HUTCH" instance list --json | tr -d '\n\t ' | sed 's/},{/}\n{/g' | sed -n 's/.*"instance":"m2","pid":\([0-9]*\).*/\1/p')
kill -9 "$(ps -o ppid= -p "$init")"
for i in $(seq 50); do [ "$(state)" = "veths=1,1 leases=1,1" ] && break; sleep 0.1; done
"$HUTCH" instance list >/dev/null 2>&1
echo "after-kill $(state)"
"$HUTCH" exec --net --network side,bridge "$I" sh -c 'ip -4 -o addr show eth0; ip -4 -o addr show eth1; ip route' | sed 's/^/batch: /'
# the helper undoes a batch container's network once it has seen the payload end
for i in $(seq 50); do [ "$(state)" = "veths=1,1 leases=1,1" ] && break; sleep 0.1; done
echo "after-batch $(state)"
"$HUTCH" instance start --net --network full "$I" mpf >/dev/null || echo "mpf failed"
"$HUTCH" exec --net --network side,full "$I" true 2>&1 | sed 's/^/half: /'
echo "after-half $(state) full=$(grep -c . $L/full.leases) fullveths=$(ip -o link | grep -c 'master hutchf0')"
for n in mpa mpb mpf; do "$HUTCH" instance stop $n >/dev/null; done
echo "end $(state) tables=$(nft list tables | grep -c ' hutch_')"
echo "took $((($(date +%s%N) - t0) / 1000000)) ms"
EOS
	run env HUTCH="$HUTCH" I="$I" T="$T" unshare -n -m --propagation private bash "$T/multi.sh"
	a=$(sed -n 's/^peers=\(.*\),.*/\1/p' "$OUT")
	b=$(sed -n 's/^peers=.*,\(.*\)/\1/p' "$OUT")
	check "networks: peers on bridge and on side" 'out_has "^peers=10\.89\.0\.[0-9]*,10\.92\.0\.[0-9]*$" && out_has "^before veths=1,1 leases=1,1$"'
	check "networks: bridge,side gives eth0 on bridge, eth1 on side" \
		'out_has "eth0.*inet 10\.89\.0\." && out_has "eth1.*inet 10\.92\.0\." && ! out_has "eth2"'
	check "networks: the default route is the first network's" \
		'out_has "^default via 10.89.0.1 dev eth0" && [ "$(grep -c "^default" "$OUT")" -eq 1 ]'
	check "networks: a peer on each network answers" 'out_has "reach $a: HTTP/1.[01] 200" && out_has "reach $b: HTTP/1.[01] 200"'
	check "networks: one veth and one lease per network" 'out_has "^running veths=2,2 leases=2,2$"'
	check "networks: instance list shows every address" 'out_has "^list: 10\.89\.0\.[0-9]*,10\.92\.0\.[0-9]*$"'
	check "networks: --json has the first as ip, all in ips" \
		'out_has "^json: .*\"ip\":\"10\.89\.0\.[0-9]*\",\"ips\":\[\"10\.89\.0\.[0-9]*\",\"10\.92\.0\.[0-9]*\"\]"'
	check "networks: after kill -9 of the supervisor no veth and no lease of either" 'out_has "^after-kill veths=1,1 leases=1,1$"'
	check "networks: a batch container in list order (side,bridge), cleaned at exit" \
		'out_has "batch: .*eth0.*inet 10\.92\.0\." && out_has "batch: .*eth1.*inet 10\.89\.0\." && out_has "batch: default via 10.92.0.1 dev eth0" && out_has "^after-batch veths=1,1 leases=1,1$"'
	check "networks: the second network full fails in one line" 'out_has "^half: hutch: error: .*network .full. has no free address left" && [ "$(grep -c "^half: " "$OUT")" -eq 1 ]'
	check "networks: the failure half-way leaves no veth or lease of the first network" \
		'out_has "^after-half veths=1,1 leases=1,1 full=1 fullveths=1$"'
	check "networks: nothing left at the end" 'out_has "^end veths=0,0 leases=0,0 tables=0$"'
	sed -n 's/^took /# networks part: /p' "$OUT"
	leftovers "networks"
fi
finish
