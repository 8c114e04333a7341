#!/bin/bash
# Copy failures say what went wrong, exit 1, and leave no destination the
# copy created: unreadable source, existing destination, full destination,
# dead NBD server, wrong TLS key.
. "$srcdir/functions.sh"
. "$srcdir/copy-sources.sh"
requires qemu-img
requires nbdkit

"$VDIMOTION" create -f raw "$T/s.raw" 64M
pattern 1 $(( 32 << 20 )) | dd of="$T/s.raw" bs=1M conv=notrunc status=none

# Unreadable (corrupt) source: nothing created.
qemu-img convert -O qcow2 "$T/s.raw" "$T/bad.qcow2"
python3 - "$T/bad.qcow2" <<'PY'
import struct, sys
f = open(sys.argv[1], "r+b"); h = f.read(104)
l1 = struct.unpack(">Q", h[40:48])[0]
f.seek(l1); f.write(struct.pack(">Q", (1 << 63) | (1 << 50)))   # L2 far past EOF
PY
expect_exit 1 "$VDIMOTION" copy "$T/bad.qcow2" "$T/out.qcow2"
grep -q 'bad.qcow2' "$T/err" || fail "corrupt source not named"
[ ! -e "$T/out.qcow2" ] || fail "failed copy left its destination"

# Existing destination refused; --overwrite replaces it.
echo keep > "$T/exists.raw"
expect_exit 1 "$VDIMOTION" copy "$T/s.raw" "$T/exists.raw"
grep -q 'already exists' "$T/err" || fail "no 'already exists'"
[ "$(cat "$T/exists.raw")" = keep ] || fail "existing file touched"
"$VDIMOTION" copy --overwrite "$T/s.raw" "$T/exists.raw"
cmp -s "$T/s.raw" "$T/exists.raw" || fail "--overwrite copy differs"

# Bad usage.
expect_exit 2 "$VDIMOTION" copy --requests 0 "$T/s.raw" "$T/x.raw"
expect_exit 2 "$VDIMOTION" copy "$T/s.raw"

# Full destination (NBD: nbdkit full answers every write with ENOSPC).
start_nbdkit full full 64M
expect_exit 1 "$VDIMOTION" copy "$T/s.raw" "nbd+unix:///?socket=$T/full.sock"
grep -qi 'space' "$T/err" || { cat "$T/err"; fail "ENOSPC not reported"; }
stop_nbdkit full

# Full local filesystem, where a small tmpfs can be mounted.
mkdir "$T/small"
if mount -t tmpfs -o size=8m tmpfs "$T/small" 2>/dev/null; then
  umount_small () { umount "$T/small"; }
  cleanup_fn umount_small
  expect_exit 1 "$VDIMOTION" copy "$T/s.raw" "$T/small/out.qcow2"
  grep -qi 'no space left' "$T/err" || { cat "$T/err"; fail "local ENOSPC not reported"; }
  [ ! -e "$T/small/out.qcow2" ] || fail "full copy left its destination"
else
  echo "skipping local ENOSPC: cannot mount a tmpfs here"
fi

# A dead NBD source in the middle of the copy: clear error, no leftovers.
start_nbdkit slow --filter=delay file "$T/s.raw" rdelay=20ms
"$VDIMOTION" copy --requests 1 --request-size 64K "nbd+unix:///?socket=$T/slow.sock" "$T/dead.qcow2" 2> "$T/err" &
pid=$!
sleep 1
kill -9 "$(cat "$T/slow.pid")"
set +e; wait $pid; rc=$?; set -e
[ $rc -eq 1 ] || fail "copy from a dead server exited $rc"
grep -q 'nbd+unix' "$T/err" || { cat "$T/err"; fail "dead server not named"; }
[ ! -e "$T/dead.qcow2" ] || fail "dead-server copy left its destination"

# TLS-PSK: the right key copies, a wrong key is refused clearly.
if nbdkit --dump-config | grep -q '^tls=yes'; then
  printf 'alice:%s\n' "$(head -c 32 /dev/urandom | xxd -p -c 64)" > "$T/keys"
  printf 'alice:%s\n' "$(head -c 32 /dev/urandom | xxd -p -c 64)" > "$T/wrong"
  truncate -s 64M "$T/tls.raw"
  start_nbdkit tls --tls=require --tls-psk="$T/keys" file "$T/tls.raw"
  "$VDIMOTION" copy "$T/s.raw" "nbds+unix://alice@/?socket=$T/tls.sock&tls-psk-file=$T/keys"
  cmp -s "$T/s.raw" "$T/tls.raw" || fail "TLS copy differs"
  expect_exit 1 "$VDIMOTION" copy "$T/s.raw" "nbds+unix://alice@/?socket=$T/tls.sock&tls-psk-file=$T/wrong"
  grep -qi 'connect' "$T/err" || { cat "$T/err"; fail "wrong PSK not reported"; }
  stop_nbdkit tls
fi
echo PASS
