/* Background snapshot writer (snapwriter.h). The child closes every descriptor it inherited but
 * its end of the pipe: sockets the parent closes meanwhile must not stay open in the child (a
 * client waiting for EOF would wait for the snapshot). It reports one int through the pipe and
 * exits with _exit, running no atexit handlers and flushing no stdio buffers of the parent's.
 * Reaping: libev's default loop reaps every child itself (its SIGCHLD handler), any other loop
 * does not, so the parent also waits for the pid and accepts ECHILD. */
#include "snapwriter.h"

#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "raft/wal.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/util.h"

/* How long snapw_free lets a running child finish before it kills it. */
#define FINISH_WAIT_MS 10000

struct snapw {
	struct ev_loop *loop;
	char *dir;
	snapw_done_fn done;
	void *ctx;
	pid_t pid; /* 0: none running */
	int fd;    /* read end of the child's pipe, -1 when none */
	ev_io io;
	uint64_t index, term;
	int result;
	size_t got; /* bytes of `result` received */
};

int snapw_new(struct ev_loop *loop, const char *dir, snapw_done_fn done, void *ctx,
              struct snapw **ret)
{
	struct snapw *w = calloc(1, sizeof(*w));

	if (!w || !(w->dir = strdup(dir))) {
		free(w);
		return -ENOMEM;
	}
	w->loop = loop;
	w->done = done;
	w->ctx = ctx;
	w->fd = -1;
	*ret = w;
	return 0;
}

bool snapw_busy(const struct snapw *w)
{
	return w->pid != 0;
}

static void reap(struct snapw *w)
{
	ev_io_stop(w->loop, &w->io);
	close(w->fd);
	w->fd = -1;
	while (waitpid(w->pid, NULL, 0) < 0 && errno == EINTR)
		;
	w->pid = 0;
}

void snapw_cancel(struct snapw *w)
{
	if (!w || !w->pid)
		return;
	kill(w->pid, SIGKILL);
	reap(w);
}

static void on_pipe(struct ev_loop *loop, ev_io *io, int revents)
{
	struct snapw *w = container_of(io, struct snapw, io);
	ssize_t n;

	(void)loop;
	(void)revents;
	n = read(w->fd, (char *)&w->result + w->got, sizeof(w->result) - w->got);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n > 0) {
		w->got += (size_t)n;
		if (w->got < sizeof(w->result))
			return;
	} else if (w->got < sizeof(w->result)) {
		w->result = -ECHILD; /* died without a word: killed, or crashed */
	}
	reap(w);
	w->done(w->ctx, w->index, w->term, w->result);
}

void snapw_free(struct snapw *w)
{
	struct pollfd pfd;
	int64_t end;

	if (!w)
		return;
	/* A snapshot about to be durable saves the next start a long replay: let it finish. */
	end = flt_monotime_ns() + FINISH_WAIT_MS * 1000000LL;
	while (w->pid) {
		int64_t left = (end - flt_monotime_ns()) / 1000000;

		pfd = (struct pollfd){.fd = w->fd, .events = POLLIN};
		if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
			break;
		on_pipe(w->loop, &w->io, EV_READ);
	}
	snapw_cancel(w);
	free(w->dir);
	free(w);
}

static void close_inherited(int keep)
{
	if (keep > 3)
		close_range(3, (unsigned)keep - 1, 0);
	close_range((unsigned)keep + 1, ~0U, 0);
}

int snapw_start(struct snapw *w, uint64_t index, uint64_t term, const void *conf, size_t conf_len,
                snapw_serialize_fn fn, snapw_durable_fn durable, void *fn_ctx)
{
	int p[2];
	pid_t pid;

	if (w->pid)
		return -EBUSY;
	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	pid = fork();
	if (pid < 0) {
		int e = -errno;

		close(p[0]);
		close(p[1]);
		return e;
	}
	if (pid == 0) {
		struct buf b = BUF_INIT;
		int r;

		close_inherited(p[1]);
		/* Background work: on a core shared with the parent, the loop that serves
		 * clients goes first (nice 10 weighs a tenth of it). Not nice 19: under a steady
		 * write load the child then got ~1.5% of the core, snapshots fell behind and the
		 * log (memory, replay on restart) grew without bound. */
		if (nice(10) < 0) {
			/* not worth failing over */
		}
		r = fn(fn_ctx, &b);
		if (r >= 0)
			r = snap_save_conf(w->dir, index, term, conf, conf_len, b.data, b.len,
			                   true);
		if (r > 0)
			r = 0;
		if (r == 0 && durable)
			durable(fn_ctx, index);
		/* 4 bytes into an empty pipe: all or nothing. */
		if (write(p[1], &r, sizeof(r)) != sizeof(r))
			_exit(2);
		_exit(r < 0);
	}
	close(p[1]);
	fcntl(p[0], F_SETFL, O_NONBLOCK);
	w->pid = pid;
	w->fd = p[0];
	w->index = index;
	w->term = term;
	w->got = 0;
	w->result = 0;
	ev_io_init(&w->io, on_pipe, w->fd, EV_READ);
	ev_io_start(w->loop, &w->io);
	return 0;
}
