#!/bin/sh
# How calls reach vdimotiond and how its replies look: XML-RPC at /, /RPC2
# (Python's xmlrpc.client with a URL without a path) and any path by
# xapi's longest prefix; JSON-RPC 2.0 and 1.0 at /jsonrpc from curl
# (login, a call, a failure: xapi's exact bytes); /json taking both;
# xapi's JSON types; the XML reply's bytes as xapi writes them; the disk
# data handlers with a trailing slash (tests/xapi-transport.py).
. "$srcdir/functions.sh"
. "$srcdir/xapi-functions.sh"
requires curl

start_vdimotiond
base=${url%/}

# jrpc PATH BODY: POST BODY as JSON; the reply in $T/out, headers in $T/h.
jrpc ()
{
  curl -sS -o "$T/out" -D "$T/h" -H 'Content-Type: application/json' \
    --data-binary "$2" "$base$1" || fail "curl $1 $2"
  grep -qix 'content-type: application/json.' "$T/h" \
    || { cat "$T/h" >&2; fail "$2: not application/json"; }
}
# expect_reply REGEX: the reply in $T/out matches (extended, whole).
expect_reply ()
{
  grep -Eqx "$1" "$T/out" || fail "reply $(cat "$T/out") does not match $1"
  echo "ok: $(cat "$T/out")"
}
ref='OpaqueRef:[0-9a-f-]{36}'

# JSON-RPC 2.0: login, a call, a failure.
jrpc /jsonrpc '{"jsonrpc":"2.0","method":"session.login_with_password","params":["root","secret"],"id":1}'
expect_reply "\{\"jsonrpc\":\"2.0\",\"result\":\"$ref\",\"id\":1\}"
s=$(sed 's/.*"result":"\([^"]*\)".*/\1/' "$T/out")
jrpc /jsonrpc '{"jsonrpc":"2.0","method":"SR.get_all","params":["'"$s"'"],"id":"two"}'
expect_reply "\{\"jsonrpc\":\"2.0\",\"result\":\[\"$ref\",\"$ref\"\],\"id\":\"two\"\}"
jrpc /jsonrpc '{"jsonrpc":"2.0","method":"SR.get_all","params":["OpaqueRef:nope"],"id":3}'
expect_reply '\{"jsonrpc":"2.0","error":\{"code":1,"message":"SESSION_INVALID","data":\["OpaqueRef:nope"\]\},"id":3\}'

# JSON-RPC 1.0: the same.
jrpc /jsonrpc '{"method":"session.login_with_password","params":["root","secret"],"id":4}'
expect_reply "\{\"result\":\"$ref\",\"error\":null,\"id\":4\}"
jrpc /jsonrpc '{"method":"SR.get_all","params":["'"$s"'"],"id":5}'
expect_reply "\{\"result\":\[\"$ref\",\"$ref\"\],\"error\":null,\"id\":5\}"
jrpc /jsonrpc '{"method":"SR.get_all","params":["OpaqueRef:nope"],"id":6}'
expect_reply '\{"result":null,"error":\["SESSION_INVALID","OpaqueRef:nope"\],"id":6\}'

# /json takes JSON-RPC too.
jrpc /json '{"jsonrpc":"2.0","method":"SR.get_all","params":["'"$s"'"],"id":7}'
expect_reply "\{\"jsonrpc\":\"2.0\",\"result\":\[\"$ref\",\"$ref\"\],\"id\":7\}"

# Not JSON-RPC: 400.
code=$(curl -sS -o /dev/null -w '%{http_code}' --data-binary '{"id":1' \
  -H 'Content-Type: application/json' "$base/jsonrpc")
[ "$code" = 400 ] || fail "a broken JSON body got $code"

export PYTHONPATH="$srcdir${PYTHONPATH:+:$PYTHONPATH}"
python3 "$srcdir/xapi-transport.py" "$url" "$T/sr1"
stop_vdimotiond
