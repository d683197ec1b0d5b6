#!/usr/bin/env bash
# python-etcd compatibility: Debian's unmodified python3-etcd runs python_etcd_compat.py (one
# normalized line per operation) against a real etcd 3.4 and against flotillad; the transcripts
# must be identical. COMPAT_SERVERS="etcd etcd" compares etcd with itself (checks normalization);
# COMPAT_KEEP=DIR keeps the transcripts there.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_compat.sh"

SEQ=$FLT_SRCDIR/tests/integration/python_etcd_compat.py
[ -x "$PY" ] || fail "$PY is required for this test"
$PY -c 'import etcd' 2>/dev/null ||
	fail "python3-etcd is not importable from $PY (package python3-etcd)"

outs=()
n=0
for kind in "${SERVERS[@]}"; do
	n=$((n + 1))
	start_server "$kind" "srv$n"
	note "running the python-etcd sequence against $kind on port $SRV_PORT"
	out=$T_TMP/py.$n.$kind
	# The sequence bounds every wait itself; the timeout only guards against a hung client.
	rc=0
	timeout 120 "$PY" "$SEQ" 127.0.0.1 "$SRV_PORT" >"$out" 2>"$out.err" || rc=$?
	# A crash of the sequence itself is part of the transcript (the traceback names the step),
	# minus the lines that only name our file and line numbers.
	echo "exit=$rc" >>"$out"
	grep -v '^  File \|^    ' "$out.err" | sed -E 's/port=[0-9]+/port=P/g' >>"$out"
	outs+=("$out")
	[ -z "${COMPAT_KEEP:-}" ] || cp "$out" "$out.err" "$COMPAT_KEEP/"
	stop_server
done

note "$(grep -c ' | ' "${outs[0]}") operations"
# The reference run must itself be sound, or two equally broken runs would pass.
if ! grep -qx 'exit=0' "${outs[0]}" ||
	grep -E 'NO EVENT|ONLY |expires within 10s \| False' "${outs[0]}"; then
	cat "${outs[0]}.err" >&2
	fail "the python-etcd sequence does not run cleanly against ${SERVERS[0]}"
fi
compare_runs python-etcd "${outs[0]}" "${outs[1]}"
