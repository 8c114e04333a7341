#!/bin/sh
# Cross-host live migration between two vdimotiond (HTTPS, loopback):
# the migrate_receive → migrate token exchange in both spellings, fio
# writing the whole time, tokens refused, and failures (migrator exits 1,
# cancel, destination killed) that leave the VM running on the source
# with nothing left on the destination.
. "$srcdir/functions.sh"
. "$srcdir/xapi-functions.sh"
requires fio
requires nbdkit
requires_vm_disks

tls_setup
start_peer $tls
# vdimotion-mm-none: the "guest" is fio, outside vdimotion's view; the
# script says when it has stopped writing (options["handover-file"]).
start_vdimotiond $tls \
  --memory-migrator "$top_builddir/memory-migrators/vdimotion-mm-none"

python3 "$srcdir/xapi-migrate.py" "$https_url" "$peer_https_url" \
  "$T/cert.pem" "$T" || fail "migration"

# The destination killed while a migration waits in its handover: after
# its restart it drops the migration, the source undoes its side.
{ read vm; read sock; read task; read before; } < "$T/hanging"
kill -9 "$peer_pid"
wait "$peer_pid" 2>/dev/null || :
start_peer $tls
python3 - "$https_url" "$peer_https_url" "$T/cert.pem" "$vm" "$sock" \
  "$task" "$before" <<'PY'
import ssl, subprocess, sys, time, xmlrpc.client
src, dst, ca, vm, sock, task, before = sys.argv[1:8]
ctx = ssl.create_default_context(cafile=ca)
ctx.check_hostname = False
x = xmlrpc.client.ServerProxy(src, context=ctx)
s = x.session.login_with_password("root", "secret")["Value"]
for _ in range(1200):
    t = x.task.get_record(s, task)["Value"]
    if t["status"] != "pending":
        break
    time.sleep(0.05)
assert t["status"] == "failure", t
print("destination killed: the task says", t["error_info"][-1])
assert x.VM.get_power_state(s, vm)["Value"] == "Running"
assert subprocess.call(["nbdcopy", "nbd+unix:///?socket=" + sock,
                        "null:"]) == 0
r = xmlrpc.client.ServerProxy(dst, context=ctx)
rs = r.session.login_with_password("root", "secret")["Value"]
n = len(r.VDI.get_all(rs)["Value"])
assert n == int(before), (n, before)
PY
[ $? -eq 0 ] || fail "after the destination's restart"

# The token's secret never reaches a log.
secret=$(cat "$T/secret")
! grep -q "$secret" "$T/vdimotiond.log" "$T/peer/vdimotiond.log" \
    "$T"/peer/vdimotiond-earlier.log || fail "a log holds the secret"
stop_vdimotiond
