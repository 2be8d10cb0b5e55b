#!/bin/bash
# Read benchmark: reading an image's files inside the container, hutch against the kernel's
# squashfs (a loop mount, as root), squashfuse_ll, ch-run and Apptainer (where installed), on
# the same gzip squashfs (hutch also reads it as a SIF). bench/readtree (static) runs inside
# each container and times its own reads: a small-file tree (5000 files of 1-50 KB, text, as
# a site-packages), 200 MiB of compressible and 200 MiB of incompressible data, and the
# small-file tree by two readers at once (two processes, a half each). Every mount is fresh
# per run (hutch, ch-run and Apptainer mount per exec; squashfuse_ll and the kernel's are
# mounted and unmounted around each run). warm: the image file in the host's page cache;
# cold: page cache dropped and hutch's decompressed-file cache emptied before each run (an
# image's first start). The whole set runs quiet, then again with a CPU hog on each core
# (bounded: it ends with the script). Prints medians (ms) and ratios.
# usage: bench/read.sh BUILD/hutch [RUNS] [quiet|load|both|python]      (as root)
# (python: Python's start alone, without the tree's image and passes)
set -euo pipefail
hutch=$(readlink -f "$1")
runs=${2:-5}
passes=${3:-both}
. "$(dirname "$0")/lib.sh"
work=$(mktemp -d /tmp/hutch-bench-read.XXXXXX)
hogs=()
mnt=$work/mnt
cleanup() {
	for p in "${hogs[@]}"; do kill "$p" 2>/dev/null || true; done
	umount -l "$mnt" 2>/dev/null || true
	umount -l "$work/xdg" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
chmod 755 "$work"
copy_build "$hutch" "$work/bin"
hutch=$work/bin/hutch
as_user() { runuser -u "$user" -- env HOME="/home/$user" USER="$user" XDG_RUNTIME_DIR="$work/xdg" "$@"; }

# ---- the image: the reader and the data, built once per run of the script
root=$work/rootfs
mkdir -p "$root"/{proc,sys,dev,tmp,etc,home} "$root/data/big" "$mnt" "$work/xdg"
# the user's XDG_RUNTIME_DIR, where the decompressed-file cache lives, is a tmpfs as on a
# login (systemd-logind's /run/user/UID), not the disk under /tmp
mount -t tmpfs -o "mode=0700,uid=$(id -u "$user"),size=512m" hutch-bench-xdg "$work/xdg"
chown -R "$user" "$work/xdg" "$mnt"
[ "$passes" = python ] || {
# what ch-run binds the host's over
touch "$root"/etc/{passwd,group,hosts,resolv.conf}
cc -O2 -static -o "$root/readtree" "$src/bench/readtree.c"
python3 - "$root/data" <<'PY'
import os, random, sys
random.seed(23)
base = sys.argv[1]
words = [''.join(random.choice('abcdefghijklmnopqrstuvwxyz_') for _ in range(random.randint(2, 12)))
         for _ in range(3000)]
def text(n):
    out, size = [], 0
    while size < n:
        line = '    ' * random.randint(0, 3) + ' '.join(random.choices(words, k=random.randint(3, 12))) + '\n'
        out.append(line)
        size += len(line)
    return ''.join(out)[:n]
for d in range(50):
    os.makedirs(f'{base}/small/pkg{d:02d}')
    for f in range(100):
        with open(f'{base}/small/pkg{d:02d}/mod{f:03d}.py', 'w') as fh:
            fh.write(text(random.randint(1024, 50 * 1024)))
chunk = text(4 << 20).encode()
with open(f'{base}/big/compressible', 'wb') as fh:
    for _ in range(50):
        fh.write(chunk)
PY
head -c $((200 << 20)) /dev/urandom > "$root/data/big/incompressible"
mksquashfs "$root" "$work/image.sqfs" -noappend -quiet -no-progress -all-root -comp gzip >/dev/null
"$hutch" build -q --force "$work/image.sif" "$root" >/dev/null
mkdir -p "$work/xdg"
chown -R "$user" "$work/xdg" "$mnt"
chmod 644 "$work/image.sqfs" "$work/image.sif"
}

declare -A med
cold=0
prepare() { # before each run
	if [ "$cold" = 1 ]; then
		rm -rf "$work/xdg/hutch" "$work/xdg"/*cache* 2>/dev/null || true
		sync
		echo 3 > /proc/sys/vm/drop_caches
	fi
}
# run_one RUNTIME READERS PATH: prints readtree's line
run_one() {
	local rt=$1 r=$2 p=$3
	case $rt in
	hutch) as_user "$hutch" exec "$work/image.sif" /readtree -r "$r" "$p" ;;
	kernel)
		mount -t squashfs -o loop,ro "$work/image.sqfs" "$mnt"
		chroot "$mnt" /readtree -r "$r" "$p" || { umount "$mnt"; return 1; }
		umount "$mnt" ;;
	squashfuse_ll)
		as_user squashfuse_ll "$work/image.sqfs" "$mnt"
		as_user "$mnt/readtree" -r "$r" "$mnt$p" || { umount "$mnt"; return 1; }
		umount "$mnt" ;;
	ch-run) as_user ch-run "$work/image.sqfs" -- /readtree -r "$r" "$p" ;;
	apptainer) as_user apptainer exec "$work/image.sif" /readtree -r "$r" "$p" ;;
	esac
}
measure() { # KEY RUNTIME READERS PATH
	local key=$1 rt=$2 r=$3 p=$4 i line ms=() sum=
	for ((i = 0; i < runs; i++)); do
		prepare
		if ! line=$(run_one "$rt" "$r" "$p" 2>"$work/err"); then
			printf '  %-40s failed: %s\n' "$key" "$(tail -1 "$work/err")"
			return
		fi
		read -r t _ _ s <<< "$line"
		ms+=("$t")
		if [ -n "$sum" ] && [ "$s" != "$sum" ]; then
			echo "  $key: checksums differ between runs" >&2
			exit 1
		fi
		sum=$s
	done
	med[$key]=$(printf '%s\n' "${ms[@]}" | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}')
	printf '  %-40s median %9.1f ms  (runs: %s)  sum %s\n' "$key" "${med[$key]}" "${ms[*]}" "$sum"
}

runtimes=(hutch kernel squashfuse_ll)
command -v ch-run >/dev/null && runtimes+=(ch-run)
command -v apptainer >/dev/null && runtimes+=(apptainer)
pass() { # LABEL
	local label=$1 rt c
	for c in warm cold; do
		cold=0
		[ "$c" = cold ] && cold=1
		for rt in "${runtimes[@]}"; do
			measure "$label/$c/small/$rt" "$rt" 1 /data/small
			measure "$label/$c/small2/$rt" "$rt" 2 /data/small
			[ "$c" = cold ] && continue # big files: the warm figures
			measure "$label/$c/bigc/$rt" "$rt" 1 /data/big/compressible
			measure "$label/$c/bigr/$rt" "$rt" 1 /data/big/incompressible
		done
	done
}
ratio() { # LABEL A B [TARGET]
	if [ -n "${med[$2]:-}" ] && [ -n "${med[$3]:-}" ]; then
		printf '  %-58s %6.2fx %s\n' "$1" "$(echo "${med[$3]} / ${med[$2]}" | bc -l)" "${4:-}"
	fi
}
ratios() { # LABEL
	local l=$1 c
	echo "ratios, $l (speed: the peer's time / hutch's, higher is better for hutch):"
	for c in warm cold; do
		ratio "$c small files: hutch vs kernel squashfs" "$l/$c/small/hutch" "$l/$c/small/kernel" "(target >= 1.0)"
		ratio "$c small files: hutch vs squashfuse_ll" "$l/$c/small/hutch" "$l/$c/small/squashfuse_ll"
		ratio "$c small files: hutch vs ch-run" "$l/$c/small/hutch" "$l/$c/small/ch-run"
		ratio "$c small files: hutch vs Apptainer" "$l/$c/small/hutch" "$l/$c/small/apptainer" "(target >= 1.5)"
		ratio "$c small files, two readers: hutch vs kernel" "$l/$c/small2/hutch" "$l/$c/small2/kernel"
		if [ -n "${med[$l/$c/small/hutch]:-}" ] && [ -n "${med[$l/$c/small2/hutch]:-}" ]; then
			printf '  %-58s %6.2fx %s\n' "$c two readers' throughput / one reader's, hutch" \
				"$(echo "${med[$l/$c/small/hutch]} / ${med[$l/$c/small2/hutch]}" | bc -l)" "(target >= 1.8)"
			printf '  %-58s %6.2fx\n' "$c two readers' throughput / one reader's, kernel" \
				"$(echo "${med[$l/$c/small/kernel]:-0} / ${med[$l/$c/small2/kernel]:-1}" | bc -l)"
		fi
	done
	ratio "compressible 200 MiB: hutch vs kernel squashfs" "$l/warm/bigc/hutch" "$l/warm/bigc/kernel"
	ratio "compressible 200 MiB: hutch vs ch-run" "$l/warm/bigc/hutch" "$l/warm/bigc/ch-run"
	ratio "incompressible 200 MiB: hutch vs kernel squashfs" "$l/warm/bigr/hutch" "$l/warm/bigr/kernel" "(target >= 0.9)"
	ratio "incompressible 200 MiB: hutch vs ch-run" "$l/warm/bigr/hutch" "$l/warm/bigr/ch-run"
}

# ---- Python's start from an image: the machine's Debian python3 and its standard library
# (with its compiled modules) copied into an image of their own, `python3 -c pass` and an
# import of many modules, timed from outside (bench/timeit.c: hutch's start included),
# SIF against the unpacked folder, and with the decompressed-file cache emptied before each
# run (an image's first start: the cache in use, and written)
py=$work/py
python_bench() {
	local lib pyver so
	pyver=$(readlink -f /usr/bin/python3)
	[ -x "$pyver" ] || return 0
	lib=/usr/lib/$(basename "$pyver")
	mkdir -p "$py"/{proc,sys,dev,tmp,etc,home,usr/bin}
	cp "$pyver" "$py/usr/bin/python3"
	# the interpreter's libraries and its extension modules' (libmpdec, libsqlite3, ...)
	for so in $(ldd "$pyver" "$lib"/lib-dynload/*.so 2>/dev/null | grep -v ':$' | grep -o '/[^ ]*\.so[^ ]*' | sort -u); do
		[ -e "$py$so" ] && continue
		mkdir -p "$py$(dirname "$so")"
		cp -L "$so" "$py$so"
	done
	touch "$py"/etc/{passwd,group,hosts,resolv.conf}
	mkdir -p "$py/usr/lib"
	cp -a "$lib" "$py/usr/lib/"
	rm -rf "$py$lib/test" "$py$lib/idlelib" "$py$lib/tkinter"
	mksquashfs "$py" "$work/py.sqfs" -noappend -quiet -no-progress -all-root -comp gzip >/dev/null
	"$hutch" build -q --force "$work/py.sif" "$py" >/dev/null
	chmod 644 "$work/py.sif"
	cc -O2 -o "$work/timeit" "$src/bench/timeit.c"
	local imports='import json, email.parser, http.client, xml.dom.minidom, asyncio, decimal, argparse, logging, unittest, sqlite3, csv, subprocess, pathlib, urllib.request, dataclasses, typing'
	local what img t
	for what in pass imports; do
		local code=pass
		[ "$what" = imports ] && code=$imports
		for img in folder sif sif-first ch-run; do
			case $img in
			folder) t=$(as_user "$work/timeit" "$runs" "$hutch" exec "$py" /usr/bin/python3 -c "$code") || t= ;;
			sif) t=$(as_user "$work/timeit" "$runs" "$hutch" exec "$work/py.sif" /usr/bin/python3 -c "$code") || t= ;;
			sif-first) t=$(as_user env TIMEIT_BEFORE="rm -rf '$work/xdg/hutch/cache'" "$work/timeit" "$runs" "$hutch" exec "$work/py.sif" /usr/bin/python3 -c "$code") || t= ;;
			ch-run) command -v ch-run >/dev/null || continue
				t=$(as_user "$work/timeit" "$runs" ch-run "$work/py.sqfs" -- /usr/bin/python3 -c "$code") || t= ;;
			esac
			[ -n "$t" ] || { echo "  python3 -c $what $img: failed"; continue; }
			med[py/$what/$img]=${t%% *}
			printf '  python3 -c %-8s %-10s median %8.1f ms\n' "$what" "$img" "${t%% *}"
		done
		ratio "python3 -c $what: SIF / folder (time, target <= 1.2)" "py/$what/folder" "py/$what/sif"
		ratio "python3 -c $what: SIF first start / folder (time, target <= 2)" "py/$what/folder" "py/$what/sif-first"
		ratio "python3 -c $what: SIF / ch-run squashfs (time)" "py/$what/ch-run" "py/$what/sif"
	done
}

echo "read: $runs runs each, as user '$user', $(nproc) cores, kernel $(uname -r); runtimes: ${runtimes[*]}"
if [ "$passes" = quiet ] || [ "$passes" = both ]; then
	echo "quiet machine:"
	pass quiet
fi
if [ "$passes" = load ] || [ "$passes" = both ]; then
	echo "under load (a CPU hog on each of $(nproc) cores):"
	for ((i = 0; i < $(nproc); i++)); do
		timeout 3600 sh -c 'while :; do :; done' &
		hogs+=($!)
	done
	pass load
	for p in "${hogs[@]}"; do kill "$p" 2>/dev/null || true; done
	hogs=()
fi
if [ "$passes" != load ]; then
	echo "python's start (quiet machine, $runs runs; the ratios are times, lower is better for hutch):"
	python_bench
fi
{ [ "$passes" = quiet ] || [ "$passes" = both ]; } && ratios quiet
{ [ "$passes" = load ] || [ "$passes" = both ]; } && ratios load
exit 0
