/* Unit tests of the WAL and snapshot files: round trips, group commit, the overwrite rule,
 * torn-tail repair at every cut point, corruption reports naming file and offset, rotation,
 * compaction, snapshots, and the crc32c implementations against known vectors. Each test works in
 * its own mktemp -d directory. */
#include "raft/wal.h"
#include "snapwriter.h"
#include "util/buf.h"
#include "util/crc32c.h"
#include "util/err.h"
#include "util/fs.h"

#include <dirent.h>
#include <ev.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>
#include <cmocka.h>

/* ---- helpers ---- */

struct got {
	uint64_t term, index;
	uint8_t type;
	size_t len;
	unsigned char *data;
};

struct collect {
	struct got *v;
	size_t n, cap;
};

static int collect_cb(void *ctx, const struct wal_entry *e)
{
	struct collect *c = ctx;

	if (c->n == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 64;
		c->v = realloc(c->v, c->cap * sizeof(*c->v));
		assert_non_null(c->v);
	}
	struct got *g = &c->v[c->n++];

	g->term = e->term;
	g->index = e->index;
	g->type = e->type;
	g->len = e->len;
	g->data = malloc(e->len ? e->len : 1);
	assert_non_null(g->data);
	if (e->len)
		memcpy(g->data, e->data, e->len);
	return 0;
}

static void collect_free(struct collect *c)
{
	for (size_t i = 0; i < c->n; i++)
		free(c->v[i].data);
	free(c->v);
	memset(c, 0, sizeof(*c));
}

static size_t data_len(uint64_t index)
{
	return 20 + index % 23;
}

static void fill_data(unsigned char *p, size_t len, uint64_t index, uint64_t term)
{
	for (size_t j = 0; j < len; j++)
		p[j] = (unsigned char)(index * 31 + term * 7 + j);
}

/* Append entries [from, to] of `term` (one wal_append per entry, like separate proposals). */
static void append_range(struct wal *w, uint64_t from, uint64_t to, uint64_t term)
{
	unsigned char data[64];

	for (uint64_t i = from; i <= to; i++) {
		size_t len = data_len(i);
		struct wal_entry e = {term, i, (uint8_t)(i % 3), data, len};

		fill_data(data, len, i, term);
		assert_int_equal(wal_append(w, &e, 1), 0);
	}
}

/* The collected entries are exactly [from, to], with terms given by term_of. */
static void check_entries(const struct collect *c, uint64_t from, uint64_t to,
                          uint64_t (*term_of)(uint64_t))
{
	unsigned char data[64];

	assert_int_equal(c->n, to >= from ? to - from + 1 : 0);
	for (size_t k = 0; k < c->n; k++) {
		const struct got *g = &c->v[k];
		uint64_t i = from + k, t = term_of(i);

		assert_int_equal(g->index, i);
		assert_int_equal(g->term, t);
		assert_int_equal(g->type, i % 3);
		assert_int_equal(g->len, data_len(i));
		fill_data(data, g->len, i, t);
		assert_memory_equal(g->data, data, g->len);
	}
}

static uint64_t term1(uint64_t i)
{
	(void)i;
	return 1;
}

static char *dir_path(const char *dir, const char *sub)
{
	struct buf b = BUF_INIT;

	assert_int_equal(buf_printf(&b, "%s/%s", dir, sub), 0);
	return buf_steal(&b);
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return remove(p);
}

struct fixture {
	char *root; /* mktemp -d */
	char *wal;  /* root/wal */
	char *snap; /* root/snap */
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char tmpl[] = "/tmp/flt-test-wal-XXXXXX";

	if (!f || !mkdtemp(tmpl))
		return -1;
	f->root = strdup(tmpl);
	f->wal = dir_path(f->root, "wal");
	f->snap = dir_path(f->root, "snap");
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	nftw(f->root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(f->root);
	free(f->wal);
	free(f->snap);
	free(f);
	return 0;
}

static int open_wal(const char *dir, uint64_t after, struct collect *c, struct wal_recovery *rec,
                    struct wal **w)
{
	return wal_open(dir, after, collect_cb, c, rec, w);
}

/* Open, expect success, check the entries, close. */
static void reopen_check(const char *dir, uint64_t after, uint64_t from, uint64_t to,
                         uint64_t (*term_of)(uint64_t), struct wal_recovery *rec)
{
	struct collect c = {0};
	struct wal *w = NULL;
	int r = open_wal(dir, after, &c, rec, &w);

	if (r != 0)
		fail_msg("wal_open: %s (%s)", flt_strerror(r), rec->error);
	check_entries(&c, from, to, term_of);
	collect_free(&c);
	wal_close(w);
}

/* Segment files of `dir`, sorted (owned array of owned full paths). */
static size_t list_wal_files(const char *dir, char ***ret)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char **v = NULL;
	size_t n = 0;

	assert_non_null(d);
	while ((de = readdir(d))) {
		size_t l = strlen(de->d_name);

		if (l < 5 || strcmp(de->d_name + l - 4, ".wal"))
			continue;
		v = realloc(v, (n + 1) * sizeof(*v));
		assert_non_null(v);
		v[n++] = dir_path(dir, de->d_name);
	}
	closedir(d);
	for (size_t i = 0; i < n; i++)
		for (size_t j = i + 1; j < n; j++)
			if (strcmp(v[i], v[j]) > 0) {
				char *t = v[i];

				v[i] = v[j];
				v[j] = t;
			}
	*ret = v;
	return n;
}

static void free_files(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* The first MiB of a file at most: segments are preallocated to 64 MiB of zeros, and the tests
 * never write that far. */
static unsigned char *read_file(const char *path, size_t *ret_len)
{
	struct stat st;
	int fd = open(path, O_RDONLY);
	unsigned char *p;
	size_t len;

	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	len = (size_t)st.st_size < (1 << 20) ? (size_t)st.st_size : (1 << 20);
	p = malloc(len + 1);
	assert_non_null(p);
	assert_int_equal(pread(fd, p, len, 0), (ssize_t)len);
	close(fd);
	*ret_len = len;
	return p;
}

static size_t file_size(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return (size_t)st.st_size;
}

static uint32_t le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Offsets of the records in a segment file (walks the length fields); returns the count and the
 * end of the last record in *ret_end. */
static size_t record_offsets(const char *path, size_t *offs, size_t max, size_t *ret_end)
{
	size_t len, off = 0, n = 0;
	unsigned char *p = read_file(path, &len);

	while (off + 8 <= len) {
		uint32_t l = le32(p + off);

		if (!l)
			break;
		assert_true(n < max);
		offs[n++] = off;
		off += 8 + l;
	}
	free(p);
	*ret_end = off;
	return n;
}

static void patch_file(const char *path, size_t off, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY);

	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, data, len, (off_t)off), (ssize_t)len);
	close(fd);
}

static void flip_byte(const char *path, size_t off)
{
	size_t len;
	unsigned char *p = read_file(path, &len);

	assert_true(off < len);
	p[off] ^= 0x5a;
	patch_file(path, off, p + off, 1);
	free(p);
}

static void zero_range(const char *path, size_t from, size_t to)
{
	unsigned char z[256] = {0};

	for (size_t o = from; o < to;) {
		size_t n = to - o < sizeof(z) ? to - o : sizeof(z);

		patch_file(path, o, z, n);
		o += n;
	}
}

static void expect_corrupt(const char *dir, uint64_t after, const char *file, size_t off)
{
	struct collect c = {0};
	struct wal_recovery rec;
	struct wal *w = NULL;
	struct buf want = BUF_INIT;
	int r = open_wal(dir, after, &c, &rec, &w);

	assert_int_equal(r, FLT_ECORRUPT);
	assert_null(w);
	assert_int_equal(buf_printf(&want, "file '%s' offset %zu: ", file, off), 0);
	if (strncmp(rec.error, want.data, want.len) != 0)
		fail_msg("error '%s' does not start with '%s'", rec.error, want.data);
	buf_release(&want);
	collect_free(&c);
}

/* ---- crc32c ---- */

static void test_crc_vectors(void **state)
{
	unsigned char zeros[32] = {0}, ones[32], inc[32], dec[32];
	static unsigned char big[4096 + 8];
	const struct {
		const void *data;
		size_t len;
		uint32_t crc;
	} v[] = {
	    {"", 0, 0},
	    {"123456789", 9, 0xE3069283},
	    {"a", 1, 0xC1D04330},
	    {zeros, 32, 0x8A9136AA}, /* RFC 3720 B.4 */
	    {ones, 32, 0x62A8AB43},
	    {inc, 32, 0x46DD794E},
	    {dec, 32, 0x113FDB5C},
	};

	(void)state;
	for (int i = 0; i < 32; i++) {
		ones[i] = 0xff;
		inc[i] = (unsigned char)i;
		dec[i] = (unsigned char)(31 - i);
	}
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		assert_int_equal(crc32c_sw(0, v[i].data, v[i].len), v[i].crc);
		assert_int_equal(crc32c(0, v[i].data, v[i].len), v[i].crc);
		assert_int_equal(wal_crc32c(0, v[i].data, v[i].len), v[i].crc);
		if (crc32c_hw_available())
			assert_int_equal(crc32c_hw(0, v[i].data, v[i].len), v[i].crc);
	}
	if (!crc32c_hw_available())
		print_message("crc32c: no SSE4.2 on this CPU, hardware path not tested\n");

	/* Both agree at every length and alignment, and chaining equals one pass. */
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (unsigned char)(i * 131 + (i >> 7));
	for (size_t a = 0; a < 8; a++)
		for (size_t len = 0; len < 300; len += 1 + len / 16) {
			uint32_t s = crc32c_sw(0, big + a, len);

			if (crc32c_hw_available())
				assert_int_equal(crc32c_hw(0, big + a, len), s);
			assert_int_equal(
			    crc32c(crc32c(0, big + a, len / 3), big + a + len / 3, len - len / 3),
			    s);
		}
	assert_int_equal(crc32c(0, big, 4096), crc32c_sw(0, big, 4096));
}

/* ---- WAL ---- */

static void test_round_trip(void **state)
{
	struct fixture *f = *state;
	struct wal_recovery rec;
	struct collect c = {0};
	struct wal *w;
	struct wal_hard_state hs = {7, 3, 9};
	unsigned char big[100000];
	struct wal_entry e;

	assert_int_equal(open_wal(f->wal, 0, &c, &rec, &w), 0);
	assert_int_equal(c.n, 0);
	assert_int_equal(rec.last_index, 0);
	assert_int_equal(rec.hs.term, 0);
	assert_false(wal_pending(w));
	append_range(w, 1, 10, 1);
	/* An entry much larger than anything else, and an empty one. */
	memset(big, 0xab, sizeof(big));
	e = (struct wal_entry){2, 11, WAL_ENTRY_NORMAL, big, sizeof(big)};
	assert_int_equal(wal_append(w, &e, 1), 0);
	e = (struct wal_entry){2, 12, WAL_ENTRY_NOOP, NULL, 0};
	assert_int_equal(wal_append(w, &e, 1), 0);
	assert_int_equal(wal_set_hard_state(w, &hs), 0);
	assert_true(wal_pending(w));
	assert_int_equal(wal_sync(w), 0);
	assert_false(wal_pending(w));
	assert_true(wal_bytes_written(w) > sizeof(big));
	wal_close(w);

	assert_int_equal(open_wal(f->wal, 0, &c, &rec, &w), 0);
	assert_int_equal(c.n, 12);
	for (uint64_t i = 1; i <= 10; i++)
		assert_int_equal(c.v[i - 1].index, i);
	assert_int_equal(c.v[10].len, sizeof(big));
	assert_memory_equal(c.v[10].data, big, sizeof(big));
	assert_int_equal(c.v[11].len, 0);
	assert_int_equal(c.v[11].type, WAL_ENTRY_NOOP);
	assert_int_equal(rec.hs.term, 7);
	assert_int_equal(rec.hs.vote, 3);
	assert_int_equal(rec.hs.commit, 9);
	assert_int_equal(rec.first_index, 1);
	assert_int_equal(rec.last_index, 12);
	assert_int_equal(rec.last_term, 2);
	assert_false(rec.truncated_tail);
	/* Appends continue the same segment after a reopen. */
	append_range(w, 13, 20, 2);
	assert_int_equal(wal_sync(w), 0);
	wal_close(w);
	collect_free(&c);

	assert_int_equal(open_wal(f->wal, 12, &c, &rec, &w), 0);
	assert_int_equal(c.n, 8);
	assert_int_equal(c.v[0].index, 13);
	assert_int_equal(rec.last_index, 20);
	wal_close(w);
	collect_free(&c);
	char **files;
	size_t nf = list_wal_files(f->wal, &files);

	assert_int_equal(nf, 1);
	free_files(files, nf);
}

static void test_unsynced_is_lost(void **state)
{
	struct fixture *f = *state;
	struct wal_recovery rec;
	struct collect c = {0};
	struct wal *w;
	struct wal_hard_state hs = {1, 1, 0};

	assert_int_equal(open_wal(f->wal, 0, &c, &rec, &w), 0);
	append_range(w, 1, 5, 1);
	assert_int_equal(wal_sync(w), 0);
	append_range(w, 6, 9, 1);
	assert_int_equal(wal_set_hard_state(w, &hs), 0);
	wal_close(w); /* syncs nothing */
	reopen_check(f->wal, 0, 1, 5, term1, &rec);
	assert_int_equal(rec.hs.term, 0);
}

static void test_group_commit(void **state)
{
	struct fixture *f = *state;
	struct wal_recovery rec;
	struct collect c = {0};
	struct wal *w;
	char **files;
	size_t nf, len, end, offs[4];
	unsigned char *p;
	uint64_t before;

	assert_int_equal(open_wal(f->wal, 0, &c, &rec, &w), 0);
	append_range(w, 1, 1000, 1);
	struct wal_hard_state hs = {1, 1, 1000};

	assert_int_equal(wal_set_hard_state(w, &hs), 0);
	/* Nothing reached the file yet: past the segment header it is all zeros. */
	nf = list_wal_files(f->wal, &files);
	assert_int_equal(nf, 1);
	assert_int_equal(record_offsets(files[0], offs, 4, &end), 1);
	p = read_file(files[0], &len);
	for (size_t i = end; i < len; i++)
		assert_int_equal(p[i], 0);
	free(p);
	before = wal_bytes_written(w);
	assert_int_equal(wal_sync(w), 0);
	assert_true(wal_bytes_written(w) > before + 1000 * 26);
	/* A second sync with nothing pending writes nothing. */
	before = wal_bytes_written(w);
	assert_int_equal(wal_sync(w), 0);
	assert_int_equal(wal_bytes_written(w), before);
	wal_close(w);
	free_files(files, nf);

	reopen_check(f->wal, 0, 1, 1000, term1, &rec);
	assert_int_equal(rec.hs.commit, 1000);
}

static uint64_t term_overwrite(uint64_t i)
{
	return i >= 6 ? 2 : 1;
}

static uint64_t term_overwrite2(uint64_t i)
{
	return i >= 4 ? 3 : 1;
}

/* A new leader's entries replace a suffix; replay applies the same rule, also across segments. */
static void test_overwrite(void **state)
{
	struct fixture *f = *state;
	const size_t seg_sizes[] = {0, 300};

	for (size_t s = 0; s < sizeof(seg_sizes) / sizeof(seg_sizes[0]); s++) {
		struct wal_recovery rec;
		struct collect c = {0};
		struct wal *w;
		char *dir = dir_path(f->root, s ? "wal-small" : "wal-big");

		assert_int_equal(open_wal(dir, 0, &c, &rec, &w), 0);
		wal_set_segment_size(w, seg_sizes[s]);
		append_range(w, 1, 10, 1);
		assert_int_equal(wal_sync(w), 0);
		append_range(w, 6, 8, 2);
		assert_int_equal(wal_sync(w), 0);
		wal_close(w);
		reopen_check(dir, 0, 1, 8, term_overwrite, &rec);
		assert_int_equal(rec.last_index, 8);
		assert_int_equal(rec.last_term, 2);

		/* Overwrite inside one unsynced batch, then continue. */
		assert_int_equal(open_wal(dir, 0, &c, &rec, &w), 0);
		collect_free(&c);
		wal_set_segment_size(w, seg_sizes[s]);
		append_range(w, 4, 9, 3);
		append_range(w, 9, 9, 3);
		assert_int_equal(wal_sync(w), 0);
		wal_close(w);
		reopen_check(dir, 0, 1, 9, term_overwrite2, &rec);
		/* With entries skipped by a snapshot, the overwrite still applies. */
		reopen_check(dir, 5, 6, 9, term_overwrite2, &rec);
		assert_int_equal(rec.first_index, 1);
		free(dir);
	}
}

static void test_after_index(void **state)
{
	struct fixture *f = *state;
	const struct {
		uint64_t after, from, to;
	} cases[] = {
	    {0, 1, 20}, {1, 2, 20}, {12, 13, 20}, {19, 20, 20}, {20, 21, 20}, {25, 26, 25},
	};
	struct wal_recovery rec;
	struct collect c = {0};
	struct wal *w;

	assert_int_equal(open_wal(f->wal, 0, &c, &rec, &w), 0);
	append_range(w, 1, 20, 1);
	assert_int_equal(wal_sync(w), 0);
	wal_close(w);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		reopen_check(f->wal, cases[i].after, cases[i].from, cases[i].to, term1, &rec);
		assert_int_equal(rec.first_index, 1);
		assert_int_equal(rec.last_index, 20);
	}

	/* A snapshot past the end of the log (installed from a leader): the log goes on after
	 * it, never below it. */
	assert_int_equal(open_wal(f->wal, 25, &c, &rec, &w), 0);
	assert_int_equal(c.n, 0);
	struct wal_entry e = {1, 21, 0, "x", 1};

	assert_int_equal(wal_append(w, &e, 1), FLT_EINVAL);
	e.index = 25;
	assert_int_equal(wal_append(w, &e, 1), FLT_EINVAL);
	e.index = 27;
	assert_int_equal(wal_append(w, &e, 1), FLT_EINVAL);
	assert_false(wal_pending(w));
	append_range(w, 26, 30, 1);
	assert_int_equal(wal_sync(w), 0);
	wal_close(w);
	reopen_check(f->wal, 25, 26, 30, term1, &rec);
	assert_int_equal(rec.first_index, 26);
	/* Without that snapshot, entries 21..25 are missing: corruption. */
	assert_int_equal(open_wal(f->wal, 0, &c, &rec, &w), FLT_ECORRUPT);
	assert_non_null(strstr(rec.error, "gap"));
	collect_free(&c);
}

static void test_append_validation(void **state)
{
	struct fixture *f = *state;
	struct wal_recovery rec;
	struct collect c = {0};
	struct wal *w;
	struct wal_entry bad[] = {
	    {1, 0, 0, "a", 1}, /* index 0 */
	    {1, 3, 0, "a", 1}, /* gap after 1 */
	    {1, 2, 9, "a", 1}, /* unknown type */
	    {1, 2, 0, NULL, 1},
	};
	struct wal_entry twogap[2] = {{1, 2, 0, "a", 1}, {1, 4, 0, "a", 1}};

	assert_int_equal(open_wal(f->wal, 0, &c, &rec, &w), 0);
	append_range(w, 1, 1, 1);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(wal_append(w, &bad[i], 1), FLT_EINVAL);
	assert_int_equal(wal_append(w, twogap, 2), FLT_EINVAL);
	struct wal_entry huge = {1, 2, 0, "a", (size_t)UINT32_MAX}; /* never read: refused first */

	assert_int_equal(wal_append(w, &huge, 1), FLT_ETOOBIG);
	assert_int_equal(wal_sync(w), 0);
	wal_close(w);
	reopen_check(f->wal, 0, 1, 1, term1, &rec);

	/* A second process (or open) on the same directory is refused. */
	struct wal *w2 = NULL;

	assert_int_equal(open_wal(f->wal, 0, &c, &rec, &w), 0);
	assert_int_equal(open_wal(f->wal, 0, &c, &rec, &w2), -EBUSY);
	assert_null(w2);
	wal_close(w);
	wal_close(NULL);
	collect_free(&c);
}

/* A crash in the middle of writing the last record leaves any prefix of it on disk, followed by
 * the preallocated zeros or by the end of the file. Every such cut must open with the earlier
 * records intact and the tail cut, and appends must work afterwards. */
static void test_torn_tail(void **state)
{
	struct fixture *f = *state;
	enum { ZEROS, EOF_CUT };
	size_t offs[16], end, nrec;
	char **files;
	size_t nf;
	int cuts = 0;

	for (int mode = ZEROS; mode <= EOF_CUT; mode++) {
		/* The last record: an entry, or a hard state. */
		for (int last_hs = 0; last_hs <= 1; last_hs++) {
			size_t rec_start = 0, rec_end = 0;

			for (size_t cut = 0;; cut++) {
				struct wal_recovery rec;
				struct collect c = {0};
				struct wal *w;
				char *dir = dir_path(f->root, "torn");

				assert_int_equal(open_wal(dir, 0, &c, &rec, &w), 0);
				append_range(w, 1, 5, 1);
				struct wal_hard_state hs1 = {1, 0, 4}, hs2 = {1, 0, 5};

				assert_int_equal(wal_set_hard_state(w, &hs1), 0);
				assert_int_equal(wal_sync(w), 0);
				if (last_hs)
					assert_int_equal(wal_set_hard_state(w, &hs2), 0);
				else
					append_range(w, 6, 6, 1);
				assert_int_equal(wal_sync(w), 0);
				wal_close(w);

				nf = list_wal_files(dir, &files);
				assert_int_equal(nf, 1);
				nrec = record_offsets(files[0], offs, 16, &end);
				rec_start = offs[nrec - 1];
				rec_end = end;
				if (rec_start + cut >= rec_end) {
					free_files(files, nf);
					nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
					free(dir);
					break;
				}
				if (mode == ZEROS) {
					/* Zeroing bytes that are zero anyway damages nothing. */
					size_t len;
					unsigned char *p = read_file(files[0], &len);
					bool intact = true;

					for (size_t i = rec_start + cut; i < rec_end; i++)
						intact = intact && !p[i];
					free(p);
					if (intact) {
						free_files(files, nf);
						nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
						free(dir);
						continue;
					}
					zero_range(files[0], rec_start + cut, rec_end);
				} else {
					assert_int_equal(
					    truncate(files[0], (off_t)(rec_start + cut)), 0);
				}
				reopen_check(dir, 0, 1, 5, term1, &rec);
				/* cut 0 removes the record entirely: a clean end, nothing torn. */
				assert_int_equal(rec.truncated_tail, cut > 0);
				assert_int_equal(rec.hs.commit, 4);
				assert_int_equal(rec.last_index, 5);

				/* The log goes on where it was cut. */
				assert_int_equal(open_wal(dir, 0, &c, &rec, &w), 0);
				assert_false(rec.truncated_tail);
				collect_free(&c);
				append_range(w, 6, 7, 1);
				assert_int_equal(wal_set_hard_state(w, &hs2), 0);
				assert_int_equal(wal_sync(w), 0);
				wal_close(w);
				reopen_check(dir, 0, 1, 7, term1, &rec);
				assert_false(rec.truncated_tail);
				assert_int_equal(rec.hs.commit, 5);

				free_files(files, nf);
				nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
				free(dir);
				cuts++;
			}
			assert_true(rec_end - rec_start > 20);
		}
	}
	print_message("torn tail: %d cut points checked\n", cuts);
}

/* Damage anywhere but the torn tail stops the open and names file and offset. */
static void test_corrupt_middle(void **state)
{
	struct fixture *f = *state;
	const struct {
		const char *what;
		size_t at;    /* offset inside record 5 (the 6th record, entry 5) */
		bool zero8;   /* zero the 8-byte record header instead of flipping a byte */
		bool in_last; /* damage the last record, then append a valid one after it */
	} cases[] = {
	    {"length field", 0, false, false},
	    {"crc field", 5, false, false},
	    {"type byte", 8, false, false},
	    {"term", 10, false, false},
	    {"data", 30, false, false},
	    {"zeroed header", 0, true, false},
	    {"last record + more", 20, false, true},
	};

	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		struct wal_recovery rec;
		struct collect c = {0};
		struct wal *w;
		char *dir = dir_path(f->root, "corrupt");
		size_t offs[32], end, nrec, target;
		char **files;
		size_t nf;

		assert_int_equal(open_wal(dir, 0, &c, &rec, &w), 0);
		append_range(w, 1, 10, 1);
		assert_int_equal(wal_sync(w), 0);
		wal_close(w);
		nf = list_wal_files(dir, &files);
		nrec = record_offsets(files[0], offs, 32, &end);
		assert_int_equal(nrec, 11); /* header + 10 entries */
		target = cases[k].in_last ? offs[10] : offs[5];
		if (cases[k].zero8)
			zero_range(files[0], target, target + 8);
		else
			flip_byte(files[0], target + cases[k].at);
		if (cases[k].in_last) {
			/* A damaged last record would be a torn tail, but a valid record (a copy of
			 * entry 9's) follows it. */
			size_t len;
			unsigned char *p = read_file(files[0], &len);

			assert_true(end + (offs[10] - offs[9]) <= len);
			patch_file(files[0], end, p + offs[9], offs[10] - offs[9]);
			free(p);
		}
		print_message("corrupt %s\n", cases[k].what);
		expect_corrupt(dir, 0, files[0], target);
		free_files(files, nf);
		nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
		free(dir);
	}
}

/* A torn write may leave later sectors of the batch on disk but not earlier ones: a bad last
 * record followed by bytes that form no valid record is still a torn tail. */
static void test_torn_garbage(void **state)
{
	struct fixture *f = *state;
	struct wal_recovery rec;
	struct collect c = {0};
	struct wal *w;
	const unsigned char junk[] = {0xff, 0x13, 0x00, 0x77, 0x02, 0x00, 0x00, 0x00, 0x02, 0x41};
	size_t offs[16], end;
	char **files;
	size_t nf;

	assert_int_equal(open_wal(f->wal, 0, &c, &rec, &w), 0);
	append_range(w, 1, 10, 1);
	assert_int_equal(wal_sync(w), 0);
	wal_close(w);
	nf = list_wal_files(f->wal, &files);
	assert_int_equal(record_offsets(files[0], offs, 16, &end), 11);
	flip_byte(files[0], offs[10] + 15);
	patch_file(files[0], end + 100, junk, sizeof(junk));
	reopen_check(f->wal, 0, 1, 9, term1, &rec);
	assert_true(rec.truncated_tail);
	free_files(files, nf);
}

static void write_segments(const char *dir, uint64_t n, size_t seg_size, uint64_t batch,
                           const struct wal_hard_state *hs_first)
{
	struct wal_recovery rec;
	struct collect c = {0};
	struct wal *w;

	assert_int_equal(open_wal(dir, 0, &c, &rec, &w), 0);
	wal_set_segment_size(w, seg_size);
	if (hs_first)
		assert_int_equal(wal_set_hard_state(w, hs_first), 0);
	for (uint64_t i = 1; i <= n; i += batch) {
		append_range(w, i, i + batch - 1 > n ? n : i + batch - 1, 1);
		assert_int_equal(wal_sync(w), 0);
	}
	wal_close(w);
}

static void test_corrupt_non_last_segment(void **state)
{
	struct fixture *f = *state;
	char **files;
	size_t nf, offs[64], end, nrec;
	struct wal_recovery rec;

	write_segments(f->wal, 60, 400, 1, NULL);
	nf = list_wal_files(f->wal, &files);
	assert_true(nf >= 3);
	reopen_check(f->wal, 0, 1, 60, term1, &rec);

	/* The last record of a middle segment, damaged: in the last segment this would be a torn
	 * tail, here it is corruption. */
	nrec = record_offsets(files[1], offs, 64, &end);
	assert_true(nrec >= 2);
	flip_byte(files[1], offs[nrec - 1] + 12);
	expect_corrupt(f->wal, 0, files[1], offs[nrec - 1]);
	flip_byte(files[1], offs[nrec - 1] + 12);
	reopen_check(f->wal, 0, 1, 60, term1, &rec);

	/* Cut short. */
	assert_int_equal(truncate(files[1], (off_t)(end - 3)), 0);
	expect_corrupt(f->wal, 0, files[1], offs[nrec - 1]);

	/* A missing middle segment. */
	assert_int_equal(unlink(files[1]), 0);
	struct collect c = {0};
	struct wal *w;

	assert_int_equal(open_wal(f->wal, 0, &c, &rec, &w), FLT_ECORRUPT);
	assert_non_null(strstr(rec.error, "missing"));
	free_files(files, nf);
}

static void test_rotation(void **state)
{
	struct fixture *f = *state;
	struct wal_hard_state hs = {4, 2, 1};
	struct wal_recovery rec;
	struct collect c = {0};
	struct wal *w;
	char **files;
	size_t nf;

	write_segments(f->wal, 200, 1024, 7, &hs);
	nf = list_wal_files(f->wal, &files);
	print_message("rotation: 200 entries in %zu segments of 1 KiB\n", nf);
	assert_true(nf >= 8);
	/* Only the last file keeps a preallocated tail; full ones were cut to their data. */
	for (size_t i = 0; i + 1 < nf; i++) {
		size_t offs[64], end;

		record_offsets(files[i], offs, 64, &end);
		assert_int_equal(end, file_size(files[i]));
	}
	free_files(files, nf);
	reopen_check(f->wal, 0, 1, 200, term1, &rec);
	assert_int_equal(rec.hs.term, 4);
	assert_int_equal(rec.hs.commit, 1);

	/* Appends go on after a reopen and rotate again. */
	assert_int_equal(open_wal(f->wal, 0, &c, &rec, &w), 0);
	collect_free(&c);
	wal_set_segment_size(w, 1024);
	for (uint64_t i = 201; i <= 260; i += 3) {
		append_range(w, i, i + 2, 1);
		assert_int_equal(wal_sync(w), 0);
	}
	wal_close(w);
	reopen_check(f->wal, 0, 1, 260, term1, &rec);
	reopen_check(f->wal, 150, 151, 260, term1, &rec);

	/* A reopened file already past a (smaller) limit rotates at the next sync. */
	char *dir = dir_path(f->root, "reopen-full");

	write_segments(dir, 10, 0, 10, NULL);
	assert_int_equal(open_wal(dir, 0, &c, &rec, &w), 0);
	collect_free(&c);
	wal_set_segment_size(w, 100);
	append_range(w, 11, 11, 1);
	assert_int_equal(wal_sync(w), 0);
	wal_close(w);
	nf = list_wal_files(dir, &files);
	assert_int_equal(nf, 2);
	free_files(files, nf);
	reopen_check(dir, 0, 1, 11, term1, &rec);
	free(dir);
}

static void test_compaction(void **state)
{
	struct fixture *f = *state;
	struct wal_hard_state hs = {9, 1, 3};
	struct wal_recovery rec;
	struct collect c = {0};
	struct wal *w;
	char **before, **after, *spare;
	unsigned char *p;
	size_t nb, na, len;

	write_segments(f->wal, 100, 600, 3, &hs);
	nb = list_wal_files(f->wal, &before);
	assert_true(nb >= 5);

	assert_int_equal(open_wal(f->wal, 0, &c, &rec, &w), 0);
	collect_free(&c);
	/* A snapshot child releases the files first (wal_release_covered, on its copy of the
	 * WAL): the oldest becomes the zeroed spare, the others go. The parent's wal_compact then
	 * only forgets them, with the same result on disk. */
	spare = dir_path(f->wal, "spare-0.tmp");
	assert_int_equal(access(spare, F_OK), -1);
	wal_release_covered(w, 50);
	na = list_wal_files(f->wal, &after);
	assert_true(na < nb);
	free_files(after, na);
	p = read_file(spare, &len);
	assert_true(len > 0);
	for (size_t i = 0; i < len; i++)
		assert_int_equal(p[i], 0);
	free(p);
	assert_int_equal(wal_compact(w, 50), 0);
	wal_close(w);
	assert_int_equal(list_wal_files(f->wal, &after), na);
	/* Whole files went, oldest first, and the survivors are untouched. */
	for (size_t i = 0; i < na; i++)
		assert_string_equal(after[i], before[nb - na + i]);
	/* The first survivor holds 51; the last deleted one ended at or before 50. */
	reopen_check(f->wal, 50, 51, 100, term1, &rec);
	assert_true(rec.first_index <= 51);
	assert_true(rec.first_index > 50 - 600 / 40);
	assert_int_equal(rec.hs.term, 9); /* hard state survived its original segment */
	assert_int_equal(rec.hs.commit, 3);
	{
		/* Opening as if there were no snapshot: the entries before are missing. */
		assert_int_equal(open_wal(f->wal, 0, &c, &rec, &w), FLT_ECORRUPT);
		assert_non_null(strstr(rec.error, "missing"));
		collect_free(&c);
	}
	free_files(after, na);

	/* Compacting everything keeps the last file, where appends go. */
	assert_int_equal(open_wal(f->wal, 50, &c, &rec, &w), 0);
	collect_free(&c);
	assert_int_equal(wal_compact(w, 100), 0);
	na = list_wal_files(f->wal, &after);
	assert_int_equal(na, 1);
	assert_string_equal(after[0], before[nb - 1]);
	append_range(w, 101, 103, 1);
	assert_int_equal(wal_sync(w), 0);
	wal_close(w);
	reopen_check(f->wal, 100, 101, 103, term1, &rec);
	assert_int_equal(rec.hs.term, 9);
	free_files(after, na);
	free_files(before, nb);

	/* A snapshot from a leader past the log: compact to it, then the log restarts after it.
	 * Its first new segment is the spare, whose zeros end the records as preallocation's do.
	 * A file a crash left halfway through recycling still holds records: opening deletes it. */
	{
		char *half = dir_path(f->wal, "recycle.tmp");
		FILE *fp = fopen(half, "w");

		assert_non_null(fp);
		fputs("old records", fp);
		fclose(fp);
		assert_int_equal(open_wal(f->wal, 100, &c, &rec, &w), 0);
		assert_int_equal(access(half, F_OK), -1);
		free(half);
	}
	collect_free(&c);
	wal_set_segment_size(w, 600);
	assert_int_equal(wal_compact(w, 500), 0);
	assert_int_equal(access(spare, F_OK), 0);
	append_range(w, 501, 540, 1);
	assert_int_equal(wal_sync(w), 0);
	assert_int_equal(access(spare, F_OK), -1);
	free(spare);
	wal_close(w);
	reopen_check(f->wal, 500, 501, 540, term1, &rec);
}

static void test_version(void **state)
{
	struct fixture *f = *state;
	struct wal_recovery rec;
	struct collect c = {0};
	struct wal *w;
	char **files;
	size_t nf, len;
	unsigned char *p;

	write_segments(f->wal, 3, 0, 1, NULL);
	nf = list_wal_files(f->wal, &files);
	p = read_file(files[0], &len);
	/* Segment header: [len][crc][type 1][magic][version]...; bump the version, fix the crc. */
	p[8 + 1 + 4] = 2;
	uint32_t crc = crc32c(0, p + 8, le32(p));

	for (int i = 0; i < 4; i++)
		p[4 + i] = (unsigned char)(crc >> (8 * i));
	patch_file(files[0], 0, p, 8 + le32(p));
	assert_int_equal(open_wal(f->wal, 0, &c, &rec, &w), FLT_EVERSION);
	assert_non_null(strstr(rec.error, "version 2"));
	assert_non_null(strstr(rec.error, files[0]));
	/* Bad magic. */
	p[8 + 1] ^= 1;
	crc = crc32c(0, p + 8, le32(p));
	for (int i = 0; i < 4; i++)
		p[4 + i] = (unsigned char)(crc >> (8 * i));
	patch_file(files[0], 0, p, 8 + le32(p));
	expect_corrupt(f->wal, 0, files[0], 0);
	free(p);
	free_files(files, nf);
	collect_free(&c);
}

/* ---- reset records ---- */

static uint64_t term_reset12(uint64_t i)
{
	return i > 12 ? 3 : 1;
}

static uint64_t term2(uint64_t i)
{
	(void)i;
	return 2;
}

static uint64_t term4(uint64_t i)
{
	(void)i;
	return 4;
}

static uint64_t term5(uint64_t i)
{
	(void)i;
	return 5;
}

/* A snapshot installed from the leader voids every entry written before the reset, whatever its
 * index; the log goes on after the snapshot's index. */
static void test_reset_replay(void **state)
{
	struct fixture *f = *state;
	struct wal_hard_state hs = {3, 2, 12};
	struct wal_recovery rec;
	struct collect c = {0};
	struct wal *w;
	struct wal_entry e = {3, 12, 0, "x", 1};

	assert_int_equal(open_wal(f->wal, 0, &c, &rec, &w), 0);
	append_range(w, 1, 10, 1);
	assert_int_equal(wal_sync(w), 0);
	append_range(w, 11, 15, 1); /* conflicts with the leader's log from 12 on */
	assert_int_equal(wal_sync(w), 0);
	assert_int_equal(wal_reset(w, 12, 3), 0);
	assert_true(wal_pending(w));
	/* Only 13 may follow. */
	assert_int_equal(wal_append(w, &e, 1), FLT_EINVAL);
	e.index = 14;
	assert_int_equal(wal_append(w, &e, 1), FLT_EINVAL);
	e.index = 5;
	assert_int_equal(wal_append(w, &e, 1), FLT_EINVAL);
	append_range(w, 13, 16, 3);
	assert_int_equal(wal_set_hard_state(w, &hs), 0);
	assert_int_equal(wal_sync(w), 0);
	wal_close(w);

	reopen_check(f->wal, 12, 13, 16, term_reset12, &rec);
	assert_int_equal(rec.reset_index, 12);
	assert_int_equal(rec.reset_term, 3);
	assert_int_equal(rec.first_index, 13);
	assert_int_equal(rec.last_index, 16);
	assert_int_equal(rec.last_term, 3);
	assert_int_equal(rec.hs.commit, 12);
	assert_false(rec.truncated_tail);
	/* A later local snapshot skips more. */
	reopen_check(f->wal, 14, 15, 16, term_reset12, &rec);
	assert_int_equal(rec.reset_index, 12);
	/* Without the snapshot the reset asks for, entries 1..12 are gone: corruption, and the
	 * recovery says which snapshot is missing. */
	assert_int_equal(open_wal(f->wal, 0, &c, &rec, &w), FLT_ECORRUPT);
	assert_non_null(strstr(rec.error, "reset to index 12"));
	assert_int_equal(rec.reset_index, 12);
	assert_int_equal(rec.reset_term, 3);
	assert_int_equal(c.n, 0);
	assert_int_equal(open_wal(f->wal, 11, &c, &rec, &w), FLT_ECORRUPT);
	assert_int_equal(c.n, 0);

	/* Entries buffered before a reset in the same batch are void as well; then a second reset
	 * overrides the first. */
	assert_int_equal(open_wal(f->wal, 12, &c, &rec, &w), 0);
	collect_free(&c);
	append_range(w, 15, 18, 3);
	assert_int_equal(wal_reset(w, 30, 4), 0);
	append_range(w, 31, 33, 4);
	assert_int_equal(wal_sync(w), 0);
	wal_close(w);
	reopen_check(f->wal, 30, 31, 33, term4, &rec);
	assert_int_equal(rec.reset_index, 30);
	assert_int_equal(rec.first_index, 31);
	assert_int_equal(open_wal(f->wal, 30, &c, &rec, &w), 0);
	collect_free(&c);
	assert_int_equal(wal_reset(w, 50, 4), 0);
	append_range(w, 51, 52, 4);
	assert_int_equal(wal_sync(w), 0);
	wal_close(w);
	reopen_check(f->wal, 50, 51, 52, term4, &rec);
	assert_int_equal(rec.reset_index, 50);
	assert_int_equal(rec.reset_term, 4);
	assert_int_equal(rec.last_index, 52);

	/* A reset with nothing after it: the log is empty and continues at index + 1. */
	char *dir = dir_path(f->root, "reset-empty");

	assert_int_equal(open_wal(dir, 0, &c, &rec, &w), 0);
	append_range(w, 1, 5, 1);
	assert_int_equal(wal_sync(w), 0);
	assert_int_equal(wal_reset(w, 20, 2), 0);
	assert_int_equal(wal_sync(w), 0);
	wal_close(w);
	reopen_check(dir, 20, 1, 0, term1, &rec);
	assert_int_equal(rec.reset_index, 20);
	assert_int_equal(rec.reset_term, 2);
	assert_int_equal(rec.first_index, 21);
	assert_int_equal(rec.last_index, 20);
	assert_int_equal(rec.last_term, 2);
	assert_int_equal(open_wal(dir, 20, &c, &rec, &w), 0);
	e = (struct wal_entry){2, 20, 0, "x", 1};
	assert_int_equal(wal_append(w, &e, 1), FLT_EINVAL);
	e.index = 22;
	assert_int_equal(wal_append(w, &e, 1), FLT_EINVAL);
	append_range(w, 21, 24, 2);
	assert_int_equal(wal_sync(w), 0);
	wal_close(w);
	reopen_check(dir, 20, 21, 24, term2, &rec);
	assert_int_equal(rec.reset_index, 20);

	/* Refused: index or term 0, an index below a snapshot already compacted to. */
	assert_int_equal(open_wal(dir, 20, &c, &rec, &w), 0);
	assert_int_equal(wal_reset(w, 0, 1), FLT_EINVAL);
	assert_int_equal(wal_reset(w, 30, 0), FLT_EINVAL);
	assert_int_equal(wal_compact(w, 23), 0);
	assert_int_equal(wal_reset(w, 22, 2), FLT_EINVAL);
	assert_false(wal_pending(w));
	assert_int_equal(wal_reset(w, 23, 2), 0); /* the snapshot's own index is fine */
	append_range(w, 24, 24, 5);
	assert_int_equal(wal_sync(w), 0);
	wal_close(w);
	reopen_check(dir, 23, 24, 24, term5, &rec);
	collect_free(&c);
	free(dir);
}

static uint64_t term_reset10(uint64_t i)
{
	return i > 10 ? 2 : 1;
}

/* A crash while the reset record is written loses it (the old log comes back, as for any unsynced
 * write); a crash in a later record keeps it. Every cut point, in both crash shapes. */
static void test_reset_torn_tail(void **state)
{
	struct fixture *f = *state;
	enum { ZEROS, EOF_CUT };
	int cuts = 0;

	for (int mode = ZEROS; mode <= EOF_CUT; mode++) {
		/* The torn record: the reset itself, or the entry after it. */
		for (int torn_entry = 0; torn_entry <= 1; torn_entry++) {
			for (size_t cut = 0;; cut++) {
				struct wal_hard_state hs1 = {1, 0, 4};
				struct wal_recovery rec;
				struct collect c = {0};
				struct wal *w;
				char *dir = dir_path(f->root, "torn-reset");
				size_t offs[16], end, nrec, start;
				char **files;
				size_t nf;

				assert_int_equal(open_wal(dir, 0, &c, &rec, &w), 0);
				append_range(w, 1, 5, 1);
				assert_int_equal(wal_set_hard_state(w, &hs1), 0);
				assert_int_equal(wal_sync(w), 0);
				assert_int_equal(wal_reset(w, 10, 2), 0);
				if (torn_entry) {
					append_range(w, 11, 11, 2);
					assert_int_equal(wal_sync(w), 0);
					append_range(w, 12, 12, 2);
				}
				assert_int_equal(wal_sync(w), 0);
				wal_close(w);

				nf = list_wal_files(dir, &files);
				assert_int_equal(nf, 1);
				nrec = record_offsets(files[0], offs, 16, &end);
				start = offs[nrec - 1];
				if (start + cut >= end) {
					free_files(files, nf);
					nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
					free(dir);
					break;
				}
				if (mode == ZEROS) {
					/* Zeroing bytes that are zero anyway damages nothing. */
					size_t len;
					unsigned char *p = read_file(files[0], &len);
					bool intact = true;

					for (size_t i = start + cut; i < end; i++)
						intact = intact && !p[i];
					free(p);
					if (intact) {
						free_files(files, nf);
						nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
						free(dir);
						continue;
					}
					zero_range(files[0], start + cut, end);
				} else
					assert_int_equal(truncate(files[0], (off_t)(start + cut)),
					                 0);
				if (torn_entry) {
					reopen_check(dir, 10, 11, 11, term_reset10, &rec);
					/* cut 0 removes the record entirely: a clean end. */
					assert_int_equal(rec.truncated_tail, cut > 0);
					assert_int_equal(rec.reset_index, 10);
					assert_int_equal(rec.reset_term, 2);
					assert_int_equal(rec.last_index, 11);
				} else {
					/* The reset never happened: the snapshot at 10 may exist or
					 * not, the old log is whole either way. */
					reopen_check(dir, 0, 1, 5, term1, &rec);
					assert_int_equal(rec.truncated_tail, cut > 0);
					assert_int_equal(rec.reset_index, 0);
					assert_int_equal(rec.reset_term, 0);
					assert_int_equal(rec.last_index, 5);
					reopen_check(dir, 10, 1, 0, term1, &rec);
					assert_int_equal(rec.last_index, 5);
				}
				assert_int_equal(rec.hs.commit, 4);

				/* Appends go on from the surviving state. */
				assert_int_equal(open_wal(dir, 10, &c, &rec, &w), 0);
				collect_free(&c);
				append_range(w, torn_entry ? 12 : 11, 13, 2);
				assert_int_equal(wal_sync(w), 0);
				wal_close(w);
				if (torn_entry) {
					reopen_check(dir, 10, 11, 13, term_reset10, &rec);
					assert_int_equal(rec.reset_index, 10);
				} else {
					/* 11 follows the snapshot at 10, not the old log's 5. */
					reopen_check(dir, 10, 11, 13, term_reset10, &rec);
					assert_int_equal(rec.reset_index, 0);
				}
				assert_false(rec.truncated_tail);
				free_files(files, nf);
				nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
				free(dir);
				cuts++;
			}
		}
	}
	print_message("reset torn tail: %d cut points checked\n", cuts);
}

static void check_same_files(char **a, size_t na, char **b, size_t nb)
{
	assert_int_equal(na, nb);
	for (size_t i = 0; i < na; i++)
		assert_string_equal(a[i], b[i]);
}

/* Segments wholly before a durable reset go at wal_compact(reset index), even though the entries
 * in them have larger indexes; not before the reset is synced. Both for the WAL that wrote the
 * reset and for one that learned it from replay; with the reset alone in the old last file and
 * with the reset at the head of a file a rotation made. */
static void test_reset_compaction(void **state)
{
	struct fixture *f = *state;

	for (int variant = 0; variant < 4; variant++) {
		bool rotate_at_reset = variant & 1, reopen_first = variant & 2;
		char *dir = dir_path(f->root, "reset-compact");
		struct wal_recovery rec;
		struct collect c = {0};
		struct wal *w;
		char **before, **mid, **after;
		size_t nb, nm, na, reset_file;

		write_segments(dir, 60, 400, 1, NULL);
		nb = list_wal_files(dir, &before);
		assert_true(nb >= 5);

		assert_int_equal(open_wal(dir, 0, &c, &rec, &w), 0);
		collect_free(&c);
		wal_set_segment_size(w, 400);
		/* The leader's snapshot at 40 conflicts with our 41..60. */
		assert_int_equal(wal_reset(w, 40, 2), 0);
		if (rotate_at_reset) {
			append_range(w, 41, 50, 2); /* too much for the old file: rotates */
		} else {
			append_range(w, 41, 41, 2);
			wal_set_segment_size(w, 4096); /* this sync must not rotate */
		}
		/* Not synced yet: only files holding nothing past 40 may go. */
		assert_int_equal(wal_compact(w, 40), 0);
		nm = list_wal_files(dir, &mid);
		assert_true(nm >= 2);
		assert_true(nm < nb);
		check_same_files(mid, nm, before + (nb - nm), nm);
		assert_int_equal(wal_sync(w), 0);
		wal_set_segment_size(w, 400);
		free_files(mid, nm);
		nm = list_wal_files(dir, &mid);
		reset_file = nm - 1; /* the reset went to the last file */
		{
			/* Where it starts: after the segment header, a rotated file has the reset
			 * itself; the old one has old entries far past the snapshot's 40 (void). */
			size_t offs[64], end, len;
			unsigned char *p = read_file(mid[reset_file], &len);

			assert_true(record_offsets(mid[reset_file], offs, 64, &end) >= 3);
			if (rotate_at_reset) {
				assert_int_equal(p[offs[1] + 8], 4);
			} else {
				assert_int_equal(p[offs[1] + 8], 2);
				assert_true(le32(p + offs[1] + 8 + 1 + 8) > 41);
			}
			free(p);
		}
		for (uint64_t i = rotate_at_reset ? 51 : 42; i <= 100; i += 3) {
			append_range(w, i, i + 2 > 100 ? 100 : i + 2, 2);
			assert_int_equal(wal_sync(w), 0);
		}
		if (reopen_first) {
			wal_close(w);
			reopen_check(dir, 40, 41, 100, term2, &rec);
			assert_int_equal(rec.reset_index, 40);
			assert_int_equal(open_wal(dir, 40, &c, &rec, &w), 0);
			collect_free(&c);
		}
		assert_int_equal(wal_compact(w, 40), 0);
		na = list_wal_files(dir, &after);
		/* Everything before the reset's file went; it stays (it holds 41.. or is followed
		 * by them). */
		assert_string_equal(after[0], mid[reset_file]);
		print_message("reset compaction (%s, %s): %zu files, %zu before the reset's, %zu "
		              "left\n",
		              rotate_at_reset ? "reset at a new file's head"
		                              : "reset in the old file",
		              reopen_first ? "replayed" : "live", nm, reset_file, na);
		free_files(after, na);
		wal_close(w);
		/* The reset's file may start with old entries (57..60) far past the snapshot: they
		 * are void, so no gap. */
		reopen_check(dir, 40, 41, 100, term2, &rec);
		assert_int_equal(rec.reset_index, 40);
		assert_int_equal(rec.first_index, 41);

		/* A later local snapshot compacts on as usual; the reset's file can go too. */
		assert_int_equal(open_wal(dir, 40, &c, &rec, &w), 0);
		collect_free(&c);
		assert_int_equal(wal_compact(w, 80), 0);
		wal_close(w);
		na = list_wal_files(dir, &after);
		assert_true(na >= 1);
		if (strcmp(after[0], mid[reset_file]) != 0)
			print_message("  compact(80) removed the reset's file\n");
		free_files(after, na);
		reopen_check(dir, 80, 81, 100, term2, &rec);
		assert_true(rec.reset_index == 0 || rec.reset_index == 40);
		assert_true(rec.first_index <= 81);

		free_files(before, nb);
		free_files(mid, nm);
		nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
		free(dir);
	}
}

/* A damaged reset record in the middle of the log is corruption, never a reason to keep or drop
 * entries silently. */
static void test_reset_corrupt(void **state)
{
	struct fixture *f = *state;
	const struct {
		const char *what;
		size_t at; /* byte of the reset record to flip; SIZE_MAX: rewrite it as index 0 */
		bool zero8;
	} cases[] = {
	    {"length", 1, false},
	    {"crc", 6, false},
	    {"type", 8, false},
	    {"index", 10, false},
	    {"term", 20, false},
	    {"zeroed header", 0, true},
	    {"index 0, valid crc", SIZE_MAX, false},
	};

	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		struct wal_recovery rec;
		struct collect c = {0};
		struct wal *w;
		char *dir = dir_path(f->root, "reset-corrupt");
		size_t offs[32], end, nrec, target;
		char **files;
		size_t nf;

		assert_int_equal(open_wal(dir, 0, &c, &rec, &w), 0);
		append_range(w, 1, 5, 1);
		assert_int_equal(wal_reset(w, 10, 2), 0);
		append_range(w, 11, 15, 2);
		assert_int_equal(wal_sync(w), 0);
		wal_close(w);
		nf = list_wal_files(dir, &files);
		nrec = record_offsets(files[0], offs, 32, &end);
		assert_int_equal(nrec, 12); /* header, 5 entries, reset, 5 entries */
		target = offs[6];
		assert_int_equal(offs[7] - offs[6], 8 + 1 + 16);
		if (cases[k].zero8) {
			zero_range(files[0], target, target + 8);
		} else if (cases[k].at == SIZE_MAX) {
			size_t len;
			unsigned char *p = read_file(files[0], &len);
			uint32_t crc;

			memset(p + target + 9, 0, 8);
			crc = crc32c(0, p + target + 8, 17);
			for (int i = 0; i < 4; i++)
				p[target + 4 + i] = (unsigned char)(crc >> (8 * i));
			patch_file(files[0], target, p + target, 25);
			free(p);
		} else {
			flip_byte(files[0], target + cases[k].at);
		}
		print_message("corrupt reset %s\n", cases[k].what);
		expect_corrupt(dir, 10, files[0], target);
		free_files(files, nf);
		nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
		free(dir);
	}

	/* An entry at or below the reset's index after it (wal_append never writes one), with a
	 * valid crc: corruption at that entry. */
	{
		struct wal_recovery rec;
		struct collect c = {0};
		struct wal *w;
		size_t offs[32], end, len;
		char **files;
		size_t nf;
		unsigned char *p;
		uint32_t crc;

		assert_int_equal(open_wal(f->wal, 0, &c, &rec, &w), 0);
		append_range(w, 1, 5, 1);
		assert_int_equal(wal_reset(w, 10, 2), 0);
		append_range(w, 11, 15, 2);
		assert_int_equal(wal_sync(w), 0);
		wal_close(w);
		nf = list_wal_files(f->wal, &files);
		assert_int_equal(record_offsets(files[0], offs, 32, &end), 12);
		p = read_file(files[0], &len);
		p[offs[7] + 8 + 1 + 8] = 10; /* entry 11 claims index 10 */
		crc = crc32c(0, p + offs[7] + 8, le32(p + offs[7]));
		for (int i = 0; i < 4; i++)
			p[offs[7] + 4 + i] = (unsigned char)(crc >> (8 * i));
		patch_file(files[0], offs[7], p + offs[7], offs[8] - offs[7]);
		free(p);
		expect_corrupt(f->wal, 10, files[0], offs[7]);
		assert_int_equal(open_wal(f->wal, 10, &c, &rec, &w), FLT_ECORRUPT);
		assert_non_null(strstr(rec.error, "after a reset of the log to index 10"));
		free_files(files, nf);
	}
}

/* ---- snapshots ---- */

static void test_snapshots(void **state)
{
	struct fixture *f = *state;
	struct buf out = BUF_INIT;
	char err[512] = "";
	uint64_t index = 0, term = 0;
	size_t nf;

	/* No directory, then an empty one: no snapshot. */
	assert_int_equal(snap_load_latest(f->snap, &index, &term, &out, err, sizeof(err)), 0);
	assert_int_equal(mkdir(f->snap, 0755), 0);
	assert_int_equal(snap_load_latest(f->snap, &index, &term, &out, err, sizeof(err)), 0);

	assert_int_equal(snap_save(f->snap, 10, 1, "ten", 3), 0);
	assert_int_equal(snap_save(f->snap, 30, 2, "thirty", 6), 0);
	assert_int_equal(snap_save(f->snap, 20, 2, "twenty", 6), 0);
	assert_int_equal(snap_load_latest(f->snap, &index, &term, &out, err, sizeof(err)), 1);
	assert_int_equal(index, 30);
	assert_int_equal(term, 2);
	assert_int_equal(out.len, 6);
	assert_memory_equal(out.data, "thirty", 6);

	/* Only the two newest stay. */
	assert_int_equal(snap_save(f->snap, 40, 3, "", 0), 0);
	nf = 0;
	{
		DIR *d = opendir(f->snap);
		struct dirent *de;

		while ((de = readdir(d)))
			if (de->d_name[0] != '.') {
				nf++;
				assert_true(strstr(de->d_name, "000000000000001e.snap") ||
				            strstr(de->d_name, "0000000000000028.snap"));
			}
		closedir(d);
	}
	assert_int_equal(nf, 2);
	assert_int_equal(snap_load_latest(f->snap, &index, &term, &out, err, sizeof(err)), 1);
	assert_int_equal(index, 40);
	assert_int_equal(term, 3);
	assert_int_equal(out.len, 0);

	/* A large one. */
	size_t big = 3 << 20;
	char *data = malloc(big);

	assert_non_null(data);
	for (size_t i = 0; i < big; i++)
		data[i] = (char)(i * 7);
	assert_int_equal(snap_save(f->snap, 50, 3, data, big), 0);
	assert_int_equal(snap_load_latest(f->snap, &index, &term, &out, err, sizeof(err)), 1);
	assert_int_equal(out.len, big);
	assert_memory_equal(out.data, data, big);
	free(data);

	/* A damaged newest one is an error naming it, never a silent fall back to the older. */
	char *newest = dir_path(f->snap, "0000000000000003-0000000000000032.snap");
	const struct {
		const char *what;
		size_t at; /* byte to flip; SIZE_MAX: truncate to 10 bytes */
		int code;
	} cases[] = {
	    {"payload", 1000, FLT_ECORRUPT}, {"crc", 9, FLT_ECORRUPT},
	    {"index", 14, FLT_ECORRUPT},     {"magic", 0, FLT_ECORRUPT},
	    {"version", 7, FLT_EVERSION},    {"short", SIZE_MAX, FLT_ECORRUPT},
	};
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		if (cases[k].at == SIZE_MAX)
			assert_int_equal(truncate(newest, 10), 0);
		else
			flip_byte(newest, cases[k].at);
		err[0] = '\0';
		index = term = 0;
		assert_int_equal(snap_load_latest(f->snap, &index, &term, &out, err, sizeof(err)),
		                 cases[k].code);
		print_message("snapshot %s: %s\n", cases[k].what, err);
		assert_non_null(strstr(err, newest));
		assert_int_equal(index, 0); /* out params untouched */
		if (cases[k].at != SIZE_MAX)
			flip_byte(newest, cases[k].at);
	}
	free(newest);
	buf_release(&out);
}

/* Rewrite a snapshot file's crc over everything after it (to forge damage the crc misses). */
static void snap_fix_crc(const char *path)
{
	size_t len = file_size(path);
	unsigned char *p = read_file(path, &len);
	uint32_t crc = crc32c(0, p + 12, len - 12);

	for (int i = 0; i < 4; i++)
		p[8 + i] = (unsigned char)(crc >> (8 * i));
	patch_file(path, 8, p + 8, 4);
	free(p);
}

/* The configuration travels with the snapshot; version 1 files (before it did) still load. */
/* ---- the snapshot writer (a forked child) and mapped snapshots ---- */

struct snapw_seen {
	int calls;
	uint64_t index, term;
	int result;
};

static void snapw_seen_cb(void *ctx, uint64_t index, uint64_t term, int result)
{
	struct snapw_seen *s = ctx;

	s->calls++;
	s->index = index;
	s->term = term;
	s->result = result;
}

static int serialize_ok(void *ctx, struct buf *out)
{
	return buf_puts(out, ctx);
}

static int serialize_fail(void *ctx, struct buf *out)
{
	(void)ctx;
	(void)out;
	return -ENOSPC;
}

static int serialize_slow(void *ctx, struct buf *out)
{
	usleep(200000);
	return buf_puts(out, ctx);
}

/* The durable callback's view, for the test to check: where to leave a mark, and the snapshot
 * directory whose newest file must already be the one just written. */
static const char *durable_dir, *durable_mark_path;

static void durable_mark(void *ctx, uint64_t index)
{
	struct snap_map m;
	char err[256];
	FILE *fp;

	(void)ctx;
	if (snap_map_latest(durable_dir, true, &m, err, sizeof(err)) != 1)
		return;
	fp = fopen(durable_mark_path, "w");
	if (fp) {
		fprintf(fp, "%llu %llu", (unsigned long long)index, (unsigned long long)m.index);
		fclose(fp);
	}
	snap_unmap(&m);
}

static int serialize_hang(void *ctx, struct buf *out)
{
	(void)ctx;
	(void)out;
	pause(); /* until killed */
	return 0;
}

/* Run the loop until the writer reported or 10 s passed. */
static void wait_written(struct ev_loop *loop, struct snapw *w, struct snapw_seen *s)
{
	for (int i = 0; i < 1000 && !s->calls; i++) {
		ev_run(loop, EVRUN_NOWAIT);
		if (!s->calls)
			usleep(10000);
	}
	assert_int_equal(s->calls, 1);
	assert_false(snapw_busy(w));
}

static void assert_mark(const char *path, const char *want)
{
	size_t len;
	unsigned char *p = read_file(path, &len);

	assert_int_equal(len, strlen(want));
	assert_memory_equal(p, want, len);
	free(p);
}

static void test_snapshot_writer(void **state)
{
	struct fixture *f = *state;
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	const unsigned char cf[] = {1, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0};
	struct snapw_seen seen = {0};
	struct snap_map m;
	struct snapw *w;
	char err[512] = "", *mark;

	assert_non_null(loop);
	assert_int_equal(snapw_new(loop, f->snap, snapw_seen_cb, &seen, &w), 0);
	assert_false(snapw_busy(w));

	/* Written by the child, durable and readable when the callback says 0; the durable
	 * callback ran in the child before that, with the file already in place. */
	assert_non_null(mark = dir_path(f->root, "durable"));
	durable_dir = f->snap;
	durable_mark_path = mark;
	assert_int_equal(
	    snapw_start(w, 40, 3, cf, sizeof(cf), serialize_ok, durable_mark, "the state"), 0);
	assert_true(snapw_busy(w));
	assert_int_equal(snapw_start(w, 41, 3, cf, sizeof(cf), serialize_ok, NULL, "x"), -EBUSY);
	wait_written(loop, w, &seen);
	assert_int_equal(seen.result, 0);
	assert_int_equal(seen.index, 40);
	assert_int_equal(seen.term, 3);
	assert_mark(mark, "40 40");
	for (int crc = 0; crc < 2; crc++) {
		assert_int_equal(snap_map_latest(f->snap, crc, &m, err, sizeof(err)), 1);
		assert_int_equal(m.index, 40);
		assert_int_equal(m.term, 3);
		assert_int_equal(m.conf_len, sizeof(cf));
		assert_memory_equal(m.conf, cf, sizeof(cf));
		assert_int_equal(m.len, 9);
		assert_memory_equal(m.data, "the state", 9);
		snap_map_drop_pages(&m);
		assert_memory_equal(m.data, "the state", 9); /* still readable */
		snap_unmap(&m);
		assert_null(m.base);
	}

	/* A failure in the child comes back as its error; nothing new on disk, and no durable
	 * callback. */
	seen = (struct snapw_seen){0};
	assert_int_equal(unlink(mark), 0);
	assert_int_equal(snapw_start(w, 50, 3, cf, sizeof(cf), serialize_fail, durable_mark, NULL),
	                 0);
	wait_written(loop, w, &seen);
	assert_int_equal(seen.result, -ENOSPC);
	assert_int_equal(access(mark, F_OK), -1);
	free(mark);
	assert_int_equal(seen.index, 50);
	assert_int_equal(snap_map_latest(f->snap, true, &m, err, sizeof(err)), 1);
	assert_int_equal(m.index, 40);
	snap_unmap(&m);

	/* Cancelled: killed and reaped at once, the callback never comes. */
	seen = (struct snapw_seen){0};
	assert_int_equal(snapw_start(w, 60, 3, cf, sizeof(cf), serialize_hang, NULL, NULL), 0);
	snapw_cancel(w);
	assert_false(snapw_busy(w));
	ev_run(loop, EVRUN_NOWAIT);
	assert_int_equal(seen.calls, 0);

	/* Freed while a child runs: it may finish (the callback comes from snapw_free), and
	 * no zombie is left (waitpid says so). */
	seen = (struct snapw_seen){0};
	assert_int_equal(snapw_start(w, 70, 3, cf, sizeof(cf), serialize_slow, NULL, "later"), 0);
	snapw_free(w);
	assert_int_equal(seen.calls, 1);
	assert_int_equal(seen.result, 0);
	assert_int_equal(seen.index, 70);
	assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
	assert_int_equal(errno, ECHILD);
	ev_loop_destroy(loop);
}

static ino_t inode_of(const char *dir, const char *name)
{
	char *path = dir_path(dir, name);
	struct stat st;
	int r = stat(path, &st);

	free(path);
	return r == 0 ? st.st_ino : 0;
}

/* Background saves overwrite the file they replaced (the spare) instead of allocating a new one
 * and freeing the old; a file the daemon has mapped is never the spare and its bytes never
 * change under the mapping. */
static void test_snapshot_spare(void **state)
{
	struct fixture *f = *state;
	const unsigned char cf[] = {1, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0};
	const char *a = "0000000000000001-000000000000000a.snap";
	const char *c = "0000000000000001-000000000000001e.snap";
	const char *d = "0000000000000001-0000000000000028.snap";
	char err[256], big[5000];
	struct snap_map m;
	ino_t ino_a, ino_c;

	memset(big, 'x', sizeof(big));
	assert_int_equal(snap_save_conf(f->snap, 10, 1, cf, sizeof(cf), big, sizeof(big), true), 0);
	ino_a = inode_of(f->snap, a);
	assert_int_equal(snap_save_conf(f->snap, 20, 1, cf, sizeof(cf), "twenty", 6, true), 0);
	assert_int_equal(inode_of(f->snap, "spare.tmp"), 0);
	/* The third replaces the first, which becomes the spare... */
	assert_int_equal(snap_save_conf(f->snap, 30, 1, cf, sizeof(cf), "thirty", 6, true), 0);
	assert_int_equal(inode_of(f->snap, a), 0);
	assert_int_equal(inode_of(f->snap, "spare.tmp"), ino_a);
	/* ...and the fourth is written into it, cut to its own length. */
	assert_int_equal(snap_save_conf(f->snap, 40, 1, cf, sizeof(cf), "forty", 5, true), 0);
	assert_int_equal(inode_of(f->snap, d), ino_a);
	assert_int_equal(snap_map_latest(f->snap, true, &m, err, sizeof(err)), 1);
	assert_int_equal(m.index, 40);
	assert_int_equal(m.len, 5);
	assert_memory_equal(m.data, "forty", 5);

	/* Mapped (by the daemon, here the test): two more saves replace it, but it is deleted
	 * rather than reused, and the mapping still reads what it read. */
	ino_c = inode_of(f->snap, c);
	assert_int_equal(snap_save_conf(f->snap, 50, 1, cf, sizeof(cf), "fifty", 5, true), 0);
	assert_int_equal(inode_of(f->snap, "spare.tmp"), ino_c);
	assert_int_equal(snap_save_conf(f->snap, 60, 1, cf, sizeof(cf), "sixty", 5, true), 0);
	assert_int_equal(snap_save_conf(f->snap, 70, 1, cf, sizeof(cf), "seventy", 7, true), 0);
	assert_int_equal(inode_of(f->snap, d), 0);
	assert_int_equal(inode_of(f->snap, "spare.tmp") == ino_a, false);
	assert_memory_equal(m.data, "forty", 5);
	snap_unmap(&m);
	assert_int_equal(snap_map_latest(f->snap, true, &m, err, sizeof(err)), 1);
	assert_int_equal(m.index, 70);
	assert_memory_equal(m.data, "seventy", 7);
	snap_unmap(&m);
}

/* The background file helpers: a large write arrives whole, whatever the piece boundaries; a
 * large unlink leaves nothing behind; a missing file is not an error. */
static void test_trickle(void **state)
{
	struct fixture *f = *state;
	size_t big = 3 * FS_TRICKLE + 12345;
	unsigned char *data = malloc(big), *back;
	char *path = dir_path(f->root, "big");
	struct stat st;
	int fd;

	assert_non_null(data);
	assert_non_null(path);
	for (size_t i = 0; i < big; i++)
		data[i] = (unsigned char)(i * 7 + i / 4096);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(fs_write_all(fd, "head", 4), 0);
	assert_int_equal(fs_write_trickle(fd, data, big), 0);
	assert_int_equal(fsync(fd), 0);
	assert_int_equal(close(fd), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, 4 + big);
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	back = malloc(big);
	assert_non_null(back);
	assert_int_equal(pread(fd, back, big, 4), (ssize_t)big);
	assert_memory_equal(back, data, big);
	close(fd);

	assert_int_equal(fs_unlink_trickle(AT_FDCWD, path), 0);
	assert_int_equal(stat(path, &st), -1);
	assert_int_equal(errno, ENOENT);
	assert_int_equal(fs_unlink_trickle(AT_FDCWD, path), 0);
	/* Not a file it can open for writing: a plain unlink's answer. */
	assert_int_equal(mkdir(path, 0755), 0);
	assert_int_equal(fs_unlink_trickle(AT_FDCWD, path), -EISDIR);
	assert_int_equal(rmdir(path), 0);
	free(back);
	free(data);
	free(path);
}

static void test_snapshot_map_checks(void **state)
{
	struct fixture *f = *state;
	struct snap_map m;
	char err[512] = "", *path;
	int fd;

	assert_int_equal(snap_map_latest(f->snap, true, &m, err, sizeof(err)), 0);
	assert_int_equal(snap_save(f->snap, 5, 1, "abcdef", 6), 0);
	/* Flip one data byte: the checked mapping refuses it, naming the file. */
	path = dir_path(f->snap, "0000000000000001-0000000000000005.snap");
	fd = open(path, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "X", 1, 32 + 2), 1);
	close(fd);
	assert_int_equal(snap_map_latest(f->snap, true, &m, err, sizeof(err)), FLT_ECORRUPT);
	assert_non_null(strstr(err, "checksum mismatch"));
	assert_non_null(strstr(err, path));
	free(path);
}

static void test_snapshot_conf(void **state)
{
	struct fixture *f = *state;
	struct buf out = BUF_INIT, conf = BUF_INIT;
	char err[512] = "";
	uint64_t index = 0, term = 0;
	const unsigned char cf[] = {2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0};

	/* Round trip, with the wrappers on both sides. */
	assert_int_equal(snap_save_conf(f->snap, 10, 2, cf, sizeof(cf), "state", 5, false), 0);
	assert_int_equal(
	    snap_load_latest_conf(f->snap, &index, &term, &conf, &out, err, sizeof(err)), 1);
	assert_int_equal(index, 10);
	assert_int_equal(term, 2);
	assert_int_equal(conf.len, sizeof(cf));
	assert_memory_equal(conf.data, cf, sizeof(cf));
	assert_int_equal(out.len, 5);
	assert_memory_equal(out.data, "state", 5);
	buf_release(&out);
	assert_int_equal(snap_load_latest(f->snap, &index, &term, &out, err, sizeof(err)), 1);
	assert_int_equal(out.len, 5);
	assert_memory_equal(out.data, "state", 5);
	assert_int_equal(
	    snap_load_latest_conf(f->snap, &index, &term, NULL, &out, err, sizeof(err)), 1);
	/* Empty data with a conf; a conf-less snap_save reads back an empty conf. */
	assert_int_equal(snap_save_conf(f->snap, 11, 2, cf, sizeof(cf), NULL, 0, false), 0);
	assert_int_equal(
	    snap_load_latest_conf(f->snap, &index, &term, &conf, &out, err, sizeof(err)), 1);
	assert_int_equal(index, 11);
	assert_int_equal(conf.len, sizeof(cf));
	assert_int_equal(out.len, 0);
	assert_int_equal(snap_save(f->snap, 12, 3, "abc", 3), 0);
	assert_int_equal(
	    snap_load_latest_conf(f->snap, &index, &term, &conf, &out, err, sizeof(err)), 1);
	assert_int_equal(index, 12);
	assert_int_equal(conf.len, 0);
	assert_int_equal(out.len, 3);
	assert_memory_equal(out.data, "abc", 3);

	/* A version 1 file, as the previous build wrote it: [magic v1][crc][index][term][data]. */
	{
		char *v1 = dir_path(f->snap, "0000000000000004-0000000000000014.snap");
		unsigned char h[28] = {'F', 'L', 'O', 'T', 'S', 'N', 'P', 1};
		const char data[] = "version one";
		uint32_t crc;
		int fd;

		for (int i = 0; i < 8; i++) {
			h[12 + i] = (unsigned char)((uint64_t)20 >> (8 * i));
			h[20 + i] = (unsigned char)((uint64_t)4 >> (8 * i));
		}
		crc = crc32c(crc32c(0, h + 12, 16), data, sizeof(data) - 1);
		for (int i = 0; i < 4; i++)
			h[8 + i] = (unsigned char)(crc >> (8 * i));
		fd = open(v1, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		assert_true(fd >= 0);
		assert_int_equal(write(fd, h, sizeof(h)), (ssize_t)sizeof(h));
		assert_int_equal(write(fd, data, sizeof(data) - 1), (ssize_t)sizeof(data) - 1);
		close(fd);
		assert_int_equal(
		    snap_load_latest_conf(f->snap, &index, &term, &conf, &out, err, sizeof(err)),
		    1);
		assert_int_equal(index, 20);
		assert_int_equal(term, 4);
		assert_int_equal(conf.len, 0);
		assert_int_equal(out.len, sizeof(data) - 1);
		assert_memory_equal(out.data, data, sizeof(data) - 1);
		assert_int_equal(snap_load_latest(f->snap, &index, &term, &out, err, sizeof(err)),
		                 1);
		assert_int_equal(out.len, sizeof(data) - 1);
		/* A damaged version 1 file is still caught. */
		flip_byte(v1, 30);
		assert_int_equal(
		    snap_load_latest_conf(f->snap, &index, &term, &conf, &out, err, sizeof(err)),
		    FLT_ECORRUPT);
		assert_non_null(strstr(err, "checksum"));
		free(v1);
	}

	/* Damage around the conf: the length (caught by the crc, or, when forged with a fixed
	 * crc, by the bounds check), the conf bytes, a file cut inside the length. */
	{
		char *p = dir_path(f->snap, "0000000000000005-000000000000001e.snap");
		const struct {
			const char *what;
			size_t at;           /* byte to flip */
			uint32_t forged_len; /* != 0: write this conf length (and fix the crc) */
			bool keep_crc;
			size_t cut; /* != 0: truncate to this many bytes */
			const char *msg;
		} cases[] = {
		    {"conf length byte", 28, 0, false, 0, "past the end"},
		    {"conf length smaller", 0, 4, true, 0, "checksum"},
		    {"conf byte", 33, 0, false, 0, "checksum"},
		    {"conf length past the end", 0, 0xffffffffu, false, 0, "past the end"},
		    {"conf length one past", 0, sizeof(cf) + 6, false, 0, "past the end"},
		    {"cut in the conf length", 0, 0, false, 30, "too short"},
		    {"cut in the conf", 0, 0, false, 40, "past the end"},
		};

		assert_int_equal(snap_save_conf(f->snap, 30, 5, cf, sizeof(cf), "data!", 5, false),
		                 0);
		for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
			assert_int_equal(
			    snap_save_conf(f->snap, 30, 5, cf, sizeof(cf), "data!", 5, false), 0);
			if (cases[k].forged_len) {
				unsigned char l[4];

				for (int i = 0; i < 4; i++)
					l[i] = (unsigned char)(cases[k].forged_len >> (8 * i));
				patch_file(p, 28, l, 4);
				if (!cases[k].keep_crc)
					snap_fix_crc(p);
			} else if (cases[k].cut) {
				assert_int_equal(truncate(p, (off_t)cases[k].cut), 0);
			} else {
				flip_byte(p, cases[k].at);
			}
			err[0] = '\0';
			index = term = 0;
			assert_int_equal(snap_load_latest_conf(f->snap, &index, &term, &conf, &out,
			                                       err, sizeof(err)),
			                 FLT_ECORRUPT);
			print_message("snapshot %s: %s\n", cases[k].what, err);
			assert_non_null(strstr(err, p));
			assert_non_null(strstr(err, cases[k].msg));
			assert_int_equal(index, 0); /* out params untouched */
			assert_int_equal(conf.len, 0);
		}
		/* A version this build does not know. */
		assert_int_equal(snap_save_conf(f->snap, 30, 5, cf, sizeof(cf), "data!", 5, false),
		                 0);
		patch_file(p, 7, "\x03", 1);
		assert_int_equal(
		    snap_load_latest_conf(f->snap, &index, &term, &conf, &out, err, sizeof(err)),
		    FLT_EVERSION);
		assert_non_null(strstr(err, "version 3"));
		free(p);
	}
	buf_release(&out);
	buf_release(&conf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_crc_vectors),
	    cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unsynced_is_lost, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_group_commit, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_overwrite, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_after_index, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_append_validation, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_torn_tail, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_torn_garbage, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_corrupt_middle, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_corrupt_non_last_segment, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rotation, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_compaction, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_version, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_snapshots, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reset_replay, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reset_torn_tail, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reset_compaction, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reset_corrupt, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_snapshot_conf, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_snapshot_writer, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_trickle, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_snapshot_spare, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_snapshot_map_checks, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
