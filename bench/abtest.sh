#!/bin/bash
# Back-to-back comparison of two hutch builds on this noisy machine kind: alternate them,
# ROUNDS times, each time RUNS starts, and print the medians side by side.
#   exec:     `hutch exec IMG.sif true`                     (bench/timeit.c)
#   instance: `hutch instance start IMG.sif NAME` until busybox httpd answers, then stop
#             (bench/svcwait.c; the stop is not timed)
# usage: bench/abtest.sh exec|instance A/hutch B/hutch [ROUNDS] [RUNS]   (as root)
set -euo pipefail
mode=$1
a=$(readlink -f "$2")
b=$(readlink -f "$3")
rounds=${4:-3}
runs=${5:-30}
. "$(dirname "$0")/lib.sh"
work=$(mktemp -d /tmp/hutch-abtest.XXXXXX)
port=18381
as_user() { runuser -u "$user" -- env HOME="/home/$user" USER="$user" XDG_RUNTIME_DIR="$work/xdg" HUTCH_TEST_PORT=$port "$@"; }
cleanup() {
	as_user "$a" instance stop --all --force >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT
chmod 755 "$work"
# copies the user can run whatever the builds' folders are
copy_build "$a" "$work/a"
copy_build "$b" "$work/b"
cc -O2 -o "$work/timeit" "$src/bench/timeit.c"
cc -O2 -o "$work/svcwait" "$src/bench/svcwait.c"
chown -R "$user" "$work"
as_user mkdir -p -m 0700 "$work/xdg"
as_user bash "$src/tests/helpers/mkimage.sh" "$work/img" "$work/a/hutch" >/dev/null
img=$work/img/image.sif
cd "$work"

median() { sort -n | awk '{v[NR]=$1} END {printf "%.2f", (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }
one() { # build -> median ms
	local h=$1 i v=()
	if [ "$mode" = exec ]; then
		as_user "$work/timeit" "$runs" "$h" exec "$img" true | cut -d' ' -f1
		return
	fi
	for i in $(seq "$runs"); do
		v+=("$(as_user "$work/svcwait" "$port" "$h" -q instance start "$img" abtest | cut -d' ' -f2)")
		as_user "$h" instance stop abtest >/dev/null 2>&1
	done
	printf '%s\n' "${v[@]}" | median
}
echo "abtest $mode: A=$a B=$b, $rounds rounds of $runs, median ms"
for r in $(seq "$rounds"); do
	ma=$(one "$work/a/hutch")
	mb=$(one "$work/b/hutch")
	printf '  round %d: A %8s  B %8s\n' "$r" "$ma" "$mb"
done
