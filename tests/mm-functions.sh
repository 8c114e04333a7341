# Sourced by tests/test-mm-*.sh after functions.sh: where the memory
# migrators are, and a one-shot QMP client.
MM_NONE=${MM_NONE:-$top_builddir/memory-migrators/vdimotion-mm-none}
MM_QEMU=${MM_QEMU:-$top_builddir/memory-migrators/vdimotion-mm-qemu}
requires python3
# Under ASan: only libraries' own leaks are suppressed (xapi-shim/lsan.supp).
if [ -n "${VDM_SANITIZED-}" ] || [ -n "${ASAN_OPTIONS-}" ]; then
  LSAN_OPTIONS="suppressions=$top_srcdir/xapi-shim/lsan.supp:fast_unwind_on_malloc=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
  export LSAN_OPTIONS
fi

# describe RUN_DIR QMP_SOCKET SRC_SOCK DST_SOCK [LIVE [OPTIONS-JSON]]: a
# description of one VM with one disk, on stdout.
describe ()
{
  cat <<JSON
{"vm": {"uuid": "6c1e5a0e-0d7b-4a52-9a0e-3f1b2c4d5e6f", "name_label": "vm one",
        "other_config": {"qmp-socket": "$2"}},
 "source": {"host": "a4b0c1d2-0000-4000-8000-000000000001", "url": "https://127.0.0.1:4431/"},
 "destination": {"host": "a4b0c1d2-0000-4000-8000-000000000002", "url": "https://127.0.0.1:4432/",
                 "run_dir": "$1"},
 "disks": [{"userdevice": "0", "vdi": "0b9a7c3e-1111-4222-8333-944455556666",
            "virtual_size": 4194304, "source_socket": "$3", "destination_socket": "$4"}],
 "live": ${5:-true}, "options": ${6:-{\}}}
JSON
}

# qmp SOCKET COMMAND [ARGUMENTS-JSON]: run one QMP command, print its
# "return" as JSON; exits 1 with QEMU's error.
qmp ()
{
  python3 - "$@" <<'PY'
import json, socket, sys
path, cmd = sys.argv[1], sys.argv[2]
args = json.loads(sys.argv[3]) if len(sys.argv) > 3 else None
s = socket.socket(socket.AF_UNIX)
s.settimeout(20)
s.connect(path)
f = s.makefile("rw")
def reply():
    while True:
        m = json.loads(f.readline())
        if "event" not in m:
            return m
reply()  # greeting
for c, a in (("qmp_capabilities", None), (cmd, args)):
    f.write(json.dumps({"execute": c, **({"arguments": a} if a else {})}) + "\n")
    f.flush()
    r = reply()
    if "error" in r:
        sys.exit("qmp %s: %s" % (c, r["error"]["desc"]))
print(json.dumps(r["return"]))
PY
}
