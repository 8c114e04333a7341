# Driven by test-xapi-cbt.sh: a live snapshot whose daemon is killed
# (VDIMOTIOND_CRASH_AT) is finished or undone by the next start.
#   xapi-live-snapshot-crash.py URL T start   (a VM writes, the snapshot
#                                              call dies with the daemon)
#   xapi-live-snapshot-crash.py URL T check frozen|pivoted
# After "pivoted" the snapshot is whole and the VM goes on through the
# new leaf; after "frozen" (killed before the pivot) the VM goes on on
# the image it wrote and the snapshot says it is not frozen.
import json
import os
import sys
import xmlrpc.client

import nbd

from xapi_checks import nbd_connect, ok

url, T, phase = sys.argv[1], sys.argv[2], sys.argv[3]
x = xmlrpc.client.ServerProxy(url)
SIZE = 4 << 20
A, B = b"\xaa" * 65536, b"\xbb" * 65536
state = os.path.join(T, "crash.json")

if phase == "start":
    s = ok(x.session.login_with_password("root", "secret", "1.0", "test"))
    sr = ok(x.SR.get_by_name_label(s, "sr1"))[0]
    vdi = ok(x.VDI.create(s, {"SR": sr, "name_label": "crash",
                              "virtual_size": str(SIZE),
                              "sm_config": {"image-format": "qcow2"}}))
    vm = ok(x.VM.create(s, {"name_label": "crash-vm"}))
    vbd = ok(x.VBD.create(s, {"VM": vm, "VDI": vdi, "userdevice": "0",
                              "mode": "RW", "type": "Disk"}))
    ok(x.VM.start(s, vm, False, False))
    sock = ok(x.VBD.get_other_config(s, vbd))["nbd-socket"]
    h = nbd.NBD()
    h.connect_unix(sock)
    h.pwrite(A, 0)
    h.flush()
    h.shutdown()
    with open(state, "w") as f:
        json.dump({"s": s, "vdi": vdi, "vm": vm, "sock": sock}, f)
    try:
        x.VDI.snapshot(s, vdi, {})
        raise AssertionError("the daemon answered: no crash point?")
    except (ConnectionError, xmlrpc.client.ProtocolError, OSError):
        pass
    sys.exit(0)

point = sys.argv[4]
saved = json.load(open(state))
s, vdi, vm = saved["s"], saved["vdi"], saved["vm"]
snaps = ok(x.VDI.get_snapshots(s, vdi))
assert len(snaps) == 1, snaps
oc = ok(x.VDI.get_other_config(s, snaps[0]))
assert "vdimotion-live-snapshot" not in oc, oc
# The guest goes on either way, its data whole.
h = nbd.NBD()
h.connect_unix(saved["sock"])
h.pwrite(B, 65536)
h.flush()
assert h.pread(2 * 65536, 0) == A + B
h.shutdown()
if point == "pivoted":
    assert "vdimotion-snapshot-invalid" not in oc, oc
    info = ok(x.VDI.get_nbd_info(s, snaps[0]))[0]
    n = nbd_connect(T, info)
    assert n.pread(2 * 65536, 0) == A + bytes(65536), "the snapshot moved"
    n.shutdown()
else:
    assert "stopped during the live snapshot" in oc[
        "vdimotion-snapshot-invalid"], oc
ok(x.VM.shutdown(s, vm))
print("xapi-live-snapshot-crash: %s: recovered" % point)
