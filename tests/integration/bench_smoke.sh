#!/bin/bash
# The cluster scheduler benchmark (tests/bench/scheduler) still runs, on a tiny size: three
# members, 30 simulated machines, 300 units. Figures are not judged here (benchmarks are run by
# hand, tests/bench/README); what is checked is what any size must show: every unit placed, one
# log write per placement, no log writes from idle machines, and a dead machine's units moved.
. "$(dirname "$0")/lib.sh"

out="$T_TMP/bench.out"
FLT_BUILDDIR="$FLT_BUILDDIR" "$FLT_SRCDIR/tests/bench/scheduler" -m 30 -u 300 -i 3 >"$out" 2>&1 ||
	fail "tests/bench/scheduler failed: $(tail -n 30 "$out")"
sed 's/^/# /' "$out"
grep -q '^units submitted *300 (0 failed)' "$out" || fail "not every unit was submitted: $(cat "$out")"
grep -q '^all placed after' "$out" || fail "not every unit was placed: $(cat "$out")"
grep -q '^log writes .*: 1\.000 per placement' "$out" || fail "placements cost more than one log write each: $(cat "$out")"
grep -q '^idle .*: 0 log writes' "$out" || fail "idle machines wrote to the log: $(cat "$out")"
grep -q '^dead machine .*placed elsewhere' "$out" || fail "a dead machine's units did not move: $(cat "$out")"
