/* flotctl's fleetctl commands that show things: list-machines, list-unit-files and list-units as
 * fleetctl's tab-aligned tables, cat, status and journal (read from the agent of the unit's machine
 * through any node), and ssh to a machine or to the machine of a unit. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ctl/client.h"
#include "ctl/ctl.h"
#include "ctl/fleet_int.h"
#include "engine/model.h"
#include "unit/unit.h"
#include "util/util.h"

/* ---- list commands ---- */

struct field {
	const char *name;
	int id;
};

/* Parse --fields against `valid`; fills ids (caller array of at least 64). Returns the count, or
 * -1 after printing fleetctl's message. */
static int parse_fields(struct fctx *f, const char *dflt, const struct field *valid, size_t nvalid,
                        int *ids, char ***ret_names)
{
	const struct ctl_fval *v = fl_flag(f, "fields");
	const char *s = v->seen ? (v->s ? v->s : "") : dflt;
	char *copy, *tok, *save = NULL;
	char **names;
	int n = 0;

	if (!*s) {
		fl_err("Must define output format");
		return -1;
	}
	copy = strdup(s);
	names = calloc(strlen(s) + 2, sizeof(*names));
	if (!copy || !names)
		ctl_oom();
	/* Go's strings.Split: "a,,b" has an empty (and so invalid) field */
	for (tok = copy; tok; tok = save) {
		size_t k;

		save = strchr(tok, ',');
		if (save)
			*save++ = '\0';
		for (k = 0; k < nvalid; k++)
			if (!strcmp(valid[k].name, tok))
				break;
		if (k == nvalid || n >= 64) {
			struct buf q = BUF_INIT;

			ctl_go_quote(&q, tok);
			fl_err("Invalid key in output format: %s", q.data);
			buf_release(&q);
			for (int i = 0; i < n; i++)
				free(names[i]);
			free(names);
			free(copy);
			return -1;
		}
		ids[n] = valid[k].id;
		names[n] = strdup(tok);
		if (!names[n++])
			ctl_oom();
	}
	free(copy);
	if (n == 0) {
		fl_err("Must define output format");
		free(names);
		return -1;
	}
	*ret_names = names;
	return n;
}

static void add_header(struct fctx *f, struct ctl_table *t, char **names, int n)
{
	if (fl_flag(f, "no-legend")->b)
		return;
	for (int i = 0; i < n; i++) {
		struct buf u = BUF_INIT;

		for (const char *p = names[i]; *p; p++)
			cb_putc(&u, (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p));
		ctl_table_add(t, u.data);
		buf_release(&u);
	}
}

static void free_names(char **names, int n)
{
	for (int i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

static int cmp_id(const void *a, const void *b)
{
	return strcmp(fl_jstr(*(json_t *const *)a, "id"), fl_jstr(*(json_t *const *)b, "id"));
}

int fl_cmd_list_machines(struct fctx *f, int argc, char **argv)
{
	enum { F_MACHINE, F_IP, F_META };
	static const struct field valid[] = {
	    {"machine", F_MACHINE}, {"ip", F_IP}, {"metadata", F_META}};
	bool full = fl_flag(f, "full")->b;
	struct ctl_table t;
	struct buf err = BUF_INIT, out = BUF_INIT;
	json_t *all = NULL, **v;
	char **names;
	int ids[64], n;
	size_t cnt, i;

	(void)argc;
	(void)argv;
	n = parse_fields(f, "machine,ip,metadata", valid, ARRAY_SIZE(valid), ids, &names);
	if (n < 0)
		return 1;
	if (fl_get_all(f, "machines", NULL, 0, &all, &err) < 0) {
		fl_err("Error retrieving list of active machines from fleet API (%s)\nPossible "
		       "issues:\n  etcd is unhealthy and/or lost quorum\n  connection cannot be "
		       "established to any etcd servers",
		       err.data);
		buf_release(&err);
		free_names(names, n);
		return 1;
	}
	cnt = json_array_size(all);
	v = calloc(cnt + 1, sizeof(*v));
	if (!v)
		ctl_oom();
	for (i = 0; i < cnt; i++)
		v[i] = json_array_get(all, i);
	qsort(v, cnt, sizeof(*v), cmp_id);
	ctl_table_init(&t, (size_t)n);
	add_header(f, &t, names, n);
	for (i = 0; i < cnt; i++) {
		for (int k = 0; k < n; k++) {
			struct buf c = BUF_INIT;
			json_t *md = json_object_get(v[i], "metadata");

			switch (ids[k]) {
			case F_MACHINE:
				ctl_machine_legend(&c, fl_jstr(v[i], "id"), NULL, full, false);
				break;
			case F_IP:
				cb_puts(&c, fl_jstr(v[i], "primaryIP"));
				break;
			default: {
				/* k=v sorted by key */
				size_t nk = json_object_size(md), j = 0;
				const char **keys = calloc(nk + 1, sizeof(*keys)), *key;
				json_t *val;

				if (!keys)
					ctl_oom();
				json_object_foreach(md, key, val) keys[j++] = key;
				for (size_t a = 1; a < nk; a++)
					for (size_t b = a;
					     b > 0 && strcmp(keys[b - 1], keys[b]) > 0; b--) {
						const char *tmp = keys[b];

						keys[b] = keys[b - 1];
						keys[b - 1] = tmp;
					}
				for (j = 0; j < nk; j++)
					cb_printf(&c, "%s%s=%s", j ? "," : "", keys[j],
					          fl_jstr(md, keys[j]));
				free(keys);
				break;
			}
			}
			ctl_table_add(&t, c.data);
			buf_release(&c);
		}
	}
	ctl_table_render(&t, &out);
	ctl_write(stdout, &out);
	buf_release(&out);
	ctl_table_release(&t);
	free(v);
	json_decref(all);
	free_names(names, n);
	return 0;
}

int fl_cmd_list_unit_files(struct fctx *f, int argc, char **argv)
{
	enum {
		F_UNIT,
		F_HASH,
		F_DSTATE,
		F_STATE,
		F_TARGET,
		F_TMACHINE,
		F_DESC,
		F_GLOBAL,
		F_REASON
	};
	static const struct field valid[] = {
	    {"desc", F_DESC},         {"dstate", F_DSTATE}, {"global", F_GLOBAL},
	    {"hash", F_HASH},         {"state", F_STATE},   {"target", F_TARGET},
	    {"tmachine", F_TMACHINE}, {"unit", F_UNIT},     {"reason", F_REASON}};
	bool full = fl_flag(f, "full")->b;
	struct ctl_table t;
	struct buf err = BUF_INIT, out = BUF_INIT;
	json_t *all = NULL, *u;
	char **names;
	int ids[64], n;
	size_t i;

	(void)argc;
	(void)argv;
	n = parse_fields(f, "unit,hash,dstate,state,target", valid, ARRAY_SIZE(valid), ids, &names);
	if (n < 0)
		return 1;
	for (int k = 0; k < n; k++)
		if (ids[k] == F_TMACHINE) {
			fl_err("WARNING: The \"tmachine\" field is deprecated. Use \"target\" "
			       "instead");
			break;
		}
	if (fl_get_all(f, "units", NULL, 0, &all, &err) < 0) {
		fl_err("Error retrieving list of units from repository: %s", err.data);
		buf_release(&err);
		free_names(names, n);
		return 1;
	}
	ctl_table_init(&t, (size_t)n);
	add_header(f, &t, names, n);
	json_array_foreach(all, i, u)
	{
		json_t *opts = json_object_get(u, "options");
		bool global = fl_opts_global(opts);
		const char *mid = fl_jstr(u, "machineID");

		for (int k = 0; k < n; k++) {
			struct buf c = BUF_INIT;
			char hex[41];

			switch (ids[k]) {
			case F_UNIT:
				cb_puts(&c, fl_jstr(u, "name"));
				break;
			case F_HASH:
				fl_opts_hash(opts, hex);
				cb_append(&c, hex, full ? strlen(hex) : strnlen(hex, 7));
				break;
			case F_DSTATE:
				cb_puts(&c, fl_jstr(u, "desiredState"));
				break;
			case F_STATE:
				if (!global)
					cb_puts(&c, fl_jstr(u, "currentState"));
				break;
			case F_TARGET:
			case F_TMACHINE:
				if (global)
					cb_puts(&c, ids[k] == F_TARGET ? "global" : "");
				else if (*mid)
					fl_legend(f, &c, mid, full);
				break;
			case F_DESC:
				cb_puts(&c, fl_opts_desc(opts));
				break;
			case F_GLOBAL:
				cb_puts(&c, global ? "true" : "false");
				break;
			default:
				cb_puts(&c, fl_jstr(u, "reason"));
				break;
			}
			ctl_table_add(&t, c.data);
			buf_release(&c);
		}
	}
	ctl_table_render(&t, &out);
	ctl_write(stdout, &out);
	buf_release(&out);
	ctl_table_release(&t);
	json_decref(all);
	free_names(names, n);
	return 0;
}

static int cmp_state(const void *a, const void *b)
{
	json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
	int c = strcmp(fl_jstr(x, "name"), fl_jstr(y, "name"));

	return c ? c : strcmp(fl_jstr(x, "machineID"), fl_jstr(y, "machineID"));
}

int fl_cmd_list_units(struct fctx *f, int argc, char **argv)
{
	enum { F_UNIT, F_MACHINE, F_ACTIVE, F_SUB, F_LOAD, F_HASH };
	static const struct field valid[] = {{"active", F_ACTIVE}, {"hash", F_HASH},
	                                     {"load", F_LOAD},     {"machine", F_MACHINE},
	                                     {"sub", F_SUB},       {"unit", F_UNIT}};
	bool full = fl_flag(f, "full")->b;
	struct ctl_table t;
	struct buf err = BUF_INIT, out = BUF_INIT;
	json_t *all = NULL, **v;
	char **names;
	int ids[64], n;
	size_t cnt, i;

	(void)argc;
	(void)argv;
	n = parse_fields(f, "unit,machine,active,sub", valid, ARRAY_SIZE(valid), ids, &names);
	if (n < 0)
		return 1;
	if (fl_get_all(f, "states", NULL, 0, &all, &err) < 0) {
		fl_err("Error retrieving list of units from repository: %s", err.data);
		buf_release(&err);
		free_names(names, n);
		return 1;
	}
	cnt = json_array_size(all);
	v = calloc(cnt + 1, sizeof(*v));
	if (!v)
		ctl_oom();
	for (i = 0; i < cnt; i++)
		v[i] = json_array_get(all, i);
	qsort(v, cnt, sizeof(*v), cmp_state);
	ctl_table_init(&t, (size_t)n);
	add_header(f, &t, names, n);
	for (i = 0; i < cnt; i++) {
		for (int k = 0; k < n; k++) {
			struct buf c = BUF_INIT;
			const char *h;

			switch (ids[k]) {
			case F_UNIT:
				cb_puts(&c, fl_jstr(v[i], "name"));
				break;
			case F_MACHINE:
				if (*fl_jstr(v[i], "machineID"))
					fl_legend(f, &c, fl_jstr(v[i], "machineID"), full);
				break;
			case F_ACTIVE:
				cb_puts(&c, fl_jstr(v[i], "systemdActiveState"));
				break;
			case F_SUB:
				cb_puts(&c, fl_jstr(v[i], "systemdSubState"));
				break;
			case F_LOAD:
				cb_puts(&c, fl_jstr(v[i], "systemdLoadState"));
				break;
			default:
				h = fl_jstr(v[i], "hash");
				cb_append(&c, h, full ? strlen(h) : strnlen(h, 7));
				break;
			}
			ctl_table_add(&t, c.data);
			buf_release(&c);
		}
	}
	ctl_table_render(&t, &out);
	ctl_write(stdout, &out);
	buf_release(&out);
	ctl_table_release(&t);
	free(v);
	json_decref(all);
	free_names(names, n);
	return 0;
}

int fl_cmd_cat(struct fctx *f, int argc, char **argv)
{
	struct buf name = BUF_INIT, err = BUF_INIT, out = BUF_INIT;
	struct unit_file uf = UNIT_FILE_INIT;
	json_t *u = NULL;
	int r, ret = 0;

	if (argc != 1) {
		fl_err("One unit file must be provided");
		return 1;
	}
	if (unit_name_mangle(argv[0], &name) < 0)
		ctl_oom();
	r = fl_get_unit(f, name.data, &u, &err);
	if (r < 0) {
		fl_err("Error retrieving Unit %s: %s", name.data, err.data);
		ret = 1;
	} else if (r == 0) {
		fl_err("Unit %s not found", name.data);
		ret = 1;
	} else if (unit_from_json(json_object_get(u, "options"), &uf, &err) < 0 ||
	           unit_serialize(&uf, &out) < 0) {
		fl_err("Unit %s cannot be read: %s", name.data, err.data ? err.data : "");
		ret = 1;
	} else {
		ctl_write(stdout, &out);
	}
	json_decref(u);
	unit_file_release(&uf);
	buf_release(&name);
	buf_release(&err);
	buf_release(&out);
	return ret;
}

/* ---- status, journal ---- */

/* The machines a unit runs on: its target, or for a global unit every machine reporting it. */
static int unit_machines(struct fctx *f, json_t *u, json_t **ret, struct buf *err)
{
	json_t *ids = json_array();

	if (!ids)
		ctl_oom();
	if (fl_unit_global(u)) {
		struct ctl_param q = {"unitName", fl_jstr(u, "name")};
		json_t *states = NULL, *s;
		size_t i;

		if (fl_get_all(f, "states", &q, 1, &states, err) < 0) {
			json_decref(ids);
			return -EIO;
		}
		json_array_foreach(states, i, s) if (*fl_jstr(s, "machineID"))
		    json_array_append_new(ids, json_string(fl_jstr(s, "machineID")));
		json_decref(states);
	} else if (*fl_jstr(u, "machineID")) {
		json_array_append_new(ids, json_string(fl_jstr(u, "machineID")));
	}
	*ret = ids;
	return 0;
}

/* GET a text or JSON document of the agent side (status, journal) for `unit` on `machine`. */
static int agent_get(struct fctx *f, const char *base, const char *unit, const char *machine,
                     const struct ctl_param *extra, size_t nextra, struct buf *body, long *st,
                     struct buf *err)
{
	struct ctl_req req = {.method = "GET"};
	struct ctl_param q[4];
	struct ctl_resp resp;
	struct ctl_error e;
	struct buf path = BUF_INIT;
	size_t nq = 0;
	int r = 0;

	for (size_t i = 0; i < nextra && nq < 3; i++)
		q[nq++] = extra[i];
	if (machine && *machine)
		q[nq++] = (struct ctl_param){"machine", machine};
	cb_printf(&path, "%s%s", base, unit);
	req.path = path.data;
	req.query = q;
	req.nquery = nq;
	req.deadline = ctl_deadline(f->ctl);
	ctl_resp_init(&resp);
	ctl_error_init(&e);
	if (ctl_client_do(f->ctl->client, &req, &resp, &e) < 0) {
		cb_puts(err, e.msg.data ? e.msg.data : "request failed");
		fl_strip_nl(err);
		r = -EIO;
	} else {
		*st = resp.status;
		if (resp.body.len)
			cb_append(body, resp.body.data, resp.body.len);
		cb_puts(body, "");
	}
	ctl_resp_release(&resp);
	ctl_error_release(&e);
	buf_release(&path);
	return r;
}

static void body_error(struct buf *err, long st, const struct buf *body)
{
	json_t *j = json_loadb(body->data ? body->data : "", body->len, 0, NULL);

	fl_api_error(err, st, j);
	json_decref(j);
}

static int status_one(struct fctx *f, const char *name, struct buf *out)
{
	struct buf err = BUF_INIT;
	json_t *u = NULL, *ids = NULL, *id;
	size_t i;
	int r, ret = 0;

	r = fl_get_unit(f, name, &u, &err);
	if (r <= 0) {
		if (r < 0)
			fl_err("Error retrieving Unit %s: %s", name, err.data);
		else
			fl_err("Unit %s does not exist.", name);
		buf_release(&err);
		return 1;
	}
	if (unit_machines(f, u, &ids, &err) < 0 || json_array_size(ids) == 0) {
		if (err.len)
			fl_err("Error retrieving unit states: %s", err.data);
		else
			fl_err("Unit %s does not appear to be loaded.", name);
		if (*fl_jstr(u, "reason"))
			fl_err("Unit %s is not scheduled: %s", name, fl_jstr(u, "reason"));
		ret = 1;
		goto out;
	}
	json_array_foreach(ids, i, id)
	{
		const char *mid = json_string_value(id);
		struct ctl_param lines = {"lines", "10"};
		struct buf body = BUF_INIT, jbody = BUF_INIT, leg = BUF_INIT;
		json_t *st = NULL;
		long code = 0, jcode = 0;

		if (out->len)
			cb_putc(out, '\n');
		if (agent_get(f, MODEL_STATUS_PATH, name, mid, NULL, 0, &body, &code, &err) < 0) {
			fl_err("Error retrieving status of unit %s: %s", name, err.data);
			ret = 1;
		} else if (code != 200 ||
		           !(st = json_loadb(body.data ? body.data : "", body.len, 0, NULL))) {
			buf_clear(&err);
			body_error(&err, code, &body);
			fl_err("Error retrieving status of unit %s: %s", name, err.data);
			ret = 1;
		} else {
			/* the journal is a bonus: a unit without one still has a status */
			if (agent_get(f, MODEL_JOURNAL_PATH, name, mid, &lines, 1, &jbody, &jcode,
			              &err) < 0 ||
			    jcode != 200)
				buf_clear(&jbody);
			fl_legend(f, &leg, mid, false);
			if (!*fl_jstr(st, "unit"))
				json_object_set_new(st, "unit", json_string(name));
			ctl_status_render(out, st, leg.data, jbody.data, flt_realtime_ns());
		}
		json_decref(st);
		buf_release(&body);
		buf_release(&jbody);
		buf_release(&leg);
		buf_clear(&err);
	}
out:
	json_decref(ids);
	json_decref(u);
	buf_release(&err);
	return ret;
}

int fl_cmd_status(struct fctx *f, int argc, char **argv)
{
	int ret = 0;

	if (fl_need_units(argc))
		return 1;
	for (int i = 0; i < argc; i++) {
		struct buf name = BUF_INIT, out = BUF_INIT;
		int r;

		if (unit_name_mangle(argv[i], &name) < 0)
			ctl_oom();
		if (i)
			cb_putc(&out, '\n');
		r = status_one(f, name.data, &out);
		ctl_write(stdout, &out);
		if (r && !ret)
			ret = r;
		buf_release(&name);
		buf_release(&out);
	}
	return ret;
}

static size_t journal_chunk(const char *p, size_t n, void *ud)
{
	(void)ud;
	fwrite(p, 1, n, stdout);
	fflush(stdout);
	return n;
}

int fl_cmd_journal(struct fctx *f, int argc, char **argv)
{
	struct buf name = BUF_INIT, err = BUF_INIT, path = BUF_INIT, lines = BUF_INIT;
	const struct ctl_fval *ln = fl_flag(f, "lines");
	bool follow = fl_flag(f, "follow")->b;
	struct ctl_param q[3];
	struct ctl_req req = {.method = "GET"};
	struct ctl_resp resp;
	struct ctl_error e;
	json_t *u = NULL;
	size_t nq = 0;
	int r, ret = 0;

	if (argc != 1) {
		fl_err("One unit file must be provided.");
		return 1;
	}
	if (unit_name_mangle(argv[0], &name) < 0)
		ctl_oom();
	ctl_resp_init(&resp);
	ctl_error_init(&e);
	r = fl_get_unit(f, name.data, &u, &err);
	if (r <= 0) {
		if (r < 0)
			fl_err("Error retrieving Unit %s: %s", name.data, err.data);
		else
			fl_err("Unit %s does not exist.", name.data);
		ret = 1;
		goto out;
	}
	if (fl_unit_global(u)) {
		fl_err("Unable to retrieve journal of global unit %s.", name.data);
		ret = 1;
		goto out;
	}
	if (!strcmp(fl_jstr(u, "currentState"), "inactive") || !*fl_jstr(u, "machineID")) {
		fl_err("Unit %s does not appear to be running.", name.data);
		ret = 1;
		goto out;
	}
	cb_printf(&lines, "%" PRId64, ln->seen ? ln->i : 10);
	q[nq++] = (struct ctl_param){"lines", lines.data};
	if (follow)
		q[nq++] = (struct ctl_param){"follow", "true"};
	q[nq++] = (struct ctl_param){"machine", fl_jstr(u, "machineID")};
	cb_printf(&path, MODEL_JOURNAL_PATH "%s", name.data);
	req.path = path.data;
	req.query = q;
	req.nquery = nq;
	req.wait = follow;
	req.deadline = follow ? 0 : ctl_deadline(f->ctl);
	req.on_data = journal_chunk;
	if (ctl_client_do(f->ctl->client, &req, &resp, &e) < 0) {
		buf_clear(&err);
		cb_puts(&err, e.msg.data ? e.msg.data : "");
		fl_strip_nl(&err);
		fl_err("Error retrieving journal of unit %s: %s", name.data, err.data);
		ret = 1;
	} else if (resp.status != 200) {
		buf_clear(&err);
		body_error(&err, resp.status, &resp.body);
		fl_err("Error retrieving journal of unit %s: %s", name.data, err.data);
		ret = 1;
	}
out:
	json_decref(u);
	ctl_resp_release(&resp);
	ctl_error_release(&e);
	buf_release(&name);
	buf_release(&err);
	buf_release(&path);
	buf_release(&lines);
	return ret;
}

/* ---- ssh ---- */

int fl_cmd_ssh(struct fctx *f, int argc, char **argv)
{
	const char *mflag = fl_flag(f, "machine")->s, *uflag = fl_flag(f, "unit")->s, *arg;
	struct buf err = BUF_INIT, uname = BUF_INIT;
	json_t *machine = NULL, *unit = NULL, *m;
	char **cmd = argv;
	int ncmd = argc, nmatch = 0, port, ret;
	size_t i;

	if (mflag && *mflag)
		arg = mflag;
	else if (uflag && *uflag)
		arg = uflag;
	else if (argc > 0)
		arg = argv[0], cmd = argv + 1, ncmd = argc - 1;
	else {
		fl_err("Unable to proceed: could not find matching unit or machine");
		return 1;
	}
	if (ncmd > 0 && !strcmp(cmd[0], "--"))
		cmd++, ncmd--;
	if (!(uflag && *uflag)) {
		fl_machine(f, "");
		if (!f->machines) {
			fl_err("Unable to proceed: cannot list machines");
			return 1;
		}
		json_array_foreach(f->machines, i,
		                   m) if (!strncmp(fl_jstr(m, "id"), arg, strlen(arg)))
		{
			machine = m;
			nmatch++;
		}
		if (nmatch > 1) {
			fl_err("Unable to proceed: found more than one machine");
			return 1;
		}
	}
	if (!(mflag && *mflag)) {
		int r;

		if (unit_name_mangle(arg, &uname) < 0)
			ctl_oom();
		r = fl_get_unit(f, uname.data, &unit, &err);
		if (r < 0) {
			fl_err("Unable to proceed: %s", err.data);
			ret = 1;
			goto out;
		}
	}
	if (machine && unit) {
		fl_err(
		    "Unable to proceed: ambiguous argument, both machine and unit found for `%s`.\n"
		    "Please use flag `-m` or `-u` to refine the search",
		    arg);
		ret = 1;
		goto out;
	}
	if (unit) {
		if (fl_unit_global(unit)) {
			fl_err("Unable to proceed: global units unsupported");
			ret = 1;
			goto out;
		}
		if (*fl_jstr(unit, "machineID"))
			machine = fl_machine(f, fl_jstr(unit, "machineID"));
		if (!machine) {
			fl_err("Unable to proceed: unit %s does not appear to be running",
			       uname.data);
			ret = 1;
			goto out;
		}
	}
	if (!machine || !*fl_jstr(machine, "primaryIP")) {
		fl_err("Unable to proceed: could not find matching unit or machine");
		ret = 1;
		goto out;
	}
	port = fl_flag(f, "ssh-port")->seen ? (int)fl_flag(f, "ssh-port")->i : 22;
	ret = ctl_ssh_run(&f->ssh, fl_jstr(machine, "primaryIP"), port,
	                  fl_flag(f, "forward-agent")->b, cmd, ncmd);
	if (ret < 0) {
		fl_err("Unable to run ssh");
		ret = 1;
	}
out:
	json_decref(unit);
	buf_release(&err);
	buf_release(&uname);
	return ret;
}
