/* The scheduling core (see sched.h for the rules): hard constraints as a chain of filters over the
 * machines, the two passes (keep what still holds, then place the rest), Replaces, and the
 * built-in least-loaded default used when there is no Lua policy or it fails. */
#include <errno.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

#include "engine/policy.h"
#include "engine/sched.h"
#include "unit/unit.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/util.h"

/* What is placed on one machine during the plan (globals that apply to it included). */
struct mstate {
	uint32_t *units; /* unit indices, in placement order */
	size_t n, cap;
	uint64_t mem_used;
	uint64_t cpu_used;
	/* the placed units that have Conflicts= or Replaces=: a unit without either can only be
	 * blocked by these, so the common case scans a short list */
	uint32_t *special;
	size_t n_special, cap_special;
	uint32_t n_conflicts; /* how many of them have Conflicts= */
	uint32_t n_replaces;  /* how many of them have Replaces= */
};

struct ctx {
	const struct sched_machine *m;
	size_t nm;
	const struct sched_unit *u;
	size_t nu;
	uint32_t *m_sorted; /* machine indices by id */
	uint32_t *u_sorted; /* unit indices by name */
	struct mstate *ms;
	uint32_t *order; /* non-global desired units, peers before followers */
	size_t n_order;
	uint8_t *dfs;      /* 0 new, 1 on the stack, 2 done */
	uint8_t *in_cycle; /* MachineOf cycle member */
	int32_t *cur;      /* effective current machine, -1 none */
	int32_t *placed;   /* machine chosen in this plan, -1 none */
	uint32_t *cand;    /* scratch: candidate machines */
	uint32_t *rank;    /* machine index -> position in id order (ties without strcmp) */
	/* Runtimes asked for in this plan, and per machine a bit for each it offers: a filter
	 * over thousands of machines tests a bit instead of comparing strings. */
	const char *rt_names[8];
	size_t n_rt;
	uint8_t *rt_mask;
	/* Placed units with Conflicts= / Replaces=: while there are none, a unit without its own
	 * skips those passes over every machine (the common case, and a third of a placement on
	 * 5,000 machines). */
	size_t n_with_conflicts, n_with_replaces;
	int64_t deadline_ns;
	struct policy *pol;
	bool pol_ok;
	struct sched_plan *plan;
	struct buf reason, err, tmp;
};

static const struct unit_sched *opts_of(const struct ctx *c, size_t ui)
{
	return c->u[ui].opts;
}

static bool is_global(const struct ctx *c, size_t ui)
{
	return c->u[ui].opts && c->u[ui].opts->global;
}

/* ---- lookups ---- */

static int cmp_machine(const void *a, const void *b, void *arg)
{
	const struct ctx *c = arg;

	return strcmp(c->m[*(const uint32_t *)a].id, c->m[*(const uint32_t *)b].id);
}

static int cmp_unit(const void *a, const void *b, void *arg)
{
	const struct ctx *c = arg;

	return strcmp(c->u[*(const uint32_t *)a].name, c->u[*(const uint32_t *)b].name);
}

static int32_t find_machine(const struct ctx *c, const char *id)
{
	size_t lo = 0, hi = c->nm;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int r = strcmp(id, c->m[c->m_sorted[mid]].id);

		if (r == 0)
			return (int32_t)c->m_sorted[mid];
		if (r < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return -1;
}

static int32_t find_unit(const struct ctx *c, const char *name)
{
	size_t lo = 0, hi = c->nu;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int r = strcmp(name, c->u[c->u_sorted[mid]].name);

		if (r == 0)
			return (int32_t)c->u_sorted[mid];
		if (r < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return -1;
}

static const char *meta_get(const struct sched_machine *m, const char *key)
{
	for (size_t i = 0; i < m->n_metadata; i++)
		if (m->metadata[i].key && strcmp(m->metadata[i].key, key) == 0)
			return m->metadata[i].value;
	return NULL;
}

static bool has_runtime(const struct sched_machine *m, const char *rt)
{
	for (size_t i = 0; i < m->n_runtimes; i++)
		if (m->runtimes[i] && strcmp(m->runtimes[i], rt) == 0)
			return true;
	return false;
}

/* The bit of runtime `rt` in c->rt_mask, 0 when the table is full (then compare strings). */
static uint8_t rt_bit(struct ctx *c, const char *rt)
{
	size_t i;

	for (i = 0; i < c->n_rt; i++)
		if (!strcmp(c->rt_names[i], rt))
			return (uint8_t)(1u << i);
	if (i == sizeof(c->rt_names) / sizeof(c->rt_names[0]) || !c->rt_mask)
		return 0;
	c->rt_names[c->n_rt++] = rt;
	for (size_t mi = 0; mi < c->nm; mi++)
		if (has_runtime(&c->m[mi], rt))
			c->rt_mask[mi] |= (uint8_t)(1u << i);
	return (uint8_t)(1u << i);
}

static bool glob_any(char *const *pats, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (pats[i] && fnmatch(pats[i], name, 0) == 0)
			return true;
	return false;
}

/* a Conflicts b, either way; a unit never conflicts with itself */
static bool conflicts(const struct ctx *c, size_t a, size_t b)
{
	const struct unit_sched *oa = opts_of(c, a), *ob = opts_of(c, b);

	if (a == b)
		return false;
	return (oa && glob_any(oa->conflicts, oa->n_conflicts, c->u[b].name)) ||
	       (ob && glob_any(ob->conflicts, ob->n_conflicts, c->u[a].name));
}

/* a Replaces b, unless b also replaces a (fleet ignores such pairs) */
static bool replaces(const struct ctx *c, size_t a, size_t b)
{
	const struct unit_sched *oa = opts_of(c, a), *ob = opts_of(c, b);

	if (a == b || !oa || !oa->n_replaces)
		return false;
	if (!glob_any(oa->replaces, oa->n_replaces, c->u[b].name))
		return false;
	return !(ob && glob_any(ob->replaces, ob->n_replaces, c->u[a].name));
}

/* ---- machine predicates ---- */

bool sched_metadata_match(const struct sched_machine *m, const struct unit_sched *o)
{
	if (!o)
		return true;
	for (size_t i = 0; i < o->n_metadata; i++) {
		const char *key = o->metadata[i].key, *val;
		bool seen = false, has_pos = false, pos_ok = false;

		for (size_t j = 0; j < i && !seen; j++)
			seen = strcmp(o->metadata[j].key, key) == 0;
		if (seen)
			continue; /* this key's group was judged at its first term */
		val = meta_get(m, key);
		for (size_t j = i; j < o->n_metadata; j++) {
			const struct unit_meta *t = &o->metadata[j];
			bool eq;

			if (strcmp(t->key, key) != 0)
				continue;
			eq = val && t->value && strcmp(val, t->value) == 0;
			if (t->negate) {
				if (eq)
					return false;
			} else {
				has_pos = true;
				pos_ok = pos_ok || eq;
			}
		}
		if (has_pos && !pos_ok)
			return false;
	}
	return true;
}

static bool id_match(const struct sched_machine *m, const char *want)
{
	size_t n = strlen(want);

	return n > 0 && strncmp(m->id, want, n) == 0;
}

static bool runtime_ok(const struct sched_machine *m, const char *rt, const struct unit_sched *o)
{
	if (rt && !has_runtime(m, rt))
		return false;
	if (o && o->needs_docker && !has_runtime(m, "docker"))
		return false;
	return true;
}

bool sched_global_applies(const struct sched_machine *m, const struct unit_sched *o,
                          const char *runtime)
{
	if (o && o->machine_id && !id_match(m, o->machine_id))
		return false;
	return sched_metadata_match(m, o) && runtime_ok(m, runtime, o);
}

/* ---- reasons ---- */

static void put_bytes(struct buf *b, uint64_t v)
{
	static const char suf[] = "KMGT";
	int i = -1;

	while (i < 3 && v >= 1024 && v % 1024 == 0) {
		v /= 1024;
		i++;
	}
	buf_put_u64(b, v);
	if (i >= 0)
		buf_putc(b, suf[i]);
	else
		buf_putc(b, 'B');
}

static void put_cpus(struct buf *b, uint64_t milli)
{
	buf_put_u64(b, milli / 1000);
	if (milli % 1000) {
		unsigned f = (unsigned)(milli % 1000);
		char d[4] = {(char)('0' + f / 100), (char)('0' + f / 10 % 10), (char)('0' + f % 10),
		             0};

		for (int i = 2; i > 0 && d[i] == '0'; i--)
			d[i] = 0;
		buf_putc(b, '.');
		buf_puts(b, d);
	}
}

/* ---- placing ---- */

static int commit(struct ctx *c, size_t mi, size_t ui)
{
	struct mstate *s = &c->ms[mi];
	const struct unit_sched *o = opts_of(c, ui);

	if (s->n == s->cap) {
		size_t ncap = s->cap ? s->cap * 2 : 8;
		uint32_t *nv = realloc(s->units, ncap * sizeof(*nv));

		if (!nv)
			return -ENOMEM;
		s->units = nv;
		s->cap = ncap;
	}
	s->units[s->n++] = (uint32_t)ui;
	if (o && (o->n_conflicts || o->n_replaces)) {
		if (s->n_special == s->cap_special) {
			size_t ncap = s->cap_special ? s->cap_special * 2 : 4;
			uint32_t *nv = realloc(s->special, ncap * sizeof(*nv));

			if (!nv)
				return -ENOMEM;
			s->special = nv;
			s->cap_special = ncap;
		}
		s->special[s->n_special++] = (uint32_t)ui;
	}
	if (o) {
		s->mem_used += o->memory;
		s->cpu_used += o->cpus_milli;
		s->n_conflicts += o->n_conflicts > 0;
		s->n_replaces += o->n_replaces > 0;
		c->n_with_conflicts += o->n_conflicts > 0;
		c->n_with_replaces += o->n_replaces > 0;
	}
	if (c->pol_ok) {
		buf_clear(&c->err);
		if (policy_plan_commit(c->pol, mi, &c->u[ui], &c->err) < 0) {
			/* Without up-to-date tables the policy would decide on wrong counts. */
			c->pol_ok = false;
			if (!c->plan->policy_error) {
				c->plan->policy_error = strdup(c->err.data ? c->err.data : "error");
				if (!c->plan->policy_error)
					return -ENOMEM;
			}
		}
	}
	if (!is_global(c, ui)) {
		struct sched_result *r = &c->plan->v[ui];

		c->placed[ui] = (int32_t)mi;
		r->status = SCHED_PLACED;
		r->machine_id = c->m[mi].id;
		free(r->reason);
		r->reason = NULL;
	}
	return 0;
}

static bool hosts(const struct ctx *c, size_t mi, size_t ui)
{
	const struct mstate *s = &c->ms[mi];

	for (size_t i = 0; i < s->n; i++)
		if (s->units[i] == ui)
			return true;
	return false;
}

/* Append distinct names of units on `mi` that `pred` says block `ui`, up to a few. */
static void note_blockers(const struct ctx *c, size_t mi, size_t ui,
                          bool (*pred)(const struct ctx *, size_t, size_t), struct buf *names,
                          unsigned *count)
{
	const struct mstate *s = &c->ms[mi];

	for (size_t i = 0; i < s->n && *count < 3; i++) {
		const char *nm = c->u[s->units[i]].name;

		if (!pred(c, ui, s->units[i]))
			continue;
		if (names->data &&
		    strstr(names->data, nm)) /* cheap dedup; a near-miss only drops a name */
			continue;
		if (*count)
			buf_puts(names, ", ");
		buf_puts(names, nm);
		(*count)++;
	}
}

static bool replace_pair(const struct ctx *c, size_t a, size_t b)
{
	return replaces(c, a, b) || replaces(c, b, a);
}

/* Whether a unit on `mi` blocks `ui` by the symmetric relation `pred`. When `ui` itself has no
 * option of the kind (`own` false) only the special units can be involved. */
static bool blocked_by(const struct ctx *c, size_t mi, size_t ui, bool own,
                       bool (*pred)(const struct ctx *, size_t, size_t))
{
	const struct mstate *s = &c->ms[mi];
	const uint32_t *v = own ? s->units : s->special;
	size_t n = own ? s->n : s->n_special;

	for (size_t i = 0; i < n; i++)
		if (pred(c, ui, v[i]))
			return true;
	return false;
}

/* Narrow the candidates in c->cand[0..*n) to the machines that satisfy every hard constraint of
 * unit `ui`, stage by stage. When none is left, the stage that emptied the set writes the reason.
 */
static int filter(struct ctx *c, size_t ui, size_t *n)
{
	const struct sched_unit *u = &c->u[ui];
	const struct unit_sched *o = u->opts;
	uint32_t *v = c->cand;
	size_t k, i;
	struct buf *r = &c->reason;

	buf_clear(r);
	if (*n == 0) {
		buf_puts(r, "no machines available");
		return 0;
	}
#define NARROW(cond)                                                                               \
	do {                                                                                       \
		for (i = k = 0; i < *n; i++) {                                                     \
			size_t mi = v[i];                                                          \
			if (cond)                                                                  \
				v[k++] = (uint32_t)mi;                                             \
		}                                                                                  \
		*n = k;                                                                            \
	} while (0)

	if (o && o->machine_id) {
		NARROW(id_match(&c->m[mi], o->machine_id));
		if (!*n) {
			buf_printf(r, "no machine matches MachineID=%s", o->machine_id);
			return 0;
		}
	}
	if (o && o->n_metadata) {
		NARROW(sched_metadata_match(&c->m[mi], o));
		if (!*n) {
			buf_puts(r, "no machine matches MachineMetadata");
			for (i = 0; i < o->n_metadata; i++)
				buf_printf(r, " %s%s%s", o->metadata[i].key,
				           o->metadata[i].negate ? "!=" : "=",
				           o->metadata[i].value);
			return 0;
		}
	}
	if (u->runtime) {
		uint8_t bit = rt_bit(c, u->runtime);

		if (bit)
			NARROW(c->rt_mask[mi] & bit);
		else
			NARROW(has_runtime(&c->m[mi], u->runtime));
		if (!*n) {
			buf_printf(r, "no machine offers runtime %s", u->runtime);
			return 0;
		}
	}
	if (o && o->needs_docker) {
		uint8_t bit = rt_bit(c, "docker");

		if (bit)
			NARROW(c->rt_mask[mi] & bit);
		else
			NARROW(has_runtime(&c->m[mi], "docker"));
		if (!*n) {
			buf_puts(r, "no machine offers docker (the unit requires docker.service)");
			return 0;
		}
	}
	if (c->n_with_replaces || (o && o->n_replaces)) {
		size_t before = *n;
		unsigned cnt = 0;
		bool own = o && o->n_replaces;

		buf_clear(&c->tmp);
		for (i = k = 0; i < before; i++) {
			size_t mi = v[i];
			const struct mstate *s = &c->ms[mi];

			if ((s->n_replaces || own) && blocked_by(c, mi, ui, own, replace_pair)) {
				note_blockers(c, mi, ui, replace_pair, &c->tmp, &cnt);
				continue;
			}
			v[k++] = (uint32_t)mi;
		}
		*n = k;
		if (!*n) {
			buf_printf(
			    r, "cannot share a machine with %s (Replaces) on any eligible machine",
			    c->tmp.data ? c->tmp.data : "a unit");
			return 0;
		}
	}
	if (c->n_with_conflicts || (o && o->n_conflicts)) {
		size_t before = *n;
		unsigned cnt = 0;
		bool own = o && o->n_conflicts;

		buf_clear(&c->tmp);
		for (i = k = 0; i < before; i++) {
			size_t mi = v[i];
			const struct mstate *s = &c->ms[mi];

			if ((s->n_conflicts || own) && blocked_by(c, mi, ui, own, conflicts)) {
				note_blockers(c, mi, ui, conflicts, &c->tmp, &cnt);
				continue;
			}
			v[k++] = (uint32_t)mi;
		}
		*n = k;
		if (!*n) {
			buf_printf(r, "conflicts with %s on every eligible machine",
			           c->tmp.data ? c->tmp.data : "a unit");
			return 0;
		}
	}
	if (o && o->memory) {
		NARROW(!c->m[mi].memory || (c->ms[mi].mem_used <= c->m[mi].memory &&
		                            c->m[mi].memory - c->ms[mi].mem_used >= o->memory));
		if (!*n) {
			buf_puts(r, "no machine has ");
			put_bytes(r, o->memory);
			buf_puts(r, " memory free");
			return 0;
		}
	}
	if (o && o->cpus_milli) {
		NARROW(!c->m[mi].cpus_milli ||
		       (c->ms[mi].cpu_used <= c->m[mi].cpus_milli &&
		        c->m[mi].cpus_milli - c->ms[mi].cpu_used >= o->cpus_milli));
		if (!*n) {
			buf_puts(r, "no machine has ");
			put_cpus(r, o->cpus_milli);
			buf_puts(r, o->cpus_milli == 1000 ? " CPU free" : " CPUs free");
			return 0;
		}
	}
#undef NARROW
	return 0;
}

/* The MachineOf part: where the peers let the unit go. Returns 1 with c->cand set, 0 with a
 * reason when the peers are not where they should be. Non-followers get every machine. */
static int peer_candidates(struct ctx *c, size_t ui, size_t *n)
{
	const struct unit_sched *o = opts_of(c, ui);
	int32_t at = -1;
	size_t k = 0;

	buf_clear(&c->reason);
	if (!o || !o->n_machine_of) {
		for (size_t i = 0; i < c->nm; i++)
			c->cand[i] = c->m_sorted[i];
		*n = c->nm;
		return 1;
	}
	if (c->in_cycle[ui]) {
		buf_puts(&c->reason, "MachineOf peers form a cycle; it can never be scheduled");
		return 0;
	}
	for (size_t p = 0; p < o->n_machine_of; p++) {
		int32_t pi = find_unit(c, o->machine_of[p]);

		if (pi < 0 || !c->u[pi].desired ||
		    (!is_global(c, (size_t)pi) && c->placed[pi] < 0)) {
			buf_printf(&c->reason, "waiting for MachineOf peer %s to be scheduled",
			           o->machine_of[p]);
			return 0;
		}
		if (is_global(c, (size_t)pi))
			continue;
		if (at >= 0 && at != c->placed[pi]) {
			buf_printf(&c->reason,
			           "MachineOf peers %s and %s are on different machines",
			           o->machine_of[0], o->machine_of[p]);
			return 0;
		}
		at = c->placed[pi];
	}
	for (size_t i = 0; i < c->nm; i++) {
		size_t mi = c->m_sorted[i];
		bool ok = at < 0 || (size_t)at == mi;

		for (size_t p = 0; ok && p < o->n_machine_of; p++) {
			int32_t pi = find_unit(c, o->machine_of[p]);

			if (is_global(c, (size_t)pi))
				ok = hosts(c, mi, (size_t)pi);
		}
		if (ok)
			c->cand[k++] = (uint32_t)mi;
	}
	*n = k;
	if (!k) {
		buf_printf(&c->reason, "no machine runs all MachineOf peers of %s", c->u[ui].name);
		return 0;
	}
	return 1;
}

/* The built-in policy, fleet's least-loaded: fewest units, ties to the lower machine id. */
static size_t default_pick(const struct ctx *c, const uint32_t *cand, size_t n)
{
	size_t best = cand[0];

	for (size_t i = 1; i < n; i++) {
		size_t mi = cand[i];

		if (c->ms[mi].n < c->ms[best].n ||
		    (c->ms[mi].n == c->ms[best].n && c->rank[mi] < c->rank[best]))
			best = mi;
	}
	return best;
}

static int set_reason(struct ctx *c, size_t ui)
{
	struct sched_result *r = &c->plan->v[ui];
	struct buf b = BUF_INIT;

	buf_puts(&b, c->reason.data ? c->reason.data : "cannot be scheduled");
	if (!b.data)
		return -ENOMEM;
	free(r->reason);
	r->status = SCHED_BLOCKED;
	r->machine_id = NULL;
	r->reason = buf_steal(&b);
	return 0;
}

static int place(struct ctx *c, size_t ui)
{
	size_t n, mi;
	int rc;

	if (!peer_candidates(c, ui, &n))
		return set_reason(c, ui);
	filter(c, ui, &n);
	if (!n)
		return set_reason(c, ui);
	mi = c->cand[0];
	if (c->pol_ok) {
		buf_clear(&c->err);
		buf_clear(&c->reason);
		rc = policy_choose(c->pol, &c->u[ui], c->cand, n, &mi, &c->reason, &c->err);
		if (rc == -ENOMEM)
			return rc;
		if (rc == POLICY_DECLINED)
			return set_reason(c, ui);
		if (rc == POLICY_DEFAULT) {
			c->pol_ok = false; /* no file loaded: do not ask again this plan */
			mi = default_pick(c, c->cand, n);
		} else if (rc < 0) {
			free(c->plan->v[ui].policy_error);
			c->plan->v[ui].policy_error = strdup(c->err.data ? c->err.data : "error");
			if (!c->plan->v[ui].policy_error)
				return -ENOMEM;
			mi = default_pick(c, c->cand, n);
		}
	} else if (n > 1) {
		mi = default_pick(c, c->cand, n);
	}
	return commit(c, mi, ui);
}

/* Pass 1: does the unit's current machine still satisfy it? */
static int keep(struct ctx *c, size_t ui)
{
	int32_t cur = c->cur[ui];
	size_t n;

	if (cur < 0)
		return 0;
	if (!opts_of(c, ui) || !opts_of(c, ui)->n_machine_of) {
		c->cand[0] = (uint32_t)cur;
		n = 1;
		filter(c, ui, &n);
		return n ? commit(c, (size_t)cur, ui) : 0;
	}
	if (!peer_candidates(c, ui, &n))
		return 0;
	/* peer_candidates gives machines in id order: keep only the current one */
	for (size_t i = 0; i < n; i++)
		if (c->cand[i] == (uint32_t)cur) {
			c->cand[0] = (uint32_t)cur;
			n = 1;
			filter(c, ui, &n);
			return n ? commit(c, (size_t)cur, ui) : 0;
		}
	return 0;
}

/* Depth-first: peers before followers. Cycle members are marked; they never place. */
static void visit(struct ctx *c, size_t ui, uint32_t *stack, size_t depth)
{
	const struct unit_sched *o = opts_of(c, ui);

	if (c->dfs[ui] == 2)
		return;
	c->dfs[ui] = 1;
	stack[depth] = (uint32_t)ui;
	for (size_t p = 0; o && p < o->n_machine_of; p++) {
		int32_t pi = find_unit(c, o->machine_of[p]);

		if (pi < 0 || is_global(c, (size_t)pi) || !c->u[pi].desired)
			continue;
		if (c->dfs[pi] == 1) {
			for (size_t d = depth + 1; d-- > 0;) {
				c->in_cycle[stack[d]] = 1;
				if (stack[d] == (uint32_t)pi)
					break;
			}
			continue;
		}
		visit(c, (size_t)pi, stack, depth + 1);
	}
	c->dfs[ui] = 2;
	c->order[c->n_order++] = (uint32_t)ui;
}

/* Replaces, decided up front on the current placements (see sched.h). */
static void replace_prepass(struct ctx *c)
{
	for (size_t k = 0; k < c->n_order; k++) {
		size_t a = c->order[k];
		const struct unit_sched *o = opts_of(c, a);
		int32_t at = c->cur[a];

		if (!o || !o->n_replaces)
			continue;
		if (at < 0 && !o->n_machine_of) {
			/* no place yet: take the machine of the first running unit it replaces */
			for (size_t j = 0; j < c->nu && at < 0; j++) {
				size_t b = c->u_sorted[j];
				int32_t bm = c->cur[b];

				if (bm < 0 || !c->u[b].desired || is_global(c, b) ||
				    !replaces(c, a, b))
					continue;
				if (o->machine_id && !id_match(&c->m[bm], o->machine_id))
					continue;
				if (!sched_metadata_match(&c->m[bm], o) ||
				    !runtime_ok(&c->m[bm], c->u[a].runtime, o))
					continue;
				at = c->cur[a] = bm;
			}
		}
		if (at < 0)
			continue;
		for (size_t b = 0; b < c->nu; b++)
			if (c->cur[b] == at && replaces(c, a, b) && !is_global(c, b))
				c->cur[b] = -1;
	}
}

static void ctx_release(struct ctx *c)
{
	if (c->ms)
		for (size_t i = 0; i < c->nm; i++) {
			free(c->ms[i].units);
			free(c->ms[i].special);
		}
	free(c->ms);
	free(c->m_sorted);
	free(c->u_sorted);
	free(c->order);
	free(c->dfs);
	free(c->in_cycle);
	free(c->cur);
	free(c->placed);
	free(c->cand);
	free(c->rank);
	free(c->rt_mask);
	buf_release(&c->reason);
	buf_release(&c->err);
	buf_release(&c->tmp);
}

void sched_plan_release(struct sched_plan *p)
{
	if (!p)
		return;
	for (size_t i = 0; p->v && i < p->n; i++) {
		free(p->v[i].reason);
		free(p->v[i].policy_error);
	}
	free(p->v);
	free(p->policy_error);
	p->v = NULL;
	p->n = 0;
	p->policy_error = NULL;
}

static int run(struct ctx *c)
{
	uint32_t *stack;
	int rc;

	stack = malloc((c->nu + 1) * sizeof(*stack));
	if (!stack)
		return -ENOMEM;
	/* Globals first: they are on every machine they apply to before anything is decided.
	 * (Listed once: machines x all units would be 500 million steps for 100,000 units on
	 * 5,000 machines; `stack` holds them until the walk below needs it.) */
	{
		size_t ng = 0;

		for (size_t j = 0; j < c->nu; j++) {
			size_t ui = c->u_sorted[j];

			if (is_global(c, ui) && c->u[ui].desired)
				stack[ng++] = (uint32_t)ui;
		}
		for (size_t i = 0; i < c->nm && ng; i++) {
			size_t mi = c->m_sorted[i];

			for (size_t j = 0; j < ng; j++) {
				size_t ui = stack[j];

				if (sched_global_applies(&c->m[mi], c->u[ui].opts,
				                         c->u[ui].runtime) &&
				    (rc = commit(c, mi, ui)) < 0) {
					free(stack);
					return rc;
				}
			}
		}
	}
	for (size_t j = 0; j < c->nu; j++) {
		size_t ui = c->u_sorted[j];

		if (!is_global(c, ui) && c->u[ui].desired)
			visit(c, ui, stack, 0);
	}
	free(stack);
	for (size_t ui = 0; ui < c->nu; ui++)
		c->cur[ui] = c->u[ui].current ? find_machine(c, c->u[ui].current) : -1;
	replace_prepass(c);
	for (size_t k = 0; k < c->n_order; k++)
		if ((rc = keep(c, c->order[k])) < 0)
			return rc;
	for (size_t k = 0; k < c->n_order; k++) {
		if (c->deadline_ns && k % 32 == 0 && flt_monotime_ns() > c->deadline_ns) {
			for (; k < c->n_order; k++)
				if (c->placed[c->order[k]] < 0)
					c->plan->v[c->order[k]].status = SCHED_DEFERRED;
			break;
		}
		if (c->placed[c->order[k]] < 0 && (rc = place(c, c->order[k])) < 0)
			return rc;
	}
	return 0;
}

int sched_plan_build(const struct sched_machine *machines, size_t n_machines,
                     const struct sched_unit *units, size_t n_units, struct policy *pol,
                     struct sched_plan *ret)
{
	return sched_plan_build_until(machines, n_machines, units, n_units, pol, 0, ret);
}

int sched_plan_build_until(const struct sched_machine *machines, size_t n_machines,
                           const struct sched_unit *units, size_t n_units, struct policy *pol,
                           int64_t deadline_ns, struct sched_plan *ret)
{
	struct ctx c = {.m = machines,
	                .nm = n_machines,
	                .u = units,
	                .nu = n_units,
	                .pol = pol,
	                .deadline_ns = deadline_ns};
	struct sched_plan plan = SCHED_PLAN_INIT;
	size_t nm1 = n_machines ? n_machines : 1, nu1 = n_units ? n_units : 1;
	int rc = -ENOMEM;

	for (size_t i = 0; i < n_machines; i++)
		if (!machines[i].id)
			return FLT_EINVAL;
	for (size_t i = 0; i < n_units; i++)
		if (!units[i].name)
			return FLT_EINVAL;
	c.plan = &plan;
	plan.v = calloc(nu1, sizeof(*plan.v));
	plan.n = n_units;
	c.ms = calloc(nm1, sizeof(*c.ms));
	c.m_sorted = malloc(nm1 * sizeof(*c.m_sorted));
	c.u_sorted = malloc(nu1 * sizeof(*c.u_sorted));
	c.order = malloc(nu1 * sizeof(*c.order));
	c.dfs = calloc(nu1, 1);
	c.in_cycle = calloc(nu1, 1);
	c.cur = malloc(nu1 * sizeof(*c.cur));
	c.placed = malloc(nu1 * sizeof(*c.placed));
	c.cand = malloc(nm1 * sizeof(*c.cand));
	c.rank = malloc(nm1 * sizeof(*c.rank));
	c.rt_mask = calloc(nm1, sizeof(*c.rt_mask));
	if (!plan.v || !c.ms || !c.m_sorted || !c.u_sorted || !c.order || !c.dfs || !c.in_cycle ||
	    !c.cur || !c.placed || !c.cand || !c.rank || !c.rt_mask)
		goto out;
	for (size_t i = 0; i < n_machines; i++)
		c.m_sorted[i] = (uint32_t)i;
	for (size_t i = 0; i < n_units; i++) {
		c.u_sorted[i] = (uint32_t)i;
		c.placed[i] = -1;
	}
	qsort_r(c.m_sorted, n_machines, sizeof(*c.m_sorted), cmp_machine, &c);
	for (size_t i = 0; i < n_machines; i++)
		c.rank[c.m_sorted[i]] = (uint32_t)i;
	qsort_r(c.u_sorted, n_units, sizeof(*c.u_sorted), cmp_unit, &c);
	rc = FLT_EINVAL;
	for (size_t i = 1; i < n_machines; i++)
		if (strcmp(machines[c.m_sorted[i - 1]].id, machines[c.m_sorted[i]].id) == 0)
			goto out;
	for (size_t i = 1; i < n_units; i++)
		if (strcmp(units[c.u_sorted[i - 1]].name, units[c.u_sorted[i]].name) == 0)
			goto out;

	if (pol) {
		rc = policy_plan_begin(pol, machines, n_machines, &c.err);
		if (rc == -ENOMEM)
			goto out;
		c.pol_ok = rc == 0;
		if (rc < 0) {
			plan.policy_error = strdup(c.err.data ? c.err.data : "error");
			if (!plan.policy_error) {
				rc = -ENOMEM;
				goto out_pol;
			}
		}
	}
	rc = run(&c);
out_pol:
	if (pol)
		policy_plan_end(pol);
out:
	ctx_release(&c);
	if (rc < 0) {
		sched_plan_release(&plan);
		return rc;
	}
	*ret = plan;
	return 0;
}
