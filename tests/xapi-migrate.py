# Driven by test-xapi-migrate.sh: a VM moves between two vdimotiond hosts
# (both on loopback, HTTPS), driven with Python's standard xmlrpc.client
# in the order of the CrossPoolMigration design: log into the remote
# pool, find its SR and host, migrate_receive; log into the local pool,
# find the VM, Async.VM.migrate, poll the task, log out of both.  fio
# writes with crc32c verify into the VM's disk the whole time.
#   xapi-migrate.py SRC_URL DST_URL CA_FILE T
import os
import ssl
import subprocess
import sys
import time
import xmlrpc.client

import xapi_checks
from xapi_checks import failure, ok

src_url, dst_url, ca, T = sys.argv[1:5]
ctx = ssl.create_default_context(cafile=ca)
ctx.check_hostname = False
MiB = 1 << 20
SIZE = 64 * MiB


def proxy(url):
    return xmlrpc.client.ServerProxy(url, context=ctx)


def fio(*args, **kw):
    return xapi_checks.fio(T, *args, **kw)


remote = proxy(dst_url)
local = proxy(src_url)
ls = ok(local.session.login_with_password("root", "secret", "1.0", "t"))
src_srs = {r["name_label"]: ref
           for ref, r in ok(local.SR.get_all_records(ls)).items()}


def make_vm(name, ndisks=1):
    vm = ok(local.VM.create(ls, {"name_label": name,
                                 "other_config": {"origin": "test"}}))
    vdis = []
    for i in range(ndisks):
        vdi = ok(local.VDI.create(ls, {
            "SR": src_srs["sr1"], "name_label": "%s-disk%d" % (name, i),
            "virtual_size": str(SIZE), "other_config": {},
            "sm_config": {"image-format": "qcow2" if i else "vhd"}}))
        ok(local.VBD.create(ls, {"VM": vm, "VDI": vdi,
                                 "userdevice": str(i), "mode": "RW"}))
        vdis.append(vdi)
    ok(local.VM.start(ls, vm, False, False))
    return vm, vdis


sockets = xapi_checks.vbd_sockets


def migrate(call, writers, wait_file):
    """Poll the task (and the writers) until it ends; its record."""
    task = ok(call)
    last = 0.0
    while True:
        t = ok(local.task.get_record(ls, task))
        assert 0 <= t["progress"] <= 1 and t["progress"] >= last - 1e-9, t
        last = t["progress"]
        if wait_file and all(w.poll() is not None for w in writers):
            open(wait_file, "w").close()
        if t["status"] not in ("pending", "cancelling"):
            return t
        time.sleep(0.05)


def result_ref(t):
    assert t["result"].startswith("<value>OpaqueRef:"), t
    return t["result"][len("<value>"):-len("</value>")]


def dst_vdi_count():
    rs2 = ok(remote.session.login_with_password("root", "secret"))
    n = len(ok(remote.VDI.get_all(rs2)))
    ok(remote.session.logout(rs2))
    return n


# 1. The design's spelling, one disk, fio writing the whole time.
vm, vdis = make_vm("vm1")
sock = sockets(local, ls, vm)["0"]
assert fio(sock, 1, 0, SIZE // 2) == 0
rs = ok(remote.session.login_with_password("root", "secret", "1.0", "t"))
sr = ok(remote.SR.get_by_name_label(rs, "sr1"))[0]
host = ok(remote.host.get_all(rs))[0]
token = ok(remote.VM.migrate_receive(rs, host, sr, {}))
assert set(token) >= {"url", "host", "migration", "secret", "expires",
                      "sr", "nbd-address", "tls-cert-sha256"}, token
with open(os.path.join(T, "secret"), "w") as f:
    f.write(token["secret"])
writer = fio(sock, 2, SIZE // 2, SIZE // 2, background=True, rate=800)
time.sleep(0.3)
wait_file = os.path.join(T, "writer-done-1")
t = migrate(local.Async.VM.migrate(ls, vm, token, True,
                                   {"handover-file": wait_file}),
            [writer], wait_file)
assert writer.wait() == 0, "fio failed during the migration"
assert t["status"] == "success", t
dvm = result_ref(t)
ok(local.session.logout(ls))
ls = ok(local.session.login_with_password("root", "secret"))
failure(local.VM.get_record(ls, vm), "HANDLE_INVALID")
failure(local.VDI.get_record(ls, vdis[0]), "HANDLE_INVALID")
rec = ok(remote.VM.get_record(rs, dvm))
assert rec["power_state"] == "Running" and rec["name_label"] == "vm1", rec
assert rec["other_config"] == {"origin": "test"}, rec
dsock = sockets(remote, rs, dvm)["0"]
assert fio(dsock, 1, 0, SIZE // 2, verify_only=True) == 0
assert fio(dsock, 2, SIZE // 2, SIZE // 2, verify_only=True) == 0
dvdi = ok(remote.VBD.get_VDI(rs, ok(remote.VM.get_VBDs(rs, dvm))[0]))
assert ok(remote.VDI.get_SR(rs, dvdi)) == sr
assert "vdimotion-migration" not in ok(remote.VDI.get_other_config(rs, dvdi))
print("design spelling: migrated, %d bytes verified" % SIZE)

# The token is spent: a second migration with it is refused.
vm2, vdis2 = make_vm("vm2", 2)
t = migrate(local.Async.VM.migrate(ls, vm2, token, True, {}), [], None)
assert t["status"] == "failure", t
assert t["error_info"][0] == "VM_MIGRATE_FAILED", t
assert "already used" in t["error_info"][-1], t
# Forged (wrong secret), for another host, expired.
token2 = ok(remote.VM.migrate_receive(rs, host, sr, {}))
forged = dict(token2, secret="0" * 64)
t = migrate(local.Async.VM.migrate(ls, vm2, forged, True, {}), [], None)
assert t["status"] == "failure" and "wrong secret" in t["error_info"][-1], t
other = dict(token2, host="00000000-0000-4000-8000-000000000000")
t = migrate(local.Async.VM.migrate(ls, vm2, other, True, {}), [], None)
assert t["status"] == "failure" and "another host" in t["error_info"][-1], t
short = ok(remote.VM.migrate_receive(rs, host, sr, {"token-lifetime": "1"}))
time.sleep(2.2)
t = migrate(local.Async.VM.migrate(ls, vm2, short, True, {}), [], None)
assert t["status"] == "failure" and "expired" in t["error_info"][-1], t
failure(local.VM.assert_can_migrate(ls, vm2, short, True, {}, {}, {}),
        "MIGRATION_TOKEN_INVALID")
print("tokens: reuse, forged, other host, expired: refused")

# 2. xapi's spelling, two disks split over the destination's SRs.
dsrs = {r["name_label"]: ref
        for ref, r in ok(remote.SR.get_all_records(rs)).items()}
net = ok(remote.network.get_all(rs))[0]
token3 = ok(remote.Host.migrate_receive(rs, host, net, {}))
vdis2_map = {vdis2[0]: dsrs["sr1"], vdis2[1]: dsrs["sr2"]}
ok(local.VM.assert_can_migrate(ls, vm2, token3, True, vdis2_map, {}, {}))
socks = sockets(local, ls, vm2)
writers = [fio(socks["0"], 3, 0, SIZE, background=True, rate=600),
           fio(socks["1"], 4, 0, SIZE, background=True, rate=600)]
wait_file = os.path.join(T, "writer-done-2")
t = migrate(local.Async.VM.migrate_send(ls, vm2, token3, True, vdis2_map,
                                        {}, {"handover-file": wait_file}, {}),
            writers, wait_file)
assert all(w.wait() == 0 for w in writers), "fio failed"
assert t["status"] == "success", t
dvm2 = result_ref(t)
dsocks = sockets(remote, rs, dvm2)
assert fio(dsocks["0"], 3, 0, SIZE, verify_only=True) == 0
assert fio(dsocks["1"], 4, 0, SIZE, verify_only=True) == 0
where = {}
for vbd in ok(remote.VM.get_VBDs(rs, dvm2)):
    r = ok(remote.VBD.get_record(rs, vbd))
    where[r["userdevice"]] = ok(remote.VDI.get_SR(rs, r["VDI"]))
assert where == {"0": dsrs["sr1"], "1": dsrs["sr2"]}, where
for v in vdis2:
    failure(local.VDI.get_record(ls, v), "HANDLE_INVALID")
print("xapi spelling: 2 disks over 2 SRs migrated and verified")

# A halted VM (live false): its disk is copied, not mirrored, with no
# memory migrator; the VM arrives halted, and its data with it.
vmh, vdish = make_vm("vmh")
sockh = sockets(local, ls, vmh)["0"]
assert fio(sockh, 7, 0, SIZE // 2) == 0
ok(local.VM.shutdown(ls, vmh))
tokh = ok(remote.VM.migrate_receive(rs, host, sr, {}))
failure(local.VM.migrate(ls, vmh, tokh, "no", {}), "FIELD_TYPE_ERROR")
t = migrate(local.Async.VM.migrate(ls, vmh, tokh, False, {}), [], None)
assert t["status"] == "success", t
dvmh = result_ref(t)
assert ok(remote.VM.get_power_state(rs, dvmh)) == "Halted"
assert ok(remote.VBD.get_other_config(rs, ok(remote.VM.get_VBDs(rs, dvmh))[0])) == {}
ok(remote.VM.start(rs, dvmh, False, False))
assert fio(sockets(remote, rs, dvmh)["0"], 7, 0, SIZE // 2,
           verify_only=True) == 0
ok(remote.VM.shutdown(rs, dvmh))
failure(local.VM.get_record(ls, vmh), "HANDLE_INVALID")
print("halted VM: copied, arrives halted, data verified")

# A disk the destination has no room for: SR_FULL before anything starts.
vmb = ok(local.VM.create(ls, {"name_label": "too-big"}))
vdib = ok(local.VDI.create(ls, {
    "SR": src_srs["sr2"], "name_label": "huge", "virtual_size": str(10 << 40),
    "sm_config": {"image-format": "raw"}}))
ok(local.VBD.create(ls, {"VM": vmb, "VDI": vdib, "userdevice": "0"}))
tokb = ok(remote.VM.migrate_receive(rs, host, sr, {}))
failure(local.VM.assert_can_migrate(ls, vmb, tokb, False, {}, {}, {}),
        "SR_FULL")
ok(local.VM.destroy(ls, vmb))
ok(local.VDI.destroy(ls, vdib))
print("assert_can_migrate: SR_FULL for a disk the destination cannot hold")

# 3. Failures leave the source VM running and writable, and nothing on
# the destination.
vm3, vdis3 = make_vm("vm3")
sock3 = sockets(local, ls, vm3)["0"]
assert fio(sock3, 5, 0, SIZE // 2) == 0
before = dst_vdi_count()


def intact(what):
    assert ok(local.VM.get_power_state(ls, vm3)) == "Running", what
    assert sockets(local, ls, vm3)["0"] == sock3, what
    assert fio(sock3, 5, 0, SIZE // 2, verify_only=True) == 0, what
    assert fio(sock3, 6, SIZE // 2, SIZE // 2) == 0, what
    n = dst_vdi_count()
    assert n == before, (what, n, before)
    print("%s: the VM is intact, nothing left on the destination" % what)


tok = ok(remote.VM.migrate_receive(rs, host, sr, {}))
t = migrate(local.Async.VM.migrate(ls, vm3, tok, True,
                                   {"handover-file": os.path.join(T, "never"),
                                    "mm-timeout": "1"}), [], None)
assert t["status"] == "failure", t
assert t["error_info"][0] == "VM_MIGRATE_FAILED", t
assert "handover" in t["error_info"][-1], t
assert "did not appear within 1 s" in t["error_info"][-1], t
intact("migrator exits 1")

tok = ok(remote.VM.migrate_receive(rs, host, sr, {}))
wait_file = os.path.join(T, "never")
task = ok(local.Async.VM.migrate(ls, vm3, tok, True,
                                 {"handover-file": wait_file}))
while ok(local.task.get_progress(ls, task)) < 0.85:
    time.sleep(0.05)
ok(local.task.cancel(ls, task))
t = xapi_checks.wait_task(local, ls, task)
assert t["status"] == "cancelled", t
intact("cancel during the handover")

# For the shell: a migration to leave hanging while it kills the
# destination (the VM, its socket and the task, one per line).
tok = ok(remote.VM.migrate_receive(rs, host, sr, {}))
task = ok(local.Async.VM.migrate(ls, vm3, tok, True,
                                 {"handover-file": os.path.join(T, "never")}))
while ok(local.task.get_progress(ls, task)) < 0.85:
    time.sleep(0.05)
with open(os.path.join(T, "hanging"), "w") as f:
    f.write("%s\n%s\n%s\n%d\n" % (vm3, sock3, task, before))
ok(remote.session.logout(rs))
ok(local.session.logout(ls))
print("xapi-migrate: %d checks passed" % xapi_checks.checks)
