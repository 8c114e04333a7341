# Driven by test-xapi-events.sh: xapi's event API as XenAPI clients use
# it, with Python's standard xmlrpc.client: event.from with a token (a VM's
# and a VDI's add, mod and del, a task's progress during Async.VDI.copy),
# its timeout, many callers blocked at once while other calls are
# answered, register/next, inject, get_current_id and the errors.
#   xapi-events.py URL SR1_DIR
#   xapi-events.py waiters URL N   (N callers blocked in event.from; for
#                                   the daemon's stop, see the .sh)
import os
import sys
import threading
import time
import xmlrpc.client

import xapi_checks
from xapi_checks import SLOW, failure, ok


def event_from(x, s, classes, token, timeout):
    return getattr(x.event, "from")(s, classes, token, timeout)


def summary(events):
    """[(class, operation, ref)] of EVENTS."""
    return [(e["class"], e["operation"], e["ref"]) for e in events]


def waiters(url, n):
    """N threads blocked in event.from until the daemon goes away."""
    x = xmlrpc.client.ServerProxy(url)
    s = ok(x.session.login_with_password("root", "secret"))
    token = ok(event_from(x, s, ["*"], "", 0.0))["token"]

    def wait():
        y = xmlrpc.client.ServerProxy(url)
        try:
            while True:
                event_from(y, s, ["vm"], token, 60.0)
        except (OSError, xmlrpc.client.ProtocolError):
            pass  # the daemon stopped
    threads = [threading.Thread(target=wait) for _ in range(n)]
    for t in threads:
        t.start()
    print("waiting", flush=True)
    for t in threads:
        t.join()


if sys.argv[1] == "waiters":
    waiters(sys.argv[2], int(sys.argv[3]))
    sys.exit(0)

url, sr1_dir = sys.argv[1:3]
x = xmlrpc.client.ServerProxy(url)
s = ok(x.session.login_with_password("root", "secret", "1.0", "test"))
srs = {r["name_label"]: ref for ref, r in ok(x.SR.get_all_records(s)).items()}
host = ok(x.host.get_all(s))[0]

# The token "": every object of the classes, as adds with their records.
r = ok(event_from(x, s, ["*"], "", 0.0))
assert set(r) == {"events", "valid_ref_counts", "token"}, r
adds = {(e["class"], e["ref"]) for e in r["events"]}
assert ("host", host) in adds and ("sr", srs["sr1"]) in adds, adds
for e in r["events"]:
    assert e["operation"] == "add" and e["class"] == e["class"].lower(), e
    assert e["snapshot"]["uuid"] == e["ref"][len("OpaqueRef:"):], e
    assert isinstance(e["id"], str) and e["timestamp"] == "0.0", e
host_event = [e for e in r["events"] if e["ref"] == host][0]
assert host_event["snapshot"] == ok(x.host.get_record(s, host))
token = r["token"]
a, b = token.split(",")
assert len(a) == len(b) == 20 and int(b) == 0, token
# valid_ref_counts: every class with records, lower-case, exact counts.
counts = r["valid_ref_counts"]
for cls in ("host", "SR", "VDI", "VM", "VBD", "task", "network"):
    assert counts[cls.lower()] == len(ok(getattr(x, cls).get_all(s))), \
        (cls, counts)
r = ok(event_from(x, s, ["vm", "host"], "", 0.0))
assert {e["class"] for e in r["events"]} == {"host"}, r
r = ok(event_from(x, s, ["sr/" + srs["sr2"]], "", 0.0))
assert summary(r["events"]) == [("sr", "add", srs["sr2"])], r

# A VM's life through event.from with a token: add, mod, del, each with
# what changed, one event per object and call (xapi coalesces).
vm = ok(x.VM.create(s, {"name_label": "ev-vm", "name_description": ""}))
r = ok(event_from(x, s, ["VM"], token, 10.0))
assert summary(r["events"]) == [("vm", "add", vm)], r
assert r["events"][0]["snapshot"]["name_label"] == "ev-vm", r
assert r["events"][0]["snapshot"] == ok(x.VM.get_record(s, vm))
assert r["token"] > token and r["valid_ref_counts"]["vm"] == 1, r
token = r["token"]
ok(x.VM.add_to_other_config(s, vm, "k", "1"))
ok(x.VM.add_to_other_config(s, vm, "l", "2"))
r = ok(event_from(x, s, ["vm"], token, 10.0))
assert summary(r["events"]) == [("vm", "mod", vm)], r
assert r["events"][0]["snapshot"]["other_config"] == {"k": "1", "l": "2"}
token = r["token"]
# A class not asked for: the call waits on (its timeout here).
vdi = ok(x.VDI.create(s, {"SR": srs["sr1"], "name_label": "ev-vdi",
                          "virtual_size": str(1 << 20)}))
r = ok(event_from(x, s, ["vm"], token, 0.5))
assert r["events"] == [], r
# VBD.create changes the VBD, and the VM's and VDI's VBDs.
vbd = ok(x.VBD.create(s, {"VM": vm, "VDI": vdi, "userdevice": "0",
                          "mode": "RW", "type": "Disk"}))
r = ok(event_from(x, s, ["vm", "vbd"], token, 10.0))
assert sorted(summary(r["events"])) == [("vbd", "add", vbd),
                                        ("vm", "mod", vm)], r
token = r["token"]
ok(x.VM.destroy(s, vm))
r = ok(event_from(x, s, ["vm", "vbd"], token, 10.0))
assert sorted(summary(r["events"])) == [("vbd", "del", vbd),
                                        ("vm", "del", vm)], r
assert all("snapshot" not in e for e in r["events"]), r
assert r["valid_ref_counts"]["vm"] == 0, r
token = r["token"]

# A VDI: VDI.create and VDI.destroy.  The SR's record (its VDIs) changes
# with them.
r = ok(event_from(x, s, ["vdi"], token, 0.0))
assert r["events"] == [], r  # nothing since (the VBD's del came before)
v2 = ok(x.VDI.create(s, {"SR": srs["sr2"], "name_label": "ev-vdi2",
                         "virtual_size": str(1 << 20)}))
r = ok(event_from(x, s, ["vdi", "sr"], token, 10.0))
assert summary(r["events"]) == [("vdi", "add", v2),
                                ("sr", "mod", srs["sr2"])], r
assert r["events"][0]["snapshot"]["name_label"] == "ev-vdi2", r
token = r["token"]
ok(x.VDI.destroy(s, v2))
r = ok(event_from(x, s, ["vdi"], token, 10.0))
assert summary(r["events"]) == [("vdi", "del", v2)], r
token = r["token"]
# Made and gone between two calls: nothing to say.
v3 = ok(x.VDI.create(s, {"SR": srs["sr2"], "name_label": "ev-vdi3",
                         "virtual_size": str(1 << 20)}))
ok(x.VDI.destroy(s, v3))
r = ok(event_from(x, s, ["vdi"], token, 0.0))
assert r["events"] == [], r
print("add, mod, del: ok")

# event.from at its timeout: no change, an empty answer after the
# timeout, not before and not much after.
token = ok(event_from(x, s, ["*"], token, 0.0))["token"]
t0 = time.monotonic()
r = ok(event_from(x, s, ["vm"], token, 2.0))
took = time.monotonic() - t0
assert r["events"] == [] and r["token"] >= token, r
assert 1.95 <= took < 2 + 1.5 * SLOW, took
print("timeout: answered after %.2f s" % took)
t0 = time.monotonic()
r = ok(event_from(x, s, ["vm"], token, 0))
assert r["events"] == [] and time.monotonic() - t0 < 1 * SLOW, r

# A task's progress during Async.VDI.copy: an add, mods as its progress
# moves (written once a second), the end.  1 GiB of data to copy.
size = 1 << 30
big = ok(x.VDI.create(s, {"SR": srs["sr1"], "name_label": "ev-big",
                          "virtual_size": str(size),
                          "sm_config": {"image-format": "raw"}}))
with open(os.path.join(sr1_dir, ok(x.VDI.get_location(s, big))), "r+b") as f:
    chunk = b"\xa5" * (1 << 20)
    for _ in range(size >> 20):
        f.write(chunk)
token = ok(event_from(x, s, ["*"], token, 0.0))["token"]
task = ok(x.Async.VDI.copy(s, big, srs["sr2"]))
seen = []
while not seen or seen[-1]["status"] == "pending":
    r = ok(event_from(x, s, ["task"], token, 30.0))
    token = r["token"]
    for e in r["events"]:
        assert e["ref"] == task, e
        seen.append(dict(e["snapshot"], operation=e["operation"]))
assert seen[0]["operation"] == "add", seen
assert all(e["operation"] == "mod" for e in seen[1:]), seen
progress = [e["progress"] for e in seen]
assert progress == sorted(progress), seen
assert any(e["status"] == "pending" and 0 < e["progress"] < 1
           for e in seen), seen
assert seen[-1]["status"] == "success" and seen[-1]["progress"] == 1.0, seen
copy = seen[-1]["result"][len("<value>"):-len("</value>")]
print("task: progress %s" % progress)
ok(x.task.destroy(s, task))
r = ok(event_from(x, s, ["task"], token, 10.0))
assert summary(r["events"]) == [("task", "del", task)], r
ok(x.VDI.destroy(s, copy))
ok(x.VDI.destroy(s, big))

# Many callers blocked in event.from at once: other calls are answered
# meanwhile, and every caller wakes with the change.
N = 50
token = ok(event_from(x, s, ["*"], token, 0.0))["token"]
results = [None] * N


def waiter(i):
    y = xmlrpc.client.ServerProxy(url)
    results[i] = ok(event_from(y, s, ["vm"], token, 60.0))


def slowest_of_20():
    """The longest of 20 host.get_record calls, in seconds."""
    slowest = 0
    for _ in range(20):
        t0 = time.monotonic()
        ok(x.host.get_record(s, host))
        slowest = max(slowest, time.monotonic() - t0)
    return slowest


# The same calls without the waiters, on the machine as loaded as it is
# now: with them, the calls may take a second more and a few times as
# long, never the waiters' 60 s.
alone = slowest_of_20()
threads = [threading.Thread(target=waiter, args=(i,)) for i in range(N)]
for t in threads:
    t.start()
time.sleep(1)
slowest = slowest_of_20()
assert slowest < 1 * SLOW + 4 * alone, (slowest, alone)
assert all(r is None for r in results), results
vm2 = ok(x.VM.create(s, {"name_label": "ev-vm2"}))
t0 = time.monotonic()
for t in threads:
    t.join(120)
woke = time.monotonic() - t0
for r in results:
    assert r is not None and summary(r["events"]) == [("vm", "add", vm2)], r
print("%d waiters: other calls in %.3f s at most (%.3f s without them), "
      "woken in %.2f s" % (N, slowest, alone, woke))

# inject: a mod of the object, and the token from which event.from
# answers it at once.
token = ok(event_from(x, s, ["*"], token, 0.0))["token"]
t = ok(x.event.inject(s, "host", host))
assert len(t) == len(token) and t >= token, (t, token)
r = ok(event_from(x, s, ["host"], t, 10.0))
assert summary(r["events"]) == [("host", "mod", host)], r
assert r["events"][0]["snapshot"]["uuid"] == host[len("OpaqueRef:"):]
t = ok(x.event.inject(s, "VM", vm2))
r = ok(event_from(x, s, ["vm/" + vm2], t, 10.0))
assert summary(r["events"]) == [("vm", "mod", vm2)], r
failure(x.event.inject(s, "VM", "OpaqueRef:nonsense"), "HANDLE_INVALID")
failure(x.event.inject(s, "VM", host), "HANDLE_INVALID")
failure(x.event.inject(s, "nosuchclass", host), "HANDLE_INVALID")

# get_current_id: an int (a string, as XenAPI sends int64) that grows.
i1 = int(ok(x.event.get_current_id(s)))
ok(x.VM.add_to_other_config(s, vm2, "x", "y"))
i2 = int(ok(x.event.get_current_id(s)))
assert i2 > i1, (i1, i2)

# register / next: only registered sessions; events since the
# registration, oldest first, each with its id and snapshot, a del with
# the object's last record.
failure(x.event.next(s), "SESSION_NOT_REGISTERED")
ok(x.event.register(s, ["vm"]))
ok(x.VM.add_to_other_config(s, vm2, "n", "1"))
r = ok(x.event.next(s))
assert summary(r) == [("vm", "mod", vm2)], r
assert r[0]["snapshot"]["other_config"]["n"] == "1", r
assert int(r[0]["id"]) > i2 and float(r[0]["timestamp"]) > 0, r
ok(x.event.register(s, ["vdi"]))
v4 = ok(x.VDI.create(s, {"SR": srs["sr1"], "name_label": "ev-vdi4",
                         "virtual_size": str(1 << 20)}))
ok(x.VDI.destroy(s, v4))
r = ok(x.event.next(s))
assert [e["operation"] for e in r if e["ref"] == v4][0] == "add", r
assert [e["operation"] for e in r if e["ref"] == v4][-1] == "del", r
assert [e for e in r if e["operation"] == "del"][0]["snapshot"][
    "name_label"] == "ev-vdi4", r
ids = [int(e["id"]) for e in r]
assert ids == sorted(ids), r
# next blocks until an event of its classes comes.
ok(x.event.unregister(s, ["vdi"]))
got = []
th = threading.Thread(
    target=lambda: got.append(ok(xmlrpc.client.ServerProxy(url).event.next(s))))
th.start()
time.sleep(0.5)
ok(x.VDI.destroy(s, ok(x.VDI.create(s, {
    "SR": srs["sr1"], "name_label": "ev-vdi5",
    "virtual_size": str(1 << 20)}))))
time.sleep(0.5)
assert got == [], got  # a VDI: not registered any more
ok(x.VM.destroy(s, vm2))
th.join(60)
assert summary(got[0]) == [("vm", "del", vm2)], got
assert got[0][0]["snapshot"]["name_label"] == "ev-vm2", got
print("register, next: ok")

# Errors.
failure(event_from(x, s, ["*"], "nonsense", 1.0),
        "EVENT_FROM_TOKEN_PARSE_FAILURE")
failure(event_from(x, s, ["*"], "1,0", 1.0), "EVENTS_LOST")
failure(event_from(x, s, ["*"], "09000000000000000000,0", 1.0),
        "EVENTS_LOST")
failure(event_from(x, s, ["*"], "", "soon"), "FIELD_TYPE_ERROR")
failure(event_from(x, s, "*", "", 1.0), "FIELD_TYPE_ERROR")
failure(x.event.register(s, [1]), "FIELD_TYPE_ERROR")
failure(x.event.next(s, 1), "MESSAGE_PARAMETER_COUNT_MISMATCH")
failure(x.event.get_current_id("OpaqueRef:bad"), "SESSION_INVALID")

# As Async.*: answered at once, by a task that is over.
t0 = time.monotonic()
task = ok(getattr(x.Async.event, "from")(s, ["vm"], token, 30.0))
assert time.monotonic() - t0 < 5 * SLOW
assert ok(x.task.get_status(s, task)) == "success"
assert "<name>token</name>" in ok(x.task.get_result(s, task))
ok(x.task.destroy(s, task))

# A session that ends wakes its calls with SESSION_INVALID.
s2 = ok(x.session.login_with_password("root", "secret"))
token = ok(event_from(x, s2, ["*"], "", 0.0))["token"]
ok(x.event.register(s2, ["*"]))
ends = []
ths = [threading.Thread(target=lambda: ends.append(event_from(
           xmlrpc.client.ServerProxy(url), s2, ["vm"], token, 60.0))),
       threading.Thread(target=lambda: ends.append(
           xmlrpc.client.ServerProxy(url).event.next(s2)))]
for th in ths:
    th.start()
time.sleep(0.5)
ok(x.session.logout(s2))
for th in ths:
    th.join(60)
assert len(ends) == 2, ends
for r in ends:
    assert failure(r, "SESSION_INVALID") == ["SESSION_INVALID", s2], r
print("xapi-events: %d checks passed" % xapi_checks.checks)
