# Driven by test-xapi-cbt-live-move.sh: a running VM whose disk (CBT on)
# had a live snapshot, so that its disk is the new leaf's nbdkit (the
# mirror filter pivoted to it), moves to another vdimotiond
# (Async.VM.migrate; the filter mirrors from that pivoted leaf).  The
# destination's disk reads what the guest wrote, before the snapshot,
# after it and during the migration, and its log holds the blocks
# written since the snapshot, with the source's generation; the source
# stopped the leaf's nbdkit with the VM.
#   xapi-cbt-live-migrate.py SRC_URL DST_URL CA_FILE T
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
RUN = os.path.join(T, "state", "run")


def io(sock, *cmds):
    args = ["qemu-io", "-f", "raw", "nbd+unix:///?socket=" + sock]
    for c in cmds:
        args += ["-c", c]
    out = subprocess.run(args, check=True, capture_output=True, text=True)
    assert "failed" not in out.stdout + out.stderr, out


vdi = xapi_checks.new_vdi(local, ls, src_sr, "disk0", SIZE, "qcow2")
vm, _ = xapi_checks.new_vm(local, ls, "vm1", vdi)
sock = xapi_checks.vbd_sockets(local, ls, vm)["0"]
io(sock, "write -P 0x11 1M 64k")                  # before the snapshot
ok(local.VDI.enable_cbt(ls, vdi))
snap = ok(local.VDI.snapshot(ls, vdi, {}))        # live: a pivot
leaf_pid = os.path.join(RUN, ok(local.VDI.get_uuid(ls, snap)) + "-leaf.pid")
assert os.path.exists(leaf_pid), "no nbdkit serves the new leaf"
io(sock, "write -P 0x22 2M 4k")                   # after it: block 32

handover = os.path.join(T, "handover")
task = xapi_checks.migrate_until_handover(local, ls, remote, rs, vm, dst_sr,
                                          handover, dst_dir)
io(sock, "write -P 0x33 3M 4k")                   # during: block 48
open(handover, "w").close()
t = xapi_checks.wait_task(local, ls, task)
assert t["status"] == "success", t
dvm = t["result"][len("<value>"):-len("</value>")]
assert not os.path.exists(leaf_pid), \
    "the leaf's nbdkit outlived the VM's departure"
dsock = xapi_checks.vbd_sockets(remote, rs, dvm)["0"]
io(dsock, "read -P 0x11 1M 64k", "read -P 0x22 2M 4k",
   "read -P 0x33 3M 4k", "read -P 0 4M 4k")
dvdi = ok(remote.VBD.get_VDI(rs, ok(remote.VM.get_VBDs(rs, dvm))[0]))
dlog = os.path.join(dst_dir, ok(remote.VDI.get_uuid(rs, dvdi)) + ".cbtlog")
info = cbtlog.read(dlog)
assert info["blocks"] == "32,48", ("the destination's log", info)
ok(remote.VM.clean_shutdown(rs, dvm))
print("ok: VM.migrate of a disk a live snapshot pivoted: the bytes and "
      "the log (blocks %s) on the destination" % info["blocks"])
