/* The watch hub and the event history, after etcd's watcher_hub.go and event_history.go: watches
 * are kept by the exact key they watch; an event notifies the watches of its key and of each
 * ancestor (recursive ones, unless the key is hidden below them), a removed node notifies the
 * watches of every path it takes with it, and the last STORE_HISTORY events answer waitIndex. */
#include "store/store_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void event_unref(struct store_event *ev)
{
	if (!ev || --ev->refs)
		return;
	free(ev->key);
	buf_release(&ev->json);
	free(ev);
}

const char *store_event_json(const struct store_event *ev, size_t *ret_len)
{
	if (ret_len)
		*ret_len = ev->json.len;
	return ev->json.data;
}

uint64_t store_event_index(const struct store_event *ev)
{
	return ev->index;
}

const char *store_event_action(const struct store_event *ev)
{
	return store_action_names[ev->action];
}

const char *store_event_key(const struct store_event *ev)
{
	return ev->key;
}

static size_t hash(const char *p, size_t len)
{
	uint64_t h = 1469598103934665603ULL;

	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)p[i]) * 1099511628211ULL;
	return (size_t)h;
}

int hub_init(struct watch_hub *h)
{
	memset(h, 0, sizeof(*h));
	h->nbuckets = 64;
	h->buckets = calloc(h->nbuckets, sizeof(*h->buckets));
	return h->buckets ? 0 : -ENOMEM;
}

void hub_history_clear(struct watch_hub *h)
{
	for (size_t i = 0; i < h->hist_len; i++)
		event_unref(h->hist[(h->hist_start + i) % STORE_HISTORY]);
	h->hist_start = h->hist_len = 0;
}

void hub_release(struct watch_hub *h)
{
	for (size_t i = 0; i < h->nbuckets; i++) {
		struct store_watch *w = h->buckets[i], *next;

		for (; w; w = next) {
			next = w->next;
			w->s = NULL;
			w->registered = false;
			w->next = NULL;
			w->pprev = NULL;
		}
	}
	free(h->buckets);
	h->buckets = NULL;
	h->count = 0;
	hub_history_clear(h);
}

static void w_link(struct watch_hub *h, struct store_watch *w)
{
	struct store_watch **b = &h->buckets[hash(w->key, w->key_len) % h->nbuckets];

	w->next = *b;
	if (*b)
		(*b)->pprev = &w->next;
	*b = w;
	w->pprev = b;
	w->registered = true;
	h->count++;
}

static void w_unlink(struct watch_hub *h, struct store_watch *w)
{
	if (!w->registered)
		return;
	*w->pprev = w->next;
	if (w->next)
		w->next->pprev = w->pprev;
	w->next = NULL;
	w->pprev = NULL;
	w->registered = false;
	h->count--;
}

/* Keep chains short as watches pile up (the API bounds their number). */
static void hub_grow(struct watch_hub *h)
{
	size_t nb = h->nbuckets * 4;
	struct store_watch **b = calloc(nb, sizeof(*b));

	if (!b)
		return; /* longer chains, still correct */
	for (size_t i = 0; i < h->nbuckets; i++) {
		struct store_watch *w = h->buckets[i], *next;

		for (; w; w = next) {
			struct store_watch **nbk = &b[hash(w->key, w->key_len) % nb];

			next = w->next;
			w->next = *nbk;
			if (*nbk)
				(*nbk)->pprev = &w->next;
			*nbk = w;
			w->pprev = nbk;
		}
	}
	free(h->buckets);
	h->buckets = b;
	h->nbuckets = nb;
}

int hub_add(struct watch_hub *h, struct store_event *ev)
{
	if (h->hist_len == STORE_HISTORY) {
		event_unref(h->hist[h->hist_start]);
		h->hist_start = (h->hist_start + 1) % STORE_HISTORY;
		h->hist_len--;
	}
	h->hist[(h->hist_start + h->hist_len) % STORE_HISTORY] = ev;
	h->hist_len++;
	ev->refs++;
	return 0;
}

/* etcd's isHidden: the part of `key` below `watch` has a component starting with '_'. */
static bool is_hidden(const char *watch, size_t wlen, const char *key)
{
	size_t klen = strlen(key);
	const char *rest;

	if (wlen > klen)
		return false;
	rest = key + wlen;
	/* "/" + rest, cleaned, contains "/_": a component of rest starts with '_' */
	for (size_t i = 0; rest[i]; i++)
		if ((i == 0 || rest[i - 1] == '/') && rest[i] == '_')
			return true;
	return false;
}

/* Run the callback; a store_watch_free() from inside it is deferred to here. Returns false if
 * the watch is gone. */
static bool w_call(struct store_watch *w, const struct store_event *ev)
{
	w->busy = true;
	w->cb(w->ctx, ev);
	w->busy = false;
	if (w->dead) {
		free(w->key);
		free(w);
		return false;
	}
	return true;
}

static void notify_path(struct store *s, struct store_event *ev, const char *path, size_t len,
                        bool deleted)
{
	struct watch_hub *h = &s->hub;
	struct store_watch *w, *next;
	bool original = strlen(ev->key) == len && !memcmp(ev->key, path, len);

	if (!original && is_hidden(path, len, ev->key))
		return;
	for (w = h->buckets[hash(path, len) % h->nbuckets]; w; w = next) {
		next = w->next;
		if (w->key_len != len || memcmp(w->key, path, len))
			continue;
		if (!(w->recursive || original || deleted) || ev->index < w->since)
			continue;
		if (!w->stream)
			w_unlink(h, w);
		else
			w->since = ev->index + 1; /* a stream hears each event once */
		w_call(w, ev);                    /* may free w, never `next` */
	}
}

void hub_notify_deleted(struct store *s, struct store_event *ev, const char *path, size_t len)
{
	if (s->hub.count)
		notify_path(s, ev, path, len, true);
}

int hub_notify(struct store *s, struct store_event *ev)
{
	const char *k = ev->key;
	size_t i;

	hub_add(&s->hub, ev);
	if (!s->hub.count)
		return 0;
	/* "/", then "/a", "/a/b", ... up to the key itself */
	notify_path(s, ev, "/", 1, false);
	for (i = 1; k[i]; i++)
		if (k[i] == '/')
			notify_path(s, ev, k, i, false);
	if (i > 1)
		notify_path(s, ev, k, i, false);
	return 0;
}

/* etcd's EventHistory.scan matching rule. */
static bool hist_match(const struct store_event *ev, const char *key, size_t klen, bool recursive)
{
	size_t elen = strlen(ev->key);

	if (ev->refresh)
		return false;
	if (elen == klen && !memcmp(ev->key, key, klen))
		return true;
	if (recursive && elen > klen && !memcmp(ev->key, key, klen) &&
	    (klen == 1 || ev->key[klen] == '/'))
		return true;
	if ((ev->action == ACT_DELETE || ev->action == ACT_EXPIRE) && ev->prev_dir &&
	    klen >= elen && !memcmp(key, ev->key, elen))
		return true;
	return false;
}

int store_watch_new(struct store *s, const char *key, bool recursive, bool stream, uint64_t since,
                    store_watch_fn cb, void *ctx, struct store_watch **ret_w,
                    struct store_result **ret_err)
{
	struct watch_hub *h = &s->hub;
	struct store_watch *w;
	struct buf path = BUF_INIT;
	int r;

	uint64_t first = h->hist_len ? h->hist[h->hist_start]->index : h->cleared_to + 1;

	if (since == 0)
		since = s->index + 1;
	if (since < first) {
		struct buf cause = BUF_INIT;

		r = buf_printf(&cause, "the requested history has been cleared [%llu/%llu]",
		               (unsigned long long)first, (unsigned long long)since);
		if (r >= 0)
			r = store_error_result(STORE_EEVENTINDEXCLEARED, cause.data, s->index,
			                       ret_err);
		buf_release(&cause);
		return r < 0 ? r : 0;
	}
	if ((r = store_path_clean(key, strlen(key), &path)) < 0)
		return r;
	w = calloc(1, sizeof(*w));
	if (!w) {
		buf_release(&path);
		return -ENOMEM;
	}
	w->s = s;
	w->key_len = path.len;
	w->key = buf_steal(&path);
	w->recursive = recursive;
	w->stream = stream;
	w->since = since;
	w->start_index = s->index;
	w->cb = cb;
	w->ctx = ctx;
	if (h->count >= h->nbuckets * 2)
		hub_grow(h);
	w_link(h, w);
	*ret_w = w;
	return 0;
}

void store_watch_catch_up(struct store_watch *w)
{
	struct watch_hub *h;
	uint64_t first;

	if (!w->s || !w->registered)
		return;
	h = &w->s->hub;
	if (!h->hist_len)
		return;
	first = h->hist[h->hist_start]->index;
	while (w->registered && w->since >= first && w->since - first < h->hist_len) {
		struct store_event *ev =
		    h->hist[(h->hist_start + (w->since - first)) % STORE_HISTORY];

		w->since = ev->index + 1;
		if (!hist_match(ev, w->key, w->key_len, w->recursive))
			continue;
		if (!w->stream)
			w_unlink(h, w);
		if (!w_call(w, ev))
			return;
	}
}

uint64_t store_watch_start_index(const struct store_watch *w)
{
	return w->start_index;
}

void store_watch_free(struct store_watch *w)
{
	if (!w)
		return;
	if (w->s)
		w_unlink(&w->s->hub, w);
	if (w->busy) {
		w->dead = true; /* freed when its callback returns */
		return;
	}
	free(w->key);
	free(w);
}

unsigned store_watch_count(const struct store *s)
{
	return s->hub.count;
}
