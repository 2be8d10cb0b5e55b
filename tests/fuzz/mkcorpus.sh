#!/bin/bash
# The fuzz targets' seed corpus (tests/fuzz/corpus/, kept in the tree): small squashfs
# images of a tree with every kind of inode, one per layout mksquashfs makes (compressors,
# uncompressed metadata and data, no fragments, extended inodes with xattrs), and SIFs
# wrapping them. usage: mkcorpus.sh (rewrites the corpus)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
root=$tmp/root
mkdir -p "$root"/{bin,etc,.singularity.d,a/b/c}
seq 1 2400 | tr "\n" " " > "$root/bin/two-blocks"
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$root/etc/passwd"
printf '#!/bin/sh\necho hi\n' > "$root/.singularity.d/runscript"
: > "$root/etc/empty"
ln -s two-blocks "$root/bin/sh"
ln -s /etc/passwd "$root/a/b/c/abs"
ln -s .singularity.d/runscript "$root/singularity"
touch "$root/a/$(printf 'n%.0s' {1..200})"
mkfifo "$root/a/fifo"
# a listing of several metadata blocks: its inode carries an index
mkdir "$root/many"
for i in $(seq 1000 1399); do : >"$root/many/entry-with-a-longish-name-$i"; done
out=$here/corpus
rm -rf "$out/squashfs" "$out/sif"
mkdir -p "$out/squashfs" "$out/sif"
mk() { mksquashfs "$root" "$out/squashfs/$1.sqfs" -noappend -quiet -no-progress -nopad -b 4096 -mkfs-time 0 -all-time 0 "${@:2}" >/dev/null; }
mk gzip -all-root -no-xattrs
mk raw -all-root -no-xattrs -noI -noD -noF -noX
mk nofrag -all-root -no-xattrs -no-fragments
mk xz -all-root -no-xattrs -comp xz
mk zstd -all-root -no-xattrs -comp zstd
mk lz4 -all-root -no-xattrs -comp lz4
mk noexport -all-root -no-xattrs -no-exports
mk raw-nofrag -all-root -no-xattrs -noI -noD -noF -noX -no-fragments
setfattr -n user.hutch -v fuzz "$root/etc/passwd" 2>/dev/null && mk xattr -all-root -xattrs
for f in gzip raw; do
	python3 "$here/../helpers/craft.py" sif "$out/squashfs/$f.sqfs" "$out/sif/$f.sif"
done
