#!/usr/bin/env bash
# The fleet v1 HTTP API of a real one-member flotillad, checked against fleet v1.0's codes, JSON
# and messages (reference/fleet INVENTORY §6, transcripts/api-v1-live.txt): every endpoint, the
# PUT decision tree, 415, page tokens, state filters, machine metadata PATCH, the /v1-alpha
# alias, and where flotilla differs on purpose (bad desiredState is a 400 that changes nothing).
# The engine runs (it leads) but no agent: machines come from heartbeats the test sends, unit
# states are written with /v2/keys, and fields the engine writes (placement, reason) are polled.
. "$(dirname "$0")/lib.sh"

port=$(free_port)
# no agent here; machines the test registers stay alive without further heartbeats
start_node fleet "$T_TMP/fleet" "$port" --agent=false --agent-ttl 600000
B=http://127.0.0.1:$port
F=$B/fleet/v1
JSON=(-H 'Content-Type: application/json')

# req METHOD URL [curl args]: sets CODE, BODY (and the headers in $T_TMP/hdrs).
req() {
	local m=$1 u=$2
	shift 2
	CODE=$(curl -s -o "$T_TMP/body" -D "$T_TMP/hdrs" -w '%{http_code}' -X "$m" "$@" "$u") ||
		fail "curl $m $u failed"
	LAST=${WHAT:-$m $u}
	BODY=$(cat "$T_TMP/body")
}
# expect CODE [BODY]: the last answer, exactly.
expect() {
	[ "$CODE" = "$1" ] || fail "$LAST: status $CODE, want $1 (body: $BODY)"
	[ $# -lt 2 ] || [ "$BODY" = "$2" ] || fail "$LAST: body
  got:  $BODY
  want: $2"
}
err() { printf '{"error":{"code":%s,"message":%s}}' "$1" "$(jq -cn --arg m "$2" '$m')"; }
put() { req PUT "$F/units/$1" "${JSON[@]}" -d "$2"; }
# jqb FILTER: jq over the last body (compact).
jqb() { jq -c "$1" <<<"$BODY"; }
v2put() { curl -sf -XPUT "$B/v2/keys$1" --data-urlencode "value=$2" >/dev/null || fail "v2 PUT $1"; }
v2del() { curl -sf -XDELETE "$B/v2/keys$1" >/dev/null || fail "v2 DELETE $1"; }
v2index() { curl -s "$B/v2/keys$1" | jq -r '.node.modifiedIndex // "none"'; }
hb() { curl -sf -XPOST "$B/_flotilla/v1/heartbeat" "${JSON[@]}" -d "$1" >/dev/null || fail "heartbeat $1"; }
# ujq NAME FILTER: jq -e over GET /units/NAME (for polling what the engine writes).
ujq() { curl -s "$F/units/$1" | jq -e "$2"; }
# What the engine decides (currentState, machineID, reason) left out.
STATIC='del(.currentState, .machineID, .reason)'

EXEC='{"section":"Service","name":"ExecStart","value":"/bin/sleep 3000"}'

note "routing, 404/405, discovery"
WHAT="GET /fleet/v1" req GET "$F"
WHAT="GET /fleet/v1" expect 405 "$(err 405 "")"
WHAT="unknown path" req GET "$F/foo"
expect 404 "$(err 404 "")"
WHAT="/machines/" req GET "$F/machines/"
expect 404 "$(err 404 "")"
WHAT=discovery req GET "$F/discovery"
expect 200
[ "$(jqb '[.kind, .rootUrl, .basePath, (.resources|keys)]')" = \
	'["discovery#restDescription","$ENDPOINT/","/fleet/v1/",["Machines","UnitState","Units"]]' ] ||
	fail "discovery document: $(jqb '[.kind,.rootUrl,.basePath]')"
grep -qi '^Content-Type: application/json' "$T_TMP/hdrs" || fail "discovery content type"
WHAT="POST discovery" req POST "$F/discovery"
expect 400 "$(err 400 "only HTTP GET supported against this resource")"
WHAT="discovery/" req GET "$F/discovery/"
expect 404

note "empty collections"
WHAT="empty units" req GET "$F/units"
expect 200 '{}'
WHAT="empty state" req GET "$F/state"
expect 200 '{}'
WHAT="empty machines" req GET "$F/machines"
expect 200 '{}'
WHAT="missing unit" req GET "$F/units/nope.service"
expect 404 "$(err 404 "unit does not exist")"
WHAT="delete missing" req DELETE "$F/units/nope.service"
expect 404 "$(err 404 "unit does not exist")"
WHAT="POST units" req POST "$F/units"
expect 405 "$(err 405 "only GET supported against this resource")"
WHAT="POST unit" req POST "$F/units/api1.service"
expect 405 "$(err 405 "only GET, PUT and DELETE supported against this resource")"

note "PUT: content type, body, names (nothing is created)"
WHAT="form content type" req PUT "$F/units/api1.service" -d "{\"desiredState\":\"loaded\",\"options\":[$EXEC]}"
expect 415 "$(err 415 "only acceptable Content-Type is application/json")"
WHAT="text/json" req PUT "$F/units/api1.service" -H 'Content-Type: text/json' -d '{}'
expect 415 "$(err 415 "only acceptable Content-Type is application/json")"
WHAT="no content type" req PUT "$F/units/api1.service" -H 'Content-Type:' -d '{}'
expect 415
WHAT="bad JSON" put api1.service '{"desiredState":'
expect 400
[[ "$(jqb .error.message)" == '"unable to decode body: '* ]] || fail "bad JSON message: $BODY"
WHAT="empty body" put api1.service ''
expect 400 "$(err 400 "unable to decode body: EOF")"
WHAT="wrong type" put api1.service '{"desiredState":3}'
expect 400
WHAT="array body" put api1.service '[]'
expect 400
WHAT="name differs" put api1.service '{"name":"other.service","desiredState":"launched"}'
expect 400 "$(err 400 'name in URL "api1.service" differs from unit name in request body "other.service"')"
WHAT="bad character" req PUT "$F/units/bad%21name.service" "${JSON[@]}" -d "{\"options\":[$EXEC]}"
expect 400 "$(err 400 "invalid character '!' in unit name")"
WHAT="bad type" put foo.bogus "{\"options\":[$EXEC]}"
expect 400 "$(err 400 'invalid unit type: "bogus"')"
WHAT="no dot" put foo "{\"options\":[$EXEC]}"
expect 400 "$(err 400 'unit name must contain "."')"
WHAT="template type" put foo@.mount "{\"options\":[$EXEC]}"
expect 400 "$(err 400 'invalid unit type for template: "mount"')"
WHAT="ghost" put ghost.service '{"desiredState":"launched"}'
expect 409 "$(err 409 "unit does not exist and options field empty")"
WHAT="ghost, empty options" put ghost.service '{"desiredState":"launched","options":[]}'
expect 409 "$(err 409 "unit does not exist and options field empty")"
WHAT="bad options" put badopt.service '{"options":[{"section":"Service","value":"x"}]}'
expect 400
WHAT="MachineID with MachineOf" put peer.service "{\"desiredState\":\"launched\",\"options\":[$EXEC,
	{\"section\":\"X-Fleet\",\"name\":\"MachineID\",\"value\":\"abc\"},
	{\"section\":\"X-Fleet\",\"name\":\"MachineOf\",\"value\":\"a.service\"}]}"
expect 400 "$(err 400 "MachineID cannot be used with Peers")"
WHAT="MachineID with Global" put glob.service "{\"options\":[$EXEC,
	{\"section\":\"X-Fleet\",\"name\":\"MachineID\",\"value\":\"abc\"},
	{\"section\":\"X-Fleet\",\"name\":\"Global\",\"value\":\"true\"}]}"
expect 400 "$(err 400 "MachineID cannot be used with Global")"
WHAT="bad desiredState on create" put bogus.service "{\"desiredState\":\"bogus\",\"options\":[$EXEC]}"
expect 400
WHAT="after refused PUTs" req GET "$F/units"
expect 200 '{}'
[ "$(v2index /_flotilla/units)" = none ] || fail "a refused PUT wrote /_flotilla/units"

note "PUT: create, update, replace"
WHAT=create put api1.service "{\"desiredState\":\"inactive\",\"options\":[$EXEC]}"
expect 201 ""
grep -qi '^Content-Type' "$T_TMP/hdrs" && fail "201 carries a Content-Type"
WHAT="get created" req GET "$F/units/api1.service"
expect 200 '{"currentState":"inactive","desiredState":"inactive","name":"api1.service","options":[{"name":"ExecStart","section":"Service","value":"/bin/sleep 3000"}]}'
grep -qi '^Content-Type: application/json' "$T_TMP/hdrs" || fail "GET unit content type"
stored=$(curl -s "$B/v2/keys/_flotilla/units/api1.service" | jq -r .node.value)
[ "$(jq -r '.name, .desiredState' <<<"$stored" | paste -sd,)" = api1.service,inactive ] ||
	fail "stored unit: $stored"
[[ "$(jq -r .hash <<<"$stored")" =~ ^[0-9a-f]{40}$ ]] || fail "stored hash: $stored"
hash1=$(jq -r .hash <<<"$stored")
WHAT="content type with parameters" req PUT "$F/units/api1.service" \
	-H 'Content-Type: application/json; charset=utf-8' -d '{"desiredState":"launched"}'
expect 204 ""
WHAT="same options + state" put api1.service "{\"desiredState\":\"loaded\",\"options\":[$EXEC]}"
expect 204 ""
WHAT="no desiredState" put api1.service '{}'
expect 409 "$(err 409 "must provide DesiredState to update existing unit")"
WHAT="no desiredState, same options" put api1.service "{\"options\":[$EXEC]}"
expect 409 "$(err 409 "must provide DesiredState to update existing unit")"
idx=$(v2index /_flotilla/units/api1.service)
WHAT="bad desiredState on update" put api1.service '{"desiredState":"bogus"}'
expect 400
[[ "$(jqb .error.message)" == *bogus* ]] || fail "bad desiredState message: $BODY"
[ "$(v2index /_flotilla/units/api1.service)" = "$idx" ] || fail "a refused desiredState wrote"
WHAT="unit intact" req GET "$F/units/api1.service"
expect 200
[ "$(jqb .desiredState)" = '"loaded"' ] || fail "desiredState after a refused update: $BODY"
WHAT="replace" put api1.service '{"desiredState":"launched","options":[{"section":"Service","name":"ExecStart","value":"/bin/sleep 1"},{"section":"Service","name":"Environment"}]}'
expect 201 ""
WHAT="replaced" req GET "$F/units/api1.service"
expect 200
[ "$(jqb "$STATIC")" = '{"desiredState":"launched","name":"api1.service","options":[{"name":"ExecStart","section":"Service","value":"/bin/sleep 1"},{"name":"Environment","section":"Service"}]}' ] ||
	fail "replaced: $BODY"
[ "$(curl -s "$B/v2/keys/_flotilla/units/api1.service" | jq -r .node.value | jq -r .hash)" != "$hash1" ] ||
	fail "replace kept the old hash"
WHAT="name in body" put api1.service '{"name":"api1.service","desiredState":"loaded"}'
expect 204
WHAT="v1-alpha" req GET "$B/v1-alpha/units/api1.service"
expect 200
[ "$(jqb .desiredState)" = '"loaded"' ] || fail "v1-alpha GET: $BODY"
WHAT="v1-alpha PUT" req PUT "$B/v1-alpha/units/api1.service" "${JSON[@]}" -d '{"desiredState":"launched"}'
expect 204

note "templates and instances"
WHAT="template" put tpl@.service '{"desiredState":"inactive","options":[{"section":"Service","name":"ExecStart","value":"/bin/sleep %i"}]}'
expect 201
WHAT="activate template" put tpl@.service '{"desiredState":"launched"}'
expect 400 "$(err 400 'cannot activate template "tpl@.service"')"
WHAT="create template launched" put tpl2@.service "{\"desiredState\":\"launched\",\"options\":[$EXEC]}"
expect 400 "$(err 400 'cannot activate template "tpl2@.service"')"
WHAT="instance from template" put tpl@1.service '{"desiredState":"launched"}'
expect 201
WHAT="instance" req GET "$F/units/tpl@1.service"
expect 200
[ "$(jqb "$STATIC")" = '{"desiredState":"launched","name":"tpl@1.service","options":[{"name":"ExecStart","section":"Service","value":"/bin/sleep %i"}]}' ] ||
	fail "instance: $BODY"
[ "$(curl -s "$B/v2/keys/_flotilla/units/tpl@1.service" | jq -r .node.value | jq -r .hash)" = \
	"$(curl -s "$B/v2/keys/_flotilla/units/tpl@.service" | jq -r .node.value | jq -r .hash)" ] ||
	fail "an instance does not share its template's hash"
WHAT="instance with own options" put tpl@2.service "{\"options\":[$EXEC]}"
expect 201
WHAT="instance without template" put none@1.service '{"desiredState":"launched"}'
expect 409 "$(err 409 "unit does not exist and options field empty")"

note "racing creates: one 201, one 409"
raced=
for i in $(seq 1 20); do
	out=$($PY - "$port" "race$i.service" <<'PY'
import socket, sys, json
port, name = int(sys.argv[1]), sys.argv[2]
body = json.dumps({"desiredState": "inactive",
                   "options": [{"section": "Service", "name": "ExecStart", "value": "/bin/true"}]})
req = ("PUT /fleet/v1/units/%s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
       "Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (name, len(body), body)).encode()
socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
# Everything but the last byte first, then both last bytes back to back: the two requests
# complete within microseconds, before the first create can be applied.
for s in socks:
    s.sendall(req[:-1])
import time
time.sleep(0.05)
for s in socks:
    s.sendall(req[-1:])
codes = []
for s in socks:
    data = b""
    while True:
        c = s.recv(65536)
        if not c:
            break
        data += c
    codes.append(data.split(b" ")[1].decode())
print(" ".join(sorted(codes)))
PY
	)
	case $out in
	"201 409") raced=1 && break ;;
	"201 204") continue ;; # the two requests did not overlap: try again
	*) fail "racing creates answered $out" ;;
	esac
done
[ -n "$raced" ] || fail "racing creates never overlapped in 20 tries"
WHAT="409 message" true

note "placement (by the engine) and unit states"
M1=1111111111111111111111111111aaaa
M2=2222222222222222222222222222bbbb
# M1 runs exec units; M2 offers no runtime, so the engine places everything on M1
hb "{\"id\":\"$M1\",\"publicIP\":\"10.0.0.1\",\"metadata\":{\"region\":\"local\",\"role\":\"test\"},\"runtimes\":[\"exec\"],\"version\":\"0.1.0\"}"
hb "{\"id\":\"$M2\",\"publicIP\":\"10.0.0.2\",\"runtimes\":[],\"version\":\"0.1.0\"}"
wait_for 10 ujq api1.service ".machineID == \"$M1\"" || fail "api1 never placed: $(curl -s "$F/units/api1.service")"
WHAT="scheduled, no state" req GET "$F/units/api1.service"
[ "$(jqb '[.currentState,.machineID,.reason]')" = "[\"inactive\",\"$M1\",null]" ] || fail "scheduled without state: $BODY"
v2put "/_flotilla/states/api1.service/$M1" "{\"machineID\":\"$M1\",\"hash\":\"$hash1\",\"loadState\":\"loaded\",\"activeState\":\"inactive\",\"subState\":\"dead\",\"exitCode\":-1}"
WHAT="loaded" req GET "$F/units/api1.service"
[ "$(jqb '[.currentState,.machineID]')" = "[\"loaded\",\"$M1\"]" ] || fail "loaded: $BODY"
v2put "/_flotilla/states/api1.service/$M1" "{\"machineID\":\"$M1\",\"hash\":\"$hash1\",\"loadState\":\"loaded\",\"activeState\":\"active\",\"subState\":\"running\"}"
v2put "/_flotilla/states/api1.service/$M2" "{\"machineID\":\"$M2\",\"hash\":\"$hash1\",\"loadState\":\"loaded\",\"activeState\":\"failed\",\"subState\":\"failed\"}"
v2put "/_flotilla/states/tpl@1.service/$M2" "{\"machineID\":\"$M2\",\"hash\":\"abc\",\"loadState\":\"loaded\",\"activeState\":\"active\",\"subState\":\"running\"}"
WHAT="launched" req GET "$F/units/api1.service"
expect 200 "{\"currentState\":\"launched\",\"desiredState\":\"launched\",\"machineID\":\"$M1\",\"name\":\"api1.service\",\"options\":[{\"name\":\"ExecStart\",\"section\":\"Service\",\"value\":\"/bin/sleep 1\"},{\"name\":\"Environment\",\"section\":\"Service\"}]}"
WHAT="unschedulable" put mars.service "{\"desiredState\":\"launched\",\"options\":[$EXEC,{\"section\":\"X-Fleet\",\"name\":\"MachineMetadata\",\"value\":\"region=mars\"}]}"
expect 201
wait_for 10 ujq mars.service '.reason | length > 0' || fail "no reason for an unplaceable unit: $(curl -s "$F/units/mars.service")"
WHAT="unschedulable" req GET "$F/units/mars.service"
[ "$(jqb '[.currentState,.machineID]')" = '["inactive",null]' ] || fail "reason: $BODY"
WHAT="list has the reason" req GET "$F/units"
[ "$(jqb '[.units[]|select(.name=="mars.service")|.reason|length>0]')" = '[true]' ] || fail "reason in list: $BODY"
WHAT="global" put glob.service "{\"desiredState\":\"launched\",\"options\":[$EXEC,{\"section\":\"X-Fleet\",\"name\":\"Global\",\"value\":\"true\"}]}"
expect 201
WHAT="global unit" req GET "$F/units/glob.service"
[ "$(jqb '[.currentState,.machineID,.desiredState]')" = '[null,null,"launched"]' ] || fail "global: $BODY"

WHAT="state list" req GET "$F/state"
expect 200 "{\"states\":[{\"hash\":\"$hash1\",\"machineID\":\"$M1\",\"name\":\"api1.service\",\"systemdActiveState\":\"active\",\"systemdLoadState\":\"loaded\",\"systemdSubState\":\"running\"},{\"hash\":\"$hash1\",\"machineID\":\"$M2\",\"name\":\"api1.service\",\"systemdActiveState\":\"failed\",\"systemdLoadState\":\"loaded\",\"systemdSubState\":\"failed\"},{\"hash\":\"abc\",\"machineID\":\"$M2\",\"name\":\"tpl@1.service\",\"systemdActiveState\":\"active\",\"systemdLoadState\":\"loaded\",\"systemdSubState\":\"running\"}]}"
WHAT="state by machine" req GET "$F/state?machineID=$M2"
[ "$(jqb '[.states[]|.name+"/"+.machineID[0:4]]')" = '["api1.service/2222","tpl@1.service/2222"]' ] || fail "machineID filter: $BODY"
WHAT="state by unit" req GET "$F/state?unitName=api1.service"
[ "$(jqb '[.states[]|.machineID[0:4]]')" = '["1111","2222"]' ] || fail "unitName filter: $BODY"
WHAT="state by both" req GET "$F/state?unitName=api1.service&machineID=$M2&alt=json"
[ "$(jqb '[.states[]|.machineID[0:4]]')" = '["2222"]' ] || fail "both filters: $BODY"
WHAT="state no match" req GET "$F/state?machineID=nomatch"
expect 200 '{}'
WHAT="state of unit" req GET "$F/state/api1.service"
[ "$(jqb .machineID)" = "\"$M1\"" ] || fail "state of a unit: $BODY"
WHAT="state of missing unit" req GET "$F/state/nope.service"
expect 404 "$(err 404 "unit state does not exist")"
WHAT="POST state" req POST "$F/state"
expect 405 "$(err 405 "only GET supported against this resource")"
WHAT="v1-alpha state" req GET "$B/v1-alpha/state?unitName=tpl@1.service"
[ "$(jqb '[.states[]|.name]')" = '["tpl@1.service"]' ] || fail "v1-alpha state: $BODY"

note "machines and metadata PATCH"
WHAT=machines req GET "$F/machines"
expect 200 "{\"machines\":[{\"id\":\"$M1\",\"metadata\":{\"region\":\"local\",\"role\":\"test\"},\"primaryIP\":\"10.0.0.1\"},{\"id\":\"$M2\",\"primaryIP\":\"10.0.0.2\"}]}"
WHAT="PATCH plain value" req PATCH "$F/machines" "${JSON[@]}" -d "[{\"op\":\"add\",\"path\":\"/$M1/metadata/dyn\",\"value\":\"plain\"}]"
expect 400
[[ "$(jqb .error.message)" == '"json: cannot unmarshal string into Go struct field machineMetadataOp.Value'* ]] || fail "plain value message: $BODY"
WHAT="PATCH bad op" req PATCH "$F/machines" -d '[{"op":"move","path":"/x/metadata/y"}]'
expect 400 "$(err 400 "invalid op: expect add, remove, or replace")"
WHAT="PATCH bad path" req PATCH "$F/machines" -d '[{"op":"add","path":"/x/meta/y","value":{"value":"1"}}]'
expect 400 "$(err 400 "machine metadata path invalid")"
WHAT="PATCH bad key" req PATCH "$F/machines" -d '[{"op":"add","path":"/x/metadata/a b","value":{"value":"1"}}]'
expect 400 "$(err 400 "machine metadata path invalid")"
WHAT="PATCH empty value" req PATCH "$F/machines" -d "[{\"op\":\"add\",\"path\":\"/$M1/metadata/k\",\"value\":{\"value\":\"\"}}]"
expect 400 "$(err 400 "invalid value: add and replace require a value")"
WHAT="PATCH one bad of two" req PATCH "$F/machines" -d "[{\"op\":\"add\",\"path\":\"/$M1/metadata/k\",\"value\":{\"value\":\"v\"}},{\"op\":\"bad\",\"path\":\"/$M1/metadata/k\"}]"
expect 400
WHAT="PATCH bad JSON" req PATCH "$F/machines" -d '[{'
expect 400
[ "$(v2index /_flotilla/metadata)" = none ] || fail "a refused PATCH wrote metadata"
# metadata set through the API is what the engine places by
WHAT="PATCH region=mars" req PATCH "$F/machines" -d "[{\"op\":\"add\",\"path\":\"/$M1/metadata/region\",\"value\":{\"value\":\"mars\"}}]"
expect 204
wait_for 10 ujq mars.service ".machineID == \"$M1\"" || fail "mars.service not placed after the PATCH: $(curl -s "$F/units/mars.service")"
WHAT="PATCH region back" req PATCH "$F/machines" -d "[{\"op\":\"remove\",\"path\":\"/$M1/metadata/region\"}]"
expect 204
v2del "/_flotilla/metadata/$M1"
WHAT="PATCH add" req PATCH "$F/machines" "${JSON[@]}" -d "[{\"op\":\"add\",\"path\":\"/$M1/metadata/dyn\",\"value\":{\"value\":\"nested\"}},{\"op\":\"add\",\"path\":\"/$M2/metadata/region\",\"value\":{\"value\":\"east\"}}]"
expect 204 ""
grep -qi '^Content-Type: application/json' "$T_TMP/hdrs" || fail "PATCH 204 content type (fleet sends one)"
WHAT="machines after add" req GET "$F/machines"
expect 200 "{\"machines\":[{\"id\":\"$M1\",\"metadata\":{\"dyn\":\"nested\",\"region\":\"local\",\"role\":\"test\"},\"primaryIP\":\"10.0.0.1\"},{\"id\":\"$M2\",\"metadata\":{\"region\":\"east\"},\"primaryIP\":\"10.0.0.2\"}]}"
WHAT="PATCH remove" req PATCH "$F/machines" -d "[{\"op\":\"remove\",\"path\":\"/$M1/metadata/role\"}]"
expect 204
WHAT="machines after remove" req GET "$B/v1-alpha/machines"
[ "$(jqb '.machines[0].metadata')" = '{"dyn":"nested","region":"local"}' ] || fail "after remove: $BODY"
[ "$(curl -s "$B/v2/keys/_flotilla/metadata/$M1" | jq -r .node.value)" = '{"dyn":"nested","role":""}' ] ||
	fail "stored overrides: $(curl -s "$B/v2/keys/_flotilla/metadata/$M1")"
WHAT="PATCH replace+remove" req PATCH "$F/machines" -d "[{\"op\":\"replace\",\"path\":\"/$M1/metadata/role\",\"value\":{\"value\":\"test\"}},{\"op\":\"remove\",\"path\":\"/$M1/metadata/dyn\"}]"
expect 204
WHAT="machines back" req GET "$F/machines"
[ "$(jqb '.machines[0].metadata')" = '{"region":"local","role":"test"}' ] || fail "after replace: $BODY"
WHAT="PATCH unknown machine" req PATCH "$F/machines" -d '[{"op":"add","path":"/feedface/metadata/x","value":{"value":"y"}}]'
expect 204
WHAT="PUT machines" req PUT "$F/machines" -d '{}'
expect 405 "$(err 405 "only GET and PATCH supported against this resource")"
# concurrent PATCHes of one machine: none is lost (compare-and-swap with retries)
pids=()
for i in 1 2 3 4 5 6; do
	curl -s -o /dev/null -w '%{http_code}\n' -XPATCH "$F/machines" \
		-d "[{\"op\":\"add\",\"path\":\"/$M2/metadata/c$i\",\"value\":{\"value\":\"$i\"}}]" >>"$T_TMP/patch.codes" &
	pids+=("$!")
done
wait "${pids[@]}" # not a bare wait: the daemon is a child too
[ "$(sort -u "$T_TMP/patch.codes")" = 204 ] || fail "concurrent PATCH codes: $(cat "$T_TMP/patch.codes")"
WHAT="concurrent PATCH" req GET "$F/machines"
[ "$(jqb '.machines[1].metadata|keys')" = '["c1","c2","c3","c4","c5","c6","region"]' ] ||
	fail "a concurrent PATCH was lost: $BODY"

note "page tokens"
WHAT="bad token" req GET "$F/units?nextPageToken=garbage"
expect 400 "$(err 400 "illegal base64 data at input byte 4")"
WHAT="bad limit" req GET "$F/units?nextPageToken=AgABAA=="
expect 400 "$(err 400 "token limit must be 100")"
WHAT="page 0" req GET "$F/units?nextPageToken=ZAAAAA=="
expect 400 "$(err 400 "token page must be greater than zero")"
WHAT="two tokens" req GET "$F/units?nextPageToken=ZAACAA==&nextPageToken=ZAACAA=="
expect 400 "$(err 400 "too many values for page token")"
WHAT="bad machines token" req GET "$F/machines?nextPageToken=garbage"
expect 400
WHAT="bad state token" req GET "$F/state?nextPageToken=ZAAAAA=="
expect 400
$PY - "$port" <<'PY' || fail "creating many units"
import http.client, json, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
for i in range(210):
    body = json.dumps({"options": [{"section": "Service", "name": "ExecStart",
                                     "value": "/bin/true %d" % i}]})
    c.request("PUT", "/fleet/v1/units/many%03d.service" % i, body,
              {"Content-Type": "application/json"})
    r = c.getresponse()
    r.read()
    if r.status != 201:
        sys.exit("PUT many%03d: %d" % (i, r.status))
PY
total=$(curl -s "$B/v2/keys/_flotilla/units" | jq '.node.nodes|length')
WHAT="page 1" req GET "$F/units?alt=json"
expect 200
[ "$(jqb '[(.units|length), .nextPageToken, .units[0].name]')" = '[100,"ZAACAA==","api1.service"]' ] ||
	fail "page 1: $(jqb '[(.units|length), .nextPageToken]')"
WHAT="page 2" req GET "$F/units?nextPageToken=ZAACAA=="
[ "$(jqb '[(.units|length), .nextPageToken]')" = '[100,"ZAADAA=="]' ] || fail "page 2: $(jqb '.nextPageToken')"
WHAT="page 3" req GET "$F/units?nextPageToken=ZAADAA=="
[ "$(jqb '[(.units|length), .nextPageToken]')" = "[$((total - 200)),null]" ] || fail "page 3: $(jqb '[(.units|length), .nextPageToken]')"
WHAT="past the end" req GET "$F/units?nextPageToken=ZAAEAA=="
expect 200 '{}'
# every unit exactly once, in name order, across the pages
names=$(for t in "" "?nextPageToken=ZAACAA==" "?nextPageToken=ZAADAA=="; do
	curl -s "$F/units$t" | jq -r '.units[].name'; done)
[ "$(wc -l <<<"$names")" = "$total" ] && [ "$names" = "$(sort <<<"$names")" ] &&
	[ "$(sort -u <<<"$names" | wc -l)" = "$total" ] || fail "pages do not cover every unit once"

note "DELETE"
WHAT=delete req DELETE "$F/units/api1.service"
expect 204 ""
WHAT="deleted" req GET "$F/units/api1.service"
expect 404 "$(err 404 "unit does not exist")"
[ "$(v2index /_flotilla/units/api1.service)" = none ] || fail "unit key left behind"
WHAT="delete again" req DELETE "$F/units/api1.service"
expect 404 "$(err 404 "unit does not exist")"
WHAT="delete template" req DELETE "$B/v1-alpha/units/tpl@.service"
expect 204
WHAT="delete bad name" req DELETE "$F/units/..%2F..%2Fv2"
expect 404
WHAT="recreate" put api1.service "{\"options\":[$EXEC]}"
expect 201

echo PASS
