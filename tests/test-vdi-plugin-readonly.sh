#!/bin/sh
# nbdkit vdi file=IMAGE readonly=true serves the image read-only: the
# export says so, clients that try to write (qemu-io) fail, a client that
# skips its own checks and sends writes, zeroes and trims anyway (libnbd
# with strict mode off) gets them refused, reads still work, and not a
# byte of the image or its parents changes.
. "$srcdir/functions.sh"
uses_nbdkit_module
. "$srcdir/copy-sources.sh"   # start_nbdkit
requires nbdkit
requires nbdcopy
requires nbdinfo
requires qemu-img
requires qemu-io
PLUGIN=$top_builddir/sr-drivers/.libs/nbdkit-vdi-plugin.so
[ -f "$PLUGIN" ] || skip "$PLUGIN not built"

cd "$T"
URI="nbd+unix:///?socket=$T/vdi.sock"
truncate -s 6M old.raw
write_pattern old.raw 1 0 $(( 5 << 20 ))
cp old.raw plain.raw
qemu-img convert -O vpc -o subformat=dynamic,force_size=on old.raw parent.vhd
"$VDIMOTION" create -f vhd -b parent.vhd diff.vhd
qemu-img convert -O qcow2 old.raw base.qcow2
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 chain.qcow2
qemu-io -f qcow2 -c 'write -P 0x41 1M 64k' chain.qcow2 > /dev/null
qemu_raw chain.qcow2 chain.ref
cp old.raw diff.ref
cp old.raw plain.ref

# libnbd's python binding, if installed, can send what a read-only
# export must refuse.
# (Debian's python3-libnbd lives in the system python.)
nbd_py=
for py in python3 /usr/bin/python3; do
  if "$py" -c 'import nbd' 2>/dev/null; then nbd_py=$py; break; fi
done

for img in plain.raw diff.vhd chain.qcow2; do
  sums=$(md5sum *.raw *.vhd *.qcow2)
  start_nbdkit vdi "$PLUGIN" "file=$T/$img" readonly=true
  nbdinfo --is read-only "$URI" || fail "$img: export is not read-only"
  for cmd in 'write -P 0x77 0 4k' 'write -z 0 64k' 'discard 0 64k'; do
    if qemu-io -f raw -c "$cmd" "$URI" > qemu-io.out 2>&1; then
      ! grep -q '^wrote\|^discard' qemu-io.out \
        || { cat qemu-io.out; fail "$img: qemu-io $cmd succeeded"; }
    fi
  done
  if [ -n "$nbd_py" ]; then
    "$nbd_py" - "$URI" <<'PY' || fail "$img: a write went through"
import errno, nbd, sys
h = nbd.NBD()
h.set_strict_mode(0)  # send what the server should refuse
h.connect_uri(sys.argv[1])
for name, op in (("pwrite", lambda: h.pwrite(b"x" * 4096, 0)),
                 ("zero", lambda: h.zero(65536, 0)),
                 ("trim", lambda: h.trim(65536, 0)),
                 ("pwrite fua", lambda: h.pwrite(b"y" * 512, 4096,
                                                 nbd.CMD_FLAG_FUA))):
    try:
        op()
    except nbd.Error as e:
        assert e.errnum in (errno.EPERM, errno.EROFS, errno.EINVAL), (name, e)
    else:
        sys.exit(name + " was accepted")
h.flush() if h.can_flush() else None
h.shutdown()
PY
  else
    echo "python3-libnbd not installed: raw refused-write checks skipped"
  fi
  nbdcopy "$URI" dump.raw
  cmp dump.raw "${img%.*}.ref" || fail "$img: read-only export reads something else"
  stop_nbdkit vdi
  [ "$(md5sum *.raw *.vhd *.qcow2 | grep -v dump.raw)" = "$(echo "$sums" | grep -v dump.raw)" ] \
    || fail "$img: an image file changed"
  rm -f dump.raw
  echo "ok: $img"
done

# readonly=false is the default: the same export is writable.
start_nbdkit vdi "$PLUGIN" "file=$T/chain.qcow2" readonly=false
nbdinfo --can write "$URI" || fail "readonly=false: not writable"
stop_nbdkit vdi
expect_exit 1 nbdkit "$PLUGIN" "file=$T/chain.qcow2" readonly=maybe --run true
grep -q 'maybe' "$T/err" || { cat "$T/err"; fail "readonly=maybe: no message"; }
echo PASS
