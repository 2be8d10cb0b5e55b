# The image server's threads: byte-exact reads under concurrency. Readers in several
# processes of one container read overlapping and distinct files while others list the
# tree; the image's blocks are small (4 KiB), so that its fragment blocks outnumber the
# server's fragment cache and are evicted while files that share them are read; with the
# decompressed-file cache and without. A corrupt block read by two readers at once gives
# both an I/O error, and the server goes on serving.
. "$(dirname "$0")/lib.sh"
me=$(id -u)
root=$T/rootfs
cp -a "$IMAGES/rootfs" "$root"
mkdir -p "$root/data"
# 60 folders of files from 1 byte to 3 blocks and a tail, text (compressible) and random
for d in $(seq -w 1 60); do
	mkdir -p "$root/data/d$d"
	for f in 1 2 3 4 5; do
		n=$(( (10#$d * 977 + f * 4099) % 14000 + 1 ))
		if [ $((f % 2)) = 0 ]; then
			head -c "$n" /dev/urandom > "$root/data/d$d/f$f"
		else
			yes "line $d $f of the parallel test" | head -c "$n" > "$root/data/d$d/f$f"
		fi
	done
done
head -c $((3 << 20)) /dev/urandom > "$root/data/big"
# a big compressible file, whose blocks the opener and the inflate helper share at its
# first open (without the file cache: at every open)
seq 1 200000 | sed 's/$/ of the big text/' > "$root/data/bigtext"
(cd "$root/data" && find . -type f | sort | xargs md5sum) > "$T/sums"
chmod -R a+rX "$T"
# readers.sh in the container: 4 processes read every file (overlapping), 2 read a half of
# the list each (distinct), 2 list the tree over and over meanwhile; every reader's sums
# must be the host's
cat > "$root/readers.sh" <<'S'
w=$(mktemp -d) || exit 1
trap 'rm -rf "$w"' EXIT
cd /data || exit 1
find . -type f | sort > "$w/list"
n=$(wc -l < "$w/list")
for i in 1 2 3 4; do xargs md5sum < "$w/list" > "$w/all$i" & done
head -n $((n / 2)) "$w/list" | xargs md5sum > "$w/half1" &
tail -n +$((n / 2 + 1)) "$w/list" | xargs md5sum > "$w/half2" &
for i in 1 2; do (for k in 1 2 3 4 5; do ls -lR /data > /dev/null || echo "listing failed"; done) & done
wait
for i in 1 2 3 4; do cat "$w/all$i"; echo; done
cat "$w/half1" "$w/half2"
S
mksquashfs "$root" "$T/img.sqfs" -noappend -quiet -no-progress -all-root -b 4096 >/dev/null

expected() { for i in 1 2 3 4; do cat "$T/sums"; echo; done; cat "$T/sums"; }
expected > "$T/expected"

run "$HUTCH" exec "$T/img.sqfs" sh /readers.sh
check "8 readers and 2 listings at once in one container: every byte as on the host" \
	'[ $RC -eq 0 ] && cmp -s "$OUT" "$T/expected" && ! err_has .'
leftovers "concurrent readers"

echo 'file cache size = 0' > "$T/nocache.conf"
HUTCH_CONF=$T/nocache.conf run "$HUTCH" exec "$T/img.sqfs" sh /readers.sh
check "... and without the decompressed-file cache (fragment blocks from the image each time)" \
	'[ $RC -eq 0 ] && cmp -s "$OUT" "$T/expected" && ! err_has .'
leftovers "concurrent readers without the file cache"

# an empty cache of 64 KiB: its fragment entries (4 KiB blocks), read ahead and read, are
# trimmed away while the readers read them
echo 'file cache size = 64K' > "$T/tiny.conf"
mkdir -m 0700 "$T/xdg"
cache_bytes() { find "$T/xdg/hutch/cache" -name 'f-*' -printf '%s\n' | awk '{s += $1} END {print s + 0}'; }
XDG_RUNTIME_DIR=$T/xdg HUTCH_CONF=$T/tiny.conf run "$HUTCH" exec "$T/img.sqfs" sh /readers.sh
check "... and with a cache so small that its entries go while they are read and read ahead" \
	'[ $RC -eq 0 ] && cmp -s "$OUT" "$T/expected" && ! err_has . && [ "$(cache_bytes)" -gt 0 ] && [ "$(cache_bytes)" -le 65536 ]'
leftovers "concurrent readers with a tiny file cache"

# a missing name is cached as missing (a negative entry): it stays missing, and its
# neighbours stay found
run "$HUTCH" exec "$T/img.sqfs" sh -c 'for i in 1 2 3; do [ -e /data/nope ] && echo found; ls /data/d01/nope; done
	cat /data/nope/x; md5sum /data/d01/f1'
check "a missing name reads as missing every time (ENOENT, not EIO), the rest as before" \
	'[ "$(grep -c "No such file or directory" "$ERR")" -eq 4 ] && ! out_has found && out_has "$(grep "d01/f1" "$T/sums" | cut -c1-32)"'
leftovers "missing names"

# two containers of the same image at once, each with its own server
# (what each read is compared whole; a container's messages are shown when it differs)
"$HUTCH" exec "$T/img.sqfs" sh /readers.sh > "$T/out2" 2> "$T/err2" &
p=$!
run "$HUTCH" exec "$T/img.sqfs" sh /readers.sh
wait "$p"
rc2=$?
if ! { [ $RC -eq 0 ] && [ $rc2 -eq 0 ] && cmp -s "$OUT" "$T/expected" && cmp -s "$T/out2" "$T/expected"; }; then
	echo "# two containers: rc $RC and $rc2; what differs from the expected sums:"
	diff "$T/expected" "$OUT" | sed 's/^/#   first: /'
	diff "$T/expected" "$T/out2" | sed 's/^/#   second: /'
	sed 's/^/#   second err: /' "$T/err2"
fi
check "two containers of one image read it at once, byte-exact" \
	'[ $RC -eq 0 ] && [ $rc2 -eq 0 ] && cmp -s "$OUT" "$T/expected" && cmp -s "$T/out2" "$T/expected"'
leftovers "two containers at once"

# --- a corrupt block: /a is the first file's data in the image (mksquashfs writes data in
# the order of its sorted walk), its first block right after the 96-byte superblock
bad=$T/bad
mkdir -p "$bad"
cp -a "$IMAGES/rootfs/." "$bad/"
yes "a compressible line for the corrupt block" | head -c 65536 > "$bad/a"
mksquashfs "$bad" "$T/bad.sqfs" -noappend -quiet -no-progress -all-root -b 4096 >/dev/null
printf '\377\377\377\377\377\377\377\377\377\377\377\377\377\377\377\377' |
	dd of="$T/bad.sqfs" bs=1 seek=120 conv=notrunc status=none
run "$HUTCH" exec "$T/bad.sqfs" sh -c '
	w=$(mktemp -d); trap "rm -rf $w" EXIT
	(cat /a > /dev/null 2>$w/e1; echo "r1 $?") & (cat /a > /dev/null 2>$w/e2; echo "r2 $?") & wait
	cat $w/e1 $w/e2; cat /etc/hutch-test-marker'
check "a corrupt block read by two readers at once: an I/O error for both" \
	'out_has "^r1 1" && out_has "^r2 1" && [ "$(grep -c "Input/output error" "$OUT")" -eq 2 ]'
check "... and the server goes on serving the rest of the image, no crash reported" \
	'out_has "^image-marker$" && ! err_has "corrupt" && [ $RC -eq 0 ]'
leftovers "a corrupt block"

# --- the worker's threads: one per CPU it may run on, at most 8, all confined
mkfifo "$T/go"
exec 7<>"$T/go"
"$HUTCH" exec "$T/img.sqfs" sh -c 'read x' <&7 &
hp=$!
W=
for i in $(seq 100); do
	for q in $(pgrep -u "$me" -x hutch-squashfs); do
		ls -l "/proc/$q/fd" 2>/dev/null | grep -q -- "-> $T/img.sqfs\$" && W=$q
	done
	[ -n "$W" ] && [ "$(ls "/proc/$W/task" | wc -l)" -gt 1 ] && break
	sleep 0.1
done
cpus=$(nproc)
[ "$cpus" -gt 8 ] && cpus=8
tasks=$(ls "/proc/${W:-0}/task" 2>/dev/null | wc -l)
seccomp_all=1
for t in /proc/${W:-0}/task/*; do
	[ "$(awk '$1 == "Seccomp:" {print $2}' "$t/status" 2>/dev/null)" = 2 ] || seccomp_all=0
done
echo go >&7
wait "$hp"
exec 7>&-
# one that watches, and with more than one CPU the inflate helper
extra=1
[ "$cpus" -gt 1 ] && extra=2
check "the worker serves with one thread per CPU (one that watches, one inflate helper with 2+ CPUs): $tasks tasks for $cpus CPUs" \
	'[ "$tasks" -eq $((cpus + extra)) ]'
check "... every one under the seccomp filter" '[ "$seccomp_all" = 1 ]'
leftovers "the server's threads"
finish
