/* Focused scenarios for the Raft core (src/raft/raft.c) on a tiny synchronous network: election,
 * pre-vote, check-quorum, log conflicts, the commit rule of figure 8, snapshot transfer, ReadIndex,
 * leadership transfer and membership changes. The randomized, adversarial testing is the
 * simulator's job (tests/sim). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "raft/raft.h"
#include "util/err.h"

#define MAXN 5

struct qmsg {
	struct raft_msg m;
};

struct tnode {
	struct raft *r;
	uint64_t applied;
	uint64_t applied_entries; /* NORMAL entries applied */
	uint64_t snap_index;
	uint8_t *snap;
	size_t snap_len;
	uint64_t reads_ctx[32], reads_index[32];
	size_t n_reads;
};

struct tnet {
	struct tnode n[MAXN + 1]; /* by id, 1-based */
	unsigned count;
	bool cut[MAXN + 1][MAXN + 1];
	struct qmsg *q;
	size_t nq, capq;
};

static void *dup_bytes(const void *p, size_t n)
{
	void *q;

	if (!n)
		return NULL;
	q = malloc(n);
	assert_non_null(q);
	memcpy(q, p, n);
	return q;
}

static void cfg_for(uint64_t id, const uint64_t *voters, size_t nv, struct raft_config *cfg)
{
	*cfg = (struct raft_config){.id = id,
	                            .voters = voters,
	                            .n_voters = nv,
	                            .election_tick = 10,
	                            .heartbeat_tick = 1,
	                            .pre_vote = true,
	                            .check_quorum = true,
	                            .max_inflight = 4,
	                            .max_entries_per_msg = 4,
	                            .max_bytes_per_msg = 1024,
	                            .max_snapshot_chunk = 16,
	                            .seed = 42,
	                            .alloc = raft_libc_alloc()};
}

/* `members` bootstrap with all of them as voters; ids above it join empty. */
static struct tnet *net_new(unsigned members, unsigned total)
{
	struct tnet *net = calloc(1, sizeof(*net));
	uint64_t voters[MAXN];
	struct raft_config cfg;

	assert_non_null(net);
	net->count = total;
	for (unsigned i = 0; i < members; i++)
		voters[i] = i + 1;
	for (unsigned id = 1; id <= total; id++) {
		cfg_for(id, voters, id <= members ? members : 0, &cfg);
		cfg.seed = 42 + id * 1000;
		assert_int_equal(raft_new(&cfg, &net->n[id].r), 0);
	}
	return net;
}

static void qfree(struct qmsg *q)
{
	for (size_t i = 0; i < q->m.n_entries; i++)
		free((void *)q->m.entries[i].data);
	free((void *)q->m.entries);
	free((void *)q->m.chunk);
}

static void net_free(struct tnet *net)
{
	for (unsigned id = 1; id <= net->count; id++) {
		raft_free(net->n[id].r);
		free(net->n[id].snap);
	}
	for (size_t i = 0; i < net->nq; i++)
		qfree(&net->q[i]);
	free(net->q);
	free(net);
}

static void enqueue(struct tnet *net, const struct raft_msg *m)
{
	struct raft_entry *ents = NULL;
	struct qmsg *q;

	if (net->nq == net->capq) {
		net->capq = net->capq ? 2 * net->capq : 64;
		net->q = realloc(net->q, net->capq * sizeof(*net->q));
		assert_non_null(net->q);
	}
	q = &net->q[net->nq++];
	q->m = *m;
	if (m->n_entries) {
		ents = malloc(m->n_entries * sizeof(*ents));
		assert_non_null(ents);
		for (size_t i = 0; i < m->n_entries; i++) {
			ents[i] = m->entries[i];
			ents[i].data = dup_bytes(m->entries[i].data, m->entries[i].len);
		}
	}
	q->m.entries = ents;
	q->m.chunk = dup_bytes(m->chunk, m->chunk_len);
}

/* Do every node's ready: persist (nothing to do here), queue messages, apply, advance. */
static void process(struct tnet *net)
{
	for (unsigned id = 1; id <= net->count; id++) {
		struct tnode *t = &net->n[id];
		struct raft_ready rd;

		while (t->r && raft_has_ready(t->r)) {
			assert_int_equal(raft_ready(t->r, &rd), 0);
			for (size_t i = 0; i < rd.n_msgs; i++)
				enqueue(net, &rd.msgs[i]);
			if (rd.snapshot) {
				free(t->snap);
				t->snap = dup_bytes(rd.snapshot->data, rd.snapshot->len);
				t->snap_len = rd.snapshot->len;
				t->snap_index = rd.snapshot->index;
				t->applied = rd.snapshot->index;
			}
			for (size_t i = 0; i < rd.n_committed; i++) {
				assert_int_equal(rd.committed[i].index, t->applied + 1);
				t->applied = rd.committed[i].index;
				t->applied_entries += rd.committed[i].type == RAFT_ENTRY_NORMAL;
			}
			for (size_t i = 0; i < rd.n_reads && t->n_reads < 32; i++) {
				t->reads_ctx[t->n_reads] = rd.reads[i].ctx;
				t->reads_index[t->n_reads++] = rd.reads[i].index;
			}
			raft_advance(t->r, &rd);
		}
	}
}

/* Deliver until the network is quiet (cut links drop). */
static void deliver_all(struct tnet *net)
{
	for (int rounds = 0; rounds < 1000; rounds++) {
		struct qmsg *q;
		size_t n;

		process(net);
		if (!net->nq)
			return;
		q = net->q;
		n = net->nq;
		net->q = NULL;
		net->nq = net->capq = 0;
		for (size_t i = 0; i < n; i++) {
			struct raft_msg *m = &q[i].m;

			if (m->to >= 1 && m->to <= net->count && net->n[m->to].r &&
			    !net->cut[m->from][m->to])
				raft_step(net->n[m->to].r, m);
			qfree(&q[i]);
		}
		free(q);
	}
	fail_msg("the network never went quiet");
}

static void tick_all(struct tnet *net, unsigned ticks)
{
	while (ticks--) {
		for (unsigned id = 1; id <= net->count; id++)
			if (net->n[id].r)
				raft_tick(net->n[id].r);
		deliver_all(net);
	}
}

static void isolate(struct tnet *net, uint64_t id, bool on)
{
	for (unsigned o = 1; o <= net->count; o++) {
		net->cut[id][o] = on;
		net->cut[o][id] = on;
	}
}

static uint64_t leader_of(struct tnet *net)
{
	uint64_t found = 0, term = 0;

	for (unsigned id = 1; id <= net->count; id++) {
		struct raft *r = net->n[id].r;

		if (r && raft_role(r) == RAFT_LEADER && raft_term(r) >= term) {
			found = id;
			term = raft_term(r);
		}
	}
	return found;
}

static uint64_t elect(struct tnet *net)
{
	for (int i = 0; i < 100; i++) {
		uint64_t l = leader_of(net);

		if (l)
			return l;
		tick_all(net, 1);
	}
	fail_msg("no leader elected");
	return 0;
}

static void propose_n(struct tnet *net, uint64_t leader, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		char buf[16];

		memset(buf, 'a' + (int)(i % 26), sizeof(buf));
		assert_true(raft_propose(net->n[leader].r, buf, sizeof(buf), RAFT_ENTRY_NORMAL) >
		            0);
	}
}

static void assert_logs_equal(struct tnet *net, uint64_t a, uint64_t b)
{
	struct raft *ra = net->n[a].r, *rb = net->n[b].r;
	uint64_t lo;

	assert_int_equal(raft_last_index(ra), raft_last_index(rb));
	lo = raft_first_index(ra) > raft_first_index(rb) ? raft_first_index(ra)
	                                                 : raft_first_index(rb);
	for (uint64_t i = lo; i <= raft_last_index(ra); i++)
		assert_int_equal(raft_term_at(ra, i), raft_term_at(rb, i));
}

/* ---- tests ---- */

static void test_conf_codec(void **state)
{
	struct raft_conf c = {.n = 3, .ids = {1, 7, 9}}, d;
	uint8_t buf[RAFT_CONF_ENCODED_MAX];
	size_t len = raft_conf_encode(&c, buf);

	(void)state;
	assert_int_equal(len, 4 + 3 * 8);
	assert_int_equal(raft_conf_decode(buf, len, &d), 0);
	assert_int_equal(d.n, 3);
	assert_int_equal(d.ids[2], 9);
	assert_int_equal(raft_conf_decode(buf, len - 1, &d), FLT_EINVAL);
	buf[4 + 8] = 1; /* duplicate id 1 */
	assert_int_equal(raft_conf_decode(buf, len, &d), FLT_EINVAL);
}

static void test_single_node(void **state)
{
	struct tnet *net = net_new(1, 1);

	(void)state;
	assert_int_equal(elect(net), 1);
	propose_n(net, 1, 3);
	deliver_all(net);
	assert_int_equal(net->n[1].applied_entries, 3);
	assert_int_equal(raft_commit_index(net->n[1].r), raft_last_index(net->n[1].r));
	assert_int_equal(raft_read_index(net->n[1].r, 99), 0);
	deliver_all(net);
	assert_int_equal(net->n[1].n_reads, 1);
	assert_int_equal(net->n[1].reads_ctx[0], 99);
	net_free(net);
}

static void test_election(void **state)
{
	struct tnet *net = net_new(3, 3);
	uint64_t l;

	(void)state;
	/* no leader before an election timeout */
	tick_all(net, 9);
	assert_int_equal(leader_of(net), 0);
	l = elect(net);
	assert_true(l >= 1 && l <= 3);
	tick_all(net, 3);
	for (unsigned id = 1; id <= 3; id++) {
		assert_int_equal(raft_leader(net->n[id].r), l);
		assert_int_equal(raft_term(net->n[id].r), raft_term(net->n[l].r));
		if (id != l)
			assert_int_equal(raft_role(net->n[id].r), RAFT_FOLLOWER);
	}
	/* the new leader's empty entry committed everywhere */
	for (unsigned id = 1; id <= 3; id++)
		assert_int_equal(raft_commit_index(net->n[id].r), 2);
	/* proposals go only through the leader */
	assert_int_equal(raft_propose(net->n[l == 1 ? 2 : 1].r, "x", 1, RAFT_ENTRY_NORMAL),
	                 FLT_ENOTLEADER);
	net_free(net);
}

/* Thesis 9.6: a partitioned node does not inflate its term, so rejoining disrupts nothing. */
static void test_pre_vote_blocks_term_inflation(void **state)
{
	struct tnet *net = net_new(3, 3);
	uint64_t l, f, term;

	(void)state;
	l = elect(net);
	f = l == 3 ? 2 : 3;
	term = raft_term(net->n[l].r);
	isolate(net, f, true);
	tick_all(net, 200);
	assert_int_equal(raft_term(net->n[f].r), term);
	assert_int_not_equal(raft_role(net->n[f].r), RAFT_CANDIDATE);
	isolate(net, f, false);
	tick_all(net, 5);
	assert_int_equal(leader_of(net), l);
	assert_int_equal(raft_term(net->n[l].r), term);
	assert_int_equal(raft_role(net->n[f].r), RAFT_FOLLOWER);
	net_free(net);
}

/* A leader that hears from no quorum for an election timeout steps down; a follower that hears
 * from its leader ignores a vote request (leader lease). */
static void test_check_quorum(void **state)
{
	struct tnet *net = net_new(3, 3);
	struct raft_msg m;
	uint64_t l, f, term, vote;

	(void)state;
	l = elect(net);
	f = l == 1 ? 2 : 1;
	term = raft_term(net->n[f].r);
	vote = raft_vote(net->n[f].r);
	/* lease: a vote for term+5 is ignored, the term stays */
	m = (struct raft_msg){.type = RAFT_MSG_VOTE,
	                      .from = l == 3 ? 2 : 3,
	                      .to = f,
	                      .term = term + 5,
	                      .index = 100,
	                      .log_term = term + 4};
	if (m.from == f)
		m.from = l;
	assert_int_equal(raft_step(net->n[f].r, &m), 0);
	assert_int_equal(raft_term(net->n[f].r), term);
	assert_int_equal(raft_vote(net->n[f].r), vote);

	isolate(net, l, true);
	tick_all(net, 25);
	assert_int_not_equal(raft_role(net->n[l].r), RAFT_LEADER);
	net_free(net);
}

/* An old leader's uncommitted entries are replaced by the new leader's (§5.3). */
static void test_log_conflict(void **state)
{
	struct tnet *net = net_new(3, 3);
	uint64_t l1, l2;

	(void)state;
	l1 = elect(net);
	isolate(net, l1, true);
	propose_n(net, l1, 7); /* never leave the old leader */
	deliver_all(net);
	/* the other two elect a leader and commit entries of their own */
	for (int i = 0; i < 100; i++) {
		l2 = 0;
		for (unsigned id = 1; id <= 3; id++)
			if (id != l1 && raft_role(net->n[id].r) == RAFT_LEADER)
				l2 = id;
		if (l2)
			break;
		tick_all(net, 1);
	}
	assert_true(l2 != 0);
	propose_n(net, l2, 3);
	deliver_all(net);
	assert_true(raft_last_index(net->n[l1].r) > raft_last_index(net->n[l2].r));
	isolate(net, l1, false);
	tick_all(net, 5);
	assert_int_equal(raft_role(net->n[l1].r), RAFT_FOLLOWER);
	for (unsigned id = 1; id <= 3; id++)
		assert_logs_equal(net, l2, id);
	assert_int_equal(net->n[l1].applied_entries, 3);
	net_free(net);
}

static void restore(struct raft *r, uint64_t term, const uint64_t *terms, size_t n, uint64_t commit)
{
	struct raft_conf c = {.n = 3, .ids = {1, 2, 3}};
	uint8_t conf[RAFT_CONF_ENCODED_MAX];
	struct raft_entry ents[8];
	struct raft_persisted p;

	for (size_t i = 0; i < n; i++)
		ents[i] = (struct raft_entry){.term = terms[i], .index = i + 1, .type = 0};
	ents[0].type = RAFT_ENTRY_CONF;
	ents[0].data = conf;
	ents[0].len = raft_conf_encode(&c, conf);
	p = (struct raft_persisted){
	    .hs = {.term = term, .commit = commit}, .entries = ents, .n_entries = n};
	assert_int_equal(raft_restore(r, &p), 0);
}

/* Figure 8 / §5.4.2: a leader does not commit an entry of an earlier term by counting replicas,
 * only through an entry of its own term. */
static void test_commit_rule_figure8(void **state)
{
	struct tnet *net = net_new(3, 3);
	const uint64_t terms[] = {1, 2};
	struct raft *r = net->n[1].r;
	struct raft_msg m;
	struct raft_ready rd;

	(void)state;
	restore(r, 3, terms, 2, 1);
	/* campaign: pre-vote, then vote, answered by hand */
	for (int i = 0; i < 30 && raft_role(r) == RAFT_FOLLOWER; i++)
		raft_tick(r);
	assert_int_equal(raft_role(r), RAFT_PRE_CANDIDATE);
	m = (struct raft_msg){.type = RAFT_MSG_PRE_VOTE_RESP, .from = 2, .to = 1, .term = 4};
	assert_int_equal(raft_step(r, &m), 0);
	assert_int_equal(raft_role(r), RAFT_CANDIDATE);
	m = (struct raft_msg){.type = RAFT_MSG_VOTE_RESP, .from = 2, .to = 1, .term = 4};
	assert_int_equal(raft_step(r, &m), 0);
	assert_int_equal(raft_role(r), RAFT_LEADER);
	assert_int_equal(raft_last_index(r), 3); /* the empty entry of term 4 */
	while (raft_has_ready(r)) {
		raft_ready(r, &rd);
		raft_advance(r, &rd);
	}
	/* node 2 holds index 2 (term 2): a majority has it, yet it must not commit */
	m = (struct raft_msg){
	    .type = RAFT_MSG_APPEND_RESP, .from = 2, .to = 1, .term = 4, .index = 2};
	assert_int_equal(raft_step(r, &m), 0);
	assert_int_equal(raft_commit_index(r), 1);
	/* once node 2 has the term-4 entry, everything up to it commits */
	m.index = 3;
	assert_int_equal(raft_step(r, &m), 0);
	assert_int_equal(raft_commit_index(r), 3);
	net_free(net);
}

/* A follower that fell behind a compaction gets the snapshot in chunks, then entries; the
 * leader's bytes are its own copy or borrowed from the caller (raft_compact_borrow). */
static void snapshot_install(bool borrow)
{
	struct tnet *net = net_new(3, 3);
	uint8_t data[100];
	struct raft_conf c;
	uint64_t l, f, idx;

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7);
	l = elect(net);
	f = l == 3 ? 1 : 3;
	isolate(net, f, true);
	propose_n(net, l, 20);
	deliver_all(net);
	idx = net->n[l].applied;
	assert_true(idx >= 22);
	assert_int_equal(raft_conf_at(net->n[l].r, idx, &c), 0);
	assert_int_equal(c.n, 3);
	assert_int_equal(raft_conf_at(net->n[l].r, raft_last_index(net->n[l].r) + 1, &c),
	                 FLT_EINVAL);
	assert_int_equal(raft_compact(net->n[l].r, idx + 1, data, sizeof(data)), FLT_EINVAL);
	assert_int_equal(raft_compact_borrow(net->n[l].r, idx + 1, data, sizeof(data)),
	                 FLT_EINVAL);
	if (borrow)
		assert_int_equal(raft_compact_borrow(net->n[l].r, idx, data, sizeof(data)), 0);
	else
		assert_int_equal(raft_compact(net->n[l].r, idx, data, sizeof(data)), 0);
	assert_int_equal(raft_first_index(net->n[l].r), idx + 1);
	assert_int_equal(raft_snapshot_conf(net->n[l].r)->n, 3);
	assert_int_equal(raft_conf_at(net->n[l].r, idx - 1, &c), FLT_EINVAL); /* compacted */
	propose_n(net, l, 2);
	deliver_all(net);
	isolate(net, f, false);
	tick_all(net, 30); /* 100 bytes in chunks of 16: 7 chunks, one in flight */
	assert_int_equal(net->n[f].snap_index, idx);
	assert_int_equal(net->n[f].snap_len, sizeof(data));
	assert_memory_equal(net->n[f].snap, data, sizeof(data));
	assert_int_equal(raft_snapshot_index(net->n[f].r), idx);
	assert_int_equal(raft_last_index(net->n[f].r), raft_last_index(net->n[l].r));
	assert_int_equal(net->n[f].applied, net->n[l].applied);
	assert_logs_equal(net, l, f);
	net_free(net); /* borrowed data: not freed by the core (ASan/valgrind would say) */
}

static void test_snapshot_install(void **state)
{
	(void)state;
	snapshot_install(false);
}

static void test_snapshot_install_borrowed(void **state)
{
	(void)state;
	snapshot_install(true);
}

/* Thesis 6.4: reads confirmed by a heartbeat round, on the leader and through a follower; an
 * isolated leader answers none. */
static void test_read_index(void **state)
{
	struct tnet *net = net_new(3, 3);
	uint64_t l, f;

	(void)state;
	l = elect(net);
	f = l == 1 ? 2 : 1;
	propose_n(net, l, 2);
	assert_int_equal(raft_read_index(net->n[l].r, 11), 0);
	assert_int_equal(raft_read_index(net->n[l].r, 12), 0); /* same round */
	deliver_all(net);
	assert_int_equal(net->n[l].n_reads, 2);
	assert_int_equal(net->n[l].reads_ctx[0], 11);
	assert_int_equal(net->n[l].reads_ctx[1], 12);
	assert_true(net->n[l].reads_index[0] >= 2);
	assert_int_equal(raft_read_index(net->n[f].r, 21), 0);
	deliver_all(net);
	assert_int_equal(net->n[f].n_reads, 1);
	assert_int_equal(net->n[f].reads_ctx[0], 21);
	assert_int_equal(net->n[f].reads_index[0], raft_commit_index(net->n[l].r));
	isolate(net, l, true);
	assert_int_equal(raft_read_index(net->n[l].r, 31), 0);
	tick_all(net, 3);
	assert_int_equal(net->n[l].n_reads, 2);
	net_free(net);
}

/* Thesis 3.10: the target is caught up, told to time out, and wins. */
static void test_transfer(void **state)
{
	struct tnet *net = net_new(3, 3);
	uint64_t l, t;

	(void)state;
	l = elect(net);
	t = l == 3 ? 1 : l + 1;
	isolate(net, t, true);
	propose_n(net, l, 5);
	deliver_all(net);
	isolate(net, t, false);
	assert_int_equal(raft_transfer_leadership(net->n[l].r, t), 0);
	assert_int_equal(raft_transferee(net->n[l].r), t);
	assert_int_equal(raft_propose(net->n[l].r, "x", 1, RAFT_ENTRY_NORMAL), FLT_ENOTLEADER);
	deliver_all(net);
	assert_int_equal(raft_role(net->n[t].r), RAFT_LEADER);
	assert_int_equal(raft_role(net->n[l].r), RAFT_FOLLOWER);
	assert_int_equal(raft_transfer_leadership(net->n[l].r, t), FLT_ENOTLEADER);
	net_free(net);
}

/* Thesis 4.1: add a fourth voter, then remove the leader itself. */
static void test_conf_change(void **state)
{
	struct tnet *net = net_new(3, 4);
	uint64_t l, l2;

	(void)state;
	l = elect(net);
	tick_all(net, 2);
	assert_int_equal(raft_propose_conf_change(net->n[l].r, RAFT_CONF_ADD, 2), FLT_EINVAL);
	assert_true(raft_propose_conf_change(net->n[l].r, RAFT_CONF_ADD, 4) > 0);
	/* one at a time */
	assert_int_equal(raft_propose_conf_change(net->n[l].r, RAFT_CONF_REMOVE, 4), -EBUSY);
	deliver_all(net);
	tick_all(net, 3);
	for (unsigned id = 1; id <= 4; id++) {
		assert_int_equal(raft_conf(net->n[id].r)->n, 4);
		assert_true(raft_conf_has(raft_conf(net->n[id].r), 4));
	}
	assert_logs_equal(net, l, 4);
	propose_n(net, l, 2);
	deliver_all(net);
	assert_int_equal(net->n[4].applied_entries, 2);

	assert_true(raft_propose_conf_change(net->n[l].r, RAFT_CONF_REMOVE, l) > 0);
	deliver_all(net);
	tick_all(net, 2);
	assert_int_not_equal(raft_role(net->n[l].r), RAFT_LEADER);
	for (int i = 0; i < 100; i++) {
		l2 = leader_of(net);
		if (l2 && l2 != l)
			break;
		tick_all(net, 1);
	}
	assert_true(l2 && l2 != l);
	assert_false(raft_conf_has(raft_conf(net->n[l2].r), l));
	assert_int_equal(raft_conf(net->n[l2].r)->n, 3);
	/* the removed node never campaigns */
	tick_all(net, 50);
	assert_int_not_equal(raft_role(net->n[l].r), RAFT_LEADER);
	assert_int_not_equal(raft_role(net->n[l].r), RAFT_CANDIDATE);
	net_free(net);
}

static void test_bad_input(void **state)
{
	struct tnet *net = net_new(3, 3);
	struct raft_config cfg;
	struct raft *r;
	struct raft_msg m = {.type = RAFT_MSG_APPEND, .from = 2, .to = 9, .term = 1};
	struct raft_entry e = {.term = 1, .index = 5};

	(void)state;
	cfg_for(1, NULL, 0, &cfg);
	cfg.heartbeat_tick = 10;
	assert_int_equal(raft_new(&cfg, &r), FLT_EINVAL);
	assert_int_equal(raft_step(net->n[1].r, &m), FLT_EPROTO); /* not for us */
	m.to = 1;
	m.entries = &e;
	m.n_entries = 1;
	m.index = 1; /* entries must follow index */
	assert_int_equal(raft_step(net->n[1].r, &m), FLT_EPROTO);
	net_free(net);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_conf_codec),
	    cmocka_unit_test(test_single_node),
	    cmocka_unit_test(test_election),
	    cmocka_unit_test(test_pre_vote_blocks_term_inflation),
	    cmocka_unit_test(test_check_quorum),
	    cmocka_unit_test(test_log_conflict),
	    cmocka_unit_test(test_commit_rule_figure8),
	    cmocka_unit_test(test_snapshot_install),
	    cmocka_unit_test(test_snapshot_install_borrowed),
	    cmocka_unit_test(test_read_index),
	    cmocka_unit_test(test_transfer),
	    cmocka_unit_test(test_conf_change),
	    cmocka_unit_test(test_bad_input),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
