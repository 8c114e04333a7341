#!/bin/bash
# --keep-chain copies a chain layer by layer into a chain of the same
# shape: each layer holds what its source layer held, and the whole reads
# identical.
. "$srcdir/functions.sh"
. "$srcdir/copy-sources.sh"
requires qemu-img

make_sources
layers_equal ()  # SRC DST: the per-layer data ranges match
{
  "$VDIMOTION" map --json --layer "$1" > "$T/l1.json"
  "$VDIMOTION" map --json --layer "$2" > "$T/l2.json"
  python3 - "$T/l1.json" "$T/l2.json" <<'PY' || fail "layer maps of $1 and $2 differ"
import json, sys
def present(p):
    out = []
    for e in json.load(open(p)):
        if not e["present"]: continue
        k = ("data" if e["data"] else "zero")
        if out and out[-1][2] == k and out[-1][0] + out[-1][1] == e["start"]:
            out[-1][1] += e["length"]
        else:
            out.append([e["start"], e["length"], k])
    return out
a, b = present(sys.argv[1]), present(sys.argv[2])
# Every range the source layer holds, the copy's layer holds (as data, or
# as zero where the copy found zeroes); the copy may round out to its own
# cluster size, but holds nothing far from what the source layer held.
def inside(x, m): return any(s <= x[0] and x[0] + x[1] <= s + l for s, l, _ in m)
def cover(m): return sum(x[1] for x in m)
merged = []
for s, l, k in b:
    if merged and merged[-1][0] + merged[-1][1] == s: merged[-1][1] += l
    else: merged.append([s, l, k])
assert all(inside(x, merged) for x in a), (a, b)
assert cover(b) <= cover(a) + len(a) * 2 * (1 << 16), (a, b)
PY
}

# VHD chain -> VHD chain (libvhdi reads it) and -> qcow2 chain (qemu does).
mkdir "$T/o1" "$T/o2" "$T/o3"
"$VDIMOTION" copy --keep-chain "$T/src/diff.vhd" "$T/o1/diff.vhd"
for f in dbase.vhd dmid.vhd diff.vhd; do [ -f "$T/o1/$f" ] || fail "o1/$f missing"; done
"$VDIMOTION" info "$T/o1/diff.vhd" | grep -c '^image:' | grep -qx 3 || fail "not 3 layers"
"$VHDI_CAT" "$T/o1/diff.vhd" "$T/o1.raw"
cmp -s "$T/o1.raw" "$T/src/diff.ref" || fail "VHD chain copy reads differently (libvhdi)"
layers_equal "$T/src/diff.vhd" "$T/o1/diff.vhd"
layers_equal "$T/src/dmid.vhd" "$T/o1/dmid.vhd"

"$VDIMOTION" copy --keep-chain -O qcow2 "$T/src/diff.vhd" "$T/o2/top.qcow2"
for f in dbase.qcow2 dmid.qcow2 top.qcow2; do [ -f "$T/o2/$f" ] || fail "o2/$f missing"; done
qemu-img compare -q -f raw "$T/src/diff.ref" "$T/o2/top.qcow2" || fail "VHD chain -> qcow2 chain"
for f in dbase dmid top; do qemu-img check -q "$T/o2/$f.qcow2" || fail "check $f"; done
qemu-img info --backing-chain "$T/o2/top.qcow2" | grep -c '^image:' | grep -qx 3 || fail "qemu sees no 3-layer chain"
layers_equal "$T/src/diff.vhd" "$T/o2/top.qcow2"

# qcow2 chain -> qcow2 chain.
"$VDIMOTION" copy --keep-chain "$T/src/chain.qcow2" "$T/o3/chain.qcow2"
qemu-img compare -q "$T/src/chain.qcow2" "$T/o3/chain.qcow2" || fail "qcow2 chain copy"
layers_equal "$T/src/chain.qcow2" "$T/o3/chain.qcow2"
[ "$(stat -c %s "$T/o3/chain.qcow2")" -lt $(( 8 << 20 )) ] || fail "top layer not thin"

# Refused: raw output, and NBD.
expect_exit 1 "$VDIMOTION" copy --keep-chain "$T/src/chain.qcow2" "$T/o3/x.raw"
grep -q 'vhd or qcow2' "$T/err" || fail "raw keep-chain message"
echo PASS
