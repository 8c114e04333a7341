# Shared by the XenAPI test scripts: assertions on XenAPI replies, counted
# so each script can say how many checks passed.
checks = 0


def ok(r):
    """A Success reply; returns its Value."""
    global checks
    assert r["Status"] == "Success", r
    checks += 1
    return r["Value"]


def failure(r, code):
    """A Failure reply whose error code is CODE; returns ErrorDescription."""
    global checks
    assert r["Status"] == "Failure", r
    assert r["ErrorDescription"][0] == code, r
    checks += 1
    return r["ErrorDescription"]
