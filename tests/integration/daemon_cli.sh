#!/usr/bin/env bash
# flotillad as an operator meets it: --help/--version, bad flags refused with exit 2 and a
# message, settings from flags (-flag and --flag=), FLOTILLA_* variables and the config file,
# a unix-socket listener, sd_notify READY=1, and a clean exit on SIGTERM and SIGINT.
. "$(dirname "$0")/lib.sh"

"$FLOTILLAD" --help | grep -q -- "--listen-client-urls" || fail "--help does not list the flags"
"$FLOTILLAD" -version | grep -q "^flotillad " || fail "-version does not print the version"

rc=0
"$FLOTILLAD" --no-such-flag 2>"$T_TMP/err" || rc=$?
[ "$rc" -eq 2 ] || fail "an unknown flag exited $rc, want 2"
grep -q "unknown flag 'no-such-flag'" "$T_TMP/err" || fail "unknown flag message: $(cat "$T_TMP/err")"
rc=0
"$FLOTILLAD" --snapshot-count many 2>"$T_TMP/err" || rc=$?
[ "$rc" -eq 2 ] && grep -q "snapshot-count" "$T_TMP/err" || fail "bad value not refused clearly"

# A port already in use: start-up fails with a message naming the address.
port=$(free_port)
start_node busy "$T_TMP/busy" "$port"
rc=0
timeout 10 "$FLOTILLAD" --data-dir "$T_TMP/other" --listen-client-urls "http://127.0.0.1:$port" \
	2>"$T_TMP/err" || rc=$?
[ "$rc" -eq 1 ] && grep -q "cannot listen on 'http://127.0.0.1:$port'" "$T_TMP/err" ||
	fail "port in use: rc $rc, $(cat "$T_TMP/err")"
stop_node "$NODE_PID"

# -flag spelling, --flag=value, name from the environment, data dir from the config file.
port=$(free_port)
cat >"$T_TMP/flotilla.conf" <<CONF
# test config
data-dir: $T_TMP/fromconf
snapshot-count = 1000
CONF
FLOTILLA_NAME=envname "$FLOTILLAD" -config "$T_TMP/flotilla.conf" \
	--listen-client-urls="http://127.0.0.1:$port" >"$T_TMP/cfg.log" 2>&1 &
pid=$!
T_PIDS+=("$pid")
wait_for 10 curl -sf "http://127.0.0.1:$port/health" || fail "daemon from config did not start"
curl -sf "http://127.0.0.1:$port/v2/members" | grep -q '"name":"envname"' ||
	fail "FLOTILLA_NAME not honoured"
[ -d "$T_TMP/fromconf/member/wal" ] || fail "data-dir from the config file not used"
stop_node "$pid" INT
grep -q "stopped" "$T_TMP/cfg.log" || fail "SIGINT did not shut down cleanly"

# A unix socket listener next to TCP, and READY=1 sent to $NOTIFY_SOCKET.
port=$(free_port)
sock=$T_TMP/client.sock
$PY - "$T_TMP/notify.sock" >"$T_TMP/notify.out" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1]); s.settimeout(15)
print(s.recv(4096).decode(), flush=True)
PY
T_PIDS+=("$!")
wait_for 5 test -S "$T_TMP/notify.sock" || fail "notify listener did not start"
NOTIFY_SOCKET=$T_TMP/notify.sock "$FLOTILLAD" --data-dir "$T_TMP/u" \
	--listen-client-urls "http://127.0.0.1:$port,unix://$sock" >"$T_TMP/u.log" 2>&1 &
pid=$!
T_PIDS+=("$pid")
wait_for 10 grep -q READY=1 "$T_TMP/notify.out" || fail "no READY=1 on NOTIFY_SOCKET"
curl -sf --unix-socket "$sock" -XPUT http://x/v2/keys/overunix -d value=yes >/dev/null ||
	fail "write over the unix socket failed"
curl -sf "http://127.0.0.1:$port/v2/keys/overunix" | grep -q '"value":"yes"' ||
	fail "unix-socket write not visible over TCP"
stop_node "$pid" TERM
grep -q "stopped" "$T_TMP/u.log" || fail "SIGTERM did not shut down cleanly"
echo PASS
