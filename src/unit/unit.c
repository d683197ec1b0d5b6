/* Unit files as fleet reads them: systemd's syntax parsed into an ordered list of options,
 * fleet's serialization and SHA-1 hash of it, the fleet API's JSON options arrays, unit names
 * (plain, template, instance), fleetctl's name mangling and the %n %N %p %i specifiers. */
#include "unit/unit.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/sha.h>

#include "util/err.h"

/* ---- small helpers ---- */

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool is_comment(char c)
{
	return c == '#' || c == ';';
}

__attribute__((format(printf, 3, 4))) static int fail(struct buf *err, size_t line, const char *fmt,
                                                      ...)
{
	va_list ap;

	if (err) {
		if (line)
			buf_printf(err, "line %zu: ", line);
		va_start(ap, fmt);
		buf_vprintf(err, fmt, ap);
		va_end(ap);
	}
	return FLT_EINVAL;
}

/* Strict UTF-8 (no overlongs, no surrogates): unit text ends up in JSON, which must be valid. */
static bool utf8_valid(const unsigned char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		unsigned char c = s[i];
		size_t len;
		uint32_t cp;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			len = 2;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			len = 3;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			len = 4;
			cp = c & 0x07;
		} else {
			return false;
		}
		if (n - i < len)
			return false;
		for (size_t k = 1; k < len; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += len;
	}
	return true;
}

/* ---- unit files ---- */

static size_t opt_cap(size_t n)
{
	size_t c = 4;

	while (c < n)
		c *= 2;
	return c;
}

static int file_add_n(struct unit_file *u, const char *section, const char *name, size_t name_len,
                      const char *value, size_t value_len)
{
	struct unit_option *o;

	/* Capacity is implied by n (a power of two >= 4), so the struct needs no cap field. */
	if (u->n == 0 || u->n == opt_cap(u->n)) {
		size_t cap = u->n ? u->n * 2 : 4;
		struct unit_option *v;

		if (cap > SIZE_MAX / sizeof(*v))
			return -ENOMEM;
		v = realloc(u->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		u->v = v;
	}
	o = &u->v[u->n];
	o->section = strdup(section);
	o->name = strndup(name, name_len);
	o->value = strndup(value, value_len);
	if (!o->section || !o->name || !o->value) {
		free(o->section);
		free(o->name);
		free(o->value);
		return -ENOMEM;
	}
	u->n++;
	return 0;
}

int unit_file_add(struct unit_file *u, const char *section, const char *name, const char *value)
{
	return file_add_n(u, section, name, strlen(name), value, strlen(value));
}

void unit_file_release(struct unit_file *u)
{
	if (!u)
		return;
	for (size_t i = 0; i < u->n; i++) {
		free(u->v[i].section);
		free(u->v[i].name);
		free(u->v[i].value);
	}
	free(u->v);
	u->v = NULL;
	u->n = 0;
}

const char *unit_get(const struct unit_file *u, const char *section, const char *name)
{
	for (size_t i = u->n; i-- > 0;)
		if (!strcmp(u->v[i].section, section) && !strcmp(u->v[i].name, name))
			return u->v[i].value;
	return NULL;
}

struct parser {
	struct unit_file *u;
	struct buf *err;
	char *section; /* owned: the current section, NULL before the first header */
};

/* One logical line (continuations already joined), as systemd's parse_line does it. */
static int parse_logical(struct parser *p, char *l, size_t n, size_t line)
{
	char *eq, *key, *val;
	size_t klen, vlen;

	while (n && is_space(*l))
		l++, n--;
	while (n && is_space(l[n - 1]))
		n--;
	if (!n)
		return 0;
	if (*l == '[') {
		char *s;

		if (l[n - 1] != ']')
			return fail(p->err, line, "invalid section header \"%.*s\"", (int)n, l);
		if (n == 2)
			return fail(p->err, line, "empty section name");
		if (memchr(l + 1, '[', n - 2) || memchr(l + 1, ']', n - 2))
			return fail(p->err, line, "invalid section header \"%.*s\"", (int)n, l);
		s = strndup(l + 1, n - 2);
		if (!s)
			return -ENOMEM;
		free(p->section);
		p->section = s;
		return 0;
	}
	if (!p->section)
		return fail(p->err, line, "assignment outside of a section");
	eq = memchr(l, '=', n);
	if (!eq)
		return fail(p->err, line, "missing '=' in \"%.*s\"", (int)n, l);
	key = l;
	klen = (size_t)(eq - l);
	while (klen && is_space(key[klen - 1]))
		klen--;
	if (!klen)
		return fail(p->err, line, "missing key before '='");
	val = eq + 1;
	vlen = (size_t)(l + n - val);
	while (vlen && is_space(*val))
		val++, vlen--;
	return file_add_n(p->u, p->section, key, klen, val, vlen);
}

int unit_parse(const char *text, size_t len, struct unit_file *ret, struct buf *err)
{
	struct unit_file u = UNIT_FILE_INIT;
	struct parser p = {&u, err, NULL};
	struct buf logical = BUF_INIT;
	size_t pos = 0, lineno = 0, start = 0;
	bool cont = false;
	int r = 0;

	ret->v = NULL;
	ret->n = 0;
	if (!len) /* text may then be NULL (an empty body) */
		return 0;
	if (memchr(text, '\0', len)) {
		/* Report the line of the NUL: C strings cannot carry it. */
		size_t at = (size_t)((const char *)memchr(text, '\0', len) - text), line = 1;

		for (size_t i = 0; i < at; i++)
			line += text[i] == '\n';
		return fail(err, line, "NUL byte in unit file");
	}
	while (pos < len) {
		const char *line = text + pos, *eol = memchr(line, '\n', len - pos);
		size_t n = eol ? (size_t)(eol - line) : len - pos, i, bs;

		pos += n + (eol ? 1 : 0);
		lineno++;
		if (n && line[n - 1] == '\r')
			n--;
		/* go-systemd (and so fleet) refuses lines systemd would truncate. */
		if (n >= UNIT_LINE_MAX) {
			r = fail(err, lineno, "line too long (max %d bytes)", UNIT_LINE_MAX);
			goto out;
		}
		if (!utf8_valid((const unsigned char *)line, n)) {
			r = fail(err, lineno, "invalid UTF-8");
			goto out;
		}
		/* Comment lines are dropped even inside a continuation, and never continue
		 * themselves (systemd's rule; a '#' later in a line is part of the value). */
		for (i = 0; i < n && is_space(line[i]); i++)
			;
		if (i < n && is_comment(line[i]))
			continue;
		if (!cont) {
			buf_clear(&logical);
			start = lineno;
		}
		while (n && is_space(line[n - 1]))
			n--;
		/* An odd number of trailing backslashes continues the line: the last one
		 * becomes a space, as in systemd. */
		for (bs = 0; bs < n && line[n - 1 - bs] == '\\'; bs++)
			;
		cont = bs % 2 == 1;
		if ((r = buf_append(&logical, line, cont ? n - 1 : n)) < 0 ||
		    (cont && (r = buf_putc(&logical, ' ')) < 0))
			goto out;
		if (cont)
			continue;
		if ((r = parse_logical(&p, logical.data, logical.len, start)) < 0)
			goto out;
	}
	if (cont && (r = parse_logical(&p, logical.data, logical.len, start)) < 0)
		goto out;
	*ret = u;
	u.v = NULL;
	u.n = 0;
	r = 0;
out:
	unit_file_release(&u);
	buf_release(&logical);
	free(p.section);
	return r;
}

/* Sections in first-seen order, each with its options in file order: sort indices by
 * (section, index), cut groups, order groups by their first index. O(n log n) however many
 * sections a hostile file has. */
struct group {
	size_t start, count, first;
};

static int cmp_by_section(const void *a, const void *b, void *arg)
{
	const struct unit_file *u = arg;
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	int c = strcmp(u->v[x].section, u->v[y].section);

	if (c)
		return c;
	return x < y ? -1 : x > y;
}

static int cmp_group(const void *a, const void *b)
{
	const struct group *x = a, *y = b;

	return x->first < y->first ? -1 : x->first > y->first;
}

int unit_serialize(const struct unit_file *u, struct buf *out)
{
	size_t *idx = NULL, ng = 0;
	struct group *g = NULL;
	int r = -ENOMEM;

	if (!u->n) /* still leave a C string in out */
		return buf_append(out, "", 0);
	idx = calloc(u->n, sizeof(*idx));
	g = calloc(u->n, sizeof(*g));
	if (!idx || !g)
		goto out;
	for (size_t i = 0; i < u->n; i++)
		idx[i] = i;
	qsort_r(idx, u->n, sizeof(*idx), cmp_by_section, (void *)u);
	for (size_t i = 0; i < u->n; i++) {
		if (i && !strcmp(u->v[idx[i]].section, u->v[idx[i - 1]].section)) {
			g[ng - 1].count++;
			continue;
		}
		g[ng].start = i;
		g[ng].count = 1;
		g[ng].first = idx[i];
		ng++;
	}
	qsort(g, ng, sizeof(*g), cmp_group);
	for (size_t k = 0; k < ng; k++) {
		if (k && (r = buf_putc(out, '\n')) < 0)
			goto out;
		if ((r = buf_putc(out, '[')) < 0 ||
		    (r = buf_puts(out, u->v[g[k].first].section)) < 0 ||
		    (r = buf_puts(out, "]\n")) < 0)
			goto out;
		for (size_t i = g[k].start; i < g[k].start + g[k].count; i++) {
			const struct unit_option *o = &u->v[idx[i]];

			if ((r = buf_puts(out, o->name)) < 0 || (r = buf_putc(out, '=')) < 0 ||
			    (r = buf_puts(out, o->value)) < 0 || (r = buf_putc(out, '\n')) < 0)
				goto out;
		}
	}
	r = 0;
out:
	free(idx);
	free(g);
	return r;
}

int unit_hash(const struct unit_file *u, char hex[41])
{
	static const char digits[] = "0123456789abcdef";
	struct buf b = BUF_INIT;
	unsigned char md[SHA_DIGEST_LENGTH];
	int r = unit_serialize(u, &b);

	if (r < 0)
		goto out;
	SHA1((const unsigned char *)(b.data ? b.data : ""), b.len, md);
	for (size_t i = 0; i < SHA_DIGEST_LENGTH; i++) {
		hex[2 * i] = digits[md[i] >> 4];
		hex[2 * i + 1] = digits[md[i] & 15];
	}
	hex[40] = '\0';
out:
	buf_release(&b);
	return r;
}

/* ---- JSON options arrays ---- */

int unit_to_json(const struct unit_file *u, void **ret_json)
{
	json_t *a = json_array();

	if (!a)
		return -ENOMEM;
	for (size_t i = 0; i < u->n; i++) {
		const struct unit_option *o = &u->v[i];
		json_t *e;

		if (!utf8_valid((const unsigned char *)o->section, strlen(o->section)) ||
		    !utf8_valid((const unsigned char *)o->name, strlen(o->name)) ||
		    !utf8_valid((const unsigned char *)o->value, strlen(o->value))) {
			json_decref(a);
			return FLT_EINVAL;
		}
		/* fleet's generated structs emit fields in alphabetical order. */
		e = json_pack("{s:s, s:s, s:s}", "name", o->name, "section", o->section, "value",
		              o->value);
		if (!e || json_array_append_new(a, e) < 0) {
			json_decref(a);
			return -ENOMEM;
		}
	}
	*ret_json = a;
	return 0;
}

/* Something the text form could not carry back (a line break, a '=' in a name, ...) would make
 * the stored unit differ from what `flotctl cat` shows and what the agent writes to disk. */
static const char *bad_section(const char *s, size_t n)
{
	if (!n)
		return "must not be empty";
	if (strcspn(s, "[]\r\n") != n)
		return "must not contain '[', ']' or a line break";
	return NULL;
}

static const char *bad_name(const char *s, size_t n)
{
	if (!n)
		return "must not be empty";
	if (strcspn(s, "=\r\n") != n)
		return "must not contain '=' or a line break";
	if (is_space(s[0]) || is_space(s[n - 1]))
		return "must not start or end with white space";
	if (is_comment(s[0]) || s[0] == '[')
		return "must not start with '#', ';' or '['";
	return NULL;
}

static const char *get_field(const json_t *e, const char *key, const char **ret, size_t *ret_len)
{
	json_t *v = json_object_get(e, key);

	if (!json_is_string(v))
		return "must be a string";
	*ret = json_string_value(v);
	*ret_len = json_string_length(v);
	if (strlen(*ret) != *ret_len)
		return "must not contain a NUL character";
	return NULL;
}

int unit_from_json(const void *json, struct unit_file *ret, struct buf *err)
{
	const json_t *a = json;
	struct unit_file u = UNIT_FILE_INIT;
	int r;

	ret->v = NULL;
	ret->n = 0;
	if (!json_is_array(a))
		return fail(err, 0, "options must be an array");
	for (size_t i = 0; i < json_array_size(a); i++) {
		const json_t *e = json_array_get(a, i);
		static const char *const keys[] = {"section", "name", "value"};
		const char *s[3], *why = NULL;
		size_t n[3], k;

		if (!json_is_object(e)) {
			r = fail(err, 0, "options[%zu] must be an object", i);
			goto fail;
		}
		for (k = 0; k < 3; k++)
			if ((why = get_field(e, keys[k], &s[k], &n[k])))
				break;
		if (!why && (why = bad_section(s[0], n[0])))
			k = 0;
		else if (!why && (why = bad_name(s[1], n[1])))
			k = 1;
		else if (!why && strcspn(s[2], "\r\n") != n[2]) {
			why = "must not contain a line break";
			k = 2;
		}
		if (why) {
			r = fail(err, 0, "options[%zu].%s %s", i, keys[k], why);
			goto fail;
		}
		if (n[0] + 2 >= UNIT_LINE_MAX || n[1] + 1 + n[2] >= UNIT_LINE_MAX) {
			r = fail(err, 0, "options[%zu]: line too long (max %d bytes)", i,
			         UNIT_LINE_MAX);
			goto fail;
		}
		if ((r = file_add_n(&u, s[0], s[1], n[1], s[2], n[2])) < 0)
			goto fail;
	}
	*ret = u;
	return 0;
fail:
	unit_file_release(&u);
	return r;
}

/* ---- names ---- */

static const char *const unit_types[] = {"automount", "busname", "device", "mount",    "path",
                                         "scope",     "service", "slice",  "snapshot", "socket",
                                         "swap",      "target",  "timer"};
static const char *const template_types[] = {"path", "service", "socket", "target", "timer"};

static bool in_list(const char *s, const char *const *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(s, list[i]))
			return true;
	return false;
}

static bool name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == ':' || c == '_' || c == '.' || c == '@' || c == '-';
}

/* Reasons quoting part of the name live here: a name that reaches them is at most
 * UNIT_NAME_MAX bytes, so the buffer is bounded (and the daemon is single-threaded). */
static char why_buf[UNIT_NAME_MAX + 64];

int unit_name_check(const char *name, const char **why)
{
	size_t len = strlen(name);
	const char *dot = strrchr(name, '.'), *w = NULL;

	if (!len)
		w = "unit name cannot be empty";
	else if (len > UNIT_NAME_MAX)
		w = "unit name exceeds maximum length (256)";
	else if (!dot)
		w = "unit name must contain \".\"";
	else if (!dot[1])
		w = "unit name cannot end in \".\"";
	else if (!in_list(dot + 1, unit_types, sizeof(unit_types) / sizeof(unit_types[0]))) {
		snprintf(why_buf, sizeof(why_buf), "invalid unit type: \"%s\"", dot + 1);
		w = why_buf;
	} else {
		for (const char *c = name; c < dot && !w; c++) {
			unsigned char ch = (unsigned char)*c;

			if (name_char(*c))
				continue;
			if (ch == '\'' || ch == '\\')
				snprintf(why_buf, sizeof(why_buf),
				         "invalid character '\\%c' in unit name", ch);
			else if (ch >= 0x20 && ch < 0x7f)
				snprintf(why_buf, sizeof(why_buf),
				         "invalid character '%c' in unit name", ch);
			else
				snprintf(why_buf, sizeof(why_buf),
				         "invalid character '\\x%02x' in unit name", ch);
			w = why_buf;
		}
	}
	if (!w && name[0] == '@')
		w = "unit name cannot start in \"@\"";
	else if (!w && name[0] == '.')
		w = "unit name cannot start in \".\"";
	else if (!w && strchr(name, '@') &&
	         !in_list(dot + 1, template_types,
	                  sizeof(template_types) / sizeof(template_types[0]))) {
		snprintf(why_buf, sizeof(why_buf), "invalid unit type for template: \"%s\"",
		         dot + 1);
		w = why_buf;
	}
	if (w) {
		if (why)
			*why = w;
		return FLT_EINVAL;
	}
	return 0;
}

bool unit_name_is_template(const char *name)
{
	const char *at = strchr(name, '@'), *dot = strrchr(name, '.');

	return at && dot && at + 1 == dot;
}

bool unit_name_is_instance(const char *name)
{
	const char *at = strchr(name, '@'), *dot = strrchr(name, '.');

	return at && dot && at + 1 < dot;
}

int unit_name_template(const char *instance, struct buf *out)
{
	const char *at = strchr(instance, '@'), *dot = strrchr(instance, '.');
	int r;

	if (!unit_name_is_instance(instance))
		return FLT_EINVAL;
	if ((r = buf_append(out, instance, (size_t)(at - instance) + 1)) < 0)
		return r;
	return buf_puts(out, dot);
}

int unit_name_mangle(const char *arg, struct buf *out)
{
	size_t end = strlen(arg), start;
	const char *dot;
	int r;

	/* Go's path.Base: trailing slashes dropped, then the last element; "" is ".", "///"
	 * is "/". */
	while (end > 1 && arg[end - 1] == '/')
		end--;
	if (!end)
		return buf_puts(out, ".service");
	start = end;
	while (start > 0 && arg[start - 1] != '/')
		start--;
	if (start == end) /* only slashes */
		start = end - 1;
	if ((r = buf_append(out, arg + start, end - start)) < 0)
		return r;
	/* Every type the API accepts counts as a suffix, unlike fleetctl's shorter list which
	 * turned foo.target into foo.target.service (INVENTORY §8.15). */
	dot = memrchr(arg + start, '.', end - start);
	if (dot && (size_t)(dot - arg) + 1 < end) {
		size_t n = end - (size_t)(dot - arg) - 1;

		for (size_t i = 0; i < sizeof(unit_types) / sizeof(unit_types[0]); i++)
			if (strlen(unit_types[i]) == n && !memcmp(unit_types[i], dot + 1, n))
				return 0;
	}
	return buf_puts(out, ".service");
}

int unit_expand(const char *name, const char *in, struct buf *out)
{
	const char *dot = strrchr(name, '.');
	size_t nlen = dot ? (size_t)(dot - name) : strlen(name);
	const char *at = memchr(name, '@', nlen);
	size_t plen = at ? (size_t)(at - name) : nlen;
	const char *inst = at ? at + 1 : "";
	size_t ilen = at ? nlen - plen - 1 : 0;
	int r = 0;

	for (const char *s = in; *s && r >= 0; s++) {
		if (*s != '%' || !s[1]) {
			r = buf_putc(out, *s);
			continue;
		}
		switch (*++s) {
		case 'n':
			r = buf_puts(out, name);
			break;
		case 'N': /* fleet does no unescaping, and names cannot hold '\' anyway */
			r = buf_append(out, name, nlen);
			break;
		case 'p':
			r = buf_append(out, name, plen);
			break;
		case 'i':
			r = buf_append(out, inst, ilen);
			break;
		case '%':
			r = buf_putc(out, '%');
			break;
		default: /* fleet leaves other specifiers for systemd */
			if ((r = buf_putc(out, '%')) >= 0)
				r = buf_putc(out, *s);
		}
	}
	return r;
}
