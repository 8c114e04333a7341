# Driven by test-backup-cbt-moves.sh: the XenAPI side of backups of a
# running VM's disk that moves and crashes (xmlrpc.client only; the
# guest is fio, run by the shell).  Each step prints what the next one
# needs; T/vm keeps the VM's ref for the steps after the first.
#   backup-cbt-moves.py setup URL T SIZE   a VDI of SIZE bytes (qcow2) in
#                                          sr1, CBT on, in a started VM;
#                                          prints "VDI-UUID SOCKET"
#   backup-cbt-moves.py move URL T [SR]    Async.VDI.pool_migrate of the
#                                          running VM's disk to SR (sr2);
#                                          prints the moved VDI's uuid
#   backup-cbt-moves.py disk URL T         prints "VDI-UUID SOCKET" of
#                                          the VM's disk
#   backup-cbt-moves.py migrate URL PEER CA T HANDOVER
#                                          Async.VM.migrate (live) of the
#                                          VM to PEER's sr1, handed over
#                                          once the file HANDOVER exists
#                                          (vdimotion-mm-none); prints
#                                          "VDI-UUID SOCKET" there
#   backup-cbt-moves.py restart URL T      the VM a host crash halted,
#                                          started again; prints SOCKET
import sys

import xapi_checks
from xapi_checks import ok


def vm_disk(x, s, vm):
    """The uuid and NBD socket of the running VM's only disk."""
    vbd = ok(x.VM.get_VBDs(s, vm))[0]
    vdi = ok(x.VBD.get_VDI(s, vbd))
    return (ok(x.VDI.get_uuid(s, vdi)),
            ok(x.VBD.get_other_config(s, vbd))["nbd-socket"])


def result(x, s, task):
    t = xapi_checks.wait_task(x, s, task, timeout=300)
    assert t["status"] == "success", t
    return t["result"][len("<value>"):-len("</value>")]


def setup(url, T, size):
    x, s = xapi_checks.login(url)
    sr = ok(x.SR.get_by_name_label(s, "sr1"))[0]
    vdi = ok(x.VDI.create(s, {
        "SR": sr, "name_label": "moving-disk", "virtual_size": size,
        "type": "user", "sharable": False, "read_only": False,
        "other_config": {}, "sm_config": {"image-format": "qcow2"}}))
    ok(x.VDI.enable_cbt(s, vdi))
    vm = ok(x.VM.create(s, {"name_label": "moving-vm"}))
    ok(x.VBD.create(s, {"VM": vm, "VDI": vdi, "userdevice": "0",
                        "mode": "RW", "type": "Disk", "bootable": False,
                        "empty": False, "other_config": {}}))
    ok(x.VM.start(s, vm, False, False))
    with open(T + "/vm", "w") as f:
        f.write(vm)
    print(*vm_disk(x, s, vm))


def the_vm(T):
    with open(T + "/vm") as f:
        return f.read()


def move(url, T, to="sr2"):
    x, s = xapi_checks.login(url)
    vm = the_vm(T)
    vdi = ok(x.VBD.get_VDI(s, ok(x.VM.get_VBDs(s, vm))[0]))
    sr2 = ok(x.SR.get_by_name_label(s, to))[0]
    moved = result(x, s, ok(x.Async.VDI.pool_migrate(s, vdi, sr2, {})))
    assert ok(x.VDI.get_SR(s, moved)) == sr2, "not moved to " + to
    assert ok(x.VDI.get_cbt_enabled(s, moved)), "CBT off after the move"
    print(ok(x.VDI.get_uuid(s, moved)))


def migrate(url, peer, ca, T, handover):
    x, s = xapi_checks.login(url, ca)
    px, ps = xapi_checks.login(peer, ca)
    host = ok(px.host.get_all(ps))[0]
    sr = ok(px.SR.get_by_name_label(ps, "sr1"))[0]
    token = ok(px.VM.migrate_receive(ps, host, sr, {}))
    vm = result(x, s, ok(x.Async.VM.migrate(
        s, the_vm(T), token, True,
        {"handover-file": handover, "mm-timeout": "300"})))
    assert ok(px.VM.get_power_state(ps, vm)) == "Running"
    with open(T + "/vm", "w") as f:
        f.write(vm)
    print(*vm_disk(px, ps, vm))


def restart(url, T):
    x, s = xapi_checks.login(url)
    vm = the_vm(T)
    assert ok(x.VM.get_power_state(s, vm)) == "Halted", \
        "the VM survived its disk server"
    ok(x.VM.start(s, vm, False, False))
    print(vm_disk(x, s, vm)[1])


def disk(url, T):
    x, s = xapi_checks.login(url)
    print(*vm_disk(x, s, the_vm(T)))


step, args = sys.argv[1], sys.argv[2:]
{"setup": setup, "move": move, "migrate": migrate,
 "restart": restart, "disk": disk}[step](*args)
