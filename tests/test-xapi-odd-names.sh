#!/bin/sh
# Names are any valid UTF-8: emoji and CJK labels round-trip through the
# XenAPI face; files dropped into an SR with such names are adopted, and
# files whose names are not valid UTF-8 (or hold control characters) are
# skipped with a log line.  The daemon stays up before and after a
# kill -9 and restart, and every listing works.
. "$srcdir/functions.sh"
. "$srcdir/xapi-functions.sh"
requires qemu-img

py () { PYTHONPATH=$srcdir python3 "$srcdir/xapi-odd-names.py" "$url" "$T/sr1" "$@"; }
start_vdimotiond
py before || { cat "$T/vdimotiond.log"; fail "odd names"; }
grep -q 'skipping "bad-' "$T/vdimotiond.log" || fail "no log line for a skipped name"
kill -0 "$vdimotiond_pid" || fail "the daemon died"
kill -9 "$vdimotiond_pid"
wait "$vdimotiond_pid" 2>/dev/null || :
vdimotiond_pid=
start_vdimotiond
py after || { cat "$T/vdimotiond.log"; fail "odd names after a restart"; }
stop_vdimotiond
