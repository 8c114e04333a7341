# Driven by test-xapi-cbt-live-move.sh: a running VM's disk with CBT on
# has a live snapshot (the VM's disk is then the new leaf's nbdkit, the
# filter pivoted to it), is moved live to another SR (the filter mirrors
# from that pivoted leaf: VDI.pool_migrate) and back (mirrored from the
# first move's target), and has a second live snapshot, in the SR of the
# first (the logs chain inside one SR: cbt.h).  The guest writes before,
# during and after each move.  VDI.list_changed_blocks between the two
# snapshots marks every block the guest wrote and every block whose bytes
# differ between them (the snapshots' images read with qemu-img); the
# second snapshot and the disk read what the guest wrote; each earlier
# disk's nbdkit (the snapshot's leaf, the first move's target) stopped
# with the move that left it.
# Then SR.evacuate of the first SR moves the live leaf (pivoted by the
# second snapshot) with sync=top, and the disk still reads what was
# written.
#   xapi-cbt-live-move.py URL T
import base64
import glob
import json
import os
import subprocess
import sys
import threading
import xmlrpc.client

import nbd

from xapi_checks import ok, wait_task

url, T = sys.argv[1], sys.argv[2]
x = xmlrpc.client.ServerProxy(url)
s = ok(x.session.login_with_password("root", "secret", "1.0", "test"))
KiB, MiB = 1 << 10, 1 << 20
BLOCK = 64 * KiB
SIZE = 8 * MiB
NBLOCKS = SIZE // BLOCK
RUN = os.path.join(T, "state", "run")
srs = {r["name_label"]: ref for ref, r in ok(x.SR.get_all_records(s)).items()}


def pattern(seed, n):
    return bytes((seed * 7 + i * 13 + (i >> 9)) & 0xFF for i in range(n))


def image_bytes(sr, vdi):
    """What VDI's image (in SR's directory, with its chain) reads."""
    uuid = ok(x.VDI.get_uuid(s, vdi))
    path, = [p for p in glob.glob(os.path.join(T, sr, uuid + ".*"))
             if p.rsplit(".", 1)[1] in ("qcow2", "vhd", "raw")]
    raw = os.path.join(T, "read.raw")
    subprocess.check_call(["qemu-img", "convert", "-O", "raw", path, raw])
    with open(raw, "rb") as f:
        return bytearray(f.read())


def live_snapshot(vdi):
    snap = ok(x.VDI.snapshot(s, vdi, {}))
    r = ok(x.VDI.get_record(s, snap))
    assert r["is_a_snapshot"] and r["cbt_enabled"], r
    return snap


vdi = ok(x.VDI.create(s, {
    "SR": srs["sr1"], "name_label": "live-move-disk",
    "virtual_size": str(SIZE), "type": "user", "sharable": False,
    "read_only": False, "other_config": {},
    "sm_config": {"image-format": "qcow2"}}))
vm = ok(x.VM.create(s, {"name_label": "live-move-vm"}))
vbd = ok(x.VBD.create(s, {
    "VM": vm, "VDI": vdi, "userdevice": "0", "mode": "RW", "type": "Disk",
    "bootable": False, "empty": False, "other_config": {}}))
ok(x.VM.start(s, vm, False, False))
sock = ok(x.VBD.get_other_config(s, vbd))["nbd-socket"]
disk = nbd.NBD()
disk.connect_unix(sock)
expect = bytearray(SIZE)
written = set()


def written_at(data, off):
    expect[off:off + len(data)] = data
    written.update(range(off // BLOCK, (off + len(data) - 1) // BLOCK + 1))


def write(data, off):
    disk.pwrite(data, off)
    disk.flush()
    written_at(data, off)


write(pattern(1, 2 * MiB), 0)
ok(x.VDI.enable_cbt(s, vdi))

# 1. A live snapshot: the disk is pivoted onto the new leaf's nbdkit.
snap1 = live_snapshot(vdi)
leaf_pid = os.path.join(RUN, ok(x.VDI.get_uuid(s, snap1)) + "-leaf.pid")
assert os.path.exists(leaf_pid), "no nbdkit serves the new leaf"
base = image_bytes("sr1", snap1)
assert base == expect, "the first snapshot reads as the disk did"
written.clear()



def move_live(vdi, sr, seed, first):
    """Async.VDI.pool_migrate of the running VM's VDI to SR while the
    guest writes into blocks FIRST to FIRST + 15; the moved VDI."""
    stop = threading.Event()
    w = nbd.NBD()
    w.connect_unix(sock)
    during = []

    def writer():
        k = 0
        while not stop.is_set():
            off = (first + k * 5 % 16) * BLOCK + 8 * KiB
            during.append((off, pattern(seed + k % 200, 4 * KiB)))
            w.pwrite(during[-1][1], off)
            k += 1
        w.flush()

    t = threading.Thread(target=writer)
    t.start()
    try:
        r = wait_task(x, s, ok(x.Async.VDI.pool_migrate(s, vdi, srs[sr], {})))
    finally:
        stop.set()
        t.join()
    w.shutdown()
    assert r["status"] == "success", r
    moved = r["result"][len("<value>"):-len("</value>")]
    for off, data in during:  # in the order written: the last one wins
        written_at(data, off)
    assert ok(x.VDI.get_SR(s, moved)) == srs[sr], "not moved to " + sr
    assert ok(x.VBD.get_VDI(s, vbd)) == moved, "the VBD does not name it"
    print("ok: live pool_migrate to %s (%d writes during the move)"
          % (sr, len(during)))
    return moved


# 2. Writes, then the live moves while the guest goes on writing.
write(pattern(2, 4 * KiB), 3 * MiB)
write(pattern(3, BLOCK), 100 * BLOCK)
moved = move_live(vdi, "sr2", 10, 16)
assert not os.path.exists(leaf_pid), \
    "the first snapshot's leaf nbdkit outlived the move"
target_pid = os.path.join(RUN, ok(x.VDI.get_uuid(s, moved)) + "-target.pid")
assert os.path.exists(target_pid), "no nbdkit serves the moved disk"
write(pattern(4, 4 * KiB), 5 * MiB)
back = move_live(moved, "sr1", 60, 64)
assert not os.path.exists(target_pid), \
    "the first move's target nbdkit outlived the second move"

# 3. Writes after the moves, a second live snapshot.
write(pattern(5, 8 * KiB), SIZE - 8 * KiB)
snap2 = live_snapshot(back)
full2 = image_bytes("sr1", snap2)
assert full2 == expect, "the second snapshot differs from what was written"
assert bytearray(disk.pread(SIZE, 0)) == expect, "the disk reads otherwise"
disk.shutdown()

# 4. The changed blocks between the two snapshots.
bits = base64.b64decode(ok(x.VDI.list_changed_blocks(s, snap1, snap2)),
                        validate=True)
assert len(bits) == NBLOCKS // 8, len(bits)
marked = {i for i in range(NBLOCKS) if bits[i // 8] >> (7 - i % 8) & 1}
differ = {i for i in range(NBLOCKS)
          if base[i * BLOCK:(i + 1) * BLOCK] != full2[i * BLOCK:(i + 1) * BLOCK]}
assert written <= marked, ("written, unmarked", sorted(written - marked))
assert differ <= marked, ("differ, unmarked", sorted(differ - marked))
# Nothing but the guest marks: the moves' copies do not, the log was not
# reset (every block set) on the way.
assert marked == written, ("marked, not written", sorted(marked - written))
print("ok: list_changed_blocks across the live moves: %d blocks written, "
      "%d differ, %d marked" % (len(written), len(differ), len(marked)))

# 5. An evacuation of sr1: the live leaf (over snap2, pivoted by the
#    second snapshot) moves with sync=top, its top layer's map asked of
#    the leaf's own nbdkit; the VM goes on on the same socket.
leaf2_pid = os.path.join(RUN, ok(x.VDI.get_uuid(s, snap2)) + "-leaf.pid")
assert os.path.exists(leaf2_pid), "no nbdkit serves the second leaf"
report = json.loads(ok(x.SR.evacuate(s, srs["sr1"], [srs["sr2"]], {})))
moved = {v["from"]["uuid"]: v["to"]["uuid"] for v in report["vdis"]}
now = "OpaqueRef:" + moved[back[len("OpaqueRef:"):]]
assert ok(x.VBD.get_VDI(s, vbd)) == now, "the VBD does not name the leaf"
assert ok(x.VDI.get_SR(s, now)) == srs["sr2"]
assert not os.path.exists(leaf2_pid), \
    "the second leaf's nbdkit outlived the evacuation"
disk = nbd.NBD()
disk.connect_unix(sock)
write(pattern(6, 4 * KiB), 6 * MiB)
assert bytearray(disk.pread(SIZE, 0)) == expect, "the disk reads otherwise"
disk.shutdown()
print("ok: SR.evacuate of the pivoted live leaf (%d VDIs moved)"
      % len(moved))
ok(x.VM.clean_shutdown(s, vm))
