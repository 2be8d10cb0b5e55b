#!/bin/bash
# Build from a definition file into a SIF against mksquashfs alone on the same tree: the
# busybox recipe with a data tree in %files (a copy of the host's /usr/lib/python3*, the
# files an image of a real program carries), and `apptainer build` of the same recipe where
# Apptainer is installed. hutch's overhead over mksquashfs is what the build adds to the
# squashing every build does (bootstrap, %files, %post in the container, metadata, SIF).
# The recipe has no %post, so that the bench starts no container (it runs beside the
# integration suite without its lock); %post's cost is one container start (bench/startup.sh).
# Then the same for a debootstrap recipe on a cached rootfs: a minbase Debian 12 debootstrapped
# once into BUILD_BENCH_CACHE (default /var/tmp/hutch-bench-debootstrap, kept for the next
# run; needs deb.debian.org), built as `Bootstrap: localimage` of that tree, so that the
# download is not what is timed.
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
time_hutch() { # [DEF]
	local t0 t1
	t0=$(now)
	"$hutch" build -q --force "$work/out.sif" "${1:-$work/bench.def}"
	t1=$(now)
	echo "$t1 - $t0" | bc
}
time_mksquashfs() { # [TREE]
	local t0 t1
	t0=$(now)
	mksquashfs "${1:-$work/tree}" "$work/out.sqfs" -noappend -quiet -no-progress >/dev/null
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

# --- a debootstrap recipe, its rootfs cached
cache=${BUILD_BENCH_CACHE:-/var/tmp/hutch-bench-debootstrap}
if [ ! -x "$cache/bin/sh" ]; then
	if ! command -v debootstrap >/dev/null && [ ! -x /usr/sbin/debootstrap ]; then
		echo "debootstrap: not installed, its recipe not measured"
		exit 0
	fi
	rm -rf "$cache"
	PATH=$PATH:/usr/sbin debootstrap --variant=minbase bookworm "$cache" http://deb.debian.org/debian >/dev/null 2>&1 ||
		{ echo "debootstrap: deb.debian.org cannot be reached, its recipe not measured"; rm -rf "$cache"; exit 0; }
fi
printf 'Bootstrap: localimage\nFrom: %s\n\n%%runscript\n    cat /etc/debian_version\n' "$cache" > "$work/deb.def"
"$hutch" build -q --force --sandbox "$work/debtree" "$work/deb.def"
size=$(du -sm "$work/debtree" | cut -f1)
for i in $(seq "$runs"); do time_hutch "$work/deb.def"; done | median > "$work/hutch.t"
for i in $(seq "$runs"); do time_mksquashfs "$work/debtree"; done | median > "$work/mksq.t"
h=$(cat "$work/hutch.t") m=$(cat "$work/mksq.t")
printf 'tree: debootstrap minbase bookworm, cached (%s MiB), median of %s runs\n' "$size" "$runs"
printf 'hutch build (recipe -> SIF)  %6.2f s\n' "$h"
printf 'mksquashfs alone (same tree) %6.2f s\n' "$m"
printf 'ratio hutch/mksquashfs       %6.2f (overhead %+.0f %%)\n' "$(echo "$h / $m" | bc -l)" "$(echo "($h / $m - 1) * 100" | bc -l)"
