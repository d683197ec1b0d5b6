#!/usr/bin/env bash
# Malformed and hostile HTTP against the real daemon: each gets a 4xx (505 for an HTTP version
# it does not speak, as Go's server answers) or a close, and the
# daemon keeps serving; limits answer 431 and 413; many connections at once are served.
. "$(dirname "$0")/lib.sh"

port=$(free_port)
start_node h1 "$T_TMP/h1" "$port"

$PY - "$port" <<'PY' || fail "robustness checks failed"
import re, socket, sys, time, resource
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
port = int(sys.argv[1])

def send(raw, timeout=5, whole=False):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(raw)
    out = b""
    try:
        while True:
            d = s.recv(65536)
            if not d: break
            out += d
            if b"\r\n\r\n" in out and not whole: break
    except socket.timeout:
        pass
    s.close()
    return out

def status(out):
    try: return int(out.split(b" ", 2)[1])
    except Exception: return None

bad = [
    b"GARBAGE\r\n\r\n",
    b"GET / HTTP/9.9\r\n\r\n",
    b"GET /v2/keys HTTP/1.1\r\nBad Header Line\r\n\r\n",
    b"GET /v2/keys HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"GET /v2/keys HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"PUT /v2/keys/a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n",
    b"GET /v2/keys\x00 HTTP/1.1\r\n\r\n",
    b"GET /v2/\x7fkeys HTTP/1.1\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,   # a TLS hello
    b"PUT /v2/keys/a HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"GET /v2/keys HTTP/1.1\r\n" + b"X: y\r\n" * 3000 + b"\r\n",
]
fails = 0
for raw in bad:
    out = send(raw)
    st = status(out)
    if out and not (st and (400 <= st < 500 or st == 505)):
        print("bad input %r answered %r" % (raw[:40], out[:60])); fails += 1
    # and the daemon still answers
    ok = send(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    if status(ok) != 200:
        print("daemon not answering after %r" % raw[:40]); fails += 1

# 431 for a huge request head, 413 for a huge body
out = send(b"GET /v2/keys/" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
if status(out) != 431: print("long request line:", out[:60]); fails += 1
out = send(b"GET /v2/keys HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n")
if status(out) != 431: print("long header:", out[:60]); fails += 1
out = send(b"PUT /v2/keys/big HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n"
           b"Content-Type: application/x-www-form-urlencoded\r\n\r\n" + b"v" * 1000)
if status(out) != 413: print("huge body:", out[:60]); fails += 1

# pipelining: three requests in one packet, three answers in order
out = send(b"PUT /v2/keys/p HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
           b"Content-Length: 7\r\n\r\nvalue=1"
           b"GET /v2/keys/p HTTP/1.1\r\nHost: x\r\n\r\n"
           b"GET /v2/keys/nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout=5, whole=True)
codes = [int(c) for c in re.findall(rb"HTTP/1\.1 (\d{3}) ", out)]
if codes != [201, 200, 404]:
    print("pipelined answers:", codes); fails += 1

# 2000 connections open at once, each then answered
conns = []
for i in range(2000):
    conns.append(socket.create_connection(("127.0.0.1", port), timeout=10))
for c in conns:
    c.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
answered = 0
for c in conns:
    d = c.recv(4096)
    if d.startswith(b"HTTP/1.1 200"): answered += 1
    c.close()
if answered != 2000:
    print("only %d of 2000 concurrent connections answered" % answered); fails += 1
print("# %d malformed inputs refused with 4xx, limits 431/413, pipelining, 2000 connections: %s"
      % (len(bad), "ok" if not fails else "FAILED"))
sys.exit(1 if fails else 0)
PY
kill -0 "$NODE_PID" || fail "the daemon died"
echo PASS
