# Sourced by the copy tests: builds the source images of the copy matrix
# in $T/src, each with a raw reference of its guest-visible bytes made by an
# independent reader (qemu-img, or libvhdi for VHD chains).
#   make_sources        -> $T/src/{NAME}.{raw,vhd,qcow2} and $T/src/NAME.ref
#   SOURCES             -> the names

SIZE=$(( (67 << 20) + 7 * 512 ))   # not a multiple of any block size

# pattern SEED LENGTH: deterministic random bytes on stdout.
pattern ()
{
  python3 -c "import random,sys; sys.stdout.buffer.write(random.Random($1).randbytes($2))"
}

make_sources ()
{
  s=$T/src
  mkdir -p "$s"
  # A sparse raw disk: scattered data, a written-zero range, data at the
  # very end, a piece straddling a 2 MiB boundary.
  "$VDIMOTION" create -f raw "$s/plain.raw" $SIZE
  for spec in 1:0:65536 2:3145728:1048576 3:$(( (4 << 20) - 3000 )):9000 \
              4:$(( 40 << 20 )):2097152 5:$(( SIZE - 4096 )):4096; do
    IFS=: read seed off len <<EOF2
$spec
EOF2
    pattern "$seed" "$len" | dd of="$s/plain.raw" bs=64k seek="$off" \
      oflag=seek_bytes conv=notrunc status=none
  done
  dd if=/dev/zero of="$s/plain.raw" bs=64k seek=$(( 20 << 20 )) count=16 \
    oflag=seek_bytes conv=notrunc status=none
  cp "$s/plain.raw" "$s/plain.ref"

  qemu-img convert -O vpc -o subformat=dynamic,force_size=on "$s/plain.raw" "$s/dynamic.vhd"
  cp "$s/plain.ref" "$s/dynamic.ref"
  qemu-img convert -O vpc -o subformat=fixed,force_size=on "$s/plain.raw" "$s/fixed.vhd"
  cp "$s/plain.ref" "$s/fixed.ref"
  qemu-img convert -O qcow2 "$s/plain.raw" "$s/plain.qcow2"
  cp "$s/plain.ref" "$s/qcow2.ref"

  # A VHD differencing chain written through libvdisk; libvhdi reads the
  # reference.
  "$VDIMOTION" create -f vhd "$s/dbase.vhd" $SIZE
  pattern 11 $(( 6 << 20 )) | "$VDISK_WRITE" "$s/dbase.vhd" 0
  "$VDIMOTION" create -f vhd -b dbase.vhd "$s/dmid.vhd"
  pattern 12 $(( 1 << 20 )) | "$VDISK_WRITE" "$s/dmid.vhd" $(( 5 << 20 ))
  pattern 13 1000 | "$VDISK_WRITE" "$s/dmid.vhd" $(( 30 << 20 ))
  "$VDIMOTION" create -f vhd -b dmid.vhd "$s/diff.vhd"
  pattern 14 70000 | "$VDISK_WRITE" "$s/diff.vhd" $(( (2 << 20) - 512 ))
  "$VDISK_WRITE" --zero "$s/diff.vhd" $(( 1 << 20 )) 65536
  "$VHDI_CAT" "$s/diff.vhd" "$s/diff.ref"

  # A qcow2 backing chain written by qemu.
  qemu-img convert -O qcow2 "$s/plain.raw" "$s/qbase.qcow2"
  qemu-img create -q -f qcow2 -b qbase.qcow2 -F qcow2 "$s/chain.qcow2"
  qemu-io -f qcow2 -c 'write -P 0x61 1M 3M' -c 'write -z 40M 1M' \
    -c 'write -P 0x62 50M 4k' "$s/chain.qcow2" > /dev/null
  qemu-img convert -O raw "$s/chain.qcow2" "$s/chain.ref"
}
SOURCES="plain.raw dynamic.vhd fixed.vhd diff.vhd plain.qcow2 chain.qcow2"

ref_of ()
{
  case $1 in
    plain.raw) echo "$T/src/plain.ref" ;;
    plain.qcow2) echo "$T/src/qcow2.ref" ;;
    *) echo "$T/src/${1%.*}.ref" ;;
  esac
}

# data_bytes IMAGE: bytes the flattened map calls data.
data_bytes ()
{
  "$VDIMOTION" map --json "$1" | python3 -c \
    'import json,sys; print(sum(e["length"] for e in json.load(sys.stdin) if e["data"]))'
}

# Every nbdkit started here is stopped when the test exits, however it
# exits.
kill_all_nbdkit () { for p in "$T"/*.pid; do [ -s "$p" ] && kill "$(cat "$p")"; done 2>/dev/null; :; }
cleanup_fn kill_all_nbdkit

# start_nbdkit NAME PLUGIN ARGS...: serve on $T/NAME.sock until the test
# ends.  nbdkit writes its pid file once it listens; under the sanitizers
# on a loaded machine that takes seconds, so the wait is long (and ends
# at once if nbdkit exits).
nbdkit_up () { [ -S "$T/$1.sock" ] && [ -s "$T/$1.pid" ]; }
nbdkit_up_or_gone () { nbdkit_up "$1" || gone "$2"; }
start_nbdkit ()
{
  name=$1; shift
  nbdkit -U "$T/$name.sock" -P "$T/$name.pid" -f "$@" > "$T/$name.log" 2>&1 &
  wait_for 120 nbdkit_up_or_gone "$name" $! && nbdkit_up "$name" && return 0
  cat "$T/$name.log" >&2
  fail "nbdkit $name did not start"
}
# Stop it and wait until the process is gone (so the image is flushed and
# closed; under ASan the leak check at exit takes a while); nbdkit 1.32
# leaves its socket behind, so that is no sign.
stop_nbdkit ()
{
  if [ -s "$T/$1.pid" ]; then
    pid=$(cat "$T/$1.pid")
    kill "$pid" 2>/dev/null || :
    wait_for 120 gone "$pid" \
      || fail "nbdkit $1 (pid $pid) did not exit"
  fi
  rm -f "$T/$1.sock" "$T/$1.pid"
}
