#!/bin/sh
# vdimotion-mm-none: a valid description is a move with nothing to move
# (exit 0 with the protocol's lines); a malformed one fails, naming what is
# wrong, before anything is reported as moved.
. "$srcdir/functions.sh"
. "$srcdir/mm-functions.sh"

describe /run/vdm /run/vm.qmp /run/src.sock /run/dst.sock > "$T/ok.json"
"$MM_NONE" < "$T/ok.json" > "$T/out"
printf 'message no hypervisor attached: nothing to move\nprogress 1.000\n' \
  > "$T/want"
diff -u "$T/want" "$T/out" || fail "unexpected output"

# "options" may be left out, other_config may be empty, disks may be none.
python3 - "$T/ok.json" > "$T/min.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
del d["options"]; d["vm"]["other_config"] = {}; d["disks"] = []
print(json.dumps(d))
PY
"$MM_NONE" < "$T/min.json" > /dev/null || fail "minimal description refused"

# bad EDIT WANT: the description edited by the Python statement EDIT must
# fail with exit 1, a last stderr line containing WANT and no "progress".
bad ()
{
  python3 - "$T/ok.json" "$1" > "$T/bad.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
exec(sys.argv[2])
print(json.dumps(d))
PY
  expect_exit 1 "$MM_NONE" < "$T/bad.json" > "$T/out"
  tail -n 1 "$T/err" | grep -qF -- "$2" || {
    cat "$T/err" >&2; fail "edit '$1': no '$2' in the error"; }
  ! grep -q '^progress' "$T/out" || fail "edit '$1': reported progress"
}
bad 'del d["vm"]' 'description: vm: missing'
bad 'del d["vm"]["uuid"]' 'description: vm.uuid: missing'
bad 'd["vm"]["name_label"] = 3' 'vm.name_label: must be a string, not a number'
bad 'd["vm"]["other_config"]["x"] = 1' 'vm.other_config.x: must be a string'
bad 'del d["source"]["url"]' 'description: source.url: missing'
bad 'd["destination"]["run_dir"] = "run"' 'destination.run_dir: must be an absolute path'
bad 'd["disks"] = {}' 'disks: must be an array, not an object'
bad 'del d["disks"][0]["vdi"]' 'description: disks[0].vdi: missing'
bad 'd["disks"][0]["virtual_size"] = "1G"' 'disks[0].virtual_size: must be an integer, not a string'
bad 'd["disks"][0]["virtual_size"] = -1' 'disks[0].virtual_size: must be an integer >= 0'
bad 'd["disks"][0]["destination_socket"] = ""' 'disks[0].destination_socket: must not be empty'
bad 'd["live"] = "yes"' 'live: must be a boolean, not a string'
bad 'd["options"] = []' 'options: must be an object, not an array'
bad 'd = [d]' 'description: must be a JSON object, not an array'

printf '{"vm": ' > "$T/trunc.json"
expect_exit 1 "$MM_NONE" < "$T/trunc.json"
grep -q 'description: not valid JSON' "$T/err" || fail "truncated JSON: $(cat "$T/err")"
expect_exit 1 "$MM_NONE" < /dev/null
grep -q 'description: empty' "$T/err" || fail "empty stdin: $(cat "$T/err")"

# The daemon passes no arguments; anything else is a usage error.
expect_exit 2 "$MM_NONE" --frobnicate < "$T/ok.json"
"$MM_NONE" --help | grep -q 'vdimotion-memory-migrator(7)' || fail "--help"

# options["handover-file"]: the handover waits for the file; a timeout or
# SIGTERM while waiting is "not moved".
edit () { python3 - "$T/ok.json" "$1" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
exec(sys.argv[2])
print(json.dumps(d))
PY
}
edit "d['options'] = {'handover-file': '$T/go', 'mm-timeout': '20'}" > "$T/wait.json"
"$MM_NONE" < "$T/wait.json" > "$T/out" &
mm=$!
sleep 0.5
kill -0 "$mm" || fail "did not wait for the handover file"
touch "$T/go"
wait "$mm" || fail "exit $? after the handover file appeared"
grep -q '^progress 1.000$' "$T/out" || fail "no final progress"
rm -f "$T/go"
edit "d['options'] = {'handover-file': '$T/never', 'mm-timeout': '1'}" > "$T/late.json"
expect_exit 1 "$MM_NONE" < "$T/late.json" > /dev/null
grep -q 'did not appear within 1 s' "$T/err" || fail "timeout: $(cat "$T/err")"
# SIGTERM once it waits (it says so; its handler is in place then),
# with a timeout it cannot reach first however slowly it started.
"$MM_NONE" < "$T/wait.json" > "$T/out" 2> "$T/err" &
mm=$!
wait_for 120 grep -qs '^message waiting for' "$T/out" \
  || fail "SIGTERM: it never waited: $(cat "$T/err")"
kill -TERM "$mm"
rc=0; wait "$mm" || rc=$?
[ "$rc" -eq 1 ] || fail "SIGTERM while waiting: exit $rc"
grep -q 'stopped by signal' "$T/err" || fail "SIGTERM: $(cat "$T/err")"
edit "d['options'] = {'handover-file': 'relative'}" > "$T/rel.json"
expect_exit 1 "$MM_NONE" < "$T/rel.json" > /dev/null
grep -q 'handover-file: must be an absolute path' "$T/err" || fail "relative path"
