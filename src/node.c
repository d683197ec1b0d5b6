/* The log path of a replicated cluster (see node.h) on the pure Raft core (src/raft/raft.h): one
 * ev_timer ticks the core, one ev_prepare (run just before the loop blocks) drains its ready
 * batches in the order Raft demands: persist (WAL group commit, one fdatasync), then send (peer
 * transport, msgpack codec), then apply committed entries to the store and answer the proposers.
 * A leader sends first, so that its followers write while it writes (raft.h, thesis 10.2.1).
 * Snapshots are written by a forked child (snapwriter.h) and then borrowed by the core from the
 * mapped file.
 *
 * Ticks: one Raft tick is one heartbeat interval; the election timeout is
 * election_ms / heartbeat_ms ticks (config.c guarantees >= 5).
 *
 * Proposals from any member. Each NORMAL entry carries a 17-byte header in front of the store
 * command: 0xc1 (a byte msgpack never uses, so the bare commands of data dirs written before the
 * cluster came still replay),
 * the proposing member's id and a per-process sequence number (both u64 little-endian). A leader
 * appends directly; a follower forwards the entry to the leader (RAFT_MSG_PROP, dropped by a
 * non-leader); either way the proposer recognises its own entry when it applies it. A proposal
 * whose (index, term) the leader knew and that is passed by the applied index without being
 * seen was replaced after a leader change and fails with FLT_ENOTLEADER; every proposal times
 * out with FLT_ENOTLEADER after three election timeouts. Proposals made while no leader is known
 * wait (within the same deadline) and go out when one appears. Sequence numbers start at the
 * wall clock in ns at start-up, so a restarted member never mistakes an entry of its previous
 * life for a new proposal. */
#include "node.h"

#include <errno.h>
#include <ev.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "peer/peer.h"
#include "raft/codec.h"
#include "raft/raft.h"
#include "raft/wal.h"
#include "snapwriter.h"
#include "store/store.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/fs.h"
#include "util/le.h"
#include "util/log.h"
#include "util/util.h"

#define HDR_MAGIC 0xc1
#define HDR_LEN   17
/* membership records in the store (node.h) */
#define PEERS_DIR   "/_flotilla/peers"
#define REMOVED_DIR "/_flotilla/removed"
#define NAMES_DIR   "/_flotilla/names"
/* Proposals and read barriers not answered within this many election timeouts fail. */
#define DEADLINE_ELECTIONS 3

enum req_state {
	REQ_WAITING,   /* not handed to the core yet (no leader, or the core was busy) */
	REQ_SUBMITTED, /* proposed / read index asked */
	REQ_READY,     /* read barrier: the read index is known, wait for apply */
};

/* One proposal or read barrier in flight. */
struct req {
	struct req *next;
	node_done_fn cb;
	void *ctx;
	bool is_read;
	enum req_state state;
	uint64_t seq;        /* proposal id (in the entry header) / read ctx */
	uint64_t index;      /* leader-local proposal: its index; read: the read index */
	uint64_t term;       /* leader-local proposal: its term */
	int64_t deadline_ns; /* monotonic */
	size_t len;
	unsigned char data[]; /* the entry (header + command) for a proposal */
};

struct node {
	int (*peer_http_get)(void *ud, const char *path, struct buf *body);
	void *peer_http_ud;
	struct ev_loop *loop;
	struct store *store;
	struct raft *raft;
	struct wal *wal;
	struct peer_transport *peers;
	char *wal_dir;
	char *snap_dir;
	uint64_t member_id, cluster_id;
	uint64_t snapshot_count;
	uint64_t applied;
	uint64_t snap_index;
	uint64_t seq;
	uint64_t leader;
	int64_t timeout_ns;
	struct raft_conf boot_conf; /* from --initial-cluster: used when nothing on disk says */
	struct req *head, *tail;
	ev_timer tick_w;
	ev_prepare ready_w;
	ev_idle wake_w; /* keeps the loop from blocking while requests wait for the ready loop */
	bool in_ready;
	bool failed;
	struct snapw *snapw;       /* writes our snapshots in a child process */
	struct snap_map snap_map; /* the snapshot file the core borrows for followers */
	struct wal_entry *went; /* scratch for converting a ready's entries */
	size_t went_cap;
	struct buf frame; /* scratch for encoding messages */
	struct node_stats stats;
	/* runtime membership (node.h) */
	struct node_members initial; /* --initial-cluster */
	char *token;
	bool members_dirty; /* a membership record or the leader changed: reconcile */
	bool removed;       /* this member applied its own removal */
	uint64_t rm_id;     /* voter whose removal waits out its grace period */
	int64_t rm_since_ns;
	int64_t election_ns;
};

/* ---- helpers ---- */

static char *path_join(const char *a, const char *b)
{
	struct buf out = BUF_INIT;

	if (buf_printf(&out, "%s/%s", a, b) < 0) {
		buf_release(&out);
		return NULL;
	}
	return buf_steal(&out);
}

/* Split an entry into (proposer, seq) and the store command. Bare commands (node.c's) have no
 * proposer. */
static void entry_split(const void *data, size_t len, uint64_t *member, uint64_t *seq,
                        const void **cmd, size_t *cmd_len)
{
	const unsigned char *p = data;

	if (len >= HDR_LEN && p[0] == HDR_MAGIC) {
		*member = get_le64(p + 1);
		*seq = get_le64(p + 9);
		*cmd = p + HDR_LEN;
		*cmd_len = len - HDR_LEN;
	} else {
		*member = *seq = 0;
		*cmd = data;
		*cmd_len = len;
	}
}

static void req_unlink(struct node *n, struct req *prev, struct req *q)
{
	if (prev)
		prev->next = q->next;
	else
		n->head = q->next;
	if (n->tail == q)
		n->tail = prev;
}

/* Answer and free one request (already unlinked). */
static void req_finish(struct node *n, struct req *q, int err, const struct store_result *res,
                       uint64_t index)
{
	if (err < 0 && !q->is_read)
		n->stats.proposals_failed++;
	q->cb(q->ctx, err, res, index);
	free(q);
}

static void fail_all(struct node *n, int err)
{
	struct req *q;

	while ((q = n->head)) {
		n->head = q->next;
		if (!n->head)
			n->tail = NULL;
		req_finish(n, q, err, NULL, q->index);
	}
}

/* ---- handing requests to the core ---- */

static void submit(struct node *n, struct req *q)
{
	int64_t r;

	if (n->in_ready || n->failed)
		return;
	if (q->is_read) {
		r = raft_read_index(n->raft, q->seq);
		if (r == 0)
			q->state = REQ_SUBMITTED;
		return;
	}
	r = raft_propose_forward(n->raft, q->data, q->len, RAFT_ENTRY_NORMAL);
	if (r < 0)
		return; /* no leader (or a transfer runs): wait for one */
	q->state = REQ_SUBMITTED;
	if (r > 0) {
		q->index = (uint64_t)r;
		q->term = raft_term(n->raft);
	}
}

static void submit_waiting(struct node *n)
{
	if (!raft_leader(n->raft))
		return;
	for (struct req *q = n->head; q; q = q->next)
		if (q->state == REQ_WAITING)
			submit(n, q);
}

/* Only there so that the loop does not block: a request queued after this turn's ready loop
 * (a pipelined HTTP request parsed while responses were flushed, or one made from a callback)
 * goes to the core in the next turn instead of waiting for an unrelated wake-up (a tick). */
static void wake_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
	(void)revents;
	ev_idle_stop(loop, w);
}

static void enqueue(struct node *n, struct req *q)
{
	if (!ev_is_active(&n->wake_w))
		ev_idle_start(n->loop, &n->wake_w);
	q->next = NULL;
	if (n->tail)
		n->tail->next = q;
	else
		n->head = q;
	n->tail = q;
	q->deadline_ns = flt_monotime_ns() + n->timeout_ns;
	q->state = REQ_WAITING;
	submit(n, q);
}

int node_propose(struct node *n, const void *data, size_t len, node_done_fn cb, void *ctx)
{
	struct req *q;

	if (n->failed)
		return FLT_ESTOPPED;
	q = calloc(1, sizeof(*q) + HDR_LEN + len);
	if (!q)
		return -ENOMEM;
	q->cb = cb;
	q->ctx = ctx;
	q->seq = ++n->seq;
	q->data[0] = HDR_MAGIC;
	put_le64(q->data + 1, n->member_id);
	put_le64(q->data + 9, q->seq);
	memcpy(q->data + HDR_LEN, data, len);
	q->len = HDR_LEN + len;
	n->stats.proposals++;
	enqueue(n, q);
	return 0;
}

int node_read_barrier(struct node *n, node_done_fn cb, void *ctx)
{
	struct req *q;

	if (n->failed)
		return FLT_ESTOPPED;
	q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	q->cb = cb;
	q->ctx = ctx;
	q->is_read = true;
	q->seq = ++n->seq;
	enqueue(n, q);
	return 0;
}

/* ---- applying ---- */

/* After the applied index moved: answer reads that became safe, fail leader-local proposals
 * whose slot was filled by another entry (the entry at their index would have matched). */
static void settle(struct node *n)
{
	struct req *q = n->head, *prev = NULL;

	while (q) {
		struct req *next = q->next;
		bool done_read = q->is_read && q->state == REQ_READY && q->index <= n->applied;
		bool lost = !q->is_read && q->index && q->index <= n->applied;

		if (done_read || lost) {
			req_unlink(n, prev, q);
			req_finish(n, q, lost ? FLT_ENOTLEADER : 0, NULL, n->applied);
		} else {
			prev = q;
		}
		q = next;
	}
}

static void answer_proposal(struct node *n, uint64_t seq, int err, const struct store_result *res,
                            uint64_t index)
{
	struct req *q = n->head, *prev = NULL;

	for (; q; prev = q, q = q->next) {
		if (q->is_read || q->seq != seq)
			continue;
		req_unlink(n, prev, q);
		req_finish(n, q, err, res, index);
		return;
	}
}

/* Whether a write to the clean path `key` changes directory `dir`: inside it, it, or above it
 * (a recursive delete). */
static bool path_touches(const char *key, const char *dir)
{
	size_t kl = strlen(key), dl = strlen(dir);

	if (kl > dl)
		return !strncmp(key, dir, dl) && key[dl] == '/';
	return !strncmp(dir, key, kl) && (dir[kl] == '/' || !dir[kl] || kl == 1);
}

static void apply_entry(struct node *n, const struct raft_entry *e)
{
	struct store_result *res = NULL;
	uint64_t member, seq;
	const void *cmd;
	size_t len;
	int r;

	if (e->type != RAFT_ENTRY_NORMAL) {
		/* NOOPs carry nothing; the core tracks CONF entries itself as they are appended. */
		n->applied = e->index;
		return;
	}
	entry_split(e->data, e->len, &member, &seq, &cmd, &len);
	r = store_apply(n->store, e->index, cmd, len, &res);
	if (r == -ENOMEM) {
		/* The entry is durable but the store may be half-changed: carrying on would serve
		 * a state no replay reproduces. Die, and let the restart's replay apply it whole
		 * (etcd panics here too). */
		log_error("cannot apply log entry %llu: out of memory; exiting",
		          (unsigned long long)e->index);
		abort();
	}
	/* Only membership records: other hidden keys (machine heartbeats) change often. The
	 * event's key, not a second decode of the command (that was two allocations and a copy
	 * of the value per entry, on every member). */
	if (r >= 0 && res->ev && !n->members_dirty) {
		const char *k = store_event_key(res->ev);

		n->members_dirty = path_touches(k, PEERS_DIR) || path_touches(k, REMOVED_DIR) ||
		                   path_touches(k, NAMES_DIR);
	}
	n->applied = e->index;
	if (r < 0)
		log_error("cannot apply log entry %llu: %s", (unsigned long long)e->index,
		          flt_strerror(r));
	if (member == n->member_id && seq)
		answer_proposal(n, seq, r < 0 ? r : 0, r < 0 ? NULL : res, e->index);
	store_result_free(res);
}

/* ---- sending ---- */

static void send_msgs(struct node *n, const struct raft_msg *msgs, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		const struct raft_msg *m = &msgs[i];
		enum peer_lane lane =
		    m->type == RAFT_MSG_SNAPSHOT ? PEER_LANE_BULK : PEER_LANE_CONTROL;
		int r;

		if (!n->peers)
			continue;
		buf_clear(&n->frame);
		r = raft_msg_encode(m, &n->frame);
		if (r >= 0)
			r = peer_send(n->peers, m->to, lane, n->frame.data, n->frame.len);
		if (r < 0 && r != -ENOTCONN)
			log_debug("cannot send %s to %llx: %s", raft_msg_type_name(m->type),
			          (unsigned long long)m->to, flt_strerror(r));
	}
}

/* ---- the ready loop ---- */

static int persist(struct node *n, const struct raft_ready *rd)
{
	int r;

	if (rd->snapshot) {
		const struct raft_snapshot *s = rd->snapshot;
		uint8_t conf[RAFT_CONF_ENCODED_MAX];
		size_t clen = raft_conf_encode(&s->conf, conf);

		/* The snapshot is durable before the reset record that voids the old log can be
		 * (wal.h: a reset on disk always has its snapshot). Ours, being written, is older
		 * and would race for the directory. */
		snapw_cancel(n->snapw);
		r = snap_save_conf(n->snap_dir, s->index, s->term, conf, clen, s->data, s->len,
		                   false);
		if (r < 0)
			return r;
		r = wal_reset(n->wal, s->index, s->term);
		if (r < 0)
			return r;
		n->snap_index = s->index;
		n->stats.snapshots++;
	}
	if (rd->n_entries) {
		if (rd->n_entries > n->went_cap) {
			struct wal_entry *w = realloc(n->went, rd->n_entries * sizeof(*w));

			if (!w)
				return -ENOMEM;
			n->went = w;
			n->went_cap = rd->n_entries;
		}
		for (size_t i = 0; i < rd->n_entries; i++) {
			const struct raft_entry *e = &rd->entries[i];

			n->went[i] = (struct wal_entry){.term = e->term,
			                                .index = e->index,
			                                .type = e->type,
			                                .data = e->data,
			                                .len = e->len};
		}
		r = wal_append(n->wal, n->went, rd->n_entries);
		if (r < 0)
			return r;
	}
	if (rd->hs_changed) {
		struct wal_hard_state hs = {
		    .term = rd->hs.term, .vote = rd->hs.vote, .commit = rd->hs.commit};

		r = wal_set_hard_state(n->wal, &hs);
		if (r < 0)
			return r;
	}
	if (wal_pending(n->wal)) {
		r = wal_sync(n->wal);
		if (r < 0)
			return r;
		n->stats.syncs++;
		n->stats.entries_synced += rd->n_entries;
		n->stats.wal_bytes = wal_bytes_written(n->wal);
	}
	if (rd->snapshot)
		(void)wal_compact(n->wal, rd->snapshot->index);
	return 0;
}

static int snap_serialize(void *ctx, struct buf *out)
{
	return store_snapshot_save(((struct node *)ctx)->store, out);
}

/* In the snapshot's child, once the file is durable: the WAL segments it covers are released
 * from there (an unlink of a 64 MiB segment held the loop for up to 36 ms). */
static void snap_durable(void *ctx, uint64_t index)
{
	wal_release_covered(((struct node *)ctx)->wal, index);
}

/* The child made the snapshot at `index` durable: the log up to it can go. The core borrows the
 * file's bytes (mapped) for followers that need them, instead of a copy in memory. */
static void snap_written(void *ctx, uint64_t index, uint64_t term, int result)
{
	struct node *n = ctx;
	struct snap_map m;
	char err[512] = "";
	int r = result;

	if (r >= 0) {
		r = snap_map_latest(n->snap_dir, false, &m, err, sizeof(err));
		if (r == 0 || (r > 0 && (m.index != index || m.term != term))) {
			if (r > 0)
				snap_unmap(&m);
			r = FLT_ECORRUPT;
			snprintf(err, sizeof(err), "the newest file is not the one written");
		}
	}
	if (r < 0) {
		/* Not fatal: the WAL still holds everything; retry at the next threshold. */
		log_error("cannot save snapshot at index %llu: %s", (unsigned long long)index,
		          err[0]             ? err
		          : r == -ECHILD     ? "the writer process died"
		                             : flt_strerror(r));
		return;
	}
	r = raft_compact_borrow(n->raft, index, m.data, m.len);
	if (r < 0) {
		/* The core moved past it meanwhile (a snapshot from the leader). */
		snap_unmap(&m);
		return;
	}
	snap_unmap(&n->snap_map);
	n->snap_map = m;
	snap_map_drop_pages(&n->snap_map);
	n->stats.snapshots++;
	r = wal_compact(n->wal, index);
	if (r < 0)
		log_warn("cannot compact the WAL up to %llu: %s", (unsigned long long)index,
		         flt_strerror(r));
	log_info("saved snapshot at index %llu (%zu bytes)", (unsigned long long)index, m.len);
}

/* Every snapshot_count applied entries, a child writes the store as it is now (copy-on-write)
 * while the loop goes on: serialising and fsyncing a large store held the loop for as long as
 * it took, and that was the p99 of writes. */
static void maybe_snapshot(struct node *n)
{
	uint64_t index = n->applied;
	uint8_t conf[RAFT_CONF_ENCODED_MAX];
	struct raft_conf c;
	int r;

	if (index < n->snap_index + n->snapshot_count || index <= raft_snapshot_index(n->raft) ||
	    snapw_busy(n->snapw))
		return;
	r = raft_conf_at(n->raft, index, &c);
	if (r >= 0)
		r = snapw_start(n->snapw, index, raft_term_at(n->raft, index), conf,
		                raft_conf_encode(&c, conf), snap_serialize, snap_durable, n);
	if (r < 0)
		log_error("cannot start writing a snapshot at index %llu: %s",
		          (unsigned long long)index, flt_strerror(r));
	/* The next threshold counts from here, whatever the outcome (a failure retries then). */
	n->snap_index = index;
}

static void handle_ready(struct node *n, struct raft_ready *rd)
{
	/* A leader's messages go out before its own write, so the followers' fdatasyncs run
	 * alongside ours instead of after it (thesis 10.2.1; raft.h says why it is safe). */
	bool send_first = raft_role(n->raft) == RAFT_LEADER;
	int r;

	if (send_first) {
		send_msgs(n, rd->msgs, rd->n_msgs);
		if (n->peers)
			peer_flush(n->peers);
	}
	r = persist(n, rd);
	if (r < 0) {
		/* We cannot know what reached the disk: stop rather than acknowledge something
		 * that may be lost (and never send what depends on it). */
		log_error("cannot write the WAL: %s; refusing further writes", flt_strerror(r));
		n->failed = true;
		return;
	}
	if (!send_first)
		send_msgs(n, rd->msgs, rd->n_msgs);
	if (rd->snapshot) {
		r = store_snapshot_load(n->store, rd->snapshot->data, rd->snapshot->len);
		if (r < 0) {
			log_error("cannot load the snapshot at index %llu from the leader: %s",
			          (unsigned long long)rd->snapshot->index, flt_strerror(r));
			n->failed = true;
			return;
		}
		log_info("installed snapshot at index %llu from the leader",
		         (unsigned long long)rd->snapshot->index);
		/* The core holds the received bytes now and let go of our file's. */
		snap_unmap(&n->snap_map);
		n->applied = rd->snapshot->index;
		n->members_dirty = true;
	}
	for (size_t i = 0; i < rd->n_committed; i++)
		if (rd->committed[i].index > n->applied)
			apply_entry(n, &rd->committed[i]);
	for (size_t i = 0; i < rd->n_reads; i++)
		for (struct req *q = n->head; q; q = q->next)
			if (q->is_read && q->seq == rd->reads[i].ctx) {
				q->state = REQ_READY;
				q->index = rd->reads[i].index;
			}
	settle(n);
	if (rd->soft_changed && rd->soft.leader != n->leader) {
		if (rd->soft.leader)
			log_info("leader is now %llx (term %llu, this node is %s)",
			         (unsigned long long)rd->soft.leader,
			         (unsigned long long)rd->hs.term, raft_role_name(rd->soft.role));
		else
			log_info("no leader (term %llu)", (unsigned long long)rd->hs.term);
		n->leader = rd->soft.leader;
		n->members_dirty = true;
	}
}

static void run_ready(struct node *n)
{
	struct raft_ready rd;

	for (int round = 0; round < 64 && !n->failed; round++) {
		submit_waiting(n);
		if (!raft_has_ready(n->raft))
			break;
		raft_ready(n->raft, &rd);
		n->in_ready = true;
		handle_ready(n, &rd);
		n->in_ready = false;
		if (n->failed)
			break;
		raft_advance(n->raft, &rd);
		maybe_snapshot(n);
	}
	if (n->failed)
		fail_all(n, FLT_ESTOPPED);
}

static void ready_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
	(void)loop;
	(void)revents;
	run_ready(container_of(w, struct node, ready_w));
}

/* ---- runtime membership (node.h) ---- */

struct idset {
	uint64_t *v;
	size_t n;
};

static bool idset_has(const struct idset *s, uint64_t id)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->v[i] == id)
			return true;
	return false;
}

typedef int (*record_fn)(void *ud, uint64_t id, const char *value);

/* Calls `fn` for each record (hex id -> value) in the store directory `dir`. */
static int read_records(struct node *n, const char *dir, record_fn fn, void *ud)
{
	struct store_result *res = NULL;
	json_t *j = NULL, *nodes;
	size_t i;
	int r;

	r = store_get(n->store, dir, false, true, 0, &res);
	if (r < 0)
		return r;
	if (res->err_code)
		goto out; /* no record yet */
	j = json_loadb(res->json.data, res->json.len, 0, NULL);
	if (!j) {
		r = -ENOMEM;
		goto out;
	}
	nodes = json_object_get(json_object_get(j, "node"), "nodes");
	for (i = 0; r >= 0 && i < json_array_size(nodes); i++) {
		json_t *it = json_array_get(nodes, i);
		const char *key = json_string_value(json_object_get(it, "key"));
		const char *val = json_string_value(json_object_get(it, "value"));
		const char *slash = key ? strrchr(key, '/') : NULL;
		uint64_t id = slash ? strtoull(slash + 1, NULL, 16) : 0;

		if (id)
			r = fn(ud, id, val ? val : "");
	}
out:
	json_decref(j);
	store_result_free(res);
	return r;
}

static int add_id(void *ud, uint64_t id, const char *value)
{
	struct idset *s = ud;
	uint64_t *v;

	(void)value;
	v = realloc(s->v, (s->n + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	s->v = v;
	s->v[s->n++] = id;
	return 0;
}

static struct node_member_info *member_find(struct node_members *m, uint64_t id)
{
	for (size_t i = 0; i < m->n; i++)
		if (m->v[i].id == id)
			return &m->v[i];
	return NULL;
}

static int member_push(struct node_members *m, uint64_t id, const char *name, const char *urls)
{
	struct node_member_info *v = realloc(m->v, (m->n + 1) * sizeof(*v));

	if (!v)
		return -ENOMEM;
	m->v = v;
	v[m->n].id = id;
	v[m->n].name = strdup(name);
	v[m->n].peer_urls = strdup(urls);
	m->n++;
	if (!v[m->n - 1].name || !v[m->n - 1].peer_urls)
		return -ENOMEM;
	return 0;
}

struct members_ctx {
	struct node_members *m;
	const struct idset *removed;
};

static int set_peer_urls(void *ud, uint64_t id, const char *value)
{
	struct members_ctx *c = ud;
	struct node_member_info *mi;
	char *u;

	if (idset_has(c->removed, id))
		return 0;
	mi = member_find(c->m, id);
	if (!mi)
		return member_push(c->m, id, "", value);
	u = strdup(value);
	if (!u)
		return -ENOMEM;
	free(mi->peer_urls);
	mi->peer_urls = u;
	return 0;
}

static int set_name(void *ud, uint64_t id, const char *value)
{
	struct members_ctx *c = ud;
	struct node_member_info *mi = member_find(c->m, id);
	char *nm;

	if (!mi || mi->name[0])
		return 0;
	nm = strdup(value);
	if (!nm)
		return -ENOMEM;
	free(mi->name);
	mi->name = nm;
	return 0;
}

static int members_and_removed(struct node *n, struct node_members *ret, struct idset *removed)
{
	struct node_members m = {0};
	struct members_ctx c = {&m, removed};
	int r;

	r = read_records(n, REMOVED_DIR, add_id, removed);
	for (size_t i = 0; r >= 0 && i < n->initial.n; i++)
		if (!idset_has(removed, n->initial.v[i].id))
			r = member_push(&m, n->initial.v[i].id, n->initial.v[i].name,
			                n->initial.v[i].peer_urls);
	if (r >= 0)
		r = read_records(n, PEERS_DIR, set_peer_urls, &c);
	if (r >= 0)
		r = read_records(n, NAMES_DIR, set_name, &c);
	if (r < 0) {
		node_members_release(&m);
		return r;
	}
	*ret = m;
	return 0;
}

int node_members_get(struct node *n, struct node_members *ret)
{
	struct idset removed = {0};
	int r = members_and_removed(n, ret, &removed);

	free(removed.v);
	return r;
}

void node_members_release(struct node_members *m)
{
	for (size_t i = 0; i < m->n; i++) {
		free(m->v[i].name);
		free(m->v[i].peer_urls);
	}
	free(m->v);
	m->v = NULL;
	m->n = 0;
}

static bool url_valid(const char *u)
{
	const char *host, *colon;
	char *end;
	unsigned long port;

	if (!strncmp(u, "http://", 7))
		host = u + 7;
	else if (!strncmp(u, "https://", 8))
		host = u + 8;
	else
		return false;
	colon = strrchr(host, ':');
	if (!colon || colon == host)
		return false;
	port = strtoul(colon + 1, &end, 10);
	return end != colon + 1 && *end == '\0' && port > 0 && port < 65536 &&
	       !memchr(host, '/', (size_t)(colon - host));
}

bool node_urls_valid(const char *urls)
{
	struct strlist l = {0};
	bool ok;

	if (strlist_split(&l, urls) < 0)
		return false;
	ok = l.n > 0;
	for (size_t i = 0; ok && i < l.n; i++)
		ok = url_valid(l.v[i]);
	strlist_release(&l);
	return ok;
}

/* Whether a member other than `except` has one of `urls`. */
static bool urls_taken(const struct node_members *m, uint64_t except, const char *urls)
{
	struct strlist a = {0}, b = {0};
	bool taken = false;

	if (strlist_split(&a, urls) < 0)
		return false;
	for (size_t i = 0; !taken && i < m->n; i++) {
		if (m->v[i].id == except || strlist_split(&b, m->v[i].peer_urls) < 0)
			continue;
		for (size_t x = 0; !taken && x < a.n; x++)
			for (size_t y = 0; !taken && y < b.n; y++)
				taken = !strcmp(a.v[x], b.v[y]);
		strlist_release(&b);
	}
	strlist_release(&a);
	return taken;
}

static int propose_record(struct node *n, const char *dir, uint64_t id, const char *value,
                          node_done_fn cb, void *ctx)
{
	struct buf key = BUF_INIT, enc = BUF_INIT;
	struct store_cmd c;
	int r;

	memset(&c, 0, sizeof(c));
	r = buf_printf(&key, "%s/%llx", dir, (unsigned long long)id);
	c.op = STORE_OP_PUT;
	c.time_ns = flt_realtime_ns();
	c.key = key.data;
	c.value = value;
	c.value_len = strlen(value);
	c.prev_exist = -1;
	if (r >= 0)
		r = store_cmd_encode(&c, &enc);
	if (r >= 0)
		r = node_propose(n, enc.data, enc.len, cb, ctx);
	buf_release(&key);
	buf_release(&enc);
	return r;
}

/* Checks common to the three changes: `id` known and not removed (want_member), or new. */
static int check_change(struct node *n, uint64_t id, const char *urls, bool want_member)
{
	struct node_members m = {0};
	struct idset removed = {0};
	int r;

	if (n->failed)
		return FLT_ESTOPPED;
	if (urls && !node_urls_valid(urls))
		return FLT_EINVAL;
	r = members_and_removed(n, &m, &removed);
	if (r < 0)
		goto out;
	if (idset_has(&removed, id))
		r = -EIDRM;
	else if (want_member && !member_find(&m, id))
		r = -ENOENT;
	else if (!want_member && member_find(&m, id))
		r = -EEXIST;
	else if (urls && urls_taken(&m, id, urls))
		r = -EEXIST;
out:
	node_members_release(&m);
	free(removed.v);
	return r;
}

int node_add_member(struct node *n, const char *urls, uint64_t *ret_id, node_done_fn cb, void *ctx)
{
	uint64_t id;
	int r;

	if (!node_urls_valid(urls))
		return FLT_EINVAL;
	id = config_member_id(urls, n->token ? n->token : "");
	r = check_change(n, id, urls, false);
	if (r < 0)
		return r;
	*ret_id = id;
	return propose_record(n, PEERS_DIR, id, urls, cb, ctx);
}

int node_remove_member(struct node *n, uint64_t id, node_done_fn cb, void *ctx)
{
	int r = check_change(n, id, NULL, true);

	return r < 0 ? r : propose_record(n, REMOVED_DIR, id, "", cb, ctx);
}

int node_update_member(struct node *n, uint64_t id, const char *urls, node_done_fn cb, void *ctx)
{
	int r = check_change(n, id, urls, true);

	return r < 0 ? r : propose_record(n, PEERS_DIR, id, urls, cb, ctx);
}

int node_announce_name(struct node *n, const char *name, node_done_fn cb, void *ctx)
{
	return propose_record(n, NAMES_DIR, n->member_id, name, cb, ctx);
}

bool node_removed(const struct node *n)
{
	return n->removed;
}

/* Bring the peer transport and (on the leader) the Raft configuration in line with the
 * membership records (node.h). */
static void reconcile(struct node *n)
{
	const struct raft_conf *conf = raft_conf(n->raft);
	struct node_members m = {0};
	struct idset removed = {0};
	bool leader = raft_role(n->raft) == RAFT_LEADER, again = false;
	int64_t r;

	if (!n->members_dirty || !n->peers)
		return;
	n->members_dirty = false;
	if (members_and_removed(n, &m, &removed) < 0) {
		n->members_dirty = true;
		goto out;
	}
	for (size_t i = 0; i < m.n; i++) {
		if (m.v[i].id == n->member_id)
			continue;
		r = peer_add(n->peers, m.v[i].id, m.v[i].peer_urls);
		if (r == -EEXIST)
			r = peer_update(n->peers, m.v[i].id, m.v[i].peer_urls);
		if (r < 0)
			log_warn("cannot reach member %llx at '%s': %s",
			         (unsigned long long)m.v[i].id, m.v[i].peer_urls,
			         flt_strerror((int)r));
	}
	for (size_t i = 0; i < removed.n; i++) {
		if (removed.v[i] == n->member_id) {
			if (!n->removed)
				log_notice("this member (%llx) was removed from the cluster",
				           (unsigned long long)n->member_id);
			n->removed = true;
		} else if (!raft_conf_has(conf, removed.v[i])) {
			(void)peer_remove(n->peers, removed.v[i]);
		}
	}
	if (!leader)
		goto out;
	for (size_t i = 0; i < m.n; i++) {
		if (raft_conf_has(conf, m.v[i].id))
			continue;
		r = raft_propose_conf_change(n->raft, RAFT_CONF_ADD, m.v[i].id);
		if (r > 0)
			log_info("adding member %llx to the Raft configuration",
			         (unsigned long long)m.v[i].id);
		again = true; /* one change at a time: look again next tick */
		goto out;
	}
	for (size_t i = 0; i < removed.n; i++) {
		if (!raft_conf_has(conf, removed.v[i]))
			continue;
		again = true;
		if (n->rm_id != removed.v[i]) {
			n->rm_id = removed.v[i];
			n->rm_since_ns = flt_monotime_ns();
			break;
		}
		if (flt_monotime_ns() - n->rm_since_ns < n->election_ns)
			break;
		r = raft_propose_conf_change(n->raft, RAFT_CONF_REMOVE, removed.v[i]);
		if (r > 0)
			log_info("removing member %llx from the Raft configuration",
			         (unsigned long long)removed.v[i]);
		break;
	}
out:
	if (again)
		n->members_dirty = true;
	node_members_release(&m);
	free(removed.v);
}

static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct node *n = container_of(w, struct node, tick_w);
	int64_t now = flt_monotime_ns();
	struct req *q = n->head, *prev = NULL;

	(void)loop;
	(void)revents;
	if (n->failed)
		return;
	raft_tick(n->raft);
	reconcile(n);
	while (q) {
		struct req *next = q->next;

		if (q->deadline_ns <= now) {
			req_unlink(n, prev, q);
			req_finish(n, q, FLT_ENOTLEADER, NULL, n->applied);
		} else {
			prev = q;
		}
		q = next;
	}
}

/* ---- the peer transport ---- */

static void on_frame(void *ud, uint64_t from, enum peer_lane lane, const void *data, size_t len)
{
	struct node *n = ud;
	struct raft_decoded d;
	int r;

	(void)lane;
	if (n->in_ready || n->failed)
		return; /* cannot happen from the loop; Raft resends anyway */
	r = raft_msg_decode(data, len, &d);
	if (r >= 0 && (d.msg.from != from || d.msg.to != n->member_id))
		r = FLT_EPROTO;
	if (r >= 0)
		r = raft_step(n->raft, &d.msg);
	if (r < 0)
		log_debug("dropped a message from %llx: %s", (unsigned long long)from,
		          flt_strerror(r));
	raft_decoded_release(&d);
}

static int on_http_get(void *ud, const char *path, struct buf *body)
{
	struct node *n = ud;

	return n->peer_http_get(n->peer_http_ud, path, body);
}

static void on_peer_state(void *ud, uint64_t member, enum peer_lane lane, bool connected)
{
	(void)ud;
	log_debug("peer %llx lane %d %s", (unsigned long long)member, (int)lane,
	          connected ? "connected" : "disconnected");
}

/* ---- start-up ---- */

struct restore_ctx {
	struct raft_entry *ents;
	size_t n, cap;
	struct buf data; /* all entry payloads, concatenated; pointers fixed up afterwards */
	size_t *offs;
};

static int replay_cb(void *ctx, const struct wal_entry *e)
{
	struct restore_ctx *rc = ctx;

	/* An entry with index i replaces everything from i on. */
	while (rc->n && rc->ents[rc->n - 1].index >= e->index)
		rc->n--;
	if (rc->n && rc->ents[rc->n - 1].index + 1 != e->index)
		return FLT_ECORRUPT;
	if (rc->n == rc->cap) {
		size_t cap = rc->cap ? 2 * rc->cap : 256;
		struct raft_entry *ne = realloc(rc->ents, cap * sizeof(*ne));
		size_t *no;

		if (!ne)
			return -ENOMEM;
		rc->ents = ne;
		no = realloc(rc->offs, cap * sizeof(*no));
		if (!no)
			return -ENOMEM;
		rc->offs = no;
		rc->cap = cap;
	}
	rc->ents[rc->n] =
	    (struct raft_entry){.term = e->term, .index = e->index, .type = e->type, .len = e->len};
	rc->offs[rc->n] = rc->data.len;
	if (e->len && buf_append(&rc->data, e->data, e->len) < 0)
		return -ENOMEM;
	rc->n++;
	return 0;
}

static void raft_trace(void *ud, uint64_t id, const char *what, uint64_t a, uint64_t b)
{
	(void)ud;
	log_debug("raft %llx: %s (%llu, %llu)", (unsigned long long)id, what, (unsigned long long)a,
	          (unsigned long long)b);
}

static int open_log(struct node *n, const struct node_config *cfg, struct raft_config *rcfg)
{
	struct restore_ctx rc = {.data = BUF_INIT};
	struct wal_recovery rec;
	struct raft_persisted p;
	struct snap_map snap = {0};
	char err[512] = "";
	uint64_t sidx = 0, sterm = 0;
	int64_t t0 = flt_monotime_ns(), t_snap, t_wal;
	int r;

	r = snap_map_latest(n->snap_dir, true, &snap, err, sizeof(err));
	if (r < 0) {
		log_error("cannot load snapshot: %s", err[0] ? err : flt_strerror(r));
		goto out;
	}
	if (r == 1) {
		sidx = snap.index;
		sterm = snap.term;
		r = store_snapshot_load(n->store, snap.data, snap.len);
		if (r < 0) {
			log_error("cannot load snapshot at index %llu in '%s': %s",
			          (unsigned long long)sidx, n->snap_dir, flt_strerror(r));
			goto out;
		}
		n->snap_index = n->applied = sidx;
	}
	t_snap = flt_monotime_ns();
	memset(&rec, 0, sizeof(rec));
	r = wal_open(n->wal_dir, sidx, replay_cb, &rc, &rec, &n->wal);
	if (r < 0) {
		log_error("cannot open the WAL in '%s': %s", n->wal_dir,
		          rec.error[0] ? rec.error : flt_strerror(r));
		goto out;
	}
	t_wal = flt_monotime_ns();
	if (rec.truncated_tail)
		log_warn("the WAL in '%s' ended in a torn record (a write cut short by a crash): "
		         "truncated it after index %llu",
		         n->wal_dir, (unsigned long long)rec.last_index);
	/* entries after a snapshot we no longer have in the log: drop the ones it covers */
	if (rc.n && rc.ents[0].index != sidx + 1) {
		log_error("the WAL in '%s' starts at index %llu but the snapshot ends at %llu: "
		          "entries are missing",
		          n->wal_dir, (unsigned long long)rc.ents[0].index,
		          (unsigned long long)sidx);
		r = FLT_ECORRUPT;
		goto out;
	}
	for (size_t i = 0; i < rc.n; i++)
		rc.ents[i].data = rc.ents[i].len ? rc.data.data + rc.offs[i] : NULL;

	if (!sidx && !rc.n && !rec.hs.term) {
		/* a brand-new member of a new cluster: bootstrap from --initial-cluster; one
		 * joining a running cluster starts with no voters and learns from the leader */
		if (!cfg->join) {
			rcfg->voters = n->boot_conf.ids;
			rcfg->n_voters = n->boot_conf.n;
		} else {
			log_info("joining the running cluster: waiting for the leader");
		}
		r = raft_new(rcfg, &n->raft);
		goto out;
	}
	r = raft_new(rcfg, &n->raft);
	if (r < 0)
		goto out;
	memset(&p, 0, sizeof(p));
	p.hs = (struct raft_hard_state){
	    .term = rec.hs.term, .vote = rec.hs.vote, .commit = rec.hs.commit};
	for (size_t i = 0; i < rc.n; i++)
		if (rc.ents[i].term > p.hs.term)
			p.hs.term = rc.ents[i].term; /* node.c's logs: the term came with entries */
	if (sterm > p.hs.term)
		p.hs.term = sterm;
	if (p.hs.commit > sidx + rc.n)
		p.hs.commit = sidx + rc.n;
	p.snap.index = sidx;
	p.snap.term = sterm;
	/* The snapshot's own voter set; a snapshot without one (written by node.c, format 1) or
	 * none at all (node.c's logs have no CONF entry) falls back on the initial cluster's. */
	p.snap.conf = n->boot_conf;
	if (snap.conf_len && raft_conf_decode(snap.conf, snap.conf_len, &p.snap.conf) < 0) {
		log_error("cannot decode the configuration of the snapshot at index %llu in '%s'",
		          (unsigned long long)sidx, n->snap_dir);
		r = FLT_ECORRUPT;
		goto out;
	}
	p.snap.data = snap.data;
	p.snap.len = snap.len;
	p.snap_borrowed = true; /* the mapping stays, as n->snap_map */
	p.entries = rc.ents;
	p.n_entries = rc.n;
	p.applied = sidx;
	r = raft_restore(n->raft, &p);
	if (r < 0)
		log_error("cannot restore the Raft state from '%s': %s", n->wal_dir,
		          flt_strerror(r));
	if (r >= 0) {
		n->snap_map = snap;
		snap = (struct snap_map){0};
		snap_map_drop_pages(&n->snap_map);
	}
	if (r >= 0)
		log_info("recovered: snapshot index %llu, log up to %llu, term %llu, commit %llu "
		         "(snapshot %lld ms, WAL %lld ms)",
		         (unsigned long long)sidx, (unsigned long long)(sidx + rc.n),
		         (unsigned long long)p.hs.term, (unsigned long long)p.hs.commit,
		         (long long)(t_snap - t0) / 1000000, (long long)(t_wal - t_snap) / 1000000);
out:
	free(rc.ents);
	free(rc.offs);
	buf_release(&rc.data);
	snap_unmap(&snap);
	return r;
}

static int start_peers(struct node *n, const struct node_config *cfg)
{
	struct peer_callbacks cb = {.on_frame = on_frame,
	                            .on_peer_state = on_peer_state,
	                            .on_http_get = cfg->peer_http_get ? on_http_get : NULL};
	struct peer_config pc;
	int r;

	n->peer_http_get = cfg->peer_http_get;
	n->peer_http_ud = cfg->peer_http_ud;
	peer_config_default(&pc);
	pc.member_id = n->member_id;
	pc.cluster_id = n->cluster_id;
	for (size_t i = 0; i < cfg->n_listen_peer_urls && i < PEER_MAX_LISTEN; i++)
		pc.listen_urls[pc.nlisten++] = cfg->listen_peer_urls[i];
	r = peer_transport_new(n->loop, &pc, &cb, n, &n->peers);
	if (r < 0) {
		log_error("cannot start the peer transport: %s", flt_strerror(r));
		return r;
	}
	for (size_t i = 0; i < cfg->n_members; i++) {
		if (cfg->members[i].id == n->member_id)
			continue;
		r = peer_add(n->peers, cfg->members[i].id, cfg->members[i].peer_urls);
		if (r < 0) {
			log_error("cannot add peer '%s' (%s): %s", cfg->members[i].name,
			          cfg->members[i].peer_urls, flt_strerror(r));
			return r;
		}
	}
	for (size_t i = 0; i < pc.nlisten; i++)
		log_info("serving peer traffic on '%s'", pc.listen_urls[i]);
	return 0;
}

int node_new(struct ev_loop *loop, const struct node_config *cfg, struct store *store,
             struct node **ret)
{
	unsigned hb = cfg->heartbeat_ms ? cfg->heartbeat_ms : 100;
	unsigned el = cfg->election_ms ? cfg->election_ms : 1000;
	struct raft_config rcfg;
	struct node *n;
	int r;

	n = calloc(1, sizeof(*n));
	if (!n)
		return -ENOMEM;
	n->loop = loop;
	n->store = store;
	n->member_id = cfg->member_id;
	n->cluster_id = cfg->cluster_id;
	n->snapshot_count = cfg->snapshot_count ? cfg->snapshot_count : 100000;
	n->seq = (uint64_t)flt_realtime_ns();
	n->timeout_ns = (int64_t)DEADLINE_ELECTIONS * el * 1000000;
	n->election_ns = (int64_t)el * 1000000;
	n->members_dirty = true;
	buf_init(&n->frame);
	if (cfg->token && !(n->token = strdup(cfg->token))) {
		r = -ENOMEM;
		goto fail;
	}
	for (size_t i = 0; i < cfg->n_members; i++) {
		r = member_push(&n->initial, cfg->members[i].id, cfg->members[i].name,
		                cfg->members[i].peer_urls);
		if (r < 0)
			goto fail;
	}
	for (size_t i = 0; i < cfg->n_members && n->boot_conf.n < RAFT_MAX_VOTERS; i++)
		n->boot_conf.ids[n->boot_conf.n++] = cfg->members[i].id;
	if (!n->boot_conf.n)
		n->boot_conf.ids[n->boot_conf.n++] = n->member_id;
	if (!raft_conf_has(&n->boot_conf, n->member_id)) {
		log_error("this member (%llx) is not in the initial cluster",
		          (unsigned long long)n->member_id);
		r = FLT_EINVAL;
		goto fail;
	}
	n->wal_dir = path_join(cfg->data_dir, "member/wal");
	n->snap_dir = path_join(cfg->data_dir, "member/snap");
	if (!n->wal_dir || !n->snap_dir) {
		r = -ENOMEM;
		goto fail;
	}
	r = fs_mkdir_p(n->wal_dir, 0700);
	if (r >= 0)
		r = fs_mkdir_p(n->snap_dir, 0700);
	if (r < 0) {
		log_error("cannot create data dir '%s': %s", cfg->data_dir, flt_strerror(r));
		goto fail;
	}
	r = snapw_new(n->loop, n->snap_dir, snap_written, n, &n->snapw);
	if (r < 0)
		goto fail;

	memset(&rcfg, 0, sizeof(rcfg));
	rcfg.id = n->member_id;
	rcfg.heartbeat_tick = 1;
	rcfg.election_tick = el / hb >= 2 ? el / hb : 2;
	rcfg.pre_vote = true;
	rcfg.check_quorum = true;
	rcfg.max_inflight = 16; /* append batches in flight per follower (the core caps it) */
	rcfg.max_entries_per_msg = 1024;
	rcfg.max_bytes_per_msg = 1 << 20;
	rcfg.max_snapshot_chunk = 1 << 20;
	rcfg.seed = (uint64_t)flt_realtime_ns() ^ n->member_id;
	rcfg.alloc = raft_libc_alloc();
	rcfg.trace = raft_trace;
	r = open_log(n, cfg, &rcfg);
	if (r < 0)
		goto fail;
	n->applied =
	    raft_applied_index(n->raft) > n->applied ? raft_applied_index(n->raft) : n->applied;

	if (raft_conf(n->raft)->n > 1 || cfg->n_members > 1 || cfg->listen_alone) {
		r = start_peers(n, cfg);
		if (r < 0)
			goto fail;
	} else {
		/* Alone: win the election now rather than after a timeout, so the node serves
		 * writes as soon as it is up (as the one-member node.c did). */
		for (unsigned i = 0;
		     i < 4 * rcfg.election_tick && raft_role(n->raft) != RAFT_LEADER; i++)
			raft_tick(n->raft);
	}
	ev_timer_init(&n->tick_w, tick_cb, hb / 1000.0, hb / 1000.0);
	ev_timer_start(loop, &n->tick_w);
	ev_idle_init(&n->wake_w, wake_cb);
	ev_prepare_init(&n->ready_w, ready_cb);
	/* Run before other prepare watchers so replies queued by the callbacks go out this turn. */
	ev_set_priority(&n->ready_w, EV_MAXPRI);
	ev_prepare_start(loop, &n->ready_w);
	/* Persist the bootstrap / election state now: a one-member node must be durable leader
	 * before it answers anything. */
	run_ready(n);
	if (n->failed) {
		r = FLT_ESTOPPED;
		goto fail;
	}
	*ret = n;
	return 0;
fail:
	node_free(n);
	return r;
}

void node_free(struct node *n)
{
	if (!n)
		return;
	/* Entries that reached the disk will be applied on the next start; their proposers
	 * cannot be answered now. */
	fail_all(n, FLT_ESTOPPED);
	if (n->loop && ev_is_active(&n->ready_w))
		ev_prepare_stop(n->loop, &n->ready_w);
	if (n->loop && ev_is_active(&n->tick_w))
		ev_timer_stop(n->loop, &n->tick_w);
	if (n->loop && ev_is_active(&n->wake_w))
		ev_idle_stop(n->loop, &n->wake_w);
	peer_transport_free(n->peers);
	snapw_free(n->snapw);
	raft_free(n->raft);
	snap_unmap(&n->snap_map); /* after the core that borrowed it */
	wal_close(n->wal);
	free(n->went);
	buf_release(&n->frame);
	free(n->wal_dir);
	free(n->snap_dir);
	node_members_release(&n->initial);
	free(n->token);
	free(n);
}

int node_transfer_leadership(struct node *n)
{
	const struct raft_conf *c;

	if (n->failed || raft_role(n->raft) != RAFT_LEADER)
		return FLT_ENOTLEADER;
	c = raft_conf(n->raft);
	/* A voter we are connected to first: a dead one would only stall the stop. (The core
	 * catches the chosen one up before it tells it to campaign.) */
	for (int pass = 0; pass < 2; pass++) {
		for (uint32_t i = 0; i < c->n; i++) {
			struct peer_stats st;

			if (c->ids[i] == n->member_id)
				continue;
			if (!pass && (!n->peers || peer_get_stats(n->peers, c->ids[i], &st) < 0 ||
			              !st.lane[PEER_LANE_CONTROL].connected))
				continue;
			if (raft_transfer_leadership(n->raft, c->ids[i]) == 0) {
				log_info("handing leadership to %llx",
				         (unsigned long long)c->ids[i]);
				return 0;
			}
		}
	}
	return FLT_ENOTLEADER;
}

uint64_t node_term(const struct node *n)
{
	return raft_term(n->raft);
}

uint64_t node_commit_index(const struct node *n)
{
	return raft_commit_index(n->raft);
}

uint64_t node_applied_index(const struct node *n)
{
	return n->applied;
}

bool node_is_leader(const struct node *n)
{
	return !n->failed && raft_role(n->raft) == RAFT_LEADER;
}

uint64_t node_leader_id(const struct node *n)
{
	return n->failed ? 0 : raft_leader(n->raft);
}

size_t node_cluster_size(const struct node *n)
{
	return raft_conf(n->raft)->n;
}

uint64_t node_member_id(const struct node *n)
{
	return n->member_id;
}

uint64_t node_cluster_id(const struct node *n)
{
	return n->cluster_id;
}

void node_get_stats(const struct node *n, struct node_stats *ret)
{
	*ret = n->stats;
}
