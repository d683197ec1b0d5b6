/* Unit tests of the HTTP server: a server on 127.0.0.1:0 in this process with its own loop, and
 * non-blocking client sockets driven from the same thread (the loop is pumped with EVRUN_NOWAIT
 * until a deadline). Checks keep-alive, pipelining order, streaming, limits, malformed input,
 * disconnects with requests pending, timeouts, unix sockets and many connections. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>
#include <ev.h>

#include "http/web.h"
#include "util/buf.h"
#include "util/util.h"

#define DEADLINE_NS (10LL * 1000000000) /* generous: valgrind is slow */

/* ---- the server under test and its handler ---- */

struct tctx {
	struct ev_loop *loop;
	struct web_server *s;
	int port;
	struct web_req *held[64];
	int nheld;
	int closes;
	struct web_req *stream_req;
	int stream_closes;
	int handled;
	int async_pending;
};

static struct tctx T;

struct delayed {
	ev_timer w;
	struct web_req *r;
};

static void echo(struct web_req *r)
{
	struct buf b = BUF_INIT;
	struct web_header h[2] = {{"Content-Type", "text/plain"}, {"X-Method", web_req_method(r)}};
	size_t len;
	const char *body = web_req_body(r, &len);
	const char *x = web_req_header(r, "X-Test");

	buf_printf(&b, "%s %s?%s %zu %s\n", web_req_method(r), web_req_path(r), web_req_query(r),
	           len, x ? x : "-");
	buf_append(&b, body, len);
	web_respond(r, 200, h, 2, b.data, b.len);
	buf_release(&b);
}

static void on_delay(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct delayed *d = container_of(w, struct delayed, w);

	echo(d->r);
	T.async_pending--;
	free(d);
}

static void on_held_close(struct web_req *r, void *ctx)
{
	struct tctx *t = ctx;

	assert_false(web_req_connected(r));
	t->closes++;
}

static void on_stream_close(struct web_req *r, void *ctx)
{
	struct tctx *t = ctx;

	t->stream_closes++;
}

static long query_num(const struct web_req *r, const char *key)
{
	const char *q = strstr(web_req_query(r), key);

	return q ? strtol(q + strlen(key), NULL, 10) : 0;
}

static void handler(void *ud, struct web_req *r)
{
	struct tctx *t = ud;
	const char *path = web_req_path(r);

	t->handled++;
	if (!strcmp(path, "/echo")) {
		echo(r);
	} else if (!strcmp(path, "/async")) {
		struct delayed *d = calloc(1, sizeof(*d));

		assert_non_null(d);
		d->r = r;
		ev_timer_init(&d->w, on_delay, (double)query_num(r, "ms=") / 1000.0, 0.);
		ev_timer_start(t->loop, &d->w);
		t->async_pending++;
	} else if (!strcmp(path, "/stream")) {
		struct web_header h = {"Content-Type", "text/plain"};

		assert_int_equal(web_stream_begin(r, 200, &h, 1), 0);
		assert_int_equal(web_stream_write(r, "first\n", 6), 0);
		web_req_on_close(r, on_stream_close, t);
		t->stream_req = r;
	} else if (!strcmp(path, "/hold")) {
		web_req_on_close(r, on_held_close, t);
		assert_true(web_req_connected(r));
		t->held[t->nheld++] = r;
	} else if (!strcmp(path, "/close")) {
		struct web_header h = {"Connection", "close"};

		web_respond(r, 200, &h, 1, "bye\n", 4);
	} else if (!strcmp(path, "/big")) {
		size_t n = (size_t)query_num(r, "size=");
		char *p = malloc(n);

		assert_non_null(p);
		memset(p, 'x', n);
		web_respond(r, 200, NULL, 0, p, n);
		free(p);
	} else if (!strcmp(path, "/peer")) {
		const char *peer = web_req_peer(r);

		web_respond(r, 200, NULL, 0, peer, strlen(peer));
	} else {
		web_respond(r, 404, NULL, 0, "nope\n", 5);
	}
}

static void start_server(const struct web_limits *lim)
{
	memset(&T, 0, sizeof(T));
	T.loop = ev_loop_new(EVFLAG_AUTO);
	assert_non_null(T.loop);
	assert_int_equal(web_server_new(T.loop, lim, handler, &T, &T.s), 0);
	assert_int_equal(web_listen(T.s, "127.0.0.1:0"), 0);
	T.port = web_listener_port(T.s, 0);
	assert_true(T.port > 0);
}

static int teardown(void **state)
{
	int i;

	web_server_free(T.s);
	/* Requests a handler still held outlive the server; completing them only frees them. */
	for (i = 0; i < T.nheld; i++)
		web_respond(T.held[i], 200, NULL, 0, NULL, 0);
	if (T.stream_req)
		web_stream_end(T.stream_req);
	ev_loop_destroy(T.loop);
	memset(&T, 0, sizeof(T));
	return 0;
}

static int setup_default(void **state)
{
	start_server(NULL);
	return 0;
}

static int setup_small(void **state)
{
	struct web_limits lim;

	web_limits_default(&lim);
	lim.max_body = 1024;
	lim.max_head = 2048;
	lim.idle_timeout = 0.3;
	lim.read_timeout = 0.3;
	lim.max_pipeline = 4;
	start_server(&lim);
	return 0;
}

/* ---- the client side ---- */

struct cli {
	int fd;
	struct buf in;
	bool eof;
};

struct resp {
	int status;
	int minor;
	char *head; /* status line and headers */
	struct buf body;
	bool complete_by_eof;
};

static void pump(void)
{
	ev_run(T.loop, EVRUN_NOWAIT);
}

static int64_t deadline(void)
{
	return flt_monotime_ns() + DEADLINE_NS;
}

static void cli_open_fd(struct cli *c, int fd)
{
	memset(c, 0, sizeof(*c));
	c->fd = fd;
	assert_true(fd >= 0);
}

static int tcp_connect(int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_true(fd >= 0);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		assert_int_equal(errno, EINPROGRESS);
	return fd;
}

static void cli_open(struct cli *c)
{
	cli_open_fd(c, tcp_connect(T.port));
}

static void cli_close(struct cli *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	buf_release(&c->in);
}

static void cli_send(struct cli *c, const void *data, size_t len)
{
	const char *p = data;
	int64_t end = deadline();

	while (len) {
		ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);

		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) {
			c->eof = true; /* the server dropped us; the caller checks */
			return;
		}
		assert_true(n < 0 && (errno == EAGAIN || errno == ENOTCONN));
		assert_true(flt_monotime_ns() < end);
		pump();
	}
	pump();
}

static void cli_sends(struct cli *c, const char *s)
{
	cli_send(c, s, strlen(s));
}

/* Read what is there; false once nothing more will come. */
static bool cli_read(struct cli *c)
{
	char tmp[65536];
	ssize_t n;

	if (c->eof)
		return false;
	for (;;) {
		n = recv(c->fd, tmp, sizeof(tmp), 0);
		if (n > 0) {
			assert_int_equal(buf_append(&c->in, tmp, (size_t)n), 0);
			continue;
		}
		if (n == 0 || (errno != EAGAIN && errno != EINTR))
			c->eof = true; /* EOF or reset */
		return !c->eof;
	}
}

static void resp_release(struct resp *r)
{
	free(r->head);
	buf_release(&r->body);
	memset(r, 0, sizeof(*r));
}

static const char *resp_header(const struct resp *r, const char *name)
{
	static char val[256];
	const char *p = r->head;
	size_t nl = strlen(name);

	while ((p = strstr(p, "\r\n"))) {
		p += 2;
		if (!strncasecmp(p, name, nl) && p[nl] == ':') {
			const char *v = p + nl + 1, *e;

			while (*v == ' ')
				v++;
			e = strstr(v, "\r\n");
			snprintf(val, sizeof(val), "%.*s", (int)(e - v), v);
			return val;
		}
	}
	return NULL;
}

/* One complete response at the start of `in`: >0 bytes it takes, 0 incomplete, -1 malformed. */
static long parse_resp(const char *in, size_t len, bool eof, bool is_head, struct resp *ret)
{
	const char *end = memmem(in, len, "\r\n\r\n", 4), *p, *cl, *te;
	size_t hl, pos;
	struct resp r;

	memset(&r, 0, sizeof(r));
	if (!end)
		return 0;
	hl = (size_t)(end - in) + 4;
	if (len < 12 || strncmp(in, "HTTP/1.", 7))
		return -1;
	r.minor = in[7] - '0';
	r.status = atoi(in + 9);
	r.head = strndup(in, hl - 2);
	assert_non_null(r.head);
	cl = resp_header(&r, "Content-Length");
	if (cl)
		cl = strdup(cl);
	te = resp_header(&r, "Transfer-Encoding");
	pos = hl;
	if (is_head || r.status < 200 || r.status == 204 || r.status == 304) {
		/* no body */
	} else if (te && !strcasecmp(te, "chunked")) {
		for (;;) {
			char *e;
			unsigned long n;

			p = memmem(in + pos, len - pos, "\r\n", 2);
			if (!p)
				goto incomplete;
			n = strtoul(in + pos, &e, 16);
			if (e == in + pos)
				goto bad;
			pos = (size_t)(p - in) + 2;
			if (len - pos < n + 2)
				goto incomplete;
			buf_append(&r.body, in + pos, n);
			pos += n + 2;
			if (!n)
				break;
		}
	} else if (cl) {
		size_t n = strtoul(cl, NULL, 10);

		if (len - pos < n)
			goto incomplete;
		buf_append(&r.body, in + pos, n);
		pos += n;
	} else {
		if (!eof)
			goto incomplete;
		buf_append(&r.body, in + pos, len - pos);
		pos = len;
		r.complete_by_eof = true;
	}
	free((char *)cl);
	*ret = r;
	return (long)pos;
incomplete:
	free((char *)cl);
	resp_release(&r);
	return 0;
bad:
	free((char *)cl);
	resp_release(&r);
	return -1;
}

/* Wait for the next response (pumping the loop); false on timeout or EOF first. */
static bool cli_get(struct cli *c, struct resp *r, bool is_head)
{
	int64_t end = deadline();
	long n;

	memset(r, 0, sizeof(*r));
	for (;;) {
		cli_read(c);
		n = parse_resp(c->in.data ? c->in.data : "", c->in.len, c->eof, is_head, r);
		if (n > 0) {
			buf_consume(&c->in, (size_t)n);
			return true;
		}
		if (n < 0 || c->eof || flt_monotime_ns() > end)
			return false;
		pump();
	}
}

static bool cli_wait_eof(struct cli *c)
{
	int64_t end = deadline();

	while (cli_read(c)) {
		if (flt_monotime_ns() > end)
			return false;
		pump();
	}
	return true;
}

/* One request, one response, expected status; returns the body (owned by `r`). */
static void roundtrip(struct cli *c, const char *req, int status, struct resp *r)
{
	cli_sends(c, req);
	assert_true(cli_get(c, r, !strncmp(req, "HEAD", 4)));
	assert_int_equal(r->status, status);
}

static void pump_until(bool (*cond)(void))
{
	int64_t end = deadline();

	while (!cond()) {
		assert_true(flt_monotime_ns() < end);
		pump();
	}
}

/* ---- tests ---- */

static void test_get_put(void **state)
{
	struct cli c;
	struct resp r;

	cli_open(&c);
	roundtrip(&c, "GET /echo?a=1&b=%20 HTTP/1.1\r\nHost: x\r\nX-Test:  v1  \r\n\r\n", 200, &r);
	assert_string_equal(r.body.data, "GET /echo?a=1&b=%20 0 v1\n");
	assert_non_null(resp_header(&r, "Date"));
	assert_string_equal(resp_header(&r, "X-Method"), "GET");
	assert_string_equal(resp_header(&r, "Content-Length"), "25");
	assert_null(resp_header(&r, "Connection"));
	resp_release(&r);

	roundtrip(&c, "PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", 200, &r);
	assert_string_equal(r.body.data, "PUT /echo? 5 -\nhello");
	resp_release(&r);

	roundtrip(&c, "GET /missing HTTP/1.1\r\n\r\n", 404, &r);
	resp_release(&r);
	/* absolute-form target */
	roundtrip(&c, "GET http://h:1/echo?q=2#frag HTTP/1.1\r\n\r\n", 200, &r);
	assert_string_equal(r.body.data, "GET /echo?q=2 0 -\n");
	resp_release(&r);
	roundtrip(&c, "GET /peer HTTP/1.1\r\n\r\n", 200, &r);
	assert_true(!strncmp(r.body.data, "127.0.0.1:", 10));
	resp_release(&r);
	assert_int_equal(web_conn_count(T.s), 1);
	cli_close(&c);
}

static void test_keepalive(void **state)
{
	struct cli c;
	struct resp r;
	char req[128], want[64];
	int i;

	cli_open(&c);
	for (i = 0; i < 10; i++) {
		snprintf(req, sizeof(req), "GET /echo?i=%d HTTP/1.1\r\nHost: x\r\n\r\n", i);
		snprintf(want, sizeof(want), "GET /echo?i=%d 0 -\n", i);
		roundtrip(&c, req, 200, &r);
		assert_string_equal(r.body.data, want);
		resp_release(&r);
	}
	assert_int_equal(web_conn_count(T.s), 1);
	assert_false(c.eof);
	cli_close(&c);
}

static void test_pipeline_order(void **state)
{
	struct cli c;
	struct resp r;

	cli_open(&c);
	/* The first completes last, the last at once: answers still leave in request order. */
	cli_sends(&c, "GET /async?ms=150 HTTP/1.1\r\n\r\n"
	              "GET /async?ms=20 HTTP/1.1\r\n\r\n"
	              "PUT /echo HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
	              "GET /echo?last HTTP/1.1\r\n\r\n");
	assert_true(cli_get(&c, &r, false));
	assert_string_equal(r.body.data, "GET /async?ms=150 0 -\n");
	resp_release(&r);
	assert_true(cli_get(&c, &r, false));
	assert_string_equal(r.body.data, "GET /async?ms=20 0 -\n");
	resp_release(&r);
	assert_true(cli_get(&c, &r, false));
	assert_string_equal(r.body.data, "PUT /echo? 3 -\nabc");
	resp_release(&r);
	assert_true(cli_get(&c, &r, false));
	assert_string_equal(r.body.data, "GET /echo?last 0 -\n");
	resp_release(&r);
	cli_close(&c);
}

/* More pipelined requests than max_pipeline (4): parsing pauses, nothing is lost or reordered. */
static void test_pipeline_limit(void **state)
{
	struct buf req = BUF_INIT;
	char want[64];
	struct cli c;
	struct resp r;
	int i;

	for (i = 0; i < 40; i++)
		buf_printf(&req, "GET /async?ms=%d&i=%d HTTP/1.1\r\n\r\n", (i * 7) % 5, i);
	cli_open(&c);
	cli_send(&c, req.data, req.len);
	for (i = 0; i < 40; i++) {
		assert_true(cli_get(&c, &r, false));
		snprintf(want, sizeof(want), "GET /async?ms=%d&i=%d 0 -\n", (i * 7) % 5, i);
		assert_string_equal(r.body.data, want);
		resp_release(&r);
	}
	buf_release(&req);
	cli_close(&c);
}

static void test_http10(void **state)
{
	struct cli c;
	struct resp r;

	cli_open(&c);
	roundtrip(&c, "GET /echo HTTP/1.0\r\n\r\n", 200, &r);
	assert_int_equal(r.minor, 0);
	assert_string_equal(resp_header(&r, "Connection"), "close");
	resp_release(&r);
	assert_true(cli_wait_eof(&c));
	cli_close(&c);

	cli_open(&c);
	roundtrip(&c, "GET /echo?1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 200, &r);
	assert_string_equal(resp_header(&r, "Connection"), "keep-alive");
	resp_release(&r);
	roundtrip(&c, "GET /echo?2 HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", 200, &r);
	assert_string_equal(r.body.data, "GET /echo?2 0 -\n");
	resp_release(&r);
	assert_false(c.eof);
	cli_close(&c);
}

static void test_connection_close(void **state)
{
	struct cli c;
	struct resp r;

	/* Asked by the client: the request after it is ignored. */
	cli_open(&c);
	roundtrip(&c, "GET /echo HTTP/1.1\r\nConnection: close\r\n\r\nGET /echo HTTP/1.1\r\n\r\n",
	          200, &r);
	assert_string_equal(resp_header(&r, "Connection"), "close");
	resp_release(&r);
	assert_true(cli_wait_eof(&c));
	assert_int_equal(c.in.len, 0);
	cli_close(&c);

	/* Decided by the handler. */
	cli_open(&c);
	roundtrip(&c, "GET /close HTTP/1.1\r\n\r\n", 200, &r);
	assert_string_equal(resp_header(&r, "Connection"), "close");
	resp_release(&r);
	assert_true(cli_wait_eof(&c));
	cli_close(&c);
}

static void test_expect_continue(void **state)
{
	struct cli c;
	struct resp r;

	cli_open(&c);
	cli_sends(&c, "PUT /echo HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
	assert_true(cli_get(&c, &r, false));
	assert_int_equal(r.status, 100);
	resp_release(&r);
	cli_sends(&c, "howdy");
	assert_true(cli_get(&c, &r, false));
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body.data, "PUT /echo? 5 -\nhowdy");
	resp_release(&r);
	cli_close(&c);
}

static void test_expect_too_big(void **state)
{
	struct cli c;
	struct resp r;

	cli_open(&c);
	roundtrip(&c, "PUT /echo HTTP/1.1\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n",
	          413, &r);
	resp_release(&r);
	assert_true(cli_wait_eof(&c));
	cli_close(&c);
}

static void test_chunked_request(void **state)
{
	static const char *parts[] = {"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
	                              "5\r\nhel",
	                              "lo\r\n",
	                              "6;ext=1\r\n world\r\n",
	                              "0\r\n",
	                              "Trailer: x\r\n\r\n"};
	struct cli c;
	struct resp r;
	size_t i;

	cli_open(&c);
	for (i = 0; i < ARRAY_SIZE(parts); i++)
		cli_sends(&c, parts[i]);
	assert_true(cli_get(&c, &r, false));
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body.data, "POST /echo? 11 -\nhello world");
	resp_release(&r);
	cli_close(&c);
}

static bool have_stream(void)
{
	return T.stream_req != NULL;
}

static void test_stream(void **state)
{
	struct cli c;
	struct resp r;
	int64_t end = deadline();

	cli_open(&c);
	cli_sends(&c, "GET /stream HTTP/1.1\r\n\r\n");
	pump_until(have_stream);
	/* The head and the first chunk arrive while the stream is still open. */
	while (!c.in.data || !strstr(c.in.data, "6\r\nfirst\n\r\n")) {
		assert_true(flt_monotime_ns() < end);
		pump();
		cli_read(&c);
	}
	assert_non_null(strstr(c.in.data, "Transfer-Encoding: chunked\r\n"));
	assert_null(strstr(c.in.data, "0\r\n\r\n"));
	assert_int_equal(web_stream_write(T.stream_req, "second\n", 7), 0);
	web_stream_end(T.stream_req);
	T.stream_req = NULL;
	assert_true(cli_get(&c, &r, false));
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body.data, "first\nsecond\n");
	resp_release(&r);
	/* The connection is still usable. */
	roundtrip(&c, "GET /echo HTTP/1.1\r\n\r\n", 200, &r);
	resp_release(&r);
	cli_close(&c);

	/* HTTP/1.0 has no chunks: the body runs to the close. */
	cli_open(&c);
	cli_sends(&c, "GET /stream HTTP/1.0\r\n\r\n");
	pump_until(have_stream);
	assert_int_equal(web_stream_write(T.stream_req, "more\n", 5), 0);
	web_stream_end(T.stream_req);
	T.stream_req = NULL;
	assert_true(cli_get(&c, &r, false));
	assert_true(r.complete_by_eof);
	assert_string_equal(r.body.data, "first\nmore\n");
	resp_release(&r);
	cli_close(&c);
}

static void test_stream_behind_pending(void **state)
{
	struct cli c;
	struct resp r;

	/* A stream queued behind a slow request: its chunks wait for their turn. */
	cli_open(&c);
	cli_sends(&c, "GET /async?ms=100 HTTP/1.1\r\n\r\nGET /stream HTTP/1.1\r\n\r\n");
	pump_until(have_stream);
	assert_int_equal(web_stream_write(T.stream_req, "x\n", 2), 0);
	web_stream_end(T.stream_req);
	T.stream_req = NULL;
	assert_true(cli_get(&c, &r, false));
	assert_string_equal(r.body.data, "GET /async?ms=100 0 -\n");
	resp_release(&r);
	assert_true(cli_get(&c, &r, false));
	assert_string_equal(r.body.data, "first\nx\n");
	resp_release(&r);
	cli_close(&c);
}

static void test_head(void **state)
{
	struct cli c;
	struct resp r;

	cli_open(&c);
	roundtrip(&c, "HEAD /echo HTTP/1.1\r\n\r\n", 200, &r);
	assert_string_equal(resp_header(&r, "Content-Length"), "16");
	assert_int_equal(r.body.len, 0);
	resp_release(&r);
	/* Nothing but the head was sent: the next response parses right after it. */
	roundtrip(&c, "GET /echo HTTP/1.1\r\n\r\n", 200, &r);
	assert_string_equal(r.body.data, "GET /echo? 0 -\n");
	resp_release(&r);
	assert_int_equal(c.in.len, 0);
	cli_close(&c);
}

static void test_431(void **state)
{
	struct buf req = BUF_INIT;
	struct cli c;
	struct resp r;
	int i;

	buf_puts(&req, "GET /echo HTTP/1.1\r\nX-Big: ");
	for (i = 0; i < 3000; i++)
		buf_putc(&req, 'a');
	buf_puts(&req, "\r\n\r\n");
	cli_open(&c);
	cli_send(&c, req.data, req.len);
	assert_true(cli_get(&c, &r, false));
	assert_int_equal(r.status, 431);
	resp_release(&r);
	assert_true(cli_wait_eof(&c));
	cli_close(&c);

	/* A long URL counts too. */
	buf_clear(&req);
	buf_puts(&req, "GET /");
	for (i = 0; i < 3000; i++)
		buf_putc(&req, 'u');
	buf_puts(&req, " HTTP/1.1\r\n\r\n");
	cli_open(&c);
	cli_send(&c, req.data, req.len);
	assert_true(cli_get(&c, &r, false));
	assert_int_equal(r.status, 431);
	resp_release(&r);
	cli_close(&c);
	buf_release(&req);
}

static void test_413(void **state)
{
	struct buf req = BUF_INIT;
	struct cli c;
	struct resp r;
	int i;

	/* Known from Content-Length before any of the body is read. */
	cli_open(&c);
	roundtrip(&c, "PUT /echo HTTP/1.1\r\nContent-Length: 2048\r\n\r\n", 413, &r);
	assert_string_equal(resp_header(&r, "Connection"), "close");
	resp_release(&r);
	assert_true(cli_wait_eof(&c));
	cli_close(&c);

	/* Found during a chunked body. */
	buf_puts(&req, "PUT /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
	for (i = 0; i < 5; i++) {
		buf_puts(&req, "100\r\n");
		for (int j = 0; j < 256; j++)
			buf_putc(&req, 'b');
		buf_puts(&req, "\r\n");
	}
	buf_puts(&req, "0\r\n\r\n");
	cli_open(&c);
	cli_send(&c, req.data, req.len);
	assert_true(cli_get(&c, &r, false));
	assert_int_equal(r.status, 413);
	resp_release(&r);
	assert_true(cli_wait_eof(&c));
	cli_close(&c);
	buf_release(&req);

	/* Exactly the limit is fine. */
	buf_init(&req);
	buf_puts(&req, "PUT /echo HTTP/1.1\r\nContent-Length: 1024\r\n\r\n");
	for (i = 0; i < 1024; i++)
		buf_putc(&req, 'c');
	cli_open(&c);
	cli_send(&c, req.data, req.len);
	assert_true(cli_get(&c, &r, false));
	assert_int_equal(r.status, 200);
	resp_release(&r);
	cli_close(&c);
	buf_release(&req);
}

struct bad_case {
	const char *name;
	const char *data;
	size_t len; /* 0: strlen */
	int status; /* 0: any 4xx */
};

#define NUL_CASE(n, s)                                                                             \
	{                                                                                          \
		n, s, sizeof(s) - 1, 400                                                           \
	}

static void test_malformed(void **state)
{
	static char many_headers[4096];
	static const struct bad_case cases[] = {
	    {"bad method", "FOO / HTTP/1.1\r\n\r\n", 0, 400},
	    {"lowercase method", "get / HTTP/1.1\r\n\r\n", 0, 400},
	    {"bad version", "GET / HTTP/1.x\r\n\r\n", 0, 400},
	    {"bad protocol", "GET / XTTP/1.1\r\n\r\n", 0, 400},
	    {"junk after version", "GET / HTTP/1.1 x\r\n\r\n", 0, 400},
	    {"no target", "GET HTTP/1.1\r\n\r\n", 0, 400},
	    {"space in target", "GET /a b HTTP/1.1\r\n\r\n", 0, 400},
	    {"header without colon", "GET / HTTP/1.1\r\nBad Header\r\n\r\n", 0, 400},
	    {"control char in value",
	     "GET / HTTP/1.1\r\nX: a\x01"
	     "b\r\n\r\n",
	     0, 400},
	    {"DEL in name", "GET / HTTP/1.1\r\nX\x7f: a\r\n\r\n", 0, 400},
	    {"obs-fold first", "GET / HTTP/1.1\r\n folded\r\n\r\n", 0, 400},
	    {"bare CR in value", "GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", 0, 400},
	    {"bare LF in target", "GET /\nx HTTP/1.1\r\n\r\n", 0, 400},
	    {"binary garbage", "\x01\x02\x03\r\n\r\n", 0, 400},
	    NUL_CASE("NUL in target", "GET /\0 HTTP/1.1\r\n\r\n"),
	    NUL_CASE("NUL in value", "GET / HTTP/1.1\r\nX: a\0b\r\n\r\n"),
	    NUL_CASE("NUL first", "\0GET / HTTP/1.1\r\n\r\n"),
	    {"bad content-length", "PUT / HTTP/1.1\r\nContent-Length: abc\r\n\r\n", 0, 400},
	    {"negative content-length", "PUT / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 0, 400},
	    {"two content-lengths",
	     "PUT / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 0, 400},
	    {"content-length and chunked",
	     "PUT / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: "
	     "chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
	     0, 400},
	    {"bad chunk size", "PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 0,
	     400},
	    {"huge chunk size",
	     "PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffffff\r\n", 0, 0},
	    {"unknown transfer-encoding", "PUT / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\nabc", 0,
	     400},
	    {"huge header count", many_headers, 0, 431},
	    {"header too big", NULL, 0, 431},
	};
	size_t i;
	int n;

	/* 200 tiny headers: under max_head (2048)? no - but the count limit (128) trips first. */
	n = snprintf(many_headers, sizeof(many_headers), "GET / HTTP/1.1\r\n");
	for (i = 0; i < 200; i++)
		n += snprintf(many_headers + n, sizeof(many_headers) - (size_t)n, "a:\r\n");
	snprintf(many_headers + n, sizeof(many_headers) - (size_t)n, "\r\n");

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		const struct bad_case *bc = &cases[i];
		struct cli c;
		struct resp r;
		char big[4096];
		const char *data = bc->data;
		size_t len = bc->len;

		if (!data) {
			memset(big, 0, sizeof(big));
			snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nX: %03000d\r\n\r\n", 1);
			data = big;
		}
		if (!len)
			len = strlen(data);
		print_message("malformed: %s\n", bc->name);
		cli_open(&c);
		cli_send(&c, data, len);
		assert_true(cli_get(&c, &r, false));
		if (bc->status)
			assert_int_equal(r.status, bc->status);
		else
			assert_true(r.status >= 400 && r.status < 500);
		assert_string_equal(resp_header(&r, "Connection"), "close");
		resp_release(&r);
		assert_true(cli_wait_eof(&c));
		cli_close(&c);

		/* The server is still fine. */
		cli_open(&c);
		roundtrip(&c, "GET /echo HTTP/1.1\r\n\r\n", 200, &r);
		resp_release(&r);
		cli_close(&c);
	}
	assert_int_equal(T.handled, (int)ARRAY_SIZE(cases));
}

static void test_bad_version(void **state)
{
	struct cli c;
	struct resp r;

	cli_open(&c);
	roundtrip(&c, "GET / HTTP/9.9\r\n\r\n", 505, &r);
	resp_release(&r);
	cli_close(&c);
	cli_open(&c);
	roundtrip(&c, "GET / HTTP/0.9\r\n\r\n", 505, &r);
	resp_release(&r);
	cli_close(&c);
	assert_int_equal(T.handled, 0);
}

/* A malformed request behind an answered one: the good answer comes first, then the error. */
static void test_error_after_good(void **state)
{
	struct cli c;
	struct resp r;

	cli_open(&c);
	cli_sends(&c, "GET /async?ms=50 HTTP/1.1\r\n\r\nBROKEN\r\n\r\n");
	assert_true(cli_get(&c, &r, false));
	assert_int_equal(r.status, 200);
	resp_release(&r);
	assert_true(cli_get(&c, &r, false));
	assert_int_equal(r.status, 400);
	resp_release(&r);
	assert_true(cli_wait_eof(&c));
	cli_close(&c);
}

static bool guard_fired;

static void on_guard(struct ev_loop *loop, ev_timer *w, int revents)
{
	guard_fired = true;
}

static bool held_one(void)
{
	return T.nheld == 1;
}

static bool closed_one(void)
{
	return T.closes == 1;
}

static bool no_conns(void)
{
	return web_conn_count(T.s) == 0;
}

static void test_disconnect_pending(void **state)
{
	struct cli c;

	cli_open(&c);
	cli_sends(&c, "GET /hold HTTP/1.1\r\n\r\n");
	pump_until(held_one);
	assert_true(web_req_connected(T.held[0]));
	assert_int_equal(T.closes, 0);
	cli_close(&c);
	pump_until(closed_one);
	pump_until(no_conns);
	/* Still valid: its fields can be read, completing it only frees it. */
	assert_string_equal(web_req_path(T.held[0]), "/hold");
	assert_true(!strncmp(web_req_peer(T.held[0]), "127.0.0.1:", 10));
	assert_false(web_req_connected(T.held[0]));
	web_respond(T.held[0], 200, NULL, 0, "late", 4);
	T.nheld = 0;
	pump();
	assert_int_equal(T.closes, 1);
}

static void test_disconnect_pipelined(void **state)
{
	struct cli c;

	/* A held request with more pipelined behind it: one request of a connection is handled at
	 * a time, so only the first reaches the handler; the client leaving fires its close
	 * callback once and the rest are dropped unparsed. */
	cli_open(&c);
	cli_sends(&c,
	          "GET /hold HTTP/1.1\r\n\r\nGET /echo HTTP/1.1\r\n\r\nGET /hold HTTP/1.1\r\n\r\n"
	          "GET /echo HTTP/1.1\r\n\r\n");
	pump_until(held_one);
	cli_close(&c);
	pump_until(no_conns);
	assert_int_equal(T.nheld, 1);
	assert_int_equal(T.closes, 1);
	web_respond(T.held[0], 200, NULL, 0, NULL, 0);
	T.nheld = 0;
}

static void on_late_prepare(struct ev_loop *loop, ev_prepare *w, int revents)
{
	web_respond(T.held[0], 200, NULL, 0, "from prepare", 12);
	T.nheld = 0;
	ev_prepare_stop(loop, w);
}

static bool client_readable;

static void on_client_readable(struct ev_loop *loop, ev_io *w, int revents)
{
	client_readable = true;
	ev_io_stop(loop, w);
}

/* Another module answering from its own ev_prepare callback (the WAL's group commit does): the
 * response must leave before the loop blocks, not at the next unrelated wake-up. */
static void test_respond_from_prepare(void **state)
{
	ev_prepare late;
	ev_io cw;
	ev_timer guard;
	struct cli c;
	struct resp r;
	int64_t t0;

	cli_open(&c);
	cli_sends(&c, "GET /hold HTTP/1.1\r\n\r\n");
	pump_until(held_one);
	ev_prepare_init(&late, on_late_prepare);
	ev_prepare_start(T.loop, &late);
	ev_io_init(&cw, on_client_readable, c.fd, EV_READ);
	ev_io_start(T.loop, &cw);
	ev_timer_init(&guard, on_guard, 2.0, 0.);
	ev_timer_start(T.loop, &guard);
	guard_fired = client_readable = false;
	t0 = flt_monotime_ns();
	while (!client_readable && !guard_fired)
		ev_run(T.loop, EVRUN_ONCE);
	assert_true(client_readable);
	assert_true(flt_monotime_ns() - t0 < 1000000000LL);
	ev_timer_stop(T.loop, &guard);
	ev_io_stop(T.loop, &cw);
	ev_prepare_stop(T.loop, &late);
	assert_true(cli_get(&c, &r, false));
	assert_string_equal(r.body.data, "from prepare");
	resp_release(&r);
	cli_close(&c);
}

static bool stream_closed(void)
{
	return T.stream_closes == 1;
}

static void test_stream_client_gone(void **state)
{
	struct cli c;

	cli_open(&c);
	cli_sends(&c, "GET /stream HTTP/1.1\r\n\r\n");
	pump_until(have_stream);
	cli_close(&c);
	pump_until(stream_closed);
	assert_int_equal(web_stream_write(T.stream_req, "x", 1), -EPIPE);
	web_stream_end(T.stream_req);
	T.stream_req = NULL;
}

/* A stream whose client stopped reading is cut off once a few MiB wait for it, instead of
 * growing without bound (thousands of stalled watchers would otherwise hold gigabytes). */
static void test_stream_stalled_reader(void **state)
{
	static char chunk[64 * 1024];
	struct cli c;
	int r = 0;
	size_t sent = 0;

	memset(chunk, 'w', sizeof(chunk));
	cli_open(&c);
	cli_sends(&c, "GET /stream HTTP/1.1\r\n\r\n");
	pump_until(have_stream);
	/* The client never reads: the kernel buffers take some, then the server's output grows. */
	while (sent < (64u << 20) && (r = web_stream_write(T.stream_req, chunk, sizeof(chunk))) == 0) {
		sent += sizeof(chunk);
		ev_run(T.loop, EVRUN_NOWAIT);
	}
	assert_int_equal(r, -EPIPE);
	assert_true(sent < (16u << 20));
	web_stream_end(T.stream_req);
	T.stream_req = NULL;
	cli_close(&c);
}

static void test_server_free_pending(void **state)
{
	struct cli c;

	cli_open(&c);
	cli_sends(&c, "GET /hold HTTP/1.1\r\n\r\n");
	pump_until(held_one);
	web_server_free(T.s);
	T.s = NULL;
	assert_int_equal(T.closes, 1);
	assert_false(web_req_connected(T.held[0]));
	/* Completed after the server is gone: freed, nothing else. */
	web_respond(T.held[0], 200, NULL, 0, NULL, 0);
	T.nheld = 0;
	assert_true(cli_wait_eof(&c));
	cli_close(&c);
}

static void test_idle_timeout(void **state)
{
	struct cli c;
	struct resp r;
	int64_t t0;

	cli_open(&c);
	roundtrip(&c, "GET /echo HTTP/1.1\r\n\r\n", 200, &r);
	resp_release(&r);
	t0 = flt_monotime_ns();
	assert_true(cli_wait_eof(&c));
	assert_true(flt_monotime_ns() - t0 >= 250 * 1000000LL);
	cli_close(&c);
	pump_until(no_conns);

	/* A connection that never sends anything goes as well. */
	cli_open(&c);
	assert_true(cli_wait_eof(&c));
	cli_close(&c);
}

static void test_read_timeout(void **state)
{
	struct cli c;
	struct resp r;

	/* A request that starts and never ends: 408, then close. */
	cli_open(&c);
	cli_sends(&c, "GET /echo HTTP/1.1\r\nHost: sl");
	assert_true(cli_get(&c, &r, false));
	assert_int_equal(r.status, 408);
	resp_release(&r);
	assert_true(cli_wait_eof(&c));
	cli_close(&c);
	assert_int_equal(T.handled, 0);

	/* A handler taking longer than the timeouts does not get its connection cut. */
	cli_open(&c);
	roundtrip(&c, "GET /async?ms=700 HTTP/1.1\r\n\r\n", 200, &r);
	resp_release(&r);
	cli_close(&c);
}

static void test_unix_socket(void **state)
{
	struct sockaddr_un un = {.sun_family = AF_UNIX};
	char path[64];
	struct cli c;
	struct resp r;
	int fd;

	snprintf(path, sizeof(path), "/tmp/flt-test-web-%d.sock", (int)getpid());
	snprintf(un.sun_path, sizeof(un.sun_path), "%s", path);
	/* A stale socket file (bound, nobody listening) is replaced. */
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&un, sizeof(un)), 0);
	close(fd);
	{
		char url[80];

		snprintf(url, sizeof(url), "unix://%s", path);
		assert_int_equal(web_listen(T.s, url), 0);
		/* A live one is not. */
		assert_int_equal(web_listen(T.s, url), -EADDRINUSE);
	}
	assert_int_equal(web_listener_port(T.s, 1), 0);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&un, sizeof(un)), 0);
	cli_open_fd(&c, fd);
	roundtrip(&c, "GET /peer HTTP/1.1\r\n\r\n", 200, &r);
	assert_string_equal(r.body.data, "unix");
	resp_release(&r);
	cli_close(&c);
	web_server_free(T.s);
	T.s = NULL;
	assert_int_equal(access(path, F_OK), -1); /* removed on free */
}

static void test_listen_urls(void **state)
{
	static const char *good[] = {"http://127.0.0.1:0", "127.0.0.1:0", "http://localhost:0",
	                             "http://0.0.0.0:0", "localhost:0/"};
	static const char *bad[] = {"",
	                            "127.0.0.1",
	                            "http://127.0.0.1:",
	                            "http://127.0.0.1:x",
	                            "http://127.0.0.1:70000",
	                            "https://127.0.0.1:0",
	                            "http://example.com:80",
	                            "[::1]:",
	                            "[::1",
	                            "unix:",
	                            "http://127.0.0.1:0/path"};
	size_t i;
	int r;

	for (i = 0; i < ARRAY_SIZE(good); i++) {
		assert_int_equal(web_listen(T.s, good[i]), 0);
		assert_true(web_listener_port(T.s, (unsigned)i + 1) > 0);
	}
	for (i = 0; i < ARRAY_SIZE(bad); i++)
		assert_int_equal(web_listen(T.s, bad[i]), -EINVAL);
	/* IPv6 may be missing in a container. */
	r = web_listen(T.s, "http://[::1]:0");
	assert_true(r == 0 || r == -EADDRNOTAVAIL || r == -EAFNOSUPPORT);
	/* The port is taken. */
	{
		char url[64];

		snprintf(url, sizeof(url), "127.0.0.1:%d", T.port);
		assert_int_equal(web_listen(T.s, url), -EADDRINUSE);
	}
	assert_int_equal(web_listener_port(T.s, 1000), 0);
}

static unsigned want_conns;

static bool conns_reached(void)
{
	return web_conn_count(T.s) >= want_conns;
}

static void test_many_connections(void **state)
{
	enum { N = 2000 };
	struct cli *c = calloc(N, sizeof(*c));
	char req[80], want[64];
	int i, done = 0;
	bool *got = calloc(N, sizeof(*got));
	int64_t end;

	assert_non_null(c);
	assert_non_null(got);
	for (i = 0; i < N; i++) {
		cli_open(&c[i]);
		if (i % 50 == 49)
			pump(); /* let the server accept as the backlog fills */
	}
	want_conns = N;
	pump_until(conns_reached);
	for (i = 0; i < N; i++) {
		snprintf(req, sizeof(req), "GET /echo?c=%d HTTP/1.1\r\n\r\n", i);
		cli_sends(&c[i], req);
	}
	end = flt_monotime_ns() + 4 * DEADLINE_NS;
	while (done < N) {
		assert_true(flt_monotime_ns() < end);
		pump();
		for (i = 0; i < N; i++) {
			struct resp r;

			if (got[i])
				continue;
			cli_read(&c[i]);
			if (parse_resp(c[i].in.data ? c[i].in.data : "", c[i].in.len, c[i].eof,
			               false, &r) > 0) {
				snprintf(want, sizeof(want), "GET /echo?c=%d 0 -\n", i);
				assert_string_equal(r.body.data, want);
				resp_release(&r);
				got[i] = true;
				done++;
			}
		}
	}
	assert_int_equal(web_conn_count(T.s), N);
	for (i = 0; i < N; i++)
		cli_close(&c[i]);
	pump_until(no_conns);
	free(c);
	free(got);
}

static bool handled_two(void)
{
	return T.handled >= 2;
}

/* A client that sends requests but does not read: parsing stops once ~4 MiB wait to be sent, and
 * everything arrives, in order, once it reads. */
static void test_output_backpressure(void **state)
{
	struct buf req = BUF_INIT;
	struct cli c;
	struct resp r;
	int i, rounds;

	for (i = 0; i < 8; i++)
		buf_puts(&req, "GET /big?size=3000000 HTTP/1.1\r\n\r\n");
	buf_puts(&req, "GET /echo?end HTTP/1.1\r\n\r\n");
	cli_open(&c);
	cli_send(&c, req.data, req.len);
	pump_until(handled_two);
	for (rounds = 0; rounds < 200; rounds++)
		pump();
	assert_true(T.handled < 9);
	for (i = 0; i < 8; i++) {
		assert_true(cli_get(&c, &r, false));
		assert_int_equal(r.status, 200);
		assert_int_equal(r.body.len, 3000000);
		resp_release(&r);
	}
	assert_true(cli_get(&c, &r, false));
	assert_string_equal(r.body.data, "GET /echo?end 0 -\n");
	resp_release(&r);
	assert_int_equal(T.handled, 9);
	buf_release(&req);
	cli_close(&c);
}

/* Out of file descriptors: accepting pauses (the loop does not spin on a listener that stays
 * readable), and resumes by itself once descriptors are free again. */
static void test_emfile(void **state)
{
	struct cli c[5], c5;
	struct rlimit old, low;
	ev_timer guard;
	struct resp r;
	int i, lowest, iters = 0;

	for (i = 0; i < 5; i++)
		cli_open(&c[i]);
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
	lowest = dup(0);
	assert_true(lowest >= 0);
	close(lowest);
	low = old;
	low.rlim_cur = (rlim_t)lowest + 1; /* room for one accept */
	if (setrlimit(RLIMIT_NOFILE, &low) < 0) {
		for (i = 0; i < 5; i++)
			cli_close(&c[i]);
		skip();
	}
	ev_timer_init(&guard, on_guard, 0.05, 0.);
	ev_timer_start(T.loop, &guard);
	guard_fired = false;
	while (!guard_fired) {
		ev_run(T.loop, EVRUN_ONCE);
		iters++;
	}
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
	assert_true(web_conn_count(T.s) < 5);
	print_message("emfile: %d loop turns in 50 ms, %u accepted\n", iters, web_conn_count(T.s));
	assert_true(iters < 20);
	/* Accepting resumes: a new client is served. */
	cli_open(&c5);
	roundtrip(&c5, "GET /echo HTTP/1.1\r\n\r\n", 200, &r);
	resp_release(&r);
	cli_close(&c5);
	/* So are the waiting ones (valgrind, which emulates the limit, drops them instead). */
	for (i = 0; i < 5; i++) {
		cli_sends(&c[i], "GET /echo HTTP/1.1\r\n\r\n");
		if (cli_get(&c[i], &r, false))
			assert_int_equal(r.status, 200);
		else
			assert_true(c[i].eof);
		resp_release(&r);
		cli_close(&c[i]);
	}
}

static int setup_two_conns(void **state)
{
	struct web_limits lim;

	web_limits_default(&lim);
	lim.max_conns = 2;
	start_server(&lim);
	return 0;
}

static bool two_conns(void)
{
	return web_conn_count(T.s) == 2;
}

/* Over max_conns, connections wait in the backlog until one closes. */
static void test_max_conns(void **state)
{
	struct cli c[3];
	struct resp r;
	int i;

	for (i = 0; i < 3; i++)
		cli_open(&c[i]);
	pump_until(two_conns);
	for (i = 0; i < 3; i++)
		cli_sends(&c[i], "GET /echo HTTP/1.1\r\n\r\n");
	for (i = 0; i < 2; i++) {
		assert_true(cli_get(&c[i], &r, false));
		assert_int_equal(r.status, 200);
		resp_release(&r);
	}
	for (i = 0; i < 50; i++)
		pump();
	assert_int_equal(web_conn_count(T.s), 2);
	cli_read(&c[2]);
	assert_int_equal(c[2].in.len, 0);
	cli_close(&c[0]);
	assert_true(cli_get(&c[2], &r, false));
	assert_int_equal(r.status, 200);
	resp_release(&r);
	cli_close(&c[1]);
	cli_close(&c[2]);
}

static void test_unescape(void **state)
{
	size_t len;
	char *s;

	s = web_unescape("a%20b+c%2Fd", 11, false, &len);
	assert_string_equal(s, "a b+c/d");
	assert_int_equal(len, 7);
	free(s);
	s = web_unescape("a%20b+c", 7, true, NULL);
	assert_string_equal(s, "a b c");
	free(s);
	s = web_unescape("%00x", 4, false, &len);
	assert_int_equal(len, 2);
	assert_int_equal(s[0], 0);
	free(s);
	s = web_unescape("", 0, false, &len);
	assert_string_equal(s, "");
	free(s);
	assert_null(web_unescape("%", 1, false, NULL));
	assert_null(web_unescape("%4", 2, false, NULL));
	assert_null(web_unescape("%zz", 3, false, NULL));
	assert_null(web_unescape("abc%4g", 6, false, NULL));
	/* `len` bounds the input even without a NUL. */
	s = web_unescape("ab%41zzz", 5, false, &len);
	assert_string_equal(s, "abA");
	free(s);

	assert_string_equal(web_status_text(200), "OK");
	assert_string_equal(web_status_text(404), "Not Found");
	assert_string_equal(web_status_text(412), "Precondition Failed");
	assert_string_equal(web_status_text(431), "Request Header Fields Too Large");
	assert_string_equal(web_status_text(999), "Unknown");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_get_put, setup_default, teardown),
	    cmocka_unit_test_setup_teardown(test_keepalive, setup_default, teardown),
	    cmocka_unit_test_setup_teardown(test_pipeline_order, setup_default, teardown),
	    cmocka_unit_test_setup_teardown(test_pipeline_limit, setup_small, teardown),
	    cmocka_unit_test_setup_teardown(test_http10, setup_default, teardown),
	    cmocka_unit_test_setup_teardown(test_connection_close, setup_default, teardown),
	    cmocka_unit_test_setup_teardown(test_expect_continue, setup_default, teardown),
	    cmocka_unit_test_setup_teardown(test_expect_too_big, setup_small, teardown),
	    cmocka_unit_test_setup_teardown(test_chunked_request, setup_default, teardown),
	    cmocka_unit_test_setup_teardown(test_stream, setup_default, teardown),
	    cmocka_unit_test_setup_teardown(test_stream_behind_pending, setup_default, teardown),
	    cmocka_unit_test_setup_teardown(test_head, setup_default, teardown),
	    cmocka_unit_test_setup_teardown(test_431, setup_small, teardown),
	    cmocka_unit_test_setup_teardown(test_413, setup_small, teardown),
	    cmocka_unit_test_setup_teardown(test_malformed, setup_small, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_version, setup_default, teardown),
	    cmocka_unit_test_setup_teardown(test_error_after_good, setup_default, teardown),
	    cmocka_unit_test_setup_teardown(test_disconnect_pending, setup_default, teardown),
	    cmocka_unit_test_setup_teardown(test_disconnect_pipelined, setup_default, teardown),
	    cmocka_unit_test_setup_teardown(test_stream_client_gone, setup_default, teardown),
	    cmocka_unit_test_setup_teardown(test_respond_from_prepare, setup_default, teardown),
	    cmocka_unit_test_setup_teardown(test_stream_stalled_reader, setup_default, teardown),
	    cmocka_unit_test_setup_teardown(test_server_free_pending, setup_default, teardown),
	    cmocka_unit_test_setup_teardown(test_idle_timeout, setup_small, teardown),
	    cmocka_unit_test_setup_teardown(test_read_timeout, setup_small, teardown),
	    cmocka_unit_test_setup_teardown(test_unix_socket, setup_default, teardown),
	    cmocka_unit_test_setup_teardown(test_listen_urls, setup_default, teardown),
	    cmocka_unit_test_setup_teardown(test_many_connections, setup_default, teardown),
	    cmocka_unit_test_setup_teardown(test_output_backpressure, setup_default, teardown),
	    cmocka_unit_test_setup_teardown(test_emfile, setup_default, teardown),
	    cmocka_unit_test_setup_teardown(test_max_conns, setup_two_conns, teardown),
	    cmocka_unit_test(test_unescape),
	};
	struct rlimit rl;

	/* 2000 client sockets plus 2000 server sockets. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 8192) {
		rl.rlim_cur = rl.rlim_max < 8192 ? rl.rlim_max : 8192;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
