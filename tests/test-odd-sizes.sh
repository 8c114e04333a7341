#!/bin/sh
# One size rule: create and copy round a virtual size up to a multiple of
# 512 for every format, as qemu-img does, so qemu-img and libvhdi read
# every byte.  Sizes 1000001 and 512*k+1, created and copied from a raw
# file of that many bytes into raw, vhd and qcow2: qemu-img compare says
# identical (the padding reads as zero), qemu-img check is clean, libvhdi
# reads the VHDs, and vdimotion compare agrees.  A VHD whose footer says
# an unaligned size is read up to its last byte.
. "$srcdir/functions.sh"
requires qemu-img
requires python3
cd "$T"

for n in 1000001 $((512 * 2047 + 1)); do
  want=$(( (n + 511) / 512 * 512 ))
  python3 -c "import random, sys; r = random.Random($n)
open('odd.raw', 'wb').write(r.randbytes($n))"
  for f in raw vhd qcow2; do
    qf=$f; [ $f = vhd ] && qf=vpc
    rm -f "c.$f" "o.$f"
    "$VDIMOTION" create -f $f "c.$f" $n
    "$VDIMOTION" copy -f raw odd.raw "o.$f"
    for img in "c.$f" "o.$f"; do
      got=$(qemu-img info -f $qf --output=json "$img" \
            | sed -n 's/.*"virtual-size": \([0-9]*\).*/\1/p')
      [ "$got" = "$want" ] || fail "$img of $n bytes: qemu-img sees $got, not $want"
      if [ $f = qcow2 ]; then
        qemu-img check -q -f qcow2 "$img" || fail "$img: qemu-img check"
      fi
    done
    qemu-img compare -q -f raw -F $qf odd.raw "o.$f" \
      || fail "o.$f of $n bytes: qemu-img reads other bytes"
    "$VDIMOTION" compare -q -f raw -F $f odd.raw "o.$f" \
      || fail "o.$f of $n bytes: vdimotion compare"
    if [ $f = vhd ]; then
      "$VHDI_CAT" o.vhd vhdi.raw
      [ "$(stat -c %s vhdi.raw)" -eq "$want" ] || fail "libvhdi: size of o.vhd"
      cmp -n $n vhdi.raw odd.raw || fail "libvhdi reads other bytes of o.vhd"
    fi
  done
  echo "ok: $n bytes into raw, vhd and qcow2 ($want bytes each)"
done

# A VHD made elsewhere whose footer says 1000001: every byte up to it.
qemu-img create -q -f vpc -o subformat=dynamic,force_size=on x.vhd 1000448
qemu-io -f vpc -c 'write -P 0x77 0 1000448' x.vhd > /dev/null
python3 - x.vhd <<'PY'
import struct, sys
p = sys.argv[1]
d = bytearray(open(p, "rb").read())
for foot in (0, len(d) - 512):
    struct.pack_into(">Q", d, foot + 48, 1000001)
    struct.pack_into(">I", d, foot + 64, 0)
    s = (~sum(d[foot:foot + 512])) & 0xffffffff
    struct.pack_into(">I", d, foot + 64, s)
open(p, "wb").write(d)
PY
"$VDIMOTION" info -f vhd x.vhd | grep -q '(1000001 bytes)' || fail "x.vhd size"
"$VDIMOTION" copy -f vhd x.vhd x.raw
[ "$(stat -c %s x.raw)" -eq 1000448 ] || fail "x.raw is not 1000448 bytes"
[ "$(head -c 1000001 x.raw | tr -d '\167' | wc -c)" -eq 0 ] \
  || fail "x.vhd: not every byte up to 1000001 was read"
echo "ok: a VHD footer saying 1000001 reads up to its last byte"
