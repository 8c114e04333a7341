#!/bin/sh
# The daemon opens a VDI as the format its record says, never as what a
# guest wrote into it: raw VDIs holding a guest-written qcow2 header (its
# backing file a host file) or a VHD footer read back exactly on every
# path (import, export, SR.scan, VM.start's socket, VDI.copy,
# VDI.pool_migrate, VM.migrate to a second daemon).
. "$srcdir/functions.sh"
. "$srcdir/xapi-functions.sh"
. "$srcdir/guest-headers.sh"
requires nbdkit
requires nbdcopy
requires qemu-img
requires qemu-io
requires_vm_disks

echo "host secret" > "$T/host-file"
guest_qcow2_header "$T/qhdr.raw" $((16 * 1024 * 1024)) "$T/host-file"
guest_vhd_footer "$T/vftr.raw" $((16 * 1024 * 1024))

start_peer
start_vdimotiond \
  --memory-migrator "$top_builddir/memory-migrators/vdimotion-mm-none"
PYTHONPATH=$srcdir python3 "$srcdir/xapi-format-owner.py" "$url" \
  "$peer_url" "$T" "$T/qhdr.raw" "$T/vftr.raw" > "$T/out" \
  || { cat "$T/out" "$T/vdimotiond.log"; fail "a raw VDI read as an image"; }
cat "$T/out"
! grep -q "host secret" "$T"/out-* || fail "a host file was served"
stop_vdimotiond
stop_peer
