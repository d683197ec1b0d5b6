# Helpers of the multi-member tests (source after lib.sh): members on loopback with ports in
# CPORT[i]/PPORT[i] and data dirs in DIR[i] (the caller fills them), their PIDs in PID[i].

# start_member I [flags...]: start member nI in the background with the given extra flags
# (--initial-cluster, ...) and wait until its client port answers (not /health: that asks for
# a leader, which needs a quorum to be up).
start_member() {
	local i=$1
	shift
	# shellcheck disable=SC2086 # FLT_WRAP is a command line
	$FLT_WRAP "$FLOTILLAD" --name "n$i" --data-dir "${DIR[$i]}" \
		--listen-client-urls "http://127.0.0.1:${CPORT[$i]}" \
		--advertise-client-urls "http://127.0.0.1:${CPORT[$i]}" \
		--listen-peer-urls "http://127.0.0.1:${PPORT[$i]}" \
		--initial-advertise-peer-urls "http://127.0.0.1:${PPORT[$i]}" \
		"$@" >>"$T_TMP/n$i.log" 2>&1 &
	PID[$i]=$!
	T_PIDS+=("${PID[$i]}")
	T_NODE_PIDS+=("${PID[$i]}")
	if ! wait_for 10 curl -sf "http://127.0.0.1:${CPORT[$i]}/version"; then
		cat "$T_TMP/n$i.log" >&2
		fail "member n$i did not answer on port ${CPORT[$i]} within 10 s"
	fi
}

url() { echo "http://127.0.0.1:${CPORT[$1]}"; }

# The three requests below are what the tests ask of a member; partition.sh, whose members
# live in network namespaces, redefines them to go through unix sockets.
is_leader() { curl -sf -m 2 "$(url "$1")/v2/stats/self" | grep -q '"state":"StateLeader"'; }
# put I KEY VALUE: a write through member I; succeeds only when the write was acknowledged.
put() { curl -sf -m 5 -XPUT "$(url "$1")/v2/keys/$2" -d "value=$3" | grep -q '"action":"set"'; }
has_value() { curl -sf -m 2 "$(url "$1")/v2/keys/$2" | grep -q "\"value\":\"$3\""; }

# find_leader I...: echo the one member among I... that says it leads (exactly one must).
find_leader() {
	local i found=""
	for i in "$@"; do
		if is_leader "$i"; then
			[ -z "$found" ] || return 1
			found=$i
		fi
	done
	[ -n "$found" ] && echo "$found"
}
