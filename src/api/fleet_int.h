/* The fleet v1 API's parts, private to src/api: fleet.c (JSON answers, store reads, page tokens,
 * proposals, the discovery document and the routing), fleet_units.c (units) and fleet_machines.c
 * (unit states, machines and their metadata). Names are prefixed fleet_. */
#ifndef FLT_API_FLEET_INT_H
#define FLT_API_FLEET_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "node.h"
#include "util/buf.h"

struct api;
struct web_req;

/* ---- JSON out ---- */

/* `j` as Go's encoding/json writes it: object keys sorted (fleet's generated structs have their
 * fields in alphabetical order), strings HTML-escaped. 0 or -ENOMEM. */
int fleet_put_json(struct buf *b, const json_t *j);
/* Set `key` to the string `v` unless it is empty or NULL: fleet's structs are all omitempty. */
void fleet_set_str(json_t *o, const char *key, const char *v);
/* The string member `key` of `o` (borrowed), NULL when absent or not a string. */
const char *fleet_get_str(const json_t *o, const char *key);
/* Go's %q of a string that is plain text in practice (names, states). */
int fleet_put_quoted(struct buf *b, const char *s);
/* The name Go's encoding/json gives the type of `j` in its errors ("object", "number", ...). */
const char *fleet_json_type_go(const json_t *j);

/* ---- answers: each answers `req` (borrowed) once ---- */

void fleet_send_json(struct web_req *req, int status, const json_t *j);
/* fleet's error entity {"error":{"code":..,"message":..}}. */
void fleet_send_error(struct web_req *req, int status, const char *msg);
void fleet_send_errorf(struct web_req *req, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Empty 201/204 answers: fleet sends no Content-Type with them. */
void fleet_send_empty(struct web_req *req, int status);
/* A 200 with page `page` of `all` (an array) under `field`, as fleet_paginate cuts it. */
void fleet_send_page(struct web_req *req, const char *field, const json_t *all, unsigned page);

/* ---- store reads ---- */

/* The "node" of a local read of `key` (a new reference), NULL in *ret if the key does not exist
 * (or is not what we expect). Returns 0 or -ENOMEM. */
int fleet_read_node(struct api *a, const char *key, bool recursive, json_t **ret);
/* A node's value parsed as a JSON object (new reference), or NULL. */
json_t *fleet_node_object(const json_t *node);
/* The children of directory `dir` as {name: parsed value}; with `nested`, each child is itself a
 * directory and becomes {name: {child name: parsed value}}. A missing directory gives {}. Values
 * that do not parse are left out. 0 with *ret (new reference) or -ENOMEM. */
int fleet_read_dir_map(struct api *a, const char *dir, bool nested, json_t **ret);

/* ---- query and page tokens ---- */

/* The page a request asks for (1 without a token). false (answered 400) on a bad token, with
 * fleet's messages. */
bool fleet_page_from_query(struct web_req *req, unsigned *ret_page);
/* Cut page `page` out of `all` (an array) into `out` under `field`, with nextPageToken when
 * fleet gives one (also when the page ends exactly at the last item, as fleet does). */
void fleet_paginate(json_t *out, const char *field, const json_t *all, unsigned page);

/* A directory fleet_list_begin reads, as fleet_read_dir_map(a, dir, nested, ret) does. */
struct fleet_dir {
	const char *dir;
	bool nested;
	json_t **ret;
};

/* The start of a GET of a collection: the page asked for, then the directories `dirs` (each *ret
 * NULL before). Returns a new empty array for the items (owned), or NULL after answering (400 on
 * a bad page token, 500 when a read fails), every *ret then NULL. */
json_t *fleet_list_begin(struct api *a, struct web_req *req, const struct fleet_dir *dirs, size_t n,
                         unsigned *ret_page);

/* ---- writes ---- */

enum fleet_op_kind {
	FLEET_OP_CREATE,
	FLEET_OP_REPLACE,
	FLEET_OP_SET_STATE,
	FLEET_OP_DELETE,
	FLEET_OP_PATCH
};

/* A write in flight: answered from the proposal's callback. The web request stays valid until
 * answered even if its client left (web.h), so the callback always answers it. */
struct fleet_op {
	struct api *a;
	struct web_req *req;
	enum fleet_op_kind kind;
	json_t *ops;      /* PATCH: the validated operations */
	unsigned pending; /* PATCH: proposals not yet applied */
	unsigned retries; /* PATCH: rounds redone after a lost compare-and-swap */
	bool lost;        /* PATCH: a compare-and-swap of this round failed */
	int err;          /* PATCH: first failure of this round */
};

/* Frees `f` (heap) and its ops; accepts NULL. */
void fleet_op_free(struct fleet_op *f);
/* Propose a PUT (value != NULL) or DELETE of `key`; `cb` gets `ctx` when it is applied.
 * FLT_ETOOBIG for a value over STORE_MAX_VALUE, else what node_propose returns. */
int fleet_propose(struct api *a, const char *key, const struct buf *value, int prev_exist,
                  uint64_t prev_index, node_done_fn cb, void *ctx);

/* ---- the resources: each answers `req` ---- */

/* fleet_units.c: GET /units, GET, PUT and DELETE /units/<name> (`name` checked by the router). */
void fleet_units_list(struct api *a, struct web_req *req);
void fleet_units_get(struct api *a, struct web_req *req, const char *name);
void fleet_units_put(struct api *a, struct web_req *req, const char *item);
void fleet_units_delete(struct api *a, struct web_req *req, const char *name);

/* fleet_machines.c: /state (item NULL) and /state/<name>, GET and PATCH /machines. */
void fleet_state_handle(struct api *a, struct web_req *req, const char *item);
void fleet_machines_list(struct api *a, struct web_req *req);
void fleet_machines_patch(struct api *a, struct web_req *req);

#endif
