#!/bin/sh
# The changed-block log through a cross-host live migration (VM.migrate
# between two vdimotiond): written on the source before, during (the
# mirrors in sync, the VM not yet handed over) and on the destination
# after; the destination's log then holds exactly those blocks, with the
# source's generation, so the next backup there is incremental and small.
. "$srcdir/functions.sh"
. "$srcdir/xapi-functions.sh"
requires nbdkit
requires qemu-io
requires python3
requires_vm_disks

tls_setup
start_peer $tls
start_vdimotiond $tls \
  --memory-migrator "$top_builddir/memory-migrators/vdimotion-mm-none"
CBTLOG=$top_builddir/tests/cbtlog-tool \
PYTHONPATH=$srcdir python3 "$srcdir/xapi-cbt-migrate.py" "$https_url" \
  "$peer_https_url" "$T/cert.pem" "$T" > "$T/out" \
  || { cat "$T/out"; tail -20 "$T/vdimotiond.log" "$T/peer/vdimotiond.log"; fail "CBT through VM.migrate"; }
cat "$T/out"
