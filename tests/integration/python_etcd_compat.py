# python-etcd compatibility sequence: drives Debian's unmodified python3-etcd (module `etcd`)
# against one server and prints one normalized line per operation (no index numbers, times or
# ids), so python_etcd_compat.sh can diff the transcript of etcd against that of flotillad.
# Usage: /usr/bin/python3 python_etcd_compat.py HOST PORT
import hashlib
import re
import sys
import threading
import time

import etcd

HOST, PORT = sys.argv[1], int(sys.argv[2])
c = etcd.Client(host=HOST, port=PORT, protocol="http")
URL_RE = re.compile(r"https?://(127\.0\.0\.1|localhost|\[::1\]):\d+")
SEQ_RE = re.compile(r"/\d{20}\b")


PORT_RE = re.compile(r"port=\d+")
CLEARED_RE = re.compile(r"cleared \[\d+/\d+\]")  # "[oldest kept index/requested index]"
EXP_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")  # RFC 3339, UTC
CMP_RE = re.compile(r"\[\d+ != \d+\]")  # a failed prevIndex: "[given != current index]"


def norm(s):
    """Strip what legitimately differs from a printed string (URLs, in-order key names)."""
    return PORT_RE.sub("port=P", SEQ_RE.sub("/<seq>", URL_RE.sub("URL", str(s))))


def node(r):
    """One EtcdResult (or a raw node dict) as a stable string: no indices, no times."""
    if isinstance(r, dict):
        r = etcd.EtcdResult(None, r)
    v = r.value
    if v is not None and len(v) > 200:
        v = "<%d bytes sha256=%s>" % (len(v), hashlib.sha256(v.encode()).hexdigest()[:16])
    out = "key=%s dir=%s value=%r ttl=%s exp=%s idx=%s" % (
        norm(r.key), r.dir, v, "T" if r.ttl is not None else None,
        None if r.expiration is None else "E" if EXP_RE.fullmatch(r.expiration) else r.expiration,
        "ci==mi" if r.createdIndex == r.modifiedIndex else "ci<mi"
        if (r.createdIndex or 0) < (r.modifiedIndex or 0) else "ci>mi")
    return out


def result(r, hdr=True):
    """An operation's result; hdr=False for watches, whose X-Etcd-Index is the index at the time
    the watch began (before or after the event, depending on timing)."""
    s = "action=%s %s" % (r.action, node(r))
    prev = getattr(r, "_prev_node", None)
    if prev is not None:
        s += " prev=(%s)" % node(prev)
    # etcd_index is X-Etcd-Index: only whether the server sent a sane one matters.
    if hdr:
        s += " hdr_index=%s" % ("ok" if getattr(r, "etcd_index", 0) >= (r.modifiedIndex or 0)
                                else "too-small")
    return s


def event(r):
    return result(r, hdr=False)


def exc(e):
    p = getattr(e, "payload", None)
    if isinstance(p, dict):
        return "EXC %s code=%s message=%r cause=%r status=%s" % (
            type(e).__name__, p.get("errorCode"), p.get("message"),
            CLEARED_RE.sub("cleared [N/N]", CMP_RE.sub("[N != N]", norm(p.get("cause")))),
            p.get("status"))
    return "EXC %s %s" % (type(e).__name__, norm(e))


def op(label, fn, show=None):
    """Run one operation and print `label | outcome`; returns the result (None on error)."""
    try:
        r = fn()
    except Exception as e:  # every failure is part of the transcript
        print("%s | %s" % (label, exc(e)), flush=True)
        return None
    if show is not None:
        out = show(r)
    elif isinstance(r, etcd.EtcdResult):
        out = result(r)
    else:
        out = norm(repr(r))
    print("%s | %s" % (label, out), flush=True)
    return r


def wait_until(pred, secs):
    end = time.monotonic() + secs
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False


def gone(key):
    try:
        c.read(key)
        return False
    except etcd.EtcdKeyNotFound:
        return True


def leaves(r):
    return " ".join(sorted("%s=%r" % (norm(n.key), n.value) for n in r.leaves))


def kids(r):
    return " ".join(sorted(node(n) for n in r._children))


# --- basic write / read / update / delete
op("write /py/a x", lambda: c.write("/py/a", "x"))
op("read /py/a", lambda: c.read("/py/a"))
op("write /py/a y", lambda: c.write("/py/a", "y"))
op("get /py/a (old api)", lambda: c.get("/py/a"))
op("set /py/b (old api)", lambda: c.set("/py/b", "b1"))
op("set /py/b ttl (old api)", lambda: c.set("/py/b", "b2", ttl=100))
op("'/py/a' in client", lambda: "/py/a" in c)
op("'/py/zz' in client", lambda: "/py/zz" in c)
op("write py/rel (no leading slash)", lambda: c.write("py/rel", "r"))
op("read /py/rel", lambda: c.read("/py/rel"))
r = op("read /py/a for update", lambda: c.read("/py/a"))
if r is not None:
    r.value = "z"
    op("update /py/a (prevIndex)", lambda: c.update(r))
    r.value = "zz"
    op("update /py/a stale result", lambda: c.update(r))
op("delete /py/a", lambda: c.delete("/py/a"))
op("read /py/a after delete", lambda: c.read("/py/a"))
op("delete /py/a again", lambda: c.delete("/py/a"))
op("pop /py/b", lambda: c.pop("/py/b"))
op("write empty value", lambda: c.write("/py/empty", ""))
op("read empty value", lambda: c.read("/py/empty"))
op("write int value", lambda: c.write("/py/int", 42))
op("read int value", lambda: c.read("/py/int"))

# --- directories
op("mkdir /py/d", lambda: c.write("/py/d", None, dir=True))
op("mkdir /py/d again prevExist=False", lambda: c.write("/py/d", None, dir=True, prevExist=False))
op("mkdir /py/d again (set)", lambda: c.write("/py/d", None, dir=True))
op("write /py/d/a", lambda: c.write("/py/d/a", "1"))
op("write /py/d/b", lambda: c.write("/py/d/b", "2"))
op("write /py/d/sub/c (implicit dir)", lambda: c.write("/py/d/sub/c", "3"))
op("write /py/d/sub/e", lambda: c.write("/py/d/sub/e", "4"))
op("read /py/d children", lambda: c.read("/py/d"), kids)
op("read /py/d recursive leaves", lambda: c.read("/py/d", recursive=True), leaves)
op("read /py/d recursive .children", lambda: c.read("/py/d", recursive=True),
   lambda r: " ".join(sorted(norm(n.key) for n in r.children)))
op("read /py/d recursive subtree", lambda: c.read("/py/d", recursive=True),
   lambda r: " ".join(sorted("%s:%s" % (n.key, n.dir) for n in r.get_subtree())))
op("read /py/d sorted", lambda: c.read("/py/d", sorted=True),
   lambda r: " ".join(n["key"] for n in r._children))
op("read /py/d recursive sorted", lambda: c.read("/py/d", recursive=True, sorted=True),
   lambda r: " ".join(n.key for n in r.get_subtree()))
op("read /py/d itself", lambda: c.read("/py/d"),
   lambda r: "action=%s key=%s dir=%s value=%r" % (r.action, r.key, r.dir, r.value))
op("read empty dir leaves", lambda: c.write("/py/emptydir", None, dir=True) and
   c.read("/py/emptydir", recursive=True), leaves)
op("delete /py/d (file delete of a dir)", lambda: c.delete("/py/d"))
op("delete /py/d dir=True (not empty)", lambda: c.delete("/py/d", dir=True))
op("delete /py/d/a dir=True (a file)", lambda: c.delete("/py/d/a", dir=True))
op("write /py/d/b/x (b is a file)", lambda: c.write("/py/d/b/x", "v"))
op("write /py/d as a file", lambda: c.write("/py/d", "v"))
op("write /py/d/b dir=True over a file", lambda: c.write("/py/d/b", None, dir=True,
                                                          prevExist=True))
op("read /py/d/b/x (under a file)", lambda: c.read("/py/d/b/x"))
op("write dir with value", lambda: c.write("/py/dv", "v", dir=True))
op("delete /py/d recursive", lambda: c.delete("/py/d", recursive=True))
op("read /py/d after recursive delete", lambda: c.read("/py/d"))
op("delete / recursive", lambda: c.delete("/", recursive=True))
op("write / value", lambda: c.write("/", "v"))
op("delete /py/emptydir dir=True", lambda: c.delete("/py/emptydir", dir=True))

# --- compare-and-swap, prevExist, prevIndex, test_and_set
op("write /py/cas v0", lambda: c.write("/py/cas", "v0"))
op("prevValue wrong", lambda: c.write("/py/cas", "v1", prevValue="nope"))
op("prevValue right", lambda: c.write("/py/cas", "v1", prevValue="v0"))
op("prevIndex wrong", lambda: c.write("/py/cas", "v2", prevIndex=1))
r = c.read("/py/cas")
op("prevIndex right", lambda: c.write("/py/cas", "v2", prevIndex=r.modifiedIndex))
op("prevIndex + prevValue wrong", lambda: c.write("/py/cas", "v3", prevIndex=1, prevValue="x"))
op("prevExist=False on existing", lambda: c.write("/py/cas", "v3", prevExist=False))
op("prevExist=True on missing", lambda: c.write("/py/nocas", "v", prevExist=True))
op("prevExist=False on missing", lambda: c.write("/py/nocas", "v", prevExist=False))
op("prevExist=True on existing", lambda: c.write("/py/nocas", "w", prevExist=True))
op("prevValue on missing", lambda: c.write("/py/nocas2", "v", prevValue="x"))
op("test_and_set wrong", lambda: c.test_and_set("/py/cas", "v4", "wrong"))
op("test_and_set right", lambda: c.test_and_set("/py/cas", "v4", "v2"))
op("test_and_set missing", lambda: c.test_and_set("/py/nothere", "v", "x"))
op("delete prevValue wrong", lambda: c.delete("/py/cas", prevValue="nope"))
op("delete prevIndex wrong", lambda: c.delete("/py/cas", prevIndex=1))
r = c.read("/py/cas")
op("delete prevIndex right", lambda: c.delete("/py/cas", prevIndex=r.modifiedIndex))
op("delete prevValue right", lambda: c.delete("/py/nocas", prevValue="w"))
op("mkdir /py/casdir", lambda: c.write("/py/casdir", None, dir=True))
op("prevValue on a dir", lambda: c.write("/py/casdir", "v", prevValue="x"))
op("prevIndex on a dir", lambda: c.write("/py/casdir", "v", prevIndex=1))
op("delete dir with prevValue", lambda: c.delete("/py/casdir", dir=True, prevValue="x"))
op("bad ttl", lambda: c.write("/py/badttl", "v", ttl="abc"))
op("bad prevIndex", lambda: c.write("/py/cas", "v", prevIndex="abc"))

# --- append (in-order keys)
for v in ("a", "b", "c"):
    op("append /py/q %s" % v, lambda: c.write("/py/q", v, append=True))
op("read /py/q sorted", lambda: c.read("/py/q", sorted=True),
   lambda r: " ".join("%s=%s" % (norm(n["key"]), n["value"]) for n in r._children))
op("in-order keys increase", lambda: c.read("/py/q", sorted=True),
   lambda r: [n["key"] for n in r._children] == sorted(n["key"] for n in r._children))
op("append under a file", lambda: c.write("/py/int", "x", append=True))
op("append dir", lambda: c.write("/py/q", None, dir=True, append=True))

# --- TTLs
op("write /py/t ttl=100", lambda: c.write("/py/t", "v", ttl=100))
op("read /py/t", lambda: c.read("/py/t"))
op("ttl within bounds", lambda: c.read("/py/t"), lambda r: 0 < r.ttl <= 100)
op("refresh /py/t ttl=200", lambda: c.refresh("/py/t", ttl=200))
op("ttl after refresh", lambda: c.read("/py/t"), lambda r: (100 < r.ttl <= 200, r.value))
op("refresh missing", lambda: c.refresh("/py/tmissing", ttl=5))
op("write /py/t no ttl clears it", lambda: c.write("/py/t", "v2"))
op("ttl dir", lambda: c.write("/py/tdir", None, dir=True, ttl=100))
op("read ttl dir", lambda: c.read("/py/tdir"))
op("write /py/short ttl=1", lambda: c.write("/py/short", "v", ttl=1))
op("write /py/sdir/k in dir ttl=1", lambda: c.write("/py/sdir", None, dir=True, ttl=1) and
   c.write("/py/sdir/k", "v"))
op("/py/short expires within 10s", lambda: wait_until(lambda: gone("/py/short"), 10))
op("/py/sdir expires within 10s", lambda: wait_until(lambda: gone("/py/sdir"), 10))
op("read /py/short after expiry", lambda: c.read("/py/short"))
op("read /py/sdir/k after expiry", lambda: c.read("/py/sdir/k"))

# --- watch with an index, timeouts, recursive
w1 = c.write("/py/w", "1")
c.write("/py/w", "2")
c.delete("/py/w")
op("watch index=first", lambda: c.watch("/py/w", index=w1.modifiedIndex, timeout=5), event)
op("watch index=first+1", lambda: c.watch("/py/w", index=w1.modifiedIndex + 1, timeout=5), event)
op("watch index=first+2", lambda: c.watch("/py/w", index=w1.modifiedIndex + 2, timeout=5), event)
op("read wait=True waitIndex", lambda: c.read("/py/w", wait=True, waitIndex=w1.modifiedIndex,
                                              timeout=5), event)
op("watch recursive index", lambda: c.watch("/py", index=w1.modifiedIndex, timeout=5,
                                            recursive=True), event)
op("watch times out", lambda: c.watch("/py/quiet", timeout=0.5))
op("watch index=1 long ago", lambda: c.watch("/py/w", index=1, timeout=5), event)


def watch_thread(fn, nres):
    """Runs fn in a thread that appends to a list; returns (thread, list)."""
    got = []

    def body():
        try:
            fn(got)
        except Exception as e:
            got.append(exc(e))
    t = threading.Thread(target=body, daemon=True)
    t.start()
    return t, got


# A watch without an index started in a thread: the main thread repeats the same write until the
# watcher sees it (the repeat only covers the instant before the watch reaches the server).
c2 = etcd.Client(host=HOST, port=PORT, protocol="http")
t, got = watch_thread(lambda g: g.append(event(c2.watch("/py/live", timeout=10))), 1)
time.sleep(0.2)
end = time.monotonic() + 10
while not got and time.monotonic() < end:
    c.write("/py/live", "L")
    wait_until(lambda: got, 1)
t.join(1)
print("thread watch /py/live | %s" % (got[0] if got else "NO EVENT"), flush=True)

# eternal_watch from a known index: the next three events on a key, in order.
start = c.read("/").etcd_index + 1
c3 = etcd.Client(host=HOST, port=PORT, protocol="http")


def eternal(g):
    for ev in c3.eternal_watch("/py/ew", index=start):
        g.append(event(ev))
        if len(g) == 3:
            return


t, got = watch_thread(eternal, 3)
c.write("/py/ew", "e1")
c.write("/py/ew", "e2", prevValue="e1")
c.delete("/py/ew")
t.join(10)
print("eternal_watch /py/ew | %s" % ("; ".join(got) if len(got) == 3 else "ONLY %r" % got),
      flush=True)

c4 = etcd.Client(host=HOST, port=PORT, protocol="http")
t, got = watch_thread(lambda g: g.append(
    event(c4.watch("/py/rw", index=start, recursive=True, timeout=10))), 1)
c.write("/py/rw/deep/er", "x")
t.join(10)
print("thread recursive watch /py/rw | %s" % (got[0] if got else "NO EVENT"), flush=True)

# an expiry as a watcher sees it
op("write /py/ex ttl=1", lambda: c.write("/py/ex", "v", ttl=1))
op("watch /py/ex sees the expiry", lambda: c.watch("/py/ex", index=c.read("/").etcd_index + 1,
                                                   timeout=10), event)

# a directory's expiry as a recursive watcher of it sees it
op("mkdir /py/exd ttl=1 with a child", lambda: c.write("/py/exd", None, dir=True, ttl=1) and
   c.write("/py/exd/child", "v"))
op("recursive watch sees the dir expire",
   lambda: c.watch("/py/exd", index=c.read("/").etcd_index + 1, recursive=True, timeout=10),
   event)
op("read /py/exd/child after expiry", lambda: c.read("/py/exd/child"))

# more than 1000 events later, old indices are gone from the watch history
for i in range(1100):
    c.write("/py/churn/k%d" % (1000 + i), "x")
op("read /py/churn sorted", lambda: c.read("/py/churn", sorted=True),
   lambda r: (len(r._children), hashlib.sha256(" ".join(n["key"] for n in r._children)
                                                 .encode()).hexdigest()[:16]))
op("watch index=1 after churn", lambda: c.watch("/py/churn/k1000", index=1, timeout=5), event)
op("watch index=2 recursive after churn", lambda: c.watch("/py", index=2, recursive=True,
                                                          timeout=5), event)
op("delete /py/churn recursive", lambda: c.delete("/py/churn", recursive=True))

# --- quorum reads, hidden keys, awkward keys, large values
op("read quorum=True", lambda: c.read("/py/int", quorum=True))
op("read quorum recursive", lambda: c.read("/py/q", quorum=True, recursive=True, sorted=True),
   lambda r: " ".join(repr(n.value) for n in r.leaves))
op("write /py/_hidden", lambda: c.write("/py/_hidden", "h"))
op("read /py/_hidden", lambda: c.read("/py/_hidden"))
op("mkdir /py/_hdir/x", lambda: c.write("/py/_hdir/x", "1"))
op("/py listing hides _ keys", lambda: c.read("/py", sorted=True),
   lambda r: " ".join(norm(n["key"]) for n in r._children))
start = c.read("/").etcd_index + 1
c.write("/py/_h2", "hidden")
c.write("/py/visible2", "v")
op("recursive watch sees hidden keys too", lambda: c.watch("/py", index=start, recursive=True,
                                                        timeout=5), event)
op("watch of a hidden key itself", lambda: c.watch("/py/_h2", index=start, timeout=5), event)
op("/py recursive hides _ keys", lambda: c.read("/py", recursive=True, sorted=True),
   lambda r: " ".join(norm(n.key) for n in r.leaves))
for k in ("/py/s/dash-dot.under_score", "/py/s/üñí", "/py/s/plus+sign", "/py/s/a%20b",
          "/py/s/colon:x", "/py/s/a,b", "/py/s/eq=1&x", "/py/s/tilde~"):
    op("write %s" % k, lambda: c.write(k, "v " + k))
    op("read %s" % k, lambda: c.read(k))
op("list /py/s", lambda: c.read("/py/s", sorted=True),
   lambda r: " ".join(n["key"] for n in r._children))
op("value with newlines and unicode", lambda: c.write("/py/v", "a\nb\tc ünï ✓ \"q\" & = %"))
op("read it back", lambda: c.read("/py/v"))
big = "".join(chr(33 + (i * 7919) % 94) for i in range(100 * 1024))
op("write 100 KiB", lambda: c.write("/py/big", big))
op("read 100 KiB", lambda: c.read("/py/big"), lambda r: (len(r.value), r.value == big))

# --- cluster information
op("members", lambda: c.members,
   lambda m: sorted((norm(v.get("name")), sorted(norm(u) for u in v.get("clientURLs", [])),
                     len(v.get("peerURLs", []))) for v in m.values()))
op("members ids are keys", lambda: c.members, lambda m: all(k == v["id"] for k, v in m.items()))
op("leader", lambda: c.leader,
   lambda m: (m.get("name"), sorted(norm(u) for u in m.get("clientURLs", []))))
op("machines", lambda: c.machines, lambda m: sorted(norm(u) for u in m))
op("stats keys", lambda: c.stats, lambda s: sorted(s))
op("stats name/state", lambda: c.stats, lambda s: (s.get("name"), s.get("state")))
op("leader_stats keys", lambda: c.leader_stats, lambda s: sorted(s))
op("store_stats keys", lambda: c.store_stats, lambda s: sorted(s))
op("version", lambda: c.version)
op("cluster_version", lambda: c.cluster_version)
# python-etcd remembers X-Etcd-Cluster-Id to detect a cluster swapped under it.
op("cluster id header seen", lambda: c.expected_cluster_id is not None)
