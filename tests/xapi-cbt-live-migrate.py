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
import ssl
import subprocess
import sys
import xmlrpc.client

import cbtlog
import xapi_checks
from xapi_checks import ok

src_url, dst_url, ca, T = sys.argv[1:5]
ctx = ssl.create_default_context(cafile=ca)
ctx.check_hostname = False
MiB = 1 << 20
SIZE = 16 * MiB
local = xmlrpc.client.ServerProxy(src_url, context=ctx)
remote = xmlrpc.client.ServerProxy(dst_url, context=ctx)
ls = ok(local.session.login_with_password("root", "secret", "1.0", "t"))
rs = ok(remote.session.login_with_password("root", "secret", "1.0", "t"))
src_sr = ok(local.SR.get_by_name_label(ls, "sr1"))[0]
dst_sr = ok(remote.SR.get_by_name_label(rs, "sr1"))[0]
dst_dir = os.path.join(T, "peer", "sr1")
RUN = os.path.join(T, "state", "run")


def io(sock, *cmds):
    args = ["qemu-io", "-f", "raw", "nbd+unix:///?socket=" + sock]
    for c in cmds:
        args += ["-c", c]
    out = subprocess.run(args, check=True, capture_output=True, text=True)
    assert "failed" not in out.stdout + out.stderr, out


vdi = ok(local.VDI.create(ls, {
    "SR": src_sr, "name_label": "disk0", "virtual_size": str(SIZE),
    "other_config": {}, "sm_config": {"image-format": "qcow2"}}))
vm = ok(local.VM.create(ls, {"name_label": "vm1"}))
ok(local.VBD.create(ls, {"VM": vm, "VDI": vdi, "userdevice": "0",
                         "mode": "RW"}))
ok(local.VM.start(ls, vm, False, False))
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
