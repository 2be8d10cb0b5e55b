#!/bin/bash
# Run each libFuzzer target for a fixed time from the seed corpus in the tree (new inputs go
# to a temporary folder, never into the tree), after replaying its regression inputs; one
# TAP line per target. A finding fails the run: its input is kept as
# $FUZZ_ARTIFACTS/crash-... (default: the current folder), to be added to
# tests/fuzz/regressions/<target>/.
# usage: run.sh BUILDDIR SECONDS_PER_TARGET [TARGET...]   (BUILDDIR: a -Dfuzz=true build)
set -u
build=$1
secs=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(squashfs sif conf toml state specs net recipe oci sig)
art=${FUZZ_ARTIFACTS:-$PWD}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
n=0
fail=0
for t in "${targets[@]}"; do
	n=$((n + 1))
	bin=$build/tests/fuzz/fuzz_$t
	seeds=()
	# the image targets share the SIF seeds; the parsers have their own alone
	other=
	case $t in squashfs | sif) other=$here/corpus/sif ;; esac
	for d in "$here/corpus/$t" $other; do
		[ -d "$d" ] && seeds+=("$d")
	done
	mkdir -p "$work/$t"
	regress=("$here"/regressions/"$t"/*)
	log=$work/$t.log
	ok=1
	if [ -e "${regress[0]}" ] && ! "$bin" -runs=1 "${regress[@]}" >"$log" 2>&1; then
		ok=0
	fi
	if [ $ok = 1 ] && ! "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
		-print_final_stats=1 -artifact_prefix="$art/" "$work/$t" "${seeds[@]}" >"$log" 2>&1; then
		ok=0
	fi
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	if [ $ok = 1 ]; then
		echo "ok $n - fuzz_$t: ${execs:-?} executions in ${secs} s, no finding"
	else
		fail=$((fail + 1))
		echo "not ok $n - fuzz_$t: a finding (input in $art)"
		grep -E '^(==[0-9]+==ERROR|SUMMARY)|runtime error' "$log" | head -5 | sed 's/^/# /'
	fi
done
echo "1..$n"
[ $fail -eq 0 ]
