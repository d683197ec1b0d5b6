#!/bin/bash
# The scheduler end to end: three members and three proxies, six machines, each running exec
# units through its agent, driven with flotctl as the walkthrough drives fleetctl. Templates
# started as @1 @2 @random then @{3..5} spread over the machines; MachineOf pairs land together
# and a destroyed peer takes its follower off; Conflicts keeps units apart; an unsatisfiable unit
# shows its reason; metadata steers placement; a killed machine's units run elsewhere within
# 5 s (measured); killing the leader moves no unit.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_cluster.sh"

FLOTCTL=${FLOTCTL:-$FLT_BUILDDIR/flotctl}
DRIVERS=$FLT_BUILDDIR/drivers
[ -f "$DRIVERS/exec.so" ] || fail "the exec driver is not built ($DRIVERS/exec.so)"
MARK=4$RANDOM # every unit sleeps this many seconds: how the cleanup finds their processes
N=6
declare -a CPORT PPORT PID DIR MID
for i in $(seq 1 $N); do
	CPORT[$i]=$(free_port)
	PPORT[$i]=$(free_port)
	DIR[$i]=$T_TMP/n$i
done
CLUSTER=""
for i in 1 2 3; do CLUSTER+="${CLUSTER:+,}n$i=http://127.0.0.1:${PPORT[$i]}"; done
meta() { [ "$1" -le 2 ] && echo "region=east,disk=ssd" || echo "region=west"; }

cleanup_units() { pkill -f "sleep $MARK" 2>/dev/null || true; }
trap 'rc=$?; t_stop_nodes; cleanup_units; (exit $rc); t_cleanup' EXIT

dump_logs() {
	for i in $(seq 1 $N); do
		echo "---- n$i" >&2
		tail -n 40 "$T_TMP/n$i.log" >&2
	done
}
ctl() { "$FLOTCTL" --endpoint "$(url "${CTL_NODE:-1}")" "$@"; }

common=(--agent-ttl 2000 --driver-dir "$DRIVERS" --public-ip 127.0.0.1
	--driver-opt "exec-shim=$DRIVERS/flotilla-exec-shim")
for i in 1 2 3; do
	start_member "$i" --initial-cluster "$CLUSTER" --metadata "$(meta "$i")" \
		--machine-id "$(printf '%032x' "$i")" "${common[@]}"
done
wait_for 10 find_leader 1 2 3 || { dump_logs; fail "no leader"; }
for i in 4 5 6; do
	start_member "$i" --proxy on --initial-cluster "$CLUSTER" --metadata "$(meta "$i")" \
		--machine-id "$(printf '%032x' "$i")" "${common[@]}"
done
for i in $(seq 1 $N); do MID[$i]=$(printf '%032x' "$i"); done

# ---- machines ----
machines_up() { [ "$(ctl list-machines --no-legend | wc -l)" -eq $N ]; }
wait_for 10 machines_up || { dump_logs; fail "list-machines: $(ctl list-machines)"; }
ctl list-machines --full | grep -q "${MID[1]}	127.0.0.1	disk=ssd,region=east" ||
	fail "list-machines --full: $(ctl list-machines --full)"

# ---- templates spread by the default policy ----
mkdir -p "$T_TMP/units"
cat >"$T_TMP/units/web@.service" <<EOF
[Unit]
Description=web %i

[Service]
ExecStart=/bin/sleep $MARK
EOF
cd "$T_TMP/units" || fail "no units dir"
ctl submit web@.service || fail "submit of a template failed"
ctl list-unit-files --no-legend | grep -q '^web@.service' || fail "list-unit-files: $(ctl list-unit-files)"
ctl start web@1 web@2 web@random >"$T_TMP/start.out" || fail "start @1 @2 @random failed"
grep -q "Unit web@1.service launched on " "$T_TMP/start.out" || fail "start said: $(cat "$T_TMP/start.out")"
ctl start "web@"{3..5} >/dev/null || fail "start @{3..5} failed"

# machine of a unit (full id) from list-units
machine_of() { ctl list-units --no-legend --full --fields unit,machine | awk -v u="$1" '$1 == u { sub("/.*", "", $2); print $2 }'; }
running() { ctl list-units --no-legend --fields unit,active,sub | awk '$2 == "active" && $3 == "running"' | wc -l; }
want_running() { [ "$(running)" -eq "$1" ]; }
wait_for 15 want_running 6 || { ctl list-units; dump_logs; fail "six web units are not running"; }
spread=$(ctl list-units --no-legend --full --fields machine | sort -u | wc -l)
[ "$spread" -eq 6 ] || fail "six units should be on six machines: $(ctl list-units --full)"
note "web@{1,2,random,3,4,5} run on $spread machines"

# ---- MachineOf: the follower goes with its peer, and off when the peer is destroyed ----
cat >"$T_TMP/units/side@.service" <<EOF
[Service]
ExecStart=/bin/sleep $MARK

[X-Fleet]
MachineOf=web@%i.service
EOF
ctl start side@1 side@2 >/dev/null || fail "start of the sidekicks failed"
wait_for 10 want_running 8 || fail "sidekicks are not running: $(ctl list-units)"
for i in 1 2; do
	[ "$(machine_of side@$i.service)" = "$(machine_of web@$i.service)" ] ||
		fail "side@$i is not with web@$i: $(ctl list-units --full)"
done
ctl destroy web@2 >/dev/null || fail "destroy web@2 failed"
gone() { ! ctl list-units --no-legend | grep -q "^$1"; }
wait_for 10 gone side@2.service || fail "side@2 still listed after web@2 was destroyed: $(ctl list-units)"
ctl list-unit-files --no-legend | grep -q '^side@2.service' || fail "side@2's unit file should stay"
ctl status side@2 >"$T_TMP/status.out" 2>&1
grep -qi 'web@2.service' "$T_TMP/status.out" || fail "side@2's status shows no reason: $(cat "$T_TMP/status.out")"

# ---- Conflicts ----
cat >"$T_TMP/units/solo@.service" <<EOF
[Service]
ExecStart=/bin/sleep $MARK

[X-Fleet]
Conflicts=solo@*.service
EOF
ctl start "solo@"{1..6} >/dev/null || fail "start of solo@{1..6} failed"
solo_spread() { [ "$(ctl list-units --no-legend --full --fields unit,machine | grep '^solo@' | awk '{print $2}' | sort -u | wc -l)" -eq 6 ]; }
wait_for 15 solo_spread || fail "six conflicting units not on six machines: $(ctl list-units --full)"
ctl start --no-block solo@7 >/dev/null
reason_shown() { ctl list-unit-files --no-legend --fields unit,reason | grep '^solo@7' | grep -qi conflict; }
wait_for 10 reason_shown || fail "solo@7 shows no conflict reason: $(ctl list-unit-files --fields unit,reason)"
curl -s "$(url 2)/fleet/v1/units/solo@7.service" | grep -qi '"reason":"[^"]*conflict' ||
	fail "the API shows no reason for solo@7: $(curl -s "$(url 2)/fleet/v1/units/solo@7.service")"

# ---- metadata ----
cat >"$T_TMP/units/ssd.service" <<EOF
[Service]
ExecStart=/bin/sleep $MARK

[X-Fleet]
MachineMetadata=disk=ssd
MachineMetadata=region=east
EOF
cat >"$T_TMP/units/mars.service" <<EOF
[Service]
ExecStart=/bin/sleep $MARK

[X-Fleet]
MachineMetadata=region=mars
EOF
ctl start ssd.service >/dev/null || fail "start ssd.service failed"
ctl start --no-block mars.service >/dev/null
ssd_placed() { m=$(machine_of ssd.service); [ "$m" = "${MID[1]}" ] || [ "$m" = "${MID[2]}" ]; }
wait_for 10 ssd_placed || fail "ssd.service is not on an east ssd machine: $(ctl list-units --full)"
mars_reason() { ctl list-unit-files --no-legend --fields unit,reason | grep '^mars.service' | grep -q 'region=mars'; }
wait_for 10 mars_reason || fail "mars.service shows no metadata reason: $(ctl list-unit-files --fields unit,reason)"

# ---- a killed machine's units run elsewhere within 5 s ----
# (the conflicting units could not move: there would be one machine too few)
ctl destroy "solo@"{1..7} >/dev/null || fail "destroy of the solo units failed"
on_machine() { ctl list-units --no-legend --full --fields unit,machine | awk -v m="${MID[$1]}" '$2 ~ "^" m { print $1 }' | sort; }
victim=""
for i in 4 5 6; do # a proxy: the members keep their quorum for the leader test below
	if [ -n "$(on_machine "$i")" ]; then victim=$i; break; fi
done
[ -n "$victim" ] || fail "no proxy machine runs a unit: $(ctl list-units --full)"
before=$(on_machine "$victim")
total=$(running)
kill -9 "${PID[$victim]}"
t0=$(date +%s.%N)
wait "${PID[$victim]}" 2>/dev/null
moved() {
	local u
	for u in $before; do
		m=$(machine_of "$u")
		[ -n "$m" ] && [ "$m" != "${MID[$victim]}" ] || return 1
		ctl list-units --no-legend --fields unit,active |
			awk -v u="$u" '$1 == u && $2 == "active" { f = 1 } END { exit !f }' || return 1
	done
}
wait_for 15 moved || { dump_logs; fail "units of the killed machine did not move: $(ctl list-units --full)"; }
took=$(echo "$(date +%s.%N) - $t0" | bc)
note "units of the killed machine ($(echo $before | wc -w)) active elsewhere after ${took} s"
awk -v t="$took" 'BEGIN { exit !(t <= 5.0) }' || fail "moving took ${took} s, over 5 s"

# ---- killing the leader moves no unit ----
L=$(find_leader 1 2 3)
CTL_NODE=$(( L % 3 + 1 ))
# (unit, machine) pairs; the table's padding changes with the longest name listed, so the
# columns are taken apart rather than compared as text
snap() { local out; out=$(ctl list-units --no-legend --full --fields unit,machine) && echo "$out" | awk '{ print $1, $2 }' | sort; }
placed=$(snap)
kill -9 "${PID[$L]}"
wait "${PID[$L]}" 2>/dev/null
others=""
for i in 1 2 3; do [ "$i" = "$L" ] || others="$others $i"; done
# shellcheck disable=SC2086
wait_for 10 find_leader $others || fail "no new leader"
# Give the new leader more than a machine TTL to (wrongly) declare machines dead.
live_before=$(echo "$placed" | grep -v "${MID[$L]}")
end=$((SECONDS + 5))
while [ $SECONDS -lt $end ]; do
	# (a member may answer nothing while the election runs: only what it answers counts)
	now=$(snap) || { sleep 0.2; continue; }
	missing=$(comm -23 <(echo "$live_before") <(echo "$now"))
	[ -z "$missing" ] || {
		dump_logs
		fail "units on live machines moved after the leader (n$L) was killed: $missing; list-units now: $now"
	}
	sleep 0.5
done
note "leader n$L killed: no unit on a live machine moved"
