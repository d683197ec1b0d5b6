#!/usr/bin/env bash
# The README's two commands:
#   contrib/quickstart.sh run     install deps, build, start a local node in the foreground
#   contrib/quickstart.sh check   install deps, build, run the whole test suite (also under
#                                 ASan+UBSan) and end with the line "N passed, N failed"
# Works from a fresh clone on Debian 12 as root.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
jobs=$(nproc 2>/dev/null || echo 2)

build() { # build DIR [configure flags...]
	local dir=$1
	shift
	[ -x configure ] && [ configure -nt configure.ac ] && [ Makefile.in -nt Makefile.am ] ||
		autoreconf -fi >/dev/null
	mkdir -p "$dir"
	(cd "$dir" && { [ -f Makefile ] || ../configure -q "$@"; } && make -s -j"$jobs" all)
}

# Runs `make check` in DIR and adds the counts of its summary to the totals.
passed=0
failed=0
suite() { # suite DIR LABEL [make args...]
	local dir=$1 label=$2 rc=0 p f out stamp
	shift 2
	echo "== $label"
	out=$(mktemp)
	stamp=$(mktemp) # older than every result this run writes
	(cd "$dir" && make -s -j"$jobs" check AM_COLOR_TESTS=no "$@") >"$out" 2>&1 || rc=$?
	grep -E '^(PASS|FAIL|ERROR|XPASS|SKIP):' "$out" || true
	p=$(sed -n 's/^# PASS: *//p' "$out" | tail -n 1)
	f=$(sed -n -E 's/^# (FAIL|ERROR|XPASS): *//p' "$out" | awk '{ s += $1 } END { print s + 0 }')
	p=${p:-0}
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		tail -n 40 "$out"
		f=1 # the harness itself failed (a build error, ...): count it
	fi
	# Show the log of every test that failed in this run (a suite sharing the directory with an
	# earlier one leaves that one's results behind: only files newer than $stamp are this run's).
	for trs in $(find "$dir"/tests -name '*.trs' -newer "$stamp" -exec grep -l -E '^:test-result: (FAIL|ERROR|XPASS)' {} + 2>/dev/null); do
		echo "---- $label: ${trs#"$dir"/} ----"
		tail -n 60 "${trs%.trs}.log"
	done
	rm -f "$out" "$stamp"
	echo "$label: $p passed, $f failed"
	passed=$((passed + p))
	failed=$((failed + f))
}

case "${1:-}" in
run)
	bash contrib/install-deps.sh
	build build
	data=${FLOTILLA_DATA_DIR:-$top/quickstart.data}
	cat <<MSG

flotilla is built. Starting one node (data in $data) on the etcd ports:
  client API  http://127.0.0.1:2379 and http://127.0.0.1:4001   (etcd v2 keys API)

Talk to it from another terminal:
  build/flotctl set /message Hello && build/flotctl get /message
  ETCDCTL_API=2 etcdctl --endpoints http://127.0.0.1:2379 ls --recursive /
  curl -s http://127.0.0.1:2379/v2/keys/message

Stop it with Ctrl-C.
MSG
	exec build/flotillad --name quickstart --data-dir "$data"
	;;
check)
	bash contrib/install-deps.sh
	build build
	suite build "tests"
	if [ "${FLT_SKIP_VALGRIND:-}" != 1 ]; then
		# The unit test programs, the driver tests (whose programs need a dockerd or a
		# systemd their scripts start), and the daemon through two client suites, under
		# valgrind: any leak or invalid access fails them.
		vg="valgrind -q --leak-check=full --errors-for-leak-kinds=definite,indirect --error-exitcode=99"
		units=$(cd tests/unit && ls test_*.c | grep -v 'test_docker_driver\|test_systemd_driver' |
			sed 's|^|tests/unit/|; s|\.c$||' | tr '\n' ' ')
		FLT_WRAP=$vg suite build "tests under valgrind" LOG_COMPILER="$vg" \
			TESTS="$units tests/integration/docker_driver.sh tests/integration/systemd_driver.sh
			tests/integration/etcd_fixtures.sh tests/integration/python_etcd_compat.sh"
	fi
	if [ "${FLT_SKIP_ASAN:-}" != 1 ]; then
		rc=0
		build build-asan --enable-sanitizers || rc=$?
		if [ "$rc" -eq 0 ]; then
			ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
				suite build-asan "tests under ASan+UBSan"
		else
			echo "ASan build failed"
			failed=$((failed + 1))
		fi
	fi
	if [ "${FLT_SKIP_DISTCHECK:-}" != 1 ]; then
		# The release tarball builds, installs (DESTDIR, --prefix), passes its own tests
		# out of tree and uninstalls cleanly. Counted as one check.
		echo "== make distcheck"
		if (cd build && make -s -j"$jobs" distcheck AM_COLOR_TESTS=no FLT_SHARED="$top/../shared") \
			>build/distcheck.out 2>&1; then
			passed=$((passed + 1))
			echo "distcheck: passed"
		else
			grep -E '^(FAIL|ERROR):' build/distcheck.out || tail -n 40 build/distcheck.out
			failed=$((failed + 1))
			echo "distcheck: failed"
		fi
	fi
	echo "$passed passed, $failed failed"
	[ "$failed" -eq 0 ]
	;;
*)
	echo "usage: $0 run|check" >&2
	exit 2
	;;
esac
