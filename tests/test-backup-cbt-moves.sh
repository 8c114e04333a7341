#!/bin/sh
# vdimotion backup of a running VM's disk (1 GiB, sparse; 64 MiB under
# the sanitizers) with CBT on, fio writing and verifying through the
# VM's disk, while the disk moves and its host crashes:
#  - a full, then incrementals, each reading at most 1.05 x the blocks
#    fio changed (rounded to 64 KiB);
#  - kill -9 of the daemon alone while fio writes: the disk server (the
#    log's writer) goes on, the next backup is incremental and small;
#  - kill -9 of the daemon and the disk servers while fio writes (a host
#    crash): the VM started again, the next backup is a full whose why
#    says the log was not closed cleanly;
#  - a live VDI.pool_migrate to another SR, then a cross-host live
#    VM.migrate to a second daemon, each between two backups: the next
#    backup (made against the daemon the disk is on) is small; the moved
#    VDI (a new uuid) continues the chain of the disk it was.
# Every point restores identical to the snapshot the backup took (its
# image read from the SR with qemu-img, before the next backup destroys
# its data), through vdimotion backup restore and through qemu-img
# convert of the repository file; qemu-img check is clean on each.
. "$srcdir/functions.sh"
. "$srcdir/xapi-functions.sh"
. "$srcdir/backup-functions.sh"
requires fio
requires nbdkit
requires qemu-img
requires_vm_disks

MiB=1048576
SIZE=$((1024 * MiB))
[ -z "${VDM_SANITIZED-}" ] || SIZE=$((64 * MiB))
# What fio writes between two backups: 1 % of the disk, whole 64 KiB
# blocks, each region its own (round N at N x 2 R).
R=$((SIZE / 100 / 65536 * 65536))
rate=1000
[ -z "${VDM_SANITIZED-}" ] || rate=100

tls_setup
first=$(( 20000 + ($$ + 9000) % 20000 ))
start_peer $tls --nbd-ports "$((first + 16))-$((first + 31))"
start_vdimotiond $tls --nbd-ports "$first-$((first + 15))" \
  --memory-migrator "$top_builddir/memory-migrators/vdimotion-mm-none"
echo secret > "$T/pw"
py () { PYTHONPATH=$srcdir python3 "$srcdir/backup-cbt-moves.py" "$@"; }

# write_round N [FIO ARGS...]: fio's round N.  The caller sets $changed,
# the bytes written since the last backup (a round may run in the
# background, a subshell).
changed=0
write_round () { n=$1; shift; fio_disk "$sock" "$n" $((n * 2 * R)) "$R" "$@"; }

# snap_image UUID: the image of snapshot UUID in the SR holding it.
snap_image ()
{
  for f in "$T"/sr[12]/"$1".* "$T"/peer/sr[12]/"$1".*; do
    case $f in *.qcow2|*.vhd|*.raw) [ -f "$f" ] && { echo "$f"; return; } ;; esac
  done
  fail "no image of snapshot $1"
}

# backup SERVER WANT [WHY]: a backup of the VM's disk ($vdi) through
# SERVER, of kind WANT (full or incremental; an incremental reads at
# most 1.05 x $changed), and checked: restored by vdimotion and by
# qemu-img convert, identical to the snapshot it took; qemu-img check.
# WHY, if given, must be in a full's why.  Sets $kind, $why.
backup ()
{
  server=$1 want=$2
  "$VDIMOTION" --server "$server" --password-file "$T/pw" backup create \
    --json "$vdi" "$T/repo" > "$T/out" || fail "backup of $vdi ($want)"
  cat "$T/out"
  id=$(json_field id < "$T/out")
  kind=$(json_field kind < "$T/out") why=$(json_field why < "$T/out")
  read=$(json_field bytes-read < "$T/out")
  # The disk as it was: the snapshot this backup took, read before the
  # next backup's VDI.data_destroy.
  qemu-img convert -O raw "$(snap_image "$(json_field cbt-snapshot < "$T/out")")" \
    "$T/at.raw"
  rm -f "$T/r.raw"
  "$VDIMOTION" backup restore "$T/repo" "$id" "$T/r.raw" > /dev/null \
    || fail "point $id: restore"
  qemu-img compare -q -f raw -F raw "$T/r.raw" "$T/at.raw" \
    || fail "point $id: restore differs from its snapshot"
  f=$(ls "$T"/repo/*/"$id.qcow2")
  (cd "$(dirname "$f")" && qemu-img convert -O raw "$id.qcow2" "$T/q.raw")
  qemu-img compare -q -f raw -F raw "$T/q.raw" "$T/at.raw" \
    || fail "point $id: qemu-img convert differs from its snapshot"
  qemu-img check -q "$f" || fail "point $id: qemu-img check"
  rm -f "$T/r.raw" "$T/q.raw" "$T/at.raw"
  case $want in
    incremental)
      [ "$kind" = incremental ] || fail "point $id: $kind, not incremental: $why"
      echo "point $id: incremental, $read bytes read for $changed changed"
      [ $((read * 100)) -le $((changed * 105)) ] \
        || fail "point $id: read $read for $changed changed" ;;
    full)
      [ "$kind" = full ] || fail "point $id: $kind, not full"
      [ -z "${3-}" ] || case $why in *"$3"*) ;; *) fail "point $id: why: $why" ;; esac ;;
  esac
  changed=0
}

# 1. The VM; data, a full; fio writes, an incremental; again.
set -- $(py setup "$url" "$T" "$SIZE")
vdi=$1 sock=$2
fio_disk "$sock" 100 0 $((4 * R)) || fail "fio before the full"
backup "$url" full
for n in 2 3; do
  write_round $n || fail "fio round $n"
  changed=$R
  backup "$url" incremental
done

# 2. kill -9 of the daemon alone while fio writes (once its writes
# reach the image): its disk server goes on writing and marking.
img=$(snap_image "$vdi")
m0=$(stat -c %y "$img")
write_round 4 --rate_iops=1000000,$rate &
w=$! changed=$R
wait_for 120 modified_since "$img" "$m0" || fail "fio round 4 wrote nothing"
kill -9 "$vdimotiond_pid"
wait "$vdimotiond_pid" 2>/dev/null || :
start_vdimotiond $tls --nbd-ports "$first-$((first + 15))" \
  --memory-migrator "$top_builddir/memory-migrators/vdimotion-mm-none"
wait $w || fail "fio across the daemon's kill -9"
backup "$url" incremental
echo "ok: kill -9 of the daemon alone: the next backup is incremental"

# 3. A host crash while fio writes (once its writes reach the image):
# the daemon and the disk servers killed; the VM started again; the
# next backup is a full, saying why.
m0=$(stat -c %y "$img")
fio --name=crash --ioengine=nbd --uri="nbd+unix:///?socket=$sock" \
  --rw=randwrite --bs=4k --offset=$((5 * 2 * R)) --size="$R" \
  --time_based --runtime=300 > /dev/null 2>&1 &
w=$!
wait_for 120 modified_since "$img" "$m0" || fail "fio wrote nothing"
kill -9 "$vdimotiond_pid"
wait "$vdimotiond_pid" 2>/dev/null || :
for p in "$T"/state/run/*.pid; do kill -9 "$(cat "$p")" 2>/dev/null || :; done
wait $w 2>/dev/null || :
start_vdimotiond $tls --nbd-ports "$first-$((first + 15))" \
  --memory-migrator "$top_builddir/memory-migrators/vdimotion-mm-none"
sock=$(py restart "$url" "$T")
backup "$url" full "not closed cleanly"
echo "ok: a host crash: the next backup is a full: $why"
write_round 6 || fail "fio round 6"
changed=$R
backup "$url" incremental

# continued MOVE: the last point (after MOVE) is of the moved VDI $vdi
# and continues the chain of disk $old, and says so.
continued ()
{
  case $why in
    *"continues the chain of VDI $old after a move"*) ;;
    *) fail "point $id after the $1: why: $why" ;;
  esac
  [ "$(json_field source < "$T/out")" = "$vdi" ] \
    || fail "point $id after the $1: source is not $vdi"
  [ "$(json_field disk < "$T/out")" = "$old" ] \
    || fail "point $id after the $1: disk is not $old"
}

# 4. A live VDI.pool_migrate to sr2 while fio writes, between two
# backups.  The moved VDI (a new uuid) knows what it was
# (other_config["vdimotion-moved-from"]), so the backup after the move
# continues the disk's chain: a small incremental saying so.
old=$vdi
write_round 7 --rate_iops=1000000,$rate &
w=$! changed=$R
vdi=$(py move "$url" "$T") || fail "VDI.pool_migrate"
wait $w || fail "fio across the live move"
backup "$url" incremental
continued "VDI.pool_migrate"
write_round 8 || fail "fio round 8"
changed=$R
backup "$url" incremental
echo "ok: after a live VDI.pool_migrate: backups go on"

# 5. A cross-host live VM.migrate while fio writes (until the handover),
# between two backups; the next backup through the destination daemon
# continues the chain: the destination has a record (cbt_metadata) of
# the previous point's snapshot, left on the source host.  The disk
# is still the repository's $old (the VDI before both moves).
write_round 9 --rate_iops=1000000,$rate &
w=$! changed=$R
py migrate "$https_url" "$peer_https_url" "$T/cert.pem" "$T" \
  "$T/handover" > "$T/migrated" &
m=$!
wait $w || fail "fio during the VM.migrate"
touch "$T/handover"
wait $m || fail "VM.migrate"
set -- $(cat "$T/migrated")
vdi=$1 sock=$2
backup "$peer_url" incremental
continued "VM.migrate"
write_round 10 || fail "fio round 10"
changed=$R
backup "$peer_url" incremental
echo "ok: after a cross-host VM.migrate: backups go on"
# What fio wrote since the crash is all there.
for n in 6 7 8 9 10; do
  fio_disk "$sock" $n $((n * 2 * R)) "$R" --verify_only || fail "round $n lost"
done
"$VDIMOTION" backup verify --deep "$T/repo" > /dev/null || fail "verify"

