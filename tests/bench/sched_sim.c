/* Simulated machines against a real cluster (tests/bench/scheduler runs it): M agents that only
 * send heartbeats, U units submitted through the fleet API, and a stream watch of the schedule
 * directory to see every placement. Prints the time to place all units, placements per second,
 * log writes per placement, the log writes of idle machines, and how long a dead machine's
 * units take to be placed elsewhere.
 *   sched_sim -e URL [-m machines] [-u units] [-t ttl_ms] [-i idle_s] [-c conns] */
#include <ev.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>

#include "http/client.h"
#include "util/err.h"
#include "util/util.h"

static struct ev_loop *loop;
static struct hcli *http;
static const char *ep = "http://127.0.0.1:2379";
static unsigned nm = 1000, nu = 10000, ttl_ms = 3000, idle_s = 60, conns = 64;

/* ---- machines ---- */

struct machine {
	int64_t next_hb_ns;
	int64_t last_hb_ns; /* when the last heartbeat was sent */
	bool dead;          /* stopped sending heartbeats (the kill test) */
	bool in_flight;     /* like a real agent: one heartbeat at a time */
	unsigned ok;        /* heartbeats taken */
	unsigned units;
};
static struct machine *ms;
static unsigned hb_in_flight, hb_sent, hb_failed;

static void hb_done(void *ctx, int err, const char *msg, int status, const struct buf *body)
{
	struct machine *m = ctx;

	(void)body;
	m->in_flight = false;
	hb_in_flight--;
	if (err || status != 204) {
		if (!hb_failed++)
			fprintf(stderr, "sched_sim: a heartbeat failed: %s (status %d)\n",
			        err ? (msg ? msg : flt_strerror(err)) : "unexpected answer", status);
	} else
		m->ok++;
}

static void send_heartbeat(unsigned i)
{
	char body[512], url[256];
	struct web_header h = {"Content-Type", "application/json"};
	struct hcli_req rq = {.method = "POST", .url = url, .headers = &h, .n_headers = 1};
	struct hcli_cb cb = {.done = hb_done, .ctx = &ms[i]};

	snprintf(url, sizeof(url), "%s/_flotilla/v1/heartbeat", ep);
	rq.body = body;
	rq.body_len = (size_t)snprintf(
	    body, sizeof(body),
	    "{\"id\":\"%032x\",\"publicIP\":\"10.%u.%u.%u\",\"metadata\":{\"rack\":\"r%u\"},"
	    "\"version\":\"sim\",\"runtimes\":[\"exec\"],\"memory\":0,\"cpus\":0}",
	    i + 1, (i >> 16) & 255, (i >> 8) & 255, i & 255, i % 40);
	rq.timeout_ms = ttl_ms / 2;
	if (hcli_call_start(http, &rq, &cb, NULL) == 0) {
		ms[i].in_flight = true;
		hb_in_flight++;
		hb_sent++;
	}
}

/* Every machine heartbeats every ttl/3, as an agent does: one at a time per machine, and at
 * most HB_CONNS at once for all of them (the file descriptors of one process). */
#define HB_CONNS 256
static void on_hb_tick(struct ev_loop *l, ev_timer *w, int revents)
{
	int64_t now = flt_monotime_ns(), period = (int64_t)ttl_ms * 1000000 / 3;

	(void)l;
	(void)w;
	(void)revents;
	static unsigned cursor; /* round robin: no machine starves behind the cap */

	for (unsigned k = 0; k < nm && hb_in_flight < HB_CONNS; k++) {
		unsigned i = cursor;

		cursor = (cursor + 1) % nm;
		if (ms[i].dead || ms[i].in_flight || ms[i].next_hb_ns > now)
			continue;
		send_heartbeat(i);
		ms[i].last_hb_ns = now;
		ms[i].next_hb_ns = (ms[i].next_hb_ns ? ms[i].next_hb_ns : now) + period;
		if (ms[i].next_hb_ns < now)
			ms[i].next_hb_ns = now + period;
	}
}

/* ---- placements, from a stream watch of the schedule directory ---- */

static int *placed_on; /* per unit: machine index, -1 none */
static unsigned nplaced, nmoves;
static struct buf wbuf;
static struct hcli_call *watch_call;
static uint64_t watch_from;

static void start_watch(void);

static unsigned parse_index(const char *s, const char *prefix, const char *suffix)
{
	size_t pl = strlen(prefix);

	if (!s || strncmp(s, prefix, pl))
		return UINT32_MAX;
	s += pl;
	return strstr(s, suffix) ? (unsigned)strtoul(s, NULL, 10) : UINT32_MAX;
}

static void on_event(json_t *ev)
{
	json_t *node = json_object_get(ev, "node");
	const char *key = json_string_value(json_object_get(node, "key"));
	const char *val = json_string_value(json_object_get(node, "value"));
	unsigned u = parse_index(key, "/_flotilla/schedule/u", ".service");
	json_t *v = val ? json_loads(val, 0, NULL) : NULL;
	const char *mid = json_string_value(json_object_get(v, "machineID"));
	int m = mid && strlen(mid) == 32 ? (int)strtoul(mid + 16, NULL, 16) - 1 : -1;
	uint64_t idx = (uint64_t)json_integer_value(json_object_get(node, "modifiedIndex"));

	if (idx >= watch_from)
		watch_from = idx + 1;
	if (u < nu) {
		int old = placed_on[u], now = m >= 0 && (unsigned)m < nm ? m : -1;

		if (old >= 0)
			ms[old].units--;
		if (now >= 0)
			ms[now].units++;
		if (old < 0 && now >= 0)
			nplaced++;
		else if (old >= 0 && now < 0)
			nplaced--;
		nmoves += old >= 0 && now >= 0 && old != now;
		placed_on[u] = now;
	}
	json_decref(v);
}

static void watch_data(void *ctx, const void *data, size_t len)
{
	size_t off = 0;

	(void)ctx;
	buf_append(&wbuf, data, len);
	while (off < wbuf.len) {
		json_error_t jerr;
		json_t *ev;

		while (off < wbuf.len && (wbuf.data[off] == '\n' || wbuf.data[off] == ' '))
			off++;
		if (off == wbuf.len)
			break;
		ev = json_loadb(wbuf.data + off, wbuf.len - off, JSON_DISABLE_EOF_CHECK, &jerr);
		if (!ev)
			break; /* incomplete: wait for more */
		off += (size_t)jerr.position;
		on_event(ev);
		json_decref(ev);
	}
	memmove(wbuf.data, wbuf.data + off, wbuf.len - off);
	wbuf.len -= off;
}

static void watch_done(void *ctx, int err, const char *msg, int status, const struct buf *body)
{
	(void)ctx;
	(void)body;
	watch_call = NULL;
	if (err || status != 200)
		fprintf(stderr, "sched_sim: the schedule watch ended: %s (status %d)\n",
		        err ? msg : "", status);
	wbuf.len = 0;
	start_watch(); /* etcd's watches end after 5 minutes */
}

static void start_watch(void)
{
	char url[256];
	struct hcli_req rq = {.url = url};
	struct hcli_cb cb = {.data = watch_data, .done = watch_done};

	snprintf(
	    url, sizeof(url),
	    "%s/v2/keys/_flotilla/schedule?wait=true&recursive=true&stream=true&waitIndex=%" PRIu64,
	    ep, watch_from);
	hcli_call_start(http, &rq, &cb, &watch_call);
}

/* ---- the store index (X-Etcd-Index): log writes ---- */

static uint64_t got_index;
static bool index_pending;
static unsigned got_children;

static void idx_head(void *ctx, int status, const struct web_header *h, size_t n)
{
	(void)ctx;
	(void)status;
	for (size_t i = 0; i < n; i++)
		if (!strcasecmp(h[i].name, "X-Etcd-Index"))
			got_index = strtoull(h[i].value, NULL, 10);
}

static void idx_done(void *ctx, int err, const char *msg, int status, const struct buf *body)
{
	static const char child[] = "\"key\":\"/_flotilla/machines/";
	const char *p, *end;
	unsigned n = 0;

	(void)ctx;
	(void)msg;
	index_pending = false;
	if (err || status != 200 || !body->len)
		return;
	/* counted, not parsed: parsing thousands of records five times a second would make
	 * this process the bottleneck */
	for (p = body->data, end = body->data + body->len;
	     (p = memmem(p, (size_t)(end - p), child, sizeof(child) - 1)); p += sizeof(child) - 1)
		n++;
	got_children = n;
}

/* The store index, every 200 ms; while machines register, from a GET of their directory (its
 * size says how many did), afterwards from a HEAD (the listing of thousands of machines would
 * load both sides). */
static void ask_index(bool count_machines)
{
	static int64_t last;
	int64_t now = flt_monotime_ns();
	char url[256];
	struct hcli_req rq = {.url = url, .timeout_ms = 10000};
	struct hcli_cb cb = {.head = idx_head, .done = idx_done};

	if (index_pending || now - last < 200000000)
		return;
	last = now;
	rq.method = count_machines ? "GET" : "HEAD";
	snprintf(url, sizeof(url), "%s/v2/keys/_flotilla/machines", ep);
	if (hcli_call_start(http, &rq, &cb, NULL) == 0)
		index_pending = true;
}

/* ---- submitting units ---- */

static unsigned put_next, put_in_flight, put_done, put_failed;
static int64_t t_submitted; /* the last PUT answered */

static void put_cb(void *ctx, int err, const char *msg, int status, const struct buf *body);

static void put_more(void)
{
	static const char body[] =
	    "{\"desiredState\":\"launched\",\"options\":[{\"section\":\"Service\",\"name\":"
	    "\"ExecStart\",\"value\":\"/bin/sleep 1000\"}]}";
	struct web_header h = {"Content-Type", "application/json"};

	while (put_next < nu && put_in_flight < conns) {
		char url[256];
		struct hcli_req rq = {.method = "PUT",
		                      .url = url,
		                      .headers = &h,
		                      .n_headers = 1,
		                      .body = body,
		                      .body_len = sizeof(body) - 1,
		                      .timeout_ms = 30000};
		struct hcli_cb cb = {.done = put_cb};

		snprintf(url, sizeof(url), "%s/fleet/v1/units/u%06u.service", ep, put_next);
		if (hcli_call_start(http, &rq, &cb, NULL) < 0)
			break;
		put_next++;
		put_in_flight++;
	}
}

static void put_cb(void *ctx, int err, const char *msg, int status, const struct buf *body)
{
	(void)ctx;
	(void)body;
	put_in_flight--;
	if (++put_done == nu)
		t_submitted = flt_monotime_ns();
	if (err || (status != 201 && status != 204)) {
		if (!put_failed++)
			fprintf(stderr, "sched_sim: a unit PUT failed: %s (status %d)\n",
			        err ? msg : "", status);
	}
	put_more();
}

/* ---- the phases ---- */

enum phase { P_REGISTER, P_SUBMIT, P_SETTLE, P_IDLE, P_KILL, P_END };
static enum phase phase;
static int64_t t_phase, t_submit, t_placed;
static uint64_t idx0, idx_placed;
static int victim = -1;
static unsigned victim_units;
static int rc = 1;

static double secs(int64_t ns)
{
	return (double)ns / 1e9;
}

/* A line on stderr every 5 s, so a slow phase shows where it is. */
static void progress(int64_t now)
{
	static int64_t last;

	if (now - last < 5 * (int64_t)1000000000)
		return;
	if (last) {
		unsigned never = 0, busy = 0;

		for (unsigned i = 0; i < nm; i++) {
			never += !ms[i].ok;
			busy += ms[i].in_flight;
		}
		fprintf(stderr,
		        "  [phase %d] machines %u/%u, heartbeats %u (%u failed, %u in flight, %u "
		        "machines never heard), units put %u/%u, placed %u\n",
		        (int)phase, got_children, nm, hb_sent, hb_failed, busy, never, put_done, nu,
		        nplaced);
	}
	last = now;
}

static void on_phase(struct ev_loop *l, ev_timer *w, int revents)
{
	int64_t now = flt_monotime_ns();

	(void)revents;
	progress(now);
	switch (phase) {
	case P_REGISTER:
		if (got_children >= nm && got_index) {
			printf("machines registered   %u in %.2f s (%u heartbeats sent)\n", nm,
			       secs(now - t_phase), hb_sent);
			idx0 = got_index;
			watch_from = idx0 + 1;
			start_watch();
			phase = P_SUBMIT;
			t_submit = t_phase = now;
			put_more();
		} else if (now - t_phase > 120 * (int64_t)1000000000) {
			fprintf(stderr, "sched_sim: only %u of %u machines registered in 120 s\n",
			        got_children, nm);
			ev_break(l, EVBREAK_ALL);
		}
		break;
	case P_SUBMIT:
		if (nplaced >= nu && put_done >= nu) {
			t_placed = now;
			printf("units submitted       %u (%u failed) in %.2f s: %.0f PUTs/s\n", nu,
			       put_failed, secs(t_submitted - t_submit),
			       nu / secs(t_submitted - t_submit));
			printf(
			    "all placed after      %.2f s: %.0f placements/s (from the first PUT); "
			    "%.2f s after the last PUT was answered\n",
			    secs(t_placed - t_submit), nu / secs(t_placed - t_submit),
			    secs(t_placed - t_submitted));
			phase = P_SETTLE;
			t_phase = now;
			got_index = 0;
		} else if (now - t_phase > 600 * (int64_t)1000000000) {
			fprintf(stderr, "sched_sim: %u of %u units placed after 600 s\n", nplaced,
			        nu);
			ev_break(l, EVBREAK_ALL);
		}
		break;
	case P_SETTLE: /* two seconds for late writes, then the log's count */
		if (now - t_phase > 2 * (int64_t)1000000000 && got_index && !index_pending) {
			uint64_t writes = got_index - idx0 - nu;

			printf("log writes            %" PRIu64
			       " for %u placements (+%u unit writes): "
			       "%.3f per placement, %u moved\n",
			       writes, nu, nu, (double)writes / nu, nmoves);
			idx_placed = got_index;
			phase = P_IDLE;
			t_phase = now;
			got_index = 0;
		}
		break;
	case P_IDLE:
		if (now - t_phase > (int64_t)idle_s * 1000000000 && got_index && !index_pending) {
			uint64_t writes = got_index - idx_placed;

			printf("idle                  %u machines, %u s: %" PRIu64
			       " log writes (%.4f per machine per minute), %u heartbeats failed\n",
			       nm, idle_s, writes, (double)writes * 60.0 / idle_s / nm, hb_failed);
			/* the machine with the most units dies */
			for (unsigned i = 0; i < nm; i++)
				if (victim < 0 || ms[i].units > ms[victim].units)
					victim = (int)i;
			victim_units = ms[victim].units;
			ms[victim].dead = true;
			phase = P_KILL;
			t_phase = now;
		}
		break;
	case P_KILL:
		if (ms[victim].units == 0 && nplaced >= nu) {
			printf("dead machine          its %u units placed elsewhere %.2f s after "
			       "its last "
			       "heartbeat (TTL %u ms)\n",
			       victim_units, secs(now - ms[victim].last_hb_ns), ttl_ms);
			rc = 0;
			phase = P_END;
			ev_break(l, EVBREAK_ALL);
		} else if (now - t_phase > 60 * (int64_t)1000000000) {
			fprintf(stderr,
			        "sched_sim: the dead machine still has %u units after 60 s\n",
			        ms[victim].units);
			ev_break(l, EVBREAK_ALL);
		}
		break;
	case P_END:
		break;
	}
	ask_index(phase == P_REGISTER); /* after the checks: they want an answer, not a
	                                 * question in flight */
	(void)w;
}

int main(int argc, char **argv)
{
	ev_timer hb_w, phase_w;
	int o;

	while ((o = getopt(argc, argv, "e:m:u:t:i:c:")) != -1) {
		switch (o) {
		case 'e':
			ep = optarg;
			break;
		case 'm':
			nm = (unsigned)atoi(optarg);
			break;
		case 'u':
			nu = (unsigned)atoi(optarg);
			break;
		case 't':
			ttl_ms = (unsigned)atoi(optarg);
			break;
		case 'i':
			idle_s = (unsigned)atoi(optarg);
			break;
		case 'c':
			conns = (unsigned)atoi(optarg);
			break;
		default:
			fprintf(stderr,
			        "usage: sched_sim -e URL [-m machines] [-u units] [-t ttl_ms] "
			        "[-i idle_s] [-c conns]\n");
			return 2;
		}
	}
	if (!nm || !nu || !ttl_ms || !conns) {
		fprintf(stderr, "sched_sim: machines, units, TTL and connections must be > 0\n");
		return 2;
	}
	{
		struct rlimit rl;

		if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
			rl.rlim_cur = rl.rlim_max;
			setrlimit(RLIMIT_NOFILE, &rl);
		}
	}
	ms = calloc(nm, sizeof(*ms));
	placed_on = malloc(nu * sizeof(*placed_on));
	if (!ms || !placed_on)
		return 1;
	for (unsigned i = 0; i < nu; i++)
		placed_on[i] = -1;
	loop = ev_default_loop(0);
	if (hcli_new(loop, &http) < 0)
		return 1;
	ev_timer_init(&hb_w, on_hb_tick, 0., 0.01);
	ev_timer_start(loop, &hb_w);
	ev_timer_init(&phase_w, on_phase, 0.05, 0.05);
	ev_timer_start(loop, &phase_w);
	setvbuf(stdout, NULL, _IOLBF, 0);
	t_phase = flt_monotime_ns();
	printf("simulating            %u machines (TTL %u ms), %u units, %u connections, %s\n", nm,
	       ttl_ms, nu, conns, ep);
	fflush(stdout);
	ev_run(loop, 0);
	hcli_free(http);
	buf_release(&wbuf);
	free(ms);
	free(placed_on);
	return rc;
}
