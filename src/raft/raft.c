/* The Raft core (see raft.h): elections with pre-vote and check-quorum, log replication with
 * per-follower progress tracking (probe / replicate / snapshot, a bounded window of appends in
 * flight), chunked snapshot transfer, ReadIndex, leadership transfer and one-at-a-time membership
 * changes. Pure: no I/O, no clock, no libc allocation (everything goes through r->alloc). Section
 * numbers refer to the Raft paper (§) and Ongaro's thesis (thesis x.y). */
#include "raft.h"

#include <errno.h>
#include <string.h>

#include "util/err.h"

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

	/* the log: log[i].index == snap_index + 1 + i; each entry's data separately allocated */
	struct raft_entry *log;
	size_t log_n, log_cap;
	uint64_t stable; /* last index the I/O side persisted */
	uint64_t snap_index, snap_term;
	struct raft_conf snap_conf;
	void *snap_data; /* bytes of the snapshot at snap_index, if we have them */
	size_t snap_len;
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

static void *rmalloc(struct raft *r, size_t n)
{
	void *p = r->a.malloc(r->a.ud, n ? n : 1);

	if (!p)
		r->oom = true;
	return p;
}

static void rfree(struct raft *r, void *p)
{
	if (p)
		r->a.free(r->a.ud, p);
}

/* Make room for `need` elements in *arr; 0 or -ENOMEM. */
static int grow(struct raft *r, void **arr, size_t *cap, size_t need, size_t elem)
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

static uint64_t rng_next(struct raft *r)
{
	/* splitmix64: tiny, seedable, good enough for timeouts */
	uint64_t z = (r->rng += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static void put_u32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int n)
{
	uint64_t v = 0;

	for (int i = n - 1; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

/* ---- configuration ---- */

bool raft_conf_has(const struct raft_conf *c, uint64_t id)
{
	for (uint32_t i = 0; i < c->n; i++)
		if (c->ids[i] == id)
			return true;
	return false;
}

size_t raft_conf_encode(const struct raft_conf *c, uint8_t out[RAFT_CONF_ENCODED_MAX])
{
	put_u32(out, c->n);
	for (uint32_t i = 0; i < c->n; i++)
		put_u64(out + 4 + 8 * i, c->ids[i]);
	return 4 + 8 * (size_t)c->n;
}

int raft_conf_decode(const void *data, size_t len, struct raft_conf *ret)
{
	const uint8_t *p = data;
	struct raft_conf c;

	if (len < 4)
		return FLT_EINVAL;
	c.n = (uint32_t)get_le(p, 4);
	if (c.n > RAFT_MAX_VOTERS || len != 4 + 8 * (size_t)c.n)
		return FLT_EINVAL;
	for (uint32_t i = 0; i < c.n; i++) {
		c.ids[i] = get_le(p + 4 + 8 * i, 8);
		if (!c.ids[i])
			return FLT_EINVAL;
		for (uint32_t j = 0; j < i; j++)
			if (c.ids[j] == c.ids[i])
				return FLT_EINVAL;
	}
	*ret = c;
	return 0;
}

static bool conf_valid(const struct raft_conf *c)
{
	if (c->n > RAFT_MAX_VOTERS)
		return false;
	for (uint32_t i = 0; i < c->n; i++) {
		if (!c->ids[i])
			return false;
		for (uint32_t j = 0; j < i; j++)
			if (c->ids[j] == c->ids[i])
				return false;
	}
	return true;
}

const char *raft_role_name(enum raft_role role)
{
	switch (role) {
	case RAFT_FOLLOWER:
		return "follower";
	case RAFT_PRE_CANDIDATE:
		return "pre-candidate";
	case RAFT_CANDIDATE:
		return "candidate";
	case RAFT_LEADER:
		return "leader";
	}
	return "?";
}

const char *raft_msg_type_name(enum raft_msg_type t)
{
	switch (t) {
	case RAFT_MSG_APPEND:
		return "append";
	case RAFT_MSG_APPEND_RESP:
		return "append-resp";
	case RAFT_MSG_VOTE:
		return "vote";
	case RAFT_MSG_VOTE_RESP:
		return "vote-resp";
	case RAFT_MSG_PRE_VOTE:
		return "pre-vote";
	case RAFT_MSG_PRE_VOTE_RESP:
		return "pre-vote-resp";
	case RAFT_MSG_HEARTBEAT:
		return "heartbeat";
	case RAFT_MSG_HEARTBEAT_RESP:
		return "heartbeat-resp";
	case RAFT_MSG_SNAPSHOT:
		return "snapshot";
	case RAFT_MSG_SNAPSHOT_RESP:
		return "snapshot-resp";
	case RAFT_MSG_TIMEOUT_NOW:
		return "timeout-now";
	case RAFT_MSG_READ_INDEX:
		return "read-index";
	case RAFT_MSG_READ_INDEX_RESP:
		return "read-index-resp";
	case RAFT_MSG_PROP:
		return "prop";
	}
	return "?";
}

/* ---- the log ---- */

static uint64_t last_index(const struct raft *r)
{
	return r->snap_index + r->log_n;
}

static struct raft_entry *entry_at(const struct raft *r, uint64_t index)
{
	if (index <= r->snap_index || index > last_index(r))
		return NULL;
	return &r->log[index - r->snap_index - 1];
}

static uint64_t term_at(const struct raft *r, uint64_t index)
{
	const struct raft_entry *e;

	if (index == r->snap_index)
		return r->snap_term;
	e = entry_at(r, index);
	return e ? e->term : 0;
}

static uint64_t last_term(const struct raft *r)
{
	return term_at(r, last_index(r));
}

static struct progress *pr_find(struct raft *r, uint64_t id)
{
	for (unsigned i = 0; i < r->n_prs; i++)
		if (r->prs[i].id == id)
			return &r->prs[i];
	return NULL;
}

static void pr_reset(struct raft *r, struct progress *pr)
{
	uint64_t id = pr->id;

	memset(pr, 0, sizeof(*pr));
	pr->id = id;
	pr->next = last_index(r) + 1;
	pr->state = PR_PROBE;
	pr->recent_active = true; /* a new voter is not held against check-quorum at once */
	if (id == r->id)
		pr->match = r->stable;
}

/* Rebuild the progress slots after the configuration changed, keeping what we knew. */
static void sync_progress(struct raft *r)
{
	struct progress old[RAFT_MAX_VOTERS];
	unsigned n_old = r->n_prs;

	memcpy(old, r->prs, sizeof(old[0]) * n_old);
	r->n_prs = 0;
	for (uint32_t i = 0; i < r->conf.n; i++) {
		struct progress *pr = &r->prs[r->n_prs++];
		bool found = false;

		for (unsigned j = 0; j < n_old; j++) {
			if (old[j].id == r->conf.ids[i]) {
				*pr = old[j];
				found = true;
				break;
			}
		}
		if (!found) {
			pr->id = r->conf.ids[i];
			pr_reset(r, pr);
		}
	}
	if (r->transferee && !raft_conf_has(&r->conf, r->transferee))
		r->transferee = 0;
}

/* The configuration is the newest conf entry in the log, or the snapshot's (thesis 4.1). */
static void recompute_conf(struct raft *r)
{
	struct raft_conf c = r->snap_conf;
	uint64_t ci = r->snap_index;

	for (size_t i = r->log_n; i-- > 0;) {
		if (r->log[i].type == RAFT_ENTRY_CONF &&
		    raft_conf_decode(r->log[i].data, r->log[i].len, &c) == 0) {
			ci = r->log[i].index;
			break;
		}
	}
	r->conf = c;
	r->conf_index = ci;
	sync_progress(r);
	TRACE(r, "conf", ci, c.n);
}

static void free_entries(struct raft *r, size_t from)
{
	for (size_t i = from; i < r->log_n; i++)
		rfree(r, (void *)r->log[i].data);
	r->log_n = from;
}

/* Drop entries >= index (they conflict with the leader's). */
static void truncate_from(struct raft *r, uint64_t index)
{
	if (index > last_index(r))
		return;
	TRACE(r, "truncate", index, last_index(r));
	if (index <= r->commit)
		TRACE(r, "BUG: truncating committed entries", index, r->commit);
	free_entries(r, index - r->snap_index - 1);
	if (r->stable >= index)
		r->stable = index - 1;
	if (r->conf_index >= index)
		recompute_conf(r);
}

/* Append one entry (data copied). 0 or -ENOMEM. */
static int log_push(struct raft *r, uint64_t term, uint8_t type, const void *data, size_t len)
{
	struct raft_entry *e;
	void *copy = NULL;

	if (grow(r, (void **)&r->log, &r->log_cap, r->log_n + 1, sizeof(*r->log)) < 0)
		return -ENOMEM;
	if (len) {
		copy = rmalloc(r, len);
		if (!copy)
			return -ENOMEM;
		memcpy(copy, data, len);
	}
	e = &r->log[r->log_n++];
	*e = (struct raft_entry){.term = term,
	                         .index = r->snap_index + r->log_n,
	                         .type = type,
	                         .data = copy,
	                         .len = len};
	if (type == RAFT_ENTRY_CONF)
		recompute_conf(r);
	return 0;
}

/* Largest index <= `index` whose term is <= `term` (fast back-tracking, as in etcd). */
static uint64_t find_conflict_by_term(const struct raft *r, uint64_t index, uint64_t term)
{
	if (index > last_index(r))
		index = last_index(r);
	while (index > r->snap_index) {
		if (term_at(r, index) <= term)
			break;
		index--;
	}
	return index;
}

/* ---- outgoing messages ---- */

static struct raft_msg *msg_new(struct raft *r, enum raft_msg_type type, uint64_t to)
{
	struct raft_msg *m;

	if (grow(r, (void **)&r->msgs, &r->cap_msgs, r->n_msgs + 1, sizeof(*r->msgs)) < 0)
		return NULL; /* like a message lost on the network: Raft retries */
	m = &r->msgs[r->n_msgs++];
	memset(m, 0, sizeof(*m));
	m->type = type;
	m->from = r->id;
	m->to = to;
	m->term = r->term;
	return m;
}

static void msg_release(struct raft *r, struct raft_msg *m)
{
	/* A message owns one block: its entries array followed by their data, or its chunk. */
	if (m->n_entries)
		rfree(r, (void *)m->entries);
	else if (m->chunk)
		rfree(r, (void *)m->chunk);
}

/* ---- roles (§5.2, thesis 3.4, 9.6) ---- */

static void reset_election_timeout(struct raft *r)
{
	r->randomized_timeout = r->election_tick + (unsigned)(rng_next(r) % r->election_tick);
}

static void clear_reads(struct raft *r)
{
	r->n_reads = 0;
	r->read_round_needed = false;
}

static void reset(struct raft *r, uint64_t term)
{
	if (r->term != term) {
		r->term = term;
		r->vote = 0;
	}
	r->leader = 0;
	r->election_elapsed = 0;
	r->heartbeat_elapsed = 0;
	reset_election_timeout(r);
	r->transferee = 0;
	r->committed_in_term = false;
	r->need_bcast = false;
	clear_reads(r);
	for (unsigned i = 0; i < r->n_prs; i++)
		pr_reset(r, &r->prs[i]);
}

static void become_follower(struct raft *r, uint64_t term, uint64_t leader)
{
	reset(r, term);
	r->role = RAFT_FOLLOWER;
	r->leader = leader;
	TRACE(r, "become follower", term, leader);
}

static bool promotable(const struct raft *r)
{
	return raft_conf_has(&r->conf, r->id);
}

static unsigned quorum(const struct raft *r)
{
	return r->conf.n / 2 + 1;
}

static void send_heartbeat(struct raft *r, struct progress *pr, uint64_t ctx);
static bool send_append(struct raft *r, struct progress *pr, bool allow_empty);
static void bcast_append(struct raft *r);
static void answer_reads(struct raft *r);

static void become_leader(struct raft *r)
{
	struct progress *self;

	reset(r, r->term);
	r->role = RAFT_LEADER;
	r->leader = r->id;
	TRACE(r, "become leader", r->term, last_index(r));
	for (unsigned i = 0; i < r->n_prs; i++)
		r->prs[i].recent_active = false;
	self = pr_find(r, r->id);
	if (self)
		self->recent_active = true;
	/* The empty entry of a new term: committing it commits everything before (§5.4.2) and
	 * lets reads and conf changes go (thesis 6.4, 4.1). On OOM we simply lead without it
	 * until a proposal arrives. */
	log_push(r, r->term, RAFT_ENTRY_NOOP, NULL, 0);
	r->need_bcast = true;
}

/* Tally of votes among voters; our own counted as granted. */
static void poll_result(struct raft *r, unsigned *ret_granted, unsigned *ret_rejected)
{
	unsigned g = 0, j = 0;

	for (unsigned i = 0; i < r->n_prs; i++) {
		g += r->prs[i].vote_granted;
		j += r->prs[i].vote_rejected;
	}
	*ret_granted = g;
	*ret_rejected = j;
}

static void campaign(struct raft *r, bool pre, bool force)
{
	enum raft_msg_type type = pre ? RAFT_MSG_PRE_VOTE : RAFT_MSG_VOTE;
	uint64_t term_for;
	struct progress *self;
	unsigned g, j;

	if (!promotable(r))
		return;
	if (pre) {
		reset(r, r->term);
		r->role = RAFT_PRE_CANDIDATE;
		term_for = r->term + 1;
	} else {
		reset(r, r->term + 1);
		r->role = RAFT_CANDIDATE;
		r->vote = r->id;
		term_for = r->term;
	}
	TRACE(r, pre ? "become pre-candidate" : "become candidate", term_for, last_index(r));
	self = pr_find(r, r->id);
	self->vote_granted = true;
	poll_result(r, &g, &j);
	if (g >= quorum(r)) {
		if (pre)
			campaign(r, false, force);
		else
			become_leader(r);
		return;
	}
	for (unsigned i = 0; i < r->n_prs; i++) {
		struct raft_msg *m;

		if (r->prs[i].id == r->id)
			continue;
		m = msg_new(r, type, r->prs[i].id);
		if (!m)
			continue;
		m->term = term_for;
		m->index = last_index(r);
		m->log_term = last_term(r);
		m->force = force;
	}
}

/* ---- commit (§5.3, §5.4.2) ---- */

static void commit_to(struct raft *r, uint64_t index)
{
	if (index > r->commit) {
		if (index > last_index(r))
			index = last_index(r);
		if (index > r->commit)
			r->commit = index;
	}
}

static void on_first_commit_in_term(struct raft *r)
{
	r->committed_in_term = true;
	/* Reads that arrived before now could not be served (thesis 6.4 step 1). */
	for (size_t i = 0; i < r->n_reads; i++) {
		if (r->reads[i].round == 0) {
			r->reads[i].index = r->commit;
			r->reads[i].round = r->read_round + 1;
			r->read_round_needed = true;
		}
	}
}

/* Advance commit to the highest index a quorum of voters holds, if it is of this term. */
static bool maybe_commit(struct raft *r)
{
	uint64_t m[RAFT_MAX_VOTERS], c;
	unsigned n = 0;

	if (r->role != RAFT_LEADER || r->conf.n == 0)
		return false;
	for (unsigned i = 0; i < r->n_prs; i++)
		m[n++] = r->prs[i].match;
	/* sort descending (n <= 16) */
	for (unsigned i = 1; i < n; i++)
		for (unsigned k = i; k > 0 && m[k] > m[k - 1]; k--) {
			uint64_t t = m[k];
			m[k] = m[k - 1];
			m[k - 1] = t;
		}
	c = m[quorum(r) - 1];
	if (c <= r->commit || term_at(r, c) != r->term)
		return false;
	r->commit = c;
	TRACE(r, "commit", c, r->term);
	if (!r->committed_in_term)
		on_first_commit_in_term(r);
	/* A leader that committed its own removal hands over (thesis 4.2.2). */
	if (r->conf_index <= r->commit && !promotable(r)) {
		TRACE(r, "removed: stepping down", r->conf_index, 0);
		become_follower(r, r->term, 0);
		return false;
	}
	return true;
}

/* ---- replication (§5.3; etcd-style progress tracking) ---- */

static bool pr_paused(const struct raft *r, const struct progress *pr)
{
	switch (pr->state) {
	case PR_PROBE:
		return pr->probe_sent;
	case PR_REPLICATE:
		return pr->infl_count >= r->max_inflight;
	case PR_SNAPSHOT:
		return true;
	}
	return true;
}

static void infl_add(struct progress *pr, unsigned max, uint64_t index)
{
	if (pr->infl_count >= max)
		return;
	pr->infl[(pr->infl_start + pr->infl_count) % RAFT_MAX_INFLIGHT] = index;
	pr->infl_count++;
}

static void infl_free_to(struct progress *pr, uint64_t index)
{
	while (pr->infl_count && pr->infl[pr->infl_start] <= index) {
		pr->infl_start = (pr->infl_start + 1) % RAFT_MAX_INFLIGHT;
		pr->infl_count--;
	}
}

static void become_probe(struct raft *r, struct progress *pr)
{
	pr->state = PR_PROBE;
	pr->probe_sent = false;
	pr->infl_count = 0;
	pr->next = pr->match + 1;
	(void)r;
}

static void become_replicate(struct progress *pr)
{
	pr->state = PR_REPLICATE;
	pr->probe_sent = false;
	pr->infl_count = 0;
	pr->next = pr->match + 1;
}

static void send_chunk(struct raft *r, struct progress *pr)
{
	struct raft_msg *m = msg_new(r, RAFT_MSG_SNAPSHOT, pr->id);
	size_t off = (size_t)pr->snap_acked, len;
	void *chunk = NULL;

	pr->snap_ticks = 0;
	if (!m)
		return;
	len = r->snap_len - off;
	if (len > r->max_chunk)
		len = r->max_chunk;
	if (len) {
		chunk = rmalloc(r, len);
		if (!chunk) {
			r->n_msgs--;
			return;
		}
		memcpy(chunk, (const uint8_t *)r->snap_data + off, len);
	}
	m->snap_index = r->snap_index;
	m->snap_term = r->snap_term;
	m->snap_conf = r->snap_conf;
	m->snap_offset = off;
	m->snap_size = r->snap_len;
	m->chunk = chunk;
	m->chunk_len = len;
	m->snap_done = off + len == r->snap_len;
	m->commit = r->commit;
	TRACE(r, "send snapshot chunk", pr->id, off);
}

/* The follower needs entries we compacted away: stream the snapshot (§7, thesis 5.3). */
static bool send_snapshot(struct raft *r, struct progress *pr)
{
	if (!r->snap_data && r->snap_index > 0) {
		TRACE(r, "no snapshot data to send", pr->id, r->snap_index);
		return false;
	}
	pr->state = PR_SNAPSHOT;
	pr->snap_index = r->snap_index;
	pr->snap_acked = 0;
	pr->infl_count = 0;
	send_chunk(r, pr);
	return true;
}

/* Send the follower what it is missing, if its state allows. Returns true if a message went. */
static bool send_append(struct raft *r, struct progress *pr, bool allow_empty)
{
	uint64_t prev, prev_term, last = last_index(r), i;
	size_t n = 0, bytes = 0, total;
	struct raft_msg *m;
	struct raft_entry *ents;
	uint8_t *data;

	if (pr->id == r->id || pr_paused(r, pr))
		return false;
	prev = pr->next - 1;
	prev_term = term_at(r, prev);
	if (prev < r->snap_index || (prev > 0 && prev_term == 0))
		return send_snapshot(r, pr);
	for (i = pr->next; i <= last && n < r->max_entries; i++) {
		const struct raft_entry *e = entry_at(r, i);

		if (n > 0 && bytes + e->len > r->max_bytes)
			break;
		bytes += e->len;
		n++;
	}
	/* An empty append still carries the commit index and, in replicate, makes a follower
	 * that lost our last append reject, which sends it back to probing. */
	if (!n && !allow_empty)
		return false;
	m = msg_new(r, RAFT_MSG_APPEND, pr->id);
	if (!m)
		return false;
	m->index = prev;
	m->log_term = prev_term;
	m->commit = r->commit;
	if (n) {
		total = n * sizeof(struct raft_entry) + bytes;
		ents = rmalloc(r, total);
		if (!ents) {
			r->n_msgs--;
			return false;
		}
		data = (uint8_t *)(ents + n);
		for (size_t k = 0; k < n; k++) {
			const struct raft_entry *e = entry_at(r, pr->next + k);

			ents[k] = *e;
			if (e->len) {
				memcpy(data, e->data, e->len);
				ents[k].data = data;
				data += e->len;
			} else {
				ents[k].data = NULL;
			}
		}
		m->entries = ents;
		m->n_entries = n;
	}
	if (pr->state == PR_REPLICATE) {
		if (n) {
			pr->next += n;
			infl_add(pr, r->max_inflight, pr->next - 1);
		}
	} else {
		pr->probe_sent = true;
	}
	return true;
}

static void bcast_append(struct raft *r)
{
	for (unsigned i = 0; i < r->n_prs; i++) {
		struct progress *pr = &r->prs[i];

		if (pr->id == r->id)
			continue;
		if (!send_append(r, pr, true))
			continue;
		/* replicate: fill the window */
		while (pr->state == PR_REPLICATE && send_append(r, pr, false))
			;
	}
}

static void send_heartbeat(struct raft *r, struct progress *pr, uint64_t ctx)
{
	struct raft_msg *m = msg_new(r, RAFT_MSG_HEARTBEAT, pr->id);

	if (!m)
		return;
	/* Never more than it matches: its log past that may still differ from ours. */
	m->commit = pr->match < r->commit ? pr->match : r->commit;
	m->context = ctx;
}

static void bcast_heartbeat(struct raft *r, uint64_t ctx)
{
	for (unsigned i = 0; i < r->n_prs; i++)
		if (r->prs[i].id != r->id)
			send_heartbeat(r, &r->prs[i], ctx);
}

static void send_timeout_now(struct raft *r, uint64_t to)
{
	msg_new(r, RAFT_MSG_TIMEOUT_NOW, to);
	TRACE(r, "send timeout-now", to, r->term);
}

/* ---- ReadIndex (thesis 6.4) ---- */

static void answer_read(struct raft *r, uint64_t from, uint64_t ctx, uint64_t index)
{
	if (from == r->id) {
		if (grow(r, (void **)&r->rstates, &r->cap_rstates, r->n_rstates + 1,
		         sizeof(*r->rstates)) < 0)
			return;
		r->rstates[r->n_rstates++] = (struct raft_read_state){.ctx = ctx, .index = index};
	} else {
		struct raft_msg *m = msg_new(r, RAFT_MSG_READ_INDEX_RESP, from);

		if (m) {
			m->context = ctx;
			m->index = index;
		}
	}
}

/* Serve every queued read whose heartbeat round a quorum confirmed. */
static void answer_reads(struct raft *r)
{
	size_t done = 0;

	while (done < r->n_reads) {
		struct pending_read *pr = &r->reads[done];
		unsigned acks = 0;

		if (pr->round == 0)
			break;
		for (unsigned i = 0; i < r->n_prs; i++)
			acks += r->prs[i].read_acked >= pr->round;
		if (acks < quorum(r))
			break;
		answer_read(r, pr->from, pr->ctx, pr->index);
		done++;
	}
	if (done) {
		memmove(r->reads, r->reads + done, (r->n_reads - done) * sizeof(*r->reads));
		r->n_reads -= done;
	}
}

static int leader_read(struct raft *r, uint64_t from, uint64_t ctx)
{
	struct pending_read *pr;

	if (grow(r, (void **)&r->reads, &r->cap_reads, r->n_reads + 1, sizeof(*r->reads)) < 0)
		return -ENOMEM;
	pr = &r->reads[r->n_reads++];
	pr->ctx = ctx;
	pr->from = from;
	pr->index = r->commit;
	pr->round = 0;
	if (r->committed_in_term) {
		pr->round = r->read_round + 1;
		r->read_round_needed = true;
	}
	return 0;
}

/* Reads asked during this loop turn share one heartbeat round. */
static void flush_read_round(struct raft *r)
{
	struct progress *self;

	if (!r->read_round_needed || r->role != RAFT_LEADER)
		return;
	r->read_round_needed = false;
	r->read_round++;
	self = pr_find(r, r->id);
	if (self)
		self->read_acked = r->read_round;
	bcast_heartbeat(r, r->read_round);
	answer_reads(r);
}

/* ---- handling messages ---- */

static void reply(struct raft *r, const struct raft_msg *in, enum raft_msg_type type,
                  struct raft_msg **ret)
{
	*ret = msg_new(r, type, in->from);
}

static void handle_vote(struct raft *r, const struct raft_msg *m)
{
	bool pre = m->type == RAFT_MSG_PRE_VOTE;
	bool can_vote, up_to_date;
	struct raft_msg *out;

	can_vote =
	    r->vote == m->from || (r->vote == 0 && r->leader == 0) || (pre && m->term > r->term);
	/* §5.4.1: only for a log at least as up-to-date as ours */
	up_to_date = m->log_term > last_term(r) ||
	             (m->log_term == last_term(r) && m->index >= last_index(r));
#ifdef RAFT_PLANTED_BUG
	up_to_date = true; /* the simulator must catch this (tests/sim/planted_bug.sh) */
#endif
	reply(r, m, pre ? RAFT_MSG_PRE_VOTE_RESP : RAFT_MSG_VOTE_RESP, &out);
	if (can_vote && up_to_date) {
		TRACE(r, pre ? "grant pre-vote" : "grant vote", m->from, m->term);
		if (out)
			out->term = m->term;
		if (!pre) {
			r->election_elapsed = 0;
			r->vote = m->from;
		}
	} else {
		TRACE(r, pre ? "reject pre-vote" : "reject vote", m->from, m->term);
		if (out)
			out->reject = true;
	}
}

static int handle_append(struct raft *r, const struct raft_msg *m)
{
	struct raft_msg *out;

	if (m->index < r->commit) {
		reply(r, m, RAFT_MSG_APPEND_RESP, &out);
		if (out)
			out->index = r->commit;
		return 0;
	}
	if (m->index <= last_index(r) && term_at(r, m->index) == m->log_term) {
		uint64_t last_new = m->index + m->n_entries;

		for (size_t i = 0; i < m->n_entries; i++) {
			const struct raft_entry *e = &m->entries[i];

			if (e->index <= last_index(r)) {
				if (term_at(r, e->index) == e->term)
					continue;
				truncate_from(r, e->index);
			}
			if (log_push(r, e->term, e->type, e->data, e->len) < 0)
				return -ENOMEM; /* no answer: the leader will retry */
		}
		commit_to(r, m->commit < last_new ? m->commit : last_new);
		reply(r, m, RAFT_MSG_APPEND_RESP, &out);
		if (out)
			out->index = last_new;
		return 0;
	}
	/* §5.3 with the optimisation of thesis 3.5 / etcd: point the leader at the last index
	 * whose term is <= the one it probed, so it skips a whole term per round trip. */
	reply(r, m, RAFT_MSG_APPEND_RESP, &out);
	if (out) {
		uint64_t hint = find_conflict_by_term(r, m->index, m->log_term);

		out->reject = true;
		out->index = m->index;
		out->reject_hint = hint;
		out->log_term = term_at(r, hint);
	}
	TRACE(r, "reject append", m->index, m->log_term);
	return 0;
}

static void install_snapshot(struct raft *r)
{
	TRACE(r, "install snapshot", r->in_index, r->in_term);
	free_entries(r, 0);
	rfree(r, r->snap_data);
	r->snap_index = r->in_index;
	r->snap_term = r->in_term;
	r->snap_conf = r->in_conf;
	r->snap_data = r->in_buf;
	r->snap_len = r->in_len;
	r->in_buf = NULL;
	r->in_len = r->in_cap = 0;
	r->in_index = r->in_term = 0;
	r->commit = r->snap_index;
	r->stable = r->snap_index; /* the ready persists the snapshot before anything else */
	r->snap_install = true;
	recompute_conf(r);
}

static void handle_snapshot(struct raft *r, const struct raft_msg *m)
{
	struct raft_msg *out;

	if (m->snap_index <= r->commit) {
		reply(r, m, RAFT_MSG_APPEND_RESP, &out);
		if (out)
			out->index = r->commit;
		return;
	}
	if (term_at(r, m->snap_index) == m->snap_term) {
		/* We hold the snapshot's last entry: the log already matches up to there, and
		 * entries after it may be ones we acknowledged; keep them (§7). */
		commit_to(r, m->snap_index);
		reply(r, m, RAFT_MSG_APPEND_RESP, &out);
		if (out)
			out->index = m->snap_index;
		return;
	}
	if (m->snap_offset == 0 &&
	    (m->snap_index != r->in_index || m->snap_term != r->in_term || r->in_len != 0)) {
		r->in_index = m->snap_index;
		r->in_term = m->snap_term;
		r->in_conf = m->snap_conf;
		r->in_len = 0;
	}
	if (m->snap_index != r->in_index || m->snap_term != r->in_term ||
	    m->snap_offset != r->in_len || m->snap_size > r->max_snap ||
	    r->in_len + m->chunk_len > m->snap_size) {
		reply(r, m, RAFT_MSG_SNAPSHOT_RESP, &out);
		if (out) {
			out->reject = true;
			out->snap_index = m->snap_index;
			out->snap_offset = m->snap_index == r->in_index ? r->in_len : 0;
		}
		return;
	}
	if (m->chunk_len) {
		if (grow(r, (void **)&r->in_buf, &r->in_cap, r->in_len + m->chunk_len, 1) < 0)
			return;
		memcpy(r->in_buf + r->in_len, m->chunk, m->chunk_len);
		r->in_len += m->chunk_len;
	}
	reply(r, m, RAFT_MSG_SNAPSHOT_RESP, &out);
	if (out) {
		out->snap_index = m->snap_index;
		out->snap_offset = r->in_len;
	}
	if (m->snap_done) {
		if (r->in_len != m->snap_size) {
			if (out) {
				out->reject = true;
				out->snap_offset = 0;
			}
			r->in_len = 0;
			return;
		}
		install_snapshot(r);
		if (out)
			out->snap_done = true;
	}
}

static void handle_append_resp(struct raft *r, const struct raft_msg *m, struct progress *pr)
{
	pr->recent_active = true;
	if (m->reject) {
		uint64_t hint = m->reject_hint;
		bool stale;

		if (m->log_term > 0)
			hint = find_conflict_by_term(r, m->reject_hint, m->log_term);
		if (pr->state == PR_REPLICATE) {
			stale = m->index <= pr->match;
			if (!stale)
				become_probe(r, pr);
		} else {
			stale = pr->next - 1 != m->index;
			if (!stale) {
				uint64_t next = m->index < hint + 1 ? m->index : hint + 1;

				if (next < pr->match + 1)
					next = pr->match + 1;
				pr->next = next ? next : 1;
				pr->probe_sent = false;
				if (pr->state == PR_SNAPSHOT)
					pr->state = PR_PROBE;
			}
		}
		if (!stale) {
			TRACE(r, "follower rejected, probing", pr->id, pr->next);
			send_append(r, pr, true);
		}
		return;
	}
	if (m->index > pr->match) {
		bool was_paused = pr_paused(r, pr);

		pr->match = m->index;
		if (pr->next < m->index + 1)
			pr->next = m->index + 1;
		if (pr->state == PR_PROBE)
			become_replicate(pr);
		else if (pr->state == PR_SNAPSHOT && pr->match >= pr->snap_index)
			become_probe(r, pr);
		else if (pr->state == PR_REPLICATE)
			infl_free_to(pr, m->index);
		if (maybe_commit(r))
			r->need_bcast = true; /* tell everyone the new commit index */
		if (r->role != RAFT_LEADER)
			return;
		if (was_paused || pr->state == PR_REPLICATE) {
			while (send_append(r, pr, false))
				if (pr->state != PR_REPLICATE)
					break;
		}
		if (m->from == r->transferee && pr->match == last_index(r))
			send_timeout_now(r, m->from);
	} else if (pr->state == PR_PROBE && pr->probe_sent && m->index + 1 >= pr->next) {
		/* the answer to our probe carried nothing new: we may probe again */
		pr->probe_sent = false;
	}
}

static void handle_snapshot_resp(struct raft *r, const struct raft_msg *m, struct progress *pr)
{
	pr->recent_active = true;
	if (pr->state != PR_SNAPSHOT || m->snap_index != pr->snap_index)
		return;
	if (m->snap_done && !m->reject) {
		if (pr->match < pr->snap_index)
			pr->match = pr->snap_index;
		become_probe(r, pr);
		TRACE(r, "follower installed snapshot", pr->id, pr->snap_index);
		if (maybe_commit(r))
			r->need_bcast = true;
		send_append(r, pr, true);
		return;
	}
	if (pr->snap_index != r->snap_index || !r->snap_data) {
		/* compacted again since: start over with the newer snapshot */
		send_snapshot(r, pr);
		return;
	}
	if (m->reject) {
		pr->snap_acked = m->snap_offset <= r->snap_len ? m->snap_offset : 0;
		send_chunk(r, pr);
	} else if (m->snap_offset > pr->snap_acked && m->snap_offset <= r->snap_len) {
		pr->snap_acked = m->snap_offset;
		if (pr->snap_acked < r->snap_len)
			send_chunk(r, pr);
	}
}

static void handle_heartbeat_resp(struct raft *r, const struct raft_msg *m, struct progress *pr)
{
	pr->recent_active = true;
	pr->probe_sent = false;
	/* If the window stayed full, an append may have been lost: let one more go. */
	if (pr->state == PR_REPLICATE && pr->infl_count >= r->max_inflight) {
		pr->infl_start = (pr->infl_start + 1) % RAFT_MAX_INFLIGHT;
		pr->infl_count--;
	}
	if (pr->match < last_index(r))
		send_append(r, pr, true);
	if (m->context > pr->read_acked) {
		pr->read_acked = m->context;
		answer_reads(r);
	}
}

static int step_leader(struct raft *r, const struct raft_msg *m)
{
	struct progress *pr = pr_find(r, m->from);

	switch (m->type) {
	case RAFT_MSG_READ_INDEX:
		return leader_read(r, m->from, m->context);
	case RAFT_MSG_APPEND_RESP:
		if (pr)
			handle_append_resp(r, m, pr);
		return 0;
	case RAFT_MSG_HEARTBEAT_RESP:
		if (pr)
			handle_heartbeat_resp(r, m, pr);
		return 0;
	case RAFT_MSG_SNAPSHOT_RESP:
		if (pr)
			handle_snapshot_resp(r, m, pr);
		return 0;
	default:
		return 0;
	}
}

static int step_follower(struct raft *r, const struct raft_msg *m)
{
	struct raft_msg *out;

	switch (m->type) {
	case RAFT_MSG_APPEND:
		r->election_elapsed = 0;
		r->leader = m->from;
		return handle_append(r, m);
	case RAFT_MSG_HEARTBEAT:
		r->election_elapsed = 0;
		r->leader = m->from;
		commit_to(r, m->commit);
		reply(r, m, RAFT_MSG_HEARTBEAT_RESP, &out);
		if (out)
			out->context = m->context;
		return 0;
	case RAFT_MSG_SNAPSHOT:
		r->election_elapsed = 0;
		r->leader = m->from;
		handle_snapshot(r, m);
		return 0;
	case RAFT_MSG_TIMEOUT_NOW:
		TRACE(r, "timeout-now: campaigning", m->from, r->term);
		campaign(r, false, true);
		return 0;
	case RAFT_MSG_READ_INDEX_RESP:
		if (!m->reject)
			answer_read(r, r->id, m->context, m->index);
		return 0;
	default:
		return 0;
	}
}

static int step_candidate(struct raft *r, const struct raft_msg *m)
{
	bool pre = r->role == RAFT_PRE_CANDIDATE;
	struct progress *pr;
	unsigned g, j;

	switch (m->type) {
	case RAFT_MSG_APPEND:
	case RAFT_MSG_HEARTBEAT:
	case RAFT_MSG_SNAPSHOT:
		/* a leader of this term exists (§5.2) */
		become_follower(r, m->term, m->from);
		return step_follower(r, m);
	case RAFT_MSG_VOTE_RESP:
	case RAFT_MSG_PRE_VOTE_RESP:
		if ((m->type == RAFT_MSG_PRE_VOTE_RESP) != pre)
			return 0;
		if (pre && !m->reject && m->term != r->term + 1)
			return 0;
		pr = pr_find(r, m->from);
		if (!pr || pr->vote_granted || pr->vote_rejected)
			return 0;
		if (m->reject)
			pr->vote_rejected = true;
		else
			pr->vote_granted = true;
		poll_result(r, &g, &j);
		if (g >= quorum(r)) {
			if (pre)
				campaign(r, false, false);
			else
				become_leader(r);
		} else if (j >= quorum(r)) {
			become_follower(r, r->term, 0);
		}
		return 0;
	default:
		return 0;
	}
}

static bool msg_valid(const struct raft *r, const struct raft_msg *m)
{
	if (m->to != r->id || m->from == 0 || m->from == r->id || m->term == 0)
		return false;
	if (m->type < RAFT_MSG_APPEND || m->type > RAFT_MSG_PROP)
		return false;
	if (m->n_entries && !m->entries)
		return false;
	if (m->type == RAFT_MSG_PROP)
		return m->n_entries == 1 && m->entries[0].type <= RAFT_ENTRY_NOOP &&
		       (!m->entries[0].len || m->entries[0].data);
	for (size_t i = 0; i < m->n_entries; i++) {
		const struct raft_entry *e = &m->entries[i];

		if (e->index != m->index + 1 + i || e->term > m->term || (e->len && !e->data))
			return false;
		if (i && e->term < m->entries[i - 1].term)
			return false;
		if (e->type > RAFT_ENTRY_CONF)
			return false;
	}
	if (m->type == RAFT_MSG_SNAPSHOT &&
	    (!conf_valid(&m->snap_conf) || m->snap_index == 0 || (m->chunk_len && !m->chunk)))
		return false;
	return true;
}

int raft_step(struct raft *r, const struct raft_msg *m)
{
	int rc = 0;

	if (!msg_valid(r, m))
		return FLT_EPROTO;
	r->oom = false;
	if (m->type == RAFT_MSG_PROP) {
		/* Terms do not apply to a forwarded command: a leader takes it, anyone else drops
		 * it (the proposer times out), as etcd does without a leader. */
		const struct raft_entry *e = &m->entries[0];

		if (r->role != RAFT_LEADER || r->transferee) {
			TRACE(r, "drop forwarded proposal", m->from, r->term);
			return 0;
		}
		if (log_push(r, r->term, e->type, e->data, e->len) < 0)
			return -ENOMEM;
		r->need_bcast = true;
		return 0;
	}
	if (m->term > r->term) {
		if (m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PRE_VOTE) {
			/* Leader lease (thesis 4.2.3): while we hear from a leader, a node that
			 * lost contact must not disrupt it. A transfer's election is exempt. */
			bool in_lease = r->check_quorum && r->leader != 0 &&
			                r->election_elapsed < r->election_tick;

			if (in_lease && !m->force) {
				TRACE(r, "ignore vote in lease", m->from, m->term);
				return 0;
			}
		}
		if (m->type == RAFT_MSG_PRE_VOTE ||
		    (m->type == RAFT_MSG_PRE_VOTE_RESP && !m->reject)) {
			/* pre-votes never change terms */
		} else {
			bool from_leader = m->type == RAFT_MSG_APPEND ||
			                   m->type == RAFT_MSG_HEARTBEAT ||
			                   m->type == RAFT_MSG_SNAPSHOT;

			become_follower(r, m->term, from_leader ? m->from : 0);
		}
	} else if (m->term < r->term) {
		struct raft_msg *out;

		if ((r->check_quorum || r->pre_vote) &&
		    (m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT)) {
			/* A stale leader cut off by pre-vote would never learn the new term
			 * otherwise: tell it, so it steps down. */
			reply(r, m, RAFT_MSG_APPEND_RESP, &out);
		} else if (m->type == RAFT_MSG_PRE_VOTE) {
			reply(r, m, RAFT_MSG_PRE_VOTE_RESP, &out);
			if (out)
				out->reject = true;
		}
		return r->oom ? -ENOMEM : 0;
	}

	if (m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PRE_VOTE) {
		handle_vote(r, m);
	} else {
		switch (r->role) {
		case RAFT_LEADER:
			rc = step_leader(r, m);
			break;
		case RAFT_FOLLOWER:
			rc = step_follower(r, m);
			break;
		default:
			rc = step_candidate(r, m);
			break;
		}
	}
	if (rc == 0 && r->oom)
		rc = -ENOMEM;
	return rc;
}

/* ---- ticks ---- */

static bool quorum_active(struct raft *r)
{
	unsigned n = 0;

	for (unsigned i = 0; i < r->n_prs; i++) {
		struct progress *pr = &r->prs[i];

		if (pr->id == r->id || pr->recent_active)
			n++;
		if (pr->id != r->id)
			pr->recent_active = false;
	}
	return n >= quorum(r);
}

void raft_tick(struct raft *r)
{
	if (r->role != RAFT_LEADER) {
		r->election_elapsed++;
		if (promotable(r) && r->election_elapsed >= r->randomized_timeout) {
			r->election_elapsed = 0;
			campaign(r, r->pre_vote, false);
		}
		return;
	}
	r->heartbeat_elapsed++;
	r->election_elapsed++;
	if (r->election_elapsed >= r->election_tick) {
		r->election_elapsed = 0;
		if (r->check_quorum && !quorum_active(r)) {
			TRACE(r, "lost quorum: stepping down", r->term, 0);
			become_follower(r, r->term, 0);
			return;
		}
		if (r->transferee) {
			TRACE(r, "leadership transfer abandoned", r->transferee, r->term);
			r->transferee = 0;
		}
	}
	for (unsigned i = 0; i < r->n_prs; i++) {
		struct progress *pr = &r->prs[i];

		if (pr->state == PR_SNAPSHOT && ++pr->snap_ticks >= r->election_tick) {
			if (pr->snap_index != r->snap_index)
				send_snapshot(r, pr);
			else
				send_chunk(r, pr);
		}
	}
	if (r->heartbeat_elapsed >= r->heartbeat_tick) {
		r->heartbeat_elapsed = 0;
		/* carry the newest round, in case its own heartbeats were lost */
		bcast_heartbeat(r, r->n_reads ? r->read_round : 0);
	}
}

/* ---- client requests ---- */

int64_t raft_propose(struct raft *r, const void *data, size_t len, enum raft_entry_type type)
{
	if (r->role != RAFT_LEADER || r->transferee)
		return FLT_ENOTLEADER;
	if (type != RAFT_ENTRY_NORMAL && type != RAFT_ENTRY_NOOP)
		return FLT_EINVAL;
	if (log_push(r, r->term, (uint8_t)type, data, len) < 0)
		return -ENOMEM;
	r->need_bcast = true;
	return (int64_t)last_index(r);
}

int64_t raft_propose_forward(struct raft *r, const void *data, size_t len,
                             enum raft_entry_type type)
{
	struct raft_entry *e;
	struct raft_msg *m;

	if (r->role == RAFT_LEADER)
		return raft_propose(r, data, len, type);
	if (type != RAFT_ENTRY_NORMAL && type != RAFT_ENTRY_NOOP)
		return FLT_EINVAL;
	if (!r->leader || r->leader == r->id)
		return FLT_ENOTLEADER;
	/* one block, entry then data, as msg_release expects */
	e = rmalloc(r, sizeof(*e) + len);
	if (!e)
		return -ENOMEM;
	m = msg_new(r, RAFT_MSG_PROP, r->leader);
	if (!m) {
		rfree(r, e);
		return -ENOMEM;
	}
	memset(e, 0, sizeof(*e));
	e->type = (uint8_t)type;
	e->len = len;
	if (len) {
		memcpy(e + 1, data, len);
		e->data = e + 1;
	}
	m->entries = e;
	m->n_entries = 1;
	return 0;
}

int64_t raft_propose_conf_change(struct raft *r, enum raft_conf_op op, uint64_t id)
{
	uint8_t buf[RAFT_CONF_ENCODED_MAX];
	struct raft_conf c = r->conf;
	size_t len;

	if (r->role != RAFT_LEADER || r->transferee)
		return FLT_ENOTLEADER;
	if (!r->committed_in_term || r->conf_index > r->commit)
		return -EBUSY;
	if (id == 0)
		return FLT_EINVAL;
	if (op == RAFT_CONF_ADD) {
		if (raft_conf_has(&c, id))
			return FLT_EINVAL;
		if (c.n >= RAFT_MAX_VOTERS)
			return FLT_ETOOBIG;
		c.ids[c.n++] = id;
	} else if (op == RAFT_CONF_REMOVE) {
		uint32_t k = 0;

		if (!raft_conf_has(&c, id) || c.n == 1)
			return FLT_EINVAL;
		for (uint32_t i = 0; i < c.n; i++)
			if (c.ids[i] != id)
				c.ids[k++] = c.ids[i];
		c.n = k;
	} else {
		return FLT_EINVAL;
	}
	len = raft_conf_encode(&c, buf);
	if (log_push(r, r->term, RAFT_ENTRY_CONF, buf, len) < 0)
		return -ENOMEM;
	TRACE(r, op == RAFT_CONF_ADD ? "propose add voter" : "propose remove voter", id,
	      last_index(r));
	/* the quorum may have shrunk */
	maybe_commit(r);
	r->need_bcast = true;
	return (int64_t)last_index(r);
}

int raft_read_index(struct raft *r, uint64_t ctx)
{
	struct raft_msg *m;

	if (r->role == RAFT_LEADER)
		return leader_read(r, r->id, ctx);
	if (!r->leader)
		return FLT_ENOTLEADER;
	r->oom = false;
	m = msg_new(r, RAFT_MSG_READ_INDEX, r->leader);
	if (!m)
		return -ENOMEM;
	m->context = ctx;
	return 0;
}

int raft_transfer_leadership(struct raft *r, uint64_t to)
{
	struct progress *pr;

	if (r->role != RAFT_LEADER)
		return FLT_ENOTLEADER;
	if (to == r->id)
		return 0;
	pr = pr_find(r, to);
	if (!pr)
		return FLT_EINVAL;
	if (r->transferee == to)
		return 0;
	TRACE(r, "transfer leadership", to, r->term);
	r->transferee = to;
	r->election_elapsed = 0; /* the transfer gets one election timeout */
	if (pr->match == last_index(r))
		send_timeout_now(r, to);
	else
		send_append(r, pr, true);
	return 0;
}

int raft_compact(struct raft *r, uint64_t index, const void *data, size_t len)
{
	struct raft_conf c = r->snap_conf;
	void *copy = NULL;
	uint64_t term;
	size_t drop;

	if (index <= r->snap_index || index > r->applied)
		return FLT_EINVAL;
	if (len) {
		copy = rmalloc(r, len);
		if (!copy)
			return -ENOMEM;
		memcpy(copy, data, len);
	}
	term = term_at(r, index);
	drop = (size_t)(index - r->snap_index);
	for (size_t i = 0; i < drop; i++) {
		if (r->log[i].type == RAFT_ENTRY_CONF)
			raft_conf_decode(r->log[i].data, r->log[i].len, &c);
		rfree(r, (void *)r->log[i].data);
	}
	memmove(r->log, r->log + drop, (r->log_n - drop) * sizeof(*r->log));
	r->log_n -= drop;
	r->snap_index = index;
	r->snap_term = term;
	r->snap_conf = c;
	rfree(r, r->snap_data);
	r->snap_data = copy;
	r->snap_len = len;
	TRACE(r, "compacted", index, term);
	return 0;
}

/* ---- ready / advance ---- */

static void committed_range(const struct raft *r, uint64_t *lo, uint64_t *hi)
{
	uint64_t from = r->applied > r->snap_index ? r->applied : r->snap_index;
	uint64_t to = r->commit < last_index(r) ? r->commit : last_index(r);

	*lo = from + 1;
	*hi = to;
}

static struct raft_soft_state soft_state(const struct raft *r)
{
	return (struct raft_soft_state){.leader = r->leader, .role = r->role};
}

bool raft_has_ready(const struct raft *r)
{
	uint64_t lo, hi;
	struct raft_soft_state ss = soft_state(r);

	if (r->in_ready)
		return false;
	committed_range(r, &lo, &hi);
	return r->n_msgs || r->n_rstates || r->snap_install || r->stable < last_index(r) ||
	       hi >= lo || r->term != r->prev_hs.term || r->vote != r->prev_hs.vote ||
	       r->commit != r->prev_hs.commit || ss.leader != r->prev_ss.leader ||
	       ss.role != r->prev_ss.role || (r->need_bcast && r->role == RAFT_LEADER) ||
	       (r->read_round_needed && r->role == RAFT_LEADER);
}

int raft_ready(struct raft *r, struct raft_ready *rd)
{
	uint64_t lo, hi;

	r->oom = false;
	if (r->role == RAFT_LEADER) {
		if (r->need_bcast)
			bcast_append(r);
		flush_read_round(r);
	}
	r->need_bcast = false;
	memset(rd, 0, sizeof(*rd));
	rd->hs = (struct raft_hard_state){.term = r->term, .vote = r->vote, .commit = r->commit};
	rd->hs_changed = memcmp(&rd->hs, &r->prev_hs, sizeof(rd->hs)) != 0;
	if (r->snap_install) {
		r->ready_snap = (struct raft_snapshot){.index = r->snap_index,
		                                       .term = r->snap_term,
		                                       .conf = r->snap_conf,
		                                       .data = r->snap_data,
		                                       .len = r->snap_len};
		rd->snapshot = &r->ready_snap;
	}
	if (r->stable < last_index(r)) {
		rd->entries = &r->log[r->stable - r->snap_index];
		rd->n_entries = (size_t)(last_index(r) - r->stable);
	}
	rd->msgs = r->msgs;
	rd->n_msgs = r->n_msgs;
	committed_range(r, &lo, &hi);
	if (hi >= lo) {
		rd->committed = entry_at(r, lo);
		rd->n_committed = (size_t)(hi - lo + 1);
	}
	rd->reads = r->rstates;
	rd->n_reads = r->n_rstates;
	rd->soft = soft_state(r);
	rd->soft_changed = rd->soft.leader != r->prev_ss.leader || rd->soft.role != r->prev_ss.role;
	r->in_ready = true;
	/* An allocation that failed while flushing only lost messages: Raft resends. */
	r->oom = false;
	return 0;
}

void raft_advance(struct raft *r, const struct raft_ready *rd)
{
	struct progress *self;

	r->in_ready = false;
	if (rd->hs_changed)
		r->prev_hs = rd->hs;
	if (rd->soft_changed)
		r->prev_ss = rd->soft;
	if (rd->snapshot) {
		r->snap_install = false;
		if (r->applied < rd->snapshot->index)
			r->applied = rd->snapshot->index;
	}
	if (rd->n_entries) {
		uint64_t last = rd->entries[rd->n_entries - 1].index;

		if (last > r->stable)
			r->stable = last;
	}
	if (rd->n_committed)
		r->applied = rd->committed[rd->n_committed - 1].index;
	for (size_t i = 0; i < r->n_msgs; i++)
		msg_release(r, &r->msgs[i]);
	r->n_msgs = 0;
	r->n_rstates = 0;
	if (r->role == RAFT_LEADER) {
		self = pr_find(r, r->id);
		if (self && self->match < r->stable)
			self->match = r->stable;
		if (maybe_commit(r))
			r->need_bcast = true;
	}
}

/* ---- lifecycle ---- */

int raft_new(const struct raft_config *cfg, struct raft **ret)
{
	struct raft *r;

	if (!cfg->alloc || !cfg->id || cfg->election_tick < 2 || !cfg->heartbeat_tick ||
	    cfg->heartbeat_tick >= cfg->election_tick || !cfg->max_inflight ||
	    cfg->max_inflight > RAFT_MAX_INFLIGHT || !cfg->max_entries_per_msg ||
	    !cfg->max_snapshot_chunk || cfg->n_voters > RAFT_MAX_VOTERS ||
	    (cfg->n_voters && !cfg->voters))
		return FLT_EINVAL;
	r = cfg->alloc->malloc(cfg->alloc->ud, sizeof(*r));
	if (!r)
		return -ENOMEM;
	memset(r, 0, sizeof(*r));
	r->a = *cfg->alloc;
	r->id = cfg->id;
	r->election_tick = cfg->election_tick;
	r->heartbeat_tick = cfg->heartbeat_tick;
	r->max_inflight = cfg->max_inflight;
	r->pre_vote = cfg->pre_vote;
	r->check_quorum = cfg->check_quorum;
	r->max_entries = cfg->max_entries_per_msg;
	r->max_bytes = cfg->max_bytes_per_msg ? cfg->max_bytes_per_msg : 1;
	r->max_chunk = cfg->max_snapshot_chunk;
	r->max_snap = cfg->max_snapshot_size ? cfg->max_snapshot_size : (size_t)1 << 30;
	r->trace = cfg->trace;
	r->trace_ud = cfg->trace_ud;
	r->rng = cfg->seed ^ (cfg->id * 0x2545f4914f6cdd1dULL);
	r->role = RAFT_FOLLOWER;
	reset_election_timeout(r);
	if (cfg->n_voters) {
		/* Bootstrap: every initial member writes the same entry 1 (term 1). */
		struct raft_conf c = {.n = (uint32_t)cfg->n_voters};
		uint8_t buf[RAFT_CONF_ENCODED_MAX];
		size_t len;

		memcpy(c.ids, cfg->voters, cfg->n_voters * sizeof(uint64_t));
		if (!conf_valid(&c)) {
			raft_free(r);
			return FLT_EINVAL;
		}
		len = raft_conf_encode(&c, buf);
		r->term = 1;
		if (log_push(r, 1, RAFT_ENTRY_CONF, buf, len) < 0) {
			raft_free(r);
			return -ENOMEM;
		}
	}
	*ret = r;
	return 0;
}

int raft_restore(struct raft *r, const struct raft_persisted *p)
{
	uint64_t last = p->snap.index + p->n_entries, commit;
	void *copy = NULL;

	if (r->in_ready || !conf_valid(&p->snap.conf) || (p->snap.index && !p->snap.term))
		return FLT_EINVAL;
	for (size_t i = 0; i < p->n_entries; i++) {
		const struct raft_entry *e = &p->entries[i];

		if (e->index != p->snap.index + 1 + i ||
		    e->term < (i ? p->entries[i - 1].term : p->snap.term) || e->term > p->hs.term ||
		    (e->len && !e->data))
			return FLT_EINVAL;
	}
	commit = p->hs.commit > p->snap.index ? p->hs.commit : p->snap.index;
	if (commit > last || p->applied < p->snap.index || p->applied > commit)
		return FLT_EINVAL;
	if (p->snap.len) {
		copy = rmalloc(r, p->snap.len);
		if (!copy)
			return -ENOMEM;
		memcpy(copy, p->snap.data, p->snap.len);
	}
	free_entries(r, 0);
	rfree(r, r->snap_data);
	r->snap_data = copy;
	r->snap_len = p->snap.len;
	r->snap_index = p->snap.index;
	r->snap_term = p->snap.term;
	r->snap_conf = p->snap.conf;
	r->snap_install = false;
	r->n_prs = 0;
	for (size_t i = 0; i < p->n_entries; i++) {
		const struct raft_entry *e = &p->entries[i];

		if (log_push(r, e->term, e->type, e->data, e->len) < 0)
			return -ENOMEM;
	}
	r->term = p->hs.term;
	r->vote = p->hs.vote;
	r->commit = commit;
	r->applied = p->applied;
	r->stable = last;
	recompute_conf(r);
	become_follower(r, r->term, 0);
	r->prev_hs = (struct raft_hard_state){.term = r->term, .vote = r->vote, .commit = commit};
	r->prev_ss = soft_state(r);
	return 0;
}

void raft_free(struct raft *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n_msgs; i++)
		msg_release(r, &r->msgs[i]);
	free_entries(r, 0);
	rfree(r, r->log);
	rfree(r, r->snap_data);
	rfree(r, r->in_buf);
	rfree(r, r->msgs);
	rfree(r, r->rstates);
	rfree(r, r->reads);
	r->a.free(r->a.ud, r);
}

/* ---- getters ---- */

uint64_t raft_id(const struct raft *r)
{
	return r->id;
}
uint64_t raft_term(const struct raft *r)
{
	return r->term;
}
uint64_t raft_vote(const struct raft *r)
{
	return r->vote;
}
enum raft_role raft_role(const struct raft *r)
{
	return r->role;
}
uint64_t raft_leader(const struct raft *r)
{
	return r->leader;
}
uint64_t raft_commit_index(const struct raft *r)
{
	return r->commit;
}
uint64_t raft_applied_index(const struct raft *r)
{
	return r->applied;
}
uint64_t raft_first_index(const struct raft *r)
{
	return r->snap_index + 1;
}
uint64_t raft_last_index(const struct raft *r)
{
	return last_index(r);
}
uint64_t raft_snapshot_index(const struct raft *r)
{
	return r->snap_index;
}
uint64_t raft_snapshot_term(const struct raft *r)
{
	return r->snap_term;
}
const struct raft_conf *raft_snapshot_conf(const struct raft *r)
{
	return &r->snap_conf;
}
uint64_t raft_term_at(const struct raft *r, uint64_t index)
{
	return term_at(r, index);
}
const struct raft_entry *raft_entry_at(const struct raft *r, uint64_t index)
{
	return entry_at(r, index);
}
const struct raft_conf *raft_conf(const struct raft *r)
{
	return &r->conf;
}
uint64_t raft_transferee(const struct raft *r)
{
	return r->transferee;
}
