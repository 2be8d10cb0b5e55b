# What `meson install` puts beside hutch, used from the installed tree (run.sh installs the
# build into a staging root, $INSTALLED): ./image.sif through run-singularity and run-hutch,
# and the bash completion.
. "$(dirname "$0")/lib.sh"
if [ "${INSTALLED:-}" = none ]; then
	echo "ok - # SKIP $HUTCH is not in a meson build folder: nothing to install"
	finish
elif [ -z "${INSTALLED:-}" ]; then
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

# --- bash completion, sourced from where meson installed it
completion=$(find "$INSTALLED" -path '*/share/bash-completion/completions/hutch' | head -1)
check "the bash completion is installed in share/bash-completion/completions" '[ -f "$completion" ]'
mkdir -p "$T/cimg/d"
touch "$T/cimg/a.sif" "$T/cimg/b.sqfs" "$T/cimg/c.squashfs" "$T/cimg/e.txt"
# comp LINE: COMPREPLY for LINE with the cursor at its end (in $T/cimg), one per line in
# $OUT; the words split as bash splits them (at blanks, with ':' and '=' words of their own)
comp() {
	run bash -c '
		. "$1"
		cd "$3" || exit
		COMP_LINE=$2 COMP_POINT=${#2}
		read -ra COMP_WORDS <<<"$(sed "s/[:=]/ & /g" <<<"$2")"
		[[ $2 == *" " ]] && COMP_WORDS+=("")
		COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
		_hutch
		printf "%s\n" "${COMPREPLY[@]}"' _ "$completion" "$1" "$T/cimg"
}
sorted() { [ "$(sort "$OUT" | tr '\n' ' ')" = "$1 " ]; }
comp "hutch ex"
check "completion: a verb from its prefix" 'out_is exec'
comp "hutch -"
check "completion: the global options" 'sorted "-d -q -s -v"'
comp "hutch exec --conta"
check "completion: an option of exec" 'sorted "--contain --containall"'
comp "hutch exec --memory-s"
check "completion: a limit option of exec" 'out_is --memory-swap'
comp "hutch instance st"
check "completion: instance subcommands" 'sorted "start stats stop"'
comp "hutch instance logs --"
check "completion: the options of one instance subcommand" 'sorted "--err --follow --out --tail --user"'
comp "hutch exec $T/cimg/"
check "completion: image files and folders, not other files" "sorted '$T/cimg/a.sif $T/cimg/b.sqfs $T/cimg/c.squashfs $T/cimg/d'"
comp "hutch exec --bind /a:/b -e $T/cimg/a"
check "completion: the image after options and their arguments" "out_is '$T/cimg/a.sif'"
comp "hutch sif list $T/cimg/"
check "completion: sif list offers SIF files" "sorted '$T/cimg/a.sif $T/cimg/d'"

cp -a "$IMAGES/rootfs" "$T/sleeper"
printf '#!/bin/sh\nexec sleep 600\n' > "$T/sleeper/.singularity.d/startscript"
trap '"$bin/hutch" instance stop --force comptest >/dev/null 2>&1; rm -rf "$T"' EXIT
run "$bin/hutch" instance start "$T/sleeper" comptest
comp "hutch instance stop comp"
check "completion: the name of a running instance" 'out_is comptest'
comp "hutch exec instance://comp"
check "completion: instance://NAME (bash replaces what follows the ':')" 'out_is //comptest'
comp "hutch shell inst"
check "completion: instance:// among the images" 'out_is instance://comptest'
run "$bin/hutch" instance stop comptest

leftovers "install"
finish
