/* flotctl's key commands: etcdctl v2's set, get, ls, mk, mkdir, rm, rmdir, update, updatedir,
 * setdir, watch and exec-watch, with the same requests, output formats (simple, extended, json
 * as Go's encoding/json writes it), messages and exit codes, so scripts can switch binaries. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include <jansson.h>

#include "ctl/client.h"
#include "ctl/ctl.h"
#include "util/util.h"

extern char **environ;

/* A decoded keys API answer (Go client's Response). */
struct kresp {
	json_t *root; /* owned */
	const char *action;
	json_t *node;   /* borrowed from root; never NULL after a successful parse */
	json_t *prev;   /* may be NULL */
	uint64_t index; /* X-Etcd-Index */
};

static void kresp_release(struct kresp *k)
{
	json_decref(k->root);
	memset(k, 0, sizeof(*k));
}

static const char *jstr(json_t *o, const char *name, size_t *ret_len)
{
	json_t *v = json_object_get(o, name);

	if (json_is_string(v)) {
		if (ret_len)
			*ret_len = json_string_length(v);
		return json_string_value(v);
	}
	if (ret_len)
		*ret_len = 0;
	return "";
}

static int64_t jint(json_t *o, const char *name)
{
	json_t *v = json_object_get(o, name);

	return json_is_integer(v) ? (int64_t)json_integer_value(v) : 0;
}

static bool jbool(json_t *o, const char *name)
{
	return json_is_true(json_object_get(o, name));
}

/* ---- Go encoding/json output ---- */

/* One string the way Go 1.19's encoding/json writes it: HTML-safe (<, >, & escaped), U+2028 and
 * U+2029 escaped, invalid UTF-8 replaced by U+FFFD, other non-ASCII left as UTF-8. */
static void go_json_str(struct buf *b, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)s, *end = p + len;

	cb_putc(b, '"');
	while (p < end) {
		unsigned char c = *p;
		uint32_t cp;
		size_t n;

		if (c < 0x80) {
			switch (c) {
			case '"':
				cb_puts(b, "\\\"");
				break;
			case '\\':
				cb_puts(b, "\\\\");
				break;
			case '\n':
				cb_puts(b, "\\n");
				break;
			case '\r':
				cb_puts(b, "\\r");
				break;
			case '\t':
				cb_puts(b, "\\t");
				break;
			default:
				if (c < 0x20 || c == '<' || c == '>' || c == '&') {
					char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};

					cb_append(b, e, 6);
				} else {
					cb_putc(b, (char)c);
				}
			}
			p++;
			continue;
		}
		/* decode one UTF-8 sequence strictly */
		if (c >= 0xc2 && c <= 0xdf)
			n = 2, cp = c & 0x1f;
		else if (c >= 0xe0 && c <= 0xef)
			n = 3, cp = c & 0x0f;
		else if (c >= 0xf0 && c <= 0xf4)
			n = 4, cp = c & 0x07;
		else
			n = 0, cp = 0;
		if (n && (size_t)(end - p) >= n) {
			size_t i;

			for (i = 1; i < n && (p[i] & 0xc0) == 0x80; i++)
				cp = (cp << 6) | (p[i] & 0x3f);
			if (i < n || (n == 3 && cp < 0x800) ||
			    (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
			    (cp >= 0xd800 && cp <= 0xdfff))
				n = 0;
		} else {
			n = 0;
		}
		if (!n) {
			cb_puts(b, "\xef\xbf\xbd");
			p++;
			continue;
		}
		if (cp == 0x2028 || cp == 0x2029)
			cb_puts(b, cp == 0x2028 ? "\\u2028" : "\\u2029");
		else
			cb_append(b, p, n);
		p += n;
	}
	cb_putc(b, '"');
}

/* client.Node: key, dir (omitempty), value, nodes, createdIndex, modifiedIndex, expiration
 * (omitempty), ttl (omitempty), in that order. */
static void go_json_node(struct buf *b, json_t *n)
{
	json_t *nodes, *exp;
	const char *s;
	size_t len;

	if (!json_is_object(n)) {
		cb_puts(b, "null");
		return;
	}
	cb_puts(b, "{\"key\":");
	s = jstr(n, "key", &len);
	go_json_str(b, s, len);
	if (jbool(n, "dir"))
		cb_puts(b, ",\"dir\":true");
	cb_puts(b, ",\"value\":");
	s = jstr(n, "value", &len);
	go_json_str(b, s, len);
	cb_puts(b, ",\"nodes\":");
	nodes = json_object_get(n, "nodes");
	if (json_is_array(nodes)) {
		size_t i;
		json_t *c;

		cb_putc(b, '[');
		json_array_foreach(nodes, i, c)
		{
			if (i)
				cb_putc(b, ',');
			go_json_node(b, c);
		}
		cb_putc(b, ']');
	} else {
		cb_puts(b, "null");
	}
	cb_printf(b, ",\"createdIndex\":%" PRIu64 ",\"modifiedIndex\":%" PRIu64,
	          (uint64_t)jint(n, "createdIndex"), (uint64_t)jint(n, "modifiedIndex"));
	exp = json_object_get(n, "expiration");
	if (json_is_string(exp)) {
		cb_puts(b, ",\"expiration\":");
		go_json_str(b, json_string_value(exp), json_string_length(exp));
	}
	if (jint(n, "ttl"))
		cb_printf(b, ",\"ttl\":%" PRId64, jint(n, "ttl"));
	cb_putc(b, '}');
}

/* etcdctl's printResponseKey. */
static void print_response(struct ctl *ctl, const struct kresp *k)
{
	struct buf b = BUF_INIT;
	const char *v;
	size_t vl;
	bool del = !strcmp(k->action, "delete");

	if (!strcmp(ctl->output, "simple")) {
		if (!del) {
			v = jstr(k->node, "value", &vl);
		} else {
			cb_puts(&b, "PrevNode.Value: ");
			v = jstr(k->prev, "value", &vl);
		}
		cb_append(&b, v, vl);
		cb_putc(&b, '\n');
	} else if (!strcmp(ctl->output, "extended")) {
		v = jstr(k->node, "key", &vl);
		cb_puts(&b, "Key: ");
		cb_append(&b, v, vl);
		cb_printf(&b, "\nCreated-Index: %" PRIu64 "\nModified-Index: %" PRIu64 "\n",
		          (uint64_t)jint(k->node, "createdIndex"),
		          (uint64_t)jint(k->node, "modifiedIndex"));
		if (json_is_object(k->prev)) {
			v = jstr(k->prev, "value", &vl);
			cb_puts(&b, "PrevNode.Value: ");
			cb_append(&b, v, vl);
			cb_putc(&b, '\n');
		}
		cb_printf(&b, "TTL: %" PRId64 "\nIndex: %" PRIu64 "\n", jint(k->node, "ttl"),
		          k->index);
		if (!del) {
			v = jstr(k->node, "value", &vl);
			cb_putc(&b, '\n');
			cb_append(&b, v, vl);
			cb_putc(&b, '\n');
		}
	} else if (!strcmp(ctl->output, "json")) {
		cb_puts(&b, "{\"action\":");
		go_json_str(&b, k->action, strlen(k->action));
		cb_puts(&b, ",\"node\":");
		go_json_node(&b, k->node);
		cb_puts(&b, ",\"prevNode\":");
		go_json_node(&b, k->prev);
		cb_puts(&b, "}\n");
	} else {
		fflush(stdout);
		fprintf(stderr, "Unsupported output format: %s\n", ctl->output);
	}
	ctl_write(stdout, &b);
	buf_release(&b);
}

/* ---- requests ---- */

#define ERR_INVALID_JSON                                                                           \
	"client: response is invalid json. The endpoint is probably not valid etcd cluster "       \
	"endpoint."
#define ERR_EMPTY_BODY "client: response body is empty"

enum call_result { CALL_OK, CALL_EMPTY, CALL_FAILED };

/* Send a keys request and decode the answer like the Go client (unmarshalHTTPResponse). On
 * failure prints etcdctl's message and stores the exit code in *ret_code. */
static enum call_result keys_call(struct ctl *ctl, const struct ctl_req *req, struct kresp *out,
                                  int *ret_code)
{
	struct ctl_resp resp;
	struct ctl_error err;
	enum call_result res = CALL_FAILED;
	json_t *root = NULL;

	memset(out, 0, sizeof(*out));
	ctl_resp_init(&resp);
	ctl_error_init(&err);
	*ret_code = CTL_EXIT_SERVERERR;
	if (ctl_client_do(ctl->client, req, &resp, &err) < 0) {
		ctl_fail(ctl, CTL_EXIT_SERVERERR, &err);
		goto out;
	}
	if (resp.status == 200 || resp.status == 201) {
		json_t *node;

		if (resp.body.len == 0) {
			res = CALL_EMPTY;
			goto out;
		}
		root = json_loadb(resp.body.data, resp.body.len, JSON_ALLOW_NUL, NULL);
		if (!json_is_object(root)) {
			ctl_fail_msg(CTL_EXIT_SERVERERR, ERR_INVALID_JSON);
			goto out;
		}
		node = json_object_get(root, "node");
		if (!json_is_object(node)) {
			/* the Go client would crash on a missing node; make it empty instead */
			node = json_object();
			if (!node || json_object_set_new(root, "node", node) < 0)
				ctl_oom();
		}
		out->root = root;
		root = NULL;
		out->action = jstr(out->root, "action", NULL);
		out->node = node;
		out->prev = json_object_get(out->root, "prevNode");
		if (!json_is_object(out->prev))
			out->prev = NULL;
		out->index = resp.has_index ? resp.index : 0;
		res = CALL_OK;
		goto out;
	}
	/* an etcd error: "100: Key not found (/foo) [12]" */
	root =
	    json_loadb(resp.body.data ? resp.body.data : "", resp.body.len, JSON_ALLOW_NUL, NULL);
	if (!json_is_object(root)) {
		ctl_fail_msg(CTL_EXIT_SERVERERR, ERR_INVALID_JSON);
		goto out;
	} else {
		struct buf m = BUF_INIT;
		const char *s;
		size_t l;

		cb_printf(&m, "%" PRId64 ": ", jint(root, "errorCode"));
		s = jstr(root, "message", &l);
		cb_append(&m, s, l);
		cb_puts(&m, " (");
		s = jstr(root, "cause", &l);
		cb_append(&m, s, l);
		cb_printf(&m, ") [%" PRIu64 "]", (uint64_t)jint(root, "index"));
		ctl_fail_msg(CTL_EXIT_SERVERERR, m.data);
		buf_release(&m);
	}
out:
	json_decref(root);
	ctl_resp_release(&resp);
	ctl_error_release(&err);
	return res;
}

/* "/v2/keys" + key, with the slash Go's v2KeysURL adds. Returns owned. */
static char *keys_path(const char *key)
{
	struct buf b = BUF_INIT;

	cb_puts(&b, "/v2/keys");
	if (*key && *key != '/')
		cb_putc(&b, '/');
	cb_puts(&b, key);
	return buf_steal(&b);
}

/* Query and form parameters of one request; values point into `store`. */
struct params {
	struct ctl_param q[8], f[4];
	size_t nq, nf;
	char nums[4][24];
	size_t nnum;
};

static const char *num(struct params *p, uint64_t v)
{
	char *s = p->nums[p->nnum++];

	snprintf(s, sizeof(p->nums[0]), "%" PRIu64, v);
	return s;
}

static void q_add(struct params *p, const char *k, const char *v)
{
	p->q[p->nq++] = (struct ctl_param){k, v};
}

static void f_add(struct params *p, const char *k, const char *v)
{
	p->f[p->nf++] = (struct ctl_param){k, v};
}

/* Run one non-watch keys request with the total deadline; prints failures. */
static int do_keys(struct ctl *ctl, const char *method, const char *key, struct params *p,
                   bool body, bool one_shot, struct kresp *out)
{
	struct ctl_req req = {0};
	char *path = keys_path(key);
	enum call_result r;
	int code;

	req.method = method;
	req.path = path;
	req.query = p->q;
	req.nquery = p->nq;
	req.form = p->f;
	req.nform = p->nf;
	req.body = body;
	req.one_shot = one_shot;
	req.deadline = ctl_deadline(ctl);
	r = keys_call(ctl, &req, out, &code);
	free(path);
	if (r == CALL_EMPTY) {
		ctl_fail_msg(CTL_EXIT_SERVERERR, ERR_EMPTY_BODY);
		return CTL_EXIT_SERVERERR;
	}
	return r == CALL_OK ? 0 : code;
}

/* etcdctl's argOrStdin: the operand, or all of stdin when it is missing; NULL if neither. */
static char *arg_or_stdin(int argc, char **argv, int i)
{
	struct buf b = BUF_INIT;
	char chunk[4096];
	size_t n;

	if (i < argc) {
		char *s = strdup(argv[i]);

		if (!s)
			ctl_oom();
		return s;
	}
	while ((n = fread(chunk, 1, sizeof(chunk), stdin)) > 0)
		cb_append(&b, chunk, n);
	if (ferror(stdin) || b.len == 0) {
		buf_release(&b);
		return NULL;
	}
	return buf_steal(&b);
}

/* ---- commands ---- */

enum { F_TTL, F_SWAP_VALUE, F_SWAP_INDEX };
static const struct ctl_flag set_flags[] = {
    [F_TTL] = {"ttl", CTL_F_INT, "value", "expire the key after this many seconds", "0"},
    [F_SWAP_VALUE] = {"swap-with-value", CTL_F_STRING, "value",
                      "only set when the current value is this", NULL},
    [F_SWAP_INDEX] = {"swap-with-index", CTL_F_INT, "value",
                      "only set when the current modified index is this", "0"},
};

static int cmd_set(struct ctl *ctl, const struct ctl_fval *v, int argc, char **argv)
{
	struct params p = {0};
	struct kresp k;
	char *value;
	int r = ctl_connect(ctl);

	if (r)
		return r;
	if (argc == 0)
		return ctl_fail_msg(CTL_EXIT_BADARGS, "key required");
	value = arg_or_stdin(argc, argv, 1);
	if (!value)
		return ctl_fail_msg(CTL_EXIT_BADARGS, "value required");
	if (v[F_SWAP_VALUE].s && *v[F_SWAP_VALUE].s)
		q_add(&p, "prevValue", v[F_SWAP_VALUE].s);
	if (v[F_SWAP_INDEX].i)
		q_add(&p, "prevIndex", num(&p, (uint64_t)v[F_SWAP_INDEX].i));
	f_add(&p, "value", value);
	if (v[F_TTL].i > 0)
		f_add(&p, "ttl", num(&p, (uint64_t)v[F_TTL].i));
	r = do_keys(ctl, "PUT", argv[0], &p, true, false, &k);
	free(value);
	if (r)
		return r;
	print_response(ctl, &k);
	kresp_release(&k);
	return 0;
}

enum { F_MK_INORDER, F_MK_TTL };
static const struct ctl_flag mk_flags[] = {
    [F_MK_INORDER] = {"in-order", CTL_F_BOOL, NULL,
                      "create a new key with a sequential name inside directory <key>", NULL},
    [F_MK_TTL] = {"ttl", CTL_F_INT, "value", "expire the key after this many seconds", "0"},
};

static int cmd_mk(struct ctl *ctl, const struct ctl_fval *v, int argc, char **argv)
{
	struct params p = {0};
	struct kresp k;
	char *value;
	bool inorder = v[F_MK_INORDER].b;
	int r = ctl_connect(ctl);

	if (r)
		return r;
	if (argc == 0)
		return ctl_fail_msg(CTL_EXIT_BADARGS, "key required");
	value = arg_or_stdin(argc, argv, 1);
	if (!value)
		return ctl_fail_msg(CTL_EXIT_BADARGS, "value required");
	if (!inorder)
		q_add(&p, "prevExist", "false");
	f_add(&p, "value", value);
	if (v[F_MK_TTL].i > 0)
		f_add(&p, "ttl", num(&p, (uint64_t)v[F_MK_TTL].i));
	r = do_keys(ctl, inorder ? "POST" : "PUT", argv[0], &p, true, !inorder, &k);
	free(value);
	if (r)
		return r;
	print_response(ctl, &k);
	kresp_release(&k);
	return 0;
}

static const struct ctl_flag ttl_flags[] = {
    {"ttl", CTL_F_INT, "value", "expire after this many seconds", "0"},
};

/* mkdir, setdir, updatedir: a directory PUT that prints nothing in simple mode. */
static int dir_put(struct ctl *ctl, const struct ctl_fval *v, int argc, char **argv,
                   const char *prev_exist)
{
	struct params p = {0};
	struct kresp k;
	int r = ctl_connect(ctl);

	if (r)
		return r;
	if (argc == 0)
		return ctl_fail_msg(CTL_EXIT_BADARGS, "key required");
	q_add(&p, "dir", "true");
	if (prev_exist)
		q_add(&p, "prevExist", prev_exist);
	if (v[0].i > 0)
		f_add(&p, "ttl", num(&p, (uint64_t)v[0].i));
	r = do_keys(ctl, "PUT", argv[0], &p, true, prev_exist && !strcmp(prev_exist, "false"), &k);
	if (r)
		return r;
	if (strcmp(ctl->output, "simple") != 0)
		print_response(ctl, &k);
	kresp_release(&k);
	return 0;
}

static int cmd_mkdir(struct ctl *ctl, const struct ctl_fval *v, int argc, char **argv)
{
	return dir_put(ctl, v, argc, argv, "false");
}

static int cmd_setdir(struct ctl *ctl, const struct ctl_fval *v, int argc, char **argv)
{
	return dir_put(ctl, v, argc, argv, NULL);
}

static int cmd_updatedir(struct ctl *ctl, const struct ctl_fval *v, int argc, char **argv)
{
	return dir_put(ctl, v, argc, argv, "true");
}

static int cmd_update(struct ctl *ctl, const struct ctl_fval *v, int argc, char **argv)
{
	struct params p = {0};
	struct kresp k;
	char *value;
	int r = ctl_connect(ctl);

	if (r)
		return r;
	if (argc == 0)
		return ctl_fail_msg(CTL_EXIT_BADARGS, "key required");
	value = arg_or_stdin(argc, argv, 1);
	if (!value)
		return ctl_fail_msg(CTL_EXIT_BADARGS, "value required");
	q_add(&p, "prevExist", "true");
	f_add(&p, "value", value);
	if (v[0].i > 0)
		f_add(&p, "ttl", num(&p, (uint64_t)v[0].i));
	r = do_keys(ctl, "PUT", argv[0], &p, true, false, &k);
	free(value);
	if (r)
		return r;
	print_response(ctl, &k);
	kresp_release(&k);
	return 0;
}

enum { F_RM_DIR, F_RM_RECURSIVE, F_RM_VALUE, F_RM_INDEX };
static const struct ctl_flag rm_flags[] = {
    [F_RM_DIR] = {"dir", CTL_F_BOOL, NULL, "also remove an empty directory", NULL},
    [F_RM_RECURSIVE] = {"recursive, r", CTL_F_BOOL, NULL,
                        "remove a directory with everything below it", NULL},
    [F_RM_VALUE] = {"with-value", CTL_F_STRING, "value",
                    "only remove when the current value is this", NULL},
    [F_RM_INDEX] = {"with-index", CTL_F_INT, "value",
                    "only remove when the current modified index is this", "0"},
};

/* rm and rmdir print the removed key unless it was a directory in simple mode. */
static int delete_common(struct ctl *ctl, const char *key, struct params *p)
{
	struct kresp k;
	int r = do_keys(ctl, "DELETE", key, p, false, false, &k);

	if (r)
		return r;
	if (!jbool(k.node, "dir") || strcmp(ctl->output, "simple") != 0)
		print_response(ctl, &k);
	kresp_release(&k);
	return 0;
}

static int cmd_rm(struct ctl *ctl, const struct ctl_fval *v, int argc, char **argv)
{
	struct params p = {0};
	int r = ctl_connect(ctl);

	if (r)
		return r;
	if (argc == 0)
		return ctl_fail_msg(CTL_EXIT_BADARGS, "key required");
	if (v[F_RM_VALUE].s && *v[F_RM_VALUE].s)
		q_add(&p, "prevValue", v[F_RM_VALUE].s);
	if (v[F_RM_INDEX].i)
		q_add(&p, "prevIndex", num(&p, (uint64_t)v[F_RM_INDEX].i));
	if (v[F_RM_DIR].b)
		q_add(&p, "dir", "true");
	if (v[F_RM_RECURSIVE].b)
		q_add(&p, "recursive", "true");
	return delete_common(ctl, argv[0], &p);
}

static int cmd_rmdir(struct ctl *ctl, const struct ctl_fval *v, int argc, char **argv)
{
	struct params p = {0};
	int r = ctl_connect(ctl);

	(void)v;
	if (r)
		return r;
	if (argc == 0)
		return ctl_fail_msg(CTL_EXIT_BADARGS, "key required");
	q_add(&p, "dir", "true");
	return delete_common(ctl, argv[0], &p);
}

enum { F_GET_SORT, F_GET_QUORUM };
static const struct ctl_flag get_flags[] = {
    [F_GET_SORT] = {"sort", CTL_F_BOOL, NULL, "ask for directory entries in key order", NULL},
    [F_GET_QUORUM] = {"quorum, q", CTL_F_BOOL, NULL,
                      "read through consensus instead of from the member asked", NULL},
};

static int cmd_get(struct ctl *ctl, const struct ctl_fval *v, int argc, char **argv)
{
	struct params p = {0};
	struct kresp k;
	int r = ctl_connect(ctl);

	if (r)
		return r;
	if (argc == 0)
		return ctl_fail_msg(CTL_EXIT_BADARGS, "key required");
	q_add(&p, "recursive", "false");
	q_add(&p, "sorted", v[F_GET_SORT].b ? "true" : "false");
	q_add(&p, "quorum", v[F_GET_QUORUM].b ? "true" : "false");
	r = do_keys(ctl, "GET", argv[0], &p, false, false, &k);
	if (r)
		return r;
	if (jbool(k.node, "dir")) {
		fprintf(stderr, "%s: is a directory\n", jstr(k.node, "key", NULL));
		kresp_release(&k);
		return CTL_EXIT_BADARGS;
	}
	print_response(ctl, &k);
	kresp_release(&k);
	return 0;
}

enum { F_LS_SORT, F_LS_RECURSIVE, F_LS_P, F_LS_QUORUM };
static const struct ctl_flag ls_flags[] = {
    [F_LS_SORT] = {"sort", CTL_F_BOOL, NULL, "list entries in key order", NULL},
    [F_LS_RECURSIVE] = {"recursive, r", CTL_F_BOOL, NULL, "list everything below the directory",
                        NULL},
    [F_LS_P] = {"p", CTL_F_BOOL, NULL, "mark directories with a trailing slash", NULL},
    [F_LS_QUORUM] = {"quorum, q", CTL_F_BOOL, NULL,
                     "read through consensus instead of from the member asked", NULL},
};

static void ls_print(struct buf *b, json_t *n, bool slash)
{
	json_t *nodes = json_object_get(n, "nodes"), *c;
	const char *key;
	size_t kl, i;

	key = jstr(n, "key", &kl);
	cb_append(b, key, kl);
	if (slash && jbool(n, "dir"))
		cb_putc(b, '/');
	cb_putc(b, '\n');
	json_array_foreach(nodes, i, c) ls_print(b, c, slash);
}

static int cmd_ls(struct ctl *ctl, const struct ctl_fval *v, int argc, char **argv)
{
	struct params p = {0};
	struct kresp k;
	int r = ctl_connect(ctl);

	if (r)
		return r;
	q_add(&p, "recursive", v[F_LS_RECURSIVE].b ? "true" : "false");
	q_add(&p, "sorted", v[F_LS_SORT].b ? "true" : "false");
	q_add(&p, "quorum", v[F_LS_QUORUM].b ? "true" : "false");
	r = do_keys(ctl, "GET", argc ? argv[0] : "/", &p, false, false, &k);
	if (r)
		return r;
	if (!strcmp(ctl->output, "simple")) {
		struct buf b = BUF_INIT;
		json_t *c;
		size_t i;

		if (!jbool(k.node, "dir")) {
			size_t kl;
			const char *key = jstr(k.node, "key", &kl);

			cb_append(&b, key, kl);
			cb_putc(&b, '\n');
		}
		json_array_foreach(json_object_get(k.node, "nodes"), i, c)
		    ls_print(&b, c, v[F_LS_P].b);
		ctl_write(stdout, &b);
		buf_release(&b);
	} else {
		print_response(ctl, &k);
	}
	kresp_release(&k);
	return 0;
}

/* ---- watches ---- */

static void on_sigint(int sig)
{
	(void)sig;
	_exit(0); /* etcdctl exits 0 on Ctrl-C; output was flushed after each event */
}

/* Wait for the next event at or after *index; long polls that end without a body are
 * re-issued as the Go watcher does. Returns 0 with `out` filled or an exit code. */
static int next_event(struct ctl *ctl, const char *key, bool recursive, uint64_t *index,
                      struct kresp *out)
{
	char *path = keys_path(key);
	int code = 0;

	for (;;) {
		struct params p = {0};
		struct ctl_req req = {0};
		enum call_result r;

		q_add(&p, "wait", "true");
		q_add(&p, "waitIndex", num(&p, *index));
		q_add(&p, "recursive", recursive ? "true" : "false");
		req.method = "GET";
		req.path = path;
		req.query = p.q;
		req.nquery = p.nq;
		req.wait = true;
		r = keys_call(ctl, &req, out, &code);
		if (r == CALL_EMPTY)
			continue;
		if (r == CALL_OK) {
			*index = (uint64_t)jint(out->node, "modifiedIndex") + 1;
			code = 0;
		}
		break;
	}
	free(path);
	return code;
}

enum { F_W_FOREVER, F_W_AFTER, F_W_RECURSIVE };
static const struct ctl_flag watch_flags[] = {
    [F_W_FOREVER] = {"forever, f", CTL_F_BOOL, NULL, "keep watching until interrupted", NULL},
    [F_W_AFTER] = {"after-index", CTL_F_INT, "value",
                   "start with the first change after this index", "0"},
    [F_W_RECURSIVE] = {"recursive, r", CTL_F_BOOL, NULL,
                       "also report changes below the key, prefixed with [action] key", NULL},
};

static int cmd_watch(struct ctl *ctl, const struct ctl_fval *v, int argc, char **argv)
{
	bool recursive = v[F_W_RECURSIVE].b;
	uint64_t index = v[F_W_AFTER].i ? (uint64_t)v[F_W_AFTER].i + 1 : 0;
	int r = ctl_connect(ctl);

	if (r)
		return r;
	if (argc == 0)
		return ctl_fail_msg(CTL_EXIT_BADARGS, "key required");
	signal(SIGINT, on_sigint);
	for (;;) {
		struct kresp k;

		r = next_event(ctl, argv[0], recursive, &index, &k);
		if (r)
			return r;
		if (jbool(k.node, "dir")) {
			kresp_release(&k);
			continue;
		}
		if (recursive) {
			struct buf b = BUF_INIT;
			size_t kl;
			const char *key = jstr(k.node, "key", &kl);

			cb_printf(&b, "[%s] ", k.action);
			cb_append(&b, key, kl);
			cb_putc(&b, '\n');
			ctl_write(stdout, &b);
			buf_release(&b);
		}
		print_response(ctl, &k);
		kresp_release(&k);
		if (!v[F_W_FOREVER].b)
			return 0;
	}
}

/* Go's exec.LookPath: a name with a slash is used as is; otherwise the first executable regular
 * file of that name on $PATH. Returns owned path or NULL. */
static char *look_path(const char *name)
{
	const char *path = getenv("PATH"), *p;

	if (strchr(name, '/')) {
		char *s = strdup(name);

		if (!s)
			ctl_oom();
		return s;
	}
	if (!*name)
		return NULL;
	for (p = path ? path : ""; p;) {
		const char *e = strchr(p, ':');
		size_t dl = e ? (size_t)(e - p) : strlen(p);
		struct buf b = BUF_INIT;
		struct stat st;

		if (dl == 0)
			cb_putc(&b, '.');
		else
			cb_append(&b, p, dl);
		cb_putc(&b, '/');
		cb_puts(&b, name);
		if (stat(b.data, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111))
			return buf_steal(&b);
		buf_release(&b);
		p = e ? e + 1 : NULL;
	}
	return NULL;
}

/* The environment for the command: ours, minus older ETCD_WATCH_* values, plus the event. */
static char **watch_env(const struct kresp *k)
{
	static const char *const names[] = {"ETCD_WATCH_ACTION=", "ETCD_WATCH_MODIFIED_INDEX=",
	                                    "ETCD_WATCH_KEY=", "ETCD_WATCH_VALUE="};
	size_t n = 0, j = 0;
	char **env;
	struct buf b = BUF_INIT;

	while (environ[n])
		n++;
	env = calloc(n + 5, sizeof(*env));
	if (!env)
		ctl_oom();
	for (size_t i = 0; i < n; i++) {
		bool ours = false;

		for (size_t m = 0; m < ARRAY_SIZE(names); m++)
			ours = ours || !strncmp(environ[i], names[m], strlen(names[m]));
		if (!ours)
			env[j++] = environ[i];
	}
	for (size_t m = 0; m < ARRAY_SIZE(names); m++) {
		const char *s = "";
		size_t l = 0;

		buf_init(&b);
		cb_puts(&b, names[m]);
		if (m == 0)
			s = k->action, l = strlen(s);
		else if (m == 1)
			cb_printf(&b, "%" PRIu64, (uint64_t)jint(k->node, "modifiedIndex"));
		else if (m == 2)
			s = jstr(k->node, "key", &l);
		else
			s = jstr(k->node, "value", &l);
		cb_append(&b, s, l);
		env[j++] = buf_steal(&b);
	}
	env[j] = NULL;
	return env;
}

static void free_watch_env(char **env)
{
	size_t n = 0;

	while (env[n])
		n++;
	/* the last four entries are ours */
	for (size_t i = n >= 4 ? n - 4 : 0; i < n; i++)
		free(env[i]);
	free(env);
}

/* Start the command without waiting for it, as etcdctl does. Returns 0, or prints Go's error
 * text (no newline, like etcdctl) and returns 1. */
static int spawn(char **cmd, const struct kresp *k)
{
	char *path = look_path(cmd[0]);
	char **env;
	int pfd[2], e = 0;
	pid_t pid;
	ssize_t got;

	if (!path) {
		fprintf(stderr, "exec: \"%s\": executable file not found in $PATH", cmd[0]);
		return 1;
	}
	env = watch_env(k);
	fflush(stdout);
	fflush(stderr);
	if (pipe2(pfd, O_CLOEXEC) < 0) {
		fprintf(stderr, "fork/exec %s: %s", path, strerror(errno));
		free(path);
		free_watch_env(env);
		return 1;
	}
	pid = fork();
	if (pid == 0) {
		signal(SIGINT, SIG_DFL);
		execve(path, cmd, env);
		e = errno;
		if (write(pfd[1], &e, sizeof(e)) < 0) {
			/* nothing left to report through */
		}
		_exit(127);
	}
	close(pfd[1]);
	if (pid < 0) {
		e = errno;
	} else {
		/* the pipe closes on a successful exec; otherwise it carries errno */
		do {
			got = read(pfd[0], &e, sizeof(e));
		} while (got < 0 && errno == EINTR);
		if (got != (ssize_t)sizeof(e))
			e = 0;
		if (e)
			waitpid(pid, NULL, 0);
	}
	close(pfd[0]);
	free_watch_env(env);
	if (e) {
		char *msg = strdup(strerror(e));

		if (!msg)
			ctl_oom();
		if (*msg >= 'A' && *msg <= 'Z')
			*msg = (char)(*msg + 32);
		fprintf(stderr, "fork/exec %s: %s", path, msg);
		free(msg);
		free(path);
		return 1;
	}
	free(path);
	return 0;
}

enum { F_EW_AFTER, F_EW_RECURSIVE };
static const struct ctl_flag exec_watch_flags[] = {
    [F_EW_AFTER] = {"after-index", CTL_F_INT, "value",
                    "start with the first change after this index", "0"},
    [F_EW_RECURSIVE] = {"recursive, r", CTL_F_BOOL, NULL, "also react to changes below the key",
                        NULL},
};

static void reap_children(int sig)
{
	(void)sig;
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
}

static int cmd_exec_watch(struct ctl *ctl, const struct ctl_fval *v, int argc, char **argv)
{
	bool recursive = v[F_EW_RECURSIVE].b, sep = false;
	uint64_t index = v[F_EW_AFTER].i ? (uint64_t)v[F_EW_AFTER].i + 1 : 0;
	const char *key;
	char **cmd;
	int ncmd, r = ctl_connect(ctl);
	struct sigaction sa = {0};

	if (r)
		return r;
	if (argc < 2)
		return ctl_fail_msg(CTL_EXIT_BADARGS, "key and command to exec required");
	/* etcdctl's rule: with a "--" after the first operand the key comes first and the command
	 * starts two words later; without one the key is the last word. */
	for (int i = 1; i < argc; i++)
		sep = sep || !strcmp(argv[i], "--");
	if (sep) {
		key = argv[0];
		cmd = argv + 2;
		ncmd = argc - 2;
	} else {
		key = argv[argc - 1];
		cmd = argv;
		ncmd = argc - 1;
	}
	if (ncmd <= 0)
		return ctl_fail_msg(CTL_EXIT_BADARGS, "key and command to exec required");
	cmd = calloc((size_t)ncmd + 1, sizeof(*cmd));
	if (!cmd)
		ctl_oom();
	memcpy(cmd, sep ? argv + 2 : argv, (size_t)ncmd * sizeof(*cmd));
	signal(SIGINT, on_sigint);
	sa.sa_handler = reap_children;
	sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
	sigaction(SIGCHLD, &sa, NULL);
	for (;;) {
		struct kresp k;

		r = next_event(ctl, key, recursive, &index, &k);
		if (r)
			break;
		if (jbool(k.node, "dir")) {
			fprintf(stderr, "Ignored dir %s change\n", jstr(k.node, "key", NULL));
			kresp_release(&k);
			continue;
		}
		r = spawn(cmd, &k);
		kresp_release(&k);
		if (r)
			break;
	}
	free(cmd);
	return r;
}

const struct ctl_cmd ctl_keys_cmds[] = {
    {"mk", "create a key, failing if it exists", "<key> <value>",
     "Without <value> the value is read from standard input.", mk_flags, ARRAY_SIZE(mk_flags),
     cmd_mk},
    {"mkdir", "create a directory, failing if it exists", "<key>", NULL, ttl_flags,
     ARRAY_SIZE(ttl_flags), cmd_mkdir},
    {"rm", "delete a key or a directory", "<key>", NULL, rm_flags, ARRAY_SIZE(rm_flags), cmd_rm},
    {"rmdir", "delete an empty directory (or a key)", "<key>", NULL, NULL, 0, cmd_rmdir},
    {"get", "print the value of a key", "<key>", NULL, get_flags, ARRAY_SIZE(get_flags), cmd_get},
    {"ls", "list a directory", "[key]", NULL, ls_flags, ARRAY_SIZE(ls_flags), cmd_ls},
    {"set", "store a value under a key, creating or replacing it", "<key> <value>",
     "Without <value> the value is read from standard input. A value starting\n"
     "   with '-' would be taken for a flag: put '--' before the key, as in\n\n"
     "   $ flotctl set -- <key> -value",
     set_flags, ARRAY_SIZE(set_flags), cmd_set},
    {"setdir", "create a directory, or make an existing one a directory with a new TTL", "<key>",
     NULL, ttl_flags, ARRAY_SIZE(ttl_flags), cmd_setdir},
    {"update", "replace the value of an existing key", "<key> <value>", NULL, ttl_flags,
     ARRAY_SIZE(ttl_flags), cmd_update},
    {"updatedir", "change the TTL of an existing directory", "<key>", NULL, ttl_flags,
     ARRAY_SIZE(ttl_flags), cmd_updatedir},
    {"watch", "wait for a change to a key and print it", "<key>", NULL, watch_flags,
     ARRAY_SIZE(watch_flags), cmd_watch},
    {"exec-watch", "run a command for every change to a key", "<key> -- <command> [args...]",
     "The command sees the change in ETCD_WATCH_ACTION, ETCD_WATCH_KEY,\n"
     "   ETCD_WATCH_VALUE and ETCD_WATCH_MODIFIED_INDEX. Directory changes are skipped.",
     exec_watch_flags, ARRAY_SIZE(exec_watch_flags), cmd_exec_watch},
};

const size_t ctl_keys_ncmds = ARRAY_SIZE(ctl_keys_cmds);
