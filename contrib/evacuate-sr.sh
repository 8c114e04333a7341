#!/bin/sh
# Empty a storage repository of a vdimotiond host into others while its
# VMs run, with the vdimotion command line: a script to read and adapt
# (vdimotion(1), "sr evacuate").
#
# usage: evacuate-sr.sh SR DEST-SR[,DEST-SR...] [sr evacuate options...]
#
# The server and the login come from the environment, as for every
# vdimotion server command: VDIMOTION_SERVER (http://HOST:PORT/ or
# https://HOST/), VDIMOTION_USER, VDIMOTION_PASSWORD (or pass
# --password-file FILE), VDIMOTION_CA_FILE for a self-signed certificate.
# Further options (--parallel N, --order size|name, --exclude VDI...) go
# to `vdimotion sr evacuate` as they are.
#
# What it does: print the plan (a dry run); stop if any chain is refused
# (exclude it and run again); else evacuate, with the progress bar on a
# terminal, keep the report as evacuate-SR-DATE.json in the current
# directory and print the VDIs that failed.  Exit status: vdimotion's
# (0 all moved, 1 something failed or was refused, 2 usage).
# Needs python3 for reading the JSON (no jq needed).
set -eu

[ $# -ge 2 ] || { sed -n '2,22s/^# \{0,1\}//p' "$0" >&2; exit 2; }
sr=$1 dest=$2
shift 2
vdimotion=${VDIMOTION:-vdimotion}

# The plan as JSON, checked, then for people.
plan=$("$vdimotion" sr evacuate "$sr" --to "$dest" --dry-run --json "$@")
refused=$(printf '%s\n' "$plan" | python3 -c '
import json, sys
plan = json.load(sys.stdin)
for c in plan["chains"]:
    if c["refused"]:
        print("  %s: %s" % (c["vdis"][-1]["uuid"], c["refused"]))')
"$vdimotion" sr evacuate "$sr" --to "$dest" --dry-run "$@"
if [ -n "$refused" ]; then
  printf 'refused, nothing started (exclude these with --exclude):\n%s\n' \
    "$refused" >&2
  exit 1
fi

report=evacuate-$sr-$(date -u +%Y%m%dT%H%M%SZ).json
rc=0
"$vdimotion" sr evacuate "$sr" --to "$dest" --json "$@" > "$report" || rc=$?
if [ -s "$report" ]; then
  python3 - "$report" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
for v in r["vdis"]:
    if v["state"] == "failed":
        print("failed: %s %s: %s" % (v["from"]["uuid"], v["name_label"],
                                     v["error"]))
t = r["totals"]
print("%d moved, %d failed, %d skipped; report in %s" % (
    t["moved"], t["failed"], t["skipped"], sys.argv[1]))
PY
else
  rm -f "$report"
fi
exit "$rc"
