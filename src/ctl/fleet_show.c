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

/* One list command: its fields (`valid`, `dflt` without --fields; using `warn_field` prints
 * `warn`), and its rows: GET of the collection `what`, sorted by `cmp` (NULL keeps the API's
 * order), one cell per field written by `cell`. A failed GET prints err_pre, the reason and
 * err_post. */
struct list {
	const struct field *valid;
	size_t nvalid;
	const char *dflt;
	const char *warn_field, *warn;
	const char *what;
	const char *err_pre, *err_post;
	int (*cmp)(const void *a, const void *b);
	void (*cell)(struct fctx *f, json_t *row, int id, bool full, struct buf *c);
};

/* Run the list command `l`: parse --fields, print the table. Returns the exit code. */
static int list_run(struct fctx *f, const struct list *l)
{
	bool full = fl_flag(f, "full")->b;
	struct ctl_table t;
	struct buf err = BUF_INIT, out = BUF_INIT;
	json_t *all = NULL, **v;
	char **names;
	int ids[64], n;
	size_t cnt, i;

	n = parse_fields(f, l->dflt, l->valid, l->nvalid, ids, &names);
	if (n < 0)
		return 1;
	for (int k = 0; l->warn_field && k < n; k++)
		if (!strcmp(names[k], l->warn_field)) {
			fl_err("%s", l->warn);
			break;
		}
	if (fl_get_all(f, l->what, NULL, 0, &all, &err) < 0) {
		fl_err("%s%s%s", l->err_pre, err.data, l->err_post);
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
	if (l->cmp)
		qsort(v, cnt, sizeof(*v), l->cmp);
	ctl_table_init(&t, (size_t)n);
	add_header(f, &t, names, n);
	for (i = 0; i < cnt; i++) {
		for (int k = 0; k < n; k++) {
			struct buf c = BUF_INIT;

			l->cell(f, v[i], ids[k], full, &c);
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

static int cmp_id(const void *a, const void *b)
{
	return strcmp(fl_jstr(*(json_t *const *)a, "id"), fl_jstr(*(json_t *const *)b, "id"));
}

enum { M_MACHINE, M_IP, M_META };

static void machine_cell(struct fctx *f, json_t *m, int id, bool full, struct buf *c)
{
	json_t *md = json_object_get(m, "metadata");

	(void)f;
	switch (id) {
	case M_MACHINE:
		ctl_machine_legend(c, fl_jstr(m, "id"), NULL, full, false);
		break;
	case M_IP:
		cb_puts(c, fl_jstr(m, "primaryIP"));
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
			for (size_t b = a; b > 0 && strcmp(keys[b - 1], keys[b]) > 0; b--) {
				const char *tmp = keys[b];

				keys[b] = keys[b - 1];
				keys[b - 1] = tmp;
			}
		for (j = 0; j < nk; j++)
			cb_printf(c, "%s%s=%s", j ? "," : "", keys[j], fl_jstr(md, keys[j]));
		free(keys);
		break;
	}
	}
}

int fl_cmd_list_machines(struct fctx *f, int argc, char **argv)
{
	static const struct field valid[] = {
	    {"machine", M_MACHINE}, {"ip", M_IP}, {"metadata", M_META}};
	static const struct list l = {
	    .valid = valid,
	    .nvalid = ARRAY_SIZE(valid),
	    .dflt = "machine,ip,metadata",
	    .what = "machines",
	    .err_pre = "Error retrieving list of active machines from fleet API (",
	    .err_post = ")\nPossible issues:\n  etcd is unhealthy and/or lost quorum\n  connection "
	                "cannot be established to any etcd servers",
	    .cmp = cmp_id,
	    .cell = machine_cell};

	(void)argc;
	(void)argv;
	return list_run(f, &l);
}

enum {
	UF_UNIT,
	UF_HASH,
	UF_DSTATE,
	UF_STATE,
	UF_TARGET,
	UF_TMACHINE,
	UF_DESC,
	UF_GLOBAL,
	UF_REASON
};

static void unit_file_cell(struct fctx *f, json_t *u, int id, bool full, struct buf *c)
{
	json_t *opts = json_object_get(u, "options");
	bool global = fl_opts_global(opts);
	const char *mid = fl_jstr(u, "machineID");
	char hex[41];

	switch (id) {
	case UF_UNIT:
		cb_puts(c, fl_jstr(u, "name"));
		break;
	case UF_HASH:
		fl_opts_hash(opts, hex);
		cb_append(c, hex, full ? strlen(hex) : strnlen(hex, 7));
		break;
	case UF_DSTATE:
		cb_puts(c, fl_jstr(u, "desiredState"));
		break;
	case UF_STATE:
		if (!global)
			cb_puts(c, fl_jstr(u, "currentState"));
		break;
	case UF_TARGET:
	case UF_TMACHINE:
		if (global)
			cb_puts(c, id == UF_TARGET ? "global" : "");
		else if (*mid)
			fl_legend(f, c, mid, full);
		break;
	case UF_DESC:
		cb_puts(c, fl_opts_desc(opts));
		break;
	case UF_GLOBAL:
		cb_puts(c, global ? "true" : "false");
		break;
	default:
		cb_puts(c, fl_jstr(u, "reason"));
		break;
	}
}

int fl_cmd_list_unit_files(struct fctx *f, int argc, char **argv)
{
	static const struct field valid[] = {
	    {"desc", UF_DESC},         {"dstate", UF_DSTATE}, {"global", UF_GLOBAL},
	    {"hash", UF_HASH},         {"state", UF_STATE},   {"target", UF_TARGET},
	    {"tmachine", UF_TMACHINE}, {"unit", UF_UNIT},     {"reason", UF_REASON}};
	static const struct list l = {
	    .valid = valid,
	    .nvalid = ARRAY_SIZE(valid),
	    .dflt = "unit,hash,dstate,state,target",
	    .warn_field = "tmachine",
	    .warn = "WARNING: The \"tmachine\" field is deprecated. Use \"target\" instead",
	    .what = "units",
	    .err_pre = "Error retrieving list of units from repository: ",
	    .err_post = "",
	    .cell = unit_file_cell};

	(void)argc;
	(void)argv;
	return list_run(f, &l);
}

static int cmp_state(const void *a, const void *b)
{
	json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
	int c = strcmp(fl_jstr(x, "name"), fl_jstr(y, "name"));

	return c ? c : strcmp(fl_jstr(x, "machineID"), fl_jstr(y, "machineID"));
}

enum { U_UNIT, U_MACHINE, U_ACTIVE, U_SUB, U_LOAD, U_HASH };

static void unit_cell(struct fctx *f, json_t *s, int id, bool full, struct buf *c)
{
	const char *h;

	switch (id) {
	case U_UNIT:
		cb_puts(c, fl_jstr(s, "name"));
		break;
	case U_MACHINE:
		if (*fl_jstr(s, "machineID"))
			fl_legend(f, c, fl_jstr(s, "machineID"), full);
		break;
	case U_ACTIVE:
		cb_puts(c, fl_jstr(s, "systemdActiveState"));
		break;
	case U_SUB:
		cb_puts(c, fl_jstr(s, "systemdSubState"));
		break;
	case U_LOAD:
		cb_puts(c, fl_jstr(s, "systemdLoadState"));
		break;
	default:
		h = fl_jstr(s, "hash");
		cb_append(c, h, full ? strlen(h) : strnlen(h, 7));
		break;
	}
}

int fl_cmd_list_units(struct fctx *f, int argc, char **argv)
{
	static const struct field valid[] = {{"active", U_ACTIVE}, {"hash", U_HASH},
	                                     {"load", U_LOAD},     {"machine", U_MACHINE},
	                                     {"sub", U_SUB},       {"unit", U_UNIT}};
	static const struct list l = {.valid = valid,
	                              .nvalid = ARRAY_SIZE(valid),
	                              .dflt = "unit,machine,active,sub",
	                              .what = "states",
	                              .err_pre = "Error retrieving list of units from repository: ",
	                              .err_post = "",
	                              .cmp = cmp_state,
	                              .cell = unit_cell};

	(void)argc;
	(void)argv;
	return list_run(f, &l);
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

/* fl_get_unit for a unit that must exist: 1 with *ret (owned), or 0 after fleetctl's message. */
static int get_existing_unit(struct fctx *f, const char *name, json_t **ret)
{
	struct buf err = BUF_INIT;
	int r = fl_get_unit(f, name, ret, &err);

	if (r < 0)
		fl_err("Error retrieving Unit %s: %s", name, err.data);
	else if (r == 0)
		fl_err("Unit %s does not exist.", name);
	buf_release(&err);
	return r > 0;
}

static int status_one(struct fctx *f, const char *name, struct buf *out)
{
	struct buf err = BUF_INIT;
	json_t *u = NULL, *ids = NULL, *id;
	size_t i;
	int ret = 0;

	if (!get_existing_unit(f, name, &u))
		return 1;
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
	int ret = 0;

	if (argc != 1) {
		fl_err("One unit file must be provided.");
		return 1;
	}
	if (unit_name_mangle(argv[0], &name) < 0)
		ctl_oom();
	ctl_resp_init(&resp);
	ctl_error_init(&e);
	if (!get_existing_unit(f, name.data, &u)) {
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
