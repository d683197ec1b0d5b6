/* The log path: every write to the store is a Raft log entry that is persisted (group-committed
 * with one fdatasync per loop turn), replicated to a majority of the members, committed and then
 * applied to the store, in index order, on every replica. Any member may propose: a follower
 * forwards to the leader. A one-member cluster commits as soon as an entry is on disk. */
#ifndef FLT_NODE_H
#define FLT_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

struct ev_loop;
struct node;
struct store;
struct store_result;

/* One voter of the static initial cluster (--initial-cluster). */
struct node_member {
	uint64_t id;
	const char *name;      /* borrowed for node_new */
	const char *peer_urls; /* comma-separated, borrowed for node_new */
};

struct node_config {
	const char *data_dir;    /* holds wal/ and snap/ */
	uint64_t snapshot_count; /* applied entries between snapshots (etcd's --snapshot-count) */
	uint64_t member_id;
	uint64_t cluster_id;
	/* The Raft cluster. No members, or only this one: a one-member cluster that opens no
	 * peer port. */
	const struct node_member *members;
	size_t n_members;
	const char *const *listen_peer_urls; /* borrowed for node_new */
	size_t n_listen_peer_urls;
	unsigned heartbeat_ms; /* one Raft tick; 0: 100 */
	unsigned election_ms;  /* election timeout T (random in [T, 2T)); 0: 1000 */
	/* --initial-cluster-state existing: with nothing on disk, start without voters and learn
	 * the log (and the configuration) from the leader, instead of bootstrapping `members`. */
	bool join;
	const char *token; /* --initial-cluster-token, for ids of added members; borrowed */
	/* Listen on the peer URLs even as a one-member cluster (they were asked for: proxies
	 * read /members there, and members may be added later). */
	bool listen_alone;
	/* Answers HTTP GETs on the peer port (etcd's /members); optional. */
	int (*peer_http_get)(void *ud, const char *path, struct buf *body);
	void *peer_http_ud;
};

/* Open (or create) the data dir, load the newest snapshot into `store` (borrowed, must outlive the
 * node), replay the WAL after it. A corrupt WAL or snapshot fails with FLT_ECORRUPT after logging
 * the file and offset; a torn last record is truncated (and logged). */
int node_new(struct ev_loop *loop, const struct node_config *cfg, struct store *store,
             struct node **ret);
/* Flush what is pending (so nothing acknowledged-to-be is dropped silently: pending proposals
 * fail with FLT_ESTOPPED) and free. Accepts NULL. */
void node_free(struct node *n);

/* Called when the entry is applied (err 0, `res` is the store's result, borrowed for the call)
 * or can no longer be (err < 0, res NULL). `raft_index` is the entry's log index. */
typedef void (*node_done_fn)(void *ctx, int err, const struct store_result *res,
                             uint64_t raft_index);

/* Propose one store command (encoded by store_cmd_encode). `data` is copied. The callback runs
 * from the loop, never from inside this call. Returns 0, -ENOMEM, or FLT_ENOTLEADER. */
int node_propose(struct node *n, const void *data, size_t len, node_done_fn cb, void *ctx);

/* Linearizable read barrier (etcd's quorum=true): `cb` runs once every entry committed before
 * the call is applied. Same callback contract as node_propose, with res NULL. */
int node_read_barrier(struct node *n, node_done_fn cb, void *ctx);

uint64_t node_term(const struct node *n);
uint64_t node_commit_index(const struct node *n);
uint64_t node_applied_index(const struct node *n);
bool node_is_leader(const struct node *n);
uint64_t node_member_id(const struct node *n);
uint64_t node_cluster_id(const struct node *n);
/* The member this node believes leads (itself included), 0 while there is none. */
uint64_t node_leader_id(const struct node *n);
/* Voters in the configuration (1 for a one-member cluster). */
size_t node_cluster_size(const struct node *n);
/* Hand leadership to the most up-to-date other voter before a clean stop (etcd does this on
 * SIGTERM). Returns 0 when a transfer started (poll node_is_leader), FLT_ENOTLEADER when this
 * node does not lead or has nobody to hand over to. */
int node_transfer_leadership(struct node *n);

/* ---- Runtime membership (etcd's /v2/members) ----
 *
 * The membership lives in the store, so it is replicated, survives snapshots and reaches a
 * joining member with the rest of the log:
 *   /_flotilla/peers/<hexid>    peer URLs of a member added (or updated) at run time
 *   /_flotilla/removed/<hexid>  a removed member (ids are never reused, as in etcd)
 *   /_flotilla/names/<hexid>    the name a member announced when it started
 * The members are the initial cluster plus the added ones minus the removed ones. Changes are
 * ordinary store writes (node_propose: any member may make them, followers forward). Every
 * member reconciles on each tick: it tells its peer transport the members' URLs, and the leader
 * turns the difference between the members and the Raft voters into conf changes, one at a
 * time (raft_propose_conf_change), retrying after leader changes. A removed voter is taken out
 * of the configuration one election timeout after its removal record applied on the leader, so
 * that the member itself usually sees the record too: a member that applies its own removal
 * reports it through node_removed (the daemon then stops). */
struct node_member_info {
	uint64_t id;
	char *name;      /* owned; "" while a member added at run time has not started */
	char *peer_urls; /* owned, comma-separated */
};
struct node_members {
	struct node_member_info *v; /* owned, initial members first, then added ones by id */
	size_t n;
};
/* The current members. 0 or -ENOMEM. */
int node_members_get(struct node *n, struct node_members *ret);
void node_members_release(struct node_members *m);
/* Whether `urls` is a valid comma-separated list of http(s)://HOST:PORT URLs (etcd's rules,
 * simplified: scheme http or https, a host and port, no path). */
bool node_urls_valid(const char *urls);

/* Add a member reachable at `urls` (comma-separated); its id (config_member_id of the URLs and
 * the cluster token) goes to *ret_id before the proposal is made. Callback as node_propose
 * (the store result of the record, or an error). Returns 0, FLT_EINVAL (bad URLs), -EEXIST (a
 * member already has one of these URLs, or the id exists), -EIDRM (the id was removed),
 * -ENOMEM, FLT_ESTOPPED. */
int node_add_member(struct node *n, const char *urls, uint64_t *ret_id, node_done_fn cb, void *ctx);
/* Remove member `id`. Returns 0, -ENOENT, -EIDRM (already removed), -ENOMEM, FLT_ESTOPPED. */
int node_remove_member(struct node *n, uint64_t id, node_done_fn cb, void *ctx);
/* New peer URLs for member `id`. Returns 0, -ENOENT, -EIDRM, FLT_EINVAL, -EEXIST (another member
 * has one of the URLs), -ENOMEM, FLT_ESTOPPED. */
int node_update_member(struct node *n, uint64_t id, const char *urls, node_done_fn cb, void *ctx);
/* Record the name this member runs under (once it knows a leader). As node_propose. */
int node_announce_name(struct node *n, const char *name, node_done_fn cb, void *ctx);
/* Whether this member applied its own removal: it should stop (after handing over leadership
 * if it leads). */
bool node_removed(const struct node *n);
/* Whether the store already records `name` as this member's name. */
bool node_name_announced(struct node *n, const char *name);

/* Counters for /v2/stats and /metrics. */
struct node_stats {
	uint64_t proposals; /* accepted proposals */
	uint64_t proposals_failed;
	uint64_t syncs;          /* fdatasync calls of the WAL */
	uint64_t entries_synced; /* entries those syncs covered */
	uint64_t snapshots;
	uint64_t wal_bytes;
};
void node_get_stats(const struct node *n, struct node_stats *ret);

#endif
