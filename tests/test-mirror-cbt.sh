#!/bin/sh
# The mirror filter's changed-block tracking (cbt-log=): every guest
# write, zero and trim marks exactly its 64 KiB blocks before it is
# acknowledged; the log is "in use" while served and consistent after a
# clean stop; after nbdkit is killed (kill -9) while the guest writes,
# the next open resets it (every block, a new generation, "not closed
# cleanly"); a log that is not one, or of another size, stops nbdkit from
# starting with a message naming the file.  CBT turned on while the disk
# is served tracks every request after cbt-open (never one before it:
# the filter does not look for a log by itself); turned off and on again
# while served, the filter goes on marking the same file, counting
# afresh.  cbt-open and cbt-close: every write marked exactly, from the
# reply on, with writes in flight around it; a cbt-open of another file
# switches; after cbt-close nothing is marked and the log is let go;
# bad commands and logs are refused with a message.
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
qio -c 'write -P 0x69 2560k 4k' # not marked: cbt-open did not come yet
mctl cbt-open > /dev/null
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

# cbt-open and cbt-close exactly: the reply names the log marked (null
# after cbt-close); a cbt-open of the log marked already changes
# nothing; after cbt-close nothing is marked, the flag is set and the
# lock dropped (a disable removes the file).
log=$T/ctl.cbtlog
serve_mirrored disk "$T/disk.raw" cbt-log="$log"
"$CBTLOG" enable "$log" $SZ
qio -c 'write -P 0x70 1M 4k'
[ "$(field nblocks)" = 0 ] || fail "marked before cbt-open: $(field blocks)"
mctl --json cbt-open > "$T/reply"
[ "$(jget cbt_log < "$T/reply")" = "$log" ] || fail "cbt-open: $(cat "$T/reply")"
[ "$(field consistent)" = 0 ] || fail "a log taken by cbt-open is not in use"
qio -c 'write -P 0x71 2M 4k'
qio -c 'write -z 4M 128k'
qio -c 'discard 8M 64k'
mctl cbt-open --cbt-log "$log" > /dev/null
qio -c 'write -P 0x72 9M 4k'
[ "$(field blocks)" = 32,64,65,128,144 ] \
  || fail "after cbt-open: marked $(field blocks), want 32,64,65,128,144"
mctl --json cbt-close > "$T/reply"
[ "$(jget cbt_log < "$T/reply")" = None ] || fail "cbt-close: $(cat "$T/reply")"
qio -c 'write -P 0x73 10M 4k'
[ "$(field blocks)" = 32,64,65,128,144 ] \
  || fail "marked after cbt-close: $(field blocks)"
[ "$(field consistent)" = 1 ] || fail "cbt-close did not let go cleanly"
mctl cbt-close > /dev/null # nothing to do
"$CBTLOG" disable "$log"
[ ! -e "$log" ] || fail "the log is still held after cbt-close"
echo "ok: cbt-open marks every write from its reply on, cbt-close none"

# Refused, with a message, and the filter goes on unmarked: no such log,
# not a log, a log of a disk of another size, a relative path, unknown
# words.
mctl_refused () { expect_exit 1 "$VDIMOTION" mirror --control "$CTL" "$@"; }
mctl_refused cbt-open --cbt-log "$T/missing.cbtlog"
grep -q "cbt-open: cbt log $T/missing.cbtlog: opening: No such file" "$T/err" \
  || fail "missing log: $(cat "$T/err")"
mctl_refused cbt-open --cbt-log "$T/small.cbtlog"
grep -q "cbt-open: .*small.cbtlog.*8388608-byte disk" "$T/err" \
  || fail "log of another size: $(cat "$T/err")"
mctl_refused cbt-open --cbt-log "$T/junk.cbtlog"
grep -q "cbt-open: .*junk.cbtlog.*shorter than a header" "$T/err" \
  || fail "not a log: $(cat "$T/err")"
expect_exit 2 "$VDIMOTION" mirror --control "$CTL" cbt-close --cbt-log "$T/x"
grep -q "cbt-log belongs to cbt-open" "$T/err" || fail "CLI: $(cat "$T/err")"
# The lines as they come on the socket, one reply line each.
python3 - "$CTL" > "$T/replies" <<'EOF'
import socket, sys
c = socket.socket(socket.AF_UNIX)
c.connect(sys.argv[1])
f = c.makefile("rw")
for line in ("cbt-open log=relative.cbtlog", "cbt-close now=1", "cbt-opn",
             "cbt-open log"):
    f.write(line + "\n")
    f.flush()
    print(f.readline().strip())
EOF
cat > "$T/want" <<'EOF'
{"ok":false,"error":"cbt-open: log=PATH must be an absolute path, got \"relative.cbtlog\""}
{"ok":false,"error":"cbt-close: unknown parameter \"now\""}
{"ok":false,"error":"unknown command \"cbt-opn\""}
{"ok":false,"error":"cbt-open: expected KEY=VALUE, got \"log\""}
EOF
diff -u "$T/want" "$T/replies" || fail "bad commands: replies differ"
qio -c 'write -P 0x74 11M 4k'
qemu-io -f raw -c 'read -P 0x74 11M 4k' "$T/disk.raw" | grep -q 'read 4096' \
  || fail "the disk does not read the write made after the refusals"
mstop disk
echo "ok: bad cbt-open and cbt-close are refused with a message"

# Writes in flight around the command.  Four clients write 4 KiB at the
# start of their blocks without a pause (cycling through 8 blocks each,
# each write's bytes its own) while cbt-open or cbt-close is sent, then
# write 4 more blocks each once they have seen the reply; one block was
# written before the command was sent.  cbt-open: every block written by
# a request sent after the reply is marked, the block written before the
# command is not, and a block the writes in flight left unmarked was
# written for good before the reply came (the disk, read at the reply,
# holds its last write): a request the filter took before the switch is
# done before the reply, a later one is marked.  (Not when the client
# saw its reply: that may come a little after ours.)  cbt-close: the
# block written before it is marked, no block first written by a
# request sent after the reply.  A cbt-open of another log while one is
# taken switches the same way.
race ()
{
  PYTHONPATH=$srcdir /usr/bin/python3 - "$T/disk.sock" "$CTL" "$T/disk.raw" \
    "$@" <<'EOF'
import os, socket, struct, sys, threading, time
import nbd
import cbtlog

sock, ctl, image, log, cmd, base = sys.argv[1:6] + [int(sys.argv[6])]
B = 65536
replied = threading.Event()
writes = []  # (block, sent, acknowledged)
last = {}  # block -> the bytes of its last write
lock = threading.Lock()


def connect():
    h = nbd.NBD()
    h.connect_uri("nbd+unix:///?socket=" + sock)
    return h


def write(h, block, k, seq):
    data = struct.pack("<II", k, seq) * 512
    t0 = time.monotonic()
    h.pwrite(data, block * B)
    with lock:
        writes.append((block, t0, time.monotonic()))
        last[block] = data


def writer(k):
    h = connect()
    before = [base + k * 8 + i for i in range(8)]
    seq = 0
    while not replied.is_set():
        write(h, before[seq % 8], k, seq)
        seq += 1
    for block in range(base + 32 + k * 4, base + 36 + k * 4):
        write(h, block, k, seq)
        seq += 1
    h.shutdown()


pre = base + 48
h = connect()
write(h, pre, 9, 0)
h.shutdown()
threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
for t in threads:
    t.start()
time.sleep(0.05)
c = socket.socket(socket.AF_UNIX)
c.connect(ctl)
sent = time.monotonic()
c.sendall((cmd + "\n").encode())
reply = c.makefile().readline()
got = time.monotonic()
fd = os.open(image, os.O_RDONLY)
at_reply = {b: os.pread(fd, 4096, b * B) for b in range(base, base + 32)}
os.close(fd)
replied.set()
for t in threads:
    t.join()
assert '"ok":true' in reply, reply
field = cbtlog.read(log)["blocks"]
marked = set(int(b) for b in field.split(",") if b)
first = {}
for b, t0, _ in writes:
    first[b] = min(first.get(b, t0), t0)
late = set(b for b, t0 in first.items() if t0 > got)
if cmd.startswith("cbt-open"):
    bad = sorted(set(b for b, t0, _ in writes if t0 > got) - marked)
    assert not bad, "sent after the reply, not marked: %s" % bad
    assert pre not in marked, "marked before cbt-open was sent: %d" % pre
    bad = sorted(b for b in at_reply if b not in marked
                 and at_reply[b] != last[b])
    assert not bad, "not marked, yet written after the reply: %s" % bad
else:
    bad = sorted(late & marked)
    assert not bad, "first written after cbt-close's reply, marked: %s" % bad
    assert pre in marked, "written before cbt-close, not marked: %d" % pre
print("%s: %d writes, %d in flight at the command, %d blocks marked"
      % (cmd.split()[0], len(writes),
         sum(1 for _, t0, t1 in writes if t0 < sent and t1 > sent),
         len(marked)))
EOF
}
if /usr/bin/python3 -c 'import nbd' 2>/dev/null; then
  serve_mirrored disk "$T/disk.raw" cbt-log="$T/race1.cbtlog"
  "$CBTLOG" enable "$T/race1.cbtlog" $SZ
  race "$T/race1.cbtlog" cbt-open 0 || fail "cbt-open with writes in flight"
  "$CBTLOG" enable "$T/race2.cbtlog" $SZ
  race "$T/race2.cbtlog" "cbt-open log=$T/race2.cbtlog" 64 \
    || fail "cbt-open of another log with writes in flight"
  log=$T/race1.cbtlog
  [ "$(field consistent)" = 1 ] || fail "the log switched from was not let go"
  "$CBTLOG" enable "$T/race3.cbtlog" $SZ
  mctl cbt-open --cbt-log "$T/race3.cbtlog" > /dev/null
  race "$T/race3.cbtlog" cbt-close 128 || fail "cbt-close with writes in flight"
  mstop disk
  echo "ok: writes in flight around cbt-open and cbt-close"
else
  echo "skipped: writes in flight (python3-libnbd is not installed)"
fi
