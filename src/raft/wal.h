/* Write-ahead log: the Raft log on disk. Segment files `wal/<seq:016x>-<first index:016x>.wal`
 * of records [u32 length][u32 crc32c][u8 type][payload], little-endian, the crc covering type and
 * payload. Appends are buffered in memory and reach the disk in wal_sync(), one write + one
 * fdatasync for everything appended since the last sync (group commit).
 *
 * Replay semantics: records are read in order; an entry with index i replaces any earlier entry
 * with index >= i (that is how a Raft log truncation is recorded: appending the new entry). A torn
 * final record (short, or a bad crc on the last record of the last segment with nothing valid
 * after it) is truncated away; any other bad record fails with FLT_ECORRUPT and names file and
 * offset.
 *
 * Reset records (wal_reset): a follower that installs a snapshot from its leader throws its whole
 * log away, whatever it held (Raft paper 7: the log may conflict with the snapshot). The WAL
 * records that as a reset record carrying the snapshot's (index, term): on replay every entry
 * written before it is discarded, whatever its index, and the log continues with index + 1.
 * Segments written wholly before a durable reset hold nothing live and wal_compact(index) removes
 * them. A reset obeys the same checksum, torn-tail and corruption rules as every other record. */
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
	struct wal_hard_state hs; /* last one written, zeros if none */
	uint64_t first_index;     /* first entry index present (0 if none) */
	uint64_t last_index;      /* last entry index present after replay (0 if none) */
	uint64_t last_term;
	bool truncated_tail; /* a torn record was cut off */
	/* The last reset record replayed (0, 0 if none): the snapshot the node must have. When
	 * there is one, first_index is reset_index + 1 even if no entry follows (then last_index,
	 * last_term are reset_index, reset_term). Filled even when wal_open fails because the
	 * loaded snapshot (after_index) is older than reset_index. */
	uint64_t reset_index, reset_term;
	char error[512]; /* on FLT_ECORRUPT: "file 'x' offset N: reason" */
};

/* Called for every entry that survives replay, in index order, with index > `after_index`.
 * Data is borrowed for the call. Returns 0 or a negative code to abort the open. */
typedef int (*wal_entry_fn)(void *ctx, const struct wal_entry *e);

/* Open or create the WAL in `dir` (created if missing), replay it: entries with index <=
 * `after_index` (covered by a snapshot) are skipped. Returns 0, -errno, or FLT_ECORRUPT with
 * rec->error filled; FLT_ECORRUPT also when the log was reset to an index past `after_index`
 * (the snapshot installed from the leader is missing: the entries up to it are gone). */
int wal_open(const char *dir, uint64_t after_index, wal_entry_fn cb, void *ctx,
             struct wal_recovery *rec, struct wal **ret);
void wal_close(struct wal *w); /* syncs nothing; accepts NULL */

/* Buffer records (data copied). Entries must continue the log or overwrite a suffix of it. */
int wal_append(struct wal *w, const struct wal_entry *entries, size_t n);
int wal_set_hard_state(struct wal *w, const struct wal_hard_state *hs);
/* Buffer a reset record (synced by wal_sync like everything else): a snapshot at (index, term)
 * was installed from the leader and every entry written before this record is void. The next
 * wal_append must start at index + 1; last index/term become (index, term).
 * Order for the caller: snap_save_conf the snapshot (durable on return) BEFORE wal_sync makes the
 * reset durable, so that a reset on disk always has its snapshot; then wal_compact(w, index).
 * A crash after the snapshot is saved but before wal_sync returns leaves the old log on disk
 * beside the newer snapshot: replay with after_index = index then hands back the old entries
 * past `index`. That is harmless: either the old entry at `index` had the snapshot's term (so by
 * Log Matching the old log agrees with the snapshot), or the old log lacks a committed entry, so
 * its last entry (unchanged by the crash) wins no election, its commit index is below `index`,
 * and the leader overwrites the suffix.
 * Returns 0, FLT_EINVAL (index or term 0, or index below a snapshot already compacted to),
 * -ENOMEM, or the sticky error of a failed sync. */
int wal_reset(struct wal *w, uint64_t index, uint64_t term);
/* True when records are buffered and not yet synced. */
bool wal_pending(const struct wal *w);
/* Write everything buffered and fdatasync (rotating segments past the size limit). 0 or -errno. */
int wal_sync(struct wal *w);
/* A snapshot at `index` is durable: segments wholly before it may go (those holding no entry
 * past `index` that is still live: entries voided by a later durable reset do not count, a
 * segment holding a reset counts as holding its index). 0 or -errno. */
int wal_compact(struct wal *w, uint64_t index);
/* For a forked child holding the parent's WAL as it was before the snapshot at `index` became
 * durable: release the files wal_compact(index) would, changing nothing in memory (best
 * effort). The first ones become spares that new segments take (zeroed in place, their blocks
 * kept) while there are free spare names; the rest go a piece at a time (fs_unlink_trickle).
 * That work costs the child's time, and the parent's wal_compact only forgets the files. */
void wal_release_covered(const struct wal *w, uint64_t index);
/* Segment size before rotation (default 64 MiB); tests make it small. */
void wal_set_segment_size(struct wal *w, size_t bytes);
uint64_t wal_bytes_written(const struct wal *w);

/* crc32c (Castagnoli), exposed for the snapshot file and the tests. */
uint32_t wal_crc32c(uint32_t crc, const void *data, size_t len);

/* ---- snapshots: snap/<term:016x>-<index:016x>.snap; written to a temp file, fsynced, renamed,
 * directory fsynced; the two newest kept. Format version 2 (little-endian):
 *     [8-byte magic "FLOTSNP" + version byte][u32 crc32c][u64 index][u64 term]
 *     [u32 conf_len][conf][data]
 * the crc covering everything after it. `conf` is the snapshot's Raft configuration as opaque
 * bytes (raft_conf_encode; the core decodes it). Version 1 files (no conf_len, no conf) are still
 * read, as having an empty conf; only version 2 is written. */

/* Save a snapshot with its configuration (data and conf borrowed). Durable when it returns 0.
 * The data's writeback starts as it is written (fs_write_trickle). `background`: for a process
 * whose time is not the loop's, the files it replaces go a piece at a time (fs_unlink_trickle).
 * Returns 0, -errno, FLT_ETOOBIG (conf_len beyond u32). */
int snap_save_conf(const char *dir, uint64_t index, uint64_t term, const void *conf,
                   size_t conf_len, const void *data, size_t len, bool background);
/* snap_save_conf with an empty conf. */
int snap_save(const char *dir, uint64_t index, uint64_t term, const void *data, size_t len);
/* Load the newest valid snapshot. Returns 1 and fills the out params (the caller owns what
 * `out` and `ret_conf` then hold; their old contents are released; ret_conf may be NULL), 0 if
 * there is none, FLT_ECORRUPT (with `err` filled) if the newest is damaged (bad magic, checksum,
 * conf length beyond the file, name disagreeing with the contents), FLT_EVERSION for an unknown
 * format version, -errno. Out params are written only when it returns 1. */
int snap_load_latest_conf(const char *dir, uint64_t *ret_index, uint64_t *ret_term,
                          struct buf *ret_conf, struct buf *out, char *err, size_t errlen);
/* The newest valid snapshot file, mapped read-only and checked as snap_load_latest_conf checks
 * it; conf and data point into the mapping, which the caller releases with snap_unmap. Same
 * returns (1, 0, FLT_ECORRUPT, FLT_EVERSION, -errno); *ret written only when it returns 1.
 * Without `check_crc` the checksum is not computed (nor the file read): for a file this process
 * just made durable itself. */
struct snap_map {
	void *base;
	int fd; /* open while mapped, with a shared flock (only when base is set) */
	size_t size;
	uint64_t index, term;
	const void *conf, *data;
	size_t conf_len, len;
};
int snap_map_latest(const char *dir, bool check_crc, struct snap_map *ret, char *err,
                    size_t errlen);
/* Unmap (accepts a zeroed struct) and zero. */
void snap_unmap(struct snap_map *m);
/* Take the mapping's pages out of the process's resident set; the bytes stay readable. */
void snap_map_drop_pages(const struct snap_map *m);
/* snap_load_latest_conf without the conf. */
int snap_load_latest(const char *dir, uint64_t *ret_index, uint64_t *ret_term, struct buf *out,
                     char *err, size_t errlen);

#endif
