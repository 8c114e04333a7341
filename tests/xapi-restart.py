# Driven by test-xapi-restart.sh in steps, with kill -9 of the daemon
# between them.  State passes between steps in files under T.
#   xapi-restart.py URL T STEP
import json
import os
import subprocess
import sys
import xmlrpc.client

import xapi_checks
from xapi_checks import ok, wait_until

url, T, step = sys.argv[1:4]
x = xmlrpc.client.ServerProxy(url)
state_file = os.path.join(T, "restart-state.json")
st = json.load(open(state_file)) if os.path.exists(state_file) else {}


def save():
    json.dump(st, open(state_file, "w"))


def login():
    # The session of before the restart still works (sessions are durable).
    if "session" in st:
        r = x.VM.get_all(st["session"])
        if r["Status"] == "Success":
            return st["session"]
    st["session"] = ok(x.session.login_with_password("root", "secret"))
    save()
    return st["session"]


s = login()
srs = {r["name_label"]: ref for ref, r in ok(x.SR.get_all_records(s)).items()}


def wait_progress(task, at_least):
    """Wait until the task's progress passes AT_LEAST (still pending)."""
    def moved():
        t = ok(x.task.get_record(s, task))
        return t if t["status"] != "pending" or t["progress"] >= at_least \
            else None
    return wait_until(moved, "no progress of %s" % task)


def wait_end(task):
    def ended():
        t = ok(x.task.get_record(s, task))
        return t if t["status"] not in ("pending", "cancelling") else None
    return wait_until(ended, "task %s never ended" % task, timeout=600)


if step == "vm":
    # A 1 GiB VDI, filled through a running VM's socket by nbdcopy.
    vdi = xapi_checks.new_vdi(x, s, srs["sr1"], "big", 1 << 30, "qcow2")
    vm, vbd = xapi_checks.new_vm(x, s, "vm", vdi)
    sock = ok(x.VBD.get_other_config(s, vbd))["nbd-socket"]
    st.update(vdi=vdi, vm=vm, vbd=vbd, sock=sock)
    save()
    print(sock)

elif step == "copy":
    # Halt the VM, start an offline copy, and say when it is under way.
    ok(x.VM.shutdown(s, st["vm"]))
    task = ok(x.Async.VDI.copy(s, st["vdi"], srs["sr2"]))
    st["copy_task"] = task
    save()
    t = wait_progress(task, 0.05)
    assert t["status"] == "pending", "copy ended before the kill: %r" % t
    print("copy at %.2f" % t["progress"])

elif step == "copy-after":
    # After kill -9 and a restart the copy resumes and succeeds.
    t = wait_end(st["copy_task"])
    assert t["status"] == "success", t
    new = t["result"][len("<value>"):-len("</value>")]
    st["copy"] = new
    save()
    src = ok(x.VDI.get_location(s, st["vdi"]))
    dst = ok(x.VDI.get_location(s, new))
    assert "vdimotion-task" not in ok(x.VDI.get_other_config(s, new))
    print(os.path.join(T, "sr1", src), os.path.join(T, "sr2", dst))

elif step == "live":
    # A live move, killed before it completes.
    ok(x.VM.start(s, st["vm"], False, False))
    st["sock"] = ok(x.VBD.get_other_config(s, st["vbd"]))["nbd-socket"]
    st["vdis_before"] = sorted(ok(x.VDI.get_all(s)))
    task = ok(x.Async.VDI.pool_migrate(s, st["vdi"], srs["sr2"], {}))
    st["live_task"] = task
    save()
    t = wait_progress(task, 0.05)
    assert t["status"] == "pending", "move ended before the kill: %r" % t
    print(st["sock"])

elif step == "live-after":
    # The live move fails cleanly: the VM runs on its old VDI, on the
    # same socket, and the partial VDI is gone.
    t = wait_end(st["live_task"])
    assert t["status"] == "failure", t
    assert t["error_info"][0] == "MIRROR_FAILED", t
    assert ok(x.VM.get_power_state(s, st["vm"])) == "Running"
    assert ok(x.VBD.get_VDI(s, st["vbd"])) == st["vdi"]
    assert ok(x.VBD.get_other_config(s, st["vbd"]))["nbd-socket"] == st["sock"]
    vdis = sorted(ok(x.VDI.get_all(s)))
    assert vdis == st["vdis_before"], (vdis, st["vdis_before"])
    print(st["sock"])

elif step == "end":
    ok(x.VM.shutdown(s, st["vm"]))

print("xapi-restart %s: %d checks passed" % (step, xapi_checks.checks),
      file=sys.stderr)
