/* etcd's v2 discovery protocol (--discovery URL): members find each other through a directory on
 * any v2 keys endpoint (our own daemon or a real etcd). Runs once at start, before the loop serves
 * anything, so it may block; the outcome is kept in the data dir so a restart needs no discovery
 * service. */
#ifndef FLT_DISCOVERY_H
#define FLT_DISCOVERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct discovery_result {
	char
	    *initial_cluster; /* owned: "name=url,name=url" of the cluster's first `size` members */
	bool proxy;           /* the cluster was full: run as a proxy of those members */
	char *token;          /* owned: the discovery URL the cluster was found at (its token) */
};

/* Register `name` (id `member_id`, peer URLs `peer_urls`, comma-separated) under `url` and wait
 * until the cluster size read from `url`/_config/size is reached, as etcd does. A node that finds
 * the cluster already full becomes a proxy when `fallback_proxy`, else fails. The result is
 * saved in `data_dir`/discovery and read from there on later starts. Returns 0, or a negative
 * errno with a message in `err`. */
int discovery_run(const char *url, const char *name, const char *peer_urls, uint64_t member_id,
                  bool fallback_proxy, const char *data_dir, struct discovery_result *ret,
                  char *err, size_t errlen);
void discovery_result_release(struct discovery_result *r);

#endif
