#!/bin/bash
# hutch developer entry point, for a fresh Debian 12 machine (run as root, or with sudo).
#   ./dev.sh demo    install dependencies, build, run a container from a built-in busybox SIF
#   ./dev.sh test    install dependencies, build, run the whole test suite (+ ASan/UBSan run,
#                    + the cgroup v2 VM tier under qemu)
#   ./dev.sh bench   install the peer runtimes too and run bench/startup.sh
set -euo pipefail
cd "$(dirname "$0")"

# Every Debian package hutch needs, named once here (and once in meson.build for libraries).
BUILD_DEPS=(gcc meson ninja-build pkg-config libsquashfuse-dev libfuse3-dev libinih-dev libjson-c-dev zlib1g-dev liblzma-dev liblzo2-dev liblz4-dev libzstd-dev libdeflate-dev libseccomp-dev
	librnp-dev libssl-dev # librnp, libcrypto: hutch-sign (key, sign, verify)
	libext2fs-dev comerr-dev) # hutch-ext3: a user's ext3 overlays
RUN_DEPS=(fuse3 squashfs-tools uidmap
	e2fsprogs # overlay create (mkfs.ext3)
	librnp0 libssl3) # hutch-sign
TEST_DEPS=(libcmocka-dev python3 busybox-static golang-go golang-github-sylabs-sif-dev procps util-linux passwd clang-format qemu-system-x86 linux-image-amd64 cpio clang libclang-rt-14-dev)
# net/ (hutch-net): libnl for bridges; pasta (passt) and slirp4netns for user-mode networks
BUILD_DEPS+=(libnl-3-dev libnl-route-3-dev)
RUN_DEPS+=(passt slirp4netns)
# a bridge's published ports and masquerading (hutch-net, libnftables); tests read the rules with nft
BUILD_DEPS+=(libnftables-dev)
RUN_DEPS+=(libnftables1)
TEST_DEPS+=(nftables iproute2)
# valgrind over the unit tests (dev.sh test)
TEST_DEPS+=(valgrind)
# instances as systemd user units (hutch-systemd), tested with a real systemd --user
BUILD_DEPS+=(libsystemd-dev)
TEST_DEPS+=(systemd)
BENCH_DEPS=(bubblewrap charliecloud podman runc catatonit hyperfine bc time linux-perf)
# registry/ (hutch-registry): libcurl, libarchive, libcrypto; its tests run a real registry
BUILD_DEPS+=(libcurl4-openssl-dev libarchive-dev libssl-dev)
RUN_DEPS+=(libcurl4 libarchive13 libssl3)
TEST_DEPS+=(docker-registry skopeo apache2-utils openssl zstd curl tinyproxy podman catatonit)
BENCH_DEPS+=(umoci)
# recipe/ (build from definition files): Bootstrap: debootstrap runs the host's debootstrap
TEST_DEPS+=(debootstrap)
# Bootstrap: yum/dnf and zypper run the host's dnf and zypper; their tests make a repository
# with rpmbuild (package rpm) and createrepo_c, and sign its packages (rpmsign, gpg)
TEST_DEPS+=(dnf zypper rpm createrepo-c gnupg)
# the image server killed at a chosen system call (t-server): strace holds it there
TEST_DEPS+=(strace)

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

install_deps() {
	local missing=()
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		echo "dev.sh: installing ${missing[*]}"
		as_root apt-get update -qq
		as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	fi
	# squashfuse runs as the user: /dev/fuse must be usable by users, as on desktops and HPC nodes
	[ -c /dev/fuse ] && as_root chmod 0666 /dev/fuse
}

build() { # build DIR [meson options...]
	local dir=$1
	shift
	if [ -f "$dir/build.ninja" ]; then
		meson configure "$dir" "$@" >/dev/null
	else
		meson setup "$dir" "$@" >/dev/null
	fi
	meson compile -C "$dir" >/dev/null
}

demo() {
	install_deps "${BUILD_DEPS[@]}" "${RUN_DEPS[@]}" busybox-static
	build build -Dtests=false
	bash tests/helpers/mkimage.sh build/demo build/hutch
	local img=build/demo/image.sif
	echo "== built $img from busybox-static:"
	build/hutch sif list "$img"
	echo "== hutch exec $img ..."
	build/hutch exec "$img" sh -c 'echo "Hello from inside: $(uname -s), uid $(id -u), in $(pwd), image says: $(cat /etc/hutch-test-marker)"'
	echo "== hutch run $img (runscript):"
	build/hutch run "$img" one two
	echo "== hutch inspect $img:"
	build/hutch inspect "$img"
	echo "== an instance: the image's startscript serves http on 127.0.0.1:18080"
	build/hutch instance stop demo >/dev/null 2>&1 || true
	HUTCH_TEST_PORT=18080 build/hutch instance start "$img" demo
	build/hutch instance list
	build/hutch exec instance://demo sh -c 'wget -qO- http://127.0.0.1:18080/; ps -o pid,comm'
	build/hutch instance stop demo
}

# step TITLE CMD...: runs a meson test command; prints its time, and on failure which
# tests failed and how (FAIL, TIMEOUT, ...): the TAP logs alone do not show a timeout
step() {
	local title=$1 out start=$SECONDS rc=0
	shift
	out=$("$@" 2>&1) || rc=$?
	echo "dev.sh: $title: $((SECONDS - start)) s"
	[ "$rc" -eq 0 ] && return 0
	echo "dev.sh: FAILED: $title"
	grep -E ' (FAIL|TIMEOUT|ERROR|UNEXPECTEDPASS) ' <<<"$out" | head -10
	return 1
}

test_suite() {
	install_deps "${BUILD_DEPS[@]}" "${RUN_DEPS[@]}" "${TEST_DEPS[@]}"
	local status=0
	# house style: one .clang-format for all C files
	local fmt
	fmt=$(git ls-files -z '*.c' '*.h' | xargs -0 clang-format --dry-run -Werror 2>&1) || true
	if [ -n "$fmt" ]; then
		echo "$fmt" | head -20
		echo "not ok - clang-format: run clang-format -i on the files above"
		echo "dev.sh: FAILED: clang-format"
		status=1
	fi
	build build -Dtests=true
	# t-recipe's debootstrap build (a minbase Debian 12 from the mirror, 2-3 minutes) runs
	# once per suite: in the release build, as the user (HUTCH_TEST_DEBOOTSTRAP=root,user or
	# 1 for both modes; empty for none)
	HUTCH_TEST_DEBOOTSTRAP=${HUTCH_TEST_DEBOOTSTRAP-user} \
		step "release build: unit, integration (root and user), cgroup v2 VM tier" \
		meson test -C build --print-errorlogs || status=1
	# The same suite built with AddressSanitizer + UBSan. LeakSanitizer checks the unit tests;
	# in the integration run it cannot: its exit-time check forks a tracer, which the kernel
	# refuses in a --pid launcher whose PID namespace has lost its init.
	build build-asan -Dtests=true -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		step "ASan+UBSan: unit" meson test -C build-asan --suite unit --logbase testlog-unit --print-errorlogs ||
		status=1
	# valgrind over the release build's unit tests: no leak (definite or indirect) and no
	# invalid access. The few tests that need a syscall valgrind does not know (seccomp,
	# openat2, CLONE_VM) skip themselves under HUTCH_VALGRIND; ASan runs them above.
	step "valgrind: unit" meson test -C build --suite unit --no-rebuild --logbase testlog-valgrind --print-errorlogs \
		--wrapper "env HUTCH_VALGRIND=1 valgrind -q --leak-check=full --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect --error-exitcode=99" ||
		status=1
	# Integration under the sanitizers: every file as the user, and as root the files whose
	# code paths only root takes (bridges, root's cgroups, kernel overlays, system mounts);
	# the two side by side, as in the release run. Both modes of every file run in the
	# release build above. (t-systemd passes the sanitizer options on to its user manager's
	# environment: without detect_leaks=0 a hutch that joined an instance's PID namespace
	# hangs in LeakSanitizer's exit check, whose tracer cannot reach it from there.)
	ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		step "ASan+UBSan: integration as root (root-only paths)" meson test -C build-asan integration-root --no-rebuild \
		--logbase testlog-root --print-errorlogs --test-args "t-net t-cgroups t-overlay t-mounts t-lifecycle t-faults t-systemd" &
	local rootjob=$!
	ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		step "ASan+UBSan: integration as the user" meson test -C build-asan integration-user --no-rebuild \
		--logbase testlog-user --print-errorlogs || status=1
	wait "$rootjob" || status=1
	# the libFuzzer targets (tests/fuzz; only they: the rest is not built with clang): their
	# regression inputs, then 12 s each from the seed corpus (ten targets: the whole fuzz run
	# stays within 2 minutes); a finding fails the suite (its input is left in build-fuzz/)
	[ -f build-fuzz/build.ninja ] || CC=clang meson setup build-fuzz -Dtests=false -Dfuzz=true \
		-Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debugoptimized >/dev/null
	# (a target that does not build is a failure of its own: clang warns where gcc does not)
	if meson compile -C build-fuzz tests/fuzz/fuzz_squashfs tests/fuzz/fuzz_sif tests/fuzz/fuzz_conf tests/fuzz/fuzz_toml \
		tests/fuzz/fuzz_state tests/fuzz/fuzz_specs tests/fuzz/fuzz_net tests/fuzz/fuzz_recipe tests/fuzz/fuzz_oci \
		tests/fuzz/fuzz_sig >build-fuzz/compile.log 2>&1; then
		FUZZ_ARTIFACTS=build-fuzz bash tests/fuzz/run.sh build-fuzz 12 >build-fuzz/fuzz.log 2>&1 ||
			{ echo "dev.sh: FAILED: fuzz (build-fuzz/fuzz.log)"; status=1; }
	else
		grep -E 'error:' build-fuzz/compile.log | head -10 || true
		echo "not ok - fuzz targets do not build with clang (build-fuzz/compile.log)"
		echo "dev.sh: FAILED: fuzz build"
		status=1
		: >build-fuzz/fuzz.log
	fi
	local logs=(build/meson-logs/testlog.txt build-asan/meson-logs/testlog-unit.txt build/meson-logs/testlog-valgrind-env.txt build-asan/meson-logs/testlog-root.txt
		build-asan/meson-logs/testlog-user.txt build-fuzz/fuzz.log)
	grep -hE '^(not ok|Bail out)|\[  FAILED  \]|ERROR: (Address|Leak)Sanitizer|runtime error:' "${logs[@]}" | head -50 || true
	local pass fail
	pass=$(cat "${logs[@]}" | grep -cE '^ok [0-9]+|^\[       OK \]' || true)
	fail=$(cat "${logs[@]}" | grep -cE '^not ok [0-9]+|^\[  FAILED  \]' || true)
	for l in "${logs[@]}"; do [ -s "$l" ] || { echo "dev.sh: no test log $l"; status=1; }; done
	echo "logs: ${logs[*]}"
	echo "$pass passed, $fail failed"
	[ "$status" -eq 0 ] && [ "$fail" -eq 0 ]
}

bench() {
	install_deps "${BUILD_DEPS[@]}" "${RUN_DEPS[@]}" "${TEST_DEPS[@]}" "${BENCH_DEPS[@]}"
	build build -Dtests=true
	bash bench/startup.sh build/hutch
	bash bench/instances.sh build/hutch
}

case ${1:-} in
demo) demo ;;
test) test_suite ;;
bench) bench ;;
*) echo "usage: $0 demo|test|bench" >&2; exit 2 ;;
esac
