#!/bin/sh
# The vdimotion CLI over HTTPS: a server with a self-signed certificate is
# trusted with --ca-file or VDIMOTION_CA_FILE, and refused without it (the
# error names the URL).
. "$srcdir/functions.sh"
. "$srcdir/xapi-functions.sh"
tls_setup
start_vdimotiond $tls
[ -n "$https_url" ] || fail "no https URL in the log"
VDIMOTION_PASSWORD=secret
export VDIMOTION_PASSWORD

"$VDIMOTION" --server "$https_url" --ca-file "$T/cert.pem" sr list --json \
  > "$T/srs.json"
python3 - "$T/srs.json" <<'PY'
import json, sys
assert sorted(s["name_label"] for s in json.load(open(sys.argv[1]))) == ["sr1", "sr2"]
PY
VDIMOTION_CA_FILE=$T/cert.pem "$VDIMOTION" --server "$https_url" sr list \
  | grep -q ' sr1 ' || fail "VDIMOTION_CA_FILE"

# Not trusted without the CA; a CA file that is not one is named.
expect_exit 1 "$VDIMOTION" --server "$https_url" sr list
grep -q "$https_url" "$T/err" || fail "untrusted: $(cat "$T/err")"
echo junk > "$T/junk.pem"
expect_exit 1 "$VDIMOTION" --server "$https_url" --ca-file "$T/junk.pem" \
  sr list
grep -q "$T/junk.pem" "$T/err" || fail "bad CA file: $(cat "$T/err")"
stop_vdimotiond
echo PASS
