/* Asynchronous HTTP client: libcurl multi driven by the libev loop. curl tells us which sockets to
 * watch (CURLMOPT_SOCKETFUNCTION) and when to wake it (CURLMOPT_TIMERFUNCTION); we hand events back
 * with curl_multi_socket_action and collect finished transfers with curl_multi_info_read. A call
 * cancelled from inside one of its own callbacks is only marked: curl must not see its handle
 * freed under it, so the transfer is aborted by the write callback and reaped as usual. */
#include "http/client.h"

#include <curl/curl.h>
#include <errno.h>
#include <ev.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/util.h"

#define MAX_HEADERS 48

struct hcli {
	struct ev_loop *loop;
	CURLM *multi;
	ev_timer timer;
	struct hcli_call *calls; /* doubly linked, for hcli_free */
};

struct hcli_call {
	struct hcli *c;
	CURL *easy;
	struct curl_slist *req_headers;
	struct buf req_body;
	struct hcli_cb cb;
	struct buf body;   /* collected when there is no data callback */
	struct buf hstore; /* header names and values, NUL-separated */
	size_t hoff[MAX_HEADERS][2];
	size_t nh;
	int status;
	bool head_done, cancelled, in_cb;
	char errbuf[CURL_ERROR_SIZE];
	struct hcli_call *prev, *next;
};

struct hsock {
	ev_io io;
	struct hcli *c;
	curl_socket_t fd;
};

static void reap(struct hcli *c);

static void call_unlink_free(struct hcli_call *call)
{
	struct hcli *c = call->c;

	if (call->prev)
		call->prev->next = call->next;
	else
		c->calls = call->next;
	if (call->next)
		call->next->prev = call->prev;
	curl_multi_remove_handle(c->multi, call->easy);
	curl_easy_cleanup(call->easy);
	curl_slist_free_all(call->req_headers);
	buf_release(&call->req_body);
	buf_release(&call->body);
	buf_release(&call->hstore);
	free(call);
}

static void on_io(struct ev_loop *loop, ev_io *w, int revents)
{
	struct hsock *s = container_of(w, struct hsock, io);
	struct hcli *c = s->c;
	int flags = 0, running;

	(void)loop;
	if (revents & EV_READ)
		flags |= CURL_CSELECT_IN;
	if (revents & EV_WRITE)
		flags |= CURL_CSELECT_OUT;
	curl_multi_socket_action(c->multi, s->fd, flags, &running);
	reap(c);
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct hcli *c = container_of(w, struct hcli, timer);
	int running;

	(void)loop;
	(void)revents;
	curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	reap(c);
}

static int sock_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct hcli *c = userp;
	struct hsock *s = socketp;

	(void)easy;
	if (what == CURL_POLL_REMOVE) {
		if (s) {
			ev_io_stop(c->loop, &s->io);
			free(s);
			curl_multi_assign(c->multi, fd, NULL);
		}
		return 0;
	}
	if (!s) {
		s = calloc(1, sizeof(*s));
		if (!s)
			return -1;
		s->c = c;
		s->fd = fd;
		ev_init(&s->io, on_io);
		curl_multi_assign(c->multi, fd, s);
	}
	ev_io_stop(c->loop, &s->io);
	ev_io_set(&s->io, fd,
	          (what & CURL_POLL_IN ? EV_READ : 0) | (what & CURL_POLL_OUT ? EV_WRITE : 0));
	ev_io_start(c->loop, &s->io);
	return 0;
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	struct hcli *c = userp;

	(void)multi;
	ev_timer_stop(c->loop, &c->timer);
	if (timeout_ms >= 0) {
		ev_timer_set(&c->timer, (double)timeout_ms / 1000.0, 0.);
		ev_timer_start(c->loop, &c->timer);
	}
	return 0;
}

int hcli_new(struct ev_loop *loop, struct hcli **ret)
{
	struct hcli *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	/* Safe to call more than once; the daemon is single-threaded. */
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || !(c->multi = curl_multi_init())) {
		free(c);
		return -ENOMEM;
	}
	c->loop = loop;
	ev_init(&c->timer, on_timer);
	curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
	curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
	curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
	*ret = c;
	return 0;
}

void hcli_free(struct hcli *c)
{
	if (!c)
		return;
	while (c->calls)
		call_unlink_free(c->calls);
	ev_timer_stop(c->loop, &c->timer);
	curl_multi_cleanup(c->multi);
	free(c);
}

/* Headers a relay must not pass on: they describe this hop, and the server writes its own. */
static bool hop_by_hop(const char *name, size_t len)
{
	static const char *const skip[] = {
	    "connection",       "keep-alive", "transfer-encoding", "content-length", "date",
	    "proxy-connection", "te",         "trailer",           "upgrade"};

	for (size_t i = 0; i < ARRAY_SIZE(skip); i++)
		if (strlen(skip[i]) == len && !strncasecmp(skip[i], name, len))
			return true;
	return false;
}

static void deliver_head(struct hcli_call *call)
{
	struct web_header h[MAX_HEADERS];

	call->head_done = true;
	if (!call->cb.head)
		return;
	for (size_t i = 0; i < call->nh; i++) {
		h[i].name = call->hstore.data + call->hoff[i][0];
		h[i].value = call->hstore.data + call->hoff[i][1];
	}
	call->in_cb = true;
	call->cb.head(call->cb.ctx, call->status, h, call->nh);
	call->in_cb = false;
}

static size_t header_cb(char *line, size_t size, size_t n, void *ud)
{
	struct hcli_call *call = ud;
	size_t len = size * n, l = len;
	const char *colon;

	if (call->cancelled)
		return 0;
	while (l && (line[l - 1] == '\n' || line[l - 1] == '\r'))
		l--;
	if (l >= 5 && !strncmp(line, "HTTP/", 5)) {
		/* A new response (after a 100 Continue, say): start over. */
		const char *sp = memchr(line, ' ', l);

		call->status = sp ? atoi(sp + 1) : 0;
		call->nh = 0;
		buf_clear(&call->hstore);
		return len;
	}
	if (l == 0) {
		if (call->status >= 200 && !call->head_done)
			deliver_head(call);
		return len;
	}
	colon = memchr(line, ':', l);
	if (!colon || call->nh == MAX_HEADERS || hop_by_hop(line, (size_t)(colon - line)))
		return len;
	{
		const char *v = colon + 1;
		size_t vl = l - (size_t)(v - line);

		while (vl && (*v == ' ' || *v == '\t'))
			v++, vl--;
		call->hoff[call->nh][0] = call->hstore.len;
		if (buf_append(&call->hstore, line, (size_t)(colon - line)) < 0 ||
		    buf_append(&call->hstore, "", 1) < 0)
			return 0;
		call->hoff[call->nh][1] = call->hstore.len;
		if (buf_append(&call->hstore, v, vl) < 0 || buf_append(&call->hstore, "", 1) < 0)
			return 0;
		call->nh++;
	}
	return len;
}

static size_t write_cb(char *data, size_t size, size_t n, void *ud)
{
	struct hcli_call *call = ud;
	size_t len = size * n;

	if (call->cancelled)
		return 0;
	if (!call->head_done)
		deliver_head(call);
	if (call->cancelled)
		return 0;
	if (!call->cb.data)
		return buf_append(&call->body, data, len) < 0 ? 0 : len;
	call->in_cb = true;
	call->cb.data(call->cb.ctx, data, len);
	call->in_cb = false;
	return call->cancelled ? 0 : len;
}

static void reap(struct hcli *c)
{
	CURLMsg *m;
	int left;

	while ((m = curl_multi_info_read(c->multi, &left))) {
		struct hcli_call *call;

		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&call);
		if (!call->cancelled && call->cb.done) {
			CURLcode rc = m->data.result;
			int err = 0;
			const char *msg = NULL;

			if (rc != CURLE_OK) {
				err = rc == CURLE_OPERATION_TIMEDOUT ? -ETIMEDOUT
				      : rc == CURLE_COULDNT_CONNECT  ? -ECONNREFUSED
				      : rc == CURLE_OUT_OF_MEMORY    ? -ENOMEM
				                                     : -EIO;
				msg = call->errbuf[0] ? call->errbuf : curl_easy_strerror(rc);
			} else if (!call->head_done) {
				deliver_head(call);
			}
			call->in_cb = true;
			call->cb.done(call->cb.ctx, err, msg, call->status, &call->body);
		}
		call_unlink_free(call);
	}
}

int hcli_call_start(struct hcli *c, const struct hcli_req *req, const struct hcli_cb *cb,
                    struct hcli_call **ret)
{
	struct hcli_call *call = calloc(1, sizeof(*call));
	const char *method = req->method ? req->method : "GET";
	struct buf h = BUF_INIT;

	if (!call)
		return -ENOMEM;
	call->c = c;
	call->cb = *cb;
	buf_init(&call->req_body);
	buf_init(&call->body);
	buf_init(&call->hstore);
	if (!(call->easy = curl_easy_init()))
		goto nomem;
	for (size_t i = 0; i < req->n_headers; i++) {
		struct curl_slist *l;

		buf_clear(&h);
		if (buf_printf(&h, "%s: %s", req->headers[i].name, req->headers[i].value) < 0 ||
		    !(l = curl_slist_append(call->req_headers, h.data)))
			goto nomem;
		call->req_headers = l;
	}
	{
		/* No "Expect: 100-continue" round trip, no default Accept. */
		struct curl_slist *l = curl_slist_append(call->req_headers, "Expect:");

		if (!l)
			goto nomem;
		call->req_headers = l;
	}
	buf_release(&h);
	curl_easy_setopt(call->easy, CURLOPT_URL, req->url);
	curl_easy_setopt(call->easy, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(call->easy, CURLOPT_HTTPHEADER, call->req_headers);
	curl_easy_setopt(call->easy, CURLOPT_PRIVATE, call);
	curl_easy_setopt(call->easy, CURLOPT_ERRORBUFFER, call->errbuf);
	curl_easy_setopt(call->easy, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(call->easy, CURLOPT_HEADERDATA, call);
	curl_easy_setopt(call->easy, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(call->easy, CURLOPT_WRITEDATA, call);
	curl_easy_setopt(call->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(call->easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(call->easy, CURLOPT_CONNECTTIMEOUT_MS,
	                 (long)(req->connect_timeout_ms ? req->connect_timeout_ms : 1000));
	if (req->timeout_ms)
		curl_easy_setopt(call->easy, CURLOPT_TIMEOUT_MS, (long)req->timeout_ms);
	if (!strcmp(method, "HEAD"))
		curl_easy_setopt(call->easy, CURLOPT_NOBODY, 1L);
	if (req->body_len || strcmp(method, "GET")) {
		if (buf_append(&call->req_body, req->body ? req->body : "", req->body_len) < 0)
			goto nomem;
		if (strcmp(method, "GET") && strcmp(method, "HEAD")) {
			curl_easy_setopt(call->easy, CURLOPT_POSTFIELDS,
			                 call->req_body.data ? call->req_body.data : "");
			curl_easy_setopt(call->easy, CURLOPT_POSTFIELDSIZE_LARGE,
			                 (curl_off_t)req->body_len);
		}
	}
	if (curl_multi_add_handle(c->multi, call->easy) != CURLM_OK)
		goto nomem;
	call->next = c->calls;
	if (c->calls)
		c->calls->prev = call;
	c->calls = call;
	if (ret)
		*ret = call;
	return 0;
nomem:
	buf_release(&h);
	if (call->easy)
		curl_easy_cleanup(call->easy);
	curl_slist_free_all(call->req_headers);
	buf_release(&call->req_body);
	free(call);
	return -ENOMEM;
}

void hcli_call_cancel(struct hcli_call *call)
{
	if (!call || call->cancelled)
		return;
	call->cancelled = true;
	/* From inside its own callback curl still holds the handle: the write/header callbacks
	 * return 0 to abort and reap() frees it without calling done. Otherwise free now. */
	if (!call->in_cb)
		call_unlink_free(call);
}
