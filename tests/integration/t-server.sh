# The image server's confinement and its crash: the worker that parses the image runs
# under a seccomp allow-list with no_new_privs, no capabilities and no fd but the image,
# /dev/fuse and the cache folder; killed (as a crafted image would crash it), the container
# gets EIO and the user one line, for a batch container and for an instance alike.
. "$(dirname "$0")/lib.sh"
trap '"$HUTCH" instance stop --all --force >/dev/null 2>&1; exec 7>&- 2>/dev/null; rm -rf "$T"' EXIT
I=$IMAGES/image.sif
me=$(id -u)
corrupt_line="^hutch: error: image '$I' is corrupt (server ended: SIGSEGV)\$"

# the worker serving image $1 (another server of the user's may run beside: as root, other
# tests on the machine) once it holds the mount, and its monitor
worker_of() {
	local p
	for p in $(pgrep -u "$me" -x hutch-squashfs); do
		ls -l "/proc/$p/fd" 2>/dev/null | grep -q -- "-> $1\$" && echo "$p"
	done
}
server_pids() {
	local img=${1:-$I}
	wait_for '[ -n "$(worker_of "$img")" ]' 100
	W=$(worker_of "$img" | head -1)
	M=$(ps -o ppid= -p "${W:-0}" | tr -d " ")
}
status_of() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
confined() { [ "$(status_of "$1" NoNewPrivs)" = 1 ] && [ "$(status_of "$1" Seccomp)" = 2 ] && [ "$(status_of "$1" CapEff)" = 0000000000000000 ]; }
# every fd of PID names something that matches the extended regex $2
fds_only() {
	local f
	[ -n "$1" ] && [ -e "/proc/$1/fd/0" ] || return 1
	for f in /proc/$1/fd/*; do readlink "$f"; done | grep -Evx "$2" | sed 's/^/#   unexpected fd: /' | grep . && return 1
	return 0
}

# what a worker holds: the image, /dev/fuse, the owner's pidfd, the cache folder and a
# cache entry, and the pipe through which a thread splices the image's stored data
WORKER_FDS="/dev/null|(/dev)?/fuse|$I|anon_inode:\[pidfd\]|/.*/hutch(-$me)?/cache(/[^/]+)?|pipe:\[[0-9]+\]"
# --- a batch container's server, while the container waits on a FIFO
mkfifo "$T/go"
exec 7<>"$T/go"
"$HUTCH" exec "$I" sh -c 'read x; cat /etc/hutch-test-marker; echo "cat: $?"; exit 3' <&7 >"$OUT" 2>"$ERR" &
hp=$!
server_pids
check "a batch container's server is a worker and its monitor" '[ -n "$W" ] && [ -n "$M" ] && [ "$(ps -o ppid= -p "$W" | tr -d " ")" = "$M" ]'
check "the worker has no_new_privs, a seccomp filter and no capability" 'confined "$W"'
[ "$MODE" = root ] && check "... nor any in its bounding set (as root)" '[ "$(status_of "$W" CapBnd)" = 0000000000000000 ]'
check "the worker holds the image, /dev/fuse, the owner's pidfd, the cache folder and its splice pipe, nothing else" \
	'fds_only "$W" "$WORKER_FDS"'
kill -SEGV "$W"
wait_for '! kill -0 "$W" 2>/dev/null'
check "once the worker is gone, the monitor confines itself before it answers a request" 'wait_for "confined $M"'
check "... and holds /dev/fuse, the owner's pidfd and the user's stderr, nothing else" \
	'fds_only "$M" "/dev/null|(/dev)?/fuse|anon_inode:\[pidfd\]|$ERR"'
echo go >&7
wait "$hp"
RC=$?
exec 7>&-
check "a killed worker: the payload reads EIO, not a dead connection" 'err_has "Input/output error" && ! err_has "not connected" && out_has "cat: "'
check "... its exit status is passed on unchanged" '[ $RC -eq 3 ]'
check "... and the user gets one line naming the image and the signal" '[ "$(grep -c "^hutch: " "$ERR")" -eq 1 ] && grep -q "$corrupt_line" "$ERR"'
leftovers "a batch container's crashed server"

# --- the same with --pid (the init, not the payload, is the launcher's child)
mkfifo "$T/go2"
exec 7<>"$T/go2"
"$HUTCH" exec --pid "$I" sh -c 'read x; cat /etc/passwd >/dev/null; echo "cat: $?"; exit 4' <&7 >"$OUT" 2>"$ERR" &
hp=$!
server_pids
kill -SEGV "$W"
wait_for '! kill -0 "$W" 2>/dev/null'
echo go >&7
wait "$hp"
RC=$?
exec 7>&-
check "--pid: a killed worker gives EIO, the payload's status and the one line" \
	'[ $RC -eq 4 ] && out_has "cat: " && ! out_is "cat: 0" && err_has "Input/output error" && grep -q "$corrupt_line" "$ERR"'
leftovers "a --pid container's crashed server"

# --- the worker killed between its read of a request and its note of the request for the
# monitor (strace holds each read's return for 5 s): the request ends in an error, where it
# would otherwise wait for an answer for ever (image/worker.c: fuse_clone)
mkfifo "$T/go3"
exec 7<>"$T/go3"
"$HUTCH" exec "$I" sh -c 'echo started; read x; cat /etc/hutch-test-marker; echo "cat: $?"; exit 5' <&7 >"$OUT" 2>"$ERR" &
hp=$!
server_pids
wait_for 'out_has started' 100 # the container's start read what it needed
strace -f -p "$W" -e trace=read,splice -e inject=read,splice:delay_exit=5000000 -o "$T/strace" 2>/dev/null &
sp=$!
# every thread of the worker traced
traced() { ! grep -h "^TracerPid:" /proc/"$W"/task/*/status | grep -qv "	$sp\$"; }
wait_for traced 100
echo go >&7
wait_for 'grep -q "(DELAYED)" "$T/strace"' 100
kill -KILL "$W" "$sp" # strace too: it would hold the dead worker from its monitor
wait "$sp" 2>/dev/null
wait_for '! kill -0 "$hp" 2>/dev/null' 150 || kill -KILL "$hp"
wait "$hp"
RC=$?
exec 7>&-
check "a worker killed holding a request it read: the payload gets an error, not a wait for ever" \
	'[ $RC -eq 5 ] && out_has "cat: " && ! out_is "cat: 0" && grep -q "^hutch: error: image .$I. is corrupt (server ended: SIGKILL)$" "$ERR"'
leftovers "a worker killed holding a request"

# --- an instance's server: the supervisor's child, confined alike
rm -f "$HOME"/.hutch/logs/*/srv.* "$HOME"/.hutch/logs/*/busy.* # (logs are appended to)
run "$HUTCH" instance start "$I" srv
server_pids
sup=$(ps -o ppid= -p "${M:-0}" | tr -d " ")
check "an instance's server is the supervisor's child, confined alike" \
	'[ "$(cat "/proc/$sup/comm")" = hutch-supervise ] && confined "$W"'
check "... its worker holds nothing but the image, /dev/fuse, a pidfd, the cache folder and its splice pipe" \
	'fds_only "$W" "$WORKER_FDS"'
kill -SEGV "$W"
check "a killed worker ends the instance (restart no), its supervisor alive to the end" \
	'wait_for "! \"$HUTCH\" instance list | grep -q ^srv"'
check "... and the instance's log says why in one line" \
	'[ "$(grep -c "is corrupt" "$HOME"/.hutch/logs/*/srv.err)" -eq 1 ] && grep -q "^hutch: image .$I. is corrupt (server ended: SIGSEGV)$" "$HOME"/.hutch/logs/*/srv.err'
leftovers "an instance's crashed server"
run "$HUTCH" instance start "$I" srv
check "the name is reusable at once" '[ $RC -eq 0 ] && "$HUTCH" instance list | grep -q "^srv "'
run "$HUTCH" instance stop srv
leftovers "a restart of the name"

# --restart always: the supervisor survives the crash and starts the container again, with
# a fresh server
run "$HUTCH" instance start --restart always "$I" srv
server_pids
old=$W
kill -SEGV "$W"
check "--restart always: the container is started again with a server of its own" \
	'wait_for "\"$HUTCH\" instance list | grep -q \"^srv .* 1\$\"" 100 && server_pids && [ -n "$W" ] && [ "$W" != "$old" ]'
run "$HUTCH" exec instance://srv cat /etc/hutch-test-marker
check "... which serves the image again" 'out_is image-marker'
run "$HUTCH" instance stop srv
leftovers "a restarted instance's server"

# a crash while the instance starts (a startscript that never settles, under a long ready
# timeout): the start fails with the server's line
d=$T/busy
cp -a "$IMAGES/rootfs" "$d"
printf '#!/bin/sh\nwhile :; do :; done\n' > "$d/.singularity.d/startscript"
printf 'instance ready timeout = 20000\n' > "$T/slow.conf"
mksquashfs "$d" "$T/busy.sqfs" -quiet -noappend >/dev/null 2>&1
HUTCH_CONF=$T/slow.conf "$HUTCH" instance start "$T/busy.sqfs" busy >"$OUT" 2>"$ERR" &
hp=$!
# spinning (5 ticks of CPU time): past the reads of its start, whose FUSE waits look
# settled to the supervisor
spinning() { local p; p=$(pgrep -u "$me" -x startscript) && [ "$(awk '{print $14}' "/proc/$p/stat")" -ge 5 ]; }
wait_for spinning 100
server_pids "$T/busy.sqfs"
kill -SEGV "$W"
wait "$hp"
RC=$?
# The supervisor may have taken the startscript's first FUSE waits (which sleep in S) for a
# settled container and reported it started already: then the crash ends the instance and
# its log says why. Either way the user learns it in one line.
busy_line="image .$T/busy.sqfs. is corrupt (server ended: SIGSEGV)"
check "a crash while the instance starts fails the start with the server's line alone (or ends the started instance, logged)" \
	'fails_with "$busy_line" || { [ $RC -eq 0 ] && wait_for "! \"$HUTCH\" instance list | grep -q ^busy" && grep -q "$busy_line" "$HOME"/.hutch/logs/*/busy.err; }'
echo "# the crash came $([ $RC -eq 255 ] && echo 'before' || echo 'after') the start was reported"
"$HUTCH" instance stop busy >/dev/null 2>&1
leftovers "a crash during an instance's start"
finish
