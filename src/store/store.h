/* The etcd v2 key/value store: the key tree, TTLs, the watch hub with its 1000-event history and
 * the JSON etcd answers with. The store is a deterministic function of the log: writes arrive only
 * as encoded commands through store_apply(), time only inside those commands. It reads no clock,
 * draws no random numbers and never logs. Semantics (index numbering, actions, error codes and
 * causes, JSON shapes) follow etcd 3.4's v2 store; see fixtures/etcd-v2/.
 *
 * Errors: functions return >= 0 or -ENOMEM / FLT_EINVAL / FLT_ECORRUPT. An etcd error (key not
 * found, compare failed, ...) is not a failure of the call: it is a normal result carrying the
 * etcd errorCode, and a failing write is still an applied entry that changes nothing. */
#ifndef FLT_STORE_H
#define FLT_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

struct store;
struct store_event;
struct store_watch;

/* Limits on what a client can make grow. */
#define STORE_MAX_KEY_LEN 4096          /* bytes of a cleaned key */
#define STORE_MAX_DEPTH   128           /* components of a key */
#define STORE_MAX_VALUE   (1536 * 1024) /* bytes of a value: the request body limit bounds it too */
#define STORE_HISTORY     1000          /* events kept for waitIndex (etcd's size) */

/* etcd v2 error codes (etcd's error/error.go). */
enum {
	STORE_EKEYNOTFOUND = 100,
	STORE_ETESTFAILED = 101,
	STORE_ENOTFILE = 102,
	STORE_ENOTDIR = 104,
	STORE_ENODEEXIST = 105,
	STORE_EROOTRONLY = 107,
	STORE_EDIRNOTEMPTY = 108,
	STORE_EPREVVALUEREQUIRED = 201,
	STORE_ETTLNAN = 202,
	STORE_EINDEXNAN = 203,
	STORE_EINVALIDFIELD = 209,
	STORE_EINVALIDFORM = 210,
	STORE_EREFRESHVALUE = 211,
	STORE_EREFRESHTTLREQUIRED = 212,
	STORE_ERAFTINTERNAL = 300,
	STORE_ELEADERELECT = 301,
	STORE_EWATCHERCLEARED = 400,
	STORE_EEVENTINDEXCLEARED = 401,
};

/* ---- lifecycle ---- */
int store_new(struct store **ret);
/* Frees the tree and history. Watches still registered are detached (their callbacks never run
 * again) but stay owned by whoever created them. Accepts NULL. */
void store_free(struct store *s);

/* The etcd index (X-Etcd-Index): the index of the last event. */
uint64_t store_index(const struct store *s);
/* Earliest expiration of a key, in ns of realtime; INT64_MAX if no key has a TTL. O(1). */
int64_t store_next_expiry(const struct store *s);

/* ---- commands (one per log entry) ---- */
enum store_op {
	STORE_OP_SYNC = 0,   /* only advances time: expires what is due */
	STORE_OP_PUT = 1,    /* PUT: set / create / update / compareAndSwap, like etcd's applier */
	STORE_OP_POST = 2,   /* POST: create an in-order key under `key` */
	STORE_OP_DELETE = 3, /* DELETE: delete / compareAndDelete */
};

struct store_cmd {
	enum store_op op;
	int64_t time_ns;   /* leader wall clock when proposed: expiry cutoff and TTL base */
	const char *key;   /* borrowed; etcd cleans it (path.Clean) on apply */
	const char *value; /* borrowed, may be NULL for "" */
	size_t value_len;
	bool has_ttl; /* false: the key becomes permanent (as in etcd, also on update) */
	uint64_t ttl; /* seconds, with has_ttl */
	bool dir, refresh, recursive;
	const char *prev_value; /* NULL or "" = no comparison */
	size_t prev_value_len;
	uint64_t prev_index; /* 0 = no comparison */
	int prev_exist;      /* -1 unset, 0 false, 1 true */
};

/* Append the msgpack encoding of `c` to `out`. Returns 0 or -ENOMEM. */
int store_cmd_encode(const struct store_cmd *c, struct buf *out);
/* Decode into `c` whose strings then point into `data` (not NUL-terminated: use the lengths);
 * key is returned separately as it needs a NUL. For tests and tools. Returns 0 or FLT_EINVAL. */
int store_cmd_decode(const void *data, size_t len, struct store_cmd *c, struct buf *key,
                     struct buf *value, struct buf *prev_value);

/* The outcome of one apply or read. */
struct store_result {
	int err_code;        /* 0, or the etcd errorCode */
	uint64_t etcd_index; /* X-Etcd-Index: the store index after the command / the error index */
	const char *action;  /* "get", "set", "create", "update", "compareAndSwap", "delete",
	                      * "compareAndDelete", "expire"; "sync" for SYNC; NULL for errors */
	bool created;        /* answer 201 (etcd: create, or set with no previous node) */
	struct store_event *ev; /* the event (a reference; NULL for errors, reads and SYNC) */
	struct buf json;        /* the body etcd writes, including its trailing newline */
};
void store_result_free(struct store_result *r);
/* HTTP status etcd answers with: 200/201 for success, errors per etcd's table (404 key not
 * found, 412 compare failed / exists, 403 not a file / dir not empty, 500 raft, else 400). */
int store_result_status(const struct store_result *r);
/* The body without node and prevNode (etcd's noValueOnSuccess for set/create/update/CAS). */
int store_result_json_novalue(const struct store_result *r, struct buf *out);

/* Apply one committed entry: first expire every key whose expiration <= the entry's time (each
 * an "expire" event with its own index, seen by watchers), then the command. Watch callbacks run
 * from inside this call. Returns 0 and *ret (owned by the caller), -ENOMEM, or FLT_EINVAL if the
 * entry does not decode (nothing is changed then). */
int store_apply(struct store *s, uint64_t raft_index, const void *data, size_t len,
                struct store_result **ret);

/* ---- reads ---- */
/* etcd's GET of `key` (cleaned here), rendered with TTLs counted from `now_ns`. Hidden keys
 * (last component starting with '_') are left out of listings; children come sorted by name
 * whether or not `sorted` is asked (etcd's order is random). Counts in the store stats.
 * Returns 0 and *ret (an etcd error is a result) or -ENOMEM. */
int store_get(struct store *s, const char *key, bool recursive, bool sorted, int64_t now_ns,
              struct store_result **ret);

/* The children of directory `key` without rendering JSON (the scheduler reads thousands): fn
 * runs for each one not hidden, in name order, with its last path component and value (NULL for
 * a directory), both borrowed for the call; the store must not change from inside fn. Returns
 * the number of children, or an etcd error code (STORE_EKEYNOTFOUND, STORE_ENOTDIR) negated. */
typedef void (*store_child_fn)(void *ctx, const char *name, const char *value, size_t len,
                               uint64_t modified);
long store_children(struct store *s, const char *key, store_child_fn fn, void *ctx);
/* A cheap fingerprint of directory `key`'s direct children, O(1): returns how many there are
 * (hidden ones included) and sets *ret_changed to the highest modifiedIndex any was created or
 * written with. A create or a write moves *ret_changed, a delete lowers the count, so the pair
 * differs after any change of the children. Same errors as store_children. */
long store_dir_stamp(struct store *s, const char *key, uint64_t *ret_changed);

/* ---- watches ---- */
/* Called for each event the watch sees; `ev` is borrowed for the call. A one-shot watch is
 * already unregistered when its callback runs. The callback may free its own watch (and no
 * other). */
typedef void (*store_watch_fn)(void *ctx, const struct store_event *ev);

/* Watch `key` (cleaned here) for events with index >= since (0: the next one). On success returns
 * 0 with either *ret_w (the watch, owned by the caller) or *ret_err (an etcd error result, e.g.
 * 401 when `since` has left the history). Events already in the history are not delivered until
 * store_watch_catch_up() (so the caller can send its headers first). -ENOMEM on failure. */
int store_watch_new(struct store *s, const char *key, bool recursive, bool stream, uint64_t since,
                    store_watch_fn cb, void *ctx, struct store_watch **ret_w,
                    struct store_result **ret_err);
/* Deliver the matching events of the history (a one-shot watch: the first one, and it is done).
 * Same callback rules as for live events. */
void store_watch_catch_up(struct store_watch *w);
/* The store index when the watch was made (etcd's X-Etcd-Index of a watch). */
uint64_t store_watch_start_index(const struct store_watch *w);
/* Unregister and free. Accepts NULL and watches that already fired or outlived their store. */
void store_watch_free(struct store_watch *w);
/* Watches currently registered. */
unsigned store_watch_count(const struct store *s);

/* An event's JSON as etcd writes it on a watch (with the trailing newline), and its index. */
const char *store_event_json(const struct store_event *ev, size_t *ret_len);
uint64_t store_event_index(const struct store_event *ev);
const char *store_event_action(const struct store_event *ev);
const char *store_event_key(const struct store_event *ev);

/* ---- snapshots ---- */
/* Append the whole tree (with index and TTLs) in msgpack to `out`. Returns 0 or -ENOMEM. */
int store_snapshot_save(const struct store *s, struct buf *out);
/* Replace the tree with a snapshot's. The event history is emptied (etcd keeps it in its
 * snapshots; we do not yet), and a wait for an index at or below the snapshot's gets the 401
 * "history cleared" error instead of waiting for a future event. Registered watches stay. Returns 0, -ENOMEM or FLT_ECORRUPT (the store is then unchanged). */
int store_snapshot_load(struct store *s, const void *data, size_t len);

/* ---- JSON and helpers ---- */
/* etcd's error body {"errorCode":..,"message":..,"cause":..,"index":..} + "\n". */
int store_error_json(int code, const char *cause, uint64_t index, struct buf *out);
/* etcd's message for an error code ("Key not found"); "" if unknown. */
const char *store_error_message(int code);
/* HTTP status for an etcd error code. */
int store_error_status(int code);
/* A new error result (for answers made outside apply, e.g. request validation). */
int store_error_result(int code, const char *cause, uint64_t index, struct store_result **ret);
/* Append `s` (len bytes) as a JSON string the way Go's encoding/json writes it (HTML-safe,
 * \u2028/\u2029 escaped, invalid UTF-8 as \ufffd). */
int store_json_string(struct buf *out, const char *s, size_t len);
/* Go's RFC3339Nano in UTC, unquoted (2026-11-24T20:44:10.883986515Z, trailing zeros of the
 * fraction trimmed, no fraction for whole seconds). */
int store_json_time(struct buf *out, int64_t ns);
/* Go's path.Clean of `p` (made absolute first), appended to `out`. */
int store_path_clean(const char *p, size_t len, struct buf *out);

/* /v2/stats/store (etcd's field names and order), with the watcher count. */
int store_stats_json(const struct store *s, struct buf *out);

#endif
