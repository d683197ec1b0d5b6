/* The log path of a one-member cluster (see node.h): proposals become WAL entries, one
 * fdatasync per loop turn covers all of them (group commit, run from an ev_prepare watcher just
 * before the loop would block), then the entries are applied to the store in index order and
 * their proposers answered. Nothing is acknowledged before it is on disk. */
#include "node.h"

#include <errno.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "raft/wal.h"
#include "store/store.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/log.h"
#include "util/util.h"
#include "util/fs.h"

/* One proposal or read barrier waiting for the next group commit. */
struct pending {
	struct pending *next;
	node_done_fn cb;
	void *ctx;
	uint64_t index; /* the entry's index; 0 for a read barrier */
	size_t len;
	char data[]; /* the entry, kept until applied */
};

struct node {
	struct ev_loop *loop;
	struct store *store;
	struct wal *wal;
	char *wal_dir;
	char *snap_dir;
	uint64_t member_id, cluster_id;
	uint64_t snapshot_count;
	uint64_t term;
	uint64_t last_index;    /* last entry in the log */
	uint64_t applied;       /* last entry applied to the store */
	uint64_t snap_index;    /* index of the newest snapshot */
	struct pending *head, *tail;
	ev_prepare commit_w;    /* group commit before the loop blocks */
	ev_idle wake_w;         /* keeps the loop from blocking while proposals wait */
	bool failed;            /* the WAL could not be written: refuse further writes */
	struct node_stats stats;
};

static char *path_join(const char *a, const char *b)
{
	struct buf out = BUF_INIT;

	if (buf_printf(&out, "%s/%s", a, b) < 0) {
		buf_release(&out);
		return NULL;
	}
	return buf_steal(&out);
}

/* Apply one committed entry. Store errors in the command itself (compare failed, ...) are
 * results, not failures; a failure here means the entry could not be decoded. */
static int apply_entry(struct node *n, uint64_t index, uint8_t type, const void *data, size_t len,
		       struct store_result **ret)
{
	int r = 0;

	*ret = NULL;
	if (type == WAL_ENTRY_NORMAL)
		r = store_apply(n->store, index, data, len, ret);
	n->applied = index;
	return r;
}

static int replay_cb(void *ctx, const struct wal_entry *e)
{
	struct node *n = ctx;
	struct store_result *res;
	int r;

	r = apply_entry(n, e->index, e->type, e->data, e->len, &res);
	store_result_free(res);
	if (r < 0) {
		log_error("cannot apply log entry %llu on replay: %s", (unsigned long long)e->index,
			  flt_strerror(r));
		return r;
	}
	n->last_index = e->index;
	if (e->term > n->term)
		n->term = e->term;
	return 0;
}

static void maybe_snapshot(struct node *n)
{
	struct buf b = BUF_INIT;
	size_t len;
	int r;

	if (n->applied - n->snap_index < n->snapshot_count)
		return;
	r = store_snapshot_save(n->store, &b);
	if (r >= 0)
		r = snap_save(n->snap_dir, n->applied, n->term, b.data, b.len);
	len = b.len;
	buf_release(&b);
	if (r < 0) {
		/* Not fatal: the WAL still holds everything; we retry at the next threshold. */
		log_error("cannot save snapshot at index %llu: %s", (unsigned long long)n->applied,
			  flt_strerror(r));
		n->snap_index = n->applied;
		return;
	}
	n->snap_index = n->applied;
	n->stats.snapshots++;
	r = wal_compact(n->wal, n->snap_index);
	if (r < 0)
		log_warn("cannot compact the WAL up to %llu: %s", (unsigned long long)n->snap_index,
			 flt_strerror(r));
	log_info("saved snapshot at index %llu (%zu bytes)", (unsigned long long)n->snap_index,
		 len);
}

/* Fail every waiting proposal (the WAL is broken or we are shutting down). */
static void fail_pending(struct node *n, int err)
{
	struct pending *p;

	while ((p = n->head)) {
		n->head = p->next;
		p->cb(p->ctx, err, NULL, p->index);
		free(p);
	}
	n->tail = NULL;
}

static void commit_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
	struct node *n = container_of(w, struct node, commit_w);
	struct pending *p;
	uint64_t nentries = 0;
	int r;

	(void)loop;
	(void)revents;
	if (!n->head)
		return;
	if (wal_pending(n->wal)) {
		for (p = n->head; p; p = p->next)
			nentries += p->index != 0;
		r = wal_sync(n->wal);
		if (r < 0) {
			/* We cannot know what reached the disk: stop taking writes rather than
			 * acknowledge something that may be lost. */
			log_error("cannot write the WAL: %s; refusing further writes",
				  flt_strerror(r));
			n->failed = true;
			fail_pending(n, r);
			return;
		}
		n->stats.syncs++;
		n->stats.entries_synced += nentries;
	}
	/* Callbacks may propose again: take the list first, new ones wait for the next turn. */
	p = n->head;
	n->head = n->tail = NULL;
	while (p) {
		struct pending *next = p->next;
		struct store_result *res = NULL;

		if (p->index) {
			r = apply_entry(n, p->index, WAL_ENTRY_NORMAL, p->data, p->len, &res);
			if (r == -ENOMEM) {
				/* The entry is durable but the store may be half-changed: carrying
				 * on would serve a state no replay reproduces. Die, and let the
				 * restart's replay apply it whole (etcd panics here too). */
				log_error("cannot apply log entry %llu: out of memory; exiting",
					  (unsigned long long)p->index);
				abort();
			}
			if (r < 0)
				n->stats.proposals_failed++;
			p->cb(p->ctx, r < 0 ? r : 0, res, p->index);
			store_result_free(res);
		} else {
			p->cb(p->ctx, 0, NULL, n->applied);
		}
		free(p);
		p = next;
	}
	maybe_snapshot(n);
}

/* Only there so that the loop does not block: a proposal queued after this turn's commit (a
 * pipelined request parsed while responses were flushed, or one made from a commit callback)
 * is committed in the next turn instead of waiting for an unrelated wake-up. */
static void wake_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
	(void)revents;
	ev_idle_stop(loop, w);
}

static void enqueue(struct node *n, struct pending *p)
{
	p->next = NULL;
	if (n->tail)
		n->tail->next = p;
	else
		n->head = p;
	n->tail = p;
	if (!ev_is_active(&n->wake_w))
		ev_idle_start(n->loop, &n->wake_w);
}

int node_propose(struct node *n, const void *data, size_t len, node_done_fn cb, void *ctx)
{
	struct pending *p;
	struct wal_entry e;
	int r;

	if (n->failed)
		return FLT_ESTOPPED;
	p = malloc(sizeof(*p) + len);
	if (!p)
		return -ENOMEM;
	memcpy(p->data, data, len);
	p->len = len;
	p->cb = cb;
	p->ctx = ctx;
	p->index = n->last_index + 1;
	e = (struct wal_entry){.term = n->term,
			       .index = p->index,
			       .type = WAL_ENTRY_NORMAL,
			       .data = p->data,
			       .len = len};
	r = wal_append(n->wal, &e, 1);
	if (r < 0) {
		free(p);
		return r;
	}
	n->last_index = p->index;
	n->stats.proposals++;
	n->stats.wal_bytes = wal_bytes_written(n->wal);
	enqueue(n, p);
	return 0;
}

int node_read_barrier(struct node *n, node_done_fn cb, void *ctx)
{
	struct pending *p = calloc(1, sizeof(*p));

	if (!p)
		return -ENOMEM;
	p->cb = cb;
	p->ctx = ctx;
	enqueue(n, p);
	return 0;
}

/* A new term for this start: record it durably before serving, as a Raft leader would (and
 * append the empty entry a new leader commits first, so X-Raft-Index moves like etcd's). */
static int become_leader(struct node *n, const struct wal_recovery *rec)
{
	struct wal_hard_state hs = {.term = n->term + 1, .vote = n->member_id};
	struct wal_entry e;
	int r;

	n->term = hs.term;
	hs.commit = n->last_index + 1;
	e = (struct wal_entry){.term = n->term, .index = n->last_index + 1, .type = WAL_ENTRY_NOOP};
	(void)rec;
	r = wal_append(n->wal, &e, 1);
	if (r >= 0)
		r = wal_set_hard_state(n->wal, &hs);
	if (r >= 0)
		r = wal_sync(n->wal);
	if (r < 0)
		return r;
	n->last_index = n->applied = e.index;
	return 0;
}

int node_new(struct ev_loop *loop, const struct node_config *cfg, struct store *store,
	     struct node **ret)
{
	struct wal_recovery rec;
	struct buf snap = BUF_INIT;
	char err[512] = "";
	uint64_t sidx = 0, sterm = 0;
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

	r = snap_load_latest(n->snap_dir, &sidx, &sterm, &snap, err, sizeof(err));
	if (r < 0) {
		log_error("cannot load snapshot: %s", err[0] ? err : flt_strerror(r));
		goto fail;
	}
	if (r == 1) {
		r = store_snapshot_load(store, snap.data, snap.len);
		if (r < 0) {
			log_error("cannot load snapshot at index %llu in '%s': %s",
				  (unsigned long long)sidx, n->snap_dir, flt_strerror(r));
			goto fail;
		}
		n->snap_index = n->applied = n->last_index = sidx;
		n->term = sterm;
	}
	buf_release(&snap);

	memset(&rec, 0, sizeof(rec));
	r = wal_open(n->wal_dir, n->snap_index, replay_cb, n, &rec, &n->wal);
	if (r < 0) {
		log_error("cannot open the WAL in '%s': %s", n->wal_dir,
			  rec.error[0] ? rec.error : flt_strerror(r));
		goto fail;
	}
	if (rec.truncated_tail)
		log_warn("the WAL in '%s' ended in a torn record (a write cut short by a crash): "
			 "truncated it after index %llu",
			 n->wal_dir, (unsigned long long)rec.last_index);
	if (rec.hs.term > n->term)
		n->term = rec.hs.term;
	if (rec.first_index && rec.first_index > n->snap_index + 1) {
		log_error("the WAL in '%s' starts at index %llu but the snapshot ends at %llu: "
			  "entries are missing",
			  n->wal_dir, (unsigned long long)rec.first_index,
			  (unsigned long long)n->snap_index);
		r = FLT_ECORRUPT;
		goto fail;
	}
	log_info("recovered store: snapshot index %llu, log up to %llu, term %llu",
		 (unsigned long long)n->snap_index, (unsigned long long)n->last_index,
		 (unsigned long long)n->term);
	r = become_leader(n, &rec);
	if (r < 0) {
		log_error("cannot write the WAL in '%s': %s", n->wal_dir, flt_strerror(r));
		goto fail;
	}
	ev_idle_init(&n->wake_w, wake_cb);
	ev_prepare_init(&n->commit_w, commit_cb);
	/* Run before other prepare watchers so replies queued by the callbacks go out this turn. */
	ev_set_priority(&n->commit_w, EV_MAXPRI);
	ev_prepare_start(loop, &n->commit_w);
	*ret = n;
	return 0;
fail:
	buf_release(&snap);
	node_free(n);
	return r;
}

void node_free(struct node *n)
{
	if (!n)
		return;
	/* After a failed sync what is buffered was already reported as failed to its proposers:
	 * it must not reach the disk now and come back at the next start. */
	if (n->wal && !n->failed && wal_pending(n->wal) && wal_sync(n->wal) < 0)
		n->failed = true;
	/* Entries that reached the disk will be applied on the next start; their proposers
	 * cannot be answered now. */
	fail_pending(n, FLT_ESTOPPED);
	if (n->loop && ev_is_active(&n->commit_w))
		ev_prepare_stop(n->loop, &n->commit_w);
	if (n->loop && ev_is_active(&n->wake_w))
		ev_idle_stop(n->loop, &n->wake_w);
	wal_close(n->wal);
	free(n->wal_dir);
	free(n->snap_dir);
	free(n);
}

uint64_t node_term(const struct node *n)
{
	return n->term;
}

uint64_t node_commit_index(const struct node *n)
{
	return n->applied;
}

uint64_t node_applied_index(const struct node *n)
{
	return n->applied;
}

bool node_is_leader(const struct node *n)
{
	return !n->failed;
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
