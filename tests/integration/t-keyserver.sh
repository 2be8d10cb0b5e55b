# Keyservers (HKP) for key search, pull and push: a key pushed, found and pulled into a
# fresh keyring verifies an image it signed; the user's list of keyservers; and every bad
# answer (no server, bad URL, unknown key, a reply that is no index, a huge reply, another
# key than the one asked for, a truncated key) is one line with the keyring untouched. The
# server is tests/helpers/hkpserver.py, a stand-in (its header says why).
. "$(dirname "$0")/lib.sh"
command -v python3 >/dev/null || { notok "keyserver tests need python3"; finish; }
H=$(dirname "$0")/../helpers
[ -f "$H/hkpserver.py" ] || H=$(dirname "$0")
SRV_PID=
trap '[ -n "$SRV_PID" ] && kill "$SRV_PID" 2>/dev/null && wait "$SRV_PID" 2>/dev/null; rm -rf "$T"' EXIT
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY HUTCH_SIGN_PASSPHRASE
export HOME=$T/home HUTCH_KEYSDIR=$T/keys
mkdir -p "$HOME" "$T/srv"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
P=$(free_port)
python3 "$H/hkpserver.py" "$T/srv" "$P" 2>"$T/srv.log" &
SRV_PID=$!
wait_for "(exec 3<>/dev/tcp/127.0.0.1/$P) 2>/dev/null" 100 || { notok "the test keyserver did not start"; cat "$T/srv.log"; finish; }
URL=http://127.0.0.1:$P
FULL=0123456789ABCDEF0123456789ABCDEF01234567
# same [DIR]: the keyring folder holds what it held (compared with $T/before)
snap() { rm -rf "$T/before"; cp -a "$1" "$T/before" 2>/dev/null || mkdir "$T/before"; }
same() { diff -r "$T/before" "$1" >/dev/null 2>&1 || { [ ! -e "$1" ] && [ -z "$(ls -A "$T/before")" ]; }; }

# ---- the user's list of keyservers
run "$HUTCH" key search someone
check "without a keyserver: 'no network keyserver configured'" 'fails_with "no network keyserver configured"'
run "$HUTCH" keyserver add "$URL"
check "keyserver add of a plain-HTTP URL needs --insecure" 'fails_with "\-\-insecure" && [ ! -e "$HOME/.hutch/keyservers" ]'
run "$HUTCH" keyserver add ftp://example.org
check "keyserver add of a URL that is not HKP/HTTP" 'fails_with "not http://, https://, hkp:// or hkps://"'
run "$HUTCH" keyserver add --insecure "$URL"
check "keyserver add --insecure" '[ $RC -eq 0 ] && [ "$(stat -c %a "$HOME/.hutch/keyservers")" = 600 ]'
run "$HUTCH" keyserver add --insecure "$URL"
check "keyserver add of one already listed" 'fails_with "already in the list"'
run "$HUTCH" keyserver list
check "keyserver list shows it, first (used)" '[ $RC -eq 0 ] && out_has "^http://127.0.0.1:$P  *YES  *1\*"'

# ---- push, search, pull into a fresh keyring, verify
HUTCH_SIGN_PASSPHRASE= run "$HUTCH" key newpair --name "Key Server" --email ks@example.org --bit-length 2048
fp=$(sed -n 's/^Generated key pair \([0-9A-F]*\) .*/\1/p' "$OUT")
cp "$FIXTURES/two-groups.sif" "$T/a.sif"
run "$HUTCH" sign "$T/a.sif"
check "newpair and sign" '[ -n "$fp" ] && [ $RC -eq 0 ]'
run "$HUTCH" key push "$fp"
check "key push to the configured keyserver" '[ $RC -eq 0 ] && out_has "pushed" && [ -s "$T/srv/$fp.asc" ]'
run "$HUTCH" key search "ks@example"
check "key search shows fingerprint, bits and user id" '[ $RC -eq 0 ] && out_has "^$fp  *RSA  *2048 .*Key Server <ks@example.org>"'
run "$HUTCH" key search --url "$URL" "0x${fp:24}"
check "key search --url by key id" '[ $RC -eq 0 ] && out_has "^$fp "'
HUTCH_SIGN_PASSPHRASE= run "$HUTCH" key newpair --push --url "$URL" --name "Pushed At Birth" --bit-length 2048
fp3=$(sed -n 's/^Generated key pair \([0-9A-F]*\) .*/\1/p' "$OUT")
check "key newpair --push pushes the new key" '[ $RC -eq 0 ] && [ -n "$fp3" ] && [ -s "$T/srv/$fp3.asc" ]'
run "$HUTCH" key list --url "$URL"
check "--url on a verb that uses no keyserver" 'fails_with "\-\-url is for"'
run "$HUTCH" key newpair --push=maybe --name X
check "--push takes true or false" 'fails_with "\-\-push takes true or false"'
export HOME=$T/home2 HUTCH_KEYSDIR=$T/keys2
mkdir -p "$HOME"
run "$HUTCH" verify "$T/a.sif"
check "a fresh keyring does not know the signer" 'fails_with "unknown key $fp"'
run "$HUTCH" key pull --url "$URL" "$fp"
check "key pull --url into the public keyring" '[ $RC -eq 0 ] && out_has "1 key(s) added" && [ -s "$T/keys2/pgp-public" ] && [ ! -e "$T/keys2/pgp-secret" ]'
run "$HUTCH" verify "$T/a.sif"
check "the pulled key verifies the signed image" '[ $RC -eq 0 ] && out_has "\[LOCAL\] *Fingerprint: $fp" && err_has "^INFO: *Verified signature(s) from image"'

# ---- bad answers: one line, the keyring as it was
snap "$T/keys2"
run "$HUTCH" key pull --url "$URL" "$FULL"
check "pull of a key the keyserver does not have" 'fails_with "has no key $FULL" && same "$T/keys2"'
run "$HUTCH" key pull --url "$URL" DDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDD
check "a keyserver that sends another key than the one asked for" 'fails_with "instead of the key DDDD" && same "$T/keys2"'
run "$HUTCH" key pull --url "$URL" CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC
check "a keyserver that sends a truncated key" 'fails_with "no usable key" && same "$T/keys2"'
run "$HUTCH" key pull --url "$URL" EEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEE
check "a huge reply is cut off at its cap" 'fails_with "larger than 4194304 bytes" && same "$T/keys2"'
run "$HUTCH" key search --url "$URL" hutch-malformed
check "a search answered with something that is no HKP index" 'fails_with "not an HKP index"'
run "$HUTCH" key search --url "$URL" nobody-at-all
check "a search nothing matches" 'fails_with "no keys match"'
run "$HUTCH" key pull --url "$URL" not-a-fingerprint
check "key pull of something that is no fingerprint" 'fails_with "40 hex digits" && same "$T/keys2"'
run "$HUTCH" key pull --url "ftp://127.0.0.1:$P" "$fp"
check "a URL that is not HKP/HTTP" 'fails_with "not http://" && same "$T/keys2"'
run "$HUTCH" key push --url "$URL" "$FULL"
check "key push of a key not in the keyring" 'fails_with "no key"'
DOWN=$(free_port)
run "$HUTCH" key pull --url "http://127.0.0.1:$DOWN" "$fp"
check "a keyserver that is down" 'fails_with "cannot reach http://127.0.0.1:$DOWN" && same "$T/keys2"'
check "no temporary keyring files left" '[ "$(ls "$T/keys2")" = pgp-public ]'

export HOME=$T/home HUTCH_KEYSDIR=$T/keys
run "$HUTCH" keyserver remove "$URL"
check "keyserver remove" '[ $RC -eq 0 ] && ! grep -q . "$HOME/.hutch/keyservers"'
run "$HUTCH" keyserver remove "$URL"
check "keyserver remove of one not listed" 'fails_with "not in the list"'
run "$HUTCH" key pull "$fp"
check "with the list empty again: no keyserver configured" 'fails_with "no network keyserver configured"'
finish
