#!/bin/sh
# Nothing lost under load: fio random writes (crc32c verify) through the
# mirror filter while it syncs to a second nbdkit; complete; the target
# image compares equal to the source and fio's verify pass over the
# target is clean.  Several seeds, block sizes from 512 B to 1 MiB,
# unaligned offsets, two granularities, every format the servers can
# serve (raw always; VHD and qcow2 through the vdi plugin).
. "$srcdir/functions.sh"
uses_nbdkit_module
. "$top_srcdir/mirror-filter/test-functions.sh"

SZ=$(( 32 << 20 ))
formats=raw
[ -f "$VDI_PLUGIN" ] && formats="raw vhd qcow2"

# seed  spec(bs,offset,size)                             granularity
cases=${MIRROR_CASES:-"1 4k,0,8M 64K
2 512/20:4k/40:64k/20:256k/10:1m/10,1536,24M 64K
3 512,3584,1M 4K
4 1m,512,24M 1M"}

for fmt in $formats; do
  echo "$cases" | while read seed spec gran; do
    src=$T/src.$fmt dst=$T/dst.$fmt
    make_image "$src" "$fmt" $SZ
    make_empty "$dst" "$fmt" $SZ
    start_nbdkit dst $(plugin_for "$dst")
    serve_mirrored src "$src" mirror-granularity="$gran" mirror-timeout=10

    # Writes start first; the mirror starts under them and must copy
    # while they land: fio passes over its range again and again (the
    # same blocks) until the mirror has mirrored guest writes, however
    # long its start took.
    rm -f "$T/stop-fio"
    repeat_until "$T/stop-fio" \
      fio_write src "$seed" "$spec" --rate_iops=1000000,4000 &
    fpid=$!
    sleep 0.1 # a head start
    mctl start --target "$(uri_of dst)" > /dev/null
    saw=$(mstate)
    wait_for 120 eval '[ "$(mctl --json status | jget writes_mirrored)" -gt 0 ]' \
      || fail "$fmt seed $seed: no write mirrored in 2 minutes"
    touch "$T/stop-fio"
    wait "$fpid" || fail "$fmt seed $seed: fio through the mirror failed"
    wait_state ready
    mctl --json status > "$T/st.json"
    [ "$(jget error < "$T/st.json")" = None ] || fail "error in status"
    w=$(jget writes_mirrored < "$T/st.json")
    [ "$w" -gt 0 ] || fail "$fmt seed $seed: no write was mirrored"
    mctl complete > /dev/null
    [ "$(mstate)" = completed ] || fail "not completed"
    mstop src
    mstop dst

    "$VDIMOTION" compare -q "$src" "$dst" \
      || fail "$fmt seed $seed ($spec, granularity $gran): target differs"
    start_nbdkit dst $(plugin_for "$dst")
    fio_verify dst "$seed" "$spec" \
      || fail "$fmt seed $seed: fio verify over the target"
    mstop dst
    echo "ok: $fmt seed $seed bs ${spec%%,*} granularity $gran" \
         "(state when started: $saw, $w writes mirrored)"
    rm -f "$src" "$dst"
  done
done
