/* The scheduling core: given the live machines and the units, decide for every unit the machine it
 * runs on, or why it cannot run anywhere. Hard constraints ([X-Fleet] and [X-Flotilla]) are
 * enforced here in C; a Lua policy (policy.h) only picks among the machines that pass them.
 * A pure library: no I/O, no clock, no logging; the same input always gives the same plan.
 *
 * Semantics (fleet v1.0 unless said otherwise):
 * - Order: units by name (bytewise), except that a MachineOf peer is always decided before its
 *   followers. Each placement updates the counts the next decision sees.
 * - Stability: a unit whose current machine is in the input and still satisfies its constraints
 *   stays there; those units are kept first, then the others are placed.
 * - MachineID: equal to the machine id or a prefix of it.
 * - MachineOf: the machine must host every listed peer (a global peer counts on every machine it
 *   applies to). A follower moves with its peer; if a peer is missing, inactive or unplaced the
 *   follower is unplaced ("waiting for MachineOf peer x to be scheduled"). Cycles never place.
 * - MachineMetadata: values for the same key are OR'ed, different keys AND'ed; key!=value
 *   excludes machines whose key has that value (a machine without the key passes a negation).
 * - Conflicts: globs, both ways, against every unit placed on the machine (globals included).
 * - Replaces (globs; two units replacing each other cancel out): a replacing unit and a unit it
 *   replaces never share a machine. A replacing unit that has no valid place yet takes the
 *   machine of the first (by name) running unit it replaces, if the machine suits it, and that
 *   unit is placed elsewhere under all its own constraints (unlike fleet, which ignores them).
 *   If nothing else can take it, the replaced unit stays unplaced with a reason ("cannot share
 *   a machine with x (Replaces) on any eligible machine") and, as it may never return next to
 *   its replacement, the next plan gives the same answer: no flapping (fleet bug 8).
 * - Memory / CPUs: the machine's capacity (0 = unlimited) minus what the units placed there
 *   (globals included) request must cover the unit's request.
 * - Runtime: the machine must list the unit's effective runtime; needs_docker needs "docker".
 * - Global units are never placed by the plan; sched_global_applies() tells an agent whether to
 *   run one. They count towards load, resources and conflicts of the machines they apply to.
 */
#ifndef FLT_ENGINE_SCHED_H
#define FLT_ENGINE_SCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct unit_sched;
struct policy;

struct sched_kv {
	const char *key;
	const char *value;
};

/* One live machine. Every pointer is borrowed and must outlive the plan built from it. */
struct sched_machine {
	const char *id;                  /* 32 hex digits, unique */
	const char *public_ip;           /* may be NULL */
	const struct sched_kv *metadata; /* merged view (agent's + API overrides) */
	size_t n_metadata;
	const char *const *runtimes; /* e.g. {"exec", "docker"} */
	size_t n_runtimes;
	uint64_t memory;     /* bytes units may use, 0 = unlimited */
	uint32_t cpus_milli; /* milli-CPUs units may use, 0 = unlimited */
};

/* One unit. Every pointer is borrowed. Templates must not be passed. */
struct sched_unit {
	const char *name;              /* unique */
	const struct unit_sched *opts; /* parsed [X-Fleet]/[X-Flotilla]; NULL = no constraints */
	const char *runtime;           /* effective runtime the machine must offer, NULL = any */
	bool desired;                  /* desired state loaded or launched (not inactive) */
	const char *current;           /* machine id it is scheduled to now, or NULL */
};

enum sched_status {
	SCHED_SKIPPED, /* not for the plan: desired inactive, or global (no schedule key) */
	SCHED_PLACED,  /* machine_id set */
	SCHED_BLOCKED, /* desired but nowhere to go: reason set */
	SCHED_DEFERRED, /* not decided: the plan's time ran out; a later plan decides */
};

struct sched_result {
	enum sched_status status;
	const char *machine_id; /* borrowed from the input machine when PLACED, else NULL */
	char *reason;           /* owned, a sentence for users when BLOCKED, else NULL */
	char *policy_error;     /* owned: the Lua policy failed on this unit and the built-in
	                         * default decided instead; NULL otherwise. For the daemon's log. */
};

struct sched_plan {
	struct sched_result *v; /* owned, one per input unit, same index */
	size_t n;
	char *policy_error; /* owned: the policy could not be used at all in this plan (e.g. out
	                     * of memory building the machine tables), or NULL */
};
/* clang-format off */
#define SCHED_PLAN_INIT {NULL, 0, NULL}
/* clang-format on */

/* Build a plan for `units` on `machines`. `pol` may be NULL: the built-in least-loaded default
 * (fewest units, ties to the lower id) then decides. Both arrays are borrowed and may be in any
 * order. On success *ret (caller-owned storage, released with sched_plan_release) is written.
 * Errors: FLT_EINVAL for duplicate unit names or machine ids or a NULL name/id, -ENOMEM. A
 * failing policy is not an error: see sched_result.policy_error. */
int sched_plan_build(const struct sched_machine *machines, size_t n_machines,
                     const struct sched_unit *units, size_t n_units, struct policy *pol,
                     struct sched_plan *ret);
/* The same, but placing new units stops once the monotonic clock passes `deadline_ns` (0: no
 * deadline): units not reached by then are SCHED_DEFERRED. The daemon plans on its event loop,
 * which must keep answering heartbeats and Raft. */
int sched_plan_build_until(const struct sched_machine *machines, size_t n_machines,
                           const struct sched_unit *units, size_t n_units, struct policy *pol,
                           int64_t deadline_ns, struct sched_plan *ret);
void sched_plan_release(struct sched_plan *p);

/* Whether an agent on machine `m` runs global unit `opts` with effective runtime `runtime`
 * (NULL = any): MachineMetadata matches, the runtime (and docker when needed) is offered and
 * MachineID, if any, matches. Conflicts with units already on the machine are the agent's to
 * check (it knows what runs there). */
bool sched_global_applies(const struct sched_machine *m, const struct unit_sched *opts,
                          const char *runtime);

/* Whether MachineMetadata of `opts` matches `m` (same key OR, different keys AND, negations). */
bool sched_metadata_match(const struct sched_machine *m, const struct unit_sched *opts);

#endif
