#!/bin/sh
# Storage motion through vdimotiond's XenAPI face: a running VM's disk
# moves to another SR (Async.VDI.pool_migrate) while fio writes through
# its nbd-socket; offline copies, queued copies and cancel.
. "$srcdir/functions.sh"
. "$srcdir/xapi-functions.sh"
requires fio
requires nbdkit
requires qemu-img
requires qemu-io
requires_vm_disks

start_vdimotiond --max-storage-operations 2
PYTHONPATH=$srcdir python3 "$srcdir/xapi-storage-motion.py" "$url" "$T" \
  "$T/sr1" "$T/sr2" > "$T/out" || { cat "$T/out"; cat "$T/vdimotiond.log"; fail "storage motion"; }
cat "$T/out"

grep -q 'queued' "$T/vdimotiond.log" || fail "no job was queued"
stop_vdimotiond
