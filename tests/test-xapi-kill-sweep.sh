#!/bin/bash
# kill -9 sweep of vdimotiond under Async.VDI.copy and
# Async.VDI.pool_migrate (offline, into vhd and qcow2): the daemon is
# killed at a random point of the job and started again at once, without
# waiting for the killed process to be gone; after the restart the task
# must end as what happened on disk says (xapi-kill-sweep.py check):
# success with the new VDI existing and equal to the data, or failure
# (or cancelled, when the client cancelled the job before the kill) with
# the source intact, and in both cases no marked VDI, no stray image and
# no journal left.  Also: a start waits for an SR lock held by
# another process instead of refusing.
#
# The points are random but seeded: the seed is printed, and
# VDM_SWEEP_SEED=N reruns the same sweep.
. "$srcdir/functions.sh"
. "$srcdir/xapi-functions.sh"
requires qemu-img
requires flock
requires nbdkit
# A live move's VM serves its disk through the plugin and the filter.
requires_vm_disks

seed=${VDM_SWEEP_SEED:-$(( $$ ^ $(date +%s) ))}
seed=$(( seed % 32768 ))
echo "seed $seed (rerun with VDM_SWEEP_SEED=$seed)"
RANDOM=$seed
rounds=${VDM_SWEEP_ROUNDS:-10}

py () { python3 "$srcdir/xapi-kill-sweep.py" "$url" "$T" "$@"; }

# Wait (at most two minutes) for the daemon to kill itself at its crash
# point.
wait_crashed ()
{
  wait_for 120 gone "$vdimotiond_pid" \
    || fail "the daemon never reached $1"
  wait "$vdimotiond_pid" 2>/dev/null || :
}

# hold_lock FILE WORDS: take an exclusive flock on FILE in the background
# ($holder) and keep it until the daemon's log has WORDS (it saw the lock
# held and waits), at most two minutes; however slowly the daemon starts,
# it finds the lock held.  The previous daemon's log is set aside first.
hold_lock ()
{
  rm -f "$T/locked"
  if [ -s "$T/vdimotiond.log" ]; then
    cat "$T/vdimotiond.log" >> "$T/vdimotiond-earlier.log"
    : > "$T/vdimotiond.log"
  fi
  flock -x "$1" sh -c 'touch "$1"
    for _ in $(seq 2400); do
      grep -q "$3" "$2" 2>/dev/null && break
      sleep 0.05
    done' sh "$T/locked" "$T/vdimotiond.log" "$2" &
  holder=$!
  wait_for 120 test -e "$T/locked" || fail "flock never took $1"
}

# A start while another process holds an SR's lock waits for it (and
# says so) rather than refusing.
mkdir -p "$T/sr1"
: > "$T/sr1/sr.db"
hold_lock "$T/sr1/sr.db" 'is held by another process.*waiting'
start_vdimotiond
wait $holder
grep -q 'is held by another process.*waiting' "$T/vdimotiond.log" \
  || fail "the start did not wait for the SR's lock"

# 40 MiB of data in five places over 128 MiB.
truncate -s 128M "$T/data.raw"
for i in 0 1 2 3 4; do
  write_pattern "$T/data.raw" $((i + 1)) $(( i * 25 << 20 )) $(( 8 << 20 ))
done
py setup

# kill -9 and an immediate start: the old process may still be exiting
# (holding its locks); the new one waits for them.
crash_and_restart ()
{
  old=$vdimotiond_pid
  kill -9 "$old"
  vdimotiond_pid=
  start_vdimotiond > /dev/null
  wait "$old" 2>/dev/null || :
}

# 1. Crashes at each point between two durable steps of a job, however
# short the window (the daemon kills itself there: VDIMOTIOND_CRASH_AT),
# each followed by an immediate start.
for kind in migrate copy; do
  for point in dest-chosen copied committing source-destroyed finished; do
    [ $kind = migrate ] || [ $point != source-destroyed ] || continue
    kill -9 "$vdimotiond_pid"; wait "$vdimotiond_pid" 2>/dev/null || :
    export VDIMOTIOND_CRASH_AT=$point
    start_vdimotiond > /dev/null
    unset VDIMOTIOND_CRASH_AT
    py start $kind qcow2 > /dev/null
    wait_crashed $point
    grep -q "crash point $point" "$T/vdimotiond.log" \
      || fail "$kind: the daemon did not crash at $point"
    if [ $point = dest-chosen ]; then
      # As if the crash had come after the new image was written but
      # before its record: an image of the chosen uuid, unrecorded.
      dst=$(python3 - "$T" <<'PY'
import json, os, sqlite3, sys
T = sys.argv[1]
st = json.load(open(os.path.join(T, "sweep-state.json")))
db = sqlite3.connect(os.path.join(T, "state", "state.db"))
(uuid,) = db.execute("SELECT dst_vdi FROM jobs").fetchone()
print(os.path.join(st["there_dir"], uuid + "." + st["fmt"]))
PY
)
      qemu-img create -q -f qcow2 "$dst" 1M
    fi
    vdimotiond_pid=
    start_vdimotiond > /dev/null
    outcome=$(py check) || {
      tail -20 "$T/vdimotiond.log" >&2
      fail "$kind: crash at $point: inconsistent"
    }
    echo "$kind: crash at $point: $outcome"
    [ "$outcome" = success ] || fail "$kind: crash at $point: $outcome"
  done
done

# 1b. A live move whose pivot happened with no time to record it: the
# restart finds it from the mirror filter and finishes the move (it used
# to abort it and destroy the disk the VM had been pivoted to).
if [ -n "$modules_dir" ] && [ -f "$modules_dir/sr-drivers/.libs/nbdkit-vdi-plugin.so" ] \
   && command -v nbdkit > /dev/null && command -v nbdcopy > /dev/null; then
  head -c 64M /dev/urandom > "$T/live.raw"
  kill -9 "$vdimotiond_pid"; wait "$vdimotiond_pid" 2>/dev/null || :
  export VDIMOTIOND_CRASH_AT=pivot-done
  start_vdimotiond > /dev/null
  unset VDIMOTIOND_CRASH_AT
  py live-start > /dev/null
  wait_crashed pivot-done
  grep -q "crash point pivot-done" "$T/vdimotiond.log" \
    || fail "live: the daemon did not crash at pivot-done"
  vdimotiond_pid=
  start_vdimotiond > /dev/null
  sock=$(py live-check)
  grep -q 'was pivoted to VDI' "$T/vdimotiond.log" || fail "live: pivot not found"
  nbdcopy "nbd+unix:///?socket=$sock" "$T/live-back"
  cmp "$T/live.raw" "$T/live-back" || fail "live: the VM's disk lost data"
  py live-end
  echo "live: crash after the pivot: success"
else
  echo "live: skipped (no nbdkit modules a plain nbdkit can load)"
fi

# 2. kill -9 at random points.  How long a whole job takes here, to draw
# the points from
# (the shorter of two moves).
full=$(py start migrate qcow2 time)
py check > /dev/null
t=$(py start migrate qcow2 time)
py check > /dev/null
[ "$t" -ge "$full" ] || full=$t
echo "a whole move takes about $full ms"

n=0
for kind in migrate copy; do
  for round in $(seq "$rounds"); do
    n=$((n + 1))
    fmt=qcow2
    [ $((RANDOM % 2)) -eq 0 ] || fmt=vhd
    ms=$(( RANDOM % (full + full / 4 + 2) ))
    if [ $((RANDOM % 4)) -eq 0 ]; then
      # The client cancels the job just before the kill.
      py start $kind $fmt cancel=$ms > /dev/null
      ms="$ms (cancelled)"
    else
      py start $kind $fmt > /dev/null
      sleep "$(( ms / 1000 )).$(printf %03d $(( ms % 1000 )))"
    fi
    crash_and_restart
    # Now and then a second kill, while the restarted daemon resumes.
    if [ $((RANDOM % 3)) -eq 0 ]; then
      ms2=$(( RANDOM % (full / 2 + 2) ))
      sleep "$(( ms2 / 1000 )).$(printf %03d $(( ms2 % 1000 )))"
      crash_and_restart
      ms="$ms+${ms2}"
    fi
    outcome=$(py check) || {
      tail -20 "$T/vdimotiond.log" >&2
      fail "$kind round $round (killed at $ms ms, seed $seed): inconsistent"
    }
    echo "$kind ($fmt) round $round: killed at $ms ms: $outcome"
  done
done
grep -q 'resuming\|finishing' "$T/vdimotiond-earlier.log" "$T/vdimotiond.log" \
  || fail "no job was ever resumed or finished at a restart"
stop_vdimotiond

# The state directory's lock is waited for the same way.
hold_lock "$T/state/lock" 'state/lock is held by another process.*waiting'
start_vdimotiond
wait $holder
grep -q 'state/lock is held by another process.*waiting' "$T/vdimotiond.log" \
  || fail "the start did not wait for the state directory's lock"
stop_vdimotiond
echo PASS
