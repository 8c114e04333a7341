#!/bin/sh
# A sparse raw file maps to its data extents (SEEK_DATA/SEEK_HOLE), the
# same ranges qemu-img map reports, and reads back what was written.
. "$srcdir/functions.sh"
requires qemu-img

"$VDIMOTION" create -f raw "$T/d.raw" 64M
write_pattern "$T/d.raw" 1 0 4096
write_pattern "$T/d.raw" 2 $((5 << 20)) $((3 << 20))
write_pattern "$T/d.raw" 3 $(( (64 << 20) - 8192 )) 8192

"$VDIMOTION" map --json "$T/d.raw" > "$T/ours.json"
qemu-img map --output=json "$T/d.raw" > "$T/qemu.json"
python3 - "$T/ours.json" "$T/qemu.json" <<'PY'
import json, sys
ours, qemu = (json.load(open(p)) for p in sys.argv[1:3])
def data(m): return [(e["start"], e["length"]) for e in m if e["data"]]
pos = 0
for e in ours:
    assert e["start"] == pos, e
    pos += e["length"]
assert pos == 64 << 20
assert data(ours) == data(qemu), (data(ours), data(qemu))
for e in ours:
    if e["data"]:
        assert e["offset"] == e["start"]
PY
cp --sparse=always "$T/d.raw" "$T/copy.raw"
"$VDIMOTION" compare "$T/d.raw" "$T/copy.raw" > "$T/out"
grep -q 'Images are identical.' "$T/out" || fail "compare output"
echo PASS
