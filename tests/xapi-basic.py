# Driven by test-xapi-basic.sh: the XenAPI face of vdimotiond with
# Python's standard xmlrpc.client, as a XenAPI script would use it.
#   xapi-basic.py URL SR1_DIR
import os
import shutil
import subprocess
import sys
import xmlrpc.client

import xapi_checks
from xapi_checks import failure, ok

url, sr1_dir = sys.argv[1], sys.argv[2]
x = xmlrpc.client.ServerProxy(url)


# Two to four parameters, as xapi accepts.
s = ok(x.session.login_with_password("root", "secret"))
assert s.startswith("OpaqueRef:")
s2 = ok(x.session.login_with_password("root", "secret", "2.21"))
s3 = ok(x.session.login_with_password("root", "secret", "2.21", "test"))
ok(x.session.logout(s2))
ok(x.session.logout(s3))
failure(x.host.get_all(s2), "SESSION_INVALID")

# host, in xapi's spelling and in design documents' spelling.
hosts = ok(x.host.get_all(s))
assert hosts == ok(x.Host.get_all(s)) and len(hosts) == 1
h = hosts[0]
rec = ok(x.Host.get_record(s, h))
assert ok(x.host.get_uuid(s, h)) == rec["uuid"]
assert ok(x.host.get_by_uuid(s, rec["uuid"])) == h
assert ok(x.Host.get_by_name_label(s, rec["name_label"])) == [h]
assert ok(x.HOST.get_name_label(s, h)) == rec["name_label"]
assert ok(x.session.get_this_host(s, s)) == h
assert list(ok(x.host.get_all_records(s)).keys()) == [h]

# SRs: the two given with --sr.
srs = ok(x.SR.get_all(s))
assert len(srs) == 2
assert ok(x.sr.get_all(s)) == srs
[sr1] = ok(x.SR.get_by_name_label(s, "sr1"))
[sr2] = ok(x.sr.get_by_name_label(s, "sr2"))
assert ok(x.SR.get_by_name_label(s, "nope")) == []
r1 = ok(x.SR.get_record(s, sr1))
assert r1["name_label"] == "sr1" and r1["type"] == "file", r1
assert ok(x.SR.get_by_uuid(s, r1["uuid"])) == sr1
assert ok(x.SR.get_type(s, sr1)) == "file"
assert int(ok(x.SR.get_physical_size(s, sr1))) > 0
assert ok(x.SR.get_VDIs(s, sr1)) == []
assert set(ok(x.SR.get_all_records(s)).keys()) == set(srs)

# VDI.create in each format; the image is <uuid>.<format> in the SR.
GiB = 1 << 30
made = {}
for fmt, how in [("vhd", None), ("qcow2", "sm_config"),
                 ("raw", "other_config")]:
    rec = {"SR": sr1, "name_label": "disk-" + fmt,
           "name_description": "a " + fmt + " disk",
           "virtual_size": str(GiB), "type": "user", "sharable": False,
           "read_only": False, "other_config": {"owner": "test"}}
    if how == "sm_config":
        rec["sm_config"] = {"image-format": fmt}
    elif how == "other_config":
        rec["other_config"]["dest-img-format"] = fmt
    v = ok(x.VDI.create(s, rec))
    r = ok(x.VDI.get_record(s, v))
    assert r["name_label"] == "disk-" + fmt, r
    assert r["name_description"] == "a " + fmt + " disk", r
    assert r["virtual_size"] == str(GiB), r
    assert r["SR"] == sr1, r
    assert r["sm_config"]["image-format"] == fmt, r
    assert r["other_config"]["owner"] == "test", r
    assert not r["read_only"] and r["managed"], r
    assert os.path.exists(os.path.join(sr1_dir, r["uuid"] + "." + fmt)), r
    assert ok(x.VDI.get_uuid(s, v)) == r["uuid"]
    assert ok(x.vdi.get_by_uuid(s, r["uuid"])) == v
    assert ok(x.VDI.get_virtual_size(s, v)) == str(GiB)
    assert int(ok(x.VDI.get_physical_utilisation(s, v))) >= 0
    assert ok(x.VDI.get_SR(s, v)) == sr1
    assert ok(x.VDI.get_name_label(s, v)) == "disk-" + fmt
    made[fmt] = (v, r["uuid"])
# An XML-RPC int is taken for virtual_size too.
vi = ok(x.VDI.create(s, {"SR": sr2, "name_label": "small",
                         "virtual_size": 1 << 20}))
assert ok(x.VDI.get_virtual_size(s, vi)) == str(1 << 20)

vdis = ok(x.VDI.get_all(s))
assert len(vdis) == 4, vdis
assert set(ok(x.SR.get_VDIs(s, sr1))) == {v for v, _ in made.values()}
assert ok(x.SR.get_VDIs(s, sr2)) == [vi]
assert ok(x.VDI.get_by_name_label(s, "disk-qcow2")) == [made["qcow2"][0]]
assert set(ok(x.VDI.get_all_records(s)).keys()) == set(vdis)

# VDI.destroy removes record and image.
v, u = made["raw"]
ok(x.VDI.destroy(s, v))
assert not os.path.exists(os.path.join(sr1_dir, u + ".raw"))
failure(x.VDI.get_record(s, v), "HANDLE_INVALID")
failure(x.VDI.get_by_uuid(s, u), "UUID_INVALID")
failure(x.VDI.destroy(s, v), "HANDLE_INVALID")

# SR.scan picks up an image dropped into the SR directory.
dropped = "0b6c8a52-3f7e-4d1a-9c2b-5e8f7a6d4c3b"
subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2",
                os.path.join(sr1_dir, dropped + ".qcow2"), "64M"],
               check=True)
assert len(ok(x.SR.get_VDIs(s, sr1))) == 2
ok(x.SR.scan(s, sr1))
dv = ok(x.VDI.get_by_uuid(s, dropped))
dr = ok(x.VDI.get_record(s, dv))
assert dr["virtual_size"] == str(64 << 20), dr
assert dr["SR"] == sr1 and dr["sm_config"]["image-format"] == "qcow2", dr
assert len(ok(x.SR.get_VDIs(s, sr1))) == 3
# ... and drops the record of an image that went away.
os.unlink(os.path.join(sr1_dir, dropped + ".qcow2"))
ok(x.SR.scan(s, sr1))
failure(x.VDI.get_record(s, dv), "HANDLE_INVALID")

ok(x.session.logout(s))
failure(x.SR.get_all(s), "SESSION_INVALID")
print("xapi-basic: %d checks passed" % xapi_checks.checks)
