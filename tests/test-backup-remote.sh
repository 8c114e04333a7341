#!/bin/bash
# vdimotion backup into a repository another vdimotiond serves over HTTPS
# (--backup-repo NAME=DIR, https://HOST:PORT/backups/NAME): a full and an
# incremental of a local image (the incremental sends at most 1.05 x the
# changed bytes rounded to 64 KiB), list, every point restored identical
# (by vdimotion over HTTPS, and by qemu-img convert of the server's file),
# verify --deep, prune; kill -9 of the CLI and of the daemon in the middle
# of a create, then the same command again finishes it and nothing
# half-made is ever listed; a wrong password, an unknown repository and
# path tricks in the disk and point names are refused with their reason.
. "$srcdir/functions.sh"
. "$srcdir/xapi-functions.sh"
. "$srcdir/backup-functions.sh"
requires qemu-img
requires python3
requires curl
tls_setup

size=$((256 << 20))
img=$T/disk.raw
truncate -s $size "$img"
# 32 MiB of data in 1 MiB pieces over the disk (8 windows of 32 MiB, more
# than the client's 4 connections).
python3 - "$img" <<'PY'
import random, sys
with open(sys.argv[1], "r+b") as f:
    for i in range(0, 256, 8):
        f.seek(i << 20)
        f.write(random.Random(i).randbytes(1 << 20))
PY

mkdir -p "$T/repo"
start_vdimotiond $tls --backup-repo "site=$T/repo"
[ -n "$https_url" ] || fail "no https URL"
repo=${https_url%/}/backups/site
export VDIMOTION_PASSWORD=secret VDIMOTION_CA_FILE=$T/cert.pem

# Change 20 blocks of 64 KiB at SEED's places (the first zeroed); prints
# the bytes changed.
change ()
{
  RANDOM=$1
  for n in $(seq 20); do
    b=$(( (RANDOM * 32768 + RANDOM) % (size / 65536) ))
    if [ "$n" -eq 1 ]; then src=/dev/zero; else src=/dev/urandom; fi
    dd if=$src of="$img" bs=64K seek=$b count=1 conv=notrunc status=none
    echo $b
  done | sort -u | wc -l | (read n; echo $((n * 65536)))
}

# create, keeping the image as it was under the new point's id.
create ()
{
  "$VDIMOTION" backup create -f raw --json "$@" "$img" "$repo" > "$T/out.json" \
    || fail "backup create $*"
  id=$(json_field id < "$T/out.json")
  cp "$img" "$T/at-$id.raw"
}

# A full, then an incremental after a small change.
create
[ "$(json_field kind < "$T/out.json")" = full ] || fail "the first is not a full"
written=$(json_field bytes-written < "$T/out.json")
[ "$written" -eq $((32 << 20)) ] \
  || fail "the full sent $written bytes, not the 32 MiB of data"
changed=$(change 1)
create
[ "$(json_field kind < "$T/out.json")" = incremental ] \
  || fail "the second is not an incremental: $(cat "$T/out.json")"
written=$(json_field bytes-written < "$T/out.json")
echo "incremental: $written bytes sent for $changed changed"
[ "$written" -le $((changed * 105 / 100)) ] \
  || fail "the incremental sent $written bytes for $changed changed"
[ "$(points "$repo" | wc -w)" -eq 2 ] || fail "list: $(points "$repo")"
"$VDIMOTION" backup list "$repo" | grep -q incremental || fail "list in words"

# verify --deep runs on the server; a flipped byte is named.
"$VDIMOTION" backup verify --deep --json "$repo" > "$T/v.json" \
  || fail "verify: $(cat "$T/v.json")"
[ "$(json_field points < "$T/v.json")" -eq 2 ] || fail "verify: $(cat "$T/v.json")"

# kill -9 of the CLI, then of the daemon, once a full has sent a window
# (its progress moved): nothing half-made is listed; the same command
# again finishes it without sending again the windows that were done.
kill_mid_create ()
{
  what=$1 before=$3
  change "$2" > /dev/null
  rm -f "$T/progress"
  "$VDIMOTION" backup create -f raw --full --progress "$img" "$repo" \
    > /dev/null 2> "$T/progress" &
  cli=$!
  wait_for 300 eval 'grep -qs "[1-9][0-9]*\.[0-9]%" "$T/progress" || gone $cli' \
    || fail "the create's progress did not move in 5 minutes"
  if [ "$what" = cli ]; then
    kill -9 $cli 2>/dev/null || :
    wait $cli 2>/dev/null || :
  else
    kill -9 "$vdimotiond_pid"
    wait "$vdimotiond_pid" 2>/dev/null || :
    wait $cli 2>/dev/null || :
    run_vdimotiond "$T" $tls --backup-repo "site=$T/repo"
    vdimotiond_pid=$vdm_pid
    repo=${vdm_https_url%/}/backups/site
  fi
  if ls "$T"/repo/*/.upload.json > /dev/null 2>&1; then
    [ "$(points "$repo" | wc -w)" -eq "$before" ] || fail "a half point is listed: $(points "$repo")"
    create --full
    written=$(json_field bytes-written < "$T/out.json")
    echo "kill -9 of the $what: the rerun sent $written bytes of $((32 << 20))"
    [ "$written" -lt $((32 << 20)) ] || fail "the rerun sent every window again"
  else
    echo "note: the create ended before the kill of the $what"
    create --full
  fi
  ! ls "$T"/repo/*/.upload* > /dev/null 2>&1 || fail "staging files are left"
}
kill_mid_create cli 2 2
kill_mid_create daemon 3 3
check_points "$repo" "$T/repo" ends

# prune keeps the newest, which still restores identical.
"$VDIMOTION" backup prune --keep-last 1 --json "$repo" > "$T/p.json" \
  || fail "prune"
[ "$(points "$repo" | wc -w)" -eq 1 ] || fail "after prune: $(points "$repo")"
check_points "$repo" "$T/repo" ends   # the one left, the newest
"$VDIMOTION" backup verify --deep "$repo" > /dev/null || fail "verify after prune"

# Refusals, each with its reason.
VDIMOTION_PASSWORD=wrong expect_exit 1 "$VDIMOTION" backup list "$repo"
grep -q SESSION_AUTHENTICATION_FAILED "$T/err" || fail "wrong password: $(cat "$T/err")"
expect_exit 1 "$VDIMOTION" backup list "${repo%/site}/nowhere"
grep -q 'no backup repository "nowhere"' "$T/err" || fail "unknown: $(cat "$T/err")"
expect_exit 1 "$VDIMOTION" backup list "${repo%/site}/..%2Fetc"
expect_exit 1 "$VDIMOTION" backup restore "$repo" ../../etc "$T/x.raw"
[ ! -e "$T/x.raw" ] || fail "a restore of a bad point made its destination"

# The server's own checks, whatever a client sends.
disk=$(basename "$(ls -d "$T"/repo/image-*)")
id=$(points "$repo")
req ()
{
  code=$(curl -s --path-as-is --cacert "$T/cert.pem" -u root:secret \
           -o "$T/body" -w '%{http_code}' "$@")
  echo "$code $(head -c 200 "$T/body")"
}
base=${repo}
expect_refused ()
{
  want=$1 words=$2; shift 2
  out=$(req "$@")
  case $out in
    "$want"*" "*"$words"*) ;;
    *) fail "$*: $out (expected $want and \"$words\")" ;;
  esac
}
expect_refused 400 'not a manifest' "$base/$disk/.create.json"
expect_refused 400 '' "$base/$disk/..%2F..%2Fauth.json"   # libsoup's
expect_refused 40 '' "$base/../../../etc/passwd"
expect_refused 400 'not a point id' "$base/$disk/.create/map"
expect_refused 400 'not a disk key' "$base/a%20b/"
expect_refused 400 'not a disk key' -X POST -d '{"source": "x", "virtual-size": 1}' "$base/.hidden/begin"
expect_refused 400 'virtual-size' -X POST -d '{"source": "x", "virtual-size": -1}' "$base/d/begin"
expect_refused 400 'not a JSON object' -X POST -d 'nonsense' "$base/d/begin"
expect_refused 400 'keep-last' -X POST -d '{"keep-last": 0}' "$base/prune"
expect_refused 400 'length=' "$base/$disk/$id/data?offset=0&length=999999999999"
expect_refused 400 'past the end' "$base/$disk/$id/data?offset=$size&length=1"
expect_refused 409 'no upload' -X PUT --data-binary x "$base/$disk/data?offset=0"
expect_refused 404 'no point' "$base/$disk/20990101T000000Z/map"
expect_refused 404 'no backup repository' "${base%/site}/.hidden/"
expect_refused 404 'not found' "${base%/backups/site}/backupssite/"
out=$(curl -s --cacert "$T/cert.pem" -o /dev/null -w '%{http_code}' "$base/")
[ "$out" = 401 ] || fail "no session: HTTP $out"
req "$base/$disk/$id.json" | grep -q '^200 ' || fail "a manifest: $(req "$base/$disk/$id.json")"

stop_vdimotiond
