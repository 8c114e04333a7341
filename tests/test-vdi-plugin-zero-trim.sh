#!/bin/sh
# Zero, trim, FUA and flush through nbdkit-vdi-plugin (sent by qemu-io
# over NBD): a zeroed range reads as zeroes afterwards, whether the
# client lets the format deallocate (write -z -u) or not (write -z),
# aligned or not, and also where a parent holds data underneath; trim
# succeeds and touches nothing else; FUA writes and flush land.  Each
# image ends up reading the same as a raw file given the same commands.
. "$srcdir/functions.sh"
uses_nbdkit_module
. "$srcdir/copy-sources.sh"   # start_nbdkit
requires nbdkit
requires nbdcopy
requires nbdinfo
requires qemu-img
requires qemu-io
requires python3
PLUGIN=$top_builddir/sr-drivers/.libs/nbdkit-vdi-plugin.so
[ -f "$PLUGIN" ] || skip "$PLUGIN not built"

cd "$T"
MiB=1048576
SIZE=$(( 8 * MiB ))
URI="nbd+unix:///?socket=$T/vdi.sock"
TRIM_OFF=$(( 3 * MiB + 512 * 1024 )) TRIM_LEN=262144

# Data everywhere to start with, so every zero has something to hide.
truncate -s $SIZE old.raw
write_pattern old.raw 1 0 $SIZE
qemu-img convert -O vpc -o subformat=dynamic,force_size=on old.raw parent.vhd
qemu-img convert -O qcow2 old.raw base.qcow2

# Every image starts out reading old.raw; the children start empty.
cp old.raw plain.raw
qemu-img convert -O vpc -o subformat=dynamic,force_size=on old.raw dynamic.vhd
qemu-img convert -O qcow2 old.raw plain.qcow2
"$VDIMOTION" create -f vhd -b parent.vhd diff.vhd
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 chain.qcow2

# The same commands, one qemu-io per group as a client would send them.
cmds1="-c 'write -P 0x55 0 4M' -c 'write -z 64k 64k' -c 'write -z -u 1M 1M'"
cmds2="-c 'write -z 2098152 3000' -c 'write -z -f 3M 4k' -c 'write -z -u 5M 2M'"
cmds3="-c 'write -f -P 0x66 7M 8k' -c 'write -z -u 7348225 1000' -c flush"
for img in plain.raw dynamic.vhd diff.vhd plain.qcow2 chain.qcow2; do
  cp old.raw ref.raw
  start_nbdkit vdi "$PLUGIN" "file=$T/$img"
  for c in "$cmds1" "$cmds2" "$cmds3"; do
    eval "qemu-io -f raw $c ref.raw" > /dev/null
    eval "qemu-io -f raw $c '$URI'" > qemu-io.out 2>&1 \
      || { cat qemu-io.out; fail "$img: qemu-io $c"; }
    ! grep -qi 'error\|fail' qemu-io.out || { cat qemu-io.out; fail "$img: qemu-io $c"; }
  done
  # Trim: only a hint, the range may read as anything afterwards; but
  # it must succeed and leave the rest alone.
  qemu-io -f raw -c "discard $TRIM_OFF $TRIM_LEN" "$URI" > qemu-io.out 2>&1 \
    || { cat qemu-io.out; fail "$img: discard"; }
  ! grep -qi 'error\|fail' qemu-io.out || { cat qemu-io.out; fail "$img: discard"; }
  # Zeroed ranges read as zero, right now, over NBD.
  qemu-io -f raw -c 'read -P 0 64k 64k' -c 'read -P 0 1M 1M' \
    -c 'read -P 0 2098152 3000' -c 'read -P 0 3M 4k' -c 'read -P 0 5M 2M' \
    -c 'read -P 0x66 7M 8k' -c 'read -P 0 7348225 1000' -r "$URI" > qemu-io.out 2>&1 \
    || { cat qemu-io.out; fail "$img: reading zeroes"; }
  ! grep -q 'Pattern verification failed' qemu-io.out || { cat qemu-io.out; fail "$img: zeroes"; }
  nbdinfo --map --json "$URI" > map.json
  nbdcopy "$URI" dump.raw
  stop_nbdkit vdi

  # The image itself, read after the server stopped, holds the same.
  "$VDIMOTION" compare -q "$img" dump.raw || fail "$img differs from what was served"
  python3 - dump.raw ref.raw $TRIM_OFF $TRIM_LEN map.json "$img" <<'PY' || fail "$img: wrong contents"
import json, sys
got, want = open(sys.argv[1], "rb").read(), open(sys.argv[2], "rb").read()
a, n = int(sys.argv[3]), int(sys.argv[4])
assert len(got) == len(want), (len(got), len(want))
if got[:a] != want[:a] or got[a + n:] != want[a + n:]:
    i = next(i for i in range(len(got)) if got[i] != want[i] and not a <= i < a + n)
    sys.exit("first difference at %d" % i)
# Where the format can record "zero" for a whole range, it does, and
# nbd clients see it in the extents.
if sys.argv[6] in ("plain.raw", "plain.qcow2", "chain.qcow2"):
    for e in json.load(open(sys.argv[5])):
        if 5 << 20 <= e["offset"] < 7 << 20:
            assert e["type"] & 2, e
PY
  case $img in
    *.qcow2) qemu-img check -q "$img" || fail "$img: qemu-img check" ;;
    *.vhd) "$VHDI_CAT" "$img" vhdi.raw && cmp vhdi.raw dump.raw \
             || fail "$img: libvhdi reads something else" ;;
  esac
  rm -f dump.raw vhdi.raw
  echo "ok: $img"
done
echo PASS
