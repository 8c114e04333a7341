#!/bin/sh
# xapi's disk data URLs: PUT /import_raw_vdi and GET /export_raw_vdi with
# format=raw and vhd.  Disks made by qemu-img and qemu-io go in, come back
# out, and read the same through qemu-img and libvhdi; the exported VHD
# holds only allocated blocks; bad sessions, VDIs, formats, bodies and
# VHDs are refused with the status and the reason, with nothing written
# outside the SR.
. "$srcdir/functions.sh"
. "$srcdir/xapi-functions.sh"
requires qemu-img
requires qemu-io
[ -x "$VHDI_CAT" ] || fail "$VHDI_CAT not built"

start_vdimotiond
client () { python3 "$srcdir/xapi-import-export.py" "$url" "$@"; }
export PYTHONPATH="$srcdir${PYTHONPATH:+:$PYTHONPATH}"
# expect_http STATUS WORDS -- COMMAND...: the client printed STATUS and
# an answer containing WORDS.
expect_http ()
{
  want=$1 words=$2; shift 3
  got=$(client "$@")
  case "$got" in
    "$want "*"$words"*) echo "ok: $got" ;;
    *) fail "$*: got '$got', expected $want ... $words" ;;
  esac
}

# A 128 MiB dynamic VHD: data in the first block, across a block
# boundary, at the very end; a range written as zeroes (allocated,
# zero) and holes between.
size=$((128 * 1024 * 1024))
qemu-img create -q -f vpc -o subformat=dynamic,force_size=on "$T/src.vhd" $size
qemu-io -f vpc -c 'write -P 0xab 0 1M' -c 'write -P 0xcd 3M 2M' \
  -c 'write -z 20M 2M' -c 'write -P 0x11 33553000 1000' \
  -c "write -P 0x5a $((size - 4096)) 4096" "$T/src.vhd" > /dev/null
qemu_raw "$T/src.vhd" "$T/src.raw"
# The same as a fixed VHD.
qemu-img convert -O vpc -o subformat=fixed,force_size=on "$T/src.raw" \
  "$T/fixed.vhd"

s=$(client login)
vhd_vdi=$(client create "$s" sr1 from-vhd $size)
raw_vdi=$(client create "$s" sr1 from-raw $size raw)
fixed_vdi=$(client create "$s" sr2 from-fixed $size)

expect_http 200 imported -- put "$s" "$vhd_vdi" vhd "$T/src.vhd"
expect_http 200 imported -- put "$s" "$raw_vdi" raw "$T/src.raw"
expect_http 200 imported -- put "$s" "$fixed_vdi" vhd "$T/fixed.vhd"

# Back out, raw and vhd, compared with qemu-img and libvhdi.
for v in "$vhd_vdi" "$raw_vdi" "$fixed_vdi"; do
  rm -f "$T/out.raw" "$T/out.vhd" "$T/vhdi.raw"
  expect_http 200 "$size" -- get "$s" "$v" raw "$T/out.raw"
  cmp "$T/out.raw" "$T/src.raw" || fail "$v: raw export differs"
  client get "$s" "$v" vhd "$T/out.vhd"
  qemu-img compare -q -f vpc -F vpc "$T/out.vhd" "$T/src.vhd" \
    || fail "$v: qemu-img compare of the exported VHD"
  qemu-img check -q -f vpc "$T/out.vhd" 2>/dev/null \
    || [ $? -eq 63 ] || fail "$v: qemu-img check" # 63: vpc has no check
  "$VHDI_CAT" "$T/out.vhd" "$T/vhdi.raw"
  cmp "$T/vhdi.raw" "$T/src.raw" || fail "$v: libvhdi reads another disk"
  # Sparse: 5 blocks of 2 MiB hold data (the zeroes were not written).
  vhd_size=$(stat -c %s "$T/out.vhd")
  [ "$vhd_size" -lt $((12 * 1024 * 1024)) ] \
    || fail "$v: exported VHD of $vhd_size bytes is not sparse"
done
# The import left the zeroes and holes unwritten in the SR too.
vhd_uuid=${vhd_vdi#OpaqueRef:}
[ "$(stat -c %s "$T/sr1/$vhd_uuid.vhd")" -lt $((16 * 1024 * 1024)) ] \
  || fail "imported VHD image is not sparse"
[ "$(du -k "$T/sr1/${raw_vdi#OpaqueRef:}.raw" | cut -f1)" -lt 16384 ] \
  || fail "imported raw image is not sparse"

# A VHD written by libvdisk itself (blocks aligned, partial bitmaps):
# its own image file goes in as a body.
copy_vdi=$(client create "$s" sr2 copy $size)
expect_http 200 imported -- put "$s" "$copy_vdi" vhd "$T/sr1/$vhd_uuid.vhd"
client get "$s" "$copy_vdi" raw "$T/out.raw"
cmp "$T/out.raw" "$T/src.raw" || fail "re-imported libvdisk VHD differs"

# The default format is raw; a smaller raw body is fine.
small_vdi=$(client create "$s" sr2 small $((size * 2)) raw)
expect_http 200 imported -- put "$s" "$small_vdi" - "$T/src.raw"

# While an import runs, the VDI is busy.
expect_http 409 OTHER_OPERATION_IN_PROGRESS -- busy "$s" "$raw_vdi" \
  "$T/src.raw"

# A client that leaves half-way (import, then export) frees the VDI.
abort_vdi=$(client create "$s" sr2 abort $size)
[ "$(client abort "$s" "$abort_vdi" "$T/src.raw")" = freed ] \
  || fail "VDI not freed after aborted transfers"

# Into a VDI that has content, the body replaces all of it: zeroes and
# holes of the body are zero afterwards.
qemu-img create -q -f vpc -o subformat=dynamic,force_size=on "$T/new.vhd" $size
qemu-io -f vpc -c 'write -P 0x77 50M 64k' "$T/new.vhd" > /dev/null
qemu_raw "$T/new.vhd" "$T/new.raw"
expect_http 200 imported -- put "$s" "$vhd_vdi" vhd "$T/new.vhd"
client get "$s" "$vhd_vdi" raw "$T/out.raw"
cmp "$T/out.raw" "$T/new.raw" || fail "VHD import over content differs"
head -c $((51 * 1024 * 1024)) "$T/new.raw" > "$T/short.raw"
expect_http 200 imported -- put "$s" "$raw_vdi" raw "$T/short.raw"
client get "$s" "$raw_vdi" raw "$T/out.raw"
cmp "$T/out.raw" "$T/new.raw" || fail "short raw import over content differs"
grep -q "$vhd_uuid: import (vhd) .* (over existing content)" \
  "$T/vdimotiond.log" || fail "import over content not logged as such"

# Bad requests.  Nothing may appear outside the SRs, nor inside them:
# the names in $T and the SRs are the same afterwards.
tiny_vdi=$(client create "$s" sr1 tiny $((size / 2)))
target=$(client create "$s" sr1 target $size)
names () { find "$T" -mindepth 1 | sort; }
touch "$T/out" "$T/bad.vhd" "$T/before" "$T/after"
names > "$T/before"
expect_http 401 "SESSION_INVALID OpaqueRef:nope" -- put OpaqueRef:nope "$vhd_vdi" vhd \
  "$T/src.vhd"
expect_http 401 "SESSION_INVALID (no session_id" -- put - "$vhd_vdi" vhd \
  "$T/src.vhd"
expect_http 401 SESSION_INVALID -- get OpaqueRef:nope "$vhd_vdi" raw \
  "$T/out"
expect_http 404 "HANDLE_INVALID VDI OpaqueRef:0b5e" -- put "$s" \
  OpaqueRef:0b5ecf5d-1b2c-4d3e-8f90-123456789abc raw "$T/src.raw"
expect_http 404 HANDLE_INVALID -- get "$s" \
  OpaqueRef:0b5ecf5d-1b2c-4d3e-8f90-123456789abc raw "$T/out"
expect_http 404 "HANDLE_INVALID VDI (no vdi in the query)" -- put "$s" - raw "$T/src.raw"
expect_http 400 "format=qcow2" -- put "$s" "$vhd_vdi" qcow2 "$T/src.vhd"
expect_http 400 "format=qcow2" -- get "$s" "$vhd_vdi" qcow2 "$T/out"
for bad in ../../x "OpaqueRef:../../$(basename "$T")/stray" \
           "OpaqueRef:../sr.db" "OpaqueRef:$vhd_uuid/../../x"; do
  expect_http 404 HANDLE_INVALID -- put "$s" "$bad" raw "$T/src.raw"
  expect_http 404 HANDLE_INVALID -- get "$s" "$bad" raw "$T/out"
done

# A body larger than the VDI: raw (its length known or not), and a VHD
# of a bigger disk.
expect_http 413 "larger than the VDI" -- put "$s" "$tiny_vdi" raw \
  "$T/src.raw"
expect_http 413 "larger than the VDI" -- put-chunked "$s" "$tiny_vdi" raw \
  "$T/src.raw"
expect_http 413 "larger than the disk" -- put "$s" "$tiny_vdi" vhd \
  "$T/src.vhd"
expect_http 413 "larger than the disk" -- put "$s" "$tiny_vdi" vhd \
  "$T/fixed.vhd"

# Corrupt VHDs.  patch FILE OFFSET BYTES(octal escapes)
patch () { printf "$3" | dd of="$1" bs=1 seek="$2" conv=notrunc 2>/dev/null; }
cp "$T/src.vhd" "$T/bad.vhd"
patch "$T/bad.vhd" 64 '\0\0\0\0'
expect_http 400 "footer checksum mismatch" -- put "$s" "$target" vhd \
  "$T/bad.vhd"
cp "$T/src.vhd" "$T/bad.vhd"
patch "$T/bad.vhd" $((512 + 1000)) '\125'
expect_http 400 "dynamic header checksum mismatch" -- put "$s" "$target" \
  vhd "$T/bad.vhd"
# BAT entry 1 (the BAT is at 1536 in qemu's VHDs) past the end.
cp "$T/src.vhd" "$T/bad.vhd"
patch "$T/bad.vhd" $((1536 + 4)) '\0\20\0\0'
expect_http 400 "BAT entry 1 points past the end of the body" -- put "$s" \
  "$target" vhd "$T/bad.vhd"
# ... and into the metadata.
cp "$T/src.vhd" "$T/bad.vhd"
patch "$T/bad.vhd" $((1536 + 4)) '\0\0\0\1'
expect_http 400 "BAT entry 1 points to byte 512" -- put "$s" "$target" vhd \
  "$T/bad.vhd"
# Truncated: cut in a block, and the closing footer missing, with and
# without the length in the headers.
head -c 3000000 "$T/src.vhd" > "$T/bad.vhd"
expect_http 400 "truncated" -- put "$s" "$target" vhd "$T/bad.vhd"
expect_http 400 "truncated: the body ends at byte 3000000 within" -- \
  put-chunked "$s" "$target" vhd "$T/bad.vhd"
src_len=$(stat -c %s "$T/src.vhd")
head -c $((src_len - 512)) "$T/src.vhd" > "$T/bad.vhd"
expect_http 400 "points past the end of the body" -- put "$s" "$target" vhd \
  "$T/bad.vhd"
expect_http 400 "truncated: no footer after the last block" -- \
  put-chunked "$s" "$target" vhd "$T/bad.vhd"
head -c $((src_len - 100)) "$T/src.vhd" > "$T/bad.vhd"
tail -c 100 "$T/src.vhd" | tr '\0-\377' '\1-\377\0' >> "$T/bad.vhd"
expect_http 400 "end of body" -- put "$s" "$target" vhd "$T/bad.vhd"
# Not a VHD at all.
expect_http 400 "no VHD footer" -- put "$s" "$target" vhd "$T/src.raw"
names > "$T/after"
diff "$T/before" "$T/after" || fail "files appeared or went"
for f in "$T/../x" "$T/x" "$T/stray" "$T/sr1/x" "$T/sr2/x"; do
  [ ! -e "$f" ] || fail "a stray file was written: $f"
done
# Only the VDIs created above are in the SRs: no temporary files.
n=$(ls -A "$T/sr1" "$T/sr2" | grep -c -v -e '^$' -e ':$' -e '^sr.db')
[ "$n" -eq 8 ] || { ls -la "$T/sr1" "$T/sr2"; fail "$n files in the SRs"; }

# Methods: import is a PUT, export a GET; POST / is still XML-RPC.
python3 - "$url" "$s" "$vhd_vdi" <<'EOF'
import http.client, sys, urllib.parse
url, s, vdi = sys.argv[1:]
c = http.client.HTTPConnection(urllib.parse.urlsplit(url).netloc)
q = urllib.parse.urlencode({"session_id": s, "vdi": vdi})
for method, path, want in (("GET", "/import_raw_vdi", 405),
                           ("POST", "/export_raw_vdi", 405),
                           ("GET", "/import_raw_vdix", 404)):
    c.request(method, path + "?" + q, body=b"" if method != "GET" else None)
    r = c.getresponse()
    r.read()
    assert r.status == want, (method, path, r.status)
    c.close()
EOF

# The daemon is alive and well, and stops cleanly (no leak under ASan).
client create "$s" sr1 last $size > /dev/null
stop_vdimotiond
