# Driven by test-xapi-migrate-sync-failures.sh (which holds the link to
# the destination to a slow rate): live migrations that fail while the
# VM's disk is still syncing, the task's "mirror" step.
#   cancel    T  a VM with a full disk; a migration cancelled during its
#                sync;
#   kill      T PEER_PID  a migration whose destination daemon is killed
#                during its sync (its disk servers live on and take the
#                rest of the sync): the source finds the destination
#                silent before any handover and gives up;
#   restarted T  the destination, started again on the killed one's state
#                dir, has removed what the migration left there.
# After each failure: the VM runs on the source, its data intact and its
# disk writable, its mirror aborted; the destination holds no VDI, file
# or nbdkit of the migration.  State between the steps: T/sync.json.
#   xapi-migrate-sync-failures.py STEP SRC_URL DST_URL T [PEER_PID]
import json
import os
import signal
import subprocess
import sys
import time
import xmlrpc.client

import xapi_checks
from xapi_checks import ok

step, src_url, dst_url, T = sys.argv[1:5]
MiB = 1 << 20
SIZE = 64 * MiB   # the guest's data, all of it to sync
SCRATCH = 4 * MiB  # after it: where "still writable" writes go
SHARE_SYNC = 0.85  # the sync's share of the task's progress (migrate.c)
STATE = os.path.join(T, "sync.json")
SRC_RUN = os.path.join(T, "state", "run")
DST = os.path.join(T, "peer")
DST_RUN = os.path.join(DST, "state", "run")

local = xmlrpc.client.ServerProxy(src_url)
remote = xmlrpc.client.ServerProxy(dst_url)
ls = ok(local.session.login_with_password("root", "secret", "1.0", "t"))
rs = ok(remote.session.login_with_password("root", "secret", "1.0", "t"))


def fio(*args, **kw):
    return xapi_checks.fio(T, *args, **kw)


def uuid(ref):
    return ref[len("OpaqueRef:"):]


def mirror_status(ctl):
    """The source mirror filter's status, from `vdimotion mirror status`."""
    out = subprocess.run([os.environ["VDIMOTION"], "mirror", "status",
                          "--control", ctl, "--json"],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def alive(pid):
    """Is PID a process, and not a zombie?"""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def destination_files():
    """The files of the destination's run dir (but gnutls.conf, written
    for every nbdkit's use once one starts) and SRs."""
    return {"run": sorted(set(os.listdir(DST_RUN)) - {"gnutls.conf"}),
            "srs": sorted(os.path.join(sr, f) for sr in ("sr1", "sr2")
                          for f in os.listdir(os.path.join(DST, sr)))}


def destination():
    """What the destination holds: its VDIs and files."""
    return dict(destination_files(), vdis=sorted(ok(remote.VDI.get_all(rs))))


def migration_processes(before):
    """{pid file: pid} of the nbdkits the destination started for the
    migration (the disk server and its TLS forwarder): every pid file of
    its run dir that was not there BEFORE."""
    out = {}
    for f in set(os.listdir(DST_RUN)) - set(before["run"]):
        if f.endswith(".pid"):
            with open(os.path.join(DST_RUN, f)) as pf:
                out[f] = int(pf.read())
    return out


def watch_sync(task, ctl):
    """Wait until the migration is in its sync, part of the disk done and
    part not; the mirror's status then."""
    log = os.path.join(T, "vdimotiond.log")
    line = "task %s: VM %s: mirror" % (uuid(task), st["vm_uuid"])
    deadline = time.monotonic() + 60
    while True:
        t = ok(local.task.get_record(ls, task))
        assert t["status"] == "pending", t
        m = mirror_status(ctl)
        if (m["state"] == "syncing" and m["bytes_copied"] > 0
                and m["bytes_done"] < m["bytes_total"]
                and 0 < t["progress"] < SHARE_SYNC):
            with open(log) as f:
                assert line in f.read(), "no mirror step in the log"
            print("syncing: %d of %d bytes done, task progress %.2f"
                  % (m["bytes_done"], m["bytes_total"], t["progress"]))
            return m
        assert time.monotonic() < deadline, ("never seen syncing", t, m)
        time.sleep(0.05)


def never_handed_over(task):
    with open(os.path.join(T, "vdimotiond.log")) as f:
        assert "task %s: VM %s: handover" % (uuid(task), st["vm_uuid"]) \
            not in f.read(), "the migration reached its handover"


def source_intact(what, task, seed):
    """The VM runs here on the same socket, its data intact and its disk
    writable (SEED: a new pattern for the scratch area); its mirror is
    aborted with no target; the migration's PSK file is gone."""
    assert ok(local.VM.get_power_state(ls, st["vm"])) == "Running", what
    assert xapi_checks.vbd_sockets(local, ls, st["vm"])["0"] == st["sock"]
    assert fio(st["sock"], 1, 0, SIZE, verify_only=True, bs="64k") == 0, what
    assert fio(st["sock"], seed, SIZE, SCRATCH) == 0, what
    m = mirror_status(st["ctl"])
    assert m["state"] == "aborted" and m["target"] is None, (what, m)
    assert not os.path.exists(os.path.join(SRC_RUN, uuid(task) + ".psk"))
    print("%s: the VM runs on the source, its data intact, its disk "
          "writable, its mirror aborted" % what)


def destination_clean(what, procs):
    """Nothing of the migration at the destination: no VDI, no file, and
    none of its nbdkits (PROCS) runs."""
    now = destination()
    assert now == st["before"], (what, now, st["before"])
    for f, pid in procs.items():
        assert not alive(pid), (what, "nbdkit %d (%s) still runs" % (pid, f))
    print("%s: nothing of the migration is left at the destination" % what)


def start_migration():
    sr = ok(remote.SR.get_by_name_label(rs, "sr1"))[0]
    host = ok(remote.host.get_all(rs))[0]
    token = ok(remote.VM.migrate_receive(rs, host, sr, {}))
    return ok(local.Async.VM.migrate(
        ls, st["vm"], token, True,
        {"handover-file": os.path.join(T, "never")}))


if step == "cancel":
    srs = {r["name_label"]: ref
           for ref, r in ok(local.SR.get_all_records(ls)).items()}
    vm = ok(local.VM.create(ls, {"name_label": "syncing"}))
    vdi = ok(local.VDI.create(ls, {
        "SR": srs["sr1"], "name_label": "syncing-disk0",
        "virtual_size": str(SIZE + SCRATCH), "other_config": {},
        "sm_config": {"image-format": "vhd"}}))
    ok(local.VBD.create(ls, {"VM": vm, "VDI": vdi, "userdevice": "0",
                             "mode": "RW"}))
    ok(local.VM.start(ls, vm, False, False))
    sock = xapi_checks.vbd_sockets(local, ls, vm)["0"]
    # The whole disk holds data: all of it crosses the slow link.
    assert fio(sock, 1, 0, SIZE, bs="64k") == 0
    st = {"vm": vm, "vm_uuid": uuid(vm), "sock": sock,
          "ctl": sock[:-len(".sock")] + ".ctl", "before": destination()}

    task = start_migration()
    watch_sync(task, st["ctl"])
    procs = migration_processes(st["before"])
    assert len(procs) == 2 and all(map(alive, procs.values())), procs
    ok(local.task.cancel(ls, task))
    t = xapi_checks.wait_task(local, ls, task)
    assert t["status"] == "cancelled", t
    assert t["error_info"][:2] == ["TASK_CANCELLED", task], t
    assert t["error_info"][2].startswith("mirror: "), t
    print("cancel during the sync: the task says", t["error_info"])
    never_handed_over(task)
    source_intact("cancel during the sync", task, 2)
    destination_clean("cancel during the sync", procs)

elif step == "kill":
    with open(STATE) as f:
        st = json.load(f)
    peer_pid = int(sys.argv[5])
    task = start_migration()
    watch_sync(task, st["ctl"])
    procs = migration_processes(st["before"])
    assert len(procs) == 2 and all(map(alive, procs.values())), procs
    print("killing the destination daemon (%d)" % peer_pid)
    os.kill(peer_pid, signal.SIGKILL)
    m = mirror_status(st["ctl"])
    assert m["state"] == "syncing", ("killed after the sync", m)
    t = xapi_checks.wait_task(local, ls, task)
    assert t["status"] == "failure", t
    assert t["error_info"][0] == "VM_MIGRATE_FAILED", t
    msg = t["error_info"][-1]
    assert msg.startswith("mirror: ") and "destination" in msg, t
    print("destination killed during the sync: the task says", msg)
    never_handed_over(task)
    source_intact("destination killed during the sync", task, 3)
    # What the killed daemon left (its nbdkits, the new VDI's file): its
    # restart must remove them.
    assert all(map(alive, procs.values())), procs
    assert destination_files()["srs"] != st["before"]["srs"]
    st["procs"] = procs
    rs = None

elif step == "restarted":
    with open(STATE) as f:
        st = json.load(f)
    with open(os.path.join(DST, "vdimotiond.log")) as f:
        assert "prepared before a restart: aborted" in f.read()
    destination_clean("the destination restarted after its kill",
                      st["procs"])

with open(STATE, "w") as f:
    json.dump(st, f)
ok(local.session.logout(ls))
if rs:
    ok(remote.session.logout(rs))
print("xapi-migrate-sync-failures %s: %d checks passed"
      % (step, xapi_checks.checks))
