#!/bin/sh
# pause and resume with a pivot: the sequence of a live snapshot, twice,
# with fio writing through the filter the whole time.  pause answers
# once the requests in flight are done and the disk is flushed; while
# paused the image file does not change (the writes wait, fio does not
# fail).  Then as the SR does it: the open image is renamed into the
# snapshot, a new leaf is created over it in its place, a second nbdkit
# serves the leaf, and resume --target LEAF --pivot makes it the disk.
# A target that cannot be connected is refused and the filter stays
# paused.  The second snapshot is taken with the disk already pivoted.
# Afterwards each snapshot is as it was at its pause, and fio's verify
# over the chain finds every write.
. "$srcdir/functions.sh"
uses_nbdkit_module
. "$top_srcdir/mirror-filter/test-functions.sh"
requires qemu-img
[ -f "$VDI_PLUGIN" ] || skip "nbdkit-vdi-plugin not built"

SZ=$(( 32 << 20 ))
make_image "$T/disk.qcow2" qcow2 $SZ
serve_mirrored src "$T/disk.qcow2"

expect_exit 1 "$VDIMOTION" mirror --control "$CTL" resume
grep -q 'not paused' "$T/err" || { cat "$T/err"; fail "resume unpaused: unclear"; }
expect_exit 2 "$VDIMOTION" mirror --control "$CTL" resume --pivot
expect_exit 2 "$VDIMOTION" mirror --control "$CTL" pause --sync top

# live_snapshot N SNAP LEAF: pause, hold, rename and create, resume pivot.
live_snapshot ()
{
  n=$1 snap=$2 leaf=$3
  mctl pause > /dev/null
  [ "$(mctl --json status | jget paused)" = true ] || fail "$n: not paused"
  sum=$(md5sum < "$T/disk.qcow2")
  sleep 1
  [ "$(md5sum < "$T/disk.qcow2")" = "$sum" ] \
    || fail "$n: the image changed while paused"
  kill -0 "$fpid" 2>/dev/null || fail "$n: fio ended while paused"
  mv "$T/disk.qcow2" "$T/$snap.qcow2"
  qemu-img create -q -f qcow2 -b "$snap.qcow2" -F qcow2 "$T/disk.qcow2"
  expect_exit 1 "$VDIMOTION" mirror --control "$CTL" resume --pivot \
    --target "nbd+unix:///?socket=$T/nobody.sock"
  grep -q 'still paused' "$T/err" || { cat "$T/err"; fail "$n: bad target"; }
  [ "$(mctl --json status | jget paused)" = true ] \
    || fail "$n: a bad target released the pause"
  start_nbdkit "$leaf" "$VDI_PLUGIN" file="$T/disk.qcow2"
  mctl --json resume --target "$(uri_of "$leaf")" --pivot > "$T/r.json"
  [ "$(jget pivoted < "$T/r.json")" = true ] || fail "$n: not pivoted"
  mctl --json status > "$T/st.json"
  [ "$(jget paused < "$T/st.json")" = false ] || fail "$n: still paused"
  [ "$(jget target < "$T/st.json")" = "$(uri_of "$leaf")" ] \
    || fail "$n: the disk is not the new leaf"
  eval "sum_$snap=\$sum"
}

# snapshot_under_fio N SEED SPEC: live snapshot N while fio writes: it
# passes over SPEC until the snapshot is done (a pass may end before the
# pause on a loaded machine), and the pause waits until fio's writes
# have reached the disk (its image's mtime moves).
snapshot_under_fio ()
{
  rm -f "$T/stop-fio"
  mtime0=$(stat -c %y "$T/disk.qcow2")
  repeat_until "$T/stop-fio" \
    fio_write src "$2" "$3" --rate_iops=1000000,1500 &
  fpid=$!
  wait_for 120 modified_since "$T/disk.qcow2" "$mtime0" \
    || fail "$1: fio wrote nothing in 2 minutes"
  live_snapshot "$1" "snap$1" "leaf$1"
  touch "$T/stop-fio"
  wait "$fpid" || fail "fio failed across snapshot $1"
  for i in $(seq "$1"); do
    eval "want=\$sum_snap$i"
    [ "$(md5sum < "$T/snap$i.qcow2")" = "$want" ] \
      || fail "snapshot $i changed after its pivot"
  done
  echo "ok: live snapshot $1"
}

snapshot_under_fio 1 51 4k,0,8M
snapshot_under_fio 2 52 4k,8M,8M # the disk is pivoted already

mstop src
mstop leaf1
mstop leaf2
for f in snap1 snap2 disk; do
  qemu-img check -q "$T/$f.qcow2" || fail "$f.qcow2 is not clean"
done
start_nbdkit chain "$VDI_PLUGIN" file="$T/disk.qcow2"
fio_verify chain 51 4k,0,8M || fail "writes of the first round lost"
fio_verify chain 52 4k,8M,8M || fail "writes of the second round lost"
echo "ok: every write is in the chain"
