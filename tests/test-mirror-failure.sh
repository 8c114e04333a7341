#!/bin/sh
# A failing target never costs the guest a write: the target behind
# nbdkit's error filter (EIO on pwrite, switched on mid-run) and behind
# its delay filter (stalls past mirror-timeout) turns the mirror
# "failed" with the reason in status, fio keeps running without an
# error, and the source image holds every write.
. "$srcdir/functions.sh"
uses_nbdkit_module
. "$top_srcdir/mirror-filter/test-functions.sh"

SZ=$(( 32 << 20 ))
SPEC=4k,0,16M

check_source ()
{
  mstop src
  start_nbdkit plain $(plugin_for "$T/src.raw")
  fio_verify plain "$1" $SPEC || fail "$2: the source lost writes"
  mstop plain
}

# 1. Target errors (EIO) once the trigger file appears.
make_image "$T/src.raw" raw $SZ
make_empty "$T/dst.raw" raw $SZ
start_nbdkit dst --filter=error $(plugin_for "$T/dst.raw") \
  error=EIO error-pwrite-rate=100% error-file="$T/trigger"
serve_mirrored src "$T/src.raw" mirror-timeout=5
mctl start --target "$(uri_of dst)" > /dev/null
wait_state ready
# fio passes over SPEC until the mirror has failed: the trigger comes
# once its writes are mirrored, and writes still come after it, however
# slowly each step starts.
rm -f "$T/stop-fio"
repeat_until "$T/stop-fio" fio_write src 11 $SPEC --rate_iops=2000 &
fpid=$!
wait_for 120 eval '[ "$(mctl --json status | jget writes_mirrored)" -gt 0 ]' \
  || fail "no write mirrored in 2 minutes"
touch "$T/trigger"
wait_state failed
touch "$T/stop-fio"
wait "$fpid" || fail "fio saw an error when the target failed"
mctl --json status > "$T/st.json"
grep -q 'Input/output error' "$T/st.json" || { cat "$T/st.json"; fail "status does not say why"; }
[ "$(jget target < "$T/st.json")" = None ] || fail "the failed target was not dropped"
# The guest keeps writing, to the local disk only.
fio_write src 12 4k,16M,4M || fail "writing after the failure"
check_source 11 "error filter"
mstop dst
echo "ok: target errors"

# 2. Target stalls past mirror-timeout (delay filter, 4 s > 1 s).
rm -f "$T/trigger" "$T/src.raw" "$T/dst.raw"
make_image "$T/src.raw" raw $SZ
make_empty "$T/dst.raw" raw $SZ
start_nbdkit dst --filter=delay $(plugin_for "$T/dst.raw") \
  delay-write=4000ms delay-zero=4000ms
serve_mirrored src "$T/src.raw" mirror-timeout=1
fio_write src 13 $SPEC --rate_iops=2000 &
fpid=$!
sleep 0.2
mctl start --target "$(uri_of dst)" > /dev/null
wait "$fpid" || fail "fio saw an error when the target stalled"
wait_state failed 60
mctl --json status | jget error | grep -q 'took longer than 1' \
  || { mctl status; fail "status does not name the timeout"; }
check_source 13 "delay filter"
mstop dst
echo "ok: target stalls"

# 3. A target that is not there, or too small: start fails, state idle.
rm -f "$T/src.raw"
make_image "$T/src.raw" raw $SZ
serve_mirrored src "$T/src.raw"
expect_exit 1 "$VDIMOTION" mirror start --control "$CTL" --target "$(uri_of nothing)"
grep -q 'cannot connect' "$T/err" || fail "no connect error"
make_empty "$T/small.raw" raw 1M
start_nbdkit small $(plugin_for "$T/small.raw")
expect_exit 1 "$VDIMOTION" mirror start --control "$CTL" --target "$(uri_of small)"
grep -q 'smaller than' "$T/err" || fail "no size error"
expect_exit 1 "$VDIMOTION" mirror start --control "$CTL" --target /not/a/uri
grep -q 'not an NBD URI' "$T/err" || fail "no URI error"
[ "$(mstate)" = idle ] || fail "a refused start changed the state"
expect_exit 2 "$VDIMOTION" mirror start --control "$CTL"
expect_exit 2 "$VDIMOTION" mirror frobnicate --control "$CTL"
echo "ok: refused starts"
