#!/bin/sh
# Xen Orchestra's own transports (the npm package xen-api: its JSON-RPC,
# XML-RPC and "auto" transports, its XML and JSON-RPC parsers) log in,
# call, get a XenAPI failure with its code and parameters, and read a
# record's types, against vdimotiond (tests/xapi-xo-transport.mjs).
# Needs Node.js and the package: XEN_API_NODE_MODULES names the
# node_modules folder holding xen-api (scripts/install-deps installs it).
. "$srcdir/functions.sh"
. "$srcdir/xapi-functions.sh"
command -v node >/dev/null 2>&1 || skip "Node.js (node) is not installed"
modules=
for d in ${XEN_API_NODE_MODULES-} "$top_builddir/tests/node_modules" \
         "$top_srcdir/tests/node_modules" /tmp/r14/npmxo/node_modules; do
  [ -f "$d/xen-api/transports/json-rpc.mjs" ] && { modules=$d; break; }
done
[ -n "$modules" ] \
  || skip "the npm package xen-api is not installed (set XEN_API_NODE_MODULES to the node_modules folder holding it)"

start_vdimotiond
TZ=CET-1 node "$srcdir/xapi-xo-transport.mjs" "$modules" "${url%/}"
stop_vdimotiond
