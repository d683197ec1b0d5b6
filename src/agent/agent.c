/* The agent (see agent.h). It talks to the cluster only through the etcd v2 API and the
 * heartbeat endpoint of a member, like fleet's agent talked to etcd, so a member and a proxy run
 * the same code. Reading: the units and the schedule are fetched whole and watched (a change
 * wakes a refetch; a refetch every few seconds covers anything a watch missed); the runner is
 * then told the whole list (runner_sync_begin/end). Writing: only changes of a unit's state,
 * latest first, one write per unit in flight. */
#include "agent/agent.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <jansson.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <unistd.h>

#include "agent/runner.h"
#include "engine/model.h"
#include "engine/sched.h"
#include "http/client.h"
#include "http/web.h"
#include "unit/unit.h"
#include "util/buf.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/util.h"

#define RESYNC_S       5.0 /* refetch this machine's metadata (not watched) */
#define FULL_RESYNC_NS (60 * (int64_t)1000000000) /* refetch everything, a safety net */
#define RETRY_S        0.5                        /* after a failed fetch or write */

struct ustate {
	char *name;
	char *hash; /* of the text below */
	char *text;
	char *written;      /* state JSON last written ("" = deleted / never) */
	char *pending;      /* state JSON to write; "" = delete the key; NULL = nothing */
	const char *target; /* what this agent was told: "loaded" or "launched" (static) */
	bool writing;
};

enum { F_UNITS, F_SCHED, F_META, F_N };

struct agent {
	struct ev_loop *loop;
	struct hcli *http;
	struct runner *runner;
	struct agent_config cfg;
	char *machine_id, *public_ip, *endpoint, *hostname;
	json_t *metadata; /* from the flag */
	ev_timer hb_w, sync_w, write_w;
	int64_t last_ok_ns; /* monotonic time of the last heartbeat the leader took */
	bool hb_in_flight, fenced;
	/* fetching */
	unsigned fetching;
	json_t *got[F_N];
	uint64_t got_index[F_N];
	bool fetch_failed, fetch_full;
	int64_t last_full_ns; /* monotonic time of the last complete fetch of units and schedule */
	/* Watches of the units and schedule directories; their events are applied to got[]. */
	struct hcli_call *watch[2];
	uint64_t watch_index[2];
	struct watchctx {
		struct agent *a;
		int which; /* F_UNITS or F_SCHED */
	} wc[2];
	struct ustate *u;
	size_t nu;
};

static const char *api(struct agent *a)
{
	return a->cfg.api_url(a->cfg.api_url_ud);
}

/* ---- unit bookkeeping ---- */

static struct ustate *ustate_get(struct agent *a, const char *name, bool create)
{
	struct ustate *v;

	for (size_t i = 0; i < a->nu; i++)
		if (!strcmp(a->u[i].name, name))
			return &a->u[i];
	if (!create || !(v = realloc(a->u, (a->nu + 1) * sizeof(*v))))
		return NULL;
	a->u = v;
	v = &a->u[a->nu];
	memset(v, 0, sizeof(*v));
	if (!(v->name = strdup(name)))
		return NULL;
	a->nu++;
	return v;
}

/* ---- state reports ---- */

static void write_kick(struct agent *a)
{
	if (!ev_is_active(&a->write_w)) {
		ev_timer_set(&a->write_w, 0., 0.);
		ev_timer_start(a->loop, &a->write_w);
	}
}

void agent_runner_state(struct agent *a, const char *unit, const struct runner_state *st)
{
	struct ustate *u = ustate_get(a, unit, true);
	json_t *o;
	char *s;

	if (!u)
		return;
	if (!st) {
		s = strdup("");
	} else {
		o = json_pack(
		    "{s:s, s:s?, s:s?, s:s?, s:s?, s:s?, s:s?, s:I, s:I, s:s?, s:i, s:i, s:i, "
		    "s:s?, s:s?}",
		    "machineID", a->machine_id, "target", u->target, "hash", st->hash, "runtime",
		    st->runtime, "loadState", st->load_state, "activeState", st->active_state,
		    "subState", st->sub_state, "since", (json_int_t)st->since, "mainPID",
		    (json_int_t)st->main_pid, "handle", st->handle, "restarts", (int)st->restarts,
		    "exitCode", st->exit_code, "exitSignal", st->exit_signal, "result", st->result,
		    "message", st->message);
		s = o ? json_dumps(o, JSON_COMPACT) : NULL;
		json_decref(o);
	}
	if (!s)
		return;
	free(u->pending);
	u->pending = s;
	write_kick(a);
}

struct wctx {
	struct agent *a;
	char *unit;
	char *value; /* what was sent */
};

static void wdone(void *ctx, int err, const char *msg, int status, const struct buf *body)
{
	struct wctx *w = ctx;
	struct agent *a = w->a;
	struct ustate *u = ustate_get(a, w->unit, false);
	bool ok = err == 0 && (status == 200 || status == 201 || (status == 404 && !w->value[0]));

	(void)body;
	if (u) {
		u->writing = false;
		if (ok && !w->value[0] && !u->pending) {
			/* the unit is gone from this machine and so is its key: forget it */
			size_t i = (size_t)(u - a->u);

			free(u->name);
			free(u->hash);
			free(u->text);
			free(u->written);
			a->u[i] = a->u[--a->nu];
		} else if (ok) {
			free(u->written);
			u->written = w->value;
			w->value = NULL;
		} else if (!u->pending) {
			u->pending = w->value; /* try again */
			w->value = NULL;
		}
	}
	if (!ok)
		log_debug("agent: cannot publish the state of '%s': %s", w->unit,
		          err ? msg : "unexpected status");
	free(w->value);
	free(w->unit);
	free(w);
	if (!ok) {
		ev_timer_stop(a->loop, &a->write_w);
		ev_timer_set(&a->write_w, RETRY_S, 0.);
		ev_timer_start(a->loop, &a->write_w);
	} else {
		write_kick(a);
	}
}

static void on_write(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct agent *a = container_of(w, struct agent, write_w);

	(void)loop;
	(void)revents;
	for (size_t i = 0; i < a->nu; i++) {
		struct ustate *u = &a->u[i];
		struct buf url = BUF_INIT, form = BUF_INIT;
		struct web_header h = {"Content-Type", "application/x-www-form-urlencoded"};
		struct hcli_req rq = {.timeout_ms = 10000};
		struct hcli_cb cb = {.done = wdone};
		struct wctx *wc;
		char *enc;

		if (u->writing || !u->pending)
			continue;
		if (u->written && !strcmp(u->written, u->pending)) {
			free(u->pending);
			u->pending = NULL;
			continue;
		}
		wc = calloc(1, sizeof(*wc));
		if (!wc)
			return;
		wc->a = a;
		wc->unit = strdup(u->name);
		wc->value = u->pending;
		u->pending = NULL;
		buf_printf(&url, "%s/v2/keys" MODEL_STATES "/%s/%s", api(a), u->name,
		           a->machine_id);
		if (wc->value[0]) {
			enc = curl_easy_escape(NULL, wc->value, 0);
			buf_printf(&form, "value=%s", enc ? enc : "");
			curl_free(enc);
			rq.method = "PUT";
			rq.headers = &h;
			rq.n_headers = 1;
			rq.body = form.data;
			rq.body_len = form.len;
		} else {
			rq.method = "DELETE";
		}
		rq.url = url.data;
		cb.ctx = wc;
		if (wc->unit && url.data && hcli_call_start(a->http, &rq, &cb, NULL) == 0) {
			u->writing = true;
		} else {
			u->pending = wc->value;
			free(wc->unit);
			free(wc);
		}
		buf_release(&url);
		buf_release(&form);
	}
}

/* ---- what should run here ---- */

static bool sched_to_me(struct agent *a, const char *name)
{
	json_t *nodes = json_object_get(json_object_get(a->got[F_SCHED], "node"), "nodes"), *n;
	size_t i;

	json_array_foreach(nodes, i, n)
	{
		const char *key = json_string_value(json_object_get(n, "key"));
		const char *slash = key ? strrchr(key, '/') : NULL;
		json_t *v;
		bool me;

		if (!slash || strcmp(slash + 1, name))
			continue;
		v = json_loads(json_string_value(json_object_get(n, "value")) ?: "", 0, NULL);
		me = v && json_string_value(json_object_get(v, "machineID")) &&
		     !strcmp(json_string_value(json_object_get(v, "machineID")), a->machine_id);
		json_decref(v);
		return me;
	}
	return false;
}

/* This machine's metadata: the flag's, with the API's overrides on top. */
static json_t *my_metadata(struct agent *a)
{
	json_t *m = json_deep_copy(a->metadata), *over = NULL;
	const char *v =
	    json_string_value(json_object_get(json_object_get(a->got[F_META], "node"), "value"));

	if (v && (over = json_loads(v, 0, NULL)) && json_is_object(over)) {
		const char *k;
		json_t *x;

		json_object_foreach(over, k, x)
		{
			if (json_is_string(x))
				json_object_set(m, k, x);
			else
				json_object_del(m, k);
		}
	}
	json_decref(over);
	return m;
}

static bool global_here(struct agent *a, const struct unit_sched *us, json_t *meta)
{
	struct sched_kv *kv = calloc(json_object_size(meta) + 1, sizeof(*kv));
	struct sched_machine m = {0};
	const char *k;
	json_t *v;
	size_t n = 0;
	bool ok;

	if (!kv)
		return false;
	json_object_foreach(meta, k, v)
	{
		kv[n].key = k;
		kv[n].value = json_string_value(v);
		n++;
	}
	m.id = a->machine_id;
	m.public_ip = a->public_ip;
	m.metadata = kv;
	m.n_metadata = n;
	m.n_runtimes = runner_runtimes(a->runner, &m.runtimes);
	ok = sched_global_applies(&m, us, us->runtime);
	free(kv);
	return ok;
}

static void apply(struct agent *a)
{
	json_t *nodes = json_object_get(json_object_get(a->got[F_UNITS], "node"), "nodes"), *n;
	json_t *meta = my_metadata(a);
	size_t i;

	runner_sync_begin(a->runner);
	json_array_foreach(nodes, i, n)
	{
		const char *key = json_string_value(json_object_get(n, "key"));
		const char *slash = key ? strrchr(key, '/') : NULL;
		json_t *v =
		    json_loads(json_string_value(json_object_get(n, "value")) ?: "", 0, NULL);
		const char *name = slash ? slash + 1 : NULL, *desired, *hash;
		struct unit_file uf = UNIT_FILE_INIT;
		struct unit_sched us;
		struct buf err = BUF_INIT, text = BUF_INIT;
		enum runner_target target = RUNNER_GONE;
		struct ustate *u;
		bool here;

		desired = json_string_value(json_object_get(v, "desiredState"));
		hash = json_string_value(json_object_get(v, "hash"));
		if (!name || !desired || !hash || unit_name_is_template(name) ||
		    !strcmp(desired, "inactive") ||
		    unit_from_json(json_object_get(v, "options"), &uf, &err) < 0)
			goto next;
		here = sched_to_me(a, name);
		if (!here && unit_sched_parse(&uf, name, &us, &err) == 0) {
			here = us.global && global_here(a, &us, meta);
			unit_sched_release(&us);
		}
		if (!here)
			goto next;
		target = !strcmp(desired, "launched") ? RUNNER_LAUNCHED : RUNNER_LOADED;
		u = ustate_get(a, name, true);
		if (u)
			u->target = target == RUNNER_LAUNCHED ? "launched" : "loaded";
		if (u && (!u->hash || strcmp(u->hash, hash))) {
			if (unit_serialize(&uf, &text) == 0 && text.data) {
				free(u->hash);
				free(u->text);
				u->hash = strdup(hash);
				u->text = buf_steal(&text);
			}
		}
		if (u && u->text && runner_set(a->runner, name, u->text, hash, target) < 0)
			log_warn("agent: cannot take unit '%s'", name);
		else if (u && u->text) {
			/* publish what the runner knows (after a restart it adopted before we
			 * existed); unchanged states are not written again */
			struct runner_state st;

			if (runner_state(a->runner, name, &st) == 0)
				agent_runner_state(a, name, &st);
		}
	next:
		buf_release(&err);
		buf_release(&text);
		unit_file_release(&uf);
		json_decref(v);
	}
	runner_sync_end(a->runner);
	json_decref(meta);
}

/* ---- fetching and watching ---- */

static void fetch(struct agent *a, bool full);
static void watch_start(struct agent *a);

struct fctx {
	struct agent *a;
	int which;
	uint64_t index;
};

static void fhead(void *ctx, int status, const struct web_header *h, size_t n)
{
	struct fctx *f = ctx;

	(void)status;
	for (size_t i = 0; i < n; i++)
		if (!strcasecmp(h[i].name, "X-Etcd-Index"))
			f->index = strtoull(h[i].value, NULL, 10);
}

static void fdone(void *ctx, int err, const char *msg, int status, const struct buf *body)
{
	struct fctx *f = ctx;
	struct agent *a = f->a;

	a->fetching--;
	json_decref(a->got[f->which]);
	a->got[f->which] = NULL;
	if (err == 0 && (status == 200 || status == 404)) {
		/* 404: the directory does not exist yet (no units, nothing scheduled) */
		a->got[f->which] = status == 200 ? json_loadb(body->data ?: "", body->len, 0, NULL)
		                                 : json_object();
		a->got_index[f->which] = f->index;
	}
	if (!a->got[f->which]) {
		/* an answer that does not parse is no answer: it must never read as "nothing
		 * runs here", which would stop every unit */
		a->fetch_failed = true;
		log_debug("agent: cannot read the cluster's units: %s",
		          err ? msg : "unexpected status");
	}
	free(f);
	if (a->fetching)
		return;
	if (a->fetch_failed) {
		ev_timer_stop(a->loop, &a->sync_w);
		ev_timer_set(&a->sync_w, RETRY_S, 0.);
		ev_timer_start(a->loop, &a->sync_w);
		return;
	}
	if (!a->fenced)
		apply(a);
	if (a->fetch_full) {
		a->last_full_ns = flt_monotime_ns();
		a->watch_index[F_UNITS] = a->got_index[F_UNITS];
		a->watch_index[F_SCHED] = a->got_index[F_SCHED];
		watch_start(a);
	}
	ev_timer_stop(a->loop, &a->sync_w);
	ev_timer_set(&a->sync_w, RESYNC_S, 0.);
	ev_timer_start(a->loop, &a->sync_w);
}

/* Read what this machine runs from: all three (full) or only the metadata. */
static void fetch(struct agent *a, bool full)
{
	static const char *const what[F_N] = {MODEL_UNITS "?recursive=true",
	                                      MODEL_SCHEDULE "?recursive=true", MODEL_METADATA};

	if (a->fetching)
		return;
	a->fetch_failed = false;
	a->fetch_full = full;
	if (full)
		log_debug("agent: reading the units and the schedule");
	for (int i = 0; i < F_N; i++) {
		struct buf url = BUF_INIT;
		struct fctx *f = calloc(1, sizeof(*f));
		struct hcli_req rq = {.timeout_ms = 10000};
		struct hcli_cb cb = {.head = fhead, .done = fdone, .ctx = f};

		if (!f)
			continue;
		if (!full && i != F_META) {
			free(f);
			continue;
		}
		f->a = a;
		f->which = i;
		if (i == F_META)
			buf_printf(&url, "%s/v2/keys%s/%s", api(a), what[i], a->machine_id);
		else
			buf_printf(&url, "%s/v2/keys%s", api(a), what[i]);
		rq.url = url.data;
		if (url.data && hcli_call_start(a->http, &rq, &cb, NULL) == 0)
			a->fetching++;
		else
			free(f);
		buf_release(&url);
	}
}

/* A watch event applied to the listing it watches (got[F_UNITS] or got[F_SCHED]): the key's
 * node replaced, added or removed, as a refetch would show it. -1 for anything else (an etcd
 * error such as 401 "event index cleared", a directory event): the caller refetches. */
static int event_apply(struct agent *a, int i, const struct buf *body)
{
	json_t *ev = json_loadb(body->data ? body->data : "", body->len, 0, NULL);
	json_t *node = json_object_get(ev, "node"), *dir, *list;
	const char *action = json_string_value(json_object_get(ev, "action"));
	const char *key = json_string_value(json_object_get(node, "key"));
	json_int_t idx = json_integer_value(json_object_get(node, "modifiedIndex"));
	size_t k, at = SIZE_MAX;
	int r = -1;

	if (!action || !key || idx <= 0 || json_is_true(json_object_get(node, "dir")) || !a->got[i])
		goto out;
	if (!json_is_object(dir = json_object_get(a->got[i], "node"))) {
		json_object_set_new(a->got[i], "node", dir = json_object());
		if (!dir)
			goto out;
	}
	if (!json_is_array(list = json_object_get(dir, "nodes"))) {
		json_object_set_new(dir, "nodes", list = json_array());
		if (!list)
			goto out;
	}
	for (k = 0; k < json_array_size(list); k++) {
		const char *nk = json_string_value(json_object_get(json_array_get(list, k), "key"));

		if (nk && !strcmp(nk, key)) {
			at = k;
			break;
		}
	}
	if (!strcmp(action, "delete") || !strcmp(action, "expire") ||
	    !strcmp(action, "compareAndDelete")) {
		if (at != SIZE_MAX)
			json_array_remove(list, at);
	} else if (at != SIZE_MAX) {
		json_array_set(list, at, node);
	} else {
		json_array_append(list, node);
	}
	a->watch_index[i] = (uint64_t)idx;
	r = 0;
out:
	json_decref(ev);
	return r;
}

static void watch_one(struct agent *a, int i);

static void wwdone(void *ctx, int err, const char *msg, int status, const struct buf *body)
{
	struct watchctx *wc = ctx;
	struct agent *a = wc->a;

	(void)msg;
	a->watch[wc->which] = NULL;
	if (err == 0 && status == 200 && event_apply(a, wc->which, body) == 0) {
		if (!a->fenced)
			apply(a);
		watch_one(a, wc->which);
		return;
	}
	for (int i = 0; i < 2; i++)
		hcli_call_cancel(a->watch[i]); /* the other one too: a refetch restarts both */
	a->watch[0] = a->watch[1] = NULL;
	if (err == 0)
		fetch(a, true);
}

static void watch_one(struct agent *a, int i)
{
	static const char *const dirs[2] = {MODEL_UNITS, MODEL_SCHEDULE};
	struct buf url = BUF_INIT;
	struct hcli_req rq = {0};
	struct hcli_cb cb = {.done = wwdone, .ctx = &a->wc[i]};

	hcli_call_cancel(a->watch[i]);
	a->watch[i] = NULL;
	buf_printf(&url, "%s/v2/keys%s?wait=true&recursive=true&waitIndex=%llu", api(a), dirs[i],
	           (unsigned long long)a->watch_index[i] + 1);
	rq.url = url.data;
	if (url.data)
		hcli_call_start(a->http, &rq, &cb, &a->watch[i]);
	buf_release(&url);
}

static void watch_start(struct agent *a)
{
	watch_one(a, F_UNITS);
	watch_one(a, F_SCHED);
}

static void on_sync(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct agent *a = container_of(w, struct agent, sync_w);

	(void)loop;
	(void)revents;
	/* The watches keep units and schedule current; without both of them, or once a minute,
	 * everything is read again. */
	fetch(a, !a->watch[F_UNITS] || !a->watch[F_SCHED] ||
	             flt_monotime_ns() - a->last_full_ns >= FULL_RESYNC_NS);
}

/* ---- heartbeats and fencing ---- */

static char *machine_json(struct agent *a)
{
	const char *const *rt;
	size_t nrt = runner_runtimes(a->runner, &rt);
	json_t *rts = json_array(), *o;
	char *s;

	for (size_t i = 0; i < nrt; i++)
		json_array_append_new(rts, json_string(rt[i]));
	o = json_pack("{s:s, s:s, s:O, s:s, s:o, s:s, s:I, s:I}", "id", a->machine_id, "publicIP",
	              a->public_ip, "metadata", a->metadata, "version", FLT_VERSION, "runtimes",
	              rts, "endpoint", a->endpoint, "memory", (json_int_t)a->cfg.memory, "cpus",
	              (json_int_t)a->cfg.cpus);
	s = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(o);
	return s;
}

static void hb_done(void *ctx, int err, const char *msg, int status, const struct buf *body)
{
	struct agent *a = ctx;

	(void)body;
	a->hb_in_flight = false;
	if (err == 0 && status == 204) {
		a->last_ok_ns = flt_monotime_ns();
		if (a->fenced) {
			a->fenced = false;
			log_notice("agent: the cluster is reachable again: resuming units");
			fetch(a, true);
		}
		return;
	}
	log_debug("agent: heartbeat not taken: %s (status %d)", err ? msg : "", status);
}

static void on_heartbeat(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct agent *a = container_of(w, struct agent, hb_w);
	int64_t now = flt_monotime_ns();

	(void)loop;
	(void)revents;
	if (a->cfg.fence && !a->fenced &&
	    now - a->last_ok_ns > (int64_t)a->cfg.fence_ms * 1000000) {
		int n = runner_stop_all(a->runner);

		a->fenced = true;
		log_warn("agent: no heartbeat reached the leader for %u ms: stopping %d unit(s) "
		         "(another machine may run them now)",
		         a->cfg.fence_ms, n);
	}
	if (!a->hb_in_flight) {
		struct buf url = BUF_INIT;
		char *body = machine_json(a);
		struct web_header h = {"Content-Type", "application/json"};
		struct hcli_req rq = {.method = "POST", .headers = &h, .n_headers = 1};
		struct hcli_cb cb = {.done = hb_done, .ctx = a};

		buf_printf(&url, "%s" MODEL_HEARTBEAT_PATH, api(a));
		rq.url = url.data;
		rq.body = body;
		rq.body_len = body ? strlen(body) : 0;
		rq.timeout_ms = a->cfg.ttl_ms / 2;
		if (body && url.data && hcli_call_start(a->http, &rq, &cb, NULL) == 0)
			a->hb_in_flight = true;
		free(body);
		buf_release(&url);
	}
}

/* ---- local endpoints ---- */

struct follow {
	struct web_req *req;
	struct journal_follow *f;
};

static void follow_line(void *ud, const char *unit, const char *line, size_t len)
{
	struct follow *fl = ud;

	(void)unit;
	if (web_stream_write(fl->req, line, len) < 0) {
		runner_unfollow(fl->f);
		web_stream_end(fl->req);
		free(fl);
	}
}

static void follow_gone(struct web_req *req, void *ctx)
{
	struct follow *fl = ctx;

	runner_unfollow(fl->f);
	web_stream_end(req); /* completing the orphaned request frees it */
	free(fl);
}

void agent_handle_local(struct agent *a, struct web_req *req, const char *path)
{
	struct web_header jh = {"Content-Type", "application/json"};
	struct web_header th = {"Content-Type", "text/plain; charset=utf-8"};
	const char *q = web_req_query(req);
	char *unit = NULL, *lines_s = NULL, *follow_s = NULL;
	unsigned nlines = 0, nfollow = 0;
	struct buf b = BUF_INIT;
	bool journal = !strncmp(path, MODEL_JOURNAL_PATH, strlen(MODEL_JOURNAL_PATH));
	const char *rest =
	    path + (journal ? strlen(MODEL_JOURNAL_PATH) : strlen(MODEL_STATUS_PATH));
	int r;

	unit = web_unescape(rest, strlen(rest), false, NULL);
	if (!unit || unit_name_check(unit, &(const char *){NULL}) < 0) {
		static const char m[] = "{\"message\":\"invalid unit name\"}\n";

		free(unit);
		web_respond(req, 400, &jh, 1, m, sizeof(m) - 1);
		return;
	}
	if (!journal) {
		r = runner_status_json(a->runner, unit, &b);
		if (r < 0) {
			buf_clear(&b);
			buf_printf(&b, "{\"message\":\"unit %s is not known on machine %s\"}\n",
			           unit, a->machine_id);
		}
		web_respond(req, r < 0 ? 404 : 200, &jh, 1, b.data ?: "", b.len);
	} else {
		unsigned lines = 10;

		if (web_query_get(q, "lines", &nlines, &lines_s) == 0 && nlines)
			lines = (unsigned)strtoul(lines_s, NULL, 10);
		r = runner_journal(a->runner, unit, lines, &b);
		if (r < 0 && r != -ENOENT) {
			web_respond(req, 500, &th, 1, "", 0);
		} else if (web_query_get(q, "follow", &nfollow, &follow_s) == 0 && nfollow &&
		           !strcmp(follow_s, "true")) {
			struct follow *fl = calloc(1, sizeof(*fl));

			web_stream_begin(req, 200, &th, 1);
			if (b.len)
				web_stream_write(req, b.data, b.len);
			if (!fl || runner_follow(a->runner, unit, follow_line, fl, &fl->f) < 0) {
				free(fl);
				web_stream_end(req);
			} else {
				fl->req = req;
				web_req_on_close(req, follow_gone, fl);
			}
		} else {
			web_respond(req, 200, &th, 1, b.data ?: "", b.len);
		}
	}
	buf_release(&b);
	free(unit);
	free(lines_s);
	free(follow_s);
}

/* ---- setup ---- */

static json_t *parse_metadata(const char *s)
{
	json_t *m = json_object();
	const char *p = s ? s : "";

	while (*p) {
		size_t l = strcspn(p, ","), k;
		const char *eq = memchr(p, '=', l);

		if (eq && eq > p) {
			char *key = strndup(p, (size_t)(eq - p));
			char *val = strndup(eq + 1, l - (size_t)(eq - p) - 1);

			for (k = 0; key && key[k] == ' '; k++)
				;
			if (key && val)
				json_object_set_new(m, key + k, json_string(val));
			free(key);
			free(val);
		}
		p += l + (p[l] == ',');
	}
	return m;
}

int agent_new(struct ev_loop *loop, struct hcli *http, struct runner *runner,
              const struct agent_config *cfg, struct agent **ret)
{
	struct agent *a = calloc(1, sizeof(*a));

	if (!a)
		return -ENOMEM;
	a->loop = loop;
	for (int i = 0; i < 2; i++) {
		a->wc[i].a = a;
		a->wc[i].which = i; /* F_UNITS, F_SCHED */
	}
	a->http = http;
	a->runner = runner;
	a->cfg = *cfg;
	a->machine_id = strdup(cfg->machine_id);
	a->public_ip = strdup(cfg->public_ip);
	a->endpoint = strdup(cfg->endpoint ? cfg->endpoint : "");
	a->hostname = strdup(cfg->hostname ? cfg->hostname : "");
	a->metadata = parse_metadata(cfg->metadata);
	if (!a->machine_id || !a->public_ip || !a->endpoint || !a->hostname || !a->metadata) {
		agent_free(a);
		return -ENOMEM;
	}
	if (!a->cfg.ttl_ms)
		a->cfg.ttl_ms = 3000;
	if (!a->cfg.fence_ms)
		a->cfg.fence_ms = a->cfg.ttl_ms;
	if (!a->cfg.memory) {
		long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);

		a->cfg.memory = pages > 0 && psz > 0 ? (uint64_t)pages * (uint64_t)psz : 0;
	}
	if (!a->cfg.cpus) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);

		a->cfg.cpus = n > 0 ? (uint64_t)n * 1000 : 0;
	}
	a->cfg.machine_id = a->cfg.public_ip = a->cfg.endpoint = a->cfg.hostname = NULL;
	a->cfg.metadata = NULL;
	a->last_ok_ns = flt_monotime_ns(); /* a TTL of grace to reach the cluster at start */
	ev_timer_init(&a->hb_w, on_heartbeat, 0., (double)a->cfg.ttl_ms / 3000.0);
	ev_timer_start(loop, &a->hb_w);
	ev_timer_init(&a->sync_w, on_sync, 0., 0.);
	ev_timer_start(loop, &a->sync_w);
	ev_init(&a->write_w, on_write);
	*ret = a;
	return 0;
}

void agent_free(struct agent *a)
{
	if (!a)
		return;
	ev_timer_stop(a->loop, &a->hb_w);
	ev_timer_stop(a->loop, &a->sync_w);
	ev_timer_stop(a->loop, &a->write_w);
	for (int i = 0; i < 2; i++)
		hcli_call_cancel(a->watch[i]);
	for (int i = 0; i < F_N; i++)
		json_decref(a->got[i]);
	for (size_t i = 0; i < a->nu; i++) {
		free(a->u[i].name);
		free(a->u[i].hash);
		free(a->u[i].text);
		free(a->u[i].written);
		free(a->u[i].pending);
	}
	free(a->u);
	json_decref(a->metadata);
	free(a->machine_id);
	free(a->public_ip);
	free(a->endpoint);
	free(a->hostname);
	free(a);
}

const char *agent_machine_id(const struct agent *a)
{
	return a->machine_id;
}

/* ---- machine identity ---- */

static char *read_id(const char *path)
{
	char buf[128];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;
	size_t l;

	if (fd < 0)
		return NULL;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return NULL;
	buf[n] = '\0';
	l = strcspn(buf, " \t\r\n");
	buf[l] = '\0';
	return l ? strdup(buf) : NULL;
}

char *agent_machine_id_load(const char *flag, const char *data_dir, char *err, size_t errlen)
{
	struct buf path = BUF_INIT;
	char *id = NULL;
	int fd;

	if (flag && flag[0])
		return strdup(flag);
	buf_printf(&path, "%s/machine-id", data_dir);
	if (!path.data)
		return NULL;
	id = read_id(path.data);
	if (!id) {
		/* First start. /etc/machine-id names the host, so only one daemon per host may take
		 * it: whoever holds the lock (for the daemon's life: the fd stays open). */
		int lock =
		    open("/run/lock/flotilla-machine-id.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);

		if (lock >= 0 && flock(lock, LOCK_EX | LOCK_NB) == 0)
			id = read_id("/etc/machine-id");
		else if (lock >= 0)
			close(lock);
		if (!id) {
			unsigned char rnd[16];

			if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
				snprintf(err, errlen, "cannot make a machine id: %s",
				         strerror(errno));
				buf_release(&path);
				return NULL;
			}
			id = malloc(33);
			for (int i = 0; id && i < 16; i++)
				snprintf(id + 2 * i, 3, "%02x", rnd[i]);
		}
		if (id) {
			fs_mkdir_p(data_dir, 0700);
			fd = open(path.data, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
			if (fd < 0 || fs_write_all(fd, id, strlen(id)) < 0 || fsync(fd) < 0) {
				snprintf(err, errlen, "cannot save the machine id in '%s': %s",
				         path.data, strerror(errno));
				free(id);
				id = NULL;
			}
			if (fd >= 0)
				close(fd);
		}
	}
	buf_release(&path);
	return id;
}

char *agent_default_ip(void)
{
	char line[256], ifname[IF_NAMESIZE + 1] = "";
	FILE *f = fopen("/proc/net/route", "re");
	struct ifaddrs *ifs = NULL;
	char addr[INET_ADDRSTRLEN] = "127.0.0.1";

	while (f && fgets(line, sizeof(line), f)) {
		char name[IF_NAMESIZE + 1];
		unsigned long dest;

		if (sscanf(line, "%16s %lx", name, &dest) == 2 && dest == 0) {
			memcpy(ifname, name, sizeof(ifname));
			break;
		}
	}
	if (f)
		fclose(f);
	if (ifname[0] && getifaddrs(&ifs) == 0) {
		for (struct ifaddrs *i = ifs; i; i = i->ifa_next)
			if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET &&
			    !strcmp(i->ifa_name, ifname)) {
				inet_ntop(AF_INET, &((struct sockaddr_in *)i->ifa_addr)->sin_addr,
				          addr, sizeof(addr));
				break;
			}
		freeifaddrs(ifs);
	}
	return strdup(addr);
}
