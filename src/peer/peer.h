/* Peer transport: moves opaque frames between cluster members over TCP on the peer URLs (2380, and
 * 7001 for compatibility). It knows nothing of Raft: the Raft message codec (msgpack of a raft
 * message) sits on top and hands it bytes; it knows members only by their 64-bit ids.
 *
 * Connections. Every node dials every known peer, once per lane, and SENDS only on the connections
 * it dialed; it RECEIVES only on connections it accepted. So between two members there are four
 * TCP connections (two lanes, two directions), there is never a "who dials" race to settle, and a
 * connection's direction says what it is for. An accepted connection is keyed by the sender's
 * member id after the handshake; a newer accepted connection for the same (member, lane) replaces
 * an older one (the dialer only keeps one, so the older one is stale).
 *
 * Lanes. PEER_LANE_CONTROL carries small, latency-critical frames (votes, heartbeats, appends);
 * PEER_LANE_BULK carries snapshot chunks. Each lane is its own TCP connection with its own queue,
 * and the receiver bounds the bytes it reads per wake-up on each connection, so a snapshot never
 * delays a heartbeat (tests/unit/test_peer.c measures it).
 *
 * Wire format (all integers little-endian). Every message is a frame `[u32 length][payload]`.
 * The dialer's first frame is a hello, the acceptor's first (and, on refusal, only) frame a reply:
 *   hello (31 bytes): "FLTP", u16 version, u64 cluster id, u64 sender id, u64 receiver id, u8 lane
 *   reply (23 bytes): "FLTP", u16 version, u8 status, u64 cluster id, u64 acceptor id
 * Longer handshake payloads (up to 256 bytes) are accepted and the tail ignored: later versions
 * append fields. status is enum peer_refusal; on refusal the acceptor closes. After an accepted
 * handshake the dialer sends data frames and the acceptor never writes again. A data frame longer
 * than the limit closes the connection with a logged reason.
 *
 * Delivery. peer_send copies the frame into the lane's queue and never blocks; frames sent in one
 * loop turn are written together. Delivery is best effort, as Raft expects: frames queued or in
 * the kernel when a connection drops are lost (counted as drops when still queued), and while a
 * lane waits out its reconnect backoff peer_send refuses with -ENOTCONN instead of piling up stale
 * messages. Frames that do arrive on one lane arrive in order, once.
 *
 * Reconnects back off exponentially (initial 50 ms, doubling, max 2 s, jittered to [d/2, d] by a
 * PRNG seeded from the config) after any failure: refused handshake, connect error or timeout,
 * protocol error, or a connection that dropped after less than a second up. Refusals are logged
 * (log_warn) on both sides, the dialer logs a repeated identical failure at debug level only.
 *
 * Threading and re-entrancy: one loop, one thread. Callbacks may call peer_send, peer_add,
 * peer_update and peer_remove (also on the member being reported), but not peer_transport_free.
 */
#ifndef FLT_PEER_H
#define FLT_PEER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

struct ev_loop;
struct peer_transport;

#define PEER_DEFAULT_PORT     2380
#define PEER_LEGACY_PORT      7001 /* etcd 2.0's peer port, still listened on by default */
#define PEER_PROTOCOL_VERSION 1
#define PEER_MAX_LISTEN       8

enum peer_lane {
	PEER_LANE_CONTROL = 0, /* votes, heartbeats, appends: small and latency-critical */
	PEER_LANE_BULK = 1,    /* snapshot chunks */
	PEER_LANES = 2,
};

/* Handshake reply status; also what stats and logs report for a refused connection. */
enum peer_refusal {
	PEER_OK = 0,
	PEER_REFUSE_CLUSTER = 1,  /* the cluster ids differ */
	PEER_REFUSE_VERSION = 2,  /* unsupported protocol version */
	PEER_REFUSE_UNKNOWN = 3,  /* the sender is not (or no longer) a member the acceptor knows */
	PEER_REFUSE_RECEIVER = 4, /* the dialer expected another member id at this address */
	PEER_REFUSE_MALFORMED = 5 /* bad magic, bad lane, bad length */
};

struct peer_config {
	uint64_t member_id;  /* ours; never 0 */
	uint64_t cluster_id; /* never 0 */
	uint16_t protocol_version;
	/* URLs to listen on, "http://IP:PORT" (IPv4 or [IPv6] numeric; port 0 picks one, see
	 * peer_listen_port). Borrowed for the call. None: the transport only dials. */
	const char *listen_urls[PEER_MAX_LISTEN];
	size_t nlisten;
	size_t max_frame;                   /* payload bytes; larger frames are refused */
	size_t max_queue_bytes[PEER_LANES]; /* per peer and lane (an empty queue takes any frame) */
	unsigned backoff_initial_ms;        /* first reconnect delay */
	unsigned backoff_max_ms;            /* cap of the doubling */
	unsigned connect_timeout_ms;        /* TCP connect + handshake, each direction */
	uint64_t seed; /* PRNG seed of the backoff jitter (0: from the clock) */
};

struct peer_callbacks {
	/* A frame arrived from member `from` on `lane`. `data` is borrowed for the call. */
	void (*on_frame)(void *ud, uint64_t from, enum peer_lane lane, const void *data,
	                 size_t len);
	/* Our outbound connection to `member` on `lane` came up (handshake accepted) or went down.
	 * Optional. For diagnostics, metrics and Raft's ReportUnreachable. */
	void (*on_peer_state)(void *ud, uint64_t member, enum peer_lane lane, bool connected);
	/* Optional: the lane's queue to `member` drained below half its bound after peer_send had
	 * refused a frame with -ENOBUFS: send the next snapshot chunk now. */
	void (*on_drain)(void *ud, uint64_t member, enum peer_lane lane);
	/* Optional: an HTTP GET arrived on the peer port instead of a handshake (etcd serves
	 * /members there, which proxies and tools read). Fill `body` (JSON) and return the status
	 * (200, 404); the answer is written and the connection closed. */
	int (*on_http_get)(void *ud, const char *path, struct buf *body);
};

struct peer_lane_stats {
	uint64_t frames_sent, bytes_sent; /* written to the kernel (payload bytes) */
	uint64_t frames_recv, bytes_recv;
	uint64_t drops;    /* refused by peer_send or discarded from the queue on a disconnect */
	uint64_t dials;    /* connection attempts */
	uint64_t connects; /* accepted handshakes; connects - 1 = reconnects */
	uint64_t failures; /* attempts or connections that ended in an error */
	uint64_t refusals; /* of which the remote refused the handshake */
	enum peer_refusal last_refusal;
	size_t queued_bytes;
	bool connected;
};

struct peer_stats {
	struct peer_lane_stats lane[PEER_LANES];
};

/* Fill `cfg` with the defaults: protocol PEER_PROTOCOL_VERSION, max_frame 64 MiB, queues 4 MiB
 * (control) and 8 MiB (bulk), backoff 50 ms .. 2 s, connect timeout 1 s, no listen URL. The
 * caller then sets member_id, cluster_id and listen_urls. */
void peer_config_default(struct peer_config *cfg);

/* Create a transport on `loop` (borrowed, must outlive it) and bind the listen URLs. `cfg` and
 * `cb` are copied; `ud` is passed to the callbacks. Returns 0 and *ret_t (owned, free with
 * peer_transport_free), FLT_EINVAL for a bad config or URL (no DNS: numeric addresses only), or
 * -errno when a socket cannot be bound (-EADDRINUSE...). */
int peer_transport_new(struct ev_loop *loop, const struct peer_config *cfg,
                       const struct peer_callbacks *cb, void *ud, struct peer_transport **ret_t);
/* Close every connection and listener and free. Accepts NULL. Not from inside a callback. */
void peer_transport_free(struct peer_transport *t);
/* Port actually bound for listen URL `i` (useful with port 0), or -EINVAL. */
int peer_listen_port(const struct peer_transport *t, size_t i);

/* Know member `id` reachable at `urls` (etcd's peerURLs: one URL, or several separated by commas,
 * tried in turn after failures) and start dialing it on both lanes. Returns 0, -EEXIST, FLT_EINVAL
 * (bad URL, id 0 or our own id) or -ENOMEM. `urls` is copied. */
int peer_add(struct peer_transport *t, uint64_t id, const char *urls);
/* New URLs for a member: if they differ, its outbound connections are closed and redialed at once.
 * Returns 0, -ENOENT, FLT_EINVAL or -ENOMEM. */
int peer_update(struct peer_transport *t, uint64_t id, const char *urls);
/* Forget member `id`: close its outbound and accepted connections, drop its queues; later
 * handshakes from it are refused (PEER_REFUSE_UNKNOWN). Returns 0 or -ENOENT. */
int peer_remove(struct peer_transport *t, uint64_t id);

/* Queue a copy of a frame for member `to` on `lane`. Never blocks. Returns 0 (queued; delivery is
 * not guaranteed), FLT_ETOOBIG (len > max_frame), -ENOBUFS (the lane's queue is at its bound),
 * -ENOTCONN (the lane is waiting out a reconnect backoff), -ENOENT (unknown member), -EINVAL (bad
 * lane) or -ENOMEM. Every refusal counts as a drop. */
int peer_send(struct peer_transport *t, uint64_t to, enum peer_lane lane, const void *frame,
              size_t len);

/* Write what is queued on every lane now, as far as the kernel takes it, instead of when the loop
 * next polls: for a caller about to block (a leader's fdatasync, thesis 10.2.1) that wants its
 * frames travelling meanwhile. What does not fit stays queued; errors surface later, as usual. */
void peer_flush(struct peer_transport *t);

/* Counters of member `id` into *ret_stats. Returns 0 or -ENOENT. */
int peer_get_stats(const struct peer_transport *t, uint64_t id, struct peer_stats *ret_stats);

/* Human-readable name of a refusal code, static storage. */
const char *peer_refusal_str(enum peer_refusal r);

#endif
