# Faults: kill -9 of one of an instance's processes (CLI, launcher, supervisor, image
# server and its monitor, init) at a random moment of `instance start` or `instance stop`,
# in a bounded loop; after each, `instance list` lists only what runs, and what the next
# commands (list, stop --force) leave is nothing. Then a full disk (a tiny tmpfs as HOME and
# as XDG_RUNTIME_DIR) under an instance's state and logs: one clear error, and the instance
# already there keeps its state. The script runs as root (run.sh: the tmpfs is mounted in a
# private mount namespace) and runs hutch as TEST_USER.
# FAULT_RUNS (default 16) runs; FAULT_SEED fixes the random choices (printed) to replay one.
if [ -z "${FAULT_NS:-}" ]; then
	[ "$(id -u)" -eq 0 ] || { echo "ok - # SKIP t-faults needs root to mount a tiny tmpfs"; exit 0; }
	exec env FAULT_NS=1 unshare -m --propagation private bash "$0" "$@"
fi
. "$(dirname "$0")/lib.sh"
TU=${TEST_USER:-root}
TUID=$(id -u "$TU")
THOME=$(getent passwd "$TU" | cut -d: -f6)
chmod 0755 "$T"
u() { if [ "$TU" = root ]; then env HOME="$THOME" "$@"; else runuser -u "$TU" -- env HOME="$THOME" "$@"; fi; }
hutch_procs() {
	local p
	for p in hutch-squashfs hutch-sqfs-mon hutch-init hutch-supervise hutch-launch; do pgrep -a -u "$TUID" -x $p; done
}
state_dirs() { ls -d "$THOME"/.hutch/instances/*/* "$T"/full/*/.hutch/instances/*/* "/run/user/$TUID"/hutch/instances/* 2>/dev/null; }
trap 'u "$HUTCH" instance stop --all --force >/dev/null 2>&1; umount -l "$T/full" 2>/dev/null; rm -rf "$T"' EXIT
I=$IMAGES/image.sif
runs=${FAULT_RUNS:-16}
seed=${FAULT_SEED:-$$}
RANDOM=$seed
echo "# fault loop: $runs runs, FAULT_SEED=$seed"
victims=(hutch-launch hutch-supervise hutch-squashfs hutch-sqfs-mon hutch-init)
bad=0 badlist=0 killed=0
for i in $(seq "$runs"); do
	phase=start ms=$((RANDOM % 250))
	[ $((RANDOM % 3)) -eq 0 ] && phase=stop ms=$((RANDOM % 60))
	if [ $phase = stop ]; then
		u "$HUTCH" instance start "$I" fault >/dev/null 2>&1 || echo "# run $i: the start before a stop failed"
		u "$HUTCH" instance stop fault >/dev/null 2>&1 &
	else
		u "$HUTCH" instance start "$I" fault >/dev/null 2>&1 &
	fi
	cli=$!
	sleep "$(printf '0.%03d' "$ms")"
	# the victim: one of the processes there are at that moment, at random
	cands=()
	# the CLI is the one named plain "hutch" (the launcher and supervisor rename themselves)
	for p in $(pgrep -u "$TUID" -x hutch); do cands+=("$p:cli"); done
	for n in "${victims[@]}"; do
		for p in $(pgrep -u "$TUID" -x "$n"); do cands+=("$p:$n"); done
	done
	v=none
	if [ ${#cands[@]} -gt 0 ]; then
		pick=${cands[RANDOM % ${#cands[@]}]}
		v=${pick#*:}
		kill -9 "${pick%%:*}" 2>/dev/null && killed=$((killed + 1))
	fi
	echo "# run $i: $phase, kill -9 $v after $ms ms"
	wait "$cli" 2>/dev/null
	# once the dust settles: whatever is listed runs (its PID 1 lives) ...
	sleep 0.1
	u "$HUTCH" instance list --json >"$T/list" 2>"$T/list.err"
	for p in $(sed -n 's/.*"pid": \([0-9]*\).*/\1/p' "$T/list"); do
		[ -d "/proc/$p" ] || { badlist=$((badlist + 1)); echo "# run $i ($phase, $v after $ms ms): listed pid $p does not run"; }
	done
	# ... and after a stop of what is listed, nothing is left
	grep -q '"instance": "fault"' "$T/list" && u "$HUTCH" instance stop --force fault >/dev/null 2>&1
	if ! no_leftovers; then
		bad=$((bad + 1))
		echo "# run $i ($phase, kill -9 $v after $ms ms): left behind:"
		{ hutch_procs; state_dirs; } | sed 's/^/#   /'
		u "$HUTCH" instance stop --all --force >/dev/null 2>&1
		for p in $(hutch_procs | cut -d' ' -f1); do kill -9 "$p"; done
	fi
done
echo "# $killed of $runs runs killed a process"
check "fault loop ($runs runs, FAULT_SEED=$seed): instance list lists only instances that run" '[ $badlist -eq 0 ]'
check "fault loop ($runs runs, FAULT_SEED=$seed): list and stop --force leave nothing, whatever was killed" '[ $bad -eq 0 ]'

# a full disk: HOME (state and logs) on a tmpfs of 2 MiB, an instance already there
mkdir -p "$T/full"
mount -t tmpfs -o size=2m,mode=0755 tmpfs "$T/full"
mkdir -p "$T/full/home" "$T/full/xdg"
chown "$TU" "$T/full/home" "$T/full/xdg"
chmod 0700 "$T/full/xdg"
full() { u env HOME="$T/full/home" "$@"; }
run full env HUTCH_TEST_PORT=$((HUTCH_TEST_PORT + 1)) "$HUTCH" instance start "$I" there
check "full disk: an instance starts while there is room" '[ $RC -eq 0 ]'
# fill what is left
dd if=/dev/zero of="$T/full/filler" bs=64k 2>/dev/null
run full env HUTCH_TEST_PORT=$((HUTCH_TEST_PORT + 2)) "$HUTCH" instance start "$I" more
check "full disk: another start fails with one clear line" \
	'[ $RC -ne 0 ] && [ "$(grep -c . "$ERR")" -eq 1 ] && err_has "No space left on device"'
run full "$HUTCH" instance list
check "full disk: the instance already there is still listed, and answers" \
	'out_has "^there " && ! out_has "^more " && http_get $((HUTCH_TEST_PORT + 1)) | grep -q hello'
run full "$HUTCH" instance stop there
check "full disk: it stops" '[ $RC -eq 0 ]'
rm -f "$T/full/filler"
run full "$HUTCH" instance list
check "full disk: nothing listed after" '! out_has "there\|more"'
# XDG_RUNTIME_DIR full: the decompressed-file cache goes there, and a start does without it
dd if=/dev/zero of="$T/full/filler" bs=64k 2>/dev/null
run u env XDG_RUNTIME_DIR="$T/full/xdg" HUTCH_TEST_PORT=$((HUTCH_TEST_PORT + 2)) "$HUTCH" instance start "$I" more
check "full XDG_RUNTIME_DIR: an instance starts and answers all the same" \
	'[ $RC -eq 0 ] && wait_for "http_get $((HUTCH_TEST_PORT + 2)) | grep -q hello"'
u env XDG_RUNTIME_DIR="$T/full/xdg" "$HUTCH" instance stop more >/dev/null 2>&1
umount "$T/full"
leftovers "full disk"
finish
