/* Private to the HTTP server, included by web.c (listeners, connections, parsing, dispatch) and
 * web_out.c (formatting responses and keeping them in request order) only: the structures both
 * use and the few functions each calls in the other. http-parser stays out of it (see web.c). */
#ifndef FLT_WEB_INT_H
#define FLT_WEB_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include <ev.h>

#include "http/stream.h"
#include "http/web.h"
#include "util/buf.h"

/* Stop parsing a client's requests while more than OUT_HIGH waits to be sent to it. A stream
 * (a watch) that keeps writing while more than OUT_STREAM waits for a client that does not read
 * loses its connection: like etcd dropping a watcher whose queue is full, and it bounds what
 * thousands of stalled watchers can hold. */
#define OUT_HIGH   (4u << 20)
#define OUT_STREAM (4u << 20)
#define READ_SIZE (64 * 1024)

struct web_conn;
struct web_listener;

struct req_list {
	struct web_req *head, *tail;
	unsigned n;
};

enum req_state {
	RQ_PARSING,   /* headers or body still arriving */
	RQ_HANDLER,   /* complete, waiting for the handler */
	RQ_STREAMING, /* chunked response begun */
	RQ_DONE,      /* response complete (maybe still waiting in r->resp for its turn) */
};

struct req_hdr {
	size_t name, value; /* offsets into head */
};

struct web_req {
	struct web_conn *c;    /* NULL once the client is gone */
	struct web_server *s;  /* NULL once the server is gone */
	struct req_list *list; /* the list the request sits on, if any */
	struct web_req *prev, *next;

	/* Kept across reuse from the pool. */
	struct buf head; /* url\0 name\0 value\0 ... */
	struct req_hdr *hdr;
	size_t hdr_cap;
	struct buf body;
	struct buf resp; /* response bytes waiting for earlier responses on the connection */

	/* Reset for every request. */
	size_t nhdr;
	size_t url_len;
	size_t head_bytes;
	const char *method, *path, *query;
	unsigned short major, minor;
	enum req_state state;
	bool url_done, in_field, keep_alive, is_head, chunked_out;
	bool want_continue, continue_sent;
	void *data;
	void (*on_close)(struct web_req *r, void *ctx);
	void *close_ctx;
	char peer[64]; /* filled when the connection goes away (until then the conn's is used) */
};

struct web_conn {
	struct web_server *s;
	struct web_conn *prev, *next;   /* server's connections */
	struct web_conn *fprev, *fnext; /* server's flush list */
	bool in_flush;
	struct stream st;
	ev_timer timer;
	/* the parser's state is not here: see struct conn_with_parser in web.c */
	struct web_req *cur;      /* request being parsed */
	struct web_req *dispatch; /* request just completed by the parser, handler not yet called */
	struct req_list queue; /* requests whose responses have not all gone to `out`, in order */
	struct buf in;         /* unparsed input while parsing is held */
	size_t in_off;
	struct buf out; /* bytes to send */
	size_t out_off;
	double last_active; /* last read or write progress (ev_now) */
	double req_start;   /* when `cur` began */
	double linger_at;
	size_t linger_bytes;
	int err_status;  /* set by a parser callback that rejects the request */
	bool held;       /* parsing stopped: pipeline full or output backed up */
	bool resume;     /* held, and the reason may be gone: retry at the next flush */
	bool stop_parse; /* no more requests from this client (error, Connection: close) */
	bool closing;    /* close once `out` is sent */
	bool eof;        /* the client closed its side */
	bool lingering;  /* final response sent, FIN sent, draining input before close */
	bool fatal;      /* close at the next flush without sending more */
	bool is_unix;
	char peer[64];
};

struct web_server {
	struct ev_loop *loop;
	struct web_limits lim;
	web_handler_fn handler;
	void *ud;
	struct web_listener **ls;
	size_t nls;
	ev_timer accept_pause; /* running while out of file descriptors */
	ev_prepare flusher;    /* writes gathered output right before the loop sleeps */
	struct web_conn *conns;
	unsigned nconns;
	struct web_conn *fhead, *ftail;
	struct req_list orphans; /* requests whose client is gone, not yet completed */
	struct web_req *pool;
	unsigned npool;
	time_t date_sec;
	char date[64]; /* "Date: ...\r\n" for date_sec */
	char rbuf[READ_SIZE];
};

/* Bytes of `c->out` not sent yet. */
static inline size_t out_pending(const struct web_conn *c)
{
	return c->out.len - c->out_off;
}

/* ---- in web.c ---- */
/* Done with `r` (taken): back to the server's pool, or freed if the server is gone. */
void web_req_free(struct web_req *r);
/* Have `c` flushed (and resumed, if marked) right before the loop sleeps. */
void web_conn_schedule(struct web_conn *c);
/* True while parsing more of `c`'s input must wait: a request at work, a full pipeline or
 * output backed up. */
bool web_conn_must_hold(const struct web_conn *c);

/* ---- in web_out.c ---- */
/* Send "100 Continue" if the request being parsed asked for it and nothing is ahead of it. */
void web_conn_maybe_continue(struct web_conn *c);

#endif
