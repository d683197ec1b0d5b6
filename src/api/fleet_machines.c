/* The fleet v1 API's unit states (/fleet/v1/state) and machines (/fleet/v1/machines): the paged
 * lists, and PATCH of machine metadata as overrides over what agents report, proposed per machine
 * with compare-and-swap. Shared parts are in fleet.c. */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/fleet_int.h"
#include "engine/model.h"
#include "http/web.h"
#include "store/store.h"
#include "util/err.h"
#include "util/util.h"

#define PATCH_RETRIES 5 /* re-reads of a machine's metadata after a lost compare-and-swap */

/* ---------------------------------------------------------------- unit states */

static json_t *state_entity(const char *name, const char *mid, const json_t *st)
{
	json_t *s = json_object();
	const char *m = fleet_get_str(st, "machineID");

	fleet_set_str(s, "name", name);
	fleet_set_str(s, "machineID", m && *m ? m : mid);
	fleet_set_str(s, "hash", fleet_get_str(st, "hash"));
	fleet_set_str(s, "systemdLoadState", fleet_get_str(st, "loadState"));
	fleet_set_str(s, "systemdActiveState", fleet_get_str(st, "activeState"));
	fleet_set_str(s, "systemdSubState", fleet_get_str(st, "subState"));
	return s;
}

void fleet_state_handle(struct api *a, struct web_req *req, const char *item)
{
	json_t *states = NULL, *all = json_array(), *per, *st;
	char *f_unit = NULL, *f_mid = NULL;
	unsigned nunit = 0, nmid = 0, page = 1;
	const char *name, *mid;
	int r;

	if (strcmp(web_req_method(req), "GET")) {
		fleet_send_error(req, 405, "only GET supported against this resource");
		json_decref(all);
		return;
	}
	if (!item && !fleet_page_from_query(req, &page)) {
		json_decref(all);
		return;
	}
	r = all ? fleet_read_dir_map(a, MODEL_STATES, true, &states) : -ENOMEM;
	if (r >= 0 && !item) {
		r = web_query_get(web_req_query(req), "unitName", &nunit, &f_unit);
		if (r >= 0)
			r = web_query_get(web_req_query(req), "machineID", &nmid, &f_mid);
	}
	if (r < 0) {
		fleet_send_error(req, 500, flt_strerror(r));
		goto out;
	}
	/* sorted by (name, machine id): the store lists children by name */
	json_object_foreach(states, name, per)
	{
		if (item && strcmp(item, name))
			continue;
		if (nunit && strcmp(f_unit, name))
			continue;
		json_object_foreach(per, mid, st)
		{
			json_t *s = state_entity(name, mid, st);

			if (nmid && strcmp(f_mid, fleet_get_str(s, "machineID")
			                              ? fleet_get_str(s, "machineID")
			                              : "")) {
				json_decref(s);
				continue;
			}
			json_array_append_new(all, s);
		}
	}
	if (item) {
		if (!json_array_size(all))
			fleet_send_error(req, 404, "unit state does not exist");
		else
			fleet_send_json(req, 200, json_array_get(all, 0));
		goto out;
	}
	fleet_send_page(req, "states", all, page);
out:
	free(f_unit);
	free(f_mid);
	json_decref(all);
	json_decref(states);
}

/* ---------------------------------------------------------------- machines */

/* The metadata of machine `id` as everyone sees it: what its agent reports, with the API's
 * overrides (MODEL_METADATA) on top; an override of "" removes the key (fleet's tombstone). */
static json_t *merged_metadata(const json_t *reported, const json_t *overrides)
{
	json_t *m = json_object(), *v;
	const char *k;

	json_object_foreach((json_t *)reported, k, v) if (json_is_string(v))
	    json_object_set(m, k, v);
	json_object_foreach((json_t *)overrides, k, v)
	{
		if (!json_is_string(v))
			continue;
		if (!json_string_length(v))
			json_object_del(m, k);
		else
			json_object_set(m, k, v);
	}
	return m;
}

void fleet_machines_list(struct api *a, struct web_req *req)
{
	json_t *machines = NULL, *meta = NULL, *all, *mach;
	const struct fleet_dir dirs[] = {{MODEL_MACHINES, false, &machines},
	                                 {MODEL_METADATA, false, &meta}};
	const char *id;
	unsigned page;

	if (!(all = fleet_list_begin(a, req, dirs, ARRAY_SIZE(dirs), &page)))
		return;
	json_object_foreach(machines, id, mach)
	{
		json_t *m = json_object(), *md;
		const char *mid = fleet_get_str(mach, "id");

		fleet_set_str(m, "id", mid && *mid ? mid : id);
		fleet_set_str(m, "primaryIP", fleet_get_str(mach, "publicIP"));
		md = merged_metadata(json_object_get(mach, "metadata"), json_object_get(meta, id));
		if (json_object_size(md))
			json_object_set(m, "metadata", md);
		json_decref(md);
		json_array_append_new(all, m);
	}
	fleet_send_page(req, "machines", all, page);
	json_decref(all);
	json_decref(machines);
	json_decref(meta);
}

/* ---------------------------------------------------------------- machine metadata PATCH */

/* Split an op's path /<machine id>/metadata/<key> (key of [A-Za-z0-9_.-]+). */
static bool meta_path(const char *p, struct buf *id, struct buf *key)
{
	const char *slash, *k;

	if (!p || p[0] != '/')
		return false;
	slash = strchr(p + 1, '/');
	if (!slash || slash == p + 1 || strncmp(slash, "/metadata/", 10))
		return false;
	k = slash + 10;
	if (!*k ||
	    k[strspn(k, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")])
		return false;
	buf_clear(id);
	buf_clear(key);
	return buf_append(id, p + 1, (size_t)(slash - p - 1)) >= 0 && buf_puts(key, k) >= 0;
}

static void patch_round(struct fleet_op *f);

static void patch_done(void *ctx, int err, const struct store_result *res, uint64_t index)
{
	struct fleet_op *f = ctx;

	(void)index;
	if (err < 0 || !res) {
		if (!f->err)
			f->err = err < 0 ? err : -EIO;
	} else if (res->err_code == STORE_ETESTFAILED || res->err_code == STORE_ENODEEXIST) {
		f->lost = true;
	} else if (res->err_code && !f->err) {
		f->err = -EIO;
	}
	if (--f->pending)
		return;
	if (!f->err && f->lost && f->retries++ < PATCH_RETRIES) {
		/* another write to the same machine's overrides came first: the operations are
		 * idempotent (set or tombstone), so redo them all over what is stored now */
		patch_round(f);
		return;
	}
	if (f->err || f->lost) {
		fleet_send_error(f->req, 500,
		                 f->err ? flt_strerror(f->err) : "metadata kept changing");
	} else {
		/* fleet answers 204 with a JSON content type here */
		api_respond_plain(f->req, 204, NULL, 0, "application/json", "", 0);
	}
	fleet_op_free(f);
}

/* Apply the operations over the stored overrides of each machine they name, one proposal per
 * machine (compare-and-swap on what was read). Answers and frees `f` when it cannot propose. */
static void patch_round(struct fleet_op *f)
{
	struct buf id = BUF_INIT, key = BUF_INIT, path = BUF_INIT, val = BUF_INIT;
	json_t *groups = json_object(), *g, *op;
	const char *mid;
	size_t i;
	int r = groups ? 0 : -ENOMEM;

	f->lost = false;
	f->err = 0;
	/* {machine id: new overrides}, starting from what is stored */
	json_array_foreach(f->ops, i, op)
	{
		json_t *node = NULL;
		const char *o = fleet_get_str(op, "op");

		if (r < 0)
			break;
		meta_path(fleet_get_str(op, "path"), &id, &key);
		if (!(g = json_object_get(groups, id.data))) {
			buf_clear(&path);
			r = buf_printf(&path, MODEL_METADATA "/%s", id.data);
			if (r >= 0)
				r = fleet_read_node(f->a, path.data, false, &node);
			if (r < 0)
				break;
			g = json_pack(
			    "{s:o, s:I}", "v", node ? fleet_node_object(node) : json_object(), "i",
			    node ? json_integer_value(json_object_get(node, "modifiedIndex"))
			         : (json_int_t)0);
			json_decref(node);
			if (!g || !json_is_object(json_object_get(g, "v"))) {
				json_decref(g);
				g = json_pack("{s:o, s:I}", "v", json_object(), "i", (json_int_t)0);
			}
			json_object_set_new(groups, id.data, g);
		}
		json_object_set_new(
		    json_object_get(g, "v"), key.data,
		    json_string(!strcmp(o, "remove")
		                    ? ""
		                    : fleet_get_str(json_object_get(op, "value"), "value")));
	}
	f->pending = 1; /* held until every proposal is made */
	json_object_foreach(groups, mid, g)
	{
		uint64_t prev = (uint64_t)json_integer_value(json_object_get(g, "i"));

		if (r < 0)
			break;
		buf_clear(&path);
		buf_clear(&val);
		r = buf_printf(&path, MODEL_METADATA "/%s", mid);
		if (r >= 0)
			r = fleet_put_json(&val, json_object_get(g, "v"));
		if (r >= 0)
			r = fleet_propose(f->a, path.data, &val, prev ? -1 : 0, prev, patch_done,
			                  f);
		if (r >= 0)
			f->pending++;
	}
	if (r < 0)
		f->err = r;
	json_decref(groups);
	buf_release(&id);
	buf_release(&key);
	buf_release(&path);
	buf_release(&val);
	patch_done(f, 0, &(struct store_result){0}, 0); /* drop the hold */
}

void fleet_machines_patch(struct api *a, struct web_req *req)
{
	struct buf id = BUF_INIT, key = BUF_INIT;
	size_t len, i;
	const char *body = web_req_body(req, &len);
	json_error_t je;
	json_t *ops = json_loadb(body, len, JSON_DECODE_ANY, &je), *op;
	struct fleet_op *f;

	if (!ops) {
		fleet_send_errorf(req, 400, "%s", len ? je.text : "EOF");
		return;
	}
	if (!json_is_array(ops)) {
		fleet_send_errorf(req, 400,
		                  "json: cannot unmarshal %s into Go value of type "
		                  "[]api.machineMetadataOp",
		                  fleet_json_type_go(ops));
		json_decref(ops);
		return;
	}
	/* every operation is checked before any is applied */
	json_array_foreach(ops, i, op)
	{
		const char *o = fleet_get_str(op, "op");
		json_t *v = json_object_get(op, "value");

		if (!json_is_object(op)) {
			fleet_send_errorf(req, 400,
			                  "json: cannot unmarshal %s into Go value of type "
			                  "api.machineMetadataOp",
			                  fleet_json_type_go(op));
			goto bad;
		}
		if (v && !json_is_null(v) &&
		    (!json_is_object(v) || (json_object_get(v, "value") &&
		                            !json_is_string(json_object_get(v, "value"))))) {
			fleet_send_errorf(req, 400,
			                  "json: cannot unmarshal %s into Go struct field "
			                  "machineMetadataOp.Value of type struct { Value "
			                  "string \"json:\\\"value\\\"\" }",
			                  fleet_json_type_go(v));
			goto bad;
		}
		if (!o || (strcmp(o, "add") && strcmp(o, "remove") && strcmp(o, "replace"))) {
			fleet_send_error(req, 400, "invalid op: expect add, remove, or replace");
			goto bad;
		}
		if (!meta_path(fleet_get_str(op, "path"), &id, &key)) {
			fleet_send_error(req, 400, "machine metadata path invalid");
			goto bad;
		}
		if (strcmp(o, "remove")) {
			const char *s = fleet_get_str(v, "value");

			if (!s || !*s) {
				fleet_send_error(req, 400,
				                 "invalid value: add and replace require a value");
				goto bad;
			}
		}
	}
	buf_release(&id);
	buf_release(&key);
	if (!json_array_size(ops)) {
		json_decref(ops);
		api_respond_plain(req, 204, NULL, 0, "application/json", "", 0);
		return;
	}
	f = calloc(1, sizeof(*f));
	if (!f) {
		json_decref(ops);
		fleet_send_error(req, 500, "out of memory");
		return;
	}
	f->a = a;
	f->req = req;
	f->kind = FLEET_OP_PATCH;
	f->ops = ops;
	patch_round(f);
	return;
bad:
	buf_release(&id);
	buf_release(&key);
	json_decref(ops);
}
