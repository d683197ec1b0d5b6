/* Tests of the exec runtime driver through the driver test harness: the built drivers/exec.so is
 * loaded like flotillad loads it and runs real processes (through the built flotilla-exec-shim).
 * Every wait has a deadline; nothing sleeps and hopes. */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "../drivers/harness.h"

#define WAIT_MS 10000

static const char *const drv_kv[] = {"exec-shim", EXEC_SHIM, NULL};

static struct hx *open_hx(void)
{
	return HX_OPEN_IN(EXEC_SO, drv_kv, NULL);
}

#define WAIT_STATE(hx, t, a, sub) HX_WAIT_STATE(hx, t, a, sub, WAIT_MS)
#define WAIT_OUTPUT(hx, t, s)     HX_WAIT_OUTPUT(hx, t, s, WAIT_MS)

/* Is there a (non-zombie) process with this pid? */
static bool pid_alive(long pid)
{
	char path[64], state = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	f = fopen(path, "r");
	if (!f)
		return false;
	if (fscanf(f, "%*d (%*[^)]) %c", &state) != 1)
		state = 0;
	fclose(f);
	return state && state != 'Z';
}

static bool pid_gone(void *ctx)
{
	return !pid_alive(*(long *)ctx);
}

static long ppid_of(long pid)
{
	char path[64];
	long ppid = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	if (fscanf(f, "%*d (%*[^)]) %*c %ld", &ppid) != 1)
		ppid = 0;
	fclose(f);
	return ppid;
}

/* Number of live processes whose command line contains `marker`, not counting the shim nor a
 * marked process' own children (a shell's fork shows its parent's command line until it
 * execs). */
static int count_marked(const char *marker)
{
	long pids[256], ppids[256];
	size_t n = 0;
	DIR *d = opendir("/proc");
	struct dirent *e;
	int count = 0;

	assert_non_null(d);
	while ((e = readdir(d)) && n < 256) {
		char path[300], buf[4096];
		size_t len;
		FILE *f;

		if (e->d_name[0] < '0' || e->d_name[0] > '9' || atol(e->d_name) == getpid())
			continue;
		snprintf(path, sizeof(path), "/proc/%s/cmdline", e->d_name);
		f = fopen(path, "r");
		if (!f)
			continue;
		len = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		for (size_t i = 0; i < len; i++)
			if (!buf[i])
				buf[i] = ' ';
		buf[len] = '\0';
		if (strstr(buf, marker) && !strstr(buf, "flotilla-exec-shim") &&
		    pid_alive(atol(e->d_name))) {
			pids[n] = atol(e->d_name);
			ppids[n] = ppid_of(pids[n]);
			n++;
		}
	}
	closedir(d);
	for (size_t i = 0; i < n; i++) {
		bool child = false;

		for (size_t j = 0; j < n; j++)
			child = child || ppids[i] == pids[j];
		count += !child;
	}
	return count;
}

struct comm_ctx {
	long pid;
	const char *comm;
};

static bool comm_is(void *arg)
{
	struct comm_ctx *c = arg;
	char path[64], comm[64] = "";
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/comm", c->pid);
	f = fopen(path, "r");
	if (!f)
		return false;
	if (fscanf(f, "%63s", comm) != 1)
		comm[0] = '\0';
	fclose(f);
	return !strcmp(comm, c->comm);
}

/* Wait until process `pid` runs the program `comm`. */
static void wait_comm(struct hx *hx, long pid, const char *comm)
{
	struct comm_ctx c = {pid, comm};

	if (!hx_wait_for(hx, comm_is, &c, WAIT_MS))
		fail_msg("process %ld never became '%s'", pid, comm);
}

static const struct hx_process *find_process(struct hx *hx, struct flt_task *t, const char *kind,
                                             size_t nth)
{
	for (size_t i = 0; i < hx_n_process(hx, t); i++) {
		const struct hx_process *p = hx_process_at(hx, t, i);

		if (!strcmp(p->kind, kind) && nth-- == 0)
			return p;
	}
	return NULL;
}

/* The seed walkthrough's shape: a shell loop, quoted, printing once a second. */
static void test_simple_output(void **state)
{
	struct hx *hx = open_hx();
	struct flt_task *t = hx_task(hx, "hello.service",
	                             "[Unit]\nDescription=Hello\n\n[Service]\n"
	                             "ExecStart=/bin/sh -c \"while true; do echo Hello World; "
	                             "sleep 0.2; done\"\n");
	const struct hx_status *st;
	const struct hx_process *p;
	char ident[64];

	assert_int_equal(hx_start(hx, t), 0);
	WAIT_STATE(hx, t, FLT_ACTIVE, "running");
	st = hx_last_status(hx, t);
	assert_true(st->main_pid > 0);
	assert_non_null(hx_handle(hx, t));
	WAIT_OUTPUT(hx, t, "Hello World\nHello World\n");
	snprintf(ident, sizeof(ident), "sh[%lld]", (long long)st->main_pid);
	assert_string_equal(hx_last_ident(hx, t), ident);

	assert_int_equal(hx_stop(hx, t, 5000), 0);
	WAIT_STATE(hx, t, FLT_DEACTIVATING, "stop-sigterm");
	WAIT_STATE(hx, t, FLT_INACTIVE, "dead");
	st = hx_last_status(hx, t);
	assert_string_equal(st->result, "success");
	p = find_process(hx, t, "ExecStart", 0);
	assert_non_null(p);
	assert_int_equal(p->exit_signal, SIGTERM);
	assert_string_equal(p->line,
	                    "/bin/sh -c \"while true; do echo Hello World; sleep 0.2; done\"");
	hx_close(hx);
}

static void test_pre_chain(void **state)
{
	struct hx *hx = open_hx();
	struct flt_task *t = hx_task(hx, "pre.service",
	                             "[Service]\nExecStartPre=-/bin/false\n"
	                             "ExecStartPre=/bin/echo pre two\n"
	                             "ExecStart=/bin/sleep 60\n"
	                             "ExecStartPost=/bin/echo post\n"
	                             "ExecStop=/bin/echo stopping\n"
	                             "ExecStopPost=/bin/echo stopped\n");
	const struct hx_process *p;

	assert_int_equal(hx_start(hx, t), 0);
	WAIT_STATE(hx, t, FLT_ACTIVATING, "start-pre");
	WAIT_STATE(hx, t, FLT_ACTIVATING, "start-post");
	WAIT_STATE(hx, t, FLT_ACTIVE, "running");
	p = hx_process_at(hx, t, 0);
	assert_string_equal(p->kind, "ExecStartPre");
	assert_string_equal(p->line, "/bin/false");
	assert_int_equal(p->exit_code, 1);
	p = hx_process_at(hx, t, 1);
	assert_string_equal(p->kind, "ExecStartPre");
	assert_string_equal(p->line, "/bin/echo pre two");
	assert_int_equal(p->exit_code, 0);
	p = hx_process_at(hx, t, 2);
	assert_string_equal(p->kind, "ExecStartPost");
	WAIT_OUTPUT(hx, t, "pre two\npost\n");

	assert_int_equal(hx_stop(hx, t, 5000), 0);
	WAIT_STATE(hx, t, FLT_DEACTIVATING, "stop");
	WAIT_STATE(hx, t, FLT_DEACTIVATING, "stop-post");
	WAIT_STATE(hx, t, FLT_INACTIVE, "dead");
	WAIT_OUTPUT(hx, t, "stopping\nstopped\n");
	assert_non_null(find_process(hx, t, "ExecStop", 0));
	assert_non_null(find_process(hx, t, "ExecStopPost", 0));
	assert_non_null(find_process(hx, t, "ExecStart", 0));
	hx_close(hx);
}

static void test_pre_fails(void **state)
{
	struct hx *hx = open_hx();
	struct flt_task *t = hx_task(hx, "prefail.service",
	                             "[Service]\nExecStartPre=/bin/sh -c 'exit 4'\n"
	                             "ExecStartPre=/bin/echo never\n"
	                             "ExecStart=/bin/sleep 60\n"
	                             "ExecStopPost=/bin/echo cleanup\n");
	const struct hx_status *st;

	assert_int_equal(hx_start(hx, t), 0);
	WAIT_STATE(hx, t, FLT_FAILED, "failed");
	st = hx_last_status(hx, t);
	assert_string_equal(st->result, "exit-code");
	assert_int_equal(st->exit_code, 4);
	assert_int_equal(hx_n_process(hx, t), 2);
	assert_string_equal(hx_process_at(hx, t, 0)->kind, "ExecStartPre");
	assert_int_equal(hx_process_at(hx, t, 0)->exit_code, 4);
	assert_string_equal(hx_process_at(hx, t, 1)->kind, "ExecStopPost");
	assert_null(strstr(hx_output(hx, t), "never"));
	assert_non_null(strstr(hx_output(hx, t), "cleanup"));
	hx_close(hx);
}

static void test_oneshot(void **state)
{
	struct hx *hx = open_hx();
	struct flt_task *t = hx_task(hx, "once.service",
	                             "[Service]\nType=oneshot\nExecStart=/bin/echo one\n"
	                             "ExecStart=/bin/echo two\n");
	struct flt_task *t2 = hx_task(hx, "remain.service",
	                              "[Service]\nType=oneshot\nRemainAfterExit=yes\n"
	                              "ExecStart=/bin/echo here\n");

	assert_int_equal(hx_start(hx, t), 0);
	WAIT_STATE(hx, t, FLT_ACTIVATING, "start");
	WAIT_STATE(hx, t, FLT_INACTIVE, "dead");
	assert_string_equal(hx_output(hx, t), "one\ntwo\n");
	assert_string_equal(hx_last_status(hx, t)->result, "success");
	assert_int_equal(hx_n_process(hx, t), 2);

	assert_int_equal(hx_start(hx, t2), 0);
	WAIT_STATE(hx, t2, FLT_ACTIVE, "exited");
	assert_string_equal(hx_output(hx, t2), "here\n");
	assert_int_equal(hx_stop(hx, t2, 1000), 0);
	WAIT_STATE(hx, t2, FLT_INACTIVE, "dead");
	hx_close(hx);
}

static void test_forking(void **state)
{
	struct hx *hx = open_hx();
	struct flt_task *t = hx_task(hx, "fork.service",
	                             "[Service]\nType=forking\n"
	                             "ExecStart=/bin/sh -c \"sleep 60 & echo forked\"\n");
	const struct hx_status *st;
	long pid;

	assert_int_equal(hx_start(hx, t), 0);
	WAIT_STATE(hx, t, FLT_ACTIVATING, "start");
	WAIT_STATE(hx, t, FLT_ACTIVE, "running");
	st = hx_last_status(hx, t);
	pid = (long)st->main_pid;
	assert_true(pid > 0);
	/* the background child may not have exec'd sleep yet when sh exits */
	wait_comm(hx, pid, "sleep");
	assert_int_equal(hx_process_at(hx, t, 0)->exit_code, 0);
	WAIT_OUTPUT(hx, t, "forked");

	assert_int_equal(hx_stop(hx, t, 5000), 0);
	WAIT_STATE(hx, t, FLT_INACTIVE, "dead");
	assert_true(hx_wait_for(hx, pid_gone, &pid, WAIT_MS));
	hx_close(hx);
}

static void test_exit_code_and_signal(void **state)
{
	struct hx *hx = open_hx();
	struct flt_task *t =
	    hx_task(hx, "exit3.service", "[Service]\nExecStart=/bin/sh -c 'exit 3'\n");
	struct flt_task *t2 = hx_task(hx, "kill9.service", "[Service]\nExecStart=/bin/sleep 60\n");
	const struct hx_status *st;
	long pid;

	assert_int_equal(hx_start(hx, t), 0);
	WAIT_STATE(hx, t, FLT_FAILED, "failed");
	st = hx_last_status(hx, t);
	assert_string_equal(st->result, "exit-code");
	assert_int_equal(st->exit_code, 3);
	assert_int_equal(st->exit_signal, 0);

	assert_int_equal(hx_start(hx, t2), 0);
	WAIT_STATE(hx, t2, FLT_ACTIVE, "running");
	pid = (long)hx_last_status(hx, t2)->main_pid;
	assert_int_equal(kill((pid_t)pid, SIGKILL), 0);
	WAIT_STATE(hx, t2, FLT_FAILED, "failed");
	st = hx_last_status(hx, t2);
	assert_string_equal(st->result, "signal");
	assert_int_equal(st->exit_signal, 9);
	assert_int_equal(find_process(hx, t2, "ExecStart", 0)->exit_signal, 9);
	hx_close(hx);
}

static void test_stop_timeout_sigkill(void **state)
{
	struct hx *hx = open_hx();
	struct flt_task *t = hx_task(hx, "stubborn.service",
	                             "[Service]\nExecStart=/bin/sh -c \"trap '' TERM; echo ready; "
	                             "while true; do sleep 0.1; done\"\n");
	const struct hx_status *st;

	assert_int_equal(hx_start(hx, t), 0);
	WAIT_STATE(hx, t, FLT_ACTIVE, "running");
	WAIT_OUTPUT(hx, t, "ready");
	assert_int_equal(hx_stop(hx, t, 300), 0);
	WAIT_STATE(hx, t, FLT_DEACTIVATING, "stop-sigterm");
	WAIT_STATE(hx, t, FLT_DEACTIVATING, "stop-sigkill");
	WAIT_STATE(hx, t, FLT_FAILED, "failed");
	st = hx_last_status(hx, t);
	assert_string_equal(st->result, "timeout");
	assert_int_equal(find_process(hx, t, "ExecStart", 0)->exit_signal, SIGKILL);
	hx_close(hx);
}

/* Not SIGINT: a non-interactive sh starts background jobs with SIGINT ignored, so the grandchild
 * would (rightly) survive until the SIGKILL. */
static void test_kill_signal_and_group(void **state)
{
	struct hx *hx = open_hx();
	struct flt_task *t =
	    hx_task(hx, "usr1.service",
	            "[Service]\nKillSignal=SIGUSR1\n"
	            "ExecStart=/bin/sh -c \"trap 'echo got USR1; exit 0' USR1; "
	            "sleep 1000 & echo child=$!; while true; do sleep 0.1; done\"\n");
	const char *o;
	long child;

	assert_int_equal(hx_start(hx, t), 0);
	WAIT_STATE(hx, t, FLT_ACTIVE, "running");
	WAIT_OUTPUT(hx, t, "child=");
	WAIT_OUTPUT(hx, t, "\n");
	o = strstr(hx_output(hx, t), "child=");
	child = atol(o + 6);
	assert_true(child > 0);
	assert_true(pid_alive(child));
	/* until it has exec'd, the forked shell still runs sh's trap for the signal */
	wait_comm(hx, child, "sleep");
	assert_int_equal(hx_stop(hx, t, 5000), 0);
	WAIT_OUTPUT(hx, t, "got USR1");
	WAIT_STATE(hx, t, FLT_INACTIVE, "dead");
	assert_string_equal(hx_last_status(hx, t)->result, "success");
	/* the grandchild, in the same process group, went too */
	assert_true(hx_wait_for(hx, pid_gone, &child, WAIT_MS));
	hx_close(hx);
}

static void test_environment(void **state)
{
	char envfile[] = "/tmp/test_exec_env.XXXXXX";
	char *unit = NULL;
	int fd = mkstemp(envfile);
	struct hx *hx;
	struct flt_task *t;

	assert_true(fd >= 0);
	assert_true(write(fd, "# comment\nC=from file\nB = 3\nQ=\"quoted value\"\n", 45) == 45);
	close(fd);
	assert_true(asprintf(&unit,
	                     "[Service]\nType=oneshot\nEnvironment=\"A=hello  world\" B=2\n"
	                     "EnvironmentFile=%s\nEnvironmentFile=-/no/such/file\n"
	                     "WorkingDirectory=/usr\n"
	                     "ExecStart=/bin/sh -c 'echo \"A=$A B=$B C=$C Q=$Q pwd=$(pwd)\"'\n"
	                     "ExecStart=/usr/bin/printf [%%s] ${A} $A $$B\n",
	                     envfile) > 0);
	hx = open_hx();
	t = hx_task(hx, "env.service", unit);
	assert_int_equal(hx_start(hx, t), 0);
	WAIT_STATE(hx, t, FLT_INACTIVE, "dead");
	assert_string_equal(hx_output(hx, t),
	                    "A=hello  world B=3 C=from file Q=quoted value pwd=/usr\n"
	                    "[hello  world][hello][world][$B]");
	hx_close(hx);
	unlink(envfile);
	free(unit);
}

static void test_user(void **state)
{
	struct hx *hx;
	struct flt_task *t;

	if (getuid() != 0)
		skip();
	hx = open_hx();
	t = hx_task(hx, "user.service",
	            "[Service]\nType=oneshot\nUser=nobody\nExecStart=/bin/sh -c 'id -un; id -u; "
	            "echo $HOME $USER'\nExecStart=+/usr/bin/id -un\n");
	assert_int_equal(hx_start(hx, t), 0);
	WAIT_STATE(hx, t, FLT_INACTIVE, "dead");
	assert_string_equal(hx_output(hx, t), "nobody\n65534\n/nonexistent nobody\nroot\n");
	hx_close(hx);
}

static void test_quoting(void **state)
{
	struct hx *hx = open_hx();
	struct flt_task *t = hx_task(hx, "quote.service",
	                             "[Service]\nType=oneshot\n"
	                             "ExecStart=/usr/bin/printf \"<%s>\" \"a  b\" 'c d' e\\x41 "
	                             "\"q\\\"x\" x\"y z\"w ''\n"
	                             "ExecStart=@/bin/sh renamed -c 'echo $0'\n");

	assert_int_equal(hx_start(hx, t), 0);
	WAIT_STATE(hx, t, FLT_INACTIVE, "dead");
	assert_string_equal(hx_output(hx, t), "<a  b><c d><eA><q\"x><xy zw><>renamed\n");
	hx_close(hx);
}

static void test_missing_binary(void **state)
{
	struct hx *hx = open_hx();
	struct flt_task *t = hx_task(hx, "nosuch.service", "[Service]\nExecStart=/no/such arg\n");
	struct flt_task *t2 =
	    hx_task(hx, "nouser.service", "[Service]\nUser=no-such-user-x\nExecStart=/bin/true\n");
	const struct hx_status *st;

	assert_int_equal(hx_start(hx, t), 0);
	WAIT_STATE(hx, t, FLT_FAILED, "failed");
	st = hx_last_status(hx, t);
	assert_non_null(st->message);
	assert_string_equal(st->message, "cannot execute '/no/such': No such file or directory");
	assert_int_equal(st->exit_code, 203);

	assert_int_equal(hx_start(hx, t2), 0);
	WAIT_STATE(hx, t2, FLT_FAILED, "failed");
	assert_string_equal(hx_last_status(hx, t2)->message, "cannot find user 'no-such-user-x'");
	hx_close(hx);
}

static void test_start_timeout(void **state)
{
	struct hx *hx = open_hx();
	struct flt_task *t =
	    hx_task(hx, "slowpre.service",
	            "[Service]\nTimeoutStartSec=300ms\nExecStartPre=/bin/sleep 30\n"
	            "ExecStart=/bin/sleep 60\n");

	assert_int_equal(hx_start(hx, t), 0);
	WAIT_STATE(hx, t, FLT_FAILED, "failed");
	assert_string_equal(hx_last_status(hx, t)->result, "timeout");
	hx_close(hx);
}

static void test_release_adopt(void **state)
{
	char base[] = "/tmp/test_exec_adopt.XXXXXX";
	const char *unit = "[Service]\nExecStart=/bin/sh -c \"n=0; while true; do echo tick $n; "
	                   "n=$((n+1)); sleep 0.1; done; : adopt-marker-e7\"\n";
	struct hx *hx1, *hx2;
	struct flt_task *t1, *t2;
	char *handle;
	long pid;

	assert_non_null(mkdtemp(base));
	hx1 = hx_open_in(EXEC_SO, drv_kv, base);
	assert_non_null(hx1);
	t1 = hx_task(hx1, "adopt.service", unit);
	assert_int_equal(hx_start(hx1, t1), 0);
	WAIT_STATE(hx1, t1, FLT_ACTIVE, "running");
	WAIT_OUTPUT(hx1, t1, "tick 2");
	pid = (long)hx_last_status(hx1, t1)->main_pid;
	handle = strdup(hx_handle(hx1, t1));
	hx_release(hx1, t1);
	hx_close(hx1);
	assert_int_equal(count_marked("adopt-marker-e7"), 1);

	/* a "restarted daemon" */
	hx2 = hx_open_in(EXEC_SO, drv_kv, base);
	assert_non_null(hx2);
	t2 = hx_task(hx2, "adopt.service", unit);
	assert_int_equal(hx_adopt(hx2, t2, handle), 0);
	WAIT_STATE(hx2, t2, FLT_ACTIVE, "running");
	assert_int_equal(hx_last_status(hx2, t2)->main_pid, pid);
	WAIT_OUTPUT(hx2, t2, "tick");
	{
		/* new output keeps coming, still under the same process' ident */
		const char *o = strrchr(hx_output(hx2, t2), 'k');
		char next[32];

		snprintf(next, sizeof(next), "tick %ld\n", atol(o + 2) + 2);
		WAIT_OUTPUT(hx2, t2, next);
	}
	{
		char ident[64];

		snprintf(ident, sizeof(ident), "sh[%ld]", pid);
		assert_string_equal(hx_last_ident(hx2, t2), ident);
	}
	assert_int_equal(count_marked("adopt-marker-e7"), 1);

	/* a second adopt of the same run is refused, not a second instance */
	assert_int_equal(hx_adopt(hx2, t2, handle), -EALREADY);

	/* released again; this time the process ends while no one watches */
	hx_release(hx2, t2);
	assert_int_equal(kill((pid_t)pid, SIGKILL), 0);
	assert_true(hx_wait_for(hx2, pid_gone, &pid, WAIT_MS));
	{
		struct flt_task *t3 = hx_task(hx2, "adopt.service", unit);
		int r = -1;

		/* whether the shim is still finishing or already gone, the end is known */
		r = hx_adopt(hx2, t3, handle);
		assert_int_equal(r, 0);
		WAIT_STATE(hx2, t3, FLT_FAILED, "failed");
		assert_string_equal(hx_last_status(hx2, t3)->result, "signal");
		assert_int_equal(hx_last_status(hx2, t3)->exit_signal, 9);
	}
	hx_close(hx2);
	assert_int_equal(count_marked("adopt-marker-e7"), 0);
	free(handle);
	{
		char *cmd = NULL;

		assert_true(asprintf(&cmd, "rm -rf '%s'", base) > 0);
		assert_int_equal(system(cmd), 0);
		free(cmd);
	}
}

static void test_adopt_gone(void **state)
{
	struct hx *hx = open_hx();
	struct flt_task *t = hx_task(hx, "gone.service", "[Service]\nExecStart=/bin/sleep 60\n");

	/* pid 1 exists but is not our shim: its starttime does not match */
	assert_int_equal(hx_adopt(hx, t, "1:12345:1:1"), -ENOENT);
	hx_close(hx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_simple_output),
	    cmocka_unit_test(test_pre_chain),
	    cmocka_unit_test(test_pre_fails),
	    cmocka_unit_test(test_oneshot),
	    cmocka_unit_test(test_forking),
	    cmocka_unit_test(test_exit_code_and_signal),
	    cmocka_unit_test(test_stop_timeout_sigkill),
	    cmocka_unit_test(test_kill_signal_and_group),
	    cmocka_unit_test(test_environment),
	    cmocka_unit_test(test_user),
	    cmocka_unit_test(test_quoting),
	    cmocka_unit_test(test_missing_binary),
	    cmocka_unit_test(test_start_timeout),
	    cmocka_unit_test(test_release_adopt),
	    cmocka_unit_test(test_adopt_gone),
	};

	/* Children of a unit must not inherit an ignored SIGPIPE from the test runner. */
	signal(SIGPIPE, SIG_DFL);
	if (getenv("TEST_FILTER"))
		cmocka_set_test_filter(getenv("TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
