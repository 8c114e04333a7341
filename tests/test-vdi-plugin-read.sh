#!/bin/sh
# nbdkit-vdi-plugin serves every kind of image (raw, VHD dynamic and
# fixed, a VHD differencing chain, qcow2, a qcow2 with a backing file):
# nbdcopy and qemu-img convert from the NBD URI read exactly what an
# independent reader (qemu-img, libvhdi) reads from the file, and the
# extents a client sees (nbdinfo --map, qemu-img map over NBD) are the
# image's own allocation map (vdimotion map), holes and data alike.
. "$srcdir/functions.sh"
uses_nbdkit_module
. "$srcdir/copy-sources.sh"
requires nbdkit
requires nbdcopy
requires nbdinfo
requires qemu-img
requires python3
PLUGIN=$top_builddir/sr-drivers/.libs/nbdkit-vdi-plugin.so
[ -f "$PLUGIN" ] || skip "$PLUGIN not built"

# The plugin loads and describes itself as nbdkit plugins do.
nbdkit "$PLUGIN" --dump-plugin > "$T/dump"
grep -q '^name=vdi$' "$T/dump" || fail "--dump-plugin: no name=vdi"
grep -q '^thread_model=parallel$' "$T/dump" || fail "--dump-plugin: not parallel"
grep -q '^has_extents=1$' "$T/dump" || fail "--dump-plugin: no extents"
nbdkit "$PLUGIN" --help | grep -q 'file=' || fail "--help: no file="

# same_map IMAGE NBDINFO_JSON QEMU_JSON: the three maps agree once
# neighbours of one kind are merged (the NBD side knows no layers).
same_map ()
{
  "$VDIMOTION" map --json "$1" > "$T/ours.json"
  python3 - "$T/ours.json" "$2" "$3" <<'PY' || fail "$1: maps differ"
import json, sys
def merged(items):
    out = []
    for start, length, kind in items:
        if length == 0:
            continue
        if out and out[-1][2] == kind and out[-1][0] + out[-1][1] == start:
            out[-1][1] += length
        else:
            out.append([start, length, kind])
    return out
def kind(present, zero, data):
    return "data" if data else ("zero" if present else "hole")
ours = merged((e["start"], e["length"],
               kind(e["present"], e["zero"], e["data"]))
              for e in json.load(open(sys.argv[1])))
# NBD: bit 0 hole, bit 1 zero.  Our plugin says hole only with zero.
nbd = merged((e["offset"], e["length"],
              {0: "data", 2: "zero", 3: "hole"}[e["type"]])
             for e in json.load(open(sys.argv[2])))
# qemu over NBD calls everything that is not a hole "data" and tells
# zero by the zero flag alone, so compare it on zero vs not zero.
q = merged((e["start"], e["length"], "zero" if e["zero"] else "data")
           for e in json.load(open(sys.argv[3])))
flat = merged((s, l, "data" if k == "data" else "zero") for s, l, k in ours)
for name, got, want in (("nbdinfo", nbd, ours), ("qemu-img map", q, flat)):
    if got != want:
        print("%s:\n  %s\nvdimotion map:\n  %s" % (name, got, want),
              file=sys.stderr)
        sys.exit(1)
PY
}

make_sources
# Not from copy-sources: a VHD dynamic made and written by qemu with a
# partly written block, and a qcow2 whose backing file is a VHD.
qemu-img create -q -f vpc -o subformat=dynamic,force_size=on "$T/src/qemu.vhd" 20M
qemu-io -f vpc -c 'write -P 0x31 0 4k' -c 'write -P 0x32 3M 1M' \
  -c 'write -P 0x33 19M 4k' "$T/src/qemu.vhd" > /dev/null
qemu_raw "$T/src/qemu.vhd" "$T/src/qemu.ref"
qemu-img create -q -f qcow2 -b qemu.vhd -F vpc "$T/src/onvhd.qcow2"
qemu-io -f qcow2 -c 'write -P 0x34 3M 64k' -c 'write -z 19M 64k' \
  "$T/src/onvhd.qcow2" > /dev/null
qemu_raw "$T/src/onvhd.qcow2" "$T/src/onvhd.ref"

for img in $SOURCES qemu.vhd onvhd.qcow2; do
  ref=$(ref_of "$img")
  uri="nbd+unix:///?socket=$T/vdi.sock"
  start_nbdkit vdi "$PLUGIN" "file=$T/src/$img"

  nbdcopy "$uri" "$T/nbdcopy.raw"
  cmp "$T/nbdcopy.raw" "$ref" || fail "$img: nbdcopy reads something else"
  # Several connections at once (multi-conn) read the same.
  nbdcopy --connections=4 --requests=8 "$uri" "$T/nbdcopy4.raw"
  cmp "$T/nbdcopy4.raw" "$ref" || fail "$img: nbdcopy -C 4 reads something else"
  qemu-img convert -f raw -O raw "$uri" "$T/qemu.raw"
  cmp "$T/qemu.raw" "$ref" || fail "$img: qemu-img convert reads something else"

  # nbdinfo asks for whole ranges; qemu asks one extent at a time
  # (NBD_CMD_FLAG_REQ_ONE).  Both must see the image's own map.
  nbdinfo --map --json "$uri" > "$T/nbd.json"
  qemu-img map -f raw --output=json "$uri" > "$T/qemu.json"
  same_map "$T/src/$img" "$T/nbd.json" "$T/qemu.json"

  stop_nbdkit vdi
  rm -f "$T/nbdcopy.raw" "$T/nbdcopy4.raw" "$T/qemu.raw"
  echo "ok: $img"
done

# A disk that is mostly holes maps as holes through NBD: nbdcopy reads
# only what is allocated and the copy stays sparse.
"$VDIMOTION" create -f qcow2 "$T/big.qcow2" 8G
pattern 7 65536 | "$VDISK_WRITE" "$T/big.qcow2" $(( 5 << 30 ))
start_nbdkit vdi "$PLUGIN" "file=$T/big.qcow2"
nbdinfo --map --json "nbd+unix:///?socket=$T/vdi.sock" > "$T/nbd.json"
python3 - "$T/nbd.json" <<'PY' || fail "big.qcow2: wrong map"
import json, sys
m = json.load(open(sys.argv[1]))
data = [(e["offset"], e["length"]) for e in m if e["type"] == 0]
assert data == [(5 << 30, 65536)], data
assert all(e["type"] == 3 for e in m if e["type"] != 0), m
PY
nbdcopy "nbd+unix:///?socket=$T/vdi.sock" "$T/big.raw"
stop_nbdkit vdi
[ "$(stat -c %b "$T/big.raw")" -lt 4096 ] || fail "big.raw is not sparse"
echo PASS
