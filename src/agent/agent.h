/* The agent: every node's link between the cluster and the runner (runner.h). It registers this
 * machine by heartbeats to the leader, follows the units and the schedule through the etcd v2
 * API of a member (its own client URL on a member, a member's on a proxy: one code path), tells
 * the runner what should run here, publishes what the runner reports under /_flotilla/states,
 * and fences: a machine cut off from the cluster for longer than its TTL stops its units. */
#ifndef FLT_AGENT_H
#define FLT_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

struct ev_loop;
struct hcli;
struct agent;
struct runner;
struct web_req;

struct agent_config {
	const char *machine_id;
	const char *public_ip;
	const char *metadata; /* "k=v,k2=v2" */
	const char *endpoint; /* this node's advertised client URL (journals are fetched there) */
	unsigned ttl_ms;      /* heartbeat silence after which the leader declares us dead */
	bool fence;           /* stop our units when cut off for longer than fence_ms */
	unsigned fence_ms;    /* 0: ttl_ms; the daemon adds an election's worth to the TTL so that
	                       * a leader election does not stop every unit of the cluster */
	uint64_t memory;      /* bytes units may use (0: detected) */
	uint64_t cpus;        /* milli-CPUs (0: detected) */
	const char *hostname;
	/* Where the agent speaks the etcd API: called before every request. */
	const char *(*api_url)(void *ud);
	void *api_url_ud;
};

/* The runner is borrowed (the daemon owns it). */
int agent_new(struct ev_loop *loop, struct hcli *http, struct runner *runner,
              const struct agent_config *cfg, struct agent **ret);
void agent_free(struct agent *a);
const char *agent_machine_id(const struct agent *a);

/* What the runner reports about a unit (its struct runner_cb ends here; st NULL: forgotten). */
struct runner_state;
void agent_runner_state(struct agent *a, const char *unit, const struct runner_state *st);

/* Serve MODEL_JOURNAL_PATH / MODEL_STATUS_PATH requests meant for this machine. */
void agent_handle_local(struct agent *a, struct web_req *req, const char *path);

/* The machine id: --machine-id; else the one kept in `data_dir`/machine-id; else, on first
 * start, /etc/machine-id if no other flotillad on this host uses it (a host-wide lock), or a
 * new random one. Kept in the data dir so it never changes. Returns a malloc'd string, NULL with
 * a message in err. */
char *agent_machine_id_load(const char *flag, const char *data_dir, char *err, size_t errlen);
/* The IPv4 address of the default route's interface, or "127.0.0.1". malloc'd. */
char *agent_default_ip(void);

#endif
