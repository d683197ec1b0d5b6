#!/bin/bash
# The seed walkthrough (shared/seed/coreos-cluster-walkthrough.txt) on flotilla, end to end, with
# its docker unit file run UNCHANGED: three members on loopback (each a machine running the exec
# and docker drivers), flotctl in the place of etcdctl and fleetctl, a real dockerd and a local
# registry standing in for Docker Hub.
#
#   etcd:  `set /key1 value1` on n1 and `get /key1` on n2; the curl PUT/GET of /key2; `set /key3
#          value3 --ttl 2` read back on n2, then gone once it expired; `ls` and `ls --recursive`.
#   fleet: `list-machines` shows the 3 machines; the seed's hello-world@.service, copied byte for
#          byte, is submitted (list-unit-files, cat), `start hello-world@1` launches it,
#          `list-units` shows it active/running, `status` shows its three ExecStartPre Process
#          lines (kill and rm fail and are ignored, pull succeeds), `journal` shows "Hello World",
#          `docker ps` shows the container busybox1, `destroy hello-world@1` stops it (no busybox1
#          running any more).
#
# How the unit file's `/usr/bin/docker ...` commands reach a docker daemon with no network:
#  - fake_registry.py (next to this script) serves library/busybox:latest, built from Debian's
#    busybox-static, over the Registry HTTP API v2 on 127.0.0.1:<a free port>;
#  - the private dockerd of lib_docker.sh is started with FLT_DOCKERD_ARGS="--registry-mirror
#    http://127.0.0.1:<port> -H unix:///var/run/docker.sock": `docker pull busybox`
#    (docker.io/library/busybox) is answered by the mirror (its log is checked for the blobs),
#    and the daemon ALSO listens on the default socket, because the exec units get only the
#    environment the unit sets (no DOCKER_HOST), so /usr/bin/docker in them uses
#    /var/run/docker.sock. DOCKER_HOST is unset here before the members start, so nothing but
#    the default socket leads a unit to the daemon.
#  - Hence /var/run/docker.sock must be free: if a docker daemon answers on it the test FAILS
#    with that reason (it never touches a system dockerd); a stale socket file nobody listens on
#    (e.g. left by a killed run) is removed. The socket is removed again at exit, with the
#    dockerd, its containers and data root, the registry and the members (the EXIT trap).
#  - The members' docker driver uses that same socket (--docker-host), so every machine offers
#    docker and Requires=docker.service is satisfied wherever the unit lands. hello-world@.service
#    names its container busybox1 in every instance, and all machines share the one dockerd, so
#    only one instance runs here (@1).
# Needs: docker.io (/usr/bin/docker, dockerd), busybox-static, python3, curl; run as root.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_cluster.sh"
. "$(dirname "$0")/lib_docker.sh"

FLOTCTL=${FLOTCTL:-$FLT_BUILDDIR/flotctl}
DRIVERS=$FLT_BUILDDIR/drivers
REGISTRY_PY=$FLT_SRCDIR/tests/integration/fake_registry.py
SYS_SOCK=/var/run/docker.sock
[ -f "$DRIVERS/exec.so" ] || fail "the exec driver is not built ($DRIVERS/exec.so)"
[ -f "$DRIVERS/docker.so" ] || fail "the docker driver is not built ($DRIVERS/docker.so)"
[ -x /usr/bin/docker ] || fail "no /usr/bin/docker (the unit file calls it): install docker.io"
[ -x /bin/busybox ] || fail "no /bin/busybox: install the Debian package busybox-static"
[ -f "$REGISTRY_PY" ] || fail "no $REGISTRY_PY"

declare -a CPORT PPORT PID DIR
REG_PID=
SOCK_OWNED=0

# ---- cleanup: members first (their units use docker), then docker, the socket, the registry ----
walk_cleanup() {
	local i end
	for i in 1 2 3; do
		if [ -n "${PID[$i]:-}" ]; then kill -TERM "${PID[$i]}" 2>/dev/null || true; fi
	done
	for i in 1 2 3; do
		[ -n "${PID[$i]:-}" ] || continue
		end=$((SECONDS + 30))
		while kill -0 "${PID[$i]}" 2>/dev/null && [ $SECONDS -lt $end ]; do sleep 0.05; done
	done
	if [ -n "${FLT_DOCKER_HOST:-}" ] && [ "$DK_OWNED" = 1 ]; then
		docker -H "$FLT_DOCKER_HOST" rm -f -v busybox1 >/dev/null 2>&1 || true
	fi
	docker_cleanup
	if [ "$SOCK_OWNED" = 1 ]; then
		rm -f "$SYS_SOCK"
		SOCK_OWNED=0
	fi
	if [ -n "$REG_PID" ]; then
		kill -TERM "$REG_PID" 2>/dev/null || true
		wait "$REG_PID" 2>/dev/null || true
		REG_PID=
	fi
}
# lib.sh's t_cleanup (which exits with the script's status) runs last, with that status.
trap 'st=$?; walk_cleanup; (exit $st); t_cleanup' EXIT

dump_logs() {
	local i
	for i in 1 2 3; do
		echo "---- n$i" >&2
		tail -n 30 "$T_TMP/n$i.log" >&2
	done
	echo "---- registry" >&2
	tail -n 20 "$T_TMP/registry.log" >&2 2>/dev/null
	echo "---- dockerd" >&2
	tail -n 20 "$DK_ROOT/dockerd.log" >&2 2>/dev/null
}

# ---- /var/run/docker.sock must be ours to take ----
sock_listened() { # a listening unix socket bound to that path (or to what the path resolves to)
	local real
	real=$(readlink -f "$SYS_SOCK")
	awk -v a="$SYS_SOCK" -v b="$real" '$NF == a || $NF == b { f = 1 } END { exit !f }' /proc/net/unix
}
if [ -e "$SYS_SOCK" ] || [ -L "$SYS_SOCK" ]; then
	if docker -H "unix://$SYS_SOCK" version >/dev/null 2>&1 || sock_listened; then
		fail "a docker daemon (or something else) already listens on $SYS_SOCK: this test needs" \
			"that socket for its private dockerd (the unit file's /usr/bin/docker uses it); stop" \
			"that daemon or run the test on a machine without one"
	fi
	[ -S "$SYS_SOCK" ] || fail "$SYS_SOCK exists and is not a socket: not removing it"
	note "removing a stale $SYS_SOCK nobody listens on"
	rm -f "$SYS_SOCK"
fi

# ---- the registry ----
$PY "$REGISTRY_PY" --port-file "$T_TMP/registry.port" --log "$T_TMP/registry.log" \
	>"$T_TMP/registry.out" 2>&1 &
REG_PID=$!
T_PIDS+=("$REG_PID")
wait_for 20 test -s "$T_TMP/registry.port" ||
	fail "the fake registry did not start: $(cat "$T_TMP/registry.out")"
RPORT=$(cat "$T_TMP/registry.port")
curl -sf "http://127.0.0.1:$RPORT/v2/" >/dev/null || fail "the fake registry does not answer /v2/"
note "fake registry $REG_PID on 127.0.0.1:$RPORT"

# ---- the private dockerd, also on the default socket, with the registry as Docker Hub's mirror ----
unset FLT_DOCKER_HOST # always our own daemon: a reused one would have neither mirror nor socket
FLT_DOCKERD_ARGS="--registry-mirror http://127.0.0.1:$RPORT -H unix://$SYS_SOCK"
SOCK_OWNED=1 # from here on the socket, if any, is our dockerd's
docker_setup
unset DOCKER_HOST
/usr/bin/docker version >/dev/null 2>&1 || fail "/usr/bin/docker does not reach the dockerd on $SYS_SOCK"
/usr/bin/docker image inspect busybox >/dev/null 2>&1 && fail "the fresh dockerd already has busybox"

# ---- three members, each a machine ----
for i in 1 2 3; do
	CPORT[$i]=$(free_port)
	PPORT[$i]=$(free_port)
	DIR[$i]=$T_TMP/n$i
done
CLUSTER=""
for i in 1 2 3; do CLUSTER+="${CLUSTER:+,}n$i=http://127.0.0.1:${PPORT[$i]}"; done
common=(--initial-cluster "$CLUSTER" --agent-ttl 2000 --driver-dir "$DRIVERS" --public-ip 127.0.0.1
	--docker-host "unix://$SYS_SOCK" --driver-opt "exec-shim=$DRIVERS/flotilla-exec-shim")
for i in 1 2 3; do
	# distinct in their first 8 digits, as list-machines shows them
	start_member "$i" --machine-id "$(printf "$i%.0s" {1..32})" "${common[@]}"
done
wait_for 10 find_leader 1 2 3 || { dump_logs; fail "no leader"; }

ctl() { "$FLOTCTL" --endpoint "$(url 1)" "$@"; }
# the key commands on one given member (as on core-01 / core-02)
on() {
	local i=$1
	shift
	"$FLOTCTL" --no-sync --endpoints "$(url "$i")" "$@"
}

# ---- Trying out etcd ----
out=$(on 1 set /key1 value1) || fail "set /key1 on n1 failed: $out"
[ "$out" = value1 ] || fail "set /key1 printed '$out'"
got_on_2() { [ "$(on 2 get "$1")" = "$2" ]; }
wait_for 5 got_on_2 /key1 value1 || fail "get /key1 on n2: $(on 2 get /key1 2>&1)"
note "etcdctl set /key1 value1 on n1, get /key1 on n2: value1"

curl -sf -L -X PUT "$(url 1)/v2/keys/key2" -d value="value2" | grep -q '"value":"value2"' ||
	fail "curl PUT /v2/keys/key2 on n1 failed"
curl_key2() { curl -sf -L "$(url 2)/v2/keys/key2" | grep -q '"value":"value2"'; }
wait_for 5 curl_key2 || fail "curl GET /v2/keys/key2 on n2: $(curl -s -L "$(url 2)/v2/keys/key2")"
note "curl PUT /v2/keys/key2 on n1, curl GET on n2: value2"

out=$(on 1 set /key3 value3 --ttl 2) || fail "set /key3 --ttl 2 failed: $out"
t3=$SECONDS
[ "$out" = value3 ] || fail "set /key3 --ttl 2 printed '$out'"
out=$(on 2 get /key3 2>&1) || fail "get /key3 on n2 right after the set: $out"
[ "$out" = value3 ] || fail "get /key3 on n2 printed '$out'"
key3_gone() { ! on 2 get /key3 >/dev/null 2>&1 && on 2 get /key3 2>&1 | grep -q 'Key not found'; }
wait_for 10 key3_gone || fail "/key3 still there after its TTL: $(on 2 get /key3 2>&1)"
[ $((SECONDS - t3)) -ge 1 ] || fail "/key3 was gone before its TTL of 2 s"
note "set /key3 value3 --ttl 2: read on n2, gone $((SECONDS - t3)) s later"

out=$(on 2 ls) || fail "ls failed: $out"
[ "$(echo "$out" | sort)" = "$(printf '/key1\n/key2')" ] || fail "ls printed: $out"
on 1 mkdir /dir1 >/dev/null || fail "mkdir /dir1 failed"
on 1 set /dir1/key4 value4 >/dev/null || fail "set /dir1/key4 failed"
ls_rec() { [ "$(on "$1" ls --recursive | sort)" = "$(printf '/dir1\n/dir1/key4\n/key1\n/key2')" ]; }
wait_for 5 ls_rec 3 || fail "ls --recursive on n3 printed: $(on 3 ls --recursive)"
note "ls: /key1 /key2; ls --recursive also /dir1/key4"

# ---- Starting your first Fleet unit: list-machines ----
machines_up() { [ "$(ctl list-machines --no-legend | wc -l)" -eq 3 ]; }
wait_for 10 machines_up || { dump_logs; fail "list-machines: $(ctl list-machines)"; }
ctl list-machines >"$T_TMP/machines.out" || fail "list-machines failed"
head -1 "$T_TMP/machines.out" | grep -q '^MACHINE[[:space:]]*IP[[:space:]]*METADATA' ||
	fail "list-machines header: $(cat "$T_TMP/machines.out")"
[ "$(grep -c '127\.0\.0\.1[[:space:]]*-$' "$T_TMP/machines.out")" -eq 3 ] ||
	fail "list-machines: $(cat "$T_TMP/machines.out")"
cat "$T_TMP/machines.out"
docker_offered() {
	[ "$(curl -sf "$(url 1)/v2/keys/_flotilla/machines?recursive=true" |
		grep -o 'runtimes\\":\[[^]]*docker' | wc -l)" -eq 3 ]
}
wait_for 20 docker_offered || { dump_logs; fail "not every machine offers docker"; }

# ---- hello-world@.service, exactly as in the walkthrough ----
mkdir -p "$T_TMP/units" && cd "$T_TMP/units" || fail "no units dir"
cat >hello-world@.service <<'EOF'
[Unit]
Description=MyApp
After=docker.service
Requires=docker.service

[Service]
TimeoutStartSec=0
ExecStartPre=-/usr/bin/docker kill busybox1
ExecStartPre=-/usr/bin/docker rm busybox1
ExecStartPre=/usr/bin/docker pull busybox
ExecStart=/usr/bin/docker run --name busybox1 busybox /bin/sh -c "while true; do echo Hello World; sleep 1; done"
ExecStop=/usr/bin/docker stop busybox1
EOF
seed=$FLT_SHARED/seed/coreos-cluster-walkthrough.txt
if [ -n "${FLT_SHARED:-}" ] && [ -f "$seed" ]; then # the copy above is the seed's, line for line
	awk '/^\$ cat hello-world@.service/ { f = 1; next } f && /^\[Unit\]/ { p = 1 }
		p && /^$/ && seen_exec_stop { exit } p { print } p && /^ExecStop=/ { seen_exec_stop = 1 }' \
		"$seed" >"$T_TMP/seed-unit"
	diff "$T_TMP/seed-unit" hello-world@.service >&2 || fail "hello-world@.service differs from the seed's"
fi

ctl submit hello-world@.service || fail "submit hello-world@.service failed"
ctl list-unit-files --no-legend | grep -q '^hello-world@.service' ||
	fail "list-unit-files: $(ctl list-unit-files)"
ctl cat hello-world@.service >"$T_TMP/cat.out" || fail "cat failed"
grep -qxF 'ExecStartPre=/usr/bin/docker pull busybox' "$T_TMP/cat.out" || fail "cat: $(cat "$T_TMP/cat.out")"

ctl start hello-world@1 >"$T_TMP/start.out" 2>&1 || { dump_logs; fail "start: $(cat "$T_TMP/start.out")"; }
cat "$T_TMP/start.out"
grep -q '^Unit hello-world@1.service launched on [0-9a-f]*\.\.\./127\.0\.0\.1$' "$T_TMP/start.out" ||
	fail "start printed: $(cat "$T_TMP/start.out")"

running() {
	ctl list-units --no-legend --fields unit,active,sub |
		awk '$1 == "hello-world@1.service" && $2 == "active" && $3 == "running" { f = 1 } END { exit !f }'
}
wait_for 60 running || { dump_logs; fail "hello-world@1 is not active/running: $(ctl list-units)"; }
ctl list-units | tee "$T_TMP/units.out"
grep -q '^UNIT[[:space:]]*MACHINE[[:space:]]*ACTIVE[[:space:]]*SUB' "$T_TMP/units.out" ||
	fail "list-units header: $(cat "$T_TMP/units.out")"

# the container, seen with the walkthrough's own `docker ps` (the default socket)
container_up() { /usr/bin/docker ps --filter name=^/busybox1$ --format '{{.Names}} {{.Image}}' | grep -qx 'busybox1 busybox'; }
wait_for 30 container_up || { dump_logs; fail "no container busybox1: $(/usr/bin/docker ps -a)"; }
/usr/bin/docker ps
grep -q 'GET /v2/library/busybox/blobs/sha256:.* 200' "$T_TMP/registry.log" ||
	fail "the image was not pulled from the fake registry: $(cat "$T_TMP/registry.log")"
note "docker pull busybox was answered by the fake registry"

journal_hello() { ctl journal hello-world@1.service | grep -q 'Hello World'; }
wait_for 20 journal_hello || { dump_logs; fail "journal: $(ctl journal --lines 30 hello-world@1.service)"; }
ctl journal hello-world@1.service >"$T_TMP/journal.out" 2>&1
grep -q 'Status: Downloaded newer image for busybox:latest' "$T_TMP/journal.out" ||
	note "(the journal does not show the pull's output)"
tail -n 5 "$T_TMP/journal.out"

ctl status hello-world@1.service >"$T_TMP/status.out" 2>&1 || fail "status failed: $(cat "$T_TMP/status.out")"
cat "$T_TMP/status.out"
st_has() { grep -qE "$1" "$T_TMP/status.out" || fail "status lacks /$1/: $(cat "$T_TMP/status.out")"; }
st_has '^● hello-world@1\.service - MyApp'
st_has 'Active: active \(running\)'
st_has 'Process: [0-9]+ ExecStartPre=/usr/bin/docker kill busybox1 \(code=exited, status=1/FAILURE\)'
st_has 'Process: [0-9]+ ExecStartPre=/usr/bin/docker rm busybox1 \(code=exited, status=1/FAILURE\)'
st_has 'Process: [0-9]+ ExecStartPre=/usr/bin/docker pull busybox \(code=exited, status=0/SUCCESS\)'
st_has 'Main PID: [0-9]+'
# systemd lists them newest first: pull, rm, kill
order=$(grep -oE 'ExecStartPre=/usr/bin/docker (kill|rm|pull)' "$T_TMP/status.out" | awk '{print $2}' | tr '\n' ' ')
[ "$order" = "pull rm kill " ] || fail "Process lines out of order: '$order'"

# ---- destroy stops it: the unit is gone, and so is the running container ----
ctl destroy hello-world@1 >"$T_TMP/destroy.out" 2>&1 || fail "destroy: $(cat "$T_TMP/destroy.out")"
cat "$T_TMP/destroy.out"
unit_gone() { ! ctl list-units --no-legend | grep -q '^hello-world@1\.service'; }
wait_for 30 unit_gone || fail "hello-world@1 still listed after destroy: $(ctl list-units)"
container_gone() { [ -z "$(/usr/bin/docker ps -q --filter name=^/busybox1$)" ]; }
wait_for 30 container_gone || { dump_logs; fail "busybox1 still runs after destroy: $(/usr/bin/docker ps)"; }
! ctl list-unit-files --no-legend | grep -q '^hello-world@1\.service' ||
	fail "hello-world@1 still in list-unit-files: $(ctl list-unit-files)"
no_client() { ! pgrep -f '^/usr/bin/docker run --name busybox1' >/dev/null; }
wait_for 10 no_client || fail "a 'docker run --name busybox1' process outlived the unit"
note "destroy hello-world@1: unit gone, busybox1 not running"
