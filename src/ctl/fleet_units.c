/* flotctl's fleetctl commands that change units: submit, load, start, stop, unload, destroy and
 * restart, with fleetctl's way of creating missing units from files and templates and of waiting
 * ("Unit x launched on 3d1219c7.../127.0.0.1") until the cluster reports the new state. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "ctl/client.h"
#include "ctl/ctl.h"
#include "ctl/fleet_int.h"
#include "unit/unit.h"
#include "util/util.h"

/* "[a b]" as Go prints a []string */
static void go_slice(struct buf *b, const char **v, size_t n)
{
	cb_putc(b, '[');
	for (size_t i = 0; i < n; i++) {
		if (i)
			cb_putc(b, ' ');
		cb_puts(b, v[i]);
	}
	cb_putc(b, ']');
}

static int read_file(const char *path, struct buf *out)
{
	FILE *fp = fopen(path, "r");
	char chunk[4096];
	size_t n;

	if (!fp)
		return -errno;
	while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
		cb_append(out, chunk, n);
	if (ferror(fp)) {
		fclose(fp);
		return -EIO;
	}
	fclose(fp);
	cb_puts(out, "");
	return 0;
}

static bool file_exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

/* Parse a local unit file into `ret`; on failure `err` gets the reason. */
static int load_file(const char *path, struct unit_file *ret, struct buf *err)
{
	struct buf text = BUF_INIT;
	int r = read_file(path, &text);

	if (r < 0) {
		cb_printf(err, "open %s: %s", path, strerror(-r));
		return r;
	}
	r = unit_parse(text.data, text.len, ret, err);
	buf_release(&text);
	return r;
}

/* The file `name` in the directory of `path` (none: the current one). With an argument and its
 * mangled name, it is the local path fleetctl looks at: the argument with ".service" appended
 * when it has no known unit suffix (maybeAppendDefaultUnitType); with a unit file and its
 * template's name, where the template is looked for next to it. */
static void sibling_path(const char *path, const char *name, struct buf *out)
{
	const char *slash = strrchr(path, '/');

	if (slash)
		cb_append(out, path, (size_t)(slash - path + 1));
	cb_puts(out, name);
}

static bool hash_differs(const struct unit_file *uf, json_t *opts)
{
	char a[41], b[41];

	fl_opts_hash(opts, b);
	if (unit_hash(uf, a) < 0)
		return false;
	return strcmp(a, b) != 0;
}

/* ---- waiting (fleetctl's tryWaitForUnitStates) ---- */

struct waiter {
	const char *name;
	bool done;
	char *reason; /* last unschedulable reason shown */
};

/* Wait until each unit's state (desiredState for global units, currentState otherwise) is
 * `state`, printing "Unit X state[ on legend]" as each gets there. Returns 0, or 1 after
 * printing "Error waiting for units: ..." for each failure; `last` gets the last error. */
static int wait_states(struct fctx *f, const char **names, size_t n, const char *state,
                       int attempts, struct buf *last)
{
	struct waiter *w = calloc(n ? n : 1, sizeof(*w));
	int64_t deadline = attempts > 0 ? flt_monotime_ns() + attempts * FL_ATTEMPT_NS : 0;
	size_t left = n;
	int ret = 0;

	if (!w)
		ctl_oom();
	for (size_t i = 0; i < n; i++)
		w[i].name = names[i];
	while (left) {
		for (size_t i = 0; i < n; i++) {
			struct buf err = BUF_INIT, msg = BUF_INIT;
			json_t *u = NULL;
			const char *cur, *reason;
			int r;

			if (w[i].done)
				continue;
			r = fl_get_unit(f, w[i].name, &u, &err);
			if (r < 0) {
				fl_err("Error waiting for units: %s", err.data);
				buf_clear(last);
				cb_puts(last, err.data);
				w[i].done = true, left--, ret = 1;
				buf_release(&err);
				continue;
			}
			buf_release(&err);
			if (r == 0)
				continue; /* fleetctl: "Unit x not found", keep polling */
			cur = fl_unit_global(u) ? fl_jstr(u, "desiredState")
			                        : fl_jstr(u, "currentState");
			reason = fl_jstr(u, "reason");
			if (*reason && (!w[i].reason || strcmp(w[i].reason, reason))) {
				/* flotilla tells why a unit waits; fleet left users guessing */
				fl_err("Unit %s not scheduled yet: %s", w[i].name, reason);
				free(w[i].reason);
				w[i].reason = strdup(reason);
			}
			if (!strcmp(cur, state)) {
				cb_printf(&msg, "Unit %s %s", w[i].name,
				          fl_jstr(u, "currentState"));
				if (*fl_jstr(u, "machineID") &&
				    fl_machine(f, fl_jstr(u, "machineID"))) {
					cb_puts(&msg, " on ");
					fl_legend(f, &msg, fl_jstr(u, "machineID"), false);
				}
				cb_putc(&msg, '\n');
				ctl_write(stdout, &msg);
				w[i].done = true;
				left--;
			}
			buf_release(&msg);
			json_decref(u);
		}
		if (!left)
			break;
		if (deadline && flt_monotime_ns() >= deadline) {
			for (size_t i = 0; i < n; i++) {
				if (w[i].done)
					continue;
				buf_clear(last);
				cb_printf(last, "timed out waiting for unit %s to report state %s",
				          w[i].name, state);
				fl_err("Error waiting for units: %s", last->data);
				ret = 1;
			}
			break;
		}
		fl_sleep(FL_POLL_NS);
	}
	for (size_t i = 0; i < n; i++)
		free(w[i].reason);
	free(w);
	return ret;
}

static int try_wait(struct fctx *f, const char **names, size_t n, const char *verb,
                    const char *state, struct buf *last)
{
	if (f->attempts < 0) {
		for (size_t i = 0; i < n; i++)
			printf("Triggered unit %s %s\n", names[i], verb);
		fflush(stdout);
		return 0;
	}
	return wait_states(f, names, n, state, f->attempts, last);
}

/* `start` also waits for systemd to report the unit active. Unlike fleetctl (which gave up after
 * 2 s whatever --block-attempts said) this uses the same budget, and fails at once on "failed". */
static int wait_active(struct fctx *f, const char **names, size_t n, struct buf *last)
{
	int64_t deadline = f->attempts > 0 ? flt_monotime_ns() + f->attempts * FL_ATTEMPT_NS : 0;
	int ret = 0;

	if (f->attempts < 0)
		return 0; /* fleetctl printed "Triggered unit X start" a second time here */
	for (size_t i = 0; i < n; i++) {
		for (;;) {
			struct buf err = BUF_INIT, path = BUF_INIT;
			json_t *st = NULL;
			long code = 0;
			int r;

			cb_printf(&path, FLEET_API "/state/%s", names[i]);
			r = fl_api(f, "GET", path.data, NULL, 0, NULL, &code, &st, &err);
			buf_release(&path);
			if (r == 0 && code == 200) {
				const char *as = fl_jstr(st, "systemdActiveState");
				const char *ls = fl_jstr(st, "systemdLoadState");

				if (!strcmp(as, "active") && !strcmp(ls, "loaded")) {
					json_decref(st);
					buf_release(&err);
					break;
				}
				if (!strcmp(as, "failed")) {
					buf_clear(last);
					cb_printf(last, "unit %s failed to start (%s/%s)", names[i],
					          as, fl_jstr(st, "systemdSubState"));
					fl_err("Error waiting for units: %s", last->data);
					ret = 1;
					json_decref(st);
					buf_release(&err);
					break;
				}
			}
			json_decref(st);
			buf_release(&err);
			if (deadline && flt_monotime_ns() >= deadline) {
				buf_clear(last);
				cb_printf(last, "Failed to find an active unit %s within %ds",
				          names[i], f->attempts * 2);
				fl_err("Error waiting for units: %s", last->data);
				ret = 1;
				break;
			}
			fl_sleep(FL_POLL_NS);
		}
	}
	return ret;
}

/* ---- creating units (fleetctl's lazyCreateUnits) ---- */

/* Which desired states --replace may act on, per command. */
static bool replace_allowed(const char *cmd, const char *dstate)
{
	if (!strcmp(dstate, "inactive"))
		return true;
	if (!strcmp(cmd, "load"))
		return !strcmp(dstate, "loaded");
	if (!strcmp(cmd, "start"))
		return !strcmp(dstate, "loaded") || !strcmp(dstate, "launched");
	return false;
}

static int create_one(struct fctx *f, const char *name, const struct unit_file *uf,
                      const char *dstate, struct buf *err)
{
	struct buf why = BUF_INIT;
	struct unit_sched sch;
	json_t *opts = NULL, *obj;
	const char *reason = NULL;
	int r;

	if (unit_name_check(name, &reason) < 0) {
		cb_printf(err, "%s", reason ? reason : "invalid unit name");
		return -EINVAL;
	}
	memset(&sch, 0, sizeof(sch));
	if (!unit_name_is_template(name)) {
		if (unit_sched_parse(uf, name, &sch, &why) < 0)
			fl_err("WARNING: Unit %s: %s", name, why.data ? why.data : "bad [X-Fleet]");
		else
			unit_sched_release(&sch);
	}
	buf_release(&why);
	if (unit_to_json(uf, (void **)&opts) < 0)
		ctl_oom();
	obj = json_pack("{sssssO}", "name", name, "desiredState", dstate, "options", opts);
	if (!obj)
		ctl_oom();
	r = fl_put_unit(f, name, obj, &why);
	if (r < 0) {
		cb_printf(err, "failed creating unit %s: %s", name, why.data);
	}
	buf_release(&why);
	json_decref(obj);
	json_decref(opts);
	return r;
}

/* Make sure every argument names a unit in the cluster, creating it from a local file or a
 * template (in the cluster, then next to the argument) when it does not. Prints fleetctl's
 * messages; returns 0 or 1 after "Error creating units: ...". */
static int lazy_create(struct fctx *f, const char *cmd, char **args, int n)
{
	const char **created = calloc((size_t)n + 1, sizeof(*created));
	const char **want = calloc((size_t)n + 1, sizeof(*want));
	struct buf *names = calloc((size_t)n + 1, sizeof(*names));
	bool replace = fl_flag(f, "replace")->b;
	size_t nc = 0;
	int ret = 0;

	if (!created || !names || !want)
		ctl_oom();
	for (int i = 0; i < n && !ret; i++) {
		struct buf path = BUF_INIT, err = BUF_INIT, tmpl = BUF_INIT, tpath = BUF_INIT;
		struct unit_file uf = UNIT_FILE_INIT;
		json_t *u = NULL;
		bool have = false;
		const char *dstate = "inactive";
		int r;

		if (unit_name_mangle(args[i], &names[i]) < 0)
			ctl_oom();
		sibling_path(args[i], names[i].data, &path);
		r = fl_get_unit(f, names[i].data, &u, &err);
		if (r < 0) {
			fl_err("Error creating units: error retrieving Unit(%s) from Registry: %s",
			       names[i].data, err.data);
			ret = 1;
			goto next;
		}
		if (r > 0) {
			json_t *opts = json_object_get(u, "options");
			bool local = file_exists(path.data), differs = false;

			if (local) {
				struct buf perr = BUF_INIT;

				if (load_file(path.data, &uf, &perr) == 0) {
					have = true;
					differs = hash_differs(&uf, opts);
				}
				buf_release(&perr);
			}
			if (!differs) {
				if (replace && have)
					printf("Found same Unit(%s) in Registry, nothing to do\n",
					       names[i].data);
				goto next;
			}
			if (!replace) {
				fl_err(
				    "WARNING: Unit %s in registry differs from local unit file %s. "
				    "Add --replace to override.",
				    names[i].data, args[i]);
				goto next;
			}
			dstate = fl_jstr(u, "desiredState");
			if (!replace_allowed(cmd, dstate)) {
				fl_err("Warning: can not replace Unit(%s) in state '%s', use the "
				       "appropriate command",
				       names[i].data, dstate);
				goto next;
			}
		} else if (file_exists(path.data)) {
			if (load_file(path.data, &uf, &err) < 0) {
				fl_strip_nl(&err);
				fl_err(
				    "Error creating units: failed getting Unit(%s) from file: %s",
				    path.data, err.data);
				ret = 1;
				goto next;
			}
		} else if (unit_name_is_instance(names[i].data)) {
			json_t *t = NULL;

			if (unit_name_template(names[i].data, &tmpl) < 0)
				ctl_oom();
			r = fl_get_unit(f, tmpl.data, &t, &err);
			if (r > 0) {
				r = unit_from_json(json_object_get(t, "options"), &uf, &err);
				json_decref(t);
				if (r < 0) {
					fl_err("Error creating units: failed getting Unit(%s) from "
					       "template: %s",
					       path.data, err.data);
					ret = 1;
					goto next;
				}
			} else if (r == 0) {
				sibling_path(path.data, tmpl.data, &tpath);
				if (!file_exists(tpath.data)) {
					fl_err("Error creating units: failed getting Unit(%s) from "
					       "template: unable to find template Unit(%s) in "
					       "Registry "
					       "or on filesystem",
					       path.data, tmpl.data);
					ret = 1;
					goto next;
				}
				if (load_file(tpath.data, &uf, &err) < 0) {
					fl_strip_nl(&err);
					fl_err("Error creating units: failed getting Unit(%s) from "
					       "template: unable to load template Unit(%s) from "
					       "file: %s",
					       path.data, tmpl.data, err.data);
					ret = 1;
					goto next;
				}
			} else {
				fl_err(
				    "Error creating units: error retrieving template Unit(%s) from "
				    "Registry: %s",
				    tmpl.data, err.data);
				ret = 1;
				goto next;
			}
		} else {
			fl_err("Error creating units: unable to find Unit(%s) in Registry or on "
			       "filesystem",
			       names[i].data);
			ret = 1;
			goto next;
		}
		buf_clear(&err);
		if (create_one(f, names[i].data, &uf, dstate, &err) < 0) {
			fl_err("Error creating units: %s", err.data);
			ret = 1;
			goto next;
		}
		want[nc] = !strcmp(dstate, "launched") ? "launched"
		           : !strcmp(dstate, "loaded") ? "loaded"
		                                       : "inactive";
		created[nc++] = names[i].data;
	next:
		json_decref(u);
		unit_file_release(&uf);
		buf_release(&path);
		buf_release(&err);
		buf_release(&tmpl);
		buf_release(&tpath);
	}
	if (!ret && nc) {
		/* fleetctl waits for new units to report inactive (with --block-attempts, but even
		 * under --no-block); a replaced unit keeps its desired state and is waited on it */
		struct buf last = BUF_INIT;
		int attempts = f->attempts > 0 ? f->attempts : 0;

		for (size_t i = 0; i < nc && !ret; i++)
			if (wait_states(f, &created[i], 1, want[i], attempts, &last))
				ret = 1;
		if (ret)
			fl_err("Error creating units: One or more errors creating units");
		buf_release(&last);
	}
	for (int i = 0; i < n; i++)
		buf_release(&names[i]);
	free(names);
	free(created);
	free(want);
	return ret;
}

/* ---- lifecycle commands ---- */

int fl_need_units(int argc)
{
	if (argc > 0)
		return 0;
	fl_err("No units given");
	return 1;
}

int fl_cmd_submit(struct fctx *f, int argc, char **argv)
{
	if (fl_need_units(argc))
		return 1;
	return lazy_create(f, "submit", argv, argc);
}

/* load and start: create what is missing, set the target state, wait. */
static int load_or_start(struct fctx *f, int argc, char **argv, bool start)
{
	const char *verb = start ? "start" : "load", *state = start ? "launched" : "loaded";
	const char **waiting = calloc((size_t)argc + 1, sizeof(*waiting));
	struct buf err = BUF_INIT, last = BUF_INIT;
	struct fl_found fd = {0};
	size_t nw = 0;
	int ret = 0;

	if (!waiting)
		ctl_oom();
	if (fl_need_units(argc) || lazy_create(f, verb, argv, argc)) {
		free(waiting);
		return 1;
	}
	if (fl_find_units(f, argv, argc, &fd, &err) < 0) {
		fl_err("Error %s units: %s", start ? "starting" : "loading", err.data);
		ret = 1;
		goto out;
	}
	for (size_t i = 0; i < fd.n; i++) {
		const char *name = fl_jstr(fd.v[i], "name");

		if (!strcmp(fl_jstr(fd.v[i], "desiredState"), state))
			continue; /* already there: nothing triggered, nothing to wait for */
		if (fl_set_target(f, name, state, &err) < 0) {
			fl_err("Error %s units: %s", start ? "starting" : "loading", err.data);
			ret = 1;
			goto out;
		}
		if (fl_unit_global(fd.v[i]))
			printf("Triggered global unit %s %s\n", name, verb);
		else
			waiting[nw++] = name;
	}
	fflush(stdout);
	if (try_wait(f, waiting, nw, verb, state, &last)) {
		fl_err("Error waiting for unit states, exit status: %s", last.data);
		ret = 1;
		goto out;
	}
	if (start && wait_active(f, waiting, nw, &last)) {
		fl_err("Error waiting for systemd unit states, err: %s", last.data);
		ret = 1;
	}
out:
	fl_found_release(&fd);
	free(waiting);
	buf_release(&err);
	buf_release(&last);
	return ret;
}

int fl_cmd_load(struct fctx *f, int argc, char **argv)
{
	return load_or_start(f, argc, argv, false);
}

int fl_cmd_start(struct fctx *f, int argc, char **argv)
{
	return load_or_start(f, argc, argv, true);
}

/* fleetctl's findUnits over the arguments, with its messages: 0 with `ret` filled (at least one
 * unit; release it), or the exit code 1 after a message. */
static int find_given_units(struct fctx *f, int argc, char **argv, struct fl_found *ret)
{
	struct buf err = BUF_INIT;

	if (fl_need_units(argc))
		return 1;
	if (fl_find_units(f, argv, argc, ret, &err) < 0) {
		fl_err("Error retrieving list of units from repository: %s", err.data);
		buf_release(&err);
		fl_found_release(ret);
		return 1;
	}
	buf_release(&err);
	if (!ret->n) {
		fl_err("Units not found in registry");
		fl_found_release(ret);
		return 1;
	}
	return 0;
}

/* stop (launched -> loaded) and unload (-> inactive). */
static int stop_or_unload(struct fctx *f, int argc, char **argv, bool stop)
{
	const char *state = stop ? "loaded" : "inactive";
	const char **acted = calloc((size_t)argc + 1, sizeof(*acted));
	struct buf err = BUF_INIT, last = BUF_INIT, list = BUF_INIT;
	struct fl_found fd = {0};
	size_t na = 0;
	int ret = 0;

	if (!acted)
		ctl_oom();
	if (find_given_units(f, argc, argv, &fd)) {
		free(acted);
		return 1;
	}
	for (size_t i = 0; i < fd.n; i++) {
		const char *name = fl_jstr(fd.v[i], "name"),
		           *cur = fl_jstr(fd.v[i], "currentState");
		bool global = fl_unit_global(fd.v[i]);

		if (stop && !global) {
			if (!strcmp(cur, "inactive")) {
				fl_err("Unable to stop unit %s in state inactive", name);
				ret = 1;
				goto out;
			}
			if (!strcmp(cur, "loaded"))
				continue;
		}
		if (!stop && !strcmp(fl_jstr(fd.v[i], "desiredState"), "inactive") &&
		    (global || !strcmp(cur, "inactive")))
			continue;
		if (fl_set_target(f, name, state, &err) < 0) {
			fl_err("Failed to %s units %s. err: %s", stop ? "stop" : "unload", name,
			       err.data);
			ret = 1;
			goto out;
		}
		if (global)
			printf("Triggered global unit %s %s\n", name, stop ? "stop" : "unload");
		else
			acted[na++] = name;
	}
	fflush(stdout);
	go_slice(&list, acted, na);
	if (try_wait(f, acted, na, stop ? "stop" : "unload", state, &last)) {
		fl_err("Failed to %s units %s. err: %s", stop ? "stop" : "unload", list.data,
		       last.data);
		ret = 1;
		goto out;
	}
	fl_err("Successfully %s units %s.", stop ? "stopped" : "unloaded", list.data);
out:
	fl_found_release(&fd);
	free(acted);
	buf_release(&err);
	buf_release(&last);
	buf_release(&list);
	return ret;
}

int fl_cmd_stop(struct fctx *f, int argc, char **argv)
{
	return stop_or_unload(f, argc, argv, true);
}

int fl_cmd_unload(struct fctx *f, int argc, char **argv)
{
	return stop_or_unload(f, argc, argv, false);
}

int fl_cmd_destroy(struct fctx *f, int argc, char **argv)
{
	struct buf err = BUF_INIT;
	struct fl_found fd = {0};
	int ret = 0;

	if (find_given_units(f, argc, argv, &fd))
		return 1;
	for (size_t i = 0; i < fd.n && !ret; i++) {
		const char *name = fl_jstr(fd.v[i], "name");
		char *path = fl_unit_path(name);
		json_t *body = NULL;
		long st = 0;

		if (fl_api(f, "DELETE", path, NULL, 0, NULL, &st, &body, &err) < 0) {
			fl_err("Error destroying units: %s", err.data);
			ret = 1;
		} else if (st != 204 && st != 200 && st != 404) {
			fl_api_error(&err, st, body);
			fl_err("Error destroying units: %s", err.data);
			ret = 1;
		} else {
			printf("Destroyed %s\n", name);
			fflush(stdout);
		}
		json_decref(body);
		free(path);
		/* fleetctl waited for the unit to go only under --no-block (an inverted test) */
		if (!ret && f->attempts >= 0) {
			int64_t deadline =
			    f->attempts > 0 ? flt_monotime_ns() + f->attempts * FL_ATTEMPT_NS : 0;

			for (;;) {
				json_t *u = NULL;
				int r = fl_get_unit(f, name, &u, &err);

				json_decref(u);
				if (r <= 0)
					break;
				if (deadline && flt_monotime_ns() >= deadline) {
					fl_err("Error waiting for units: timed out waiting for "
					       "unit %s "
					       "to be destroyed",
					       name);
					ret = 1;
					break;
				}
				fl_sleep(FL_POLL_NS);
			}
		}
	}
	fl_found_release(&fd);
	buf_release(&err);
	return ret;
}

int fl_cmd_restart(struct fctx *f, int argc, char **argv)
{
	struct buf err = BUF_INIT, last = BUF_INIT;
	struct fl_found fd = {0};
	int ret = 0;

	if (find_given_units(f, argc, argv, &fd))
		return 1;
	/* one unit after another, each waited on: not a rolling restart, as in fleetctl */
	for (size_t i = 0; i < fd.n; i++) {
		const char *name = fl_jstr(fd.v[i], "name"),
		           *cur = fl_jstr(fd.v[i], "currentState");
		bool global = fl_unit_global(fd.v[i]);

		if (global) {
			/* fleetctl ssh'ed to machines a global unit never names; flotilla cycles it
			 */
			if (fl_set_target(f, name, "loaded", &err) < 0 ||
			    fl_set_target(f, name, "launched", &err) < 0) {
				fl_err("Error restarting units: %s", err.data);
				ret = 1;
				break;
			}
			printf("Triggered global unit %s restart\n", name);
			fflush(stdout);
			continue;
		}
		if (!strcmp(cur, "inactive")) {
			fl_err("Unable to restart unit %s in state inactive", name);
			ret = 1;
			continue;
		}
		if (!strcmp(cur, "launched")) {
			/* fleetctl waited for "launched" here too and returned at once */
			if (fl_set_target(f, name, "loaded", &err) < 0) {
				fl_err("Error restarting units: %s", err.data);
				ret = 1;
				break;
			}
			if (try_wait(f, &name, 1, "stop", "loaded", &last)) {
				fl_err("Error waiting for unit states, exit status: %s", last.data);
				ret = 1;
				continue;
			}
		}
		if (fl_set_target(f, name, "launched", &err) < 0) {
			fl_err("Error restarting units: %s", err.data);
			ret = 1;
			break;
		}
		if (try_wait(f, &name, 1, "start", "launched", &last)) {
			fl_err("Error waiting for unit states, exit status: %s", last.data);
			ret = 1;
		}
	}
	fl_found_release(&fd);
	buf_release(&err);
	buf_release(&last);
	return ret;
}
