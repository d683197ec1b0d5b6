#!/usr/bin/env python3
"""Compare one recorded etcd v2 exchange (fixtures/etcd-v2/NNN-*.txt) with flotillad's answer to
the same curl command, after normalizing what legitimately differs between servers and runs
(fixtures/etcd-v2/README.md): Date, cluster and member ids, X-Etcd-Index / X-Raft-Index /
X-Raft-Term and every *Index field, expiration times and remaining ttl, durations, ports, the
order of nodes in an unsorted listing, and the counters of /v2/stats/store (the recording's
server counted requests this replay cannot know about). Content-Length is checked against the
actual body instead of compared. Prints a unified diff and exits 1 on a mismatch."""
import difflib
import json
import re
import sys


def split(raw, has_cmd):
    """-> (command line, [status + header lines], body) of a `curl -si` transcript; the capture
    added one newline after curl's output."""
    cmd, rest = "", raw
    if has_cmd:
        cmd, _, rest = raw.partition("\n")
    if rest.endswith("\n"):
        rest = rest[:-1]
    head, sep, body = rest.partition("\r\n\r\n")
    if not sep:
        head, body = rest, ""
    return cmd, head.split("\r\n"), body


TIME = re.compile(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z')


def norm_value(k, v, ctx):
    if isinstance(v, dict):
        return norm_obj(v, ctx)
    if isinstance(v, list):
        items = [norm_value(k, x, ctx) for x in v]
        if k == "nodes" and not ctx.get("sorted"):
            items.sort(key=lambda n: json.dumps(n))
        return items
    if k.endswith("Index") or k == "index":
        return 0
    if k in ("expiration", "startTime"):
        return "<time>"
    if k == "ttl":
        return "<ttl>"
    if k in ("id", "leader", "uptime"):
        return "<" + k + ">"
    if k == "cause" and isinstance(v, str):
        return re.sub(r"\d+", "N", v)
    if k == "key" and isinstance(v, str):
        return re.sub(r"/\d{20}(?=/|$)", "/<inorder>", v)
    if isinstance(v, str):
        v = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", v)
        return TIME.sub("<time>", v)
    if ctx.get("counters") and isinstance(v, int):
        return "<n>"
    return v


def norm_obj(o, ctx):
    out = {}
    for k, v in o.items():
        if k == "followers" and isinstance(v, dict):
            out[k] = "<followers>"
            continue
        out[k] = norm_value(k, v, ctx)
    return out


def norm_body(body, ctx):
    """JSON bodies (one per line: watch streams carry several) are renormalized and re-dumped
    in their own field order; anything else is compared as text, with ports masked."""
    lines = body.split("\n")
    out = []
    for line in lines:
        s = line.strip()
        if s.startswith("{"):
            try:
                obj = json.loads(s, object_pairs_hook=dict)
            except ValueError:
                out.append(line)
                continue
            out.append(json.dumps(norm_obj(obj, ctx), separators=(",", ":")))
        else:
            out.append(re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", line))
    return out


def norm_headers(lines, body, problems, who):
    out = []
    for h in lines:
        name, sep, value = h.partition(": ")
        lname = name.lower()
        if not sep:
            out.append(h)  # the status line
            continue
        if lname == "date":
            continue
        if lname in ("x-etcd-index", "x-raft-index", "x-raft-term", "x-etcd-cluster-id"):
            value = "<n>"
        if lname == "content-length":
            if who == "flotilla" and int(value) != len(body.encode("utf-8", "surrogateescape")):
                problems.append("flotilla: Content-Length %s but the body has %d bytes" %
                                (value, len(body.encode("utf-8", "surrogateescape"))))
            value = "<n>"
        if lname == "location":
            value = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", value)
        out.append(name + ": " + value)
    # The order of header fields carries no meaning (RFC 9110 5.3) and Go's server writes some
    # in an order set by its handlers' call sequence: compare them as a set, status line first.
    return out[:1] + sorted(out[1:])


def main():
    fixture, answer = sys.argv[1], sys.argv[2]
    exp_raw = open(fixture, encoding="utf-8", errors="surrogateescape", newline="").read()
    got_raw = open(answer, encoding="utf-8", errors="surrogateescape", newline="").read()
    cmd, exp_head, exp_body = split(exp_raw, True)
    _, got_head, got_body = split(got_raw, False)
    ctx = {
        "sorted": "sorted=true" in cmd,
        "counters": "/v2/stats/store" in cmd,
    }
    problems = []
    # HEAD answers carry a Content-Length but no body
    head_req = "-X HEAD" in cmd
    exp = norm_headers(exp_head, exp_body if not head_req else "", [], "etcd")
    got = norm_headers(got_head, got_body if not head_req else "", problems, "flotilla")
    if head_req:
        problems = []
    exp += ["", "--- body ---"] + norm_body(exp_body, ctx)
    got += ["", "--- body ---"] + norm_body(got_body, ctx)
    if exp != got or problems:
        print("MISMATCH %s: %s" % (fixture.rsplit("/", 1)[-1], cmd))
        for p in problems:
            print("  " + p)
        for line in difflib.unified_diff(exp, got, "etcd (normalized)", "flotilla (normalized)",
                                         lineterm="", n=2):
            print("  " + line)
        sys.exit(1)


if __name__ == "__main__":
    main()
