# Instances kept by a real systemd user manager (instance start --systemd): a `systemd --user`
# of the test user, started here in a private mount and cgroup namespace (tmpfs on
# /run/systemd with /run/systemd/system, a cgroup2 subtree beneath ours chowned to the user
# and mounted as the namespace's /sys/fs/cgroup, XDG_RUNTIME_DIR on a tmpfs of the user's).
# Root mode only: a user cannot make that namespace.
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
mount -t tmpfs tmpfs /run/systemd && mkdir /run/systemd/system
mkdir -p /run/user && mount -t tmpfs -o mode=0755 tmpfs /run/user && install -d -o "$U" -g "$U" -m 0700 "/run/user/$UID_"
RT=/run/user/$UID_
asu() { setpriv --reuid="$U" --regid="$U" --init-groups env -i HOME="$UHOME" XDG_RUNTIME_DIR="$RT" PATH="$PATH" HUTCH_TEST_PORT=18580 "$@"; }
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
check "... both with the image's digest (sha256 of its squashfs partition)" \
	'entry start web | grep -qx "HUTCH_IMAGE_DIGEST=sha256:[0-9a-f]\{64\}" && [ "$(entry start web | grep ^HUTCH_IMAGE_DIGEST=)" = "$(entry stop web | grep ^HUTCH_IMAGE_DIGEST=)" ]'
run asu "$HUTCH" instance start --systemd yes "$I" db-1
check "a NAME with '-' maps to an escaped unit name" '[ $RC -eq 0 ] && [ "$(sctl is-active "hutch-db\\x2d1.service")" = active ]'
sctl stop "hutch-db\\x2d1.service"
run asu "$HUTCH" instance list
check "systemctl --user stop: the instance is gone and hutch's state agrees at once" \
	'[ "$(grep -c . "$OUT")" -eq 1 ] && ! pgrep -u $UID_ -x hutch-init'

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
check "Type=forking + PIDFile= around instance start --pid-file: active, its main process the supervisor" \
	'[ "$(sctl is-active forked.service)" = active ] && [ "$(cat /proc/$(sctl show -P MainPID forked.service)/comm)" = hutch-supervise ]'
sctl stop forked.service
check "... systemctl --user stop ends the instance" '! asu "$HUTCH" instance list | grep -q ^forked && ! pgrep -u $UID_ -x hutch-init'
rm -f "$UHOME/.config/systemd/user/forked.service"
run asu "$HUTCH" instance start --pid-file /proc/nope/pid "$I" nopid
check "--pid-file that cannot be written: one line, and the instance is not left running" \
	'fails_with "cannot write the pid file" && ! asu "$HUTCH" instance list | grep -q ^nopid && wait_for "! pgrep -u $UID_ -x hutch-init"'
run asu "$HUTCH" instance start --pid-file "$T/p" --systemd yes "$I" x
check "--pid-file with --systemd yes is refused" '[ $RC -eq 255 ] && err_has "not with --systemd yes"'

stop_manager
kill $JRN
trap 'rm -rf "$T"' EXIT
check "after the manager stops, nothing of the user's is left" 'wait_for "! pgrep -u $UID_ >/dev/null"'
