#!/bin/sh
# Names are any valid UTF-8: emoji and CJK labels round-trip through the
# XenAPI face; files dropped into an SR with such names are adopted, and
# files whose names are not valid UTF-8 (or hold control characters) are
# skipped with a log line.  The daemon stays up before and after a
# kill -9 and restart, and every listing works, also with a record that
# sr.db kept from before these checks.
. "$srcdir/functions.sh"
. "$srcdir/xapi-functions.sh"
requires qemu-img

py () { PYTHONPATH=$srcdir python3 "$srcdir/xapi-odd-names.py" "$url" "$T/sr1" "$@"; }
start_vdimotiond
py before || { cat "$T/vdimotiond.log"; fail "odd names"; }
# The vdimotion command reads such names too.
VDIMOTION_PASSWORD=secret "$VDIMOTION" --server "$url" vdi list > "$T/list"
grep -q "$(printf 'disk-\360\237\230\200')" "$T/list" || { cat "$T/list"; fail "vdi list: no emoji"; }
grep -q 'not adopting "bad-' "$T/vdimotiond.log" || fail "no log line for a skipped name"
kill -0 "$vdimotiond_pid" || fail "the daemon died"
kill -9 "$vdimotiond_pid"
wait "$vdimotiond_pid" 2>/dev/null || :
vdimotiond_pid=
start_vdimotiond
py after || { cat "$T/vdimotiond.log"; fail "odd names after a restart"; }
stop_vdimotiond

# A record from before names were checked, put straight into sr.db.
bad=$(printf 'legacy-\377\376.raw')
qemu-img create -q -f raw "$T/sr1/$bad" 1M
python3 - "$T/sr1/sr.db" "$bad" <<'PY'
import os, sqlite3, sys, time
db = sqlite3.connect(sys.argv[1])
db.execute("INSERT INTO vdi (uuid, location, name_label, format, virtual_size,"
           " created) VALUES (?, ?, ?, 'qcow2', 1048576, ?)",
           ("0badc0de-0000-4000-8000-000000000001", os.fsencode(sys.argv[2]),
            b"old \xff\xfe label \x01", int(time.time())))
db.commit()
PY
start_vdimotiond
py legacy || { cat "$T/vdimotiond.log"; fail "a legacy record"; }
stop_vdimotiond
