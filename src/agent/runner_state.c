/* What the runner says about its units: the state it reports to the agent, the status document
 * (MODEL_STATUS_PATH), the lines it writes in a unit's journal as systemd[1], journal reads, and
 * the state files from which the next runner adopts the runs after a daemon restart. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/journal.h"
#include "agent/runner_int.h"
#include "util/err.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/util.h"

static const char *const active_names[] = {
    [FLT_ACTIVATING] = "activating", [FLT_ACTIVE] = "active", [FLT_DEACTIVATING] = "deactivating",
    [FLT_INACTIVE] = "inactive",     [FLT_FAILED] = "failed",
};

/* systemd's names of its exit statuses (the ones units actually show). */
static const char *exit_status_name(int code)
{
	switch (code) {
	case 0:
		return "SUCCESS";
	case 1:
		return "FAILURE";
	case 2:
		return "INVALIDARGUMENT";
	case 3:
		return "NOTIMPLEMENTED";
	case 4:
		return "NOPERMISSION";
	case 5:
		return "NOTINSTALLED";
	case 6:
		return "NOTCONFIGURED";
	case 7:
		return "NOTRUNNING";
	case 200:
		return "CHDIR";
	case 203:
		return "EXEC";
	default:
		return NULL;
	}
}

/* "code=exited, status=1/FAILURE" / "code=killed, status=9/KILL", as systemd prints exits. */
int ru_format_exit(struct buf *b, int code, int sig, const char *result)
{
	if (sig > 0) {
		const char *abbr = sigabbrev_np(sig);

		return buf_printf(b, "code=%s, status=%d/%s",
		                  result && !strcmp(result, "core-dump") ? "dumped" : "killed", sig,
		                  abbr ? abbr : "UNKNOWN");
	}
	if (exit_status_name(code))
		return buf_printf(b, "code=exited, status=%d/%s", code, exit_status_name(code));
	return buf_printf(b, "code=exited, status=%d", code);
}

/* ---------------------------------------------------------------- journal of the runner */

void ru_jlog(struct ru_unit *u, const char *fmt, ...)
{
	struct buf b = BUF_INIT;
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = buf_vprintf(&b, fmt, ap);
	va_end(ap);
	if (r >= 0)
		r = journal_append(u->r->journal, u->name, flt_realtime_ns(), SYSTEMD_IDENT, b.data,
		                   b.len);
	if (r < 0)
		log_warn("cannot append to the journal of '%s': %s", u->name, flt_strerror(r));
	buf_release(&b);
}

/* ---------------------------------------------------------------- state files */

static int state_path(const struct runner *r, const char *unit, const char *suffix, struct buf *out)
{
	return buf_printf(out, "%s/%s.json%s", r->units_dir, unit, suffix);
}

static const char *target_name(enum runner_target t)
{
	return t == RUNNER_LAUNCHED ? "launched" : t == RUNNER_LOADED ? "loaded" : "inactive";
}

/* What the next runner needs to adopt this unit: written on every change of target, hash or
 * handle (small write + rename, so a crash leaves the old or the new file). */
void ru_state_save(struct ru_unit *u)
{
	struct runner *r = u->r;
	struct buf path = BUF_INIT, tmp = BUF_INIT;
	json_t *o;
	char *s = NULL;
	int fd, rc = -ENOMEM;

	if (r->freeing)
		return;
	o = json_pack("{s:s, s:s, s:s, s:s, s:s?, s:s}", "unit", u->name, "hash",
	              u->hash ? u->hash : "", "target", target_name(u->target), "runtime",
	              u->runtime, "handle", u->run ? u->run->handle : NULL, "text",
	              u->text ? u->text : "");
	if (!o)
		goto out;
	s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (!s || state_path(r, u->name, "", &path) < 0 || state_path(r, u->name, ".tmp", &tmp) < 0)
		goto out;
	fd = open(tmp.data, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	rc = fs_write_all(fd, s, strlen(s));
	close(fd);
	if (rc == 0 && rename(tmp.data, path.data) < 0)
		rc = -errno;
out:
	if (rc < 0)
		log_warn("cannot save the state of '%s': %s", u->name, flt_strerror(rc));
	free(s);
	buf_release(&path);
	buf_release(&tmp);
}

void ru_state_remove(struct runner *r, const char *unit)
{
	struct buf path = BUF_INIT;

	if (state_path(r, unit, "", &path) == 0 && unlink(path.data) < 0 && errno != ENOENT)
		log_warn("cannot remove '%s': %s", path.data, strerror(errno));
	buf_release(&path);
}

/* ---------------------------------------------------------------- reporting */

void ru_set_active(struct ru_unit *u, enum flt_active a, const char *sub)
{
	if (u->active != a)
		u->since = flt_realtime_ns();
	u->active = a;
	if (ru_set_str(&u->sub, sub) < 0)
		u->r->dirty = true; /* keep the old sub: better stale than nothing */
}

static void fill_state(const struct ru_unit *u, struct runner_state *st)
{
	st->hash = u->hash;
	st->runtime = u->runtime;
	st->load_state = "loaded";
	st->active_state = active_names[u->active];
	st->sub_state = u->sub ? u->sub : "dead";
	st->since = u->since;
	st->main_pid = u->main_pid;
	st->handle = u->handle;
	st->restarts = u->restarts;
	st->exit_code = u->exit_code;
	st->exit_signal = u->exit_signal;
	st->result = u->result ? u->result : "success";
	st->message = u->message;
}

/* Tell the agent when anything it publishes changed. */
void ru_report(struct ru_unit *u)
{
	struct runner *r = u->r;
	struct runner_state st;
	struct buf key = BUF_INIT;

	if (r->freeing)
		return;
	fill_state(u, &st);
	if (buf_printf(&key, "%s|%s|%s|%s|%s|%lld|%lld|%s|%u|%d|%d|%s|%s", st.hash ? st.hash : "",
	               st.runtime ? st.runtime : "", st.load_state, st.active_state, st.sub_state,
	               (long long)st.since, (long long)st.main_pid, st.handle ? st.handle : "",
	               st.restarts, st.exit_code, st.exit_signal, st.result,
	               st.message ? st.message : "") < 0) {
		buf_release(&key);
		return;
	}
	if (u->last_report && !strcmp(u->last_report, key.data)) {
		buf_release(&key);
		return;
	}
	free(u->last_report);
	u->last_report = buf_steal(&key);
	if (r->cb.state)
		r->cb.state(r->cb.ud, u->name, &st);
}

void ru_set_end(struct ru_unit *u, int code, int sig, const char *result, const char *msg)
{
	u->exit_code = code;
	u->exit_signal = sig;
	ru_set_str(&u->result, result);
	ru_set_str(&u->message, msg);
}

int runner_state(struct runner *r, const char *unit, struct runner_state *ret)
{
	struct ru_unit *u = ru_unit_find(r, unit);

	if (!u || u->forget)
		return -ENOENT;
	fill_state(u, ret);
	return 0;
}

int runner_status_json(struct runner *r, const char *unit, struct buf *out)
{
	struct ru_unit *u = ru_unit_find(r, unit);
	struct runner_state st;
	json_t *o, *procs;
	char *s;
	int rc = -ENOMEM;

	if (!u || u->forget)
		return -ENOENT;
	fill_state(u, &st);
	procs = json_array();
	if (!procs)
		return -ENOMEM;
	for (size_t i = 0; i < u->n_procs; i++) {
		json_t *p =
		    json_pack("{s:s, s:s, s:I, s:i, s:i}", "kind", u->procs[i].kind, "command",
		              u->procs[i].command, "pid", (json_int_t)u->procs[i].pid, "exitCode",
		              u->procs[i].exit_code, "exitSignal", u->procs[i].exit_signal);

		if (!p || json_array_append_new(procs, p) < 0) {
			json_decref(procs);
			return -ENOMEM;
		}
	}
	o = json_pack(
	    "{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:s?, s:o, s:i, s:s, s:s, "
	    "s:s, s:i, s:i}",
	    "unit", u->name, "description", u->description ? u->description : u->name, "machineID",
	    r->machine_id, "hostname", r->hostname, "loadState", st.load_state, "activeState",
	    st.active_state, "subState", st.sub_state, "since", (json_int_t)st.since, "mainPID",
	    (json_int_t)st.main_pid, "mainCommand", u->main_command, "processes", procs, "restarts",
	    (int)st.restarts, "result", st.result, "runtime", u->runtime ? u->runtime : "", "hash",
	    u->hash ? u->hash : "", "exitCode", st.exit_code, "exitSignal", st.exit_signal);
	if (!o)
		return -ENOMEM;
	if (st.message && json_object_set_new(o, "message", json_string(st.message)) < 0)
		goto out;
	if (st.handle && json_object_set_new(o, "handle", json_string(st.handle)) < 0)
		goto out;
	s = json_dumps(o, JSON_COMPACT);
	if (!s)
		goto out;
	rc = buf_puts(out, s);
	free(s);
out:
	json_decref(o);
	return rc < 0 ? rc : 0;
}

int runner_journal(struct runner *r, const char *unit, unsigned lines, struct buf *out)
{
	if (!ru_name_ok(unit))
		return FLT_EINVAL;
	return journal_tail(r->journal, unit, lines, out);
}

int runner_follow(struct runner *r, const char *unit, runner_line_fn *cb, void *ud,
                  struct journal_follow **ret)
{
	if (!ru_name_ok(unit))
		return FLT_EINVAL;
	return journal_follow(r->journal, unit, cb, ud, ret);
}

void runner_unfollow(struct journal_follow *f)
{
	journal_unfollow(f);
}
