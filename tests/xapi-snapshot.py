# Driven by test-xapi-snapshot.sh: VDI.snapshot(session, vdi,
# driver_params) as a XenAPI script calls it with Python's xmlrpc.client.
# For a VDI of each format: bytes written into its image, a snapshot, more
# bytes; the snapshot reads as the VDI did at its moment (vdimotion
# compare), the VDI reads as it does now, and the records say so
# (is_a_snapshot, snapshot_of, snapshots, snapshot_time, name_label).
#   xapi-snapshot.py URL T SR1_DIR
import os
import shutil
import subprocess
import sys
import time
import xmlrpc.client

import xapi_checks
from xapi_checks import failure, ok

url, T, sr1_dir = sys.argv[1:4]
x = xmlrpc.client.ServerProxy(url)
s = ok(x.session.login_with_password("root", "secret", "1.0", "test"))
srs = {r["name_label"]: ref for ref, r in ok(x.SR.get_all_records(s)).items()}
MiB = 1 << 20



def new_vdi(name, fmt, size=8 * MiB):
    return ok(x.VDI.create(s, {
        "SR": srs["sr1"], "name_label": name, "name_description": "d " + name,
        "virtual_size": str(size), "type": "user", "sharable": False,
        "read_only": False, "other_config": {"k": name},
        "sm_config": {"image-format": fmt}}))


def image(vdi):
    """The VDI's image file and its format."""
    r = ok(x.VDI.get_record(s, vdi))
    return (os.path.join(sr1_dir, r["location"]),
            r["sm_config"]["image-format"])


def write(vdi, pattern, offset, length):
    """PATTERN bytes into the VDI's image through libvdisk (qemu cannot
    write a differencing VHD)."""
    path, fmt = image(vdi)
    subprocess.run([os.environ["VDISK_WRITE"], path, str(offset)],
                   input=bytes([pattern]) * length, check=True)


def same(vdi, expected):
    """VDI reads as the image EXPECTED (a raw file), chain and all
    (vdimotion reads differencing VHDs, which qemu does not)."""
    path, fmt = image(vdi)
    return subprocess.call([os.environ["VDIMOTION"], "compare", "-q",
                            "-f", fmt, "-F", "raw", path, expected]) == 0


def flat(vdi, out):
    path, fmt = image(vdi)
    subprocess.check_call([os.environ["VDIMOTION"], "copy", "--no-progress", "-f", fmt,
                           "-O", "raw", path, out])


for fmt in ("vhd", "qcow2", "raw"):
    vdi = new_vdi("disk-" + fmt, fmt)
    write(vdi, 0x11, 1 * MiB, 2 * MiB)
    before = os.path.join(T, "before-%s.raw" % fmt)
    flat(vdi, before)
    t0 = int(time.time())
    snap = ok(x.VDI.snapshot(s, vdi, {}))
    assert snap.startswith("OpaqueRef:") and snap != vdi, snap
    write(vdi, 0x22, 2 * MiB, 1 * MiB)
    after = os.path.join(T, "after-%s.raw" % fmt)
    flat(vdi, after)
    assert same(snap, before), "the snapshot of %s moved on" % fmt
    assert not same(vdi, before), "the %s VDI did not go on" % fmt
    r = ok(x.VDI.get_record(s, snap))
    assert r["is_a_snapshot"] is True and r["snapshot_of"] == vdi, r
    assert r["read_only"] is True and r["SR"] == srs["sr1"], r
    assert r["name_label"] == "disk-" + fmt, r
    assert r["virtual_size"] == str(8 * MiB), r
    stime = r["snapshot_time"].value  # xmlrpc DateTime: 20261130T12:00:00
    assert stime >= time.strftime("%Y%m%dT%H:%M:%S", time.gmtime(t0 - 1)), r
    v = ok(x.VDI.get_record(s, vdi))
    assert v["is_a_snapshot"] is False and v["snapshots"] == [snap], v
    assert v["read_only"] is False and v["other_config"] == {"k": "disk-" + fmt}, v
    # A second snapshot: both listed; each keeps its moment.
    snap2 = ok(x.VDI.snapshot(s, vdi, {"ignored": "by a file SR"}))
    assert sorted(ok(x.VDI.get_snapshots(s, vdi))) == sorted([snap, snap2])
    assert ok(x.VDI.get_snapshot_of(s, snap2)) == vdi
    assert same(snap2, after) and same(vdi, after) and same(snap, before)
    print("%s: snapshot %s, then %s" % (fmt, snap, snap2))

# Bad input.
failure(x.VDI.snapshot(s, "OpaqueRef:NULL", {}), "HANDLE_INVALID")
failure(x.VDI.snapshot(s, vdi, "not a map"), "FIELD_TYPE_ERROR")
failure(x.VDI.snapshot(s, vdi, {"k": 1}), "FIELD_TYPE_ERROR")
failure(x.VDI.snapshot(s, vdi), "MESSAGE_PARAMETER_COUNT_MISMATCH")
failure(x.VDI.snapshot(s, snap, {}), "VDI_READ_ONLY")

# Async: a task whose result is the snapshot.
task = ok(x.Async.VDI.snapshot(s, vdi, {}))
t = xapi_checks.wait_task(x, s, task)
assert t["status"] == "success", t
snap3 = t["result"][len("<value>"):-len("</value>")]
assert ok(x.VDI.get_snapshot_of(s, snap3)) == vdi, t

# A disk a running VM uses: a live snapshot (live-snapshot.h).
disk = new_vdi("vm-disk", "vhd")
vm = ok(x.VM.create(s, {"name_label": "vm1", "name_description": "a VM"}))
ok(x.VBD.create(s, {"VM": vm, "VDI": disk, "userdevice": "0", "mode": "RW",
                    "type": "Disk", "bootable": False, "empty": False,
                    "other_config": {}}))
ok(x.VM.start(s, vm, False, False))
live = ok(x.VDI.snapshot(s, disk, {}))
assert ok(x.VDI.get_snapshot_of(s, live)) == disk
ok(x.VM.shutdown(s, vm))
snap = ok(x.VDI.snapshot(s, disk, {}))
assert sorted(ok(x.VDI.get_snapshots(s, disk))) == sorted([live, snap])
print("%d checks passed" % xapi_checks.checks)
