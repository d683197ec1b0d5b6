/* Go-compatible flag parsing for flotctl (see args.h). The rules, including their odd corners,
 * follow Go's flag package and urfave/cli v1.22 because etcdctl users depend on them: a word
 * after a flag moves with it during reordering even for bool flags, "--" may become a value. */
#include "ctl/args.h"
#include "ctl/ctl.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* Iterate the comma-separated names of a flag: returns the next name and its length. */
static const char *next_name(const char *p, size_t *ret_len, const char **ret_next)
{
	const char *e;

	while (*p == ' ' || *p == ',')
		p++;
	if (!*p)
		return NULL;
	e = p;
	while (*e && *e != ',' && *e != ' ')
		e++;
	*ret_len = (size_t)(e - p);
	*ret_next = e;
	return p;
}

/* Which alias (0-based) of `names` equals name[0..len), or -1. */
static int alias_index(const char *names, const char *name, size_t len)
{
	const char *p = names, *nm;
	size_t l;
	int i = 0;

	while ((nm = next_name(p, &l, &p))) {
		if (l == len && !memcmp(nm, name, len))
			return i;
		i++;
	}
	return -1;
}

int ctl_flag_find(const struct ctl_flag *defs, size_t n, const char *name, size_t len)
{
	for (size_t i = 0; i < n; i++)
		if (alias_index(defs[i].names, name, len) >= 0)
			return (int)i;
	return -1;
}

int ctl_parse_bool(const char *s, bool *ret)
{
	static const char *const yes[] = {"1", "t", "T", "TRUE", "true", "True"};
	static const char *const no[] = {"0", "f", "F", "FALSE", "false", "False"};

	for (size_t i = 0; i < 6; i++) {
		if (!strcmp(s, yes[i])) {
			*ret = true;
			return 0;
		}
		if (!strcmp(s, no[i])) {
			*ret = false;
			return 0;
		}
	}
	return -EINVAL;
}

static int digit_val(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'Z')
		return c - 'A' + 10;
	return 99;
}

int ctl_parse_int(const char *s, int64_t *ret)
{
	bool neg = false, prefixed = false, any = false, range = false;
	uint64_t v = 0, lim;
	unsigned base = 10;
	char last = 0;

	if (*s == '+' || *s == '-')
		neg = *s++ == '-';
	if (s[0] == '0' && s[1]) {
		switch (s[1]) {
		case 'x':
		case 'X':
			base = 16, s += 2, prefixed = true;
			break;
		case 'o':
		case 'O':
			base = 8, s += 2, prefixed = true;
			break;
		case 'b':
		case 'B':
			base = 2, s += 2, prefixed = true;
			break;
		default:
			base = 8, s += 1, prefixed = true, any = true;
			break;
		}
	}
	for (; *s; s++) {
		int d;

		if (*s == '_') {
			/* Go allows underscores only with a base prefix, between digits */
			if (!prefixed || last == '_')
				return -EINVAL;
			last = '_';
			continue;
		}
		d = digit_val(*s);
		if ((unsigned)d >= base)
			return -EINVAL;
		if (v > (UINT64_MAX - (uint64_t)d) / base)
			range = true;
		else
			v = v * base + (uint64_t)d;
		any = true;
		last = *s;
	}
	if (!any || last == '_')
		return -EINVAL;
	lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	if (range || v > lim)
		return -ERANGE;
	*ret = neg ? (int64_t)(0 - v) : (int64_t)v;
	return 0;
}

int ctl_parse_duration(const char *s, int64_t *ret_ns)
{
	static const struct {
		const char *u;
		double ns;
	} units[] = {{"ns", 1},   {"us", 1e3}, {"\xc2\xb5s", 1e3}, {"\xce\xbcs", 1e3},
	             {"ms", 1e6}, {"s", 1e9},  {"m", 60e9},        {"h", 3600e9}};
	bool neg = false;
	double total = 0;

	if (*s == '+' || *s == '-')
		neg = *s++ == '-';
	if (!strcmp(s, "0")) {
		*ret_ns = 0;
		return 0;
	}
	if (!*s)
		return -EINVAL;
	while (*s) {
		double v = 0, frac = 0, scale = 1;
		bool digits = false;
		const char *u;
		size_t ul, k;

		while (*s >= '0' && *s <= '9')
			v = v * 10 + (*s++ - '0'), digits = true;
		if (*s == '.') {
			s++;
			while (*s >= '0' && *s <= '9')
				scale /= 10, frac += (*s++ - '0') * scale, digits = true;
		}
		if (!digits)
			return -EINVAL;
		u = s;
		while (*s && *s != '.' && (*s < '0' || *s > '9'))
			s++;
		ul = (size_t)(s - u);
		if (!ul)
			return -EINVAL; /* Go: missing unit */
		for (k = 0; k < sizeof(units) / sizeof(units[0]); k++)
			if (strlen(units[k].u) == ul && !memcmp(units[k].u, u, ul))
				break;
		if (k == sizeof(units) / sizeof(units[0]))
			return -EINVAL;
		total += (v + frac) * units[k].ns;
		if (total > 9.2e18)
			return -EINVAL;
	}
	*ret_ns = (int64_t)(neg ? -total : total);
	return 0;
}

void ctl_go_quote(struct buf *b, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)s;

	cb_putc(b, '"');
	for (; *p; p++) {
		switch (*p) {
		case '"':
			cb_puts(b, "\\\"");
			continue;
		case '\\':
			cb_puts(b, "\\\\");
			continue;
		case '\n':
			cb_puts(b, "\\n");
			continue;
		case '\t':
			cb_puts(b, "\\t");
			continue;
		case '\r':
			cb_puts(b, "\\r");
			continue;
		case '\a':
			cb_puts(b, "\\a");
			continue;
		case '\b':
			cb_puts(b, "\\b");
			continue;
		case '\f':
			cb_puts(b, "\\f");
			continue;
		case '\v':
			cb_puts(b, "\\v");
			continue;
		default:
			break;
		}
		if (*p < 0x20 || *p == 0x7f) {
			cb_puts(b, "\\x");
			cb_putc(b, hex[*p >> 4]);
			cb_putc(b, hex[*p & 15]);
		} else {
			cb_putc(b, (char)*p); /* printable ASCII and UTF-8 pass through */
		}
	}
	cb_putc(b, '"');
}

int ctl_flags_parse(const struct ctl_flag *defs, size_t n, struct ctl_fval *vals, int argc,
                    char **argv, bool *ret_help, struct buf *err)
{
	int i = 0;

	*ret_help = false;
	while (i < argc) {
		const char *s = argv[i], *name, *eq;
		const char *value = NULL;
		size_t len;
		int f, a;

		if (strlen(s) < 2 || s[0] != '-')
			break;
		if (s[1] == '-' && s[2] == '\0') {
			i++; /* "--" ends the flags and is consumed */
			break;
		}
		name = s + (s[1] == '-' ? 2 : 1);
		if (!*name || *name == '-' || *name == '=') {
			cb_printf(err, "bad flag syntax: %s", s);
			return -EINVAL;
		}
		i++;
		eq = strchr(name + 1, '=');
		len = eq ? (size_t)(eq - name) : strlen(name);
		if (eq)
			value = eq + 1;
		f = ctl_flag_find(defs, n, name, len);
		if (f < 0) {
			bool hv;

			if ((len == 4 && !memcmp(name, "help", 4)) || (len == 1 && *name == 'h')) {
				/* urfave/cli's "help, h" bool flag */
				if (!value) {
					*ret_help = true;
					continue;
				}
				if (ctl_parse_bool(value, &hv) < 0) {
					cb_puts(err, "invalid boolean value ");
					ctl_go_quote(err, value);
					cb_printf(err, " for -%.*s: parse error", (int)len, name);
					return -EINVAL;
				}
				*ret_help = hv;
				continue;
			}
			cb_printf(err, "flag provided but not defined: -%.*s", (int)len, name);
			return -EINVAL;
		}
		a = alias_index(defs[f].names, name, len);
		if (defs[f].type == CTL_F_BOOL) {
			bool bv = true;

			if (value && ctl_parse_bool(value, &bv) < 0) {
				cb_puts(err, "invalid boolean value ");
				ctl_go_quote(err, value);
				cb_printf(err, " for -%.*s: parse error", (int)len, name);
				return -EINVAL;
			}
			vals[f].b = bv;
			vals[f].seen |= 1u << a;
			continue;
		}
		if (!value) {
			if (i >= argc) {
				cb_printf(err, "flag needs an argument: -%.*s", (int)len, name);
				return -EINVAL;
			}
			value = argv[i++];
		}
		switch (defs[f].type) {
		case CTL_F_INT: {
			int r = ctl_parse_int(value, &vals[f].i);

			if (r < 0) {
				cb_puts(err, "invalid value ");
				ctl_go_quote(err, value);
				cb_printf(err, " for flag -%.*s: %s", (int)len, name,
				          r == -ERANGE ? "value out of range" : "parse error");
				return -EINVAL;
			}
			break;
		}
		case CTL_F_DURATION:
			if (ctl_parse_duration(value, &vals[f].ns) < 0) {
				cb_puts(err, "invalid value ");
				ctl_go_quote(err, value);
				cb_printf(err, " for flag -%.*s: parse error", (int)len, name);
				return -EINVAL;
			}
			break;
		default:
			vals[f].s = value;
			break;
		}
		vals[f].seen |= 1u << a;
	}
	return i;
}

int ctl_flags_normalize(const struct ctl_flag *defs, size_t n, const struct ctl_fval *vals,
                        struct buf *err)
{
	for (size_t f = 0; f < n; f++) {
		const char *p = defs[f].names, *nm, *first = NULL;
		size_t l, first_len = 0;
		int a = 0;

		while ((nm = next_name(p, &l, &p))) {
			if (vals[f].seen & (1u << a)) {
				if (first) {
					cb_printf(
					    err, "Cannot use two forms of the same flag: %.*s %.*s",
					    (int)l, nm, (int)first_len, first);
					return -EINVAL;
				}
				first = nm;
				first_len = l;
			}
			a++;
		}
	}
	return 0;
}

/* urfave/cli's argIsFlag: "-x", "--x", "-x=v" naming one of the command's flags. */
static bool arg_is_flag(const struct ctl_flag *defs, size_t n, const char *arg)
{
	const char *name;
	size_t len;

	if (arg[0] != '-' || !strcmp(arg, "-"))
		return false;
	name = arg + (arg[1] == '-' ? 2 : 1);
	len = strcspn(name, "=");
	return ctl_flag_find(defs, n, name, len) >= 0;
}

int ctl_flags_reorder(const struct ctl_flag *defs, size_t n, int argc, char **argv, char **out)
{
	char **rest = calloc((size_t)argc + 1, sizeof(*rest));
	int nf = 0, nr = 0;
	bool may_value = false;

	if (!rest)
		ctl_oom();
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];

		if (may_value && !arg_is_flag(defs, n, a)) {
			may_value = false;
			out[nf++] = argv[i];
		} else if (!strcmp(a, "--")) {
			/* "--" goes in front of the operands seen so far, the rest follows it */
			memmove(rest + 1, rest, (size_t)nr * sizeof(*rest));
			rest[0] = argv[i];
			nr++;
			for (int j = i + 1; j < argc; j++)
				rest[nr++] = argv[j];
			break;
		} else if (arg_is_flag(defs, n, a)) {
			out[nf++] = argv[i];
			may_value = !strchr(a, '=');
		} else {
			rest[nr++] = argv[i];
		}
	}
	memcpy(out + nf, rest, (size_t)nr * sizeof(*rest));
	out[nf + nr] = NULL;
	free(rest);
	return nf + nr;
}

/* "--ttl value" / "--recursive, -r" as urfave/cli renders a flag's names. */
static void flag_label(struct buf *b, const struct ctl_flag *d)
{
	const char *p = d->names, *nm;
	size_t l;
	bool first = true;

	while ((nm = next_name(p, &l, &p))) {
		if (!first)
			cb_puts(b, ", ");
		cb_puts(b, l > 1 ? "--" : "-");
		cb_append(b, nm, l);
		if (d->placeholder) {
			cb_putc(b, ' ');
			cb_puts(b, d->placeholder);
		}
		first = false;
	}
}

void ctl_flags_help(struct buf *b, const struct ctl_flag *defs, size_t n, bool with_help,
                    bool with_version)
{
	static const struct ctl_flag extra[] = {
	    {"help, h", CTL_F_BOOL, NULL, "show help", NULL},
	    {"version, v", CTL_F_BOOL, NULL, "print the version", NULL},
	};
	size_t width = 0, total = n + (with_help ? 1 : 0) + (with_version ? 1 : 0);

	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < total; i++) {
			const struct ctl_flag *d = i < n ? &defs[i] : &extra[i - n];
			struct buf l = BUF_INIT;

			if (i >= n && !with_help)
				d = &extra[1];
			flag_label(&l, d);
			if (pass == 0) {
				if (l.len > width)
					width = l.len;
			} else {
				cb_printf(b, "   %-*s  %s", (int)width, l.data, d->usage);
				if (d->defval)
					cb_printf(b, " (default: %s)", d->defval);
				cb_putc(b, '\n');
			}
			buf_release(&l);
		}
	}
}
