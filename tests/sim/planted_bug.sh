#!/bin/sh
# The simulator must catch a broken core: sim_planted is built with RAFT_PLANTED_BUG, which makes
# voters skip the "candidate's log is at least as up-to-date" check (§5.4.1). This test passes
# only if the simulator reports a safety violation with a replayable seed.
set -u
bin="${FLT_BUILDDIR:-.}/tests/sim/sim_planted"
out=$("$bin" --seeds 500 2>&1)
rc=$?
printf '%s\n' "$out" | head -n 6
if [ "$rc" -eq 0 ]; then
	echo "planted_bug: the simulator did not notice the planted bug" >&2
	exit 1
fi
if ! printf '%s\n' "$out" | grep -Eq '^FAIL seed [0-9]+ .*(safety|completeness|matching|linearizability)'; then
	echo "planted_bug: the simulator failed, but not with a safety violation" >&2
	exit 1
fi
if ! printf '%s\n' "$out" | grep -q '^replay: tests/sim/sim_planted --seed [0-9]* --verbose'; then
	echo "planted_bug: no replay command printed" >&2
	exit 1
fi
seed=$(printf '%s\n' "$out" | sed -n 's/^FAIL seed \([0-9]*\) .*/\1/p' | head -n 1)
# the replay must fail the same way
if "$bin" --seed "$seed" >/dev/null 2>&1; then
	echo "planted_bug: seed $seed did not reproduce" >&2
	exit 1
fi
echo "planted_bug: caught, seed $seed reproduces"
exit 0
