#!/bin/bash
# The copy correctness matrix: {raw, VHD dynamic, fixed, differencing
# chain, qcow2, qcow2 chain} x {raw, VHD, qcow2, NBD to nbdkit memory,
# NBD to nbdkit file}.  Every result reads identical to an independent
# reader's view of the source, passes the format's checker, and stays
# sparse.
. "$srcdir/functions.sh"
. "$srcdir/copy-sources.sh"
requires qemu-img
requires nbdkit
requires nbdcopy

make_sources
for src in $SOURCES; do
  ref=$(ref_of "$src")
  data=$(data_bytes "$T/src/$src")
  for dst in raw vhd qcow2; do
    out="$T/out.$dst"
    rm -f "$out"
    "$VDIMOTION" copy --json "$T/src/$src" "$out" > "$T/json"
    python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); assert j["bytes-read"] > 0' "$T/json"
    "$VDIMOTION" compare -q "$out" "$ref" || fail "$src -> $dst: vdimotion compare"
    fmt=$dst; [ $dst = vhd ] && fmt=vpc
    qemu-img compare -q -f raw -F "$fmt" "$ref" "$out" || fail "$src -> $dst: qemu-img compare"
    case $dst in
      qcow2) qemu-img check -q "$out" || fail "$src -> qcow2: qemu-img check" ;;
      vhd) "$VHDI_CAT" "$out" "$T/vhdi.raw" && cmp -s "$T/vhdi.raw" "$ref" \
             || fail "$src -> vhd: libvhdi reads something else" ;;
    esac
    # Sparse: no more than the source's data, plus metadata.
    alloc=$(( $(stat -c %b "$out") * 512 ))
    limit=$(( data + data / 8 + (4 << 20) ))
    [ "$alloc" -le "$limit" ] || fail "$src -> $dst: $alloc bytes allocated for $data of data"
  done

  # NBD destinations.
  start_nbdkit mem memory "$SIZE"
  "$VDIMOTION" copy "$T/src/$src" "nbd+unix:///?socket=$T/mem.sock"
  nbdcopy "nbd+unix:///?socket=$T/mem.sock" "$T/back.raw"
  stop_nbdkit mem
  cmp -s "$T/back.raw" "$ref" || fail "$src -> nbdkit memory"
  rm -f "$T/back.raw"

  rm -f "$T/file.raw"; truncate -s "$SIZE" "$T/file.raw"
  # Not-zero to start with: the copy must zero what the source does not hold.
  pattern 99 1048576 | dd of="$T/file.raw" bs=64k seek=$(( 60 << 20 )) oflag=seek_bytes conv=notrunc status=none
  start_nbdkit file file "$T/file.raw"
  "$VDIMOTION" copy --connections 4 "$T/src/$src" "nbd+unix:///?socket=$T/file.sock"
  stop_nbdkit file
  cmp -s "$T/file.raw" "$ref" || fail "$src -> nbdkit file"
  echo "ok: $src -> raw vhd qcow2 nbd-memory nbd-file"
done

# NBD as the source too: nbdkit file -> qcow2.
start_nbdkit srcnbd --readonly file "$T/src/plain.raw"
"$VDIMOTION" copy "nbd+unix:///?socket=$T/srcnbd.sock" "$T/fromnbd.qcow2"
stop_nbdkit srcnbd
"$VDIMOTION" compare -q "$T/fromnbd.qcow2" "$T/src/plain.ref" || fail "nbd -> qcow2"
qemu-img check -q "$T/fromnbd.qcow2" || fail "nbd -> qcow2 check"
echo PASS
