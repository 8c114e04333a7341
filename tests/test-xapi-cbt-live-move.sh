#!/bin/sh
# CBT across live moves of a disk a live snapshot pivoted (the VM's disk
# is then the new leaf's nbdkit, and the mirror filter mirrors again from
# it).  Same host: a running VM's disk (CBT on) has a live snapshot, is
# moved live to another SR and back (Async.VDI.pool_migrate) while the
# guest writes, and has a second live snapshot; VDI.list_changed_blocks
# between the two marks exactly the blocks written, every block that
# differs is marked, the second snapshot reads what was written, and each
# earlier disk's nbdkit stopped with the move that left it.  Then
# SR.evacuate moves the pivoted live leaf with sync=top (its top layer's
# map from the leaf's own nbdkit), the VM writing on.  Cross-host:
# a VM whose disk had a live snapshot moves to a second vdimotiond
# (Async.VM.migrate); the destination reads every write and its log holds
# the blocks written since the snapshot; the leaf's nbdkit stopped.
. "$srcdir/functions.sh"
. "$srcdir/xapi-functions.sh"
requires nbdkit
requires qemu-img
requires qemu-io
requires python3
requires_vm_disks
/usr/bin/python3 -c 'import nbd' 2>/dev/null \
  || skip "python3-libnbd is not installed"

tls_setup
start_peer $tls
start_vdimotiond $tls \
  --memory-migrator "$top_builddir/memory-migrators/vdimotion-mm-none"
PYTHONPATH=$srcdir /usr/bin/python3 "$srcdir/xapi-cbt-live-move.py" \
  "$url" "$T" > "$T/out" 2>&1 \
  || { cat "$T/out" "$T/vdimotiond.log"; fail "xapi-cbt-live-move.py"; }
cat "$T/out"
# The evacuation's live leaf synced its top layer alone, from the leaf.
! grep 'cannot sync the top layer alone' "$T/vdimotiond.log" \
  || fail "the evacuation fell back to syncing every block"
PYTHONPATH=$srcdir /usr/bin/python3 "$srcdir/xapi-cbt-live-migrate.py" \
  "$https_url" "$peer_https_url" "$T/cert.pem" "$T" > "$T/out" 2>&1 \
  || { cat "$T/out"; tail -30 "$T/vdimotiond.log" "$T/peer/vdimotiond.log";
       fail "xapi-cbt-live-migrate.py"; }
cat "$T/out"
stop_vdimotiond
stop_peer
