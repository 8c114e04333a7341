#!/bin/sh
# SR.evacuate_plan, SR.evacuate and Async.SR.evacuate on offline chains
# of raw, VHD and qcow2 (a base, two snapshots, a leaf) and a lone disk
# (xapi-evacuate-basic.py): the plan refuses a disk larger than any SR
# with its reason and starts nothing; bad options are named; the run
# moves every chain whole (each VDI equal to its source, each layer no
# larger than its source layer, snapshot records intact, the source SR
# empty but for the excluded disk).  kill -9 of the daemon mid-way (at a
# layer copied, at a chain's commit), then a start: it completes with
# nothing duplicated.  A cancel leaves every VDI whole in one place.  A
# running VM's disk (a leaf over its snapshot) moves live with the rest.
. "$srcdir/functions.sh"
. "$srcdir/xapi-functions.sh"

py () { PYTHONPATH=$srcdir python3 "$srcdir/xapi-evacuate-basic.py" "$url" "$T" "$@"; }
alive () { st=$(ps -o stat= -p "$1" 2>/dev/null) && [ "${st#Z}" = "$st" ]; }

# The daemon kills itself at crash point $1 of the evacuation started
# with the rest of the arguments; then a start finishes it.
crash_at ()
{
  point=$1; shift
  stop_vdimotiond
  VDIMOTIOND_CRASH_AT=$point start_vdimotiond > /dev/null
  py start "$@" > /dev/null || fail "start $*"
  for _ in $(seq 600); do
    alive "$vdimotiond_pid" || break
    sleep 0.1
  done
  ! alive "$vdimotiond_pid" || fail "the daemon never reached $point"
  wait "$vdimotiond_pid" 2>/dev/null || :
  grep -q "crash point $point" "$T/vdimotiond.log" \
    || fail "the daemon did not crash at $point"
  vdimotiond_pid=
  start_vdimotiond > /dev/null
  py check "$1" "$2" > "$T/out" \
    || { cat "$T/out" "$T/vdimotiond.log"; fail "after a crash at $point"; }
  echo "crash at $point: $(cat "$T/out")"
}

start_vdimotiond
py setup || fail "setup"
py plan || { cat "$T/vdimotiond.log"; fail "plan"; }

crash_at evacuate-layer-copied sr1 sr2 parallel=2
ls "$T/state/jobs" | grep -q . && fail "files left in the jobs dir: $(ls "$T/state/jobs")"
crash_at evacuate-committing sr2 sr1 parallel=1 dest-img-format=qcow2

py start sr1 sr2 parallel=1 cancel > /dev/null || fail "start to cancel"
py check sr1 sr2 cancelled || { cat "$T/vdimotiond.log"; fail "cancel"; }
# What the cancel left, moved by the synchronous call.
py run sr1 sr2 || { cat "$T/vdimotiond.log"; fail "synchronous"; }
ls "$T/state/jobs" | grep -q . && fail "files left in the jobs dir: $(ls "$T/state/jobs")"
# A running VM's disk in a chain moves with the rest, live.
if [ -f "$modules_dir/sr-drivers/.libs/nbdkit-vdi-plugin.so" ] \
   && command -v nbdkit > /dev/null; then
  uses_nbdkit_module
  py live sr2 sr1 || { cat "$T/vdimotiond.log"; fail "live"; }
fi
stop_vdimotiond
