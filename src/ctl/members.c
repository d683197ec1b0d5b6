/* flotctl's member commands (etcdctl v2's `member list|add|remove|update` and `cluster-health`)
 * over /v2/members and each member's /health, printing what etcdctl prints
 * (etcdctl/ctlv2/command/member_commands.go, cluster_health.go). */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/client.h"
#include "ctl/ctl.h"
#include "util/util.h"

#define EXIT_CLUSTER_NOT_HEALTHY 5 /* etcdctl's ExitClusterNotHealthy */

/* One request through the endpoints; the body parsed into *ret when it is JSON. Returns the
 * HTTP status, or a process exit code (negated) after printing the failure. */
static int call(struct ctl *ctl, const char *method, const char *path, const char *json,
                struct ctl_resp *resp, json_t **ret)
{
	struct ctl_req req = {.method = method,
	                      .path = path,
	                      .json = json,
	                      .body = json != NULL,
	                      .one_shot = strcmp(method, "GET") != 0,
	                      .deadline = ctl_deadline(ctl)};
	struct ctl_error err;
	int r;

	ctl_error_init(&err);
	r = ctl_client_do(ctl->client, &req, resp, &err);
	if (r < 0) {
		r = ctl_fail(ctl, CTL_EXIT_SERVERERR, &err);
		ctl_error_release(&err);
		return -r;
	}
	ctl_error_release(&err);
	if (ret)
		*ret = json_loadb(resp->body.data ? resp->body.data : "", resp->body.len, 0, NULL);
	return (int)resp->status;
}

/* The server's {"message":...} as etcdctl prints a failed call, exit 1. */
static int server_error(const char *what, json_t *j, long status)
{
	const char *msg = json_string_value(json_object_get(j, "message"));

	if (msg)
		fprintf(stderr, "%s%s\n", what, msg);
	else
		fprintf(stderr, "%sunexpected status %ld\n", what, status);
	json_decref(j);
	return CTL_EXIT_BADARGS;
}

static void join_urls(struct buf *b, json_t *arr, const char *sep)
{
	for (size_t i = 0; i < json_array_size(arr); i++) {
		if (i)
			cb_puts(b, sep);
		cb_puts(b, json_string_value(json_array_get(arr, i)) ?: "");
	}
}

static json_t *get_members(struct ctl *ctl, int *code)
{
	struct ctl_resp resp;
	json_t *j = NULL;
	int st;

	ctl_resp_init(&resp);
	st = call(ctl, "GET", "/v2/members", NULL, &resp, &j);
	ctl_resp_release(&resp);
	if (st < 0) {
		*code = -st;
		return NULL;
	}
	if (st != 200 || !json_is_array(json_object_get(j, "members"))) {
		*code = server_error("", j, st);
		return NULL;
	}
	return j;
}

static int member_list(struct ctl *ctl)
{
	struct ctl_resp resp;
	json_t *j, *ms, *m, *lj = NULL;
	const char *leader = "";
	struct buf out = BUF_INIT;
	size_t i;
	int code = 0, st;

	j = get_members(ctl, &code);
	if (!j)
		return code;
	ctl_resp_init(&resp);
	st = call(ctl, "GET", "/v2/members/leader", NULL, &resp, &lj);
	ctl_resp_release(&resp);
	if (st < 0) {
		json_decref(j);
		return -st;
	}
	if (st != 200) {
		fprintf(stderr, "Failed to get leader:  client: etcd member has no leader\n");
		json_decref(lj);
		json_decref(j);
		return CTL_EXIT_BADARGS;
	}
	leader = json_string_value(json_object_get(lj, "id")) ?: "";
	ms = json_object_get(j, "members");
	json_array_foreach(ms, i, m)
	{
		const char *id = json_string_value(json_object_get(m, "id")) ?: "";
		const char *name = json_string_value(json_object_get(m, "name")) ?: "";

		if (!*name) {
			cb_printf(&out, "%s[unstarted]: peerURLs=", id);
			join_urls(&out, json_object_get(m, "peerURLs"), ",");
			cb_putc(&out, '\n');
			continue;
		}
		cb_printf(&out, "%s: name=%s peerURLs=", id, name);
		join_urls(&out, json_object_get(m, "peerURLs"), ",");
		cb_puts(&out, " clientURLs=");
		join_urls(&out, json_object_get(m, "clientURLs"), ",");
		cb_printf(&out, " isLeader=%s\n", strcmp(id, leader) ? "false" : "true");
	}
	ctl_write(stdout, &out);
	buf_release(&out);
	json_decref(lj);
	json_decref(j);
	return 0;
}

/* {"peerURLs":[...]} of a comma-separated list. */
static char *peer_urls_json(const char *urls)
{
	json_t *arr = json_array(), *o;
	char *copy = strdup(urls), *save = NULL, *s;

	if (!arr || !copy)
		ctl_oom();
	for (s = strtok_r(copy, ",", &save); s; s = strtok_r(NULL, ",", &save))
		json_array_append_new(arr, json_string(s));
	free(copy);
	o = json_pack("{s:o}", "peerURLs", arr);
	s = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (!s)
		ctl_oom();
	return s;
}

static int member_add(struct ctl *ctl, const char *name, const char *urls)
{
	struct ctl_resp resp;
	struct buf out = BUF_INIT;
	json_t *j = NULL, *ms, *m;
	char *body = peer_urls_json(urls);
	const char *newid;
	size_t i;
	int st, code = 0;

	ctl_resp_init(&resp);
	st = call(ctl, "POST", "/v2/members", body, &resp, &j);
	ctl_resp_release(&resp);
	free(body);
	if (st < 0)
		return -st;
	if (st != 201)
		return server_error("", j, st);
	newid = json_string_value(json_object_get(j, "id")) ?: "";
	cb_printf(&out, "Added member named %s with ID %s to cluster\n\n", name, newid);
	ms = get_members(ctl, &code);
	if (!ms) {
		json_decref(j);
		buf_release(&out);
		return code;
	}
	cb_printf(&out, "ETCD_NAME=\"%s\"\nETCD_INITIAL_CLUSTER=\"", name);
	bool first = true;

	json_array_foreach(json_object_get(ms, "members"), i, m)
	{
		const char *id = json_string_value(json_object_get(m, "id")) ?: "";
		const char *n = json_string_value(json_object_get(m, "name")) ?: "";
		json_t *pu = json_object_get(m, "peerURLs");

		if (!strcmp(id, newid))
			n = name;
		for (size_t k = 0; k < json_array_size(pu); k++) {
			cb_printf(&out, "%s%s=%s", first ? "" : ",", n,
			          json_string_value(json_array_get(pu, k)) ?: "");
			first = false;
		}
	}
	cb_puts(&out, "\"\nETCD_INITIAL_CLUSTER_STATE=\"existing\"\n");
	ctl_write(stdout, &out);
	buf_release(&out);
	json_decref(ms);
	json_decref(j);
	return 0;
}

static int member_change(struct ctl *ctl, const char *method, const char *id, const char *urls)
{
	struct ctl_resp resp;
	struct buf path = BUF_INIT;
	json_t *j = NULL;
	char *body = urls ? peer_urls_json(urls) : NULL;
	int st;

	cb_printf(&path, "/v2/members/%s", id);
	ctl_resp_init(&resp);
	st = call(ctl, method, path.data, body, &resp, &j);
	ctl_resp_release(&resp);
	free(body);
	buf_release(&path);
	if (st < 0)
		return -st;
	if (st != 204) {
		fprintf(stderr, "Received an error trying to %s member %s: ",
		        urls ? "update" : "remove", id);
		return server_error("", j, st);
	}
	json_decref(j);
	if (urls)
		printf("Updated member with ID %s in cluster\n", id);
	else
		printf("Removed member %s from cluster\n", id);
	return 0;
}

static int cmd_member(struct ctl *ctl, const struct ctl_fval *v, int argc, char **argv)
{
	int r;

	(void)v;
	if (argc < 1)
		return ctl_fail_msg(CTL_EXIT_BADARGS,
		                    "member command required: list, add, remove or update");
	r = ctl_connect(ctl);
	if (r)
		return r;
	if (!strcmp(argv[0], "list"))
		return member_list(ctl);
	if (!strcmp(argv[0], "add")) {
		if (argc != 3)
			return ctl_fail_msg(CTL_EXIT_BADARGS,
			                    "Provide a name and a single member peerURL");
		return member_add(ctl, argv[1], argv[2]);
	}
	if (!strcmp(argv[0], "remove")) {
		if (argc != 2)
			return ctl_fail_msg(CTL_EXIT_BADARGS, "Provide a single member ID");
		return member_change(ctl, "DELETE", argv[1], NULL);
	}
	if (!strcmp(argv[0], "update")) {
		if (argc != 3)
			return ctl_fail_msg(CTL_EXIT_BADARGS,
			                    "Provide an ID and a list of comma separated peerURL "
			                    "(0xabcd http://example.com,http://example1.com)");
		return member_change(ctl, "PUT", argv[1], argv[2]);
	}
	fprintf(stderr, "No help topic for '%s'\n", argv[0]);
	return CTL_EXIT_NOCMD;
}

/* GET url/health: 1 healthy, 0 unhealthy, -1 unreachable. */
static int check_health(struct ctl *ctl, const char *url)
{
	struct ctl_client_opts o = {.timeout_ns = 2000000000LL, .total_timeout_ns = 5000000000LL};
	struct ctl_client *c = NULL;
	struct ctl_req req = {.method = "GET", .path = "/health", .deadline = ctl_deadline(ctl)};
	struct ctl_resp resp;
	struct ctl_error err;
	struct buf e = BUF_INIT;
	char *urls[1] = {(char *)url};
	json_t *j;
	int h = -1;

	if (ctl_client_new(&o, urls, 1, &c, &e) < 0) {
		buf_release(&e);
		return -1;
	}
	ctl_resp_init(&resp);
	ctl_error_init(&err);
	if (ctl_client_do(c, &req, &resp, &err) == 0) {
		j = json_loadb(resp.body.data ? resp.body.data : "", resp.body.len, 0, NULL);
		h = j && !strcmp(json_string_value(json_object_get(j, "health")) ?: "", "true");
		json_decref(j);
	}
	ctl_error_release(&err);
	ctl_resp_release(&resp);
	ctl_client_free(c);
	buf_release(&e);
	return h;
}

static int cmd_cluster_health(struct ctl *ctl, const struct ctl_fval *v, int argc, char **argv)
{
	struct buf out = BUF_INIT;
	json_t *ms, *m;
	size_t i, healthy = 0, n;
	int code = 0;

	(void)v;
	(void)argc;
	(void)argv;
	code = ctl_connect(ctl);
	if (code)
		return code;
	ms = get_members(ctl, &code);
	if (!ms)
		return code;
	n = json_array_size(json_object_get(ms, "members"));
	json_array_foreach(json_object_get(ms, "members"), i, m)
	{
		const char *id = json_string_value(json_object_get(m, "id")) ?: "";
		json_t *cu = json_object_get(m, "clientURLs");
		bool done = false;

		if (!json_array_size(cu)) {
			cb_printf(&out, "member %s is unreachable: no available published client urls\n",
			          id);
			continue;
		}
		for (size_t k = 0; !done && k < json_array_size(cu); k++) {
			const char *u = json_string_value(json_array_get(cu, k)) ?: "";
			int h = check_health(ctl, u);

			if (h < 0)
				continue;
			done = true;
			cb_printf(&out, "member %s is %s: got %s result from %s\n", id,
			          h ? "healthy" : "unhealthy", h ? "healthy" : "unhealthy", u);
			healthy += h;
		}
		if (!done) {
			cb_printf(&out, "member %s is unreachable: [", id);
			join_urls(&out, cu, " ");
			cb_puts(&out, "] are all unreachable\n");
		}
	}
	cb_puts(&out, healthy == n ? "cluster is healthy\n"
	                           : healthy ? "cluster is degraded\n" : "cluster is unavailable\n");
	ctl_write(stdout, &out);
	buf_release(&out);
	json_decref(ms);
	return healthy == n ? 0 : EXIT_CLUSTER_NOT_HEALTHY;
}

const struct ctl_cmd ctl_member_cmds[] = {
    {"member", "member add, remove, update and list subcommands",
     "list | add <name> <peerURL> | remove <memberID> | update <memberID> <peerURLs>", NULL,
     NULL, 0, cmd_member},
    {"cluster-health", "check the health of the etcd cluster", "", NULL, NULL, 0,
     cmd_cluster_health},
};

const size_t ctl_member_ncmds = ARRAY_SIZE(ctl_member_cmds);
