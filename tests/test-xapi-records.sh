#!/bin/sh
# Whole records: every record of pool, host, SR, VDI, VBD, VM, network
# and task has every field of xapi's datamodel, of xapi's type
# (tests/xapi-fields.json); the pool of one and its durable settings;
# get_all_records_where; system.listMethods; VM.migrate_send and
# VM.assert_can_migrate with every arity xapi accepts.
. "$srcdir/functions.sh"
. "$srcdir/xapi-functions.sh"

# A running VM when this build can serve disks, else halted ones only.
run_vm=0
[ -f "$modules_dir/sr-drivers/.libs/nbdkit-vdi-plugin.so" ] \
  && command -v nbdkit >/dev/null && { uses_nbdkit_module; run_vm=1; }

start_vdimotiond
PYTHONPATH=$srcdir python3 "$srcdir/xapi-records.py" "$url" \
  "$srcdir/xapi-fields.json" "$run_vm"

# The pool keeps its uuid (in the state dir, as the host's), its name,
# other_config and default SR across a restart.
pool_uuid=$(cat "$T/state/pool-uuid")
cat > "$T/pool.py" <<'PY'
import sys, xmlrpc.client
x = xmlrpc.client.ServerProxy(sys.argv[1])
s = x.session.login_with_password("root", "secret")["Value"]
p = x.pool.get_all(s)["Value"][0]
r = x.pool.get_record(s, p)["Value"]
print(p, r["name_label"], r["name_description"], r["default_SR"],
      sorted(r["other_config"].items()))
PY
python3 "$T/pool.py" "$url" > "$T/before"
stop_vdimotiond
start_vdimotiond
[ "$(cat "$T/state/pool-uuid")" = "$pool_uuid" ] || fail "pool uuid changed"
python3 "$T/pool.py" "$url" > "$T/after"
cat "$T/before"
cmp "$T/before" "$T/after" || fail "the pool's settings did not survive"
grep -q "OpaqueRef:$pool_uuid the pool of one" "$T/after" \
  || fail "unexpected pool: $(cat "$T/after")"
stop_vdimotiond
