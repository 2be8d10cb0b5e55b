#!/bin/bash
# Build from a definition file into a SIF against mksquashfs alone on the same tree: the
# busybox recipe with a data tree in %files (a copy of the host's /usr/lib/python3*, the
# files an image of a real program carries), and `apptainer build` of the same recipe where
# Apptainer is installed. hutch's overhead over mksquashfs is what the build adds to the
# squashing every build does (bootstrap, %files, %post in the container, metadata, SIF).
# The recipe has no %post, so that the bench starts no container (it runs beside the
# integration suite without its lock); %post's cost is one container start (bench/startup.sh).
# usage: bench/build.sh [HUTCH] [RUNS]   (as root; prints medians and ratios)
set -euo pipefail
hutch=$(readlink -f "${1:-build/hutch}")
runs=${2:-5}
[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }
work=$(mktemp -d /tmp/hutch-bench-build.XXXXXX)
trap 'rm -rf "$work"' EXIT
data=$(ls -d /usr/lib/python3* 2>/dev/null | head -1)
[ -n "$data" ] || data=/usr/share/doc
cat > "$work/bench.def" <<EOF
Bootstrap: busybox

%files
    $data /opt/data

%runscript
    echo hello
EOF
now() { date +%s.%N; }
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
time_hutch() {
	local t0 t1
	t0=$(now)
	"$hutch" build -q --force "$work/out.sif" "$work/bench.def"
	t1=$(now)
	echo "$t1 - $t0" | bc
}
time_mksquashfs() {
	local t0 t1
	t0=$(now)
	mksquashfs "$work/tree" "$work/out.sqfs" -noappend -quiet -no-progress >/dev/null
	t1=$(now)
	echo "$t1 - $t0" | bc
}
"$hutch" build -q --force --sandbox "$work/tree" "$work/bench.def"
size=$(du -sm "$work/tree" | cut -f1)
for i in $(seq "$runs"); do time_hutch; done | median > "$work/hutch.t"
for i in $(seq "$runs"); do time_mksquashfs; done | median > "$work/mksq.t"
h=$(cat "$work/hutch.t") m=$(cat "$work/mksq.t")
printf 'tree: busybox + %s (%s MiB), %s cores, median of %s runs\n' "$data" "$size" "$(nproc)" "$runs"
printf 'hutch build (recipe -> SIF)  %6.2f s\n' "$h"
printf 'mksquashfs alone (same tree) %6.2f s\n' "$m"
printf 'ratio hutch/mksquashfs       %6.2f (overhead %+.0f %%)\n' "$(echo "$h / $m" | bc -l)" "$(echo "($h / $m - 1) * 100" | bc -l)"
if command -v apptainer >/dev/null; then
	t0=$(now)
	apptainer -q build --force "$work/app.sif" "$work/bench.def"
	t1=$(now)
	a=$(echo "$t1 - $t0" | bc)
	printf 'apptainer build              %6.2f s (hutch/apptainer %.2f)\n' "$a" "$(echo "$h / $a" | bc -l)"
else
	echo "apptainer: not installed, not compared"
fi
