# Bad input: one clear line, status 255, nothing left behind.
. "$(dirname "$0")/lib.sh"
I=$IMAGES/image.sif
cp "$I" "$T/ok.sif"

run "$HUTCH" exec "$T/missing.sif" true
check "missing image" 'fails_with "missing.sif"'
run "$HUTCH" exec "$T" true 2>/dev/null
head -c 100000 "$I" > "$T/trunc.sif"
run "$HUTCH" exec "$T/trunc.sif" true
check "truncated SIF" 'fails_with "truncated"'
head -c 20 "$I" > "$T/tiny.sif"
printf 'SIF_MAGIC' | dd of="$T/tiny.sif" bs=1 seek=32 conv=notrunc status=none
run "$HUTCH" exec "$T/tiny.sif" true
check "SIF shorter than its header" 'fails_with "SIF"'
head -c 200000 "$IMAGES/image.sqfs" > "$T/trunc.sqfs"
run "$HUTCH" exec "$T/trunc.sqfs" true
check "truncated squashfs" 'fails_with "truncated squashfs"'
{ printf 'hsqs'; head -c 4096 /dev/urandom; } > "$T/garbage.sqfs"
run "$HUTCH" exec "$T/garbage.sqfs" true
check "corrupt squashfs" 'fails_with "garbage.sqfs"'
head -c 4096 /dev/urandom > "$T/random.img"
run "$HUTCH" exec "$T/random.img" true
check "not an image at all" 'fails_with "not a SIF file, a squashfs file or a folder"'
cp "$FIXTURES/one-object-generic-json.sif" "$T/nosys.sif"
run "$HUTCH" exec "$T/nosys.sif" true
check "SIF without a system partition" 'fails_with "no primary system partition"'
# a SIF whose system partition is marked encrypted (flip the fstype byte of our own SIF)
cp "$I" "$T/enc.sif"
printf '\x05' | dd of="$T/enc.sif" bs=1 seek=$((4096 + 2 * 585 + 201)) conv=notrunc status=none
run "$HUTCH" exec "$T/enc.sif" true
check "SIF with an encrypted partition" 'fails_with "encrypted"'
if [ "$(id -u)" -ne 0 ]; then
	cp "$I" "$T/noperm.sif" && chmod 000 "$T/noperm.sif"
	run "$HUTCH" exec "$T/noperm.sif" true
	check "unreadable image" 'fails_with "noperm.sif" && err_has "Permission denied"'
fi
run "$HUTCH" exec -B "$T/nope:/x" "$I" true
check "bind source that does not exist" 'fails_with "bind source" && err_has "nope"'
run "$HUTCH" exec -B "$T:relative/dst" "$I" true
check "relative bind destination" 'fails_with "absolute"'
run "$HUTCH" exec -B "$T:/x:rx" "$I" true
check "bad bind option" 'fails_with "not ro or rw"'
run "$HUTCH" exec --mount "type=volume,src=a,dst=/b" "$I" true
check "--mount of an unsupported type" 'fails_with "not supported"'
run "$HUTCH" exec --no-mount bogus "$I" true
check "an unknown --no-mount name is a warning, as Apptainer's" '[ $RC -eq 0 ] && err_has "WARNING: .*ignoring unknown mount type .bogus."'
printf 'GOOD=1\nthis line is bad\n' > "$T/bad.env"
run "$HUTCH" exec --env-file "$T/bad.env" "$I" true
check "malformed env file names file:line" 'fails_with "bad.env:2"'
printf 'Q="unterminated\n' > "$T/bad2.env"
run "$HUTCH" exec --env-file "$T/bad2.env" "$I" true
check "unterminated quote in env file" 'fails_with "bad2.env:1"'
run "$HUTCH" exec --env-file "$T/none.env" "$I" true
check "missing env file" 'fails_with "none.env"'
run "$HUTCH" exec --env NOEQUALS "$I" true
check "--env without =" 'fails_with "KEY=VALUE"'
run "$HUTCH" exec "$I"
check "exec without a command" 'usage_fails_with "missing COMMAND"'
run "$HUTCH" exec --bogus "$I" true
check "unknown option: status 1, as Apptainer's" 'usage_fails_with "bogus"'
run "$HUTCH" frobnicate
check "unknown command" 'usage_fails_with "unknown command"'
run "$HUTCH" instance
check "a verb group without its subcommand: its help, status 1 (as Apptainer)" '[ $RC -eq 1 ] && grep -q "instance" "$OUT" "$ERR"'
run "$HUTCH"
check "no verb at all: the help, status 1" '[ $RC -eq 1 ] && grep -q "Commands:" "$OUT" "$ERR"'
run "$HUTCH" inspect "$I" "$I"
check "too many arguments: status 1" 'usage_fails_with "one IMAGE only"'
run "$HUTCH" instance stop --timeout soon x
check "a value hutch refuses is hutch's error: status 255" 'fails_with "--timeout wants seconds"'
run "$HUTCH" exec "$I" /no/such/program
check "a command missing in the image (image with env scripts)" 'fails_with "/no/such/program"'
run "$HUTCH" exec "$FIXTURES/one-group.sif" nosuchcmd
check "a command missing in the image (no shell in the image)" 'fails_with "nosuchcmd"'
run "$HUTCH" exec --writable "$I" true
check "--writable on a SIF without an overlay partition says how to add one" 'fails_with "hutch overlay create"'
run "$HUTCH" exec --pwd /no/such/dir "$I" pwd
check "--pwd that does not exist" 'fails_with "--pwd ./no/such/dir."'

printf 'mount home = yes\nfrobnicate = 3\nmount tmp = maybe\n' > "$T/unknown.conf"
run env HUTCH_CONF="$T/unknown.conf" "$HUTCH" exec "$I" true
check "config: unknown key warns with file:line and runs" '[ $RC -eq 0 ] && err_has "unknown.conf:2: unknown key .frobnicate." && err_has "unknown.conf:3"'
printf 'allow container sif = no\n' > "$T/nosif.conf"
run env HUTCH_CONF="$T/nosif.conf" "$HUTCH" exec "$I" true
check "config: a disallowed image type is refused" 'fails_with "not allowed by hutch.conf"'
run env HUTCH_CONF="$T/nosif.conf" "$HUTCH" exec "$IMAGES/image.sqfs" true
check "config: other image types still run" '[ $RC -eq 0 ]'
mkdir -p "$T/confbind" && echo cb > "$T/confbind/f"
printf 'bind path = %s:/confbind\nbind path = /does/not/exist\n' "$T/confbind" > "$T/bind.conf"
run env HUTCH_CONF="$T/bind.conf" "$HUTCH" exec "$I" cat /confbind/f
check "config: bind path binds, a missing one is skipped" 'out_is cb'
run env HUTCH_CONF="$T/bind.conf" "$HUTCH" exec --no-mount bind-paths "$I" cat /confbind/f
check "--no-mount bind-paths skips config binds" '[ $RC -eq 1 ] && err_has "/confbind/f.*No such file or directory"'
check "bad runs leave the image untouched" 'cmp -s "$I" "$T/ok.sif"'
run "$HUTCH" serve-image
check "serve-image run by hand (no server socket) is refused in one line" 'fails_with "started by hutch itself"'
if [ -x "$(dirname "$HUTCH")/hutch-squashfs" ]; then
	run "$(dirname "$HUTCH")/hutch-squashfs"
	check "hutch-squashfs run by hand is refused in one line" '[ $RC -eq 2 ] && [ "$(wc -l < "$ERR")" -eq 1 ] && err_has "started by hutch itself"'
fi
leftovers "errors"

# An image whose root folder its server cannot read (the root inode's type byte is not a
# type): opening "." in it answers ENOENT, which must not be taken for a missing folder.
mksquashfs "$IMAGES/rootfs" "$T/badroot.sqfs" -noappend -quiet -noI >/dev/null
u64() { od -A n -t u8 -j "$1" -N 8 "$T/badroot.sqfs" | tr -d ' '; }
root_ref=$(u64 32) itab=$(u64 64)
# -noI: the inode table's metadata blocks are stored uncompressed (header bit 15 set)
block=$((itab + (root_ref >> 16)))
printf '\x63' | dd of="$T/badroot.sqfs" bs=1 seek=$((block + 2 + (root_ref & 0xffff))) conv=notrunc status=none
run timeout -s KILL 20 "$HUTCH" exec "$T/badroot.sqfs" true
# (the image's open refuses this root first, as corrupt; target_open's own guard is the
# second line of defence for a root that reads well at open and fails later)
check "an image whose root cannot be opened" 'fails_with "root"'
trap '"$HUTCH" instance stop --force badroot >/dev/null 2>&1; rm -rf "$T"' EXIT
run timeout -s KILL 20 "$HUTCH" instance start "$T/badroot.sqfs" badroot
check "an instance of an image whose root cannot be opened fails to start" 'fails_with "root"'
mkdir "$T/idle" && cp -a "$IMAGES/rootfs/." "$T/idle/" && rm "$T/idle/.singularity.d/startscript"
run timeout -s KILL 20 "$HUTCH" instance start "$T/idle" badroot
check "and its name can be used again" '[ $RC -eq 0 ] && "$HUTCH" instance list | grep -q "^badroot "'
"$HUTCH" instance stop badroot >/dev/null 2>&1
leftovers "an unreadable image root"

# Files hutch reads from the image while it assembles the root: a FIFO must not block it
# (an open for reading waits for a writer) and a FIFO where hutch only binds is harmless.
mkdir "$T/fifo" && cp -a "$IMAGES/rootfs/." "$T/fifo/"
rm -f "$T/fifo/etc/hosts" "$T/fifo/etc/resolv.conf" && mkfifo "$T/fifo/etc/hosts" "$T/fifo/etc/resolv.conf"
run timeout -s KILL 20 "$HUTCH" exec "$T/fifo" true
check "an image whose /etc/hosts and /etc/resolv.conf are FIFOs runs" '[ $RC -eq 0 ]'
if [ "$(id -u)" -ne 0 ]; then
	for f in passwd group; do
		rm "$T/fifo/etc/$f" && mkfifo "$T/fifo/etc/$f"
		run timeout -s KILL 20 "$HUTCH" exec "$T/fifo" true
		check "an image whose /etc/$f is a FIFO" 'fails_with "/etc/$f is a FIFO, not a regular file"'
		rm "$T/fifo/etc/$f" && cp "$IMAGES/rootfs/etc/$f" "$T/fifo/etc/$f"
	done
	truncate -s 17M "$T/fifo/etc/group"
	run timeout -s KILL 20 "$HUTCH" exec "$T/fifo" true
	check "an image whose /etc/group is larger than 16 MiB" 'fails_with "/etc/group is larger than 16 MiB"'
fi
leftovers "non-regular files in the image"
finish
