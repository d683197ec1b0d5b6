/* The runner: systemd's service manager reduced to what fleet asked of it, on top of the runtime
 * drivers. Each unit has a target (loaded / launched), at most one run (a struct flt_task handed
 * to a driver), and a state derived from the driver's reports plus the runner's own decisions
 * (auto-restart, start limit, dependencies). Entry points (API calls, driver callbacks, timers)
 * only record what happened; the decisions that follow (start what may start, free what ended)
 * are taken when the outermost entry point leaves, so a driver calling back from inside start()
 * or stop() never finds a unit freed under it. A unit's settings are read in runner_conf.c; what
 * it reports, its state file and its status are in runner_state.c. */
#include "agent/runner.h"

#include <dirent.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/journal.h"
#include "agent/runner_int.h"
#include "driver/host.h"
#include "flotilla/driver.h"
#include "unit/unit.h"
#include "util/err.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/util.h"

static void leave(struct runner *r);

static bool strv_has(char *const *v, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(v[i], s))
			return true;
	return false;
}

/* The unit cannot run (runtime missing, driver refused, start limit): failed until set again. */
static void stop_dependents(struct ru_unit *x);

static void fail_unit(struct ru_unit *u, const char *result, const char *msg)
{
	u->pending_start = false;
	ev_timer_stop(u->r->loop, &u->restart_timer);
	u->main_pid = 0;
	/* The last exit stays visible: it is why a start limit was hit. */
	ru_set_end(u, u->exit_code, u->exit_signal, result, msg);
	ru_set_active(u, FLT_FAILED, "failed");
	if (msg)
		log_warn("unit '%s' failed: %s", u->name, msg);
	ru_report(u);
	stop_dependents(u);
}

/* ---------------------------------------------------------------- runs */

static void run_free(struct ru_run *run)
{
	if (!run)
		return;
	unit_file_release(&run->opts_file);
	free(run->opts);
	free(run->name);
	free(run->machine_id);
	free(run->text);
	free(run->state_dir);
	free(run->handle);
	free(run->partial_ident);
	buf_release(&run->partial);
	free(run);
}

static struct ru_run *run_new(struct ru_unit *u, const struct drv_entry *drv)
{
	struct runner *r = u->r;
	struct ru_run *run = calloc(1, sizeof(*run));
	struct buf dir = BUF_INIT;

	if (!run)
		return NULL;
	run->u = u;
	run->drv = drv;
	run->timeout_stop_ms = u->timeout_stop_ms;
	for (size_t i = 0; i < u->uf.n; i++)
		if (unit_file_add(&run->opts_file, u->uf.v[i].section, u->uf.v[i].name,
		                  u->uf.v[i].value) < 0)
			goto fail;
	if (u->uf.n) {
		run->opts = calloc(u->uf.n, sizeof(*run->opts));
		if (!run->opts)
			goto fail;
	}
	for (size_t i = 0; i < run->opts_file.n; i++) {
		run->opts[i].section = run->opts_file.v[i].section;
		run->opts[i].name = run->opts_file.v[i].name;
		run->opts[i].value = run->opts_file.v[i].value;
	}
	if (buf_printf(&dir, "%s/%s", r->runs_dir, u->name) < 0)
		goto fail;
	if (fs_mkdir_p(dir.data, 0750) < 0)
		log_warn("cannot create '%s': %s", dir.data, strerror(errno));
	run->state_dir = buf_steal(&dir);
	run->name = strdup(u->name);
	run->machine_id = strdup(r->machine_id);
	run->text = strdup(u->text ? u->text : "");
	if (!run->name || !run->machine_id || !run->text)
		goto fail;
	run->task.unit = run->name;
	run->task.machine_id = run->machine_id;
	run->task.options = run->opts;
	run->task.n_options = run->opts_file.n;
	run->task.unit_text = run->text;
	run->task.state_dir = run->state_dir;
	run->task.host_data = run;
	return run;
fail:
	buf_release(&dir);
	run_free(run);
	return NULL;
}

static void flush_partial(struct ru_run *run)
{
	int rc;

	if (!run->partial.len || !run->u)
		goto out;
	rc = journal_append(run->u->r->journal, run->name, flt_realtime_ns(),
	                    run->partial_ident ? run->partial_ident : run->drv->name,
	                    run->partial.data, run->partial.len);
	if (rc < 0)
		log_warn("cannot append to the journal of '%s': %s", run->name, flt_strerror(rc));
out:
	buf_clear(&run->partial);
}

/* The run is over (the driver said so, or never took it): the unit lets go of it. */
static void run_detach(struct ru_run *run)
{
	struct ru_unit *u = run->u;

	if (!u)
		return;
	flush_partial(run);
	run->ended = true;
	run->u = NULL;
	if (u->run == run)
		u->run = NULL;
	free(u->handle);
	u->handle = NULL;
	u->main_pid = 0;
	run->next_dead = u->r->dead;
	u->r->dead = run;
	u->r->dirty = true;
	if (!u->forget)
		ru_state_save(u);
}

/* Ask the driver to stop the run of `u`. */
static void stop_run(struct ru_unit *u)
{
	struct ru_run *run = u->run;
	int rc;

	ev_timer_stop(u->r->loop, &u->restart_timer);
	if (!run) {
		if (u->active == FLT_ACTIVATING) { /* waiting in auto-restart */
			ru_set_active(u, FLT_INACTIVE, "dead");
			ru_report(u);
			/* Its dependents outlived the crash (auto-restart keeps them); not this.
			 * The state change above ends any recursion through a dependency cycle. */
			stop_dependents(u);
		}
		return;
	}
	if (run->stopping)
		return;
	run->stopping = true;
	ru_jlog(u, "Stopping %s...", u->description);
	u->r->depth++;
	rc = run->drv->ops->stop(run->drv->drv, &run->task, run->timeout_stop_ms);
	u->r->depth--;
	if (rc < 0 && !run->ended) {
		/* The driver lost it: treat as stopped, nothing more can be done from here. */
		log_warn("driver '%s' cannot stop '%s': %s", run->drv->name, u->name,
		         flt_strerror(rc));
		ru_set_active(u, FLT_INACTIVE, "dead");
		run_detach(run);
		ru_report(u);
	}
	stop_dependents(u);
}

/* Requires=/BindsTo= on `x` while `x` goes down: the dependents go down too, and start again when
 * `x` is back (if they are still launched). */
static void stop_dependents(struct ru_unit *x)
{
	for (struct ru_unit *d = x->r->units; d; d = d->next) {
		if (d == x || !(strv_has(d->requires, d->n_requires, x->name) ||
		                strv_has(d->binds, d->n_binds, x->name)))
			continue;
		if (d->target == RUNNER_LAUNCHED && !d->fenced &&
		    (d->run || d->pending_start || ev_is_active(&d->restart_timer)))
			d->pending_start = true;
		if (d->run || ev_is_active(&d->restart_timer))
			stop_run(d);
	}
}

static bool clean_signal(int sig)
{
	return sig == SIGHUP || sig == SIGINT || sig == SIGTERM || sig == SIGPIPE;
}

/* systemd.service(5)'s table of Restart= against how the run ended. */
static bool should_restart(const struct ru_unit *u, int code, int sig, const char *result)
{
	bool is_signal = result && (!strcmp(result, "signal") || !strcmp(result, "core-dump"));
	bool is_timeout = result && !strcmp(result, "timeout");
	bool is_watchdog = result && !strcmp(result, "watchdog");
	bool clean;

	if (result && !strcmp(result, "success"))
		clean = true;
	else if (result)
		clean = false;
	else
		clean = sig ? clean_signal(sig) : code <= 0;
	if (is_signal && clean_signal(sig))
		clean = true, is_signal = false;
	switch (u->restart) {
	case RESTART_ALWAYS:
		return true;
	case RESTART_ON_SUCCESS:
		return clean;
	case RESTART_ON_FAILURE:
		return !clean;
	case RESTART_ON_ABNORMAL:
		return is_signal || is_timeout || is_watchdog;
	case RESTART_ON_WATCHDOG:
		return is_watchdog;
	case RESTART_ON_ABORT:
		return is_signal;
	case RESTART_NO:
	default:
		return false;
	}
}

static struct ru_run *task_run(struct flt_task *t)
{
	return t ? t->host_data : NULL;
}

static void on_task_status(struct flt_task *t, const struct flt_status *st)
{
	struct ru_run *run = task_run(t);
	struct ru_unit *u;
	struct runner *r;

	if (!run || run->ended || !run->u || !st || run->u->r->freeing)
		return;
	u = run->u;
	r = u->r;
	r->depth++;
	if (st->handle && (!run->handle || strcmp(run->handle, st->handle))) {
		if (ru_set_str(&run->handle, st->handle) == 0) {
			ru_set_str(&u->handle, st->handle);
			ru_state_save(u);
		}
	}
	if (st->main_pid)
		u->main_pid = st->main_pid;
	switch (st->active) {
	case FLT_ACTIVATING:
	case FLT_DEACTIVATING:
		/* systemd's words when a stop escalates */
		if (st->sub && !strcmp(st->sub, "stop-sigkill") &&
		    (!u->sub || strcmp(u->sub, "stop-sigkill")))
			ru_jlog(u, "%s: State 'stop-sigterm' timed out. Killing.", u->name);
		ru_set_active(u, st->active,
		              st->sub                        ? st->sub
		              : st->active == FLT_ACTIVATING ? "start"
		                                             : "stop");
		break;
	case FLT_ACTIVE:
		if (!run->started_logged) {
			run->started_logged = true;
			ru_jlog(u, "Started %s.", u->description);
		}
		ru_set_active(u, FLT_ACTIVE, st->sub ? st->sub : "running");
		break;
	case FLT_INACTIVE:
	case FLT_FAILED: {
		bool stopping = run->stopping;
		bool failed = st->active == FLT_FAILED;
		struct buf how = BUF_INIT;

		ru_set_end(u, st->exit_code, st->exit_signal, st->result, st->message);
		if ((st->exit_code >= 0 || st->exit_signal > 0) &&
		    ru_format_exit(&how, st->exit_code, st->exit_signal, st->result) >= 0 &&
		    (!stopping || failed))
			ru_jlog(u, "%s: main process exited, %s", u->name, how.data);
		buf_release(&how);
		run_detach(run);
		if (stopping && !failed) {
			ru_jlog(u, "Stopped %s.", u->description);
			ru_set_active(u, FLT_INACTIVE, "dead");
		} else if (!stopping && u->target == RUNNER_LAUNCHED && !u->fenced &&
		           should_restart(u, st->exit_code, st->exit_signal, st->result)) {
			if (failed)
				ru_jlog(u, "Unit %s entered failed state.", u->name);
			ru_set_active(u, FLT_ACTIVATING, "auto-restart");
			ev_timer_set(&u->restart_timer, (double)u->restart_usec / 1e6, 0);
			ev_timer_start(r->loop, &u->restart_timer);
		} else {
			if (failed) {
				if (st->message)
					ru_jlog(u, "Failed to start %s: %s", u->description,
					        st->message);
				ru_jlog(u, "Unit %s entered failed state.", u->name);
				ru_jlog(u, "%s failed.", u->name);
			}
			ru_set_active(u, failed ? FLT_FAILED : FLT_INACTIVE,
			              failed ? "failed" : "dead");
		}
		if (u->active != FLT_ACTIVATING)
			stop_dependents(u);
		break;
	}
	}
	ru_report(u);
	leave(r);
}

static void on_task_output(struct flt_task *t, const char *ident, const char *data, size_t len)
{
	struct ru_run *run = task_run(t);
	struct runner *r;

	if (!run || !run->u || !data)
		return;
	r = run->u->r;
	if (!ident)
		ident = run->drv->name;
	if (run->partial.len && run->partial_ident && strcmp(run->partial_ident, ident))
		flush_partial(run);
	if (!run->partial_ident || strcmp(run->partial_ident, ident))
		ru_set_str(&run->partial_ident, ident);
	while (len > 0) {
		const char *nl = memchr(data, '\n', len);
		size_t n = nl ? (size_t)(nl - data) : len;

		if (buf_append(&run->partial, data, n) < 0) {
			buf_clear(&run->partial);
			return;
		}
		if (nl || run->partial.len >= JOURNAL_LINE_MAX) {
			int rc = journal_append(r->journal, run->name, flt_realtime_ns(), ident,
			                        run->partial.data, run->partial.len);

			if (rc < 0)
				log_warn("cannot append to the journal of '%s': %s", run->name,
				         flt_strerror(rc));
			buf_clear(&run->partial);
		}
		data += n + (nl ? 1 : 0);
		len -= n + (nl ? 1 : 0);
	}
}

static void on_task_process(struct flt_task *t, const struct flt_process *p)
{
	struct ru_run *run = task_run(t);
	struct ru_unit *u;
	struct ru_proc *slot;

	if (!run || !run->u || !p)
		return;
	u = run->u;
	if (u->n_procs == RUNNER_MAX_PROCS) {
		free(u->procs[0].kind);
		free(u->procs[0].command);
		memmove(&u->procs[0], &u->procs[1], (RUNNER_MAX_PROCS - 1) * sizeof(u->procs[0]));
		u->n_procs--;
	}
	slot = &u->procs[u->n_procs];
	memset(slot, 0, sizeof(*slot));
	slot->kind = strdup(p->kind ? p->kind : "ExecStart");
	slot->command = strdup(p->argv0_line ? p->argv0_line : "");
	if (!slot->kind || !slot->command) {
		free(slot->kind);
		free(slot->command);
		return;
	}
	slot->pid = p->pid;
	slot->exit_code = p->exit_code;
	slot->exit_signal = p->exit_signal;
	u->n_procs++;
}

/* ---------------------------------------------------------------- starting */

static void procs_clear(struct ru_unit *u)
{
	for (size_t i = 0; i < u->n_procs; i++) {
		free(u->procs[i].kind);
		free(u->procs[i].command);
	}
	u->n_procs = 0;
}

/* systemd's start rate limit: at most `burst` starts within `interval`. */
static bool start_limit_hit(struct ru_unit *u)
{
	int64_t now = flt_monotime_ns();
	int64_t window = (int64_t)u->start_limit_usec * 1000;
	size_t burst = u->start_limit_burst;

	if (!burst || !window)
		return false;
	if (!u->starts) {
		u->starts = calloc(burst, sizeof(*u->starts));
		if (!u->starts)
			return false;
	}
	/* Drop the starts that fell out of the window (oldest first in the ring). */
	while (u->n_starts &&
	       now - u->starts[(u->starts_head + burst - u->n_starts) % burst] > window)
		u->n_starts--;
	if (u->n_starts >= burst)
		return true;
	u->starts[u->starts_head] = now;
	u->starts_head = (u->starts_head + 1) % burst;
	u->n_starts++;
	return false;
}

static void start_unit(struct ru_unit *u, const struct drv_entry *drv)
{
	struct runner *r = u->r;
	struct ru_run *run;
	int rc;

	u->pending_start = false;
	if (start_limit_hit(u)) {
		ru_jlog(u, "%s start request repeated too quickly, refusing to start.", u->name);
		ru_jlog(u, "Failed to start %s.", u->description);
		ru_jlog(u, "Unit %s entered failed state.", u->name);
		fail_unit(u, "start-limit-hit", "start request repeated too quickly");
		return;
	}
	run = run_new(u, drv);
	if (!run) {
		fail_unit(u, "resources", "out of memory");
		return;
	}
	u->run = run;
	procs_clear(u);
	ru_set_end(u, -1, 0, NULL, NULL);
	ru_jlog(u, "Starting %s...", u->description);
	ru_set_active(u, FLT_ACTIVATING, "start");
	ru_report(u);
	r->depth++;
	rc = drv->ops->start(drv->drv, &run->task);
	r->depth--;
	if (rc < 0 && !run->ended) {
		struct buf why = BUF_INIT;

		run_detach(run);
		buf_printf(&why, "driver '%s' cannot start the unit: %s", drv->name,
		           flt_strerror(rc));
		ru_jlog(u, "Failed to start %s.", u->description);
		ru_jlog(u, "Unit %s entered failed state.", u->name);
		fail_unit(u, "resources", why.data ? why.data : "cannot start");
		buf_release(&why);
	}
}

struct ru_unit *ru_unit_find(const struct runner *r, const char *name)
{
	for (struct ru_unit *u = r->units; u; u = u->next)
		if (!strcmp(u->name, name))
			return u;
	return NULL;
}

/* Requires=/BindsTo= units known here must be active, After= units must not be on their way. */
static bool deps_ready(const struct ru_unit *u)
{
	struct runner *r = u->r;

	for (int k = 0; k < 2; k++) {
		char *const *v = k ? u->binds : u->requires;
		size_t n = k ? u->n_binds : u->n_requires;

		for (size_t i = 0; i < n; i++) {
			const struct ru_unit *o;

			if (!strcmp(v[i], "docker.service")) {
				const struct drv_entry *e = drv_host_find(r->drivers, "docker");

				if (!e || !e->drv ||
				    (FLT_DRV_OPS_HAS(e->ops, ready) && !e->ops->ready(e->drv)))
					return false;
				continue;
			}
			o = ru_unit_find(r, v[i]);
			if (o && o != u && !o->forget && o->active != FLT_ACTIVE)
				return false;
		}
	}
	for (size_t i = 0; i < u->n_after; i++) {
		const struct ru_unit *o = ru_unit_find(r, u->after[i]);

		if (o && o != u && !o->forget &&
		    (o->pending_start || ev_is_active(&o->restart_timer) ||
		     (o->run && o->active == FLT_ACTIVATING)))
			return false;
	}
	return true;
}

/* Start whatever may start now. Returns true if it did anything. */
static bool eval_once(struct runner *r)
{
	bool did = false;

	for (struct ru_unit *u = r->units; u; u = u->next) {
		const struct drv_entry *drv;

		if (!u->pending_start || u->run || u->forget || u->fenced ||
		    u->target != RUNNER_LAUNCHED || ev_is_active(&u->restart_timer))
			continue;
		drv = drv_host_find(r->drivers, u->runtime);
		if (!drv) {
			struct buf why = BUF_INIT;

			buf_printf(&why, "runtime '%s' is not available on this machine",
			           u->runtime);
			ru_jlog(u, "Failed to start %s: %s", u->description,
			        why.data ? why.data : "");
			fail_unit(u, "resources", why.data ? why.data : "runtime not available");
			buf_release(&why);
			did = true;
			continue;
		}
		if (!deps_ready(u))
			continue;
		start_unit(u, drv);
		did = true;
	}
	return did;
}

static void unit_free(struct ru_unit *u)
{
	if (!u)
		return;
	ev_timer_stop(u->r->loop, &u->restart_timer);
	free(u->name);
	free(u->text);
	free(u->hash);
	unit_file_release(&u->uf);
	free(u->description);
	free(u->runtime);
	free(u->main_command);
	ru_strv_free(u->requires, u->n_requires);
	ru_strv_free(u->after, u->n_after);
	ru_strv_free(u->binds, u->n_binds);
	free(u->starts);
	free(u->sub);
	free(u->handle);
	free(u->result);
	free(u->message);
	procs_clear(u);
	free(u->last_report);
	free(u);
}

/* Free the runs that ended (detached from their units). */
static void free_dead(struct runner *r)
{
	while (r->dead) {
		struct ru_run *run = r->dead;

		r->dead = run->next_dead;
		run_free(run);
	}
}

/* Free what ended and start what may start; only when no entry point is active. */
static void leave(struct runner *r)
{
	if (r->depth > 1) {
		r->depth--;
		r->dirty = true; /* the outermost leave looks again */
		return;
	}
	for (int pass = 0; pass < 64; pass++) {
		r->dirty = false;
		if (!eval_once(r) && !r->dirty)
			break;
	}
	free_dead(r);
	for (struct ru_unit **pp = &r->units; *pp;) {
		struct ru_unit *u = *pp;

		if (u->forget && !u->run) {
			*pp = u->next;
			r->n_units--;
			ru_state_remove(r, u->name);
			if (r->cb.state && !r->freeing && u->last_report)
				r->cb.state(r->cb.ud, u->name, NULL);
			unit_free(u);
			continue;
		}
		pp = &u->next;
	}
	r->depth--;
}

static void enter(struct runner *r)
{
	r->depth++;
}

static void on_restart_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct ru_unit *u = container_of(w, struct ru_unit, restart_timer);
	struct runner *r = u->r;

	enter(r);
	ru_jlog(u, "%s holdoff time over, scheduling restart.", u->name);
	u->restarts++;
	u->pending_start = true;
	ru_report(u);
	leave(r);
}

static struct ru_unit *unit_new(struct runner *r, const char *name)
{
	struct ru_unit *u;

	if (r->n_units >= RUNNER_MAX_UNITS)
		return NULL;
	u = calloc(1, sizeof(*u));
	if (!u)
		return NULL;
	u->r = r;
	u->name = strdup(name);
	u->sub = strdup("dead");
	if (!u->name || !u->sub) {
		free(u->name);
		free(u->sub);
		free(u);
		return NULL;
	}
	u->active = FLT_INACTIVE;
	u->since = flt_realtime_ns();
	u->exit_code = -1;
	u->start_limit_burst = 5;
	ev_timer_init(&u->restart_timer, on_restart_timer, 0, 0);
	u->next = r->units;
	r->units = u;
	r->n_units++;
	return u;
}

/* ---------------------------------------------------------------- API */

int runner_set(struct runner *r, const char *unit, const char *unit_text, const char *hash,
               enum runner_target target)
{
	struct ru_unit *u;
	bool is_new = false, changed;
	int rc = 0;

	if (!ru_name_ok(unit))
		return FLT_EINVAL;
	u = ru_unit_find(r, unit);
	if (target == RUNNER_GONE) {
		if (!u) {
			ru_state_remove(r, unit);
			return 0;
		}
		enter(r);
		u->confirmed = true;
		u->target = RUNNER_GONE;
		u->pending_start = false;
		u->forget = true;
		stop_run(u);
		leave(r);
		return 0;
	}
	if (!unit_text)
		return FLT_EINVAL;
	if (!u) {
		u = unit_new(r, unit);
		if (!u)
			return r->n_units >= RUNNER_MAX_UNITS ? FLT_ETOOBIG : -ENOMEM;
		is_new = true;
	}
	enter(r);
	changed =
	    is_new || !u->hash || strcmp(u->hash, hash ? hash : "") || strcmp(u->text, unit_text);
	if (changed) {
		rc = ru_unit_configure(u, unit_text, hash);
		if (rc < 0) {
			if (is_new)
				u->forget = true;
			leave(r);
			return rc;
		}
	}
	u->confirmed = true;
	u->forget = false;
	if (changed || target != u->target || u->fenced) {
		if (changed || target != u->target)
			u->restarts = 0;
		u->fenced = false;
		u->target = target;
		if (target == RUNNER_LAUNCHED) {
			/* A new text means a new run; an unchanged one that still runs is kept. */
			if (changed && !is_new)
				stop_run(u);
			if (!u->run || u->run->stopping)
				u->pending_start = true;
		} else {
			u->pending_start = false;
			stop_run(u);
		}
		ru_state_save(u);
	}
	ru_report(u);
	leave(r);
	return 0;
}

void runner_sync_begin(struct runner *r)
{
	r->syncing = true;
	for (struct ru_unit *u = r->units; u; u = u->next)
		u->confirmed = false;
}

void runner_sync_end(struct runner *r)
{
	if (!r->syncing)
		return;
	r->syncing = false;
	enter(r);
	for (struct ru_unit *u = r->units; u; u = u->next)
		if (!u->confirmed && !u->forget) {
			u->target = RUNNER_GONE;
			u->pending_start = false;
			u->forget = true;
			stop_run(u);
		}
	leave(r);
}

int runner_stop_all(struct runner *r)
{
	int n = 0;

	enter(r);
	for (struct ru_unit *u = r->units; u; u = u->next) {
		u->fenced = true;
		u->pending_start = false;
		if (u->run && !u->run->stopping)
			n++;
		stop_run(u);
	}
	leave(r);
	return n;
}

size_t runner_runtimes(struct runner *r, const char *const **ret)
{
	size_t n = 0;

	/* r->runtimes has room for every opened driver: fill it with the working ones */
	for (size_t i = 0; i < drv_host_count(r->drivers); i++) {
		const struct drv_entry *e = drv_host_get(r->drivers, i);

		if (e->drv && (!FLT_DRV_OPS_HAS(e->ops, ready) || e->ops->ready(e->drv)))
			r->runtimes[n++] = e->name;
	}
	*ret = (const char *const *)r->runtimes;
	return n;
}

/* ---------------------------------------------------------------- adoption */

struct stray_list {
	struct stray_list *next;
	struct runner *r;
	const struct drv_entry *drv;
	char **handles;
	size_t n;
	bool ended;
};

/* One driver's list() answer: the runs it knows (possibly from the loop, later), then the end
 * marker (NULL, NULL), at which runs that no unit claims are removed. The runner must outlive
 * the listing: runner_free closes the drivers first, which ends their listings. */
static void collect_stray(void *ctx, const char *unit, const char *handle)
{
	struct stray_list *l = ctx;
	char **nv;

	(void)unit;
	if (!handle) {
		for (size_t i = 0; i < l->n; i++) {
			bool claimed = l->r->freeing; /* shutting down: remove nothing */
			int rc;

			for (struct ru_unit *u = l->r->units; u && !claimed; u = u->next)
				claimed = u->run && u->run->handle &&
				          !strcmp(u->run->handle, l->handles[i]) &&
				          u->run->drv == l->drv;
			if (!claimed) {
				rc = l->drv->ops->remove(l->drv->drv, l->handles[i]);
				if (rc < 0)
					log_warn("driver '%s' cannot remove stray run '%s': %s",
					         l->drv->name, l->handles[i], flt_strerror(rc));
				else
					log_notice("removed stray run '%s' of driver '%s'",
					           l->handles[i], l->drv->name);
			}
			free(l->handles[i]);
		}
		free(l->handles);
		l->handles = NULL;
		l->n = 0;
		l->ended = true;
		return;
	}
	nv = realloc(l->handles, (l->n + 1) * sizeof(*nv));
	if (!nv)
		return;
	l->handles = nv;
	if ((nv[l->n] = strdup(handle)))
		l->n++;
}

/* Runs the drivers know of that no state file names: left by a crash between start and saving
 * the handle, or by a unit forgotten while the daemon was down. */
static void remove_strays(struct runner *r)
{
	for (size_t i = 0; i < drv_host_count(r->drivers); i++) {
		const struct drv_entry *e = drv_host_get(r->drivers, i);
		struct stray_list *l;

		if (!e->drv || !e->ops->list || !e->ops->remove)
			continue;
		l = calloc(1, sizeof(*l));
		if (!l)
			return;
		l->r = r;
		l->drv = e;
		if (e->ops->list(e->drv, collect_stray, l) < 0) {
			log_warn("driver '%s' cannot list its runs", e->name);
			if (!l->ended)
				collect_stray(l, NULL, NULL);
		}
		/* a listing still running when the runner goes is freed with it */
		l->next = r->listings;
		r->listings = l;
	}
}

static int read_file(const char *path, struct buf *out)
{
	char chunk[4096];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	while ((n = read(fd, chunk, sizeof(chunk))) > 0) {
		if (out->len + (size_t)n > RUNNER_MAX_TEXT * 2 ||
		    buf_append(out, chunk, (size_t)n) < 0) {
			close(fd);
			return -ENOMEM;
		}
	}
	close(fd);
	return n < 0 ? -errno : 0;
}

static void adopt_one(struct runner *r, const char *path)
{
	struct buf data = BUF_INIT;
	json_t *o = NULL;
	const char *unit = NULL, *hash = "", *target = "", *runtime = NULL, *handle = NULL,
	           *text = NULL;
	json_t *jhandle = NULL;
	struct ru_unit *u;

	if (read_file(path, &data) < 0 || !data.data)
		goto bad;
	o = json_loads(data.data, 0, NULL);
	if (!o ||
	    json_unpack(o, "{s:s, s?s, s?s, s?s, s?o, s:s}", "unit", &unit, "hash", &hash, "target",
	                &target, "runtime", &runtime, "handle", &jhandle, "text", &text) < 0 ||
	    !ru_name_ok(unit))
		goto bad;
	/* The handle is null while nothing runs. */
	handle = json_is_string(jhandle) ? json_string_value(jhandle) : NULL;
	if (ru_unit_find(r, unit))
		goto out;
	u = unit_new(r, unit);
	if (!u)
		goto out;
	if (ru_unit_configure(u, text, hash) < 0) {
		u->forget = true;
		goto out;
	}
	u->target = !strcmp(target, "launched") ? RUNNER_LAUNCHED
	            : !strcmp(target, "loaded") ? RUNNER_LOADED
	                                        : RUNNER_GONE;
	/* Nothing starts until the agent confirms the unit: it may not be ours any more. */
	u->fenced = true;
	if (u->target == RUNNER_GONE)
		u->forget = true;
	if (handle && *handle) {
		const struct drv_entry *drv =
		    drv_host_find(r->drivers, runtime ? runtime : u->runtime);
		struct ru_run *run = drv ? run_new(u, drv) : NULL;
		int rc;

		if (run && ru_set_str(&run->handle, handle) == 0 &&
		    ru_set_str(&u->handle, handle) == 0) {
			run->task.handle = run->handle;
			run->started_logged = true;
			u->run = run;
			rc = drv->ops->adopt(drv->drv, &run->task);
			if (rc < 0 && !run->ended) {
				log_notice("run '%s' of '%s' is gone: %s", handle, unit,
				           flt_strerror(rc));
				run_detach(run);
			} else if (!run->ended) {
				u->fenced = false;
				log_info("adopted run '%s' of '%s'", handle, unit);
				if (u->target != RUNNER_LAUNCHED)
					stop_run(u);
			}
		} else {
			run_free(run);
			log_warn("cannot adopt '%s': runtime '%s' is not available", unit,
			         runtime ? runtime : u->runtime);
		}
	}
	ru_report(u);
	goto out;
bad:
	log_warn("ignoring unreadable state file '%s'", path);
out:
	json_decref(o);
	buf_release(&data);
}

static void adopt_all(struct runner *r)
{
	struct dirent *de;
	DIR *dir = opendir(r->units_dir);
	struct buf path = BUF_INIT;

	if (!dir)
		return;
	enter(r);
	while ((de = readdir(dir))) {
		size_t n = strlen(de->d_name);

		if (de->d_name[0] == '.' || n < 6 || strcmp(de->d_name + n - 5, ".json"))
			continue;
		buf_clear(&path);
		if (buf_printf(&path, "%s/%s", r->units_dir, de->d_name) < 0)
			break;
		adopt_one(r, path.data);
	}
	closedir(dir);
	buf_release(&path);
	remove_strays(r);
	leave(r);
}

/* ---------------------------------------------------------------- life cycle */

static void host_log_unused(const struct flt_host *h, enum flt_log_level level, const char *fmt,
                            va_list ap)
{
	/* drv_host_open installs its own logger per driver; this one is never called. */
}

int runner_new(struct ev_loop *loop, const struct runner_config *cfg, const struct runner_cb *cb,
               struct runner **ret)
{
	struct runner *r;
	struct buf b = BUF_INIT;
	int rc = -ENOMEM;

	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->loop = loop;
	if (cb)
		r->cb = *cb;
	if (ru_set_str(&r->state_dir, cfg->state_dir) < 0 ||
	    ru_set_str(&r->default_runtime, cfg->default_runtime ? cfg->default_runtime : "exec") <
	        0 ||
	    ru_set_str(&r->machine_id, cfg->machine_id ? cfg->machine_id : "") < 0 ||
	    ru_set_str(&r->hostname, cfg->hostname ? cfg->hostname : "localhost") < 0)
		goto fail;
	if (buf_printf(&b, "%s/units", cfg->state_dir) < 0)
		goto fail;
	r->units_dir = buf_steal(&b);
	if (buf_printf(&b, "%s/run", cfg->state_dir) < 0)
		goto fail;
	r->runs_dir = buf_steal(&b);
	if ((rc = fs_mkdir_p(r->units_dir, 0750)) < 0 || (rc = fs_mkdir_p(r->runs_dir, 0750)) < 0)
		goto fail;
	if (buf_printf(&b, "%s/journal", cfg->state_dir) < 0) {
		rc = -ENOMEM;
		goto fail;
	}
	rc = journal_new(b.data, r->hostname, cfg->journal_max_bytes, &r->journal);
	buf_release(&b);
	if (rc < 0)
		goto fail;
	rc = drv_host_load(cfg->driver_dir ? cfg->driver_dir : "", &r->drivers);
	if (rc < 0) {
		log_warn("cannot read driver directory '%s': %s", cfg->driver_dir,
		         flt_strerror(rc));
		rc = drv_host_load("", &r->drivers);
		if (rc < 0)
			goto fail;
	}
	r->host.loop = loop;
	r->host.log = host_log_unused;
	r->host.task_status = on_task_status;
	r->host.task_output = on_task_output;
	r->host.task_process = on_task_process;
	r->host.userdata = r;
	drv_host_open(r->drivers, &r->host, cfg->drv_cfg);
	for (size_t i = 0; i < drv_host_count(r->drivers); i++) {
		const struct drv_entry *e = drv_host_get(r->drivers, i);
		const char **nv;

		if (!e->drv)
			continue;
		nv = realloc(r->runtimes, (r->n_runtimes + 1) * sizeof(*nv));
		if (!nv) {
			rc = -ENOMEM;
			goto fail;
		}
		r->runtimes = nv;
		r->runtimes[r->n_runtimes++] = e->name;
	}
	if (!r->n_runtimes)
		log_warn("no runtime driver is usable (driver directory '%s'): units will fail",
		         cfg->driver_dir ? cfg->driver_dir : "");
	adopt_all(r);
	*ret = r;
	return 0;
fail:
	buf_release(&b);
	runner_free(r);
	return rc;
}

void runner_free(struct runner *r)
{
	if (!r)
		return;
	r->freeing = true;
	while (r->units) {
		struct ru_unit *u = r->units;

		r->units = u->next;
		if (u->run && !u->run->ended) {
			/* The run survives the daemon: the next runner adopts it by its handle. */
			u->run->drv->ops->release(u->run->drv->drv, &u->run->task);
			flush_partial(u->run);
			run_free(u->run);
		}
		unit_free(u);
	}
	free_dead(r);
	drv_host_free(r->drivers);
	while (r->listings) {
		struct stray_list *l = r->listings;

		r->listings = l->next;
		for (size_t i = 0; i < l->n; i++)
			free(l->handles[i]);
		free(l->handles);
		free(l);
	}
	journal_free(r->journal);
	free(r->runtimes);
	free(r->state_dir);
	free(r->units_dir);
	free(r->runs_dir);
	free(r->default_runtime);
	free(r->machine_id);
	free(r->hostname);
	free(r);
}
