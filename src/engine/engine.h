/* The engine: on the Raft leader only, it keeps machine liveness in memory from the agents'
 * heartbeats (writing the machine registry only when a machine appears, changes or dies), and
 * reconciles the units' desired states with the machines into placements under
 * /_flotilla/schedule (engine/model.h), through the log like any other write. */
#ifndef FLT_ENGINE_H
#define FLT_ENGINE_H

#include <stddef.h>

struct ev_loop;
struct engine;
struct node;
struct store;

struct engine_config {
	unsigned machine_ttl_ms;     /* a machine silent this long is dead (--agent-ttl) */
	const char *policy_path;     /* --scheduler-policy, or NULL for the built-in default */
	unsigned reconcile_ms;       /* periodic plan even without changes; 0: 30000 */
	const char *default_runtime; /* of units that name none (--default-runtime) */
};

int engine_new(struct ev_loop *loop, struct store *store, struct node *node,
               const struct engine_config *cfg, struct engine **ret);
void engine_free(struct engine *e);

/* A heartbeat (the machine object of model.h as JSON) arrived at the leader. 0; FLT_EINVAL
 * with a message in *why (static) for a malformed one; FLT_ENOTLEADER if this node does not
 * lead. */
int engine_heartbeat(struct engine *e, const char *body, size_t len, const char **why);
/* SIGHUP: load the policy file again (the old policy stays when the new one fails). */
void engine_reload_policy(struct engine *e);

#endif
