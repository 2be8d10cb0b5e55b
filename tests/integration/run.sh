#!/bin/bash
# Integration driver: builds the busybox test images once, then runs every t-*.sh as the
# requested identity under a subreaper, and prints one TAP stream.
# usage: run.sh HUTCH root|user [t-name...]
#   root: as root;  user: as the unprivileged user 'hutchtest' (created when missing)
#   Each mode has a second user of its own (AUX_USER: hutchtest3 for root's run, hutchtest2
#   for the user's), for tests that act as another user: the two modes run at the same time
#   (tests/meson.build), and a test's leftover checks look at its own users' processes only.
#   HUTCH_TEST_CGROUP_PARENT: a cgroup v2 subtree delegated to that user (tests/vm/)
set -u
hutch=$(readlink -f "$1")
mode=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
builddir=$(dirname "$hutch")
reaper=$builddir/tests/reaper
fixtures=/usr/share/gocode/src/github.com/sylabs/sif/test/images

[ "$(id -u)" -eq 0 ] || { echo "1..0 # SKIP run.sh needs root to set up users"; exit 0; }
# squashfuse needs /dev/fuse usable by users, as on any desktop or HPC node
chmod 0666 /dev/fuse

# the test image's startscript serves http on HUTCH_TEST_PORT: a port of each mode's own,
# so both modes' instances can run at once (a test that needs another port sets its own)
user=root aux=hutchtest3 tport=18190
if [ "$mode" = user ]; then
	user=hutchtest aux=hutchtest2 tport=18290
	id "$user" >/dev/null 2>&1 || useradd -m -s /bin/bash "$user"
fi
id "$aux" >/dev/null 2>&1 || useradd -m -s /bin/bash "$aux"
work=$(mktemp -d /tmp/hutch-it.XXXXXX)
# the decompressed-file cache of a user without XDG_RUNTIME_DIR: gone after the run unless
# it was there before
shm=/dev/shm/hutch-$(id -u "$user")
[ -e "$shm" ] && shm=
trap 'rm -rf "$work" ${shm:+"$shm"}' EXIT
chmod 0755 "$work"
# The user may not be able to enter the clone (e.g. a checkout under /root): give it copies
# of the binaries and scripts in the work folder, which it owns.
mkdir -p "$work/bin" "$work/tests"
cp "$hutch" "$work/bin/hutch"
# hutch's other programs, found beside hutch (libexec_program): the static image server
# (absent from sanitizer builds) and the programs of verbs with libraries of their own
for p in "$builddir"/hutch-*; do
	[ -f "$p" ] && [ -x "$p" ] && cp "$p" "$work/bin/"
done
cp "$reaper" "$work/bin/reaper"
cp "$builddir/tests/killfirst" "$work/bin/killfirst"
cp "$builddir/tests/reaper-static" "$work/bin/reaper-static"
cp "$builddir/tests/sdnotify-static" "$work/bin/sdnotify-static"
cp "$here"/*.sh "$src/tests/helpers/mkimage.sh" "$src/tests/helpers/craft.py" "$src/tests/helpers/mkoci.py" \
	"$src/tests/helpers/badreg.py" "$src/tests/helpers/hkpserver.py" "$work/tests/"
# `meson install` of the build into a staging root (t-install: run-singularity, completion);
# "none" when HUTCH is not in a meson build folder (a copied binary)
installed=none
if [ -e "$builddir/build.ninja" ]; then
	installed=$work/inst
	meson install -C "$builddir" --destdir "$installed" --no-rebuild --quiet >"$work/install.log" 2>&1 || installed=
fi
hutch=$work/bin/hutch reaper=$work/bin/reaper here=$work/tests
chown -R "$user" "$work"
as_user() {
	if [ "$user" = root ]; then
		"$@"
	elif [ -n "${HUTCH_TEST_CGROUP_PARENT:-}" ]; then
		# Only the user's processes may sit in its delegated subtree (enabling cpuset there
		# checks every task in it): enter the subtree's "session" as root, then become the
		# user without leaving a root process behind (setpriv execs, where runuser forks).
		(echo "$BASHPID" > "/sys/fs/cgroup$HUTCH_TEST_CGROUP_PARENT/session/cgroup.procs" &&
			exec setpriv --reuid="$user" --regid="$user" --init-groups "$@")
	else
		runuser -u "$user" -- "$@"
	fi
}
as_user env HOME="$(getent passwd "$user" | cut -d: -f6)" bash "$here/mkimage.sh" "$work/img" "$hutch" >/dev/null ||
	{ echo "Bail out! cannot build test images"; exit 1; }
sifcheck= sifverify=
# (HUTCH_IT_NO_GO: the VM tier, where building it under emulation takes minutes)
if [ -z "${HUTCH_IT_NO_GO:-}" ] && command -v go >/dev/null && [ -d /usr/share/gocode/src/github.com/sylabs/sif ]; then
	GOPATH=/usr/share/gocode GO111MODULE=off GOCACHE=$work/gocache GOFLAGS=-mod=mod \
		go build -o "$work/sifcheck" "$src/tests/helpers/sifcheck.go" 2>"$work/go.err" && sifcheck=$work/sifcheck
	# pkg/integrity imports the module path .../sif/v2: a GOPATH entry of its own maps it
	mkdir -p "$work/gopath/src/github.com/sylabs/sif"
	ln -s /usr/share/gocode/src/github.com/sylabs/sif "$work/gopath/src/github.com/sylabs/sif/v2"
	GOPATH=$work/gopath:/usr/share/gocode GO111MODULE=off GOCACHE=$work/gocache GOFLAGS=-mod=mod \
		go build -o "$work/sifverify" "$src/tests/helpers/sifverify.go" 2>>"$work/go.err" && sifverify=$work/sifverify
	chmod -R a+rX "$work" 2>/dev/null
fi

# each file's time limit (HUTCH_TEST_FILE_TIMEOUT, seconds)
file_timeout=${HUTCH_TEST_FILE_TIMEOUT:-420}
tests=("$@")
[ ${#tests[@]} -gt 0 ] || tests=($(cd "$here" && ls t-*.sh | sed 's/\.sh$//'))
n=0
fail=0
for t in "${tests[@]}"; do
	echo "# --- $t ($mode)"
	# tests that stage what only root can (a system hutch.conf, a second user) run as root
	# and run hutch as TEST_USER themselves
	runner=as_user
	start=$SECONDS
	case $t in t-policy | t-attack | t-trust | t-faults) runner=env ;; esac
	out=$(cd "$work" && $runner env TEST_USER="$user" AUX_USER="$aux" HUTCH_TEST_PORT="$tport" HUTCH="$hutch" IMAGES="$work/img" SIFCHECK="$sifcheck" SIFVERIFY="$sifverify" KILLFIRST="$work/bin/killfirst" FIXTURES="$fixtures" INSTALLED="$installed" REAPER_STATIC="$work/bin/reaper-static" SDNOTIFY_STATIC="$work/bin/sdnotify-static" \
		MODE="$mode" SRC="$src" CGROUP_PARENT="${HUTCH_TEST_CGROUP_PARENT:-}" HOME="$(getent passwd "$user" | cut -d: -f6)" TMPDIR="$work" \
		timeout -k 10 "$file_timeout" "$reaper" bash "$here/$t.sh" 2>&1)
	rc=$?
	# a hung file is one failure of its own, not the end of the whole run
	[ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && out+=$'\n'"not ok - $t timed out after $file_timeout s"
	while IFS= read -r line; do
		case $line in
		"ok "*) n=$((n + 1)); echo "ok $n ${line#ok }" ;;
		"not ok "*) n=$((n + 1)); fail=$((fail + 1)); echo "not ok $n ${line#not ok }" ;;
		*) echo "# $line" ;;
		esac
	done <<< "$out"
	echo "# $t ($mode): $((SECONDS - start)) s"
done
echo "1..$n"
[ "$fail" -eq 0 ]
