#!/bin/sh
# A mostly empty disk (8 GiB qcow2, a few MiB of data in scattered
# places) mirrors with all copier threads at once: the zero ranges go
# whole, the mirror reaches ready quickly (no chunk is taken twice, the
# copiers do not spin), and after complete the target equals the source.
# A fresh target already reads as zero, so its zero ranges are skipped
# (its own extents say so); a target full of old data gets them zeroed.
. "$srcdir/functions.sh"
uses_nbdkit_module
requires qemu-io
. "$top_srcdir/mirror-filter/test-functions.sh"

SZ=$(( 8 << 30 ))
"$VDIMOTION" create -f qcow2 "$T/src.qcow2" $SZ > /dev/null
for off in 0 5M 1G 3G 4095M 6G 8191M; do
  qemu-io -f qcow2 -c "write -P 0x$(printf %02x $(( ${#off} * 17 ))) $off 1M" \
    "$T/src.qcow2" > /dev/null
done
make_empty "$T/dst.qcow2" qcow2 $SZ
start_nbdkit dst $(plugin_for "$T/dst.qcow2")
serve_mirrored src "$T/src.qcow2"
start=$(date +%s)
mctl start --target "$(uri_of dst)" > /dev/null
# A guest writing meanwhile, into the data and into the holes.
fio_write src 31 64k,0,64M --rate_iops=300 &
fpid=$!
wait_state ready 120
wait "$fpid" || fail "fio failed while the sparse disk mirrored"
wait_state ready 120
secs=$(( $(date +%s) - start ))
mctl --json status > "$T/st.json"
echo "ready after about $secs s: $(cat "$T/st.json")"
[ "$(jget dirty_bytes < "$T/st.json")" = 0 ] || fail "ready with dirty bytes"
skipped=$(jget bytes_skipped < "$T/st.json")
[ "$skipped" -gt $(( 7 << 30 )) ] ||
  fail "only $skipped bytes of a fresh target skipped as already zero"
mctl complete > /dev/null
mstop src
mstop dst
"$VDIMOTION" compare "$T/src.qcow2" "$T/dst.qcow2" || fail "target differs"
qemu-img check -q "$T/dst.qcow2" || fail "qemu-img check of the target"

# The same source onto a raw target holding old data: 16 MiB every
# 256 MiB, holes between (a sparse file).  The zero ranges over the old
# data must be sent, or the target would keep it; the holes may be
# skipped.  The comparison after complete is what proves it.
head -c 16M /dev/urandom > "$T/old.bin"
truncate -s $SZ "$T/dst.raw"
for off in $(seq 0 256 8191); do
  dd if="$T/old.bin" of="$T/dst.raw" bs=1M seek=$off conv=notrunc \
    status=none
done
start_nbdkit dst $(plugin_for "$T/dst.raw")
serve_mirrored src "$T/src.qcow2"
mctl start --target "$(uri_of dst)" > /dev/null
wait_state ready 120
mctl --json status > "$T/st.json"
echo "onto old data: $(cat "$T/st.json")"
zeroed=$(jget bytes_zeroed < "$T/st.json")
skipped=$(jget bytes_skipped < "$T/st.json")
[ "$zeroed" -ge $(( 400 << 20 )) ] ||
  fail "only $zeroed bytes sent as zero over 512 MiB of old data"
[ "$skipped" -le $(( SZ - (400 << 20) )) ] ||
  fail "$skipped bytes skipped as zero: more than the target's holes"
mctl complete > /dev/null
mstop src
mstop dst
"$VDIMOTION" compare "$T/src.qcow2" "$T/dst.raw" ||
  fail "target with old data differs"
echo "ok: sparse mirror"
