/* The exec driver's reading of a unit's [Service] options (see options.h): systemd's syntax for
 * time spans, signals, booleans, Exec*= prefixes and Environment= assignments. */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <flotilla/driver.h>

#include "../common/drvutil.h"
#include "cmdline.h"
#include "options.h"
#include "util/util.h"

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/* systemd time spans: "90", "90s", "1min 30s", "500ms", "infinity"; 0 = no limit. */
static int parse_timespan(const char *s, unsigned *ret_ms)
{
	static const struct {
		const char *suffix;
		double ms;
	} units[] = {{"usec", 0.001},    {"us", 0.001},     {"msec", 1},     {"ms", 1},
	             {"seconds", 1000},  {"second", 1000},  {"sec", 1000},   {"s", 1000},
	             {"minutes", 60000}, {"minute", 60000}, {"min", 60000},  {"m", 60000},
	             {"hours", 3600000}, {"hour", 3600000}, {"hr", 3600000}, {"h", 3600000},
	             {"days", 86400000}, {"day", 86400000}, {"d", 86400000}};
	double total = 0;
	bool any = false;

	while (*s == ' ')
		s++;
	if (!strcmp(s, "infinity")) {
		*ret_ms = 0;
		return 0;
	}
	while (*s) {
		char *end;
		double v = strtod(s, &end);
		size_t i, n;

		if (end == s || v < 0)
			return -EINVAL;
		s = end;
		while (*s == ' ')
			s++;
		n = strspn(s, "abcdefghijklmnopqrstuvwxyz");
		for (i = 0; n && i < ARRAY_SIZE(units); i++)
			if (strlen(units[i].suffix) == n && !strncmp(s, units[i].suffix, n))
				break;
		if (n && i == ARRAY_SIZE(units))
			return -EINVAL;
		total += v * (n ? units[i].ms : 1000);
		s += n;
		while (*s == ' ')
			s++;
		any = true;
	}
	if (!any || total > 4e9)
		return -EINVAL;
	*ret_ms = (unsigned)total;
	return 0;
}

static int parse_signal(const char *s)
{
	char *end;
	long v;

	if (!strncmp(s, "SIG", 3))
		s += 3;
	v = strtol(s, &end, 10);
	if (end != s && !*end)
		return v > 0 && v < NSIG ? (int)v : -EINVAL;
	for (int i = 1; i < NSIG; i++) {
		const char *n = sigabbrev_np(i);

		if (n && !strcmp(n, s))
			return i;
	}
	return -EINVAL;
}

static bool parse_bool(const char *s)
{
	return s &&
	       (!strcmp(s, "yes") || !strcmp(s, "true") || !strcmp(s, "on") || !strcmp(s, "1"));
}

static void cmdlist_free(struct exec_cmdlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].line);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

/* One Exec*= value: prefixes, then the line; an empty value resets the list (systemd). */
static int cmdlist_add(struct exec_cmdlist *l, const char *value)
{
	struct exec_cmd c = {0};
	struct exec_cmd *v;

	while (*value == ' ' || *value == '\t')
		value++;
	if (!*value) {
		cmdlist_free(l);
		return 0;
	}
	for (;; value++) {
		if (*value == '-')
			c.ignore_fail = true;
		else if (*value == '@')
			c.argv0_swap = true;
		else if (*value == ':')
			c.noexpand = true;
		else if (*value == '+' || *value == '!')
			c.privileged = *value == '+' || c.privileged;
		else
			break;
	}
	c.line = strdup(value);
	if (!c.line)
		return -ENOMEM;
	v = realloc(l->v, (l->n + 1) * sizeof(*v));
	if (!v) {
		free(c.line);
		return -ENOMEM;
	}
	l->v = v;
	l->v[l->n++] = c;
	return 0;
}

/* Environment=: assignments, later ones override earlier ones of the same name. */
static int env_set(char ***env, size_t *n, const char *assign)
{
	const char *eq = strchr(assign, '=');

	if (!eq || eq == assign)
		return 0; /* systemd ignores invalid assignments */
	for (size_t i = 0; i < *n; i++)
		if (!strncmp((*env)[i], assign, (size_t)(eq - assign) + 1)) {
			char *s = strdup(assign);

			if (!s)
				return -ENOMEM;
			free((*env)[i]);
			(*env)[i] = s;
			return 0;
		}
	return drv_strv_push(env, n, assign);
}

static int dupopt(char **dst, const char *v)
{
	free(*dst);
	*dst = v && *v ? strdup(v) : NULL;
	return v && *v && !*dst ? -ENOMEM : 0;
}

int exec_conf_parse(struct exec_conf *c, const struct flt_task *t, const char **why)
{
	size_t n_env = 0;
	int r = 0;

	c->type = TYPE_SIMPLE;
	c->kill_signal = SIGTERM;
	c->start_ms = c->stop_ms = EXEC_DEFAULT_TIMEOUT_MS;
	r = env_set(&c->env, &n_env, "PATH=" DEFAULT_PATH);
	for (size_t i = 0; r >= 0 && i < t->n_options; i++) {
		const struct flt_option *o = &t->options[i];
		const char *n = o->name, *v = o->value;

		if (strcmp(o->section, "Service"))
			continue;
		if (!strcmp(n, "ExecStartPre"))
			r = cmdlist_add(&c->pre, v);
		else if (!strcmp(n, "ExecStart"))
			r = cmdlist_add(&c->start, v);
		else if (!strcmp(n, "ExecStartPost"))
			r = cmdlist_add(&c->post, v);
		else if (!strcmp(n, "ExecStop"))
			r = cmdlist_add(&c->stop, v);
		else if (!strcmp(n, "ExecStopPost"))
			r = cmdlist_add(&c->stop_post, v);
		else if (!strcmp(n, "Type")) {
			if (!strcmp(v, "simple") || !strcmp(v, "exec") || !strcmp(v, "notify") ||
			    !strcmp(v, "idle") || !strcmp(v, "dbus"))
				c->type = TYPE_SIMPLE;
			else if (!strcmp(v, "oneshot"))
				c->type = TYPE_ONESHOT;
			else if (!strcmp(v, "forking"))
				c->type = TYPE_FORKING;
			else {
				*why = "unsupported Type=";
				r = -EINVAL;
			}
		} else if (!strcmp(n, "RemainAfterExit"))
			c->remain = parse_bool(v);
		else if (!strcmp(n, "TimeoutStartSec") || !strcmp(n, "TimeoutSec") ||
		         !strcmp(n, "TimeoutStopSec")) {
			unsigned ms;

			if (parse_timespan(v, &ms) < 0) {
				*why = "invalid timeout";
				r = -EINVAL;
			} else {
				if (strcmp(n, "TimeoutStopSec"))
					c->start_ms = ms;
				if (strcmp(n, "TimeoutStartSec"))
					c->stop_ms = ms;
			}
		} else if (!strcmp(n, "KillSignal")) {
			int s = parse_signal(v);

			if (s < 0) {
				*why = "invalid KillSignal=";
				r = -EINVAL;
			} else {
				c->kill_signal = s;
			}
		} else if (!strcmp(n, "Environment")) {
			char **words = NULL;

			r = cmdline_split(v, false, &words);
			if (r == -EINVAL)
				*why = "invalid Environment=";
			for (size_t k = 0; r >= 0 && words[k]; k++)
				r = env_set(&c->env, &n_env, words[k]);
			cmdline_free(words);
		} else if (!strcmp(n, "EnvironmentFile")) {
			size_t k = c->n_envfiles;

			if (!*v) {
				drv_strv_free(c->envfiles);
				c->envfiles = NULL;
				c->n_envfiles = 0;
			} else {
				r = drv_strv_push(&c->envfiles, &k, v);
				c->n_envfiles = k;
			}
		} else if (!strcmp(n, "WorkingDirectory"))
			r = dupopt(&c->dir, v);
		else if (!strcmp(n, "User"))
			r = dupopt(&c->user, v);
		else if (!strcmp(n, "Group"))
			r = dupopt(&c->group, v);
		else if (!strcmp(n, "PIDFile"))
			r = dupopt(&c->pidfile, v);
	}
	if (r >= 0 && !c->start.n && !(c->type == TYPE_ONESHOT)) {
		*why = "no ExecStart= in [Service]";
		r = -EINVAL;
	}
	if (r >= 0 && c->type != TYPE_ONESHOT && c->start.n > 1) {
		*why = "more than one ExecStart= is only allowed for Type=oneshot";
		r = -EINVAL;
	}
	return r;
}

void exec_conf_release(struct exec_conf *c)
{
	cmdlist_free(&c->pre);
	cmdlist_free(&c->start);
	cmdlist_free(&c->post);
	cmdlist_free(&c->stop);
	cmdlist_free(&c->stop_post);
	free(c->user);
	free(c->group);
	free(c->dir);
	free(c->pidfile);
	drv_strv_free(c->envfiles);
	drv_strv_free(c->env);
	*c = (struct exec_conf){0};
}
