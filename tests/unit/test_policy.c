/* Unit tests of the Lua policy host (src/engine/policy.c) through the scheduler: the three
 * shipped policies choose as documented, and a policy that escapes the sandbox, loops, eats
 * memory or answers nonsense is stopped and reported while the built-in default places the unit. */
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
#include <unistd.h>

#include "engine/policy.h"
#include "engine/sched.h"
#include "unit/unit.h"
#include "util/err.h"

#ifndef FLT_LUA_DIR
#define FLT_LUA_DIR "lua"
#endif

#define MAXM 8
#define MAXU 16

static const char *const ids[MAXM] = {
    "11111111000000000000000000000000", "22222222000000000000000000000000",
    "33333333000000000000000000000000", "44444444000000000000000000000000",
    "55555555000000000000000000000000", "66666666000000000000000000000000",
    "77777777000000000000000000000000", "88888888000000000000000000000000",
};
static const char *const rts[] = {"exec", "docker"};

struct fx {
	struct sched_machine m[MAXM];
	struct sched_kv kv[MAXM];
	size_t nm;
	struct sched_unit u[MAXU];
	struct unit_sched o[MAXU];
	char names[MAXU][32];
	size_t nu;
};

/* Machine i (id "ii..."), with zone=<zone> unless zone is NULL, and `mem` bytes. */
static void add_machine(struct fx *f, const char *zone, uint64_t mem)
{
	struct sched_machine *m = &f->m[f->nm];

	m->id = ids[f->nm];
	m->public_ip = "10.0.0.1";
	m->runtimes = rts;
	m->n_runtimes = 2;
	m->memory = mem;
	if (zone) {
		f->kv[f->nm].key = "zone";
		f->kv[f->nm].value = zone;
		m->metadata = &f->kv[f->nm];
		m->n_metadata = 1;
	}
	f->nm++;
}

static struct unit_sched *add_unit(struct fx *f, const char *name, uint64_t mem)
{
	struct sched_unit *u = &f->u[f->nu];

	snprintf(f->names[f->nu], sizeof(f->names[0]), "%s", name);
	u->name = f->names[f->nu];
	u->opts = &f->o[f->nu];
	u->desired = true;
	f->o[f->nu].memory = mem;
	return &f->o[f->nu++];
}

static int machine_no(const char *id)
{
	return id ? id[0] - '0' : 0;
}

static char *write_tmp(const char *text)
{
	char *path = strdup("/tmp/flt-policy-XXXXXX");
	int fd;

	assert_non_null(path);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return path;
}

static struct policy *load_text(const char *text, const struct policy_limits *lim)
{
	struct policy *p;
	struct buf err = BUF_INIT;
	char *path = write_tmp(text);
	int rc;

	assert_int_equal(policy_new(lim, &p), 0);
	rc = policy_load(p, path, &err);
	if (rc != 0)
		fail_msg("cannot load policy: %s", err.data);
	unlink(path);
	free(path);
	buf_release(&err);
	return p;
}

static struct policy *load_shipped(const char *name)
{
	struct policy *p;
	struct buf err = BUF_INIT, path = BUF_INIT;

	assert_int_equal(buf_printf(&path, "%s/%s", FLT_LUA_DIR, name), 0);
	assert_int_equal(policy_new(NULL, &p), 0);
	if (policy_load(p, path.data, &err) != 0)
		fail_msg("cannot load %s: %s", path.data, err.data);
	assert_string_equal(policy_name(p), path.data);
	buf_release(&err);
	buf_release(&path);
	return p;
}

static void plan(struct fx *f, struct policy *p, struct sched_plan *ret)
{
	assert_int_equal(sched_plan_build(f->m, f->nm, f->u, f->nu, p, ret), 0);
}

static const struct policy_limits small = {.budget = 200000, .mem_cap = 4u << 20};

/* ---- shipped policies ---- */

static void test_builtin(void **state)
{
	struct fx f = {0};
	struct policy *p;
	struct sched_plan pl = SCHED_PLAN_INIT;
	struct buf err = BUF_INIT;
	static const int want[] = {1, 2, 3, 1, 2};

	(void)state;
	for (int i = 0; i < 3; i++)
		add_machine(&f, NULL, 0);
	for (int i = 1; i <= 5; i++) {
		char n[32];

		snprintf(n, sizeof(n), "web@%d.service", i);
		add_unit(&f, n, 0);
	}
	assert_int_equal(policy_new(NULL, &p), 0);
	assert_string_equal(policy_name(p), "builtin");
	assert_int_equal(policy_reload(p, &err), FLT_EINVAL); /* nothing to reload */
	plan(&f, p, &pl);
	for (int i = 0; i < 5; i++)
		assert_int_equal(machine_no(pl.v[i].machine_id), want[i]);
	assert_null(pl.policy_error);
	sched_plan_release(&pl);
	policy_free(p);
	policy_free(NULL);
	buf_release(&err);
}

/* lua/default.lua and the compiled-in default agree, on a case with conflicts and load. */
static void test_default_lua(void **state)
{
	struct fx f = {0};
	struct policy *p = load_shipped("default.lua");
	struct sched_plan a = SCHED_PLAN_INIT, b = SCHED_PLAN_INIT;
	static char *web_glob[] = {"web@*"};

	(void)state;
	for (int i = 0; i < 4; i++)
		add_machine(&f, NULL, 0);
	for (int i = 0; i < MAXU; i++) {
		char n[32];
		struct unit_sched *o;

		snprintf(n, sizeof(n), "%s@%d.service", i % 3 ? "web" : "job", i);
		o = add_unit(&f, n, 0);
		if (i % 3) {
			o->conflicts = web_glob;
			o->n_conflicts = 1;
		}
	}
	f.u[5].current = ids[3];
	plan(&f, p, &a);
	plan(&f, NULL, &b);
	for (size_t i = 0; i < f.nu; i++) {
		assert_null(a.v[i].policy_error);
		assert_int_equal(a.v[i].status, b.v[i].status);
		if (a.v[i].machine_id)
			assert_string_equal(a.v[i].machine_id, b.v[i].machine_id);
	}
	/* web@1 goes to the emptiest machine, 1 (lowest id); web@5 stays on 4 */
	assert_int_equal(machine_no(a.v[1].machine_id), 1);
	assert_int_equal(machine_no(a.v[5].machine_id), 4);
	sched_plan_release(&a);
	sched_plan_release(&b);
	policy_free(p);
}

static void test_spread_lua(void **state)
{
	struct fx f = {0};
	struct policy *p = load_shipped("spread.lua");
	struct sched_plan pl = SCHED_PLAN_INIT;
	static const int want[] = {1, 3, 2, 3, 1, 3};

	(void)state;
	add_machine(&f, "a", 0);
	add_machine(&f, "a", 0);
	add_machine(&f, "b", 0);
	for (int i = 0; i < 6; i++) {
		char n[32];

		snprintf(n, sizeof(n), "u%d.service", i);
		add_unit(&f, n, 0);
	}
	plan(&f, p, &pl);
	/* zone a and zone b get 3 units each, although b has one machine and a two */
	for (int i = 0; i < 6; i++) {
		assert_null(pl.v[i].policy_error);
		assert_int_equal(machine_no(pl.v[i].machine_id), want[i]);
	}
	sched_plan_release(&pl);
	policy_free(p);
}

static void test_binpack_lua(void **state)
{
	struct fx f = {0};
	struct policy *p = load_shipped("binpack.lua");
	struct sched_plan pl = SCHED_PLAN_INIT;
	static const int want[] = {2, 2, 2, 2, 1, 3, 4};

	(void)state;
	add_machine(&f, NULL, 2ull << 30);
	add_machine(&f, NULL, 1ull << 30);
	add_machine(&f, NULL, 4ull << 30);
	add_machine(&f, NULL, 0);
	for (int i = 0; i < 5; i++) {
		char n[32];

		snprintf(n, sizeof(n), "small%d.service", i);
		add_unit(&f, n, 256ull << 20);
	}
	add_unit(&f, "x-big.service", 3ull << 30);
	add_unit(&f, "y-huge.service", 8ull << 30);
	plan(&f, p, &pl);
	/* best fit: the 1G machine fills first, then the 2G one; 3G fits only 4G and unlimited */
	for (int i = 0; i < 7; i++) {
		assert_null(pl.v[i].policy_error);
		assert_int_equal(machine_no(pl.v[i].machine_id), want[i]);
	}
	sched_plan_release(&pl);
	policy_free(p);
}

/* ---- the API seen from Lua ---- */

static void test_tables(void **state)
{
	static const char text[] =
	    "calls = 0\n"
	    "function choose(u, ms, all)\n"
	    "  calls = calls + 1\n"
	    "  assert(#all == 3 and all[1].id < all[2].id and all[2].id < all[3].id)\n"
	    "  assert(all[1].ip == '10.0.0.1' and all[1].runtimes[2] == 'docker')\n"
	    "  assert(all[1].metadata.zone == 'a' and all[3].metadata.zone == nil)\n"
	    "  assert(all[2].memory == 1073741824 and all[2].cpus == 0)\n"
	    "  if calls == 1 then\n"
	    "    assert(u.name == 'a.service' and u.memory == 1048576 and #ms == 2)\n"
	    "    assert(all[1].nunits == 0 and #all[1].units == 0)\n"
	    "    ms[1].nunits = 99 -- a policy may scribble; the host rewrites counts\n"
	    "    return ms[1].id\n"
	    "  end\n"
	    "  assert(u.name == 'b.service' and u.current == nil)\n"
	    "  assert(all[1].nunits == 1 and all[1].units[1] == 'a.service')\n"
	    "  assert(all[1].memory_used == 1048576)\n"
	    "  return ms[#ms].id\n"
	    "end\n";
	struct fx f = {0};
	struct policy *p = load_text(text, NULL);
	struct sched_plan pl = SCHED_PLAN_INIT;
	static char *no_c[] = {"c*"};
	struct unit_sched *o;

	(void)state;
	add_machine(&f, "a", 0);
	add_machine(&f, NULL, 1u << 30);
	add_machine(&f, NULL, 0);
	/* a may not go to machine 3 (c.service there conflicts) */
	o = add_unit(&f, "a.service", 1u << 20);
	o->conflicts = no_c;
	o->n_conflicts = 1;
	add_unit(&f, "b.service", 0);
	add_unit(&f, "c.service", 0);
	f.u[2].current = ids[2];
	plan(&f, p, &pl);
	if (pl.v[0].policy_error || pl.v[1].policy_error)
		fail_msg("%s / %s", pl.v[0].policy_error, pl.v[1].policy_error);
	assert_int_equal(machine_no(pl.v[0].machine_id), 1);
	assert_int_equal(machine_no(pl.v[1].machine_id), 3);
	assert_int_equal(machine_no(pl.v[2].machine_id), 3);
	sched_plan_release(&pl);
	policy_free(p);
}

static void test_declined(void **state)
{
	struct fx f = {0};
	struct policy *p = load_text("function choose(u, ms) if u.name == 'a.service' then\n"
	                             "return nil, 'maintenance window' end return nil end\n",
	                             NULL);
	struct sched_plan pl = SCHED_PLAN_INIT;

	(void)state;
	add_machine(&f, NULL, 0);
	add_unit(&f, "a.service", 0);
	add_unit(&f, "b.service", 0);
	plan(&f, p, &pl);
	assert_int_equal(pl.v[0].status, SCHED_BLOCKED);
	assert_string_equal(pl.v[0].reason, "maintenance window");
	assert_int_equal(pl.v[1].status, SCHED_BLOCKED);
	assert_string_equal(pl.v[1].reason, "the placement policy chose no machine");
	assert_null(pl.v[0].policy_error);
	sched_plan_release(&pl);
	policy_free(p);
}

/* ---- the sandbox ---- */

static void test_sandbox_contents(void **state)
{
	static const char text[] =
	    "assert(io == nil and os == nil and package == nil and debug == nil)\n"
	    "assert(require == nil and load == nil and loadfile == nil and dofile == nil)\n"
	    "assert(loadstring == nil and string.dump == nil and coroutine == nil)\n"
	    "assert(print == nil and collectgarbage == nil and math.random == nil)\n"
	    "assert(('x'):rep(3) == 'xxx' and table.concat({1, 2}, ',') == '1,2')\n"
	    "function choose(u, ms) return ms[1].id end\n";
	struct policy *p = load_text(text, &small);

	(void)state;
	policy_free(p);
}

/* Each bad policy fails on every unit, is reported per unit, and the default places them all. */
static void test_bad_policies(void **state)
{
	static const struct {
		const char *text;
		const char *err;
	} bad[] = {
	    {"function choose(u, ms) io.open('/etc/passwd') return ms[1].id end", "'io'"},
	    {"function choose(u, ms) os.execute('touch /tmp/flt-pwned') return ms[1].id end",
	     "'os'"},
	    {"function choose(u, ms) local x = require('os') return ms[1].id end", "'require'"},
	    {"function choose(u, ms) dofile('/etc/passwd') return ms[1].id end", "'dofile'"},
	    {"function choose(u, ms) local f = load(string.dump(function() return 1 end))\n"
	     "return ms[1].id end",
	     "'dump'"},
	    {"function choose(u, ms) local f = load('return 1') return ms[1].id end", "'load'"},
	    {"function choose(u, ms) while true do end end", "instruction budget of 200000"},
	    {"function choose(u, ms) while true do pcall(function() while true do end end) end end",
	     "instruction budget"},
	    {"function choose(u, ms) local t = {} while true do t[#t + 1] = ('x'):rep(65536) .. "
	     "#t\n"
	     "end end",
	     "memory cap of 4194304 bytes exceeded"},
	    {"function choose(u, ms) return ('x'):rep(1 << 30) end", "memory cap"},
	    {"function choose(u, ms) return 42 end", "choose returned a number, not a machine id"},
	    {"function choose(u, ms) return {} end", "choose returned a table"},
	    {"function choose(u, ms) return 'nope' end", "'nope', which is not a machine"},
	    /* machine 3 exists but a.service/b.service cannot go there (metadata) */
	    {"function choose(u, ms, all) return all[3].id end",
	     "'33333333000000000000000000000000', which is not one of the feasible machines"},
	    {"function choose(u, ms) error({}) end", "error object is a table value"},
	    {"function choose(u, ms) error('boom') end", "boom"},
	};
	static struct unit_meta zone_a = {"zone", "a", false};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct fx f = {0};
		struct policy *p = load_text(bad[i].text, &small);
		struct sched_plan pl = SCHED_PLAN_INIT;
		static const int want[] = {1, 2, 1};

		add_machine(&f, "a", 0);
		add_machine(&f, "a", 0);
		add_machine(&f, "b", 0);
		for (int k = 0; k < 3; k++) {
			char n[32];
			struct unit_sched *o;

			snprintf(n, sizeof(n), "%c.service", 'a' + k);
			o = add_unit(&f, n, 0);
			o->metadata = &zone_a;
			o->n_metadata = 1;
		}
		plan(&f, p, &pl);
		assert_null(pl.policy_error);
		for (int k = 0; k < 3; k++) {
			if (!pl.v[k].policy_error || !strstr(pl.v[k].policy_error, bad[i].err))
				fail_msg("policy %zu unit %d: error '%s' lacks '%s'", i, k,
				         pl.v[k].policy_error, bad[i].err);
			assert_non_null(strstr(pl.v[k].policy_error, f.u[k].name));
			assert_int_equal(pl.v[k].status, SCHED_PLACED);
			assert_int_equal(machine_no(pl.v[k].machine_id), want[k]);
		}
		sched_plan_release(&pl);
		policy_free(p);
	}
	assert_int_equal(access("/tmp/flt-pwned", F_OK), -1);
}

static void test_load_errors(void **state)
{
	static const struct {
		const char *text;
		const char *err;
	} bad[] = {
	    {"function choose(u, ms) return ms[1].id", "'end' expected"},
	    {"x = 1", "does not define a function choose"},
	    {"while true do end", "instruction budget"},
	    {"local t = {} for i = 1, 1e9 do t[i] = ('x'):rep(1000) .. i end", "memory cap"},
	    {"\x1bLua\x54\x00\x19\x93\r\n\x1a\n", "attempt to load a binary chunk"},
	    {"io.write('hello')", "'io'"},
	};
	struct policy *p;
	struct buf err = BUF_INIT;

	(void)state;
	assert_int_equal(policy_new(&small, &p), 0);
	assert_int_equal(policy_load(p, "/nonexistent/policy.lua", &err), -ENOENT);
	assert_non_null(strstr(err.data, "cannot read '/nonexistent/policy.lua'"));
	assert_string_equal(policy_name(p), "builtin");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *path = write_tmp(bad[i].text);

		buf_clear(&err);
		assert_int_equal(policy_load(p, path, &err), FLT_EINVAL);
		if (!strstr(err.data, bad[i].err))
			fail_msg("load %zu: '%s' lacks '%s'", i, err.data, bad[i].err);
		assert_non_null(strstr(err.data, path));
		assert_string_equal(policy_name(p), "builtin");
		unlink(path);
		free(path);
	}
	buf_release(&err);
	policy_free(p);
}

static void rewrite(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

/* SIGHUP: reload takes the new file; a broken new file leaves the old policy in charge. */
static void test_reload(void **state)
{
	struct fx f = {0};
	struct policy *p;
	struct sched_plan pl = SCHED_PLAN_INIT;
	struct buf err = BUF_INIT;
	char *path = write_tmp("function choose(u, ms) return ms[#ms].id end\n");

	(void)state;
	add_machine(&f, NULL, 0);
	add_machine(&f, NULL, 0);
	add_unit(&f, "a.service", 0);
	assert_int_equal(policy_new(NULL, &p), 0);
	assert_int_equal(policy_load(p, path, &err), 0);
	plan(&f, p, &pl);
	assert_int_equal(machine_no(pl.v[0].machine_id), 2);
	sched_plan_release(&pl);

	rewrite(path, "function choose(u, ms) return ms[1].id end\n");
	assert_int_equal(policy_reload(p, &err), 0);
	plan(&f, p, &pl);
	assert_int_equal(machine_no(pl.v[0].machine_id), 1);
	sched_plan_release(&pl);

	rewrite(path, "function choose(u, ms) return ms[#ms].id\n");
	assert_int_equal(policy_reload(p, &err), FLT_EINVAL);
	assert_non_null(strstr(err.data, "'end' expected"));
	assert_string_equal(policy_name(p), path);
	plan(&f, p, &pl);
	assert_int_equal(machine_no(pl.v[0].machine_id), 1);
	assert_null(pl.v[0].policy_error);
	sched_plan_release(&pl);

	unlink(path);
	free(path);
	buf_release(&err);
	policy_free(p);
}

/* A memory cap too small for the machine tables: the plan goes on with the default. */
static void test_tables_too_big(void **state)
{
	struct fx f = {0};
	static const struct policy_limits tiny = {.budget = 1000, .mem_cap = 40u << 10};
	struct policy *p = load_text("function choose(u, ms) return ms[1].id end", &tiny);
	struct sched_plan pl = SCHED_PLAN_INIT;
	/* many metadata pairs per machine to blow 40 KiB */
	static struct sched_kv kv[200];
	static char keys[200][16];

	(void)state;
	for (int i = 0; i < 200; i++) {
		snprintf(keys[i], sizeof(keys[i]), "key%03d", i);
		kv[i].key = keys[i];
		kv[i].value = "some-value-long-enough";
	}
	for (int i = 0; i < MAXM; i++) {
		add_machine(&f, NULL, 0);
		f.m[i].metadata = kv;
		f.m[i].n_metadata = 200;
	}
	add_unit(&f, "a.service", 0);
	add_unit(&f, "b.service", 0);
	plan(&f, p, &pl);
	assert_non_null(pl.policy_error);
	assert_non_null(strstr(pl.policy_error, "memory cap"));
	assert_int_equal(machine_no(pl.v[0].machine_id), 1);
	assert_int_equal(machine_no(pl.v[1].machine_id), 2);
	sched_plan_release(&pl);
	policy_free(p);
}

/* The worked example of flotilla-lua(7), taken from the man page itself, does what it says. */
static void test_man_example(void **state)
{
	FILE *f = fopen(FLT_LUA_DIR "/../man/flotilla-lua.7", "r");
	struct buf text = BUF_INIT;
	char line[512];
	int stage = 0; /* 0 before .SH EXAMPLE, 1 before .nf, 2 in the code, 3 done */
	struct fx fx = {0};
	struct policy *p;
	struct sched_plan pl = SCHED_PLAN_INIT;
	static const int want[] = {1, 2, 3, 3};
	static const char *const names[] = {"app@1.service", "app@2.service", "app@3.service",
	                                    "db.service"};

	(void)state;
	assert_non_null(f);
	while (stage < 3 && fgets(line, sizeof(line), f)) {
		if (stage == 0 && !strncmp(line, ".SH EXAMPLE", 11))
			stage = 1;
		else if (stage == 1 && !strncmp(line, ".nf", 3))
			stage = 2;
		else if (stage == 2 && !strncmp(line, ".fi", 3))
			stage = 3;
		else if (stage == 2)
			for (char *c = line; *c; c++)
				if (!(c[0] == '\\' && c[1] == '-'))
					buf_putc(&text, *c);
	}
	fclose(f);
	assert_int_equal(stage, 3);
	p = load_text(text.data, NULL);
	add_machine(&fx, NULL, 0);
	add_machine(&fx, NULL, 0);
	add_machine(&fx, NULL, 0);
	fx.kv[2].key = "disk";
	fx.kv[2].value = "ssd";
	fx.m[2].metadata = &fx.kv[2];
	fx.m[2].n_metadata = 1;
	for (int i = 0; i < 4; i++)
		add_unit(&fx, names[i], 0);
	plan(&fx, p, &pl);
	for (int i = 0; i < 4; i++) {
		assert_null(pl.v[i].policy_error);
		assert_int_equal(machine_no(pl.v[i].machine_id), want[i]);
	}
	sched_plan_release(&pl);
	policy_free(p);
	buf_release(&text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_builtin),          cmocka_unit_test(test_default_lua),
	    cmocka_unit_test(test_spread_lua),       cmocka_unit_test(test_binpack_lua),
	    cmocka_unit_test(test_tables),           cmocka_unit_test(test_declined),
	    cmocka_unit_test(test_sandbox_contents), cmocka_unit_test(test_bad_policies),
	    cmocka_unit_test(test_load_errors),      cmocka_unit_test(test_reload),
	    cmocka_unit_test(test_tables_too_big),   cmocka_unit_test(test_man_example),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
