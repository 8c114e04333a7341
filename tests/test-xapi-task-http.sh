#!/bin/sh
# Tasks a client makes (task.create, other_config, task.set_*) and xapi's
# disk data URLs as stock clients use them: a task_id driven to its end
# (progress, result, error_info), vdi= by uuid, the session in a cookie
# or as HTTP Basic auth, the import answered before its body, Xen
# Orchestra's empty probe and its 1 PiB stream, a chunked upload
# (tests/xapi-task-http.py).
. "$srcdir/functions.sh"
. "$srcdir/xapi-functions.sh"
requires qemu-img
requires qemu-io

# An 8 MiB dynamic VHD with data here and there, and its raw form.
size=$((8 * 1024 * 1024))
qemu-img create -q -f vpc -o subformat=dynamic,force_size=on "$T/src.vhd" $size
qemu-io -f vpc -c 'write -P 0xab 0 1M' -c 'write -P 0xcd 3M 2M' \
  -c "write -P 0x5a $((size - 4096)) 4096" "$T/src.vhd" > /dev/null
qemu-img convert -O raw "$T/src.vhd" "$T/src.raw"

start_vdimotiond
PYTHONPATH="$srcdir${PYTHONPATH:+:$PYTHONPATH}" \
  python3 "$srcdir/xapi-task-http.py" "$url" "$T" || fail "xapi-task-http.py"
grep -q "answered first" "$T/vdimotiond.log" || fail "no import answered first"
stop_vdimotiond
