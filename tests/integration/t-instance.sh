# Instances: start/list/stop, startscript and runscript, a service answering on loopback,
# joining with instance://, logs and rotation, crashes, restarts, concurrency, bad input.
. "$(dirname "$0")/lib.sh"
trap '"$HUTCH" instance stop --all --force >/dev/null 2>&1; rm -rf "$T"' EXIT
I=$IMAGES/image.sif
[ "$MODE" = root ] && PORT=18180 || PORT=18280
export HUTCH_TEST_PORT=$PORT
# logs are appended to, as Apptainer's: an earlier run's lines of these names would answer
# the checks below
for n in web ctl nl nolog chatty again victim aff lkill flaky tied argy usr1 clean hup sigdfl nochld broken; do
	rm -f "$HOME"/.hutch/logs/*/"$n".out* "$HOME"/.hutch/logs/*/"$n".err*
done

# a sandbox copy of the image whose startscript is $1
image_with_startscript() {
	local d=$T/img-$2
	cp -a "$IMAGES/rootfs" "$d"
	if [ -n "$1" ]; then printf '#!/bin/sh\n%s\n' "$1" > "$d/.singularity.d/startscript"
	else rm -f "$d/.singularity.d/startscript"; fi
	echo "$d"
}
count_rows() { "$HUTCH" instance list | tail -n +2 | wc -l; }

# --- start, list, service, join, stop
run "$HUTCH" instance list --json
check "list --json of no instance: an empty list as Apptainer's (Go's) output writes it" 'out_is "$(printf "{\n\t\"instances\": []\n}")"'
run "$HUTCH" instance start "$I" web
check "start returns 0 once the container runs" '[ $RC -eq 0 ]'
run "$HUTCH" instance list
check "list shows NAME, PID and IMAGE" 'out_has "^web  *[0-9][0-9]*  *$I "'
pid=$(awk '$1=="web"{print $2}' "$OUT")
check "the listed PID is the container's init" '[ "$(cat /proc/$pid/comm)" = hutch-init ]'
check "the startscript's service answers on the host network" 'wait_for "http_get $PORT | grep -q \"hello from the image\""'
# the init and the service start with default signal dispositions: none of the supervisor's
# ignored signals (SIGPIPE: 'yes | head' in a service must end yes by the signal)
sigign() { awk '/^SigIgn:/{print $2}' "/proc/$1/status"; }
sigpipe_ignored() { [ $(( 0x$(sigign "$1") & 0x1000 )) -ne 0 ]; }
none_ignore_sigpipe() {
	local k
	for k in "$@"; do sigpipe_ignored "$k" && return 1; done
	return 0
}
kids=$(cat /proc/$pid/task/*/children 2>/dev/null)
check "the init and the startscript's processes do not ignore SIGPIPE" '[ -n "$kids" ] && none_ignore_sigpipe $pid $kids'
run "$HUTCH" instance list --json
check "list --json in Apptainer's shape, tab-indented" 'out_has "\"instance\": \"web\"" && out_has "\"pid\": $pid" && out_has "\"img\": \"$I\"" && out_has "logErrPath" && grep -q "^$(printf "\t")\"instances\": \[" "$OUT"'
run "$HUTCH" instance list --json --logs
check "list --json --logs: one or the other (as Apptainer)" 'fails_with "more than one flags have been set"'
run "$HUTCH" instance list --logs
check "list --logs shows the log paths" 'out_has "\.hutch/logs/.*/web\.err" && out_has "\.hutch/logs/.*/web\.out"'
run "$HUTCH" exec instance://web cat /proc/1/comm
check "exec instance:// runs in the instance's PID namespace (PID 1 is the init)" 'out_is hutch-init && [ $RC -eq 0 ]'
run "$HUTCH" exec instance://web ps -o pid,comm
check "exec instance:// sees the instance's processes" 'out_has "httpd" && [ "$(grep -c . "$OUT")" -le 5 ]'
run "$HUTCH" exec instance://web cat /etc/hutch-test-marker
check "exec instance:// sees the image's files" 'out_is image-marker'
run "$HUTCH" exec instance://web sh -c 'echo "$IMAGE_VAR $(id -u)"'
check "exec instance:// gets the image environment and the caller's uid" 'out_is "from-image $(id -u)"'
run "$HUTCH" exec instance://web sh -c 'echo "$APPTAINER_INSTANCE $SINGULARITY_INSTANCE $HUTCH_INSTANCE"; tr "\0" "\n" < /proc/1/environ | grep -c "^APPTAINER_INSTANCE=web$"; for p in /proc/[0-9]*; do tr "\0" "\n" < $p/environ 2>/dev/null | grep -q "^APPTAINER_INSTANCE=web$" && echo found; done | sort -u'
check "the instance's name is APPTAINER_INSTANCE (and SINGULARITY_, HUTCH_) in a join and in the startscript's processes" 'out_has "^web web web$" && out_has "^found$"'
run "$HUTCH" exec instance://web sh -c 'exit 7'
check "exec instance:// passes the exit status on" '[ $RC -eq 7 ]'
run "$HUTCH" run instance://web a b
check "run instance:// runs the runscript inside" 'out_is "runscript args: a b"'
run "$HUTCH" instance start "$I" web
check "a second start of a live NAME fails naming it" 'fails_with "instance web already exists"'
run "$HUTCH" instance list
check "the failed duplicate left the first one alone" 'out_has "^web " && http_get $PORT | grep -q hello'
run "$HUTCH" instance stop web
check "stop returns 0" '[ $RC -eq 0 ]'
check "after stop the service is gone" '! http_get $PORT | grep -q hello'
run "$HUTCH" instance list
check "after stop nothing is listed" '[ "$(wc -l < "$OUT")" -eq 1 ]'
leftovers "start/stop"
run "$HUTCH" instance start "$I" web
check "a stopped NAME is reusable at once" '[ $RC -eq 0 ]'
run "$HUTCH" instance stop web
leftovers "restart of a name"

# --- the control socket: a stop heard is acknowledged; one connection at a time
# ctl_ask MODE SUPERVISOR: talks to the supervisor's abstract socket as `instance stop` does.
# silent: holds a connection that says nothing while instance stop runs (its pid on stdout,
# the connection until killed); ask: sends SIGTERM and prints "ack" on the supervisor's byte;
# replaced: with the supervisor stopped, sends SIGTERM on one connection and opens a second,
# which replaces the first: what the first sent must still be heard (its ack printed)
ctl_ask() {
	python3 - "$@" <<'PY'
import os, signal, socket, struct, sys, time
mode, sup = sys.argv[1], int(sys.argv[2])
start = open("/proc/%d/stat" % sup).read().rsplit(")", 1)[1].split()[19]
name = b"\0hutch-control-%d-%s" % (sup, start.encode())
def conn():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.connect(name)
    return s
def ack(s):
    s.settimeout(3)
    try:
        return s.recv(1) == b"k"
    except OSError:
        return False
if mode == "silent":
    s = conn()
    print(os.getpid(), flush=True)
    os.close(1)
    time.sleep(60)
elif mode == "ask":
    s = conn()
    s.send(struct.pack("i", signal.SIGTERM))
    print("ack" if ack(s) else "no ack")
else:
    os.kill(sup, signal.SIGSTOP)
    try:
        first = conn()
        first.send(struct.pack("i", signal.SIGTERM))
        second = conn()
    finally:
        os.kill(sup, signal.SIGCONT)
    print("ack" if ack(first) else "no ack")
PY
}
ctl_log() { cat "$HOME"/.hutch/logs/*/ctl.err 2>/dev/null; }
gone() { wait_for "! \"$HUTCH\" instance list | grep -q ^ctl"; }
run "$HUTCH" instance start "$I" ctl
sup=$(pgrep -n -u "$(id -u)" -x hutch-supervise)
ctl_ask silent "$sup" > "$T/holder" &
wait_for '[ -s "$T/holder" ]'
holder=$(cat "$T/holder")
run "$HUTCH" instance stop ctl
[ -n "$holder" ] && kill "$holder" 2>/dev/null
check "a silent connection to the control socket does not keep instance stop from being heard" \
	'[ $RC -eq 0 ] && ctl_log | grep -q "stopping (signal 2, asked by uid $(id -u))"'
run "$HUTCH" instance start "$I" ctl
sup=$(pgrep -n -u "$(id -u)" -x hutch-supervise)
run ctl_ask ask "$sup"
check "a stop asked over the control socket is acknowledged with one byte" 'out_is ack && gone'
run "$HUTCH" instance start "$I" ctl
sup=$(pgrep -n -u "$(id -u)" -x hutch-supervise)
run ctl_ask replaced "$sup"
check "a connection replaced after it spoke is still heard (and acknowledged)" 'out_is ack && gone'
leftovers "control socket"

# --- startscript ARGS, instance run, no startscript, failing startscript
d=$(image_with_startscript 'echo "start args: $*"; exec sleep 1000' args)
rm -f "$HOME"/.hutch/logs/*/argy.* # (logs are appended to: an earlier run's would count)
run "$HUTCH" instance start "$d" argy one two
check "startscript gets ARGS" 'wait_for "\"$HUTCH\" instance logs argy 2>/dev/null | grep -q \"start args: one two\""'
run "$HUTCH" instance logs --out argy
check "logs --out shows the container's stdout" 'out_has "start args: one two"'
check "... each line once" '[ "$(grep -c "start args: one two" "$OUT")" -eq 1 ]'
run "$HUTCH" instance logs argy
check "logs shows each line once" '[ "$(grep -c "start args: one two" "$OUT")" -eq 1 ] && [ "$(grep -c "instance started" "$ERR")" -eq 1 ]'
"$HUTCH" instance logs -f --out argy > "$T/argyf" 2>&1 &
fpid=$!
check "logs -f shows each line once in its first dump" 'wait_for "grep -q \"start args\" \"$T/argyf\"" && sleep 0.3 && [ "$(grep -c "start args: one two" "$T/argyf")" -eq 1 ]'
kill "$fpid" 2>/dev/null
wait "$fpid" 2>/dev/null
"$HUTCH" instance stop argy >/dev/null 2>&1
run "$HUTCH" instance run "$I" runner x y
check "instance run runs the runscript, and stays up after it exits 0" '[ $RC -eq 0 ] && "$HUTCH" instance list | grep -q "^runner "'
check "instance run passes ARGS to the runscript" 'wait_for "\"$HUTCH\" instance logs runner 2>/dev/null | grep -q \"runscript args: x y\""'
"$HUTCH" instance stop runner >/dev/null 2>&1
d=$(image_with_startscript '' none)
run "$HUTCH" instance start "$d" idle
check "an image without a startscript runs nothing and stays up" '[ $RC -eq 0 ] && "$HUTCH" instance list | grep -q "^idle "'
run "$HUTCH" exec instance://idle ps -o pid,comm
check "only the init runs in it" '[ "$(grep -v -e COMMAND -e " ps$" "$OUT")" = "    1 hutch-init" ]'
"$HUTCH" instance stop idle >/dev/null 2>&1
# a join gets HOME as the start set it (Apptainer restores it), unless it gives its own -H
mkdir -p "$T/hd" && echo home-marker > "$T/hd/mark"
run "$HUTCH" instance start -H "$T/hd:/home/elsewhere" "$d" homed
run "$HUTCH" exec instance://homed sh -c 'echo "$HOME"; cat "$HOME/mark"'
check "exec instance://NAME: HOME is the start's -H destination, its files there" '[ $RC -eq 0 ] && out_is "/home/elsewhere
home-marker"'
run "$HUTCH" exec -H "$T/hd:/home/mine" instance://homed sh -c 'echo "$HOME"'
check "... a join's own -H names HOME itself" 'out_is /home/mine'
"$HUTCH" instance stop homed >/dev/null 2>&1
d=$(image_with_startscript 'echo "database is broken" >&2; exit 1' broken)
run "$HUTCH" instance start "$d" broken
check "a startscript that exits 1 at once fails the start with its output" '[ $RC -eq 255 ] && err_has "database is broken" && err_has "^hutch: error: .*status 1"'
run "$HUTCH" instance start "$d" broken
check "... a second failed start shows its own lines, not the first's too (the log keeps both)" '[ $RC -eq 255 ] && [ "$(grep -c "database is broken" "$ERR")" -eq 1 ] && [ "$(grep -c "database is broken" "$HOME"/.hutch/logs/*/broken.err)" -ge 2 ]'
leftovers "failed start"
run "$HUTCH" instance start "$T/missing.sif" nope
check "a missing image fails the start" 'fails_with "missing.sif"'
leftovers "missing image"
run "$HUTCH" instance start -B /nonexistent-src:/x "$I" nope
check "a bad bind fails the start with the launcher's error" 'fails_with "nonexistent-src"'
leftovers "bad bind"

# --- any byte in a path; a state that cannot be written
mkdir "$T/new
line" && cp "$I" "$T/new
line/i.sif"
run "$HUTCH" instance start "$T/new
line/i.sif" nl
check "an image path with a newline: the instance starts" '[ $RC -eq 0 ]'
run "$HUTCH" instance list --json
check "... is listed, with its path whole" 'out_has "\"instance\": \"nl\"" && out_has "new\\\\nline/i.sif"'
run "$HUTCH" instance list
check "... and one row in the table, the byte escaped" 'out_has "^nl .*new\\\\x0aline/i.sif" && [ "$(wc -l < "$OUT")" -eq 2 ]'
run "$HUTCH" exec instance://nl cat /etc/hutch-test-marker
check "... can be joined" 'out_is image-marker'
check "... and its log lines stay whole" 'grep -q "instance started.*new\\\\x0aline" "$HOME"/.hutch/logs/*/nl.err && ! grep -q "^line/" "$HOME"/.hutch/logs/*/nl.err'
run "$HUTCH" instance stop nl
check "... and stops" '[ $RC -eq 0 ]'
leftovers "a newline in the image path"
if [ "$MODE" = root ]; then
	# a full runtime folder (a tiny tmpfs, in a mount namespace of its own)
	run unshare -m sh -c 'mount -t tmpfs -o size=64k,mode=0755 tmpfs /run/user && mkdir -m 0700 /run/user/0 &&
		{ dd if=/dev/zero of=/run/user/0/fill bs=4k 2>/dev/null; XDG_RUNTIME_DIR=/run/user/0 "$0" instance start "$1" full; }' "$HUTCH" "$I"
	check "a state that cannot be written (a full runtime folder) fails the start" 'fails_with "cannot write the state of instance .full.: No space"'
	leftovers "a full runtime folder"
fi

if [ "$MODE" = root ]; then
	# a shared home folder where another user made the log folder first
	mkdir -p "$T/shared/.hutch/logs/$(hostname)"
	chown hutchtest "$T/shared/.hutch/logs/$(hostname)" 2>/dev/null || chown 1 "$T/shared/.hutch/logs/$(hostname)"
	HOME=$T/shared run "$HUTCH" instance start "$I" theirs
	check "a log folder of another user is refused" 'fails_with "log folder .* does not belong to uid 0" && [ -z "$(ls "$T/shared/.hutch/logs/$(hostname)")" ]'
	leftovers "a log folder of another user"
fi

# --- names
for bad in 'a/b' '-x' '.hidden' '_x' 'a b' "$(printf 'x%.0s' $(seq 65))" 'é'; do
	run "$HUTCH" instance start "$I" "$bad"
	check "name '${bad:0:12}' is refused before any file is touched" 'fails_with "invalid instance name" && [ -z "$(state_dirs)" ] && ! ls "$HOME"/.hutch/logs/*/ 2>/dev/null | grep -qxF -- "$bad.out"'
done
run "$HUTCH" instance start "$I" "A1_b.c-$(printf 'x%.0s' $(seq 57))"
check "a 64-character name with _ . - is accepted" '[ $RC -eq 0 ]'
"$HUTCH" instance stop --all >/dev/null 2>&1
run "$HUTCH" instance stop nosuch
check "stop of an unknown instance fails" 'fails_with "no instance found"'
d=$(image_with_startscript '' two)
run "$HUTCH" instance start "$d" two1
run "$HUTCH" instance start "$d" two2
run "$HUTCH" instance stop two1 two2
check "stop of two names: refused as Apptainer's parser does (status 1), neither stopped" '[ $RC -eq 1 ] && grep -q "stop takes one instance name or pattern, not 2" "$ERR" && "$HUTCH" instance list | grep -q "^two1 " && "$HUTCH" instance list | grep -q "^two2 "'
run "$HUTCH" instance list two1 two2
check "list of two names: refused the same way" '[ $RC -eq 1 ] && grep -q "list takes one instance name or pattern, not 2" "$ERR"'
"$HUTCH" instance stop --all >/dev/null 2>&1
run "$HUTCH" exec instance://nosuch true
check "exec of an unknown instance fails" 'fails_with "no instance named .nosuch."'
run "$HUTCH" instance logs nosuch-at-all
check "logs of an unknown instance fails" 'fails_with "no logs"'
run "$HUTCH" instance start --restart sometimes "$I" x
check "a bad restart policy is refused" 'fails_with "invalid restart policy"'
run "$HUTCH" exec --restart always "$I" true
check "--restart is only for instances (an unknown option of exec: status 1)" '[ $RC -eq 1 ] && err_has "restart"'
run "$HUTCH" instance start "$I"
check "start without a NAME fails" '[ $RC -eq 1 ] && [ "$(wc -l < "$ERR")" -eq 1 ] && err_has "missing instance NAME"'
run "$HUTCH" instance stop --signal BOGUS x
check "stop --signal with an unknown signal fails" '[ $RC -eq 255 ] && [ "$(wc -l < "$ERR")" -eq 1 ] && err_has "unknown signal .BOGUS."'
run "$HUTCH" instance stop --timeout soon x
check "stop --timeout that is not a number fails" '[ $RC -eq 255 ] && [ "$(wc -l < "$ERR")" -eq 1 ] && err_has "seconds"'
run "$HUTCH" instance stop
check "stop without a name or --all fails" '[ $RC -eq 255 ] && [ "$(wc -l < "$ERR")" -eq 1 ] && err_has "--all"'
run "$HUTCH" instance logs --tail many x
check "logs --tail that is not a number fails" '[ $RC -eq 255 ] && [ "$(wc -l < "$ERR")" -eq 1 ] && err_has "number of lines"'
run "$HUTCH" instance logs '../x'
check "logs of a bad name fails" 'fails_with "invalid instance name"'
run "$HUTCH" instance stats nosuch
check "stats of an unknown instance fails" 'fails_with "no instance named .nosuch."'
run "$HUTCH" instance list --user no-such-user-here
check "list --user of an unknown user fails" 'fails_with "no user named"'
run "$HUTCH" instance frobnicate
check "an unknown instance command fails" '[ $RC -eq 1 ] && err_has "unknown instance command"'
run "$HUTCH" supervise instance start "$I" direct
check "there is no supervise verb to run by hand (the supervisor is forked by instance start)" '[ $RC -eq 1 ] && err_has "unknown command .supervise." && [ -z "$(state_dirs)" ]'
if [ "$MODE" = user ]; then
	# the log files are made while the container starts: one that cannot be made still
	# fails the start, with the container stopped and nothing left
	"$HUTCH" instance start "$I" nolog >/dev/null 2>&1 && "$HUTCH" instance stop nolog >/dev/null 2>&1
	ld=$(dirname "$(ls "$HOME"/.hutch/logs/*/nolog.out)")
	rm -f "$ld"/nolog.*
	chmod 500 "$ld"
	run "$HUTCH" instance start "$I" nolog
	chmod 700 "$ld"
	check "a start whose log files cannot be made fails, and stops the container" \
		'fails_with "cannot open the logs of instance .nolog." && wait_for "[ -z \"\$(state_dirs)\" ] && [ -z \"\$(pgrep -u $(id -u) -x httpd)\" ]"'
fi
leftovers "bad input"

# --- logs: rotation and follow
printf 'instance log max size = 2K\n' > "$T/small.conf"
d=$(image_with_startscript 'i=0; while [ $i -lt 400 ]; do echo "line $i of the log"; i=$((i+1)); done; exec sleep 1000' chatty)
HUTCH_CONF=$T/small.conf run "$HUTCH" instance start "$d" chatty
out=$(ls "$HOME"/.hutch/logs/*/chatty.out)
check "logs are rotated at 'instance log max size'" 'wait_for "[ -s $out.1 ]" && [ $(stat -c %s "$out") -le 2048 ] && [ $(stat -c %s "$out.1") -le 2048 ]'
run "$HUTCH" instance logs --tail 3 chatty
check "logs --tail N shows the last N lines" 'out_is "$(printf "line 397 of the log\nline 398 of the log\nline 399 of the log")"'
"$HUTCH" instance logs -f --out chatty > "$T/follow" 2>&1 &
fpid=$!
sleep 0.3
"$HUTCH" instance stop chatty >/dev/null 2>&1
check "logs -f ends when the instance stops" 'wait_for "! kill -0 $fpid 2>/dev/null" && grep -q "line 399" "$T/follow"'
d=$(image_with_startscript 'echo "run $(cat /proc/uptime)"; exec sleep 1000' again)
rm -f "$HOME"/.hutch/logs/*/again.*
"$HUTCH" instance start "$d" again >/dev/null 2>&1 && "$HUTCH" instance stop again >/dev/null 2>&1
lo=$(ls "$HOME"/.hutch/logs/*/again.out)
run "$HUTCH" instance start "$d" again
check "a start of a used name appends to its logs, as Apptainer's" \
	'[ $RC -eq 0 ] && wait_for "[ \"\$(grep -c \"^run \" $lo)\" -eq 2 ] && [ \"\$(grep -c \"instance started\" ${lo%.out}.err)\" -eq 2 ]" && [ "$(ls $(dirname "$lo") | grep -c "^again\.")" -eq 2 ]'
"$HUTCH" instance stop again >/dev/null 2>&1
leftovers "logs"

# --- crashes
run "$HUTCH" instance start "$I" victim
sup=$(pgrep -n -u "$(id -u)" -x hutch-supervise)
kill -9 "$sup"
check "kill -9 of the supervisor takes the container with it" 'wait_for "[ -z \"\$(pgrep -u $(id -u) -x hutch-init)\" ]" && ! http_get $PORT | grep -q hello'
run "$HUTCH" instance list
check "the next list reports the dead instance once and removes it" '! out_has "^victim " && err_has "victim.*no longer running"'
run "$HUTCH" instance list
check "... and only once" '! err_has victim'
leftovers "kill -9 of the supervisor"
run "$HUTCH" instance start "$I" victim
hp=$(pgrep -u "$(id -u)" -x httpd | head -1)
kill -9 "$hp"
check "kill -9 of the payload (restart no): the instance ends" 'wait_for "! \"$HUTCH\" instance list | grep -q ^victim"'
check "... and the supervisor logged why" 'grep -q "exited with status 137" "$HOME"/.hutch/logs/*/victim.err'
leftovers "kill -9 of the payload"
run "$HUTCH" instance start "$I" victim
sup=$(pgrep -u "$(id -u)" -x hutch-supervise)
ipid=$(pgrep -u "$(id -u)" -x hutch-init)
mon=$(pgrep -P "$sup" -x hutch-sqfs-mon)
srv=$(pgrep -P "${mon:-0}" -x hutch-squashfs)
check "an idle instance is its supervisor, its image server and the init: no launcher" \
	'[ -z "$(pgrep -u $(id -u) -x hutch-launch)" ] && [ "$(ps -o ppid= -p "$ipid" | tr -d " ")" = "$sup" ]'
check "the image server is a process of the supervisor's (a monitor and its worker), not a thread in it" \
	'[ -n "$mon" ] && [ -n "$srv" ] && grep -q "^Threads:[[:space:]]*1$" /proc/$sup/status'
check "the init keeps nothing of hutch: a few KiB resident" \
	'[ "$(awk "/^VmRSS/{print \$2}" /proc/$ipid/status)" -lt 256 ]'
# the payload runs on the caller's CPUs from its first program on
mine=$(grep Cpus_allowed_list /proc/self/status | cut -f2)
cp -a "$IMAGES/rootfs" "$T/affimg"
printf '#!/bin/sh\ngrep Cpus_allowed_list /proc/self/status\n' > "$T/affimg/.singularity.d/startscript"
chmod 755 "$T/affimg/.singularity.d/startscript"
rm -f "$HOME"/.hutch/logs/*/aff.*
run "$HUTCH" instance start "$T/affimg" aff
check "the payload's very first program has the caller's CPUs ($mine)" \
	'wait_for "grep -q Cpus_allowed_list \"\$HOME\"/.hutch/logs/*/aff.out" && [ "$(cut -f2 "$HOME"/.hutch/logs/*/aff.out)" = "$mine" ]'
"$HUTCH" instance stop aff >/dev/null 2>&1
kill -9 "$ipid"
check "kill -9 of the init: the supervisor (and its image server) leave too" \
	'wait_for "[ -z \"\$(pgrep -u $(id -u) -x hutch-supervise)\" ]" && ! "$HUTCH" instance list | grep -q ^victim'
check "... and the supervisor logged why" 'grep -q "exited with status 137" "$HOME"/.hutch/logs/*/victim.err'
leftovers "kill -9 of the init"
# kill -9 of the launcher while its init (forked as the supervisor's child, both named
# hutch-launch then; killfirst polls /proc to catch those few ms) still sets the container
# up, before the launcher could report it: the supervisor ends that child it was never told
# of, the start fails saying so, nothing is left. Without that guard the init would go on
# to run the payload unknown to anyone, so what shows the guard is the supervisor's account
# of it in the log. Tried until the moment is caught (it almost always is at once).
hit=no
for try in 1 2 3 4 5 6; do
	"$KILLFIRST" hutch-launch 2 10000 > "$T/lkill.pid" &
	kpid=$!
	run "$HUTCH" instance start "$I" lkill
	wait $kpid && hit=yes
	"$HUTCH" instance stop lkill >/dev/null 2>&1
	wait_for '[ -z "$(pgrep -u $(id -u) -x hutch-supervise)" ]'
	[ $hit = yes ] && break
done
check "kill -9 of the launcher mid-start (caught at try $try): the start fails saying so" \
	'[ $hit = yes ] && fails_with "launcher of instance .lkill. exited with status 137"'
check "... and the supervisor ended the launcher's init before going on" \
	'grep -q "the launcher was killed; its init (pid [0-9]*) was ended before going on" "$HOME"/.hutch/logs/*/lkill.err'
leftovers "kill -9 of the launcher"
# hutch without its init beside it (a partial install): a start or a --pid run fails at
# once naming what is missing, and leaves nothing
mkdir "$T/noinit" && cp "$HUTCH" "$T/noinit/hutch"
run "$T/noinit/hutch" instance start "$I" noinit
check "without hutch-init, instance start fails saying so" '[ $RC -eq 255 ] && err_has "cannot find hutch-init"'
run "$T/noinit/hutch" exec --pid "$I" true
check "... and so does exec --pid" '[ $RC -eq 255 ] && err_has "cannot find hutch-init"'
leftovers "without hutch-init"
run "$HUTCH" instance start --restart on-failure "$I" phoenix
hp=$(pgrep -u "$(id -u)" -x httpd | head -1)
kill -9 "$hp"
check "restart on-failure: the payload is back and counted in list" 'wait_for "\"$HUTCH\" instance list | grep -q \"^phoenix .* 1\$\"" && wait_for "http_get $PORT | grep -q hello"'
run "$HUTCH" instance stop phoenix
check "a stopped instance is not restarted" '[ $RC -eq 0 ] && [ -z "$(pgrep -u $(id -u) -x hutch-init)" ]'
leftovers "restart"
d=$(image_with_startscript 'sleep 0.3; exit 3' flaky)
rm -f "$HOME"/.hutch/logs/*/flaky.*
run "$HUTCH" instance start --restart on-failure:2 "$d" flaky
check "on-failure:N gives up after N restarts" 'wait_for "! \"$HUTCH\" instance list | grep -q ^flaky" 100 && [ "$(grep -c "restart [0-9]" "$HOME"/.hutch/logs/*/flaky.err)" -eq 2 ]'
leftovers "on-failure:N"
# the supervisor exits with its container's status, as a subreaper above it sees
cat > "$T/subreap.py" <<'PY'
import ctypes, os, sys
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: the supervisor comes to us
first = os.fork()
if first == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
while True:
    try:
        pid, st = os.wait()
    except ChildProcessError:
        break
    if pid != first:
        print(os.WEXITSTATUS(st) if os.WIFEXITED(st) else "signal %d" % os.WTERMSIG(st))
PY
d=$(image_with_startscript 'sleep 0.5; exit 3' three)
run python3 "$T/subreap.py" "$HUTCH" instance start "$d" three
check "the supervisor exits with its container's status (3)" 'out_is 3'
run python3 "$T/subreap.py" sh -c '"$1" instance start "$2" killed && kill -9 $(pgrep -u $(id -u) -x httpd | head -1)' - "$HUTCH" "$I"
check "... and with 128+N when signal N killed the container (137)" 'out_is 137'
leftovers "the supervisor's status"
mkdir -p "$HOME/.hutch/instances/$(hostname)/ghost"
printf 'name=ghost\npid=1\nsupervisor=1\n' > "$HOME/.hutch/instances/$(hostname)/ghost/state"
: > "$HOME/.hutch/instances/$(hostname)/ghost/lock"
run "$HUTCH" instance list
check "state left from before a reboot is never listed, and is removed" '! out_has "^ghost " && [ ! -e "$HOME/.hutch/instances/$(hostname)/ghost" ]'

# --- stop options
d=$(image_with_startscript "trap '' INT TERM; exec sh -c 'trap \"\" INT TERM; while :; do sleep 1; done'" stubborn)
run "$HUTCH" instance start "$d" stubborn
s=$(date +%s%N)
run "$HUTCH" instance stop --timeout 1 stubborn
ms=$(( ($(date +%s%N) - s) / 1000000 ))
check "stop --timeout kills a payload that ignores SIGINT and SIGTERM (${ms} ms), saying so as Apptainer" '[ $RC -eq 0 ] && [ $ms -ge 900 ] && [ $ms -lt 5000 ] && err_has "^INFO: *Killing stubborn instance of .* (PID=[0-9]*) (Timeout)$"'
leftovers "stop --timeout"
run "$HUTCH" instance start "$d" stubborn
s=$(date +%s%N)
run "$HUTCH" instance stop --force stubborn
ms=$(( ($(date +%s%N) - s) / 1000000 ))
check "stop --force kills at once (${ms} ms)" '[ $RC -eq 0 ] && [ $ms -lt 900 ]'
leftovers "stop --force"
d=$(image_with_startscript "trap 'echo got-usr1; exit 0' USR1; while :; do sleep 0.1; done" usr1)
run "$HUTCH" instance start "$d" usr1
run "$HUTCH" instance stop --signal USR1 usr1
check "stop --signal sends that signal to the payload" '[ $RC -eq 0 ] && grep -q got-usr1 "$HOME"/.hutch/logs/*/usr1.out'
check "... whose exit 0 on it ends the instance, not the timeout's kill" '! err_has "Timeout"'
leftovers "stop --signal"
# a service that exits 0 on stop's signal has stopped (as Apptainer's stop sees its
# container's processes gone): no wait for the timeout, no kill
d=$(image_with_startscript "trap 'echo clean-exit; exit 0' INT TERM; while :; do sleep 0.1; done" clean)
run "$HUTCH" instance start "$d" clean
s=$(date +%s%N)
run "$HUTCH" instance stop clean
ms=$(( ($(date +%s%N) - s) / 1000000 ))
check "a service that exits 0 on SIGINT stops at once (${ms} ms), not at the timeout" '[ $RC -eq 0 ] && [ $ms -lt 5000 ] && ! err_has "Timeout" && grep -q clean-exit "$HOME"/.hutch/logs/*/clean.out'
leftovers "stop of a service that exits 0 on its signal"
# a signal that is no stop (a reload's SIGHUP sent to the init) and a payload that exits 0
# on it: the instance stays, as one whose startscript ended; then stop ends it at once
d=$(image_with_startscript "trap 'echo reloaded; exit 0' HUP; while :; do sleep 0.1; done" hup)
run "$HUTCH" instance start "$d" hup
pid=$("$HUTCH" instance list | awk '$1=="hup"{print $2}')
kill -HUP "$pid"
wait_for 'grep -q reloaded "$HOME"/.hutch/logs/*/hup.out'
sleep 0.5
check "a SIGHUP that is not a stop, and a payload exiting 0 on it: the instance stays" '"$HUTCH" instance list | grep -q "^hup "'
s=$(date +%s%N)
run "$HUTCH" instance stop hup
ms=$(( ($(date +%s%N) - s) / 1000000 ))
check "... and stop ends it at once (${ms} ms)" '[ $RC -eq 0 ] && [ $ms -lt 5000 ] && ! err_has "Timeout"'
leftovers "a reload that is no stop"
# a caller that ignores SIGINT and SIGQUIT (as a shell's background job does) or SIGHUP
# (nohup) passes that on to no instance: stop's SIGINT ends the service itself
run sh -c 'trap "" INT QUIT HUP; exec "$0" instance start "$1" sigdfl' "$HUTCH" "$I"
pid=$("$HUTCH" instance list | awk '$1=="sigdfl"{print $2}')
kids=$(cat /proc/$pid/task/*/children 2>/dev/null)
sig_ignored_by_none() { # MASK PID...
	local m=$1 k
	shift
	for k in "$@"; do [ $(( 0x$(sigign "$k") & $m )) -eq 0 ] || return 1; done
}
check "a caller's ignored SIGINT, SIGQUIT and SIGHUP reach neither the init nor the service" '[ $RC -eq 0 ] && [ -n "$kids" ] && sig_ignored_by_none 0x7 $pid $kids'
run "$HUTCH" instance stop sigdfl
check "... and stop's SIGINT ends it without the timeout's kill" '[ $RC -eq 0 ] && ! err_has "Timeout" && grep -q "container exited with status 130 (stopped)" "$HOME"/.hutch/logs/*/sigdfl.err'
leftovers "stop of an instance whose caller ignored SIGINT"
# a caller that ignores SIGCHLD: the supervisor still learns of its children's ends (else
# it waits for ever on a launcher the kernel reaped: hence the timeout)
run timeout 60 python3 -c 'import os, signal, sys; signal.signal(signal.SIGCHLD, signal.SIG_IGN); os.execv(sys.argv[1], sys.argv[1:])' "$HUTCH" instance start "$I" nochld
check "a caller that ignores SIGCHLD starts an instance" '[ $RC -eq 0 ] && "$HUTCH" instance list | grep -q "^nochld "'
run "$HUTCH" instance stop nochld
check "... which stops, its container's end seen and logged" '[ $RC -eq 0 ] && ! err_has "Timeout" && grep -q "container exited with status 130 (stopped)" "$HOME"/.hutch/logs/*/nochld.err'
leftovers "an instance whose caller ignored SIGCHLD"

# --- concurrency
for i in 1 2; do "$HUTCH" instance start "$I" twin >"$T/twin$i" 2>&1 & done
wait
check "two starts of one NAME at once: exactly one instance" '[ "$(count_rows)" -eq 1 ] && [ "$(grep -l "already exists" "$T"/twin? | wc -l)" -eq 1 ]'
"$HUTCH" instance stop twin >/dev/null 2>&1
d=$(image_with_startscript '' many)
for i in $(seq 50); do "$HUTCH" instance start "$d" "many$i" >/dev/null 2>&1 & done
wait
check "fifty names started in parallel: fifty instances, fifty rows" '[ "$(count_rows)" -eq 50 ] && [ "$(pgrep -u $(id -u) -x hutch-supervise | wc -l)" -eq 50 ]'
run "$HUTCH" instance stop --all
check "stop --all stops every one" '[ $RC -eq 0 ] && [ "$(count_rows)" -eq 0 ]'
run "$HUTCH" instance stop --all
check "stop --all with none running: Apptainer's 'no instance found', status 255" 'fails_with "no instance found$"'
leftovers "fifty instances"

# --- every user's instances, from the live supervisors
run "$HUTCH" instance start "$I" seen
run "$HUTCH" instance list --all
check "list --all finds the instance from its supervisor, with its USER" 'out_has "^$(id -un)  *seen "'
run "$HUTCH" instance list --user "$(id -un)"
check "list --user finds the user's instance" 'out_has "^$(id -un)  *seen "'
run "$HUTCH" instance list --user 4000000
check "list --user of another uid does not show it" '! out_has " seen "'
"$HUTCH" instance stop seen >/dev/null 2>&1
leftovers "list --all"
if [ "$MODE" = root ]; then
	# Another user's supervisor and its state are that user's to forge: root's list --all
	# trusts only what the kernel vouches for (the process's real uid, the folder the
	# supervisor holds) and reads the state as that user would.
	U=${AUX_USER:-hutchtest3}
	id "$U" >/dev/null 2>&1 || useradd -m -s /bin/bash "$U"
	UH=$(getent passwd "$U" | cut -d: -f6) uid=$(id -u "$U")
	asu() { runuser -u "$U" -- env HOME="$UH" "$@"; }
	asu "$HUTCH" instance start "$I" forge >/dev/null 2>&1
	# (that instance's own: the user-mode run may have AUX_USER's instances too)
	fsup=$(pgrep -u "$uid" -f -- "-- start .* forge\$" | head -1)
	trap '[ -n "${fsup:-}" ] && kill "$fsup" 2>/dev/null; "$HUTCH" instance stop --all --force >/dev/null 2>&1; rm -rf "$T"' EXIT
	fdir=$(readlink "/proc/$fsup/fd/4")
	# the supervisor writes the state once more, with the image's digest, after the start
	# returned: the forgery comes after that, or that write would undo it
	wait_for 'grep -q "^digest=." "$fdir/state"' 100
	asu cp "$fdir/state" "$UH/forge.state"
	asu sh -c 'sed "s/^uid=.*/uid=0/" "$1/state" > "$1/f" && mv -f "$1/f" "$1/state"' - "$fdir"
	run timeout 10 "$HUTCH" instance list --user root
	check "a user's state that claims uid 0 is not listed as root's" '[ $RC -eq 0 ] && ! out_has " forge "'
	run timeout 10 "$HUTCH" instance list --all --json
	check "... nor anywhere in list --all" '[ $RC -eq 0 ] && ! out_has "\"forge\""'
	asu sh -c 'mkfifo "$1/f" && mv -f "$1/f" "$1/state"' - "$fdir"
	run timeout 10 "$HUTCH" instance list --all
	check "a FIFO as a user's state does not hang root's list --all" '[ $RC -eq 0 ]'
	# a root-only file that would pass for the state: root must not read it for the user
	sed "s|^image=.*|image=/ROOT-ONLY-FILE-READ|" "$UH/forge.state" > "$T/secret"
	chmod 0600 "$T/secret"
	asu ln -sfn "$T/secret" "$fdir/state"
	run timeout 10 "$HUTCH" instance list --all
	check "a symlink from a user's state to a root-only file is not followed" '[ $RC -eq 0 ] && ! out_has ROOT-ONLY'
	asu sh -c 'rm -f "$1/state" && cp "$2" "$1/state"' - "$fdir" "$UH/forge.state"
	run "$HUTCH" instance list --user "$U"
	check "the user's real state is listed again" 'out_has "^$U  *forge "'
	asu "$HUTCH" instance stop forge >/dev/null 2>&1
	check "the user's instance is stopped" 'wait_for "! kill -0 $fsup 2>/dev/null"'
	kill "$fsup" 2>/dev/null
	rm -f "$UH/forge.state"
	fsup=
fi

# --- batch jobs: the job id recorded and shown; tied to the job (the default inside one),
# the instance ends with the job's script (its session's leader), whatever proctrack does
d=$(image_with_startscript '' jobimg)
run env PBS_JOBID= LSB_JOBID= SLURM_JOB_ID=4242 setsid -w sh -c '"$0" instance start "$1" tied && "$0" instance list &&
	"$0" instance list --json && sleep 0.5' "$HUTCH" "$d"
check "an instance started in a batch job shows the job id, tied to it" '[ $RC -eq 0 ] && out_has "^tied .* 4242 (tied)$" && out_has "\"jobId\": \"4242\"" && out_has "\"tiedToJob\": true"'
check "... and ends when the job's script does" 'wait_for "! \"$HUTCH\" instance list | grep -q ^tied" && grep -q "batch job 4242 ended" "$HOME"/.hutch/logs/*/tied.err'
d2=$(image_with_startscript "trap '' TERM; exec sh -c 'trap \"\" TERM; while :; do sleep 1; done'" jobdeaf)
run env SLURM_JOB_ID=4244 setsid -w sh -c '"$0" instance start "$1" deaf' "$HUTCH" "$d2"
check "... a payload that ignores SIGTERM is killed 10 s after its job's end" 'wait_for "! \"$HUTCH\" instance list | grep -q ^deaf" 150'
run env SLURM_JOB_ID=4243 setsid -w sh -c '"$0" instance start --no-tie-to-job "$1" free' "$HUTCH" "$d"
sleep 0.3
run "$HUTCH" instance list
check "--no-tie-to-job: the instance outlives the job's script, its job id still shown" 'out_has "^free .* 4243$"'
"$HUTCH" instance stop free >/dev/null 2>&1
run env -u SLURM_JOB_ID -u PBS_JOBID -u LSB_JOBID "$HUTCH" instance start --tie-to-job "$d" notjob
check "--tie-to-job outside a batch job is an error" 'fails_with "not inside a batch job"'
run "$HUTCH" instance start --tie-to-job=maybe "$d" notjob
check "--tie-to-job takes true or false" '[ $RC -eq 255 ] && err_has "true or false"'
leftovers "batch jobs"

# --- one set of instances whatever the environment (login shell, cron, su, a batch job)
mkdir -m 0700 "$T/xdg"
XDG_RUNTIME_DIR=$T/xdg run "$HUTCH" instance start "$I" xdg
check "XDG_RUNTIME_DIR does not move an instance's state" '[ $RC -eq 0 ] && [ ! -e "$T/xdg/hutch/instances/xdg" ] && state_dirs | grep -q "/xdg$"'
run env -u XDG_RUNTIME_DIR "$HUTCH" instance list
check "an instance started with XDG_RUNTIME_DIR set is listed without it" 'out_has "^xdg "'
run env -u XDG_RUNTIME_DIR "$HUTCH" instance start "$I" xdg
check "... its NAME cannot be started a second time" 'fails_with "instance xdg already exists"'
run env -u XDG_RUNTIME_DIR "$HUTCH" exec instance://xdg cat /etc/hutch-test-marker
check "... it can be joined" 'out_is image-marker'
run env -u XDG_RUNTIME_DIR "$HUTCH" instance stop xdg
check "... and stopped" '[ $RC -eq 0 ] && [ -z "$(state_dirs)" ]'
leftovers "one set of instances"
if [ "$MODE" = root ] && [ ! -e /run/user/0 ]; then
	# /run/user/0 appears (a login) after an instance started under $HOME; later it is
	# unmounted under a running instance (the last logout): every instance stays in view
	d=$(image_with_startscript '' quiet)
	run "$HUTCH" instance start "$d" before
	run unshare -m sh -c 'mount -t tmpfs -o size=1m,mode=0755 tmpfs /run/user && mkdir -m 0700 /run/user/0 &&
		"$0" instance list && { "$0" instance start "$1" before; echo "again $?"; } &&
		"$0" instance start "$1" fresh && ls /run/user/0/hutch/instances && umount -l /run/user &&
		"$0" instance list && "$0" instance stop fresh && "$0" instance stop before' "$HUTCH" "$d"
	"$HUTCH" instance stop before >/dev/null 2>&1
	check "with /run/user/UID present, an instance under \$HOME is still listed and its NAME taken" \
		'[ "$(grep -c "^before " "$OUT")" -eq 2 ] && out_has "^again 255$" && err_has "instance before already exists"'
	check "... new instances go to /run/user/UID" 'out_has "^fresh$"'
	check "... and one whose folder was unmounted under it is still listed and stopped" \
		'[ $RC -eq 0 ] && out_has "^fresh " && [ -z "$(pgrep -u 0 -x hutch-supervise)" ]'
	leftovers "/run/user/UID"
fi
run "$HUTCH" instance start "$I" idle
sleep 2.5 # the FUSE server gives its caches and heap back after 2 s without requests
run "$HUTCH" exec instance://idle md5sum /bin/busybox /etc/hutch-test-marker
check "after its FUSE server went idle and gave memory back, the instance still reads its files right" \
	'out_has "^$(md5sum < "$IMAGES/rootfs/bin/busybox" | cut -d" " -f1) " && [ "$(wc -l < "$OUT")" -eq 2 ]'
run "$HUTCH" instance stop idle
leftovers "instances"
finish
