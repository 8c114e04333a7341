# Sourced by every end-to-end test.  Gives each test its own scratch
# directory ($T, removed on exit unless VDM_KEEP_TEST_DIR is set), and
# small helpers.
set -e
set -u

: "${VDIMOTION:?run through make check}"
T=$(mktemp -d "${TMPDIR:-/tmp}/vdm-test.XXXXXX")
cleanup_hooks=""
on_exit ()
{
  rc=$?
  for h in $cleanup_hooks; do $h || :; done
  # VDM_KEEP_TEST_DIR=1 keeps the scratch directory to look at.
  if [ -n "${VDM_KEEP_TEST_DIR-}" ]; then
    echo "kept $T" >&2
  else
    rm -rf "$T"
  fi
  # A sanitizer's report fails a test that passed or skipped.
  if [ -n "${sanitizer_failed-}" ] && { [ "$rc" -eq 0 ] || [ "$rc" -eq 77 ]; }; then
    exit 1
  fi
}
trap on_exit EXIT
# Run FN when the test exits, however it exits.
cleanup_fn () { cleanup_hooks="$1 $cleanup_hooks"; }

fail () { echo "FAIL: $*" >&2; exit 1; }
skip () { echo "SKIP: $*" >&2; exit 77; }
requires () { command -v "$1" >/dev/null 2>&1 || skip "$1 is not installed"; }

# wait_for SECONDS COMMAND [ARGS...]: run COMMAND every 50 ms until it
# succeeds (return 0), or fail once SECONDS have passed (return 1).  The
# deadline only bounds a hang: what a test proves is the event it waits
# for, never how soon it comes, so give it minutes where a loaded machine
# or the sanitizers could need them; the common case returns at once.
wait_for ()
{
  wait_end=$(( $(date +%s) + $1 ))
  shift
  until "$@"; do
    [ "$(date +%s)" -lt "$wait_end" ] || return 1
    sleep 0.05
  done
}

# repeat_until STOPFILE COMMAND [ARGS...]: run COMMAND again and again,
# each run to its end, until STOPFILE exists; return 1 as soon as a run
# fails.  A writer that must still be writing after a step whose start
# takes a second here and a minute under the sanitizers runs this way in
# the background, and the test stops it (touch STOPFILE) once it has
# seen that step; fio with the same seed writes the same blocks again,
# so one verify checks every run.
repeat_until ()
{
  stop_file=$1
  shift
  while [ ! -e "$stop_file" ]; do
    "$@" || return 1
  done
}

# modified_since FILE MTIME: FILE was written since MTIME (its
# "stat -c %y", to the nanosecond): a writer started in the background
# has reached it.
modified_since () { [ "$(stat -c %y "$1")" != "$2" ]; }

# alive PID: true while process PID runs (a zombie, dead but not yet
# waited for, does not count; kill -0 would still find it).
alive () { st=$(ps -o stat= -p "$1" 2>/dev/null) && [ "${st#Z}" = "$st" ]; }
gone () { ! alive "$1"; }

# journal_done JOURNAL: how many windows the copy journal JOURNAL marks
# done (0 while it does not exist yet).  Its layout is
# replicator/copy/journal.c's: a 4 KiB header (magic, window count as
# 8 bytes at 8, identity), then the "started" bitmap, then "done".
journal_done ()
{
  python3 - "$1" <<'PY'
import struct, sys
try:
    b = open(sys.argv[1], "rb").read()
except FileNotFoundError:
    b = b""
if len(b) < 16:
    print(0)
    sys.exit(0)
n = struct.unpack("<Q", b[8:16])[0]
size = (n + 7) // 8
done = b[4096 + size:4096 + 2 * size]
print(sum(bin(x).count("1") for x in done))
PY
}

# Run a command that must fail with exit code $1; its stderr goes to
# $T/err for the caller to check.
expect_exit ()
{
  want=$1; shift
  set +e
  "$@" 2> "$T/err"
  got=$?
  set -e
  [ "$got" -eq "$want" ] || {
    cat "$T/err" >&2
    fail "$* exited $got, expected $want"
  }
}

# The guest-visible bytes of IMAGE as a raw file, read by qemu-img.
qemu_raw ()
{
  qemu-img convert -O raw "$1" "$2"
}

# Fill a raw file with deterministic pseudo-random data at given
# offsets: write_pattern FILE SEED OFFSET LENGTH
write_pattern ()
{
  python3 - "$@" <<'PY'
import random, sys
path, seed, off, ln = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
r = random.Random(seed)
with open(path, "r+b") as f:
    f.seek(off)
    f.write(r.randbytes(ln))
PY
}

# Tests that load our nbdkit plugin or filter (.so) into nbdkit call this
# first.  In the sanitizer build (VDM_SANITIZED) the modules are built
# with ASan and UBSan, whose runtime must come first in the process: every
# nbdkit the test starts (through $PATH, whoever starts it) runs with the
# modules' own libasan preloaded, and tests/nbdkit-asan-preload.c (ASan
# started early enough, modules kept mapped for the leak report).  The
# sanitizers' reports go to
# $T/sanitizer.PID; when the test ends, once its nbdkits have exited
# (leaks show at exit), any report fails it, even where the test does not
# look at nbdkit's exit status.
uses_nbdkit_module ()
{
  [ -n "${VDM_SANITIZED:-}" ] || return 0
  real_nbdkit=$(command -v nbdkit) || skip "nbdkit is not installed"
  mod=$top_builddir/sr-drivers/.libs/nbdkit-vdi-plugin.so
  asan_rt=$(ldd "$mod" 2>/dev/null \
              | sed -n 's/^[[:space:]]*libasan[^ ]* => \([^ ]*\) .*/\1/p')
  [ -n "$asan_rt" ] || fail "$mod: links no libasan, but VDM_SANITIZED is set"
  mkdir -p "$T/sanitized-bin"
  # Without sanitizers: it runs before ASan has started.
  cc -O2 -shared -fPIC -o "$T/sanitized-bin/nbdkit-asan-preload.so" \
    "$top_srcdir/tests/nbdkit-asan-preload.c" -ldl \
    || fail "cannot build tests/nbdkit-asan-preload.c"
  cat > "$T/sanitized-bin/nbdkit" <<EOF
#!/bin/sh
# nbdkit with the ASan runtime of this build's modules (tests/functions.sh).
LD_PRELOAD="$asan_rt $T/sanitized-bin/nbdkit-asan-preload.so\${LD_PRELOAD:+ \$LD_PRELOAD}" \\
ASAN_OPTIONS="\${ASAN_OPTIONS:+\$ASAN_OPTIONS:}log_path=$T/sanitizer:fast_unwind_on_malloc=0" \\
UBSAN_OPTIONS="\${UBSAN_OPTIONS:+\$UBSAN_OPTIONS:}log_path=$T/sanitizer" \\
  exec "$real_nbdkit" "\$@"
EOF
  chmod +x "$T/sanitized-bin/nbdkit"
  PATH=$T/sanitized-bin:$PATH
  export PATH
  cleanup_fn check_sanitizer_logs
}
# The name of uses_nbdkit_module when such tests ran in the plain build
# only.
requires_plain_nbdkit_module () { uses_nbdkit_module; }

# At exit: stop the sanitized nbdkits still running (those whose
# environment names $T, forked ones included) and wait until they have
# gone, then fail on any sanitizer report.
sanitizer_failed=
sanitized_pids ()
{
  grep -lzs "log_path=$T/sanitizer" /proc/[0-9]*/environ 2>/dev/null \
    | sed 's|^/proc/\([0-9]*\)/environ$|\1|'
}
# ours_in_report FILE: true if the sanitizer report FILE is about this
# tree: any error but a leak, or a leak allocated with a frame of our
# code on its stack (a file of this tree, or one of our modules).  nbdkit
# 1.32 itself leaks a connection's context when it is stopped while a
# client is still connected; such a leak has nbdkit frames only.
ours_in_report ()
{
  # UBSan checks only our (instrumented) code.
  grep -q -E 'runtime error|ERROR: UndefinedBehavior' "$1" && return 0
  # An ASan error or a leak is ours if a frame of its stacks is: only our
  # modules are instrumented, so an error with no frame of ours is one
  # that ASan's libc interceptors caught inside nbdkit or GnuTLS (nbdkit
  # 1.32 can free a TLS session's buffer in gnutls_bye while another
  # thread still sends on it, at a connection's end).
  awk -v top="$top_srcdir" '
    /ERROR: AddressSanitizer/ { inerr = 1 }
    /^(Direct|Indirect) leak of/ { inleak = 1; next }
    /^$/ { inleak = 0 }
    /^SUMMARY:/ { inerr = 0 }
    (inleak || inerr) && (index($0, top "/") || /nbdkit-(vdi-plugin|mirror-filter)\.so/) { found = 1 }
    END { exit !found }' "$1"
}
no_sanitized_pids () { pids=$(sanitized_pids); [ -z "$pids" ]; }
check_sanitizer_logs ()
{
  pids=$(sanitized_pids)
  [ -z "$pids" ] || kill $pids 2>/dev/null || :
  # LeakSanitizer's check at exit takes seconds on a loaded machine.
  wait_for 120 no_sanitized_pids \
    || echo "sanitized nbdkit $pids did not exit" >&2
  for f in "$T"/sanitizer.*; do
    [ -e "$f" ] || continue
    if ours_in_report "$f"; then
      echo "==== $f" >&2
      cat "$f" >&2
      sanitizer_failed=1
    else
      echo "note: nbdkit's own errors or leaks, not ours (no frame of this tree):" >&2
      grep -E '^(Direct|Indirect) leak|ERROR: AddressSanitizer|^SUMMARY' "$f" >&2 || :
    fi
  done
  [ -z "$sanitizer_failed" ] \
    || echo "FAIL: a sanitizer found errors in nbdkit (above)" >&2
}
