# Sourced by tests/test-mirror-*.sh after tests/functions.sh: servers,
# the control socket, fio write/verify jobs.
. "$srcdir/copy-sources.sh"

requires nbdkit
requires fio
FILTER=$top_builddir/mirror-filter/.libs/nbdkit-mirror-filter.so
VDI_PLUGIN=$top_builddir/sr-drivers/.libs/nbdkit-vdi-plugin.so
[ -f "$FILTER" ] || fail "$FILTER not built"
CTL=$T/ctl.sock

# Every server of the test goes when the test ends.
stop_all_nbdkit ()
{
  for p in "$T"/*.pid; do
    [ -s "$p" ] && kill "$(cat "$p")" 2>/dev/null || :
  done
  sleep 0.1
}
cleanup_fn stop_all_nbdkit

# mstop NAME: stop a server and wait (at most two minutes: a sanitized
# nbdkit under load takes seconds) until it has gone (nbdkit leaves its
# socket behind; stop_nbdkit would wait for it in vain).
mstop ()
{
  p=$(cat "$T/$1.pid" 2>/dev/null || :)
  if [ -n "$p" ]; then
    kill "$p" 2>/dev/null || :
    wait_for 120 gone "$p" || fail "nbdkit $1 ($p) did not stop"
  fi
  rm -f "$T/$1.sock" "$T/$1.pid"
}

uri_of () { echo "nbd+unix:///?socket=$T/$1.sock"; }

# plugin_for IMAGE: the nbdkit plugin arguments that serve IMAGE (the vdi
# plugin when built, else the file plugin for raw images).
plugin_for ()
{
  if [ -f "$VDI_PLUGIN" ]; then
    echo "$VDI_PLUGIN file=$1"
  else
    case $1 in
      *.raw) echo "file $1" ;;
      *) return 1 ;;
    esac
  fi
}

# serve_mirrored NAME IMAGE [filter params...]: IMAGE behind the filter,
# controlled on $CTL.
serve_mirrored ()
{
  name=$1 img=$2; shift 2
  start_nbdkit "$name" --filter="$FILTER" $(plugin_for "$img") \
    mirror-control="$CTL" "$@"
}

mctl () { "$VDIMOTION" mirror --control "$CTL" "$@"; }

# jget KEY: the member KEY of the flat JSON object on stdin (strings
# unquoted, null as None; the filter's replies are one flat object).
jget ()
{
  sed -n -e "s/.*\"$1\":\"\\([^\"]*\\)\".*/\\1/p" \
         -e "t" -e "s/.*\"$1\":null.*/None/p" \
         -e "t" -e "s/.*\"$1\":\\([^,}]*\\).*/\\1/p"
}
mstate () { mctl --json status | jget state; }

# wait_state STATE [SECONDS]: poll the filter's state until it is STATE,
# for at most SECONDS (two minutes: the deadline only bounds a hang).
wait_state ()
{
  n=$(( ${2:-120} * 20 ))
  for i in $(seq "$n"); do
    s=$(mstate)
    [ "$s" = "$1" ] && return 0
    sleep 0.05
  done
  mctl status >&2 || :
  fail "mirror did not reach state $1 (it is $s)"
}

# fio_job SOCKNAME SEED SPEC -- [fio options]: SPEC is
# BS:OFFSET:SIZE, BS a size or a bssplit ("512/20:4k/80" uses '/' and ':',
# so SPEC separates with ','): e.g. "4k,0,16M".
fio_args ()
{
  sock=$1 seed=$2 spec=$3
  IFS=, read bs off size <<EOF2
$spec
EOF2
  case $bs in
    */*) bsopt="--bssplit=$bs" ;;
    *) bsopt="--bs=$bs" ;;
  esac
  echo "--name=m --ioengine=nbd --uri=$(uri_of "$sock") --rw=randwrite" \
       "$bsopt --offset=$off --size=$size --iodepth=8" \
       "--randrepeat=1 --randseed=$seed --verify=crc32c" \
       "--verify_fatal=1 --verify_state_save=0 --output=$T/fio-$sock-$seed.log"
}
# fio_write SOCK SEED SPEC [fio options]: write and read back.
fio_write ()
{
  a=$(fio_args "$1" "$2" "$3"); shift 3
  fio $a --do_verify=1 "$@" || { cat "$T"/fio-*.log >&2; return 1; }
}
# fio_verify SOCK SEED SPEC: the writes of that job are all there.
fio_verify ()
{
  a=$(fio_args "$1" "$2" "$3"); shift 3
  fio $a --verify_only "$@" || { cat "$T"/fio-*.log >&2; return 1; }
}

# A random-filled image of SIZE bytes in FORMAT: make_image PATH FORMAT SIZE
make_image ()
{
  head -c "$3" /dev/urandom > "$T/fill.raw"
  dd if=/dev/zero of="$T/fill.raw" bs=1M seek=8 count=8 conv=notrunc status=none
  truncate -s "$3" "$T/fill.raw"
  case $2 in
    raw) mv "$T/fill.raw" "$1" ;;
    vhd) qemu-img convert -O vpc -o subformat=dynamic,force_size=on "$T/fill.raw" "$1"; rm -f "$T/fill.raw" ;;
    qcow2) qemu-img convert -O qcow2 "$T/fill.raw" "$1"; rm -f "$T/fill.raw" ;;
  esac
}
# An empty image of the same kind.
make_empty ()
{
  "$VDIMOTION" create -f "$2" "$1" "$3" > /dev/null
}
