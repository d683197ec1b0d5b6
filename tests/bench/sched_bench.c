/* Scheduler benchmark: one plan placing 10,000 units on 1,000 simulated machines with the
 * shipped default Lua policy (and, for comparison, the compiled-in default), printed as
 * placements per second. Built by `make check`, run by hand: tests/bench/sched_bench [lua dir]. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/policy.h"
#include "engine/sched.h"
#include "unit/unit.h"
#include "util/util.h"

#ifndef FLT_LUA_DIR
#define FLT_LUA_DIR "lua"
#endif

enum { NM = 1000, NU = 10000 };

static const char *const rts[] = {"exec", "docker"};
static const char *const zones[] = {"a", "b", "c"};

static double run(const char *what, struct sched_machine *m, struct sched_unit *u,
                  struct policy *pol)
{
	struct sched_plan p = SCHED_PLAN_INIT;
	int64_t t0 = flt_monotime_ns(), dt;
	size_t placed = 0, failed = 0;
	double rate;

	if (sched_plan_build(m, NM, u, NU, pol, &p) < 0) {
		fprintf(stderr, "sched_bench: plan failed\n");
		exit(1);
	}
	dt = flt_monotime_ns() - t0;
	for (size_t i = 0; i < p.n; i++) {
		placed += p.v[i].status == SCHED_PLACED;
		failed += p.v[i].policy_error != NULL;
	}
	if (p.policy_error || failed) {
		fprintf(stderr, "sched_bench: policy failed: %s\n",
		        p.policy_error ? p.policy_error : "on some units");
		exit(1);
	}
	rate = (double)placed / ((double)dt / 1e9);
	printf("%-28s %zu units on %d machines in %.3f s: %.0f placements/s\n", what, placed, NM,
	       (double)dt / 1e9, rate);
	sched_plan_release(&p);
	return rate;
}

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : FLT_LUA_DIR;
	struct sched_machine *m = calloc(NM, sizeof(*m));
	struct sched_kv *kv = calloc(NM, sizeof(*kv));
	char(*ids)[33] = calloc(NM, 33);
	struct sched_unit *u = calloc(NU, sizeof(*u));
	struct unit_sched *o = calloc(NU, sizeof(*o));
	char(*names)[32] = calloc(NU, 32);
	char *web_glob = "web@*";
	struct policy *pol;
	char path[4096];
	struct buf err = BUF_INIT;

	if (!m || !kv || !ids || !u || !o || !names)
		return 1;
	for (int i = 0; i < NM; i++) {
		snprintf(ids[i], 33, "%08x%024x", (unsigned)i * 2654435761u, i);
		m[i].id = ids[i];
		m[i].public_ip = "10.0.0.1";
		m[i].runtimes = rts;
		m[i].n_runtimes = 2;
		m[i].memory = 64ull << 30;
		kv[i].key = "zone";
		kv[i].value = zones[i % 3];
		m[i].metadata = &kv[i];
		m[i].n_metadata = 1;
	}
	/* a realistic mix: most units plain, some with memory requests, metadata or Conflicts */
	for (int i = 0; i < NU; i++) {
		snprintf(names[i], 32, "%s@%d.service", i % 10 == 0 ? "web" : "app", i);
		u[i].name = names[i];
		u[i].opts = &o[i];
		u[i].desired = true;
		if (i % 4 == 0)
			o[i].memory = 256ull << 20;
		if (i % 10 == 0) {
			o[i].conflicts = &web_glob;
			o[i].n_conflicts = 1;
		}
	}
	run("builtin default (C)", m, u, NULL);
	snprintf(path, sizeof(path), "%s/default.lua", dir);
	if (policy_new(NULL, &pol) < 0 || policy_load(pol, path, &err) < 0) {
		fprintf(stderr, "sched_bench: %s\n", err.data ? err.data : "out of memory");
		return 1;
	}
	run("lua/default.lua", m, u, pol);
	policy_free(pol);
	buf_release(&err);
	free(m);
	free(kv);
	free(ids);
	free(u);
	free(o);
	free(names);
	return 0;
}
