#!/bin/sh
# A pause nobody resumes (a dead owner) opens by itself after
# mirror-pause-timeout seconds, on the disk as it was, and says so in
# nbdkit's log: a write made while paused waits that long and then
# succeeds; a later resume is refused and says the pause expired.  The
# control thread expires it too when no request comes.  A plain resume
# releases a waiting write at once.  nbdkit stopped while paused ends
# the pause at once.
. "$srcdir/functions.sh"
uses_nbdkit_module
. "$top_srcdir/mirror-filter/test-functions.sh"

SZ=$(( 16 << 20 ))
make_image "$T/disk.raw" raw $SZ
serve_mirrored src "$T/disk.raw" mirror-pause-timeout=2

# 1. A write waits for the timeout.  Timed from before the pause (the
# pause starts after t0, the write ends after the pause's 2 s), so
# however slowly the commands start, the write must take 2 s.
t0=$(date +%s%N)
mctl pause > /dev/null
fio_write src 61 4k,0,1M || fail "the write held by an expired pause failed"
t1=$(date +%s%N)
waited=$(( (t1 - t0) / 1000000 ))
[ "$waited" -ge 1990 ] || fail "the write waited only $waited ms"
grep -q 'paused for more than 2 s' "$T/src.log" \
  || { cat "$T/src.log"; fail "the expiry is not logged"; }
[ "$(mctl --json status | jget paused)" = false ] || fail "still paused"
expect_exit 1 "$VDIMOTION" mirror --control "$CTL" resume
grep -q 'expired' "$T/err" || { cat "$T/err"; fail "resume: unclear error"; }
echo "ok: a write waited $waited ms, then the pause expired"

# 2. No request at all: the control thread expires it (after its 2 s,
# as soon as the thread runs, however loaded the machine).
mctl pause > /dev/null
sleep 2
wait_for 60 eval '[ "$(mctl --json status | jget paused)" = false ]' \
  || fail "an idle pause did not expire"
expect_exit 1 "$VDIMOTION" mirror --control "$CTL" resume --pivot \
  --target "$(uri_of src)"
grep -q 'expired' "$T/err" || { cat "$T/err"; fail "resume pivot: unclear"; }
echo "ok: an idle pause expired"

# 3. A plain resume releases the waiting write on the local disk.  On
# a server whose pause lasts (60 s): the 2 s one could expire while
# the commands below start, on a loaded machine.
mstop src
serve_mirrored src "$T/disk.raw" mirror-pause-timeout=60
mctl pause > /dev/null
expect_exit 1 "$VDIMOTION" mirror --control "$CTL" pause
grep -q 'already paused' "$T/err" || fail "a second pause: unclear error"
expect_exit 1 "$VDIMOTION" mirror --control "$CTL" start --target "$(uri_of src)"
grep -q 'paused' "$T/err" || fail "start while paused: unclear error"
fio_write src 62 4k,4M,1M &
fpid=$!
sleep 0.5
kill -0 "$fpid" 2>/dev/null || fail "a write went through the pause"
mctl resume > /dev/null
wait "$fpid" || fail "the released write failed"
mstop src
start_nbdkit plain $(plugin_for "$T/disk.raw")
fio_verify plain 61 4k,0,1M || fail "the write made while paused is lost"
fio_verify plain 62 4k,4M,1M || fail "the released write is lost"
echo "ok: resume released the write"

# 4. nbdkit stopped while paused, a write waiting: the pause ends at
# once (not after mirror-pause-timeout), the write is answered, nbdkit
# exits.
requires qemu-io
serve_mirrored src2 "$T/disk.raw" mirror-pause-timeout=60
mctl pause > /dev/null
qemu-io -f raw -c 'write -P 0x33 8M 4k' "$(uri_of src2)" > "$T/qio.log" 2>&1 &
qpid=$!
sleep 0.5
kill -0 "$qpid" 2>/dev/null || fail "a write went through the pause"
t0=$(date +%s%N)
mstop src2
t1=$(date +%s%N)
wait "$qpid" || { cat "$T/qio.log"; fail "the write held at shutdown failed"; }
took=$(( (t1 - t0) / 1000000 ))
[ "$took" -lt 10000 ] || fail "nbdkit took $took ms to stop while paused"
grep -q 'shutting down: the pause ends' "$T/src2.log" \
  || { cat "$T/src2.log"; fail "the shutdown's release is not logged"; }
echo "ok: stopped while paused in $took ms"
