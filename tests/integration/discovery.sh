#!/bin/bash
# Bootstrapping through etcd's v2 discovery protocol, against a real etcd 3.4 and against
# flotillad itself as the discovery service: four nodes are started with the same --discovery
# URL for a cluster of three; three become members (one leader), the fourth a proxy that
# forwards every call (writes, reads, members, watches) to them. A member restarted while the
# discovery service is gone comes back from what it saved. Static --proxy on works too.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_cluster.sh"
. "$(dirname "$0")/lib_compat.sh"

N=4
declare -a CPORT PPORT PID DIR

# spawn I URL [flags]: start node nI with --discovery URL without waiting (members block in
# discovery until the cluster is complete).
spawn() {
	local i=$1 disc=$2
	shift 2
	# shellcheck disable=SC2086 # FLT_WRAP is a command line
	$FLT_WRAP "$FLOTILLAD" --name "n$i" --data-dir "${DIR[$i]}" \
		--listen-client-urls "http://127.0.0.1:${CPORT[$i]}" \
		--advertise-client-urls "http://127.0.0.1:${CPORT[$i]}" \
		--listen-peer-urls "http://127.0.0.1:${PPORT[$i]}" \
		--initial-advertise-peer-urls "http://127.0.0.1:${PPORT[$i]}" \
		--discovery "$disc" "$@" >>"$T_TMP/n$i.log" 2>&1 &
	PID[$i]=$!
	T_PIDS+=("${PID[$i]}")
	T_NODE_PIDS+=("${PID[$i]}")
}

dump_logs() {
	for i in $(seq 1 $N); do
		echo "---- n$i" >&2
		tail -n 20 "$T_TMP/n$i.log" >&2
	done
}

members_seen_by() { [ "$(curl -sf -m 2 "$(url "$1")/v2/members" | grep -o '"name":"n[0-9]"' | wc -l)" -eq 3 ]; }
is_proxy() { grep -q 'running as a proxy' "$T_TMP/n$1.log"; }

# run_round LABEL DISCOVERY_BASE: one bootstrap of four nodes through the service at BASE.
run_round() {
	local label=$1 base=$2 token disc proxy="" i leader
	token=$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')
	disc="$base/v2/keys/discovery/$token"
	curl -sf -XPUT "$disc/_config/size" -d value=3 >/dev/null || fail "$label: cannot set the size"
	for i in $(seq 1 $N); do
		CPORT[$i]=$(free_port)
		PPORT[$i]=$(free_port)
		DIR[$i]=$T_TMP/$label-n$i
		: >"$T_TMP/n$i.log"
	done
	for i in $(seq 1 $N); do spawn "$i" "$disc"; done
	for i in $(seq 1 $N); do
		wait_for 20 curl -sf -m 2 "$(url "$i")/version" ||
			{ dump_logs; fail "$label: n$i did not serve within 20 s"; }
	done
	for i in $(seq 1 $N); do is_proxy "$i" && proxy="$proxy $i"; done
	[ "$(echo $proxy | wc -w)" -eq 1 ] || { dump_logs; fail "$label: proxies:'$proxy' (want exactly one)"; }
	proxy=${proxy# }
	note "$label: n$proxy is the proxy"
	members=""
	for i in $(seq 1 $N); do [ "$i" = "$proxy" ] || members="$members $i"; done
	# shellcheck disable=SC2086
	wait_for 10 find_leader $members || { dump_logs; fail "$label: no leader among$members"; }
	leader=$(find_leader $members)
	note "$label: leader n$leader"
	# Each member registered "name=peerURL" (a node that registered after the cluster filled up
	# may be there too: etcd leaves it, and it becomes a proxy); the proxy is no member.
	for i in $members; do
		curl -sf "$disc" | grep -q "\"value\":\"n$i=http://127.0.0.1:${PPORT[$i]}\"" ||
			fail "$label: n$i is not registered: $(curl -s "$disc")"
	done
	! curl -sf "$(url "$leader")/v2/members" | grep -q "\"name\":\"n$proxy\"" ||
		fail "$label: the proxy n$proxy is listed as a member"
	# Every node, the proxy included, lists the three members.
	for i in $(seq 1 $N); do
		wait_for 10 members_seen_by "$i" ||
			fail "$label: n$i lists $(curl -s "$(url "$i")/v2/members")"
	done
	# A write through the proxy is on every member; a watch through the proxy sees a write made
	# on a member; etcdctl works through the proxy.
	put "$proxy" "$label/a" v1 || fail "$label: write through the proxy failed"
	for i in $members; do
		wait_for 5 has_value "$i" "$label/a" v1 || fail "$label: n$i lacks the proxied write"
	done
	curl -sf -m 10 "$(url "$proxy")/v2/keys/$label/w?wait=true" >"$T_TMP/watch.out" &
	local wpid=$!
	T_PIDS+=("$wpid")
	wait_for 5 sh -c "ss -tn | grep -q ':${CPORT[$proxy]} '" || true
	# Keep writing until the watch (which may register after the first write) has its answer.
	local n=0
	until [ -s "$T_TMP/watch.out" ]; do
		n=$((n + 1))
		[ $n -le 50 ] || fail "$label: the watch through the proxy saw nothing"
		put "$leader" "$label/w" "x$n" || true
		sleep 0.1
	done
	wait "$wpid" || fail "$label: the watch through the proxy failed"
	grep -q '"action":"set"' "$T_TMP/watch.out" || fail "$label: watch answer: $(cat "$T_TMP/watch.out")"
	ETCDCTL_API=2 etcdctl --endpoints "$(url "$proxy")" set "/$label/b" v2 >/dev/null ||
		fail "$label: etcdctl set through the proxy failed"
	[ "$(ETCDCTL_API=2 etcdctl --endpoints "$(url "$leader")" get "/$label/b")" = v2 ] ||
		fail "$label: etcdctl's write through the proxy is not on the leader"
	ROUND_MEMBERS=$members
	ROUND_PROXY=$proxy
}

# ---- 1. a real etcd 3.4 as the discovery service ----
start_etcd disc-etcd
ETCD_PID=$SRV_PID
run_round etcd "http://127.0.0.1:$SRV_PORT"
for i in $(seq 1 $N); do stop_node "${PID[$i]}"; done

# ---- 2. flotillad as the discovery service ----
DPORT=$(free_port)
start_node disc "$T_TMP/disc" "$DPORT"
DISC_PID=$NODE_PID
run_round flotilla "http://127.0.0.1:$DPORT"

# A member restarted while the discovery service is down comes back from its saved result.
stop_node "$DISC_PID"
stop_node "$ETCD_PID"
set -- $ROUND_MEMBERS
stop_node "${PID[$1]}"
spawn "$1" "http://127.0.0.1:$DPORT/v2/keys/discovery/gone"
wait_for 10 curl -sf -m 2 "$(url "$1")/health" || { dump_logs; fail "restarted n$1 is not healthy"; }
grep -q 'found through discovery earlier' "$T_TMP/n$1.log" || fail "restarted n$1 did not use its saved result"
has_value "$1" flotilla/a v1 || fail "restarted n$1 lost data"

# ---- 3. a static proxy (--proxy on with --initial-cluster) ----
CL=""
for i in $ROUND_MEMBERS; do CL+="${CL:+,}n$i=http://127.0.0.1:${PPORT[$i]}"; done
SP=$(free_port)
"$FLOTILLAD" --name sp --data-dir "$T_TMP/sp" --proxy on --initial-cluster "$CL" \
	--listen-client-urls "http://127.0.0.1:$SP" >"$T_TMP/sp.log" 2>&1 &
T_PIDS+=("$!")
T_NODE_PIDS+=("$!")
wait_for 10 curl -sf -m 2 "http://127.0.0.1:$SP/v2/keys/flotilla/a" ||
	{ cat "$T_TMP/sp.log" >&2; fail "the static proxy does not answer"; }
curl -sf "http://127.0.0.1:$SP/v2/keys/flotilla/a" | grep -q '"value":"v1"' || fail "static proxy read"
# A read-only proxy refuses writes with etcd's 501.
RP=$(free_port)
"$FLOTILLAD" --name rp --data-dir "$T_TMP/rp" --proxy readonly --initial-cluster "$CL" \
	--listen-client-urls "http://127.0.0.1:$RP" >"$T_TMP/rp.log" 2>&1 &
T_PIDS+=("$!")
T_NODE_PIDS+=("$!")
wait_for 10 curl -sf -m 2 "http://127.0.0.1:$RP/v2/keys/flotilla/a" || fail "the read-only proxy does not answer"
code=$(curl -s -o /dev/null -w '%{http_code}' -XPUT "http://127.0.0.1:$RP/v2/keys/x" -d value=1)
[ "$code" = 501 ] || fail "read-only proxy answered a write with $code"
note "discovery against etcd and flotillad, proxies (forwarding, watch, read-only) all as expected"
