/* The Raft leader's side (see raft_int.h): per-follower progress (probe / replicate / snapshot,
 * a bounded window of appends in flight), appends, heartbeats and chunked snapshots, commit by
 * quorum, ReadIndex and leadership transfer. Pure, like the rest of the core. */
#include "raft_int.h"

#include <errno.h>
#include <string.h>

#include "util/err.h"

/* ---- progress ---- */

void raft_pr_reset(struct raft *r, struct progress *pr)
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
void raft_sync_progress(struct raft *r)
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
			raft_pr_reset(r, pr);
		}
	}
	if (r->transferee && !raft_conf_has(&r->conf, r->transferee))
		r->transferee = 0;
}

/* ---- commit (§5.3, §5.4.2) ---- */

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
bool raft_maybe_commit(struct raft *r)
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
		raft_become_follower(r, r->term, 0);
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
	struct raft_msg *m = raft_msg_new(r, RAFT_MSG_SNAPSHOT, pr->id);
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
	m = raft_msg_new(r, RAFT_MSG_APPEND, pr->id);
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

void raft_bcast_append(struct raft *r)
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
	struct raft_msg *m = raft_msg_new(r, RAFT_MSG_HEARTBEAT, pr->id);

	if (!m)
		return;
	/* Never more than it matches: its log past that may still differ from ours. */
	m->commit = pr->match < r->commit ? pr->match : r->commit;
	m->context = ctx;
}

void raft_bcast_heartbeat(struct raft *r, uint64_t ctx)
{
	for (unsigned i = 0; i < r->n_prs; i++)
		if (r->prs[i].id != r->id)
			send_heartbeat(r, &r->prs[i], ctx);
}

static void send_timeout_now(struct raft *r, uint64_t to)
{
	raft_msg_new(r, RAFT_MSG_TIMEOUT_NOW, to);
	TRACE(r, "send timeout-now", to, r->term);
}

/* Every election timeout a snapshot stream has been quiet, resend: the chunk it waits for, or the
 * newer snapshot if we compacted since. */
void raft_tick_snapshots(struct raft *r)
{
	for (unsigned i = 0; i < r->n_prs; i++) {
		struct progress *pr = &r->prs[i];

		if (pr->state == PR_SNAPSHOT && ++pr->snap_ticks >= r->election_tick) {
			if (pr->snap_index != r->snap_index)
				send_snapshot(r, pr);
			else
				send_chunk(r, pr);
		}
	}
}

/* ---- ReadIndex (thesis 6.4) ---- */

void raft_answer_read(struct raft *r, uint64_t from, uint64_t ctx, uint64_t index)
{
	if (from == r->id) {
		if (grow(r, (void **)&r->rstates, &r->cap_rstates, r->n_rstates + 1,
		         sizeof(*r->rstates)) < 0)
			return;
		r->rstates[r->n_rstates++] = (struct raft_read_state){.ctx = ctx, .index = index};
	} else {
		struct raft_msg *m = raft_msg_new(r, RAFT_MSG_READ_INDEX_RESP, from);

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
		raft_answer_read(r, pr->from, pr->ctx, pr->index);
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
void raft_flush_read_round(struct raft *r)
{
	struct progress *self;

	if (!r->read_round_needed || r->role != RAFT_LEADER)
		return;
	r->read_round_needed = false;
	r->read_round++;
	self = pr_find(r, r->id);
	if (self)
		self->read_acked = r->read_round;
	raft_bcast_heartbeat(r, r->read_round);
	answer_reads(r);
}

/* ---- handling answers ---- */

static void handle_append_resp(struct raft *r, const struct raft_msg *m, struct progress *pr)
{
	pr->recent_active = true;
	if (m->reject) {
		uint64_t hint = m->reject_hint;
		bool stale;

		if (m->log_term > 0)
			hint = raft_find_conflict_by_term(r, m->reject_hint, m->log_term);
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
		if (raft_maybe_commit(r))
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
		if (raft_maybe_commit(r))
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

int raft_step_leader(struct raft *r, const struct raft_msg *m)
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

/* ---- client requests ---- */

int raft_read_index(struct raft *r, uint64_t ctx)
{
	struct raft_msg *m;

	if (r->role == RAFT_LEADER)
		return leader_read(r, r->id, ctx);
	if (!r->leader)
		return FLT_ENOTLEADER;
	r->oom = false;
	m = raft_msg_new(r, RAFT_MSG_READ_INDEX, r->leader);
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
