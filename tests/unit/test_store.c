/* Unit tests of the store: every etcd v2 action and error path with the exact JSON etcd writes
 * (fixtures/etcd-v2 shapes), TTL expiry at the entry's time, in-order keys, hidden keys, the watch
 * hub and its history, snapshots, command decoding of garbage, and Go-compatible JSON; directories
 * with thousands of children checked against a model. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "store/store.h"
#include "util/err.h"

#define SEC 1000000000LL
#define T0  (1795552245LL * SEC) /* 2026-11-24T20:30:45Z */

static int64_t now = T0;

struct cmdargs {
	enum store_op op;
	const char *key, *value;
	long ttl; /* seconds, 0: none */
	bool dir, refresh, recursive;
	const char *prev_value;
	uint64_t prev_index;
	int pe; /* prevExist: 0 unset, 1 false, 2 true */
};

static struct store_result *run(struct store *s, struct cmdargs a)
{
	struct store_cmd c = {0};
	struct buf enc = BUF_INIT;
	struct store_result *res = NULL;

	c.op = a.op;
	c.time_ns = now;
	c.key = a.key;
	c.value = a.value;
	c.value_len = a.value ? strlen(a.value) : 0;
	c.has_ttl = a.ttl > 0;
	c.ttl = a.ttl > 0 ? (uint64_t)a.ttl : 0;
	c.dir = a.dir;
	c.refresh = a.refresh;
	c.recursive = a.recursive;
	c.prev_value = a.prev_value;
	c.prev_value_len = a.prev_value ? strlen(a.prev_value) : 0;
	c.prev_index = a.prev_index;
	c.prev_exist = a.pe - 1;
	assert_int_equal(store_cmd_encode(&c, &enc), 0);
	assert_int_equal(store_apply(s, 1, enc.data, enc.len, &res), 0);
	buf_release(&enc);
	assert_non_null(res);
	return res;
}

#define PUT(s, ...)  run(s, (struct cmdargs){.op = STORE_OP_PUT, __VA_ARGS__})
#define POST(s, ...) run(s, (struct cmdargs){.op = STORE_OP_POST, __VA_ARGS__})
#define DEL(s, ...)  run(s, (struct cmdargs){.op = STORE_OP_DELETE, __VA_ARGS__})
#define SYNC(s)      run(s, (struct cmdargs){.op = STORE_OP_SYNC})

/* Apply and compare the body; frees the result. */
static void expect(struct store_result *r, int status, const char *json)
{
	assert_int_equal(store_result_status(r), status);
	assert_string_equal(r->json.data, json);
	store_result_free(r);
}

static void expect_get(struct store *s, const char *key, bool rec, int status, const char *json)
{
	struct store_result *r;

	assert_int_equal(store_get(s, key, rec, true, now, &r), 0);
	expect(r, status, json);
}

static int setup(void **st)
{
	struct store *s;

	now = T0;
	assert_int_equal(store_new(&s), 0);
	*st = s;
	return 0;
}

static int teardown(void **st)
{
	store_free(*st);
	return 0;
}

/* ---------------------------------------------------------------- basic actions */

static void test_set_get_delete(void **st)
{
	struct store *s = *st;

	expect_get(s, "/", false, 200, "{\"action\":\"get\",\"node\":{\"dir\":true}}\n");
	expect(PUT(s, .key = "/message", .value = "Hello"), 201,
	       "{\"action\":\"set\",\"node\":{\"key\":\"/message\",\"value\":\"Hello\","
	       "\"modifiedIndex\":1,\"createdIndex\":1}}\n");
	expect(PUT(s, .key = "message", .value = "World"), 200,
	       "{\"action\":\"set\",\"node\":{\"key\":\"/message\",\"value\":\"World\","
	       "\"modifiedIndex\":2,\"createdIndex\":2},\"prevNode\":{\"key\":\"/message\","
	       "\"value\":\"Hello\",\"modifiedIndex\":1,\"createdIndex\":1}}\n");
	expect_get(s, "/message/", false, 200,
	           "{\"action\":\"get\",\"node\":{\"key\":\"/message\",\"value\":\"World\","
	           "\"modifiedIndex\":2,\"createdIndex\":2}}\n");
	expect(DEL(s, .key = "/message"), 200,
	       "{\"action\":\"delete\",\"node\":{\"key\":\"/message\",\"modifiedIndex\":3,"
	       "\"createdIndex\":2},\"prevNode\":{\"key\":\"/message\",\"value\":\"World\","
	       "\"modifiedIndex\":2,\"createdIndex\":2}}\n");
	assert_int_equal(store_index(s), 3);
	expect_get(s, "/message", false, 404,
	           "{\"errorCode\":100,\"message\":\"Key not found\",\"cause\":\"/message\","
	           "\"index\":3}\n");
	expect(DEL(s, .key = "/message"), 404,
	       "{\"errorCode\":100,\"message\":\"Key not found\",\"cause\":\"/message\","
	       "\"index\":3}\n");
	/* the cause names the first missing component */
	expect_get(
	    s, "/a/b/c", false, 404,
	    "{\"errorCode\":100,\"message\":\"Key not found\",\"cause\":\"/a\",\"index\":3}\n");
	assert_int_equal(store_index(s), 3);
}

static void test_root_readonly(void **st)
{
	struct store *s = *st;
	static const char ro[] =
	    "{\"errorCode\":107,\"message\":\"Root is read only\",\"cause\":\"/\",\"index\":0}\n";

	expect(PUT(s, .key = "/", .value = "x"), 400, ro);
	expect(DEL(s, .key = "/", .recursive = true), 400, ro);
	expect(DEL(s, .key = "/", .dir = true), 400, ro);
	expect(PUT(s, .key = "/", .value = "x", .pe = 2), 400, ro);
	expect(PUT(s, .key = "/..", .value = "x"), 400, ro);
}

static void test_prev_exist(void **st)
{
	struct store *s = *st;

	expect(PUT(s, .key = "/newkey", .value = "one", .pe = 1), 201,
	       "{\"action\":\"create\",\"node\":{\"key\":\"/newkey\",\"value\":\"one\","
	       "\"modifiedIndex\":1,\"createdIndex\":1}}\n");
	expect(PUT(s, .key = "/newkey", .value = "two", .pe = 1), 412,
	       "{\"errorCode\":105,\"message\":\"Key already exists\",\"cause\":\"/newkey\","
	       "\"index\":1}\n");
	expect(PUT(s, .key = "/newkey", .value = "three", .pe = 2), 200,
	       "{\"action\":\"update\",\"node\":{\"key\":\"/newkey\",\"value\":\"three\","
	       "\"modifiedIndex\":2,\"createdIndex\":1},\"prevNode\":{\"key\":\"/newkey\","
	       "\"value\":\"one\",\"modifiedIndex\":1,\"createdIndex\":1}}\n");
	expect(PUT(s, .key = "/nokey", .value = "x", .pe = 2), 404,
	       "{\"errorCode\":100,\"message\":\"Key not found\",\"cause\":\"/nokey\","
	       "\"index\":2}\n");
}

static void test_cas_cad(void **st)
{
	struct store *s = *st;

	store_result_free(PUT(s, .key = "/k", .value = "three"));
	expect(PUT(s, .key = "/k", .value = "four", .prev_value = "three"), 200,
	       "{\"action\":\"compareAndSwap\",\"node\":{\"key\":\"/k\",\"value\":\"four\","
	       "\"modifiedIndex\":2,\"createdIndex\":1},\"prevNode\":{\"key\":\"/k\","
	       "\"value\":\"three\",\"modifiedIndex\":1,\"createdIndex\":1}}\n");
	expect(PUT(s, .key = "/k", .value = "five", .prev_value = "nope"), 412,
	       "{\"errorCode\":101,\"message\":\"Compare failed\",\"cause\":\"[nope != four]\","
	       "\"index\":2}\n");
	expect(PUT(s, .key = "/k", .value = "five", .prev_index = 1), 412,
	       "{\"errorCode\":101,\"message\":\"Compare failed\",\"cause\":\"[1 != 2]\","
	       "\"index\":2}\n");
	expect(PUT(s, .key = "/k", .value = "five", .prev_index = 1, .prev_value = "nope"), 412,
	       "{\"errorCode\":101,\"message\":\"Compare failed\","
	       "\"cause\":\"[nope != four] [1 != 2]\",\"index\":2}\n");
	expect(PUT(s, .key = "/nokey", .value = "five", .prev_value = "x"), 404,
	       "{\"errorCode\":100,\"message\":\"Key not found\",\"cause\":\"/nokey\","
	       "\"index\":2}\n");
	expect(PUT(s, .key = "/k", .value = "six", .prev_index = 2, .pe = 2), 200,
	       "{\"action\":\"compareAndSwap\",\"node\":{\"key\":\"/k\",\"value\":\"six\","
	       "\"modifiedIndex\":3,\"createdIndex\":1},\"prevNode\":{\"key\":\"/k\","
	       "\"value\":\"four\",\"modifiedIndex\":2,\"createdIndex\":1}}\n");
	expect(DEL(s, .key = "/k", .prev_value = "nope"), 412,
	       "{\"errorCode\":101,\"message\":\"Compare failed\",\"cause\":\"[nope != six]\","
	       "\"index\":3}\n");
	expect(DEL(s, .key = "/k", .prev_index = 3), 200,
	       "{\"action\":\"compareAndDelete\",\"node\":{\"key\":\"/k\",\"modifiedIndex\":4,"
	       "\"createdIndex\":1},\"prevNode\":{\"key\":\"/k\",\"value\":\"six\","
	       "\"modifiedIndex\":3,\"createdIndex\":1}}\n");
	store_result_free(PUT(s, .key = "/d", .dir = true));
	expect(PUT(s, .key = "/d", .value = "x", .prev_value = "y"), 403,
	       "{\"errorCode\":102,\"message\":\"Not a file\",\"cause\":\"/d\",\"index\":5}\n");
	expect(DEL(s, .key = "/d", .prev_value = "y"), 403,
	       "{\"errorCode\":102,\"message\":\"Not a file\",\"cause\":\"/d\",\"index\":5}\n");
}

static void test_dirs(void **st)
{
	struct store *s = *st;

	expect(PUT(s, .key = "/dir", .dir = true), 201,
	       "{\"action\":\"set\",\"node\":{\"key\":\"/dir\",\"dir\":true,\"modifiedIndex\":1,"
	       "\"createdIndex\":1}}\n");
	expect(PUT(s, .key = "/dir", .dir = true), 403,
	       "{\"errorCode\":102,\"message\":\"Not a file\",\"cause\":\"/dir\",\"index\":1}\n");
	store_result_free(PUT(s, .key = "/dir/b", .value = "2"));
	store_result_free(PUT(s, .key = "/dir/a", .value = "1"));
	expect(PUT(s, .key = "/dir/sub/c", .value = "3"), 201,
	       "{\"action\":\"set\",\"node\":{\"key\":\"/dir/sub/c\",\"value\":\"3\","
	       "\"modifiedIndex\":4,\"createdIndex\":4}}\n");
	expect_get(s, "/dir", false, 200,
	           "{\"action\":\"get\",\"node\":{\"key\":\"/dir\",\"dir\":true,\"nodes\":["
	           "{\"key\":\"/dir/a\",\"value\":\"1\",\"modifiedIndex\":3,\"createdIndex\":3},"
	           "{\"key\":\"/dir/b\",\"value\":\"2\",\"modifiedIndex\":2,\"createdIndex\":2},"
	           "{\"key\":\"/dir/sub\",\"dir\":true,\"modifiedIndex\":4,\"createdIndex\":4}],"
	           "\"modifiedIndex\":1,\"createdIndex\":1}}\n");
	expect_get(s, "/dir", true, 200,
	           "{\"action\":\"get\",\"node\":{\"key\":\"/dir\",\"dir\":true,\"nodes\":["
	           "{\"key\":\"/dir/a\",\"value\":\"1\",\"modifiedIndex\":3,\"createdIndex\":3},"
	           "{\"key\":\"/dir/b\",\"value\":\"2\",\"modifiedIndex\":2,\"createdIndex\":2},"
	           "{\"key\":\"/dir/sub\",\"dir\":true,\"nodes\":[{\"key\":\"/dir/sub/c\","
	           "\"value\":\"3\",\"modifiedIndex\":4,\"createdIndex\":4}],\"modifiedIndex\":4,"
	           "\"createdIndex\":4}],\"modifiedIndex\":1,\"createdIndex\":1}}\n");
	expect(PUT(s, .key = "/dir", .value = "x"), 403,
	       "{\"errorCode\":102,\"message\":\"Not a file\",\"cause\":\"/dir\",\"index\":4}\n");
	expect(PUT(s, .key = "/dir/a/x", .value = "x"), 400,
	       "{\"errorCode\":104,\"message\":\"Not a directory\",\"cause\":\"/dir/a\","
	       "\"index\":4}\n");
	expect(POST(s, .key = "/dir/a", .value = "x"), 400,
	       "{\"errorCode\":104,\"message\":\"Not a directory\",\"cause\":\"/dir/a\","
	       "\"index\":4}\n");
	expect_get(s, "/dir/a/x", false, 400,
	           "{\"errorCode\":104,\"message\":\"Not a directory\",\"cause\":\"/dir/a\","
	           "\"index\":4}\n");
	expect(DEL(s, .key = "/dir"), 403,
	       "{\"errorCode\":102,\"message\":\"Not a file\",\"cause\":\"/dir\",\"index\":4}\n");
	expect(DEL(s, .key = "/dir", .dir = true), 403,
	       "{\"errorCode\":108,\"message\":\"Directory not empty\",\"cause\":\"/dir\","
	       "\"index\":4}\n");
	expect(DEL(s, .key = "/dir/a", .dir = true), 200,
	       "{\"action\":\"delete\",\"node\":{\"key\":\"/dir/a\",\"modifiedIndex\":5,"
	       "\"createdIndex\":3},\"prevNode\":{\"key\":\"/dir/a\",\"value\":\"1\","
	       "\"modifiedIndex\":3,\"createdIndex\":3}}\n");
	expect(DEL(s, .key = "/dir", .recursive = true), 200,
	       "{\"action\":\"delete\",\"node\":{\"key\":\"/dir\",\"dir\":true,\"modifiedIndex\":6,"
	       "\"createdIndex\":1},\"prevNode\":{\"key\":\"/dir\",\"dir\":true,"
	       "\"modifiedIndex\":1,\"createdIndex\":1}}\n");
	expect_get(s, "/", true, 200, "{\"action\":\"get\",\"node\":{\"dir\":true}}\n");
	store_result_free(PUT(s, .key = "/e", .dir = true));
	expect(DEL(s, .key = "/e", .dir = true), 200,
	       "{\"action\":\"delete\",\"node\":{\"key\":\"/e\",\"dir\":true,\"modifiedIndex\":8,"
	       "\"createdIndex\":7},\"prevNode\":{\"key\":\"/e\",\"dir\":true,"
	       "\"modifiedIndex\":7,\"createdIndex\":7}}\n");
	/* set dir over a file replaces it */
	store_result_free(PUT(s, .key = "/f", .value = "v"));
	expect(PUT(s, .key = "/f", .dir = true), 200,
	       "{\"action\":\"set\",\"node\":{\"key\":\"/f\",\"dir\":true,\"modifiedIndex\":10,"
	       "\"createdIndex\":10},\"prevNode\":{\"key\":\"/f\",\"value\":\"v\","
	       "\"modifiedIndex\":9,\"createdIndex\":9}}\n");
}

static void test_inorder_hidden(void **st)
{
	struct store *s = *st;

	expect(POST(s, .key = "/queue", .value = "Job1"), 201,
	       "{\"action\":\"create\",\"node\":{\"key\":\"/queue/00000000000000000001\","
	       "\"value\":\"Job1\",\"modifiedIndex\":1,\"createdIndex\":1}}\n");
	expect(POST(s, .key = "/queue", .value = "Job2"), 201,
	       "{\"action\":\"create\",\"node\":{\"key\":\"/queue/00000000000000000002\","
	       "\"value\":\"Job2\",\"modifiedIndex\":2,\"createdIndex\":2}}\n");
	expect(PUT(s, .key = "/_hidden", .value = "secret"), 201,
	       "{\"action\":\"set\",\"node\":{\"key\":\"/_hidden\",\"value\":\"secret\","
	       "\"modifiedIndex\":3,\"createdIndex\":3}}\n");
	store_result_free(PUT(s, .key = "/queue/_h", .value = "x"));
	expect_get(s, "/_hidden", false, 200,
	           "{\"action\":\"get\",\"node\":{\"key\":\"/_hidden\",\"value\":\"secret\","
	           "\"modifiedIndex\":3,\"createdIndex\":3}}\n");
	expect_get(s, "/", true, 200,
	           "{\"action\":\"get\",\"node\":{\"dir\":true,\"nodes\":[{\"key\":\"/queue\","
	           "\"dir\":true,\"nodes\":[{\"key\":\"/queue/00000000000000000001\","
	           "\"value\":\"Job1\",\"modifiedIndex\":1,\"createdIndex\":1},"
	           "{\"key\":\"/queue/00000000000000000002\",\"value\":\"Job2\","
	           "\"modifiedIndex\":2,\"createdIndex\":2}],\"modifiedIndex\":1,"
	           "\"createdIndex\":1}]}}\n");
}

/* ---------------------------------------------------------------- TTL */

static void test_ttl(void **st)
{
	struct store *s = *st;

	now = T0 + 883986515; /* 20:30:45.883986515 */
	assert_int_equal(store_next_expiry(s), INT64_MAX);
	expect(PUT(s, .key = "/foo", .value = "bar", .ttl = 5), 201,
	       "{\"action\":\"set\",\"node\":{\"key\":\"/foo\",\"value\":\"bar\","
	       "\"expiration\":\"2026-11-24T20:30:50.883986515Z\",\"ttl\":5,\"modifiedIndex\":1,"
	       "\"createdIndex\":1}}\n");
	assert_int_equal(store_next_expiry(s), now + 5 * SEC);
	now += SEC + 1;
	expect_get(s, "/foo", false, 200,
	           "{\"action\":\"get\",\"node\":{\"key\":\"/foo\",\"value\":\"bar\","
	           "\"expiration\":\"2026-11-24T20:30:50.883986515Z\",\"ttl\":4,"
	           "\"modifiedIndex\":1,\"createdIndex\":1}}\n");
	/* refresh keeps the value and, through update, the createdIndex */
	expect(PUT(s, .key = "/foo", .ttl = 7, .refresh = true, .pe = 2), 200,
	       "{\"action\":\"update\",\"node\":{\"key\":\"/foo\",\"value\":\"bar\","
	       "\"expiration\":\"2026-11-24T20:30:53.883986516Z\",\"ttl\":7,\"modifiedIndex\":2,"
	       "\"createdIndex\":1},\"prevNode\":{\"key\":\"/foo\",\"value\":\"bar\","
	       "\"expiration\":\"2026-11-24T20:30:50.883986515Z\",\"ttl\":4,"
	       "\"modifiedIndex\":1,\"createdIndex\":1}}\n");
	expect(PUT(s, .key = "/nokey", .ttl = 7, .refresh = true), 404,
	       "{\"errorCode\":100,\"message\":\"Key not found\",\"cause\":\"/nokey\","
	       "\"index\":2}\n");
	/* no ttl on update: permanent again */
	expect(PUT(s, .key = "/foo", .value = "bar", .pe = 2), 200,
	       "{\"action\":\"update\",\"node\":{\"key\":\"/foo\",\"value\":\"bar\","
	       "\"modifiedIndex\":3,\"createdIndex\":1},\"prevNode\":{\"key\":\"/foo\","
	       "\"value\":\"bar\",\"expiration\":\"2026-11-24T20:30:53.883986516Z\",\"ttl\":7,"
	       "\"modifiedIndex\":2,\"createdIndex\":1}}\n");
	assert_int_equal(store_next_expiry(s), INT64_MAX);

	/* expiry happens at the first entry whose time reaches it, before its command */
	now = T0;
	store_result_free(PUT(s, .key = "/short", .value = "v", .ttl = 1));
	now = T0 + SEC - 1;
	store_result_free(SYNC(s));
	assert_int_equal(store_index(s), 4);
	now = T0 + SEC;
	expect(PUT(s, .key = "/other", .value = "x"), 201,
	       "{\"action\":\"set\",\"node\":{\"key\":\"/other\",\"value\":\"x\","
	       "\"modifiedIndex\":6,\"createdIndex\":6}}\n");
	expect_get(s, "/short", false, 404,
	           "{\"errorCode\":100,\"message\":\"Key not found\",\"cause\":\"/short\","
	           "\"index\":6}\n");

	/* a dir with a TTL takes its children along; an update keeps its modifiedIndex (etcd) */
	store_result_free(PUT(s, .key = "/tdir", .dir = true, .ttl = 30));
	expect(PUT(s, .key = "/tdir", .dir = true, .ttl = 60, .pe = 2), 200,
	       "{\"action\":\"update\",\"node\":{\"key\":\"/tdir\",\"dir\":true,"
	       "\"expiration\":\"2026-11-24T20:31:46Z\",\"ttl\":60,\"modifiedIndex\":8,"
	       "\"createdIndex\":7},\"prevNode\":{\"key\":\"/tdir\",\"dir\":true,"
	       "\"expiration\":\"2026-11-24T20:31:16Z\",\"ttl\":30,\"modifiedIndex\":7,"
	       "\"createdIndex\":7}}\n");
	store_result_free(PUT(s, .key = "/tdir/x", .value = "1", .ttl = 100));
	expect_get(s, "/tdir", false, 200,
	           "{\"action\":\"get\",\"node\":{\"key\":\"/tdir\",\"dir\":true,\"expiration\":"
	           "\"2026-11-24T20:31:46Z\",\"ttl\":60,\"nodes\":[{\"key\":\"/tdir/x\",\"value\":"
	           "\"1\",\"expiration\":\"2026-11-24T20:32:26Z\",\"ttl\":100,\"modifiedIndex\":9,"
	           "\"createdIndex\":9}],\"modifiedIndex\":7,\"createdIndex\":7}}\n");
	now = T0 + 61 * SEC + SEC / 2;
	store_result_free(SYNC(s));
	assert_int_equal(store_index(s), 10);
	expect_get(s, "/tdir/x", false, 404,
	           "{\"errorCode\":100,\"message\":\"Key not found\",\"cause\":\"/tdir\","
	           "\"index\":10}\n");
	assert_int_equal(store_next_expiry(s), INT64_MAX);
}

/* ---------------------------------------------------------------- watches */

struct seen {
	int n;
	char json[8][512];
	struct store_watch *self; /* freed from the callback when set */
};

static void on_event(void *ctx, const struct store_event *ev)
{
	struct seen *sn = ctx;
	size_t len;
	const char *j = store_event_json(ev, &len);

	if (sn->n < 8) {
		assert_true(len < sizeof(sn->json[0]));
		memcpy(sn->json[sn->n], j, len);
		sn->json[sn->n][len] = '\0';
	}
	sn->n++;
	if (sn->self) {
		store_watch_free(sn->self);
		sn->self = NULL;
	}
}

static struct store_watch *watch(struct store *s, const char *key, bool rec, bool stream,
                                 uint64_t since, struct seen *sn)
{
	struct store_watch *w = NULL;
	struct store_result *err = NULL;

	assert_int_equal(store_watch_new(s, key, rec, stream, since, on_event, sn, &w, &err), 0);
	assert_null(err);
	assert_non_null(w);
	return w;
}

static void test_watch_basic(void **st)
{
	struct store *s = *st;
	struct seen a = {0}, b = {0}, c = {0}, d = {0};
	struct store_watch *wa, *wb, *wc, *wd;

	store_result_free(PUT(s, .key = "/w", .value = "one"));
	wa = watch(s, "/w", false, false, 0, &a);
	wb = watch(s, "/wd", true, false, 0, &b);
	wc = watch(s, "/", true, true, 0, &c);
	wd = watch(s, "/wd", false, false, 0, &d);
	assert_int_equal(store_watch_start_index(wa), 1);
	assert_int_equal(store_watch_count(s), 4);
	store_watch_catch_up(wa);
	assert_int_equal(a.n, 0);
	store_result_free(PUT(s, .key = "/w", .value = "two"));
	assert_int_equal(a.n, 1);
	assert_string_equal(a.json[0],
	                    "{\"action\":\"set\",\"node\":{\"key\":\"/w\",\"value\":\"two\","
	                    "\"modifiedIndex\":2,\"createdIndex\":2},\"prevNode\":{\"key\":\"/w\","
	                    "\"value\":\"one\",\"modifiedIndex\":1,\"createdIndex\":1}}\n");
	store_result_free(PUT(s, .key = "/w", .value = "three"));
	assert_int_equal(a.n, 1); /* one-shot */
	store_result_free(PUT(s, .key = "/wd/x", .value = "two"));
	assert_int_equal(b.n, 1);
	assert_int_equal(d.n, 0); /* not recursive */
	assert_string_equal(b.json[0],
	                    "{\"action\":\"set\",\"node\":{\"key\":\"/wd/x\",\"value\":\"two\","
	                    "\"modifiedIndex\":4,\"createdIndex\":4}}\n");
	/* hidden keys below a recursive watch are not reported */
	store_result_free(PUT(s, .key = "/_h", .value = "x"));
	store_result_free(PUT(s, .key = "/wd/_h/y", .value = "x"));
	assert_int_equal(c.n, 3);
	assert_int_equal(store_watch_count(s), 2); /* the stream and /wd */
	store_watch_free(wa);
	store_watch_free(wb);
	store_watch_free(wc);
	store_watch_free(wd);
	assert_int_equal(store_watch_count(s), 0);
}

static void test_watch_dir_delete_and_expire(void **st)
{
	struct store *s = *st;
	struct seen a = {0}, b = {0};
	struct store_watch *wa, *wb;

	store_result_free(PUT(s, .key = "/d/sub/k", .value = "v"));
	wa = watch(s, "/d/sub/k", false, false, 0, &a);
	store_result_free(DEL(s, .key = "/d", .recursive = true));
	assert_int_equal(a.n, 1);
	assert_string_equal(a.json[0],
	                    "{\"action\":\"delete\",\"node\":{\"key\":\"/d\",\"dir\":true,"
	                    "\"modifiedIndex\":2,\"createdIndex\":1},\"prevNode\":{\"key\":\"/d\","
	                    "\"dir\":true,\"modifiedIndex\":1,\"createdIndex\":1}}\n");
	store_watch_free(wa);

	store_result_free(PUT(s, .key = "/exp", .value = "x", .ttl = 1));
	wb = watch(s, "/exp", false, false, 0, &b);
	b.self = wb; /* the callback frees its own watch */
	now += SEC;
	store_result_free(SYNC(s));
	assert_int_equal(b.n, 1);
	assert_string_equal(b.json[0],
	                    "{\"action\":\"expire\",\"node\":{\"key\":\"/exp\",\"modifiedIndex\":4,"
	                    "\"createdIndex\":3},\"prevNode\":{\"key\":\"/exp\",\"value\":\"x\","
	                    "\"expiration\":\"2026-11-24T20:30:46Z\",\"modifiedIndex\":3,"
	                    "\"createdIndex\":3}}\n");
	assert_int_equal(store_watch_count(s), 0);
}

static void test_watch_history(void **st)
{
	struct store *s = *st;
	struct seen a = {0}, b = {0}, c = {0};
	struct store_watch *w;
	struct store_result *err = NULL;

	store_result_free(PUT(s, .key = "/w", .value = "one"));            /* 1 */
	store_result_free(PUT(s, .key = "/x", .value = "1"));              /* 2 */
	store_result_free(PUT(s, .key = "/w", .value = "two"));            /* 3 */
	store_result_free(PUT(s, .key = "/w", .ttl = 9, .refresh = true)); /* 4, refresh */
	w = watch(s, "/w", false, false, 1, &a);
	store_watch_catch_up(w);
	assert_int_equal(a.n, 1);
	assert_non_null(strstr(a.json[0], "\"value\":\"one\""));
	store_watch_free(w);
	w = watch(s, "/w", false, false, 2, &b);
	store_watch_catch_up(w);
	assert_int_equal(b.n, 1);
	assert_non_null(strstr(b.json[0], "\"value\":\"two\""));
	store_watch_free(w);
	/* streams replay every match; the refresh event is never delivered */
	w = watch(s, "/", true, true, 1, &c);
	store_watch_catch_up(w);
	assert_int_equal(c.n, 3);
	store_watch_free(w);

	for (int i = 0; i < 1100; i++)
		store_result_free(PUT(s, .key = "/churn", .value = "v"));
	assert_int_equal(store_index(s), 1104);
	assert_int_equal(store_watch_new(s, "/w", false, false, 2, on_event, NULL, &w, &err), 0);
	assert_non_null(err);
	assert_int_equal(store_result_status(err), 400);
	assert_string_equal(err->json.data,
	                    "{\"errorCode\":401,\"message\":\"The event in requested index is "
	                    "outdated and cleared\",\"cause\":\"the requested history has been "
	                    "cleared [105/2]\",\"index\":1104}\n");
	store_result_free(err);
}

/* ---------------------------------------------------------------- snapshots and codecs */

/* Save `s`, load the snapshot into a new store (returned; the bytes in *snap): it must save to
 * the same bytes (children go in the order they sit in, which loading keeps; a listing may
 * reorder them, so this comes first) and at `now` list the same. */
static struct store *snapshot_copy(struct store *s, struct buf *snap)
{
	struct buf snap2 = BUF_INIT;
	struct store_result *r1, *r2;
	struct store *s2;

	assert_int_equal(store_snapshot_save(s, snap), 0);
	assert_int_equal(store_new(&s2), 0);
	assert_int_equal(store_snapshot_load(s2, snap->data, snap->len), 0);
	assert_int_equal(store_snapshot_save(s2, &snap2), 0);
	assert_int_equal(snap->len, snap2.len);
	assert_memory_equal(snap->data, snap2.data, snap->len);
	buf_release(&snap2);
	assert_int_equal(store_get(s, "/", true, true, now, &r1), 0);
	assert_int_equal(store_get(s2, "/", true, true, now, &r2), 0);
	assert_string_equal(r1->json.data, r2->json.data);
	store_result_free(r1);
	store_result_free(r2);
	return s2;
}

static void test_snapshot(void **st)
{
	struct store *s = *st, *s2;
	struct buf snap = BUF_INIT;
	struct store_result *r2;
	static const char *const garbage[] = {"", "\x90", "\xc1",
	                                      "\x94\xa3"
	                                      "abc\x01\x01\x90",
	                                      "not msgpack at all"};

	store_result_free(PUT(s, .key = "/a/b/c", .value = "1"));
	store_result_free(PUT(s, .key = "/a/_h", .value = "<&>"));
	store_result_free(PUT(s, .key = "/t", .value = "x", .ttl = 10));
	store_result_free(PUT(s, .key = "/e", .dir = true, .ttl = 20));
	store_result_free(POST(s, .key = "/q", .value = "j"));
	s2 = snapshot_copy(s, &snap);
	assert_int_equal(store_index(s2), store_index(s));
	assert_int_equal(store_next_expiry(s2), store_next_expiry(s));

	/* garbage and truncations fail cleanly and leave the store as it was */
	for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++)
		assert_true(store_snapshot_load(s2, garbage[i], strlen(garbage[i])) < 0);
	for (size_t n = 0; n < snap.len; n++)
		assert_true(store_snapshot_load(s2, snap.data, n) < 0);
	for (size_t i = 0; i < snap.len; i++) {
		char *mut = malloc(snap.len);

		memcpy(mut, snap.data, snap.len);
		mut[i] ^= 0x5a;
		(void)store_snapshot_load(s2, mut, snap.len); /* may or may not parse; no crash */
		free(mut);
	}
	store_free(s2);
	assert_int_equal(store_new(&s2), 0);
	assert_int_equal(store_snapshot_load(s2, snap.data, snap.len), 0);
	assert_int_equal(store_get(s2, "/a/_h", false, true, now, &r2), 0);
	assert_string_equal(r2->json.data,
	                    "{\"action\":\"get\",\"node\":{\"key\":\"/a/_h\",\"value\":"
	                    "\"\\u003c\\u0026\\u003e\",\"modifiedIndex\":2,\"createdIndex\":2}}\n");
	store_result_free(r2);
	/* The history did not come along: a wait for an index the snapshot covers is refused with
	 * 401 rather than left waiting for a future event; the next index is still a fine wait. */
	{
		struct store_watch *w = NULL;
		struct store_result *err = NULL;

		assert_int_equal(store_watch_new(s2, "/a/b/c", false, false, 1, on_event, NULL, &w,
		                                 &err),
		                 0);
		assert_non_null(err);
		assert_null(w);
		assert_int_equal(err->err_code, STORE_EEVENTINDEXCLEARED);
		store_result_free(err);
		err = NULL;
		assert_int_equal(store_watch_new(s2, "/a/b/c", false, false, store_index(s2) + 1,
		                                 on_event, NULL, &w, &err),
		                 0);
		assert_null(err);
		assert_non_null(w);
		store_watch_free(w);
	}
	/* TTLs survive: the loaded store expires at the same entry */
	now += 10 * SEC;
	store_result_free(SYNC(s2));
	assert_int_equal(store_index(s2), store_index(s) + 1);
	store_free(s2);
	buf_release(&snap);
}

static void test_cmd_garbage(void **st)
{
	struct store *s = *st;
	struct store_result *res = NULL;
	struct store_cmd c = {.op = STORE_OP_PUT,
	                      .key = "/k",
	                      .value = "v",
	                      .value_len = 1,
	                      .prev_exist = -1,
	                      .time_ns = T0};
	struct buf enc = BUF_INIT, k = BUF_INIT, v = BUF_INIT, pv = BUF_INIT;
	struct store_cmd d;

	assert_int_equal(store_cmd_encode(&c, &enc), 0);
	assert_int_equal(store_cmd_decode(enc.data, enc.len, &d, &k, &v, &pv), 0);
	assert_int_equal(d.op, STORE_OP_PUT);
	assert_string_equal(d.key, "/k");
	assert_int_equal(d.time_ns, T0);
	assert_int_equal(d.prev_exist, -1);
	assert_null(d.prev_value);
	for (size_t n = 0; n < enc.len; n++)
		assert_int_equal(store_apply(s, 1, enc.data, n, &res), FLT_EINVAL);
	for (size_t i = 0; i < enc.len; i++) {
		char *mut = malloc(enc.len);

		memcpy(mut, enc.data, enc.len);
		mut[i] ^= 0xff;
		if (store_apply(s, 1, mut, enc.len, &res) == 0)
			store_result_free(res);
		free(mut);
	}
	assert_int_equal(store_apply(s, 1, "\xc1", 1, &res), FLT_EINVAL);
	buf_release(&enc);
	buf_release(&k);
	buf_release(&v);
	buf_release(&pv);
}

/* ---------------------------------------------------------------- many children */

/* A directory keeps its children hashed and sorts them only when they are listed: these check
 * every way they come out (store_children, JSON listings, snapshots, lookups) against a model,
 * across the size where the hash index is built and dropped. */

/* A fixed-seed LCG: the same "random" order on every run. */
static uint32_t lcg(uint32_t *seed)
{
	*seed = *seed * 1103515245u + 12345u;
	return *seed >> 8;
}

struct names {
	size_t n, cap;
	char **v;
};

static void names_free(struct names *nm)
{
	for (size_t i = 0; i < nm->n; i++)
		free(nm->v[i]);
	free(nm->v);
	memset(nm, 0, sizeof(*nm));
}

static void collect(void *ctx, const char *name, const char *value, size_t len, uint64_t modified)
{
	struct names *nm = ctx;

	(void)modified;
	/* every child here has its own name as value */
	assert_non_null(value);
	assert_int_equal(len, strlen(name));
	assert_memory_equal(value, name, len);
	if (nm->n == nm->cap) {
		nm->cap = nm->cap ? 2 * nm->cap : 64;
		nm->v = realloc(nm->v, nm->cap * sizeof(*nm->v));
		assert_non_null(nm->v);
	}
	nm->v[nm->n] = strdup(name);
	assert_non_null(nm->v[nm->n]);
	nm->n++;
}

static int cmp_str(const void *a, const void *b)
{
	/* strcmp orders NUL-free names as the store does: bytewise, a prefix first */
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void put_kid(struct store *s, const char *dir, unsigned i)
{
	char key[64], name[16];
	struct store_result *r;

	snprintf(name, sizeof(name), "%u", i);
	snprintf(key, sizeof(key), "%s/%s", dir, name);
	r = PUT(s, .key = key, .value = name);
	assert_int_equal(r->err_code, 0);
	store_result_free(r);
}

static void del_kid(struct store *s, const char *dir, unsigned i)
{
	char key[64];
	struct store_result *r;

	snprintf(key, sizeof(key), "%s/%u", dir, i);
	r = DEL(s, .key = key);
	assert_int_equal(r->err_code, 0);
	store_result_free(r);
}

/* The children of `dir` are exactly the decimal names i with have[i], in name order; checked
 * through store_children and, with `json`, in the JSON listing too. */
static void check_kids(struct store *s, const char *dir, const bool *have, unsigned pool, bool json)
{
	struct names want = {0}, got = {0};
	char name[16];

	for (unsigned i = 0; i < pool; i++) {
		if (!have[i])
			continue;
		snprintf(name, sizeof(name), "%u", i);
		collect(&want, name, name, strlen(name), 0);
	}
	if (want.n)
		qsort(want.v, want.n, sizeof(*want.v), cmp_str);
	assert_int_equal(store_children(s, dir, collect, &got), (long)want.n);
	assert_int_equal(got.n, want.n);
	for (size_t i = 0; i < want.n; i++)
		assert_string_equal(got.v[i], want.v[i]);
	if (json) {
		struct store_result *r;
		struct buf needle = BUF_INIT;
		const char *p;
		size_t keys = 0;

		assert_int_equal(store_get(s, dir, false, true, now, &r), 0);
		assert_int_equal(r->err_code, 0);
		/* each one after the one before; and no others (the dir's own key aside) */
		p = r->json.data;
		for (size_t i = 0; i < want.n; i++) {
			buf_clear(&needle);
			assert_true(buf_printf(&needle, "{\"key\":\"%s/%s\",\"value\":\"%s\"", dir,
			                       want.v[i], want.v[i]) >= 0);
			p = strstr(p, needle.data);
			assert_non_null(p);
			p += needle.len;
		}
		for (p = r->json.data; (p = strstr(p, "\"key\":")); p++)
			keys++;
		assert_int_equal(keys, want.n + 1);
		buf_release(&needle);
		store_result_free(r);
	}
	names_free(&want);
	names_free(&got);
}

/* Each name of the pool is found by a GET, or is not found, as the model says. */
static void check_lookups(struct store *s, const char *dir, const bool *have, unsigned pool)
{
	char key[64], val[16];

	for (unsigned i = 0; i < pool; i++) {
		struct store_result *r;

		snprintf(key, sizeof(key), "%s/%u", dir, i);
		snprintf(val, sizeof(val), "\"value\":\"%u\"", i);
		assert_int_equal(store_get(s, key, false, true, now, &r), 0);
		if (have[i]) {
			assert_int_equal(r->err_code, 0);
			assert_non_null(strstr(r->json.data, val));
		} else {
			assert_int_equal(r->err_code, STORE_EKEYNOTFOUND);
		}
		store_result_free(r);
	}
}

#define MANY 5000

static void test_many_children(void **st)
{
	struct store *s = *st, *s2;
	static unsigned order[MANY];
	static bool have[MANY];
	uint32_t seed = 20261124;
	struct buf snap = BUF_INIT;
	struct seen a = {0};
	struct store_watch *w;

	memset(have, 0, sizeof(have));
	for (unsigned i = 0; i < MANY; i++)
		order[i] = i;
	for (unsigned i = MANY - 1; i > 0; i--) {
		unsigned j = lcg(&seed) % (i + 1), t = order[i];

		order[i] = order[j];
		order[j] = t;
	}
	/* shuffled in, listed now and then: the new ones merge into an already sorted front */
	for (unsigned i = 0; i < MANY; i++) {
		put_kid(s, "/many", order[i]);
		have[order[i]] = true;
		if (i % 997 == 0)
			check_kids(s, "/many", have, MANY, false);
	}
	check_kids(s, "/many", have, MANY, true);
	check_lookups(s, "/many", have, MANY);

	/* every third one goes, in the shuffled order */
	for (unsigned i = 0; i < MANY; i += 3) {
		del_kid(s, "/many", order[i]);
		have[order[i]] = false;
		if (i % 1500 == 0)
			check_kids(s, "/many", have, MANY, false);
	}
	check_kids(s, "/many", have, MANY, true);
	check_lookups(s, "/many", have, MANY);
	expect(DEL(s, .key = "/many", .dir = true), 403,
	       "{\"errorCode\":108,\"message\":\"Directory not empty\",\"cause\":\"/many\","
	       "\"index\":6667}\n");

	/* and comes back, some listed in between, some set twice (a replace) */
	for (unsigned i = 0; i < MANY; i += 3) {
		put_kid(s, "/many", order[i]);
		have[order[i]] = true;
		if (i % 9 == 0)
			put_kid(s, "/many", order[i]);
		if (i % 2001 == 0)
			check_kids(s, "/many", have, MANY, false);
	}
	check_kids(s, "/many", have, MANY, true);
	check_lookups(s, "/many", have, MANY);

	/* a snapshot writes them in order and a loaded one lists them the same */
	store_result_free(PUT(s, .key = "/many2/x", .value = "y"));
	s2 = snapshot_copy(s, &snap);
	check_kids(s2, "/many", have, MANY, true);
	check_lookups(s2, "/many", have, MANY);
	store_free(s2);
	buf_release(&snap);

	/* a recursive delete reaches the watcher of one child and leaves nothing behind */
	w = watch(s, "/many/4999", false, false, 0, &a);
	store_result_free(DEL(s, .key = "/many", .recursive = true));
	assert_int_equal(a.n, 1);
	assert_non_null(strstr(a.json[0], "{\"action\":\"delete\",\"node\":{\"key\":\"/many\""));
	store_watch_free(w);
	expect_get(s, "/many/1", false, 404,
	           "{\"errorCode\":100,\"message\":\"Key not found\",\"cause\":\"/many\","
	           "\"index\":8892}\n");
	assert_int_equal(store_children(s, "/", NULL, NULL), 1);
}

/* Random creates, replaces and deletes over a pool of names, in phases that grow and then
 * empty the directory, so it crosses the size of the hash index up and down many times. */
static void churn(struct store *s, unsigned pool, unsigned steps, unsigned phase,
                  unsigned check_every)
{
	bool *have = calloc(pool, sizeof(*have));
	uint32_t seed = pool;

	assert_non_null(have);
	for (unsigned step = 0; step < steps; step++) {
		bool growing = (step / phase) % 2 == 0;
		unsigned i = lcg(&seed) % pool;
		bool add = lcg(&seed) % 100 < (growing ? 85u : 15u);

		if (add) {
			put_kid(s, "/c", i); /* a replace if it is there */
			have[i] = true;
		} else if (have[i]) {
			del_kid(s, "/c", i);
			have[i] = false;
		}
		if (step % check_every == 0)
			check_kids(s, "/c", have, pool, step % (10 * check_every) == 0);
	}
	check_kids(s, "/c", have, pool, true);
	check_lookups(s, "/c", have, pool);
	for (unsigned i = 0; i < pool; i++) {
		if (have[i])
			del_kid(s, "/c", i);
		have[i] = false;
	}
	check_kids(s, "/c", have, pool, true);
	store_result_free(DEL(s, .key = "/c", .dir = true)); /* empty now */
	assert_int_equal(store_children(s, "/c", NULL, NULL), -STORE_EKEYNOTFOUND);
	free(have);
}

static void test_children_churn(void **st)
{
	struct store *s = *st;

	churn(s, 40, 4000, 150, 1);         /* around the index threshold, listed at every step */
	churn(s, 2000, 16000, 4000, 400);   /* the index grows, shrinks and goes */
	churn(s, 2000, 16000, 4000, 16000); /* never listed: holes are closed by adds */
}

/* The O(1) fingerprint moves with every change of the children, and only then. */
static void test_dir_stamp(void **st)
{
	struct store *s = *st;
	uint64_t c0, c1, c2, c3, c4;
	long n;

	assert_int_equal(store_dir_stamp(s, "/d", &c0), -STORE_EKEYNOTFOUND);
	store_result_free(PUT(s, .key = "/d", .dir = true));
	assert_int_equal(store_dir_stamp(s, "/d", &c0), 0);
	assert_int_equal(c0, 0);
	store_result_free(PUT(s, .key = "/d/a", .value = "1"));
	store_result_free(PUT(s, .key = "/d/_h", .value = "1"));
	assert_int_equal(store_dir_stamp(s, "/d", &c1), 2); /* hidden ones count */
	assert_int_equal(c1, store_index(s));
	store_result_free(PUT(s, .key = "/other", .value = "x")); /* elsewhere: no move */
	store_result_free(PUT(s, .key = "/d/a/../a", .value = "2")); /* a write moves it */
	assert_int_equal(store_dir_stamp(s, "/d", &c2), 2);
	assert_int_equal(c2, store_index(s));
	store_result_free(PUT(s, .key = "/d/sub/deep", .value = "x")); /* a new child dir */
	assert_int_equal(store_dir_stamp(s, "/d", &c3), 3);
	assert_true(c3 > c2);
	store_result_free(PUT(s, .key = "/d/sub/deep", .value = "y")); /* below a child: no */
	assert_int_equal(store_dir_stamp(s, "/d", &c4), 3);
	assert_int_equal(c4, c3);
	store_result_free(DEL(s, .key = "/d/a")); /* a delete lowers the count */
	n = store_dir_stamp(s, "/d", &c4);
	assert_int_equal(n, 2);
	assert_int_equal(c4, c3);
	assert_int_equal(store_dir_stamp(s, "/d/_h", &c4), -STORE_ENOTDIR);
}

/* ---------------------------------------------------------------- JSON and helpers */

static void test_json_string(void **st)
{
	static const struct {
		const char *in;
		size_t len;
		const char *out;
	} t[] = {
	    {"plain", 5, "\"plain\""},
	    {"<a&b>", 5, "\"\\u003ca\\u0026b\\u003e\""},
	    {"q\"b\\", 4, "\"q\\\"b\\\\\""},
	    {"\n\r\t\b\f\x01\x1f", 7, "\"\\n\\r\\t\\u0008\\u000c\\u0001\\u001f\""},
	    {"\x7f", 1, "\"\x7f\""},
	    {"\xe2\x80\xa8\xe2\x80\xa9", 6, "\"\\u2028\\u2029\""},
	    {"caf\xc3\xa9 \xf0\x9f\x98\x80", 10, "\"caf\xc3\xa9 \xf0\x9f\x98\x80\""},
	    {"\xff", 1, "\"\\ufffd\""},
	    {"a\xc3", 2, "\"a\\ufffd\""},
	    {"\xc0\xaf", 2, "\"\\ufffd\\ufffd\""},            /* overlong */
	    {"\xed\xa0\x80", 3, "\"\\ufffd\\ufffd\\ufffd\""}, /* surrogate */
	    {"\xf4\x90\x80\x80", 4, "\"\\ufffd\\ufffd\\ufffd\\ufffd\""},
	    {"n\0ul", 4, "\"n\\u0000ul\""},
	};

	(void)st;
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct buf b = BUF_INIT;

		assert_int_equal(store_json_string(&b, t[i].in, t[i].len), 0);
		assert_string_equal(b.data, t[i].out);
		buf_release(&b);
	}
	/* Plain text is copied 8 bytes at a time: every byte value at every offset of a longer
	 * plain string is escaped exactly as it is alone. */
	for (unsigned v = 0; v < 256; v++) {
		struct buf one = BUF_INIT;
		unsigned char c = (unsigned char)v;

		assert_int_equal(store_json_string(&one, (const char *)&c, 1), 0);
		for (size_t at = 0; at < 19; at++) {
			char in[19], want[64];
			struct buf b = BUF_INIT;

			memset(in, 'a' + (int)(at % 26), sizeof(in));
			in[at] = (char)c;
			snprintf(want, sizeof(want), "\"%.*s%.*s%.*s\"", (int)at, in,
			         (int)(one.len - 2), one.data + 1, (int)(sizeof(in) - at - 1),
			         in + at + 1);
			assert_int_equal(store_json_string(&b, in, sizeof(in)), 0);
			assert_string_equal(b.data, want);
			buf_release(&b);
		}
		buf_release(&one);
	}
}

static void test_json_time_and_paths(void **st)
{
	static const struct {
		int64_t ns;
		const char *out;
	} tt[] = {
	    {T0 + 883986515, "2026-11-24T20:30:45.883986515Z"},
	    {T0 + 500000000, "2026-11-24T20:30:45.5Z"},
	    {T0 + 10, "2026-11-24T20:30:45.00000001Z"},
	    {T0, "2026-11-24T20:30:45Z"},
	};
	static const struct {
		const char *in, *out;
	} pt[] = {
	    {"", "/"},           {"/", "/"},           {"//a//b/", "/a/b"},
	    {"a/b", "/a/b"},     {"/a/./b/..", "/a"},  {"/../..", "/"},
	    {"/x/../fq", "/fq"}, {"/a b/c", "/a b/c"}, {"/a/..b", "/a/..b"},
	};

	(void)st;
	for (size_t i = 0; i < sizeof(tt) / sizeof(tt[0]); i++) {
		struct buf b = BUF_INIT;

		assert_int_equal(store_json_time(&b, tt[i].ns), 0);
		assert_string_equal(b.data, tt[i].out);
		buf_release(&b);
	}
	for (size_t i = 0; i < sizeof(pt) / sizeof(pt[0]); i++) {
		struct buf b = BUF_INIT;

		assert_int_equal(store_path_clean(pt[i].in, strlen(pt[i].in), &b), 0);
		assert_string_equal(b.data, pt[i].out);
		buf_release(&b);
	}
}

static void test_errors_stats_novalue(void **st)
{
	struct store *s = *st;
	struct store_result *r;
	struct buf b = BUF_INIT;

	assert_int_equal(store_error_result(STORE_ETTLNAN, "invalid value for \"ttl\"", 0, &r), 0);
	expect(r, 400,
	       "{\"errorCode\":202,\"message\":\"The given TTL in POST form is not a number\","
	       "\"cause\":\"invalid value for \\\"ttl\\\"\",\"index\":0}\n");
	assert_int_equal(store_error_status(STORE_EKEYNOTFOUND), 404);
	assert_int_equal(store_error_status(STORE_ETESTFAILED), 412);
	assert_int_equal(store_error_status(STORE_ENODEEXIST), 412);
	assert_int_equal(store_error_status(STORE_EDIRNOTEMPTY), 403);
	assert_int_equal(store_error_status(STORE_ERAFTINTERNAL), 500);
	assert_string_equal(store_error_message(STORE_EREFRESHTTLREQUIRED),
	                    "A TTL must be provided on refresh");

	r = PUT(s, .key = "/k", .value = "v");
	assert_int_equal(store_result_json_novalue(r, &b), 0);
	assert_string_equal(b.data, "{\"action\":\"set\"}\n");
	store_result_free(r);
	store_result_free(DEL(s, .key = "/nokey"));
	expect_get(s, "/k", false, 200,
	           "{\"action\":\"get\",\"node\":{\"key\":\"/k\",\"value\":\"v\","
	           "\"modifiedIndex\":1,\"createdIndex\":1}}\n");
	buf_clear(&b);
	assert_int_equal(store_stats_json(s, &b), 0);
	assert_string_equal(b.data,
	                    "{\"getsSuccess\":1,\"getsFail\":0,\"setsSuccess\":1,\"setsFail\":0,"
	                    "\"deleteSuccess\":0,\"deleteFail\":1,\"updateSuccess\":0,"
	                    "\"updateFail\":0,\"createSuccess\":0,\"createFail\":0,"
	                    "\"compareAndSwapSuccess\":0,\"compareAndSwapFail\":0,"
	                    "\"compareAndDeleteSuccess\":0,\"compareAndDeleteFail\":0,"
	                    "\"expireCount\":0,\"watchers\":0}");
	buf_release(&b);
}

static void test_limits(void **st)
{
	struct store *s = *st;
	struct buf key = BUF_INIT;
	struct store_result *r;

	for (int i = 0; i < STORE_MAX_DEPTH + 1; i++)
		buf_puts(&key, "/a");
	r = PUT(s, .key = key.data, .value = "x");
	assert_int_equal(r->err_code, STORE_EINVALIDFIELD);
	store_result_free(r);
	buf_clear(&key);
	buf_putc(&key, '/');
	for (int i = 0; i < STORE_MAX_KEY_LEN + 1; i++)
		buf_putc(&key, 'k');
	r = PUT(s, .key = key.data, .value = "x");
	assert_int_equal(r->err_code, STORE_EINVALIDFIELD);
	store_result_free(r);
	assert_int_equal(store_index(s), 0);
	buf_release(&key);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_set_get_delete, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_root_readonly, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_dir_stamp, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_prev_exist, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cas_cad, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_dirs, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_inorder_hidden, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_ttl, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_watch_basic, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_watch_dir_delete_and_expire, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_watch_history, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_snapshot, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cmd_garbage, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_many_children, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_children_churn, setup, teardown),
	    cmocka_unit_test(test_json_string),
	    cmocka_unit_test(test_json_time_and_paths),
	    cmocka_unit_test_setup_teardown(test_errors_stats_novalue, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
