#!/bin/bash
# Overlay benchmark: `exec true` latency, and write/read throughput (one 100 MiB file; 5000
# small files) through a folder overlay, an ext3 overlay (loop device: as root) and
# --writable-tmpfs, against no overlay and against the same work on the host's disk in the
# same folder. As root (ext3 overlays are root's); apptainer, when installed, runs the same
# rows with its own overlays. --writable-tmpfs's 100 MiB row needs a system hutch.conf whose
# 'sessiondir max size' is above 100 (the default, 64, gives ENOSPC: the row says "failed").
# With BENCH_USER=NAME a user row follows: that user's ext3 overlay, served by hutch-ext3
# under the kernel's overlayfs (start cost, and the 5000 small files against the same user's writes to
# the host's disk).
# usage: [BENCH_USER=NAME] bench/overlay.sh BUILD/hutch [RUNS]      (as root)
set -euo pipefail
hutch=$(readlink -f "$1")
runs=${2:-30}
. "$(dirname "$0")/lib.sh"
# beside the build, on the disk the overlays are meant for (/tmp may be a tmpfs)
work=$(mktemp -d "$(dirname "$hutch")/hutch-bench-overlay.XXXXXX")
trap 'rm -rf "$work"' EXIT
cc -O2 -o "$work/timeit" "$src/bench/timeit.c"
bash "$src/tests/helpers/mkimage.sh" "$work/img" "$hutch" >/dev/null
img=$work/img/image.sif
mkdir "$work/dir"
"$hutch" overlay create --size 1024 "$work/ext3.img"

echo "overlay: $runs runs each, as root, $(nproc) cores, kernel $(uname -r), $(df -T "$work" | awk 'NR==2{print $2}') under $work"
declare -A med
lat() { # name args...
	local name=$1 r
	shift
	r=$("$work/timeit" "$runs" "$hutch" exec "$@" "$img" true)
	med[$name]=${r%% *}
	printf '  exec true %-16s median %7.2f ms\n' "$name" "${med[$name]}"
}
lat none
lat folder -o "$work/dir"
lat ext3 -o "$work/ext3.img"
lat writable-tmpfs --writable-tmpfs
awk -v a="${med[ext3]}" -v b="${med[none]}" 'BEGIN{printf "  ext3 overlay adds %.2f ms to a start (target <= 10)\n", a - b}'

# work SH-SCRIPT in a fresh /w: wall seconds of the whole command
big='dd if=/dev/zero of=/w/big bs=1M count=100 conv=fsync 2>/dev/null && cat /w/big >/dev/null'
small='i=0; while [ $i -lt 5000 ]; do echo x > /w/f$i; i=$((i + 1)); done; sync'
secs() {
	local t0 t1
	t0=$(date +%s%N)
	"$@" >/dev/null 2>&1 || { echo failed; return; }
	t1=$(date +%s%N)
	echo $(((t1 - t0) / 1000000))
}
declare -A ms
row() { # name hutch-args...
	local name=$1
	shift
	ms[$name-big]=$(secs "$hutch" exec "$@" "$img" sh -c "mkdir -p /w && $big && rm -rf /w")
	ms[$name-small]=$(secs "$hutch" exec "$@" "$img" sh -c "mkdir -p /w && $small && rm -rf /w")
	printf '  %-16s 100 MiB write+read %6s ms   5000 small files %6s ms\n' "$name" "${ms[$name-big]}" "${ms[$name-small]}"
}
host() {
	mkdir -p "$work/w"
	ms[host-big]=$(secs busybox sh -c "${big//\/w/$work/w}")
	ms[host-small]=$(secs busybox sh -c "${small//\/w/$work/w}")
	rm -rf "$work/w"
	printf '  %-16s 100 MiB write+read %6d ms   5000 small files %6d ms\n' host-disk "${ms[host-big]}" "${ms[host-small]}"
}
host
row folder -o "$work/dir"
row ext3 -o "$work/ext3.img"
row writable-tmpfs --writable-tmpfs
awk -v h="${ms[host-small]}" -v e="${ms[ext3-small]}" -v f="${ms[folder-small]}" 'BEGIN{
	printf "  small files vs host disk: ext3 %.2fx, folder %.2fx (target >= 0.5x)\n", h / e, h / f }'
if [ -n "${BENCH_USER:-}" ]; then
	uhome=$(getent passwd "$BENCH_USER" | cut -d: -f6)
	as_user() { setpriv --reuid="$BENCH_USER" --regid="$BENCH_USER" --init-groups env HOME="$uhome" USER="$BENCH_USER" "$@"; }
	chmod 0755 "$work"
	mkdir "$work/u"
	chown "$BENCH_USER": "$work/u"
	as_user "$hutch" overlay create --size 1024 --create-dir /w "$work/u/ext3.img"
	# the start with and without the overlay, alternated in rounds (this machine's speed
	# drifts over minutes): the figure is the median of the rounds' differences
	diffs=()
	for round in 1 2 3 4; do
		r=$(as_user "$work/timeit" "$runs" "$hutch" exec "$img" true)
		r2=$(as_user "$work/timeit" "$runs" "$hutch" exec -o "$work/u/ext3.img" "$img" true)
		d=$(awk -v a="${r2%% *}" -v b="${r%% *}" 'BEGIN{printf "%.2f", a - b}')
		diffs+=("$d")
		printf '  user %s, round %d: exec true median %7.2f ms, with an ext3 overlay (hutch-ext3) %7.2f ms: adds %s ms\n' \
			"$BENCH_USER" "$round" "${r%% *}" "${r2%% *}" "$d"
	done
	printf '  user %s: an ext3 overlay adds %s ms to a start (median of the rounds; target <= 10)\n' "$BENCH_USER" \
		"$(printf '%s\n' "${diffs[@]}" | sort -n | awk '{v[NR]=$1} END{print (v[int((NR+1)/2)] + v[int(NR/2)+1]) / 2}')"
	mkdir "$work/u/w" && chown "$BENCH_USER": "$work/u/w"
	hs=$(secs as_user busybox sh -c "${small//\/w/$work/u/w}")
	us=$(secs as_user "$hutch" exec -o "$work/u/ext3.img" "$img" sh -c "$small && rm -f /w/f*")
	printf '  user %s: 5000 small files: host disk %s ms, ext3 overlay (hutch-ext3) %s ms\n' "$BENCH_USER" "$hs" "$us"
fi
if command -v apptainer >/dev/null; then
	apptainer overlay create --size 1024 "$work/app.img" >/dev/null
	r=$("$work/timeit" "$runs" apptainer exec --overlay "$work/app.img" "$img" true)
	printf '  apptainer exec true, ext3 overlay: median %7.2f ms\n' "${r%% *}"
else
	echo "  (apptainer is not installed: no apptainer rows)"
fi
