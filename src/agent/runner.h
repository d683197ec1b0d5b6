/* The runner: the agent's local side. It keeps the units this machine should have, runs them
 * through the runtime drivers (src/driver/host.h) with systemd's service semantics (Restart=,
 * RestartSec=, the start limit, TimeoutStopSec=, Requires=/After=/BindsTo= between local units),
 * reports each unit's state, keeps per-unit journals, and re-adopts runs after a daemon restart.
 * Daemon code on the loop: nothing blocks (small state-file writes and journal appends aside).
 * It knows nothing about the cluster: the agent tells it what to run (runner_set) and publishes
 * what it reports (struct runner_cb). */
#ifndef FLT_AGENT_RUNNER_H
#define FLT_AGENT_RUNNER_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

struct ev_loop;
struct flt_drv_config;
struct journal_follow;
struct runner;

struct runner_config {
	const char *state_dir;       /* <data-dir>/agent: units/<unit>.json, journal/<unit>.log */
	const char *driver_dir;      /* where the driver .so files are */
	const char *default_runtime; /* "exec" (NULL: "exec") */
	const char *machine_id;      /* 32 hex */
	const char *hostname;        /* for journal lines and status */
	const struct flt_drv_config *drv_cfg; /* --driver-opt pairs; NULL: none */
	size_t journal_max_bytes;             /* per unit, rotated once (.1); 0: 1 MiB */
};

enum runner_target {
	RUNNER_GONE,     /* stop the unit and forget it */
	RUNNER_LOADED,   /* known, not running: fleet's "loaded" */
	RUNNER_LAUNCHED, /* running, and kept running as its Restart= says */
};

/* A unit's reported state: model.h's MODEL_STATES fields. Strings borrowed for the callback. */
struct runner_state {
	const char *hash;
	const char *runtime;      /* the driver it runs on */
	const char *load_state;   /* "loaded" */
	const char *active_state; /* "active", "activating", "deactivating", "inactive", "failed" */
	const char *sub_state;    /* "running", "auto-restart", "dead", "failed", ... */
	int64_t since;            /* unix ns of the last active_state change */
	int64_t main_pid;         /* 0: none */
	const char *handle;       /* the driver's handle of the run, or NULL */
	unsigned restarts;        /* automatic restarts since the unit was (re)started */
	int exit_code;            /* last exit of the main process, or -1 */
	int exit_signal;          /* or 0 */
	const char *result;  /* systemd's Result ("success", "exit-code", "start-limit-hit"..) */
	const char *message; /* why it failed, or NULL */
};

/* `state` is called on every change of a unit's reported state, and with st == NULL when a unit
 * is forgotten (runner_set(RUNNER_GONE) done, or runner_sync_end): its state key should go. */
struct runner_cb {
	void (*state)(void *ud, const char *unit, const struct runner_state *st);
	void *ud;
};

/* Load the drivers of cfg->driver_dir (refusals are logged), open them, and take back what a
 * previous runner on the same state_dir left: each unit with a state file is known again with its
 * text and target, and its run is re-adopted through the driver (never started twice); a unit
 * whose run is gone waits for the next runner_set to be started. Runs a driver's list() reports
 * that no state file names are removed with remove(). The runner reports every unit it adopted
 * through `cb` (synchronously, before returning, or later from the loop).
 * Returns 0 (*ret owned), -ENOMEM, -errno (state dir). */
int runner_new(struct ev_loop *loop, const struct runner_config *cfg, const struct runner_cb *cb,
               struct runner **ret);
/* Daemon going down: release the runs WITHOUT stopping them (the next runner adopts them), close
 * the drivers. Accepts NULL. */
void runner_free(struct runner *r);

/* Tell the runner what `unit` should be. `unit_text` (the unit file) and `hash` (its fleet hash)
 * are copied; a new hash restarts a running unit with the new text. Idempotent: setting the same
 * target and hash again changes nothing, except that it resumes a unit paused by
 * runner_stop_all() or waiting after adoption. RUNNER_GONE ignores text and hash (may be NULL).
 * Errors are about the input only: FLT_EINVAL (bad name, the text does not parse), -ENOMEM. A
 * unit that cannot run here (runtime missing, driver refuses) is accepted and reported failed. */
int runner_set(struct runner *r, const char *unit, const char *unit_text, const char *hash,
               enum runner_target target);

/* Reconciling a whole list (e.g. after the agent restarts or resyncs with the store): between
 * begin and end, every unit not named by runner_set is stopped and forgotten at end. */
void runner_sync_begin(struct runner *r);
void runner_sync_end(struct runner *r);

/* Fencing (this machine lost the cluster): stop every run. Targets stay; runner_set again on a
 * unit resumes it. Returns the number of runs asked to stop. */
int runner_stop_all(struct runner *r);

/* Names of the runtimes that loaded, opened and work now (a driver's ready(): docker only while
 * its daemon answers). *ret is borrowed until the next call or runner_free. */
size_t runner_runtimes(struct runner *r, const char *const **ret);

/* The body of model.h's MODEL_STATUS_PATH for `unit`, appended to `out`.
 * 0, -ENOENT (unknown unit), -ENOMEM. */
int runner_status_json(struct runner *r, const char *unit, struct buf *out);
/* The current state of `unit` (borrowed until the runner next runs). 0 or -ENOENT. */
int runner_state(struct runner *r, const char *unit, struct runner_state *ret);

/* The last `lines` lines of `unit`'s journal ("Jul 04 10:22:01 host ident[pid]: text\n" each).
 * Works for units no longer known (their journal stays). 0, FLT_EINVAL, -ENOMEM, -errno. */
int runner_journal(struct runner *r, const char *unit, unsigned lines, struct buf *out);

/* `journal -f`: `cb` gets each new line of `unit`'s journal (with its '\n'; borrowed for the
 * call) until runner_unfollow (allowed inside cb) or runner_free (which does not call cb).
 * 0 (*ret owned by the runner), -ENOMEM. */
typedef void runner_line_fn(void *ud, const char *unit, const char *line, size_t len);
int runner_follow(struct runner *r, const char *unit, runner_line_fn *cb, void *ud,
                  struct journal_follow **ret);
/* Accepts NULL. */
void runner_unfollow(struct journal_follow *f);

#endif
