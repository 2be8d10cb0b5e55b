# What `meson install` puts beside hutch, used from the installed tree (run.sh installs the
# build into a staging root, $INSTALLED): ./image.sif through run-singularity and run-hutch.
. "$(dirname "$0")/lib.sh"
if [ -z "${INSTALLED:-}" ]; then
	notok "meson install into a staging root (see install.log in run.sh's work folder)"
	finish
fi
bin=$(dirname "$(find "$INSTALLED" -path '*/bin/run-singularity' | head -1)")
export PATH=$bin:$PATH

check "run-singularity and run-hutch are installed beside hutch" \
	'[ -x "$bin/hutch" ] && [ -x "$bin/run-singularity" ] && [ -x "$bin/run-hutch" ]'

# an image built by the installed hutch whose runscript echoes its arguments and exits 7
cp -a "$IMAGES/rootfs" "$T/root"
printf '#!/bin/sh\necho "args: $# $*"\nexit 7\n' > "$T/root/.singularity.d/runscript"
run "$bin/hutch" build "$T/exit7.sif" "$T/root"
chmod +x "$T/exit7.sif"
run "$T/exit7.sif" a "b c"
check "./image.sif ARGS runs the runscript with ARGS and exits with its status" 'out_is "args: 2 a b c" && [ $RC -eq 7 ]'
run "$bin/run-hutch" "$T/exit7.sif" x
check "run-hutch is the same script" 'out_is "args: 1 x" && [ $RC -eq 7 ]'
run sh -c "cd '$T' && ./exit7.sif"
check "a relative ./image.sif" 'out_is "args: 0 " && [ $RC -eq 7 ]'

# the hutch beside run-singularity wins over PATH's; a lone copy uses PATH's
mkdir -p "$T/decoy" "$T/alone"
printf '#!/bin/sh\necho decoy "$@"\n' > "$T/decoy/hutch"
chmod +x "$T/decoy/hutch"
run env PATH="$T/decoy:$PATH" "$T/exit7.sif" y
check "run-singularity uses the hutch of its own installation first" 'out_is "args: 1 y" && [ $RC -eq 7 ]'
cp "$bin/run-singularity" "$T/alone/"
run env PATH="$T/alone:$T/decoy:/usr/bin:/bin" "$T/exit7.sif" y
check "without a hutch beside it, run-singularity uses PATH's" "out_is 'decoy run $T/exit7.sif y'"
run env PATH="$T/alone:/usr/bin:/bin" "$T/exit7.sif" y
check "without any hutch: one error line, status 255" \
	'[ $RC -eq 255 ] && [ "$(wc -l < "$ERR")" -eq 1 ] && err_has "^run-singularity: error: hutch is neither beside"'

# Sylabs' fixtures with the launch line behave as 'hutch run' on them (their partitions hold
# placeholder bytes, so both refuse them the same way)
for f in one-group-signed-legacy.sif two-groups-signed-legacy-all.sif; do
	cp "$FIXTURES/$f" "$T/$f"
	chmod +x "$T/$f"
	run "$bin/hutch" run "$T/$f" x
	want_rc=$RC want_err=$(cat "$ERR")
	run "$T/$f" x
	check "fixture $f: ./image.sif is 'hutch run image.sif'" \
		'[ $RC -eq $want_rc ] && [ $RC -eq 255 ] && [ "$(cat "$ERR")" = "$want_err" ]'
done

leftovers "install"
finish
