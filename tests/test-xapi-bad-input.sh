#!/bin/sh
# vdimotiond refuses bad input with XenAPI failures or HTTP 4xx and keeps
# serving: wrong password, bad session, unknown method, wrong parameter
# count, malformed XML, a 50 MB body, name labels and uuids with "../".
. "$srcdir/functions.sh"
. "$srcdir/xapi-functions.sh"

# A user with a cheap SHA-512 crypt hash (5000 rounds) for the
# thousand logins of the session limit check; yescrypt's cost would make
# them take a minute.  Any crypt(3) method works in the auth file.
fast_user=
if command -v openssl >/dev/null 2>&1; then
  extra_auth="fast:$(openssl passwd -6 -salt vdmtest1 secret)"
  fast_user=fast
else
  echo "openssl missing: session limit not checked"
fi
start_vdimotiond --max-request-size 1048576
python3 "$srcdir/xapi-bad-input.py" "$url" "$T/sr1" "$vdimotiond_pid" \
  $fast_user
stop_vdimotiond
