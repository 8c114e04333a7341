#!/bin/sh
# nbdkit-vdi-plugin refuses to start on an image it cannot serve: a
# corrupt VHD or qcow2, a missing parent, a chain that loops, a missing
# file or no file at all.  nbdkit exits non-zero at startup, in the
# foreground and when it would fork into the background, with libvdisk's
# message naming the file; it never serves, and the image is untouched.
. "$srcdir/functions.sh"
uses_nbdkit_module
requires nbdkit
requires qemu-img
requires qemu-io
requires python3
PLUGIN=$top_builddir/sr-drivers/.libs/nbdkit-vdi-plugin.so
[ -f "$PLUGIN" ] || skip "$PLUGIN not built"

cd "$T"

# refused IMAGE NAME PATTERN: nbdkit (foreground and background) exits 1
# saying PATTERN and NAME, leaves no socket, and IMAGE is unchanged.
refused ()
{
  img=$1 name=$2 pattern=$3
  sum=$(md5sum < "$img")
  for mode in -f ""; do
    expect_exit 1 nbdkit $mode -U "$T/bad.sock" "$PLUGIN" "file=$img"
    grep -q "$name" "$T/err" || { cat "$T/err"; fail "$img: no \"$name\" in the message"; }
    grep -q "$pattern" "$T/err" || { cat "$T/err"; fail "$img: no \"$pattern\""; }
    ! grep -qi 'sanitizer\|runtime error' "$T/err" || { cat "$T/err"; fail "$img: sanitizer"; }
    [ ! -e "$T/bad.sock" ] || fail "$img: nbdkit $mode started serving"
  done
  [ "$(md5sum < "$img")" = "$sum" ] || fail "$img was modified"
  echo "ok: $img: $(cat "$T/err")"
}

# A VHD whose BAT points past the end of the file.
qemu-img create -q -f vpc -o subformat=dynamic good.vhd 8M
qemu-io -f vpc -c 'write -P 7 0 3M' good.vhd > /dev/null
cp good.vhd badbat.vhd
python3 - badbat.vhd <<'PY'
import struct, sys
d = bytearray(open(sys.argv[1], "rb").read())
ft = len(d) - 512
hdr = struct.unpack_from(">Q", d, ft + 16)[0]
bat = struct.unpack_from(">Q", d, hdr + 16)[0]
struct.pack_into(">I", d, bat + 4, 0x7fffff00)
open(sys.argv[1], "wb").write(d)
PY
refused "$T/badbat.vhd" badbat.vhd 'BAT entry 1 points past end of file'

# A VHD whose footer checksum is wrong.
cp good.vhd badfooter.vhd
python3 -c 'import sys; f = open(sys.argv[1], "r+b"); f.seek(-312, 2); f.write(b"\xff")' badfooter.vhd
refused "$T/badfooter.vhd" badfooter.vhd 'checksum'

# A qcow2 of a version nobody knows, and one whose L1 table is cut off.
qemu-img create -q -f qcow2 good.qcow2 4M
qemu-io -f qcow2 -c 'write -P 0x42 0 256k' good.qcow2 > /dev/null
cp good.qcow2 version.qcow2
python3 -c 'import struct, sys; f = open(sys.argv[1], "r+b"); f.seek(4); f.write(struct.pack(">I", 4))' version.qcow2
refused "$T/version.qcow2" version.qcow2 'version 4'
cp good.qcow2 trunc-l1.qcow2
python3 - trunc-l1.qcow2 <<'PY'
import struct, sys
f = open(sys.argv[1], "r+b")
f.seek(40); l1 = struct.unpack(">Q", f.read(8))[0]
f.truncate(l1 + 4)
PY
refused "$T/trunc-l1.qcow2" trunc-l1.qcow2 'L1 table extends past end of file'

# Missing parents: a qcow2 backing file, a VHD differencing parent.
qemu-img create -q -f qcow2 gone.qcow2 4M
qemu-img create -q -f qcow2 -b gone.qcow2 -F qcow2 orphan.qcow2
rm gone.qcow2
refused "$T/orphan.qcow2" orphan.qcow2 'gone.qcow2'
"$VDIMOTION" create -f vhd gone.vhd 4M
"$VDIMOTION" create -f vhd -b gone.vhd orphan.vhd
rm gone.vhd
refused "$T/orphan.vhd" orphan.vhd 'gone.vhd'

# A chain that loops: a -> b -> a.
qemu-img create -q -f qcow2 loop-a.qcow2 4M
qemu-img create -q -f qcow2 -b loop-a.qcow2 -F qcow2 loop-b.qcow2
qemu-img rebase -u -f qcow2 -b loop-b.qcow2 -F qcow2 loop-a.qcow2
refused "$T/loop-b.qcow2" loop-b.qcow2 'loop\|deep'

# No such file; no file at all.
expect_exit 1 nbdkit -f -U "$T/bad.sock" "$PLUGIN" "file=$T/nothere.vhd"
grep -q nothere.vhd "$T/err" || { cat "$T/err"; fail "missing file: not named"; }
expect_exit 1 nbdkit -f -U "$T/bad.sock" "$PLUGIN"
grep -q 'file=' "$T/err" || { cat "$T/err"; fail "no file=: no message"; }
expect_exit 1 nbdkit -f -U "$T/bad.sock" "$PLUGIN" file=good.vhd size=1M
grep -q 'size' "$T/err" || { cat "$T/err"; fail "unknown parameter: no message"; }
echo PASS
