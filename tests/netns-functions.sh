# Sourced by tests that need a network between two hosts, after
# functions.sh: netns_pair makes two network namespaces of the test's own,
# $ns_a and $ns_b, joined by a veth pair ($veth_a in $ns_a is 192.0.2.1,
# $veth_b in $ns_b is 192.0.2.2; 192.0.2.0/24 is the documentation range,
# so it exists only between these two namespaces).  They go when the test
# exits.  The test is skipped where namespaces or veth pairs cannot be
# made.  Shape the link with tc in the namespaces, e.g.
#   ip netns exec "$ns_a" tc qdisc add dev "$veth_a" root tbf ...
requires ip
requires tc

ns_a=vdm-a-$$ ns_b=vdm-b-$$ veth_a=va-$$ veth_b=vb-$$
netns_del ()
{
  ip netns del "$ns_a" 2>/dev/null || :
  ip netns del "$ns_b" 2>/dev/null || :
}

netns_pair ()
{
  ip netns add "$ns_a" 2>/dev/null || skip "cannot create network namespaces here"
  cleanup_fn netns_del
  ip netns add "$ns_b"
  ip link add "$veth_a" netns "$ns_a" type veth peer name "$veth_b" \
     netns "$ns_b" || skip "cannot create veth pairs here"
  ip -n "$ns_a" addr add 192.0.2.1/24 dev "$veth_a"
  ip -n "$ns_b" addr add 192.0.2.2/24 dev "$veth_b"
  ip -n "$ns_a" link set "$veth_a" up; ip -n "$ns_b" link set "$veth_b" up
  ip -n "$ns_a" link set lo up; ip -n "$ns_b" link set lo up
}
