#!/bin/sh
# The daemon opens a VDI as the format its record says, never as what a
# guest wrote into it: raw VDIs holding a guest-written qcow2 header (its
# backing file a host file) or a VHD footer read back exactly on every
# path (import, export, SR.scan, VM.start's socket, VDI.copy,
# VDI.pool_migrate, VM.migrate to a second daemon).  Images dropped into
# the SR that name other files of the SR (a raw VDI as a qcow2 parent,
# sr.db) are refused; a record whose format column lies is not believed.
. "$srcdir/functions.sh"
. "$srcdir/xapi-functions.sh"
. "$srcdir/guest-headers.sh"
requires nbdkit
requires nbdcopy
requires qemu-img
requires qemu-io
requires_vm_disks

echo "host secret" > "$T/host-file"
guest_qcow2_header "$T/qhdr.raw" $((16 * 1024 * 1024)) "$T/host-file"
guest_vhd_footer "$T/vftr.raw" $((16 * 1024 * 1024))

start_peer
start_vdimotiond \
  --memory-migrator "$top_builddir/memory-migrators/vdimotion-mm-none"
PYTHONPATH=$srcdir python3 "$srcdir/xapi-format-owner.py" "$url" \
  "$peer_url" "$T" "$T/qhdr.raw" "$T/vftr.raw" > "$T/out" \
  || { cat "$T/out" "$T/vdimotiond.log"; fail "a raw VDI read as an image"; }
cat "$T/out"
! grep -q "host secret" "$T"/out-* || fail "a host file was served"
PYTHONPATH=$srcdir python3 "$srcdir/xapi-format-owner.py" "$url" - "$T" \
  --sr-tricks "$T/sr1" > "$T/out" \
  || { cat "$T/out" "$T/vdimotiond.log"; fail "an SR trick worked"; }
cat "$T/out"
# A record whose format column lies: the name's word wins.
stop_vdimotiond
python3 - "$T/sr1/sr.db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
n = db.execute("UPDATE vdi SET format = 'qcow2' WHERE location = "
               "'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa.raw'").rowcount
assert n == 1, n
db.commit()
PY
start_vdimotiond
python3 - "$url" "$T" <<'PY'
import http.client, sys, urllib.parse, xmlrpc.client
url, T = sys.argv[1:]
x = xmlrpc.client.ServerProxy(url)
s = x.session.login_with_password("root", "secret")["Value"]
ref = x.VDI.get_by_uuid(s, "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa")["Value"]
u = urllib.parse.urlsplit(url)
c = http.client.HTTPConnection(u.hostname, u.port)
c.request("GET", "/export_raw_vdi?" + urllib.parse.urlencode(
    {"session_id": s, "vdi": ref, "format": "raw"}))
r = c.getresponse()
assert r.status == 200, r.status
body = r.read()
assert body == open(T + "/sr1/aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa.raw", "rb").read()
assert b"OTHER VM SECRET" not in body
print("ok: a lying format column is not believed")
PY
stop_vdimotiond
stop_peer
