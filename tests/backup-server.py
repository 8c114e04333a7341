# Driven by test-backup-server.sh: the XenAPI and guest side of a backup
# of a running VM's disk (xmlrpc.client and libnbd only).
#   backup-server.py setup URL T      a 64 MiB VDI with CBT, its VM started;
#                                     writes T/vdi (uuid) and T/sock
#   backup-server.py write SOCK SEED  1 % of the disk written through the
#                                     VM's disk; prints the changed bytes
#                                     rounded out to 64 KiB blocks
#   backup-server.py snapshots URL VDI  one line per snapshot: uuid type
import random
import sys

import nbd

import xapi_checks
from xapi_checks import ok

SIZE = 64 << 20
BLOCK = 64 << 10


def setup(url, T):
    x, s = xapi_checks.login(url, originator="test")
    srs = {r["name_label"]: ref
           for ref, r in ok(x.SR.get_all_records(s)).items()}
    vdi = ok(x.VDI.create(s, {
        "SR": srs["sr1"], "name_label": "backed-up", "virtual_size": str(SIZE),
        "type": "user", "sharable": False, "read_only": False,
        "other_config": {}, "sm_config": {"image-format": "qcow2"}}))
    ok(x.VDI.enable_cbt(s, vdi))
    vm = ok(x.VM.create(s, {"name_label": "backup-vm"}))
    vbd = ok(x.VBD.create(s, {
        "VM": vm, "VDI": vdi, "userdevice": "0", "mode": "RW",
        "type": "Disk", "bootable": False, "empty": False,
        "other_config": {}}))
    ok(x.VM.start(s, vm, False, False))
    sock = ok(x.VBD.get_other_config(s, vbd))["nbd-socket"]
    # Data on a fifth of the disk to begin with.
    h = nbd.NBD()
    h.connect_unix(sock)
    r = random.Random(0)
    for off in range(0, SIZE, 5 << 20):
        h.pwrite(r.randbytes(1 << 20), off)
    h.flush()
    h.shutdown()
    with open(T + "/vdi", "w") as f:
        f.write(ok(x.VDI.get_uuid(s, vdi)))
    with open(T + "/sock", "w") as f:
        f.write(sock)


def write(sock, seed):
    h = nbd.NBD()
    h.connect_unix(sock)
    r = random.Random(seed)
    blocks = set()
    for _ in range(SIZE // 100 // BLOCK):
        off = r.randrange(0, SIZE - BLOCK)
        h.pwrite(r.randbytes(BLOCK), off)
        blocks.update(range(off // BLOCK, (off + BLOCK - 1) // BLOCK + 1))
    h.flush()
    h.shutdown()
    print(len(blocks) * BLOCK)


def snapshots(url, uuid):
    x, s = xapi_checks.login(url, originator="test")
    vdi = ok(x.VDI.get_by_uuid(s, uuid))
    for snap in ok(x.VDI.get_snapshots(s, vdi)):
        r = ok(x.VDI.get_record(s, snap))
        print(r["uuid"], r["type"])


cmd = sys.argv[1]
if cmd == "setup":
    setup(sys.argv[2], sys.argv[3])
elif cmd == "write":
    write(sys.argv[2], int(sys.argv[3]))
elif cmd == "snapshots":
    snapshots(sys.argv[2], sys.argv[3])
