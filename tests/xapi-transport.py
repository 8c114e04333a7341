# Driven by test-xapi-transport.sh: how calls reach vdimotiond and how
# its replies look, with the standard library only.
#   xapi-transport.py URL SR-DIR
# - Python's xmlrpc.client with a URL without a path posts to /RPC2;
#   /xmlrpc, /RPC2/ and any other POST path are XML-RPC (xapi's longest
#   prefix);
# - JSON-RPC 2.0 and 1.0 at /jsonrpc (and /jsonrpc/), with xapi's JSON
#   types: an int64 is a JSON number both ways, a datetime a string
#   ending in Z; sessions are shared with XML-RPC;
# - /json answers XML-RPC in XML and JSON-RPC in JSON;
# - the XML-RPC reply's bytes are xapi's: no blank between tags, bare
#   strings ("" as <value></value>), int64 as a string, dateTime with Z,
#   Content-Type text/xml;
# - the disk data handlers with a trailing slash (/import_raw_vdi/,
#   /export_raw_vdi/); the wrong method is 405, an unknown GET 404.
import http.client
import json
import os
import re
import sys
import urllib.parse
import xmlrpc.client

import xapi_checks
from xapi_checks import failure, ok

url, sr_dir = sys.argv[1], sys.argv[2]
u = urllib.parse.urlsplit(url)
base = "%s://%s" % (u.scheme, u.netloc)  # no path, no trailing slash
MIB = 1 << 20


def conn():
    return http.client.HTTPConnection(u.hostname, u.port, timeout=300)


def post(path, body, ctype):
    """POST BODY to PATH: (status, Content-Type, body bytes)."""
    c = conn()
    c.request("POST", path, body, {"Content-Type": ctype})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, r.getheader("Content-Type"), data


jid = 0


def jcall(method, *params, version=2, path="/jsonrpc", raw=False):
    """A JSON-RPC call: the decoded reply (RAW: with its bytes)."""
    global jid
    jid += 1
    req = {"method": method, "params": list(params), "id": jid}
    if version == 2:
        req["jsonrpc"] = "2.0"
    status, ctype, data = post(path, json.dumps(req), "application/json")
    assert status == 200, (status, data)
    assert ctype == "application/json", ctype
    reply = json.loads(data)
    assert reply["id"] == jid, reply
    return (reply, data) if raw else reply


def jok(method, *params, **kw):
    reply = jcall(method, *params, **kw)
    assert "error" not in reply or reply["error"] is None, reply
    xapi_checks.checks += 1
    return reply["result"]


# xmlrpc.client without a path: /RPC2.
x = xmlrpc.client.ServerProxy(base)
assert x._ServerProxy__handler == "/RPC2", x._ServerProxy__handler
s = ok(x.session.login_with_password("root", "secret", "2.1", "test"))
srs = ok(x.SR.get_all(s))
assert len(srs) == 2, srs
for path in ("/xmlrpc", "/RPC2/", "/anything/else"):
    assert ok(xmlrpc.client.ServerProxy(base + path).SR.get_all(s)) == srs

# JSON-RPC 2.0 and 1.0; the sessions are the same as XML-RPC's.
js = jok("session.login_with_password", "root", "secret")
assert js.startswith("OpaqueRef:"), js
assert sorted(jok("SR.get_all", js)) == sorted(srs)
assert sorted(jok("SR.get_all", s, version=1)) == sorted(srs)
assert sorted(ok(x.SR.get_all(js))) == sorted(srs)
assert sorted(jok("SR.get_all", js, path="/jsonrpc/")) == sorted(srs)
reply, data = jcall("SR.get_all", "OpaqueRef:bogus", raw=True)
assert data == (b'{"jsonrpc":"2.0","error":{"code":1,"message":'
                b'"SESSION_INVALID","data":["OpaqueRef:bogus"]},"id":%d}'
                % jid), data
reply, data = jcall("SR.get_all", "OpaqueRef:bogus", version=1, raw=True)
assert data == (b'{"result":null,"error":["SESSION_INVALID",'
                b'"OpaqueRef:bogus"],"id":%d}' % jid), data
reply = jcall("no.such_method", js)
assert reply["error"]["message"] == "MESSAGE_METHOD_UNKNOWN", reply
xapi_checks.checks += 3

# Types: a VDI made over JSON-RPC with its size a JSON number.
sr = [r for r, rec in ok(x.SR.get_all_records(s)).items()
      if rec["name_label"] == "sr1"][0]
vdi = jok("VDI.create", js, {"SR": sr, "name_label": "json-vdi",
                             "virtual_size": MIB, "type": "user",
                             "sharable": False, "read_only": False,
                             "other_config": {}})
rec = jok("VDI.get_record", js, vdi)
assert rec["virtual_size"] == MIB, rec  # a number in JSON
assert rec["read_only"] is False, rec
assert rec["name_description"] == "", rec
assert re.fullmatch(r"\d{8}T\d\d:\d\d:\d\dZ", rec["snapshot_time"]), rec
assert jok("VDI.get_virtual_size", js, vdi) == MIB
assert ok(x.VDI.get_virtual_size(s, vdi)) == str(MIB)  # a string in XML
xapi_checks.checks += 1

# The bytes of an XML-RPC reply are xapi's.
status, ctype, data = post("/", xmlrpc.client.dumps((s, vdi),
                                                    "VDI.get_record"),
                           "text/xml")
assert status == 200 and ctype == "text/xml", (status, ctype)
assert data.startswith(b'<?xml version="1.0"?><methodResponse><params>'
                       b'<param><value><struct><member><name>Status</name>'
                       b'<value>Success</value></member>'), data[:120]
assert data.endswith(b"</param></params></methodResponse>"), data[-60:]
assert not re.search(rb">\s+<", data), "blanks between tags"
assert b"<string>" not in data
assert b"<name>name_description</name><value></value></member>" in data
assert (b"<name>virtual_size</name><value>%d</value></member>" % MIB
        in data), data
assert re.search(rb"<name>snapshot_time</name><value><dateTime\.iso8601>"
                 rb"\d{8}T\d\d:\d\d:\d\dZ</dateTime\.iso8601></value>", data)
assert b"<name>read_only</name><value><boolean>0</boolean></value>" in data
status, ctype, data = post("/", xmlrpc.client.dumps(("OpaqueRef:bogus",),
                                                    "SR.get_all"),
                           "text/xml")
assert data == (b'<?xml version="1.0"?><methodResponse><params><param>'
                b'<value><struct><member><name>Status</name><value>Failure'
                b'</value></member><member><name>ErrorDescription</name>'
                b'<value><array><data><value>SESSION_INVALID</value><value>'
                b'OpaqueRef:bogus</value></data></array></value></member>'
                b'</struct></value></param></params></methodResponse>'), data
xapi_checks.checks += 2

# /json: XML-RPC answered in XML, JSON-RPC in JSON.
status, ctype, data = post("/json", xmlrpc.client.dumps((s,), "SR.get_all"),
                           "text/xml")
assert status == 200 and ctype == "text/xml", (status, ctype, data)
assert sorted(xmlrpc.client.loads(data)[0][0]["Value"]) == sorted(srs)
assert sorted(jok("SR.get_all", js, path="/json")) == sorted(srs)
xapi_checks.checks += 1

# Bad bodies: 400, and the daemon goes on.
for body in (b"{", b"[]", b'{"jsonrpc":"2.0","method":"SR.get_all"}',
             b"[" * 1000000):
    status, ctype, data = post("/jsonrpc", body, "application/json")
    assert status == 400 and ctype == "text/plain", (status, ctype, data)
reply = jcall("SR.get_all", "\u0001")
assert reply["error"]["message"] == "XMLRPC_UNMARSHAL_FAILURE", reply
xapi_checks.checks += 2

# The disk data handlers, with a trailing slash.
data = os.urandom(MIB)
q = urllib.parse.urlencode({"session_id": s, "vdi": vdi, "format": "raw"})
c = conn()
c.request("PUT", "/import_raw_vdi/?" + q, body=data,
          headers={"Content-Length": str(len(data))})
r = c.getresponse()
r.read()
assert r.status == 200, r.status
c.close()
c = conn()
c.request("GET", "/export_raw_vdi/?" + q)
r = c.getresponse()
assert r.status == 200, r.status
assert r.read() == data
c.close()
for method, path, want in (("GET", "/import_raw_vdi/", 405),
                           ("POST", "/export_raw_vdi/", 405),
                           ("GET", "/jsonrpc", 405),
                           ("GET", "/RPC2", 405),
                           ("GET", "/nothing", 404)):
    c = conn()
    c.request(method, path + "?" + q, body=b"" if method != "GET" else None)
    r = c.getresponse()
    r.read()
    assert r.status == want, (method, path, r.status)
    c.close()
xapi_checks.checks += 2

ok(x.session.logout(s))
failure(x.SR.get_all(s), "SESSION_INVALID")
jok("session.logout", js)
print("xapi-transport: %d checks passed" % xapi_checks.checks)
