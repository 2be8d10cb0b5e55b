# Binds, --no-mount, --contain, --home, --pwd, --workdir, writable sandboxes.
. "$(dirname "$0")/lib.sh"
I=$IMAGES/image.sif
mkdir -p "$T/data" "$T/work"
echo payload > "$T/data/file"

run "$HUTCH" exec -B "$T/data:/mnt/data" "$I" cat /mnt/data/file
check "-B src:dst binds a host folder" 'out_is payload'
run "$HUTCH" exec -B "$T/data:/opt/deep/er/data" "$I" cat /opt/deep/er/data/file
check "-B creates missing mount points in a read-only image" 'out_is payload'
run "$HUTCH" exec -B "$T/data:/mnt/data:ro" "$I" sh -c 'echo x > /mnt/data/new'
check "-B ...:ro is read-only" '[ $RC -ne 0 ] && [ ! -e "$T/data/new" ]'
run "$HUTCH" exec -B "$T/data:/mnt/data:rw" "$I" sh -c 'echo x > /mnt/data/new'
check "-B ...:rw is writable" '[ $RC -eq 0 ] && [ -e "$T/data/new" ]'
run "$HUTCH" exec -B "$T/data/file:/etc/boundfile" "$I" cat /etc/boundfile
check "-B binds a single file" 'out_is payload'
run "$HUTCH" exec -B "$T/data:/a,$T/data:/b" "$I" sh -c 'cat /a/file /b/file'
check "-B takes a comma list" 'out_is "payload
payload"'
run "$HUTCH" exec --mount "type=bind,src=$T/data,dst=/m,ro" "$I" sh -c 'cat /m/file; touch /m/x'
check "--mount type=bind,...,ro" 'out_has payload && [ $RC -ne 0 ]'
run env HUTCH_BIND="$T/data:/hb" "$HUTCH" exec "$I" cat /hb/file
check "HUTCH_BIND binds" 'out_is payload'
run env APPTAINER_BIND="$T/data:/ab" "$HUTCH" exec "$I" cat /ab/file
check "APPTAINER_BIND binds" 'out_is payload'
run "$HUTCH" exec --no-mount home "$I" sh -c 'ls "$HOME" 2>&1 | head -1; test -d "$HOME"'
check "--no-mount home leaves the home folder out" '[ $RC -ne 0 ] || [ -z "$(cat $OUT)" ]'
mkdir "$T/wd"
printf 'mount home = no\n' > "$T/nohome.conf"
run env HUTCH_CONF="$T/nohome.conf" "$HUTCH" exec --contain --workdir "$T/wd" "$I" sh -c 'grep -c " $HOME " /proc/self/mountinfo'
check "mount home = no with --contain --workdir: no home from the workdir either" 'out_is 0 && [ ! -e "$T/wd/home" ]'
run "$HUTCH" exec --no-mount tmp,cwd "$I" cat "$T/data/file"
check "--no-mount tmp leaves /tmp out" '[ $RC -eq 1 ] && err_has "$T/data/file.*No such file or directory"'
run "$HUTCH" exec --contain "$I" sh -c 'ls -A /tmp | wc -l; ls /dev | wc -l'
check "--contain: empty /tmp and a minimal /dev" '[ "$(head -1 $OUT)" -eq 0 ] && [ "$(tail -1 $OUT)" -lt 20 ]'
run "$HUTCH" exec --contain "$I" sh -c 'echo hi > /dev/null && test -c /dev/null && test -c /dev/urandom && test -d /dev/pts && test -d /dev/shm'
check "--contain /dev has null, urandom, pts, shm" '[ $RC -eq 0 ]'
run "$HUTCH" exec --contain --workdir "$T/work" "$I" sh -c 'echo w > /tmp/w'
check "--workdir backs /tmp under --contain" '[ "$(cat $T/work/tmp/w)" = w ]'
run "$HUTCH" exec --workdir "$T/work2" "$I" sh -c 'echo w2 > /tmp/hutch-w2-$$; echo $$'
check "--workdir without --contain leaves /tmp the host's (as Apptainer)" '[ $RC -eq 0 ] && [ -f "/tmp/hutch-w2-$(cat "$OUT")" ] && [ ! -e "$T/work2/tmp" ]'
rm -f "/tmp/hutch-w2-$(cat "$OUT")"
(cd /etc; "$HUTCH" exec --contain "$I" pwd >"$OUT" 2>"$ERR"; echo "$?" >"$T/rc")
check "--contain starts in \$HOME, not the caller's folder (as Apptainer)" '[ "$(cat "$T/rc")" -eq 0 ] && out_is "$HOME"'
(cd /etc; "$HUTCH" exec --contain -H "$T/data:/myhome" "$I" pwd >"$OUT" 2>"$ERR")
check "... in --home's destination" 'out_is /myhome'
run "$HUTCH" exec -H "$T/data:/myhome:ro" "$I" true
check "-H with a third part is refused, as Apptainer's" 'fails_with "home argument has incorrect number of elements"'
run "$HUTCH" exec -B "$T/data:/rorw:ro,rw" "$I" sh -c 'touch /rorw/x'
check "-B SRC:DST:ro,rw is read-only (an ro among the options wins, as Apptainer)" '[ $RC -ne 0 ] && [ ! -e "$T/data/x" ]'
run "$HUTCH" exec -H "$T/data:/myhome" "$I" sh -c 'echo $HOME; cat ~/file'
check "-H src:dst mounts a custom home" 'out_is "/myhome
payload"'
# (the system file of a build with meson's default prefix; none on a test machine)
if [ -e /etc/localtime ] && [ ! -e /usr/local/etc/hutch/hutch.conf ]; then
	run "$HUTCH" exec "$I" sh -c 'grep -c " /etc/localtime " /proc/self/mountinfo; md5sum < /etc/localtime'
	check "without a system hutch.conf the host's /etc/localtime is bound (Apptainer's default bind path)" '[ "$(head -1 "$OUT")" -ge 1 ] && [ "$(tail -1 "$OUT")" = "$(md5sum < /etc/localtime)" ]'
	run "$HUTCH" exec --no-mount /etc/localtime "$I" grep -c " /etc/localtime " /proc/self/mountinfo
	check "--no-mount /etc/localtime leaves that bind path out (as Apptainer)" 'out_is 0'
fi
run "$HUTCH" exec --no-mount dev --env 'V=$HOME' "$I" sh -c 'echo "ok $V"'
check "--no-mount dev: the image's /dev as it is, and the command runs (no redirect to a /dev/null it may lack)" '[ $RC -eq 0 ] && out_is "ok $HOME"'
run "$HUTCH" exec --no-mount dev "$I" nosuchcommand
check "... a missing command is still one line" 'fails_with "cannot run .nosuchcommand. in the container: No such file or directory"'
run "$HUTCH" exec --pwd /etc "$I" pwd
check "--pwd sets the working folder" 'out_is /etc'
(cd "$T/data" && run "$HUTCH" exec --no-mount tmp,cwd "$I" pwd)
check "--no-mount cwd: start in HOME when cwd is absent" 'out_is "$HOME"'
cp -a "$IMAGES/rootfs" "$T/sandbox" 2>/dev/null
run "$HUTCH" exec --writable "$T/sandbox" sh -c 'echo w > /etc/written'
check "--writable writes into a sandbox folder" '[ $RC -eq 0 ] && [ "$(cat $T/sandbox/etc/written)" = w ]'
run "$HUTCH" exec "$T/sandbox" sh -c 'echo w > /etc/written2'
check "a sandbox is read-only without --writable" '[ $RC -ne 0 ] && [ ! -e $T/sandbox/etc/written2 ]'
# The user's binds are listed inside, for a nested run (as Apptainer sets them)
run "$HUTCH" exec -B "$T/data:/d1:ro" --bind "$T/data" "$I" sh -c 'echo "$APPTAINER_BIND|$SINGULARITY_BIND"'
check "APPTAINER_BIND and SINGULARITY_BIND list the binds' destinations inside (as Apptainer, for nested runs)" 'out_is "/d1,$T/data|/d1,$T/data"'
run "$HUTCH" exec -B "" -B "$T/data:/d2,," "$I" sh -c 'cat /d2/file; echo "[$APPTAINER_BIND]"'
check "an empty bind spec binds nothing (as Apptainer)" 'out_is "payload
[/d2]"'
run "$HUTCH" exec "$I" sh -c 'echo "[${APPTAINER_BIND-unset}]"'
check "without binds APPTAINER_BIND is not set" 'out_is "[unset]"'

# -S/--scratch: writable folders, fresh ones gone with the container, or WORKDIR/scratch/PATH
run "$HUTCH" exec -S /scratch/a,/opt/s2 --scratch /var/x "$I" sh -c 'for d in /scratch/a /opt/s2 /var/x; do echo w > $d/f && cat $d/f; done; stat -c %u /scratch/a'
check "-S gives writable folders at each path (comma lists, repeatable)" 'out_is "w
w
w
$(id -u)"'
run "$HUTCH" exec -S /scratch/a "$I" sh -c 'ls -A /scratch/a | wc -l'
check "-S without --workdir: a fresh folder each run" 'out_is 0'
mkdir -p "$T/swd"
run "$HUTCH" exec --workdir "$T/swd" -S /s/../data/out "$I" sh -c 'echo kept > /data/out/f'
check "-S with --workdir: WORKDIR/scratch/PATH, kept" '[ $RC -eq 0 ] && [ "$(cat "$T/swd/scratch/data/out/f")" = kept ]'
for bad in relative/dir / /a,x; do
	run "$HUTCH" exec -S "$bad" "$I" true
	check "-S '$bad' is refused in one line" 'fails_with "--scratch wants absolute folders"'
done
leftovers "mounts"
finish
