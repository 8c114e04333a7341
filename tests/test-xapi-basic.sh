#!/bin/sh
# vdimotiond's XenAPI face: log in, list and read host, SR and VDI (as
# "host" and as "Host"), VDI.create in each format, VDI.destroy, SR.scan.
. "$srcdir/functions.sh"
. "$srcdir/xapi-functions.sh"
requires qemu-img

start_vdimotiond
python3 "$srcdir/xapi-basic.py" "$url" "$T/sr1"

# The host keeps its uuid across restarts (kept in the state dir).
uuid1=$(cat "$T/state/host-uuid")
stop_vdimotiond
start_vdimotiond
[ "$(cat "$T/state/host-uuid")" = "$uuid1" ] || fail "host uuid changed"
stop_vdimotiond

# From a config file: its SRs add to the --sr ones, flags override it
# (--listen 127.0.0.1:0 wins over its port 1).
cat > "$T/vdimotiond.conf" <<EOF
# test configuration
[daemon]
listen = 127.0.0.1:1
name-label = conf-host
max-request-size = 2097152

[sr:conf]
path = $T/sr3
EOF
start_vdimotiond --config "$T/vdimotiond.conf"
python3 - "$url" <<'EOF'
import sys, xmlrpc.client
x = xmlrpc.client.ServerProxy(sys.argv[1])
s = x.session.login_with_password("root", "secret")["Value"]
names = {r["name_label"] for r in x.SR.get_all_records(s)["Value"].values()}
assert names == {"sr1", "sr2", "conf"}, names
h = x.host.get_all(s)["Value"][0]
assert x.host.get_name_label(s, h)["Value"] == "conf-host"
EOF
[ -f "$T/sr3/sr.db" ] || fail "SR of the config file not created"
stop_vdimotiond

# A broken config file is an error at startup, naming the file.
printf '[daemon\n' > "$T/bad.conf"
expect_exit 1 "$VDIMOTIOND" --foreground --config "$T/bad.conf" \
  --state-dir "$T/state"
grep -q 'bad.conf' "$T/err" || fail "error does not name the file"
expect_exit 2 "$VDIMOTIOND" --no-such-flag
