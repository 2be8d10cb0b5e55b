#!/bin/bash
# Startup benchmark: median wall time and peak RSS of running `true` in a container, as an
# unprivileged user, for hutch (folder, squashfs, SIF) and the peers installed from Debian
# on the same busybox rootfs: bwrap (folder), ch-run (folder, squashfs), podman run --rm
# (--rootfs folder, runc: crun refuses hybrid-cgroup hosts). Prints a table and ratios.
# hutch's squashfs and SIF rows after the first run find the image's /bin/sh in the
# decompressed-file cache; the "nocache" row is every start as an image's first.
# usage: bench/startup.sh BUILD/hutch [RUNS]      (as root; ./dev.sh bench installs peers)
set -euo pipefail
hutch=$(readlink -f "$1")
runs=${2:-50}
. "$(dirname "$0")/lib.sh"
build=$(dirname "$hutch")
work=$(mktemp -d /tmp/hutch-bench.XXXXXX)
trap 'podman_cleanup "$work"; rm -rf "$work"' EXIT
chmod 755 "$work"
podman_setup "$work"
cc -O2 -o "$work/timeit" "$src/bench/timeit.c"
chown -R "$user" "$work"
as_user() { runuser -u "$user" -- env HOME="/home/$user" USER="$user" XDG_RUNTIME_DIR="$work/xdg" $(podman_env "$work") ${HUTCH_CONF:+HUTCH_CONF="$HUTCH_CONF"} "$@"; }
as_user mkdir -p "$work/xdg"
as_user bash "$src/tests/helpers/mkimage.sh" "$work/img" "$hutch" >/dev/null
img=$work/img
cd "$work"

declare -A med rss
measure() { # name command...
	local name=$1
	shift
	local r
	if ! r=$(as_user "$work/timeit" "$runs" "$@" 2>"$work/err"); then
		echo "  $name: failed: $(tail -1 "$work/err")"
		return
	fi
	read -r m p10 p90 k <<< "$r"
	med[$name]=$m
	rss[$name]=$k
	printf '  %-22s median %8.2f ms  (p10 %7.2f, p90 %7.2f)  peak RSS %6d KiB\n' "$name" "$m" "$p10" "$p90" "$k"
}

echo "startup: $runs runs each, as user '$user', $(nproc) cores, kernel $(uname -r)"
measure hutch-folder "$hutch" exec "$img/rootfs" true
measure hutch-squashfs "$hutch" exec "$img/image.sqfs" true
measure hutch-sif "$hutch" exec "$img/image.sif" true
# every start as the first of an image: without the decompressed-file cache
echo 'file cache size = 0' > "$work/nocache.conf"
HUTCH_CONF=$work/nocache.conf measure hutch-sif-nocache "$hutch" exec "$img/image.sif" true
command -v bwrap >/dev/null && measure bwrap-folder bwrap --bind "$img/rootfs" / --proc /proc --dev /dev --unshare-user --unshare-pid true
if command -v ch-run >/dev/null; then
	measure ch-run-folder ch-run "$img/rootfs" -- true
	measure ch-run-squashfs ch-run "$img/image.sqfs" -- true
fi
if command -v podman >/dev/null; then
	saved=$runs
	runs=$(( runs < 10 ? runs : 10 ))
	measure podman-run-rm podman --runtime runc --cgroup-manager=cgroupfs --events-backend=file run --rm --network=none --rootfs "$img/rootfs" true
	runs=$saved
fi

ratio() { # label a b
	if [ -n "${med[$2]:-}" ] && [ -n "${med[$3]:-}" ]; then
		printf '  %-44s %6.2fx\n' "$1" "$(echo "${med[$2]} / ${med[$3]}" | bc -l)"
	fi
}
echo "ratios (time, lower is better for hutch):"
ratio "hutch folder / ch-run folder (target <= 1.0)" hutch-folder ch-run-folder
ratio "hutch folder / bwrap folder" hutch-folder bwrap-folder
ratio "hutch SIF / ch-run squashfs (target <= 0.35)" hutch-sif ch-run-squashfs
ratio "hutch SIF, no cache / ch-run squashfs" hutch-sif-nocache ch-run-squashfs
ratio "hutch squashfs / ch-run squashfs" hutch-squashfs ch-run-squashfs
ratio "podman / hutch SIF (target >= 20)" podman-run-rm hutch-sif
ratio "podman / hutch folder" podman-run-rm hutch-folder
