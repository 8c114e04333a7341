# Driven by test-xapi-cbt-crash.sh in steps (the daemon is killed
# between them):
#   start [off]      a VM with one 16 MiB raw disk with CBT on (turned on
#                    as the file SR does it: tests/cbtlog-tool enable),
#                    or with "off" without CBT, running; prints the log's
#                    path and the disk's socket
#   write SOCK OFF   4 KiB written through the VM's disk at OFF
#   field KEY        KEY of the log, read by tests/cbtlog.py
#   restart          the VM was halted by the restart (its disk server
#                    died): start it again
#   stop             shut the VM down cleanly
#   enable, disable  VDI.enable_cbt, VDI.disable_cbt of the disk (the
#                    call may fail: the daemon kills itself in it)
#   xapi-cbt-crash.py URL T STEP [ARGS]
import os
import subprocess
import sys
import xmlrpc.client

import cbtlog
import xapi_checks
from xapi_checks import ok

url, T, step = sys.argv[1:4]
args = sys.argv[4:]
x = xmlrpc.client.ServerProxy(url)
# Some steps run while the daemon is down: log in only for the others.
s = (ok(x.session.login_with_password("root", "secret", "1.0", "test"))
     if step in ("start", "restart", "stop", "enable", "disable") else None)
SIZE = 16 << 20
state = os.path.join(T, "cbt-crash")

if step == "start":
    sr = ok(x.SR.get_by_name_label(s, "sr1"))[0]
    vdi = xapi_checks.new_vdi(x, s, sr, "disk0", SIZE, "raw")
    log = os.path.join(T, "sr1", ok(x.VDI.get_uuid(s, vdi)) + ".cbtlog")
    if args != ["off"]:
        subprocess.check_call([os.environ["CBTLOG"], "enable", log,
                               str(SIZE)])
    vm, vbd = xapi_checks.new_vm(x, s, "vm1", vdi)
    sock = ok(x.VBD.get_other_config(s, vbd))["nbd-socket"]
    with open(state, "w") as f:
        f.write("%s %s %s %s\n" % (vm, log, sock, vdi))
    print(log, sock)
elif step == "write":
    subprocess.check_call(
        ["qemu-io", "-f", "raw", "nbd+unix:///?socket=" + args[0],
         "-c", "write -P 0x5a %s 4k" % args[1]], stdout=subprocess.DEVNULL)
else:
    with open(state) as f:
        vm, log, sock, vdi = f.read().split()
    if step == "field":
        print(cbtlog.read(log)[args[0]])
    elif step == "restart":
        assert ok(x.VM.get_power_state(s, vm)) == "Halted"
        ok(x.VM.start(s, vm, False, False))
        # The disk server takes the log when it starts.
        assert cbtlog.read(log)["consistent"] == 0
    elif step == "stop":
        ok(x.VM.clean_shutdown(s, vm))
    elif step in ("enable", "disable"):
        ok(getattr(x.VDI, step + "_cbt")(s, vdi))
    else:
        sys.exit("unknown step " + step)
