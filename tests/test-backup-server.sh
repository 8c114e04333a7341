#!/bin/sh
# vdimotion backup of a running VM's disk through --server, as xapi's CBT
# workflow: a full, writes through the VM's disk, an incremental that
# reads only the changed blocks (VDI.list_changed_blocks, at most 1.05 x
# the changed bytes rounded to 64 KiB), again; every point restores
# identical to the disk as it was (through vdimotion backup restore and
# qemu-img convert); qemu-img check clean; the previous snapshot's data
# destroyed (type cbt_metadata); a rerun after kill -9 of create
# finishes; --full says why.
. "$srcdir/functions.sh"
. "$srcdir/xapi-functions.sh"
. "$srcdir/backup-functions.sh"
requires nbdkit
requires qemu-img
requires nbdcopy
requires_vm_disks
/usr/bin/python3 -c 'import nbd' 2>/dev/null \
  || skip "python3-libnbd is not installed"
tls_setup
first=$(( 20000 + ($$ + 7000) % 20000 ))
start_vdimotiond $tls --nbd-ports "$first-$(( first + 15 ))"
echo secret > "$T/pw"
backup () { "$VDIMOTION" --server "$url" --password-file "$T/pw" backup "$@"; }

# The VM: a 64 MiB disk with CBT on, started; its NBD socket.
PYTHONPATH=$srcdir /usr/bin/python3 "$srcdir/backup-server.py" setup "$url" "$T" \
  || { cat "$T/vdimotiond.log"; fail "setup"; }
vdi=$(cat "$T/vdi") sock=$(cat "$T/sock")
# guest_write SEED: 1 % of the disk in 64 KiB pieces at odd offsets,
# through the VM's disk; prints the changed bytes rounded to 64 KiB.
guest_write () { /usr/bin/python3 "$srcdir/backup-server.py" write "$sock" "$1"; }
snap_disk () { nbdcopy "nbd+unix:///?socket=$sock" "$T/at-$1.raw"; }

guest_write 1 > /dev/null
backup create --json "$vdi" "$T/repo" > "$T/out" || fail "full"
id0=$(json_field id < "$T/out"); snap_disk "$id0"
[ "$(json_field kind < "$T/out")" = full ] || fail "first point not full"
# The point records its snapshot's CBT generation (the daemon's
# sm_config["cbt-generation"]); the incrementals, of the same log, the
# same one.
gen=$(json_field cbt-generation < "$T/out")
echo "$gen" | grep -Eq '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' \
  || fail "the full recorded CBT generation $gen"
for round in 2 3; do
  changed=$(guest_write $round)
  backup create --json "$vdi" "$T/repo" > "$T/out" || fail "round $round"
  id=$(json_field id < "$T/out"); snap_disk "$id"
  cat "$T/out"
  [ "$(json_field kind < "$T/out")" = incremental ] || fail "round $round not incremental"
  json_field why < "$T/out" | grep -q "from CBT" || fail "round $round: not from CBT"
  [ "$(json_field cbt-generation < "$T/out")" = "$gen" ] \
    || fail "round $round: CBT generation $(json_field cbt-generation < "$T/out"), not $gen"
  read=$(json_field bytes-read < "$T/out")
  written=$(json_field bytes-written < "$T/out")
  echo "round $round: $read bytes read, $written written for $changed changed"
  [ $((read * 100)) -le $((changed * 105)) ] || fail "round $round: read $read for $changed changed"
done
# The snapshots before the last: their data destroyed, their logs kept.
PYTHONPATH=$srcdir /usr/bin/python3 "$srcdir/backup-server.py" snapshots "$url" "$vdi" > "$T/snaps"
cat "$T/snaps"
[ "$(grep -c cbt_metadata "$T/snaps")" -eq 2 ] || fail "older snapshots not data_destroy'ed"

# kill -9 of create, then the rerun finishes the same point.
guest_write 4 > /dev/null
backup create "$vdi" "$T/repo" > /dev/null 2>&1 &
pid=$!
# Killed once its pending point is published (.create.json), however
# long the snapshot before it took; or after it ended.
wait_for 300 eval 'ls "$T"/repo/*/.create.json > /dev/null 2>&1 || gone $pid' \
  || fail "the create published no pending point in 5 minutes"
kill -9 $pid 2>/dev/null || :
wait $pid || :
backup create --json "$vdi" "$T/repo" > "$T/out" || fail "rerun after kill"
snap_disk "$(json_field id < "$T/out")"
# Killed once it had finished: that point is whole, of the same disk.
for id in $(points "$T/repo"); do
  [ -e "$T/at-$id.raw" ] || cp "$T/at-$(json_field id < "$T/out").raw" "$T/at-$id.raw"
done
backup create --full --json "$vdi" "$T/repo" > "$T/out"
[ "$(json_field why < "$T/out")" = "a full was asked for (--full)" ] || fail "--full"
snap_disk "$(json_field id < "$T/out")"

check_points "$T/repo" "$T/repo"
"$VDIMOTION" backup verify --deep "$T/repo" || fail "verify"

# The newest point into a new VDI of sr1, read back identical.
last=$(points "$T/repo" | awk '{print $NF}')
new=$("$VDIMOTION" --server "$url" --password-file "$T/pw" backup restore \
        "$T/repo" "$last" sr1:restored | tail -n1)
"$VDIMOTION" --server "$url" --password-file "$T/pw" vdi export "$new" "$T/v.raw"
cmp "$T/v.raw" "$T/at-$last.raw" || fail "point $last restored to VDI $new differs"
expect_exit 1 "$VDIMOTION" --server "$url" --password-file "$T/pw" backup restore \
  "$T/repo" "$last" no-colon
grep -q "SR:NAME" "$T/err" || fail "bad VDI destination not named"
