#!/bin/sh
# qcow2 images made by qemu-img/qemu-io read back through libvdisk equal
# to qemu's own view: `vdimotion compare IMG RAW` against `qemu-img
# convert -O raw`, and `vdimotion map --json` equal to `qemu-img map
# --output=json` (compared as parsed JSON).
. "$srcdir/functions.sh"
requires qemu-img
requires qemu-io
requires python3

# The JSON maps of qemu-img and vdimotion must be the same list.
same_map ()
{
  qemu-img map --output=json "$1" > "$T/qemu.json"
  "$VDIMOTION" map --json "$1" > "$T/ours.json"
  python3 - "$T/qemu.json" "$T/ours.json" "$1" <<'PY'
import json, sys
keys = ("start", "length", "depth", "present", "zero", "data", "offset")
def load(p):
    return [{k: e[k] for k in keys if k in e} for e in json.load(open(p))]
q, o = load(sys.argv[1]), load(sys.argv[2])
if q != o:
    print("map of %s differs" % sys.argv[3], file=sys.stderr)
    print("qemu-img: %s" % q, file=sys.stderr)
    print("ours:     %s" % o, file=sys.stderr)
    sys.exit(1)
PY
}

# Our reads of IMG equal qemu's, and so do the maps.
check ()
{
  qemu_raw "$1" "$T/ref.raw"
  "$VDIMOTION" compare -q "$1" "$T/ref.raw" || fail "compare $1 != qemu's raw"
  same_map "$1" || fail "map $1"
  echo "ok: $1"
}

qio () { img=$1; shift; qemu-io -f qcow2 "$@" "$img" > /dev/null; }

cd "$T"

# Plain image: data, holes, zero clusters with and without an offset,
# unaligned writes, a virtual size that is not a multiple of the cluster.
qemu-img create -q -f qcow2 plain.qcow2 $((10 * 1048576 + 12345))
qio plain.qcow2 -c 'write -P 0x11 0 1M' -c 'write -P 0x22 3M 100k' \
    -c 'write -P 0x33 4097 70000' -c 'write -z 5M 256k' \
    -c 'write -P 0x44 8M 512k' -c 'write -z 8M 128k' \
    -c 'write -P 0x55 10M 12345'
check plain.qcow2

# Other cluster sizes, and v2 (compat=0.10).
for cs in 512 4096 2097152; do
  qemu-img create -q -f qcow2 -o cluster_size=$cs c$cs.qcow2 7777777
  qio c$cs.qcow2 -c 'write -P 0x66 1000 300000' -c 'write -P 0x67 5M 33333'
  check c$cs.qcow2
done
qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 5M
qio v2.qcow2 -c 'write -P 0x77 65000 200000' -c 'write -z 2M 1M'
check v2.qcow2
"$VDIMOTION" info v2.qcow2 | grep -q v2 || fail "v2 subformat"

# A chain of three: base <- mid <- top, zero clusters hiding the parent,
# and a top bigger than its backing file.
qemu-img create -q -f qcow2 base.qcow2 8M
qio base.qcow2 -c 'write -P 0xa1 0 8M'
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 mid.qcow2
qio mid.qcow2 -c 'write -P 0xb2 1M 1M' -c 'write -z 3M 64k' \
    -c 'write -P 0xb3 5000 3000'
qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2 12M
qio top.qcow2 -c 'write -P 0xc3 1536k 1M' -c 'write -z 6M 1M' \
    -c 'write -P 0xc4 9M 64k'
check mid.qcow2
check top.qcow2
"$VDIMOTION" info top.qcow2 > info.txt
grep -q mid.qcow2 info.txt || fail "info does not name the backing file"

# A raw base under a qcow2 top.
qemu-img create -q -f raw rawbase.img 4M
qio rawbase.img -f raw -c 'write -P 0xd1 0 2M' 2>/dev/null ||
  qemu-io -f raw -c 'write -P 0xd1 0 2M' rawbase.img > /dev/null
qemu-img create -q -f qcow2 -b rawbase.img -F raw overraw.qcow2
qio overraw.qcow2 -c 'write -P 0xd2 1M 64k'
qemu_raw overraw.qcow2 ref.raw
"$VDIMOTION" compare -q overraw.qcow2 ref.raw || fail "compare overraw"

# Compressed clusters (data with no host offset), 64k and 4k clusters.
python3 - plain-src.raw <<'PY'
import random, sys
r = random.Random(7)
with open(sys.argv[1], "wb") as f:
    for i in range(96):
        # Mix compressible, incompressible and zero chunks.
        k = i % 3
        f.write(bytes([i]) * 65536 if k == 0 else
                r.randbytes(65536) if k == 1 else bytes(65536))
PY
qemu-img convert -c -O qcow2 -f raw plain-src.raw comp.qcow2
check comp.qcow2
qemu-img convert -c -O qcow2 -o cluster_size=4096 -f raw plain-src.raw comp4k.qcow2
check comp4k.qcow2
# A compressed base under a writable top.
qemu-img create -q -f qcow2 -b comp.qcow2 -F qcow2 overcomp.qcow2
qio overcomp.qcow2 -c 'write -P 0xe1 100000 5000'
check overcomp.qcow2

# Layer map: only the top layer's extents.
"$VDIMOTION" map --json --layer top.qcow2 > layer.json
python3 - layer.json <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
assert all(e["depth"] == 0 for e in m), m
assert any(e["data"] for e in m), m
PY
