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
	check "bridge is not for users unless the admin allows it" 'fails_with "network .bridge. is not allowed for users by hutch.conf"'
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
echo "tables=$(nft list tables | grep -c ' hutch_[0-9]')"
echo "localnet: $(nft list table ip hutch_localnet 2>&1 | grep -c 'iifname "hutch0" ip daddr 127.0.0.0/8')"
"$HUTCH" exec --net --network bridge -p 18080:80 "$I" true 2>&1 | sed 's/^/taken: /'
"$HUTCH" exec --net --network bridge -p '[::1]:18081:80' "$I" true 2>&1 | sed 's/^/v6: /'
"$HUTCH" instance stop brp >/dev/null 2>&1
echo "after-publish-stop tables=$(nft list tables | grep -c ' hutch_[0-9]')"
# its hutch-net killed: the table outlives it until the next bridge container's hutch-net
HUTCH_TEST_PORT=8080 "$HUTCH" instance start --net --network bridge -p 18082:8080 "$I" brk >/dev/null 2>&1 || echo "brk failed"
kill -9 "$(pgrep -u 0 -x hutch-net | head -1)"
"$HUTCH" instance stop brk >/dev/null 2>&1
echo "stale tables=$(nft list tables | grep -c ' hutch_[0-9]')"
"$HUTCH" exec --net --network bridge "$I" true
echo "swept tables=$(nft list tables | grep -c ' hutch_[0-9]')"
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
	check "bridge: a port published on loopback: the bridge's guard for route_localnet (kept)" 'out_has "^localnet: 2$"'
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
	# stage.sh NAME: the system hutch.conf's folder on an overlay (upper folder $T/NAME) in
	# the caller's private mount namespace, with its network/ folder; sets SYS
	cat > "$T/stage.sh" <<'EOS'
SYS=$("$HUTCH" help | sed -n 's/^System configuration: //p')
d=$(dirname "$SYS")
while [ ! -d "$d" ]; do d=$(dirname "$d"); done
mkdir -p "$T/$1/up" "$T/$1/wk"
mount -t overlay overlay -o "lowerdir=$d,upperdir=$T/$1/up,workdir=$T/$1/wk" "$d" || echo "cannot stage"
mkdir -p "$(dirname "$SYS")/network"
EOS
	cat > "$T/masq.sh" <<'EOS'
set -u
ip link set lo up
. "$T/stage.sh" mq
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
echo "after-masq tables=$(nft list tables | grep -c ' hutch_[0-9]')"
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
. "$T/stage.sh" mn
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
echo "end $(state) tables=$(nft list tables | grep -c ' hutch_[0-9]')"
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

	# a user's bridge: the admin lets users have it (hutch.conf 'network users allow', or a
	# named network's 'users = yes') and installs hutch-net setuid root; both staged here in
	# a private mount namespace (the system hutch.conf's folder on an overlay, a setuid copy
	# of hutch-net bound over the tests' one), inside a network namespace made here
	U=${AUX_USER:-hutchtest3}
	id "$U" >/dev/null 2>&1 || useradd -m -s /bin/bash "$U"
	chmod 0755 "$T"
	cat > "$T/forge.py" <<'EOS'
# hutch-net's request sent by hand, as a user could: NET BRIDGENAME HOSTPORT NSPID
import ctypes, os, socket, sys
class Bridge(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char * 64), ("bridge", ctypes.c_char * 16), ("subnet", ctypes.c_uint32),
                ("prefix", ctypes.c_uint), ("gateway", ctypes.c_uint32), ("masquerade", ctypes.c_bool),
                ("users", ctypes.c_bool)]
class Pub(ctypes.Structure):
    _fields_ = [("host_ip", ctypes.c_char * 46), ("host_port", ctypes.c_uint16), ("port", ctypes.c_uint16),
                ("udp", ctypes.c_bool)]
class Req(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("bridge", Bridge * 8), ("n_bridge", ctypes.c_uint32),
                ("n_publish", ctypes.c_uint32), ("publish", Pub * 32)]
net, name, port, nspid = sys.argv[1:5]
r = Req(type=4, n_bridge=1)
r.bridge[0].name = name.encode()
r.bridge[0].bridge = b"evil0"  # the admin's files say which bridge, not the caller
r.bridge[0].subnet, r.bridge[0].prefix, r.bridge[0].gateway = 0x0a630000, 24, 0x0a630001
if port != "0":
    r.n_publish = 1
    r.publish[0].host_ip, r.publish[0].host_port, r.publish[0].port = b"127.0.0.1", int(port), 80
a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
a.send(bytes(r))
pid = os.fork()
if pid == 0:
    os.dup2(b.fileno(), 3)
    os.execv(net, ["hutch-net", "helper"])
b.close()
fds = [os.open(f"/proc/{nspid}/ns/net", os.O_RDONLY), os.open(f"/proc/{nspid}/ns/user", os.O_RDONLY)]
socket.send_fds(a, [b"n"], fds)
rep = a.recv(4096)
print("reply:", int.from_bytes(rep[:4], "little", signed=True), rep[4:504].split(b"\0")[0].decode(), flush=True)
if len(rep) and int.from_bytes(rep[:4], "little", signed=True) == 0:
    print("wired:", os.popen("ip -o link").read().count("master hutch0"), "evil0" in os.popen("ip -o link").read(), flush=True)
    socket.send_fds(a, [b"w"], [os.pidfd_open(int(nspid))])
a.close()
os.waitpid(pid, 0)
EOS
	cat > "$T/ubridge.sh" <<'EOS'
set -u
ip link set lo up
UH=$(getent passwd "$U" | cut -d: -f6)
# (the sanitizer options pass: without detect_leaks=0 a hutch that joined an instance hangs
# in LeakSanitizer's exit check)
asu() {
	setpriv --reuid="$U" --regid="$U" --init-groups env -i HOME="$UH" PATH="$PATH" HUTCH_TEST_PORT=8080 \
		${ASAN_OPTIONS:+ASAN_OPTIONS=$ASAN_OPTIONS} ${UBSAN_OPTIONS:+UBSAN_OPTIONS=$UBSAN_OPTIONS} "$@"
}
L=/run/hutch/net/bridge.leases
state() { echo "veths=$(ip -o link | grep -c 'master hutch0') leases=$(grep -c . $L 2>/dev/null) helpers=$(pgrep -c -x hutch-net)"; }
asu "$HUTCH" exec --net --network bridge "$I" true 2>&1 | sed 's/^/default: /'
. "$T/stage.sh" ub
{ cat "$SYS" 2>/dev/null; echo "network users allow = none, pasta, slirp4netns, bridge"; } > "$T/ub.conf"
cat "$T/ub.conf" > "$SYS"
chmod 0644 "$SYS"
printf 'bridge = hutchp0\nsubnet = 10.94.0.0/24\n' > "$(dirname "$SYS")/network/priv.conf"
printf 'bridge = hutchq0\nsubnet = 10.95.0.0/24\nusers = yes\n' > "$(dirname "$SYS")/network/shared.conf"
asu "$HUTCH" exec --net --network bridge "$I" true 2>&1 | sed 's/^/nosuid: /'
NET=$(dirname "$HUTCH")/hutch-net
cp "$NET" "$T/suid-net"
chmod 4755 "$T/suid-net"
mount --bind "$T/suid-net" "$NET"
asu "$HUTCH" instance start --net --network bridge "$I" ub1 >/dev/null || echo "ub1 failed"
a=$(asu "$HUTCH" instance list --json | sed -n 's/.*"ip": "\(10\.[0-9.]*\)".*/\1/p')
echo "addr1=$a"
hp=$(pgrep -x hutch-net | head -1)
echo "helper=$(ps -o ruid=,euid= -p "$hp" | awk '{print $1, $2}')"
asu kill -9 "$hp" 2>&1 | sed 's/^/kill: /'
echo "helper-alive=$(pgrep -x hutch-net | grep -cx "$hp")"
asu "$HUTCH" exec --net --network bridge "$I" sh -c "ip -4 -o addr show eth0; printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 2 $a 8080 | head -1" | sed 's/^/second: /'
asu "$HUTCH" exec --net --network shared "$I" ip -4 -o addr show eth0 | sed 's/^/shared: /'
asu "$HUTCH" exec --net --network priv "$I" true 2>&1 | sed 's/^/priv: /'
asu "$HUTCH" exec --net --network bridge -p 80:8080 "$I" true 2>&1 | sed 's/^/port80: /'
echo "running $(state)"
asu "$HUTCH" instance stop ub1 >/dev/null 2>&1
for i in $(seq 50); do [ "$(state)" = "veths=0 leases=0 helpers=0" ] && break; sleep 0.1; done
echo "after-stop $(state)"
# a published port, reached from this namespace's loopback
asu "$HUTCH" instance start --net --network bridge -p 18090:8080 "$I" ub2 >/dev/null || echo "ub2 failed"
for i in $(seq 50); do
	r=$( (exec 3<>/dev/tcp/127.0.0.1/18090 && printf 'GET / HTTP/1.0\r\n\r\n' >&3 && head -1 <&3) 2>/dev/null)
	[ -n "$r" ] && break
	sleep 0.1
done
echo "published: $r"
# the request forged by hand: every check is the helper's own
asu python3 "$T/forge.py" "$NET" bridge 0 self 2>&1 | sed 's/^/forge-host: /'
asu python3 "$T/forge.py" "$NET" priv 0 self 2>&1 | sed 's/^/forge-priv: /'
asu python3 "$T/forge.py" "$NET" bridge 80 self 2>&1 | sed 's/^/forge-port: /'
# a network namespace of the user's own wired by hand: root there, it may change its
# address, MAC and routes; a loopback-only service of this host, and ub2 (its published
# port on loopback set route_localnet on the bridge) to reach
asu unshare -rn sleep 60 &
for i in $(seq 50); do sp=$(pgrep -u "$U" -x sleep | head -1); [ -n "$sp" ] && [ "$(readlink /proc/$sp/ns/net)" != "$(readlink /proc/self/ns/net)" ] && break; sleep 0.1; done
asu python3 "$T/forge.py" "$NET" bridge 0 "$sp" 2>&1 | sed 's/^/forge-own: /' &
fp=$!
for i in $(seq 50); do [ "$(ip -o link | grep -c 'master hutch0')" = 2 ] && break; sleep 0.1; done
b=$(asu "$HUTCH" instance list --json | sed -n 's/.*"ip": "\(10\.[0-9.]*\)".*/\1/p')
python3 -c 'import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 18099))
while True: open(sys.argv[1], "ab").write(s.recv(100))' "$T/udp.got" &
lp=$!
sleep 0.3
inns() { asu nsenter -t "$sp" -U -n --preserve-credentials "$@"; }
reach() { timeout 3 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null && echo yes || echo no; }
echo "own-address: $(inns bash -c "$(declare -f reach); reach $b 8080")"
inns sh -c 'echo 1 > /proc/sys/net/ipv4/conf/eth0/route_localnet; ip route del local 127.0.0.0/8 dev lo table local; ip route del local 127.0.0.1 dev lo table local; ip route add 127.0.0.1/32 via 10.89.0.1 dev eth0' 2>&1 | sed 's/^/setup: /'
inns bash -c 'for i in 1 2 3 4 5; do echo hi > /dev/udp/127.0.0.1/18099; sleep 0.2; done'
echo "host-loopback: $([ -s "$T/udp.got" ] && echo yes || echo no)"
inns sh -c 'ip addr flush dev eth0; ip addr add 10.89.0.200/24 dev eth0; ip route add default via 10.89.0.1' 2>&1 | sed 's/^/setup: /'
echo "other-address: $(inns bash -c "$(declare -f reach); reach $b 8080")"
inns sh -c 'ip addr flush dev eth0; ip link set eth0 address 0a:58:0a:59:00:c8; ip addr add 10.89.0.200/24 dev eth0; ip route add default via 10.89.0.1' 2>&1 | sed 's/^/setup: /'
echo "other-mac: $(inns bash -c "$(declare -f reach); reach $b 8080")"
kill "$lp" "$sp"
wait "$fp"
asu "$HUTCH" instance stop ub2 >/dev/null 2>&1
for i in $(seq 50); do [ "$(state)" = "veths=0 leases=0 helpers=0" ] && break; sleep 0.1; done
# a helper that ends against its will (here root's kill; a user's cgroup could do it): its
# container keeps running, and the next helper deletes its veth before the freed address
# serves again
asu "$HUTCH" instance start --net --network bridge "$I" ub4 >/dev/null || echo "ub4 failed"
echo "ub4: $(asu "$HUTCH" exec instance://ub4 grep -c eth0: /proc/net/dev)"
kill -9 "$(pgrep -x hutch-net | head -1)"
asu "$HUTCH" exec --net --network bridge "$I" ip -4 -o addr show eth0 | sed 's/^/after-kill: /'
echo "orphan: $(asu "$HUTCH" exec instance://ub4 grep -c eth0: /proc/net/dev)"
asu "$HUTCH" instance stop ub4 >/dev/null 2>&1
for i in $(seq 50); do [ "$(state)" = "veths=0 leases=0 helpers=0" ] && break; sleep 0.1; done
echo "end $(state) evil=$(ip -o link | grep -c evil0)"
EOS
	run env HUTCH="$HUTCH" I="$I" T="$T" U="$U" unshare -n -m --propagation private bash "$T/ubridge.sh"
	check "user bridge: refused by default, by the admin's policy" 'out_has "^default: hutch: error: network .bridge. is not allowed for users by hutch.conf"'
	check "user bridge: allowed, but hutch-net not setuid root: one line saying what the admin must do" \
		'out_has "^nosuid: hutch: error: network .bridge. is a bridge: for users it needs .*hutch-net installed setuid root"'
	ua=$(sed -n 's/^addr1=//p' "$OUT")
	check "user bridge: a user's instance gets an address of the subnet" 'echo "$ua" | grep -q "^10\.89\.0\.[0-9]*$"'
	check "user bridge: hutch-net runs as root, and the user cannot kill it (which would free the address in use)" \
		'out_has "^helper=0 0$" && out_has "^kill: .*Operation not permitted" && out_has "^helper-alive=1$"'
	check "user bridge: a second container of the user gets another address and reaches the first" \
		'out_has "^second: .*eth0.*inet 10\.89\.0\." && ! out_has "^second: .*inet $ua/" && out_has "^second: HTTP/1.[01] 200"'
	check "user bridge: a named network with 'users = yes' in its file is the user's too" 'out_has "^shared: .*eth0.*inet 10\.95\.0\."'
	check "user bridge: a named network the admin did not open to users is refused" 'out_has "^priv: hutch: error: network .priv. is not allowed for users"'
	check "user bridge: a privileged host port is refused" 'out_has "^port80: hutch: error: host port 80 is privileged"'
	check "user bridge: one veth, one lease, one helper while the instance runs" 'out_has "^running veths=1 leases=1 helpers=1$"'
	check "user bridge: after stop no veth, lease or helper" 'out_has "^after-stop veths=0 leases=0 helpers=0$"'
	check "user bridge: a published port answers on this host's loopback" 'out_has "^published: HTTP/1.[01] 200"'
	check "user bridge: hutch-net refuses to wire a network namespace that is not the user's own" \
		'out_has "^forge-host: reply: -1 the network namespace to wire is not one of the caller.s containers"'
	check "user bridge: hutch-net checks the policy itself" 'out_has "^forge-priv: reply: -1 network .priv. is not allowed for users"'
	check "user bridge: hutch-net checks privileged ports itself" 'out_has "^forge-port: reply: -1 host port 80 is privileged"'
	check "user bridge: the admin's bridge and subnet are used, whatever the request says" \
		'out_has "^forge-own: reply: 0 $" && out_has "^forge-own: wired: 2 False$"'
	check "user bridge: a namespace of the user's own reaches the bridge as itself" 'out_has "^own-address: yes$" && ! out_has "^setup: "'
	check "user bridge: ... but not this host's loopback-only services through the bridge (route_localnet's guard)" 'out_has "^host-loopback: no$"'
	check "user bridge: ... nor the bridge from another address (anti-spoofing)" 'out_has "^other-address: no$"'
	check "user bridge: ... nor with another address and MAC" 'out_has "^other-mac: no$"'
	check "user bridge: a killed helper's veth goes with the next helper, which may reuse its address" \
		'out_has "^ub4: 1$" && out_has "^after-kill: .*inet 10\.89\.0\.2/24" && out_has "^orphan: 0$"'
	check "user bridge: nothing left at the end" 'out_has "^end veths=0 leases=0 helpers=0 evil=0$"'
	leftovers "user bridge"
fi
finish
