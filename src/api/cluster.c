/* Flotilla's own endpoints under /_flotilla/v1/ (engine/model.h): agents' heartbeats, which a
 * follower passes on to the leader, and each unit's journal and status, which live on the
 * machine that runs the unit: any node answers by relaying to that machine. */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "agent/agent.h"
#include "api/api.h"
#include "engine/engine.h"
#include "engine/model.h"
#include "http/web.h"
#include "node.h"
#include "proxy.h"
#include "store/store.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/util.h"

static void answer(struct web_req *req, int status, const char *msg)
{
	struct web_header h = {"Content-Type", "application/json"};
	struct buf b = BUF_INIT;

	buf_puts(&b, "{\"message\":");
	store_json_string(&b, msg, strlen(msg));
	buf_puts(&b, "}\n");
	web_respond(req, status, &h, 1, b.data ? b.data : "", b.len);
	buf_release(&b);
}

/* The value of a key in the local store, parsed; NULL if absent. */
static json_t *get_json(struct api *a, const char *key, bool recursive)
{
	struct store_result *res = NULL;
	json_t *v = NULL;

	if (store_get(a->store, key, recursive, true, flt_realtime_ns(), &res) == 0 &&
	    !res->err_code)
		v = json_loadb(res->json.data, res->json.len, 0, NULL);
	store_result_free(res);
	return v;
}

/* A member's first client URL, as it published it; malloc'd or NULL. */
static char *client_url_of(struct api *a, uint64_t id)
{
	struct buf key = BUF_INIT;
	json_t *v;
	char *url = NULL;
	const char *s;

	buf_printf(&key, API_MEMBERS_DIR "/%llx", (unsigned long long)id);
	v = key.data ? get_json(a, key.data, false) : NULL;
	s = json_string_value(json_object_get(json_object_get(v, "node"), "value"));
	if (s)
		url = strndup(s, strcspn(s, ","));
	json_decref(v);
	buf_release(&key);
	return url;
}

static void heartbeat(struct api *a, struct web_req *req)
{
	size_t len;
	const char *body = web_req_body(req, &len), *why = NULL;
	uint64_t leader;
	char *url;
	int r;

	if (strcmp(web_req_method(req), "POST")) {
		api_method_not_allowed(req, "POST");
		return;
	}
	if (a->engine && node_is_leader(a->node)) {
		r = engine_heartbeat(a->engine, body, len, &why);
		if (r == 0)
			web_respond(req, 204, NULL, 0, "", 0);
		else
			answer(req, r == FLT_EINVAL ? 400 : 503, why ? why : flt_strerror(r));
		return;
	}
	leader = node_leader_id(a->node);
	url = leader && leader != node_member_id(a->node) ? client_url_of(a, leader) : NULL;
	if (!url) {
		answer(req, 503, "no leader");
		return;
	}
	{
		struct buf u = BUF_INIT;

		buf_printf(&u, "%s" MODEL_HEARTBEAT_PATH, url);
		if (u.data)
			proxy_relay(a->http, req, u.data);
		else
			answer(req, 500, "out of memory");
		buf_release(&u);
	}
	free(url);
}

/* The machine a unit's journal/status lives on: ?machine=, else the machine reporting its
 * state, else the one it is scheduled to. malloc'd or NULL. */
static char *unit_machine(struct api *a, const char *unit, const char *query)
{
	struct buf key = BUF_INIT;
	unsigned given = 0;
	char *id = NULL;
	json_t *v;

	if (web_query_get(query, "machine", &given, &id) < 0)
		return NULL;
	if (given)
		return id;
	free(id);
	id = NULL;
	buf_printf(&key, MODEL_STATES "/%s", unit);
	v = key.data ? get_json(a, key.data, false) : NULL;
	{
		json_t *nodes = json_object_get(json_object_get(v, "node"), "nodes"), *n;
		size_t i;

		json_array_foreach(nodes, i, n)
		{
			const char *k = json_string_value(json_object_get(n, "key"));
			const char *slash = k ? strrchr(k, '/') : NULL;

			if (slash) {
				id = strdup(slash + 1);
				break;
			}
		}
	}
	json_decref(v);
	if (!id) {
		buf_clear(&key);
		buf_printf(&key, MODEL_SCHEDULE "/%s", unit);
		v = key.data ? get_json(a, key.data, false) : NULL;
		{
			const char *s =
			    json_string_value(json_object_get(json_object_get(v, "node"), "value"));
			json_t *o = s ? json_loads(s, 0, NULL) : NULL;
			const char *mid = json_string_value(json_object_get(o, "machineID"));

			if (mid)
				id = strdup(mid);
			json_decref(o);
		}
		json_decref(v);
	}
	buf_release(&key);
	return id;
}

static void per_machine(struct api *a, struct web_req *req, const char *path, const char *rest)
{
	const char *q = web_req_query(req);
	char *unit = web_unescape(rest, strlen(rest), false, NULL), *mid = NULL;
	struct buf key = BUF_INIT, url = BUF_INIT;
	json_t *v = NULL, *rec = NULL;
	const char *ep;

	if (!unit || !unit[0]) {
		answer(req, 400, "a unit name is required");
		goto out;
	}
	mid = unit_machine(a, unit, q);
	if (!mid) {
		answer(req, 404, "the unit runs on no machine");
		goto out;
	}
	if (a->agent && !strcmp(mid, agent_machine_id(a->agent))) {
		agent_handle_local(a->agent, req, path);
		goto out;
	}
	buf_printf(&key, MODEL_MACHINES "/%s", mid);
	v = key.data ? get_json(a, key.data, false) : NULL;
	rec = json_loads(
	    json_string_value(json_object_get(json_object_get(v, "node"), "value")) ?: "", 0, NULL);
	ep = json_string_value(json_object_get(rec, "endpoint"));
	if (!ep || !ep[0]) {
		answer(req, 503, "the unit's machine is not reachable (not registered)");
		goto out;
	}
	/* ?machine= tells the next hop (possibly a proxy) to answer from its own agent */
	buf_printf(&url, "%s%s?machine=%s%s%s", ep, path, mid, q[0] ? "&" : "", q);
	if (url.data)
		proxy_relay(a->http, req, url.data);
out:
	json_decref(v);
	json_decref(rec);
	buf_release(&key);
	buf_release(&url);
	free(unit);
	free(mid);
}

void api_cluster_handle(struct api *a, struct web_req *req, const char *path)
{
	if (!strcmp(path, MODEL_HEARTBEAT_PATH)) {
		heartbeat(a, req);
	} else if (!strncmp(path, MODEL_JOURNAL_PATH, strlen(MODEL_JOURNAL_PATH))) {
		per_machine(a, req, path, path + strlen(MODEL_JOURNAL_PATH));
	} else if (!strncmp(path, MODEL_STATUS_PATH, strlen(MODEL_STATUS_PATH))) {
		per_machine(a, req, path, path + strlen(MODEL_STATUS_PATH));
	} else {
		answer(req, 404, "not found");
	}
}
