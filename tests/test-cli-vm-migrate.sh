#!/bin/sh
# vdimotion vm migrate between two vdimotiond (HTTPS on loopback, one CA
# file for both): a running VM with two disks moves live while fio writes
# into both, and arrives running with its disks byte for byte as fio left
# them (compared with the source's disks at the handover) and every block
# verified; nothing is left on the source.  A halted VM moves offline
# (--json), --sr and --map place its disks; a wrong VM name, destination
# password, VDI, SR or URL is refused with a message naming it and exit 1,
# usage errors exit 2, and neither touches the VM; Ctrl-C cancels a
# migration and the VM keeps running on the source.
. "$srcdir/functions.sh"
. "$srcdir/xapi-functions.sh"
requires fio
requires nbdkit
requires nbdcopy
requires_vm_disks

tls_setup
start_peer $tls
# vdimotion-mm-none: the "guest" is fio, outside vdimotion's view; the
# test says when it has stopped writing (--option handover-file=...).
start_vdimotiond $tls \
  --memory-migrator "$top_builddir/memory-migrators/vdimotion-mm-none"
VDIMOTION_SERVER=$https_url VDIMOTION_PASSWORD=secret
VDIMOTION_CA_FILE=$T/cert.pem
export VDIMOTION_SERVER VDIMOTION_PASSWORD VDIMOTION_CA_FILE
dst=$peer_https_url
vdm () { "$VDIMOTION" "$@"; }
peer () { "$VDIMOTION" --server "$dst" "$@"; }
MiB=1048576

# json EXPR: evaluate EXPR (python, the JSON of stdin is j).
json () { python3 -c "import json, sys; j = json.load(sys.stdin); print($1)"; }

# new_disk NAME FORMAT SIZE: a VDI in sr1 (an empty image imported), its
# uuid.
new_disk ()
{
  "$VDIMOTION" create -f "$2" "$T/$1.img" "$3" > /dev/null
  vdm vdi import sr1 "$T/$1.img" -f "$2" --name "$1" | tail -n1
}

# sockets SERVER VM: the NBD sockets of the running VM's disks, in order.
sockets ()
{
  "$VDIMOTION" --server "$1" vm show --json "$2" \
    | json '" ".join(d["nbd_socket"] for d in j["disks"])'
}

# expect_error STATUS TEXT ARGS...: vm migrate exits STATUS, its stderr
# says TEXT.
expect_error ()
{
  st=$1 text=$2
  shift 2
  expect_exit "$st" "$VDIMOTION" vm migrate "$@"
  grep -qF -- "$text" "$T/err" || fail "vm migrate $*: $(cat "$T/err")"
  echo "  vm migrate $*: $(head -n1 "$T/err")"
}

# A pending migration task on the source (its name is the method's).
migrating ()
{
  vdm task list --json \
    | json 'any(t["status"] == "pending" and "migrate" in t["name_label"]
                for t in j)' | grep -q True
}

# 1. Live: two disks (VHD and qcow2), fio writing into both while the
# disks are mirrored; the test stops the writers, keeps what the source
# disks hold then, and lets the handover go.
new_disk vm1-d0 vhd 64M > /dev/null
new_disk vm1-d1 qcow2 64M > /dev/null
vdm vm create vm1 --disk vm1-d0 --disk vm1-d1 > /dev/null
vdm vm start vm1
set -- $(sockets "$https_url" vm1)
s0=$1 s1=$2
fio_disk "$s0" 1 0 $((32 * MiB)) || fail "fio before"
fio_disk "$s1" 2 0 $((32 * MiB)) || fail "fio before"
# The writers must outlast the migration's start (logins, the token, the
# task), which takes from a second to over a minute under the sanitizers:
# each writes its region again and again (the same seed writes the same
# blocks, so one verify checks them all) until the test has seen the
# migration task and stops them; the pass in flight then ends while the
# disks are mirrored, and the handover waits for the handover file.
wrate=1500
[ -z "${VDM_SANITIZED-}" ] || wrate=400
# pass SOCKET SEED: one pass of fio over the disk's second half, counted.
pass ()
{
  fio_disk "$1" "$2" $((32 * MiB)) $((32 * MiB)) --rate_iops=1000000,$wrate \
    && echo pass >> "$T/passes-$2"
}
repeat_until "$T/stop-writers" pass "$s0" 3 &
w0=$!
repeat_until "$T/stop-writers" pass "$s1" 4 &
w1=$!
vdm vm migrate vm1 --to "$dst" --live --progress \
  --option handover-file="$T/handover" --option mm-timeout=300 \
  > "$T/out1" 2> "$T/err1" &
mig=$!
for _ in $(seq 1200); do migrating && break; sleep 0.1; done
migrating || { cat "$T/err1" >&2; fail "no migration task"; }
kill -0 "$w0" && kill -0 "$w1" || fail "fio stopped before the migration"
touch "$T/stop-writers"
wait "$w0" || fail "fio failed during the migration"
wait "$w1" || fail "fio failed during the migration"
echo "writers: $(cat "$T/passes-3" 2>/dev/null | wc -l) and $(cat "$T/passes-4" 2>/dev/null | wc -l) passes"
nbdcopy "nbd+unix:///?socket=$s0" "$T/src0.raw"
nbdcopy "nbd+unix:///?socket=$s1" "$T/src1.raw"
touch "$T/handover"
wait "$mig" || { cat "$T/err1" >&2; fail "vm migrate exited $?"; }
grep -q '100.0%' "$T/err1" || fail "no progress bar: $(cat "$T/err1")"
new=$(tail -n1 "$T/out1")
peer vm show --json vm1 > "$T/vm1.json"
[ "$(json 'j["uuid"]' < "$T/vm1.json")" = "$new" ] \
  || fail "vm migrate printed $new: $(cat "$T/vm1.json")"
[ "$(json 'j["power_state"]' < "$T/vm1.json")" = Running ] \
  || fail "not running at the destination: $(cat "$T/vm1.json")"
set -- $(sockets "$dst" vm1)
t0=$1 t1=$2
for w in "$t0 1 0" "$t0 3 32" "$t1 2 0" "$t1 4 32"; do
  set -- $w
  fio_disk "$1" "$2" $(($3 * MiB)) $((32 * MiB)) --verify_only \
    || fail "fio verify at the destination: $w"
done
nbdcopy "nbd+unix:///?socket=$t0" "$T/dst0.raw"
nbdcopy "nbd+unix:///?socket=$t1" "$T/dst1.raw"
cmp "$T/src0.raw" "$T/dst0.raw" || fail "disk 0 differs"
cmp "$T/src1.raw" "$T/dst1.raw" || fail "disk 1 differs"
[ "$(vdm vm list --json | json 'len(j)')" = 0 ] || fail "a VM on the source"
[ "$(vdm vdi list --json | json 'len(j)')" = 0 ] || fail "VDIs on the source"
echo "live: 2 disks moved with fio writing, byte for byte, source empty"

# 2. A halted VM: offline by default; --json prints the new VM's uuid.
new_disk vm2-d0 raw 16M > /dev/null
vdm vm create vm2 --disk vm2-d0 > /dev/null
vdm vm start vm2
fio_disk "$(sockets "$https_url" vm2)" 5 0 $((16 * MiB)) || fail "fio vm2"
vdm vm shutdown vm2
expect_error 1 "VM vm2 is Halted: no live migration" vm2 --to "$dst" --live
vdm vm migrate vm2 --to "$dst" --json > "$T/out2"
new=$(json 'j["uuid"]' < "$T/out2")
[ "$(peer vm show --json "$new" | json 'j["power_state"]')" = Halted ] \
  || fail "vm2 is not halted at the destination"
peer vm start "$new"
fio_disk "$(sockets "$dst" "$new")" 5 0 $((16 * MiB)) --verify_only \
  || fail "vm2 at the destination: fio verify"
peer vm shutdown "$new"
! vdm vm show vm2 2> /dev/null || fail "vm2 is still on the source"
echo "offline: a halted VM moved, --json: $(cat "$T/out2")"

# 3. --sr and --map: disk 0 to the destination's sr2, disk 1 to sr1.
new_disk vm3-d0 vhd 16M > /dev/null
new_disk vm3-d1 vhd 16M > /dev/null
vdm vm create vm3 --disk vm3-d0 --disk vm3-d1 > /dev/null
vdm vm start vm3
set -- $(sockets "$https_url" vm3)
fio_disk "$1" 6 0 $((16 * MiB)) || fail "fio vm3"
fio_disk "$2" 7 0 $((16 * MiB)) || fail "fio vm3"
vdm vm shutdown vm3
new=$(vdm vm migrate vm3 --to "$dst" --offline --sr sr1 --map vm3-d0=sr2 \
        | tail -n1)
peer vm show --json "$new" > "$T/vm3.json"
for dev in 0:sr2 1:sr1; do
  vdi=$(json "j['disks'][${dev%:*}]['vdi']" < "$T/vm3.json")
  peer vdi list --json "${dev#*:}" | grep -q "\"$vdi\"" \
    || fail "disk ${dev%:*} is not in ${dev#*:}"
done
peer vm start "$new"
set -- $(sockets "$dst" "$new")
fio_disk "$1" 6 0 $((16 * MiB)) --verify_only || fail "vm3 disk 0 verify"
fio_disk "$2" 7 0 $((16 * MiB)) --verify_only || fail "vm3 disk 1 verify"
peer vm shutdown "$new"
echo "--sr sr1 --map vm3-d0=sr2: placed, data verified"

# 4. Errors: a message naming what is wrong, exit 1 (2 for usage), and
# the VM left running where it was.
new_disk vm4-d0 vhd 16M > /dev/null
new_disk spare vhd 16M > /dev/null
vdm vm create vm4 --disk vm4-d0 > /dev/null
vdm vm start vm4
s4=$(sockets "$https_url" vm4)
fio_disk "$s4" 8 0 $((16 * MiB)) || fail "fio vm4"
echo wrong > "$T/wrong-password"
expect_error 1 "UUID_INVALID VM no-such-vm" no-such-vm --to "$dst"
expect_error 1 "destination $dst: SESSION_AUTHENTICATION_FAILED" vm4 \
  --to "$dst" --to-password-file "$T/wrong-password"
expect_error 1 "--map nope=sr1: UUID_INVALID VDI nope" vm4 --to "$dst" \
  --map nope=sr1
expect_error 1 "--map spare=sr1: VDI spare is not a disk of VM vm4" vm4 \
  --to "$dst" --map spare=sr1
expect_error 1 "UUID_INVALID SR no-such-sr" vm4 --to "$dst" \
  --map vm4-d0=no-such-sr
expect_error 1 "UUID_INVALID SR no-such-sr" vm4 --to "$dst" --sr no-such-sr
expect_error 1 "destination http://127.0.0.1:1/: Could not connect" vm4 \
  --to http://127.0.0.1:1/
expect_error 1 "VM vm4 is running: an offline migration needs it halted" \
  vm4 --to "$dst" --offline
expect_error 2 "--to URL is needed" vm4
expect_error 2 "--live or --offline, not both" vm4 --to "$dst" --live \
  --offline
expect_error 2 "--map vm4-d0: expected VDI=SR" vm4 --to "$dst" --map vm4-d0
expect_error 2 "--option x: expected KEY=VALUE" vm4 --to "$dst" --option x
expect_exit 2 "$VDIMOTION" vm start vm4 --to "$dst"
grep -q "option --to is not for this subcommand" "$T/err" \
  || fail "vm start --to: $(cat "$T/err")"
[ "$(vdm vm show --json vm4 | json 'j["power_state"]')" = Running ] \
  || fail "vm4 is not running after the errors"
[ "$(sockets "$https_url" vm4)" = "$s4" ] || fail "vm4's socket changed"
fio_disk "$s4" 8 0 $((16 * MiB)) --verify_only || fail "vm4 after errors"
! peer vm show vm4 2> /dev/null || fail "vm4 on the destination"

# 5. Ctrl-C during the handover: the task is cancelled, vdimotion exits
# 1, the VM runs on the source and the destination keeps nothing.
before=$(peer vdi list --json | json 'len(j)')
python3 - "$VDIMOTION" "$dst" "$T" <<'PY' || fail "Ctrl-C"
import json, signal, subprocess, sys, time
vdm, dst, T = sys.argv[1:4]
p = subprocess.Popen([vdm, "vm", "migrate", "vm4", "--to", dst,
                      "--option", "handover-file=%s/never" % T],
                     stderr=subprocess.PIPE, text=True)
deadline = time.monotonic() + 120
def progress():
    tasks = json.loads(subprocess.check_output([vdm, "task", "list",
                                                "--json"]))
    return max([t["progress"] for t in tasks if t["status"] == "pending"
                and "migrate" in t["name_label"]] or [0])
while progress() < 0.85:
    assert p.poll() is None and time.monotonic() < deadline, p.stderr.read()
    time.sleep(0.1)
p.send_signal(signal.SIGINT)
err = p.stderr.read()
assert p.wait(timeout=120) == 1, (p.returncode, err)
assert "interrupted: cancelling the migration" in err, err
assert "interrupted: the migration is cancelled" in err, err
print("  Ctrl-C:", err.strip().splitlines()[-1])
PY
[ "$(vdm vm show --json vm4 | json 'j["power_state"]')" = Running ] \
  || fail "vm4 is not running after Ctrl-C"
fio_disk "$s4" 8 0 $((16 * MiB)) --verify_only || fail "vm4 after Ctrl-C"
[ "$(peer vdi list --json | json 'len(j)')" = "$before" ] \
  || fail "the cancelled migration left VDIs on the destination"
vdm task list | grep -q cancelled || fail "no cancelled task"
echo "Ctrl-C: cancelled, the VM runs on the source"

stop_vdimotiond
stop_peer
echo PASS
