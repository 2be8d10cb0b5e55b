# Signing and verifying SIF images in Apptainer's format (hutch-sign): the reference
# implementation's signed fixtures verify, hutch's signatures verify with the reference
# (SIFVERIFY) and with hutch, and every change or bad input is refused in one line.
. "$(dirname "$0")/lib.sh"
KEYS=${FIXTURES%/images}/keys
# keyrings of this test only
export HOME=$T/home HUTCH_KEYSDIR=$T/keys
mkdir -p "$HOME"
unset HUTCH_SIGN_PASSPHRASE
FP=12045C8C0B1004D058DE4BEDA20C27EE7FF7BA84
# The whole of $OUT is Apptainer's `verify --json` (cmd/internal/cli/pgp.go: keyList
# {Signatures, SignerKeys: [{Signer: keyEntity}]}, fields in that order), and the Python
# expression $1 holds of it: j the object, signers the SignerKeys' Signer objects.
json_ok() {
	python3 -c 'import json,sys
j = json.load(open(sys.argv[1]))
keys = j.get("SignerKeys") or []
signers = [e["Signer"] for e in keys if list(e) == ["Signer"]]
fields = ["Partition", "Name", "Fingerprint", "KeyLocal", "KeyCheck", "DataCheck"]
shape = list(j) == ["Signatures", "SignerKeys"] and len(signers) == len(keys) and all(list(s) == fields for s in signers)
sys.exit(0 if shape and eval(sys.argv[2]) else 1)' "$OUT" "$1"
}

run "$HUTCH" verify "$FIXTURES/one-group-signed.sif"
check "a signed image by an unknown key fails, naming its fingerprint" 'fails_with "unknown key $FP" && out_has "^\[UNKNOWN\] Fingerprint: $FP$"'
check "... in Apptainer's words (go-crypto's ErrUnknownIssuer), the fingerprint as a hint" 'fails_with "^hutch: error: Failed to verify container: integrity: signature object 3 not valid: openpgp: signature made by unknown entity (unknown key $FP)$"'
run "$HUTCH" verify --json "$FIXTURES/one-group-signed.sif"
check "verify --json by an unknown signer: Apptainer's JSON (one signature, no signer entry), then the error line, status 255" 'fails_with "^hutch: error: Failed to verify container: integrity: signature object 3 not valid: openpgp: signature made by unknown entity" && json_ok "j == {\"Signatures\": 1, \"SignerKeys\": None}"'
run "$HUTCH" key import "$KEYS/private.asc"
check "key import of the reference test key" '[ $RC -eq 0 ] && out_has "1 key imported"'
run "$HUTCH" key import "$KEYS/private.asc"
check "key import of a key the keyring holds: refused, as Apptainer's" 'fails_with "already belongs to the keyring"'
for f in one-group-signed two-groups-signed; do
	run "$HUTCH" verify "$FIXTURES/$f.sif"
	check "verify $f.sif (signed by the reference code)" '[ $RC -eq 0 ] && out_has "\[LOCAL\] *Fingerprint: 12045C8C0B1004D058DE4BEDA20C27EE7FF7BA84" && err_has "^INFO: *Verified signature(s) from image"'
done
run "$HUTCH" verify "$FIXTURES/two-groups-signed.sif" --json
run "$HUTCH" verify --json "$FIXTURES/two-groups-signed.sif"
check "verify --json: Apptainer's schema, 2 signatures, an entry per object verified (3)" '[ $RC -eq 0 ] && json_ok "j[\"Signatures\"] == 2 and len(signers) == 3 and all(s == {\"Partition\": \"FS\", \"Name\": \"Unit Test <unit@test.com>\", \"Fingerprint\": \"$(echo $FP | tr A-F a-f)\", \"KeyLocal\": True, \"KeyCheck\": True, \"DataCheck\": True} for s in signers)"'
check "... as Go's encoder writes it (two-space indent, < and > escaped), Apptainer's INFO line on stderr" 'out_has "^  \"Signatures\": 2,$" && out_has "^        \"Name\": \"Unit Test \\\\u003cunit@test.com\\\\u003e\",$" && [ "$(cat "$ERR")" = "INFO:    Verifying image with PGP key material" ]'
run "$HUTCH" verify -j --group-id 2 "$FIXTURES/two-groups-signed.sif"
check "verify -j --group-id 2: that group's signature and object only" '[ $RC -eq 0 ] && json_ok "j[\"Signatures\"] == 1 and len(signers) == 1"'
run "$HUTCH" verify --group-id 2 "$FIXTURES/two-groups-signed.sif"
check "verify --group-id verifies that group only" '[ $RC -eq 0 ] && out_has "^3 " && ! out_has "^1 "'
run "$HUTCH" verify --sif-id 1 "$FIXTURES/two-groups-signed.sif"
check "verify --sif-id verifies that object" '[ $RC -eq 0 ] && out_has "^1 " && ! out_has "^2 "'
run "$HUTCH" verify --group-id 9 "$FIXTURES/two-groups-signed.sif"
check "verify --group-id of a missing group" 'fails_with "no object group 9"'
for f in one-group-signed-legacy-group two-groups-signed-legacy-group one-group-signed-legacy; do
	run "$HUTCH" verify "$FIXTURES/$f.sif"
	check "legacy signatures are refused without --legacy-insecure ($f)" 'fails_with "legacy-insecure"'
	run "$HUTCH" verify --legacy-insecure "$FIXTURES/$f.sif"
	check "verify --legacy-insecure $f.sif" '[ $RC -eq 0 ] && err_has "^INFO: *Verified signature(s) from image"'
done
run "$HUTCH" verify --legacy-insecure --all "$FIXTURES/one-group-signed-legacy-all.sif"
check "verify --legacy-insecure --all: each object's own signature" '[ $RC -eq 0 ] && out_has "^2 "'
run "$HUTCH" verify --legacy-insecure "$FIXTURES/one-group-signed.sif"
check "--legacy-insecure does not verify new-format signatures (the partition's own, as Apptainer looks for)" 'fails_with "integrity: signature not found for object 2$"'
run "$HUTCH" verify "$FIXTURES/one-group.sif"
check "an unsigned image fails in Apptainer's words" 'fails_with "^hutch: error: Failed to verify container: integrity: signature not found for object group 1$" && [ ! -s "$OUT" ]'
run "$HUTCH" verify --json "$FIXTURES/one-group.sif"
check "verify --json of an unsigned image: no signature, SignerKeys null, the error line, status 255" 'fails_with "^hutch: error: Failed to verify container: integrity: signature not found for object group 1$" && json_ok "j == {\"Signatures\": 0, \"SignerKeys\": None}"'
run "$HUTCH" verify "$IMAGES/rootfs"
check "verify of a folder fails in one line" 'fails_with "SIF" && fails_with "^hutch: error: Failed to verify container: "'

# newpair -> sign -> verify -> one byte changed
export HUTCH_SIGN_PASSPHRASE=pw1
run "$HUTCH" key newpair --name "Tester One" --email one@example.org --bit-length 2048
check "key newpair (passphrase from HUTCH_SIGN_PASSPHRASE)" '[ $RC -eq 0 ] && [ "$(stat -c %a "$T/keys/pgp-secret")" = 600 ]'
fp1=$(sed -n 's/^Generated key pair \([0-9A-F]*\) .*/\1/p' "$OUT")
run "$HUTCH" sign "$FIXTURES/two-groups.sif"
check "sign with several secret keys asks for --keyidx" 'fails_with "keyidx"'
run "$HUTCH" key list --secret
idx=$(grep -B2 "$fp1" "$OUT" | sed -n 's/^\([0-9]\)) User.*/\1/p')
cp "$FIXTURES/two-groups.sif" "$T/a.sif"
HUTCH_SIGN_PASSPHRASE=wrong run "$HUTCH" sign --keyidx "$idx" "$T/a.sif"
check "sign with a wrong passphrase fails and leaves the image as it was" 'fails_with "wrong passphrase" && cmp -s "$T/a.sif" "$FIXTURES/two-groups.sif"'
run "$HUTCH" sign --keyidx "$idx" "$T/a.sif"
check "sign appends a signature per object group" '[ $RC -eq 0 ] && out_has "2 object groups"'
check "... with Apptainer's INFO lines on stderr" 'err_has "^INFO: *Signing image with PGP key material$" && err_has "^INFO: *Signature created and applied to image .$T/a.sif.$"'
run "$HUTCH" verify "$T/a.sif"
check "hutch verifies what it signed" '[ $RC -eq 0 ] && out_has "Tester One <one@example.org>" && out_has "$fp1"'
run "$HUTCH" verify -l "$T/a.sif"
check "verify -l is --local, as Apptainer's (the keyring is local anyway)" '[ $RC -eq 0 ] && out_has "$fp1"'
cp "$T/a.sif" "$T/a-ovl.sif"
run "$HUTCH" overlay create --size 64 "$T/a-ovl.sif"
check "overlay create refuses a signed SIF, which it would leave unverifiable (as Apptainer)" 'fails_with "is signed: could not add writable overlay" && cmp -s "$T/a.sif" "$T/a-ovl.sif" && ! ls "$T" | grep -q "a-ovl.sif.hutch-tmp"'
run "$HUTCH" sif list "$T/a.sif"
check "the signature objects are linked to their groups" 'out_has "1 *(G) .*Signature (SHA-256)" && out_has "2 *(G) .*Signature (SHA-256)"'
"$HUTCH" key export "$fp1" "$T/one.pub" >/dev/null
if [ -n "${SIFVERIFY:-}" ]; then
	run "$SIFVERIFY" "$T/a.sif" "$T/one.pub"
	check "the reference pkg/integrity verifies hutch's signatures" '[ $RC -eq 0 ] && out_has "signature 4 verified object 2" && out_has "signature 5 verified object 3"'
else
	notok "the reference integrity oracle could not be built (golang-github-sylabs-sif-dev)"
fi
cp "$T/a.sif" "$T/b.sif"
printf 'X' | dd of="$T/b.sif" bs=1 seek=41000 conv=notrunc status=none
run "$HUTCH" verify "$T/b.sif"
check "one byte changed in a partition: verify fails naming the object, in Apptainer's words" 'fails_with "^hutch: error: Failed to verify container: integrity: data object integrity compromised: 3$"'
run "$HUTCH" verify --json "$T/b.sif"
check "verify --json of it: group 1's objects good, object 3 with DataCheck false" '[ $RC -eq 255 ] && json_ok "j[\"Signatures\"] == 2 and [s[\"DataCheck\"] for s in signers] == [True, True, False] and signers[2][\"Partition\"] == \"FS\" and signers[2][\"Name\"] == \"Tester One <one@example.org>\" and signers[2][\"Fingerprint\"] == \"$(echo $fp1 | tr A-F a-f)\""'
if [ -n "${SIFVERIFY:-}" ]; then
	run "$SIFVERIFY" "$T/b.sif" "$T/one.pub"
	check "the reference rejects it too" '[ $RC -eq 1 ] && out_has "integrity compromised: 3"'
fi

# a second signer
HUTCH_SIGN_PASSPHRASE= run "$HUTCH" key newpair --name "Tester Two" --email two@example.org --bit-length 2048
fp2=$(sed -n 's/^Generated key pair \([0-9A-F]*\) .*/\1/p' "$OUT")
run "$HUTCH" key list --secret
idx2=$(grep -B2 "$fp2" "$OUT" | sed -n 's/^\([0-9]\)) User.*/\1/p')
run "$HUTCH" sign --keyidx "$idx2" --group-id 1 "$T/a.sif"
check "a second signer (unprotected key) signs group 1" '[ $RC -eq 0 ]'
run "$HUTCH" verify "$T/a.sif"
check "verify reports both signers" '[ $RC -eq 0 ] && out_has "$fp1" && out_has "$fp2" && [ "$(grep -c Fingerprint "$OUT")" -eq 3 ]'

# export / import round trip into another keyring; remove
run "$HUTCH" key export --armor "$fp2" "$T/two.asc"
check "key export --armor" '[ $RC -eq 0 ] && grep -q "BEGIN PGP PUBLIC KEY BLOCK" "$T/two.asc"'
echo old > "$T/two.asc"
run "$HUTCH" key export --armor "$fp2" "$T/two.asc"
check "key export replaces a file, as Apptainer's, with its words" '[ $RC -eq 0 ] && grep -q "BEGIN PGP PUBLIC KEY BLOCK" "$T/two.asc" && ! grep -q old "$T/two.asc" && out_has "^Public key with fingerprint $fp2 correctly exported to file: $T/two.asc$"'
ln -s "$T/elsewhere" "$T/link.asc"
run "$HUTCH" key export --armor "$fp2" "$T/link.asc"
check "... a symlink there is replaced by the file, never written through" '[ $RC -eq 0 ] && [ ! -L "$T/link.asc" ] && grep -q "BEGIN PGP" "$T/link.asc" && [ ! -e "$T/elsewhere" ]'
echo public > "$T/sec.asc" && chmod 644 "$T/sec.asc"
run "$HUTCH" key export --secret "$fp2" "$T/sec.asc"
check "... and a secret key over an old 0644 file is 0600, nothing left beside it" '[ $RC -eq 0 ] && [ "$(stat -c %a "$T/sec.asc")" = 600 ] && [ -z "$(ls "$T" | grep hutch-tmp)" ]'
HUTCH_KEYSDIR=$T/keys2 run "$HUTCH" key import "$T/two.asc"
HUTCH_KEYSDIR=$T/keys2 run "$HUTCH" verify --group-id 1 "$T/a.sif"
check "an exported public key imported elsewhere verifies" 'fails_with "unknown key $fp1"'
HUTCH_KEYSDIR=$T/keys2 run "$HUTCH" verify --json --group-id 1 "$T/a.sif"
check "verify --json with another signer's key only: the signature counted, no entry, status 255" 'fails_with "signature made by unknown entity (unknown key $fp1)$" && json_ok "j == {\"Signatures\": 1, \"SignerKeys\": None}"'
HUTCH_KEYSDIR=$T/keys2 run "$HUTCH" key import "$T/one.pub"
HUTCH_KEYSDIR=$T/keys2 run "$HUTCH" verify "$T/a.sif"
check "with both public keys imported, everything verifies" '[ $RC -eq 0 ]'
HUTCH_KEYSDIR=$T/keys2 run "$HUTCH" sign "$T/a.sif"
check "sign without a secret key fails" 'fails_with "no secret key"'
# Apptainer's newpair flags: -N -E -b, -P the passphrase on the command line
HUTCH_KEYSDIR=$T/keys3 HUTCH_SIGN_PASSPHRASE= run "$HUTCH" key newpair -N "Tester Three" -E three@example.org -b 1024 -P pw3
check "key newpair -N -E -b -P" '[ $RC -eq 0 ] && out_has "Tester Three"'
cp "$FIXTURES/two-groups.sif" "$T/p3.sif"
HUTCH_KEYSDIR=$T/keys3 HUTCH_SIGN_PASSPHRASE=wrong run "$HUTCH" sign "$T/p3.sif"
check "... the key is protected by -P's passphrase" 'fails_with "wrong passphrase"'
HUTCH_KEYSDIR=$T/keys3 HUTCH_SIGN_PASSPHRASE=pw3 run "$HUTCH" sign "$T/p3.sif"
check "... which signs" '[ $RC -eq 0 ]'
HUTCH_KEYSDIR=$T/keys3 run "$HUTCH" key newpair -Z
check "an unknown key option is one error line, status 1" 'usage_fails_with "option .-Z. is unknown"'
run "$HUTCH" key export --secret --armor "$fp1" "$T/one.sec"
check "key export --secret" '[ $RC -eq 0 ] && grep -q "PRIVATE KEY BLOCK" "$T/one.sec" && [ "$(stat -c %a "$T/one.sec")" = 600 ]'
run "$HUTCH" key remove "$fp2"
check "key remove" '[ $RC -eq 0 ]'
run "$HUTCH" key list
check "the removed key is no longer listed" '[ $RC -eq 0 ] && ! out_has "$fp2" && out_has "$fp1"'
run "$HUTCH" key remove "$fp2"
check "key remove of a missing key" 'fails_with "no key"'

# the Apptainer keyring is read too
mkdir -p "$HOME/.apptainer/keys"
cp "$T/keys2/pgp-public" "$HOME/.apptainer/keys/pgp-public"
HUTCH_KEYSDIR=$T/keys3 run "$HUTCH" verify "$T/a.sif"
check "keys in ~/.apptainer/keys verify" '[ $RC -eq 0 ]'
rm -rf "$HOME/.apptainer"

# bad input
cp "$T/a.sif" "$T/c.sif"
off=$("$HUTCH" sif list "$T/c.sif" | awk -F'|' '$1 ~ /^4 / {split($4, p, "-"); print p[1]}')
printf 'garbage-garbage-garbage' | dd of="$T/c.sif" bs=1 seek=$((off + 200)) conv=notrunc status=none
run "$HUTCH" verify "$T/c.sif"
check "a corrupt signature object fails" 'fails_with "signature object 4"'
cp "$T/a.sif" "$T/d.sif"
# object 2 marked unused: the signature covers an object that is gone
printf '\0' | dd of="$T/d.sif" bs=1 seek=$((4096 + 585 + 4)) conv=notrunc status=none
run "$HUTCH" verify --group-id 1 "$T/d.sif"
check "a signature over a missing object fails" 'fails_with "integrity: object 2: signed object not found$"'
mkdir -p "$T/bad"
echo "this is no keyring" > "$T/bad/pgp-public"
HUTCH_KEYSDIR=$T/bad run "$HUTCH" verify "$T/a.sif"
check "a keyring file that is not PGP" 'fails_with "not an OpenPGP keyring"'
head -c 300 "$T/two.asc" > "$T/trunc.asc"
run "$HUTCH" key import "$T/trunc.asc"
check "a truncated armored key is refused" 'fails_with "no valid OpenPGP key"'
run "$HUTCH" key import "$T/nonexistent.asc"
check "import of a missing file" 'fails_with "nonexistent.asc"'
for v in search push pull; do
	run "$HUTCH" key $v someone
	check "key $v: no keyserver" 'fails_with "no network keyserver configured"'
done
run "$HUTCH" verify --sif-id x "$T/a.sif"
check "verify --sif-id needs a number" '[ $RC -ne 0 ] && err_has "positive number"'
unset HUTCH_SIGN_PASSPHRASE
run "$HUTCH" sign --keyidx "$idx" "$T/a.sif"
check "a protected key without a passphrase source or terminal" 'fails_with "no passphrase"'
echo pw1 > "$T/pass"
run "$HUTCH" sign --keyidx "$idx" --passphrase-file "$T/pass" "$T/a.sif"
check "sign --passphrase-file" '[ $RC -eq 0 ]'
check "no temporary keyring files left" '[ -z "$(ls "$T/keys" | grep -v "^pgp-public$" | grep -v "^pgp-secret$")" ]'

