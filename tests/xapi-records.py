# Driven by test-xapi-records.sh: every record of every class vdimotiond
# serves has every field of xapi's datamodel, of xapi's type
# (tests/xapi-fields.json), with values that mean something; the pool of
# one; get_all_records_where; system.listMethods; the migrate arities.
#   xapi-records.py URL FIELDS_JSON RUN_VM(0|1)
import re
import sys
import xmlrpc.client

import xapi_checks
from xapi_checks import failure, ok

url, fields_json, run_vm = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
x = xmlrpc.client.ServerProxy(url)
with open(fields_json) as f:
    import json
    model = json.load(f)
CLASSES = ["pool", "host", "SR", "VDI", "VBD", "VM", "network", "task"]
ENUMS = model["enums"]
s = ok(x.session.login_with_password("root", "secret"))

# Every ref of every served class, to check that refs point somewhere.
refs = {}


def check_value(ty, v, where):
    """V, as xmlrpc.client decoded it, is of datamodel type TY."""
    m = re.fullmatch(r"\((.+) -> (.+)\) map", ty)
    if m:
        assert isinstance(v, dict), where
        for k, e in v.items():
            check_value(m.group(1), k, where + "[key]")
            check_value(m.group(2), e, where + "[" + k + "]")
        return
    if ty.endswith(" set"):
        assert isinstance(v, list), where
        for e in v:
            check_value(ty[:-4], e, where + "[]")
        return
    if ty.endswith(" ref"):
        assert isinstance(v, str) and v.startswith("OpaqueRef:"), (where, v)
        cls = ty[:-4]
        if v != "OpaqueRef:NULL" and cls in refs:
            assert v in refs[cls], (where, v, "not a", cls)
        return
    if ty.startswith("enum "):
        assert v in ENUMS[ty[5:]], (where, v)
        return
    if ty == "string":
        assert isinstance(v, str), where
    elif ty == "int":
        # int64: a decimal string on the wire, as xapi sends it.
        assert isinstance(v, str) and re.fullmatch(r"-?[0-9]+", v), (where, v)
    elif ty == "float":
        assert isinstance(v, float), (where, v)
    elif ty == "bool":
        assert isinstance(v, bool), (where, v)
    elif ty == "datetime":
        assert isinstance(v, xmlrpc.client.DateTime), (where, v)
    else:
        raise AssertionError("unknown type " + ty)


def check_record(cls, ref, rec):
    fields = model[cls]
    names = [f["name"] for f in fields]
    missing = [n for n in names if n not in rec]
    assert not missing, (cls, "lacks", missing)
    extra = [k for k in rec if k not in names]
    assert not extra, (cls, "has fields xapi has not", extra)
    for f in fields:
        check_value(f["type"], rec[f["name"]], cls + "." + f["name"])
    assert ref == "OpaqueRef:" + rec["uuid"], (ref, rec["uuid"])
    xapi_checks.checks += 1


# Objects of every class: a VDI, a VM with a disk (running, if the
# daemon can serve disks here), a task.
sr = ok(x.SR.get_all(s))[0]
vdi = ok(x.VDI.create(s, {"SR": sr, "name_label": "d0",
                          "virtual_size": str(1 << 20), "type": "user",
                          "sharable": False, "read_only": False,
                          "other_config": {}}))
vm = ok(x.VM.create(s, {"name_label": "vm1", "name_description": "a VM"}))
vbd = ok(x.VBD.create(s, {"VM": vm, "VDI": vdi, "userdevice": "0",
                          "mode": "RW", "type": "Disk"}))
halted = ok(x.VM.create(s, {"name_label": "vm2"}))
task = ok(x.Async.SR.scan(s, sr))
if run_vm:
    ok(x.VM.start(s, vm, False, False))

for cls in CLASSES:
    refs[cls] = set(ok(getattr(x, cls).get_all(s)))
    assert refs[cls], cls
assert len(refs["pool"]) == 1 and len(refs["host"]) == 1
for cls in CLASSES:
    all_records = ok(getattr(x, cls).get_all_records(s))
    assert set(all_records) == refs[cls], cls
    for ref, rec in all_records.items():
        check_record(cls, ref, rec)
        assert ok(getattr(x, cls).get_record(s, ref)).keys() == rec.keys()
        # Every field has its getter, defaults included.
        for f in ("uuid", "other_config", "allowed_operations"):
            if f in rec:
                getter = getattr(getattr(x, cls), "get_" + f)
                assert ok(getter(s, ref)) == rec[f], (cls, f)

# The pool of one: its master is this host, its default SR a real SR.
pool = next(iter(refs["pool"]))
host = next(iter(refs["host"]))
prec = ok(x.pool.get_record(s, pool))
assert ok(x.pool.get_master(s, pool)) == host
assert ok(x.pool.get_default_SR(s, pool)) in refs["SR"]
assert ok(x.pool.get_by_uuid(s, prec["uuid"])) == pool
failure(x.pool.get_record(s, host), "HANDLE_INVALID")
failure(x.pool.get_master(s, "OpaqueRef:NULL"), "HANDLE_INVALID")
ok(x.pool.set_name_label(s, pool, "the pool"))
ok(x.pool.set_name_description(s, pool, "of one"))
assert ok(x.pool.get_name_label(s, pool)) == "the pool"
assert ok(x.pool.get_by_name_label(s, "the pool")) == [pool]
ok(x.pool.add_to_other_config(s, pool, "xo:barrier:1", "42"))
failure(x.pool.add_to_other_config(s, pool, "xo:barrier:1", "43"),
        "MAP_DUPLICATE_KEY")
assert ok(x.pool.get_other_config(s, pool)) == {"xo:barrier:1": "42"}
ok(x.pool.remove_from_other_config(s, pool, "xo:barrier:1"))
ok(x.pool.remove_from_other_config(s, pool, "never there"))
ok(x.pool.set_other_config(s, pool, {"a": "1", "b": "2"}))
assert ok(x.pool.get_other_config(s, pool)) == {"a": "1", "b": "2"}
failure(x.pool.set_other_config(s, pool, {"a": 1}), "FIELD_TYPE_ERROR")
other_sr = [r for r in refs["SR"] if r != ok(x.pool.get_default_SR(s, pool))]
ok(x.pool.set_default_SR(s, pool, other_sr[0]))
assert ok(x.pool.get_default_SR(s, pool)) == other_sr[0]
failure(x.pool.set_default_SR(s, pool, "OpaqueRef:nope"), "HANDLE_INVALID")
failure(x.pool.set_default_SR(s, pool, vdi), "HANDLE_INVALID")
assert ok(x.pool.get_default_SR(s, pool)) == other_sr[0]
# The SDK's session.API_version: the master's major.minor.
assert ok(x.host.get_API_version_major(s, host)) == "2"
assert ok(x.host.get_API_version_minor(s, host)) == "23"
assert ok(x.host.get_API_version_vendor(s, host)) == "XenSource"

# The host: where clients reach it, and xapi's software_version keys.
hrec = ok(x.host.get_record(s, host))
assert hrec["address"] and hrec["address"] in url, (hrec["address"], url)
sv = hrec["software_version"]
for k in ("product_version", "product_version_text", "product_brand",
          "platform_name", "platform_version", "xapi", "hostname", "linux",
          "xencenter_min", "xencenter_max", "build_number", "date", "xen",
          "network_backend", "db_schema", "git_id", "xapi_build",
          "product_version_text_short"):
    assert k in sv, k
for k in ("product_version", "platform_version"):
    assert re.fullmatch(r"[0-9]+(\.[0-9]+)*", sv[k]), (k, sv[k])
assert hrec["enabled"] is True
assert not any(k == "local_SRs" for k in hrec)

# VMs: a running VM's domid is positive and stays; a halted one's is -1.
vrec = ok(x.VM.get_record(s, vm))
assert vrec["is_control_domain"] is False and vrec["is_a_template"] is False
assert vrec["VBDs"] == [vbd]
mem = [int(vrec[k]) for k in ("memory_static_min", "memory_dynamic_min",
                              "memory_dynamic_max", "memory_static_max")]
assert mem == sorted(mem) and int(vrec["memory_target"]) <= mem[3], mem
assert 1 <= int(vrec["VCPUs_at_startup"]) <= int(vrec["VCPUs_max"])
hrec2 = ok(x.VM.get_record(s, halted))
assert hrec2["domid"] == "-1" and hrec2["power_state"] == "Halted"
assert "start" in hrec2["allowed_operations"]
assert "clean_shutdown" not in hrec2["allowed_operations"]
assert hrec2["resident_on"] == "OpaqueRef:NULL"
if run_vm:
    assert vrec["power_state"] == "Running"
    assert int(vrec["domid"]) > 0
    assert ok(x.VM.get_domid(s, vm)) == vrec["domid"]
    assert vrec["resident_on"] == host
    assert "clean_shutdown" in vrec["allowed_operations"]
    assert "start" not in vrec["allowed_operations"]
    assert vm in ok(x.host.get_resident_VMs(s, host))
    assert int(ok(x.VM.get_domid(s, halted))) == -1

# get_all_records_where, with xapi's expressions and field names.
def where(cls, expr):
    return ok(getattr(x, cls).get_all_records_where(s, expr))


assert list(where("VM", 'field "name__label" = "vm1"')) == [vm]
assert list(where("VM", 'field "name_label" = "vm1"')) == [vm]
assert where("VM", 'field "name__label" = "vm1"')[vm] == \
    ok(x.VM.get_record(s, vm))
assert set(where("VM", "true")) == refs["VM"]
assert where("VM", "false") == {}
assert set(where("VM", 'not field "name__label" = "vm1"')) == \
    refs["VM"] - {vm}
assert set(where("VM", 'field "name__label" = "vm1" or '
                       'field "name__label" = "vm2"')) == {vm, halted}
assert set(where("VM", 'field "is_a_template" = "false" and '
                       'field "is_control_domain" = "false"')) == refs["VM"]
assert list(where("VM", 'field "power_state" = "Halted" and '
                        'field "uuid" = "%s"' % halted[10:])) == [halted]
assert list(where("VDI", 'field "SR" = "%s" and field "name__label" = "d0"'
                  % sr)) == [vdi]
assert list(where("pool", 'field "master" = "%s"' % host)) == [pool]
assert set(where("SR", "true")) == refs["SR"]
for bad in ("", "field", 'field "x" =', "x", "(true", "true true",
            '"unterminated', "not", "TRUE", "(" * 5000 + "true" + ")" * 5000):
    e = failure(x.VM.get_all_records_where(s, bad), "INVALID_VALUE")
    assert e[1] == bad[:64 * 1024] and e[2], e
e = failure(x.VM.get_all_records_where(s, 'field "no_such" = "x"'),
            "INTERNAL_ERROR")
assert e[1:] == ["missing field", "no_such", ""], e
failure(x.VM.get_all_records_where(s, 1), "FIELD_TYPE_ERROR")
failure(x.VM.get_all_records_where(s), "MESSAGE_PARAMETER_COUNT_MISMATCH")
failure(x.VM.get_all_records_where("OpaqueRef:nope", "true"),
        "SESSION_INVALID")

# system.listMethods: no session, a bare list, every generated name.
methods = x.system.listMethods()
assert isinstance(methods, list), methods
for cls in CLASSES:
    for f in model[cls]:
        assert cls + ".get_" + f["name"] in methods, (cls, f["name"])
    for m in ("get_all", "get_all_records", "get_all_records_where",
              "get_record", "get_by_uuid"):
        assert cls + "." + m in methods, (cls, m)
for m in ("session.login_with_password", "pool.set_default_SR",
          "pool.add_to_other_config", "VM.migrate_send", "VDI.create",
          "host.migrate_receive"):
    assert m in methods, m
assert not any(m.startswith("Async.") for m in methods)
assert len(methods) == len(set(methods))
assert x.system.listMethods(s) == methods  # xapi ignores arguments

# VM.assert_can_migrate takes 7 or 8 arguments, VM.migrate_send 7 to 9:
# the extra maps are accepted (the call gets to the destination token).
def not_count(r):
    assert r["Status"] == "Failure", r
    assert r["ErrorDescription"][0] != "MESSAGE_PARAMETER_COUNT_MISMATCH", r


dest = {"token": "nope"}
not_count(x.VM.assert_can_migrate(s, halted, dest, False, {}, {}, {}))
not_count(x.VM.assert_can_migrate(s, halted, dest, False, {}, {}, {}, {}))
failure(x.VM.assert_can_migrate(s, halted, dest, False, {}, {}, {}, {}, {}),
        "MESSAGE_PARAMETER_COUNT_MISMATCH")
for extra in ([], [{}], [{}, {}]):
    not_count(x.VM.migrate_send(s, halted, dest, False, {}, {}, {}, *extra))
failure(x.VM.migrate_send(s, halted, dest, False, {}, {}, {}, {}, {}, {}),
        "MESSAGE_PARAMETER_COUNT_MISMATCH")
failure(x.VM.migrate_send(s, halted, dest, False, {}, {}),
        "MESSAGE_PARAMETER_COUNT_MISMATCH")

if run_vm:
    ok(x.VM.shutdown(s, vm))
print("xapi-records: %d checks passed" % xapi_checks.checks)
