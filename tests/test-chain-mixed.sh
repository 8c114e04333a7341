#!/bin/sh
# Chains across formats: qcow2 on a VHD, qcow2 on raw, three layers deep;
# reads fall through, maps report the layer of every byte.
. "$srcdir/functions.sh"
requires qemu-img

# base.vhd <- mid.qcow2 <- top.qcow2, all written by qemu.
qemu-img create -f vpc "$T/base.vhd" 24M > /dev/null
qemu-io -f vpc -c 'write -P 0x11 0 8M' "$T/base.vhd" > /dev/null
"$VDIMOTION" create -f qcow2 -b base.vhd -F vhd "$T/mid.qcow2"
qemu-img info "$T/mid.qcow2" | grep -q 'backing file format: vpc' \
  || fail "qcow2 on VHD does not record backing format vpc"
qemu-io -f qcow2 -c 'write -P 0x22 4M 8M' "$T/mid.qcow2" > /dev/null
"$VDIMOTION" create -f qcow2 -b mid.qcow2 -F qcow2 "$T/top.qcow2"
qemu-io -f qcow2 -c 'write -P 0x33 10M 1M' -c 'write -z 1M 1M' "$T/top.qcow2" > /dev/null

qemu_raw "$T/top.qcow2" "$T/ref.raw"
"$VDIMOTION" compare "$T/top.qcow2" "$T/ref.raw" | grep -q identical || fail "chain read"
"$VDIMOTION" info "$T/top.qcow2" > "$T/info"
[ "$(grep -c '^image:' "$T/info")" -eq 3 ] || fail "info does not show 3 layers"

"$VDIMOTION" map --json "$T/top.qcow2" > "$T/map.json"
python3 - "$T/map.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
def at(off):
    return next(e for e in m if e["start"] <= off < e["start"] + e["length"])
M = 1 << 20
assert at(10 * M)["depth"] == 0 and at(10 * M)["data"]
assert at(1 * M)["depth"] == 0 and at(1 * M)["zero"] and not at(1 * M)["data"]
assert at(5 * M)["depth"] == 1 and at(5 * M)["data"]
assert at(0)["depth"] == 2 and at(0)["data"]
assert at(20 * M)["depth"] == 2 and not at(20 * M)["data"]
PY
# --layer: only the top's own extents are present.
"$VDIMOTION" map --json --layer "$T/top.qcow2" > "$T/layer.json"
python3 - "$T/layer.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
present = sum(e["length"] for e in m if e["present"])
assert present == 2 << 20, present
PY

# qcow2 on raw.
"$VDIMOTION" create -f raw "$T/r.raw" 16M
write_pattern "$T/r.raw" 5 0 $((2 << 20))
"$VDIMOTION" create -f qcow2 -b r.raw -F raw "$T/over-raw.qcow2"
qemu-io -f qcow2 -c 'write -P 0x44 1M 64k' "$T/over-raw.qcow2" > /dev/null
qemu_raw "$T/over-raw.qcow2" "$T/ref2.raw"
"$VDIMOTION" compare "$T/over-raw.qcow2" "$T/ref2.raw" | grep -q identical || fail "qcow2 over raw"

# Opening a chain is read-only below the top: the parent is unchanged.
sum1=$(md5sum < "$T/base.vhd")
"$VDIMOTION" map "$T/top.qcow2" > /dev/null
[ "$(md5sum < "$T/base.vhd")" = "$sum1" ] || fail "parent modified"
echo PASS
