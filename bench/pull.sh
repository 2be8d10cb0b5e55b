#!/bin/bash
# Pull benchmark: a multi-layer image of ~MIB MiB (busybox + 8 layers of half random, half
# text files; tests/helpers/mkoci.py) served by Debian's docker-registry on loopback, pulled
# and converted to a squashfs image as an unprivileged user:
#   hutch cold      hutch pull, empty cache (fetch, verify, unpack, mksquashfs, SIF)
#   hutch warm      every blob cached, the SIF not (unpack, mksquashfs, SIF)
#   hutch cached    the SIF cached too (a copy)
#   pipeline        skopeo copy docker:// oci: + umoci unpack --rootless + mksquashfs -all-root,
#                   what users script without a runtime (each step timed too)
#   podman pull     into its own (vfs) storage
# Prints the median of RUNS wall times and the ratios the issue sets targets for (cold <=
# 0.5x the pipeline; warm <= the mksquashfs step alone).
# usage: bench/pull.sh BUILD/hutch [RUNS] [MIB]     (as root; ./dev.sh bench installs peers)
#   PULL_BENCH_ROOT=1: everything as root (no user processes), PULL_BENCH_NO_PODMAN=1: no podman
set -euo pipefail
hutch=$(readlink -f "$1")
runs=${2:-3}
mib=${3:-200}
. "$(dirname "$0")/lib.sh"
build=$(dirname "$hutch")
work=$(mktemp -d /tmp/hutch-bench.XXXXXX)
regpid=
trap '[ -n "$regpid" ] && kill "$regpid" 2>/dev/null; podman_cleanup "$work"; rm -rf "$work"' EXIT
chmod 755 "$work"
podman_setup "$work"
mkdir -p "$work/bin"
cp "$hutch" "$build/hutch-registry" "$work/bin/"
[ -x "$build/hutch-squashfs" ] && cp "$build/hutch-squashfs" "$work/bin/"
chown -R "$user" "$work"
[ -n "${PULL_BENCH_ROOT:-}" ] && user=root
as_user() { runuser -u "$user" -- env HOME="$(getent passwd "$user" | cut -d: -f6)" USER="$user" XDG_RUNTIME_DIR="$work/xdg" $(podman_env "$work") "$@"; }
as_user mkdir -p "$work/xdg"
cd "$work"
echo "# writing the ${mib} MiB test image"
as_user python3 "$src/tests/helpers/mkoci.py" "$work/oci" big "$mib"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' \
	"$work/regdata" "$port" > "$work/reg.yml"
chown "$user" "$work/reg.yml"
runuser -u "$user" -- docker-registry serve "$work/reg.yml" > "$work/reg.log" 2>&1 &
regpid=$!
for i in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/v2/" && break; sleep 0.1; done
ref=127.0.0.1:$port/bench/big:v1
as_user skopeo copy -q --insecure-policy --dest-tls-verify=false "oci:$work/oci:big" "docker://$ref"
echo "# $(du -sm "$work/regdata" | cut -f1) MiB in the registry, $(nproc) CPUs"

declare -A t
# time NAME CMD...: wall seconds, appended to t[NAME]
timed() {
	local name=$1 s e
	shift
	s=$(date +%s.%N)
	"$@" >/dev/null 2>"$work/err" || { echo "$name failed:"; cat "$work/err"; exit 1; }
	e=$(date +%s.%N)
	t[$name]="${t[$name]:-} $(echo "$e - $s" | bc)"
}
median() { tr ' ' '\n' <<< "$1" | sed '/^$/d' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

H="as_user env HUTCH_CACHEDIR=$work/cache HUTCH_NOHTTPS=1 $work/bin/hutch -q"
for r in $(seq "$runs"); do
	rm -rf "$work/cache" "$work/out.sif"
	timed "hutch cold" $H pull "$work/out.sif" "docker://$ref"
	$H cache clean --type sif
	timed "hutch warm" $H pull --force "$work/out.sif" "docker://$ref"
	timed "hutch cached" $H pull --force "$work/out.sif" "docker://$ref"
	rm -rf "$work/ocidir" "$work/bundle" "$work/out.sqfs"
	timed "skopeo copy" as_user skopeo copy -q --insecure-policy --src-tls-verify=false "docker://$ref" "oci:$work/ocidir:v1"
	timed "umoci unpack" as_user umoci unpack $([ "$user" = root ] || echo --rootless) --image "$work/ocidir:v1" "$work/bundle"
	timed "mksquashfs" as_user mksquashfs "$work/bundle/rootfs" "$work/out.sqfs" $([ "$user" = root ] || echo -all-root) \
		-noappend -quiet -no-progress
	as_user chmod -R u+rwX "$work/bundle"
	rm -rf "$work/bundle"
	if command -v podman >/dev/null && [ -z "${PULL_BENCH_NO_PODMAN:-}" ]; then
		as_user podman rmi -af >/dev/null 2>&1 || true
		timed "podman pull" as_user podman pull -q --tls-verify=false "$ref"
	fi
done
declare -A m
for k in "${!t[@]}"; do m[$k]=$(median "${t[$k]}"); done
m[pipeline]=$(echo "${m[skopeo copy]} + ${m[umoci unpack]} + ${m[mksquashfs]}" | bc)
printf '%-14s %8s\n' step "median s"
for k in "hutch cold" "hutch warm" "hutch cached" "skopeo copy" "umoci unpack" "mksquashfs" pipeline "podman pull"; do
	[ -n "${m[$k]:-}" ] && printf '%-14s %8.2f\n' "$k" "${m[$k]}"
done
printf 'ratio cold/pipeline      %.2f (target <= 0.5)\n' "$(echo "${m[hutch cold]} / ${m[pipeline]}" | bc -l)"
printf 'ratio warm/mksquashfs    %.2f (target <= 1)\n' "$(echo "${m[hutch warm]} / ${m[mksquashfs]}" | bc -l)"
[ -n "${m[podman pull]:-}" ] && printf 'ratio cold/podman pull   %.2f\n' "$(echo "${m[hutch cold]} / ${m[podman pull]}" | bc -l)"
exit 0
