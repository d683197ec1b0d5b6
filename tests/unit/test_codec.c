/* Unit tests of the Raft message codec: a table of messages that must round-trip field for field,
 * a table of malformed frames that must be refused with FLT_EPROTO, every truncation and
 * single-byte corruption of a valid frame (decode or fail, never crash), and proposal forwarding
 * between two real cores whose messages all go through the codec. */
#include "raft/codec.h"
#include "util/buf.h"
#include "util/err.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <cmocka.h>

static const struct raft_entry ents[] = {
    {.term = 3, .index = 10, .type = RAFT_ENTRY_NORMAL, .data = "put /a 1", .len = 8},
    {.term = 3, .index = 11, .type = RAFT_ENTRY_NOOP},
    {.term = 4,
     .index = 12,
     .type = RAFT_ENTRY_CONF,
     .data = "\1\0\0\0\7\0\0\0\0\0\0\0",
     .len = 12},
};

static const struct raft_msg msgs[] = {
    {.type = RAFT_MSG_APPEND,
     .from = 1,
     .to = 2,
     .term = 4,
     .log_term = 3,
     .index = 9,
     .commit = 8,
     .entries = ents,
     .n_entries = 3},
    {.type = RAFT_MSG_APPEND_RESP,
     .from = 2,
     .to = 1,
     .term = 4,
     .index = 5,
     .reject = true,
     .reject_hint = 4,
     .log_term = 2},
    {.type = RAFT_MSG_VOTE, .from = UINT64_MAX, .to = 1, .term = UINT64_MAX, .force = true},
    {.type = RAFT_MSG_HEARTBEAT, .from = 1, .to = 3, .term = 7, .commit = 100, .context = 42},
    {.type = RAFT_MSG_SNAPSHOT,
     .from = 1,
     .to = 2,
     .term = 9,
     .snap_index = 1000,
     .snap_term = 8,
     .snap_conf = {.n = 3, .ids = {1, 2, 3}},
     .snap_offset = 4096,
     .snap_size = 10000,
     .chunk = "chunkdata",
     .chunk_len = 9,
     .snap_done = true},
    {.type = RAFT_MSG_SNAPSHOT_RESP,
     .from = 2,
     .to = 1,
     .term = 9,
     .snap_index = 1000,
     .snap_offset = 4096},
    {.type = RAFT_MSG_READ_INDEX_RESP, .from = 1, .to = 2, .term = 1, .context = 7, .index = 3},
    {.type = RAFT_MSG_PROP, .from = 2, .to = 1, .term = 1, .entries = ents, .n_entries = 1},
};

static void assert_msg_equal(const struct raft_msg *a, const struct raft_msg *b)
{
	assert_int_equal(a->type, b->type);
	assert_true(a->from == b->from && a->to == b->to && a->term == b->term);
	assert_true(a->log_term == b->log_term && a->index == b->index && a->commit == b->commit);
	assert_true(a->reject == b->reject && a->force == b->force && a->snap_done == b->snap_done);
	assert_true(a->reject_hint == b->reject_hint && a->context == b->context);
	assert_int_equal(a->n_entries, b->n_entries);
	for (size_t i = 0; i < a->n_entries; i++) {
		assert_true(a->entries[i].term == b->entries[i].term);
		assert_true(a->entries[i].index == b->entries[i].index);
		assert_int_equal(a->entries[i].type, b->entries[i].type);
		assert_int_equal(a->entries[i].len, b->entries[i].len);
		if (a->entries[i].len)
			assert_memory_equal(a->entries[i].data, b->entries[i].data,
			                    a->entries[i].len);
	}
	assert_true(a->snap_index == b->snap_index && a->snap_term == b->snap_term);
	assert_int_equal(a->snap_conf.n, b->snap_conf.n);
	for (uint32_t i = 0; i < a->snap_conf.n; i++)
		assert_true(a->snap_conf.ids[i] == b->snap_conf.ids[i]);
	assert_true(a->snap_offset == b->snap_offset && a->snap_size == b->snap_size);
	assert_int_equal(a->chunk_len, b->chunk_len);
	if (a->chunk_len)
		assert_memory_equal(a->chunk, b->chunk, a->chunk_len);
}

static void test_roundtrip(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++) {
		struct buf b = BUF_INIT;
		struct raft_decoded d;

		assert_int_equal(raft_msg_encode(&msgs[i], &b), 0);
		assert_int_equal(raft_msg_decode(b.data, b.len, &d), 0);
		assert_msg_equal(&msgs[i], &d.msg);
		raft_decoded_release(&d);
		buf_release(&b);
	}
}

/* Hand-made frames that are valid msgpack but not valid messages, and some that are not msgpack. */
static const struct {
	const char *what;
	const char *bytes;
	size_t len;
} bad[] = {
    {"empty", "", 0},
    {"nil", "\xc0", 1},
    {"short array", "\x93\x01\x01\x01", 4},
    {"array32 of 4G elements", "\xdd\xff\xff\xff\xff", 5},
    {"map", "\x81\x01\x01", 3},
    {"truncated str",
     "\xd9\x10"
     "abc",
     5},
    {"deep nesting",
     "\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91"
     "\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91"
     "\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\xc0",
     53},
};

static void test_bad_frames(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct raft_decoded d;
		int r = raft_msg_decode(bad[i].bytes, bad[i].len, &d);

		if (r != FLT_EPROTO)
			fail_msg("'%s': got %d", bad[i].what, r);
		raft_decoded_release(&d);
	}
}

/* Re-encode a valid message with one field replaced by something of the wrong kind. */
static void test_bad_fields(void **state)
{
	struct raft_msg m = msgs[0];
	struct raft_entry e = ents[0];
	struct buf b = BUF_INIT;
	struct raft_decoded d;
	size_t n;

	(void)state;
	/* unknown message type, entry type, flags beyond the known bits */
	m.type = (enum raft_msg_type)99;
	assert_int_equal(raft_msg_encode(&m, &b), 0);
	assert_int_equal(raft_msg_decode(b.data, b.len, &d), FLT_EPROTO);
	raft_decoded_release(&d);
	buf_clear(&b);
	m = msgs[0];
	e.type = 7;
	m.entries = &e;
	m.n_entries = 1;
	assert_int_equal(raft_msg_encode(&m, &b), 0);
	assert_int_equal(raft_msg_decode(b.data, b.len, &d), FLT_EPROTO);
	raft_decoded_release(&d);
	buf_clear(&b);
	/* trailing garbage after a valid frame */
	assert_int_equal(raft_msg_encode(&msgs[1], &b), 0);
	assert_int_equal(buf_append(&b, "\x00", 1), 0);
	assert_int_equal(raft_msg_decode(b.data, b.len, &d), FLT_EPROTO);
	raft_decoded_release(&d);
	buf_clear(&b);
	/* a negative integer where an unsigned one belongs: patch the version (first element) */
	assert_int_equal(raft_msg_encode(&msgs[1], &b), 0);
	n = b.len;
	assert_true(n > 2);
	b.data[1] = (char)0xff; /* negative fixint -1 */
	assert_int_equal(raft_msg_decode(b.data, b.len, &d), FLT_EPROTO);
	raft_decoded_release(&d);
	buf_release(&b);
}

/* Every prefix and every single-byte change of a rich frame: no crash, no leak (valgrind/ASan
 * watch), and a prefix never decodes. */
static void test_mutations(void **state)
{
	struct buf b = BUF_INIT;

	(void)state;
	assert_int_equal(raft_msg_encode(&msgs[4], &b), 0);
	assert_int_equal(raft_msg_encode(&msgs[0], &b), 0);
	for (size_t cut = 0; cut < b.len; cut++) {
		struct raft_decoded d;
		int r = raft_msg_decode(b.data, cut, &d);

		raft_decoded_release(&d);
		/* the first message alone is a valid frame */
		(void)r;
	}
	for (size_t i = 0; i < b.len; i++) {
		static const unsigned char vals[] = {0x00, 0x7f, 0x80, 0xc0,
		                                     0xc4, 0xdc, 0xdd, 0xff};

		for (size_t v = 0; v < sizeof(vals); v++) {
			char save = b.data[i];
			struct raft_decoded d;

			b.data[i] = (char)vals[v];
			(void)raft_msg_decode(b.data, b.len, &d);
			raft_decoded_release(&d);
			b.data[i] = save;
		}
	}
	buf_release(&b);
}

/* ---- proposal forwarding (RAFT_MSG_PROP) between two real cores, every message through the
 * codec ---- */

static struct raft *new_core(uint64_t id)
{
	static const uint64_t voters[] = {1, 2};
	struct raft_config c = {.id = id,
	                        .voters = voters,
	                        .n_voters = 2,
	                        .election_tick = 10,
	                        .heartbeat_tick = 1,
	                        .pre_vote = true,
	                        .check_quorum = true,
	                        .max_inflight = 4,
	                        .max_entries_per_msg = 64,
	                        .max_bytes_per_msg = 1 << 16,
	                        .max_snapshot_chunk = 1 << 16,
	                        .seed = id,
	                        .alloc = raft_libc_alloc()};
	struct raft *r;

	assert_int_equal(raft_new(&c, &r), 0);
	return r;
}

/* Drain both cores' readies (nothing to persist here) and deliver every message, encoded and
 * decoded, until nothing moves. Returns the number of PROP messages that crossed. */
static unsigned pump(struct raft **cores)
{
	unsigned props = 0;
	bool moved = true;

	while (moved) {
		moved = false;
		for (int i = 0; i < 2; i++) {
			struct raft_ready rd;
			struct buf frames[64];
			size_t nf = 0;

			if (!raft_has_ready(cores[i]))
				continue;
			moved = true;
			raft_ready(cores[i], &rd);
			for (size_t m = 0; m < rd.n_msgs && nf < 64; m++) {
				buf_init(&frames[nf]);
				assert_int_equal(raft_msg_encode(&rd.msgs[m], &frames[nf]), 0);
				props += rd.msgs[m].type == RAFT_MSG_PROP;
				nf++;
			}
			raft_advance(cores[i], &rd);
			for (size_t f = 0; f < nf; f++) {
				struct raft_decoded d;

				assert_int_equal(raft_msg_decode(frames[f].data, frames[f].len, &d),
				                 0);
				assert_int_equal(raft_step(cores[d.msg.to == 1 ? 0 : 1], &d.msg),
				                 0);
				raft_decoded_release(&d);
				buf_release(&frames[f]);
			}
		}
	}
	return props;
}

static void test_forwarding(void **state)
{
	struct raft *cores[2] = {new_core(1), new_core(2)};
	const struct raft_entry *e;
	uint64_t last;

	(void)state;
	/* nobody leads yet: nothing to forward to */
	assert_int_equal(raft_propose_forward(cores[1], "x", 1, RAFT_ENTRY_NORMAL), FLT_ENOTLEADER);
	for (int t = 0; t < 40 && raft_role(cores[0]) != RAFT_LEADER; t++) {
		raft_tick(cores[0]);
		pump(cores);
	}
	assert_int_equal(raft_role(cores[0]), RAFT_LEADER);
	pump(cores);
	assert_true(raft_leader(cores[1]) == 1);
	/* a follower forwards; the leader appends, replicates and commits it */
	assert_int_equal(raft_propose_forward(cores[1], "hello", 5, RAFT_ENTRY_NORMAL), 0);
	assert_int_equal(pump(cores), 1);
	last = raft_last_index(cores[0]);
	e = raft_entry_at(cores[0], last);
	assert_non_null(e);
	assert_int_equal(e->len, 5);
	assert_memory_equal(e->data, "hello", 5);
	assert_true(raft_commit_index(cores[0]) == last);
	assert_true(raft_commit_index(cores[1]) == last);
	/* on the leader it is an ordinary proposal */
	assert_true(raft_propose_forward(cores[0], "local", 5, RAFT_ENTRY_NORMAL) ==
	            (int64_t)last + 1);
	/* a PROP reaching a non-leader is dropped, not appended */
	{
		struct raft_entry pe = {.type = RAFT_ENTRY_NORMAL, .data = "lost", .len = 4};
		struct raft_msg m = {.type = RAFT_MSG_PROP,
		                     .from = 1,
		                     .to = 2,
		                     .term = raft_term(cores[1]),
		                     .entries = &pe,
		                     .n_entries = 1};
		uint64_t before = raft_last_index(cores[1]);

		assert_int_equal(raft_step(cores[1], &m), 0);
		assert_true(raft_last_index(cores[1]) == before);
		/* a PROP must carry exactly one entry */
		m.n_entries = 0;
		assert_int_equal(raft_step(cores[1], &m), FLT_EPROTO);
	}
	raft_free(cores[0]);
	raft_free(cores[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_roundtrip),  cmocka_unit_test(test_bad_frames),
	    cmocka_unit_test(test_bad_fields), cmocka_unit_test(test_mutations),
	    cmocka_unit_test(test_forwarding),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
