/* The HTTP/1.1 server (see web.h): listeners, connections, parsing and dispatch; responses are
 * formatted in web_out.c (web_int.h holds what both share). The only file that knows http-parser:
 * moving to llhttp means rewriting the parser callbacks here and nothing else.
 *
 * Data path, chosen for throughput: one read per wake-up into a buffer shared by all connections,
 * parse every request present (each request copies what it needs, so the shared buffer is free
 * again at once), and gather all output of a loop turn in one per-connection buffer that an
 * ev_prepare watcher writes with one send() right before the loop sleeps. Requests come from a
 * free list, so a keep-alive connection in steady state does not call malloc. */
#include "http/web.h"
#include "http/web_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <ev.h>
#include <http_parser.h>

#include "http/stream.h"
#include "util/buf.h"
#include "util/util.h"

#define MAX_HEADERS    128
#define POOL_MAX       256         /* idle requests kept for reuse */
#define KEEP_CAP       (64 * 1024) /* connection buffers grown past this are released */
#define REQ_KEEP_CAP   (16 * 1024) /* the same for the buffers of a pooled request */
#define ACCEPT_BATCH   64  /* accepts per wake-up, so one busy listener cannot starve others */
#define ACCEPT_PAUSE   0.1 /* seconds to stop accepting when out of file descriptors */
#define LINGER_TIME    2.0 /* seconds to drain a client's input after our final response */
#define LINGER_BYTES   (1 << 20) /* ... or this many bytes, whichever comes first */
#define LISTEN_BACKLOG 1024

struct web_listener {
	struct web_server *s;
	ev_io io;
	int fd;
	int port;
	char *unix_path; /* owned; unlinked when the server goes */
};

/* A connection and its parser. The parser state lives here, not in struct web_conn, so that
 * web_int.h and web_out.c never see http-parser. */
struct conn_with_parser {
	struct web_conn c;
	http_parser parser;
};

static http_parser *conn_parser(struct web_conn *c)
{
	return &container_of(c, struct conn_with_parser, c)->parser;
}

static const http_parser_settings parser_settings;

/* ---------------------------------------------------------------------------------------------
 * small helpers */

static void rl_push(struct req_list *l, struct web_req *r)
{
	r->list = l;
	r->next = NULL;
	r->prev = l->tail;
	if (l->tail)
		l->tail->next = r;
	else
		l->head = r;
	l->tail = r;
	l->n++;
}

static void rl_del(struct web_req *r)
{
	struct req_list *l = r->list;

	if (!l)
		return;
	if (r->prev)
		r->prev->next = r->next;
	else
		l->head = r->next;
	if (r->next)
		r->next->prev = r->prev;
	else
		l->tail = r->prev;
	l->n--;
	r->list = NULL;
	r->prev = r->next = NULL;
}

/* ---------------------------------------------------------------------------------------------
 * requests */

static void req_reset(struct web_req *r)
{
	buf_clear(&r->head);
	buf_clear(&r->body);
	buf_clear(&r->resp);
	r->c = NULL;
	r->list = NULL;
	r->prev = r->next = NULL;
	r->nhdr = 0;
	r->url_len = 0;
	r->head_bytes = 0;
	r->method = r->path = r->query = "";
	r->major = 1;
	r->minor = 1;
	r->state = RQ_PARSING;
	r->url_done = r->in_field = r->is_head = r->chunked_out = false;
	r->want_continue = r->continue_sent = false;
	r->keep_alive = true;
	r->data = NULL;
	r->on_close = NULL;
	r->close_ctx = NULL;
	r->peer[0] = '\0';
}

static struct web_req *req_new(struct web_server *s, struct web_conn *c)
{
	struct web_req *r = s->pool;

	if (r) {
		s->pool = r->next;
		s->npool--;
	} else {
		r = calloc(1, sizeof(*r));
		if (!r)
			return NULL;
	}
	req_reset(r);
	r->s = s;
	r->c = c;
	return r;
}

static void req_destroy(struct web_req *r)
{
	buf_release(&r->head);
	buf_release(&r->body);
	buf_release(&r->resp);
	free(r->hdr);
	free(r);
}

static void buf_trim(struct buf *b, size_t keep)
{
	if (b->cap > keep)
		buf_release(b);
}

/* Back to the pool while the server lives, else really freed. */
void web_req_free(struct web_req *r)
{
	struct web_server *s = r->s;

	rl_del(r);
	if (!s || s->npool >= POOL_MAX) {
		req_destroy(r);
		return;
	}
	buf_trim(&r->head, REQ_KEEP_CAP);
	buf_trim(&r->body, REQ_KEEP_CAP);
	buf_trim(&r->resp, REQ_KEEP_CAP);
	if (r->hdr_cap > 64) {
		free(r->hdr);
		r->hdr = NULL;
		r->hdr_cap = 0;
	}
	r->c = NULL;
	r->next = s->pool;
	s->pool = r;
	s->npool++;
}

/* ---------------------------------------------------------------------------------------------
 * connections: flushing and closing */

static void server_update_accept(struct web_server *s);

void web_conn_schedule(struct web_conn *c)
{
	struct web_server *s = c->s;

	if (c->in_flush)
		return;
	c->in_flush = true;
	c->fnext = NULL;
	c->fprev = s->ftail;
	if (s->ftail)
		s->ftail->fnext = c;
	else
		s->fhead = c;
	s->ftail = c;
}

static void conn_unschedule(struct web_conn *c)
{
	struct web_server *s = c->s;

	if (!c->in_flush)
		return;
	if (c->fprev)
		c->fprev->fnext = c->fnext;
	else
		s->fhead = c->fnext;
	if (c->fnext)
		c->fnext->fprev = c->fprev;
	else
		s->ftail = c->fprev;
	c->fprev = c->fnext = NULL;
	c->in_flush = false;
}

/* The client is gone (or we are closing on it): every request not yet completed becomes an
 * orphan and hears about it through its close callback; completed ones waiting for their turn
 * are dropped. Callbacks may complete any request, including the other orphans. */
static void conn_orphan_all(struct web_conn *c)
{
	struct web_server *s = c->s;
	struct req_list notify = {NULL, NULL, 0};
	struct web_req *r;

	if (c->cur) {
		web_req_free(c->cur);
		c->cur = NULL;
	}
	c->dispatch = NULL; /* only set inside conn_parse, where nothing closes */
	while ((r = c->queue.head)) {
		rl_del(r);
		r->c = NULL;
		if (r->state == RQ_DONE) {
			web_req_free(r);
			continue;
		}
		memcpy(r->peer, c->peer, sizeof(r->peer));
		rl_push(&notify, r);
	}
	while ((r = notify.head)) {
		void (*cb)(struct web_req *, void *) = r->on_close;

		rl_del(r);
		rl_push(&s->orphans, r);
		r->on_close = NULL;
		if (cb)
			cb(r, r->close_ctx);
	}
}

static void conn_close(struct web_conn *c)
{
	struct web_server *s = c->s;

	conn_unschedule(c);
	ev_timer_stop(s->loop, &c->timer);
	stream_close(&c->st);
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->nconns--;
	conn_orphan_all(c);
	buf_release(&c->in);
	buf_release(&c->out);
	free(container_of(c, struct conn_with_parser, c));
	server_update_accept(s);
}

/* True while a dispatched request of the connection is unanswered. Go's server, and so etcd,
 * handles one request of a connection at a time; doing the same means a GET pipelined behind a
 * PUT sees the PUT, as a client that wrote them in that order expects. */
static bool conn_busy(const struct web_conn *c)
{
	for (const struct web_req *r = c->queue.head; r; r = r->next)
		if (r->state != RQ_DONE)
			return true;
	return false;
}

bool web_conn_must_hold(const struct web_conn *c)
{
	return conn_busy(c) || c->queue.n > c->s->lim.max_pipeline || out_pending(c) > OUT_HIGH;
}

/* While a request is at work, input pipelined behind it is still read, up to this bound, so
 * that a client that goes away is noticed (its close callbacks run: watches are freed). */
#define HOLD_READ_MAX (64 * 1024)

static void conn_update_read(struct web_conn *c)
{
	bool rd =
	    !c->eof && !c->fatal &&
	    (!c->held || (out_pending(c) <= OUT_HIGH && c->in.len - c->in_off < HOLD_READ_MAX));

	stream_want(&c->st, rd, ev_is_active(&c->st.wio));
}

/* All output sent and nothing more will come: close, after a short drain of the client's input
 * so that our final response is not destroyed by an RST for unread data (a client that was still
 * sending a body we refused). */
static void conn_finish(struct web_conn *c)
{
	/* Requests behind a response that closed the connection will never be answered. */
	conn_orphan_all(c);
	if (c->eof || stream_shutdown(&c->st) < 0) {
		conn_close(c);
		return;
	}
	c->lingering = true;
	c->linger_at = ev_now(c->s->loop);
	c->held = false;
	conn_update_read(c);
	/* The timer runs at most one read/idle period ahead; make sure it is not later. */
	ev_timer_stop(c->s->loop, &c->timer);
	ev_timer_set(&c->timer, fmin(LINGER_TIME, c->s->lim.read_timeout), 0.);
	ev_timer_start(c->s->loop, &c->timer);
}

static void conn_flush(struct web_conn *c)
{
	ssize_t n;

	if (c->fatal) {
		conn_close(c);
		return;
	}
	while (out_pending(c)) {
		n = stream_write(&c->st, c->out.data + c->out_off, out_pending(c));
		if (n == -EAGAIN) {
			stream_want(&c->st, ev_is_active(&c->st.rio), true);
			return;
		}
		if (n < 0) {
			conn_close(c);
			return;
		}
		c->out_off += (size_t)n;
		c->last_active = ev_now(c->s->loop);
	}
	buf_clear(&c->out);
	c->out_off = 0;
	buf_trim(&c->out, KEEP_CAP);
	stream_want(&c->st, ev_is_active(&c->st.rio), false);
	if (c->lingering)
		return;
	if (c->closing || (c->eof && !c->queue.n && !c->cur)) {
		conn_finish(c);
		return;
	}
	if (c->held && !web_conn_must_hold(c)) {
		c->resume = true;
		web_conn_schedule(c);
	}
}

/* ---------------------------------------------------------------------------------------------
 * parsing */

/* Answer the request being parsed (or a stand-in) with an error, then close. */
static void conn_fail(struct web_conn *c, int status)
{
	struct web_header h = {"Content-Type", "text/plain; charset=utf-8"};
	struct buf body = BUF_INIT;
	struct web_req *r;

	if (c->stop_parse)
		return;
	c->stop_parse = true;
	r = c->cur ? c->cur : req_new(c->s, c);
	c->cur = NULL;
	if (!r || buf_put_u64(&body, (uint64_t)status) < 0 || buf_putc(&body, ' ') < 0 ||
	    buf_puts(&body, web_status_text(status)) < 0 || buf_putc(&body, '\n') < 0) {
		if (r)
			web_req_free(r);
		buf_release(&body);
		c->closing = true;
		web_conn_schedule(c);
		return;
	}
	r->keep_alive = false;
	r->state = RQ_HANDLER;
	if (r->major != 1) {
		r->major = 1;
		r->minor = 1;
	}
	rl_push(&c->queue, r);
	web_respond(r, status, &h, 1, body.data, body.len);
	buf_release(&body);
}

static int reject(struct web_conn *c, int status)
{
	c->err_status = status;
	return -1;
}

static int head_add(struct web_conn *c, size_t n)
{
	struct web_req *r = c->cur;

	r->head_bytes += n;
	return r->head_bytes > c->s->lim.max_head ? reject(c, 431) : 0;
}

static int on_message_begin(http_parser *p)
{
	struct web_conn *c = p->data;

	c->cur = req_new(c->s, c);
	if (!c->cur)
		return reject(c, 503);
	c->req_start = ev_now(c->s->loop);
	return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
	struct web_conn *c = p->data;

	if (head_add(c, len) < 0)
		return -1;
	return buf_append(&c->cur->head, at, len) < 0 ? reject(c, 503) : 0;
}

/* Ends the URL or the previous header value with a NUL (values lose trailing blanks). */
static int finish_token(struct web_conn *c)
{
	struct web_req *r = c->cur;

	if (!r->url_done) {
		r->url_done = true;
		r->url_len = r->head.len;
	} else if (r->nhdr && !r->in_field) {
		size_t v = r->hdr[r->nhdr - 1].value;

		while (r->head.len > v && (r->head.data[r->head.len - 1] == ' ' ||
		                           r->head.data[r->head.len - 1] == '\t'))
			r->head.len--;
	}
	return buf_putc(&r->head, '\0');
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
	struct web_conn *c = p->data;
	struct web_req *r = c->cur;

	if (!r->in_field) {
		if (r->nhdr >= MAX_HEADERS || head_add(c, 4) < 0)
			return reject(c, 431);
		if (finish_token(c) < 0)
			return reject(c, 503);
		if (r->nhdr == r->hdr_cap) {
			size_t cap = r->hdr_cap ? r->hdr_cap * 2 : 16;
			struct req_hdr *h = realloc(r->hdr, cap * sizeof(*h));

			if (!h)
				return reject(c, 503);
			r->hdr = h;
			r->hdr_cap = cap;
		}
		r->hdr[r->nhdr].name = r->head.len;
		r->hdr[r->nhdr].value = r->head.len;
		r->nhdr++;
		r->in_field = true;
	}
	if (head_add(c, len) < 0)
		return -1;
	return buf_append(&r->head, at, len) < 0 ? reject(c, 503) : 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
	struct web_conn *c = p->data;
	struct web_req *r = c->cur;

	if (r->in_field) {
		if (buf_putc(&r->head, '\0') < 0)
			return reject(c, 503);
		r->hdr[r->nhdr - 1].value = r->head.len;
		r->in_field = false;
	}
	if (head_add(c, len) < 0)
		return -1;
	return buf_append(&r->head, at, len) < 0 ? reject(c, 503) : 0;
}

/* The request target: origin-form "/p?q#f" (the usual), absolute-form "http://h/p?q", "*", or
 * CONNECT's authority, left whole. */
static void split_url(struct web_req *r, int method)
{
	char *url = r->head.data, *p = url, *q;
	struct http_parser_url u;

	r->path = url;
	r->query = "";
	if (method == HTTP_CONNECT || url[0] == '*')
		return;
	if (url[0] != '/') {
		http_parser_url_init(&u);
		if (http_parser_parse_url(url, r->url_len, 0, &u))
			return;
		if (!(u.field_set & (1 << UF_PATH))) {
			/* "http://host" or "http://host?q" */
			r->path = "/";
			if (u.field_set & (1 << UF_QUERY)) {
				r->query = url + u.field_data[UF_QUERY].off;
				url[u.field_data[UF_QUERY].off + u.field_data[UF_QUERY].len] = '\0';
			}
			return;
		}
		p = url + u.field_data[UF_PATH].off;
	}
	q = strchr(p, '#');
	if (q)
		*q = '\0';
	q = strchr(p, '?');
	if (q) {
		*q = '\0';
		r->query = q + 1;
	}
	r->path = p;
}

static int on_headers_complete(http_parser *p)
{
	struct web_conn *c = p->data;
	struct web_req *r = c->cur;
	const struct web_limits *lim = &c->s->lim;
	const char *expect;

	if (r->in_field && buf_putc(&r->head, '\0') < 0)
		return reject(c, 503);
	if (r->in_field)
		r->hdr[r->nhdr - 1].value = r->head.len - 1;
	r->in_field = false;
	if (finish_token(c) < 0)
		return reject(c, 503);
	split_url(r, p->method);
	r->method = http_method_str(p->method);
	r->major = p->http_major;
	r->minor = p->http_minor;
	r->is_head = p->method == HTTP_HEAD;
	r->keep_alive = http_should_keep_alive(p) && p->method != HTTP_CONNECT;
	if (r->major != 1) {
		r->minor = 1;
		return reject(c, 505);
	}
	if ((p->flags & F_CONTENTLENGTH) && p->content_length > lim->max_body)
		return reject(c, 413);
	/* Room for the body at once, but not more than a little for a client that only claims. */
	if ((p->flags & F_CONTENTLENGTH) && p->content_length &&
	    buf_reserve(&r->body, (size_t)fmin((double)p->content_length, 256 * 1024)) < 0)
		return reject(c, 503);
	expect = web_req_header(r, "Expect");
	if (expect && r->minor >= 1 && !strcasecmp(expect, "100-continue") &&
	    ((p->flags & F_CHUNKED) || ((p->flags & F_CONTENTLENGTH) && p->content_length))) {
		r->want_continue = true;
		web_conn_maybe_continue(c);
	}
	return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
	struct web_conn *c = p->data;
	struct web_req *r = c->cur;

	if (r->body.len + len > c->s->lim.max_body)
		return reject(c, 413);
	return buf_append(&r->body, at, len) < 0 ? reject(c, 503) : 0;
}

static int on_message_complete(http_parser *p)
{
	struct web_conn *c = p->data;
	struct web_req *r = c->cur;

	c->cur = NULL;
	r->state = RQ_HANDLER;
	rl_push(&c->queue, r);
	c->dispatch = r;
	if (!r->keep_alive)
		c->stop_parse = true;
	/* One request at a time: the handler runs outside the parser, and the pipeline limit is
	 * checked before the next one. */
	http_parser_pause(p, 1);
	return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static int errno_status(struct web_conn *c, enum http_errno e)
{
	if (c->err_status)
		return c->err_status;
	if (e == HPE_HEADER_OVERFLOW)
		return 431;
	return 400;
}

static void conn_hold(struct web_conn *c)
{
	c->held = true;
	conn_update_read(c);
}

/* Parse up to `len` bytes, running the handler for each complete request. Returns how many
 * bytes were used; the rest must be kept until the hold is released. */
static size_t conn_parse(struct web_conn *c, const char *data, size_t len)
{
	http_parser *parser = conn_parser(c);
	size_t off = 0, n;
	enum http_errno e;
	struct web_req *r;

	while (off < len && !c->stop_parse) {
		if (web_conn_must_hold(c)) {
			conn_hold(c);
			break;
		}
		n = http_parser_execute(parser, &parser_settings, data + off, len - off);
		off += n;
		e = HTTP_PARSER_ERRNO(parser);
		if (e == HPE_PAUSED) {
			http_parser_pause(parser, 0);
		} else if (e != HPE_OK) {
			c->dispatch = NULL;
			conn_fail(c, errno_status(c, e));
			return len;
		} else if (n == 0) {
			break; /* cannot happen with bytes left; never spin */
		}
		r = c->dispatch;
		if (r) {
			c->dispatch = NULL;
			c->s->handler(c->s->ud, r);
		}
	}
	if (c->stop_parse)
		return len; /* nothing more is parsed: the rest is discarded */
	return off;
}

/* ---------------------------------------------------------------------------------------------
 * connection events */

static void conn_on_eof(struct web_conn *c)
{
	c->eof = true;
	conn_update_read(c);
	if (c->lingering) {
		conn_close(c);
		return;
	}
	/* A half-closed client is treated as gone (as Go's server, hence etcd, does): waiting
	 * handlers hear about it, and what is already answered still goes out. */
	conn_orphan_all(c);
	if (out_pending(c))
		c->closing = true, web_conn_schedule(c);
	else
		conn_close(c);
}

static void conn_on_read(struct web_conn *c)
{
	struct web_server *s = c->s;
	ssize_t n;
	size_t used;

	n = stream_read(&c->st, s->rbuf, sizeof(s->rbuf));
	if (n == -EAGAIN)
		return;
	if (n < 0) {
		conn_close(c);
		return;
	}
	if (n == 0) {
		conn_on_eof(c);
		return;
	}
	c->last_active = ev_now(s->loop);
	if (c->lingering) {
		c->linger_bytes += (size_t)n;
		if (c->linger_bytes > LINGER_BYTES)
			conn_close(c);
		return;
	}
	if (c->stop_parse)
		return;
	if (c->in_off < c->in.len) {
		/* Input kept from a hold: keep the order. */
		if (buf_append(&c->in, s->rbuf, (size_t)n) < 0) {
			c->fatal = true;
			web_conn_schedule(c);
			return;
		}
		c->resume = true;
		web_conn_schedule(c);
		conn_update_read(c);
		return;
	}
	used = conn_parse(c, s->rbuf, (size_t)n);
	if (used < (size_t)n) {
		buf_clear(&c->in);
		c->in_off = 0;
		if (buf_append(&c->in, s->rbuf + used, (size_t)n - used) < 0) {
			c->fatal = true;
			web_conn_schedule(c);
		}
	}
}

static void conn_on_ready(struct stream *st, int events)
{
	struct web_conn *c = container_of(st, struct web_conn, st);

	if (events & EV_WRITE) {
		conn_flush(c);
		return; /* `c` may be gone */
	}
	if (events & EV_READ)
		conn_on_read(c);
}

/* Parsing was held: go on with the input kept meanwhile if the reason is gone. */
static void conn_resume(struct web_conn *c)
{
	size_t used;

	if (web_conn_must_hold(c) || c->eof || c->lingering || c->closing)
		return;
	c->held = false;
	if (c->in_off < c->in.len && !c->stop_parse) {
		used = conn_parse(c, c->in.data + c->in_off, c->in.len - c->in_off);
		c->in_off += used;
	}
	if (c->in_off >= c->in.len || c->stop_parse) {
		buf_clear(&c->in);
		c->in_off = 0;
		buf_trim(&c->in, KEEP_CAP);
	}
	conn_update_read(c);
}

static double conn_deadline(const struct web_conn *c)
{
	const struct web_limits *lim = &c->s->lim;

	if (c->lingering)
		return c->linger_at + fmin(LINGER_TIME, lim->read_timeout);
	if (out_pending(c))
		return c->last_active + lim->idle_timeout; /* the client does not read */
	if (c->cur && !(c->cur->want_continue && !c->cur->continue_sent))
		return c->req_start + lim->read_timeout;
	if (c->queue.n)
		return INFINITY; /* a handler is at work (a watch may wait for hours) */
	return c->last_active + lim->idle_timeout;
}

static void conn_on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	static const char timeout_resp[] = "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n"
	                                   "Content-Length: 0\r\n\r\n";
	struct web_conn *c = container_of(w, struct web_conn, timer);
	const struct web_limits *lim = &c->s->lim;
	double now = ev_now(loop), deadline = conn_deadline(c);
	double period = fmin(lim->read_timeout, lim->idle_timeout);

	if (now >= deadline) {
		if (c->cur && !c->queue.n && !out_pending(c) && !c->lingering)
			(void)stream_write(&c->st, timeout_resp, sizeof(timeout_resp) - 1);
		conn_close(c);
		return;
	}
	/* Never arm further than one period ahead: a request that starts meanwhile then needs no
	 * re-arming (the cheap path for keep-alive traffic), the next expiry recomputes. */
	ev_timer_set(w, fmin(deadline - now, period), 0.);
	ev_timer_start(loop, w);
}

static void server_on_flush(struct ev_loop *loop, ev_prepare *w, int revents)
{
	struct web_server *s = container_of(w, struct web_server, flusher);
	struct web_conn *c;

	while ((c = s->fhead)) {
		conn_unschedule(c);
		if (c->fatal) {
			conn_close(c);
			continue;
		}
		if (c->resume) {
			c->resume = false;
			conn_resume(c);
		}
		conn_flush(c);
	}
}

static int conn_new(struct web_server *s, int fd, const struct sockaddr_storage *ss, bool is_unix)
{
	struct conn_with_parser *cp = calloc(1, sizeof(*cp));
	struct web_conn *c;
	char host[INET6_ADDRSTRLEN];
	int port = 0;

	if (!cp)
		return -ENOMEM;
	c = &cp->c;
	c->s = s;
	if (is_unix) {
		snprintf(c->peer, sizeof(c->peer), "unix");
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;

		inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
		port = ntohs(a->sin6_port);
		snprintf(c->peer, sizeof(c->peer), "[%s]:%d", host, port);
	} else {
		const struct sockaddr_in *a = (const struct sockaddr_in *)ss;

		inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
		port = ntohs(a->sin_port);
		snprintf(c->peer, sizeof(c->peer), "%s:%d", host, port);
	}
	c->is_unix = is_unix;
	http_parser_init(&cp->parser, HTTP_REQUEST);
	cp->parser.data = c;
	c->last_active = ev_now(s->loop);
	stream_init_fd(&c->st, s->loop, fd, conn_on_ready);
	ev_timer_init(&c->timer, conn_on_timer, fmin(s->lim.read_timeout, s->lim.idle_timeout), 0.);
	ev_timer_start(s->loop, &c->timer);
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	s->nconns++;
	stream_want(&c->st, true, false);
	return 0;
}

/* ---------------------------------------------------------------------------------------------
 * listeners */

static void server_update_accept(struct web_server *s)
{
	bool on = !ev_is_active(&s->accept_pause) && s->nconns < s->lim.max_conns;
	size_t i;

	for (i = 0; i < s->nls; i++) {
		ev_io *w = &s->ls[i]->io;

		if (on && !ev_is_active(w))
			ev_io_start(s->loop, w);
		else if (!on && ev_is_active(w))
			ev_io_stop(s->loop, w);
	}
}

static void on_accept_pause(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct web_server *s = container_of(w, struct web_server, accept_pause);

	server_update_accept(s);
}

static void on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
	struct web_listener *l = container_of(w, struct web_listener, io);
	struct web_server *s = l->s;
	struct sockaddr_storage ss;
	socklen_t sl;
	int i, fd, one = 1;

	for (i = 0; i < ACCEPT_BATCH; i++) {
		if (s->nconns >= s->lim.max_conns) {
			server_update_accept(s);
			return;
		}
		sl = sizeof(ss);
		fd = accept4(l->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
				continue;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				/* Level-triggered accept would fire again at once: back off. */
				ev_timer_set(&s->accept_pause, ACCEPT_PAUSE, 0.);
				ev_timer_start(loop, &s->accept_pause);
				server_update_accept(s);
			}
			return;
		}
		if (!l->unix_path)
			(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (conn_new(s, fd, &ss, l->unix_path != NULL) < 0)
			close(fd);
	}
}

/* "http://HOST:PORT", "HOST:PORT", "[V6]:PORT", "unix:///path", "unix:path". */
static int parse_url(const char *url, struct sockaddr_storage *ss, socklen_t *ret_len)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *h, *he, *pp;
	unsigned long port = 0;
	size_t hl;

	memset(ss, 0, sizeof(*ss));
	if (!strncmp(url, "unix:", 5)) {
		struct sockaddr_un *un = (struct sockaddr_un *)ss;
		const char *path = url + 5;

		if (!strncmp(path, "//", 2))
			path += 2;
		if (!*path)
			return -EINVAL;
		if (strlen(path) >= sizeof(un->sun_path))
			return -ENAMETOOLONG;
		un->sun_family = AF_UNIX;
		memcpy(un->sun_path, path, strlen(path) + 1);
		*ret_len = sizeof(*un);
		return 0;
	}
	if (!strncmp(url, "http://", 7))
		url += 7;
	else if (strstr(url, "://"))
		return -EINVAL; /* https and friends: not yet */
	if (url[0] == '[') {
		h = url + 1;
		he = strchr(h, ']');
		if (!he || he[1] != ':')
			return -EINVAL;
		pp = he + 2;
	} else {
		h = url;
		he = strrchr(url, ':');
		if (!he)
			return -EINVAL;
		pp = he + 1;
	}
	if (!*pp)
		return -EINVAL;
	for (; *pp && *pp != '/'; pp++) {
		if (*pp < '0' || *pp > '9')
			return -EINVAL;
		port = port * 10 + (unsigned long)(*pp - '0');
		if (port > 65535)
			return -EINVAL;
	}
	if (*pp && strcmp(pp, "/"))
		return -EINVAL;
	hl = (size_t)(he - h);
	if (hl >= sizeof(host))
		return -EINVAL;
	memcpy(host, h, hl);
	host[hl] = '\0';
	if (!hl || !strcmp(host, "*"))
		strcpy(host, "0.0.0.0");
	else if (!strcasecmp(host, "localhost"))
		strcpy(host, "127.0.0.1");
	if (url[0] != '[') {
		struct sockaddr_in *a = (struct sockaddr_in *)ss;

		if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
			return -EINVAL;
		a->sin_family = AF_INET;
		a->sin_port = htons((uint16_t)port);
		*ret_len = sizeof(*a);
	} else {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;

		if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1)
			return -EINVAL;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons((uint16_t)port);
		*ret_len = sizeof(*a);
	}
	return 0;
}

/* A socket file left by a daemon that died is removed; one somebody listens on is in use. */
static int unix_clear_stale(const struct sockaddr_un *un, socklen_t len)
{
	struct stat st;
	int fd, r;

	if (lstat(un->sun_path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode))
		return -EADDRINUSE;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	r = connect(fd, (const struct sockaddr *)un, len);
	r = r < 0 ? errno : 0;
	close(fd);
	if (r != ECONNREFUSED)
		return -EADDRINUSE;
	return unlink(un->sun_path) < 0 && errno != ENOENT ? -errno : 0;
}

int web_listen(struct web_server *s, const char *url)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	struct web_listener *l, **ls;
	int fd = -1, one = 1, r;

	r = parse_url(url, &ss, &sl);
	if (r < 0)
		return r;
	if (ss.ss_family == AF_UNIX) {
		r = unix_clear_stale((struct sockaddr_un *)&ss, sl);
		if (r < 0)
			return r;
	}
	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->fd = -1;
	if (ss.ss_family == AF_UNIX) {
		l->unix_path = strdup(((struct sockaddr_un *)&ss)->sun_path);
		if (!l->unix_path) {
			r = -ENOMEM;
			goto fail;
		}
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		r = -errno;
		goto fail;
	}
	if (ss.ss_family != AF_UNIX &&
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0) {
		r = -errno;
		goto fail;
	}
	if (bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
		r = -errno;
		goto fail_bound;
	}
	if (ss.ss_family != AF_UNIX) {
		sl = sizeof(ss);
		if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
			r = -errno;
			goto fail_bound;
		}
		l->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
		                                         : ((struct sockaddr_in *)&ss)->sin_port);
	}
	ls = realloc(s->ls, (s->nls + 1) * sizeof(*ls));
	if (!ls) {
		r = -ENOMEM;
		goto fail_bound;
	}
	s->ls = ls;
	l->s = s;
	l->fd = fd;
	ev_io_init(&l->io, on_accept, fd, EV_READ);
	s->ls[s->nls++] = l;
	server_update_accept(s);
	return 0;

fail_bound:
	if (l->unix_path && r != -EADDRINUSE)
		unlink(l->unix_path);
fail:
	if (fd >= 0)
		close(fd);
	free(l->unix_path);
	free(l);
	return r;
}

int web_listener_port(const struct web_server *s, unsigned i)
{
	return s && i < s->nls ? s->ls[i]->port : 0;
}

unsigned web_conn_count(const struct web_server *s)
{
	return s ? s->nconns : 0;
}

/* ---------------------------------------------------------------------------------------------
 * server */

void web_limits_default(struct web_limits *lim)
{
	lim->max_head = 8 * 1024;
	lim->max_body = 1536 * 1024;
	lim->idle_timeout = 300;
	lim->read_timeout = 30;
	lim->max_conns = 65536;
	lim->max_pipeline = 64;
}

int web_server_new(struct ev_loop *loop, const struct web_limits *lim, web_handler_fn handler,
                   void *ud, struct web_server **ret)
{
	struct web_limits def;
	struct web_server *s;

	if (!loop || !handler || !ret)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	web_limits_default(&def);
	s->lim = lim ? *lim : def;
	/* Zero means "the default", so callers can set only what they care about. */
	if (!s->lim.max_head)
		s->lim.max_head = def.max_head;
	if (!s->lim.max_body)
		s->lim.max_body = def.max_body;
	if (!(s->lim.idle_timeout > 0))
		s->lim.idle_timeout = def.idle_timeout;
	if (!(s->lim.read_timeout > 0))
		s->lim.read_timeout = def.read_timeout;
	if (!s->lim.max_conns)
		s->lim.max_conns = def.max_conns;
	if (!s->lim.max_pipeline)
		s->lim.max_pipeline = def.max_pipeline;
	s->loop = loop;
	s->handler = handler;
	s->ud = ud;
	ev_timer_init(&s->accept_pause, on_accept_pause, ACCEPT_PAUSE, 0.);
	/* Always armed, at the lowest priority: it runs after every other module's prepare
	 * callback of the same loop turn (the WAL's group commit answers requests from there), so
	 * their responses leave before the loop sleeps. Unref'd: it alone keeps no loop running. */
	ev_prepare_init(&s->flusher, server_on_flush);
	ev_set_priority(&s->flusher, EV_MINPRI);
	ev_prepare_start(loop, &s->flusher);
	ev_unref(loop);
	*ret = s;
	return 0;
}

void web_server_free(struct web_server *s)
{
	struct web_req *r;
	size_t i;

	if (!s)
		return;
	for (i = 0; i < s->nls; i++) {
		ev_io_stop(s->loop, &s->ls[i]->io);
		close(s->ls[i]->fd);
		if (s->ls[i]->unix_path)
			unlink(s->ls[i]->unix_path);
		free(s->ls[i]->unix_path);
		free(s->ls[i]);
	}
	free(s->ls);
	s->ls = NULL;
	s->nls = 0;
	ev_timer_stop(s->loop, &s->accept_pause);
	while (s->conns)
		conn_close(s->conns);
	ev_ref(s->loop);
	ev_prepare_stop(s->loop, &s->flusher);
	/* Requests still held by handlers outlive us: completing them then only frees them. */
	while ((r = s->orphans.head)) {
		rl_del(r);
		r->s = NULL;
	}
	while ((r = s->pool)) {
		s->pool = r->next;
		req_destroy(r);
	}
	free(s);
}

/* ---------------------------------------------------------------------------------------------
 * request accessors */

const char *web_req_method(const struct web_req *r)
{
	return r->method;
}

const char *web_req_path(const struct web_req *r)
{
	return r->path;
}

const char *web_req_query(const struct web_req *r)
{
	return r->query;
}

const char *web_req_header(const struct web_req *r, const char *name)
{
	size_t i;

	for (i = 0; i < r->nhdr; i++)
		if (!strcasecmp(r->head.data + r->hdr[i].name, name))
			return r->head.data + r->hdr[i].value;
	return NULL;
}

const char *web_req_body(const struct web_req *r, size_t *ret_len)
{
	if (ret_len)
		*ret_len = r->body.len;
	return r->body.data ? r->body.data : "";
}

const char *web_req_peer(const struct web_req *r)
{
	return r->c ? r->c->peer : r->peer;
}

bool web_req_connected(const struct web_req *r)
{
	return r->c != NULL && !r->c->fatal;
}

void web_req_set_data(struct web_req *r, void *data)
{
	r->data = data;
}

void *web_req_data(const struct web_req *r)
{
	return r->data;
}

void web_req_on_close(struct web_req *r, void (*cb)(struct web_req *r, void *ctx), void *ctx)
{
	r->on_close = cb;
	r->close_ctx = ctx;
}

/* ---------------------------------------------------------------------------------------------
 * utilities */

static int hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

char *web_unescape(const char *s, size_t len, bool plus, size_t *ret_len)
{
	char *out = malloc(len + 1);
	size_t i, n = 0;
	int hi, lo;

	if (!out)
		return NULL;
	for (i = 0; i < len; i++) {
		if (s[i] == '%') {
			if (len - i < 3) {
				free(out);
				return NULL;
			}
			hi = hexval(s[i + 1]);
			lo = hexval(s[i + 2]);
			if (hi < 0 || lo < 0) {
				free(out);
				return NULL;
			}
			out[n++] = (char)(hi << 4 | lo);
			i += 2;
		} else if (plus && s[i] == '+') {
			out[n++] = ' ';
		} else {
			out[n++] = s[i];
		}
	}
	out[n] = '\0';
	if (ret_len)
		*ret_len = n;
	return out;
}

/* See web.h. Keys and values are unescaped as Go's url.ParseQuery does ("+" is a space). */
int web_query_get(const char *q, const char *name, unsigned *ret_count, char **ret_first)
{
	size_t nlen = strlen(name);
	unsigned count = 0;
	char *first = NULL;

	while (*q) {
		size_t len = strcspn(q, "&"), klen = strcspn(q, "=");
		char *k;

		if (klen > len)
			klen = len;
		k = web_unescape(q, klen, true, NULL);
		if (k && strlen(k) == nlen && !memcmp(k, name, nlen)) {
			if (!count++) {
				const char *v = q + klen + (klen < len);
				size_t vlen = len - klen - (klen < len);

				first = web_unescape(v, vlen, true, NULL);
				if (!first)
					count--; /* Go drops pairs it cannot unescape */
			}
		}
		free(k);
		q += len;
		if (*q == '&')
			q++;
	}
	if (!first && !(first = strdup(""))) {
		return -ENOMEM;
	}
	*ret_count = count;
	*ret_first = first;
	return 0;
}
