#!/bin/sh
# Corrupt VHDs: `vdimotion info` and `vdimotion map` exit 1 with a message
# naming the file and the broken structure, never crash, and never change
# a byte of the file.
. "$srcdir/functions.sh"
requires qemu-img
requires qemu-io
requires python3

MiB=1048576

# vhd_edit FILE WHAT [VALUE]: damage one field of a VHD (python struct).
# WHAT: size (current size, checksum fixed), footer-byte (checksum left
# stale), header-byte, block-size / entries / bat-offset (header checksum
# fixed), bat:N (BAT entry N = VALUE, in sectors).
vhd_edit ()
{
  python3 - "$@" <<'PY'
import struct, sys
path, what = sys.argv[1], sys.argv[2]
val = int(sys.argv[3], 0) if len(sys.argv) > 3 else 0
d = bytearray(open(path, "rb").read())
ft = len(d) - 512
def fix(base, size, off):
    struct.pack_into(">I", d, base + off, 0)
    s = sum(d[base:base + size])
    struct.pack_into(">I", d, base + off, (~s) & 0xffffffff)
hdr = struct.unpack_from(">Q", d, ft + 16)[0]
if what == "size":
    struct.pack_into(">Q", d, ft + 48, val); fix(ft, 512, 64)
elif what == "footer-byte":
    d[ft + 200] ^= 0xff
elif what == "header-byte":
    d[hdr + 900] ^= 0xff
elif what in ("block-size", "entries", "bat-offset"):
    off, fmt = {"block-size": (32, ">I"), "entries": (28, ">I"),
                "bat-offset": (16, ">Q")}[what]
    struct.pack_into(fmt, d, hdr + off, val); fix(hdr, 1024, 36)
elif what.startswith("bat:"):
    bat = struct.unpack_from(">Q", d, hdr + 16)[0]
    struct.pack_into(">I", d, bat + 4 * int(what[4:]), val)
else:
    sys.exit("unknown edit " + what)
open(path, "wb").write(d)
PY
}

# rejected FILE PATTERN: info and map fail cleanly, saying PATTERN and the
# file's name, and the file is untouched.
rejected ()
{
  f=$1 pattern=$2
  sum=$(md5sum < "$f")
  for cmd in info map; do
    expect_exit 1 "$VDIMOTION" $cmd "$f"
    grep -q "$(basename "$f")" "$T/err" || { cat "$T/err"; fail "$cmd $f: no file name"; }
    grep -q "$pattern" "$T/err" || { cat "$T/err"; fail "$cmd $f: no \"$pattern\""; }
    grep -qi 'sanitizer\|runtime error' "$T/err" && { cat "$T/err"; fail "$cmd $f: sanitizer"; }
  done
  [ "$(md5sum < "$f")" = "$sum" ] || fail "$f was modified"
}

# A healthy dynamic image with blocks 0 and 1 allocated.
qemu-img create -q -f vpc -o subformat=dynamic "$T/good.vhd" 8M
qemu-io -f vpc -c 'write -P 7 0 3M' "$T/good.vhd" > /dev/null
"$VDIMOTION" info "$T/good.vhd" > /dev/null
fresh () { cp "$T/good.vhd" "$T/$1.vhd"; echo "$T/$1.vhd"; }

# Opening read-only writes nothing.
sum=$(md5sum < "$T/good.vhd")
"$VDIMOTION" map "$T/good.vhd" > /dev/null
[ "$(md5sum < "$T/good.vhd")" = "$sum" ] || fail "read-only open modified the file"

f=$(fresh truncated); truncate -s -1000 "$f"
rejected "$f" "footer missing at end of file"
f=$(fresh cut); truncate -s $((2 * MiB)) "$f"
rejected "$f" "footer missing at end of file"
f=$(fresh bad-footer); vhd_edit "$f" footer-byte
rejected "$f" "footer checksum mismatch"
f=$(fresh bad-header); vhd_edit "$f" header-byte
rejected "$f" "dynamic header checksum mismatch"
f=$(fresh size0); vhd_edit "$f" size 0
rejected "$f" "footer: virtual size 0 out of range"
f=$(fresh size-huge); vhd_edit "$f" size $((1 << 50))
rejected "$f" "footer: virtual size .* out of range"
f=$(fresh bs-odd); vhd_edit "$f" block-size 3000
rejected "$f" "block size 3000 is not a power of two"
f=$(fresh entries); vhd_edit "$f" entries 2
rejected "$f" "max_table_entries 2 does not fit"
f=$(fresh bat-off); vhd_edit "$f" bat-offset $((1 << 40))
rejected "$f" "BAT .* lies past end of file"
f=$(fresh bat-eof); vhd_edit "$f" bat:1 0x00FFFFFF
rejected "$f" "BAT entry 1 points past end of file"
f=$(fresh bat-hdr); vhd_edit "$f" bat:0 1
rejected "$f" "BAT entry 0 points into the dynamic header"
f=$(fresh bat-bat); vhd_edit "$f" bat:1 3
rejected "$f" "BAT entry 1 points into the BAT"
f=$(fresh bat-dup); vhd_edit "$f" bat:2 "$(python3 -c '
import struct,sys; d=open(sys.argv[1],"rb").read(); h=struct.unpack_from(">Q",d,len(d)-496)[0]
b=struct.unpack_from(">Q",d,h+16)[0]; print(struct.unpack_from(">I",d,b)[0])' "$f")"
rejected "$f" "BAT entries .* overlap"

# Fixed image whose data area was cut short (footer re-appended).
qemu-img create -q -f vpc -o subformat=fixed "$T/fixed.vhd" 4M
tail -c 512 "$T/fixed.vhd" > "$T/footer"
truncate -s 1M "$T/fixed.vhd"; cat "$T/footer" >> "$T/fixed.vhd"
rejected "$T/fixed.vhd" "fixed VHD data area truncated"

# Differencing: parent missing, parent replaced by an unrelated VHD.
if [ -x "$VDIMOTION" ]; then
  "$VDIMOTION" create -f vhd "$T/p.vhd" 4M
  "$VDIMOTION" create -f vhd -b p.vhd "$T/child.vhd"
  "$VDIMOTION" info "$T/child.vhd" > /dev/null
  mv "$T/p.vhd" "$T/p.vhd.away"
  rejected "$T/child.vhd" "parent image .*p.vhd.* not found"
  "$VDIMOTION" create -f vhd "$T/p.vhd" 4M
  rejected "$T/child.vhd" "parent UUID .* does not match"
fi

# Garbage that merely starts with a footer cookie is not served as raw.
{ printf conectix; head -c 4000 /dev/zero; } > "$T/junk.vhd"
rejected "$T/junk.vhd" "vhd: .*footer"
echo PASS
