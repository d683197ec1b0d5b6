/* Unit tests of flotillad's settings: flag spellings, environment, config file, precedence and
 * the errors bad values get. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

static int load(struct config *c, char *err, int argc, ...)
{
	char *argv[32] = {"flotillad"};
	va_list ap;

	va_start(ap, argc);
	for (int i = 1; i <= argc; i++)
		argv[i] = va_arg(ap, char *);
	va_end(ap);
	return config_load(c, argc + 1, argv, err, 256);
}

static void test_defaults(void **state)
{
	struct config c;
	char err[256];

	(void)state;
	unsetenv("FLOTILLA_NAME");
	assert_int_equal(load(&c, err, 2, "--config", "/dev/null"), CONFIG_OK);
	assert_string_equal(c.name, "default");
	assert_string_equal(c.data_dir, "default.etcd");
	assert_int_equal(c.listen_client_urls.n, 2);
	assert_string_equal(c.listen_client_urls.v[0], "http://127.0.0.1:2379");
	assert_string_equal(c.listen_client_urls.v[1], "http://127.0.0.1:4001");
	assert_int_equal(c.snapshot_count, 100000);
	assert_int_equal(c.election_timeout, 1000);
	assert_string_equal(c.initial_cluster, "default=http://127.0.0.1:2380");
	config_release(&c);
}

static void test_flag_spellings(void **state)
{
	static const char *const forms[][3] = {
		{"--name", "n1", NULL}, {"-name", "n1", NULL}, {"--name=n1", NULL, NULL},
		{"-name=n1", NULL, NULL}};
	struct config c;
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
		char *argv[5] = {"flotillad", "--config", "/dev/null", (char *)forms[i][0],
				 (char *)forms[i][1]};

		assert_int_equal(config_load(&c, forms[i][1] ? 5 : 4, argv, err, sizeof(err)),
				 CONFIG_OK);
		assert_string_equal(c.name, "n1");
		assert_string_equal(c.data_dir, "n1.etcd");
		config_release(&c);
	}
}

static void test_precedence(void **state)
{
	char path[] = "/tmp/flt-conf-XXXXXX";
	int fd = mkstemp(path);
	struct config c;
	char err[256];
	FILE *f;

	(void)state;
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	fprintf(f, "# comment\nname: fromfile\nsnapshot-count = 7\n"
		   "listen-client-urls: \"unix:///tmp/x.sock\"\n");
	fclose(f);

	assert_int_equal(load(&c, err, 2, "--config", path), CONFIG_OK);
	assert_string_equal(c.name, "fromfile");
	assert_int_equal(c.snapshot_count, 7);
	assert_int_equal(c.listen_client_urls.n, 1);
	assert_string_equal(c.listen_client_urls.v[0], "unix:///tmp/x.sock");
	config_release(&c);

	setenv("FLOTILLA_NAME", "fromenv", 1);
	assert_int_equal(load(&c, err, 2, "--config", path), CONFIG_OK);
	assert_string_equal(c.name, "fromenv");
	config_release(&c);

	assert_int_equal(load(&c, err, 4, "--config", path, "--name", "fromflag"), CONFIG_OK);
	assert_string_equal(c.name, "fromflag");
	config_release(&c);
	unsetenv("FLOTILLA_NAME");
	unlink(path);
}

static void test_errors(void **state)
{
	static const char *const bad[][3] = {
		{"--nope", "1", "unknown flag 'nope'"},
		{"--snapshot-count", "-5", "snapshot-count"},
		{"--snapshot-count", "12x", "not a non-negative integer"},
		{"--initial-cluster-state", "maybe", "initial-cluster-state"},
		{"--log-level", "loud", "log-level"},
		{"--election-timeout", "100", "at least 5 times"},
		{"stray", NULL, "unexpected argument 'stray'"},
	};
	struct config c;
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *argv[5] = {"flotillad", "--config", "/dev/null", (char *)bad[i][0],
				 (char *)bad[i][1]};

		err[0] = '\0';
		assert_int_equal(config_load(&c, bad[i][1] ? 5 : 4, argv, err, sizeof(err)),
				 -EINVAL);
		if (!strstr(err, bad[i][2]))
			fail_msg("case %zu: error '%s' lacks '%s'", i, err, bad[i][2]);
		config_release(&c);
	}
	assert_int_equal(load(&c, err, 2, "--config", "/nonexistent/flotilla.conf"), -ENOENT);
	assert_non_null(strstr(err, "/nonexistent/flotilla.conf"));
	config_release(&c);
}

static void test_split(void **state)
{
	struct strlist l = {0};

	(void)state;
	assert_int_equal(strlist_split(&l, " a, ,b ,c,"), 0);
	assert_int_equal(l.n, 3);
	assert_string_equal(l.v[0], "a");
	assert_string_equal(l.v[1], "b");
	assert_string_equal(l.v[2], "c");
	strlist_release(&l);
}

static void test_cluster(void **state)
{
	static const char *const bad[][2] = {
		{"", "no member"}, {"n1", "want name="}, {"=http://127.0.0.1:1", "want name="},
		{"n1=", "want name="}, {"n1=http://127.0.0.1:1,n2=http://127.0.0.1:1", "same peer URLs"},
	};
	struct config_cluster c, c2;
	char err[256];

	(void)state;
	assert_int_equal(config_parse_cluster("n1=http://127.0.0.1:1,n2=http://127.0.0.1:2,"
					      "n1=http://127.0.0.1:3",
					      "tok", &c, err, sizeof(err)),
			 0);
	assert_int_equal(c.n, 2);
	assert_string_equal(c.v[0].name, "n1");
	assert_string_equal(c.v[0].peer_urls, "http://127.0.0.1:1,http://127.0.0.1:3");
	assert_int_not_equal(c.v[0].id, c.v[1].id);
	assert_true(c.v[0].id && c.v[1].id && c.cluster_id);
	/* every member computes the same ids whatever order the flag lists them in */
	assert_int_equal(config_parse_cluster("n2=http://127.0.0.1:2,n1=http://127.0.0.1:3,"
					      "n1=http://127.0.0.1:1",
					      "tok", &c2, err, sizeof(err)),
			 0);
	assert_int_equal(c2.cluster_id, c.cluster_id);
	assert_int_equal(c2.v[1].id, c.v[0].id);
	config_cluster_release(&c2);
	/* another token is another cluster */
	assert_int_equal(config_parse_cluster("n1=http://127.0.0.1:1,n2=http://127.0.0.1:2,"
					      "n1=http://127.0.0.1:3",
					      "other", &c2, err, sizeof(err)),
			 0);
	assert_int_not_equal(c2.cluster_id, c.cluster_id);
	config_cluster_release(&c2);
	config_cluster_release(&c);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_int_equal(config_parse_cluster(bad[i][0], "tok", &c, err, sizeof(err)),
				 -EINVAL);
		if (!strstr(err, bad[i][1]))
			fail_msg("cluster '%s': error '%s' lacks '%s'", bad[i][0], err, bad[i][1]);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),    cmocka_unit_test(test_flag_spellings),
		cmocka_unit_test(test_precedence),  cmocka_unit_test(test_errors),
		cmocka_unit_test(test_split),       cmocka_unit_test(test_cluster),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
