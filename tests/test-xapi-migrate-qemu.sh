#!/bin/sh
# Cross-host migration of a VM that QEMU runs: vdimotiond mirrors its disk
# to the other host, vdimotion-mm-qemu moves the QEMU over QMP onto the
# destination's disk socket; afterwards the destination QEMU runs (on the
# destination's socket), the source QEMU is gone, and the disk's data is
# all there.
. "$srcdir/functions.sh"
. "$srcdir/xapi-functions.sh"
. "$srcdir/mm-functions.sh"
requires qemu-system-x86_64
requires nbdkit
requires nbdcopy
requires_vm_disks

qemus_of_test () { pgrep -d ' ' -f "^[^ ]*qemu-system-x86_64 .*$T/" || :; }
kill_qemus () { for p in $(qemus_of_test); do kill -9 "$p"; done; :; }
cleanup_fn kill_qemus

tls_setup
start_peer $tls
start_vdimotiond $tls --memory-migrator "$MM_QEMU"

api ()
{
  python3 - "$https_url" "$peer_https_url" "$T/cert.pem" "$@" <<'PY'
import ssl, sys, time, xmlrpc.client
src, dst, ca, step = sys.argv[1:5]
ctx = ssl.create_default_context(cafile=ca)
ctx.check_hostname = False
x = xmlrpc.client.ServerProxy(src, context=ctx)
r = xmlrpc.client.ServerProxy(dst, context=ctx)
def ok(v):
    assert v["Status"] == "Success", v
    return v["Value"]
s = ok(x.session.login_with_password("root", "secret"))
if step == "vm":
    sr = ok(x.SR.get_by_name_label(s, "sr1"))[0]
    vdi = ok(x.VDI.create(s, {"SR": sr, "name_label": "q", "virtual_size":
                              str(32 << 20), "sm_config": {"image-format": "qcow2"}}))
    vm = ok(x.VM.create(s, {"name_label": "qvm"}))
    vbd = ok(x.VBD.create(s, {"VM": vm, "VDI": vdi, "userdevice": "0"}))
    ok(x.VM.start(s, vm, False, False))
    print(vm, ok(x.VBD.get_other_config(s, vbd))["nbd-socket"])
elif step == "qmp":
    ok(x.VM.add_to_other_config(s, sys.argv[5], "qmp-socket", sys.argv[6]))
elif step == "migrate":
    rs = ok(r.session.login_with_password("root", "secret"))
    host = ok(r.host.get_all(rs))[0]
    sr = ok(r.SR.get_by_name_label(rs, "sr2"))[0]
    token = ok(r.VM.migrate_receive(rs, host, sr, {}))
    task = ok(x.Async.VM.migrate(s, sys.argv[5], token, True, {}))
    while ok(x.task.get_status(s, task)) == "pending":
        time.sleep(0.1)
    t = ok(x.task.get_record(s, task))
    assert t["status"] == "success", t
    dvm = t["result"][len("<value>"):-len("</value>")]
    rec = ok(r.VM.get_record(rs, dvm))
    assert rec["power_state"] == "Running", rec
    vbd = ok(r.VBD.get_record(rs, rec["VBDs"][0]))
    oc = rec["other_config"]
    print(oc["qmp-socket"], oc["qemu-pid"], vbd["other_config"]["nbd-socket"])
PY
}

set -- $(api vm)
vm=$1 sock=$2
# The disk's data, written through the VM's socket before QEMU attaches.
head -c 8M /dev/urandom > "$T/data"
nbdcopy "$T/data" "nbd+unix:///?socket=$sock"
qemu-system-x86_64 -nodefaults -display none -m 64 \
  -machine pc,accel=tcg -cpu qemu64 \
  -drive "file=nbd+unix:///?socket=$sock,format=raw,if=virtio" \
  -qmp "unix:$T/vm.qmp,server=on,wait=off" > "$T/qemu.log" 2>&1 &
src_qemu=$!
for _ in $(seq 100); do [ -S "$T/vm.qmp" ] && break; sleep 0.1; done
[ -S "$T/vm.qmp" ] || { cat "$T/qemu.log"; fail "QEMU did not start"; }
api qmp "$vm" "$T/vm.qmp"

set -- $(api migrate "$vm") || fail "migration"
dst_qmp=$1 dst_pid=$2 dst_sock=$3
echo "destination QEMU $dst_pid, QMP $dst_qmp, disk $dst_sock"
kill -0 "$dst_pid" || fail "the destination QEMU is not running"
wait "$src_qemu" 2>/dev/null || :
! kill -0 "$src_qemu" 2>/dev/null || fail "the source QEMU still runs"
[ "$(qmp "$dst_qmp" query-status | sed -n 's/.*"status": "\([^"]*\)".*/\1/p')" = running ] \
  || fail "the destination QEMU is not running the guest"
qmp "$dst_qmp" query-block | grep -qF "socket=$dst_sock" \
  || fail "the destination QEMU's drive is not on $dst_sock"
nbdcopy "nbd+unix:///?socket=$dst_sock" "$T/back"
cmp -n 8388608 "$T/data" "$T/back" || fail "the disk's data differs"
qmp "$dst_qmp" quit > /dev/null || :
stop_vdimotiond
