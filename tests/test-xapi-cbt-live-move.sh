#!/bin/sh
# CBT across a live move of a disk a live snapshot pivoted: a running VM's
# disk (CBT on) has a live snapshot, is moved live to another SR
# (Async.VDI.pool_migrate: the mirror filter mirrors again from the
# pivoted leaf) while the guest writes, and has a second live snapshot;
# VDI.list_changed_blocks between the two marks every block written and
# every block that differs, the second snapshot reads what was written,
# and the first snapshot's leaf nbdkit stopped with the move.
. "$srcdir/functions.sh"
. "$srcdir/xapi-functions.sh"
requires nbdkit
requires qemu-img
requires python3
requires_vm_disks
/usr/bin/python3 -c 'import nbd' 2>/dev/null \
  || skip "python3-libnbd is not installed"

start_vdimotiond
PYTHONPATH=$srcdir /usr/bin/python3 "$srcdir/xapi-cbt-live-move.py" \
  "$url" "$T" > "$T/out" 2>&1 \
  || { cat "$T/out" "$T/vdimotiond.log"; fail "xapi-cbt-live-move.py"; }
cat "$T/out"
stop_vdimotiond
