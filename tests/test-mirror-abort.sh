#!/bin/sh
# abort at every state (idle, syncing, ready, failed, completed) leaves
# the source intact and the filter passing I/O through; a new start
# works afterwards.
. "$srcdir/functions.sh"
uses_nbdkit_module
. "$top_srcdir/mirror-filter/test-functions.sh"

SZ=$(( 64 << 20 ))
make_image "$T/src.raw" raw $SZ
make_empty "$T/dst.raw" raw $SZ
make_empty "$T/slow.raw" raw $SZ
start_nbdkit dst $(plugin_for "$T/dst.raw")
start_nbdkit slow --filter=delay $(plugin_for "$T/slow.raw") \
  delay-write=200ms delay-zero=200ms
start_nbdkit bad --filter=error $(plugin_for "$T/dst.raw") \
  error=EIO error-pwrite-rate=100% error-zero-rate=100%
serve_mirrored src "$T/src.raw" mirror-timeout=5
fio_write src 31 4k,0,2M

# ms_of COMMAND...: run it, its time in $ms; its exit status.
ms_of ()
{
  t0=$(date +%s%N) rc=0
  "$@" > /dev/null || rc=$?
  ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  return $rc
}
# aborted STATE: abort, checked.  An abort takes at most 2 s more than
# a status does just before it: what it proves is that abort does not
# wait for the slow target's writes, and on a loaded machine (or under
# the sanitizers) any command may take a second to start and exit.
aborted ()
{
  ms_of mctl status || fail "status in $1"
  base=$ms
  ms_of mctl abort || fail "abort in $1"
  [ "$ms" -le $((2000 + base)) ] \
    || fail "abort when $1 took $ms ms (a status: $base ms)"
  mctl --json status > "$T/st.json"
  [ "$(jget state < "$T/st.json")" = aborted ] || fail "$1: not aborted"
  [ "$(jget target < "$T/st.json")" = None ] || fail "$1: target kept"
  fio_verify src 31 4k,0,2M > /dev/null || fail "$1: source changed"
  echo "ok: abort when $1 ($ms ms)"
}

aborted idle

mctl start --target "$(uri_of slow)" > /dev/null
[ "$(mstate)" = syncing ] || fail "not syncing"
aborted syncing

mctl start --target "$(uri_of dst)" > /dev/null
wait_state ready
aborted ready
# Writes after the abort reach the source only.
before=$(md5sum < "$T/dst.raw")
fio_write src 32 4k,8M,2M
[ "$before" = "$(md5sum < "$T/dst.raw")" ] || fail "aborted mirror still writes the target"

mctl start --target "$(uri_of bad)" > /dev/null
wait_state failed
aborted failed

mctl start --target "$(uri_of dst)" > /dev/null
wait_state ready
mctl complete > /dev/null
aborted completed

# And after all that, a full mirror still works.
mctl start --target "$(uri_of dst)" > /dev/null
wait_state ready
mctl complete > /dev/null
mstop src
mstop dst
"$VDIMOTION" compare -q "$T/src.raw" "$T/dst.raw" || fail "final mirror differs"
echo "ok: start after aborts"
