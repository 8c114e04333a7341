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
requires qemu-img
requires python3

size=$((128 << 20))
img=$T/disk.raw
repo=$T/repo
truncate -s $size "$img"
# 32 MiB of data in 1 MiB pieces over the disk.
for i in $(seq 0 4 124); do
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
size = 128 << 20
blocks = set()
with open(path, "r+b") as f:
    for n in range(20):
        off = r.randrange(0, size - 65536)
        data = bytes(65536) if n == 0 else r.randbytes(65536)
        f.seek(off)
        f.write(data)
        blocks.update(range(off // 65536, (off + 65535) // 65536 + 1))
print(len(blocks) * 65536)
PY
}

json_field () { python3 -c "import json,sys; print(json.load(sys.stdin)[sys.argv[1]])" "$1"; }
points () { "$VDIMOTION" backup list --json "$repo" | python3 -c "import json,sys; print(' '.join(p['id'] for p in json.load(sys.stdin)))"; }

# Every listed point restores identical to the copy taken when it was
# made ($T/at-ID.raw), by vdimotion and by qemu-img; files check clean.
check_points ()
{
  for id in $(points); do
    rm -f "$T/r.raw"
    "$VDIMOTION" backup restore "$repo" "$id" "$T/r.raw" > /dev/null
    cmp "$T/r.raw" "$T/at-$id.raw" || fail "point $id: restore differs"
    f=$(ls "$repo"/*/"$id.qcow2")
    (cd "$(dirname "$f")" && qemu-img convert -O raw "$id.qcow2" "$T/q.raw")
    cmp "$T/q.raw" "$T/at-$id.raw" || fail "point $id: qemu-img convert differs"
    qemu-img check -q "$f" || fail "point $id: qemu-img check"
  done
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
check_points
"$VDIMOTION" backup verify --deep "$repo" > /dev/null || fail "verify of a good repository"

# 2. kill -9 of create at delays spread over (geometrically) a full's
# time: after each kill, whatever is listed is complete; the rerun
# finishes and does not read again what the killed run had done.
change 10 > /dev/null
t0=$(date +%s%N)
create --full
ms=$(( ($(date +%s%N) - t0) / 1000000 + 1 ))
full_read=$(json_field bytes-read < "$T/out")
echo "a whole full takes $ms ms"
resumed_less=0
d=10
while [ $d -lt $((ms * 2)) ]; do
  "$VDIMOTION" backup create -f raw --full "$img" "$repo" > /dev/null 2>&1 &
  pid=$!
  sleep "$(python3 -c "print($d / 1000)")"
  kill -9 $pid 2>/dev/null || :
  wait $pid || :
  "$VDIMOTION" backup verify "$repo" > "$T/v" || { cat "$T/v"; fail "kill after $d ms: a half point is listed"; }
  # Killed once it had finished: its point is whole, of the image as it is.
  for id in $(points); do
    [ -e "$T/at-$id.raw" ] || cp "$img" "$T/at-$id.raw"
  done
  create --full
  read=$(json_field bytes-read < "$T/out")
  echo "killed after $d ms: the rerun read $read bytes (a full: $full_read)"
  [ "$read" -lt "$full_read" ] && resumed_less=$((resumed_less + 1))
  d=$((d * 2))
done
echo "$resumed_less reruns read less than a full"
[ $resumed_less -gt 0 ] || fail "no rerun resumed a killed create"
ls -a "$repo"/*/ | grep -q '^\.create\.json$' && fail "pending create left behind"
check_points

# 3. kill -9 of restore.
for k in 1 2 3; do
  rm -f "$T/k.raw"
  "$VDIMOTION" backup restore "$repo" latest "$T/k.raw" > /dev/null 2>&1 &
  pid=$!
  sleep "$(python3 -c "print($ms * $k / 10000)")"
  kill -9 $pid 2>/dev/null || :
  wait $pid || :
  if ! "$VDIMOTION" backup restore "$repo" latest "$T/k.raw" > /dev/null 2> "$T/err"; then
    # Killed after it had finished: the journal had gone.
    grep -q "already exists" "$T/err" || { cat "$T/err"; fail "restore rerun"; }
    ls -a "$repo" | grep -q '^\.restore-' && fail "restore journal left"
  fi
  cmp "$T/k.raw" "$img" || fail "kill $k: resumed restore differs"
done

# 4. Prune, killed: the kept points read the same at every kill, and
# the rerun finishes with a clean repository.
"$VDIMOTION" backup prune --keep-last 6 "$repo" > /dev/null
n_before=$(points | wc -w)
[ "$n_before" -eq 6 ] || fail "prune --keep-last 6 left $n_before points"
for k in 1 2 3 4; do
  "$VDIMOTION" backup prune --keep-last $((n_before - k)) "$repo" > /dev/null 2>&1 &
  pid=$!
  sleep "0.0$((k * 20))"
  kill -9 $pid 2>/dev/null || :
  wait $pid || :
  check_points
  "$VDIMOTION" backup prune --keep-last $((n_before - k)) "$repo" > /dev/null
  "$VDIMOTION" backup verify --deep "$repo" > "$T/v" || { cat "$T/v"; fail "prune $k: verify"; }
  [ "$(points | wc -w)" -eq $((n_before - k)) ] || fail "prune $k: wrong number of points"
done
check_points
"$VDIMOTION" backup prune --keep-last 1 --dry-run --json "$repo" > "$T/out"
[ "$(json_field dry-run < "$T/out")" = True ] || fail "dry run"

# 5. A flipped byte in a data cluster of the oldest point's file.
first=$(points | cut -d' ' -f1)
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
