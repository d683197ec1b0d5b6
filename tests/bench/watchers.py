#!/usr/bin/env python3
"""Time for N watchers of one key to all receive a change (etcd v2 long-poll watches).

    tests/bench/watchers.py URL [N]

Opens N connections, each waiting on GET /v2/keys/<key>?wait=true, waits until the server's
/v2/stats/store counts them, writes the key once and prints how long it took from the write
being acknowledged (and from it being sent) until every watcher had its answer. Loopback
only; bounded by a 60 s deadline; every socket is closed at the end."""
import json, resource, selectors, socket, sys, time, urllib.request
from urllib.parse import urlparse

def main():
    url = sys.argv[1].rstrip("/")
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
    # one socket per watcher: raise the soft limit, and say so when the hard one is too low
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < n + 100:
        sys.exit("%d watchers need %d file descriptors; the hard limit (ulimit -Hn) is %d"
                 % (n, n + 100, hard))
    if soft != resource.RLIM_INFINITY and soft < n + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (n + 100, hard))
    u = urlparse(url)
    key = "/v2/keys/bench-watch-%d" % int(time.time() * 1000)
    req = ("GET %s?wait=true HTTP/1.1\r\nHost: x\r\n\r\n" % key).encode()
    sel = selectors.DefaultSelector()
    socks = []
    deadline = time.monotonic() + 60
    for _ in range(n):
        s = socket.create_connection((u.hostname, u.port), timeout=10)
        s.sendall(req)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, bytearray())
        socks.append(s)
    # Wait until every watch is registered (both servers count them in /v2/stats/store).
    while True:
        st = json.load(urllib.request.urlopen(url + "/v2/stats/store", timeout=10))
        if st.get("watchers", 0) >= n:
            break
        if time.monotonic() > deadline:
            sys.exit("only %d of %d watchers registered" % (st.get("watchers", 0), n))
        time.sleep(0.05)
    done = 0
    t_send = time.monotonic()
    put = urllib.request.Request(url + key, data=b"value=go", method="PUT",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    urllib.request.urlopen(put, timeout=10).read()
    t_ack = time.monotonic()
    while done < n and time.monotonic() < deadline:
        for k, _ in sel.select(timeout=1):
            try:
                data = k.fileobj.recv(65536)
            except BlockingIOError:
                continue
            k.data.extend(data)
            # the event body ends with the final chunk "0\r\n\r\n" (or the close)
            if not data or b'"action":"set"' in k.data:
                sel.unregister(k.fileobj)
                done += 1
    t_all = time.monotonic()
    for s in socks:
        s.close()
    if done < n:
        sys.exit("only %d of %d watchers notified within the deadline" % (done, n))
    print("watchers=%d all notified %.1f ms after the write was acknowledged "
          "(%.1f ms after it was sent)" % (n, (t_all - t_ack) * 1e3, (t_all - t_send) * 1e3))

if __name__ == "__main__":
    main()
