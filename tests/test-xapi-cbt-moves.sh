#!/bin/sh
# The changed-block log follows its disk: a running VM's disk with CBT on
# is written, moved live (Async.VDI.pool_migrate) and written again: the
# log on the destination has both sets of blocks, generation intact, and
# none is left at the source; VDI.copy gives the copy the same log, and
# an offline move takes it along.
. "$srcdir/functions.sh"
. "$srcdir/xapi-functions.sh"
requires nbdkit
requires qemu-io
requires python3
requires_vm_disks

start_vdimotiond
CBTLOG=$top_builddir/tests/cbtlog-tool \
PYTHONPATH=$srcdir python3 "$srcdir/xapi-cbt-moves.py" "$url" "$T" \
  "$T/sr1" "$T/sr2" > "$T/out" \
  || { cat "$T/out"; cat "$T/vdimotiond.log"; fail "CBT through moves"; }
cat "$T/out"
stop_vdimotiond
