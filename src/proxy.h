/* Proxy mode (--proxy on|readonly): a node that holds no replica and forwards every client API
 * call to the cluster's members, as etcd's v2 proxy does. It learns the members' client URLs from
 * their peer URLs (GET /members on the peer port, refreshed periodically) and fails over to the
 * next member when one cannot be reached. */
#ifndef FLT_PROXY_H
#define FLT_PROXY_H

#include <stdbool.h>
#include <stddef.h>

struct ev_loop;
struct hcli;
struct proxy;
struct web_req;

struct proxy_config {
	const char *const *peer_urls; /* every member's peer URLs (borrowed for proxy_new) */
	size_t n_peer_urls;
	unsigned refresh_ms;      /* --proxy-refresh-interval */
	unsigned failure_wait_ms; /* --proxy-failure-wait: an endpoint that failed is skipped */
	bool readonly;            /* --proxy readonly: only GET/HEAD go through */
	/* Requests this node answers itself (its own machine's journals); optional. Returns true
	 * when it took the request. */
	bool (*local)(void *ud, struct web_req *req);
	void *local_ud;
};

int proxy_new(struct ev_loop *loop, struct hcli *http, const struct proxy_config *cfg,
              struct proxy **ret);
void proxy_free(struct proxy *p);
/* The web server's handler in proxy mode; `ud` is the struct proxy. */
void proxy_handle(void *ud, struct web_req *req);
/* Relay `req` to `url` (the whole URL, query included) and answer with what comes back: no
 * failover, 502 when it cannot be reached. For requests meant for one machine. */
void proxy_relay(struct hcli *http, struct web_req *req, const char *url);

#endif
