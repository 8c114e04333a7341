#!/bin/sh
# compare: 0 identical, 1 different at the exact first offset, 2 on error;
# across formats; size mismatch allowed only when the tail reads zero.
. "$srcdir/functions.sh"
requires qemu-img

"$VDIMOTION" create -f raw "$T/a.raw" 32M
write_pattern "$T/a.raw" 7 $((1 << 20)) $((2 << 20))
write_pattern "$T/a.raw" 8 $((20 << 20)) 12345
qemu-img convert -O qcow2 "$T/a.raw" "$T/a.qcow2"
qemu-img convert -O vpc -o subformat=dynamic,force_size=on "$T/a.raw" "$T/a.vhd"

"$VDIMOTION" compare "$T/a.raw" "$T/a.qcow2" | grep -q identical || fail "raw vs qcow2"
"$VDIMOTION" compare "$T/a.qcow2" "$T/a.vhd" | grep -q identical || fail "qcow2 vs vhd"

# One byte changed deep inside a data range: found at exactly that offset.
cp "$T/a.raw" "$T/b.raw"
off=$(( (20 << 20) + 1000 ))
printf '\377' | dd of="$T/b.raw" bs=1 seek=$off conv=notrunc 2>/dev/null
qemu-io -f raw -c "write -P 0 $off 1" "$T/b.raw" > /dev/null   # make it differ for sure
printf 'Z' | dd of="$T/b.raw" bs=1 seek=$off conv=notrunc 2>/dev/null
expect_exit 1 "$VDIMOTION" compare "$T/a.qcow2" "$T/b.raw" > "$T/out"
"$VDIMOTION" compare "$T/a.qcow2" "$T/b.raw" > "$T/out" || :
grep -q "Content mismatch at offset $off!" "$T/out" || { cat "$T/out"; fail "wrong offset"; }

# A byte in a hole of one image.
cp "$T/a.raw" "$T/c.raw"
printf 'Q' | dd of="$T/c.raw" bs=1 seek=$((30 << 20)) conv=notrunc 2>/dev/null
"$VDIMOTION" compare "$T/a.vhd" "$T/c.raw" > "$T/out" && fail "hole difference missed"
grep -q "offset $((30 << 20))!" "$T/out" || fail "hole difference offset"

# Size mismatch: a zero tail is fine, data in the tail is a difference.
cp "$T/a.raw" "$T/big.raw"
truncate -s 40M "$T/big.raw"
"$VDIMOTION" compare "$T/a.raw" "$T/big.raw" > "$T/out" 2> "$T/err"
grep -q 'size mismatch' "$T/err" || fail "no size mismatch warning"
printf 'T' | dd of="$T/big.raw" bs=1 seek=$((35 << 20)) conv=notrunc 2>/dev/null
expect_exit 1 "$VDIMOTION" compare "$T/a.raw" "$T/big.raw"

# Errors are 2, not 1.
expect_exit 2 "$VDIMOTION" compare "$T/a.raw"
expect_exit 2 "$VDIMOTION" compare "$T/a.raw" "$T/nope"
"$VDIMOTION" compare -q "$T/a.raw" "$T/a.qcow2" > "$T/out"
[ ! -s "$T/out" ] || fail "-q printed something"
echo PASS
