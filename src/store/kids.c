/* A directory's children (see store_int.h): one array whose front is in name order, a hash index
 * of node pointers for big directories, the name order restored only when someone reads it. The
 * store's key tree (store.c) calls in here and never touches the array itself. */
#include "store/store_int.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/*
 * A directory's children sit in one array whose front, up to `nsorted`, is in name order; a new
 * child is appended behind it and a deleted one leaves a NULL hole. Keeping the whole array
 * sorted made every create move half of it (O(n^2) pointer moves to fill a directory: the
 * memmove that topped the profile of bulk PUTs). Each child knows its position (kid_pos), so a
 * delete is O(1), and once a directory has more than KID_INDEX_MIN children an open-addressing
 * hash index of node pointers finds one by name; below that a scan is cheaper than hashing.
 * The index holds nodes, not positions, so reordering the array never touches it.
 *
 * Whoever needs the name order calls kids_sorted(), which closes the holes and merges the
 * unsorted tail into the front: O(n + k log k), and each such caller (render, serialize,
 * free) then does O(n) work anyway. With nothing changed since the last call it is O(1). */

/* More children than this get a hash index; it goes again below half of it, so a directory
 * whose size hovers around the limit does not build and free it on every other write. */
#define KID_INDEX_MIN 16
/* kid_pos is 32 bits (it fills the padding after snode.dir). */
#define KID_MAX_CAP UINT32_MAX

struct skids {
	struct snode **v; /* [0, nsorted): live ones in name order; [nsorted, len): in creation
	                   * order; NULL: a hole left by a delete. v[i]->kid_pos == i */
	size_t len, cap, nsorted;
	size_t live;          /* non-NULL entries */
	struct snode **islot; /* hash index, linear probing, NULL = free; NULL while small */
	uint32_t *ihash;      /* kid_hash() of islot[i]'s name (same allocation): probes compare
	                       * it before touching a node, moves and resizes need no node */
	size_t icap;          /* power of two, kept at most half full */
	uint64_t changed;     /* highest modifiedIndex a child was added or written with */
};

static size_t name_len(const struct snode *n)
{
	return n->path_len - (size_t)(n->name - n->path);
}

static bool name_is(const struct snode *n, const char *name, size_t nlen)
{
	return name_len(n) == nlen && !memcmp(n->name, name, nlen);
}

/* The children's order, the one listings and snapshots have always had: bytewise, a name
 * before the longer names it begins. For qsort over struct snode *. */
static int kid_cmp(const void *a, const void *b)
{
	const struct snode *x = *(struct snode *const *)a, *y = *(struct snode *const *)b;
	size_t xl = name_len(x), yl = name_len(y);
	int c = memcmp(x->name, y->name, xl < yl ? xl : yl);

	if (c)
		return c;
	return xl < yl ? -1 : xl > yl;
}

/* FNV-1a, then murmur3's finalizer: the slot is picked by the low bits, which FNV alone leaves
 * poorly mixed for names that differ only in their last bytes ("job1", "job2", ...). It is not
 * keyed (the store draws no random numbers): a client that picks colliding names can make one
 * directory's writes O(n) each, which every create into a big directory was before. */
static uint32_t kid_hash(const char *name, size_t nlen)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < nlen; i++) {
		h ^= (unsigned char)name[i];
		h *= 16777619u;
	}
	h ^= h >> 16;
	h *= 0x85ebca6bu;
	h ^= h >> 13;
	h *= 0xc2b2ae35u;
	h ^= h >> 16;
	return h;
}

/* The slot holding `name`, or the free slot where it would go (the index is never full). */
static size_t idx_probe(const struct skids *k, uint32_t h, const char *name, size_t nlen)
{
	size_t mask = k->icap - 1, i = h & mask;

	while (k->islot[i] && (k->ihash[i] != h || !name_is(k->islot[i], name, nlen)))
		i = (i + 1) & mask;
	return i;
}

static void idx_put(struct snode **islot, uint32_t *ihash, size_t icap, struct snode *n, uint32_t h)
{
	size_t mask = icap - 1, i;

	for (i = h & mask; islot[i]; i = (i + 1) & mask)
		;
	islot[i] = n;
	ihash[i] = h;
}

/* The smallest table for which n entries is the load we want right after a resize. */
static size_t idx_cap(size_t n)
{
	size_t icap = 32;

	while (icap < n)
		icap *= 2;
	return icap;
}

/* Move to a table of `icap` slots, filled from the old one's hashes or, for a directory's
 * first index, from its children. The old table stays on failure. */
static int idx_resize(struct skids *k, size_t icap)
{
	struct snode **islot;
	uint32_t *ihash;

	islot = calloc(icap, sizeof(*islot) + sizeof(*ihash));
	if (!islot)
		return -ENOMEM;
	ihash = (uint32_t *)(islot + icap);
	if (k->islot) {
		for (size_t i = 0; i < k->icap; i++)
			if (k->islot[i])
				idx_put(islot, ihash, icap, k->islot[i], k->ihash[i]);
	} else {
		for (size_t p = 0; p < k->len; p++)
			if (k->v[p])
				idx_put(islot, ihash, icap, k->v[p],
				        kid_hash(k->v[p]->name, name_len(k->v[p])));
	}
	free(k->islot);
	k->islot = islot;
	k->ihash = ihash;
	k->icap = icap;
	return 0;
}

static void idx_free(struct skids *k)
{
	free(k->islot);
	k->islot = NULL;
	k->ihash = NULL;
	k->icap = 0;
}

/* Empty slot i by backward-shift deletion (no tombstones, so probes stay short under churn):
 * later entries of the run move back into the gap unless that would put them before their
 * home slot. */
static void idx_remove(struct skids *k, size_t i)
{
	size_t mask = k->icap - 1, j = i;

	for (;;) {
		size_t home;

		j = (j + 1) & mask;
		if (!k->islot[j])
			break;
		home = k->ihash[j] & mask;
		if (((j - home) & mask) >= ((j - i) & mask)) {
			k->islot[i] = k->islot[j];
			k->ihash[i] = k->ihash[j];
			i = j;
		}
	}
	k->islot[i] = NULL;
}

static void kid_place(struct skids *k, size_t pos, struct snode *n)
{
	k->v[pos] = n;
	n->kid_pos = (uint32_t)pos;
}

/* Close the holes, keeping the order (the sorted front stays sorted), and give back memory a
 * directory that shrank a lot no longer needs. */
static void kids_pack(struct skids *k)
{
	size_t w = 0, ns = 0;

	for (size_t p = 0; p < k->len; p++) {
		if (!k->v[p])
			continue;
		ns += p < k->nsorted;
		if (w != p)
			kid_place(k, w, k->v[p]);
		w++;
	}
	k->len = w;
	k->nsorted = ns;
	if (k->cap > 8 && k->len < k->cap / 4) {
		size_t cap = k->len < 4 ? 8 : 2 * k->len;
		struct snode **v = realloc(k->v, cap * sizeof(*v));

		if (v) { /* if not, the bigger array serves as well */
			k->v = v;
			k->cap = cap;
		}
	}
}

static bool kids_in_order(struct snode *const *v, size_t n)
{
	for (size_t i = 1; i < n; i++)
		if (kid_cmp(&v[i - 1], &v[i]) > 0)
			return false;
	return true;
}

/* Sort the tail (it has no holes) and merge it into the front. */
static void kids_merge(struct skids *k)
{
	struct snode **tail = k->v + k->nsorted, **tmp;
	size_t nt = k->len - k->nsorted, i, j, w;

	if (!nt)
		return;
	/* snapshot loads and in-order keys append in order already */
	if (!kids_in_order(tail, nt)) {
		qsort(tail, nt, sizeof(*tail), kid_cmp);
		for (w = k->nsorted; w < k->len; w++)
			k->v[w]->kid_pos = (uint32_t)w;
	}
	if (k->nsorted && kid_cmp(&tail[-1], &tail[0]) > 0) {
		tmp = malloc(nt * sizeof(*tmp));
		if (!tmp) {
			/* no memory for the merge: sorting it all in place needs none */
			qsort(k->v, k->len, sizeof(*k->v), kid_cmp);
			for (w = 0; w < k->len; w++)
				k->v[w]->kid_pos = (uint32_t)w;
			k->nsorted = k->len;
			return;
		}
		memcpy(tmp, tail, nt * sizeof(*tmp));
		/* from the back, so the front slides right into the room the tail leaves; what is
		 * left of the front when the tail runs out is in place already */
		i = k->nsorted;
		j = nt;
		w = k->len;
		while (j > 0) {
			if (i > 0 && kid_cmp(&k->v[i - 1], &tmp[j - 1]) > 0)
				kid_place(k, --w, k->v[--i]);
			else
				kid_place(k, --w, tmp[--j]);
		}
		free(tmp);
	}
	k->nsorted = k->len;
}

struct snode *const *kids_sorted(const struct snode *d, size_t *ret_n)
{
	/* d is const to its readers, but the order is a cache: bringing it up to date changes no
	 * child, name or value. d->kids points to non-const memory, so no cast is needed, and the
	 * store is only ever used from one thread. */
	struct skids *k = d->kids;

	if (!k) {
		*ret_n = 0;
		return NULL;
	}
	if (k->live != k->len)
		kids_pack(k);
	kids_merge(k);
	*ret_n = k->len;
	return k->v;
}

size_t kids_count(const struct snode *d)
{
	return d->kids ? d->kids->live : 0;
}

struct snode *kid_find(const struct snode *d, const char *name, size_t nlen)
{
	const struct skids *k = d->kids;

	if (!k)
		return NULL;
	if (k->islot)
		return k->islot[idx_probe(k, kid_hash(name, nlen), name, nlen)];
	/* a small directory: at most a few dozen entries, see kids_room() and kid_del() */
	for (size_t i = 0; i < k->len; i++)
		if (k->v[i] && name_is(k->v[i], name, nlen))
			return k->v[i];
	return NULL;
}

/* Room to append one child. Holes are closed once they are half the array (the deletes that
 * made them pay for it), else the array doubles; a failed doubling still closes any holes. */
static int kids_room(struct skids *k)
{
	size_t holes = k->len - k->live;

	if (!holes || 2 * holes < k->len) {
		size_t cap = k->cap ? 2 * k->cap : 4;
		struct snode **v = cap <= KID_MAX_CAP ? realloc(k->v, cap * sizeof(*v)) : NULL;

		if (v) {
			k->v = v;
			k->cap = cap;
			return 0;
		}
		if (!holes)
			return -ENOMEM;
	}
	kids_pack(k);
	return 0;
}

/* Add `n`, whose name d has no child of yet (callers look it up first). On -ENOMEM nothing
 * changed that a reader could see. O(1) amortized. */
/* n (a child) has a new modifiedIndex: the parent's stamp (store_dir_stamp) moves. */
void kid_written(const struct snode *n)
{
	struct skids *k = n->parent ? n->parent->kids : NULL;

	if (k && n->modified > k->changed)
		k->changed = n->modified;
}

int kid_add(struct snode *d, struct snode *n)
{
	struct skids *k = d->kids;
	int r;

	if (!k) {
		k = calloc(1, sizeof(*k));
		if (!k)
			return -ENOMEM;
		d->kids = k;
	}
	if (k->len == k->cap && (r = kids_room(k)) < 0)
		return r;
	/* at most half full; doubling leaves it a quarter full, as many adds from the next one */
	if (k->live + 1 > KID_INDEX_MIN && (!k->islot || 2 * (k->live + 1) > k->icap) &&
	    (r = idx_resize(k, k->islot ? 2 * k->icap : idx_cap(2 * (k->live + 1)))) < 0)
		return r;
	if (k->islot) {
		size_t nlen = name_len(n);
		uint32_t h = kid_hash(n->name, nlen);
		size_t i = idx_probe(k, h, n->name, nlen);

		assert(!k->islot[i]);
		k->islot[i] = n;
		k->ihash[i] = h;
	}
	kid_place(k, k->len++, n);
	k->live++;
	n->parent = d;
	kid_written(n);
	return 0;
}

void kid_del(struct snode *d, struct snode *n)
{
	struct skids *k = d->kids;

	assert(k && n->kid_pos < k->len && k->v[n->kid_pos] == n);
	if (k->islot) {
		size_t mask = k->icap - 1, i = kid_hash(n->name, name_len(n)) & mask;

		while (k->islot[i] != n) {
			assert(k->islot[i]); /* every child is indexed */
			i = (i + 1) & mask;
		}
		idx_remove(k, i);
	}
	k->v[n->kid_pos] = NULL;
	k->live--;
	/* holes at the end are just a shorter array (each one is trimmed once) */
	while (k->len && !k->v[k->len - 1])
		k->len--;
	if (k->nsorted > k->len)
		k->nsorted = k->len;
	if (!k->islot)
		return;
	if (k->live < KID_INDEX_MIN / 2) {
		/* back to scans: pack so they see no more holes than children */
		idx_free(k);
		kids_pack(k);
	} else if (16 * k->live < k->icap) {
		/* a quarter full at most: as many deletes or adds again before the next resize. If
		 * it fails, the big table works as well. */
		(void)idx_resize(k, idx_cap(4 * k->live));
	}
}

void kids_free(struct skids *k)
{
	if (!k)
		return;
	free(k->v);
	free(k->islot);
	free(k);
}

struct snode *const *kids_unordered(const struct snode *d, size_t *ret_len)
{
	*ret_len = d->kids ? d->kids->len : 0;
	return d->kids ? d->kids->v : NULL;
}

uint64_t kids_changed(const struct snode *d)
{
	return d->kids ? d->kids->changed : 0;
}
