# Instances kept by a real systemd user manager (instance start --systemd): a `systemd --user`
# of the test user, started here in a private mount and cgroup namespace (tmpfs on
# /run/systemd with /run/systemd/system, a cgroup2 subtree beneath ours chowned to the user
# and mounted as the namespace's /sys/fs/cgroup, XDG_RUNTIME_DIR on a tmpfs of the user's);
# and batch runs whose limits go through it (hutch-run-*.service; in the VM tier, where the
# units get controllers, enforced too). Root mode only: a user cannot make that namespace.
. "$(dirname "$0")/lib.sh"
SD=/lib/systemd/systemd
if [ "${1:-}" != inner ]; then
	if [ "$MODE" != root ] || [ ! -x $SD ] || ! grep -q '^0::' /proc/self/cgroup; then
		echo "ok - # SKIP a user manager needs root to set up its namespace (mode $MODE)"
		finish
	fi
	U=${HUTCH_SD_USER:-${AUX_USER:-hutchtest3}}
	id "$U" >/dev/null 2>&1 || useradd -m -s /bin/bash "$U"
	v2=$(awk '$3 == "cgroup2" {print $2; exit}' /proc/self/mounts)
	CG=$v2$(sed -n 's/^0:://p' /proc/self/cgroup)/hutch-systemd-test-$$
	CG=${CG//\/\//\/}
	mkdir "$CG" && chown -R "$U" "$CG"
	cleanup() {
		# deepest first: what the manager made beneath
		find "$CG" -depth -type d -exec rmdir {} + 2>/dev/null
		rm -rf "$T"
	}
	trap cleanup EXIT
	chmod 0755 "$T"
	(echo "$BASHPID" > "$CG/cgroup.procs" &&
		exec unshare --mount --cgroup --propagation private bash "$0" inner "$U") </dev/null
	exit $?
fi

# --- inside: the namespace's own /sys/fs/cgroup, /run/systemd and /run/user/UID
chmod 0755 "$T"
U=$2
UID_=$(id -u "$U")
UHOME=$(getent passwd "$U" | cut -d: -f6)
umount -l /sys/fs/cgroup 2>/dev/null
mount -t cgroup2 cgroup2 /sys/fs/cgroup || { echo "not ok - cannot mount the cgroup2 subtree"; exit 0; }
mkdir -p /run/systemd && mount -t tmpfs tmpfs /run/systemd && mkdir /run/systemd/system
mkdir -p /run/user && mount -t tmpfs -o mode=0755 tmpfs /run/user && install -d -o "$U" -g "$U" -m 0700 "/run/user/$UID_"
RT=/run/user/$UID_
# the user's clean environment, keeping a sanitizer build's options (ASan's default leak
# check at exit would hang a hutch that joined an instance's PID namespace: its tracer
# cannot reach it from there)
SAN=()
[ -z "${ASAN_OPTIONS:-}" ] || SAN+=("ASAN_OPTIONS=$ASAN_OPTIONS")
[ -z "${UBSAN_OPTIONS:-}" ] || SAN+=("UBSAN_OPTIONS=$UBSAN_OPTIONS")
asu() { setpriv --reuid="$U" --regid="$U" --init-groups env -i HOME="$UHOME" XDG_RUNTIME_DIR="$RT" PATH="$PATH" HUTCH_TEST_PORT=18580 ${SAN[@]+"${SAN[@]}"} "$@"; }
# a stand-in for journald on its socket: each datagram of the native protocol to a file
mkdir -p /run/systemd/journal
python3 -c '
import socket, sys, os
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("/run/systemd/journal/socket")
os.chmod("/run/systemd/journal/socket", 0o666)
out = open(sys.argv[1], "ab", buffering=0)
while True:
    out.write(s.recv(65536) + b"--\n")
' "$T/journal" &
JRN=$!
wait_for "[ -S /run/systemd/journal/socket ]"
asu $SD --user </dev/null >"$T/manager.log" 2>&1 &
MGR=$!
# the manager leaves on `systemctl --user exit`; whatever a unit left is killed through
# the slice of its units (cgroup.kill, Linux 5.14; this shell is in the manager's init.scope)
stop_manager() {
	asu "$HUTCH" instance stop --all --force >/dev/null 2>&1
	asu systemctl --user exit >/dev/null 2>&1
	wait_for '! kill -0 $MGR 2>/dev/null' 50
	[ ! -e /sys/fs/cgroup/app.slice/cgroup.kill ] || echo 1 > /sys/fs/cgroup/app.slice/cgroup.kill
	kill -9 "$MGR" 2>/dev/null
	wait "$MGR" 2>/dev/null
}
trap 'stop_manager; kill $JRN; rm -rf "$T"' EXIT
wait_for "[ -S $RT/systemd/private ]" 100
check "a systemd user manager of $U runs in the namespace" '[ -S $RT/systemd/private ]' || sed 's/^/#   /' "$T/manager.log" | tail -5
sctl() { asu systemctl --user "$@"; }

I=$IMAGES/image.sif
# an image without a service (no startscript): for units whose environment has no port
Q=$T/quiet
cp -a "$IMAGES/rootfs" "$Q" && rm -f "$Q/.singularity.d/startscript"
# --- batch runs with limits through the manager (a transient hutch-run-*.service): this
# namespace's cgroup2 offers no controllers to the user's own cgroup, so hutch cannot apply
# them itself; the manager's unit carries them (enforced where the kernel has them: tests/vm)
runs() { sctl list-units --all --no-legend 'hutch-run-*'; }
# (asx ...) &: $! is hutch's own pid (asu, a function, would leave a shell between)
asx() { exec setpriv --reuid="$U" --regid="$U" --init-groups env -i HOME="$UHOME" XDG_RUNTIME_DIR="$RT" PATH="$PATH" ${SAN[@]+"${SAN[@]}"} "$@"; }
install -d -o "$U" -g "$U" "$T/wd"
run asu "$HUTCH" exec --memory 64M --cpus 0.5 "$I" cat /proc/self/cgroup
check "exec --memory by a user without a usable cgroup: the command runs inside hutch-run-*.service" \
	'[ $RC -eq 0 ] && out_has "/hutch-run-[0-9]*-[0-9a-f]*\.service$"'
check "... and the unit is gone after" 'wait_for "[ -z \"\$(runs)\" ]"'
(asx "$HUTCH" exec --memory 64M --cpus 0.5 --pids-limit 50 "$I" sleep 30 >"$T/bg.out" 2>&1) &
BG=$!
wait_for '[ -n "$(runs)" ]' 100
ru=$(runs | awk '{print $1}' | head -1)
check "... the unit carries the limits as properties (MemoryMax, CPUQuota, TasksMax) and Delegate=yes" \
	'[ "$(sctl show -P MemoryMax "$ru")" = 67108864 ] && [ "$(sctl show -P CPUQuotaPerSecUSec "$ru")" = 500ms ] && [ "$(sctl show -P TasksMax "$ru")" = 50 ] && [ "$(sctl show -P Delegate "$ru")" = yes ]'
kill -TERM "$BG"
wait "$BG"
RC=$?
check "SIGTERM to hutch ends the payload (status 143) and leaves no unit" '[ $RC -eq 143 ] && wait_for "[ -z \"\$(runs)\" ]"'
# (a background job ignores SIGINT, which hutch then leaves ignored, as the payload would)
(asx env --default-signal=INT "$HUTCH" exec --memory 64M "$I" sleep 30 >"$T/bg.out" 2>&1) &
BG=$!
wait_for '[ -n "$(runs)" ] && [ "$(sctl show -P ActiveState "$(runs | awk "{print \$1}")")" = active ]' 100
kill -INT "$BG"
wait "$BG"
RC=$?
check "Ctrl-C (SIGINT to hutch) ends it too (status 130), no unit left" '[ $RC -eq 130 ] && wait_for "[ -z \"\$(runs)\" ]"'
# SIGKILL to hutch (hutch-systemd run by then) cannot be passed on: the hutch inside the
# unit holds a pidfd of it (--caller) and ends the run when it goes
(asx "$HUTCH" exec --memory 64M "$I" sleep 3141 >"$T/bg.out" 2>&1) &
BG=$!
wait_for 'pgrep -u "$U" -x sleep >/dev/null' 100
{ kill -KILL "$BG" && wait "$BG"; } 2>/dev/null
wait_for '[ -z "$(runs)" ] && ! pgrep -u "$U" -f "sleep 3141" >/dev/null' 50
left=$(runs; pgrep -a -u "$U" -f "sleep 3141")
check "SIGKILL to hutch: its unit is gone within 5 s and nothing of the run is left" '[ -z "$left" ]'
[ -z "$left" ] || echo "$left" | sed 's/^/#   left: /'
run asu "$HUTCH" --caller=1:2:3 exec "$I" true
check "--caller is hutch's own: without --in-unit it is refused" 'fails_with "is hutch'"'"'s own"'
(cd "$T/wd" && umask 0027 && echo hello | asu env FROMCALLER=yes "$HUTCH" exec --memory 64M "$I" sh -c 'read l; echo "$l $FROMCALLER $(pwd) $(umask)"; echo oops >&2; exit 7' >"$OUT" 2>"$ERR")
RC=$?
check "stdin, stdout, stderr, the environment, the folder and the umask are the caller's; the exit status is relayed" \
	'[ $RC -eq 7 ] && out_is "hello yes $T/wd 0027" && [ "$(cat "$ERR")" = oops ]'
# a caller with a terminal (script's): the unit gets a pseudo-terminal of its own, relayed,
# which systemd makes the unit's controlling terminal: a shell has job control (set -m),
# /dev/tty opens, a line typed reaches it (stdin held open through a FIFO until it ends)
cat >"$T/ptyrun.sh" <<EOF
exec setpriv --reuid=$U --regid=$U --init-groups env -i HOME=$UHOME XDG_RUNTIME_DIR=$RT PATH=$PATH ${SAN[*]:-} $HUTCH exec --memory 64M $I sh -c 'set -m; sleep 1 & jobs; wait; if exec 3</dev/tty; then echo "has a controlling terminal"; fi; read l; echo "got \$l"; exit 3'
EOF
mkfifo "$T/keys"
script -q -e -c "sh $T/ptyrun.sh" /dev/null <"$T/keys" >"$OUT" 2>&1 &
SP=$!
exec 4>"$T/keys"
# (typed once the command runs: systemd resets a terminal it is given, flushing its input)
wait_for 'grep -q "has a controlling terminal" "$OUT"' 300 && printf 'a typed line\n' >&4
if wait_for '! kill -0 "$SP" 2>/dev/null' 300; then
	wait "$SP"
	RC=$?
else
	RC=124
	ps -eo pid,ppid,user,stat,wchan:20,cmd | grep -v "ps -eo" | sed 's/^/#   ps: /' | grep -E "script|hutch|sh -c|sleep|systemd" >&2
	kill "$SP"
fi
exec 4>&-
check "a terminal's run through the manager: a pty of its own as its controlling terminal (job control), keys relayed, status back" \
	'[ $RC -eq 3 ] && out_has "has a controlling terminal" && out_has "got a typed line" && out_has "Running.*sleep 1" && ! out_has "job control turned off" && wait_for "[ -z \"\$(runs)\" ]"'
run asu "$HUTCH" exec --memory 64M "$T/nonexistent.sif" true
check "a bad image: one line, status 255, no unit left" \
	'fails_with "nonexistent.sif" && wait_for "[ -z \"\$(runs)\" ]"'
run asu "$HUTCH" exec --systemd no --memory 64M "$I" true
check "--systemd no: the limits are refused in one line that says why and what would work" \
	'fails_with "cgroup" && err_has "--systemd auto" && [ -z "$(runs)" ]'
run asu env HUTCH_SYSTEMD=no "$HUTCH" exec --memory 64M "$I" true
check "... HUTCH_SYSTEMD=no as well" 'fails_with "--systemd no keeps them"'
run asu env XDG_RUNTIME_DIR="$T/none" "$HUTCH" exec --memory 64M "$I" true
check "no usable cgroup and no manager: one line saying both, and what would fix it" \
	'fails_with "cgroup" && err_has "no systemd user manager is reachable" && err_has "enable-linger"'
run asu env XDG_RUNTIME_DIR="$T/none" "$HUTCH" exec --systemd yes --memory 64M "$I" true
check "--systemd yes without a manager: one line" 'fails_with "no systemd user manager is reachable"'
run asu env SLURM_JOB_ID=77 "$HUTCH" exec --memory 64M "$I" true
check "inside a batch job the manager is left out (the job keeps its processes): refused" \
	'fails_with "cgroup" && [ -z "$(runs)" ]'
run asu "$HUTCH" --in-unit=hutch-run-1-0.service exec --memory 64M "$I" true
check "--in-unit is hutch's own: outside that unit it is refused" 'fails_with "is hutch'"'"'s own"'
run asu "$HUTCH" exec "$I" cat /proc/self/cgroup
check "without limits nothing goes through the manager" '[ $RC -eq 0 ] && ! out_has hutch-run'
# --- the audit of batch runs: hutch.conf 'audit batch runs' (the admin's file, staged over
# the path this build reads, in an overlay of this namespace) gives a start and an end entry.
# On the host only: the VM tier runs the batch limits (its guest's root takes no overlay).
audit_batch_runs() {
SYS=$("$HUTCH" help | sed -n 's/^System configuration: //p')
sd=$(dirname "$SYS")
while [ ! -d "$sd" ]; do sd=$(dirname "$sd"); done
mkdir -p "$T/up" "$T/wk"
if mount -t overlay overlay -o "lowerdir=$sd,upperdir=$T/up,workdir=$T/wk" "$sd"; then
	mkdir -p "$(dirname "$SYS")" && printf 'audit batch runs = yes\n' >"$SYS" && chmod 0644 "$SYS"
	run asu "$HUTCH" exec "$I" sh -c 'exit 3'
	bentry() { awk -v RS='--\n' -v ev="HUTCH_EVENT=$1" 'index($0, ev "\n") && index($0, "HUTCH_VERB=exec\n")' "$T/journal"; }
	check "audit batch runs = yes: the run's start and end are journal entries (user, image, verb, status)" \
		'[ $RC -eq 3 ] && bentry start | grep -qx "HUTCH_USER=$U" && bentry start | grep -qx "HUTCH_IMAGE=$I" && bentry end | grep -qx HUTCH_EXIT_STATUS=3'
	# hutch stays the run's parent then: a signal to it reaches the run
	(asx "$HUTCH" exec "$I" sleep 30 >/dev/null 2>&1) &
	BG=$!
	wait_for "pgrep -u $UID_ -x sleep >/dev/null" 100
	kill -TERM "$BG"
	wait "$BG"
	RC=$?
	check "... SIGTERM to that hutch ends the run (status 143), and the end entry says so" \
		'[ $RC -eq 143 ] && bentry end | grep -qx HUTCH_EXIT_STATUS=143 && ! pgrep -u $UID_ -x sleep'
	umount -l "$sd"
else
	echo "not ok - cannot stage the system hutch.conf over $sd"
fi
}
[ -n "${HUTCH_IT_VM:-}" ] || audit_batch_runs
if grep -qw memory /sys/fs/cgroup/cgroup.controllers; then
	# the VM tier (tests/vm: cgroup v2 with every controller): the manager's units get the
	# controllers, so the unit's limits hold
	run asu "$HUTCH" exec --memory 32M "$I" sh -c 'head -c 200000000 /dev/zero | tail >/dev/null'
	check "a memory hog above --memory 32M is OOM-killed in the unit, and hutch reports it" \
		'[ $RC -eq 137 ] && err_has "OOM killer" && err_has "32 MiB" && wait_for "[ -z \"\$(runs)\" ]"'
	sed 's/^/#   hutch said: /' "$ERR"
	# the payload's own cgroup (the unit's) as the container sees it
	cat > "$T/usage" <<'USAGE'
#!/bin/sh
awk '$1 == "usage_usec" {print $2}' "/sys/fs/cgroup$(awk -F: '$1 == 0 {print $3}' /proc/self/cgroup)/cpu.stat"
USAGE
	chmod 0755 "$T/usage"
	run asu "$HUTCH" exec --cpus 0.5 -B "$T/usage:/usage" "$I" sh -c "
		t0=\$(/usage)
		timeout 2 sh -c 'while :; do :; done'
		t1=\$(/usage)
		echo \$(( (t1 - t0) / 20000 ))"
	check "--cpus 0.5 in the unit holds a busy loop near 50 % of one CPU (measured $(cat "$OUT") %)" \
		'[ "$(cat "$OUT")" -ge 30 ] && [ "$(cat "$OUT")" -le 65 ]'
fi

# the end: the manager stops, and nothing of the user's is left
teardown() {
	stop_manager
	kill $JRN
	trap 'rm -rf "$T"' EXIT
	check "after the manager stops, nothing of the user's is left" 'wait_for "! pgrep -u $UID_ >/dev/null"'
	finish
}
# the VM tier runs the batch limits alone (the instances' part is the host's)
[ -z "${HUTCH_IT_VM:-}" ] || teardown

run asu "$HUTCH" instance start --systemd yes "$I" web
check "start --systemd yes: the instance runs as a unit of the user's manager" '[ $RC -eq 0 ]'
check "... hutch-web.service is active" '[ "$(sctl is-active hutch-web.service)" = active ]'
mainpid=$(sctl show -P MainPID hutch-web.service)
check "... its main process is the supervisor, inside the unit's cgroup" \
	'[ "$(cat /proc/$mainpid/comm)" = hutch-supervise ] && grep -q "hutch-web.service$" /proc/$mainpid/cgroup'
run asu "$HUTCH" instance list
check "list shows the keeper: systemd" 'out_has "^web .* systemd  *0$"'
run asu "$HUTCH" instance list --json
check "list --json: keeper and unit" 'out_has "\"keeper\": \"systemd\"" && out_has "\"unit\": \"hutch-web.service\""'
run asu "$HUTCH" exec instance://web cat /etc/hutch-test-marker
check "exec instance:// joins it" 'out_is image-marker'
run asu "$HUTCH" instance stop web
check "instance stop stops the unit" '[ $RC -eq 0 ] && wait_for "[ \"\$(sctl is-active hutch-web.service)\" != active ]" && ! pgrep -u $UID_ -x hutch-supervise'

# the audit trail: one journal entry per start and stop, with the HUTCH_ fields
entry() { awk -v RS='--\n' -v ev="HUTCH_EVENT=$1" -v nm="HUTCH_INSTANCE=$2" 'index($0, ev "\n") && index($0, nm "\n")' "$T/journal"; }
check "the audit trail: a journal entry for the start (instance, user, keeper, unit, image, pid)" \
	'entry start web | grep -qx "HUTCH_USER=$U" && entry start web | grep -qx HUTCH_KEEPER=systemd && entry start web | grep -qx HUTCH_UNIT=hutch-web.service && entry start web | grep -qx "HUTCH_IMAGE=$I" && entry start web | grep -q "^HUTCH_PID=[0-9]"'
check "... and one for the stop, with the exit status" 'wait_for "entry stop web | grep -q ^HUTCH_EXIT_STATUS="'
check "... which says who asked for it (the user: the kernel's word through the control socket)" \
	'entry stop web | grep -qx "HUTCH_REQUESTED_BY=$UID_"'
run asu "$HUTCH" instance start --systemd yes "$I" byroot
run "$HUTCH" instance stop --user "$U" byroot
check "root's instance stop --user: the stop entry says root asked (HUTCH_REQUESTED_BY=0)" \
	'[ $RC -eq 0 ] && wait_for "entry stop byroot | grep -q ^HUTCH_EXIT_STATUS=" && entry stop byroot | grep -qx HUTCH_REQUESTED_BY=0'
check "... both with the image's digest (sha256 of its squashfs partition)" \
	'entry start web | grep -qx "HUTCH_IMAGE_DIGEST=sha256:[0-9a-f]\{64\}" && [ "$(entry start web | grep ^HUTCH_IMAGE_DIGEST=)" = "$(entry stop web | grep ^HUTCH_IMAGE_DIGEST=)" ]'
run asu "$HUTCH" instance start --systemd yes "$I" db-1
check "a NAME with '-' maps to an escaped unit name" '[ $RC -eq 0 ] && [ "$(sctl is-active "hutch-db\\x2d1.service")" = active ]'
sctl stop "hutch-db\\x2d1.service"
run asu "$HUTCH" instance list
check "systemctl --user stop: the instance is gone and hutch's state agrees at once" \
	'[ "$(grep -c . "$OUT")" -eq 1 ] && ! pgrep -u $UID_ -x hutch-init'
check "... its stop entry names the manager's uid (kill(2)'s sender, the kernel's word)" \
	'wait_for "entry stop db-1 | grep -q ^HUTCH_EXIT_STATUS=" && entry stop db-1 | grep -qx "HUTCH_REQUESTED_BY=$UID_"'

run asu "$HUTCH" instance start --systemd yes "$T/nonexistent.sif" bad
check "a failing start through the manager: one line, the supervisor's reason" 'fails_with "nonexistent.sif"'
check "... and no unit is left" '! sctl is-failed hutch-bad.service >/dev/null 2>&1 && [ -z "$(sctl list-units --all --no-legend "hutch-bad*")" ]'

run asu env XDG_RUNTIME_DIR="$T/none" "$HUTCH" instance start --systemd yes "$I" nomgr
check "--systemd yes without a manager: one line saying so" 'fails_with "no systemd user manager is reachable"'
run asu env XDG_RUNTIME_DIR="$T/none" "$HUTCH" instance start --systemd auto "$I" fallback
check "--systemd auto without a manager: hutch's own supervisor" '[ $RC -eq 0 ]'
run asu env XDG_RUNTIME_DIR="$T/none" "$HUTCH" instance list
check "... listed with keeper hutch" 'out_has "^fallback .* hutch  *0$"'
asu env XDG_RUNTIME_DIR="$T/none" "$HUTCH" instance stop fallback >/dev/null 2>&1
run asu env SLURM_JOB_ID=77 HUTCH_TEST_PORT=18391 "$HUTCH" instance start --no-tie-to-job "$I" injob
check "--systemd auto inside a batch job: hutch's own supervisor, so the job keeps its processes" \
	'[ $RC -eq 0 ] && asu "$HUTCH" instance list | grep "^injob " | grep -q " hutch " && [ -z "$(sctl list-units --no-legend "hutch-injob*")" ]'
asu "$HUTCH" instance stop injob >/dev/null 2>&1
run asu "$HUTCH" instance start --systemd maybe "$I" x
check "--systemd takes auto, yes or no" 'fails_with "auto, yes or no"'

# --- --ready under the unit: the manager hears READY=1 once the service answers
S=$T/slowsd
cp -a "$IMAGES/rootfs" "$S" && printf '#!/bin/sh\nsleep 2; exec httpd -f -p 18581 -h /srv/www\n' >"$S/.singularity.d/startscript"
asu "$HUTCH" instance start --systemd yes --ready tcp:18581 "$S" rdy >"$T/rdy.log" 2>&1 &
RDY=$!
wait_for "[ \"\$(sctl is-active hutch-rdy.service)\" = activating ]" 20
check "--ready under systemd: the unit is still activating while the service is not ready" \
	'[ "$(sctl is-active hutch-rdy.service)" = activating ]'
wait "$RDY"
RC=$?
check "... start returns 0 once it is, the unit active and the service answering" \
	'[ $RC -eq 0 ] && [ "$(sctl is-active hutch-rdy.service)" = active ] && http_get 18581 | grep -q hello'
asu "$HUTCH" instance stop rdy >/dev/null 2>&1
run asu "$HUTCH" instance start --systemd yes --ready tcp:18582 --ready-timeout 1 "$Q" rdyno
check "--ready under systemd, never ready: the start fails naming why, no unit left" \
	'[ $RC -eq 255 ] && tail -n 1 "$ERR" | grep -q "nothing accepted connections on port 18582 within 1 s" && wait_for "[ -z \"\$(sctl list-units --all --no-legend \"hutch-rdyno*\")\" ]"'

# --- crashes and restarts under the unit
run asu "$HUTCH" instance start --systemd yes --restart on-failure:1 "$I" phoenix
hp=$(pgrep -u "$UID_" -x httpd | head -1)
kill -9 "$hp"
check "kill -9 of the payload: --restart on-failure brings it back inside the unit" \
	'wait_for "asu \"$HUTCH\" instance list | grep -q \"^phoenix .* systemd  *1\$\"" && [ "$(sctl is-active hutch-phoenix.service)" = active ]'
hp=$(pgrep -u "$UID_" -x httpd | head -1)
kill -9 "$hp"
check "... the restart and the unexpected exits are in the audit trail" \
	'wait_for "entry restart phoenix | grep -q HUTCH_RESTARTS=1" && entry exit phoenix | grep -q "^HUTCH_EXIT_STATUS=137"'
check "... and gives up after N: the unit ends, nothing is listed" \
	'wait_for "[ \"\$(sctl is-active hutch-phoenix.service)\" != active ]" && ! asu "$HUTCH" instance list | grep -q ^phoenix'
run asu "$HUTCH" instance start --systemd yes "$I" victim
sup=$(sctl show -P MainPID hutch-victim.service)
kill -9 "$sup"
check "kill -9 of the supervisor: the unit is no longer active, the instance not listed, nothing left" \
	'wait_for "[ \"\$(sctl is-active hutch-victim.service)\" != active ]" && ! asu "$HUTCH" instance list 2>/dev/null | grep -q ^victim && wait_for "! pgrep -u $UID_ -x hutch-init"'

# --- a unit file that survives the manager (and a reboot)
run asu "$HUTCH" instance unit --install --restart on-failure "$Q" svc
check "instance unit --install writes and enables hutch-svc.service" \
	'[ $RC -eq 0 ] && [ -f "$UHOME/.config/systemd/user/hutch-svc.service" ] && [ "$(sctl is-enabled hutch-svc.service)" = enabled ]'
sctl start hutch-svc.service
check "... systemctl --user start runs the instance" 'asu "$HUTCH" instance list | grep -q "^svc .* systemd "'
stop_manager
asu $SD --user </dev/null >>"$T/manager.log" 2>&1 &
MGR=$!
check "... and after the manager restarts, the instance is up again (WantedBy=default.target)" \
	'wait_for "asu \"$HUTCH\" instance list 2>/dev/null | grep -q \"^svc .* systemd \"" 100'
sctl disable --now hutch-svc.service >/dev/null 2>&1
rm -f "$UHOME/.config/systemd/user/hutch-svc.service"

# --- 48 starts at once through the manager (Apptainer's #3607: D-Bus failures at 24-48):
# every one comes up, none fails silently
pids=()
for i in $(seq 48); do
	asu "$HUTCH" instance start --systemd yes "$Q" "par$i" >"$T/par$i.log" 2>&1 &
	pids+=($!)
done
fails=0
for p in "${pids[@]}"; do wait "$p" || fails=$((fails + 1)); done
listed=$(asu "$HUTCH" instance list | grep -c "^par[0-9]* .* systemd ")
active=$(sctl list-units --no-legend --state=active "hutch-par*" | wc -l)
check "48 parallel starts through the manager: 48 succeed, 48 listed, 48 active units ($fails failed, $listed, $active)" \
	'[ $fails -eq 0 ] && [ $listed -eq 48 ] && [ $active -eq 48 ]'
[ $fails -eq 0 ] || grep -h error "$T"/par*.log | sort | uniq -c | sed 's/^/#   /' | head -5
run asu "$HUTCH" instance stop --all
check "... and stop --all stops them all" '[ $RC -eq 0 ] && [ -z "$(sctl list-units --no-legend "hutch-par*")" ]'

# --- a unit written by hand: Type=forking around instance start --pid-file
mkdir -p "$UHOME/.config/systemd/user"
cat > "$UHOME/.config/systemd/user/forked.service" <<EOF
[Service]
Type=forking
PIDFile=%t/forked.pid
ExecStart=$HUTCH instance start --pid-file %t/forked.pid $Q forked
ExecStop=$HUTCH instance stop forked
EOF
chown -R "$U" "$UHOME/.config"
sctl daemon-reload
sctl start forked.service
check "Type=forking + PIDFile= around instance start --pid-file: active, its main process the instance's pid (as Apptainer writes it)" \
	'[ "$(sctl is-active forked.service)" = active ] && [ "$(cat /proc/$(sctl show -P MainPID forked.service)/comm)" = hutch-init ] && [ "$(sctl show -P MainPID forked.service)" = "$(asu "$HUTCH" instance list --json forked | sed -n "s/.*\"pid\": \([0-9]*\).*/\1/p" | head -1)" ]'
sctl stop forked.service
check "... systemctl --user stop ends the instance" '! asu "$HUTCH" instance list | grep -q ^forked && ! pgrep -u $UID_ -x hutch-init'
rm -f "$UHOME/.config/systemd/user/forked.service"
run asu "$HUTCH" instance start --pid-file /proc/nope/pid "$I" nopid
check "--pid-file that cannot be written: one line, and the instance is not left running" \
	'fails_with "cannot write the pid file" && ! asu "$HUTCH" instance list | grep -q ^nopid && wait_for "! pgrep -u $UID_ -x hutch-init"'
run asu "$HUTCH" instance start --pid-file "$T/p" --systemd yes "$I" x
check "--pid-file with --systemd yes is refused" '[ $RC -eq 255 ] && err_has "not with --systemd yes"'

teardown
