#!/bin/sh
# vdimotiond serves XenAPI over HTTPS with the certificate and key it is
# given (--tls-cert, --tls-key, --listen-https), next to plain HTTP.
. "$srcdir/functions.sh"
. "$srcdir/xapi-functions.sh"
command -v openssl >/dev/null 2>&1 || skip "openssl is not installed: no HTTPS test"

openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=localhost -days 1 \
  -keyout "$T/key.pem" -out "$T/cert.pem" 2> "$T/openssl.log" \
  || { cat "$T/openssl.log" >&2; fail "openssl req"; }

# A key without its certificate is a usage error.
expect_exit 1 "$VDIMOTIOND" --foreground --listen-https 127.0.0.1:0 \
  --tls-key "$T/key.pem" --state-dir "$T/state"
grep -q 'tls-cert' "$T/err" || fail "no word of --tls-cert: $(cat "$T/err")"

# LeakSanitizer's tracer crashes on the TLS worker threads of
# glib-networking/GnuTLS (it reads their thread-local storage); leaks are
# checked by the plain-HTTP tests, ASan and UBSan still check this one.
if [ -n "${ASAN_OPTIONS-}" ]; then
  ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=0"
  export ASAN_OPTIONS
fi
start_vdimotiond --listen-https 127.0.0.1:0 \
  --tls-cert "$T/cert.pem" --tls-key "$T/key.pem"
[ -n "$https_url" ] || fail "no https URL in the log"
python3 "$srcdir/xapi-https.py" "$https_url" "$T/cert.pem"
stop_vdimotiond
