#!/usr/bin/env python3
"""Empty a storage repository of a vdimotiond host into others while its
VMs run, with nothing but Python's standard xmlrpc.client: a script to
read and adapt (vdimotiond(8), "Evacuating an SR").

usage: evacuate-sr.py URL SR DEST-SR[,DEST-SR...] [--user USER]
                      [--password-file FILE] [--parallel N]
                      [--order size|name] [--exclude VDI]... [--dry-run]

  URL        the host, http://HOST:PORT/ or https://HOST/ (the system's
             trusted certificates; set SSL_CERT_FILE for a self-signed one)
  SR         the SR to empty, by uuid or name label; DEST-SR likewise
  --exclude  a VDI (uuid or name label) whose chain stays; repeatable

What it does, step by step: log in; ask for the plan (SR.evacuate_plan)
and print it, the refused chains with their reasons; stop there with
--dry-run, or if anything is refused (exclude it and run again); else
start Async.SR.evacuate, poll the task's progress and other_config (each
VDI's state) every second, and print the report.  Ctrl-C cancels the
task and waits for it to end.  Exit status 1 if any VDI failed.
"""
import argparse
import html
import json
import sys
import time
import xmlrpc.client


def ok(r):
    """The Value of a XenAPI answer, or exit with its ErrorDescription."""
    if r["Status"] != "Success":
        sys.exit("evacuate-sr: %s" % " ".join(r["ErrorDescription"]))
    return r["Value"]


def lookup(x, s, cls, name):
    """A ref by uuid or name label, as the vdimotion CLI finds objects."""
    klass = getattr(x, cls)
    r = klass.get_by_uuid(s, name)
    if r["Status"] == "Success":
        return r["Value"]
    refs = ok(klass.get_by_name_label(s, name))
    if len(refs) != 1:
        sys.exit("evacuate-sr: %s %s: %s" % (
            cls, name, "no such object" if not refs else "several share it"))
    return refs[0]


def print_plan(plan):
    """The chains (bottom first), what is refused and why, the totals."""
    for k, c in enumerate(plan["chains"], 1):
        fate = ("REFUSED: " + c["refused"] if c["refused"] else
                "to SR " + c["dest_sr"])
        print("chain %d (%s, %d bytes): %s" % (
            k, "live" if c["live"] else "offline", c["bytes"], fate))
        for v in c["vdis"]:
            print("    %-8s %s %s" % ("snapshot" if v["is_snapshot"] else "",
                                      v["uuid"], v["name_label"]))
    for v in plan["excluded"]:
        print("excluded: %s %s" % (v["uuid"], v["name_label"]))
    print("%d bytes to move, about %.0f s; %s" % (
        plan["totals"]["bytes"], plan["estimated_seconds"],
        "the plan fits" if plan["fits"] else "the plan does not fit"))


def wait(x, s, task):
    """Poll TASK until it ends; a line per change of the report so far
    (other_config["evacuate-report"]: each VDI's state)."""
    last = None
    try:
        while True:
            t = ok(x.task.get_record(s, task))
            if t["status"] not in ("pending", "cancelling"):
                return t
            so_far = t["other_config"].get("evacuate-report")
            if so_far:
                r = json.loads(so_far)
                line = "%5.1f%%  %d/%d moved  moving: %s" % (
                    100 * t["progress"], r["totals"]["moved"],
                    r["totals"]["vdis"],
                    " ".join(v["name_label"] for v in r["vdis"]
                             if v["state"] == "moving") or "-")
                if line != last:
                    print(line, flush=True)
                    last = line
            time.sleep(1)
    except KeyboardInterrupt:
        print("interrupted: cancelling the evacuation", file=sys.stderr)
        ok(x.task.cancel(s, task))
        return wait(x, s, task)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("url")
    ap.add_argument("sr")
    ap.add_argument("dest")
    ap.add_argument("--user", default="root")
    ap.add_argument("--password-file")
    ap.add_argument("--parallel")
    ap.add_argument("--order", choices=("size", "name"))
    ap.add_argument("--exclude", action="append", default=[])
    ap.add_argument("--dry-run", action="store_true")
    a = ap.parse_args()
    password = ""
    if a.password_file:
        with open(a.password_file) as f:
            password = f.readline().rstrip("\n")

    x = xmlrpc.client.ServerProxy(a.url)
    s = ok(x.session.login_with_password(a.user, password, "1.0",
                                         "evacuate-sr.py"))
    try:
        sr = lookup(x, s, "SR", a.sr)
        dests = [lookup(x, s, "SR", d) for d in a.dest.split(",") if d]
        options = {}
        if a.parallel:
            options["parallel"] = a.parallel
        if a.order:
            options["order"] = a.order
        if a.exclude:
            options["exclude"] = ",".join(
                ok(x.VDI.get_uuid(s, lookup(x, s, "VDI", v)))
                for v in a.exclude)

        plan = json.loads(ok(x.SR.evacuate_plan(s, sr, dests, options)))
        print_plan(plan)
        if a.dry_run:
            return 0
        if not plan["fits"]:
            print("evacuate-sr: nothing started: exclude the refused "
                  "chains (--exclude VDI) and run again", file=sys.stderr)
            return 1

        task = ok(x.Async.SR.evacuate(s, sr, dests, options))
        t = wait(x, s, task)
        if t["status"] != "success":
            print("evacuate-sr: the task ended %s: %s" % (
                t["status"], " ".join(t["error_info"])), file=sys.stderr)
        # The result is XML-RPC text, "<value>...</value>", as xapi's: the
        # report, also when a chain failed or the task was cancelled.
        if not t["result"]:
            return 1
        report = json.loads(html.unescape(t["result"][len("<value>"):
                                                      -len("</value>")]))
        for v in report["vdis"]:
            print("%-8s %s %-20s -> %s  %d bytes in %.1f s %s" % (
                v["state"], v["from"]["uuid"], v["name_label"],
                v["to"]["uuid"] or "-", v["bytes"], v["seconds"],
                v["error"] or ""))
        tot = report["totals"]
        print("%d moved, %d failed, %d skipped; %d bytes, %.0f MB/s" % (
            tot["moved"], tot["failed"], tot["skipped"], tot["bytes"],
            tot["bytes_per_second"] / 1e6))
        ok(x.task.destroy(s, task))
        return 0 if t["status"] == "success" and tot["failed"] == 0 else 1
    finally:
        x.session.logout(s)


if __name__ == "__main__":
    sys.exit(main())
