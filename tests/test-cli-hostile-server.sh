#!/bin/sh
# A hostile or broken server cannot crash the vdimotion command: replies
# are decoded by our own decoder (replicator/xenapi), which refuses what
# made xmlrpc-c's parser crash (<i8>A</i8>), entity bombs, DTDs, deep
# nesting and faults alike, each with a clear error and exit code 1.
. "$srcdir/functions.sh"
requires python3

cat > "$T/server.py" <<'PY'
import http.server, sys
REPLIES = [
    b"<methodResponse><params><param><value><i8>A</i8></value></param>"
    b"</params></methodResponse>",
    b'<!DOCTYPE m [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
    b"<methodResponse><params><param><value>&b;</value></param></params>"
    b"</methodResponse>",
    b"<methodResponse><params><param>" + b"<value><array><data>" * 100000
    + b"</data></array></value>" * 100000 + b"</param></params></methodResponse>",
    b"<methodResponse><fault><value><struct><member><name>faultCode</name>"
    b"<value><int>-32601</int></value></member><member><name>faultString"
    b"</name><value>nope</value></member></struct></value></fault>"
    b"</methodResponse>",
    b"not xml at all",
]
n = int(sys.argv[1])

class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = REPLIES[n]
        self.send_response(200)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass

s = http.server.HTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
PY

for n in 0 1 2 3 4; do
  # The background job truncates the file only once it runs: the last
  # round's port must not be read meanwhile.
  rm -f "$T/port"
  python3 "$T/server.py" $n > "$T/port" &
  srv=$!
  wait_for 120 test -s "$T/port" || fail "reply $n: the server never listened"
  port=$(cat "$T/port")
  echo secret > "$T/pw"
  expect_exit 1 "$VDIMOTION" --server "http://127.0.0.1:$port/" \
    --password-file "$T/pw" sr list
  kill $srv; wait $srv 2>/dev/null || :
  grep -q 'bad XML-RPC reply\|XML-RPC fault -32601: nope' "$T/err" \
    || { cat "$T/err"; fail "reply $n: no clear error"; }
  ! grep -qi 'sanitizer\|runtime error' "$T/err" || { cat "$T/err"; fail "reply $n: sanitizer"; }
  echo "ok: reply $n: $(cat "$T/err")"
done
