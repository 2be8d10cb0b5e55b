# Attacks a shared node sees: a second user (AUX_USER) against TEST_USER's instances,
# logs and cache; symlinks planted where hutch writes; symlinked bind sources and
# destinations. The script runs as root (run.sh) and runs hutch as each user itself.
. "$(dirname "$0")/lib.sh"
[ "$(id -u)" -eq 0 ] || { echo "ok - # SKIP t-attack needs root to make a second user"; finish; }
V=${TEST_USER:-root}
VUID=$(id -u "$V")
VHOME=$(getent passwd "$V" | cut -d: -f6)
A=${AUX_USER:-hutchtest2}
id "$A" >/dev/null 2>&1 || useradd -m -s /bin/bash "$A"
AHOME=$(getent passwd "$A" | cut -d: -f6)
AUID=$(id -u "$A")
chmod 0755 "$T"
v() { if [ "$V" = root ]; then env HOME="$VHOME" "$@"; else runuser -u "$V" -- env HOME="$VHOME" "$@"; fi; }
a() { runuser -u "$A" -- env HOME="$AHOME" "$@"; }
hutch_procs() {
	local p u
	for u in "$VUID" "$AUID"; do
		for p in hutch-squashfs hutch-sqfs-mon hutch-init hutch-supervise hutch-launch; do pgrep -a -u "$u" -x $p; done
	done
}
state_dirs() { ls -d "$VHOME"/.hutch/instances/*/* "$AHOME"/.hutch/instances/*/* /run/user/{$VUID,$AUID}/hutch/instances/* 2>/dev/null; }
# the victim's cache folder of a run before this one is set aside (the suite holds its
# lock: no one else's test uses it meanwhile) and put back at the end
shm=/dev/shm/hutch-$VUID
saved=$shm.t-attack.$$
[ -e "$shm" ] && mv "$shm" "$saved"
outside=/opt/hutch-attack.$$
trap 'v "$HUTCH" instance stop --all --force >/dev/null 2>&1; a "$HUTCH" instance stop --all --force >/dev/null 2>&1
	env HOME="$(getent passwd root | cut -d: -f6)" "$HUTCH" instance stop --force "lim-$MODE" >/dev/null 2>&1
	rm -rf "$shm" "$outside"; [ -e "$saved" ] && mv "$saved" "$shm"
	rm -rf "$T" "$VHOME/.hutch/logs/$(hostname)/planted.out"' EXIT
I=$IMAGES/image.sif

run v "$HUTCH" instance start "$I" web
check "the victim's instance starts" '[ $RC -eq 0 ]'
run a "$HUTCH" instance list
check "another user's list does not show it" '[ $RC -eq 0 ] && ! out_has web'
run a "$HUTCH" instance stop web
check "another user cannot stop it by name" '[ $RC -ne 0 ]'
run a env HOME="$VHOME" "$HUTCH" instance list
check "... nor list it through the victim's HOME" '! out_has web'
run a env HOME="$VHOME" XDG_RUNTIME_DIR="/run/user/$VUID" "$HUTCH" instance stop --signal KILL web
check "... nor signal it through the victim's HOME and runtime folder" '[ $RC -ne 0 ]'
run a env HOME="$VHOME" "$HUTCH" exec instance://web true
check "... nor join it" '[ $RC -ne 0 ]'
run a env HOME="$VHOME" "$HUTCH" instance logs web
check "... nor read its logs" '[ $RC -ne 0 ]'
run a cat "$VHOME/.hutch/logs/$(hostname)/web.out"
check "... nor read the log file itself" '[ $RC -ne 0 ]'
run v "$HUTCH" instance list
check "after all that the victim's instance still runs" 'out_has web'
logdir=$VHOME/.hutch/logs/$(hostname)
check "log folder 0700, log files 0600" '[ "$(stat -c %a "$logdir")" = 700 ] && [ "$(stat -c %a "$logdir/web.out")" = 600 ]'
v "$HUTCH" instance stop web >/dev/null 2>&1

# root acts on another user's instance (--user, a name or a uid); a user cannot
run a env HUTCH_TEST_PORT=$((HUTCH_TEST_PORT + 7)) "$HUTCH" instance start "$I" other
check "AUX_USER's instance starts" '[ $RC -eq 0 ]'
alog=$AHOME/.hutch/logs/$(hostname)
a sh -c "echo marker-of-aux >> '$alog/other.err'"
if [ "$V" != root ]; then
	run v "$HUTCH" instance stop --user "$A" other
	check "a user's stop --user of another user: one line, permission" 'fails_with "only root can act on another user"'
	run v "$HUTCH" instance logs --user "$AUID" other
	check "... logs --user too" 'fails_with "only root can act on another user" && ! out_has marker'
	run v "$HUTCH" instance stats --no-stream --user "$A" other
	check "... stats --user too" 'fails_with "only root can act on another user"'
	run v "$HUTCH" instance list --user "$A"
	check "... list --user too" 'fails_with "only root can list another user"'
fi
# root's own instance with limits beside it (root's own HOME: the script's is the victim's),
# in root's run only: the user's run goes on at the same time, and root's processes would be
# in the root run's leftover checks
r() { env HOME="$(getent passwd root | cut -d: -f6)" "$@"; }
L=lim-$MODE
want="$A other"
if [ "$MODE" = root ]; then
	run r env HUTCH_TEST_PORT=$((HUTCH_TEST_PORT + 8)) "$HUTCH" instance start --memory 64M --pids-limit 99 "$I" "$L"
	check "root's instance with limits starts" '[ $RC -eq 0 ]'
	want="$want|root $L"
fi
# json_rows: "USER NAME LIMITS DIGEST" per instance of list --all --json
json_rows() { python3 -c 'import json,sys
for i in json.load(sys.stdin)["instances"]: print(i["user"], i["instance"], i["limits"] or "-", i["imageDigest"] or "-")'; }
digests_in() { "$HUTCH" instance list --all --json | json_rows | grep -cE "^($want) .* sha256:[0-9a-f]{64}$"; }
run wait_for '[ "$(digests_in)" -eq $(($(echo "$want" | tr "|" "\n" | wc -l))) ]'
run "$HUTCH" instance list --all
check "root's list --all: a USER column, the keeper, limits and the image digest" \
	'out_has "^USER  *INSTANCE NAME .* KEEPER .* LIMITS  *DIGEST$" && out_has "^$A  *other .* hutch  .* -  *sha256:[0-9a-f]\{12\}$" &&
	{ [ "$MODE" != root ] || out_has "^root  *$L .* memory=64M,pids-limit=99  *sha256:[0-9a-f]\{12\}$"; }'
run "$HUTCH" instance list --all --json
check "... and in --json (user, limits, the whole digest)" \
	'json_rows < "$OUT" | grep -qE "^$A other - sha256:[0-9a-f]{64}$" &&
	{ [ "$MODE" != root ] || json_rows < "$OUT" | grep -qE "^root $L memory=64M,pids-limit=99 sha256:[0-9a-f]{64}$"; }'
[ "$MODE" = root ] && r "$HUTCH" instance stop "$L" >/dev/null 2>&1
run "$HUTCH" instance logs --user "$A" other
check "root reads another user's instance logs (logs --user NAME)" '[ $RC -eq 0 ] && err_has "^marker-of-aux$"'
run "$HUTCH" instance stats --no-stream --user "$AUID" other
check "root's stats --user UID finds that instance (rootless here: it has no cgroup, or its usage)" \
	'[ $RC -eq 0 ] && out_has "^other " || fails_with "instance .other. has no cgroup"'
# the user points the log at a file only root may read: root reads as the user
a sh -c "mv '$alog/other.err' '$alog/other.err.real' && ln -s /etc/shadow '$alog/other.err'"
run "$HUTCH" instance logs --tail 5 --user "$A" other
check "a log symlinked to /etc/shadow is not read with root's rights" '! err_has "^root:" && ! out_has "^root:"'
a sh -c "rm '$alog/other.err' && mv '$alog/other.err.real' '$alog/other.err'"
# ... or the log folder at a folder only root can enter (O_NOFOLLOW guards the last name only)
mkdir -m 0700 "$T/rootonly" && echo secret-of-root > "$T/rootonly/other.err"
a sh -c "mv '$alog' '$alog.real' && ln -s '$T/rootonly' '$alog'"
run "$HUTCH" instance logs --user "$A" other
check "a log folder symlinked to a root-only one is not read with root's rights" '! err_has secret-of-root && ! out_has secret-of-root'
a sh -c "rm '$alog' && mv '$alog.real' '$alog'"
run a "$HUTCH" instance list
check "... and the instance still runs" 'out_has "^other "'
run "$HUTCH" instance stop --user "$A" other
check "root stops another user's instance (stop --user NAME)" \
	'[ $RC -eq 0 ] && ! pgrep -u "$AUID" -x hutch-supervise >/dev/null && [ -z "$(a "$HUTCH" instance list --json | grep other)" ]'
run "$HUTCH" instance stop --user no-such-user-here other
check "stop --user of an unknown user: one line" 'fails_with "no user named"'

# a symlink planted where an instance's log goes is not followed
echo precious > "$T/precious" && chown "$V" "$T/precious"
v ln -sf "$T/precious" "$logdir/planted.out"
run v "$HUTCH" instance start "$I" planted
v "$HUTCH" instance stop planted >/dev/null 2>&1
check "a symlink planted at a log path is not written through" '[ "$(cat "$T/precious")" = precious ]'
rm -f "$logdir/planted.out"

# symlinked bind sources and destinations
mkdir -p "$T/secret" && echo secret > "$T/secret/s" && chmod 0700 "$T/secret"
ln -s "$T/secret" "$T/link"
if [ "$V" != root ]; then
	run v "$HUTCH" exec -B "$T/link:/mnt" "$I" cat /mnt/s
	check "a bind source symlinked to a folder the user cannot read gives nothing" '[ $RC -ne 0 ] && ! out_has secret'
fi
cp -a "$IMAGES/rootfs" "$T/sandbox"
# a host folder the container does not see (not under /tmp, /var/tmp or a home)
mkdir -p "$outside"
ln -s "$outside" "$T/sandbox/escape"
chown -R "$V" "$T/sandbox"
mkdir -p "$T/src" && echo payload > "$T/src/p" && chown -R "$V" "$T/src"
before=$(wc -l < /proc/self/mountinfo)
run v "$HUTCH" exec -B "$T/src:/escape/x" "$T/sandbox" sh -c 'ls /escape/x'
check "a bind destination through an image symlink stays inside the container" '[ -z "$(ls -A "$outside")" ] && [ "$(wc -l < /proc/self/mountinfo)" -eq "$before" ]'
ln -s /etc "$T/sandbox/etclink"
run v "$HUTCH" exec -B "$T/src:/etclink/hutch-attack" "$T/sandbox" true
check "a bind destination through an absolute image symlink never reaches the host's /etc" '[ ! -e /etc/hutch-attack ]'

# /dev/shm/hutch-UID made first by another user (anyone may create it; the run has no
# XDG_RUNTIME_DIR, so that is where the cache goes): the run warns, works without the
# cache and puts nothing in the planted folder. The victim's own folder from the checks
# above goes first (the one of earlier runs was set aside at the top).
v "$HUTCH" instance stop --all --force >/dev/null 2>&1
rm -rf "$shm"
a mkdir -m 0777 "$shm"
run v env -u XDG_RUNTIME_DIR "$HUTCH" exec "$I" sh -c 'cat /bin/busybox | wc -c'
check "a cache folder planted by another user: the run works" '[ $RC -eq 0 ] && [ "$(cat "$OUT")" -gt 100000 ]'
check "... warns that it is not the user's alone" 'err_has "not yours alone (another user.s, mode 0777)"'
check "... and writes nothing into it" '[ -z "$(ls -A "$shm")" ] && [ "$(stat -c %u "$shm")" = "$AUID" ]'
rm -rf "$shm"

leftovers "attack"
finish
