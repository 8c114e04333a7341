#!/bin/sh
# start sync=top (an evacuation's live leaf), for qcow2 and VHD chains:
# the disk is a leaf over a parent full of data; the target is a new
# leaf over a copy of that parent.  fio writes through the filter before
# the mirror starts (blocks only the top layer holds: the copier owes
# them) and while it syncs (mirrored).  After complete the target leaf
# reads the same as the source leaf (compared byte for byte, and fio's
# verify over the target is clean), and the target leaf's own map holds
# only what the source's top layer holds (its own blocks plus fio's
# writes): the parent's data was neither read nor written.  A qcow2 zero
# cluster that hides the parent's data is zeroed on the target.  The
# file plugin, which cannot map a layer alone, is refused with a message
# that says so.
. "$srcdir/functions.sh"
uses_nbdkit_module
. "$top_srcdir/mirror-filter/test-functions.sh"
requires qemu-img
requires qemu-io
[ -f "$VDI_PLUGIN" ] || skip "nbdkit-vdi-plugin not built"

SZ=$(( 32 << 20 ))
SPEC0=4k,16M,2M
SPEC=4k,20M,4M

# own_map IMAGE FMT: the top layer's own map, as JSON.
own_map () { "$VDIMOTION" map -f "$2" --layer --json "$1"; }

for fmt in qcow2 vhd; do
  rm -f "$T"/*."$fmt"
  make_image "$T/base.$fmt" "$fmt" $SZ
  "$VDIMOTION" create -f "$fmt" -b "$T/base.$fmt" -F "$fmt" "$T/leaf.$fmt" \
    > /dev/null
  # The top layer's own blocks.
  start_nbdkit prep "$VDI_PLUGIN" file="$T/leaf.$fmt"
  fio_write prep 29 64k,1M,1536K || fail "$fmt: writing the top layer"
  mstop prep
  # A zero cluster that hides the parent's data.
  [ "$fmt" = qcow2 ] &&
    qemu-io -f qcow2 -c 'write -z 28M 256K' "$T/leaf.$fmt" > /dev/null
  cp "$T/base.$fmt" "$T/base2.$fmt"
  "$VDIMOTION" create -f "$fmt" -b "$T/base2.$fmt" -F "$fmt" \
    "$T/leaf2.$fmt" > /dev/null

  start_nbdkit dst "$VDI_PLUGIN" file="$T/leaf2.$fmt"
  serve_mirrored src "$T/leaf.$fmt"
  # Written before start: only the top layer holds it.
  fio_write src 30 $SPEC0 || fail "$fmt: fio before the mirror"
  fio_write src 31 $SPEC --rate_iops=1000000,2000 &
  fpid=$!
  sleep 0.3
  mctl start --sync top --target "$(uri_of dst)" > /dev/null
  wait "$fpid" || fail "$fmt: fio through the mirror failed"
  wait_state ready
  mctl --json status > "$T/st.json"
  [ "$(jget sync < "$T/st.json")" = top ] || fail "status does not say top"
  [ "$(jget error < "$T/st.json")" = None ] || fail "$fmt: error in status"
  copied=$(jget bytes_copied < "$T/st.json")
  backing=$(jget bytes_backing < "$T/st.json")
  [ "$backing" -gt $(( 16 << 20 )) ] \
    || { cat "$T/st.json"; fail "$fmt: the parent's ranges were copied"; }
  [ "$copied" -lt $(( 12 << 20 )) ] \
    || { cat "$T/st.json"; fail "$fmt: copied more than the top layer"; }
  mctl complete > /dev/null
  mstop src
  mstop dst

  "$VDIMOTION" compare -q -f "$fmt" -F "$fmt" "$T/leaf.$fmt" "$T/leaf2.$fmt" \
    || fail "$fmt: the target leaf reads differently from the source leaf"
  if [ "$fmt" = qcow2 ]; then
    qemu-img compare -q "$T/leaf.$fmt" "$T/leaf2.$fmt" \
      || fail "qemu-img compare: the leaves differ"
  fi
  start_nbdkit dst "$VDI_PLUGIN" file="$T/leaf2.$fmt"
  fio_verify dst 29 64k,1M,1536K || fail "$fmt: the top layer's own data"
  fio_verify dst 30 $SPEC0 || fail "$fmt: fio verify (before start)"
  fio_verify dst 31 $SPEC || fail "$fmt: fio verify over the target"
  mstop dst

  # The target leaf's own sectors are a subset of the source leaf's,
  # and hold the top layer's own blocks.
  own_map "$T/leaf.$fmt" "$fmt" > "$T/src.map"
  own_map "$T/leaf2.$fmt" "$fmt" > "$T/dst.map"
  python3 - "$T/src.map" "$T/dst.map" "$fmt" <<'PY' \
    || fail "$fmt: the target leaf's map"
import json, sys
S = 512
def own(path):
    s = set()
    for e in json.load(open(path)):
        if e["present"]:
            s.update(range(e["start"] // S, (e["start"] + e["length"]) // S))
    return s
src, dst = own(sys.argv[1]), own(sys.argv[2])
extra = dst - src
if extra:
    sys.exit("the target leaf holds %d sectors the source's top layer does not (first at %d)"
             % (len(extra), min(extra) * S))
need = set(range((1 << 20) // S, (1 << 20) // S + 3072))
if sys.argv[3] == "qcow2":
    need |= set(range((28 << 20) // S, (28 << 20) // S + 512))
if need - dst:
    sys.exit("the target leaf misses the top layer's own data at %d" % (min(need - dst) * S))
print("target leaf: %d own sectors, source top layer: %d" % (len(dst), len(src)))
PY
  echo "ok: $fmt: sync=top copied $copied bytes, left $backing to the parent"
done

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
