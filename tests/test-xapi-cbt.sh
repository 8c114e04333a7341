#!/bin/sh
# xapi's changed-block tracking workflow against vdimotiond, from a
# Python script with only xmlrpc.client and libnbd (python3-libnbd):
# enable_cbt, snapshot, get_nbd_info and a read over TLS NBD (X.509, the
# daemon's certificate), writes through the VM's disk, snapshot,
# list_changed_blocks, only the changed blocks read, data_destroy; the
# disk reassembled is identical.  Snapshots with the VM halted, then
# live ones while it runs.  Bad input gets xapi's error codes.
. "$srcdir/functions.sh"
. "$srcdir/xapi-functions.sh"
requires nbdkit
requires_vm_disks
/usr/bin/python3 -c 'import nbd' 2>/dev/null \
  || skip "python3-libnbd is not installed"
tls_setup

# A port range that is not one is refused at start, naming the option.
for bad in 9-2 10809 x-y 1-65536; do
  expect_exit 1 "$VDIMOTIOND" --foreground --listen 127.0.0.1:0 \
    --state-dir "$T/state" --nbd-ports "$bad"
  grep -q "nbd-ports $bad" "$T/err" || fail "--nbd-ports $bad: $(cat "$T/err")"
done

# A range of our own for the NBD exports: other tests run at once.
first=$(( 20000 + $$ % 20000 ))
start_vdimotiond $tls --nbd-ports "$first-$(( first + 15 ))"
for live in 0 1; do
  PYTHONPATH=$srcdir /usr/bin/python3 "$srcdir/xapi-cbt.py" "$url" "$T" \
    "$live" > "$T/out" 2>&1 \
    || { cat "$T/out" "$T/vdimotiond.log"; fail "xapi-cbt.py (live=$live)"; }
  cat "$T/out"
done
# The live snapshots' leaf servers stopped with the VM; every export
# stopped with its session or its data, or with the daemon.
for f in "$T"/state/run/*-leaf.pid; do
  [ -e "$f" ] && fail "a leaf's nbdkit outlived its VM: $f"
done
stop_vdimotiond
for f in "$T"/state/run/nbd-*.pid; do
  [ -e "$f" ] && fail "an NBD export outlived the daemon: $f"
done
:
