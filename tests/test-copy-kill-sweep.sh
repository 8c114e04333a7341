#!/bin/bash
# kill -9 sweep of `vdimotion copy --journal`: each round kills the copy
# at one to three random points and reruns it until it completes; the
# result must read as the source and, for qcow2, check clean (no leaked
# clusters: a resumed copy frees what the killed run allocated and never
# linked).  vhd -> qcow2, qcow2 -> qcow2 and vhd -> vhd.
#
# The points are random but seeded: the seed is printed, and
# VDM_SWEEP_SEED=N reruns the same sweep.
. "$srcdir/functions.sh"
requires qemu-img

seed=${VDM_SWEEP_SEED:-$(( $$ ^ $(date +%s) ))}
seed=$(( seed % 32768 ))
echo "seed $seed (rerun with VDM_SWEEP_SEED=$seed)"
RANDOM=$seed
rounds=${VDM_SWEEP_ROUNDS:-10}

# 128 MiB with 48 MiB of data in eight places, some of it zeroes inside
# data (so that zero runs of a window are written as zero requests).
"$VDIMOTION" create -f raw "$T/s.raw" 128M
python3 - "$T/s.raw" <<'PY'
import random, sys
r = random.Random(7)
with open(sys.argv[1], "r+b") as f:
    for i in range(8):
        f.seek(i * (16 << 20) + (i % 3) * (1 << 20))
        d = bytearray(r.randbytes(6 << 20))
        d[1 << 20:(1 << 20) + (256 << 10)] = bytes(256 << 10)
        f.write(d)
PY
qemu-img convert -O vpc -o subformat=dynamic "$T/s.raw" "$T/s.vhd"
qemu-img convert -O qcow2 "$T/s.raw" "$T/s.qcow2"

# A random pause of 0 .. MS-1 milliseconds.
pause () { ms=$(( RANDOM % $1 )); sleep "$(( ms / 1000 )).$(printf %03d $(( ms % 1000 )))"; }

# sweep SRC DST-NAME: rounds of kill(s) and reruns.
sweep ()
{
  src=$1 dst=$T/$2
  args=(--journal "$T/j" --requests 4 --request-size 256K "$src" "$dst")
  # The time of a whole copy (the shortest of three).
  full=
  for _ in 1 2 3; do
    rm -f "$dst" "$T/j"
    t0=$(date +%s%N)
    "$VDIMOTION" copy "${args[@]}" > /dev/null
    t=$(( ($(date +%s%N) - t0) / 1000000 + 1 ))
    [ -n "$full" ] && [ "$full" -le "$t" ] || full=$t
  done
  echo "$2: a whole copy takes $full ms"
  hits=0 round=0
  # At least $rounds rounds, and at least 10 kills that hit a running copy.
  while [ $round -lt "$rounds" ] || [ $hits -lt 10 ]; do
    round=$((round + 1))
    rm -f "$dst" "$T/j"
    kills=$(( RANDOM % 3 + 1 )) runs=0 points=
    while :; do
      runs=$((runs + 1))
      "$VDIMOTION" copy "${args[@]}" > /dev/null 2> "$T/err" &
      pid=$!
      [ "$runs" -gt "$kills" ] || { pause "$full"; kill -9 $pid 2>/dev/null || :; }
      rc=0
      wait $pid 2>/dev/null || rc=$?
      # Finished before its kill: draw the next points from less time.
      [ $rc -ne 0 ] || [ "$runs" -gt "$kills" ] || full=$(( full * 3 / 4 + 1 ))
      [ $rc -ne 0 ] || break
      if [ $rc -eq 137 ]; then
        hits=$((hits + 1)) points="$points ${ms}ms"
        continue
      fi
      # Killed once it had completed: the journal goes only when the
      # destination is complete and closed, so the rerun finds nothing
      # to resume and refuses to overwrite the result.
      [ ! -e "$T/j" ] && grep -q 'already exists' "$T/err" && break
      cat "$T/err" >&2
      fail "$2 round $round: the rerun failed"
    done
    [ ! -e "$T/j" ] || fail "$2 round $round: the journal is left"
    "$VDIMOTION" compare -q "$dst" "$T/s.raw" \
      || fail "$2 round $round (killed at$points): the copy differs"
    qemu-img compare -q "$T/s.raw" "$dst" \
      || fail "$2 round $round (killed at$points): qemu-img compare differs"
    case $2 in
    *.qcow2)
      qemu-img check -q "$dst" > "$T/check" 2>&1 || {
        head -5 "$T/check" >&2
        fail "$2 round $round (killed at$points): qemu-img check: $(tail -1 "$T/check")"
      } ;;
    esac
    echo "$2 round $round: killed at${points:- no point (it had finished)}, done after $runs runs"
  done
  echo "$2: $hits kills in $round rounds, every result identical and clean"
}

sweep "$T/s.vhd" d.qcow2
sweep "$T/s.qcow2" d2.qcow2
sweep "$T/s.vhd" d.vhd
echo PASS
