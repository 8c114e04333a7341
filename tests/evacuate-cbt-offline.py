# Driven by test-xapi-cbt-live-move-xfs.sh: an offline disk with CBT
# (a halted VM's) whose changed-block logs an SR's evacuation carries.
#   evacuate-cbt-offline.py before URL
#       in sr1, a 4 MiB VDI with CBT, in a VM that writes 64 KiB blocks
#       (qemu-io through its disk server): block 1, snapshot S1, blocks
#       3 and 4, snapshot S2, block 6; the VM halted.  Prints
#       "LEAF S1 S2 LCB(S1,LEAF) LCB(S2,LEAF)" (base64 bitmaps).
#   evacuate-cbt-offline.py after URL LEAF S1 S2
#       the same line for the VDIs the evacuation made of them (found by
#       other_config["vdimotion-moved-from"]), asserted in sr2.
import subprocess
import sys

import xapi_checks
from xapi_checks import ok

MOVED_FROM = "vdimotion-moved-from"


def write(x, s, vbd, block):
    sock = ok(x.VBD.get_other_config(s, vbd))["nbd-socket"]
    subprocess.run(["qemu-io", "-f", "raw", "-c",
                    "write -P 0x5a %d 64k" % (block * 65536),
                    "nbd+unix:///?socket=" + sock],
                   check=True, stdout=subprocess.DEVNULL)


def line(x, s, leaf, s1, s2):
    lcb = x.VDI.list_changed_blocks
    return " ".join([ok(x.VDI.get_uuid(s, v)) for v in (leaf, s1, s2)]
                    + [ok(lcb(s, s1, leaf)), ok(lcb(s, s2, leaf))])


def before(url):
    x, s = xapi_checks.login(url)
    sr1 = ok(x.SR.get_by_name_label(s, "sr1"))[0]
    leaf = ok(x.VDI.create(s, {
        "SR": sr1, "name_label": "offline-disk", "virtual_size": str(4 << 20),
        "type": "user", "sharable": False, "read_only": False,
        "other_config": {}, "sm_config": {"image-format": "qcow2"}}))
    ok(x.VDI.enable_cbt(s, leaf))
    vm, vbd = xapi_checks.new_vm(x, s, "offline-vm", leaf)
    write(x, s, vbd, 1)
    s1 = ok(x.VDI.snapshot(s, leaf, {}))
    write(x, s, vbd, 3)
    write(x, s, vbd, 4)
    s2 = ok(x.VDI.snapshot(s, leaf, {}))
    write(x, s, vbd, 6)
    ok(x.VM.clean_shutdown(s, vm))
    print(line(x, s, leaf, s1, s2))


def after(url, *was):
    x, s = xapi_checks.login(url)
    sr2 = ok(x.SR.get_by_name_label(s, "sr2"))[0]
    now = {}
    for ref, r in ok(x.VDI.get_all_records(s)).items():
        for old in r["other_config"].get(MOVED_FROM, "").split(","):
            if old in was:
                assert r["SR"] == sr2, (old, "not in sr2")
                assert r["cbt_enabled"], (old, "CBT off after the move")
                now[old] = ref
    assert len(now) == 3, ("not all moved", was, now)
    print(line(x, s, *[now[u] for u in was]))


step, args = sys.argv[1], sys.argv[2:]
{"before": before, "after": after}[step](*args)
