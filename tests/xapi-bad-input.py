# Driven by test-xapi-bad-input.sh: bad requests get XenAPI failures or
# HTTP 4xx, never a crash, and nothing is written outside the SR.
#   xapi-bad-input.py URL SR1_DIR PID [FAST_USER]
import http.client
import os
import select
import socket
import sys
import urllib.parse
import xmlrpc.client

import xapi_checks
from xapi_checks import failure, ok

url, sr1_dir, pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
u = urllib.parse.urlsplit(url)
x = xmlrpc.client.ServerProxy(url)


def alive():
    """The daemon still answers."""
    failure(x.session.login_with_password("root", "wrong"),
            "SESSION_AUTHENTICATION_FAILED")


def rss_kib():
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def post(body, headers=None):
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=300)
    c.request("POST", "/", body, headers or {"Content-Type": "text/xml"})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


# Wrong password, unknown user, wrong types.
e = failure(x.session.login_with_password("root", "wrong"),
            "SESSION_AUTHENTICATION_FAILED")
failure(x.session.login_with_password("nobody", "secret"),
        "SESSION_AUTHENTICATION_FAILED")
failure(x.session.login_with_password("root", ""),
        "SESSION_AUTHENTICATION_FAILED")
failure(x.session.login_with_password("root", 42), "FIELD_TYPE_ERROR")
# Wrong parameter counts.
failure(x.session.login_with_password("root"),
        "MESSAGE_PARAMETER_COUNT_MISMATCH")
failure(x.session.login_with_password("root", "secret", "1", "o", "x"),
        "MESSAGE_PARAMETER_COUNT_MISMATCH")
s = ok(x.session.login_with_password("root", "secret"))
e = failure(x.VDI.get_record(s), "MESSAGE_PARAMETER_COUNT_MISMATCH")
assert e[1:] == ["VDI.get_record", "2", "1"], e
failure(x.SR.get_all(s, "extra"), "MESSAGE_PARAMETER_COUNT_MISMATCH")
failure(x.VDI.create(s), "MESSAGE_PARAMETER_COUNT_MISMATCH")
failure(x.SR.get_all(), "MESSAGE_PARAMETER_COUNT_MISMATCH")
# Bad sessions.
for bad in ["OpaqueRef:00000000-0000-0000-0000-000000000000", "", "x" * 5000,
            s + "x"]:
    e = failure(x.SR.get_all(bad), "SESSION_INVALID")
failure(x.SR.get_all(17), "FIELD_TYPE_ERROR")
# Unknown methods and classes.  (system.listMethods is known since
# issue 14: test-xapi-records.sh.)
for m in ["VDI.no_such_method", "nosuchclass.get_all", "VDI", ".",
          "VDI.", "VDI.get_", "Async.VDI.no_such_method", "Async.",
          "system.no_such_method"]:
    failure(getattr(x, m)(s, "OpaqueRef:NULL"), "MESSAGE_METHOD_UNKNOWN")
e = failure(x.VDI.no_such_method(s), "MESSAGE_METHOD_UNKNOWN")
assert e[1:] == ["VDI.no_such_method"], e

# Clients that never log out cannot pile up sessions: past the limit
# (1000) the oldest end.
if len(sys.argv) > 4:
    fast = sys.argv[4]
    first = ok(x.session.login_with_password(fast, "secret"))
    for _ in range(1000):
        last = ok(x.session.login_with_password(fast, "secret"))
    failure(x.SR.get_all(first), "SESSION_INVALID")
    ok(x.SR.get_all(last))
    s = last

[sr1] = ok(x.SR.get_by_name_label(s, "sr1"))
failure(x.SR.get_no_such_field(s, sr1), "MESSAGE_METHOD_UNKNOWN")
# Uuids and refs with path tricks.
for bad in ["../../etc/passwd", "/etc/passwd", "..", "", "%2e%2e",
            "0b6c8a52-3f7e-4d1a-9c2b-5e8f7a6d4c3b/../../x",
            "0B6C8A52-3F7E-4D1A-9C2B-5E8F7A6D4C3B", " " * 36]:
    failure(x.VDI.get_by_uuid(s, bad), "UUID_INVALID")
    failure(x.SR.get_by_uuid(s, bad), "UUID_INVALID")
    failure(x.VDI.get_record(s, "OpaqueRef:" + bad), "HANDLE_INVALID")
    failure(x.VDI.get_record(s, bad), "HANDLE_INVALID")
    failure(x.VDI.destroy(s, "OpaqueRef:" + bad), "HANDLE_INVALID")
    failure(x.SR.scan(s, "OpaqueRef:" + bad), "HANDLE_INVALID")
failure(x.VDI.get_by_uuid(s, "0b6c8a52-3f7e-4d1a-9c2b-5e8f7a6d4c3b"),
        "UUID_INVALID")
# VDI.create with bad records.
failure(x.VDI.create(s, "not a struct"), "FIELD_TYPE_ERROR")
failure(x.VDI.create(s, {"name_label": "x", "virtual_size": "1"}),
        "FIELD_TYPE_ERROR")
failure(x.VDI.create(s, {"SR": "OpaqueRef:../x", "virtual_size": "1"}),
        "HANDLE_INVALID")
for size in ["-1", "x", "", "99999999999999999999999", -5]:
    failure(x.VDI.create(s, {"SR": sr1, "virtual_size": size}),
            "FIELD_TYPE_ERROR")
failure(x.VDI.create(s, {"SR": sr1, "virtual_size": "1048576",
                         "sm_config": {"image-format": "../vhd"}}),
        "INVALID_VALUE")

# A name label with ../ and / is a label, never a path.
parent = os.path.dirname(os.path.abspath(sr1_dir))
before = sorted(os.listdir(parent))
sr_before = set(os.listdir(sr1_dir))
for label in ["../../escape", "../escape/x", "/tmp/escape", "a/b", "..",
              "escape\0x" if False else "nul-free"]:
    v = ok(x.VDI.create(s, {"SR": sr1, "name_label": label,
                            "virtual_size": str(1 << 20)}))
    r = ok(x.VDI.get_record(s, v))
    assert r["name_label"] == label, r
    assert r["location"] == r["uuid"] + ".vhd", r
    assert os.path.exists(os.path.join(sr1_dir, r["location"]))
    assert ok(x.VDI.get_by_name_label(s, label)) == [v]
assert sorted(os.listdir(parent)) == before, (before, os.listdir(parent))
new = set(os.listdir(sr1_dir)) - sr_before
assert len(new) == 6 and all(n.endswith(".vhd") for n in new), new
assert not os.path.exists("/tmp/escape")

# Malformed XML: HTTP 400, and the daemon still answers.
for body in [b"<methodCall><methodName>x", b"not xml at all", b"",
             b"<?xml version='1.0'?><methodCall></methodCall>",
             b"<methodCall><methodName>session.logout</methodName>"
             b"<params><param><value><struct><member><name>a</name>"
             b"</member></struct></value></param></params></methodCall>",
             b"\xff\xfe\x00garbage", b"<" * 100000,
             b"<methodCall>" + b"<value><array><data>" * 200 +
             b"</methodCall>"]:
    status, data = post(body)
    assert 400 <= status < 500, (status, data, body[:80])
    xapi_checks.checks += 1
    alive()
# GET and other paths are not XML-RPC.
c = http.client.HTTPConnection(u.hostname, u.port, timeout=300)
c.request("GET", "/")
assert 400 <= c.getresponse().status < 500
c.close()
status, _ = post(xmlrpc.client.dumps((s,), "SR.get_all").encode())
assert status == 200
alive()

# A 50 MB body: 413 from the headers, without reading (or keeping) it.
rss0 = rss_kib()
size = 50 * 1000 * 1000
sock = socket.create_connection((u.hostname, u.port), timeout=300)
sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n"
             b"Content-Length: %d\r\n\r\n" % size)
chunk = b"<" * (1 << 20)
sent, reply = 0, b""
try:
    # Still sending while the answer comes (the daemon must not reset the
    # connection under our feet before we read it).
    for _ in range(4):
        sock.sendall(chunk)
        sent += len(chunk)
except (BrokenPipeError, ConnectionResetError):
    pass
while sent < size:
    r, w, _ = select.select([sock], [sock], [], 30)
    if r:
        break
    try:
        sent += sock.send(chunk[:size - sent])
    except (BrokenPipeError, ConnectionResetError):
        break
try:
    while b"\r\n" not in reply:
        d = sock.recv(4096)
        if not d:
            break
        reply += d
except ConnectionResetError:
    pass
sock.close()
assert reply.startswith(b"HTTP/1.1 413"), (reply[:200], sent)
xapi_checks.checks += 1
alive()
rss1 = rss_kib()
assert rss1 - rss0 < 20 * 1024, (rss0, rss1)
print("50 MB body: 413 after %d bytes sent; RSS %d -> %d KiB"
      % (sent, rss0, rss1))

# A chunked body over the limit: also 413, and not kept in memory.
c = http.client.HTTPConnection(u.hostname, u.port, timeout=300)


def chunks():
    for _ in range(50):
        yield chunk


try:
    c.request("POST", "/", chunks(), {"Content-Type": "text/xml"},
              encode_chunked=True)
    status = c.getresponse().status
except (BrokenPipeError, ConnectionResetError):
    status = 413  # refused while we were still sending
c.close()
assert status == 413, status
xapi_checks.checks += 1
alive()
rss2 = rss_kib()
# libsoup reads a chunked body in chunks that are freed at once; ASan
# keeps freed memory in quarantine, so RSS says nothing under sanitizers.
if not os.environ.get("ASAN_OPTIONS"):
    assert rss2 - rss0 < 40 * 1024, (rss0, rss2)
print("50 MiB chunked body: %d; RSS %d -> %d KiB" % (status, rss0, rss2))

print("xapi-bad-input: %d checks passed" % xapi_checks.checks)
