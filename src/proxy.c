/* Proxy mode: every request is relayed to a member's client URL and the answer relayed back.
 * Ordinary answers are collected and sent whole (so Content-Length and etcd's headers come
 * through); watches (wait=true) and followed journals are relayed chunk by chunk as they come.
 * An endpoint that cannot be reached is skipped for failure_wait_ms and the request goes to the
 * next one, as etcd's proxy does. */
#include "proxy.h"

#include <errno.h>
#include <ev.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "http/client.h"
#include "http/web.h"
#include "util/buf.h"
#include "util/log.h"
#include "util/util.h"

#define MAX_FWD_HEADERS 48
#define CALL_TIMEOUT_MS 30000

struct endpoint {
	char *url;
	int64_t failed_until_ns;
};

struct proxy {
	struct ev_loop *loop;
	struct hcli *http;
	char **peer;
	size_t npeer;
	struct endpoint *ep;
	size_t nep, rr;
	char **fresh; /* client URLs gathered by the refresh in progress */
	size_t nfresh;
	unsigned refreshing;
	ev_timer refresh_w;
	struct proxy_config cfg;
};

struct fwd {
	struct proxy *p; /* NULL: a relay to one URL (proxy_relay) */
	struct hcli *http;
	struct web_req *req;
	struct hcli_call *call;
	char *ep_url; /* the endpoint this try went to */
	size_t tries;
	bool stream, began;
	int status;
	struct buf hstore, body;
	size_t hoff[MAX_FWD_HEADERS][2], nh;
};

static void fresh_add(struct proxy *p, const char *url)
{
	char **v;

	for (size_t i = 0; i < p->nfresh; i++)
		if (!strcmp(p->fresh[i], url))
			return;
	v = realloc(p->fresh, (p->nfresh + 1) * sizeof(*v));
	if (!v)
		return;
	p->fresh = v;
	if ((v[p->nfresh] = strdup(url)))
		p->nfresh++;
}

static void endpoints_swap(struct proxy *p)
{
	if (!p->nfresh)
		return; /* nobody answered: keep what we knew */
	for (size_t i = 0; i < p->nep; i++)
		free(p->ep[i].url);
	free(p->ep);
	p->ep = calloc(p->nfresh, sizeof(*p->ep));
	p->nep = 0;
	for (size_t i = 0; p->ep && i < p->nfresh; i++)
		p->ep[p->nep++].url = p->fresh[i];
	if (!p->ep)
		for (size_t i = 0; i < p->nfresh; i++)
			free(p->fresh[i]);
	free(p->fresh);
	p->fresh = NULL;
	p->nfresh = 0;
}

static void members_done(void *ctx, int err, const char *msg, int status, const struct buf *body)
{
	struct proxy *p = ctx;
	json_t *root, *ms, *m, *cu, *u;
	size_t i, j;

	p->refreshing--;
	if (err < 0 || status != 200) {
		log_debug("proxy: cannot read the member list: %s", err < 0 ? msg : "bad status");
	} else if ((root = json_loadb(body->data ? body->data : "", body->len, 0, NULL))) {
		ms = json_object_get(root, "members");
		json_array_foreach(ms, i, m)
		{
			cu = json_object_get(m, "clientURLs");
			json_array_foreach(cu, j, u) if (json_string_value(u))
			    fresh_add(p, json_string_value(u));
		}
		json_decref(root);
	}
	if (!p->refreshing)
		endpoints_swap(p);
}

static void refresh(struct proxy *p)
{
	if (p->refreshing)
		return;
	for (size_t i = 0; i < p->npeer; i++) {
		struct buf u = BUF_INIT;
		struct hcli_req rq = {.url = NULL, .timeout_ms = 3000};
		struct hcli_cb cb = {.done = members_done, .ctx = p};

		if (buf_printf(&u, "%s/members", p->peer[i]) < 0)
			continue;
		rq.url = u.data;
		if (hcli_call_start(p->http, &rq, &cb, NULL) == 0)
			p->refreshing++;
		buf_release(&u);
	}
}

static void on_refresh(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct proxy *p = container_of(w, struct proxy, refresh_w);

	(void)loop;
	(void)revents;
	/* Quickly until the first answer, then at the configured pace. */
	refresh(p);
	w->repeat = p->nep ? (double)p->cfg.refresh_ms / 1000.0 : 0.5;
	ev_timer_again(p->loop, w);
}

int proxy_new(struct ev_loop *loop, struct hcli *http, const struct proxy_config *cfg,
              struct proxy **ret)
{
	struct proxy *p = calloc(1, sizeof(*p));

	if (!p)
		return -ENOMEM;
	p->loop = loop;
	p->http = http;
	p->cfg = *cfg;
	p->cfg.peer_urls = NULL;
	if (!p->cfg.refresh_ms)
		p->cfg.refresh_ms = 30000;
	if (!p->cfg.failure_wait_ms)
		p->cfg.failure_wait_ms = 5000;
	p->peer = calloc(cfg->n_peer_urls + 1, sizeof(*p->peer));
	for (size_t i = 0; p->peer && i < cfg->n_peer_urls; i++)
		if ((p->peer[p->npeer] = strdup(cfg->peer_urls[i])))
			p->npeer++;
	if (!p->peer) {
		free(p);
		return -ENOMEM;
	}
	ev_init(&p->refresh_w, on_refresh);
	p->refresh_w.repeat = 0.001;
	ev_timer_again(loop, &p->refresh_w);
	*ret = p;
	return 0;
}

void proxy_free(struct proxy *p)
{
	if (!p)
		return;
	ev_timer_stop(p->loop, &p->refresh_w);
	for (size_t i = 0; i < p->npeer; i++)
		free(p->peer[i]);
	free(p->peer);
	for (size_t i = 0; i < p->nep; i++)
		free(p->ep[i].url);
	free(p->ep);
	for (size_t i = 0; i < p->nfresh; i++)
		free(p->fresh[i]);
	free(p->fresh);
	free(p);
}

static void fwd_free(struct fwd *f)
{
	free(f->ep_url);
	buf_release(&f->hstore);
	buf_release(&f->body);
	free(f);
}

static void fwd_headers(struct fwd *f, struct web_header *h)
{
	for (size_t i = 0; i < f->nh; i++) {
		h[i].name = f->hstore.data + f->hoff[i][0];
		h[i].value = f->hstore.data + f->hoff[i][1];
	}
}

static void on_head(void *ctx, int status, const struct web_header *h, size_t n)
{
	struct fwd *f = ctx;

	f->status = status;
	f->began = true;
	buf_clear(&f->hstore);
	f->nh = 0;
	for (size_t i = 0; i < n && f->nh < MAX_FWD_HEADERS; i++) {
		f->hoff[f->nh][0] = f->hstore.len;
		buf_append(&f->hstore, h[i].name, strlen(h[i].name) + 1);
		f->hoff[f->nh][1] = f->hstore.len;
		buf_append(&f->hstore, h[i].value, strlen(h[i].value) + 1);
		f->nh++;
	}
	if (f->stream) {
		struct web_header hv[MAX_FWD_HEADERS];

		fwd_headers(f, hv);
		web_stream_begin(f->req, status, hv, f->nh);
	}
}

static void on_data(void *ctx, const void *data, size_t len)
{
	struct fwd *f = ctx;

	if (f->stream)
		web_stream_write(f->req, data, len);
	else
		buf_append(&f->body, data, len);
}

static void fwd_start(struct fwd *f);

static void on_done(void *ctx, int err, const char *msg, int status, const struct buf *body)
{
	struct fwd *f = ctx;
	struct proxy *p = f->p;

	(void)body;
	f->call = NULL;
	if (err < 0 && !f->began && !p) {
		struct buf b = BUF_INIT;
		struct web_header ctype = {"Content-Type", "application/json"};

		buf_puts(&b, "{\"message\":\"cannot reach ");
		buf_puts(&b, f->ep_url ? f->ep_url : "");
		buf_puts(&b, "\"}\n");
		web_req_on_close(f->req, NULL, NULL);
		web_respond(f->req, 502, &ctype, 1, b.data ? b.data : "", b.len);
		buf_release(&b);
		fwd_free(f);
		return;
	}
	if (err < 0 && !f->began) {
		/* Not reached: skip this endpoint for a while and try the next. */
		log_warn("proxy: endpoint '%s' failed: %s", f->ep_url, msg ? msg : "");
		for (size_t i = 0; i < p->nep; i++) {
			if (strcmp(p->ep[i].url, f->ep_url))
				continue;
			p->ep[i].failed_until_ns =
			    flt_monotime_ns() + (int64_t)p->cfg.failure_wait_ms * 1000000;
			if (p->rr % p->nep == i)
				p->rr++;
		}
		fwd_start(f);
		return;
	}
	web_req_on_close(f->req, NULL, NULL);
	if (f->stream) {
		web_stream_end(f->req);
	} else if (err < 0) {
		/* The endpoint went away in the middle of its answer: a truncated body must not
		 * pass for a whole one. */
		static const char cut[] = "{\"message\":\"proxy: the endpoint's answer was cut "
		                          "off\"}\n";
		struct web_header ctype = {"Content-Type", "application/json"};

		web_respond(f->req, 502, &ctype, 1, cut, sizeof(cut) - 1);
	} else {
		struct web_header hv[MAX_FWD_HEADERS];

		fwd_headers(f, hv);
		web_respond(f->req, status, hv, f->nh, f->body.data ? f->body.data : "",
		            f->body.len);
	}
	fwd_free(f);
}

static void on_client_gone(struct web_req *req, void *ctx)
{
	struct fwd *f = ctx;

	hcli_call_cancel(f->call);
	/* The client is gone; completing the request is what frees it (web.h). */
	if (f->stream && f->began)
		web_stream_end(req);
	else
		web_respond(req, 503, NULL, 0, "", 0);
	fwd_free(f);
}

static void fwd_call(struct fwd *f, const char *url);

static void fwd_start(struct fwd *f)
{
	struct proxy *p = f->p;
	const char *ep = NULL, *q = web_req_query(f->req);
	int64_t now = flt_monotime_ns();
	struct buf url = BUF_INIT;

	while (f->tries < p->nep) {
		struct endpoint *e = &p->ep[p->rr % p->nep];

		f->tries++;
		if (e->failed_until_ns <= now) {
			ep = e->url;
			break;
		}
		p->rr++;
	}
	if (!ep) {
		static const char msg[] = "{\"message\":\"proxy: unable to get response from any "
		                          "endpoint\"}\n";
		struct web_header ctype = {"Content-Type", "application/json"};

		web_req_on_close(f->req, NULL, NULL);
		web_respond(f->req, 503, &ctype, 1, msg, sizeof(msg) - 1);
		fwd_free(f);
		return;
	}
	free(f->ep_url);
	f->ep_url = strdup(ep);
	buf_printf(&url, "%s%s%s%s", ep, web_req_path(f->req), q[0] ? "?" : "", q);
	if (url.data)
		fwd_call(f, url.data);
	else
		fwd_call(f, "");
	buf_release(&url);
}

static void fwd_call(struct fwd *f, const char *url)
{
	const char *ct;
	struct web_header h[1];
	struct hcli_req rq = {0};
	struct hcli_cb cb = {.head = on_head, .data = on_data, .done = on_done, .ctx = f};
	size_t body_len;
	const char *body = web_req_body(f->req, &body_len);

	rq.method = web_req_method(f->req);
	rq.url = url;
	rq.body = body;
	rq.body_len = body_len;
	rq.timeout_ms = f->stream ? 0 : CALL_TIMEOUT_MS;
	if ((ct = web_req_header(f->req, "Content-Type"))) {
		h[0].name = "Content-Type";
		h[0].value = ct;
		rq.headers = h;
		rq.n_headers = 1;
	}
	if (!url[0] || !f->ep_url || hcli_call_start(f->http, &rq, &cb, &f->call) < 0) {
		web_req_on_close(f->req, NULL, NULL);
		web_respond(f->req, 500, NULL, 0, "", 0);
		fwd_free(f);
	}
}

static struct fwd *fwd_new(struct proxy *p, struct hcli *http, struct web_req *req)
{
	struct fwd *f = calloc(1, sizeof(*f));
	const char *q = web_req_query(req);

	if (!f) {
		web_respond(req, 500, NULL, 0, "", 0);
		return NULL;
	}
	f->p = p;
	f->http = http;
	f->req = req;
	buf_init(&f->hstore);
	buf_init(&f->body);
	f->stream = strstr(q, "wait=true") || strstr(q, "follow=true") || strstr(q, "stream=true");
	web_req_on_close(req, on_client_gone, f);
	return f;
}

void proxy_relay(struct hcli *http, struct web_req *req, const char *url)
{
	struct fwd *f = fwd_new(NULL, http, req);

	if (!f)
		return;
	f->ep_url = strdup(url);
	fwd_call(f, url);
}

void proxy_handle(void *ud, struct web_req *req)
{
	struct proxy *p = ud;
	const char *m = web_req_method(req);
	struct fwd *f;

	if (p->cfg.readonly && strcmp(m, "GET") && strcmp(m, "HEAD")) {
		/* etcd's readonly proxy answers writes with 501 */
		web_respond(req, 501, NULL, 0, "", 0);
		return;
	}
	if (p->cfg.local && p->cfg.local(p->cfg.local_ud, req))
		return;
	f = fwd_new(p, p->http, req);
	if (f)
		fwd_start(f);
}
