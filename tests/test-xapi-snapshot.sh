#!/bin/sh
# VDI.snapshot through vdimotiond's XenAPI face (xapi-snapshot.py): a
# VDI not in use is frozen into a snapshot of each format, the records
# link both ways, the snapshot keeps the bytes of its moment while the
# VDI goes on; a VDI a running VM uses is refused (VDI_IN_USE).
. "$srcdir/functions.sh"
. "$srcdir/xapi-functions.sh"

requires nbdkit
requires_vm_disks

start_vdimotiond
PYTHONPATH=$srcdir python3 "$srcdir/xapi-snapshot.py" "$url" "$T" "$T/sr1" \
  > "$T/out" || { cat "$T/out"; cat "$T/vdimotiond.log"; fail "snapshot"; }
cat "$T/out"
stop_vdimotiond
