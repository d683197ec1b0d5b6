/* msgpack encodings of the store: one command per log entry, and the snapshot of the whole tree.
 * Both come from disk or peers, so decoding checks every type and length and refuses trailing
 * bytes; garbage yields FLT_EINVAL / FLT_ECORRUPT, never a crash or a half-changed store.
 *
 * Command, version 1: [1, op, time_ns, key, value, ttl|nil, flags, prevValue|nil, prevIndex,
 * prevExist(-1|0|1)], flags: 1 dir, 2 refresh, 4 recursive.
 * Snapshot, version 1: ["flotilla-store", 1, index, [[path, dir, value|nil, created, modified,
 * expire_ns], ...]] with the nodes in preorder (parents first), the root left out. */
#include "store/store_int.h"

#include <errno.h>
#include <msgpack.h>
#include <string.h>

#include "util/err.h"

#define CMD_VERSION  1
#define SNAP_MAGIC   "flotilla-store"
#define SNAP_VERSION 1

enum { F_DIR = 1, F_REFRESH = 2, F_RECURSIVE = 4 };

static int buf_write_cb(void *data, const char *p, size_t len)
{
	return buf_append(data, p, len) < 0 ? -1 : 0;
}

static int pack_str(msgpack_packer *pk, const char *s, size_t len)
{
	if (msgpack_pack_str(pk, len) < 0)
		return -1;
	return msgpack_pack_str_body(pk, s ? s : "", len);
}

int store_cmd_encode(const struct store_cmd *c, struct buf *out)
{
	msgpack_packer pk;
	size_t start = out->len;
	unsigned flags =
	    (c->dir ? F_DIR : 0) | (c->refresh ? F_REFRESH : 0) | (c->recursive ? F_RECURSIVE : 0);
	int e = 0;

	msgpack_packer_init(&pk, out, buf_write_cb);
	e |= msgpack_pack_array(&pk, 10);
	e |= msgpack_pack_uint32(&pk, CMD_VERSION);
	e |= msgpack_pack_uint32(&pk, (uint32_t)c->op);
	e |= msgpack_pack_int64(&pk, c->time_ns);
	e |= pack_str(&pk, c->key, c->key ? strlen(c->key) : 0);
	e |= pack_str(&pk, c->value, c->value ? c->value_len : 0);
	e |= c->has_ttl ? msgpack_pack_uint64(&pk, c->ttl) : msgpack_pack_nil(&pk);
	e |= msgpack_pack_uint32(&pk, flags);
	e |=
	    c->prev_value ? pack_str(&pk, c->prev_value, c->prev_value_len) : msgpack_pack_nil(&pk);
	e |= msgpack_pack_uint64(&pk, c->prev_index);
	e |= msgpack_pack_int32(&pk, c->prev_exist < 0 ? -1 : c->prev_exist ? 1 : 0);
	if (e) {
		out->len = start;
		if (out->data)
			out->data[start] = '\0';
		return -ENOMEM;
	}
	return 0;
}

static bool get_u64(const msgpack_object *o, uint64_t *ret)
{
	if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
		return false;
	*ret = o->via.u64;
	return true;
}

static bool get_i64(const msgpack_object *o, int64_t *ret)
{
	if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
		if (o->via.u64 > INT64_MAX)
			return false;
		*ret = (int64_t)o->via.u64;
		return true;
	}
	if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
		*ret = o->via.i64;
		return true;
	}
	return false;
}

/* A str (or bin) into `b` (NUL-terminated). nil gives false unless allowed. */
static bool get_str(const msgpack_object *o, struct buf *b, bool *ret_nil)
{
	if (o->type == MSGPACK_OBJECT_NIL && ret_nil) {
		*ret_nil = true;
		return true;
	}
	if (ret_nil)
		*ret_nil = false;
	buf_clear(b);
	if (o->type == MSGPACK_OBJECT_STR)
		return buf_append(b, o->via.str.ptr, o->via.str.size) >= 0 &&
		       buf_reserve(b, 0) >= 0;
	if (o->type == MSGPACK_OBJECT_BIN)
		return buf_append(b, o->via.bin.ptr, o->via.bin.size) >= 0 &&
		       buf_reserve(b, 0) >= 0;
	return false;
}

static int decode_obj(const msgpack_object *o, struct store_cmd *c, struct buf *key,
                      struct buf *value, struct buf *prev_value)
{
	const msgpack_object *a;
	uint64_t u;
	int64_t i;
	bool nil;
	int r = FLT_EINVAL;

	memset(c, 0, sizeof(*c));
	if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != 10)
		goto out;
	a = o->via.array.ptr;
	if (!get_u64(&a[0], &u) || u != CMD_VERSION)
		goto out;
	if (!get_u64(&a[1], &u) || u > STORE_OP_DELETE)
		goto out;
	c->op = (enum store_op)u;
	if (!get_i64(&a[2], &c->time_ns))
		goto out;
	if (!get_str(&a[3], key, NULL) || memchr(key->data ? key->data : "", 0, key->len))
		goto out;
	c->key = key->data ? key->data : "";
	if (!get_str(&a[4], value, NULL))
		goto out;
	c->value = value->data ? value->data : "";
	c->value_len = value->len;
	if (a[5].type == MSGPACK_OBJECT_NIL) {
		c->has_ttl = false;
	} else if (get_u64(&a[5], &c->ttl)) {
		c->has_ttl = true;
	} else {
		goto out;
	}
	if (!get_u64(&a[6], &u) || u > 7)
		goto out;
	c->dir = u & F_DIR;
	c->refresh = u & F_REFRESH;
	c->recursive = u & F_RECURSIVE;
	if (!get_str(&a[7], prev_value, &nil))
		goto out;
	if (!nil) {
		c->prev_value = prev_value->data ? prev_value->data : "";
		c->prev_value_len = prev_value->len;
	}
	if (!get_u64(&a[8], &c->prev_index))
		goto out;
	if (!get_i64(&a[9], &i) || i < -1 || i > 1)
		goto out;
	c->prev_exist = (int)i;
	r = 0;
out:
	return r;
}

int store_cmd_decode(const void *data, size_t len, struct store_cmd *c, struct buf *key,
                     struct buf *value, struct buf *prev_value)
{
	msgpack_unpacked up;
	size_t off = 0;
	int r = FLT_EINVAL;

	memset(c, 0, sizeof(*c));
	msgpack_unpacked_init(&up);
	if (msgpack_unpack_next(&up, data, len, &off) == MSGPACK_UNPACK_SUCCESS && off == len)
		r = decode_obj(&up.data, c, key, value, prev_value);
	msgpack_unpacked_destroy(&up);
	return r;
}

/* store_cmd_decode in the store's own zone, cleared after each command: msgpack_unpacked made
 * and freed an 8 KiB zone per command, a malloc size that consolidates the fastbins each time
 * (1.5% of the CPU of a three-member PUT load; the apply path runs on every member). */
int cmd_decode(struct store *s, const void *data, size_t len, struct store_cmd *c, struct buf *key,
               struct buf *value, struct buf *prev_value)
{
	msgpack_object o;
	size_t off = 0;
	int r = FLT_EINVAL;

	memset(c, 0, sizeof(*c));
	if (!s->cmd_zone && !(s->cmd_zone = msgpack_zone_new(MSGPACK_ZONE_CHUNK_SIZE)))
		return -ENOMEM;
	if (msgpack_unpack(data, len, &off, s->cmd_zone, &o) == MSGPACK_UNPACK_SUCCESS &&
	    off == len)
		r = decode_obj(&o, c, key, value, prev_value);
	msgpack_zone_clear(s->cmd_zone);
	return r;
}

/* ---------------------------------------------------------------- snapshots */

/* A directory's children go out in the order they sit in (kids_unordered, skipping the holes of
 * deletes), not in name order: the loader inserts them one by one whatever the order, and the
 * snapshot child sorting every big directory again (the parent's array stays unsorted) was 9%
 * of the CPU samples of a PUT load, spent on the core the loop runs on. A directory in the
 * snapshot still comes before its children (depth first), which the loader needs. */
static int snap_node(msgpack_packer *pk, const struct snode *n)
{
	size_t nk;
	struct snode *const *kids = kids_unordered(n, &nk);

	for (size_t i = 0; i < nk; i++) {
		const struct snode *k = kids[i];
		int e = 0;

		if (!k)
			continue;
		e |= msgpack_pack_array(pk, 6);
		e |= pack_str(pk, k->path, k->path_len);
		e |= k->dir ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
		e |= k->dir ? msgpack_pack_nil(pk) : pack_str(pk, k->value, k->value_len);
		e |= msgpack_pack_uint64(pk, k->created);
		e |= msgpack_pack_uint64(pk, k->modified);
		e |= msgpack_pack_int64(pk, k->expire_ns);
		if (e || (k->dir && snap_node(pk, k) < 0))
			return -ENOMEM;
	}
	return 0;
}

static size_t count_nodes(const struct snode *n)
{
	size_t nk, c = 0;
	struct snode *const *kids = kids_unordered(n, &nk);

	for (size_t i = 0; i < nk; i++)
		if (kids[i])
			c += 1 + count_nodes(kids[i]);
	return c;
}

int store_snapshot_save(const struct store *s, struct buf *out)
{
	msgpack_packer pk;
	size_t start = out->len;
	size_t total = count_nodes(s->root);
	int e = 0;

	if (total > UINT32_MAX)
		return FLT_ETOOBIG;
	msgpack_packer_init(&pk, out, buf_write_cb);
	e |= msgpack_pack_array(&pk, 4);
	e |= pack_str(&pk, SNAP_MAGIC, strlen(SNAP_MAGIC));
	e |= msgpack_pack_uint32(&pk, SNAP_VERSION);
	e |= msgpack_pack_uint64(&pk, s->index);
	e |= msgpack_pack_array(&pk, (uint32_t)total);
	if (e || snap_node(&pk, s->root) < 0) {
		out->len = start;
		if (out->data)
			out->data[start] = '\0';
		return -ENOMEM;
	}
	return 0;
}

int store_snapshot_load(struct store *s, const void *data, size_t len)
{
	msgpack_unpacked up;
	size_t off = 0;
	const msgpack_object *a, *nodes;
	struct snode *root = NULL;
	struct tree_heap th = {NULL, 0, 0};
	struct buf path = BUF_INIT, value = BUF_INIT;
	uint64_t u, index;
	int r = FLT_ECORRUPT;

	msgpack_unpacked_init(&up);
	if (msgpack_unpack_next(&up, data, len, &off) != MSGPACK_UNPACK_SUCCESS || off != len)
		goto out;
	if (up.data.type != MSGPACK_OBJECT_ARRAY || up.data.via.array.size != 4)
		goto out;
	a = up.data.via.array.ptr;
	if (a[0].type != MSGPACK_OBJECT_STR || a[0].via.str.size != strlen(SNAP_MAGIC) ||
	    memcmp(a[0].via.str.ptr, SNAP_MAGIC, strlen(SNAP_MAGIC)))
		goto out;
	if (!get_u64(&a[1], &u))
		goto out;
	if (u != SNAP_VERSION) {
		r = FLT_EVERSION;
		goto out;
	}
	if (!get_u64(&a[2], &index) || a[3].type != MSGPACK_OBJECT_ARRAY)
		goto out;
	nodes = &a[3];
	root = tree_new();
	if (!root) {
		r = -ENOMEM;
		goto out;
	}
	for (uint32_t i = 0; i < nodes->via.array.size; i++) {
		const msgpack_object *n = &nodes->via.array.ptr[i], *f;
		uint64_t created, modified;
		int64_t expire;
		bool dir, nil;

		if (n->type != MSGPACK_OBJECT_ARRAY || n->via.array.size != 6)
			goto out;
		f = n->via.array.ptr;
		if (!get_str(&f[0], &path, NULL) || f[1].type != MSGPACK_OBJECT_BOOLEAN ||
		    !get_str(&f[2], &value, &nil) || !get_u64(&f[3], &created) ||
		    !get_u64(&f[4], &modified) || !get_i64(&f[5], &expire) || expire < 0)
			goto out;
		dir = f[1].via.boolean;
		if (dir != nil || !path.data || memchr(path.data, 0, path.len) || created > index ||
		    modified > index)
			goto out;
		r = tree_insert(root, &th, path.data, path.len, dir, nil ? NULL : value.data,
		                nil ? 0 : value.len, created, modified, expire);
		if (r < 0)
			goto out;
		r = FLT_ECORRUPT;
	}
	tree_swap(s, root, &th, index);
	root = NULL;
	r = 0;
out:
	tree_free(root);
	free(th.v);
	buf_release(&path);
	buf_release(&value);
	msgpack_unpacked_destroy(&up);
	return r;
}
