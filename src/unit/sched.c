/* The scheduling options of a unit: fleet's [X-Fleet] keys read with fleet's rules (quoted
 * multi-values, specifiers, deprecated aliases, the combinations its API refuses) and
 * flotilla's own [X-Flotilla] resource requests and runtime choice. */
#include "unit/unit.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/err.h"

struct strv {
	char **v;
	size_t n;
};

static void strv_release(struct strv *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	s->v = NULL;
	s->n = 0;
}

/* Takes ownership of `str` (freed on failure). */
static int strv_push(struct strv *s, char *str)
{
	char **v;

	if (!str)
		return -ENOMEM;
	v = realloc(s->v, (s->n + 1) * sizeof(*v));
	if (!v) {
		free(str);
		return -ENOMEM;
	}
	v[s->n++] = str;
	s->v = v;
	return 0;
}

__attribute__((format(printf, 2, 3))) static int fail(struct buf *err, const char *fmt, ...)
{
	va_list ap;

	if (err) {
		va_start(ap, fmt);
		buf_vprintf(err, fmt, ap);
		va_end(ap);
	}
	return FLT_EINVAL;
}

enum xkey {
	K_MACHINE_ID,
	K_MACHINE_BOOT_ID,
	K_MACHINE_OF,
	K_METADATA,
	K_CONFLICTS,
	K_GLOBAL,
	K_REPLACES,
	K_COUNT
};

/* fleet v1.0's validRequirements, with the deprecated spellings folded into their keys. */
static const struct {
	const char *name;
	enum xkey key;
} xfleet_keys[] = {
    {"MachineID", K_MACHINE_ID},
    {"X-ConditionMachineID", K_MACHINE_ID},
    {"X-ConditionMachineBootID", K_MACHINE_BOOT_ID},
    {"MachineOf", K_MACHINE_OF},
    {"X-ConditionMachineOf", K_MACHINE_OF},
    {"MachineMetadata", K_METADATA},
    {"X-ConditionMachineMetadata", K_METADATA},
    {"Conflicts", K_CONFLICTS},
    {"X-Conflicts", K_CONFLICTS},
    {"Global", K_GLOBAL},
    {"Replaces", K_REPLACES},
};

/* The buffer's contents as an owned string, "" when nothing was ever appended. */
static char *steal_str(struct buf *b)
{
	char *s = buf_steal(b);

	return s ? s : strdup("");
}

/* fleet's parseMultivalueLine: a value that starts and ends with '"' holds several values
 * separated by spaces outside quotes, quotes removed (MachineMetadata="a=b" "c=d"). Each value
 * then gets the specifiers of unit `name`. Empty words are dropped. */
static int push_values(struct strv *out, const char *name, const char *value)
{
	size_t len = strlen(value);
	struct buf word = BUF_INIT, exp = BUF_INIT;
	bool quoted = false;
	int r = 0;

	if (len < 2 || value[0] != '"' || value[len - 1] != '"') {
		if ((r = unit_expand(name, value, &exp)) >= 0)
			r = strv_push(out, steal_str(&exp));
		buf_release(&exp);
		return r;
	}
	for (size_t i = 0; i <= len && r >= 0; i++) {
		char c = i < len ? value[i] : ' ';

		if (c == '"') {
			quoted = !quoted;
			continue;
		}
		if (c != ' ' || quoted) {
			r = buf_putc(&word, c);
			continue;
		}
		if (!word.len)
			continue;
		buf_clear(&exp);
		if ((r = unit_expand(name, word.data, &exp)) >= 0)
			r = strv_push(out, steal_str(&exp));
		buf_clear(&word);
	}
	buf_release(&word);
	buf_release(&exp);
	return r;
}

/* Split on white space (Go's strings.Fields), each word copied into `out`. */
static int push_fields(struct strv *out, const char *s)
{
	static const char ws[] = " \t\r\n\v\f";
	int r = 0;

	for (s += strspn(s, ws); *s && r >= 0; s += strspn(s, ws)) {
		size_t n = strcspn(s, ws);

		r = strv_push(out, strndup(s, n));
		s += n;
	}
	return r;
}

/* Go's path.Match refuses an unclosed '[' or a trailing '\'; fnmatch would take them as
 * literals, so check first and tell the user. */
static bool glob_valid(const char *p)
{
	for (; *p; p++) {
		if (*p == '\\') {
			if (!*++p)
				return false;
		} else if (*p == '[') {
			p++;
			if (*p == '^' || *p == '!')
				p++;
			if (*p == ']') /* Go: an empty class, or ']' first, is a bad pattern */
				return false;
			for (; *p && *p != ']'; p++)
				if (*p == '\\' && !*++p)
					return false;
			if (!*p)
				return false;
		}
	}
	return true;
}

bool unit_glob_match(const char *pattern, const char *name)
{
	/* FNM_PATHNAME: Go's '*' does not cross '/' (names have none, but keep Go's rule). */
	return glob_valid(pattern) && fnmatch(pattern, name, FNM_PATHNAME) == 0;
}

static int parse_bool(const char *s, bool *ret)
{
	static const char *const yes[] = {"true", "yes", "1", "on", "t", "y"};
	static const char *const no[] = {"false", "no", "0", "off", "f", "n"};

	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (!strcasecmp(s, yes[i])) {
			*ret = true;
			return 0;
		}
		if (!strcasecmp(s, no[i])) {
			*ret = false;
			return 0;
		}
	}
	return FLT_EINVAL;
}

static int parse_metadata(const char *v, struct unit_meta *ret)
{
	const char *eq = strchr(v, '=');
	size_t klen;
	bool negate;

	/* fleet wants exactly two non-empty parts around one '='; "k!=v" is flotilla's. */
	if (!eq || strchr(eq + 1, '=') || !eq[1])
		return FLT_EINVAL;
	klen = (size_t)(eq - v);
	negate = klen && v[klen - 1] == '!';
	if (negate)
		klen--;
	if (!klen || memchr(v, '!', klen))
		return FLT_EINVAL;
	ret->key = strndup(v, klen);
	ret->value = strdup(eq + 1);
	ret->negate = negate;
	if (!ret->key || !ret->value) {
		free(ret->key);
		free(ret->value);
		return -ENOMEM;
	}
	return 0;
}

int unit_parse_memory(const char *s, uint64_t *ret)
{
	static const char suffixes[] = "BKMGTPE";
	uint64_t ip = 0, frac = 0, fdiv = 1, mult = 1, v;
	const char *p = s, *sfx;

	if (!strcmp(s, "infinity")) {
		*ret = 0;
		return 0;
	}
	if (*p < '0' || *p > '9')
		return FLT_EINVAL;
	for (; *p >= '0' && *p <= '9'; p++) {
		uint64_t d = (uint64_t)(*p - '0');

		if (ip > (UINT64_MAX - d) / 10)
			return FLT_EINVAL;
		ip = ip * 10 + d;
	}
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return FLT_EINVAL;
		for (; *p >= '0' && *p <= '9'; p++) {
			if (fdiv >= 1000000000000ULL) /* further digits cannot matter */
				continue;
			frac = frac * 10 + (uint64_t)(*p - '0');
			fdiv *= 10;
		}
	}
	if (*p) {
		if (p[1] || !(sfx = strchr(suffixes, *p)))
			return FLT_EINVAL;
		for (const char *k = suffixes; k < sfx; k++)
			mult *= 1024;
	}
	if (ip > UINT64_MAX / mult)
		return FLT_EINVAL;
	v = ip * mult;
	/* frac/fdiv of mult, without overflow: mult <= 2^60 and frac < fdiv <= 10^12. */
	v += (uint64_t)((unsigned __int128)frac * mult / fdiv);
	if (v < ip * mult)
		return FLT_EINVAL;
	*ret = v;
	return 0;
}

int unit_parse_cpus(const char *s, uint32_t *ret)
{
	uint64_t v = 0;
	const char *p = s;
	int decimals = 0;

	if (*p < '0' || *p > '9')
		return FLT_EINVAL;
	for (; *p >= '0' && *p <= '9'; p++) {
		v = v * 10 + (uint64_t)(*p - '0');
		if (v > UINT32_MAX / 1000)
			return FLT_EINVAL;
	}
	v *= 1000;
	if (*p == '.') {
		uint64_t m = 100;

		p++;
		if (*p < '0' || *p > '9')
			return FLT_EINVAL;
		for (; *p >= '0' && *p <= '9'; p++, decimals++, m /= 10) {
			if (decimals == 3)
				return FLT_EINVAL;
			v += (uint64_t)(*p - '0') * m;
		}
	}
	if (*p || v > UINT32_MAX)
		return FLT_EINVAL;
	*ret = (uint32_t)v;
	return 0;
}

void unit_sched_release(struct unit_sched *s)
{
	if (!s)
		return;
	free(s->machine_id);
	for (size_t i = 0; i < s->n_machine_of; i++)
		free(s->machine_of[i]);
	free(s->machine_of);
	for (size_t i = 0; i < s->n_metadata; i++) {
		free(s->metadata[i].key);
		free(s->metadata[i].value);
	}
	free(s->metadata);
	for (size_t i = 0; i < s->n_conflicts; i++)
		free(s->conflicts[i]);
	free(s->conflicts);
	for (size_t i = 0; i < s->n_replaces; i++)
		free(s->replaces[i]);
	free(s->replaces);
	free(s->runtime);
	memset(s, 0, sizeof(*s));
}

static int read_xfleet(const struct unit_file *u, const char *name, struct strv vals[K_COUNT],
                       struct buf *err)
{
	int r;

	for (size_t i = 0; i < u->n; i++) {
		const struct unit_option *o = &u->v[i];
		size_t k;

		if (strcmp(o->section, "X-Fleet"))
			continue;
		for (k = 0; k < sizeof(xfleet_keys) / sizeof(xfleet_keys[0]); k++)
			if (!strcmp(o->name, xfleet_keys[k].name))
				break;
		/* fleet only warned here, and a typo then silently did nothing. */
		if (k == sizeof(xfleet_keys) / sizeof(xfleet_keys[0]))
			return fail(err, "unrecognized requirement in [X-Fleet] section: \"%s\"",
			            o->name);
		if ((r = push_values(&vals[xfleet_keys[k].key], name, o->value)) < 0)
			return r;
	}
	return 0;
}

/* A template's own name leaves %i empty, so values built on it ("MachineOf=web@%i.service",
 * "MachineMetadata=slot=%i") are only checked on its instances: for the template itself, values
 * that do not check out are dropped instead of refused (it is never scheduled anyway). */
static int build_xfleet(struct strv vals[K_COUNT], bool tpl, struct unit_sched *s,
                        struct strv *conflicts, struct strv *replaces, struct buf *err)
{
	struct strv *id = vals[K_MACHINE_ID].n ? &vals[K_MACHINE_ID] : &vals[K_MACHINE_BOOT_ID];
	size_t n;
	int r;

	/* Only the first MachineID counts, as in fleet. */
	if (id->n && !*id->v[0] && !tpl)
		return fail(err, "invalid MachineID value \"\": must not be empty");
	if (id->n && *id->v[0] && !(s->machine_id = strdup(id->v[0])))
		return -ENOMEM;
	/* s owns the peers array from here; n_machine_of counts the names kept at its front. */
	s->machine_of = vals[K_MACHINE_OF].v;
	n = vals[K_MACHINE_OF].n;
	vals[K_MACHINE_OF].v = NULL;
	vals[K_MACHINE_OF].n = 0;
	for (size_t i = 0; i < n; i++) {
		char *peer = s->machine_of[i];
		const char *why = NULL;

		s->machine_of[i] = NULL;
		if (unit_name_check(peer, &why) >= 0) {
			s->machine_of[s->n_machine_of++] = peer;
			continue;
		}
		r = tpl ? 0 : fail(err, "invalid MachineOf value \"%s\": %s", peer, why);
		free(peer);
		if (r < 0) {
			while (++i < n)
				free(s->machine_of[i]);
			return r;
		}
	}

	if (vals[K_METADATA].n) {
		s->metadata = calloc(vals[K_METADATA].n, sizeof(*s->metadata));
		if (!s->metadata)
			return -ENOMEM;
	}
	for (size_t i = 0; i < vals[K_METADATA].n; i++) {
		r = parse_metadata(vals[K_METADATA].v[i], &s->metadata[s->n_metadata]);
		if (r == FLT_EINVAL && tpl)
			continue;
		if (r == FLT_EINVAL)
			return fail(err,
			            "invalid MachineMetadata value \"%s\": want key=value or "
			            "key!=value",
			            vals[K_METADATA].v[i]);
		if (r < 0)
			return r;
		s->n_metadata++;
	}

	/* Conflicts are split on white space as fleet does; Replaces too, since a pattern with a
	 * space could never match a unit name. */
	for (size_t i = 0; i < vals[K_CONFLICTS].n; i++)
		if ((r = push_fields(conflicts, vals[K_CONFLICTS].v[i])) < 0)
			return r;
	for (size_t i = 0; i < vals[K_REPLACES].n; i++)
		if ((r = push_fields(replaces, vals[K_REPLACES].v[i])) < 0)
			return r;
	for (size_t i = 0; i < conflicts->n; i++)
		if (!glob_valid(conflicts->v[i]))
			return fail(err, "invalid Conflicts pattern \"%s\"", conflicts->v[i]);
	for (size_t i = 0; i < replaces->n; i++)
		if (!glob_valid(replaces->v[i]))
			return fail(err, "invalid Replaces pattern \"%s\"", replaces->v[i]);

	/* The last Global= decides. */
	if (vals[K_GLOBAL].n) {
		const char *g = vals[K_GLOBAL].v[vals[K_GLOBAL].n - 1];

		if (parse_bool(g, &s->global) < 0)
			return fail(err, "invalid Global value \"%s\": want true or false", g);
	}
	return 0;
}

/* fleet's ValidateOptions (api/units.go), same order and wording. */
static int check_combinations(const struct unit_sched *s, const struct strv *conflicts,
                              const struct strv *replaces, struct buf *err)
{
	for (size_t i = 0; i < s->n_machine_of; i++) {
		for (size_t k = 0; k < conflicts->n; k++)
			if (unit_glob_match(conflicts->v[k], s->machine_of[i]))
				return fail(err,
				            "unresolvable requirements: peer \"%s\" matches "
				            "conflict \"%s\"",
				            s->machine_of[i], conflicts->v[k]);
		for (size_t k = 0; k < replaces->n; k++)
			if (unit_glob_match(replaces->v[k], s->machine_of[i]))
				return fail(err,
				            "unresolvable requirements: peer \"%s\" matches "
				            "replace \"%s\"",
				            s->machine_of[i], replaces->v[k]);
	}
	if (s->machine_id && s->n_machine_of)
		return fail(err, "MachineID cannot be used with Peers");
	if (s->machine_id && conflicts->n)
		return fail(err, "MachineID cannot be used with Conflicts");
	if (s->machine_id && s->global)
		return fail(err, "MachineID cannot be used with Global");
	if (s->machine_id && replaces->n)
		return fail(err, "MachineID cannot be used with Replaces");
	if (s->global && s->n_machine_of)
		return fail(err, "Global cannot be used with Peers");
	if (s->global && replaces->n)
		return fail(err, "Global cannot be used with Replaces");
	if (conflicts->n && replaces->n)
		return fail(err, "Conflicts cannot be used with Replaces");
	return 0;
}

static int read_xflotilla(const struct unit_file *u, struct unit_sched *s, struct buf *err)
{
	/* Options the runtime drivers read (docker: Image..Pull; rkt: Image, Command, Net,
	 * InsecureOptions); the driver validates their values and fails the unit with a reason. */
	static const char *const drv_keys[] = {"Image",   "Command", "Env",  "Ports",
					       "Volumes", "Network", "Pull", "Net",
					       "InsecureOptions"};

	for (size_t i = 0; i < u->n; i++) {
		const struct unit_option *o = &u->v[i];

		if (strcmp(o->section, "X-Flotilla"))
			continue;
		if (!strcmp(o->name, "Memory")) {
			if (unit_parse_memory(o->value, &s->memory) < 0)
				return fail(err,
				            "invalid Memory value \"%s\": want bytes with an "
				            "optional K, M, G or T suffix",
				            o->value);
		} else if (!strcmp(o->name, "CPUs")) {
			if (unit_parse_cpus(o->value, &s->cpus_milli) < 0)
				return fail(err,
				            "invalid CPUs value \"%s\": want a number of CPUs "
				            "with at most 3 decimals",
				            o->value);
		} else if (!strcmp(o->name, "Runtime")) {
			/* exec, docker, rkt, systemd, or another driver's name */
			size_t k = strspn(o->value, "abcdefghijklmnopqrstuvwxyz0123456789_-");
			char *rt;

			if (!o->value[0] || o->value[k] || k > 64)
				return fail(err,
				            "invalid Runtime value \"%s\": want a driver name such as "
				            "exec, docker, rkt or systemd",
				            o->value);
			if (!(rt = strdup(o->value)))
				return -ENOMEM;
			free(s->runtime);
			s->runtime = rt;
		} else {
			size_t k;

			for (k = 0; k < sizeof(drv_keys) / sizeof(drv_keys[0]); k++)
				if (!strcmp(o->name, drv_keys[k]))
					break;
			if (k == sizeof(drv_keys) / sizeof(drv_keys[0]))
				return fail(err,
				            "unrecognized option in [X-Flotilla] section: \"%s\"",
				            o->name);
		}
	}
	return 0;
}

static bool names_docker(const char *list)
{
	static const char ws[] = " \t";

	for (list += strspn(list, ws); *list; list += strspn(list, ws)) {
		size_t n = strcspn(list, ws);

		if (n == strlen("docker.service") && !memcmp(list, "docker.service", n))
			return true;
		list += n;
	}
	return false;
}

int unit_sched_parse(const struct unit_file *u, const char *name, struct unit_sched *ret,
                     struct buf *err)
{
	struct strv vals[K_COUNT] = {{NULL, 0}}, conflicts = {NULL, 0}, replaces = {NULL, 0};
	struct unit_sched s;
	int r;

	memset(&s, 0, sizeof(s));
	if ((r = read_xfleet(u, name, vals, err)) < 0 ||
	    (r = build_xfleet(vals, unit_name_is_template(name), &s, &conflicts, &replaces, err)) <
	        0 ||
	    (r = check_combinations(&s, &conflicts, &replaces, err)) < 0 ||
	    (r = read_xflotilla(u, &s, err)) < 0)
		goto out;
	for (size_t i = 0; i < u->n; i++)
		if (!strcmp(u->v[i].section, "Unit") &&
		    (!strcmp(u->v[i].name, "Requires") || !strcmp(u->v[i].name, "BindsTo")) &&
		    names_docker(u->v[i].value))
			s.needs_docker = true;
	s.conflicts = conflicts.v;
	s.n_conflicts = conflicts.n;
	s.replaces = replaces.v;
	s.n_replaces = replaces.n;
	conflicts.v = replaces.v = NULL;
	conflicts.n = replaces.n = 0;
	*ret = s;
	memset(&s, 0, sizeof(s));
out:
	unit_sched_release(&s);
	for (size_t k = 0; k < K_COUNT; k++)
		strv_release(&vals[k]);
	strv_release(&conflicts);
	strv_release(&replaces);
	return r;
}
