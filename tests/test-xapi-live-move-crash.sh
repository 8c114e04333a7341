#!/bin/sh
# A live move (Async.VDI.pool_migrate) of a running VM's disk that a live
# snapshot pivoted (the VM's filter forwards to a second nbdkit serving
# the leaf), the daemon killed at each point around the switch of the
# disk's servers (VDIMOTIOND_CRASH_AT: before the move's record, before
# the VBD names the move's target, after it, after the pivot, after the
# VBD names the new VDI), fio writing through the VM's disk meanwhile,
# then a start.  Before the pivot the move is undone (the task fails, the
# disk stays on the leaf it was on); after it, finished.  Either way:
# every nbdkit serving from the run dir is one a VBD record names, none
# serves the old leaf, whose file is gone, no move's record is left, the
# VM runs, and fio's verify finds every write it made.  Each round moves
# the disk the previous one left (pivoted by the snapshot, or by the
# last move) to the other SR; the last three are SR evacuations whose live
# leaf is that disk (killed during its mirror, the evacuation resumes
# and moves it; killed after its pivot, it finishes).
. "$srcdir/functions.sh"
. "$srcdir/xapi-functions.sh"
requires nbdkit
requires fio
requires_vm_disks

py () { PYTHONPATH=$srcdir python3 "$srcdir/xapi-live-move-crash.py" "$url" "$T" "$@"; }

start_vdimotiond > /dev/null
sock=$(py setup) || { cat "$T/vdimotiond.log"; fail "setup"; }
fio_disk "$sock" 1 0 4M || fail "fio before the moves"
py snapshot || { cat "$T/vdimotiond.log"; fail "the live snapshot"; }

seed=1
for point in live-move-begun:stayed live-move-served:stayed \
             live-move-switched:stayed pivot-done:moved \
             live-move-committed:moved \
             live-move-switched:moved:evacuate pivot-done:moved:evacuate \
             live-move-committed:moved:evacuate; do
  how=${point#*:*:} outcome=${point#*:} outcome=${outcome%%:*}
  point=${point%%:*}
  [ "$how" = evacuate ] || how=
  seed=$((seed + 1))
  stop_vdimotiond
  VDIMOTIOND_CRASH_AT=$point start_vdimotiond > /dev/null
  # The guest writes a region of its own (about 1 s at 150 writes a
  # second) while the move runs, the daemon dies and the next start
  # finishes or undoes the move.
  fio_disk "$sock" $seed $(( (seed + 2) << 20 )) 512K \
    --rate_iops=1000000,150 &
  fio_pid=$!
  py move $how || fail "$point: move $how"
  wait_crashed "$point"
  start_vdimotiond > /dev/null
  py check "$outcome" > "$T/out" \
    || { cat "$T/out" "$T/vdimotiond.log"; fail "after a crash at $point"; }
  wait "$fio_pid" || fail "$point: fio during the move"
  for s in $(seq 1 $seed); do
    off=$(( (s + 2) << 20 ))
    [ "$s" -gt 1 ] || off=0
    size=512K
    [ "$s" -gt 1 ] || size=4M
    fio_disk "$sock" "$s" $off $size --verify_only \
      || fail "$point: fio's writes of round $s are not all there"
  done
  echo "crash at $point${how:+ ($how)}: $(cat "$T/out"), fio verified"
done

# The disk moves once more without a crash, then the VM stops: nothing
# of the disk's is left running.
py move && py check moved > /dev/null && py halt \
  || { cat "$T/vdimotiond.log"; fail "a move after the crashes"; }
stop_vdimotiond
for f in "$T"/state/run/*.move; do
  [ -e "$f" ] && fail "a move's record outlived its move: $f"
done
:
