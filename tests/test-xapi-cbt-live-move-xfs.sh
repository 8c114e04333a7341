#!/bin/sh
# The changed-block log of a running VM's disk follows a live move to an
# SR on another filesystem (sr2 is a tmpfs mounted in the test's
# directory): the VM's mirror filter is moved onto a merged copy of the
# log (cbt.h, host_cbt_follow), so the next backup is still incremental.
# A VM's disk (CBT on) has a full backup; fio writes while
# Async.VDI.pool_migrate moves it live to sr2, then writes again:
#  - the new VDI's log has the old one's generation, counts from the
#    full's snapshot and marks exactly the blocks fio wrote since then;
#    the old log is gone;
#  - the next backup (vdimotion backup create --server) is incremental,
#    continues the disk's chain, reads at most 1.05 x what fio changed.
# Then the disk moves back and forth while fio writes, the daemon
# killed (kill -9) at each step of the log's carry: the restart
# finishes the move and its log still marks exactly what fio wrote; the
# next backup is incremental.
# Last, SR.evacuate of sr1 into sr2: the live leaf's log follows it the
# same way, relinked to the new uuid of the last point's snapshot (which
# moved too), so the next backup is incremental, continuing the chain
# from that snapshot's copy; an offline disk's logs follow too
# (list_changed_blocks from its snapshots' copies as before).
# Every point restores identical to its snapshot (check_points).
. "$srcdir/functions.sh"
. "$srcdir/xapi-functions.sh"
. "$srcdir/backup-functions.sh"
requires fio
requires nbdkit
requires qemu-img
requires_vm_disks

MiB=1048576
SIZE=$((256 * MiB))
[ -z "${VDM_SANITIZED-}" ] || SIZE=$((64 * MiB))
# fio's round N writes every 4 KiB of [N x 2R, N x 2R + R).
R=$((SIZE / 32))
rate=500
[ -z "${VDM_SANITIZED-}" ] || rate=100

# sr2 on a filesystem of its own.
mkdir -p "$T/sr2"
mount -t tmpfs -o size=$((4 * SIZE)) vdm-sr2 "$T/sr2" 2> /dev/null \
  || skip "cannot mount a tmpfs on $T/sr2 (not root?): no second filesystem"
unmount_sr2 () { umount -l "$T/sr2" 2> /dev/null || :; }
cleanup_fn unmount_sr2
[ "$(stat -c %d "$T/sr2")" != "$(stat -c %d "$T")" ] \
  || fail "the tmpfs on $T/sr2 is not another filesystem"

tls_setup
first=$(( 20000 + ($$ + 3000) % 20000 ))
daemon () { start_vdimotiond $tls --nbd-ports "$first-$((first + 15))"; }
daemon
echo secret > "$T/pw"
py () { PYTHONPATH=$srcdir python3 "$srcdir/backup-cbt-moves.py" "$@"; }
write_round () { n=$1; shift; fio_disk "$sock" "$n" $((n * 2 * R)) "$R" "$@"; }

# blocks N...: the 64 KiB blocks fio's rounds N... wrote, as ranges.
blocks ()
{
  for n; do
    printf '%s-%s\n' $((n * 2 * R / 65536)) $(((n * 2 * R + R) / 65536 - 1))
  done | paste -sd, -
}
# log_is FILE GENERATION PREDECESSOR RANGES: the log FILE (read by
# tests/cbtlog.py) has that generation and predecessor, and its set
# blocks are exactly RANGES.
log_is ()
{
  got=$(PYTHONPATH=$srcdir python3 -c '
import sys, cbtlog
info, b = cbtlog.read(sys.argv[1]), cbtlog.marked(sys.argv[1])
r = []
for i in b:
    if r and r[-1][1] == i - 1: r[-1][1] = i
    else: r.append([i, i])
print(info["generation"], info["predecessor"],
      ",".join("%d-%d" % (a, z) for a, z in r) or "-")' "$1") \
    || fail "$1: not a log"
  [ "$got" = "$2 $3 $4" ] || fail "$1: '$got', not '$2 $3 $4'"
  echo "ok: $1: generation $2, from $3, blocks $4"
}
snap_image () { ls "$T"/sr[12]/"$1".qcow2 "$T"/sr[12]/"$1".vhd 2> /dev/null | head -1; }

# backup WANT: a backup of the VM's disk ($vdi), of kind WANT; an
# incremental reads at most 1.05 x $changed.  The snapshot it took is
# read into $T/at-ID.raw for check_points; sets $snap, $why.
backup ()
{
  "$VDIMOTION" --server "$url" --password-file "$T/pw" backup create \
    --json "$vdi" "$T/repo" > "$T/out" || fail "backup of $vdi ($1)"
  cat "$T/out"
  id=$(json_field id < "$T/out") snap=$(json_field cbt-snapshot < "$T/out")
  kind=$(json_field kind < "$T/out") why=$(json_field why < "$T/out")
  read=$(json_field bytes-read < "$T/out")
  qemu-img convert -O raw "$(snap_image "$snap")" "$T/at-$id.raw" \
    || fail "point $id: its snapshot $snap"
  [ "$kind" = "$1" ] || fail "point $id: $kind, not $1: $why"
  [ "$1" = full ] || [ $((read * 100)) -le $((changed * 105)) ] \
    || fail "point $id: read $read for $changed changed"
  changed=0
}
# continued: the last point continues the chain of the first disk.
continued ()
{
  case $why in
    *"continues the chain of VDI $disk after a move"*) ;;
    *) fail "point $id after the move: why: $why" ;;
  esac
}

# 1. The VM's disk in sr1, CBT on; data, a full backup.
set -- $(py setup "$url" "$T" "$SIZE")
vdi=$1 sock=$2 disk=$1
fio_disk "$sock" 100 0 "$R" || fail "fio before the full"
backup full
gen=$(python3 "$srcdir/cbtlog.py" "$T/sr1/$vdi.cbtlog" | tr ' ' '\n' \
        | sed -n 's/^generation=//p')

# 2. The live move to sr2 (another filesystem) while fio writes, once
# its writes reach the image; more writes after it.
old=$vdi img=$(snap_image "$vdi")
m0=$(stat -c %y "$img")
write_round 2 --rate_iops=1000000,$rate &
w=$!
wait_for 120 modified_since "$img" "$m0" || fail "fio round 2 wrote nothing"
vdi=$(py move "$url" "$T") || fail "VDI.pool_migrate to sr2"
wait $w || fail "fio across the live move"
grep -q "log followed it to VDI $vdi on another filesystem" \
  "$T/vdimotiond.log" || fail "the log did not follow by the filter"
[ ! -e "$T/sr1/$old.cbtlog" ] || fail "the old log stays"
log_is "$T/sr2/$vdi.cbtlog" "$gen" "$snap" "$(blocks 2)"
write_round 3 || fail "fio round 3"
log_is "$T/sr2/$vdi.cbtlog" "$gen" "$snap" "$(blocks 2 3)"
changed=$((2 * R))
backup incremental
continued
echo "ok: after a live move across filesystems: incremental ($read bytes)"

# 3. Moves back and forth while fio writes, the daemon killed at each
# step of the log's carry (cbt.c, follow_live): once the new log is made
# and before the filter takes it; once the filter took it, before the
# marks made in between are merged; after that merge, before the old
# log goes.  The restart finishes the move; the new log marks exactly
# what fio wrote since the last point; the next backup is incremental.
n=4 from=sr2 to=sr1
for point in cbt-follow-copied cbt-follow-switched cbt-follow-merged; do
  stop_vdimotiond
  export VDIMOTIOND_CRASH_AT=$point
  daemon > /dev/null
  unset VDIMOTIOND_CRASH_AT
  old=$vdi img=$(snap_image "$vdi")
  m0=$(stat -c %y "$img")
  write_round $n --rate_iops=1000000,$rate &
  w=$!
  wait_for 120 modified_since "$img" "$m0" || fail "fio round $n wrote nothing"
  py move "$url" "$T" $to > "$T/move.out" 2>&1 &
  wait_crashed $point
  daemon > /dev/null
  wait $w || fail "fio across the kill -9 at $point"
  set -- $(py disk "$url" "$T")
  vdi=$1
  [ "$vdi" != "$old" ] && [ -f "$T/$to/$vdi.qcow2" ] \
    || fail "the restart did not finish the move to $to ($point)"
  [ ! -e "$T/$from/$old.cbtlog" ] || fail "the old log stays ($point)"
  log_is "$T/$to/$vdi.cbtlog" "$gen" "$snap" "$(blocks $n)"
  changed=$R
  backup incremental
  continued
  echo "ok: a kill -9 at $point: incremental ($read bytes)"
  n=$((n + 1)) was=$from from=$to to=$was
done

# 4. SR.evacuate of sr1 into sr2 while the VM runs: the live leaf is
# mirrored onto a new leaf over copies of its snapshots, on the other
# filesystem, and its log follows it the same way; the snapshots' logs
# follow them, relinked to their new uuids.  An offline disk with CBT
# and two snapshots (a halted VM's) moves too: its logs follow, and
# VDI.list_changed_blocks from each snapshot's copy to the leaf's gives
# the bitmaps it gave before.
# (The snapshots whose data the backups destroyed, records without an
# image, cannot be evacuated: excluded.)
write_round 7 || fail "fio round 7"
old=$vdi
ofl () { PYTHONPATH=$srcdir python3 "$srcdir/evacuate-cbt-offline.py" "$@"; }
out=$(ofl before "$url") || fail "the offline disk"
set -- $out
offline_before="$4 $5"
[ "$4" != "$5" ] || fail "the offline disk's bitmaps do not differ: $4 $5"
offline="$1 $2 $3"
excluded=$(PYTHONPATH=$srcdir python3 -c '
import sys, xapi_checks
x, s = xapi_checks.login(sys.argv[1])
sr1 = xapi_checks.ok(x.SR.get_by_name_label(s, "sr1"))[0]
for r in xapi_checks.ok(x.VDI.get_all_records(s)).values():
    if r["SR"] == sr1 and r["type"] == "cbt_metadata":
        print("--exclude", r["uuid"])' "$url")
"$VDIMOTION" --server "$url" --password-file "$T/pw" sr evacuate sr1 \
  --to sr2 $excluded > "$T/evacuate.out" 2>&1 \
  || { cat "$T/evacuate.out"; fail "sr evacuate sr1"; }
set -- $(py disk "$url" "$T")
vdi=$1
[ -f "$T/sr2/$vdi.qcow2" ] || fail "the leaf is not in sr2"
grep -q "log followed it to VDI $vdi on another filesystem" \
  "$T/vdimotiond.log" || fail "the leaf's log did not follow by the filter"
# The point's snapshot moved too, under a new uuid that the leaf's log
# now counts from.
newsnap=$(PYTHONPATH=$srcdir python3 -c '
import sys, xapi_checks
x, s = xapi_checks.login(sys.argv[1])
for r in xapi_checks.ok(x.VDI.get_all_records(s)).values():
    if sys.argv[2] in r["other_config"].get("vdimotion-moved-from", "").split(","):
        print(r["uuid"])' "$url" "$snap")
[ -n "$newsnap" ] && [ -f "$T/sr2/$newsnap.cbtlog" ] \
  || fail "the point's snapshot $snap: no copy with its log in sr2"
log_is "$T/sr2/$vdi.cbtlog" "$gen" "$newsnap" "$(blocks 7)"
out=$(ofl after "$url" $offline) || fail "the offline disk after"
set -- $out
[ "$4 $5" = "$offline_before" ] \
  || fail "the offline disk's changed blocks: '$4 $5', not '$offline_before'"
echo "ok: the offline disk's logs followed it: the same changed blocks"
# The next backup continues the chain from the snapshot's copy.
changed=$R
backup incremental
continued
echo "ok: SR.evacuate: incremental ($read bytes)"
write_round 8 || fail "fio round 8"
changed=$R
backup incremental
echo "ok: after SR.evacuate: incremental ($read bytes)"
check_points "$T/repo" "$T/repo" ends
echo "ok: every point restores identical"
stop_vdimotiond
