#!/bin/sh
# qcow2 images we create are images qemu accepts: `vdimotion create -f
# qcow2 [-b PARENT]`, then writes by qemu-io; `qemu-img check` finds no
# errors and no leaks, `qemu-img compare` equals a raw reference of what
# was written, and our reads equal too.  (Writes through our own API are
# in tests/unit/test-qcow2.)
. "$srcdir/functions.sh"
requires qemu-img
requires qemu-io
requires python3

cd "$T"

# No errors, no leaks, nothing else wrong.
check_clean ()
{
  qemu-img check -f qcow2 --output=json "$1" > check.json 2>&1 || {
    cat check.json >&2
    fail "qemu-img check $1"
  }
  python3 - check.json <<'PY' || fail "qemu-img check $1 is not clean"
import json, sys
c = json.load(open(sys.argv[1]))
bad = {k: c[k] for k in ("check-errors", "corruptions", "leaks",
                         "corruptions-fixed", "leaks-fixed") if c.get(k)}
if bad:
    print(c, file=sys.stderr)
    sys.exit(1)
PY
}

# The same qemu-io commands on IMG (qcow2) and REF (raw).
both ()
{
  img=$1 ref=$2
  shift 2
  qemu-io -f qcow2 "$@" "$img" > /dev/null
  qemu-io -f raw "$@" "$ref" > /dev/null
}

equal ()
{
  qemu-img compare -q -f qcow2 -F raw "$1" "$2" || fail "qemu-img compare $1 $2"
  "$VDIMOTION" compare -q "$1" "$2" || fail "vdimotion compare $1 $2"
}

# Fresh images: small and big clusters, odd sizes.
for spec in "65536 10M" "512 3M" "4096 7777777" "2097152 5000000"; do
  set -- $spec
  "$VDIMOTION" create -f qcow2 -o cluster_size=$1 new-$1.qcow2 $2
  check_clean new-$1.qcow2
  qemu-img info --output=json new-$1.qcow2 > info.json
  python3 - info.json $1 <<'PY'
import json, sys
i = json.load(open(sys.argv[1]))
assert i["format"] == "qcow2", i
assert i["cluster-size"] == int(sys.argv[2]), i
assert i["format-specific"]["data"]["compat"] == "1.1", i
PY
  size=$(qemu-img info --output=json new-$1.qcow2 |
         python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"])')
  truncate -s "$size" ref-$1.raw
  equal new-$1.qcow2 ref-$1.raw
  both new-$1.qcow2 ref-$1.raw -c 'write -P 0x5a 1000 200000' \
      -c 'write -P 0x5b 2M 64k' -c 'write -z 2100000 100000' \
      -c "write -P 0x5c $((size - 3000)) 3000"
  check_clean new-$1.qcow2
  equal new-$1.qcow2 ref-$1.raw
  echo "ok: created with cluster size $1"
done

# The defaults: 64 KiB clusters, version 3.
"$VDIMOTION" create -f qcow2 dflt.qcow2 1G
qemu-img info --output=json dflt.qcow2 | python3 -c '
import json, sys
i = json.load(sys.stdin)
assert i["cluster-size"] == 65536 and i["virtual-size"] == 1 << 30, i'
check_clean dflt.qcow2

# Small clusters: qemu-io writes that need many refcount blocks and a
# bigger refcount table than the one we created.
"$VDIMOTION" create -f qcow2 -o cluster_size=512 grow.qcow2 64M
truncate -s 64M grow.raw
both grow.qcow2 grow.raw -c 'write -P 0x71 0 20M' -c 'write -P 0x72 40M 3M'
check_clean grow.qcow2
equal grow.qcow2 grow.raw
echo "ok: refcount growth"

# With a backing file: qemu-img sees the backing file and its format,
# the size defaults to the parent's, writes fall through correctly.
qemu-img create -q -f qcow2 base.qcow2 6M
qemu-io -f qcow2 -c 'write -P 0x31 0 6M' base.qcow2 > /dev/null
"$VDIMOTION" create -f qcow2 -b base.qcow2 -F qcow2 child.qcow2
qemu-img info --output=json child.qcow2 > info.json
python3 - info.json <<'PY'
import json, sys
i = json.load(open(sys.argv[1]))
assert i["backing-filename"] == "base.qcow2", i
assert i.get("backing-filename-format") == "qcow2", i
assert i["virtual-size"] == 6 << 20, i
PY
check_clean child.qcow2
qemu_raw base.qcow2 child.raw
both child.qcow2 child.raw -c 'write -P 0x32 100 1000' \
    -c 'write -z 1M 64k' -c 'write -P 0x33 3000000 200000'
check_clean child.qcow2
equal child.qcow2 child.raw
# Our map of it equals qemu's.
qemu-img map --output=json child.qcow2 > qemu.json
"$VDIMOTION" map --json child.qcow2 > ours.json
python3 - qemu.json ours.json <<'PY'
import json, sys
keys = ("start", "length", "depth", "present", "zero", "data", "offset")
q, o = ([{k: e[k] for k in keys if k in e} for e in json.load(open(p))]
        for p in sys.argv[1:3])
assert q == o, (q, o)
PY
echo "ok: backing file"

# A raw parent is recorded as raw; a bigger child than its parent.
truncate -s 2M rawparent.img
"$VDIMOTION" create -f qcow2 -b rawparent.img -F raw overraw.qcow2 4M
qemu-img info --output=json overraw.qcow2 | python3 -c '
import json, sys
i = json.load(sys.stdin)
assert i.get("backing-filename-format") == "raw", i
assert i["virtual-size"] == 4 << 20, i'
check_clean overraw.qcow2

# A chain of three we made, written at every level by qemu-io.
"$VDIMOTION" create -f qcow2 -b child.qcow2 -F qcow2 grandchild.qcow2
both grandchild.qcow2 child.raw -c 'write -P 0x34 65000 70000'
check_clean grandchild.qcow2
equal grandchild.qcow2 child.raw
echo "ok: chain of three"

# A VHD parent is recorded with qemu's name for the format, "vpc".
if "$VDIMOTION" create -f vhd vhdparent.vhd 8M 2> /dev/null; then
  qemu-io -f vpc -c 'write -P 0x35 0 1M' vhdparent.vhd > /dev/null
  "$VDIMOTION" create -f qcow2 -b vhdparent.vhd -F vhd overvhd.qcow2
  qemu-img info --output=json overvhd.qcow2 | python3 -c '
import json, sys
i = json.load(sys.stdin)
assert i.get("backing-filename-format") == "vpc", i'
  qemu_raw overvhd.qcow2 overvhd.raw
  both overvhd.qcow2 overvhd.raw -c 'write -P 0x36 500000 70000'
  check_clean overvhd.qcow2
  equal overvhd.qcow2 overvhd.raw
  echo "ok: VHD parent"
else
  echo "skipped: VHD parent (vdimotion create -f vhd unavailable)"
fi
