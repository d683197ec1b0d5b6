#!/bin/bash
# The systemd driver against a real systemd: a private `systemd --user` manager on a private D-Bus
# session bus, in a mount namespace where /run/systemd/system exists (the manager refuses to run
# unless the machine looks booted with systemd; see shared/notes/systemd.md). The cmocka program
# tests/unit/test_systemd_driver runs inside that namespace. Only the PIDs started here are stopped.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/lib.sh"

prog=$FLT_BUILDDIR/tests/unit/test_systemd_driver
[ -x "$prog" ] || fail "$prog is not built (make check builds it)"
[ -f "$FLT_BUILDDIR/drivers/systemd.so" ] || fail "drivers/systemd.so is not built"
[ -x /usr/lib/systemd/systemd ] || fail "/usr/lib/systemd/systemd is not installed"

sd_cleanup() {
	local p
	# the manager first (it stops the units it runs), then the bus
	for p in "$T_TMP/systemd.pid" "$T_TMP/dbus.pid"; do
		[ -s "$p" ] || continue
		kill -TERM "$(cat "$p")" 2>/dev/null || true
	done
}
trap 'rc=$?; sd_cleanup; (exit $rc); t_cleanup' EXIT

cat > "$T_TMP/inner.sh" <<'INNER'
set -u
T=$1 PROG=$2
mount -t tmpfs tmpfs /run/systemd || exit 1
mkdir -p /run/systemd/system
export XDG_RUNTIME_DIR=$T/xdg
mkdir -p -m 0700 "$XDG_RUNTIME_DIR"
dbus-daemon --session --address="unix:path=$XDG_RUNTIME_DIR/bus" --fork --print-pid \
	> "$T/dbus.pid" || exit 1
export DBUS_SESSION_BUS_ADDRESS=unix:path=$XDG_RUNTIME_DIR/bus
/usr/lib/systemd/systemd --user > "$T/systemd.log" 2>&1 &
echo $! > "$T/systemd.pid"
end=$((SECONDS + 20))
until [ "$(systemctl --user is-system-running 2>/dev/null)" = running ]; do
	if [ $SECONDS -ge $end ] || ! kill -0 "$(cat "$T/systemd.pid")" 2>/dev/null; then
		echo "FAIL: systemd --user did not come up:" >&2
		cat "$T/systemd.log" >&2
		exit 1
	fi
	sleep 0.05
done
# shellcheck disable=SC2086 # FLT_WRAP is a command line
${FLT_WRAP:-} "$PROG"
rc=$?
pid=$(cat "$T/systemd.pid")
kill -TERM "$pid"
wait "$pid" 2>/dev/null
kill -TERM "$(cat "$T/dbus.pid")" 2>/dev/null
exit $rc
INNER

FLT_WRAP=$FLT_WRAP unshare -m --propagation private bash "$T_TMP/inner.sh" "$T_TMP" "$prog" ||
	fail "test_systemd_driver failed"
note "systemd driver: ok"
