/* The key tree, TTL heap and the apply of commands. Each operation mirrors the function of the
 * same name in etcd 3.4's v2 store (store.go): same checks in the same order, same index
 * numbering, same error causes, including etcd's quirks that clients can observe (a dir's
 * modifiedIndex is not moved by an update; Set with refresh re-creates the node). A directory's
 * children are kept by kids.c. */
#include "store/store_int.h"

#include <errno.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"

const char *const store_action_names[] = {
    [ACT_GET] = "get",
    [ACT_SET] = "set",
    [ACT_CREATE] = "create",
    [ACT_UPDATE] = "update",
    [ACT_CAS] = "compareAndSwap",
    [ACT_DELETE] = "delete",
    [ACT_CAD] = "compareAndDelete",
    [ACT_EXPIRE] = "expire",
};

/* Refuse TTLs whose expiration Go could not even print (year > 9999). */
#define STORE_MAX_TTL (100ULL * 366 * 24 * 3600)

/* ---------------------------------------------------------------- paths */

int store_path_clean(const char *p, size_t len, struct buf *out)
{
	size_t base = out->len, i = 0;
	int r;

	/* Go's path.Clean(path.Join("/", p)): rooted, no empty or "." parts, ".." pops */
	if ((r = buf_putc(out, '/')) < 0)
		return r;
	while (i < len) {
		size_t j = i;

		while (j < len && p[j] != '/')
			j++;
		if (j == i || (j - i == 1 && p[i] == '.')) {
			/* empty or "." */
		} else if (j - i == 2 && p[i] == '.' && p[i + 1] == '.') {
			if (out->len > base + 1) {
				while (out->len > base + 1 && out->data[out->len - 1] != '/')
					out->len--;
				if (out->len > base + 1)
					out->len--;
				out->data[out->len] = '\0';
			}
		} else {
			if (out->len > base + 1 && (r = buf_putc(out, '/')) < 0)
				return r;
			if ((r = buf_append(out, p + i, j - i)) < 0)
				return r;
		}
		i = j + 1;
	}
	return 0;
}

/* ---------------------------------------------------------------- nodes */

static struct snode *node_new(const char *path, size_t plen, struct snode *parent, bool dir,
                              const char *value, size_t vlen, uint64_t index, int64_t expire)
{
	struct snode *n = calloc(1, sizeof(*n));

	if (!n)
		return NULL;
	n->path = malloc(plen + 1);
	if (!n->path)
		goto fail;
	memcpy(n->path, path, plen);
	n->path[plen] = '\0';
	n->path_len = plen;
	n->name = strrchr(n->path, '/') + 1;
	if (plen == 1)
		n->name = n->path; /* the root: "/" */
	n->parent = parent;
	n->dir = dir;
	if (!dir) {
		n->value = malloc(vlen + 1);
		if (!n->value)
			goto fail;
		if (vlen)
			memcpy(n->value, value, vlen);
		n->value[vlen] = '\0';
		n->value_len = vlen;
	}
	n->created = n->modified = index;
	n->expire_ns = expire;
	n->heap_pos = STORE_NO_HEAP;
	return n;
fail:
	free(n->path);
	free(n);
	return NULL;
}

/* ---------------------------------------------------------------- TTL heap */

static bool heap_less(const struct snode *a, const struct snode *b)
{
	if (a->expire_ns != b->expire_ns)
		return a->expire_ns < b->expire_ns;
	return strcmp(a->path, b->path) < 0; /* deterministic order of simultaneous expiries */
}

static void heap_set(struct store *s, size_t i, struct snode *n)
{
	s->heap[i] = n;
	n->heap_pos = i;
}

static void heap_up(struct store *s, size_t i)
{
	struct snode *n = s->heap[i];

	while (i > 0) {
		size_t p = (i - 1) / 2;

		if (!heap_less(n, s->heap[p]))
			break;
		heap_set(s, i, s->heap[p]);
		i = p;
	}
	heap_set(s, i, n);
}

static void heap_down(struct store *s, size_t i)
{
	struct snode *n = s->heap[i];

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= s->nheap)
			break;
		if (c + 1 < s->nheap && heap_less(s->heap[c + 1], s->heap[c]))
			c++;
		if (!heap_less(s->heap[c], n))
			break;
		heap_set(s, i, s->heap[c]);
		i = c;
	}
	heap_set(s, i, n);
}

static int heap_push(struct store *s, struct snode *n)
{
	if (s->nheap == s->heapcap) {
		size_t cap = s->heapcap ? s->heapcap * 2 : 16;
		struct snode **h = realloc(s->heap, cap * sizeof(*h));

		if (!h)
			return -ENOMEM;
		s->heap = h;
		s->heapcap = cap;
	}
	s->heap[s->nheap] = n;
	n->heap_pos = s->nheap++;
	heap_up(s, n->heap_pos);
	return 0;
}

static void heap_remove(struct store *s, struct snode *n)
{
	size_t i = n->heap_pos;

	if (i == STORE_NO_HEAP)
		return;
	n->heap_pos = STORE_NO_HEAP;
	s->nheap--;
	if (i == s->nheap)
		return;
	{
		struct snode *last = s->heap[s->nheap];

		heap_set(s, i, last);
		heap_down(s, i);
		heap_up(s, last->heap_pos);
	}
}

/* etcd's UpdateTTL: permanent <-> TTL transitions keep the heap in step. The heap can only grow
 * here when a permanent node gets a TTL; that push is reserved by the caller's check. */
static int node_update_ttl(struct store *s, struct snode *n, int64_t expire)
{
	if (n->heap_pos != STORE_NO_HEAP) {
		if (!expire) {
			n->expire_ns = 0;
			heap_remove(s, n);
			return 0;
		}
		n->expire_ns = expire;
		heap_down(s, n->heap_pos);
		heap_up(s, n->heap_pos);
		return 0;
	}
	if (!expire)
		return 0;
	n->expire_ns = expire;
	return heap_push(s, n);
}

static void node_free_tree(struct store *s, struct snode *n)
{
	if (!n)
		return;
	/* in array order, holes included (NULL is accepted): freeing needs no order */
	size_t nk;
	struct snode *const *kids = kids_unordered(n, &nk);

	for (size_t i = 0; i < nk; i++)
		if (kids[i])
			node_free_tree(s, kids[i]);
	if (s)
		heap_remove(s, n);
	kids_free(n->kids);
	free(n->value);
	free(n->path);
	free(n);
}

/* etcd's node.Remove after its checks passed: children first, each reported to the watchers of
 * its path (so a watcher of /a/b hears about the delete of /a), then unlink and free. */
static void node_remove_tree(struct store *s, struct snode *n, struct store_event *ev)
{
	size_t nk;
	struct snode *const *kids = kids_sorted(n, &nk); /* watchers hear in name order */

	for (size_t i = 0; i < nk; i++) {
		kids[i]->parent = NULL; /* already being freed with us */
		node_remove_tree(s, kids[i], ev);
	}
	kids_free(n->kids);
	n->kids = NULL;
	if (ev)
		hub_notify_deleted(s, ev, n->path, n->path_len);
	if (n->parent)
		kid_del(n->parent, n);
	heap_remove(s, n);
	free(n->value);
	free(n->path);
	free(n);
}

/* ---------------------------------------------------------------- store */

int store_new(struct store **ret)
{
	struct store *s = calloc(1, sizeof(*s));
	int r;

	if (!s)
		return -ENOMEM;
	s->root = node_new("/", 1, NULL, true, NULL, 0, 0, 0);
	if (!s->root) {
		free(s);
		return -ENOMEM;
	}
	if ((r = hub_init(&s->hub)) < 0) {
		node_free_tree(NULL, s->root);
		free(s);
		return r;
	}
	*ret = s;
	return 0;
}

void store_free(struct store *s)
{
	if (!s)
		return;
	hub_release(&s->hub);
	node_free_tree(NULL, s->root);
	free(s->heap);
	if (s->cmd_zone)
		msgpack_zone_free(s->cmd_zone);
	free(s);
}

uint64_t store_index(const struct store *s)
{
	return s->index;
}

int64_t store_next_expiry(const struct store *s)
{
	return s->nheap ? s->heap[0]->expire_ns : INT64_MAX;
}

/* ---------------------------------------------------------------- results */

static struct store_result *res_new(void)
{
	struct store_result *r = calloc(1, sizeof(*r));

	if (r)
		buf_init(&r->json);
	return r;
}

void store_result_free(struct store_result *r)
{
	if (!r)
		return;
	if (r->ev)
		event_unref(r->ev);
	buf_release(&r->json);
	free(r);
}

int store_result_status(const struct store_result *r)
{
	if (r->err_code)
		return store_error_status(r->err_code);
	return r->created ? 201 : 200;
}

int store_result_json_novalue(const struct store_result *r, struct buf *out)
{
	if (r->err_code || !r->action ||
	    (strcmp(r->action, "set") && strcmp(r->action, "create") &&
	     strcmp(r->action, "update") && strcmp(r->action, "compareAndSwap")))
		return buf_append(out, r->json.data ? r->json.data : "", r->json.len);
	if (buf_puts(out, "{\"action\":") < 0 ||
	    store_json_string(out, r->action, strlen(r->action)) < 0)
		return -ENOMEM;
	return buf_puts(out, "}\n");
}

int store_error_result(int code, const char *cause, uint64_t index, struct store_result **ret)
{
	struct store_result *r = res_new();

	if (!r)
		return -ENOMEM;
	r->err_code = code;
	r->etcd_index = index;
	if (store_error_json(code, cause, index, &r->json) < 0) {
		store_result_free(r);
		return -ENOMEM;
	}
	*ret = r;
	return 0;
}

/* Fill `res` with an etcd error whose cause is `len` bytes of `cause`. */
static int res_err(struct store_result *res, int code, const char *cause, size_t len,
                   uint64_t index)
{
	struct buf c = BUF_INIT;
	int r;

	if ((r = buf_append(&c, cause ? cause : "", cause ? len : 0)) < 0)
		return r;
	res->err_code = code;
	res->etcd_index = index;
	buf_clear(&res->json);
	r = store_error_json(code, c.data, index, &res->json);
	buf_release(&c);
	return r;
}

/* ---------------------------------------------------------------- events */

/* Room for a node's JSON besides its key and value (field names, indices, a TTL), and then some
 * for escapes: a size hint, the buffer still grows if it must. */
#define JSON_SLACK 160

/* `body`: the bytes of value and prevNode the JSON will hold, so that it is allocated once
 * (growing it by doubling was 3% of a PUT load's CPU in realloc). */
static struct store_event *ev_new(enum store_action a, const char *key, size_t klen, uint64_t index,
                                  size_t body)
{
	struct store_event *ev = calloc(1, sizeof(*ev));

	if (!ev)
		return NULL;
	ev->refs = 1;
	ev->action = a;
	ev->index = index;
	ev->key = strndup(key, klen);
	buf_init(&ev->json);
	if (!ev->key || buf_reserve(&ev->json, JSON_SLACK + klen + body) < 0 ||
	    buf_puts(&ev->json, "{\"action\":\"") < 0 ||
	    buf_puts(&ev->json, store_action_names[a]) < 0 || buf_putc(&ev->json, '"') < 0) {
		event_unref(ev);
		return NULL;
	}
	ev->node_off = ev->json.len;
	if (buf_puts(&ev->json, ",\"node\":") < 0) {
		event_unref(ev);
		return NULL;
	}
	return ev;
}

/* The prevNode of an event: node `n` as it is before the change, into the empty `prev`. */
static int prev_json(struct buf *prev, const struct snode *n, int64_t now)
{
	int r = buf_reserve(prev, JSON_SLACK + n->path_len + n->value_len);

	return r < 0 ? r : json_node(prev, n, false, false, now);
}

/* Close the event's JSON with the prevNode (rendered before the change) if any. */
static int ev_finish(struct store_event *ev, const struct buf *prev)
{
	int r;

	if (prev && prev->len) {
		ev->has_prev = true;
		if ((r = buf_puts(&ev->json, ",\"prevNode\":")) < 0 ||
		    (r = buf_append(&ev->json, prev->data, prev->len)) < 0)
			return r;
	}
	return buf_puts(&ev->json, "}\n");
}

/* Hand the event to the result and to the hub. */
static int res_event(struct store *s, struct store_result *res, struct store_event *ev,
                     bool refresh)
{
	int r;

	res->action = store_action_names[ev->action];
	res->etcd_index = s->index;
	res->created = ev->action == ACT_CREATE || (ev->action == ACT_SET && !ev->has_prev);
	if ((r = buf_append(&res->json, ev->json.data, ev->json.len)) < 0) {
		event_unref(ev);
		return r;
	}
	res->ev = ev; /* the creator's reference */
	ev->refresh = refresh;
	return refresh ? hub_add(&s->hub, ev) : hub_notify(s, ev);
}

/* ---------------------------------------------------------------- walking */

struct walk_err {
	int code;
	const char *cause; /* inside the path being walked */
	size_t cause_len;
};

/* etcd's internalGet on a cleaned path. */
static struct snode *internal_get(struct store *s, const char *path, size_t len,
                                  struct walk_err *err)
{
	struct snode *cur = s->root;
	size_t i = 1;

	while (i < len) {
		size_t j = i;
		struct snode *k;

		while (j < len && path[j] != '/')
			j++;
		if (!cur->dir) {
			err->code = STORE_ENOTDIR;
			err->cause = cur->path;
			err->cause_len = cur->path_len;
			return NULL;
		}
		k = kid_find(cur, path + i, j - i);
		if (!k) {
			err->code = STORE_EKEYNOTFOUND;
			err->cause = path;
			err->cause_len = j;
			return NULL;
		}
		cur = k;
		i = j + 1;
	}
	return cur;
}

static int check_key(const char *path, size_t len)
{
	size_t depth = 0;

	if (len > STORE_MAX_KEY_LEN)
		return -1;
	for (size_t i = 0; i < len; i++)
		depth += path[i] == '/';
	return depth > STORE_MAX_DEPTH ? -1 : 0;
}

/* ---------------------------------------------------------------- operations */

struct op {
	struct store *s;
	struct store_result *res;
	const char *path; /* cleaned */
	size_t len;
	int64_t now;
	int64_t expire; /* 0 = permanent */
	const struct store_cmd *c;
	const char *value;
	size_t vlen;
};

static int op_walk_err(struct op *o, const struct walk_err *we, uint64_t index)
{
	return res_err(o->res, we->code, we->cause, we->cause_len, index);
}

/* etcd's internalCreate. On an etcd error `res` carries it and 1 is returned. */
static int internal_create(struct op *o, bool dir, const char *value, size_t vlen, bool unique,
                           bool replace, enum store_action action, const struct snode *prev_get)
{
	struct store *s = o->s;
	uint64_t cur = s->index, next = cur + 1;
	struct buf path = BUF_INIT, prev = BUF_INIT;
	struct snode *d, *n;
	struct store_event *ev = NULL;
	size_t i, dlen;
	int r;

	if ((r = buf_append(&path, o->path, o->len)) < 0)
		return r;
	if (unique) {
		char num[21];
		uint64_t v = next;

		for (int k = 19; k >= 0; k--) {
			num[k] = (char)('0' + v % 10);
			v /= 10;
		}
		num[20] = '\0';
		if ((path.len > 1 && (r = buf_putc(&path, '/')) < 0) ||
		    (r = buf_puts(&path, num)) < 0)
			goto out;
	}
	if (path.len == 1) {
		r = res_err(o->res, STORE_EROOTRONLY, "/", 1, cur);
		goto out_err;
	}
	/* walk the parent, creating missing dirs (etcd's checkDir) */
	dlen = (size_t)(strrchr(path.data, '/') - path.data);
	d = s->root;
	i = 1;
	while (i < dlen) {
		size_t j = i;
		struct snode *k;

		while (j < dlen && path.data[j] != '/')
			j++;
		k = kid_find(d, path.data + i, j - i);
		if (k && !k->dir) {
			s->stats.sets_fail++; /* etcd counts this one twice */
			r = res_err(o->res, STORE_ENOTDIR, k->path, k->path_len, cur);
			goto out_err;
		}
		if (!k) {
			k = node_new(path.data, j, d, true, NULL, 0, next, 0);
			if (!k || kid_add(d, k) < 0) {
				node_free_tree(NULL, k);
				r = -ENOMEM;
				goto out;
			}
		}
		d = k;
		i = j + 1;
	}
	n = kid_find(d, path.data + dlen + 1, path.len - dlen - 1);
	if (n) {
		if (!replace) {
			r = res_err(o->res, STORE_ENODEEXIST, path.data, path.len, cur);
			goto out_err;
		}
		if (n->dir) {
			r = res_err(o->res, STORE_ENOTFILE, path.data, path.len, cur);
			goto out_err;
		}
	}
	if (prev_get && (r = prev_json(&prev, prev_get, o->now)) < 0)
		goto out;
	ev = ev_new(action, path.data, path.len, next, vlen + prev.len);
	if (!ev) {
		r = -ENOMEM;
		goto out;
	}
	if ((r = json_node_open(&ev->json, path.data, path.len, dir, value, vlen, !dir, o->expire,
	                        o->now)) < 0 ||
	    (r = json_node_close(&ev->json, next, next)) < 0 || (r = ev_finish(ev, &prev)) < 0)
		goto out;
	{
		struct snode *nn =
		    node_new(path.data, path.len, d, dir, value, vlen, next, o->expire);

		if (!nn) {
			r = -ENOMEM;
			goto out;
		}
		if (o->expire && (r = heap_push(s, nn)) < 0) {
			node_free_tree(NULL, nn);
			goto out;
		}
		if (n)
			node_remove_tree(s, n, NULL);
		if ((r = kid_add(d, nn)) < 0) {
			node_free_tree(s, nn);
			goto out;
		}
	}
	s->index = next;
	r = res_event(s, o->res, ev, action == ACT_SET && o->c->refresh);
	ev = NULL;
	if (r >= 0)
		r = 0;
out:
	if (ev)
		event_unref(ev);
	buf_release(&path);
	buf_release(&prev);
	return r;
out_err:
	buf_release(&path);
	return r < 0 ? r : 1;
}

static int op_set(struct op *o)
{
	struct walk_err we;
	struct snode *n = internal_get(o->s, o->path, o->len, &we);
	const char *value = o->value;
	size_t vlen = o->vlen;
	struct buf keep = BUF_INIT;
	int r;

	if (!n && we.code != STORE_EKEYNOTFOUND) {
		o->s->stats.sets_fail++;
		return op_walk_err(o, &we, o->s->index);
	}
	if (o->c->refresh) {
		if (!n) {
			o->s->stats.sets_fail++;
			return op_walk_err(o, &we, o->s->index);
		}
		/* the old node goes away inside internal_create: keep its value */
		if ((r = buf_append(&keep, n->value ? n->value : "", n->value_len)) < 0)
			return r;
		value = keep.data;
		vlen = keep.len;
	}
	r = internal_create(o, o->c->dir, value, vlen, false, true, ACT_SET, n);
	buf_release(&keep);
	if (r == 0)
		o->s->stats.sets_ok++;
	else if (r > 0)
		o->s->stats.sets_fail++;
	return r;
}

static int op_create(struct op *o, bool unique)
{
	int r = internal_create(o, o->c->dir, o->value, o->vlen, unique, false, ACT_CREATE, NULL);

	if (r == 0)
		o->s->stats.creates_ok++;
	else if (r > 0)
		o->s->stats.creates_fail++;
	return r;
}

static int op_update(struct op *o)
{
	struct store *s = o->s;
	uint64_t next = s->index + 1;
	struct walk_err we;
	struct snode *n;
	struct buf prev = BUF_INIT;
	struct store_event *ev;
	const char *value = o->value;
	size_t vlen = o->vlen;
	int r;

	if (o->len == 1) {
		s->stats.updates_fail++;
		return res_err(o->res, STORE_EROOTRONLY, "/", 1, s->index) < 0 ? -ENOMEM : 1;
	}
	n = internal_get(s, o->path, o->len, &we);
	if (!n) {
		s->stats.updates_fail++;
		return op_walk_err(o, &we, s->index) < 0 ? -ENOMEM : 1;
	}
	if (n->dir && vlen) {
		s->stats.updates_fail++;
		return res_err(o->res, STORE_ENOTFILE, o->path, o->len, s->index) < 0 ? -ENOMEM : 1;
	}
	if (o->c->refresh) {
		value = n->value;
		vlen = n->value_len;
	}
	if ((r = prev_json(&prev, n, o->now)) < 0)
		return r;
	ev = ev_new(ACT_UPDATE, o->path, o->len, next, vlen + prev.len);
	if (!ev) {
		buf_release(&prev);
		return -ENOMEM;
	}
	/* etcd's node.Write refuses a dir silently: the event says `next`, the node keeps its
	 * modifiedIndex */
	if (!n->dir) {
		char *v = malloc(vlen + 1);

		if (!v) {
			r = -ENOMEM;
			goto fail;
		}
		if (vlen)
			memcpy(v, value, vlen);
		v[vlen] = '\0';
		free(n->value);
		n->value = v;
		n->value_len = vlen;
		n->modified = next;
		kid_written(n);
	}
	if ((r = node_update_ttl(s, n, o->expire)) < 0)
		goto fail;
	if ((r = json_node_open(&ev->json, o->path, o->len, n->dir, n->value, n->value_len, !n->dir,
	                        n->expire_ns, o->now)) < 0 ||
	    (r = json_node_close(&ev->json, next, n->created)) < 0 ||
	    (r = ev_finish(ev, &prev)) < 0)
		goto fail;
	buf_release(&prev);
	s->index = next;
	s->stats.updates_ok++;
	return res_event(s, o->res, ev, o->c->refresh);
fail:
	buf_release(&prev);
	event_unref(ev);
	return r;
}

/* etcd's getCompareFailCause. */
static int compare(struct op *o, struct snode *n)
{
	const struct store_cmd *c = o->c;
	bool has_pv = c->prev_value && c->prev_value_len;
	bool im = !c->prev_index || n->modified == c->prev_index;
	bool vm = !has_pv || (n->value_len == c->prev_value_len &&
	                      !memcmp(n->value, c->prev_value, n->value_len));
	struct buf cause = BUF_INIT;
	int r = 0;

	if (im && vm)
		return 0;
	if (!vm)
		r = buf_putc(&cause, '[') < 0 ||
		    buf_append(&cause, c->prev_value, c->prev_value_len) < 0 ||
		    buf_puts(&cause, " != ") < 0 ||
		    buf_append(&cause, n->value, n->value_len) < 0 || buf_putc(&cause, ']') < 0;
	if (!r && !vm && !im)
		r = buf_putc(&cause, ' ') < 0;
	if (!r && !im)
		r = buf_printf(&cause, "[%llu != %llu]", (unsigned long long)c->prev_index,
		               (unsigned long long)n->modified) < 0;
	if (!r)
		r = res_err(o->res, STORE_ETESTFAILED, cause.data, cause.len, o->s->index) < 0;
	buf_release(&cause);
	return r ? -ENOMEM : 1;
}

static int op_cas(struct op *o)
{
	struct store *s = o->s;
	struct walk_err we;
	struct snode *n;
	struct buf prev = BUF_INIT;
	struct store_event *ev;
	const char *value = o->value;
	size_t vlen = o->vlen;
	char *v;
	int r;

	if (o->len == 1) {
		s->stats.cas_fail++;
		return res_err(o->res, STORE_EROOTRONLY, "/", 1, s->index) < 0 ? -ENOMEM : 1;
	}
	n = internal_get(s, o->path, o->len, &we);
	if (!n) {
		s->stats.cas_fail++;
		return op_walk_err(o, &we, s->index) < 0 ? -ENOMEM : 1;
	}
	if (n->dir) {
		s->stats.cas_fail++;
		return res_err(o->res, STORE_ENOTFILE, o->path, o->len, s->index) < 0 ? -ENOMEM : 1;
	}
	if ((r = compare(o, n)) != 0) {
		s->stats.cas_fail++;
		return r;
	}
	if (o->c->refresh) {
		value = n->value;
		vlen = n->value_len;
	}
	if ((r = prev_json(&prev, n, o->now)) < 0)
		return r;
	ev = ev_new(ACT_CAS, o->path, o->len, s->index + 1, vlen + prev.len);
	v = malloc(vlen + 1);
	if (!ev || !v) {
		r = -ENOMEM;
		goto fail;
	}
	if (vlen)
		memcpy(v, value, vlen);
	v[vlen] = '\0';
	if ((r = node_update_ttl(s, n, o->expire)) < 0)
		goto fail;
	free(n->value);
	n->value = v;
	v = NULL;
	n->value_len = vlen;
	n->modified = s->index + 1;
	kid_written(n);
	if ((r = json_node_open(&ev->json, o->path, o->len, false, n->value, n->value_len, true,
	                        n->expire_ns, o->now)) < 0 ||
	    (r = json_node_close(&ev->json, n->modified, n->created)) < 0 ||
	    (r = ev_finish(ev, &prev)) < 0)
		goto fail;
	buf_release(&prev);
	s->index++;
	s->stats.cas_ok++;
	return res_event(s, o->res, ev, o->c->refresh);
fail:
	free(v);
	buf_release(&prev);
	if (ev)
		event_unref(ev);
	return r;
}

/* Delete, compareAndDelete and expire share the event shape and the removal. */
static int remove_node(struct store *s, struct store_result *res, struct snode *n,
                       enum store_action action, int64_t now)
{
	struct buf prev = BUF_INIT;
	struct store_event *ev;
	uint64_t next = s->index + 1;
	int r;

	if ((r = prev_json(&prev, n, now)) < 0)
		return r;
	ev = ev_new(action, n->path, n->path_len, next, prev.len);
	if (!ev) {
		buf_release(&prev);
		return -ENOMEM;
	}
	ev->prev_dir = n->dir;
	if ((r = json_node_open(&ev->json, n->path, n->path_len, n->dir && action != ACT_CAD, NULL,
	                        0, false, 0, now)) < 0 ||
	    (r = json_node_close(&ev->json, next, n->created)) < 0 ||
	    (r = ev_finish(ev, &prev)) < 0) {
		buf_release(&prev);
		event_unref(ev);
		return r;
	}
	buf_release(&prev);
	node_remove_tree(s, n, ev);
	s->index = next;
	if (res)
		return res_event(s, res, ev, false);
	r = hub_notify(s, ev);
	event_unref(ev);
	return r;
}

static int op_delete(struct op *o)
{
	struct store *s = o->s;
	bool dir = o->c->dir || o->c->recursive;
	struct walk_err we;
	struct snode *n;
	int r;

	if (o->len == 1) {
		s->stats.deletes_fail++;
		return res_err(o->res, STORE_EROOTRONLY, "/", 1, s->index) < 0 ? -ENOMEM : 1;
	}
	n = internal_get(s, o->path, o->len, &we);
	if (!n) {
		s->stats.deletes_fail++;
		return op_walk_err(o, &we, s->index) < 0 ? -ENOMEM : 1;
	}
	if (n->dir && !dir) {
		s->stats.deletes_fail++;
		return res_err(o->res, STORE_ENOTFILE, n->path, n->path_len, s->index) < 0 ? -ENOMEM
		                                                                           : 1;
	}
	if (n->dir && kids_count(n) && !o->c->recursive) {
		s->stats.deletes_fail++;
		return res_err(o->res, STORE_EDIRNOTEMPTY, n->path, n->path_len, s->index) < 0
		           ? -ENOMEM
		           : 1;
	}
	r = remove_node(s, o->res, n, ACT_DELETE, o->now);
	if (r >= 0)
		s->stats.deletes_ok++;
	return r;
}

static int op_cad(struct op *o)
{
	struct store *s = o->s;
	struct walk_err we;
	struct snode *n;
	int r;

	n = internal_get(s, o->path, o->len, &we);
	if (!n) {
		s->stats.cad_fail++;
		return op_walk_err(o, &we, s->index) < 0 ? -ENOMEM : 1;
	}
	if (n->dir) {
		s->stats.cad_fail++;
		/* etcd's cause for its root is "/1" trimmed to "" */
		return res_err(o->res, STORE_ENOTFILE, o->path, o->len == 1 ? 0 : o->len,
		               s->index) < 0
		           ? -ENOMEM
		           : 1;
	}
	if ((r = compare(o, n)) != 0) {
		s->stats.cad_fail++;
		return r;
	}
	r = remove_node(s, o->res, n, ACT_CAD, o->now);
	if (r >= 0)
		s->stats.cad_ok++;
	return r;
}

/* etcd's DeleteExpiredKeys(cutoff): everything due by `now`, one event (and index) each. */
static int expire_due(struct store *s, int64_t now)
{
	int r;

	while (s->nheap && s->heap[0]->expire_ns <= now) {
		struct snode *n = s->heap[0];

		heap_remove(s, n);
		if ((r = remove_node(s, NULL, n, ACT_EXPIRE, now)) < 0)
			return r;
		s->stats.expires++;
	}
	return 0;
}

/* etcd's applierV2store.Put / Post / Delete choosing the store operation. */
static int dispatch(struct op *o)
{
	const struct store_cmd *c = o->c;
	bool cmp = c->prev_index || (c->prev_value && c->prev_value_len);

	switch (c->op) {
	case STORE_OP_PUT:
		if (c->prev_exist == 1)
			return cmp ? op_cas(o) : op_update(o);
		if (c->prev_exist == 0)
			return op_create(o, false);
		if (cmp)
			return op_cas(o);
		return op_set(o);
	case STORE_OP_POST:
		return op_create(o, true);
	case STORE_OP_DELETE:
		return cmp ? op_cad(o) : op_delete(o);
	default:
		return FLT_EINVAL;
	}
}

int store_apply(struct store *s, uint64_t raft_index, const void *data, size_t len,
                struct store_result **ret)
{
	struct buf key = BUF_INIT, value = BUF_INIT, pv = BUF_INIT, path = BUF_INIT;
	struct store_cmd c;
	struct store_result *res = NULL;
	struct op o;
	int r;

	(void)raft_index;
	if ((r = cmd_decode(s, data, len, &c, &key, &value, &pv)) < 0)
		goto out;
	res = res_new();
	if (!res) {
		r = -ENOMEM;
		goto out;
	}
	if ((r = expire_due(s, c.time_ns)) < 0)
		goto out;
	if (c.op == STORE_OP_SYNC) {
		res->action = "sync";
		res->etcd_index = s->index;
		goto done;
	}
	if ((r = store_path_clean(key.data ? key.data : "", key.len, &path)) < 0)
		goto out;
	memset(&o, 0, sizeof(o));
	o.s = s;
	o.res = res;
	o.path = path.data;
	o.len = path.len;
	o.now = c.time_ns;
	o.c = &c;
	o.value = value.data ? value.data : "";
	o.vlen = value.len;
	if (check_key(path.data, path.len) < 0) {
		r = res_err(res, STORE_EINVALIDFIELD, "key too long or too deep", 24, s->index);
		goto checked;
	}
	if (value.len > STORE_MAX_VALUE) {
		r = res_err(res, STORE_EINVALIDFIELD, "value too large", 15, s->index);
		goto checked;
	}
	if (c.has_ttl) {
		if (c.ttl > STORE_MAX_TTL) {
			r = res_err(res, STORE_ETTLNAN, "invalid value for \"ttl\"", 23, s->index);
			goto checked;
		}
		o.expire = c.time_ns + (int64_t)c.ttl * 1000000000;
	}
	r = dispatch(&o);
checked:
	if (r < 0)
		goto out;
done:
	r = 0;
	*ret = res;
	res = NULL;
out:
	store_result_free(res);
	buf_release(&key);
	buf_release(&value);
	buf_release(&pv);
	buf_release(&path);
	return r;
}

/* ---------------------------------------------------------------- reads */

int store_get(struct store *s, const char *key, bool recursive, bool sorted, int64_t now_ns,
              struct store_result **ret)
{
	struct buf path = BUF_INIT;
	struct store_result *res = res_new();
	struct walk_err we;
	struct snode *n;
	int r;

	(void)sorted; /* children are always in order */
	if (!res)
		return -ENOMEM;
	if ((r = store_path_clean(key, strlen(key), &path)) < 0)
		goto out;
	n = internal_get(s, path.data, path.len, &we);
	if (!n) {
		s->stats.gets_fail++;
		r = res_err(res, we.code, we.cause, we.cause_len, s->index);
	} else {
		s->stats.gets_ok++;
		res->action = "get";
		res->etcd_index = s->index;
		if ((r = buf_puts(&res->json, "{\"action\":\"get\",\"node\":")) >= 0 &&
		    (r = json_node(&res->json, n, true, recursive, now_ns)) >= 0)
			r = buf_puts(&res->json, "}\n");
	}
out:
	buf_release(&path);
	if (r < 0) {
		store_result_free(res);
		return r;
	}
	*ret = res;
	return 0;
}

/* The directory at `key` for the two readers below; NULL with *ret_err set if there is none. */
static struct snode *dir_at(struct store *s, const char *key, long *ret_err)
{
	struct buf path = BUF_INIT;
	struct walk_err we;
	struct snode *n;

	if (store_path_clean(key, strlen(key), &path) < 0) {
		*ret_err = -ENOMEM;
		return NULL;
	}
	n = internal_get(s, path.data, path.len, &we);
	buf_release(&path);
	if (!n || !n->dir) {
		*ret_err = n ? -(long)STORE_ENOTDIR : -(long)we.code;
		return NULL;
	}
	return n;
}

long store_dir_stamp(struct store *s, const char *key, uint64_t *ret_changed)
{
	long err;
	struct snode *n = dir_at(s, key, &err);

	if (!n)
		return err;
	*ret_changed = kids_changed(n);
	return (long)kids_count(n);
}

long store_children(struct store *s, const char *key, store_child_fn fn, void *ctx)
{
	struct snode *const *kids;
	size_t nk;
	long count = 0, err;
	struct snode *n = dir_at(s, key, &err);

	if (!n)
		return err;
	kids = kids_sorted(n, &nk);
	for (size_t i = 0; i < nk; i++) {
		const struct snode *k = kids[i];

		if (k->name[0] == '_')
			continue; /* hidden, as in a listing */
		count++;
		if (fn)
			fn(ctx, k->name, k->dir ? NULL : k->value, k->dir ? 0 : k->value_len,
			   k->modified);
	}
	return count;
}

/* ---------------------------------------------------------------- snapshot trees (cmd.c) */

struct snode *tree_new(void)
{
	return node_new("/", 1, NULL, true, NULL, 0, 0, 0);
}

void tree_free(struct snode *root)
{
	node_free_tree(NULL, root);
}

int tree_insert(struct snode *root, struct tree_heap *th, const char *path, size_t plen, bool dir,
                const char *value, size_t vlen, uint64_t created, uint64_t modified, int64_t expire)
{
	struct buf clean = BUF_INIT;
	struct snode *d = root, *n;
	size_t i = 1, dlen;
	int r = FLT_ECORRUPT;

	if (store_path_clean(path, plen, &clean) < 0)
		return -ENOMEM;
	if (clean.len != plen || memcmp(clean.data, path, plen) || plen < 2 ||
	    check_key(path, plen) < 0 || vlen > STORE_MAX_VALUE)
		goto out;
	dlen = (size_t)(strrchr(clean.data, '/') - clean.data);
	while (i < dlen) {
		size_t j = i;

		while (j < dlen && path[j] != '/')
			j++;
		d = kid_find(d, path + i, j - i);
		if (!d || !d->dir)
			goto out;
		i = j + 1;
	}
	if (!d->dir || kid_find(d, path + dlen + 1, plen - dlen - 1))
		goto out;
	n = node_new(path, plen, d, dir, value, vlen, created, expire);
	r = -ENOMEM;
	if (!n)
		goto out;
	n->modified = modified;
	if (kid_add(d, n) < 0) {
		node_free_tree(NULL, n);
		goto out;
	}
	if (expire) {
		if (th->n == th->cap) {
			size_t nc = th->cap ? th->cap * 2 : 16;
			struct snode **h = realloc(th->v, nc * sizeof(*h));

			if (!h)
				goto out;
			th->v = h;
			th->cap = nc;
		}
		th->v[th->n++] = n;
	}
	r = 0;
out:
	buf_release(&clean);
	return r;
}

void tree_swap(struct store *s, struct snode *root, struct tree_heap *th, uint64_t index)
{
	node_free_tree(NULL, s->root);
	free(s->heap);
	s->root = root;
	s->heap = th->v;
	s->nheap = 0;
	s->heapcap = th->cap;
	for (size_t i = 0; i < th->n; i++) {
		s->heap[s->nheap] = th->v[i];
		th->v[i]->heap_pos = s->nheap++;
		heap_up(s, s->nheap - 1);
	}
	th->v = NULL;
	th->n = th->cap = 0;
	s->index = index;
	hub_history_clear(&s->hub);
	s->hub.cleared_to = index;
}
