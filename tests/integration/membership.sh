#!/bin/bash
# Runtime membership as etcd v2 does it: three members; Debian's etcdctl (ETCDCTL_API=2) adds a
# fourth (member add), which starts with --initial-cluster-state existing, catches up (a key
# written before is readable on it) and shows in member list; then member remove of the fourth:
# it exits by itself with status 0, the list shows three again and writes still work.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_cluster.sh"

command -v etcdctl >/dev/null || { note "etcdctl not installed: skipped"; exit 77; }
export ETCDCTL_API=2
declare -a CPORT PPORT PID DIR
for i in 1 2 3 4; do
	CPORT[$i]=$(free_port)
	PPORT[$i]=$(free_port)
	DIR[$i]=$T_TMP/n$i
done
CLUSTER="n1=http://127.0.0.1:${PPORT[1]},n2=http://127.0.0.1:${PPORT[2]}"
CLUSTER+=",n3=http://127.0.0.1:${PPORT[3]}"

ctl() { etcdctl --endpoints "$(url 1),$(url 2),$(url 3)" "$@"; }
count_members() { [ "$(ctl member list 2>/dev/null | wc -l)" = "$1" ]; }
dump_logs() {
	for i in 1 2 3 4; do
		echo "---- n$i" >&2
		tail -n 30 "$T_TMP/n$i.log" >&2 2>/dev/null
	done
}

for i in 1 2 3; do start_member "$i" --initial-cluster-state new --initial-cluster "$CLUSTER"; done
for i in 1 2 3; do
	wait_for 10 curl -sf "$(url "$i")/health" || { dump_logs; fail "n$i is not healthy"; }
done
wait_for 10 count_members 3 || { dump_logs; fail "member list does not show 3 members"; }
wait_for 10 ctl set /before hello >/dev/null || { dump_logs; fail "cannot write before the add"; }

# A bad add is refused as etcd refuses it.
code=$(curl -s -o /dev/null -w '%{http_code}' -XPOST "$(url 1)/v2/members" \
	-H 'Content-Type: application/json' -d '{"peerURLs":["foo"]}')
[ "$code" = 400 ] || fail "POST with a bad URL answered $code, not 400"
code=$(curl -s -o /dev/null -w '%{http_code}' -XPOST "$(url 2)/v2/members" \
	-H 'Content-Type: application/json' -d "{\"peerURLs\":[\"http://127.0.0.1:${PPORT[1]}\"]}")
[ "$code" = 409 ] || fail "POST with an existing peer URL answered $code, not 409"

out=$(ctl member add n4 "http://127.0.0.1:${PPORT[4]}") || { dump_logs; fail "member add failed"; }
echo "$out" | grep -q 'ETCD_INITIAL_CLUSTER_STATE="existing"' || fail "unexpected add output: $out"
ID4=$(echo "$out" | sed -n 's/^Added member named n4 with ID \([0-9a-f]*\) to cluster$/\1/p')
[ -n "$ID4" ] || fail "no id in: $out"
ctl member list | grep -q "^$ID4\[unstarted\]: peerURLs=http://127.0.0.1:${PPORT[4]}$" ||
	fail "the added member is not listed as unstarted: $(ctl member list)"

start_member 4 --initial-cluster-state existing \
	--initial-cluster "$CLUSTER,n4=http://127.0.0.1:${PPORT[4]}"
wait_for 15 has_value 4 before hello || { dump_logs; fail "n4 did not catch up"; }
wait_for 10 count_members 4 || { dump_logs; fail "member list does not show 4 members"; }
wait_for 10 eval 'ctl member list | grep -q "^$ID4: name=n4 "' ||
	{ dump_logs; fail "n4 is not listed by name: $(ctl member list)"; }
wait_for 10 eval 'ctl cluster-health | grep -q "^cluster is healthy$"' ||
	{ dump_logs; fail "cluster-health: $(ctl cluster-health)"; }
ctl set /with4 four >/dev/null || fail "cannot write with 4 members"
wait_for 10 has_value 4 with4 four || fail "n4 does not follow new writes"
# flotctl prints what etcdctl prints, asked of the same member (n1), once n1 too has applied
# n4's name (members apply the name record at their own pace).
fctl() { "$FLOTCTL" --no-sync --endpoints "$(url 1)" "$@"; }
ctl1() { etcdctl --no-sync --endpoints "$(url 1)" "$@"; }
same_list() {
	local f e
	f=$(fctl member list) && e=$(ctl1 member list) && [ "$f" = "$e" ] &&
		echo "$e" | grep -q "^$ID4: name=n4 "
}
wait_for 10 same_list ||
	fail "flotctl member list differs: $(fctl member list) vs $(ctl1 member list)"
[ "$(fctl cluster-health)" = "$(ctl1 cluster-health)" ] ||
	fail "flotctl cluster-health differs: $(fctl cluster-health)"
fctl member update "$ID4" "http://127.0.0.1:${PPORT[4]}" |
	grep -q "^Updated member with ID $ID4 in cluster$" || fail "flotctl member update failed"
code=$(curl -s -o /dev/null -w '%{http_code}' -XPUT "$(url 3)/v2/members/$ID4" \
	-H 'Content-Type: application/json' -d "{\"peerURLs\":[\"http://127.0.0.1:${PPORT[2]}\"]}")
[ "$code" = 409 ] || fail "PUT with another member's peer URL answered $code, not 409"
note "n4 ($ID4) joined"

ctl member remove "$ID4" | grep -q "^Removed member $ID4 from cluster$" ||
	fail "member remove failed"
wait_for 15 eval '! kill -0 ${PID[4]} 2>/dev/null' || { dump_logs; fail "n4 did not exit"; }
wait "${PID[4]}"
rc=$?
[ "$rc" = 0 ] || { dump_logs; fail "n4 exited with status $rc"; }
grep -q "removed from the cluster" "$T_TMP/n4.log" || fail "n4 did not log its removal"
wait_for 10 count_members 3 || fail "member list does not show 3 members after the removal"
wait_for 10 eval 'ctl set /after bye >/dev/null' ||
	{ dump_logs; fail "cannot write after the removal"; }
code=$(curl -s -o /dev/null -w '%{http_code}' -XDELETE "$(url 1)/v2/members/$ID4")
[ "$code" = 410 ] || fail "DELETE of a removed member answered $code, not 410"
code=$(curl -s -o /dev/null -w '%{http_code}' -XDELETE "$(url 1)/v2/members/1234")
[ "$code" = 404 ] || fail "DELETE of an unknown member answered $code, not 404"
note "n4 removed, cluster of 3 writes"
