# run, test, shell, inspect, run-help, namespaces (--pid, --hostname, --ipc), --fakeroot.
. "$(dirname "$0")/lib.sh"
I=$IMAGES/image.sif

for img in rootfs image.sqfs image.sif; do
	run "$HUTCH" run "$IMAGES/$img" a "b c"
	check "$img: run executes the runscript with its arguments" 'out_is "runscript args: a b c"'
done
rm -f "$T/norun" && cp -a "$IMAGES/rootfs" "$T/norun" && rm -f "$T/norun/.singularity.d/runscript" "$T/norun/singularity"
run "$HUTCH" run "$T/norun" -c 'echo fallback'
check "run without a runscript falls back to /bin/sh" 'out_is fallback && err_has "No runscript found"'
mkdir -p "$T/bare/.singularity.d" "$T/bare/bin" && cp "$(command -v busybox)" "$T/bare/bin/busybox"
run "$HUTCH" run "$T/bare"
check "run with neither a runscript nor /bin/sh: Apptainer's error, status 1" '[ $RC -eq 1 ] && err_has "^ERROR: *No runscript and no /bin/sh executable found in container, aborting"'
printf '#!/bin/sh\necho hi\n' > "$T/bare/.singularity.d/runscript" && chmod 755 "$T/bare/.singularity.d/runscript"
run "$HUTCH" run "$T/bare"
check "a runscript whose interpreter the image lacks: one line naming it" 'fails_with "runscript. in the container: its interpreter ./bin/sh. is not in the image"'
run "$HUTCH" test "$I"
check "test runs /.singularity.d/test and passes its status" 'out_is "test script ran" && [ $RC -eq 3 ]'
run "$HUTCH" test "$T/norun"
rm -f "$T/norun/.singularity.d/test"
run "$HUTCH" test "$T/norun"
check "test without a test script exits 0 with a note" '[ $RC -eq 0 ] && err_has "No test script"'
run sh -c "echo 'echo \"prompt=\$PS1\"; exit 7' | '$HUTCH' shell '$I'"
check "shell reads commands, PS1 is 'Hutch> ', status passes" 'out_has "prompt=Hutch> " && [ $RC -eq 7 ]'

run sh -c "echo 'echo \$0' | APPTAINER_SHELL=/bin/ash '$HUTCH' shell '$I'"
check "APPTAINER_SHELL chooses the shell" 'out_is /bin/ash'
run "$HUTCH" inspect "$I"
check "inspect prints labels" 'out_has "maintainer: hutch tests"'
run "$HUTCH" inspect --runscript "$IMAGES/image.sqfs"
check "inspect --runscript" 'out_has "runscript args"'
run "$HUTCH" inspect --deffile "$I"
check "inspect --deffile" 'out_has "bootstrap: localimage"'
run "$HUTCH" inspect --environment "$IMAGES/rootfs"
check "inspect --environment" 'out_has "=== /.singularity.d/env/90-environment.sh ===" && out_has IMAGE_VAR'
run "$HUTCH" inspect --json --labels --runscript "$I"
check "inspect --json has Apptainer's shape" 'out_has "\"attributes\"" && out_has "\"maintainer\": \"hutch tests\"" && out_has "\"type\": \"container\""'
# Apptainer's inspect (cmd/internal/cli/inspect.go): labels in key order, printed last; an
# env script as "=== PATH ===", its text, a blank line; short flags; --json as Go's
# MarshalIndent(.., "\t") of pkg/inspect's Metadata (environment a map, empty fields left out)
run "$HUTCH" inspect "$I"
check "inspect prints the labels in key order" 'out_is "$(printf "maintainer: hutch tests\norg.label-schema.schema-version: 1.0")"'
run "$HUTCH" inspect -l -e -r "$I"
check "inspect -l -e -r: runscript, env script and blank line, labels last" 'out_is "$(printf "%s\n" "#!/bin/sh" "echo \"runscript args: \$*\"" "=== /.singularity.d/env/90-environment.sh ===" "#!/bin/sh" "export IMAGE_VAR=\"from-image\"" "export OVERRIDE_ME=\"image-value\"" "" "maintainer: hutch tests" "org.label-schema.schema-version: 1.0")"'
run "$HUTCH" inspect -j -e -l "$I"
check "inspect -j -e -l: the layout of Go json (tabs), environment a map of script to text, then labels" 'python3 -c "
import json, sys
t = open(sys.argv[1]).read()
a = json.loads(t)[\"data\"][\"attributes\"]
ok = t == json.dumps(json.loads(t), indent=\"\t\") + \"\n\" and list(a) == [\"environment\", \"labels\"]
ok = ok and a[\"environment\"] == {\"/.singularity.d/env/90-environment.sh\": \"#!/bin/sh\\nexport IMAGE_VAR=\\\"from-image\\\"\\nexport OVERRIDE_ME=\\\"image-value\\\"\"}
sys.exit(not ok)" "$OUT"'
run "$HUTCH" inspect --all "$I"
check "inspect --all is JSON with every field" 'python3 -c "import json,sys; a=json.load(open(sys.argv[1]))[\"data\"][\"attributes\"]; sys.exit(sorted(a) != sorted([\"environment\",\"labels\",\"runscript\",\"test\",\"helpfile\",\"deffile\",\"startscript\"]))" "$OUT"'
rm -f "$T/norun/.singularity.d/labels.json"
run "$HUTCH" inspect --json "$T/norun"
check "inspect --json of an image without labels: empty attributes, as Go omits them" 'out_is "$(printf "{\n\t\"data\": {\n\t\t\"attributes\": {}\n\t},\n\t\"type\": \"container\"\n}")"'
run "$HUTCH" run-help "$I"
check "run-help prints runscript.help" 'out_is "This image echoes its arguments."'
run "$HUTCH" run-help "$T/norun"
rm -f "$T/norun/.singularity.d/runscript.help"
run "$HUTCH" run-help "$T/norun"
check "run-help without help says so" 'out_has "No help sections"'

# (the init forks the payload, then execs hutch-init: a payload quick enough sees the
# init's comm before that exec)
run "$HUTCH" exec --pid "$I" sh -c 'echo $$; i=0; while [ "$(cat /proc/1/comm)" != hutch-init ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done; cat /proc/1/comm'
check "--pid: the payload is PID 2 under a minimal init" 'out_is "2
hutch-init"'
run "$HUTCH" exec --pid "$I" sh -c 'exit 5'
check "--pid: exit status passes through the init" '[ $RC -eq 5 ]'
run "$HUTCH" exec --pid --no-init "$I" sh -c 'echo $$'
check "--pid --no-init: the payload is PID 1" 'out_is 1'
run "$HUTCH" exec --containall "$I" sh -c 'ps | wc -l; ls -A /tmp | wc -l'
check "--containall: own PID namespace and empty /tmp" '[ "$(head -1 $OUT)" -le 5 ] && [ "$(tail -1 $OUT)" -eq 0 ]'
run "$HUTCH" exec --hostname hutchbox "$I" hostname
check "--hostname sets the hostname in a new UTS namespace" 'out_is hutchbox && [ "$(hostname)" != hutchbox ]'
run "$HUTCH" exec --ipc "$I" true
check "--ipc runs in a new IPC namespace" '[ $RC -eq 0 ]'
run "$HUTCH" exec --fakeroot "$I" sh -c 'id -u; id -g'
check "--fakeroot: uid and gid 0 inside" 'out_is "0
0"'
run "$HUTCH" exec --fakeroot "$I" sh -c 'echo $HOME'
check "--fakeroot: HOME is /root" 'out_is /root'
fr=hutch-fakeroot-test.$$
run "$HUTCH" exec --fakeroot "$I" sh -c "echo \$HOME; touch ~/$fr"
check "--fakeroot: the caller's home is mounted at /root, writable" '[ $RC -eq 0 ] && out_is /root && [ -f "$HOME/$fr" ] && [ "$(stat -c %u "$HOME/$fr")" = "$(id -u)" ]'
rm -f "$HOME/$fr"
run "$HUTCH" exec --fakeroot --no-home "$I" sh -c 'echo $HOME; ls -A /root | wc -l'
check "--fakeroot --no-home: HOME is the image's /root" '[ $RC -eq 0 ] && out_is "/root
0"'
if [ "$(id -u)" -ne 0 ] && grep -q "^$(id -un):" /etc/subuid 2>/dev/null; then
	run "$HUTCH" exec --fakeroot "$I" sh -c 'wc -l < /proc/self/uid_map; touch /tmp/fr.$$ && chown 1:1 /tmp/fr.$$ && echo chowned; rm -f /tmp/fr.$$'
	check "--fakeroot maps the /etc/subuid range (chown to another id works)" 'out_is "2
chowned"'
fi
run "$HUTCH" exec "$I" sh -c 'touch /home/x'
check "folders made for mount points are read-only too" '[ $RC -eq 1 ] && err_has "/home/x.*Read-only file system"'
run "$HUTCH" version
check "version prints the version" 'out_has "^[0-9]"'
run "$HUTCH" exec --help
check "exec --help lists the options" 'out_has -- "--bind" && out_has -- "--fakeroot" && [ $RC -eq 0 ]'
run "$HUTCH" help
check "help lists the commands" 'out_has "exec" && out_has "inspect" && out_has "build"'
leftovers "actions"
finish
