/* fleetctl's SSH features on the system's ssh client instead of a built-in one: --tunnel runs
 * `ssh -N -L` and flotctl talks HTTP to the local end, and `flotctl ssh` runs ssh to a machine's
 * public IP (through the tunnel host as a jump host). The user's ssh config, agent and known hosts
 * then apply as they do for every other ssh they run. */
#include "ctl/fleet_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util/util.h"

struct argv_b {
	char **v;
	size_t n, cap;
};

static void av_add(struct argv_b *a, const char *s)
{
	if (a->n + 2 > a->cap) {
		size_t nc = a->cap ? a->cap * 2 : 16;
		char **nv = realloc(a->v, nc * sizeof(*nv));

		if (!nv)
			ctl_oom();
		a->v = nv;
		a->cap = nc;
	}
	a->v[a->n] = strdup(s);
	if (!a->v[a->n])
		ctl_oom();
	a->v[++a->n] = NULL;
}

static void av_add2(struct argv_b *a, const char *prefix, const char *s)
{
	struct buf b = BUF_INIT;

	cb_puts(&b, prefix);
	cb_puts(&b, s);
	av_add(a, b.data);
	buf_release(&b);
}

static void av_free(struct argv_b *a)
{
	for (size_t i = 0; i < a->n; i++)
		free(a->v[i]);
	free(a->v);
}

/* Split "host[:port]" (fleetctl adds port 22 when missing; "[v6]:port" allowed). */
static void split_host_port(const char *hp, struct buf *host, int *port)
{
	const char *colon;

	*port = 22;
	if (hp[0] == '[') {
		const char *close = strchr(hp, ']');

		if (close) {
			cb_append(host, hp + 1, (size_t)(close - hp - 1));
			if (close[1] == ':')
				*port = atoi(close + 2);
			return;
		}
	}
	colon = strrchr(hp, ':');
	if (colon && strchr(hp, ':') == colon) {
		cb_append(host, hp, (size_t)(colon - hp));
		*port = atoi(colon + 1);
	} else {
		cb_puts(host, hp);
	}
	if (*port <= 0)
		*port = 22;
}

/* The options every ssh flotctl runs gets: timeout, host key policy, user. */
static void common_opts(struct argv_b *a, const struct ctl_ssh_opts *o)
{
	char num[32];

	snprintf(num, sizeof(num), "ConnectTimeout=%d", o->timeout_s >= 1 ? (int)o->timeout_s : 1);
	av_add(a, "-o");
	av_add(a, num);
	if (!o->strict) {
		av_add(a, "-o");
		av_add(a, "StrictHostKeyChecking=no");
		av_add(a, "-o");
		av_add(a, "UserKnownHostsFile=/dev/null");
	} else if (o->known_hosts && *o->known_hosts) {
		av_add(a, "-o");
		av_add2(a, "UserKnownHostsFile=", o->known_hosts);
	}
	av_add(a, "-l");
	av_add(a, o->user && *o->user ? o->user : "core");
}

static pid_t spawn(char **argv, bool quiet_stdio)
{
	pid_t pid = fork();

	if (pid == 0) {
		if (quiet_stdio) {
			int fd = open("/dev/null", O_RDWR);

			if (fd >= 0) {
				dup2(fd, 0);
				dup2(fd, 1);
				if (fd > 2)
					close(fd);
			}
		}
		execvp(argv[0], argv);
		fprintf(stderr, "cannot run '%s': %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	return pid;
}

/* A free loopback port picked by the kernel. The forward binds it a moment later; losing that
 * race makes ssh fail (ExitOnForwardFailure) and the caller reports it. */
static int free_port(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = -1;

	if (fd < 0)
		return -errno;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
		port = ntohs(sa.sin_port);
	close(fd);
	return port > 0 ? port : -EADDRNOTAVAIL;
}

static bool port_open(int port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok;

	if (fd < 0)
		return false;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return ok;
}

/* host and port of an http(s) URL; "127.0.0.1" and the scheme's port when missing. */
static void url_host_port(const char *url, struct buf *host, struct buf *port)
{
	const char *p = strstr(url, "://"), *end, *colon = NULL;
	bool https = !strncmp(url, "https", 5);

	p = p ? p + 3 : url;
	end = p + strcspn(p, "/?#");
	if (*p == '[') {
		const char *close = memchr(p, ']', (size_t)(end - p));

		if (close) {
			cb_append(host, p + 1, (size_t)(close - p - 1));
			colon = close + 1 < end && close[1] == ':' ? close + 1 : NULL;
		}
	} else {
		colon = memchr(p, ':', (size_t)(end - p));
		cb_append(host, p, (size_t)((colon ? colon : end) - p));
	}
	if (!host->len)
		cb_puts(host, "127.0.0.1");
	if (colon && colon + 1 < end)
		cb_append(port, colon + 1, (size_t)(end - colon - 1));
	else
		cb_puts(port, https ? "443" : "80");
}

int ctl_tunnel_open(const struct ctl_ssh_opts *o, const char *url, struct ctl_tunnel *ret,
                    struct buf *local_url, struct buf *err)
{
	struct argv_b a = {0};
	struct buf thost = BUF_INIT, rhost = BUF_INIT, rport = BUF_INIT, fwd = BUF_INIT;
	int tport, lport, r = 0, st;
	int64_t deadline;
	pid_t pid;
	char num[16];

	split_host_port(o->tunnel, &thost, &tport);
	url_host_port(url, &rhost, &rport);
	lport = free_port();
	if (lport < 0) {
		cb_printf(err, "failed initializing SSH client: no free local port: %s",
		          strerror(-lport));
		r = lport;
		goto out;
	}
	cb_printf(&fwd, "127.0.0.1:%d:%s%s%s:%s", lport, strchr(rhost.data, ':') ? "[" : "",
	          rhost.data, strchr(rhost.data, ':') ? "]" : "", rport.data);
	av_add(&a, "ssh");
	av_add(&a, "-N");
	av_add(&a, "-o");
	av_add(&a, "ExitOnForwardFailure=yes");
	common_opts(&a, o);
	snprintf(num, sizeof(num), "%d", tport);
	av_add(&a, "-p");
	av_add(&a, num);
	av_add(&a, "-L");
	av_add(&a, fwd.data);
	av_add(&a, thost.data);
	pid = spawn(a.v, true);
	if (pid < 0) {
		r = -errno;
		cb_printf(err, "failed initializing SSH client: %s", strerror(errno));
		goto out;
	}
	/* the forward is up when its local end accepts; ssh exiting first means it failed */
	deadline = flt_monotime_ns() + (int64_t)((o->timeout_s > 0 ? o->timeout_s : 10) * 1e9) +
	           1000000000LL;
	for (;;) {
		struct timespec ts = {0, 20000000};

		if (waitpid(pid, &st, WNOHANG) == pid) {
			cb_printf(err,
			          "failed initializing SSH client: ssh to %s exited with status %d",
			          o->tunnel, WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
			r = -ECONNREFUSED;
			goto out;
		}
		if (port_open(lport))
			break;
		if (flt_monotime_ns() > deadline) {
			kill(pid, SIGTERM);
			waitpid(pid, &st, 0);
			cb_printf(err, "failed initializing SSH client: timed out connecting to %s",
			          o->tunnel);
			r = -ETIMEDOUT;
			goto out;
		}
		nanosleep(&ts, NULL);
	}
	ret->pid = pid;
	ret->port = lport;
	cb_printf(local_url, "%s://127.0.0.1:%d", !strncmp(url, "https", 5) ? "https" : "http",
	          lport);
out:
	av_free(&a);
	buf_release(&thost);
	buf_release(&rhost);
	buf_release(&rport);
	buf_release(&fwd);
	return r;
}

void ctl_tunnel_close(struct ctl_tunnel *t)
{
	int st;

	if (!t || t->pid <= 0)
		return;
	kill(t->pid, SIGTERM);
	waitpid(t->pid, &st, 0);
	t->pid = 0;
}

int ctl_ssh_run(const struct ctl_ssh_opts *o, const char *host, int port, bool agent, char **cmd,
                int ncmd)
{
	struct argv_b a = {0};
	struct sigaction ign = {.sa_handler = SIG_IGN}, old_int, old_quit;
	char num[16];
	pid_t pid;
	int st, ret;

	av_add(&a, "ssh");
	common_opts(&a, o);
	if (agent)
		av_add(&a, "-A");
	snprintf(num, sizeof(num), "%d", port > 0 ? port : 22);
	av_add(&a, "-p");
	av_add(&a, num);
	if (o->tunnel && *o->tunnel) {
		struct buf th = BUF_INIT, j = BUF_INIT;
		int tp;

		split_host_port(o->tunnel, &th, &tp);
		cb_printf(&j, "%s@%s%s%s:%d", o->user && *o->user ? o->user : "core",
		          strchr(th.data, ':') ? "[" : "", th.data, strchr(th.data, ':') ? "]" : "",
		          tp);
		av_add(&a, "-J");
		av_add(&a, j.data);
		buf_release(&th);
		buf_release(&j);
	}
	av_add(&a, host);
	for (int i = 0; i < ncmd; i++)
		av_add(&a, cmd[i]);
	/* the terminal's ^C belongs to the remote side; ssh gets it, we wait for ssh */
	sigaction(SIGINT, &ign, &old_int);
	sigaction(SIGQUIT, &ign, &old_quit);
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid == 0) {
		sigaction(SIGINT, &old_int, NULL);
		sigaction(SIGQUIT, &old_quit, NULL);
		execvp(a.v[0], a.v);
		fprintf(stderr, "cannot run 'ssh': %s\n", strerror(errno));
		_exit(127);
	}
	if (pid < 0) {
		ret = -1;
	} else {
		while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
			;
		ret = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	}
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGQUIT, &old_quit, NULL);
	av_free(&a);
	return ret;
}
