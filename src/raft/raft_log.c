/* The Raft core's in-memory log (see raft_int.h): appending, truncating on conflict, compaction
 * into a snapshot and installing a received one, plus the voter configuration the log carries and
 * its encoding (thesis 4.1). Pure, like the rest of the core. */
#include "raft_int.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "util/err.h"

/* ---- configuration ---- */

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

bool raft_conf_valid(const struct raft_conf *c)
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

/* ---- the log ---- */

/* The configuration is the newest conf entry in the log, or the snapshot's (thesis 4.1). */
void raft_recompute_conf(struct raft *r)
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
	raft_sync_progress(r);
	TRACE(r, "conf", ci, c.n);
}

/* ---- entry data ----
 *
 * Entries' payloads are packed into chunks of LOG_CHUNK bytes (a larger entry gets a chunk of
 * its own), each payload preceded by a pointer to its chunk, which is freed when its last entry
 * goes. One allocation per few hundred entries instead of one each, and compacting 100,000
 * entries frees a hundred-odd chunks instead of 100,000 scattered blocks: that took 18-29 ms on
 * the daemon's loop at every snapshot. */
#define LOG_CHUNK ((size_t)256 * 1024)

struct log_chunk {
	size_t live; /* entries still using it */
	size_t used, cap;
	_Alignas(max_align_t) unsigned char data[];
};

#define PAYLOAD_HDR sizeof(struct log_chunk *)

static void *data_alloc(struct raft *r, size_t len)
{
	struct log_chunk *c = r->chunk;
	size_t need = PAYLOAD_HDR + ((len + 7) & ~(size_t)7);
	unsigned char *p;

	if (!c || c->cap - c->used < need) {
		size_t cap = need > LOG_CHUNK ? need : LOG_CHUNK;

		c = rmalloc(r, sizeof(*c) + cap);
		if (!c)
			return NULL;
		c->live = c->used = 0;
		c->cap = cap;
		if (r->chunk && !r->chunk->live)
			rfree(r, r->chunk);
		r->chunk = c;
	}
	p = c->data + c->used;
	memcpy(p, &c, sizeof(c));
	c->used += need;
	c->live++;
	return p + PAYLOAD_HDR;
}

static void chunk_release(struct raft *r, struct log_chunk *c, size_t n)
{
	c->live -= n;
	if (c->live)
		return;
	if (c == r->chunk)
		c->used = 0; /* empty: start it over */
	else
		rfree(r, c);
}

/* Release the payloads of log[from, to). Neighbouring entries share a chunk: one chunk header
 * read per run of them, the rest only compare their pointers with the chunk's bounds. Reading
 * each payload's header instead cost a cache miss per entry: 5-7 ms of the loop for the 100,000
 * entries a snapshot compacts. */
static void data_free_range(struct raft *r, size_t from, size_t to)
{
	size_t i = from;

	while (i < to) {
		struct log_chunk *c;
		uintptr_t lo, hi;
		size_t n = 0;

		if (!r->log[i].data) {
			i++;
			continue;
		}
		memcpy(&c, (const unsigned char *)r->log[i].data - PAYLOAD_HDR, sizeof(c));
		lo = (uintptr_t)c->data;
		hi = lo + c->used;
		for (; i < to; i++) {
			uintptr_t p = (uintptr_t)r->log[i].data;

			if (!p)
				continue;
			if (p < lo || p >= hi)
				break; /* another chunk's: live chunks do not overlap */
			n++;
		}
		chunk_release(r, c, n);
	}
}

void raft_log_chunks_free(struct raft *r)
{
	rfree(r, r->chunk);
	r->chunk = NULL;
}

void raft_free_entries(struct raft *r, size_t from)
{
	data_free_range(r, from, r->log_n);
	r->log_n = from;
}

/* Drop entries >= index (they conflict with the leader's). */
void raft_truncate_from(struct raft *r, uint64_t index)
{
	if (index > last_index(r))
		return;
	TRACE(r, "truncate", index, last_index(r));
	if (index <= r->commit)
		TRACE(r, "BUG: truncating committed entries", index, r->commit);
	raft_free_entries(r, index - r->snap_index - 1);
	if (r->stable >= index)
		r->stable = index - 1;
	if (r->conf_index >= index)
		raft_recompute_conf(r);
}

/* Append one entry (data copied). 0 or -ENOMEM. */
int raft_log_push(struct raft *r, uint64_t term, uint8_t type, const void *data, size_t len)
{
	struct raft_entry *e;
	void *copy = NULL;

	if (grow(r, (void **)&r->log, &r->log_cap, r->log_n + 1, sizeof(*r->log)) < 0)
		return -ENOMEM;
	if (len) {
		copy = data_alloc(r, len);
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
		raft_recompute_conf(r);
	return 0;
}

/* Largest index <= `index` whose term is <= `term` (fast back-tracking, as in etcd). */
uint64_t raft_find_conflict_by_term(const struct raft *r, uint64_t index, uint64_t term)
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

/* ---- snapshots ---- */

void raft_install_snapshot(struct raft *r)
{
	TRACE(r, "install snapshot", r->in_index, r->in_term);
	raft_free_entries(r, 0);
	raft_snap_release(r);
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
	raft_recompute_conf(r);
}

void raft_snap_release(struct raft *r)
{
	if (!r->snap_borrowed)
		rfree(r, (void *)r->snap_data);
	r->snap_data = NULL;
	r->snap_len = 0;
	r->snap_borrowed = false;
}

int raft_conf_at(const struct raft *r, uint64_t index, struct raft_conf *ret)
{
	if (index < r->snap_index || index > r->snap_index + r->log_n)
		return FLT_EINVAL;
	for (size_t i = (size_t)(index - r->snap_index); i-- > 0;)
		if (r->log[i].type == RAFT_ENTRY_CONF &&
		    raft_conf_decode(r->log[i].data, r->log[i].len, ret) == 0)
			return 0;
	*ret = r->snap_conf;
	return 0;
}

/* Drop the log up to `index` and take `data` as the snapshot there (ours to free unless
 * `borrowed`). */
static void compact(struct raft *r, uint64_t index, const void *data, size_t len, bool borrowed)
{
	struct raft_conf c;
	uint64_t term = term_at(r, index);
	size_t drop = (size_t)(index - r->snap_index);

	raft_conf_at(r, index, &c);
	data_free_range(r, 0, drop);
	memmove(r->log, r->log + drop, (r->log_n - drop) * sizeof(*r->log));
	r->log_n -= drop;
	r->snap_index = index;
	r->snap_term = term;
	r->snap_conf = c;
	raft_snap_release(r);
	r->snap_data = data;
	r->snap_len = len;
	r->snap_borrowed = borrowed;
	TRACE(r, "compacted", index, term);
}

int raft_compact(struct raft *r, uint64_t index, const void *data, size_t len)
{
	void *copy = NULL;

	if (index <= r->snap_index || index > r->applied)
		return FLT_EINVAL;
	if (len) {
		copy = rmalloc(r, len);
		if (!copy)
			return -ENOMEM;
		memcpy(copy, data, len);
	}
	compact(r, index, copy, len, false);
	return 0;
}

int raft_compact_borrow(struct raft *r, uint64_t index, const void *data, size_t len)
{
	if (index <= r->snap_index || index > r->applied)
		return FLT_EINVAL;
	compact(r, index, data, len, true);
	return 0;
}
