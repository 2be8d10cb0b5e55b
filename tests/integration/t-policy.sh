# Admin policy users cannot switch off: the system hutch.conf is staged over the path this
# build reads, in a private mount namespace (an overlay, so the machine's own files are
# never changed), and hutch runs as TEST_USER. The script itself runs as root (run.sh).
if [ -z "${POLICY_NS:-}" ]; then
	[ "$(id -u)" -eq 0 ] || { echo "ok - # SKIP t-policy needs root to stage the system hutch.conf"; exit 0; }
	exec env POLICY_NS=1 unshare -m --propagation private bash "$0" "$@"
fi
. "$(dirname "$0")/lib.sh"
TU=${TEST_USER:-root}
TUID=$(id -u "$TU")
chmod 0755 "$T"
# as the test user (root's runs stay root's)
u() { if [ "$TU" = root ]; then "$@"; else runuser -u "$TU" -- "$@"; fi; }
hutch_procs() {
	local p
	for p in hutch-squashfs hutch-sqfs-mon hutch-init hutch-supervise hutch-launch; do pgrep -a -u "$TUID" -x $p; done
}
state_dirs() { ls -d "$HOME"/.hutch/instances/*/* "/run/user/$TUID"/hutch/instances/* 2>/dev/null; }
d=
trap 'u "$HUTCH" instance stop --all --force >/dev/null 2>&1; [ -n "$d" ] && umount -l "$d"; rm -rf "$T" "$HOME/.hutch/hutch.conf"' EXIT

SYS=$("$HUTCH" help | sed -n 's/^System configuration: //p')
case $SYS in /*) ;; *) echo "not ok - the system configuration path is in 'hutch help'"; exit 0 ;; esac
d=$(dirname "$SYS")
while [ ! -d "$d" ]; do d=$(dirname "$d"); done
mkdir -p "$T/up" "$T/wk"
mount -t overlay overlay -o "lowerdir=$d,upperdir=$T/up,workdir=$T/wk" "$d" ||
	{ echo "not ok - cannot stage an overlay over $d"; exit 0; }
mkdir -p "$(dirname "$SYS")"
MOUNTS_BEFORE=$(wc -l < /proc/self/mountinfo)
# sysconf LINES...: the system file, root's and 0644
sysconf() { printf '%s\n' "$@" > "$SYS" && chown root:root "$SYS" && chmod 0644 "$SYS"; }
# userconf LINES...: HUTCH_CONF's file, the user's
userconf() { printf '%s\n' "$@" > "$T/user.conf" && chown "$TU" "$T/user.conf"; }
I=$IMAGES/image.sif
Q=$IMAGES/image.sqfs

sysconf 'allow container sif = no'
run u env HUTCH_CONF=/dev/null "$HUTCH" exec "$I" true
check "HUTCH_CONF=/dev/null no longer drops the system file" 'fails_with "allow container sif = no"'
userconf 'allow container sif = yes'
run u env HUTCH_CONF="$T/user.conf" "$HUTCH" exec "$I" true
check "a user's file cannot loosen the system's (a warning names the key)" '[ $RC -eq 255 ] && err_has "cannot loosen" && err_has "allow container sif = no"'
run u env HUTCH_CONF="$T/user.conf" "$HUTCH" exec "$Q" true
check "... other image types still run" '[ $RC -eq 0 ]'
u mkdir -p "$HOME/.hutch"
printf 'allow container squashfs = no\n' > "$HOME/.hutch/hutch.conf" && chown "$TU" "$HOME/.hutch/hutch.conf"
run u "$HUTCH" exec "$Q" true
check "~/.hutch/hutch.conf tightens" 'fails_with "allow container squashfs = no"'
rm -f "$HOME/.hutch/hutch.conf"

chmod 0666 "$SYS"
run u env HUTCH_CONF=/dev/null "$HUTCH" exec "$Q" true
check "a system file writable by others is refused" 'fails_with "writable by group or others: refused"'
chmod 0664 "$SYS"
run u "$HUTCH" instance list
check "... by the group too, for every verb" 'fails_with "refused"'
chmod 0644 "$SYS"
chown 1:1 "$SYS"
run u "$HUTCH" exec "$Q" true
check "a system file not owned by root is refused" 'fails_with "not owned by root"'
rm -f "$SYS"
echo 'allow container squashfs = yes' > "$T/evil.conf" && chown 1:1 "$T/evil.conf"
ln -s "$T/evil.conf" "$SYS"
run u "$HUTCH" exec "$Q" true
check "... also through a symlink to a user's file" 'fails_with "not owned by root"'
rm -f "$SYS"

# limit container paths: the image's real path, not the name it was given by
mkdir -p "$T/allowed" "$T/other"
cp "$I" "$T/allowed/a.sif"
cp "$I" "$T/other/b.sif"
ln -s "$T/other/b.sif" "$T/allowed/link.sif"
sysconf "limit container paths = /nonexistent, $T/allowed"
run u "$HUTCH" exec "$T/allowed/a.sif" true
check "limit container paths: an image beneath a listed path runs" '[ $RC -eq 0 ]'
run u "$HUTCH" exec "$T/other/b.sif" true
check "limit container paths: an image elsewhere is refused" 'fails_with "limit container paths"'
run u "$HUTCH" exec "$T/allowed/link.sif" true
check "limit container paths: a symlink from a listed path to elsewhere is refused" 'fails_with "limit container paths"'
userconf "limit container paths = $T/other"
run u env HUTCH_CONF="$T/user.conf" "$HUTCH" exec "$T/allowed/a.sif" true
check "limit container paths: a user's own list applies as well as the admin's" 'fails_with "limit container paths"'

chown "$TU" "$T/allowed/a.sif"
sysconf "limit container owners = nobody"
run u "$HUTCH" exec "$T/allowed/a.sif" true
check "limit container owners: an image of another owner is refused" 'fails_with "limit container owners"'
sysconf "limit container owners = nobody, $TU"
run u "$HUTCH" exec "$T/allowed/a.sif" true
check "limit container owners: an image of a listed owner runs" '[ $RC -eq 0 ]'

mkdir -p "$T/data" "$T/mine"
echo admin > "$T/data/f"
sysconf "bind path = $T/data:/data" 'enforce bind paths = yes'
run u "$HUTCH" exec "$Q" cat /data/f
check "enforce bind paths: the admin's bind is there" 'out_is admin'
run u "$HUTCH" exec --no-mount bind-paths "$Q" true
check "enforce bind paths: --no-mount bind-paths is refused" 'fails_with "enforce bind paths"'
run u "$HUTCH" exec -B "$T/mine:/data" "$Q" true
check "enforce bind paths: a bind over it is refused" 'fails_with "enforce bind paths"'
run u "$HUTCH" exec -B "$T/mine:/data/sub" "$Q" true
check "enforce bind paths: a bind beneath it is refused" 'fails_with "enforce bind paths"'
run u "$HUTCH" exec -B "$T/mine:/" "$Q" true
check "enforce bind paths: a bind over a folder above it is refused" 'fails_with "enforce bind paths"'
run u "$HUTCH" exec -B "$T/mine:/mine" "$Q" cat /data/f
check "enforce bind paths: other binds work" 'out_is admin'
sysconf "user bind control = no"
run u "$HUTCH" exec -B "$T/mine:/mine" "$Q" true
check "user bind control = no: -B is refused" 'fails_with "user bind control = no"'
run u env APPTAINER_BIND="$T/mine:/mine" "$HUTCH" exec "$Q" true
check "user bind control = no: APPTAINER_BIND too" 'fails_with "user bind control = no"'

sysconf "allow fakeroot = no"
run u "$HUTCH" exec --fakeroot "$Q" true
check "allow fakeroot = no: --fakeroot is refused" 'fails_with "allow fakeroot = no"'

sysconf "max instances = 1"
userconf "max instances = 0"
run u env HUTCH_CONF="$T/user.conf" "$HUTCH" instance start "$I" one
check "max instances = 1: the first instance starts" '[ $RC -eq 0 ]'
run u env HUTCH_CONF="$T/user.conf" "$HUTCH" instance start "$I" two
check "max instances = 1: the second is refused (a user's 0 does not lift it)" '[ $RC -eq 255 ] && err_has "^hutch: error: .*max instances" && err_has "cannot loosen"'
run u "$HUTCH" instance list
check "... and is not listed" 'out_has one && ! out_has two'
u "$HUTCH" instance stop one >/dev/null 2>&1
run u "$HUTCH" instance start "$I" two
check "max instances = 1: once the first stops, another starts" '[ $RC -eq 0 ]'
u "$HUTCH" instance stop two >/dev/null 2>&1

sysconf "cgroup parent = /hutch-admin.slice"
if [ "$TU" != root ]; then
	run u "$HUTCH" exec --cgroup-parent /elsewhere "$Q" true
	check "cgroup parent: a user's --cgroup-parent outside the admin's is refused in one line" \
		'fails_with "not beneath ./hutch-admin.slice."'
	run u "$HUTCH" instance start --cgroup-parent /hutch-admin.slicex "$I" cgp
	check "... for instances too (a name that only starts the same is not beneath), nothing started" \
		'[ $RC -eq 255 ] && err_has "not beneath" && ! u "$HUTCH" instance list | grep -q cgp'
	run u "$HUTCH" exec --cgroup-parent /hutch-admin.slice/mine "$Q" true
	check "... one beneath it is accepted" '[ $RC -eq 0 ]'
	run u env HUTCH_CONF=/dev/null "$HUTCH" exec --cgroup-parent /elsewhere "$Q" true
	check "... and HUTCH_CONF does not lift it" 'fails_with "not beneath"'
else
	run "$HUTCH" exec --cgroup-parent /elsewhere "$Q" true
	check "cgroup parent: root's --cgroup-parent is root's choice" '[ $RC -eq 0 ]'
fi

if [ "$TU" = root ]; then
	# the payload's own memory limit, from whichever hierarchy holds the memory controller
	cat > "$T/mem" <<'EOF'
#!/bin/sh
p=$(awk -F: '$2 ~ /(^|,)memory(,|$)/ {print $3}' /proc/self/cgroup)
if [ -n "$p" ]; then cat /sys/fs/cgroup/memory$p/memory.limit_in_bytes
else cat /sys/fs/cgroup$(awk -F: '$1 == 0 {print $3}' /proc/self/cgroup)/memory.max; fi
EOF
	chmod 0755 "$T/mem"
	sysconf "max memory = 64M"
	userconf "max memory = 1G"
	run env HUTCH_CONF="$T/user.conf" "$HUTCH" exec --memory 1G -B "$T:$T" "$IMAGES/rootfs" "$T/mem"
	check "max memory: a user's file cannot raise the admin's maximum" 'out_is 67108864'
	userconf "max memory = 32M"
	run env HUTCH_CONF="$T/user.conf" "$HUTCH" exec --memory 1G -B "$T:$T" "$IMAGES/rootfs" "$T/mem"
	check "max memory: a user's own lower maximum applies" 'out_is 33554432'
fi

rm -f "$SYS"
leftovers "policy"
finish
