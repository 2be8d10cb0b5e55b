# build from definition files: every section, stages, templates, the bad ones, rootless.
. "$(dirname "$0")/lib.sh"
I=$IMAGES/image.sif
cd "$T" || exit 1
# no build folder, stage or partial target may be left by any build
no_build_leftovers() { [ -z "$(ls -d "$T"/*.hutch-build-* "$T"/*.hutch-tmp-* 2>/dev/null)" ]; }

echo hostdata > "$T/host.txt"
mkdir -p "$T/data" "$T/my dir"
echo a > "$T/data/a.txt" && echo b > "$T/data/b.txt" && echo c > "$T/data/c.log" && echo spaced > "$T/my dir/f 1"
cat > "$T/all.def" <<EOF
Bootstrap: localimage
From: $I

%arguments
    greeting=hello

%help
    This image greets.

%setup
    echo "setup in \$APPTAINER_ROOTFS" > "\$SINGULARITY_ROOTFS/setup.txt"

%files
    $T/host.txt /opt/host.txt
    $T/data/*.txt /opt/data/
    "$T/my dir/f 1" "/opt/with space"

%environment
    export MYVAR={{ greeting }}

%post
    echo "post says hello"
    echo "post tmp \$(stat -c %a /tmp) \$(stat -c %a /var/tmp)"
    echo "post as \$(id -u)" > /post.txt
    echo 'export FROMPOST=yes' >> \$APPTAINER_ENVIRONMENT
    echo "Dyn from-post \$(echo x)" >> \$APPTAINER_LABELS
    echo "Version 1.3" >> \$SINGULARITY_LABELS
    chown 1000:1000 /post.txt

%runscript
    echo "run: \$MYVAR \$FROMPOST \$*"

%startscript
    echo started

%test
    grep -q "post as 0" /post.txt

%labels
    Author someone@example.org
    Version 1.2
    maintainer someone-else
EOF
printf '# CRLF line\r\n' >> "$T/all.def"
run "$HUTCH" build "$T/all.sif" "$T/all.def"
check "build: localimage with every section" '[ $RC -eq 0 ] && [ -f "$T/all.sif" ] && no_build_leftovers'
check "build announces the stage, each section and the total" 'out_has "^post says hello" && err_has "^INFO: *Starting build...$" && err_has "^INFO: *Creating SIF file...$" && err_has "Stage 1/1: Bootstrap: localimage" && err_has "Running setup scriptlet" && err_has "Running post scriptlet" && err_has "Running testscript" && err_has "Build complete: $T/all.sif"'
check "%setup and %post are traced as Apptainer runs them (sh -e -x)" 'err_has "^+ echo .post says hello" && err_has "^+ echo .\\?setup in"'
check "a label the base image has is kept without --force, with Apptainer's warning" 'err_has "^WARNING: Label: maintainer already exists and force option is false, not overwriting"'
check "%post's own output is shown" 'out_has "^post says hello"'
check "%post's /tmp and /var/tmp are 1777 (a service user such as apt's _apt writes there)" 'out_has "^post tmp 1777 1777"'
run "$HUTCH" run "$T/all.sif" x y
check "%runscript, %environment with its template, \$APPTAINER_ENVIRONMENT from %post" 'out_is "run: hello yes x y"'
run "$HUTCH" exec "$T/all.sif" sh -c 'echo "[$PS1] [$LD_LIBRARY_PATH]"; ls /.singularity.d/env'
check "a built image carries Apptainer's 99-base.sh and 99-runtimevars.sh: its prompt, its libs folder on LD_LIBRARY_PATH" 'out_has "^\[Apptainer> \] \[/.singularity.d/libs\]$" && out_has "^99-base.sh$" && out_has "^99-runtimevars.sh$"'
# as a user, the ids %post gave away are seen with --fakeroot (subordinate ranges)
FAKE=
[ "$(id -u)" -ne 0 ] && FAKE=--fakeroot
run "$HUTCH" exec $FAKE "$T/all.sif" sh -c 'cat /setup.txt /opt/host.txt /opt/data/a.txt /opt/data/b.txt "/opt/with space" /post.txt; ls /opt/data; stat -c %u:%g /post.txt'
check "%setup, %files (glob, quoted path) and %post made their files" "[ \$RC -eq 0 ] && out_has '^setup in /' && out_has hostdata && out_has '^spaced' && out_has 'post as 0' && ! out_has c.log && out_has '^1000:1000'"
run "$HUTCH" test "$T/all.sif"
check "test runs %test" '[ $RC -eq 0 ]'
run "$HUTCH" run-help "$T/all.sif"
check "run-help shows %help" 'out_has "This image greets."'
run "$HUTCH" inspect "$T/all.sif"
check "inspect: %labels, \$APPTAINER_LABELS lines of %post (which win) and the base image's" 'out_has "^Author: someone@example.org" && out_has "^Version: 1.3" && out_has "^Dyn: from-post x" && out_has "^maintainer: hutch tests" && ! "$HUTCH" exec "$T/all.sif" test -e /.build.labels'
check "inspect: the build labels" ' out_has "org.label-schema.build-arch:" && out_has "org.label-schema.usage.singularity.runscript.help: /.singularity.d/runscript.help" && out_has "org.label-schema.usage.singularity.deffile.bootstrap: localimage" && out_has "org.label-schema.usage: /.singularity.d/runscript.help"'
run "$HUTCH" inspect --startscript "$T/all.sif"
check "inspect --startscript" 'out_has "echo started"'
"$HUTCH" inspect --deffile "$T/all.sif" > "$T/deffile.out"
check "inspect --deffile: the definition file byte for byte (CRLF too)" 'cmp -s "$T/deffile.out" "$T/all.def"'
run "$HUTCH" exec "$T/all.sif" cat /.singularity.d/Singularity /.singularity.d/bootstrap_history/Singularity0
check "the image's own deffile, the base image's kept in bootstrap_history" 'out_has "%startscript" && out_has "from: busybox-static"'
if [ -n "$SIFCHECK" ]; then
	run "$SIFCHECK" "$T/all.sif"
	check "the reference SIF code reads the built SIF (Def.FILE, JSON, partition)" '[ $RC -eq 0 ] && out_has "type=Def.FILE" && out_has "type=JSON.Generic" && out_has "fs=Squashfs part=\*System"'
fi

# SCIF apps
echo appdata > "$T/app.txt"
cat > "$T/apps.def" <<EOF
Bootstrap: localimage
From: $I

%appinstall hello
    printf '#!/bin/sh\necho "hello tool in \$(pwd)"\n' > bin/hello-tool
    chmod +x bin/hello-tool
    pwd > installed-in
    echo "scif: \$SCIF_APPNAME \$SCIF_APPROOT \$SCIF_APPOUTPUT" > scif-vars

%apprun hello
    echo "hello app: \$HELLO_VAR \$SCIF_APPNAME \$*"

%appenv hello
    export HELLO_VAR=from-appenv

%applabels hello
    Tool hello-1.0

%appfiles hello
    $T/app.txt

%apphelp hello
    Help of the hello app.

%apptest hello
    test -f \$SCIF_APPROOT/installed-in

%apprun other
    echo other

%appenv quiet
    export QUIET=1
EOF
run "$HUTCH" build -q "$T/apps.sif" "$T/apps.def"
check "build with SCIF apps" '[ $RC -eq 0 ] && no_build_leftovers'
run "$HUTCH" run --app hello "$T/apps.sif" a b
check "run --app: the app's runscript with its %appenv" 'out_is "hello app: from-appenv hello a b"'
run "$HUTCH" exec --app hello "$T/apps.sif" sh -c 'hello-tool; cat $SCIF_APPROOT/installed-in $SCIF_APPROOT/app.txt; echo $SCIF_APPDATA; ls -d /scif/data/hello/input'
check "exec --app: the app's bin/ on PATH, %appinstall ran in its folder, %appfiles copied" 'out_has "^hello tool in" && out_has "^/scif/apps/hello$" && out_has "^appdata" && out_has "^/scif/data/hello$" && out_has "^/scif/data/hello/input"'
run "$HUTCH" exec "$T/apps.sif" sh -c 'cat /scif/apps/hello/scif-vars; . /scif/apps/other/scif/env/01-base.sh; echo "$SCIF_APPNAME $SCIF_APPDATA"'
check "%appinstall runs with the app's SCIF variables; every app has Apptainer's env/01-base.sh" 'out_is "scif: hello /scif/apps/hello /scif/data/hello/output
other /scif/data/other"'
run "$HUTCH" exec --app hello "$T/apps.sif" sh -c 'echo "$PATH"'
check "exec --app: the app's bin/ first on PATH, once" 'out_has "^/scif/apps/hello/bin:" && [ "$(grep -o /scif/apps/hello/bin "$OUT" | wc -l)" -eq 1 ]'
run "$HUTCH" test --app hello "$T/apps.sif"
check "test --app runs %apptest" '[ $RC -eq 0 ]'
run "$HUTCH" run --app other "$T/apps.sif"
check "a second app" 'out_is other'
run "$HUTCH" inspect --app hello "$T/apps.sif"
check "inspect --app: the app's %applabels, and SCIF_APP_NAME as Apptainer labels every app" 'out_has "^Tool: hello-1.0" && out_has "^SCIF_APP_NAME: hello$" && ! out_has "org.label-schema.build-date"'
run "$HUTCH" inspect --app hello --runscript "$T/apps.sif"
check "inspect --app --runscript" 'out_has "hello app:"'
run "$HUTCH" exec --app hello "$T/apps.sif" sh -c 'echo "$SINGULARITY_APPNAME $APPTAINER_APPNAME"'
check "--app sets SINGULARITY_APPNAME, which images' scripts test" 'out_is "hello hello"'
run "$HUTCH" run --app quiet "$T/apps.sif"
check "run --app of an app without %apprun: Apptainer's error, status 1" '[ $RC -eq 1 ] && err_has "^ERROR: *no runscript for contained app: quiet"'
run "$HUTCH" test --app other "$T/apps.sif"
check "test --app of an app without %apptest: Apptainer's line, status 1" '[ $RC -eq 1 ] && err_has "^ERROR: *No tests for contained app: other"'
run "$HUTCH" inspect --list-apps "$T/apps.sif"
check "inspect --list-apps: the apps in name order, nothing else (as Apptainer)" 'out_is "$(printf "hello\nother\nquiet")"'
run "$HUTCH" inspect --all "$T/apps.sif"
check "inspect --all: every app's attributes under apps (as Apptainer's)" 'python3 -c "import json,sys; a=json.load(open(sys.argv[1]))[\"data\"][\"attributes\"][\"apps\"]; sys.exit(not (a[\"hello\"][\"labels\"][\"Tool\"] == \"hello-1.0\" and \"echo other\" in a[\"other\"][\"runscript\"] and \"Help of\" in a[\"hello\"][\"helpfile\"] and sorted(a) == [\"hello\", \"other\", \"quiet\"]))" "$OUT"'
run "$HUTCH" inspect --list-apps --json "$T/apps.sif"
check "inspect --list-apps --json: the apps with their attributes" 'python3 -c "import json,sys; a=json.load(open(sys.argv[1]))[\"data\"][\"attributes\"]; sys.exit(not (sorted(a[\"apps\"]) == [\"hello\", \"other\", \"quiet\"] and a[\"apps\"][\"hello\"][\"labels\"][\"Tool\"] == \"hello-1.0\"))" "$OUT"'
run "$HUTCH" inspect --json --app hello "$T/apps.sif"
check "inspect --app --json: the app's labels under apps.hello" 'python3 -c "import json,sys; a=json.load(open(sys.argv[1]))[\"data\"][\"attributes\"]; sys.exit(a[\"apps\"][\"hello\"][\"labels\"][\"Tool\"] != \"hello-1.0\")" "$OUT"'
run "$HUTCH" run-help --app hello "$T/apps.sif"
check "run-help --app: %apphelp" 'out_has "Help of the hello app."'
run "$HUTCH" run --app nope "$T/apps.sif"
check "run --app of an app the image lacks" 'fails_with "no app .nope."'
run "$HUTCH" inspect --app nope "$T/apps.sif"
check "inspect --app of an app the image lacks" 'fails_with "no app .nope."'
run "$HUTCH" run --app '../x' "$T/apps.sif"
check "--app takes a name only" 'fails_with "--app wants an app.s name"'

# --sandbox, --force, target already there
run "$HUTCH" build -q --sandbox "$T/sb" "$T/all.def"
check "build -q --sandbox: a folder with the metadata where Apptainer puts it; -q leaves %post's output" '[ $RC -eq 0 ] && out_has "^post says hello" && ! err_has "^INFO" && [ -x "$T/sb/.singularity.d/runscript" ] && [ -f "$T/sb/.singularity.d/labels.json" ] && [ -f "$T/sb/.singularity.d/runscript.help" ] && [ -L "$T/sb/singularity" ] && [ -f "$T/sb/opt/host.txt" ] && [ ! -e "$T/sb/.post.script" ] && no_build_leftovers'
run "$HUTCH" build -q --sandbox "$T/sb" "$T/all.def"
check "a target already there needs --force" 'fails_with "already exists; use --force" && [ -f "$T/sb/opt/host.txt" ]'
run "$HUTCH" build -q --force --notest "$T/all.sif" "$T/all.def"
check "build --force replaces the target" '[ $RC -eq 0 ] && no_build_leftovers'
run "$HUTCH" inspect "$T/all.sif"
check "with --force a label of the base image is overwritten" 'out_has "^maintainer: someone-else"'

# busybox and scratch agents, multi-stage with %files from, %post -c, templates
cat > "$T/multi.def" <<'EOF'
Bootstrap: busybox
Stage: devel

%post
    mkdir -p /out
    echo "made in devel" > /out/{{ name }}
    ln -s /etc/shadow /out/hostlink

Bootstrap: localimage
From: {{ base }}
Stage: final

%files from devel
    /out/{{ name }} /opt/
    /out/hostlink /opt/hostlink

%post -c /bin/ash
    false
    echo "no -e with -c" > /after
EOF
run "$HUTCH" build -q --build-arg name=result.txt --build-arg "base=$I" "$T/multi.sif" "$T/multi.def"
check "multi-stage: busybox stage, %files from it, build args" '[ $RC -eq 0 ] && no_build_leftovers && ! grep -qv "^+ " "$ERR"'
run "$HUTCH" exec "$T/multi.sif" sh -c 'cat /opt/result.txt /after; readlink /opt/hostlink; ls /out 2>&1'
check "only the last stage is the image; %post -c SHELL runs without -e" 'out_has "^made in devel" && out_has "^no -e with -c" && out_has "^/etc/shadow" && out_has "No such file"'
printf 'Bootstrap: scratch\n%%files\n    %s /bin/busybox\n%%labels\n    Kind scratch\n' "$(command -v busybox)" > "$T/scratch.def"
run "$HUTCH" build -q --sandbox "$T/scratch.sb" "$T/scratch.def"
check "scratch: an empty rootfs with the base folders and what %files put" '[ $RC -eq 0 ] && [ -x "$T/scratch.sb/bin/busybox" ] && [ -d "$T/scratch.sb/proc" ] && [ -d "$T/scratch.sb/.singularity.d/env" ] && grep -q "\"Kind\": \"scratch\"" "$T/scratch.sb/.singularity.d/labels.json"'
# %files patterns with no destination: each match to its own path (Apptainer's CopyFromHost);
# scripts with a #! line of their own, and a section's arguments added to that line
mkdir -p "$T/g/d1" "$T/g/d2" "$T/g/e1"
echo g1 > "$T/g/d1/f" && echo g2 > "$T/g/d2/f" && echo ge > "$T/g/e1/f"
cat > "$T/glob.def" <<EOF
Bootstrap: localimage
From: $I

%files
    $T/g/d*/f
    $T/g/e?/f

%runscript -n
    #!/bin/cat
    line-a

%startscript
#!/bin/sh -e
echo started-with-e

%test
    echo test-as-sh
EOF
run "$HUTCH" build -q --sandbox "$T/glob.sb" "$T/glob.def"
check "%files PATTERN alone: each match copied to its own path, no folder named after the pattern" \
	'[ $RC -eq 0 ] && [ "$(cat "$T/glob.sb$T/g/d1/f" "$T/glob.sb$T/g/d2/f" "$T/glob.sb$T/g/e1/f")" = "$(printf "g1\ng2\nge")" ] && [ ! -e "$T/glob.sb$T/g/d*" ] && [ ! -e "$T/glob.sb$T/g/e?" ] && no_build_leftovers'
check "%runscript with its own #! line and section arguments: that interpreter, the arguments added" \
	'[ "$(head -1 "$T/glob.sb/.singularity.d/runscript")" = "#!/bin/cat -n" ]'
run "$HUTCH" run "$T/glob.sb"
check "... which runs under it" '[ $RC -eq 0 ] && out_has "^ *3	 *line-a$"'
check "%startscript's own #! line is its first; %test without one runs under /bin/sh" \
	'[ "$(head -1 "$T/glob.sb/.singularity.d/startscript")" = "#!/bin/sh -e" ] && ! grep -q "^#!/bin/sh$" "$T/glob.sb/.singularity.d/startscript" && [ "$(head -1 "$T/glob.sb/.singularity.d/test")" = "#!/bin/sh" ]'
printf 'Bootstrap: localimage\nFrom: %s\n%%test\n#!/bin/cat\ntest-by-cat\n' "$I" > "$T/cattest.def"
run "$HUTCH" build -q --sandbox "$T/cattest.sb" "$T/cattest.def"
check "a %test with its own #! line runs under it at build time" '[ $RC -eq 0 ] && out_has "^test-by-cat$"'
run "$HUTCH" test "$T/cattest.sb"
check "... and under hutch test" '[ $RC -eq 0 ] && out_has "^#!/bin/cat$" && out_has "^test-by-cat$"'
run "$HUTCH" build -q --build-arg unused=1 --build-arg also=2 --build-arg name=x --build-arg "base=$I" "$T/multi2.sif" "$T/multi.def"
check "a build argument no template uses is an error, as Apptainer's" 'fails_with "unused build args: unused, also (--warn-unused-build-args" && [ ! -e "$T/multi2.sif" ] && no_build_leftovers'
run "$HUTCH" build -q --warn-unused-build-args --build-arg unused=1 --build-arg name=x --build-arg "base=$I" "$T/multi2.sif" "$T/multi.def"
check "--warn-unused-build-args: a warning" '[ $RC -eq 0 ] && err_has "WARNING.*build argument .unused. is not used"'
printf 'Bootstrap: localimage\nFrom: %s\n%%post\n    mkdir -p /locked/in && echo x > /locked/in/f && chmod 0 /locked/in/f && chmod 0500 /locked/in && chmod 0 /locked\n' "$I" > "$T/perms.def"
run "$HUTCH" build -q --fix-perms --sandbox "$T/perms.sb" "$T/perms.def"
check "--fix-perms: the owner gets rwX on every folder and rw on every file of the sandbox" '[ $RC -eq 0 ] && [ "$(stat -c %a "$T/perms.sb/locked" "$T/perms.sb/locked/in" "$T/perms.sb/locked/in/f" | tr "\n" " ")" = "700 700 600 " ] && rm -rf "$T/perms.sb" && [ ! -e "$T/perms.sb" ]'

# A symlink of the base image never makes %files or the metadata write outside the rootfs.
cp -a "$IMAGES/rootfs" "$T/evilbase"
mkdir -p "$T/outside"
ln -s "$T/outside" "$T/evilbase/opt"
ln -sf "$T/outside/labels.json" "$T/evilbase/.singularity.d/labels.json"
mkdir -p "$T/evilbase/$T/outside"
printf 'Bootstrap: localimage\nFrom: %s\n%%files\n    %s /opt/x\n' "$T/evilbase" "$T/host.txt" > "$T/evil.def"
run "$HUTCH" build -q --sandbox "$T/evil.sb" "$T/evil.def"
check "symlinks of the base image are resolved inside the rootfs" '[ $RC -eq 0 ] && [ -z "$(ls -A "$T/outside")" ] && [ -f "$T/evil.sb/$T/outside/x" ] && [ ! -L "$T/evil.sb/.singularity.d/labels.json" ] && grep -q org.label-schema "$T/evil.sb/.singularity.d/labels.json"'
# An existing name in a %files destination folder that is a symlink to a host file (the
# target in $T only) is replaced in the image, never written through.
cp -a "$IMAGES/rootfs" "$T/evilbase2"
mkdir -p "$T/evilbase2/usr/local/bin" "$T/evilsrc"
echo orig > "$T/outside/victim"
echo new > "$T/evilsrc/tool"
ln -s "$T/outside/victim" "$T/evilbase2/usr/local/bin/tool"
printf 'Bootstrap: localimage\nFrom: %s\n%%files\n    %s /usr/local/bin/\n' "$T/evilbase2" "$T/evilsrc/tool" > "$T/evil2.def"
run "$HUTCH" build -q --sandbox "$T/evil2.sb" "$T/evil2.def"
check "%files onto a symlink of the base image replaces it inside the rootfs" '[ $RC -eq 0 ] && [ "$(cat "$T/outside/victim")" = orig ] && [ ! -L "$T/evil2.sb/usr/local/bin/tool" ] && [ "$(cat "$T/evil2.sb/usr/local/bin/tool")" = new ] && no_build_leftovers'

# A folder as the base: as root the stage is an overlay of it (recipe/stage.c:
# stage_overlay), a user's build copies it; either way the folder is never written, and the
# image holds what the sections appended, removed, replaced and chmod'ed.
cp -a "$IMAGES/rootfs" "$T/base"
mkdir -p "$T/base/opt/d"
echo keep > "$T/base/opt/d/k" && echo old > "$T/base/opt/f" && echo gone > "$T/base/opt/gone"
echo linked > "$T/base/opt/h1" && ln "$T/base/opt/h1" "$T/base/opt/h2" && chmod 0775 "$T/base"
tree_sum() { (cd "$1" && find . -printf '%p %y %m %U %G %s %T@ %l\n' | sort && find . -type f -exec md5sum {} + | sort); }
tree_sum "$T/base" > "$T/base.before"
cat > "$T/ov.def" <<EOF
Bootstrap: localimage
From: $T/base

%setup
    echo setup >> "\$APPTAINER_ROOTFS/opt/f"
%post
    echo post >> /opt/f
    rm /opt/gone
    rm -r /opt/d && mkdir /opt/d && echo new > /opt/d/n
    chmod 0700 /etc/hutch-test-marker
    echo more >> /opt/h1
    awk '\$5 == "/"' /proc/self/mountinfo | sed 's/.* - //' | cut -d' ' -f1 > /rootfs.type
EOF
run "$HUTCH" build -q "$T/ov.sif" "$T/ov.def"
check "a folder base: the build succeeds and leaves nothing" '[ $RC -eq 0 ] && no_build_leftovers'
run "$HUTCH" exec "$T/ov.sif" sh -c 'cat /opt/f; ls /opt | grep -v ^h; ls /opt/d; stat -c %a /etc/hutch-test-marker; cat /opt/d/n /rootfs.type'
check "... the image has what %setup and %post changed, removed and replaced" \
	'[ "$(head -7 "$OUT" | tr "\n" " ")" = "old setup post d f n 700 " ] && [ "$(sed -n 8p "$OUT")" = new ]'
[ "$MODE" = root ] && check "... as root its stage was an overlay of the folder, not a copy" '[ "$(sed -n 9p "$OUT")" = overlay ]'
run "$HUTCH" exec "$T/ov.sif" sh -c 'cat /opt/h2; stat -c "%h %i" /opt/h1 /opt/h2 | uniq | wc -l; stat -c %a /'
check "... hard links of the folder stay one file after a write to one name, and / keeps the folder's mode" \
	'out_is "linked
more
1
775"'
tree_sum "$T/base" > "$T/base.after"
check "... and the folder is as it was, byte for byte" 'cmp -s "$T/base.before" "$T/base.after"'
printf 'Bootstrap: localimage\nFrom: %s\n%%post\n    echo x >> /opt/f\n    rm /opt/gone\n    exit 3\n' "$T/base" > "$T/ovfail.def"
run "$HUTCH" build -q "$T/ovfail.sif" "$T/ovfail.def"
sed -i "/^+ /d" "$ERR" # the trace of %post
tree_sum "$T/base" > "$T/base.after"
check "a failed build on a folder base: the folder untouched, nothing left" \
	'fails_with "%post failed with exit status 3" && [ ! -e "$T/ovfail.sif" ] && no_build_leftovers && cmp -s "$T/base.before" "$T/base.after"'
if [ "$MODE" = root ]; then
	# a mount beneath the folder: an overlay would show the folder's own file system alone,
	# so the build copies (stage_overlay: mounts_beneath) and the image has what is mounted
	cp -a "$IMAGES/rootfs" "$T/mbase"
	mkdir -p "$T/mbase/opt/m"
	mount -t tmpfs none "$T/mbase/opt/m" && echo mounted > "$T/mbase/opt/m/file"
	printf 'Bootstrap: localimage\nFrom: %s\n' "$T/mbase" > "$T/mbase.def"
	run "$HUTCH" build -q "$T/mbase.sif" "$T/mbase.def"
	umount "$T/mbase/opt/m"
	run "$HUTCH" exec "$T/mbase.sif" cat /opt/m/file
	check "a folder with a mount beneath it: the image has the mounted files" 'out_is mounted && no_build_leftovers'
fi
cat > "$T/ovmulti.def" <<EOF
Bootstrap: localimage
From: $T/base
Stage: one

%post
    echo built > /opt/built

Bootstrap: localimage
From: $T/base
Stage: two

%files from one
    /opt/built /opt/from-one
EOF
run "$HUTCH" build -q --sandbox "$T/ovmulti.sb" "$T/ovmulti.def"
check "%files from a folder-based stage into a --sandbox (a real folder)" \
	'[ $RC -eq 0 ] && [ "$(cat "$T/ovmulti.sb/opt/from-one")" = built ] && [ ! -e "$T/ovmulti.sb/opt/built" ] && [ -f "$T/ovmulti.sb/opt/gone" ] && no_build_leftovers'
rm -rf "$T/ovmulti.sb"

# Bootstrap agents through hutch-registry: oci, docker-archive, docker (a registry on loopback)
H=$(dirname "$0")/../helpers
[ -f "$H/mkoci.py" ] || H=$(dirname "$0")
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY
export HUTCH_CACHEDIR=$T/cache
if python3 "$H/mkoci.py" "$T/oci" >/dev/null 2>&1; then
	printf 'Bootstrap: oci\nFrom: %s/oci:basic\n%%post\n    echo from-oci > /agent.txt\n' "$T" > "$T/oci.def"
	run "$HUTCH" build "$T/oci.sif" "$T/oci.def"
	check "Bootstrap: oci (hutch-registry's cache)" '[ $RC -eq 0 ] && err_has "Fetching oci:" && no_build_leftovers'
	run "$HUTCH" exec "$T/oci.sif" cat /agent.txt
	check "and %post ran on it" 'out_is from-oci'
	mkdir "$T/ntmp"
	run env HUTCH_TMPDIR="$T/ntmp" HUTCH_CACHEDIR="$T/nocache" "$HUTCH" build -q --disable-cache "$T/oci2.sif" "$T/oci.def"
	check "build --disable-cache of Bootstrap: oci: no cache made, its temporary image removed" '[ $RC -eq 0 ] && [ "$("$HUTCH" exec "$T/oci2.sif" cat /agent.txt)" = from-oci ] && [ ! -e "$T/nocache" ] && [ -z "$(ls -A "$T/ntmp")" ] && no_build_leftovers'
	rm -f "$T/oci2.sif"
	if command -v skopeo >/dev/null; then
		skopeo copy -q --insecure-policy "oci:$T/oci:basic" "docker-archive:$T/d.tar" 2>/dev/null
		printf 'Bootstrap: docker-archive\nFrom: %s/d.tar\n%%post\n    echo from-archive > /agent.txt\n' "$T" > "$T/da.def"
		run "$HUTCH" build -q "$T/da.sif" "$T/da.def"
		check "Bootstrap: docker-archive" '[ $RC -eq 0 ] && [ "$("$HUTCH" exec "$T/da.sif" cat /agent.txt)" = from-archive ]'
	fi
	if command -v skopeo >/dev/null && command -v docker-registry >/dev/null; then
		PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
		printf 'version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' "$T/reg" "$PORT" > "$T/reg.yml"
		docker-registry serve "$T/reg.yml" > "$T/reg.log" 2>&1 &
		REGPID=$!
		trap 'kill $REGPID 2>/dev/null; wait $REGPID 2>/dev/null; rm -rf "$T"' EXIT
		wait_for "curl -s -o /dev/null http://127.0.0.1:$PORT/v2/" 100
		skopeo copy -q --insecure-policy --dest-tls-verify=false "oci:$T/oci:basic" "docker://127.0.0.1:$PORT/test/busybox:basic" 2>/dev/null
		printf 'Bootstrap: docker\nRegistry: 127.0.0.1:%s\nNamespace: test\nFrom: busybox:basic\n%%post\n    echo from-docker > /agent.txt\n' "$PORT" > "$T/docker.def"
		run env HUTCH_NOHTTPS=1 "$HUTCH" build -q "$T/docker.sif" "$T/docker.def"
		check "Bootstrap: docker with Registry: and Namespace: (a registry on loopback)" '[ $RC -eq 0 ] && [ "$("$HUTCH" exec "$T/docker.sif" cat /agent.txt)" = from-docker ]'
		printf 'Bootstrap: docker\nFrom: 127.0.0.1:%s/test/busybox:nosuchtag\n' "$PORT" > "$T/docker2.def"
		run env HUTCH_NOHTTPS=1 "$HUTCH" build -q "$T/bad.sif" "$T/docker2.def"
		check "Bootstrap: docker of a missing tag: the registry's error, no target" '[ $RC -eq 255 ] && err_has "^hutch: error: " && [ ! -e "$T/bad.sif" ] && no_build_leftovers'
		kill $REGPID 2>/dev/null
		wait $REGPID 2>/dev/null
	fi
fi

# Bootstrap: debootstrap: a minbase Debian 12 with one package in %post, from the Debian
# mirror (about 2-3 minutes: a download and an install). HUTCH_TEST_DEBOOTSTRAP names the
# modes it runs in (root, user, both as "1"; dev.sh's release run sets "user": the rootless
# path, --fakeroot's user namespace with the subordinate ranges, is the harder one), once
# per run and mode (the SIF is kept in the run's folder). An unreachable mirror is a skip
# that says so, not a failure.
case ",${HUTCH_TEST_DEBOOTSTRAP:-}," in
*",1,"* | *",$MODE,"*) want_deb=1 ;;
*) want_deb= ;;
esac
if [ -n "$want_deb" ] && [ -x /usr/sbin/debootstrap ]; then
	deb=$TMPDIR/debootstrap-bookworm-$MODE.sif
	if ! curl -sf -o /dev/null --max-time 15 http://deb.debian.org/debian/dists/bookworm/Release; then
		echo "ok - Bootstrap: debootstrap # SKIP deb.debian.org cannot be reached from here"
	else
		printf 'Bootstrap: debootstrap\nOSVersion: bookworm\nMirrorURL: http://deb.debian.org/debian\n%%post\n    apt-get update -q && apt-get install -y -q --no-install-recommends hello\n%%runscript\n    exec hello\n' > "$T/deb.def"
		if [ ! -f "$deb" ]; then
			run "$HUTCH" build "$deb" "$T/deb.def"
			check "debootstrap checks the suite's Release signature with Debian's keyring" '[ $RC -eq 0 ] && grep -q "Valid Release signature" "$OUT" "$ERR"'
		fi
		run "$HUTCH" run "$deb"
		check "Bootstrap: debootstrap (minbase bookworm) with a package installed in %post" 'out_is "Hello, world!"'
		run "$HUTCH" exec "$deb" sh -c '. /etc/os-release; echo "$VERSION_CODENAME"; dpkg-query -W -f "\${Status}\n" hello'
		check "the debootstrap image is Debian bookworm with the package registered in dpkg's database" 'out_has "^bookworm$" && out_has "install ok installed"'
	fi
fi
printf 'Bootstrap: debootstrap\nMirrorURL: http://deb.debian.org/debian\n' > "$T/deb2.def"
run "$HUTCH" build -q "$T/bad.sif" "$T/deb2.def"
if ! command -v debootstrap >/dev/null && [ ! -x /usr/sbin/debootstrap ]; then
	check "Bootstrap: debootstrap without the tool names the package" 'fails_with "install the debootstrap package" && no_build_leftovers'
else
	check "Bootstrap: debootstrap without OSVersion" 'fails_with "needs .OSVersion: SUITE." && no_build_leftovers'
fi

# An interrupted build (SIGINT while %post runs) ends the step's processes and leaves nothing.
# a sleep no other process on the machine runs: 30 s and this run's pid in thousandths
slow="sleep 30.$(printf %03d $(($$ % 1000)))"
printf 'Bootstrap: localimage\nFrom: %s\n%%post\n    %s &\n    %s\n' "$I" "$slow" "$slow" > "$T/slow.def"
"$HUTCH" build -q "$T/int.sif" "$T/slow.def" >/dev/null 2>"$T/int.err" &
bpid=$!
wait_for 'pgrep -u "$(id -u)" -fx "$slow" >/dev/null' 100
kill -INT $bpid
wait $bpid
brc=$?
check "an interrupted build: its %post killed, no target, no build folder" '[ $brc -eq 255 ] && grep -q "interrupted by signal 2" "$T/int.err" && [ ! -e "$T/int.sif" ] && no_build_leftovers && wait_for "! pgrep -u $(id -u) -fx \"$slow\" >/dev/null" 20'

# The build folder is removed through descriptors: a %setup that moves the target's folder
# away and puts a symlink to another folder (holding a folder of the build folder's name)
# in its place makes the removal neither follow the symlink nor miss the real folder.
mkdir -p "$T/sub" "$T/victim"
cat > "$T/swap.def" <<EOF
Bootstrap: localimage
From: $I
%setup
    n=\$(basename "\$(dirname "\$APPTAINER_ROOTFS")")
    mv "$T/sub" "$T/sub2" && ln -s "$T/victim" "$T/sub" && mkdir "$T/victim/\$n" && touch "$T/victim/\$n/keep"
    exit 1
EOF
run "$HUTCH" build -q "$T/sub/swap.sif" "$T/swap.def"
check "a build folder moved under a symlink: the removal reaches the build's own folder, not the symlink's" '[ $RC -eq 255 ] && [ -f "$T"/victim/swap.sif.hutch-build-*/keep ] && [ -z "$(ls -A "$T/sub2")" ]'
rm -rf "$T/sub" "$T/sub2" "$T/victim"

# --update into an existing sandbox, --section to run only some sections
echo one > "$T/f1"
printf 'Bootstrap: scratch\n%%files\n    %s /f\n%%labels\n    L one\n%%runscript\n    echo one\n' "$T/f1" > "$T/up.def"
"$HUTCH" build -q --sandbox "$T/up.sb" "$T/up.def"
echo two > "$T/f1"
sed 's/one/two/' "$T/up.def" > "$T/up2.def"
run "$HUTCH" build -q --update --sandbox --section labels "$T/up.sb" "$T/up2.def"
check "--update --section labels: only the labels change in the sandbox" '[ $RC -eq 0 ] && [ "$(cat "$T/up.sb/f")" = one ] && grep -q "\"L\": \"two\"" "$T/up.sb/.singularity.d/labels.json" && grep -q "echo one" "$T/up.sb/.singularity.d/runscript" && no_build_leftovers'
run "$HUTCH" build -q --update --sandbox "$T/up.sb" "$T/up2.def"
check "--update: every section again" '[ $RC -eq 0 ] && [ "$(cat "$T/up.sb/f")" = two ] && grep -q "echo two" "$T/up.sb/.singularity.d/runscript"'
run "$HUTCH" build -q --update "$T/up.sif" "$T/up2.def"
check "--update needs an existing sandbox" 'fails_with "--update needs --sandbox" && [ ! -e "$T/up.sif" ]'
run "$HUTCH" build -q --section bogus --sandbox "$T/x.sb" "$T/up2.def"
check "--section of an unknown section" 'fails_with "not a section"'

# Bad definition files: one error line, status 255, no target, no build folder.
# the trace of a failing script (sh -x: "+ cmd" lines) set aside, hutch's one error line
drop_trace() { sed -i '/^+ /d' "$ERR"; }
bad() { # bad DESC EXPECTED DEF-TEXT [BUILD-ARGS]
	printf '%b' "$3" > "$T/bad.def"
	run "$HUTCH" build -q ${4:-} "$T/bad.sif" "$T/bad.def"
	drop_trace
	check "$1" "fails_with \"$2\" && [ ! -e \"$T/bad.sif\" ] && no_build_leftovers"
}
bad "no Bootstrap header" "no 'Bootstrap:' header" 'From: x\n%post\n    true\n'
bad "an unknown bootstrap agent" "unknown bootstrap agent 'nosuch'" 'Bootstrap: nosuch\n'
bad "localimage without From" "needs 'From: IMAGE'" 'Bootstrap: localimage\n'
bad "a From that does not exist" "From: '/nonexistent.sif': No such file" 'Bootstrap: localimage\nFrom: /nonexistent.sif\n'
bad "a %files source that does not exist" "%files: source '/nonexistent/file' does not exist" "Bootstrap: localimage\nFrom: $I\n%files\n    /nonexistent/file /x\n"
bad "%post exiting 3 names the section and the status" "%post failed with exit status 3" "Bootstrap: localimage\nFrom: $I\n%post\n    exit 3\n"
bad "a failing %test fails the build" "%test failed with exit status 1" "Bootstrap: localimage\nFrom: $I\n%test\n    false\n"
bad "an unterminated template" "bad.def:4: unterminated template '{{ x'" "Bootstrap: localimage\nFrom: $I\n%post\n    echo {{ x\n"
bad "a template without a value" "build argument 'who' has no value" "Bootstrap: scratch\n%post\n    echo {{ who }}\n"
bad "an unknown section, as Apptainer" "invalid section '%postinstall'" "Bootstrap: scratch\n%postinstall\n    true\n"
bad "a malformed Fingerprints: (t-fingerprints checks signatures)" "'12345678' is not a key fingerprint" "Bootstrap: localimage\nFrom: $I\nFingerprints: 12345678\n"
bad "a %files from an unknown stage" "no stage before this one is named 'nope'" "Bootstrap: scratch\n%files from nope\n    /x\n"
printf 'Bootstrap: localimage\nFrom: %s\n%%post\n    echo made > /made\n    exit 3\n' "$I" > "$T/keep.def"
run "$HUTCH" build -q --keep-build "$T/keep.sif" "$T/keep.def"
drop_trace
KEPT=$(sed -n 's/.*(build folder kept: \(.*\))$/\1/p' "$ERR" | tail -1)
check "--keep-build: a failed build keeps its folder, named in the error, with what %post made (not hutch's own files)" 'fails_with "%post failed with exit status 3" && [ ! -e "$T/keep.sif" ] && [ -n "$KEPT" ] && [ "$(cat "$KEPT/stage-1/made")" = made ] && [ ! -e "$KEPT/stage-1/.build.labels" ] && [ ! -e "$KEPT/stage-1/.post.script" ]'
[ -n "$KEPT" ] && case "$KEPT" in "$T"/keep.sif.hutch-build-*) chmod -R u+w "$KEPT"; rm -rf "$KEPT" ;; esac
run "$HUTCH" build -q --keep-build "$T/kept-ok.sif" "$T/up2.def"
check "--keep-build: a successful build still removes its folder" '[ $RC -eq 0 ] && [ -f "$T/kept-ok.sif" ] && no_build_leftovers'
run "$HUTCH" build -q --keep-build "$T/x.sif" "$I"
check "--keep-build is for definition files" 'fails_with "are for definition files"'
printf 'Bootstrap: localimage\nFrom: %s\n%%test\n    false\n' "$I" > "$T/failtest.def"
run "$HUTCH" build -q --notest "$T/notest.sif" "$T/failtest.def"
check "--notest skips %test" '[ $RC -eq 0 ] && [ -f "$T/notest.sif" ]'
run "$HUTCH" build -q --build-arg novalue "$T/bad.sif" "$T/failtest.def"
check "--build-arg without =" 'fails_with "KEY=VALUE"'
run "$HUTCH" exec "$T/all.def" true
check "a definition file given to exec says to build it" 'fails_with "is a definition file"'
leftovers "t-recipe"
finish
