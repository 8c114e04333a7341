#!/bin/sh
# start sync=none: the target already reads what the disk reads (a copy
# made while the guest was quiet), so the mirror is ready at once, the
# copier copies and zeroes nothing, and only fio's writes, mirrored,
# reach the target: after complete it compares equal to the source and
# fio's verify over it is clean.  pause is refused while it runs.
. "$srcdir/functions.sh"
uses_nbdkit_module
. "$top_srcdir/mirror-filter/test-functions.sh"

SZ=$(( 32 << 20 ))
SPEC=512/20:4k/60:64k/20,1536,16M
make_image "$T/src.raw" raw $SZ
cp "$T/src.raw" "$T/dst.raw"
start_nbdkit dst $(plugin_for "$T/dst.raw")
serve_mirrored src "$T/src.raw"
mctl start --sync none --target "$(uri_of dst)" > /dev/null
mctl --json status > "$T/st.json"
[ "$(jget state < "$T/st.json")" = ready ] \
  || { cat "$T/st.json"; fail "sync=none is not ready at once"; }
[ "$(jget sync < "$T/st.json")" = none ] || fail "status does not say sync none"
expect_exit 1 "$VDIMOTION" mirror --control "$CTL" pause
grep -q 'a mirror is running' "$T/err" || fail "pause while mirroring: unclear"
fio_write src 41 $SPEC --rate_iops=4000 || fail "fio through the mirror failed"
mctl --json status > "$T/st.json"
[ "$(jget state < "$T/st.json")" = ready ] || fail "not ready after the writes"
[ "$(jget bytes_copied < "$T/st.json")" = 0 ] \
  && [ "$(jget bytes_zeroed < "$T/st.json")" = 0 ] \
  || { cat "$T/st.json"; fail "sync=none copied something"; }
[ "$(jget writes_mirrored < "$T/st.json")" -gt 0 ] || fail "no write mirrored"
mctl complete > /dev/null
mstop src
mstop dst
"$VDIMOTION" compare -q "$T/src.raw" "$T/dst.raw" || fail "the target differs"
start_nbdkit dst $(plugin_for "$T/dst.raw")
fio_verify dst 41 $SPEC || fail "fio verify over the target"
echo "ok: sync=none mirrored $(jget writes_mirrored < "$T/st.json") writes, copied nothing"
