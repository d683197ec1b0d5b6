/* The Raft core: a pure state machine (Raft paper + Ongaro's thesis) fed with ticks, messages and
 * proposals that hands back "ready" batches of I/O to do. It reads no clock, does no I/O, draws
 * randomness only from a seeded PRNG in its struct, allocates only through `struct raft_alloc` and
 * reports what it does through a trace callback. The daemon and the simulator (tests/sim) drive
 * the very same code.
 *
 * Driving it (one thread; no raft_ call may run inside another):
 *
 *     r = raft_new(&cfg)                       a fresh member bootstraps from cfg.voters;
 *     raft_restore(r, &state)                  a restarted one loads what it persisted instead
 *     loop:
 *         raft_tick(r)                          every tick (e.g. 100 ms)
 *         raft_step(r, msg)                     every message a peer sent us (decoded)
 *         raft_propose / raft_read_index / ...  client requests
 *         while (raft_has_ready(r)) {           once per loop turn (group commit):
 *             raft_ready(r, &rd);
 *             1. persist rd.snapshot (if any), then rd.entries, then rd.hs (if rd.hs_changed),
 *                ONE fdatasync for all of it;
 *             2. send rd.msgs (only now: Raft answers only from durable state) -- except on a
 *                leader (raft_role() == RAFT_LEADER after raft_ready), which may send them
 *                before step 1 so that followers write while it writes (thesis 10.2.1): its
 *                messages vouch for nothing it has not already persisted (its term and vote
 *                were durable before it could win), and the core counts the leader's own
 *                entries towards commitment only from raft_advance;
 *             3. install rd.snapshot into the state machine, then apply rd.committed in order;
 *                answer rd.reads once the applied index reaches each read's index;
 *             4. raft_advance(r, &rd);
 *         }
 *
 * Between raft_ready and raft_advance the core must not be called (except the const getters):
 * everything `rd` points to is owned by the core and stays valid until raft_advance.
 *
 * Configuration (thesis 4.1, one server at a time): a RAFT_ENTRY_CONF entry holds the complete
 * voter set (raft_conf_encode). It takes effect on a node as soon as it is in its log (appended,
 * not committed); a truncated one is rolled back. A brand-new cluster starts from a bootstrap
 * entry (index 1, term 1, CONF) that every initial member creates identically in raft_new. A node
 * joining an existing cluster starts with no voters and learns everything from the leader.
 *
 * Wiring to the WAL (src/raft/wal.h): entry types and fields map 1:1 (struct raft_entry ==
 * struct wal_entry, RAFT_ENTRY_* == WAL_ENTRY_*); rd.entries -> wal_append (which overwrites a
 * suffix, as Raft truncation needs); rd.hs -> wal_set_hard_state; then one wal_sync. On start:
 * snap_load_latest + wal_open's entry callback collect a struct raft_persisted for raft_restore.
 * raft_compact <-> snap_save + wal_compact. Two things the WAL/snapshot files must learn: a
 * snapshot must record its configuration (raft_snapshot_conf / rd.snapshot->conf), and after a
 * received snapshot (rd.snapshot) the WAL's entries past its index must not come back on replay.
 *
 * Wiring to node.h: node_propose -> raft_propose, remember (index, term); answer when a committed
 * entry with that index is applied (FLT_ENOTLEADER-style failure if its term differs).
 * node_read_barrier -> raft_read_index(ctx); answer when a read state with ctx arrives and the
 * applied index reaches its index; time reads out (they are dropped on leader changes).
 *
 * The transport encodes every field of struct raft_msg; entries are bounded by
 * max_entries_per_msg / max_bytes_per_msg (one entry may exceed the latter), chunks by
 * max_snapshot_chunk, so the frame size limit is max(max_bytes_per_msg, largest entry,
 * max_snapshot_chunk) plus headers. Decoded messages are borrowed by raft_step. */
#ifndef FLT_RAFT_H
#define FLT_RAFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct raft;

/* The only way the core gets memory. `realloc` with p == NULL must behave as malloc. */
struct raft_alloc {
	void *(*malloc)(void *ud, size_t size);
	void *(*realloc)(void *ud, void *p, size_t size);
	void (*free)(void *ud, void *p);
	void *ud;
};
/* libc's allocator behind the interface. Defined in src/raft/raft_libc.c, which is deliberately
 * NOT part of libraft.a (so `nm -u libraft.a` shows no malloc); link it beside the library. */
const struct raft_alloc *raft_libc_alloc(void);

#define RAFT_MAX_VOTERS 16 /* a Raft cluster of more voters makes no sense; enforced */

struct raft_conf {
	uint32_t n;
	uint64_t ids[RAFT_MAX_VOTERS]; /* distinct, non-zero */
};
/* A conf entry's payload: u32 count + count u64 ids, little-endian. */
#define RAFT_CONF_ENCODED_MAX (4 + 8 * RAFT_MAX_VOTERS)
size_t raft_conf_encode(const struct raft_conf *c, uint8_t out[RAFT_CONF_ENCODED_MAX]);
/* 0, or FLT_EINVAL on a malformed payload (ret untouched). */
int raft_conf_decode(const void *data, size_t len, struct raft_conf *ret);
bool raft_conf_has(const struct raft_conf *c, uint64_t id);

/* Same numbering as enum wal_entry_type, so the WAL stores entries as they are. */
enum raft_entry_type {
	RAFT_ENTRY_NORMAL = 0, /* a state machine command, opaque to the core */
	RAFT_ENTRY_NOOP = 1,   /* a new leader's empty entry (5.4.2 / thesis 6.4) */
	RAFT_ENTRY_CONF = 2,   /* a voter set, see raft_conf_encode */
};

struct raft_entry {
	uint64_t term;
	uint64_t index;
	uint8_t type;
	const void *data; /* see the owner of the struct it sits in */
	size_t len;
};

/* What must be durable before any message leaves. */
struct raft_hard_state {
	uint64_t term;
	uint64_t vote;   /* 0: none this term */
	uint64_t commit; /* not required for safety, saves re-applying on restart */
};

enum raft_role {
	RAFT_FOLLOWER = 0,
	RAFT_PRE_CANDIDATE = 1,
	RAFT_CANDIDATE = 2,
	RAFT_LEADER = 3,
};
const char *raft_role_name(enum raft_role role);

struct raft_soft_state {
	uint64_t leader; /* 0: unknown */
	enum raft_role role;
};

/* Every field the transport must carry; which ones a type uses is listed per type. All
 * messages carry type, from, to, term. */
enum raft_msg_type {
	/* index/log_term: the entry before `entries`; commit: leader's commit; entries. */
	RAFT_MSG_APPEND = 1,
	/* index: last index now matching (accept) or the rejected prev index (reject);
	 * reject, reject_hint (index), log_term (term at reject_hint): fast back-tracking. */
	RAFT_MSG_APPEND_RESP = 2,
	/* index/log_term: candidate's last entry; force: leadership transfer, ignore leases. */
	RAFT_MSG_VOTE = 3,
	RAFT_MSG_VOTE_RESP = 4, /* reject */
	/* As VOTE, with term = the term the sender would campaign in (thesis 9.6). */
	RAFT_MSG_PRE_VOTE = 5,
	RAFT_MSG_PRE_VOTE_RESP = 6, /* reject; term is the asked one when granted */
	/* commit: min(leader commit, follower's match); context: read-index round. */
	RAFT_MSG_HEARTBEAT = 7,
	RAFT_MSG_HEARTBEAT_RESP = 8, /* context echoed */
	/* snap_index, snap_term, snap_conf: the snapshot; snap_offset, chunk/chunk_len, snap_done:
	 * one chunk (at most max_snapshot_chunk bytes; one in flight per follower). */
	RAFT_MSG_SNAPSHOT = 9,
	/* snap_index; snap_offset: bytes received so far (the next chunk wanted); reject: start
	 * over from snap_offset; snap_done: installed (durably, since replies follow persist). */
	RAFT_MSG_SNAPSHOT_RESP = 10,
	RAFT_MSG_TIMEOUT_NOW = 11, /* leadership transfer: campaign now (thesis 3.10) */
	RAFT_MSG_READ_INDEX = 12,  /* follower -> leader; context: the caller's ctx */
	/* context: ctx; index: the read index; reject: the leader could not serve it. */
	RAFT_MSG_READ_INDEX_RESP = 13,
	/* Proposal forwarding (etcd's MsgProp), follower -> leader: one entry (index 0, term
	 * 0, type NORMAL or NOOP) carrying a command. The leader appends it if it still leads,
	 * else drops it; the proposer learns the outcome only by seeing its command applied
	 * (so it must tag the command itself and time out). The message's term is ignored. */
	RAFT_MSG_PROP = 14,
};
const char *raft_msg_type_name(enum raft_msg_type t);

struct raft_msg {
	enum raft_msg_type type;
	uint64_t from, to, term;
	uint64_t log_term, index, commit;
	bool reject;
	bool force;
	bool snap_done;
	uint64_t reject_hint;
	uint64_t context;
	const struct raft_entry *entries; /* entries and their data: borrowed */
	size_t n_entries;
	uint64_t snap_index, snap_term;
	struct raft_conf snap_conf;
	uint64_t snap_offset;
	uint64_t snap_size; /* total bytes of the snapshot (lets the receiver bound its buffer) */
	const void *chunk;  /* borrowed */
	size_t chunk_len;
};

struct raft_snapshot {
	uint64_t index, term;
	struct raft_conf conf;
	const void *data; /* owned by the core (in a ready) or borrowed (when given to it) */
	size_t len;
};

/* A read that became safe: answer it once the applied index reaches `index` (thesis 6.4). */
struct raft_read_state {
	uint64_t ctx;
	uint64_t index;
};

/* Kinds of trace events: `what` is a static string, a and b two numbers it explains. */
typedef void (*raft_trace_fn)(void *ud, uint64_t id, const char *what, uint64_t a, uint64_t b);

struct raft_config {
	uint64_t id;            /* non-zero, unique in the cluster */
	const uint64_t *voters; /* bootstrap voter set (copied), or NULL/0 to join or restore */
	size_t n_voters;
	unsigned election_tick;     /* T: election timeout is random in [T, 2T) ticks; >= 2 */
	unsigned heartbeat_tick;    /* leader heartbeat period in ticks; < election_tick */
	bool pre_vote;              /* thesis 9.6 */
	bool check_quorum;          /* leader steps down without a quorum; followers keep leases */
	unsigned max_inflight;      /* append messages in flight per follower (>= 1) */
	size_t max_entries_per_msg; /* >= 1 */
	size_t max_bytes_per_msg;   /* entry payload bytes per append (at least one entry goes) */
	size_t max_snapshot_chunk;  /* bytes per InstallSnapshot chunk (>= 1) */
	size_t max_snapshot_size;   /* a follower refuses larger incoming snapshots (0: 1 GiB) */
	uint64_t seed;              /* PRNG seed (election timeouts) */
	const struct raft_alloc *alloc; /* required; raft_libc_alloc() for libc's */
	raft_trace_fn trace;            /* optional */
	void *trace_ud;
};

/* Create a core. With cfg->voters it is a bootstrapping member of a new cluster: its log starts
 * with the bootstrap conf entry (to persist in the first ready). Returns 0, -ENOMEM or FLT_EINVAL
 * (bad config). */
int raft_new(const struct raft_config *cfg, struct raft **ret);
void raft_free(struct raft *r); /* accepts NULL */

/* What a restarted node persisted. */
struct raft_persisted {
	struct raft_hard_state hs;
	struct raft_snapshot snap;        /* index 0: none; data borrowed (copied), may be NULL */
	const struct raft_entry *entries; /* contiguous from snap.index + 1; borrowed (copied) */
	size_t n_entries;
	uint64_t applied; /* already applied to the state machine (>= snap.index, <= hs.commit) */
	bool snap_borrowed; /* keep snap.data without copying it, as raft_compact_borrow does */
};
/* Replace the state with what was persisted; call right after raft_new, before anything else.
 * Entries (applied, hs.commit] come back as committed in the next ready. Returns 0, -ENOMEM,
 * FLT_EINVAL (inconsistent input). */
int raft_restore(struct raft *r, const struct raft_persisted *p);

/* One tick of the logical clock. */
void raft_tick(struct raft *r);
/* Feed one message addressed to us. The message and what it points to are borrowed for the call
 * (the core copies what it keeps). Returns 0, -ENOMEM, or FLT_EPROTO (malformed: dropped). */
int raft_step(struct raft *r, const struct raft_msg *m);

/* Append a command on the leader. Returns the index the entry will have (> 0), FLT_ENOTLEADER
 * (not leader, or a leadership transfer is running), FLT_EINVAL (type CONF: use
 * raft_propose_conf_change), -ENOMEM. Data is copied. Committed means applied from a ready;
 * an entry at that index with another term means the proposal was lost. */
int64_t raft_propose(struct raft *r, const void *data, size_t len, enum raft_entry_type type);

/* Like raft_propose, but on a follower that knows a leader the command is forwarded to it in a
 * RAFT_MSG_PROP message (best effort: it may be lost or dropped). Returns the index (> 0) when
 * appended locally as leader, 0 when forwarded, FLT_ENOTLEADER (no known leader, or a transfer
 * is running), FLT_EINVAL (bad type), -ENOMEM. Data is copied. */
int64_t raft_propose_forward(struct raft *r, const void *data, size_t len,
                             enum raft_entry_type type);

enum raft_conf_op { RAFT_CONF_ADD = 1, RAFT_CONF_REMOVE = 2 };
/* Add or remove one voter (thesis 4.1). Returns the entry's index, FLT_ENOTLEADER, -EBUSY (a
 * change is still uncommitted, or this leader has not committed an entry of its term yet),
 * FLT_EINVAL (already a voter / not a voter / last voter), FLT_ETOOBIG (RAFT_MAX_VOTERS). A
 * removed leader keeps leading until the entry commits, then steps down. */
int64_t raft_propose_conf_change(struct raft *r, enum raft_conf_op op, uint64_t id);

/* Ask for a linearizable read (thesis 6.4). Reads asked in the same loop turn share one
 * heartbeat round. The answer comes as a raft_read_state with the same ctx in a later ready, or
 * never (leader lost: the caller times the read out and retries). Returns 0, FLT_ENOTLEADER (no
 * known leader), -ENOMEM. */
int raft_read_index(struct raft *r, uint64_t ctx);

/* Hand leadership to voter `to` (thesis 3.10): catch it up, send TimeoutNow; proposals get
 * FLT_ENOTLEADER meanwhile; abandoned after an election timeout. 0, FLT_ENOTLEADER, FLT_EINVAL. */
int raft_transfer_leadership(struct raft *r, uint64_t to);

/* The I/O side took a snapshot of the state machine at `index` (<= applied): the log up to it is
 * dropped and `data` (copied) is what the leader streams to followers whose next entry is gone.
 * The I/O side persists it itself (snap_save + wal_compact). Returns 0, FLT_EINVAL (index beyond
 * applied or not after the current snapshot), -ENOMEM. */
int raft_compact(struct raft *r, uint64_t index, const void *data, size_t len);
/* raft_compact without the copy (for a snapshot mapped from its file): `data` is borrowed and
 * must stay valid and unchanged until the core lets go of it, which is at the next
 * raft_compact / raft_compact_borrow, when a snapshot received from the leader installs (the
 * ready that carries it), at raft_restore or raft_free. Same returns, never -ENOMEM. */
int raft_compact_borrow(struct raft *r, uint64_t index, const void *data, size_t len);
/* The configuration as of `index` (snapshot index <= index <= last index): what a snapshot
 * taken at `index` records. 0 or FLT_EINVAL. */
int raft_conf_at(const struct raft *r, uint64_t index, struct raft_conf *ret);

struct raft_ready {
	bool hs_changed;
	struct raft_hard_state hs;
	/* Received from the leader: persist, and replace the state machine with it. All log
	 * entries after snapshot->index that the WAL holds are void (the next ready's entries
	 * continue from snapshot->index + 1). NULL if none. */
	const struct raft_snapshot *snapshot;
	const struct raft_entry *entries; /* to persist; may overwrite a suffix of the log */
	size_t n_entries;
	const struct raft_msg *msgs; /* to send after persisting */
	size_t n_msgs;
	const struct raft_entry *committed; /* to apply, in order */
	size_t n_committed;
	const struct raft_read_state *reads;
	size_t n_reads;
	bool soft_changed;
	struct raft_soft_state soft;
};
bool raft_has_ready(const struct raft *r);
/* Fill `rd` (everything owned by the core until raft_advance). Returns 0 (an allocation failure
 * while building it only loses messages, which Raft resends). */
int raft_ready(struct raft *r, struct raft_ready *rd);
/* Everything in `rd` was done (persisted, sent, applied). */
void raft_advance(struct raft *r, const struct raft_ready *rd);

/* Getters (any time). */
uint64_t raft_id(const struct raft *r);
uint64_t raft_term(const struct raft *r);
uint64_t raft_vote(const struct raft *r);
enum raft_role raft_role(const struct raft *r);
uint64_t raft_leader(const struct raft *r);
uint64_t raft_commit_index(const struct raft *r);
uint64_t raft_applied_index(const struct raft *r);
uint64_t raft_first_index(const struct raft *r); /* first entry in memory (snapshot index + 1) */
uint64_t raft_last_index(const struct raft *r);
uint64_t raft_snapshot_index(const struct raft *r);
/* Term and configuration as of the snapshot index (what a snapshot file must record). */
uint64_t raft_snapshot_term(const struct raft *r);
const struct raft_conf *raft_snapshot_conf(const struct raft *r);
/* Term of the entry at `index` (the snapshot's for its index), 0 if unknown. */
uint64_t raft_term_at(const struct raft *r, uint64_t index);
/* The entry at `index` (data borrowed until the next call that changes the core), or NULL. */
const struct raft_entry *raft_entry_at(const struct raft *r, uint64_t index);
/* The configuration in force: the latest one in the log (or the snapshot's). */
const struct raft_conf *raft_conf(const struct raft *r);
/* Leadership transfer target while one runs, else 0. */
uint64_t raft_transferee(const struct raft *r);

#endif
