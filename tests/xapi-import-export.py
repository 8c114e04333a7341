# Driven by test-xapi-import-export.sh: a XenAPI client of xapi's disk
# data URLs, with the standard library only (xmlrpc.client, http.client).
#   xapi-import-export.py URL login                   -> session ref
#   xapi-import-export.py URL create S SR NAME SIZE [FORMAT] -> VDI ref
#   xapi-import-export.py URL put S VDI FORMAT FILE   -> "STATUS BODY"
#   xapi-import-export.py URL put-chunked S VDI FORMAT FILE (no length)
#   xapi-import-export.py URL get S VDI FORMAT OUT    -> "STATUS LENGTH"
#   xapi-import-export.py URL busy S VDI FILE   -> status of a 2nd import
#                                                  while a 1st one runs
#   xapi-import-export.py URL abort S VDI FILE  -> "freed" once the VDI is
#                               free after a client left half-way through
# S, VDI and FORMAT are sent as given ("-" leaves the parameter out), so
# that the test can send bad ones.
import http.client
import os
import sys
import time
import urllib.parse
import xmlrpc.client

from xapi_checks import ok, wait_until

url, cmd, args = sys.argv[1], sys.argv[2], sys.argv[3:]
x = xmlrpc.client.ServerProxy(url)
host = urllib.parse.urlsplit(url).netloc
CHUNK = 1 << 20


def target(path, session, vdi, fmt):
    q = [(k, v) for k, v in (("session_id", session), ("vdi", vdi),
                             ("format", fmt)) if v != "-"]
    return path + "?" + urllib.parse.urlencode(q)


def conn():
    return http.client.HTTPConnection(host, timeout=300, blocksize=CHUNK)


def chunks(f):
    while True:
        b = f.read(CHUNK)
        if not b:
            break
        yield b


def put(session, vdi, fmt, path, chunked=False):
    c = conn()
    size = os.path.getsize(path)
    # Chunked: the length is not known from the headers.
    headers = {} if chunked else {"Content-Length": str(size)}
    with open(path, "rb") as f:
        try:
            c.request("PUT", target("/import_raw_vdi", session, vdi, fmt),
                      body=chunks(f) if chunked else f, headers=headers,
                      encode_chunked=chunked)
        except (BrokenPipeError, ConnectionResetError):
            pass  # answered (and closed) before the body was all sent
        r = c.getresponse()
        return r.status, r.read().decode()


if cmd == "login":
    print(ok(x.session.login_with_password("root", "secret")))
elif cmd == "create":
    s, sr_name, name, size = args[:4]
    [sr] = ok(x.SR.get_by_name_label(s, sr_name))
    rec = {"SR": sr, "name_label": name, "virtual_size": size,
           "type": "user", "sharable": False, "read_only": False,
           "other_config": {}, "sm_config": {}}
    if len(args) > 4:
        rec["sm_config"] = {"image-format": args[4]}
    print(ok(x.VDI.create(s, rec)))
elif cmd == "put":
    status, body = put(*args)
    print(status, body.strip())
elif cmd == "put-chunked":
    status, body = put(*args, chunked=True)
    print(status, body.strip())
elif cmd == "get":
    s, vdi, fmt, out = args
    c = conn()
    c.request("GET", target("/export_raw_vdi", s, vdi, fmt))
    r = c.getresponse()
    n = 0
    if r.status == 200:
        with open(out, "wb") as f:
            while True:
                b = r.read(CHUNK)
                if not b:
                    break
                f.write(b)
                n += len(b)
        length = int(r.getheader("Content-Length"))
        assert n == length, (n, length)
        print(r.status, n)
    else:
        print(r.status, r.read().decode().strip())
elif cmd == "busy":
    s, vdi, path = args
    size = os.path.getsize(path)
    first = conn()
    first.putrequest("PUT", target("/import_raw_vdi", s, vdi, "raw"))
    first.putheader("Content-Length", str(size))
    first.endheaders()
    with open(path, "rb") as f:
        first.send(f.read(CHUNK))
        # The first import is under way: the VDI is busy (as soon as the
        # daemon has read the headers).
        def busy():
            r = ok(x.VDI.get_record(s, vdi))
            return r if r["current_operations"] else None
        rec = wait_until(busy, "the VDI never became busy with the import")
        assert list(rec["current_operations"].values()) == ["import"], rec
        status, body = put(s, vdi, "raw", path)
        print(status, body.strip())
        while True:
            b = f.read(CHUNK)
            if not b:
                break
            first.send(b)
    r = first.getresponse()
    assert r.status == 200, (r.status, r.read())
    rec = ok(x.VDI.get_record(s, vdi))
    assert rec["current_operations"] == {}, rec
elif cmd == "abort":
    # A client that goes away half-way, uploading then downloading: the
    # VDI is free again soon after.
    s, vdi, path = args
    size = os.path.getsize(path)

    def wait_free():
        wait_until(
            lambda: ok(x.VDI.get_record(s, vdi))["current_operations"] == {},
            "VDI still busy after the client went away")

    c = conn()
    c.putrequest("PUT", target("/import_raw_vdi", s, vdi, "raw"))
    c.putheader("Content-Length", str(size))
    c.endheaders()
    with open(path, "rb") as f:
        c.send(f.read(3 * CHUNK))
    time.sleep(0.2)
    c.close()
    wait_free()
    c = conn()
    c.request("GET", target("/export_raw_vdi", s, vdi, "raw"))
    r = c.getresponse()
    assert r.status == 200, r.status
    r.read(CHUNK)
    c.close()
    wait_free()
    print("freed")
else:
    sys.exit("unknown command " + cmd)
