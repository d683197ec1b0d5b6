/* The Lua policy host (see policy.h): a sandboxed Lua 5.4 state per loaded file, with a counting
 * allocator that refuses to grow past the memory cap and a count hook that stops a call past its
 * instruction budget. Every Lua API call that may allocate runs inside lua_pcall, because a
 * memory error outside a protected call would abort the process. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "engine/policy.h"
#include "engine/sched.h"
#include "unit/unit.h"
#include "util/err.h"

#define DEFAULT_BUDGET  2000000u
#define DEFAULT_MEM_CAP (64u << 20)
#define MAX_FILE        (1u << 20)
#define MAX_MSG         512 /* longest error or reason taken from the policy */

/* One Lua state and its accounting; the allocator's and the hook's user data. */
struct lstate {
	lua_State *L;
	size_t used, cap;
	int budget;
	bool refused; /* the allocator said no since the last call began */
	bool expired; /* the budget ran out in the current call */
};

struct policy {
	struct policy_limits lim;
	struct lstate *ls; /* NULL: built-in default only */
	char *path;        /* last path given to policy_load, owned */
	char *loaded;      /* path of the file in ls, owned */
	/* plan state */
	const struct sched_machine *m;
	size_t nm;
	bool in_plan;
	uint32_t *nunits; /* per machine, kept in C so a policy that edits its tables cannot skew
	                   * what the next call sees */
	uint64_t *mem_used, *cpu_used;
};

/* ---- the state ---- */

static void *l_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	struct lstate *s = ud;
	void *n;

	if (!ptr)
		osize = 0; /* then osize is a type tag, not a size */
	if (nsize == 0) {
		free(ptr);
		s->used -= osize;
		return NULL;
	}
	if (nsize > osize && nsize - osize > s->cap - s->used) {
		s->refused = true;
		return NULL;
	}
	n = realloc(ptr, nsize);
	if (!n)
		return NULL;
	s->used = s->used - osize + nsize;
	return n;
}

static void l_hook(lua_State *L, lua_Debug *ar)
{
	void *ud;
	struct lstate *s;

	(void)ar;
	lua_getallocf(L, &ud);
	s = ud;
	s->expired = true;
	/* From now on every instruction fails, so a pcall inside the policy cannot swallow the
	 * error and go on looping. */
	lua_sethook(L, l_hook, LUA_MASKCOUNT, 1);
	luaL_error(L, "instruction budget of %d exceeded", s->budget);
}

static void arm(struct lstate *s)
{
	s->refused = false;
	s->expired = false;
	lua_sethook(s->L, l_hook, LUA_MASKCOUNT, s->budget);
}

static void lstate_free(struct lstate *s)
{
	if (!s)
		return;
	if (s->L) {
		/* finalizers a policy may have set die at their first instruction */
		lua_sethook(s->L, l_hook, LUA_MASKCOUNT, 1);
		lua_close(s->L);
	}
	free(s);
}

/* Append the error on top of the stack to `err` as a message for users, and pop it. */
static void take_error(struct lstate *s, int rc, const char *what, struct buf *err)
{
	const char *msg = lua_type(s->L, -1) == LUA_TSTRING ? lua_tostring(s->L, -1) : NULL;

	buf_printf(err, "%s: ", what);
	if (s->refused || rc == LUA_ERRMEM)
		buf_printf(err, "memory cap of %zu bytes exceeded", s->cap);
	else if (msg)
		buf_printf(err, "%.*s", MAX_MSG, msg);
	else
		buf_printf(err, "error object is a %s value", luaL_typename(s->L, -1));
	lua_settop(s->L, 0);
	if (s->refused || rc == LUA_ERRMEM)
		lua_gc(s->L, LUA_GCCOLLECT);
}

/* Run C function `fn` with `arg` in protected mode (for Lua API calls that may allocate). */
static int protect(struct lstate *s, lua_CFunction fn, void *arg, int nres)
{
	lua_settop(s->L, 0);
	lua_pushcfunction(s->L, fn);
	lua_pushlightuserdata(s->L, arg);
	arm(s);
	return lua_pcall(s->L, 1, nres, 0);
}

static int open_sandbox(lua_State *L)
{
	static const luaL_Reg libs[] = {
	    {LUA_GNAME, luaopen_base},        {LUA_TABLIBNAME, luaopen_table},
	    {LUA_STRLIBNAME, luaopen_string}, {LUA_MATHLIBNAME, luaopen_math},
	    {LUA_UTF8LIBNAME, luaopen_utf8},
	};
	/* Everything that reads files, loads code (text or bytecode), prints, or steers the GC. */
	static const char *const drop[] = {"dofile",  "loadfile", "load",          "loadstring",
	                                   "require", "print",    "collectgarbage"};

	for (size_t i = 0; i < sizeof(libs) / sizeof(libs[0]); i++) {
		luaL_requiref(L, libs[i].name, libs[i].func, 1);
		lua_pop(L, 1);
	}
	for (size_t i = 0; i < sizeof(drop) / sizeof(drop[0]); i++) {
		lua_pushnil(L);
		lua_setglobal(L, drop[i]);
	}
	lua_getglobal(L, LUA_STRLIBNAME);
	lua_pushnil(L);
	lua_setfield(L, -2, "dump");
	lua_pop(L, 1);
	/* math.random is seeded from the clock: a policy must be deterministic */
	lua_getglobal(L, LUA_MATHLIBNAME);
	lua_pushnil(L);
	lua_setfield(L, -2, "random");
	lua_pushnil(L);
	lua_setfield(L, -2, "randomseed");
	lua_pop(L, 1);
	return 0;
}

static int grab_choose(lua_State *L)
{
	if (lua_getglobal(L, "choose") != LUA_TFUNCTION)
		return luaL_error(L, "does not define a function choose(unit, machines, all)");
	lua_setfield(L, LUA_REGISTRYINDEX, "flt.choose");
	return 0;
}

static int read_file(const char *path, struct buf *out, struct buf *err)
{
	FILE *f = fopen(path, "re");
	char chunk[4096];
	size_t n;
	int rc = 0;

	if (!f) {
		rc = -errno;
		buf_printf(err, "cannot read '%s': %s", path, strerror(errno));
		return rc;
	}
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		if (out->len + n > MAX_FILE) {
			buf_printf(err, "cannot load '%s': larger than %u bytes", path, MAX_FILE);
			rc = FLT_EINVAL;
			break;
		}
		if (buf_append(out, chunk, n) < 0) {
			rc = -ENOMEM;
			break;
		}
	}
	if (!rc && ferror(f)) {
		rc = -EIO;
		buf_printf(err, "cannot read '%s': %s", path, strerror(EIO));
	}
	fclose(f);
	return rc;
}

static int load_file(struct policy *p, const char *path, struct buf *err)
{
	struct buf text = BUF_INIT, name = BUF_INIT, what = BUF_INIT;
	struct lstate *s;
	int rc;

	rc = read_file(path, &text, err);
	if (rc < 0)
		goto out;
	rc = -ENOMEM;
	s = calloc(1, sizeof(*s));
	if (!s)
		goto out;
	s->cap = p->lim.mem_cap;
	s->budget = (int)p->lim.budget;
	s->L = lua_newstate(l_alloc, s);
	/* "@path" names the chunk in Lua's messages; the prefix of ours is built beside it */
	if (!s->L || buf_printf(&name, "@%s", path) < 0 ||
	    buf_printf(&what, "cannot load policy '%s'", path) < 0) {
		lstate_free(s);
		goto out;
	}
	rc = FLT_EINVAL;
	if (protect(s, open_sandbox, NULL, 0) != LUA_OK) {
		take_error(s, LUA_ERRMEM, what.data, err);
		goto fail;
	}
	/* "t": text only, never precompiled chunks */
	if ((rc = luaL_loadbufferx(s->L, text.data ? text.data : "", text.len, name.data, "t")) !=
	    LUA_OK) {
		take_error(s, rc, what.data, err);
		rc = FLT_EINVAL;
		goto fail;
	}
	arm(s);
	if ((rc = lua_pcall(s->L, 0, 0, 0)) != LUA_OK) {
		take_error(s, rc, what.data, err);
		rc = FLT_EINVAL;
		goto fail;
	}
	if ((rc = protect(s, grab_choose, NULL, 0)) != LUA_OK) {
		take_error(s, rc, what.data, err);
		rc = FLT_EINVAL;
		goto fail;
	}
	lua_settop(s->L, 0);
	free(p->loaded);
	p->loaded = strdup(path);
	if (!p->loaded) {
		rc = -ENOMEM;
		goto fail;
	}
	lstate_free(p->ls);
	p->ls = s;
	rc = 0;
	goto out;
fail:
	lstate_free(s);
out:
	buf_release(&text);
	buf_release(&name);
	buf_release(&what);
	return rc;
}

int policy_new(const struct policy_limits *lim, struct policy **ret)
{
	struct policy *p = calloc(1, sizeof(*p));

	if (!p)
		return -ENOMEM;
	if (lim)
		p->lim = *lim;
	if (!p->lim.budget)
		p->lim.budget = DEFAULT_BUDGET;
	if (p->lim.budget > INT_MAX)
		p->lim.budget = INT_MAX;
	if (!p->lim.mem_cap)
		p->lim.mem_cap = DEFAULT_MEM_CAP;
	*ret = p;
	return 0;
}

void policy_free(struct policy *p)
{
	if (!p)
		return;
	policy_plan_end(p);
	lstate_free(p->ls);
	free(p->path);
	free(p->loaded);
	free(p);
}

int policy_load(struct policy *p, const char *path, struct buf *err)
{
	char *copy = strdup(path);

	if (!copy)
		return -ENOMEM;
	free(p->path);
	p->path = copy;
	return policy_reload(p, err);
}

int policy_reload(struct policy *p, struct buf *err)
{
	if (!p->path) {
		buf_puts(err, "no policy file to reload");
		return FLT_EINVAL;
	}
	if (p->in_plan)
		return -EBUSY;
	return load_file(p, p->path, err);
}

const char *policy_name(const struct policy *p)
{
	return p->loaded && p->ls ? p->loaded : "builtin";
}

/* ---- plans ---- */

static void set_int(lua_State *L, const char *k, lua_Integer v)
{
	lua_pushinteger(L, v);
	lua_setfield(L, -2, k);
}

static void set_str(lua_State *L, const char *k, const char *v)
{
	if (!v)
		return;
	lua_pushstring(L, v);
	lua_setfield(L, -2, k);
}

static int cmp_id(const void *a, const void *b, void *arg)
{
	const struct sched_machine *m = arg;

	return strcmp(m[*(const uint32_t *)a].id, m[*(const uint32_t *)b].id);
}

/* Registry: flt.byidx[mi+1] = machine table, flt.all = the same tables by id, flt.ids[id] = mi. */
static int build_machines(lua_State *L)
{
	struct policy *p = lua_touserdata(L, 1);
	uint32_t *order = NULL;

	lua_createtable(L, (int)p->nm, 0); /* 2: byidx */
	lua_createtable(L, 0, (int)p->nm); /* 3: ids */
	for (size_t i = 0; i < p->nm; i++) {
		const struct sched_machine *m = &p->m[i];

		lua_createtable(L, 0, 10);
		set_str(L, "id", m->id);
		set_str(L, "ip", m->public_ip);
		set_int(L, "memory", (lua_Integer)m->memory);
		set_int(L, "cpus", (lua_Integer)m->cpus_milli);
		set_int(L, "nunits", 0);
		set_int(L, "memory_used", 0);
		set_int(L, "cpus_used", 0);
		lua_createtable(L, 0, (int)m->n_metadata);
		for (size_t j = 0; j < m->n_metadata; j++)
			if (m->metadata[j].key)
				set_str(L, m->metadata[j].key, m->metadata[j].value);
		lua_setfield(L, -2, "metadata");
		lua_createtable(L, (int)m->n_runtimes, 0);
		for (size_t j = 0; j < m->n_runtimes; j++) {
			lua_pushstring(L, m->runtimes[j]);
			lua_rawseti(L, -2, (lua_Integer)j + 1);
		}
		lua_setfield(L, -2, "runtimes");
		lua_newtable(L);
		lua_setfield(L, -2, "units");
		lua_rawseti(L, 2, (lua_Integer)i + 1);
		lua_pushinteger(L, (lua_Integer)i);
		lua_setfield(L, 3, m->id);
	}
	lua_setfield(L, LUA_REGISTRYINDEX, "flt.ids");
	lua_createtable(L, (int)p->nm, 0);                                     /* 3: all */
	order = lua_newuserdatauv(L, (p->nm ? p->nm : 1) * sizeof(*order), 0); /* GC'd */
	for (size_t i = 0; i < p->nm; i++)
		order[i] = (uint32_t)i;
	qsort_r(order, p->nm, sizeof(*order), cmp_id, (void *)p->m);
	for (size_t i = 0; i < p->nm; i++) {
		lua_rawgeti(L, 2, (lua_Integer)order[i] + 1);
		lua_rawseti(L, 3, (lua_Integer)i + 1);
	}
	lua_pop(L, 1);
	lua_setfield(L, LUA_REGISTRYINDEX, "flt.all");
	lua_setfield(L, LUA_REGISTRYINDEX, "flt.byidx");
	return 0;
}

int policy_plan_begin(struct policy *p, const struct sched_machine *machines, size_t n,
                      struct buf *err)
{
	int rc;

	policy_plan_end(p);
	if (!p->ls)
		return POLICY_DEFAULT;
	p->m = machines;
	p->nm = n;
	p->nunits = calloc(n ? n : 1, sizeof(*p->nunits));
	p->mem_used = calloc(n ? n : 1, sizeof(*p->mem_used));
	p->cpu_used = calloc(n ? n : 1, sizeof(*p->cpu_used));
	p->in_plan = true;
	if (!p->nunits || !p->mem_used || !p->cpu_used) {
		policy_plan_end(p);
		return -ENOMEM;
	}
	rc = protect(p->ls, build_machines, p, 0);
	if (rc != LUA_OK) {
		take_error(p->ls, rc, "cannot build the policy's machine tables", err);
		policy_plan_end(p);
		return FLT_EINVAL;
	}
	return 0;
}

struct commit_arg {
	struct policy *p;
	size_t mi;
	const struct sched_unit *u;
};

static int do_commit(lua_State *L)
{
	struct commit_arg *a = lua_touserdata(L, 1);
	struct policy *p = a->p;
	const struct unit_sched *o = a->u->opts;

	p->nunits[a->mi]++;
	if (o) {
		p->mem_used[a->mi] += o->memory;
		p->cpu_used[a->mi] += o->cpus_milli;
	}
	lua_getfield(L, LUA_REGISTRYINDEX, "flt.byidx");
	lua_rawgeti(L, -1, (lua_Integer)a->mi + 1);
	if (!lua_istable(L, -1))
		return luaL_error(L, "machine table %d is gone", (int)a->mi);
	set_int(L, "nunits", p->nunits[a->mi]);
	set_int(L, "memory_used", (lua_Integer)p->mem_used[a->mi]);
	set_int(L, "cpus_used", (lua_Integer)p->cpu_used[a->mi]);
	if (lua_getfield(L, -1, "units") != LUA_TTABLE) {
		lua_pop(L, 1);
		lua_newtable(L);
		lua_pushvalue(L, -1);
		lua_setfield(L, -3, "units");
	}
	lua_pushstring(L, a->u->name);
	lua_rawseti(L, -2, p->nunits[a->mi]);
	return 0;
}

int policy_plan_commit(struct policy *p, size_t mi, const struct sched_unit *u, struct buf *err)
{
	struct commit_arg a = {p, mi, u};
	int rc;

	if (!p->in_plan || mi >= p->nm)
		return FLT_EINVAL;
	rc = protect(p->ls, do_commit, &a, 0);
	if (rc != LUA_OK) {
		take_error(p->ls, rc, "cannot update the policy's machine tables", err);
		return FLT_EINVAL;
	}
	return 0;
}

void policy_plan_end(struct policy *p)
{
	if (!p)
		return;
	if (p->in_plan && p->ls) {
		lua_State *L = p->ls->L;

		/* setting registry fields to nil never allocates */
		lua_settop(L, 0);
		lua_pushnil(L);
		lua_setfield(L, LUA_REGISTRYINDEX, "flt.byidx");
		lua_pushnil(L);
		lua_setfield(L, LUA_REGISTRYINDEX, "flt.all");
		lua_pushnil(L);
		lua_setfield(L, LUA_REGISTRYINDEX, "flt.ids");
	}
	free(p->nunits);
	free(p->mem_used);
	free(p->cpu_used);
	p->nunits = NULL;
	p->mem_used = NULL;
	p->cpu_used = NULL;
	p->m = NULL;
	p->nm = 0;
	p->in_plan = false;
}

struct choose_arg {
	struct policy *p;
	const struct sched_unit *u;
	const uint32_t *cand;
	size_t n;
	size_t mi;     /* out */
	bool declined; /* out: nil returned; the reason (or nil) is left on the stack */
};

/* Build the arguments, call choose, check its answer. Returns the reason when it declined. */
static int do_choose(lua_State *L)
{
	struct choose_arg *a = lua_touserdata(L, 1);
	const struct unit_sched *o = a->u->opts;
	int byidx;
	lua_Integer mi;

	lua_settop(L, 0);
	lua_getfield(L, LUA_REGISTRYINDEX, "flt.byidx");
	byidx = lua_gettop(L);
	lua_getfield(L, LUA_REGISTRYINDEX, "flt.choose");
	lua_createtable(L, 0, 6);
	set_str(L, "name", a->u->name);
	set_str(L, "runtime", a->u->runtime);
	set_str(L, "current", a->u->current);
	set_int(L, "memory", o ? (lua_Integer)o->memory : 0);
	set_int(L, "cpus", o ? (lua_Integer)o->cpus_milli : 0);
	lua_createtable(L, (int)a->n, 0);
	for (size_t i = 0; i < a->n; i++) {
		lua_rawgeti(L, byidx, (lua_Integer)a->cand[i] + 1);
		lua_rawseti(L, -2, (lua_Integer)i + 1);
	}
	lua_getfield(L, LUA_REGISTRYINDEX, "flt.all");
	lua_call(L, 3, 2);
	/* results at byidx+1 (choice), byidx+2 (reason) */
	if (lua_isnil(L, byidx + 1)) {
		a->declined = true;
		lua_pushvalue(L, byidx + 2);
		return 1;
	}
	if (lua_type(L, byidx + 1) != LUA_TSTRING)
		return luaL_error(L, "choose returned a %s, not a machine id",
		                  luaL_typename(L, byidx + 1));
	lua_getfield(L, LUA_REGISTRYINDEX, "flt.ids");
	lua_pushvalue(L, byidx + 1);
	if (lua_rawget(L, -2) != LUA_TNUMBER)
		return luaL_error(L, "choose returned '%s', which is not a machine",
		                  lua_tostring(L, byidx + 1));
	mi = lua_tointeger(L, -1);
	for (size_t i = 0; i < a->n; i++)
		if ((lua_Integer)a->cand[i] == mi) {
			a->mi = (size_t)mi;
			return 0;
		}
	return luaL_error(L, "choose returned '%s', which is not one of the feasible machines",
	                  lua_tostring(L, byidx + 1));
}

int policy_choose(struct policy *p, const struct sched_unit *u, const uint32_t *cand, size_t n,
                  size_t *ret_mi, struct buf *reason, struct buf *err)
{
	struct choose_arg a = {.p = p, .u = u, .cand = cand, .n = n};
	int rc;

	if (!p->ls || !p->in_plan)
		return POLICY_DEFAULT;
	rc = protect(p->ls, do_choose, &a, 1);
	if (rc != LUA_OK) {
		struct buf what = BUF_INIT;

		if (buf_printf(&what, "policy '%s' failed on '%s'", p->loaded, u->name) < 0)
			return -ENOMEM;
		take_error(p->ls, rc, what.data, err);
		buf_release(&what);
		return FLT_EINVAL;
	}
	if (a.declined) {
		lua_State *L = p->ls->L;
		const char *why = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;

		buf_printf(reason, "%.*s", MAX_MSG,
		           why ? why : "the placement policy chose no machine");
		lua_settop(L, 0);
		return POLICY_DECLINED;
	}
	lua_settop(p->ls->L, 0);
	*ret_mi = a.mi;
	return 0;
}
