/* Write-ahead log (see wal.h): segment files of crc32c-framed records, group commit into a
 * preallocated segment, and a two-pass replay (validate and index everything, then hand out the
 * surviving entries) that repairs a torn tail, honours reset records (a snapshot installed from the
 * leader voids the log before it) and refuses any other damage. */
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

/* On-disk format, version 1. Every record: [u32 len][u32 crc32c][u8 type][payload], len counting
 * type + payload (so a zero len never occurs and marks the zero-filled, preallocated tail). */
#define WAL_MAGIC            0x4c415746u /* "FWAL" read as little-endian */
#define WAL_VERSION          1u
#define REC_HDR              8
#define REC_SEGMENT          1 /* first record of every file: magic, version, seq, first index */
#define REC_ENTRY            2 /* u64 term, u64 index, u8 entry type, data */
#define REC_HARD_STATE       3 /* u64 term, u64 vote, u64 commit */
#define REC_RESET            4 /* u64 index, u64 term: every earlier entry is void (wal_reset) */
#define SEG_PAYLOAD          24
#define ENTRY_FIXED          17
#define HS_PAYLOAD           24
#define RESET_PAYLOAD        16
#define MAX_DATA             ((size_t)UINT32_MAX - 1 - ENTRY_FIXED)
#define DEFAULT_SEGMENT_SIZE ((size_t)64 << 20)
#define NAME_LEN             37 /* <seq:016x>-<first:016x>.wal */
/* Segments the snapshots made obsolete are recycled rather than deleted (wal_release_covered):
 * renamed to RECYCLE_NAME, zeroed in place, renamed to a free spare name, then taken by the next
 * create_segment. Only a spare is ever taken: a recycling file may still hold old records. Two
 * spares: a snapshot often covers one segment and a bit, and under a steady load rotations take
 * as many as snapshots release. */
#define RECYCLE_NAME "recycle.tmp"
#define SPARES       2
static const char *const spare_names[SPARES] = {"spare-0.tmp", "spare-1.tmp"};

struct wal_segment {
	uint64_t seq;
	uint64_t first_index; /* from the name: what the log's next index was when it was made */
	/* Largest index of a live entry (or reset) in it (0: none); compaction reads it. A durable
	 * reset at index i voids everything before it: earlier files drop to at most i, its own
	 * file to i plus what follows it. */
	uint64_t max_index;
};

struct wal {
	char *dir;
	int dir_fd;          /* held open: it carries the flock and serves directory fsyncs */
	int fd;              /* the last segment, where appends go */
	uint64_t write_off;  /* end of the last record in it */
	uint64_t seg_start;  /* end of the records rotation put at its head */
	uint64_t alloc_size; /* its file size (preallocated beyond write_off) */
	bool prealloc_tried;
	struct wal_segment *segs;
	size_t nsegs, segs_cap;

	struct buf pending; /* encoded records not yet written */
	uint64_t pending_first, pending_max;
	bool pending_reset;           /* a reset record is among them */
	uint64_t pending_reset_index; /* the last one's index */

	uint64_t last_index, last_term;
	uint64_t base; /* entries <= base are covered by a durable snapshot */
	struct wal_hard_state hs, hs_synced;
	size_t segment_size;
	uint64_t bytes_written;
	int failed; /* sticky: after a failed write or fdatasync the file state is unknown */
};

uint32_t wal_crc32c(uint32_t crc, const void *data, size_t len)
{
	return crc32c(crc, data, len);
}

static int rec_err(struct wal_recovery *rec, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int rec_err(struct wal_recovery *rec, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(rec->error, sizeof(rec->error), fmt, ap);
	va_end(ap);
	return code;
}

static bool all_zero(const unsigned char *p, size_t n)
{
	while (n && ((uintptr_t)p & 7)) {
		if (*p++)
			return false;
		n--;
	}
	for (; n >= 8; p += 8, n -= 8) {
		uint64_t v;

		memcpy(&v, p, 8);
		if (v)
			return false;
	}
	while (n--)
		if (*p++)
			return false;
	return true;
}

static char *seg_path(const struct wal *w, uint64_t seq, uint64_t first, const char *suffix)
{
	struct buf b = BUF_INIT;

	if (buf_printf(&b, "%s/%016" PRIx64 "-%016" PRIx64 ".wal%s", w->dir, seq, first, suffix) <
	    0) {
		buf_release(&b);
		return NULL;
	}
	return buf_steal(&b);
}

/* "<seq:016x>-<first:016x>.wal" exactly; anything else in the directory is not ours. */
static bool parse_name(const char *n, uint64_t *seq, uint64_t *first)
{
	return n[16] == '-' && memcmp(n + 33, ".wal", 4) == 0 && fs_parse_hex16(n, seq) &&
	       fs_parse_hex16(n + 17, first);
}

static int seg_cmp(const void *a, const void *b)
{
	const struct wal_segment *x = a, *y = b;

	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int segs_reserve(struct wal *w, size_t extra)
{
	size_t cap;
	struct wal_segment *s;

	if (w->nsegs + extra <= w->segs_cap)
		return 0;
	cap = w->segs_cap ? w->segs_cap * 2 : 8;
	while (cap < w->nsegs + extra)
		cap *= 2;
	s = realloc(w->segs, cap * sizeof(*s));
	if (!s)
		return -ENOMEM;
	w->segs = s;
	w->segs_cap = cap;
	return 0;
}

/* Collect the segment files in sequence order and remove the leftovers of an interrupted
 * rotation (never-renamed temp files hold nothing that was acknowledged). */
static int list_segments(struct wal *w, struct wal_recovery *rec)
{
	DIR *d = opendir(w->dir);
	struct dirent *de;
	int r = 0;

	if (!d)
		return rec_err(rec, -errno, "cannot list '%s': %s", w->dir, strerror(errno));
	for (;;) {
		const char *n;
		size_t l;
		uint64_t seq, first;

		errno = 0;
		de = readdir(d);
		if (!de) {
			if (errno)
				r = rec_err(rec, -errno, "cannot list '%s': %s", w->dir,
				            strerror(errno));
			break;
		}
		n = de->d_name;
		l = strlen(n);
		if (l == NAME_LEN + 4 && strcmp(n + NAME_LEN, ".tmp") == 0 &&
		    parse_name(n, &seq, &first)) {
			if (unlinkat(dirfd(d), n, 0) < 0 && errno != ENOENT) {
				r = rec_err(rec, -errno, "cannot remove '%s/%s': %s", w->dir, n,
				            strerror(errno));
				break;
			}
			continue;
		}
		if (l != NAME_LEN || !parse_name(n, &seq, &first))
			continue;
		r = segs_reserve(w, 1);
		if (r < 0)
			break;
		w->segs[w->nsegs++] = (struct wal_segment){seq, first, 0};
	}
	closedir(d);
	if (r < 0)
		return r;
	if (w->nsegs)
		qsort(w->segs, w->nsegs, sizeof(*w->segs), seg_cmp);
	/* Compaction removes a prefix only, so a hole in the sequence is a lost file. */
	for (size_t i = 1; i < w->nsegs; i++) {
		if (w->segs[i].seq != w->segs[i - 1].seq + 1)
			return rec_err(rec, FLT_ECORRUPT,
			               "directory '%s': segment %016" PRIx64
			               " is missing (found %016" PRIx64 " then %016" PRIx64 ")",
			               w->dir, w->segs[i - 1].seq + 1, w->segs[i - 1].seq,
			               w->segs[i].seq);
	}
	return 0;
}

static int put_record_header(struct buf *b, uint8_t type, const unsigned char *payload, size_t plen,
                             const void *data, size_t dlen)
{
	unsigned char h[REC_HDR + 1];
	uint32_t crc;
	int r = buf_reserve(b, REC_HDR + 1 + plen + dlen);

	if (r < 0)
		return r;
	h[REC_HDR] = type;
	crc = crc32c(0, &h[REC_HDR], 1);
	crc = crc32c(crc, payload, plen);
	if (dlen)
		crc = crc32c(crc, data, dlen);
	put_le32(h, (uint32_t)(1 + plen + dlen));
	put_le32(h + 4, crc);
	/* Room was reserved above: these appends cannot fail. */
	buf_append(b, h, sizeof(h));
	buf_append(b, payload, plen);
	if (dlen)
		buf_append(b, data, dlen);
	return 0;
}

static int put_hard_state(struct buf *b, const struct wal_hard_state *hs)
{
	unsigned char p[HS_PAYLOAD];

	put_le64(p, hs->term);
	put_le64(p + 8, hs->vote);
	put_le64(p + 16, hs->commit);
	return put_record_header(b, REC_HARD_STATE, p, sizeof(p), NULL, 0);
}

static bool hs_zero(const struct wal_hard_state *hs)
{
	return !hs->term && !hs->vote && !hs->commit;
}

/* A new segment appears whole or not at all: header (and the latest durable hard state, so that
 * compaction can drop every older file) written to a temp file, preallocated, fsynced, renamed,
 * directory fsynced. */
static int create_segment(struct wal *w, uint64_t seq, uint64_t first, int *ret_fd,
                          uint64_t *ret_size, uint64_t *ret_len, struct wal_recovery *rec)
{
	char *tmp = seg_path(w, seq, first, ".tmp"), *path = seg_path(w, seq, first, "");
	struct buf b = BUF_INIT;
	unsigned char h[SEG_PAYLOAD];
	uint64_t size;
	int fd = -1, r;

	if (!tmp || !path) {
		r = -ENOMEM;
		goto out;
	}
	put_le32(h, WAL_MAGIC);
	put_le32(h + 4, WAL_VERSION);
	put_le64(h + 8, seq);
	put_le64(h + 16, first);
	r = put_record_header(&b, REC_SEGMENT, h, sizeof(h), NULL, 0);
	if (r >= 0 && !hs_zero(&w->hs_synced))
		r = put_hard_state(&b, &w->hs_synced);
	if (r < 0)
		goto out;
	/* A spare comes with its blocks: nothing to allocate now, and they are not freed at the
	 * end either (that is what stalls the disk, see wal_release_covered). Never truncated:
	 * truncating frees. Its zeros read as the clean end of the records. */
	fd = -1;
	for (int i = 0; i < SPARES && fd < 0; i++)
		if (renameat(w->dir_fd, spare_names[i], AT_FDCWD, tmp) == 0)
			fd = open(tmp, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		r = -errno;
		goto fail;
	}
	size = b.len;
	/* Preallocation lets later fdatasyncs skip the size update; not every filesystem can. */
	if (w->segment_size > b.len && fallocate(fd, 0, 0, (off_t)w->segment_size) == 0)
		size = w->segment_size;
	r = fs_pwrite_all(fd, b.data, b.len, 0);
	if (r < 0)
		goto fail;
	if (fsync(fd) < 0 || rename(tmp, path) < 0 || fsync(w->dir_fd) < 0) {
		r = -errno;
		goto fail;
	}
	*ret_fd = fd;
	*ret_size = size;
	*ret_len = b.len;
	fd = -1;
	goto out;
fail:
	rec_err(rec, r, "cannot create segment '%s': %s", path, strerror(-r));
	if (fd >= 0)
		unlink(tmp);
out:
	if (fd >= 0)
		close(fd);
	buf_release(&b);
	free(tmp);
	free(path);
	return r;
}

/* ---- replay ---- */

struct seg_map {
	int fd;
	const unsigned char *p; /* the file up to the end of its data, read-only */
	size_t size; /* mapped (and parsed) length; the rest of the file reads as zeros */
	uint64_t file_size;
	char *path;
};

/* Where a surviving entry is; its index is implied by its position. */
struct loc {
	uint64_t off;
	uint32_t seg;
	uint32_t len; /* the record's len field */
};

struct replay {
	struct wal *w;
	struct wal_recovery *rec;
	uint64_t after;
	struct seg_map *maps;
	size_t nmaps;
	struct loc *locs; /* entries with index > after, contiguous from loc_first */
	size_t nlocs, locs_cap;
	uint64_t loc_first;
	uint64_t first, last, last_term;
	/* A break in the log's continuity matters only if a later reset does not void it: the
	 * first one is kept here (message in rec->error) and reported once replay is done. */
	int gap_err;
	bool reset;     /* a reset record was replayed; floor is its index */
	uint64_t floor; /* entries after the reset must be above it */
	size_t reset_seg;
	uint64_t reset_off;
};

static void vcorrupt(struct replay *rp, size_t seg, uint64_t off, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));
static void vcorrupt(struct replay *rp, size_t seg, uint64_t off, const char *fmt, va_list ap)
{
	struct wal_recovery *rec = rp->rec;
	int n;

	n = snprintf(rec->error, sizeof(rec->error), "file '%s' offset %" PRIu64 ": ",
	             rp->maps[seg].path, off);
	if (n >= 0 && (size_t)n < sizeof(rec->error))
		vsnprintf(rec->error + n, sizeof(rec->error) - (size_t)n, fmt, ap);
}

static int corrupt(struct replay *rp, size_t seg, uint64_t off, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int corrupt(struct replay *rp, size_t seg, uint64_t off, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vcorrupt(rp, seg, off, fmt, ap);
	va_end(ap);
	return FLT_ECORRUPT;
}

/* Missing entries: fatal at the end of replay unless a later reset voids the entries around the
 * hole (a file that starts with entries written before a reset need not follow the snapshot). */
static void gap(struct replay *rp, size_t seg, uint64_t off, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void gap(struct replay *rp, size_t seg, uint64_t off, const char *fmt, ...)
{
	va_list ap;

	if (rp->gap_err)
		return;
	va_start(ap, fmt);
	vcorrupt(rp, seg, off, fmt, ap);
	va_end(ap);
	rp->gap_err = FLT_ECORRUPT;
}

static int push_loc(struct replay *rp, struct loc l)
{
	if (rp->nlocs == rp->locs_cap) {
		size_t cap = rp->locs_cap ? rp->locs_cap * 2 : 1024;
		struct loc *n;

		if (cap > SIZE_MAX / sizeof(*n))
			return -ENOMEM;
		n = realloc(rp->locs, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		rp->locs = n;
		rp->locs_cap = cap;
	}
	rp->locs[rp->nlocs++] = l;
	return 0;
}

static int apply_entry(struct replay *rp, size_t seg, uint64_t off, const unsigned char *pl,
                       uint32_t len)
{
	uint64_t term = get_le64(pl), index = get_le64(pl + 8);
	uint8_t type = pl[16];

	if (type > WAL_ENTRY_CONF)
		return corrupt(rp, seg, off, "entry %" PRIu64 " has unknown type %u", index, type);
	if (index == 0)
		return corrupt(rp, seg, off, "entry with index 0");
	if (rp->reset && index <= rp->floor)
		return corrupt(rp, seg, off,
		               "entry %" PRIu64 " after a reset of the log to index %" PRIu64,
		               index, rp->floor);
	if (rp->last == 0) {
		/* Compaction keeps every entry after a durable snapshot: the log must start
		 * right after the snapshot the caller loaded, or entries were lost. */
		if (index > rp->after + 1)
			gap(rp, seg, off,
			    "log starts at index %" PRIu64 " but the snapshot ends at %" PRIu64
			    ": entries %" PRIu64 "..%" PRIu64 " are missing",
			    index, rp->after, rp->after + 1, index - 1);
		rp->first = index;
	} else if (index > rp->last + 1) {
		/* Allowed only over a range a snapshot covers (the log restarts after an
		 * installed snapshot). */
		if (index - 1 > rp->after)
			gap(rp, seg, off,
			    "entry %" PRIu64 " does not follow entry %" PRIu64 " (gap)", index,
			    rp->last);
		rp->first = index;
	} else if (index < rp->first) {
		rp->first = index;
	}
	/* The overwrite rule: this entry discards every earlier one at index >= its own. */
	if (index > rp->after) {
		if (rp->nlocs && index <= rp->loc_first)
			rp->nlocs = 0;
		else if (rp->nlocs && index < rp->loc_first + rp->nlocs)
			rp->nlocs = (size_t)(index - rp->loc_first);
		if (!rp->nlocs)
			rp->loc_first = index;
		int r = push_loc(rp, (struct loc){off, (uint32_t)seg, len});

		if (r < 0)
			return rec_err(rp->rec, r, "out of memory replaying the log");
	} else {
		rp->nlocs = 0;
	}
	rp->last = index;
	rp->last_term = term;
	if (index > rp->w->segs[seg].max_index)
		rp->w->segs[seg].max_index = index;
	return 0;
}

/* A snapshot from the leader replaced the log: everything before this record is void. */
static int apply_reset(struct replay *rp, size_t seg, uint64_t off, const unsigned char *pl)
{
	uint64_t index = get_le64(pl), term = get_le64(pl + 8);

	if (!index || !term)
		return corrupt(rp, seg, off,
		               "reset record with index %" PRIu64 " term %" PRIu64 " (zero)", index,
		               term);
	rp->nlocs = 0;
	rp->first = index + 1;
	rp->last = index;
	rp->last_term = term;
	rp->reset = true;
	rp->floor = index;
	rp->reset_seg = seg;
	rp->reset_off = off;
	rp->rec->reset_index = index;
	rp->rec->reset_term = term;
	if (rp->gap_err) {
		rp->gap_err = 0;
		rp->rec->error[0] = '\0';
	}
	for (size_t k = 0; k < seg; k++)
		if (rp->w->segs[k].max_index > index)
			rp->w->segs[k].max_index = index;
	rp->w->segs[seg].max_index = index;
	return 0;
}

/* A record whose checksum already matched. Damage found here is never a torn write. */
static int apply_record(struct replay *rp, size_t seg, uint64_t off, const unsigned char *r,
                        uint32_t len)
{
	uint8_t type = r[0];
	const unsigned char *pl = r + 1;
	uint32_t plen = len - 1;

	if (off == 0) {
		if (type != REC_SEGMENT || plen != SEG_PAYLOAD)
			return corrupt(rp, seg, off, "no segment header");
		if (get_le32(pl) != WAL_MAGIC)
			return corrupt(rp, seg, off, "not a flotilla WAL segment (bad magic)");
		if (get_le32(pl + 4) != WAL_VERSION)
			return rec_err(rp->rec, FLT_EVERSION,
			               "file '%s': WAL format version %" PRIu32
			               " is not supported (this build reads version %u)",
			               rp->maps[seg].path, get_le32(pl + 4), WAL_VERSION);
		if (get_le64(pl + 8) != rp->w->segs[seg].seq)
			return corrupt(rp, seg, off,
			               "header says segment %016" PRIx64 ", the name disagrees",
			               get_le64(pl + 8));
		return 0;
	}
	switch (type) {
	case REC_ENTRY:
		if (plen < ENTRY_FIXED)
			return corrupt(rp, seg, off, "entry record too short (%" PRIu32 " bytes)",
			               plen);
		return apply_entry(rp, seg, off, pl, len);
	case REC_HARD_STATE:
		if (plen != HS_PAYLOAD)
			return corrupt(rp, seg, off, "hard state record of %" PRIu32 " bytes",
			               plen);
		rp->rec->hs.term = get_le64(pl);
		rp->rec->hs.vote = get_le64(pl + 8);
		rp->rec->hs.commit = get_le64(pl + 16);
		return 0;
	case REC_RESET:
		if (plen != RESET_PAYLOAD)
			return corrupt(rp, seg, off, "reset record of %" PRIu32 " bytes", plen);
		return apply_reset(rp, seg, off, pl);
	case REC_SEGMENT:
		return corrupt(rp, seg, off, "segment header in the middle of a segment");
	default:
		return corrupt(rp, seg, off, "unknown record type %u", type);
	}
}

/* Could a whole, valid record start at q? Used only after a bad record, to tell a torn tail
 * (nothing valid after it) from damage in the middle of the log. */
static bool valid_record_at(const unsigned char *p, size_t size, size_t q)
{
	uint32_t len;
	const unsigned char *r;

	if (size - q < REC_HDR + 1)
		return false;
	len = get_le32(p + q);
	if (len < 1 || len > size - q - REC_HDR)
		return false;
	r = p + q + REC_HDR;
	switch (r[0]) {
	case REC_SEGMENT:
		if (len != 1 + SEG_PAYLOAD || get_le32(r + 1) != WAL_MAGIC)
			return false;
		break;
	case REC_HARD_STATE:
		if (len != 1 + HS_PAYLOAD)
			return false;
		break;
	case REC_RESET:
		if (len != 1 + RESET_PAYLOAD)
			return false;
		break;
	case REC_ENTRY:
		if (len < 1 + ENTRY_FIXED || r[1 + 16] > WAL_ENTRY_CONF)
			return false;
		break;
	default:
		return false;
	}
	return crc32c(0, r, len) == get_le32(p + q + 4);
}

static bool valid_record_after(const unsigned char *p, size_t size, size_t off)
{
	size_t end = size;

	while (end > off && !p[end - 1])
		end--;
	for (size_t q = off + 1; q < end; q++)
		if (valid_record_at(p, size, q))
			return true;
	return false;
}

/* Parse one segment; *ret_end is where its good records end. */
static int replay_segment(struct replay *rp, size_t seg, uint64_t *ret_end, bool *ret_torn)
{
	const struct seg_map *m = &rp->maps[seg];
	const unsigned char *p = m->p;
	size_t size = m->size, off = 0;
	bool last = seg == rp->nmaps - 1;
	const char *why;
	int r;

	if (!size)
		return corrupt(rp, seg, 0, "empty segment (no header)");
	for (;;) {
		size_t rest = size - off;
		uint32_t len;

		if (rest < REC_HDR) {
			if (all_zero(p + off, rest))
				break;
			why = "truncated record header";
			goto bad;
		}
		len = get_le32(p + off);
		if (len == 0) {
			if (all_zero(p + off, rest))
				break;
			why = "zero record length followed by data";
			goto bad;
		}
		if (len > rest - REC_HDR) {
			why = "record runs past the end of the file";
			goto bad;
		}
		if (crc32c(0, p + off + REC_HDR, len) != get_le32(p + off + 4)) {
			why = "checksum mismatch";
			goto bad;
		}
		r = apply_record(rp, seg, off, p + off + REC_HDR, len);
		if (r < 0)
			return r;
		off += REC_HDR + len;
	}
	if (off == 0)
		return corrupt(rp, seg, 0, "empty segment (no header)");
	*ret_end = off;
	return 0;
bad:
	/* Only the unsynced end of the newest file can legitimately be half written. */
	if (!last || off == 0 || valid_record_after(p, size, off))
		return corrupt(rp, seg, off, "%s", why);
	*ret_torn = true;
	*ret_end = off;
	return 0;
}

static void unmap_all(struct replay *rp)
{
	for (size_t i = 0; i < rp->nmaps; i++) {
		struct seg_map *m = &rp->maps[i];

		if (m->p)
			munmap((void *)m->p, m->size);
		if (m->fd >= 0)
			close(m->fd);
		free(m->path);
	}
	free(rp->maps);
	rp->maps = NULL;
	rp->nmaps = 0;
}

/* Where the written part of a file ends. The preallocated tail is unwritten extents, which
 * SEEK_HOLE reports as a hole: skipping it spares faulting in and scanning up to 64 MiB of zeros
 * per open. Holes read as zeros, so this changes nothing about what replay sees; filesystems
 * without hole reporting call the whole file data. */
static uint64_t data_end(int fd, uint64_t size)
{
	uint64_t end = 0;
	off_t off = 0;

	for (;;) {
		off_t d = lseek(fd, off, SEEK_DATA), h;

		if (d < 0)
			break; /* ENXIO: no data after off; anything else: fall back below */
		h = lseek(fd, d, SEEK_HOLE);
		if (h < 0)
			return size;
		end = (uint64_t)h;
		off = h;
		if (end >= size)
			break;
	}
	if (off == 0 && errno != ENXIO)
		return size;
	return end < size ? end : size;
}

static int map_segments(struct replay *rp)
{
	struct wal *w = rp->w;

	rp->maps = calloc(w->nsegs, sizeof(*rp->maps));
	if (!rp->maps)
		return -ENOMEM;
	for (size_t i = 0; i < w->nsegs; i++)
		rp->maps[i].fd = -1;
	rp->nmaps = w->nsegs;
	for (size_t i = 0; i < w->nsegs; i++) {
		struct seg_map *m = &rp->maps[i];
		bool last = i == w->nsegs - 1;
		struct stat st;

		m->path = seg_path(w, w->segs[i].seq, w->segs[i].first_index, "");
		if (!m->path)
			return -ENOMEM;
		m->fd = open(m->path, (last ? O_RDWR : O_RDONLY) | O_CLOEXEC);
		if (m->fd < 0 || fstat(m->fd, &st) < 0)
			return rec_err(rp->rec, -errno, "cannot open '%s': %s", m->path,
			               strerror(errno));
		m->file_size = (uint64_t)st.st_size;
		m->size = (size_t)data_end(m->fd, m->file_size);
		if (!m->size)
			continue;
		void *p = mmap(NULL, m->size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, m->fd, 0);

		if (p == MAP_FAILED)
			return rec_err(rp->rec, -errno, "cannot map '%s': %s", m->path,
			               strerror(errno));
		m->p = p;
		madvise(p, m->size, MADV_SEQUENTIAL);
	}
	return 0;
}

static int replay(struct wal *w, uint64_t after, wal_entry_fn cb, void *ctx,
                  struct wal_recovery *rec)
{
	struct replay rp = {.w = w, .rec = rec, .after = after};
	uint64_t end = 0;
	bool torn = false;
	size_t lastseg;
	int r;

	r = map_segments(&rp);
	if (r < 0)
		goto out;
	for (size_t i = 0; i < rp.nmaps; i++) {
		r = replay_segment(&rp, i, &end, &torn);
		if (r < 0)
			goto out;
	}
	if (rp.gap_err) {
		r = rp.gap_err;
		goto out;
	}
	if (rec->reset_index > after) {
		r = corrupt(
		    &rp, rp.reset_seg, rp.reset_off,
		    "the log was reset to index %" PRIu64 " (term %" PRIu64
		    ") by a snapshot from the leader, but the snapshot loaded ends at %" PRIu64
		    ": entries %" PRIu64 "..%" PRIu64 " are missing",
		    rec->reset_index, rec->reset_term, after, after + 1, rec->reset_index);
		goto out;
	}
	for (size_t k = 0; k < rp.nlocs; k++) {
		const struct loc *l = &rp.locs[k];
		const unsigned char *pl = rp.maps[l->seg].p + l->off + REC_HDR + 1;
		struct wal_entry e = {
		    .term = get_le64(pl),
		    .index = rp.loc_first + k,
		    .type = pl[16],
		    .data = pl + ENTRY_FIXED,
		    .len = l->len - 1 - ENTRY_FIXED,
		};

		r = cb(ctx, &e);
		if (r < 0) {
			rec_err(rec, r, "replay of entry %" PRIu64 " failed: %s", e.index,
			        flt_strerror(r));
			goto out;
		}
	}
	rec->first_index = rp.first;
	rec->last_index = rp.last;
	rec->last_term = rp.last_term;
	w->last_index = rp.last;
	w->last_term = rp.last_term;
	w->hs = w->hs_synced = rec->hs;

	/* Keep the last file open for appends; cut a torn tail only once nothing maps it. */
	lastseg = rp.nmaps - 1;
	w->fd = rp.maps[lastseg].fd;
	rp.maps[lastseg].fd = -1;
	w->alloc_size = rp.maps[lastseg].file_size;
	w->write_off = end;
	w->seg_start = REC_HDR + 1 + SEG_PAYLOAD; /* a full file rotates at the next sync */
	if (torn) {
		char *path = rp.maps[lastseg].path;

		munmap((void *)rp.maps[lastseg].p, rp.maps[lastseg].size);
		rp.maps[lastseg].p = NULL;
		if (ftruncate(w->fd, (off_t)end) < 0 || fsync(w->fd) < 0) {
			r = rec_err(rec, -errno, "cannot truncate torn tail of '%s': %s", path,
			            strerror(errno));
			goto out;
		}
		w->alloc_size = end;
		rec->truncated_tail = true;
	}
	r = 0;
out:
	unmap_all(&rp);
	free(rp.locs);
	return r;
}

int wal_open(const char *dir, uint64_t after_index, wal_entry_fn cb, void *ctx,
             struct wal_recovery *rec, struct wal **ret)
{
	struct wal *w;
	int r;

	memset(rec, 0, sizeof(*rec));
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->fd = w->dir_fd = -1;
	w->segment_size = DEFAULT_SEGMENT_SIZE;
	w->base = after_index;
	w->dir = strdup(dir);
	if (!w->dir) {
		r = -ENOMEM;
		goto fail;
	}
	r = fs_mkdir_p(dir, 0700);
	if (r < 0) {
		rec_err(rec, r, "cannot create directory '%s': %s", dir, strerror(-r));
		goto fail;
	}
	w->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (w->dir_fd < 0) {
		r = rec_err(rec, -errno, "cannot open directory '%s': %s", dir, strerror(errno));
		goto fail;
	}
	/* Two writers on one log would interleave records: refuse the second. */
	if (flock(w->dir_fd, LOCK_EX | LOCK_NB) < 0) {
		r = errno == EWOULDBLOCK ? -EBUSY : -errno;
		rec_err(rec, r, "cannot lock '%s': %s", dir,
		        r == -EBUSY ? "in use by another process" : strerror(-r));
		goto fail;
	}
	/* A file left halfway through recycling may hold old records: never a spare. */
	(void)unlinkat(w->dir_fd, RECYCLE_NAME, 0);
	r = list_segments(w, rec);
	if (r < 0)
		goto fail;
	if (!w->nsegs) {
		r = segs_reserve(w, 1);
		if (r < 0)
			goto fail;
		r = create_segment(w, 0, after_index + 1, &w->fd, &w->alloc_size, &w->write_off,
		                   rec);
		if (r < 0)
			goto fail;
		w->seg_start = w->write_off;
		w->prealloc_tried = true;
		w->segs[w->nsegs++] = (struct wal_segment){0, after_index + 1, 0};
		w->last_index = 0;
	} else {
		r = replay(w, after_index, cb, ctx, rec);
		if (r < 0)
			goto fail;
	}
	*ret = w;
	return 0;
fail:
	if (r == -ENOMEM && !rec->error[0])
		rec_err(rec, r, "out of memory opening the WAL in '%s'", dir);
	wal_close(w);
	return r;
}

void wal_close(struct wal *w)
{
	if (!w)
		return;
	if (w->fd >= 0)
		close(w->fd);
	if (w->dir_fd >= 0)
		close(w->dir_fd);
	buf_release(&w->pending);
	free(w->segs);
	free(w->dir);
	free(w);
}

int wal_append(struct wal *w, const struct wal_entry *entries, size_t n)
{
	uint64_t top = w->last_index > w->base ? w->last_index : w->base;
	size_t need = 0;
	int r;

	if (w->failed)
		return w->failed;
	if (!n)
		return 0;
	/* Check everything first so that a refused batch leaves nothing half-buffered. */
	for (size_t i = 0; i < n; i++) {
		const struct wal_entry *e = &entries[i];

		if (e->len > MAX_DATA)
			return FLT_ETOOBIG;
		if (e->type > WAL_ENTRY_CONF || (e->len && !e->data))
			return FLT_EINVAL;
		if (i == 0 ? e->index <= w->base || e->index > top + 1
		           : e->index != entries[i - 1].index + 1)
			return FLT_EINVAL;
		need += REC_HDR + 1 + ENTRY_FIXED + e->len;
		if (need < e->len)
			return -ENOMEM;
	}
	r = buf_reserve(&w->pending, need);
	if (r < 0)
		return r;
	for (size_t i = 0; i < n; i++) {
		const struct wal_entry *e = &entries[i];
		unsigned char p[ENTRY_FIXED];

		put_le64(p, e->term);
		put_le64(p + 8, e->index);
		p[16] = e->type;
		put_record_header(&w->pending, REC_ENTRY, p, sizeof(p), e->data, e->len);
	}
	if (!w->pending_first || entries[0].index < w->pending_first)
		w->pending_first = entries[0].index;
	if (entries[n - 1].index > w->pending_max)
		w->pending_max = entries[n - 1].index;
	w->last_index = entries[n - 1].index;
	w->last_term = entries[n - 1].term;
	return 0;
}

int wal_set_hard_state(struct wal *w, const struct wal_hard_state *hs)
{
	int r;

	if (w->failed)
		return w->failed;
	if (hs->term == w->hs.term && hs->vote == w->hs.vote && hs->commit == w->hs.commit)
		return 0;
	r = put_hard_state(&w->pending, hs);
	if (r < 0)
		return r;
	w->hs = *hs;
	return 0;
}

int wal_reset(struct wal *w, uint64_t index, uint64_t term)
{
	unsigned char p[RESET_PAYLOAD];
	int r;

	if (w->failed)
		return w->failed;
	/* Below `base` the caller already said a newer snapshot is durable: going back is a bug. */
	if (!index || !term || index < w->base)
		return FLT_EINVAL;
	put_le64(p, index);
	put_le64(p + 8, term);
	r = put_record_header(&w->pending, REC_RESET, p, sizeof(p), NULL, 0);
	if (r < 0)
		return r;
	/* The caller saved the snapshot at `index` first (wal.h), so it covers the log up to it. */
	w->base = index;
	w->last_index = index;
	w->last_term = term;
	w->pending_reset = true;
	w->pending_reset_index = index;
	/* Entries buffered before the reset are void: they no longer count for the new file's
	 * name or for what compaction may drop. */
	w->pending_first = index + 1;
	w->pending_max = index;
	return 0;
}

bool wal_pending(const struct wal *w)
{
	return w->pending.len > 0;
}

static int rotate(struct wal *w)
{
	struct wal_recovery scratch;
	uint64_t seq = w->segs[w->nsegs - 1].seq + 1;
	uint64_t first = w->pending_first ? w->pending_first : w->last_index + 1;
	uint64_t size, len;
	int fd, r;

	r = segs_reserve(w, 1);
	if (r < 0)
		return r;
	r = create_segment(w, seq, first, &fd, &size, &len, &scratch);
	if (r < 0)
		return r;
	/* Give back the unused preallocation of the old file; a crash before this lands leaves
	 * zeros, which replay reads as the clean end of that file. */
	if (w->alloc_size > w->write_off && ftruncate(w->fd, (off_t)w->write_off) < 0) {
		/* harmless: the zero tail stays */
	}
	close(w->fd);
	w->fd = fd;
	w->alloc_size = size;
	w->write_off = w->seg_start = len;
	w->prealloc_tried = true;
	w->segs[w->nsegs++] = (struct wal_segment){seq, first, 0};
	return 0;
}

int wal_sync(struct wal *w)
{
	size_t len = w->pending.len;
	int r;

	if (w->failed)
		return w->failed;
	if (!len)
		return 0;
	/* Rotate before writing, so a failed rotation has written nothing of this batch. */
	if (w->write_off > w->seg_start && w->write_off + len > w->segment_size) {
		r = rotate(w);
		if (r < 0) {
			/* Sticky like a failed write: the caller reports these records lost, so
			 * a later sync must never make them durable behind its back. */
			w->failed = r;
			return r;
		}
	}
	if (!w->prealloc_tried && w->alloc_size < w->segment_size) {
		w->prealloc_tried = true;
		if (fallocate(w->fd, 0, 0, (off_t)w->segment_size) == 0)
			w->alloc_size = w->segment_size;
	}
	r = fs_pwrite_all(w->fd, w->pending.data, len, w->write_off);
	if (r >= 0 && fdatasync(w->fd) < 0)
		r = -errno;
	if (r < 0) {
		/* After a failed write or fdatasync the page cache may claim data the disk does
		 * not have; retrying would lie. Refuse everything from now on. */
		w->failed = r;
		return r;
	}
	w->write_off += len;
	if (w->write_off > w->alloc_size)
		w->alloc_size = w->write_off;
	if (w->pending_reset) {
		/* Now durable: nothing written before it is live any more. */
		for (size_t i = 0; i + 1 < w->nsegs; i++)
			if (w->segs[i].max_index > w->pending_reset_index)
				w->segs[i].max_index = w->pending_reset_index;
		w->segs[w->nsegs - 1].max_index = w->pending_max;
		w->pending_reset = false;
	} else if (w->pending_max > w->segs[w->nsegs - 1].max_index) {
		w->segs[w->nsegs - 1].max_index = w->pending_max;
	}
	w->bytes_written += len;
	w->hs_synced = w->hs;
	w->pending_first = w->pending_max = 0;
	buf_clear(&w->pending);
	return 0;
}

/* Make the segment at `path` the spare `name` (see RECYCLE_NAME): zeroing converts its blocks
 * to unwritten extents without freeing them (FALLOC_FL_ZERO_RANGE). Returns 1 (it is the
 * spare), 0 (it is gone, deleted after all: the filesystem cannot zero a range) or -errno
 * (untouched). */
static int recycle(const struct wal *w, const char *path, const char *name)
{
	struct stat st;
	int fd, ok;

	if (renameat(AT_FDCWD, path, w->dir_fd, RECYCLE_NAME) < 0)
		return -errno;
	fd = openat(w->dir_fd, RECYCLE_NAME, O_WRONLY | O_CLOEXEC);
	ok = fd >= 0 && fstat(fd, &st) == 0 &&
	     (!st.st_size || fallocate(fd, FALLOC_FL_ZERO_RANGE, 0, st.st_size) == 0) &&
	     fdatasync(fd) == 0 && renameat(w->dir_fd, RECYCLE_NAME, w->dir_fd, name) == 0;
	if (fd >= 0)
		close(fd);
	if (ok)
		return 1;
	(void)fs_unlink_trickle(w->dir_fd, RECYCLE_NAME);
	return 0;
}

/* Release the segments wal_compact(index) lets go: oldest first, so a crash midway still leaves
 * a contiguous run of files; the last file always stays (appends go there). `gently`, for a
 * background process: they fill the free spare names, the others go a piece at a time
 * (fs_unlink_trickle). Returns how many went, stopping at the first failure (*err). */
static size_t release_covered(const struct wal *w, uint64_t index, bool gently, int *err)
{
	int next = gently ? 0 : SPARES; /* the first spare name that may be free */
	size_t k = 0;

	*err = 0;
	while (k + 1 < w->nsegs && w->segs[k].max_index <= index) {
		char *path = seg_path(w, w->segs[k].seq, w->segs[k].first_index, "");

		if (!path) {
			*err = -ENOMEM;
			break;
		}
		while (next < SPARES && faccessat(w->dir_fd, spare_names[next], F_OK, 0) == 0)
			next++;
		if (next < SPARES) {
			*err = recycle(w, path, spare_names[next]);
			/* Made one, or the filesystem cannot: either way no more tries. */
			next = *err > 0 ? next + 1 : SPARES;
			*err = *err < 0 ? fs_unlink_trickle(AT_FDCWD, path) : 0;
		} else if (gently) {
			*err = fs_unlink_trickle(AT_FDCWD, path);
		} else if (unlink(path) < 0 && errno != ENOENT) {
			*err = -errno;
		}
		free(path);
		if (*err < 0)
			break;
		k++;
	}
	return k;
}

/* No fsync of the directory: an unlink a crash forgets only brings back a segment the snapshot
 * covers, which replay skips as it does after a crash between the snapshot and this call. That
 * fsync (and the unlink of a 64 MiB file) took up to 127 ms of the loop under a write load. */
int wal_compact(struct wal *w, uint64_t index)
{
	size_t k;
	int r;

	if (w->failed)
		return w->failed;
	if (index > w->base)
		w->base = index;
	k = release_covered(w, index, false, &r);
	if (k) {
		memmove(w->segs, w->segs + k, (w->nsegs - k) * sizeof(*w->segs));
		w->nsegs -= k;
	}
	return r;
}

void wal_release_covered(const struct wal *w, uint64_t index)
{
	int r;

	if (!w->failed)
		(void)release_covered(w, index, true, &r);
}

void wal_set_segment_size(struct wal *w, size_t bytes)
{
	w->segment_size = bytes ? bytes : DEFAULT_SEGMENT_SIZE;
}

uint64_t wal_bytes_written(const struct wal *w)
{
	return w->bytes_written;
}
