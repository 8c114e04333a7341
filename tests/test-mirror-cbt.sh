#!/bin/sh
# The mirror filter's changed-block tracking (cbt-log=): every guest
# write, zero and trim marks exactly its 64 KiB blocks before it is
# acknowledged; the log is "in use" while served and consistent after a
# clean stop; after nbdkit is killed (kill -9) while the guest writes,
# the next open resets it (every block, a new generation, "not closed
# cleanly"); a log that is not one, or of another size, stops nbdkit from
# starting with a message naming the file.  CBT turned on while the disk
# is served tracks every request after it; turned off and on again while
# served, the filter goes on marking the same file, counting afresh.
. "$srcdir/functions.sh"
uses_nbdkit_module
. "$top_srcdir/mirror-filter/test-functions.sh"
requires qemu-io
requires python3

CBTLOG=$top_builddir/tests/cbtlog-tool
log=$T/disk.cbtlog
SZ=$(( 16 << 20 ))
make_empty "$T/disk.raw" raw $SZ
"$CBTLOG" enable "$log" $SZ

# field KEY: KEY of the log as tests/cbtlog.py reads it.
field () { python3 "$srcdir/cbtlog.py" "$log" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
qio () { qemu-io -f raw "$(uri_of disk)" "$@" > /dev/null; }

gen0=$(field generation)
[ "$(field consistent)" = 1 ] && [ "$(field nblocks)" = 0 ] \
  || fail "a new log is not empty and consistent"

serve_mirrored disk "$T/disk.raw" cbt-log="$log"
[ "$(field consistent)" = 0 ] || fail "the flag is set while served"
# One write per kind, each acknowledged before the log is read:
#   4 KiB at 0                  -> block 0
#   70000 bytes at 1 MiB + 100  -> blocks 16, 17
#   zero 64 KiB at 8 MiB        -> block 128
#   trim 128 KiB at 12 MiB - 64K-> blocks 191, 192
#   the last byte               -> block 255
qio -c 'write -P 0x61 0 4k'
qio -c 'write -P 0x62 1048676 70000'
qio -c 'write -z 8M 64k'
qio -c 'discard 12224k 128k'
qio -c 'write -P 0x63 16777215 1'
want=0,16,17,128,191,192,255
[ "$(field blocks)" = "$want" ] \
  || fail "marked $(field blocks), want $want (while served)"
# Bytes compared: the data is on the disk too.
qemu-io -f raw -c 'read -P 0x62 1048676 70000' "$T/disk.raw" | grep -q 'read 70000' \
  || fail "the write did not reach the disk"
echo "ok: writes, zero and trim marked exactly their blocks"

mstop disk
[ "$(field consistent)" = 1 ] || fail "not consistent after a clean stop"
[ "$(field generation)" = "$gen0" ] || fail "a clean stop changed the generation"
[ "$(field blocks)" = "$want" ] || fail "a clean stop changed the bits"
echo "ok: a clean stop sets the flag and keeps generation and bits"

# kill -9 while a guest writes: every write acknowledged before the kill
# is in the log, and the next open resets it with its reason.
serve_mirrored disk "$T/disk.raw" cbt-log="$log"
qio -c 'write -P 0x64 4M 64k'
[ "$(field blocks)" = "0,16,17,64,128,191,192,255" ] \
  || fail "write before the kill not marked: $(field blocks)"
fio --name=w --ioengine=nbd --uri="$(uri_of disk)" --rw=randwrite --bs=4k \
  --size=$SZ --time_based --runtime=30 > /dev/null 2>&1 &
fio_pid=$!
sleep 1
kill -9 "$(cat "$T/disk.pid")"
wait "$fio_pid" || :
rm -f "$T/disk.sock" "$T/disk.pid"
[ "$(field consistent)" = 0 ] || fail "the flag is set after kill -9"
[ "$(field generation)" = "$gen0" ] || fail "generation changed before reopen"
serve_mirrored disk "$T/disk.raw" cbt-log="$log"
gen1=$(field generation)
[ "$gen1" != "$gen0" ] || fail "no new generation after an unclean stop"
[ "$(field reason)" = not_closed_cleanly ] || fail "reason: $(field reason)"
[ "$(field nblocks)" = 256 ] || fail "reset marked $(field nblocks) of 256 blocks"
[ "$(field predecessor)" = - ] || fail "a reset log keeps a predecessor"
[ "$(field reset_time)" -ge "$(( $(date +%s) - 120 ))" ] || fail "reset time"
grep -q "not closed cleanly" "$T/disk.log" || fail "the reset is not logged"
mstop disk
[ "$(field consistent)" = 1 ] || fail "not consistent after the reset and a clean stop"
echo "ok: kill -9 while writing resets the log at the next open, with its reason"

# Bad logs: nbdkit does not start, and says which file.
refused ()
{
  rm -f "$T/bad.sock" "$T/bad.ctl"
  expect_exit 1 nbdkit -U "$T/bad.sock" -f --filter="$FILTER" \
    $(plugin_for "$T/disk.raw") mirror-control="$T/bad.ctl" cbt-log="$1"
}
"$CBTLOG" enable "$T/small.cbtlog" $(( 8 << 20 ))
refused "$T/small.cbtlog"
grep -q "small.cbtlog.*8388608-byte disk" "$T/err" || { cat "$T/err"; fail "size mismatch message"; }
printf 'not a log' > "$T/junk.cbtlog"
refused "$T/junk.cbtlog"
grep -q "junk.cbtlog.*shorter than a header" "$T/err" || { cat "$T/err"; fail "bad log message"; }
echo "ok: bad logs are refused with the file's name"

# Enabled while served: the first request after it is tracked.
log=$T/late.cbtlog
serve_mirrored disk "$T/disk.raw" cbt-log="$log"
qio -c 'write -P 0x65 2M 4k'
[ ! -e "$log" ] || fail "a log appeared by itself"
"$CBTLOG" enable "$log" $SZ
qio -c 'write -P 0x66 3M 4k'
[ "$(field blocks)" = 48 ] || fail "enabled while served: marked $(field blocks), want 48"
[ "$(field consistent)" = 0 ] || fail "a log taken while served is not in use"
# Disabled and enabled again while served: same file, counting afresh.
gen=$(field generation)
"$CBTLOG" disable "$log"
[ -e "$log" ] || fail "disable removed the log under its writer"
qio -c 'write -P 0x67 5M 4k'
"$CBTLOG" enable "$log" $SZ
[ "$(field generation)" != "$gen" ] || fail "enable again kept the generation"
[ "$(field reason)" = enabled ] || fail "reason after enable: $(field reason)"
qio -c 'write -P 0x68 6M 4k'
[ "$(field blocks)" = 96 ] || fail "enabled again while served: marked $(field blocks), want 96"
mstop disk
[ "$(field consistent)" = 1 ] || fail "not consistent after a clean stop"
"$CBTLOG" disable "$log"
[ ! -e "$log" ] || fail "disable of a log nobody holds kept it"
echo "ok: CBT enabled, disabled and enabled again while served"
