# shellcheck shell=bash
# Shared by the client-compatibility tests (*_compat.sh): start a real etcd 3.4 or a flotillad
# on fresh loopback ports, so one client sequence can run against both and be diffed.
# Source after lib.sh. COMPAT_SERVERS="etcd etcd" compares etcd with itself (checks normalization).

ETCD=/usr/bin/etcd
[ -x "$ETCD" ] || fail "real etcd ($ETCD, package etcd-server) is required for this test"
read -r -a SERVERS <<<"${COMPAT_SERVERS:-etcd flotilla}"
[ ${#SERVERS[@]} -eq 2 ] || fail "COMPAT_SERVERS must name two servers, e.g. 'etcd flotilla'"
for s in "${SERVERS[@]}"; do
	case $s in
	etcd) ;;
	flotilla) [ -x "$FLOTILLAD" ] || fail "flotillad not built: $FLOTILLAD" ;;
	*) fail "COMPAT_SERVERS: unknown server '$s' (etcd or flotilla)" ;;
	esac
done

# start_etcd NAME: one-member etcd 3.4 with the v2 API on fresh ports; sets SRV_PORT, SRV_PID.
start_etcd() {
	local name=$1 port peer
	port=$(free_port)
	peer=$(free_port)
	"$ETCD" --enable-v2 --name e1 --data-dir "$T_TMP/$name.data" \
		--listen-client-urls "http://127.0.0.1:$port" \
		--advertise-client-urls "http://127.0.0.1:$port" \
		--listen-peer-urls "http://127.0.0.1:$peer" \
		--initial-advertise-peer-urls "http://127.0.0.1:$peer" \
		--initial-cluster "e1=http://127.0.0.1:$peer" >"$T_TMP/$name.log" 2>&1 &
	SRV_PID=$!
	T_PIDS+=("$SRV_PID")
	if ! wait_for 30 curl -sf "http://127.0.0.1:$port/v2/keys/"; then
		cat "$T_TMP/$name.log" >&2
		fail "etcd '$name' did not answer /v2/keys/ on port $port within 30 s"
	fi
	SRV_PORT=$port
}

# start_server KIND NAME: KIND is etcd or flotilla; sets SRV_PORT and SRV_PID.
start_server() {
	case $1 in
	etcd) start_etcd "$2" ;;
	flotilla)
		SRV_PORT=$(free_port)
		start_node e1 "$T_TMP/$2.data" "$SRV_PORT"
		SRV_PID=$NODE_PID
		;;
	esac
}

# compare_runs WHAT FILE1 FILE2: diff two normalized transcripts; fails with the diff printed.
compare_runs() {
	if ! diff -u --label "${SERVERS[0]}" --label "${SERVERS[1]}" "$2" "$3"; then
		fail "$1 behaves differently against ${SERVERS[1]} than against ${SERVERS[0]} (diff above)"
	fi
	note "$1: ${SERVERS[1]} matches ${SERVERS[0]}"
}

# forget_pid PID: drop a reaped PID from T_PIDS, so the exit trap never signals a reused PID.
forget_pid() {
	local p keep=()
	for p in "${T_PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
	T_PIDS=("${keep[@]}")
}

# stop_server: stops the server started last (start_server) and forgets its PID.
stop_server() {
	stop_node "$SRV_PID"
	forget_pid "$SRV_PID"
}
