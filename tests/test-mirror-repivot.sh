#!/bin/sh
# The filter mirrors again after a pivot: the disk the guest sees is then
# the pivoted target (T1, an NBD connection), and a new start copies it to
# T2.  With fio writing through the filter:
#  - a live snapshot as the SR takes it (pause, the image renamed into the
#    snapshot, a new leaf over it served by a second nbdkit, resume with a
#    pivot to it): T1 is that leaf;
#  - abort of a mirror started after the pivot leaves T1 the disk (status
#    says so, writes go on into T1's image), a second abort is refused;
#  - sync=top from T1 (its map asked of T1's server, export vdi:top-layer)
#    into a new leaf over a copy of the snapshot: only the top layer is
#    copied, complete pivot=true makes it the disk, T1's image no longer
#    changes;
#  - sync=full from that to a third, empty image while fio writes,
#    complete pivot=true, writes go on; the final image reads what the
#    guest reads (qemu-img compare) and fio's verify over it is clean;
#  - T1 failing while a mirror from it runs: the guest's requests fail
#    with EIO (no other copy), complete is refused, the filter answers.
. "$srcdir/functions.sh"
uses_nbdkit_module
. "$top_srcdir/mirror-filter/test-functions.sh"
requires qemu-img
requires qemu-io
[ -f "$VDI_PLUGIN" ] || skip "nbdkit-vdi-plugin not built"

SZ=$(( 32 << 20 ))
make_image "$T/disk.qcow2" qcow2 $SZ
serve_mirrored src "$T/disk.qcow2"

# status_is KEY VALUE WHAT
status_is ()
{
  v=$(mctl --json status | jget "$1")
  [ "$v" = "$2" ] || { mctl status >&2; fail "$3: $1 is $v, not $2"; }
}

# 1. A live snapshot: the disk becomes leaf1 (disk.qcow2 over snap1).
fio_write src 61 4k,0,4M --rate_iops=1000000,1500 &
fpid=$!
sleep 0.3
mctl pause > /dev/null
mv "$T/disk.qcow2" "$T/snap1.qcow2"
qemu-img create -q -f qcow2 -b snap1.qcow2 -F qcow2 "$T/disk.qcow2"
start_nbdkit leaf1 "$VDI_PLUGIN" file="$T/disk.qcow2"
mctl resume --target "$(uri_of leaf1)" --pivot > /dev/null
wait "$fpid" || fail "fio failed across the live snapshot"
status_is pivoted true "after the live snapshot"
echo "ok: live snapshot, the disk is leaf1"

# 2. Abort after a pivot: leaf1 stays the disk.
make_empty "$T/x.qcow2" qcow2 $SZ
start_nbdkit x "$VDI_PLUGIN" file="$T/x.qcow2"
expect_exit 1 "$VDIMOTION" mirror start --control "$CTL" \
  --target "$(uri_of leaf1)"
grep -q 'is the disk already' "$T/err" || { cat "$T/err"; fail "onto itself"; }
mctl start --target "$(uri_of x)" > /dev/null
status_is pivoted true "a mirror from the pivoted disk"
mctl abort > /dev/null
status_is state aborted "abort after a pivot"
status_is target "$(uri_of leaf1)" "abort after a pivot: the disk"
sum=$(md5sum < "$T/disk.qcow2")
fio_write src 62 4k,4M,2M || fail "writing after the abort"
[ "$(md5sum < "$T/disk.qcow2")" != "$sum" ] \
  || fail "writes after the abort did not reach leaf1"
expect_exit 1 "$VDIMOTION" mirror abort --control "$CTL"
grep -q 'nothing to abort' "$T/err" || { cat "$T/err"; fail "second abort"; }
mstop x
echo "ok: abort after a pivot leaves leaf1 the disk"

# 3. sync=top from leaf1 into a new leaf over a copy of snap1.
cp "$T/snap1.qcow2" "$T/snap1b.qcow2"
qemu-img create -q -f qcow2 -b snap1b.qcow2 -F qcow2 "$T/leafA.qcow2"
start_nbdkit a "$VDI_PLUGIN" file="$T/leafA.qcow2"
fio_write src 63 4k,8M,4M --rate_iops=1000000,1500 &
fpid=$!
sleep 0.2
mctl start --sync top --target "$(uri_of a)" > /dev/null
wait_state ready 60
wait "$fpid" || fail "fio failed through the sync=top mirror"
mctl --json status > "$T/st.json"
backing=$(jget bytes_backing < "$T/st.json")
copied=$(jget bytes_copied < "$T/st.json")
[ "$backing" -gt $(( 16 << 20 )) ] \
  || { cat "$T/st.json"; fail "sync=top: the parent's ranges were copied"; }
[ "$copied" -lt $(( 12 << 20 )) ] \
  || { cat "$T/st.json"; fail "sync=top: copied more than the top layer"; }
mctl complete --pivot > /dev/null
status_is target "$(uri_of a)" "after the second pivot"
sum=$(md5sum < "$T/disk.qcow2")
fio_write src 64 4k,12M,2M || fail "writing after the second pivot"
[ "$(md5sum < "$T/disk.qcow2")" = "$sum" ] \
  || fail "leaf1 changed after the pivot away from it"
mstop leaf1
echo "ok: sync=top after a pivot (copied $copied, left $backing to the parent)"

# 4. sync=full from leafA to an empty image, fio writing across the
#    pivot; writes go on after it.
make_empty "$T/final.qcow2" qcow2 $SZ
start_nbdkit b "$VDI_PLUGIN" file="$T/final.qcow2"
fio_write src 65 4k,16M,8M --rate_iops=1000000,1000 &
fpid=$!
sleep 0.2
mctl start --target "$(uri_of b)" > /dev/null
wait_state ready 60
mctl complete --pivot > /dev/null
status_is target "$(uri_of b)" "after the third pivot"
wait "$fpid" || fail "fio failed across the third pivot"
fio_write src 66 64k,24M,4M || fail "writing after the third pivot"
mstop a
for seed_spec in 61:4k,0,4M 62:4k,4M,2M 63:4k,8M,4M 64:4k,12M,2M \
                 65:4k,16M,8M 66:64k,24M,4M; do
  fio_verify src "${seed_spec%%:*}" "${seed_spec#*:}" \
    || fail "fio verify ${seed_spec%%:*} through the filter"
done
qemu-img convert -f raw -O raw "$(uri_of src)" "$T/expected.raw"
echo "ok: sync=full after two pivots, fio verify clean"

# 5. T1 (final.qcow2's server) failing while a mirror from it runs.
make_empty "$T/c.qcow2" qcow2 $SZ
start_nbdkit c "$VDI_PLUGIN" file="$T/c.qcow2"
mctl start --target "$(uri_of c)" > /dev/null
wait_state ready 60
# b dies (kill -9: a clean stop would wait for the filter's connection).
bpid=$(cat "$T/b.pid")
kill -9 "$bpid"
wait_for 120 gone "$bpid" || fail "nbdkit b ($bpid) did not die"
rm -f "$T/b.sock" "$T/b.pid"
qemu-io -f raw -c 'write -P 7 0 4k' "$(uri_of src)" > "$T/qio" 2>&1 || :
grep -q 'Input/output error' "$T/qio" \
  || { cat "$T/qio"; fail "a write to a dead pivoted disk did not fail"; }
expect_exit 1 "$VDIMOTION" mirror complete --control "$CTL" --pivot
status_is pivoted true "after the pivoted disk failed"
status_is target "$(uri_of b)" "the pivoted disk stays the disk"
mctl abort > /dev/null || :
mstop c
mstop src
echo "ok: a failing pivoted disk fails the guest's requests, not the filter"

# The final image reads what the guest read, and holds every write.
qemu-img check -q "$T/final.qcow2" || fail "final.qcow2 is not clean"
qemu-img compare -q -f qcow2 -F raw "$T/final.qcow2" "$T/expected.raw" \
  || fail "the final image differs from what the guest read"
start_nbdkit fin "$VDI_PLUGIN" file="$T/final.qcow2"
fio_verify fin 61 4k,0,4M || fail "the final image misses the first writes"
fio_verify fin 65 4k,16M,8M || fail "the final image misses the last sync's"
mstop fin
echo "ok: the final image is what the guest wrote"
