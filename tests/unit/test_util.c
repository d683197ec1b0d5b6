/* Unit tests of the small shared pieces: the growable buffer and flt_strerror. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"
#include "util/err.h"

static void test_buf_append(void **state)
{
	struct buf b = BUF_INIT;
	char *s;

	(void)state;
	for (int i = 0; i < 1000; i++)
		assert_int_equal(buf_puts(&b, "abc"), 0);
	assert_int_equal(b.len, 3000);
	assert_int_equal(b.data[3000], '\0');
	assert_int_equal(buf_printf(&b, "%d-%s", 42, "x"), 0);
	assert_string_equal(b.data + 3000, "42-x");
	buf_consume(&b, 2999);
	assert_string_equal(b.data, "c42-x");
	buf_clear(&b);
	assert_int_equal(b.len, 0);
	assert_int_equal(buf_putc(&b, 'z'), 0);
	s = buf_steal(&b);
	assert_string_equal(s, "z");
	assert_null(b.data);
	free(s);
	buf_release(&b);
	buf_release(&b); /* twice is fine */
}

static void test_buf_numbers(void **state)
{
	static const struct {
		int64_t v;
		const char *s;
	} cases[] = {{0, "0"},
		     {7, "7"},
		     {-7, "-7"},
		     {1234567890123LL, "1234567890123"},
		     {INT64_MAX, "9223372036854775807"},
		     {INT64_MIN, "-9223372036854775808"}};
	struct buf b = BUF_INIT;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		buf_clear(&b);
		assert_int_equal(buf_put_i64(&b, cases[i].v), 0);
		assert_string_equal(b.data, cases[i].s);
	}
	buf_clear(&b);
	assert_int_equal(buf_put_u64(&b, UINT64_MAX), 0);
	assert_string_equal(b.data, "18446744073709551615");
	buf_release(&b);
}

static void test_strerror(void **state)
{
	(void)state;
	assert_string_equal(flt_strerror(-ENOENT), strerror(ENOENT));
	assert_string_equal(flt_strerror(FLT_ECORRUPT), "data is corrupt");
	assert_string_equal(flt_strerror(-99999), "unknown error");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_buf_append),
		cmocka_unit_test(test_buf_numbers),
		cmocka_unit_test(test_strerror),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
