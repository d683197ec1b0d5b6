#!/usr/bin/env python3
"""A stand-in for flotillad's fleet v1 API (and its status and journal endpoints) for
flotctl_fleet.sh: it answers with the JSON shapes of fleet's API (INVENTORY section 6) and places
units at once with a toy scheduler, so flotctl's tables, messages and blocking can be checked
without a cluster. Every request is appended to the log file as one JSON line.

usage: fleet_stub.py PORT LOGFILE
"""
import fnmatch
import hashlib
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

MACHINES = [
    {"id": "3d1219c7c4c5404aaa1f6d2a48adfda4", "primaryIP": "127.0.0.1",
     "metadata": {"role": "test", "region": "local"}},
    {"id": "22222222c4c5404aaa1f6d2a48adfda4", "primaryIP": "127.0.0.2",
     "metadata": {"region": "other", "role": "test"}},
]
UNITS = {}
LOG = None


def opts_get(u, section, name):
    vals = [o["value"] for o in u.get("options", [])
            if o["section"] == section and o["name"] == name]
    return vals


def serialize(options):
    out, last = [], None
    for o in options:
        if o["section"] != last:
            if last is not None:
                out.append("\n")
            out.append("[%s]\n" % o["section"])
            last = o["section"]
        out.append("%s=%s\n" % (o["name"], o["value"]))
    return "".join(out)


def is_global(u):
    g = opts_get(u, "X-Fleet", "Global")
    return bool(g) and g[-1].lower() == "true"


def schedule(name):
    """(machine id or "", reason or "") for a unit that wants to run."""
    u = UNITS[name]
    meta = opts_get(u, "X-Fleet", "MachineMetadata")
    conflicts = opts_get(u, "X-Fleet", "Conflicts")
    for m in sorted(MACHINES, key=lambda m: m["id"], reverse=True):
        ok = True
        for kv in meta:
            k, _, v = kv.partition("=")
            if m["metadata"].get(k) != v:
                ok = False
        for other, ou in UNITS.items():
            if other == name or ou.get("_machine") != m["id"]:
                continue
            if any(fnmatch.fnmatchcase(other, c) for c in conflicts):
                ok = False
        if ok:
            return m["id"], ""
    if meta:
        return "", "no machine has metadata %s" % ",".join(meta)
    return "", "every machine runs a unit that conflicts with it"


def view(name):
    u = UNITS[name]
    out = {"name": name, "desiredState": u["desiredState"], "options": u["options"]}
    if is_global(u):
        return out
    if u["desiredState"] in ("loaded", "launched"):
        if not u.get("_machine"):
            u["_machine"], reason = schedule(name)
            if reason:
                out["reason"] = reason
        out["machineID"] = u.get("_machine", "")
        out["currentState"] = u["desiredState"] if u.get("_machine") else "inactive"
    else:
        u.pop("_machine", None)
        out["currentState"] = "inactive"
    return out


def states():
    res = []
    for name in sorted(UNITS):
        u = UNITS[name]
        if name.endswith("@.service"):
            continue
        h = hashlib.sha1(serialize(u["options"]).encode()).hexdigest()
        machines = []
        if is_global(u):
            if u["desiredState"] != "inactive":
                machines = sorted(m["id"] for m in MACHINES)
        else:
            v = view(name)
            if v.get("machineID") and v["desiredState"] != "inactive":
                machines = [v["machineID"]]
        for mid in machines:
            failing = any("/bin/false" in x for x in opts_get(u, "Service", "ExecStart"))
            if u["desiredState"] == "launched":
                act, sub = ("failed", "failed") if failing else ("active", "running")
            else:
                act, sub = "inactive", "dead"
            res.append({"hash": h, "machineID": mid, "name": name, "systemdActiveState": act,
                        "systemdLoadState": "loaded", "systemdSubState": sub})
    return res


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def send(self, code, obj=None, text=None, ctype="application/json"):
        body = b""
        if obj is not None:
            body = json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()
        elif text is not None:
            body = text.encode()
        self.send_response(code)
        self.send_header("Server", "fleetd/v1.0.0")
        if body or code not in (201, 204):
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def err(self, code, msg):
        self.send(code, {"error": {"code": code, "message": msg}})

    def handle_any(self, method):
        url = urlsplit(self.path)
        path, q = unquote(url.path), parse_qs(url.query)
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n).decode() if n else ""
        with open(LOG, "a") as f:
            f.write(json.dumps({"method": method, "path": path, "query": url.query,
                                "body": body, "ctype": self.headers.get("Content-Type")}) + "\n")
        if path == "/fleet/v1/machines" and method == "GET":
            return self.send(200, {"machines": MACHINES})
        if path == "/fleet/v1/units" and method == "GET":
            units = [view(k) for k in sorted(UNITS)]
            # two pages, to exercise nextPageToken
            if "nextPageToken" in q:
                return self.send(200, {"units": units[2:]} if units[2:] else {})
            if len(units) > 2:
                return self.send(200, {"units": units[:2], "nextPageToken": "ZAACAA=="})
            return self.send(200, {"units": units} if units else {})
        if path.startswith("/fleet/v1/units/"):
            name = path[len("/fleet/v1/units/"):]
            if method == "GET":
                if name not in UNITS:
                    return self.err(404, "unit does not exist")
                return self.send(200, view(name))
            if method == "DELETE":
                if name not in UNITS:
                    return self.err(404, "unit does not exist")
                del UNITS[name]
                return self.send(204)
            if method == "PUT":
                if self.headers.get("Content-Type", "").split(";")[0] != "application/json":
                    return self.err(415, "only acceptable Content-Type is application/json")
                req = json.loads(body)
                if req.get("options"):
                    UNITS[name] = {"desiredState": req.get("desiredState") or "inactive",
                                   "options": req["options"]}
                    return self.send(201)
                if name not in UNITS:
                    return self.err(409, "unit does not exist and options field empty")
                if not req.get("desiredState"):
                    return self.err(409, "must provide DesiredState to update existing unit")
                if name.endswith("@.service") and req["desiredState"] != "inactive":
                    return self.err(400, 'cannot activate template "%s"' % name)
                UNITS[name]["desiredState"] = req["desiredState"]
                return self.send(204)
        if path == "/fleet/v1/state":
            st = states()
            if "unitName" in q:
                st = [s for s in st if s["name"] == q["unitName"][0]]
            return self.send(200, {"states": st} if st else {})
        if path.startswith("/fleet/v1/state/"):
            name = path[len("/fleet/v1/state/"):]
            st = [s for s in states() if s["name"] == name]
            if not st:
                return self.err(404, "unit state does not exist")
            return self.send(200, st[0])
        if path.startswith("/_flotilla/v1/status/"):
            name = path[len("/_flotilla/v1/status/"):]
            mid = q.get("machine", [""])[0]
            st = [s for s in states() if s["name"] == name and s["machineID"] == mid]
            if not st:
                return self.err(404, "unit %s does not run on this machine" % name)
            u = UNITS[name]
            desc = opts_get(u, "Unit", "Description")
            failed = st[0]["systemdActiveState"] == "failed"
            return self.send(200, {
                "unit": name, "description": desc[-1] if desc else "", "machineID": mid,
                "hostname": "core-04", "loadState": "loaded",
                "activeState": st[0]["systemdActiveState"], "subState": st[0]["systemdSubState"],
                "since": int((time.time() - 50) * 1e9), "mainPID": 1776,
                "mainCommand": "/usr/bin/docker run --name python-service -P x",
                "processes": [
                    {"kind": "ExecStartPre", "command": "/usr/bin/docker kill python-service",
                     "pid": 1655, "exitCode": 1, "exitSignal": 0},
                    {"kind": "ExecStartPre", "command": "/usr/bin/docker rm python-service",
                     "pid": 1719, "exitCode": 1, "exitSignal": 0},
                    {"kind": "ExecStartPre", "command": "/usr/bin/docker pull x",
                     "pid": 1726, "exitCode": 0, "exitSignal": 0}],
                "restarts": 0, "result": "exit-code" if failed else "success",
                "exitCode": 1 if failed else 0, "exitSignal": 0})
        if path.startswith("/_flotilla/v1/journal/"):
            name = path[len("/_flotilla/v1/journal/"):]
            if name not in UNITS:
                return self.err(404, "no journal for unit %s" % name)
            lines = int(q.get("lines", ["10"])[0])
            text = "".join("Jul 04 10:22:%02d core-04 docker[1776]: line %d\n" % (i, i)
                           for i in range(lines))
            if q.get("follow", [""])[0] == "true":
                text += "Jul 04 10:23:00 core-04 docker[1776]: followed\n"
            return self.send(200, text=text, ctype="text/plain")
        return self.err(404, "")

    def do_GET(self):
        self.handle_any("GET")

    def do_PUT(self):
        self.handle_any("PUT")

    def do_DELETE(self):
        self.handle_any("DELETE")

    def do_POST(self):
        self.handle_any("POST")


def main():
    global LOG
    port, LOG = int(sys.argv[1]), sys.argv[2]
    srv = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    srv.serve_forever()


if __name__ == "__main__":
    main()
