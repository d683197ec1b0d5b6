/* The engine (see engine.h). Liveness: the leader notes when each machine last sent a heartbeat;
 * the log sees a write only when a machine's record changes or it is declared dead, so thousands
 * of idle machines cost the log nothing. A new leader gives every registered machine a full TTL
 * of grace (fleet's issue 1289: a leader change must not make live machines look dead).
 * Placement: the units, machines and current schedule are read from the local store (the leader
 * has applied everything it committed), the scheduler (sched.c: C constraints, then the Lua
 * policy) decides, and only differences are proposed. One batch is in flight at a time. A plan
 * runs when its inputs change (maybe_plan) or every 30 s, and places for at most PLAN_BUDGET_NS
 * so that the loop keeps answering heartbeats and Raft. */
#include "engine/engine.h"

#include <errno.h>
#include <ev.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "engine/model.h"
#include "engine/policy.h"
#include "engine/sched.h"
#include "node.h"
#include "store/store.h"
#include "unit/unit.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/log.h"
#include "util/util.h"

#define TICK_S   0.1
#define STALL_NS 500000000LL /* a tick this late means the loop itself stood still */
/* How long one plan may spend placing new units: the loop must keep answering heartbeats and
 * Raft (the election timeout is 1 s by default); what does not fit waits for the next plan. */
#define PLAN_BUDGET_NS 150000000LL

struct live {
	char *id;
	int64_t seen_ns; /* monotonic */
	char *written;   /* canonical JSON of the record in the store (NULL: none) */
};

/* The directories a plan reads (engine/model.h). */
enum { IN_UNITS, IN_MACHINES, IN_METADATA, IN_SCHEDULE, IN_N };

struct engine {
	struct ev_loop *loop;
	struct store *store;
	struct node *node;
	struct engine_config cfg;
	char *policy_path;
	struct policy *policy;
	ev_timer tick;
	bool leading;
	/* A new leader may not have applied all it committed yet: the engine waits for a read
	 * barrier (everything committed before it is applied) before it reads the store. */
	bool synced, barrier_pending;
	unsigned term_gen; /* bumped on every leadership change; stale barriers are ignored */
	unsigned barriers; /* read barriers not yet called back (any generation) */
	struct live *live;
	size_t nlive;
	unsigned in_flight;     /* proposals not yet applied */
	uint64_t checked_index; /* store index when the inputs were last looked at */
	/* The inputs' fingerprint at the last plan, per directory (units, machines, metadata,
	 * schedule): how many children and the highest modified index among them. Any write
	 * changes one or the other (a set raises the index, a delete lowers the count), so a
	 * changed fingerprint is the one reason to plan besides the periodic pass; agents'
	 * state writes and users' keys move the store index and cost no plan. */
	struct {
		long n;
		uint64_t max;
	} stamp[IN_N];
	bool dirty;              /* inputs changed since the last plan */
	bool absorb_schedule;    /* our own schedule writes applied: not a reason to plan */
	int64_t next_plan_ns;    /* the periodic pass */
	/* Pacing: after a plan the loop is left twice as long as it took (plans at most a third
	 * of the leader's time). At half, a stream of unit PUTs kept plans of 100,000 units
	 * running back to back and the PUTs got only the other half: 100,000 units on 5,000
	 * machines took 42.6 s to place, 27.1 s at a third. */
	int64_t plan_not_before;
	int64_t last_tick_ns;    /* monotonic time of the previous tick */
	char *last_policy_error;
	char *default_runtime;
	struct punit *uc; /* parsed units by name (see ucache_refresh) */
	size_t nuc;
	bool dead; /* engine_free ran while callbacks were pending: the last one frees */
};

static void engine_destroy(struct engine *e);

/* A log callback finished: free a dead engine once nothing points at it any more. */
static bool engine_gone(struct engine *e)
{
	if (!e->dead)
		return false;
	if (!e->in_flight && !e->barriers)
		engine_destroy(e);
	return true;
}

/* ---- writes ---- */

static void write_done(void *ctx, int err, const struct store_result *res, uint64_t index)
{
	struct engine *e = ctx;

	(void)index;
	e->in_flight--;
	if (engine_gone(e))
		return;
	if (err < 0)
		log_debug("engine: a write did not apply: %s", flt_strerror(err));
	else if (res && res->err_code)
		log_debug("engine: a write was refused by the store (etcd error %d)",
		          res->err_code);
}

static int propose(struct engine *e, enum store_op op, const char *key, const char *value)
{
	struct store_cmd c;
	struct buf enc = BUF_INIT;
	int r;

	memset(&c, 0, sizeof(c));
	c.op = op;
	c.time_ns = flt_realtime_ns();
	c.key = key;
	c.value = value;
	c.value_len = value ? strlen(value) : 0;
	c.prev_exist = -1;
	r = store_cmd_encode(&c, &enc);
	if (r >= 0)
		r = node_propose(e->node, enc.data, enc.len, write_done, e);
	buf_release(&enc);
	if (r >= 0)
		e->in_flight++;
	return r;
}

static int propose_keyf(struct engine *e, enum store_op op, const char *value, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int propose_keyf(struct engine *e, enum store_op op, const char *value, const char *fmt, ...)
{
	struct buf key = BUF_INIT;
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = buf_vprintf(&key, fmt, ap);
	va_end(ap);
	if (r >= 0)
		r = propose(e, op, key.data, value);
	buf_release(&key);
	return r;
}

/* ---- liveness ---- */

/* The live table is sorted by id: a heartbeat from one of thousands of machines finds its
 * entry by bisection. *at is where `id` is or would go. */
static struct live *live_find_at(struct engine *e, const char *id, size_t *at)
{
	size_t lo = 0, hi = e->nlive;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(e->live[mid].id, id);

		if (c == 0) {
			*at = mid;
			return &e->live[mid];
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*at = lo;
	return NULL;
}

static struct live *live_find(struct engine *e, const char *id)
{
	size_t at;

	return live_find_at(e, id, &at);
}

static struct live *live_add(struct engine *e, const char *id)
{
	struct live *v;
	char *copy;
	size_t at;

	if ((v = live_find_at(e, id, &at)))
		return v;
	copy = strdup(id);
	v = copy ? realloc(e->live, (e->nlive + 1) * sizeof(*v)) : NULL;
	if (!v) {
		free(copy);
		return NULL;
	}
	e->live = v;
	memmove(&v[at + 1], &v[at], (e->nlive - at) * sizeof(*v));
	memset(&v[at], 0, sizeof(*v));
	v[at].id = copy;
	e->nlive++;
	return &v[at];
}

static void live_clear(struct engine *e)
{
	for (size_t i = 0; i < e->nlive; i++) {
		free(e->live[i].id);
		free(e->live[i].written);
	}
	free(e->live);
	e->live = NULL;
	e->nlive = 0;
}

static void grace_one(void *ctx, const char *name, const char *value, size_t len, uint64_t modified)
{
	struct engine *e = ctx;
	json_t *v = value ? json_loadb(value, len, 0, NULL) : NULL;
	struct live *l = v ? live_add(e, name) : NULL;

	(void)modified;
	if (l) {
		l->seen_ns = flt_monotime_ns();
		l->written = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
	}
	json_decref(v);
}

/* Leadership gained: every machine in the registry starts with a full TTL. */
static void became_leader(struct engine *e)
{
	live_clear(e);
	store_children(e->store, MODEL_MACHINES, grace_one, e);
	log_info("engine: leading; %zu machines registered, each given %u ms to report", e->nlive,
	         e->cfg.machine_ttl_ms);
	e->dirty = true;
	e->next_plan_ns = 0;
	e->plan_not_before = 0;
}

static bool valid_machine_id(const char *id)
{
	size_t n = strlen(id);

	if (n == 0 || n > 64)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'z') ||
		      (id[i] >= 'A' && id[i] <= 'Z')))
			return false;
	return true;
}

int engine_heartbeat(struct engine *e, const char *body, size_t len, const char **why)
{
	json_t *m;
	const char *id;
	struct live *l;
	char *canon;
	int r = 0;

	*why = NULL;
	if (!e->leading || !e->synced)
		return FLT_ENOTLEADER;
	m = json_loadb(body, len, 0, NULL);
	id = json_string_value(json_object_get(m, "id"));
	if (!json_is_object(m) || !id || !valid_machine_id(id) ||
	    !json_is_string(json_object_get(m, "publicIP")) ||
	    (json_object_get(m, "metadata") && !json_is_object(json_object_get(m, "metadata")))) {
		json_decref(m);
		*why =
		    "a heartbeat is a JSON object with a machine \"id\" (1-64 letters and digits), "
		    "a \"publicIP\" and an optional \"metadata\" object";
		return FLT_EINVAL;
	}
	l = live_find(e, id);
	if (!l && !(l = live_add(e, id))) {
		json_decref(m);
		return -ENOMEM;
	}
	l->seen_ns = flt_monotime_ns();
	canon = json_dumps(m, JSON_COMPACT | JSON_SORT_KEYS);
	if (!canon) {
		r = -ENOMEM;
	} else if (!l->written || strcmp(canon, l->written)) {
		r = propose_keyf(e, STORE_OP_PUT, canon, MODEL_MACHINES "/%s", id);
		if (r >= 0) {
			log_info("engine: machine '%s' (%s) %s", id,
			         json_string_value(json_object_get(m, "publicIP")),
			         l->written ? "changed" : "is up");
			free(l->written);
			l->written = canon;
			canon = NULL;
		}
	}
	free(canon);
	json_decref(m);
	return r;
}

/* The states of dead machines: one pass over the states directory, however many died. */
struct reap {
	struct engine *e;
	char **dead; /* sorted ids */
	size_t ndead;
	const char *unit;
};

static int str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void reap_state(void *ctx, const char *name, const char *value, size_t len,
                       uint64_t modified)
{
	struct reap *r = ctx;

	(void)value;
	(void)len;
	(void)modified;
	if (bsearch(&name, r->dead, r->ndead, sizeof(*r->dead), str_cmp))
		propose_keyf(r->e, STORE_OP_DELETE, NULL, MODEL_STATES "/%s/%s", r->unit, name);
}

static void reap_unit(void *ctx, const char *name, const char *value, size_t len, uint64_t modified)
{
	struct reap *r = ctx;
	struct buf dir = BUF_INIT;

	(void)len;
	(void)modified;
	if (value || buf_printf(&dir, MODEL_STATES "/%s", name) < 0)
		return;
	r->unit = name;
	store_children(r->e->store, dir.data, reap_state, r);
	buf_release(&dir);
}

/* A dead machine's record goes, and with it the states its agent reported (nobody else
 * would ever remove them). */
static void reap_dead(struct engine *e)
{
	int64_t now = flt_monotime_ns(), ttl = (int64_t)e->cfg.machine_ttl_ms * 1000000;
	struct reap r = {.e = e};

	for (size_t i = 0; i < e->nlive;) {
		struct live *l = &e->live[i];
		char **d;

		if (now - l->seen_ns <= ttl) {
			i++;
			continue;
		}
		if (l->written) {
			log_notice("engine: machine '%s' sent no heartbeat for %u ms: dead, its "
			           "units will be placed elsewhere",
			           l->id, e->cfg.machine_ttl_ms);
			propose_keyf(e, STORE_OP_DELETE, NULL, MODEL_MACHINES "/%s", l->id);
			if ((d = realloc(r.dead, (r.ndead + 1) * sizeof(*d)))) {
				r.dead = d;
				r.dead[r.ndead++] = l->id;
				l->id = NULL;
			}
		}
		free(l->id);
		free(l->written);
		e->nlive--;
		memmove(&e->live[i], &e->live[i + 1], (e->nlive - i) * sizeof(*e->live));
	}
	if (!r.ndead)
		return;
	qsort(r.dead, r.ndead, sizeof(*r.dead), str_cmp);
	store_children(e->store, MODEL_STATES, reap_unit, &r);
	for (size_t i = 0; i < r.ndead; i++)
		free(r.dead[i]);
	free(r.dead);
}

/* ---- placement ---- */

struct sentry {
	char *name; /* last key component; owned */
	char *raw;  /* the value as stored; owned */
	json_t *v;  /* parsed; NULL for a placement in the engine's own form (mid is set) */
	char *mid;  /* the machine of a placement {"machineID":"..."}; owned, or NULL */
};

/* The machine of a placement as the engine writes it, without a JSON parser (a plan reads
 * 100,000 of them): malloc'd, or NULL when `raw` is anything else. */
static char *placement_machine(const char *raw, size_t len)
{
	static const char pre[] = "{\"machineID\":\"";
	size_t pl = sizeof(pre) - 1;

	if (len < pl + 2 || memcmp(raw, pre, pl) || memcmp(raw + len - 2, "\"}", 2) ||
	    memchr(raw + pl, '"', len - pl - 2) || memchr(raw + pl, '\\', len - pl - 2))
		return NULL;
	return strndup(raw + pl, len - pl - 2);
}

static int sentry_cmp(const void *a, const void *b)
{
	return strcmp(((const struct sentry *)a)->name, ((const struct sentry *)b)->name);
}

/* Room for element n of a growing array v of *cap elements: v itself or a larger copy, NULL
 * when out of memory (v is then still valid). */
static void *room_for_one(void *v, size_t n, size_t *cap, size_t size)
{
	size_t ncap;

	if (n < *cap)
		return v;
	ncap = *cap ? 2 * *cap : 64;
	if ((v = realloc(v, ncap * size)))
		*cap = ncap;
	return v;
}

struct kids {
	struct sentry *v;
	size_t n, cap;
	bool oom;
};

static void kid_cb(void *ctx, const char *name, const char *value, size_t len, uint64_t modified)
{
	struct kids *k = ctx;
	struct sentry *s;

	(void)modified;
	if (!value || k->oom)
		return;
	if (!(s = room_for_one(k->v, k->n, &k->cap, sizeof(*s)))) {
		k->oom = true;
		return;
	}
	k->v = s;
	s = &k->v[k->n];
	s->name = strdup(name);
	s->raw = strndup(value, len);
	s->mid = s->raw ? placement_machine(s->raw, len) : NULL;
	s->v = s->raw && !s->mid ? json_loadb(s->raw, len, 0, NULL) : NULL;
	if (!s->name || !s->raw) {
		free(s->name);
		free(s->raw);
		free(s->mid);
		json_decref(s->v);
		k->oom = true;
		return;
	}
	k->n++;
}

/* The values directly under `dir`, read from the store without a JSON round trip, parsed, in
 * name order (the store keeps children sorted, so child_find can bisect). */
static size_t children(struct engine *e, const char *dir, struct sentry **ret)
{
	struct kids k = {0};

	store_children(e->store, dir, kid_cb, &k);
	if (k.oom)
		log_warn("engine: out of memory reading %s", dir);
	*ret = k.v;
	return k.n;
}

static void children_free(struct sentry *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].name);
		free(v[i].raw);
		free(v[i].mid);
		json_decref(v[i].v);
	}
	free(v);
}

static struct sentry *child_find(struct sentry *v, size_t n, const char *name)
{
	struct sentry key = {.name = (char *)name}; /* only compared */

	return n ? bsearch(&key, v, n, sizeof(*v), sentry_cmp) : NULL;
}

/* A unit as the plan needs it, parsed once per version: the cache keeps it by name with the
 * modified index it was parsed at, so a plan over 100,000 units parses only what changed. */
struct punit {
	char *name;
	uint64_t modified;
	char *desired; /* NULL: the stored value has none (not placed) */
	bool template;
	struct unit_sched us; /* (the unit file itself is not kept: the plan needs only this) */
	bool have_us;
	char *invalid; /* why the options do not parse, or NULL */
};

static void punit_release(struct punit *p)
{
	free(p->name);
	free(p->desired);
	if (p->have_us)
		unit_sched_release(&p->us);
	free(p->invalid);
}

static int punit_parse(struct punit *p, const char *name, const char *value, size_t len,
                       uint64_t modified)
{
	json_t *v = json_loadb(value, len, 0, NULL);
	const char *desired = json_string_value(json_object_get(v, "desiredState"));
	struct buf err = BUF_INIT;

	memset(p, 0, sizeof(*p));
	p->name = strdup(name);
	p->modified = modified;
	p->template = unit_name_is_template(name);
	p->desired = desired ? strdup(desired) : NULL;
	if (desired && !p->template) {
		struct unit_file uf = UNIT_FILE_INIT;

		if (unit_from_json(json_object_get(v, "options"), &uf, &err) == 0 &&
		    unit_sched_parse(&uf, name, &p->us, &err) == 0)
			p->have_us = true;
		else
			p->invalid = strdup(err.data ? err.data : "");
		unit_file_release(&uf);
	}
	buf_release(&err);
	json_decref(v);
	if (!p->name || (desired && !p->desired) ||
	    (desired && !p->template && !p->have_us && !p->invalid)) {
		punit_release(p);
		return -ENOMEM;
	}
	return 0;
}

struct ucache_fill {
	struct punit *old, *v; /* the previous cache (sorted by name) and the new one */
	size_t nold, at, n, cap;
	bool oom;
};

static void ucache_cb(void *ctx, const char *name, const char *value, size_t len, uint64_t modified)
{
	struct ucache_fill *f = ctx;
	struct punit *p;

	if (!value || f->oom)
		return;
	if (!(p = room_for_one(f->v, f->n, &f->cap, sizeof(*p)))) {
		f->oom = true;
		return;
	}
	f->v = p;
	p = &f->v[f->n];
	/* both lists are in name order: the old one is walked along */
	while (f->at < f->nold && strcmp(f->old[f->at].name, name) < 0)
		punit_release(&f->old[f->at++]);
	if (f->at < f->nold && !strcmp(f->old[f->at].name, name) &&
	    f->old[f->at].modified == modified) {
		*p = f->old[f->at++];
	} else if (punit_parse(p, name, value, len, modified) < 0) {
		f->oom = true;
		return;
	}
	f->n++;
}

/* Brings the cache up to date with the units directory. */
static void ucache_refresh(struct engine *e)
{
	struct ucache_fill f = {.old = e->uc, .nold = e->nuc};

	store_children(e->store, MODEL_UNITS, ucache_cb, &f);
	while (f.at < f.nold)
		punit_release(&f.old[f.at++]);
	free(f.old);
	e->uc = f.v;
	e->nuc = f.n;
	if (f.oom) {
		/* start over next time rather than plan on a partial list */
		for (size_t i = 0; i < e->nuc; i++)
			punit_release(&e->uc[i]);
		free(e->uc);
		e->uc = NULL;
		e->nuc = 0;
		log_warn("engine: out of memory reading the units");
	}
}

static void log_policy_error(struct engine *e, const char *msg)
{
	if (e->last_policy_error && !strcmp(e->last_policy_error, msg))
		return;
	log_warn("scheduler policy '%s' failed, the built-in default decided: %s",
	         policy_name(e->policy), msg);
	free(e->last_policy_error);
	e->last_policy_error = strdup(msg);
}

static void plan(struct engine *e)
{
	int64_t t0 = flt_monotime_ns(), t_read, t_parse, t_sched;
	struct sentry *ms = NULL, *meta = NULL, *ss = NULL;
	size_t nms = children(e, MODEL_MACHINES, &ms), nmeta = children(e, MODEL_METADATA, &meta);
	size_t nss = children(e, MODEL_SCHEDULE, &ss), nus;
	struct sched_machine *m = calloc(nms + 1, sizeof(*m));
	struct sched_kv **kvs = calloc(nms + 1, sizeof(*kvs));
	const char ***rts = calloc(nms + 1, sizeof(*rts));
	struct sched_unit *u;
	struct punit *pu;
	const char **bad;
	size_t nbad = 0;
	struct sched_plan pl = SCHED_PLAN_INIT;
	size_t nm = 0, nu = 0;

	ucache_refresh(e);
	nus = e->nuc;
	pu = e->uc;
	u = calloc(nus + 1, sizeof(*u));
	bad = calloc(nus + 1, sizeof(*bad)); /* units left out: their key stays */
	t_read = flt_monotime_ns();
	if (!m || !kvs || !rts || !u || !bad)
		goto out;
	for (size_t i = 0; i < nms; i++) {
		json_t *v = ms[i].v, *md = json_deep_copy(json_object_get(v, "metadata")), *x, *rt;
		struct sentry *over = child_find(meta, nmeta, ms[i].name);
		const char *k;
		size_t n = 0, j;

		if (!json_is_object(v))
			continue;
		if (!md)
			md = json_object();
		if (over && json_is_object(over->v))
			json_object_foreach(over->v, k, x)
			{
				if (json_is_string(x))
					json_object_set(md, k, x);
				else
					json_object_del(md, k);
			}
		/* keep the merged object alive with the machine's JSON */
		json_object_set_new(v, "_merged", md);
		kvs[nm] = calloc(json_object_size(md) + 1, sizeof(**kvs));
		rt = json_object_get(v, "runtimes");
		rts[nm] = calloc(json_array_size(rt) + 1, sizeof(**rts));
		if (!kvs[nm] || !rts[nm])
			goto out;
		json_object_foreach(md, k, x)
		{
			kvs[nm][n].key = k;
			kvs[nm][n].value = json_string_value(x);
			n++;
		}
		m[nm].id = ms[i].name;
		m[nm].public_ip = json_string_value(json_object_get(v, "publicIP"));
		m[nm].metadata = kvs[nm];
		m[nm].n_metadata = n;
		json_array_foreach(rt, j, x) if (json_string_value(x)) rts[nm][m[nm].n_runtimes++] =
		    json_string_value(x);
		m[nm].runtimes = rts[nm];
		m[nm].memory = (uint64_t)json_integer_value(json_object_get(v, "memory"));
		m[nm].cpus_milli = (uint32_t)json_integer_value(json_object_get(v, "cpus"));
		nm++;
	}
	for (size_t i = 0; i < nus; i++) {
		const char *desired = pu[i].desired;
		struct sentry *cur = child_find(ss, nss, pu[i].name);

		if (!desired || pu[i].template)
			continue;
		if (pu[i].invalid && strcmp(desired, "inactive")) {
			/* The API validates what it stores, so this is a unit from an older
			 * version: never place it without its constraints. */
			struct buf why = BUF_INIT;
			json_t *want;
			char *ws;

			buf_printf(&why, "the unit's options are invalid: %s", pu[i].invalid);
			want = json_pack("{s:s}", "reason", why.data ? why.data : "");
			ws = want ? json_dumps(want, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
			if (ws && (!cur || strcmp(cur->raw, ws)))
				propose_keyf(e, STORE_OP_PUT, ws, MODEL_SCHEDULE "/%s", pu[i].name);
			free(ws);
			json_decref(want);
			buf_release(&why);
			bad[nbad++] = pu[i].name;
			continue;
		}
		u[nu].name = pu[i].name;
		u[nu].opts = pu[i].have_us ? &pu[i].us : NULL;
		u[nu].runtime =
		    pu[i].have_us && pu[i].us.runtime ? pu[i].us.runtime : e->default_runtime;
		u[nu].desired = strcmp(desired, "inactive") != 0;
		u[nu].current = !cur ? NULL
		                : cur->mid
		                    ? cur->mid
		                    : json_string_value(json_object_get(cur->v, "machineID"));
		nu++;
	}
	t_parse = flt_monotime_ns();
	if (sched_plan_build_until(m, nm, u, nu, e->policy, flt_monotime_ns() + PLAN_BUDGET_NS,
	                           &pl) < 0) {
		log_warn("engine: cannot build a plan");
		goto out;
	}
	t_sched = flt_monotime_ns();
	if (pl.policy_error)
		log_policy_error(e, pl.policy_error);
	for (size_t i = 0; i < nu; i++) {
		struct sched_result *r = &pl.v[i];
		struct sentry *cur = child_find(ss, nss, u[i].name);
		json_t *want = NULL;
		char *ws = NULL;

		if (r->status == SCHED_DEFERRED) {
			e->dirty = true; /* the next plan goes on from here */
			continue;
		}
		if (r->policy_error)
			log_policy_error(e, r->policy_error);
		if (r->status == SCHED_PLACED && cur && cur->mid &&
		    !strcmp(cur->mid, r->machine_id))
			continue; /* the common case, unchanged: no JSON to build */
		if (r->status == SCHED_PLACED)
			want = json_pack("{s:s}", "machineID", r->machine_id);
		else if (r->status == SCHED_BLOCKED)
			want = json_pack("{s:s}", "reason", r->reason ? r->reason : "");
		if (want)
			ws = json_dumps(want, JSON_COMPACT | JSON_SORT_KEYS);
		json_decref(want);
		if (ws && (!cur || strcmp(cur->raw, ws))) {
			if (r->status == SCHED_PLACED)
				log_info("engine: '%s' placed on '%s'", u[i].name, r->machine_id);
			else if (!cur || !json_object_get(cur->v, "reason"))
				log_info("engine: '%s' cannot be placed: %s", u[i].name, ws);
			propose_keyf(e, STORE_OP_PUT, ws, MODEL_SCHEDULE "/%s", u[i].name);
		} else if (!ws && cur) {
			propose_keyf(e, STORE_OP_DELETE, NULL, MODEL_SCHEDULE "/%s", u[i].name);
		}
		free(ws);
	}
	/* Placements of units that are gone. The schedule, the units kept (u) and those left
	 * out (bad) are all in name order (they come from sorted directories): one merge pass. */
	for (size_t i = 0, ku = 0, kb = 0; i < nss; i++) {
		while (ku < nu && strcmp(u[ku].name, ss[i].name) < 0)
			ku++;
		while (kb < nbad && strcmp(bad[kb], ss[i].name) < 0)
			kb++;
		if ((ku < nu && !strcmp(u[ku].name, ss[i].name)) ||
		    (kb < nbad && !strcmp(bad[kb], ss[i].name)))
			continue;
		propose_keyf(e, STORE_OP_DELETE, NULL, MODEL_SCHEDULE "/%s", ss[i].name);
	}
	{
		int64_t t_end = flt_monotime_ns();

		log_debug("engine: plan of %zu units on %zu machines: %lld ms (read %lld, parse "
		          "%lld, schedule %lld, write %lld), %u writes",
		          nu, nm, (long long)(t_end - t0) / 1000000,
		          (long long)(t_read - t0) / 1000000,
		          (long long)(t_parse - t_read) / 1000000,
		          (long long)(t_sched - t_parse) / 1000000,
		          (long long)(t_end - t_sched) / 1000000, e->in_flight);
	}
out:
	sched_plan_release(&pl);
	for (size_t i = 0; i < nms; i++) {
		if (kvs)
			free(kvs[i]);
		if (rts)
			free(rts[i]);
	}
	free(kvs);
	free(rts);
	free(m);
	free(u);
	free(bad);
	children_free(ms, nms);
	children_free(meta, nmeta);
	children_free(ss, nss);
}

struct barrier {
	struct engine *e;
	unsigned gen;
};

static void barrier_done(void *ctx, int err, const struct store_result *res, uint64_t index)
{
	struct barrier *b = ctx;
	struct engine *e = b->e;

	(void)res;
	(void)index;
	e->barriers--;
	if (engine_gone(e)) {
		free(b);
		return;
	}
	if (b->gen == e->term_gen) {
		e->barrier_pending = false;
		if (err == 0 && e->leading) {
			became_leader(e);
			e->synced = true;
		}
	}
	free(b);
}

static const char *const input_dirs[IN_N] = {MODEL_UNITS, MODEL_MACHINES, MODEL_METADATA,
                                             MODEL_SCHEDULE};

/* Updates the fingerprint of input directory i; true if it changed. O(1): it runs on every
 * tick the store moved (walking 100,000 units and as many placements ten times a second was a
 * tenth of the leader's time while units poured in). */
static bool restamp(struct engine *e, size_t i)
{
	uint64_t max = 0;
	long n = store_dir_stamp(e->store, input_dirs[i], &max);

	if (n == e->stamp[i].n && max == e->stamp[i].max)
		return false;
	e->stamp[i].n = n;
	e->stamp[i].max = max;
	return true;
}

static void maybe_plan(struct engine *e, int64_t now)
{
	int64_t t0, took;

	if (e->absorb_schedule) {
		restamp(e, IN_SCHEDULE);
		e->absorb_schedule = false;
	}
	if (store_index(e->store) != e->checked_index) {
		e->checked_index = store_index(e->store);
		for (size_t i = 0; i < IN_N; i++)
			e->dirty |= restamp(e, i);
	}
	if ((!e->dirty && now < e->next_plan_ns) || now < e->plan_not_before)
		return;
	e->dirty = false;
	t0 = flt_monotime_ns();
	plan(e);
	now = flt_monotime_ns();
	took = now - t0;
	e->next_plan_ns = now + (int64_t)e->cfg.reconcile_ms * 1000000;
	e->plan_not_before = now + 2 * took;
	e->absorb_schedule = e->in_flight > 0;
	if (took > 1000000000)
		log_info("engine: a plan took %lld ms", (long long)(took / 1000000));
}

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct engine *e = container_of(w, struct engine, tick);
	bool lead = node_is_leader(e->node);
	int64_t now = flt_monotime_ns();

	(void)loop;
	(void)revents;
	/* A loop that stalled (a slow disk under fdatasync, a stopped process) heard no
	 * heartbeats meanwhile: the stall is the leader's, not the machines', so it does not
	 * count against their TTL. */
	if (e->last_tick_ns && now - e->last_tick_ns > STALL_NS) {
		int64_t lost = now - e->last_tick_ns - (int64_t)(TICK_S * 1e9);

		for (size_t i = 0; i < e->nlive; i++)
			e->live[i].seen_ns += lost;
		log_info("engine: the loop stalled for %lld ms; machines' TTLs extended by as much",
		         (long long)(lost / 1000000));
	}
	e->last_tick_ns = now;
	if (lead != e->leading) {
		e->leading = lead;
		e->synced = false;
		e->barrier_pending = false;
		e->term_gen++;
		live_clear(e);
	}
	if (lead && !e->synced && !e->barrier_pending) {
		struct barrier *b = malloc(sizeof(*b));

		if (b) {
			b->e = e;
			b->gen = e->term_gen;
			if (node_read_barrier(e->node, barrier_done, b) == 0) {
				e->barrier_pending = true;
				e->barriers++;
			} else {
				free(b);
			}
		}
	}
	if (!lead || !e->synced || e->in_flight)
		return;
	reap_dead(e);
	if (e->in_flight)
		return;
	maybe_plan(e, now);
}

int engine_new(struct ev_loop *loop, struct store *store, struct node *node,
               const struct engine_config *cfg, struct engine **ret)
{
	struct engine *e = calloc(1, sizeof(*e));

	if (!e)
		return -ENOMEM;
	e->loop = loop;
	e->store = store;
	e->node = node;
	e->cfg = *cfg;
	if (!e->cfg.reconcile_ms)
		e->cfg.reconcile_ms = 30000;
	if (!e->cfg.machine_ttl_ms)
		e->cfg.machine_ttl_ms = 3000;
	e->policy_path = cfg->policy_path ? strdup(cfg->policy_path) : NULL;
	e->default_runtime = strdup(cfg->default_runtime ? cfg->default_runtime : "exec");
	e->cfg.policy_path = e->cfg.default_runtime = NULL;
	if (policy_new(NULL, &e->policy) < 0 || !e->default_runtime) {
		engine_free(e);
		return -ENOMEM;
	}
	engine_reload_policy(e);
	ev_timer_init(&e->tick, on_tick, TICK_S, TICK_S);
	ev_timer_start(loop, &e->tick);
	*ret = e;
	return 0;
}

void engine_free(struct engine *e)
{
	if (!e)
		return;
	ev_timer_stop(e->loop, &e->tick);
	/* Proposals and a read barrier still pending call back later (node_free fails them). */
	e->dead = true;
	if (e->in_flight || e->barriers)
		return;
	engine_destroy(e);
}

static void engine_destroy(struct engine *e)
{
	live_clear(e);
	for (size_t i = 0; i < e->nuc; i++)
		punit_release(&e->uc[i]);
	free(e->uc);
	policy_free(e->policy);
	free(e->policy_path);
	free(e->last_policy_error);
	free(e->default_runtime);
	free(e);
}

void engine_reload_policy(struct engine *e)
{
	struct buf err = BUF_INIT;
	int r;

	if (!e->policy_path)
		return;
	r = policy_load(e->policy, e->policy_path, &err);
	if (r < 0)
		log_error("cannot load scheduler policy '%s' (%s is used): %s", e->policy_path,
		          policy_name(e->policy), err.data ? err.data : flt_strerror(r));
	else
		log_info("scheduler policy '%s' loaded", e->policy_path);
	e->dirty = true; /* the new policy decides now, not at the next change */
	free(e->last_policy_error);
	e->last_policy_error = NULL;
	buf_release(&err);
}
