/* Private to the Raft core (raft.c, raft_log.c, raft_repl.c): struct raft itself, the leader's
 * per-voter progress, small inline helpers and the internal functions the three files share. Not
 * for anyone outside src/raft/raft*.c: the public door is raft.h. */
#ifndef FLT_RAFT_INT_H
#define FLT_RAFT_INT_H

#include "raft.h"

#include <errno.h>
#include <string.h>

#define RAFT_MAX_INFLIGHT 64

enum pr_state { PR_PROBE, PR_REPLICATE, PR_SNAPSHOT };

/* What the leader knows about one voter (its own slot included: match = what it persisted). */
struct progress {
	uint64_t id;
	uint64_t match, next;
	enum pr_state state;
	bool probe_sent;    /* probe: one append out, wait for its answer or a heartbeat reply */
	bool recent_active; /* check-quorum: heard from it this election timeout */
	bool vote_granted, vote_rejected;
	uint64_t read_acked; /* highest ReadIndex round it confirmed */
	/* replicate: last index of each append in flight, a ring */
	uint64_t infl[RAFT_MAX_INFLIGHT];
	unsigned infl_start, infl_count;
	/* snapshot transfer */
	uint64_t snap_index;
	uint64_t snap_acked; /* bytes the follower confirmed */
	unsigned snap_ticks; /* since the last chunk went out: resend after an election timeout */
};

struct pending_read {
	uint64_t ctx, from, index;
	uint64_t round; /* 0: waits for the leader's first commit in its term */
};

struct raft {
	struct raft_alloc a;
	uint64_t id;
	unsigned election_tick, heartbeat_tick, max_inflight;
	bool pre_vote, check_quorum;
	size_t max_entries, max_bytes, max_chunk, max_snap;
	raft_trace_fn trace;
	void *trace_ud;
	uint64_t rng;
	bool oom;      /* an allocation failed since the last raft_step: report it */
	bool in_ready; /* between raft_ready and raft_advance */

	/* persistent state and its volatile companions */
	uint64_t term, vote, commit, applied;
	enum raft_role role;
	uint64_t leader;

	/* the log: log[i].index == snap_index + 1 + i; entries' data in chunks (raft_log.c) */
	struct raft_entry *log;
	size_t log_n, log_cap;
	struct log_chunk *chunk; /* the one new entries' data goes to */
	uint64_t stable; /* last index the I/O side persisted */
	uint64_t snap_index, snap_term;
	struct raft_conf snap_conf;
	const void *snap_data; /* bytes of the snapshot at snap_index, if we have them */
	size_t snap_len;
	bool snap_borrowed; /* snap_data belongs to the I/O side (raft_compact_borrow) */
	bool snap_install; /* a received snapshot waits in the next ready */
	struct raft_snapshot ready_snap;

	/* configuration in force (latest in the log) and the entry that set it */
	struct raft_conf conf;
	uint64_t conf_index;
	struct progress prs[RAFT_MAX_VOTERS];
	unsigned n_prs;

	/* timers, in ticks */
	unsigned election_elapsed, heartbeat_elapsed, randomized_timeout;

	/* leader */
	bool committed_in_term; /* committed an entry of its own term (reads, conf changes) */
	bool need_bcast;        /* new entries or commit to send at the next ready */
	uint64_t transferee;
	struct pending_read *reads;
	size_t n_reads, cap_reads;
	uint64_t read_round;
	bool read_round_needed;

	/* follower: snapshot being received */
	uint8_t *in_buf;
	size_t in_len, in_cap;
	uint64_t in_index, in_term;
	struct raft_conf in_conf;

	/* outputs */
	struct raft_msg *msgs;
	size_t n_msgs, cap_msgs;
	struct raft_read_state *rstates;
	size_t n_rstates, cap_rstates;
	struct raft_hard_state prev_hs;
	struct raft_soft_state prev_ss;
};

/* ---- small helpers ---- */

static inline void *rmalloc(struct raft *r, size_t n)
{
	void *p = r->a.malloc(r->a.ud, n ? n : 1);

	if (!p)
		r->oom = true;
	return p;
}

static inline void rfree(struct raft *r, void *p)
{
	if (p)
		r->a.free(r->a.ud, p);
}

/* Make room for `need` elements in *arr; 0 or -ENOMEM. */
static inline int grow(struct raft *r, void **arr, size_t *cap, size_t need, size_t elem)
{
	size_t ncap = *cap ? *cap : 8;
	void *p;

	if (need <= *cap)
		return 0;
	while (ncap < need)
		ncap *= 2;
	p = r->a.realloc(r->a.ud, *arr, ncap * elem);
	if (!p) {
		r->oom = true;
		return -ENOMEM;
	}
	*arr = p;
	*cap = ncap;
	return 0;
}

#define TRACE(r, what, x, y)                                                                       \
	do {                                                                                       \
		if ((r)->trace)                                                                    \
			(r)->trace((r)->trace_ud, (r)->id, (what), (uint64_t)(x), (uint64_t)(y));  \
	} while (0)

/* ---- the log: accessors ---- */

static inline uint64_t last_index(const struct raft *r)
{
	return r->snap_index + r->log_n;
}

static inline struct raft_entry *entry_at(const struct raft *r, uint64_t index)
{
	if (index <= r->snap_index || index > last_index(r))
		return NULL;
	return &r->log[index - r->snap_index - 1];
}

static inline uint64_t term_at(const struct raft *r, uint64_t index)
{
	const struct raft_entry *e;

	if (index == r->snap_index)
		return r->snap_term;
	e = entry_at(r, index);
	return e ? e->term : 0;
}

static inline uint64_t last_term(const struct raft *r)
{
	return term_at(r, last_index(r));
}

/* ---- voters ---- */

static inline struct progress *pr_find(struct raft *r, uint64_t id)
{
	for (unsigned i = 0; i < r->n_prs; i++)
		if (r->prs[i].id == id)
			return &r->prs[i];
	return NULL;
}

static inline bool promotable(const struct raft *r)
{
	return raft_conf_has(&r->conf, r->id);
}

static inline unsigned quorum(const struct raft *r)
{
	return r->conf.n / 2 + 1;
}

/* ---- raft.c ---- */

/* A new message from us to `to`, in our term, appended to the outbox; NULL if the outbox could not
 * grow (like a message lost on the network: Raft retries). */
struct raft_msg *raft_msg_new(struct raft *r, enum raft_msg_type type, uint64_t to);
/* Step down to follower of `term` (0 leader: not known yet). */
void raft_become_follower(struct raft *r, uint64_t term, uint64_t leader);

/* ---- raft_log.c: the log, the configuration it carries, snapshots ---- */

/* At most RAFT_MAX_VOTERS ids, none 0, no duplicates. */
bool raft_conf_valid(const struct raft_conf *c);
/* Take the newest conf entry in the log (or the snapshot's) as r->conf; resync the progress. */
void raft_recompute_conf(struct raft *r);
/* Free the entries from log position `from` (not index) on; the log keeps `from` entries. */
void raft_free_entries(struct raft *r, size_t from);
/* Drop entries >= index; rolls back a conf entry among them. */
void raft_truncate_from(struct raft *r, uint64_t index);
/* Append one entry at last_index + 1 (data copied); 0 or -ENOMEM. */
int raft_log_push(struct raft *r, uint64_t term, uint8_t type, const void *data, size_t len);
/* Largest index <= `index` whose term is <= `term`. */
uint64_t raft_find_conflict_by_term(const struct raft *r, uint64_t index, uint64_t term);
/* Replace the log by the snapshot fully received in r->in_buf (takes it over). */
void raft_install_snapshot(struct raft *r);
/* Release every chunk of entry data (after raft_free_entries(r, 0)). */
void raft_log_chunks_free(struct raft *r);
/* Let go of the snapshot bytes (freed if they are ours). */
void raft_snap_release(struct raft *r);

/* ---- raft_repl.c: the leader's side ---- */

/* Forget what we knew of this voter: probe from our last index + 1. */
void raft_pr_reset(struct raft *r, struct progress *pr);
/* Rebuild r->prs for r->conf, keeping the progress of voters that stay. */
void raft_sync_progress(struct raft *r);
/* Leader: commit what a quorum holds (if of this term); true if commit moved. May step down. */
bool raft_maybe_commit(struct raft *r);
/* Leader: send every follower what it lacks, or an empty append carrying the commit index. */
void raft_bcast_append(struct raft *r);
/* Leader: heartbeat every follower, with ReadIndex round `ctx` (0: none). */
void raft_bcast_heartbeat(struct raft *r, uint64_t ctx);
/* Leader, once per tick: resend snapshot chunks that went unanswered for an election timeout. */
void raft_tick_snapshots(struct raft *r);
/* Hand a served read to the node that asked: our read states or a READ_INDEX_RESP. */
void raft_answer_read(struct raft *r, uint64_t from, uint64_t ctx, uint64_t index);
/* Leader: start the heartbeat round the reads queued since the last ready wait for. */
void raft_flush_read_round(struct raft *r);
/* Leader: handle a follower's answer or a forwarded read (votes and proposals go elsewhere). */
int raft_step_leader(struct raft *r, const struct raft_msg *m);

#endif
