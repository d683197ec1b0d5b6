/* Tests of the rkt runtime driver through the driver test harness: the built drivers/rkt.so runs
 * tests/rkt-standin (rkt's CLI contract, since rkt itself is archived and not packaged) with its
 * pods in a private --dir. Every wait has a deadline; nothing sleeps and hopes. */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../drivers/harness.h"

#define WAIT_MS 10000

static char pod_base[] = "/tmp/flt-rkt-test-XXXXXX";
static const char *drv_kv[] = {"rkt-path",    RKT_STANDIN, "rkt-dir", pod_base,
                               "rkt-poll-ms", "100",       NULL};

static struct hx *open_hx(void)
{
	return HX_OPEN_IN(RKT_SO, drv_kv, NULL);
}

#define WAIT_STATE(hx, t, a, sub) HX_WAIT_STATE(hx, t, a, sub, WAIT_MS)

static bool no_pods(void *ctx)
{
	char path[512];
	DIR *dir;
	struct dirent *e;
	bool empty = true;

	(void)ctx;
	snprintf(path, sizeof(path), "%s/pods", pod_base);
	dir = opendir(path);
	if (!dir)
		return true;
	while ((e = readdir(dir)))
		if (e->d_name[0] != '.')
			empty = false;
	closedir(dir);
	return empty;
}

static bool pod_exists(const char *uuid)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/pods/%s", pod_base, uuid);
	return access(path, F_OK) == 0;
}

static void test_run_stop(void **state)
{
	struct hx *hx = open_hx();
	struct flt_task *t = hx_task(hx, "web.service",
	                             "[Service]\nExecStart=/bin/false\n[X-Flotilla]\n"
	                             "Image=docker://busybox\n"
	                             "Command=/bin/sh -c \"echo hello from pod; exec sleep 30\"\n"
	                             "Net=host\nInsecureOptions=image\n");
	const struct hx_status *st;
	const char *uuid;

	(void)state;
	assert_int_equal(hx_start(hx, t), 0);
	WAIT_STATE(hx, t, FLT_ACTIVATING, "start");
	WAIT_STATE(hx, t, FLT_ACTIVE, "running");
	uuid = hx_handle(hx, t);
	assert_non_null(uuid);
	assert_int_equal(strlen(uuid), 36);
	assert_true(pod_exists(uuid));
	st = hx_last_status(hx, t);
	assert_true(st->main_pid > 0);
	if (!hx_wait_output(hx, t, "hello from pod", WAIT_MS))
		fail_msg("no output: '%s'", hx_output(hx, t));
	assert_non_null(hx_last_ident(hx, t));
	assert_memory_equal(hx_last_ident(hx, t), "rkt[", 4);

	assert_int_equal(hx_stop(hx, t, 10000), 0);
	WAIT_STATE(hx, t, FLT_DEACTIVATING, "stop");
	WAIT_STATE(hx, t, FLT_INACTIVE, "dead");
	assert_string_equal(hx_last_status(hx, t)->result, "success");
	/* the exited pod is garbage-collected with `rkt rm` */
	assert_true(hx_wait_for(hx, no_pods, NULL, WAIT_MS));
	assert_true(hx_n_process(hx, t) >= 1);
	assert_string_equal(hx_process_at(hx, t, 0)->kind, "ExecStart");
	hx_close(hx);
}

static void test_exit_codes(void **state)
{
	struct hx *hx = open_hx();
	struct flt_task *ok =
	    hx_task(hx, "ok.service", "[X-Flotilla]\nImage=example.com/app:1\nCommand=/bin/true\n");
	struct flt_task *bad = hx_task(hx, "bad.service",
	                               "[X-Flotilla]\nImage=example.com/app\n"
	                               "Command=/bin/sh -c 'echo failing; exit 3'\n");
	const struct hx_status *st;

	(void)state;
	assert_int_equal(hx_start(hx, ok), 0);
	assert_int_equal(hx_start(hx, bad), 0);
	WAIT_STATE(hx, ok, FLT_INACTIVE, "dead");
	WAIT_STATE(hx, bad, FLT_FAILED, "failed");
	st = hx_last_status(hx, bad);
	assert_int_equal(st->exit_code, 3);
	assert_string_equal(st->result, "exit-code");
	assert_non_null(strstr(hx_output(hx, bad), "failing"));
	assert_true(hx_wait_for(hx, no_pods, NULL, WAIT_MS));
	hx_close(hx);
}

static void test_fetch_fails(void **state)
{
	struct hx *hx = open_hx();
	struct flt_task *t =
	    hx_task(hx, "nf.service", "[X-Flotilla]\nImage=docker://notfound/image\n");

	(void)state;
	assert_int_equal(hx_start(hx, t), 0);
	WAIT_STATE(hx, t, FLT_FAILED, "failed");
	assert_int_equal(hx_last_status(hx, t)->exit_code, 254);
	assert_non_null(strstr(hx_output(hx, t), "error fetching image"));
	hx_close(hx);
}

static void test_missing_rkt(void **state)
{
	static const char *const kv[] = {"rkt-path", "/nonexistent/bin/rkt", NULL};
	struct hx *hx = hx_open(RKT_SO, kv);
	struct flt_task *t;
	const struct hx_status *st;

	(void)state;
	assert_non_null(hx);
	t = hx_task(hx, "m.service", "[X-Flotilla]\nImage=docker://busybox\n");
	assert_int_equal(hx_start(hx, t), 0);
	WAIT_STATE(hx, t, FLT_FAILED, "failed");
	st = hx_last_status(hx, t);
	assert_non_null(st->message);
	assert_string_equal(st->message,
	                    "cannot execute '/nonexistent/bin/rkt': No such file or directory");
	assert_string_equal(st->result, "resources");
	hx_close(hx);
}

static void test_no_image(void **state)
{
	struct hx *hx = open_hx();
	struct flt_task *t = hx_task(hx, "x.service", "[Service]\nExecStart=/bin/true\n");

	(void)state;
	assert_int_equal(hx_start(hx, t), -EINVAL);
	assert_int_equal(hx_n_status(hx, t), 0);
	hx_close(hx);
}

/* SIGTERM ignored: after the timeout the whole pod's process group is killed. */
static void test_stop_timeout(void **state)
{
	struct hx *hx = open_hx();
	struct flt_task *t = hx_task(hx, "stubborn.service",
	                             "[X-Flotilla]\nImage=docker://busybox\n"
	                             "Command=/bin/sh -c \"trap '' TERM; echo ready; "
	                             "while :; do sleep 1; done\"\n");

	(void)state;
	assert_int_equal(hx_start(hx, t), 0);
	WAIT_STATE(hx, t, FLT_ACTIVE, "running");
	assert_true(hx_wait_output(hx, t, "ready", WAIT_MS));
	assert_int_equal(hx_stop(hx, t, 300), 0);
	WAIT_STATE(hx, t, FLT_DEACTIVATING, "stop-sigkill");
	WAIT_STATE(hx, t, FLT_INACTIVE, "dead");
	hx_close(hx);
}

/* The daemon goes away (release) and a new one adopts the pod by its uuid. */
static void test_release_adopt(void **state)
{
	char base[] = "/tmp/flt-rkt-state-XXXXXX";
	struct hx *hx1, *hx2;
	struct flt_task *t1, *t2;
	char *uuid, unit[512], trigger[64];
	int64_t pid;
	FILE *f;

	(void)state;
	assert_non_null(mkdtemp(base));
	snprintf(trigger, sizeof(trigger), "%s/trigger", base);
	/* the app speaks only once the new daemon listens: its output must reach the adopter */
	snprintf(unit, sizeof(unit),
	         "[X-Flotilla]\nImage=docker://busybox\nCommand=/bin/sh -c \"echo before; "
	         "while [ ! -e %s ]; do sleep 0.05; done; echo after-adopt; exec sleep 30\"\n",
	         trigger);
	hx1 = hx_open_in(RKT_SO, drv_kv, base);
	assert_non_null(hx1);
	t1 = hx_task(hx1, "a.service", unit);
	assert_int_equal(hx_start(hx1, t1), 0);
	WAIT_STATE(hx1, t1, FLT_ACTIVE, "running");
	assert_true(hx_wait_output(hx1, t1, "before", WAIT_MS));
	uuid = strdup(hx_handle(hx1, t1));
	pid = hx_last_status(hx1, t1)->main_pid;
	hx_release(hx1, t1);
	hx_close(hx1);

	hx2 = hx_open_in(RKT_SO, drv_kv, base);
	assert_non_null(hx2);
	t2 = hx_task(hx2, "a.service", unit);
	assert_int_equal(hx_adopt(hx2, t2, uuid), 0);
	WAIT_STATE(hx2, t2, FLT_ACTIVE, "running");
	assert_int_equal(hx_last_status(hx2, t2)->main_pid, pid);
	assert_string_equal(hx_handle(hx2, t2), uuid);
	f = fopen(trigger, "w");
	assert_non_null(f);
	fclose(f);
	if (!hx_wait_output(hx2, t2, "after-adopt", WAIT_MS))
		fail_msg("no output after adopt: '%s'", hx_output(hx2, t2));
	assert_null(strstr(hx_output(hx2, t2), "before"));
	assert_int_equal(hx_stop(hx2, t2, 10000), 0);
	WAIT_STATE(hx2, t2, FLT_INACTIVE, "dead");
	assert_true(hx_wait_for(hx2, no_pods, NULL, WAIT_MS));
	hx_close(hx2);

	/* a pod that is gone: nothing runs, the host may start the unit anew */
	hx2 = hx_open_in(RKT_SO, drv_kv, base);
	t2 = hx_task(hx2, "a.service", unit);
	assert_int_equal(hx_adopt(hx2, t2, uuid), 0);
	WAIT_STATE(hx2, t2, FLT_INACTIVE, "dead");
	assert_non_null(hx_last_status(hx2, t2)->message);
	assert_non_null(strstr(hx_last_status(hx2, t2)->message, "not found"));
	hx_close(hx2);
	free(uuid);
	{
		char cmd[128];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
		assert_int_equal(system(cmd), 0);
	}
}

/* A pod that exits while nobody watches is reported with its app's exit status. */
static void test_adopt_exited(void **state)
{
	char base[] = "/tmp/flt-rkt-state-XXXXXX";
	struct hx *hx;
	struct flt_task *t;
	char *uuid;
	const char *unit = "[X-Flotilla]\nImage=docker://busybox\n"
	                   "Command=/bin/sh -c 'sleep 1; exit 7'\n";

	(void)state;
	assert_non_null(mkdtemp(base));
	hx = hx_open_in(RKT_SO, drv_kv, base);
	t = hx_task(hx, "b.service", unit);
	assert_int_equal(hx_start(hx, t), 0);
	WAIT_STATE(hx, t, FLT_ACTIVE, "running");
	uuid = strdup(hx_handle(hx, t));
	hx_release(hx, t);
	hx_close(hx);

	hx = hx_open_in(RKT_SO, drv_kv, base);
	t = hx_task(hx, "b.service", unit);
	assert_int_equal(hx_adopt(hx, t, uuid), 0);
	WAIT_STATE(hx, t, FLT_FAILED, "failed");
	assert_int_equal(hx_last_status(hx, t)->exit_code, 7);
	assert_true(hx_wait_for(hx, no_pods, NULL, WAIT_MS));
	hx_close(hx);
	free(uuid);
	{
		char cmd[128];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
		assert_int_equal(system(cmd), 0);
	}
}

static int setup(void **state)
{
	(void)state;
	return mkdtemp(pod_base) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", pod_base);
	return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_run_stop),      cmocka_unit_test(test_exit_codes),
	    cmocka_unit_test(test_fetch_fails),   cmocka_unit_test(test_missing_rkt),
	    cmocka_unit_test(test_no_image),      cmocka_unit_test(test_stop_timeout),
	    cmocka_unit_test(test_release_adopt), cmocka_unit_test(test_adopt_exited),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
