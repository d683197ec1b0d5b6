/* The fleet v1 HTTP API (/fleet/v1 and /v1-alpha): units, unit states, machines and the discovery
 * document, with fleet v1.0's JSON shapes, status codes and messages (reference/fleet INVENTORY
 * §6), over the scheduling keys of engine/model.h. Reads come from the local store; writes are
 * store commands proposed to the log and answered when applied, as in keys.c. */
#include "api/api.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "engine/model.h"
#include "http/web.h"
#include "node.h"
#include "store/store.h"
#include "unit/unit.h"
#include "util/err.h"
#include "util/log.h"
#include "util/util.h"

#define PAGE_LIMIT    100 /* fleet's tokenLimit: items per page */
#define PATCH_RETRIES 5   /* re-reads of a machine's metadata after a lost compare-and-swap */

/* ---------------------------------------------------------------- JSON out */

static int cmp_cstr(const void *x, const void *y)
{
	return strcmp(*(const char *const *)x, *(const char *const *)y);
}

/* `j` as Go's encoding/json writes it: object keys sorted (fleet's generated structs have their
 * fields in alphabetical order), strings HTML-escaped. */
static int put_json(struct buf *b, const json_t *j)
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
		json_object_foreach((json_t *)j, k, v)
			keys[i++] = k;
		qsort(keys, n, sizeof(*keys), cmp_cstr);
		r = buf_putc(b, '{');
		for (i = 0; r >= 0 && i < n; i++) {
			if (i)
				buf_putc(b, ',');
			store_json_string(b, keys[i], strlen(keys[i]));
			buf_putc(b, ':');
			r = put_json(b, json_object_get(j, keys[i]));
		}
		free(keys);
		return r < 0 ? r : buf_putc(b, '}');
	}
	case JSON_ARRAY:
		r = buf_putc(b, '[');
		for (size_t i = 0; r >= 0 && i < json_array_size(j); i++) {
			if (i)
				buf_putc(b, ',');
			r = put_json(b, json_array_get(j, i));
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
static void set_str(json_t *o, const char *key, const char *v)
{
	if (v && *v)
		json_object_set_new(o, key, json_string(v));
}

static const char *get_str(const json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

/* ---------------------------------------------------------------- answers */

static void send_json(struct web_req *req, int status, const json_t *j)
{
	struct buf b = BUF_INIT;

	if (put_json(&b, j) < 0) {
		buf_release(&b);
		api_respond_plain(req, 500, NULL, 0, "application/json",
				  "{\"error\":{\"code\":500,\"message\":\"out of memory\"}}", 47);
		return;
	}
	api_respond_plain(req, status, NULL, 0, "application/json", b.data, b.len);
	buf_release(&b);
}

/* fleet's error entity {"error":{"code":..,"message":..}}. */
static void send_error(struct web_req *req, int status, const char *msg)
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

static void send_errorf(struct web_req *req, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void send_errorf(struct web_req *req, int status, const char *fmt, ...)
{
	struct buf msg = BUF_INIT;
	va_list ap;

	va_start(ap, fmt);
	buf_vprintf(&msg, fmt, ap);
	va_end(ap);
	send_error(req, status, msg.data ? msg.data : "");
	buf_release(&msg);
}

/* Empty 201/204 answers: fleet sends no Content-Type with them. */
static void send_empty(struct web_req *req, int status)
{
	api_respond_plain(req, status, NULL, 0, NULL, "", 0);
}

/* Go's %q of a string that is plain text in practice (names, states). */
static int put_quoted(struct buf *b, const char *s)
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
static int read_node(struct api *a, const char *key, bool recursive, json_t **ret)
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
	const char *k = get_str(node, "key"), *s;

	if (!k)
		return "";
	s = strrchr(k, '/');
	return s ? s + 1 : k;
}

/* A node's value parsed as a JSON object (new reference), or NULL. */
static json_t *node_object(const json_t *node)
{
	const char *v = get_str(node, "value");
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

	json_array_foreach(json_object_get(node, "nodes"), i, kid) {
		json_t *v;

		if (!json_is_true(json_object_get(kid, "dir")) && (v = node_object(kid)))
			json_object_set_new(out, node_name(kid), v);
	}
	return out;
}

/* The children of directory `dir` as {name: parsed value}; with `nested`, each child is itself a
 * directory and becomes {name: {child name: parsed value}}. A missing directory gives {}. */
static int read_dir_map(struct api *a, const char *dir, bool nested, json_t **ret)
{
	json_t *node = NULL, *out, *kid;
	size_t i;
	int r = read_node(a, dir, nested, &node);

	if (r < 0)
		return r;
	if (!nested) {
		out = children_map(node);
	} else {
		out = json_object();
		json_array_foreach(json_object_get(node, "nodes"), i, kid)
			if (json_is_true(json_object_get(kid, "dir")))
				json_object_set_new(out, node_name(kid), children_map(kid));
	}
	json_decref(node);
	if (!out)
		return -ENOMEM;
	*ret = out;
	return 0;
}

/* ---------------------------------------------------------------- query and page tokens */

/* The values of query parameter `name`: how many there are, and the first (owned, "" if none). */
static int query_get(const char *q, const char *name, unsigned *ret_count, char **ret_first)
{
	size_t nlen = strlen(name);
	unsigned count = 0;
	char *first = NULL;

	while (*q) {
		size_t len = strcspn(q, "&"), klen = strcspn(q, "=");
		char *k;

		if (klen > len)
			klen = len;
		k = web_unescape(q, klen, true, NULL);
		if (k && strlen(k) == nlen && !memcmp(k, name, nlen)) {
			if (!count++) {
				const char *v = q + klen + (klen < len);
				size_t vlen = len - klen - (klen < len);

				first = web_unescape(v, vlen, true, NULL);
				if (!first)
					count--; /* Go drops pairs it cannot unescape */
			}
		}
		free(k);
		q += len;
		if (*q == '&')
			q++;
	}
	if (!first && !(first = strdup(""))) {
		return -ENOMEM;
	}
	*ret_count = count;
	*ret_first = first;
	return 0;
}

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
static bool page_from_query(struct web_req *req, unsigned *ret_page)
{
	unsigned count = 0, limit, page;
	unsigned char tok[8];
	char *val = NULL;
	long n;

	if (query_get(web_req_query(req), "nextPageToken", &count, &val) < 0) {
		send_error(req, 500, "out of memory");
		return false;
	}
	if (count == 0) {
		free(val);
		*ret_page = 1;
		return true;
	}
	if (count > 1) {
		free(val);
		send_error(req, 400, "too many values for page token");
		return false;
	}
	n = b64_decode(val, tok, sizeof(tok));
	free(val);
	if (n < 0) {
		send_errorf(req, 400, "illegal base64 data at input byte %ld", -n - 1);
		return false;
	}
	if (n < 4) { /* encoding/binary.Read of two uint16s */
		send_error(req, 400, n ? "unexpected EOF" : "EOF");
		return false;
	}
	limit = tok[0] | (unsigned)tok[1] << 8;
	page = tok[2] | (unsigned)tok[3] << 8;
	if (limit != PAGE_LIMIT) {
		send_errorf(req, 400, "token limit must be %d", PAGE_LIMIT);
		return false;
	}
	if (!page) {
		send_error(req, 400, "token page must be greater than zero");
		return false;
	}
	*ret_page = page;
	return true;
}

/* Cut page `page` out of `all` (an array) into `out` under `field`, with nextPageToken when
 * fleet gives one (also when the page ends exactly at the last item, as fleet does). */
static void paginate(json_t *out, const char *field, const json_t *all, unsigned page)
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

	json_array_foreach(opts, i, o) {
		const char *sec = get_str(o, "section"), *name = get_str(o, "name");

		if (sec && name && !strcmp(sec, "X-Fleet") && !strcmp(name, "Global"))
			last = get_str(o, "value");
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
	const char *active = get_str(st, "activeState");
	json_t *exit_code = json_object_get(st, "exitCode");

	if (!st)
		return "inactive";
	/* what the agent was told and acted on: fleet's own notion */
	if (get_str(st, "target"))
		return get_str(st, "target");
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
	const char *desired = get_str(stored, "desiredState"), *mid = get_str(sched, "machineID");
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
	json_array_foreach(opts, i, o) {
		json_t *x = json_object();

		set_str(x, "section", get_str(o, "section"));
		set_str(x, "name", get_str(o, "name"));
		set_str(x, "value", get_str(o, "value"));
		json_array_append_new(out_opts, x);
	}
	set_str(u, "name", name);
	set_str(u, "desiredState", desired);
	if (json_array_size(out_opts))
		json_object_set(u, "options", out_opts);
	json_decref(out_opts);
	if (options_global(opts)) /* no placement: every matching agent runs it */
		return u;
	if (mid && *mid) {
		set_str(u, "machineID", mid);
		set_str(u, "currentState", current_state(desired, json_object_get(states, mid)));
	} else {
		set_str(u, "currentState", "inactive");
	}
	/* flotilla's addition: why the engine could not place it */
	set_str(u, "reason", get_str(sched, "reason"));
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
	r = read_node(a, key.data, false, &node);
	buf_release(&key);
	if (r < 0)
		return r;
	*ret = node ? node_object(node) : NULL;
	if (ret_index)
		*ret_index = (uint64_t)json_integer_value(json_object_get(node, "modifiedIndex"));
	json_decref(node);
	return 0;
}

static void units_get(struct api *a, struct web_req *req, const char *name)
{
	struct buf key = BUF_INIT;
	json_t *stored = NULL, *sched = NULL, *states = NULL, *node = NULL, *u;
	int r = read_unit(a, name, &stored, NULL);

	if (r >= 0 && stored)
		r = buf_printf(&key, MODEL_SCHEDULE "/%s", name);
	if (r >= 0 && stored && (r = read_node(a, key.data, false, &node)) >= 0) {
		sched = node ? node_object(node) : NULL;
		buf_clear(&key);
		r = buf_printf(&key, MODEL_STATES "/%s", name);
		if (r >= 0)
			r = read_dir_map(a, key.data, false, &states);
	}
	if (r < 0) {
		send_error(req, 500, flt_strerror(r));
	} else if (!stored) {
		send_error(req, 404, "unit does not exist");
	} else if (!(u = unit_entity(name, stored, sched, states))) {
		/* what fleet does with a unit it cannot read */
		send_error(req, 500, "unit is stored in a form that cannot be read");
	} else {
		send_json(req, 200, u);
		json_decref(u);
	}
	buf_release(&key);
	json_decref(node);
	json_decref(stored);
	json_decref(sched);
	json_decref(states);
}

static void units_list(struct api *a, struct web_req *req)
{
	json_t *units = NULL, *sched = NULL, *states = NULL, *all = json_array(), *out;
	unsigned page;
	const char *name;
	json_t *stored;
	int r;

	if (!page_from_query(req, &page)) {
		json_decref(all);
		return;
	}
	r = all ? read_dir_map(a, MODEL_UNITS, false, &units) : -ENOMEM;
	if (r >= 0)
		r = read_dir_map(a, MODEL_SCHEDULE, false, &sched);
	if (r >= 0)
		r = read_dir_map(a, MODEL_STATES, true, &states);
	if (r < 0) {
		send_error(req, 500, flt_strerror(r));
		goto out;
	}
	/* the store lists children sorted by name, and jansson keeps insertion order */
	json_object_foreach(units, name, stored) {
		json_t *u = unit_entity(name, stored, json_object_get(sched, name),
					json_object_get(states, name));

		if (u) /* fleet skips units it cannot read */
			json_array_append_new(all, u);
	}
	out = json_object();
	paginate(out, "units", all, page);
	send_json(req, 200, out);
	json_decref(out);
out:
	json_decref(all);
	json_decref(units);
	json_decref(sched);
	json_decref(states);
}

/* ---------------------------------------------------------------- unit states */

static json_t *state_entity(const char *name, const char *mid, const json_t *st)
{
	json_t *s = json_object();
	const char *m = get_str(st, "machineID");

	set_str(s, "name", name);
	set_str(s, "machineID", m && *m ? m : mid);
	set_str(s, "hash", get_str(st, "hash"));
	set_str(s, "systemdLoadState", get_str(st, "loadState"));
	set_str(s, "systemdActiveState", get_str(st, "activeState"));
	set_str(s, "systemdSubState", get_str(st, "subState"));
	return s;
}

static void state_handle(struct api *a, struct web_req *req, const char *item)
{
	json_t *states = NULL, *all = json_array(), *per, *st, *out;
	char *f_unit = NULL, *f_mid = NULL;
	unsigned nunit = 0, nmid = 0, page = 1;
	const char *name, *mid;
	int r;

	if (strcmp(web_req_method(req), "GET")) {
		send_error(req, 405, "only GET supported against this resource");
		json_decref(all);
		return;
	}
	if (!item && !page_from_query(req, &page)) {
		json_decref(all);
		return;
	}
	r = all ? read_dir_map(a, MODEL_STATES, true, &states) : -ENOMEM;
	if (r >= 0 && !item) {
		r = query_get(web_req_query(req), "unitName", &nunit, &f_unit);
		if (r >= 0)
			r = query_get(web_req_query(req), "machineID", &nmid, &f_mid);
	}
	if (r < 0) {
		send_error(req, 500, flt_strerror(r));
		goto out;
	}
	/* sorted by (name, machine id): the store lists children by name */
	json_object_foreach(states, name, per) {
		if (item && strcmp(item, name))
			continue;
		if (nunit && strcmp(f_unit, name))
			continue;
		json_object_foreach(per, mid, st) {
			json_t *s = state_entity(name, mid, st);

			if (nmid && strcmp(f_mid, get_str(s, "machineID") ? get_str(s, "machineID") : "")) {
				json_decref(s);
				continue;
			}
			json_array_append_new(all, s);
		}
	}
	if (item) {
		if (!json_array_size(all))
			send_error(req, 404, "unit state does not exist");
		else
			send_json(req, 200, json_array_get(all, 0));
		goto out;
	}
	out = json_object();
	paginate(out, "states", all, page);
	send_json(req, 200, out);
	json_decref(out);
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

	json_object_foreach((json_t *)reported, k, v)
		if (json_is_string(v))
			json_object_set(m, k, v);
	json_object_foreach((json_t *)overrides, k, v) {
		if (!json_is_string(v))
			continue;
		if (!json_string_length(v))
			json_object_del(m, k);
		else
			json_object_set(m, k, v);
	}
	return m;
}

static void machines_list(struct api *a, struct web_req *req)
{
	json_t *machines = NULL, *meta = NULL, *all = json_array(), *mach, *out;
	const char *id;
	unsigned page;
	int r;

	if (!page_from_query(req, &page)) {
		json_decref(all);
		return;
	}
	r = all ? read_dir_map(a, MODEL_MACHINES, false, &machines) : -ENOMEM;
	if (r >= 0)
		r = read_dir_map(a, MODEL_METADATA, false, &meta);
	if (r < 0) {
		send_error(req, 500, flt_strerror(r));
		goto out;
	}
	json_object_foreach(machines, id, mach) {
		json_t *m = json_object(), *md;
		const char *mid = get_str(mach, "id");

		set_str(m, "id", mid && *mid ? mid : id);
		set_str(m, "primaryIP", get_str(mach, "publicIP"));
		md = merged_metadata(json_object_get(mach, "metadata"), json_object_get(meta, id));
		if (json_object_size(md))
			json_object_set(m, "metadata", md);
		json_decref(md);
		json_array_append_new(all, m);
	}
	out = json_object();
	paginate(out, "machines", all, page);
	send_json(req, 200, out);
	json_decref(out);
out:
	json_decref(all);
	json_decref(machines);
	json_decref(meta);
}

/* ---------------------------------------------------------------- writes */

enum fop_kind { FOP_CREATE, FOP_REPLACE, FOP_SET_STATE, FOP_DELETE, FOP_PATCH };

/* A write in flight: answered from the proposal's callback. The web request stays valid until
 * answered even if its client left (web.h), so the callback always answers it. */
struct fop {
	struct api *a;
	struct web_req *req;
	enum fop_kind kind;
	json_t *ops;       /* PATCH: the validated operations */
	unsigned pending;  /* PATCH: proposals not yet applied */
	unsigned retries;  /* PATCH: rounds redone after a lost compare-and-swap */
	bool lost;         /* PATCH: a compare-and-swap of this round failed */
	int err;           /* PATCH: first failure of this round */
};

static void fop_free(struct fop *f)
{
	if (!f)
		return;
	json_decref(f->ops);
	free(f);
}

/* Propose a PUT (value != NULL) or DELETE of `key`. */
static int propose(struct api *a, const char *key, const struct buf *value, int prev_exist,
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

static void unit_write_done(void *ctx, int err, const struct store_result *res, uint64_t index)
{
	struct fop *f = ctx;

	(void)index;
	if (err < 0 || !res) {
		log_warn("fleet api: write failed: %s", flt_strerror(err < 0 ? err : -EIO));
		send_error(f->req, 500, flt_strerror(err < 0 ? err : -EIO));
	} else if (!res->err_code) {
		send_empty(f->req, f->kind == FOP_SET_STATE || f->kind == FOP_DELETE ? 204 : 201);
	} else if (res->err_code == STORE_ENODEEXIST) {
		/* lost a race with another create of the same name */
		send_error(f->req, 409, "unit already exists");
	} else if (res->err_code == STORE_EKEYNOTFOUND) {
		send_error(f->req, 404, "unit does not exist");
	} else if (res->err_code == STORE_ETESTFAILED) {
		send_error(f->req, 409, "unit was changed by another request, try again");
	} else {
		send_errorf(f->req, 500, "store error %d", res->err_code);
	}
	fop_free(f);
}

static void start_unit_write(struct api *a, struct web_req *req, enum fop_kind kind,
			     const char *name, const json_t *value, uint64_t prev_index)
{
	struct buf key = BUF_INIT, val = BUF_INIT;
	struct fop *f = calloc(1, sizeof(*f));
	int r = f ? buf_printf(&key, MODEL_UNITS "/%s", name) : -ENOMEM;

	if (r >= 0 && value)
		r = put_json(&val, value);
	if (r >= 0) {
		f->a = a;
		f->req = req;
		f->kind = kind;
		r = propose(a, key.data, value ? &val : NULL, kind == FOP_CREATE ? 0 : -1,
			    prev_index, unit_write_done, f);
	}
	if (r < 0) {
		free(f);
		send_error(req, r == FLT_ETOOBIG ? 400 : 500,
			   r == FLT_ETOOBIG ? "unit too large" : flt_strerror(r));
	}
	buf_release(&key);
	buf_release(&val);
}

static void units_delete(struct api *a, struct web_req *req, const char *name)
{
	json_t *stored = NULL;
	uint64_t index = 0;
	int r = read_unit(a, name, &stored, &index);

	if (r < 0) {
		send_error(req, 500, flt_strerror(r));
		return;
	}
	if (!stored) {
		send_error(req, 404, "unit does not exist");
		return;
	}
	json_decref(stored);
	/* the engine sees the unit go and removes its schedule; the agents stop it */
	start_unit_write(a, req, FOP_DELETE, name, NULL, 0);
}

/* Content-Type must be application/json, parameters allowed (fleet's validateContentType). */
static bool check_json_ctype(struct web_req *req)
{
	const char *ct = web_req_header(req, "Content-Type");
	size_t n;

	if (!ct) {
		send_error(req, 415, "expected 1 Content-Type, got 0");
		return false;
	}
	while (*ct == ' ' || *ct == '\t')
		ct++;
	n = strcspn(ct, ";");
	while (n && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
		n--;
	if (n != 16 || strncmp(ct, "application/json", 16)) {
		send_error(req, 415, "only acceptable Content-Type is application/json");
		return false;
	}
	return true;
}

static const char *json_type_go(const json_t *j)
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
		buf_printf(err, "unable to decode body: json: cannot unmarshal %s into Go value of "
				"type schema.Unit", json_type_go(j));
		json_decref(j);
		return NULL;
	}
	for (i = 0; i < ARRAY_SIZE(strs); i++) {
		json_t *v = json_object_get(j, strs[i]);

		if (v && !json_is_string(v) && !json_is_null(v)) {
			buf_printf(err, "unable to decode body: json: cannot unmarshal %s into Go "
					"struct field Unit.%s of type string", json_type_go(v), strs[i]);
			json_decref(j);
			return NULL;
		}
	}
	opts = json_object_get(j, "options");
	if (opts && !json_is_array(opts) && !json_is_null(opts)) {
		buf_printf(err, "unable to decode body: json: cannot unmarshal %s into Go struct "
				"field Unit.options of type []*schema.UnitOption", json_type_go(opts));
		json_decref(j);
		return NULL;
	}
	json_array_foreach(opts, i, o) {
		static const char *const f[] = {"section", "name", "value"};

		if (!json_is_object(o)) {
			buf_printf(err, "unable to decode body: json: cannot unmarshal %s into Go "
					"value of type schema.UnitOption", json_type_go(o));
			json_decref(j);
			return NULL;
		}
		for (size_t k = 0; k < ARRAY_SIZE(f); k++) {
			json_t *v = json_object_get(o, f[k]);

			if (v && !json_is_string(v) && !json_is_null(v)) {
				buf_printf(err, "unable to decode body: json: cannot unmarshal %s "
						"into Go struct field UnitOption.options.%s of type "
						"string", json_type_go(v), f[k]);
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
	json_array_foreach(opts, i, o) {
		json_t *x = json_object();

		for (size_t k = 0; k < ARRAY_SIZE(f); k++) {
			const char *v = get_str(o, f[k]);

			json_object_set_new(x, f[k], json_string(v ? v : ""));
		}
		json_array_append_new(out, x);
	}
	return out;
}

/* PUT /units/<name>: fleet's decision tree (INVENTORY §6.4), except that an invalid desiredState
 * is refused with 400 (fleet stored it and broke the unit), and a template may not be created
 * loaded or launched any more than it may be set so. */
static void units_put(struct api *a, struct web_req *req, const char *item)
{
	struct buf err = BUF_INIT, tpl = BUF_INIT;
	json_t *body = NULL, *existing = NULL, *tpl_unit = NULL, *opts, *v = NULL, *norm = NULL;
	const char *name, *desired;
	uint64_t index = 0;
	int r, e;

	if (!check_json_ctype(req))
		return;
	if (!(body = decode_unit_body(req, &err))) {
		send_error(req, 400, err.data ? err.data : "unable to decode body");
		goto out;
	}
	name = get_str(body, "name");
	if (!name || !*name)
		name = item;
	if (strcmp(item, name)) {
		buf_puts(&err, "name in URL ");
		put_quoted(&err, item);
		buf_puts(&err, " differs from unit name in request body ");
		put_quoted(&err, name);
		send_error(req, 400, err.data);
		goto out;
	}
	{
		const char *why = NULL;

		if (unit_name_check(name, &why) < 0) {
			send_error(req, 400, why ? why : "invalid unit name");
			goto out;
		}
	}
	desired = get_str(body, "desiredState");
	if (desired && !*desired)
		desired = NULL;
	if (desired && !state_valid(desired)) {
		buf_puts(&err, "invalid desiredState ");
		put_quoted(&err, desired);
		buf_puts(&err, ": must be inactive, loaded or launched");
		send_error(req, 400, err.data);
		goto out;
	}
	if ((r = read_unit(a, name, &existing, &index)) < 0) {
		send_error(req, 500, flt_strerror(r));
		goto out;
	}
	opts = norm = normalize_options(json_object_get(body, "options"));
	if (!json_array_size(opts))
		opts = NULL;
	if (existing) {
		char hash[41];
		const char *old = get_str(existing, "hash");

		if (opts)
			options_hash(opts, hash);
		if (!opts || (old && !strcmp(hash, old))) {
			/* a change of the desired state alone */
			if (!desired) {
				send_error(req, 409,
					   "must provide DesiredState to update existing unit");
				goto out;
			}
			if (unit_name_is_template(name) && strcmp(desired, "inactive")) {
				buf_puts(&err, "cannot activate template ");
				put_quoted(&err, name);
				send_error(req, 400, err.data);
				goto out;
			}
			json_object_set_new(existing, "desiredState", json_string(desired));
			/* compare-and-swap: the options cannot change under us */
			start_unit_write(a, req, FOP_SET_STATE, name, existing, index);
			goto out;
		}
	} else if (!opts && unit_name_is_instance(name)) {
		/* an instance takes its template's contents (fleetctl's lookup, done here) */
		if (unit_name_template(name, &tpl) >= 0 &&
		    (r = read_unit(a, tpl.data, &tpl_unit, NULL)) < 0) {
			send_error(req, 500, flt_strerror(r));
			goto out;
		}
		opts = json_object_get(tpl_unit, "options");
		if (!json_array_size(opts))
			opts = NULL;
	}
	if (!opts) {
		send_error(req, 409, "unit does not exist and options field empty");
		goto out;
	}
	if (!desired)
		desired = "inactive";
	if (unit_name_is_template(name) && strcmp(desired, "inactive")) {
		buf_puts(&err, "cannot activate template ");
		put_quoted(&err, name);
		send_error(req, 400, err.data);
		goto out;
	}
	if (!(v = build_stored_unit(name, opts, desired, &err, &e))) {
		if (e < 0)
			send_error(req, 500, flt_strerror(e));
		else
			send_error(req, 400, err.data);
		goto out;
	}
	/* a create must not overwrite a racing create (prevExist=false); a replace must replace
	 * what we read (compare-and-swap on its index) */
	start_unit_write(a, req, existing ? FOP_REPLACE : FOP_CREATE, name, v, existing ? index : 0);
out:
	buf_release(&err);
	buf_release(&tpl);
	json_decref(body);
	json_decref(existing);
	json_decref(tpl_unit);
	json_decref(v);
	json_decref(norm);
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
	if (!*k || k[strspn(k, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")])
		return false;
	buf_clear(id);
	buf_clear(key);
	return buf_append(id, p + 1, (size_t)(slash - p - 1)) >= 0 && buf_puts(key, k) >= 0;
}

static void patch_round(struct fop *f);

static void patch_done(void *ctx, int err, const struct store_result *res, uint64_t index)
{
	struct fop *f = ctx;

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
		send_error(f->req, 500, f->err ? flt_strerror(f->err) : "metadata kept changing");
	} else {
		/* fleet answers 204 with a JSON content type here */
		api_respond_plain(f->req, 204, NULL, 0, "application/json", "", 0);
	}
	fop_free(f);
}

/* Apply the operations over the stored overrides of each machine they name, one proposal per
 * machine (compare-and-swap on what was read). Answers and frees `f` when it cannot propose. */
static void patch_round(struct fop *f)
{
	struct buf id = BUF_INIT, key = BUF_INIT, path = BUF_INIT, val = BUF_INIT;
	json_t *groups = json_object(), *g, *op;
	const char *mid;
	size_t i;
	int r = groups ? 0 : -ENOMEM;

	f->lost = false;
	f->err = 0;
	/* {machine id: new overrides}, starting from what is stored */
	json_array_foreach(f->ops, i, op) {
		json_t *node = NULL;
		const char *o = get_str(op, "op");

		if (r < 0)
			break;
		meta_path(get_str(op, "path"), &id, &key);
		if (!(g = json_object_get(groups, id.data))) {
			buf_clear(&path);
			r = buf_printf(&path, MODEL_METADATA "/%s", id.data);
			if (r >= 0)
				r = read_node(f->a, path.data, false, &node);
			if (r < 0)
				break;
			g = json_pack("{s:o, s:I}", "v", node ? node_object(node) : json_object(),
				      "i", node ? json_integer_value(json_object_get(
							 node, "modifiedIndex"))
					     : (json_int_t)0);
			json_decref(node);
			if (!g || !json_is_object(json_object_get(g, "v"))) {
				json_decref(g);
				g = json_pack("{s:o, s:I}", "v", json_object(), "i",
					      (json_int_t)0);
			}
			json_object_set_new(groups, id.data, g);
		}
		json_object_set_new(json_object_get(g, "v"), key.data,
				    json_string(!strcmp(o, "remove")
						    ? ""
						    : get_str(json_object_get(op, "value"), "value")));
	}
	f->pending = 1; /* held until every proposal is made */
	json_object_foreach(groups, mid, g) {
		uint64_t prev = (uint64_t)json_integer_value(json_object_get(g, "i"));

		if (r < 0)
			break;
		buf_clear(&path);
		buf_clear(&val);
		r = buf_printf(&path, MODEL_METADATA "/%s", mid);
		if (r >= 0)
			r = put_json(&val, json_object_get(g, "v"));
		if (r >= 0)
			r = propose(f->a, path.data, &val, prev ? -1 : 0, prev, patch_done, f);
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

static void machines_patch(struct api *a, struct web_req *req)
{
	struct buf id = BUF_INIT, key = BUF_INIT;
	size_t len, i;
	const char *body = web_req_body(req, &len);
	json_error_t je;
	json_t *ops = json_loadb(body, len, JSON_DECODE_ANY, &je), *op;
	struct fop *f;

	if (!ops) {
		send_errorf(req, 400, "%s", len ? je.text : "EOF");
		return;
	}
	if (!json_is_array(ops)) {
		send_errorf(req, 400, "json: cannot unmarshal %s into Go value of type "
				      "[]api.machineMetadataOp", json_type_go(ops));
		json_decref(ops);
		return;
	}
	/* every operation is checked before any is applied */
	json_array_foreach(ops, i, op) {
		const char *o = get_str(op, "op");
		json_t *v = json_object_get(op, "value");

		if (!json_is_object(op)) {
			send_errorf(req, 400, "json: cannot unmarshal %s into Go value of type "
					      "api.machineMetadataOp", json_type_go(op));
			goto bad;
		}
		if (v && !json_is_null(v) &&
		    (!json_is_object(v) ||
		     (json_object_get(v, "value") && !json_is_string(json_object_get(v, "value"))))) {
			send_errorf(req, 400, "json: cannot unmarshal %s into Go struct field "
					      "machineMetadataOp.Value of type struct { Value "
					      "string \"json:\\\"value\\\"\" }",
				    json_type_go(v));
			goto bad;
		}
		if (!o || (strcmp(o, "add") && strcmp(o, "remove") && strcmp(o, "replace"))) {
			send_error(req, 400, "invalid op: expect add, remove, or replace");
			goto bad;
		}
		if (!meta_path(get_str(op, "path"), &id, &key)) {
			send_error(req, 400, "machine metadata path invalid");
			goto bad;
		}
		if (strcmp(o, "remove")) {
			const char *s = get_str(v, "value");

			if (!s || !*s) {
				send_error(req, 400, "invalid value: add and replace require a value");
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
		send_error(req, 500, "out of memory");
		return;
	}
	f->a = a;
	f->req = req;
	f->kind = FOP_PATCH;
	f->ops = ops;
	patch_round(f);
	return;
bad:
	buf_release(&id);
	buf_release(&key);
	json_decref(ops);
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
		send_error(req, 400, "invalid URL escape in path");
		free(path);
		return;
	}
	if (!*path) {
		/* fleet: the API root itself */
		send_error(req, 405, "");
	} else if (!strcmp(path, "/discovery")) {
		if (strcmp(m, "GET"))
			send_error(req, 400, "only HTTP GET supported against this resource");
		else
			api_respond_plain(req, 200, NULL, 0, "application/json", discovery,
					  sizeof(discovery) - 1);
	} else if (!strcmp(path, "/machines")) {
		if (!strcmp(m, "GET"))
			machines_list(a, req);
		else if (!strcmp(m, "PATCH"))
			machines_patch(a, req);
		else
			send_error(req, 405, "only GET and PATCH supported against this resource");
	} else if (!strcmp(path, "/units") || !strcmp(path, "/units/")) {
		if (!strcmp(m, "GET"))
			units_list(a, req);
		else
			send_error(req, 405, "only GET supported against this resource");
	} else if (!strncmp(path, "/units/", 7) && (item = item_of(path + 6))) {
		bool bad = unit_name_check(item, NULL) < 0;

		/* a name that cannot exist is not looked up (nor turned into a store path) */
		if (bad && (!strcmp(m, "GET") || !strcmp(m, "DELETE")))
			send_error(req, 404, "unit does not exist");
		else if (!strcmp(m, "GET"))
			units_get(a, req, item);
		else if (!strcmp(m, "PUT"))
			units_put(a, req, item);
		else if (!strcmp(m, "DELETE"))
			units_delete(a, req, item);
		else
			send_error(req, 405,
				   "only GET, PUT and DELETE supported against this resource");
	} else if (!strcmp(path, "/state")) {
		state_handle(a, req, NULL);
	} else if (!strncmp(path, "/state/", 7) && (item = item_of(path + 6))) {
		state_handle(a, req, item);
	} else {
		send_error(req, 404, "");
	}
	free(path);
}
