#!/bin/sh
# The vdimotion CLI as a XenAPI client of the real vdimotiond: lists SRs
# and VDIs as tables and as JSON, takes its server and credentials from
# options or the environment, and reports XenAPI failures as
# "vdimotion: CODE params" (exit 1) and a dead server by its URL.  VMs
# are made, listed and shown (halted: test-cli-server-vm.sh starts them),
# VDIs moved between SRs offline with the task waited on, tasks listed.
. "$srcdir/functions.sh"
. "$srcdir/xapi-functions.sh"
requires qemu-img
requires qemu-io

start_vdimotiond
echo secret > "$T/pw"
vdm () { "$VDIMOTION" --server "$url" --password-file "$T/pw" "$@"; }

# sr list: a table with a header, one line per SR ...
vdm sr list > "$T/srs.txt"
head -n1 "$T/srs.txt" | grep -q '^UUID  *NAME' || fail "sr list: no header"
grep -q ' sr1 ' "$T/srs.txt" && grep -q ' sr2 ' "$T/srs.txt" \
  || fail "sr list: $(cat "$T/srs.txt")"
# ... and JSON with numbers for scripts.
vdm sr list --json > "$T/srs.json"
python3 - "$T/srs.json" "$T/sr1" <<'PY'
import json, sys
srs = json.load(open(sys.argv[1]))
assert sorted(s["name_label"] for s in srs) == ["sr1", "sr2"], srs
for s in srs:
    assert len(s["uuid"]) == 36, s
    assert isinstance(s["physical_size"], int) and s["physical_size"] > 0, s
    assert s["vdis"] == 0, s
PY
# The options may come after the command too, and from the environment.
"$VDIMOTION" sr list --json --server "$url" --password-file "$T/pw" \
  | cmp - "$T/srs.json" || fail "options after the command"
VDIMOTION_SERVER=$url VDIMOTION_USER=root VDIMOTION_PASSWORD=secret \
  "$VDIMOTION" sr list --json | cmp - "$T/srs.json" || fail "environment"

# vdi list of an empty server, of one SR by name and by uuid.
[ "$(vdm vdi list --json)" = "[]" ] || fail "vdi list is not empty"
sr1_uuid=$(python3 -c 'import json,sys; print([s["uuid"] for s in json.load(open(sys.argv[1])) if s["name_label"] == "sr1"][0])' "$T/srs.json")
vdm vdi list sr1 > /dev/null
vdm vdi list "$sr1_uuid" > /dev/null

# A VDI made through the XenAPI (VDI.create), with data written into its
# image in the file SR (a directory of <uuid>.vhd).
make_vdi ()  # make_vdi NAME SIZE: prints the uuid
{
  python3 - "$url" "$1" "$2" <<'PY'
import sys, xmlrpc.client
x = xmlrpc.client.ServerProxy(sys.argv[1])
s = x.session.login_with_password("root", "secret")["Value"]
sr = x.SR.get_by_name_label(s, "sr1")["Value"][0]
r = x.VDI.create(s, {"SR": sr, "name_label": sys.argv[2],
                     "virtual_size": sys.argv[3], "type": "user",
                     "sharable": False, "read_only": False,
                     "other_config": {}, "sm_config": {"image-format": "vhd"}})
print(x.VDI.get_uuid(s, r["Value"])["Value"])
PY
}
vdi=$(make_vdi disk-a $((64 << 20)))
qemu-io -f vpc -c 'write -P 0x55 1M 3M' -c 'write -P 0xaa 40M 64K' \
  "$T/sr1/$vdi.vhd" > /dev/null
qemu_raw "$T/sr1/$vdi.vhd" "$T/disk-a.raw"

# vdi list: the table, and JSON, whole and per SR.
vdm vdi list > "$T/vdis.txt"
grep -q "^$vdi  *disk-a  *sr1  *64 MiB .* vhd" "$T/vdis.txt" \
  || fail "vdi list: $(cat "$T/vdis.txt")"
vdm vdi list --json sr1 > "$T/vdis.json"
python3 - "$T/vdis.json" "$vdi" <<'PY'
import json, sys
v, = json.load(open(sys.argv[1]))
assert v["uuid"] == sys.argv[2] and v["name_label"] == "disk-a", v
assert v["sr_name_label"] == "sr1" and v["virtual_size"] == 64 << 20, v
assert v["format"] == "vhd" and v["current_operations"] == {}, v
PY
[ "$(vdm vdi list --json sr2)" = "[]" ] || fail "vdi list sr2 is not empty"

# vm create with its disk (by name), list, show: halted, no NBD socket.
vm=$(vdm vm create vm1 --disk disk-a | tail -n1)
vdm vm list > "$T/vms.txt"
grep -q "^$vm  *vm1  *Halted  *1$" "$T/vms.txt" || fail "vm list: $(cat "$T/vms.txt")"
vdm vm show vm1 > "$T/vm.txt"
grep -q "^power state: Halted" "$T/vm.txt" || fail "vm show: $(cat "$T/vm.txt")"
grep -q "^  0  *$vdi  *disk-a .* RW  *no  *-$" "$T/vm.txt" \
  || fail "vm show disks: $(cat "$T/vm.txt")"
vdm vm show --json "$vm" > "$T/vm.json"
python3 - "$T/vm.json" "$vdi" <<'PY'
import json, sys
vm = json.load(open(sys.argv[1]))
assert vm["name_label"] == "vm1" and vm["power_state"] == "Halted", vm
d, = vm["disks"]
assert d["vdi"] == sys.argv[2] and d["userdevice"] == "0" and d["mode"] == "RW", d
assert d["currently_attached"] is False and d["nbd_socket"] == "", d
PY
vdm vm list --json | python3 -c '
import json, sys
vms = json.load(sys.stdin)
assert [v["name_label"] for v in vms] == ["vm1"] and vms[0]["disks"] == 1, vms'
# --live wants the disk in use by a running VM.
expect_exit 1 vdm vdi move disk-a sr2 --live
grep -q 'not in use by a running VM' "$T/err" || fail "--live: $(cat "$T/err")"

# vdi move (offline) to sr2: the new uuid is the last line, the bytes are
# the same, the old VDI is gone; the VBD follows the disk.
vdm vdi move disk-a sr2 --progress > "$T/move.out" 2> "$T/move.err"
new=$(tail -n1 "$T/move.out")
[ "$new" != "$vdi" ] && [ -f "$T/sr2/$new.vhd" ] || fail "move: $new"
grep -q '100.0%' "$T/move.err" || fail "no progress bar: $(cat "$T/move.err")"
"$VDIMOTION" compare "$T/disk-a.raw" "$T/sr2/$new.vhd" \
  || fail "moved VDI differs (vdimotion compare)"
qemu-img compare -q -f raw -F vpc "$T/disk-a.raw" "$T/sr2/$new.vhd" \
  || fail "moved VDI differs (qemu-img compare)"
vdm vdi list --json > "$T/vdis.json"
python3 - "$T/vdis.json" "$new" <<'PY'
import json, sys
v, = json.load(open(sys.argv[1]))
assert v["uuid"] == sys.argv[2] and v["sr_name_label"] == "sr2", v
PY
# And back to sr1 by uuid, without a progress bar when not a terminal.
back=$(vdm vdi move "$new" "$sr1_uuid" 2> "$T/move.err" | tail -n1)
[ ! -s "$T/move.err" ] || fail "progress bar on a pipe: $(cat "$T/move.err")"
qemu-img compare -q -f raw -F vpc "$T/disk-a.raw" "$T/sr1/$back.vhd" \
  || fail "VDI moved back differs"

# task list / show: the two moves, succeeded, their results the new VDIs.
vdm task list > "$T/tasks.txt"
[ "$(grep -c ' success  *100.0% ' "$T/tasks.txt")" -eq 2 ] \
  || fail "task list: $(cat "$T/tasks.txt")"
vdm task list --json > "$T/tasks.json"
task=$(python3 - "$T/tasks.json" "$back" <<'PY'
import json, sys
ts = json.load(open(sys.argv[1]))
assert len(ts) == 2, ts
t = [t for t in ts if sys.argv[2] in t["result"]]
assert len(t) == 1 and t[0]["status"] == "success" and t[0]["progress"] == 1, ts
print(t[0]["uuid"])
PY
)
vdm task show "$task" > "$T/task.txt"
grep -q '^status: success$' "$T/task.txt" && grep -q "^result: .*$back" "$T/task.txt" \
  || fail "task show: $(cat "$T/task.txt")"
vdm task show --json "$task" | python3 -c '
import json, sys
t = json.load(sys.stdin)
assert t["uuid"] == sys.argv[1] and t["status"] == "success", t' "$task"
expect_exit 1 vdm task show 00000000-0000-0000-0000-000000000000
grep -q '^vdimotion: UUID_INVALID task' "$T/err" || fail "task show: $(cat "$T/err")"
# Cancelling a task that has ended is not an error (as xapi).
vdm task cancel "$task"

# task cancel of a running move: the waiting vdi move ends with exit 1
# and TASK_CANCELLED (or, if the copy won the race, in success).
big=$(make_vdi big $((256 << 20)))
qemu-io -f vpc -c 'write -P 0x11 0 256M' "$T/sr1/$big.vhd" > /dev/null
vdm vdi move big sr2 > "$T/cancel.out" 2> "$T/cancel.err" &
move_pid=$!
for _ in $(seq 50); do
  pending=$(vdm task list --json | python3 -c '
import json, sys
print(" ".join(t["uuid"] for t in json.load(sys.stdin) if t["status"] == "pending"))')
  [ -z "$pending" ] || break
done
for t in $pending; do vdm task cancel "$t"; done
rc=0
wait "$move_pid" || rc=$?
if [ "$rc" -eq 1 ]; then
  grep -q '^vdimotion: TASK_CANCELLED' "$T/cancel.err" \
    || fail "cancelled move: $(cat "$T/cancel.err")"
  vdm task show --json "$pending" | grep -q '"status": "cancelled"' \
    || fail "task not cancelled"
else
  [ "$rc" -eq 0 ] || fail "cancelled move exited $rc: $(cat "$T/cancel.err")"
fi
echo "cancel: move exited $rc (tasks cancelled: ${pending:-none})"

# Errors: a wrong password, an unknown SR, a missing file, usage.
echo wrong > "$T/badpw"
expect_exit 1 "$VDIMOTION" --server "$url" --password-file "$T/badpw" sr list
grep -q '^vdimotion: SESSION_AUTHENTICATION_FAILED' "$T/err" \
  || fail "wrong password: $(cat "$T/err")"
expect_exit 1 vdm vdi list no-such-sr
grep -q '^vdimotion: UUID_INVALID SR no-such-sr' "$T/err" \
  || fail "unknown SR: $(cat "$T/err")"
expect_exit 1 vdm vdi import sr1 "$T/missing.vhd"
grep -q "$T/missing.vhd" "$T/err" || fail "missing file: $(cat "$T/err")"
expect_exit 2 "$VDIMOTION" sr list
grep -q 'no server' "$T/err" || fail "no server: $(cat "$T/err")"
expect_exit 2 vdm vdi frobnicate
expect_exit 2 vdm vdi list --live
expect_exit 2 vdm vm create vm0

# hash-password: a hash vdimotiond accepts for a second user.
extra_hash=$(echo other | "$VDIMOTION" hash-password)
case $extra_hash in '$'*) ;; *) fail "hash-password: $extra_hash" ;; esac

# A dead server is named by its URL.
stop_vdimotiond
expect_exit 1 vdm sr list
grep -q "$url" "$T/err" || fail "dead server: $(cat "$T/err")"

# The hash of hash-password logs in.
extra_auth="other:$extra_hash"
start_vdimotiond
echo other > "$T/pw2"
"$VDIMOTION" --server "$url" --user other --password-file "$T/pw2" sr list \
  > /dev/null || fail "the hash of hash-password does not log in"
stop_vdimotiond
echo PASS
