/* The client API of one node: routes HTTP requests to the etcd v2 keys API, members, stats,
 * health, version and metrics. `struct api` holds what the handlers need; the daemon owns it and
 * everything it points to. */
#ifndef FLT_API_H
#define FLT_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

struct ev_loop;
struct agent;
struct engine;
struct hcli;
struct node;
struct config_cluster;
struct store;
struct web_req;
struct web_header;
struct web_server;

struct api_stats {
	uint64_t requests;        /* every HTTP request routed */
	uint64_t gets, sets, deletes, watches;
	uint64_t get_fail, set_fail, delete_fail;
	int64_t start_time_ns;    /* realtime when the daemon started */
};

struct api {
	struct ev_loop *loop;
	struct store *store;      /* borrowed */
	struct node *node;        /* borrowed */
	struct engine *engine;    /* borrowed; NULL when the daemon runs no engine */
	struct agent *agent;      /* borrowed; NULL with --agent=false */
	struct hcli *http;        /* borrowed: relays to the leader and to other machines */
	struct web_server **servers; /* client listeners, for /metrics */
	size_t nservers;
	const char *name;         /* --name */
	const struct config_cluster *cluster; /* --initial-cluster, parsed; borrowed */
	const char *const *client_urls; /* --advertise-client-urls */
	size_t nclient_urls;
	const char *const *peer_urls;   /* --initial-advertise-peer-urls */
	size_t npeer_urls;
	char cluster_id_hex[17];  /* X-Etcd-Cluster-Id */
	char member_id_hex[17];
	unsigned watches_open;    /* watches currently waiting or streaming */
	unsigned max_watches;     /* limit on open watches (each holds a connection) */
	struct api_stats stats;
};

/* Where each member publishes its client URLs (comma-separated) under its hex id; hidden from
 * listings like every /_flotilla key. */
#define API_MEMBERS_DIR "/_flotilla/members"

/* The web server's handler; `ud` is the struct api. */
void api_handle(void *ud, struct web_req *req);

/* /v2/keys[/...]: `key` is the still-encoded path after "/v2/keys" ("" or "/..."). keys.c. */
void api_keys_handle(struct api *a, struct web_req *req, const char *key);

/* {"members":[...]}\n, etcd's member list (GET /v2/members, and /members on the peer port).
 * 0 or -ENOMEM. */
int api_members_json(struct api *a, struct buf *b);

/* Flotilla's own endpoints (/_flotilla/v1/...: heartbeats, journals, status); `path` is the
 * whole request path. cluster.c. */
void api_cluster_handle(struct api *a, struct web_req *req, const char *path);

/* The fleet v1 API (/fleet/v1 and its old name /v1-alpha): `rest` is the still-encoded path
 * after the prefix ("" or "/units/..."). fleet.c. */
void api_fleet_handle(struct api *a, struct web_req *req, const char *rest);

/* The headers every etcd v2 answer carries (CORS, Content-Type: application/json,
 * X-Etcd-Cluster-Id), plus X-Etcd-Index always and X-Raft-Index/X-Raft-Term when `raft` is true,
 * appended to `h` (room for API_MAX_HEADERS). Values live in `scratch`, which must stay alive
 * until the response is sent. Returns the number of headers written. */
#define API_MAX_HEADERS 12
size_t api_std_headers(struct api *a, struct web_header *h, uint64_t etcd_index, bool raft,
		       char scratch[3][24]);

/* Answer with etcd's CORS headers, `ctype` (if not NULL) and `extra` headers, then the body. */
void api_respond_plain(struct web_req *req, int status, const struct web_header *extra,
		       size_t nextra, const char *ctype, const char *body, size_t len);
/* Go's 405 answer, with `allow` as the Allow header. */
void api_method_not_allowed(struct web_req *req, const char *allow);

/* Answer with a JSON body and the standard headers (used by the small endpoints). */
void api_respond_json(struct api *a, struct web_req *req, int status, const struct buf *body);

#endif
