# Sourced by the bench scripts (as root): the source tree, and the unprivileged user they
# run everything as, created when missing; /dev/fuse usable by users, as on HPC nodes.
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
user=hutchtest
id "$user" >/dev/null 2>&1 || useradd -m -s /bin/bash "$user"
chmod 0666 /dev/fuse
# copy_build HUTCH DIR: a build's hutch and, when it has one, its static image server
# (which hutch finds beside itself) into DIR
copy_build() {
	mkdir -p "$2"
	cp "$1" "$2/hutch"
	if [ -x "$(dirname "$1")/hutch-squashfs" ]; then cp "$(dirname "$1")/hutch-squashfs" "$2/"; fi
}
