# cgroup limits on this host's real hierarchy (v1 controllers, or v2 where delegated):
# OOM kill reported, a fork bomb stopped by --pids-limit, --cpus 0.5 near 50 % of a CPU,
# joined processes inside the instance's cgroup, nothing left in the cgroup tree. As a user
# without delegation: refused with a message that says what is missing.
. "$(dirname "$0")/lib.sh"
trap '"$HUTCH" instance stop --all --force >/dev/null 2>&1; rm -rf "$T"' EXIT
R=$IMAGES/rootfs
cgroups_of_hutch() { find /sys/fs/cgroup -maxdepth 4 -type d -name 'hutch-*' 2>/dev/null; }
before=$(cgroups_of_hutch | wc -l)

if [ "$MODE" = user ]; then
	run "$HUTCH" exec --memory 32M "$R" true
	check "rootless limits without a delegated cgroup fail and say what is missing" 'fails_with "not delegated" && err_has "cgroup"'
	run "$HUTCH" instance start --memory 32M "$R" lim
	check "... also for an instance, which is not started" '[ $RC -eq 255 ] && err_has "not delegated" && [ -z "$(state_dirs)" ]'
	run "$HUTCH" exec "$R" true
	check "without limits nothing touches cgroups" '[ $RC -eq 0 ]'
	leftovers "rootless limits"
	finish
fi

run "$HUTCH" exec --memory 32M "$R" sh -c 'head -c 200000000 /dev/zero | tail >/dev/null'
check "a memory hog above --memory 32M is OOM-killed and hutch reports it" '[ $RC -eq 137 ] && err_has "OOM killer" && err_has "32 MiB"'
run "$HUTCH" exec --memory 32M "$R" sh -c 'head -c 1000000 /dev/zero | tail >/dev/null; echo fine'
check "a payload under its memory limit runs normally" 'out_is fine && [ $RC -eq 0 ] && ! err_has OOM'
run "$HUTCH" exec --pid --pids-limit 10 "$R" sh -c '(i=0; while [ $i -lt 40 ]; do sleep 3 & i=$((i+1)); done) 2>/dev/null; set -- /proc/[0-9]*; echo $#'
check "--pids-limit 10 stops a fork bomb at 10 processes" '[ "$(cat "$OUT")" -le 10 ] && [ "$(cat "$OUT")" -ge 8 ]'
run "$HUTCH" exec --cpus 0.5 "$R" sh -c '
	cg=$(awk -F: "\$2 ~ /cpuacct/ {print \$3}" /proc/self/cgroup)
	t0=$(cat /sys/fs/cgroup/cpuacct$cg/cpuacct.usage 2>/dev/null || echo 0)
	timeout 2 sh -c "while :; do :; done"
	t1=$(cat /sys/fs/cgroup/cpuacct$cg/cpuacct.usage 2>/dev/null || echo 0)
	echo $(( (t1 - t0) / 20000000 ))'
check "--cpus 0.5 holds a busy loop near 50 % of one CPU (measured $(cat "$OUT") %)" '[ "$(cat "$OUT")" -ge 30 ] && [ "$(cat "$OUT")" -le 65 ]'
printf '[memory]\n  limit = 33554432\n[pids]\n  limit = 20\n' > "$T/c.toml"
run "$HUTCH" exec --apply-cgroups "$T/c.toml" "$R" sh -c 'cat /sys/fs/cgroup/pids$(awk -F: "\$2==\"pids\"{print \$3}" /proc/self/cgroup)/pids.max'
check "--apply-cgroups reads Apptainer's cgroups TOML" 'out_is 20'
printf '[memory]\n  limit = "lots"\n' > "$T/bad.toml"
run "$HUTCH" exec --apply-cgroups "$T/bad.toml" "$R" true
check "a bad cgroups TOML fails with file:line" 'fails_with "bad.toml:2"'
run "$HUTCH" exec --memory lots "$R" true
check "a bad size fails" 'fails_with "512M"'
printf 'max memory = 64M\n' > "$T/max.conf"
HUTCH_CONF=$T/max.conf run "$HUTCH" exec --memory 1G "$R" sh -c 'cat /sys/fs/cgroup/memory$(awk -F: "\$2==\"memory\"{print \$3}" /proc/self/cgroup)/memory.limit_in_bytes'
check "an admin maximum in hutch.conf wins over the flag, with a warning" 'out_is 67108864 && err_has "maximum"'
printf 'default pids limit = 33\n' > "$T/def.conf"
HUTCH_CONF=$T/def.conf run "$HUTCH" exec "$R" sh -c 'cat /sys/fs/cgroup/pids$(awk -F: "\$2==\"pids\"{print \$3}" /proc/self/cgroup)/pids.max'
check "a default in hutch.conf applies when no flag is given" 'out_is 33'
check "no cgroup is left after the batch runs" '[ "$(cgroups_of_hutch | wc -l)" -eq "$before" ]'

run "$HUTCH" instance start --memory 64M --pids-limit 50 "$IMAGES/image.sif" lim
check "an instance starts with limits" '[ $RC -eq 0 ]'
run "$HUTCH" exec instance://lim cat /proc/self/cgroup
check "exec instance:// joins the instance's cgroup" 'out_has "hutch-$(id -u)-lim"'
run "$HUTCH" instance stats --no-stream lim
check "instance stats shows CPU, memory usage/limit, pids and block I/O" 'out_has "^lim " && out_has "64.0MiB" && out_has "CPU %"'
run "$HUTCH" instance stats --json --no-stream lim
check "instance stats --json" 'out_has "\"memory_limit\": 67108864"'
run "$HUTCH" instance stop lim
check "stop removes the instance's cgroup" '[ $RC -eq 0 ] && [ "$(cgroups_of_hutch | wc -l)" -eq "$before" ]'
leftovers "cgroups"
finish
