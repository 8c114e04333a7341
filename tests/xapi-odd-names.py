# Driven by test-xapi-odd-names.sh: names outside plain ASCII.
#   xapi-odd-names.py URL SR1_DIR before|after
# before: VDIs named with emoji and CJK round-trip through VDI.create,
#   get_record and set_name_label; files dropped into the SR with such
#   names are adopted by SR.scan with their names as labels; files whose
#   names are not valid UTF-8 or hold control characters are skipped; a
#   request carrying invalid UTF-8 gets a XenAPI failure.
# after (a restart later): every listing still works, the records are
#   the same.
# legacy: sr.db holds a record made before names were checked (location
#   and label not valid UTF-8, a control character, the format column
#   saying qcow2 for a .raw file): it is listed, its label and location
#   shown with U+FFFD, and its image is read as raw, the name's word.
import http.client
import json
import os
import sys
import urllib.parse
import xmlrpc.client

import xapi_checks
from xapi_checks import ok

url, sr_dir, phase = sys.argv[1:4]
x = xmlrpc.client.ServerProxy(url)
s = ok(x.session.login_with_password("root", "secret"))
sr = ok(x.SR.get_by_name_label(s, "sr1"))[0]
EMOJI = "disk-\U0001F600-\U0001F4BE"
CJK = "\u65e5\u672c\u8a9e\u306e\u30c7\u30a3\u30b9\u30af"
FILES = {"vm-\U0001F680.vhd": True, "\u9577\u3044\u540d\u524d.qcow2": True,
         b"bad-\xff\xfe.vhd": False, b"bad-\xc3\x28.raw": False,
         "ctl-\x01-\x7f.raw": False}
state = os.path.join(sr_dir, "..", "odd-names.json")
LEGACY = "0badc0de-0000-4000-8000-000000000001"


def labels():
    recs = ok(x.VDI.get_all_records(s))
    for ref in ok(x.VDI.get_all(s)):
        assert ok(x.VDI.get_record(s, ref)) == recs[ref]
    return sorted(r["name_label"] for r in recs.values())


if phase == "before":
    made = {}
    for name in (EMOJI, CJK, EMOJI + " " + CJK):
        vdi = ok(x.VDI.create(s, {"SR": sr, "name_label": name,
                                  "name_description": name[::-1],
                                  "virtual_size": str(1 << 20),
                                  "other_config": {"note": name},
                                  "sm_config": {"image-format": "raw"}}))
        rec = ok(x.VDI.get_record(s, vdi))
        assert rec["name_label"] == name, rec
        assert rec["name_description"] == name[::-1], rec
        assert rec["other_config"]["note"] == name, rec
        assert ok(x.VDI.get_by_name_label(s, name)) == [vdi]
        made[name] = vdi

    # Files dropped into the SR, then a scan.
    for name in FILES:
        raw = name if isinstance(name, bytes) else name.encode()
        fmt = raw.rsplit(b".", 1)[1].decode()
        qfmt = {"vhd": "vpc"}.get(fmt, fmt)
        os.system("qemu-img create -q -f %s '%s' 1M" %
                  (qfmt, os.fsdecode(os.path.join(os.fsencode(sr_dir),
                                                  raw))))
    ok(x.SR.scan(s, sr))
    got = labels()
    for name, listed in FILES.items():
        if listed:
            assert name in got, (name, got)
    for name in got:
        assert "bad-" not in name and "ctl-" not in name, got

    # Invalid UTF-8 in a request: a XenAPI failure, not a crash.
    body = (b"<?xml version='1.0'?><methodCall><methodName>VDI.get_by_name_"
            b"label</methodName><params><param><value><string>" +
            s.encode() + b"</string></value></param><param><value><string>"
            b"bad-\xff\xfe</string></value></param></params></methodCall>")
    u = urllib.parse.urlsplit(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=300)
    c.request("POST", "/", body=body, headers={"Content-Type": "text/xml"})
    r = c.getresponse()
    answer = r.read()
    assert r.status in (200, 400), (r.status, answer)
    if r.status == 200:
        assert b"Failure" in answer, answer
    with open(state, "w") as f:
        json.dump(got, f)
elif phase == "legacy":
    recs = ok(x.VDI.get_all_records(s))
    [rec] = [r for r in recs.values() if r["uuid"] == LEGACY]
    assert "\ufffd" in rec["name_label"] and "\ufffd" in rec["location"], rec
    assert rec["sm_config"]["image-format"] == "raw", rec
    assert int(rec["virtual_size"]) == 1 << 20, rec
    labels()
else:
    with open(state) as f:
        before = json.load(f)
    assert labels() == before, (labels(), before)
    ok(x.SR.scan(s, sr))
    assert labels() == before

print("%s: %d checks passed" % (phase, xapi_checks.checks))
