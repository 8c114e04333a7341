# Driven by test-xapi-live-move-crash.sh: a live move of a disk that a
# live snapshot pivoted, the daemon killed at a point around the switch
# of its servers (VDIMOTIOND_CRASH_AT), and what the next start left.
#   xapi-live-move-crash.py URL T setup    a running VM (its disk's
#                                          socket printed, the rest in
#                                          T/lm.json)
#   xapi-live-move-crash.py URL T snapshot its disk pivoted by a live
#                                          snapshot
#   xapi-live-move-crash.py URL T move [evacuate]
#                                          Async.VDI.pool_migrate of the
#                                          disk to the other SR (or
#                                          Async.SR.evacuate of its SR;
#                                          the daemon dies on the way)
#   xapi-live-move-crash.py URL T check moved|stayed
#   xapi-live-move-crash.py URL T halt     VM.shutdown: no nbdkit left
# check: the task ended as the point says (moved: success, an
# evacuation resumed; stayed: MIRROR_FAILED), the VBD names the VDI
# that holds the disk, the VM runs, the move's record is gone, every
# nbdkit serving from the run dir is one a VBD record names, and the VDI
# the disk left (the old leaf) is gone with its file and with every
# nbdkit that named it.
import glob
import json
import os
import sqlite3
import sys
import xmlrpc.client

from xapi_checks import new_vdi, new_vm, ok, wait_task

url, T, phase = sys.argv[1], sys.argv[2], sys.argv[3]
x = xmlrpc.client.ServerProxy(url)
s = ok(x.session.login_with_password("root", "secret", "1.0", "test"))
SIZE = 16 << 20
RUN = os.path.join(T, "state", "run")
state_file = os.path.join(T, "lm.json")
srs = {r["name_label"]: ref for ref, r in ok(x.SR.get_all_records(s)).items()}


def image(vdi_uuid):
    """The image file of VDI_UUID in sr1 or sr2, or None."""
    found = [p for p in glob.glob(os.path.join(T, "sr[12]", vdi_uuid + ".*"))
             if p.rsplit(".", 1)[1] in ("qcow2", "vhd", "raw")]
    assert len(found) <= 1, found
    return found[0] if found else None


def nbdkits():
    """{pid: argv} of the live nbdkit processes serving from the run dir."""
    out = {}
    for d in glob.glob("/proc/[0-9]*"):
        try:
            argv = open(d + "/cmdline", "rb").read().split(b"\0")
            st = open(d + "/stat").read()
        except OSError:
            continue
        if st[st.rindex(")") + 2] == "Z":
            continue
        argv = [a.decode(errors="replace") for a in argv if a]
        if "-U" in argv and argv[argv.index("-U") + 1].startswith(RUN + "/"):
            out[int(d[len("/proc/"):])] = argv
    return out


if phase == "setup":
    vdi = new_vdi(x, s, srs["sr1"], "crash-move", SIZE, "qcow2")
    vm, vbd = new_vm(x, s, "crash-move-vm", vdi)
    sock = ok(x.VBD.get_other_config(s, vbd))["nbd-socket"]
    with open(state_file, "w") as f:
        json.dump({"vdi": vdi, "vm": vm, "vbd": vbd, "sock": sock,
                   "tasks": []}, f)
    print(sock)
    sys.exit(0)

saved = json.load(open(state_file))
vdi, vm, vbd = saved["vdi"], saved["vm"], saved["vbd"]

if phase == "snapshot":
    # The disk is pivoted onto the new leaf's nbdkit.
    snap = ok(x.VDI.snapshot(s, vdi, {}))
    leaf = os.path.join(RUN, ok(x.VDI.get_uuid(s, snap)) + "-leaf.pid")
    assert os.path.exists(leaf), "no nbdkit serves the new leaf"
    sys.exit(0)

if phase == "move":
    here, there = "sr1", "sr2"
    if ok(x.VDI.get_SR(s, vdi)) != srs["sr1"]:
        here, there = there, here
    saved["from"] = ok(x.VDI.get_uuid(s, vdi))
    saved["from_image"] = image(saved["from"])
    saved["there"] = there
    saved["label"] = "VDI.pool_migrate " + saved["from"]
    evacuate = sys.argv[4:] == ["evacuate"]
    if evacuate:
        saved["label"] = "SR.evacuate " + here
    json.dump(saved, open(state_file, "w"))
    try:
        if evacuate:
            x.Async.SR.evacuate(s, srs[here], [srs[there]], {})
        else:
            x.Async.VDI.pool_migrate(s, vdi, srs[there], {})
    except (ConnectionError, xmlrpc.client.ProtocolError, OSError):
        pass  # the daemon died before it answered
    sys.exit(0)

if phase == "halt":
    # The VM stops: so do all its disk's servers.
    ok(x.VM.shutdown(s, vm))
    assert not nbdkits(), ("nbdkits outlived the VM", nbdkits())
    sys.exit(0)

assert phase == "check", phase
expect = sys.argv[4]
tasks = [t for t, r in ok(x.task.get_all_records(s)).items()
         if r["name_label"] == saved["label"] and t not in saved["tasks"]]
assert len(tasks) == 1, ("the move's task", tasks)
r = wait_task(x, s, tasks[0])
saved["tasks"].append(tasks[0])
now = ok(x.VBD.get_VDI(s, vbd))
if expect == "moved":
    assert r["status"] == "success", r
    if saved["label"].startswith("VDI.pool_migrate"):
        moved = r["result"][len("<value>"):-len("</value>")]
        assert now == moved, ("the VBD does not name the moved VDI", now,
                              moved)
    assert now != vdi, "the VBD names the VDI it left"
    assert ok(x.VDI.get_SR(s, now)) == srs[saved["there"]], "not moved"
    gone = saved["from_image"]
    assert not os.path.exists(gone), "the old leaf's file stays: " + gone
else:
    assert r["status"] == "failure", r
    assert r["error_info"][0] == "MIRROR_FAILED", r
    assert now == vdi, ("the VBD no longer names the VDI", now, vdi)
    assert image(saved["from"]) == saved["from_image"], "the VDI moved"
    gone = None
saved["vdi"] = now
json.dump(saved, open(state_file, "w"))
assert ok(x.VM.get_power_state(s, vm)) == "Running", "the VM stopped"
assert not glob.glob(os.path.join(RUN, "*.move")), \
    "a move's record stays: %s" % glob.glob(os.path.join(RUN, "*.move"))

# Every nbdkit serving from the run dir is one a VBD record names.
db = sqlite3.connect(os.path.join(T, "state", "state.db"))
named = {}
for sock, pid, tsock, tpid in db.execute(
        "SELECT nbd_socket, pid, target_socket, target_pid FROM vbds"):
    named.update({pid: sock, tpid: tsock})
(pid, tpid), = db.execute("SELECT pid, target_pid FROM vbds WHERE uuid = ?",
                          (ok(x.VBD.get_uuid(s, vbd)),))
servers = nbdkits()
for p, argv in servers.items():
    sock = argv[argv.index("-U") + 1]
    assert named.get(p) == sock, \
        ("an nbdkit no record names", p, " ".join(argv))
# The disk's servers: the VM's own (whose command line names the image
# it opened, renamed into the snapshot under it) and the leaf it
# forwards to, which serves the VDI the VBD names, and nothing serves
# the old leaf.
assert sorted(servers) == sorted([pid, tpid]), (servers, pid, tpid)
now_image = image(ok(x.VDI.get_uuid(s, now)))
assert "file=" + now_image in servers[tpid], \
    ("the VBD's target serves another VDI", now_image, servers[tpid])
if gone:
    for p, argv in servers.items():
        assert p == pid or "file=" + gone not in argv, \
            ("an nbdkit serves the old leaf", p, " ".join(argv))
print("%s, %d nbdkits, each recorded" % (expect, len(servers)))
