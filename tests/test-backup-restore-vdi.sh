#!/bin/bash
# vdimotion --server URL backup restore REPO POINT SR:NAME: a point into a
# new VDI, from a local repository and from a remote one (a second
# vdimotiond serving --backup-repo over HTTPS), read back identical to
# qemu-img convert of the repository's file; kill -9 of the CLI, then of
# the daemon, once some windows are done: the half-restored VDI is named
# and marked as such, the same command finds it and sends only what was
# missing (less than the whole), and the VDI ends identical, named, with
# no marker.
. "$srcdir/functions.sh"
. "$srcdir/xapi-functions.sh"
requires qemu-img
requires python3
tls_setup

# 256 MiB, 96 MiB of data: 16 windows of 16 MiB, each with data.
size=$((256 << 20))
img=$T/disk.raw
truncate -s $size "$img"
python3 - "$img" <<'PY'
import random, sys
with open(sys.argv[1], "r+b") as f:
    for i in range(0, 256, 8):
        f.seek(i << 20)
        f.write(random.Random(i).randbytes(3 << 20))
PY
data=$((96 << 20))

start_vdimotiond
mkdir -p "$T/peer-repo"
start_peer $tls --backup-repo "site=$T/peer-repo"
remote=${peer_https_url%/}/backups/site
echo secret > "$T/pw"
export VDIMOTION_PASSWORD=secret VDIMOTION_CA_FILE=$T/cert.pem
json_field () { python3 -c "import json,sys; print(json.load(sys.stdin)[sys.argv[1]])" "$1"; }
restore () { "$VDIMOTION" --server "$url" --password-file "$T/pw" backup restore "$@"; }

# The VDI's name label and its restore marker, as a client sees them.
vdi_state ()
{
  python3 - "$url" "$1" <<'PY'
import sys, xmlrpc.client
s = xmlrpc.client.ServerProxy(sys.argv[1])
sess = s.session.login_with_password("root", "secret")["Value"]
ref = s.VDI.get_by_uuid(sess, sys.argv[2])["Value"]
rec = s.VDI.get_record(sess, ref)["Value"]
oc = rec["other_config"]
print(rec["name_label"], "|", oc.get("vdimotion-restore-point", "-"),
      oc.get("vdimotion-restore-done", "-"))
PY
}
# The uuids of the VDIs of sr1 a restore left marked.
marked ()
{
  python3 - "$url" <<'PY'
import sys, xmlrpc.client
s = xmlrpc.client.ServerProxy(sys.argv[1])
sess = s.session.login_with_password("root", "secret")["Value"]
for r in s.VDI.get_all_records(sess)["Value"].values():
    if "vdimotion-restore-point" in r["other_config"]:
        print(r["uuid"])
PY
}

# One point in each repository: the same image.
"$VDIMOTION" backup create -f raw "$img" "$T/repo" > /dev/null || fail "local create"
"$VDIMOTION" backup create -f raw "$img" "$remote" > /dev/null || fail "remote create"
qemu-img convert -O raw "$(ls "$T"/repo/*/*.qcow2)" "$T/point.raw"
(f=$(ls "$T"/peer-repo/*/*.qcow2); cd "$(dirname "$f")" \
  && qemu-img convert -O raw "$(basename "$f")" "$T/rpoint.raw")
cmp "$T/point.raw" "$img" || fail "qemu-img convert of the point differs"
cmp "$T/rpoint.raw" "$img" || fail "qemu-img convert of the remote point differs"

# check_vdi UUID NAME: exported identical to the point, named NAME,
# unmarked.
check_vdi ()
{
  rm -f "$T/v.raw"
  "$VDIMOTION" --server "$url" --password-file "$T/pw" vdi export "$1" "$T/v.raw" \
    || fail "export of $1"
  cmp "$T/v.raw" "$T/point.raw" || fail "VDI $1 differs from the point"
  st=$(vdi_state "$1")
  [ "$st" = "$2 | - -" ] || fail "VDI $1 after the restore: $st"
}

# 1. Whole, from the local and from the remote repository.
restore --json "$T/repo" latest sr1:fromlocal > "$T/out" || fail "restore from local"
cat "$T/out"
check_vdi "$(json_field vdi < "$T/out")" fromlocal
[ "$(json_field bytes-read < "$T/out")" -eq $data ] || fail "local: not the data read"
restore "$remote" latest sr1:fromremote > "$T/out" || fail "restore from remote"
check_vdi "$(tail -n1 "$T/out")" fromremote

# 2. kill -9 of the CLI, then of the daemon, once the progress shows a
# window done (the progress moves after a window is recorded).
kill_mid_restore ()
{
  what=$1 repo=$2 name=$3
  # Not through restore (): $! must be vdimotion itself.
  "$VDIMOTION" --server "$url" --password-file "$T/pw" backup restore \
    --progress "$repo" latest "sr1:$name" > /dev/null 2> "$T/progress" &
  cli=$!
  for _ in $(seq 1200); do
    grep -q '[1-9][0-9]*\.[0-9]%' "$T/progress" && break
    kill -0 $cli 2>/dev/null || break
    sleep 0.05
  done
  if [ "$what" = cli ]; then
    kill -9 $cli 2>/dev/null || :
    wait $cli 2>/dev/null || :
  else
    kill -9 "$vdimotiond_pid"
    wait "$vdimotiond_pid" 2>/dev/null || :
    wait $cli 2>/dev/null || :
    run_vdimotiond "$T"
    vdimotiond_pid=$vdm_pid url=$vdm_url
  fi
  half=$(marked)
  if [ -n "$half" ]; then
    st=$(vdi_state "$half")
    echo "after kill -9 of the $what: $st"
    case $st in
      "$name (restoring point "*": incomplete) | "*" "[0-9]*) ;;
      *) fail "the half-restored VDI is not named and marked so: $st" ;;
    esac
    restore --json "$repo" latest "sr1:$name" > "$T/out" || fail "rerun after the $what"
    at=$(json_field resumed-at < "$T/out")
    sent=$(json_field bytes-read < "$T/out")
    echo "kill -9 of the $what: the rerun continued at byte $at and sent $sent bytes of $data"
    [ "$(json_field vdi < "$T/out")" = "$half" ] || fail "the rerun made another VDI"
    [ "$at" -gt 0 ] && [ "$sent" -lt $data ] || fail "the rerun sent everything again"
    check_vdi "$half" "$name"
  else
    echo "note: the restore ended before the kill of the $what"
    wait $cli 2>/dev/null || :
  fi
  [ -z "$(marked)" ] || fail "a marked VDI is left: $(marked)"
}
kill_mid_restore cli "$T/repo" killedcli
kill_mid_restore daemon "$remote" killeddaemon

# Bad destinations are named.
expect_exit 1 restore "$T/repo" latest no-colon
grep -q "SR:NAME" "$T/err" || fail "bad VDI destination not named"
expect_exit 1 restore "$T/repo" latest nosuchsr:x
grep -qi "nosuchsr" "$T/err" || { cat "$T/err"; fail "unknown SR not named"; }
