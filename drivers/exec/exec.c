/* The exec runtime driver: runs a unit's [Service] commands as plain processes with systemd's
 * semantics (ExecStartPre/ExecStart/ExecStartPost/ExecStop/ExecStopPost, Type=simple|oneshot|
 * forking, timeouts, KillSignal to the whole process group, environment, user) and reports the
 * sub states systemd would show.
 *
 * Every command runs under flotilla-exec-shim (shim.c), not as a direct child of the daemon. The
 * shim holds the command's stdout/stderr pipe and its exit status, so when flotillad restarts the
 * main process keeps its pipe open (nothing gets SIGPIPE), and the new daemon can reconnect: the
 * main shim listens on an abstract unix socket named by its pid and writes the exit status into
 * the unit's state_dir for a daemon that was away when the process ended. The handle is
 * "<shim pid>:<shim starttime>:<main pid>:<pgid>": adopt() checks /proc/<pid>/stat's starttime so
 * a recycled pid is never taken for the shim, then watches the reconnected socket. Watching the
 * socket rather than the pid (pidfd, /proc polling) needs no second mechanism: EOF means the shim
 * is gone, and its last frame or the status file says how the command ended. The [Service]
 * options are read in options.c; this file is the command chain, the shims and the ABI. */
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <flotilla/driver.h>

#include "../common/drvutil.h"
#include "options.h"
#include "shim.h"
#include "util/buf.h"
#include "util/util.h"

#ifndef FLT_EXEC_SHIM
#define FLT_EXEC_SHIM "/usr/local/libexec/flotilla/flotilla-exec-shim"
#endif

struct exec_drv {
	const struct flt_host *host;
	char *shim_path;
	struct exec_task *tasks; /* live ones, for close() */
	struct exec_task *dead;  /* reported dead; freed from `reaper` (never inside a callback) */
	ev_timer reaper;
};

enum phase {
	PH_IDLE,
	PH_START_PRE,
	PH_START,
	PH_START_POST,
	PH_RUNNING,
	PH_EXITED,
	PH_STOP,
	PH_STOP_SIGTERM,
	PH_STOP_SIGKILL,
	PH_STOP_POST,
	PH_DEAD,
};

struct run {
	struct exec_task *et;
	struct run *next; /* et->runs: every shim of the task still alive */
	bool ended;       /* its command ended (the shim may linger for leftover processes) */
	const char *kind;
	const struct exec_cmd *cmd;
	bool is_main;
	pid_t shim_pid;
	bool is_child, reaped, eof;
	int shim_status;
	int fd;
	ev_io io;
	ev_child child;
	struct buf in;
	long pid, pgid; /* the command (its own process group) */
	long main_pid;  /* Type=forking: the daemon it left behind */
	char *argv0, *ident;
	bool got_exit, got_start;
	int code, sig;
	char *fail_msg;
};

struct exec_task {
	struct exec_drv *d;
	struct flt_task *t;
	struct exec_task *next;
	struct exec_conf conf; /* its [Service] options */

	enum phase phase;
	size_t idx;
	struct run *runs;           /* all shims not yet gone, main and control included */
	struct run *main, *control; /* whose command is still running */
	long main_pid, main_pgid, forked_pgid;
	bool main_ended;
	ev_timer timer; /* the phase's timeout */
	/* The outcome being built up: first failure wins, like systemd's Result. */
	const char *result;
	int code, sig;
	char *message;
	char *handle;
	bool adopted;
};

static void task_stop_sigterm(struct exec_task *et, const char *result);
static void task_stop_post(struct exec_task *et);
static void task_next(struct exec_task *et);
static int read_status_file(struct exec_task *et, int *code, int *sig);

/* ---- small helpers ---- */

static void dlog(struct exec_task *et, enum flt_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void dlog(struct exec_task *et, enum flt_log_level lvl, const char *fmt, ...)
{
	struct buf b = BUF_INIT;
	va_list ap;

	va_start(ap, fmt);
	if (buf_puts(&b, et->t->unit) == 0 && buf_puts(&b, ": ") == 0 &&
	    buf_vprintf(&b, fmt, ap) == 0)
		flt_log(et->d->host, lvl, "%s", b.data);
	va_end(ap);
	buf_release(&b);
}

static void run_free(struct run *r);

static void task_free(struct exec_task *et)
{
	if (!et)
		return;
	while (et->runs) {
		struct run *next = et->runs->next;

		run_free(et->runs);
		et->runs = next;
	}
	exec_conf_release(&et->conf);
	free(et->message);
	free(et->handle);
	free(et);
}

/* ---- reports ---- */

static const char *sub_of(enum phase ph, enum flt_active *ret_active)
{
	static const struct {
		enum flt_active a;
		const char *sub;
	} map[] = {
	    [PH_IDLE] = {FLT_INACTIVE, "dead"},
	    [PH_START_PRE] = {FLT_ACTIVATING, "start-pre"},
	    [PH_START] = {FLT_ACTIVATING, "start"},
	    [PH_START_POST] = {FLT_ACTIVATING, "start-post"},
	    [PH_RUNNING] = {FLT_ACTIVE, "running"},
	    [PH_EXITED] = {FLT_ACTIVE, "exited"},
	    [PH_STOP] = {FLT_DEACTIVATING, "stop"},
	    [PH_STOP_SIGTERM] = {FLT_DEACTIVATING, "stop-sigterm"},
	    [PH_STOP_SIGKILL] = {FLT_DEACTIVATING, "stop-sigkill"},
	    [PH_STOP_POST] = {FLT_DEACTIVATING, "stop-post"},
	    [PH_DEAD] = {FLT_INACTIVE, "dead"},
	};

	*ret_active = map[ph].a;
	return map[ph].sub;
}

static void report(struct exec_task *et)
{
	struct flt_status st = {0};

	st.sub = sub_of(et->phase, &st.active);
	st.main_pid = et->main_ended ? 0 : et->main_pid;
	st.handle = et->handle;
	st.exit_code = -1;
	et->d->host->task_status(et->t, &st);
}

static void set_phase(struct exec_task *et, enum phase ph)
{
	if (et->phase == ph)
		return;
	et->phase = ph;
	report(et);
}

/* Record the first failure, as systemd keeps the first non-success Result. */
static void set_result(struct exec_task *et, const char *result, int code, int sig)
{
	if (et->result && strcmp(et->result, "success"))
		return;
	et->result = result;
	et->code = code;
	et->sig = sig;
}

static void set_message(struct exec_task *et, const char *msg)
{
	if (et->message || !msg)
		return;
	et->message = strdup(msg);
}

static void reaper_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct exec_drv *d = container_of(w, struct exec_drv, reaper);

	while (d->dead) {
		struct exec_task *next = d->dead->next;

		task_free(d->dead);
		d->dead = next;
	}
}

static void unlink_task(struct exec_task *et)
{
	for (struct exec_task **p = &et->d->tasks; *p; p = &(*p)->next)
		if (*p == et) {
			*p = et->next;
			break;
		}
	et->next = NULL;
}

/* The end: the final report, after which the host may free the task (and even start it again
 * from inside the callback), so our state is detached first and freed later. */
static void task_dead(struct exec_task *et)
{
	struct exec_drv *d = et->d;
	struct flt_task *t = et->t;
	bool ok = !et->result || !strcmp(et->result, "success");
	struct flt_status st = {0};

	ev_timer_stop(d->host->loop, &et->timer);
	et->phase = PH_DEAD;
	unlink_task(et);
	et->next = d->dead;
	d->dead = et;
	ev_timer_start(d->host->loop, &d->reaper);
	if (t->drv_data == et)
		t->drv_data = NULL;

	st.active = ok ? FLT_INACTIVE : FLT_FAILED;
	st.sub = ok ? "dead" : "failed";
	st.exit_code = et->code;
	st.exit_signal = et->sig;
	st.result = et->result ? et->result : "success";
	st.message = et->message;
	d->host->task_status(t, &st);
}

/* ---- runs (one shim each) ---- */

static void run_free(struct run *r)
{
	struct ev_loop *loop;

	if (!r)
		return;
	loop = r->et->d->host->loop;
	ev_io_stop(loop, &r->io);
	ev_child_stop(loop, &r->child);
	if (r->fd >= 0)
		close(r->fd);
	buf_release(&r->in);
	free(r->argv0);
	free(r->ident);
	free(r->fail_msg);
	free(r);
}

static void run_set_ident(struct run *r, long pid)
{
	struct buf b = BUF_INIT;

	if (buf_printf(&b, "%s[%ld]", r->argv0 ? r->argv0 : "?", pid) == 0) {
		free(r->ident);
		r->ident = buf_steal(&b);
	}
	buf_release(&b);
}

/* Reads a small file whole into data (NUL-terminated, at most size - 1 bytes). Returns 0, -errno
 * of open, or -EIO when nothing could be read. */
static int read_small(const char *path, char *data, size_t size)
{
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	n = read(fd, data, size - 1);
	close(fd);
	if (n <= 0)
		return -EIO;
	data[n] = '\0';
	return 0;
}

static int shim_starttime(long pid, unsigned long long *ret)
{
	struct buf path = BUF_INIT;
	char data[1024], *p;
	int r;

	if (buf_printf(&path, "/proc/%ld/stat", pid) < 0)
		return -ENOMEM;
	r = read_small(path.data, data, sizeof(data));
	buf_release(&path);
	if (r < 0)
		return r;
	/* comm may hold spaces and parens: fields count from the last ')'. starttime is field 22.
	 */
	p = strrchr(data, ')');
	if (!p)
		return -EIO;
	p++;
	for (int field = 3; field < 22; field++) {
		p = strchr(p + 1, ' ');
		if (!p)
			return -EIO;
	}
	*ret = strtoull(p + 1, NULL, 10);
	return 0;
}

static void make_handle(struct exec_task *et, struct run *r)
{
	unsigned long long st = 0;
	struct buf b = BUF_INIT;

	shim_starttime(r->shim_pid, &st);
	if (buf_printf(&b, "%ld:%llu:%ld:%ld", (long)r->shim_pid, st, et->main_pid,
	               et->forked_pgid ? et->forked_pgid : r->pgid) == 0) {
		free(et->handle);
		et->handle = buf_steal(&b);
	}
	buf_release(&b);
}

static void run_end(struct run *r);
static void run_close(struct run *r);

/* The shim is gone once its socket is closed and (if ours) it is reaped. */
static void run_maybe_done(struct run *r)
{
	if (r->eof && (!r->is_child || r->reaped)) {
		if (!r->ended)
			run_end(r);
		run_close(r);
	}
}

static void fail_message(struct run *r, const char *payload)
{
	const char *verb = "cannot execute";
	char what[32] = "", detail[4096] = "";
	int err = 0;
	struct buf b = BUF_INIT;

	if (sscanf(payload, "%d %31s %4095[^\n]", &err, what, detail) < 2)
		return;
	if (!strcmp(what, "chdir"))
		verb = "cannot change to directory";
	else if (!strcmp(what, "user"))
		verb = "cannot find user";
	else if (!strcmp(what, "group"))
		verb = "cannot find group";
	else if (!strcmp(what, "envfile"))
		verb = "cannot read environment file";
	else if (!strcmp(what, "cmdline"))
		verb = "invalid command line";
	if (err == ESRCH && (!strcmp(what, "user") || !strcmp(what, "group")))
		buf_printf(&b, "%s '%s'", verb, detail);
	else
		buf_printf(&b, "%s '%s': %s", verb, detail, strerror(err));
	free(r->fail_msg);
	r->fail_msg = buf_steal(&b);
	buf_release(&b);
}

static void on_forking_started(struct exec_task *et, struct run *r);
static void enter_start_post(struct exec_task *et);

static void run_frame(struct run *r, int type, const char *p, size_t len)
{
	struct exec_task *et = r->et;
	struct buf s = BUF_INIT;

	if (type != SHIM_OUT && buf_append(&s, p, len) < 0)
		return;
	switch (type) {
	case SHIM_PID: {
		long pid = 0;
		char *name = NULL;

		if (sscanf(s.data, "%ld %ms", &pid, &name) >= 1) {
			r->pid = r->pgid = pid;
			free(r->argv0);
			r->argv0 = name;
			name = NULL;
			run_set_ident(r, r->main_pid ? r->main_pid : pid);
			if (r->is_main && !et->main_pid && et->conf.type != TYPE_FORKING) {
				et->main_pid = pid;
				et->main_pgid = pid;
				make_handle(et, r);
				if (et->phase == PH_START)
					enter_start_post(et);
			}
		}
		free(name);
		break;
	}
	case SHIM_MAIN:
		r->main_pid = strtol(s.data, NULL, 10);
		if (r->main_pid) {
			long pg = getpgid((pid_t)r->main_pid);

			et->main_pid = r->main_pid;
			et->main_pgid = pg > 1 ? pg : r->pgid;
			run_set_ident(r, r->main_pid);
		}
		if (r->got_start)
			on_forking_started(et, r);
		break;
	case SHIM_START:
		r->got_start = true;
		sscanf(s.data, "%d %d", &r->code, &r->sig);
		{
			struct flt_process pr = {r->kind, r->cmd->line, r->pid, r->code, r->sig};

			if (r->code != 0 || r->sig)
				pr.exit_code = r->sig ? -1 : r->code;
			et->d->host->task_process(et->t, &pr);
		}
		if (r->code != 0 || r->sig) {
			set_result(et, r->sig ? "signal" : "exit-code", r->sig ? -1 : r->code,
			           r->sig);
			set_message(et, r->fail_msg);
			r->got_exit = true;
		}
		break;
	case SHIM_OUT:
		if (r->ident)
			et->d->host->task_output(et->t, r->ident, p, len);
		break;
	case SHIM_FAIL:
		fail_message(r, s.data);
		break;
	case SHIM_EXIT:
		if (sscanf(s.data, "%d %d", &r->code, &r->sig) == 2) {
			r->got_exit = true;
			if (!r->ended)
				run_end(r);
		}
		break;
	default:
		break;
	}
	buf_release(&s);
}

static void run_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct run *r = container_of(w, struct run, io);
	char data[16384];
	ssize_t n;

	n = read(r->fd, data, sizeof(data));
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n > 0 && buf_append(&r->in, data, (size_t)n) < 0)
		n = -1;
	while (r->in.len >= SHIM_HDR_LEN) {
		uint32_t l;

		memcpy(&l, r->in.data + 1, 4);
		if (l > SHIM_MAX_FRAME * 4) {
			n = -1;
			break;
		}
		if (r->in.len < SHIM_HDR_LEN + l)
			break;
		run_frame(r, r->in.data[0], r->in.data + SHIM_HDR_LEN, l);
		buf_consume(&r->in, SHIM_HDR_LEN + l);
	}
	if (n <= 0) {
		ev_io_stop(loop, &r->io);
		close(r->fd);
		r->fd = -1;
		r->eof = true;
		run_maybe_done(r);
	}
}

static void run_child_cb(struct ev_loop *loop, ev_child *w, int revents)
{
	struct run *r = container_of(w, struct run, child);

	ev_child_stop(loop, w);
	r->reaped = true;
	r->shim_status = w->rstatus;
	run_maybe_done(r);
}

static void spawn_child(struct exec_task *et, int sock, char **argv) __attribute__((noreturn));
static void spawn_child(struct exec_task *et, int sock, char **argv)
{
	sigset_t none;
	int null;

	/* The shim must not inherit the daemon's signal state (libev blocks and catches signals).
	 */
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	for (int s = 1; s < NSIG; s++)
		signal(s, SIG_DFL);
	setsid();
	if (dup2(sock, 3) < 0)
		_exit(127);
	null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null >= 0) {
		dup2(null, 0);
		dup2(null, 1);
		dup2(null, 2);
	}
	/* Nothing of the daemon (listening sockets, the WAL) may live on in a unit's processes. */
	for (int fd = 4; fd < 65536; fd++) {
		if (close_range(4, ~0u, 0) == 0)
			break;
		close(fd);
	}
	execve(argv[0], argv, et->conf.env);
	_exit(127);
}

/* Start `c` under a shim. `is_main` gets the listening socket and the status file. */
static int run_spawn(struct exec_task *et, const char *kind, const struct exec_cmd *c, bool is_main,
                     struct run **ret)
{
	struct exec_drv *d = et->d;
	struct buf status = BUF_INIT;
	char **argv = NULL;
	size_t n = 0;
	int sv[2] = {-1, -1}, r;
	struct run *run;
	pid_t pid;

	run = calloc(1, sizeof(*run));
	if (!run)
		return -ENOMEM;
	run->et = et;
	run->kind = kind;
	run->cmd = c;
	run->is_main = is_main;
	run->fd = -1;
	run->code = -1;
	buf_init(&run->in);

	r = drv_strv_push(&argv, &n, d->shim_path);
	r = r ?: drv_strv_push(&argv, &n, "-s");
	r = r ?: drv_strv_push(&argv, &n, "3");
	if (is_main) {
		r = r ?: drv_strv_push(&argv, &n, "-l");
		r = r ?: buf_printf(&status, "%s/%s", et->t->state_dir, SHIM_STATUS_FILE);
		r = r ?: drv_strv_push(&argv, &n, "-S");
		r = r ?: drv_strv_push(&argv, &n, status.data);
		if (r >= 0)
			unlink(status.data);
	}
	if (et->conf.dir) {
		r = r ?: drv_strv_push(&argv, &n, "-d");
		r = r ?: drv_strv_push(&argv, &n, et->conf.dir);
	}
	if (et->conf.user && !c->privileged) {
		r = r ?: drv_strv_push(&argv, &n, "-u");
		r = r ?: drv_strv_push(&argv, &n, et->conf.user);
	}
	if (et->conf.group && !c->privileged) {
		r = r ?: drv_strv_push(&argv, &n, "-g");
		r = r ?: drv_strv_push(&argv, &n, et->conf.group);
	}
	for (size_t i = 0; i < et->conf.n_envfiles; i++) {
		r = r ?: drv_strv_push(&argv, &n, "-e");
		r = r ?: drv_strv_push(&argv, &n, et->conf.envfiles[i]);
	}
	if (is_main && et->conf.type == TYPE_FORKING) {
		r = r ?: drv_strv_push(&argv, &n, "-f");
		if (et->conf.pidfile) {
			r = r ?: drv_strv_push(&argv, &n, "-p");
			r = r ?: drv_strv_push(&argv, &n, et->conf.pidfile);
		}
	}
	if (c->argv0_swap)
		r = r ?: drv_strv_push(&argv, &n, "-a");
	if (c->noexpand)
		r = r ?: drv_strv_push(&argv, &n, "-E");
	r = r ?: drv_strv_push(&argv, &n, "--");
	r = r ?: drv_strv_push(&argv, &n, c->line);
	buf_release(&status);
	if (r < 0)
		goto fail;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		r = -errno;
		goto fail;
	}
	pid = fork();
	if (pid < 0) {
		r = -errno;
		goto fail;
	}
	if (pid == 0)
		spawn_child(et, sv[1], argv);
	close(sv[1]);
	sv[1] = -1;
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	run->fd = sv[0];
	run->shim_pid = pid;
	run->next = et->runs;
	et->runs = run;
	run->is_child = true;
	ev_child_init(&run->child, run_child_cb, pid, 0);
	ev_child_start(d->host->loop, &run->child);
	ev_io_init(&run->io, run_io_cb, run->fd, EV_READ);
	ev_io_start(d->host->loop, &run->io);
	drv_strv_free(argv);
	*ret = run;
	return 0;
fail:
	if (sv[0] >= 0)
		close(sv[0]);
	if (sv[1] >= 0)
		close(sv[1]);
	drv_strv_free(argv);
	run_free(run);
	return r;
}

/* How the run's command ended: from its last frame, else from the shim's own end. */
static void run_outcome(struct run *r, int *code, int *sig)
{
	if (r->got_exit) {
		*code = r->code;
		*sig = r->sig;
	} else if (r->reaped && WIFSIGNALED(r->shim_status)) {
		*code = -1;
		*sig = WTERMSIG(r->shim_status);
	} else if (r->reaped) {
		*code = WEXITSTATUS(r->shim_status);
		*sig = 0;
		if (*code == 127 && !r->fail_msg) {
			struct buf b = BUF_INIT;

			if (buf_printf(&b, "cannot execute '%s'", r->et->d->shim_path) == 0)
				r->fail_msg = buf_steal(&b);
			buf_release(&b);
		}
	} else if (!(r->is_main && read_status_file(r->et, code, sig) == 0)) {
		*code = -1;
		*sig = SIGKILL; /* the shim vanished without a word */
	}
}

static void kill_one_group(struct exec_task *et, long pgid, int sig)
{
	if (pgid > 1 && pgid != getpgrp()) {
		int r = kill((pid_t)-pgid, sig);

		dlog(et, FLT_LOG_DEBUG, "kill(-%ld, %d) = %d", pgid, sig, r);
	}
}

/* KillMode=control-group without cgroups: every process group the unit's commands started in,
 * and a forking daemon's own (it may have called setsid()). */
static void kill_groups(struct exec_task *et, int sig)
{
	for (int pass = 0; pass < (sig == SIGKILL || sig == SIGCONT ? 1 : 2); pass++) {
		/* then SIGCONT, so that stopped processes see the signal (systemd does the same) */
		int s = pass ? SIGCONT : sig;

		for (struct run *r = et->runs; r; r = r->next)
			kill_one_group(et, r->pgid, s);
		kill_one_group(et, et->main_pgid, s);
		kill_one_group(et, et->forked_pgid, s);
		if (et->main_pid > 1 && !et->main_ended)
			kill((pid_t)et->main_pid, s);
	}
}

/* Leftover processes stay children of their (subreaper) shim, so a shim that is gone means its
 * processes are all gone: no /proc polling, and zombies never count as alive. */
static bool anything_alive(struct exec_task *et)
{
	return et->runs != NULL;
}

/* ---- the chain ---- */

static void timer_arm(struct exec_task *et, unsigned ms)
{
	struct ev_loop *loop = et->d->host->loop;

	ev_timer_stop(loop, &et->timer);
	if (ms) {
		ev_timer_set(&et->timer, ms / 1000.0, 0.);
		ev_timer_start(loop, &et->timer);
	}
}

/* Starts the command list of ph (ExecStartPre= or ExecStop=) under a timeout of timeout_ms. */
static void enter_phase(struct exec_task *et, enum phase ph, unsigned timeout_ms)
{
	et->phase = ph;
	et->idx = 0;
	report(et);
	timer_arm(et, timeout_ms);
	task_next(et);
}

static const struct exec_cmdlist *phase_list(struct exec_task *et)
{
	switch (et->phase) {
	case PH_START_PRE:
		return &et->conf.pre;
	case PH_START:
		return &et->conf.start;
	case PH_START_POST:
		return &et->conf.post;
	case PH_STOP:
		return &et->conf.stop;
	case PH_STOP_POST:
		return &et->conf.stop_post;
	default:
		return NULL;
	}
}

static const char *phase_kind(enum phase ph)
{
	switch (ph) {
	case PH_START_PRE:
		return "ExecStartPre";
	case PH_START:
		return "ExecStart";
	case PH_START_POST:
		return "ExecStartPost";
	case PH_STOP:
		return "ExecStop";
	default:
		return "ExecStopPost";
	}
}

static void enter_running(struct exec_task *et)
{
	ev_timer_stop(et->d->host->loop, &et->timer);
	if (et->conf.type == TYPE_ONESHOT) {
		if (et->conf.remain) {
			free(et->handle);
			et->handle = strdup("exited");
			set_phase(et, PH_EXITED);
		} else {
			set_result(et, "success", -1, 0);
			enter_phase(et, PH_STOP, et->conf.stop_ms);
		}
		return;
	}
	if (et->main_ended) {
		/* It ended during start-post: the result was recorded when it did. */
		if (et->result && strcmp(et->result, "success"))
			task_stop_sigterm(et, NULL);
		else {
			enter_phase(et, PH_STOP, et->conf.stop_ms);
		}
		return;
	}
	set_phase(et, PH_RUNNING);
}

static void start_main(struct exec_task *et)
{
	struct run *r;
	int err = run_spawn(et, "ExecStart", &et->conf.start.v[0], true, &r);

	if (err < 0) {
		struct buf b = BUF_INIT;

		if (buf_printf(&b, "cannot start '%s': %s", et->d->shim_path, strerror(-err)) == 0)
			set_message(et, b.data);
		buf_release(&b);
		set_result(et, "resources", -1, 0);
		task_stop_post(et);
		return;
	}
	et->main = r;
	/* The pid is known once the shim's first frame arrives; the handle needs only the shim. */
	make_handle(et, r);
	if (et->conf.type == TYPE_FORKING) {
		et->forked_pgid = 0;
		return; /* stays in "start" until the start process ends (SHIM_START) */
	}
}

/* On to ExecStartPost=: Type=simple once the main process exists (its pid is known), oneshot
 * once every ExecStart= is done. systemd moves on at once and shows "start-post" only when there
 * is something to run. */
static void enter_start_post(struct exec_task *et)
{
	et->phase = PH_START_POST;
	et->idx = 0;
	if (et->conf.post.n)
		report(et);
	task_next(et);
}

static void on_forking_started(struct exec_task *et, struct run *r)
{
	if (et->phase != PH_START)
		return;
	if (r->code != 0 || r->sig)
		return; /* the exit frame follows; run_finished fails the unit */
	et->forked_pgid = r->pgid;
	make_handle(et, r);
	et->phase = PH_START_POST;
	et->idx = 0;
	report(et);
	task_next(et);
}

/* Run the next command of the current list, or move on to the next phase. */
static void task_next(struct exec_task *et)
{
	const struct exec_cmdlist *l = phase_list(et);
	struct run *r;
	int err;

	if (l && et->idx < l->n) {
		if (et->phase == PH_START && et->conf.type != TYPE_ONESHOT) {
			start_main(et);
			return;
		}
		err = run_spawn(et, phase_kind(et->phase), &l->v[et->idx], false, &r);
		if (err < 0) {
			set_result(et, "resources", -1, 0);
			set_message(et, "cannot start the exec shim");
			if (et->phase == PH_STOP_POST)
				task_dead(et);
			else
				task_stop_sigterm(et, NULL);
			return;
		}
		et->control = r;
		return;
	}
	switch (et->phase) {
	case PH_START_PRE:
		et->phase = PH_START;
		et->idx = 0;
		if (et->conf.type == TYPE_ONESHOT || et->conf.type == TYPE_FORKING ||
		    !et->conf.post.n) {
			/* simple: systemd goes straight on; only oneshot/forking show "start" */
			if (et->conf.type != TYPE_SIMPLE)
				report(et);
		}
		if (et->conf.type == TYPE_SIMPLE) {
			/* on to start-post when the shim has said the pid (main_started) */
			start_main(et);
			return;
		}
		task_next(et);
		return;
	case PH_START:
		/* oneshot: every ExecStart= done */
		enter_start_post(et);
		return;
	case PH_START_POST:
		enter_running(et);
		return;
	case PH_STOP:
		task_stop_sigterm(et, NULL);
		return;
	case PH_STOP_POST:
		task_dead(et);
		return;
	default:
		return;
	}
}

/* Signal what is left (KillSignal), wait up to the stop timeout, then SIGKILL. `result` (or
 * NULL) is recorded first. */
static void task_stop_sigterm(struct exec_task *et, const char *result)
{
	if (result)
		set_result(et, result, -1, 0);
	if (!anything_alive(et)) {
		task_stop_post(et);
		return;
	}
	et->phase = PH_STOP_SIGTERM;
	report(et);
	kill_groups(et, et->conf.kill_signal);
	timer_arm(et, et->conf.stop_ms);
}

static void task_stop_sigkill(struct exec_task *et)
{
	et->phase = PH_STOP_SIGKILL;
	report(et);
	kill_groups(et, SIGKILL);
	/* SIGKILL cannot be refused; the timer only guards against a process stuck in the kernel.
	 */
	timer_arm(et, et->conf.stop_ms ? et->conf.stop_ms : EXEC_DEFAULT_TIMEOUT_MS);
}

static void task_stop_post(struct exec_task *et)
{
	struct ev_loop *loop = et->d->host->loop;

	et->phase = PH_STOP_POST;
	et->idx = 0;
	if (et->conf.stop_post.n) {
		report(et);
		timer_arm(et, et->conf.stop_ms);
	} else {
		ev_timer_stop(loop, &et->timer);
	}
	task_next(et);
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct exec_task *et = container_of(w, struct exec_task, timer);

	switch (et->phase) {
	case PH_START_PRE:
	case PH_START:
	case PH_START_POST:
		dlog(et, FLT_LOG_WARN, "start operation timed out, terminating");
		task_stop_sigterm(et, "timeout");
		break;
	case PH_STOP:
		dlog(et, FLT_LOG_WARN, "stop operation timed out, terminating");
		task_stop_sigterm(et, "timeout");
		break;
	case PH_STOP_SIGTERM:
		dlog(et, FLT_LOG_WARN, "state 'stop-sigterm' timed out, killing");
		set_result(et, "timeout", -1, 0);
		task_stop_sigkill(et);
		break;
	case PH_STOP_SIGKILL:
		dlog(et, FLT_LOG_WARN, "processes still around after SIGKILL, ignoring");
		task_stop_post(et);
		break;
	case PH_STOP_POST:
		dlog(et, FLT_LOG_WARN, "stop-post operation timed out, killing");
		if (et->control)
			kill((pid_t)-et->control->pgid, SIGKILL);
		break;
	default:
		break;
	}
}

static bool clean_exit(struct exec_task *et, int code, int sig, bool main)
{
	if (!sig)
		return code == 0;
	/* Daemons (not oneshot commands) dying of the usual termination signals exit cleanly. */
	if (main && et->conf.type != TYPE_ONESHOT &&
	    (sig == SIGHUP || sig == SIGINT || sig == SIGTERM || sig == SIGPIPE))
		return true;
	/* And anything dying of the signal we sent it while stopping. */
	return et->phase >= PH_STOP && et->phase <= PH_STOP_SIGTERM && sig == et->conf.kill_signal;
}

static void report_process(struct exec_task *et, struct run *r, int code, int sig)
{
	struct flt_process pr = {r->kind, r->cmd->line, r->pid, sig ? -1 : code, sig};

	et->d->host->task_process(et->t, &pr);
}

static void main_finished(struct exec_task *et, struct run *r)
{
	int code, sig;
	bool ok;

	run_outcome(r, &code, &sig);
	et->main = NULL;
	et->main_ended = true;
	if (et->conf.type != TYPE_FORKING) {
		report_process(et, r, code, sig);
	} else if (r->main_pid) {
		/* the start process was reported when it ended; this is the daemon it left */
		r->pid = r->main_pid;
		report_process(et, r, code, sig);
	}
	ok = clean_exit(et, code, sig, true) && !(et->conf.type == TYPE_FORKING && !r->got_start);
	if (r->fail_msg)
		ok = false;
	if (!ok) {
		set_result(et, r->fail_msg ? "exit-code" : sig ? "signal" : "exit-code", code, sig);
		set_message(et, r->fail_msg);
	} else {
		set_result(et, "success", code, sig);
		if (!et->result || !strcmp(et->result, "success")) {
			et->code = code;
			et->sig = sig;
		}
	}
	if (et->adopted) {
		struct buf path = BUF_INIT;

		if (buf_printf(&path, "%s/%s", et->t->state_dir, SHIM_STATUS_FILE) == 0)
			unlink(path.data);
		buf_release(&path);
	}

	switch (et->phase) {
	case PH_START:
		/* forking start failed or simple main gone before start-post began */
		task_stop_sigterm(et, NULL);
		break;
	case PH_START_POST:
		if (!ok)
			task_stop_sigterm(et, NULL);
		break; /* else enter_running() sees main_ended */
	case PH_RUNNING:
		if (!ok) {
			task_stop_sigterm(et, NULL);
		} else {
			enter_phase(et, PH_STOP, et->conf.stop_ms);
		}
		break;
	default:
		break; /* PH_STOP: ExecStop is running; it moves on when it ends */
	}
}

static void control_finished(struct exec_task *et, struct run *r)
{
	const struct exec_cmd *c = r->cmd;
	int code, sig;
	bool ok;

	run_outcome(r, &code, &sig);
	et->control = NULL;
	report_process(et, r, code, sig);
	ok = clean_exit(et, code, sig, false) && !r->fail_msg;
	if (!ok && r->fail_msg)
		dlog(et, FLT_LOG_WARN, "%s", r->fail_msg);
	if (!ok && !c->ignore_fail && et->phase != PH_STOP_POST && et->phase != PH_STOP) {
		set_result(et, r->fail_msg || !sig ? "exit-code" : "signal", code, sig);
		set_message(et, r->fail_msg);
		task_stop_sigterm(et, NULL);
		return;
	}
	switch (et->phase) {
	case PH_START_PRE:
	case PH_START:
	case PH_START_POST:
	case PH_STOP:
	case PH_STOP_POST:
		et->idx++;
		task_next(et);
		break;
	default:
		break;
	}
}

static void run_end(struct run *r)
{
	struct exec_task *et = r->et;

	r->ended = true;
	if (et->phase == PH_DEAD)
		return;
	if (r == et->main)
		main_finished(et, r);
	else if (r == et->control)
		control_finished(et, r);
}

static void run_close(struct run *r)
{
	struct exec_task *et = r->et;

	for (struct run **p = &et->runs; *p; p = &(*p)->next)
		if (*p == r) {
			*p = r->next;
			break;
		}
	if (et->main == r)
		et->main = NULL;
	if (et->control == r)
		et->control = NULL;
	run_free(r);
	if ((et->phase == PH_STOP_SIGTERM || et->phase == PH_STOP_SIGKILL) && !anything_alive(et))
		task_stop_post(et);
}

/* ---- the ABI ---- */

static struct exec_task *task_new(struct exec_drv *d, struct flt_task *t, int *ret_err)
{
	struct exec_task *et = calloc(1, sizeof(*et));
	const char *why = NULL;
	int r;

	if (!et) {
		*ret_err = -ENOMEM;
		return NULL;
	}
	et->d = d;
	et->t = t;
	et->code = -1;
	ev_init(&et->timer, timer_cb);
	r = exec_conf_parse(&et->conf, t, &why);
	if (r < 0) {
		flt_log(d->host, FLT_LOG_ERROR, "%s: cannot run: %s", t->unit,
		        why ? why : strerror(-r));
		task_free(et);
		*ret_err = r;
		return NULL;
	}
	et->next = d->tasks;
	d->tasks = et;
	t->drv_data = et;
	return et;
}

static int exec_start(struct flt_drv *drv, struct flt_task *t)
{
	struct exec_drv *d = (struct exec_drv *)drv;
	struct exec_task *et;
	int r;

	if (t->drv_data)
		return -EALREADY;
	et = task_new(d, t, &r);
	if (!et)
		return r;
	enter_phase(et, PH_START_PRE, et->conf.start_ms);
	return 0;
}

static int exec_stop(struct flt_drv *drv, struct flt_task *t, unsigned timeout_ms)
{
	struct exec_drv *d = (struct exec_drv *)drv;
	struct exec_task *et = t->drv_data;

	if (!et) {
		drv_report_stopped(d->host, t);
		return 0;
	}
	et->conf.stop_ms = timeout_ms;
	switch (et->phase) {
	case PH_START_PRE:
	case PH_START:
	case PH_START_POST:
		/* systemd skips ExecStop= for a service that never finished starting */
		task_stop_sigterm(et, NULL);
		break;
	case PH_RUNNING:
	case PH_EXITED:
		enter_phase(et, PH_STOP, et->conf.stop_ms);
		break;
	default:
		break; /* already on its way down */
	}
	return 0;
}

static int read_status_file(struct exec_task *et, int *code, int *sig)
{
	struct buf path = BUF_INIT;
	char data[128];
	int r;

	if (buf_printf(&path, "%s/%s", et->t->state_dir, SHIM_STATUS_FILE) < 0)
		return -ENOMEM;
	r = read_small(path.data, data, sizeof(data));
	buf_release(&path);
	if (r < 0)
		return r;
	return sscanf(data, "%d %d", code, sig) == 2 ? 0 : -EIO;
}

static int connect_shim(long pid)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd, n;

	n = snprintf(sa.sun_path + 1, sizeof(sa.sun_path) - 1, SHIM_SOCK_FMT, pid);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* A local listener with room in its backlog accepts at once: this does not block. */
	if (connect(fd, (struct sockaddr *)&sa,
	            (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n)) < 0) {
		int e = -errno;

		close(fd);
		return e;
	}
	fcntl(fd, F_SETFL, O_NONBLOCK);
	return fd;
}

/* The main run of an adopted task, linked in and running: watching the shim's socket fd, or with
 * fd < 0 one whose end the status file told. NULL when out of memory. */
static struct run *adopt_main(struct exec_task *et, int fd)
{
	struct run *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->et = et;
	r->kind = "ExecStart";
	r->cmd = &et->conf.start.v[0];
	r->is_main = true;
	r->fd = fd;
	r->got_start = true;
	buf_init(&r->in);
	ev_init(&r->child, run_child_cb);
	if (fd >= 0)
		ev_io_init(&r->io, run_io_cb, fd, EV_READ);
	else
		ev_init(&r->io, run_io_cb);
	r->next = et->runs;
	et->runs = r;
	et->main = r;
	et->phase = PH_RUNNING;
	return r;
}

static int exec_adopt(struct flt_drv *drv, struct flt_task *t)
{
	struct exec_drv *d = (struct exec_drv *)drv;
	long shim_pid = 0, main_pid = 0, pgid = 0;
	unsigned long long st = 0, now = 0;
	struct exec_task *et;
	struct run *r;
	int err, fd = -1;

	if (!t->handle || t->drv_data)
		return t->drv_data ? -EALREADY : -ENOENT;
	et = task_new(d, t, &err);
	if (!et)
		return err;
	et->adopted = true;
	if (!strcmp(t->handle, "exited") && et->conf.type == TYPE_ONESHOT) {
		et->handle = strdup("exited");
		set_phase(et, PH_EXITED);
		return 0;
	}
	if (sscanf(t->handle, "%ld:%llu:%ld:%ld", &shim_pid, &st, &main_pid, &pgid) != 4) {
		err = -EINVAL;
		goto fail;
	}
	et->handle = strdup(t->handle);
	et->main_pid = main_pid;
	et->main_pgid =
	    main_pid > 1 && getpgid((pid_t)main_pid) > 1 ? getpgid((pid_t)main_pid) : pgid;
	if (et->conf.type == TYPE_FORKING)
		et->forked_pgid = pgid;
	if (shim_starttime(shim_pid, &now) == 0 && now == st)
		fd = connect_shim(shim_pid);
	if (fd < 0) {
		/* The shim is gone: the process ended while no daemon watched it, or never was. */
		int code, sig;

		if (read_status_file(et, &code, &sig) < 0) {
			err = -ENOENT;
			goto fail;
		}
		r = adopt_main(et, -1);
		if (!r) {
			err = -ENOMEM;
			goto fail;
		}
		r->pid = main_pid;
		r->got_exit = true;
		r->code = code;
		r->sig = sig;
		r->eof = true;
		report(et);
		run_maybe_done(r);
		return 0;
	}
	r = adopt_main(et, fd);
	if (!r) {
		close(fd);
		err = -ENOMEM;
		goto fail;
	}
	r->shim_pid = (pid_t)shim_pid;
	r->pgid = pgid;
	r->code = -1;
	r->main_pid = et->conf.type == TYPE_FORKING ? main_pid : 0;
	ev_io_start(d->host->loop, &r->io);
	report(et);
	return 0;
fail:
	unlink_task(et);
	t->drv_data = NULL;
	task_free(et);
	return err;
}

static void task_release(struct exec_task *et)
{
	unlink_task(et);
	if (et->t->drv_data == et)
		et->t->drv_data = NULL;
	ev_timer_stop(et->d->host->loop, &et->timer);
	task_free(et); /* closes the sockets: the shims carry on alone */
}

static void exec_release(struct flt_drv *drv, struct flt_task *t)
{
	if (t->drv_data)
		task_release(t->drv_data);
}

static int exec_open(const struct flt_host *host, const struct flt_drv_config *cfg,
                     struct flt_drv **ret, const char **why)
{
	struct exec_drv *d = calloc(1, sizeof(*d));
	const char *shim = FLT_EXEC_SHIM;

	if (!d)
		return -ENOMEM;
	for (size_t i = 0; cfg && i < cfg->n; i++)
		if (!strcmp(cfg->keys[i], "exec-shim"))
			shim = cfg->values[i];
	d->host = host;
	d->shim_path = strdup(shim);
	if (!d->shim_path) {
		free(d);
		return -ENOMEM;
	}
	if (access(d->shim_path, X_OK) < 0) {
		int e = -errno;

		*why = "exec: cannot execute the shim (driver option exec-shim)";
		free(d->shim_path);
		free(d);
		return e;
	}
	ev_timer_init(&d->reaper, reaper_cb, 0., 0.);
	*ret = (struct flt_drv *)d;
	return 0;
}

static void exec_close(struct flt_drv *drv)
{
	struct exec_drv *d = (struct exec_drv *)drv;

	if (!d)
		return;
	while (d->tasks)
		task_release(d->tasks);
	ev_timer_stop(d->host->loop, &d->reaper);
	reaper_cb(d->host->loop, &d->reaper, 0);
	free(d->shim_path);
	free(d);
}

static const struct flt_drv_ops exec_ops = {
    .abi_major = FLT_DRV_ABI_MAJOR,
    .abi_minor = FLT_DRV_ABI_MINOR,
    .ops_size = sizeof(struct flt_drv_ops),
    .name = "exec",
    .open = exec_open,
    .start = exec_start,
    .stop = exec_stop,
    .adopt = exec_adopt,
    .release = exec_release,
    .close = exec_close,
};

DRV_ENTRY(exec_ops)
