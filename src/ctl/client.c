/* flotctl's HTTP client on libcurl's easy interface (see client.h). It reproduces the failover
 * loop of etcd's Go client v2 (httpClusterClient.Do): try endpoints from the pinned one, collect
 * one error per endpoint, treat 5xx as "member has no leader", and stop at the total deadline. */
#include "ctl/client.h"
#include "ctl/ctl.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/util.h"
#include "util/reason.h"

/* A response body bigger than this is refused: no etcd answer comes near it. */
#define CTL_MAX_BODY (256u << 20)
/* Go's etcd client dials with at most this timeout (util.go defaultDialTimeout). */
#define CTL_DIAL_TIMEOUT_NS (30LL * 1000000000LL)

struct ctl_endpoint {
	char *url;    /* as shown in messages: scheme://host[:port][/path] */
	char *origin; /* scheme://host[:port] */
	char *path;   /* path prefix, "" when none */
	char *bad;    /* non-NULL: a request must fail with this Go transport error */
};

struct ctl_client {
	CURL *curl;
	struct ctl_endpoint *eps;
	size_t n;
	size_t pinned;
	struct ctl_client_opts o;
	char errbuf[CURL_ERROR_SIZE];
};

void ctl_error_init(struct ctl_error *e)
{
	e->cluster = false;
	e->conn = false;
	buf_init(&e->msg);
	buf_init(&e->detail);
}

void ctl_error_release(struct ctl_error *e)
{
	buf_release(&e->msg);
	buf_release(&e->detail);
}

void ctl_error_set(struct ctl_error *e, bool conn, const char *fmt, ...)
{
	va_list ap;

	buf_clear(&e->msg);
	buf_clear(&e->detail);
	e->cluster = false;
	e->conn = conn;
	va_start(ap, fmt);
	if (buf_vprintf(&e->msg, fmt, ap) < 0)
		ctl_oom();
	va_end(ap);
}

void ctl_resp_init(struct ctl_resp *r)
{
	r->status = 0;
	buf_init(&r->body);
	r->index = 0;
	r->has_index = false;
}

void ctl_resp_release(struct ctl_resp *r)
{
	buf_release(&r->body);
}

/* ---- URL pieces, with Go's net/url rules ---- */

static bool unreserved(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_' || c == '.' || c == '~';
}

static void put_pct(struct buf *b, unsigned char c)
{
	static const char hex[] = "0123456789ABCDEF";
	char t[3] = {'%', hex[c >> 4], hex[c & 15]};

	cb_append(b, t, 3);
}

void ctl_query_escape(struct buf *b, const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (unreserved(*p))
			cb_putc(b, (char)*p);
		else if (*p == ' ')
			cb_putc(b, '+');
		else
			put_pct(b, *p);
	}
}

void ctl_path_escape(struct buf *b, const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (unreserved(*p) || strchr("$&+,/:;=@", *p))
			cb_putc(b, (char)*p);
		else
			put_pct(b, *p);
	}
}

char *ctl_canonical_path(const char *in)
{
	struct buf out = BUF_INIT;
	size_t len = strlen(in), *segs, nseg = 0;
	const char *p = in;
	bool trailing = len > 0 && in[len - 1] == '/';

	/* every segment starts after a '/', so there are at most len/2+1 of them */
	segs = calloc(len / 2 + 2, sizeof(*segs));
	if (!segs)
		ctl_oom();
	cb_putc(&out, '/');
	while (*p) {
		size_t l;

		while (*p == '/')
			p++;
		l = strcspn(p, "/");
		if (l == 0)
			break;
		if (l == 1 && p[0] == '.') {
			/* drop "." */
		} else if (l == 2 && p[0] == '.' && p[1] == '.') {
			if (nseg > 0)
				out.len = segs[--nseg];
			out.data[out.len] = '\0';
		} else {
			segs[nseg++] = out.len;
			if (out.len > 1)
				cb_putc(&out, '/');
			cb_append(&out, p, l);
		}
		p += l;
	}
	if (out.len == 0)
		cb_putc(&out, '/');
	if (trailing && strcmp(out.data, "/") != 0)
		cb_putc(&out, '/');
	free(segs);
	return buf_steal(&out);
}

static void endpoint_release(struct ctl_endpoint *e)
{
	free(e->url);
	free(e->origin);
	free(e->path);
	free(e->bad);
}

static char *xstrndup(const char *s, size_t n)
{
	char *r = strndup(s, n);

	if (!r)
		ctl_oom();
	return r;
}

/* Parse one endpoint as Go's url.Parse then etcdctl's "default scheme http" would. */
static int endpoint_parse(const char *s, struct ctl_endpoint *e, struct buf *err)
{
	size_t sl = 0, hl;
	const char *rest;

	memset(e, 0, sizeof(*e));
	if ((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z')) {
		sl = 1;
		while (s[sl] && (unreserved((unsigned char)s[sl]) || s[sl] == '+') &&
		       s[sl] != '_' && s[sl] != '~')
			sl++;
		if (s[sl] != ':')
			sl = 0;
	}
	if (sl == 0) {
		/* no scheme: Go refuses a colon in the first path segment */
		size_t seg = strcspn(s, "/?#");

		if (memchr(s, ':', seg)) {
			cb_puts(err, "parse ");
			ctl_go_quote(err, s);
			cb_puts(err, ": first path segment in URL cannot contain colon");
			return -EINVAL;
		}
		if (!*s) {
			e->url = xstrndup("http:", 5);
			e->origin = xstrndup("http://", 7);
			e->path = xstrndup("", 0);
			e->bad = xstrndup("http: no Host in request URL", 28);
			return 0;
		}
		/* a bare host: friendlier than Go's "http:host" and what the user meant */
		rest = s;
		hl = strcspn(rest, "/?#");
		e->origin = malloc(hl + 8);
		if (!e->origin)
			ctl_oom();
		memcpy(e->origin, "http://", 7);
		memcpy(e->origin + 7, rest, hl);
		e->origin[hl + 7] = '\0';
		e->path = xstrndup(rest + hl, strcspn(rest + hl, "?#"));
		e->url = malloc(strlen(e->origin) + strlen(e->path) + 1);
		if (!e->url)
			ctl_oom();
		strcpy(e->url, e->origin);
		strcat(e->url, e->path);
		return 0;
	}
	rest = s + sl + 1;
	if (strncmp(rest, "//", 2) != 0 || (!(sl == 4 && !strncasecmp(s, "http", 4)) &&
	                                    !(sl == 5 && !strncasecmp(s, "https", 5)))) {
		/* Go's transport refuses anything but http(s)://host */
		struct buf m = BUF_INIT;

		cb_puts(&m, "unsupported protocol scheme ");
		e->url = xstrndup(s, strlen(s));
		e->bad = xstrndup(s, sl);
		for (char *q = e->bad; *q; q++)
			*q = (char)((*q >= 'A' && *q <= 'Z') ? *q + 32 : *q);
		ctl_go_quote(&m, e->bad);
		free(e->bad);
		e->bad = buf_steal(&m);
		e->origin = xstrndup("", 0);
		e->path = xstrndup("", 0);
		return 0;
	}
	hl = strcspn(rest + 2, "/?#");
	e->origin = xstrndup(s, (size_t)(rest + 2 + hl - s));
	for (char *q = e->origin; *q && *q != ':'; q++)
		*q = (char)((*q >= 'A' && *q <= 'Z') ? *q + 32 : *q);
	e->path = xstrndup(rest + 2 + hl, strcspn(rest + 2 + hl, "?#"));
	e->url = malloc(strlen(e->origin) + strlen(e->path) + 1);
	if (!e->url)
		ctl_oom();
	strcpy(e->url, e->origin);
	strcat(e->url, e->path);
	if (hl == 0)
		e->bad = xstrndup("http: no Host in request URL", 28);
	return 0;
}

static int parse_endpoints(char *const *urls, size_t n, struct ctl_endpoint **ret, struct buf *err)
{
	struct ctl_endpoint *eps = calloc(n ? n : 1, sizeof(*eps));

	if (!eps)
		ctl_oom();
	for (size_t i = 0; i < n; i++) {
		if (endpoint_parse(urls[i], &eps[i], err) < 0) {
			for (size_t j = 0; j < i; j++)
				endpoint_release(&eps[j]);
			free(eps);
			return -EINVAL;
		}
	}
	*ret = eps;
	return 0;
}

int ctl_client_new(const struct ctl_client_opts *o, char *const *urls, size_t n,
                   struct ctl_client **ret, struct buf *err)
{
	struct ctl_client *c = calloc(1, sizeof(*c));

	if (!c)
		ctl_oom();
	if (parse_endpoints(urls, n, &c->eps, err) < 0) {
		free(c);
		return -EINVAL;
	}
	c->n = n;
	c->o = *o;
	c->curl = curl_easy_init();
	if (!c->curl)
		ctl_oom();
	*ret = c;
	return 0;
}

void ctl_client_free(struct ctl_client *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n; i++)
		endpoint_release(&c->eps[i]);
	free(c->eps);
	curl_easy_cleanup(c->curl);
	free(c);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int ctl_client_set_endpoints(struct ctl_client *c, char *const *urls, size_t n, struct buf *err)
{
	struct ctl_endpoint *eps;
	bool same = n == c->n;

	if (parse_endpoints(urls, n, &eps, err) < 0)
		return -EINVAL;
	if (same && n > 0) {
		/* Go compares the sorted lists and keeps the pinned endpoint when they match */
		char **a = calloc(n, sizeof(*a)), **b = calloc(n, sizeof(*b));

		if (!a || !b)
			ctl_oom();
		for (size_t i = 0; i < n; i++)
			a[i] = c->eps[i].url, b[i] = eps[i].url;
		qsort(a, n, sizeof(*a), cmp_str);
		qsort(b, n, sizeof(*b), cmp_str);
		for (size_t i = 0; i < n && same; i++)
			same = !strcmp(a[i], b[i]);
		free(a);
		free(b);
	}
	if (same) {
		for (size_t i = 0; i < n; i++)
			endpoint_release(&eps[i]);
		free(eps);
		return 0;
	}
	for (size_t i = 0; i < c->n; i++)
		endpoint_release(&c->eps[i]);
	free(c->eps);
	c->eps = eps;
	c->n = n;
	c->pinned = 0;
	return 0;
}

void ctl_client_endpoints(const struct ctl_client *c, const char *sep, struct buf *out)
{
	for (size_t i = 0; i < c->n; i++) {
		if (i)
			cb_puts(out, sep);
		cb_puts(out, c->eps[i].url);
	}
}

/* ---- one HTTP exchange ---- */

static int cmp_param(const void *a, const void *b)
{
	return strcmp(((const struct ctl_param *)a)->key, ((const struct ctl_param *)b)->key);
}

/* url.Values.Encode: keys sorted (stable for equal keys), k=v joined by '&'. */
static void encode_params(struct buf *b, const struct ctl_param *ps, size_t n)
{
	struct ctl_param *s;

	if (!n)
		return;
	s = calloc(n, sizeof(*s));
	if (!s)
		ctl_oom();
	memcpy(s, ps, n * sizeof(*s));
	qsort(s, n, sizeof(*s), cmp_param);
	for (size_t i = 0; i < n; i++) {
		if (i)
			cb_putc(b, '&');
		ctl_query_escape(b, s[i].key);
		cb_putc(b, '=');
		ctl_query_escape(b, s[i].value);
	}
	free(s);
}

struct xfer {
	struct ctl_resp *resp;
	bool too_big;
	const struct ctl_req *req;
	CURL *curl;
};

static size_t on_body(char *p, size_t sz, size_t nm, void *ud)
{
	struct xfer *x = ud;
	size_t n = sz * nm;

	if (x->req->on_data) {
		long code = 0;

		curl_easy_getinfo(x->curl, CURLINFO_RESPONSE_CODE, &code);
		if (code / 100 == 2)
			return x->req->on_data(p, n, x->req->ud);
	}

	if (x->resp->body.len + n > CTL_MAX_BODY) {
		x->too_big = true;
		return 0;
	}
	cb_append(&x->resp->body, p, n);
	return n;
}

static size_t on_header(char *p, size_t sz, size_t nm, void *ud)
{
	struct xfer *x = ud;
	size_t n = sz * nm;
	static const char name[] = "x-etcd-index:";

	if (n > sizeof(name) - 1 && !strncasecmp(p, name, sizeof(name) - 1)) {
		const char *v = p + sizeof(name) - 1, *end = p + n;
		uint64_t idx = 0;
		bool any = false;

		while (v < end && (*v == ' ' || *v == '\t'))
			v++;
		while (v < end && *v >= '0' && *v <= '9')
			idx = idx * 10 + (uint64_t)(*v++ - '0'), any = true;
		if (any) {
			x->resp->index = idx;
			x->resp->has_index = true;
		}
	}
	return n;
}

static int64_t ns_to_ms_ceil(int64_t ns)
{
	return (ns + 999999) / 1000000;
}

/* "127.0.0.1:2379" for Go's "dial tcp ADDR" messages: the address actually tried when curl
 * knows it, otherwise host:port from the URL. */
static void dial_addr(struct ctl_client *c, const struct ctl_endpoint *ep, struct buf *b)
{
	char *ip = NULL;
	long port = 0;
	const char *hp = strstr(ep->origin, "://");

	curl_easy_getinfo(c->curl, CURLINFO_PRIMARY_IP, &ip);
	curl_easy_getinfo(c->curl, CURLINFO_PRIMARY_PORT, &port);
	hp = hp ? hp + 3 : ep->origin;
	if (ip && *ip) {
		if (strchr(ip, ':'))
			cb_printf(b, "[%s]", ip);
		else
			cb_puts(b, ip);
		if (!port) {
			const char *colon = strrchr(hp, ':');

			port = colon && !strchr(colon, ']')
			           ? strtol(colon + 1, NULL, 10)
			           : (!strncmp(ep->origin, "https", 5) ? 443 : 80);
		}
		cb_printf(b, ":%ld", port);
		return;
	}
	cb_puts(b, hp);
	if (!strrchr(hp, ':') || strchr(strrchr(hp, ':'), ']'))
		cb_puts(b, !strncmp(ep->origin, "https", 5) ? ":443" : ":80");
}

/* Lower-case first letter, as Go's syscall error strings are. */
static void put_errno_text(struct buf *b, int e)
{
	const char *s = strerror(e);

	if (*s >= 'A' && *s <= 'Z') {
		cb_putc(b, (char)(*s + 32));
		s++;
	}
	cb_puts(b, s);
}

enum attempt_result { ATT_OK, ATT_FAIL, ATT_DEADLINE };

/* One attempt against one endpoint. On failure `why` gets the Go error text. */
static enum attempt_result attempt(struct ctl_client *c, const struct ctl_endpoint *ep,
                                   const struct ctl_req *r, const char *query, const char *body,
                                   struct ctl_resp *resp, struct buf *why, bool *ret_conn)
{
	struct buf url = BUF_INIT, full = BUF_INIT;
	struct curl_slist *hdrs = NULL;
	struct xfer x = {resp, false, r, c->curl};
	char *path;
	int64_t now = flt_monotime_ns(), tmo = 0, dial = CTL_DIAL_TIMEOUT_NS;
	CURLcode rc;
	enum attempt_result res = ATT_OK;

	path = malloc(strlen(ep->path) + strlen(r->path) + 1);
	if (!path)
		ctl_oom();
	strcpy(path, ep->path);
	strcat(path, r->path);
	{
		char *canon = ctl_canonical_path(path);

		free(path);
		path = canon;
	}
	cb_puts(&url, ep->origin);
	ctl_path_escape(&url, path);
	free(path);
	if (query && *query) {
		cb_putc(&url, '?');
		cb_puts(&url, query);
	}
	if (c->o.debug) {
		struct buf line = BUF_INIT;

		cb_printf(&line, "cURL Command: curl -X %s %s", r->method, url.data);
		if (r->body) {
			cb_puts(&line, " -d ");
			ctl_go_quote(&line, body);
		}
		cb_putc(&line, '\n');
		ctl_write(stderr, &line);
		buf_release(&line);
	}
	*ret_conn = false;
	if (ep->bad) {
		cb_puts(why, ep->bad);
		res = ATT_FAIL;
		goto out;
	}

	resp->status = 0;
	resp->has_index = false;
	buf_clear(&resp->body);
	curl_easy_reset(c->curl);
	c->errbuf[0] = '\0';
	curl_easy_setopt(c->curl, CURLOPT_URL, url.data);
	curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, c->errbuf);
	curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c->curl, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(c->curl, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &x);
	curl_easy_setopt(c->curl, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c->curl, CURLOPT_HEADERDATA, &x);
	curl_easy_setopt(c->curl, CURLOPT_USERAGENT, "flotctl/" FLT_VERSION);
	if (!strcmp(r->method, "GET")) {
		curl_easy_setopt(c->curl, CURLOPT_HTTPGET, 1L);
	} else if (r->body) {
		curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
		curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, r->method);
		hdrs = curl_slist_append(hdrs, r->json ? "Content-Type: application/json"
		                                        : "Content-Type: application/x-www-form-urlencoded");
		hdrs = hdrs ? curl_slist_append(hdrs, "Expect:") : NULL;
		if (!hdrs)
			ctl_oom();
		curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, hdrs);
	} else {
		curl_easy_setopt(c->curl, CURLOPT_HTTPGET, 1L);
		curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, r->method);
	}
	if (c->o.ca_file)
		curl_easy_setopt(c->curl, CURLOPT_CAINFO, c->o.ca_file);
	if (c->o.cert_file)
		curl_easy_setopt(c->curl, CURLOPT_SSLCERT, c->o.cert_file);
	if (c->o.key_file)
		curl_easy_setopt(c->curl, CURLOPT_SSLKEY, c->o.key_file);
	if (c->o.username) {
		curl_easy_setopt(c->curl, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
		curl_easy_setopt(c->curl, CURLOPT_USERNAME, c->o.username);
		curl_easy_setopt(c->curl, CURLOPT_PASSWORD, c->o.password ? c->o.password : "");
	}
	/* Go: the header timeout covers non-wait requests; the total deadline covers everything
	 * that has one; dialing never takes longer than min(30s, total timeout). */
	if (!r->wait && c->o.timeout_ns > 0)
		tmo = c->o.timeout_ns;
	if (r->deadline) {
		int64_t left = r->deadline - now;

		if (left <= 0) {
			res = ATT_DEADLINE;
			goto out;
		}
		if (!tmo || left < tmo)
			tmo = left;
	}
	if (c->o.total_timeout_ns > 0 && c->o.total_timeout_ns < dial)
		dial = c->o.total_timeout_ns;
	if (tmo)
		curl_easy_setopt(c->curl, CURLOPT_TIMEOUT_MS, (long)ns_to_ms_ceil(tmo));
	curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT_MS, (long)ns_to_ms_ceil(dial));

	rc = curl_easy_perform(c->curl);
	if (rc == CURLE_OK) {
		curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &resp->status);
		goto out;
	}
	res = ATT_FAIL;
	switch (rc) {
	case CURLE_OPERATION_TIMEDOUT:
		if (r->deadline && flt_monotime_ns() >= r->deadline - 1000000) {
			res = ATT_DEADLINE;
			break;
		}
		cb_printf(why, "client: endpoint %s exceeded header timeout", ep->url);
		break;
	case CURLE_COULDNT_CONNECT: {
		long oserr = 0;

		curl_easy_getinfo(c->curl, CURLINFO_OS_ERRNO, &oserr);
		cb_puts(why, "dial tcp ");
		dial_addr(c, ep, why);
		cb_puts(why, ": connect: ");
		put_errno_text(why, oserr ? (int)oserr : ECONNREFUSED);
		*ret_conn = true;
		break;
	}
	case CURLE_COULDNT_RESOLVE_HOST: {
		const char *hp = strstr(ep->origin, "://");
		size_t hl;

		hp = hp ? hp + 3 : ep->origin;
		hl = hp[0] == '[' ? strcspn(hp, "]") + 1 : strcspn(hp, ":");
		cb_printf(why, "dial tcp: lookup %.*s: no such host", (int)hl, hp);
		*ret_conn = true;
		break;
	}
	case CURLE_GOT_NOTHING:
		cb_puts(why, "EOF");
		*ret_conn = true;
		break;
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
		cb_puts(why, "read tcp ");
		dial_addr(c, ep, why);
		cb_puts(why, ": connection reset by peer");
		*ret_conn = true;
		break;
	case CURLE_WRITE_ERROR:
		if (x.too_big) {
			cb_printf(why, "client: response from %s is larger than %u bytes", ep->url,
			          CTL_MAX_BODY);
			break;
		}
		/* fall through */
	default:
		cb_puts(why, c->errbuf[0] ? c->errbuf : curl_easy_strerror(rc));
		break;
	}
out:
	curl_slist_free_all(hdrs);
	buf_release(&url);
	buf_release(&full);
	return res;
}

int ctl_client_do(struct ctl_client *c, const struct ctl_req *r, struct ctl_resp *resp,
                  struct ctl_error *err)
{
	struct buf query = BUF_INIT, body = BUF_INIT;
	struct buf *causes;
	size_t ncause = 0;
	bool all_conn = true;
	int ret = -EIO;

	if (c->n == 0) {
		ctl_error_set(err, false, "client: no endpoints available");
		return -EIO;
	}
	encode_params(&query, r->query, r->nquery);
	if (r->json)
		cb_puts(&body, r->json);
	else
		encode_params(&body, r->form, r->nform);
	cb_puts(&body, ""); /* make body.data non-NULL even when empty */
	causes = calloc(c->n, sizeof(*causes));
	if (!causes)
		ctl_oom();

	for (size_t i = c->pinned; i < c->pinned + c->n; i++) {
		size_t k = i % c->n;
		struct ctl_endpoint *ep = &c->eps[k];
		struct buf *why = &causes[ncause];
		bool conn = false;
		enum attempt_result a;

		a = attempt(c, ep, r, query.data, body.data, resp, why, &conn);
		if (a == ATT_DEADLINE) {
			ctl_error_set(err, true, "context deadline exceeded");
			goto out;
		}
		if (a == ATT_OK && resp->status / 100 == 5) {
			if (resp->status == 500 || resp->status == 503)
				cb_printf(why, "client: etcd member %s has no leader", ep->url);
			else
				cb_printf(why, "client: etcd member %s returns server error [%s]",
				          ep->url, reason_phrase((int)resp->status));
			a = ATT_FAIL;
		}
		if (a == ATT_FAIL) {
			ncause++;
			all_conn = all_conn && conn;
			if (r->one_shot) {
				/* a create may have happened: report the first cause, do not retry
				 */
				c->pinned = (k + 1) % c->n;
				ctl_error_set(err, conn, "%s", causes[0].data);
				goto out;
			}
			continue;
		}
		c->pinned = k;
		ret = 0;
		goto out;
	}
	/* every endpoint failed: Go's ClusterError */
	buf_clear(&err->msg);
	buf_clear(&err->detail);
	err->cluster = true;
	err->conn = all_conn;
	cb_puts(&err->msg, "client: etcd cluster is unavailable or misconfigured");
	for (size_t i = 0; i < ncause; i++) {
		cb_printf(&err->msg, "; error #%zu: %s\n", i, causes[i].data);
		cb_printf(&err->detail, "error #%zu: %s\n", i, causes[i].data);
	}
out:
	for (size_t i = 0; i < c->n; i++)
		buf_release(&causes[i]);
	free(causes);
	buf_release(&query);
	buf_release(&body);
	return ret;
}
