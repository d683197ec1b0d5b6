/* The Raft core (see raft.h): roles, elections with pre-vote and check-quorum, message dispatch,
 * ticks, proposals, ready/advance, lifecycle, getters; the log is in raft_log.c, the leader's side
 * in raft_repl.c. Pure: no I/O, clock or libc allocation. §: Raft paper; thesis x.y: Ongaro's. */
#include "raft_int.h"

#include <errno.h>
#include <string.h>

#include "util/err.h"

/* ---- small helpers ---- */

static uint64_t rng_next(struct raft *r)
{
	/* splitmix64: tiny, seedable, good enough for timeouts */
	uint64_t z = (r->rng += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* ---- names ---- */

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

/* ---- outgoing messages ---- */

struct raft_msg *raft_msg_new(struct raft *r, enum raft_msg_type type, uint64_t to)
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
		raft_pr_reset(r, &r->prs[i]);
}

void raft_become_follower(struct raft *r, uint64_t term, uint64_t leader)
{
	reset(r, term);
	r->role = RAFT_FOLLOWER;
	r->leader = leader;
	TRACE(r, "become follower", term, leader);
}

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
	raft_log_push(r, r->term, RAFT_ENTRY_NOOP, NULL, 0);
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
		m = raft_msg_new(r, type, r->prs[i].id);
		if (!m)
			continue;
		m->term = term_for;
		m->index = last_index(r);
		m->log_term = last_term(r);
		m->force = force;
	}
}

/* ---- commit (§5.3): a follower follows the leader's ---- */

static void commit_to(struct raft *r, uint64_t index)
{
	if (index > r->commit) {
		if (index > last_index(r))
			index = last_index(r);
		if (index > r->commit)
			r->commit = index;
	}
}

/* ---- handling messages ---- */

static void reply(struct raft *r, const struct raft_msg *in, enum raft_msg_type type,
                  struct raft_msg **ret)
{
	*ret = raft_msg_new(r, type, in->from);
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
				raft_truncate_from(r, e->index);
			}
			if (raft_log_push(r, e->term, e->type, e->data, e->len) < 0)
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
		uint64_t hint = raft_find_conflict_by_term(r, m->index, m->log_term);

		out->reject = true;
		out->index = m->index;
		out->reject_hint = hint;
		out->log_term = term_at(r, hint);
	}
	TRACE(r, "reject append", m->index, m->log_term);
	return 0;
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
		raft_install_snapshot(r);
		if (out)
			out->snap_done = true;
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
			raft_answer_read(r, r->id, m->context, m->index);
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
		raft_become_follower(r, m->term, m->from);
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
			raft_become_follower(r, r->term, 0);
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
	    (!raft_conf_valid(&m->snap_conf) || m->snap_index == 0 || (m->chunk_len && !m->chunk)))
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
		if (raft_log_push(r, r->term, e->type, e->data, e->len) < 0)
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

			raft_become_follower(r, m->term, from_leader ? m->from : 0);
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
			rc = raft_step_leader(r, m);
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
			raft_become_follower(r, r->term, 0);
			return;
		}
		if (r->transferee) {
			TRACE(r, "leadership transfer abandoned", r->transferee, r->term);
			r->transferee = 0;
		}
	}
	raft_tick_snapshots(r);
	if (r->heartbeat_elapsed >= r->heartbeat_tick) {
		r->heartbeat_elapsed = 0;
		/* carry the newest round, in case its own heartbeats were lost */
		raft_bcast_heartbeat(r, r->n_reads ? r->read_round : 0);
	}
}

/* ---- client requests ---- */

int64_t raft_propose(struct raft *r, const void *data, size_t len, enum raft_entry_type type)
{
	if (r->role != RAFT_LEADER || r->transferee)
		return FLT_ENOTLEADER;
	if (type != RAFT_ENTRY_NORMAL && type != RAFT_ENTRY_NOOP)
		return FLT_EINVAL;
	if (raft_log_push(r, r->term, (uint8_t)type, data, len) < 0)
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
	m = raft_msg_new(r, RAFT_MSG_PROP, r->leader);
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
	if (raft_log_push(r, r->term, RAFT_ENTRY_CONF, buf, len) < 0)
		return -ENOMEM;
	TRACE(r, op == RAFT_CONF_ADD ? "propose add voter" : "propose remove voter", id,
	      last_index(r));
	/* the quorum may have shrunk */
	raft_maybe_commit(r);
	r->need_bcast = true;
	return (int64_t)last_index(r);
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
			raft_bcast_append(r);
		raft_flush_read_round(r);
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
		if (raft_maybe_commit(r))
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
		if (!raft_conf_valid(&c)) {
			raft_free(r);
			return FLT_EINVAL;
		}
		len = raft_conf_encode(&c, buf);
		r->term = 1;
		if (raft_log_push(r, 1, RAFT_ENTRY_CONF, buf, len) < 0) {
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

	if (r->in_ready || !raft_conf_valid(&p->snap.conf) || (p->snap.index && !p->snap.term))
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
	if (p->snap.len && !p->snap_borrowed) {
		copy = rmalloc(r, p->snap.len);
		if (!copy)
			return -ENOMEM;
		memcpy(copy, p->snap.data, p->snap.len);
	}
	raft_free_entries(r, 0);
	raft_snap_release(r);
	r->snap_data = p->snap_borrowed ? p->snap.data : copy;
	r->snap_len = p->snap.len;
	r->snap_borrowed = p->snap_borrowed;
	r->snap_index = p->snap.index;
	r->snap_term = p->snap.term;
	r->snap_conf = p->snap.conf;
	r->snap_install = false;
	r->n_prs = 0;
	for (size_t i = 0; i < p->n_entries; i++) {
		const struct raft_entry *e = &p->entries[i];

		if (raft_log_push(r, e->term, e->type, e->data, e->len) < 0)
			return -ENOMEM;
	}
	r->term = p->hs.term;
	r->vote = p->hs.vote;
	r->commit = commit;
	r->applied = p->applied;
	r->stable = last;
	raft_recompute_conf(r);
	raft_become_follower(r, r->term, 0);
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
	raft_free_entries(r, 0);
	raft_log_chunks_free(r);
	rfree(r, r->log);
	raft_snap_release(r);
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
