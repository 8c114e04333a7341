#!/bin/sh
# The command line keeps its promises: usage errors exit 2, failures exit 1
# with a message naming the file, --help and --version work.
. "$srcdir/functions.sh"

expect_exit 2 "$VDIMOTION"
expect_exit 2 "$VDIMOTION" no-such-command
grep -q 'unknown command "no-such-command"' "$T/err" || fail "no unknown-command message"
"$VDIMOTION" --help | grep -q 'create' || fail "--help lists no commands"
"$VDIMOTION" --version | grep -q '^vdimotion ' || fail "--version"
"$VDIMOTION" info --help | grep -q 'IMAGE' || fail "info --help"

# create: bad format, bad size, missing size, existing file.
expect_exit 2 "$VDIMOTION" create -f vmdk "$T/a" 1M
grep -q 'unknown format "vmdk"' "$T/err" || fail "bad format message"
expect_exit 2 "$VDIMOTION" create -f raw "$T/a" 12Q
grep -q 'invalid size "12Q"' "$T/err" || fail "bad size message"
expect_exit 2 "$VDIMOTION" create -f raw "$T/a"
expect_exit 2 "$VDIMOTION" create -f vhd -o subformat=sparkly "$T/a" 1M
[ ! -e "$T/a" ] || fail "a refused create left a file"
"$VDIMOTION" create -f raw "$T/a" 1M
expect_exit 1 "$VDIMOTION" create -f raw "$T/a" 2M
grep -q "$T/a" "$T/err" || fail "existing-file error does not name the file"
[ "$(stat -c %s "$T/a")" -eq 1048576 ] || fail "existing file was changed"
expect_exit 1 "$VDIMOTION" create -f raw -b "$T/a" "$T/b" 1M
grep -q 'raw images cannot have a parent' "$T/err" || fail "raw parent message"

# Missing files are named.
for cmd in info map; do
  expect_exit 1 "$VDIMOTION" $cmd "$T/missing.vhd"
  grep -q "$T/missing.vhd" "$T/err" || fail "$cmd does not name the missing file"
done
expect_exit 2 "$VDIMOTION" compare "$T/a" "$T/missing.vhd"
grep -q "$T/missing.vhd" "$T/err" || fail "compare does not name the missing file"

# Sizes with suffixes.
for s in 1K:1024 3M:3145728 1G:1073741824 2T:2199023255552 5GiB:5368709120; do
  rm -f "$T/s"
  "$VDIMOTION" create -f raw "$T/s" "${s%%:*}"
  [ "$(stat -c %s "$T/s")" = "${s##*:}" ] || fail "size ${s%%:*}"
done

# info --json is JSON with qemu-img's key names.
"$VDIMOTION" info --json "$T/a" > "$T/info.json"
python3 - "$T/info.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
assert j["format"] == "raw" and j["virtual-size"] == 1048576, j
PY
echo PASS
