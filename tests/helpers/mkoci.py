#!/usr/bin/env python3
"""Write the registry tests' images as an OCI image layout (then pushed with skopeo).

usage: mkoci.py OUTDIR [big MIB]

Tags in OUTDIR (an OCI layout):
  basic     busybox-static, Env/Entrypoint/Cmd/WorkingDir/Labels
  layers    basic + two layers with whiteouts (.wh.NAME) and an opaque folder
  zstd      basic with a zstd layer on top
  multi     an index: linux/amd64 and linux/arm64 (each marks its architecture)
  plain     one uncompressed tar layer, no Entrypoint, Cmd only
  big       (with `big MIB`) busybox + 8 layers of incompressible data, MIB in all
"""
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile

out = sys.argv[1]
BUSYBOX = "/bin/busybox"
APPLETS = ["sh", "echo", "cat", "ls", "env", "pwd", "id", "test", "true", "false", "sleep", "head", "stat", "wc"]


def blob(data):
    d = hashlib.sha256(data).hexdigest()
    os.makedirs(f"{out}/blobs/sha256", exist_ok=True)
    with open(f"{out}/blobs/sha256/{d}", "wb") as f:
        f.write(data)
    return {"digest": "sha256:" + d, "size": len(data)}


def tar_bytes(entries):
    """entries: (name, kind, content|target, mode)"""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, kind, data, mode in entries:
            ti = tarfile.TarInfo(name)
            ti.mode = mode
            ti.mtime = 1700000000
            if kind == "dir":
                ti.type = tarfile.DIRTYPE
                t.addfile(ti)
            elif kind == "link":
                ti.type = tarfile.SYMTYPE
                ti.linkname = data
                t.addfile(ti)
            elif kind == "chr":
                ti.type = tarfile.CHRTYPE
                ti.devmajor, ti.devminor = data
                t.addfile(ti)
            elif kind == "hard":
                ti.type = tarfile.LNKTYPE
                ti.linkname = data
                t.addfile(ti)
            else:
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def gz(data):
    return gzip.compress(data, compresslevel=1, mtime=0)


def zst(data):
    return subprocess.run(["zstd", "-q", "-c"], input=data, stdout=subprocess.PIPE, check=True).stdout


def base_entries(marker):
    with open(BUSYBOX, "rb") as f:
        bb = f.read()
    e = [("bin", "dir", None, 0o755), ("bin/busybox", "file", bb, 0o755)]
    e += [(f"bin/{a}", "link", "busybox", 0o777) for a in APPLETS]
    e += [("etc", "dir", None, 0o755), ("etc/marker", "file", marker.encode(), 0o644),
          ("srv", "dir", None, 0o755), ("srv/app", "dir", None, 0o755),
          ("srv/app/data", "file", b"app data\n", 0o644),
          ("srv/app/hard", "hard", "srv/app/data", 0o644),
          ("etc/ro", "dir", None, 0o555), ("etc/ro/file", "file", b"ro\n", 0o444)]
    return e


CONFIG = {
    "Env": ["PATH=/usr/local/bin:/bin", "GREETING=hello from config", "QUOTED=a \"b\" $c"],
    "Entrypoint": ["/bin/sh", "-c", "echo \"entry:$0:$*\"; pwd", "ep"],
    "Cmd": ["one", "two words"],
    "WorkingDir": "/srv/app",
    "Labels": {"org.hutch.test": "yes", "maintainer": "hutch tests"},
}


def image(layers, config, arch="amd64"):
    """layers: list of (bytes, mediatype); returns the manifest descriptor"""
    cfg = {"architecture": arch, "os": "linux", "config": config,
           "rootfs": {"type": "layers", "diff_ids": []}, "history": []}
    ldescs = []
    for data, mt, diff in layers:
        d = blob(data)
        d["mediaType"] = mt
        ldescs.append(d)
        cfg["rootfs"]["diff_ids"].append("sha256:" + hashlib.sha256(diff).hexdigest())
    c = blob(json.dumps(cfg).encode())
    c["mediaType"] = "application/vnd.oci.image.config.v1+json"
    m = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": c,
         "layers": ldescs}
    d = blob(json.dumps(m).encode())
    d["mediaType"] = m["mediaType"]
    return d


GZ = "application/vnd.oci.image.layer.v1.tar+gzip"
ZST = "application/vnd.oci.image.layer.v1.tar+zstd"
TAR = "application/vnd.oci.image.layer.v1.tar"


def layer(entries, kind=GZ):
    t = tar_bytes(entries)
    return (gz(t) if kind == GZ else zst(t) if kind == ZST else t, kind, t)


refs = []


def tag(desc, name, platform=None):
    d = dict(desc)
    d["annotations"] = {"org.opencontainers.image.ref.name": name}
    if platform:
        d["platform"] = platform
    refs.append(d)


base = layer(base_entries("base"))
tag(image([base], CONFIG), "basic")

upper1 = layer([("etc/gone", "file", b"x", 0o644), ("srv/opq", "dir", None, 0o755),
                ("srv/opq/old", "file", b"old", 0o644), ("srv/opq/sub", "dir", None, 0o755),
                ("srv/opq/sub/old2", "file", b"old2", 0o644), ("srv/keep", "file", b"keep", 0o644)])
upper2 = layer([("etc/.wh.gone", "file", b"", 0o644), ("srv/.wh.keep", "file", b"", 0o644),
                ("srv/opq", "dir", None, 0o755), ("srv/opq/.wh..wh..opq", "file", b"", 0o644),
                ("srv/opq/new", "file", b"new", 0o644), ("etc/marker", "file", b"layers", 0o644),
                ("etc/ro/added", "file", b"added\n", 0o644), ("etc/devnull", "chr", (1, 3), 0o666)])
tag(image([base, upper1, upper2], CONFIG), "layers")

ztop = layer([("etc/marker", "file", b"zstd", 0o644)], ZST)
tag(image([base, ztop], CONFIG), "zstd")

plain = layer(base_entries("plain"), TAR)
tag(image([plain], {"Cmd": ["/bin/echo", "plain cmd"], "Env": ["PATH=/bin"]}), "plain")

amd = image([layer(base_entries("amd64"))], CONFIG, "amd64")
arm = image([layer(base_entries("arm64"))], CONFIG, "arm64")
idx = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
       "manifests": [dict(arm, platform={"os": "linux", "architecture": "arm64", "variant": "v8"}),
                     dict(amd, platform={"os": "linux", "architecture": "amd64"})]}
d = blob(json.dumps(idx).encode())
d["mediaType"] = idx["mediaType"]
tag(d, "multi")

if len(sys.argv) > 3 and sys.argv[2] == "big":
    mib = int(sys.argv[3])
    layers = [base]
    per = mib // 8
    for i in range(8):
        # half random, half text: compressible as real software is, a bit
        files = []
        for k in range(per):
            files.append((f"data{i}/f{k}", "file", os.urandom(1 << 19) + (b"%08d line of text\n" % k) * 29127, 0o644))
        layers.append(layer([(f"data{i}", "dir", None, 0o755)] + files))
    tag(image(layers, CONFIG), "big")

with open(f"{out}/oci-layout", "w") as f:
    json.dump({"imageLayoutVersion": "1.0.0"}, f)
with open(f"{out}/index.json", "w") as f:
    json.dump({"schemaVersion": 2, "manifests": refs}, f)
