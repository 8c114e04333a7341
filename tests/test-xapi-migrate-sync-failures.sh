#!/bin/sh
# A live migration that fails while its disk is still syncing (the task's
# "mirror" step): cancelled, and the destination daemon killed.  Each
# leaves the VM running and writable on the source with its data intact,
# the source's mirror aborted and a task error that names the step; the
# destination keeps no VDI, file or nbdkit of the migration (the killed
# daemon's leftovers go when it starts again).
#
# The two hosts are network namespaces of our own joined by a veth pair,
# and the link to the destination is held to a rate (tc tbf) that makes
# the sync last several seconds however fast the machine, so the test can
# watch it in progress before it strikes.  Skipped where namespaces cannot
# be made.
. "$srcdir/functions.sh"
. "$srcdir/xapi-functions.sh"
. "$srcdir/netns-functions.sh"
requires fio
requires nbdkit
requires_vm_disks

netns_pair
# The guest's data crosses the link from the source (ns_a) to the
# destination: 48 Mbit/s, so the disk's 64 MiB take about 11 s.
ip netns exec "$ns_a" tc qdisc add dev "$veth_a" root tbf rate 48mbit \
  burst 64kb latency 100ms || skip "tc tbf is not available"

vdm_netns=$ns_b
start_peer --listen 192.0.2.2:0
vdm_netns=$ns_a
# vdimotion-mm-none: if the sync ever ended, the handover would wait for
# a file nobody writes, and the test would see the step it failed in.
start_vdimotiond \
  --memory-migrator "$top_builddir/memory-migrators/vdimotion-mm-none"

run_py ()  # run_py STEP [ARGS...]: the Python side, in the source's namespace
{
  step=$1; shift
  ip netns exec "$ns_a" python3 "$srcdir/xapi-migrate-sync-failures.py" \
    "$step" "$url" "$peer_url" "$T" "$@"
}

run_py cancel || fail "cancel during the sync"
run_py kill "$peer_pid" || fail "destination killed during the sync"
wait "$peer_pid" 2>/dev/null || :
vdm_netns=$ns_b
start_peer --listen 192.0.2.2:0
run_py restarted || fail "the destination's restart after its kill"

stop_peer
stop_vdimotiond
