#!/bin/bash
# flotctl's key commands against etcdctl (ETCDCTL_API=2) as the reference: the same scripted
# session runs once with etcdctl and once with flotctl, each against a freshly started server on
# the same loopback ports, so indices match; stdout, stderr and exit codes must then be identical
# (after masking TTL countdowns and expiration times). Usage errors compare only the first stdout
# line, because flotctl's help text is its own.
#
# FLT_TARGET=etcd (default) runs Debian's etcd; FLT_TARGET=flotillad runs
# "$FLT_BUILDDIR/flotillad" instead, and both clients talk to it. Missing tools fail the test.
set -u

FLT_BUILDDIR=${FLT_BUILDDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
FLOTCTL=${FLOTCTL:-$FLT_BUILDDIR/flotctl}
ETCDCTL=${ETCDCTL:-/usr/bin/etcdctl}
ETCD=${ETCD:-/usr/bin/etcd}
TARGET=${FLT_TARGET:-etcd}
STEP_TIMEOUT=20

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

[ -x "$ETCDCTL" ] || fail "etcdctl not found at $ETCDCTL (install Debian's etcd-client)"
[ -x "$FLOTCTL" ] || fail "flotctl not built at $FLOTCTL"
command -v curl >/dev/null || fail "curl is needed"
command -v jq >/dev/null || fail "jq is needed"
command -v python3 >/dev/null || fail "python3 is needed"
case $TARGET in
etcd) [ -x "$ETCD" ] || fail "etcd not found at $ETCD (install Debian's etcd-server)" ;;
flotillad) [ -x "$FLT_BUILDDIR/flotillad" ] || fail "flotillad not built in $FLT_BUILDDIR" ;;
*) fail "FLT_TARGET must be etcd or flotillad, not '$TARGET'" ;;
esac

TMP=$(mktemp -d)
SERVER_PID=
SILENT_PID=
BG_PIDS=
cleanup() {
	for p in $BG_PIDS $SERVER_PID $SILENT_PID; do
		kill "$p" 2>/dev/null
	done
	for p in $BG_PIDS $SERVER_PID $SILENT_PID; do
		wait "$p" 2>/dev/null
	done
	if [ -n "${FLT_KEEP_TMP:-}" ]; then echo "kept $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

free_port() {
	python3 "$(dirname "$0")/../free_port.py"
}

CPORT=$(free_port)
PPORT=$(free_port)
DEADPORT=$(free_port)
SILENTPORT=$(free_port)
EP=http://127.0.0.1:$CPORT
DEAD=http://127.0.0.1:$DEADPORT
SILENT=http://127.0.0.1:$SILENTPORT

# A listener that accepts connections (kernel backlog) but never answers: for timeouts.
python3 -c '
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(64)
while True: time.sleep(3600)' "$SILENTPORT" &
SILENT_PID=$!

start_server() {
	local dir
	dir=$(mktemp -d "$TMP/data.XXXXXX")
	if [ "$TARGET" = etcd ]; then
		"$ETCD" --enable-v2 --name default --data-dir "$dir" \
			--listen-client-urls "$EP" --advertise-client-urls "$EP" \
			--listen-peer-urls "http://127.0.0.1:$PPORT" \
			--initial-advertise-peer-urls "http://127.0.0.1:$PPORT" \
			--initial-cluster "default=http://127.0.0.1:$PPORT" >"$dir.log" 2>&1 &
	else
		"$FLT_BUILDDIR/flotillad" --name default --data-dir "$dir" \
			--listen-client-urls "$EP" --advertise-client-urls "$EP" \
			--listen-peer-urls "http://127.0.0.1:$PPORT" \
			--initial-advertise-peer-urls "http://127.0.0.1:$PPORT" \
			--initial-cluster "default=http://127.0.0.1:$PPORT" >"$dir.log" 2>&1 &
	fi
	SERVER_PID=$!
	# Ready means: the keys API answers and (for etcd) the cluster version is published, so
	# etcd's internal writes are done and both runs start at the same index.
	local deadline=$((SECONDS + 30))
	while :; do
		if curl -sf "$EP/v2/keys/" >/dev/null 2>&1; then
			if [ "$TARGET" != etcd ] ||
				curl -s "$EP/version" | grep -q '"etcdcluster":"[0-9]'; then
				break
			fi
		fi
		kill -0 "$SERVER_PID" 2>/dev/null || { cat "$dir.log" >&2; fail "$TARGET exited"; }
		[ $SECONDS -lt $deadline ] || { cat "$dir.log" >&2; fail "$TARGET not ready in 30s"; }
		sleep 0.1
	done
}

stop_server() {
	kill "$SERVER_PID" 2>/dev/null
	wait "$SERVER_PID" 2>/dev/null
	SERVER_PID=
}

# ---- running one tool ----

tool() {
	if [ "$WHO" = etcdctl ]; then
		ETCDCTL_API=2 timeout $STEP_TIMEOUT "$ETCDCTL" "$@"
	else
		timeout $STEP_TIMEOUT "$FLOTCTL" "$@"
	fi
}

N=0
# step ARGS...: run the tool with stdin from /dev/null, record out/err/rc.
step() {
	N=$((N + 1))
	local f
	f=$OUT/$(printf %03d $N)
	printf '%s\n' "$*" >"$f.cmd"
	local t0=$(date +%s%N)
	tool "$@" >"$f.out" 2>"$f.err" </dev/null
	echo $? >"$f.rc"
	echo $((($(date +%s%N) - t0) / 1000000)) >"$f.ms"
}
# istep INPUT ARGS...: the same with INPUT on stdin.
istep() {
	local in=$1
	shift
	N=$((N + 1))
	local f
	f=$OUT/$(printf %03d $N)
	printf 'stdin=%q %s\n' "$in" "$*" >"$f.cmd"
	printf '%s' "$in" | tool "$@" >"$f.out" 2>"$f.err"
	echo $? >"$f.rc"
}
# ustep ARGS...: a usage error; only the first line of stdout is etcdctl's.
ustep() {
	step "$@"
	local f
	f=$OUT/$(printf %03d $N)
	head -n 1 "$f.out" >"$f.tmp" && mv "$f.tmp" "$f.out"
}

modidx() {
	curl -s "$EP/v2/keys$1" | jq -r .node.modifiedIndex
}
curindex() {
	curl -s -o /dev/null -D - "$EP/v2/keys/" | tr -d '\r' | sed -n 's/^[Xx]-[Ee]tcd-[Ii]ndex: //p'
}
watchers() {
	curl -s "$EP/v2/stats/store" 2>/dev/null | jq -r '.watchers // empty' 2>/dev/null
}

# Wait (with a deadline) until the server reports more watchers than $1; without a stats
# endpoint wait until the watcher's process has had its request in flight.
await_watcher() {
	local before=$1 deadline=$((SECONDS + 10)) w
	while [ $SECONDS -lt $deadline ]; do
		w=$(watchers)
		if [ -z "$w" ]; then
			sleep 0.5 # no stats endpoint: nothing to poll, give the request time
			return
		fi
		[ "$w" -gt "$before" ] && return
		sleep 0.05
	done
	echo "warning: watcher did not register within 10s" >&2
}

# Wait for a background step to exit (deadline), else interrupt it like Ctrl-C (and kill it if
# even that does not end it); record its exit code.
await_exit() {
	local pid=$1 deadline=$((SECONDS + ${2:-10}))
	while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do
		sleep 0.05
	done
	if kill -INT "$pid" 2>/dev/null; then
		deadline=$((SECONDS + 3))
		while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do
			sleep 0.05
		done
		kill -KILL "$pid" 2>/dev/null
	fi
	wait "$pid" 2>/dev/null
	echo $? >"$F.rc"
}

# Wait until file $1 exists and has at least $2 lines (deadline 10s).
await_lines() {
	local deadline=$((SECONDS + 10)) n
	while [ $SECONDS -lt $deadline ]; do
		n=$(cat "$1" 2>/dev/null | wc -l)
		[ "$n" -ge "$2" ] && return
		sleep 0.05
	done
}

# bgstep ARGS...: start the tool itself in the background (not a subshell, so that SIGINT reaches
# it); sets BG to its pid and F to its files. await_exit collects it.
bgstep() {
	N=$((N + 1))
	F=$OUT/$(printf %03d $N)
	printf '%s\n' "$*" >"$F.cmd"
	if [ "$WHO" = etcdctl ]; then
		ETCDCTL_API=2 "$ETCDCTL" "$@" >"$F.out" 2>"$F.err" </dev/null &
	else
		"$FLOTCTL" "$@" >"$F.out" 2>"$F.err" </dev/null &
	fi
	BG=$!
	BG_PIDS="$BG_PIDS $BG"
}

scenario() {
	export ETCDCTL_ENDPOINTS=$EP
	unset FLOTCTL_ENDPOINTS FLOTCTL_ENDPOINT ETCDCTL_ENDPOINT ETCDCTL_PEERS
	local i

	# -- set / get / output formats
	step set /t/a 1
	step get /t/a
	step -o extended get /t/a
	step -o json get /t/a
	step get /t/missing
	step -o json get /t/missing
	step -o extended get /t/missing
	step mk /t/a 2
	step mk /t/b 2
	step -o json mk --ttl 100 /t/ttlkey v
	step -o extended get /t/ttlkey
	step -o extended set --ttl 3000 /t/ttl2 v
	# -- directories and listings
	step mkdir /t/d
	step mkdir /t/d
	step get /t/d
	step -o json get /t/d
	step set /t/d/x y
	step ls --sort /t
	step ls -p --sort /t
	step ls -r --sort /t
	step ls -r -p --sort /t
	step -o json ls --sort /t/d
	step -o extended ls /t/d
	step -o json ls -r --sort /t
	step ls /t/a
	step ls /t/missing
	step ls -q /t/d
	step get -q /t/d/x
	step rm /t/d
	step rm --dir /t/d
	step set /t/d y
	step get /t/a/sub
	step set /t/a/sub v
	# -- update and compare-and-swap
	step update /t/missing v
	step update /t/a 3
	step -o extended update --ttl 5000 /t/a 4
	step set --swap-with-value 4 /t/a 5
	step set --swap-with-value nope /t/a 6
	step set --swap-with-index 1 /t/a 6
	step -o json set --swap-with-index "$(modidx /t/a)" /t/a 7
	step -o extended set --swap-with-value 7 --swap-with-index "$(modidx /t/a)" /t/a 8
	step set --swap-with-value 8 /t/nokey 9
	# -- rm with conditions
	step rm --with-value nope /t/a
	step rm --with-index 1 /t/a
	step -o extended rm --with-value 8 /t/a
	step set /t/a 9
	step -o json rm --with-index "$(modidx /t/a)" /t/a
	step rm /t/missing
	step -o json rm /t/b
	# -- in-order keys
	step mk --in-order /t/q v1
	step mk --in-order /t/q v2
	step -o json mk --in-order /t/q v3
	step -o extended mk --in-order --ttl 100 /t/q v4
	step ls --sort /t/q
	step mk --in-order /t/d/x v
	# -- directory TTLs: mkdir, updatedir, setdir
	step mkdir --ttl 100 /t/td
	step -o json updatedir --ttl 200 /t/td
	step updatedir /t/td
	step -o extended updatedir /t/td
	step updatedir /t/missingdir
	step updatedir /t/d/x
	step setdir /t/sd
	step -o extended setdir /t/sd2
	step -o json setdir /t/sd3
	step setdir /t/sd
	step setdir --ttl 1000 /t/d/x
	step -o json mkdir /t/md
	step -o extended mkdir /t/md2
	# -- rmdir and recursive rm
	step rmdir /t/sd
	step rmdir /t/d
	step -o json rmdir /t/sd2
	step -o extended rmdir /t/sd3
	step rmdir /t/missing
	step rmdir /t/d/x
	step -o extended rm --dir /t/md
	step rm --dir /t/md2
	step rm -r /t/d
	step -o extended rm -r /t/q
	step -o json rm --recursive /t/td
	# -- values from stdin, special characters
	istep 'from stdin' set /t/s
	istep '' set /t/s2
	istep $'two\nlines\n' mk /t/s3
	istep 'updated' update /t/s
	istep 'x' updatedir /t/sd9
	step get /t/s3
	step set /t/sp 'a b&c=d<>é"\'
	step -o json get /t/sp
	step -o extended get /t/sp
	step set "/t/with space" v
	step --debug --no-sync get "/t/with space"
	step -o json set /t/ctl "$(printf 'a\001b\bc\fd\te\u2028f\x7f')"
	step set /t/empty ""
	step -o json get /t/empty
	step ls --sort /t/
	step get t/a
	step get //t//s/
	# -- flag placement and Go flag syntax
	step set -- /t/dash -v
	step set /t/dash2 -- -x
	step get /t/dash
	step set /t/pos v --ttl 100
	step -o extended get /t/pos
	step get /t/pos -o json
	step ls /t/q -r --sort
	step -output json get /t/s
	step --output=json get /t/s
	step -o=extended get /t/s
	step get -sort /t/s
	step get --sort=false /t/s
	step ls --sort=true -p=1 /t
	step set --ttl=0x1000 /t/hex v
	step set --ttl -5 /t/neg v
	step -o extended get /t/neg
	step set /t/twice v --ttl 500 --ttl 600
	step --no-sync=false get /t/s
	step --debug=0 get /t/s
	step --help=false get /t/s
	step get --help=false /t/s
	# -- usage errors (first stdout line, stderr, exit code)
	ustep get --bogus /t/a
	ustep --bogus get /t/a
	ustep set --ttl abc /t/x y
	ustep set --ttl
	ustep set /t/x y --ttl
	ustep set --ttl 99999999999999999999 /t/x y
	ustep -o
	ustep --timeout 5 get /t/s
	ustep --timeout=abc get /t/s
	ustep get ---sort /t/s
	ustep get -=x /t/s
	ustep ls -r --recursive /t
	ustep -o json --output simple get /t/s
	ustep get --sort=maybe /t/s
	ustep get -o json /t/s
	ustep rm --with-index x /t/s
	ustep watch --after-index
	step bogus
	step help bogus
	# -- missing operands
	step get
	step set
	step set /t/x
	step mk
	step mk /t/x
	step mkdir
	step rm
	step rmdir
	step update /t/x
	step updatedir
	step setdir
	step watch
	step exec-watch /t/x
	step exec-watch
	# -- unsupported output formats
	step -o xml get /t/s
	step -o xml ls /t
	step -o xml mkdir /t/xmldir
	step -o xml rm /t/missing
	# -- --debug request lines
	step --debug get /t/s
	step --debug --no-sync set --ttl 100 /t/dbg 'a b&c'
	step --debug --no-sync set --swap-with-value 'a b&c' --swap-with-index 3 /t/dbg x
	step --debug mk --in-order /t/q2 v
	step --debug mk /t/q3 v
	step --debug rm -r --with-index 3 /t/q2
	step --debug ls --sort -r -q /t/q2
	step --debug mkdir --ttl 500 /t/dd
	step --debug updatedir --ttl 500 /t/dd
	step --debug setdir /t/dd2
	step --debug rmdir /t/dd2
	step --debug update /t/s x
	step --debug -o json rm --with-value x --dir /t/s
	step --debug --no-sync get /
	step --debug ls
	# -- endpoints
	step --endpoints "$EP" get /t/pos
	step --peers "$EP" get /t/pos
	step -C "$EP" get /t/pos
	step --endpoint "$EP" get /t/pos
	step --endpoints "$EP/" --debug get /t/pos
	step --endpoints "$DEAD" get /t/pos
	step --endpoints "$DEAD" get
	step --endpoints "$DEAD" watch /t/pos
	step --no-sync --endpoints "$DEAD" get /t/pos
	step --no-sync --endpoints "$DEAD" -o json get /t/pos
	step --no-sync --endpoints "$DEAD" mk /t/x v
	step --no-sync --endpoints "$DEAD" mkdir /t/x
	step --no-sync --endpoints "$DEAD" set /t/x v
	step --endpoints "$DEAD,$EP" get /t/pos
	step --no-sync --endpoints "$DEAD,$EP" get /t/pos
	step --endpoints "127.0.0.1:$CPORT" get /t/pos
	step --debug --endpoints "$DEAD" get /t/pos
	ETCDCTL_ENDPOINTS=$DEAD step get /t/pos
	ETCDCTL_ENDPOINTS= ETCDCTL_PEERS=$EP step get /t/pos
	# -- timeouts against a server that never answers
	step --no-sync --timeout 300ms --endpoints "$SILENT" get /t/pos
	step --no-sync --timeout 2s --total-timeout 300ms --endpoints "$SILENT" get /t/pos
	step --timeout 300ms --total-timeout 3s --endpoints "$SILENT" get /t/pos
	step --no-sync --timeout 300ms --endpoints "$SILENT,$EP" get /t/pos

	# -- watch: one change, then exit
	step set /t/w/a 1
	local w0
	w0=$(watchers)
	bgstep watch /t/w/a
	await_watcher "${w0:-0}"
	curl -s -X PUT "$EP/v2/keys/t/w/a" -d value=2 >/dev/null
	await_exit $BG
	# recursive, extended: a directory change is skipped, the next change printed
	w0=$(watchers)
	bgstep -o extended watch -r /t/w
	await_watcher "${w0:-0}"
	curl -s -X PUT "$EP/v2/keys/t/w/sub?dir=true" >/dev/null
	curl -s -X PUT "$EP/v2/keys/t/w/b" -d value=3 >/dev/null
	await_exit $BG
	# history replay with --after-index, forever, json; interrupted like Ctrl-C (exit 0)
	i=$(curindex)
	curl -s -X PUT "$EP/v2/keys/t/w/a" -d value=4 >/dev/null
	curl -s -X DELETE "$EP/v2/keys/t/w/b" >/dev/null
	curl -s -X PUT "$EP/v2/keys/t/w/c" -d value=5 -d ttl=100 >/dev/null
	bgstep -o json watch --forever --recursive --after-index "$i" /t/w
	await_lines "$F.out" 6
	await_exit $BG 0
	bgstep watch -f -r --after-index "$i" /t/w
	await_lines "$F.out" 6
	await_exit $BG 0
	bgstep watch --after-index "$i" /t/w/a
	await_exit $BG
	step watch --after-index "$i" /t/w/a
	# exec-watch: a directory change is reported and skipped, then the command runs once.
	# etcdctl's argument rules: with "--", the key must directly follow a bool flag (the
	# reordering takes it for that flag's value); without "--", the key is the last word.
	i=$(curindex)
	curl -s -X PUT "$EP/v2/keys/t/x/dir?dir=true" >/dev/null
	curl -s -X PUT "$EP/v2/keys/t/x/k" --data-urlencode 'value=hello world' >/dev/null
	bgstep exec-watch --after-index "$i" -r /t/x -- sh -c \
		'echo "$ETCD_WATCH_ACTION|$ETCD_WATCH_KEY|$ETCD_WATCH_VALUE|$ETCD_WATCH_MODIFIED_INDEX"'
	await_lines "$F.out" 1
	await_exit $BG 0
	i=$(curindex)
	curl -s -X DELETE "$EP/v2/keys/t/x/k" >/dev/null
	bgstep exec-watch --after-index "$i" sh -c 'echo "[$ETCD_WATCH_ACTION] [$ETCD_WATCH_VALUE]"' /t/x/k
	await_lines "$F.out" 1
	await_exit $BG 0
	i=$(curindex)
	curl -s -X PUT "$EP/v2/keys/t/x/k" -d value=again >/dev/null
	bgstep exec-watch --after-index "$i" -r /t/x/k -- sh -c 'echo "$ETCD_WATCH_KEY=$ETCD_WATCH_VALUE"'
	await_lines "$F.out" 1
	await_exit $BG 0
	bgstep exec-watch --after-index "$i" /no/such/program /t/x/k
	await_exit $BG
	bgstep exec-watch --after-index "$i" no-such-program-anywhere /t/x/k
	await_exit $BG
	ETCD_WATCH_KEY=stale bgstep exec-watch --after-index "$i" sh -c 'echo "$ETCD_WATCH_KEY"' /t/x/k
	await_lines "$F.out" 1
	await_exit $BG 0
	step --debug --no-sync watch --after-index "$i" /t/x/k
}

# The two runs must see the same indices, so no TTL in the scenario is short enough to expire
# while it runs (an expiry is an index; a slow ASan run would meet it at another step).
normalize() {
	sed -e 's/"expiration":"[^"]*"/"expiration":"<time>"/g' \
		-e 's/"ttl":[0-9][0-9]*/"ttl":<ttl>/g' \
		-e 's/^TTL: [1-9][0-9]*$/TTL: <ttl>/' "$1"
}

run_with() {
	WHO=$1
	OUT=$TMP/$1
	N=0
	mkdir -p "$OUT"
	start_server
	scenario
	stop_server
}

run_with etcdctl
run_with flotctl

fails=0
for f in "$TMP"/etcdctl/*.cmd; do
	b=$(basename "$f" .cmd)
	e=$TMP/etcdctl/$b
	g=$TMP/flotctl/$b
	bad=
	[ "$(cat "$e.rc")" = "$(cat "$g.rc" 2>/dev/null)" ] || bad="exit code"
	cmp -s <(normalize "$e.out") <(normalize "$g.out") || bad="$bad stdout"
	cmp -s <(normalize "$e.err") <(normalize "$g.err") || bad="$bad stderr"
	if [ -n "$bad" ]; then
		fails=$((fails + 1))
		echo "--- step $b differs ($bad): $(cat "$f")"
		echo "    exit: etcdctl $(cat "$e.rc"), flotctl $(cat "$g.rc" 2>/dev/null)"
		diff <(normalize "$e.out") <(normalize "$g.out") | sed 's/^/    out: /' | head -20
		diff <(normalize "$e.err") <(normalize "$g.err") | sed 's/^/    err: /' | head -20
	fi
done
total=$(ls "$TMP"/etcdctl/*.cmd | wc -l)

# flotctl's own surface: help and version exit 0, the endpoint variables it adds.
WHO=flotctl
own_fail() {
	echo "--- flotctl-only check failed: $*"
	fails=$((fails + 1))
}
start_server
"$FLOTCTL" --help >/dev/null || own_fail "--help"
"$FLOTCTL" help get | grep -q 'flotctl get' || own_fail "help get"
"$FLOTCTL" set --help | grep -q -- '--swap-with-value' || own_fail "set --help"
"$FLOTCTL" --version | grep -q '^flotctl version: ' || own_fail "--version"
curl -s -X PUT "$EP/v2/keys/own" -d value=ok >/dev/null
[ "$(env -u ETCDCTL_ENDPOINTS FLOTCTL_ENDPOINTS=$EP "$FLOTCTL" get /own)" = ok ] ||
	own_fail "FLOTCTL_ENDPOINTS"
[ "$(env -u ETCDCTL_ENDPOINTS FLOTCTL_ENDPOINT=$EP "$FLOTCTL" get /own)" = ok ] ||
	own_fail "FLOTCTL_ENDPOINT"
[ "$(FLOTCTL_ENDPOINTS=$EP ETCDCTL_ENDPOINTS=$DEAD "$FLOTCTL" get /own)" = ok ] ||
	own_fail "FLOTCTL_ENDPOINTS before ETCDCTL_ENDPOINTS"
stop_server

if [ $fails -ne 0 ]; then
	echo "FAIL: $fails of $total steps differ between etcdctl and flotctl (target $TARGET)"
	exit 1
fi
echo "PASS: $total steps identical for etcdctl and flotctl (target $TARGET)"
exit 0
