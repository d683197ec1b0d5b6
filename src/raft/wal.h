/* Write-ahead log: the Raft log on disk. Segment files `wal/<seq:016x>-<first index:016x>.wal`
 * of records [u32 length][u32 crc32c][u8 type][payload], little-endian, the crc covering type and
 * payload. Appends are buffered in memory and reach the disk in wal_sync(), one write + one
 * fdatasync for everything appended since the last sync (group commit).
 *
 * Replay semantics: records are read in order; an entry with index i replaces any earlier entry
 * with index >= i (that is how a Raft log truncation is recorded: appending the new entry). A torn
 * final record (short, or a bad crc on the last record of the last segment with nothing valid
 * after it) is truncated away; any other bad record fails with FLT_ECORRUPT and names file and
 * offset. */
#ifndef FLT_WAL_H
#define FLT_WAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct wal;
struct buf;

enum wal_entry_type {
	WAL_ENTRY_NORMAL = 0, /* a store command */
	WAL_ENTRY_NOOP = 1,   /* a new leader's empty entry */
	WAL_ENTRY_CONF = 2,   /* membership change */
};

struct wal_entry {
	uint64_t term;
	uint64_t index;
	uint8_t type;
	const void *data; /* borrowed */
	size_t len;
};

/* Raft's persistent state besides the log. */
struct wal_hard_state {
	uint64_t term;
	uint64_t vote;
	uint64_t commit;
};

/* What replay found; entries are handed to the callback in wal_open. */
struct wal_recovery {
	struct wal_hard_state hs;      /* last one written, zeros if none */
	uint64_t first_index;          /* first entry index present (0 if none) */
	uint64_t last_index;           /* last entry index present after replay (0 if none) */
	uint64_t last_term;
	bool truncated_tail;           /* a torn record was cut off */
	char error[512];               /* on FLT_ECORRUPT: "file 'x' offset N: reason" */
};

/* Called for every entry that survives replay, in index order, with index > `after_index`.
 * Data is borrowed for the call. Returns 0 or a negative code to abort the open. */
typedef int (*wal_entry_fn)(void *ctx, const struct wal_entry *e);

/* Open or create the WAL in `dir` (created if missing), replay it: entries with index <=
 * `after_index` (covered by a snapshot) are skipped. Returns 0, -errno, or FLT_ECORRUPT with
 * rec->error filled. */
int wal_open(const char *dir, uint64_t after_index, wal_entry_fn cb, void *ctx,
	     struct wal_recovery *rec, struct wal **ret);
void wal_close(struct wal *w); /* syncs nothing; accepts NULL */

/* Buffer records (data copied). Entries must continue the log or overwrite a suffix of it. */
int wal_append(struct wal *w, const struct wal_entry *entries, size_t n);
int wal_set_hard_state(struct wal *w, const struct wal_hard_state *hs);
/* True when records are buffered and not yet synced. */
bool wal_pending(const struct wal *w);
/* Write everything buffered and fdatasync (rotating segments past the size limit). 0 or -errno. */
int wal_sync(struct wal *w);
/* A snapshot at `index` is durable: segments wholly before it may go. 0 or -errno. */
int wal_compact(struct wal *w, uint64_t index);
/* Segment size before rotation (default 64 MiB); tests make it small. */
void wal_set_segment_size(struct wal *w, size_t bytes);
uint64_t wal_bytes_written(const struct wal *w);

/* crc32c (Castagnoli), exposed for the snapshot file and the tests. */
uint32_t wal_crc32c(uint32_t crc, const void *data, size_t len);

/* ---- snapshots: snap/<term:016x>-<index:016x>.snap, [magic][u32 crc][u64 index][u64 term]
 * [payload]; written to a temp file, fsynced, renamed, directory fsynced; the two newest kept. */
int snap_save(const char *dir, uint64_t index, uint64_t term, const void *data, size_t len);
/* Load the newest valid snapshot. Returns 1 and fills the out params (data owned by caller in
 * `out`), 0 if there is none, FLT_ECORRUPT (with `err` filled) if the newest is damaged. */
int snap_load_latest(const char *dir, uint64_t *ret_index, uint64_t *ret_term, struct buf *out,
		     char *err, size_t errlen);

#endif
