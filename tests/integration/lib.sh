# TAP helpers for the integration tests: assertions over a real hutch run, temp folders,
# and a leftover check after every test (no FUSE server, init or mount left behind).
# Sourced by t-*.sh with HUTCH, IMAGES, SIFCHECK, FIXTURES set by run.sh.
set -u
T=$(mktemp -d "${TMPDIR:-/tmp}/hutch-t.XXXXXX")
trap 'rm -rf "$T"' EXIT
OUT=$T/out ERR=$T/err RC=0
MOUNTS_BEFORE=$(wc -l < /proc/self/mountinfo)
FAILED=0

ok() { echo "ok - $*"; }
notok() { echo "not ok - $*"; FAILED=1; }

# run CMD...: captures stdout/stderr/status
run() {
	"$@" >"$OUT" 2>"$ERR" </dev/null
	RC=$?
}

diag() {
	sed 's/^/#   out: /' "$OUT" | head -20
	sed 's/^/#   err: /' "$ERR" | head -20
	echo "#   rc: $RC"
}

# check DESC EXPR: EXPR is evaluated by the shell after the last run
check() {
	local desc=$1
	shift
	if eval "$@"; then ok "$desc"; else notok "$desc"; diag; fi
}

out_has() { grep -q -- "$1" "$OUT"; }
out_is() { [ "$(cat "$OUT")" = "$1" ]; }
err_has() { grep -q -- "$1" "$ERR"; }
# a failing hutch: status 255 and exactly one line "hutch: error: ..." containing $1
fails_with() {
	[ "$RC" -eq 255 ] && [ "$(wc -l < "$ERR")" -eq 1 ] && grep -q '^hutch: error: ' "$ERR" && grep -q -- "$1" "$ERR"
}
# a command line Apptainer's parser rejects: status 1, as Apptainer's
usage_fails_with() {
	[ "$RC" -eq 1 ] && [ "$(wc -l < "$ERR")" -eq 1 ] && grep -q '^hutch: error: ' "$ERR" && grep -q -- "$1" "$ERR"
}

# Nothing of hutch may outlive a payload: the FUSE server exits when the pidfd it watches
# reports the payload's end, which can trail the payload's exit by a moment.
hutch_procs() {
	pgrep -a -u "$(id -u)" -x hutch-squashfs
	pgrep -a -u "$(id -u)" -x hutch-sqfs-mon
	pgrep -a -u "$(id -u)" -x hutch-init
	pgrep -a -u "$(id -u)" -x hutch-supervise
	pgrep -a -u "$(id -u)" -x hutch-launch
	pgrep -a -u "$(id -u)" -x hutch-net
	pgrep -a -u "$(id -u)" -x hutch-fuse
	pgrep -a -u "$(id -u)" -x hutch-ext3
	pgrep -a -u "$(id -u)" -f '^(pasta|slirp4netns) .*/proc/self/fd/'
}

# instance state folders of the test user (none may be left after a test)
state_dirs() {
	ls -d "$HOME"/.hutch/instances/*/* "${XDG_RUNTIME_DIR:-/nonexistent}"/hutch/instances/* \
		"/run/user/$(id -u)"/hutch/instances/* 2>/dev/null
}

# wait_for EXPR [TENTHS]: poll until EXPR holds (default 5 s)
wait_for() {
	local i
	for i in $(seq "${2:-50}"); do
		eval "$1" && return 0
		sleep 0.1
	done
	return 1
}

# http_get PORT: the body of GET / on loopback (bash's /dev/tcp: no client needed)
http_get() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1" && printf 'GET / HTTP/1.0\r\n\r\n' >&3 && cat <&3) 2>/dev/null
}

no_leftovers() {
	local i
	for i in $(seq 50); do
		[ -z "$(hutch_procs)" ] && break
		sleep 0.1
	done
	[ -z "$(hutch_procs)" ] && [ "$(wc -l < /proc/self/mountinfo)" -eq "$MOUNTS_BEFORE" ] && [ -z "$(state_dirs)" ]
}

leftovers() {
	if no_leftovers; then ok "$1: nothing left behind"; else notok "$1: nothing left behind"; { hutch_procs; state_dirs; } | sed 's/^/#   /'; fi
}

finish() { exit 0; }
