#!/bin/sh
# vdimotion-mm-qemu moves a QEMU VM (paused and running) to a destination
# QEMU on the destination's disk socket, and back again; a destination that
# cannot open its disk, a SIGTERM mid-migration and a timeout each leave
# the source QEMU running and answering QMP, with no destination QEMU left.
. "$srcdir/functions.sh"
. "$srcdir/copy-sources.sh"
. "$srcdir/mm-functions.sh"
requires qemu-system-x86_64
requires nbdkit

# The disk: A is the source's, B its mirrored copy (same bytes).
truncate -s 4M "$T/a.img"
write_pattern "$T/a.img" 7 0 1048576
cp "$T/a.img" "$T/b.img"
start_nbdkit src file "$T/a.img"
start_nbdkit dst file "$T/b.img"
SRC=$T/src.sock DST=$T/dst.sock

# Every QEMU of this test (those the migrator starts included) is found by
# its command line, which names $T, and stopped at exit.
qemus_of_test ()
{
  pgrep -d ' ' -f "^[^ ]*qemu-system-x86_64 .*$T/" || :
}
kill_qemus () { for p in $(qemus_of_test); do kill -9 "$p"; done; :; }
cleanup_fn kill_qemus

# start_vm NAME [QEMU-ARGS...]: a source VM on disk A, QMP at $T/NAME.qmp.
start_vm ()
{
  name=$1; shift
  qemu-system-x86_64 -nodefaults -display none -m 64 \
    -machine pc,accel=tcg -cpu qemu64 \
    -drive "file=nbd+unix:///?socket=$SRC,format=raw,if=virtio" \
    -qmp "unix:$T/$name.qmp,server=on,wait=off" \
    -pidfile "$T/$name.qemu-pid" "$@" > "$T/$name.qemu.log" 2>&1 &
  vm_pid=$!
  # Seconds on a loaded machine (TCG); at once if QEMU exits.
  wait_for 120 eval '[ -S "$T/$name.qmp" ] || gone "$vm_pid"' \
    && [ -S "$T/$name.qmp" ] && return 0
  cat "$T/$name.qemu.log" >&2
  fail "source QEMU $name did not start"
}
# (sed, not python: these run often and python starts slowly on a busy
# machine.)
status_of () { qmp "$1" query-status | sed -n 's/.*"status": "\([^"]*\)".*/\1/p'; }
# The NBD URIs the VM's drives read from.
drive_socket () { qmp "$1" query-block | grep -o 'nbd+unix:[^"]*'; }
result_member () { sed -n "s/^result .*\"$2\":\"\([^\"]*\)\".*/\1/p" "$1"; }

# moved NAME OUT: the checks every successful move shares.
moved ()
{
  grep -q '^progress 1.000$' "$2" || fail "$1: no final progress"
  [ "$(grep -c '^result ' "$2")" -eq 1 ] || fail "$1: not one result line"
  new_qmp=$(result_member "$2" qmp-socket)
  new_pid=$(result_member "$2" qemu-pid)
  kill -0 "$new_pid" || fail "$1: destination QEMU $new_pid not running"
  gone "$vm_pid" || fail "$1: source QEMU $vm_pid still there"
  wait "$vm_pid" 2>/dev/null || :
}

# 1. A paused VM (-S, never started) moves and stays paused.
start_vm paused -S
describe "$T/run" "$T/paused.qmp" "$SRC" "$DST" > "$T/d1.json"
"$MM_QEMU" < "$T/d1.json" > "$T/out1" || { cat "$T/out1"; fail "paused move failed"; }
cat "$T/out1"
moved paused "$T/out1"
case $(status_of "$new_qmp") in
  prelaunch|paused) ;;
  *) fail "paused VM: destination is $(status_of "$new_qmp")" ;;
esac
drive_socket "$new_qmp" | grep -qF "socket=$DST" || fail "paused VM: drive not on $DST: $(drive_socket "$new_qmp")"
# Its -pidfile moved to the run dir, with the destination's pid.
[ "$(cat "$T/run/"*.pid)" = "$new_pid" ] || fail "pidfile not the destination's"
qmp "$new_qmp" quit > /dev/null

# 2. A running VM moves and runs on the destination, then moves back to
# disk A (the destination QEMU, started with -incoming defer, moves on).
start_vm running
qmp "$T/running.qmp" cont > /dev/null
[ "$(status_of "$T/running.qmp")" = running ] || fail "source not running"
describe "$T/run2" "$T/running.qmp" "$SRC" "$DST" > "$T/d2.json"
start=$(date +%s.%N)
"$MM_QEMU" < "$T/d2.json" > "$T/out2" || { cat "$T/out2"; fail "running move failed"; }
echo "running 64 MiB VM moved in $(echo "$(date +%s.%N) - $start" | bc 2>/dev/null || echo '?') s"
cat "$T/out2"
moved running "$T/out2"
[ "$(status_of "$new_qmp")" = running ] || fail "running VM: destination is $(status_of "$new_qmp")"
drive_socket "$new_qmp" | grep -qF "socket=$DST" || fail "running VM: drive not on $DST"
vm_pid=$new_pid
describe "$T/run3" "$new_qmp" "$DST" "$SRC" > "$T/d3.json"
"$MM_QEMU" < "$T/d3.json" > "$T/out3" || { cat "$T/out3"; fail "move back failed"; }
moved back "$T/out3"
[ "$(status_of "$new_qmp")" = running ] || fail "moved back: not running"
drive_socket "$new_qmp" | grep -qF "socket=$SRC" || fail "moved back: drive not on $SRC"
qmp "$new_qmp" quit > /dev/null
wait_for 120 gone "$new_pid" || fail "moved back: the QEMU told to quit runs on"

# untouched NAME: after a failed move, the source still runs and answers,
# and no destination QEMU is left.
untouched ()
{
  [ "$(status_of "$T/$1.qmp")" = running ] || fail "$1: source is $(status_of "$T/$1.qmp")"
  [ "$(qemus_of_test)" = "$vm_pid" ] || fail "$1: QEMUs left: $(qemus_of_test)"
  ! grep -q '^result ' "$T/out" || fail "$1: a result line after a failure"
}

# 3. The destination cannot open its disk: the move fails, naming why.
start_vm src3
qmp "$T/src3.qmp" cont > /dev/null
describe "$T/run4" "$T/src3.qmp" "$SRC" "$T/missing.sock" > "$T/d4.json"
expect_exit 1 "$MM_QEMU" < "$T/d4.json" > "$T/out"
cat "$T/err" >&2
tail -n 1 "$T/err" | grep -q "destination QEMU exited.*missing.sock" \
  || fail "no reason naming the missing socket"
untouched src3

# 4. SIGTERM in mid-migration (slowed to 2 kB/s so it lasts): undone.
describe "$T/run5" "$T/src3.qmp" "$SRC" "$DST" true '{"mm-max-bandwidth": "2000"}' > "$T/d5.json"
"$MM_QEMU" < "$T/d5.json" > "$T/out" 2> "$T/err" &
mm=$!
wait_for 120 grep -qs '^message migrating to' "$T/out" \
  || fail "migration did not start"
sleep 0.3
kill -TERM "$mm"
rc=0; wait "$mm" || rc=$?
cat "$T/out" "$T/err"
[ "$rc" -ne 0 ] || fail "cancelled move exited 0"
tail -n 1 "$T/err" | grep -q cancelled || fail "no 'cancelled' reason"
untouched src3

# 5. A timeout (mm-timeout) in mid-migration: undone.
describe "$T/run6" "$T/src3.qmp" "$SRC" "$DST" true \
  '{"mm-max-bandwidth": "2000", "mm-timeout": "2"}' > "$T/d6.json"
expect_exit 1 "$MM_QEMU" < "$T/d6.json" > "$T/out"
tail -n 1 "$T/err" | grep -q 'timed out after 2 s' || fail "no timeout reason: $(cat "$T/err")"
untouched src3

# 6. A disk whose source socket the VM does not use: refused before any
# QEMU starts (the destination would keep writing to the source disk).
describe "$T/run7" "$T/src3.qmp" "$T/other.sock" "$DST" > "$T/d7.json"
expect_exit 1 "$MM_QEMU" < "$T/d7.json" > "$T/out"
tail -n 1 "$T/err" | grep -q "source socket $T/other.sock is not on the source QEMU's command line" \
  || fail "no reason naming the unused socket: $(cat "$T/err")"
untouched src3

# 7. No qmp-socket in other_config: refused, pointing to vdimotion-mm-none.
describe "$T/run8" "$T/src3.qmp" "$SRC" "$DST" | sed 's/"qmp-socket"/"x"/' > "$T/d8.json"
expect_exit 1 "$MM_QEMU" < "$T/d8.json" > "$T/out"
grep -q 'vm.other_config.qmp-socket: missing' "$T/err" || fail "qmp-socket: $(cat "$T/err")"
