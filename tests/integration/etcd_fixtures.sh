#!/bin/bash
# Replays every recorded etcd 3.4 v2 exchange (fixtures/etcd-v2/, in order) against one fresh
# flotillad and compares each answer with the recording after normalizing what legitimately
# differs (etcd_fixtures_cmp.py says what). Fixtures that need something around their command
# get it here: the TTL waits (018, 090), the concurrent writes that fire a watch (064, 065) and
# the 1,100 writes to /churn before 067. Every mismatch is printed as a diff; any fails the test.
# FIXTURES=/path overrides the fixture dir, ONLY=NNN replays up to NNN and compares only NNN.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

FIXTURES=${FIXTURES:-${FLT_SHARED:-$FLT_SRCDIR/../shared}/fixtures/etcd-v2}
[ -d "$FIXTURES" ] || fail "fixture dir not found (set FIXTURES)"
CMP="$FLT_SRCDIR/tests/integration/etcd_fixtures_cmp.py"
[ -x "$FLOTILLAD" ] || fail "no daemon at '$FLOTILLAD'"

PORT=$(free_port)
start_node fx "$T_TMP/data" "$PORT"
URL=http://127.0.0.1:$PORT

# Poll until /v2/stats/store counts at least N watchers (a watch is registered).
watchers_at_least() {
	curl -s "$URL/v2/stats/store" | $PY -c "import json,sys; sys.exit(0 if json.load(sys.stdin)['watchers'] >= $1 else 1)"
}
key_gone() {
	[ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/v2/keys/$1")" = 404 ]
}

# Run the fixture's curl command line against our port; the recording is `curl -si` + "\n".
run_cmd() {
	local cmdline=$1 out=$2
	cmdline=${cmdline#\$ }
	cmdline=${cmdline//127.0.0.1:24001/127.0.0.1:$PORT}
	{ eval "$cmdline"; echo; } >"$out" 2>/dev/null
}

# Start the watch of fixture $1 in the background, wait until it is registered, then run the
# write that fires it (the recording's server got that write from another client).
run_with_write() {
	local cmdline=$1 out=$2 write=$3 before
	before=$(curl -s "$URL/v2/stats/store" | $PY -c 'import json,sys; print(json.load(sys.stdin)["watchers"])')
	run_cmd "$cmdline --max-time 10" "$out" &
	local bg=$!
	wait_for 5 watchers_at_least $((before + 1)) || echo "# watch of $(basename "$out") never registered"
	curl -s -o /dev/null $write
	wait "$bg" || true
}

failed=0 total=0
for f in "$FIXTURES"/[0-9][0-9][0-9]-*.txt; do
	n=$(basename "$f")
	num=${n%%-*}
	if [ -n "${ONLY:-}" ] && [ "$num" -gt "$ONLY" ]; then break; fi
	cmdline=$(head -n 1 "$f")
	out=$T_TMP/$n
	case $num in
	018) wait_for 5 key_gone short || echo "# /short did not expire within 5 s" ;;
	067) # 1,100 writes to /churn push the first events out of the 1,000-event history
		for i in $(seq 1100); do printf "url = \"%s\"\noutput = \"/dev/null\"\n" "$URL/v2/keys/churn"; done >"$T_TMP/churn.cfg"
		curl -s --no-progress-meter -Z --parallel-max 64 -X PUT -d value=v -K "$T_TMP/churn.cfg" ;;
	esac
	case $num in
	064) run_with_write "$cmdline" "$out" "-X PUT $URL/v2/keys/w -d value=two" ;;
	065) run_with_write "$cmdline" "$out" "-X PUT $URL/v2/keys/wd/x -d value=two" ;;
	076) run_cmd "$cmdline --max-time 2" "$out" ;; # curl -X HEAD may wait for a body
	*) run_cmd "$cmdline" "$out" ;;
	esac
	if [ -n "${ONLY:-}" ] && [ "$num" != "$ONLY" ]; then continue; fi
	total=$((total + 1))
	if ! $PY "$CMP" "$f" "$out"; then
		failed=$((failed + 1))
	fi
done
note "$((total - failed)) of $total fixtures match"
[ "$failed" -eq 0 ] || fail "$failed fixture(s) differ from etcd"
