/* WAL benchmark (not a test: it prints, never asserts): how long replaying a large log takes at
 * start-up, and what one group-committed wal_sync costs on this disk for 1 and for 100 entries.
 * Usage: wal_bench [entries (1000000)] [dir (a mktemp -d under $TMPDIR or /tmp)] */
#include "raft/wal.h"
#include "util/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int count_cb(void *ctx, const struct wal_entry *e)
{
	uint64_t *n = ctx;

	(*n) += 1 + (e->len & 0); /* touch the entry like a real consumer would */
	return 0;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return remove(p);
}

/* Drop this log's files (only them) from the page cache, to time a replay that reads the disk. */
static void evict(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;

	if (!d)
		return;
	while ((de = readdir(d))) {
		int fd = openat(dirfd(d), de->d_name, O_RDONLY | O_CLOEXEC);

		if (fd < 0)
			continue;
		fdatasync(fd);
		posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
		close(fd);
	}
	closedir(d);
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

static int die(const char *what, int r, const struct wal_recovery *rec)
{
	fprintf(stderr, "wal_bench: %s failed: %s%s%s\n", what,
	        strerror(r < 0 && r > -1000 ? -r : 0), rec && rec->error[0] ? ": " : "",
	        rec ? rec->error : "");
	return 1;
}

/* Time `iters` syncs of `batch` entries of `size` bytes each; prints median, p90, p99, max. */
static int bench_sync(const char *dir, int batch, size_t size, int iters)
{
	struct wal_recovery rec;
	struct wal *w;
	uint64_t n = 0, idx = 0;
	int64_t *t = calloc((size_t)iters, sizeof(*t));
	struct wal_entry *e = calloc((size_t)batch, sizeof(*e));
	char *data = malloc(size);
	int r;

	if (!t || !e || !data)
		return die("calloc", -ENOMEM, NULL);
	memset(data, 'x', size);
	r = wal_open(dir, 0, count_cb, &n, &rec, &w);
	if (r < 0)
		return die("wal_open", r, &rec);
	for (int i = -10; i < iters; i++) { /* 10 warm-up rounds */
		for (int k = 0; k < batch; k++)
			e[k] = (struct wal_entry){1, ++idx, WAL_ENTRY_NORMAL, data, size};
		r = wal_append(w, e, (size_t)batch);
		if (r < 0)
			return die("wal_append", r, NULL);
		int64_t t0 = flt_monotime_ns();

		r = wal_sync(w);
		if (r < 0)
			return die("wal_sync", r, NULL);
		if (i >= 0)
			t[i] = flt_monotime_ns() - t0;
	}
	qsort(t, (size_t)iters, sizeof(*t), cmp_i64);
	printf("wal_sync of %3d x %zu-byte entries: median %.3f ms, p90 %.3f ms, p99 %.3f ms, max "
	       "%.3f ms (%d syncs)\n",
	       batch, size, t[iters / 2] / 1e6, t[iters * 9 / 10] / 1e6, t[iters * 99 / 100] / 1e6,
	       t[iters - 1] / 1e6, iters);
	wal_close(w);
	free(t);
	free(e);
	free(data);
	return 0;
}

int main(int argc, char **argv)
{
	uint64_t entries = argc > 1 ? strtoull(argv[1], NULL, 10) : 1000000;
	char tmpl[4096];
	const char *tmpdir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	char *dir;
	struct wal_recovery rec;
	struct wal *w;
	uint64_t n = 0;
	char data[100];
	struct wal_entry batch[1000];
	int r;

	if (argc > 2) {
		snprintf(tmpl, sizeof(tmpl), "%s", argv[2]);
		dir = tmpl;
	} else {
		snprintf(tmpl, sizeof(tmpl), "%s/flt-wal-bench-XXXXXX", tmpdir);
		dir = mkdtemp(tmpl);
		if (!dir)
			return die("mkdtemp", -errno, NULL);
	}
	char logdir[4200], syncdir1[4200], syncdir100[4200];

	snprintf(logdir, sizeof(logdir), "%s/replay", dir);
	snprintf(syncdir1, sizeof(syncdir1), "%s/sync1", dir);
	snprintf(syncdir100, sizeof(syncdir100), "%s/sync100", dir);

	/* Replay: write `entries` entries of 100 bytes, 1000 per sync, then time opening. */
	memset(data, 'd', sizeof(data));
	r = wal_open(logdir, 0, count_cb, &n, &rec, &w);
	if (r < 0)
		return die("wal_open", r, &rec);
	int64_t t0 = flt_monotime_ns();

	for (uint64_t i = 1; i <= entries;) {
		size_t k = 0;

		for (; k < 1000 && i <= entries; k++, i++)
			batch[k] = (struct wal_entry){1 + i / 100000, i, WAL_ENTRY_NORMAL, data,
			                              sizeof(data)};
		r = wal_append(w, batch, k);
		if (r >= 0)
			r = wal_sync(w);
		if (r < 0)
			return die("write", r, NULL);
	}
	printf("wrote %" PRIu64 " entries of %zu bytes (%.1f MB of WAL) in %.2f s\n", entries,
	       sizeof(data), wal_bytes_written(w) / 1e6, (flt_monotime_ns() - t0) / 1e9);
	wal_close(w);

	for (int round = 0; round < 3; round++) {
		n = 0;
		t0 = flt_monotime_ns();
		r = wal_open(logdir, 0, count_cb, &n, &rec, &w);
		int64_t dt = flt_monotime_ns() - t0;

		if (r < 0)
			return die("wal_open", r, &rec);
		printf("open + replay of %" PRIu64 " entries (page cache warm): %.1f ms\n", n,
		       dt / 1e6);
		wal_close(w);
	}
	evict(logdir);
	n = 0;
	t0 = flt_monotime_ns();
	r = wal_open(logdir, 0, count_cb, &n, &rec, &w);
	if (r < 0)
		return die("wal_open", r, &rec);
	printf("open + replay of %" PRIu64
	       " entries (files evicted from the page cache): %.1f ms\n",
	       n, (flt_monotime_ns() - t0) / 1e6);
	wal_close(w);
	n = 0;
	t0 = flt_monotime_ns();
	r = wal_open(logdir, entries - entries / 10, count_cb, &n, &rec, &w);
	if (r < 0)
		return die("wal_open", r, &rec);
	printf("open with after_index = %" PRIu64 " (%" PRIu64 " entries handed out): %.1f ms\n",
	       entries - entries / 10, n, (flt_monotime_ns() - t0) / 1e6);
	wal_close(w);

	r = bench_sync(syncdir1, 1, 300, 300);
	if (!r)
		r = bench_sync(syncdir100, 100, 300, 300);
	if (argc <= 2)
		nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return r;
}
