/* The Lua placement policy host: loads a policy file into a sandboxed Lua state (no io, os,
 * package, debug, coroutine, load*, dofile, string.dump; text chunks only), bounds every call by
 * an instruction budget and a memory cap, and asks it to pick one machine among the feasible ones
 * the scheduler (sched.h) found. A library: errors come back as strings, nothing is logged.
 * The policy API seen from Lua is documented in flotilla-lua(7).
 *
 * Life of a plan, driven by sched_plan_build(): policy_plan_begin() builds one Lua table per
 * machine, policy_plan_commit() updates its counts as units are placed, policy_choose() asks for
 * one decision, policy_plan_end() drops the tables. */
#ifndef FLT_ENGINE_POLICY_H
#define FLT_ENGINE_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

struct sched_machine;
struct sched_unit;
struct policy;

struct policy_limits {
	uint64_t budget; /* Lua VM instructions per call (load, choose), 0 = default (2,000,000) */
	size_t mem_cap;  /* bytes the Lua state may hold, 0 = default (64 MiB) */
};

/* A policy object with no file loaded: policy_choose() then always returns POLICY_DEFAULT so the
 * built-in default decides. `lim` may be NULL (defaults). 0 or -ENOMEM. */
int policy_new(const struct policy_limits *lim, struct policy **ret);
void policy_free(struct policy *p);

/* Load the policy file at `path` (copied, remembered for policy_reload). The file is run once
 * and must define a global function choose(unit, machines, all). On failure the policy that was
 * loaded before (or the built-in default) stays in use and a message is appended to `err`
 * ("cannot read ...", a Lua syntax or runtime error, "does not define choose").
 * Returns 0, FLT_EINVAL (the file is at fault), -errno from reading, or -ENOMEM. */
int policy_load(struct policy *p, const char *path, struct buf *err);
/* Load the last path given to policy_load again (SIGHUP); the path is remembered even when its
 * load failed, so fixing the file and reloading works. Same errors; FLT_EINVAL with a message
 * when no file was ever given, -EBUSY between policy_plan_begin and policy_plan_end. */
int policy_reload(struct policy *p, struct buf *err);
/* "builtin" or the path of the loaded file (borrowed, valid until the next load). */
const char *policy_name(const struct policy *p);

/* Begin a plan over `machines` (borrowed until policy_plan_end). 0, POLICY_DEFAULT when no file
 * is loaded, or FLT_EINVAL with `err` (e.g. the memory cap is too small for the tables): the
 * caller then decides this plan without the policy. */
int policy_plan_begin(struct policy *p, const struct sched_machine *machines, size_t n,
                      struct buf *err);
/* Unit `u` is now placed on machine index `mi`: update that machine's table (units, nunits,
 * memory_used, cpus_used). 0 or FLT_EINVAL with `err` (then stop using the policy this plan). */
int policy_plan_commit(struct policy *p, size_t mi, const struct sched_unit *u, struct buf *err);
void policy_plan_end(struct policy *p);

#define POLICY_DEFAULT  1 /* no Lua policy here: use the built-in default */
#define POLICY_DECLINED 2 /* the policy said no machine suits: reason in `reason` */

/* Ask the policy to choose among the candidate machine indices `cand` (n >= 1, in ascending
 * order of machine id).
 * Returns 0 with *ret_mi set to one of `cand`, POLICY_DECLINED with a reason appended to
 * `reason`, POLICY_DEFAULT when no policy is loaded, or FLT_EINVAL when the policy failed (an
 * error, the budget or the memory cap exceeded, a result that is not one of the candidates) with
 * the message appended to `err`: the caller then uses the built-in default. -ENOMEM possible. */
int policy_choose(struct policy *p, const struct sched_unit *u, const uint32_t *cand, size_t n,
                  size_t *ret_mi, struct buf *reason, struct buf *err);

#endif
