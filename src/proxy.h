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
};

int proxy_new(struct ev_loop *loop, struct hcli *http, const struct proxy_config *cfg,
	      struct proxy **ret);
void proxy_free(struct proxy *p);
/* The web server's handler in proxy mode; `ud` is the struct proxy. */
void proxy_handle(void *ud, struct web_req *req);
/* A client URL of a member that answered last, for the local agent; NULL while none is known. */
const char *proxy_endpoint(const struct proxy *p);

#endif
