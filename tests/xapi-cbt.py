# Driven by test-xapi-cbt.sh: xapi's changed-block tracking workflow, as
# a backup tool written for xapi does it, with only Python's xmlrpc.client
# and libnbd's Python binding: enable_cbt, snapshot, get_nbd_info, read
# the snapshot over TLS NBD, the VM writes, snapshot, list_changed_blocks,
# read only the changed blocks, data_destroy the older snapshot; the disk
# reassembled from the full and the changed blocks is byte for byte the
# second snapshot.  Then bad input, each with xapi's error code.
#   xapi-cbt.py URL T LIVE
# LIVE=1: the snapshots are taken while the VM runs (live snapshots);
# LIVE=0: the VM is shut down for each snapshot.
import base64
import os
import random
import sys
import threading
import time
import xmlrpc.client

import nbd

from xapi_checks import failure, ok

url, T, live = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
x = xmlrpc.client.ServerProxy(url)
s = ok(x.session.login_with_password("root", "secret", "1.0", "test"))
KiB, MiB = 1 << 10, 1 << 20
BLOCK = 64 * KiB  # xapi's CBT granularity
SIZE = 8 * MiB
srs = {r["name_label"]: ref for ref, r in ok(x.SR.get_all_records(s)).items()}


def new_vdi(name, fmt="qcow2"):
    return ok(x.VDI.create(s, {
        "SR": srs["sr1"], "name_label": name, "virtual_size": str(SIZE),
        "type": "user", "sharable": False, "read_only": False,
        "other_config": {}, "sm_config": {"image-format": fmt}}))


def pattern(seed, n):
    """N bytes that differ for each seed and offset."""
    return bytes((seed * 7 + i * 13 + (i >> 9)) & 0xFF for i in range(n))


class VM:
    """A VM with one disk; writes go through its disk's NBD socket, as a
    guest's do."""

    def __init__(self, vdi):
        self.ref = ok(x.VM.create(s, {"name_label": "cbt-vm"}))
        self.vbd = ok(x.VBD.create(s, {
            "VM": self.ref, "VDI": vdi, "userdevice": "0", "mode": "RW",
            "type": "Disk", "bootable": False, "empty": False,
            "other_config": {}}))
        self.disk = None

    def start(self):
        ok(x.VM.start(s, self.ref, False, False))
        sock = ok(x.VBD.get_other_config(s, self.vbd))["nbd-socket"]
        self.disk = nbd.NBD()
        self.disk.connect_unix(sock)

    def write(self, data, offset):
        self.disk.pwrite(data, offset)
        self.disk.flush()

    def shutdown(self):
        self.disk.shutdown()
        self.disk = None
        ok(x.VM.shutdown(s, self.ref))


def connect(info, exportname=None):
    """A TLS NBD connection as get_nbd_info says, trusting its cert."""
    certs = os.path.join(T, "certs-%s" % info["port"])
    os.makedirs(certs, exist_ok=True)
    with open(os.path.join(certs, "ca-cert.pem"), "w") as f:
        f.write(info["cert"])
    h = nbd.NBD()
    h.set_tls(nbd.TLS_REQUIRE)
    h.set_tls_certificates(certs)
    h.set_export_name(info["exportname"] if exportname is None
                      else exportname)
    h.connect_tcp(info["address"], str(info["port"]))
    return h


def refused(info, exportname=None):
    try:
        connect(info, exportname).shutdown()
    except nbd.Error as e:
        return str(e)
    raise AssertionError("the export was served: %r" % info)


def nbd_info(vdi):
    infos = ok(x.VDI.get_nbd_info(s, vdi))
    assert len(infos) == 1, infos
    info = infos[0]
    assert set(info) == {"address", "port", "cert", "exportname",
                         "subject"}, info
    assert info["cert"].startswith("-----BEGIN CERTIFICATE-----"), info
    assert info["subject"] == "localhost", info
    assert len(info["exportname"]) >= 32, info
    return info


def read_all(h):
    assert h.get_size() == SIZE and h.is_read_only()
    return bytearray(h.pread(SIZE, 0))


def snapshot(vm, vdi):
    if not live:
        vm.shutdown()
    snap = ok(x.VDI.snapshot(s, vdi, {}))
    if not live:
        vm.start()
    r = ok(x.VDI.get_record(s, snap))
    assert r["is_a_snapshot"] and r["snapshot_of"] == vdi, r
    assert r["cbt_enabled"] and r["type"] == "user", r
    return snap


# The disk, with data before CBT is on.
vdi = new_vdi("cbt-disk")
assert ok(x.VDI.get_cbt_enabled(s, vdi)) is False
vm = VM(vdi)
vm.start()
disk = bytearray(SIZE)  # what the guest wrote, as it should read
for off, n, seed in ((0, 1 * MiB, 1), (5 * MiB, 192 * KiB, 2)):
    vm.write(pattern(seed, n), off)
    disk[off:off + n] = pattern(seed, n)

# CBT on, while the VM runs (live) or halted.
if not live:
    vm.shutdown()
ok(x.VDI.enable_cbt(s, vdi))
ok(x.VDI.enable_cbt(s, vdi))  # idempotent, as xapi
assert ok(x.VDI.get_cbt_enabled(s, vdi)) is True
if not live:
    vm.start()

# The baseline: a snapshot read whole over TLS NBD.
snap1 = snapshot(vm, vdi)
info1 = nbd_info(snap1)
h = connect(info1)
base = read_all(h)
h.shutdown()
assert base == disk, "the first snapshot reads as the disk did"

# The guest writes: blocks 0, 48 and 49 (8 KiB across their border), 112
# (a whole block), and 127 (its last bytes).
writes = ((0, 4 * KiB, 3), (49 * BLOCK - 4 * KiB, 8 * KiB, 4),
          (112 * BLOCK, BLOCK, 5), (SIZE - 512, 512, 6))
for off, n, seed in writes:
    vm.write(pattern(seed, n), off)
    disk[off:off + n] = pattern(seed, n)
snap2 = snapshot(vm, vdi)

# list_changed_blocks: base64 of one bit per 64 KiB block, the first
# block the most significant bit of the first byte.
b64 = ok(x.VDI.list_changed_blocks(s, snap1, snap2))
bitmap = base64.b64decode(b64, validate=True)
assert len(bitmap) == SIZE // BLOCK // 8, len(bitmap)
changed = [i for i in range(SIZE // BLOCK)
           if bitmap[i // 8] >> (7 - i % 8) & 1]
assert changed == [0, 48, 49, 112, 127], changed

# Read only those blocks from the second snapshot onto the first.
info2 = nbd_info(snap2)
assert info2["exportname"] != info1["exportname"], "a token per export"
h = connect(info2)
for i in changed:
    base[i * BLOCK:(i + 1) * BLOCK] = h.pread(BLOCK, i * BLOCK)
full2 = read_all(h)
h.shutdown()
assert base == full2, "the reassembled disk differs from the snapshot"
assert full2 == disk, "the second snapshot differs from what was written"
print("cbt: %d changed blocks of %d read, disk reassembled identical"
      % (len(changed), SIZE // BLOCK))

if live:
    # A guest that keeps writing while a live snapshot is taken: every
    # block that differs between the two snapshots is in the bitmap (a
    # write the pause held counts for the new leaf, never for neither).
    stop, writing = threading.Event(), threading.Event()
    rnd = random.Random(8)
    w = nbd.NBD()
    w.connect_unix(ok(x.VBD.get_other_config(s, vm.vbd))["nbd-socket"])

    def writer():
        while not stop.is_set():
            off = rnd.randrange(SIZE // 4096) * 4096
            w.pwrite(pattern(rnd.randrange(256), 4096), off)
            writing.set()
        w.flush()
        w.shutdown()
    t = threading.Thread(target=writer)
    t.start()
    writing.wait(30)
    points = [(snap2, full2)]
    try:
        for _ in range(3):
            time.sleep(0.3)
            points.append((ok(x.VDI.snapshot(s, vdi, {})), None))
    finally:
        stop.set()
        t.join()
    for k in range(1, len(points)):
        h = connect(nbd_info(points[k][0]))
        points[k] = (points[k][0], read_all(h))
        h.shutdown()
        (a, full_a), (b, full_b) = points[k - 1], points[k]
        bits = base64.b64decode(ok(x.VDI.list_changed_blocks(s, a, b)))
        marked = {i for i in range(SIZE // BLOCK)
                  if bits[i // 8] >> (7 - i % 8) & 1}
        differ = {i for i in range(SIZE // BLOCK)
                  if full_a[i * BLOCK:(i + 1) * BLOCK]
                  != full_b[i * BLOCK:(i + 1) * BLOCK]}
        assert differ <= marked, ("unmarked", sorted(differ - marked))
        print("cbt: snapshot %d under writes: %d blocks differ, %d marked"
              % (k, len(differ), len(marked)))

if live:
    # The filter now serves the leaf's nbdkit (a pivot): no live move
    # until the VM restarts, refused before anything changes.
    e = failure(x.VDI.pool_migrate(s, vdi, srs["sr2"], {}), "MIRROR_FAILED")
    assert "pivoted" in e[1], e
    vm.write(pattern(9, 512), 0)
    assert vm.disk.pread(512, 0) == pattern(9, 512)

# The older snapshot's data goes; its log stays (type cbt_metadata).
ok(x.VDI.data_destroy(s, snap1))
ok(x.VDI.data_destroy(s, snap1))  # idempotent, as xapi
r = ok(x.VDI.get_record(s, snap1))
assert r["type"] == "cbt_metadata" and r["cbt_enabled"], r
refused(info1)  # its export stopped with its data
assert ok(x.VDI.list_changed_blocks(s, snap1, snap2)) == b64
e = failure(x.VDI.get_nbd_info(s, snap1), "VDI_INCOMPATIBLE_TYPE")
assert e[1:] == [snap1, "cbt_metadata"], e
e = failure(x.VDI.enable_cbt(s, snap1), "VDI_INCOMPATIBLE_TYPE")
assert e[1:] == [snap1, "cbt_metadata"], e

# Bad input, each with xapi's error.
assert "export" in refused(info2, info2["exportname"] + "0")  # wrong token
assert "export" in refused(info2, "")
s2 = ok(x.session.login_with_password("root", "secret", "1.0", "test"))
info3 = ok(x.VDI.get_nbd_info(s2, snap2))[0]
connect(info3).shutdown()
ok(x.session.logout(s2))
refused(info3)  # its session logged out
connect(info2).shutdown()  # another session's export lives on
e = failure(x.VDI.data_destroy(s, vdi), "OPERATION_NOT_ALLOWED")
assert e[1] == "VDI is not a snapshot: " + vdi, e
e = failure(x.VDI.enable_cbt(s, snap2), "OPERATION_NOT_ALLOWED")
assert e[1] == "VDI is a snapshot: " + snap2, e
other = new_vdi("unrelated", "vhd")
ok(x.VDI.enable_cbt(s, other))
other_snap = ok(x.VDI.snapshot(s, other, {}))
failure(x.VDI.list_changed_blocks(s, snap2, other_snap),
        "VDI_NO_CBT_METADATA")
failure(x.VDI.list_changed_blocks(s, other_snap, snap2),
        "VDI_NO_CBT_METADATA")
plain = new_vdi("no-cbt", "raw")
plain_snap = ok(x.VDI.snapshot(s, plain, {}))
failure(x.VDI.data_destroy(s, plain_snap), "VDI_NO_CBT_METADATA")
failure(x.VDI.list_changed_blocks(s, snap2, vdi), "VDI_IN_USE")
failure(x.VDI.list_changed_blocks(s, snap2, "OpaqueRef:nope"),
        "HANDLE_INVALID")
failure(x.VDI.enable_cbt(s, "OpaqueRef:NULL"), "HANDLE_INVALID")
failure(x.VDI.get_nbd_info(s, 42), "FIELD_TYPE_ERROR")
failure(x.VDI.list_changed_blocks(s, snap1), "MESSAGE_PARAMETER_COUNT_MISMATCH")

# disable_cbt: the log goes, a later snapshot has none.
ok(x.VDI.disable_cbt(s, vdi))
ok(x.VDI.disable_cbt(s, vdi))  # idempotent
assert ok(x.VDI.get_cbt_enabled(s, vdi)) is False
vm.write(pattern(7, 4 * KiB), 0)
snap3 = ok(x.VDI.snapshot(s, vdi, {}))
assert ok(x.VDI.get_cbt_enabled(s, snap3)) is False
failure(x.VDI.list_changed_blocks(s, snap2, snap3), "VDI_NO_CBT_METADATA")
vm.shutdown()
ok(x.session.logout(s))
print("xapi-cbt: passed (%s)" % ("live snapshots" if live else "halted"))
