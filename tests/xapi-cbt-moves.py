# Driven by test-xapi-cbt-moves.sh: a VDI's changed-block log through
# VDI.pool_migrate (live and offline) and VDI.copy.  CBT is turned on the
# way the file SR does it (tests/cbtlog-tool enable on <SR>/<uuid>.cbtlog;
# VDI.enable_cbt calls the same code), and logs are read with
# tests/cbtlog.py, a reader of the documented format.
#   xapi-cbt-moves.py URL T SR1_DIR SR2_DIR
import os
import subprocess
import sys
import xmlrpc.client

import cbtlog
import xapi_checks
from xapi_checks import ok

url, T, sr1_dir, sr2_dir = sys.argv[1:5]
x = xmlrpc.client.ServerProxy(url)
s = ok(x.session.login_with_password("root", "secret", "1.0", "test"))
MiB = 1 << 20
SIZE = 16 * MiB
BLOCK = 64 * 1024
srs = {r["name_label"]: ref for ref, r in ok(x.SR.get_all_records(s)).items()}


def log_of(sr_dir, vdi):
    return os.path.join(sr_dir, ok(x.VDI.get_uuid(s, vdi)) + ".cbtlog")


def blocks(path):
    info = cbtlog.read(path)
    return info, [int(b) for b in info["blocks"].split(",") if b]


def write(sock, offset, byte):
    subprocess.check_call(
        ["qemu-io", "-f", "raw", "nbd+unix:///?socket=" + sock,
         "-c", "write -P %d %d 4k" % (byte, offset)],
        stdout=subprocess.DEVNULL)


def finish(task):
    t = xapi_checks.wait_task(x, s, task)
    assert t["status"] == "success", t
    r = t["result"]
    return r[len("<value>"):-len("</value>")]


vdi = ok(x.VDI.create(s, {
    "SR": srs["sr1"], "name_label": "disk0", "name_description": "",
    "virtual_size": str(SIZE), "type": "user", "sharable": False,
    "read_only": False, "other_config": {},
    "sm_config": {"image-format": "raw"}}))
log1 = log_of(sr1_dir, vdi)
subprocess.check_call([os.environ["CBTLOG"], "enable", log1, str(SIZE)])
gen = cbtlog.read(log1)["generation"]

vm = ok(x.VM.create(s, {"name_label": "vm1", "name_description": ""}))
vbd = ok(x.VBD.create(s, {
    "VM": vm, "VDI": vdi, "userdevice": "0", "mode": "RW", "type": "Disk",
    "bootable": False, "empty": False, "other_config": {}}))
ok(x.VM.start(s, vm, False, False))
sock = ok(x.VBD.get_other_config(s, vbd))["nbd-socket"]

# Written before the move: block 16.
write(sock, 1 * MiB, 0x11)
info, got = blocks(log1)
assert got == [16] and info["consistent"] == 0, (info, got)

# Live move; then a write after the pivot: block 32.
moved = finish(ok(x.Async.VDI.pool_migrate(s, vdi, srs["sr2"], {})))
log2 = log_of(sr2_dir, moved)
assert not os.path.exists(log1), "the source's log stayed"
write(sock, 2 * MiB, 0x22)
info, got = blocks(log2)
assert got == [16, 32], ("live move: the destination's log", got)
assert info["generation"] == gen, info
print("ok: live pool_migrate: the log moved with generation %s and "
      "marks from before and after the pivot" % gen[:8])

ok(x.VM.clean_shutdown(s, vm))
info, got = blocks(log2)
assert info["consistent"] == 1 and got == [16, 32], (info, got)

# Offline copy: the copy's log is the source's; the source keeps its own.
copy = ok(x.VDI.copy(s, moved, srs["sr1"]))
info_c, got_c = blocks(log_of(sr1_dir, copy))
assert got_c == [16, 32] and info_c["generation"] == gen, (info_c, got_c)
assert os.path.exists(log2)
print("ok: VDI.copy: the copy has the source's log")

# Offline move of the halted VM's disk back: the log goes along.
back = finish(ok(x.Async.VDI.pool_migrate(s, moved, srs["sr1"], {})))
info_b, got_b = blocks(log_of(sr1_dir, back))
assert got_b == [16, 32] and info_b["generation"] == gen, (info_b, got_b)
assert not os.path.exists(log2)
print("ok: offline pool_migrate: the log moved")

# And it is marked again when the VM runs on the moved disk.
ok(x.VM.start(s, vm, False, False))
sock = ok(x.VBD.get_other_config(s, vbd))["nbd-socket"]
write(sock, 3 * MiB, 0x33)
ok(x.VM.clean_shutdown(s, vm))
info_b, got_b = blocks(log_of(sr1_dir, back))
assert got_b == [16, 32, 48] and info_b["consistent"] == 1, (info_b, got_b)
print("ok: the moved log is marked when the VM runs again (%d checks)"
      % xapi_checks.checks)
