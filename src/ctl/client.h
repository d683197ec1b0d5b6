/* flotctl's HTTP client: one libcurl easy handle (a CLI may block), a list of endpoints tried in
 * turn from the last one that answered, etcdctl's per-request header timeout and total deadline,
 * its "--debug" curl lines, and its error texts, so that output matches etcdctl byte for byte.
 * Every command family (keys, members, fleet units) goes through ctl_client_do. */
#ifndef FLT_CTL_CLIENT_H
#define FLT_CTL_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

struct ctl_client;

/* Why a request failed, with Go etcd client's wording. A cluster error lists one cause per
 * endpoint: `msg` is its Error() text, `detail` its Detail() text (both end in '\n'). */
struct ctl_error {
	bool cluster;
	bool conn; /* every cause was a dial/read/timeout failure: etcdctl's isConnectionError */
	struct buf msg;
	struct buf detail;
};

void ctl_error_init(struct ctl_error *e);
void ctl_error_release(struct ctl_error *e);
/* A plain (non-cluster) error with the given text. */
void ctl_error_set(struct ctl_error *e, bool conn, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

struct ctl_client_opts {
	int64_t timeout_ns;       /* per request, until the response arrives; not for waits */
	int64_t total_timeout_ns; /* caps the dial timeout too (Go: min(30s, total)) */
	bool debug;               /* print "cURL Command: ..." to stderr for each attempt */
	const char *ca_file, *cert_file, *key_file; /* borrowed; NULL when unset */
	const char *username, *password;            /* borrowed; NULL for no auth */
};

struct ctl_param {
	const char *key;
	const char *value;
};

struct ctl_req {
	const char *method;            /* "GET", "PUT", "POST", "DELETE" */
	const char *path;              /* unescaped, e.g. "/v2/keys/a b"; cleaned like Go's path */
	const struct ctl_param *query; /* sent sorted by key, like url.Values.Encode */
	size_t nquery;
	const struct ctl_param *form; /* form body (PUT/POST), sorted by key */
	size_t nform;
	bool body;        /* send the (possibly empty) form body */
	const char *json; /* instead of the form: this JSON body (members API), or NULL */
	bool wait;        /* a long poll: no header timeout */
	bool one_shot;    /* do not retry on another endpoint (creates) */
	int64_t deadline; /* CLOCK_MONOTONIC ns, 0 for none */
	/* When set, a 2xx body goes to this callback as it arrives instead of into resp->body
	 * (flotctl journal --follow); other statuses are still collected. Returns the bytes it
	 * took; fewer aborts the transfer. */
	size_t (*on_data)(const char *p, size_t n, void *ud);
	void *ud;
};

struct ctl_resp {
	long status;
	struct buf body;
	uint64_t index; /* X-Etcd-Index, when has_index */
	bool has_index;
};

void ctl_resp_init(struct ctl_resp *r);
void ctl_resp_release(struct ctl_resp *r);

/* Create a client for `urls` (comma-free endpoint strings, borrowed). On a URL that does not
 * parse returns -EINVAL with Go's message in `err` (etcdctl then exits 1). */
int ctl_client_new(const struct ctl_client_opts *o, char *const *urls, size_t n,
                   struct ctl_client **ret, struct buf *err);
void ctl_client_free(struct ctl_client *c);

/* Replace the endpoint list (after a member sync); same errors as ctl_client_new. An equal list
 * (as a set) leaves the client unchanged. */
int ctl_client_set_endpoints(struct ctl_client *c, char *const *urls, size_t n, struct buf *err);
/* Append the endpoint URLs joined with `sep`. */
void ctl_client_endpoints(const struct ctl_client *c, const char *sep, struct buf *out);

/* Send `req` to the endpoints in turn until one answers with a non-5xx status. Returns 0 and
 * fills `resp` (any 1xx-4xx status; the caller interprets it), or -EIO with `err` filled:
 * a cluster error when every endpoint failed, a plain one for the total deadline
 * ("context deadline exceeded") or a one-shot request's first failure. */
int ctl_client_do(struct ctl_client *c, const struct ctl_req *req, struct ctl_resp *resp,
                  struct ctl_error *err);

/* Go's url.QueryEscape (spaces as '+') and the path escaping of url.URL.EscapedPath. */
void ctl_query_escape(struct buf *b, const char *s);
void ctl_path_escape(struct buf *b, const char *s);
/* Go's pathutil.CanonicalURLPath: path.Clean that keeps a trailing slash. Returns owned. */
char *ctl_canonical_path(const char *p);

#endif
