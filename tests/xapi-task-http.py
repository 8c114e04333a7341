# Driven by test-xapi-task-http.sh: tasks a client makes (task.create)
# and xapi's disk data URLs as stock clients use them: task_id= driven
# to its end, vdi= by uuid, the session in a cookie or in HTTP Basic
# auth, Xen Orchestra's empty probe and its 1 PiB upload, a chunked one.
#   xapi-task-http.py URL T    (T: the test's directory, for its files)
# Standard library only (xmlrpc.client, http.client, socket).
import base64
import http.client
import os
import socket
import sys
import time
import urllib.parse
import xmlrpc.client

from xapi_checks import ok, failure, wait_until

url, T = sys.argv[1:]
x = xmlrpc.client.ServerProxy(url)
host = urllib.parse.urlsplit(url).netloc
hostname, port = host.rsplit(":", 1)
MiB = 1 << 20
SIZE = 64 * MiB

s = ok(x.session.login_with_password("root", "secret"))
[sr] = ok(x.SR.get_by_name_label(s, "sr1"))


def new_vdi(name, size=SIZE):
    return ok(x.VDI.create(s, {
        "SR": sr, "name_label": name, "virtual_size": str(size),
        "type": "user", "sharable": False, "read_only": False,
        "other_config": {}, "sm_config": {"image-format": "raw"}}))


def path(p, **q):
    return p + "?" + urllib.parse.urlencode(q)


def task(ref):
    return ok(x.task.get_record(s, ref))


def get(vdi, headers=None, **q):
    """GET /export_raw_vdi: (status, body, headers)."""
    c = http.client.HTTPConnection(host, timeout=300)
    c.request("GET", path("/export_raw_vdi", vdi=vdi, **q),
              headers=headers or {})
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, body, r


def put(vdi, body, headers=None, chunked=False, **q):
    c = http.client.HTTPConnection(host, timeout=300)
    c.request("PUT", path("/import_raw_vdi", vdi=vdi, **q), body=body,
              headers=headers or {}, encode_chunked=chunked)
    r = c.getresponse()
    text = r.read().decode()
    c.close()
    return r.status, text, r


def raw_put(query, length):
    """A PUT by hand: headers only.  Returns the socket."""
    sock = socket.create_connection((hostname, int(port)), timeout=300)
    sock.sendall(("PUT %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n"
                  "Content-Type: application/octet-stream\r\n\r\n"
                  % (path("/import_raw_vdi", **query), host, length))
                 .encode())
    return sock


def read_head(sock):
    """The answer's status line and headers, read before any body is
    sent: xapi answers an upload first."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        b = sock.recv(4096)
        assert b, buf
        buf += b
    head = buf.split(b"\r\n\r\n")[0].decode().split("\r\n")
    hdrs = {k.lower(): v for k, v in (h.split(": ", 1) for h in head[1:])}
    return head[0], hdrs


def wait_task(ref):
    def ended():
        rec = task(ref)
        return rec if rec["status"] not in ("pending", "cancelling") else None
    return wait_until(ended, "task %s still pending" % ref)


def read_to_close(sock):
    while sock.recv(65536):
        pass
    sock.close()


data = os.urandom(SIZE)

# task.create: a pending task with its label and description, as xapi
# makes it; other_config as xapi's maps.
t = ok(x.task.create(s, "import", "a test import"))
rec = task(t)
assert rec["status"] == "pending" and rec["progress"] == 0.0, rec
assert rec["name_label"] == "import", rec
assert rec["name_description"] == "a test import", rec
assert rec["other_config"] == {} and rec["result"] == "", rec
assert rec["error_info"] == [] and rec["allowed_operations"] == [], rec
assert t in ok(x.task.get_all(s))
ok(x.task.add_to_other_config(s, t, "k", "v"))
failure(x.task.add_to_other_config(s, t, "k", "w"), "MAP_DUPLICATE_KEY")
ok(x.task.set_other_config(s, t, {"a": "1", "b": "2"}))
ok(x.task.remove_from_other_config(s, t, "a"))
assert ok(x.task.get_other_config(s, t)) == {"b": "2"}
failure(x.task.create(s, "only a label"), "MESSAGE_PARAMETER_COUNT_MISMATCH")
failure(x.task.create("OpaqueRef:nope", "l", "d"), "SESSION_INVALID")

# An import driven by the task, answered before its body (xapi's way),
# its progress moving as the bytes come, its result the VDI's ref.
vdi = new_vdi("driven")
sock = raw_put({"session_id": s, "task_id": t, "vdi": vdi, "format": "raw"},
               SIZE)
status, hdrs = read_head(sock)
assert status == "HTTP/1.1 200 OK", status
assert hdrs["task-id"] == t and hdrs["connection"] == "close", hdrs
assert "content-length" not in hdrs, hdrs
seen = set()
for i in range(0, SIZE, 4 * MiB):
    sock.sendall(data[i:i + 4 * MiB])
    time.sleep(0.05)
    seen.add(task(t)["progress"])
moving = sorted(p for p in seen if 0 < p < 1)
assert len(moving) >= 3, seen
read_to_close(sock)
rec = wait_task(t)
assert rec["status"] == "success", rec
assert rec["result"] == "<value>%s</value>" % vdi, rec
assert rec["progress"] == 1.0 and rec["error_info"] == [], rec
assert rec["finished"] >= rec["created"], rec
st, body, _ = get(vdi, session_id=s, format="raw")
assert st == 200 and body == data, "imported data differs"
# The same task again (os_xenapi uses one for every disk): the import
# works and the task keeps its outcome.
sock = raw_put({"session_id": s, "task_id": t, "vdi": vdi}, MiB)
assert read_head(sock)[0] == "HTTP/1.1 200 OK"
sock.sendall(data[:MiB])
read_to_close(sock)
assert task(t)["result"] == "<value>%s</value>" % vdi
# (The body replaced all the disk held.)
data = data[:MiB] + bytes(SIZE - MiB)
ok(x.task.destroy(s, t))
failure(x.task.get_record(s, t), "HANDLE_INVALID")

# An export driven by a task, the VDI named by its uuid.
uuid = ok(x.VDI.get_uuid(s, vdi))
t = ok(x.task.create(s, "export", ""))
st, body, r = get(uuid, session_id=s, task_id=t)
assert st == 200 and body == data, st
assert r.getheader("task-id") == t, r.getheaders()
rec = wait_task(t)
assert rec["status"] == "success" and rec["result"] == "", rec
assert rec["progress"] == 1.0, rec
ok(x.task.destroy(s, t))

# A bad VHD: answered 200 first, the failure is the task's.
t = ok(x.task.create(s, "bad", ""))
bad = new_vdi("bad")
sock = raw_put({"session_id": s, "task_id": t, "vdi": bad, "format": "vhd"},
               MiB)
assert read_head(sock)[0] == "HTTP/1.1 200 OK"
try:
    sock.sendall(b"\x55" * MiB)
except (BrokenPipeError, ConnectionResetError):
    pass
read_to_close(sock)
rec = wait_task(t)
assert rec["status"] == "failure", rec
assert rec["error_info"][0] == "VDI_IO_ERROR", rec
assert "no VHD footer" in rec["error_info"][1], rec
ok(x.task.destroy(s, t))

# Refused from the headers, the task fails too: a bad session, a bad
# VDI.  A task_id that names no client's task is refused.
t = ok(x.task.create(s, "refused", ""))
st, text, _ = put(vdi, b"x", session_id="OpaqueRef:nope", task_id=t)
assert st == 401 and "SESSION_INVALID" in text, (st, text)
assert task(t)["error_info"][0] == "SESSION_INVALID", task(t)
t = ok(x.task.create(s, "refused", ""))
st, text, _ = put("OpaqueRef:0b5ecf5d-1b2c-4d3e-8f90-123456789abc", b"x",
                  session_id=s, task_id=t)
assert st == 404 and task(t)["error_info"][0] == "HANDLE_INVALID", task(t)
st, text, _ = put(vdi, b"x", session_id=s,
                  task_id="OpaqueRef:0b5ecf5d-1b2c-4d3e-8f90-123456789abc")
assert st == 404 and "HANDLE_INVALID task" in text, (st, text)

# The session in a cookie, or as HTTP Basic auth; wrong ones refused.
st, body, _ = get(uuid, headers={"Cookie": "session_id=" + s})
assert st == 200 and body == data, st
st, _, _ = get(uuid, headers={"Cookie": "session_id=OpaqueRef:nope"})
assert st == 401, st


def basic(user, pw):
    return {"Authorization": "Basic "
            + base64.b64encode(("%s:%s" % (user, pw)).encode()).decode()}


st, body, _ = get(uuid, headers=basic("root", "secret"))
assert st == 200 and body == data, st
st, body, _ = get(uuid, headers=basic("root", "wrong"))
assert st == 401 and b"SESSION_AUTHENTICATION_FAILED" in body, (st, body)
st, _, _ = get(uuid, headers={"Authorization": "Basic !!!"})
assert st == 401, st
st, text, _ = put(uuid, data[:MiB], headers=basic("root", "secret"))
assert st == 200, (st, text)

# Xen Orchestra's probe: an empty PUT, no task: 200, the disk untouched.
probe = new_vdi("probe", 4 * MiB)
st, text, _ = put(probe, data[:4 * MiB], session_id=s)
assert st == 200, (st, text)
st, text, _ = put(probe, b"", session_id=s, format="vhd")
assert st == 200, (st, text)
st, body, _ = get(probe, session_id=s)
assert body == data[:4 * MiB], "the probe changed the disk"
assert ok(x.VDI.get_current_operations(s, probe)) == {}

# Chunked, with a task: answered once the body is in.
t = ok(x.task.create(s, "chunked", ""))
chunked = new_vdi("chunked", 8 * MiB)
st, text, _ = put(chunked, iter([data[:4 * MiB], data[4 * MiB:8 * MiB]]),
                  chunked=True, session_id=s, task_id=t)
assert st == 200, (st, text)
assert wait_task(t)["status"] == "success"
assert get(chunked, session_id=s)[1] == data[:8 * MiB]

# Xen Orchestra's upload of a stream of unknown length: 1 PiB announced,
# the answer awaited before the body, the connection cut after its last
# byte.  A raw body so cut is written but fails the task with
# VDI_IO_ERROR (what Xen Orchestra then ignores) ...
PiB = 1 << 50
t = ok(x.task.create(s, "xo raw", ""))
xo = new_vdi("xo", 8 * MiB)
sock = raw_put({"session_id": s, "task_id": t, "vdi": xo, "format": "raw"},
               PiB)
assert read_head(sock)[0] == "HTTP/1.1 200 OK"
sock.sendall(data[:6 * MiB])
sock.close()
rec = wait_task(t)
assert rec["status"] == "failure", rec
assert rec["error_info"][0] == "VDI_IO_ERROR", rec
assert get(xo, session_id=s)[1] == data[:6 * MiB] + bytes(2 * MiB)
# ... a whole VHD so cut is a success.
t = ok(x.task.create(s, "xo vhd", ""))
with open(os.path.join(T, "src.vhd"), "rb") as f:
    vhd = f.read()
sock = raw_put({"session_id": s, "task_id": t, "vdi": xo, "format": "vhd"},
               PiB)
assert read_head(sock)[0] == "HTTP/1.1 200 OK"
sock.sendall(vhd)
sock.shutdown(socket.SHUT_WR)
read_to_close(sock)
rec = wait_task(t)
assert rec["status"] == "success", rec
with open(os.path.join(T, "src.raw"), "rb") as f:
    assert get(xo, session_id=s)[1] == f.read(), "VHD import differs"
# ... and a raw body past the disk fails the task.
t = ok(x.task.create(s, "xo big", ""))
sock = raw_put({"session_id": s, "task_id": t, "vdi": xo, "format": "raw"},
               PiB)
assert read_head(sock)[0] == "HTTP/1.1 200 OK"
try:
    sock.sendall(data[:9 * MiB])
except (BrokenPipeError, ConnectionResetError):
    pass
sock.close()
rec = wait_task(t)
assert rec["status"] == "failure", rec
assert "larger than the VDI" in rec["error_info"][1], rec

# task.destroy while a transfer reports into the task: it goes when the
# transfer ends.  task.cancel stops the transfer.
t = ok(x.task.create(s, "destroyed", ""))
sock = raw_put({"session_id": s, "task_id": t, "vdi": xo}, 8 * MiB)
assert read_head(sock)[0] == "HTTP/1.1 200 OK"
sock.sendall(data[:MiB])
ok(x.task.destroy(s, t))
assert task(t)["current_operations"] == {"task": "destroy"}, task(t)
sock.sendall(data[MiB:8 * MiB])
read_to_close(sock)
wait_until(lambda: x.task.get_record(s, t)["Status"] == "Failure",
           "the destroyed task stays after its transfer")
failure(x.task.get_record(s, t), "HANDLE_INVALID")
t = ok(x.task.create(s, "cancelled", ""))
sock = raw_put({"session_id": s, "task_id": t, "vdi": xo}, 8 * MiB)
assert read_head(sock)[0] == "HTTP/1.1 200 OK"
sock.sendall(data[:MiB])
ok(x.task.cancel(s, t))
try:
    sock.sendall(data[MiB:8 * MiB])
    read_to_close(sock)
except (BrokenPipeError, ConnectionResetError):
    pass
rec = wait_task(t)
assert rec["status"] == "cancelled", rec
assert rec["error_info"] == ["TASK_CANCELLED", t], rec
# Not reported into: cancelled, or destroyed, at once.
t = ok(x.task.create(s, "idle", ""))
ok(x.task.cancel(s, t))
assert task(t)["status"] == "cancelled"
ok(x.task.destroy(s, t))
t = ok(x.task.create(s, "idle", ""))
ok(x.task.destroy(s, t))
failure(x.task.get_record(s, t), "HANDLE_INVALID")

# What xapi lets a client set on its task.
t = ok(x.task.create(s, "set", ""))
ok(x.task.set_progress(s, t, 0.5))
ok(x.task.set_result(s, t, "<value>x</value>"))
ok(x.task.set_error_info(s, t, ["CODE", "param"]))
ok(x.task.set_status(s, t, "failure"))
rec = task(t)
assert (rec["progress"], rec["result"], rec["error_info"], rec["status"]) \
    == (0.5, "<value>x</value>", ["CODE", "param"], "failure"), rec
failure(x.task.set_status(s, t, "nonsense"), "INVALID_VALUE")
failure(x.task.set_progress(s, t, "half"), "FIELD_TYPE_ERROR")
ok(x.task.destroy(s, t))

print("ok")
