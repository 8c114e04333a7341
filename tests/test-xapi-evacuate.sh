#!/bin/sh
# SR evacuation while the VMs run: vdimotiond's SR.evacuate_plan and
# Async.SR.evacuate (xapi-evacuate.py) empty sr1 (four chains of a base,
# a snapshot and a leaf in raw, VHD and qcow2, three leaves disks of
# running VMs with fio writing and verifying, and one VDI too large for
# any destination) into sr2 and sr3, chains and snapshot records kept,
# the VMs never stopped; then `vdimotion sr evacuate` (dry run, a real
# run back with --json, usage errors) and the contrib/ scripts.
#
# The destinations are tmpfs mounts smaller than the large VDI, in a
# mount namespace of the test's own (unshare -m, or -rm without root):
# the test runs itself again in one, and skips if there is none.
if [ -z "${VDM_EVACUATE_NS-}" ]; then
  for flags in -m -rm; do
    if unshare $flags --propagation private true 2> /dev/null; then
      VDM_EVACUATE_NS=$flags
      export VDM_EVACUATE_NS
      exec unshare $flags --propagation private "${SHELL:-/bin/sh}" "$0" "$@"
    fi
  done
fi
. "$srcdir/functions.sh"
. "$srcdir/xapi-functions.sh"
requires fio
requires nbdkit
requires_vm_disks
[ -n "${VDM_EVACUATE_NS-}" ] \
  || skip "no mount namespace (unshare -m or -rm): the destination SRs" \
          "are tmpfs mounts of a size"

# Sizes in MiB: the disks, the large VDI, and the destinations (each
# smaller than the large VDI, larger than what the rest needs).
disk=64 big=160 dest=128
[ -z "${VDM_SANITIZED-}" ] || { disk=16 big=80 dest=64; }

mkdir -p "$T/sr1" "$T/sr2" "$T/sr3"
umount_srs () { umount "$T/sr2" "$T/sr3" 2> /dev/null || :; }
cleanup_fn umount_srs
for d in sr2 sr3; do
  mount -t tmpfs -o size=${dest}m tmpfs "$T/$d" \
    || skip "cannot mount a tmpfs in the mount namespace"
done
start_vdimotiond --sr "sr3=$T/sr3" --max-storage-operations 3
python3 - "$url" <<'EOF' || skip "vdimotiond has no SR.evacuate_plan"
import sys, xmlrpc.client
x = xmlrpc.client.ServerProxy(sys.argv[1])
s = x.session.login_with_password("root", "secret")["Value"]
r = x.SR.evacuate_plan(s, "OpaqueRef:NULL", [], {})
sys.exit(r["Status"] == "Failure"
         and r["ErrorDescription"][0] == "MESSAGE_METHOD_UNKNOWN")
EOF
PYTHONPATH=$srcdir python3 "$srcdir/xapi-evacuate.py" "$url" "$T" "$T/sr1" \
  "$disk" "$big" > "$T/out" 2>&1 \
  || { cat "$T/out"; tail -n 50 "$T/vdimotiond.log"; fail "evacuation"; }
cat "$T/out"

# ---- The command line: back from sr2 and sr3 to sr1 -----------------------
VDIMOTION_SERVER=$url VDIMOTION_PASSWORD=secret
export VDIMOTION_SERVER VDIMOTION_PASSWORD
vdm () { "$VDIMOTION" "$@"; }
json () { python3 -c "import json, sys; j = json.load(sys.stdin); print($1)"; }

# Usage errors: exit 2, nothing asked of the server.
expect_exit 2 vdm sr evacuate sr2
grep -q -- '--to SR' "$T/err" || fail "no --to: $(cat "$T/err")"
expect_exit 2 vdm sr evacuate sr2 --to sr1 --parallel 0
grep -q -- '--parallel 0' "$T/err" || fail "--parallel 0: $(cat "$T/err")"
expect_exit 2 vdm sr evacuate sr2 --to sr1 --order colour
grep -q -- '--order colour' "$T/err" || fail "--order: $(cat "$T/err")"
expect_exit 2 vdm sr list --dry-run
# Names that are not there: exit 1, naming them.
expect_exit 1 vdm sr evacuate sr2 --to nowhere
grep -q 'nowhere' "$T/err" || fail "--to nowhere: $(cat "$T/err")"
expect_exit 1 vdm sr evacuate sr2 --to sr1 --exclude no-such-vdi
grep -q 'no-such-vdi' "$T/err" || fail "--exclude: $(cat "$T/err")"

# sr3 holds some chains of the first run, sr2 the others: both go back.
vdis_in () { vdm vdi list --json "$1" | json 'len(j)'; }
n2=$(vdis_in sr2) n3=$(vdis_in sr3)
[ $((n2 + n3)) -eq 12 ] || fail "sr2 and sr3 hold $n2 + $n3 VDIs, not 12"

# The dry run: a table for people, JSON for scripts; nothing moves.
vdm sr evacuate sr2 --to sr1 --dry-run > "$T/plan.txt"
cat "$T/plan.txt"
grep -q '^CHAIN ' "$T/plan.txt" || fail "no plan table"
grep -q 'dry run: nothing started' "$T/plan.txt" || fail "dry run not said"
[ "$(grep -c ' leaf ' "$T/plan.txt")" -eq $((n2 / 3)) ] \
  || fail "the plan does not list every chain of sr2"
vdm sr evacuate sr2 --to sr1 --dry-run --json > "$T/plan.json"
[ "$(json 'sum(len(c["vdis"]) for c in j["chains"])' < "$T/plan.json")" \
  -eq "$n2" ] || fail "the JSON plan does not list every VDI of sr2"
[ "$(json 'j["fits"]' < "$T/plan.json")" = True ] || fail "the plan is refused"
[ "$(vdis_in sr2)" -eq "$n2" ] || fail "the dry run moved something"

# The example scripts: the Python one moves sr3 back, the shell one sr2.
python3 "$top_srcdir/contrib/evacuate-sr.py" --password-file /dev/stdin \
  --parallel 2 "$url" sr3 sr1 > "$T/py.out" <<EOF || { cat "$T/py.out"; fail "contrib/evacuate-sr.py"; }
secret
EOF
tail -n 3 "$T/py.out"
grep -q "^$n3 moved, 0 failed" "$T/py.out" || fail "evacuate-sr.py: $(tail -n1 "$T/py.out")"
[ "$(vdis_in sr3)" -eq 0 ] || fail "sr3 is not empty"

# The real run: --json gives the report; the bar shows the VDIs moving.
vdm sr evacuate sr2 --to sr1 --parallel 2 --order name --json --progress \
  > "$T/report.json" 2> "$T/bar" \
  || { cat "$T/bar"; fail "sr evacuate exited $?"; }
tr '\r' '\n' < "$T/bar" | tail -n 3
grep -q '100.0%' "$T/bar" || fail "no progress bar: $(cat "$T/bar")"
grep -q 'moved' "$T/bar" || fail "the bar shows no VDIs"
[ "$(json 'j["moved"], j["failed"]' < "$T/report.json")" = "($n2, 0)" ] \
  || fail "report: $(cat "$T/report.json")"
[ "$(json 'sorted(v["result"] for v in j["vdis"]) == ["moved"] * len(j["vdis"])' \
     < "$T/report.json")" = True ] || fail "report: $(cat "$T/report.json")"
[ "$(vdis_in sr2)" -eq 0 ] || fail "sr2 is not empty"
[ "$(vdis_in sr1)" -eq 13 ] || fail "sr1 does not hold the 13 VDIs again"

# The shell example on an SR with nothing to move: the plan, an empty run.
(cd "$T" && VDIMOTION=$VDIMOTION sh "$top_srcdir/contrib/evacuate-sr.sh" \
   sr3 sr2 > "$T/sh.out" 2>&1) || { cat "$T/sh.out"; fail "contrib/evacuate-sr.sh"; }
grep -q '^0 moved, 0 failed' "$T/sh.out" || fail "evacuate-sr.sh: $(cat "$T/sh.out")"
ls "$T"/evacuate-sr3-*.json > /dev/null || fail "evacuate-sr.sh kept no report"

stop_vdimotiond
