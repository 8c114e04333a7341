# Shared by the XenAPI test scripts: assertions on XenAPI replies, counted
# so each script can say how many checks passed, logging in, a VDI and a
# VM using it made the usual way, a disk imported over HTTP, fio on a
# VM's disk, and a cross-host migration up to its handover.
import os

checks = 0

# The factor by which "at once" and "soon after" bounds grow under the
# sanitizers (VDM_SANITIZED), where every call of the daemon is several
# times slower: such a bound proves that nothing waited for a timeout
# many times longer, not how fast the daemon is.
SLOW = 4 if os.environ.get("VDM_SANITIZED") else 1


def ok(r):
    """A Success reply; returns its Value."""
    global checks
    assert r["Status"] == "Success", r
    checks += 1
    return r["Value"]


def wait_until(cond, what, timeout=300):
    """Call COND every 50 ms until it returns a true value, and return
    that value; fail saying WHAT (a string, or a function of COND's last
    value) after TIMEOUT seconds.  The deadline only bounds a hang: a
    loaded machine under the sanitizers may need minutes where a
    second would do."""
    import time
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        assert time.monotonic() < deadline, \
            what(v) if callable(what) else what
        time.sleep(0.05)


def failure(r, code):
    """A Failure reply whose error code is CODE; returns ErrorDescription."""
    global checks
    assert r["Status"] == "Failure", r
    assert r["ErrorDescription"][0] == code, r
    checks += 1
    return r["ErrorDescription"]


def login(url, ca=None, originator="t"):
    """A proxy for URL (over HTTPS trusting the certificate in the file
    CA, whatever host name it gives, when CA is given) and a session of
    root's (password "secret") on it, logged in as ORIGINATOR:
    (proxy, session)."""
    import ssl
    import xmlrpc.client
    ctx = None
    if ca:
        ctx = ssl.create_default_context(cafile=ca)
        ctx.check_hostname = False
    x = xmlrpc.client.ServerProxy(url, context=ctx)
    return x, ok(x.session.login_with_password("root", "secret", "1.0",
                                               originator))


def migration_hosts(src_url, dst_url, ca):
    """Both ends of a cross-host migration test (two vdimotiond over
    HTTPS, as test-xapi-cbt-migrate.sh starts them), logged in, with the
    SR "sr1" of each: (local, ls, src_sr, remote, rs, dst_sr)."""
    local, ls = login(src_url, ca)
    remote, rs = login(dst_url, ca)
    return (local, ls, ok(local.SR.get_by_name_label(ls, "sr1"))[0],
            remote, rs, ok(remote.SR.get_by_name_label(rs, "sr1"))[0])


def new_vdi(x, s, sr, name, size, image_format):
    """VDI.create on SR: NAME_LABEL NAME, SIZE bytes, an image of
    IMAGE_FORMAT (raw, vhd, qcow2), no other_config; its ref."""
    return ok(x.VDI.create(s, {
        "SR": sr, "name_label": name, "virtual_size": str(size),
        "other_config": {}, "sm_config": {"image-format": image_format}}))


def new_vm(x, s, name, vdi, start=True):
    """VM.create NAME_LABEL NAME with VDI as its disk "0" (a VBD, RW),
    started unless START is false: (vm, vbd)."""
    vm = ok(x.VM.create(s, {"name_label": name}))
    vbd = ok(x.VBD.create(s, {"VM": vm, "VDI": vdi, "userdevice": "0",
                              "mode": "RW"}))
    if start:
        ok(x.VM.start(s, vm, False, False))
    return vm, vbd


def import_vdi(url, s, vdi, path, image_format):
    """PUT the file PATH, an image of IMAGE_FORMAT (raw, vhd), into VDI
    through URL's /import_raw_vdi, as session S; asserts 200."""
    import http.client
    import os
    import urllib.parse
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port)
    with open(path, "rb") as body:
        conn.request("PUT", "/import_raw_vdi?" + urllib.parse.urlencode(
            {"session_id": s, "vdi": vdi, "format": image_format}),
            body=body, headers={"Content-Length": str(os.path.getsize(path))})
        r = conn.getresponse()
        assert r.status == 200, (r.status, r.read())
    conn.close()


def fio(T, sock, seed, offset, size, verify_only=False, background=False,
        rate=None, bs="4k"):
    """fio through an NBD socket (a VM's disk): random BS writes with
    crc32c verify, or with VERIFY_ONLY a check that they are all there.
    Its log goes to T.  Returns the exit code, or with BACKGROUND the
    running process."""
    import subprocess
    args = ["fio", "--name=vm", "--ioengine=nbd",
            "--uri=nbd+unix:///?socket=" + sock, "--rw=randwrite",
            "--bs=%s" % bs, "--offset=%d" % offset, "--size=%d" % size,
            "--iodepth=8", "--randrepeat=1", "--randseed=%d" % seed,
            "--verify=crc32c", "--verify_fatal=1", "--verify_state_save=0",
            "--output=%s/fio-%d-%s.log" % (T, seed,
                                            "v" if verify_only else "w")]
    args.append("--verify_only" if verify_only else "--do_verify=1")
    if rate:
        args.append("--rate_iops=1000000,%d" % rate)
    p = subprocess.Popen(args)
    return p if background else p.wait()


def migrate_until_handover(local, ls, remote, rs, vm, dst_sr, handover,
                           dst_dir):
    """Async.VM.migrate of VM (on LOCAL) to REMOTE's SR DST_SR with
    vdimotion-mm-none's HANDOVER file; returns the task once the mirrors
    are in sync and the destination armed its changed-block log in
    DST_DIR: the migrator then waits for the "guest" to stop (create
    HANDOVER)."""
    import glob
    import time
    host = ok(remote.host.get_all(rs))[0]
    token = ok(remote.VM.migrate_receive(rs, host, dst_sr, {}))
    task = ok(local.Async.VM.migrate(ls, vm, token, True,
                                     {"handover-file": handover}))
    deadline = time.monotonic() + 300
    while not glob.glob(os.path.join(dst_dir, "*.cbtlog")):
        t = ok(local.task.get_record(ls, task))
        assert t["status"] == "pending", t
        assert time.monotonic() < deadline, "the destination armed no log"
        time.sleep(0.05)
    return task


def vbd_sockets(x, s, vm):
    """{userdevice: the NBD socket of the running VM's disk}."""
    out = {}
    for vbd in ok(x.VM.get_VBDs(s, vm)):
        r = ok(x.VBD.get_record(s, vbd))
        out[r["userdevice"]] = r["other_config"]["nbd-socket"]
    return out


def wait_task(x, s, task, timeout=600):
    """Poll the task until it ends (neither pending nor cancelling); its
    record.  TIMEOUT (seconds) only bounds a hang: a loaded machine
    under the sanitizers takes minutes where a second would do."""
    import time
    deadline = time.monotonic() + timeout
    while True:
        t = ok(x.task.get_record(s, task))
        if t["status"] not in ("pending", "cancelling"):
            return t
        assert time.monotonic() < deadline, ("the task never ended", t)
        time.sleep(0.05)


def nbd_connect(T, info, exportname=None):
    """A TLS NBD connection (python3-libnbd) to a vdi_nbd_server_info of
    VDI.get_nbd_info, trusting its cert (written under T), asking for its
    exportname or EXPORTNAME."""
    import os
    import nbd
    certs = os.path.join(T, "certs-%s" % info["port"])
    os.makedirs(certs, exist_ok=True)
    with open(os.path.join(certs, "ca-cert.pem"), "w") as f:
        f.write(info["cert"])
    h = nbd.NBD()
    h.set_tls(nbd.TLS_REQUIRE)
    h.set_tls_certificates(certs)
    h.set_export_name(info["exportname"] if exportname is None
                      else exportname)
    h.connect_tcp(info["address"], str(info["port"]))
    return h
