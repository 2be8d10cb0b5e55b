# Input hutch reads before it starts anything: numbers, configuration and env files that
# are not what they claim, text that reaches the terminal, sources not supported yet.
. "$(dirname "$0")/lib.sh"
I=$IMAGES/image.sif
# a hang must fail the test, not the run
TO="timeout -k 2 20"

# Numbers: finite and in range, or refused.
for v in nan NaN inf -inf 1e999 0x1p1 1.5x -2 '' ' 2' 1e-999; do
	run $TO "$HUTCH" exec --cpus "$v" "$I" true
	check "--cpus '$v' is refused" 'fails_with "--cpus"'
done
for v in nan inf 0x10M 1e999G -1G 18446744073709551616; do
	run $TO "$HUTCH" exec --memory "$v" "$I" true
	check "--memory '$v' is refused" 'fails_with "--memory"'
done
run $TO "$HUTCH" exec --pids-limit 99999999999999999999 "$I" true
check "--pids-limit beyond 64 bits is refused" 'fails_with "--pids-limit"'
run $TO "$HUTCH" exec --cpu-shares 0x10 "$I" true
check "--cpu-shares in hex is refused" 'fails_with "--cpu-shares"'
for v in nan inf -1 1e999 0x10 5s; do
	run $TO "$HUTCH" instance stop --timeout "$v" nosuchinstance
	check "instance stop --timeout '$v' is refused at once" 'fails_with "--timeout"'
done
run $TO "$HUTCH" instance logs --tail 99999999999999999999 nosuchinstance
check "instance logs --tail beyond 64 bits is refused" 'fails_with "--tail"'
run $TO "$HUTCH" sif info 4294967297 "$I"
check "sif info with an id beyond 32 bits is no object (not object 1)" 'fails_with "no object"'
printf 'instance ready timeout = nan\nfile cache size = inf\n' > "$T/nan.conf"
run $TO env HUTCH_CONF="$T/nan.conf" "$HUTCH" exec "$I" true
check "hutch.conf: nan and inf numbers are ignored with a warning" '[ $RC -eq 0 ] && err_has "nan.conf:1" && err_has "nan.conf:2"'
for key in "max cpus" "default cpus"; do
	printf '%s = nan\n' "$key" > "$T/nancpus.conf"
	run $TO env HUTCH_CONF="$T/nancpus.conf" "$HUTCH" exec "$I" true
	check "hutch.conf: $key = nan is refused" 'fails_with "hutch.conf" && err_has "nan"'
done
leftovers "numbers"

# Files that are not regular files never hang hutch, and say what they are.
mkfifo "$T/fifo"
run $TO env HUTCH_CONF=/dev/zero "$HUTCH" exec "$I" true
check "HUTCH_CONF=/dev/zero fails at once" 'fails_with "/dev/zero" && err_has "not a regular file"'
run $TO env HUTCH_CONF="$T/fifo" "$HUTCH" exec "$I" true
check "HUTCH_CONF=a FIFO fails at once" 'fails_with "fifo" && err_has "not a regular file"'
run $TO env HUTCH_CONF="$T" "$HUTCH" exec "$I" true
check "HUTCH_CONF=a folder is an error, not ignored" 'fails_with "is a folder"'
head -c $((2 << 20)) /dev/zero | tr '\0' '#' > "$T/big.conf"
run $TO env HUTCH_CONF="$T/big.conf" "$HUTCH" exec "$I" true
check "HUTCH_CONF larger than the cap is refused" 'fails_with "big.conf" && err_has "larger than"'
run $TO "$HUTCH" exec --env-file "$T/fifo" "$I" true
check "--env-file FIFO fails at once" 'fails_with "fifo" && err_has "not a regular file"'
run $TO "$HUTCH" exec --env-file /dev/zero "$I" true
check "--env-file /dev/zero fails at once" 'fails_with "not a regular file"'
run $TO "$HUTCH" exec --env-file "$T" "$I" true
check "--env-file a folder says so" 'fails_with "is a folder"'
run $TO "$HUTCH" exec --apply-cgroups "$T/fifo" "$I" true
check "--apply-cgroups FIFO fails at once" 'fails_with "not a regular file"'
run $TO "$HUTCH" exec "$T/fifo" true
check "a FIFO as the image fails at once" 'fails_with "fifo"'
run $TO "$HUTCH" inspect "$T/fifo"
check "inspect of a FIFO fails at once" 'fails_with "fifo"'
run $TO "$HUTCH" sif list "$T/fifo"
check "sif list of a FIFO fails at once" 'fails_with "not a regular file"'
leftovers "non-regular files"

# Control bytes from files and names reach the terminal escaped.
printf 'GOOD=1\n\033]0;pwned\007BAD\n' > "$T/esc.env"
run $TO "$HUTCH" exec --env-file "$T/esc.env" "$I" true
check "env file error: control bytes escaped" 'fails_with "esc.env:2" && ! grep -q "$(printf "\033")" "$ERR" && err_has "\\\\x1b"'
printf 'mount home = yes\n\033[2Jkey = 1\nmount tmp = \033[31mred\n' > "$T/esc.conf"
run $TO env HUTCH_CONF="$T/esc.conf" "$HUTCH" exec "$I" true
check "hutch.conf warnings: control bytes escaped" '[ $RC -eq 0 ] && err_has "esc.conf:2" && ! grep -q "$(printf "\033")" "$ERR"'
run $TO "$HUTCH" exec "$T/$(printf 'no\033[31msuch')" true
check "an image path's control bytes are escaped in the error" 'fails_with "no\\\\x1b" && ! grep -q "$(printf "\033")" "$ERR"'
leftovers "escaped output"

# Another user's /dev/shm/hutch-UID: named, not "Operation not permitted".
if [ "$(id -u)" -eq 0 ] && [ ! -e /dev/shm/hutch-65534 ] && command -v setpriv >/dev/null; then
	trap 'rm -rf "$T" /dev/shm/hutch-65534' EXIT
	mkdir -m 0755 /dev/shm/hutch-65534 /dev/shm/hutch-65534/cache
	chmod -R a+rX "$T" "$(dirname "$HUTCH")"
	for cmd in list clean; do
		run setpriv --reuid=65534 --regid=65534 --clear-groups env -u XDG_RUNTIME_DIR HOME=/ "$HUTCH" cache $cmd
		check "cache $cmd facing another user's /dev/shm/hutch-UID names its owner" 'fails_with "/dev/shm/hutch-65534" && err_has "owned by root" && ! err_has "not permitted"'
	done
	rm -rf /dev/shm/hutch-65534
fi

# Sources that are not supported yet say so.
for src in library://alpine shub://x/y; do
	run $TO "$HUTCH" exec "$src" true
	check "exec $src: not supported yet" 'fails_with "not supported yet"'
	run $TO "$HUTCH" build "$T/out.sif" "$src"
	check "build from $src: not supported yet" 'fails_with "not supported yet" && [ ! -e "$T/out.sif" ]'
done
# A registry that does not answer: one line, nothing made
for src in docker://127.0.0.1:1/alpine oras://127.0.0.1:1/x/y:1; do
	run $TO env HUTCH_CACHEDIR="$T/regcache" "$HUTCH" exec "$src" true
	check "exec $src, nothing listening: one error line" 'fails_with "cannot reach"'
	run $TO env HUTCH_CACHEDIR="$T/regcache" "$HUTCH" build "$T/out.sif" "$src"
	check "build from $src, nothing listening: one error line, no target" 'fails_with "cannot reach" && [ ! -e "$T/out.sif" ]'
done
printf 'Bootstrap: library\nFrom: alpine\n\n%%post\n    true\n' > "$T/x.def"
run $TO "$HUTCH" build "$T/out.sif" "$T/x.def"
check "build from a definition file with an agent hutch lacks: not supported yet" 'fails_with "not supported yet" && [ ! -e "$T/out.sif" ]'
run $TO "$HUTCH" help nosuch
check "help for an unknown command is an error" 'fails_with "nosuch"'
run $TO "$HUTCH" help exec
check "help for a known command still works" '[ $RC -eq 0 ] && out_has "Usage: hutch exec"'

# The definition file object of a SIF built from a folder.
cp -a "$IMAGES/rootfs" "$T/nodef"
rm -f "$T/nodef/.singularity.d/Singularity"
run "$HUTCH" build "$T/nodef.sif" "$T/nodef"
run "$HUTCH" inspect --deffile "$T/nodef.sif"
check "inspect --deffile shows the SIF's Def.FILE object" '[ $RC -eq 0 ] && out_has "bootstrap: localimage"'
run "$HUTCH" inspect --all "$T/nodef.sif"
check "inspect --all shows it too" '[ $RC -eq 0 ] && out_has "bootstrap: localimage"'
run "$HUTCH" inspect --deffile --json "$T/nodef.sif"
check "inspect --deffile --json has it as deffile" 'out_has "\"deffile\": \"bootstrap: localimage"'
run "$HUTCH" inspect --deffile "$IMAGES/image.sif"
check "a folder's /.singularity.d/Singularity is carried into the SIF" 'out_has "from: busybox-static"'
run "$HUTCH" inspect --deffile "$IMAGES/rootfs"
check "inspect --deffile of a folder reads /.singularity.d/Singularity" 'out_has "from: busybox-static"'
leftovers "conf"
finish
