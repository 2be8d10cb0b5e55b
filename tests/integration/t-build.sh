# build: what it prints, its temporary files in a folder others can write to, device nodes
# in a sandbox built by a user.
. "$(dirname "$0")/lib.sh"
I=$IMAGES/image.sif

run "$HUTCH" build "$T/out.sif" "$IMAGES/rootfs"
check "build says what it builds from what" '[ $RC -eq 0 ] && err_has "^INFO: .*Building SIF file $T/out.sif from sandbox image $IMAGES/rootfs"'
check "build says when it is done, with the size" 'err_has "^INFO: .*Build complete: $T/out.sif ([0-9.]*[KM]iB, [0-9.]* s)$"'
check "off a terminal, no progress bar" '[ ! -s "$OUT" ] && [ "$(wc -l < "$ERR")" -eq 2 ]'
run "$HUTCH" build -q --sandbox "$T/out.sb" "$I"
check "build -q prints nothing" '[ $RC -eq 0 ] && [ ! -s "$OUT" ] && [ ! -s "$ERR" ] && [ -f "$T/out.sb/etc/hutch-test-marker" ]'

# Another user who can write to the target's folder (a group-writable project folder, or
# /tmp where fs.protected_symlinks = 0) plants symlinks and a folder at every name the
# build could pick; the build must use none of them. As root the planter is 'nobody' and
# the victim root; as a user both are that user (the names are what is tested). A shell's
# $$ is hutch's pid after its exec, and the names once were TARGET.hutch-tmp-PID(.sqfs).
shared=$(mktemp -d "$TMPDIR/hutch-shared.XXXXXX")
chmod 0777 "$shared"
trap 'rm -rf "$T" "$shared"' EXIT
PLANTER=
[ "$(id -u)" -eq 0 ] && PLANTER="runuser -u nobody --"
echo precious > "$shared/victim"
# plant link|dir NAME: as the other user, a symlink to the victim file or a folder
plant() {
	if [ "$1" = link ]; then $PLANTER ln -s "$shared/victim" "$2"; else $PLANTER mkdir -m 0777 "$2"; fi
}
export -f plant
export shared PLANTER HUTCH
planted() { ls -d "$shared"/*.hutch-tmp-* 2>/dev/null; }
for tgt in out.sif out.sqfs; do
	run bash -c 'p=$0.hutch-tmp-$$; plant link "$p"; plant link "$p.sqfs"; exec "$HUTCH" build "$0" "$1"' "$shared/$tgt" "$IMAGES/rootfs"
	check "build $tgt in a shared folder: planted symlinks are not followed" '[ $RC -eq 0 ] && [ "$(cat "$shared/victim")" = precious ] && [ "$(planted | wc -l)" -eq 2 ] && [ -z "$(for f in $(planted); do [ -L "$f" ] || echo "$f"; done)" ]'
	check "build $tgt in a shared folder: the target is the new image" '[ -f "$shared/$tgt" ] && [ ! -L "$shared/$tgt" ] && [ "$(stat -c %u "$shared/$tgt")" = "$(id -u)" ] && [ "$(stat -c %s "$shared/$tgt")" -gt 100000 ]'
	rm -f "$shared"/*.hutch-tmp-*
done
run bash -c 'plant dir "$0.hutch-tmp-$$" && exec "$HUTCH" build --sandbox "$0" "$1"' "$shared/out.sb" "$I"
check "build --sandbox in a shared folder: a planted folder is not used" '[ $RC -eq 0 ] && [ -f "$shared/out.sb/etc/hutch-test-marker" ] && [ "$(stat -c %u "$shared/out.sb")" = "$(id -u)" ] && [ "$(planted | wc -l)" -eq 1 ] && [ -z "$(ls -A $(planted))" ]'
rm -rf "$shared"/*.hutch-tmp-*
# The other user renames the build's private folder away within the shared folder (no
# ownership of it needed without the sticky bit) and puts their own 0777 folder under its
# name, at the moment the build runs its tool: a wrapper first on PATH does that move
# deterministically, once, then runs the real tool. The build must go on in its own folder
# (by fd), leave the planted folder untouched, and remove only what it made.
mkdir -p "$T/bin"
for tool in mksquashfs unsquashfs; do
	printf '#!/bin/bash\nd=$(ls -d "$shared"/*.hutch-tmp-* 2>/dev/null | head -1)\nif [ -n "$d" ] && ! ls -d "$shared"/*.away >/dev/null 2>&1; then $PLANTER mv "$d" "$d.away" && $PLANTER mkdir -m 0777 "$d"; fi\nexec %s "$@"\n' "$(command -v $tool)" > "$T/bin/$tool"
	chmod 0755 "$T/bin/$tool"
done
race() { # race TARGET BUILD-ARGS...: the build with the wrapper, the checks on what the move left
	run env PATH="$T/bin:$PATH" "$HUTCH" build "$@"
	moved=$(ls -d "$shared"/*.away 2>/dev/null)
	planted=${moved%.away}
}
race "$shared/race.sif" "$IMAGES/rootfs"
check "build (mksquashfs) whose private folder is swapped: the new SIF is in place" '[ $RC -eq 0 ] && [ -n "$moved" ] && [ -f "$shared/race.sif" ] && [ "$(stat -c %u "$shared/race.sif")" = "$(id -u)" ] && "$HUTCH" exec "$shared/race.sif" cat /etc/hutch-test-marker >/dev/null'
check "and the folder put under its name is not written to or removed" '[ -d "$planted" ] && [ -z "$(ls -A "$planted")" ] && [ -z "$(ls -A "$moved")" ]'
rm -rf "$shared"/*.hutch-tmp-*
race --sandbox "$shared/race.sb" "$I"
check "build --sandbox (unsquashfs) whose private folder is swapped: the sandbox is in place" '[ $RC -eq 0 ] && [ -n "$moved" ] && [ -f "$shared/race.sb/etc/hutch-test-marker" ] && [ "$(stat -c %u "$shared/race.sb")" = "$(id -u)" ]'
check "and the folder put under its name is not written to or removed" '[ -d "$planted" ] && [ -z "$(ls -A "$planted")" ] && [ -z "$(ls -A "$moved")" ]'
rm -rf "$shared"/*.hutch-tmp-* "$shared"/race.*

# A tool's failure is one error line with the tool's own last line (the INFO line stays,
# as Apptainer prints INFO then FATAL): a squashfs whose data blocks are garbage passes
# the open (superblock, tables) and fails in unsquashfs.
"$HUTCH" build -q "$T/bad.sqfs" "$IMAGES/rootfs"
data_end=$(od -An -tu8 -j64 -N8 "$T/bad.sqfs" | tr -d ' ')
head -c $((data_end - 96)) /dev/zero | tr '\0' '\377' | dd of="$T/bad.sqfs" bs=1 seek=96 conv=notrunc status=none
run "$HUTCH" build --sandbox "$T/bad.sb" "$T/bad.sqfs"
check "unsquashfs failing: one error line with its last line" '[ $RC -eq 255 ] && [ "$(grep -vc "^INFO: " "$ERR")" -eq 1 ] && err_has "^hutch: error: unsquashfs of .$T/bad.sqfs. failed: ." && [ ! -e "$T/bad.sb" ] && [ -z "$(ls -d "$T"/*hutch-tmp* 2>/dev/null)" ]'
check "a build leaves no temporary file or folder" '[ -z "$(ls -d "$shared"/*hutch-tmp* "$T"/*hutch-tmp* 2>/dev/null)" ]'

# Device nodes (every debootstrap image has some in /dev): mksquashfs makes them from a
# pseudo-file definition without privileges.
mkdir -p "$T/devsrc/etc" "$T/devsrc/dev" && echo data > "$T/devsrc/etc/data"
mksquashfs "$T/devsrc" "$T/dev.sqfs" -noappend -quiet -no-progress -p 'dev/null c 666 0 0 1 3' -p 'dev/sda b 660 0 0 8 0' >/dev/null
run "$HUTCH" build -v --sandbox "$T/dev.sb" "$T/dev.sqfs"
if [ "$(id -u)" -ne 0 ]; then
	check "a user's sandbox build leaves device nodes out" '[ $RC -eq 0 ] && [ -f "$T/dev.sb/etc/data" ] && [ -d "$T/dev.sb/dev" ] && [ -z "$(ls -A "$T/dev.sb/dev")" ]'
	check "and says so once at -v" '[ "$(grep -c "device node" "$ERR")" -eq 1 ] && err_has "^VERBOSE: .*leaving out 2 device nodes (/dev/null, ...): a user cannot create them"'
	cp -a "$T/dev.sb" "$T/dev.dir" && mkfifo "$T/dev.dir/dev/fifo"
	run "$HUTCH" build --sandbox "$T/dev.sb2" "$T/dev.dir"
	check "a FIFO is copied (a user can make one)" '[ $RC -eq 0 ] && [ -p "$T/dev.sb2/dev/fifo" ]'
else
	check "root's sandbox build keeps device nodes" '[ $RC -eq 0 ] && [ -c "$T/dev.sb/dev/null" ] && [ -b "$T/dev.sb/dev/sda" ] && ! err_has "device node"'
fi
# Files read from a sandbox image's metadata: a FIFO must not block (its open for reading
# waits for a writer).
mkdir "$T/fifo" && cp -a "$IMAGES/rootfs/." "$T/fifo/"
rm "$T/fifo/.singularity.d/Singularity" "$T/fifo/.singularity.d/labels.json"
mkfifo "$T/fifo/.singularity.d/Singularity" "$T/fifo/.singularity.d/labels.json"
run timeout -s KILL 20 "$HUTCH" inspect "$T/fifo"
check "inspect of a sandbox whose labels.json is a FIFO" 'fails_with "labels.json. in image .* is not a regular file"'
run timeout -s KILL 20 "$HUTCH" build -q "$T/fifo.sif" "$T/fifo"
check "build of a sandbox whose deffile is a FIFO records the default one" '[ $RC -eq 0 ] && "$HUTCH" sif dump 1 "$T/fifo.sif" | grep -q "^bootstrap: localimage"'
leftovers "build"
finish
