/* Asynchronous HTTP client on the daemon's loop: libcurl's multi interface driven by libev (socket
 * and timer callbacks), so that the proxy, the agent's heartbeats and the journal relay never
 * block. Names are never resolved on the start path: callers pass numeric URLs (member and machine
 * URLs are numeric by configuration). */
#ifndef FLT_HTTP_CLIENT_H
#define FLT_HTTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

#include "http/web.h"
#include "util/buf.h"

struct ev_loop;
struct hcli;
struct hcli_call;

int hcli_new(struct ev_loop *loop, struct hcli **ret);
/* Cancel every call (their done callbacks do not run) and free. Accepts NULL. */
void hcli_free(struct hcli *c);

struct hcli_req {
	const char *method; /* "GET" when NULL */
	const char *url;
	const struct web_header *headers; /* copied */
	size_t n_headers;
	const void *body; /* copied */
	size_t body_len;
	unsigned timeout_ms;         /* whole call; 0: none (watches) */
	unsigned connect_timeout_ms; /* 0: 1000 */
};

struct hcli_cb {
	/* The status line and headers arrived (hop-by-hop ones left out). Optional. */
	void (*head)(void *ctx, int status, const struct web_header *h, size_t n);
	/* Body bytes as they arrive. Optional: without it the body is collected for done(). */
	void (*data)(void *ctx, const void *data, size_t len);
	/* The call ended: err 0 (status and, without a data callback, the body), or a negative
	 * errno with `msg` saying why ("connection refused", ...). Runs exactly once, from the
	 * loop, never from inside hcli_call_start; the call is freed right after. */
	void (*done)(void *ctx, int err, const char *msg, int status, const struct buf *body);
	void *ctx;
};

/* Start a call. Returns 0 (and *ret if not NULL, valid until done runs) or -ENOMEM/-EINVAL. */
int hcli_call_start(struct hcli *c, const struct hcli_req *req, const struct hcli_cb *cb,
                    struct hcli_call **ret);
/* Abandon a call: its done callback does not run. */
void hcli_call_cancel(struct hcli_call *call);

#endif
