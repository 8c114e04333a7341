# Driven by test-xapi-evacuate.sh: an SR emptied into two others while
# its VMs run (SR.evacuate_plan, Async.SR.evacuate), as a XenAPI script
# does it with Python's xmlrpc.client.
#
# sr1 holds four chains of a base, a second snapshot and a leaf (each
# made by VDI.snapshot twice of a VDI of each format: raw, VHD, qcow2,
# VHD; a raw VDI's leaf becomes qcow2 at its first snapshot), bytes
# written into every layer, and one VDI larger than either destination
# (its virtual size twice the filesystem's).  Three leaves are
# disks of running VMs, fio writing and verifying through their sockets
# the whole time.  The dry run lists every VDI, refuses the large one
# with its reason and starts nothing; so does SR.evacuate.  With the
# large one excluded and parallel=3 everything moves: every snapshot and
# the offline leaf read as they did (vdimotion compare of the chains
# flattened before and after), the live leaves hold what was written
# before and every block fio wrote (fio's verify), the snapshot records
# are intact, the VMs never stopped (power state and the pid of the
# nbdkit serving each disk unchanged), and sr1 holds the large VDI only.
#   xapi-evacuate.py URL T SR1_DIR DISK_MIB
import html
import json
import os
import subprocess
import sys
import threading
import time
import xmlrpc.client

import xapi_checks
from xapi_checks import failure, ok

url, T, sr1_dir = sys.argv[1:4]
MiB = 1 << 20
DISK = int(sys.argv[4]) * MiB
HALF = DISK // 2
x = xmlrpc.client.ServerProxy(url)
s = ok(x.session.login_with_password("root", "secret", "1.0", "test"))
srs = {r["name_label"]: ref for ref, r in ok(x.SR.get_all_records(s)).items()}
sr_dirs = {ref: os.path.join(T, name) for name, ref in srs.items()}
VDIMOTION = os.environ["VDIMOTION"]


def new_vdi(name, fmt, size):
    return ok(x.VDI.create(s, {
        "SR": srs["sr1"], "name_label": name, "name_description": "d " + name,
        "virtual_size": str(size), "type": "user", "sharable": False,
        "read_only": False, "other_config": {}, "sm_config": {
            "image-format": fmt}}))


def image(vdi):
    """The VDI's image file and its format."""
    r = ok(x.VDI.get_record(s, vdi))
    return (os.path.join(sr_dirs[r["SR"]], r["location"]),
            r["sm_config"]["image-format"])


def write(vdi, pattern, offset, length):
    """PATTERN bytes into the VDI's leaf layer through libvdisk."""
    path, fmt = image(vdi)
    subprocess.run([os.environ["VDISK_WRITE"], path, str(offset)],
                   input=bytes([pattern]) * length, check=True)


def flat(vdi, out):
    """The VDI's chain, flattened, into the raw file OUT."""
    path, fmt = image(vdi)
    subprocess.check_call([VDIMOTION, "copy", "--no-progress", "--overwrite",
                           "-f", fmt, "-O", "raw", path, out],
                          stdout=subprocess.DEVNULL)


def same(vdi, raw):
    """Does the VDI, chain and all, read as the raw file RAW?"""
    path, fmt = image(vdi)
    return subprocess.call([VDIMOTION, "compare", "-q", "-f", fmt, "-F",
                            "raw", path, raw]) == 0


def fio(sock, seed, **kw):
    return xapi_checks.fio(T, sock, seed, HALF, HALF, **kw)


# ---- The SR: four chains and a large VDI --------------------------------

chains = []  # {"name", "leaf", "snaps": {uuid: raw file}, "lower": raw}
for k, fmt in enumerate(("raw", "vhd", "qcow2", "vhd")):
    name = "c%d-%s" % (k, fmt)
    leaf = new_vdi(name, fmt, DISK)
    snaps = {}
    # Each layer gets its own bytes in the lower half (the upper half is
    # fio's): the base, then each snapshot's child.
    for n, pattern in enumerate((0x10 + k, 0x20 + k)):
        write(leaf, pattern, n * MiB, 2 * MiB)
        snap = ok(x.VDI.snapshot(s, leaf, {}))
        raw = os.path.join(T, "%s-snap%d.raw" % (name, n))
        flat(snap, raw)
        snaps[ok(x.VDI.get_uuid(s, snap))] = raw
    write(leaf, 0x30 + k, 3 * MiB, 1 * MiB)
    lower = os.path.join(T, "%s-leaf.raw" % name)
    flat(leaf, lower)
    chains.append({"name": name, "leaf": leaf, "snaps": snaps,
                   "lower": lower, "uuid": ok(x.VDI.get_uuid(s, leaf))})

big = new_vdi("big", "qcow2",
              2 * int(ok(x.SR.get_physical_size(s, srs["sr1"]))))
write(big, 0x5a, 0, MiB)
big_uuid = ok(x.VDI.get_uuid(s, big))
all_uuids = {ok(x.VDI.get_uuid(s, v)) for v in ok(x.SR.get_VDIs(s, srs["sr1"]))}
assert len(all_uuids) == 13, all_uuids

# Three leaves are disks of running VMs.
vms = []
for c in chains[:3]:
    vm = ok(x.VM.create(s, {"name_label": "vm-" + c["name"]}))
    vbd = ok(x.VBD.create(s, {
        "VM": vm, "VDI": c["leaf"], "userdevice": "0", "mode": "RW",
        "type": "Disk", "bootable": False, "empty": False,
        "other_config": {}}))
    ok(x.VM.start(s, vm, False, False))
    sock = ok(x.VBD.get_other_config(s, vbd))["nbd-socket"]
    with open(sock[:-len(".sock")] + ".pid") as f:
        pid = int(f.read())
    c.update(vm=vm, vbd=vbd, sock=sock, pid=pid)
    vms.append(c)
dests = [srs["sr2"], srs["sr3"]]

# ---- The plan: every VDI, the large one refused, nothing started --------

files_before = sorted(os.listdir(sr1_dir))
dest_uuids = [ok(x.SR.get_uuid(s, d)) for d in dests]
plan = json.loads(ok(x.SR.evacuate_plan(s, srs["sr1"], dests, {})))
listed = {v["uuid"] for c in plan["chains"] for v in c["vdis"]}
assert listed == all_uuids, (listed, all_uuids)
assert len(plan["chains"]) == 5 and plan["fits"] is False, plan
assert plan["totals"]["vdis"] == 13, plan
assert plan["totals"]["refused_chains"] == 1, plan
for c in plan["chains"]:
    uuids = [v["uuid"] for v in c["vdis"]]
    if big_uuid in uuids:
        assert uuids == [big_uuid] and c["refused"], c
        assert c["dest_sr"] is None, c
        print("plan: the large VDI is refused: %s" % c["refused"])
        continue
    assert c["refused"] is None and c["dest_sr"] in dest_uuids, c
    mine = [ch for ch in chains if ch["uuid"] == uuids[-1]]
    assert len(mine) == 1 and len(uuids) == 3, (c, chains)
    assert set(uuids[:2]) == set(mine[0]["snaps"]), (c, mine)
    assert [v["is_snapshot"] for v in c["vdis"]] == [True, True, False], c
    assert [v["parent"] for v in c["vdis"]] == [None] + uuids[:2], c
    assert c["live"] is ("vm" in mine[0]), c
    assert (c["vdis"][-1]["vbd"] is not None) is ("vm" in mine[0]), c
    assert 0 < c["bytes"] < c["need"], c
assert plan["totals"]["bytes"] > 0 and plan["estimated_seconds"] > 0, plan
print("plan: %d chains, %d bytes, about %.1f s (%s)" % (
    len(plan["chains"]), plan["totals"]["bytes"], plan["estimated_seconds"],
    plan["rate"]["source"]))
# Whole or nothing: the run is refused as the plan is.
e = failure(x.SR.evacuate(s, srs["sr1"], dests, {}), "SR_FULL")
assert big_uuid in " ".join(e), e
task = ok(x.Async.SR.evacuate(s, srs["sr1"], dests, {}))
t = xapi_checks.wait_task(x, s, task)
assert t["status"] == "failure" and t["error_info"][0] == "SR_FULL", t
assert sorted(os.listdir(sr1_dir)) == files_before
assert {ok(x.VDI.get_uuid(s, v))
        for v in ok(x.SR.get_VDIs(s, srs["sr1"]))} == all_uuids
assert ok(x.SR.get_VDIs(s, srs["sr2"])) == ok(x.SR.get_VDIs(s, srs["sr3"])) == []
failure(x.SR.evacuate_plan(s, "OpaqueRef:NULL", dests, {}), "HANDLE_INVALID")
failure(x.SR.evacuate_plan(s, srs["sr1"], ["OpaqueRef:NULL"], {}),
        "HANDLE_INVALID")
failure(x.SR.evacuate_plan(s, srs["sr1"], dests, {"order": "colour"}),
        "INVALID_VALUE")

# ---- The run: fio writing and verifying the whole time -------------------

for k, c in enumerate(vms):
    assert fio(c["sock"], 100 * k) == 0, "fio before the evacuation"
stop = threading.Event()
rounds = {}


def writer(k, c):
    """fio rounds (randwrite + crc32c verify of the upper half, a new
    seed each) until the evacuation has ended; the last seed is kept."""
    n = 0
    while not stop.is_set():
        n += 1
        rc = fio(c["sock"], 100 * k + n, rate=800)
        if rc != 0:
            rounds[k] = ("failed", n)
            return
        rounds[k] = ("ok", n)


threads = [threading.Thread(target=writer, args=(k, c))
           for k, c in enumerate(vms)]
for t in threads:
    t.start()
time.sleep(1)
options = {"parallel": "3", "exclude": big_uuid}
task = ok(x.Async.SR.evacuate(s, srs["sr1"], dests, options))
states_seen = set()
chains_at_once = 0
while True:
    t = ok(x.task.get_record(s, task))
    if t["status"] not in ("pending", "cancelling"):
        break
    so_far = t["other_config"].get("evacuate-report")
    if so_far:
        vdis = json.loads(so_far)["vdis"]
        states_seen |= {v["state"] for v in vdis}
        chains_at_once = max(chains_at_once, len(
            {v["chain"] for v in vdis if v["state"] == "moving"}))
    time.sleep(0.1)
stop.set()
for th in threads:
    th.join()
assert t["status"] == "success", t
assert t["result"].startswith("<value>") and t["result"].endswith("</value>")
report = json.loads(html.unescape(t["result"][len("<value>"):-len("</value>")]))
print("run: states seen %s, at most %d chains moving at once, fio rounds %s"
      % (sorted(states_seen), chains_at_once, rounds))
assert chains_at_once <= 3, chains_at_once
assert all(r[0] == "ok" for r in rounds.values()) and len(rounds) == 3, \
    ("fio failed during the evacuation", rounds)
tot = report["totals"]
assert report["state"] == "done", report
assert tot["failed"] == 0 and tot["moved"] == 12, report
assert {v["from"]["uuid"] for v in report["vdis"] if v["state"] == "moved"} \
    == all_uuids - {big_uuid}, report
for v in report["vdis"]:
    if v["from"]["uuid"] == big_uuid:
        assert v["state"] == "skipped" and v["error"], v
    else:
        assert v["error"] is None and v["to"]["sr"] in dest_uuids, v
print("report: %d moved, %d bytes, %.0f MB/s" % (
    tot["moved"], tot["bytes"], tot["bytes_per_second"] / 1e6))

# ---- Everything where it should be, as it was ----------------------------

left = [ok(x.VDI.get_uuid(s, v)) for v in ok(x.SR.get_VDIs(s, srs["sr1"]))]
assert left == [big_uuid], left
assert sorted(f for f in os.listdir(sr1_dir) if not f.startswith("sr.db")) \
    == [os.path.basename(image(big)[0])], os.listdir(sr1_dir)
for c in chains:
    leaves = [v for v in ok(x.VDI.get_by_name_label(s, c["name"]))
              if not ok(x.VDI.get_is_a_snapshot(s, v))]
    assert len(leaves) == 1, (c["name"], leaves)
    leaf = leaves[0]
    r = ok(x.VDI.get_record(s, leaf))
    assert r["SR"] in dests and r["name_label"] == c["name"], r
    assert r["virtual_size"] == str(DISK), r
    snaps = r["snapshots"]
    assert len(snaps) == 2, r
    matched = set()
    for snap in snaps:
        sr = ok(x.VDI.get_record(s, snap))
        assert sr["is_a_snapshot"] is True and sr["snapshot_of"] == leaf, sr
        assert sr["name_label"] == c["name"] and sr["SR"] == r["SR"], sr
        assert sr["read_only"] is True, sr
        hits = [u for u, raw in c["snaps"].items() if same(snap, raw)]
        assert len(hits) == 1, ("a snapshot reads as no layer it was", sr)
        matched.add(hits[0])
    assert matched == set(c["snaps"]), (c, matched)
    c["new"] = leaf
    if "vm" not in c:
        assert same(leaf, c["lower"]), "the offline leaf %s" % c["name"]
print("layers: every snapshot and the offline leaf read as before")

# The VMs ran all along, on the same nbdkit, now over the new leaves.
for k, c in enumerate(vms):
    assert ok(x.VM.get_power_state(s, c["vm"])) == "Running"
    assert ok(x.VBD.get_VDI(s, c["vbd"])) == c["new"]
    assert ok(x.VBD.get_other_config(s, c["vbd"]))["nbd-socket"] == c["sock"]
    with open(c["sock"][:-len(".sock")] + ".pid") as f:
        assert int(f.read()) == c["pid"], "the VM's nbdkit was restarted"
    os.kill(c["pid"], 0)
    assert fio(c["sock"], 100 * k + rounds[k][1], verify_only=True) == 0
    ok(x.VM.shutdown(s, c["vm"]))
    # The lower half as it was, read from the new leaf's image.
    got = os.path.join(T, "after-%s.raw" % c["name"])
    flat(c["new"], got)
    with open(got, "rb") as a, open(c["lower"], "rb") as b:
        assert a.read(HALF) == b.read(HALF), "the live leaf %s" % c["name"]
print("VMs: running all along on the same nbdkit; fio's blocks verified")
print("xapi-evacuate: %d checks passed" % xapi_checks.checks)
