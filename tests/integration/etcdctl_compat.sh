#!/usr/bin/env bash
# etcdctl compatibility: Debian's unmodified etcdctl (ETCDCTL_API=2) runs one scripted sequence
# against a real etcd 3.4 and against flotillad; every step's stdout, stderr and exit code are
# recorded, the parts that legitimately differ are normalized, and any other difference fails.
# COMPAT_SERVERS="etcd etcd" compares etcd with itself (checks the normalization is right);
# COMPAT_KEEP=DIR keeps the raw and normalized transcripts there.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_compat.sh"

ETCDCTL=/usr/bin/etcdctl
[ -x "$ETCDCTL" ] || fail "etcdctl ($ETCDCTL, package etcd-client) is required for this test"
export ETCDCTL_API=2

ctl() { "$ETCDCTL" --endpoints "$EP" "$@"; }
# For steps that wait on the server (a watch that must fire): bounded.
ctl_bounded() { timeout 15 "$ETCDCTL" --endpoints "$EP" "$@"; }

# Print the argv of a step; long arguments (large values) are shown by their size only.
show_argv() {
	local a out=""
	for a in "$@"; do
		if [ ${#a} -gt 80 ]; then out+="<${#a} bytes> "; else out+="$(printf '%q' "$a") "; fi
	done
	echo "### $out"
}

# run [-s] [-h] [-i FILE] CMD...: runs one step and appends its argv, exit code, stdout and stderr
# to $OUT. -s sorts stdout (unsorted listings), -h records stdout as size + sha256 (large values),
# -i feeds FILE on stdin (else /dev/null).
run() {
	local sort="" hash="" in=/dev/null rc=0
	while :; do
		case $1 in
		-s) sort=1 && shift ;;
		-h) hash=1 && shift ;;
		-i) in=$2 && shift 2 ;;
		*) break ;;
		esac
	done
	"$@" >"$T_TMP/o" 2>"$T_TMP/e" <"$in" || rc=$?
	{
		show_argv "$@"
		[ "$in" = /dev/null ] || echo "(stdin: $(wc -c <"$in") bytes)"
		echo "rc=$rc"
		echo "--- stdout"
		if [ -n "$sort" ]; then
			LC_ALL=C sort "$T_TMP/o"
		elif [ -n "$hash" ]; then
			# index numbers differ per server: mask them before hashing
			sed -E 's/"(modifiedIndex|createdIndex)":[0-9]+/"\1":N/g' "$T_TMP/o" >"$T_TMP/oh"
			echo "$(wc -c <"$T_TMP/oh") bytes sha256=$(sha256sum <"$T_TMP/oh" | cut -d' ' -f1)"
		else
			cat "$T_TMP/o"
		fi
		echo "--- stderr"
		cat "$T_TMP/e"
	} >>"$OUT"
}

# Modified-Index of a key, read through etcdctl itself (the number differs per server).
mod_index() { ctl -o extended get "$1" | sed -n 's/^Modified-Index: //p'; }
# The store's current index (X-Etcd-Index).
cur_index() {
	curl -sf -o /dev/null -D - "$EP/v2/keys/" | tr -d '\r' | sed -n 's/^X-Etcd-Index: //Ip'
}

# True once some etcdctl process holds an established connection to the server (a watcher).
watcher_connected() { ss -tnpH state established "( dport = :$SRV_PORT )" | grep -q '"etcdctl"'; }

# bg_watch OUTFILE ETCDCTL-ARGS...: starts a bounded etcdctl watcher (timeout 15 s) in the
# background; sets BG_PID.
bg_watch() {
	local f=$1
	shift
	timeout 15 "$ETCDCTL" --endpoints "$EP" "$@" >"$f" 2>&1 &
	BG_PID=$!
	T_PIDS+=("$BG_PID")
	wait_for 10 watcher_connected || echo "watcher never connected" >>"$f"
}

# trigger_until CHECK CMD...: runs CMD (an idempotent change) until CHECK succeeds, at most 10 s.
# Repeating covers the instant between the watcher's connect and its request reaching the server;
# the repeated change writes the same value, so a watcher prints the same thing either way.
trigger_until() {
	local check=$1 end=$((SECONDS + 10))
	shift
	while :; do
		"$@" >/dev/null 2>&1
		wait_for 2 "$check" && return 0
		[ $SECONDS -lt $end ] || return 1
	done
}
proc_gone() { ! kill -0 "$BG_PID" 2>/dev/null; }
file_nonempty() { [ -s "$1" ]; }

# Record a finished background watcher: its exit code and output.
record_bg() {
	local label=$1 f=$2 rc=0
	wait "$BG_PID" || rc=$?
	forget_pid "$BG_PID"
	{
		echo "### $label"
		echo "rc=$rc"
		cat "$f"
	} >>"$OUT"
}

# poll_gone SECS CMD...: repeats CMD until it fails (key expired), then records that last output.
poll_gone() {
	local secs=$1 end
	shift
	end=$((SECONDS + secs))
	while "$@" >/dev/null 2>&1; do
		if [ $SECONDS -ge $end ]; then
			echo "### still present after ${secs}s: $*" >>"$OUT"
			return
		fi
		sleep 0.1
	done
	run "$@"
}

# The in-order children of a directory, by creation order, each shown by its value.
inorder_values() {
	local k
	ctl ls --sort "$1" | while read -r k; do ctl get "$k"; done
}

# N bytes of printable ASCII, many of them special in URLs and forms.
big_value() {
	$PY -c 'import sys; n = int(sys.argv[1])
sys.stdout.write("".join(chr(33 + (i * 7919) % 94) for i in range(n)))' "$1"
}

# N bytes that forms carry unescaped: a 1 MiB value stays a ~1 MiB request body. (flotillad
# refuses bodies over 1.5 MiB with 413, etcd's --max-request-bytes default, where etcd's v2 API
# has no limit; http_robustness.sh checks that refusal.)
plain_value() {
	$PY -c 'import sys, string; n = int(sys.argv[1]); a = string.ascii_letters + string.digits + "-._~"
sys.stdout.write("".join(a[(i * 7919) % len(a)] for i in range(n)))' "$1"
}

sequence() {
	local i w

	# --- set / get / mk / update, the three output formats
	run ctl set /foo bar
	run ctl get /foo
	run ctl -o json set /foo bar2
	run ctl -o extended get /foo
	run ctl -o json get /foo
	run ctl mk /foo x
	run ctl mk /newkey first
	run ctl -o extended mk /newkey2 first
	run ctl update /foo bar3
	run ctl -o json update /foo bar4
	run ctl update /nokey v
	run ctl get /nokey
	run ctl -o json get /nokey
	run ctl -o extended get /nokey
	run ctl set -- /dash -value-with-dash
	run ctl get /dash
	run ctl set /empty ""
	run ctl -o json get /empty

	# --- directories
	run ctl mkdir /d
	run ctl mkdir /d
	run ctl -o json mkdir /d2
	run ctl set /d/a 1
	run ctl set /d/b 2
	run ctl mkdir /d/sub
	run ctl set /d/sub/c 3
	run -s ctl ls /d
	run ctl ls --sort /d
	run ctl ls --sort -p /d
	run -s ctl ls -r /d
	run ctl ls --sort -r -p /d
	run ctl -o json ls --sort /d
	run ctl -o json ls --sort -r /d
	run ctl -o extended ls --sort /d
	run ctl ls /d/a
	run ctl ls /nodir
	run ctl get /d
	run ctl setdir /sd
	run ctl setdir /sd
	run ctl -o json updatedir /sd
	run ctl updatedir /nodir
	run ctl setdir /foo
	run ctl -o json ls /foo
	run ctl set /file v
	run ctl updatedir /file
	run ctl mkdir /file
	run ctl set /file/sub x
	run ctl mkdir /file/sub
	run ctl get /file/sub
	run ctl set /d v
	run ctl update /d v
	run ctl rm /d
	run ctl rm --dir /d
	run ctl rmdir /d
	run ctl rmdir /d/sub
	run ctl rmdir /d/a
	run ctl rm --dir /d/b
	run ctl rm /d/sub/c
	run ctl rmdir /d/sub
	run ctl -o json rm -r /d
	run ctl get /d
	run ctl rm /nokey
	run ctl rmdir /nodir
	run ctl mkdir /rr/x/y
	run ctl set /rr/x/y/z 1
	run ctl -o extended rm --recursive /rr
	run ctl ls /rr

	# --- the root is read only
	run ctl rm -r /
	run ctl rm /
	run ctl rmdir /
	run ctl rm --dir /
	run ctl set / x
	run ctl mkdir /
	run ctl update / x
	run -s ctl ls
	run ctl ls /nokey/under

	# --- compare and swap / delete
	run ctl set /cas v0
	run ctl set --swap-with-value wrong /cas v1
	run ctl set --swap-with-value v0 /cas v1
	run ctl -o json set --swap-with-value v1 /cas v2
	i=$(mod_index /cas)
	[ -n "$i" ] || echo "### no Modified-Index for /cas" >>"$OUT"
	run ctl set --swap-with-index=1 /cas v3
	run ctl -o json set --swap-with-index="$i" /cas v3
	run ctl set --swap-with-index=1 --swap-with-value v3 /cas v4
	run ctl set --swap-with-index=1 --swap-with-value wrong /cas v4
	run ctl set --swap-with-value x /nokey v
	run ctl set --swap-with-index=3 /nokey v
	run ctl rm --with-value wrong /cas
	run ctl rm --with-index=1 /cas
	run ctl rm --with-index=1 --with-value wrong /cas
	i=$(mod_index /cas)
	run ctl -o json rm --with-index="$i" /cas
	run ctl set /cas2 w0
	run ctl -o extended rm --with-value w0 /cas2
	run ctl rm --with-value w0 /cas2
	run ctl mkdir /casd
	run ctl rm --dir --with-value x /casd
	run ctl set --swap-with-value x /casd v

	# --- TTLs
	run ctl set --ttl 100 /ttl/a v
	run ctl -o extended get /ttl/a
	run ctl -o json get /ttl/a
	run ctl -o json update /ttl/a v2
	run ctl -o json get /ttl/a
	run ctl -o json update --ttl 200 /ttl/a v3
	run ctl -o extended mk --ttl 50 /ttl/b v
	run ctl -o json setdir --ttl 100 /ttl/dir
	run ctl -o json updatedir --ttl 200 /ttl/dir
	run ctl -o json ls /ttl/dir
	run ctl -o json updatedir /ttl/dir
	run ctl -o json ls /ttl/dir
	run ctl mkdir --ttl 300 /ttl/dir2
	run ctl set --ttl abc /ttl/c v
	run ctl set --ttl -5 /ttl/c v
	run ctl set --ttl 1 /ttl/short v
	run ctl mkdir --ttl 1 /ttl/sdir
	run ctl set /ttl/sdir/child v
	poll_gone 10 ctl get /ttl/short
	poll_gone 10 ctl ls /ttl/sdir
	run ctl get /ttl/sdir/child
	run ctl ls --sort /ttl
	# an expiry as a watcher sees it
	run ctl set --ttl 1 /ttl/ex v
	i=$(cur_index)
	run ctl_bounded -o json watch --after-index="$i" /ttl/ex
	run ctl get /ttl/ex
	# (etcdctl's watch skips directory events, so a directory's expiry is python-etcd's to check)

	# --- in-order keys
	run ctl mk --in-order /q a
	run ctl mk --in-order /q b
	run ctl mk --in-order /q c
	run inorder_values /q
	run ctl -o json ls --sort /q
	run ctl mk --in-order /foo x

	# --- hidden keys
	run ctl set /_hidden h
	run ctl get /_hidden
	run ctl mkdir /_hdir
	run ctl set /_hdir/x 1
	run ctl set /vis/_h 1
	run ctl set /vis/shown 2
	run -s ctl ls
	run ctl ls --sort /vis
	run ctl ls --sort -r /vis
	run ctl ls --sort /_hdir
	run ctl get /vis/_h
	# hidden keys are hidden from listings, not from recursive watchers
	i=$(cur_index)
	run ctl set /vis/_h2 hidden
	run ctl set /vis/_hd/x hidden
	run ctl set /vis/n2 visible
	run ctl -o json watch -r --after-index="$i" /vis
	run ctl -o json watch --after-index="$i" /vis/_h2

	# --- awkward keys and values
	for w in "/sp ace/k ey" "/s/a%20b" "/s/q?x=1" "/s/h#1" "/s/p+s" "/s/üñí" "/s/a&b=c" \
		"/s/..//x" "/s/dot." "/s/tab	x" "/s/quote\"'" "/s/semi;colon" "/s//double" \
		"/s/trail/"; do
		run ctl set "$w" "value of $w"
		run ctl get "$w"
	done
	run ctl ls --sort -r /s
	run ctl ls --sort "/sp ace"
	run ctl -o json get "/sp ace/k ey"
	run ctl set /vals/nl "line1
line2"
	run ctl get /vals/nl
	run ctl set /vals/unicode "ünïcødé ✓ 日本"
	run ctl -o json get /vals/unicode
	run ctl set /vals/json '{"a": [1, "b"], "c": "\u00e9"}'
	run ctl -o json get /vals/json
	run ctl set /vals/spaces "  padded  "
	run ctl get /vals/spaces

	# --- large values (100 KiB on the command line, 1 MiB on stdin)
	big_value 102400 >"$T_TMP/big"
	run -h ctl set /big "$(cat "$T_TMP/big")"
	run -h ctl get /big
	plain_value 1048576 >"$T_TMP/huge"
	run -h -i "$T_TMP/huge" ctl set /huge
	run -h ctl get /huge
	run -h ctl -o json get /huge

	# --- watch: one event, --after-index, --recursive, --forever, exec-watch
	run ctl set /w/k v1
	i=$(mod_index /w/k)
	run ctl set /w/k v2
	run ctl rm /w/k
	run ctl watch --after-index="$i" /w/k
	run ctl -o extended watch --after-index="$((i - 1))" /w/k
	run ctl -o json watch --after-index="$((i + 1))" /w/k
	run ctl -o json watch -r --after-index="$((i - 1))" /w
	bg_watch "$T_TMP/w1" watch /w/k
	trigger_until proc_gone ctl set /w/k v3
	record_bg "plain watch, triggered by set /w/k v3" "$T_TMP/w1"
	ctl set /w/gone x >/dev/null
	i=$(cur_index)
	bg_watch "$T_TMP/w2" -o extended watch --after-index="$i" /w/gone
	ctl rm /w/gone >/dev/null
	wait_for 10 proc_gone
	record_bg "watch of a key being deleted" "$T_TMP/w2"
	bg_watch "$T_TMP/w3" watch -r /w
	trigger_until proc_gone ctl set /w/sub/deep x
	record_bg "recursive watch, triggered by set /w/sub/deep x" "$T_TMP/w3"
	i=$(cur_index)
	bg_watch "$T_TMP/w4" -o json watch --after-index="$i" /w/next
	ctl set /w/next n1 >/dev/null
	wait_for 10 proc_gone
	record_bg "watch --after-index=<current> then set /w/next n1" "$T_TMP/w4"
	i=$(cur_index)
	bg_watch "$T_TMP/w5" watch --forever --after-index="$i" /w/f
	ctl set /w/f f1 >/dev/null
	ctl set /w/f f2 >/dev/null
	ctl rm /w/f >/dev/null
	wait_for 10 grep -q PrevNode "$T_TMP/w5"
	kill "$BG_PID"
	record_bg "watch --forever, three events" "$T_TMP/w5"
	# exec-watch: replay from history, then a live event. The key goes last: this etcdctl's
	# documented `exec-watch KEY -- CMD` form watches the wrong key (its flag parser eats `--`).
	run ctl set /ew/a e1
	i=$(mod_index /ew/a)
	# shellcheck disable=SC2016 # expanded by the shell exec-watch starts
	local hook='echo "action=$ETCD_WATCH_ACTION key=$ETCD_WATCH_KEY value=$ETCD_WATCH_VALUE"\
" mi=$ETCD_WATCH_MODIFIED_INDEX" >>"$0"'
	: >"$T_TMP/ew1"
	bg_watch "$T_TMP/ew1.out" exec-watch -r --after-index="$((i - 1))" sh -c "$hook" "$T_TMP/ew1" /ew
	ctl set /ew/b e2 >/dev/null
	ctl mkdir /ew/subdir >/dev/null
	ctl rm /ew/a >/dev/null
	wait_for 10 grep -q action=delete "$T_TMP/ew1"
	kill "$BG_PID"
	wait "$BG_PID" 2>/dev/null
	forget_pid "$BG_PID"
	{
		echo "### exec-watch -r --after-index: history + live events"
		LC_ALL=C sort "$T_TMP/ew1" # the hooks run concurrently
		cat "$T_TMP/ew1.out"
	} >>"$OUT"
	: >"$T_TMP/ew2"
	bg_watch "$T_TMP/ew2.out" exec-watch sh -c "$hook" "$T_TMP/ew2" /ew/live
	trigger_until "file_nonempty $T_TMP/ew2" ctl set /ew/live L
	kill "$BG_PID"
	wait "$BG_PID" 2>/dev/null
	forget_pid "$BG_PID"
	{
		echo "### exec-watch, live event"
		head -n1 "$T_TMP/ew2"
		cat "$T_TMP/ew2.out"
	} >>"$OUT"

	# --- quorum reads
	run ctl get --quorum /vals/spaces
	run ctl -o json get -q /vals/unicode
	run ctl ls --sort --quorum /vis
	run ctl get --quorum /nokey

	run ctl ls --sort -r /
	run ctl ls --sort -r -p /

	# --- many keys: a long listing, and watches whose history has been cleared (>1000 events)
	curl -sf -XPUT "$EP/v2/keys/churn/k[1000-2099]" -d value=x >/dev/null ||
		echo "### writing /churn failed" >>"$OUT"
	run -h ctl ls --sort /churn
	run ctl watch --after-index=1 /churn/k1000
	run ctl -o json watch --after-index=2 -r /churn
	run ctl -o extended rm -r /churn
	run ctl ls /churn

	# --- cluster commands
	run ctl member list
	run ctl cluster-health
	run ctl --no-sync get /vals/spaces
}

# Everything that legitimately differs between servers and runs (see the fixtures' README); the
# patterns are strict enough that a malformed number or time still shows up as a difference.
normalize() {
	local rfc3339='[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?Z'
	sed -E \
		-e 's/"(createdIndex|modifiedIndex)":[0-9]+/"\1":N/g' \
		-e 's/^(Created-Index|Modified-Index|Index): [0-9]+$/\1: N/' \
		-e 's/\) \[[0-9]+\]$/) [N]/' \
		-e 's/\[([0-9]+) != [0-9]+\]/[\1 != N]/g' \
		-e 's#cleared \[[0-9]+/[0-9]+\]#cleared [N/N]#' \
		-e 's/(-index)=[0-9]+/\1=N/g' \
		-e "s/\"expiration\":\"$rfc3339\"/\"expiration\":\"E\"/g" \
		-e 's/"ttl":[0-9]+/"ttl":T/g' \
		-e 's/^TTL: [1-9][0-9]*$/TTL: T/' \
		-e 's/ mi=[0-9]+/ mi=N/' \
		-e 's#/[0-9]{20}\b#/<in-order>#g' \
		-e 's#https?://(127\.0\.0\.1|localhost|\[::1\]):[0-9]+#URL#g' \
		-e 's/^[0-9a-f]{1,16}: name=/ID: name=/' \
		-e 's/member [0-9a-f]{1,16} is/member ID is/'
}

outs=()
n=0
for kind in "${SERVERS[@]}"; do
	n=$((n + 1))
	start_server "$kind" "srv$n"
	EP="http://127.0.0.1:$SRV_PORT"
	OUT=$T_TMP/raw.$n
	: >"$OUT"
	note "running the etcdctl sequence against $kind on port $SRV_PORT"
	sequence
	normalize <"$OUT" >"$T_TMP/norm.$n.$kind"
	outs+=("$T_TMP/norm.$n.$kind")
	[ -z "${COMPAT_KEEP:-}" ] || cp "$OUT" "$T_TMP/norm.$n.$kind" "$COMPAT_KEEP/"
	stop_server
done

note "$(grep -c '^###' "${outs[0]}") steps"
# The reference run must itself be sound, or two equally broken runs would pass.
if grep -E 'never connected|^### still present|failed to run command|^rc=124$' "${outs[0]}"; then
	fail "the sequence does not run cleanly against ${SERVERS[0]} (lines above)"
fi
compare_runs etcdctl "${outs[0]}" "${outs[1]}"
