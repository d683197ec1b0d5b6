/* The engine (see engine.h). Liveness: the leader notes when each machine last sent a heartbeat;
 * the log sees a write only when a machine's record changes or it is declared dead, so thousands
 * of idle machines cost the log nothing. A new leader gives every registered machine a full TTL
 * of grace (fleet's issue 1289: a leader change must not make live machines look dead).
 * Placement: the units, machines and current schedule are read from the local store (the leader
 * has applied everything it committed), the scheduler (sched.c: C constraints, then the Lua
 * policy) decides, and only differences are proposed. One batch is in flight at a time. */
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

#define TICK_S 0.1

struct live {
	char *id;
	int64_t seen_ns; /* monotonic */
	char *written;   /* canonical JSON of the record in the store (NULL: none) */
};

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
	uint64_t planned_index; /* store index of the last plan */
	int64_t next_plan_ns;
	char *last_policy_error;
	char *default_runtime;
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

/* ---- reading the store ---- */

/* The JSON of a directory (recursive), as jansson, or NULL if absent. */
static json_t *read_dir(struct engine *e, const char *key)
{
	struct store_result *res = NULL;
	json_t *root = NULL;

	if (store_get(e->store, key, true, true, flt_realtime_ns(), &res) == 0 && !res->err_code)
		root = json_loadb(res->json.data, res->json.len, 0, NULL);
	store_result_free(res);
	return root;
}

/* Calls fn(ctx, last key component, parsed value) for every key directly under `dir`. */
static void each_child(json_t *dir, void (*fn)(void *ctx, const char *name, json_t *v), void *ctx)
{
	json_t *nodes = json_object_get(json_object_get(dir, "node"), "nodes"), *n;
	size_t i;

	json_array_foreach(nodes, i, n)
	{
		const char *key = json_string_value(json_object_get(n, "key"));
		const char *val = json_string_value(json_object_get(n, "value"));
		const char *slash = key ? strrchr(key, '/') : NULL;
		json_t *v;

		if (!slash || !val)
			continue;
		v = json_loads(val, 0, NULL);
		if (v)
			fn(ctx, slash + 1, v);
		json_decref(v);
	}
}

/* ---- liveness ---- */

static struct live *live_find(struct engine *e, const char *id)
{
	for (size_t i = 0; i < e->nlive; i++)
		if (!strcmp(e->live[i].id, id))
			return &e->live[i];
	return NULL;
}

static struct live *live_add(struct engine *e, const char *id)
{
	struct live *v = realloc(e->live, (e->nlive + 1) * sizeof(*v));

	if (!v)
		return NULL;
	e->live = v;
	v = &e->live[e->nlive];
	memset(v, 0, sizeof(*v));
	if (!(v->id = strdup(id)))
		return NULL;
	e->nlive++;
	return v;
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

static void grace_one(void *ctx, const char *name, json_t *v)
{
	struct engine *e = ctx;
	struct live *l = live_add(e, name);

	if (l) {
		l->seen_ns = flt_monotime_ns();
		l->written = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
	}
}

/* Leadership gained: every machine in the registry starts with a full TTL. */
static void became_leader(struct engine *e)
{
	json_t *m = read_dir(e, MODEL_MACHINES);

	live_clear(e);
	each_child(m, grace_one, e);
	json_decref(m);
	log_info("engine: leading; %zu machines registered, each given %u ms to report", e->nlive,
	         e->cfg.machine_ttl_ms);
	e->planned_index = 0;
	e->next_plan_ns = 0;
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

/* A dead machine's record goes, and with it the states its agent reported (nobody else
 * would ever remove them). */
static void reap_dead(struct engine *e)
{
	int64_t now = flt_monotime_ns(), ttl = (int64_t)e->cfg.machine_ttl_ms * 1000000;

	for (size_t i = 0; i < e->nlive;) {
		struct live *l = &e->live[i];

		if (now - l->seen_ns <= ttl) {
			i++;
			continue;
		}
		if (l->written) {
			json_t *states = read_dir(e, MODEL_STATES);
			json_t *nodes = json_object_get(json_object_get(states, "node"), "nodes"),
			       *u;
			size_t k;

			log_notice(
			    "engine: machine '%s' sent no heartbeat for %u ms: dead, its units "
			    "will be placed elsewhere",
			    l->id, e->cfg.machine_ttl_ms);
			propose_keyf(e, STORE_OP_DELETE, NULL, MODEL_MACHINES "/%s", l->id);
			json_array_foreach(nodes, k, u)
			{
				const char *key = json_string_value(json_object_get(u, "key"));
				json_t *per = json_object_get(u, "nodes"), *s;
				size_t j;

				json_array_foreach(per, j, s)
				{
					const char *sk =
					    json_string_value(json_object_get(s, "key"));
					const char *slash = sk ? strrchr(sk, '/') : NULL;

					if (key && slash && !strcmp(slash + 1, l->id))
						propose(e, STORE_OP_DELETE, sk, NULL);
				}
			}
			json_decref(states);
		}
		free(l->id);
		free(l->written);
		e->live[i] = e->live[--e->nlive];
	}
}

/* ---- placement ---- */

struct sentry {
	const char *name;
	const char *raw; /* the schedule value as stored */
	json_t *v;       /* parsed */
};

static int sentry_cmp(const void *a, const void *b)
{
	return strcmp(((const struct sentry *)a)->name, ((const struct sentry *)b)->name);
}

/* The children of a directory as (name, raw value) pairs, sorted by name. */
static size_t children(json_t *dir, struct sentry **ret)
{
	json_t *nodes = json_object_get(json_object_get(dir, "node"), "nodes"), *n;
	struct sentry *v = calloc(json_array_size(nodes) + 1, sizeof(*v));
	size_t i, k = 0;

	*ret = v;
	if (!v)
		return 0;
	json_array_foreach(nodes, i, n)
	{
		const char *key = json_string_value(json_object_get(n, "key"));
		const char *val = json_string_value(json_object_get(n, "value"));
		const char *slash = key ? strrchr(key, '/') : NULL;

		if (!slash || !val)
			continue;
		v[k].name = slash + 1;
		v[k].raw = val;
		v[k].v = json_loads(val, 0, NULL);
		k++;
	}
	qsort(v, k, sizeof(*v), sentry_cmp);
	return k;
}

static void children_free(struct sentry *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		json_decref(v[i].v);
	free(v);
}

static struct sentry *child_find(struct sentry *v, size_t n, const char *name)
{
	struct sentry key = {.name = name};

	return n ? bsearch(&key, v, n, sizeof(*v), sentry_cmp) : NULL;
}

struct punit {
	struct unit_file uf;
	struct unit_sched us;
	bool have_us;
};

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
	json_t *jm = read_dir(e, MODEL_MACHINES), *jmeta = read_dir(e, MODEL_METADATA);
	json_t *ju = read_dir(e, MODEL_UNITS), *js = read_dir(e, MODEL_SCHEDULE);
	struct sentry *ms = NULL, *meta = NULL, *us = NULL, *ss = NULL;
	size_t nms = children(jm, &ms), nmeta = children(jmeta, &meta);
	size_t nus = children(ju, &us), nss = children(js, &ss);
	struct sched_machine *m = calloc(nms + 1, sizeof(*m));
	struct sched_kv **kvs = calloc(nms + 1, sizeof(*kvs));
	const char ***rts = calloc(nms + 1, sizeof(*rts));
	struct sched_unit *u = calloc(nus + 1, sizeof(*u));
	struct punit *pu = calloc(nus + 1, sizeof(*pu));
	const char **bad = calloc(nus + 1, sizeof(*bad)); /* units left out: their key stays */
	size_t nbad = 0;
	struct sched_plan pl = SCHED_PLAN_INIT;
	size_t nm = 0, nu = 0;
	struct buf err = BUF_INIT;

	if (!m || !kvs || !rts || !u || !pu || !bad)
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
		json_t *v = us[i].v;
		const char *desired = json_string_value(json_object_get(v, "desiredState"));
		struct sentry *cur = child_find(ss, nss, us[i].name);

		if (!desired || unit_name_is_template(us[i].name))
			continue;
		buf_clear(&err);
		if (unit_from_json(json_object_get(v, "options"), &pu[nu].uf, &err) == 0 &&
		    unit_sched_parse(&pu[nu].uf, us[i].name, &pu[nu].us, &err) == 0) {
			pu[nu].have_us = true;
		} else if (strcmp(desired, "inactive")) {
			/* The API validates what it stores, so this is a unit from an older
			 * version: never place it without its constraints. */
			struct buf why = BUF_INIT;
			json_t *want;
			char *ws;

			buf_printf(&why, "the unit's options are invalid: %s",
			           err.data ? err.data : "");
			want = json_pack("{s:s}", "reason", why.data ? why.data : "");
			ws = want ? json_dumps(want, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
			if (ws && (!cur || strcmp(cur->raw, ws)))
				propose_keyf(e, STORE_OP_PUT, ws, MODEL_SCHEDULE "/%s", us[i].name);
			free(ws);
			json_decref(want);
			buf_release(&why);
			unit_file_release(&pu[nu].uf);
			bad[nbad++] = us[i].name;
			continue;
		}
		u[nu].name = us[i].name;
		u[nu].opts = pu[nu].have_us ? &pu[nu].us : NULL;
		u[nu].runtime =
		    pu[nu].have_us && pu[nu].us.runtime ? pu[nu].us.runtime : e->default_runtime;
		u[nu].desired = strcmp(desired, "inactive") != 0;
		u[nu].current =
		    cur ? json_string_value(json_object_get(cur->v, "machineID")) : NULL;
		nu++;
	}
	if (sched_plan_build(m, nm, u, nu, e->policy, &pl) < 0) {
		log_warn("engine: cannot build a plan");
		goto out;
	}
	if (pl.policy_error)
		log_policy_error(e, pl.policy_error);
	for (size_t i = 0; i < nu; i++) {
		struct sched_result *r = &pl.v[i];
		struct sentry *cur = child_find(ss, nss, u[i].name);
		json_t *want = NULL;
		char *ws = NULL;

		if (r->policy_error)
			log_policy_error(e, r->policy_error);
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
	/* Placements of units that are gone. */
	for (size_t i = 0; i < nss; i++) {
		bool known = false;

		for (size_t k = 0; k < nu && !known; k++)
			known = !strcmp(u[k].name, ss[i].name);
		for (size_t k = 0; k < nbad && !known; k++)
			known = !strcmp(bad[k], ss[i].name);
		if (!known)
			propose_keyf(e, STORE_OP_DELETE, NULL, MODEL_SCHEDULE "/%s", ss[i].name);
	}
out:
	sched_plan_release(&pl);
	for (size_t i = 0; pu && i < nus; i++) {
		if (pu[i].have_us)
			unit_sched_release(&pu[i].us);
		unit_file_release(&pu[i].uf);
	}
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
	free(pu);
	free(bad);
	buf_release(&err);
	children_free(ms, nms);
	children_free(meta, nmeta);
	children_free(us, nus);
	children_free(ss, nss);
	json_decref(jm);
	json_decref(jmeta);
	json_decref(ju);
	json_decref(js);
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

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct engine *e = container_of(w, struct engine, tick);
	bool lead = node_is_leader(e->node);
	int64_t now = flt_monotime_ns();

	(void)loop;
	(void)revents;
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
	if (store_index(e->store) != e->planned_index || now >= e->next_plan_ns) {
		e->planned_index = store_index(e->store);
		e->next_plan_ns = now + (int64_t)e->cfg.reconcile_ms * 1000000;
		plan(e);
	}
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
		e->cfg.reconcile_ms = 2000;
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
	free(e->last_policy_error);
	e->last_policy_error = NULL;
	buf_release(&err);
}
