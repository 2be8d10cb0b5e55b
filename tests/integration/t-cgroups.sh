# cgroup limits on the real hierarchy: this host's v1 controllers (hybrid), and in the VM tier
# (tests/vm/) a cgroup2-only kernel with every controller, as root and as a user with a
# delegated subtree (CGROUP_PARENT). OOM kill reported, a fork bomb stopped by --pids-limit,
# --cpus 0.5 near 50 % of a CPU, the files each flag writes, joined processes inside the
# instance's cgroup, nothing left in the cgroup tree. As a user without delegation: refused
# with a message that says what is missing.
. "$(dirname "$0")/lib.sh"
trap '"$HUTCH" instance stop --all --force >/dev/null 2>&1; rm -rf "$T"' EXIT
R=$IMAGES/rootfs
cgroups_of_hutch() { find /sys/fs/cgroup -maxdepth 4 -type d -name 'hutch-*' 2>/dev/null; }
before=$(cgroups_of_hutch | wc -l)
# the hierarchy hutch uses: v1 where the memory controller sits on v1, else v2
if awk -F: '$2 ~ /(^|,)memory(,|$)/ {f=1} END {exit !f}' /proc/self/cgroup; then V=1; else V=2; fi
echo "cgroup v$V"

if [ "$MODE" = user ] && [ -z "${CGROUP_PARENT:-}" ]; then
	run "$HUTCH" exec --memory 32M "$R" true
	check "rootless limits without a delegated cgroup fail and say what is missing" 'fails_with "not delegated" && err_has "cgroup"'
	run "$HUTCH" instance start --memory 32M "$R" lim
	check "... also for an instance, which is not started" '[ $RC -eq 255 ] && err_has "not delegated" && [ -z "$(state_dirs)" ]'
	run "$HUTCH" exec "$R" true
	check "without limits nothing touches cgroups" '[ $RC -eq 0 ]'
	run "$HUTCH" instance start "$IMAGES/image.sif" nocg
	run "$HUTCH" instance stats --no-stream nocg
	check "instance stats without a cgroup says why and what to do" 'fails_with "no cgroup to read usage from" && err_has "--cgroup-parent"'
	"$HUTCH" instance stop nocg >/dev/null 2>&1
	leftovers "rootless limits"
	finish
fi

# cg FILE: a file of the payload's own cgroup, in whichever hierarchy holds it; cg usage: CPU
# time in ns (run inside the container, which sees the host's /sys/fs/cgroup)
cat > "$T/cg" <<'CG'
#!/bin/sh
f=$1
[ "$f" = usage ] && f=cpu.stat && [ -d /sys/fs/cgroup/cpuacct ] && f=cpuacct.usage
c=${f%%.*}
p=$(awk -F: -v c="$c" '{n = split($2, a, ","); for (i = 1; i <= n; i++) if (a[i] == c) print $3}' /proc/self/cgroup)
if [ -n "$p" ]; then d=/sys/fs/cgroup/$c$p; else d=/sys/fs/cgroup$(awk -F: '$1 == 0 {print $3}' /proc/self/cgroup); fi
case $1 in
usage) [ $f = cpu.stat ] && echo $(($(awk '$1 == "usage_usec" {print $2}' "$d/$f") * 1000)) || cat "$d/$f" ;;
*) cat "$d/$f" ;;
esac
CG
chmod 0755 "$T/cg"
CG=$T/cg
if [ $V = 1 ]; then MEMMAX=memory.limit_in_bytes; else MEMMAX=memory.max; fi

if [ -n "${CGROUP_PARENT:-}" ]; then
	# a user in a delegated v2 subtree: its own cgroup holds its processes, so beneath it no
	# controller can be enabled; with the subtree's top named as the parent, all works
	HUTCH_CONF=/dev/null run "$HUTCH" exec --memory 32M "$R" true
	check "as a user in a populated cgroup, limits fail and name the way out" 'fails_with "--cgroup-parent"'
	run "$HUTCH" exec --cgroup-parent "$CGROUP_PARENT" --pids-limit 12 "$R" "$CG" pids.max
	check "--cgroup-parent puts the cgroup in the delegated subtree" 'out_is 12'
	printf 'cgroup parent = %s\n' "$CGROUP_PARENT" > "$T/parent.conf"
	export HUTCH_CONF=$T/parent.conf
fi
conf() { { cat "${HUTCH_CONF:-/dev/null}"; printf '%s\n' "$@"; } > "$T/test.conf"; }

run "$HUTCH" exec --memory 32M "$R" sh -c 'head -c 200000000 /dev/zero | tail >/dev/null'
check "a memory hog above --memory 32M is OOM-killed and hutch reports it" '[ $RC -eq 137 ] && err_has "OOM killer" && err_has "32 MiB"'
run "$HUTCH" exec --memory 32M "$R" sh -c 'head -c 1000000 /dev/zero | tail >/dev/null; echo fine'
check "a payload under its memory limit runs normally" 'out_is fine && [ $RC -eq 0 ] && ! err_has OOM'
# the container's processes are in its cgroup, the FUSE servers it reads through are not
# (the image server; a user's ext3 overlay's hutch-ext3): a payload at its
# memory limit cannot starve them, which stalled such a container for minutes
cgline() { grep -E '^[0-9]+:([^:]*,)?memory(,[^:]*)?:' "$1" || grep '^0::' "$1"; }
ov=()
if [ "$MODE" = user ] && [ -x /usr/sbin/e2fsck ]; then
	"$HUTCH" overlay create --size 64 "$T/ov.img" >/dev/null 2>&1
	ov=(--overlay "$T/ov.img")
fi
"$HUTCH" exec --memory 64M ${ov[@]+"${ov[@]}"} "$IMAGES/image.sif" sh -c "cat /proc/self/cgroup > $T/incg.tmp; mv $T/incg.tmp $T/incg; sleep 2" >/dev/null 2>&1 &
bg=$!
wait_for '[ -s "$T/incg" ]' 100
srv=$(for p in $(pgrep -u "$(id -u)" -x 'hutch-squashfs|hutch-ext3'); do cgline /proc/$p/cgroup; done)
nsrv=$(pgrep -c -u "$(id -u)" -x 'hutch-squashfs|hutch-ext3')
wait $bg
check "the FUSE servers ($nsrv) run outside the container's cgroup" \
	'[ "$nsrv" -ge $((1 + ${#ov[@]} / 2)) ] && [ -n "$(cgline "$T/incg")" ] && ! echo "$srv" | grep -qxF "$(cgline "$T/incg")"'
# limits with a user's writable ext3 overlay: a hog OOM-killed there is reported, the
# overlay keeps what was written before and stays clean, and it mounts again
if [ "$MODE" = user ] && [ -x /usr/sbin/e2fsck ]; then
	run "$HUTCH" exec --memory 32M --overlay "$T/ov.img" "$R" sh -c 'echo kept > /kept; sync; head -c 200000000 /dev/zero | tail >/dev/null'
	check "a memory hog OOM-killed in a container with a user's ext3 overlay is reported, the image stays clean (e2fsck -fn)" \
		'[ $RC -eq 137 ] && err_has "OOM killer" && /usr/sbin/e2fsck -fn "$T/ov.img" >"$T/fsck.out" 2>&1'
	run "$HUTCH" exec --memory 32M --overlay "$T/ov.img" "$R" cat /kept
	check "... and keeps what was written before the kill" '[ $RC -eq 0 ] && out_is kept'
fi
run "$HUTCH" exec --pid --pids-limit 10 "$R" sh -c '(i=0; while [ $i -lt 40 ]; do sleep 3 & i=$((i+1)); done) 2>/dev/null; set -- /proc/[0-9]*; echo $#'
check "--pids-limit 10 stops a fork bomb at 10 processes" '[ "$(cat "$OUT")" -le 10 ] && [ "$(cat "$OUT")" -ge 8 ]'
# CPU time over the time that really passed (/proc/uptime, in 1/100 s): under emulation the
# VM tier's 2 s are not always 2 s
run "$HUTCH" exec --cpus 0.5 "$R" sh -c "
	t0=\$($CG usage) w0=\$(tr -d . < /proc/uptime | cut -d' ' -f1)
	timeout 2 sh -c 'while :; do :; done'
	t1=\$($CG usage) w1=\$(tr -d . < /proc/uptime | cut -d' ' -f1)
	echo \$(( (t1 - t0) / ((w1 - w0) * 100000) ))"
check "--cpus 0.5 holds a busy loop near 50 % of one CPU (measured $(cat "$OUT") %)" '[ "$(cat "$OUT")" -ge 30 ] && [ "$(cat "$OUT")" -le 65 ]'
if [ $V = 2 ]; then
	run "$HUTCH" exec --cpus 1.5 --cpu-shares 512 --cpuset-cpus 0 --memory 64M --memory-swap 128M \
		--memory-reservation 32M --pids-limit 77 "$R" sh -c "for f in cpu.max cpu.weight cpuset.cpus memory.max memory.swap.max memory.low pids.max; do echo \$f=\$($CG \$f); done"
	check "each flag writes its cgroup v2 file (OCI's conversions)" 'out_has "^cpu.max=150000 100000$" && out_has "^cpu.weight=20$" &&
		out_has "^cpuset.cpus=0$" && out_has "^memory.max=67108864$" && out_has "^memory.swap.max=67108864$" &&
		out_has "^memory.low=33554432$" && out_has "^pids.max=77$"'
	run "$HUTCH" exec --blkio-weight 500 "$R" "$CG" io.weight
	check "--blkio-weight 500 becomes io.weight 4950 where the kernel has io.weight, else a clear error" \
		'{ [ $RC -eq 0 ] && out_has "default 4950"; } || fails_with "io.weight"'
	run "$HUTCH" exec --oom-kill-disable "$R" true
	check "--oom-kill-disable on cgroup v2 is an error, not a silently dropped limit" 'fails_with "no cgroup v2 equivalent"'
fi
printf '[memory]\n  limit = 33554432\n[pids]\n  limit = 20\n' > "$T/c.toml"
run "$HUTCH" exec --apply-cgroups "$T/c.toml" "$R" "$CG" pids.max
check "--apply-cgroups reads Apptainer's cgroups TOML" 'out_is 20'
printf '[memory]\n  limit = "lots"\n' > "$T/bad.toml"
run "$HUTCH" exec --apply-cgroups "$T/bad.toml" "$R" true
check "a bad cgroups TOML fails with file:line" 'fails_with "bad.toml:2"'
run "$HUTCH" exec --memory lots "$R" true
check "a bad size fails" 'fails_with "512M"'
run "$HUTCH" exec --cgroup-parent relative/x --memory 32M "$R" true
check "a relative --cgroup-parent is refused" '[ $RC -eq 255 ] && err_has "cgroup-parent"'
if [ $V = 1 ] && [ -n "$(findmnt -n -t cgroup2 2>/dev/null)" ]; then
	run "$HUTCH" exec --cgroup-parent /no-such-parent --memory 32M "$R" true
	check "--cgroup-parent on a hybrid host says the controllers live in v1 there" 'fails_with "controllers live in cgroup v1"'
fi
run "$HUTCH" exec --cgroup-parent /a/../b --memory 32M "$R" true
check "a --cgroup-parent that climbs with .. is refused" '[ $RC -eq 255 ] && err_has "cgroup-parent"'
conf 'max memory = 64M'
HUTCH_CONF=$T/test.conf run "$HUTCH" exec --memory 1G "$R" "$CG" $MEMMAX
check "an admin maximum in hutch.conf wins over the flag, with a warning" 'out_is 67108864 && err_has "maximum"'
conf 'default pids limit = 33'
HUTCH_CONF=$T/test.conf run "$HUTCH" exec "$R" "$CG" pids.max
check "a default in hutch.conf applies when no flag is given" 'out_is 33'
check "no cgroup is left after the batch runs" '[ "$(cgroups_of_hutch | wc -l)" -eq "$before" ]'

run "$HUTCH" instance start --memory 64M --pids-limit 50 "$IMAGES/image.sif" lim
check "an instance starts with limits" '[ $RC -eq 0 ]'
# every process of the container starts in the instance's cgroup (its launcher is born there
# on cgroup v2, or moves itself in on v1), the supervisor never enters it
ipid=$("$HUTCH" instance list --json lim | sed -n 's/.*"pid": \([0-9]*\).*/\1/p' | head -1)
in_lim() { [ -n "$1" ] && grep -q -- "hutch-$(id -u)-lim-" "/proc/$1/cgroup"; }
check "the instance's init and its payload are in its cgroup, its supervisor is not" \
	'in_lim "$ipid" && in_lim "$(pgrep -P "$ipid" | head -1)" && ! in_lim "$(ps -o ppid= -p "$ipid" | tr -d " ")"'
run "$HUTCH" exec instance://lim cat /proc/self/cgroup
check "exec instance:// joins the instance's cgroup" 'out_has "hutch-$(id -u)-lim"'
run "$HUTCH" exec instance://lim sh -c 'head -c 200000000 /dev/zero | tail >/dev/null'
check "a command of an instance OOM-killed at the instance's limit: hutch says so" '[ $RC -eq 137 ] && err_has "OOM killer" && err_has "64 MiB"'
run "$HUTCH" exec instance://lim true
check "... and only then" '[ $RC -eq 0 ] && ! err_has OOM'
run "$HUTCH" instance stats --no-stream lim
check "instance stats shows CPU, memory usage/limit, pids and block I/O" 'out_has "^lim " && out_has "64.0MiB" && out_has "CPU %"'
run "$HUTCH" instance stats --json --no-stream lim
check "instance stats --json" 'out_has "\"memory_limit\": 67108864"'
run "$HUTCH" instance stop lim
check "stop removes the instance's cgroup" '[ $RC -eq 0 ] && [ "$(cgroups_of_hutch | wc -l)" -eq "$before" ]'

# --- cgroups of a hutch killed with SIGKILL: the next command that finds them removes them
cg_busy() { for d in $(cgroups_of_hutch); do [ -s "$d/cgroup.procs" ] && return 0; done; return 1; }
"$HUTCH" exec --memory 64M "$R" sleep 300 </dev/null >/dev/null 2>&1 &
bp=$!
check "a batch hutch with limits has its cgroup" 'wait_for "cgroups_of_hutch | grep -q -- -$bp\$"'
kill -9 "$bp"
wait "$bp" 2>/dev/null
wait_for '! cg_busy'
run "$HUTCH" exec --memory 32M "$R" true
check "kill -9 of a batch hutch with limits: the next one removes the cgroup left" '[ $RC -eq 0 ] && [ "$(cgroups_of_hutch | wc -l)" -eq "$before" ]'
run "$HUTCH" instance start --memory 64M "$IMAGES/image.sif" orphan
sup=$(pgrep -u "$(id -u)" -x hutch-supervise | head -1)
check "an instance's cgroup ends in its supervisor's pid" 'cgroups_of_hutch | grep -q -- "-$(id -u)-orphan-$sup\$"'
kill -9 "$sup"
wait_for '[ -z "$(pgrep -u $(id -u) -x hutch-init)" ] && ! cg_busy'
run "$HUTCH" instance list
check "kill -9 of a supervisor: the next list removes its state and its cgroup" '[ "$(cgroups_of_hutch | wc -l)" -eq "$before" ] && err_has "orphan.*no longer running"'
leftovers "cgroups"
finish
