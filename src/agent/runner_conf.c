/* The runner's reading of a unit file: the settings it acts on (Restart=, RestartSec=, the start
 * limit, TimeoutStopSec=, Requires=/After=/BindsTo=, the runtime), with systemd's time spans and
 * specifiers expanded, and the small string helpers the runner shares. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "agent/runner_int.h"
#include "unit/unit.h"
#include "util/err.h"
#include "util/util.h"

int ru_set_str(char **dst, const char *src)
{
	char *c = NULL;

	if (src && !(c = strdup(src)))
		return -ENOMEM;
	free(*dst);
	*dst = c;
	return 0;
}

void ru_strv_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* Append the space-separated unit names of every `section`.`key` to *v. */
static int strv_add_words(const struct unit_file *uf, const char *section, const char *key,
                          char ***v, size_t *n)
{
	for (size_t i = 0; i < uf->n; i++) {
		const char *p;

		if (strcmp(uf->v[i].section, section) || strcmp(uf->v[i].name, key))
			continue;
		p = uf->v[i].value;
		while (*p) {
			size_t len = strcspn(p, " \t");
			char **nv;

			if (len) {
				nv = realloc(*v, (*n + 1) * sizeof(*nv));
				if (!nv)
					return -ENOMEM;
				*v = nv;
				nv[*n] = strndup(p, len);
				if (!nv[*n])
					return -ENOMEM;
				(*n)++;
			}
			p += len;
			p += strspn(p, " \t");
		}
	}
	return 0;
}

/* systemd's time spans: "100ms", "5s", "1min 30s", a bare number is seconds; "infinity".
 * Returns 0 and usec, or FLT_EINVAL. */
static int parse_timespan(const char *s, uint64_t *ret_usec, bool *ret_infinity)
{
	static const struct {
		const char *suffix;
		uint64_t usec;
	} units[] = {
	    {"usec", 1},
	    {"us", 1},
	    {"msec", 1000},
	    {"ms", 1000},
	    {"seconds", 1000000},
	    {"second", 1000000},
	    {"sec", 1000000},
	    {"s", 1000000},
	    {"minutes", 60000000},
	    {"minute", 60000000},
	    {"min", 60000000},
	    {"m", 60000000},
	    {"hours", 3600000000ULL},
	    {"hour", 3600000000ULL},
	    {"hr", 3600000000ULL},
	    {"h", 3600000000ULL},
	    {"days", 86400000000ULL},
	    {"day", 86400000000ULL},
	    {"d", 86400000000ULL},
	};
	uint64_t total = 0;
	bool any = false;

	*ret_infinity = false;
	s += strspn(s, " \t");
	if (!strcmp(s, "infinity")) {
		*ret_infinity = true;
		*ret_usec = 0;
		return 0;
	}
	while (*s) {
		char *end;
		double v = strtod(s, &end);
		uint64_t mul = 1000000;
		size_t i;

		if (end == s || v < 0)
			return FLT_EINVAL;
		s = end + strspn(end, " \t");
		for (i = 0; i < ARRAY_SIZE(units); i++) {
			size_t n = strlen(units[i].suffix);

			if (!strncmp(s, units[i].suffix, n) &&
			    (s[n] == '\0' || s[n] == ' ' || s[n] == '\t' ||
			     (s[n] >= '0' && s[n] <= '9'))) {
				mul = units[i].usec;
				s += n;
				break;
			}
		}
		if (i == ARRAY_SIZE(units) && *s && !(*s >= '0' && *s <= '9'))
			return FLT_EINVAL;
		if (v * (double)mul > 1e18)
			return FLT_EINVAL;
		total += (uint64_t)(v * (double)mul);
		any = true;
		s += strspn(s, " \t");
	}
	if (!any)
		return FLT_EINVAL;
	*ret_usec = total;
	return 0;
}

static uint64_t opt_timespan(const struct unit_file *uf, const char *const *sections,
                             const char *const *names, uint64_t def, bool *ret_infinity)
{
	uint64_t v = def;
	bool inf = false;

	*ret_infinity = false;
	for (size_t k = 0; names[k]; k++) {
		const char *s = unit_get(uf, sections[k], names[k]);

		if (s && parse_timespan(s, &v, &inf) == 0) {
			*ret_infinity = inf;
			return v;
		}
	}
	return def;
}

/* ---------------------------------------------------------------- configuration of a unit */

int ru_unit_configure(struct ru_unit *u, const char *text, const char *hash)
{
	struct unit_file raw = UNIT_FILE_INIT, uf = UNIT_FILE_INIT;
	struct buf err = BUF_INIT, val = BUF_INIT;
	char **req = NULL, **aft = NULL, **bnd = NULL;
	size_t n_req = 0, n_aft = 0, n_bnd = 0;
	const char *s;
	bool inf;
	int rc;

	if (strlen(text) > RUNNER_MAX_TEXT)
		return FLT_ETOOBIG;
	rc = unit_parse(text, strlen(text), &raw, &err);
	if (rc < 0)
		goto out;
	for (size_t i = 0; i < raw.n; i++) {
		buf_clear(&val);
		rc = unit_expand(u->name, raw.v[i].value, &val);
		if (rc < 0)
			goto out;
		rc = unit_file_add(&uf, raw.v[i].section, raw.v[i].name, val.data ? val.data : "");
		if (rc < 0)
			goto out;
	}
	rc = -ENOMEM;
	if (strv_add_words(&uf, "Unit", "Requires", &req, &n_req) < 0 ||
	    strv_add_words(&uf, "Unit", "After", &aft, &n_aft) < 0 ||
	    strv_add_words(&uf, "Unit", "BindsTo", &bnd, &n_bnd) < 0)
		goto out;
	if (ru_set_str(&u->text, text) < 0 || ru_set_str(&u->hash, hash ? hash : "") < 0)
		goto out;
	s = unit_get(&uf, "Unit", "Description");
	if (ru_set_str(&u->description, s && *s ? s : u->name) < 0)
		goto out;
	s = unit_get(&uf, "X-Flotilla", "Runtime");
	if (ru_set_str(&u->runtime, s && *s ? s : u->r->default_runtime) < 0)
		goto out;
	s = unit_get(&uf, "Service", "ExecStart");
	if (s)
		s += strspn(s, "-@+!:");
	if (ru_set_str(&u->main_command, s) < 0)
		goto out;

	s = unit_get(&uf, "Service", "Restart");
	u->restart = !s                          ? RESTART_NO
	             : !strcmp(s, "always")      ? RESTART_ALWAYS
	             : !strcmp(s, "on-success")  ? RESTART_ON_SUCCESS
	             : !strcmp(s, "on-failure")  ? RESTART_ON_FAILURE
	             : !strcmp(s, "on-abnormal") ? RESTART_ON_ABNORMAL
	             : !strcmp(s, "on-watchdog") ? RESTART_ON_WATCHDOG
	             : !strcmp(s, "on-abort")    ? RESTART_ON_ABORT
	                                         : RESTART_NO; /* systemd ignores bad values */
	{
		static const char *const sec_rs[] = {"Service", NULL};
		static const char *const key_rs[] = {"RestartSec", NULL};
		static const char *const sec_li[] = {"Unit", "Unit", "Service", "Service", NULL};
		static const char *const key_li[] = {"StartLimitIntervalSec", "StartLimitInterval",
		                                     "StartLimitIntervalSec", "StartLimitInterval",
		                                     NULL};
		static const char *const sec_ts[] = {"Service", "Service", NULL};
		static const char *const key_ts[] = {"TimeoutStopSec", "TimeoutSec", NULL};
		uint64_t ts;

		u->restart_usec = opt_timespan(&uf, sec_rs, key_rs, 100000, &inf);
		u->start_limit_usec = opt_timespan(&uf, sec_li, key_li, 10000000, &inf);
		if (inf)
			u->start_limit_usec = 0;
		ts = opt_timespan(&uf, sec_ts, key_ts, 90000000, &inf);
		u->timeout_stop_ms = inf                      ? 0
		                     : ts / 1000 > UINT32_MAX ? UINT32_MAX
		                                              : (unsigned)(ts / 1000);
	}
	s = unit_get(&uf, "Unit", "StartLimitBurst");
	if (!s)
		s = unit_get(&uf, "Service", "StartLimitBurst");
	{
		unsigned long burst = s ? strtoul(s, NULL, 10) : 5;

		if (burst > RUNNER_MAX_BURST)
			burst = RUNNER_MAX_BURST;
		if (burst != u->start_limit_burst) {
			free(u->starts);
			u->starts = NULL;
			u->n_starts = u->starts_head = 0;
		}
		u->start_limit_burst = (unsigned)burst;
	}
	unit_file_release(&u->uf);
	u->uf = uf;
	uf = (struct unit_file)UNIT_FILE_INIT;
	ru_strv_free(u->requires, u->n_requires);
	ru_strv_free(u->after, u->n_after);
	ru_strv_free(u->binds, u->n_binds);
	u->requires = req, u->n_requires = n_req, req = NULL, n_req = 0;
	u->after = aft, u->n_after = n_aft, aft = NULL, n_aft = 0;
	u->binds = bnd, u->n_binds = n_bnd, bnd = NULL, n_bnd = 0;
	rc = 0;
out:
	ru_strv_free(req, n_req);
	ru_strv_free(aft, n_aft);
	ru_strv_free(bnd, n_bnd);
	unit_file_release(&raw);
	unit_file_release(&uf);
	buf_release(&err);
	buf_release(&val);
	return rc;
}

bool ru_name_ok(const char *name)
{
	size_t n = name ? strlen(name) : 0;

	return n > 0 && n <= UNIT_NAME_MAX && name[0] != '.' && !strchr(name, '/');
}
