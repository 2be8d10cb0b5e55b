# hutch build --bind and --writable-tmpfs, as Apptainer's: host paths bound into the
# containers of %post and %test (not into the image), and %test's root made writable with
# its changes dropped.
. "$(dirname "$0")/lib.sh"
I=$IMAGES/image.sif
cd "$T" || exit 1
no_build_leftovers() { [ -z "$(ls -d "$T"/*.hutch-build-* "$T"/*.hutch-tmp-* 2>/dev/null)" ]; }
mkdir -p "$T/data" "$T/ro"
echo hostdata > "$T/data/a.txt"
echo rodata > "$T/ro/r.txt"

cat > "$T/bind.def" <<EOF
Bootstrap: localimage
From: $I
%post
    cat /mnt/data/a.txt /mnt/ro/r.txt > /copied.txt
    echo from-post > /mnt/data/frompost.txt
    if touch /mnt/ro/x 2>/dev/null; then echo "a ro bind was writable"; exit 9; fi
%test
    grep -q hostdata /mnt/data/a.txt
EOF
run "$HUTCH" build -q --bind "$T/data:/mnt/data" -B "$T/ro:/mnt/ro:ro" "$T/bind.sif" "$T/bind.def"
check "build --bind: %post and %test see the host folders" '[ $RC -eq 0 ] && [ -f "$T/bind.sif" ]'
check "... a rw bind writes to the host" '[ "$(cat "$T/data/frompost.txt" 2>/dev/null)" = from-post ]'
run "$HUTCH" exec "$T/bind.sif" sh -c 'cat /copied.txt; ls /mnt/data 2>/dev/null'
check "... what %post copied is in the image, the bound files are not" '[ $RC -eq 0 ] && out_is "hostdata
rodata"'
run "$HUTCH" build -q --sandbox "$T/nobind.sb" "$T/bind.def"
# (the script's own error lines come first, then hutch's one)
check "without --bind the same %post fails" '[ $RC -eq 255 ] && [ "$(grep -c "^hutch: error: " "$ERR")" -eq 1 ] && err_has "^hutch: error: %post failed with exit status 1" && [ ! -e "$T/nobind.sb" ] && no_build_leftovers'

cat > "$T/tmpfs.def" <<EOF
Bootstrap: localimage
From: $I
%test
    echo probe > /probe.txt && grep -q probe /probe.txt
EOF
run "$HUTCH" build -q --writable-tmpfs "$T/tmpfs.sif" "$T/tmpfs.def"
check "build --writable-tmpfs: %test may write to its root" '[ $RC -eq 0 ] && [ -f "$T/tmpfs.sif" ]'
run "$HUTCH" exec "$T/tmpfs.sif" test -e /probe.txt
check "... and what it wrote is not in the image" '[ $RC -eq 1 ]'
run "$HUTCH" build -q "$T/notmpfs.sif" "$T/tmpfs.def"
check "without --writable-tmpfs %test's root is read-only" '[ $RC -eq 255 ] && err_has "Read-only file system" && err_has "^hutch: error: %test failed" && [ ! -e "$T/notmpfs.sif" ] && no_build_leftovers'

run "$HUTCH" build -q --bind /nonexistent/src:/mnt "$T/bad.sif" "$T/bind.def"
check "--bind of a missing host path: one line, nothing made" 'fails_with "--bind: cannot use .*/nonexistent/src.*No such file" && [ ! -e "$T/bad.sif" ] && no_build_leftovers'
run "$HUTCH" build -q --bind "$T/data:/mnt" "$T/bad.sif" "$I"
check "--bind is for definition files" '[ $RC -ne 0 ] && err_has "are for definition files" && [ ! -e "$T/bad.sif" ]'
leftovers "t-buildbind"
finish
