#!/usr/bin/env python3
"""A registry that lies, for the tests: serves the images of an OCI layout (its tags by
name, manifests and blobs by digest) on 127.0.0.1, except that every layer blob is
corrupt (one byte changed) or truncated (half sent, then the connection closed), and
counts requests. usage: badreg.py OCIDIR corrupt|truncate PORTFILE"""
import http.server
import json
import os
import sys

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
        p = self.path.split("/")
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
            if data[:1] != b"{":  # a layer, not a config
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


srv = http.server.HTTPServer(("127.0.0.1", 0), H)
with open(portfile + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
os.rename(portfile + ".tmp", portfile)
srv.serve_forever()
