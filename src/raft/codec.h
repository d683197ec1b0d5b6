/* The Raft message codec: struct raft_msg <-> one msgpack frame for the peer transport. Every field
 * of the message travels; decoding validates types, counts and bounds so that a bad frame from
 * the network is an error (FLT_EPROTO), never a crash. Not part of the pure core (it uses
 * msgpack-c's allocator), so it lives beside it, in the daemon library. */
#ifndef FLT_RAFT_CODEC_H
#define FLT_RAFT_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "raft/raft.h"

struct buf;

#define RAFT_CODEC_VERSION 1

/* Append the encoding of `m` to `out`. Returns 0 or -ENOMEM. */
int raft_msg_encode(const struct raft_msg *m, struct buf *out);

/* A decoded message. msg.entries points into `entries` (owned), entry data and msg.chunk point
 * into the frame that was decoded (borrowed: keep the frame alive while using the message). */
struct raft_decoded {
	struct raft_msg msg;
	struct raft_entry *entries;
	void *zone; /* the decoder's working memory */
};

/* Decode one frame into `ret` (release it with raft_decoded_release even on failure). Returns 0,
 * FLT_EPROTO (not a valid message: bad msgpack, wrong types, unknown type or entry type, too
 * many voters, trailing bytes, another codec version), or -ENOMEM. It checks the encoding, not
 * the Raft semantics (raft_step does). */
int raft_msg_decode(const void *data, size_t len, struct raft_decoded *ret);
void raft_decoded_release(struct raft_decoded *d);

#endif
