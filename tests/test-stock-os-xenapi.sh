#!/bin/sh
# OpenStack's os_xenapi (Debian's python3-os-xenapi, as nova uses it)
# against two vdimotiond: XenAPISession logs in over HTTP and HTTPS, lists
# VMs and SRs, streams an image in and out with its task-based VHD
# import and export, and moves a running VM to the other daemon with
# VM.migrate_send (tests/stock-os-xenapi.py).
#
# os_xenapi resolves the URL's "host:port" with gethostbyname before any
# call, so a URL with a port fails in os_xenapi itself: the daemons
# listen on ports 80 and 443 (127.0.0.1 and 127.0.0.2), inside a network
# namespace of the test's own so that nothing else on the machine is in
# the way.  The test is skipped where namespaces cannot be made.
. "$srcdir/functions.sh"
. "$srcdir/xapi-functions.sh"
# Debian's package is importable by Debian's python only (the python3 on
# PATH may be another build).
py=/usr/bin/python3
[ -x "$py" ] && "$py" -c 'import os_xenapi.client.session' 2>/dev/null \
  || skip "os_xenapi is not installed (Debian's python3-os-xenapi; scripts/install-deps installs it)"
requires ip
requires fio
requires qemu-img
requires nbdkit
requires_vm_disks
requires openssl

ns=vdm-osx-$$
ip netns add "$ns" 2>/dev/null \
  || skip "cannot create network namespaces here (the daemons need ports 80 and 443 of their own)"
netns_del () { ip netns del "$ns" 2>/dev/null || :; }
cleanup_fn netns_del
ip -n "$ns" link set lo up

# One certificate for both daemons' addresses: os_xenapi checks it
# against the CA file in SSL_CERT_FILE.
openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=localhost \
  -addext subjectAltName=IP:127.0.0.1,IP:127.0.0.2 -days 1 \
  -keyout "$T/key.pem" -out "$T/cert.pem" 2> "$T/openssl.log" \
  || { cat "$T/openssl.log" >&2; fail "openssl req"; }
if [ -n "${ASAN_OPTIONS-}" ]; then # as tls_setup (xapi-functions.sh)
  ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=0"
  export ASAN_OPTIONS
fi
tls="--tls-cert $T/cert.pem --tls-key $T/key.pem"

vdm_netns=$ns
start_peer --listen 127.0.0.2:80 --listen-https 127.0.0.2:443 $tls
# vdimotion-mm-none: no guest, only the disks move; fio has stopped
# writing before the migration starts.
start_vdimotiond --listen 127.0.0.1:80 --listen-https 127.0.0.1:443 $tls \
  --memory-migrator "$top_builddir/memory-migrators/vdimotion-mm-none"

SSL_CERT_FILE=$T/cert.pem PYTHONPATH=$srcdir \
  ip netns exec "$ns" "$py" "$srcdir/stock-os-xenapi.py" \
  http://127.0.0.1 https://127.0.0.1 https://127.0.0.2 "$T" \
  || fail "os_xenapi"
stop_vdimotiond
stop_peer
