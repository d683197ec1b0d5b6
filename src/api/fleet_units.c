/* The fleet v1 API's units (/fleet/v1/units): the Unit entity built from the stored unit, its
 * schedule and the states agents report, the paged list, and PUT (fleet's decision tree) and
 * DELETE proposed to the log and answered when applied. Shared parts are in fleet.c. */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/api.h"
#include "api/fleet_int.h"
#include "engine/model.h"
#include "http/web.h"
#include "store/store.h"
#include "unit/unit.h"
#include "util/err.h"
#include "util/log.h"
#include "util/util.h"

/* ---------------------------------------------------------------- units: reads */

static bool state_valid(const char *s)
{
	return s && (!strcmp(s, "inactive") || !strcmp(s, "loaded") || !strcmp(s, "launched"));
}

/* fleet's Global: the last [X-Fleet] Global= value decides; these are its true spellings. */
static bool options_global(const json_t *opts)
{
	static const char *const yes[] = {"true", "yes", "1", "on", "t"};
	const char *last = NULL;
	size_t i;
	json_t *o;

	json_array_foreach(opts, i, o)
	{
		const char *sec = fleet_get_str(o, "section"), *name = fleet_get_str(o, "name");

		if (sec && name && !strcmp(sec, "X-Fleet") && !strcmp(name, "Global"))
			last = fleet_get_str(o, "value");
	}
	for (i = 0; last && i < ARRAY_SIZE(yes); i++)
		if (!strcasecmp(last, yes[i]))
			return true;
	return false;
}

/* fleet's currentState (registry determineJobState) from the agent's report on the machine the
 * unit is scheduled to: none there is "inactive". fleet says "launched" once its agent has started
 * the unit, whatever systemd thinks of it since; our agents report systemd's states, so a unit
 * systemd has not left "inactive" for is "loaded" (unless it ran and exited while launched). */
static const char *current_state(const char *desired, const json_t *st)
{
	const char *active = fleet_get_str(st, "activeState");
	json_t *exit_code = json_object_get(st, "exitCode");

	if (!st)
		return "inactive";
	/* what the agent was told and acted on: fleet's own notion */
	if (fleet_get_str(st, "target"))
		return fleet_get_str(st, "target");
	if (active && *active && strcmp(active, "inactive"))
		return "launched";
	if (desired && !strcmp(desired, "launched") && json_is_integer(exit_code) &&
	    json_integer_value(exit_code) >= 0)
		return "launched";
	return "loaded";
}

/* The API's Unit entity for unit `name` stored as `stored`, with its schedule key and the states
 * agents reported for it ({machine id: state}); NULL for a stored value fleet could not read. */
static json_t *unit_entity(const char *name, const json_t *stored, const json_t *sched,
                           const json_t *states)
{
	const char *desired = fleet_get_str(stored, "desiredState"),
	           *mid = fleet_get_str(sched, "machineID");
	json_t *u, *opts = json_object_get(stored, "options"), *out_opts, *o;
	size_t i;

	if (!state_valid(desired) || !json_is_array(opts))
		return NULL;
	u = json_object();
	out_opts = json_array();
	if (!u || !out_opts) {
		json_decref(u);
		json_decref(out_opts);
		return NULL;
	}
	json_array_foreach(opts, i, o)
	{
		json_t *x = json_object();

		fleet_set_str(x, "section", fleet_get_str(o, "section"));
		fleet_set_str(x, "name", fleet_get_str(o, "name"));
		fleet_set_str(x, "value", fleet_get_str(o, "value"));
		json_array_append_new(out_opts, x);
	}
	fleet_set_str(u, "name", name);
	fleet_set_str(u, "desiredState", desired);
	if (json_array_size(out_opts))
		json_object_set(u, "options", out_opts);
	json_decref(out_opts);
	if (options_global(opts)) /* no placement: every matching agent runs it */
		return u;
	if (mid && *mid) {
		fleet_set_str(u, "machineID", mid);
		fleet_set_str(u, "currentState",
		              current_state(desired, json_object_get(states, mid)));
	} else {
		fleet_set_str(u, "currentState", "inactive");
	}
	/* flotilla's addition: why the engine could not place it */
	fleet_set_str(u, "reason", fleet_get_str(sched, "reason"));
	return u;
}

/* The stored unit `name` (new reference) and its modifiedIndex; NULL if absent. */
static int read_unit(struct api *a, const char *name, json_t **ret, uint64_t *ret_index)
{
	struct buf key = BUF_INIT;
	json_t *node = NULL;
	int r;

	if (buf_printf(&key, MODEL_UNITS "/%s", name) < 0)
		return -ENOMEM;
	r = fleet_read_node(a, key.data, false, &node);
	buf_release(&key);
	if (r < 0)
		return r;
	*ret = node ? fleet_node_object(node) : NULL;
	if (ret_index)
		*ret_index = (uint64_t)json_integer_value(json_object_get(node, "modifiedIndex"));
	json_decref(node);
	return 0;
}

void fleet_units_get(struct api *a, struct web_req *req, const char *name)
{
	struct buf key = BUF_INIT;
	json_t *stored = NULL, *sched = NULL, *states = NULL, *node = NULL, *u;
	int r = read_unit(a, name, &stored, NULL);

	if (r >= 0 && stored)
		r = buf_printf(&key, MODEL_SCHEDULE "/%s", name);
	if (r >= 0 && stored && (r = fleet_read_node(a, key.data, false, &node)) >= 0) {
		sched = node ? fleet_node_object(node) : NULL;
		buf_clear(&key);
		r = buf_printf(&key, MODEL_STATES "/%s", name);
		if (r >= 0)
			r = fleet_read_dir_map(a, key.data, false, &states);
	}
	if (r < 0) {
		fleet_send_error(req, 500, flt_strerror(r));
	} else if (!stored) {
		fleet_send_error(req, 404, "unit does not exist");
	} else if (!(u = unit_entity(name, stored, sched, states))) {
		/* what fleet does with a unit it cannot read */
		fleet_send_error(req, 500, "unit is stored in a form that cannot be read");
	} else {
		fleet_send_json(req, 200, u);
		json_decref(u);
	}
	buf_release(&key);
	json_decref(node);
	json_decref(stored);
	json_decref(sched);
	json_decref(states);
}

void fleet_units_list(struct api *a, struct web_req *req)
{
	json_t *units = NULL, *sched = NULL, *states = NULL, *all, *stored;
	const struct fleet_dir dirs[] = {{MODEL_UNITS, false, &units},
	                                 {MODEL_SCHEDULE, false, &sched},
	                                 {MODEL_STATES, true, &states}};
	unsigned page;
	const char *name;

	if (!(all = fleet_list_begin(a, req, dirs, ARRAY_SIZE(dirs), &page)))
		return;
	/* the store lists children sorted by name, and jansson keeps insertion order */
	json_object_foreach(units, name, stored)
	{
		json_t *u = unit_entity(name, stored, json_object_get(sched, name),
		                        json_object_get(states, name));

		if (u) /* fleet skips units it cannot read */
			json_array_append_new(all, u);
	}
	fleet_send_page(req, "units", all, page);
	json_decref(all);
	json_decref(units);
	json_decref(sched);
	json_decref(states);
}

/* ---------------------------------------------------------------- writes */

static void unit_write_done(void *ctx, int err, const struct store_result *res, uint64_t index)
{
	struct fleet_op *f = ctx;

	(void)index;
	if (err < 0 || !res) {
		log_warn("fleet api: write failed: %s", flt_strerror(err < 0 ? err : -EIO));
		fleet_send_error(f->req, 500, flt_strerror(err < 0 ? err : -EIO));
	} else if (!res->err_code) {
		fleet_send_empty(f->req, f->kind == FLEET_OP_SET_STATE || f->kind == FLEET_OP_DELETE
		                             ? 204
		                             : 201);
	} else if (res->err_code == STORE_ENODEEXIST) {
		/* lost a race with another create of the same name */
		fleet_send_error(f->req, 409, "unit already exists");
	} else if (res->err_code == STORE_EKEYNOTFOUND) {
		fleet_send_error(f->req, 404, "unit does not exist");
	} else if (res->err_code == STORE_ETESTFAILED) {
		fleet_send_error(f->req, 409, "unit was changed by another request, try again");
	} else {
		fleet_send_errorf(f->req, 500, "store error %d", res->err_code);
	}
	fleet_op_free(f);
}

static void start_unit_write(struct api *a, struct web_req *req, enum fleet_op_kind kind,
                             const char *name, const json_t *value, uint64_t prev_index)
{
	struct buf key = BUF_INIT, val = BUF_INIT;
	struct fleet_op *f = calloc(1, sizeof(*f));
	int r = f ? buf_printf(&key, MODEL_UNITS "/%s", name) : -ENOMEM;

	if (r >= 0 && value)
		r = fleet_put_json(&val, value);
	if (r >= 0) {
		f->a = a;
		f->req = req;
		f->kind = kind;
		r = fleet_propose(a, key.data, value ? &val : NULL,
		                  kind == FLEET_OP_CREATE ? 0 : -1, prev_index, unit_write_done, f);
	}
	if (r < 0) {
		free(f);
		fleet_send_error(req, r == FLT_ETOOBIG ? 400 : 500,
		                 r == FLT_ETOOBIG ? "unit too large" : flt_strerror(r));
	}
	buf_release(&key);
	buf_release(&val);
}

void fleet_units_delete(struct api *a, struct web_req *req, const char *name)
{
	json_t *stored = NULL;
	uint64_t index = 0;
	int r = read_unit(a, name, &stored, &index);

	if (r < 0) {
		fleet_send_error(req, 500, flt_strerror(r));
		return;
	}
	if (!stored) {
		fleet_send_error(req, 404, "unit does not exist");
		return;
	}
	json_decref(stored);
	/* the engine sees the unit go and removes its schedule; the agents stop it */
	start_unit_write(a, req, FLEET_OP_DELETE, name, NULL, 0);
}

/* Content-Type must be application/json, parameters allowed (fleet's validateContentType). */
static bool check_json_ctype(struct web_req *req)
{
	const char *ct = web_req_header(req, "Content-Type");
	size_t n;

	if (!ct) {
		fleet_send_error(req, 415, "expected 1 Content-Type, got 0");
		return false;
	}
	while (*ct == ' ' || *ct == '\t')
		ct++;
	n = strcspn(ct, ";");
	while (n && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
		n--;
	if (n != 16 || strncmp(ct, "application/json", 16)) {
		fleet_send_error(req, 415, "only acceptable Content-Type is application/json");
		return false;
	}
	return true;
}

/* The body of a unit PUT decoded as fleet's schema.Unit: an object whose known fields have the
 * right types. Returns the object (new reference) or NULL with the message in `err`. */
static json_t *decode_unit_body(struct web_req *req, struct buf *err)
{
	static const char *const strs[] = {"name", "desiredState", "currentState", "machineID"};
	size_t len, i;
	const char *body = web_req_body(req, &len);
	json_error_t je;
	json_t *j, *opts, *o;

	while (len && strchr(" \t\r\n", body[0])) {
		body++;
		len--;
	}
	if (!len) {
		buf_puts(err, "unable to decode body: EOF");
		return NULL;
	}
	j = json_loadb(body, len, JSON_DISABLE_EOF_CHECK | JSON_DECODE_ANY, &je);
	if (!j) {
		buf_printf(err, "unable to decode body: %s", je.text);
		return NULL;
	}
	if (json_is_null(j)) {
		json_decref(j);
		return json_object();
	}
	if (!json_is_object(j)) {
		buf_printf(err,
		           "unable to decode body: json: cannot unmarshal %s into Go value of "
		           "type schema.Unit",
		           fleet_json_type_go(j));
		json_decref(j);
		return NULL;
	}
	for (i = 0; i < ARRAY_SIZE(strs); i++) {
		json_t *v = json_object_get(j, strs[i]);

		if (v && !json_is_string(v) && !json_is_null(v)) {
			buf_printf(err,
			           "unable to decode body: json: cannot unmarshal %s into Go "
			           "struct field Unit.%s of type string",
			           fleet_json_type_go(v), strs[i]);
			json_decref(j);
			return NULL;
		}
	}
	opts = json_object_get(j, "options");
	if (opts && !json_is_array(opts) && !json_is_null(opts)) {
		buf_printf(err,
		           "unable to decode body: json: cannot unmarshal %s into Go struct "
		           "field Unit.options of type []*schema.UnitOption",
		           fleet_json_type_go(opts));
		json_decref(j);
		return NULL;
	}
	json_array_foreach(opts, i, o)
	{
		static const char *const f[] = {"section", "name", "value"};

		if (!json_is_object(o)) {
			buf_printf(err,
			           "unable to decode body: json: cannot unmarshal %s into Go "
			           "value of type schema.UnitOption",
			           fleet_json_type_go(o));
			json_decref(j);
			return NULL;
		}
		for (size_t k = 0; k < ARRAY_SIZE(f); k++) {
			json_t *v = json_object_get(o, f[k]);

			if (v && !json_is_string(v) && !json_is_null(v)) {
				buf_printf(err,
				           "unable to decode body: json: cannot unmarshal %s "
				           "into Go struct field UnitOption.options.%s of type "
				           "string",
				           fleet_json_type_go(v), f[k]);
				json_decref(j);
				return NULL;
			}
		}
	}
	return j;
}

/* Validate `opts` (an options array) as unit `name` and build the value stored under
 * MODEL_UNITS. NULL with the 400 message in `err`. */
static json_t *build_stored_unit(const char *name, const json_t *opts, const char *desired,
                                 struct buf *err, int *ret_err)
{
	struct unit_file uf = UNIT_FILE_INIT;
	struct unit_sched sched;
	void *norm = NULL;
	char hash[41];
	json_t *v = NULL;
	int r;

	*ret_err = 0;
	r = unit_from_json(opts, &uf, err);
	if (r >= 0) {
		memset(&sched, 0, sizeof(sched));
		r = unit_sched_parse(&uf, name, &sched, err);
		if (r >= 0)
			unit_sched_release(&sched);
	}
	if (r >= 0)
		r = unit_hash(&uf, hash);
	if (r >= 0)
		r = unit_to_json(&uf, &norm);
	if (r >= 0) {
		v = json_object();
		if (!v) {
			r = -ENOMEM;
		} else {
			json_object_set_new(v, "name", json_string(name));
			json_object_set_new(v, "desiredState", json_string(desired));
			json_object_set_new(v, "hash", json_string(hash));
			json_object_set_new(v, "options", (json_t *)norm);
			norm = NULL;
		}
	}
	json_decref((json_t *)norm);
	unit_file_release(&uf);
	if (r < 0) {
		if (r != FLT_EINVAL)
			*ret_err = r;
		else if (!err->len)
			buf_puts(err, "invalid unit options");
		return NULL;
	}
	return v;
}

/* The hash the given options would be stored under ("" if they do not parse). */
static void options_hash(const json_t *opts, char hash[41])
{
	struct unit_file uf = UNIT_FILE_INIT;
	struct buf err = BUF_INIT;

	hash[0] = '\0';
	if (unit_from_json(opts, &uf, &err) >= 0 && unit_hash(&uf, hash) < 0)
		hash[0] = '\0';
	unit_file_release(&uf);
	buf_release(&err);
}

/* The options of a request with fleet's zero values filled in: its clients leave out empty
 * fields (omitempty), so {"section":"Service","name":"Environment"} means an empty value. */
static json_t *normalize_options(const json_t *opts)
{
	static const char *const f[] = {"section", "name", "value"};
	json_t *out, *o;
	size_t i;

	if (!json_is_array(opts) || !(out = json_array()))
		return NULL;
	json_array_foreach(opts, i, o)
	{
		json_t *x = json_object();

		for (size_t k = 0; k < ARRAY_SIZE(f); k++) {
			const char *v = fleet_get_str(o, f[k]);

			json_object_set_new(x, f[k], json_string(v ? v : ""));
		}
		json_array_append_new(out, x);
	}
	return out;
}

/* PUT /units/<name>: fleet's decision tree (INVENTORY §6.4), except that an invalid desiredState
 * is refused with 400 (fleet stored it and broke the unit), and a template may not be created
 * loaded or launched any more than it may be set so. */
void fleet_units_put(struct api *a, struct web_req *req, const char *item)
{
	struct buf err = BUF_INIT, tpl = BUF_INIT;
	json_t *body = NULL, *existing = NULL, *tpl_unit = NULL, *opts, *v = NULL, *norm = NULL;
	const char *name, *desired;
	uint64_t index = 0;
	int r, e;

	if (!check_json_ctype(req))
		return;
	if (!(body = decode_unit_body(req, &err))) {
		fleet_send_error(req, 400, err.data ? err.data : "unable to decode body");
		goto out;
	}
	name = fleet_get_str(body, "name");
	if (!name || !*name)
		name = item;
	if (strcmp(item, name)) {
		buf_puts(&err, "name in URL ");
		fleet_put_quoted(&err, item);
		buf_puts(&err, " differs from unit name in request body ");
		fleet_put_quoted(&err, name);
		fleet_send_error(req, 400, err.data);
		goto out;
	}
	{
		const char *why = NULL;

		if (unit_name_check(name, &why) < 0) {
			fleet_send_error(req, 400, why ? why : "invalid unit name");
			goto out;
		}
	}
	desired = fleet_get_str(body, "desiredState");
	if (desired && !*desired)
		desired = NULL;
	if (desired && !state_valid(desired)) {
		buf_puts(&err, "invalid desiredState ");
		fleet_put_quoted(&err, desired);
		buf_puts(&err, ": must be inactive, loaded or launched");
		fleet_send_error(req, 400, err.data);
		goto out;
	}
	if ((r = read_unit(a, name, &existing, &index)) < 0) {
		fleet_send_error(req, 500, flt_strerror(r));
		goto out;
	}
	opts = norm = normalize_options(json_object_get(body, "options"));
	if (!json_array_size(opts))
		opts = NULL;
	if (existing) {
		char hash[41];
		const char *old = fleet_get_str(existing, "hash");

		if (opts)
			options_hash(opts, hash);
		if (!opts || (old && !strcmp(hash, old))) {
			/* a change of the desired state alone */
			if (!desired) {
				fleet_send_error(
				    req, 409, "must provide DesiredState to update existing unit");
				goto out;
			}
			if (unit_name_is_template(name) && strcmp(desired, "inactive")) {
				buf_puts(&err, "cannot activate template ");
				fleet_put_quoted(&err, name);
				fleet_send_error(req, 400, err.data);
				goto out;
			}
			json_object_set_new(existing, "desiredState", json_string(desired));
			/* compare-and-swap: the options cannot change under us */
			start_unit_write(a, req, FLEET_OP_SET_STATE, name, existing, index);
			goto out;
		}
	} else if (!opts && unit_name_is_instance(name)) {
		/* an instance takes its template's contents (fleetctl's lookup, done here) */
		if (unit_name_template(name, &tpl) >= 0 &&
		    (r = read_unit(a, tpl.data, &tpl_unit, NULL)) < 0) {
			fleet_send_error(req, 500, flt_strerror(r));
			goto out;
		}
		opts = json_object_get(tpl_unit, "options");
		if (!json_array_size(opts))
			opts = NULL;
	}
	if (!opts) {
		fleet_send_error(req, 409, "unit does not exist and options field empty");
		goto out;
	}
	if (!desired)
		desired = "inactive";
	if (unit_name_is_template(name) && strcmp(desired, "inactive")) {
		buf_puts(&err, "cannot activate template ");
		fleet_put_quoted(&err, name);
		fleet_send_error(req, 400, err.data);
		goto out;
	}
	if (!(v = build_stored_unit(name, opts, desired, &err, &e))) {
		if (e < 0)
			fleet_send_error(req, 500, flt_strerror(e));
		else
			fleet_send_error(req, 400, err.data);
		goto out;
	}
	/* a create must not overwrite a racing create (prevExist=false); a replace must replace
	 * what we read (compare-and-swap on its index) */
	start_unit_write(a, req, existing ? FLEET_OP_REPLACE : FLEET_OP_CREATE, name, v,
	                 existing ? index : 0);
out:
	buf_release(&err);
	buf_release(&tpl);
	json_decref(body);
	json_decref(existing);
	json_decref(tpl_unit);
	json_decref(v);
	json_decref(norm);
}
