#!/bin/bash
# Network partition of a three-member cluster, with real network namespaces: the member cut away
# cannot commit (a write through it is neither acknowledged nor visible on the majority), the
# majority elects a leader and keeps taking writes, and after healing all three converge.
#
# Rules for network tests on shared machines, followed here: own namespaces named fltp<PID>-*, a
# bridge in a namespace of its own, addresses only from 10.213.77.0/24, a blackhole route for that
# range in the host namespace while the test runs (with the PID as metric so parallel runs each
# own theirs), everything removed by the exit trap. Needs CAP_NET_ADMIN: without it the test FAILS.
. "$(dirname "$0")/lib.sh"
# find_leader; start_member, is_leader, put and has_value are redefined below for members
# that live in network namespaces.
. "$(dirname "$0")/lib_cluster.sh"

N=3
P=fltp$$
BRNS=$P-br
NET=10.213.77
ROUTE="blackhole $NET.0/24 metric $$"
declare -a NS IP DIR PID
NET_NS=()      # namespaces we created (removed by the trap)
ROUTE_ADDED=0

net_teardown() {
	local ns
	for ns in "${NET_NS[@]}"; do
		# the bridge namespace goes at once (its veth ends take the member ends with them); a
		# member namespace lives on until the daemon inside has been stopped by t_cleanup
		ip netns del "$ns" 2>/dev/null || echo "warning: could not delete netns $ns" >&2
	done
	NET_NS=()
	if [ "$ROUTE_ADDED" = 1 ]; then
		# shellcheck disable=SC2086 # ROUTE is a word list
		ip route del $ROUTE 2>/dev/null || echo "warning: could not delete route $ROUTE" >&2
		ROUTE_ADDED=0
	fi
}
p_cleanup() {
	local rc=$?
	net_teardown
	(exit "$rc")
	t_cleanup # exits with rc (or 1 when a daemon failed under FLT_WRAP)
}
trap p_cleanup EXIT

dump_logs() {
	local i
	for i in $(seq 1 $N); do
		echo "---- n$i" >&2
		tail -n 40 "$T_TMP/n$i.log" >&2
	done
}

# ---- the network --------------------------------------------------------------------------------
command -v ip >/dev/null || fail "partition.sh needs iproute2's 'ip' (not found)"
ip netns add "$P-probe" 2>"$T_TMP/probe.err" ||
	fail "partition.sh needs network namespaces (root / CAP_NET_ADMIN):" \
		"'ip netns add' failed: $(cat "$T_TMP/probe.err")"
ip netns del "$P-probe" || fail "cannot delete the probe namespace $P-probe"

# shellcheck disable=SC2086
ip route add $ROUTE ||
	fail "cannot add the safety route '$ROUTE' in the host namespace (needs root / CAP_NET_ADMIN)"
ROUTE_ADDED=1

ip netns add "$BRNS" || fail "ip netns add $BRNS failed"
NET_NS+=("$BRNS")
ip -n "$BRNS" link set lo up
ip -n "$BRNS" link add br0 type bridge || fail "cannot create a bridge in $BRNS"
ip -n "$BRNS" link set br0 up
for i in $(seq 1 $N); do
	NS[i]=$P-n$i
	IP[i]=$NET.1$i
	DIR[i]=$T_TMP/n$i
	ip netns add "${NS[$i]}" || fail "ip netns add ${NS[$i]} failed"
	NET_NS+=("${NS[$i]}")
	# both veth ends are born inside namespaces: nothing ever appears in the host's namespace
	ip -n "$BRNS" link add "v$i" type veth peer name eth0 netns "${NS[$i]}" ||
		fail "cannot create the veth pair of n$i"
	ip -n "$BRNS" link set "v$i" master br0 up
	ip -n "${NS[$i]}" link set lo up
	ip -n "${NS[$i]}" addr add "${IP[$i]}/24" dev eth0
	ip -n "${NS[$i]}" link set eth0 up
done

# ---- the members --------------------------------------------------------------------------------
CLUSTER=""
for i in $(seq 1 $N); do CLUSTER+="${CLUSTER:+,}n$i=http://${IP[$i]}:2380"; done

# c I CURL-ARGS... URL-PATH: curl member I through its unix socket (no route into the range needed).
c() {
	local i=$1
	shift
	local path=${*: -1}
	curl -s --unix-socket "$T_TMP/n$i.sock" "${@:1:$#-1}" "http://localhost$path"
}

start_member() {
	local i=$1
	# shellcheck disable=SC2086 # FLT_WRAP is a command line
	ip netns exec "${NS[$i]}" $FLT_WRAP "$FLOTILLAD" --name "n$i" --data-dir "${DIR[$i]}" \
		--listen-client-urls "http://${IP[$i]}:2379,unix://$T_TMP/n$i.sock" \
		--advertise-client-urls "http://${IP[$i]}:2379" \
		--listen-peer-urls "http://${IP[$i]}:2380" \
		--initial-advertise-peer-urls "http://${IP[$i]}:2380" \
		--initial-cluster "$CLUSTER" >>"$T_TMP/n$i.log" 2>&1 &
	PID[i]=$!
	T_PIDS+=("${PID[$i]}")
	T_NODE_PIDS+=("${PID[$i]}")
	local secs=10
	[ -z "$FLT_WRAP" ] || secs=60
	if ! wait_for "$secs" c "$i" -f /version; then
		cat "$T_TMP/n$i.log" >&2
		fail "member n$i did not answer on its unix socket within the deadline"
	fi
}

is_leader() { c "$1" -f -m 2 /v2/stats/self | grep -q '"state":"StateLeader"'; }

put() { c "$1" -f -m 5 -XPUT -d "value=$3" "/v2/keys/$2" | grep -q '"action":"set"'; }
has_value() { c "$1" -f -m 2 "/v2/keys/$2" | grep -q "\"value\":\"$3\""; }
# absent I KEY: member I answers, and answers "key not found" (100).
absent() { c "$1" -m 2 "/v2/keys/$2" | grep -q '"errorCode":100'; }
ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }

for i in $(seq 1 $N); do start_member "$i"; done
ALL=$(seq 1 $N)
# shellcheck disable=SC2086
wait_for 15 find_leader $ALL || { dump_logs; fail "no single leader within 15 s"; }
# shellcheck disable=SC2086
L=$(find_leader $ALL)
note "cluster up over veths in $P-*; leader is n$L"

ACKED=() # "key=value" of every acknowledged write
for k in $(seq 1 10); do
	i=$((k % N + 1))
	put "$i" "pre$k" "a$k" || { dump_logs; fail "write pre$k through n$i failed"; }
	ACKED+=("pre$k=a$k")
done

# partition_round ISO ROUND: cut member ISO off (its veth down, inside its namespace), check both
# sides, heal, check convergence.
partition_round() {
	local iso=$1 r=$2 i k t0 out code MAJ=() NL="" end
	for i in $ALL; do [ "$i" = "$iso" ] || MAJ+=("$i"); done
	local was_leader=0
	is_leader "$iso" && was_leader=1

	t0=$(date +%s%N)
	ip -n "${NS[$iso]}" link set eth0 down || fail "cannot take down eth0 of n$iso"
	note "round $r: n$iso cut off (was leader: $was_leader)"

	# A write through the isolated member at once (while it may still believe it leads or
	# follows), in the background while the majority goes on: it must not be acknowledged.
	# node.c fails proposals after 3 election timeouts (3 s); curl gives up after 10 s.
	c "$iso" -m 10 -w '\n%{http_code} %{time_total}' -XPUT -d "value=lost$r" "/v2/keys/iso$r" \
		>"$T_TMP/iso$r.out" 2>/dev/null &
	local cpid=$!
	T_PIDS+=("$cpid")

	# The majority elects a leader (if the isolated one led) and keeps taking writes.
	end=$((SECONDS + 15))
	while [ $SECONDS -lt $end ]; do
		if NL=$(find_leader "${MAJ[@]}") && put "$NL" "maj$r-0" "m0"; then
			break
		fi
		NL=""
		sleep 0.05
	done
	[ -n "$NL" ] || { dump_logs; fail "round $r: the majority has no working leader"; }
	ACKED+=("maj$r-0=m0")
	note "round $r: majority leader n$NL took a write $(ms_since "$t0") ms after the cut"
	for k in $(seq 1 20); do
		i=${MAJ[$((k % 2))]}
		put "$i" "maj$r-$k" "m$k" || { dump_logs; fail "round $r: write maj$r-$k through n$i failed"; }
		ACKED+=("maj$r-$k=m$k")
	done
	# The isolated write ends (curl's -m bounds it) without an acknowledgement.
	wait "$cpid" || true
	local kept=() p
	for p in "${T_PIDS[@]}"; do [ "$p" = "$cpid" ] || kept+=("$p"); done
	T_PIDS=("${kept[@]}")
	out=$(cat "$T_TMP/iso$r.out")
	code=${out##*$'\n'}
	out=${out%$'\n'*}
	out=${out%$'\n'}
	if [ "${code:0:1}" = 2 ] || echo "$out" | grep -q '"action":"set"'; then
		dump_logs
		fail "round $r: the write through isolated n$iso was acknowledged: $code $out"
	fi
	note "round $r: write through isolated n$iso not acknowledged:" \
		"HTTP ${code% *} after ${code#* } s: ${out:-(no answer)}"
	for i in "${MAJ[@]}"; do
		absent "$i" "iso$r" || fail "round $r: the isolated write iso$r is visible on n$i"
	done
	# The isolated member has stepped down (check-quorum) and is not the leader.
	wait_for 5 eval '! is_leader '"$iso" || fail "round $r: isolated n$iso still claims to lead"
	# A quorum read through it cannot succeed either.
	out=$(c "$iso" -m 10 -w '\n%{http_code}' "/v2/keys/maj$r-1?quorum=true") || true
	code=${out##*$'\n'}
	[ "${code:0:1}" != 2 ] || fail "round $r: quorum read on isolated n$iso answered: $out"

	# Heal, then everyone converges within a deadline.
	t0=$(date +%s%N)
	ip -n "${NS[$iso]}" link set eth0 up || fail "cannot bring eth0 of n$iso back up"
	converged() {
		local i kv n idx first=""
		for i in $ALL; do
			for kv in "${ACKED[@]}"; do
				has_value "$i" "${kv%%=*}" "${kv#*=}" || return 1
			done
		done
		# and exactly one leader, known to all (every member reports the same leader id)
		# shellcheck disable=SC2086
		find_leader $ALL >/dev/null || return 1
		for i in $ALL; do
			n=$(c "$i" -f -m 2 /v2/stats/self | grep -o '"leaderInfo":{"leader":"[0-9a-f]*"') ||
				return 1
			[ -z "$first" ] || [ "$n" = "$first" ] || return 1
			first=$n
		done
		# and the same store index everywhere (nothing written since the last ack)
		first=""
		for i in $ALL; do
			idx=$(c "$i" -f -m 2 -D - -o /dev/null /v2/keys/ | tr -d '\r' |
				sed -n 's/^X-Etcd-Index: //Ip') || return 1
			[ -n "$idx" ] || return 1
			[ -z "$first" ] || [ "$idx" = "$first" ] || return 1
			first=$idx
		done
	}
	caught_up() {
		local kv
		for kv in "${ACKED[@]}"; do has_value "$1" "${kv%%=*}" "${kv#*=}" || return 1; done
	}
	wait_for 30 caught_up "$iso" || { dump_logs; fail "round $r: n$iso did not catch up in 30 s"; }
	note "round $r: healed n$iso has every acknowledged write" \
		"$(ms_since "$t0") ms after healing"
	wait_for 30 converged || { dump_logs; fail "round $r: no convergence within 30 s of healing"; }
	# shellcheck disable=SC2086
	L=$(find_leader $ALL)
	note "round $r: healed; all $N members converged (${#ACKED[@]} keys, one leader n$L)" \
		"in $(ms_since "$t0") ms"
	if [ "$was_leader" = 1 ]; then
		# An old leader's uncommitted entry can never commit after a newer leader took over.
		for i in $ALL; do
			absent "$i" "iso$r" || fail "round $r: the refused write iso$r appeared on n$i"
		done
	fi
	# The healed member takes part again: a write through it is readable everywhere.
	wait_for 10 put "$iso" "healed$r" "h$r" ||
		{ dump_logs; fail "round $r: write through healed n$iso failed"; }
	ACKED+=("healed$r=h$r")
	for i in $ALL; do
		wait_for 5 has_value "$i" "healed$r" "h$r" || fail "round $r: healed$r not readable on n$i"
	done
}

# Round 1 cuts off the leader, round 2 a follower.
partition_round "$L" 1
# shellcheck disable=SC2086
L=$(find_leader $ALL) || fail "no single leader before round 2"
partition_round $((L % N + 1)) 2

for i in $ALL; do stop_node "${PID[$i]}"; done
# A sanitizer build (../configure --enable-sanitizers) reports into the logs.
if grep -l -E 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$T_TMP"/n*.log; then
	dump_logs
	fail "sanitizer reports in the daemons' logs"
fi
note "ok"
