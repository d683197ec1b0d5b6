/* flotilla-exec-shim: runs one command of a unit for the exec driver and outlives the daemon.
 * It reads EnvironmentFile=s, splits the command line the way systemd does, resolves User=/Group=,
 * forks the command into its own process group, relays its stdout+stderr and its end to the
 * driver as frames (shim.h), and, for the main process, listens on an abstract socket so that a
 * restarted daemon can reconnect, and writes the exit status into the unit's state directory.
 * Usage: flotilla-exec-shim -s FD [-l] [-S FILE] [-d DIR] [-u USER] [-g GROUP] [-e [-]FILE]...
 *        [-f [-p PIDFILE]] [-a] [-E] -- COMMAND-LINE */
#include "shim.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cmdline.h"

/* Output kept while no daemon is connected; beyond this, the oldest is dropped (a journal gap
 * beats a blocked service). */
#define SHIM_BACKLOG_MAX (1024 * 1024)

struct out {
	char *data;
	size_t len, cap;
};

static struct out q; /* whole frames, the first `sent` bytes already written to the client */
static size_t sent;
static int client = -1;
static size_t dropped;

static void die_oom(void)
{
	static const char msg[] = "flotilla-exec-shim: out of memory\n";

	if (write(2, msg, sizeof(msg) - 1) < 0) {
		/* nothing else to do */
	}
	_exit(SHIM_EXIT_ENV);
}

static void q_frame(int type, const void *data, size_t len)
{
	uint32_t l = (uint32_t)len;

	if (q.len + len + SHIM_HDR_LEN > q.cap) {
		size_t cap = q.cap ? q.cap : 4096;

		while (cap < q.len + len + SHIM_HDR_LEN)
			cap *= 2;
		q.data = realloc(q.data, cap);
		if (!q.data)
			die_oom();
		q.cap = cap;
	}
	q.data[q.len] = (char)type;
	memcpy(q.data + q.len + 1, &l, 4);
	if (len)
		memcpy(q.data + q.len + SHIM_HDR_LEN, data, len);
	q.len += len + SHIM_HDR_LEN;
}

static void q_text(int type, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void q_text(int type, const char *fmt, ...)
{
	char *s = NULL;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0)
		die_oom();
	q_frame(type, s, (size_t)n);
	free(s);
}

static uint32_t frame_len(size_t off)
{
	uint32_t l;

	memcpy(&l, q.data + off + 1, 4);
	return l;
}

/* The client went away: keep only whole output frames it has not seen (a new daemon is sent
 * the process and main pid afresh when it connects). */
static void q_disconnect(void)
{
	size_t off = 0, w = 0;

	close(client);
	client = -1;
	while (off < q.len) {
		size_t n = SHIM_HDR_LEN + frame_len(off);

		if (off >= sent && q.data[off] == SHIM_OUT) {
			memmove(q.data + w, q.data + off, n);
			w += n;
		}
		off += n;
	}
	q.len = w;
	sent = 0;
}

/* Drop whole output frames from the front while over the limit and no one reads. */
static void q_trim(void)
{
	size_t off = 0;

	while (q.len - off > SHIM_BACKLOG_MAX) {
		dropped += frame_len(off);
		off += SHIM_HDR_LEN + frame_len(off);
	}
	if (off) {
		memmove(q.data, q.data + off, q.len - off);
		q.len -= off;
	}
}

static void q_flush(void)
{
	while (client >= 0 && sent < q.len) {
		ssize_t n = send(client, q.data + sent, q.len - sent, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0) {
			q_disconnect();
			return;
		}
		sent += (size_t)n;
	}
	if (sent == q.len)
		q.len = sent = 0;
}

/* On the way out: give a connected daemon a few seconds to take the rest. */
static void q_flush_final(void)
{
	struct pollfd p;

	while (client >= 0 && q.len) {
		p.fd = client;
		p.events = POLLOUT;
		if (poll(&p, 1, 5000) <= 0)
			return;
		q_flush();
	}
}

/* Whatever is in the pipe right now (written just before a process ended). */
static void drain(int fd, bool open)
{
	char buf[16384];
	ssize_t n;

	while (open && (n = read(fd, buf, sizeof(buf))) > 0)
		q_frame(SHIM_OUT, buf, (size_t)n);
}

static int usage(void)
{
	fprintf(stderr, "usage: flotilla-exec-shim -s FD [-l] [-S FILE] [-d DIR] [-u USER] "
	                "[-g GROUP] [-e [-]FILE]... [-f [-p PIDFILE]] [-a] [-E] -- COMMAND-LINE\n");
	return 2;
}

/* Report a failure to even start the command, then the exit code systemd would show. */
static int fail(int code, int err, const char *what, const char *detail)
{
	q_text(SHIM_FAIL, "%d %s %s", err, what, detail ? detail : "");
	q_text(SHIM_EXIT, "%d 0", code);
	q_flush_final();
	return code;
}

static void write_status(const char *path, int code, int sig, long pid)
{
	char *tmp = NULL;
	FILE *f;

	if (!path || asprintf(&tmp, "%s.tmp", path) < 0)
		return;
	f = fopen(tmp, "we");
	if (f) {
		fprintf(f, "%d %d %ld\n", code, sig, pid);
		if (fclose(f) == 0)
			rename(tmp, path);
	}
	free(tmp);
}

static long read_pidfile(const char *path)
{
	FILE *f = fopen(path, "re");
	long pid = 0;

	if (!f)
		return 0;
	if (fscanf(f, "%ld", &pid) != 1)
		pid = 0;
	fclose(f);
	return pid > 0 ? pid : 0;
}

/* A forking service's daemon, re-parented to us (we are a subreaper): our first child. */
static long first_child(void)
{
	char path[64];
	FILE *f;
	long pid = 0;

	snprintf(path, sizeof(path), "/proc/self/task/%ld/children", (long)getpid());
	f = fopen(path, "re");
	if (!f)
		return 0;
	if (fscanf(f, "%ld", &pid) != 1)
		pid = 0;
	fclose(f);
	return pid;
}

static int open_listener(void)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd, n;

	n = snprintf(sa.sun_path + 1, sizeof(sa.sun_path) - 1, SHIM_SOCK_FMT, (long)getpid());
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -1;
	if (bind(fd, (struct sockaddr *)&sa,
	         (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n)) < 0 ||
	    listen(fd, 4) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Only the user the shim runs as (root, normally) may read a unit's output. */
static bool peer_ok(int fd)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0)
		return false;
	return cr.uid == 0 || cr.uid == getuid();
}

int main(int argc, char **argv)
{
	const char *status_file = NULL, *dir = NULL, *user = NULL, *group = NULL, *pidfile = NULL;
	bool listen_sock = false, forking = false, argv0_swap = false, expand = true;
	const char **envfiles = NULL;
	size_t n_envfiles = 0;
	char **cmd = NULL, *line;
	struct passwd *pw = NULL;
	uid_t uid = getuid();
	gid_t gid = getgid();
	int opt, out[2], err[2], lfd = -1, sfd, code = 0, sig = 0;
	long watched, start_pid = 0;
	bool out_open = true, done = false, start_done = false, finished = false, reported = false;
	sigset_t mask;
	pid_t pid;

	while ((opt = getopt(argc, argv, "+s:lS:d:u:g:e:fp:aE")) != -1) {
		switch (opt) {
		case 's':
			client = atoi(optarg);
			break;
		case 'l':
			listen_sock = true;
			break;
		case 'S':
			status_file = optarg;
			break;
		case 'd':
			dir = optarg;
			break;
		case 'u':
			user = optarg;
			break;
		case 'g':
			group = optarg;
			break;
		case 'e':
			envfiles = realloc(envfiles, (n_envfiles + 1) * sizeof(*envfiles));
			if (!envfiles)
				die_oom();
			envfiles[n_envfiles++] = optarg;
			break;
		case 'f':
			forking = true;
			break;
		case 'p':
			pidfile = optarg;
			break;
		case 'a':
			argv0_swap = true;
			break;
		case 'E':
			expand = false;
			break;
		default:
			return usage();
		}
	}
	if (optind + 1 != argc || client < 0)
		return usage();
	line = argv[optind];
	if (fcntl(client, F_SETFD, FD_CLOEXEC) < 0)
		return 1;
	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	/* A unit's stop signal goes to its command's group, not to us; a daemon being stopped by
	 * its init must not take the shims down either. */
	signal(SIGTERM, SIG_IGN);
	signal(SIGINT, SIG_IGN);

	for (size_t i = 0; i < n_envfiles; i++) {
		const char *f = envfiles[i];
		bool optional = *f == '-';
		int r = cmdline_load_envfile(optional ? f + 1 : f);

		if (r < 0 && !(optional && r == -ENOENT))
			return fail(SHIM_EXIT_ENV, -r, "envfile", optional ? f + 1 : f);
	}
	free(envfiles);

	if (user) {
		errno = 0;
		pw = getpwnam(user);
		if (!pw && isdigit((unsigned char)*user))
			pw = getpwuid((uid_t)strtoul(user, NULL, 10));
		if (!pw)
			return fail(SHIM_EXIT_USER, errno ? errno : ESRCH, "user", user);
		uid = pw->pw_uid;
		gid = pw->pw_gid;
		setenv("USER", pw->pw_name, 1);
		setenv("LOGNAME", pw->pw_name, 1);
		setenv("HOME", pw->pw_dir, 1);
		setenv("SHELL", pw->pw_shell, 1);
	}
	if (group) {
		struct group *gr;

		errno = 0;
		gr = getgrnam(group);
		if (!gr && isdigit((unsigned char)*group))
			gr = getgrgid((gid_t)strtoul(group, NULL, 10));
		if (!gr)
			return fail(SHIM_EXIT_GROUP, errno ? errno : ESRCH, "group", group);
		gid = gr->gr_gid;
	}

	{
		int r = cmdline_split(line, expand, &cmd);

		if (r < 0)
			return fail(SHIM_EXIT_ENV, -r, "cmdline", line);
		if (!cmd[0] || (argv0_swap && !cmd[1]))
			return fail(SHIM_EXIT_ENV, EINVAL, "cmdline", line);
	}

	if (listen_sock)
		lfd = open_listener();
	/* Leftover processes of the unit (a forking daemon, a backgrounded child) stay ours: we
	 * reap them, and we exit only when none is left, so the driver knows the unit is empty
	 * when our socket closes. */
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0 || pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0)
		return fail(SHIM_EXIT_EXEC, errno, "exec", cmd[0]);

	pid = fork();
	if (pid < 0)
		return fail(SHIM_EXIT_EXEC, errno, "exec", cmd[0]);
	if (pid == 0) {
		const char *what = "exec", *detail = cmd[0];
		int e, ecode = SHIM_EXIT_EXEC;
		char *msg = NULL;
		int n;

		setpgid(0, 0);
		sigprocmask(SIG_UNBLOCK, &mask, NULL);
		signal(SIGPIPE, SIG_DFL);
		signal(SIGHUP, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		if (dup2(out[1], 1) < 0 || dup2(out[1], 2) < 0)
			_exit(SHIM_EXIT_EXEC);
		{
			/* WorkingDirectory=: "-" ignores a missing one, "~" is the user's home. */
			const char *d = dir ? dir : "/";
			bool optional = *d == '-';

			d += optional;
			if (!strcmp(d, "~"))
				d = pw ? pw->pw_dir : getenv("HOME");
			if (!d || (chdir(d) < 0 && !optional)) {
				what = "chdir";
				detail = d ? d : "~";
				ecode = SHIM_EXIT_CHDIR;
				goto child_fail;
			}
		}
		if (pw || group) {
			if ((pw ? initgroups(pw->pw_name, gid) : setgroups(0, NULL)) < 0 ||
			    setgid(gid) < 0) {
				what = "group";
				detail = group ? group : user;
				ecode = SHIM_EXIT_GROUP;
				goto child_fail;
			}
			if (setuid(uid) < 0) {
				what = "user";
				detail = user;
				ecode = SHIM_EXIT_USER;
				goto child_fail;
			}
		}
		if (argv0_swap)
			execvp(cmd[0], cmd + 1);
		else
			execvp(cmd[0], cmd);
	child_fail:
		e = errno;
		n = asprintf(&msg, "%d %s %s", e, what, detail);
		if (n > 0 && write(err[1], msg, (size_t)n) < 0)
			_exit(ecode);
		_exit(ecode);
	}
	setpgid(pid, pid);
	close(out[1]);
	close(err[1]);
	fcntl(out[0], F_SETFL, O_NONBLOCK);
	watched = pid;
	{
		const char *a0 = cmd[0], *slash = strrchr(a0, '/');

		q_text(SHIM_PID, "%ld %s", (long)pid, slash ? slash + 1 : a0);
	}
	if (forking)
		start_pid = pid;

	while (!finished) {
		struct pollfd p[4];
		int np = 0, ip_out = -1, ip_sig, ip_l = -1, ip_c = -1;

		q_flush();
		if (out_open) {
			ip_out = np;
			p[np++] = (struct pollfd){.fd = out[0], .events = POLLIN};
		}
		ip_sig = np;
		p[np++] = (struct pollfd){.fd = sfd, .events = POLLIN};
		if (lfd >= 0) {
			ip_l = np;
			p[np++] = (struct pollfd){.fd = lfd, .events = POLLIN};
		}
		if (client >= 0) {
			ip_c = np;
			p[np++] = (struct pollfd){.fd = client, .events = q.len ? POLLOUT : POLLIN};
		}
		if (poll(p, (nfds_t)np, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (ip_out >= 0 && p[ip_out].revents) {
			char buf[16384];
			ssize_t n = read(out[0], buf, sizeof(buf));

			if (n > 0) {
				q_frame(SHIM_OUT, buf, (size_t)n);
			} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
				close(out[0]);
				out_open = false;
			}
		}
		if (ip_l >= 0 && p[ip_l].revents) {
			int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

			if (c >= 0 && peer_ok(c)) {
				/* A new daemon: drop the old one, introduce ourselves again, then
				 * hand over the output kept meanwhile. */
				struct out saved;
				const char *a0 = cmd[0], *slash = strrchr(a0, '/');

				if (client >= 0)
					q_disconnect();
				saved = q;
				q = (struct out){0};
				client = c;
				q_text(SHIM_PID, "%ld %s", (long)pid, slash ? slash + 1 : a0);
				if (forking && start_done)
					q_text(SHIM_MAIN, "%ld", watched);
				if (done)
					q_text(SHIM_EXIT, "%d %d", code, sig);
				if (dropped) {
					q_text(SHIM_OUT,
					       "[%zu bytes of output dropped while no daemon was "
					       "connected]\n",
					       dropped);
					dropped = 0;
				}
				for (size_t off = 0; off < saved.len;) {
					uint32_t l;

					memcpy(&l, saved.data + off + 1, 4);
					q_frame(saved.data[off], saved.data + off + SHIM_HDR_LEN,
					        l);
					off += SHIM_HDR_LEN + l;
				}
				free(saved.data);
			} else if (c >= 0) {
				close(c);
			}
		}
		if (ip_c >= 0 && client >= 0 && (p[ip_c].revents & (POLLIN | POLLHUP | POLLERR))) {
			char buf[256];
			ssize_t n = recv(client, buf, sizeof(buf), MSG_DONTWAIT);

			if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
				q_disconnect();
		}
		if (p[ip_sig].revents) {
			struct signalfd_siginfo si;
			int st;
			pid_t w;

			while (read(sfd, &si, sizeof(si)) > 0) {
			}
			while ((w = waitpid(-1, &st, WNOHANG)) > 0) {
				int c = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
				int s = WIFSIGNALED(st) ? WTERMSIG(st) : 0;

				if (w == start_pid && !start_done) {
					char ebuf[512];
					ssize_t n = read(err[0], ebuf, sizeof(ebuf) - 1);

					start_done = true;
					if (n > 0) {
						q_frame(SHIM_FAIL, ebuf, (size_t)n);
					} else if (c == 0) {
						long m = pidfile ? read_pidfile(pidfile) : 0;

						if (!m)
							m = first_child();
						q_text(SHIM_START, "%d %d", c, s);
						q_text(SHIM_MAIN, "%ld", m);
						watched = m;
						if (m)
							continue;
						code = 0;
						sig = 0;
						done = true;
						continue;
					}
					q_text(SHIM_START, "%d %d", c, s);
					code = c;
					sig = s;
					done = true;
				} else if (w == watched) {
					if (!forking) {
						char ebuf[512];
						ssize_t n = read(err[0], ebuf, sizeof(ebuf) - 1);

						if (n > 0)
							q_frame(SHIM_FAIL, ebuf, (size_t)n);
					}
					code = c;
					sig = s;
					done = true;
				}
			}
		}
		if (done && !reported) {
			/* The command ended: say so now, even if leftovers keep us around. */
			reported = true;
			drain(out[0], out_open);
			write_status(status_file, code, sig, watched);
			q_text(SHIM_EXIT, "%d %d", code, sig);
		}
		if (done && waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD)
			finished = true;
		if (client < 0)
			q_trim();
	}

	drain(out[0], out_open);
	if (lfd >= 0)
		close(lfd);
	q_flush_final();
	cmdline_free(cmd);
	free(q.data);
	return 0;
}
