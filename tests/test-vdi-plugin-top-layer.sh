#!/bin/sh
# The export vdi:top-layer (the mirror filter's sync=top reads its map):
# the same image, read-only, whose reads are the whole disk's bytes but
# whose extents are the top layer's alone.  On a qcow2 leaf over a
# parent: the default export maps the chain flattened (the parent's data
# is data); vdi:top-layer maps the leaf's own cluster as data, its zero
# cluster as zero, and the rest as a hole that is not said to read as
# zero.  Its description names the view; it refuses writes; every other
# export name still serves the whole disk read-write.
. "$srcdir/functions.sh"
uses_nbdkit_module
. "$srcdir/copy-sources.sh"   # start_nbdkit
requires nbdkit
requires nbdcopy
requires nbdinfo
requires qemu-img
requires qemu-io
PLUGIN=$top_builddir/sr-drivers/.libs/nbdkit-vdi-plugin.so
[ -f "$PLUGIN" ] || skip "$PLUGIN not built"

cd "$T"
truncate -s 4M base.raw
write_pattern base.raw 1 0 $(( 4 << 20 ))
qemu-img convert -O qcow2 base.raw base.qcow2
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 leaf.qcow2
qemu-io -f qcow2 -c 'write -P 0x41 1M 64k' -c 'write -z 2M 64k' leaf.qcow2 \
  > /dev/null
start_nbdkit vdi "$PLUGIN" file="$T/leaf.qcow2"
sock="socket=$T/vdi.sock"

nbdinfo --map "nbd+unix:///?$sock" > whole.map
nbdinfo --map "nbd+unix:///vdi:top-layer?$sock" > top.map
cat > top.want <<EOF2
         0     1048576    1  hole
   1048576       65536    0  data
   1114112      983040    1  hole
   2097152       65536    2  zero
   2162688     2031616    1  hole
EOF2
diff -u top.want top.map || fail "the top layer's map"
grep -q 'hole' whole.map && fail "the whole disk's map shows holes over the parent's data"

nbdinfo "nbd+unix:///vdi:top-layer?$sock" > top.info
grep -q "description: top layer of $T/leaf.qcow2" top.info \
  || { cat top.info; fail "the view's description"; }
grep -q 'is_read_only: true' top.info || fail "the view is writable"
nbdinfo "nbd+unix:///other?$sock" | grep -q 'is_read_only: false' \
  || fail "another export name is not the whole disk"
nbdinfo "nbd+unix:///?$sock" | grep -q 'description' \
  && fail "the whole disk got a description"

nbdcopy "nbd+unix:///vdi:top-layer?$sock" top.raw
nbdcopy "nbd+unix:///?$sock" whole.raw
cmp top.raw whole.raw || fail "the view reads other bytes than the disk"
stop_nbdkit vdi
qemu_raw leaf.qcow2 leaf.ref
cmp whole.raw leaf.ref || fail "the disk reads other bytes than qemu's"
echo "ok: vdi:top-layer"
