# Persistent overlays: folder overlays written, kept and read again (whiteouts and opaque
# folders too), read-only layers and their order, one writer at a time (batch and
# instance holders named), instances keeping data across stop/start and restarts, bad input.
. "$(dirname "$0")/lib.sh"
trap '"$HUTCH" instance stop --all --force >/dev/null 2>&1; rm -rf "$T"' EXIT
I=$IMAGES/image.sif
# writes into the image's folders: as root through the SIF (a FUSE lower layer); as a user
# through the sandbox folder, which is the user's (the SIF's files belong to root, a uid
# the user's namespace does not map: see the user guide's limits)
W=$I
[ "$MODE" = root ] || W=$IMAGES/rootfs
O=$T/ovl
mkdir "$O"

# --- a folder overlay
run "$HUTCH" exec -o "$O" "$W" sh -c 'echo kept > /etc/added && rm /etc/hutch-test-marker'
check "--overlay DIR: writes go to DIR/upper" '[ $RC -eq 0 ] && [ "$(cat "$O/upper/etc/added")" = kept ] && [ -d "$O/work" ]'
check "a deleted image file is a whiteout in DIR/upper" '[ -c "$O/upper/etc/hutch-test-marker" ]'
run "$HUTCH" exec --overlay "$O" "$W" sh -c 'cat /etc/added; test -e /etc/hutch-test-marker || echo gone'
check "the next start sees the change and the deletion" 'out_is "kept
gone"'
run "$HUTCH" exec -o "$O" "$W" sh -c 'rm -rf /srv/www && mkdir /srv/www && echo n > /srv/www/new'
run "$HUTCH" exec -o "$O:ro" "$W" ls /srv/www
check "a folder made anew over an image folder stays opaque" 'out_is new'
run "$HUTCH" exec -o "$O:ro" "$W" sh -c 'cat /etc/added; echo x > /etc/more'
check "DIR:ro is a read-only layer" '[ $RC -ne 0 ] && out_is kept && [ ! -e "$O/upper/etc/more" ]'
run "$HUTCH" exec --writable-tmpfs "$W" sh -c 'echo t > /etc/tmpfs-file'
check "--writable-tmpfs writes" '[ $RC -eq 0 ]'
run "$HUTCH" exec --writable-tmpfs "$W" sh -c 'test -e /etc/tmpfs-file || echo lost'
check "--writable-tmpfs loses its changes at exit" 'out_is lost'
# 'sessiondir max size' (hutch.conf, MiB, default 64) caps --writable-tmpfs and --contain's folders
fill() { echo "dd if=/dev/zero of=$1 bs=1M count=$2 2>&1 >/dev/null | grep -o 'No space left on device'"; }
run "$HUTCH" exec --writable-tmpfs "$W" sh -c "$(fill /big 70)"
check "--writable-tmpfs past the default 64 MiB: ENOSPC inside" 'out_is "No space left on device"'
printf 'sessiondir max size = 8\n' >"$T/small.conf"
run env HUTCH_CONF="$T/small.conf" "$HUTCH" exec --writable-tmpfs "$W" sh -c "$(fill /big 6); ls -s /big"
check "a user's 'sessiondir max size = 8': 6 MiB fit" '[ $RC -eq 0 ] && out_has "^ *6144 /big"'
run env HUTCH_CONF="$T/small.conf" "$HUTCH" exec --writable-tmpfs "$W" sh -c "$(fill /big 10)"
check "... 10 MiB get ENOSPC" 'out_is "No space left on device"'
run env HUTCH_CONF="$T/small.conf" "$HUTCH" exec --contain "$W" sh -c "$(fill /tmp/big 10)"
check "... and so does --contain's /tmp" 'out_is "No space left on device"'
printf 'Bootstrap: localimage\nFrom: %s\n\n%%post\n    dd if=/dev/zero of=/tmp/big bs=1M count=10 && rm /tmp/big\n' "$I" >"$T/big.def"
run env HUTCH_CONF="$T/small.conf" "$HUTCH" build --sandbox "$T/built" "$T/big.def"
check "... but not a build's %post: its /tmp takes 10 MiB" '[ $RC -eq 0 ] && [ -d "$T/built/etc" ]'
rm -rf "$T/built"
printf 'sessiondir max size = 0\n' >"$T/big.conf"
run env HUTCH_CONF="$T/big.conf" "$HUTCH" exec --writable-tmpfs "$W" sh -c "$(fill /big 70)"
check "a user's file cannot lift the cap (0): warned, ignored" 'out_is "No space left on device" && err_has "cannot loosen"'
run "$HUTCH" exec "$W" sh -c 'cat /etc/added 2>/dev/null; cat /etc/hutch-test-marker'
check "without --overlay the image is untouched" 'out_is image-marker'
touch "$T/host-marker"
run "$HUTCH" exec -o "$O" "$W" sh -c 'for f in /proc/self/fd/*; do ls -a "$f/../" 2>/dev/null; [ -d "$f/upper" ] && touch "$f/upper/via-fd" 2>/dev/null && echo wrote; done; true'
check "no fd the payload inherits reaches the host beside the overlay or writes into it" '[ $RC -eq 0 ] && ! out_has host-marker && ! out_has wrote && [ ! -e "$O/upper/via-fd" ]'

# --- layers: the last writable overlay is the upper one, the others read-only lowers
mkdir "$T/l1" "$T/l2"
echo l1 > "$T/l1/f1"
echo l1 > "$T/l1/both"
echo l2 > "$T/l2/both"
run "$HUTCH" exec -o "$T/l1:ro" -o "$T/l2:ro" "$I" sh -c 'cat /f1 /both'
check "read-only folders stack, the later above" 'out_is "l1
l2"'
mkdir "$T/u2"
run "$HUTCH" exec -o "$T/l2" -o "$T/u2" "$I" sh -c 'cat /both; echo w > /w'
check "two writable: the last is the upper layer, the first a lower one" 'out_is l2 && [ -e "$T/u2/upper/w" ] && [ ! -e "$T/l2/upper" ] && [ ! -e "$T/l2/w" ]'

# --writable-tmpfs beside a writable overlay: refused (Apptainer's error too), nothing written
mkdir "$T/wt"
run "$HUTCH" exec -o "$T/wt" --writable-tmpfs "$I" sh -c 'echo w > /wt-file'
check "--writable-tmpfs with a writable overlay: one line naming it, refused, nothing written" \
	"fails_with \"--writable-tmpfs cannot be used with the writable overlay '$T/wt'\" && [ ! -e \"$T/wt/upper/wt-file\" ]"
run "$HUTCH" instance start -o "$T/wt" --writable-tmpfs "$I" wt
check "... as at instance start" "fails_with \"--writable-tmpfs cannot be used with the writable overlay '$T/wt'\" && ! \"\$HUTCH\" instance list | grep -q '^wt '"
run "$HUTCH" exec -o "$T/l1:ro" --writable-tmpfs "$I" sh -c 'echo w > /wt-file && cat /f1'
check "... but a read-only overlay takes a tmpfs above it" '[ $RC -eq 0 ] && out_is l1 && [ ! -e "$T/l1/wt-file" ]'
leftovers "--writable-tmpfs beside an overlay"

# --- one writer at a time
"$HUTCH" exec -o "$O" "$I" sh -c 'touch /ready; exec sleep 30' >/dev/null 2>&1 &
bg=$!
wait_for '[ -e "$O/upper/ready" ]'
run "$HUTCH" exec -o "$O" "$I" true
check "a second writer is refused, naming the batch holder's pid" "fails_with \"overlay '$O' is in use by pid $bg (sleep): one writer at a time\""
run "$HUTCH" exec -o "$O:ro" "$I" true
check "a reader is refused while it is written" 'fails_with "is being written by pid"'
kill "$bg"
wait "$bg" 2>/dev/null
run "$HUTCH" exec -o "$O" "$I" true
check "once the holder is gone the overlay is free" '[ $RC -eq 0 ]'
rm -f "$O/upper/ready"
"$HUTCH" exec -o "$T/l1:ro" "$I" sh -c "touch $T/r1-ready; exec sleep 30" >/dev/null 2>&1 &
bg=$!
wait_for '[ -e "$T/r1-ready" ]'
run "$HUTCH" exec -o "$T/l1:ro" "$I" cat /f1
check "readers share an overlay" 'out_is l1'
kill "$bg"
wait "$bg" 2>/dev/null

# --- instances: the supervisor holds the lock; data survives stop/start and restarts
K=$T/kv
mkdir "$K"
run "$HUTCH" instance start -o "$K" "$I" kv
check "instance start --overlay" '[ $RC -eq 0 ]'
run "$HUTCH" exec instance://kv sh -c 'mkdir -p /data && echo v1 > /data/key'
run "$HUTCH" exec -o "$K" "$I" true
check "a second writer is refused, naming the instance" "fails_with \"overlay '$K' is in use by instance 'kv' (its supervisor, pid [0-9]*): one writer\""
"$HUTCH" instance stop kv >/dev/null 2>&1
run "$HUTCH" instance start -o "$K" "$I" kv
run "$HUTCH" exec instance://kv cat /data/key
check "an instance's data survives instance stop / start" 'out_is v1'
mkdir "$T/join"
run "$HUTCH" exec -o "$T/join" instance://kv sh -c 'echo j > /data/joined'
check "exec --overlay instance://NAME: one line, refused, nothing written" 'fails_with "hutch: error: --overlay cannot be used with instance://kv" && [ -z "$(ls -A "$T/join")" ] && [ ! -e "$K/upper/data/joined" ]'
run "$HUTCH" shell --writable-tmpfs instance://kv
check "shell --writable-tmpfs instance://NAME: one line, refused" 'fails_with "hutch: error: --writable-tmpfs cannot be used with instance://kv"'
run env APPTAINER_OVERLAY="$T/join" "$HUTCH" run instance://kv
check "run instance://NAME with APPTAINER_OVERLAY set: refused too" 'fails_with "--overlay cannot be used with instance://kv"'
"$HUTCH" instance stop kv >/dev/null 2>&1
R=$(mktemp -d "$T/img.XXXX")
cp -a "$IMAGES/rootfs/." "$R"
printf '#!/bin/sh\ncount=$(cat /data/n 2>/dev/null || echo 0)\nmkdir -p /data && echo $((count + 1)) > /data/n\nexec sleep 1000\n' >"$R/.singularity.d/startscript"
run "$HUTCH" instance start --restart always -o "$K" "$R" kvr
check "instance start --restart always --overlay" '[ $RC -eq 0 ]'
wait_for '[ "$(cat "$K/upper/data/n" 2>/dev/null)" = 1 ]'
run "$HUTCH" exec instance://kvr sh -c 'kill 1'
check "after a restart the container counts on from the overlay" 'wait_for "[ \"\$(cat \"$K/upper/data/n\" 2>/dev/null)\" = 2 ]" 100'
"$HUTCH" instance stop kvr >/dev/null 2>&1
leftovers "overlay instances"

# --- ext3 images: overlay create; as root a loop device and the kernel's ext3
E=$T/ovl.img
# (on a failure e2fsck's report goes into the TAP output)
fsck_clean() { /usr/sbin/e2fsck -fn "$1" >"$T/fsck.out" 2>&1 || { echo "# e2fsck -fn: status $?"; sed 's/^/#   fsck: /' "$T/fsck.out"; false; }; }
# as a user hutch-ext3 serves an ext3 overlay; it ends with the container
# (a batch run and instance stop return only once they have ended: fuse_gone at once;
# after a SIGKILL or a failed start they end a moment later: nofuse waits)
fuse_procs() { { pgrep -a -u "$(id -u)" -x hutch-ext3; pgrep -a -u "$(id -u)" -x hutch-fuse; } | grep .; }
# (on a failure the processes left go into the TAP output)
fuse_gone() { ! fuse_procs >"$T/fuse.out" || { sed 's/^/#   left: /' "$T/fuse.out"; false; }; }
nofuse() { wait_for '! fuse_procs >/dev/null' || fuse_gone; }
# hutch-ext3 marks the image clean at its end, once it has written it back: an image left
# "not clean" is one whose server was killed before that (e2fsck -n may not see it)
marked_clean() { /usr/sbin/dumpe2fs -h "$1" 2>/dev/null | grep -q '^Filesystem state: *clean$' || { echo "#   $(/usr/sbin/dumpe2fs -h "$1" 2>&1 | grep -i 'state:')"; false; }; }
run "$HUTCH" overlay create --create-dir /data "$E"
check "overlay create: an ext3 image e2fsck finds clean, mode 0600 (as Apptainer's)" '[ $RC -eq 0 ] && fsck_clean "$E" && [ "$(stat -c %s "$E")" -eq $((64 << 20)) ] && [ "$(stat -c %a "$E")" = 600 ]'
check "... whose upper/data is the caller's" '/usr/sbin/debugfs -R "stat /upper/data" "$E" 2>/dev/null | grep -q "User: *$(id -u) "'
run "$HUTCH" overlay create -S --size 100 "$T/sparse.img"
check "overlay create -S (--sparse) --size 100: a sparse file of 100 MiB" '[ $RC -eq 0 ] && [ "$(stat -c %s "$T/sparse.img")" -eq $((100 << 20)) ] && [ "$(du -k "$T/sparse.img" | cut -f1)" -lt 20000 ]'
owner_in() { /usr/sbin/debugfs -R "stat $2" "$1" 2>/dev/null | grep -o "User: *[0-9]* *Group: *[0-9]*" | tr -s ' '; }
F=$T/fake.img
run "$HUTCH" overlay create --fakeroot --create-dir /data "$F"
check "overlay create --fakeroot: upper/, work/ and --create-dir folders are root's in the image" '[ $RC -eq 0 ] && fsck_clean "$F" && [ "$(owner_in "$F" /upper)" = "User: 0 Group: 0" ] && [ "$(owner_in "$F" /work)" = "User: 0 Group: 0" ] && [ "$(owner_in "$F" /upper/data)" = "User: 0 Group: 0" ]'
check "... and the file is the caller's" '[ "$(stat -c %u "$F")" = "$(id -u)" ]'
if [ "$MODE" = root ]; then
	run "$HUTCH" exec --fakeroot -o "$F" "$W" sh -c 'touch /x /data/y && stat -c "%u %g" /x /data/y'
	check "exec --fakeroot -o IMG made with --fakeroot: root writes, files are root's" '[ $RC -eq 0 ] && out_is "0 0
0 0" && wait_for "[ -z \"\$(losetup -j "$F")\" ]" && [ "$(owner_in "$F" /upper/x)" = "User: 0 Group: 0" ] && fsck_clean "$F"'
	run "$HUTCH" exec -o "$E" "$W" sh -c 'echo e > /data/f && rm /etc/hutch-test-marker'
	check "--overlay IMG.ext3 writes" '[ $RC -eq 0 ]'
	run "$HUTCH" exec -o "$E" "$W" sh -c 'cat /data/f; test -e /etc/hutch-test-marker || echo gone'
	check "the next start sees the write and the deletion" 'out_is "e
gone"'
	run "$HUTCH" exec -o "$E" "$W" sh -c 'for f in /proc/self/fd/*; do case "$(readlink "$f")" in *ovl.img*) grep ^flags "/proc/self/fdinfo/${f##*/}" ;; esac; done'
	check "the payload holds the ext3 image it writes read-only (its lock), no more" 'out_has flags && ! grep -q "[1-7]\$" "$OUT"'
	check "the image is clean after use and its loop device gone" 'fsck_clean "$E" && wait_for "[ -z \"\$(losetup -j "$E")\" ]"'
	run "$HUTCH" exec -o "$E:ro" "$W" sh -c 'cat /data/f; echo x > /data/g'
	check "IMG:ro is a read-only layer" '[ $RC -ne 0 ] && out_is e'
	run "$HUTCH" instance start -o "$E" "$W" ext
	run "$HUTCH" exec -o "$E" "$W" true
	check "an image in use by an instance is refused, naming it" 'fails_with "overlay .$E. is in use by instance .ext."'
	run "$HUTCH" exec instance://ext sh -c 'for i in 1 2 3 4 5 6 7 8; do echo $i > /data/n$i; done'
	pkill -KILL -u "$(id -u)" -x hutch-supervise
	check "a supervisor killed with SIGKILL leaves a clean image" 'wait_for "[ -z \"\$(losetup -j "$E")\" ]" && fsck_clean "$E"'
	"$HUTCH" instance list >/dev/null 2>&1 # removes the killed supervisor's stale state
	run "$HUTCH" exec -o "$E" "$W" sh -c 'dd if=/dev/zero of=/data/big bs=1M count=80'
	check "a full ext3 overlay gives the container ENOSPC" '[ $RC -ne 0 ] && err_has "No space left on device"'
	check "... and e2fsck -n finds the image clean" 'wait_for "[ -z \"\$(losetup -j "$E")\" ]" && fsck_clean "$E"'
	# an image whose upper/ is a symlink to the host's / must not make / a layer
	mkdir -p "$T/evil/work"
	ln -s / "$T/evil/upper"
	/usr/sbin/mkfs.ext3 -q -d "$T/evil" "$T/evil.img" 64M >/dev/null 2>&1
	run "$HUTCH" exec -o "$T/evil.img:ro" "$W" ls /
	check "an ext3 overlay whose upper is a symlink: one line, refused" 'fails_with "upper. is a symbolic link: refused" && wait_for "[ -z \"\$(losetup -j "$T/evil.img")\" ]"'
	run "$HUTCH" exec -o "$T/evil.img" "$W" true
	check "... as the writable layer too, nothing left mounted" 'fails_with "upper. is a symbolic link: refused" && wait_for "[ -z \"\$(losetup -j "$T/evil.img")\" ]" && ! grep -q evil.img /proc/self/mountinfo'
	# a user's ext3 overlay with hutch-ext3 missing (hidden in a mount namespace of ours):
	# one line
	U=${AUX_USER:-hutchtest3}
	id "$U" >/dev/null 2>&1 || useradd -m -s /bin/bash "$U"
	UH=$(getent passwd "$U" | cut -d: -f6)
	runuser -u "$U" -- env HOME="$UH" "$HUTCH" overlay create "$UH/hutch-t-overlay.img" >/dev/null 2>&1
	run unshare -m sh -c 'mount --bind /dev/null "$1" && exec runuser -u "$2" -- env HOME="$3" "$4" exec -o "$3/hutch-t-overlay.img" "$5" true' - "$(dirname "$HUTCH")/hutch-ext3" "$U" "$UH" "$HUTCH" "$IMAGES/rootfs"
	check "a user's ext3 overlay without hutch-ext3: one line" 'fails_with "needs hutch-ext3 as a user" && [ -z "$(pgrep -u "$U" -x hutch-fuse)" ]'
	rm -f "$UH/hutch-t-overlay.img"
else
	# as a user: hutch-ext3 serves the image, the kernel's overlayfs takes it as its upper
	# layer; the server ends with the container
	run "$HUTCH" exec -o "$E" "$W" sh -c 'echo e > /data/f && rm /etc/hutch-test-marker && grep " / " /proc/self/mounts'
	check "--overlay IMG.ext3 as a user writes (hutch-ext3 under the kernel overlayfs)" '[ $RC -eq 0 ] && grep -q "overlay / overlay" "$OUT"'
	check "... it returns once its server has written the image back and ended: clean at once" 'fuse_gone && fsck_clean "$E" && marked_clean "$E"'
	run "$HUTCH" exec -o "$E" "$W" sh -c 'cat /data/f; test -e /etc/hutch-test-marker || echo gone'
	check "the next start sees the write and the deletion" 'out_is "e
gone"'
	# a start does not wait for the host to commit the last server's write-back: the fsync
	# libext2fs makes as it opens an image is skipped (hutch-ext3 is linked --wrap=fsync)
	strace -f -qq -e trace=fsync,execveat -o "$T/fsync.trace" "$HUTCH" exec -o "$E" "$W" true >"$OUT" 2>&1
	check "a start with an ext3 overlay makes no fsync (its server traced)" 'grep -q "execveat(.*hutch-ext3" "$T/fsync.trace" && ! grep "fsync(" "$T/fsync.trace"'
	run "$HUTCH" exec -o "$E:ro" "$W" sh -c 'cat /data/f; echo x > /data/g'
	check "IMG:ro is a read-only layer" '[ $RC -ne 0 ] && out_is e'
	"$HUTCH" exec -o "$E:ro" "$W" sh -c "touch $T/ro-ready; exec sleep 30" >/dev/null 2>&1 &
	bg=$!
	wait_for '[ -e "$T/ro-ready" ]'
	run "$HUTCH" exec -o "$E:ro" "$W" cat /data/f
	check "two readers share an ext3 image" 'out_is e'
	# the image may come from elsewhere: its server confines itself (seccomp) before it reads it
	check "hutch-ext3 serves under a seccomp filter" 'ps=$(pgrep -u "$(id -u)" -f "^hutch-ext3 ") && (for p in $ps; do grep -q "^Seccomp:[[:space:]]*2" "/proc/$p/status" || ! [ -e "/proc/$p" ] || exit 1; done)'
	run "$HUTCH" exec -o "$E" "$W" true
	check "a writer is refused while it is read" "fails_with \"overlay '$E' is in use by pid $bg\""
	kill "$bg"
	wait "$bg" 2>/dev/null
	nofuse
	# a Ctrl-C at the terminal: SIGINT to the caller's process group ends the payload; the
	# helpers, in a session of their own, end after it and the run returns once they have
	setsid "$HUTCH" exec -o "$E" "$W" sh -c "touch $T/int-ready; exec sleep 30" >/dev/null 2>&1 &
	bg=$!
	wait_for '[ -e "$T/int-ready" ]'
	kill -INT -- -"$bg"
	wait "$bg" 2>/dev/null
	check "SIGINT to the caller's process group: the run ends, then its server; the image is clean" 'fuse_gone && fsck_clean "$E"'
	nofuse
	R1=$(mktemp -d "$T/img.XXXX")
	cp -a "$IMAGES/rootfs/." "$R1"
	printf '#!/bin/sh\nexec sleep 1000\n' >"$R1/.singularity.d/startscript"
	chmod 0755 "$R1/.singularity.d/startscript"
	run "$HUTCH" instance start -o "$E" "$R1" ext
	check "instance start -o IMG.ext3 as a user" '[ $RC -eq 0 ]'
	run "$HUTCH" exec -o "$E" "$W" true
	check "a second writer is refused, naming the instance" 'fails_with "overlay .$E. is in use by instance .ext."'
	run "$HUTCH" exec instance://ext sh -c 'echo v1 > /data/key'
	"$HUTCH" instance stop ext >/dev/null 2>&1
	check "instance stop returns once the server is gone, the image clean" 'fuse_gone && fsck_clean "$E" && marked_clean "$E"'
	run "$HUTCH" instance start -o "$E" "$R1" ext
	run "$HUTCH" exec instance://ext cat /data/key
	check "an instance's data in an ext3 image survives stop / start" 'out_is v1'
	run "$HUTCH" exec instance://ext sh -c 'for i in 1 2 3 4 5 6 7 8; do echo $i > /data/n$i; done'
	pkill -KILL -u "$(id -u)" -x hutch-supervise
	check "a supervisor killed with SIGKILL: hutch-ext3 ends cleanly, the image is clean" 'nofuse && fsck_clean "$E"'
	"$HUTCH" instance list >/dev/null 2>&1 # removes the killed supervisor's stale state
	# the watcher killed with SIGKILL: its helpers get SIGTERM from the kernel at once
	# (PR_SET_PDEATHSIG) while hutch-ext3 still serves its mount, so it writes the image back
	run "$HUTCH" instance start -o "$E" "$R1" ext
	"$HUTCH" exec instance://ext sh -c 'for i in 1 2 3 4 5 6 7 8; do echo w$i > /data/w$i; done' >/dev/null 2>&1
	pkill -KILL -u "$(id -u)" -x hutch-fuse
	check "the overlay watcher killed with SIGKILL: hutch-ext3 ends cleanly, the image clean, the data kept" \
		'nofuse && fsck_clean "$E" && marked_clean "$E" && [ "$(/usr/sbin/debugfs -R "cat /upper/data/w8" "$E" 2>/dev/null)" = w8 ]'
	"$HUTCH" instance stop ext >/dev/null 2>&1
	check "... and instance stop afterwards ends the instance, nothing left" 'wait_for "! pgrep -u $(id -u) -x hutch-supervise >/dev/null" && fuse_gone'
	R2=$(mktemp -d "$T/img.XXXX")
	cp -a "$IMAGES/rootfs/." "$R2"
	printf '#!/bin/sh\ncount=$(cat /data/n 2>/dev/null || echo 0)\necho $((count + 1)) > /data/n\nexec sleep 1000\n' >"$R2/.singularity.d/startscript"
	chmod 0755 "$R2/.singularity.d/startscript"
	run "$HUTCH" instance start --restart always -o "$E" "$R2" extr
	wait_for '[ "$("$HUTCH" exec instance://extr cat /data/n 2>/dev/null)" = 1 ]'
	"$HUTCH" exec instance://extr sh -c 'kill 1' >/dev/null 2>&1
	check "after a restart the container counts on from the ext3 image" 'wait_for "[ \"\$(\"$HUTCH\" exec instance://extr cat /data/n 2>/dev/null)\" = 2 ]" 100'
	"$HUTCH" instance stop extr >/dev/null 2>&1
	check "... and after its stop nothing is left, the image clean" 'fuse_gone && fsck_clean "$E"'
	# a file removed while open stays readable through its fd (the server frees it once the
	# kernel forgets it: early, reads fail; never, e2fsck finds the inode unattached)
	run "$HUTCH" exec -o "$E" "$W" sh -c 'exec 3<>/data/held; echo one >&3; rm /data/held; echo two >&3; cat /proc/self/fd/3; test -e /data/held || echo gone'
	check "a file removed while open reads on through its fd, and is freed after (e2fsck clean)" 'out_is "one
two
gone" && fuse_gone && fsck_clean "$E"'
	# a file the user namespace cannot name the owner of (uid 0 set in the image, as real
	# root's containers leave it) shows as the caller's and can be changed and removed
	echo root-owned >"$T/rootf"
	/usr/sbin/debugfs -w -R "write $T/rootf /upper/data/rootf" "$E" >/dev/null 2>&1
	/usr/sbin/debugfs -w -R "set_inode_field /upper/data/rootf uid 0" "$E" >/dev/null 2>&1
	/usr/sbin/debugfs -w -R "set_inode_field /upper/data/rootf gid 0" "$E" >/dev/null 2>&1
	run "$HUTCH" exec -o "$E" "$W" sh -c 'stat -c "%u %g" /data/rootf && echo more >> /data/rootf && cat /data/rootf && rm /data/rootf'
	check "a file owned by an unmapped uid shows as the caller's, and can be written and removed" "out_is \"$(id -u) $(id -g)
root-owned
more\" && fuse_gone && fsck_clean \"\$E\""
	# a folder a kernel overlay as real root made opaque (trusted.overlay.opaque, as
	# Apptainer as root leaves it) hides the image's files as root's overlay would
	echo upper-only >"$T/newf"
	for c in "mkdir /upper/srv" "mkdir /upper/srv/www" "ea_set /upper/srv/www trusted.overlay.opaque y" \
		"write $T/newf /upper/srv/www/new"; do
		/usr/sbin/debugfs -w -R "$c" "$E" >/dev/null 2>&1
	done
	run "$HUTCH" exec -o "$E" "$W" ls /srv/www
	check "a folder made opaque by root's overlay (trusted.overlay.opaque) hides the image's files" 'out_is new'
	/usr/sbin/debugfs -w -R "rm /upper/srv/www/new" "$E" >/dev/null 2>&1
	/usr/sbin/debugfs -w -R "rmdir /upper/srv/www" "$E" >/dev/null 2>&1
	/usr/sbin/debugfs -w -R "rmdir /upper/srv" "$E" >/dev/null 2>&1
	check "... and e2fsck finds the image clean after" 'fsck_clean "$E"'
	# a directory of many blocks, whose names the server keeps in memory: adding, removing,
	# renaming and linking names there must read the same in the next container
	many='i=0; while [ $i -lt 700 ]; do echo $i > a-rather-long-file-name-$i; i=$((i + 1)); done'
	run "$HUTCH" exec -o "$E" "$W" sh -c "mkdir -p /data/many && cd /data/many && $many"' && rm a-rather-long-file-name-1* && echo again > a-rather-long-file-name-150 && mv a-rather-long-file-name-2 moved && ln a-rather-long-file-name-3 hard && mkdir sub && echo x > sub/f && ls | wc -l && cat moved hard a-rather-long-file-name-150'
	check "a big directory: names added, removed (and made again), renamed and linked" 'out_is "592
2
3
again"'
	run "$HUTCH" exec -o "$E" "$W" sh -c 'cd /data/many && ls | wc -l && cat moved a-rather-long-file-name-699 sub/f a-rather-long-file-name-150 && { test -e a-rather-long-file-name-2 || echo old-gone; } && rm -r /data/many'
	check "... and the next container reads the same; e2fsck finds the image clean" 'out_is "592
2
699
x
again
old-gone" && fuse_gone && fsck_clean "$E"'
	# an indexed (htree) directory, as root's kernel ext3 or e2fsck -D leaves a big one:
	# directories made in it must not share a block with its growing index
	run "$HUTCH" exec -o "$E" "$W" sh -c 'mkdir -p /data/ix && cd /data/ix && i=0; while [ $i -lt 1500 ]; do : > name-of-some-length-$i; i=$((i + 1)); done'
	/usr/sbin/e2fsck -fyD "$E" >/dev/null 2>&1
	run "$HUTCH" exec -o "$E" "$W" sh -c 'cd /data/ix && i=0; while [ $i -lt 400 ]; do mkdir dir-of-some-length-$i && ln -s t link-of-some-length-$i || exit 1; i=$((i + 1)); done; ls | wc -l'
	check "directories and symlinks made in an indexed directory: the image stays clean" 'out_is 2300 && fuse_gone && fsck_clean "$E"'
	run "$HUTCH" exec -o "$E" "$W" rm -r /data/ix
	run "$HUTCH" exec -o "$E" "$W" sh -c 'dd if=/dev/zero of=/data/big bs=1M count=80'
	check "a full ext3 overlay gives the container ENOSPC" '[ $RC -ne 0 ] && err_has "No space left on device"'
	check "... and e2fsck -n finds the image clean" 'fuse_gone && fsck_clean "$E"'
	# no inode left: a rename that needs a whiteout (the file is also in the image) fails
	# whole, before any name moved (the files that filled the image go after, so that the
	# next mount, which makes overlayfs's work folder, has inodes again)
	mkdir -p "$T/fewi/upper/etc" "$T/fewi/work"
	/usr/sbin/mkfs.ext3 -q -N 32 -d "$T/fewi" "$T/fewi.img" 8M >/dev/null 2>&1
	run "$HUTCH" exec -o "$T/fewi.img" "$W" sh -c 'echo changed > /etc/hutch-test-marker; i=0; while touch /etc/fill$i 2>/dev/null; do i=$((i + 1)); done; mv /etc/hutch-test-marker /etc/moved; echo "mv $?"; rm -f /etc/fill*; cat /etc/hutch-test-marker; test -e /etc/moved || echo not-moved'
	check "a rename needing a whiteout on an image without free inodes fails whole" 'out_has "^mv 1" && out_has "^changed" && out_has not-moved'
	run "$HUTCH" exec -o "$T/fewi.img" "$W" sh -c 'cat /etc/hutch-test-marker; test -e /etc/moved || echo not-moved'
	check "... and the next container sees the same; the image is clean" 'out_is "changed
not-moved" && fuse_gone && fsck_clean "$T/fewi.img"'
	run "$HUTCH" exec --fakeroot -o "$F" "$W" sh -c 'touch /x /data/y && stat -c "%u %g" /x /data/y'
	check "exec --fakeroot -o IMG made with --fakeroot: root writes, files are root's" '[ $RC -eq 0 ] && out_is "0 0
0 0" && fuse_gone && [ "$(owner_in "$F" /upper/x)" = "User: 0 Group: 0" ] && fsck_clean "$F"'
	# apptainer#1908: a server refusing the image or leaving early is one line, nothing left
	cp "$E" "$T/bad.img"
	printf 'xxxxxxxx' | dd of="$T/bad.img" bs=1 seek=1028 conv=notrunc 2>/dev/null
	run "$HUTCH" exec -o "$T/bad.img" "$W" true
	check "an image hutch-ext3 refuses: one line with its reason, nothing left" 'fails_with "cannot use ext3 overlay .$T/bad.img.: .*superblock" && nofuse && ! grep -q fuse /proc/self/mountinfo'
fi
# --- a folder overlay under --fakeroot: root inside is the caller, so what root makes there
# is the caller's on the host
FR=$T/fakeroot-ovl
mkdir "$FR"
run "$HUTCH" exec --fakeroot -o "$FR" "$W" sh -c 'mkdir /made && touch /made/f && stat -c "%u" /made/f'
check "exec --fakeroot -o DIR: root inside makes files that are the caller's on the host" '[ $RC -eq 0 ] && out_is 0 && [ "$(stat -c %u "$FR/upper/made/f")" = "$(id -u)" ] && [ "$(stat -c %u "$FR/upper/made")" = "$(id -u)" ]'
run "$HUTCH" exec --fakeroot -o "$FR" "$W" sh -c 'echo again > /made/f && cat /made/f'
check "... and can write them again next time" 'out_is again'
# --- SIF-embedded overlays: overlay create adds one, -w writes into it
S=$T/image.sif
cp "$I" "$S"
run "$HUTCH" exec -w "$S" true
check "-w on a SIF without an overlay partition: one line saying how to add one" 'fails_with "has no overlay partition: add one with .hutch overlay create $S."'
run "$HUTCH" overlay create --size 64 --create-dir /data "$S"
check "overlay create on a SIF adds an overlay partition" '[ $RC -eq 0 ] && "$HUTCH" sif list "$S" | grep -q "Ext3/Overlay"'
if [ -n "$SIFCHECK" ]; then
	check "... which the reference SIF library reads" '"$SIFCHECK" "$S" >/dev/null 2>&1'
fi
run "$HUTCH" exec "$S" cat /etc/hutch-test-marker
check "the SIF still runs as before" 'out_is image-marker'
run "$HUTCH" overlay create "$S"
check "overlay create on a SIF that has one: one line" 'fails_with "already has an overlay partition"'
run "$HUTCH" exec -w "$S" sh -c 'echo in-sif > /data/f'
check "-w writes into the SIF's overlay partition (as a user: hutch-ext3 at its offset)" '[ $RC -eq 0 ]'
run "$HUTCH" exec --writable "$S" cat /data/f
check "... and the next start reads it" 'out_is in-sif'
run "$HUTCH" exec -w --writable-tmpfs "$S" sh -c 'echo tmp > /data/g'
check "-w --writable-tmpfs on a SIF with an overlay: refused in one line, nothing written" "fails_with \"--writable-tmpfs cannot be used with the writable overlay '$S'\" && ! \"\$HUTCH\" exec \"\$S\" test -e /data/g"
run "$HUTCH" exec -o "$S:ro" "$I" cat /data/f
check "--overlay SIF:ro layers the partition read-only" 'out_is in-sif'
off=$("$HUTCH" sif list "$S" | awk -F'|' '/Overlay/{split($4, p, "-"); print p[1]}')
check "the partition is clean for e2fsck" 'wait_for "[ -z \"\$(losetup -j "$S")\" ]" && fuse_gone && /usr/sbin/e2fsck -fn "$S?offset=$off" >/dev/null 2>&1'
run "$HUTCH" overlay create --size 12 "$T/small.img"
check "overlay create --size below 64 MiB: one line, nothing made" 'fails_with "from 64" && [ ! -e "$T/small.img" ]'
run "$HUTCH" overlay create --size lots "$T/small.img"
check "overlay create --size not a number" 'fails_with "whole number of MiB" && [ ! -e "$T/small.img" ]'
run "$HUTCH" overlay create "$E"
check "overlay create on an existing file" 'fails_with "already exists"'
run "$HUTCH" overlay create "$T/nodir/x.img"
check "overlay create in a missing folder" 'fails_with "nodir" && [ ! -e "$T/nodir" ]'
run "$HUTCH" overlay create --create-dir data "$T/rel.img"
check "overlay create --create-dir wants an absolute path" 'fails_with "absolute" && [ -z "$(ls "$T" | grep rel.img)" ]'

# --- bad input
run "$HUTCH" exec -o "$T/missing" "$I" true
check "a missing overlay path: one error line" 'fails_with "overlay .*missing. does not exist"'
echo junk > "$T/junk.img"
run "$HUTCH" exec -o "$T/junk.img" "$I" true
check "a file that is not an ext3 image: one error line" 'fails_with "is neither a folder nor an ext3 image"'
run "$HUTCH" exec -o "$O:rx" "$I" true
check "an unknown mode after ':'" 'fails_with "ro or rw"'
run "$HUTCH" exec -o "" "$I" true
check "an empty --overlay" 'fails_with "names no path"'
mkdir "$T/rodir"
chmod 0555 "$T/rodir"
if [ "$MODE" = user ]; then
	run "$HUTCH" exec -o "$T/rodir" "$I" true
	check "a folder the user cannot write: one error line" 'fails_with "cannot write to overlay"'
fi
run env HUTCH_OVERLAY="$T/l1:ro" "$HUTCH" exec "$I" cat /f1
check "HUTCH_OVERLAY sets --overlay" 'out_is l1'
leftovers "overlay"
finish
