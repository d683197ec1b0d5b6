/* Unit tests of the peer transport: several transports on 127.0.0.1 ephemeral ports in this one
 * process and loop (pumped until a condition holds or a deadline passes), plus raw sockets that
 * speak the wire format by hand. Covers the mesh, ordering, limits, refusals with backoff,
 * reconnects, queue bounds, heartbeats during a bulk transfer, removal, and fd hygiene. */
#include <arpa/inet.h>
#include <dirent.h>
#include <inttypes.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <ev.h>

#include "peer/peer.h"
#include "util/err.h"
#include "util/log.h"
#include "util/util.h"

#define CLUSTER 0xc1u
#define MAXN    10 /* member ids 1..9 */

static struct ev_loop *loop;
static bool slow; /* under valgrind: smaller transfers, looser latency bound */

/* ---- a node: a transport and what it received ---- */

struct node {
	struct peer_transport *t;
	uint64_t id;
	int port;
	char url[64];
	uint32_t next_seq[MAXN][PEER_LANES]; /* expected sequence number per sender and lane */
	uint64_t frames[MAXN][PEER_LANES];
	uint64_t bytes[MAXN][PEER_LANES];
	int order_errors;
	int ups, downs;
	int drains;
	size_t last_len;
	/* heartbeat latency (no-head-of-line test) */
	int64_t hb_max_ns, hb_sum_ns;
	uint64_t hb_count;
	void (*on_drain)(struct node *n, uint64_t member, enum peer_lane lane);
	bool remove_on_frame; /* peer_remove the sender from inside on_frame */
};

static void on_frame(void *ud, uint64_t from, enum peer_lane lane, const void *data, size_t len)
{
	struct node *n = ud;
	uint32_t seq;

	assert_true(from > 0 && from < MAXN);
	n->frames[from][lane]++;
	n->bytes[from][lane] += len;
	n->last_len = len;
	if (n->remove_on_frame) {
		assert_int_equal(peer_remove(n->t, from), 0);
		n->remove_on_frame = false;
	}
	if (len < 4)
		return;
	memcpy(&seq, data, 4);
	if (seq != n->next_seq[from][lane])
		n->order_errors++;
	n->next_seq[from][lane] = seq + 1;
	if (lane == PEER_LANE_CONTROL && len >= 12) {
		int64_t sent, lat;

		memcpy(&sent, (const char *)data + 4, 8);
		lat = flt_monotime_ns() - sent;
		if (lat > n->hb_max_ns)
			n->hb_max_ns = lat;
		n->hb_sum_ns += lat;
		n->hb_count++;
	}
}

static void on_state(void *ud, uint64_t member, enum peer_lane lane, bool up)
{
	struct node *n = ud;

	if (up)
		n->ups++;
	else
		n->downs++;
}

static void on_drain(void *ud, uint64_t member, enum peer_lane lane)
{
	struct node *n = ud;

	n->drains++;
	if (n->on_drain)
		n->on_drain(n, member, lane);
}

static const struct peer_callbacks cbs = {
    .on_frame = on_frame, .on_peer_state = on_state, .on_drain = on_drain};

static void node_start_cfg(struct node *n, const struct peer_config *cfg, int port)
{
	struct peer_config c = *cfg;
	char listen[64];
	int r;

	memset(n, 0, sizeof(*n));
	n->id = c.member_id;
	snprintf(listen, sizeof(listen), "http://127.0.0.1:%d", port);
	c.listen_urls[0] = listen;
	c.nlisten = 1;
	r = peer_transport_new(loop, &c, &cbs, n, &n->t);
	assert_int_equal(r, 0);
	n->port = peer_listen_port(n->t, 0);
	assert_true(n->port > 0);
	snprintf(n->url, sizeof(n->url), "http://127.0.0.1:%d", n->port);
}

static void base_cfg(struct peer_config *c, uint64_t id)
{
	peer_config_default(c);
	c->member_id = id;
	c->cluster_id = CLUSTER;
	c->seed = id * 7919;
}

static void node_start(struct node *n, uint64_t id)
{
	struct peer_config c;

	base_cfg(&c, id);
	node_start_cfg(n, &c, 0);
}

static void node_stop(struct node *n)
{
	peer_transport_free(n->t);
	n->t = NULL;
}

/* ---- loop pumping ---- */

static void on_tick(struct ev_loop *l, ev_timer *w, int revents)
{
}

typedef bool (*cond_fn)(void *arg);

/* Run the loop until cond(arg) holds or `secs` pass; returns the final cond. */
static bool run_until(cond_fn cond, void *arg, double secs)
{
	ev_timer tick;
	int64_t deadline = flt_monotime_ns() + (int64_t)(secs * 1e9);
	bool ok;

	ev_timer_init(&tick, on_tick, 0.002, 0.002);
	ev_timer_start(loop, &tick);
	while (!(ok = cond(arg)) && flt_monotime_ns() < deadline)
		ev_run(loop, EVRUN_ONCE);
	ev_timer_stop(loop, &tick);
	return ok;
}

static bool never(void *arg)
{
	return false;
}

static void run_for(double secs)
{
	run_until(never, NULL, secs);
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the DIR's own */
}

struct link_arg {
	struct node *from;
	uint64_t to;
};

static bool link_up(void *arg)
{
	struct link_arg *a = arg;
	struct peer_stats s;

	if (peer_get_stats(a->from->t, a->to, &s) < 0)
		return false;
	return s.lane[PEER_LANE_CONTROL].connected && s.lane[PEER_LANE_BULK].connected;
}

static void wait_link(struct node *from, uint64_t to)
{
	struct link_arg a = {from, to};

	assert_true(run_until(link_up, &a, 10));
}

static void connect_pair(struct node *a, struct node *b)
{
	assert_int_equal(peer_add(a->t, b->id, b->url), 0);
	assert_int_equal(peer_add(b->t, a->id, a->url), 0);
	wait_link(a, b->id);
	wait_link(b, a->id);
}

/* A frame: [u32 seq][i64 send time][filler]. */
static void *make_frame(uint32_t seq, size_t len)
{
	unsigned char *f = malloc(len ? len : 1);
	int64_t now = flt_monotime_ns();

	assert_non_null(f);
	for (size_t i = 0; i < len; i++)
		f[i] = (unsigned char)(i * 31 + seq);
	if (len >= 4)
		memcpy(f, &seq, 4);
	if (len >= 12)
		memcpy(f + 4, &now, 8);
	return f;
}

static int send_seq(struct node *n, uint64_t to, enum peer_lane lane, uint32_t seq, size_t len)
{
	void *f = make_frame(seq, len);
	int r = peer_send(n->t, to, lane, f, len);

	free(f);
	return r;
}

/* ---- 1. three transports, every direction, both lanes, order within a lane ---- */

struct mesh {
	struct node *n;
	uint64_t want[PEER_LANES];
};

static bool mesh_done(void *arg)
{
	struct mesh *m = arg;

	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 3; j++)
			for (int l = 0; l < PEER_LANES; l++)
				if (i != j && m->n[i].frames[m->n[j].id][l] < m->want[l])
					return false;
	return true;
}

static void test_mesh(void **state)
{
	struct node n[3];
	int fds = count_fds();
	const uint32_t count = 300;
	struct mesh m = {n, {count, 0}};
	uint32_t bulk_seq = 0;

	for (int i = 0; i < 3; i++)
		node_start(&n[i], (uint64_t)i + 1);
	/* Added before anyone is up on the other side: frames queue while the lanes connect. */
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 3; j++)
			if (i != j)
				assert_int_equal(peer_add(n[i].t, n[j].id, n[j].url), 0);
	assert_int_equal(peer_add(n[0].t, n[1].id, n[1].url), -EEXIST);
	assert_int_equal(peer_add(n[0].t, n[0].id, n[1].url), FLT_EINVAL);
	assert_int_equal(peer_add(n[0].t, 9, "https://127.0.0.1:1"), FLT_EINVAL);
	assert_int_equal(peer_add(n[0].t, 9, "http://localhost:2380"), FLT_EINVAL);
	assert_int_equal(peer_send(n[0].t, 9, PEER_LANE_CONTROL, "x", 1), -ENOENT);
	for (uint32_t s = 0; s < count; s++) {
		bool bulk = s % 50 == 0 || (s > 250 && s % 3 == 0);

		for (int i = 0; i < 3; i++)
			for (int j = 0; j < 3; j++) {
				if (i == j)
					continue;
				/* sizes from 4 bytes to 2 KiB; 100 KiB or 100 bytes on the bulk
				 * lane */
				assert_int_equal(send_seq(&n[i], n[j].id, PEER_LANE_CONTROL, s,
				                          4 + (s * 7) % 2048),
				                 0);
				if (bulk)
					assert_int_equal(send_seq(&n[i], n[j].id, PEER_LANE_BULK,
					                          bulk_seq,
					                          s % 100 == 0 ? 100000 : 100),
					                 0);
			}
		if (bulk)
			bulk_seq++;
		if (s == count / 2) /* the rest goes on established connections */
			assert_true(run_until(mesh_done, &(struct mesh){n, {s + 1, bulk_seq}}, 10));
	}
	m.want[PEER_LANE_BULK] = bulk_seq;
	assert_true(run_until(mesh_done, &m, 10));
	for (int i = 0; i < 3; i++) {
		assert_int_equal(n[i].order_errors, 0);
		assert_int_equal(n[i].ups, 4);
		for (int j = 0; j < 3; j++) {
			struct peer_stats s;

			if (i == j)
				continue;
			assert_int_equal(peer_get_stats(n[i].t, n[j].id, &s), 0);
			assert_int_equal(s.lane[PEER_LANE_CONTROL].frames_sent, count);
			assert_int_equal(s.lane[PEER_LANE_BULK].frames_sent, bulk_seq);
			assert_int_equal(s.lane[PEER_LANE_CONTROL].frames_recv, count);
			assert_int_equal(s.lane[PEER_LANE_CONTROL].bytes_sent,
			                 n[j].bytes[n[i].id][PEER_LANE_CONTROL]);
			assert_int_equal(s.lane[PEER_LANE_CONTROL].drops, 0);
			assert_int_equal(s.lane[PEER_LANE_CONTROL].connects, 1);
			assert_true(s.lane[PEER_LANE_CONTROL].connected);
			assert_int_equal(s.lane[PEER_LANE_BULK].queued_bytes, 0);
		}
	}
	assert_int_equal(n[1].frames[1][PEER_LANE_CONTROL], count);
	for (int i = 0; i < 3; i++)
		node_stop(&n[i]);
	assert_int_equal(count_fds(), fds);
}

/* ---- 2. frame size limit, on both sides ---- */

struct raw {
	int fd;
	unsigned char buf[64];
	size_t len, want;
	bool eof;
};

static int raw_connect(int port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	/* The listener's backlog completes the connect without the loop running. */
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

static void put32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static void raw_send(int fd, const void *data, size_t len)
{
	assert_int_equal(send(fd, data, len, MSG_NOSIGNAL), (ssize_t)len);
}

static void raw_hello(int fd, const char *magic, uint16_t ver, uint64_t cluster, uint64_t from,
                      uint64_t to, uint8_t lane)
{
	unsigned char h[35];

	put32(h, 31);
	memcpy(h + 4, magic, 4);
	h[8] = (unsigned char)ver;
	h[9] = (unsigned char)(ver >> 8);
	put64(h + 10, cluster);
	put64(h + 18, from);
	put64(h + 26, to);
	h[34] = lane;
	raw_send(fd, h, sizeof(h));
}

static bool raw_ready(void *arg)
{
	struct raw *r = arg;

	while (!r->eof && r->len < r->want) {
		ssize_t n = recv(r->fd, r->buf + r->len, sizeof(r->buf) - r->len, MSG_DONTWAIT);

		if (n > 0)
			r->len += (size_t)n;
		else if (n == 0 || (errno != EAGAIN && errno != EINTR))
			r->eof = true;
		else
			break;
	}
	return r->eof || r->len >= r->want;
}

/* Read the 27-byte reply; returns the status byte, or -1 if the connection closed first. */
static int raw_reply(struct raw *r)
{
	r->want = 27;
	assert_true(run_until(raw_ready, r, 10));
	if (r->len < 27)
		return -1;
	assert_memory_equal(r->buf + 4, "FLTP", 4);
	return r->buf[10];
}

static void raw_expect_close(struct raw *r)
{
	r->want = sizeof(r->buf);
	assert_true(run_until(raw_ready, r, 10));
	assert_true(r->eof);
}

struct recv_arg {
	struct node *n;
	uint64_t from;
	enum peer_lane lane;
	uint64_t frames;
};

static bool received(void *arg)
{
	struct recv_arg *a = arg;

	return a->n->frames[a->from][a->lane] >= a->frames;
}

static void wait_frames(struct node *n, uint64_t from, enum peer_lane lane, uint64_t frames)
{
	struct recv_arg a = {n, from, lane, frames};

	assert_true(run_until(received, &a, 20));
}

static void test_limits(void **state)
{
	struct node a, b;
	struct peer_config c;
	struct peer_stats st;
	const size_t max = 256 * 1024;
	unsigned char bad[8];
	struct raw r = {0};
	int fds = count_fds();

	base_cfg(&c, 1);
	c.max_frame = max;
	node_start_cfg(&a, &c, 0);
	base_cfg(&c, 2);
	c.max_frame = max;
	node_start_cfg(&b, &c, 0);
	connect_pair(&a, &b);
	assert_int_equal(send_seq(&a, 2, PEER_LANE_CONTROL, 0, max), 0);
	assert_int_equal(send_seq(&a, 2, PEER_LANE_CONTROL, 1, max + 1), FLT_ETOOBIG);
	assert_int_equal(send_seq(&a, 2, PEER_LANE_BULK, 0, max), 0);
	assert_int_equal(peer_send(a.t, 2, (enum peer_lane)7, "x", 1), -EINVAL);
	wait_frames(&b, 1, PEER_LANE_CONTROL, 1);
	assert_int_equal(b.last_len, max);
	wait_frames(&b, 1, PEER_LANE_BULK, 1);
	assert_int_equal(b.last_len, max);
	assert_int_equal(peer_get_stats(a.t, 2, &st), 0);
	assert_int_equal(st.lane[PEER_LANE_CONTROL].drops, 1);

	/* A hand-made member 7 that sends a length over the limit is cut off. */
	assert_int_equal(peer_add(b.t, 7, "http://127.0.0.1:1"), 0);
	r.fd = raw_connect(b.port);
	raw_hello(r.fd, "FLTP", PEER_PROTOCOL_VERSION, CLUSTER, 7, 2, PEER_LANE_CONTROL);
	assert_int_equal(raw_reply(&r), PEER_OK);
	put32(bad, 4);
	put32(bad + 4, 0); /* one good frame: seq 0 */
	raw_send(r.fd, bad, 8);
	wait_frames(&b, 7, PEER_LANE_CONTROL, 1);
	put32(bad, (uint32_t)max + 1);
	raw_send(r.fd, bad, 4);
	raw_expect_close(&r);
	close(r.fd);

	/* Not our protocol at all, and an absurd handshake length: refused and closed. */
	memset(&r, 0, sizeof(r));
	r.fd = raw_connect(b.port);
	raw_hello(r.fd, "HTTP", PEER_PROTOCOL_VERSION, CLUSTER, 7, 2, PEER_LANE_CONTROL);
	assert_int_equal(raw_reply(&r), PEER_REFUSE_MALFORMED);
	raw_expect_close(&r);
	close(r.fd);
	memset(&r, 0, sizeof(r));
	r.fd = raw_connect(b.port);
	put32(bad, 1u << 30);
	raw_send(r.fd, bad, 4);
	raw_expect_close(&r);
	close(r.fd);
	/* An unknown lane. */
	memset(&r, 0, sizeof(r));
	r.fd = raw_connect(b.port);
	raw_hello(r.fd, "FLTP", PEER_PROTOCOL_VERSION, CLUSTER, 7, 2, 9);
	assert_int_equal(raw_reply(&r), PEER_REFUSE_MALFORMED);
	close(r.fd);

	assert_int_equal(b.frames[1][PEER_LANE_CONTROL], 1); /* the real member is unaffected */
	assert_int_equal(b.order_errors + a.order_errors, 0);
	node_stop(&a);
	node_stop(&b);
	assert_int_equal(count_fds(), fds);
}

/* ---- 3. handshake refusals, with backoff instead of a reconnect storm ---- */

struct refusal_arg {
	struct node *n;
	uint64_t target;
	enum peer_refusal want;
};

static bool refused(void *arg)
{
	struct refusal_arg *a = arg;
	struct peer_stats s;

	assert_int_equal(peer_get_stats(a->n->t, a->target, &s), 0);
	return s.lane[PEER_LANE_CONTROL].refusals > 0 &&
	       s.lane[PEER_LANE_CONTROL].last_refusal == a->want &&
	       s.lane[PEER_LANE_BULK].refusals > 0;
}

static void test_refusals(void **state)
{
	static const struct {
		uint64_t cluster;
		uint16_t version;
		uint64_t target; /* the id A expects at B's address (B is 2) */
		bool b_knows_a;
		enum peer_refusal want;
	} cases[] = {
	    {0xdead, PEER_PROTOCOL_VERSION, 2, true, PEER_REFUSE_CLUSTER},
	    {CLUSTER, PEER_PROTOCOL_VERSION + 1, 2, true, PEER_REFUSE_VERSION},
	    {CLUSTER, PEER_PROTOCOL_VERSION, 5, true, PEER_REFUSE_RECEIVER},
	    {CLUSTER, PEER_PROTOCOL_VERSION, 2, false, PEER_REFUSE_UNKNOWN},
	};
	int fds = count_fds();

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct node a, b;
		struct peer_config c;
		struct peer_stats s0, s1;
		struct refusal_arg ra = {&a, cases[i].target, cases[i].want};

		base_cfg(&c, 1);
		c.cluster_id = cases[i].cluster;
		c.protocol_version = cases[i].version;
		node_start_cfg(&a, &c, 0);
		node_start(&b, 2);
		if (cases[i].b_knows_a)
			assert_int_equal(peer_add(b.t, 1, a.url), 0);
		assert_int_equal(peer_add(a.t, cases[i].target, b.url), 0);
		assert_true(run_until(refused, &ra, 10));
		if (i == 0) {
			/* Count attempts in a window: 50 ms doubling to 2 s allows ~6 a second. */
			int sends = 0, notconn = 0;
			int64_t end = flt_monotime_ns() + 1000000000LL;

			assert_int_equal(peer_get_stats(a.t, 2, &s0), 0);
			while (flt_monotime_ns() < end) {
				int r = peer_send(a.t, 2, PEER_LANE_CONTROL, "hb", 2);

				sends++;
				notconn += r == -ENOTCONN;
				run_for(0.01);
			}
			assert_int_equal(peer_get_stats(a.t, 2, &s1), 0);
			for (int l = 0; l < PEER_LANES; l++) {
				uint64_t d = s1.lane[l].dials - s0.lane[l].dials;

				print_message("refused lane %d: %" PRIu64 " dials in 1 s\n", l, d);
				assert_true(d >= 2 && d <= 8);
			}
			assert_true(notconn > sends / 2); /* mostly waiting out a backoff */
			assert_int_equal(s1.lane[0].connects, 0);
		}
		assert_int_equal(a.ups + b.ups, 0);
		assert_int_equal(a.frames[2][0] + b.frames[1][0], 0);
		node_stop(&a);
		node_stop(&b);
	}
	assert_int_equal(count_fds(), fds);
}

/* ---- 4. reconnect after the remote restarts on the same port; URL updates ---- */

static bool downs2(void *arg)
{
	return ((struct node *)arg)->downs >= 2;
}

static void test_reconnect(void **state)
{
	struct node a, b;
	struct peer_config c;
	struct peer_stats st;
	int port, fds = count_fds();

	node_start(&a, 1);
	node_start(&b, 2);
	connect_pair(&a, &b);
	port = b.port;
	assert_int_equal(send_seq(&a, 2, PEER_LANE_CONTROL, 0, 100), 0);
	wait_frames(&b, 1, PEER_LANE_CONTROL, 1);

	node_stop(&b);
	assert_true(run_until(downs2, &a, 10));
	base_cfg(&c, 2);
	node_start_cfg(&b, &c, port);
	assert_int_equal(peer_add(b.t, 1, a.url), 0);
	wait_link(&a, 2);
	wait_link(&b, 1);
	assert_int_equal(peer_get_stats(a.t, 2, &st), 0);
	assert_true(st.lane[PEER_LANE_CONTROL].connects >= 2);
	assert_true(st.lane[PEER_LANE_BULK].connects >= 2);
	for (uint32_t i = 0; i < 10; i++) {
		assert_int_equal(send_seq(&a, 2, PEER_LANE_CONTROL, i, 100), 0);
		assert_int_equal(send_seq(&b, 1, PEER_LANE_CONTROL, i, 100), 0);
	}
	wait_frames(&b, 1, PEER_LANE_CONTROL, 10);
	wait_frames(&a, 2, PEER_LANE_CONTROL, 10);
	assert_int_equal(b.order_errors, 0);

	/* A dead URL first in the list: the dialer rotates to the next one after a failure. */
	{
		char urls[160];
		int ups = a.ups;

		snprintf(urls, sizeof(urls), "http://127.0.0.1:1,%s", b.url);
		assert_int_equal(peer_update(a.t, 2, urls), 0);
		assert_int_equal(peer_update(a.t, 2, urls), 0);
		assert_int_equal(peer_update(a.t, 3, urls), -ENOENT);
		assert_int_equal(peer_update(a.t, 2, "http://nowhere:1"), FLT_EINVAL);
		wait_link(&a, 2);
		assert_true(a.ups >= ups + 2);
	}
	node_stop(&a);
	node_stop(&b);
	assert_int_equal(count_fds(), fds);
}

/* ---- 5. the queue bound ---- */

static bool drained(void *arg)
{
	return ((struct node *)arg)->drains > 0;
}

static bool queue_empty(void *arg)
{
	struct peer_stats s;

	peer_get_stats(((struct node *)arg)->t, 2, &s);
	return s.lane[PEER_LANE_CONTROL].queued_bytes == 0;
}

static void test_queue_bound(void **state)
{
	struct node a, b;
	struct peer_config c;
	struct peer_stats st;
	uint32_t seq = 0;
	int fds = count_fds();

	base_cfg(&c, 1);
	c.max_queue_bytes[PEER_LANE_CONTROL] = 64 * 1024;
	node_start_cfg(&a, &c, 0);
	node_start(&b, 2);
	connect_pair(&a, &b);
	/* Nothing is written before the loop runs again, so the queue fills. */
	for (;;) {
		int r = send_seq(&a, 2, PEER_LANE_CONTROL, seq, 1020);

		if (r == -ENOBUFS)
			break;
		assert_int_equal(r, 0);
		seq++;
	}
	assert_int_equal(seq, 64);
	assert_int_equal(peer_get_stats(a.t, 2, &st), 0);
	assert_int_equal(st.lane[PEER_LANE_CONTROL].drops, 1);
	assert_int_equal(st.lane[PEER_LANE_CONTROL].queued_bytes, 64 * 1024);
	assert_true(run_until(drained, &a, 10));
	assert_int_equal(send_seq(&a, 2, PEER_LANE_CONTROL, seq++, 1020), 0);
	assert_true(run_until(queue_empty, &a, 10));
	/* One frame larger than the bound still goes through an empty queue, but only one. */
	assert_int_equal(send_seq(&a, 2, PEER_LANE_CONTROL, seq++, 200000), 0);
	assert_int_equal(send_seq(&a, 2, PEER_LANE_CONTROL, seq, 10), -ENOBUFS);
	wait_frames(&b, 1, PEER_LANE_CONTROL, seq);
	assert_int_equal(b.order_errors, 0);
	node_stop(&a);
	node_stop(&b);
	assert_int_equal(count_fds(), fds);
}

/* ---- 6. no head-of-line blocking: heartbeats while a snapshot streams ---- */

struct hol {
	struct node *a;
	unsigned char *chunk;
	size_t chunk_len;
	uint32_t next, total;
	uint32_t hb_seq;
	int hb_fail;
	uint64_t queued_ahead, beats; /* bulk bytes queued when each heartbeat was sent */
	ev_timer hb;
};

static struct hol *H;

static void hol_pump(struct node *n, uint64_t member, enum peer_lane lane)
{
	if (lane != PEER_LANE_BULK)
		return;
	while (H->next < H->total) {
		int r;

		memcpy(H->chunk, &H->next, 4);
		r = peer_send(n->t, 2, PEER_LANE_BULK, H->chunk, H->chunk_len);
		if (r == -ENOBUFS)
			return;
		assert_int_equal(r, 0);
		H->next++;
	}
}

static void hol_beat(struct ev_loop *l, ev_timer *w, int revents)
{
	struct peer_stats s;

	if (H->next >= H->total)
		return; /* the last chunks are in flight: not "during" the transfer any more */
	assert_int_equal(peer_get_stats(H->a->t, 2, &s), 0);
	H->queued_ahead += s.lane[PEER_LANE_BULK].queued_bytes;
	H->beats++;
	if (send_seq(H->a, 2, PEER_LANE_CONTROL, H->hb_seq, 64) == 0)
		H->hb_seq++;
	else
		H->hb_fail++;
}

static void test_no_head_of_line(void **state)
{
	struct node a, b;
	struct hol h = {0};
	struct recv_arg done = {&b, 1, PEER_LANE_BULK, 0};
	int64_t t0, t1;
	double secs, mib, avg_ms, fifo_ms;
	int fds = count_fds();

	node_start(&a, 1);
	node_start(&b, 2);
	connect_pair(&a, &b);
	H = &h;
	h.a = &a;
	h.chunk_len = 1 << 20;
	h.total = slow ? 32 : 50;
	h.chunk = calloc(1, h.chunk_len);
	assert_non_null(h.chunk);
	done.frames = h.total;
	a.on_drain = hol_pump;
	ev_timer_init(&h.hb, hol_beat, 0.001, 0.001);
	ev_timer_start(loop, &h.hb);
	t0 = flt_monotime_ns();
	hol_pump(&a, 2, PEER_LANE_BULK);
	assert_true(run_until(received, &done, slow ? 120 : 30));
	t1 = flt_monotime_ns();
	ev_timer_stop(loop, &h.hb);
	secs = (double)(t1 - t0) / 1e9;
	mib = (double)h.total;
	avg_ms = b.hb_count ? (double)b.hb_sum_ns / (double)b.hb_count / 1e6 : 0.0;
	/* What one shared FIFO would have cost: the bulk bytes queued ahead of each heartbeat at
	 * the measured rate (an underestimate: it ignores what sits in the socket buffers). */
	fifo_ms =
	    h.beats ? (double)h.queued_ahead / (double)h.beats / (mib * 1048576 / secs) * 1e3 : 0.0;
	print_message("bulk: %.0f MiB in %.3f s = %.0f MiB/s; %" PRIu64
	              " heartbeats during it, latency max %.2f ms avg %.3f ms (behind the bulk "
	              "queue in one FIFO: ~%.2f ms avg)\n",
	              mib, secs, mib / secs, b.hb_count, (double)b.hb_max_ns / 1e6, avg_ms,
	              fifo_ms);
	assert_int_equal(b.order_errors, 0);
	assert_int_equal(h.hb_fail, 0);
	assert_int_equal(b.bytes[1][PEER_LANE_BULK], (uint64_t)h.total * h.chunk_len);
	assert_true(h.beats >= 5);
	assert_int_equal(b.hb_count, h.hb_seq);
	if (!slow)
		assert_true(avg_ms < fifo_ms);
	assert_true(b.hb_max_ns < (slow ? 1000000000LL : 50000000LL));
	free(h.chunk);
	H = NULL;
	node_stop(&a);
	node_stop(&b);
	assert_int_equal(count_fds(), fds);
}

/* ---- 7. peer_remove closes connections and later handshakes are refused ---- */

static bool b_refused_unknown(void *arg)
{
	struct node *b = arg;
	struct peer_stats s;

	peer_get_stats(b->t, 1, &s);
	return b->downs >= 2 && s.lane[PEER_LANE_CONTROL].refusals > 0 &&
	       s.lane[PEER_LANE_CONTROL].last_refusal == PEER_REFUSE_UNKNOWN;
}

static bool no_peer(void *arg)
{
	struct peer_stats s;

	return peer_get_stats(((struct node *)arg)->t, 2, &s) == -ENOENT;
}

static void test_remove(void **state)
{
	struct node a, b;
	int fds = count_fds();

	node_start(&a, 1);
	node_start(&b, 2);
	connect_pair(&a, &b);
	assert_int_equal(count_fds(), fds + 2 + 8); /* two listeners, four connections each way */
	assert_int_equal(peer_remove(a.t, 2), 0);
	assert_int_equal(peer_remove(a.t, 2), -ENOENT);
	assert_int_equal(peer_send(a.t, 2, PEER_LANE_CONTROL, "x", 1), -ENOENT);
	assert_true(run_until(b_refused_unknown, &b, 10));

	/* Back again, then removed from inside the callback of one of its own frames. */
	assert_int_equal(peer_add(a.t, 2, b.url), 0);
	wait_link(&a, 2);
	wait_link(&b, 1);
	a.remove_on_frame = true;
	memset(b.next_seq, 0, sizeof(b.next_seq));
	assert_int_equal(send_seq(&b, 1, PEER_LANE_CONTROL, 0, 10), 0);
	assert_int_equal(send_seq(&b, 1, PEER_LANE_CONTROL, 1, 10), 0);
	assert_true(run_until(no_peer, &a, 10));
	run_for(0.05);
	assert_int_equal(a.frames[2][PEER_LANE_CONTROL], 1); /* the second died with the link */
	node_stop(&a);
	node_stop(&b);
	assert_int_equal(count_fds(), fds);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_mesh),        cmocka_unit_test(test_limits),
	    cmocka_unit_test(test_refusals),    cmocka_unit_test(test_reconnect),
	    cmocka_unit_test(test_queue_bound), cmocka_unit_test(test_no_head_of_line),
	    cmocka_unit_test(test_remove),
	};
	const char *pre = getenv("LD_PRELOAD");

	slow = pre && strstr(pre, "vgpreload");
	log_set_level(getenv("FLT_TEST_LOG") ? LOG_LVL_DEBUG : LOG_LVL_ERROR);
	loop = ev_loop_new(EVFLAG_AUTO);
	int r = cmocka_run_group_tests(tests, NULL, NULL);
	ev_loop_destroy(loop);
	return r;
}
