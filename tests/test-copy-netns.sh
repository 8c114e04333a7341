#!/bin/bash
# Across a network: two namespaces of our own joined by a veth pair, with
# tc netem making a 20 ms round trip at 1 Gbit/s; nbdkit serves the
# destination in one, vdimotion copies from the other.  Skipped where
# namespaces cannot be made.
. "$srcdir/functions.sh"
. "$srcdir/copy-sources.sh"
. "$srcdir/netns-functions.sh"
requires nbdkit

netns_pair
# netem gives the 20 ms round trip; kernels without it (sch_netem not
# built) still get the 1 Gbit/s rate from tbf, and the test says so.
link="20 ms / 1 Gbit/s"
for x in "$ns_a $veth_a" "$ns_b $veth_b"; do
  set -- $x
  if ! ip netns exec "$1" tc qdisc add dev "$2" root netem delay 10ms rate 1gbit limit 100000 2>/dev/null; then
    ip netns exec "$1" tc qdisc add dev "$2" root tbf rate 1gbit burst 256kb latency 50ms \
      || skip "neither tc netem nor tbf is available"
    link="1 Gbit/s (no netem in this kernel: no added latency)"
  fi
done
export link

"$VDIMOTION" create -f raw "$T/s.raw" 512M
for i in 0 1 2 3; do
  pattern $((i + 7)) $(( 24 << 20 )) | dd of="$T/s.raw" bs=1M seek=$(( i * 100 )) conv=notrunc status=none
done
qemu-img convert -O vpc -o subformat=dynamic,force_size=on "$T/s.raw" "$T/s.vhd"
truncate -s 512M "$T/d.raw"
ip netns exec "$ns_b" nbdkit -f -P "$T/b.pid" -i 192.0.2.2 -p 10809 file "$T/d.raw" &
# nbdkit writes its pid file once it listens.
wait_for 120 test -s "$T/b.pid" || fail "nbdkit in $ns_b did not start"
stop_b () { kill "$(cat "$T/b.pid")" 2>/dev/null; }
cleanup_fn stop_b

ip netns exec "$ns_a" "$VDIMOTION" copy --json --connections 4 "$T/s.vhd" nbd://192.0.2.2:10809/ > "$T/json"
python3 - "$T/json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
rate = j["bytes-written"] * 8 / j["seconds"] / 1e9
import os
print(f"copied {j['bytes-written'] >> 20} MiB of data over a {os.environ['link']} link "
      f"in {j['seconds']:.2f} s: {rate:.2f} Gbit/s ({rate * 100:.0f} % of the link)")
PY
cmp -s "$T/d.raw" "$T/s.raw" || fail "the copy across the link differs"
echo PASS
