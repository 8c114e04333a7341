#!/bin/bash
# vdimotion backup of a local image: a full, then incrementals after 1 %
# changes that move at most 1.05 x the changed bytes rounded to 64 KiB;
# every point restores identical to the image as it was (through
# vdimotion backup restore and through qemu-img convert of the
# repository file) and every file checks clean; kill -9 during create,
# restore and prune: the rerun finishes and nothing half-made is ever
# listed; prune keeps the kept points identical; verify --deep finds a
# flipped byte and names the point and the block.
. "$srcdir/functions.sh"
. "$srcdir/backup-functions.sh"
requires qemu-img
requires python3

size=$((64 << 20))
img=$T/disk.raw
repo=$T/repo
truncate -s $size "$img"
# 16 MiB of data in 1 MiB pieces over the disk.
for i in $(seq 0 4 60); do
  write_pattern "$img" $i $((i << 20)) $((1 << 20))
done

# Change about 1 % of the disk (64 KiB pieces at odd offsets, one piece
# zeroed); prints the changed bytes rounded out to 64 KiB blocks.
change ()
{
  python3 - "$img" "$1" <<'PY'
import random, sys
path, seed = sys.argv[1], int(sys.argv[2])
r = random.Random(seed)
size = 64 << 20
blocks = set()
with open(path, "r+b") as f:
    for n in range(10):
        off = r.randrange(0, size - 65536)
        data = bytes(65536) if n == 0 else r.randbytes(65536)
        f.seek(off)
        f.write(data)
        blocks.update(range(off // 65536, (off + 65535) // 65536 + 1))
print(len(blocks) * 65536)
PY
}

create ()
{
  "$VDIMOTION" backup create -f raw --json "$@" "$img" "$repo" > "$T/out"
  id=$(json_field id < "$T/out")
  cp "$img" "$T/at-$id.raw"
}

# 1. Full, then incrementals after 1 % changes.
create
[ "$(json_field kind < "$T/out")" = full ] || fail "first point not full"
for round in 1 2 3; do
  changed=$(change $round)
  create
  [ "$(json_field kind < "$T/out")" = incremental ] || fail "round $round not incremental"
  written=$(json_field bytes-written < "$T/out")
  echo "round $round: $written bytes written for $changed changed"
  [ $((written * 100)) -le $((changed * 105)) ] || fail "round $round: $written bytes moved for $changed changed"
  [ "$written" -gt 0 ] || fail "round $round: nothing written"
done
create --full
[ "$(json_field why < "$T/out")" = "a full was asked for (--full)" ] || fail "--full: why"
check_points "$repo" "$repo"
"$VDIMOTION" backup verify --deep "$repo" > /dev/null || fail "verify of a good repository"

# 2. kill -9 of create, mid-way: the source read slowly (over NBD
# through nbdkit's delay filter, 20 ms a read) so that the kills land
# between windows.  After each kill whatever is listed is complete; the
# rerun finishes the same point without reading again what the killed
# run had done.
change 10 > /dev/null
nbdkit -r -U "$T/src.sock" -P "$T/src.pid" -f --filter=delay file "$img" \
  rdelay=20ms > "$T/nbdkit.log" 2>&1 &
stop_src () { kill "$(cat "$T/src.pid")" 2>/dev/null || :; }
cleanup_fn stop_src
wait_for 120 eval '[ -S "$T/src.sock" ] && [ -s "$T/src.pid" ]' \
  || { cat "$T/nbdkit.log" >&2; fail "nbdkit did not start"; }
uri="nbd+unix:///?socket=$T/src.sock"
slow_create ()
{
  "$VDIMOTION" backup create --json "$@" "$uri" "$repo" > "$T/out"
  id=$(json_field id < "$T/out")
  cp "$img" "$T/at-$id.raw"
}
t0=$(date +%s%N)
"$VDIMOTION" backup create --json "$uri" "$repo" > "$T/out"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
cp "$img" "$T/at-$(json_field id < "$T/out").raw"
echo "a full from the slow source takes $ms ms"
full_read=$(json_field bytes-read < "$T/out")
# The data is spread evenly: the first of the two windows is done about
# half-way; kill in the second: once the pending point's journal
# (.ID.journal beside the points) marks the first window done, however
# long that took, then at 75 and 90 % of the time a full takes.
window_done ()
{
  for j in "$repo"/*/.*.journal; do
    [ -e "$j" ] && [ "$(journal_done "$j")" -ge 1 ] && return 0
  done
  return 1
}
resumed_less=0
for pc in window 75 90; do
  "$VDIMOTION" backup create --full "$uri" "$repo" > /dev/null 2>&1 &
  pid=$!
  if [ $pc = window ]; then
    d="a window done"
    wait_for 300 eval 'window_done || gone $pid' \
      || fail "the create marked no window done in 5 minutes"
  else
    d=$(python3 -c "print($ms * $pc / 100000)")
    sleep $d
    d="$d s"
  fi
  kill -9 $pid 2>/dev/null || :
  wait $pid || :
  "$VDIMOTION" backup verify "$repo" > "$T/v" || { cat "$T/v"; fail "kill after $d: a half point is listed"; }
  # Killed once it had finished: its point is whole, of the image as it is.
  for id in $(points "$repo"); do
    [ -e "$T/at-$id.raw" ] || cp "$img" "$T/at-$id.raw"
  done
  slow_create --full
  read=$(json_field bytes-read < "$T/out")
  echo "killed after $d: the rerun read $read bytes (a full: $full_read)"
  [ "$read" -lt "$full_read" ] && resumed_less=$((resumed_less + 1))
done
stop_src
echo "$resumed_less reruns read less than a full"
[ $resumed_less -ge 1 ] || fail "no killed create was resumed"
ls -a "$repo"/*/ | grep -q '^\.create\.json$' && fail "pending create left behind"
check_points "$repo" "$repo" quick

# 3. kill -9 of restore.
rid=$(json_field id < "$T/out")
for k in 1 2 3; do
  rm -f "$T/k.raw"
  "$VDIMOTION" backup restore "$repo" "$rid" "$T/k.raw" > /dev/null 2>&1 &
  pid=$!
  sleep "0.$k"
  kill -9 $pid 2>/dev/null || :
  wait $pid || :
  if ! "$VDIMOTION" backup restore "$repo" "$rid" "$T/k.raw" > /dev/null 2> "$T/err"; then
    # Killed after it had finished: the journal had gone.
    grep -q "already exists" "$T/err" || { cat "$T/err"; fail "restore rerun"; }
    ls -a "$repo" | grep -q '^\.restore-' && fail "restore journal left"
  fi
  cmp "$T/k.raw" "$img" || fail "kill $k: resumed restore differs"
done

# 4. Prune, killed: the kept points read the same at every kill, and
# the rerun finishes with a clean repository.
# kept N: how many points --keep-last N leaves (per disk).
kept ()
{
  "$VDIMOTION" backup list --json "$repo" | python3 -c "
import collections, json, sys
c = collections.Counter(p['disk'] for p in json.load(sys.stdin))
print(sum(min(n, int(sys.argv[1])) for n in c.values()))" "$1"
}
want=$(kept 6)
"$VDIMOTION" backup prune --keep-last 6 "$repo" > /dev/null
[ "$(points "$repo" | wc -w)" -eq "$want" ] || fail "prune --keep-last 6 left $(points "$repo" | wc -w) points, not $want"
n_before=6
for k in 1 2 3; do
  want=$(kept $((n_before - k)))
  "$VDIMOTION" backup prune --keep-last $((n_before - k)) "$repo" > /dev/null 2>&1 &
  pid=$!
  sleep "0.0$((k * 20))"
  kill -9 $pid 2>/dev/null || :
  wait $pid || :
  check_points "$repo" "$repo" quick
  "$VDIMOTION" backup prune --keep-last $((n_before - k)) "$repo" > /dev/null
  "$VDIMOTION" backup verify --deep "$repo" > "$T/v" || { cat "$T/v"; fail "prune $k: verify"; }
  [ "$(points "$repo" | wc -w)" -eq "$want" ] || fail "prune $k: wrong number of points"
done
check_points "$repo" "$repo"
"$VDIMOTION" backup prune --keep-last 1 --dry-run --json "$repo" > "$T/out"
[ "$(json_field dry-run < "$T/out")" = True ] || fail "dry run"

# 5. A flipped byte in a data cluster of the oldest point's file.
first=$(points "$repo" | cut -d' ' -f1)
f=$(ls "$repo"/*/"$first.qcow2")
read -r guest host < <(qemu-img map --output=json -f qcow2 "$f" | python3 -c "
import json, sys
e = [x for x in json.load(sys.stdin) if x['data'] and x['depth'] == 0][0]
print(e['start'], e['offset'])")
python3 - "$f" $((host + 100)) <<'PY'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(int(sys.argv[2])); b = f.read(1); f.seek(int(sys.argv[2]))
    f.write(bytes([b[0] ^ 0xff]))
PY
expect_exit 1 "$VDIMOTION" backup verify --deep "$repo"
"$VDIMOTION" backup verify --deep "$repo" > "$T/v" 2>&1 || :
cat "$T/v"
grep -q "point $first .*block $((guest / 65536)) (offset $guest): SHA-256 mismatch" "$T/v" \
  || fail "verify did not name point $first block $((guest / 65536))"

# 6. Bad input: clear errors, no crash.
expect_exit 2 "$VDIMOTION" backup prune "$repo"
expect_exit 1 "$VDIMOTION" backup restore "$repo" no-such-point "$T/x.raw"
grep -q 'no point "no-such-point"' "$T/err" || fail "restore of an unknown point"
echo '{"format": "vdimotion-backup-manifest"}' > "$(dirname "$f")/bad.json"
expect_exit 1 "$VDIMOTION" backup list "$repo"
grep -q 'bad.json: field "version"' "$T/err" || { cat "$T/err"; fail "bad manifest not named"; }
rm "$(dirname "$f")/bad.json"
# A killed command's damaged note: named, not guessed at.
echo '{' > "$(dirname "$f")/.create.json"
expect_exit 1 "$VDIMOTION" backup create -f raw "$img" "$repo"
grep -q "a killed create's note is damaged" "$T/err" || { cat "$T/err"; fail "damaged create note"; }
rm "$(dirname "$f")/.create.json"
echo '{"into": "../x", "point": {}}' > "$(dirname "$f")/.prune.json"
expect_exit 1 "$VDIMOTION" backup prune --keep-last 1 "$repo"
grep -q "prune's note) is damaged" "$T/err" || { cat "$T/err"; fail "damaged prune note"; }
