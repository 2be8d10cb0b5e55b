# exec on the three image formats: identity, files, cwd, exit status, signals, env.
. "$(dirname "$0")/lib.sh"
uid=$(id -u) gid=$(id -g)

for img in rootfs image.sqfs image.sif; do
	I=$IMAGES/$img
	run "$HUTCH" exec "$I" cat /etc/hutch-test-marker
	check "$img: exec reads a file of the image" 'out_is image-marker && [ $RC -eq 0 ]'
	run "$HUTCH" exec "$I" id -u
	check "$img: same uid inside as outside" 'out_is $uid'
	run "$HUTCH" exec "$I" id -g
	check "$img: same gid inside as outside" 'out_is $gid'
	run "$HUTCH" exec "$I" pwd
	check "$img: cwd is kept" 'out_is "$PWD"'
	run "$HUTCH" exec "$I" sh -c 'exit 42'
	check "$img: payload exit status passes through" '[ $RC -eq 42 ]'
	run "$HUTCH" exec "$I" sh -c 'kill -TERM $$'
	check "$img: payload killed by a signal gives 128+N" '[ $RC -eq 143 ]'
	run "$HUTCH" exec "$I" sh -c 'echo $IMAGE_VAR'
	check "$img: /.singularity.d/env scripts are sourced" 'out_is from-image'
	leftovers "$img exec"
done
I=$IMAGES/image.sif

run env HOST_VAR=hostval "$HUTCH" exec "$I" sh -c 'echo $HOST_VAR'
check "host environment passes through" 'out_is hostval'
run env HOST_VAR=hostval "$HUTCH" exec --cleanenv "$I" sh -c 'echo "[$HOST_VAR]"'
check "--cleanenv drops the host environment" 'out_is "[]"'
run env LANG=fr_FR.UTF-8 TERM=vt100 https_proxy=h:1 FTP_PROXY=f:2 "$HUTCH" exec --cleanenv "$I" sh -c 'echo "$LANG $TERM $https_proxy $FTP_PROXY"'
check "--cleanenv sets LANG=C and keeps TERM and the proxies, FTP's too (as Apptainer)" 'out_is "C vt100 h:1 f:2"'
run env LANG=fr_FR.UTF-8 APPTAINERENV_LANG=de_DE "$HUTCH" exec --cleanenv "$I" sh -c 'echo "$LANG"'
check "--cleanenv: APPTAINERENV_LANG wins over LANG=C" 'out_is de_DE'
run "$HUTCH" exec "$I" sh -c 'echo "$APPTAINER_COMMAND $SINGULARITY_COMMAND"'
check "APPTAINER_COMMAND names the action" 'out_is "exec exec"'
run env APPTAINER_CACHEDIR=/c SINGULARITY_FOO=f APPTAINER_BIND= "$HUTCH" exec "$I" sh -c 'echo "[$APPTAINER_CACHEDIR$SINGULARITY_FOO]${APPTAINER_BIND+bind}"'
check "host APPTAINER_*/SINGULARITY_* settings stay outside, bind lists pass (as Apptainer)" 'out_is "[]bind"'
# Apptainer's exec looks the command up before it runs it: one error line and 255 for a
# command that is missing, a folder, or a file without x (not the shell's 126/127)
run "$HUTCH" exec "$I" nosuchcmd
check "a missing command: one line, 255" '[ $RC -eq 255 ] && [ "$(wc -l < "$ERR")" -eq 1 ] && err_has "^hutch: error: cannot run .nosuchcmd. in the container: No such file or directory$"'
run "$HUTCH" exec "$I" /etc/passwd
check "a file without x: one line, 255" '[ $RC -eq 255 ] && [ "$(wc -l < "$ERR")" -eq 1 ] && err_has "^hutch: error: cannot run ./etc/passwd. in the container: Permission denied$"'
run "$HUTCH" exec "$I" /etc
check "a folder: one line, 255" '[ $RC -eq 255 ] && [ "$(wc -l < "$ERR")" -eq 1 ] && err_has "^hutch: error: cannot run ./etc. in the container: Is a directory$"'
run env __hutch_m=x m=kept "$HUTCH" exec "$I" sh -c 'echo "$m"'
check "the check leaves the payload's variables alone" 'out_is kept'
run env PATH=/nonexistent:/usr/bin:/bin "$HUTCH" exec "$I" sh -c 'echo $PATH'
check "host PATH is not passed; the container default is used" 'out_is /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
run env HUTCHENV_FOO=bar APPTAINERENV_BAZ=qux "$HUTCH" exec "$I" sh -c 'echo $FOO-$BAZ'
check "HUTCHENV_ and APPTAINERENV_ set variables inside" 'out_is bar-qux'
run env APPTAINERENV_HOME=/elsewhere "$HUTCH" exec "$I" sh -c 'echo $HOME'
check "APPTAINERENV_HOME is refused with a warning, as Apptainer" 'out_is "$HOME" && err_has "Overriding HOME environment variable with APPTAINERENV_HOME is not permitted"'
run env SINGULARITYENV_X=old APPTAINERENV_X=new "$HUTCH" exec "$I" sh -c 'echo $X'
check "APPTAINERENV_ wins over SINGULARITYENV_" 'out_is new'
run "$HUTCH" exec --env OVERRIDE_ME=cli "$I" sh -c 'echo $OVERRIDE_ME'
check "--env wins over the image's environment" 'out_is cli'
run "$HUTCH" exec --env A=1,B=2 "$I" sh -c 'echo $A$B'
check "--env takes a comma list" 'out_is 12'
printf '# comment\nexport EF1=one\nEF2="two words"\n\nEF3='"'"'three'"'"'\n' > "$T/envfile"
run "$HUTCH" exec --env-file "$T/envfile" "$I" sh -c 'echo "$EF1|$EF2|$EF3"'
check "--env-file sets variables" 'out_is "one|two words|three"'
printf 'EX1=$HOSTV/x\nEX2="${EX1}-y"\nEX3='"'"'$HOME'"'"'\n' > "$T/expand.env"
run env HOSTV=/somewhere "$HUTCH" exec --env-file "$T/expand.env" "$I" sh -c 'echo "$EX1|$EX2|$EX3"'
check "--env-file expands \$NAME and \${NAME} (host, then the file), not in single quotes (as Apptainer)" 'out_is "/somewhere/x|/somewhere/x-y|\$HOME"'
printf 'OK=1\nEX=$(touch %s/ran)\n' "$T" > "$T/cmd.env"
run "$HUTCH" exec --env-file "$T/cmd.env" "$I" true
check "--env-file: a command substitution is refused, not run" 'fails_with "cmd.env:2" && [ ! -e "$T/ran" ]'
run "$HUTCH" exec --env PREPEND_PATH=/opt/x "$I" sh -c 'echo $PATH'
check "PREPEND_PATH prepends to PATH" 'out_has "^/opt/x:/usr/local/sbin"'
run "$HUTCH" exec "$IMAGES/rootfs" sh -c 'echo $HUTCH_CONTAINER $APPTAINER_NAME'
check "HUTCH_CONTAINER and APPTAINER_NAME describe the image" 'out_is "$IMAGES/rootfs rootfs"'

run "$HUTCH" exec "$I" sh -c 'echo $HOME; test -d "$HOME" && echo isdir'
check "HOME is the caller's home, mounted" 'out_is "$HOME
isdir"'
echo hostfile > "$T/shared"
run "$HUTCH" exec "$I" cat "$T/shared"
check "host /tmp is shared" 'out_is hostfile'
if [ "$uid" -ne 0 ]; then
	run "$HUTCH" exec "$I" sh -c "grep '^$(id -un):x:$uid:$gid:' /etc/passwd"
	check "/etc/passwd carries the caller's entry" '[ $RC -eq 0 ]'
	run "$HUTCH" exec "$I" sh -c "grep '^$(id -gn):x:$gid:' /etc/group"
	check "/etc/group carries the caller's group" '[ $RC -eq 0 ]'
else
	# a user whose primary group is not named after it: the container's /etc/group names
	# the group as the host does, as Apptainer's
	G=hutchgrp
	id "$G" >/dev/null 2>&1 || useradd -M -N -g users -s /bin/sh "$G"
	run runuser -u "$G" -- sh -c 'cd / && exec "$0" exec --no-home "$1" sh -c "grep ^users: /etc/group; id -gn"' "$HUTCH" "$I"
	check "/etc/group names the caller's primary group as the host does" 'out_is "users:x:100:$G
users"'
fi
run "$HUTCH" exec "$I" sh -c 'touch /newfile'
check "the image root is read-only" '[ $RC -ne 0 ] && err_has "Read-only"'
run "$HUTCH" exec --writable-tmpfs "$IMAGES/rootfs" sh -c 'echo x > /etc/newfile && cat /etc/newfile'
check "--writable-tmpfs allows writes that vanish" '[ $RC -eq 0 ] && out_is x && [ ! -e "$IMAGES/rootfs/etc/newfile" ]'
leftovers "environment and files"

# Options job scripts written for Apptainer carry: the umask, GPUs this host lacks, and the
# ones hutch refuses in one line.
run sh -c 'umask 077; exec "$0" exec "$1" sh -c umask' "$HUTCH" "$I"
check "the caller's umask reaches the payload" 'out_is 0077'
run sh -c 'umask 077; exec "$0" exec --no-umask "$1" sh -c umask' "$HUTCH" "$I"
check "--no-umask: the payload starts with 0022" 'out_is 0022'
for gpu in nv nvccli rocm; do
	want=$gpu; [ "$gpu" = nvccli ] && want=nv
	run "$HUTCH" exec --$gpu "$I" sh -c 'echo ok; ls /.singularity.d/libs 2>/dev/null | wc -l'
	check "--$gpu on a host without that GPU: Apptainer's warning, the run goes on, nothing bound" 'out_is "ok
0" && err_has "Could not find any $want files on this host!"'
done
run "$HUTCH" exec --unsquash "$I" echo ok
check "--unsquash runs the image as it is" 'out_is ok'
run "$HUTCH" exec --disable-cache "$I" echo ok
check "--disable-cache with a local image has nothing to skip" 'out_is ok'
run "$HUTCH" exec --pem-path "$T/key.pem" "$I" true
check "--pem-path is refused in one line (no encrypted images)" 'fails_with "encrypted images are not supported"'
run "$HUTCH" exec --passphrase "$I" true
check "--passphrase is refused in one line" 'fails_with "encrypted images are not supported"'
run "$HUTCH" exec --fusemount "host:sshfs x: /mnt" "$I" true
check "--fusemount is refused in one line" 'fails_with "fusemount is not supported"'
run "$HUTCH" exec --cwd /etc "$I" pwd
check "--cwd is --pwd (Apptainer's visible name)" 'out_is /etc'
run env APPTAINER_CWD=/srv "$HUTCH" exec "$I" pwd
check "APPTAINER_CWD is --cwd" 'out_is /srv'
run env HOST_VAR=h "$HUTCH" exec --compat "$I" sh -c 'echo "$$ $(umask) [$HOST_VAR]"; touch /compat && echo written; ls -A /tmp | wc -l'
check "--compat: --containall --no-init --no-umask --writable-tmpfs (the payload is PID 1)" 'out_is "1 0022 []
written
0"'
run "$HUTCH" exec --nv --no-nv --rocm --no-rocm --underlay --ignore-userns --ignore-fakeroot-command "$I" echo ok
check "--no-nv, --no-rocm, --underlay, --ignore-userns, --ignore-fakeroot-command are taken" 'out_is ok && [ ! -s "$ERR" ]'
if [ "$(id -u)" -ne 0 ]; then
	run "$HUTCH" exec --fakeroot "$I" sh -c 'awk "{ n += \$3 } END { print n }" /proc/self/uid_map'
	ranged=$(cat "$OUT")
	run "$HUTCH" exec --fakeroot --ignore-subuid "$I" sh -c 'id -u; awk "{ n += \$3 } END { print n }" /proc/self/uid_map'
	check "--fakeroot --ignore-subuid: 0 inside is the caller alone (without it: $ranged ids)" 'out_is "0
1"'
fi
run "$HUTCH" shell -s /bin/sh "$I" -c 'echo "$SHELL"'
check "shell -s is --shell, and \$SHELL names the shell started" 'out_is /bin/sh'
run "$HUTCH" --nocolor exec "$I" echo ok
check "the global --nocolor is taken" 'out_is ok'
leftovers "Apptainer job-script options"

# A payload that ends at once must not leave hutch waiting for a SIGCHLD that came before
# it blocked signals (SIG_DFL discards it): four loops side by side make the ordering vary
# (without the fix ~3% of these runs hang). SIGKILL: a hung hutch forwards timeout's TERM
# to its zombie child and stays.
hung_runs() {
	local j
	for j in 1 2 3 4; do
		(n=0; for _ in $(seq 75); do timeout -s KILL 10 "$@" >/dev/null 2>&1 </dev/null || n=$((n + 1)); done; echo "$n") &
	done | awk '{ s += $1 } END { print s }'
}
check "300 runs of exec --pid true all end" '[ "$(hung_runs "$HUTCH" exec --pid "$I" true)" = 0 ]'
trap '"$HUTCH" instance stop --force racer >/dev/null 2>&1; rm -rf "$T"' EXIT
mkdir -p "$T/idle" && cp -a "$IMAGES/rootfs/." "$T/idle/" && rm -f "$T/idle/.singularity.d/startscript"
"$HUTCH" instance start "$T/idle" racer >/dev/null 2>&1
check "300 joins of an instance running true all end" '[ "$(hung_runs "$HUTCH" exec instance://racer true)" = 0 ]'
"$HUTCH" instance stop racer >/dev/null 2>&1
leftovers "fast payloads"
finish
