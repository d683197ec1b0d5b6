#!/bin/bash
# The agent and the docker runtime end to end, with a real dockerd this test starts (Debian's
# docker.io, --bridge=none --iptables=false, a busybox image imported locally) and flotctl: a
# docker unit starts and its output reaches `flotctl journal`; `docker kill` of its container
# makes it restart under Restart=on-failure; `docker stop` (a clean exit) does not; after
# flotillad restarts, the same container is the one running; a missing image leaves the unit
# failed with docker's reason while the daemon serves.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_cluster.sh"
. "$(dirname "$0")/lib_docker.sh"

FLOTCTL=${FLOTCTL:-$FLT_BUILDDIR/flotctl}
DRIVERS=$FLT_BUILDDIR/drivers
[ -f "$DRIVERS/docker.so" ] || fail "the docker driver is not built ($DRIVERS/docker.so)"
docker_setup
trap 'rc=$?; t_stop_nodes; docker_cleanup; (exit $rc); t_cleanup' EXIT
declare -a CPORT PPORT PID DIR
CPORT[1]=$(free_port)
PPORT[1]=$(free_port)
DIR[1]=$T_TMP/n1
start_n1() {
	start_member 1 --initial-cluster "n1=http://127.0.0.1:${PPORT[1]}" --agent-ttl 2000 \
		--driver-dir "$DRIVERS" --public-ip 127.0.0.1 --docker-host "$FLT_DOCKER_HOST" \
		--driver-opt "exec-shim=$DRIVERS/flotilla-exec-shim,name-prefix=$FLT_DOCKER_PREFIX"
}
start_n1
ctl() { "$FLOTCTL" --endpoint "$(url 1)" "$@"; }
dump_logs() { tail -n 40 "$T_TMP/n1.log" >&2; }
docker_offered() { curl -sf "$(url 1)/v2/keys/_flotilla/machines?recursive=true" | grep -q 'runtimes\\":\[[^]]*docker'; }
wait_for 10 docker_offered || { dump_logs; fail "the machine does not offer docker"; }

mkdir -p "$T_TMP/u" && cd "$T_TMP/u" || fail "no unit dir"
cat >hello.service <<'EOF'
[Unit]
Description=Hello from a container

[Service]
ExecStart=/bin/sh -c 'trap "exit 0" TERM; while true; do echo hello-docker; sleep 0.2; done'
Restart=on-failure
RestartSec=200ms

[X-Flotilla]
Runtime=docker
Image=flotilla-busybox:latest
Network=none
Pull=never
EOF
status_json() { curl -sf "$(url 1)/_flotilla/v1/status/hello.service"; }
running() { status_json | grep -q '"activeState":"active","subState":"running"'; }
container() { dk ps -q --no-trunc --filter "name=^/${FLT_DOCKER_PREFIX}hello.service" --filter status=running; }

ctl start hello.service >/dev/null || { dump_logs; fail "start failed: $(status_json)"; }
wait_for 20 running || { dump_logs; fail "hello.service is not running: $(status_json)"; }
has_container() { [ -n "$(container)" ]; }
wait_for 5 has_container || fail "no running container: $(dk ps -a)"
c1=$(container)
journal_hello() { ctl journal --lines 5 hello.service | grep -q 'hello-docker'; }
wait_for 10 journal_hello || fail "journal: $(ctl journal --lines 20 hello.service)"
note "hello.service runs in container ${c1:0:12}; its output is in the journal"

# docker kill: the container dies of SIGKILL, a failure: Restart=on-failure brings a new one
dk kill "$c1" >/dev/null || fail "docker kill failed"
replaced() { c=$(container); [ -n "$c" ] && [ "$c" != "$c1" ] && running; }
wait_for 20 replaced || { dump_logs; fail "no new container after docker kill: $(status_json)"; }
c2=$(container)
status_json | grep -q '"restarts":[1-9]' || fail "no restart counted: $(status_json)"
note "docker kill: restarted in container ${c2:0:12}"

# docker stop: the command traps TERM and exits 0, a clean end: no restart
dk stop "$c2" >/dev/null || fail "docker stop failed"
dead() { status_json | grep -q '"activeState":"inactive","subState":"dead"'; }
wait_for 20 dead || fail "after docker stop: $(status_json)"
sleep_ms() { local end=$((SECONDS + 2)); while [ $SECONDS -lt $end ]; do running && return 1; sleep 0.1; done; }
sleep_ms || fail "a cleanly stopped container was restarted: $(status_json)"
[ -z "$(container)" ] || fail "a container runs after docker stop"
note "docker stop: stays stopped"

# started again, then flotillad restarts: the same container is still the one running
ctl stop hello.service >/dev/null
ctl start hello.service >/dev/null || fail "second start failed"
wait_for 20 running || fail "not running again: $(status_json)"
wait_for 5 has_container || fail "no container after the second start"
c3=$(container)
stop_node "${PID[1]}"
[ "$(container)" = "$c3" ] || fail "the container did not survive its daemon"
start_n1
wait_for 10 running || { dump_logs; fail "after the daemon restart: $(status_json)"; }
[ "$(container)" = "$c3" ] || fail "after the restart container $(container) runs, not $c3"
[ "$(dk ps -q --filter "name=^/${FLT_DOCKER_PREFIX}" | wc -l)" -eq 1 ] || fail "more than one container: $(dk ps)"
note "flotillad restarted: container ${c3:0:12} adopted"

# a missing image: failed with docker's reason, and the daemon serves on
cat >noimage.service <<'EOF'
[Service]
ExecStart=/bin/true

[X-Flotilla]
Runtime=docker
Image=flotilla-no-such-image:1
Pull=never
Network=none
EOF
ctl start --no-block noimage.service >/dev/null
noimage_failed() { curl -sf "$(url 1)/_flotilla/v1/status/noimage.service" | grep -q '"activeState":"failed".*No such image'; }
wait_for 20 noimage_failed || fail "noimage.service: $(curl -s "$(url 1)/_flotilla/v1/status/noimage.service")"
curl -sf "$(url 1)/v2/keys/" >/dev/null || fail "the daemon stopped serving"
ctl destroy hello.service noimage.service >/dev/null
gone() { [ -z "$(dk ps -aq --filter "name=^/${FLT_DOCKER_PREFIX}")" ]; }
wait_for 20 gone || fail "containers left after destroy: $(dk ps -a)"
note "docker units: journal, kill/stop semantics, adoption, failures: all as expected"
