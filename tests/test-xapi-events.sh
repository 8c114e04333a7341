#!/bin/sh
# xapi's event API through vdimotiond's XenAPI face (xapi-events.py):
# event.from with a token (add, mod, del of a VM and a VDI, a task's
# progress), at its timeout, with 50 callers blocked at once;
# register/next, inject, get_current_id, errors.  Then the daemon stops
# (SIGTERM) while callers are blocked in event.from: it exits at once and
# cleanly.
. "$srcdir/functions.sh"
. "$srcdir/xapi-functions.sh"

start_vdimotiond
PYTHONPATH=$srcdir python3 "$srcdir/xapi-events.py" "$url" "$T/sr1" \
  > "$T/out" || { cat "$T/out"; cat "$T/vdimotiond.log"; fail "events"; }
cat "$T/out"

PYTHONPATH=$srcdir python3 "$srcdir/xapi-events.py" waiters "$url" 20 \
  > "$T/waiters" &
waiters_pid=$!
wait_for 120 grep -qs waiting "$T/waiters" || fail "the callers never started"
sleep 1 # the callers are in event.from now
t0=$(date +%s%N)
stop_vdimotiond
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
echo "stopped in $ms ms with 20 callers blocked in event.from"
# At once: well within the callers' 60 s.  Under the sanitizers the
# exit's leak check alone takes seconds on a loaded machine.
limit=5000
[ -z "${VDM_SANITIZED-}" ] || limit=20000
[ "$ms" -lt $limit ] || fail "the daemon took $ms ms to stop"
wait "$waiters_pid" || fail "the callers did not see the daemon go"
