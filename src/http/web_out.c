/* Responses (see web.h): status line and headers with the cached Date, whole and chunked bodies,
 * 100 Continue, and the ordering that keeps a pipelined connection's responses in request order.
 * Only buffers are filled here; web.c sends them (and alone knows http-parser). */
#include "http/web_int.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <ev.h>

#include "util/buf.h"
#include "util/reason.h"

/* ---------------------------------------------------------------------------------------------
 * responses */

/* The Date header line for now, formatted at most once a second: every response carries it. */
static const char *server_date(struct web_server *s)
{
	time_t now = (time_t)ev_now(s->loop);
	struct tm tm;

	if (now != s->date_sec || !s->date[0]) {
		gmtime_r(&now, &tm);
		if (!strftime(s->date, sizeof(s->date), "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm))
			s->date[0] = '\0';
		s->date_sec = now;
	}
	return s->date;
}

const char *web_status_text(int status)
{
	const char *r = reason_phrase(status);

	return *r ? r : "Unknown";
}

/* Header values come partly from clients (key names in Location...): never let CR or LF through,
 * or a value could add headers of its own. */
static int put_value(struct buf *o, const char *v)
{
	size_t n = strlen(v), i;
	int e = buf_append(o, v, n);

	if (e < 0)
		return e;
	for (i = o->len - n; i < o->len; i++)
		if (o->data[i] == '\r' || o->data[i] == '\n')
			o->data[i] = ' ';
	return 0;
}

static bool value_has_token(const char *v, const char *tok)
{
	size_t n = strlen(tok);

	while (*v) {
		while (*v == ' ' || *v == '\t' || *v == ',')
			v++;
		if (!strncasecmp(v, tok, n) &&
		    (v[n] == '\0' || v[n] == ',' || v[n] == ' ' || v[n] == '\t'))
			return true;
		while (*v && *v != ',')
			v++;
	}
	return false;
}

/* Status line and headers. `clen` < 0: a streamed body. The OR of buf results is negative iff one
 * of them failed (they return 0 or -ENOMEM). */
static int put_head(struct web_req *r, struct buf *o, int status, const struct web_header *h,
                    size_t n, long long clen)
{
	size_t i, need = 160;
	int e;

	if (status < 100 || status > 999)
		status = 500;
	for (i = 0; i < n; i++)
		need += strlen(h[i].name) + strlen(h[i].value) + 4;
	e = buf_reserve(o, need + (clen > 0 && !r->is_head ? (size_t)clen : 0));
	if (e < 0)
		return e;
	e |= buf_puts(o, r->minor == 0 ? "HTTP/1.0 " : "HTTP/1.1 ");
	e |= buf_put_u64(o, (uint64_t)status);
	e |= buf_putc(o, ' ');
	e |= buf_puts(o, web_status_text(status));
	e |= buf_puts(o, "\r\n");
	for (i = 0; i < n; i++) {
		const char *name = h[i].name;

		if (!strcasecmp(name, "Content-Length") || !strcasecmp(name, "Transfer-Encoding") ||
		    !strcasecmp(name, "Date"))
			continue;
		if (!strcasecmp(name, "Connection")) {
			if (value_has_token(h[i].value, "close"))
				r->keep_alive = false;
			continue;
		}
		e |= put_value(o, name);
		e |= buf_puts(o, ": ");
		e |= put_value(o, h[i].value);
		e |= buf_puts(o, "\r\n");
	}
	e |= buf_puts(o, server_date(r->s));
	if (clen < 0) {
		if (r->chunked_out)
			e |= buf_puts(o, "Transfer-Encoding: chunked\r\n");
	} else if (status >= 200 && status != 204 && status != 304) {
		e |= buf_puts(o, "Content-Length: ");
		e |= buf_put_u64(o, (uint64_t)clen);
		e |= buf_puts(o, "\r\n");
	}
	if (!r->keep_alive)
		e |= buf_puts(o, "Connection: close\r\n");
	else if (r->minor == 0)
		e |= buf_puts(o, "Connection: keep-alive\r\n");
	e |= buf_puts(o, "\r\n");
	return e;
}

void web_conn_maybe_continue(struct web_conn *c)
{
	struct web_req *r = c->cur;

	if (!r || !r->want_continue || r->continue_sent || c->queue.n || c->closing)
		return;
	r->continue_sent = true;
	if (buf_puts(&c->out, "HTTP/1.1 100 Continue\r\n\r\n") < 0)
		c->fatal = true;
	web_conn_schedule(c);
}

/* Move finished responses at the head of the queue to the output, in order. */
static void conn_advance(struct web_conn *c)
{
	struct web_req *r;

	while ((r = c->queue.head) && !c->closing) {
		if (r->resp.len) {
			if (!out_pending(c)) {
				struct buf t = c->out;

				c->out = r->resp;
				r->resp = t;
				c->out_off = 0;
				buf_clear(&r->resp);
			} else if (buf_append(&c->out, r->resp.data, r->resp.len) < 0) {
				c->fatal = true;
			}
			buf_clear(&r->resp);
		}
		if (r->state != RQ_DONE)
			break;
		if (!r->keep_alive) {
			c->closing = true;
			c->stop_parse = true;
		}
		web_req_free(r);
	}
	web_conn_maybe_continue(c);
	if (c->held && !web_conn_must_hold(c))
		c->resume = true;
	web_conn_schedule(c);
}

/* Where the next bytes of `r`'s response go: straight out if every earlier response is out. */
static struct buf *req_out(struct web_req *r)
{
	return r->c->queue.head == r ? &r->c->out : &r->resp;
}

void web_respond(struct web_req *r, int status, const struct web_header *hdrs, size_t n,
                 const void *body, size_t len)
{
	struct web_conn *c;
	struct buf *o;
	int e;

	if (!r)
		return;
	c = r->c;
	if (!c) {
		web_req_free(r);
		return;
	}
	if (r->state == RQ_STREAMING) {
		web_stream_end(r);
		return;
	}
	if (r->state == RQ_DONE)
		return;
	o = req_out(r);
	e = put_head(r, o, status, hdrs, n, (long long)len);
	if (e == 0 && len && !r->is_head && status >= 200 && status != 204 && status != 304)
		e = buf_append(o, body, len);
	if (e < 0)
		c->fatal = true;
	r->state = RQ_DONE;
	if (c->queue.head == r)
		conn_advance(c);
	else if (c->fatal)
		web_conn_schedule(c);
}

/* The connection cannot go on (no memory, or a stream whose client stopped reading): close
 * it at the next flush and tell the caller why. */
static int give_up(struct web_conn *c, int err)
{
	c->fatal = true;
	web_conn_schedule(c);
	return err;
}

int web_stream_begin(struct web_req *r, int status, const struct web_header *hdrs, size_t n)
{
	struct web_conn *c = r->c;

	if (!c || c->fatal)
		return -EPIPE;
	if (r->state != RQ_HANDLER)
		return -EINVAL;
	/* HTTP/1.0 has no chunks: the body ends when the connection does. */
	r->chunked_out = r->minor > 0;
	if (!r->chunked_out)
		r->keep_alive = false;
	r->state = RQ_STREAMING;
	if (put_head(r, req_out(r), status, hdrs, n, -1) < 0) {
		return give_up(c, -ENOMEM);
	}
	if (c->queue.head == r)
		web_conn_schedule(c);
	return 0;
}

int web_stream_write(struct web_req *r, const void *data, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	struct web_conn *c = r->c;
	struct buf *o;
	char tmp[24];
	size_t i = sizeof(tmp), v = len;
	int e = 0;

	if (!c || c->fatal)
		return -EPIPE;
	if (r->state != RQ_STREAMING)
		return -EINVAL;
	if (!len || r->is_head)
		return 0;
	if (out_pending(c) + r->resp.len > OUT_STREAM) {
		/* The client stopped reading a stream long ago: give up on it. */
		return give_up(c, -EPIPE);
	}
	o = req_out(r);
	if (r->chunked_out) {
		tmp[--i] = '\n';
		tmp[--i] = '\r';
		do {
			tmp[--i] = hex[v & 15];
			v >>= 4;
		} while (v);
		e |= buf_append(o, tmp + i, sizeof(tmp) - i);
	}
	e |= buf_append(o, data, len);
	if (r->chunked_out)
		e |= buf_append(o, "\r\n", 2);
	if (e < 0) {
		return give_up(c, -ENOMEM);
	}
	if (c->queue.head == r)
		web_conn_schedule(c);
	return 0;
}

void web_stream_end(struct web_req *r)
{
	struct web_conn *c;

	if (!r)
		return;
	c = r->c;
	if (!c) {
		web_req_free(r);
		return;
	}
	if (r->state != RQ_STREAMING) {
		if (r->state == RQ_HANDLER)
			web_respond(r, 200, NULL, 0, NULL, 0);
		return;
	}
	if (r->chunked_out && !r->is_head && buf_append(req_out(r), "0\r\n\r\n", 5) < 0)
		c->fatal = true;
	r->state = RQ_DONE;
	if (c->queue.head == r)
		conn_advance(c);
	else if (c->fatal)
		web_conn_schedule(c);
}
