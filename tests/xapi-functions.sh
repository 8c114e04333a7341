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

# The nbdkit modules the daemon serves VMs' disks with: this build's.
# Under the sanitizers the daemon's nbdkits (found in PATH) get the ASan
# runtime preloaded, as the plugin and filter tests' own
# (uses_nbdkit_module, functions.sh).  requires_vm_disks skips a test
# when there are none.
modules_dir=$top_builddir
requires_vm_disks ()
{
  [ -f "$modules_dir/sr-drivers/.libs/nbdkit-vdi-plugin.so" ] \
    || skip "no nbdkit modules in $modules_dir"
  uses_nbdkit_module
}

# tls_setup: a self-signed certificate for localhost and 127.0.0.1 in
# $T/cert.pem (its key in $T/key.pem) and $tls, the daemon's flags to
# serve HTTPS with it.  Under ASan, leaks go unchecked: LeakSanitizer's
# tracer crashes on glib-networking's TLS threads (see
# test-xapi-https.sh); the plain-HTTP tests check them.
tls_setup ()
{
  requires openssl
  openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -days 1 \
    -keyout "$T/key.pem" -out "$T/cert.pem" 2> "$T/openssl.log" \
    || { cat "$T/openssl.log" >&2; fail "openssl req"; }
  if [ -n "${ASAN_OPTIONS-}" ]; then
    ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=0"
    export ASAN_OPTIONS
  fi
  tls="--listen-https 127.0.0.1:0 --tls-cert $T/cert.pem --tls-key $T/key.pem"
}

vdimotiond_pid=
# run_vdimotiond DIR [EXTRA FLAGS...]: a daemon whose state dir and SRs
# (sr1, sr2) are under DIR, logging to DIR/vdimotiond.log; sets vdm_pid,
# vdm_url (and vdm_https_url with --listen-https).  User "root", password
# "secret".  With $vdm_netns set, the daemon runs in that network
# namespace (netns-functions.sh).
vdm_netns=
# vdm_listening: true once the daemon started by run_vdimotiond (in
# $dir, $vdm_pid) says it listens; fails the test if it died instead.
vdm_listening ()
{
  grep -q 'listening on http://' "$dir/vdimotiond.log" && return 0
  # Dead (alive: a zombie does not count): say how it ended.
  alive "$vdm_pid" || {
    wait "$vdm_pid"; status=$?
    cat "$dir/vdimotiond.log" >&2
    fail "vdimotiond exited at startup (wait status $status)"
  }
  return 1
}
run_vdimotiond ()
{
  dir=$1; shift
  mkdir -p "$dir/state" "$dir/sr1" "$dir/sr2"
  printf 'root:%s\n' "$(echo secret | "$VDIMOTIOND" --hash-password)" \
    > "$dir/auth"
  # More "user:HASH" lines from the test, if any.
  [ -z "${extra_auth-}" ] || printf '%s\n' "$extra_auth" >> "$dir/auth"
  # A restarted daemon's log replaces the first one's, kept aside.
  [ ! -f "$dir/vdimotiond.log" ] \
    || cat "$dir/vdimotiond.log" >> "$dir/vdimotiond-earlier.log"
  # Emptied here, not only by the daemon's redirection below: that one
  # happens in the background child, and the wait for "listening on"
  # could read the previous daemon's URL before it.
  : > "$dir/vdimotiond.log"
  ${vdm_netns:+ip netns exec "$vdm_netns"} \
  "$VDIMOTIOND" --foreground --listen 127.0.0.1:0 --state-dir "$dir/state" \
    --auth-file "$dir/auth" --sr "sr1=$dir/sr1" --sr "sr2=$dir/sr2" \
    --vdi-plugin "$modules_dir/sr-drivers/.libs/nbdkit-vdi-plugin.so" \
    --mirror-filter "$modules_dir/mirror-filter/.libs/nbdkit-mirror-filter.so" \
    "$@" 2> "$dir/vdimotiond.log" &
  vdm_pid=$!
  # Up to 2 minutes to start: a start takes well under a second, but
  # many seconds on a loaded machine under the sanitizers, or when
  # SQLite's fsyncs wait for a busy disk.
  wait_for 120 vdm_listening || :
  vdm_url=$(sed -n 's|.*listening on \(http://[^ ]*\)|\1|p' "$dir/vdimotiond.log")
  vdm_https_url=$(sed -n 's|.*listening on \(https://[^ ]*\)|\1|p' \
                    "$dir/vdimotiond.log")
  [ -n "$vdm_url" ] || { cat "$dir/vdimotiond.log" >&2; fail "no URL"; }
}

# start_vdimotiond [EXTRA FLAGS...]: the test's daemon, in $T; sets $url
# and $https_url.
start_vdimotiond ()
{
  run_vdimotiond "$T" "$@"
  vdimotiond_pid=$vdm_pid url=$vdm_url https_url=$vdm_https_url
  cleanup_fn kill_vdimotiond
  cleanup_fn kill_vm_disks
  echo "vdimotiond $vdimotiond_pid at $url $https_url"
}

# start_peer [EXTRA FLAGS...]: a second daemon (another host), in
# $T/peer; sets $peer_url and $peer_https_url.
peer_pid=
start_peer ()
{
  run_vdimotiond "$T/peer" "$@"
  peer_pid=$vdm_pid peer_url=$vdm_url peer_https_url=$vdm_https_url
  cleanup_fn kill_peer
  cleanup_fn kill_vm_disks
  echo "peer vdimotiond $peer_pid at $peer_url $peer_https_url"
}

kill_peer ()
{
  [ -n "$peer_pid" ] || return 0
  kill "$peer_pid" 2>/dev/null || :
  wait "$peer_pid" 2>/dev/null || :
}

# The nbdkits the daemons started for VMs' disks outlive them by design;
# the test's end stops them.
kill_vm_disks ()
{
  for f in "$T"/state/run/*.pid "$T"/peer/state/run/*.pid; do
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

# stop_daemon PID LOG: stop it with SIGTERM and check it exits 0 (under
# ASan: no leaks); else show its log.
stop_daemon ()
{
  kill -TERM "$1"
  rc=0
  wait "$1" || rc=$?
  [ "$rc" -eq 0 ] || { cat "$2" >&2; fail "vdimotiond $1 exited $rc"; }
}

stop_vdimotiond ()
{
  stop_daemon "$vdimotiond_pid" "$T/vdimotiond.log"
  vdimotiond_pid=
}

stop_peer ()
{
  stop_daemon "$peer_pid" "$T/peer/vdimotiond.log"
  peer_pid=
}

# fio_disk SOCKET SEED OFFSET SIZE [FIO ARGS...]: random 4 KiB writes with
# crc32c verify through a VM's disk (as xapi_checks.fio), covering
# OFFSET..+SIZE; --verify_only checks that they are all there.
fio_disk ()
{
  s=$1 seed=$2 off=$3 size=$4
  shift 4
  fio --name=vm --ioengine=nbd --uri="nbd+unix:///?socket=$s" \
    --rw=randwrite --bs=4k --offset="$off" --size="$size" --iodepth=8 \
    --randrepeat=1 --randseed="$seed" --verify=crc32c --verify_fatal=1 \
    --verify_state_save=0 --output="$T/fio-$seed.log" "$@" \
    || { cat "$T/fio-$seed.log" >&2; return 1; }
}

# wait_crashed POINT: wait (at most two minutes) for the test's daemon,
# started with VDIMOTIOND_CRASH_AT=POINT, to kill itself there, and
# check that its log says so.
wait_crashed ()
{
  wait_for 120 gone "$vdimotiond_pid" || fail "the daemon never reached $1"
  wait "$vdimotiond_pid" 2>/dev/null || :
  vdimotiond_pid=
  grep -q "crash point $1" "$T/vdimotiond.log" \
    || { cat "$T/vdimotiond.log" >&2; fail "the daemon did not crash at $1"; }
}
