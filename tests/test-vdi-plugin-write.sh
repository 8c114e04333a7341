#!/bin/sh
# Parallel random writes through nbdkit-vdi-plugin land where they belong:
# fio (nbd engine, 4 connections at once, queue depth 16, 4 KiB and
# 64 KiB blocks, crc32c in every block) writes over a qemu-made dynamic
# VHD, a VHD differencing disk and a qcow2 with a backing file; fio then
# verifies everything it wrote (with O_DIRECT and with cache=writeback), a second fio pass verifies again, and
# after nbdkit has stopped the image reads the same as what the server
# served (vdimotion compare), independent readers agree (qemu-img,
# libvhdi), qemu-img check finds the qcow2 clean, the parents are
# untouched and the ranges fio did not write still hold the old data.
. "$srcdir/functions.sh"
uses_nbdkit_module
. "$srcdir/copy-sources.sh"   # start_nbdkit
requires nbdkit
requires nbdcopy
requires fio
requires qemu-img
requires qemu-io
requires python3
fio --enghelp 2>/dev/null | grep -qx '[[:space:]]*nbd' || skip "fio has no nbd engine"
PLUGIN=$top_builddir/sr-drivers/.libs/nbdkit-vdi-plugin.so
[ -f "$PLUGIN" ] || skip "$PLUGIN not built"

cd "$T"
MiB=1048576
SIZE=$(( 128 * MiB + 7 * 512 ))
URI="nbd+unix:///?socket=$T/vdi.sock"

# Two jobs of 4 KiB and two of 64 KiB blocks, each in its own 24 MiB
# region, each on its own NBD connection; [48M, 64M) and [112M, end)
# are left alone.
cat > writes.fio <<EOF
[global]
ioengine=nbd
uri=$URI
rw=randwrite
iodepth=16
verify=crc32c
verify_fatal=1
verify_backlog=0
size=24M
numjobs=2
offset_increment=24M
group_reporting=1

[small]
bs=4k
offset=0

[big]
bs=64k
offset=64M
EOF

# Old data everywhere, so every write lands on something to keep or
# hide: partly written VHD blocks, qcow2 clusters copied up from the
# backing file.
truncate -s $SIZE old.raw
write_pattern old.raw 1 0 $(( 40 * MiB ))
write_pattern old.raw 2 $(( 50 * MiB )) $(( 20 * MiB ))
write_pattern old.raw 3 $(( 100 * MiB )) $(( SIZE - 100 * MiB ))

# untouched DUMP: the ranges fio never wrote still read the old data.
untouched ()
{
  cmp -n $(( 16 * MiB )) "$1" old.raw $(( 48 * MiB )) $(( 48 * MiB )) \
    || fail "$img: [48M, 64M) changed"
  cmp "$1" old.raw $(( 112 * MiB )) $(( 112 * MiB )) \
    || fail "$img: [112M, end) changed"
}

# dynamic.vhd: made by qemu.  diff.vhd: ours, on a qemu-made parent.
# chain.qcow2: made by qemu, on a qcow2 holding the old data.
qemu-img convert -O vpc -o subformat=dynamic,force_size=on old.raw dynamic.vhd
qemu-img convert -O vpc -o subformat=dynamic,force_size=on old.raw parent.vhd
"$VDIMOTION" create -f vhd -b parent.vhd diff.vhd
qemu-img convert -O qcow2 old.raw base.qcow2
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 chain.qcow2
parents=$(md5sum parent.vhd base.qcow2)

# diff.vhd is served through the page cache (cache=writeback), the
# others with O_DIRECT (the default).
for spec in dynamic.vhd:none diff.vhd:writeback chain.qcow2:none; do
  img=${spec%:*} cache=${spec#*:}
  start_nbdkit vdi "$PLUGIN" "file=$T/$img" cache=$cache
  fio --output=fio.out writes.fio || { cat fio.out vdi.log; fail "$img: fio write+verify"; }
  # A second pass, reading only: every block still carries its crc32c.
  fio --output=fio.out --verify_only writes.fio \
    || { cat fio.out vdi.log; fail "$img: fio verify-only"; }
  grep -q 'err= 0' fio.out || { cat fio.out; fail "$img: fio reported errors"; }
  nbdcopy --connections=4 "$URI" dump.raw
  stop_nbdkit vdi

  untouched dump.raw
  cmp -s dump.raw old.raw && fail "$img: fio wrote nothing"
  "$VDIMOTION" compare -q "$img" dump.raw || fail "$img differs from what was served"
  case $img in
    *.qcow2)
      qemu-img check -q "$img" || fail "$img: qemu-img check"
      qemu-img compare -q -f qcow2 -F raw "$img" dump.raw || fail "$img: qemu-img compare"
      ;;
    *.vhd)
      "$VHDI_CAT" "$img" vhdi.raw
      cmp vhdi.raw dump.raw || fail "$img: libvhdi reads something else"
      ;;
  esac
  [ $img = dynamic.vhd ] && {
    qemu-img compare -q -f vpc -F raw "$img" dump.raw || fail "$img: qemu-img compare"
  }
  # Served again, the image gives fio back the same blocks.
  start_nbdkit vdi "$PLUGIN" "file=$T/$img"
  fio --output=fio.out --verify_only writes.fio \
    || { cat fio.out vdi.log; fail "$img: fio verify after restart"; }
  stop_nbdkit vdi
  rm -f dump.raw vhdi.raw
  echo "ok: $img (cache=$cache)"
done
[ "$(md5sum parent.vhd base.qcow2)" = "$parents" ] || fail "a parent was written"
echo PASS
