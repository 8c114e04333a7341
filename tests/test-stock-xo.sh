#!/bin/sh
# Xen Orchestra's client (the npm package xen-api, unchanged) against two
# vdimotiond over HTTPS: connect, its object cache following events (a VM
# made after connect, its power state), putResource/getResource with
# their default task, callAsync('VM.migrate_send') resolving with the new
# VM's ref (tests/stock-xo.mjs).  scripts/install-deps installs Node.js
# and the package into tests/node/node_modules; XEN_API_NODE_MODULES
# names another node_modules folder holding xen-api.
. "$srcdir/functions.sh"
. "$srcdir/xapi-functions.sh"
command -v node >/dev/null 2>&1 \
  || skip "Node.js (node) is not installed (scripts/install-deps installs it)"
modules=${XEN_API_NODE_MODULES:-$top_srcdir/tests/node/node_modules}
[ -f "$modules/xen-api/index.mjs" ] \
  || skip "the npm package xen-api is not in $modules (scripts/install-deps installs it)"
requires nbdkit
requires_vm_disks

tls_setup
start_peer $tls
# vdimotion-mm-none: a VM without a guest, its disk moves alone.
start_vdimotiond $tls \
  --memory-migrator "$top_builddir/memory-migrators/vdimotion-mm-none"
node "$srcdir/stock-xo.mjs" "$modules" "$https_url" "$peer_https_url" \
  || fail "Xen Orchestra's client"
stop_vdimotiond
stop_peer
