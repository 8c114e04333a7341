# Driven by test-xapi-kill-sweep.sh, one step per run, with kill -9 of
# the daemon between them.  State passes between steps in a file in T.
#   xapi-kill-sweep.py URL T setup
#   xapi-kill-sweep.py URL T start copy|migrate FORMAT   (prints the task)
#   xapi-kill-sweep.py URL T check                       (prints the outcome)
import http.client
import json
import os
import subprocess
import sys
import time
import xml.parsers.expat
import xmlrpc.client

import xapi_checks
from xapi_checks import failure, ok, wait_task

url, T, step = sys.argv[1:4]
x = xmlrpc.client.ServerProxy(url)
state_file = os.path.join(T, "sweep-state.json")
st = json.load(open(state_file)) if os.path.exists(state_file) else {}
DATA = os.path.join(T, "data.raw")
MARK = "vdimotion-task"


def save():
    json.dump(st, open(state_file + ".tmp", "w"))
    os.rename(state_file + ".tmp", state_file)


s = st.get("session")
if s is None or x.VM.get_all(s)["Status"] != "Success":
    s = st["session"] = ok(x.session.login_with_password("root", "secret"))
    save()
srs = {r["name_label"]: ref for ref, r in ok(x.SR.get_all_records(s)).items()}
sr_dir = {srs[n]: os.path.join(T, n) for n in ("sr1", "sr2")}


def image(vdi):
    r = ok(x.VDI.get_record(s, vdi))
    return os.path.join(sr_dir[r["SR"]], r["location"])


def vdis():
    """{ref: record} of every VDI."""
    return ok(x.VDI.get_all_records(s))


def files():
    """The image files in the SRs (anything but the SR's database)."""
    out = set()
    for n in ("sr1", "sr2"):
        for f in os.listdir(os.path.join(T, n)):
            if not f.startswith("sr.db"):
                out.add(os.path.join(T, n, f))
    return out


def same_as_data(path):
    return subprocess.call(["qemu-img", "compare", "-q", DATA, path]) == 0


if step == "setup":
    # A 128 MiB qcow2 VDI with 40 MiB of data, imported raw, and a halted
    # VM using it (its VBD follows the VDI when it moves).
    size = 128 << 20
    vdi = xapi_checks.new_vdi(x, s, srs["sr1"], "disk", size, "qcow2")
    xapi_checks.import_vdi(url, s, vdi, DATA, "raw")
    assert same_as_data(image(vdi))
    vm, vbd = xapi_checks.new_vm(x, s, "vm", vdi, start=False)
    st.update(vdi=vdi, vm=vm, vbd=vbd)
    save()

elif step == "start":
    # The current VDI goes to the other SR (a move) or is copied there.
    kind, fmt = sys.argv[4:6]
    src = st["vdi"]
    here = ok(x.VDI.get_SR(s, src))
    there = srs["sr2"] if here == srs["sr1"] else srs["sr1"]
    st.update(kind=kind, src=src, fmt=fmt, there_dir=sr_dir[there],
              vdis_before=sorted(vdis()), files_before=sorted(files()))
    try:
        if kind == "copy":
            task = ok(x.Async.VDI.copy(s, src, there))
        else:
            task = ok(x.Async.VDI.pool_migrate(s, src, there,
                                               {"dest-img-format": fmt}))
    except (OSError, http.client.HTTPException, xml.parsers.expat.ExpatError):
        # The daemon killed itself at a crash point before its answer left
        # (the job runs at once): the task is the job's in its state.
        import sqlite3
        db = sqlite3.connect(os.path.join(T, "state", "state.db"))
        (uuid,) = db.execute("SELECT task FROM jobs").fetchone()
        task = "OpaqueRef:" + uuid
    st["task"] = task
    save()
    if len(sys.argv) > 6 and sys.argv[6].startswith("cancel="):
        # The client cancels the job after that many ms (it may have
        # ended already); the caller kills the daemon right after.
        time.sleep(int(sys.argv[6][len("cancel="):]) / 1000)
        x.task.cancel(s, task)
        print(task)
    elif len(sys.argv) > 6 and sys.argv[6] == "time":
        # How long the job takes from here, in ms.
        t0 = time.monotonic()
        wait_task(x, s, task)
        print(int((time.monotonic() - t0) * 1000) + 1)
    else:
        print(task)

elif step == "live-start":
    # A live move of a running VM's disk (a VM of its own, 64 MiB).
    vdi = xapi_checks.new_vdi(x, s, srs["sr1"], "live", 64 << 20, "qcow2")
    vm, vbd = xapi_checks.new_vm(x, s, "live", vdi)
    sock = ok(x.VBD.get_other_config(s, vbd))["nbd-socket"]
    subprocess.check_call(["nbdcopy", os.path.join(T, "live.raw"),
                           "nbd+unix:///?socket=" + sock])
    st.update(live_vdi=vdi, live_vm=vm, live_vbd=vbd, live_sock=sock,
              vdis_before=sorted(vdis()))
    st["live_task"] = ok(x.Async.VDI.pool_migrate(s, vdi, srs["sr2"], {}))
    save()
    print(sock)

elif step == "live-check":
    # Pivoted before the crash: the move succeeded, the VM runs on the
    # new VDI behind the same socket, the old VDI is gone.
    t = wait_task(x, s, st["live_task"], timeout=300)
    assert t["status"] == "success", t
    new = t["result"][len("<value>"):-len("</value>")]
    assert ok(x.VBD.get_VDI(s, st["live_vbd"])) == new
    assert ok(x.VM.get_power_state(s, st["live_vm"])) == "Running"
    assert ok(x.VBD.get_other_config(s, st["live_vbd"]))["nbd-socket"] \
        == st["live_sock"]
    now = vdis()
    assert MARK not in now[new]["other_config"], now[new]
    want = (set(st["vdis_before"]) - {st["live_vdi"]}) | {new}
    assert set(now) == want, (sorted(now), sorted(want))
    ok(x.task.destroy(s, st["live_task"]))
    print(st["live_sock"])

elif step == "live-end":
    ok(x.VM.shutdown(s, st["live_vm"]))
    vdi = ok(x.VBD.get_VDI(s, st["live_vbd"]))
    assert subprocess.call(["qemu-img", "compare", "-q",
                            os.path.join(T, "live.raw"), image(vdi)]) == 0
    ok(x.VM.destroy(s, st["live_vm"]))
    ok(x.VDI.destroy(s, vdi))

elif step == "check":
    # The task's outcome matches what is on disk, and nothing is left.
    t = wait_task(x, s, st["task"], timeout=300)
    src, kind = st["src"], st["kind"]
    now = vdis()
    for ref, r in now.items():
        assert MARK not in r["other_config"], ("a marked VDI is left", r)
    if t["status"] == "success":
        new = t["result"][len("<value>"):-len("</value>")]
        assert new in now, ("the result VDI does not exist", t)
        assert new not in st["vdis_before"], t
        assert same_as_data(image(new)), "the result differs from the data"
        if image(new).endswith(".qcow2"):
            r = subprocess.run(["qemu-img", "check", "-q", image(new)],
                               capture_output=True, text=True)
            assert r.returncode == 0, ("qemu-img check", r.stdout, r.stderr)
        want = set(st["vdis_before"]) | {new}
        if kind == "migrate":
            want.discard(src)
            failure(x.VDI.get_record(s, src), "HANDLE_INVALID")
            assert ok(x.VBD.get_VDI(s, st["vbd"])) == new
            st["vdi"] = new
        else:
            assert same_as_data(image(src))
            assert ok(x.VBD.get_VDI(s, st["vbd"])) == src
        assert set(now) == want, (sorted(now), sorted(want))
        want_files = (set(st["files_before"]) | {image(new)})
        if kind == "migrate":
            want_files = {f for f in want_files
                          if os.path.basename(f).split(".")[0] != src[10:]}
        assert files() == want_files, (sorted(files()), sorted(want_files))
        if kind == "copy":
            ok(x.VDI.destroy(s, new))  # keep the SRs small
        outcome = "success"
    else:
        # Failed or cancelled: the source is there, intact, and nothing
        # else is.
        assert t["status"] in ("failure", "cancelled"), t
        assert src in now, ("the source is gone after a failure", t)
        assert same_as_data(image(src)), "the source changed"
        assert ok(x.VBD.get_VDI(s, st["vbd"])) == src
        assert sorted(now) == st["vdis_before"], (sorted(now),
                                                  st["vdis_before"])
        assert sorted(files()) == st["files_before"], (
            sorted(files()), st["files_before"])
        outcome = t["status"] + ": " + " ".join(t["error_info"][:2])
    jobs = os.listdir(os.path.join(T, "state", "jobs"))
    assert jobs == [], ("journals left", jobs)
    ok(x.task.destroy(s, st["task"]))
    save()
    print(outcome)

print("xapi-kill-sweep %s: %d checks passed" % (step, xapi_checks.checks),
      file=sys.stderr)
