#!/bin/bash
# Build the test/demo images from the machine's busybox-static: a sandbox folder with
# Apptainer's /.singularity.d metadata, the same as a squashfs file and (with hutch) a SIF.
# usage: mkimage.sh OUTDIR [HUTCH]   -> OUTDIR/rootfs, OUTDIR/image.sqfs, OUTDIR/image.sif
set -euo pipefail
out=$1
hutch=${2:-}
root=$out/rootfs
rm -rf "$root"
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,root,tmp,var/tmp,proc,sys,dev,home,srv/www}
cp /bin/busybox "$root/bin/busybox"
for app in $("$root/bin/busybox" --list); do
	[ "$app" = busybox ] || ln -sf busybox "$root/bin/$app"
done
cat > "$root/etc/passwd" <<'P'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
P
cat > "$root/etc/group" <<'G'
root:x:0:
nogroup:x:65534:
G
echo 'hello from the image' > "$root/srv/www/index.html"
echo 'image-marker' > "$root/etc/hutch-test-marker"
sd=$root/.singularity.d
mkdir -p "$sd/env" "$sd/libs" "$sd/actions"
cat > "$sd/runscript" <<'R'
#!/bin/sh
echo "runscript args: $*"
R
cat > "$sd/startscript" <<'R'
#!/bin/sh
exec httpd -f -p "${HUTCH_TEST_PORT:-8080}" -h /srv/www "$@"
R
cat > "$sd/test" <<'R'
#!/bin/sh
echo "test script ran"
exit 3
R
cat > "$sd/env/90-environment.sh" <<'R'
#!/bin/sh
export IMAGE_VAR="from-image"
export OVERRIDE_ME="image-value"
R
echo 'This image echoes its arguments.' > "$sd/runscript.help"
cat > "$sd/labels.json" <<'R'
{
	"org.label-schema.schema-version": "1.0",
	"maintainer": "hutch tests"
}
R
cat > "$sd/Singularity" <<'R'
bootstrap: localimage
from: busybox-static

%runscript
    echo "runscript args: $*"
R
chmod 755 "$sd/runscript" "$sd/startscript" "$sd/test" "$sd/env/90-environment.sh"
ln -sf .singularity.d/runscript "$root/singularity"
rm -f "$out/image.sqfs"
mksquashfs "$root" "$out/image.sqfs" -noappend -quiet -no-progress -all-root >/dev/null
if [ -n "$hutch" ]; then
	"$hutch" build -q --force "$out/image.sif" "$root"
fi
