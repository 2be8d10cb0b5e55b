#!/bin/bash
# Instances through a systemd user manager against hutch's own supervisor and podman run -d,
# in one run: start -> service answering (busybox httpd from the image's startscript), 48
# parallel starts through the manager, and what systemd mode adds to an idle instance's
# memory in hutch's own processes. The manager is a real `systemd --user` of the bench user
# in a private mount and cgroup namespace, as tests/integration/t-systemd.sh makes it.
# usage: bench/systemd.sh BUILD/hutch [RUNS]      (as root; ./dev.sh bench installs podman)
set -euo pipefail
hutch=$(readlink -f "$1")
runs=${2:-20}
. "$(dirname "$0")/lib.sh"
if [ "${3:-}" != inner ]; then
	work=$(mktemp -d /tmp/hutch-bench.XXXXXX)
	v2=$(awk '$3 == "cgroup2" {print $2; exit}' /proc/self/mounts)
	cg=$v2$(sed -n 's/^0:://p' /proc/self/cgroup)/hutch-bench-systemd-$$
	cg=${cg//\/\//\/}
	cleanup() {
		podman_cleanup "$work"
		find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
		rm -rf "$work"
	}
	trap cleanup EXIT
	chmod 755 "$work"
	mkdir -p "$work/bin"
	cp "$hutch" "$(dirname "$hutch")"/hutch-squashfs "$(dirname "$hutch")"/hutch-init "$(dirname "$hutch")"/hutch-systemd "$work/bin/" 2>/dev/null || true
	cc -O2 -o "$work/svcwait" "$src/bench/svcwait.c"
	chown -R "$user" "$work"
	runuser -u "$user" -- env HOME="/home/$user" bash "$src/tests/helpers/mkimage.sh" "$work/img" "$work/bin/hutch" >/dev/null
	podman_setup "$work"
	echo "systemd mode: $runs runs each, as user '$user', $(nproc) cores, kernel $(uname -r)"
	if command -v podman >/dev/null; then
		pm() { runuser -u "$user" -- env HOME="/home/$user" XDG_RUNTIME_DIR="$work/xdg" $(podman_env "$work") "$@"; }
		pm mkdir -p -m 0700 "$work/xdg"
		p="podman --runtime runc --cgroup-manager=cgroupfs --events-backend=file"
		v=()
		for i in $(seq "$runs"); do
			read -r _ b < <(pm "$work/svcwait" 18480 $p run -d --init --name web --network host \
				--rootfs "$work/img/rootfs" httpd -f -p 18480 -h /srv/www 2>/dev/null)
			v+=("$b")
			pm $p rm -f -t 0 web >/dev/null 2>&1
		done
		printf '%s\n' "${v[@]}" | sort -n | awk '{v[NR]=$1} END {printf "%.2f\n", v[int((NR+1)/2)]}' > "$work/podman.ms"
	fi
	mkdir "$cg" && chown -R "$user" "$cg"
	(echo "$BASHPID" > "$cg/cgroup.procs" && exec unshare --mount --cgroup --propagation private \
		env WORK="$work" bash "$0" "$work/bin/hutch" "$runs" inner) </dev/null
	exit 0
fi

umount -l /sys/fs/cgroup 2>/dev/null
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mkdir -p /run/systemd && mount -t tmpfs tmpfs /run/systemd && mkdir /run/systemd/system
uid=$(id -u "$user")
rt=/run/user/$uid
mkdir -p /run/user && mount -t tmpfs -o mode=0755 tmpfs /run/user && install -d -o "$user" -g "$user" -m 0700 "$rt"
asu() { setpriv --reuid="$user" --regid="$user" --init-groups env -i HOME="/home/$user" XDG_RUNTIME_DIR="$rt" PATH="$PATH" HUTCH_TEST_PORT=18480 "$@"; }
asu /lib/systemd/systemd --user </dev/null >/dev/null 2>&1 &
mgr=$!
# (each step may fail, a manager already gone included, without ending the teardown or
# failing the bench under set -e)
stop_manager() {
	set +e
	asu "$hutch" instance stop --all --force >/dev/null 2>&1
	asu systemctl --user exit >/dev/null 2>&1
	for i in $(seq 50); do kill -0 "$mgr" 2>/dev/null || break; sleep 0.1; done
	kill -9 "$mgr" 2>/dev/null
	return 0
}
trap stop_manager EXIT
for i in $(seq 100); do [ -S "$rt/systemd/private" ] && break; sleep 0.1; done
img=$WORK/img/image.sif
median() { sort -n | awk '{v[NR]=$1} END {if (NR) printf "%.2f", (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }
declare -A res
for mode in no yes; do
	v=()
	for i in $(seq "$runs"); do
		read -r _ b < <(asu "$WORK/svcwait" 18480 "$hutch" -q instance start --systemd $mode "$img" web 2>/dev/null) ||
			{ echo "  --systemd $mode: failed"; break; }
		v+=("$b")
		asu "$hutch" instance stop web >/dev/null 2>&1
	done
	res[$mode]=$(printf '%s\n' "${v[@]}" | median)
	printf '  start -> service answering, --systemd %-3s %8.2f ms (median of %d)\n' "$mode" "${res[$mode]}" "$runs"
done
[ -s "$WORK/podman.ms" ] && res[podman]=$(cat "$WORK/podman.ms") &&
	printf '  start -> service answering, podman run -d %8.2f ms (median of %d)\n' "${res[podman]}" "$runs"
awk -v y="${res[yes]}" -v n="${res[no]}" -v p="${res[podman]:-0}" 'BEGIN {
	printf "  ratio systemd/plain %.2f (target <= 2)", y / n
	if (p > 0) printf ", systemd/podman %.2f (target <= 0.25)", y / p
	printf "\n" }'

# 48 at once through the manager (Apptainer's #3607: D-Bus failures at 24-48)
t0=$(date +%s%N)
pids=()
for i in $(seq 48); do
	asu env HUTCH_TEST_PORT=$((19000 + i)) "$hutch" -q instance start --systemd yes "$img" "p$i" >"$WORK/p$i.out" 2>&1 &
	pids+=($!)
done
wait "${pids[@]}" || true
t1=$(date +%s%N)
up=$(asu "$hutch" instance list | awk '$1 ~ /^p[0-9]/ && / systemd /' | wc -l)
printf '  48 parallel starts through the manager: %d up in %.0f ms\n' "$up" "$(((t1 - t0) / 1000000))"
asu "$hutch" instance stop --all >/dev/null 2>&1 || true

# idle memory: hutch's own processes of one idle instance (supervisor, image server and its
# monitor, init; hutch-systemd exits once the unit runs, counted should one be left), PSS
# from smaps_rollup, in both modes; the manager's own memory is the user's, shared by every
# unit, and not hutch's
declare -A pss anon
for mode in no yes; do
	asu "$hutch" instance start --systemd $mode "$img" web >/dev/null 2>&1
	sleep 3 # idle: the image server gives back its start-up heap after 2 s without requests
	pss[$mode]=0 anon[$mode]=0
	for comm in hutch-supervise hutch-sqfs-mon hutch-squashfs hutch-init hutch-systemd; do
		for p in $(pgrep -u "$user" -x "$comm"); do
			read -r k a < <(awk '/^Pss:/{p=$2} /^Pss_Anon:/{a=$2} END {print p+0, a+0}' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0 0)
			pss[$mode]=$((pss[$mode] + ${k:-0})) anon[$mode]=$((anon[$mode] + ${a:-0}))
		done
	done
	n=$(pgrep -u "$user" -x hutch-systemd | wc -l) || true
	printf '  idle, --systemd %-3s hutch processes PSS %5d KiB (private %4d KiB; hutch-systemd left: %d)\n' "$mode" "${pss[$mode]}" "${anon[$mode]}" "$n"
	asu "$hutch" instance stop web >/dev/null 2>&1
done
printf '  idle memory systemd mode adds in hutch'"'"'s own processes: %d KiB PSS (private %d KiB)\n' "$((pss[yes] - pss[no]))" "$((anon[yes] - anon[no]))"
