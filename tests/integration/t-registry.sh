# Registries: pull docker:// images from a real registry (Debian's docker-registry on
# loopback, plain HTTP and TLS with basic auth) into SIFs with Apptainer's metadata, run
# them straight from docker://, the blob cache (one download, shared, offline by digest),
# credentials, ORAS push/pull, and every bad input as one error line with nothing left.
. "$(dirname "$0")/lib.sh"
for tool in docker-registry skopeo openssl htpasswd zstd python3 curl; do
	command -v "$tool" >/dev/null || { notok "registry tests need $tool (dev.sh TEST_DEPS)"; finish; }
done
REGBIN=$(dirname "$HUTCH")/hutch-registry
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; rm -rf "$T"' EXIT
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY
export HUTCH_CACHEDIR=$T/cache
H=$(dirname "$0")/../helpers
[ -f "$H/mkoci.py" ] || H=$(dirname "$0")
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_registry NAME [tls]: a docker-registry on a free loopback port, its access log in
# $T/NAME.log; sets PORT
start_registry() {
	local name=$1 tls=${2:-}
	PORT=$(free_port)
	{
		printf 'version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n'
		printf 'storage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\n' "$T/$name-data"
		printf 'http:\n  addr: 127.0.0.1:%s\n' "$PORT"
		if [ -n "$tls" ]; then
			printf '  tls:\n    certificate: %s\n    key: %s\n' "$T/srv.pem" "$T/srv.key"
			printf 'auth:\n  htpasswd:\n    realm: hutch-test\n    path: %s\n' "$T/htpasswd"
		fi
	} > "$T/$name.yml"
	docker-registry serve "$T/$name.yml" > "$T/$name.log" 2>&1 &
	PIDS+=($!)
	wait_for "curl -sk -o /dev/null https://127.0.0.1:$PORT/v2/ 2>/dev/null || curl -s -o /dev/null http://127.0.0.1:$PORT/v2/" 100
}

python3 "$H/mkoci.py" "$T/oci" || { notok "cannot write the test images"; finish; }
start_registry plain
P=$PORT R=127.0.0.1:$PORT
push() { skopeo copy -q --insecure-policy --dest-tls-verify=false "$@" >"$T/skopeo.err" 2>&1; }
for t in basic layers zstd plain; do push "oci:$T/oci:$t" "docker://$R/test/busybox:$t" || { notok "skopeo push $t"; cat "$T/skopeo.err"; finish; }; done
push --all "oci:$T/oci:multi" "docker://$R/test/busybox:multi" || { notok "skopeo push multi"; cat "$T/skopeo.err"; finish; }
export HUTCH_NOHTTPS=1
blob_gets() { grep -c '"GET /v2/[^ ]*/blobs/sha256:' "$T/plain.log"; }
requests() { grep -c '"[A-Z]* /v2/' "$T/plain.log"; }
W=$T/w
mkdir "$W"
cd "$W" || exit 1
left() { ls -A "$W" | grep -v -x -e "$@"; }

# ---- pull and what the SIF holds
run "$HUTCH" pull "docker://$R/test/busybox:basic"
check "pull writes Apptainer's default name REPO_TAG.sif" '[ $RC -eq 0 ] && [ -f busybox_basic.sif ] && [ -z "$(left busybox_basic.sif)" ]'
check "off a terminal, progress as quiet lines: one per blob with its size, no bar" 'err_has "Copying blob sha256:[0-9a-f]\{12\} (layer, [0-9.]*[KM]*i*B)$" && err_has "Pulled docker://" && ! grep -q "$(printf "\r\|\033")" "$ERR"'
run "$HUTCH" -q pull --force "docker://$R/test/busybox:basic"
check "pull -q is silent" '[ $RC -eq 0 ] && [ ! -s "$ERR" ] && [ ! -s "$OUT" ]'
if command -v script >/dev/null; then
	# a terminal (script's pty): a bar per blob, redrawn in place, each done in the end
	script -q -e -c "$HUTCH pull --disable-cache $T/tty.sif docker://$R/test/busybox:layers" /dev/null > "$T/tty.out" 2>&1
	RC=$?
	check "on a terminal, a progress bar per blob" '[ $RC -eq 0 ] && [ -f "$T/tty.sif" ] && [ "$(grep -ao "[0-9a-f]\{12\} \[=*\] 100% [0-9.]*[KM]*i*B/[0-9.]*[KM]*i*B done" "$T/tty.out" | sort -u | wc -l)" -eq 4 ] && ! grep -q "^INFO: *Copying blob" "$T/tty.out"'
	rm -f "$T/tty.sif"
fi
run "$HUTCH" run busybox_basic.sif
check "run: ENTRYPOINT with CMD as arguments, in the caller's folder (Apptainer enters no WorkingDir)" '[ $RC -eq 0 ] && [ "$(cat "$OUT")" = "entry:ep:one two words
$W" ]'
run "$HUTCH" run --pwd /srv/app busybox_basic.sif
check "run --pwd: there" '[ $RC -eq 0 ] && out_has "^/srv/app$"'
run "$HUTCH" run --no-eval busybox_basic.sif '$HOME' 'a"b'
check "run --no-eval: the arguments reach ENTRYPOINT unevaluated (SINGULARITY_NO_EVAL inside)" '[ $RC -eq 0 ] && out_has "^entry:ep:\$HOME a\"b$"'
run "$HUTCH" run busybox_basic.sif '$PWD'
check "run without --no-eval evaluates them, as Apptainer" '[ $RC -eq 0 ] && out_has "^entry:ep:$W$"'
run "$HUTCH" run busybox_basic.sif "a b" c
check "run ARGS replace CMD" '[ $RC -eq 0 ] && out_has "^entry:ep:a b c$"'
run "$HUTCH" exec busybox_basic.sif sh -c 'echo "$GREETING|$QUOTED|$PATH"; cat /srv/app/hard'
check "the config's Env, quoted exactly, the default PATH's other folders after its PATH (Apptainer's fixpath); hard links kept" '[ $RC -eq 0 ] && out_has "^hello from config|a \"b\" \$c|/usr/local/bin:/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin$" && out_has "^app data$"'
run env GREETING=host HOSTONLY=h "$HUTCH" exec busybox_basic.sif sh -c 'echo "$GREETING|$HOSTONLY|$(env | grep -c HUTCH_HOST)"'
check "the image's ENV wins over the caller's variable of that name; others pass; nothing of the mechanism shows" 'out_is "hello from config|h|0"'
run env GREETING=host "$HUTCH" exec --env GREETING=forced busybox_basic.sif sh -c 'echo "$GREETING"'
check "--env wins over the image's ENV" 'out_is forced'
run "$HUTCH" exec busybox_basic.sif cat /.singularity.d/runscript /.singularity.d/Singularity
check "runscript as Apptainer writes it, deffile bootstrap: docker" "out_has \"^OCI_ENTRYPOINT='\\\"/bin/sh\\\" \\\"-c\\\"\" && out_has '^eval \"set \${SINGULARITY_OCI_RUN}\"' && out_has \"^bootstrap: docker\$\" && out_has \"^from: $R/test/busybox:basic\$\""
run "$HUTCH" inspect -e busybox_basic.sif
check "inspect -e: the Docker env script and Apptainer's 90-environment.sh" 'out_has "^=== /.singularity.d/env/10-docker2singularity.sh ===" && out_has "^=== /.singularity.d/env/90-environment.sh ===" && out_has "^# Custom environment shell code should follow"'
run "$HUTCH" inspect busybox_basic.sif
check "inspect shows the config's labels and the build's, as Apptainer's" '[ $RC -eq 0 ] && out_has "org.hutch.test: yes" && out_has "^org.label-schema.build-arch: " && out_has "^org.label-schema.usage.singularity.deffile.bootstrap: docker$" && out_has "^org.label-schema.usage.singularity.deffile.from: $R/test/busybox:basic$"'
DIG=$(curl -sI -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$R/v2/test/busybox/manifests/basic" | tr -d '\r' | sed -n 's/^[Dd]ocker-[Cc]ontent-[Dd]igest: //p')
run "$HUTCH" pull --dir "$T" bydigest.sif "docker://$R/test/busybox@$DIG"
check "pull by digest, --dir" '[ $RC -eq 0 ] && [ -f "$T/bydigest.sif" ]'
run "$HUTCH" pull -U --name named.sif "docker://$R/test/busybox@$DIG"
check "pull --name FILE (Apptainer's hidden spelling of OUTPUT); -U accepted" '[ $RC -eq 0 ] && [ -s named.sif ] && "$HUTCH" exec named.sif true'
run "$HUTCH" pull --name a.sif b.sif "docker://$R/test/busybox@$DIG"
check "... --name and OUTPUT both: refused, nothing written" 'usage_fails_with "name the file twice" && [ ! -e a.sif ] && [ ! -e b.sif ]'
run "$HUTCH" pull "docker://$R/test/busybox:layers"
run "$HUTCH" exec busybox_layers.sif sh -c 'ls /srv/opq; cat /etc/marker; echo; ls /etc/gone /srv/keep /srv/opq/old /srv/opq/sub 2>&1 | wc -l; cat /etc/ro/added; stat -c %a /etc/ro'
check "whiteouts and opaque folders applied exactly; folder modes kept" '[ $RC -eq 0 ] && [ "$(cat "$OUT")" = "new
layers
4
added
555" ]'
run "$HUTCH" exec busybox_layers.sif stat -c %F /etc/devnull
if [ "$(id -u)" -eq 0 ]; then
	check "root keeps device nodes" '[ $RC -eq 0 ] && out_is "character special file"'
else
	check "a user's pull leaves device nodes out, as Apptainer" '[ $RC -ne 0 ] && err_has "No such file"'
fi
run "$HUTCH" pull "docker://$R/test/busybox:zstd"
run "$HUTCH" exec busybox_zstd.sif cat /etc/marker
check "a zstd layer" '[ $RC -eq 0 ] && out_is zstd'
run "$HUTCH" pull "docker://$R/test/busybox:plain"
run "$HUTCH" run busybox_plain.sif
check "an uncompressed layer; CMD alone" '[ $RC -eq 0 ] && out_is "plain cmd"'
if [ "$(uname -m)" = x86_64 ]; then
	run "$HUTCH" pull "docker://$R/test/busybox:multi"
	run "$HUTCH" exec busybox_multi.sif cat /etc/marker
	check "an index: the caller's architecture" '[ $RC -eq 0 ] && out_is amd64'
fi
run "$HUTCH" pull --arch arm64 arm.sif "docker://$R/test/busybox:multi"
run "$HUTCH" exec arm.sif cat /etc/marker
check "an index: --arch" '[ $RC -eq 0 ] && out_is arm64'
run "$HUTCH" pull --arch s390x s390x.sif "docker://$R/test/busybox:multi"
check "an architecture the index lacks: one error naming those it has" 'fails_with "no linux/s390x variant (it has: linux/arm64/v8, linux/amd64)" && [ ! -e s390x.sif ]'
run "$HUTCH" pull "docker://$R/test/busybox:basic"
check "an existing file is kept without --force" 'fails_with "already exists; use --force"'

# ---- the cache
n=$(blob_gets)
run "$HUTCH" pull --force again.sif "docker://$R/test/busybox:basic"
check "a cached image fetches no blob again" '[ $RC -eq 0 ] && [ "$(blob_gets)" -eq "$n" ]'
n=$(requests)
run "$HUTCH" pull --force again.sif "docker://$R/test/busybox@$DIG"
check "a cached image by digest makes no request at all" '[ $RC -eq 0 ] && [ "$(requests)" -eq "$n" ]'
run "$HUTCH" exec "docker://$R/test/busybox:zstd" cat /etc/marker
check "exec docker://: runs the cached image" '[ $RC -eq 0 ] && out_is zstd'
run "$HUTCH" exec "docker://$R/test/busybox:latest" true
check "exec docker:// of a missing tag: one error line" 'fails_with "no such image"'
run "$HUTCH" build --sandbox built "docker://$R/test/busybox:zstd"
check "build --sandbox DIR docker://: a folder of the image" '[ $RC -eq 0 ] && [ "$(cat built/etc/marker)" = zstd ]'
run "$HUTCH" build nobuilt.sif "docker://$R/test/busybox:latest"
check "build from a missing tag: one error line, no target" 'fails_with "no such image" && [ ! -e nobuilt.sif ]'
n=$(blob_gets)
run "$HUTCH" run "docker://$R/test/busybox:plain"
check "run docker://: the cache's copy, no blob fetched" '[ $RC -eq 0 ] && out_is "plain cmd" && [ "$(blob_gets)" -eq "$n" ]'
# --disable-cache: pulled into a temporary folder, not the cache, and removed as soon as the
# run has it open (the run sees the folder empty: /tmp is bound in)
mkdir "$T/ntmp"
cache_before=$(find "$T/cache" | sort)
n=$(blob_gets)
run env HUTCH_TMPDIR="$T/ntmp" "$HUTCH" exec --disable-cache "docker://$R/test/busybox:zstd" sh -c 'cat /etc/marker; echo; ls -A "$1"; echo "[$APPTAINER_CONTAINER]"' sh "$T/ntmp"
check "exec --disable-cache docker://: a temporary image, gone once open, the cache untouched" '[ $RC -eq 0 ] && out_has "^zstd$" && out_has "^\[$T/ntmp/hutch-image-[A-Za-z0-9]*/image.sif\]$" && [ "$(wc -l < "$OUT")" -eq 2 ] && [ -z "$(ls -A "$T/ntmp")" ] && [ "$(find "$T/cache" | sort)" = "$cache_before" ] && [ "$(blob_gets)" -gt "$n" ]'
run env APPTAINER_DISABLE_CACHE=1 TMPDIR="$T/ntmp" "$HUTCH" run "docker://$R/test/busybox:plain"
check "run docker:// with APPTAINER_DISABLE_CACHE, in \$TMPDIR" '[ $RC -eq 0 ] && out_is "plain cmd" && [ -z "$(ls -A "$T/ntmp")" ] && [ "$(find "$T/cache" | sort)" = "$cache_before" ]'
run env HUTCH_TMPDIR="$T/ntmp" "$HUTCH" exec --disable-cache "docker://$R/test/busybox:latest" true
check "exec --disable-cache of a missing tag: one error line, no temporary folder left" 'fails_with "no such image" && [ -z "$(ls -A "$T/ntmp")" ]'
run env HUTCH_TMPDIR="$T/nosuch" "$HUTCH" exec --disable-cache "docker://$R/test/busybox:zstd" true
check "exec --disable-cache with a temporary folder that does not exist: one line" 'fails_with "cannot create a temporary folder in .$T/nosuch."'
run env HUTCH_TMPDIR="$T/ntmp" "$HUTCH" exec --disable-cache --bind /nonexistent-src:/x "docker://$R/test/busybox:zstd" true
check "a run that fails after the pull removes its temporary image" '[ $RC -ne 0 ] && err_has "nonexistent-src" && [ -z "$(ls -A "$T/ntmp")" ]'
run env HUTCH_TMPDIR="$T/ntmp" "$HUTCH" instance start --disable-cache "docker://$R/test/busybox:zstd" nocache
check "instance start --disable-cache docker://: refused in one line" 'fails_with "an instance.s registry image runs from the cache" && [ -z "$(ls -A "$T/ntmp")" ]'
run env HUTCH_TMPDIR="$T/ntmp" "$HUTCH" build --disable-cache nc.sif "docker://$R/test/busybox:zstd"
check "build --disable-cache TARGET docker://: no temporary image left" '[ $RC -eq 0 ] && [ -f nc.sif ] && [ -z "$(ls -A "$T/ntmp")" ] && [ "$(find "$T/cache" | sort)" = "$cache_before" ]'
rm -f nc.sif
n=$(blob_gets)
HUTCH_CACHEDIR=$T/cache2 "$HUTCH" -q pull c1.sif "docker://$R/test/busybox:layers" 2>"$T/c1.err" &
c1=$!
HUTCH_CACHEDIR=$T/cache2 "$HUTCH" -q pull c2.sif "docker://$R/test/busybox:layers" 2>"$T/c2.err"
c2=$?
wait $c1
c1=$?
check "two concurrent pulls of one image both succeed" '[ $c1 -eq 0 ] && [ $c2 -eq 0 ] && [ -f c1.sif ] && [ -f c2.sif ]'
check "and fetch each of its 4 blobs once" '[ "$(( $(blob_gets) - n ))" -eq 4 ]'
rm -f c1.sif c2.sif again.sif arm.sif

# ---- local sources and instances
skopeo copy -q --insecure-policy "oci:$T/oci:zstd" "oci-archive:$T/z.tar" && skopeo copy -q --insecure-policy "oci:$T/oci:basic" "docker-archive:$T/d.tar" || notok "skopeo writes archives"
run "$HUTCH" pull "oci:$T/oci:layers"
run "$HUTCH" exec oci_layers.sif cat /etc/marker
check "pull oci:DIR:TAG" '[ $RC -eq 0 ] && out_is layers'
run "$HUTCH" pull "oci:$T/oci"
check "oci:DIR holding several images needs a TAG" 'fails_with "holds 5 images: name one"'
run "$HUTCH" pull "oci-archive:$T/z.tar"
run "$HUTCH" exec z.tar_latest.sif cat /etc/marker
check "pull oci-archive:FILE, to Apptainer's default name FILE_latest.sif" '[ $RC -eq 0 ] && out_is zstd'
run "$HUTCH" pull "docker-archive:$T/d.tar"
run "$HUTCH" run d.tar_latest.sif x
check "pull docker-archive:FILE (docker save's format)" '[ $RC -eq 0 ] && out_has "^entry:ep:x$"'
run "$HUTCH" exec "oci:$T/oci:plain" cat /etc/marker
check "exec oci:DIR:TAG" '[ $RC -eq 0 ] && out_is plain'
cp -r "$T/oci" "$T/oci-bad"
for l in $(find "$T/oci-bad/blobs/sha256" -size +100k); do
	printf x | dd of="$l" bs=1 seek=100 conv=notrunc status=none
done
run "$HUTCH" pull --disable-cache bad.sif "oci:$T/oci-bad:basic"
check "an OCI layout's blob that does not match its digest" 'fails_with "does not match its digest" && [ ! -e bad.sif ]'
no_pull_left() { ! ls -a | grep -q "hutch-pull"; }
# the archive's files are read-only (as skopeo writes them): made writable for the edits
mkdir -p "$T/dx" && tar -C "$T/dx" -xf "$T/d.tar" && chmod -R u+w "$T/dx" && cp "$T/dx/manifest.json" "$T/dx/m.orig"
sed -i 's/"Config":"/"Config":"..\/..\//' "$T/dx/manifest.json" && tar -C "$T/dx" -cf "$T/dbad.tar" .
run "$HUTCH" pull --disable-cache x.sif "docker-archive:$T/dbad.tar"
check "a docker archive whose Config names a file outside it" 'fails_with "is not a name inside it" && [ ! -e x.sif ] && no_pull_left'
mv -f "$T/dx/m.orig" "$T/dx/manifest.json" && for c in "$T"/dx/*.json; do
        [ "${c##*/}" = manifest.json ] || echo " " >>"$c"
done && tar -C "$T/dx" -cf "$T/dbad.tar" .
run "$HUTCH" pull --disable-cache x.sif "docker-archive:$T/dbad.tar"
check "a docker archive whose config does not match its name's digest" 'fails_with "does not match its digest" && [ ! -e x.sif ] && no_pull_left'
rm -rf "$T/dx" "$T/dbad.tar"
run "$HUTCH" pull x.sif "docker-archive:$T/nonexistent.tar"
check "a missing archive" 'fails_with "nonexistent.tar" && [ ! -e x.sif ]'
# docker-daemon:IMAGE[:TAG]: exported by a Docker Engine API at DOCKER_HOST, here podman's
# service on a socket of the test's, with storage of its own holding an image loaded from a
# docker archive the test makes
if command -v podman >/dev/null; then
	PM=$T/pm DI=hutch-u$(id -u)/dd:v1
	mkdir -p "$PM/xdg" && chmod 700 "$PM/xdg"
	PMO=(--root "$PM/st" --runroot "$PM/run" --tmpdir "$PM/tmp" --storage-driver vfs --cgroup-manager cgroupfs --events-backend file)
	pm() { XDG_RUNTIME_DIR=$PM/xdg podman "${PMO[@]}" "$@"; }
	skopeo copy -q --insecure-policy "oci:$T/oci:basic" "docker-archive:$T/dd.tar:$DI" && pm load -q -i "$T/dd.tar" >"$PM/load.log" 2>&1 || { notok "podman load"; cat "$PM/load.log"; }
	# podman itself in the background (not the function's subshell): $! is its pid
	XDG_RUNTIME_DIR=$PM/xdg podman "${PMO[@]}" system service --time=0 "unix://$PM/docker.sock" >"$PM/service.log" 2>&1 &
	pmpid=$!
	PIDS+=($pmpid)
	wait_for "curl -s -o /dev/null --unix-socket $PM/docker.sock http://d/_ping" 100
	export DOCKER_HOST=unix://$PM/docker.sock
	run "$HUTCH" pull "docker-daemon:$DI"
	check "pull docker-daemon:IMAGE:TAG from the Engine API at DOCKER_HOST" '[ $RC -eq 0 ] && [ -f dd_v1.sif ] && err_has "Exporting $DI from the Docker daemon at $DOCKER_HOST"'
	run "$HUTCH" run dd_v1.sif x
	check "... the image as it was loaded: its runscript" '[ $RC -eq 0 ] && out_has "^entry:ep:x$"'
	run "$HUTCH" exec "docker-daemon:$DI" cat /etc/marker
	check "exec docker-daemon:" '[ $RC -eq 0 ] && out_is base'
	printf 'Bootstrap: docker-daemon\nFrom: %s\n\n%%post\n    echo built > /etc/built\n' "$DI" > "$T/dd.def"
	run "$HUTCH" build dd-built.sif "$T/dd.def"
	[ $RC -eq 0 ] || sed "s/^/# build: /" "$ERR"
	run "$HUTCH" exec dd-built.sif cat /etc/marker /etc/built
	check "build from Bootstrap: docker-daemon" '[ $RC -eq 0 ] && out_is basebuilt'
	rm -f dd-built.sif
	run "$HUTCH" -q pull x.sif "docker-daemon:${DI%/*}/nosuch:v1"
	check "an image the daemon does not have: one line" 'fails_with "no such image .${DI%/*}/nosuch:v1. in the Docker daemon at $DOCKER_HOST" && [ ! -e x.sif ] && no_pull_left'
	run env DOCKER_HOST="unix://$T/nodaemon.sock" "$HUTCH" -q pull x.sif "docker-daemon:$DI"
	check "no daemon: one line naming the socket" 'fails_with "cannot reach the Docker daemon at unix://$T/nodaemon.sock: No such file or directory" && [ ! -e x.sif ] && no_pull_left'
	if [ ! -e /var/run/docker.sock ]; then
		run env -u DOCKER_HOST "$HUTCH" -q pull x.sif "docker-daemon:$DI"
		check "DOCKER_HOST unset: Docker's socket, named" 'fails_with "cannot reach the Docker daemon at unix:///var/run/docker.sock: "'
	fi
	run "$HUTCH" pull x.sif "docker-daemon:../../containers/json"
	check "docker-daemon: of no image name" '[ $RC -eq 255 ] && err_has "names no image" && [ ! -e x.sif ]'
	run env DOCKER_HOST=ssh://host "$HUTCH" pull x.sif "docker-daemon:$DI"
	check "a DOCKER_HOST of another kind" 'fails_with "DOCKER_HOST .ssh://host.: hutch takes unix:///PATH or tcp://HOST:PORT" && no_pull_left'
	unset DOCKER_HOST
	rm -f dd_v1.sif
	kill "$pmpid"
	wait "$pmpid" 2>/dev/null
	# rootless podman: its files in the storage are the user's subordinate ids, and it left
	# its pause process
	[ "$(id -u)" -eq 0 ] || pm unshare rm -rf "$PM/st"
	[ -s "$PM/tmp/pause.pid" ] && kill "$(cat "$PM/tmp/pause.pid")"
else
	notok "docker-daemon: needs podman (dev.sh TEST_DEPS)"
fi
rm -f oci_layers.sif z.tar_latest.sif d.tar_latest.sif
run env APPTAINER_DISABLE_CACHE=1 "$HUTCH" instance start "docker://$R/test/busybox:basic" regtest
run "$HUTCH" exec instance://regtest cat /etc/marker
check "instance start docker:// (from the cache even with APPTAINER_DISABLE_CACHE set: its image must outlive the start)" '[ $RC -eq 0 ] && out_is base'
"$HUTCH" instance stop regtest >/dev/null 2>&1
run "$HUTCH" cache list
check "cache list counts the SIFs and blobs" '[ $RC -eq 0 ] && out_has "There are [1-9][0-9]* container file(s) using .* and [1-9][0-9]* oci blob file(s)" && out_has "^Total space used: " && out_has "Image cache folder: $T/cache"'
run "$HUTCH" cache clean --type oci --days 1
check "cache clean --type oci (Apptainer's name for the converted SIFs) --days keeps newer entries" '[ $RC -eq 0 ] && [ -n "$(ls "$T/cache/oci-tmp/"*.sif)" ]'
run "$HUTCH" cache clean --type sif
check "cache clean --type sif empties oci-tmp, keeps the blobs" '[ $RC -eq 0 ] && [ -z "$(ls "$T/cache/oci-tmp/"*.sif 2>/dev/null)" ] && [ -n "$(ls "$T/cache/blob/blobs/sha256")" ]'
n=$(blob_gets)
run "$HUTCH" exec "docker://$R/test/busybox:basic" true
check "a SIF made again from cached blobs, none fetched" '[ $RC -eq 0 ] && [ "$(blob_gets)" -eq "$n" ]'
run "$HUTCH" cache clean --type blob,sif
check "cache clean --type blob,sif" '[ $RC -eq 0 ] && [ -z "$(ls "$T/cache/blob/blobs/sha256")" ]'
run "$HUTCH" cache clean --type nope
check "cache clean --type of no kind" 'fails_with "--type takes blob, sif (or Apptainer"'

# ---- errors: one line, nothing left
before=$(ls -A "$W" | sort | tr '\n' ' ')
cache_clean() { ! find "$T/cache" "$T/cache2" "$T/cache3" $(ls -d "$T/cache4" 2>/dev/null) -name '*.part' -o -name '*hutch-pull*' -o -name '*hutch-tmp*' | grep -q .; }
run "$HUTCH" pull "docker://$R/test/busybox:nosuchtag"
check "a missing tag" 'fails_with "no such image" && [ "$(ls -A "$W" | sort | tr "\n" " ")" = "$before" ]'
run "$HUTCH" pull "docker://$R/test/nosuchrepo:v1"
check "a missing repository" 'fails_with "no such image"'
run "$HUTCH" pull x.sif "docker://127.0.0.1:$(free_port)/test/busybox:basic"
check "a registry that is down" 'fails_with "cannot reach" && [ ! -e x.sif ]'
run "$HUTCH" pull x.sif "docker://$R/Test/Upper"
check "a malformed reference" 'fails_with "not a valid repository name"'
run "$HUTCH" pull x.sif "docker://$R/test/busybox@sha256:$(printf %064d 0)"
check "a digest nobody has" 'fails_with "no such image" && [ ! -e x.sif ]'
for mode in corrupt truncate bearer; do
	rm -f "$T/bad.port" "$T/bad.port.log"
	python3 "$H/badreg.py" "$T/oci" "$mode" "$T/bad.port" &
	PIDS+=($!)
	wait_for '[ -s "$T/bad.port" ]'
	run env HUTCH_CACHEDIR="$T/cache3" "$HUTCH" -q pull x.sif "docker://127.0.0.1:$(cat "$T/bad.port")/test/busybox:basic"
	case $mode in
	corrupt) check "a blob that does not match its digest" 'fails_with "does not match its digest" && [ ! -e x.sif ] && cache_clean' ;;
	truncate) check "a truncated blob" 'fails_with "blob sha256:[0-9a-f]*" && [ ! -e x.sif ] && cache_clean' ;;
	bearer)
		check "anonymous bearer tokens (Docker Hub's way)" '[ $RC -eq 0 ] && [ -f x.sif ] && grep -q "^GET /token?scope=repository%3Atest%2Fbusybox%3Apull&service=badreg -$" "$T/bad.port.log"'
		check "one token for the whole pull" '[ "$(grep -c "^GET /token" "$T/bad.port.log")" -eq 1 ] && [ "$(grep -c "Bearer tok-anon" "$T/bad.port.log")" -ge 2 ]'
		rm -f x.sif
		;;
	esac
done
check "nothing left under a final or temporary name" '[ "$(ls -A "$W" | sort | tr "\n" " ")" = "$before" ] && cache_clean'
# a layer is unpacked while it downloads: the server holds back its second half until the
# layer's first folder is in the pull's work folder
rm -f "$T/bad.port" "$T/bad.port.log"
BADREG_WATCH="$W/stream.sif.hutch-pull-*/rootfs/bin" python3 "$H/badreg.py" "$T/oci" slow "$T/bad.port" &
PIDS+=($!)
wait_for '[ -s "$T/bad.port" ]'
run env HUTCH_CACHEDIR="$T/cache4" "$HUTCH" -q pull stream.sif "docker://127.0.0.1:$(cat "$T/bad.port")/test/busybox:basic"
check "a layer is unpacked while it downloads (its first half unpacked before its second is sent)" '[ $RC -eq 0 ] && grep -q "^streamed sha256:" "$T/bad.port.log" && ! grep -q "not streamed" "$T/bad.port.log" && no_pull_left && cache_clean'
run "$HUTCH" exec stream.sif cat /etc/marker
check "... and the image it made is whole" '[ $RC -eq 0 ] && out_is base'
rm -f stream.sif
# a full disk: a small tmpfs of a mount namespace of our own
if unshare -rm true 2>/dev/null; then
	mkdir "$T/small"
	run unshare -rm sh -c 'mount -t tmpfs -o size=600k tmpfs "$1" && cd "$1" && HUTCH_CACHEDIR="$1/cache" "$2" pull full.sif "docker://$3/test/busybox:layers"; r=$?; ls -A "$1" "$1/cache/blob/blobs/sha256" "$1/cache/oci-tmp" >&2; exit $r' sh "$T/small" "$HUTCH" "$R"
	check "a full disk: one error, no partial file" '[ $RC -eq 255 ] && grep -q "^hutch: error: .*[Nn]o space left" "$ERR" && ! grep -q "full.sif\|\.part\|hutch-pull\|hutch-tmp" "$ERR"'
fi

# ---- TLS and basic auth
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$T/ca.key" -out "$T/ca.pem" -days 1 -subj /CN=hutch-test-ca 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$T/srv.key" -out "$T/srv.csr" -subj /CN=127.0.0.1 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\n' > "$T/ext"
openssl x509 -req -in "$T/srv.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" -CAcreateserial -out "$T/srv.pem" -days 1 -extfile "$T/ext" 2>/dev/null
htpasswd -Bbn alice s3cret > "$T/htpasswd"
start_registry tls tls
S=127.0.0.1:$PORT
push --dest-creds alice:s3cret "oci:$T/oci:basic" "docker://$S/private/busybox:v1" || { notok "skopeo push to the TLS registry"; cat "$T/skopeo.err"; }
unset HUTCH_NOHTTPS
export SSL_CERT_FILE=$T/ca.pem
run env HUTCH_DOCKER_USERNAME=alice HUTCH_DOCKER_PASSWORD=s3cret "$HUTCH" pull tls.sif "docker://$S/private/busybox:v1"
check "TLS with the test's CA, basic auth from HUTCH_DOCKER_USERNAME/PASSWORD" '[ $RC -eq 0 ] && [ -f tls.sif ]'
run env APPTAINER_DOCKER_USERNAME=alice APPTAINER_DOCKER_PASSWORD=wrong "$HUTCH" pull --disable-cache tls2.sif "docker://$S/private/busybox:v1"
check "a wrong password (APPTAINER_DOCKER_*)" 'fails_with "refused\|HTTP 401" && [ ! -e tls2.sif ]'
run "$HUTCH" pull --disable-cache tls2.sif "docker://$S/private/busybox:v1"
check "no credentials" 'fails_with "needs credentials" && [ ! -e tls2.sif ]'
run env SSL_CERT_FILE=/dev/null HUTCH_DOCKER_USERNAME=alice HUTCH_DOCKER_PASSWORD=s3cret "$HUTCH" pull --disable-cache tls2.sif "docker://$S/private/busybox:v1"
check "a certificate no CA vouches for" 'fails_with "cannot reach https://" && [ ! -e tls2.sif ]'
echo s3cret | "$HUTCH" remote login --username alice --password-stdin "docker://$S" >"$OUT" 2>"$ERR"
RC=$?
check "remote login checks and stores the credentials, 0600" '[ $RC -eq 0 ] && [ "$(stat -c %a "$HOME/.hutch/docker-config.json")" = 600 ]'
run "$HUTCH" pull --disable-cache tls3.sif "docker://$S/private/busybox:v1"
check "pull with the stored credentials" '[ $RC -eq 0 ] && [ -f tls3.sif ]'
echo wrong | "$HUTCH" remote login --username alice --password-stdin "docker://$S" >"$OUT" 2>"$ERR"
RC=$?
check "remote login with a wrong password fails, storing nothing" 'fails_with "refused"'
run "$HUTCH" remote logout "docker://$S"
run "$HUTCH" pull --disable-cache tls4.sif "docker://$S/private/busybox:v1"
check "remote logout forgets them" 'fails_with "needs credentials"'
run "$HUTCH" remote logout "docker://$S"
check "logout when not logged in" 'fails_with "not logged in"'
mkdir -p "$T/dockercfg"
printf '{"auths":{"%s":{"auth":"%s"}}}' "$S" "$(printf alice:s3cret | base64)" > "$T/dockercfg/config.json"
run env DOCKER_CONFIG="$T/dockercfg" "$HUTCH" pull --disable-cache tls5.sif "docker://$S/private/busybox:v1"
check "credentials from Docker's config.json" '[ $RC -eq 0 ] && [ -f tls5.sif ]'
# insecure = true in podman's registries.conf: TLS no CA vouches for is accepted
printf '[[registry]]\nlocation = "%s"\ninsecure = true\n' "$S" > "$T/regs-tls.conf"
run env CONTAINERS_REGISTRIES_CONF="$T/regs-tls.conf" SSL_CERT_FILE=/dev/null HUTCH_DOCKER_USERNAME=alice HUTCH_DOCKER_PASSWORD=s3cret "$HUTCH" pull --disable-cache tls6.sif "docker://$S/private/busybox:v1"
check "a registry insecure in registries.conf: its certificate unverified" '[ $RC -eq 0 ] && [ -f tls6.sif ]'
# an insecure registry redirecting blobs and manifests to another port of its host (blob
# storage elsewhere): TLS verified there (libcurl would keep verification off across a
# redirect it followed, and a host compared without its port was the registry's own)
rm -f "$T/bad.port" "$T/bad.port.log"
BADREG_TLS=$T/srv.pem:$T/srv.key python3 "$H/badreg.py" "$T/oci" redirect "$T/bad.port" &
PIDS+=($!)
wait_for '[ -s "$T/bad.port" ]'
B=127.0.0.1:$(cat "$T/bad.port")
printf '[[registry]]\nlocation = "%s"\ninsecure = true\n' "$B" > "$T/regs-redir.conf"
run env CONTAINERS_REGISTRIES_CONF="$T/regs-redir.conf" SSL_CERT_FILE=/dev/null "$HUTCH" -q pull --disable-cache redir.sif "docker://$B/test/busybox:basic"
check "an insecure registry's blob redirected to another port: verified there" 'fails_with "download of blob sha256:[0-9a-f]* from https://127.0.0.1:[0-9]*/v2/test/busybox/blobs/sha256:[0-9a-f]* failed: .*[Cc]ert" && [ ! -e redir.sif ] && no_pull_left'
if [ "$(uname -m)" = x86_64 ]; then
	run env CONTAINERS_REGISTRIES_CONF="$T/regs-redir.conf" SSL_CERT_FILE=/dev/null "$HUTCH" -q pull --disable-cache redir.sif "docker://$B/test/busybox:multi"
	check "... and a manifest redirected so" 'fails_with "cannot reach https://127.0.0.1:[0-9]*/v2/test/busybox/manifests/sha256:[0-9a-f]* (a redirect of https://$B/.*[Cc]ert" && [ ! -e redir.sif ]'
fi
run env CONTAINERS_REGISTRIES_CONF="$T/regs-redir.conf" "$HUTCH" pull --disable-cache redir.sif "docker://$B/test/busybox:multi"
check "redirects of an insecure registry followed, verified with the CA" '[ $RC -eq 0 ] && [ -f redir.sif ] && [ "$(grep -c "^B GET /v2/test/busybox/blobs/" "$T/bad.port.log")" -ge 2 ] && grep -q "^B GET /v2/test/busybox/manifests/sha256:" "$T/bad.port.log"'
rm -f redir.sif
# ---- proxies: libcurl takes http_proxy, https_proxy and no_proxy from the environment, and
# loopback is not exempt from them (only no_proxy exempts a host); Debian's tinyproxy here
if command -v tinyproxy >/dev/null; then
	TP=127.0.0.1:$(free_port)
	printf 'Port %s\nListen 127.0.0.1\nTimeout 30\nLogFile "%s"\nLogLevel Connect\nMaxClients 50\nAllow 127.0.0.1\n' "${TP#*:}" "$T/proxy.log" > "$T/proxy.conf"
	tinyproxy -d -c "$T/proxy.conf" > "$T/proxy.out" 2>&1 &
	PIDS+=($!)
	wait_for "curl -s -o /dev/null --proxy http://$TP http://$R/v2/" 100
	reqs() { grep -c "Request (file descriptor [0-9]*): $1" "$T/proxy.log"; }
	n=$(reqs "GET http://$R/v2/test/busybox/blobs/")
	run env HUTCH_NOHTTPS=1 http_proxy=http://$TP "$HUTCH" -q pull --disable-cache px.sif "docker://$R/test/busybox:zstd"
	check "http_proxy: a pull over plain HTTP goes through the proxy" '[ $RC -eq 0 ] && [ -f px.sif ] && [ "$(reqs "GET http://$R/v2/test/busybox/blobs/")" -ge $((n + 2)) ]'
	n=$(reqs "CONNECT $S ")
	run env https_proxy=http://$TP HUTCH_DOCKER_USERNAME=alice HUTCH_DOCKER_PASSWORD=s3cret "$HUTCH" -q pull --disable-cache pxs.sif "docker://$S/private/busybox:v1"
	check "https_proxy: TLS through the proxy (CONNECT), verified end to end" '[ $RC -eq 0 ] && [ -f pxs.sif ] && [ "$(reqs "CONNECT $S ")" -gt $n ]'
	n=$(grep -c "Request (" "$T/proxy.log")
	run env HUTCH_NOHTTPS=1 http_proxy=http://$TP https_proxy=http://$TP no_proxy=example.test,127.0.0.1 "$HUTCH" -q pull --disable-cache px2.sif "docker://$R/test/busybox:zstd"
	check "no_proxy: a registry it names is reached directly" '[ $RC -eq 0 ] && [ -f px2.sif ] && [ "$(grep -c "Request (" "$T/proxy.log")" -eq $n ]'
	dp=$(free_port)
	run env HUTCH_NOHTTPS=1 http_proxy=http://127.0.0.1:$dp "$HUTCH" -q pull --disable-cache px3.sif "docker://$R/test/busybox:zstd"
	check "a proxy that is down: one error line naming its address" 'fails_with "cannot reach http://$R: Failed to connect to 127.0.0.1 port $dp " && [ ! -e px3.sif ]'
	rm -f px.sif pxs.sif px2.sif
else
	notok "the proxy tests need tinyproxy (dev.sh TEST_DEPS)"
fi
unset SSL_CERT_FILE
rm -f tls*.sif

# ---- podman's registries.conf, plain HTTP: insecure = true lets a pull fall back to it
printf '# hutch test\n[[registry]]\nlocation = "%s"\ninsecure = true\n[[registry.mirror]]\nlocation = "x.test"\n' "$R" > "$T/regs.conf"
run env CONTAINERS_REGISTRIES_CONF="$T/regs.conf" "$HUTCH" pull --disable-cache ins.sif "docker://$R/test/busybox:basic"
check "insecure in registries.conf: plain HTTP without --no-https" '[ $RC -eq 0 ] && [ -f ins.sif ]'
printf '[[registry]]\nlocation = "%s/other"\ninsecure = true\n' "$R" > "$T/regs-other.conf"
run env CONTAINERS_REGISTRIES_CONF="$T/regs-other.conf" "$HUTCH" pull --disable-cache ins2.sif "docker://$R/test/busybox:basic"
check "a plain HTTP registry not listed: one error line naming both ways" 'fails_with "cannot reach https://$R: .*--no-https, or insecure = true for it in registries.conf" && [ ! -e ins2.sif ]'
mkdir -p "$T/regs.d"
printf '[registries.insecure]\nregistries = ["%s"]\n' "$R" > "$T/regs.d/50-v1.conf"
mkdir -p "$T/home/.config/containers"
cp "$T/regs-other.conf" "$T/home/.config/containers/registries.conf"
ln -s "$T/regs.d" "$T/home/.config/containers/registries.conf.d"
run env HOME="$T/home" "$HUTCH" remote login --username u --password p "docker://$R"
check "the user's registries.conf and its drop-ins (version 1's list): remote login over plain HTTP" '[ $RC -eq 0 ] && err_has "Logged in to $R"'
printf '[[registry]]\nlocation = "%s/test"\nblocked = true\n' "$R" > "$T/regs-block.conf"
run env CONTAINERS_REGISTRIES_CONF="$T/regs-block.conf" "$HUTCH" pull --no-https ins3.sif "docker://$R/test/busybox:basic"
check "blocked = true: one error line, no request" 'fails_with "registry $R/test/busybox is blocked in registries.conf" && [ ! -e ins3.sif ]'
printf '[[registry]]\nlocation = "%s" insecure = true\n' "$R" > "$T/regs-bad.conf"
run env CONTAINERS_REGISTRIES_CONF="$T/regs-bad.conf" "$HUTCH" pull ins3.sif "docker://$R/test/busybox:basic"
check "a registries.conf that is not TOML: one error line with the file and line" 'fails_with "regs-bad.conf:2: expected the end of the line" && [ ! -e ins3.sif ]'
export HUTCH_NOHTTPS=1
rm -f ins*.sif

# ---- ORAS
run "$HUTCH" push busybox_basic.sif "oras://$R/test/sif:v1"
check "push a SIF as an ORAS artifact" '[ $RC -eq 0 ]'
curl -s -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$R/v2/test/sif/manifests/v1" > "$T/oras.json"
check "with Apptainer's media types" 'grep -q "application/vnd.sylabs.sif.layer.v1.sif" "$T/oras.json" && grep -q "application/vnd.sylabs.sif.config.v1+json" "$T/oras.json"'
run "$HUTCH" pull back.sif "oras://$R/test/sif:v1"
check "pull oras:// gives the same bytes back" '[ $RC -eq 0 ] && cmp -s back.sif busybox_basic.sif'
rm -f back.sif
run "$HUTCH" pull --disable-cache back.sif "oras://$R/test/sif:v1"
check "pull --disable-cache oras:// leaves no work folder" '[ $RC -eq 0 ] && cmp -s back.sif busybox_basic.sif && no_pull_left'
# a signed image pushed and pulled over oras:// verifies (signatures are SIF objects: the
# artifact carries them byte for byte)
cp busybox_basic.sif signed.sif
HUTCH_KEYSDIR=$T/signkeys HUTCH_SIGN_PASSPHRASE= run "$HUTCH" key newpair --name "Oras Signer" --bit-length 2048
sfp=$(sed -n 's/^Generated key pair \([0-9A-F]*\) .*/\1/p' "$OUT")
HUTCH_KEYSDIR=$T/signkeys run "$HUTCH" sign signed.sif
check "a signed image" '[ -n "$sfp" ] && [ $RC -eq 0 ]'
run "$HUTCH" push signed.sif "oras://$R/test/signed:v1"
rm -f signed.sif
run "$HUTCH" pull signed.sif "oras://$R/test/signed:v1"
HUTCH_KEYSDIR=$T/signkeys run "$HUTCH" verify signed.sif
check "a signed image pushed and pulled over oras:// verifies" '[ $RC -eq 0 ] && out_has "Oras Signer" && out_has "$sfp" && err_has "^INFO: *Verified signature(s) from image"'
HUTCH_KEYSDIR=$T/nokeys run "$HUTCH" verify signed.sif
check "... and only with the signer's key" 'fails_with "unknown key $sfp"'
rm -f signed.sif
# an artifact written as oras writes it, by hand
sif=busybox_layers.sif
sd=sha256:$(sha256sum < "$sif" | cut -d" " -f1)
printf '{}' > "$T/cfg"
cd_=sha256:$(sha256sum < "$T/cfg" | cut -d" " -f1)
upload() { # FILE DIGEST
	local loc
	loc=$(curl -s -D - -o /dev/null -X POST "http://$R/v2/test/other/blobs/uploads/" | tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
	case $loc in /*) loc=http://$R$loc ;; esac
	curl -s -o /dev/null -w '%{http_code}' -X PUT -H 'Content-Type: application/octet-stream' --data-binary "@$1" "$loc&digest=$2"
}
m=$(printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.sylabs.sif.config.v1+json","digest":"%s","size":2},"layers":[{"mediaType":"application/vnd.sylabs.sif.layer.v1.sif","digest":"%s","size":%s,"annotations":{"org.opencontainers.image.title":"%s"}}]}' "$cd_" "$sd" "$(stat -c %s "$sif")" "$sif")
st=$(upload "$sif" "$sd")$(upload "$T/cfg" "$cd_")$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' --data "$m" "http://$R/v2/test/other/manifests/v2")
run "$HUTCH" pull other.sif "oras://$R/test/other:v2"
check "pull an artifact another client pushed, byte-identical" '[ "$st" = 201201201 ] && [ $RC -eq 0 ] && cmp -s other.sif "$sif"'
run "$HUTCH" exec "oras://$R/test/other:v2" cat /etc/marker
check "exec oras://" '[ $RC -eq 0 ] && out_is layers'
run "$HUTCH" pull x.sif "oras://$R/test/busybox:basic"
check "an image that is no SIF artifact" 'fails_with "not a SIF artifact" && [ ! -e x.sif ]'
run "$HUTCH" push /etc/passwd "oras://$R/test/sif:bad"
check "push of a file that is no SIF" 'fails_with "not a SIF file"'
run "$HUTCH" push busybox_basic.sif "docker://$R/test/sif:bad"
check "push takes oras:// only" '[ $RC -eq 255 ] && err_has "push takes oras://"'

leftovers "registry"
finish
