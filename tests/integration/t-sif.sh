# SIF: the reference implementation's fixtures read by hutch, hutch's SIF read by the
# reference implementation, and build conversions.
. "$(dirname "$0")/lib.sh"
I=$IMAGES/image.sif

for f in "$FIXTURES"/*.sif; do
	b=$(basename "$f")
	run "$HUTCH" sif list "$f"
	check "sif list reads fixture $b" '[ $RC -eq 0 ] && out_has "SIF POSITION"'
done
run "$HUTCH" sif list "$FIXTURES/two-groups.sif"
check "sif list shows the objects of two-groups.sif" 'out_has "FS (Squashfs/\*System/386)" && out_has "FS (Ext3/System/amd64)" && out_has "40960-303104"'
run "$HUTCH" sif list "$FIXTURES/one-group-signed.sif"
check "sif list shows a group-linked signature" 'out_has "|1   (G) |.*|Signature (SHA-256)$"'
# the reference siftool's own expected outputs (its golden files) for these fixtures: list,
# header and info print byte for byte the same
golden=${FIXTURES%/test/images}/pkg/siftool/testdata
if [ -d "$golden" ]; then
	for verb in List Header; do
		for g in "$golden/Test_command_get$verb"/*/out.golden; do
			name=$(basename "$(dirname "$g")")
			f=$FIXTURES/$(echo "$name" | sed 's/\([a-z]\)\([A-Z]\)/\1-\2/g; s/\([A-Z]\)\([A-Z][a-z]\)/\1-\2/g' | tr 'A-Z' 'a-z').sif
			[ -f "$f" ] || continue
			run "$HUTCH" sif "$(echo "$verb" | tr 'A-Z' 'a-z')" "$f"
			check "sif $verb $(basename "$f") prints what the reference siftool prints" 'cmp -s "$OUT" "$g"'
		done
	done
	for id in 1 2 3; do
		g=$golden/Test_command_getInfo/$(echo "One Two Three" | cut -d" " -f$id)/out.golden
		run "$HUTCH" sif info $id "$FIXTURES/one-group-signed.sif"
		check "sif info $id one-group-signed.sif prints what the reference siftool prints" 'cmp -s "$OUT" "$g"'
	done
else
	notok "the reference siftool's expected outputs are missing (golang-github-sylabs-sif-dev)"
fi
run "$HUTCH" exec "$FIXTURES/one-group.sif" /bin/true
check "a fixture's squashfs system partition opens (empty: no /bin/true)" 'fails_with "/bin/true"'
run "$HUTCH" inspect "$FIXTURES/one-group.sif"
check "inspect of a fixture without metadata is empty, not an error" '[ $RC -eq 0 ]'
run "$HUTCH" exec "$FIXTURES/empty.sif" true
check "empty.sif is refused: no system partition" 'fails_with "no primary system partition"'
run "$HUTCH" sif info 1 "$FIXTURES/one-object-generic-json.sif"
check "sif info describes an object" 'out_has "^  Data Type: *JSON.Generic"'
run "$HUTCH" sif info 9 "$FIXTURES/one-object-generic-json.sif"
check "sif info of a missing object" 'fails_with "no object with ID"'

if [ -n "$SIFCHECK" ]; then
	run "$SIFCHECK" "$I"
	check "the reference SIF code loads hutch's SIF" '[ $RC -eq 0 ] && out_has "primary=3"'
	check "hutch's SIF has Apptainer's objects" 'out_has "type=Def.FILE" && out_has "type=JSON.Generic" && out_has "fs=Squashfs part=\*System"'
	run "$SIFCHECK" "$I"
	want=$(grep '^id=3' "$OUT" | sed 's/.*offset=\([0-9]*\) size=\([0-9]*\).*/\1-\2/')
	run "$HUTCH" sif list "$I"
	o=${want%-*} s=${want#*-}
	check "hutch and the reference agree on the partition's position" 'out_has "$o-$((o + s))"'
else
	notok "the reference SIF oracle could not be built (golang-github-sylabs-sif-dev)"
fi
run "$HUTCH" sif dump 1 "$I"
check "sif dump writes an object's data" 'out_has "bootstrap: localimage"'

run "$HUTCH" build "$T/a.sif" "$IMAGES/rootfs"
check "build SIF from a sandbox" '[ $RC -eq 0 ] && [ -s "$T/a.sif" ]'
run "$HUTCH" exec "$T/a.sif" cat /etc/hutch-test-marker
check "the built SIF runs" 'out_is image-marker'
# a listing comes with each entry's attributes (READDIRPLUS): what a stat then finds must be
# what the image holds
lst='for f in $D/.singularity.d/* $D/bin/*; do if [ -d "$f" ] && [ ! -L "$f" ]; then stat -c "%n %a %F" "$f"; else stat -c "%n %s %a %h %F" "$f"; fi; done'
run "$HUTCH" exec "$I" sh -c "D=; $lst"
want=$(cd "$IMAGES/rootfs" && D=. sh -c "$lst" | sed 's|^\./|/|')
check "a stat of each listed entry gives the image's sizes, modes, links and types" '[ $RC -eq 0 ] && [ "$(cat "$OUT")" = "$want" ]'
run "$HUTCH" build "$T/a.sif" "$IMAGES/rootfs"
check "build refuses to overwrite without --force" 'fails_with "--force"'
run "$HUTCH" build --force "$T/a.sif" "$IMAGES/image.sqfs"
check "build --force: SIF from a squashfs file" '[ $RC -eq 0 ]'
run "$HUTCH" build "$T/b.sqfs" "$I"
check "build squashfs from a SIF" '[ $RC -eq 0 ] && [ "$(head -c 4 "$T/b.sqfs")" = hsqs ]'
run "$HUTCH" exec "$T/b.sqfs" cat /etc/hutch-test-marker
check "the extracted squashfs runs" 'out_is image-marker'
run "$HUTCH" build --sandbox "$T/sb" "$I"
check "build --sandbox from a SIF" '[ $RC -eq 0 ] && [ -f "$T/sb/etc/hutch-test-marker" ]'
run "$HUTCH" exec "$T/sb" cat /etc/hutch-test-marker
check "the sandbox runs" 'out_is image-marker'
run "$HUTCH" build "$T/c.sif" "$T/missing-src"
check "build from a missing source" 'fails_with "missing-src" && [ ! -e "$T/c.sif" ] && ! ls "$T" | grep -q hutch-tmp'
# the FUSE server pushes files of up to 8 MiB into the page cache at their first open and
# pages larger ones in on demand: both must read back byte for byte (1 MiB pushes, >1 chunk)
mkdir -p "$T/big"
cp -a "$IMAGES/rootfs/." "$T/big/"
head -c 9437184 /dev/urandom > "$T/big/big.bin"
head -c 1500001 /dev/urandom > "$T/big/mid.bin"
# holes (squashfs stores whole zero blocks as sparse) and an exact number of blocks
{ head -c 131072 /dev/urandom; head -c 393216 /dev/zero; head -c 70000 /dev/urandom; } > "$T/big/holes.bin"
head -c 262144 /dev/urandom > "$T/big/blocks.bin"
# larger than a push: incompressible blocks are spliced from the image file (one extent
# while they follow each other), the rest read block by block; a tail in a fragment, and a
# file that mixes stored, compressed and sparse blocks
head -c 9438418 /dev/urandom > "$T/big/tail.bin"
{ head -c 3145728 /dev/urandom; head -c 2097152 /dev/zero; yes hutch | head -c 2097152; head -c 2100000 /dev/urandom; } > "$T/big/mixed.bin"
# a directory of 3000 entries needs many READDIR replies; the server answers OPENDIR with
# ENOSYS, so the kernel reads it without a handle once and serves the second listing itself.
# (ls -A: like squashfuse itself, the server lists no "." and "..")
mkdir "$T/big/many"
(cd "$T/big/many" && for i in $(seq 3000); do : > "f$i"; done && ln -s f1 link && mkdir sub)
run "$HUTCH" build "$T/big.sif" "$T/big"
run "$HUTCH" exec "$T/big.sif" sh -c 'ls -A /many | sort; echo ==; ls -A /many | sort; echo ==; ls /.singularity.d/env'
check "a large directory lists whole through the FUSE server, twice (the second from the kernel's cache)" \
	'[ "$(cat "$OUT")" = "$( (cd "$T/big/many" && ls -A | sort; echo ==; ls -A | sort; echo ==; ls "$T/big/.singularity.d/env") )" ]'
run "$HUTCH" exec "$T/big.sif" sh -c 'cd /many/sub && ls -A; ls /many/f1/ 2>&1'
check "an empty subdirectory lists empty; a file opened as a directory is ENOTDIR" '[ "$(wc -l < "$OUT")" -eq 1 ] && out_has "Not a directory"'

run "$HUTCH" exec "$T/big.sif" md5sum /big.bin /mid.bin /bin/busybox /holes.bin /blocks.bin /tail.bin /mixed.bin
check "files read through the FUSE server match their source byte for byte (pushed ahead and paged in)" \
	'[ "$(cut -d" " -f1 "$OUT")" = "$(cd "$T/big" && md5sum big.bin mid.bin bin/busybox holes.bin blocks.bin tail.bin mixed.bin | cut -d" " -f1)" ]'
# the server's own system calls, traced: the stored data goes by splice, and still matches
strace -f -qq -e trace=splice -o "$T/splice.trace" "$HUTCH" exec "$T/big.sif" md5sum /big.bin >"$OUT" 2>&1
check "incompressible data is spliced from the image file to the kernel" \
	'grep -q "^[0-9]* *splice(" "$T/splice.trace" && [ "$(cut -d" " -f1 "$OUT")" = "$(md5sum <"$T/big/big.bin" | cut -d" " -f1)" ]'
rm -rf "$T/big" "$T/big.sif"
# a corrupt data block: the push-ahead gives up, the read fails with EIO, the server stays
# up for the rest and exits with the payload. a.txt sorts first, so its data starts right
# after the 96-byte superblock, as one compressed block.
mkdir -p "$T/bad"
cp -a "$IMAGES/rootfs/." "$T/bad/"
yes "hutch corrupt block test line" | head -c 200000 > "$T/bad/a.txt"
mksquashfs "$T/bad" "$T/bad.sqfs" -comp gzip -noappend -all-root -quiet >/dev/null
printf 'XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX' |
	dd of="$T/bad.sqfs" bs=1 seek=400 conv=notrunc status=none
run "$HUTCH" exec "$T/bad.sqfs" sh -c 'cat /a.txt >/dev/null; echo "cat=$?"; cat /etc/hutch-test-marker'
check "a corrupt data block is an I/O error for that file only" \
	'out_has "cat=1" && grep -q "Input/output error" "$ERR" && out_has "$(cat "$IMAGES/rootfs/etc/hutch-test-marker")"'
rm -rf "$T/bad" "$T/bad.sqfs"
leftovers "sif"
finish
