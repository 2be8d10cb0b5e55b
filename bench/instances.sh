#!/bin/bash
# Instance benchmark, as an unprivileged user: time from `instance start` to a service
# answering (busybox httpd from the image's startscript), `instance list` with 1, 10 and
# 100 instances, `instance stop`, and the memory an idle instance leaves behind
# (supervisor, FUSE server, init: RSS and PSS from /proc/PID/smaps_rollup);
# the same for podman (run -d, ps, stop, conmon with its container's init) on the same rootfs, in the same run; and
# (bench/systemd.sh) start -> service answering through a systemd user manager.
# usage: bench/instances.sh BUILD/hutch [RUNS]      (as root; ./dev.sh bench installs peers)
set -euo pipefail
hutch=$(readlink -f "$1")
runs=${2:-20}
. "$(dirname "$0")/lib.sh"
work=$(mktemp -d /tmp/hutch-bench.XXXXXX)
port=18380
cleanup() {
	runuser -u "$user" -- env HOME="/home/$user" XDG_RUNTIME_DIR="$work/xdg" "$hutch" instance stop --all --force >/dev/null 2>&1 || true
	podman_cleanup "$work"
	rm -rf "$work"
}
trap cleanup EXIT
chmod 755 "$work"
cc -O2 -o "$work/timeit" "$src/bench/timeit.c"
cc -O2 -o "$work/svcwait" "$src/bench/svcwait.c"
chown -R "$user" "$work"
podman_setup "$work"
as_user() { runuser -u "$user" -- env HOME="/home/$user" USER="$user" XDG_RUNTIME_DIR="$work/xdg" HUTCH_TEST_PORT=$port $(podman_env "$work") "$@"; }
as_user mkdir -p -m 0700 "$work/xdg"
as_user bash "$src/tests/helpers/mkimage.sh" "$work/img" "$hutch" >/dev/null
img=$work/img
as_user cp -a "$img/rootfs" "$work/idle"
rm -f "$work/idle/.singularity.d/startscript"
podman="podman --runtime runc --cgroup-manager=cgroupfs --events-backend=file"
# podman's --init (catatonit) forwards SIGTERM to httpd, as hutch's init does; without it
# httpd as PID 1 ignores SIGTERM and every podman stop waits out its timeout
pinit=
command -v catatonit >/dev/null && pinit=--init
cd "$work"

median() { sort -n | awk '{v[NR]=$1} END {if (NR) printf "%.2f", (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }
declare -A res

# start_loop NAME START_CMD... : runs times, stop between (untimed)
start_loop() {
	local name=$1 stopcmd=$2
	shift 2
	local i cmd_ms=() svc_ms=()
	for i in $(seq "$runs"); do
		read -r a b < <(as_user "$work/svcwait" "$port" "$@" 2>/dev/null) || { echo "  $name: failed"; eval "$stopcmd" >/dev/null 2>&1; return; }
		cmd_ms+=("$a")
		svc_ms+=("$b")
		eval "$stopcmd" >/dev/null 2>&1
	done
	res[$name-cmd]=$(printf '%s\n' "${cmd_ms[@]}" | median)
	res[$name-svc]=$(printf '%s\n' "${svc_ms[@]}" | median)
	printf '  %-28s command returns %8.2f ms, service answers %8.2f ms (median of %d)\n' "$name" "${res[$name-cmd]}" "${res[$name-svc]}" "$runs"
}

# stop_loop NAME STARTCMD STOP_CMD...
stop_loop() {
	local name=$1 startcmd=$2
	shift 2
	local i v=()
	for i in $(seq "$runs"); do
		eval "$startcmd" >/dev/null 2>&1 || true
		read -r a b < <(as_user "$work/svcwait" 0 "$@" 2>/dev/null) || { echo "  $name: failed"; return; }
		v+=("$a")
	done
	res[$name]=$(printf '%s\n' "${v[@]}" | median)
	printf '  %-28s %8.2f ms (median of %d)\n' "$name" "${res[$name]}" "$runs"
}

mem_of() { # pid -> "rss_kib pss_kib pss_anon_kib" (anon: heap and stacks, the private part)
	awk '/^Rss:/{r=$2} /^Pss:/{p=$2} /^Pss_Anon:/{a=$2} END {print r+0, p+0, a+0}' "/proc/$1/smaps_rollup" 2>/dev/null || echo "0 0 0"
}

echo "instances: $runs runs each, as user '$user', $(nproc) cores, kernel $(uname -r)"
echo "start -> service answering on 127.0.0.1:$port:"
start_loop hutch-start-folder "as_user $hutch instance stop web" "$hutch" -q instance start "$img/rootfs" web
start_loop hutch-start-sif "as_user $hutch instance stop web" "$hutch" -q instance start "$img/image.sif" web
if command -v podman >/dev/null; then
	as_user $podman rm -af >/dev/null 2>&1 || true
	start_loop podman-run-d "as_user $podman rm -f -t 0 web" $podman run -d $pinit --name web --network host --rootfs "$img/rootfs" httpd -f -p "$port" -h /srv/www
fi

echo "stop:"
stop_loop hutch-stop "as_user $hutch instance start $img/image.sif web" "$hutch" -q instance stop web
if command -v podman >/dev/null; then
	stop_loop podman-stop "as_user $podman rm -f -t 0 web; as_user $podman run -d $pinit --name web --network host --rootfs $img/rootfs httpd -f -p $port -h /srv/www; " $podman stop -t 10 web
	as_user $podman rm -af >/dev/null 2>&1 || true
fi

echo "memory of one idle instance (SIF image, busybox httpd):"
as_user "$hutch" instance start "$img/image.sif" web >/dev/null 2>&1
sleep 3 # idle: the FUSE server gives back its start-up heap after 2 s without requests
tr=0 tp=0 ta=0
for comm in hutch-supervise hutch-sqfs-mon hutch-squashfs hutch-init; do
	p=$(pgrep -u "$user" -x "$comm" | head -1) || true
	[ -n "$p" ] || { printf '  %-28s (not running)\n' "$comm"; continue; }
	read -r r pss an < <(mem_of "$p")
	printf '  %-28s RSS %6d KiB  PSS %6d KiB  (private %4d KiB)\n' "$comm" "$r" "$pss" "$an"
	tr=$((tr + r)) tp=$((tp + pss)) ta=$((ta + an))
done
printf '  %-28s RSS %6d KiB  PSS %6d KiB  (private %4d KiB)\n' "hutch total per instance" "$tr" "$tp" "$ta"
res[hutch-pss]=$tp res[hutch-rss]=$tr
as_user "$hutch" instance stop web >/dev/null 2>&1
if command -v podman >/dev/null; then
	as_user $podman run -d $pinit --name web --network host --rootfs "$img/rootfs" httpd -f -p "$port" -h /srv/www >/dev/null
	sleep 3 # idle, as hutch's above
	# conmon and its container's init (--init: catatonit as podman-init), the counterparts
	# of the supervisor and hutch-init; httpd, the service, is counted on neither side
	p=
	for q in $(pgrep -u "$user" -x conmon); do if pgrep -P "$q" >/dev/null; then p=$q; fi; done
	if [ -z "$p" ]; then
		printf '  %-28s (not running)\n' conmon
	else
		tr=0 tp=0 ta=0
		kids=
		[ -n "$pinit" ] && kids=$(pgrep -P "$p") # without --init, conmon's child is httpd
		for q in "$p" $kids; do
			read -r r pss an < <(mem_of "$q")
			printf '  %-28s RSS %6d KiB  PSS %6d KiB  (private %4d KiB)\n' "$(cat "/proc/$q/comm")" "$r" "$pss" "$an"
			tr=$((tr + r)) tp=$((tp + pss)) ta=$((ta + an))
		done
		printf '  %-28s RSS %6d KiB  PSS %6d KiB  (private %4d KiB)\n' "podman total per container" "$tr" "$tp" "$ta"
		res[conmon-pss]=$tp res[conmon-rss]=$tr
	fi
	as_user $podman rm -f -t 0 web >/dev/null 2>&1
fi

echo "list with N running (idle instances / containers):"
have=0 phave=0
for n in 1 10 100; do
	while [ $have -lt $n ]; do have=$((have + 1)); as_user "$hutch" -q instance start "$work/idle" "idle$have" >/dev/null; done
	r=$(as_user "$work/timeit" "$runs" "$hutch" instance list)
	res[hutch-list-$n]=${r%% *}
	printf '  %-28s %8.2f ms\n' "hutch instance list ($n)" "${res[hutch-list-$n]}"
	if command -v podman >/dev/null; then
		while [ $phave -lt $n ]; do phave=$((phave + 1)); as_user $podman run -d --name "idle$phave" --network none --rootfs "$img/rootfs" sleep 100000 >/dev/null; done
		r=$(as_user "$work/timeit" 5 $podman ps)
		res[podman-ps-$n]=${r%% *}
		printf '  %-28s %8.2f ms\n' "podman ps ($n)" "${res[podman-ps-$n]}"
	fi
done
as_user "$hutch" instance stop --all --force >/dev/null 2>&1 || true
if command -v podman >/dev/null; then as_user $podman rm -af -t 0 >/dev/null 2>&1 || true; fi

ratio() { # label a b
	if [ -n "${res[$2]:-}" ] && [ -n "${res[$3]:-}" ]; then
		printf '  %-48s %6.2fx\n' "$1" "$(echo "${res[$2]} / ${res[$3]}" | bc -l)"
	fi
}
echo "ratios (peer / hutch; > 1 means hutch is faster or smaller):"
ratio "podman run -d / hutch start (SIF), to service" podman-run-d-svc hutch-start-sif-svc
ratio "podman stop / hutch stop" podman-stop hutch-stop
ratio "podman ps / hutch list (100)" podman-ps-100 hutch-list-100
ratio "conmon+init PSS / hutch idle PSS" conmon-pss hutch-pss
echo "targets: start <= 30 ms; list of 100 <= 20 ms; idle PSS <= conmon's with its container's init"

# start -> service answering through a systemd user manager, against the plain supervisor
# and podman run -d in that same sub-run, and the idle memory systemd mode adds: a real
# `systemd --user` of the bench user in a namespace of its own (bench/systemd.sh, which
# sets it up and tears it down)
if [ -x /lib/systemd/systemd ] && grep -q '^0::' /proc/self/cgroup; then
	echo "through a systemd user manager (bench/systemd.sh):"
	bash "$src/bench/systemd.sh" "$hutch" "$runs" | sed 1d
fi
