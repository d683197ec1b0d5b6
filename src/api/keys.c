/* The etcd v2 keys API (/v2/keys): request parsing and validation exactly as etcd 3.4's
 * v2http parseKeyRequest (same checks in the same order, same codes and causes), reads answered
 * from the local store (quorum=true behind a read barrier), writes proposed to the log and
 * answered when applied, and watches streamed with chunked encoding until the event (or every
 * event, stream=true), the client leaving or etcd's 5 minute watch timeout. */
#include "api/api.h"

#include <errno.h>
#include <ev.h>
#include <stdlib.h>
#include <string.h>

#include "http/web.h"
#include "node.h"
#include "store/store.h"
#include "util/err.h"
#include "util/log.h"
#include "util/util.h"

#define WATCH_TIMEOUT  300.0 /* etcd's defaultWatchTimeout */
#define MAX_FORM_PAIRS 256   /* parameters kept from one request */

/* ---------------------------------------------------------------- form parsing (Go's url) */

struct kv {
	char *k, *v;
	size_t klen, vlen;
};

struct form {
	struct kv p[MAX_FORM_PAIRS];
	size_t n;
	struct buf err; /* Go's first parse error, "" if none */
};

static void form_release(struct form *f)
{
	for (size_t i = 0; i < f->n; i++) {
		free(f->p[i].k);
		free(f->p[i].v);
	}
	f->n = 0;
	buf_release(&f->err);
}

static int hexv(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* strconv.Quote, enough for the bytes of a bad escape. */
static int go_quote(struct buf *b, const char *s, size_t len)
{
	int r = buf_putc(b, '"');

	for (size_t i = 0; r >= 0 && i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '"' || c == '\\')
			r = buf_printf(b, "\\%c", c);
		else if (c >= 0x20 && c < 0x7f)
			r = buf_putc(b, (char)c);
		else
			r = buf_printf(b, "\\x%02x", c);
	}
	return r < 0 ? r : buf_putc(b, '"');
}

/* url.QueryUnescape: returns the new string or NULL with `err` set (or -ENOMEM: NULL, err
 * empty). web_unescape decodes; this adds Go's message for the first bad escape. */
static char *query_unescape(const char *s, size_t len, size_t *ret_len, struct buf *err)
{
	char *out = web_unescape(s, len, true, ret_len);

	if (out)
		return out;
	for (size_t i = 0; i < len; i++) {
		if (s[i] != '%')
			continue;
		if (i + 2 < len && hexv(s[i + 1]) >= 0 && hexv(s[i + 2]) >= 0) {
			i += 2;
			continue;
		}
		buf_clear(err);
		buf_puts(err, "invalid URL escape ");
		go_quote(err, s + i, len - i < 3 ? len - i : 3);
		break;
	}
	return NULL;
}

/* url.ParseQuery into `f` (appending), remembering the first error as Go does. */
static int parse_query(struct form *f, const char *q, size_t len)
{
	size_t i = 0;

	while (i < len) {
		size_t j = i, eq;
		struct buf e = BUF_INIT;
		struct kv kv;

		while (j < len && q[j] != '&')
			j++;
		if (memchr(q + i, ';', j - i)) {
			if (!f->err.len)
				buf_puts(&f->err, "invalid semicolon separator in query");
			i = j + 1;
			continue;
		}
		if (j == i) {
			i = j + 1;
			continue;
		}
		for (eq = i; eq < j && q[eq] != '='; eq++)
			;
		kv.k = query_unescape(q + i, eq - i, &kv.klen, &e);
		kv.v =
		    kv.k ? query_unescape(q + eq + 1, eq < j ? j - eq - 1 : 0, &kv.vlen, &e) : NULL;
		if (!kv.k || !kv.v) {
			free(kv.k);
			if (!e.len) {
				buf_release(&e);
				return -ENOMEM;
			}
			if (!f->err.len)
				buf_append(&f->err, e.data, e.len);
			buf_release(&e);
			i = j + 1;
			continue;
		}
		buf_release(&e);
		if (f->n == MAX_FORM_PAIRS) {
			free(kv.k);
			free(kv.v);
		} else {
			f->p[f->n++] = kv;
		}
		i = j + 1;
	}
	return 0;
}

static const struct kv *form_get(const struct form *f, const char *name)
{
	for (size_t i = 0; i < f->n; i++)
		if (strlen(name) == f->p[i].klen && !memcmp(f->p[i].k, name, f->p[i].klen))
			return &f->p[i];
	return NULL;
}

/* strconv.ParseUint(s, 10, 64) */
static bool parse_u64(const struct kv *kv, uint64_t *ret)
{
	uint64_t v = 0;

	if (!kv->vlen)
		return false;
	for (size_t i = 0; i < kv->vlen; i++) {
		char c = kv->v[i];

		if (c < '0' || c > '9' || v > (UINT64_MAX - (uint64_t)(c - '0')) / 10)
			return false;
		v = v * 10 + (uint64_t)(c - '0');
	}
	*ret = v;
	return true;
}

/* strconv.ParseBool */
static bool parse_bool(const struct kv *kv, bool *ret)
{
	static const char *const t[] = {"1", "t", "T", "TRUE", "true", "True"};
	static const char *const f[] = {"0", "f", "F", "FALSE", "false", "False"};

	for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
		if (kv->vlen == strlen(t[i]) && !memcmp(kv->v, t[i], kv->vlen)) {
			*ret = true;
			return true;
		}
		if (kv->vlen == strlen(f[i]) && !memcmp(kv->v, f[i], kv->vlen)) {
			*ret = false;
			return true;
		}
	}
	return false;
}

/* ---------------------------------------------------------------- answers */

static void respond_result(struct api *a, struct web_req *req, const struct store_result *res,
                           bool no_value)
{
	struct web_header h[API_MAX_HEADERS];
	char scratch[3][24];
	struct buf body = BUF_INIT;
	size_t n = api_std_headers(a, h, res->etcd_index, !res->err_code, scratch);

	if (no_value && !res->err_code && store_result_json_novalue(res, &body) >= 0)
		web_respond(req, store_result_status(res), h, n, body.data, body.len);
	else
		web_respond(req, store_result_status(res), h, n,
		            res->json.data ? res->json.data : "", res->json.len);
	buf_release(&body);
}

static void respond_error(struct api *a, struct web_req *req, int code, const char *cause,
                          uint64_t index)
{
	struct web_header h[API_MAX_HEADERS];
	char scratch[3][24];
	struct buf body = BUF_INIT;
	size_t n = api_std_headers(a, h, index, false, scratch);

	if (store_error_json(code, cause, index, &body) < 0) {
		buf_release(&body);
		web_respond(req, 500, h, n, "", 0);
		return;
	}
	web_respond(req, store_error_status(code), h, n, body.data, body.len);
	buf_release(&body);
}

/* Go's ServeMux answers a path that is not clean with a 301 to the clean one (fixture 078). */
static bool redirect_unclean(struct web_req *req, const char *key, size_t klen)
{
	static const char keep[] = "-_.~$&+,/:;=@";
	struct buf full = BUF_INIT, clean = BUF_INIT, loc = BUF_INIT, body = BUF_INIT;
	const char *q = web_req_query(req), *method = web_req_method(req);
	bool slash;
	int r;

	r = buf_puts(&full, "/v2/keys");
	if (r >= 0)
		r = buf_append(&full, key, klen);
	if (r >= 0)
		r = store_path_clean(full.data, full.len, &clean);
	if (r < 0)
		goto out;
	slash = full.data[full.len - 1] == '/';
	if (slash && clean.len > 1 && (r = buf_putc(&clean, '/')) < 0)
		goto out;
	if (clean.len == full.len && !memcmp(clean.data, full.data, full.len))
		goto out;
	/* url.URL{Path: clean, RawQuery: q}.String() */
	for (size_t i = 0; i < clean.len && r >= 0; i++) {
		unsigned char c = (unsigned char)clean.data[i];

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    (c && strchr(keep, c)))
			r = buf_putc(&loc, (char)c);
		else
			r = buf_printf(&loc, "%%%02X", c);
	}
	if (r >= 0 && *q)
		r = buf_printf(&loc, "?%s", q);
	if (r < 0)
		goto out;
	if (!strcmp(method, "GET")) {
		r = buf_puts(&body, "<a href=\"");
		for (size_t i = 0; i < loc.len && r >= 0; i++) {
			switch (loc.data[i]) {
			case '<':
				r = buf_puts(&body, "&lt;");
				break;
			case '>':
				r = buf_puts(&body, "&gt;");
				break;
			case '&':
				r = buf_puts(&body, "&amp;");
				break;
			case '\'':
				r = buf_puts(&body, "&#39;");
				break;
			case '"':
				r = buf_puts(&body, "&#34;");
				break;
			default:
				r = buf_putc(&body, loc.data[i]);
			}
		}
		if (r >= 0)
			r = buf_puts(&body, "\">Moved Permanently</a>.\n\n");
		if (r < 0)
			goto out;
	}
	{
		struct web_header h[] = {{"Location", loc.data}};
		bool gethead = !strcmp(method, "GET") || !strcmp(method, "HEAD");

		api_respond_plain(req, 301, h, 1, gethead ? "text/html; charset=utf-8" : NULL,
		              body.data ? body.data : "", body.len);
	}
	buf_release(&full);
	buf_release(&clean);
	buf_release(&loc);
	buf_release(&body);
	return true;
out:
	buf_release(&full);
	buf_release(&clean);
	buf_release(&loc);
	buf_release(&body);
	return false;
}

/* ---------------------------------------------------------------- requests in flight */

struct kreq {
	struct api *a;
	struct web_req *req;
	char *key;
	bool recursive, no_value, stream;
	int kind; /* 'w' write, 'q' quorum read, 'W' watch */
	struct store_watch *w;
	ev_timer timer;
};

static void kreq_free(struct kreq *k)
{
	free(k->key);
	free(k);
}

static void write_done(void *ctx, int err, const struct store_result *res, uint64_t raft_index)
{
	struct kreq *k = ctx;
	struct api *a = k->a;
	const char *m = web_req_method(k->req);
	bool del = !strcmp(m, "DELETE");

	(void)raft_index;
	if (err < 0 || !res) {
		respond_error(a, k->req, STORE_ERAFTINTERNAL, flt_strerror(err < 0 ? err : -EIO),
		              0);
		if (del)
			a->stats.delete_fail++;
		else
			a->stats.set_fail++;
	} else {
		if (res->err_code) {
			if (del)
				a->stats.delete_fail++;
			else
				a->stats.set_fail++;
		}
		respond_result(a, k->req, res, k->no_value);
	}
	kreq_free(k);
}

static void qget_done(void *ctx, int err, const struct store_result *unused, uint64_t raft_index)
{
	struct kreq *k = ctx;
	struct store_result *res = NULL;

	(void)unused;
	(void)raft_index;
	if (err < 0) {
		k->a->stats.get_fail++;
		respond_error(k->a, k->req, STORE_ERAFTINTERNAL, flt_strerror(err), 0);
	} else if (store_get(k->a->store, k->key, k->recursive, true, flt_realtime_ns(), &res) <
	           0) {
		k->a->stats.get_fail++;
		respond_error(k->a, k->req, STORE_ERAFTINTERNAL, "out of memory", 0);
	} else {
		if (res->err_code)
			k->a->stats.get_fail++;
		respond_result(k->a, k->req, res, false);
	}
	store_result_free(res);
	kreq_free(k);
}

/* ---------------------------------------------------------------- watches */

static void watch_end(struct kreq *k)
{
	struct api *a = k->a;

	ev_timer_stop(a->loop, &k->timer);
	store_watch_free(k->w); /* deferred by the store if we are inside its callback */
	k->w = NULL;
	a->watches_open--;
	web_stream_end(k->req);
	kreq_free(k);
}

static void watch_event(void *ctx, const struct store_event *ev)
{
	struct kreq *k = ctx;
	size_t len;
	const char *json = store_event_json(ev, &len);

	if (web_stream_write(k->req, json, len) < 0 || !k->stream)
		watch_end(k);
}

static void watch_closed(struct web_req *req, void *ctx)
{
	(void)req;
	watch_end(ctx);
}

static void watch_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)loop;
	(void)revents;
	watch_end(container_of(t, struct kreq, timer));
}

static void start_watch(struct api *a, struct web_req *req, const char *key, bool recursive,
                        bool stream, uint64_t since)
{
	struct web_header h[API_MAX_HEADERS];
	char scratch[3][24];
	struct store_result *err = NULL;
	struct kreq *k;
	size_t n;

	if (a->max_watches && a->watches_open >= a->max_watches) {
		respond_error(a, req, STORE_ERAFTINTERNAL, "too many open watches", 0);
		return;
	}
	k = calloc(1, sizeof(*k));
	if (!k || store_watch_new(a->store, key, recursive, stream, since, watch_event, k, &k->w,
	                          &err) < 0) {
		free(k);
		respond_error(a, req, STORE_ERAFTINTERNAL, "out of memory", 0);
		return;
	}
	if (err) {
		free(k);
		respond_result(a, req, err, false);
		store_result_free(err);
		return;
	}
	k->a = a;
	k->req = req;
	k->stream = stream;
	k->kind = 'W';
	a->watches_open++;
	a->stats.watches++;
	n = api_std_headers(a, h, store_watch_start_index(k->w), true, scratch);
	if (web_stream_begin(req, 200, h, n) < 0) {
		watch_end(k);
		return;
	}
	web_req_on_close(req, watch_closed, k);
	ev_timer_init(&k->timer, watch_timeout, WATCH_TIMEOUT, 0.);
	ev_timer_start(a->loop, &k->timer);
	store_watch_catch_up(k->w);
}

/* ---------------------------------------------------------------- the handler */

static bool is_form(const char *ct)
{
	static const char form[] = "application/x-www-form-urlencoded";
	size_t n;

	if (!ct)
		return false;
	while (*ct == ' ' || *ct == '\t')
		ct++;
	n = strcspn(ct, ";");
	while (n && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
		n--;
	return n == sizeof(form) - 1 && !strncasecmp(ct, form, n);
}

struct params {
	uint64_t prev_index, wait_index, ttl;
	bool rec, sorted, wait, dir, quorum, stream, no_value, has_ttl;
	int prev_exist, refresh;
	const struct kv *value, *prev_value;
};

/* etcd's parseKeyRequest checks, in its order. Returns 0 or an etcd code with *cause. */
static int validate(const struct form *f, const char *method, struct params *p, const char **cause)
{
	static const struct {
		const char *name;
		size_t off;
		const char *cause;
	} bools[] = {
	    {"recursive", offsetof(struct params, rec), "invalid value for \"recursive\""},
	    {"sorted", offsetof(struct params, sorted), "invalid value for \"sorted\""},
	    {"wait", offsetof(struct params, wait), "invalid value for \"wait\""},
	    {"dir", offsetof(struct params, dir), "invalid value for \"dir\""},
	    {"quorum", offsetof(struct params, quorum), "invalid value for \"quorum\""},
	    {"stream", offsetof(struct params, stream), "invalid value for \"stream\""},
	};
	const struct kv *kv;
	bool b;

	memset(p, 0, sizeof(*p));
	p->prev_exist = p->refresh = -1;
	if (f->err.len) {
		*cause = f->err.data;
		return STORE_EINVALIDFORM;
	}
	if ((kv = form_get(f, "prevIndex")) && !parse_u64(kv, &p->prev_index)) {
		*cause = "invalid value for \"prevIndex\"";
		return STORE_EINDEXNAN;
	}
	if ((kv = form_get(f, "waitIndex")) && !parse_u64(kv, &p->wait_index)) {
		*cause = "invalid value for \"waitIndex\"";
		return STORE_EINDEXNAN;
	}
	for (size_t i = 0; i < ARRAY_SIZE(bools); i++) {
		if ((kv = form_get(f, bools[i].name)) &&
		    !parse_bool(kv, (bool *)((char *)p + bools[i].off))) {
			*cause = bools[i].cause;
			return STORE_EINVALIDFIELD;
		}
	}
	if (p->wait && strcmp(method, "GET")) {
		*cause = "\"wait\" can only be used with GET requests";
		return STORE_EINVALIDFIELD;
	}
	if ((p->prev_value = form_get(f, "prevValue")) && !p->prev_value->vlen) {
		*cause = "\"prevValue\" cannot be empty";
		return STORE_EPREVVALUEREQUIRED;
	}
	if ((kv = form_get(f, "noValueOnSuccess")) && !parse_bool(kv, &p->no_value)) {
		*cause = "invalid value for \"noValueOnSuccess\"";
		return STORE_EINVALIDFIELD;
	}
	if ((kv = form_get(f, "ttl")) && kv->vlen) {
		if (!parse_u64(kv, &p->ttl)) {
			*cause = "invalid value for \"ttl\"";
			return STORE_ETTLNAN;
		}
		p->has_ttl = true;
	}
	if ((kv = form_get(f, "prevExist"))) {
		if (!parse_bool(kv, &b)) {
			*cause = "invalid value for prevExist";
			return STORE_EINVALIDFIELD;
		}
		p->prev_exist = b;
	}
	p->value = form_get(f, "value");
	if ((kv = form_get(f, "refresh"))) {
		if (!parse_bool(kv, &b)) {
			*cause = "invalid value for refresh";
			return STORE_EINVALIDFIELD;
		}
		p->refresh = b;
		if (b && p->value && p->value->vlen) {
			*cause = "A value was provided on a refresh";
			return STORE_EREFRESHVALUE;
		}
		if (b && !p->has_ttl) {
			*cause = "No TTL value set";
			return STORE_EREFRESHTTLREQUIRED;
		}
	}
	return 0;
}

static void count_fail(struct api *a, const char *m)
{
	if (!strcmp(m, "GET") || !strcmp(m, "HEAD"))
		a->stats.get_fail++;
	else if (!strcmp(m, "DELETE"))
		a->stats.delete_fail++;
	else
		a->stats.set_fail++;
}

static void propose(struct api *a, struct web_req *req, const char *m, const char *key,
                    const struct params *p)
{
	struct store_cmd c = {0};
	struct buf enc = BUF_INIT;
	struct kreq *k;
	int r;

	c.time_ns = flt_realtime_ns();
	c.key = key;
	c.prev_exist = -1;
	if (!strcmp(m, "DELETE")) {
		c.op = STORE_OP_DELETE;
		c.dir = p->dir;
		c.recursive = p->rec;
		a->stats.deletes++;
	} else {
		c.op = !strcmp(m, "POST") ? STORE_OP_POST : STORE_OP_PUT;
		c.value = p->value ? p->value->v : "";
		c.value_len = p->value ? p->value->vlen : 0;
		c.dir = p->dir;
		c.has_ttl = p->has_ttl;
		c.ttl = p->ttl;
		c.refresh = p->refresh == 1;
		c.prev_exist = p->prev_exist;
		a->stats.sets++;
		if (c.value_len > STORE_MAX_VALUE) {
			a->stats.set_fail++;
			respond_error(a, req, STORE_EINVALIDFIELD, "value too large", 0);
			return;
		}
	}
	if (c.op != STORE_OP_POST && p->prev_value) {
		c.prev_value = p->prev_value->v;
		c.prev_value_len = p->prev_value->vlen;
	}
	if (c.op != STORE_OP_POST)
		c.prev_index = p->prev_index;
	k = calloc(1, sizeof(*k));
	if (!k || store_cmd_encode(&c, &enc) < 0) {
		free(k);
		buf_release(&enc);
		count_fail(a, m);
		respond_error(a, req, STORE_ERAFTINTERNAL, "out of memory", 0);
		return;
	}
	k->a = a;
	k->req = req;
	k->no_value = p->no_value;
	k->kind = 'w';
	r = node_propose(a->node, enc.data, enc.len, write_done, k);
	buf_release(&enc);
	if (r < 0) {
		free(k);
		count_fail(a, m);
		respond_error(a, req, STORE_ERAFTINTERNAL, flt_strerror(r), 0);
	}
}

void api_keys_handle(struct api *a, struct web_req *req, const char *key_enc)
{
	static const char *const methods[] = {"HEAD", "GET", "PUT", "POST", "DELETE"};
	const char *m = web_req_method(req), *q = web_req_query(req), *cause = NULL;
	struct form *f = NULL;
	struct params p;
	char *key = NULL;
	size_t klen, i;
	int code;

	for (i = 0; i < ARRAY_SIZE(methods); i++)
		if (!strcmp(m, methods[i]))
			break;
	if (i == ARRAY_SIZE(methods)) {
		api_method_not_allowed(req, "HEAD,GET,PUT,POST,DELETE");
		return;
	}
	key = web_unescape(key_enc, strlen(key_enc), false, &klen);
	if (!key) {
		static const char text[] = "400 Bad Request";

		api_respond_plain(req, 400, NULL, 0, "text/plain; charset=utf-8", text,
		              sizeof(text) - 1);
		return;
	}
	if (redirect_unclean(req, key, klen))
		goto out;
	f = calloc(1, sizeof(*f));
	if (!f) {
		respond_error(a, req, STORE_ERAFTINTERNAL, "out of memory", 0);
		goto out;
	}
	/* Go's ParseForm: the urlencoded body of PUT/POST first, then the query */
	if (!strcmp(m, "PUT") || !strcmp(m, "POST")) {
		size_t blen;
		const char *body = web_req_body(req, &blen);

		if (is_form(web_req_header(req, "Content-Type")) &&
		    parse_query(f, body, blen) < 0) {
			respond_error(a, req, STORE_ERAFTINTERNAL, "out of memory", 0);
			goto out;
		}
	}
	if (parse_query(f, q, strlen(q)) < 0) {
		respond_error(a, req, STORE_ERAFTINTERNAL, "out of memory", 0);
		goto out;
	}
	if (memchr(key, 0, klen)) {
		count_fail(a, m);
		respond_error(a, req, STORE_EINVALIDFIELD, "key contains a NUL byte", 0);
		goto out;
	}
	if ((code = validate(f, m, &p, &cause))) {
		count_fail(a, m);
		respond_error(a, req, code, cause, 0);
		goto out;
	}
	if (klen > STORE_MAX_KEY_LEN) {
		count_fail(a, m);
		respond_error(a, req, STORE_EINVALIDFIELD, "key too long", 0);
		goto out;
	}
	if (!strcmp(m, "GET") || !strcmp(m, "HEAD")) {
		if (!strcmp(m, "GET") && p.quorum) {
			struct kreq *k = calloc(1, sizeof(*k));
			int r;

			a->stats.gets++;
			if (!k || !(k->key = strdup(key))) {
				free(k);
				a->stats.get_fail++;
				respond_error(a, req, STORE_ERAFTINTERNAL, "out of memory", 0);
				goto out;
			}
			k->a = a;
			k->req = req;
			k->recursive = p.rec;
			k->kind = 'q';
			if ((r = node_read_barrier(a->node, qget_done, k)) < 0) {
				kreq_free(k);
				a->stats.get_fail++;
				respond_error(a, req, STORE_ERAFTINTERNAL, flt_strerror(r), 0);
			}
		} else if (p.wait) {
			start_watch(a, req, key, p.rec, p.stream, p.wait_index);
		} else {
			struct store_result *res;

			a->stats.gets++;
			if (store_get(a->store, key, p.rec, p.sorted, flt_realtime_ns(), &res) <
			    0) {
				a->stats.get_fail++;
				respond_error(a, req, STORE_ERAFTINTERNAL, "out of memory", 0);
				goto out;
			}
			if (res->err_code)
				a->stats.get_fail++;
			respond_result(a, req, res, false);
			store_result_free(res);
		}
		goto out;
	}
	propose(a, req, m, key, &p);
out:
	if (f)
		form_release(f);
	free(f);
	free(key);
}
