/* flotctl's fleetctl commands: list-machines, list-unit-files, list-units, submit, load, start,
 * stop, unload, destroy, restart, cat, status, journal, ssh and verify, talking to the fleet v1
 * API that flotillad serves at /fleet/v1 on its client URL. Messages, tables and blocking follow
 * fleetctl v1.0 (see the fleet INVENTORY); unlike fleetctl, errors exit non-zero. This file holds
 * their flags, the connection (endpoint, --tunnel), the API client and the command table. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include <jansson.h>

#include "ctl/client.h"
#include "ctl/ctl.h"
#include "ctl/fleet_int.h"
#include "engine/model.h"
#include "unit/unit.h"
#include "util/util.h"

#define DEFAULT_ENDPOINTS "http://127.0.0.1:2379,http://127.0.0.1:4001"

/* ---- flags ---- */

#define COMMON_FLAGS                                                                               \
	{"endpoint", CTL_F_STRING, "url",                                                          \
	 "client URL(s) of the cluster, comma-separated (env FLOTCTL_ENDPOINT)",                   \
	 "\"" DEFAULT_ENDPOINTS "\""},                                                             \
	    {"tunnel", CTL_F_STRING, "host[:port]",                                                \
	     "reach the endpoint through an ssh forward via this host (env FLOTCTL_TUNNEL)",       \
	     NULL},                                                                                \
	    {"ssh-username", CTL_F_STRING, "user", "user for ssh and --tunnel", "\"core\""},       \
	    {"ssh-timeout", CTL_F_STRING, "seconds", "time allowed to set up an ssh connection",   \
	     "10.0"},                                                                              \
	    {"strict-host-key-checking", CTL_F_BOOL, NULL,                                         \
	     "verify host keys of remote machines (=false to skip)", "true"},                      \
	    {"known-hosts-file", CTL_F_STRING, "file", "known hosts file for ssh", NULL},          \
	{                                                                                          \
		"request-timeout", CTL_F_STRING, "seconds", "time allowed for one API request",    \
		    "3.0"                                                                          \
	}

#define BLOCK_FLAGS                                                                                \
	{"no-block", CTL_F_BOOL, NULL, "do not wait until the units reach their state", NULL},     \
	{                                                                                          \
		"block-attempts", CTL_F_INT, "N",                                                  \
		    "wait at most N times 2 s for each unit (0: wait forever)", "0"                \
	}

#define LIST_FLAGS(fields)                                                                         \
	{"full, l", CTL_F_BOOL, NULL, "do not ellipsize ids and hashes", NULL},                    \
	    {"no-legend", CTL_F_BOOL, NULL, "do not print a legend (column headers)", NULL},       \
	{                                                                                          \
		"fields", CTL_F_STRING, "list", "columns to print, comma-separated", fields        \
	}

static const struct ctl_flag lm_flags[] = {LIST_FLAGS("\"machine,ip,metadata\""), COMMON_FLAGS};
static const struct ctl_flag luf_flags[] = {LIST_FLAGS("\"unit,hash,dstate,state,target\""),
                                            COMMON_FLAGS};
static const struct ctl_flag lu_flags[] = {LIST_FLAGS("\"unit,machine,active,sub\""), COMMON_FLAGS};
static const struct ctl_flag submit_flags[] = {
    {"replace", CTL_F_BOOL, NULL, "replace units whose file differs", NULL},
    {"sign", CTL_F_BOOL, NULL, "deprecated, refused", NULL},
    COMMON_FLAGS};
static const struct ctl_flag load_flags[] = {
    BLOCK_FLAGS,
    {"replace", CTL_F_BOOL, NULL, "replace units whose file differs", NULL},
    {"sign", CTL_F_BOOL, NULL, "deprecated, refused", NULL},
    COMMON_FLAGS};
static const struct ctl_flag block_flags[] = {BLOCK_FLAGS, COMMON_FLAGS};
static const struct ctl_flag common_flags[] = {COMMON_FLAGS};
static const struct ctl_flag status_flags[] = {
    {"ssh-port", CTL_F_INT, "N", "accepted for fleetctl compatibility; unused", "22"},
    COMMON_FLAGS};
static const struct ctl_flag journal_flags[] = {
    {"lines, n", CTL_F_INT, "N", "number of recent lines to show", "10"},
    {"follow, f", CTL_F_BOOL, NULL, "keep printing new lines as they arrive", NULL},
    {"sudo", CTL_F_BOOL, NULL, "accepted for fleetctl compatibility; unused", NULL},
    {"output", CTL_F_STRING, "mode", "journal output mode (only short)", "\"short\""},
    {"ssh-port", CTL_F_INT, "N", "accepted for fleetctl compatibility; unused", "22"},
    COMMON_FLAGS};
static const struct ctl_flag ssh_flags[] = {
    {"forward-agent, A", CTL_F_BOOL, NULL, "forward the local ssh agent", NULL},
    {"ssh-port", CTL_F_INT, "N", "ssh port of the machine", "22"},
    {"machine, m", CTL_F_STRING, "id", "connect to this machine (id or id prefix)", NULL},
    {"unit, u", CTL_F_STRING, "name", "connect to the machine running this unit", NULL},
    COMMON_FLAGS};

const struct ctl_fval *fl_flag(const struct fctx *f, const char *name)
{
	static const struct ctl_fval none;
	int i = ctl_flag_find(f->defs, f->ndefs, name, strlen(name));

	return i >= 0 ? &f->vals[i] : &none;
}

/* A fleetctl global option: the command's flag, the global flag, FLOTCTL_<NAME>, then (for all but
 * the endpoint, which named fleetd's own socket) FLEETCTL_<NAME>. */
static const char *opt(const struct fctx *f, const char *name, enum ctl_gopt g)
{
	const struct ctl_fval *v = fl_flag(f, name);
	struct buf env = BUF_INIT;
	const char *s = NULL;

	if (v->seen)
		return v->s ? v->s : (v->b ? "true" : "false");
	if (f->ctl->g[g].seen)
		return f->ctl->g[g].s ? f->ctl->g[g].s : (f->ctl->g[g].b ? "true" : "false");
	for (int pass = 0; pass < 2 && !s; pass++) {
		if (pass == 1 && !strcmp(name, "endpoint"))
			break;
		buf_clear(&env);
		cb_puts(&env, pass ? "FLEETCTL_" : "FLOTCTL_");
		for (const char *p = name; *p; p++)
			cb_putc(&env,
			        *p == '-' ? '_' : (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p));
		s = getenv(env.data);
		if (s && !*s)
			s = NULL;
	}
	buf_release(&env);
	return s;
}

/* ---- helpers ---- */

void fl_strip_nl(struct buf *b)
{
	while (b->len && (b->data[b->len - 1] == '\n' || b->data[b->len - 1] == ' '))
		b->data[--b->len] = '\0';
}

const char *fl_jstr(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);

	return json_is_string(v) ? json_string_value(v) : "";
}

void fl_err(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fflush(stderr);
}

void fl_sleep(int64_t ns)
{
	struct timespec ts = {(time_t)(ns / 1000000000LL), (long)(ns % 1000000000LL)};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* ---- connecting and the API ---- */

static double parse_secs(const char *s, double dflt)
{
	char *end;
	double d;

	if (!s)
		return dflt;
	d = strtod(s, &end);
	return end != s && !*end && d >= 0 ? d : dflt;
}

static int fleet_connect(struct fctx *f)
{
	struct ctl *ctl = f->ctl;
	const struct ctl_fval *v = fl_flag(f, "endpoint");
	const char *ep = NULL, *rt;
	struct buf local = BUF_INIT, err = BUF_INIT, first = BUF_INIT;
	int r;

	if (ctl->client)
		return 0;
	/* flags before the environment; fleetctl's --endpoint before etcdctl's --endpoints */
	if (v->seen && v->s && *v->s)
		ep = v->s;
	else if (ctl->g[CTL_G_ENDPOINT].s && *ctl->g[CTL_G_ENDPOINT].s)
		ep = ctl->g[CTL_G_ENDPOINT].s;
	else if (ctl->g[CTL_G_ENDPOINTS].s && *ctl->g[CTL_G_ENDPOINTS].s)
		ep = ctl->g[CTL_G_ENDPOINTS].s;
	else if (getenv("FLOTCTL_ENDPOINT") && *getenv("FLOTCTL_ENDPOINT"))
		ep = getenv("FLOTCTL_ENDPOINT");
	else if (getenv("FLOTCTL_ENDPOINTS") && *getenv("FLOTCTL_ENDPOINTS"))
		ep = getenv("FLOTCTL_ENDPOINTS");
	else
		ep = DEFAULT_ENDPOINTS;
	f->ssh.tunnel = opt(f, "tunnel", CTL_G_TUNNEL);
	if (f->ssh.tunnel && *f->ssh.tunnel) {
		/* fleetctl, too, speaks to the first endpoint only through a tunnel */
		cb_append(&first, ep, strcspn(ep, ","));
		r = ctl_tunnel_open(&f->ssh, first.data, &f->tunnel, &local, &err);
		if (r < 0) {
			fl_err("Unable to initialize client: %s", err.data);
			r = 1;
			goto out;
		}
		ep = local.data;
	}
	rt = opt(f, "request-timeout", CTL_G_REQUEST_TIMEOUT);
	if (rt && !ctl->g[CTL_G_TIMEOUT].seen)
		ctl->g[CTL_G_TIMEOUT].ns = (int64_t)(parse_secs(rt, 3.0) * 1e9);
	/* a member sync would swap the endpoint (or the tunnel's local end) for advertised URLs */
	ctl->g[CTL_G_ENDPOINTS].s = ep;
	ctl->g[CTL_G_NOSYNC].b = true;
	r = ctl_connect(ctl);
	/* the client copied the URLs */
	ctl->g[CTL_G_ENDPOINTS].s = NULL;
out:
	buf_release(&local);
	buf_release(&err);
	buf_release(&first);
	return r;
}

/* One API exchange. Returns 0 with the status and the decoded JSON body (NULL when there is none
 * or it does not parse), or -EIO with the reason in `err`. */
int fl_api(struct fctx *f, const char *method, const char *path, const struct ctl_param *q,
           size_t nq, const char *json, long *ret_status, json_t **ret_body, struct buf *err)
{
	struct ctl_req req = {.method = method, .path = path, .query = q, .nquery = nq};
	struct ctl_resp resp;
	struct ctl_error e;
	int r = 0;

	ctl_resp_init(&resp);
	ctl_error_init(&e);
	if (json) {
		req.json = json;
		req.body = true;
	}
	req.one_shot = strcmp(method, "GET") != 0;
	req.deadline = ctl_deadline(f->ctl);
	if (ctl_client_do(f->ctl->client, &req, &resp, &e) < 0) {
		cb_puts(err, e.msg.data ? e.msg.data : "request failed");
		fl_strip_nl(err);
		r = -EIO;
		goto out;
	}
	*ret_status = resp.status;
	*ret_body = resp.body.len ? json_loadb(resp.body.data, resp.body.len, 0, NULL) : NULL;
out:
	ctl_resp_release(&resp);
	ctl_error_release(&e);
	return r;
}

/* The Go client's error for an API error entity: "googleapi: Error 404: unit does not exist". */
void fl_api_error(struct buf *err, long status, json_t *body)
{
	json_t *e = json_object_get(body, "error");
	const char *m = fl_jstr(e, "message");

	if (!*m)
		m = fl_jstr(body, "message");
	cb_printf(err, "googleapi: Error %ld: %s", status, *m ? m : "");
	if (!*m)
		fl_strip_nl(err);
}

char *fl_unit_path(const char *name)
{
	struct buf b = BUF_INIT;

	cb_printf(&b, FLEET_API "/units/%s", name);
	return buf_steal(&b);
}

/* GET a paged collection ("machines", "units", "states") into one array (owned). */
int fl_get_all(struct fctx *f, const char *what, const struct ctl_param *filter, size_t nf,
               json_t **ret, struct buf *err)
{
	json_t *all = json_array();
	char *tok = NULL;
	int r = 0;

	if (!all)
		ctl_oom();
	for (int page = 0; page < 100000; page++) {
		struct ctl_param q[4];
		struct buf path = BUF_INIT;
		size_t nq = 0;
		json_t *body = NULL, *items, *next;
		long st = 0;

		for (size_t i = 0; i < nf && nq < 3; i++)
			q[nq++] = filter[i];
		if (tok)
			q[nq++] = (struct ctl_param){"nextPageToken", tok};
		cb_printf(&path, FLEET_API "/%s", !strcmp(what, "states") ? "state" : what);
		r = fl_api(f, "GET", path.data, q, nq, NULL, &st, &body, err);
		buf_release(&path);
		if (r < 0)
			break;
		if (st != 200) {
			fl_api_error(err, st, body);
			json_decref(body);
			r = -EIO;
			break;
		}
		items = json_object_get(body, what);
		if (json_is_array(items))
			json_array_extend(all, items);
		free(tok);
		tok = NULL;
		next = json_object_get(body, "nextPageToken");
		if (json_is_string(next) && *json_string_value(next))
			tok = strdup(json_string_value(next));
		json_decref(body);
		if (!tok)
			break;
	}
	free(tok);
	if (r < 0) {
		json_decref(all);
		return r;
	}
	*ret = all;
	return 0;
}

/* GET one unit: 1 and *ret (owned) when it exists, 0 when not, -EIO with `err`. */
int fl_get_unit(struct fctx *f, const char *name, json_t **ret, struct buf *err)
{
	char *path = fl_unit_path(name);
	json_t *body = NULL;
	long st = 0;
	int r = fl_api(f, "GET", path, NULL, 0, NULL, &st, &body, err);

	free(path);
	if (r < 0)
		return r;
	if (st == 404) {
		json_decref(body);
		return 0;
	}
	if (st != 200 || !json_is_object(body)) {
		fl_api_error(err, st, body);
		json_decref(body);
		return -EIO;
	}
	*ret = body;
	return 1;
}

int fl_put_unit(struct fctx *f, const char *name, json_t *obj, struct buf *err)
{
	char *path = fl_unit_path(name), *js = json_dumps(obj, JSON_COMPACT);
	json_t *body = NULL;
	long st = 0;
	int r;

	if (!js)
		ctl_oom();
	r = fl_api(f, "PUT", path, NULL, 0, js, &st, &body, err);
	free(path);
	free(js);
	if (r == 0 && st != 201 && st != 204 && st != 200) {
		fl_api_error(err, st, body);
		r = -EIO;
	}
	json_decref(body);
	return r;
}

int fl_set_target(struct fctx *f, const char *name, const char *state, struct buf *err)
{
	json_t *o = json_pack("{ss}", "desiredState", state);
	int r;

	if (!o)
		ctl_oom();
	r = fl_put_unit(f, name, o, err);
	json_decref(o);
	return r;
}

json_t *fl_machine(struct fctx *f, const char *id)
{
	json_t *m;
	size_t i;

	if (!f->machines_tried) {
		struct buf err = BUF_INIT;

		f->machines_tried = true;
		if (fl_get_all(f, "machines", NULL, 0, &f->machines, &err) < 0)
			f->machines = NULL; /* best effort, like fleetctl */
		buf_release(&err);
	}
	json_array_foreach(f->machines, i, m) if (!strcmp(fl_jstr(m, "id"), id)) return m;
	return NULL;
}

/* machineFullLegend of a machine id; only the id part when the machine is not registered. */
void fl_legend(struct fctx *f, struct buf *b, const char *id, bool full)
{
	json_t *m = fl_machine(f, id);

	ctl_machine_legend(b, id, m ? fl_jstr(m, "primaryIP") : NULL, full, true);
}

/* ---- unit files ---- */

bool fl_opts_global(json_t *opts)
{
	json_t *o;
	size_t i;
	bool g = false;

	json_array_foreach(opts, i, o)
	{
		if (!strcmp(fl_jstr(o, "section"), "X-Fleet") &&
		    !strcmp(fl_jstr(o, "name"), "Global"))
			g = !strcasecmp(fl_jstr(o, "value"), "true");
	}
	return g;
}

bool fl_unit_global(json_t *u)
{
	return fl_opts_global(json_object_get(u, "options"));
}

const char *fl_opts_desc(json_t *opts)
{
	json_t *o;
	size_t i;
	const char *d = "";

	json_array_foreach(opts, i, o)
	{
		if (!strcmp(fl_jstr(o, "section"), "Unit") &&
		    !strcmp(fl_jstr(o, "name"), "Description"))
			d = fl_jstr(o, "value");
	}
	return d;
}

/* fleet's hash of the unit whose options are `opts`; "" when they cannot be read. */
void fl_opts_hash(json_t *opts, char hex[41])
{
	struct unit_file uf = UNIT_FILE_INIT;
	struct buf err = BUF_INIT;

	hex[0] = '\0';
	if (unit_from_json(opts, &uf, &err) == 0 && unit_hash(&uf, hex) < 0)
		hex[0] = '\0';
	unit_file_release(&uf);
	buf_release(&err);
}

/* ---- finding units (fleetctl's findUnits) ---- */

void fl_found_release(struct fl_found *fd)
{
	for (size_t i = 0; i < fd->n; i++)
		json_decref(fd->v[i]);
	free(fd->v);
}

int fl_find_units(struct fctx *f, char **args, int n, struct fl_found *ret, struct buf *err)
{
	ret->v = calloc((size_t)n + 1, sizeof(*ret->v));
	ret->n = 0;
	if (!ret->v)
		ctl_oom();
	for (int i = 0; i < n; i++) {
		struct buf name = BUF_INIT;
		json_t *u = NULL;
		int r;
		bool dup = false;

		if (unit_name_mangle(args[i], &name) < 0)
			ctl_oom();
		for (size_t k = 0; k < ret->n; k++)
			dup = dup || !strcmp(fl_jstr(ret->v[k], "name"), name.data);
		r = dup ? 0 : fl_get_unit(f, name.data, &u, err);
		buf_release(&name);
		if (r < 0)
			return r;
		if (r > 0)
			ret->v[ret->n++] = u;
	}
	return 0;
}

/* ---- the command table ---- */

typedef int (*fleet_fn)(struct fctx *f, int argc, char **argv);

static int fleet_main(struct ctl *ctl, const struct ctl_flag *defs, size_t ndefs,
                      const struct ctl_fval *vals, int argc, char **argv, fleet_fn fn,
                      bool needs_api)
{
	struct fctx f = {.ctl = ctl, .defs = defs, .ndefs = ndefs, .vals = vals};
	const char *sk;
	int ret;

	if (fl_flag(&f, "sign")->b) {
		fl_err(
		    "WARNING: The signed/verified units feature is DEPRECATED and cannot be used.");
		return 2;
	}
	f.ssh.user = opt(&f, "ssh-username", CTL_G_SSH_USERNAME);
	f.ssh.known_hosts = opt(&f, "known-hosts-file", CTL_G_KNOWN_HOSTS);
	sk = opt(&f, "strict-host-key-checking", CTL_G_STRICT_HOST_KEY);
	f.ssh.strict = !sk || ctl_parse_bool(sk, &f.ssh.strict) < 0 || f.ssh.strict;
	f.ssh.timeout_s = parse_secs(opt(&f, "ssh-timeout", CTL_G_SSH_TIMEOUT), 10.0);
	f.attempts = 0;
	if (fl_flag(&f, "block-attempts")->i > 0)
		f.attempts = (int)(fl_flag(&f, "block-attempts")->i > 1000000
		                       ? 1000000
		                       : fl_flag(&f, "block-attempts")->i);
	if (fl_flag(&f, "no-block")->b)
		f.attempts = -1;
	if (needs_api) {
		ret = fleet_connect(&f);
		if (ret)
			goto out;
	}
	ret = fn(&f, argc, argv);
out:
	ctl_tunnel_close(&f.tunnel);
	json_decref(f.machines);
	return ret;
}

#define FLEET_RUN(fn, flags)                                                                       \
	static int run_##fn(struct ctl *ctl, const struct ctl_fval *vals, int argc, char **argv)   \
	{                                                                                          \
		return fleet_main(ctl, flags, ARRAY_SIZE(flags), vals, argc, argv, fl_cmd_##fn,    \
		                  true);                                                           \
	}

FLEET_RUN(list_machines, lm_flags)
FLEET_RUN(list_unit_files, luf_flags)
FLEET_RUN(list_units, lu_flags)
FLEET_RUN(submit, submit_flags)
FLEET_RUN(load, load_flags)
FLEET_RUN(start, load_flags)
FLEET_RUN(stop, block_flags)
FLEET_RUN(unload, block_flags)
FLEET_RUN(destroy, block_flags)
FLEET_RUN(restart, block_flags)
FLEET_RUN(cat, common_flags)
FLEET_RUN(status, status_flags)
FLEET_RUN(journal, journal_flags)
FLEET_RUN(ssh, ssh_flags)

static int run_verify(struct ctl *ctl, const struct ctl_fval *vals, int argc, char **argv)
{
	(void)ctl, (void)vals, (void)argc, (void)argv;
	fl_err("WARNING: The signed/verified units feature is DEPRECATED and cannot be used.");
	return 2;
}

#define CMD(name, summary, usage, desc, flags, fn)                                                 \
	{                                                                                          \
		name, summary, usage, desc, flags, ARRAY_SIZE(flags), run_##fn                     \
	}

const struct ctl_cmd ctl_fleet_cmds[] = {
    CMD("list-machines", "enumerate the machines of the cluster", "", NULL, lm_flags,
        list_machines),
    CMD("list-unit-files", "list the units the cluster knows, with desired and current state", "",
        "Fields: unit, hash, dstate, state, target, desc, global, reason (why an unplaced unit\n"
        "   waits; not in fleetctl) and tmachine (deprecated name of target).",
        luf_flags, list_unit_files),
    CMD("list-units", "list the state of units on the machines that run them", "",
        "Fields: unit, machine, active, sub, load, hash.", lu_flags, list_units),
    CMD("submit", "send unit files to the cluster without starting them", "<unit>...", NULL,
        submit_flags, submit),
    CMD("load", "schedule units onto machines without starting them", "<unit>...", NULL, load_flags,
        load),
    CMD("start", "schedule units and start them", "<unit>...",
        "Units not in the cluster are read from files (or their template, in the cluster\n"
        "   or next to the file) and submitted first.",
        load_flags, start),
    CMD("stop", "stop units, leaving them loaded", "<unit>...", NULL, block_flags, stop),
    CMD("unload", "unschedule units from their machines", "<unit>...", NULL, block_flags, unload),
    CMD("destroy", "stop units and remove them from the cluster", "<unit>...", NULL, block_flags,
        destroy),
    CMD("restart", "stop and start units, one after the other", "<unit>...", NULL, block_flags,
        restart),
    CMD("cat", "print a unit file as the cluster stores it", "<unit>", NULL, common_flags, cat),
    CMD("status", "show the runtime status of units, like systemctl status", "<unit>...", NULL,
        status_flags, status),
    CMD("journal", "print the journal of a unit", "<unit>", NULL, journal_flags, journal),
    CMD("ssh", "open a shell or run a command on a machine over ssh",
        "<machine|unit> [--] [command...]",
        "The machine is named by id (or a unique id prefix) or by a unit it runs; ssh goes to\n"
        "   its public IP, through the --tunnel host when one is given.",
        ssh_flags, ssh),
    {"verify", "deprecated: signed units are not supported", "<unit>", NULL, NULL, 0, run_verify},
};

const size_t ctl_fleet_ncmds = ARRAY_SIZE(ctl_fleet_cmds);
