/* Unit tests of the scheduling core (src/engine/sched.c) without a Lua policy: every hard
 * constraint, fleet's behaviours, stability, determinism, Replaces with and without room.
 * Cases are tables of machines and units written in a small text notation (see fx_machine and
 * fx_unit); the unit_sched structs are built by hand, so unit.c is not needed. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/sched.h"
#include "unit/unit.h"
#include "util/err.h"

#define MAXM 8
#define MAXU 12
#define MAXV 8

struct mh {
	char id[33];
	struct sched_kv meta[MAXV];
	const char *rts[MAXV];
};

struct uh {
	struct unit_sched o;
	char *mof[MAXV], *conf[MAXV], *repl[MAXV];
	struct unit_meta meta[MAXV];
	char idbuf[33];
};

struct fx {
	struct sched_machine m[MAXM];
	struct mh mh[MAXM];
	size_t nm;
	struct sched_unit u[MAXU];
	struct uh uh[MAXU];
	size_t nu;
	char *text[MAXM + MAXU];
	size_t ntext;
};

/* Machine '1' has id "11111111" followed by 24 zeros, so 8-character prefixes are distinct. */
static const char *mid(struct mh *h, char c)
{
	memset(h->id, c, 8);
	memset(h->id + 8, '0', 24);
	h->id[32] = 0;
	return h->id;
}

static uint64_t parse_size(const char *s)
{
	char *end;
	uint64_t v = strtoull(s, &end, 10);

	switch (*end) {
	case 'K':
		return v << 10;
	case 'M':
		return v << 20;
	case 'G':
		return v << 30;
	default:
		return v;
	}
}

/* "1 zone=a,region=x rt=exec,docker mem=1G cpu=2000" (rt defaults to exec,docker) */
static void fx_machine(struct fx *f, const char *spec)
{
	struct sched_machine *m = &f->m[f->nm];
	struct mh *h = &f->mh[f->nm];
	char *t = strdup(spec), *save = NULL, *tok;

	assert_non_null(t);
	f->text[f->ntext++] = t;
	memset(m, 0, sizeof(*m));
	tok = strtok_r(t, " ", &save);
	m->id = mid(h, tok[0]);
	m->metadata = h->meta;
	m->runtimes = h->rts;
	h->rts[0] = "exec";
	h->rts[1] = "docker";
	m->n_runtimes = 2;
	while ((tok = strtok_r(NULL, " ", &save))) {
		char *s2 = NULL, *p;

		if (!strncmp(tok, "rt=", 3)) {
			m->n_runtimes = 0;
			for (p = strtok_r(tok + 3, ",", &s2); p; p = strtok_r(NULL, ",", &s2))
				h->rts[m->n_runtimes++] = p;
		} else if (!strncmp(tok, "mem=", 4)) {
			m->memory = parse_size(tok + 4);
		} else if (!strncmp(tok, "cpu=", 4)) {
			m->cpus_milli = (uint32_t)atoi(tok + 4);
		} else if (!strncmp(tok, "ip=", 3)) {
			m->public_ip = tok + 3;
		} else {
			for (p = strtok_r(tok, ",", &s2); p; p = strtok_r(NULL, ",", &s2)) {
				char *eq = strchr(p, '=');

				assert_non_null(eq);
				*eq = 0;
				h->meta[m->n_metadata].key = p;
				h->meta[m->n_metadata++].value = eq + 1;
			}
		}
	}
	f->nm++;
}

/* "name [cur=1] [off] [rt=rkt] [MachineID=1] [MachineOf=x] [Meta=k=v|Meta=k!=v] [Conflicts=g]
 *  [Replaces=g] [Global] [Memory=512M] [CPUs=1500] [Docker]" */
static void fx_unit(struct fx *f, const char *spec)
{
	struct sched_unit *u = &f->u[f->nu];
	struct uh *h = &f->uh[f->nu];
	struct unit_sched *o = &h->o;
	char *t = strdup(spec), *save = NULL, *tok;

	assert_non_null(t);
	f->text[f->ntext++] = t;
	memset(u, 0, sizeof(*u));
	memset(o, 0, sizeof(*o));
	o->machine_of = h->mof;
	o->conflicts = h->conf;
	o->replaces = h->repl;
	o->metadata = h->meta;
	u->opts = o;
	u->desired = true;
	u->name = strtok_r(t, " ", &save);
	while ((tok = strtok_r(NULL, " ", &save))) {
		if (!strncmp(tok, "cur=", 4)) {
			struct mh tmp;

			/* current machine ids live in the unit's holder */
			mid(&tmp, tok[4]);
			memcpy(h->idbuf, tmp.id, 33);
			u->current = h->idbuf;
		} else if (!strcmp(tok, "off")) {
			u->desired = false;
		} else if (!strncmp(tok, "rt=", 3)) {
			u->runtime = tok + 3;
		} else if (!strncmp(tok, "MachineID=", 10)) {
			o->machine_id = tok + 10;
		} else if (!strncmp(tok, "MachineOf=", 10)) {
			o->machine_of[o->n_machine_of++] = tok + 10;
		} else if (!strncmp(tok, "Conflicts=", 10)) {
			o->conflicts[o->n_conflicts++] = tok + 10;
		} else if (!strncmp(tok, "Replaces=", 9)) {
			o->replaces[o->n_replaces++] = tok + 9;
		} else if (!strcmp(tok, "Global")) {
			o->global = true;
		} else if (!strcmp(tok, "Docker")) {
			o->needs_docker = true;
		} else if (!strncmp(tok, "Memory=", 7)) {
			o->memory = parse_size(tok + 7);
		} else if (!strncmp(tok, "CPUs=", 5)) {
			o->cpus_milli = (uint32_t)atoi(tok + 5);
		} else if (!strncmp(tok, "Meta=", 5)) {
			struct unit_meta *mm = &o->metadata[o->n_metadata++];
			char *kv = tok + 5, *ne = strstr(kv, "!="), *eq = strchr(kv, '=');

			mm->key = kv;
			if (ne) {
				*ne = 0;
				mm->value = ne + 2;
				mm->negate = true;
			} else {
				assert_non_null(eq);
				*eq = 0;
				mm->value = eq + 1;
			}
		} else {
			fail_msg("bad unit token '%s'", tok);
		}
	}
	f->nu++;
}

static void fx_free(struct fx *f)
{
	for (size_t i = 0; i < f->ntext; i++)
		free(f->text[i]);
	free(f);
}

static struct fx *fx_new(const char *const *ms, const char *const *us)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	for (; ms && *ms; ms++)
		fx_machine(f, *ms);
	for (; us && *us; us++)
		fx_unit(f, *us);
	return f;
}

/* want: "1" placed on machine '1'; "!text" blocked with a reason containing text; "-" skipped */
static void check_one(const struct fx *f, const struct sched_plan *p, size_t i, const char *want,
                      const char *title)
{
	const struct sched_result *r = &p->v[i];

	if (!strcmp(want, "-")) {
		if (r->status != SCHED_SKIPPED)
			fail_msg("%s: %s: want skipped, got status %d (%s)", title, f->u[i].name,
			         r->status, r->reason ? r->reason : r->machine_id);
	} else if (want[0] == '!') {
		if (r->status != SCHED_BLOCKED)
			fail_msg("%s: %s: want blocked (%s), got %s", title, f->u[i].name, want + 1,
			         r->machine_id ? r->machine_id : "skipped");
		if (!strstr(r->reason, want + 1))
			fail_msg("%s: %s: reason '%s' lacks '%s'", title, f->u[i].name, r->reason,
			         want + 1);
	} else {
		if (r->status != SCHED_PLACED)
			fail_msg("%s: %s: want machine %s, got %s", title, f->u[i].name, want,
			         r->reason ? r->reason : "skipped");
		if (r->machine_id[0] != want[0] || strncmp(r->machine_id + 8, "0000", 4) != 0)
			fail_msg("%s: %s: want machine %s, got %.8s", title, f->u[i].name, want,
			         r->machine_id);
		assert_null(r->reason);
	}
}

struct tcase {
	const char *title;
	const char *m[MAXM + 1];
	const char *u[MAXU + 1];
	const char *want[MAXU + 1];
};

/* clang-format off: one case per block reads better than what the formatter makes of it */
static const struct tcase cases[] = {
    {"least loaded spreads web@1..5, ties to the lower id",
     {"1", "2", "3"},
     {"web@1.service", "web@2.service", "web@3.service", "web@4.service", "web@5.service"},
     {"1", "2", "3", "1", "2"}},
    {"input order does not matter: placement is by name",
     {"3", "1", "2"},
     {"web@5.service", "web@3.service", "web@1.service", "web@4.service", "web@2.service"},
     {"2", "3", "1", "1", "2"}},
    {"existing units count as load", {"1", "2"}, {"a.service cur=1", "b.service"}, {"1", "2"}},
    {"inactive units are skipped and not counted",
     {"1", "2"},
     {"a.service cur=1 off", "b.service"},
     {"-", "1"}},
    {"no machines at all", {NULL}, {"a.service"}, {"!no machines available"}},
    {"MachineID: full id, 8-char prefix, shorter prefix, no match",
     {"1", "2", "3"},
     {"a.service MachineID=22222222000000000000000000000000", "b.service MachineID=33333333",
      "c.service MachineID=3333", "d.service MachineID=44444444"},
     {"2", "3", "3", "!no machine matches MachineID=44444444"}},
    {"MachineMetadata: same key OR, different keys AND",
     {"1 region=us-east,disk=hdd", "2 region=us-west,disk=ssd", "3 region=eu,disk=ssd"},
     {"a.service Meta=region=us-east Meta=region=us-west Meta=disk=ssd", "b.service Meta=region=eu",
      "c.service Meta=region=us-east Meta=disk=hdd"},
     {"2", "3", "1"}},
    {"MachineMetadata: a machine without the key fails; no match gives the terms",
     {"1 disk=ssd", "2"},
     {"a.service Meta=region=us-west", "b.service Meta=disk=ssd"},
     {"!no machine matches MachineMetadata region=us-west", "1"}},
    {"MachineMetadata: key!=value excludes, a missing key passes a negation",
     {"1 region=us-east", "2 region=us-west", "3"},
     {"a.service Meta=region!=us-east", "b.service Meta=region!=us-east",
      "c.service Meta=region!=us-east Meta=region!=us-west Meta=region!=",
      "d.service Meta=region!=us-east Meta=region=us-east"},
     {"2", "3", "3", "!MachineMetadata region!=us-east region=us-east"}},
    {"MachineOf: the follower goes where its peer is, even when named first",
     {"1", "2", "3"},
     {"aaa.service MachineOf=zzz.service", "x.service", "zzz.service cur=3"},
     {"3", "1", "3"}},
    {"MachineOf: all listed peers; peers apart cannot be followed",
     {"1", "2"},
     {"f.service MachineOf=p.service MachineOf=q.service",
      "g.service MachineOf=p.service "
      "MachineOf=r.service",
      "p.service cur=1", "q.service cur=1", "r.service cur=2"},
     {"1", "!are on different machines", "1", "1", "2"}},
    {"MachineOf: inactive or missing peer -> waiting",
     {"1", "2"},
     {"f.service MachineOf=db.service", "g.service MachineOf=gone.service", "db.service off"},
     {"!waiting for MachineOf peer db.service to be scheduled",
      "!waiting for MachineOf peer gone.service to be scheduled", "-"}},
    {"MachineOf: a chain follows its head; the follower moves with its peer",
     {"1", "2", "3"},
     {"a.service MachineOf=b.service cur=1", "b.service MachineOf=c.service cur=1",
      "c.service cur=2", "d.service cur=1"},
     {"2", "2", "2", "1"}},
    {"MachineOf: the peer's machine died, peer and follower move together",
     {"1", "2"},
     {"f.service MachineOf=p.service cur=9", "p.service cur=9", "z.service cur=1"},
     {"2", "2", "1"}},
    {"MachineOf: a cycle never schedules",
     {"1", "2"},
     {"a.service MachineOf=b.service", "b.service MachineOf=a.service", "c.service"},
     {"!cycle", "!cycle", "1"}},
    {"MachineOf: the peer's machine fails another constraint of the follower",
     {"1 disk=hdd", "2 disk=ssd"},
     {"f.service MachineOf=p.service Meta=disk=ssd", "p.service cur=1"},
     {"!no machine matches MachineMetadata disk=ssd", "1"}},
    {"Conflicts: the template spreads one per machine, the third waits",
     {"1", "2"},
     {"web@1.service Conflicts=web@*", "web@2.service Conflicts=web@*",
      "web@3.service Conflicts=web@*"},
     {"1", "2", "!conflicts with web@1.service, web@2.service on every eligible machine"}},
    {"Conflicts: checked both ways",
     {"1", "2"},
     {"a.service cur=1 Conflicts=b*", "b.service", "c.service cur=2", "d.service Conflicts=c*",
      "e.service Conflicts=a?service"},
     /* b avoids 1 (a's pattern), d avoids 2 (its own), e avoids 1 */
     {"1", "2", "2", "1", "2"}},
    {"Conflicts: a unit never conflicts with itself and a global counts",
     {"1 role=db", "2"},
     {"a.service Conflicts=*", "g.service Global Meta=role=db Conflicts=nothing"},
     {"2", "-"}},
    {"Global: never placed, counts as load where its metadata matches",
     {"1 role=db", "2"},
     {"g.service Global Meta=role=db", "h.service Global", "x.service"},
     {"-", "-", "2"}},
    {"Memory: capacity minus what is already there; 0 is unlimited",
     {"1 mem=1G", "2 mem=512M", "3 mem=1G"},
     {"a.service Memory=768M", "b.service Memory=768M", "c.service Memory=512M",
      "d.service Memory=512M", "e.service Memory=512M"},
     {"1", "3", "2", "!no machine has 512M memory free", "!no machine has 512M memory free"}},
    {"Memory: global units use memory too; unlimited machine takes anything",
     {"1 mem=1G", "2 role=x"},
     {"g.service Global Memory=512M", "a.service Memory=768M MachineID=11111111",
      "b.service Memory=64G"},
     {"-", "!no machine has 768M memory free", "2"}},
    {"CPUs: milli-CPUs against capacity",
     {"1 cpu=2000", "2 cpu=1000"},
     {"a.service CPUs=1500", "b.service CPUs=1000", "c.service CPUs=500", "d.service CPUs=1500"},
     {"1", "2", "1", "!no machine has 1.5 CPUs free"}},
    {"Runtime: the machine must list it; Docker needs docker",
     {"1 rt=exec", "2 rt=exec,rkt", "3 rt=exec,docker"},
     {"a.service rt=rkt", "b.service Docker", "c.service rt=systemd", "d.service rt=exec"},
     {"2", "3", "!no machine offers runtime systemd", "1"}},
    {"Docker: no machine has it",
     {"1 rt=exec"},
     {"a.service Docker"},
     {"!no machine offers docker"}},
    {"Stability: a unit stays on its machine even if another is emptier",
     {"1", "2", "3"},
     {"a.service cur=2", "b.service cur=2", "c.service cur=2", "d.service"},
     {"2", "2", "2", "1"}},
    {"Stability: the machine is gone or no longer matches -> moved",
     {"1 zone=a mem=1G", "2 zone=b mem=1G"},
     {"a.service cur=7", "b.service cur=1 Meta=zone=b", "c.service cur=1 Memory=2G"},
     {"1", "2", "!no machine has 2G memory free"}},
    {"Stability: kept units are decided first, a new unit does not push them out",
     {"1", "2"},
     {"a.service Conflicts=z*", "z.service cur=1"},
     {"2", "1"}},
    {"Replaces with room: the new unit takes the machine, the old one moves",
     {"1", "2"},
     {"new.service Replaces=old.service", "old.service cur=1", "other.service cur=2"},
     {"1", "2", "2"}},
    {"Replaces without room: the old unit stays unplaced with a reason",
     {"1"},
     {"new.service Replaces=old*", "old.service cur=1"},
     {"1", "!cannot share a machine with new.service (Replaces) on any eligible machine"}},
    {"Replaces: both already on one machine, the replacing unit keeps it",
     {"1", "2"},
     {"a.service cur=1", "b.service cur=1 Replaces=a.service"},
     {"2", "1"}},
    {"Replaces: units replacing each other are ignored",
     {"1"},
     {"a.service cur=1 Replaces=b.service", "b.service Replaces=a.service"},
     {"1", "1"}},
    {"Replaces: the old unit's follower moves with it",
     {"1", "2"},
     {"new.service Replaces=old.service", "old.service cur=1",
      "side.service MachineOf=old.service cur=1"},
     {"1", "2", "2"}},
    {"Replaces: a machine the new unit cannot use is not taken",
     {"1 disk=hdd", "2 disk=ssd"},
     {"new.service Replaces=old.service Meta=disk=ssd", "old.service cur=1"},
     {"2", "1"}},
};
/* clang-format on */

static void run_case(const struct tcase *tc)
{
	struct fx *f = fx_new(tc->m, tc->u);
	struct sched_plan p = SCHED_PLAN_INIT;
	size_t i;

	assert_int_equal(sched_plan_build(f->m, f->nm, f->u, f->nu, NULL, &p), 0);
	assert_int_equal(p.n, f->nu);
	for (i = 0; i < f->nu; i++) {
		assert_non_null(tc->want[i]);
		check_one(f, &p, i, tc->want[i], tc->title);
		assert_null(p.v[i].policy_error);
	}
	assert_null(p.policy_error);
	sched_plan_release(&p);
	fx_free(f);
}

static void test_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		run_case(&cases[i]);
}

/* Feed a plan's placements back as the current machines (what the engine does next round). */
static void apply(struct fx *f, const struct sched_plan *p)
{
	for (size_t i = 0; i < f->nu; i++) {
		if (p->v[i].status == SCHED_PLACED) {
			memcpy(f->uh[i].idbuf, p->v[i].machine_id, 33);
			f->u[i].current = f->uh[i].idbuf;
		} else {
			f->u[i].current = NULL;
		}
	}
}

static bool same_plan(const struct sched_plan *a, const struct sched_plan *b)
{
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++) {
		if (a->v[i].status != b->v[i].status)
			return false;
		if (a->v[i].machine_id && strcmp(a->v[i].machine_id, b->v[i].machine_id))
			return false;
		if (a->v[i].reason && strcmp(a->v[i].reason, b->v[i].reason))
			return false;
	}
	return true;
}

/* Every case, planned again on its own output, gives the same plan: nothing flaps, Replaces
 * without room included (fleet bug: a reschedule storm). */
static void test_fixpoint(void **state)
{
	(void)state;
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		struct fx *f = fx_new(cases[c].m, cases[c].u);
		struct sched_plan p1 = SCHED_PLAN_INIT, p2 = SCHED_PLAN_INIT;

		assert_int_equal(sched_plan_build(f->m, f->nm, f->u, f->nu, NULL, &p1), 0);
		for (int round = 0; round < 3; round++) {
			apply(f, &p1);
			assert_int_equal(sched_plan_build(f->m, f->nm, f->u, f->nu, NULL, &p2), 0);
			if (!same_plan(&p1, &p2))
				fail_msg("%s: round %d changed the plan", cases[c].title, round);
			sched_plan_release(&p2);
		}
		sched_plan_release(&p1);
		fx_free(f);
	}
}

/* Same input in any order -> same output (fleet placed in Go map order). */
static void test_determinism(void **state)
{
	static const char *const ms[] = {"1 zone=a", "2 zone=b", "3 zone=a", "4 zone=b", NULL};
	static const char *const us[] = {"web@1.service Conflicts=web@*",
	                                 "web@2.service Conflicts=web@*",
	                                 "web@3.service Conflicts=web@*",
	                                 "side@1.service MachineOf=web@1.service",
	                                 "db.service Meta=zone=b",
	                                 "cache.service cur=3",
	                                 "x.service",
	                                 "y.service Memory=1M",
	                                 "z.service Replaces=x.service",
	                                 NULL};
	struct fx *ref = fx_new(ms, us);
	struct sched_plan pr = SCHED_PLAN_INIT;
	unsigned seed = 12345;

	(void)state;
	assert_int_equal(sched_plan_build(ref->m, ref->nm, ref->u, ref->nu, NULL, &pr), 0);
	for (int round = 0; round < 20; round++) {
		struct fx *f = fx_new(ms, us);
		struct sched_plan p = SCHED_PLAN_INIT;
		size_t perm[MAXU];

		/* shuffle units and machines with a fixed LCG */
		for (size_t i = 0; i < f->nu; i++)
			perm[i] = i;
		for (size_t i = f->nu; i > 1; i--) {
			size_t j;
			struct sched_unit tu;
			struct uh th;

			seed = seed * 1103515245u + 12345u;
			j = (seed >> 16) % i;
			tu = f->u[i - 1], f->u[i - 1] = f->u[j], f->u[j] = tu;
			th = f->uh[i - 1], f->uh[i - 1] = f->uh[j], f->uh[j] = th;
			/* the opts pointers follow their holder */
			f->u[i - 1].opts = &f->uh[i - 1].o;
			f->u[j].opts = &f->uh[j].o;
			f->uh[i - 1].o.machine_of = f->uh[i - 1].mof;
			f->uh[i - 1].o.conflicts = f->uh[i - 1].conf;
			f->uh[i - 1].o.replaces = f->uh[i - 1].repl;
			f->uh[i - 1].o.metadata = f->uh[i - 1].meta;
			f->uh[j].o.machine_of = f->uh[j].mof;
			f->uh[j].o.conflicts = f->uh[j].conf;
			f->uh[j].o.replaces = f->uh[j].repl;
			f->uh[j].o.metadata = f->uh[j].meta;
			if (f->u[i - 1].current)
				f->u[i - 1].current = f->uh[i - 1].idbuf;
			if (f->u[j].current)
				f->u[j].current = f->uh[j].idbuf;
		}
		if (round & 1) {
			struct sched_machine t = f->m[0];

			f->m[0] = f->m[f->nm - 1];
			f->m[f->nm - 1] = t;
		}
		assert_int_equal(sched_plan_build(f->m, f->nm, f->u, f->nu, NULL, &p), 0);
		for (size_t i = 0; i < f->nu; i++) {
			size_t k;

			for (k = 0; k < ref->nu && strcmp(ref->u[k].name, f->u[i].name); k++)
				;
			assert_true(k < ref->nu);
			assert_int_equal(p.v[i].status, pr.v[k].status);
			if (p.v[i].machine_id)
				assert_string_equal(p.v[i].machine_id, pr.v[k].machine_id);
			if (p.v[i].reason)
				assert_string_equal(p.v[i].reason, pr.v[k].reason);
		}
		(void)perm;
		sched_plan_release(&p);
		fx_free(f);
	}
	sched_plan_release(&pr);
	fx_free(ref);
}

static void test_bad_input(void **state)
{
	static const char *const ms[] = {"1", "1", NULL};
	static const char *const us[] = {"a.service", "a.service", NULL};
	static const char *const one[] = {"1", NULL};
	struct fx *f = fx_new(ms, one);
	struct sched_plan p = SCHED_PLAN_INIT;

	(void)state;
	assert_int_equal(sched_plan_build(f->m, f->nm, f->u, f->nu, NULL, &p), FLT_EINVAL);
	fx_free(f);
	f = fx_new(one, us);
	assert_int_equal(sched_plan_build(f->m, f->nm, f->u, f->nu, NULL, &p), FLT_EINVAL);
	fx_free(f);
	/* nothing at all is fine */
	assert_int_equal(sched_plan_build(NULL, 0, NULL, 0, NULL, &p), 0);
	assert_int_equal(p.n, 0);
	sched_plan_release(&p);
	sched_plan_release(NULL);
}

/* A plan whose time is up keeps what is placed and defers the rest (never a removal). */
static void test_deadline(void **state)
{
	static const char *const ms[] = {"1", "2", NULL};
	static const char *const us[] = {"a.service cur=1", "b.service", "c.service", NULL};
	struct fx *f = fx_new(ms, us);
	struct sched_plan p = SCHED_PLAN_INIT;

	(void)state;
	assert_int_equal(sched_plan_build_until(f->m, f->nm, f->u, f->nu, NULL, 1, &p), 0);
	assert_int_equal(p.v[0].status, SCHED_PLACED);
	assert_string_equal(p.v[0].machine_id, f->m[0].id);
	assert_int_equal(p.v[1].status, SCHED_DEFERRED);
	assert_int_equal(p.v[2].status, SCHED_DEFERRED);
	sched_plan_release(&p);
	/* without a deadline the same input places everything */
	assert_int_equal(sched_plan_build_until(f->m, f->nm, f->u, f->nu, NULL, 0, &p), 0);
	for (size_t i = 0; i < 3; i++)
		assert_int_equal(p.v[i].status, SCHED_PLACED);
	sched_plan_release(&p);
	fx_free(f);
}

static void test_global_applies(void **state)
{
	static const char *const ms[] = {"1 role=db rt=exec", "2 role=web", "3 rt=exec,docker",
	                                 NULL};
	static const char *const us[] = {"g.service Global Meta=role=db", "h.service Global Docker",
	                                 "i.service Global rt=exec Meta=role!=web",
	                                 "j.service Global", NULL};
	struct fx *f = fx_new(ms, us);
	static const bool want[4][3] = {
	    {true, false, false}, {false, true, true}, {true, false, true}, {true, true, true}};

	(void)state;
	for (size_t u = 0; u < 4; u++)
		for (size_t m = 0; m < 3; m++)
			assert_int_equal(
			    sched_global_applies(&f->m[m], f->u[u].opts, f->u[u].runtime),
			    want[u][m]);
	assert_true(sched_global_applies(&f->m[0], NULL, NULL));
	assert_true(sched_metadata_match(&f->m[1], NULL));
	fx_free(f);
}

/* A unit at the head of a long MachineOf chain: the whole chain lands together, in one plan. */
static void test_long_chain(void **state)
{
	enum { N = 2000 };
	struct sched_machine m[3] = {{.id = "a0000000000000000000000000000000"},
	                             {.id = "b0000000000000000000000000000000"},
	                             {.id = "c0000000000000000000000000000000"}};
	struct sched_unit *u = calloc(N, sizeof(*u));
	struct unit_sched *o = calloc(N, sizeof(*o));
	char(*names)[32] = calloc(N, 32);
	char **peer = calloc(N, sizeof(*peer));
	struct sched_plan p = SCHED_PLAN_INIT;

	(void)state;
	assert_non_null(u && o && names && peer);
	for (int i = 0; i < N; i++) {
		snprintf(names[i], 32, "u%05d.service", i);
		u[i].name = names[i];
		u[i].opts = &o[i];
		u[i].desired = true;
	}
	/* u00000 follows u00001 follows ... follows u01999, which is currently on c */
	for (int i = 0; i + 1 < N; i++) {
		peer[i] = names[i + 1];
		o[i].machine_of = &peer[i];
		o[i].n_machine_of = 1;
	}
	u[N - 1].current = m[2].id;
	assert_int_equal(sched_plan_build(m, 3, u, N, NULL, &p), 0);
	for (int i = 0; i < N; i++) {
		assert_int_equal(p.v[i].status, SCHED_PLACED);
		assert_string_equal(p.v[i].machine_id, m[2].id);
	}
	sched_plan_release(&p);
	free(u);
	free(o);
	free(names);
	free(peer);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_table),          cmocka_unit_test(test_fixpoint),
	    cmocka_unit_test(test_determinism),    cmocka_unit_test(test_bad_input),
	    cmocka_unit_test(test_global_applies), cmocka_unit_test(test_long_chain),
	    cmocka_unit_test(test_deadline),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
