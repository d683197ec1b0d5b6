/* Snapshot files (see wal.h): one file per snapshot with its Raft configuration, made durable by
 * temp file + fsync + rename + directory fsync, checked by crc32c on load. The newest one must be
 * intact: the WAL may already be compacted past an older one, so falling back would silently lose
 * entries. */
#include "raft/wal.h"

#include "util/buf.h"
#include "util/crc32c.h"
#include "util/err.h"
#include "util/fs.h"
#include "util/le.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* [8-byte magic, last byte the format version][u32 crc of the rest][u64 index][u64 term]
 * then, from version 2 on, [u32 conf_len][conf]; then [data]. Version 1 (no conf) is still read,
 * so a data directory written before the Raft configuration was kept stays usable. */
static const unsigned char snap_magic[8] = {'F', 'L', 'O', 'T', 'S', 'N', 'P', 2};
#define SNAP_V1       1
#define SNAP_V2       2
#define SNAP_HDR      28 /* common to both versions */
#define SNAP_CONF_HDR 4  /* version 2's u32 conf_len */
#define SNAP_NAME_LEN 38 /* <term:016x>-<index:016x>.snap */
#define SNAP_KEEP     2
/* A background save does not delete the file it replaces but keeps it as the spare the next
 * background save overwrites in place: allocating 30 MB and freeing 30 MB per snapshot made
 * the journal commits of every other file's fdatasync wait (ext4, ordered mode, `discard`).
 * Never a file the daemon has mapped: snap_map_latest holds a shared flock on it. */
#define SNAP_SPARE "spare.tmp"

struct snap_name {
	uint64_t term, index;
};

static int snap_err(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int snap_err(char *err, size_t errlen, int code, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return code;
}

static int fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), r = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		r = -errno;
	close(fd);
	return r;
}

static bool parse_snap_name(const char *n, size_t l, struct snap_name *ret)
{
	return l == SNAP_NAME_LEN && n[16] == '-' && memcmp(n + 33, ".snap", 5) == 0 &&
	       fs_parse_hex16(n, &ret->term) && fs_parse_hex16(n + 17, &ret->index);
}

static int name_cmp_desc(const void *a, const void *b)
{
	const struct snap_name *x = a, *y = b;

	if (x->index != y->index)
		return x->index > y->index ? -1 : 1;
	if (x->term != y->term)
		return x->term > y->term ? -1 : 1;
	return 0;
}

static char *snap_path(const char *dir, const struct snap_name *s, const char *suffix)
{
	struct buf b = BUF_INIT;

	if (buf_printf(&b, "%s/%016" PRIx64 "-%016" PRIx64 ".snap%s", dir, s->term, s->index,
	               suffix) < 0) {
		buf_release(&b);
		return NULL;
	}
	return buf_steal(&b);
}

/* The snapshots in `dir`, newest first (owned array in *ret). Stray temp files of interrupted
 * saves are removed when `clean_tmp`. Returns the count or -errno (-ENOENT: no directory). */
static int list_snaps(const char *dir, bool clean_tmp, struct snap_name **ret)
{
	DIR *d = opendir(dir);
	struct snap_name *v = NULL, s;
	size_t n = 0, cap = 0;
	struct dirent *de;
	int r = 0;

	if (!d)
		return -errno;
	for (;;) {
		size_t l;

		errno = 0;
		de = readdir(d);
		if (!de) {
			r = errno ? -errno : 0;
			break;
		}
		l = strlen(de->d_name);
		if (clean_tmp && l == SNAP_NAME_LEN + 4 &&
		    strcmp(de->d_name + SNAP_NAME_LEN, ".tmp") == 0 &&
		    parse_snap_name(de->d_name, SNAP_NAME_LEN, &s)) {
			unlinkat(dirfd(d), de->d_name, 0); /* best effort: only wasted space */
			continue;
		}
		if (!parse_snap_name(de->d_name, l, &s))
			continue;
		if (n == cap) {
			struct snap_name *nv;

			cap = cap ? cap * 2 : 8;
			nv = realloc(v, cap * sizeof(*v));
			if (!nv) {
				r = -ENOMEM;
				break;
			}
			v = nv;
		}
		v[n++] = s;
	}
	closedir(d);
	if (r < 0 || n > INT32_MAX) {
		free(v);
		return r < 0 ? r : -EOVERFLOW;
	}
	if (n)
		qsort(v, n, sizeof(*v), name_cmp_desc);
	*ret = v;
	return (int)n;
}

static char *snap_spare_path(const char *dir)
{
	struct buf b = BUF_INIT;

	if (buf_printf(&b, "%s/%s", dir, SNAP_SPARE) < 0) {
		buf_release(&b);
		return NULL;
	}
	return buf_steal(&b);
}

/* A snapshot a background save replaced: the spare when there is none yet, else deleted a piece
 * at a time. One the daemon has mapped (its flock, snap_map_latest) is only unlinked: truncating
 * it would pull the pages from under the mapping (SIGBUS); its blocks go when it is unmapped. */
static void release_old(const char *old, const char *spare, bool *spare_made)
{
	int fd = open(old, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return;
	if (flock(fd, LOCK_EX | LOCK_NB) < 0)
		unlink(old);
	else if (!*spare_made && access(spare, F_OK) < 0 && errno == ENOENT &&
	         rename(old, spare) == 0)
		*spare_made = true;
	else
		(void)fs_unlink_trickle(AT_FDCWD, old);
	close(fd);
}

int snap_save_conf(const char *dir, uint64_t index, uint64_t term, const void *conf,
                   size_t conf_len, const void *data, size_t len, bool background)
{
	struct snap_name s = {term, index}, *all = NULL;
	char *tmp = NULL, *path = NULL, *spare = NULL;
	bool spare_made = false;
	struct stat st;
	unsigned char h[SNAP_HDR + SNAP_CONF_HDR];
	uint32_t crc;
	int fd = -1, r, n;

	if (conf_len > UINT32_MAX)
		return FLT_ETOOBIG;
	r = fs_mkdir_p(dir, 0700);
	if (r < 0)
		return r;
	tmp = snap_path(dir, &s, ".tmp");
	path = snap_path(dir, &s, "");
	if (!tmp || !path) {
		r = -ENOMEM;
		goto out;
	}
	memcpy(h, snap_magic, sizeof(snap_magic));
	put_le64(h + 12, index);
	put_le64(h + 20, term);
	for (int i = 0; i < 4; i++)
		h[SNAP_HDR + i] = (unsigned char)(conf_len >> (8 * i));
	crc = crc32c(0, h + 12, sizeof(h) - 12);
	if (conf_len)
		crc = crc32c(crc, conf, conf_len);
	if (len)
		crc = crc32c(crc, data, len);
	for (int i = 0; i < 4; i++)
		h[8 + i] = (unsigned char)(crc >> (8 * i));

	if (background && (spare = snap_spare_path(dir)) && rename(spare, tmp) == 0)
		fd = open(tmp, O_WRONLY | O_CLOEXEC); /* never O_TRUNC: that frees */
	else
		fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		r = -errno;
		goto out;
	}
	r = fs_write_all(fd, h, sizeof(h));
	if (r >= 0 && conf_len)
		r = fs_write_all(fd, conf, conf_len);
	if (r >= 0 && len)
		r = fs_write_trickle(fd, data, len);
	/* A spare larger than this snapshot (the store shrank) loses its tail. */
	if (r >= 0 && fstat(fd, &st) == 0 && (uint64_t)st.st_size > sizeof(h) + conf_len + len &&
	    ftruncate(fd, (off_t)(sizeof(h) + conf_len + len)) < 0)
		r = -errno;
	if (r >= 0 && fsync(fd) < 0)
		r = -errno;
	if (close(fd) < 0 && r >= 0)
		r = -errno;
	fd = -1;
	if (r >= 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r < 0) {
		unlink(tmp);
		goto out;
	}
	r = fsync_dir(dir);
	if (r < 0)
		goto out;

	/* Keep the two newest: the previous one is kept for inspection, not as a fallback. */
	n = list_snaps(dir, true, &all);
	for (int i = SNAP_KEEP; i < n; i++) {
		char *old = snap_path(dir, &all[i], "");

		/* Best effort: a leftover only costs space. */
		if (old && background && spare)
			release_old(old, spare, &spare_made);
		else if (old)
			unlink(old);
		free(old);
	}
	free(all);
	r = 0;
out:
	if (fd >= 0)
		close(fd);
	free(tmp);
	free(path);
	free(spare);
	return r;
}

int snap_save(const char *dir, uint64_t index, uint64_t term, const void *data, size_t len)
{
	return snap_save_conf(dir, index, term, NULL, 0, data, len, false);
}

int snap_map_latest(const char *dir, bool check_crc, struct snap_map *ret, char *err, size_t errlen)
{
	struct snap_name *all = NULL;
	const unsigned char *h;
	char *path = NULL;
	struct stat st;
	uint64_t size, hlen = SNAP_HDR, clen = 0;
	void *base = MAP_FAILED;
	uint32_t crc = 0;
	int fd = -1, n, r;

	n = list_snaps(dir, false, &all);
	if (n == -ENOENT)
		return 0;
	if (n < 0)
		return snap_err(err, errlen, n, "cannot list '%s': %s", dir, strerror(-n));
	if (n == 0) {
		free(all);
		return 0;
	}
	path = snap_path(dir, &all[0], "");
	if (!path) {
		r = snap_err(err, errlen, -ENOMEM, "out of memory loading a snapshot from '%s'",
		             dir);
		goto out;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		r = snap_err(err, errlen, -errno, "cannot open '%s': %s", path, strerror(errno));
		goto out;
	}
	size = (uint64_t)st.st_size;
	if (size < SNAP_HDR) {
		r = snap_err(err, errlen, FLT_ECORRUPT,
		             "file '%s': too short for a snapshot (%" PRIu64 " bytes)", path, size);
		goto out;
	}
	if (size > SIZE_MAX) {
		r = snap_err(err, errlen, FLT_ETOOBIG, "file '%s': too large", path);
		goto out;
	}
	/* Mapped, not read: the store parses it in place and the Raft core borrows the data
	 * for followers (raft_compact_borrow) without a copy of its own. Populated in one go
	 * when the checksum is going to read all of it anyway (one fault per page is slower). */
	base = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE | (check_crc ? MAP_POPULATE : 0), fd,
	            0);
	if (base == MAP_FAILED) {
		r = snap_err(err, errlen, -errno, "cannot map '%s': %s", path, strerror(errno));
		goto out;
	}
	h = base;
	if (memcmp(h, snap_magic, sizeof(snap_magic) - 1) != 0) {
		r = snap_err(err, errlen, FLT_ECORRUPT,
		             "file '%s': not a flotilla snapshot (bad magic)", path);
		goto out;
	}
	if (h[7] != SNAP_V1 && h[7] != SNAP_V2) {
		r = snap_err(err, errlen, FLT_EVERSION,
		             "file '%s': snapshot format version %u is not supported (this build "
		             "reads versions %u and %u)",
		             path, h[7], SNAP_V1, SNAP_V2);
		goto out;
	}
	if (h[7] == SNAP_V2) {
		hlen += SNAP_CONF_HDR;
		if (size < hlen) {
			r = snap_err(err, errlen, FLT_ECORRUPT,
			             "file '%s': too short for a snapshot (%" PRIu64 " bytes)",
			             path, size);
			goto out;
		}
		clen = get_le32(h + SNAP_HDR);
		if (clen > size - hlen) {
			r = snap_err(err, errlen, FLT_ECORRUPT,
			             "file '%s': configuration of %" PRIu64
			             " bytes runs past the end of the file (%" PRIu64 " bytes)",
			             path, clen, size);
			goto out;
		}
	}
	if (check_crc)
		crc = crc32c(0, h + 12, (size_t)size - 12);
	if (check_crc && crc != get_le32(h + 8)) {
		r = snap_err(err, errlen, FLT_ECORRUPT, "file '%s': checksum mismatch", path);
		goto out;
	}
	if (get_le64(h + 12) != all[0].index || get_le64(h + 20) != all[0].term) {
		r = snap_err(err, errlen, FLT_ECORRUPT,
		             "file '%s': contents are of index %" PRIu64 " term %" PRIu64
		             ", the name disagrees",
		             path, get_le64(h + 12), get_le64(h + 20));
		goto out;
	}
	/* Held while mapped: a background save must not make this file its spare (make_spare). */
	if (flock(fd, LOCK_SH | LOCK_NB) < 0) {
		r = snap_err(err, errlen, -errno, "cannot lock '%s': %s", path, strerror(errno));
		goto out;
	}
	*ret = (struct snap_map){.base = base,
	                         .fd = fd,
	                         .size = (size_t)size,
	                         .index = all[0].index,
	                         .term = all[0].term,
	                         .conf = h + hlen,
	                         .conf_len = (size_t)clen,
	                         .data = h + hlen + clen,
	                         .len = (size_t)(size - hlen - clen)};
	base = MAP_FAILED;
	fd = -1;
	r = 1;
out:
	if (base != MAP_FAILED)
		munmap(base, (size_t)size);
	if (fd >= 0)
		close(fd);
	free(path);
	free(all);
	return r;
}

void snap_unmap(struct snap_map *m)
{
	if (m->base) {
		munmap(m->base, m->size);
		close(m->fd);
	}
	*m = (struct snap_map){0};
}

void snap_map_drop_pages(const struct snap_map *m)
{
	/* Clean file pages: dropping them from our page tables costs nothing (the page cache
	 * keeps them) and keeps them out of our RSS until a follower needs the bytes again. */
	if (m->base)
		(void)madvise(m->base, m->size, MADV_DONTNEED);
}

int snap_load_latest_conf(const char *dir, uint64_t *ret_index, uint64_t *ret_term,
                          struct buf *ret_conf, struct buf *out, char *err, size_t errlen)
{
	struct buf conf = BUF_INIT, data = BUF_INIT;
	struct snap_map m;
	int r;

	r = snap_map_latest(dir, true, &m, err, errlen);
	if (r <= 0)
		return r;
	if (buf_append(&conf, m.conf, m.conf_len) < 0 || buf_append(&data, m.data, m.len) < 0 ||
	    buf_reserve(&data, 1) < 0) {
		r = snap_err(err, errlen, -ENOMEM, "out of memory loading a snapshot from '%s'",
		             dir);
		goto out;
	}
	data.data[data.len] = '\0';
	*ret_index = m.index;
	*ret_term = m.term;
	if (ret_conf) {
		buf_release(ret_conf);
		*ret_conf = conf;
		conf = (struct buf)BUF_INIT;
	}
	buf_release(out);
	*out = data;
	data = (struct buf)BUF_INIT;
	r = 1;
out:
	snap_unmap(&m);
	buf_release(&conf);
	buf_release(&data);
	return r;
}

int snap_load_latest(const char *dir, uint64_t *ret_index, uint64_t *ret_term, struct buf *out,
                     char *err, size_t errlen)
{
	return snap_load_latest_conf(dir, ret_index, ret_term, NULL, out, err, errlen);
}
