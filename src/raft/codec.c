/* msgpack encoding of struct raft_msg (see codec.h). A message is one array:
 *   [version, type, from, to, term, log_term, index, commit, flags, reject_hint, context,
 *    [[term, index, type, bin data], ...], snap_index, snap_term, [voter ids], snap_offset,
 *    snap_size, bin chunk]
 * flags: bit 0 reject, bit 1 force, bit 2 snap_done. Integers are unsigned; the decoder accepts
 * nothing else, so a frame either maps onto every field or is refused. */
#include "raft/codec.h"

#include <errno.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"
#include "util/err.h"

#define MSG_FIELDS 18

static int buf_write_cb(void *data, const char *p, size_t len)
{
	return buf_append(data, p, len) < 0 ? -1 : 0;
}

static int pack_bin(msgpack_packer *pk, const void *p, size_t len)
{
	if (msgpack_pack_bin(pk, len) < 0)
		return -1;
	return len ? msgpack_pack_bin_body(pk, p, len) : 0;
}

int raft_msg_encode(const struct raft_msg *m, struct buf *out)
{
	msgpack_packer pk;
	unsigned flags = (m->reject ? 1u : 0) | (m->force ? 2u : 0) | (m->snap_done ? 4u : 0);
	size_t start = out->len;
	int e = 0;

	msgpack_packer_init(&pk, out, buf_write_cb);
	e |= msgpack_pack_array(&pk, MSG_FIELDS);
	e |= msgpack_pack_uint32(&pk, RAFT_CODEC_VERSION);
	e |= msgpack_pack_uint32(&pk, (uint32_t)m->type);
	e |= msgpack_pack_uint64(&pk, m->from);
	e |= msgpack_pack_uint64(&pk, m->to);
	e |= msgpack_pack_uint64(&pk, m->term);
	e |= msgpack_pack_uint64(&pk, m->log_term);
	e |= msgpack_pack_uint64(&pk, m->index);
	e |= msgpack_pack_uint64(&pk, m->commit);
	e |= msgpack_pack_uint32(&pk, flags);
	e |= msgpack_pack_uint64(&pk, m->reject_hint);
	e |= msgpack_pack_uint64(&pk, m->context);
	e |= msgpack_pack_array(&pk, m->n_entries);
	for (size_t i = 0; i < m->n_entries && !e; i++) {
		const struct raft_entry *en = &m->entries[i];

		e |= msgpack_pack_array(&pk, 4);
		e |= msgpack_pack_uint64(&pk, en->term);
		e |= msgpack_pack_uint64(&pk, en->index);
		e |= msgpack_pack_uint8(&pk, en->type);
		e |= pack_bin(&pk, en->data, en->len);
	}
	e |= msgpack_pack_uint64(&pk, m->snap_index);
	e |= msgpack_pack_uint64(&pk, m->snap_term);
	e |= msgpack_pack_array(&pk, m->snap_conf.n);
	for (uint32_t i = 0; i < m->snap_conf.n && i < RAFT_MAX_VOTERS; i++)
		e |= msgpack_pack_uint64(&pk, m->snap_conf.ids[i]);
	e |= msgpack_pack_uint64(&pk, m->snap_offset);
	e |= msgpack_pack_uint64(&pk, m->snap_size);
	e |= pack_bin(&pk, m->chunk, m->chunk_len);
	if (e) {
		out->len = start;
		return -ENOMEM;
	}
	return 0;
}

static bool get_u64(const msgpack_object *o, uint64_t *v)
{
	if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
		return false;
	*v = o->via.u64;
	return true;
}

static bool get_bin(const msgpack_object *o, const void **p, size_t *len)
{
	if (o->type != MSGPACK_OBJECT_BIN)
		return false;
	*len = o->via.bin.size;
	*p = o->via.bin.size ? o->via.bin.ptr : NULL;
	return true;
}

static int decode_entries(const msgpack_object *o, struct raft_decoded *d)
{
	const msgpack_object_array *a;

	if (o->type != MSGPACK_OBJECT_ARRAY)
		return FLT_EPROTO;
	a = &o->via.array;
	if (!a->size)
		return 0;
	d->entries = calloc(a->size, sizeof(*d->entries));
	if (!d->entries)
		return -ENOMEM;
	for (uint32_t i = 0; i < a->size; i++) {
		struct raft_entry *e = &d->entries[i];
		const msgpack_object *f;
		uint64_t type;

		if (a->ptr[i].type != MSGPACK_OBJECT_ARRAY || a->ptr[i].via.array.size != 4)
			return FLT_EPROTO;
		f = a->ptr[i].via.array.ptr;
		if (!get_u64(&f[0], &e->term) || !get_u64(&f[1], &e->index) ||
		    !get_u64(&f[2], &type) || type > RAFT_ENTRY_CONF ||
		    !get_bin(&f[3], &e->data, &e->len))
			return FLT_EPROTO;
		e->type = (uint8_t)type;
	}
	d->msg.entries = d->entries;
	d->msg.n_entries = a->size;
	return 0;
}

static uint64_t be(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

/* msgpack-c allocates a container's elements from its declared count before reading them, so a
 * five-byte frame could ask for gigabytes. Walk the headers first: every element takes at least
 * one byte, so no declared count may exceed the bytes that are left. */
static bool counts_bounded(const uint8_t *p, size_t len)
{
	size_t pos = 0;

	while (pos < len) {
		uint8_t c = p[pos++];
		size_t left = len - pos;
		uint64_t count = 0, skip = 0;
		unsigned hdr = 0;

		if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3)
			continue;
		if ((c & 0xf0) == 0x90 || (c & 0xf0) == 0x80) {
			count = (uint64_t)(c & 0x0f) * ((c & 0xf0) == 0x80 ? 2 : 1);
		} else if ((c & 0xe0) == 0xa0) {
			skip = c & 0x1f;
		} else {
			switch (c) {
			case 0xc4:
			case 0xd9:
				hdr = 1;
				break;
			case 0xc5:
			case 0xda:
				hdr = 2;
				break;
			case 0xc6:
			case 0xdb:
				hdr = 4;
				break;
			case 0xcc:
			case 0xd0:
				skip = 1;
				break;
			case 0xcd:
			case 0xd1:
				skip = 2;
				break;
			case 0xca:
			case 0xce:
			case 0xd2:
				skip = 4;
				break;
			case 0xcb:
			case 0xcf:
			case 0xd3:
				skip = 8;
				break;
			case 0xd4:
				skip = 2;
				break;
			case 0xd5:
				skip = 3;
				break;
			case 0xd6:
				skip = 5;
				break;
			case 0xd7:
				skip = 9;
				break;
			case 0xd8:
				skip = 17;
				break;
			case 0xc7:
				hdr = 1;
				skip = 1;
				break;
			case 0xc8:
				hdr = 2;
				skip = 1;
				break;
			case 0xc9:
				hdr = 4;
				skip = 1;
				break;
			case 0xdc:
			case 0xdd:
				if (left < (c == 0xdc ? 2u : 4u))
					return false;
				count = be(p + pos, c == 0xdc ? 2 : 4);
				pos += c == 0xdc ? 2 : 4;
				left = len - pos;
				break;
			case 0xde:
			case 0xdf:
				if (left < (c == 0xde ? 2u : 4u))
					return false;
				count = 2 * be(p + pos, c == 0xde ? 2 : 4);
				pos += c == 0xde ? 2 : 4;
				left = len - pos;
				break;
			default:
				return false; /* 0xc1: never used */
			}
		}
		if (hdr) {
			if (left < hdr)
				return false;
			skip += be(p + pos, hdr);
			pos += hdr;
			left = len - pos;
		}
		if (count > left || skip > left)
			return false;
		pos += (size_t)skip;
	}
	return true;
}

int raft_msg_decode(const void *data, size_t len, struct raft_decoded *d)
{
	msgpack_unpacked *u;
	const msgpack_object *f;
	struct raft_msg *m = &d->msg;
	uint64_t v, flags;
	size_t off = 0;
	int r;

	memset(d, 0, sizeof(*d));
	if (!counts_bounded(data, len))
		return FLT_EPROTO;
	u = malloc(sizeof(*u));
	if (!u)
		return -ENOMEM;
	msgpack_unpacked_init(u);
	d->zone = u;
	switch (msgpack_unpack_next(u, data, len, &off)) {
	case MSGPACK_UNPACK_SUCCESS:
		break;
	case MSGPACK_UNPACK_NOMEM_ERROR:
		return -ENOMEM;
	default:
		return FLT_EPROTO;
	}
	if (off != len || u->data.type != MSGPACK_OBJECT_ARRAY ||
	    u->data.via.array.size != MSG_FIELDS)
		return FLT_EPROTO;
	f = u->data.via.array.ptr;
	if (!get_u64(&f[0], &v) || v != RAFT_CODEC_VERSION)
		return FLT_EPROTO;
	if (!get_u64(&f[1], &v) || v < RAFT_MSG_APPEND || v > RAFT_MSG_PROP)
		return FLT_EPROTO;
	m->type = (enum raft_msg_type)v;
	if (!get_u64(&f[2], &m->from) || !get_u64(&f[3], &m->to) || !get_u64(&f[4], &m->term) ||
	    !get_u64(&f[5], &m->log_term) || !get_u64(&f[6], &m->index) ||
	    !get_u64(&f[7], &m->commit) || !get_u64(&f[8], &flags) || flags > 7 ||
	    !get_u64(&f[9], &m->reject_hint) || !get_u64(&f[10], &m->context))
		return FLT_EPROTO;
	m->reject = flags & 1;
	m->force = flags & 2;
	m->snap_done = flags & 4;
	r = decode_entries(&f[11], d);
	if (r < 0)
		return r;
	if (!get_u64(&f[12], &m->snap_index) || !get_u64(&f[13], &m->snap_term))
		return FLT_EPROTO;
	if (f[14].type != MSGPACK_OBJECT_ARRAY || f[14].via.array.size > RAFT_MAX_VOTERS)
		return FLT_EPROTO;
	m->snap_conf.n = f[14].via.array.size;
	for (uint32_t i = 0; i < m->snap_conf.n; i++)
		if (!get_u64(&f[14].via.array.ptr[i], &m->snap_conf.ids[i]))
			return FLT_EPROTO;
	if (!get_u64(&f[15], &m->snap_offset) || !get_u64(&f[16], &m->snap_size) ||
	    !get_bin(&f[17], &m->chunk, &m->chunk_len))
		return FLT_EPROTO;
	return 0;
}

void raft_decoded_release(struct raft_decoded *d)
{
	if (!d)
		return;
	if (d->zone) {
		msgpack_unpacked_destroy(d->zone);
		free(d->zone);
	}
	free(d->entries);
	memset(d, 0, sizeof(*d));
}
