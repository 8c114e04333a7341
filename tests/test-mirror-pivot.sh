#!/bin/sh
# complete pivot=true: fio keeps writing through the same socket, its
# writes land in the target (fio's verify pass over the target is clean)
# and the source stops changing.
. "$srcdir/functions.sh"
uses_nbdkit_module
. "$top_srcdir/mirror-filter/test-functions.sh"

SZ=$(( 32 << 20 ))
SPEC=4k,0,16M
make_image "$T/src.raw" raw $SZ
make_empty "$T/dst.raw" raw $SZ
start_nbdkit dst $(plugin_for "$T/dst.raw")
serve_mirrored src "$T/src.raw"
mctl start --target "$(uri_of dst)" > /dev/null
wait_state ready

# fio passes over SPEC until the pivot is done (a pass may end before
# it on a loaded machine); the pivot comes once its writes are mirrored.
rm -f "$T/stop-fio"
repeat_until "$T/stop-fio" fio_write src 21 $SPEC --rate_iops=2000 &
fpid=$!
wait_for 120 eval '[ "$(mctl --json status | jget writes_mirrored)" -gt 0 ]' \
  || fail "no write mirrored in 2 minutes"
mctl complete --pivot > /dev/null
sum1=$(md5sum < "$T/src.raw")
mctl --json status > "$T/st.json"
[ "$(jget state < "$T/st.json")" = completed ] || fail "not completed"
[ "$(jget pivoted < "$T/st.json")" = true ] || fail "not pivoted"
touch "$T/stop-fio"
wait "$fpid" || fail "fio failed across the pivot"
# More writes after the pivot, through the same socket.
fio_write src 22 4k,16M,4M || fail "writing after the pivot"
sum2=$(md5sum < "$T/src.raw")
[ "$sum1" = "$sum2" ] || fail "the source changed after the pivot"
expect_exit 1 "$VDIMOTION" mirror abort --control "$CTL"
grep -q 'pivoted' "$T/err" || fail "abort after pivot"
expect_exit 1 "$VDIMOTION" mirror start --control "$CTL" --target "$(uri_of dst)"
mstop src
fio_verify dst 21 $SPEC || fail "the target misses writes"
fio_verify dst 22 4k,16M,4M || fail "the target misses post-pivot writes"
# ...and the source does not have the later ones.
start_nbdkit plain $(plugin_for "$T/src.raw")
if fio_verify plain 22 4k,16M,4M > /dev/null 2>&1; then
  fail "post-pivot writes reached the source"
fi
echo "ok: pivot"
