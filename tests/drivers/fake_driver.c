/* A runtime driver for the runner's tests: it runs nothing, but behaves the way the unit text's
 * [X-Fake] section tells it (ExitAfterMs=, ExitCode=, ExitSignal=, StartErrno=, StartFail=,
 * Output=, StopDelayMs=) and keeps its "runs" as files under the "fake-dir" driver option, so
 * that a test can count starts and stops and see adoption and stray removal across daemon
 * restarts (the .so is unloaded in between). Built several times with -D switches to test the
 * loader's refusals (FAKE_ABI_MAJOR, FAKE_OPS_SMALL, FAKE_NO_ENTRY) and a second runtime
 * (FAKE_NAME). */
#include <dirent.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "flotilla/driver.h"

#ifdef FAKE_ABI_MAJOR
#define FAKE_ABI_MINOR 0 /* a driver from another major: "ABI 2.0" in the refusal */
#else
#define FAKE_ABI_MINOR FLT_DRV_ABI_MINOR
#endif
#ifndef FAKE_ABI_MAJOR
#define FAKE_ABI_MAJOR FLT_DRV_ABI_MAJOR
#endif
#ifndef FAKE_NAME
#define FAKE_NAME "fake"
#endif

struct flt_drv {
	const struct flt_host *h;
	char *dir; /* fake-dir, or NULL: nothing persists */
	unsigned seq;
};

struct fake_run {
	struct flt_drv *d;
	struct flt_task *t;
	ev_timer exit_timer;
	ev_timer stop_timer;
	char handle[96];
	int64_t pid;
};

/* Test-only file helpers: blocking is fine in a test driver. */
static void fake_path(const struct flt_drv *d, const char *a, const char *b, char *out, size_t n)
{
	snprintf(out, n, "%s/%s%s%s", d->dir, a, b ? "/" : "", b ? b : "");
}

static void fake_append(const struct flt_drv *d, const char *file, const char *line)
{
	char path[4096];
	int fd;

	if (!d->dir)
		return;
	fake_path(d, file, NULL, path, sizeof(path));
	fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0)
		return;
	if (write(fd, line, strlen(line)) < 0)
		flt_log(d->h, FLT_LOG_WARN, "cannot write '%s'", path);
	close(fd);
}

static long fake_opt_long(const struct flt_task *t, const char *name, long def)
{
	const char *v = flt_task_option(t, "X-Fake", name);

	return v ? strtol(v, NULL, 10) : def;
}

static void fake_run_free(struct fake_run *run)
{
	ev_timer_stop(run->d->h->loop, &run->exit_timer);
	ev_timer_stop(run->d->h->loop, &run->stop_timer);
	run->t->drv_data = NULL;
	free(run);
}

static void fake_forget_file(struct fake_run *run)
{
	char path[4096];

	if (!run->d->dir)
		return;
	fake_path(run->d, "runs", run->handle, path, sizeof(path));
	unlink(path);
}

/* The main process ends on its own, as ExitCode=/ExitSignal= say. */
static void fake_exit_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct fake_run *run =
	    (struct fake_run *)((char *)w - offsetof(struct fake_run, exit_timer));
	const struct flt_host *h = run->d->h;
	struct flt_task *t = run->t;
	int code = (int)fake_opt_long(t, "ExitCode", 0);
	int sig = (int)fake_opt_long(t, "ExitSignal", 0);
	const char *msg = flt_task_option(t, "X-Fake", "ExitOutput");
	struct flt_status st = {0};
	char ident[64];

	if (msg) {
		snprintf(ident, sizeof(ident), "fake[%lld]", (long long)run->pid);
		h->task_output(t, ident, msg, strlen(msg));
		h->task_output(t, ident, "\n", 1);
	}
	fake_forget_file(run);
	fake_run_free(run);
	st.exit_code = sig ? -1 : code;
	st.exit_signal = sig;
	st.result = sig ? "signal" : code ? "exit-code" : "success";
	st.active = (sig && sig != 15 && sig != 1 && sig != 2 && sig != 13) || code ? FLT_FAILED
	                                                                            : FLT_INACTIVE;
	st.sub = st.active == FLT_FAILED ? "failed" : "dead";
	h->task_status(t, &st);
}

static void fake_stopped(struct fake_run *run)
{
	const struct flt_host *h = run->d->h;
	struct flt_task *t = run->t;
	struct flt_status st = {.active = FLT_INACTIVE,
	                        .sub = "dead",
	                        .exit_code = -1,
	                        .exit_signal = 15,
	                        .result = "success"};

	fake_forget_file(run);
	fake_run_free(run);
	h->task_status(t, &st);
}

static void fake_stop_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	fake_stopped((struct fake_run *)((char *)w - offsetof(struct fake_run, stop_timer)));
}

static struct fake_run *fake_run_new(struct flt_drv *d, struct flt_task *t)
{
	struct fake_run *run = calloc(1, sizeof(*run));

	if (!run)
		return NULL;
	run->d = d;
	run->t = t;
	ev_timer_init(&run->exit_timer, fake_exit_cb, 0, 0);
	ev_timer_init(&run->stop_timer, fake_stop_cb, 0, 0);
	t->drv_data = run;
	return run;
}

static int fake_open(const struct flt_host *host, const struct flt_drv_config *cfg,
                     struct flt_drv **ret, const char **why)
{
	struct flt_drv *d;

	for (size_t i = 0; i < cfg->n; i++)
		if (!strcmp(cfg->keys[i], "fake-fail-open") && !strcmp(cfg->values[i], FAKE_NAME)) {
			*why = FAKE_NAME ": cannot connect to the fake daemon";
			return -ECONNREFUSED;
		}
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->h = host;
	for (size_t i = 0; i < cfg->n; i++)
		if (!strcmp(cfg->keys[i], "fake-dir")) {
			free(d->dir);
			d->dir = strdup(cfg->values[i]);
		}
	if (d->dir) {
		char path[4096];

		fake_path(d, "runs", NULL, path, sizeof(path));
		mkdir(path, 0755);
	}
	*ret = d;
	return 0;
}

static int fake_start(struct flt_drv *d, struct flt_task *t)
{
	long err = fake_opt_long(t, "StartErrno", 0);
	const char *fail = flt_task_option(t, "X-Fake", "StartFail");
	const char *out = flt_task_option(t, "X-Fake", "Output");
	const char *pre = flt_task_option(t, "Service", "ExecStartPre");
	long exit_ms = fake_opt_long(t, "ExitAfterMs", -1);
	struct fake_run *run;
	char line[512], ident[64];

	snprintf(line, sizeof(line), "%s\n", t->unit);
	fake_append(d, "starts.log", line);
	if (err > 0)
		return -(int)err;
	if (fail) {
		struct flt_status st = {.active = FLT_FAILED,
		                        .sub = "failed",
		                        .exit_code = -1,
		                        .result = "resources",
		                        .message = fail};

		t->drv_data = NULL;
		d->h->task_status(t, &st);
		return 0;
	}
	run = fake_run_new(d, t);
	if (!run)
		return -ENOMEM;
	run->pid = 1000 + (int64_t)++d->seq;
	snprintf(run->handle, sizeof(run->handle), "f%lld-%lld", (long long)time(NULL) % 100000,
	         (long long)getpid() * 1000 + run->pid);
	if (d->dir) {
		char path[4096];

		fake_path(d, "runs", run->handle, path, sizeof(path));
		int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd >= 0) {
			if (write(fd, t->unit, strlen(t->unit)) < 0)
				flt_log(d->h, FLT_LOG_WARN, "cannot write '%s'", path);
			close(fd);
		}
	}
	if (pre) {
		struct flt_process p = {
		    .kind = "ExecStartPre", .argv0_line = pre, .pid = run->pid - 1, .exit_code = 0};

		d->h->task_process(t, &p);
	}
	struct flt_status st = {.active = FLT_ACTIVE,
	                        .sub = "running",
	                        .main_pid = run->pid,
	                        .handle = run->handle,
	                        .exit_code = -1};
	d->h->task_status(t, &st);
	if (out) {
		snprintf(ident, sizeof(ident), "fake[%lld]", (long long)run->pid);
		d->h->task_output(t, ident, out, strlen(out));
		d->h->task_output(t, ident, "\n", 1);
	}
	if (exit_ms >= 0) {
		ev_timer_set(&run->exit_timer, (double)exit_ms / 1000.0, 0);
		ev_timer_start(d->h->loop, &run->exit_timer);
	}
	return 0;
}

static int fake_stop(struct flt_drv *d, struct flt_task *t, unsigned timeout_ms)
{
	struct fake_run *run = t->drv_data;
	long delay = fake_opt_long(t, "StopDelayMs", 0);
	char line[512];

	snprintf(line, sizeof(line), "%s %u\n", t->unit, timeout_ms);
	fake_append(d, "stops.log", line);
	if (!run)
		return -ESRCH;
	{
		struct flt_status st = {.active = FLT_DEACTIVATING,
		                        .sub = "stop-sigterm",
		                        .main_pid = run->pid,
		                        .exit_code = -1};
		d->h->task_status(t, &st);
	}
	if (delay > 0) {
		ev_timer_stop(d->h->loop, &run->exit_timer);
		ev_timer_set(&run->stop_timer, (double)delay / 1000.0, 0);
		ev_timer_start(d->h->loop, &run->stop_timer);
		return 0;
	}
	fake_stopped(run);
	return 0;
}

static int fake_adopt(struct flt_drv *d, struct flt_task *t)
{
	char path[4096], line[512];
	struct fake_run *run;

	snprintf(line, sizeof(line), "%s %s\n", t->unit, t->handle ? t->handle : "-");
	fake_append(d, "adopts.log", line);
	if (!d->dir || !t->handle)
		return -ENOENT;
	fake_path(d, "runs", t->handle, path, sizeof(path));
	if (access(path, F_OK) < 0)
		return -ENOENT;
	run = fake_run_new(d, t);
	if (!run)
		return -ENOMEM;
	snprintf(run->handle, sizeof(run->handle), "%s", t->handle);
	run->pid = 4242;
	struct flt_status st = {
	    .active = FLT_ACTIVE, .sub = "running", .main_pid = run->pid, .exit_code = -1};
	d->h->task_status(t, &st);
	return 0;
}

static void fake_release(struct flt_drv *d, struct flt_task *t)
{
	if (t->drv_data)
		fake_run_free(t->drv_data);
}

static int fake_list(struct flt_drv *d, void (*cb)(void *ctx, const char *unit, const char *handle),
                     void *ctx)
{
	char path[4096];
	struct dirent *de;
	DIR *dir;

	if (!d->dir) {
		cb(ctx, NULL, NULL);
		return 0;
	}
	fake_path(d, "runs", NULL, path, sizeof(path));
	dir = opendir(path);
	if (!dir) {
		cb(ctx, NULL, NULL);
		return 0;
	}
	while ((de = readdir(dir))) {
		char unit[512] = "";
		ssize_t n;
		int fd;

		if (de->d_name[0] == '.')
			continue;
		fake_path(d, "runs", de->d_name, path, sizeof(path));
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		n = read(fd, unit, sizeof(unit) - 1);
		close(fd);
		unit[n > 0 ? n : 0] = '\0';
		cb(ctx, unit, de->d_name);
	}
	closedir(dir);
	cb(ctx, NULL, NULL); /* the end of the list (driver.h) */
	return 0;
}

static int fake_remove(struct flt_drv *d, const char *handle)
{
	char path[4096], line[512];

	if (!d->dir)
		return -ENOENT;
	fake_path(d, "runs", handle, path, sizeof(path));
	unlink(path);
	snprintf(line, sizeof(line), "%s\n", handle);
	fake_append(d, "removed.log", line);
	return 0;
}

static void fake_close(struct flt_drv *d)
{
	if (!d)
		return;
	free(d->dir);
	free(d);
}

static const struct flt_drv_ops fake_ops = {
    .abi_major = FAKE_ABI_MAJOR,
    .abi_minor = FAKE_ABI_MINOR,
#ifdef FAKE_OPS_SMALL
    .ops_size = offsetof(struct flt_drv_ops, adopt),
#else
    .ops_size = sizeof(struct flt_drv_ops),
#endif
    .name = FAKE_NAME,
    .open = fake_open,
    .start = fake_start,
    .stop = fake_stop,
    .adopt = fake_adopt,
    .release = fake_release,
    .list = fake_list,
    .remove = fake_remove,
    .close = fake_close,
};

#ifndef FAKE_NO_ENTRY
const struct flt_drv_ops *flt_driver_entry(void)
{
	return &fake_ops;
}
#else
/* Exported under another name: the loader must refuse the file for lacking the entry point. */
const struct flt_drv_ops *fake_not_the_entry(void);
const struct flt_drv_ops *fake_not_the_entry(void)
{
	return &fake_ops;
}
#endif
