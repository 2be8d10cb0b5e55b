# The site's trusted-key policy (hutch.conf 'trusted key = FINGERPRINT [FOLDER...]'): the
# system hutch.conf and the keys folder beside it are staged over the path this build reads,
# in a private mount namespace (an overlay: the machine's own files never change), and hutch
# runs as TEST_USER. The script itself runs as root (run.sh).
if [ -z "${TRUST_NS:-}" ]; then
	[ "$(id -u)" -eq 0 ] || { echo "ok - # SKIP t-trust needs root to stage the system hutch.conf"; exit 0; }
	exec env TRUST_NS=1 unshare -m --propagation private bash "$0" "$@"
fi
. "$(dirname "$0")/lib.sh"
TU=${TEST_USER:-root}
TUID=$(id -u "$TU")
chmod 0755 "$T"
u() { if [ "$TU" = root ]; then "$@"; else runuser -u "$TU" -- "$@"; fi; }
hutch_procs() {
	local p
	for p in hutch-squashfs hutch-sqfs-mon hutch-init hutch-supervise hutch-launch; do pgrep -a -u "$TUID" -x $p; done
}
state_dirs() { ls -d "$HOME"/.hutch/instances/*/* "/run/user/$TUID"/hutch/instances/* 2>/dev/null; }
d=
trap 'u "$HUTCH" instance stop --all --force >/dev/null 2>&1; [ -n "$d" ] && umount -l "$d"; rm -rf "$T"' EXIT

SYS=$("$HUTCH" help | sed -n 's/^System configuration: //p')
case $SYS in /*) ;; *) echo "not ok - the system configuration path is in 'hutch help'"; exit 0 ;; esac
d=$(dirname "$SYS")
while [ ! -d "$d" ]; do d=$(dirname "$d"); done
mkdir -p "$T/up" "$T/wk"
mount -t overlay overlay -o "lowerdir=$d,upperdir=$T/up,workdir=$T/wk" "$d" ||
	{ echo "not ok - cannot stage an overlay over $d"; exit 0; }
mkdir -p "$(dirname "$SYS")/keys"
MOUNTS_BEFORE=$(wc -l < /proc/self/mountinfo)
sysconf() { printf '%s\n' "$@" > "$SYS" && chown root:root "$SYS" && chmod 0644 "$SYS"; }

# two signers (root's keyrings in $T), the site trusting the first; its public key only in
# the keys folder beside hutch.conf, so the user needs none of their own
export HUTCH_KEYSDIR=$T/keys
HUTCH_SIGN_PASSPHRASE= "$HUTCH" key newpair --name Site --bit-length 1024 >/dev/null
HUTCH_SIGN_PASSPHRASE= "$HUTCH" key newpair --name Other --bit-length 1024 >/dev/null
fp() { "$HUTCH" key list --secret | grep -A2 "User: *$1" | sed -n 's/.*Fingerprint: *//p'; }
ix() { "$HUTCH" key list --secret | sed -n "s/^\([0-9]\)) User: *$1\$/\1/p"; }
fps=$(fp Site) fpo=$(fp Other)
mkdir -p "$T/img/gov"
for n in unsigned signed other gov/u; do cp "$IMAGES/image.sif" "$T/img/$n.sif"; done
"$HUTCH" sign --keyidx "$(ix Site)" "$T/img/signed.sif" >/dev/null
"$HUTCH" sign --keyidx "$(ix Other)" "$T/img/other.sif" >/dev/null
"$HUTCH" key export "$fps" "$(dirname "$SYS")/keys/pgp-public" >/dev/null
chmod -R a+rX "$T/img"
unset HUTCH_KEYSDIR
U="env HUTCH_CONF=/dev/null HUTCH_KEYSDIR=$T/nokeys"

sysconf "trusted key = $fps"
run u $U "$HUTCH" exec "$T/img/unsigned.sif" true
check "an unsigned image is refused in one line" 'fails_with "refused by the site.s image policy" && fails_with "not signed by a key the site trusts"'
check "nothing is left behind by the refusal" 'no_leftovers'
run u $U "$HUTCH" exec "$T/img/other.sif" true
check "an image signed by an untrusted key is refused" 'fails_with "not signed by a key the site trusts"'
run u $U "$HUTCH" exec "$T/img/signed.sif" cat /etc/hutch-test-marker
check "an image signed by the trusted key runs (its key from the site's keys folder)" '[ $RC -eq 0 ] && out_is image-marker'
trust=/run/user/$TUID/hutch/trust
[ -d "$trust" ] || trust=/dev/shm/hutch-$TUID/trust
check "the success is cached" '[ "$(ls "$trust" 2>/dev/null | grep -c "^t-")" -ge 1 ]'
run u $U "$HUTCH" exec "$T/img/signed.sif" cat /etc/hutch-test-marker
check "a later run of the unchanged file runs" '[ $RC -eq 0 ] && out_is image-marker'
off=$("$HUTCH" sif list "$T/img/signed.sif" | awk -F'|' '$5 ~ /Squashfs/ {split($4, p, "-"); print p[1]}')
printf 'X' | dd of="$T/img/signed.sif" bs=1 seek=$((off + 100)) conv=notrunc status=none
run u $U "$HUTCH" exec "$T/img/signed.sif" true
check "the file changed after its cached success is checked again and refused" 'fails_with "changed after signing"'
run u $U "$HUTCH" exec "$IMAGES/rootfs" true
check "a folder image is refused" 'fails_with "refused by the site.s image policy"'
run u $U "$HUTCH" instance start "$T/img/unsigned.sif" trust1
check "instance start of an unsigned image is refused" 'fails_with "not signed by a key the site trusts" && no_leftovers'
printf 'trusted key = %s\n' "$fpo" > "$T/user.conf" && chown "$TU" "$T/user.conf"
run u env HUTCH_CONF="$T/user.conf" HUTCH_KEYSDIR="$T/nokeys" "$HUTCH" exec "$T/img/other.sif" true
check "a user's own file cannot add a trusted key" '[ $RC -eq 255 ] && err_has "not signed by a key the site trusts"'

sysconf "trusted key = $(echo "$fps" | tr A-F a-f) $T/img/gov"
run u $U "$HUTCH" exec "$T/img/unsigned.sif" true
check "an image outside the governed folders runs" '[ $RC -eq 0 ]'
run u $U "$HUTCH" exec "$T/img/gov/u.sif" true
check "an image in a governed folder is checked (a lower-case fingerprint is read)" 'fails_with "not signed by a key the site trusts"'
ln -s "$T/img/gov/u.sif" "$T/img/link.sif"
run u $U "$HUTCH" exec "$T/img/link.sif" true
check "a symlink from elsewhere to a governed image is checked" 'fails_with "not signed by a key the site trusts"'
sysconf "trusted key = 1234 /x"
run u $U "$HUTCH" exec "$T/img/unsigned.sif" true
check "a malformed 'trusted key' line refuses every image (fail closed)" 'fails_with "40 hex digits"'
sysconf ""
run u $U "$HUTCH" exec "$T/img/unsigned.sif" true
check "without 'trusted key' lines nothing is checked" '[ $RC -eq 0 ]'
# this test's cache entries (the files are gone with $T)
rm -f "$trust"/t-* 2>/dev/null
