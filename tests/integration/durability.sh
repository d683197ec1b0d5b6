#!/usr/bin/env bash
# Durability: SIGKILL in the middle of a stream of concurrent writes loses no acknowledged write;
# a torn last WAL record is cut off on restart; a byte flipped in the middle of the WAL makes the
# daemon refuse to start and name the file and offset.
. "$(dirname "$0")/lib.sh"

port=$(free_port)
data=$T_TMP/data
acked_at_least() { [ -f "$1" ] && [ "$(wc -l <"$1")" -ge "$2" ]; }

# --- 1. kill -9 under load, several rounds on the same data dir ---
for round in 1 2 3; do
	start_node n1 "$data" "$port" --snapshot-count 500
	# 8 writers on keep-alive connections; each appends "key value" to the ack log only after a
	# 2xx answer. The writer is killed by the daemon's death (connection errors end it).
	$PY - "$port" "$T_TMP/acks.$round" "$round" <<'PY' &
import http.client, sys, threading
port, acklog, rnd = int(sys.argv[1]), sys.argv[2], sys.argv[3]
lock = threading.Lock()
out = open(acklog, "w")
def writer(w):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    for i in range(100000):
        key, val = "/dur/r%s/w%d/k%d" % (rnd, w, i), "v%d-%d" % (w, i)
        try:
            c.request("PUT", "/v2/keys" + key, "value=" + val,
                      {"Content-Type": "application/x-www-form-urlencoded"})
            r = c.getresponse(); r.read()
        except Exception:
            return
        if r.status in (200, 201):
            with lock:
                out.write("%s %s\n" % (key, val)); out.flush()
ts = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
for t in ts: t.start()
for t in ts: t.join()
PY
	writer=$!
	T_PIDS+=("$writer")
	# Kill once a few hundred writes are acknowledged (deadline 30 s).
	wait_for 30 acked_at_least "$T_TMP/acks.$round" $((200 * round)) ||
		fail "round $round: writes were not acknowledged in time"
	stop_node "$NODE_PID" KILL
	wait "$writer" 2>/dev/null || true
	acked=$(wc -l <"$T_TMP/acks.$round")

	start_node n1 "$data" "$port" --snapshot-count 500
	# Every acknowledged write of every round so far must be there with its value.
	cat "$T_TMP"/acks.* >"$T_TMP/all-acks"
	$PY - "$port" "$T_TMP/all-acks" <<'PY' || fail "round $round: acknowledged writes lost"
import http.client, json, sys
port = int(sys.argv[1])
c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
missing = 0
for line in open(sys.argv[2]):
    key, val = line.split()
    c.request("GET", "/v2/keys" + key); r = c.getresponse(); body = r.read()
    if r.status != 200 or json.loads(body)["node"]["value"] != val:
        missing += 1
        if missing < 5: print("lost:", key, r.status, body[:200])
sys.exit(1 if missing else 0)
PY
	note "round $round: killed after $acked acknowledged writes; all $(wc -l <"$T_TMP/all-acks") acknowledged writes present after restart"
	stop_node "$NODE_PID" TERM
done

# --- 2. a torn last record is truncated, the rest survives ---
wal=$(ls "$data"/member/wal/*.wal | tail -n 1)
end=$($PY -c '
import sys
d = open(sys.argv[1], "rb").read()
print(len(d.rstrip(b"\0")))' "$wal")
# Chop a few bytes off the last record: as if the machine died mid-write.
$PY -c '
import sys, os
p, end = sys.argv[1], int(sys.argv[2])
with open(p, "r+b") as f:
    f.seek(end - 3); f.write(b"\0\0\0")' "$wal" "$end"
start_node n1 "$data" "$port" --snapshot-count 500
grep -q "torn" "$T_TMP/n1.log" || fail "a torn WAL tail was not reported in the log"
curl -sf "http://127.0.0.1:$port/v2/keys/dur/r1/w0/k0" >/dev/null || fail "data lost after torn-tail recovery"
curl -sf -XPUT "http://127.0.0.1:$port/v2/keys/after-torn" -d value=ok >/dev/null ||
	fail "cannot write after torn-tail recovery"
stop_node "$NODE_PID" TERM
note "torn tail truncated and reported; writes continue"

# --- 3. a flipped byte in the middle of the WAL: refuse to start, naming file and offset ---
wal=$(ls "$data"/member/wal/*.wal | head -n 1)
off=$($PY -c '
import sys
d = open(sys.argv[1], "rb").read()
print(len(d.rstrip(b"\0")) // 2)' "$wal")
$PY -c '
import sys
p, off = sys.argv[1], int(sys.argv[2])
with open(p, "r+b") as f:
    f.seek(off); b = f.read(1); f.seek(off); f.write(bytes([b[0] ^ 0x5a]))' "$wal" "$off"
: >"$T_TMP/n1.log"
rc=0
timeout 10 "$FLOTILLAD" --name n1 --data-dir "$data" --listen-client-urls "http://127.0.0.1:$port" \
	>"$T_TMP/n1.log" 2>&1 || rc=$?
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || fail "flotillad started (or hung: rc $rc) on a corrupt WAL"
grep -q "$(basename "$wal")" "$T_TMP/n1.log" || { cat "$T_TMP/n1.log"; fail "the refusal does not name the WAL file"; }
grep -q "offset" "$T_TMP/n1.log" || { cat "$T_TMP/n1.log"; fail "the refusal does not name the offset"; }
note "corrupt WAL refused: $(grep -m1 offset "$T_TMP/n1.log")"
echo "PASS"
