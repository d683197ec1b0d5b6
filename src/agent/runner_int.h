/* The runner's parts, private to src/agent: runner.c (runs, starting and stopping, dependencies,
 * the API, adoption and the life cycle), runner_conf.c (a unit's settings read from its file) and
 * runner_state.c (state files, reported state, status, the runner's journal lines). */
#ifndef FLT_AGENT_RUNNER_INT_H
#define FLT_AGENT_RUNNER_INT_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/runner.h"
#include "flotilla/driver.h"
#include "unit/unit.h"
#include "util/buf.h"

struct drv_entry;
struct drv_host;
struct journal;
struct stray_list;

#define RUNNER_MAX_UNITS 4096      /* a machine running more is misconfigured */
#define RUNNER_MAX_PROCS 16        /* "Process:" lines kept per unit */
#define RUNNER_MAX_TEXT  (1 << 20) /* unit file size */
#define RUNNER_MAX_BURST 1000      /* StartLimitBurst= cap (start times are kept per start) */
#define SYSTEMD_IDENT    "systemd[1]"

enum restart_mode {
	RESTART_NO,
	RESTART_ON_SUCCESS,
	RESTART_ON_FAILURE,
	RESTART_ON_ABNORMAL,
	RESTART_ON_WATCHDOG,
	RESTART_ON_ABORT,
	RESTART_ALWAYS,
};

struct ru_proc {
	char *kind, *command;
	int64_t pid;
	int exit_code, exit_signal;
};

struct ru_unit;

/* One run of a unit: the task the driver holds, and the copies of everything it points to, so a
 * unit can take new text while its old run is still stopping. */
struct ru_run {
	struct flt_task task;
	struct ru_unit *u; /* NULL once detached (ended) */
	const struct drv_entry *drv;
	struct unit_file opts_file;
	struct flt_option *opts;
	char *name, *machine_id, *text, *state_dir, *handle;
	struct buf partial; /* output not yet ended by a newline */
	char *partial_ident;
	unsigned timeout_stop_ms; /* the run's own: a new text must not change how the old stops */
	bool stopping, ended, started_logged;
	struct ru_run *next_dead;
};

struct ru_unit {
	struct ru_unit *next;
	struct runner *r;
	char *name, *text, *hash;
	enum runner_target target;
	struct unit_file uf; /* specifiers expanded */
	/* settings from the unit */
	char *description, *runtime, *main_command;
	enum restart_mode restart;
	uint64_t restart_usec, start_limit_usec;
	unsigned start_limit_burst;
	unsigned timeout_stop_ms;
	char **requires, **after, **binds;
	size_t n_requires, n_after, n_binds;
	/* what the runner wants */
	bool pending_start; /* start it when its dependencies allow */
	bool fenced;        /* paused by stop_all / adoption: only runner_set resumes */
	bool confirmed;     /* named since runner_sync_begin */
	bool forget;        /* target gone: free once no run is left */
	struct ru_run *run;
	ev_timer restart_timer;
	int64_t *starts; /* monotonic ns of recent starts, a ring of start_limit_burst */
	size_t n_starts, starts_head;
	/* state */
	enum flt_active active;
	char *sub;
	int64_t since, main_pid;
	char *handle;
	unsigned restarts;
	int exit_code, exit_signal;
	char *result, *message;
	struct ru_proc procs[RUNNER_MAX_PROCS];
	size_t n_procs;
	char *last_report; /* the last state reported, to report changes only */
};

struct runner {
	struct ev_loop *loop;
	char *state_dir, *units_dir, *runs_dir, *default_runtime, *machine_id, *hostname;
	struct runner_cb cb;
	struct drv_host *drivers;
	struct flt_host host;
	struct journal *journal;
	const char **runtimes;
	size_t n_runtimes;
	struct ru_unit *units;
	size_t n_units;
	struct ru_run *dead;         /* ended runs, freed when the outermost entry point leaves */
	struct stray_list *listings; /* drivers' list() answers, possibly still arriving */
	unsigned depth;
	bool dirty, syncing, freeing;
};

/* ---- runner_conf.c ---- */

/* Replace *dst (owned) by a copy of `src` (NULL allowed). 0, or -ENOMEM leaving *dst as it was. */
int ru_set_str(char **dst, const char *src);
/* Free `n` strings and the array; accepts NULL. */
void ru_strv_free(char **v, size_t n);
/* Read the unit file `text` (copied, as `hash`) into u's settings, specifiers expanded. 0,
 * FLT_ETOOBIG, FLT_EINVAL (does not parse), -ENOMEM; u keeps its old settings on failure. */
int ru_unit_configure(struct ru_unit *u, const char *text, const char *hash);
/* A unit name the runner accepts (also as a file name). */
bool ru_name_ok(const char *name);

/* ---- runner_state.c ---- */

/* "code=exited, status=1/FAILURE" / "code=killed, status=9/KILL", as systemd prints exits. */
int ru_format_exit(struct buf *b, int code, int sig, const char *result);
/* A line of u's journal as systemd[1] writes it; failures are logged. */
void ru_jlog(struct ru_unit *u, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Write (or remove) the state file the next runner adopts `unit` from; failures are logged. */
void ru_state_save(struct ru_unit *u);
void ru_state_remove(struct runner *r, const char *unit);
void ru_set_active(struct ru_unit *u, enum flt_active a, const char *sub);
void ru_set_end(struct ru_unit *u, int code, int sig, const char *result, const char *msg);
/* Tell the agent (struct runner_cb) when anything it publishes about `u` changed. */
void ru_report(struct ru_unit *u);

/* ---- runner.c ---- */

/* The unit `name` (borrowed), or NULL. */
struct ru_unit *ru_unit_find(const struct runner *r, const char *name);

#endif
