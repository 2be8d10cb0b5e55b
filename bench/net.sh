#!/bin/bash
# Network benchmark, as an unprivileged user: (1) start time of `exec IMAGE true` with no
# network, --network none, pasta and slirp4netns; (2) request rate (ab, keep-alive off,
# bounded: N requests, 4 at a time) and throughput (curl of a 64 MiB file, 5 times) through
# a published port of busybox httpd in a hutch instance (pasta, slirp4netns) against
# podman's rootless port forwarding of the same server on the same rootfs, in the same run;
# as root, the bridge (start time, and the same server published through nftables DNAT) in a
# network namespace of the bench's own.
# Prints medians and ratios.
# usage: bench/net.sh BUILD/hutch [RUNS] [REQUESTS]   (as root; hutch-net beside hutch)
set -euo pipefail
hutch=$(readlink -f "$1")
runs=${2:-30}
reqs=${3:-3000}
. "$(dirname "$0")/lib.sh"
work=$(mktemp -d /tmp/hutch-bench.XXXXXX)
as_user() { runuser -u "$user" -- env HOME="/home/$user" USER="$user" XDG_RUNTIME_DIR="$work/xdg" $(podman_env "$work") "$@"; }
brns=
cleanup() {
	as_user "$hutch" instance stop -a >/dev/null 2>&1 || true
	[ -n "$brns" ] && { nsenter -t "$brns" -n "$hutch" instance stop -a >/dev/null 2>&1; kill "$brns"; } || true
	podman_cleanup "$work"
	rm -rf "$work"
}
trap cleanup EXIT
chmod 755 "$work"
podman_setup "$work"
cc -O2 -o "$work/timeit" "$src/bench/timeit.c"
chown -R "$user" "$work"
as_user mkdir -p "$work/xdg" "$work/www"
as_user bash "$src/tests/helpers/mkimage.sh" "$work/img" "$hutch" >/dev/null
as_user sh -c "echo hello > '$work/www/index.html'; head -c 64M /dev/zero > '$work/www/big'"
img=$work/img
cd "$work"

declare -A med
run_as=as_user # measure's runner: as the user, or (measure_root) as root
measure() { # name command...
	local name=$1 r
	shift
	if ! r=$($run_as "$work/timeit" "$runs" "$@" 2>"$work/err"); then
		echo "  $name: failed: $(tail -1 "$work/err")"
		return
	fi
	read -r m p10 p90 k <<< "$r"
	med[$name]=$m
	printf '  %-22s median %8.2f ms  (p10 %7.2f, p90 %7.2f)\n' "$name" "$m" "$p10" "$p90"
}

echo "net: $runs starts each, $reqs requests per server, as user '$user', $(nproc) cores, kernel $(uname -r)"
echo "start, exec SIF true:"
measure host "$hutch" exec "$img/image.sif" true
measure none "$hutch" exec --net --network none "$img/image.sif" true
measure pasta "$hutch" exec --net --network pasta "$img/image.sif" true
measure slirp4netns "$hutch" exec --net --network slirp4netns "$img/image.sif" true
# the bridge is root's: measured as root inside a network namespace held for the run, so the
# host's interfaces are never touched (the bridge is made there by the first start)
unshare -n sleep 3600 &
brns=$!
sleep 0.2
in_ns() { nsenter -t "$brns" -n "$@"; }
in_ns ip link set lo up
measure_root() { run_as= measure "$@"; }
in_ns "$hutch" exec --net --network bridge "$img/image.sif" true
measure_root "root host" nsenter -t "$brns" -n "$hutch" exec "$img/image.sif" true
measure_root "root bridge" nsenter -t "$brns" -n "$hutch" exec --net --network bridge "$img/image.sif" true

# serve_bench and wait_port run their clients through $via (empty: here; in_ns: the bridge's)
via=
wait_port() { for _ in $(seq 100); do $via curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0; sleep 0.1; done; return 1; }
declare -A rps mbs
serve_bench() { # name port
	local name=$1 port=$2 r t0 t1
	wait_port "$port" || { echo "  $name: no answer on $port"; return; }
	r=$($via ab -q -n "$reqs" -c 4 "http://127.0.0.1:$port/" 2>&1 | awk '/^Requests per second/{print $4}')
	t0=$(date +%s.%N)
	for _ in 1 2 3 4 5; do $via curl -s -o /dev/null "http://127.0.0.1:$port/big"; done
	t1=$(date +%s.%N)
	rps[$name]=$r
	mbs[$name]=$(echo "5 * 64 / ($t1 - $t0)" | bc -l)
	printf '  %-22s %9.0f requests/s  %8.1f MiB/s\n' "$name" "$r" "${mbs[$name]}"
}

echo "published port, busybox httpd (ab -n $reqs -c 4; 5 x 64 MiB with curl):"
port=$((30000 + $$ % 10000))
for n in pasta slirp4netns; do
	port=$((port + 1))
	as_user "$hutch" instance start --net --network $n -p 127.0.0.1:$port:8080 -B "$work/www:/srv/www" \
		"$img/image.sif" "bench-$n" >/dev/null 2>&1 || { echo "  $n: instance did not start"; continue; }
	serve_bench "hutch-$n" $port
	as_user "$hutch" instance stop "bench-$n" >/dev/null 2>&1 || true
done
port=$((port + 1))
if in_ns "$hutch" instance start --net --network bridge -p 127.0.0.1:$port:8080 -B "$work/www:/srv/www" \
	"$img/image.sif" bench-bridge >/dev/null 2>&1; then
	via=in_ns serve_bench hutch-bridge $port
	in_ns "$hutch" instance stop bench-bridge >/dev/null 2>&1 || true
else
	echo "  bridge: instance did not start"
fi
if command -v podman >/dev/null; then
	port=$((port + 1))
	as_user podman --runtime runc --cgroup-manager=cgroupfs --events-backend=file run -d --name bench-httpd \
		-p 127.0.0.1:$port:8080 -v "$work/www:/srv/www" --rootfs "$img/rootfs" \
		httpd -f -p 8080 -h /srv/www >/dev/null 2>"$work/err" || echo "  podman: $(tail -1 "$work/err")"
	serve_bench podman $port
	as_user podman --events-backend=file rm -f -t 0 bench-httpd >/dev/null 2>&1 || true
fi

ratio() { # label a b (from array $4)
	local -n arr=$4
	if [ -n "${arr[$2]:-}" ] && [ -n "${arr[$3]:-}" ]; then
		printf '  %-48s %8.2f\n' "$1" "$(echo "${arr[$2]} / ${arr[$3]}" | bc -l)"
	fi
}
diff_ms() {
	if [ -n "${med[$2]:-}" ] && [ -n "${med[$3]:-}" ]; then
		printf '  %-48s %+8.2f ms\n' "$1" "$(echo "${med[$2]} - ${med[$3]}" | bc -l)"
	fi
}
echo "start cost over the host network:"
diff_ms "none - host (target <= 1 ms)" none host
diff_ms "pasta - host" pasta host
diff_ms "slirp4netns - host" slirp4netns host
diff_ms "bridge - host, as root" "root bridge" "root host"
echo "ratios (higher is better for hutch):"
ratio "request rate hutch pasta / podman (target >= 1.0)" hutch-pasta podman rps
ratio "request rate hutch slirp4netns / podman" hutch-slirp4netns podman rps
ratio "throughput hutch pasta / podman" hutch-pasta podman mbs
ratio "throughput hutch slirp4netns / podman" hutch-slirp4netns podman mbs
ratio "request rate hutch bridge (root, nftables) / podman" hutch-bridge podman rps
ratio "throughput hutch bridge (root, nftables) / podman" hutch-bridge podman mbs
