#!/usr/bin/env python3
"""Crafted images: patch a good squashfs (or the squashfs inside a SIF) the ways an attacker
would, one image per case, to check that hutch refuses or serves each without a crash.

usage: craft.py cases IMAGE OUTDIR   one OUTDIR/<case>.<ext> per case (IMAGE: .sqfs or .sif)
       craft.py list                 the cases, one a line: name, kind (open: refused when the
                                     image is opened; read: EIO inside the container)
       craft.py sif SQUASHFS OUT     wrap a squashfs into a minimal SIF (fuzz corpus)
Cases of kind read need a squashfs made with -noI -noD -noF -noX (uncompressed
metadata and data, so that its structures can be found and patched)."""
import os
import struct
import sys

SB = {  # superblock fields: offset, struct format
    "inodes": (4, "<I"), "block_size": (12, "<I"), "fragments": (16, "<I"),
    "compression": (20, "<H"), "block_log": (22, "<H"), "no_ids": (26, "<H"),
    "root_inode": (32, "<Q"), "bytes_used": (40, "<Q"), "id_table_start": (48, "<Q"),
    "xattr_id_table_start": (56, "<Q"), "inode_table_start": (64, "<Q"),
    "directory_table_start": (72, "<Q"), "fragment_table_start": (80, "<Q"),
}


def sb_get(img, base, field):
    off, fmt = SB[field]
    return struct.unpack_from(fmt, img, base + off)[0]


def sb_set(img, base, field, value):
    off, fmt = SB[field]
    struct.pack_into(fmt, img, base + off, value)


def sif_partition(img):
    """Offset of the primary system partition in a SIF (0 for a bare squashfs)."""
    if img[32:41] != b"SIF_MAGIC":
        return 0
    total, doff = struct.unpack_from("<qq", img, 88)[0], struct.unpack_from("<q", img, 96)[0]
    for i in range(total):
        d = doff + 585 * i
        dtype, used = struct.unpack_from("<iB", img, d)
        parttype = struct.unpack_from("<i", img, d + 201 + 4)[0]
        if used and dtype == 0x4004 and parttype == 2:
            return struct.unpack_from("<q", img, d + 17)[0]
    raise SystemExit("craft.py: no primary partition in the SIF")


def raw_md(img, base, table_start, ref_block, ref_off):
    """File offset of byte ref_off of the uncompressed metadata block at ref_block."""
    pos = base + table_start + ref_block
    hdr = struct.unpack_from("<H", img, pos)[0]
    if not hdr & 0x8000:
        raise SystemExit("craft.py: metadata is compressed (build with -noI -noD -noF -noX)")
    return pos + 2 + ref_off


def root_dir(img, base):
    """(start_block, offset) of the root directory's listing."""
    root = sb_get(img, base, "root_inode")
    p = raw_md(img, base, sb_get(img, base, "inode_table_start"), root >> 16, root & 0xFFFF)
    itype = struct.unpack_from("<H", img, p)[0]
    if itype == 1:
        start, _, _, off = struct.unpack_from("<IIHH", img, p + 16)
    else:
        _, _, start, _, _, off = struct.unpack_from("<IIIIHH", img, p + 16)
    return start, off


def first_entry(img, base):
    """File offset of the root listing's first entry (after its header)."""
    start, off = root_dir(img, base)
    return raw_md(img, base, sb_get(img, base, "directory_table_start"), start, off) + 12


def largest_file(img, base):
    """File offset of the block list of the first regular inode with two or more blocks."""
    bs = sb_get(img, base, "block_size")
    pos = base + sb_get(img, base, "inode_table_start")
    end = base + sb_get(img, base, "directory_table_start")
    data = bytearray()
    where = []
    while pos < end:  # the inode table, unpacked, with each byte's file offset
        size = struct.unpack_from("<H", img, pos)[0] & 0x7FFF or 0x8000
        data += img[pos + 2:pos + 2 + size]
        where += range(pos + 2, pos + 2 + size)
        pos += 2 + size
    i = 0
    sizes = {1: 32, 2: 32, 3: 24, 4: 24, 5: 24, 6: 20, 7: 20, 8: 40, 9: 56, 10: 24, 11: 28, 12: 28, 13: 24, 14: 24}
    while i + 16 <= len(data):
        t = struct.unpack_from("<H", data, i)[0]
        if t == 2:
            _, frag, _, fsize = struct.unpack_from("<IIII", data, i + 16)
            n = fsize // bs if frag != 0xFFFFFFFF else -(-fsize // bs)
            if n >= 2:
                return [where[i + 32 + k] for k in range(4 * n)], n
            i += 32 + 4 * n
        elif t == 9:
            fsize, frag = struct.unpack_from("<Q", data, i + 24)[0], struct.unpack_from("<I", data, i + 44)[0]
            n = fsize // bs if frag != 0xFFFFFFFF else -(-fsize // bs)
            i += 56 + 4 * n
        elif t in (3, 10):
            i += 24 + struct.unpack_from("<I", data, i + 20)[0] + (4 if t == 10 else 0)
        elif t == 8:
            count = struct.unpack_from("<H", data, i + 32)[0]
            i += 40
            for _ in range(count):
                i += 12 + struct.unpack_from("<I", data, i + 8)[0] + 1
        elif t in sizes:
            i += sizes[t]
        else:
            break
    raise SystemExit("craft.py: no file of two blocks or more")


def put(img, off, fmt, value):
    struct.pack_into(fmt, img, off, value)


def block_entry(img, base, value_of):
    offs, n = largest_file(img, base)
    last = offs[4 * (n - 1):4 * n]
    old = struct.unpack("<I", bytes(img[o] for o in last))[0]
    for k, b in enumerate(struct.pack("<I", value_of(old, sb_get(img, base, "block_size")))):
        img[last[k]] = b


# name -> (kind, patch(img, base))
CASES = {
    "directory_table_start": ("open", lambda m, b: sb_set(m, b, "directory_table_start", 12345)),
    "root_inode": ("open", lambda m, b: sb_set(m, b, "root_inode", 12345)),
    "root_inode_offset": ("open", lambda m, b: sb_set(m, b, "root_inode", 8000)),
    "fragments_0": ("read", lambda m, b: sb_set(m, b, "fragments", 0)),
    "no_ids_0": ("open", lambda m, b: sb_set(m, b, "no_ids", 0)),
    "block_size_1": ("open", lambda m, b: sb_set(m, b, "block_size", 1)),
    "block_size_0": ("open", lambda m, b: sb_set(m, b, "block_size", 0)),
    "block_log": ("open", lambda m, b: sb_set(m, b, "block_log", sb_get(m, b, "block_log") + 1)),
    "compression": ("open", lambda m, b: sb_set(m, b, "compression", 9)),
    "bytes_used": ("open", lambda m, b: sb_set(m, b, "bytes_used", 1 << 40)),
    "inode_table_start": ("open", lambda m, b: sb_set(m, b, "inode_table_start", 0)),
    "id_table_start": ("open", lambda m, b: sb_set(m, b, "id_table_start", sb_get(m, b, "bytes_used") - 2)),
    "fragment_table_start": ("open", lambda m, b: (sb_set(m, b, "fragments", max(1, sb_get(m, b, "fragments"))),
                                                   sb_set(m, b, "fragment_table_start", 12345))),
    "xattr_id_table_start": ("open", lambda m, b: sb_set(m, b, "xattr_id_table_start", 1 << 40)),
    "inodes_0": ("open", lambda m, b: sb_set(m, b, "inodes", 0)),
    "fragments_huge": ("open", lambda m, b: sb_set(m, b, "fragments", 0xFFFFFFF0)),
    # an uncompressed metadata block of 32 KiB (squashfuse takes up to 32 KiB, the format 8)
    "md_block_oversized": ("read", lambda m, b: put(m, b + sb_get(m, b, "inode_table_start"), "<H", 0x8000)),
    # a name of 64 KiB in the root's listing (the stack write of squashfuse's lookup)
    "dir_name_size": ("read", lambda m, b: put(m, first_entry(m, b) + 6, "<H", 0xFFFF)),
    "dir_entry_inode": ("read", lambda m, b: put(m, first_entry(m, b), "<H", 0xFFF0)),
    "dir_header_count": ("read", lambda m, b: put(m, first_entry(m, b) - 12, "<I", 0xFFFFFF)),
    # the last block of a file: stored, and longer than what is left of the file (or than
    # a block)
    "data_block_long": ("read", lambda m, b: block_entry(m, b, lambda old, bs: (1 << 24) | (bs + 4096))),
    "data_block_tail": ("read", lambda m, b: block_entry(m, b, lambda old, bs: (1 << 24) | bs)),
}


def main():
    if len(sys.argv) == 2 and sys.argv[1] == "list":
        for name, (kind, _) in CASES.items():
            print(name, kind)
        return
    if len(sys.argv) == 4 and sys.argv[1] == "sif":
        sqfs = open(sys.argv[2], "rb").read()
        h = bytearray(128)
        h[0:32] = b"#!/usr/bin/env run-singularity\n".ljust(32, b"\0")
        h[32:42] = b"SIF_MAGIC\0"
        h[42:45] = b"01\0"
        h[45:48] = b"02\0"
        data = 4096
        struct.pack_into("<qqqqqqqq", h, 64, 0, 0, 0, 1, 128, 585, data, len(sqfs))
        d = bytearray(585)
        struct.pack_into("<iBIIIqqq", d, 0, 0x4004, 1, 1, 1 | 0xF0000000, 0, data, len(sqfs), len(sqfs))
        struct.pack_into("<ii", d, 201, 1, 2)
        d[209:212] = b"02\0"
        with open(sys.argv[3], "wb") as f:
            f.write(bytes(h) + bytes(d) + bytes(data - 128 - 585) + sqfs)
        return
    if len(sys.argv) != 4 or sys.argv[1] != "cases":
        raise SystemExit(__doc__)
    src, out = sys.argv[2], sys.argv[3]
    good = bytearray(open(src, "rb").read())
    base = sif_partition(good)
    ext = os.path.splitext(src)[1]
    for name, (_, patch) in CASES.items():
        img = bytearray(good)
        try:
            patch(img, base)
        except SystemExit as e:
            print(f"# {name}: {e}", file=sys.stderr)
            continue
        with open(os.path.join(out, name + ext), "wb") as f:
            f.write(img)


main()
