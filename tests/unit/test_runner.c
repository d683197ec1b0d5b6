/* Tests of the agent's local side: the driver loader (refusals), the runner's systemd semantics
 * (Restart=, RestartSec=, start limit, dependencies, runtime and start failures, adoption, strays,
 * stop timeouts) and the journals, all driven through tests/drivers/fake_driver.c whose behaviour
 * each unit's [X-Fake] section steers. Conditions are polled on the loop with deadlines. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <regex.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/journal.h"
#include "agent/runner.h"
#include "driver/host.h"
#include "flotilla/driver.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/util.h"

#ifndef FAKE_DRV_DIR
#error FAKE_DRV_DIR must name the directory of the built fake drivers
#endif

#define MAX_SEEN 64

struct seen {
	char unit[128];
	char active[32], sub[32], result[64], message[256];
	unsigned restarts;
	int exit_code;
	bool gone;
	unsigned reports;
	bool saw_auto_restart;
	int64_t t_auto_restart, t_start; /* monotonic ns of the last entries into those states */
};

struct fx {
	struct ev_loop *loop;
	char root[64];
	char state_dir[128], drv_dir[128], fake_dir[128];
	const char *keys[4], *values[4];
	struct flt_drv_config cfg;
	struct runner_config rc;
	struct runner *r;
	struct seen seen[MAX_SEEN];
	size_t n_seen;
};

static struct seen *seen_get(struct fx *f, const char *unit)
{
	for (size_t i = 0; i < f->n_seen; i++)
		if (!strcmp(f->seen[i].unit, unit))
			return &f->seen[i];
	assert_true(f->n_seen < MAX_SEEN);
	memset(&f->seen[f->n_seen], 0, sizeof(f->seen[0]));
	snprintf(f->seen[f->n_seen].unit, sizeof(f->seen[0].unit), "%s", unit);
	return &f->seen[f->n_seen++];
}

static void on_state(void *ud, const char *unit, const struct runner_state *st)
{
	struct fx *f = ud;
	struct seen *s = seen_get(f, unit);

	s->reports++;
	if (!st) {
		s->gone = true;
		return;
	}
	s->gone = false;
	if (!strcmp(st->sub_state, "auto-restart") && strcmp(s->sub, "auto-restart")) {
		s->saw_auto_restart = true;
		s->t_auto_restart = flt_monotime_ns();
	}
	if (!strcmp(st->active_state, "activating") && !strcmp(st->sub_state, "start") &&
	    strcmp(s->sub, "start"))
		s->t_start = flt_monotime_ns();
	snprintf(s->active, sizeof(s->active), "%s", st->active_state);
	snprintf(s->sub, sizeof(s->sub), "%s", st->sub_state);
	snprintf(s->result, sizeof(s->result), "%s", st->result);
	snprintf(s->message, sizeof(s->message), "%s", st->message ? st->message : "");
	s->restarts = st->restarts;
	s->exit_code = st->exit_code;
}

static void link_driver(struct fx *f, const char *file)
{
	char from[512], to[512];

	snprintf(from, sizeof(from), "%s/%s", FAKE_DRV_DIR, file);
	snprintf(to, sizeof(to), "%s/%s", f->drv_dir, file);
	assert_int_equal(symlink(from, to), 0);
}

static void fx_start(struct fx *f)
{
	struct runner_cb cb = {on_state, f};

	assert_int_equal(runner_new(f->loop, &f->rc, &cb, &f->r), 0);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	snprintf(f->root, sizeof(f->root), "/tmp/flt-runner-XXXXXX");
	assert_non_null(mkdtemp(f->root));
	snprintf(f->state_dir, sizeof(f->state_dir), "%s/state", f->root);
	snprintf(f->drv_dir, sizeof(f->drv_dir), "%s/drivers", f->root);
	snprintf(f->fake_dir, sizeof(f->fake_dir), "%s/fake", f->root);
	assert_int_equal(mkdir(f->drv_dir, 0755), 0);
	assert_int_equal(mkdir(f->fake_dir, 0755), 0);
	link_driver(f, "fake.so");
	f->keys[0] = "fake-dir";
	f->values[0] = f->fake_dir;
	f->cfg.keys = f->keys;
	f->cfg.values = f->values;
	f->cfg.n = 1;
	f->rc.state_dir = f->state_dir;
	f->rc.driver_dir = f->drv_dir;
	f->rc.default_runtime = "fake";
	f->rc.machine_id = "0123456789abcdef0123456789abcdef";
	f->rc.hostname = "host1";
	f->rc.drv_cfg = &f->cfg;
	f->loop = ev_loop_new(EVFLAG_AUTO);
	assert_non_null(f->loop);
	*state = f;
	return 0;
}

static void rm_rf(const char *path)
{
	struct stat st;
	DIR *d;
	struct dirent *de;

	if (lstat(path, &st) < 0)
		return;
	if (!S_ISDIR(st.st_mode)) {
		unlink(path);
		return;
	}
	d = opendir(path);
	while (d && (de = readdir(d))) {
		char sub[1024];

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name);
		rm_rf(sub);
	}
	if (d)
		closedir(d);
	rmdir(path);
}

static int teardown(void **state)
{
	struct fx *f = *state;

	runner_free(f->r);
	ev_loop_destroy(f->loop);
	rm_rf(f->root);
	free(f);
	return 0;
}

static void wake_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
}

/* Run the loop until cond(f, arg) holds or `ms` pass. Returns whether it held. */
static bool run_until(struct fx *f, bool (*cond)(struct fx *, const void *), const void *arg,
                      int ms)
{
	int64_t deadline = flt_monotime_ns() + (int64_t)ms * 1000000;
	ev_timer wake;
	bool ok;

	ev_timer_init(&wake, wake_cb, 0.005, 0.005);
	ev_timer_start(f->loop, &wake);
	while (!(ok = cond(f, arg)) && flt_monotime_ns() < deadline)
		ev_run(f->loop, EVRUN_ONCE);
	ev_timer_stop(f->loop, &wake);
	return ok;
}

static bool never(struct fx *f, const void *arg)
{
	return false;
}

static void run_for(struct fx *f, int ms)
{
	run_until(f, never, NULL, ms);
}

struct want {
	const char *unit, *active, *sub;
};

static bool state_is(struct fx *f, const void *arg)
{
	const struct want *w = arg;
	struct seen *s = seen_get(f, w->unit);

	return !strcmp(s->active, w->active) && (!w->sub || !strcmp(s->sub, w->sub));
}

static void wait_state(struct fx *f, const char *unit, const char *active, const char *sub)
{
	struct want w = {unit, active, sub};

	if (!run_until(f, state_is, &w, 3000))
		fail_msg("'%s' is %s/%s, wanted %s/%s", unit, seen_get(f, unit)->active,
		         seen_get(f, unit)->sub, active, sub ? sub : "*");
}

/* Lines of fake-dir/<file> equal to (or starting with, when prefix) `s`. */
static unsigned count_lines(struct fx *f, const char *file, const char *s, bool prefix)
{
	char path[512], line[1024];
	unsigned n = 0;
	FILE *fp;

	snprintf(path, sizeof(path), "%s/%s", f->fake_dir, file);
	fp = fopen(path, "r");
	if (!fp)
		return 0;
	while (fgets(line, sizeof(line), fp)) {
		line[strcspn(line, "\n")] = '\0';
		if (prefix ? !strncmp(line, s, strlen(s)) : !strcmp(line, s))
			n++;
	}
	fclose(fp);
	return n;
}

static unsigned starts(struct fx *f, const char *unit)
{
	return count_lines(f, "starts.log", unit, false);
}

struct count_want {
	const char *unit;
	unsigned n;
};

static bool starts_reach(struct fx *f, const void *arg)
{
	const struct count_want *w = arg;

	return starts(f, w->unit) >= w->n;
}

static void set(struct fx *f, const char *unit, const char *text, enum runner_target t)
{
	char hash[41];
	unsigned long h = 5381;

	for (const char *p = text ? text : ""; *p; p++)
		h = h * 33 + (unsigned char)*p;
	snprintf(hash, sizeof(hash), "%040lx", h);
	assert_int_equal(runner_set(f->r, unit, text, hash, t), 0);
}

static bool journal_has(struct fx *f, const char *unit, const char *needle)
{
	struct buf b = BUF_INIT;
	bool has;

	assert_int_equal(runner_journal(f->r, unit, 1000, &b), 0);
	has = b.data && strstr(b.data, needle);
	buf_release(&b);
	return has;
}

/* ---------------------------------------------------------------- loader */

static void test_loader_refusals(void **state)
{
	struct fx *f = *state;
	struct drv_host *h;
	struct buf list = BUF_INIT;
	char want[1024], dup[512];
	bool found_abi = false, found_small = false, found_sym = false, found_dup = false;

	link_driver(f, "fake_abi2.so");
	link_driver(f, "fake_small.so");
	link_driver(f, "fake_nosym.so");
	/* A second file with the same driver name, sorted after fake.so. */
	snprintf(dup, sizeof(dup), "%s/zz_copy.so", f->drv_dir);
	assert_int_equal(symlink(FAKE_DRV_DIR "/fake.so", dup), 0);

	assert_int_equal(drv_host_load(f->drv_dir, &h), 0);
	assert_int_equal(drv_host_count(h), 1);
	assert_string_equal(drv_host_get(h, 0)->name, "fake");
	assert_int_equal(drv_host_refused_count(h), 4);
	snprintf(want, sizeof(want),
	         "driver 'fake_abi2' (%s/fake_abi2.so) is not binary compatible: ABI 2.0, "
	         "flotillad needs 1.x",
	         f->drv_dir);
	for (size_t i = 0; i < drv_host_refused_count(h); i++) {
		const char *m = drv_host_refusal(h, i);

		found_abi |= !strcmp(m, want);
		found_small |= strstr(m, "driver 'fake_small'") && strstr(m, "ops table of");
		found_sym |= strstr(m, "fake_nosym") && strstr(m, "no symbol flt_driver_entry");
		found_dup |=
		    strstr(m, "driver 'fake'") && strstr(m, "zz_copy.so") && strstr(m, "duplicate");
	}
	assert_true(found_abi);
	assert_true(found_small);
	assert_true(found_sym);
	assert_true(found_dup);
	drv_host_free(h);

	assert_int_equal(drv_host_list(f->drv_dir, &list), 0);
	{
		char abi[32];

		snprintf(abi, sizeof(abi), "fake\tABI %d.%d\t", FLT_DRV_ABI_MAJOR,
			 FLT_DRV_ABI_MINOR);
		assert_non_null(strstr(list.data, abi));
	}
	assert_non_null(strstr(list.data, "refused\tdriver 'fake_abi2'"));
	buf_release(&list);

	/* A missing directory is an empty host, not an error. */
	assert_int_equal(drv_host_load("/nonexistent/flt-drivers", &h), 0);
	assert_int_equal(drv_host_count(h), 0);
	drv_host_free(h);
}

static void test_runtimes_and_open_failure(void **state)
{
	struct fx *f = *state;
	const char *const *rt;
	size_t n;

	link_driver(f, "fake_docker.so");
	f->keys[1] = "fake-fail-open";
	f->values[1] = "docker";
	f->cfg.n = 2;
	fx_start(f);
	n = runner_runtimes(f->r, &rt);
	assert_int_equal(n, 1);
	assert_string_equal(rt[0], "fake");
	/* Requires=docker.service waits while docker is not available. */
	set(f, "d.service", "[Unit]\nRequires=docker.service\n[Service]\nExecStart=/bin/x\n",
	    RUNNER_LAUNCHED);
	run_for(f, 50);
	assert_int_equal(starts(f, "d.service"), 0);
	/* An explicit runtime that did not open fails with a reason. */
	set(f, "r.service", "[Service]\nExecStart=/bin/x\n[X-Flotilla]\nRuntime=docker\n",
	    RUNNER_LAUNCHED);
	wait_state(f, "r.service", "failed", "failed");
	assert_string_equal(seen_get(f, "r.service")->message,
	                    "runtime 'docker' is not available on this machine");
}

static void test_docker_requirement_met(void **state)
{
	struct fx *f = *state;
	struct count_want w = {"d.service", 1};
	const char *const *rt;

	link_driver(f, "fake_docker.so");
	fx_start(f);
	assert_int_equal(runner_runtimes(f->r, &rt), 2);
	set(f, "d.service", "[Unit]\nRequires=docker.service\n[Service]\nExecStart=/bin/x\n",
	    RUNNER_LAUNCHED);
	assert_true(run_until(f, starts_reach, &w, 1000));
	wait_state(f, "d.service", "active", "running");
}

/* ---------------------------------------------------------------- Restart= */

struct restart_case {
	const char *mode;
	int code, sig;
	bool restarts;
};

static void test_restart_modes(void **state)
{
	static const struct restart_case cases[] = {
	    {NULL, 1, 0, false},           {"no", 1, 0, false},
	    {"on-success", 0, 0, true},    {"on-success", 1, 0, false},
	    {"on-success", 0, 15, true},   {"on-failure", 1, 0, true},
	    {"on-failure", 0, 0, false},   {"on-failure", 0, 9, true},
	    {"on-abnormal", 1, 0, false},  {"on-abnormal", 0, 9, true},
	    {"on-abnormal", 0, 15, false}, {"on-abort", 0, 6, true},
	    {"on-abort", 2, 0, false},     {"always", 0, 0, true},
	    {"always", 3, 0, true},        {"always", 0, 9, true},
	};
	struct fx *f = *state;

	fx_start(f);
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		const struct restart_case *c = &cases[i];
		char unit[64], text[512];
		struct count_want w = {unit, 2};

		snprintf(unit, sizeof(unit), "r%zu.service", i);
		snprintf(text, sizeof(text),
		         "[Service]\nExecStart=/bin/x\n%s%s%sRestartSec=10ms\n[X-Fake]\n"
		         "ExitAfterMs=5\nExitCode=%d\nExitSignal=%d\n",
		         c->mode ? "Restart=" : "", c->mode ? c->mode : "", c->mode ? "\n" : "",
		         c->code, c->sig);
		set(f, unit, text, RUNNER_LAUNCHED);
		if (c->restarts) {
			if (!run_until(f, starts_reach, &w, 2000))
				fail_msg("case %zu (Restart=%s code %d sig %d) did not restart", i,
				         c->mode, c->code, c->sig);
			assert_true(seen_get(f, unit)->saw_auto_restart);
		} else {
			bool clean = c->code == 0 && (c->sig == 0 || c->sig == 15);

			wait_state(f, unit, clean ? "inactive" : "failed",
			           clean ? "dead" : "failed");
			run_for(f, 40);
			if (starts(f, unit) != 1)
				fail_msg("case %zu (Restart=%s code %d sig %d) restarted", i,
				         c->mode, c->code, c->sig);
		}
		set(f, unit, text, RUNNER_GONE);
	}
}

static void test_restart_sec_and_start_limit(void **state)
{
	struct fx *f = *state;
	struct seen *s;
	int64_t gap;

	fx_start(f);
	set(f, "crash.service",
	    "[Unit]\nStartLimitBurst=3\nStartLimitIntervalSec=10s\n[Service]\nExecStart=/bin/x\n"
	    "Restart=on-failure\nRestartSec=200ms\n[X-Fake]\nExitAfterMs=10\nExitCode=1\n",
	    RUNNER_LAUNCHED);
	wait_state(f, "crash.service", "activating", "auto-restart");
	s = seen_get(f, "crash.service");
	{
		int64_t t0 = s->t_auto_restart;
		struct count_want w = {"crash.service", 2};

		assert_true(run_until(f, starts_reach, &w, 2000));
		gap = s->t_start - t0;
	}
	/* RestartSec=200ms between the end and the next start. */
	assert_true(gap >= 180 * 1000000LL);
	assert_true(gap < 1000 * 1000000LL);
	wait_state(f, "crash.service", "failed", "failed");
	assert_string_equal(s->result, "start-limit-hit");
	assert_int_equal(starts(f, "crash.service"), 3);
	assert_int_equal(s->restarts, 3);
	assert_true(
	    journal_has(f, "crash.service", "crash.service start request repeated too quickly"));
	assert_true(
	    journal_has(f, "crash.service",
	                "crash.service: main process exited, code=exited, status=1/FAILURE"));
	assert_true(journal_has(f, "crash.service", "crash.service holdoff time over"));
	/* Setting it again (a new launch) resets the limit... only with a new target/text. Same
	 * settings are a no-op: */
	run_for(f, 50);
	assert_int_equal(starts(f, "crash.service"), 3);
}

/* ---------------------------------------------------------------- dependencies */

static void test_requires_after_and_propagation(void **state)
{
	struct fx *f = *state;
	const char *a = "[Unit]\nDescription=Service A\n[Service]\nExecStart=/bin/a\n";
	const char *b =
	    "[Unit]\nRequires=a.service\nAfter=a.service\n[Service]\nExecStart=/bin/b\n";
	struct count_want w = {"b.service", 1};
	char path[512], line[128], order[2][128];
	FILE *fp;
	int n = 0;

	fx_start(f);
	set(f, "a.service", a, RUNNER_LOADED);
	set(f, "b.service", b, RUNNER_LAUNCHED);
	run_for(f, 50);
	assert_int_equal(starts(f, "b.service"), 0); /* waits for a */
	assert_string_equal(seen_get(f, "b.service")->active, "inactive");
	set(f, "a.service", a, RUNNER_LAUNCHED);
	assert_true(run_until(f, starts_reach, &w, 1000));
	wait_state(f, "b.service", "active", "running");
	snprintf(path, sizeof(path), "%s/starts.log", f->fake_dir);
	fp = fopen(path, "r");
	assert_non_null(fp);
	while (n < 2 && fgets(line, sizeof(line), fp))
		snprintf(order[n++], sizeof(order[0]), "%s", line);
	fclose(fp);
	assert_string_equal(order[0], "a.service\n");
	assert_string_equal(order[1], "b.service\n");
	assert_true(journal_has(f, "a.service", "systemd[1]: Started Service A."));

	/* a stops: b (Requires=a) goes down with it, and comes back with it. */
	set(f, "a.service", a, RUNNER_LOADED);
	wait_state(f, "a.service", "inactive", "dead");
	wait_state(f, "b.service", "inactive", "dead");
	assert_int_equal(count_lines(f, "stops.log", "b.service ", true), 1);
	set(f, "a.service", a, RUNNER_LAUNCHED);
	w.n = 2;
	assert_true(run_until(f, starts_reach, &w, 1000));
	wait_state(f, "b.service", "active", "running");
}

static void test_bindsto_exit(void **state)
{
	struct fx *f = *state;

	fx_start(f);
	set(f, "base.service", "[Service]\nExecStart=/bin/a\n[X-Fake]\nExitAfterMs=30\n",
	    RUNNER_LAUNCHED);
	set(f, "bound.service", "[Unit]\nBindsTo=base.service\n[Service]\nExecStart=/bin/b\n",
	    RUNNER_LAUNCHED);
	wait_state(f, "bound.service", "active", "running");
	/* base exits on its own (Restart=no): bound is stopped. */
	wait_state(f, "base.service", "inactive", "dead");
	wait_state(f, "bound.service", "inactive", "dead");
	assert_int_equal(count_lines(f, "stops.log", "bound.service ", true), 1);
}

static void test_dependents_and_auto_restart(void **state)
{
	struct fx *f = *state;
	const char *x = "[Unit]\nStartLimitBurst=2\n[Service]\nExecStart=/bin/x\nRestart=always\n"
	                "RestartSec=100ms\n[X-Fake]\nExitAfterMs=20\nExitCode=1\n";
	const char *y = "[Unit]\nRequires=x.service\n[Service]\nExecStart=/bin/y\n";

	fx_start(f);
	set(f, "x.service", x, RUNNER_LAUNCHED);
	set(f, "y.service", y, RUNNER_LAUNCHED);
	wait_state(f, "y.service", "active", "running");
	/* x crashes and waits to restart: y (Requires=) is left running, as systemd does. */
	wait_state(f, "x.service", "activating", "auto-restart");
	assert_string_equal(seen_get(f, "y.service")->active, "active");
	/* x then hits its start limit: now y goes down. */
	wait_state(f, "x.service", "failed", "failed");
	assert_string_equal(seen_get(f, "x.service")->result, "start-limit-hit");
	wait_state(f, "y.service", "inactive", "dead");
	assert_int_equal(starts(f, "y.service"), 1);
	/* A new launch of x (new text) brings y back. */
	set(f, "x.service", "[Service]\nExecStart=/bin/x2\n", RUNNER_LAUNCHED);
	wait_state(f, "x.service", "active", "running");
	wait_state(f, "y.service", "active", "running");
	assert_int_equal(starts(f, "y.service"), 2);
	/* x stopped while y runs: y stops too. */
	set(f, "x.service", "[Service]\nExecStart=/bin/x2\n", RUNNER_LOADED);
	wait_state(f, "y.service", "inactive", "dead");
}

/* ---------------------------------------------------------------- failures */

static void test_start_failures(void **state)
{
	struct fx *f = *state;

	fx_start(f);
	set(f, "e.service", "[Service]\nExecStart=/bin/x\n[X-Fake]\nStartErrno=5\n",
	    RUNNER_LAUNCHED);
	wait_state(f, "e.service", "failed", "failed");
	assert_string_equal(seen_get(f, "e.service")->message,
	                    "driver 'fake' cannot start the unit: Input/output error");
	set(f, "m.service", "[Service]\nExecStart=/bin/x\n[X-Fake]\nStartFail=image not found\n",
	    RUNNER_LAUNCHED);
	wait_state(f, "m.service", "failed", "failed");
	assert_string_equal(seen_get(f, "m.service")->message, "image not found");
	assert_string_equal(seen_get(f, "m.service")->result, "resources");
	assert_true(journal_has(f, "m.service", "image not found"));
	set(f, "rkt.service", "[Service]\nExecStart=/bin/x\n[X-Flotilla]\nRuntime=rkt\n",
	    RUNNER_LAUNCHED);
	wait_state(f, "rkt.service", "failed", "failed");
	assert_string_equal(seen_get(f, "rkt.service")->message,
	                    "runtime 'rkt' is not available on this machine");
	/* The runner keeps serving. */
	set(f, "ok.service", "[Service]\nExecStart=/bin/x\n", RUNNER_LAUNCHED);
	wait_state(f, "ok.service", "active", "running");
	/* Bad input is refused and changes nothing. */
	assert_int_equal(runner_set(f->r, "../x.service", "[Service]\n", "h", RUNNER_LAUNCHED),
	                 FLT_EINVAL);
	assert_true(runner_set(f->r, "bad.service", "[Service\nx", "h", RUNNER_LAUNCHED) < 0);
	assert_int_equal(runner_status_json(f->r, "bad.service", &(struct buf)BUF_INIT), -ENOENT);
}

/* ---------------------------------------------------------------- stop, fencing, new text */

static void test_stop_timeout_fencing_and_new_text(void **state)
{
	struct fx *f = *state;
	const char *t1 = "[Service]\nExecStart=/bin/x\nTimeoutStopSec=5s\n";
	const char *t2 = "[Service]\nExecStart=/bin/y\nTimeoutStopSec=0\n";
	struct count_want w = {"s.service", 2};

	fx_start(f);
	set(f, "s.service", t1, RUNNER_LAUNCHED);
	set(f, "dflt.service", "[Service]\nExecStart=/bin/x\n", RUNNER_LAUNCHED);
	wait_state(f, "s.service", "active", "running");
	wait_state(f, "dflt.service", "active", "running");
	/* Same again: nothing happens. */
	set(f, "s.service", t1, RUNNER_LAUNCHED);
	assert_int_equal(starts(f, "s.service"), 1);
	/* New text: stopped (with its TimeoutStopSec) and started again. */
	set(f, "s.service", t2, RUNNER_LAUNCHED);
	assert_true(run_until(f, starts_reach, &w, 1000));
	assert_int_equal(count_lines(f, "stops.log", "s.service 5000", false), 1);
	wait_state(f, "s.service", "active", "running");
	/* Fencing: everything stops, targets stay; setting again resumes. */
	assert_int_equal(runner_stop_all(f->r), 2);
	wait_state(f, "s.service", "inactive", "dead");
	wait_state(f, "dflt.service", "inactive", "dead");
	assert_int_equal(count_lines(f, "stops.log", "s.service 0", false), 1);
	assert_int_equal(count_lines(f, "stops.log", "dflt.service 90000", false), 1);
	run_for(f, 30);
	assert_int_equal(starts(f, "s.service"), 2);
	set(f, "s.service", t2, RUNNER_LAUNCHED);
	wait_state(f, "s.service", "active", "running");
	assert_int_equal(starts(f, "s.service"), 3);
	/* Gone: stopped and forgotten. */
	set(f, "s.service", NULL, RUNNER_GONE);
	assert_true(seen_get(f, "s.service")->gone);
	assert_int_equal(runner_status_json(f->r, "s.service", &(struct buf)BUF_INIT), -ENOENT);
}

/* ---------------------------------------------------------------- adoption and strays */

static void test_adoption_and_strays(void **state)
{
	struct fx *f = *state;
	const char *keep = "[Service]\nExecStart=/bin/keep\n";
	const char *old = "[Service]\nExecStart=/bin/old\n";
	const char *later = "[Service]\nExecStart=/bin/x\n[X-Fake]\nExitAfterMs=10000\n";
	char path[512];
	int fd;

	fx_start(f);
	set(f, "keep.service", keep, RUNNER_LAUNCHED);
	set(f, "old.service", old, RUNNER_LAUNCHED);
	set(f, "later.service", later, RUNNER_LAUNCHED);
	set(f, "idle.service", keep, RUNNER_LOADED);
	wait_state(f, "keep.service", "active", "running");
	wait_state(f, "old.service", "active", "running");
	wait_state(f, "later.service", "active", "running");
	/* The daemon goes down: runs are released, not stopped. */
	runner_free(f->r);
	f->r = NULL;
	assert_int_equal(count_lines(f, "stops.log", "", true), 0);
	/* A run the driver has that no state file names. */
	snprintf(path, sizeof(path), "%s/runs/stray-1", f->fake_dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "ghost.service", 13), 13);
	close(fd);
	/* later's run dies while the daemon is down. */
	{
		DIR *d;
		struct dirent *de;
		char runs[512];

		snprintf(runs, sizeof(runs), "%s/runs", f->fake_dir);
		d = opendir(runs);
		assert_non_null(d);
		while ((de = readdir(d))) {
			char p[1024], unit[64] = "";
			FILE *fp;

			if (de->d_name[0] == '.')
				continue;
			snprintf(p, sizeof(p), "%s/%s", runs, de->d_name);
			fp = fopen(p, "r");
			assert_non_null(fp);
			if (!fgets(unit, sizeof(unit), fp))
				unit[0] = '\0';
			fclose(fp);
			if (!strcmp(unit, "later.service"))
				unlink(p);
		}
		closedir(d);
	}
	memset(f->seen, 0, sizeof(f->seen));
	f->n_seen = 0;
	fx_start(f);
	/* Adopted, not started again; the stray is removed. */
	assert_int_equal(count_lines(f, "adopts.log", "keep.service ", true), 1);
	assert_int_equal(count_lines(f, "removed.log", "stray-1", false), 1);
	wait_state(f, "keep.service", "active", "running");
	wait_state(f, "old.service", "active", "running");
	/* A unit with nothing running is known again too. */
	{
		struct runner_state st;

		assert_int_equal(runner_state(f->r, "idle.service", &st), 0);
		assert_string_equal(st.active_state, "inactive");
	}
	/* later's run is gone: it waits for the agent to confirm it. */
	wait_state(f, "later.service", "inactive", "dead");
	assert_int_equal(starts(f, "later.service"), 1);
	/* The agent resyncs: keep and later stay, old is not wanted any more. */
	runner_sync_begin(f->r);
	set(f, "keep.service", keep, RUNNER_LAUNCHED);
	set(f, "later.service", later, RUNNER_LAUNCHED);
	runner_sync_end(f->r);
	wait_state(f, "later.service", "active", "running");
	assert_int_equal(starts(f, "keep.service"), 1);
	assert_int_equal(starts(f, "later.service"), 2);
	assert_int_equal(count_lines(f, "stops.log", "old.service ", true), 1);
	assert_true(seen_get(f, "old.service")->gone);
	assert_int_equal(count_lines(f, "stops.log", "keep.service ", true), 0);
}

/* ---------------------------------------------------------------- status and journal */

static unsigned count_nl(const char *s)
{
	unsigned n = 0;

	for (; s && *s; s++)
		n += *s == '\n';
	return n;
}

static void follow_cb(void *ud, const char *unit, const char *line, size_t len)
{
	struct buf *b = ud;

	buf_append(b, line, len);
}

static void test_status_and_journal(void **state)
{
	struct fx *f = *state;
	struct buf b = BUF_INIT, fl = BUF_INIT;
	struct journal_follow *jf;
	regex_t re;

	fx_start(f);
	assert_int_equal(runner_follow(f->r, "web@1.service", follow_cb, &fl, &jf), 0);
	set(f, "web@1.service",
	    "[Unit]\nDescription=Web %i\n[Service]\nExecStartPre=/bin/pre %n\n"
	    "ExecStart=-/usr/bin/web --id %i\n[X-Fake]\nOutput=hello\n",
	    RUNNER_LAUNCHED);
	wait_state(f, "web@1.service", "active", "running");
	assert_int_equal(runner_status_json(f->r, "web@1.service", &b), 0);
	assert_non_null(strstr(b.data, "\"description\":\"Web 1\""));
	assert_non_null(strstr(b.data, "\"mainCommand\":\"/usr/bin/web --id 1\""));
	assert_non_null(strstr(b.data, "\"activeState\":\"active\""));
	assert_non_null(strstr(b.data, "\"hostname\":\"host1\""));
	assert_non_null(strstr(b.data, "\"kind\":\"ExecStartPre\""));
	assert_non_null(strstr(b.data, "\"command\":\"/bin/pre web@1.service\""));
	buf_release(&b);

	assert_int_equal(runner_journal(f->r, "web@1.service", 10, &b), 0);
	assert_int_equal(regcomp(&re,
	                         "^[A-Z][a-z][a-z] [ 0-9][0-9] [0-9][0-9]:[0-9][0-9]:[0-9][0-9] "
	                         "host1 fake\\[[0-9]+\\]: hello$",
	                         REG_EXTENDED | REG_NEWLINE),
	                 0);
	assert_int_equal(regexec(&re, b.data, 0, NULL, 0), 0);
	regfree(&re);
	assert_non_null(strstr(b.data, "host1 systemd[1]: Starting Web 1...\n"));
	assert_non_null(strstr(b.data, "host1 systemd[1]: Started Web 1.\n"));
	/* The follower saw the same lines. */
	assert_non_null(fl.data);
	assert_non_null(strstr(fl.data, "]: hello\n"));
	runner_unfollow(jf);
	buf_release(&b);
	assert_int_equal(runner_journal(f->r, "web@1.service", 1, &b), 0);
	assert_non_null(strstr(b.data, "]: hello\n"));
	assert_int_equal(count_nl(b.data), 1);
	buf_release(&b);
	buf_release(&fl);
	assert_int_equal(runner_journal(f->r, "nothing.service", 10, &b), 0);
	assert_int_equal(b.len, 0);
	buf_release(&b);
}

struct unfollow_ctx {
	struct journal_follow *self;
	unsigned calls;
};

static void unfollow_self(void *ud, const char *unit, const char *line, size_t len)
{
	struct unfollow_ctx *c = ud;

	c->calls++;
	journal_unfollow(c->self);
}

static void test_journal_rotation(void **state)
{
	struct fx *f = *state;
	struct journal *j;
	struct buf b = BUF_INIT;
	char dir[256], line[64], path[512];
	struct stat st;
	struct unfollow_ctx uc = {0};

	snprintf(dir, sizeof(dir), "%s/j", f->root);
	assert_int_equal(journal_new(dir, "h", 400, &j), 0);
	assert_int_equal(journal_follow(j, "u.service", unfollow_self, &uc, &uc.self), 0);
	for (int i = 0; i < 40; i++) {
		snprintf(line, sizeof(line), "line %02d", i);
		assert_int_equal(journal_append(j, "u.service", 0, "x[1]", line, strlen(line)), 0);
	}
	assert_int_equal(uc.calls, 1);
	snprintf(path, sizeof(path), "%s/u.service.log", dir);
	assert_int_equal(stat(path, &st), 0);
	assert_true(st.st_size <= 400);
	snprintf(path, sizeof(path), "%s/u.service.log.1", dir);
	assert_int_equal(stat(path, &st), 0);
	assert_true(st.st_size <= 400);
	/* Tails span the rotated file, in order. */
	assert_int_equal(journal_tail(j, "u.service", 3, &b), 0);
	assert_int_equal(count_nl(b.data), 3);
	assert_non_null(strstr(b.data, "x[1]: line 37\n"));
	assert_non_null(strstr(b.data, "x[1]: line 39\n"));
	assert_null(strstr(b.data, "line 36"));
	buf_release(&b);
	assert_int_equal(journal_tail(j, "u.service", 1000, &b), 0);
	{
		unsigned n = count_nl(b.data);
		const char *p37 = strstr(b.data, "line 37"), *p20 = strstr(b.data, "line 2");

		assert_true(n > 10 && n < 40);
		assert_non_null(p37);
		assert_non_null(p20);
		assert_true(p20 < p37);
		assert_null(strstr(b.data, "line 00"));
	}
	buf_release(&b);
	/* Embedded newlines make several lines; long lines are cut. */
	assert_int_equal(journal_append(j, "v.service", 0, "y", "a\nb", 3), 0);
	assert_int_equal(journal_tail(j, "v.service", 10, &b), 0);
	assert_int_equal(count_nl(b.data), 2);
	buf_release(&b);
	assert_int_equal(journal_append(j, "../v", 0, "y", "a", 1), FLT_EINVAL);
	assert_int_equal(journal_remove(j, "u.service"), 0);
	assert_int_equal(journal_tail(j, "u.service", 10, &b), 0);
	assert_int_equal(b.len, 0);
	buf_release(&b);
	journal_free(j);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_loader_refusals, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_runtimes_and_open_failure, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_docker_requirement_met, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_restart_modes, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_restart_sec_and_start_limit, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_requires_after_and_propagation, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bindsto_exit, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_dependents_and_auto_restart, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_start_failures, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_stop_timeout_fencing_and_new_text, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_adoption_and_strays, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_status_and_journal, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_journal_rotation, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
