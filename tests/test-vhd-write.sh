#!/bin/sh
# VHDs vdimotion creates are written by qemu-io (dynamic and fixed, odd
# sizes, unaligned and block-straddling writes) and then read identically
# by vdimotion, qemu-img and libvhdi; differencing chains vdimotion
# creates are followed by libvhdi, also after moving the chain elsewhere.
# (Writes through our own code, chains with data in every layer and
# concurrent writers are in tests/unit/test-vhd.c.)
. "$srcdir/functions.sh"
requires qemu-img
requires qemu-io
requires python3
[ -x "$VHDI_CAT" ] || skip "vhdi-cat not built"

MiB=1048576

# IMG reads the same through vdimotion, qemu-img and libvhdi; the raw
# copy is left in IMG.raw.
same_everywhere ()
{
  img=$1
  qemu-img convert -f vpc -O raw "$img" "$img.raw"
  "$VDIMOTION" compare "$img" "$img.raw" > /dev/null ||
    fail "$img: vdimotion and qemu-img read differently"
  "$VHDI_CAT" "$img" "$img.vhdi"
  cmp "$img.vhdi" "$img.raw" || fail "$img: libvhdi reads differently"
  rm -f "$img.vhdi"
}

# 2 MiB blocks; the size is not a multiple of them (last block partial).
size=$((9 * MiB + 3 * 512))
for sub in dynamic fixed; do
  img="$T/w-$sub.vhd"
  "$VDIMOTION" create -f vhd -o subformat=$sub "$img" $size
  [ "$(qemu-img info -f vpc --output=json "$img" |
       python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"])')" \
    = $size ] || fail "$sub: qemu-img size"
  same_everywhere "$img"
  qemu-io -f vpc \
    -c 'write -P 0x01 0 1' \
    -c 'write -P 0x02 1 511' \
    -c 'write -P 0x03 4396 511' \
    -c "write -P 0x04 $((2 * MiB - 100)) 200" \
    -c "write -P 0x05 $((3 * MiB + 7)) $((2 * MiB + 1000))" \
    -c "write -P 0x06 $((size - 1)) 1" \
    -c "write -z $((3 * MiB + 4096)) 8192" \
    "$img" > /dev/null
  same_everywhere "$img"
  # Spot checks against what was written.
  python3 - "$img.raw" $size <<'PY'
import sys
d = open(sys.argv[1], "rb").read()
size = int(sys.argv[2])
assert len(d) == size, len(d)
assert d[0] == 1 and d[1:512] == b"\2" * 511
assert d[4396:4907] == b"\3" * 511 and d[4395] == 0 and d[4907] == 0
M = 1 << 20
assert d[2*M-100:2*M+100] == b"\4" * 200
assert d[3*M+4096:3*M+4096+8192] == bytes(8192)
assert d[3*M+7:3*M+4096] == b"\5" * (4096 - 7)
assert d[size-1] == 6
PY
  "$VDIMOTION" info "$img" | grep -q "subformat: $sub" || fail "$sub: info"
done

# The dynamic image's map: blocks qemu wrote are whole (qemu sets every
# bitmap bit), the untouched block 3 (6-8 MiB) is a hole.
"$VDIMOTION" map --json "$T/w-dynamic.vhd" > "$T/map.json"
python3 - "$T/map.json" <<'PY'
import json, sys
M = 1 << 20
m = json.load(open(sys.argv[1]))
data = []
for e in m:  # join data extents that touch (their host offsets may not)
    if e["data"] and data and data[-1][1] == e["start"]:
        data[-1] = (data[-1][0], e["start"] + e["length"])
    elif e["data"]:
        data.append((e["start"], e["start"] + e["length"]))
def covered(a, b):
    return any(x <= a and b <= y for x, y in data)
assert covered(0, 4 * M) and covered(8 * M, 9 * M), data
assert not any(x < 7 * M and 6 * M < y for x, y in data), data
PY

# A chain we create over a qemu-written base: libvhdi follows it, our
# reads fall through it, and info names the parent.
mkdir "$T/sr"
qemu-img convert -f vpc -O vpc -o subformat=dynamic "$T/w-dynamic.vhd" "$T/sr/base.vhd"
"$VDIMOTION" create -f vhd -b base.vhd "$T/sr/mid.vhd"
"$VDIMOTION" create -f vhd -b "$T/sr/mid.vhd" "$T/sr/top.vhd"
"$VDIMOTION" info "$T/sr/top.vhd" > "$T/info"
grep -q 'subformat: differencing' "$T/info" || fail "chain: subformat"
grep -q 'backing file: .*mid.vhd' "$T/info" || fail "chain: backing file"
"$VHDI_CAT" "$T/sr/top.vhd" "$T/top.vhdi"
qemu-img convert -f vpc -O raw "$T/sr/base.vhd" "$T/base.raw"
cmp "$T/top.vhdi" "$T/base.raw" || fail "chain: libvhdi reads differently"
"$VDIMOTION" compare "$T/sr/top.vhd" "$T/base.raw" > /dev/null || fail "chain: our reads"
# Flattened map of the empty top layers shows the base's data at depth 2.
"$VDIMOTION" map --json "$T/sr/top.vhd" | grep -q '"depth": 2' || fail "chain: map depth"

# The relative locator still finds the parents once the SR moved.
mv "$T/sr" "$T/sr2"
"$VDIMOTION" compare "$T/sr2/mid.vhd" "$T/base.raw" > /dev/null ||
  fail "moved chain: relative locator not used"
"$VDIMOTION" compare "$T/sr2/top.vhd" "$T/base.raw" > /dev/null ||
  fail "moved chain: relative locator computed from an absolute name"
"$VHDI_CAT" -p "$T/sr2/base.vhd" "$T/sr2/mid.vhd" "$T/mid.vhdi"
cmp "$T/mid.vhdi" "$T/base.raw" || fail "moved chain: libvhdi"

# Refused creations leave nothing behind.
expect_exit 1 "$VDIMOTION" create -f vhd "$T/odd.vhd" 3T
[ ! -e "$T/odd.vhd" ] || fail "a size VHD cannot hold left a file"
expect_exit 1 "$VDIMOTION" create -f vhd -o subformat=fixed -b base.vhd "$T/sr2/f.vhd"
[ ! -e "$T/sr2/f.vhd" ] || fail "fixed with parent left a file"
echo PASS
