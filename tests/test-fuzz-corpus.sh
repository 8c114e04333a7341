#!/bin/sh
# The fuzz targets' corpora (tests/fuzz/corpus/: seeds, and every input
# that once crashed one, crash-*) replayed through the targets built as
# plain programs with this build's compiler and flags: under ASan and
# UBSan in the sanitizer build.  `make fuzz` runs the same targets under
# libFuzzer (scripts/fuzz).
. "$srcdir/functions.sh"
requires make
fz=$top_srcdir/tests/fuzz
out=$top_builddir/tests/fuzz
# Not the calling make's flags (its variables, its directory messages).
unset MAKEFLAGS MFLAGS MAKELEVEL
make -s -f "$fz/Makefile" out="$out" replay=1 CC="${VDM_CC:-cc}" \
  CFLAGS="${VDM_CFLAGS--g -O2}" LDFLAGS="${VDM_LDFLAGS-}" \
  || fail "cannot build the fuzz targets' replay programs"
for t in $(make -s -f "$fz/Makefile" list); do
  [ -d "$fz/corpus/$t" ] || fail "$t: no corpus in $fz/corpus/$t"
  "$out/replay-$t" "$fz/corpus/$t" 2> "$T/$t.log" || {
    tail -n 40 "$T/$t.log" >&2
    fail "$t: an input of its corpus fails (the last one named above)"
  }
  echo "ok: $t: $(tail -n 1 "$T/$t.log")"
done
echo PASS
