/* The rkt runtime driver: runs a unit as a rkt pod through rkt's command-line contract, the only
 * interface rkt ever had (it is archived upstream, so nothing newer will come): `rkt run
 * --uuid-file-save=F IMAGE` in the foreground as our child, `rkt status UUID` to follow a pod we
 * did not start, `rkt stop UUID` to stop it and `rkt rm UUID` to collect it once it has exited.
 *
 * Every rkt invocation is a child watched with ev_child. The helpers' stdout+stderr come back
 * through a non-blocking pipe and are parsed when they exit; `rkt run` writes into a file of the
 * task's state_dir that is followed with ev_stat and fed to the unit's journal, so the pod keeps
 * its stdout (and the journal its output) across a daemon restart. The handle is the pod uuid, read
 * from the --uuid-file-save file in the task's state_dir (polled: rkt writes it once the pod is
 * prepared, and that is also when we call the unit running).
 *
 * Unit options, all in [X-Flotilla]: Image= (required), Command= (the app's command line: first
 * word --exec=, the rest its arguments; without it [Service] ExecStart= is used the same way, and
 * without either the image's own app runs), Net= (--net=), InsecureOptions= (--insecure-options=).
 * Driver config: "rkt-path" (default /usr/bin/rkt), "rkt-dir" (rkt's --dir, default rkt's own),
 * "rkt-poll-ms" (how often an adopted pod's `rkt status` is asked, default 1000). */
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <flotilla/driver.h>

#include "../common/drvutil.h"
#include "util/buf.h"
#include "util/util.h"

#define DEFAULT_RKT_PATH "/usr/bin/rkt"
#define DEFAULT_POLL_MS  1000u
#define UUID_POLL_S      0.05
#define HELPER_OUT_MAX   (64u * 1024u) /* `rkt status` prints a dozen lines */
#define UUID_FILE        "rkt-uuid"
#define LOG_FILE         "rkt-output"

struct rkt_task;

enum cmd_kind { CMD_RUN, CMD_STATUS, CMD_STOP, CMD_RM };

/* One rkt invocation in flight. */
struct rcmd {
	struct rkt_drv *d;
	struct rkt_task *owner; /* NULL: detached (an `rkt rm` outliving its task) */
	enum cmd_kind kind;
	pid_t pid;
	int out_fd; /* stdout+stderr, non-blocking; -1 once closed */
	int err_fd; /* CLOEXEC pipe: the child writes errno here if exec fails */
	ev_io io;
	ev_child child;
	struct buf out; /* helpers only: what they printed */
	struct rcmd *next;
};

struct rkt_drv {
	const struct flt_host *host;
	char *rkt_path;
	char *rkt_dir; /* or NULL */
	unsigned poll_ms;
	struct rkt_task *tasks;
	struct rcmd *cmds;
};

struct rkt_task {
	struct rkt_drv *d;
	struct flt_task *t;
	struct rkt_task *next;
	struct rcmd *run;    /* our `rkt run`, or NULL (adopted, or ended) */
	struct rcmd *helper; /* a `rkt status` or `rkt stop` in flight */
	char **argv;         /* of `rkt run` */
	char *uuid;          /* once known */
	char *uuid_path;
	char *log_path; /* `rkt run`'s stdout+stderr (see log_drain) */
	int log_fd;     /* reading it, or -1 */
	ev_stat log_watch;
	char ident[32]; /* "rkt[1234]" */
	int64_t pid;
	ev_timer poll; /* run: waiting for the uuid file; adopted: next `rkt status` */
	ev_timer kill; /* stop timeout */
	bool adopted, running, stopping, stop_sent, killed;
};

static void cmd_finished(struct rcmd *c, int wstatus, int exec_errno);

/* ---- small helpers ---- */

static int strv_pushf(char ***v, size_t *n, const char *a, const char *b)
{
	struct buf s = BUF_INIT;
	int r = buf_puts(&s, a);

	if (r >= 0)
		r = buf_puts(&s, b);
	if (r >= 0)
		r = drv_strv_push(v, n, s.data);
	buf_release(&s);
	return r;
}

/* Split a command line into words the way systemd reads ExecStart=: whitespace separates, '...'
 * and "..." group, a backslash escapes the next character. */
static int split_words(const char *s, char ***v, size_t *n)
{
	struct buf w = BUF_INIT;
	int r = 0;

	while (*s) {
		bool have = false;
		char q = 0;

		while (*s == ' ' || *s == '\t' || *s == '\n')
			s++;
		buf_clear(&w);
		for (; *s; s++) {
			if (!q && (*s == ' ' || *s == '\t' || *s == '\n'))
				break;
			if (!q && (*s == '\'' || *s == '"')) {
				q = *s;
				have = true;
				continue;
			}
			if (q && *s == q) {
				q = 0;
				continue;
			}
			if (*s == '\\' && s[1] && q != '\'')
				s++;
			r = buf_putc(&w, *s);
			if (r < 0)
				goto out;
			have = true;
		}
		if (have) {
			r = drv_strv_push(v, n, w.data ? w.data : "");
			if (r < 0)
				goto out;
		}
	}
out:
	buf_release(&w);
	return r;
}

static void dlog(struct rkt_task *rt, enum flt_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void dlog(struct rkt_task *rt, enum flt_log_level lvl, const char *fmt, ...)
{
	struct buf m = BUF_INIT;
	va_list ap;

	if (buf_printf(&m, "rkt: %s: ", rt->t->unit) < 0)
		goto out;
	va_start(ap, fmt);
	if (buf_vprintf(&m, fmt, ap) >= 0)
		flt_log(rt->d->host, lvl, "%s", m.data);
	va_end(ap);
out:
	buf_release(&m);
}

/* ---- rkt children ---- */

static void set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl >= 0)
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* Read what the pipe holds now. Returns false at EOF or on an error. */
static bool cmd_drain(struct rcmd *c)
{
	char chunk[4096];

	for (;;) {
		ssize_t n = read(c->out_fd, chunk, sizeof(chunk));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK;
		if (n == 0)
			return false;
		if (c->kind == CMD_RUN && c->owner)
			c->d->host->task_output(c->owner->t, c->owner->ident, chunk, (size_t)n);
		else if (c->out.len + (size_t)n <= HELPER_OUT_MAX)
			buf_append(&c->out, chunk, (size_t)n); /* on ENOMEM the parse sees less */
	}
}

static void cmd_close_out(struct rcmd *c)
{
	if (c->out_fd < 0)
		return;
	ev_io_stop(c->d->host->loop, &c->io);
	close(c->out_fd);
	c->out_fd = -1;
}

static void cmd_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct rcmd *c = container_of(w, struct rcmd, io);

	(void)loop;
	(void)revents;
	if (!cmd_drain(c))
		cmd_close_out(c); /* the child's exit is what ends the command */
}

static void cmd_unlink(struct rcmd *c)
{
	for (struct rcmd **p = &c->d->cmds; *p; p = &(*p)->next)
		if (*p == c) {
			*p = c->next;
			break;
		}
}

/* Stop watching (the process itself is left alone) and free. */
static void cmd_free(struct rcmd *c)
{
	if (!c)
		return;
	cmd_close_out(c);
	ev_child_stop(c->d->host->loop, &c->child);
	if (c->err_fd >= 0)
		close(c->err_fd);
	buf_release(&c->out);
	free(c);
}

static void cmd_child_cb(struct ev_loop *loop, ev_child *w, int revents)
{
	struct rcmd *c = container_of(w, struct rcmd, child);
	int exec_errno = 0;
	int wstatus = w->rstatus;

	(void)revents;
	ev_child_stop(loop, w);
	/* Everything the child wrote is in the pipe by now; its children's later output is lost,
	 * which is what waiting for EOF would trade for hanging on a daemonized grandchild. */
	if (c->out_fd >= 0)
		cmd_drain(c);
	cmd_close_out(c);
	if (read(c->err_fd, &exec_errno, sizeof(exec_errno)) != (ssize_t)sizeof(exec_errno))
		exec_errno = 0;
	cmd_unlink(c);
	cmd_finished(c, wstatus, exec_errno);
	cmd_free(c);
}

/* Start `rkt <argv...>` (argv[0] is the rkt path). */
static int cmd_spawn(struct rkt_drv *d, struct rkt_task *owner, enum cmd_kind kind, char **argv,
                     int out_file, struct rcmd **ret)
{
	struct rcmd *c = calloc(1, sizeof(*c));
	int out[2] = {-1, -1}, err[2] = {-1, -1};
	pid_t pid;
	int r;

	if (!c)
		return -ENOMEM;
	if ((out_file < 0 && pipe2(out, O_CLOEXEC) < 0) || pipe2(err, O_CLOEXEC) < 0) {
		r = -errno;
		goto fail;
	}
	/* linked before the fork so a child that fails to exec (and is checked for leaks by
	 * valgrind when it _exits) still reaches it */
	c->d = d;
	c->next = d->cmds;
	d->cmds = c;
	pid = fork();
	if (pid < 0) {
		r = -errno;
		cmd_unlink(c);
		goto fail;
	}
	if (pid == 0) {
		sigset_t all;
		int e, nul = open("/dev/null", O_RDONLY | O_CLOEXEC);

		/* its own process group, so a kill after the stop timeout reaches the pod's
		 * processes too, and the daemon's terminal signals do not */
		setpgid(0, 0);
		sigemptyset(&all);
		sigprocmask(SIG_SETMASK, &all, NULL);
		signal(SIGPIPE, SIG_DFL);
		if (nul >= 0)
			dup2(nul, 0);
		dup2(out_file >= 0 ? out_file : out[1], 1);
		dup2(out_file >= 0 ? out_file : out[1], 2);
		execv(argv[0], argv);
		e = errno;
		if (write(err[1], &e, sizeof(e)) < 0)
			_exit(127);
		_exit(127);
	}
	if (out[1] >= 0)
		close(out[1]);
	close(err[1]);
	if (out[0] >= 0)
		set_nonblock(out[0]);
	set_nonblock(err[0]);
	c->owner = owner;
	c->kind = kind;
	c->pid = pid;
	c->out_fd = out[0];
	c->err_fd = err[0];
	if (c->out_fd >= 0) {
		ev_io_init(&c->io, cmd_io_cb, c->out_fd, EV_READ);
		ev_io_start(d->host->loop, &c->io);
	}
	ev_child_init(&c->child, cmd_child_cb, pid, 0);
	ev_child_start(d->host->loop, &c->child);
	*ret = c;
	return 0;
fail:
	for (int i = 0; i < 2; i++) {
		if (out[i] >= 0)
			close(out[i]);
		if (err[i] >= 0)
			close(err[i]);
	}
	free(c);
	return r;
}

/* argv for a helper: rkt [--dir=D] <verb> [flag] <uuid> */
static int helper_argv(struct rkt_drv *d, const char *verb, const char *flag, const char *uuid,
                       char ***ret)
{
	char **v = NULL;
	size_t n = 0;
	int r = drv_strv_push(&v, &n, d->rkt_path);

	if (r >= 0 && d->rkt_dir)
		r = strv_pushf(&v, &n, "--dir=", d->rkt_dir);
	if (r >= 0)
		r = drv_strv_push(&v, &n, verb);
	if (r >= 0 && flag)
		r = drv_strv_push(&v, &n, flag);
	if (r >= 0)
		r = drv_strv_push(&v, &n, uuid);
	if (r < 0) {
		drv_strv_free(v);
		return r;
	}
	*ret = v;
	return 0;
}

static int helper_spawn(struct rkt_drv *d, struct rkt_task *owner, enum cmd_kind kind,
                        const char *flag, const char *uuid, struct rcmd **ret)
{
	static const char *const verbs[] = {
	    [CMD_STATUS] = "status", [CMD_STOP] = "stop", [CMD_RM] = "rm"};
	char **argv;
	struct rcmd *c;
	int r = helper_argv(d, verbs[kind], flag, uuid, &argv);

	if (r < 0)
		return r;
	r = cmd_spawn(d, owner, kind, argv, -1, &c);
	drv_strv_free(argv);
	if (r >= 0 && ret)
		*ret = c;
	return r;
}

/* ---- tasks ---- */

/* `rkt run` writes into a file of the state_dir rather than a pipe to us: a pipe would break
 * (SIGPIPE, lost output) when the daemon restarts, the file outlives it, and the adopting daemon
 * goes on reading where the file ends. */
static void log_drain(struct rkt_task *rt)
{
	char chunk[4096];
	ssize_t n;

	if (rt->log_fd < 0)
		return;
	while ((n = read(rt->log_fd, chunk, sizeof(chunk))) > 0 || (n < 0 && errno == EINTR))
		if (n > 0)
			rt->d->host->task_output(rt->t, rt->ident, chunk, (size_t)n);
}

static void log_cb(struct ev_loop *loop, ev_stat *w, int revents)
{
	(void)loop;
	(void)revents;
	log_drain(container_of(w, struct rkt_task, log_watch));
}

/* Follow the output file; `from_end`: only what is written from now on (adopt). */
static void log_follow(struct rkt_task *rt, bool from_end)
{
	rt->log_fd = open(rt->log_path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (rt->log_fd < 0)
		return;
	if (from_end)
		lseek(rt->log_fd, 0, SEEK_END);
	/* inotify where libev has it; the interval is the fallback poll */
	ev_stat_init(&rt->log_watch, log_cb, rt->log_path, 0.25);
	ev_stat_start(rt->d->host->loop, &rt->log_watch);
}

static void task_free(struct rkt_task *rt)
{
	if (!rt)
		return;
	if (rt->log_fd >= 0) {
		ev_stat_stop(rt->d->host->loop, &rt->log_watch);
		close(rt->log_fd);
	}
	free(rt->log_path);
	ev_timer_stop(rt->d->host->loop, &rt->poll);
	ev_timer_stop(rt->d->host->loop, &rt->kill);
	for (struct rcmd **cp = &rt->run; cp; cp = cp == &rt->run ? &rt->helper : NULL)
		if (*cp) {
			cmd_unlink(*cp);
			cmd_free(*cp);
			*cp = NULL;
		}
	drv_strv_free(rt->argv);
	free(rt->uuid);
	free(rt->uuid_path);
	free(rt);
}

static void task_unlink(struct rkt_task *rt)
{
	for (struct rkt_task **p = &rt->d->tasks; *p; p = &(*p)->next)
		if (*p == rt) {
			*p = rt->next;
			break;
		}
}

static void report(struct rkt_task *rt, enum flt_active active, const char *sub)
{
	struct flt_status st = {
	    .active = active, .sub = sub, .main_pid = rt->pid, .handle = rt->uuid, .exit_code = -1};

	rt->d->host->task_status(rt->t, &st);
}

/* The last report. The task is detached first: the host may free it or start it again from
 * inside the callback. A pod that exited is handed to a detached `rkt rm`. */
static void task_end(struct rkt_task *rt, bool ok, const char *result, int code, int sig,
                     const char *message)
{
	struct flt_task *t = rt->t;
	struct flt_status st = {.active = ok ? FLT_INACTIVE : FLT_FAILED,
	                        .sub = ok ? "dead" : "failed",
	                        .exit_code = code,
	                        .exit_signal = sig,
	                        .result = result,
	                        .message = message};
	struct rkt_drv *d = rt->d;
	char *uuid = rt->uuid;

	rt->uuid = NULL;
	task_unlink(rt);
	if (t->drv_data == rt)
		t->drv_data = NULL;
	task_free(rt);
	if (uuid && helper_spawn(d, NULL, CMD_RM, NULL, uuid, NULL) < 0)
		flt_log(d->host, FLT_LOG_WARN, "rkt: %s: cannot run 'rkt rm %s': %s", t->unit, uuid,
		        strerror(ENOMEM));
	free(uuid);
	d->host->task_status(t, &st);
}

static void task_end_exec_error(struct rkt_task *rt, int err)
{
	struct buf m = BUF_INIT;

	buf_printf(&m, "cannot execute '%s': %s", rt->d->rkt_path, strerror(err));
	dlog(rt, FLT_LOG_ERROR, "%s", m.data ? m.data : "cannot execute rkt");
	task_end(rt, false, "resources", -1, 0, m.data);
	buf_release(&m);
}

/* The uuid file is written once rkt prepared the pod: from then on it is running. */
static bool try_uuid(struct rkt_task *rt)
{
	char u[64];
	ssize_t n;
	int fd;

	if (rt->uuid)
		return true;
	fd = open(rt->uuid_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, u, sizeof(u) - 1);
	close(fd);
	if (n <= 0)
		return false;
	while (n > 0 && (u[n - 1] == '\n' || u[n - 1] == ' '))
		n--;
	u[n] = '\0';
	if (n != 36) /* a complete uuid, not a half-written one */
		return false;
	rt->uuid = strdup(u);
	return rt->uuid != NULL;
}

static void poll_cb(struct ev_loop *loop, ev_timer *w, int revents);

static void stop_helper_done(struct rkt_task *rt, int wstatus, struct rcmd *c)
{
	if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0)
		return;
	/* `rkt stop` refused (pod not running yet, or gone): fall back to a signal */
	dlog(rt, FLT_LOG_DEBUG, "'rkt stop' failed: %s", c->out.data ? c->out.data : "");
	if (rt->run)
		kill(rt->run->pid, SIGTERM);
	else if (rt->pid > 0)
		kill((pid_t)rt->pid, SIGTERM);
}

static void run_finished(struct rkt_task *rt, int wstatus, int exec_errno)
{
	int code = -1, sig = 0;
	struct flt_process p = {.kind = "ExecStart", .pid = rt->pid};
	struct buf line = BUF_INIT;

	if (exec_errno) {
		task_end_exec_error(rt, exec_errno);
		return;
	}
	try_uuid(rt); /* a fast pod may end before the poll saw its uuid */
	log_drain(rt);
	if (WIFEXITED(wstatus))
		code = WEXITSTATUS(wstatus);
	else if (WIFSIGNALED(wstatus))
		sig = WTERMSIG(wstatus);
	for (char **a = rt->argv; *a; a++)
		if (buf_puts(&line, a == rt->argv ? "" : " ") < 0 || buf_puts(&line, *a) < 0)
			break;
	p.argv0_line = line.data ? line.data : "rkt";
	p.exit_code = code;
	p.exit_signal = sig;
	rt->d->host->task_process(rt->t, &p);
	buf_release(&line);
	if (rt->stopping)
		task_end(rt, true, "success", code, sig, NULL);
	else if (code == 0)
		task_end(rt, true, "success", 0, 0, NULL);
	else if (sig)
		task_end(rt, false, "signal", -1, sig, NULL);
	else
		task_end(rt, false, "exit-code", code, 0, NULL);
}

/* `rkt status` of an adopted pod: key=value lines. */
static void status_finished(struct rkt_task *rt, int wstatus, int exec_errno, struct rcmd *c)
{
	const char *state = NULL;
	int64_t pid = 0;
	int code = -1;
	char *s = c->out.data;

	if (exec_errno) {
		task_end_exec_error(rt, exec_errno);
		return;
	}
	if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) {
		struct buf m = BUF_INIT;

		buf_printf(&m, "pod '%s' not found: %s", rt->uuid, s ? s : "");
		while (m.len && (m.data[m.len - 1] == '\n'))
			m.data[--m.len] = '\0';
		dlog(rt, FLT_LOG_INFO, "%s", m.data ? m.data : "pod not found");
		/* it is gone, so it is not running: the host may start the unit anew */
		task_end(rt, true, "success", -1, 0, m.data);
		buf_release(&m);
		return;
	}
	for (char *l = s; l && *l;) {
		char *nl = strchr(l, '\n');

		if (nl)
			*nl = '\0';
		if (!strncmp(l, "state=", 6))
			state = l + 6;
		else if (!strncmp(l, "pid=", 4))
			pid = strtoll(l + 4, NULL, 10);
		else if (!strncmp(l, "app-", 4) && strchr(l, '=') && code < 0)
			code =
			    atoi(strchr(l, '=') + 1); /* the first app's, as rkt run exits with */
		l = nl ? nl + 1 : NULL;
	}
	if (pid > 0 && rt->pid != pid) {
		rt->pid = pid;
		snprintf(rt->ident, sizeof(rt->ident), "rkt[%ld]", (long)pid);
	}
	log_drain(rt);
	if (!state) {
		dlog(rt, FLT_LOG_WARN, "cannot parse 'rkt status %s' output", rt->uuid);
	} else if (!strcmp(state, "running")) {
		if (rt->stopping && !rt->stop_sent) {
			/* stop() came while this status was in flight */
			rt->stop_sent =
			    helper_spawn(rt->d, rt, CMD_STOP, NULL, rt->uuid, &rt->helper) >= 0;
			if (!rt->stop_sent && rt->pid > 0)
				kill((pid_t)rt->pid, SIGTERM);
			rt->stop_sent = true;
		}
		if (!rt->running && !rt->stopping) {
			rt->running = true;
			report(rt, FLT_ACTIVE, "running");
		}
	} else if (!strcmp(state, "exited") || !strcmp(state, "garbage") ||
	           !strcmp(state, "deleting") || !strcmp(state, "aborted prepare")) {
		if (rt->stopping || code == 0)
			task_end(rt, true, "success", code, 0, NULL);
		else if (code > 0)
			task_end(rt, false, "exit-code", code, 0, NULL);
		else
			task_end(rt, false, "exit-code", -1, 0, "pod exited, exit status unknown");
		return;
	}
	/* embryo / preparing / prepared / running: ask again later */
	ev_timer_set(&rt->poll, rt->stopping ? 0.1 : rt->d->poll_ms / 1000.0, 0.);
	ev_timer_start(rt->d->host->loop, &rt->poll);
}

static void cmd_finished(struct rcmd *c, int wstatus, int exec_errno)
{
	struct rkt_task *rt = c->owner;

	if (!rt) {
		if (c->kind == CMD_RM && (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0))
			flt_log(c->d->host, FLT_LOG_WARN, "rkt: 'rkt rm' failed: %s",
			        c->out.data ? c->out.data : "");
		return;
	}
	if (c == rt->run)
		rt->run = NULL;
	else if (c == rt->helper)
		rt->helper = NULL;
	switch (c->kind) {
	case CMD_RUN:
		run_finished(rt, wstatus, exec_errno);
		break;
	case CMD_STATUS:
		status_finished(rt, wstatus, exec_errno, c);
		break;
	case CMD_STOP:
		if (exec_errno && !rt->run) {
			task_end_exec_error(rt, exec_errno);
			break;
		}
		stop_helper_done(rt, exec_errno ? 1 << 8 : wstatus, c);
		if (rt->adopted) { /* follow it down */
			ev_timer_stop(rt->d->host->loop, &rt->poll);
			ev_timer_set(&rt->poll, 0.05, 0.);
			ev_timer_start(rt->d->host->loop, &rt->poll);
		}
		break;
	case CMD_RM:
		break;
	}
}

static void poll_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct rkt_task *rt = container_of(w, struct rkt_task, poll);
	int r;

	(void)revents;
	if (!rt->adopted) {
		if (!try_uuid(rt))
			return; /* repeating: look again */
		ev_timer_stop(loop, w);
		if (!rt->stopping) {
			rt->running = true;
			report(rt, FLT_ACTIVE, "running");
		}
		return;
	}
	if (rt->helper) { /* a stop in flight: ask once it returned */
		ev_timer_set(w, 0.05, 0.);
		ev_timer_start(loop, w);
		return;
	}
	r = helper_spawn(rt->d, rt, CMD_STATUS, NULL, rt->uuid, &rt->helper);
	if (r < 0) {
		dlog(rt, FLT_LOG_WARN, "cannot run 'rkt status': %s", strerror(-r));
		ev_timer_set(w, rt->d->poll_ms / 1000.0, 0.);
		ev_timer_start(loop, w);
	}
}

static void kill_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct rkt_task *rt = container_of(w, struct rkt_task, kill);

	(void)loop;
	(void)revents;
	dlog(rt, FLT_LOG_WARN, "stop timed out, killing");
	rt->killed = true;
	if (rt->run) {
		kill(-rt->run->pid, SIGKILL);
		kill(rt->run->pid, SIGKILL);
	} else if (rt->pid > 0) {
		kill((pid_t)rt->pid, SIGKILL);
	}
	report(rt, FLT_DEACTIVATING, "stop-sigkill");
}

static struct rkt_task *task_new(struct rkt_drv *d, struct flt_task *t)
{
	struct rkt_task *rt = calloc(1, sizeof(*rt));
	struct buf p = BUF_INIT;

	if (!rt)
		return NULL;
	rt->d = d;
	rt->t = t;
	if (buf_printf(&p, "%s/%s", t->state_dir ? t->state_dir : "/tmp", UUID_FILE) < 0) {
		free(rt);
		return NULL;
	}
	rt->uuid_path = buf_steal(&p);
	rt->log_fd = -1;
	if (buf_printf(&p, "%s/%s", t->state_dir ? t->state_dir : "/tmp", LOG_FILE) < 0) {
		free(rt->uuid_path);
		free(rt);
		return NULL;
	}
	rt->log_path = buf_steal(&p);
	ev_timer_init(&rt->poll, poll_cb, UUID_POLL_S, UUID_POLL_S);
	ev_init(&rt->kill, kill_cb);
	memcpy(rt->ident, "rkt", 4);
	return rt;
}

static void task_link(struct rkt_task *rt)
{
	rt->next = rt->d->tasks;
	rt->d->tasks = rt;
	rt->t->drv_data = rt;
}

/* argv of `rkt run` from the unit's options. */
static int run_argv(struct rkt_task *rt, const char **why)
{
	const struct flt_task *t = rt->t;
	const char *image = flt_task_option(t, "X-Flotilla", "Image");
	const char *cmd = flt_task_option(t, "X-Flotilla", "Command");
	const char *net = flt_task_option(t, "X-Flotilla", "Net");
	const char *insecure = flt_task_option(t, "X-Flotilla", "InsecureOptions");
	char **words = NULL, **v = NULL;
	size_t nw = 0, n = 0;
	int r;

	if (!image || !*image) {
		*why = "no Image= in [X-Flotilla]";
		return -EINVAL;
	}
	if (!cmd) {
		cmd = flt_task_option(t, "Service", "ExecStart");
		while (cmd && *cmd && strchr("-@+!:", *cmd))
			cmd++;
	}
	r = cmd ? split_words(cmd, &words, &nw) : 0;
	if (r >= 0)
		r = drv_strv_push(&v, &n, rt->d->rkt_path);
	if (r >= 0 && rt->d->rkt_dir)
		r = strv_pushf(&v, &n, "--dir=", rt->d->rkt_dir);
	if (r >= 0)
		r = drv_strv_push(&v, &n, "run");
	if (r >= 0)
		r = strv_pushf(&v, &n, "--uuid-file-save=", rt->uuid_path);
	if (r >= 0 && net)
		r = strv_pushf(&v, &n, "--net=", net);
	if (r >= 0 && insecure)
		r = strv_pushf(&v, &n, "--insecure-options=", insecure);
	if (r >= 0)
		r = drv_strv_push(&v, &n, image);
	if (r >= 0 && nw > 0) {
		r = strv_pushf(&v, &n, "--exec=", words[0]);
		if (r >= 0 && nw > 1) {
			r = drv_strv_push(&v, &n, "--");
			for (size_t i = 1; r >= 0 && i < nw; i++)
				r = drv_strv_push(&v, &n, words[i]);
			if (r >= 0)
				r = drv_strv_push(&v, &n, "---");
		}
	}
	drv_strv_free(words);
	if (r < 0) {
		drv_strv_free(v);
		return r;
	}
	rt->argv = v;
	return 0;
}

/* ---- the ABI ---- */

static int rkt_start(struct flt_drv *drv, struct flt_task *t)
{
	struct rkt_drv *d = (struct rkt_drv *)drv;
	struct rkt_task *rt;
	const char *why = NULL;
	int r, out;

	if (t->drv_data)
		return -EALREADY;
	rt = task_new(d, t);
	if (!rt)
		return -ENOMEM;
	r = run_argv(rt, &why);
	if (r < 0) {
		dlog(rt, FLT_LOG_ERROR, "cannot run: %s", why ? why : strerror(-r));
		task_free(rt);
		return r;
	}
	unlink(rt->uuid_path); /* a stale one from an earlier run must not be taken for ours */
	out = open(rt->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0640);
	if (out < 0) {
		r = -errno;
		dlog(rt, FLT_LOG_ERROR, "cannot create '%s': %s", rt->log_path, strerror(-r));
		task_free(rt);
		return r;
	}
	r = cmd_spawn(d, rt, CMD_RUN, rt->argv, out, &rt->run);
	close(out);
	if (r < 0) {
		dlog(rt, FLT_LOG_ERROR, "cannot start rkt: %s", strerror(-r));
		task_free(rt);
		return r;
	}
	rt->pid = rt->run->pid;
	snprintf(rt->ident, sizeof(rt->ident), "rkt[%ld]", (long)rt->pid);
	task_link(rt);
	log_follow(rt, false);
	ev_timer_start(d->host->loop, &rt->poll);
	report(rt, FLT_ACTIVATING, "start");
	return 0;
}

static int rkt_stop(struct flt_drv *drv, struct flt_task *t, unsigned timeout_ms)
{
	struct rkt_drv *d = (struct rkt_drv *)drv;
	struct rkt_task *rt = t->drv_data;
	int r = -ESRCH;

	if (!rt) {
		struct flt_status st = {
		    .active = FLT_INACTIVE, .sub = "dead", .exit_code = -1, .result = "success"};

		d->host->task_status(t, &st);
		return 0;
	}
	if (rt->stopping)
		return 0;
	rt->stopping = true;
	try_uuid(rt);
	if (rt->uuid && !rt->helper) {
		r = helper_spawn(d, rt, CMD_STOP, NULL, rt->uuid, &rt->helper);
		rt->stop_sent = r >= 0;
	}
	if (r < 0 && rt->run)
		kill(rt->run->pid, SIGTERM); /* no pod yet: rkt itself tears down what it made */
	if (timeout_ms) {
		ev_timer_set(&rt->kill, timeout_ms / 1000.0, 0.);
		ev_timer_start(d->host->loop, &rt->kill);
	}
	report(rt, FLT_DEACTIVATING, "stop");
	return 0;
}

static int rkt_adopt(struct flt_drv *drv, struct flt_task *t)
{
	struct rkt_drv *d = (struct rkt_drv *)drv;
	struct rkt_task *rt;
	int r;

	if (t->drv_data)
		return -EALREADY;
	if (!t->handle || !*t->handle)
		return -ENOENT;
	rt = task_new(d, t);
	if (!rt)
		return -ENOMEM;
	rt->adopted = true;
	rt->uuid = strdup(t->handle);
	if (!rt->uuid) {
		task_free(rt);
		return -ENOMEM;
	}
	r = helper_spawn(d, rt, CMD_STATUS, NULL, rt->uuid, &rt->helper);
	if (r < 0) {
		task_free(rt);
		return r;
	}
	task_link(rt);
	log_follow(rt, true);
	return 0;
}

static void rkt_release(struct flt_drv *drv, struct flt_task *t)
{
	struct rkt_task *rt = t->drv_data;

	(void)drv;
	if (!rt)
		return;
	task_unlink(rt);
	t->drv_data = NULL;
	task_free(rt);
}

static int rkt_open(const struct flt_host *host, const struct flt_drv_config *cfg,
                    struct flt_drv **ret, const char **why)
{
	struct rkt_drv *d = calloc(1, sizeof(*d));
	const char *path = DEFAULT_RKT_PATH, *dir = NULL;

	if (!d)
		return -ENOMEM;
	d->host = host;
	d->poll_ms = DEFAULT_POLL_MS;
	for (size_t i = 0; cfg && i < cfg->n; i++) {
		const char *k = cfg->keys[i], *v = cfg->values[i];

		if (!strcmp(k, "rkt-path")) {
			path = v;
		} else if (!strcmp(k, "rkt-dir")) {
			dir = v;
		} else if (!strcmp(k, "rkt-poll-ms")) {
			char *end;
			unsigned long ms = strtoul(v, &end, 10);

			if (*end || ms == 0 || ms > 3600000) {
				*why = "rkt: 'rkt-poll-ms' must be a number of milliseconds";
				free(d);
				return -EINVAL;
			}
			d->poll_ms = (unsigned)ms;
		}
	}
	d->rkt_path = strdup(path);
	d->rkt_dir = dir ? strdup(dir) : NULL;
	if (!d->rkt_path || (dir && !d->rkt_dir)) {
		free(d->rkt_path);
		free(d->rkt_dir);
		free(d);
		return -ENOMEM;
	}
	/* a missing rkt is not an error here: each start reports it on its unit */
	*ret = (struct flt_drv *)d;
	return 0;
}

static void rkt_close(struct flt_drv *drv)
{
	struct rkt_drv *d = (struct rkt_drv *)drv;

	if (!d)
		return;
	while (d->tasks) {
		struct rkt_task *rt = d->tasks;

		d->tasks = rt->next;
		rt->t->drv_data = NULL;
		task_free(rt);
	}
	/* detached `rkt rm`s: stop watching, let them finish on their own */
	while (d->cmds) {
		struct rcmd *c = d->cmds;

		d->cmds = c->next;
		cmd_free(c);
	}
	free(d->rkt_path);
	free(d->rkt_dir);
	free(d);
}

static const struct flt_drv_ops rkt_ops = {
    .abi_major = FLT_DRV_ABI_MAJOR,
    .abi_minor = FLT_DRV_ABI_MINOR,
    .ops_size = sizeof(struct flt_drv_ops),
    .name = "rkt",
    .open = rkt_open,
    .start = rkt_start,
    .stop = rkt_stop,
    .adopt = rkt_adopt,
    .release = rkt_release,
    .list = NULL,
    .remove = NULL,
    .close = rkt_close,
};

DRV_ENTRY(rkt_ops)
