#!/usr/bin/env python3
"""A stand-in HKP keyserver for the tests: the three operations of draft-shaw-openpgp-hkp
over a folder of armored keys. Debian 12 has no hockeypuck; it has sks 1.1.6 (unmaintained
upstream, a Berkeley DB to build before it serves), which cannot be made to misbehave the
way the client's error paths need; this small server does both.

  hkpserver.py DIR PORT     serves on 127.0.0.1:PORT; DIR/FINGERPRINT.asc per key

GET /pks/lookup?op=get&options=mr&search=0xID   the armored key whose fingerprint ends in ID
GET /pks/lookup?op=index&options=mr&search=Q    machine-readable index of the keys whose
                                                user id holds Q, or (0xID) whose fingerprint
                                                ends in ID
POST /pks/add (keytext=ARMORED, form-encoded)   stores the key

and, to test a client against a bad server, answers that misbehave on purpose:
  index of "hutch-malformed"   200 with an HTML page
  get of 0xEEEE...(40 E)       200 with 6 MiB of junk
  get of 0xDDDD...(40 D)       200 with another key than the one asked for (the first stored)
  get of 0xCCCC...(40 C)       200 with a truncated armored key
Only public RSA/other v4 keys are parsed, enough to show fingerprints, bits and user ids.
"""
import base64
import hashlib
import http.server
import os
import sys
import urllib.parse

DIR = sys.argv[1]


def dearmor(text):
    lines = text.strip().splitlines()
    body, started = [], False
    for ln in lines:
        if ln.startswith("-----BEGIN"):
            started = True
            continue
        if not started:
            continue
        if ln.startswith("-----END") or ln.startswith("="):
            break
        if ":" in ln or not ln.strip():
            continue
        body.append(ln.strip())
    return base64.b64decode("".join(body))


def packets(data):
    i = 0
    while i < len(data):
        h = data[i]
        i += 1
        if h & 0x40:  # new format
            tag = h & 0x3F
            l0 = data[i]
            if l0 < 192:
                ln, i = l0, i + 1
            elif l0 < 224:
                ln, i = ((l0 - 192) << 8) + data[i + 1] + 192, i + 2
            else:
                ln, i = int.from_bytes(data[i + 1:i + 5], "big"), i + 5
        else:
            tag, lt = (h >> 2) & 0xF, h & 3
            n = {0: 1, 1: 2, 2: 4}[lt]
            ln, i = int.from_bytes(data[i:i + n], "big"), i + n
        yield tag, data[i:i + ln]
        i += ln


def key_info(armored):
    """fingerprint, algorithm, bits, creation time, user ids of the primary key"""
    fpr, uids = None, []
    for tag, body in packets(dearmor(armored)):
        if tag == 6 and fpr is None:
            fpr = hashlib.sha1(b"\x99" + len(body).to_bytes(2, "big") + body).hexdigest().upper()
            created = int.from_bytes(body[1:5], "big")
            algo = body[5]
            bits = int.from_bytes(body[6:8], "big") if algo in (1, 2, 3) else 0
        elif tag == 13:
            uids.append(body.decode("utf-8", "replace"))
    if fpr is None:
        raise ValueError("no public key packet")
    return fpr, algo, bits, created, uids


def stored():
    for name in sorted(os.listdir(DIR)):
        if name.endswith(".asc"):
            with open(os.path.join(DIR, name)) as f:
                text = f.read()
            yield key_info(text), text


class Handler(http.server.BaseHTTPRequestHandler):
    def reply(self, status, body, ctype="text/plain"):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        u = urllib.parse.urlparse(self.path)
        q = urllib.parse.parse_qs(u.query)
        op, search = q.get("op", [""])[0], q.get("search", [""])[0]
        if u.path != "/pks/lookup" or not search:
            return self.reply(400, "bad request\n")
        if op == "get":
            want = search[2:].upper() if search.lower().startswith("0x") else None
            if want == "E" * 40:
                return self.reply(200, b"x" * (6 << 20), "application/pgp-keys")
            if want == "D" * 40:
                for _, text in stored():
                    return self.reply(200, text, "application/pgp-keys")
            if want == "C" * 40:
                for _, text in stored():
                    return self.reply(200, text[:300], "application/pgp-keys")
            for (fpr, *_), text in stored():
                if want and fpr.endswith(want):
                    return self.reply(200, text, "application/pgp-keys")
            return self.reply(404, "no such key\n")
        if op == "index":
            if search == "hutch-malformed":
                return self.reply(200, "<html><body>a keyserver's error page</body></html>\n", "text/html")
            rows = []
            for (fpr, algo, bits, created, uids), _ in stored():
                hit = (search.lower().startswith("0x") and fpr.endswith(search[2:].upper())) or any(
                    search.lower() in x.lower() for x in uids)
                if hit:
                    rows.append("pub:%s:%d:%d:%d::" % (fpr, algo, bits, created))
                    rows += ["uid:%s:%d::" % (urllib.parse.quote(x, safe=" <>@()"), created) for x in uids]
            if not rows:
                return self.reply(404, "no keys match\n")
            n = sum(r.startswith("pub:") for r in rows)
            return self.reply(200, "info:1:%d\n%s\n" % (n, "\n".join(rows)))
        return self.reply(501, "op not implemented\n")

    def do_POST(self):
        if self.path != "/pks/add":
            return self.reply(404, "not found\n")
        n = int(self.headers.get("Content-Length", "0"))
        form = urllib.parse.parse_qs(self.rfile.read(n).decode())
        text = form.get("keytext", [""])[0]
        try:
            fpr = key_info(text)[0]
        except Exception as e:  # a bad key is the client's error
            return self.reply(400, "not a key: %s\n" % e)
        with open(os.path.join(DIR, fpr + ".asc"), "w") as f:
            f.write(text)
        return self.reply(200, "key %s added\n" % fpr)

    def log_message(self, fmt, *args):
        sys.stderr.write("%s\n" % (fmt % args))


http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])), Handler).serve_forever()
