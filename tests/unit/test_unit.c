/* Unit tests of src/unit: the unit file parser, serialization and fleet's hash (checked against
 * hashes fleet v1.0 itself stored), names, mangling, specifiers, [X-Fleet] and [X-Flotilla]. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "unit/unit.h"
#include "util/buf.h"
#include "util/err.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* Parse `text`, return its serialization (or "ERR:<message>") in a static-lifetime buffer. */
static struct buf result;

static const char *parse_result(const char *text, size_t len)
{
	struct unit_file u = UNIT_FILE_INIT;
	struct buf err = BUF_INIT;
	int r;

	buf_release(&result);
	r = unit_parse(text, len, &u, &err);
	if (r < 0) {
		assert_int_equal(r, FLT_EINVAL);
		assert_int_equal(u.n, 0);
		buf_puts(&result, "ERR:");
		buf_puts(&result, err.data ? err.data : "");
	} else {
		assert_int_equal(unit_serialize(&u, &result), 0);
		if (!result.data)
			buf_puts(&result, "");
	}
	unit_file_release(&u);
	buf_release(&err);
	return result.data;
}

/* ---- parser ---- */

static const struct {
	const char *text, *want;
} parse_cases[] = {
    {"", ""},
    {"\n\n   \n", ""},
    {"# only a comment\n; another\n", ""},
    {"[Unit]\nDescription=Hello\n", "[Unit]\nDescription=Hello\n"},
    /* no final newline, CRLF endings */
    {"[Unit]\r\nDescription=Hello\r\nA=b", "[Unit]\nDescription=Hello\nA=b\n"},
    /* white space around keys, '=' and values is dropped, inside values kept */
    {"  [Unit]  \n  Description  =   Hello   World  \n", "[Unit]\nDescription=Hello   World\n"},
    /* comments: '#' and ';' at line start only, indented too */
    {"[Unit]\n# c\n  ; c\nA=1 # not a comment\nB=x;y\n", "[Unit]\nA=1 # not a comment\nB=x;y\n"},
    /* continuation: the backslash becomes a space, the next line is taken as it is */
    {"[Service]\nExecStart=/bin/echo a \\\n  b\n", "[Service]\nExecStart=/bin/echo a    b\n"},
    {"[Service]\nExecStart=/bin/echo \\\n# dropped comment\n; another\n b \\\n c\nX=y\n",
     "[Service]\nExecStart=/bin/echo   b   c\nX=y\n"},
    /* trailing white space after the backslash does not matter */
    {"[S]\nA=x\\   \ny\n", "[S]\nA=x y\n"},
    /* an escaped backslash does not continue */
    {"[S]\nA=x\\\\\nB=y\n", "[S]\nA=x\\\\\nB=y\n"},
    /* a continuation at the end of the file */
    {"[S]\nA=x \\", "[S]\nA=x\n"},
    /* a comment ending in a backslash does not swallow the next line */
    {"[S]\n# comment \\\nA=1\n", "[S]\nA=1\n"},
    /* quoting is the settings' business: kept verbatim */
    {"[Service]\nExecStart=/bin/sh -c \"echo \\\"hi\\\"; echo 'x y'\"\n",
     "[Service]\nExecStart=/bin/sh -c \"echo \\\"hi\\\"; echo 'x y'\"\n"},
    {"[X-Fleet]\nMachineMetadata=\"a=b\" \"c=d\"\n",
     "[X-Fleet]\nMachineMetadata=\"a=b\" \"c=d\"\n"},
    /* repeated keys kept in order; a re-opened section is merged in first-seen order */
    {"[A]\nx=1\n[B]\ny=2\n[A]\nx=3\nx=\n", "[A]\nx=1\nx=3\nx=\n\n[B]\ny=2\n"},
    /* '=' in a value, empty value, non-ASCII */
    {"[Service]\nEnvironment=A=B C=D\nX=\nD=caf\xc3\xa9\n",
     "[Service]\nEnvironment=A=B C=D\nX=\nD=caf\xc3\xa9\n"},
    /* an empty section is dropped (it has no options) */
    {"[Empty]\n[S]\nA=1\n", "[S]\nA=1\n"},
    /* errors, with the line the logical line started on */
    {"A=1\n", "ERR:line 1: assignment outside of a section"},
    {"# c\n\nDescription=x\n[Unit]\n", "ERR:line 3: assignment outside of a section"},
    {"[Unit]\nfoo\n", "ERR:line 2: missing '=' in \"foo\""},
    {"[Unit]\nA=1\nfoo \\\n bar\n", "ERR:line 3: missing '=' in \"foo   bar\""},
    {"[Unit\nA=1\n", "ERR:line 1: invalid section header \"[Unit\""},
    {"[Unit] x\n", "ERR:line 1: invalid section header \"[Unit] x\""},
    {"[U[n]it]\n", "ERR:line 1: invalid section header \"[U[n]it]\""},
    {"[]\n", "ERR:line 1: empty section name"},
    {"[Unit]\n = x\n", "ERR:line 2: missing key before '='"},
    {"[Unit]\nA=\xff\xfe\n", "ERR:line 2: invalid UTF-8"},
    {"[Unit]\nA=\xc0\xaf\n", "ERR:line 2: invalid UTF-8"},
    {"[Unit]\nA=\xed\xa0\x80\n", "ERR:line 2: invalid UTF-8"},
};

static void test_parse_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < N_ELEMS(parse_cases); i++) {
		const char *got = parse_result(parse_cases[i].text, strlen(parse_cases[i].text));

		if (strcmp(got, parse_cases[i].want))
			fail_msg("case %zu: got \"%s\" want \"%s\"", i, got, parse_cases[i].want);
	}
	buf_release(&result);
}

static void test_parse_options(void **state)
{
	static const char text[] = "[Unit]\nDescription=web\n[Service]\nExecStart=/a\n"
	                           "ExecStart=/b\n[Unit]\nRequires=x.service\n";
	struct unit_file u = UNIT_FILE_INIT;
	struct buf err = BUF_INIT;

	(void)state;
	/* an empty body, even without text */
	assert_int_equal(unit_parse(NULL, 0, &u, &err), 0);
	assert_int_equal(u.n, 0);
	assert_int_equal(unit_serialize(&u, &err), 0);
	assert_non_null(err.data);
	assert_string_equal(err.data, "");
	assert_int_equal(unit_parse(text, strlen(text), &u, &err), 0);
	assert_int_equal(u.n, 4);
	/* file order is kept in the list itself */
	assert_string_equal(u.v[0].section, "Unit");
	assert_string_equal(u.v[1].value, "/a");
	assert_string_equal(u.v[2].value, "/b");
	assert_string_equal(u.v[3].name, "Requires");
	assert_string_equal(unit_get(&u, "Service", "ExecStart"), "/b");
	assert_null(unit_get(&u, "Service", "Nope"));
	assert_null(unit_get(&u, "Nope", "ExecStart"));
	assert_int_equal(unit_file_add(&u, "X-Fleet", "Global", "true"), 0);
	assert_string_equal(unit_get(&u, "X-Fleet", "Global"), "true");
	/* many options: the array grows */
	for (int i = 0; i < 100; i++)
		assert_int_equal(unit_file_add(&u, "S", "K", "v"), 0);
	assert_int_equal(u.n, 105);
	unit_file_release(&u);
	unit_file_release(&u);
	unit_file_release(NULL);
	buf_release(&err);
}

static void test_parse_limits(void **state)
{
	struct buf t = BUF_INIT;
	const char *got;

	(void)state;
	/* 2047 bytes per line pass, 2048 do not (go-systemd's limit, which fleet enforced) */
	buf_puts(&t, "[S]\nA=");
	for (int i = 0; i < 2045; i++)
		buf_putc(&t, 'x');
	got = parse_result(t.data, t.len);
	assert_memory_equal(got, "[S]\nA=xxx", 9);
	buf_puts(&t, "x\n");
	got = parse_result(t.data, t.len);
	assert_string_equal(got, "ERR:line 2: line too long (max 2048 bytes)");
	/* a NUL byte is refused with its line */
	got = parse_result("[S]\nA=1\nB=\0x\n", 13);
	assert_string_equal(got, "ERR:line 3: NUL byte in unit file");
	/* a long logical line made of continuations is fine */
	buf_clear(&t);
	buf_puts(&t, "[S]\nA=");
	for (int i = 0; i < 100; i++)
		buf_puts(&t, "0123456789012345678901234567890123456789 \\\n");
	buf_puts(&t, "end\n");
	got = parse_result(t.data, t.len);
	assert_int_equal(strncmp(got, "ERR", 3) != 0, 1);
	assert_true(strlen(got) > 4000);
	buf_release(&t);
	buf_release(&result);
}

/* ---- serialization and hash ---- */

/* Unit bodies and the hashes fleet v1.0 stored for them under /_coreos.com/fleet/unit/<hash>
 * (reference/fleet/transcripts/etcd-layout-final.txt). */
static const struct {
	const char *text, *hash;
} hash_cases[] = {
    {"[Unit]\nDescription=Hello World\n\n[Service]\nExecStart=/bin/bash -c \"while true; do "
     "echo \\\"Hello, world\\\"; sleep 1; done\"\n",
     "e55c0aeb44ba0b68004ceb8a200e685194448b45"},
    {"[Service]\nExecStart=/bin/sleep 100000\n\n[X-Fleet]\nMachineMetadata=\"region=nowhere\" "
     "\"role=test\"\nMachineMetadata=region=local\n",
     "0720b156f7f6f62ecf5f99f143e4cda4e5990b5b"},
    {"[Service]\nExecStart=/bin/sleep 100000\n\n[X-Fleet]\nMachineID=3d1219c7\n",
     "07f758d1af055b3a92b2834ced70037f6938c919"},
    {"[Service]\nExecStart=/bin/sleep %i\n", "1ec8748dab46e98d4af96aeadf25dfcea34fbab5"},
    {"[Unit]\nDescription=Sidekick for web@%i\n\n[Service]\nExecStart=/bin/sleep 100000\n\n"
     "[X-Fleet]\nMachineOf=web@%i.service\n",
     "a7a1568ada57ef7576bc8b7ed85d366aa0585728"},
    {"[Unit]\nDescription=Web instance %i\n\n[Service]\nExecStart=/bin/sleep 100000\n\n"
     "[X-Fleet]\nConflicts=web@*.service\n",
     "ce9083aab68e163bd5e235a1e1ec80da886410e4"},
    {"[Unit]\nDescription=Global thing\n\n[Service]\nExecStart=/bin/sleep 100000\n\n[X-Fleet]\n"
     "Global=true\nMachineMetadata=region=local\n",
     "ff263323349d6702095462fe5c5018a6d9c139ec"},
    {"[Service]\nExecStart=/bin/sleep 100000\n\n[Install]\nWantedBy=default.target\n",
     "940e3af8e7e75cc38325ea29fd253154bcc636e1"},
    /* the same units written differently: white space, comments, order of sections */
    {"# hello\n[Unit]\n   Description =  Hello World   \n\n\n; x\n[Service]\n"
     "ExecStart= /bin/bash -c \"while true; do echo \\\"Hello, world\\\"; sleep 1; done\"\r\n",
     "e55c0aeb44ba0b68004ceb8a200e685194448b45"},
    /* sections come out in first-seen order, so this one differs from fleet's global unit */
    {"[X-Fleet]\nGlobal=true\n[Unit]\nDescription=Global thing\n[Service]\n"
     "ExecStart=/bin/sleep 100000\n[X-Fleet]\nMachineMetadata=region=local",
     "faf854f894d6a70a3fc49875951a697e0423c91d"},
    {"", "da39a3ee5e6b4b0d3255bfef95601890afd80709"},
};

static void test_hash(void **state)
{
	(void)state;
	for (size_t i = 0; i < N_ELEMS(hash_cases); i++) {
		struct unit_file u = UNIT_FILE_INIT;
		struct buf err = BUF_INIT;
		char hex[41];

		assert_int_equal(
		    unit_parse(hash_cases[i].text, strlen(hash_cases[i].text), &u, &err), 0);
		assert_int_equal(unit_hash(&u, hex), 0);
		if (strcmp(hex, hash_cases[i].hash))
			fail_msg("case %zu: got %s want %s", i, hex, hash_cases[i].hash);
		unit_file_release(&u);
		buf_release(&err);
	}
}

static void test_hash_stable(void **state)
{
	static const char *const same[] = {
	    "[Unit]\nDescription=x\n[Service]\nExecStart=/bin/true\n",
	    "\n\n[Unit]\n# comment\nDescription = x\n\n[Service]\n  ExecStart=/bin/true  \n",
	    "[Unit]\r\nDescription=x\r\n\r\n[Service]\r\n;c\r\nExecStart=/bin/true",
	    "[Unit]\nDescription=\\\nx\n[Service]\nExecStart=/bin/true\n",
	};
	char first[41], hex[41];

	(void)state;
	for (size_t i = 0; i < N_ELEMS(same); i++) {
		struct unit_file u = UNIT_FILE_INIT;

		assert_int_equal(unit_parse(same[i], strlen(same[i]), &u, NULL), 0);
		assert_int_equal(unit_hash(&u, i ? hex : first), 0);
		if (i)
			assert_string_equal(hex, first);
		unit_file_release(&u);
	}
	/* any real change changes it */
	{
		struct unit_file u = UNIT_FILE_INIT;
		const char *t = "[Unit]\nDescription=y\n[Service]\nExecStart=/bin/true\n";

		assert_int_equal(unit_parse(t, strlen(t), &u, NULL), 0);
		assert_int_equal(unit_hash(&u, hex), 0);
		assert_string_not_equal(hex, first);
		unit_file_release(&u);
	}
}

/* ---- JSON ---- */

static void test_json(void **state)
{
	static const char text[] = "[Unit]\nDescription=Hello World\n[Service]\nExecStart=/bin/x "
	                           "\"a b\"\nExecStart=/bin/y\n";
	struct unit_file u = UNIT_FILE_INIT, back = UNIT_FILE_INIT;
	struct buf err = BUF_INIT, s1 = BUF_INIT, s2 = BUF_INIT;
	void *j = NULL;
	char *dump;

	(void)state;
	assert_int_equal(unit_parse(text, strlen(text), &u, &err), 0);
	assert_int_equal(unit_to_json(&u, &j), 0);
	dump = json_dumps(j, JSON_COMPACT);
	/* fleet's field order (alphabetical) */
	assert_string_equal(dump,
	                    "[{\"name\":\"Description\",\"section\":\"Unit\",\"value\":\"Hello "
	                    "World\"},{\"name\":\"ExecStart\",\"section\":\"Service\","
	                    "\"value\":\"/bin/x \\\"a b\\\"\"},{\"name\":\"ExecStart\","
	                    "\"section\":\"Service\",\"value\":\"/bin/y\"}]");
	free(dump);
	assert_int_equal(unit_from_json(j, &back, &err), 0);
	assert_int_equal(back.n, 3);
	assert_int_equal(unit_serialize(&u, &s1), 0);
	assert_int_equal(unit_serialize(&back, &s2), 0);
	assert_string_equal(s1.data, s2.data);
	json_decref(j);
	unit_file_release(&u);
	unit_file_release(&back);
	/* an empty list is an empty unit */
	j = json_array();
	assert_int_equal(unit_from_json(j, &back, &err), 0);
	assert_int_equal(back.n, 0);
	json_decref(j);
	/* values keep surrounding spaces given through the API, as fleet does */
	j = json_loads("[{\"section\":\"S\",\"name\":\"A\",\"value\":\" x \",\"extra\":1}]", 0,
	               NULL);
	assert_int_equal(unit_from_json(j, &back, &err), 0);
	assert_string_equal(back.v[0].value, " x ");
	json_decref(j);
	unit_file_release(&back);
	buf_release(&err);
	buf_release(&s1);
	buf_release(&s2);
}

static void test_json_errors(void **state)
{
	static const struct {
		const char *json, *want;
	} cases[] = {
	    {"{}", "options must be an array"},
	    {"null", "options must be an array"},
	    {"[1]", "options[0] must be an object"},
	    {"[{\"section\":\"S\",\"name\":\"A\",\"value\":\"x\"}, []]",
	     "options[1] must be an object"},
	    {"[{\"name\":\"A\",\"value\":\"x\"}]", "options[0].section must be a string"},
	    {"[{\"section\":\"S\",\"name\":\"A\"}]", "options[0].value must be a string"},
	    {"[{\"section\":\"S\",\"name\":\"A\",\"value\":1}]",
	     "options[0].value must be a string"},
	    {"[{\"section\":\"S\",\"name\":null,\"value\":\"x\"}]",
	     "options[0].name must be a string"},
	    {"[{\"section\":\"\",\"name\":\"A\",\"value\":\"x\"}]",
	     "options[0].section must not be empty"},
	    {"[{\"section\":\"a]b\",\"name\":\"A\",\"value\":\"x\"}]",
	     "options[0].section must not contain '[', ']' or a line break"},
	    {"[{\"section\":\"S\",\"name\":\"A=B\",\"value\":\"x\"}]",
	     "options[0].name must not contain '=' or a line break"},
	    {"[{\"section\":\"S\",\"name\":\"\",\"value\":\"x\"}]",
	     "options[0].name must not be empty"},
	    {"[{\"section\":\"S\",\"name\":\" A\",\"value\":\"x\"}]",
	     "options[0].name must not start or end with white space"},
	    {"[{\"section\":\"S\",\"name\":\"#A\",\"value\":\"x\"}]",
	     "options[0].name must not start with '#', ';' or '['"},
	    {"[{\"section\":\"S\",\"name\":\"A\",\"value\":\"x\\ny\"}]",
	     "options[0].value must not contain a line break"},
	    {"[{\"section\":\"S\",\"name\":\"A\",\"value\":\"x\\u0000y\"}]",
	     "options[0].value must not contain a NUL character"},
	};
	struct unit_file u = UNIT_FILE_INIT;

	(void)state;
	for (size_t i = 0; i < N_ELEMS(cases); i++) {
		struct buf err = BUF_INIT;
		json_t *j = json_loads(cases[i].json, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);

		assert_non_null(j);
		assert_int_equal(unit_from_json(j, &u, &err), FLT_EINVAL);
		assert_int_equal(u.n, 0);
		if (!err.data || strcmp(err.data, cases[i].want))
			fail_msg("case %zu: got \"%s\"", i, err.data);
		json_decref(j);
		buf_release(&err);
	}
	/* too long for a unit file line */
	{
		struct buf v = BUF_INIT, err = BUF_INIT;
		json_t *j;

		for (int i = 0; i < 2046; i++)
			buf_putc(&v, 'x');
		j = json_pack("[{s:s, s:s, s:s}]", "section", "S", "name", "A", "value", v.data);
		/* "A=" and 2046 bytes make a 2048-byte line */
		assert_int_equal(unit_from_json(j, &u, &err), FLT_EINVAL);
		assert_string_equal(err.data, "options[0]: line too long (max 2048 bytes)");
		json_decref(j);
		buf_clear(&v);
		for (int i = 0; i < 2045; i++)
			buf_putc(&v, 'x');
		j = json_pack("[{s:s, s:s, s:s}]", "section", "S", "name", "A", "value", v.data);
		assert_int_equal(unit_from_json(j, &u, &err), 0);
		unit_file_release(&u);
		json_decref(j);
		buf_release(&v);
		buf_release(&err);
	}
	(void)state;
}

/* ---- names ---- */

static char *repeat(char c, size_t n, const char *suffix)
{
	char *s = malloc(n + strlen(suffix) + 1);

	assert_non_null(s);
	memset(s, c, n);
	strcpy(s + n, suffix);
	return s;
}

static void test_names(void **state)
{
	static const struct {
		const char *name, *why; /* why NULL: valid */
	} cases[] = {
	    {"hello.service", NULL},
	    {"a.socket", NULL},
	    {"x.timer", NULL},
	    {"x.path", NULL},
	    {"x.target", NULL},
	    {"x.mount", NULL},
	    {"x.automount", NULL},
	    {"x.device", NULL},
	    {"x.busname", NULL},
	    {"x.scope", NULL},
	    {"x.slice", NULL},
	    {"x.snapshot", NULL},
	    {"x.swap", NULL},
	    {"A-z_0:9.x.service", NULL},
	    {"web@.service", NULL},
	    {"web@1.service", NULL},
	    {"web@a.b@c.socket", NULL},
	    {"", "unit name cannot be empty"},
	    {"hello", "unit name must contain \".\""},
	    {"hello.", "unit name cannot end in \".\""},
	    {"hello.bogus", "invalid unit type: \"bogus\""},
	    {"hello.Service", "invalid unit type: \"Service\""},
	    {"he!lo.service", "invalid character '!' in unit name"},
	    {"he lo.service", "invalid character ' ' in unit name"},
	    {"a/b.service", "invalid character '/' in unit name"},
	    {"a\\x2d.service", "invalid character '\\\\' in unit name"},
	    {"a'b.service", "invalid character '\\'' in unit name"},
	    {"a\tb.service", "invalid character '\\x09' in unit name"},
	    {"caf\xc3\xa9.service", "invalid character '\\xc3' in unit name"},
	    {"web*.service", "invalid character '*' in unit name"},
	    {"@foo.service", "unit name cannot start in \"@\""},
	    {".service", "unit name cannot start in \".\""},
	    {"foo@bar.mount", "invalid unit type for template: \"mount\""},
	    {"foo@.device", "invalid unit type for template: \"device\""},
	};
	const char *why;
	char *s;

	(void)state;
	for (size_t i = 0; i < N_ELEMS(cases); i++) {
		why = NULL;
		if (!cases[i].why) {
			if (unit_name_check(cases[i].name, &why) != 0)
				fail_msg("%s: %s", cases[i].name, why);
			continue;
		}
		assert_int_equal(unit_name_check(cases[i].name, &why), FLT_EINVAL);
		if (strcmp(why, cases[i].why))
			fail_msg("%s: got \"%s\" want \"%s\"", cases[i].name, why, cases[i].why);
	}
	/* 256 characters in all is the most */
	s = repeat('a', 256 - strlen(".service"), ".service");
	assert_int_equal(strlen(s), 256);
	assert_int_equal(unit_name_check(s, &why), 0);
	free(s);
	s = repeat('a', 257 - strlen(".service"), ".service");
	assert_int_equal(unit_name_check(s, &why), FLT_EINVAL);
	assert_string_equal(why, "unit name exceeds maximum length (256)");
	free(s);
	assert_int_equal(unit_name_check("bad", NULL), FLT_EINVAL);
}

static void test_templates(void **state)
{
	struct buf b = BUF_INIT;

	(void)state;
	assert_true(unit_name_is_template("web@.service"));
	assert_false(unit_name_is_instance("web@.service"));
	assert_true(unit_name_is_instance("web@1.service"));
	assert_false(unit_name_is_template("web@1.service"));
	assert_false(unit_name_is_template("web.service"));
	assert_false(unit_name_is_instance("web.service"));
	assert_true(unit_name_is_instance("web@a.b.socket"));
	assert_int_equal(unit_name_template("web@1.service", &b), 0);
	assert_string_equal(b.data, "web@.service");
	buf_clear(&b);
	assert_int_equal(unit_name_template("web@a.b.socket", &b), 0);
	assert_string_equal(b.data, "web@.socket");
	buf_clear(&b);
	assert_int_equal(unit_name_template("web@.service", &b), FLT_EINVAL);
	assert_int_equal(unit_name_template("web.service", &b), FLT_EINVAL);
	assert_int_equal(b.len, 0);
	buf_release(&b);
}

static void test_mangle(void **state)
{
	static const struct {
		const char *arg, *want;
	} cases[] = {
	    {"hello", "hello.service"},
	    {"hello.service", "hello.service"},
	    {"units/web@1.service", "web@1.service"},
	    {"/abs/path/to/web@.service", "web@.service"},
	    {"dir/sub/", "sub.service"},
	    {"foo.socket", "foo.socket"},
	    {"foo.timer", "foo.timer"},
	    {"foo.automount", "foo.automount"},
	    /* every type the API accepts is kept (fleetctl made this foo.target.service) */
	    {"foo.target", "foo.target"},
	    {"foo.bar", "foo.bar.service"},
	    {"foo.", "foo..service"},
	    {"v1.2", "v1.2.service"},
	};

	(void)state;
	for (size_t i = 0; i < N_ELEMS(cases); i++) {
		struct buf b = BUF_INIT;

		assert_int_equal(unit_name_mangle(cases[i].arg, &b), 0);
		if (strcmp(b.data, cases[i].want))
			fail_msg("%s: got %s want %s", cases[i].arg, b.data, cases[i].want);
		buf_release(&b);
	}
}

static void test_expand(void **state)
{
	static const struct {
		const char *name, *in, *want;
	} cases[] = {
	    {"foo@bar.service", "%n %N %p %i", "foo@bar.service foo@bar foo bar"},
	    {"foo@bar.service", "web@%i.service", "web@bar.service"},
	    {"foo@bar.service", "100%% %x %H %m%", "100% %x %H %m%"},
	    {"foo@bar.service", "%%i", "%i"},
	    {"hello.service", "%n|%N|%p|%i|", "hello.service|hello|hello||"},
	    {"web@.service", "%n|%N|%p|%i|", "web@.service|web@|web||"},
	    {"a@b.c@d.socket", "%p|%i", "a|b.c@d"},
	    {"x.service", "", ""},
	    {"x.service", "plain", "plain"},
	};

	(void)state;
	for (size_t i = 0; i < N_ELEMS(cases); i++) {
		struct buf b = BUF_INIT;

		assert_int_equal(unit_expand(cases[i].name, cases[i].in, &b), 0);
		if (strcmp(b.data ? b.data : "", cases[i].want))
			fail_msg("case %zu: got %s want %s", i, b.data, cases[i].want);
		buf_release(&b);
	}
}

/* ---- scheduling options ---- */

static int sched(const char *text, const char *name, struct unit_sched *s, struct buf *err)
{
	struct unit_file u = UNIT_FILE_INIT;
	int r;

	buf_clear(err);
	assert_int_equal(unit_parse(text, strlen(text), &u, err), 0);
	memset(s, 0, sizeof(*s));
	r = unit_sched_parse(&u, name, s, err);
	unit_file_release(&u);
	return r;
}

static void test_sched_none(void **state)
{
	struct unit_sched s;
	struct buf err = BUF_INIT;

	(void)state;
	assert_int_equal(sched("[Service]\nExecStart=/bin/true\n", "a.service", &s, &err), 0);
	assert_null(s.machine_id);
	assert_int_equal(s.n_machine_of + s.n_metadata + s.n_conflicts + s.n_replaces, 0);
	assert_false(s.global);
	assert_int_equal(s.memory, 0);
	assert_int_equal(s.cpus_milli, 0);
	assert_null(s.runtime);
	assert_false(s.needs_docker);
	unit_sched_release(&s);
	unit_sched_release(NULL);
	buf_release(&err);
}

static void test_sched_keys(void **state)
{
	static const char text[] =
	    "[Unit]\nRequires=network.target docker.service\n"
	    "[X-Fleet]\nMachineID=3d1219c7\nMachineID=ignored\n"
	    "MachineMetadata=\"region=us-east-1\" \"diskType=SSD\"\n"
	    "MachineMetadata=region=us-west-1\nX-ConditionMachineMetadata=role!=db\n"
	    "MachineMetadata=host=%i\n"
	    "[X-Flotilla]\nMemory=512M\nCPUs=0.5\nRuntime=docker\n";
	struct unit_sched s;
	struct buf err = BUF_INIT;

	(void)state;
	assert_int_equal(sched(text, "web@7.service", &s, &err), 0);
	assert_string_equal(s.machine_id, "3d1219c7");
	assert_int_equal(s.n_metadata, 5);
	assert_string_equal(s.metadata[0].key, "region");
	assert_string_equal(s.metadata[0].value, "us-east-1");
	assert_string_equal(s.metadata[1].key, "diskType");
	assert_string_equal(s.metadata[1].value, "SSD");
	assert_string_equal(s.metadata[2].value, "us-west-1");
	assert_false(s.metadata[2].negate);
	assert_string_equal(s.metadata[3].key, "role");
	assert_string_equal(s.metadata[3].value, "db");
	assert_true(s.metadata[3].negate);
	assert_string_equal(s.metadata[4].value, "7");
	assert_int_equal(s.memory, 512ULL << 20);
	assert_int_equal(s.cpus_milli, 500);
	assert_string_equal(s.runtime, "docker");
	assert_true(s.needs_docker);
	unit_sched_release(&s);

	/* peers with %i, conflicts split on white space, globs, replaces */
	assert_int_equal(
	    sched("[X-Fleet]\nMachineOf=web@%i.service\nX-ConditionMachineOf=db.service\n"
	          "Conflicts=side@*.service  other?.service\nX-Conflicts=[ab]*.socket\n"
	          "[Unit]\nBindsTo=docker.service\n",
	          "side@3.service", &s, &err),
	    0);
	assert_int_equal(s.n_machine_of, 2);
	assert_string_equal(s.machine_of[0], "web@3.service");
	assert_string_equal(s.machine_of[1], "db.service");
	assert_int_equal(s.n_conflicts, 3);
	assert_string_equal(s.conflicts[0], "side@*.service");
	assert_string_equal(s.conflicts[1], "other?.service");
	assert_string_equal(s.conflicts[2], "[ab]*.socket");
	assert_true(s.needs_docker);
	assert_false(s.global);
	unit_sched_release(&s);

	assert_int_equal(sched("[X-Fleet]\nReplaces=old.service \"x.service\"\nReplaces=%p-v1.*\n",
	                       "app.service", &s, &err),
	                 0);
	assert_int_equal(s.n_replaces, 3);
	assert_string_equal(s.replaces[0], "old.service");
	assert_string_equal(s.replaces[1], "\"x.service\"");
	assert_string_equal(s.replaces[2], "app-v1.*");
	unit_sched_release(&s);

	/* Global: the last value decides; fleet's truthy words */
	assert_int_equal(sched("[X-Fleet]\nGlobal=true\nGlobal=no\n", "g.service", &s, &err), 0);
	assert_false(s.global);
	unit_sched_release(&s);
	assert_int_equal(sched("[X-Fleet]\nGlobal=false\nGlobal=YES\nMachineMetadata=a=b\n"
	                       "Conflicts=x*\n",
	                       "g.service", &s, &err),
	                 0);
	assert_true(s.global);
	unit_sched_release(&s);
	for (const char *const *t = (const char *const[]){"1", "on", "t", "True", NULL}; *t; t++) {
		struct buf txt = BUF_INIT;

		buf_printf(&txt, "[X-Fleet]\nGlobal=%s\n", *t);
		assert_int_equal(sched(txt.data, "g.service", &s, &err), 0);
		assert_true(s.global);
		unit_sched_release(&s);
		buf_release(&txt);
	}

	/* deprecated MachineID spellings, and their order of precedence */
	assert_int_equal(
	    sched("[X-Fleet]\nX-ConditionMachineBootID=boot\nX-ConditionMachineID=abc\n",
	          "a.service", &s, &err),
	    0);
	assert_string_equal(s.machine_id, "abc");
	unit_sched_release(&s);
	assert_int_equal(sched("[X-Fleet]\nX-ConditionMachineBootID=boot\n", "a.service", &s, &err),
	                 0);
	assert_string_equal(s.machine_id, "boot");
	unit_sched_release(&s);
	/* a full machine id */
	assert_int_equal(
	    sched("[X-Fleet]\nMachineID=3d1219c7c4c5404aaa1f6d2a48adfda4\n", "a.service", &s, &err),
	    0);
	assert_string_equal(s.machine_id, "3d1219c7c4c5404aaa1f6d2a48adfda4");
	unit_sched_release(&s);
	/* Global=false with MachineID is not global, so allowed */
	assert_int_equal(sched("[X-Fleet]\nGlobal=false\nMachineID=abc\n", "a.service", &s, &err),
	                 0);
	unit_sched_release(&s);
	/* a template: values that only make sense once %i is set are checked on instances */
	assert_int_equal(sched("[X-Fleet]\nMachineOf=%i.service\nMachineOf=db.service\n"
	                       "MachineMetadata=slot=%i\nMachineMetadata=a=b\nMachineID=%i\n",
	                       "web@.service", &s, &err),
	                 0);
	assert_int_equal(s.n_machine_of, 1);
	assert_string_equal(s.machine_of[0], "db.service");
	assert_int_equal(s.n_metadata, 1);
	assert_string_equal(s.metadata[0].key, "a");
	assert_null(s.machine_id);
	unit_sched_release(&s);
	assert_int_equal(sched("[X-Fleet]\nMachineOf=%i.service\n", "web@.service", &s, &err), 0);
	assert_int_equal(s.n_machine_of, 0);
	unit_sched_release(&s);
	assert_int_equal(sched("[X-Fleet]\nMachineOf=%i.service\nMachineOf=b.service\n",
	                       "web@a.service", &s, &err),
	                 0);
	assert_int_equal(s.n_machine_of, 2);
	assert_string_equal(s.machine_of[0], "a.service");
	unit_sched_release(&s);
	/* and on the instance they are refused (with the names after a bad one freed) */
	assert_int_equal(
	    sched("[X-Fleet]\nMachineOf=a.service\nMachineOf=%i\nMachineOf=b.service\n",
	          "web@1.service", &s, &err),
	    FLT_EINVAL);
	assert_string_equal(err.data,
	                    "invalid MachineOf value \"1\": unit name must contain \".\"");
	/* Requires= other things, or After=docker.service, does not need docker */
	assert_int_equal(sched("[Unit]\nAfter=docker.service\nRequires=docker.socket "
	                       "mydocker.service\n",
	                       "a.service", &s, &err),
	                 0);
	assert_false(s.needs_docker);
	unit_sched_release(&s);
	buf_release(&err);
}

static void test_sched_errors(void **state)
{
	static const struct {
		const char *text, *want;
	} cases[] = {
	    /* fleet's ValidateOptions, in its order */
	    {"[X-Fleet]\nMachineID=abc\nMachineOf=a.service\n",
	     "MachineID cannot be used with Peers"},
	    {"[X-Fleet]\nMachineID=abc\nConflicts=a*\n", "MachineID cannot be used with Conflicts"},
	    {"[X-Fleet]\nMachineID=abc\nGlobal=true\n", "MachineID cannot be used with Global"},
	    {"[X-Fleet]\nX-ConditionMachineID=abc\nReplaces=b.service\n",
	     "MachineID cannot be used with Replaces"},
	    {"[X-Fleet]\nGlobal=true\nMachineOf=a.service\n", "Global cannot be used with Peers"},
	    {"[X-Fleet]\nGlobal=true\nReplaces=a.service\n", "Global cannot be used with Replaces"},
	    {"[X-Fleet]\nConflicts=a*\nReplaces=b.service\n",
	     "Conflicts cannot be used with Replaces"},
	    {"[X-Fleet]\nMachineOf=a.service\nConflicts=b* a*\n",
	     "unresolvable requirements: peer \"a.service\" matches conflict \"a*\""},
	    {"[X-Fleet]\nMachineOf=web@%i.service\nReplaces=web@*.service\n",
	     "unresolvable requirements: peer \"web@5.service\" matches replace "
	     "\"web@*.service\""},
	    /* the peer check comes first, as in fleet */
	    {"[X-Fleet]\nMachineID=x\nMachineOf=a.service\nConflicts=a.service\n",
	     "unresolvable requirements: peer \"a.service\" matches conflict \"a.service\""},
	    /* unknown keys and bad values */
	    {"[X-Fleet]\nBogus=1\n", "unrecognized requirement in [X-Fleet] section: \"Bogus\""},
	    {"[X-Fleet]\nmachineid=abc\n",
	     "unrecognized requirement in [X-Fleet] section: \"machineid\""},
	    {"[X-Fleet]\nMachineID=\n", "invalid MachineID value \"\": must not be empty"},
	    {"[X-Fleet]\nMachineMetadata=region\n",
	     "invalid MachineMetadata value \"region\": want key=value or key!=value"},
	    {"[X-Fleet]\nMachineMetadata==x\n",
	     "invalid MachineMetadata value \"=x\": want key=value or key!=value"},
	    {"[X-Fleet]\nMachineMetadata=a=\n",
	     "invalid MachineMetadata value \"a=\": want key=value or key!=value"},
	    {"[X-Fleet]\nMachineMetadata=a=b=c\n",
	     "invalid MachineMetadata value \"a=b=c\": want key=value or key!=value"},
	    {"[X-Fleet]\nMachineMetadata=\"a=b\" \"c\"\n",
	     "invalid MachineMetadata value \"c\": want key=value or key!=value"},
	    {"[X-Fleet]\nMachineMetadata=!=x\n",
	     "invalid MachineMetadata value \"!=x\": want key=value or key!=value"},
	    {"[X-Fleet]\nGlobal=maybe\n", "invalid Global value \"maybe\": want true or false"},
	    {"[X-Fleet]\nMachineOf=web@*.service\n",
	     "invalid MachineOf value \"web@*.service\": invalid character '*' in unit name"},
	    {"[X-Fleet]\nMachineOf=db\n",
	     "invalid MachineOf value \"db\": unit name must contain \".\""},
	    {"[X-Fleet]\nConflicts=[abc\n", "invalid Conflicts pattern \"[abc\""},
	    {"[X-Fleet]\nConflicts=a\\ b\n", "invalid Conflicts pattern \"a\\\""},
	    {"[X-Fleet]\nReplaces=[]x\n", "invalid Replaces pattern \"[]x\""},
	    {"[X-Flotilla]\nMemory=12Q\n",
	     "invalid Memory value \"12Q\": want bytes with an optional K, M, G or T suffix"},
	    {"[X-Flotilla]\nCPUs=1.2345\n",
	     "invalid CPUs value \"1.2345\": want a number of CPUs with at most 3 decimals"},
	    {"[X-Flotilla]\nRuntime=Lxc!\n",
	     "invalid Runtime value \"Lxc!\": want a driver name such as exec, docker, rkt or "
	     "systemd"},
	    {"[X-Flotilla]\nImage=x\nColour=blue\n",
	     "unrecognized option in [X-Flotilla] section: \"Colour\""},
	    {"[X-Flotilla]\nDisk=1G\n", "unrecognized option in [X-Flotilla] section: \"Disk\""},
	};
	struct unit_sched s;
	struct buf err = BUF_INIT;

	(void)state;
	for (size_t i = 0; i < N_ELEMS(cases); i++) {
		int r = sched(cases[i].text, "x@5.service", &s, &err);

		if (r != FLT_EINVAL || !err.data || strcmp(err.data, cases[i].want))
			fail_msg("case %zu: r=%d got \"%s\" want \"%s\"", i, r,
			         err.data ? err.data : "", cases[i].want);
	}
	buf_release(&err);
}

static void test_memory(void **state)
{
	static const struct {
		const char *in;
		int r;
		uint64_t want;
	} cases[] = {
	    {"0", 0, 0},
	    {"512", 0, 512},
	    {"100B", 0, 100},
	    {"1K", 0, 1024},
	    {"512M", 0, 512ULL << 20},
	    {"1.5G", 0, 3ULL << 29},
	    {"2T", 0, 2ULL << 40},
	    {"1P", 0, 1ULL << 50},
	    {"1E", 0, 1ULL << 60},
	    {"0.5K", 0, 512},
	    {"1.5", 0, 1},
	    {"infinity", 0, 0},
	    {"18446744073709551615", 0, UINT64_MAX},
	    {"18446744073709551616", FLT_EINVAL, 0},
	    {"16E", FLT_EINVAL, 0},
	    {"", FLT_EINVAL, 0},
	    {"K", FLT_EINVAL, 0},
	    {"1KB", FLT_EINVAL, 0},
	    {"1k", FLT_EINVAL, 0},
	    {"-1", FLT_EINVAL, 0},
	    {" 1", FLT_EINVAL, 0},
	    {"1.", FLT_EINVAL, 0},
	    {".5G", FLT_EINVAL, 0},
	    {"1 G", FLT_EINVAL, 0},
	};

	(void)state;
	for (size_t i = 0; i < N_ELEMS(cases); i++) {
		uint64_t v = 12345;
		int r = unit_parse_memory(cases[i].in, &v);

		if (r != cases[i].r || (r == 0 && v != cases[i].want))
			fail_msg("%s: r=%d v=%llu", cases[i].in, r, (unsigned long long)v);
		if (r)
			assert_int_equal(v, 12345);
	}
}

static void test_cpus(void **state)
{
	static const struct {
		const char *in;
		int r;
		uint32_t want;
	} cases[] = {
	    {"0", 0, 0},
	    {"2", 0, 2000},
	    {"0.5", 0, 500},
	    {"0.001", 0, 1},
	    {"1.25", 0, 1250},
	    {"1.250", 0, 1250},
	    {"4294967", 0, 4294967000U},
	    {"4294967.295", 0, 4294967295U},
	    {"4294967.296", FLT_EINVAL, 0},
	    {"4294968", FLT_EINVAL, 0},
	    {"99999999999999999999", FLT_EINVAL, 0},
	    {"1.2345", FLT_EINVAL, 0},
	    {"1.", FLT_EINVAL, 0},
	    {".5", FLT_EINVAL, 0},
	    {"", FLT_EINVAL, 0},
	    {"abc", FLT_EINVAL, 0},
	    {"1m", FLT_EINVAL, 0},
	    {"-1", FLT_EINVAL, 0},
	};

	(void)state;
	for (size_t i = 0; i < N_ELEMS(cases); i++) {
		uint32_t v = 7;
		int r = unit_parse_cpus(cases[i].in, &v);

		if (r != cases[i].r || (r == 0 && v != cases[i].want))
			fail_msg("%s: r=%d v=%u", cases[i].in, r, v);
		if (r)
			assert_int_equal(v, 7);
	}
}

static void test_glob(void **state)
{
	static const struct {
		const char *pattern, *name;
		bool match;
	} cases[] = {
	    {"web@*.service", "web@1.service", true},
	    {"web@*.service", "web@.service", true},
	    {"web@*.service", "api@1.service", false},
	    {"a?.service", "ab.service", true},
	    {"a?.service", "abc.service", false},
	    {"[ab]*", "b.service", true},
	    {"[^ab]*", "b.service", false},
	    {"[!ab]*", "c.service", true},
	    {"[a-c]x.service", "bx.service", true},
	    {"a\\*", "a*", true},
	    {"a\\*", "ab", false},
	    {"*", "a/b", false},
	    {"hello.service", "hello.service", true},
	    {"[abc", "[abc", false}, /* bad pattern matches nothing */
	    {"a\\", "a\\", false},
	};

	(void)state;
	for (size_t i = 0; i < N_ELEMS(cases); i++)
		if (unit_glob_match(cases[i].pattern, cases[i].name) != cases[i].match)
			fail_msg("%s vs %s", cases[i].pattern, cases[i].name);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_table),  cmocka_unit_test(test_parse_options),
	    cmocka_unit_test(test_parse_limits), cmocka_unit_test(test_hash),
	    cmocka_unit_test(test_hash_stable),  cmocka_unit_test(test_json),
	    cmocka_unit_test(test_json_errors),  cmocka_unit_test(test_names),
	    cmocka_unit_test(test_templates),    cmocka_unit_test(test_mangle),
	    cmocka_unit_test(test_expand),       cmocka_unit_test(test_sched_none),
	    cmocka_unit_test(test_sched_keys),   cmocka_unit_test(test_sched_errors),
	    cmocka_unit_test(test_memory),       cmocka_unit_test(test_cpus),
	    cmocka_unit_test(test_glob),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
