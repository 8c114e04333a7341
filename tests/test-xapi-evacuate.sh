#!/bin/sh
# SR evacuation while the VMs run: vdimotiond's SR.evacuate_plan and
# Async.SR.evacuate (xapi-evacuate.py) empty sr1 (four chains of a base,
# a second snapshot and a leaf in raw, VHD and qcow2, three leaves disks of
# running VMs with fio writing and verifying, and one VDI too large for
# any destination) into sr2 and sr3, chains and snapshot records kept,
# the VMs never stopped; then `vdimotion sr evacuate` (dry run, a real
# run back with --json, usage errors, a refusal, Ctrl-C) and the
# contrib/ scripts.
. "$srcdir/functions.sh"
. "$srcdir/xapi-functions.sh"
requires fio
requires nbdkit
requires_vm_disks

# The disks' size in MiB: smaller under the sanitizers.
disk=64
[ -z "${VDM_SANITIZED-}" ] || disk=16

mkdir -p "$T/sr3"
start_vdimotiond --sr "sr3=$T/sr3" --max-storage-operations 3
PYTHONPATH=$srcdir python3 "$srcdir/xapi-evacuate.py" "$url" "$T" "$T/sr1" \
  "$disk" > "$T/out" 2>&1 \
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

# The first run put each chain in sr2 or sr3 (the most free space; here
# both share one filesystem): the command line takes them back to sr1.
vdis_in () { vdm vdi list --json "$1" | json 'len(j)'; }
n2=$(vdis_in sr2) n3=$(vdis_in sr3)
[ $((n2 + n3)) -eq 12 ] || fail "sr2 and sr3 hold $n2 + $n3 VDIs, not 12"
from=sr2 n=$n2
[ "$n2" -gt 0 ] || from=sr3 n=$n3

# The dry run: a table for people, JSON for scripts; nothing moves.
vdm sr evacuate $from --to sr1 --dry-run > "$T/plan.txt"
cat "$T/plan.txt"
grep -q '^CHAIN ' "$T/plan.txt" || fail "no plan table"
grep -q 'dry run: nothing started' "$T/plan.txt" || fail "dry run not said"
[ "$(grep -c ' leaf ' "$T/plan.txt")" -eq $((n / 3)) ] \
  || fail "the plan does not list every chain of $from"
vdm sr evacuate $from --to sr1 --dry-run --json > "$T/plan.json"
[ "$(json 'sum(len(c["vdis"]) for c in j["chains"])' < "$T/plan.json")" \
  -eq "$n" ] || fail "the JSON plan does not list every VDI of $from"
[ "$(json 'j["fits"]' < "$T/plan.json")" = True ] || fail "the plan is refused"
[ "$(vdis_in $from)" -eq "$n" ] || fail "the dry run moved something"

# The real run: --json gives the report; the bar shows the VDIs moving.
for sr in sr2 sr3; do
  vdm sr evacuate $sr --to sr1 --parallel 2 --order name --json --progress \
    > "$T/report-$sr.json" 2> "$T/bar-$sr" \
    || { cat "$T/bar-$sr"; fail "sr evacuate $sr exited $?"; }
done
tr '\r' '\n' < "$T/bar-$from" | tail -n 3
grep -q '100.0%' "$T/bar-$from" || fail "no progress bar: $(cat "$T/bar-$from")"
grep -q 'moved' "$T/bar-$from" || fail "the bar shows no VDIs"
[ "$(json 'j["totals"]["moved"], j["totals"]["failed"]' \
     < "$T/report-$from.json")" = "$n 0" ] \
  || fail "report: $(cat "$T/report-$from.json")"
[ "$(json '{v["state"] for v in j["vdis"]}' < "$T/report-$from.json")" \
  = "{'moved'}" ] || fail "report: $(cat "$T/report-$from.json")"
[ "$(vdis_in sr2)" -eq 0 ] && [ "$(vdis_in sr3)" -eq 0 ] \
  || fail "sr2 and sr3 are not empty"
[ "$(vdis_in sr1)" -eq 13 ] || fail "sr1 does not hold the 13 VDIs again"

# A refusal: the large VDI fits nowhere; nothing starts, exit 1.
expect_exit 1 vdm sr evacuate sr1 --to sr2
grep -q 'SR_FULL' "$T/err" || fail "no SR_FULL: $(cat "$T/err")"
[ "$(vdis_in sr1)" -eq 13 ] || fail "a refused evacuation moved something"
vdm sr evacuate sr1 --to sr2,sr3 --exclude big --dry-run > "$T/plan2.txt"
grep -q '^excluded: .* (big): excluded$' "$T/plan2.txt" \
  || fail "--exclude big: $(cat "$T/plan2.txt")"
! grep -q REFUSED "$T/plan2.txt" || fail "--exclude big: still refused"

# The example scripts: the Python one moves sr1 to sr3 (the large VDI
# excluded), the shell one sr3 to sr2.
python3 "$top_srcdir/contrib/evacuate-sr.py" --password-file /dev/stdin \
  --parallel 2 --exclude big "$url" sr1 sr3 > "$T/py.out" <<EOF \
  || { cat "$T/py.out"; fail "contrib/evacuate-sr.py"; }
secret
EOF
tail -n 2 "$T/py.out"
grep -q "^12 moved, 0 failed" "$T/py.out" \
  || fail "evacuate-sr.py: $(tail -n1 "$T/py.out")"
(cd "$T" && VDIMOTION=$VDIMOTION sh "$top_srcdir/contrib/evacuate-sr.sh" \
   sr3 sr2 --parallel 3 > "$T/sh.out" 2>&1) \
  || { cat "$T/sh.out"; fail "contrib/evacuate-sr.sh"; }
tail -n 1 "$T/sh.out"
grep -q '^12 moved, 0 failed' "$T/sh.out" || fail "evacuate-sr.sh: $(cat "$T/sh.out")"
ls "$T"/evacuate-sr3-*.json > /dev/null || fail "evacuate-sr.sh kept no report"
[ "$(vdis_in sr1)" -eq 1 ] && [ "$(vdis_in sr3)" -eq 0 ] \
  && [ "$(vdis_in sr2)" -eq 12 ] || fail "the VDIs are not where moved"


# Ctrl-C: the task is cancelled and the command says so, prints the
# report and exits 1; every VDI is whole in exactly one place.  (An
# evacuation that wins the race has ended: "too late to cancel", 0.)
python3 - "$VDIMOTION" <<'PY' || fail "Ctrl-C"
import json, signal, subprocess, sys, time
vdm = sys.argv[1]
p = subprocess.Popen(
    [vdm, "sr", "evacuate", "sr2", "--to", "sr3", "--parallel", "1"],
    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def running():
    tasks = json.loads(subprocess.check_output([vdm, "task", "list",
                                                "--json"]))
    return any(t["status"] == "pending" and
               t["name_label"].startswith("SR.evacuate") for t in tasks)


deadline = time.monotonic() + 120
while not running():
    assert p.poll() is None and time.monotonic() < deadline, p.communicate()
    time.sleep(0.05)
p.send_signal(signal.SIGINT)
out, err = p.communicate(timeout=300)
if p.returncode == 0:
    assert "too late to cancel: the evacuation has ended" in err, err
else:
    assert p.returncode == 1, (p.returncode, err)
    assert "interrupted: cancelling the evacuation" in err, err
    assert "interrupted: the evacuation is cancelled: TASK_CANCELLED" in err, err
    assert "cancelled: " in out, out
print("  Ctrl-C:", err.strip().splitlines()[-1])
PY
[ $(($(vdis_in sr2) + $(vdis_in sr3))) -eq 12 ] \
  || fail "after Ctrl-C: $(vdis_in sr2) + $(vdis_in sr3) VDIs, not 12"
vdm vdi list --json | json '[v for v in j if v["current_operations"]]' \
  | grep -qx '\[\]' || fail "a VDI is still busy after Ctrl-C"

stop_vdimotiond
