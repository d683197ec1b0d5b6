#!/bin/sh
# CI run of the Raft simulator: SIM_SEEDS seeds (default 2000) of SIM_ROUNDS chaos/calm rounds
# (default 4), split over two processes (the CI machine has two cores). Any failure prints its
# seed and the command that replays it.
set -u
bin="${FLT_BUILDDIR:-.}/tests/sim/sim"
seeds="${SIM_SEEDS:-2000}"
rounds="${SIM_ROUNDS:-4}"
half=$((seeds / 2))
out1=$(mktemp) out2=$(mktemp)
trap 'rm -f "$out1" "$out2"' EXIT
"$bin" --seeds "$half" --first 1 --rounds "$rounds" >"$out1" 2>&1 &
p1=$!
"$bin" --seeds "$((seeds - half))" --first "$((half + 1))" --rounds "$rounds" >"$out2" 2>&1 &
p2=$!
rc=0
wait "$p1" || rc=1
wait "$p2" || rc=1
cat "$out1" "$out2"
exit $rc
