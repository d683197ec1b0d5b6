/* Peer transport (see peer.h): listeners, one dialed connection per peer and lane with its frame
 * queue and reconnect backoff, and accepted connections that check the handshake and hand frames
 * to the caller. Everything runs on the loop through the stream layer (src/http/stream.h). */
#include "peer/peer.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>

#include "http/stream.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/log.h"
#include "util/util.h"
#include "util/le.h"

#define MAGIC        "FLTP"
#define HELLO_LEN    31
#define REPLY_LEN    23
#define HS_MAX       256          /* longest handshake payload we accept */
#define STAGE_MAX    (64 * 1024)  /* small frames are coalesced into writes of this size */
#define RBUF_SIZE    (64 * 1024)  /* read-ahead of an accepted connection */
#define WRITE_BUDGET (256 * 1024) /* bytes written per wake-up and connection... */
#define READ_BUDGET  (256 * 1024) /* ...and read: keeps a bulk lane from starving the others */
#define STABLE_NS    (1000LL * 1000000) /* a connection up this long resets the backoff */
#define ACCEPT_PAUSE 0.1                /* seconds without accepting after EMFILE and friends */
#define ADDR_STRLEN  (INET6_ADDRSTRLEN + 8)

struct frame {
	struct frame *next;
	size_t size;          /* header + payload */
	unsigned char data[]; /* [u32 length][payload] */
};

enum out_state { OUT_IDLE, OUT_BACKOFF, OUT_CONNECTING, OUT_HANDSHAKE, OUT_UP };

/* Our dialed connection to one peer on one lane: the only way frames leave for that peer. */
struct outconn {
	struct peer *p;
	enum peer_lane lane;
	enum out_state state;
	struct stream st; /* fd -1 when there is no connection */
	ev_timer timer;   /* reconnect (OUT_BACKOFF) or connect/handshake deadline */
	struct frame *head, *tail;
	size_t queued; /* bytes of queued frames, including `cur` */
	struct buf stage;
	size_t stage_off, stage_frames, stage_payload;
	struct frame *cur;
	size_t cur_off;
	unsigned char hs[4 + HS_MAX]; /* the acceptor's reply being read */
	size_t hs_len;
	unsigned failures; /* consecutive; drives the backoff */
	int last_fail;     /* refusal (> 0) or -errno of the last failure, to quiet repeated logs */
	int64_t up_since;
	bool want_drain;
	size_t url_idx;
};

struct peer_addr {
	struct sockaddr_storage sa;
	socklen_t salen;
	char *url; /* owned, for logs */
};

struct peer {
	struct peer *next;
	struct peer_transport *t;
	uint64_t id;
	char *urls; /* owned, as given */
	struct peer_addr *addrs;
	size_t naddrs;
	struct outconn out[PEER_LANES];
	struct peer_stats stats;
};

/* An accepted connection: handshake, then frames from one member on one lane. */
struct inconn {
	struct inconn *next, *prev;
	struct peer_transport *t;
	struct stream st;
	ev_timer timer; /* handshake deadline */
	bool hs_done, in_cb, dead;
	uint64_t from;
	enum peer_lane lane;
	struct peer *p; /* NULL before the handshake or once the member is removed */
	char addr[ADDR_STRLEN];
	unsigned char *rbuf;
	size_t rlen, rpos;
	unsigned char *big; /* a frame larger than rbuf, read straight into its own memory */
	size_t big_len, big_have;
};

struct listener {
	struct peer_transport *t;
	ev_io io;
	ev_timer pause;
	int fd;
	int port;
};

struct peer_transport {
	struct ev_loop *loop;
	struct peer_config cfg; /* listen_urls not kept */
	struct peer_callbacks cb;
	void *ud;
	struct listener ls[PEER_MAX_LISTEN];
	size_t nls;
	struct peer *peers;
	struct inconn *in;
	uint64_t rng;
	int in_cb;
};

/* ---- little helpers ---- */

static uint64_t rng_next(struct peer_transport *t)
{
	/* xorshift64*: jitter only needs to decorrelate nodes, not to be unpredictable */
	t->rng ^= t->rng >> 12;
	t->rng ^= t->rng << 25;
	t->rng ^= t->rng >> 27;
	return t->rng * 0x2545F4914F6CDD1DULL;
}

const char *peer_refusal_str(enum peer_refusal r)
{
	switch (r) {
	case PEER_OK:
		return "accepted";
	case PEER_REFUSE_CLUSTER:
		return "wrong cluster id";
	case PEER_REFUSE_VERSION:
		return "unsupported protocol version";
	case PEER_REFUSE_UNKNOWN:
		return "unknown or removed member";
	case PEER_REFUSE_RECEIVER:
		return "wrong receiver member id";
	case PEER_REFUSE_MALFORMED:
		return "malformed handshake";
	}
	return "unknown reason";
}

static void set_sockopts(int fd)
{
	int one = 1, idle = 30, intvl = 5, cnt = 3;

	/* Failing to set any of these only costs latency or dead-peer detection time. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	(void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

static void addr_str(const struct sockaddr_storage *sa, char *out, size_t len)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	if (sa->ss_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;

		inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
		port = ntohs(s4->sin_port);
		snprintf(out, len, "%s:%u", ip, port);
	} else if (sa->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;

		inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
		port = ntohs(s6->sin6_port);
		snprintf(out, len, "[%s]:%u", ip, port);
	} else {
		snprintf(out, len, "?");
	}
}

/* "http://IP:PORT", "IP:PORT", "http://[IPv6]:PORT", a missing port meaning 2380. No DNS: the
 * start path must not block, and etcd peer URLs are addresses in practice. */
static int parse_url(const char *url, size_t len, struct sockaddr_storage *sa, socklen_t *salen)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *p = url, *end = url + len, *h, *he;
	unsigned long port = PEER_DEFAULT_PORT;

	if (len >= 7 && strncmp(p, "http://", 7) == 0)
		p += 7;
	else if (memchr(p, '/', len))
		return FLT_EINVAL; /* https (no TLS yet) or another scheme */
	if (end > p && end[-1] == '/')
		end--;
	if (p >= end)
		return FLT_EINVAL;
	if (p < end && *p == '[') {
		h = p + 1;
		he = memchr(h, ']', (size_t)(end - h));
		if (!he)
			return FLT_EINVAL;
		p = he + 1;
	} else {
		size_t rest = (size_t)(end - p);

		h = p;
		he = rest ? memchr(p, ':', rest) : NULL;
		if (!he)
			he = end;
		p = he;
	}
	if (p < end) {
		char digits[8];
		size_t n = (size_t)(end - p - 1);
		char *e;

		if (*p != ':' || n == 0 || n >= sizeof(digits))
			return FLT_EINVAL;
		memcpy(digits, p + 1, n);
		digits[n] = '\0';
		port = strtoul(digits, &e, 10);
		if (*e || port > 65535 || digits[0] < '0' || digits[0] > '9')
			return FLT_EINVAL;
	}
	if (he <= h || (size_t)(he - h) >= sizeof(host))
		return FLT_EINVAL;
	memcpy(host, h, (size_t)(he - h));
	host[he - h] = '\0';
	memset(sa, 0, sizeof(*sa));
	if (inet_pton(AF_INET, host, &((struct sockaddr_in *)sa)->sin_addr) == 1) {
		((struct sockaddr_in *)sa)->sin_family = AF_INET;
		((struct sockaddr_in *)sa)->sin_port = htons((uint16_t)port);
		*salen = sizeof(struct sockaddr_in);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &((struct sockaddr_in6 *)sa)->sin6_addr) == 1) {
		((struct sockaddr_in6 *)sa)->sin6_family = AF_INET6;
		((struct sockaddr_in6 *)sa)->sin6_port = htons((uint16_t)port);
		*salen = sizeof(struct sockaddr_in6);
		return 0;
	}
	return FLT_EINVAL;
}

static void free_addrs(struct peer_addr *a, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(a[i].url);
	free(a);
}

/* Comma-separated URL list into an owned array. */
static int parse_urls(const char *urls, struct peer_addr **ret_a, size_t *ret_n)
{
	struct peer_addr *a = NULL;
	size_t n = 0;
	const char *s = urls;
	int r;

	for (;;) {
		const char *e = strchr(s, ',');
		size_t len = e ? (size_t)(e - s) : strlen(s);
		struct peer_addr *na;

		while (len && (*s == ' ')) {
			s++;
			len--;
		}
		na = realloc(a, (n + 1) * sizeof(*a));
		if (!na) {
			r = -ENOMEM;
			goto fail;
		}
		a = na;
		r = parse_url(s, len, &a[n].sa, &a[n].salen);
		if (r < 0)
			goto fail;
		a[n].url = strndup(s, len);
		if (!a[n].url) {
			r = -ENOMEM;
			goto fail;
		}
		n++;
		if (!e)
			break;
		s = e + 1;
	}
	*ret_a = a;
	*ret_n = n;
	return 0;
fail:
	free_addrs(a, n);
	return r;
}

static struct peer *find_peer(const struct peer_transport *t, uint64_t id)
{
	for (struct peer *p = t->peers; p; p = p->next)
		if (p->id == id)
			return p;
	return NULL;
}

/* ---- outbound connections (we dial, we send) ---- */

static void out_on_ready(struct stream *st, int events);
static void out_dial(struct outconn *o);

static const char *out_url(const struct outconn *o)
{
	return o->p->addrs[o->url_idx % o->p->naddrs].url;
}

/* Drop the connection and everything queued; no callback. */
static void out_close(struct outconn *o)
{
	struct peer_lane_stats *s = &o->p->stats.lane[o->lane];
	struct frame *f;

	stream_close(&o->st);
	ev_timer_stop(o->p->t->loop, &o->timer);
	while ((f = o->head)) {
		o->head = f->next;
		s->drops++;
		free(f);
	}
	o->tail = NULL;
	if (o->cur) {
		s->drops++;
		free(o->cur);
		o->cur = NULL;
	}
	s->drops += o->stage_frames;
	buf_clear(&o->stage);
	o->stage_off = o->stage_frames = o->stage_payload = 0;
	o->cur_off = 0;
	o->queued = 0;
	o->hs_len = 0;
	o->state = OUT_IDLE;
}

static void out_schedule(struct outconn *o)
{
	struct peer_transport *t = o->p->t;
	uint64_t d = t->cfg.backoff_initial_ms;
	unsigned shift = o->failures > 1 ? o->failures - 1 : 0;

	if (shift > 20)
		shift = 20;
	d <<= shift;
	if (d > t->cfg.backoff_max_ms)
		d = t->cfg.backoff_max_ms;
	d = d / 2 + rng_next(t) % (d / 2 + 1);
	o->state = OUT_BACKOFF;
	ev_timer_set(&o->timer, (double)d / 1000.0, 0.);
	ev_timer_start(t->loop, &o->timer);
}

/* The attempt or connection failed: close, back off, log, and tell the caller if it was up. The
 * last thing a caller does before returning (the callback may remove the peer). `code` is a
 * refusal (> 0) or -errno; `what` says what went wrong in words. */
static void out_fail(struct outconn *o, int code, const char *what)
{
	struct peer_transport *t = o->p->t;
	struct peer_lane_stats *s = &o->p->stats.lane[o->lane];
	bool was_up = o->state == OUT_UP;
	uint64_t id = o->p->id;
	enum peer_lane lane = o->lane;

	if (was_up && flt_monotime_ns() - o->up_since >= STABLE_NS)
		o->failures = 0;
	o->failures++;
	s->failures++;
	if (code == o->last_fail && !was_up)
		log_debug("peer '%" PRIx64 "' at '%s' (lane %d): %s", id, out_url(o), lane, what);
	else
		log_warn("peer '%" PRIx64 "' at '%s' (lane %d): %s", id, out_url(o), lane, what);
	o->last_fail = code;
	out_close(o);
	if (o->p->naddrs > 1)
		o->url_idx++;
	out_schedule(o);
	if (was_up && t->cb.on_peer_state)
		t->cb.on_peer_state(t->ud, id, lane, false);
}

static void out_fail_errno(struct outconn *o, int err, const char *doing)
{
	char msg[160];

	snprintf(msg, sizeof(msg), "%s: %s", doing, strerror(-err));
	out_fail(o, err, msg);
}

static void out_on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct outconn *o = container_of(w, struct outconn, timer);

	if (o->state == OUT_BACKOFF)
		out_dial(o);
	else
		out_fail(o, -ETIMEDOUT,
		         o->state == OUT_CONNECTING ? "connect timed out" : "handshake timed out");
}

static void out_dial(struct outconn *o)
{
	struct peer_transport *t = o->p->t;
	const struct peer_addr *a = &o->p->addrs[o->url_idx % o->p->naddrs];
	int fd, r;

	o->p->stats.lane[o->lane].dials++;
	fd = socket(a->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		out_fail_errno(o, -errno, "cannot create socket");
		return;
	}
	set_sockopts(fd);
	stream_init_fd(&o->st, t->loop, fd, out_on_ready);
	o->state = OUT_CONNECTING;
	r = connect(fd, (const struct sockaddr *)&a->sa, a->salen);
	if (r < 0 && errno != EINPROGRESS) {
		out_fail_errno(o, -errno, "cannot connect");
		return;
	}
	/* Connected or in progress: writability says which, SO_ERROR why not. */
	stream_want(&o->st, false, true);
	ev_timer_set(&o->timer, t->cfg.connect_timeout_ms / 1000.0, 0.);
	ev_timer_start(t->loop, &o->timer);
}

static void out_start_handshake(struct outconn *o)
{
	struct peer_transport *t = o->p->t;
	unsigned char h[4 + HELLO_LEN];

	put_le32(h, HELLO_LEN);
	memcpy(h + 4, MAGIC, 4);
	put_le16(h + 8, t->cfg.protocol_version);
	put_le64(h + 10, t->cfg.cluster_id);
	put_le64(h + 18, t->cfg.member_id);
	put_le64(h + 26, o->p->id);
	h[34] = (unsigned char)o->lane;
	buf_clear(&o->stage);
	if (buf_append(&o->stage, h, sizeof(h)) < 0) {
		out_fail(o, -ENOMEM, "cannot queue handshake: out of memory");
		return;
	}
	o->state = OUT_HANDSHAKE;
	o->hs_len = 0;
	stream_want(&o->st, true, true);
}

/* Write what we can: the staging buffer (coalesced small frames, or the hello), then a large frame
 * straight from its memory, then refill. Returns 0 or -errno. */
static int out_flush(struct outconn *o)
{
	struct peer_lane_stats *s = &o->p->stats.lane[o->lane];
	size_t budget = WRITE_BUDGET;
	ssize_t n;

	while (budget > 0) {
		if (o->stage_off < o->stage.len) {
			n = stream_write(&o->st, o->stage.data + o->stage_off,
			                 o->stage.len - o->stage_off);
			if (n == -EAGAIN)
				break;
			if (n < 0)
				return (int)n;
			o->stage_off += (size_t)n;
			budget -= (size_t)n < budget ? (size_t)n : budget;
			if (o->stage_off == o->stage.len) {
				s->frames_sent += o->stage_frames;
				s->bytes_sent += o->stage_payload;
				buf_clear(&o->stage);
				o->stage_off = o->stage_frames = o->stage_payload = 0;
			}
			continue;
		}
		if (o->cur) {
			n = stream_write(&o->st, o->cur->data + o->cur_off,
			                 o->cur->size - o->cur_off);
			if (n == -EAGAIN)
				break;
			if (n < 0)
				return (int)n;
			o->cur_off += (size_t)n;
			budget -= (size_t)n < budget ? (size_t)n : budget;
			if (o->cur_off == o->cur->size) {
				s->frames_sent++;
				s->bytes_sent += o->cur->size - 4;
				o->queued -= o->cur->size;
				free(o->cur);
				o->cur = NULL;
				o->cur_off = 0;
			}
			continue;
		}
		if (o->state != OUT_UP || !o->head)
			break;
		if (o->head->size > STAGE_MAX) {
			o->cur = o->head;
			o->head = o->cur->next;
			if (!o->head)
				o->tail = NULL;
			continue;
		}
		while (o->head && o->head->size <= STAGE_MAX &&
		       o->stage.len + o->head->size <= STAGE_MAX) {
			struct frame *f = o->head;

			if (buf_append(&o->stage, f->data, f->size) < 0)
				return -ENOMEM;
			o->stage_frames++;
			o->stage_payload += f->size - 4;
			o->queued -= f->size;
			o->head = f->next;
			if (!o->head)
				o->tail = NULL;
			free(f);
		}
	}
	return 0;
}

static bool out_pending(const struct outconn *o)
{
	return o->stage_off < o->stage.len || o->cur || (o->state == OUT_UP && o->head);
}

/* Read the acceptor's reply. Returns 1 when the lane came up, 0 to wait, < 0 after out_fail. */
static int out_read_reply(struct outconn *o)
{
	struct peer_transport *t = o->p->t;
	const unsigned char *r = o->hs + 4;
	size_t need = 4;
	ssize_t n;
	uint32_t len;

	for (;;) {
		if (o->hs_len >= 4) {
			len = get_le32(o->hs);
			if (len < REPLY_LEN || len > HS_MAX) {
				out_fail(o, PEER_REFUSE_MALFORMED, "malformed handshake reply");
				return -1;
			}
			need = 4 + len;
		}
		if (o->hs_len >= need)
			break;
		n = stream_read(&o->st, o->hs + o->hs_len, need - o->hs_len);
		if (n == -EAGAIN)
			return 0;
		if (n == 0) {
			out_fail(o, -ECONNRESET, "connection closed during the handshake");
			return -1;
		}
		if (n < 0) {
			out_fail_errno(o, (int)n, "handshake failed");
			return -1;
		}
		o->hs_len += (size_t)n;
	}
	if (memcmp(r, MAGIC, 4) != 0) {
		out_fail(o, PEER_REFUSE_MALFORMED, "not a flotilla peer (bad handshake magic)");
		return -1;
	}
	if (r[6] != PEER_OK) {
		char msg[200];
		enum peer_refusal why = r[6];

		o->p->stats.lane[o->lane].refusals++;
		o->p->stats.lane[o->lane].last_refusal = why;
		snprintf(msg, sizeof(msg),
		         "refused our connection: %s (theirs: version %u, cluster '%" PRIx64
		         "', member '%" PRIx64 "')",
		         peer_refusal_str(why), get_le16(r + 4), get_le64(r + 7), get_le64(r + 15));
		out_fail(o, why, msg);
		return -1;
	}
	if (get_le64(r + 7) != t->cfg.cluster_id || get_le64(r + 15) != o->p->id) {
		out_fail(o, PEER_REFUSE_MALFORMED,
		         "handshake reply names another cluster or member");
		return -1;
	}
	return 1;
}

static void out_on_ready(struct stream *st, int events)
{
	struct outconn *o = container_of(st, struct outconn, st);
	struct peer_transport *t = o->p->t;
	bool came_up = false, drain = false;
	int r;

	if (o->state == OUT_CONNECTING) {
		int err = 0;
		socklen_t len = sizeof(err);

		if (getsockopt(st->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (err) {
			out_fail_errno(o, -err, "cannot connect");
			return;
		}
		out_start_handshake(o);
		return;
	}
	if (events & EV_READ) {
		if (o->state == OUT_HANDSHAKE) {
			r = out_read_reply(o);
			if (r < 0)
				return;
			if (r > 0) {
				struct peer_lane_stats *s = &o->p->stats.lane[o->lane];

				ev_timer_stop(t->loop, &o->timer);
				o->state = OUT_UP;
				o->up_since = flt_monotime_ns();
				o->last_fail = 0;
				s->connects++;
				came_up = true;
			}
		} else {
			/* The acceptor never writes after its reply: EOF or junk ends the lane. */
			unsigned char junk[64];
			ssize_t n = stream_read(st, junk, sizeof(junk));

			if (n == 0) {
				out_fail(o, -ECONNRESET, "connection closed by the peer");
				return;
			}
			if (n > 0) {
				out_fail(o, PEER_REFUSE_MALFORMED,
				         "unexpected data from the acceptor");
				return;
			}
			if (n != -EAGAIN) {
				out_fail_errno(o, (int)n, "connection failed");
				return;
			}
		}
	}
	r = out_flush(o);
	if (r < 0) {
		out_fail_errno(o, r, "cannot send");
		return;
	}
	stream_want(st, true, out_pending(o));
	if (o->want_drain && o->queued <= t->cfg.max_queue_bytes[o->lane] / 2) {
		o->want_drain = false;
		drain = true;
	}
	/* Callbacks last: they may remove this peer. */
	if (came_up && t->cb.on_peer_state) {
		uint64_t id = o->p->id;
		enum peer_lane lane = o->lane;

		t->cb.on_peer_state(t->ud, id, lane, true);
		if (drain && t->cb.on_drain) {
			struct peer *p = find_peer(t, id);

			if (p && p->out[lane].state == OUT_UP)
				t->cb.on_drain(t->ud, id, lane);
		}
		return;
	}
	if (drain && t->cb.on_drain)
		t->cb.on_drain(t->ud, o->p->id, o->lane);
}

/* ---- accepted connections (they dial, we receive) ---- */

static void in_free(struct inconn *in)
{
	struct peer_transport *t = in->t;

	stream_close(&in->st);
	ev_timer_stop(t->loop, &in->timer);
	if (in->prev)
		in->prev->next = in->next;
	else
		t->in = in->next;
	if (in->next)
		in->next->prev = in->prev;
	free(in->rbuf);
	free(in->big);
	free(in);
}

/* Close now, or once the callback running on this connection returns. */
static void in_close(struct inconn *in)
{
	if (in->in_cb) {
		stream_close(&in->st);
		ev_timer_stop(in->t->loop, &in->timer);
		in->dead = true;
		in->p = NULL;
		return;
	}
	in_free(in);
}

static void in_on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct inconn *in = container_of(w, struct inconn, timer);

	log_warn("closing peer connection from '%s': no handshake in time", in->addr);
	in_free(in);
}

/* Check a hello and answer it. Returns 0 when accepted, -1 once the connection is freed. */
static int in_handshake(struct inconn *in, const unsigned char *h, size_t len)
{
	struct peer_transport *t = in->t;
	unsigned char rep[4 + REPLY_LEN];
	enum peer_refusal why = PEER_OK;
	uint16_t version = 0;
	uint64_t cluster = 0, from = 0, to = 0;
	unsigned lane = 0;

	if (memcmp(h, MAGIC, 4) != 0) {
		why = PEER_REFUSE_MALFORMED;
		log_warn("refusing peer connection from '%s': not a flotilla peer (bad magic)",
		         in->addr);
		goto reply;
	}
	version = get_le16(h + 4);
	if (version != t->cfg.protocol_version) {
		why = PEER_REFUSE_VERSION;
		log_warn("refusing peer connection from '%s': protocol version %u is not ours (%u)",
		         in->addr, version, t->cfg.protocol_version);
		goto reply;
	}
	if (len < HELLO_LEN) {
		why = PEER_REFUSE_MALFORMED;
		log_warn("refusing peer connection from '%s': short handshake", in->addr);
		goto reply;
	}
	cluster = get_le64(h + 6);
	from = get_le64(h + 14);
	to = get_le64(h + 22);
	lane = h[30];
	if (cluster != t->cfg.cluster_id) {
		why = PEER_REFUSE_CLUSTER;
		log_warn("refusing peer connection from '%s': cluster id '%" PRIx64
		         "' is not ours ('%" PRIx64 "')",
		         in->addr, cluster, t->cfg.cluster_id);
	} else if (to != t->cfg.member_id) {
		why = PEER_REFUSE_RECEIVER;
		log_warn("refusing peer connection from '%s': it expects member '%" PRIx64
		         "', we are '%" PRIx64 "'",
		         in->addr, to, t->cfg.member_id);
	} else if (lane >= PEER_LANES) {
		why = PEER_REFUSE_MALFORMED;
		log_warn("refusing peer connection from '%s': unknown lane %u", in->addr, lane);
	} else if (!(in->p = find_peer(t, from))) {
		why = PEER_REFUSE_UNKNOWN;
		log_warn("refusing peer connection from '%s': member '%" PRIx64 "' is not known",
		         in->addr, from);
	}
reply:
	put_le32(rep, REPLY_LEN);
	memcpy(rep + 4, MAGIC, 4);
	put_le16(rep + 8, t->cfg.protocol_version);
	rep[10] = (unsigned char)why;
	put_le64(rep + 11, t->cfg.cluster_id);
	put_le64(rep + 19, t->cfg.member_id);
	/* 27 bytes into a fresh socket's empty buffer: a short write means the peer is gone. */
	if (stream_write(&in->st, rep, sizeof(rep)) != (ssize_t)sizeof(rep) || why != PEER_OK) {
		in_free(in);
		return -1;
	}
	in->hs_done = true;
	in->from = from;
	in->lane = (enum peer_lane)lane;
	ev_timer_stop(t->loop, &in->timer);
	/* The dialer keeps one connection per lane: an older one from it is stale. */
	for (struct inconn *o = t->in, *next; o; o = next) {
		next = o->next;
		if (o != in && o->hs_done && o->from == from && o->lane == in->lane)
			in_close(o);
	}
	return 0;
}

/* Hand one frame to the caller. Returns -1 if the connection was closed meanwhile (freed). */
static int in_deliver(struct inconn *in, const void *data, size_t len)
{
	struct peer_transport *t = in->t;

	if (in->p) {
		in->p->stats.lane[in->lane].frames_recv++;
		in->p->stats.lane[in->lane].bytes_recv += len;
	}
	in->in_cb = true;
	t->in_cb++;
	t->cb.on_frame(t->ud, in->from, in->lane, data, len);
	t->in_cb--;
	in->in_cb = false;
	if (in->dead) {
		in_free(in);
		return -1;
	}
	return 0;
}

/* An HTTP GET on the peer port (a proxy asking for /members): answer it and close. Returns 0
 * to wait for the rest of the request head, -1 once the connection is freed. */
static int in_http(struct inconn *in)
{
	struct peer_transport *t = in->t;
	const char *p = (const char *)in->rbuf + in->rpos, *end, *path, *sp;
	size_t avail = in->rlen - in->rpos;
	struct buf body = BUF_INIT, out = BUF_INIT;
	char *path_s;
	int status = 404;

	end = memmem(p, avail, "\r\n\r\n", 4);
	if (!end) {
		if (in->rlen < RBUF_SIZE)
			return 0;
		in_free(in);
		return -1;
	}
	path = p + 4;
	sp = memchr(path, ' ', (size_t)(end - path));
	path_s = sp ? strndup(path, (size_t)(sp - path)) : NULL;
	if (path_s && t->cb.on_http_get)
		status = t->cb.on_http_get(t->ud, path_s, &body);
	free(path_s);
	if (status != 200) {
		buf_clear(&body);
		buf_puts(&body, "404 page not found\n");
	}
	buf_printf(&out,
	           "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
	           "Connection: close\r\n\r\n",
	           status, status == 200 ? "OK" : "Not Found",
	           status == 200 ? "application/json" : "text/plain; charset=utf-8", body.len);
	buf_append(&out, body.data ? body.data : "", body.len);
	/* A small answer into a fresh socket's empty buffer, like the handshake reply. */
	if (out.data)
		(void)stream_write(&in->st, out.data, out.len);
	buf_release(&body);
	buf_release(&out);
	in_free(in);
	return -1;
}

/* Deliver the complete frames in the read-ahead. Returns 0, or -1 once the connection is freed. */
static int in_parse(struct inconn *in)
{
	struct peer_transport *t = in->t;

	if (!in->hs_done && in->rlen - in->rpos >= 4 && !memcmp(in->rbuf + in->rpos, "GET ", 4))
		return in_http(in);
	while (!in->big) {
		size_t avail = in->rlen - in->rpos;
		const unsigned char *p = in->rbuf + in->rpos;
		uint32_t len;

		if (avail < 4)
			break;
		len = get_le32(p);
		if (!in->hs_done) {
			if (len < 6 || len > HS_MAX) {
				log_warn("refusing peer connection from '%s': malformed handshake",
				         in->addr);
				in_free(in);
				return -1;
			}
			if (avail < 4 + (size_t)len)
				break;
			in->rpos += 4 + (size_t)len;
			if (in_handshake(in, p + 4, len) < 0)
				return -1;
			continue;
		}
		if (len > t->cfg.max_frame) {
			log_warn("closing peer connection from '%s' (member '%" PRIx64
			         "'): frame of %" PRIu32 " bytes is over the limit of %zu",
			         in->addr, in->from, len, t->cfg.max_frame);
			in_free(in);
			return -1;
		}
		if (avail - 4 >= len) {
			in->rpos += 4 + (size_t)len;
			if (in_deliver(in, p + 4, len) < 0)
				return -1;
			continue;
		}
		if (4 + (size_t)len > RBUF_SIZE) {
			in->big = malloc(len);
			if (!in->big) {
				log_warn(
				    "closing peer connection from '%s': no memory for a frame of "
				    "%" PRIu32 " bytes",
				    in->addr, len);
				in_free(in);
				return -1;
			}
			in->big_len = len;
			in->big_have = avail - 4;
			memcpy(in->big, p + 4, in->big_have);
			in->rpos = in->rlen = 0;
		}
		break;
	}
	return 0;
}

static void in_on_ready(struct stream *st, int events)
{
	struct inconn *in = container_of(st, struct inconn, st);
	size_t budget = READ_BUDGET;
	ssize_t n;

	for (;;) {
		if (in_parse(in) < 0)
			return;
		if (budget == 0)
			break;
		if (in->big) {
			size_t want = in->big_len - in->big_have;

			n = stream_read(st, in->big + in->big_have, want < budget ? want : budget);
			if (n > 0) {
				in->big_have += (size_t)n;
				if (in->big_have == in->big_len) {
					unsigned char *b = in->big;
					int r;

					in->big = NULL;
					r = in_deliver(in, b, in->big_len);
					free(b);
					if (r < 0)
						return;
				}
			}
		} else {
			if (in->rpos > 0) {
				memmove(in->rbuf, in->rbuf + in->rpos, in->rlen - in->rpos);
				in->rlen -= in->rpos;
				in->rpos = 0;
			}
			n = stream_read(st, in->rbuf + in->rlen, RBUF_SIZE - in->rlen);
			if (n > 0)
				in->rlen += (size_t)n;
		}
		if (n == -EAGAIN)
			break;
		if (n == 0) {
			if (in->rlen > in->rpos || in->big)
				log_warn(
				    "peer connection from '%s' closed in the middle of a frame",
				    in->addr);
			in_free(in);
			return;
		}
		if (n < 0) {
			log_warn("peer connection from '%s' failed: %s", in->addr,
			         strerror((int)-n));
			in_free(in);
			return;
		}
		budget -= (size_t)n < budget ? (size_t)n : budget;
	}
}

static void accept_one(struct peer_transport *t, int fd, const struct sockaddr_storage *sa)
{
	struct inconn *in = calloc(1, sizeof(*in));

	if (in)
		in->rbuf = malloc(RBUF_SIZE);
	if (!in || !in->rbuf) {
		if (in)
			free(in);
		close(fd);
		log_warn("cannot accept peer connection: out of memory");
		return;
	}
	set_sockopts(fd);
	in->t = t;
	addr_str(sa, in->addr, sizeof(in->addr));
	stream_init_fd(&in->st, t->loop, fd, in_on_ready);
	ev_timer_init(&in->timer, in_on_timer, t->cfg.connect_timeout_ms / 1000.0, 0.);
	ev_timer_start(t->loop, &in->timer);
	in->next = t->in;
	if (t->in)
		t->in->prev = in;
	t->in = in;
	stream_want(&in->st, true, false);
}

static void on_accept_pause(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct listener *l = container_of(w, struct listener, pause);

	ev_io_start(loop, &l->io);
}

static void on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
	struct listener *l = container_of(w, struct listener, io);

	for (int i = 0; i < 32; i++) {
		struct sockaddr_storage sa;
		socklen_t salen = sizeof(sa);
		int fd =
		    accept4(l->fd, (struct sockaddr *)&sa, &salen, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			/* EMFILE and friends: a level-triggered listener would spin, so pause. */
			log_warn("cannot accept peer connection: %s", strerror(errno));
			ev_io_stop(loop, &l->io);
			ev_timer_start(loop, &l->pause);
			return;
		}
		accept_one(l->t, fd, &sa);
	}
}

/* ---- the transport ---- */

void peer_config_default(struct peer_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->protocol_version = PEER_PROTOCOL_VERSION;
	cfg->max_frame = 64u << 20;
	cfg->max_queue_bytes[PEER_LANE_CONTROL] = 4u << 20;
	cfg->max_queue_bytes[PEER_LANE_BULK] = 8u << 20;
	cfg->backoff_initial_ms = 50;
	cfg->backoff_max_ms = 2000;
	cfg->connect_timeout_ms = 1000;
}

static int listen_on(struct peer_transport *t, struct listener *l, const char *url)
{
	struct sockaddr_storage sa;
	socklen_t salen;
	int one = 1, r;

	r = parse_url(url, strlen(url), &sa, &salen);
	if (r < 0) {
		log_warn("cannot listen on peer url '%s': not http://IP:PORT", url);
		return r;
	}
	l->fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (l->fd < 0)
		return -errno;
	(void)setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (sa.ss_family == AF_INET6)
		(void)setsockopt(l->fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(l->fd, (struct sockaddr *)&sa, salen) < 0 || listen(l->fd, 128) < 0) {
		r = -errno;
		log_warn("cannot listen on peer url '%s': %s", url, strerror(-r));
		close(l->fd);
		l->fd = -1;
		return r;
	}
	salen = sizeof(sa);
	if (getsockname(l->fd, (struct sockaddr *)&sa, &salen) == 0)
		l->port = ntohs(sa.ss_family == AF_INET ? ((struct sockaddr_in *)&sa)->sin_port
		                                        : ((struct sockaddr_in6 *)&sa)->sin6_port);
	l->t = t;
	ev_io_init(&l->io, on_accept, l->fd, EV_READ);
	ev_timer_init(&l->pause, on_accept_pause, ACCEPT_PAUSE, 0.);
	ev_io_start(t->loop, &l->io);
	return 0;
}

int peer_transport_new(struct ev_loop *loop, const struct peer_config *cfg,
                       const struct peer_callbacks *cb, void *ud, struct peer_transport **ret_t)
{
	struct peer_transport *t;
	int r;

	if (!cfg->member_id || !cfg->cluster_id || cfg->nlisten > PEER_MAX_LISTEN ||
	    !cfg->max_frame || cfg->max_frame > UINT32_MAX || !cb->on_frame ||
	    !cfg->backoff_initial_ms || cfg->backoff_max_ms < cfg->backoff_initial_ms ||
	    !cfg->connect_timeout_ms)
		return FLT_EINVAL;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->loop = loop;
	t->cfg = *cfg;
	memset(t->cfg.listen_urls, 0, sizeof(t->cfg.listen_urls));
	t->cb = *cb;
	t->ud = ud;
	t->rng =
	    cfg->seed ? cfg->seed : (uint64_t)flt_monotime_ns() ^ cfg->member_id ^ (uintptr_t)t;
	if (!t->rng)
		t->rng = 0x9E3779B97F4A7C15ULL;
	for (size_t i = 0; i < cfg->nlisten; i++) {
		r = listen_on(t, &t->ls[i], cfg->listen_urls[i]);
		if (r < 0) {
			peer_transport_free(t);
			return r;
		}
		t->nls++;
	}
	*ret_t = t;
	return 0;
}

static void peer_free(struct peer *p)
{
	for (int l = 0; l < PEER_LANES; l++) {
		out_close(&p->out[l]);
		buf_release(&p->out[l].stage);
	}
	free_addrs(p->addrs, p->naddrs);
	free(p->urls);
	free(p);
}

void peer_transport_free(struct peer_transport *t)
{
	struct peer *p;

	if (!t)
		return;
	assert(t->in_cb == 0);
	for (size_t i = 0; i < t->nls; i++) {
		ev_io_stop(t->loop, &t->ls[i].io);
		ev_timer_stop(t->loop, &t->ls[i].pause);
		close(t->ls[i].fd);
	}
	while ((p = t->peers)) {
		t->peers = p->next;
		peer_free(p);
	}
	while (t->in)
		in_free(t->in);
	free(t);
}

int peer_listen_port(const struct peer_transport *t, size_t i)
{
	return i < t->nls ? t->ls[i].port : -EINVAL;
}

int peer_add(struct peer_transport *t, uint64_t id, const char *urls)
{
	struct peer *p;
	int r;

	if (!id || id == t->cfg.member_id || !urls)
		return FLT_EINVAL;
	if (find_peer(t, id))
		return -EEXIST;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->urls = strdup(urls);
	if (!p->urls) {
		free(p);
		return -ENOMEM;
	}
	r = parse_urls(urls, &p->addrs, &p->naddrs);
	if (r < 0) {
		free(p->urls);
		free(p);
		return r;
	}
	p->t = t;
	p->id = id;
	for (int l = 0; l < PEER_LANES; l++) {
		struct outconn *o = &p->out[l];

		o->p = p;
		o->lane = (enum peer_lane)l;
		o->st.fd = -1;
		buf_init(&o->stage);
		ev_timer_init(&o->timer, out_on_timer, 0., 0.);
	}
	p->next = t->peers;
	t->peers = p;
	for (int l = 0; l < PEER_LANES; l++)
		out_dial(&p->out[l]);
	return 0;
}

int peer_update(struct peer_transport *t, uint64_t id, const char *urls)
{
	struct peer *p = find_peer(t, id);
	struct peer_addr *a;
	size_t n;
	int r;
	char *copy;

	if (!p)
		return -ENOENT;
	if (strcmp(p->urls, urls) == 0)
		return 0;
	r = parse_urls(urls, &a, &n);
	if (r < 0)
		return r;
	copy = strdup(urls);
	if (!copy) {
		free_addrs(a, n);
		return -ENOMEM;
	}
	free_addrs(p->addrs, p->naddrs);
	free(p->urls);
	p->addrs = a;
	p->naddrs = n;
	p->urls = copy;
	for (int l = 0; l < PEER_LANES; l++) {
		struct outconn *o = &p->out[l];

		out_close(o);
		o->failures = 0;
		o->url_idx = 0;
		out_dial(o);
	}
	return 0;
}

int peer_remove(struct peer_transport *t, uint64_t id)
{
	struct peer **pp, *p;

	for (pp = &t->peers; *pp && (*pp)->id != id; pp = &(*pp)->next)
		;
	if (!(p = *pp))
		return -ENOENT;
	*pp = p->next;
	for (struct inconn *in = t->in, *next; in; in = next) {
		next = in->next;
		if (in->p == p || (in->hs_done && in->from == id))
			in_close(in);
	}
	peer_free(p);
	return 0;
}

int peer_send(struct peer_transport *t, uint64_t to, enum peer_lane lane, const void *frame,
              size_t len)
{
	struct peer *p = find_peer(t, to);
	struct peer_lane_stats *s;
	struct outconn *o;
	struct frame *f;

	if (!p)
		return -ENOENT;
	if ((unsigned)lane >= PEER_LANES)
		return -EINVAL;
	o = &p->out[lane];
	s = &p->stats.lane[lane];
	if (len > t->cfg.max_frame) {
		s->drops++;
		return FLT_ETOOBIG;
	}
	if (o->state == OUT_BACKOFF || o->state == OUT_IDLE) {
		s->drops++;
		return -ENOTCONN;
	}
	if (o->queued > 0 && o->queued + 4 + len > t->cfg.max_queue_bytes[lane]) {
		s->drops++;
		o->want_drain = true;
		return -ENOBUFS;
	}
	f = malloc(sizeof(*f) + 4 + len);
	if (!f) {
		s->drops++;
		return -ENOMEM;
	}
	f->next = NULL;
	f->size = 4 + len;
	put_le32(f->data, (uint32_t)len);
	if (len)
		memcpy(f->data + 4, frame, len);
	if (o->tail)
		o->tail->next = f;
	else
		o->head = f;
	o->tail = f;
	o->queued += f->size;
	/* Written when the loop next polls: everything sent in this turn goes out together. */
	if (o->state == OUT_UP)
		stream_want(&o->st, true, true);
	return 0;
}

void peer_flush(struct peer_transport *t)
{
	for (struct peer *p = t->peers; p; p = p->next)
		for (int l = 0; l < PEER_LANES; l++) {
			struct outconn *o = &p->out[l];

			/* Errors are left to the write watcher, which is still armed and reports
			 * them with the connection's usual failure handling. */
			if (o->state == OUT_UP && out_pending(o) && out_flush(o) == 0)
				stream_want(&o->st, true, out_pending(o));
		}
}

int peer_get_stats(const struct peer_transport *t, uint64_t id, struct peer_stats *ret_stats)
{
	const struct peer *p = find_peer(t, id);

	if (!p)
		return -ENOENT;
	*ret_stats = p->stats;
	for (int l = 0; l < PEER_LANES; l++) {
		ret_stats->lane[l].queued_bytes = p->out[l].queued;
		ret_stats->lane[l].connected = p->out[l].state == OUT_UP;
	}
	return 0;
}
