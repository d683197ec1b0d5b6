/* Tests of the systemd runtime driver through the driver test harness, against a real (private,
 * --user) systemd that tests/integration/systemd_driver.sh starts; this program runs inside its
 * mount namespace with DBUS_SESSION_BUS_ADDRESS and XDG_RUNTIME_DIR pointing at it. Every wait
 * has a deadline; nothing sleeps and hopes. */
#include <errno.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../drivers/harness.h"

#define WAIT_MS 15000

static const char *const drv_kv[] = {"systemd-bus", "user", NULL};

static struct hx *open_hx_in(const char *base)
{
	return HX_OPEN_IN(SYSTEMD_SO, drv_kv, base);
}

#define WAIT_STATE(hx, t, a, sub) HX_WAIT_STATE(hx, t, a, sub, WAIT_MS)

static bool unit_file_exists(const char *unit)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/systemd/user/%s", getenv("XDG_RUNTIME_DIR"), unit);
	return access(path, F_OK) == 0;
}

static bool ended(struct hx *hx, struct flt_task *t)
{
	const struct hx_status *s = hx_last_status(hx, t);

	return s && (s->active == FLT_INACTIVE || s->active == FLT_FAILED);
}

static void test_start_stop(void **state)
{
	struct hx *hx = open_hx_in(NULL);
	struct flt_task *t = hx_task(hx, "flt-sleep.service",
	                             "[Unit]\nDescription=sleeper\n[Service]\n"
	                             "ExecStart=/bin/sleep 1000\n[X-Fleet]\nConflicts=x\n");
	const struct hx_status *s;

	(void)state;
	assert_int_equal(hx_start(hx, t), 0);
	assert_true(unit_file_exists("flt-sleep.service"));
	WAIT_STATE(hx, t, FLT_ACTIVE, "running");
	s = hx_last_status(hx, t);
	assert_true(s->main_pid > 0);
	assert_int_equal(kill((pid_t)s->main_pid, 0), 0);
	assert_string_equal(hx_handle(hx, t), "flt-sleep.service");

	assert_int_equal(hx_stop(hx, t, 10000), 0);
	WAIT_STATE(hx, t, FLT_INACTIVE, "dead");
	assert_string_equal(hx_last_status(hx, t)->result, "success");
	assert_false(unit_file_exists("flt-sleep.service"));
	print_message("states: %s\n", hx_trace(hx, t));
	hx_close(hx);
}

static void test_exec_fails(void **state)
{
	struct hx *hx = open_hx_in(NULL);
	struct flt_task *t =
	    hx_task(hx, "flt-bad.service", "[Service]\nExecStart=/nonexistent/bin/daemon --flag\n");
	struct flt_task *t3 =
	    hx_task(hx, "flt-exit3.service", "[Service]\nExecStart=/bin/sh -c 'exit 3'\n");
	const struct hx_status *s;

	(void)state;
	assert_int_equal(hx_start(hx, t), 0);
	assert_int_equal(hx_start(hx, t3), 0);
	WAIT_STATE(hx, t, FLT_FAILED, "failed");
	WAIT_STATE(hx, t3, FLT_FAILED, "failed");
	s = hx_last_status(hx, t3);
	assert_int_equal(s->exit_code, 3);
	assert_string_equal(s->result, "exit-code");
	assert_int_equal(hx_stop(hx, t, 5000), 0);
	assert_int_equal(hx_stop(hx, t3, 5000), 0);
	if (!hx_wait(hx, t, FLT_FAILED, NULL, WAIT_MS) && !ended(hx, t))
		fail_msg("no end after stop: %s", hx_trace(hx, t));
	if (!hx_wait(hx, t3, FLT_FAILED, NULL, WAIT_MS) && !ended(hx, t3))
		fail_msg("no end after stop: %s", hx_trace(hx, t3));
	print_message("states: %s; exit %d\n", hx_trace(hx, t), hx_last_status(hx, t)->exit_code);
	hx_close(hx);
}

static void test_oneshot_remain(void **state)
{
	struct hx *hx = open_hx_in(NULL);
	struct flt_task *t = hx_task(hx, "flt-once.service",
	                             "[Service]\nType=oneshot\nRemainAfterExit=yes\n"
	                             "ExecStart=/bin/true\n");

	(void)state;
	assert_int_equal(hx_start(hx, t), 0);
	WAIT_STATE(hx, t, FLT_ACTIVE, "exited");
	assert_int_equal(hx_stop(hx, t, 5000), 0);
	WAIT_STATE(hx, t, FLT_INACTIVE, "dead");
	hx_close(hx);
}

/* The daemon restarts: release, then a new driver adopts the unit by its name. */
static void test_release_adopt(void **state)
{
	char base[] = "/tmp/flt-sd-state-XXXXXX";
	const char *unit = "[Service]\nExecStart=/bin/sleep 1000\n";
	struct hx *hx;
	struct flt_task *t;
	int64_t pid;
	char cmd[128];

	(void)state;
	assert_non_null(mkdtemp(base));
	hx = open_hx_in(base);
	t = hx_task(hx, "flt-adopt.service", unit);
	assert_int_equal(hx_start(hx, t), 0);
	WAIT_STATE(hx, t, FLT_ACTIVE, "running");
	pid = hx_last_status(hx, t)->main_pid;
	hx_release(hx, t);
	hx_close(hx);

	hx = open_hx_in(base);
	t = hx_task(hx, "flt-adopt.service", unit);
	assert_int_equal(hx_adopt(hx, t, "flt-adopt.service"), 0);
	WAIT_STATE(hx, t, FLT_ACTIVE, "running");
	assert_int_equal(hx_last_status(hx, t)->main_pid, pid);
	assert_int_equal(hx_stop(hx, t, 10000), 0);
	WAIT_STATE(hx, t, FLT_INACTIVE, "dead");
	assert_false(unit_file_exists("flt-adopt.service"));

	/* a unit the manager does not know */
	t = hx_task(hx, "flt-never.service", unit);
	assert_int_equal(hx_adopt(hx, t, "flt-never.service"), 0);
	WAIT_STATE(hx, t, FLT_INACTIVE, "dead");
	assert_non_null(hx_last_status(hx, t)->message);
	hx_close(hx);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
	assert_int_equal(system(cmd), 0);
}

/* A unit that ignores SIGTERM is killed when stop() runs out of time, long before its own
 * TimeoutStopSec. */
static void test_stop_timeout(void **state)
{
	struct hx *hx = open_hx_in(NULL);
	struct flt_task *t =
	    hx_task(hx, "flt-stubborn.service",
	            "[Service]\nTimeoutStopSec=120\n"
	            "ExecStart=/bin/sh -c \"trap '' TERM; while :; do sleep 1; done\"\n");

	(void)state;
	assert_int_equal(hx_start(hx, t), 0);
	WAIT_STATE(hx, t, FLT_ACTIVE, "running");
	assert_int_equal(hx_stop(hx, t, 500), 0);
	WAIT_STATE(hx, t, FLT_DEACTIVATING, NULL);
	if (!hx_wait(hx, t, FLT_INACTIVE, NULL, WAIT_MS) && !ended(hx, t))
		fail_msg("not killed: %s", hx_trace(hx, t));
	hx_close(hx);
}

static void test_bad_config(void **state)
{
	static const char *const kv[] = {"systemd-bus", "session", NULL};

	(void)state;
	assert_null(hx_open(SYSTEMD_SO, kv));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_start_stop),     cmocka_unit_test(test_exec_fails),
	    cmocka_unit_test(test_oneshot_remain), cmocka_unit_test(test_release_adopt),
	    cmocka_unit_test(test_stop_timeout),   cmocka_unit_test(test_bad_config),
	};

	if (!getenv("DBUS_SESSION_BUS_ADDRESS") || !getenv("XDG_RUNTIME_DIR")) {
		fprintf(stderr, "run me through tests/integration/systemd_driver.sh\n");
		return 1;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
