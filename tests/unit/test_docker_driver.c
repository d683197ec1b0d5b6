/* Tests of the docker driver (drivers/docker.so) against a real dockerd, through the driver test
 * harness. Run by tests/integration/docker_driver.sh, which starts a private dockerd and imports
 * flotilla-busybox:latest (lib_docker.sh) and passes FLT_DOCKER_HOST, FLT_DOCKER_PREFIX and
 * FLT_BUILDDIR. Without them the program fails: a missing docker is a failure, never a skip. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ev.h>

#include "../drivers/harness.h"
#include "util/buf.h"

#define IMAGE    "flotilla-busybox:latest"
#define MACHINE  "0123456789abcdef0123456789abcdef" /* the harness's machine id */
#define DEADLINE 30000u

static char *so_path;
static bool quiet_cli; /* container_exists() expects "No such object" on stderr */
static const char *docker_host;
static const char *prefix;

/* The driver opened on the test's dockerd. */
static struct hx *open_drv(void)
{
	const char *kv[] = {"docker-host", docker_host, "name-prefix", prefix, NULL};
	struct hx *hx = hx_open(so_path, kv);

	assert_non_null(hx);
	return hx;
}

/* A unit running `cmd` (a shell line) in the busybox image, without a network. */
static char *unit_text(const char *extra, const char *cmd)
{
	struct buf b = BUF_INIT;

	assert_true(buf_printf(&b,
	                       "[Service]\nExecStart=/bin/sh -c \"%s\"\n"
	                       "[X-Flotilla]\nImage=" IMAGE "\nNetwork=none\nPull=never\n%s",
	                       cmd, extra ? extra : "") >= 0);
	return buf_steal(&b);
}

/* Run the docker CLI against the test's daemon (test code: blocking is fine). Returns its exit
 * status; its stdout goes to *ret_out if given (owned by the caller). */
static int docker_cli(char **ret_out, const char *arg0, ...)
{
	const char *argv[32] = {"docker", "-H", docker_host};
	size_t n = 3;
	va_list ap;
	int fds[2], st;
	pid_t pid;
	struct buf out = BUF_INIT;
	char chunk[512];
	ssize_t k;

	va_start(ap, arg0);
	for (const char *a = arg0; a && n < 31; a = va_arg(ap, const char *))
		argv[n++] = a;
	va_end(ap);
	argv[n] = NULL;
	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(fds[1], 1);
		if (quiet_cli) {
			int null = open("/dev/null", O_WRONLY);

			if (null >= 0)
				dup2(null, 2);
		}
		close(fds[0]);
		close(fds[1]);
		execvp("docker", (char *const *)argv);
		_exit(127);
	}
	close(fds[1]);
	while ((k = read(fds[0], chunk, sizeof(chunk))) > 0)
		assert_int_equal(buf_append(&out, chunk, (size_t)k), 0);
	close(fds[0]);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	if (ret_out)
		*ret_out = out.data ? buf_steal(&out) : strdup("");
	buf_release(&out);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static bool container_exists(const char *ref)
{
	bool yes;

	quiet_cli = true;
	yes = docker_cli(NULL, "inspect", "--format", "{{.Id}}", ref, NULL) == 0;
	quiet_cli = false;
	return yes;
}

static bool gone_pred(void *arg)
{
	return !container_exists(arg);
}

static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
}

/* Run the loop until the container `ref` no longer exists, asking docker every 100 ms (a timer
 * wakes the loop up; the driver's own work goes on in between). */
static bool wait_gone(struct hx *hx, const char *ref)
{
	struct ev_loop *loop = ev_default_loop(0);
	ev_timer tick;
	bool ok;

	ev_timer_init(&tick, tick_cb, 0.1, 0.1);
	ev_timer_start(loop, &tick);
	ok = hx_wait_for(hx, gone_pred, (void *)ref, DEADLINE);
	ev_timer_stop(loop, &tick);
	return ok;
}

static void dump(struct hx *hx, struct flt_task *t)
{
	const struct hx_status *s = hx_last_status(hx, t);

	fprintf(stderr, "# %s: %s\n", t->unit, hx_trace(hx, t));
	if (s)
		fprintf(stderr, "# last: code=%d sig=%d result=%s message=%s\n", s->exit_code,
		        s->exit_signal, s->result ? s->result : "-", s->message ? s->message : "-");
	fprintf(stderr, "# output: %s\n", hx_output(hx, t));
}

#define WAIT_STATE(hx, t, active, sub, ms)                                                         \
	do {                                                                                       \
		if (!hx_wait(hx, t, active, sub, ms)) {                                            \
			dump(hx, t);                                                               \
			fail_msg("%s never reached %s", (t)->unit, hx_active_name(active));        \
		}                                                                                  \
	} while (0)

/* ---- tests ---- */

/* Output lines (stdout and stderr, demultiplexed) reach the journal before the final state; a
 * clean exit is "success" and the container is removed afterwards. */
static void test_output_and_exit(void **state)
{
	struct hx *hx = open_drv();
	char *text = unit_text("Env=GREETING=hello \"OTHER=two words\"\n",
	                       "echo $GREETING-out; echo $OTHER-err >&2; echo last");
	struct flt_task *t = hx_task(hx, "out.service", text);
	const struct hx_status *s;
	char *id;

	assert_int_equal(hx_start(hx, t), 0);
	WAIT_STATE(hx, t, FLT_INACTIVE, "dead", DEADLINE);
	s = hx_last_status(hx, t);
	assert_string_equal(s->result, "success");
	assert_int_equal(s->exit_code, 0);
	if (!strstr(hx_output(hx, t), "hello-out\n") ||
	    !strstr(hx_output(hx, t), "two words-err\n") || !strstr(hx_output(hx, t), "last\n")) {
		dump(hx, t);
		fail_msg("output lines missing");
	}
	assert_non_null(hx_last_ident(hx, t));
	assert_true(!strncmp(hx_last_ident(hx, t), "docker", 6));
	/* no 8-byte frame header leaked into the text */
	assert_null(memchr(hx_output(hx, t), '\1', strlen(hx_output(hx, t))));
	assert_non_null(hx_handle(hx, t));
	id = strdup(hx_handle(hx, t));
	assert_true(wait_gone(hx, id));
	free(id);
	hx_close(hx);
	free(text);
}

/* A bind volume from Volumes= and a failing exit status. */
static void test_volume_and_exit_code(void **state)
{
	struct hx *hx = open_drv();
	char dir[] = "/tmp/flt-dkvol.XXXXXX";
	struct buf extra = BUF_INIT, path = BUF_INIT;
	FILE *f;
	char *text;
	struct flt_task *t;
	const struct hx_status *s;

	assert_non_null(mkdtemp(dir));
	assert_true(buf_printf(&path, "%s/in.txt", dir) >= 0);
	f = fopen(path.data, "w");
	assert_non_null(f);
	fputs("from-the-host\n", f);
	fclose(f);
	assert_true(buf_printf(&extra, "Volumes=%s:/data:ro\n", dir) >= 0);
	text = unit_text(extra.data, "cat /data/in.txt; exit 3");
	t = hx_task(hx, "vol.service", text);
	assert_int_equal(hx_start(hx, t), 0);
	WAIT_STATE(hx, t, FLT_FAILED, "failed", DEADLINE);
	s = hx_last_status(hx, t);
	assert_string_equal(s->result, "exit-code");
	assert_int_equal(s->exit_code, 3);
	assert_non_null(strstr(hx_output(hx, t), "from-the-host\n"));
	assert_true(wait_gone(hx, hx_handle(hx, t)));
	hx_close(hx);
	unlink(path.data);
	rmdir(dir);
	buf_release(&extra);
	buf_release(&path);
	free(text);
}

/* docker kill from outside: SIGKILL, reported as a "signal" failure. */
static void test_docker_kill(void **state)
{
	struct hx *hx = open_drv();
	char *text = unit_text(NULL, "echo up; exec sleep 1000");
	struct flt_task *t = hx_task(hx, "kill.service", text);
	const struct hx_status *s;

	assert_int_equal(hx_start(hx, t), 0);
	WAIT_STATE(hx, t, FLT_ACTIVE, "running", DEADLINE);
	s = hx_last_status(hx, t);
	assert_true(s->main_pid > 0);
	assert_true(hx_wait_output(hx, t, "up\n", DEADLINE));
	assert_int_equal(docker_cli(NULL, "kill", hx_handle(hx, t), NULL), 0);
	WAIT_STATE(hx, t, FLT_FAILED, "failed", DEADLINE);
	s = hx_last_status(hx, t);
	assert_string_equal(s->result, "signal");
	assert_int_equal(s->exit_signal, SIGKILL);
	assert_non_null(s->message);
	assert_true(wait_gone(hx, hx_handle(hx, t)));
	hx_close(hx);
	free(text);
}

#define TRAP_CMD "trap 'echo got-term; exit 0' TERM; echo ready; while true; do sleep 0.1; done"

/* docker stop from outside, the command traps TERM and exits 0: success. */
static void test_docker_stop_trapped(void **state)
{
	struct hx *hx = open_drv();
	char *text = unit_text(NULL, TRAP_CMD);
	struct flt_task *t = hx_task(hx, "trap.service", text);
	const struct hx_status *s;

	assert_int_equal(hx_start(hx, t), 0);
	WAIT_STATE(hx, t, FLT_ACTIVE, "running", DEADLINE);
	assert_true(hx_wait_output(hx, t, "ready\n", DEADLINE));
	assert_int_equal(docker_cli(NULL, "stop", "-t", "20", hx_handle(hx, t), NULL), 0);
	WAIT_STATE(hx, t, FLT_INACTIVE, "dead", DEADLINE);
	s = hx_last_status(hx, t);
	assert_string_equal(s->result, "success");
	assert_int_equal(s->exit_code, 0);
	assert_non_null(strstr(hx_output(hx, t), "got-term\n"));
	assert_true(wait_gone(hx, hx_handle(hx, t)));
	hx_close(hx);
	free(text);
}

/* stop(): a trapping command stops cleanly; one that ignores TERM (pid 1 without a handler) is
 * killed when the timeout passes, reported as systemd does: failed, result "timeout". */
static void test_stop_with_timeout(void **state)
{
	struct hx *hx = open_drv();
	char *clean = unit_text(NULL, TRAP_CMD);
	char *deaf = unit_text(NULL, "echo deaf; while true; do sleep 0.1; done");
	struct flt_task *t1 = hx_task(hx, "clean.service", clean);
	struct flt_task *t2 = hx_task(hx, "deaf.service", deaf);
	const struct hx_status *s;
	int64_t t0;

	assert_int_equal(hx_start(hx, t1), 0);
	assert_int_equal(hx_start(hx, t2), 0);
	WAIT_STATE(hx, t1, FLT_ACTIVE, "running", DEADLINE);
	WAIT_STATE(hx, t2, FLT_ACTIVE, "running", DEADLINE);
	assert_true(hx_wait_output(hx, t1, "ready\n", DEADLINE));
	assert_true(hx_wait_output(hx, t2, "deaf\n", DEADLINE));

	assert_int_equal(hx_stop(hx, t1, 10000), 0);
	WAIT_STATE(hx, t1, FLT_DEACTIVATING, NULL, DEADLINE);
	WAIT_STATE(hx, t1, FLT_INACTIVE, "dead", DEADLINE);
	assert_string_equal(hx_last_status(hx, t1)->result, "success");

	t0 = hx_last_status(hx, t2)->at_ms;
	assert_int_equal(hx_stop(hx, t2, 1000), 0);
	WAIT_STATE(hx, t2, FLT_FAILED, "failed", DEADLINE);
	s = hx_last_status(hx, t2);
	assert_string_equal(s->result, "timeout");
	assert_int_equal(s->exit_signal, SIGKILL);
	assert_true(s->at_ms - t0 >= 900);
	assert_true(s->at_ms - t0 < 15000);
	assert_true(wait_gone(hx, hx_handle(hx, t1)));
	assert_true(wait_gone(hx, hx_handle(hx, t2)));
	hx_close(hx);
	free(clean);
	free(deaf);
}

/* stop() before the container even exists: the run ends inactive, no container is left. */
static void test_stop_while_starting(void **state)
{
	struct hx *hx = open_drv();
	char *text = unit_text(NULL, "exec sleep 1000");
	struct flt_task *t = hx_task(hx, "early.service", text);
	struct buf name = BUF_INIT;

	assert_int_equal(hx_start(hx, t), 0);
	assert_int_equal(hx_stop(hx, t, 5000), 0);
	WAIT_STATE(hx, t, FLT_INACTIVE, "dead", DEADLINE);
	assert_true(buf_printf(&name, "%searly.service", prefix) >= 0);
	assert_true(wait_gone(hx, name.data));
	buf_release(&name);
	hx_close(hx);
	free(text);
}

/* The agent restarts: a second driver instance adopts the running container by id and follows
 * it (state, logs from now on, its end). */
static void test_adopt(void **state)
{
	struct hx *a = open_drv(), *b;
	char *text = unit_text(NULL, "while true; do echo tick; sleep 0.2; done");
	struct flt_task *t = hx_task(a, "adopt.service", text), *t2;
	const struct hx_status *s;
	char *id;

	assert_int_equal(hx_start(a, t), 0);
	WAIT_STATE(a, t, FLT_ACTIVE, "running", DEADLINE);
	id = strdup(hx_handle(a, t));
	hx_close(a); /* the daemon goes down: the container keeps running */
	assert_true(container_exists(id));

	b = open_drv();
	t2 = hx_task(b, "adopt.service", text);
	assert_int_equal(hx_adopt(b, t2, id), 0);
	WAIT_STATE(b, t2, FLT_ACTIVE, "running", DEADLINE);
	s = hx_last_status(b, t2);
	assert_string_equal(s->handle, id);
	assert_true(s->main_pid > 0);
	assert_true(hx_wait_output(b, t2, "tick\n", DEADLINE));
	assert_int_equal(hx_stop(b, t2, 1000), 0);
	WAIT_STATE(b, t2, FLT_FAILED, "failed", DEADLINE); /* pid 1 ignores TERM: killed */
	assert_true(wait_gone(b, id));

	/* adopting what is gone: inactive with a reason, and no crash */
	t2 = hx_task(b, "adopt2.service", text);
	assert_int_equal(hx_adopt(b, t2, id), 0);
	WAIT_STATE(b, t2, FLT_INACTIVE, NULL, DEADLINE);
	assert_non_null(hx_last_status(b, t2)->message);
	assert_non_null(strstr(hx_last_status(b, t2)->message, "no longer exists"));
	hx_close(b);
	free(id);
	free(text);
}

/* ---- list()/remove(): the harness has no accessor for the driver instance, so these two
 * open the driver themselves with a minimal host on the same loop. ---- */

struct mini {
	void *dl;
	const struct flt_drv_ops *ops;
	struct flt_drv *drv;
	struct flt_host host;
	/* list() results */
	char units[8][64];
	char ids[8][80];
	size_t n;
	bool done;
};

static void mini_log(const struct flt_host *h, enum flt_log_level level, const char *fmt,
                     va_list ap)
{
	fprintf(stderr, "[driver %d] ", (int)level);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

static void mini_list_cb(void *ctx, const char *unit, const char *handle)
{
	struct mini *m = ctx;

	if (!unit) {
		m->done = true;
		return;
	}
	if (m->n < 8) {
		snprintf(m->units[m->n], sizeof(m->units[0]), "%s", unit);
		snprintf(m->ids[m->n], sizeof(m->ids[0]), "%s", handle);
		m->n++;
	}
}

static bool mini_done(void *ctx)
{
	return ((struct mini *)ctx)->done;
}

static void test_list_remove(void **state)
{
	struct hx *hx = open_drv(); /* for its loop helpers */
	struct mini m = {0};
	const struct flt_drv_ops *(*entry)(void);
	const char *keys[] = {"docker-host", "name-prefix", "machine-id"};
	const char *vals[] = {docker_host, prefix, MACHINE};
	struct flt_drv_config cfg = {keys, vals, 3};
	const char *why = NULL;
	struct buf name = BUF_INIT, other = BUF_INIT;
	char *id = NULL, *oid = NULL;
	bool found = false;

	assert_true(buf_printf(&name, "%sstray", prefix) >= 0);
	assert_true(buf_printf(&other, "%sother", prefix) >= 0);

	/* a stray of ours (no task knows it) and a container of another machine */
	quiet_cli = true;
	docker_cli(NULL, "rm", "-f", name.data, other.data, NULL);
	quiet_cli = false;
	assert_int_equal(docker_cli(&id, "run", "-d", "--network", "none", "--name", name.data,
	                            "--label", "io.flotilla.unit=stray.service", "--label",
	                            "io.flotilla.machine=" MACHINE, IMAGE, "sleep", "1000", NULL),
	                 0);
	assert_int_equal(docker_cli(&oid, "create", "--network", "none", "--name", other.data,
	                            "--label", "io.flotilla.unit=stray.service", "--label",
	                            "io.flotilla.machine=ffffffffffffffffffffffffffffffff", IMAGE,
	                            "sleep", "1000", NULL),
	                 0);
	id[strcspn(id, "\n")] = '\0';
	oid[strcspn(oid, "\n")] = '\0';

	m.dl = dlopen(so_path, RTLD_NOW | RTLD_LOCAL);
	assert_non_null(m.dl);
	*(void **)&entry = dlsym(m.dl, FLT_DRIVER_ENTRY);
	assert_non_null(entry);
	m.ops = entry();
	m.host = (struct flt_host){.abi_major = FLT_DRV_ABI_MAJOR,
	                           .abi_minor = FLT_DRV_ABI_MINOR,
	                           .host_size = sizeof(struct flt_host),
	                           .loop = ev_default_loop(0),
	                           .log = mini_log};
	assert_int_equal(m.ops->open(&m.host, &cfg, &m.drv, &why), 0);

	assert_int_equal(m.ops->list(m.drv, mini_list_cb, &m), 0);
	assert_true(hx_wait_for(hx, mini_done, &m, DEADLINE));
	for (size_t i = 0; i < m.n; i++) {
		if (!strcmp(m.ids[i], id)) {
			assert_string_equal(m.units[i], "stray.service");
			found = true;
		}
		assert_string_not_equal(m.ids[i], oid);
	}
	assert_true(found);

	assert_int_equal(m.ops->remove(m.drv, id), 0);
	assert_true(m.ops->remove(m.drv, "../etc") < 0);
	assert_true(wait_gone(hx, id));
	assert_true(container_exists(oid));
	m.ops->close(m.drv);
	dlclose(m.dl);
	docker_cli(NULL, "rm", "-f", oid, NULL);
	free(id);
	free(oid);
	buf_release(&name);
	buf_release(&other);
	hx_close(hx);
}

/* dockerd not reachable: the unit fails with the reason, the driver survives. */
static void test_docker_down(void **state)
{
	const char *kv[] = {"docker-host", "unix:///nonexistent/flotilla/docker.sock", NULL};
	struct hx *hx = hx_open(so_path, kv);
	char *text = unit_text(NULL, "echo never");
	struct flt_task *t;
	const struct hx_status *s;

	assert_non_null(hx);
	t = hx_task(hx, "down.service", text);
	assert_int_equal(hx_start(hx, t), 0);
	WAIT_STATE(hx, t, FLT_FAILED, "failed", DEADLINE);
	s = hx_last_status(hx, t);
	assert_non_null(s->message);
	if (!strstr(s->message,
	            "docker: cannot connect to unix:///nonexistent/flotilla/docker.sock")) {
		dump(hx, t);
		fail_msg("unexpected message '%s'", s->message);
	}
	/* and again (Restart= would): same answer */
	assert_int_equal(hx_start(hx, t), 0);
	WAIT_STATE(hx, t, FLT_FAILED, "failed", DEADLINE);
	hx_close(hx);
	free(text);
}

/* A missing image with Pull=never: failed with the Engine API's message; nothing pulled. */
static void test_missing_image(void **state)
{
	struct hx *hx = open_drv();
	struct flt_task *t = hx_task(hx, "noimg.service",
	                             "[Service]\nExecStart=/bin/true\n"
	                             "[X-Flotilla]\nImage=flotilla-no-such-image:1\nNetwork=none\n"
	                             "Pull=never\n");
	struct flt_task *t2 = hx_task(
	    hx, "noimage.service", "[Service]\nExecStart=/bin/true\n[X-Flotilla]\nNetwork=none\n");
	struct flt_task *t3 =
	    hx_task(hx, "badpull.service", "[X-Flotilla]\nImage=" IMAGE "\nPull=sometimes\n");
	const struct hx_status *s;

	assert_int_equal(hx_start(hx, t), 0);
	WAIT_STATE(hx, t, FLT_FAILED, "failed", DEADLINE);
	s = hx_last_status(hx, t);
	assert_non_null(s->message);
	assert_string_equal(s->message, "docker: No such image: flotilla-no-such-image:1");

	assert_int_equal(hx_start(hx, t2), 0);
	WAIT_STATE(hx, t2, FLT_FAILED, "failed", DEADLINE);
	assert_non_null(strstr(hx_last_status(hx, t2)->message, "Image="));
	assert_int_equal(hx_start(hx, t3), 0);
	WAIT_STATE(hx, t3, FLT_FAILED, "failed", DEADLINE);
	assert_non_null(strstr(hx_last_status(hx, t3)->message, "Pull="));
	hx_close(hx);
}

/* A restart of the same unit while the old container of that name is still being removed. */
static void test_restart_same_name(void **state)
{
	struct hx *hx = open_drv();
	/* no Pull=: the default "missing" creates at once from the local image */
	struct flt_task *t = hx_task(hx, "again.service",
	                             "[Service]\nExecStart=/bin/echo run\n"
	                             "[X-Flotilla]\nImage=" IMAGE "\nNetwork=none\n");

	for (int i = 0; i < 3; i++) {
		assert_int_equal(hx_start(hx, t), 0);
		WAIT_STATE(hx, t, FLT_INACTIVE, "dead", DEADLINE);
	}
	assert_string_equal(hx_output(hx, t), "run\nrun\nrun\n");
	assert_true(wait_gone(hx, hx_handle(hx, t)));
	hx_close(hx);
}

int main(void)
{
	const char *bd = getenv("FLT_BUILDDIR");
	struct buf p = BUF_INIT;
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_output_and_exit),
	    cmocka_unit_test(test_volume_and_exit_code),
	    cmocka_unit_test(test_docker_kill),
	    cmocka_unit_test(test_docker_stop_trapped),
	    cmocka_unit_test(test_stop_with_timeout),
	    cmocka_unit_test(test_stop_while_starting),
	    cmocka_unit_test(test_adopt),
	    cmocka_unit_test(test_list_remove),
	    cmocka_unit_test(test_docker_down),
	    cmocka_unit_test(test_missing_image),
	    cmocka_unit_test(test_restart_same_name),
	};

	docker_host = getenv("FLT_DOCKER_HOST");
	prefix = getenv("FLT_DOCKER_PREFIX");
	if (!bd || !docker_host || !prefix) {
		fprintf(stderr, "test_docker_driver: FLT_BUILDDIR, FLT_DOCKER_HOST and "
		                "FLT_DOCKER_PREFIX must be set (run tests/integration/"
		                "docker_driver.sh)\n");
		return 1;
	}
	if (buf_printf(&p, "%s/drivers/docker.so", bd) < 0)
		return 1;
	so_path = buf_steal(&p);
	signal(SIGPIPE, SIG_IGN);
	{
		int rc = cmocka_run_group_tests(tests, NULL, NULL);

		free(so_path);
		return rc;
	}
}
