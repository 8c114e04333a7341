# Sourced by tests/test-xapi-*.sh after functions.sh: start vdimotiond on
# a free port of 127.0.0.1 with its own state dir, SRs and users in $T.
VDIMOTIOND=${VDIMOTIOND:-$top_builddir/xapi-shim/vdimotiond}
[ -x "$VDIMOTIOND" ] || fail "$VDIMOTIOND not built"
requires python3
# Under ASan: only libraries' own leaks are suppressed (xapi-shim/lsan.supp).
if [ -n "${VDM_SANITIZED-}" ] || [ -n "${ASAN_OPTIONS-}" ]; then
  # Full stacks (GLib has no frame pointers), or the suppressions miss.
  LSAN_OPTIONS="suppressions=$top_srcdir/xapi-shim/lsan.supp:fast_unwind_on_malloc=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
  export LSAN_OPTIONS
  G_SLICE=always-malloc
  export G_SLICE
fi

vdimotiond_pid=
# start_vdimotiond [EXTRA FLAGS...]: sets $url (and $https_url with
# --listen-https); user "root", password "secret".
start_vdimotiond ()
{
  mkdir -p "$T/state" "$T/sr1" "$T/sr2"
  printf 'root:%s\n' "$(echo secret | "$VDIMOTIOND" --hash-password)" \
    > "$T/auth"
  # More "user:HASH" lines from the test, if any.
  [ -z "${extra_auth-}" ] || printf '%s\n' "$extra_auth" >> "$T/auth"
  # A restarted daemon's log replaces the first one's, kept aside.
  [ ! -f "$T/vdimotiond.log" ] \
    || cat "$T/vdimotiond.log" >> "$T/vdimotiond-earlier.log"
  "$VDIMOTIOND" --foreground --listen 127.0.0.1:0 --state-dir "$T/state" \
    --auth-file "$T/auth" --sr "sr1=$T/sr1" --sr "sr2=$T/sr2" \
    --vdi-plugin "$top_builddir/sr-drivers/.libs/nbdkit-vdi-plugin.so" \
    --mirror-filter "$top_builddir/mirror-filter/.libs/nbdkit-mirror-filter.so" \
    "$@" 2> "$T/vdimotiond.log" &
  vdimotiond_pid=$!
  cleanup_fn kill_vdimotiond
  cleanup_fn kill_vm_disks
  for _ in $(seq 100); do
    grep -q 'listening on http://' "$T/vdimotiond.log" && break
    kill -0 "$vdimotiond_pid" 2>/dev/null || {
      cat "$T/vdimotiond.log" >&2
      fail "vdimotiond exited at startup"
    }
    sleep 0.1
  done
  url=$(sed -n 's|.*listening on \(http://[^ ]*\)|\1|p' "$T/vdimotiond.log")
  https_url=$(sed -n 's|.*listening on \(https://[^ ]*\)|\1|p' \
                "$T/vdimotiond.log")
  [ -n "$url" ] || { cat "$T/vdimotiond.log" >&2; fail "no URL"; }
  echo "vdimotiond $vdimotiond_pid at $url $https_url"
}

# The nbdkits the daemon started for VMs' disks outlive it by design;
# the test's end stops them.
kill_vm_disks ()
{
  for f in "$T"/state/run/*.pid; do
    [ -f "$f" ] || continue
    kill "$(cat "$f")" 2>/dev/null || :
  done
}

kill_vdimotiond ()
{
  [ -n "$vdimotiond_pid" ] || return 0
  kill "$vdimotiond_pid" 2>/dev/null || :
  wait "$vdimotiond_pid" 2>/dev/null || :
}

# Stop it with SIGTERM and check it exits 0 (under ASan: no leaks).
stop_vdimotiond ()
{
  kill -TERM "$vdimotiond_pid"
  rc=0
  wait "$vdimotiond_pid" || rc=$?
  vdimotiond_pid=
  [ "$rc" -eq 0 ] || { cat "$T/vdimotiond.log" >&2; fail "vdimotiond exited $rc"; }
}
