/* flotillad's settings (see config.h). One option table drives the command line, the environment
 * and the config file, so a setting has the same name and meaning everywhere. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"
#include "util/log.h"
#include "util/util.h"

#ifndef FLT_SYSCONFDIR
#define FLT_SYSCONFDIR "/etc"
#endif
#ifndef FLT_VERSION
#define FLT_VERSION "0"
#endif

enum opt_type { OPT_STR, OPT_LIST, OPT_U64, OPT_BOOL };

struct opt {
	const char *name;
	enum opt_type type;
	size_t off;
	const char *def;
	const char *help;
};

#define O(n, t, f, d, h) {n, t, offsetof(struct config, f), d, h}
static const struct opt opts[] = {
	O("name", OPT_STR, name, "default", "human-readable name of this member"),
	O("data-dir", OPT_STR, data_dir, NULL, "path to the data directory (default: ${name}.etcd)"),
	O("listen-client-urls", OPT_LIST, listen_client_urls,
	  "http://127.0.0.1:2379,http://127.0.0.1:4001",
	  "URLs to serve the client API on (http://IP:PORT or unix://PATH)"),
	O("advertise-client-urls", OPT_LIST, advertise_client_urls,
	  "http://127.0.0.1:2379,http://127.0.0.1:4001", "client URLs told to the rest of the cluster"),
	O("listen-peer-urls", OPT_LIST, listen_peer_urls,
	  "http://127.0.0.1:2380,http://127.0.0.1:7001",
	  "URLs to listen on for peer traffic (a one-member cluster opens these defaults only when it grows)"),
	O("initial-advertise-peer-urls", OPT_LIST, initial_advertise_peer_urls,
	  "http://127.0.0.1:2380", "peer URLs told to the rest of the cluster"),
	O("initial-cluster", OPT_STR, initial_cluster, NULL,
	  "initial cluster configuration: name=peerURL,... (default: ${name}=<first peer URL>)"),
	O("initial-cluster-state", OPT_STR, initial_cluster_state, "new",
	  "'new' to bootstrap a cluster, 'existing' to join one"),
	O("initial-cluster-token", OPT_STR, initial_cluster_token, "etcd-cluster",
	  "token that tells this cluster apart from others during bootstrap"),
	O("snapshot-count", OPT_U64, snapshot_count, "100000",
	  "applied entries between two snapshots of the store"),
	O("heartbeat-interval", OPT_U64, heartbeat_interval, "100", "heartbeat interval in ms"),
	O("election-timeout", OPT_U64, election_timeout, "1000", "election timeout in ms"),
	O("max-watches", OPT_U64, max_watches, "100000", "most watches open at once"),
	O("max-request-bytes", OPT_U64, max_request_bytes, "1572864",
	  "largest request body accepted"),
	O("log-level", OPT_STR, log_level, "info", "error, warn, notice, info or debug"),
	O("config", OPT_STR, config_file, NULL,
	  "config file (default " FLT_SYSCONFDIR "/flotilla/flotilla.conf if it exists)"),
	O("enable-v2", OPT_BOOL, enable_v2, "true", "accepted for etcd compatibility: v2 is always on"),
	O("discovery", OPT_STR, discovery, NULL,
	  "discovery URL (etcd's v2 discovery protocol) used to bootstrap the cluster"),
	O("discovery-fallback", OPT_STR, discovery_fallback, "proxy",
	  "when the discovered cluster is full: 'proxy' or 'exit'"),
	O("proxy", OPT_STR, proxy, "off", "'off', 'on' (forward every call to the members) or 'readonly'"),
	O("proxy-refresh-interval", OPT_U64, proxy_refresh_interval, "30000",
	  "ms between refreshes of the members' client URLs (proxy)"),
	O("proxy-failure-wait", OPT_U64, proxy_failure_wait, "5000",
	  "ms a member that failed is not tried again (proxy)"),
	O("machine-id", OPT_STR, machine_id, NULL,
	  "this machine's id (default: /etc/machine-id when one daemon runs per host, else one kept "
	  "in the data dir)"),
	O("public-ip", OPT_STR, public_ip, NULL,
	  "address other machines and users reach this machine at (default: the default route's)"),
	O("metadata", OPT_STR, metadata, "", "machine metadata, e.g. region=us-east,disk=ssd"),
	O("agent", OPT_BOOL, agent, "true", "run units scheduled to this machine"),
	O("agent-ttl", OPT_U64, agent_ttl, "3000",
	  "ms without a heartbeat after which a machine is dead and its units move"),
	O("fence", OPT_BOOL, fence, "true",
	  "stop this machine's units when it loses the cluster for longer than the agent TTL plus two election timeouts"),
	O("scheduler-policy", OPT_STR, scheduler_policy, NULL,
	  "Lua file choosing among feasible machines (reloaded on SIGHUP; default: built-in)"),
	O("driver-dir", OPT_STR, driver_dir, FLT_LIBDIR "/flotilla/drivers",
	  "directory of runtime drivers (*.so)"),
	O("default-runtime", OPT_STR, default_runtime, "exec", "runtime of units that name none"),
	O("docker-host", OPT_STR, docker_host, "unix:///var/run/docker.sock",
	  "Docker Engine API endpoint"),
	O("rkt-path", OPT_STR, rkt_path, "/usr/bin/rkt", "the rkt command"),
	O("systemd-bus", OPT_STR, systemd_bus, "system", "'system' or 'user' bus of the systemd driver"),
	O("driver-opt", OPT_LIST, driver_opt, NULL,
	  "driver settings key=value,... (e.g. exec-shim=/path/flotilla-exec-shim)"),
	O("list-drivers", OPT_BOOL, list_drivers, "false",
	  "print the runtime drivers found in --driver-dir (and why any was refused), then exit"),
	O("memory", OPT_U64, memory, "0", "bytes of memory units may use here (0: all of it)"),
	O("cpus", OPT_U64, cpus, "0", "milli-CPUs units may use here (0: all of them)"),
};
#undef O

static void seterr(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

void strlist_release(struct strlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

int strlist_split(struct strlist *l, const char *s)
{
	strlist_release(l);
	while (*s) {
		const char *e = strchr(s, ',');
		size_t len = e ? (size_t)(e - s) : strlen(s);
		char **nv;

		while (len && isspace((unsigned char)*s))
			s++, len--;
		while (len && isspace((unsigned char)s[len - 1]))
			len--;
		if (len) {
			nv = realloc(l->v, (l->n + 1) * sizeof(*l->v));
			if (!nv)
				return -ENOMEM;
			l->v = nv;
			l->v[l->n] = strndup(s, len);
			if (!l->v[l->n])
				return -ENOMEM;
			l->n++;
		}
		if (!e)
			break;
		s = e + 1;
	}
	return 0;
}

static const struct opt *opt_find(const char *name, size_t len)
{
	for (size_t i = 0; i < ARRAY_SIZE(opts); i++)
		if (strlen(opts[i].name) == len && strncmp(opts[i].name, name, len) == 0)
			return &opts[i];
	return NULL;
}

/* Set one option from text. `from` says where the value came from, for the error message. */
static int opt_set(struct config *c, const struct opt *o, const char *val, const char *from,
		   char *err, size_t errlen)
{
	void *field = (char *)c + o->off;
	char *end;

	switch (o->type) {
	case OPT_STR: {
		char *dup = strdup(val);

		if (!dup)
			return -ENOMEM;
		free(*(char **)field);
		*(char **)field = dup;
		return 0;
	}
	case OPT_LIST:
		return strlist_split(field, val);
	case OPT_U64: {
		unsigned long long v;

		errno = 0;
		v = strtoull(val, &end, 10);
		if (errno || end == val || *end || val[0] == '-') {
			seterr(err, errlen, "invalid value '%s' for %s '%s': not a non-negative integer",
			       val, from, o->name);
			return -EINVAL;
		}
		*(uint64_t *)field = v;
		return 0;
	}
	case OPT_BOOL:
		if (!strcmp(val, "true") || !strcmp(val, "1") || !strcmp(val, "yes"))
			*(bool *)field = true;
		else if (!strcmp(val, "false") || !strcmp(val, "0") || !strcmp(val, "no"))
			*(bool *)field = false;
		else {
			seterr(err, errlen, "invalid value '%s' for %s '%s': not a boolean", val,
			       from, o->name);
			return -EINVAL;
		}
		return 0;
	}
	return -EINVAL;
}

static void usage(void)
{
	printf("usage: flotillad [flags]\n\n"
	       "Runs one flotilla node: an etcd v2 compatible key/value store member and (later)\n"
	       "the fleet-style scheduler and agent. Flags take --flag value, --flag=value or\n"
	       "-flag value; each can also be set as FLOTILLA_<FLAG> in the environment (dashes\n"
	       "as underscores, upper case) or as 'flag: value' in the config file.\n\n");
	for (size_t i = 0; i < ARRAY_SIZE(opts); i++)
		printf("  --%-30s %s%s%s\n", opts[i].name, opts[i].help,
		       opts[i].def ? ", default " : "", opts[i].def ? opts[i].def : "");
	printf("  --%-30s %s\n  --%-30s %s\n", "help", "print this help and exit", "version",
	       "print the version and exit");
}

/* Config file: one `flag: value` or `flag = value` per line (so simple YAML works), '#'
 * comments, blank lines ignored. */
static int load_file(struct config *c, const char *path, bool must_exist, char *err,
		     size_t errlen)
{
	FILE *f = fopen(path, "re");
	char *line = NULL;
	size_t cap = 0;
	unsigned lineno = 0;
	int r = 0;

	if (!f) {
		if (!must_exist && errno == ENOENT)
			return 0;
		seterr(err, errlen, "cannot open config file '%s': %s", path, strerror(errno));
		return -errno;
	}
	while (getline(&line, &cap, f) > 0) {
		char *p = line, *sep, *k, *v, *e;
		const struct opt *o;
		char from[300];

		lineno++;
		while (isspace((unsigned char)*p))
			p++;
		if (!*p || *p == '#')
			continue;
		sep = strpbrk(p, ":=");
		if (!sep) {
			seterr(err, errlen, "config file '%s' line %u: expected 'flag: value'", path,
			       lineno);
			r = -EINVAL;
			break;
		}
		k = p;
		e = sep;
		while (e > k && isspace((unsigned char)e[-1]))
			e--;
		*e = '\0';
		v = sep + 1;
		while (isspace((unsigned char)*v))
			v++;
		e = v + strlen(v);
		while (e > v && isspace((unsigned char)e[-1]))
			e--;
		*e = '\0';
		if (e - v >= 2 && (*v == '"' || *v == '\'') && e[-1] == *v) {
			e[-1] = '\0';
			v++;
		}
		o = opt_find(k, strlen(k));
		if (!o || !strcmp(k, "config")) {
			seterr(err, errlen, "config file '%s' line %u: unknown setting '%s'", path,
			       lineno, k);
			r = -EINVAL;
			break;
		}
		snprintf(from, sizeof(from), "config file '%s' line %u setting", path, lineno);
		r = opt_set(c, o, v, from, err, errlen);
		if (r < 0)
			break;
	}
	free(line);
	fclose(f);
	return r;
}

static int load_env(struct config *c, char *err, size_t errlen)
{
	for (size_t i = 0; i < ARRAY_SIZE(opts); i++) {
		char env[64] = "FLOTILLA_";
		size_t n = strlen(env);
		const char *v;
		int r;

		for (const char *p = opts[i].name; *p && n < sizeof(env) - 1; p++)
			env[n++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
		env[n] = '\0';
		v = getenv(env);
		if (!v || !strcmp(opts[i].name, "config"))
			continue;
		r = opt_set(c, &opts[i], v, "environment variable for", err, errlen);
		if (r < 0)
			return r;
	}
	return 0;
}

/* Walk argv; with `only_config` just find --config (it must be read before the other flags
 * so that flags win over the file). */
static int load_args(struct config *c, int argc, char **argv, bool only_config, char *err,
		     size_t errlen)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *name, *eq, *val;
		const struct opt *o;
		size_t len;
		int r;

		if (a[0] != '-' || !a[1]) {
			seterr(err, errlen, "unexpected argument '%s'", a);
			return -EINVAL;
		}
		name = a + (a[1] == '-' ? 2 : 1);
		/* --help and --version act in the second pass, after every flag was checked. */
		if (!strcmp(name, "help") || !strcmp(name, "h")) {
			if (only_config)
				continue;
			usage();
			return CONFIG_EXIT_OK;
		}
		if (!strcmp(name, "version")) {
			if (only_config)
				continue;
			printf("flotillad %s (etcd v2 API 3.4)\n", FLT_VERSION);
			return CONFIG_EXIT_OK;
		}
		eq = strchr(name, '=');
		len = eq ? (size_t)(eq - name) : strlen(name);
		o = opt_find(name, len);
		if (!o) {
			seterr(err, errlen, "unknown flag '%.*s' (see --help)", (int)len, name);
			return -EINVAL;
		}
		if (eq)
			val = eq + 1;
		else if (o->type == OPT_BOOL && (i + 1 >= argc || argv[i + 1][0] == '-'))
			val = "true";
		else if (i + 1 < argc)
			val = argv[++i];
		else {
			seterr(err, errlen, "flag '%s' needs a value", o->name);
			return -EINVAL;
		}
		if (only_config != !strcmp(o->name, "config"))
			continue;
		r = opt_set(c, o, val, "flag", err, errlen);
		if (r < 0)
			return r;
	}
	return CONFIG_OK;
}

int config_load(struct config *c, int argc, char **argv, char *err, size_t errlen)
{
	const char *env_conf;
	int r;

	memset(c, 0, sizeof(*c));
	for (size_t i = 0; i < ARRAY_SIZE(opts); i++) {
		if (!opts[i].def)
			continue;
		r = opt_set(c, &opts[i], opts[i].def, "default", err, errlen);
		if (r < 0)
			return r;
	}
	r = load_args(c, argc, argv, true, err, errlen);
	if (r != CONFIG_OK)
		return r;
	env_conf = getenv("FLOTILLA_CONFIG");
	if (c->config_file)
		r = load_file(c, c->config_file, true, err, errlen);
	else if (env_conf)
		r = load_file(c, env_conf, true, err, errlen);
	else
		r = load_file(c, FLT_SYSCONFDIR "/flotilla/flotilla.conf", false, err, errlen);
	if (r < 0)
		return r;
	r = load_env(c, err, errlen);
	if (r < 0)
		return r;
	r = load_args(c, argc, argv, false, err, errlen);
	if (r != CONFIG_OK)
		return r;

	if (!c->data_dir) {
		struct buf b = BUF_INIT;

		if (buf_printf(&b, "%s.etcd", c->name) < 0)
			return -ENOMEM;
		c->data_dir = buf_steal(&b);
	}
	if (!c->initial_cluster && !c->discovery) {
		struct buf b = BUF_INIT;

		if (buf_printf(&b, "%s=%s", c->name,
			       c->initial_advertise_peer_urls.n ? c->initial_advertise_peer_urls.v[0]
								: "http://127.0.0.1:2380") < 0)
			return -ENOMEM;
		c->initial_cluster = buf_steal(&b);
	}
	if (strcmp(c->initial_cluster_state, "new") &&
	    strcmp(c->initial_cluster_state, "existing")) {
		seterr(err, errlen, "invalid initial-cluster-state '%s': want 'new' or 'existing'",
		       c->initial_cluster_state);
		return -EINVAL;
	}
	if (log_level_parse(c->log_level) < 0) {
		seterr(err, errlen, "invalid log-level '%s': want error, warn, notice, info or debug",
		       c->log_level);
		return -EINVAL;
	}
	if (!c->listen_client_urls.n) {
		seterr(err, errlen, "listen-client-urls is empty: nothing to serve clients on");
		return -EINVAL;
	}
	if (c->election_timeout < 5 * c->heartbeat_interval || !c->heartbeat_interval) {
		seterr(err, errlen,
		       "election-timeout (%llu ms) must be at least 5 times heartbeat-interval (%llu ms)",
		       (unsigned long long)c->election_timeout,
		       (unsigned long long)c->heartbeat_interval);
		return -EINVAL;
	}
	return CONFIG_OK;
}

void config_release(struct config *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < ARRAY_SIZE(opts); i++) {
		void *field = (char *)c + opts[i].off;

		if (opts[i].type == OPT_STR) {
			free(*(char **)field);
			*(char **)field = NULL;
		} else if (opts[i].type == OPT_LIST) {
			strlist_release(field);
		}
	}
}

/* ---- --initial-cluster ---- */

static uint64_t fnv1a(uint64_t h, const void *data, size_t len)
{
	const unsigned char *p = data;

	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

#define FNV_BASIS 0xcbf29ce484222325ULL

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

uint64_t config_member_id(const char *urls, const char *token)
{
	struct strlist l = {0};
	uint64_t h = FNV_BASIS;

	if (strlist_split(&l, urls) == 0 && l.n)
		qsort(l.v, l.n, sizeof(*l.v), cmp_str);
	for (size_t i = 0; i < l.n; i++)
		h = fnv1a(h, l.v[i], strlen(l.v[i]) + 1); /* the NUL separates the URLs */
	strlist_release(&l);
	h = fnv1a(h, token, strlen(token));
	return h ? h : 1;
}

uint64_t config_cluster_id(const uint64_t *ids, size_t n, const char *token)
{
	uint64_t *s = malloc((n ? n : 1) * sizeof(*s)), h = FNV_BASIS;

	if (s) {
		memcpy(s, ids, n * sizeof(*s));
		qsort(s, n, sizeof(*s), cmp_u64);
		for (size_t i = 0; i < n; i++) {
			unsigned char b[8];

			for (int j = 0; j < 8; j++)
				b[j] = (unsigned char)(s[i] >> (8 * j));
			h = fnv1a(h, b, sizeof(b));
		}
		free(s);
	}
	h = fnv1a(h, token, strlen(token));
	return h ? h : 1;
}

void config_cluster_release(struct config_cluster *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n; i++) {
		free(c->v[i].name);
		free(c->v[i].peer_urls);
	}
	free(c->v);
	memset(c, 0, sizeof(*c));
}

static int cluster_add(struct config_cluster *c, const char *name, size_t nlen, const char *url,
                       size_t ulen)
{
	struct config_member *m = NULL;
	struct buf b = BUF_INIT;

	for (size_t i = 0; i < c->n; i++)
		if (strlen(c->v[i].name) == nlen && !strncmp(c->v[i].name, name, nlen))
			m = &c->v[i];
	if (!m) {
		struct config_member *nv = realloc(c->v, (c->n + 1) * sizeof(*nv));

		if (!nv)
			return -ENOMEM;
		c->v = nv;
		m = &c->v[c->n];
		memset(m, 0, sizeof(*m));
		m->name = strndup(name, nlen);
		if (!m->name)
			return -ENOMEM;
		c->n++;
	}
	if (buf_printf(&b, "%s%s%.*s", m->peer_urls ? m->peer_urls : "", m->peer_urls ? "," : "",
	               (int)ulen, url) < 0) {
		buf_release(&b);
		return -ENOMEM;
	}
	free(m->peer_urls);
	m->peer_urls = buf_steal(&b);
	return 0;
}

int config_parse_cluster(const char *initial_cluster, const char *token, struct config_cluster *ret,
                         char *err, size_t errlen)
{
	struct config_cluster c = {0};
	struct strlist items = {0};
	uint64_t *ids = NULL;
	int r;

	r = strlist_split(&items, initial_cluster);
	if (r < 0)
		goto out;
	if (!items.n) {
		seterr(err, errlen, "invalid initial-cluster '%s': no member", initial_cluster);
		r = -EINVAL;
		goto out;
	}
	for (size_t i = 0; i < items.n; i++) {
		const char *it = items.v[i], *eq = strchr(it, '=');

		if (!eq || eq == it || !eq[1]) {
			seterr(err, errlen,
			       "invalid initial-cluster item '%s': want name=http://IP:PORT", it);
			r = -EINVAL;
			goto out;
		}
		r = cluster_add(&c, it, (size_t)(eq - it), eq + 1, strlen(eq + 1));
		if (r < 0)
			goto out;
	}
	ids = calloc(c.n, sizeof(*ids));
	if (!ids) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < c.n; i++) {
		c.v[i].id = config_member_id(c.v[i].peer_urls, token);
		ids[i] = c.v[i].id;
		for (size_t j = 0; j < i; j++) {
			if (c.v[j].id != c.v[i].id)
				continue;
			seterr(err, errlen,
			       "invalid initial-cluster: members '%s' and '%s' have the same peer "
			       "URLs",
			       c.v[j].name, c.v[i].name);
			r = -EINVAL;
			goto out;
		}
	}
	c.cluster_id = config_cluster_id(ids, c.n, token);
	*ret = c;
	memset(&c, 0, sizeof(c));
	r = 0;
out:
	free(ids);
	strlist_release(&items);
	config_cluster_release(&c);
	return r;
}
