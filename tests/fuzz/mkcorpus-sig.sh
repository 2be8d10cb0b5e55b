#!/bin/bash
# fuzz_sig's seed corpus (tests/fuzz/corpus/sig/, kept in the tree): the reference signed
# fixtures (mode 0), and for fuzz_sig's own image the integrity JSON (1), a legacy SIFHASH
# line (2) and a whole signature object signed with the reference test key (3).
# usage: mkcorpus-sig.sh BUILD BUILD-FUZZ (a build with hutch, and one with fuzz_sig)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
hutch=$(readlink -f "$1/hutch")
fuzz=$(readlink -f "$2/tests/fuzz/fuzz_sig")
ref=/usr/share/gocode/src/github.com/sylabs/sif/test
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
out=$here/corpus/sig
rm -rf "$out"
mkdir -p "$out"
for f in one-group-signed one-group-signed-legacy one-group-signed-legacy-all two-groups-signed-legacy-group; do
	{ printf '\0'; cat "$ref/images/$f.sif"; } > "$out/0-$f"
done
printf '\2' > "$tmp/empty"
FUZZ_SIG_TEMPLATE=$tmp/t.sif "$fuzz" -runs=1 "$tmp/empty" >/dev/null 2>&1
export HOME=$tmp HUTCH_KEYSDIR=$tmp/keys HUTCH_SIGN_PASSPHRASE=
"$hutch" key import "$ref/keys/private.asc" >/dev/null
"$hutch" sign "$tmp/t.sif" >/dev/null
"$hutch" sif dump 3 "$tmp/t.sif" > "$tmp/msg"
{ printf '\3'; cat "$tmp/msg"; } > "$out/3-signed"
{ printf '\1'; awk '/^-----BEGIN PGP SIGNATURE/ { exit } body { sub(/\r$/, ""); print } /^\r?$/ { body = 1 }' "$tmp/msg"; } > "$out/1-metadata"
# legacy: the text's first byte ('S', 83) picks hash type 83 % 5 = 3, SHA-512
{ printf '\2SIFHASH:\n'; { head -c 100 /dev/zero | tr '\0' a; head -c 100 /dev/zero | tr '\0' b; } | sha512sum | cut -d' ' -f1; } > "$out/2-legacy"
