# Readiness: instance start --ready tcp:PORT|exec:CMD|notify returns once the service is
# ready and fails (its error output shown, nothing left) when it dies or times out first;
# NOTIFY_SOCKET of a unit written by hand reaches an exec/run payload; bad input.
. "$(dirname "$0")/lib.sh"
trap '"$HUTCH" instance stop --all --force >/dev/null 2>&1; rm -rf "$T"' EXIT
I=$IMAGES/image.sif
PORT=$HUTCH_TEST_PORT
N=$SDNOTIFY_STATIC

# a sandbox copy of the image whose startscript is $1
image_with_startscript() {
	local d=$T/img-$2
	cp -a "$IMAGES/rootfs" "$d"
	printf '#!/bin/sh\n%s\n' "$1" > "$d/.singularity.d/startscript"
	echo "$d"
}
last_err_line() { tail -n 1 "$ERR"; }

# --- tcp:PORT: the service answers the moment start returns (it takes a second to listen)
slow=$(image_with_startscript "sleep 1; exec httpd -f -p $PORT -h /srv/www" slow)
run "$HUTCH" instance start --ready "tcp:$PORT" "$slow" rtcp
check "--ready tcp:PORT: start returns 0" '[ $RC -eq 0 ]'
check "--ready tcp:PORT: the port answers as soon as start returns" 'http_get $PORT | grep -q "hello from the image"'
"$HUTCH" instance stop rtcp >/dev/null 2>&1
leftovers "--ready tcp"

# the port is probed inside the instance's own network namespace
run "$HUTCH" instance start --net --ready "tcp:$PORT" "$slow" rtcpnet
check "--net --ready tcp:PORT: start returns 0" '[ $RC -eq 0 ]'
run "$HUTCH" exec instance://rtcpnet wget -qO- "http://127.0.0.1:$PORT/"
check "--net --ready tcp:PORT: the port answers inside at once" 'out_has "hello from the image"'
"$HUTCH" instance stop rtcpnet >/dev/null 2>&1
leftovers "--net --ready tcp"

# --- a service that dies after a moment (a port taken, a bad config): the start fails
dies=$(image_with_startscript 'sleep 0.5; echo "cannot bind: address in use" >&2; exit 3' dies)
run "$HUTCH" instance start --ready "tcp:$PORT" "$dies" rdies
check "a service dying before it is ready fails the start" '[ $RC -eq 255 ] && last_err_line | grep -q "^hutch: error: instance .rdies. failed to start: the container exited with status 3"'
check "the failed start shows the service's error output" 'err_has "cannot bind: address in use"'
run "$HUTCH" instance list
check "the failed start is not listed" '! out_has "^rdies "'
leftovers "a service dying before ready"

# --- timeout: nothing ever listens
idle=$(image_with_startscript 'echo "waiting for a database" >&2; exec sleep 1000' idle)
t0=$SECONDS
run "$HUTCH" instance start --ready "tcp:$PORT" --ready-timeout 1 "$idle" rtime
check "--ready-timeout: the start fails, naming the reason" '[ $RC -eq 255 ] && last_err_line | grep -q "^hutch: error: instance .rtime. failed to start: nothing accepted connections on port $PORT within 1 s"'
check "--ready-timeout: it fails after about the timeout" '[ $((SECONDS - t0)) -le 6 ]'
check "--ready-timeout: the service's error output is shown" 'err_has "waiting for a database"'
leftovers "--ready timeout"

# --- exec:CMD, run in the instance and retried until it exits 0 (--contain: a /tmp of the
# instance's own, never the host's)
flag=$(image_with_startscript 'sleep 1; touch /tmp/up; exec sleep 1000' flag)
run "$HUTCH" instance start --contain --ready 'exec:test -e /tmp/up' "$flag" rexec
check "--ready exec:CMD: start returns 0" '[ $RC -eq 0 ]'
run "$HUTCH" exec instance://rexec test -e /tmp/up
check "--ready exec:CMD: what CMD checked holds when start returns" '[ $RC -eq 0 ]'
"$HUTCH" instance stop rexec >/dev/null 2>&1
run "$HUTCH" instance start --ready 'exec:false' --ready-timeout 1 "$idle" rexecno
check "--ready exec:CMD never succeeding fails the start" '[ $RC -eq 255 ] && last_err_line | grep -q "the --ready command did not succeed within 1 s"'
leftovers "--ready exec"

# --- notify: the payload's READY=1 on the NOTIFY_SOCKET hutch gives it
ntf=$(image_with_startscript 'sleep 1; touch /tmp/up; /opt/sdnotify READY=1; exec sleep 1000' ntf)
run "$HUTCH" instance start --contain -B "$N:/opt/sdnotify" --ready notify "$ntf" rntf
check "--ready notify: start returns 0 once READY=1 came" '[ $RC -eq 0 ]'
run "$HUTCH" exec instance://rntf test -e /tmp/up
check "--ready notify: the payload had got that far" '[ $RC -eq 0 ]'
"$HUTCH" instance stop rntf >/dev/null 2>&1
run "$HUTCH" instance start --contain --net -B "$N:/opt/sdnotify" --ready notify "$ntf" rntfnet
check "--ready notify works with a network of the instance's own" '[ $RC -eq 0 ]'
"$HUTCH" instance stop rntfnet >/dev/null 2>&1
run "$HUTCH" instance start --ready notify --ready-timeout 1 "$idle" rntfno
check "--ready notify without READY=1 fails the start" '[ $RC -eq 255 ] && last_err_line | grep -q "no READY=1 on its NOTIFY_SOCKET within 1 s"'
leftovers "--ready notify"

# --- NOTIFY_SOCKET of a Type=notify unit around `hutch exec|run` reaches the payload
# (--contain: neither the host's /tmp nor the working folder, which hold the socket, is there)
listen() { # listen SOCKET FILE: the first datagram on SOCKET into FILE (10 s at most)
	python3 - "$1" "$2" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1].replace("@", "\0", 1) if sys.argv[1].startswith("@") else sys.argv[1])
s.settimeout(10)
open(sys.argv[2] + ".up", "w").close()
try:
    open(sys.argv[2], "w").write(s.recv(4096).decode())
except socket.timeout:
    pass
PY
	LPID=$!
	wait_for "[ -e $2.up ]"
}
listen "$T/notify.sock" "$T/got"
run env NOTIFY_SOCKET="$T/notify.sock" "$HUTCH" exec --contain -B "$N:/opt/sdnotify" "$I" /opt/sdnotify "READY=1"
wait "$LPID"
check "NOTIFY_SOCKET (a path) reaches an exec payload" '[ $RC -eq 0 ] && [ "$(cat $T/got 2>/dev/null)" = READY=1 ]'
listen "$T/notify2.sock" "$T/got2"
run env NOTIFY_SOCKET="$T/notify2.sock" "$HUTCH" exec --contain --cleanenv -B "$N:/opt/sdnotify" "$I" /opt/sdnotify "READY=1"
wait "$LPID"
check "NOTIFY_SOCKET passes under --cleanenv too" '[ $RC -eq 0 ] && [ "$(cat $T/got2 2>/dev/null)" = READY=1 ]'
listen "@hutch-t-ready-$$" "$T/got3"
run env NOTIFY_SOCKET="@hutch-t-ready-$$" "$HUTCH" exec --contain -B "$N:/opt/sdnotify" "$I" /opt/sdnotify "READY=1"
wait "$LPID"
check "an abstract NOTIFY_SOCKET reaches a payload on the host's network" '[ $RC -eq 0 ] && [ "$(cat $T/got3 2>/dev/null)" = READY=1 ]'
leftovers "NOTIFY_SOCKET passthrough"

# --- bad input: one line, nothing started
for bad in "--ready bogus|--ready takes notify, tcp:PORT or exec:CMD, not 'bogus'" \
	"--ready tcp:0|--ready tcp:PORT wants a port from 1 to 65535, not '0'" \
	"--ready tcp:70000|--ready tcp:PORT wants a port from 1 to 65535, not '70000'" \
	"--ready tcp:|--ready tcp:PORT wants a port" \
	"--ready exec:|--ready exec:CMD wants a command" \
	"--ready notify --ready-timeout -1|--ready-timeout wants seconds, more than 0" \
	"--ready notify --ready-timeout 0|--ready-timeout wants seconds, more than 0" \
	"--ready notify --ready-timeout 1000|--ready-timeout wants seconds, more than 0 and at most 240" \
	"--ready-timeout 5|--ready-timeout needs --ready"; do
	args=${bad%%|*} msg=${bad#*|}
	# shellcheck disable=SC2086
	run "$HUTCH" instance start $args "$I" rbad
	check "instance start $args: refused in one line" 'fails_with "$msg"'
	# shellcheck disable=SC2086
	run "$HUTCH" instance unit $args "$I" rbad
	check "instance unit $args: refused too" 'fails_with "$msg"'
done
run "$HUTCH" exec --ready "tcp:$PORT" "$I" true
check "--ready is refused by exec" 'usage_fails_with "is an option of .instance start."'
run "$HUTCH" instance unit --ready "tcp:$PORT" --ready-timeout 30 "$I" runit
check "instance unit passes --ready to the unit's start" 'out_has "^ExecStart=.* --ready tcp:$PORT --ready-timeout 30 "'
leftovers "bad input"
finish
