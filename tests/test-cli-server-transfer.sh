#!/bin/sh
# vdimotion vdi import / export against the real vdimotiond
# (PUT /import_raw_vdi, GET /export_raw_vdi): a VHD goes up as it is, a
# qcow2 as raw bytes; exports to raw and to VHD read the same as the
# originals (qemu-img compare); a failed import leaves no VDI behind.
# A raw disk whose guest wrote a qcow2 header goes up as its own bytes
# with -f raw (and is warned about without it).
. "$srcdir/functions.sh"
. "$srcdir/xapi-functions.sh"
. "$srcdir/guest-headers.sh"
requires qemu-img
requires qemu-io

start_vdimotiond
VDIMOTION_SERVER=$url VDIMOTION_PASSWORD=secret
export VDIMOTION_SERVER VDIMOTION_PASSWORD
vdm () { "$VDIMOTION" "$@"; }
destroy_vdi ()
{
  python3 - "$url" "$1" <<'PY'
import sys, xmlrpc.client
x = xmlrpc.client.ServerProxy(sys.argv[1])
s = x.session.login_with_password("root", "secret")["Value"]
vdi = x.VDI.get_by_uuid(s, sys.argv[2])["Value"]
assert x.VDI.destroy(s, vdi)["Status"] == "Success"
PY
}

qemu-img create -q -f vpc "$T/a.vhd" 64M
qemu-io -f vpc -c 'write -P 0x55 1M 3M' -c 'write -P 0xaa 40M 64K' \
  "$T/a.vhd" > /dev/null
qemu-img create -q -f qcow2 "$T/b.qcow2" 32M
qemu-io -f qcow2 -c 'write -P 0x77 5M 1M' "$T/b.qcow2" > /dev/null

# Import: the uuid is the last line; vdi list shows the VDI.
a=$(vdm vdi import sr1 "$T/a.vhd" --name disk-a | tail -n1)
b=$(vdm vdi import sr2 "$T/b.qcow2" | tail -n1)
vdm vdi list > "$T/vdis.txt"
grep -q "^$a  *disk-a  *sr1 " "$T/vdis.txt" || fail "vdi list: $(cat "$T/vdis.txt")"
grep -q "^$b  *b.qcow2  *sr2 " "$T/vdis.txt" || fail "vdi list: $(cat "$T/vdis.txt")"
qemu-img compare -q "$T/a.vhd" "$T/sr1/$a.vhd" || fail "imported VHD differs"
qemu-img compare -q "$T/b.qcow2" "$T/sr2/$b.vhd" || fail "imported qcow2 differs"

# Export to raw and to VHD, by uuid and by name.
vdm vdi export "$a" "$T/a.raw"
qemu-img compare -q -f vpc -F raw "$T/a.vhd" "$T/a.raw" || fail "raw export differs"
vdm vdi export disk-a "$T/a-out.vhd"
qemu-img compare -q -f vpc -F vpc "$T/a.vhd" "$T/a-out.vhd" || fail "VHD export differs"
"$VDIMOTION" info --json "$T/a-out.vhd" | grep -q '"format": "vhd"' \
  || fail "export to .vhd is not a VHD"
vdm vdi export "$b" "$T/b.raw"
qemu-img compare -q "$T/b.qcow2" "$T/b.raw" || fail "qcow2 export differs"

# A raw disk exported earlier holds its guest's bytes: -f raw keeps them.
echo "client secret" > "$T/client-file"
guest_qcow2_header "$T/guest.raw" $((4 * 1024 * 1024)) "$T/client-file"
g=$(vdm vdi import sr1 "$T/guest.raw" -f raw | tail -n1)
vdm vdi export "$g" "$T/g.raw"
cmp "$T/g.raw" "$T/guest.raw" || fail "vdi import -f raw: other bytes"
destroy_vdi "$g"
truncate -s 1M "$T/plain.raw"
p=$(vdm vdi import sr1 "$T/plain.raw" 2> "$T/err" | tail -n1)
grep -q "probing guessed raw" "$T/err" || fail "vdi import: no warning for a guess"
destroy_vdi "$p"

# Errors: an unknown SR makes no VDI; an unknown VDI leaves no file.
expect_exit 1 vdm vdi import no-such-sr "$T/a.vhd"
grep -q 'UUID_INVALID SR no-such-sr' "$T/err" || fail "unknown SR: $(cat "$T/err")"
expect_exit 1 vdm vdi export no-such-vdi "$T/c.raw"
[ ! -e "$T/c.raw" ] || fail "a failed export left a file"
[ "$(vdm vdi list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" -eq 2 ] \
  || fail "a failed import left a VDI"
stop_vdimotiond
echo PASS
