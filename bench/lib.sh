# Sourced by the bench scripts (as root): the source tree, and the unprivileged user they
# run everything as, created when missing; /dev/fuse usable by users, as on HPC nodes.
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
user=hutchtest
id "$user" >/dev/null 2>&1 || useradd -m -s /bin/bash "$user"
chmod 0666 /dev/fuse
# copy_build HUTCH DIR: a build's hutch and, when it has them, its static image server and
# its init (which hutch finds beside itself) into DIR
copy_build() {
	mkdir -p "$2"
	cp "$1" "$2/hutch"
	for p in hutch-squashfs hutch-init; do
		if [ -x "$(dirname "$1")/$p" ]; then cp "$(dirname "$1")/$p" "$2/"; fi
	done
}

# Rootless podman leaves behind, unless told otherwise: its pause process (catatonit -P, the
# keeper of its user namespace), /dev/shm/libpod_rootless_lock_UID, its storage and network
# configuration in the user's home, and, through conmon's exit command (podman container
# cleanup, run after the container ends), its runtime folder re-created after it was removed.
# podman_setup WORK writes WORK/containers.conf and WORK/storage.conf, which put its files
# into WORK (pass podman the environment podman_env prints); podman_cleanup WORK ends all
# of it, then WORK can go. keyring = false: runc gives every container a session keyring,
# and 100 of them exceed the kernel's per-user key quota (kernel.keys.maxkeys). The storage
# driver is vfs, podman's own choice here without a storage.conf: --rootfs containers use
# no image layers, so it stays off the measured path.
podman_lock=/dev/shm/libpod_rootless_lock_$(id -u "$user")
podman_lock_was_there=
[ -e "$podman_lock" ] && podman_lock_was_there=1
podman_setup() {
	printf '[containers]\nkeyring = false\n[network]\nnetwork_config_dir = "%s/podman/net"\n' "$1" > "$1/containers.conf"
	printf '[storage]\ndriver = "vfs"\nrootless_storage_path = "%s/podman/storage"\n' "$1" > "$1/storage.conf"
}
podman_env() { echo "CONTAINERS_CONF=$1/containers.conf CONTAINERS_STORAGE_CONF=$1/storage.conf"; }
podman_cleanup() {
	local work=$1 i pid
	command -v podman >/dev/null && [ -e "$work/storage.conf" ] || return 0
	local as=(runuser -u "$user" -- env HOME="/home/$user" XDG_RUNTIME_DIR="$work/xdg" $(podman_env "$work"))
	"${as[@]}" podman rm -af -t 0 >/dev/null 2>&1 || true
	# conmon runs each container's exit command when it ends: wait for them all
	for i in $(seq 300); do
		pgrep -u "$user" -x conmon >/dev/null || pgrep -u "$user" -x podman >/dev/null || break
		sleep 0.1
	done
	# stops the pause process and removes its pid file (podman-system-migrate(1))
	pid=$(cat "$work/xdg/libpod/tmp/pause.pid" 2>/dev/null) || true
	"${as[@]}" podman system migrate >/dev/null 2>&1 || true
	if [ -n "$pid" ] && [ "$(stat -c %U "/proc/$pid" 2>/dev/null)/$(cat "/proc/$pid/comm" 2>/dev/null)" = "$user/catatonit" ]; then
		kill "$pid" 2>/dev/null || true
		for i in $(seq 50); do [ -e "/proc/$pid" ] || break; sleep 0.1; done
	fi
	[ -n "$podman_lock_was_there" ] || rm -f "$podman_lock"
}
