#!/bin/bash
# kill -9 a copy at random points; rerunning the same command with the same
# journal finishes it without starting over, and the result is identical.
. "$srcdir/functions.sh"
. "$srcdir/copy-sources.sh"
requires qemu-img
requires nbdkit

# A source with 96 MiB of data over 256 MiB.
"$VDIMOTION" create -f raw "$T/s.raw" 256M
for i in 0 1 2 3 4 5; do
  pattern $((i + 40)) $(( 16 << 20 )) | dd of="$T/s.raw" bs=1M seek=$(( i * 40 )) conv=notrunc status=none
done
qemu-img convert -O qcow2 "$T/s.raw" "$T/s.qcow2"

# 1. Local destination, killed at random points of its run until it
# completes.  The points are drawn from the time a whole copy takes here.
t0=$(date +%s%N)
"$VDIMOTION" copy --requests 2 --request-size 64K "$T/s.qcow2" "$T/full.vhd"
full_ms=$(( ($(date +%s%N) - t0) / 1000000 + 1 ))
rm -f "$T/full.vhd"
echo "a whole copy takes $full_ms ms"
RANDOM=$$
for round in 1 2 3 4 5; do
  rm -f "$T/d.vhd" "$T/j"
  tries=0
  while :; do
    tries=$((tries + 1))
    "$VDIMOTION" copy --journal "$T/j" --requests 2 --request-size 64K \
      "$T/s.qcow2" "$T/d.vhd" > /dev/null 2>"$T/err" &
    pid=$!
    # Kill at a random point of (twice) a whole run; after 20 kills the
    # run is left to finish: what is proven is the result after them.
    if [ $tries -le 20 ]; then
      ms=$(( RANDOM % (2 * full_ms) ))
      sleep "$(( ms / 1000 )).$(printf %03d $(( ms % 1000 )))"
      kill -9 $pid 2>/dev/null || :
    fi
    wait $pid && break || :
    # Killed after it finished (under ASan the leak check at exit takes
    # a while): the journal goes last, so none left beside the
    # destination means the copy was done.
    [ -e "$T/j" ] || [ ! -e "$T/d.vhd" ] || break
    [ $tries -le 20 ] || { cat "$T/err"; fail "the unkilled resume failed"; }
  done
  [ ! -e "$T/j" ] || fail "journal left behind after success"
  "$VDIMOTION" compare -q "$T/d.vhd" "$T/s.raw" || fail "round $round: resumed copy differs"
  echo "round $round: done after $tries runs"
done

# 2. A slow NBD destination: kill after the journal has recorded progress;
# the rerun must skip what was done.
truncate -s 256M "$T/nbd.raw"
start_nbdkit dst --filter=delay file "$T/nbd.raw" wdelay=5ms
uri="nbd+unix:///?socket=$T/dst.sock"
"$VDIMOTION" copy --journal "$T/j2" --requests 1 --request-size 64K "$T/s.raw" "$uri" &
pid=$!
# Killed as soon as the journal marks a window done (some 3 s of writes
# at 5 ms each: the copy is far from its end then), however slowly it
# got there.
wait_for 300 eval '[ "$(journal_done "$T/j2")" -ge 1 ] || gone $pid' \
  || fail "no window done in 5 minutes"
kill -9 $pid 2>/dev/null && wait $pid || :
[ -e "$T/j2" ] || fail "killed copy left no journal"
"$VDIMOTION" copy --json --journal "$T/j2" --request-size 1M "$T/s.raw" "$uri" > "$T/json"
stop_nbdkit dst
python3 - "$T/json" <<'PY' || fail "the resumed copy started over"
import json, sys
j = json.load(open(sys.argv[1]))
print("resumed:", j)
assert j["bytes-skipped"] >= 32 << 20, j   # at least one window
assert j["bytes-read"] < 96 << 20, j
PY
cmp -s "$T/nbd.raw" "$T/s.raw" || fail "resumed NBD copy differs"

# 3. A journal of another copy is refused.
"$VDIMOTION" create -f raw "$T/other.raw" 1M
: > "$T/j3"; printf 'VDMJRNL1' > "$T/j3"; truncate -s 8192 "$T/j3"
rm -f "$T/o.raw"; truncate -s 1M "$T/o.raw"
expect_exit 1 "$VDIMOTION" copy --journal "$T/j3" "$T/other.raw" "$T/o.raw"
grep -q 'belongs to another copy' "$T/err" || fail "foreign journal accepted"
echo PASS
