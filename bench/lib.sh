# Sourced by the bench scripts (as root): the source tree, and the unprivileged user they
# run everything as, created when missing; /dev/fuse usable by users, as on HPC nodes.
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
user=hutchtest
id "$user" >/dev/null 2>&1 || useradd -m -s /bin/bash "$user"
chmod 0666 /dev/fuse
