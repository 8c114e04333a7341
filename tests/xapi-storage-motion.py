# Driven by test-xapi-storage-motion.sh: storage motion through the XenAPI
# face, as a XenAPI script does it with Python's standard xmlrpc.client.
# A VHD is imported, a VM runs with it as its disk; fio writes through the VBD's nbd-socket, with
# crc32c verify, while Async.VDI.pool_migrate moves the disk to another
# SR (and to qcow2); fio never sees an error, the task ends in success,
# and everything fio wrote is read back from the moved VDI.
#   xapi-storage-motion.py URL T SR1_DIR SR2_DIR
import os
import subprocess
import sys
import time
import xmlrpc.client

import xapi_checks
from xapi_checks import failure, ok

url, T, sr1_dir, sr2_dir = sys.argv[1:5]
x = xmlrpc.client.ServerProxy(url)
s = ok(x.session.login_with_password("root", "secret", "1.0", "test"))
MiB = 1 << 20
SIZE = 64 * MiB

srs = {r["name_label"]: ref for ref, r in ok(x.SR.get_all_records(s)).items()}
nets = ok(x.network.get_all(s))
assert len(nets) == 1 and ok(x.network.get_record(s, nets[0]))["uuid"]


def fio(*args, **kw):
    return xapi_checks.fio(T, *args, **kw)


def wait_task(task, progress_seen):
    """Poll the task as a client does; returns its record at the end."""
    while True:
        t = ok(x.task.get_record(s, task))
        assert 0.0 <= t["progress"] <= 1.0, t
        if progress_seen and t["status"] == "pending":
            assert t["progress"] >= progress_seen[-1], (progress_seen, t)
        progress_seen.append(t["progress"])
        if t["status"] not in ("pending", "cancelling"):
            return t
        time.sleep(0.05)


def async_failure(r, code):
    """An Async.* call whose task failed with CODE, as xapi reports the
    errors of the operation itself."""
    t = wait_task(ok(r), [])
    assert t["status"] == "failure" and t["error_info"][0] == code, t
    return t["error_info"]


def result_ref(t):
    r = t["result"]
    assert r.startswith("<value>OpaqueRef:") and r.endswith("</value>"), t
    return r[len("<value>"):-len("</value>")]


def new_vdi(name, sr, fmt, size=SIZE):
    return ok(x.VDI.create(s, {
        "SR": sr, "name_label": name, "name_description": "test disk",
        "virtual_size": str(size), "type": "user", "sharable": False,
        "read_only": False, "other_config": {},
        "sm_config": {"image-format": fmt}}))


# A VM with one disk, imported from a VHD (xapi's PUT /import_raw_vdi).
vdi = new_vdi("disk0", srs["sr1"], "vhd")
src_vhd = os.path.join(T, "import.vhd")
subprocess.check_call(["qemu-img", "create", "-q", "-f", "vpc", "-o",
                       "subformat=dynamic,force_size=on", src_vhd, str(SIZE)])
subprocess.check_call(["qemu-io", "-f", "vpc", "-c", "write -P 0x5a 1M 3M",
                       "-c", "write -P 0xa5 40M 64k", src_vhd],
                      stdout=subprocess.DEVNULL)
xapi_checks.import_vdi(url, s, vdi, src_vhd, "vhd")
imported = os.path.join(sr1_dir, ok(x.VDI.get_location(s, vdi)))
assert subprocess.call(["qemu-img", "compare", "-q", src_vhd, imported]) == 0
vm = ok(x.VM.create(s, {"name_label": "vm1", "name_description": "a VM"}))
vbd = ok(x.VBD.create(s, {
    "VM": vm, "VDI": vdi, "userdevice": "0", "mode": "RW", "type": "Disk",
    "bootable": False, "empty": False, "other_config": {}}))
failure(x.VBD.create(s, {"VM": vm, "VDI": vdi, "userdevice": "0"}),
        "DEVICE_ALREADY_EXISTS")
failure(x.VBD.create(s, {"VM": "OpaqueRef:NULL", "VDI": vdi}),
        "HANDLE_INVALID")
assert ok(x.VM.get_power_state(s, vm)) == "Halted"
assert ok(x.VM.get_VBDs(s, vm)) == [vbd]
assert ok(x.VDI.get_VBDs(s, vdi)) == [vbd]
assert ok(x.VBD.get_currently_attached(s, vbd)) is False
assert ok(x.VM.get_by_name_label(s, "vm1")) == [vm]
assert vm in ok(x.VM.get_all_records(s))
failure(x.VM.shutdown(s, vm), "VM_BAD_POWER_STATE")

ok(x.VM.start(s, vm, False, False))
assert ok(x.VM.get_power_state(s, vm)) == "Running"
failure(x.VM.start(s, vm, False, False), "VM_BAD_POWER_STATE")
sock = ok(x.VBD.get_other_config(s, vbd))["nbd-socket"]
assert os.path.exists(sock), sock
assert ok(x.VBD.get_currently_attached(s, vbd)) is True
# A disk in use is neither destroyed nor copied offline.
failure(x.VDI.destroy(s, vdi), "VDI_IN_USE")
failure(x.VDI.copy(s, vdi, srs["sr2"]), "VDI_IN_USE")
failure(x.VBD.destroy(s, vbd), "VM_BAD_POWER_STATE")

# The first half written before the move, the second half during it.
assert fio(sock, 1, 0, SIZE // 2) == 0, "fio before the move"
writer = fio(sock, 2, SIZE // 2, SIZE // 2, background=True, rate=1500)
time.sleep(0.5)
task = ok(x.Async.VDI.pool_migrate(s, vdi, srs["sr2"],
                                   {"dest-img-format": "qcow2"}))
assert task.startswith("OpaqueRef:")
# The VDI is busy while it moves.
failure(x.VDI.destroy(s, vdi), "VDI_IN_USE")
async_failure(x.Async.VDI.pool_migrate(s, vdi, srs["sr2"], {}),
              "OTHER_OPERATION_IN_PROGRESS")
failure(x.VM.shutdown(s, vm), "OTHER_OPERATION_IN_PROGRESS")
seen = []
t = wait_task(task, seen)
assert t["status"] == "success", t
assert t["error_info"] == [] and t["progress"] == 1.0, t
assert ok(x.task.get_status(s, task)) == "success"
moved = result_ref(t)
assert ok(x.task.get_result(s, task)) == t["result"]
assert writer.wait() == 0, "fio failed during the live move"
print("live move: %d polls, progress %s" %
      (len(seen), " ".join("%.2f" % p for p in seen[::max(1, len(seen) // 8)])))

# The VM kept running on the same socket; its disk is the new VDI.
assert moved != vdi
assert ok(x.VM.get_power_state(s, vm)) == "Running"
assert ok(x.VBD.get_VDI(s, vbd)) == moved
assert ok(x.VBD.get_other_config(s, vbd))["nbd-socket"] == sock
failure(x.VDI.get_record(s, vdi), "HANDLE_INVALID")
rec = ok(x.VDI.get_record(s, moved))
assert rec["SR"] == srs["sr2"] and rec["name_label"] == "disk0", rec
assert rec["sm_config"]["image-format"] == "qcow2", rec
assert rec["virtual_size"] == str(SIZE), rec
assert "vdimotion-task" not in rec["other_config"], rec
assert not [f for f in os.listdir(sr1_dir) if f != "sr.db" and
            not f.startswith("sr.db")], os.listdir(sr1_dir)

# Everything fio wrote, before and during the move, reads back: first
# through the running VM's socket, then from the new VDI served afresh.
assert fio(sock, 1, 0, SIZE // 2, verify_only=True) == 0
assert fio(sock, 2, SIZE // 2, SIZE // 2, verify_only=True) == 0
ok(x.VM.shutdown(s, vm))
assert not os.path.exists(sock)
assert ok(x.VBD.get_other_config(s, vbd)) == {}
ok(x.VM.start(s, vm, False, False))
sock = ok(x.VBD.get_other_config(s, vbd))["nbd-socket"]
assert fio(sock, 1, 0, SIZE // 2, verify_only=True) == 0
assert fio(sock, 2, SIZE // 2, SIZE // 2, verify_only=True) == 0
ok(x.VM.clean_shutdown(s, vm))

# Offline: VDI.copy (synchronous) makes an equal VDI; pool_migrate of a
# halted VM's disk moves it and the VBD follows.
copy = ok(x.VDI.copy(s, moved, srs["sr1"]))
assert ok(x.VDI.get_SR(s, copy)) == srs["sr1"]
# qemu reads each image on its own: the copy equals its source.
assert subprocess.call(
    ["qemu-img", "compare",
     os.path.join(sr2_dir, ok(x.VDI.get_location(s, moved))),
     os.path.join(sr1_dir, ok(x.VDI.get_location(s, copy)))]) == 0
task = ok(x.Async.VDI.pool_migrate(s, moved, srs["sr1"],
                                   {"dest-img-format": "vhd"}))
t = wait_task(task, [])
assert t["status"] == "success", t
back = result_ref(t)
assert ok(x.VBD.get_VDI(s, vbd)) == back
assert ok(x.VDI.get_sm_config(s, back))["image-format"] == "vhd"
assert subprocess.call(
    ["qemu-img", "compare",
     os.path.join(sr1_dir, ok(x.VDI.get_location(s, copy))),
     os.path.join(sr1_dir, ok(x.VDI.get_location(s, back)))]) == 0

# Several at once: more than max-storage-operations queue, all finish.
tasks = [ok(x.Async.VDI.copy(s, copy, srs["sr2"]))]
for i in range(3):
    tasks.append(ok(x.Async.VDI.copy(s, back, srs["sr2"])) if i == 0 else
                 ok(x.Async.VDI.copy(s, new_vdi("e%d" % i, srs["sr1"], "raw"),
                                     srs["sr2"])))
for task in tasks:
    t = wait_task(task, [])
    assert t["status"] == "success", t
    ok(x.task.destroy(s, task))
    failure(x.task.get_record(s, task), "HANDLE_INVALID")

# Cancel: the task ends cancelled (or, if the copy won the race, in
# success) and a cancelled copy leaves no VDI behind.
before = set(ok(x.VDI.get_all(s)))
task = ok(x.Async.VDI.copy(s, back, srs["sr2"]))
ok(x.task.cancel(s, task))
t = wait_task(task, [])
assert t["status"] in ("cancelled", "success"), t
if t["status"] == "cancelled":
    assert t["error_info"][0] == "TASK_CANCELLED", t
    assert set(ok(x.VDI.get_all(s))) == before
print("cancel: task ended %s" % t["status"])

# Any method can be called as Async.*; its task is over at once.
task = ok(x.Async.VM.get_power_state(s, vm))
assert ok(x.task.get_status(s, task)) == "success"
assert ok(x.task.get_result(s, task)) == "<value>Halted</value>"
task = ok(x.Async.VM.shutdown(s, vm))
assert ok(x.task.get_status(s, task)) == "failure"
assert ok(x.task.get_error_info(s, task))[0] == "VM_BAD_POWER_STATE"
async_failure(x.Async.VDI.copy(s, "OpaqueRef:bad", srs["sr2"]),
              "HANDLE_INVALID")

ok(x.VM.destroy(s, vm))
failure(x.VBD.get_record(s, vbd), "HANDLE_INVALID")
assert ok(x.VDI.get_VBDs(s, back)) == []
print("xapi-storage-motion: %d checks passed" % xapi_checks.checks)
