#!/bin/sh
# Corrupt qcow2 images (qemu-made ones, patched with python3 struct) get
# a clear error naming the file and the structure: `vdimotion info` and
# `vdimotion map` exit 1, nothing crashes (the suite also runs under
# ASan/UBSan), and opening never changes the file.
. "$srcdir/functions.sh"
requires qemu-img
requires qemu-io
requires python3
requires md5sum

cd "$T"

# A small image with data: header, refcount table, refcount block, L1
# table, one L2 table, data clusters.
qemu-img create -q -f qcow2 good.qcow2 4M
qemu-io -f qcow2 -c 'write -P 0x42 0 256k' -c 'write -P 0x43 1M 64k' \
    good.qcow2 > /dev/null
"$VDIMOTION" info good.qcow2 > /dev/null
"$VDIMOTION" map good.qcow2 > /dev/null

# patch NAME PYTHON: copy good.qcow2 to NAME, then run PYTHON with `f`
# open on it read-write and `h` the parsed header fields.
patch ()
{
  cp good.qcow2 "$1"
  python3 - "$1" "$2" <<'PY'
import struct, sys
path, code = sys.argv[1], sys.argv[2]
f = open(path, "r+b")
raw = f.read(104)
names = ("magic version backing_off backing_len cluster_bits size crypt "
         "l1_size l1_off rt_off rt_clusters nb_snap snap_off incompat "
         "compat autoclear refcount_order header_len").split()
h = dict(zip(names, struct.unpack(">IIQIIQIIQQIIQQQQII", raw)))
def u64(off, v): f.seek(off); f.write(struct.pack(">Q", v))
def u32(off, v): f.seek(off); f.write(struct.pack(">I", v))
def rd64(off): f.seek(off); return struct.unpack(">Q", f.read(8))[0]
l2 = rd64(h["l1_off"]) & 0x00fffffffffffe00
exec(code)
f.close()
PY
}

# bad NAME WANT_EXIT REGEX: info and map of NAME exit WANT_EXIT, the
# message names the file and matches REGEX, the file is unchanged.
bad ()
{
  sum=$(md5sum < "$1")
  for cmd in info map; do
    expect_exit "${2}" "$VDIMOTION" $cmd "$1" > /dev/null
    if [ "$2" -ne 0 ]; then
      grep -q "$1" "$T/err" || { cat "$T/err"; fail "$cmd $1: no file name"; }
      grep -qE "$3" "$T/err" || { cat "$T/err"; fail "$cmd $1: want /$3/"; }
    fi
  done
  [ "$(md5sum < "$1")" = "$sum" ] || fail "$1 was modified"
  echo "ok: $1: $(head -n1 "$T/err")"
}

# bad_map NAME REGEX: the header is sane, so info succeeds, but the
# damage is in an L2 table: map and reads (compare: exit 2) fail.  (info does not read
# every L2 table: that would cost O(allocated) on every open.)
bad_map ()
{
  sum=$(md5sum < "$1")
  "$VDIMOTION" info "$1" > /dev/null
  expect_exit 1 "$VDIMOTION" map "$1"
  grep -q "$1" "$T/err" || { cat "$T/err"; fail "map $1: no file name"; }
  grep -qE "$2" "$T/err" || { cat "$T/err"; fail "map $1: want /$2/"; }
  truncate -s 4M ref.raw
  expect_exit 2 "$VDIMOTION" compare -q "$1" ref.raw
  [ "$(md5sum < "$1")" = "$sum" ] || fail "$1 was modified"
  echo "ok: $1: $(head -n1 "$T/err")"
}

# Truncated: inside the header, inside the L1 table, in the data.
head -c 50 good.qcow2 > trunc-header.qcow2
bad trunc-header.qcow2 1 'too short'
patch trunc-l1.qcow2 'f.truncate(h["l1_off"] + 4)'
bad trunc-l1.qcow2 1 'L1 table extends past end of file'
patch trunc-data.qcow2 'f.truncate(l2 + 3 * 65536)'
bad trunc-data.qcow2 1 'truncated'

# Bad magic is not qcow2 at all: it is read as raw, as qemu would.
patch magic.qcow2 'u32(0, 0x514649fa)'
"$VDIMOTION" info magic.qcow2 | grep -q raw || fail "bad magic not raw"
patch version.qcow2 'u32(4, 4)'
bad version.qcow2 1 'version 4'
patch cbits-small.qcow2 'u32(20, 8)'
bad cbits-small.qcow2 1 'cluster_bits 8'
patch cbits-big.qcow2 'u32(20, 22)'
bad cbits-big.qcow2 1 'cluster_bits 22'

# Absurd sizes.
patch size.qcow2 'u64(24, 1 << 63)'
bad size.qcow2 1 'virtual size'
patch size-l1.qcow2 'u64(24, 1 << 50)'
bad size-l1.qcow2 1 'L1 table .* too small'
patch l1-huge.qcow2 'u32(36, 0x10000000)'
bad l1-huge.qcow2 1 'L1 table .* too big'
patch rt-huge.qcow2 'u32(56, 0x7fffffff)'
bad rt-huge.qcow2 1 'refcount table'

# L1 entries: past end of file, misaligned, into the L1 table itself.
patch l1-eof.qcow2 'u64(h["l1_off"], (1 << 63) | (1 << 40))'
bad l1-eof.qcow2 1 'L1 table entry 0 points past end of file'
patch l1-align.qcow2 'u64(h["l1_off"], (1 << 63) | (l2 + 4096))'
bad l1-align.qcow2 1 'L1 table entry 0 is not cluster aligned'
patch l1-meta.qcow2 'u64(h["l1_off"], (1 << 63) | h["l1_off"])'
bad l1-meta.qcow2 1 'L1 table entry 0 points into the L1 table'

# L2 entries: past end of file, into the header's structures, reserved
# bits, a compressed cluster inside the header.
patch l2-eof.qcow2 'u64(l2 + 8 * 17, (1 << 63) | (1 << 40))'
bad_map l2-eof.qcow2 'L2 table 0 entry 17 points past end of file'
patch l2-rt.qcow2 'u64(l2 + 8, (1 << 63) | h["rt_off"])'
bad_map l2-rt.qcow2 'L2 table 0 entry 1 points into the refcount table'
patch l2-res.qcow2 'u64(l2 + 8 * 2, rd64(l2 + 8 * 2) | 0x10)'
bad_map l2-res.qcow2 'L2 table 0 entry 2 has reserved bits set'
patch l2-comp.qcow2 'u64(l2 + 8 * 3, (1 << 62) | 0x100)'
bad_map l2-comp.qcow2 'L2 table 0 entry 3 .*points into the header'

# Refcount table: past end of file, misaligned, an entry past the end.
patch rt-eof.qcow2 'u64(48, 1 << 40)'
bad rt-eof.qcow2 1 'refcount table extends past end of file'
patch rt-align.qcow2 'u64(48, h["rt_off"] + 512)'
bad rt-align.qcow2 1 'refcount table offset .* misaligned'
patch rt-entry.qcow2 'u64(h["rt_off"] + 8, 1 << 40)'
bad rt-entry.qcow2 1 'refcount table .*entry 1 points past end of file'

# Features we cannot honour.
patch crypt.qcow2 'u32(32, 1)'
bad crypt.qcow2 1 'encrypted'
patch datafile.qcow2 'u64(72, 1 << 2)'
bad datafile.qcow2 1 'external data file'
patch extl2.qcow2 'u64(72, 1 << 4)'
bad extl2.qcow2 1 'extended L2'
patch unknown.qcow2 'u64(72, 1 << 20)'
bad unknown.qcow2 1 'unknown incompatible feature'
patch zstd.qcow2 'u64(72, 1 << 3); u32(100, 112); f.seek(104); f.write(b"\1")'
bad zstd.qcow2 1 'compression type'
# Dirty and corrupt bits: readable (as qemu reads them), unchanged.
patch dirty.qcow2 'u64(72, 1)'
bad dirty.qcow2 0 ''
patch corrupt.qcow2 'u64(72, 2)'
bad corrupt.qcow2 0 ''

# Header extension running past the header cluster; backing name
# outside the header or absurdly long.
patch ext.qcow2 'u32(h["header_len"], 0x12345678); u32(h["header_len"] + 4, 0x7fffffff)'
bad ext.qcow2 1 'header extension'
patch backing-long.qcow2 'u64(8, 1024); u32(16, 5000)'
bad backing-long.qcow2 1 'backing file name length'
patch backing-out.qcow2 'u64(8, 65530); u32(16, 100)'
bad backing-out.qcow2 1 'backing file name is outside the header'

# Backing chains: a loop (a -> b -> a) and a missing backing file.
qemu-img create -q -f qcow2 -u -b loop-b.qcow2 -F qcow2 loop-a.qcow2 1M
qemu-img create -q -f qcow2 -u -b loop-a.qcow2 -F qcow2 loop-b.qcow2 1M
bad loop-a.qcow2 1 'loop'
qemu-img create -q -f qcow2 -u -b missing.qcow2 -F qcow2 orphan.qcow2 1M
bad orphan.qcow2 1 'missing.qcow2'
