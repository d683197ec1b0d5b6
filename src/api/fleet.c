/* The fleet v1 HTTP API (/fleet/v1 and /v1-alpha), with fleet v1.0's JSON shapes, status codes
 * and messages (reference/fleet INVENTORY §6): the routing, the discovery document, and what the
 * resources (fleet_units.c, fleet_machines.c) share: JSON answers, store reads, page tokens, and
 * writes as store commands proposed to the log and answered when applied, as in keys.c. */
#include "api/api.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "api/fleet_int.h"
#include "http/web.h"
#include "node.h"
#include "store/store.h"
#include "unit/unit.h"
#include "util/err.h"
#include "util/util.h"

#define PAGE_LIMIT 100 /* fleet's tokenLimit: items per page */

/* ---------------------------------------------------------------- JSON out */

static int cmp_cstr(const void *x, const void *y)
{
	return strcmp(*(const char *const *)x, *(const char *const *)y);
}

/* `j` as Go's encoding/json writes it: object keys sorted (fleet's generated structs have their
 * fields in alphabetical order), strings HTML-escaped. */
int fleet_put_json(struct buf *b, const json_t *j)
{
	int r = 0;

	switch (json_typeof(j)) {
	case JSON_OBJECT: {
		size_t n = json_object_size(j), i = 0;
		const char **keys = calloc(n ? n : 1, sizeof(*keys));
		const char *k;
		json_t *v;

		if (!keys)
			return -ENOMEM;
		json_object_foreach((json_t *)j, k, v) keys[i++] = k;
		qsort(keys, n, sizeof(*keys), cmp_cstr);
		r = buf_putc(b, '{');
		for (i = 0; r >= 0 && i < n; i++) {
			if (i)
				buf_putc(b, ',');
			store_json_string(b, keys[i], strlen(keys[i]));
			buf_putc(b, ':');
			r = fleet_put_json(b, json_object_get(j, keys[i]));
		}
		free(keys);
		return r < 0 ? r : buf_putc(b, '}');
	}
	case JSON_ARRAY:
		r = buf_putc(b, '[');
		for (size_t i = 0; r >= 0 && i < json_array_size(j); i++) {
			if (i)
				buf_putc(b, ',');
			r = fleet_put_json(b, json_array_get(j, i));
		}
		return r < 0 ? r : buf_putc(b, ']');
	case JSON_STRING:
		return store_json_string(b, json_string_value(j), json_string_length(j));
	case JSON_INTEGER:
		return buf_put_i64(b, json_integer_value(j));
	case JSON_REAL:
		return buf_printf(b, "%.17g", json_real_value(j));
	case JSON_TRUE:
		return buf_puts(b, "true");
	case JSON_FALSE:
		return buf_puts(b, "false");
	default:
		return buf_puts(b, "null");
	}
}

/* Set `key` to the string `v` unless it is empty or NULL: fleet's structs are all omitempty. */
void fleet_set_str(json_t *o, const char *key, const char *v)
{
	if (v && *v)
		json_object_set_new(o, key, json_string(v));
}

const char *fleet_get_str(const json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

/* ---------------------------------------------------------------- answers */

void fleet_send_json(struct web_req *req, int status, const json_t *j)
{
	struct buf b = BUF_INIT;

	if (fleet_put_json(&b, j) < 0) {
		buf_release(&b);
		api_respond_plain(req, 500, NULL, 0, "application/json",
		                  "{\"error\":{\"code\":500,\"message\":\"out of memory\"}}", 47);
		return;
	}
	api_respond_plain(req, status, NULL, 0, "application/json", b.data, b.len);
	buf_release(&b);
}

/* fleet's error entity {"error":{"code":..,"message":..}}. */
void fleet_send_error(struct web_req *req, int status, const char *msg)
{
	struct buf b = BUF_INIT;

	buf_printf(&b, "{\"error\":{\"code\":%d,\"message\":", status);
	store_json_string(&b, msg, strlen(msg));
	if (buf_puts(&b, "}}") < 0) {
		buf_release(&b);
		api_respond_plain(req, 500, NULL, 0, "application/json", "", 0);
		return;
	}
	api_respond_plain(req, status, NULL, 0, "application/json", b.data, b.len);
	buf_release(&b);
}

void fleet_send_errorf(struct web_req *req, int status, const char *fmt, ...)
{
	struct buf msg = BUF_INIT;
	va_list ap;

	va_start(ap, fmt);
	buf_vprintf(&msg, fmt, ap);
	va_end(ap);
	fleet_send_error(req, status, msg.data ? msg.data : "");
	buf_release(&msg);
}

/* Empty 201/204 answers: fleet sends no Content-Type with them. */
void fleet_send_empty(struct web_req *req, int status)
{
	api_respond_plain(req, status, NULL, 0, NULL, "", 0);
}

/* Go's %q of a string that is plain text in practice (names, states). */
int fleet_put_quoted(struct buf *b, const char *s)
{
	int r = buf_putc(b, '"');

	for (; r >= 0 && *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			r = buf_printf(b, "\\%c", c);
		else if (c < 0x20 || c == 0x7f)
			r = buf_printf(b, "\\x%02x", c);
		else
			r = buf_putc(b, (char)c);
	}
	return r < 0 ? r : buf_putc(b, '"');
}

/* ---------------------------------------------------------------- store reads */

/* The "node" of a local read of `key` (a new reference), NULL in *ret if the key does not exist
 * (or is not what we expect). Returns 0 or -ENOMEM. */
int fleet_read_node(struct api *a, const char *key, bool recursive, json_t **ret)
{
	struct store_result *res = NULL;
	json_t *j;
	int r = store_get(a->store, key, recursive, true, flt_realtime_ns(), &res);

	if (r < 0)
		return r;
	*ret = NULL;
	if (res->err_code) {
		store_result_free(res);
		return 0;
	}
	j = json_loadb(res->json.data, res->json.len, 0, NULL);
	store_result_free(res);
	if (!j)
		return -ENOMEM;
	*ret = json_incref(json_object_get(j, "node"));
	json_decref(j);
	return 0;
}

/* The last component of a node's key. */
static const char *node_name(const json_t *node)
{
	const char *k = fleet_get_str(node, "key"), *s;

	if (!k)
		return "";
	s = strrchr(k, '/');
	return s ? s + 1 : k;
}

/* A node's value parsed as a JSON object (new reference), or NULL. */
json_t *fleet_node_object(const json_t *node)
{
	const char *v = fleet_get_str(node, "value");
	json_t *j;

	if (!v)
		return NULL;
	j = json_loads(v, 0, NULL);
	if (j && !json_is_object(j)) {
		json_decref(j);
		return NULL;
	}
	return j;
}

/* The file children of a node ("nodes") as {name: parsed value}; values that do not parse are
 * left out (fleet skips registry entries it cannot read). */
static json_t *children_map(const json_t *node)
{
	json_t *out = json_object(), *kid;
	size_t i;

	json_array_foreach(json_object_get(node, "nodes"), i, kid)
	{
		json_t *v;

		if (!json_is_true(json_object_get(kid, "dir")) && (v = fleet_node_object(kid)))
			json_object_set_new(out, node_name(kid), v);
	}
	return out;
}

/* The children of directory `dir` as {name: parsed value}; with `nested`, each child is itself a
 * directory and becomes {name: {child name: parsed value}}. A missing directory gives {}. */
int fleet_read_dir_map(struct api *a, const char *dir, bool nested, json_t **ret)
{
	json_t *node = NULL, *out, *kid;
	size_t i;
	int r = fleet_read_node(a, dir, nested, &node);

	if (r < 0)
		return r;
	if (!nested) {
		out = children_map(node);
	} else {
		out = json_object();
		json_array_foreach(json_object_get(node, "nodes"), i,
		                   kid) if (json_is_true(json_object_get(kid, "dir")))
		    json_object_set_new(out, node_name(kid), children_map(kid));
	}
	json_decref(node);
	if (!out)
		return -ENOMEM;
	*ret = out;
	return 0;
}

/* ---------------------------------------------------------------- query and page tokens */

static int b64url(char c)
{
	static const char alpha[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	const char *p = c ? strchr(alpha, c) : NULL;

	return p ? (int)(p - alpha) : -1;
}

/* Go's base64.URLEncoding.DecodeString (padded), with its "illegal base64 data at input byte N"
 * position. Returns the decoded length or -(N + 1). */
static long b64_decode(const char *s, unsigned char *out, size_t cap)
{
	size_t len = strlen(s), si = 0, n = 0;

	while (si < len) {
		unsigned v = 0;
		int j;

		for (j = 0; j < 4; j++) {
			int d;

			if (si == len)
				return -(long)(si - (size_t)j) - 1;
			if (s[si] == '=') {
				/* padding: only after two or three characters, and then the end */
				if (j < 2)
					return -(long)si - 1;
				if (j == 2) {
					if (si + 1 >= len)
						return -(long)len - 1;
					if (s[si + 1] != '=')
						return -(long)si - 1 - 1;
					si++;
				}
				si++;
				if (si != len)
					return -(long)si - 1;
				break;
			}
			if ((d = b64url(s[si])) < 0)
				return -(long)si - 1;
			v = v << 6 | (unsigned)d;
			si++;
		}
		if (j < 4) {
			v <<= 6 * (4 - j);
			for (int k = 0; k < j - 1; k++)
				if (n < cap)
					out[n++] = (unsigned char)(v >> (16 - 8 * k));
			break;
		}
		for (int k = 0; k < 3; k++)
			if (n < cap)
				out[n++] = (unsigned char)(v >> (16 - 8 * k));
	}
	return (long)n;
}

static void b64_encode(const unsigned char *in, size_t len, struct buf *out)
{
	static const char alpha[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

	for (size_t i = 0; i < len; i += 3) {
		unsigned v = (unsigned)in[i] << 16;

		if (i + 1 < len)
			v |= (unsigned)in[i + 1] << 8;
		if (i + 2 < len)
			v |= in[i + 2];
		buf_putc(out, alpha[v >> 18 & 63]);
		buf_putc(out, alpha[v >> 12 & 63]);
		buf_putc(out, i + 1 < len ? alpha[v >> 6 & 63] : '=');
		buf_putc(out, i + 2 < len ? alpha[v & 63] : '=');
	}
}

/* The page a request asks for (1 without a token). false (answered 400) on a bad token, with
 * fleet's messages. */
bool fleet_page_from_query(struct web_req *req, unsigned *ret_page)
{
	unsigned count = 0, limit, page;
	unsigned char tok[8];
	char *val = NULL;
	long n;

	if (web_query_get(web_req_query(req), "nextPageToken", &count, &val) < 0) {
		fleet_send_error(req, 500, "out of memory");
		return false;
	}
	if (count == 0) {
		free(val);
		*ret_page = 1;
		return true;
	}
	if (count > 1) {
		free(val);
		fleet_send_error(req, 400, "too many values for page token");
		return false;
	}
	n = b64_decode(val, tok, sizeof(tok));
	free(val);
	if (n < 0) {
		fleet_send_errorf(req, 400, "illegal base64 data at input byte %ld", -n - 1);
		return false;
	}
	if (n < 4) { /* encoding/binary.Read of two uint16s */
		fleet_send_error(req, 400, n ? "unexpected EOF" : "EOF");
		return false;
	}
	limit = tok[0] | (unsigned)tok[1] << 8;
	page = tok[2] | (unsigned)tok[3] << 8;
	if (limit != PAGE_LIMIT) {
		fleet_send_errorf(req, 400, "token limit must be %d", PAGE_LIMIT);
		return false;
	}
	if (!page) {
		fleet_send_error(req, 400, "token page must be greater than zero");
		return false;
	}
	*ret_page = page;
	return true;
}

/* Cut page `page` out of `all` (an array) into `out` under `field`, with nextPageToken when
 * fleet gives one (also when the page ends exactly at the last item, as fleet does). */
void fleet_paginate(json_t *out, const char *field, const json_t *all, unsigned page)
{
	size_t total = json_array_size(all), start = (size_t)(page - 1) * PAGE_LIMIT;
	size_t stop = (size_t)page * PAGE_LIMIT;
	json_t *items;

	if (start >= total)
		return;
	if (stop > total) {
		stop = total;
	} else if (page < 0xffff) {
		unsigned char tok[4] = {PAGE_LIMIT & 0xff, PAGE_LIMIT >> 8, (page + 1) & 0xff,
		                        (page + 1) >> 8};
		struct buf b = BUF_INIT;

		b64_encode(tok, sizeof(tok), &b);
		if (b.data)
			json_object_set_new(out, "nextPageToken", json_string(b.data));
		buf_release(&b);
	}
	items = json_array();
	for (size_t i = start; i < stop; i++)
		json_array_append(items, json_array_get(all, i));
	json_object_set_new(out, field, items);
}

void fleet_send_page(struct web_req *req, const char *field, const json_t *all, unsigned page)
{
	json_t *out = json_object();

	fleet_paginate(out, field, all, page);
	fleet_send_json(req, 200, out);
	json_decref(out);
}

json_t *fleet_list_begin(struct api *a, struct web_req *req, const struct fleet_dir *dirs, size_t n,
                         unsigned *ret_page)
{
	json_t *all;
	int r = 0;

	if (!fleet_page_from_query(req, ret_page))
		return NULL;
	all = json_array();
	if (!all)
		r = -ENOMEM;
	for (size_t i = 0; r >= 0 && i < n; i++)
		r = fleet_read_dir_map(a, dirs[i].dir, dirs[i].nested, dirs[i].ret);
	if (r < 0) {
		fleet_send_error(req, 500, flt_strerror(r));
		for (size_t i = 0; i < n; i++) {
			json_decref(*dirs[i].ret);
			*dirs[i].ret = NULL;
		}
		json_decref(all);
		return NULL;
	}
	return all;
}

/* ---------------------------------------------------------------- writes */

void fleet_op_free(struct fleet_op *f)
{
	if (!f)
		return;
	json_decref(f->ops);
	free(f);
}

/* Propose a PUT (value != NULL) or DELETE of `key`. */
int fleet_propose(struct api *a, const char *key, const struct buf *value, int prev_exist,
                  uint64_t prev_index, node_done_fn cb, void *ctx)
{
	struct store_cmd c = {0};
	struct buf enc = BUF_INIT;
	int r;

	c.time_ns = flt_realtime_ns();
	c.key = key;
	c.op = value ? STORE_OP_PUT : STORE_OP_DELETE;
	if (value) {
		c.value = value->data ? value->data : "";
		c.value_len = value->len;
		if (c.value_len > STORE_MAX_VALUE)
			return FLT_ETOOBIG;
	}
	c.prev_exist = prev_exist;
	c.prev_index = prev_index;
	r = store_cmd_encode(&c, &enc);
	if (r >= 0)
		r = node_propose(a->node, enc.data, enc.len, cb, ctx);
	buf_release(&enc);
	return r;
}

const char *fleet_json_type_go(const json_t *j)
{
	switch (json_typeof(j)) {
	case JSON_OBJECT:
		return "object";
	case JSON_ARRAY:
		return "array";
	case JSON_STRING:
		return "string";
	case JSON_INTEGER:
	case JSON_REAL:
		return "number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "bool";
	default:
		return "null";
	}
}

/* ---------------------------------------------------------------- discovery */

/* fleet's discovery document (schema/v1.json, a Google API discovery description), with the
 * endpoint left as "$ENDPOINT" as fleet serves it. */
static const char discovery[] =
    "{\"kind\":\"discovery#restDescription\",\"discoveryVersion\":\"v1\",\"id\":\"fleet:v1\","
    "\"name\":\"schema\",\"version\":\"v1\",\"title\":\"fleet API\",\"description\":\"\","
    "\"documentationLink\":\"http://github.com/coreos/fleet\",\"protocol\":\"rest\","
    "\"icons\":{\"x16\":\"\",\"x32\":\"\"},\"labels\":[],"
    "\"baseUrl\":\"$ENDPOINT/fleet/v1/\",\"basePath\":\"/fleet/v1/\",\"rootUrl\":\"$ENDPOINT/\","
    "\"servicePath\":\"fleet/v1/\",\"batchPath\":\"batch\",\"parameters\":{},\"auth\":{},"
    "\"schemas\":{"
    "\"Machine\":{\"id\":\"Machine\",\"type\":\"object\",\"properties\":{"
    "\"id\":{\"type\":\"string\"},\"primaryIP\":{\"type\":\"string\"},"
    "\"metadata\":{\"type\":\"object\",\"properties\":{},"
    "\"additionalProperties\":{\"type\":\"string\"}}}},"
    "\"MachinePage\":{\"id\":\"MachinePage\",\"type\":\"object\",\"properties\":{"
    "\"machines\":{\"type\":\"array\",\"items\":{\"$ref\":\"Machine\"}},"
    "\"nextPageToken\":{\"type\":\"string\"}}},"
    "\"UnitOption\":{\"id\":\"UnitOption\",\"type\":\"object\",\"properties\":{"
    "\"section\":{\"type\":\"string\"},\"name\":{\"type\":\"string\"},"
    "\"value\":{\"type\":\"string\"}}},"
    "\"Unit\":{\"id\":\"Unit\",\"type\":\"object\",\"properties\":{"
    "\"name\":{\"type\":\"string\"},"
    "\"options\":{\"type\":\"array\",\"items\":{\"$ref\":\"UnitOption\"}},"
    "\"desiredState\":{\"type\":\"string\",\"enum\":[\"inactive\",\"loaded\",\"launched\"]},"
    "\"currentState\":{\"type\":\"string\",\"enum\":[\"inactive\",\"loaded\",\"launched\"]},"
    "\"machineID\":{\"type\":\"string\",\"required\":true}}},"
    "\"UnitPage\":{\"id\":\"UnitPage\",\"type\":\"object\",\"properties\":{"
    "\"units\":{\"type\":\"array\",\"items\":{\"$ref\":\"Unit\"}},"
    "\"nextPageToken\":{\"type\":\"string\"}}},"
    "\"UnitState\":{\"id\":\"UnitState\",\"type\":\"object\",\"properties\":{"
    "\"name\":{\"type\":\"string\"},\"hash\":{\"type\":\"string\"},"
    "\"machineID\":{\"type\":\"string\"},\"systemdLoadState\":{\"type\":\"string\"},"
    "\"systemdActiveState\":{\"type\":\"string\"},\"systemdSubState\":{\"type\":\"string\"}}},"
    "\"UnitStatePage\":{\"id\":\"UnitStatePage\",\"type\":\"object\",\"properties\":{"
    "\"states\":{\"type\":\"array\",\"items\":{\"$ref\":\"UnitState\"}},"
    "\"nextPageToken\":{\"type\":\"string\"}}}},"
    "\"resources\":{"
    "\"Machines\":{\"methods\":{\"List\":{\"id\":\"fleet.Machine.List\","
    "\"description\":\"Retrieve a page of Machine objects.\",\"httpMethod\":\"GET\","
    "\"path\":\"machines\",\"parameters\":{\"nextPageToken\":{\"type\":\"string\","
    "\"location\":\"query\"}},\"response\":{\"$ref\":\"MachinePage\"}}}},"
    "\"Units\":{\"methods\":{"
    "\"List\":{\"id\":\"fleet.Unit.List\",\"description\":\"Retrieve a page of Unit objects.\","
    "\"httpMethod\":\"GET\",\"path\":\"units\",\"parameters\":{\"nextPageToken\":{"
    "\"type\":\"string\",\"location\":\"query\"}},\"response\":{\"$ref\":\"UnitPage\"}},"
    "\"Get\":{\"id\":\"fleet.Unit.Get\",\"description\":\"Retrieve a single Unit object.\","
    "\"httpMethod\":\"GET\",\"path\":\"units/{unitName}\",\"parameters\":{\"unitName\":{"
    "\"type\":\"string\",\"location\":\"path\",\"required\":true}},"
    "\"parameterOrder\":[\"unitName\"],\"response\":{\"$ref\":\"Unit\"}},"
    "\"Delete\":{\"id\":\"fleet.Unit.Delete\",\"description\":\"Delete the referenced Unit "
    "object.\",\"httpMethod\":\"DELETE\",\"path\":\"units/{unitName}\",\"parameters\":{"
    "\"unitName\":{\"type\":\"string\",\"location\":\"path\",\"required\":true}},"
    "\"parameterOrder\":[\"unitName\"]},"
    "\"Set\":{\"id\":\"fleet.Unit.Set\",\"description\":\"Create or update a Unit.\","
    "\"httpMethod\":\"PUT\",\"path\":\"units/{unitName}\",\"parameters\":{\"unitName\":{"
    "\"type\":\"string\",\"location\":\"path\",\"required\":true}},"
    "\"parameterOrder\":[\"unitName\"],\"request\":{\"$ref\":\"Unit\"}}}},"
    "\"UnitState\":{\"methods\":{\"List\":{\"id\":\"fleet.UnitState.List\","
    "\"description\":\"Retrieve a page of UnitState objects.\",\"httpMethod\":\"GET\","
    "\"path\":\"state\",\"parameters\":{\"nextPageToken\":{\"type\":\"string\","
    "\"location\":\"query\"},\"unitName\":{\"type\":\"string\",\"location\":\"query\"},"
    "\"machineID\":{\"type\":\"string\",\"location\":\"query\"}},"
    "\"response\":{\"$ref\":\"UnitStatePage\"}}}}}}\n";

/* ---------------------------------------------------------------- routing */

/* `p` is "/<item>" with an item free of '/': the item, else NULL. */
static const char *item_of(const char *p)
{
	if (p[0] != '/' || !p[1] || strchr(p + 1, '/'))
		return NULL;
	return p + 1;
}

void api_fleet_handle(struct api *a, struct web_req *req, const char *rest)
{
	const char *m = web_req_method(req), *item;
	size_t len;
	char *path = web_unescape(rest, strlen(rest), false, &len);

	if (!path || memchr(path, 0, len)) {
		fleet_send_error(req, 400, "invalid URL escape in path");
		free(path);
		return;
	}
	if (!*path) {
		/* fleet: the API root itself */
		fleet_send_error(req, 405, "");
	} else if (!strcmp(path, "/discovery")) {
		if (strcmp(m, "GET"))
			fleet_send_error(req, 400, "only HTTP GET supported against this resource");
		else
			api_respond_plain(req, 200, NULL, 0, "application/json", discovery,
			                  sizeof(discovery) - 1);
	} else if (!strcmp(path, "/machines")) {
		if (!strcmp(m, "GET"))
			fleet_machines_list(a, req);
		else if (!strcmp(m, "PATCH"))
			fleet_machines_patch(a, req);
		else
			fleet_send_error(req, 405,
			                 "only GET and PATCH supported against this resource");
	} else if (!strcmp(path, "/units") || !strcmp(path, "/units/")) {
		if (!strcmp(m, "GET"))
			fleet_units_list(a, req);
		else
			fleet_send_error(req, 405, "only GET supported against this resource");
	} else if (!strncmp(path, "/units/", 7) && (item = item_of(path + 6))) {
		bool bad = unit_name_check(item, NULL) < 0;

		/* a name that cannot exist is not looked up (nor turned into a store path) */
		if (bad && (!strcmp(m, "GET") || !strcmp(m, "DELETE")))
			fleet_send_error(req, 404, "unit does not exist");
		else if (!strcmp(m, "GET"))
			fleet_units_get(a, req, item);
		else if (!strcmp(m, "PUT"))
			fleet_units_put(a, req, item);
		else if (!strcmp(m, "DELETE"))
			fleet_units_delete(a, req, item);
		else
			fleet_send_error(
			    req, 405, "only GET, PUT and DELETE supported against this resource");
	} else if (!strcmp(path, "/state")) {
		fleet_state_handle(a, req, NULL);
	} else if (!strncmp(path, "/state/", 7) && (item = item_of(path + 6))) {
		fleet_state_handle(a, req, item);
	} else {
		fleet_send_error(req, 404, "");
	}
	free(path);
}
