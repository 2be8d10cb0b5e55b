#!/bin/bash
# PID 1 of the VM tier's guest (see tests/vm/run.sh), in the host's userland seen through a
# tmpfs overlay: a cgroup2-only system with every controller enabled at the root. Runs the
# cgroup integration tests as root (in the root cgroup) and as the user 'hutchtest' given a
# delegated subtree, writes their TAP streams and status to /vm-out, and powers off.
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
. /vm-out/env # HUTCH, SRC, TESTS
poweroff() {
	sync
	echo o > /proc/sysrq-trigger
	sleep 30
}
trap poweroff EXIT

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /run
# fresh /tmp and /var/tmp, unless the checkout (or the build) is in one: the overlay's own
# copy stays writable then
for t in /tmp /var/tmp; do
	case "$SRC/ $HUTCH" in "$t"/* | *" $t"/*) ;; *) mount -t tmpfs tmpfs "$t" ;; esac
done
mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
ip link set lo up
hostname hutch-vm
modprobe fuse && chmod 0666 /dev/fuse
echo "guest: kernel $(uname -r), cgroup2 controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
for c in $(cat /sys/fs/cgroup/cgroup.controllers); do
	echo "+$c" > /sys/fs/cgroup/cgroup.subtree_control
done

# The tests' own switch for what they skip in the guest (the Go SIF oracle builds too slowly
# under emulation; the cgroup tests do not need it).
export HUTCH_IT_NO_GO=1
# ... and t-systemd runs only its batch limits part here (the instances' part is the host's)
export HUTCH_IT_VM=1

echo "guest: root"
bash "$SRC/tests/integration/run.sh" "$HUTCH" root $TESTS > /vm-out/tap-root 2>&1
echo $? > /vm-out/rc-root

# A delegated subtree, as systemd gives a user (Delegate=yes): the user owns the folder and
# its cgroup.procs, cgroup.subtree_control and cgroup.threads; its processes sit in a child
# ("session", which run.sh puts them in), so the subtree's top holds none and may enable
# controllers for hutch's cgroups.
user=hutchtest
id "$user" > /dev/null 2>&1 || useradd -m -s /bin/bash "$user"
d=/sys/fs/cgroup/$user
mkdir -p "$d/session"
chown "$user" "$d" "$d"/cgroup.procs "$d"/cgroup.subtree_control "$d"/cgroup.threads
chown -R "$user" "$d/session"
echo "guest: user $user, delegated $d"
HUTCH_TEST_CGROUP_PARENT=/$user bash "$SRC/tests/integration/run.sh" "$HUTCH" user $TESTS > /vm-out/tap-user 2>&1
echo $? > /vm-out/rc-user
echo "guest: done"
