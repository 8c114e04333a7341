#!/bin/sh
# Changed-block logs across crashes, with vdimotiond: kill -9 of the
# daemon alone leaves the VM's disk server marking (it outlives the
# daemon by design), so the log stays continuous; kill -9 of the daemon
# and the disk server together (a host crash) while the guest writes
# leaves the log "in use" with nobody holding it, and the next start of
# the VM resets it: every block, a new generation, "not closed cleanly"
# (the next backup is full and says why).
. "$srcdir/functions.sh"
. "$srcdir/xapi-functions.sh"
requires fio
requires nbdkit
requires qemu-io
requires python3
requires_vm_disks

export CBTLOG=$top_builddir/tests/cbtlog-tool
py () { PYTHONPATH=$srcdir python3 "$srcdir/xapi-cbt-crash.py" "$url" "$T" "$@"; }
kill_daemon ()
{
  kill -9 "$vdimotiond_pid"
  wait "$vdimotiond_pid" 2>/dev/null || :
  vdimotiond_pid=
}

start_vdimotiond
set -- $(py start)
log=$1 sock=$2
gen0=$(py field generation)

# The daemon alone dies while the guest writes: the disk server goes on.
py write "$sock" 1048576
kill_daemon
py write "$sock" 2097152
start_vdimotiond
py write "$sock" 3145728
[ "$(py field blocks)" = 16,32,48 ] || fail "blocks after a daemon crash: $(py field blocks)"
[ "$(py field generation)" = "$gen0" ] || fail "a daemon crash changed the generation"
echo "ok: kill -9 of the daemon alone: the log stays continuous"

# A host crash while the guest writes (once it has marked more blocks
# of the log; marks go through a shared mapping, so not its mtime):
# daemon and disk server killed.
fio --name=w --ioengine=nbd --uri="nbd+unix:///?socket=$sock" \
  --rw=randwrite --bs=4k --size=16M --time_based --runtime=300 \
  > /dev/null 2>&1 &
fio_pid=$!
wait_for 120 eval '[ "$(py field blocks)" != 16,32,48 ]' \
  || fail "fio marked no block"
kill_daemon
for p in "$T"/state/run/*.pid; do kill -9 "$(cat "$p")" 2>/dev/null || :; done
wait "$fio_pid" 2>/dev/null || :
[ "$(py field consistent)" = 0 ] || fail "the flag is set after the crash"
start_vdimotiond
py restart
[ "$(py field reason)" = not_closed_cleanly ] || fail "reason: $(py field reason)"
[ "$(py field generation)" != "$gen0" ] || fail "no new generation after the crash"
[ "$(py field nblocks)" = 256 ] || fail "the reset marked $(py field nblocks) of 256 blocks"
[ "$(py field predecessor)" = - ] || fail "a reset log counts from a snapshot"
py stop
[ "$(py field consistent)" = 1 ] || fail "not consistent after a clean stop"
echo "ok: kill -9 of daemon and disk server: the next start resets the log, with its reason"
stop_vdimotiond

# A disk served since before the daemon's restart, CBT turned on after
# it: the restarted daemon finds the disk server in its records and has
# its filter take the log (cbt-open), so every write after enable_cbt is
# marked, exactly; disable_cbt has it let go, and the log goes.  Then
# the daemon killed in each call, between the SR's change and the
# filter's: its next start makes the filter agree with the record.
start_vdimotiond
set -- $(py start off)
log=$1 sock=$2
py write "$sock" 1048576
kill_daemon
start_vdimotiond
py enable
py write "$sock" 4194304
[ "$(py field blocks)" = 64 ] || fail "enabled after a restart: marked $(py field blocks), want 64"
py disable
[ ! -e "$log" ] || fail "disable_cbt of a served disk left its log"
py write "$sock" 5242880
echo "ok: CBT turned on and off for a disk served since before a restart"
crash_in ()
{
  kill_daemon
  VDIMOTIOND_CRASH_AT=$1 start_vdimotiond
  py "$2" > /dev/null 2>&1 || :
  wait "$vdimotiond_pid" 2>/dev/null || :
  vdimotiond_pid=
  grep -q "crash point $1" "$T/vdimotiond.log" || fail "no crash at $1"
  start_vdimotiond
}
crash_in enable-cbt-created enable
py write "$sock" 6291456
[ "$(py field blocks)" = 96 ] || fail "enable crashed before cbt-open: marked $(py field blocks), want 96"
[ "$(py field consistent)" = 0 ] || fail "enable crashed before cbt-open: the log is not taken"
crash_in disable-cbt-flagged disable
[ ! -e "$log" ] || fail "disable crashed before cbt-close: the log stays"
py stop
echo "ok: a daemon killed in enable_cbt or disable_cbt: its restart mends the filter"
stop_vdimotiond
