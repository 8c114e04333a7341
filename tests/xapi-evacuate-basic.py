# Driven by test-xapi-evacuate-basic.sh: SR.evacuate_plan, SR.evacuate
# and Async.SR.evacuate as a script calls them with Python's
# xmlrpc.client, on offline chains of the three formats.  Each step is a
# subcommand, so that the shell can kill and restart the daemon between
# them; what a step needs later goes into T/evac.json.
#   xapi-evacuate-basic.py URL T setup         chains in sr1, each VDI's
#                                              content kept flat aside
#   xapi-evacuate-basic.py URL T plan          the plan and bad input
#   xapi-evacuate-basic.py URL T start FROM TO [KEY=VALUE...] [cancel]
#                                              Async.SR.evacuate (and
#                                              task.cancel at once)
#   xapi-evacuate-basic.py URL T run FROM TO [KEY=VALUE...]
#                                              SR.evacuate, synchronous
#   xapi-evacuate-basic.py URL T live-setup FROM TO
#                                              a running VM's disk (a leaf
#                                              over a snapshot) in FROM
#   xapi-evacuate-basic.py URL T check FROM TO [cancelled]
#                                              wait for the task; every VDI
#                                              whole in exactly one place
import html
import json
import os
import subprocess
import sys
import time
import xmlrpc.client

import xapi_checks
from xapi_checks import failure, ok

url, T, cmd = sys.argv[1:4]
args = sys.argv[4:]
x = xmlrpc.client.ServerProxy(url)
s = ok(x.session.login_with_password("root", "secret", "1.0", "test"))
srs = {r["name_label"]: ref for ref, r in ok(x.SR.get_all_records(s)).items()}
MiB = 1 << 20
SIZE = 24 * MiB
STATE = os.path.join(T, "evac.json")
VDIMOTION = os.environ["VDIMOTION"]


def load():
    with open(STATE) as f:
        return json.load(f)


def save(st):
    with open(STATE + ".tmp", "w") as f:
        json.dump(st, f)
    os.rename(STATE + ".tmp", STATE)


def sr_dir(name):
    return os.path.join(T, name)


def image(rec):
    """The image of the VDI record REC and its format."""
    name = [n for n, ref in srs.items()
            if ref == rec["SR"]][0]
    return (os.path.join(sr_dir(name), rec["location"]),
            rec["sm_config"]["image-format"])


def write(vdi, pattern, offset, length):
    path, _ = image(ok(x.VDI.get_record(s, vdi)))
    subprocess.run([os.environ["VDISK_WRITE"], path, str(offset)],
                   input=bytes([pattern]) * length, check=True)


def flat(rec, out):
    path, fmt = image(rec)
    subprocess.check_call([VDIMOTION, "copy", "--no-progress", "-f", fmt,
                           "-O", "raw", path, out],
                          stdout=subprocess.DEVNULL)


def same(rec, raw):
    path, fmt = image(rec)
    return subprocess.call([VDIMOTION, "compare", "-q", "-f", fmt, "-F",
                            "raw", path, raw]) == 0


def layer_data(rec):
    """Bytes of data the VDI's own layer holds (vdimotion map --layer)."""
    path, fmt = image(rec)
    out = subprocess.check_output([VDIMOTION, "map", "--json", "--layer",
                                   "-f", fmt, path])
    return sum(e["length"] for e in json.loads(out)
               if e["data"] and e["depth"] == 0)


def new_vdi(name, fmt, size=SIZE, sr="sr1"):
    return ok(x.VDI.create(s, {
        "SR": srs[sr], "name_label": name, "name_description": "about " + name,
        "virtual_size": str(size), "type": "user", "sharable": False,
        "read_only": False, "other_config": {"owner": name},
        "sm_config": {"image-format": fmt}}))


def setup():
    """Four chains in sr1 (vhd, qcow2, raw: a base, two snapshots, a leaf;
    a lone raw disk), a disk larger than any SR, and a halted VM."""
    seed = 0
    for fmt in ("vhd", "qcow2", "raw"):
        leaf = new_vdi("chain-" + fmt, fmt)
        for step in range(3):
            seed += 1
            write(leaf, seed, (step * 5 + 1) * MiB, 3 * MiB)
            if step < 2:
                ok(x.VDI.snapshot(s, leaf, {}))
    lone = new_vdi("lone", "raw")
    write(lone, 0x77, 20 * MiB, 2 * MiB)
    big = int(ok(x.SR.get_physical_size(s, srs["sr1"]))) * 2
    huge = new_vdi("huge", "qcow2", size=big)
    st = {"vdis": {}, "huge": huge[len("OpaqueRef:"):], "where": {}}
    for ref in ok(x.SR.get_VDIs(s, srs["sr1"])):
        remember(st, ref, flatten=ref != huge)
    # A halted VM's disk: its VBD follows it.
    vm = ok(x.VM.create(s, {"name_label": "halted", "name_description": ""}))
    leaf = ok(x.VDI.get_by_name_label(s, "chain-qcow2"))
    leaf = [v for v in leaf if not ok(x.VDI.get_is_a_snapshot(s, v))][0]
    st["halted"] = {"leaf": leaf[10:], "vbd": ok(x.VBD.create(s, {
        "VM": vm, "VDI": leaf, "userdevice": "0", "mode": "RW",
        "type": "Disk", "bootable": False, "empty": False,
        "other_config": {}}))}
    save(st)
    print("%d VDIs in sr1" % len(st["vdis"]))


def remember(st, ref, flatten=True):
    """What VDI REF is now, to compare with once it moved: its record,
    its content (flat, aside) and its layer's data."""
    rec = ok(x.VDI.get_record(s, ref))
    raw = os.path.join(T, "flat-%s.raw" % rec["uuid"])
    if flatten:
        flat(rec, raw)
    st["vdis"][rec["uuid"]] = {
        "name_label": rec["name_label"],
        "name_description": rec["name_description"],
        "other_config": rec["other_config"],
        "is_a_snapshot": rec["is_a_snapshot"],
        "snapshot_of": rec["snapshot_of"],
        "snapshot_time": rec["snapshot_time"].value,
        "format": rec["sm_config"]["image-format"],
        "raw": raw, "layer_data": layer_data(rec)}
    st["where"][rec["uuid"]] = rec["uuid"]


def plan():
    st = load()
    huge = st["huge"]
    to = [srs["sr2"]]
    p = json.loads(ok(x.SR.evacuate_plan(s, srs["sr1"], to, {})))
    assert p["fits"] is False and p["sr"] == srs["sr1"][10:], p
    assert p["dest_srs"] == [srs["sr2"][10:]], p
    refused = [c for c in p["chains"] if c["refused"]]
    assert len(refused) == 1, p
    assert [v["uuid"] for v in refused[0]["vdis"]] == [huge], refused
    assert "larger than any destination" in refused[0]["refused"], refused
    assert refused[0]["dest_sr"] is None, refused
    # Four chains to move, in size order, every VDI in one, bottom first.
    moving = [c for c in p["chains"] if not c["refused"]]
    assert len(moving) == 4, p
    assert [c["bytes"] for c in moving] == sorted(
        [c["bytes"] for c in moving], reverse=True), p
    seen = set()
    for c in moving:
        assert c["dest_sr"] == srs["sr2"][10:] and not c["live"], c
        assert c["need"] > c["bytes"], c
        ids = [v["uuid"] for v in c["vdis"]]
        for i, v in enumerate(c["vdis"]):
            assert v["parent"] is None if i == 0 else v["parent"] in ids[:i], c
            assert v["dest_format"] == v["format"], v
        seen |= set(ids)
    assert seen | {huge} == set(st["vdis"]), (seen, st["vdis"].keys())
    assert p["totals"]["vdis"] == len(st["vdis"]), p
    assert p["totals"]["refused_chains"] == 1, p
    assert p["rate"]["bytes_per_second"] > 0 and p["rate"]["source"], p
    assert p["estimated_seconds"] > 0, p
    # Nothing starts unless it all fits...
    e = failure(x.SR.evacuate(s, srs["sr1"], to, {}), "SR_FULL")
    assert huge in e[2], e
    # ...or the rest is asked for, or the big one excluded.
    p = json.loads(ok(x.SR.evacuate_plan(s, srs["sr1"], to,
                                         {"exclude": huge, "order": "name",
                                          "parallel": "2"})))
    assert p["fits"] is True and p["parallel"] == 2, p
    assert [e["uuid"] for e in p["excluded"]] == [huge], p
    labels = [c["vdis"][-1]["name_label"] for c in p["chains"]]
    assert labels == sorted(labels), labels
    print("plan: %d chains, %d bytes, %.2f s estimated (%s)" % (
        len(p["chains"]), p["totals"]["bytes"], p["estimated_seconds"],
        p["rate"]["source"]))
    p = json.loads(ok(x.SR.evacuate_plan(s, srs["sr1"], to,
                                         {"dest-img-format": "raw",
                                          "exclude": huge})))
    assert p["fits"] is False, p
    assert all("raw cannot have a parent" in c["refused"]
               for c in p["chains"] if len(c["vdis"]) > 1), p
    # Bad input names what is wrong.
    for opts, what in (({"speed": "1"}, "speed"), ({"parallel": "0"},
                       "parallel"), ({"parallel": "x"}, "parallel"),
                       ({"order": "age"}, "order"),
                       ({"dest-img-format": "vmdk"}, "dest-img-format"),
                       ({"exclude": "not-a-uuid"}, "exclude"),
                       ({"exclude": "00000000-0000-4000-8000-000000000000"},
                        "exclude"),
                       ({"partial": "yes"}, "partial")):
        e = failure(x.SR.evacuate_plan(s, srs["sr1"], to, opts),
                    "INVALID_VALUE")
        assert e[1] == what, (opts, e)
        failure(x.SR.evacuate(s, srs["sr1"], to, opts), "INVALID_VALUE")
    e = failure(x.SR.evacuate_plan(s, srs["sr1"], [srs["sr1"]], {}),
                "INVALID_VALUE")
    assert e[1] == "dest_srs" and "cannot be a destination" in e[3], e
    failure(x.SR.evacuate_plan(s, srs["sr1"], [], {}), "INVALID_VALUE")
    failure(x.SR.evacuate_plan(s, srs["sr1"], ["OpaqueRef:NULL"], {}),
            "HANDLE_INVALID")
    failure(x.SR.evacuate_plan(s, "OpaqueRef:NULL", to, {}),
            "HANDLE_INVALID")
    failure(x.SR.evacuate_plan(s, srs["sr1"], "sr2", {}), "FIELD_TYPE_ERROR")
    failure(x.SR.evacuate_plan(s, srs["sr1"], to, {"parallel": 2}),
            "FIELD_TYPE_ERROR")


def options_of(frm, opts):
    st = load()
    options = dict(o.split("=", 1) for o in opts)
    if frm == "sr1":
        options["exclude"] = st["huge"]
    return options


def start(frm, to, opts):
    """Async.SR.evacuate; with "cancel" among OPTS, task.cancel soon."""
    st = load()
    cancel = "cancel" in opts
    task = ok(x.Async.SR.evacuate(
        s, srs[frm], [srs[to]],
        options_of(frm, [o for o in opts if o != "cancel"])))
    if cancel:
        # Once the first chain moved, if the run is that slow.
        for _ in range(200):
            r = ok(x.task.get_record(s, task))
            rep = r["other_config"].get("evacuate-report")
            if r["status"] != "pending" or (
                    rep and json.loads(rep)["totals"]["moved"]):
                break
            time.sleep(0.005)
        ok(x.task.cancel(s, task))
    st["task"] = task
    save(st)
    print(task)


def wait_task(task):
    """The task's record once it ended; the report so far is readable
    while it runs."""
    seen = 0
    while True:
        try:
            t = ok(x.task.get_record(s, task))
        except ConnectionError:
            time.sleep(0.1)
            continue
        if t["status"] not in ("pending", "cancelling"):
            return t, seen
        r = t["other_config"].get("evacuate-report")
        if r:
            r = json.loads(r)
            assert r["state"] == "running" and 0 <= r["progress"] <= 1, r
            seen += 1
        time.sleep(0.05)


def records(sr):
    return {r["uuid"]: r for r in
            (ok(x.VDI.get_record(s, v)) for v in ok(x.SR.get_VDIs(s, srs[sr])))}


def check(frm, to, cancelled):
    t, seen = wait_task(load()["task"])
    want = "cancelled" if cancelled else "success"
    assert t["status"] in (want, "success"), t
    text = t["result"]
    assert text.startswith("<value>") and text.endswith("</value>"), t
    verify(frm, to, t["status"], html.unescape(text[7:-8]), seen)


def run(frm, to, opts):
    """The synchronous SR.evacuate: its value is the report."""
    report = ok(x.SR.evacuate(s, srs[frm], [srs[to]], options_of(frm, opts)))
    verify(frm, to, "success", report, 0)


def verify(frm, to, status, text, seen):
    """After an evacuation FRM → TO that ended in STATUS with the report
    TEXT: every VDI whole in exactly one place, its content, record and
    place in its chain as before."""
    st = load()
    report = json.loads(text)
    assert report["state"] == ("cancelled" if status == "cancelled"
                               else "done"), report
    here, there = records(frm), records(to)
    moved = {v["from"]["uuid"]: v["to"]["uuid"] for v in report["vdis"]
             if v["state"] == "moved"}
    states = {v["from"]["uuid"]: v["state"] for v in report["vdis"]}
    assert set(states.values()) <= {"moved", "skipped"}, report
    for v in report["vdis"]:
        assert v["from"]["sr"] == srs[frm][10:], v
        if v["state"] == "moved":
            assert v["to"]["sr"] == srs[to][10:] and v["error"] is None, v
        else:
            assert v["to"]["uuid"] is None and v["error"], v
    for origin, cur in list(st["where"].items()):
        if cur not in states:
            continue
        if states[cur] == "moved":
            assert cur not in here and moved[cur] in there, (cur, report)
            st["where"][origin] = moved[cur]
        else:
            assert cur in here, (cur, report)
    allnow = set(st["where"].values())
    assert set(here) | set(there) == allnow, (set(here), set(there), allnow)
    recs = dict(here, **there)
    for origin, v in st["vdis"].items():
        rec = recs[st["where"][origin]]
        assert "vdimotion-task" not in rec["other_config"], rec
        for k in ("name_label", "name_description", "is_a_snapshot"):
            assert rec[k] == v[k], (k, rec, v)
        # other_config as it was, plus, once moved, what it was before
        # (vdimotion-moved-from: newest first, the origin in it).
        oc = dict(rec["other_config"])
        was = oc.pop("vdimotion-moved-from", None)
        assert oc == v["other_config"], (rec, v)
        if rec["uuid"] != origin:
            assert was and origin in was.split(","), (origin, rec)
        assert rec["snapshot_time"].value == v["snapshot_time"], (rec, v)
        if v["is_a_snapshot"]:
            of = st["where"][v["snapshot_of"][len("OpaqueRef:"):]]
            assert rec["snapshot_of"] == "OpaqueRef:" + of, (rec, v)
            assert rec["read_only"] is True, rec
        if origin == st["huge"] or st["where"][origin] not in there:
            continue  # not moved this time: its bytes were not touched
        assert same(rec, v["raw"]), "content of %s (%s)" % (
            rec["uuid"], v["name_label"])
        # Copied as a layer: no more data than its source layer held (a
        # live leaf too: the mirror syncs its top layer alone).
        assert layer_data(rec) <= v["layer_data"], (rec, v)
    if status == "success" and frm == "sr1":
        assert set(here) == {st["huge"]}, here
    elif status == "success":
        assert not here, here
    tot = report["totals"]
    assert tot["moved"] == len(moved) and tot["failed"] == 0, report
    halted = st["halted"]
    assert ok(x.VBD.get_VDI(s, halted["vbd"])) == \
        "OpaqueRef:" + st["where"][halted["leaf"]]
    save(st)
    if "vm" in st:
        live_check()
    print("%s: %d moved, %d left, %d reports seen while it ran, %.0f MB/s"
          % (status, len(moved), len(here), seen,
             tot["bytes_per_second"] / 1e6))


def live_setup(frm, to):
    """A running VM's disk, a leaf over its snapshot in FROM, to move with
    the rest (start, check)."""
    st = load()
    leaf = new_vdi("live", "vhd", sr=frm)
    write(leaf, 0x51, 2 * MiB, 4 * MiB)
    snap = ok(x.VDI.snapshot(s, leaf, {}))
    write(leaf, 0x52, 4 * MiB, 4 * MiB)
    vm = ok(x.VM.create(s, {"name_label": "vm", "name_description": ""}))
    vbd = ok(x.VBD.create(s, {"VM": vm, "VDI": leaf, "userdevice": "0",
                              "mode": "RW", "type": "Disk",
                              "bootable": False, "empty": False,
                              "other_config": {}}))
    ok(x.VM.start(s, vm, False, False))
    for ref in (snap, leaf):
        remember(st, ref)
    st["vm"] = {"vm": vm, "vbd": vbd, "leaf": leaf[10:],
                "sock": ok(x.VBD.get_other_config(s, vbd))["nbd-socket"]}
    save(st)
    p = json.loads(ok(x.SR.evacuate_plan(s, srs[frm], [srs[to]], {})))
    c = [c for c in p["chains"] if c["live"]]
    assert len(c) == 1 and c[0]["vdis"][-1]["vbd"] == vbd[10:], p
    # The copies so far measured this host's rate.
    assert p["rate"]["source"].startswith("measured on this host"), p


def live_check():
    """The VM kept running on the same socket; its VBD names the new
    leaf.  Then it stops."""
    st = load()
    vm = st.pop("vm")
    assert ok(x.VM.get_power_state(s, vm["vm"])) == "Running"
    assert ok(x.VBD.get_VDI(s, vm["vbd"])) == \
        "OpaqueRef:" + st["where"][vm["leaf"]]
    assert ok(x.VBD.get_other_config(s, vm["vbd"]))["nbd-socket"] == \
        vm["sock"]
    ok(x.VM.shutdown(s, vm["vm"]))
    save(st)


if cmd == "setup":
    setup()
elif cmd == "plan":
    plan()
elif cmd == "start":
    start(args[0], args[1], args[2:])
elif cmd == "check":
    check(args[0], args[1], args[2:] == ["cancelled"])
elif cmd == "run":
    run(args[0], args[1], args[2:])
elif cmd == "live-setup":
    live_setup(args[0], args[1])
else:
    sys.exit("unknown step " + cmd)
