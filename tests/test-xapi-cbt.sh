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
# After a kill -9 the daemon's exports are forgotten: the restarted
# daemon stops their nbdkits, and a client asks again in its session
# (sessions survive a restart).
PYTHONPATH=$srcdir /usr/bin/python3 - "$url" > "$T/export.json" <<'EOF'
import json, sys, xmlrpc.client
from xapi_checks import ok
x = xmlrpc.client.ServerProxy(sys.argv[1])
s = ok(x.session.login_with_password("root", "secret", "1.0", "test"))
sr = ok(x.SR.get_by_name_label(s, "sr1"))[0]
vdi = ok(x.VDI.create(s, {"SR": sr, "name_label": "r",
                          "virtual_size": "1048576",
                          "sm_config": {"image-format": "raw"}}))
info = ok(x.VDI.get_nbd_info(s, vdi))[0]
print(json.dumps({"session": s, "vdi": vdi, "info": info}))
EOF
old_pids=$(cat "$T"/state/run/nbd-*.pid)
kill -9 "$vdimotiond_pid"
wait "$vdimotiond_pid" 2>/dev/null || :
start_vdimotiond $tls --nbd-ports "$first-$(( first + 15 ))"
for pid in $old_pids; do
  # Gone, or a zombie its parent has yet to reap.
  st=$(ps -o stat= -p "$pid" 2>/dev/null) && [ "${st#Z}" = "$st" ] \
    && fail "a killed daemon's export $pid runs"
done
PYTHONPATH=$srcdir /usr/bin/python3 - "$url" "$T" <<'EOF'
import json, os, sys, xmlrpc.client
import nbd
from xapi_checks import nbd_connect, ok
x = xmlrpc.client.ServerProxy(sys.argv[1])
T = sys.argv[2]
saved = json.load(open(os.path.join(T, "export.json")))
s, vdi, old = saved["session"], saved["vdi"], saved["info"]
try:
    nbd_connect(T, old)
    raise AssertionError("a killed daemon's export is still served")
except nbd.Error:
    pass
new = ok(x.VDI.get_nbd_info(s, vdi))[0]
assert new["exportname"] != old["exportname"], new
h = nbd_connect(T, new)
assert h.pread(1048576, 0) == bytes(1048576)
h.shutdown()
print("xapi-cbt: a killed daemon's exports stopped; asked again")
EOF

# A live snapshot whose daemon is killed before or after its pivot: the
# next start finishes it (pivoted) or marks the snapshot not frozen, and
# the VM goes on either way.
for point in frozen pivoted; do
  stop_vdimotiond
  VDIMOTIOND_CRASH_AT=live-snapshot-$point \
    start_vdimotiond $tls --nbd-ports "$first-$(( first + 15 ))"
  PYTHONPATH=$srcdir /usr/bin/python3 "$srcdir/xapi-live-snapshot-crash.py" \
    "$url" "$T" start || fail "live snapshot crash ($point): start"
  wait "$vdimotiond_pid" 2>/dev/null || :
  start_vdimotiond $tls --nbd-ports "$first-$(( first + 15 ))"
  PYTHONPATH=$srcdir /usr/bin/python3 "$srcdir/xapi-live-snapshot-crash.py" \
    "$url" "$T" check "$point" \
    || { cat "$T/vdimotiond.log"; fail "live snapshot crash ($point)"; }
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
