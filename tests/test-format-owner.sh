#!/bin/sh
# A disk's format is its owner's word, never a guess from bytes a guest
# wrote.  A raw base whose guest wrote a qcow2 header naming a host file,
# or a VHD footer at its end, under a qcow2 child that records "raw" as
# its backing format: info, map, copy and compare read the raw base's
# bytes exactly as qemu does.  -f says a top layer's format; without it
# a guessed raw layer is warned about.  create -b records the backing
# format (-F, or the parent's).  nbdkit-vdi-plugin with format= serves
# the raw bytes, and with confine= refuses a chain that leaves the
# directory or whose backing format is not recorded.
. "$srcdir/functions.sh"
. "$srcdir/guest-headers.sh"
requires qemu-img
requires qemu-io
cd "$T"

echo "host secret" > "$T/host-file"
size=$((4 * 1024 * 1024))
guest_qcow2_header qhdr.raw $size "$T/host-file"
guest_vhd_footer vftr.raw $size

for base in qhdr.raw vftr.raw; do
  qemu-img create -q -f qcow2 -b "$base" -F raw "top-$base.qcow2"
  # qemu's reading of the chain: the raw base's bytes.
  qemu-img convert -f qcow2 -O raw "top-$base.qcow2" "qemu-$base"
  cmp "qemu-$base" "$base" || fail "$base: qemu itself reads other bytes"

  "$VDIMOTION" info "top-$base.qcow2" > info.txt
  grep -q '^backing file format: raw$' info.txt || { cat info.txt; fail "$base: info"; }
  [ "$(grep -c '^file format: raw$' info.txt)" -eq 1 ] || { cat info.txt; fail "$base: base not raw"; }
  "$VDIMOTION" info --json "top-$base.qcow2" | grep -q '"backing-filename-format": "raw"' \
    || fail "$base: info --json"
  # The map: the base's one written run is its only data.
  "$VDIMOTION" map --json "top-$base.qcow2" > map.json
  ! grep -q '"depth": 2' map.json || fail "$base: map goes three layers deep"

  "$VDIMOTION" copy "top-$base.qcow2" "out-$base" 2> err
  cmp "out-$base" "$base" || fail "$base: copy served other bytes"
  ! grep -q warning err || { cat err; fail "$base: copy warned about a recorded format"; }
  "$VDIMOTION" copy -O qcow2 "top-$base.qcow2" "out-$base.qcow2"
  qemu-img compare -q -f raw -F qcow2 "$base" "out-$base.qcow2" \
    || fail "$base: copy into qcow2 differs"
  "$VDIMOTION" compare -f qcow2 -F raw "top-$base.qcow2" "$base" > /dev/null \
    || fail "$base: compare with -f and -F"
  echo "ok: $base under a qcow2 child reads as raw"
done
grep -q "host secret" out-qhdr.raw && fail "the host file was served"

# -f: the user's word for a top layer.  Without it, a file guessed raw
# is warned about; with it, not.
"$VDIMOTION" info -f raw qhdr.raw | grep -q '^file format: raw$' || fail "info -f raw"
"$VDIMOTION" copy -f raw qhdr.raw f.raw 2> err
cmp f.raw qhdr.raw || fail "copy -f raw"
! grep -q warning err || fail "copy -f raw warned"
truncate -s 1M plain.raw
"$VDIMOTION" info plain.raw > /dev/null 2> err
grep -q 'warning: the format of plain.raw was not given and probing guessed raw$' err \
  || { cat err; fail "no warning for a guessed raw image"; }
expect_exit 2 "$VDIMOTION" info -f vmdk plain.raw
grep -q 'unknown format "vmdk"' "$T/err" || fail "-f vmdk"
# -f vhd on a raw disk: refused, not served as something else.
expect_exit 1 "$VDIMOTION" copy -f vhd plain.raw x.raw
grep -q 'vhd: plain.raw' "$T/err" || fail "copy -f vhd of a raw file"

# create -b records the backing format: -F's, or the parent's.
"$VDIMOTION" create -f qcow2 -b qhdr.raw -F raw c1.qcow2
qemu-img info c1.qcow2 | grep -q '^backing file format: raw' || fail "create -F raw"
qemu-img compare -q -f qcow2 -F raw c1.qcow2 qhdr.raw || fail "create -F raw: data"
qemu-img create -q -f vpc -o subformat=dynamic p.vhd 8M
"$VDIMOTION" create -f qcow2 -b p.vhd -F vhd c2.qcow2
qemu-img info c2.qcow2 | grep -q '^backing file format: vpc' || fail "create -b VHD"
expect_exit 2 "$VDIMOTION" create -f qcow2 -b p.vhd -F nbd c3.qcow2
# As qemu-img: no -F, no qcow2 child (its record would be a guess).
expect_exit 1 "$VDIMOTION" create -f qcow2 -b qhdr.raw c4.qcow2
grep -q 'without backing format (-F): it looks like qcow2' "$T/err" || fail "create -b without -F"
[ ! -e c4.qcow2 ] || fail "create -b without -F made an image"
expect_exit 2 "$VDIMOTION" create -f qcow2 -F raw c5.qcow2 1M
expect_exit 1 "$VDIMOTION" create -f vhd -b p.vhd -F raw c6.vhd
grep -q "parent is a VHD" "$T/err" || fail "create -f vhd -F raw"
"$VDIMOTION" create -f vhd -b p.vhd c7.vhd   # a VHD's parent is a VHD
# copy --keep-chain records each layer's backing format.
mkdir kc
"$VDIMOTION" copy --keep-chain "top-qhdr.raw.qcow2" kc/top.qcow2
qemu-img info kc/top.qcow2 | grep -q '^backing file format: qcow2' \
  || fail "copy --keep-chain: no backing format recorded"
qemu-img compare -q -f qcow2 -F raw kc/top.qcow2 qhdr.raw || fail "copy --keep-chain: data"

# A recorded backing format nobody reads, and a mismatched one.
qemu-img create -q -f qcow2 -b p.vhd -F vmdk bad-fmt.qcow2 8M 2>/dev/null \
  || qemu-img create -q -f qcow2 -u -b p.vhd -F vmdk bad-fmt.qcow2 8M
expect_exit 1 "$VDIMOTION" info bad-fmt.qcow2
grep -q 'backing format "vmdk" is not supported' "$T/err" || { cat "$T/err"; fail "vmdk backing"; }
qemu-img create -q -f qcow2 -u -b p.vhd -F qcow2 wrong-fmt.qcow2 8M
expect_exit 1 "$VDIMOTION" info wrong-fmt.qcow2
grep -q 'qcow2: .*p.vhd' "$T/err" || { cat "$T/err"; fail "a VHD opened as the recorded qcow2"; }
echo "ok: -f, -F, warnings and recorded backing formats"

# nbdkit-vdi-plugin: format= and confine=.
if [ -z "${VDM_SANITIZED:-}" ] && command -v nbdkit > /dev/null \
   && command -v nbdcopy > /dev/null; then
  PLUGIN=$top_builddir/sr-drivers/.libs/nbdkit-vdi-plugin.so
  serve_copy () # serve_copy OUT PARAMS...: nbdcopy the export into OUT
  {
    out=$1; shift
    nbdkit -U - "$PLUGIN" "$@" --run "nbdcopy \"\$uri\" $out" 2> "$T/err"
  }
  serve_copy p1.raw file=qhdr.raw format=raw
  cmp p1.raw qhdr.raw || fail "plugin format=raw served other bytes"
  ! grep -q warning "$T/err" || fail "plugin warned with format="
  serve_copy p2.raw file=top-vftr.raw.qcow2 format=qcow2 confine="$T"
  cmp p2.raw vftr.raw || fail "plugin: qcow2 over a raw base"
  serve_copy p3.raw file=plain.raw
  grep -q 'probing guessed raw' "$T/err" || fail "plugin: no warning for a guessed raw image"
  # Out of the directory: the backing file is elsewhere.
  mkdir -p sr other
  cp qhdr.raw other/base.raw
  qemu-img create -q -f qcow2 -b ../other/base.raw -F raw sr/leaf.qcow2
  expect_exit 1 nbdkit -U "$T/x.sock" "$PLUGIN" file=sr/leaf.qcow2 format=qcow2 confine=sr
  grep -q 'not a raw image.s name directly in' "$T/err" || { cat "$T/err"; fail "plugin: chain left confine="; }
  # Inside, but the backing format is not recorded: no guessing there.
  cp qhdr.raw sr/base.raw
  qemu-img create -q -f qcow2 -u -b base.raw -F raw sr/nofmt.qcow2 4M
  # qemu-img no longer writes such images: turn the backing-format
  # extension into one of a type nobody knows (readers skip those).
  python3 - sr/nofmt.qcow2 <<'PY'
import sys
p = sys.argv[1]
d = bytearray(open(p, "rb").read())
i = d.index(bytes.fromhex("e2792aca"), 0, 4096)
d[i:i + 4] = bytes.fromhex("0badf00d")
open(p, "wb").write(d)
PY
  expect_exit 1 nbdkit -U "$T/x.sock" "$PLUGIN" file=sr/nofmt.qcow2 format=qcow2 confine=sr
  grep -q 'format is not recorded' "$T/err" || { cat "$T/err"; fail "plugin: probed in confine="; }
  expect_exit 1 nbdkit -U "$T/x.sock" "$PLUGIN" file=sr/base.raw confine=sr
  grep -q 'needs format=' "$T/err" || fail "plugin: confine= without format="
  expect_exit 1 nbdkit -U "$T/x.sock" "$PLUGIN" file=sr/base.raw format=vmdk
  echo "ok: nbdkit-vdi-plugin format= and confine="
fi
