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
# running VM's disk (a leaf over its snapshot) moves live with the rest,
# the daemon killed right after its pivot: the restart commits it.  A
# clean stop mid-way: the next start resumes.
. "$srcdir/functions.sh"
. "$srcdir/xapi-functions.sh"
# The live part needs the daemon to serve VMs' disks (before it starts:
# under the sanitizers its nbdkits get the ASan runtime).
vm_disks=
if [ -f "$modules_dir/sr-drivers/.libs/nbdkit-vdi-plugin.so" ] \
   && command -v nbdkit > /dev/null; then
  uses_nbdkit_module
  vm_disks=yes
fi

py () { PYTHONPATH=$srcdir python3 "$srcdir/xapi-evacuate-basic.py" "$url" "$T" "$@"; }

# The daemon kills itself at crash point $1 of the evacuation started
# with the rest of the arguments; then a start finishes it.
crash_at ()
{
  point=$1; shift
  stop_vdimotiond
  VDIMOTIOND_CRASH_AT=$point start_vdimotiond > /dev/null
  py start "$@" > /dev/null || fail "start $*"
  wait_for 120 gone "$vdimotiond_pid" \
    || fail "the daemon never reached $point"
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
if [ -n "$vm_disks" ]; then
  py live-setup sr2 sr1 || { cat "$T/vdimotiond.log"; fail "live"; }
  # Killed right after the pivot: the restart finds it and commits.
  crash_at pivot-done sr2 sr1 parallel=2
fi
# A clean stop (SIGTERM) while it runs: the next start resumes it.
py start sr1 sr2 parallel=1 > /dev/null || fail "start before a stop"
stop_vdimotiond
start_vdimotiond > /dev/null
py check sr1 sr2 || { cat "$T/vdimotiond.log"; fail "after a clean stop"; }
stop_vdimotiond
