#!/bin/sh
# start sync=top (an evacuation's live leaf): the disk is a qcow2 leaf
# over a parent full of data; the target is a new leaf over a copy of
# that parent.  fio writes through the filter before the mirror starts
# (blocks only the top layer holds, the copier owes them) and while it
# syncs (mirrored).  After
# complete the target leaf reads the same as the source leaf (compared
# byte for byte, and fio's verify over the target is clean), and the
# target leaf's own map holds only clusters the source's top layer holds
# (its own blocks plus fio's writes): the parent's data was neither read
# nor written.  The file plugin, which cannot map a layer alone, is
# refused with a message that says so.
. "$srcdir/functions.sh"
uses_nbdkit_module
. "$top_srcdir/mirror-filter/test-functions.sh"
requires qemu-img
requires qemu-io
[ -f "$VDI_PLUGIN" ] || skip "nbdkit-vdi-plugin not built"

SZ=$(( 32 << 20 ))
SPEC0=4k,16M,2M
SPEC=4k,20M,4M
make_image "$T/fill.qcow2" qcow2 $SZ
mv "$T/fill.qcow2" "$T/base.qcow2"
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 "$T/leaf.qcow2"
# The top layer's own blocks: data, and a zero cluster that hides the
# parent's data (the target must zero it, not skip it).
qemu-io -f qcow2 -c 'write -P 0x5a 1M 1536K' -c 'write -P 0xa5 6M 64K' \
  -c 'write -z 28M 256K' "$T/leaf.qcow2" > /dev/null
cp "$T/base.qcow2" "$T/base2.qcow2"
qemu-img create -q -f qcow2 -b base2.qcow2 -F qcow2 "$T/leaf2.qcow2"

start_nbdkit dst "$VDI_PLUGIN" file="$T/leaf2.qcow2"
serve_mirrored src "$T/leaf.qcow2"
# Written before start: only the top layer holds it, the copier owes it.
fio_write src 30 $SPEC0 || fail "fio before the mirror"
fio_write src 31 $SPEC --rate_iops=1000000,2000 &
fpid=$!
sleep 0.3
mctl start --sync top --target "$(uri_of dst)" > /dev/null
wait "$fpid" || fail "fio through the mirror failed"
wait_state ready
mctl --json status > "$T/st.json"
[ "$(jget sync < "$T/st.json")" = top ] || fail "status does not say sync top"
[ "$(jget error < "$T/st.json")" = None ] || fail "error in status"
copied=$(jget bytes_copied < "$T/st.json")
backing=$(jget bytes_backing < "$T/st.json")
[ "$backing" -gt $(( 16 << 20 )) ] \
  || { cat "$T/st.json"; fail "the parent's ranges were not left alone"; }
[ "$copied" -ge $(( 1536 << 10 )) ] && [ "$copied" -lt $(( 12 << 20 )) ] \
  || { cat "$T/st.json"; fail "copied $copied bytes: more than the top layer"; }
mctl complete > /dev/null
mstop src
mstop dst

"$VDIMOTION" compare -q "$T/leaf.qcow2" "$T/leaf2.qcow2" \
  || fail "the target leaf reads differently from the source leaf"
qemu-img compare -q "$T/leaf.qcow2" "$T/leaf2.qcow2" \
  || fail "qemu-img compare: the leaves differ"
start_nbdkit dst "$VDI_PLUGIN" file="$T/leaf2.qcow2"
fio_verify dst 30 $SPEC0 || fail "fio verify over the target (before start)"
fio_verify dst 31 $SPEC || fail "fio verify over the target"
mstop dst

# The target leaf's own clusters are a subset of the source leaf's, and
# they hold the top layer's own data and fio's region.
qemu-img map --output=json "$T/leaf.qcow2" > "$T/src.map"
qemu-img map --output=json "$T/leaf2.qcow2" > "$T/dst.map"
python3 - "$T/src.map" "$T/dst.map" <<'PY' || fail "the target leaf's map"
import json, sys
C = 65536
def own(path):
    s = set()
    for e in json.load(open(path)):
        if e["depth"] == 0 and e["present"]:
            s.update(range(e["start"] // C, (e["start"] + e["length"]) // C))
    return s
src, dst = own(sys.argv[1]), own(sys.argv[2])
extra = dst - src
if extra:
    sys.exit("the target leaf holds %d clusters the source's top layer does not (first at %d)"
             % (len(extra), min(extra) * C))
need = set(range((1 << 20) // C, (1 << 20) // C + 24)) | {(6 << 20) // C}
if need - dst:
    sys.exit("the target leaf misses the top layer's data at cluster %d" % min(need - dst))
print("target leaf: %d own clusters, source top layer: %d" % (len(dst), len(src)))
PY
echo "ok: sync=top copied $copied bytes, left $backing to the parent"

# A plugin that cannot map the top layer alone is refused.
make_image "$T/plain.raw" raw $(( 4 << 20 ))
make_empty "$T/plain-dst.raw" raw $(( 4 << 20 ))
start_nbdkit pdst file "$T/plain-dst.raw"
start_nbdkit psrc --filter="$FILTER" file "$T/plain.raw" mirror-control="$T/p.ctl"
expect_exit 1 "$VDIMOTION" mirror --control "$T/p.ctl" start --sync top \
  --target "$(uri_of pdst)"
grep -q 'does not map the top layer alone' "$T/err" \
  || { cat "$T/err"; fail "sync=top on the file plugin: unclear error"; }
expect_exit 2 "$VDIMOTION" mirror --control "$T/p.ctl" start --sync half \
  --target "$(uri_of pdst)"
grep -q 'full, top or none' "$T/err" || fail "a bad --sync: unclear error"
echo "ok: sync=top refused where the plugin cannot map a layer"
