#!/bin/sh
# vdimotiond under hostile XML-RPC: bodies that crashed or stalled it
# (<i8>A</i8>, 200,000 nested arrays, an entity bomb, DTDs with external
# entities, values of the wrong form, invalid UTF-8, a slow 16 MiB body)
# get a XenAPI failure or a 4xx while another logged-in client keeps
# getting answers within a second; emoji and CJK round-trip; stored
# strings that cannot be sent are INTERNAL_ERROR; the daemon then stops
# cleanly on SIGTERM.
. "$srcdir/functions.sh"
. "$srcdir/xapi-functions.sh"

start_vdimotiond --max-request-size 16777216
python3 "$srcdir/xapi-hostile.py" "$url" "$T/sr1" "$vdimotiond_pid"
stop_vdimotiond
