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
  for h in $cleanup_hooks; do $h || :; done
  # VDM_KEEP_TEST_DIR=1 keeps the scratch directory to look at.
  if [ -n "${VDM_KEEP_TEST_DIR-}" ]; then
    echo "kept $T" >&2
  else
    rm -rf "$T"
  fi
}
trap on_exit EXIT
# Run FN when the test exits, however it exits.
cleanup_fn () { cleanup_hooks="$1 $cleanup_hooks"; }

fail () { echo "FAIL: $*" >&2; exit 1; }
skip () { echo "SKIP: $*" >&2; exit 77; }
requires () { command -v "$1" >/dev/null 2>&1 || skip "$1 is not installed"; }

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

# Tests that load our nbdkit plugin or filter (.so) into nbdkit: in the
# sanitizer build the .so needs an ASan runtime preloaded into nbdkit,
# and such an nbdkit deadlocks at exit in libp11-kit here, so these tests
# run in the normal build only.  libvdisk and the copy engine under them
# are covered by the sanitizer build's other tests.
requires_plain_nbdkit_module ()
{
  [ -z "${VDM_SANITIZED:-}" ] || skip "loads an nbdkit module: runs in the normal build only"
}
