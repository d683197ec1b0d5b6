#!/bin/bash
# The docker driver against a real, private dockerd (lib_docker.sh): runs the C test program
# tests/unit/test_docker_driver (cmocka, through the driver harness). A dockerd that cannot start
# fails the test with its reason; nothing is skipped.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/lib.sh"
. "$here/lib_docker.sh"
trap 'rc=$?; docker_cleanup; (exit $rc); t_cleanup' EXIT

prog=$FLT_BUILDDIR/tests/unit/test_docker_driver
[ -x "$prog" ] || fail "$prog is not built (make check builds it)"
[ -f "$FLT_BUILDDIR/drivers/docker.so" ] || fail "drivers/docker.so is not built"
docker_setup
# LOG_COMPILER-style wrapping (valgrind) is asked for with FLT_WRAP, as for the daemons.
$FLT_WRAP "$prog" || fail "test_docker_driver failed"
left=$(dk ps -aq --filter "name=^/${FLT_DOCKER_PREFIX}")
[ -z "$left" ] || fail "containers left behind: $left"
note "docker driver: ok"
