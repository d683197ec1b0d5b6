# Shared helpers of the integration scripts: free ports, starting and stopping real flotillad
# processes with deadlines (never sleeps-and-hopes), and a trap that stops only our own PIDs.
# Source it; it expects FLT_BUILDDIR (set by `make check`) or defaults to ./build.

set -u
FLT_BUILDDIR=${FLT_BUILDDIR:-$(pwd)/build}
FLT_SRCDIR=${FLT_SRCDIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
FLOTILLAD=$FLT_BUILDDIR/flotillad
FLOTCTL=$FLT_BUILDDIR/flotctl
PY=/usr/bin/python3 # Debian's python3-etcd lives in the system interpreter's path

# FLT_WRAP runs every daemon start_node starts under a checker, e.g.
# FLT_WRAP="valgrind -q --leak-check=full --error-exitcode=99": daemons still running at the end
# are then stopped with SIGTERM and any non-zero exit (a leak, an invalid access) fails the test.
FLT_WRAP=${FLT_WRAP:-}
T_PIDS=()
T_NODE_PIDS=()
T_TMP=$(mktemp -d "${TMPDIR:-/tmp}/flt-test.XXXXXX")
T_RC=0
# Stop our daemons (TERM, then wait); under FLT_WRAP a non-zero exit fails the test. Tests that
# clean up more (units, containers) call it first in their own EXIT trap, then t_cleanup.
t_stop_nodes() {
	local p st end
	for p in "${T_NODE_PIDS[@]}"; do
		kill -0 "$p" 2>/dev/null || continue
		kill -TERM "$p" 2>/dev/null || true
		end=$((SECONDS + 30))
		while kill -0 "$p" 2>/dev/null && [ $SECONDS -lt $end ]; do sleep 0.05; done
		st=0
		wait "$p" 2>/dev/null || st=$?
		if [ -n "$FLT_WRAP" ] && [ "$st" -ne 0 ]; then
			echo "FAIL: daemon $p exited $st under '$FLT_WRAP' (see its log above)" >&2
			cat "$T_TMP"/*.log >&2 2>/dev/null || true
			T_RC=1
		fi
	done
}
t_cleanup() {
	local rc=$? p
	t_stop_nodes
	[ "$T_RC" -eq 0 ] || rc=$T_RC
	for p in "${T_PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	for p in "${T_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$T_TMP"
	exit "$rc"
}
trap t_cleanup EXIT

fail() {
	echo "FAIL: $*" >&2
	exit 1
}
note() { echo "# $*"; }

# A TCP port for a server of the test: free, outside the ephemeral range, reserved against
# the tests running in parallel (tests/free_port.py says why).
free_port() {
	$PY "$FLT_SRCDIR/tests/free_port.py"
}

# Poll `cmd...` until it succeeds or SECONDS pass. Returns 1 on timeout.
wait_for() {
	local secs=$1
	shift
	local end=$((SECONDS + secs))
	until "$@" >/dev/null 2>&1; do
		[ $SECONDS -lt $end ] || return 1
		sleep 0.05
	done
}

# start_node NAME DATADIR PORT [extra flags...]: starts flotillad in the background, logs to
# $T_TMP/NAME.log, waits for /health. Sets NODE_PID.
start_node() {
	local name=$1 dir=$2 port=$3
	shift 3
	# shellcheck disable=SC2086 # FLT_WRAP is a command line
	$FLT_WRAP "$FLOTILLAD" --name "$name" --data-dir "$dir" \
		--listen-client-urls "http://127.0.0.1:$port" \
		--advertise-client-urls "http://127.0.0.1:$port" "$@" >>"$T_TMP/$name.log" 2>&1 &
	NODE_PID=$!
	T_PIDS+=("$NODE_PID")
	T_NODE_PIDS+=("$NODE_PID")
	if ! wait_for $([ -n "$FLT_WRAP" ] && echo 60 || echo 10) curl -sf "http://127.0.0.1:$port/health"; then
		cat "$T_TMP/$name.log" >&2
		fail "flotillad '$name' did not become healthy on port $port within 10 s"
	fi
}

# stop_node PID [SIGNAL]: signal and wait for exit (10 s deadline).
stop_node() {
	local pid=$1 sig=${2:-TERM} st=0 end=$((SECONDS + 10))
	[ -z "$FLT_WRAP" ] || end=$((SECONDS + 30))
	kill -"$sig" "$pid" 2>/dev/null || true
	while kill -0 "$pid" 2>/dev/null; do
		[ $SECONDS -lt $end ] || fail "process $pid did not exit after SIG$sig"
		sleep 0.05
	done
	wait "$pid" 2>/dev/null || st=$?
	# Only our own daemons run under FLT_WRAP (not etcd, which exits 143 on SIGTERM).
	if [ -n "$FLT_WRAP" ] && [ "$sig" != KILL ] && [ "$st" -ne 0 ] &&
		[[ " ${T_NODE_PIDS[*]} " == *" $pid "* ]]; then
		fail "daemon $pid exited $st under '$FLT_WRAP'"
	fi
	# Reaped: forget it, so the exit trap never signals a PID the system may have reused.
	local kept=() p
	for p in "${T_PIDS[@]}"; do [ "$p" = "$pid" ] || kept+=("$p"); done
	T_PIDS=("${kept[@]}")
	kept=()
	for p in "${T_NODE_PIDS[@]}"; do [ "$p" = "$pid" ] || kept+=("$p"); done
	T_NODE_PIDS=("${kept[@]}")
}
