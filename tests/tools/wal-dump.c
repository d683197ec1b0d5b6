/* wal-dump: print every record of a WAL directory (or of single segment files) for debugging,
 * without opening the WAL for writing: nothing is locked, repaired or truncated.
 * Usage: wal-dump [-d] DIR|FILE...   (-d: print entry data as escaped text) */
#include "util/crc32c.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Mirrors the format in src/raft/wal.c (version 1). */
enum { REC_SEGMENT = 1, REC_ENTRY = 2, REC_HARD_STATE = 3, REC_RESET = 4 };

static uint64_t le(const unsigned char *p, int n)
{
	uint64_t v = 0;

	for (int i = n - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static bool all_zero(const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

static void print_data(const unsigned char *p, size_t n)
{
	putchar(' ');
	putchar('"');
	for (size_t i = 0; i < n && i < 200; i++) {
		if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '"' && p[i] != '\\')
			putchar(p[i]);
		else
			printf("\\x%02x", p[i]);
	}
	printf(n > 200 ? "\"...\n" : "\"\n");
}

static int dump_file(const char *path, bool data)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), bad = 0;
	struct stat st;
	const unsigned char *p = NULL;
	size_t size, off = 0;

	if (fd < 0 || fstat(fd, &st) < 0) {
		fprintf(stderr, "wal-dump: cannot open '%s': %s\n", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return 1;
	}
	size = (size_t)st.st_size;
	if (size) {
		void *m = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);

		if (m == MAP_FAILED) {
			fprintf(stderr, "wal-dump: cannot map '%s': %s\n", path, strerror(errno));
			close(fd);
			return 1;
		}
		p = m;
	}
	printf("== %s (%zu bytes)\n", path, size);
	while (off < size) {
		uint32_t len, crc;

		if (size - off < 8 || (len = (uint32_t)le(p + off, 4)) == 0) {
			if (all_zero(p + off, size - off))
				printf("%10zu  end (%zu zero bytes follow)\n", off, size - off);
			else {
				printf("%10zu  BAD: no record header, non-zero bytes follow\n",
				       off);
				bad = 1;
			}
			break;
		}
		crc = (uint32_t)le(p + off + 4, 4);
		if (len > size - off - 8) {
			printf("%10zu  BAD: record of %" PRIu32 " bytes runs past the end\n", off,
			       len);
			bad = 1;
			break;
		}
		const unsigned char *r = p + off + 8;
		bool ok = crc32c(0, r, len) == crc;

		printf("%10zu  len %-6" PRIu32 " %s ", off, len, ok ? "crc ok " : "CRC BAD");
		if (r[0] == REC_SEGMENT && len == 25)
			printf("segment magic %08" PRIx64 " version %" PRIu64 " seq %" PRIu64
			       " first %" PRIu64 "\n",
			       le(r + 1, 4), le(r + 5, 4), le(r + 9, 8), le(r + 17, 8));
		else if (r[0] == REC_HARD_STATE && len == 25)
			printf("hard state term %" PRIu64 " vote %" PRIu64 " commit %" PRIu64 "\n",
			       le(r + 1, 8), le(r + 9, 8), le(r + 17, 8));
		else if (r[0] == REC_RESET && len == 17)
			printf("reset: earlier entries void, log continues after index %" PRIu64
			       " term %" PRIu64 "\n",
			       le(r + 1, 8), le(r + 9, 8));
		else if (r[0] == REC_ENTRY && len >= 18) {
			printf("entry index %" PRIu64 " term %" PRIu64 " type %u len %" PRIu32,
			       le(r + 9, 8), le(r + 1, 8), r[17], len - 18);
			if (data)
				print_data(r + 18, len - 18);
			else
				putchar('\n');
		} else
			printf("unknown record type %u\n", r[0]);
		if (!ok) {
			bad = 1;
			break;
		}
		off += 8 + (size_t)len;
	}
	if (p)
		munmap((void *)p, size);
	close(fd);
	return bad;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int dump_dir(const char *dir, bool data)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char **v = NULL;
	size_t n = 0;
	int bad = 0;

	if (!d) {
		fprintf(stderr, "wal-dump: cannot list '%s': %s\n", dir, strerror(errno));
		return 1;
	}
	while ((de = readdir(d))) {
		size_t l = strlen(de->d_name);
		char **nv;
		char *path;

		if (l < 5 || strcmp(de->d_name + l - 4, ".wal"))
			continue;
		nv = realloc(v, (n + 1) * sizeof(*v));
		path = malloc(strlen(dir) + l + 2);
		if (!nv || !path) {
			fprintf(stderr, "wal-dump: out of memory\n");
			free(path);
			free(nv ? nv : v);
			closedir(d);
			return 1;
		}
		v = nv;
		memcpy(path, dir, strlen(dir));
		path[strlen(dir)] = '/';
		memcpy(path + strlen(dir) + 1, de->d_name, l + 1);
		v[n++] = path;
	}
	closedir(d);
	if (n)
		qsort(v, n, sizeof(*v), cmp_str);
	for (size_t i = 0; i < n; i++) {
		bad |= dump_file(v[i], data);
		free(v[i]);
	}
	free(v);
	return bad;
}

int main(int argc, char **argv)
{
	bool data = false;
	int bad = 0, i = 1;
	struct stat st;

	if (argc > 1 && strcmp(argv[1], "-d") == 0) {
		data = true;
		i++;
	}
	if (i >= argc) {
		fprintf(stderr, "usage: wal-dump [-d] DIR|FILE...\n");
		return 2;
	}
	for (; i < argc; i++) {
		if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode))
			bad |= dump_dir(argv[i], data);
		else
			bad |= dump_file(argv[i], data);
	}
	return bad;
}
