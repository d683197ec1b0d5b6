/* The HTTP/1.1 server every API sits on: one libev loop, http-parser underneath (kept inside
 * web.c only, so a move to llhttp touches one file), keep-alive, pipelining, chunked streaming
 * responses (watches), TCP and unix-socket listeners, size limits and timeouts.
 *
 * Request lifetime: the handler gets a `struct web_req` that stays valid until the handler (or
 * anyone it hands the request to) completes it with web_respond() or web_stream_end(), possibly
 * many loop turns later. If the client goes away first, the request stays valid, its close
 * callback (if set) runs, and completing it then only frees it. Pipelined requests of one
 * connection are handed to the handler one at a time, each after the one before it is answered
 * (as Go's server does for etcd), so later requests see the effects of earlier ones. */
#ifndef FLT_WEB_H
#define FLT_WEB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ev_loop;
struct web_server;
struct web_req;

struct web_header {
	const char *name;
	const char *value;
};

struct web_limits {
	size_t max_head;      /* request line + headers; over it: 431. Default 8 KiB */
	size_t max_body;      /* over it: 413. Default 1.5 MiB */
	double idle_timeout;  /* seconds a keep-alive connection may sit idle. Default 300 */
	double read_timeout;  /* seconds to receive a started request completely. Default 30 */
	unsigned max_conns;   /* accepted connections at once; more wait in the backlog. Default 65536 */
	unsigned max_pipeline; /* parsed requests queued behind an unanswered one. Default 64 */
};

/* Fill with defaults. */
void web_limits_default(struct web_limits *lim);

/* Called once per complete request. `ud` is the server's user data. */
typedef void (*web_handler_fn)(void *ud, struct web_req *req);

/* Create a server on `loop` (borrowed). `lim` may be NULL for defaults. Returns 0 or -errno. */
int web_server_new(struct ev_loop *loop, const struct web_limits *lim, web_handler_fn handler,
		   void *ud, struct web_server **ret);
/* Stop listening, close every connection (pending requests get their close callbacks) and free.
 * Accepts NULL. */
void web_server_free(struct web_server *s);

/* Listen on "http://HOST:PORT", "HOST:PORT" or "unix:///path/to/sock" ("unix:PATH" too).
 * HOST must be a numeric address (no name resolution on the start path); "0.0.0.0", "[::]",
 * "localhost" are accepted. Returns 0, -EADDRINUSE etc., or -EINVAL for a URL it cannot parse. */
int web_listen(struct web_server *s, const char *url);
/* The port a TCP listener actually got (after listening on port 0); 0 if `i` is out of range. */
int web_listener_port(const struct web_server *s, unsigned i);

/* Open connections, for /metrics. */
unsigned web_conn_count(const struct web_server *s);

/* ---- the request (all strings NUL-terminated and owned by the request) ---- */
const char *web_req_method(const struct web_req *r); /* "GET", "PUT", ... */
const char *web_req_path(const struct web_req *r);   /* URL path, still percent-encoded */
const char *web_req_query(const struct web_req *r);  /* raw query after '?', "" if none */
/* Header value by case-insensitive name, or NULL. */
const char *web_req_header(const struct web_req *r, const char *name);
const char *web_req_body(const struct web_req *r, size_t *ret_len); /* "" and 0 if none */
/* Peer address as text ("127.0.0.1:5555", "unix"), for logs. */
const char *web_req_peer(const struct web_req *r);
/* False once the client's connection is gone. */
bool web_req_connected(const struct web_req *r);

/* Arbitrary per-request pointer for the handler's own use. */
void web_req_set_data(struct web_req *r, void *data);
void *web_req_data(const struct web_req *r);
/* `cb` runs once if the client disconnects before the request is completed (watch cleanup). */
void web_req_on_close(struct web_req *r, void (*cb)(struct web_req *r, void *ctx), void *ctx);

/* ---- completing a request ---- */
/* Whole response with Content-Length. `hdrs` (n of them) are copied; Date and Content-Length are
 * added by the server. A HEAD request gets the headers only. Completes (and may free) `r`. */
void web_respond(struct web_req *r, int status, const struct web_header *hdrs, size_t n,
		 const void *body, size_t len);
/* Chunked streaming: begin sends the head (Transfer-Encoding: chunked) at once; each write sends
 * one chunk immediately (subject to ordering behind earlier responses); end sends the last chunk
 * and completes `r`. Return 0, or -EPIPE if the client is gone (the caller should then end). */
int web_stream_begin(struct web_req *r, int status, const struct web_header *hdrs, size_t n);
int web_stream_write(struct web_req *r, const void *data, size_t len);
void web_stream_end(struct web_req *r);

/* Reason phrase for a status code ("OK", "Not Found", ...). */
const char *web_status_text(int status);

/* Percent-decode `len` bytes of `s` ('+' as space when `plus`) into a new NUL-terminated string
 * (owned by the caller; set *ret_len if non-NULL). Returns NULL on a bad escape or no memory. */
char *web_unescape(const char *s, size_t len, bool plus, size_t *ret_len);
/* Query parameter `name` of the raw query `q`: how many times it is given, and the first value
 * (owned, "" if none). 0 or -ENOMEM. */
int web_query_get(const char *q, const char *name, unsigned *ret_count, char **ret_first);

#endif
