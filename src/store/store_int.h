/* Internals shared by the store's files (store.c: tree and apply; kids.c: a directory's
 * children; watch.c: hub and history; cmd.c: msgpack; json.c: rendering). Nothing outside
 * src/store includes this. */
#ifndef FLT_STORE_INT_H
#define FLT_STORE_INT_H

#include "store/store.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STORE_NO_HEAP ((size_t)-1)

struct skids; /* a directory's children (store.c) */

struct snode {
	char *path; /* full cleaned path, "/" for the root; owned */
	size_t path_len;
	const char *name; /* last component, inside path */
	struct snode *parent;
	bool dir;
	uint32_t kid_pos; /* index in the parent's children array (store.c), in dir's padding */
	char *value;      /* owned, NUL-terminated, may contain NULs (value_len) */
	size_t value_len;
	uint64_t created, modified;
	int64_t expire_ns; /* 0 = permanent */
	size_t heap_pos;   /* position in the TTL heap or STORE_NO_HEAP */
	/* Children, NULL until a directory gets its first one; behind a pointer so that leaves
	 * (most nodes) do not carry a directory's bookkeeping. Read them with kids_sorted(). */
	struct skids *kids;
};

enum store_action {
	ACT_GET,
	ACT_SET,
	ACT_CREATE,
	ACT_UPDATE,
	ACT_CAS,
	ACT_DELETE,
	ACT_CAD,
	ACT_EXPIRE,
};

struct store_event {
	unsigned refs;
	uint64_t index;
	enum store_action action;
	bool refresh;  /* in the history but never delivered (etcd) */
	bool prev_dir; /* prevNode was a dir (delete/expire reach watchers below it) */
	bool has_prev;
	char *key;
	struct buf json; /* full event + "\n" */
	size_t node_off; /* where ,"node": starts in json (for noValueOnSuccess) */
};

struct store_stats {
	uint64_t gets_ok, gets_fail, sets_ok, sets_fail, deletes_ok, deletes_fail;
	uint64_t updates_ok, updates_fail, creates_ok, creates_fail;
	uint64_t cas_ok, cas_fail, cad_ok, cad_fail, expires;
};

struct watch_hub {
	struct store_watch **buckets; /* chained by path hash */
	size_t nbuckets;
	unsigned count;
	struct store_event *hist[STORE_HISTORY]; /* ring */
	size_t hist_start, hist_len;
	uint64_t cleared_to; /* events up to here are gone (a snapshot was loaded): waits for them
			      * get 401 rather than waiting for a future event */
};

struct store {
	struct snode *root;
	uint64_t index;
	struct snode **heap; /* TTL min-heap by (expire_ns, path) */
	size_t nheap, heapcap;
	struct store_stats stats;
	struct watch_hub hub;
	struct msgpack_zone *cmd_zone; /* cmd_decode's (cmd.c), made on first use */
};

struct store_watch {
	struct store *s; /* NULL once detached (store freed) */
	char *key;
	size_t key_len;
	bool recursive, stream;
	bool registered;
	bool busy, dead; /* inside its callback / freed from inside it */
	uint64_t since;
	uint64_t start_index;
	store_watch_fn cb;
	void *ctx;
	struct store_watch *next, **pprev; /* bucket chain */
};

extern const char *const store_action_names[];

/* json.c */
/* etcd's NodeExtern: '{' key value dir expiration ttl (open) ... nodes ... modifiedIndex
 * createdIndex '}' (close). Empty key, zero indices and zero ttl are left out (omitempty). */
int json_node_open(struct buf *out, const char *key, size_t klen, bool dir, const char *value,
                   size_t vlen, bool has_value, int64_t expire, int64_t now);
int json_node_close(struct buf *out, uint64_t modified, uint64_t created);
/* A tree node. `kids`: list the children (etcd's loadInternalNode does for the node a GET asks
 * for; Repr only when recursive); children are rendered as Repr(recursive), hidden ones left
 * out, sorted by name. kids=false, recursive=false is etcd's prevNode. */
int json_node(struct buf *out, const struct snode *n, bool kids, bool recursive, int64_t now);

/* store.c: the children of directory `d` in name order (bytewise, a name before the longer
 * names it begins), *ret_n of them, NULL if none. The array is borrowed until d's children next
 * change. Children are kept in order lazily, so this may reorder them first: O(n + k log k) if k
 * were added or some removed since the last call, else O(1). It never fails (without memory for
 * the merge it sorts in place) and changes nothing a reader can observe, hence the const `d`. */
struct snode *const *kids_sorted(const struct snode *d, size_t *ret_n);
/* kids.c, the rest of a directory's children, for store.c: */
/* The children array as it is (in no order, with NULL holes), *ret_len slots; for freeing and
 * for snapshots. */
struct snode *const *kids_unordered(const struct snode *d, size_t *ret_len);
size_t kids_count(const struct snode *d); /* live children */
/* The child called name[0..nlen) or NULL. */
struct snode *kid_find(const struct snode *d, const char *name, size_t nlen);
/* Add n (d has no child of its name yet; callers look first). 0, or -ENOMEM with nothing a reader
 * could see changed. */
int kid_add(struct snode *d, struct snode *n);
void kid_del(struct snode *d, struct snode *n); /* n must be a child of d */
/* Child n got a new modifiedIndex: move its parent's kids_changed(). */
void kid_written(const struct snode *n);
/* The highest modifiedIndex a child of d was added or written with (store_dir_stamp). */
uint64_t kids_changed(const struct snode *d);
void kids_free(struct skids *k); /* accepts NULL */

/* store.c, for the snapshot loader in cmd.c: build a tree aside, then swap it in. */
struct tree_heap {
	struct snode **v;
	size_t n, cap;
};
struct snode *tree_new(void);
void tree_free(struct snode *root);
/* Insert one node (preorder: its parent must be there). FLT_ECORRUPT if it does not fit. */
int tree_insert(struct snode *root, struct tree_heap *th, const char *path, size_t plen, bool dir,
                const char *value, size_t vlen, uint64_t created, uint64_t modified,
                int64_t expire);
/* Replace the store's tree (takes root and th->v), empty the history. */
void tree_swap(struct store *s, struct snode *root, struct tree_heap *th, uint64_t index);

/* cmd.c, for store_apply: store_cmd_decode in the store's zone. Also -ENOMEM. */
int cmd_decode(struct store *s, const void *data, size_t len, struct store_cmd *c, struct buf *key,
               struct buf *value, struct buf *prev_value);

/* watch.c */
int hub_init(struct watch_hub *h);
void hub_release(struct watch_hub *h);
void hub_history_clear(struct watch_hub *h);
/* Put `ev` in the history and notify watchers of its key and the key's ancestors. */
int hub_notify(struct store *s, struct store_event *ev);
/* Add to history only (refresh events). */
int hub_add(struct watch_hub *h, struct store_event *ev);
/* Notify watchers of exactly `path` (a node being removed). */
void hub_notify_deleted(struct store *s, struct store_event *ev, const char *path, size_t len);
void event_unref(struct store_event *ev);

#endif
