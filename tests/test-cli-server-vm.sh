#!/bin/sh
# The vdimotion CLI runs a VM on the real vdimotiond: vm start serves its
# disk on the NBD socket vm show names, vdi move --live moves the disk of
# the running VM to another SR (the guest's bytes stay the same, the VM
# keeps its socket), and vm shutdown stops it.
. "$srcdir/functions.sh"
. "$srcdir/xapi-functions.sh"
requires qemu-img
requires qemu-io
requires nbdkit
# vdimotiond loads our nbdkit plugin and filter into nbdkit.
requires_vm_disks

start_vdimotiond
VDIMOTION_SERVER=$url VDIMOTION_PASSWORD=secret
export VDIMOTION_SERVER VDIMOTION_PASSWORD
vdm () { "$VDIMOTION" "$@"; }

# A VDI with data (VDI.create, then written in the file SR).
vdi=$(python3 - "$url" <<'PY'
import sys, xmlrpc.client
x = xmlrpc.client.ServerProxy(sys.argv[1])
s = x.session.login_with_password("root", "secret")["Value"]
sr = x.SR.get_by_name_label(s, "sr1")["Value"][0]
r = x.VDI.create(s, {"SR": sr, "name_label": "boot",
                     "virtual_size": str(32 << 20), "type": "user",
                     "sharable": False, "read_only": False,
                     "other_config": {}, "sm_config": {"image-format": "vhd"}})
print(x.VDI.get_uuid(s, r["Value"])["Value"])
PY
)
qemu-io -f vpc -c 'write -P 0x33 0 2M' -c 'write -P 0xcc 20M 1M' \
  "$T/sr1/$vdi.vhd" > /dev/null
qemu_raw "$T/sr1/$vdi.vhd" "$T/boot.raw"

vdm vm create guest --disk "$vdi" > /dev/null
vdm vm start guest
vdm vm list | grep -q ' guest  *Running  *1$' || fail "vm list: $(vdm vm list)"

# vm show names the NBD socket the disk is served on; it serves the bytes.
vdm vm show guest > "$T/vm.txt"
grep -q '^power state: Running$' "$T/vm.txt" || fail "vm show: $(cat "$T/vm.txt")"
sock=$(vdm vm show --json guest | python3 -c '
import json, sys
d, = json.load(sys.stdin)["disks"]
assert d["currently_attached"] is True, d
print(d["nbd_socket"])')
[ -S "$sock" ] || fail "no NBD socket at \"$sock\""
grep -q " yes  *$sock$" "$T/vm.txt" || fail "vm show: no socket: $(cat "$T/vm.txt")"
qemu-img compare -q -f raw -F raw "$T/boot.raw" "nbd+unix:///?socket=$sock" \
  || fail "the NBD socket does not serve the VDI"

# Live move: the running VM's disk goes to sr2; the VM keeps running on
# the same socket, now the new VDI's.
new=$(vdm vdi move boot sr2 --live | tail -n1)
[ -n "$new" ] && [ "$new" != "$vdi" ] || fail "live move: \"$new\""
vdm vm show --json guest | python3 -c '
import json, sys
vm = json.load(sys.stdin)
d, = vm["disks"]
assert vm["power_state"] == "Running", vm
assert d["vdi"] == sys.argv[1] and d["currently_attached"], d' "$new"
sock=$(vdm vm show --json guest | python3 -c '
import json, sys
print(json.load(sys.stdin)["disks"][0]["nbd_socket"])')
qemu-img compare -q -f raw -F raw "$T/boot.raw" "nbd+unix:///?socket=$sock" \
  || fail "the guest sees other bytes after the live move"

vdm vm shutdown guest
vdm vm list | grep -q ' guest  *Halted  *1$' || fail "vm list: $(vdm vm list)"
vdm vm show guest | grep -q " no  *-$" || fail "vm show after shutdown"
qemu-img compare -q -f raw -F vpc "$T/boot.raw" "$T/sr2/$new.vhd" \
  || fail "the moved VDI differs"
# Halted again: no live move.
expect_exit 1 vdm vdi move "$new" sr1 --live
stop_vdimotiond
echo PASS
