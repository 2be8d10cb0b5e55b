# 'Fingerprints:' in a definition file, with Apptainer's rule: the SIF a stage starts from
# must verify with the user's keyrings and be signed by every key listed; otherwise the
# build fails in one line before anything is made, and leaves nothing.
. "$(dirname "$0")/lib.sh"
KEYS=${FIXTURES%/images}/keys
I=$IMAGES/image.sif
export HOME=$T/home HUTCH_KEYSDIR=$T/keys
mkdir -p "$HOME"
unset HUTCH_SIGN_PASSPHRASE
cd "$T" || exit 1
no_build_leftovers() { [ -z "$(ls -d "$T"/*.hutch-build-* "$T"/*.hutch-tmp-* 2>/dev/null)" ]; }

# key A: the reference test key (unprotected); key B: made here
A=12045C8C0B1004D058DE4BEDA20C27EE7FF7BA84
a=$(echo "$A" | tr 'A-F' 'a-f')
"$HUTCH" key import "$KEYS/private.asc" >/dev/null
B=$(HUTCH_SIGN_PASSPHRASE= "$HUTCH" key newpair --name "Key B" --email b@example.org --bit-length 1024 |
	sed -n 's/^Generated key pair \([0-9A-F]*\) .*/\1/p')
"$HUTCH" key list --secret > "$T/keys.txt"
idx() { grep -B2 "$1" "$T/keys.txt" | sed -n 's/^\([0-9]*\)) User.*/\1/p'; }
cp "$I" "$T/a.sif"
cp "$I" "$T/ab.sif"
"$HUTCH" sign --keyidx "$(idx "$A")" "$T/a.sif" >/dev/null &&
	"$HUTCH" sign --keyidx "$(idx "$A")" "$T/ab.sif" >/dev/null &&
	"$HUTCH" sign --keyidx "$(idx "$B")" "$T/ab.sif" >/dev/null
signed=$?
check "test images signed by A, and by A and B" '[ $signed -eq 0 ] && [ -n "$B" ]'

def() { # def FILE FROM FINGERPRINTS [BOOTSTRAP]
	printf 'Bootstrap: %s\nFrom: %s\nFingerprints: %s\n%%post\n    echo built > /built.txt\n' \
		"${4:-localimage}" "$2" "$3" > "$T/$1"
}
def ok.def "$T/a.sif" "$a   # the release key, in lower case"
run "$HUTCH" build -q "$T/ok.sif" "$T/ok.def"
check "Fingerprints: A with a source signed by A builds" '[ $RC -eq 0 ] && [ -f "$T/ok.sif" ]'
run "$HUTCH" exec "$T/ok.sif" cat /built.txt
check "... and %post ran in it" '[ $RC -eq 0 ] && out_is built'
def ab.def "$T/ab.sif" "$A, $B"
run "$HUTCH" build -q --sandbox "$T/ab.sb" "$T/ab.def"
check "Fingerprints: A, B with a source signed by both builds" '[ $RC -eq 0 ] && [ -f "$T/ab.sb/built.txt" ]'

# refused: one line, status 255, no target, no build folder
bad() { # bad DESC EXPECTED DEF [ENV...]
	run env "${@:4}" "$HUTCH" build -q "$T/bad.sif" "$T/$3"
	check "$1" "fails_with \"$2\" && [ ! -e \"$T/bad.sif\" ] && no_build_leftovers"
}
def b.def "$T/a.sif" "$B"
bad "Fingerprints: B with a source signed by A only" "is not signed by $B (Fingerprints:); it is signed by $A" b.def
def both.def "$T/a.sif" "$A,$B"
bad "every key listed must have signed it (A, B; signed by A)" "is not signed by $B" both.def
def unsigned.def "$I" "$A"
bad "an unsigned source" "does not verify (Fingerprints:): the image is not signed" unsigned.def
bad "a source signed by a key not in the keyrings" "unknown key $A; import the signer's public key" ok.def \
	HUTCH_KEYSDIR="$T/nokeys"
cp "$T/a.sif" "$T/changed.sif"
# one byte of the root partition changed
off=$("$HUTCH" sif list "$T/changed.sif" | awk -F'|' '/FS \(Squashfs/ {split($4, p, "-"); print p[1]}')
printf 'X' | dd of="$T/changed.sif" bs=1 seek=$((off + 5000)) conv=notrunc status=none
def changed.def "$T/changed.sif" "$A"
bad "a source changed after signing" "does not verify (Fingerprints:): data object integrity compromised" changed.def
def short.def "$T/a.sif" "12345678"
bad "a malformed fingerprint" "'12345678' is not a key fingerprint (40 hex digits" short.def
def empty.def "$T/a.sif" "$A,,$B"
bad "an empty entry in the list" "'' is not a key fingerprint" empty.def
def folder.def "$IMAGES/rootfs" "$A"
bad "Fingerprints: on a folder source" "needs a signed SIF image, and From: '$IMAGES/rootfs' is a" folder.def
def docker.def "localhost:1/nothing" "$A" docker
bad "Fingerprints: with Bootstrap: docker (no SIF to check)" "not of Bootstrap: docker" docker.def
leftovers "t-fingerprints"
finish
