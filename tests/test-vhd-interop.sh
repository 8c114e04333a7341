#!/bin/sh
# VHDs made by qemu-img (dynamic, fixed, converted) read by vdimotion
# exactly as qemu and libvhdi read them; our maps lie inside qemu's; and
# VHDs we create report the exact size we asked for in qemu-img info.
. "$srcdir/functions.sh"
requires qemu-img
requires qemu-io
requires python3
[ -x "$VHDI_CAT" ] || skip "vhdi-cat not built"

MiB=1048576

# Every DATA extent of ours lies inside a data extent of qemu's (qemu
# sees whole blocks, we see sectors); with qemu's all-ones bitmaps the
# totals are equal too.  map_within OURS.json QEMU.json
map_within ()
{
  python3 - "$1" "$2" <<'PY'
import json, sys
ours = json.load(open(sys.argv[1]))
qemu = json.load(open(sys.argv[2]))
qd = []
for e in qemu:  # qemu splits data by zero-ness: join what touches
    if not e["data"]:
        continue
    if qd and qd[-1][1] == e["start"]:
        qd[-1] = (qd[-1][0], e["start"] + e["length"])
    else:
        qd.append((e["start"], e["start"] + e["length"]))
pos = 0
for e in ours:
    assert e["start"] == pos, ("gap", e)
    pos += e["length"]
    if not e["data"]:
        continue
    a, b = e["start"], e["start"] + e["length"]
    assert any(x <= a and b <= y for x, y in qd), ("not in qemu's map", e)
assert pos == sum(e["length"] for e in qemu), "map does not cover the disk"
PY
}

# Scattered, unaligned and block-straddling writes through qemu-io.
fill_with_qemu ()
{
  qemu-io -f vpc \
    -c 'write -P 0x11 0 1' \
    -c 'write -P 0x22 1000 3000' \
    -c "write -P 0x33 $((2 * MiB - 700)) 1400" \
    -c "write -P 0x44 $((5 * MiB + 512)) $((3 * MiB))" \
    -c "write -P 0x55 $((20 * MiB - 4096)) 4096" \
    "$1" > /dev/null
}

# Our reads of IMG equal qemu's and libvhdi's.
check_reads ()
{
  img=$1
  qemu-img convert -f vpc -O raw "$img" "$img.qemu.raw"
  "$VDIMOTION" compare "$img" "$img.qemu.raw" > /dev/null ||
    fail "$img: vdimotion and qemu-img read differently"
  "$VHDI_CAT" "$img" "$img.vhdi.raw"
  cmp "$img.vhdi.raw" "$img.qemu.raw" || fail "$img: libvhdi reads differently"
  want=$(qemu-img info -f vpc --output=json "$img" |
         python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"])')
  got=$("$VDIMOTION" info --json "$img" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"])')
  [ "$want" = "$got" ] || fail "$img: size $got, qemu says $want"
}

for sub in dynamic fixed; do
  img="$T/q-$sub.vhd"
  qemu-img create -q -f vpc -o subformat=$sub "$img" 24M
  fill_with_qemu "$img"
  check_reads "$img"
  "$VDIMOTION" info "$img" | grep -q "subformat: $sub" || fail "$sub: subformat"
  "$VDIMOTION" map --json "$img" > "$T/ours.json"
  qemu-img map -f vpc --output=json "$img" > "$T/qemu.json"
  map_within "$T/ours.json" "$T/qemu.json" || fail "$sub: map not within qemu's"
done

# Fixed: all data, host offset = guest offset.
python3 - "$T/ours.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
assert len(m) == 1 and m[0]["data"] and m[0]["offset"] == 0, m
PY

# Foreign VHDs made by conversion, in CHS-rounded and exact-size mode.
qemu-img create -q -f raw "$T/src.raw" 30M
write_pattern "$T/src.raw" 1 12345 $((3 * MiB))
write_pattern "$T/src.raw" 2 $((17 * MiB + 1)) 777
for opts in subformat=dynamic subformat=dynamic,force_size=on \
            subformat=fixed subformat=fixed,force_size=on; do
  rm -f "$T/conv.vhd"*
  qemu-img convert -f raw -O vpc -o "$opts" "$T/src.raw" "$T/conv.vhd"
  check_reads "$T/conv.vhd"
  "$VDIMOTION" map --json "$T/conv.vhd" > "$T/ours.json"
  qemu-img map -f vpc --output=json "$T/conv.vhd" > "$T/qemu.json"
  map_within "$T/ours.json" "$T/qemu.json" || fail "$opts: map not within qemu's"
done
"$VDIMOTION" compare "$T/conv.vhd" "$T/src.raw" > /dev/null || fail "force_size: content"

# Images we create: qemu-img sees exactly the size we created (creator
# "tap", so qemu trusts current_size, not the CHS geometry).
for size in 1048576 10000384 1000000000 107374182400 2190433320960; do
  for sub in dynamic fixed; do
    rm -f "$T/ours.vhd"
    "$VDIMOTION" create -f vhd -o subformat=$sub "$T/ours.vhd" "$size"
    got=$(qemu-img info -f vpc --output=json "$T/ours.vhd" |
          python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"])')
    [ "$got" = "$size" ] || fail "$sub $size: qemu-img info says $got"
  done
done
echo PASS
