#!/bin/bash
# vdimotion --server URL backup restore REPO POINT SR:NAME: a point into a
# new VDI, from a local repository and from a remote one (a second
# vdimotiond serving --backup-repo over HTTPS), read back identical to
# qemu-img convert of the repository's file; kill -9 of the CLI (from the
# remote repository), then of the daemon (from the local one), once a
# window is recorded done: the half-restored VDI is named
# and marked as such, the same command finds it and sends only what was
# missing (less than the whole), and the VDI ends identical, named, with
# no marker.
. "$srcdir/functions.sh"
. "$srcdir/xapi-functions.sh"
requires qemu-img
requires python3
tls_setup

# 256 MiB, 32 MiB of data: 16 windows of 16 MiB, each with 2 MiB.
size=$((256 << 20))
img=$T/disk.raw
truncate -s $size "$img"
for mib in $(seq 0 16 255); do
  dd if=/dev/urandom of="$img" bs=1M seek=$mib count=2 conv=notrunc status=none
done
data=$((32 << 20))

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

# Wait until the restore into NAME has recorded a window in its marker
# (or 60 s, or the restore PID ended).
wait_window_done ()
{
  python3 - "$url" "$1" "$2" <<'PY' || :
import os, sys, time, xmlrpc.client
s = xmlrpc.client.ServerProxy(sys.argv[1])
sess = s.session.login_with_password("root", "secret")["Value"]
for _ in range(3000):
    for r in s.VDI.get_all_records(sess)["Value"].values():
        oc = r["other_config"]
        if oc.get("vdimotion-restore-name") == sys.argv[2] \
           and int(oc.get("vdimotion-restore-done", "0")) > 0:
            sys.exit(0)
    try:  # gone, or a zombie: the restore is over
        with open("/proc/%s/stat" % sys.argv[3]) as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                sys.exit(0)
    except OSError:
        sys.exit(0)
    time.sleep(0.02)
PY
}

# 2. kill -9 of the CLI, then of the daemon, once a window is recorded
# done in the VDI's marker.
kill_mid_restore ()
{
  what=$1 repo=$2 name=$3
  # Not through restore (): $! must be vdimotion itself.
  "$VDIMOTION" --server "$url" --password-file "$T/pw" backup restore \
    "$repo" latest "sr1:$name" > /dev/null 2>&1 &
  cli=$!
  wait_window_done "$name" $cli
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
    # Half-way: named as incomplete.  Or killed in the last step: every
    # window recorded and the name given, the marker not yet removed
    # (the rerun removes it).
    case $st in
      "$name (restoring point "*": incomplete) | "*" "[0-9]*) ;;
      "$name | "*" $size") ;;
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
kill_mid_restore cli "$remote" killedcli
kill_mid_restore daemon "$T/repo" killeddaemon

# Bad destinations are named.
expect_exit 1 restore "$T/repo" latest no-colon
grep -q "SR:NAME" "$T/err" || fail "bad VDI destination not named"
expect_exit 1 restore "$T/repo" latest nosuchsr:x
grep -qi "nosuchsr" "$T/err" || { cat "$T/err"; fail "unknown SR not named"; }

# The chunked import's refusals, each with its reason.
python3 - "$url" <<'PY' || fail "chunked import refusals"
import http.client, struct, sys, urllib.parse, xmlrpc.client
url = sys.argv[1]
s = xmlrpc.client.ServerProxy(url)
sess = s.session.login_with_password("root", "secret")["Value"]
sr = s.SR.get_by_name_label(sess, "sr1")["Value"][0]
vdi = s.VDI.create(sess, {"SR": sr, "name_label": "chunks",
                          "virtual_size": str(1 << 20), "type": "user",
                          "sharable": False, "read_only": False,
                          "other_config": {}})["Value"]
u = urllib.parse.urlparse(url)
def put(query, body):
    c = http.client.HTTPConnection(u.hostname, u.port)
    c.request("PUT", "/import_raw_vdi?session_id=%s&vdi=%s&%s" % (sess, vdi, query), body)
    r = c.getresponse()
    return r.status, r.read().decode()
hdr = lambda off, n: struct.pack("<QI", off, n)
for query, body, status, words in [
        ("format=vhd&chunked=true", hdr(0, 0), 400, "only format=raw"),
        ("format=raw&chunked=true", hdr((1 << 20) - 4, 8) + b"x" * 8, 413, "past the destination"),
        ("format=raw&chunked=true", hdr(0, 4) + b"abcd", 400, "without its last chunk"),
        ("format=raw&chunked=true", hdr(0, 0) + b"z", 400, "after the chunked stream"),
        ("format=raw&chunked=true", hdr(4096, 4) + b"abcd" + hdr(0, 0), 200, "imported")]:
    got, text = put(query, body)
    print(query, got, text.strip())
    assert got == status and words in text, (query, got, text)
PY
