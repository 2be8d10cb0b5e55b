#!/bin/bash
# bench/sign.sh [HUTCH]: the cost of signatures, as root. verify of a SIF holding 1 GiB
# against sha256sum (and openssl dgst, which uses the CPU's SHA instructions as hutch's
# libcrypto does) of the same file in the same run (all from the page cache), and exec
# with the site's trusted-key policy on: the first run of an image (hutch-sign checks it)
# and later runs of the unchanged file (a cache lookup), against exec without the policy.
# The system hutch.conf is staged in a private mount namespace (an overlay), as t-trust does.
set -eu
hutch=$(readlink -f "${1:-build/hutch}")
if [ -z "${SIGN_BENCH_NS:-}" ]; then
	exec env SIGN_BENCH_NS=1 unshare -m --propagation private bash "$0" "$@"
fi
work=$(mktemp -d /var/tmp/hutch-bench-sign.XXXXXX)
d=
trap '[ -n "$d" ] && umount -l "$d"; rm -rf "$work"; rm -f /dev/shm/hutch-0/trust/t-* /run/user/0/hutch/trust/t-* 2>/dev/null' EXIT
export HUTCH_KEYSDIR=$work/keys HUTCH_SIGN_PASSPHRASE= HUTCH_CONF=/dev/null

# an image: busybox and 1 GiB of random data, squashfs without compression
mkdir -p "$work/root/bin"
cp /bin/busybox "$work/root/bin/"
ln -s busybox "$work/root/bin/true"
head -c 1G /dev/urandom > "$work/root/data"
mksquashfs "$work/root" "$work/img.sqfs" -noI -noD -noF -noX -quiet -no-progress >/dev/null
rm -rf "$work/root"
"$hutch" build -q "$work/img.sif" "$work/img.sqfs"
rm -f "$work/img.sqfs"
"$hutch" key newpair --name Bench --bit-length 2048 >/dev/null
fp=$("$hutch" key list | sed -n 's/.*Fingerprint: *//p')
"$hutch" sign "$work/img.sif" >/dev/null

# ms CMD...: wall milliseconds of one run
ms() {
	local s e
	s=$(date +%s%N)
	"$@" >/dev/null 2>&1
	e=$(date +%s%N)
	echo $(((e - s) / 1000000))
}
# best N CMD...: the smallest of N runs
best() {
	local n=$1 b= t i
	shift
	for i in $(seq "$n"); do
		t=$(ms "$@")
		[ -z "$b" ] || [ "$t" -lt "$b" ] && b=$t
	done
	echo "$b"
}
cat "$work/img.sif" >/dev/null
sha=$(best 3 sha256sum "$work/img.sif")
ossl=$(best 3 openssl dgst -sha256 "$work/img.sif")
ver=$(best 3 "$hutch" verify "$work/img.sif")
echo "verify of a $(du -h "$work/img.sif" | cut -f1) SIF: ${ver} ms; sha256sum: ${sha} ms (ratio $(echo "scale=2; $ver / $sha" | bc)); openssl dgst -sha256: ${ossl} ms (ratio $(echo "scale=2; $ver / $ossl" | bc))"

SYS=$("$hutch" help | sed -n 's/^System configuration: //p')
d=$(dirname "$SYS")
while [ ! -d "$d" ]; do d=$(dirname "$d"); done
mkdir -p "$work/up" "$work/wk"
mount -t overlay overlay -o "lowerdir=$d,upperdir=$work/up,workdir=$work/wk" "$d"
mkdir -p "$(dirname "$SYS")/keys"
"$hutch" key export "$fp" "$(dirname "$SYS")/keys/pgp-public" >/dev/null
: > "$SYS"
off=$(best 5 "$hutch" exec "$work/img.sif" true)
echo "trusted key = $fp" > "$SYS"
first=
for i in 1 2 3; do
	rm -f /dev/shm/hutch-0/trust/t-* /run/user/0/hutch/trust/t-* 2>/dev/null
	t=$(ms "$hutch" exec "$work/img.sif" true)
	[ -z "$first" ] || [ "$t" -lt "$first" ] && first=$t
done
later=$(best 5 "$hutch" exec "$work/img.sif" true)
echo "exec without the policy: ${off} ms; with it, first run: ${first} ms (+$((first - off)) ms, $(echo "scale=2; ($first - $off) / $ver" | bc)x a verify); later runs: ${later} ms (+$((later - off)) ms)"
