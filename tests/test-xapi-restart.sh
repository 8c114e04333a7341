#!/bin/sh
# kill -9 of vdimotiond in the middle of its work: after a restart an
# offline copy resumes from its journal and ends equal to its source; a
# live move fails cleanly, the VM still running on its old disk with
# every write, and nothing of the move left behind.  Sessions, tasks and
# VMs survive the restart.
. "$srcdir/functions.sh"
. "$srcdir/xapi-functions.sh"
requires nbdcopy
requires nbdkit
requires qemu-img
requires_vm_disks

py () { python3 "$srcdir/xapi-restart.py" "$url" "$T" "$@"; }
crash_and_restart ()
{
  kill -9 "$vdimotiond_pid"
  wait "$vdimotiond_pid" 2>/dev/null || :
  vdimotiond_pid=
  start_vdimotiond
}

start_vdimotiond

# A 1 GiB disk of random data, written through the VM's socket.
sock=$(py vm)
head -c 1G /dev/urandom > "$T/data"
nbdcopy "$T/data" "nbd+unix:///?socket=$sock"

# Offline copy, killed under way, resumed after the restart.
py copy
crash_and_restart
set -- $(py copy-after)
grep -q 'resuming' "$T/vdimotiond.log" || fail "the copy did not resume"
qemu-img compare -q "$1" "$2" || fail "the resumed copy differs"
[ -z "$(ls "$T/state/jobs")" ] || fail "a journal is left: $(ls "$T/state/jobs")"

# Live move, killed under way: fails cleanly.
sock=$(py live)
ls "$T/sr2" > "$T/sr2-during"
crash_and_restart
py live-after
nbdcopy "nbd+unix:///?socket=$sock" "$T/back"
cmp "$T/data" "$T/back" || fail "the VM's disk lost data"
n=$(ls "$T/sr2" | grep -c -v '^sr\.db')
[ "$n" -eq 1 ] || fail "sr2 holds $n images, expected only the copy: $(ls "$T/sr2")"
[ -z "$(ls "$T"/state/run/*-target.* 2>/dev/null)" ] \
  || fail "the move's target nbdkit is left"
py end
stop_vdimotiond
