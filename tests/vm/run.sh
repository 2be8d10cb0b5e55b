#!/bin/bash
# The VM tier: boots Debian's kernel (linux-image-amd64) under qemu-system-x86_64 (software
# emulation, no KVM needed) with a cgroup2-only hierarchy and every controller enabled, and
# runs integration tests there against hutch's cgroup v2 code path, as root and as a user with
# a delegated subtree. The host's root is shared read-only over 9p beneath a tmpfs overlay,
# so the guest runs the very binaries and scripts of this checkout and changes nothing here.
# Prints one TAP stream.
# usage: run.sh HUTCH [t-name...]        (default: t-cgroups)
set -u
hutch=$(readlink -f "$1")
shift
tests=("$@")
[ ${#tests[@]} -gt 0 ] || tests=(t-cgroups)
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)

bail() {
	echo "Bail out! $*"
	exit 1
}
[ "$(id -u)" -eq 0 ] || { echo "1..0 # SKIP the VM tier needs root (to read the host's root for the guest)"; exit 0; }
qemu=$(command -v qemu-system-x86_64) || bail "qemu-system-x86_64 is missing (package qemu-system-x86)"
busybox=$(command -v busybox) || bail "busybox is missing (package busybox-static)"
command -v cpio > /dev/null || bail "cpio is missing (package cpio)"
kernel= kver=
for k in $(ls -v /boot/vmlinuz-* 2>/dev/null); do
	v=${k#/boot/vmlinuz-}
	[ -f "/lib/modules/$v/modules.dep" ] && kernel=$k kver=$v
done
[ -n "$kernel" ] || bail "no kernel with modules in /boot and /lib/modules (package linux-image-amd64)"

work=$(mktemp -d /tmp/hutch-vm.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/initrd/bin" "$work/initrd/modules" "$work/initrd/proc" "$work/initrd/sys" "$work/initrd/dev" "$work/out"

# The modules the initramfs needs before the host's root is mounted, with what they depend
# on, deepest first, from the kernel's own modules.dep.
mods=/lib/modules/$kver
order=()
add_module() {
	local name=$1 line path dep
	line=$(grep -E "(^|/)$name\.ko(\.[a-z]+)?:" "$mods/modules.dep") || return 0 # built in
	path=${line%%:*}
	for dep in ${line#*:}; do
		dep=$(basename "$dep")
		add_module "${dep%%.ko*}"
	done
	case " ${order[*]-} " in *" $(basename "$path") "*) return 0 ;; esac
	case $path in
	*.ko) cp "$mods/$path" "$work/initrd/modules/" ;;
	*.ko.xz) xz -dc "$mods/$path" > "$work/initrd/modules/$(basename "${path%.xz}")" ;;
	*.ko.zst) zstd -qdc "$mods/$path" > "$work/initrd/modules/$(basename "${path%.zst}")" ;;
	*) bail "cannot read module $path" ;;
	esac
	order+=("$(basename "${path%.ko*}").ko")
}
for m in virtio_pci 9pnet_virtio 9p overlay; do add_module "$m"; done
printf '%s\n' "${order[@]}" > "$work/initrd/modules/order"
cp "$busybox" "$work/initrd/bin/busybox"
cp "$here/init" "$work/initrd/init"
chmod 0755 "$work/initrd/init"
(cd "$work/initrd" && find . | cpio -o -H newc --quiet) > "$work/initrd.cpio" || bail "cannot pack the initramfs"

cp "$here/guest.sh" "$work/out/guest.sh"
printf 'HUTCH=%q\nSRC=%q\nTESTS=%q\n' "$hutch" "$src" "${tests[*]}" > "$work/out/env"

# ~10 s to boot without KVM; the tests run some ten times slower than on the host. The
# 600 s cap stays under meson's 900 s, so a hung guest still ends in a TAP report.
timeout 600 "$qemu" -nodefaults -no-user-config -display none -no-reboot \
	-machine pc -accel tcg,thread=multi -cpu max -smp 2 -m 2048 \
	-kernel "$kernel" -initrd "$work/initrd.cpio" \
	-append "console=ttyS0 quiet panic=-1 mitigations=off" \
	-serial "file:$work/console.log" \
	-fsdev local,id=root,path=/,security_model=none,readonly=on,multidevs=remap \
	-device virtio-9p-pci,fsdev=root,mount_tag=hostroot \
	-fsdev local,id=out,path="$work/out",security_model=none \
	-device virtio-9p-pci,fsdev=out,mount_tag=out \
	> "$work/qemu.log" 2>&1
qrc=$?

n=0 fail=0
for mode in root user; do
	echo "# --- VM (cgroup v2, Linux $kver): $mode"
	if [ ! -f "$work/out/rc-$mode" ]; then
		fail=$((fail + 1)) n=$((n + 1))
		echo "not ok $n - VM tier: the $mode run did not finish (qemu status $qrc)"
		sed 's/^/#   console: /' "$work/console.log" | tail -40
		sed 's/^/#   qemu: /' "$work/qemu.log" | tail -5
		continue
	fi
	while IFS= read -r line; do
		case $line in
		"ok "*) n=$((n + 1)); echo "ok $n ${line#ok [0-9]* }" ;;
		"not ok "*) n=$((n + 1)); fail=$((fail + 1)); echo "not ok $n ${line#not ok [0-9]* }" ;;
		"1.."*) ;;
		*) echo "# $line" ;;
		esac
	done < "$work/out/tap-$mode"
	if [ "$(cat "$work/out/rc-$mode")" != 0 ] && ! grep -q '^not ok' "$work/out/tap-$mode"; then
		n=$((n + 1)) fail=$((fail + 1))
		echo "not ok $n - VM tier: the $mode run failed without a failing test"
	fi
done
echo "1..$n"
[ "$fail" -eq 0 ]
