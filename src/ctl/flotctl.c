/* flotctl: the command-line client of a flotilla (or etcd v2) cluster. This file holds main, the
 * global flags, the command table and help, and the connect step shared by all commands. Command
 * families live in their own files and only export a table of struct ctl_cmd. */
#include <curl/curl.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <jansson.h>

#include "ctl/client.h"
#include "ctl/ctl.h"
#include "util/util.h"

#define CTL_DEFAULT_ENDPOINTS "http://127.0.0.1:2379,http://127.0.0.1:4001"

/* Order matches enum ctl_gopt. */
static const struct ctl_flag global_flags[] = {
    [CTL_G_DEBUG] = {"debug", CTL_F_BOOL, NULL,
                     "print every request as an equivalent curl command on stderr", NULL},
    [CTL_G_NOSYNC] = {"no-sync", CTL_F_BOOL, NULL,
                      "use the given endpoints as they are instead of asking the cluster for its "
                      "members first",
                      NULL},
    [CTL_G_OUTPUT] = {"output, o", CTL_F_STRING, "format",
                      "how to print responses: simple, extended or json", "\"simple\""},
    [CTL_G_DISCOVERY] = {"discovery-srv, D", CTL_F_STRING, "domain",
                         "find endpoints through DNS SRV records (not supported)", NULL},
    [CTL_G_INSECURE_DISCOVERY] = {"insecure-discovery", CTL_F_BOOL, NULL,
                                  "accept plain-http endpoints found through SRV records", NULL},
    [CTL_G_PEERS] = {"peers, C", CTL_F_STRING, "urls", "old name of --endpoints", NULL},
    [CTL_G_ENDPOINT] = {"endpoint", CTL_F_STRING, "urls",
                        "old name of --endpoints; the endpoint of the fleet commands", NULL},
    [CTL_G_ENDPOINTS] = {"endpoints", CTL_F_STRING, "urls",
                         "comma-separated client URLs of cluster members",
                         "\"" CTL_DEFAULT_ENDPOINTS "\""},
    [CTL_G_CERT] = {"cert-file", CTL_F_STRING, "file", "client certificate for HTTPS endpoints",
                    NULL},
    [CTL_G_KEY] = {"key-file", CTL_F_STRING, "file", "private key of --cert-file", NULL},
    [CTL_G_CA] = {"ca-file", CTL_F_STRING, "file",
                  "CA bundle that HTTPS endpoints must be signed by", NULL},
    [CTL_G_USERNAME] = {"username, u", CTL_F_STRING, "user[:password]",
                        "authenticate; the password is asked for when not given", NULL},
    [CTL_G_TIMEOUT] = {"timeout", CTL_F_DURATION, "duration",
                       "how long one request may wait for its response", "2s"},
    [CTL_G_TOTAL_TIMEOUT] = {"total-timeout", CTL_F_DURATION, "duration",
                             "how long a command may take in all (watches excepted)", "5s"},
    [CTL_G_TUNNEL] = {"tunnel", CTL_F_STRING, "host[:port]",
                      "fleet commands: reach the endpoint through an ssh forward via this host",
                      NULL},
    [CTL_G_SSH_USERNAME] = {"ssh-username", CTL_F_STRING, "user",
                            "fleet commands: user for ssh and --tunnel", "\"core\""},
    [CTL_G_SSH_TIMEOUT] = {"ssh-timeout", CTL_F_STRING, "seconds",
                           "fleet commands: time allowed to set up an ssh connection", "10.0"},
    [CTL_G_STRICT_HOST_KEY] = {"strict-host-key-checking", CTL_F_BOOL, NULL,
                               "fleet commands: verify ssh host keys (=false to skip)", "true"},
    [CTL_G_KNOWN_HOSTS] = {"known-hosts-file", CTL_F_STRING, "file",
                           "fleet commands: known hosts file for ssh", NULL},
    [CTL_G_REQUEST_TIMEOUT] = {"request-timeout", CTL_F_STRING, "seconds",
                               "fleet commands: time allowed for one request", "3.0"},
    [CTL_G_VERSION] = {"version, v", CTL_F_BOOL, NULL, "print the version and exit", NULL},
};

struct cmd_family {
	const struct ctl_cmd *cmds;
	const size_t *n;
};

static const struct cmd_family families[] = {
    {ctl_keys_cmds, &ctl_keys_ncmds},
    {ctl_member_cmds, &ctl_member_ncmds},
    {ctl_fleet_cmds, &ctl_fleet_ncmds},
};

void ctl_oom(void)
{
	fputs("flotctl: out of memory\n", stderr);
	exit(1);
}

void cb_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = buf_vprintf(b, fmt, ap);
	va_end(ap);
	if (r < 0)
		ctl_oom();
}

void ctl_write(FILE *f, const struct buf *b)
{
	if (b->len)
		fwrite(b->data, 1, b->len, f);
	fflush(f);
}

int ctl_fail_msg(int code, const char *msg)
{
	fprintf(stderr, "Error:  %s\n", msg);
	return code;
}

int ctl_fail(struct ctl *ctl, int code, const struct ctl_error *err)
{
	(void)ctl;
	fprintf(stderr, "Error:  %s\n", err->msg.data ? err->msg.data : "");
	if (err->cluster)
		fprintf(stderr, "%s\n", err->detail.data ? err->detail.data : "");
	return code;
}

int64_t ctl_deadline(const struct ctl *ctl)
{
	int64_t t = ctl->g[CTL_G_TOTAL_TIMEOUT].ns;

	/* Go's context.WithTimeout(0) is already expired; keep that */
	return flt_monotime_ns() + (t > 0 ? t : 1);
}

/* ---- help ---- */

static const struct ctl_cmd *find_cmd(const char *name)
{
	for (size_t f = 0; f < ARRAY_SIZE(families); f++)
		for (size_t i = 0; i < *families[f].n; i++)
			if (!strcmp(families[f].cmds[i].name, name))
				return &families[f].cmds[i];
	return NULL;
}

static void app_help(FILE *out)
{
	struct buf b = BUF_INIT;
	size_t w = 4;

	for (size_t f = 0; f < ARRAY_SIZE(families); f++)
		for (size_t i = 0; i < *families[f].n; i++)
			if (strlen(families[f].cmds[i].name) > w)
				w = strlen(families[f].cmds[i].name);
	cb_puts(&b,
	        "NAME:\n   flotctl - command-line client for a flotilla cluster (etcd v2 "
	        "compatible)\n\n"
	        "USAGE:\n   flotctl [global options] command [command options] [arguments...]\n\n"
	        "VERSION:\n   " FLT_VERSION "\n\nCOMMANDS:\n");
	for (size_t f = 0; f < ARRAY_SIZE(families); f++)
		for (size_t i = 0; i < *families[f].n; i++)
			cb_printf(&b, "   %-*s  %s\n", (int)w + 3, families[f].cmds[i].name,
			          families[f].cmds[i].summary);
	cb_printf(&b, "   %-*s  %s\n", (int)w + 3, "help, h",
	          "list the commands, or explain one: flotctl help <command>");
	cb_puts(&b, "\nGLOBAL OPTIONS:\n");
	ctl_flags_help(&b, global_flags, CTL_G_VERSION, true, true);
	cb_puts(&b,
	        "\nENVIRONMENT:\n   FLOTCTL_ENDPOINTS, FLOTCTL_ENDPOINT, ETCDCTL_ENDPOINTS  "
	        "endpoints when --endpoints is not given\n"
	        "   FLOTCTL_ENDPOINT, FLOTCTL_TUNNEL, FLOTCTL_SSH_USERNAME, ...  fleet commands: "
	        "a fleetctl\n      global flag not given (FLEETCTL_<NAME> is read after "
	        "FLOTCTL_<NAME>, except for\n      the endpoint)\n");
	ctl_write(out, &b);
	buf_release(&b);
}

static void cmd_help(FILE *out, const struct ctl_cmd *c)
{
	struct buf b = BUF_INIT;

	cb_printf(&b, "NAME:\n   flotctl %s - %s\n\nUSAGE:\n   flotctl %s%s %s\n", c->name,
	          c->summary, c->name, c->n_flags ? " [command options]" : "", c->args_usage);
	if (c->description)
		cb_printf(&b, "\nDESCRIPTION:\n   %s\n", c->description);
	if (c->n_flags) {
		cb_puts(&b, "\nOPTIONS:\n");
		ctl_flags_help(&b, c->flags, c->n_flags, false, false);
	}
	ctl_write(out, &b);
	buf_release(&b);
}

/* ---- connecting ---- */

static void split_endpoints(const char *s, char ***ret, size_t *ret_n)
{
	size_t n = 1, i = 0;
	char **v;
	const char *p;

	for (p = s; *p; p++)
		n += *p == ',';
	v = calloc(n, sizeof(*v));
	if (!v)
		ctl_oom();
	for (p = s;; p++) {
		const char *e = p + strcspn(p, ",");

		v[i] = strndup(p, (size_t)(e - p));
		if (!v[i++])
			ctl_oom();
		if (!*e)
			break;
		p = e;
	}
	*ret = v;
	*ret_n = n;
}

static void free_strv(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* etcdctl's precedence, with flotctl's own variables ahead of etcdctl's. */
static const char *endpoints_value(const struct ctl *ctl)
{
	const char *cands[] = {
	    ctl->g[CTL_G_ENDPOINTS].s,   getenv("FLOTCTL_ENDPOINTS"), getenv("FLOTCTL_ENDPOINT"),
	    getenv("ETCDCTL_ENDPOINTS"), ctl->g[CTL_G_ENDPOINT].s,    getenv("ETCDCTL_ENDPOINT"),
	    ctl->g[CTL_G_PEERS].s,       getenv("ETCDCTL_PEERS"),
	};

	for (size_t i = 0; i < ARRAY_SIZE(cands); i++)
		if (cands[i] && *cands[i])
			return cands[i];
	return CTL_DEFAULT_ENDPOINTS;
}

/* Read a password from the terminal without echo, like etcdctl's prompt. */
static char *ask_password(void)
{
	FILE *tty = fopen("/dev/tty", "r+");
	struct termios old, quiet;
	struct buf b = BUF_INIT;
	bool restore = false;
	int c;

	if (!tty)
		return NULL;
	fputs("Password: ", tty);
	fflush(tty);
	if (tcgetattr(fileno(tty), &old) == 0) {
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		restore = tcsetattr(fileno(tty), TCSAFLUSH, &quiet) == 0;
	}
	while ((c = fgetc(tty)) != EOF && c != '\n')
		cb_putc(&b, (char)c);
	if (restore)
		tcsetattr(fileno(tty), TCSAFLUSH, &old);
	fputc('\n', tty);
	fclose(tty);
	cb_puts(&b, "");
	return buf_steal(&b);
}

/* Ask the cluster for its members and use their client URLs (Go client's Sync). Returns 0 when
 * etcdctl would carry on (including failures it ignores) or an exit code. */
static int sync_members(struct ctl *ctl)
{
	struct ctl_req req = {.method = "GET", .path = "/v2/members"};
	struct ctl_resp resp;
	struct ctl_error err;
	json_t *root = NULL, *members;
	char **urls = NULL;
	size_t n = 0, cap = 0;
	int ret = 0;

	ctl_resp_init(&resp);
	ctl_error_init(&err);
	req.deadline = ctl_deadline(ctl);
	if (ctl_client_do(ctl->client, &req, &resp, &err) < 0) {
		if (err.conn)
			ret = ctl_fail(ctl, CTL_EXIT_BADCONN, &err);
		goto out;
	}
	if (resp.status != 200)
		goto out; /* etcdctl ignores a failed sync that is not a connection error */
	root = json_loadb(resp.body.data ? resp.body.data : "", resp.body.len, 0, NULL);
	if (!root || !json_is_object(root))
		goto out;
	members = json_object_get(root, "members");
	if (json_is_array(members)) {
		size_t i, j;
		json_t *m, *u;

		json_array_foreach(members, i, m)
		{
			json_array_foreach(json_object_get(m, "clientURLs"), j, u)
			{
				if (!json_is_string(u))
					continue;
				if (n == cap) {
					char **nu;

					cap = cap ? cap * 2 : 4;
					nu = realloc(urls, cap * sizeof(*urls));
					if (!nu)
						ctl_oom();
					urls = nu;
				}
				urls[n++] = strdup(json_string_value(u));
				if (!urls[n - 1])
					ctl_oom();
			}
		}
	}
	if (n == 0) {
		struct buf eps = BUF_INIT;

		ctl_client_endpoints(ctl->client, ",", &eps);
		fprintf(stderr, "etcd cluster has no published client endpoints.\n");
		fprintf(
		    stderr,
		    "Try '--no-sync' if you want to access non-published client endpoints(%s).\n",
		    eps.data ? eps.data : "");
		buf_release(&eps);
		ret = ctl_fail_msg(CTL_EXIT_SERVERERR, "client: no endpoints available");
		goto out;
	} else {
		struct buf perr = BUF_INIT;

		/* a member URL that does not parse makes the sync fail, which etcdctl ignores */
		ctl_client_set_endpoints(ctl->client, urls, n, &perr);
		buf_release(&perr);
	}
out:
	free_strv(urls, n);
	json_decref(root);
	ctl_resp_release(&resp);
	ctl_error_release(&err);
	return ret;
}

int ctl_connect(struct ctl *ctl)
{
	struct ctl_client_opts o = {0};
	struct buf err = BUF_INIT, eps = BUF_INIT;
	char **urls;
	size_t n;
	const char *user;
	int r;

	if (ctl->client)
		return 0;
	if ((ctl->g[CTL_G_DISCOVERY].s && *ctl->g[CTL_G_DISCOVERY].s) ||
	    (getenv("ETCDCTL_DISCOVERY_SRV") && *getenv("ETCDCTL_DISCOVERY_SRV"))) {
		fputs("flotctl: DNS SRV discovery is not supported, give --endpoints\n", stderr);
		return CTL_EXIT_BADARGS;
	}
	split_endpoints(endpoints_value(ctl), &urls, &n);
	o.timeout_ns = ctl->g[CTL_G_TIMEOUT].ns;
	o.total_timeout_ns = ctl->g[CTL_G_TOTAL_TIMEOUT].ns;
	o.debug = ctl->g[CTL_G_DEBUG].b;
	o.cert_file = ctl->g[CTL_G_CERT].s ? ctl->g[CTL_G_CERT].s : getenv("ETCDCTL_CERT_FILE");
	o.key_file = ctl->g[CTL_G_KEY].s ? ctl->g[CTL_G_KEY].s : getenv("ETCDCTL_KEY_FILE");
	o.ca_file = ctl->g[CTL_G_CA].s ? ctl->g[CTL_G_CA].s : getenv("ETCDCTL_CA_FILE");
	user = ctl->g[CTL_G_USERNAME].s && *ctl->g[CTL_G_USERNAME].s ? ctl->g[CTL_G_USERNAME].s
	                                                             : getenv("ETCDCTL_USERNAME");
	if (user && *user) {
		/* ctl->password owns "user\0password": the client borrows both halves */
		const char *colon = strchr(user, ':');
		size_t ul = colon ? (size_t)(colon - user) : strlen(user), pl;
		char *pass = colon ? strdup(colon + 1) : ask_password();

		if (!pass) {
			fputs("flotctl: cannot read the password from the terminal\n", stderr);
			free_strv(urls, n);
			return CTL_EXIT_BADARGS;
		}
		pl = strlen(pass);
		ctl->password = malloc(ul + pl + 2);
		if (!ctl->password)
			ctl_oom();
		memcpy(ctl->password, user, ul);
		ctl->password[ul] = '\0';
		memcpy(ctl->password + ul + 1, pass, pl + 1);
		free(pass);
		o.username = ctl->password;
		o.password = ctl->password + ul + 1;
	}
	r = ctl_client_new(&o, urls, n, &ctl->client, &err);
	free_strv(urls, n);
	if (r < 0) {
		fprintf(stderr, "%s\n", err.data);
		buf_release(&err);
		return CTL_EXIT_BADARGS;
	}
	if (!ctl->g[CTL_G_NOSYNC].b) {
		if (o.debug) {
			ctl_client_endpoints(ctl->client, ",", &eps);
			fprintf(stderr, "start to sync cluster using endpoints(%s)\n", eps.data);
			buf_clear(&eps);
		}
		r = sync_members(ctl);
		if (r) {
			buf_release(&eps);
			buf_release(&err);
			return r;
		}
		if (o.debug) {
			ctl_client_endpoints(ctl->client, ",", &eps);
			fprintf(stderr, "got endpoints(%s) after sync\n", eps.data ? eps.data : "");
			buf_clear(&eps);
		}
	}
	if (o.debug) {
		ctl_client_endpoints(ctl->client, ", ", &eps);
		fprintf(stderr, "Cluster-Endpoints: %s\n", eps.data ? eps.data : "");
	}
	buf_release(&eps);
	buf_release(&err);
	return 0;
}

/* ---- main ---- */

static int run_cmd(struct ctl *ctl, const struct ctl_cmd *c, int argc, char **argv)
{
	struct ctl_fval *vals = calloc(c->n_flags + 1, sizeof(*vals));
	char **args = calloc((size_t)argc + 1, sizeof(*args));
	struct buf err = BUF_INIT;
	bool help = false;
	int n, first, ret;

	if (!vals || !args)
		ctl_oom();
	n = ctl_flags_reorder(c->flags, c->n_flags, argc, argv, args);
	first = ctl_flags_parse(c->flags, c->n_flags, vals, n, args, &help, &err);
	if (first >= 0 && ctl_flags_normalize(c->flags, c->n_flags, vals, &err) < 0)
		first = -EINVAL;
	if (first < 0) {
		printf("Incorrect Usage: %s\n\n", err.data);
		cmd_help(stdout, c);
		fprintf(stderr, "%s\n", err.data);
		ret = CTL_EXIT_BADARGS;
	} else if (help) {
		cmd_help(stdout, c);
		ret = CTL_EXIT_OK;
	} else {
		ret = c->run(ctl, vals, n - first, args + first);
	}
	buf_release(&err);
	free(vals);
	free(args);
	return ret;
}

static int no_topic(const char *name)
{
	fprintf(stderr, "No help topic for '%s'\n", name);
	return CTL_EXIT_NOCMD;
}

int main(int argc, char **argv)
{
	struct ctl ctl = {.gdefs = global_flags};
	struct buf err = BUF_INIT;
	const struct ctl_cmd *c;
	bool help = false;
	int first, ret;

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fputs("flotctl: cannot initialize libcurl\n", stderr);
		return 1;
	}
	first = ctl_flags_parse(global_flags, CTL_G_COUNT, ctl.g, argc - 1, argv + 1, &help, &err);
	if (first < 0) {
		printf("Incorrect Usage. %s\n\n", err.data);
		app_help(stdout);
		fprintf(stderr, "%s\n", err.data);
		ret = CTL_EXIT_BADARGS;
		goto out;
	}
	if (ctl_flags_normalize(global_flags, CTL_G_COUNT, ctl.g, &err) < 0) {
		printf("%s\n", err.data);
		app_help(stdout);
		fprintf(stderr, "%s\n", err.data);
		ret = CTL_EXIT_BADARGS;
		goto out;
	}
	first += 1;
	if (!ctl.g[CTL_G_TIMEOUT].seen)
		ctl.g[CTL_G_TIMEOUT].ns = 2000000000LL;
	if (!ctl.g[CTL_G_TOTAL_TIMEOUT].seen)
		ctl.g[CTL_G_TOTAL_TIMEOUT].ns = 5000000000LL;
	ctl.output = ctl.g[CTL_G_OUTPUT].seen ? ctl.g[CTL_G_OUTPUT].s : "simple";
	ret = CTL_EXIT_OK;
	/* urfave/cli's order: help, then version, then "no command means help" */
	if (help) {
		app_help(stdout);
		goto out;
	}
	if (ctl.g[CTL_G_VERSION].b) {
		printf("flotctl version: %s\nAPI version: 2\n", FLT_VERSION);
		goto out;
	}
	if (first >= argc) {
		app_help(stdout);
		goto out;
	}
	if (!strcmp(argv[first], "help") || !strcmp(argv[first], "h")) {
		if (first + 1 >= argc) {
			app_help(stdout);
		} else if ((c = find_cmd(argv[first + 1]))) {
			cmd_help(stdout, c);
		} else {
			ret = no_topic(argv[first + 1]);
		}
		goto out;
	}
	c = find_cmd(argv[first]);
	if (!c) {
		ret = no_topic(argv[first]);
		goto out;
	}
	ret = run_cmd(&ctl, c, argc - first - 1, argv + first + 1);
out:
	fflush(stdout);
	ctl_client_free(ctl.client);
	free(ctl.password);
	buf_release(&err);
	curl_global_cleanup();
	return ret;
}
