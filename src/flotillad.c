/* flotillad: one flotilla node. main() reads the settings, opens the store and its log, binds
 * the client listeners and runs the one libev loop until SIGTERM/SIGINT; `struct daemon` owns
 * every module so that nothing hides in globals. */
#include <errno.h>
#include <ev.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <systemd/sd-daemon.h>

#include <flotilla/driver.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/runner.h"
#include "api/api.h"
#include "driver/host.h"
#include "engine/engine.h"
#include "engine/model.h"
#include "config.h"
#include "discovery.h"
#include "http/client.h"
#include "http/web.h"
#include "node.h"
#include "proxy.h"
#include "store/store.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/log.h"
#include "util/util.h"

/* How often the TTL clock is checked; an expired key goes at most this late. */
#define TTL_CHECK_INTERVAL 0.1
/* A leader of several members stamps its clock into the log at least this often (etcd's SYNC),
 * so replicas' view of time never lags by more. A one-member cluster only syncs when a TTL is
 * due, as before (its log stays free of idle entries). */
#define SYNC_INTERVAL_NS 500000000LL

struct daemon {
	struct ev_loop *loop;
	struct config cfg;
	struct store *store;
	struct node *node;
	struct web_server *web;
	struct api api;
	struct hcli *http;   /* the loop's HTTP client (proxy, agent) */
	struct proxy *proxy; /* --proxy on: this node holds no replica */
	struct runner *runner;
	struct agent *agent;
	struct engine *engine; /* members only: acts while this member leads */
	char *machine_id, *public_ip;
	ev_signal sighup_w;
	ev_signal sigterm_w, sigint_w;
	ev_timer ttl_w;
	ev_timer handoff_w; /* SIGTERM on a leader: wait for the transfer to finish */
	int64_t handoff_end_ns;
	bool sync_in_flight; /* a TTL sync entry is proposed and not yet applied */
	int64_t last_sync_ns;
	struct config_cluster cluster;
	bool published; /* this member's client URLs are in the store */
	bool publish_in_flight;
	bool named; /* a joined member: its name is in the store */
	bool name_in_flight;
	bool leaving; /* this member was removed: stopping */
};

static void on_handoff(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct daemon *d = container_of(w, struct daemon, handoff_w);

	(void)revents;
	if (node_is_leader(d->node) && flt_monotime_ns() < d->handoff_end_ns)
		return;
	if (node_is_leader(d->node))
		log_warn("leadership transfer did not finish in time: stopping anyway");
	ev_break(loop, EVBREAK_ALL);
}

/* A leader stopped cleanly hands leadership over first (as etcd does), so the cluster does not
 * wait out an election timeout; a second signal stops at once. */
static void on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct daemon *d = w->data;

	(void)revents;
	log_notice("received %s, shutting down", strsignal(w->signum));
	if (d && d->node && !ev_is_active(&d->handoff_w) && node_cluster_size(d->node) > 1 &&
	    node_transfer_leadership(d->node) == 0) {
		d->handoff_end_ns =
		    flt_monotime_ns() + 2 * (int64_t)d->cfg.election_timeout * 1000000;
		ev_timer_init(&d->handoff_w, on_handoff, 0.02, 0.02);
		ev_timer_start(loop, &d->handoff_w);
		return;
	}
	ev_break(loop, EVBREAK_ALL);
}

static void sync_done(void *ctx, int err, const struct store_result *res, uint64_t index)
{
	struct daemon *d = ctx;

	(void)res;
	(void)index;
	d->sync_in_flight = false;
	if (err < 0)
		log_warn("cannot commit a TTL sync: %s", flt_strerror(err));
}

/* Time enters the store only through the log: when a key's expiration has passed on this
 * leader's clock, propose an entry stamped with the time, and applying it expires the keys. */
static void publish_done(void *ctx, int err, const struct store_result *res, uint64_t index)
{
	struct daemon *d = ctx;

	(void)index;
	d->publish_in_flight = false;
	d->published = err == 0 && res && !res->err_code;
}

static void name_done(void *ctx, int err, const struct store_result *res, uint64_t index)
{
	struct daemon *d = ctx;

	(void)index;
	d->name_in_flight = false;
	d->named = err == 0 && res && !res->err_code;
}

/* A member removed at run time (node.h) stops by itself; a leader hands over first. */
static void maybe_leave(struct daemon *d)
{
	if (d->leaving || !node_removed(d->node))
		return;
	d->leaving = true;
	log_notice("this member was removed from the cluster: shutting down");
	if (node_transfer_leadership(d->node) == 0) {
		d->handoff_end_ns =
		    flt_monotime_ns() + 2 * (int64_t)d->cfg.election_timeout * 1000000;
		ev_timer_init(&d->handoff_w, on_handoff, 0.02, 0.02);
		ev_timer_start(d->loop, &d->handoff_w);
		return;
	}
	ev_break(d->loop, EVBREAK_ALL);
}

/* Other members learn this member's client URLs (for /v2/members, etcdctl cluster-health,
 * failover of clients) from the store, as etcd publishes its member attributes through the
 * log: once per start, when a leader is known. A one-member cluster has nobody to tell. */
static void maybe_publish(struct daemon *d)
{
	struct buf key = BUF_INIT, val = BUF_INIT, enc = BUF_INIT;
	struct store_cmd cmd;
	int r;

	if (!d->named && !d->name_in_flight && node_leader_id(d->node) &&
	    !strcmp(d->cfg.initial_cluster_state, "existing") &&
	    node_announce_name(d->node, d->cfg.name, name_done, d) == 0)
		d->name_in_flight = true; /* others know the initial members' names already */
	if (d->published || d->publish_in_flight || node_cluster_size(d->node) < 2 ||
	    !node_leader_id(d->node))
		return;
	r = buf_printf(&key, API_MEMBERS_DIR "/%llx", (unsigned long long)node_member_id(d->node));
	for (size_t i = 0; r >= 0 && i < d->cfg.advertise_client_urls.n; i++)
		r = buf_printf(&val, "%s%s", i ? "," : "", d->cfg.advertise_client_urls.v[i]);
	memset(&cmd, 0, sizeof(cmd));
	cmd.op = STORE_OP_PUT;
	cmd.time_ns = flt_realtime_ns();
	cmd.key = key.data;
	cmd.value = val.data ? val.data : "";
	cmd.value_len = val.len;
	cmd.prev_exist = -1;
	if (r >= 0)
		r = store_cmd_encode(&cmd, &enc);
	if (r >= 0)
		r = node_propose(d->node, enc.data, enc.len, publish_done, d);
	if (r >= 0)
		d->publish_in_flight = true;
	buf_release(&key);
	buf_release(&val);
	buf_release(&enc);
}

static void on_ttl_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct daemon *d = container_of(w, struct daemon, ttl_w);
	int64_t now = flt_realtime_ns();
	struct buf b = BUF_INIT;
	struct store_cmd cmd;
	int r;

	(void)loop;
	(void)revents;
	maybe_leave(d);
	if (d->leaving)
		return;
	maybe_publish(d);
	if (d->sync_in_flight || !node_is_leader(d->node))
		return;
	if (store_next_expiry(d->store) > now &&
	    (node_cluster_size(d->node) < 2 || now - d->last_sync_ns < SYNC_INTERVAL_NS))
		return;
	memset(&cmd, 0, sizeof(cmd));
	cmd.op = STORE_OP_SYNC;
	cmd.time_ns = now;
	r = store_cmd_encode(&cmd, &b);
	if (r >= 0)
		r = node_propose(d->node, b.data, b.len, sync_done, d);
	buf_release(&b);
	if (r < 0)
		log_warn("cannot propose a TTL sync: %s", flt_strerror(r));
	else
		d->sync_in_flight = true;
	d->last_sync_ns = now;
}

/* A daemon holds a file descriptor per client connection: take all the kernel allows. */
static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			log_warn("cannot raise the open file limit: %s", strerror(errno));
	}
}

static const char *own_url(void *ud)
{
	struct daemon *d = ud;

	return d->cfg.advertise_client_urls.n ? d->cfg.advertise_client_urls.v[0]
	                                      : "http://127.0.0.1:2379";
}

/* A proxy answers journal/status requests for its own machine itself. */
static bool proxy_local(void *ud, struct web_req *req)
{
	struct daemon *d = ud;
	const char *path = web_req_path(req);
	unsigned n = 0;
	char *m = NULL;
	bool mine;

	if (!d->agent || (strncmp(path, MODEL_JOURNAL_PATH, strlen(MODEL_JOURNAL_PATH)) &&
	                  strncmp(path, MODEL_STATUS_PATH, strlen(MODEL_STATUS_PATH))))
		return false;
	mine = web_query_get(web_req_query(req), "machine", &n, &m) == 0 && n &&
	       !strcmp(m, d->machine_id);
	free(m);
	if (!mine)
		return false;
	agent_handle_local(d->agent, req, path);
	return true;
}

static void on_runner_state(void *ud, const char *unit, const struct runner_state *st)
{
	struct daemon *d = ud;

	if (d->agent)
		agent_runner_state(d->agent, unit, st);
}

/* The machine side: the runner (drivers, units, journals) and the agent that ties it to the
 * cluster. */
static int start_agent(struct daemon *d)
{
	/* the drivers' settings: the dedicated flags, then --driver-opt key=value pairs */
	const char *keys[4 + 32] = {"docker-host", "rkt-path", "systemd-bus", "machine-id"};
	const char *vals[4 + 32] = {d->cfg.docker_host, d->cfg.rkt_path, d->cfg.systemd_bus, NULL};
	char *opt_copy[32] = {0};
	struct flt_drv_config dc = {keys, vals, 4};
	struct runner_config rc = {0};
	struct agent_config ac = {0};
	struct runner_cb cb = {0};
	struct buf state_dir = BUF_INIT;
	char host[256] = "localhost", err[512] = "";
	int r;

	if (!d->cfg.agent)
		return 0;
	d->machine_id = agent_machine_id_load(d->cfg.machine_id, d->cfg.data_dir, err, sizeof(err));
	if (!d->machine_id) {
		log_error("%s", err[0] ? err : "out of memory");
		return -EINVAL;
	}
	vals[3] = d->machine_id; /* drivers label what they start with it (docker) */
	for (size_t i = 0; i < d->cfg.driver_opt.n; i++) {
		char *eq;

		if (i == ARRAY_SIZE(opt_copy) || !(opt_copy[i] = strdup(d->cfg.driver_opt.v[i])) ||
		    !(eq = strchr(opt_copy[i], '='))) {
			log_error("invalid --driver-opt '%s': key=value (at most %zu)",
			          d->cfg.driver_opt.v[i], ARRAY_SIZE(opt_copy));
			for (size_t k = 0; k <= i && k < ARRAY_SIZE(opt_copy); k++)
				free(opt_copy[k]);
			return -EINVAL;
		}
		*eq = '\0';
		keys[dc.n] = opt_copy[i];
		vals[dc.n++] = eq + 1;
	}
	d->public_ip = d->cfg.public_ip ? strdup(d->cfg.public_ip) : agent_default_ip();
	gethostname(host, sizeof(host) - 1);
	buf_printf(&state_dir, "%s/agent", d->cfg.data_dir);
	rc.state_dir = state_dir.data;
	rc.driver_dir = d->cfg.driver_dir;
	rc.default_runtime = d->cfg.default_runtime;
	rc.machine_id = d->machine_id;
	rc.hostname = host;
	rc.drv_cfg = &dc;
	/* The runner reports to the agent, which does not exist yet while the runner adopts what
	 * ran before: the agent asks for those states after its first sync. */
	cb.state = on_runner_state;
	cb.ud = d;
	r = runner_new(d->loop, &rc, &cb, &d->runner);
	buf_release(&state_dir);
	for (size_t i = 0; i < ARRAY_SIZE(opt_copy); i++)
		free(opt_copy[i]); /* drivers copy what they keep */
	if (r < 0) {
		log_error("cannot start the runner: %s", flt_strerror(r));
		return r;
	}
	ac.machine_id = d->machine_id;
	ac.public_ip = d->public_ip;
	ac.metadata = d->cfg.metadata;
	ac.endpoint = own_url(d);
	ac.ttl_ms = (unsigned)d->cfg.agent_ttl;
	ac.fence = d->cfg.fence;
	/* The leader declares a machine dead a TTL after its last heartbeat, and a new leader
	 * only a TTL after it was elected: an election (up to 2 election timeouts) must not make
	 * every agent stop its units. A cut-off machine and its replacement overlap at most that.
	 */
	ac.fence_ms = (unsigned)(d->cfg.agent_ttl + 2 * d->cfg.election_timeout);
	ac.memory = d->cfg.memory;
	ac.cpus = d->cfg.cpus;
	ac.hostname = host;
	/* A proxy's agent goes through the proxy itself, which fails over between members. */
	ac.api_url = own_url;
	ac.api_url_ud = d;
	r = agent_new(d->loop, d->http, d->runner, &ac, &d->agent);
	if (r < 0) {
		log_error("cannot start the agent: %s", flt_strerror(r));
		return r;
	}
	log_info("agent: machine '%s' at %s, metadata '%s'", d->machine_id, d->public_ip,
	         d->cfg.metadata);
	d->api.agent = d->agent;
	return 0;
}

static void on_sighup(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct daemon *d = w->data;

	(void)loop;
	(void)revents;
	log_notice("received SIGHUP: reloading the scheduler policy");
	if (d->engine)
		engine_reload_policy(d->engine);
}

/* etcd answers GET /members on its peer port; proxies learn the client URLs from it. */
static int peer_http_get(void *ud, const char *path, struct buf *body)
{
	struct daemon *d = ud;

	if (strcmp(path, "/members") && strcmp(path, "/members/"))
		return 404;
	return api_members_json(&d->api, body) < 0 ? 500 : 200;
}

/* --discovery: the cluster's members come from the discovery service (or from the data dir,
 * where the first successful discovery left them), and the URL is the cluster token, as in
 * etcd. A node that finds the cluster full becomes a proxy. */
static int run_discovery(struct daemon *d)
{
	struct discovery_result res;
	struct buf peers = BUF_INIT;
	char err[512] = "";
	int r;

	if (d->cfg.initial_cluster && strcmp(d->cfg.initial_cluster, "")) {
		/* etcd refuses both too */
		log_error("--discovery and --initial-cluster cannot both be given");
		return -EINVAL;
	}
	for (size_t i = 0; i < d->cfg.initial_advertise_peer_urls.n; i++)
		buf_printf(&peers, "%s%s", i ? "," : "", d->cfg.initial_advertise_peer_urls.v[i]);
	if (!peers.data) {
		log_error("--discovery needs --initial-advertise-peer-urls");
		return -EINVAL;
	}
	free(d->cfg.initial_cluster_token);
	d->cfg.initial_cluster_token = strdup(d->cfg.discovery);
	r = d->cfg.initial_cluster_token ? 0 : -ENOMEM;
	if (r == 0)
		r = discovery_run(d->cfg.discovery, d->cfg.name, peers.data,
		                  config_member_id(peers.data, d->cfg.discovery),
		                  strcmp(d->cfg.discovery_fallback, "exit") != 0, d->cfg.data_dir,
		                  &res, err, sizeof(err));
	buf_release(&peers);
	if (r < 0) {
		log_error("%s", err[0] ? err : flt_strerror(r));
		return r;
	}
	free(d->cfg.initial_cluster);
	d->cfg.initial_cluster = res.initial_cluster;
	free(d->cfg.initial_cluster_token);
	d->cfg.initial_cluster_token = res.token; /* the URL of the first discovery */
	if (res.proxy && !strcmp(d->cfg.proxy, "off")) {
		free(d->cfg.proxy);
		d->cfg.proxy = strdup("on");
		if (!d->cfg.proxy)
			return -ENOMEM;
	}
	return 0;
}

/* --proxy on|readonly: no store, no log; the client listeners relay to the members. */
static int start_proxy(struct daemon *d)
{
	struct proxy_config pc = {0};
	struct strlist urls = {0};
	char err[512] = "";
	int r;

	if (!d->cfg.initial_cluster || !strcmp(d->cfg.initial_cluster, "")) {
		log_error("a proxy needs --initial-cluster or --discovery to find the members");
		return -EINVAL;
	}
	r = config_parse_cluster(d->cfg.initial_cluster, d->cfg.initial_cluster_token, &d->cluster,
	                         err, sizeof(err));
	if (r < 0) {
		log_error("%s", err[0] ? err : flt_strerror(r));
		return r;
	}
	for (size_t i = 0; r >= 0 && i < d->cluster.n; i++) {
		struct strlist one = {0};

		r = strlist_split(&one, d->cluster.v[i].peer_urls);
		for (size_t k = 0; r >= 0 && k < one.n; k++) {
			char **nv = realloc(urls.v, (urls.n + 1) * sizeof(*nv));

			if (!nv) {
				r = -ENOMEM;
				break;
			}
			urls.v = nv;
			urls.v[urls.n++] = one.v[k];
			one.v[k] = NULL;
		}
		strlist_release(&one);
	}
	pc.peer_urls = (const char *const *)urls.v;
	pc.n_peer_urls = urls.n;
	pc.refresh_ms = (unsigned)d->cfg.proxy_refresh_interval;
	pc.failure_wait_ms = (unsigned)d->cfg.proxy_failure_wait;
	pc.readonly = !strcmp(d->cfg.proxy, "readonly");
	pc.local = proxy_local;
	pc.local_ud = d;
	if (r >= 0)
		r = proxy_new(d->loop, d->http, &pc, &d->proxy);
	strlist_release(&urls);
	if (r >= 0)
		r = web_server_new(d->loop, NULL, proxy_handle, d->proxy, &d->web);
	for (size_t i = 0; r >= 0 && i < d->cfg.listen_client_urls.n; i++) {
		r = web_listen(d->web, d->cfg.listen_client_urls.v[i]);
		if (r < 0)
			log_error("cannot listen on '%s': %s", d->cfg.listen_client_urls.v[i],
			          flt_strerror(r));
		else
			log_info("proxying client requests on '%s'",
			         d->cfg.listen_client_urls.v[i]);
	}
	if (r >= 0)
		r = start_agent(d);
	if (r < 0)
		return r;
	ev_signal_init(&d->sigterm_w, on_signal, SIGTERM);
	ev_signal_init(&d->sigint_w, on_signal, SIGINT);
	d->sigterm_w.data = d;
	d->sigint_w.data = d;
	ev_signal_start(d->loop, &d->sigterm_w);
	ev_signal_start(d->loop, &d->sigint_w);
	return 0;
}

static int daemon_start(struct daemon *d)
{
	struct node_config ncfg = {0};
	struct node_member *members = NULL;
	struct web_limits lim;
	uint64_t member_id = 0, cluster_id;
	char err[512] = "";
	int r;

	r = hcli_new(d->loop, &d->http);
	if (r < 0) {
		log_error("cannot create the HTTP client: %s", flt_strerror(r));
		return r;
	}
	if (strcmp(d->cfg.proxy, "off") && strcmp(d->cfg.proxy, "on") &&
	    strcmp(d->cfg.proxy, "readonly")) {
		log_error("invalid --proxy '%s': 'off', 'on' or 'readonly'", d->cfg.proxy);
		return -EINVAL;
	}
	if (d->cfg.discovery) {
		r = run_discovery(d);
		if (r < 0)
			return r;
	}
	if (strcmp(d->cfg.proxy, "off"))
		return start_proxy(d);

	/* Ids come from --initial-cluster alone, so every member computes the same ones. */
	r = config_parse_cluster(d->cfg.initial_cluster, d->cfg.initial_cluster_token, &d->cluster,
	                         err, sizeof(err));
	if (r < 0) {
		log_error("%s", err[0] ? err : flt_strerror(r));
		return r;
	}
	members = calloc(d->cluster.n, sizeof(*members));
	if (!members)
		return -ENOMEM;
	for (size_t i = 0; i < d->cluster.n; i++) {
		members[i] = (struct node_member){.id = d->cluster.v[i].id,
		                                  .name = d->cluster.v[i].name,
		                                  .peer_urls = d->cluster.v[i].peer_urls};
		if (!strcmp(d->cluster.v[i].name, d->cfg.name))
			member_id = d->cluster.v[i].id;
	}
	if (!member_id) {
		log_error("this member's name '%s' is not in initial-cluster '%s'", d->cfg.name,
		          d->cfg.initial_cluster);
		free(members);
		return -EINVAL;
	}
	cluster_id = d->cluster.cluster_id;
	if (!strcmp(d->cfg.initial_cluster_state, "existing")) {
		/* The cluster's id is that of the cluster as bootstrapped: --initial-cluster lists
		 * the members it had plus this new one, so leave this one out. (Right after one
		 * `member add`; a cluster changed more than once needs the original list.) */
		uint64_t *ids = calloc(d->cluster.n, sizeof(*ids));
		size_t k = 0;

		if (!ids) {
			free(members);
			return -ENOMEM;
		}
		for (size_t i = 0; i < d->cluster.n; i++)
			if (d->cluster.v[i].id != member_id)
				ids[k++] = d->cluster.v[i].id;
		if (k)
			cluster_id = config_cluster_id(ids, k, d->cfg.initial_cluster_token);
		free(ids);
	}

	r = store_new(&d->store);
	if (r < 0) {
		log_error("cannot create the store: %s", flt_strerror(r));
		free(members);
		return r;
	}
	ncfg.data_dir = d->cfg.data_dir;
	ncfg.snapshot_count = d->cfg.snapshot_count;
	ncfg.member_id = member_id;
	ncfg.cluster_id = cluster_id;
	ncfg.members = members;
	ncfg.n_members = d->cluster.n;
	ncfg.listen_peer_urls = (const char *const *)d->cfg.listen_peer_urls.v;
	ncfg.n_listen_peer_urls = d->cfg.listen_peer_urls.n;
	ncfg.heartbeat_ms = (unsigned)d->cfg.heartbeat_interval;
	ncfg.election_ms = (unsigned)d->cfg.election_timeout;
	ncfg.join = !strcmp(d->cfg.initial_cluster_state, "existing");
	ncfg.token = d->cfg.initial_cluster_token;
	ncfg.peer_http_get = peer_http_get;
	/* Peer URLs other than the default were asked for: serve them even alone. */
	ncfg.listen_alone = !(d->cfg.listen_peer_urls.n == 2 &&
	                      !strcmp(d->cfg.listen_peer_urls.v[0], "http://127.0.0.1:2380") &&
	                      !strcmp(d->cfg.listen_peer_urls.v[1], "http://127.0.0.1:7001"));
	ncfg.peer_http_ud = d;
	r = node_new(d->loop, &ncfg, d->store, &d->node);
	free(members);
	if (r < 0)
		return r; /* node_new logged why */

	web_limits_default(&lim);
	lim.max_body = d->cfg.max_request_bytes;
	d->api.loop = d->loop;
	d->api.store = d->store;
	d->api.node = d->node;
	d->api.name = d->cfg.name;
	d->api.cluster = &d->cluster;
	d->api.client_urls = (const char *const *)d->cfg.advertise_client_urls.v;
	d->api.nclient_urls = d->cfg.advertise_client_urls.n;
	d->api.peer_urls = (const char *const *)d->cfg.initial_advertise_peer_urls.v;
	d->api.npeer_urls = d->cfg.initial_advertise_peer_urls.n;
	d->api.max_watches = (unsigned)d->cfg.max_watches;
	d->api.stats.start_time_ns = flt_realtime_ns();
	snprintf(d->api.cluster_id_hex, sizeof(d->api.cluster_id_hex), "%llx",
	         (unsigned long long)cluster_id);
	snprintf(d->api.member_id_hex, sizeof(d->api.member_id_hex), "%llx",
	         (unsigned long long)member_id);
	r = web_server_new(d->loop, &lim, api_handle, &d->api, &d->web);
	if (r < 0) {
		log_error("cannot create the HTTP server: %s", flt_strerror(r));
		return r;
	}
	d->api.servers = &d->web;
	d->api.nservers = 1;
	d->api.http = d->http;
	{
		struct engine_config ec = {.machine_ttl_ms = (unsigned)d->cfg.agent_ttl,
		                           .policy_path = d->cfg.scheduler_policy,
		                           .default_runtime = d->cfg.default_runtime};

		r = engine_new(d->loop, d->store, d->node, &ec, &d->engine);
		if (r < 0) {
			log_error("cannot start the engine: %s", flt_strerror(r));
			return r;
		}
		d->api.engine = d->engine;
	}
	r = start_agent(d);
	if (r < 0)
		return r;
	for (size_t i = 0; i < d->cfg.listen_client_urls.n; i++) {
		r = web_listen(d->web, d->cfg.listen_client_urls.v[i]);
		if (r < 0) {
			log_error("cannot listen on '%s': %s", d->cfg.listen_client_urls.v[i],
			          flt_strerror(r));
			return r;
		}
		log_info("serving client requests on '%s'", d->cfg.listen_client_urls.v[i]);
	}

	ev_signal_init(&d->sigterm_w, on_signal, SIGTERM);
	ev_signal_init(&d->sigint_w, on_signal, SIGINT);
	d->sigterm_w.data = d;
	d->sigint_w.data = d;
	ev_signal_start(d->loop, &d->sigterm_w);
	ev_signal_start(d->loop, &d->sigint_w);
	ev_signal_init(&d->sighup_w, on_sighup, SIGHUP);
	d->sighup_w.data = d;
	ev_signal_start(d->loop, &d->sighup_w);
	ev_timer_init(&d->ttl_w, on_ttl_tick, TTL_CHECK_INTERVAL, TTL_CHECK_INTERVAL);
	ev_timer_start(d->loop, &d->ttl_w);
	return 0;
}

static void daemon_stop(struct daemon *d)
{
	/* Connections first (their pending requests answer nothing more), then the log, which
	 * syncs what it holds, then the store. */
	web_server_free(d->web);
	/* The units keep running: the next start adopts them. */
	agent_free(d->agent);
	runner_free(d->runner);
	engine_free(d->engine);
	free(d->machine_id);
	free(d->public_ip);
	proxy_free(d->proxy);
	hcli_free(d->http);
	node_free(d->node);
	store_free(d->store);
	if (d->loop) {
		ev_signal_stop(d->loop, &d->sigterm_w);
		ev_signal_stop(d->loop, &d->sigint_w);
		ev_signal_stop(d->loop, &d->sighup_w);
		ev_timer_stop(d->loop, &d->ttl_w);
		ev_timer_stop(d->loop, &d->handoff_w);
	}
	config_cluster_release(&d->cluster);
}

int main(int argc, char **argv)
{
	struct daemon d;
	char err[512] = "";
	int r;

	memset(&d, 0, sizeof(d));
	r = config_load(&d.cfg, argc, argv, err, sizeof(err));
	if (r == CONFIG_EXIT_OK) {
		config_release(&d.cfg);
		return 0;
	}
	if (r < 0) {
		fprintf(stderr, "flotillad: %s\n", err[0] ? err : flt_strerror(r));
		config_release(&d.cfg);
		return 2;
	}
	log_set_level(log_level_parse(d.cfg.log_level));
	if (d.cfg.list_drivers) {
		struct buf b = BUF_INIT;

		r = drv_host_list(d.cfg.driver_dir, &b);
		fwrite(b.data ? b.data : "", 1, b.len, stdout);
		buf_release(&b);
		config_release(&d.cfg);
		return r < 0 ? 1 : 0;
	}
	signal(SIGPIPE, SIG_IGN);
	raise_fd_limit();

	d.loop = ev_default_loop(EVFLAG_AUTO);
	if (!d.loop) {
		log_error("cannot initialise the event loop");
		return 1;
	}
	log_info("flotillad %s starting: name '%s', data dir '%s'", FLT_VERSION, d.cfg.name,
	         d.cfg.data_dir);
	r = daemon_start(&d);
	if (r >= 0) {
		sd_notify(0, "READY=1");
		ev_run(d.loop, 0);
		sd_notify(0, "STOPPING=1");
	}
	daemon_stop(&d);
	ev_loop_destroy(d.loop);
	config_release(&d.cfg);
	log_info("flotillad stopped");
	return r < 0 ? 1 : 0;
}
