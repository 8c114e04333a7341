# Driven by test-xapi-cbt-migrate.sh: a VM whose disk has CBT on moves to
# another vdimotiond (Async.VM.migrate, vdimotion-mm-none's handover
# file); its log goes along.  CBT is turned on the way the file SR does
# it (tests/cbtlog-tool enable); logs are read with tests/cbtlog.py.
#   xapi-cbt-migrate.py SRC_URL DST_URL CA_FILE T
import os
import subprocess
import sys

import cbtlog
import xapi_checks
from xapi_checks import ok

src_url, dst_url, ca, T = sys.argv[1:5]
MiB = 1 << 20
SIZE = 16 * MiB
local, ls, src_sr, remote, rs, dst_sr = xapi_checks.migration_hosts(
    src_url, dst_url, ca)
dst_dir = os.path.join(T, "peer", "sr1")


def write(sock, offset, byte):
    subprocess.check_call(
        ["qemu-io", "-f", "raw", "nbd+unix:///?socket=" + sock,
         "-c", "write -P %d %d 4k" % (byte, offset)],
        stdout=subprocess.DEVNULL)


vdi = xapi_checks.new_vdi(local, ls, src_sr, "disk0", SIZE, "raw")
log = os.path.join(T, "sr1", ok(local.VDI.get_uuid(ls, vdi)) + ".cbtlog")
subprocess.check_call([os.environ["CBTLOG"], "enable", log, str(SIZE)])
gen = cbtlog.read(log)["generation"]
vm, _ = xapi_checks.new_vm(local, ls, "vm1", vdi)
sock = xapi_checks.vbd_sockets(local, ls, vm)["0"]

write(sock, 1 * MiB, 0x11)                       # before: block 16
handover = os.path.join(T, "handover")
task = xapi_checks.migrate_until_handover(local, ls, remote, rs, vm, dst_sr,
                                          handover, dst_dir)
write(sock, 2 * MiB, 0x22)                       # during: block 32
open(handover, "w").close()
t = xapi_checks.wait_task(local, ls, task)
assert t["status"] == "success", t
dvm = t["result"][len("<value>"):-len("</value>")]
assert not os.path.exists(log), "the source's log stayed"
dsock = xapi_checks.vbd_sockets(remote, rs, dvm)["0"]
write(dsock, 3 * MiB, 0x33)                      # after: block 48

dvdi = ok(remote.VBD.get_VDI(rs, ok(remote.VM.get_VBDs(rs, dvm))[0]))
dlog = os.path.join(dst_dir, ok(remote.VDI.get_uuid(rs, dvdi)) + ".cbtlog")
info = cbtlog.read(dlog)
assert info["blocks"] == "16,32,48", ("the destination's log", info)
assert info["generation"] == gen, (gen, info)
assert info["consistent"] == 0, info     # its disk server has it
# The bytes are there too.
subprocess.check_call(
    ["qemu-io", "-f", "raw", "nbd+unix:///?socket=" + dsock,
     "-c", "read -P 0x22 2M 4k", "-c", "read -P 0x11 1M 4k"],
    stdout=subprocess.DEVNULL)
ok(remote.VM.clean_shutdown(rs, dvm))
info = cbtlog.read(dlog)
assert info["consistent"] == 1 and info["blocks"] == "16,32,48", info
print("ok: VM.migrate: the destination's log has the blocks written "
      "before, during and after, generation %s (%d checks)"
      % (gen[:8], xapi_checks.checks))

# A halted VM's disk is copied, not mirrored: its log goes with the
# commit as it is.
vdi2 = xapi_checks.new_vdi(local, ls, src_sr, "disk1", SIZE, "qcow2")
log2 = os.path.join(T, "sr1", ok(local.VDI.get_uuid(ls, vdi2)) + ".cbtlog")
subprocess.check_call([os.environ["CBTLOG"], "enable", log2, str(SIZE)])
vm2, _ = xapi_checks.new_vm(local, ls, "vm2", vdi2)
write(xapi_checks.vbd_sockets(local, ls, vm2)["0"], 5 * MiB, 0x55)
ok(local.VM.clean_shutdown(ls, vm2))
before = cbtlog.read(log2)
assert before["blocks"] == "80" and before["consistent"] == 1, before
host = ok(remote.host.get_all(rs))[0]
token = ok(remote.VM.migrate_receive(rs, host, dst_sr, {}))
t = xapi_checks.wait_task(local, ls,
                          ok(local.Async.VM.migrate(ls, vm2, token, False,
                                                    {})))
assert t["status"] == "success", t
dvm2 = t["result"][len("<value>"):-len("</value>")]
dvdi2 = ok(remote.VBD.get_VDI(rs, ok(remote.VM.get_VBDs(rs, dvm2))[0]))
info = cbtlog.read(os.path.join(
    dst_dir, ok(remote.VDI.get_uuid(rs, dvdi2)) + ".cbtlog"))
assert info["blocks"] == "80" and info["generation"] == before["generation"], info
assert info["consistent"] == 1, info
print("ok: VM.migrate of a halted VM: its log went with it (%d checks)"
      % xapi_checks.checks)
