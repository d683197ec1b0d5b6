/* Routing of client requests, and the small endpoints etcd 3.4 serves beside the keys API:
 * /version, /health, /v2/machines, /v2/members, /v2/stats/{self,store,leader} and /metrics
 * (Prometheus text). Shapes, content types and headers follow etcd's (fixtures/etcd-v2/08x). */
#include "api/api.h"

#include <dirent.h>
#include <jansson.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "http/web.h"
#include "node.h"
#include "store/store.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/util.h"

#define CORS_HEADERS                                                                               \
	{"Access-Control-Allow-Headers", "accept, content-type, authorization"},                   \
		{"Access-Control-Allow-Methods", "POST, GET, OPTIONS, PUT, DELETE"},               \
		{"Access-Control-Allow-Origin", "*"}

size_t api_std_headers(struct api *a, struct web_header *h, uint64_t etcd_index, bool raft,
		       char scratch[3][24])
{
	static const struct web_header cors[] = {CORS_HEADERS};
	size_t n = 0;

	for (size_t i = 0; i < ARRAY_SIZE(cors); i++)
		h[n++] = cors[i];
	h[n++] = (struct web_header){"Content-Type", "application/json"};
	h[n++] = (struct web_header){"X-Etcd-Cluster-Id", a->cluster_id_hex};
	snprintf(scratch[0], 24, "%llu", (unsigned long long)etcd_index);
	h[n++] = (struct web_header){"X-Etcd-Index", scratch[0]};
	if (raft) {
		snprintf(scratch[1], 24, "%llu", (unsigned long long)node_commit_index(a->node));
		snprintf(scratch[2], 24, "%llu", (unsigned long long)node_term(a->node));
		h[n++] = (struct web_header){"X-Raft-Index", scratch[1]};
		h[n++] = (struct web_header){"X-Raft-Term", scratch[2]};
	}
	return n;
}

void api_respond_plain(struct web_req *req, int status, const struct web_header *extra,
		       size_t nextra, const char *ctype, const char *body, size_t len)
{
	struct web_header h[10] = {CORS_HEADERS};
	size_t n = 3;

	/* Go writes headers sorted by name: Content-Type before Location, X-... */
	if (ctype)
		h[n++] = (struct web_header){"Content-Type", ctype};
	for (size_t i = 0; i < nextra && n < ARRAY_SIZE(h); i++)
		h[n++] = extra[i];
	web_respond(req, status, h, n, body, len);
}

void api_method_not_allowed(struct web_req *req, const char *allow)
{
	static const char text[] = "Method Not Allowed\n";
	const struct web_header extra[] = {{"X-Content-Type-Options", "nosniff"}};
	struct web_header h[] = {CORS_HEADERS,
				 {"Allow", allow},
				 {"Content-Type", "text/plain; charset=utf-8"},
				 extra[0]};

	web_respond(req, 405, h, ARRAY_SIZE(h), text, sizeof(text) - 1);
}

/* Answer with the given content type and optionally the cluster id. */
static void respond(struct api *a, struct web_req *req, int status, const char *ctype,
		    bool cluster_id, const char *body, size_t len)
{
	const struct web_header id = {"X-Etcd-Cluster-Id", a->cluster_id_hex};

	api_respond_plain(req, status, &id, cluster_id, ctype, body, len);
}

void api_respond_json(struct api *a, struct web_req *req, int status, const struct buf *body)
{
	respond(a, req, status, "application/json", true, body->data ? body->data : "", body->len);
}

static void not_found(struct web_req *req)
{
	static const char text[] = "404 page not found\n";
	const struct web_header nosniff = {"X-Content-Type-Options", "nosniff"};

	api_respond_plain(req, 404, &nosniff, 1, "text/plain; charset=utf-8", text,
			  sizeof(text) - 1);
}

/* Go's time.Duration.String() for a positive duration. */
static int put_go_duration(struct buf *b, int64_t ns)
{
	int64_t h = ns / 3600000000000LL, m = ns / 60000000000LL % 60;
	int64_t s = ns / 1000000000 % 60, frac = ns % 1000000000;
	char fr[16] = "";
	int r = 0;

	if (ns < 1000000000)
		return buf_printf(b, "%.6gms", (double)ns / 1e6);
	if (frac) {
		int len = snprintf(fr, sizeof(fr), ".%09lld", (long long)frac);

		while (len > 1 && fr[len - 1] == '0')
			fr[--len] = '\0';
	}
	if (h)
		r = buf_printf(b, "%lldh", (long long)h);
	if (r >= 0 && (h || m))
		r = buf_printf(b, "%lldm", (long long)m);
	return r < 0 ? r : buf_printf(b, "%lld%ss", (long long)s, fr);
}

static void json_str_list(struct buf *b, const char *const *v, size_t n)
{
	buf_putc(b, '[');
	for (size_t i = 0; i < n; i++) {
		if (i)
			buf_putc(b, ',');
		store_json_string(b, v[i], strlen(v[i]));
	}
	buf_putc(b, ']');
}

/* The client URLs member `id` published in the store (see API_MEMBERS_DIR), into `ret`. */
static void published_urls(struct api *a, uint64_t id, struct strlist *ret)
{
	struct store_result *res = NULL;
	struct buf key = BUF_INIT;
	json_t *j;

	if (buf_printf(&key, API_MEMBERS_DIR "/%llx", (unsigned long long)id) < 0 ||
	    store_get(a->store, key.data, false, false, 0, &res) < 0 || res->err_code) {
		store_result_free(res);
		buf_release(&key);
		return;
	}
	j = json_loadb(res->json.data, res->json.len, 0, NULL);
	if (j && json_is_string(json_object_get(json_object_get(j, "node"), "value")))
		(void)strlist_split(ret, json_string_value(
						 json_object_get(json_object_get(j, "node"), "value")));
	json_decref(j);
	store_result_free(res);
	buf_release(&key);
}

/* One member as etcd lists it: client URLs are this member's own, or what another member
 * published in the store once it found a leader. */
static void member_json(struct api *a, struct buf *b, uint64_t id, const char *name,
			const char *peer_urls)
{
	struct strlist peers = {0}, clients = {0};
	bool self = id == node_member_id(a->node);

	buf_printf(b, "{\"id\":\"%llx\",\"name\":", (unsigned long long)id);
	store_json_string(b, name, strlen(name));
	buf_puts(b, ",\"peerURLs\":");
	if (peer_urls && strlist_split(&peers, peer_urls) == 0)
		json_str_list(b, (const char *const *)peers.v, peers.n);
	else
		json_str_list(b, a->peer_urls, a->npeer_urls);
	strlist_release(&peers);
	buf_puts(b, ",\"clientURLs\":");
	if (self) {
		json_str_list(b, a->client_urls, a->nclient_urls);
	} else {
		published_urls(a, id, &clients);
		json_str_list(b, (const char *const *)clients.v, clients.n);
		strlist_release(&clients);
	}
	buf_putc(b, '}');
}

/* etcd's error answer of the members API: {"message":...}. */
static void members_error(struct api *a, struct web_req *req, int status, const char *msg)
{
	struct buf b = BUF_INIT;

	buf_puts(&b, "{\"message\":");
	store_json_string(&b, msg, strlen(msg));
	buf_puts(&b, "}");
	respond(a, req, status, "application/json", true, b.data, b.len);
	buf_release(&b);
}

/* A pending POST/PUT/DELETE: answered when its membership record is applied. */
struct mreq {
	struct api *a;
	struct web_req *req;
	int status; /* on success */
	uint64_t id;
	char *urls;
};

static void change_done(void *ctx, int err, const struct store_result *res, uint64_t index)
{
	struct mreq *m = ctx;
	struct buf b = BUF_INIT;

	(void)index;
	if (err < 0 || !res || res->err_code) {
		members_error(m->a, m->req, 500, "Internal Server Error");
	} else if (m->status == 201) {
		member_json(m->a, &b, m->id, "", m->urls);
		buf_putc(&b, '\n');
		api_respond_json(m->a, m->req, 201, &b);
	} else {
		respond(m->a, m->req, 204, NULL, true, "", 0);
	}
	buf_release(&b);
	free(m->urls);
	free(m);
}

/* The peerURLs of a POST/PUT body, comma-joined into `out`; false (answered) when bad. */
static bool parse_peer_urls(struct api *a, struct web_req *req, struct buf *out)
{
	const char *ct = web_req_header(req, "Content-Type"), *body;
	json_t *j, *urls;
	size_t len;
	bool ok = true;

	if (!ct || strncmp(ct, "application/json", 16)) {
		struct buf msg = BUF_INIT;

		buf_printf(&msg, "Bad Content-Type %s, accept application/json", ct ? ct : "");
		members_error(a, req, 415, msg.data);
		buf_release(&msg);
		return false;
	}
	body = web_req_body(req, &len);
	j = json_loadb(body, len, 0, NULL);
	urls = json_object_get(j, "peerURLs");
	if (!json_is_array(urls) || !json_array_size(urls)) {
		members_error(a, req, 400, "invalid peerURLs");
		json_decref(j);
		return false;
	}
	for (size_t i = 0; ok && i < json_array_size(urls); i++) {
		const char *u = json_string_value(json_array_get(urls, i));

		if (!u || !*u || strchr(u, ','))
			ok = false;
		else
			buf_printf(out, "%s%s", i ? "," : "", u);
	}
	json_decref(j);
	if (!ok || !node_urls_valid(out->data)) {
		struct buf msg = BUF_INIT;

		buf_printf(&msg, "URL scheme must be http, https, unix, or unixs: %s",
			   out->data ? out->data : "");
		members_error(a, req, 400, msg.data);
		buf_release(&msg);
		return false;
	}
	return true;
}

static void members_change(struct api *a, struct web_req *req, const char *rest)
{
	const char *m = web_req_method(req);
	struct buf urls = BUF_INIT, msg = BUF_INIT;
	struct mreq *q;
	uint64_t id = 0;
	char *end = NULL;
	int r;

	if (!strcmp(m, "POST") ? rest[0] && strcmp(rest, "/") : rest[0] != '/' || !rest[1]) {
		not_found(req);
		return;
	}
	if (strcmp(m, "POST")) {
		id = strtoull(rest + 1, &end, 16);
		if (*end || !id) {
			buf_printf(&msg, "No such member: %s", rest + 1);
			members_error(a, req, 404, msg.data);
			buf_release(&msg);
			return;
		}
	}
	if (strcmp(m, "DELETE") && !parse_peer_urls(a, req, &urls)) {
		buf_release(&urls);
		return;
	}
	q = calloc(1, sizeof(*q));
	if (!q || (urls.data && !(q->urls = strdup(urls.data)))) {
		free(q);
		buf_release(&urls);
		members_error(a, req, 500, "Internal Server Error");
		return;
	}
	q->a = a;
	q->req = req;
	q->status = !strcmp(m, "POST") ? 201 : 204;
	if (!strcmp(m, "POST"))
		r = node_add_member(a->node, urls.data, &q->id, change_done, q);
	else if (!strcmp(m, "PUT"))
		r = node_update_member(a->node, id, urls.data, change_done, q);
	else
		r = node_remove_member(a->node, id, change_done, q);
	buf_release(&urls);
	if (r >= 0)
		return;
	free(q->urls);
	free(q);
	/* etcd's answers (etcdserver/api/v2http/client.go) */
	if (r == -EEXIST) {
		members_error(a, req, 409, "etcdserver: peerURL exists");
	} else if (r == -ENOENT) {
		buf_printf(&msg, "No such member: %s", rest + 1);
		members_error(a, req, 404, msg.data);
	} else if (r == -EIDRM) {
		buf_printf(&msg, "Member permanently removed: %s", rest + 1);
		members_error(a, req, 410, msg.data);
	} else if (r == FLT_EINVAL) {
		members_error(a, req, 400, "invalid peerURLs");
	} else {
		members_error(a, req, 500, "Internal Server Error");
	}
	buf_release(&msg);
}

/* {"members":[...]}\n as etcd lists them, on the client API and on the peer port. */
int api_members_json(struct api *a, struct buf *b)
{
	struct node_members ms = {0};
	int r = node_members_get(a->node, &ms);

	if (r < 0)
		return r;
	buf_puts(b, "{\"members\":[");
	if (!ms.n) /* this node alone (no --initial-cluster given) */
		member_json(a, b, node_member_id(a->node), a->name, NULL);
	for (size_t i = 0; i < ms.n; i++) {
		if (i)
			buf_putc(b, ',');
		member_json(a, b, ms.v[i].id, ms.v[i].name, ms.v[i].peer_urls);
	}
	node_members_release(&ms);
	return buf_puts(b, "]}\n");
}

static void handle_members(struct api *a, struct web_req *req, const char *rest)
{
	const char *m = web_req_method(req);
	struct node_members ms = {0};
	struct buf b = BUF_INIT;

	if (!strcmp(m, "POST") || !strcmp(m, "PUT") || !strcmp(m, "DELETE")) {
		members_change(a, req, rest);
		return;
	}
	if (strcmp(m, "GET") && strcmp(m, "HEAD")) {
		api_method_not_allowed(req, "GET,HEAD,POST,PUT,DELETE");
		return;
	}
	if (!strcmp(rest, "") || !strcmp(rest, "/")) {
		if (api_members_json(a, &b) < 0) {
			buf_release(&b);
			members_error(a, req, 500, "Internal Server Error");
			return;
		}
		api_respond_json(a, req, 200, &b);
		buf_release(&b);
		return;
	}
	if (node_members_get(a->node, &ms) < 0) {
		members_error(a, req, 500, "Internal Server Error");
		return;
	}
	if (!strcmp(rest, "/leader")) {
		size_t i = 0;
		uint64_t leader = node_leader_id(a->node);

		while (i < ms.n && ms.v[i].id != leader)
			i++;
		if (!leader || (ms.n && i == ms.n) ||
		    (!ms.n && leader != node_member_id(a->node))) {
			/* etcd: 503 with this text while there is no leader */
			api_respond_plain(req, 503, NULL, 0, "text/plain; charset=utf-8",
					  "no leader\n", 10);
			node_members_release(&ms);
			buf_release(&b);
			return;
		}
		if (ms.n)
			member_json(a, &b, ms.v[i].id, ms.v[i].name, ms.v[i].peer_urls);
		else
			member_json(a, &b, leader, a->name, NULL);
		buf_putc(&b, '\n');
	} else {
		node_members_release(&ms);
		buf_release(&b);
		not_found(req);
		return;
	}
	node_members_release(&ms);
	api_respond_json(a, req, 200, &b);
	buf_release(&b);
}

static void handle_stats(struct api *a, struct web_req *req, const char *which)
{
	struct buf b = BUF_INIT;
	int64_t now = flt_realtime_ns();

	if (!strcmp(which, "self")) {
		buf_puts(&b, "{\"name\":");
		store_json_string(&b, a->name, strlen(a->name));
		buf_printf(&b, ",\"id\":\"%s\",\"state\":\"%s\",\"startTime\":\"", a->member_id_hex,
			   node_is_leader(a->node) ? "StateLeader" : "StateFollower");
		store_json_time(&b, a->stats.start_time_ns);
		buf_printf(&b, "\",\"leaderInfo\":{\"leader\":\"%llx\",\"uptime\":\"",
			   (unsigned long long)node_leader_id(a->node));
		put_go_duration(&b, now - a->stats.start_time_ns);
		buf_puts(&b, "\",\"startTime\":\"");
		store_json_time(&b, a->stats.start_time_ns);
		buf_puts(&b, "\"},\"recvAppendRequestCnt\":0,\"sendAppendRequestCnt\":0}");
	} else if (!strcmp(which, "store")) {
		store_stats_json(a->store, &b);
	} else if (!strcmp(which, "leader")) {
		if (!node_is_leader(a->node)) {
			/* etcd answers a follower's /v2/stats/leader with 403 */
			api_respond_plain(req, 403, NULL, 0, "application/json",
					  "{\"message\":\"not current leader\"}", 32);
			return;
		}
		buf_printf(&b, "{\"leader\":\"%s\",\"followers\":{}}", a->member_id_hex);
	} else {
		not_found(req);
		return;
	}
	respond(a, req, 200, "application/json", false, b.data, b.len);
	buf_release(&b);
}

static long count_open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	long n = 0;

	if (!d)
		return -1;
	while (readdir(d))
		n++;
	closedir(d);
	return n - 3; /* ".", ".." and the directory's own fd */
}

static long rss_bytes(void)
{
	FILE *f = fopen("/proc/self/statm", "re");
	long pages = 0, rss = 0;

	if (!f)
		return -1;
	if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
		rss = -1;
	fclose(f);
	return rss < 0 ? -1 : rss * sysconf(_SC_PAGESIZE);
}

static void metric(struct buf *b, const char *name, const char *type, const char *help, double v)
{
	buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name, v);
}

static void handle_metrics(struct api *a, struct web_req *req)
{
	struct node_stats ns;
	struct buf b = BUF_INIT;
	unsigned conns = 0;

	node_get_stats(a->node, &ns);
	for (size_t i = 0; i < a->nservers; i++)
		conns += web_conn_count(a->servers[i]);
	metric(&b, "etcd_server_has_leader", "gauge", "Whether a leader exists (1) or not (0).",
	       node_is_leader(a->node));
	metric(&b, "etcd_server_is_leader", "gauge", "Whether this member is the leader.",
	       node_is_leader(a->node));
	metric(&b, "etcd_server_proposals_committed_total", "gauge",
	       "The total number of consensus proposals committed.",
	       (double)node_commit_index(a->node));
	metric(&b, "etcd_server_proposals_applied_total", "gauge",
	       "The total number of consensus proposals applied.",
	       (double)node_applied_index(a->node));
	metric(&b, "etcd_server_proposals_failed_total", "counter",
	       "The total number of failed proposals seen.", (double)ns.proposals_failed);
	metric(&b, "etcd_disk_wal_fsync_total", "counter", "fdatasync calls made by the WAL.",
	       (double)ns.syncs);
	metric(&b, "flotilla_wal_entries_synced_total", "counter",
	       "Log entries made durable (entries per fsync shows group commit at work).",
	       (double)ns.entries_synced);
	metric(&b, "flotilla_wal_bytes_total", "counter", "Bytes written to the WAL.",
	       (double)ns.wal_bytes);
	metric(&b, "flotilla_snapshots_total", "counter", "Snapshots of the store saved.",
	       (double)ns.snapshots);
	metric(&b, "flotilla_store_index", "gauge", "The etcd index of the store.",
	       (double)store_index(a->store));
	metric(&b, "flotilla_http_requests_total", "counter", "HTTP requests routed.",
	       (double)a->stats.requests);
	metric(&b, "flotilla_http_connections", "gauge", "Open client connections.", conns);
	metric(&b, "flotilla_watches", "gauge", "Watches open.", a->watches_open);
	metric(&b, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
	       (double)rss_bytes());
	metric(&b, "process_open_fds", "gauge", "Number of open file descriptors.",
	       (double)count_open_fds());
	metric(&b, "process_start_time_seconds", "gauge",
	       "Start time of the process since unix epoch in seconds.",
	       (double)a->stats.start_time_ns / 1e9);
	respond(a, req, 200, "text/plain; version=0.0.4; charset=utf-8", false, b.data, b.len);
	buf_release(&b);
}

static bool is_get(struct web_req *req)
{
	const char *m = web_req_method(req);

	return !strcmp(m, "GET") || !strcmp(m, "HEAD");
}

void api_handle(void *ud, struct web_req *req)
{
	struct api *a = ud;
	const char *path = web_req_path(req);
	struct buf b = BUF_INIT;

	a->stats.requests++;
	if (!strncmp(path, "/v2/keys", 8) && (path[8] == '\0' || path[8] == '/')) {
		api_keys_handle(a, req, path + 8);
		return;
	}
	if (!strcmp(web_req_method(req), "OPTIONS")) {
		/* CORS preflight, as etcd's handler answers it. */
		respond(a, req, 200, "text/plain; charset=utf-8", false, "", 0);
		return;
	}
	if (!strncmp(path, "/_flotilla/v1/", 14)) {
		api_cluster_handle(a, req, path);
		return;
	}
	if (!strncmp(path, "/fleet/v1/", 10) || !strcmp(path, "/fleet/v1")) {
		api_fleet_handle(a, req, path + 9);
		return;
	}
	if (!strncmp(path, "/v1-alpha/", 10) || !strcmp(path, "/v1-alpha")) {
		api_fleet_handle(a, req, path + 9);
		return;
	}
	if (!strncmp(path, "/v2/members", 11) && (path[11] == '\0' || path[11] == '/')) {
		handle_members(a, req, path + 11);
		return;
	}
	if (!is_get(req)) {
		if (!strcmp(path, "/version") || !strcmp(path, "/health") ||
		    !strcmp(path, "/v2/machines") || !strncmp(path, "/v2/stats/", 10) ||
		    !strcmp(path, "/metrics"))
			api_method_not_allowed(req, "GET,HEAD");
		else
			not_found(req);
		return;
	}
	if (!strcmp(path, "/version")) {
		/* The API level flotilla implements; `flotillad --version` names flotilla's own. */
		static const char v[] = "{\"etcdserver\":\"3.4.23\",\"etcdcluster\":\"3.4.0\"}";

		respond(a, req, 200, "application/json", false, v, sizeof(v) - 1);
	} else if (!strcmp(path, "/health")) {
		/* Healthy while the member knows a leader, as etcd judges it. */
		bool ok = node_leader_id(a->node) != 0;
		const char *h = ok ? "{\"health\":\"true\"}" : "{\"health\":\"false\"}";

		respond(a, req, ok ? 200 : 503, "text/plain; charset=utf-8", false, h, strlen(h));
	} else if (!strcmp(path, "/v2/machines")) {
		for (size_t i = 0; i < a->nclient_urls; i++)
			buf_printf(&b, "%s%s", i ? ", " : "", a->client_urls[i]);
		respond(a, req, 200, "text/plain; charset=utf-8", false, b.data ? b.data : "",
			b.len);
	} else if (!strncmp(path, "/v2/stats/", 10)) {
		handle_stats(a, req, path + 10);
	} else if (!strcmp(path, "/metrics")) {
		handle_metrics(a, req);
	} else {
		not_found(req);
	}
	buf_release(&b);
}
