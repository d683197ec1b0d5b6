/* Deterministic simulator of a Raft cluster built on the real core (src/raft/raft.c): N cores in
 * one process, a network that drops, duplicates, reorders, delays and partitions, crashes that
 * lose whatever was not persisted, a virtual clock, clients that propose, read and change the
 * membership. After every step it checks Raft's safety properties, and in calm periods liveness.
 * Every run is a function of its seed; see tests/sim/README. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "raft/raft.h"

#define MAX_NODES 5
#ifdef RAFT_PLANTED_BUG
#define SIM_NAME "sim_planted"
#else
#define SIM_NAME "sim"
#endif

/* ---- deterministic randomness for the simulation itself ---- */
static uint64_t g_rng;

static uint64_t rnd(void)
{
	uint64_t z = (g_rng += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static unsigned rnd_below(unsigned n)
{
	return n ? (unsigned)(rnd() % n) : 0;
}

/* true with probability p/1000 */
static bool chance(unsigned p)
{
	return rnd_below(1000) < p;
}

static uint64_t mix(uint64_t h, const void *data, size_t len)
{
	const uint8_t *p = data;

	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (!p) {
		fprintf(stderr, "sim: out of memory\n");
		exit(2);
	}
	return p;
}

static void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (!p) {
		fprintf(stderr, "sim: out of memory\n");
		exit(2);
	}
	return p;
}

static void *dup_bytes(const void *p, size_t n)
{
	void *q;

	if (!n)
		return NULL;
	q = xmalloc(n);
	memcpy(q, p, n);
	return q;
}

/* ---- a growable u64 table indexed by term or log index ---- */
struct table {
	uint64_t *v;
	size_t n;
};

static uint64_t tget(const struct table *t, uint64_t i)
{
	return i < t->n ? t->v[i] : 0;
}

static void tset(struct table *t, uint64_t i, uint64_t val)
{
	if (i >= t->n) {
		size_t n = t->n ? t->n : 64;

		while (n <= i)
			n *= 2;
		t->v = xrealloc(t->v, n * sizeof(*t->v));
		memset(t->v + t->n, 0, (n - t->n) * sizeof(*t->v));
		t->n = n;
	}
	t->v[i] = val;
}

static void tfree(struct table *t)
{
	free(t->v);
	t->v = NULL;
	t->n = 0;
}

/* ---- the world ---- */

struct dentry {
	uint64_t term, index;
	uint8_t type;
	void *data;
	size_t len;
};

/* What survives a crash: exactly what raft_ready asked to persist (and we then acknowledged). */
struct disk {
	struct raft_hard_state hs;
	uint64_t snap_index, snap_term;
	struct raft_conf snap_conf;
	void *snap_data;
	size_t snap_len;
	struct dentry *ents; /* from snap_index + 1 */
	size_t n, cap;
};

struct node {
	uint64_t id;
	struct raft *r; /* NULL while crashed */
	struct disk disk;
	uint64_t applied, hash; /* the state machine: a hash chain over applied entries */
	bool initial;           /* member of the bootstrap configuration */
};

struct netmsg {
	uint64_t at, seq;
	struct raft_msg m; /* deep copy */
};

struct pending_read {
	uint64_t ctx, node, floor; /* floor: highest write acknowledged when the read started */
};

struct sim {
	uint64_t seed;
	bool verbose;
	unsigned n;
	struct node nodes[MAX_NODES];
	uint64_t now, seq;
	struct netmsg *net;
	size_t n_net, cap_net;
	bool cut[MAX_NODES][MAX_NODES]; /* cut[a][b]: messages from a to b are lost */
	struct raft_alloc alloc;
	unsigned oom; /* per mille of allocations by the cores that fail (chaos only) */
	unsigned drop, dup, delay_max; /* per mille, per mille, ticks */
	bool conf_changes;
	unsigned compact_every;
	/* knowledge for the checks */
	struct table leader_of;  /* term -> leader id */
	struct table state_hash; /* index -> state machine hash after applying it */
	struct table ent_term;   /* index -> term of the committed entry */
	struct table ent_hash;   /* index -> hash of the committed entry */
	/* index -> a term by which it was committed (an upper bound: the term of the leader whose
	 * commit index we first saw covering it, or of the first node that applied it) */
	struct table commit_term;
	uint64_t observed_commit;
	uint64_t max_applied; /* highest index applied anywhere (= acknowledged to a client) */
	struct pending_read *reads;
	size_t n_reads, cap_reads;
	uint64_t next_ctx, next_prop;
	/* stats */
	uint64_t st_proposed, st_applied, st_reads, st_crashes, st_snap, st_conf, st_elections;
	uint64_t st_msgs, st_transfers, st_timeout_now, st_oom, st_recovery_max;
	char fail[512];
	bool failed;
};

static void failf(struct sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void failf(struct sim *s, const char *fmt, ...)
{
	va_list ap;

	if (s->failed)
		return;
	s->failed = true;
	va_start(ap, fmt);
	vsnprintf(s->fail, sizeof(s->fail), fmt, ap);
	va_end(ap);
}

static void trace_cb(void *ud, uint64_t id, const char *what, uint64_t a, uint64_t b)
{
	struct sim *s = ud;

	if (!strcmp(what, "timeout-now: campaigning"))
		s->st_timeout_now++;
	if (s->verbose)
		printf("%6" PRIu64 " n%" PRIu64 " %s %" PRIu64 " %" PRIu64 "\n", s->now, id, what,
		       a, b);
}

static struct node *node_by_id(struct sim *s, uint64_t id)
{
	for (unsigned i = 0; i < s->n; i++)
		if (s->nodes[i].id == id)
			return &s->nodes[i];
	return NULL;
}

/* The cores' allocator: libc's, failing now and then during chaos (deterministically). */
static void *sim_malloc(void *ud, size_t n)
{
	struct sim *s = ud;

	if (s->oom && chance(s->oom)) {
		s->st_oom++;
		return NULL;
	}
	return malloc(n);
}

static void *sim_realloc(void *ud, void *p, size_t n)
{
	struct sim *s = ud;

	if (s->oom && chance(s->oom)) {
		s->st_oom++;
		return NULL;
	}
	return realloc(p, n);
}

static void sim_free_cb(void *ud, void *p)
{
	(void)ud;
	free(p);
}

static void make_config(struct sim *s, struct node *nd, bool bootstrap, uint64_t *voters,
                        struct raft_config *cfg)
{
	size_t nv = 0;

	if (bootstrap)
		for (unsigned i = 0; i < s->n; i++)
			if (s->nodes[i].initial)
				voters[nv++] = s->nodes[i].id;
	*cfg = (struct raft_config){
	    .id = nd->id,
	    .voters = voters,
	    .n_voters = nv,
	    .election_tick = 10,
	    .heartbeat_tick = 2,
	    .pre_vote = true,
	    .check_quorum = true,
	    .max_inflight = 4,
	    .max_entries_per_msg = 8,
	    .max_bytes_per_msg = 256,
	    .max_snapshot_chunk = 128,
	    .seed = s->seed * 31 + nd->id + s->now * 7,
	    .alloc = &s->alloc,
	    .trace = trace_cb,
	    .trace_ud = s,
	};
}

/* ---- the state machine and its snapshots ---- */

/* A snapshot is [index][hash][filler], the filler (derived from the hash) making it span several
 * chunks and letting the receiver check the reassembly. */
static void make_snapshot(const struct node *nd, uint8_t **ret, size_t *ret_len)
{
	size_t fill = (size_t)(nd->hash % 700), len = 16 + fill;
	uint8_t *p = xmalloc(len);

	memcpy(p, &nd->applied, 8);
	memcpy(p + 8, &nd->hash, 8);
	for (size_t i = 0; i < fill; i++)
		p[16 + i] = (uint8_t)(nd->hash >> (i % 8 * 8)) ^ (uint8_t)i;
	*ret = p;
	*ret_len = len;
}

static void load_snapshot(struct sim *s, struct node *nd, uint64_t index, const void *data,
                          size_t len)
{
	const uint8_t *p = data;
	uint64_t si, h;

	if (index == 0) {
		nd->applied = 0;
		nd->hash = 0;
		return;
	}
	if (len < 16) {
		failf(s, "node %" PRIu64 ": snapshot at %" PRIu64 " has %zu bytes", nd->id, index,
		      len);
		return;
	}
	memcpy(&si, p, 8);
	memcpy(&h, p + 8, 8);
	if (si != index || len != 16 + h % 700) {
		failf(s,
		      "node %" PRIu64 ": snapshot at %" PRIu64 " is damaged (index %" PRIu64
		      ", %zu bytes)",
		      nd->id, index, si, len);
		return;
	}
	for (size_t i = 0; i < len - 16; i++)
		if (p[16 + i] != ((uint8_t)(h >> (i % 8 * 8)) ^ (uint8_t)i)) {
			failf(s,
			      "node %" PRIu64 ": snapshot at %" PRIu64
			      " reassembled wrongly at byte %zu",
			      nd->id, index, 16 + i);
			return;
		}
	if (tget(&s->state_hash, index) && tget(&s->state_hash, index) != h)
		failf(s,
		      "state machine safety: node %" PRIu64 " installed a snapshot at %" PRIu64
		      " that differs from the applied state",
		      nd->id, index);
	nd->applied = index;
	nd->hash = h;
}

static uint64_t entry_hash(const struct raft_entry *e)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	h = mix(h, &e->type, 1);
	return mix(h, e->data, e->len);
}

static void apply_entry(struct sim *s, struct node *nd, const struct raft_entry *e)
{
	uint64_t eh = entry_hash(e);

	if (e->index != nd->applied + 1) {
		failf(s, "node %" PRIu64 " applies %" PRIu64 " after %" PRIu64, nd->id, e->index,
		      nd->applied);
		return;
	}
	if (tget(&s->ent_term, e->index)) {
		if (tget(&s->ent_term, e->index) != e->term || tget(&s->ent_hash, e->index) != eh)
			failf(s,
			      "state machine safety: node %" PRIu64 " applies at index %" PRIu64
			      " an entry of term %" PRIu64 ", another node applied term %" PRIu64,
			      nd->id, e->index, e->term, tget(&s->ent_term, e->index));
	} else {
		tset(&s->ent_term, e->index, e->term);
		tset(&s->ent_hash, e->index, eh);
		s->st_applied++;
	}
	if (!tget(&s->commit_term, e->index))
		tset(&s->commit_term, e->index, raft_term(nd->r));
	nd->hash = mix(nd->hash ^ e->index, &eh, 8);
	nd->applied = e->index;
	if (tget(&s->state_hash, e->index)) {
		if (tget(&s->state_hash, e->index) != nd->hash)
			failf(s,
			      "state machine safety: node %" PRIu64 " state at %" PRIu64 " differs",
			      nd->id, e->index);
	} else {
		tset(&s->state_hash, e->index, nd->hash);
	}
	if (e->index > s->max_applied)
		s->max_applied = e->index;
}

/* ---- disk ---- */

static void disk_truncate(struct disk *d, size_t keep)
{
	for (size_t i = keep; i < d->n; i++)
		free(d->ents[i].data);
	if (keep < d->n)
		d->n = keep;
}

static void disk_append(struct disk *d, const struct raft_entry *e)
{
	if (e->index <= d->snap_index)
		return;
	disk_truncate(d, (size_t)(e->index - d->snap_index - 1));
	if (d->n != e->index - d->snap_index - 1) {
		fprintf(stderr, "sim: the core asked to persist a gap at %" PRIu64 "\n", e->index);
		exit(2);
	}
	if (d->n == d->cap) {
		d->cap = d->cap ? d->cap * 2 : 64;
		d->ents = xrealloc(d->ents, d->cap * sizeof(*d->ents));
	}
	d->ents[d->n++] = (struct dentry){.term = e->term,
	                                  .index = e->index,
	                                  .type = e->type,
	                                  .data = dup_bytes(e->data, e->len),
	                                  .len = e->len};
}

static void disk_set_snapshot(struct disk *d, uint64_t index, uint64_t term,
                              const struct raft_conf *conf, const void *data, size_t len,
                              bool void_log)
{
	size_t drop;

	free(d->snap_data);
	d->snap_data = dup_bytes(data, len);
	d->snap_len = len;
	if (void_log || index >= d->snap_index + d->n) {
		disk_truncate(d, 0);
	} else {
		drop = (size_t)(index - d->snap_index);
		for (size_t i = 0; i < drop; i++)
			free(d->ents[i].data);
		memmove(d->ents, d->ents + drop, (d->n - drop) * sizeof(*d->ents));
		d->n -= drop;
	}
	d->snap_index = index;
	d->snap_term = term;
	d->snap_conf = *conf;
}

static void disk_free(struct disk *d)
{
	disk_truncate(d, 0);
	free(d->ents);
	free(d->snap_data);
	memset(d, 0, sizeof(*d));
}

/* ---- network ---- */

static void net_push(struct sim *s, const struct raft_msg *m, uint64_t at)
{
	struct netmsg *nm;
	struct raft_entry *ents = NULL;

	if (s->n_net == s->cap_net) {
		s->cap_net = s->cap_net ? s->cap_net * 2 : 256;
		s->net = xrealloc(s->net, s->cap_net * sizeof(*s->net));
	}
	nm = &s->net[s->n_net++];
	nm->at = at;
	nm->seq = s->seq++;
	nm->m = *m;
	if (m->n_entries) {
		ents = xmalloc(m->n_entries * sizeof(*ents));
		for (size_t i = 0; i < m->n_entries; i++) {
			ents[i] = m->entries[i];
			ents[i].data = dup_bytes(m->entries[i].data, m->entries[i].len);
		}
	}
	nm->m.entries = ents;
	nm->m.chunk = dup_bytes(m->chunk, m->chunk_len);
}

static void netmsg_free(struct netmsg *nm)
{
	for (size_t i = 0; i < nm->m.n_entries; i++)
		free((void *)nm->m.entries[i].data);
	free((void *)nm->m.entries);
	free((void *)nm->m.chunk);
}

static void send_msg(struct sim *s, const struct raft_msg *m)
{
	unsigned copies = 1;

	s->st_msgs++;
	if (chance(s->drop))
		return;
	if (chance(s->dup))
		copies = 2;
	while (copies--) {
		uint64_t delay = 1 + rnd_below(s->delay_max + 1);

		if (s->delay_max && chance(10)) /* a straggler: arrives long after its peers */
			delay += 10 + rnd_below(40);
		net_push(s, m, s->now + delay);
	}
}

/* ---- nodes: ready handling, crash, restart ---- */

static void crash(struct sim *s, struct node *nd)
{
	if (!nd->r)
		return;
	if (s->verbose)
		printf("%6" PRIu64 " n%" PRIu64 " CRASH\n", s->now, nd->id);
	raft_free(nd->r);
	nd->r = NULL;
	s->st_crashes++;
}

static void check_read(struct sim *s, struct node *nd, const struct raft_read_state *rs)
{
	for (size_t i = 0; i < s->n_reads; i++) {
		if (s->reads[i].ctx != rs->ctx)
			continue;
		if (rs->index < s->reads[i].floor)
			failf(s,
			      "linearizability: read %" PRIu64 " on node %" PRIu64
			      " got index %" PRIu64 " but %" PRIu64
			      " was acknowledged before it started",
			      rs->ctx, nd->id, rs->index, s->reads[i].floor);
		s->reads[i] = s->reads[--s->n_reads];
		s->st_reads++;
		return;
	}
	/* a duplicate answer (duplicated message): already checked */
}

static void maybe_compact(struct sim *s, struct node *nd)
{
	uint8_t *data;
	size_t len;
	int rc;

	if (!nd->r || nd->applied < nd->disk.snap_index + s->compact_every ||
	    nd->applied <= raft_snapshot_index(nd->r))
		return;
	make_snapshot(nd, &data, &len);
	rc = raft_compact(nd->r, nd->applied, data, len);
	if (rc == -ENOMEM) {
		/* try again later */
	} else if (rc < 0) {
		failf(s, "raft_compact(%" PRIu64 ") on node %" PRIu64 " failed: %d", nd->applied,
		      nd->id, rc);
	} else {
		/* what a snapshot file records: the core knows term and conf at the index */
		disk_set_snapshot(&nd->disk, nd->applied, raft_snapshot_term(nd->r),
		                  raft_snapshot_conf(nd->r), data, len, false);
		s->st_snap++;
	}
	free(data);
}

static void handle_ready(struct sim *s, struct node *nd, bool calm)
{
	struct raft_ready rd;
	bool send_first;
	int guard = 0;

	while (nd->r && raft_has_ready(nd->r)) {
		if (++guard > 100) {
			failf(s, "node %" PRIu64 ": raft_has_ready never settles", nd->id);
			return;
		}
		if (raft_ready(nd->r, &rd) < 0) {
			failf(s, "raft_ready failed");
			return;
		}
		/* As the daemon does: a leader sends before it writes (raft.h, thesis 10.2.1),
		 * so the crash below may lose entries the followers already have. */
		send_first = raft_role(nd->r) == RAFT_LEADER;
		if (send_first)
			for (size_t i = 0; i < rd.n_msgs; i++)
				send_msg(s, &rd.msgs[i]);
		if (!calm && chance(3)) { /* crash before the write reached the disk */
			raft_advance(nd->r, &rd);
			crash(s, nd);
			return;
		}
		if (rd.snapshot)
			disk_set_snapshot(&nd->disk, rd.snapshot->index, rd.snapshot->term,
			                  &rd.snapshot->conf, rd.snapshot->data, rd.snapshot->len,
			                  true);
		for (size_t i = 0; i < rd.n_entries; i++)
			disk_append(&nd->disk, &rd.entries[i]);
		if (rd.hs_changed)
			nd->disk.hs = rd.hs;
		if (!calm && chance(3)) { /* crash after the sync, before sending */
			raft_advance(nd->r, &rd);
			crash(s, nd);
			return;
		}
		for (size_t i = 0; !send_first && i < rd.n_msgs; i++)
			send_msg(s, &rd.msgs[i]);
		if (rd.snapshot)
			load_snapshot(s, nd, rd.snapshot->index, rd.snapshot->data,
			              rd.snapshot->len);
		for (size_t i = 0; i < rd.n_committed; i++)
			apply_entry(s, nd, &rd.committed[i]);
		for (size_t i = 0; i < rd.n_reads; i++)
			check_read(s, nd, &rd.reads[i]);
		if (rd.soft_changed && rd.soft.role == RAFT_LEADER)
			s->st_elections++;
		raft_advance(nd->r, &rd);
	}
	maybe_compact(s, nd);
}

static void start_node(struct sim *s, struct node *nd)
{
	uint64_t voters[MAX_NODES];
	struct raft_config cfg;
	struct raft_entry *ents;
	struct raft_persisted p;
	bool empty = nd->disk.hs.term == 0 && nd->disk.n == 0 && nd->disk.snap_index == 0;
	int rc;

	make_config(s, nd, empty && nd->initial, voters, &cfg);
	rc = raft_new(&cfg, &nd->r);
	if (rc == -ENOMEM)
		return; /* stays down; retried later */
	if (rc < 0) {
		failf(s, "raft_new failed: %d", rc);
		return;
	}
	load_snapshot(s, nd, nd->disk.snap_index, nd->disk.snap_data, nd->disk.snap_len);
	if (empty)
		return;
	ents = xmalloc((nd->disk.n + 1) * sizeof(*ents));
	for (size_t i = 0; i < nd->disk.n; i++)
		ents[i] = (struct raft_entry){.term = nd->disk.ents[i].term,
		                              .index = nd->disk.ents[i].index,
		                              .type = nd->disk.ents[i].type,
		                              .data = nd->disk.ents[i].data,
		                              .len = nd->disk.ents[i].len};
	p = (struct raft_persisted){
	    .hs = nd->disk.hs,
	    .snap = {.index = nd->disk.snap_index,
	             .term = nd->disk.snap_term,
	             .conf = nd->disk.snap_conf,
	             .data = nd->disk.snap_data,
	             .len = nd->disk.snap_len},
	    .entries = ents,
	    .n_entries = nd->disk.n,
	    .applied = nd->disk.snap_index,
	};
	rc = raft_restore(nd->r, &p);
	free(ents);
	if (rc == -ENOMEM) {
		raft_free(nd->r);
		nd->r = NULL;
		return;
	}
	if (rc < 0)
		failf(s, "node %" PRIu64 ": raft_restore of what it persisted failed: %d", nd->id,
		      rc);
	if (s->verbose)
		printf("%6" PRIu64 " n%" PRIu64 " RESTART term %" PRIu64 " log %" PRIu64
		       "..%" PRIu64 "\n",
		       s->now, nd->id, nd->disk.hs.term, nd->disk.snap_index,
		       nd->disk.snap_index + nd->disk.n);
}

/* ---- the checks ---- */

static void check_election_safety(struct sim *s)
{
	for (unsigned i = 0; i < s->n; i++) {
		struct raft *r = s->nodes[i].r;
		uint64_t prev;

		if (!r || raft_role(r) != RAFT_LEADER)
			continue;
		prev = tget(&s->leader_of, raft_term(r));
		if (prev && prev != s->nodes[i].id)
			failf(s,
			      "election safety: nodes %" PRIu64 " and %" PRIu64
			      " both lead term %" PRIu64,
			      prev, s->nodes[i].id, raft_term(r));
		tset(&s->leader_of, raft_term(r), s->nodes[i].id);
		for (uint64_t k = s->observed_commit + 1; k <= raft_commit_index(r); k++)
			if (!tget(&s->commit_term, k))
				tset(&s->commit_term, k, raft_term(r));
		if (raft_commit_index(r) > s->observed_commit)
			s->observed_commit = raft_commit_index(r);
	}
}

static uint64_t ehash(const struct raft_entry *e)
{
	return e ? entry_hash(e) : 0;
}

/* Two logs that hold an entry with the same index and term are identical up to it (§5.3). */
static void check_log_matching(struct sim *s)
{
	for (unsigned i = 0; i < s->n; i++) {
		for (unsigned j = i + 1; j < s->n; j++) {
			struct raft *a = s->nodes[i].r, *b = s->nodes[j].r;
			uint64_t lo, hi;
			bool matched = false;

			if (!a || !b)
				continue;
			lo = raft_first_index(a) > raft_first_index(b) ? raft_first_index(a)
			                                               : raft_first_index(b);
			hi = raft_last_index(a) < raft_last_index(b) ? raft_last_index(a)
			                                             : raft_last_index(b);
			for (uint64_t k = hi; k >= lo && k > 0; k--) {
				const struct raft_entry *ea = raft_entry_at(a, k);
				const struct raft_entry *eb = raft_entry_at(b, k);

				if (!matched && ea->term == eb->term)
					matched = true;
				if (matched && (ea->term != eb->term || ehash(ea) != ehash(eb))) {
					failf(s,
					      "log matching: nodes %" PRIu64 " and %" PRIu64
					      " differ at %" PRIu64 " below a common entry",
					      s->nodes[i].id, s->nodes[j].id, k);
					return;
				}
			}
		}
	}
}

/* A leader holds every entry committed in an earlier term (§5.4, leader completeness). */
static void check_leader_completeness(struct sim *s)
{
	for (unsigned i = 0; i < s->n; i++) {
		struct raft *r = s->nodes[i].r;

		if (!r || raft_role(r) != RAFT_LEADER)
			continue;
		for (uint64_t k = raft_first_index(r); k <= s->max_applied; k++) {
			const struct raft_entry *e = raft_entry_at(r, k);
			uint64_t ct = tget(&s->commit_term, k);

			if (!tget(&s->ent_term, k) || !ct || ct > raft_term(r))
				continue;
			if (!e || e->term != tget(&s->ent_term, k) ||
			    ehash(e) != tget(&s->ent_hash, k)) {
				failf(s,
				      "leader completeness: leader %" PRIu64 " of term %" PRIu64
				      " lacks entry %" PRIu64 " committed by term %" PRIu64,
				      s->nodes[i].id, raft_term(r), k, ct);
				return;
			}
		}
	}
}

static void check_all(struct sim *s, bool full)
{
	check_election_safety(s);
	if (full) {
		check_log_matching(s);
		check_leader_completeness(s);
	}
}

/* ---- client actions ---- */

static struct node *leader_node(struct sim *s)
{
	struct node *best = NULL;

	for (unsigned i = 0; i < s->n; i++) {
		struct raft *r = s->nodes[i].r;

		if (r && raft_role(r) == RAFT_LEADER &&
		    (!best || raft_term(r) > raft_term(best->r)))
			best = &s->nodes[i];
	}
	return best;
}

static int64_t propose(struct sim *s, struct node *nd)
{
	uint8_t data[24];
	uint64_t id = ++s->next_prop;
	size_t len = 8 + rnd_below(17);
	int64_t idx;

	memset(data, (int)(id & 0xff), sizeof(data));
	memcpy(data, &id, 8);
	idx = raft_propose(nd->r, data, len, RAFT_ENTRY_NORMAL);
	if (idx > 0)
		s->st_proposed++;
	return idx;
}

static void start_read(struct sim *s, struct node *nd)
{
	uint64_t ctx = ++s->next_ctx;

	if (raft_read_index(nd->r, ctx) < 0)
		return;
	if (s->n_reads == s->cap_reads) {
		s->cap_reads = s->cap_reads ? s->cap_reads * 2 : 64;
		s->reads = xrealloc(s->reads, s->cap_reads * sizeof(*s->reads));
	}
	s->reads[s->n_reads++] =
	    (struct pending_read){.ctx = ctx, .node = nd->id, .floor = s->max_applied};
}

/* ---- the clock ---- */

static int cmp_net(const void *a, const void *b)
{
	const struct netmsg *x = a, *y = b;

	if (x->at != y->at)
		return x->at < y->at ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void deliver_due(struct sim *s)
{
	size_t n = 0;
	struct netmsg *due;

	for (size_t i = 0; i < s->n_net; i++)
		n += s->net[i].at <= s->now;
	if (!n)
		return;
	due = xmalloc(n * sizeof(*due));
	n = 0;
	for (size_t i = 0; i < s->n_net;) {
		if (s->net[i].at <= s->now) {
			due[n++] = s->net[i];
			s->net[i] = s->net[--s->n_net];
		} else {
			i++;
		}
	}
	qsort(due, n, sizeof(*due), cmp_net);
	for (size_t i = 0; i < n; i++) {
		struct raft_msg *m = &due[i].m;
		struct node *from = node_by_id(s, m->from), *to = node_by_id(s, m->to);

		if (to && to->r && from && !s->cut[from - s->nodes][to - s->nodes]) {
			int rc = raft_step(to->r, m);

			if (rc < 0 && rc != -ENOMEM)
				failf(s, "node %" PRIu64 " refused a %s from %" PRIu64 ": %d",
				      to->id, raft_msg_type_name(m->type), m->from, rc);
			check_election_safety(s);
		}
		netmsg_free(&due[i]);
	}
	free(due);
}

static void one_tick(struct sim *s, bool calm)
{
	s->now++;
	for (unsigned i = 0; i < s->n; i++)
		if (s->nodes[i].r)
			raft_tick(s->nodes[i].r);
	deliver_due(s);
	for (unsigned i = 0; i < s->n; i++)
		if (s->nodes[i].r && (calm || chance(800)))
			handle_ready(s, &s->nodes[i], calm);
	check_all(s, true);
}

static void chaos_events(struct sim *s)
{
	struct node *nd = &s->nodes[rnd_below(s->n)];
	struct node *ld = leader_node(s);

	if (chance(300) && ld) {
		unsigned k = 1 + rnd_below(3);

		while (k--)
			propose(s, ld);
	}
	if (chance(150) && nd->r)
		start_read(s, nd);
	if (chance(8) && nd->r) {
		crash(s, nd);
		ld = leader_node(s);
	}
	for (unsigned i = 0; i < s->n; i++)
		if (!s->nodes[i].r && chance(40))
			start_node(s, &s->nodes[i]);
	if (chance(10)) {
		int group[MAX_NODES];

		for (unsigned i = 0; i < s->n; i++)
			group[i] = (int)rnd_below(2);
		for (unsigned i = 0; i < s->n; i++)
			for (unsigned j = 0; j < s->n; j++)
				s->cut[i][j] = group[i] != group[j];
		if (s->verbose)
			printf("%6" PRIu64 " PARTITION\n", s->now);
	}
	if (chance(4)) { /* one-way link failure */
		unsigned a = rnd_below(s->n), b = rnd_below(s->n);

		s->cut[a][b] = true;
		if (s->verbose)
			printf("%6" PRIu64 " CUT %u -> %u\n", s->now, a + 1, b + 1);
	}
	if (chance(20))
		memset(s->cut, 0, sizeof(s->cut));
	if (chance(5) && ld) {
		uint64_t to = s->nodes[rnd_below(s->n)].id;

		if (raft_transfer_leadership(ld->r, to) == 0 && to != ld->id)
			s->st_transfers++;
	}
	if (s->conf_changes && chance(8) && ld) {
		const struct raft_conf *c = raft_conf(ld->r);
		uint64_t id = s->nodes[rnd_below(s->n)].id;
		bool member = raft_conf_has(c, id);
		int64_t rc;

		if ((member && c->n > 3) || (!member && c->n < s->n)) {
			rc = raft_propose_conf_change(
			    ld->r, member ? RAFT_CONF_REMOVE : RAFT_CONF_ADD, id);
			if (rc > 0) {
				s->st_conf++;
				if (s->verbose)
					printf("%6" PRIu64 " CONF %s %" PRIu64 " at %" PRId64 "\n",
					       s->now, member ? "remove" : "add", id, rc);
			}
		}
	}
}

/* Heal everything and require progress within a bound: a leader of the current configuration
 * and a new entry committed and applied on it. */
static void calm_period(struct sim *s, unsigned bound)
{
	uint64_t start = s->now;
	int64_t want = 0;
	uint64_t want_term = 0;
	struct node *ld;

	memset(s->cut, 0, sizeof(s->cut));
	s->drop = s->dup = s->oom = 0;
	s->delay_max = 1;
	for (unsigned i = 0; i < s->n; i++)
		if (!s->nodes[i].r)
			start_node(s, &s->nodes[i]);
	while (!s->failed && s->now - start < bound) {
		one_tick(s, true);
		ld = leader_node(s);
		if (!ld)
			continue;
		if (want > 0 && raft_term(ld->r) == want_term && ld->applied >= (uint64_t)want) {
			const struct raft_entry *e = raft_entry_at(ld->r, (uint64_t)want);

			if (!e || e->term == want_term) {
				if (s->now - start > s->st_recovery_max)
					s->st_recovery_max = s->now - start;
				return;
			}
			want = 0;
		}
		if (want <= 0 || raft_term(ld->r) != want_term) {
			want = propose(s, ld);
			want_term = raft_term(ld->r);
		}
	}
	if (!s->failed)
		failf(s,
		      "liveness: no entry committed within %u ticks of a calm network (leader %s)",
		      bound, leader_node(s) ? "present" : "absent");
}

static void sim_free(struct sim *s)
{
	for (unsigned i = 0; i < s->n; i++) {
		raft_free(s->nodes[i].r);
		disk_free(&s->nodes[i].disk);
	}
	for (size_t i = 0; i < s->n_net; i++)
		netmsg_free(&s->net[i]);
	free(s->net);
	free(s->reads);
	tfree(&s->leader_of);
	tfree(&s->state_hash);
	tfree(&s->ent_term);
	tfree(&s->ent_hash);
	tfree(&s->commit_term);
}

struct totals {
	uint64_t seeds, ticks, proposed, applied, reads, crashes, snaps, confs, elections, msgs,
	    transfers, timeout_now, oom, recovery_max;
};

/* One run; 0 if every check held. */
static int run_seed(uint64_t seed, bool verbose, unsigned rounds, struct totals *tot)
{
	struct sim s;

	memset(&s, 0, sizeof(s));
	s.seed = seed;
	s.verbose = verbose;
	s.alloc = (struct raft_alloc){
	    .malloc = sim_malloc, .realloc = sim_realloc, .free = sim_free_cb, .ud = &s};
	g_rng = seed * 0x9e3779b97f4a7c15ULL + 1;
	s.n = (rnd() & 1) ? 5 : 3;
	s.conf_changes = s.n == 5 && chance(500);
	s.compact_every = 5 + rnd_below(40);
	for (unsigned i = 0; i < s.n; i++) {
		s.nodes[i].id = i + 1;
		s.nodes[i].initial = !s.conf_changes || i < 3;
	}
	for (unsigned i = 0; i < s.n; i++)
		start_node(&s, &s.nodes[i]);
	for (unsigned round = 0; round < rounds && !s.failed; round++) {
		unsigned chaos = 150 + rnd_below(250);

		s.drop = rnd_below(200);
		s.dup = rnd_below(100);
		s.delay_max = rnd_below(5);
		s.oom = chance(250) ? 1 + rnd_below(20) : 0;
		if (verbose)
			printf("%6" PRIu64 " CHAOS drop %u dup %u delay %u\n", s.now, s.drop, s.dup,
			       s.delay_max);
		for (unsigned t = 0; t < chaos && !s.failed; t++) {
			chaos_events(&s);
			one_tick(&s, false);
		}
		if (verbose)
			printf("%6" PRIu64 " CALM\n", s.now);
		calm_period(&s, 500);
	}
	if (!s.failed)
		check_all(&s, true);
	if (s.failed) {
		printf("FAIL seed %" PRIu64 " at tick %" PRIu64 ": %s\n", seed, s.now, s.fail);
		printf("replay: tests/sim/%s --seed %" PRIu64 " --verbose\n", SIM_NAME, seed);
	}
	tot->seeds++;
	tot->ticks += s.now;
	tot->proposed += s.st_proposed;
	tot->applied += s.st_applied;
	tot->reads += s.st_reads;
	tot->crashes += s.st_crashes;
	tot->snaps += s.st_snap;
	tot->confs += s.st_conf;
	tot->elections += s.st_elections;
	tot->msgs += s.st_msgs;
	tot->transfers += s.st_transfers;
	tot->timeout_now += s.st_timeout_now;
	tot->oom += s.st_oom;
	if (s.st_recovery_max > tot->recovery_max)
		tot->recovery_max = s.st_recovery_max;
	sim_free(&s);
	return s.failed ? 1 : 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: sim [--seed N [--verbose]] [--seeds COUNT] [--first N] "
	                "[--duration SECONDS] [--rounds R]\n");
}

int main(int argc, char **argv)
{
	uint64_t seed = 0, first = 1, count = 0;
	unsigned duration = 0, rounds = 3;
	bool one = false, verbose = false;
	struct totals tot = {0};
	int failures = 0;
	time_t t0 = time(NULL);

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "--seed") && i + 1 < argc) {
			seed = strtoull(argv[++i], NULL, 10);
			one = true;
		} else if (!strcmp(a, "--seeds") && i + 1 < argc) {
			count = strtoull(argv[++i], NULL, 10);
		} else if (!strcmp(a, "--first") && i + 1 < argc) {
			first = strtoull(argv[++i], NULL, 10);
		} else if (!strcmp(a, "--duration") && i + 1 < argc) {
			duration = (unsigned)strtoul(argv[++i], NULL, 10);
		} else if (!strcmp(a, "--rounds") && i + 1 < argc) {
			rounds = (unsigned)strtoul(argv[++i], NULL, 10);
		} else if (!strcmp(a, "--verbose")) {
			verbose = true;
		} else {
			usage();
			return 2;
		}
	}
	if (one)
		return run_seed(seed, verbose, rounds, &tot);
	if (!count && !duration)
		count = 200;
	for (uint64_t sd = first;; sd++) {
		if (count && sd - first >= count)
			break;
		if (duration && (unsigned)(time(NULL) - t0) >= duration)
			break;
		if (run_seed(sd, false, rounds, &tot)) {
			failures++;
			if (failures >= 3)
				break;
		}
	}
	printf("sim: %" PRIu64 " seeds from %" PRIu64 ", %d failed, %lds; %" PRIu64
	       " ticks, %" PRIu64 " proposals, %" PRIu64 " entries committed, %" PRIu64
	       " reads checked, %" PRIu64 " elections, %" PRIu64 " crashes, %" PRIu64
	       " snapshots, %" PRIu64 " conf changes, %" PRIu64 " transfers (%" PRIu64
	       " timeout-now), %" PRIu64 " messages, %" PRIu64
	       " failed allocations; slowest calm recovery %" PRIu64 " ticks\n",
	       tot.seeds, first, failures, (long)(time(NULL) - t0), tot.ticks, tot.proposed,
	       tot.applied, tot.reads, tot.elections, tot.crashes, tot.snaps, tot.confs,
	       tot.transfers, tot.timeout_now, tot.msgs, tot.oom, tot.recovery_max);
	return failures ? 1 : 0;
}
