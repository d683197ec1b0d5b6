/* systemd's ExecStart= word splitting and EnvironmentFile= parsing, as the exec shim needs them
 * (see cmdline.h). Written to the rules of systemd.service(5) "Command lines" rather than to its
 * code: whitespace separates words, "..." and '...' group, C escapes work inside and outside
 * quotes, and environment variables are substituted after unquoting. */
#include "cmdline.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct vec {
	char **v;
	size_t n, cap;
};

struct str {
	char *s;
	size_t n, cap;
};

static int str_putc(struct str *b, char c)
{
	if (b->n + 2 > b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 32;
		char *s = realloc(b->s, cap);

		if (!s)
			return -ENOMEM;
		b->s = s;
		b->cap = cap;
	}
	b->s[b->n++] = c;
	b->s[b->n] = '\0';
	return 0;
}

static int str_puts(struct str *b, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (str_putc(b, s[i]) < 0)
			return -ENOMEM;
	return 0;
}

static int vec_push(struct vec *v, char *s)
{
	if (v->n + 2 > v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 8;
		char **p = realloc(v->v, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		v->v = p;
		v->cap = cap;
	}
	v->v[v->n++] = s;
	v->v[v->n] = NULL;
	return 0;
}

void cmdline_free(char **argv)
{
	if (!argv)
		return;
	for (char **p = argv; *p; p++)
		free(*p);
	free(argv);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* One C escape after a backslash at *pp; advances *pp past it. */
static int unescape(const char **pp, struct str *w)
{
	const char *p = *pp;
	char c = *p++;
	int r;

	switch (c) {
	case 'a':
		r = str_putc(w, '\a');
		break;
	case 'b':
		r = str_putc(w, '\b');
		break;
	case 'f':
		r = str_putc(w, '\f');
		break;
	case 'n':
		r = str_putc(w, '\n');
		break;
	case 'r':
		r = str_putc(w, '\r');
		break;
	case 't':
		r = str_putc(w, '\t');
		break;
	case 'v':
		r = str_putc(w, '\v');
		break;
	case 's':
		r = str_putc(w, ' ');
		break;
	case '\\':
	case '"':
	case '\'':
	case ' ':
	case ';':
	case '$':
		r = str_putc(w, c);
		break;
	case 'x': {
		int a = hexval(p[0]), b = a >= 0 ? hexval(p[1]) : -1;

		if (a < 0 || b < 0 || (a == 0 && b == 0))
			return -EINVAL;
		p += 2;
		r = str_putc(w, (char)(a * 16 + b));
		break;
	}
	case '0':
	case '1':
	case '2':
	case '3':
	case '4':
	case '5':
	case '6':
	case '7': {
		int v = c - '0';

		if (p[0] < '0' || p[0] > '7' || p[1] < '0' || p[1] > '7')
			return -EINVAL;
		v = v * 64 + (p[0] - '0') * 8 + (p[1] - '0');
		p += 2;
		if (v == 0 || v > 255)
			return -EINVAL;
		r = str_putc(w, (char)v);
		break;
	}
	default:
		return -EINVAL;
	}
	*pp = p;
	return r;
}

static bool is_name_char(char c, bool first)
{
	return c == '_' || isalpha((unsigned char)c) || (!first && isdigit((unsigned char)c));
}

/* ${NAME} and $$ inside a word. */
static int expand_word(const char *word, struct str *out)
{
	for (const char *p = word; *p;) {
		if (p[0] == '$' && p[1] == '$') {
			if (str_putc(out, '$') < 0)
				return -ENOMEM;
			p += 2;
		} else if (p[0] == '$' && p[1] == '{') {
			const char *e = strchr(p + 2, '}');
			char *name;
			const char *v;

			if (!e) {
				if (str_puts(out, p, strlen(p)) < 0)
					return -ENOMEM;
				break;
			}
			name = strndup(p + 2, (size_t)(e - p - 2));
			if (!name)
				return -ENOMEM;
			v = getenv(name);
			free(name);
			if (v && str_puts(out, v, strlen(v)) < 0)
				return -ENOMEM;
			p = e + 1;
		} else {
			if (str_putc(out, *p++) < 0)
				return -ENOMEM;
		}
	}
	if (!out->s)
		out->s = strdup("");
	return out->s ? 0 : -ENOMEM;
}

static int push_word(struct vec *v, struct str *w, bool quoted, bool expand)
{
	const char *s = w->s ? w->s : "";
	int r;

	if (expand && s[0] == '$' && is_name_char(s[1], true)) {
		const char *p = s + 1;

		while (is_name_char(*p, false))
			p++;
		if (!*p && !quoted) {
			/* $NAME alone: the value split at whitespace, zero or more words. */
			const char *val = getenv(s + 1);

			while (val && *val) {
				size_t n;
				char *x;

				while (isspace((unsigned char)*val))
					val++;
				n = strcspn(val, " \t\n\r\v\f");
				if (!n)
					break;
				x = strndup(val, n);
				if (!x || vec_push(v, x) < 0) {
					free(x);
					return -ENOMEM;
				}
				val += n;
			}
			goto out;
		}
	}
	if (expand) {
		struct str e = {0};

		r = expand_word(s, &e);
		if (r < 0) {
			free(e.s);
			return r;
		}
		if (vec_push(v, e.s) < 0) {
			free(e.s);
			return -ENOMEM;
		}
	} else {
		char *x = strdup(s);

		if (!x || vec_push(v, x) < 0) {
			free(x);
			return -ENOMEM;
		}
	}
out:
	free(w->s);
	*w = (struct str){0};
	return 0;
}

int cmdline_split(const char *line, bool expand, char ***ret_argv)
{
	struct vec v = {0};
	struct str w = {0};
	const char *p = line;
	int r = 0;

	for (;;) {
		bool in_word = false, quoted = false;

		while (isspace((unsigned char)*p))
			p++;
		if (!*p)
			break;
		while (*p && !isspace((unsigned char)*p)) {
			in_word = true;
			if (*p == '"' || *p == '\'') {
				char q = *p++;

				quoted = true;
				while (*p && *p != q) {
					if (*p == '\\' && q == '"') {
						p++;
						r = *p ? unescape(&p, &w) : -EINVAL;
					} else {
						r = str_putc(&w, *p++);
					}
					if (r < 0)
						goto fail;
				}
				if (*p != q) {
					r = -EINVAL;
					goto fail;
				}
				p++;
			} else if (*p == '\\') {
				p++;
				r = *p ? unescape(&p, &w) : -EINVAL;
				if (r < 0)
					goto fail;
			} else {
				r = str_putc(&w, *p++);
				if (r < 0)
					goto fail;
			}
		}
		if (in_word && (r = push_word(&v, &w, quoted, expand)) < 0)
			goto fail;
	}
	if (!v.v) {
		v.v = calloc(1, sizeof(char *));
		if (!v.v) {
			r = -ENOMEM;
			goto fail;
		}
	}
	*ret_argv = v.v;
	return 0;
fail:
	free(w.s);
	if (v.v)
		cmdline_free(v.v);
	return r;
}

int cmdline_load_envfile(const char *path)
{
	FILE *f = fopen(path, "re");
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;

	if (!f)
		return -errno;
	while ((n = getline(&line, &cap, f)) >= 0) {
		char *s = line, *e, *eq, *val;

		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		while (isspace((unsigned char)*s))
			s++;
		if (!*s || *s == '#' || *s == ';')
			continue;
		eq = strchr(s, '=');
		if (!eq)
			continue;
		*eq = '\0';
		e = eq;
		while (e > s && isspace((unsigned char)e[-1]))
			*--e = '\0';
		val = eq + 1;
		while (isspace((unsigned char)*val))
			val++;
		e = val + strlen(val);
		while (e > val && isspace((unsigned char)e[-1]))
			*--e = '\0';
		if (e - val >= 2 && (*val == '"' || *val == '\'') && e[-1] == *val) {
			char q = *val, *r = val + 1, *o = val;

			e[-1] = '\0';
			while (*r) {
				if (q == '"' && *r == '\\' && r[1])
					r++;
				*o++ = *r++;
			}
			*o = '\0';
		}
		if (*s && setenv(s, val, 1) < 0) {
			free(line);
			fclose(f);
			return -errno;
		}
	}
	free(line);
	fclose(f);
	return 0;
}
