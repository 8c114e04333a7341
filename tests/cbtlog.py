#!/usr/bin/env python3
"""A changed-block log read by its documented format (vdimotion-sr(5),
"CHANGED-BLOCK LOGS"), independently of sr-drivers/cbt-log.c.

  cbtlog.py PATH          one line of key=value: generation, predecessor,
                          consistent, virtual_size, reason, reset_time,
                          blocks (the set ones, comma-separated, or -)

From Python: read(PATH), that line's fields; marked(PATH), every set
block in a list.
"""
import struct
import sys


def marked(path):
    """The blocks set in the log at PATH, a sorted list."""
    return parse(path)[1]


def read(path):
    info, blocks = parse(path)
    info["blocks"] = (",".join(map(str, blocks)) if len(blocks) <= 64
                      else "many")
    return info


def parse(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"VDMCBTLG":
        raise SystemExit(f"{path}: bad magic")
    version, block, size = struct.unpack_from("<IIQ", data, 8)
    assert version == 1 and block == 65536, (version, block)
    text = lambda off, n: data[off:off + n].split(b"\0")[0].decode()
    flags, = struct.unpack_from("<I", data, 104)
    reset_time, = struct.unpack_from("<q", data, 112)
    nblocks = (size + block - 1) // block
    bitmap = data[4096:4096 + (nblocks + 7) // 8]
    # Block i: byte i // 8, most significant bit first (XenAPI's order).
    blocks = [i for i in range(nblocks) if bitmap[i // 8] >> (7 - i % 8) & 1]
    return {
        "generation": text(24, 40),
        "predecessor": text(64, 40) or "-",
        "consistent": flags & 1,
        "virtual_size": size,
        "reason": text(120, 128).replace(" ", "_") or "-",
        "reset_time": reset_time,
        "nblocks": len(blocks),
    }, blocks


if __name__ == "__main__":
    print(" ".join(f"{k}={v}" for k, v in read(sys.argv[1]).items()))
