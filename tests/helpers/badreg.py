#!/usr/bin/env python3
"""A registry for what docker-registry cannot do, for the tests: serves the images of an
OCI layout (its tags by name, manifests and blobs by digest) on 127.0.0.1, and
  corrupt   every layer blob with one byte changed
  truncate  every layer blob half sent, then the connection closed
  bearer    Docker Hub's anonymous tokens: 401 with WWW-Authenticate: Bearer realm=...
            until a request brings the token that GET /token?scope=...&service=... gave
  redirect  over TLS (BADREG_TLS=CERT:KEY): blobs and manifests by digest answered with a
            307 to a second server of this one on another port, which serves them
  slow      every layer blob half sent, then the rest only once a path matching the glob
            BADREG_WATCH exists (at most 20 s later): the log says "streamed DIGEST" when
            it appeared while the rest was held back, "not streamed DIGEST" when not
Each request's method, path and Authorization header go to PORTFILE.log (the second
server's lines start with "B ").
usage: badreg.py OCIDIR corrupt|truncate|bearer|redirect|slow PORTFILE"""
import glob
import http.server
import json
import os
import ssl
import sys
import threading
import time

layout, mode, portfile = sys.argv[1], sys.argv[2], sys.argv[3]
with open(f"{layout}/index.json") as f:
    tags = {m["annotations"]["org.opencontainers.image.ref.name"]: m for m in json.load(f)["manifests"]}


def blob(digest):
    with open(f"{layout}/blobs/sha256/{digest.split(':', 1)[1]}", "rb") as f:
        return f.read()


class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_GET(self):
        second = self.server is not srv
        with open(portfile + ".log", "a") as f:
            f.write(f"{'B ' if second else ''}GET {self.path} {self.headers.get('Authorization', '-')}\n")
        p = self.path.split("?")[0].split("/")
        if mode == "redirect" and not second and len(p) >= 5 and p[-1].startswith("sha256:"):
            self.send_response(307)
            self.send_header("Location", "https://127.0.0.1:%d%s" % (srv2.server_address[1], self.path))
            self.send_header("Content-Length", "3")
            self.end_headers()
            self.wfile.write(b"307")  # a body that must not end up in the blob
            return
        if mode == "bearer":
            if self.path.startswith("/token?"):
                q = dict(kv.split("=", 1) for kv in self.path.split("?", 1)[1].split("&"))
                ok = q.get("service") == "badreg" and q.get("scope") == "repository%3Atest%2Fbusybox%3Apull"
                return self.send(200 if ok else 400, json.dumps({"token": "tok-anon"}).encode(), "application/json")
            if self.headers.get("Authorization") != "Bearer tok-anon":
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Bearer realm="http://127.0.0.1:%d/token",service="badreg",'
                                 'scope="repository:test/busybox:pull"' % srv.server_address[1])
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        if self.path == "/v2/":
            return self.send(200, b"{}", "application/json")
        if len(p) >= 5 and p[-2] == "manifests":
            ref = p[-1]
            d = tags[ref] if ref in tags else {"digest": ref, "mediaType": "application/vnd.oci.image.manifest.v1+json"}
            try:
                return self.send(200, blob(d["digest"]), d["mediaType"])
            except OSError:
                return self.send(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}',
                                 "application/json")
        if len(p) >= 5 and p[-2] == "blobs":
            data = blob(p[-1])
            if data[:1] != b"{" and mode == "slow":
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                end = time.monotonic() + 20
                while not glob.glob(os.environ["BADREG_WATCH"]) and time.monotonic() < end:
                    time.sleep(0.05)
                seen = glob.glob(os.environ["BADREG_WATCH"])
                with open(portfile + ".log", "a") as f:
                    f.write(f"{'' if seen else 'not '}streamed {p[-1]}\n")
                self.wfile.write(data[len(data) // 2:])
                return
            if data[:1] != b"{" and mode in ("corrupt", "truncate"):  # a layer, not a config
                if mode == "corrupt":
                    data = data[:-1] + bytes([data[-1] ^ 1])
                else:
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
            return self.send(200, data, "application/octet-stream")
        self.send(404, b"{}", "application/json")

    def send(self, code, body, ctype):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


srv = (http.server.ThreadingHTTPServer if mode == "slow" else http.server.HTTPServer)(("127.0.0.1", 0), H)
srv2 = None
if mode == "redirect":
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*os.environ["BADREG_TLS"].split(":"))
    srv2 = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    for s in (srv, srv2):
        s.socket = ctx.wrap_socket(s.socket, server_side=True)
    threading.Thread(target=srv2.serve_forever, daemon=True).start()
for s in (srv, srv2):
    if s:  # a client that hangs up mid-reply (a refused certificate, an aborted pull): no traceback
        s.handle_error = lambda request, address: None
with open(portfile + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
os.rename(portfile + ".tmp", portfile)
srv.serve_forever()
