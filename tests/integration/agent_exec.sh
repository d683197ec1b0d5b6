#!/bin/bash
# The agent and the exec runtime end to end, through flotctl: a one-member cluster (n1) and a
# proxy machine (n2) that runs the units. Checked: the ExecStartPre chain with '-' prefixes and
# its Process lines in `flotctl status`, asked on the other node; the unit's output in
# `flotctl journal`; Restart=on-failure restarting a killed main process and not a cleanly
# stopped one; a stop timeout escalating to SIGKILL; a unit whose binary is missing failing with
# the reason while the daemon serves; flotillad restarted with its units adopted (same PID, one
# instance); fencing (a machine cut off from the cluster stops its units, and starts them again
# when it is back); a driver of another ABI major refused with a clear message.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_cluster.sh"

FLOTCTL=${FLOTCTL:-$FLT_BUILDDIR/flotctl}
DRIVERS=$FLT_BUILDDIR/drivers
[ -f "$DRIVERS/exec.so" ] || fail "the exec driver is not built ($DRIVERS/exec.so)"
MARK=5$RANDOM
cleanup_units() { pkill -f "sleep $MARK" 2>/dev/null || true; pkill -f "stubborn-$MARK" 2>/dev/null || true; }
trap 'rc=$?; t_stop_nodes; cleanup_units; (exit $rc); t_cleanup' EXIT
declare -a CPORT PPORT PID DIR
for i in 1 2; do
	CPORT[$i]=$(free_port)
	PPORT[$i]=$(free_port)
	DIR[$i]=$T_TMP/n$i
done
M2=$(printf '%032x' 2)
common=(--agent-ttl 2000 --driver-dir "$DRIVERS" --public-ip 127.0.0.1
	--driver-opt "exec-shim=$DRIVERS/flotilla-exec-shim")
start_member 1 --initial-cluster "n1=http://127.0.0.1:${PPORT[1]}" --machine-id "$(printf '%032x' 1)" "${common[@]}"
start_n2() {
	start_member 2 --proxy on --initial-cluster "n1=http://127.0.0.1:${PPORT[1]}" \
		--machine-id "$M2" "${common[@]}"
}
start_n2
ctl() { "$FLOTCTL" --endpoint "$(url 1)" "$@"; }
dump_logs() { for i in 1 2; do echo "---- n$i" >&2; tail -n 30 "$T_TMP/n$i.log" >&2; done; }
two_machines() { [ "$(ctl list-machines --no-legend | wc -l)" -eq 2 ]; }
wait_for 10 two_machines || { dump_logs; fail "list-machines: $(ctl list-machines)"; }

mkdir -p "$T_TMP/u" && cd "$T_TMP/u" || fail "no unit dir"
cat >heal.service <<EOF
[Unit]
Description=Self-healing test unit

[Service]
ExecStartPre=-/bin/false
ExecStartPre=-/bin/sh -c 'echo pre-ran; exit 3'
ExecStartPre=/bin/echo pre-ok
ExecStart=/bin/sh -c 'echo started; exec sleep $MARK'
Restart=on-failure
RestartSec=200ms

[X-Fleet]
MachineID=$M2
EOF
status_json() { curl -sf "$(url "${1:-1}")/_flotilla/v1/status/heal.service"; }
main_pid() { status_json | python3 -c 'import json,sys; print(json.load(sys.stdin)["mainPID"])'; }
active_running() { status_json | grep -q '"activeState":"active","subState":"running"'; }
pid_is() { [ "$(main_pid)" = "$1" ]; }

ctl start heal.service >"$T_TMP/start.out" || { dump_logs; fail "start failed: $(cat "$T_TMP/start.out")"; }
wait_for 10 active_running || { dump_logs; fail "heal.service is not running: $(status_json)"; }
pid1=$(main_pid)
[ "$pid1" -gt 0 ] || fail "no main PID: $(status_json)"
# status, asked on n1 for a unit on n2: the ExecStartPre chain, in order, with its results
ctl status heal.service >"$T_TMP/status.out" || fail "status failed: $(cat "$T_TMP/status.out")"
grep -q 'Active: active (running)' "$T_TMP/status.out" || fail "status: $(cat "$T_TMP/status.out")"
grep -q 'ExecStartPre=/bin/false (code=exited, status=1/FAILURE)' "$T_TMP/status.out" ||
	fail "status lacks the failed '-' pre command: $(cat "$T_TMP/status.out")"
grep -q "ExecStartPre=/bin/echo pre-ok (code=exited, status=0/SUCCESS)" "$T_TMP/status.out" ||
	fail "status lacks the last pre command: $(cat "$T_TMP/status.out")"
grep -q "Main PID: $pid1" "$T_TMP/status.out" || fail "status shows no main PID $pid1"
journal_has() { ctl journal --lines 50 heal.service | grep -q "$1"; }
for line in pre-ran pre-ok started; do
	wait_for 5 journal_has "$line" || fail "journal lacks '$line': $(ctl journal --lines 50 heal.service)"
done
# journal -f streams new lines from the machine that runs the unit
ctl journal -f heal.service >"$T_TMP/follow.out" 2>&1 &
FOLLOW=$!
T_PIDS+=("$FOLLOW")

# Restart=on-failure: kill -9 of the main process is a failure: a new one runs
kill -9 "$pid1"
restarted() { active_running && ! pid_is "$pid1" && [ "$(main_pid)" -gt 0 ]; }
wait_for 10 restarted || fail "heal.service did not restart after kill -9: $(status_json)"
pid2=$(main_pid)
wait_for 5 grep -q started "$T_TMP/follow.out" || fail "journal -f saw nothing: $(cat "$T_TMP/follow.out")"
kill "$FOLLOW" 2>/dev/null
note "killed main PID $pid1, restarted as $pid2"

# flotillad restarts: the unit is adopted, not started again
stop_node "${PID[2]}"
kill -0 "$pid2" 2>/dev/null || fail "the unit died with its daemon"
start_n2
adopted() { active_running && pid_is "$pid2"; }
wait_for 10 adopted || { dump_logs; fail "after the restart: $(status_json)"; }
[ "$(pgrep -fc "^sleep $MARK")" -eq 1 ] || { dump_logs; pgrep -fa "^sleep $MARK" >&2; fail "$(pgrep -fc "^sleep $MARK") instances after the restart"; }
note "flotillad restarted: main PID $pid2 adopted, one instance"

# fencing: with its only member frozen, n2 cannot reach the cluster and stops its units
kill -STOP "${PID[1]}"
fenced() { ! pgrep -f "^sleep $MARK" >/dev/null; }
wait_for 10 fenced || { kill -CONT "${PID[1]}"; fail "n2 did not stop its units when cut off"; }
grep -q 'stopping 1 unit' "$T_TMP/n2.log" || fail "n2 did not log the fencing"
kill -CONT "${PID[1]}"
wait_for 15 active_running || { dump_logs; fail "heal.service did not come back after the cluster did"; }
note "fenced while cut off, running again after"

# a clean end (SIGTERM is a clean signal for systemd) is not restarted under on-failure
has_pid() { [ "$(main_pid)" -gt 0 ] 2>/dev/null; }
wait_for 5 has_pid || fail "no main PID after the resume: $(status_json)"
pid3=$(main_pid)
kill -TERM "$pid3"
dead() { status_json | grep -q '"activeState":"inactive","subState":"dead"'; }
wait_for 10 dead || fail "after SIGTERM: $(status_json)"
! pgrep -f "^sleep $MARK" >/dev/null || fail "a cleanly stopped unit was restarted"

# a stop that times out escalates to SIGKILL
printf 'trap "" TERM\nwhile :; do sleep 0.1; done\n' >"$T_TMP/u/stubborn-$MARK.sh"
cat >stubborn.service <<EOF
[Service]
ExecStart=/bin/sh $T_TMP/u/stubborn-$MARK.sh
TimeoutStopSec=1

[X-Fleet]
MachineID=$M2
EOF
ctl start stubborn.service >/dev/null || fail "start stubborn failed"
up() { curl -sf "$(url 1)/_flotilla/v1/status/stubborn.service" | grep -q '"subState":"running"'; }
wait_for 10 up || fail "stubborn.service is not running"
t0=$SECONDS
ctl stop stubborn.service >/dev/null || fail "stop stubborn failed"
gone() { ! pgrep -f "^/bin/sh $T_TMP/u/stubborn-$MARK.sh" >/dev/null; }
wait_for 10 gone || fail "stubborn.service survived its stop"
grep -q "stop-sigkill\|Killing" "$T_TMP/n2.log" "${DIR[2]}/agent/journal/stubborn.service.log" 2>/dev/null ||
	curl -s "$(url 1)/_flotilla/v1/journal/stubborn.service?lines=50" | grep -qi 'kill' ||
	fail "no trace of the SIGKILL escalation"
note "stop of a TERM-ignoring unit escalated to SIGKILL ($((SECONDS - t0)) s)"

# a missing binary: failed with the reason, and the daemon serves on
cat >broken.service <<EOF
[Service]
ExecStart=/no/such/binary

[X-Fleet]
MachineID=$M2
EOF
ctl start --no-block broken.service >/dev/null
failed() { curl -sf "$(url 1)/_flotilla/v1/status/broken.service" | grep -q "cannot execute '/no/such/binary'"; }
wait_for 10 failed || fail "broken.service: $(curl -s "$(url 1)/_flotilla/v1/status/broken.service")"
curl -sf "$(url 2)/v2/keys/" >/dev/null || fail "n2 stopped serving"

# drivers of another ABI major are refused with a message
"$FLOTILLAD" --list-drivers --driver-dir "$FLT_BUILDDIR/tests/drivers" >"$T_TMP/drivers.out" 2>&1
grep -q "is not binary compatible: ABI 2.0, flotillad needs 1.x" "$T_TMP/drivers.out" ||
	fail "--list-drivers: $(cat "$T_TMP/drivers.out")"
note "exec units: pre chain, journal, restart, adoption, fencing, stop escalation, failures: all as expected"
