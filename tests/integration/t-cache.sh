# The decompressed-file cache: files a container opens from a squashfs or SIF image are
# kept decompressed per user, found again by the next start of the same image, never by a
# changed one, capped in size, and emptied by `hutch cache clean`.
. "$(dirname "$0")/lib.sh"
export XDG_RUNTIME_DIR=$T/xdg
mkdir -m 0700 "$XDG_RUNTIME_DIR"
C=$XDG_RUNTIME_DIR/hutch/cache
BB=$IMAGES/rootfs/bin/busybox
want=$(md5sum < "$BB")
# entries of whole files, and of fragment blocks (small files packed together; their key's
# last field has the top bit set)
entries() { find "$C" -maxdepth 1 -name 'f-*' ! -name 'f-*-8000000000*' 2>/dev/null | wc -l; }
frags() { find "$C" -maxdepth 1 -name 'f-*-8000000000*' 2>/dev/null | wc -l; }
conf() { printf '%s\n' "$@" > "$T/test.conf"; }
# the server writes an entry once it has answered the open: wait for it to end
run() { "$@" >"$OUT" 2>"$ERR" </dev/null; RC=$?; wait_for '[ -z "$(hutch_procs)" ]'; }

run "$HUTCH" cache list
check "cache list of an empty cache" '[ $RC -eq 0 ] && out_has "There are 0 decompressed file" && out_has "$C"'

run "$HUTCH" exec "$IMAGES/image.sif" true
e=$(find "$C" -maxdepth 1 -name 'f-*' ! -name 'f-*-8000000000*')
check "a SIF start keeps its /bin/sh decompressed" '[ $RC -eq 0 ] && [ "$(entries)" -eq 1 ] && cmp -s "$e" "$BB"'
check "and the fragment block of its small files (/etc/passwd...)" '[ "$(frags)" -eq 1 ]'
check "the cache folder is the user's alone" '[ "$(stat -c %a "$C")" = 700 ] && [ "$(stat -c %a "$e")" = 600 ]'
run "$HUTCH" exec "$IMAGES/image.sif" cat /etc/hutch-test-marker /etc/passwd
check "small files come whole from a cached fragment block" '[ $RC -eq 0 ] && [ "$(head -1 "$OUT")" = image-marker ] && grep -q "^root:" "$OUT"'
f=$(find "$C" -maxdepth 1 -name 'f-*-8000000000*')
truncate -s 5 "$f"
run "$HUTCH" exec "$IMAGES/image.sif" cat /etc/hutch-test-marker
check "a fragment entry cut short is not trusted" '[ $RC -eq 0 ] && out_is image-marker'
wait_for '[ "$(stat -c %s "$f")" -gt 5 ]'
check "and is written again whole" '[ "$(stat -c %s "$f")" -gt 5 ]'
before=$(stat -c %.9Y "$e")
sleep 0.05
run "$HUTCH" exec "$IMAGES/image.sif" md5sum /bin/busybox
check "the next start serves it from the cache, whole and right" '[ $RC -eq 0 ] && [ "$(cut -d" " -f1 "$OUT")" = "${want%% *}" ]'
check "a hit marks the entry used" '[ "$(stat -c %.9Y "$e")" != "$before" ] && [ "$(entries)" -eq 1 ]'

run "$HUTCH" cache list
check "cache list counts the entries" 'out_has "There are 2 decompressed file"'

truncate -s 4096 "$e"
run "$HUTCH" exec "$IMAGES/image.sif" md5sum /bin/busybox
check "an entry of the wrong size is not served, and is written again" '[ $RC -eq 0 ] && [ "$(cut -d" " -f1 "$OUT")" = "${want%% *}" ] && cmp -s "$e" "$BB"'

run "$HUTCH" exec "$IMAGES/image.sqfs" true
check "a squashfs image has entries of its own" '[ $RC -eq 0 ] && [ "$(entries)" -eq 2 ]'

cp "$IMAGES/image.sif" "$T/copy.sif"
run "$HUTCH" exec "$T/copy.sif" true
check "a copy of an image (another file) never meets the original's entry" '[ "$(entries)" -eq 3 ]'
chmod 0600 "$T/copy.sif"
run "$HUTCH" exec "$T/copy.sif" true
check "a changed image (its change time) gets a new entry" '[ $RC -eq 0 ] && [ "$(entries)" -eq 4 ]'

run "$HUTCH" cache clean
check "cache clean empties the cache" '[ $RC -eq 0 ] && [ "$(entries)" -eq 0 ]'
run "$HUTCH" cache clean --force
check "cache clean --force of an empty cache" '[ $RC -eq 0 ]'

conf "file cache size = 0"
HUTCH_CONF=$T/test.conf run "$HUTCH" exec "$IMAGES/image.sif" md5sum /bin/busybox
check "'file cache size = 0' keeps nothing" '[ $RC -eq 0 ] && [ "$(cut -d" " -f1 "$OUT")" = "${want%% *}" ] && [ "$(entries)" -eq 0 ]'

# busybox is 1.9 MiB and each image adds a fragment block of up to 0.3 MiB: a 5.5 MiB cap
# holds two images' entries, and a trim down to 7/8 of it (4.8 MiB) keeps both whatever the
# fragments' sizes (a 5 MiB cap trimmed to 4.4 MiB could take the second image's too)
conf "file cache size = 5632K"
# each payload waits (5 s at most) for its image's entry: the server writes it after answering
# the open, and a payload that ends at once can end the server before that
for i in 1 2 3; do
	cp "$IMAGES/image.sif" "$T/c$i.sif"
	HUTCH_CONF=$T/test.conf run "$HUTCH" exec -B "$C:/c" "$T/c$i.sif" sh -c 'n=0; while [ $n -lt 100 ] && ! ls /c | grep -v -- "-8000000000000000$" | grep -q -- "^f-[0-9a-f]*-$1-"; do sleep 0.05; n=$((n + 1)); done' sh "$(printf %x "$(stat -c %i "$T/c$i.sif")")"
	[ "$i" -eq 1 ] && first=$(find "$C" -maxdepth 1 -name 'f-*' ! -name 'f-*-8000000000*')
	sleep 0.05
done
check "past its cap the least recently used entry goes first" '[ "$(entries)" -eq 2 ] && [ ! -e "$first" ]'
conf "file cache size = 3M"
cp "$IMAGES/image.sif" "$T/c4.sif"
HUTCH_CONF=$T/test.conf run "$HUTCH" exec "$T/c4.sif" md5sum /bin/busybox
check "a file of more than half the cap is served but not kept" '[ $RC -eq 0 ] && [ "$(cut -d" " -f1 "$OUT")" = "${want%% *}" ] && ! find "$C" -name "f-*-$(printf %x "$(stat -c %i "$T/c4.sif")")-*" ! -name "f-*-8000000000*" | grep -q .'

"$HUTCH" cache clean
chmod 0777 "$C"
run "$HUTCH" exec "$IMAGES/image.sif" md5sum /bin/busybox
check "a cache folder others may write to is not used, with a warning" '[ $RC -eq 0 ] && [ "$(cut -d" " -f1 "$OUT")" = "${want%% *}" ] && [ "$(entries)" -eq 0 ] && err_has "not yours alone (yours, mode 0777)"'
chmod 0700 "$C"
rm -rf "$C"
ln -s "$T" "$C"
run "$HUTCH" exec "$IMAGES/image.sif" true
check "a cache folder that is a symlink is not followed" '[ $RC -eq 0 ] && [ -z "$(ls "$T" | grep "^f-")" ]'
rm "$C"

# without a runtime folder of the user's: tmpfs in /dev/shm, in a folder only the user owns
shm=/dev/shm/hutch-$(id -u)
had_shm=$([ -e "$shm" ] && echo y)
run env -u XDG_RUNTIME_DIR "$HUTCH" exec "$IMAGES/image.sif" true
check "without XDG_RUNTIME_DIR the cache is $shm/cache, 0700" \
	'[ $RC -eq 0 ] && [ -n "$(ls "$shm/cache" | grep "^f-")" ] && [ "$(stat -c %a "$shm")" = 700 ]'
run env -u XDG_RUNTIME_DIR "$HUTCH" cache list
check "cache list names that folder" 'out_has "$shm/cache"'
# --fakeroot: uid 0 inside the user namespace, but the cache is the caller's (root's folder,
# when root has run hutch here, is not taken for one planted in the caller's way)
if [ "$(id -u)" -ne 0 ] && [ -e /dev/shm/hutch-0 ]; then
	run env -u XDG_RUNTIME_DIR "$HUTCH" exec --fakeroot "$IMAGES/image.sif" true
	check "--fakeroot: no warning about root's cache folder" '[ $RC -eq 0 ] && ! err_has "not yours alone"'
fi
[ -n "$had_shm" ] || rm -rf "$shm"

# Read-ahead of fragment blocks: an opener that steps from one fragment block to the next
# has the server's inflate helper (2+ CPUs) put the two after it into the cache. 30 files
# of 40000 bytes, three to a 128 KiB fragment block, blocks 0-9 in the files' order (the
# image's only small files: busybox is bigger than a block and keeps its tail in a block of
# its own).
if [ "$(nproc)" -ge 2 ]; then
	mkdir -p -m 0700 "$C" # bound into the container below
	"$HUTCH" cache clean >/dev/null
	ra=$T/ra
	mkdir -p "$ra/bin" "$ra/data"
	cp "$BB" "$ra/bin/busybox"
	for a in sh cat sleep; do ln -s busybox "$ra/bin/$a"; done
	for i in $(seq -w 0 29); do yes "line of file $i, read ahead" | head -c 40000 > "$ra/data/f$i"; done
	mksquashfs "$ra" "$T/ra.sqfs" -noappend -quiet -no-progress -all-root >/dev/null
	# the fragment blocks in the cache, by index (the key's last 8 hex digits)
	fragidx() { find "$C" -maxdepth 1 -name 'f-*-8000000000*' | sed 's/.*\(........\)$/\1/' | sort | tr '\n' ' '; }
	# the container waits (5 s at most) for the entries the helper is to write: the queue is
	# dropped when the container ends
	awaits='have() { for b in "$@"; do ls /c | grep -q -- "-800000000000000$b\$" || return 1; done; }
		n=0; while [ $n -lt 100 ] && ! have "$@"; do sleep 0.05; n=$((n + 1)); done'
	run "$HUTCH" exec -B "$C:/c" "$T/ra.sqfs" sh -c "cat /data/f00 /data/f01 /data/f02 /data/f03 /data/f04 /data/f05 && $awaits" sh 2 3
	check "reading fragment blocks 0 and 1 in order puts 2 and 3 in the cache ahead" \
		'[ $RC -eq 0 ] && cat "$ra"/data/f0[0-5] | cmp -s - "$OUT" && [ "$(fragidx)" = "00000000 00000001 00000002 00000003 " ]'
	run "$HUTCH" exec "$T/ra.sqfs" cat /data/f06 /data/f07 /data/f08 /data/f09 /data/f10 /data/f11
	check "... whose files then read byte for byte from those entries" \
		'[ $RC -eq 0 ] && cat "$ra"/data/f0[6-9] "$ra"/data/f1[01] | cmp -s - "$OUT"'
	# a stream the cache serves already costs nothing: the helper's look at an entry would
	# mark it used
	e2=$(find "$C" -maxdepth 1 -name 'f-*-8000000000000002')
	e3=$(find "$C" -maxdepth 1 -name 'f-*-8000000000000003')
	before="$(stat -c %.9Y "$e2" "$e3")"
	sleep 0.05
	run "$HUTCH" exec "$T/ra.sqfs" sh -c 'cat /data/f00 /data/f01 /data/f02 /data/f03 /data/f04 /data/f05 >/dev/null && sleep 0.3'
	check "reading blocks 0 and 1 again, from the cache, reads nothing ahead" \
		'[ $RC -eq 0 ] && [ -n "$e2" ] && [ -n "$e3" ] && [ "$(stat -c %.9Y "$e2" "$e3")" = "$before" ]'
	# blocks 7 (the first read: no step), 3 (back), 6 (a jump of three)
	run "$HUTCH" exec "$T/ra.sqfs" sh -c 'cat /data/f21 /data/f09 /data/f18 >/dev/null && sleep 0.3'
	check "reads that jump about read nothing ahead" '[ $RC -eq 0 ] && ! fragidx | grep -q 00000008'
	# two streams at once (as the ranks of a job reading their parts): blocks 0, 5, 1, 6
	"$HUTCH" cache clean >/dev/null
	run "$HUTCH" exec -B "$C:/c" "$T/ra.sqfs" sh -c "cat /data/f00 /data/f15 /data/f03 /data/f18 >/dev/null && $awaits" sh 2 3 7 8
	check "two streams of reads at once each read ahead" \
		'[ $RC -eq 0 ] && [ "$(fragidx)" = "00000000 00000001 00000002 00000003 00000005 00000006 00000007 00000008 " ]'
	"$HUTCH" cache clean >/dev/null
fi

run "$HUTCH" exec "$IMAGES/rootfs" true
check "a folder image keeps nothing" '[ $RC -eq 0 ] && [ "$(entries)" -eq 0 ]'

run "$HUTCH" cache frob
check "an unknown cache command is refused in one line" 'usage_fails_with "unknown cache command"'
run "$HUTCH" cache list --force
check "cache list takes no --force" 'usage_fails_with "unknown option"'
run "$HUTCH" cache
check "cache with no command names the two" 'usage_fails_with "expects list or clean"'
leftovers "cache"
finish
