/* File helpers of the on-disk modules (WAL, snapshots, the node's data dir): whole writes that
 * survive EINTR and short writes, mkdir -p, and the fixed-width hex of our file names. */
#ifndef FLT_FS_H
#define FLT_FS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Create `path` and its missing parents with `mode`. 0, -ENOMEM or -errno. */
int fs_mkdir_p(const char *path, mode_t mode);
/* Write all `len` bytes (at `off` for the p-version). 0 or -errno. */
int fs_write_all(int fd, const void *data, size_t len);
int fs_pwrite_all(int fd, const void *data, size_t len, uint64_t off);
/* fs_write_all for a large file on a disk others fsync: its writeback starts every FS_TRICKLE
 * bytes instead of all at the final fsync. On ext4 (ordered mode) a journal commit waits for the
 * newly allocated data it covers: a 30 MB snapshot flushed at once made the WAL's fdatasyncs
 * of the same moment take up to 36 ms. The caller still fsyncs. 0 or -errno. */
#define FS_TRICKLE ((size_t)1 << 20)
int fs_write_trickle(int fd, const void *data, size_t len);
/* unlinkat(2) (AT_FDCWD or a directory) for a large file, for a background process: the name
 * goes at once, the blocks FS_TRICKLE at a time, each step committed before the next. Freeing
 * (and, on a filesystem mounted with `discard`, trimming) 64 MiB in one journal commit held
 * other files' fdatasyncs for up to 100 ms. A missing file is not an error. 0 or -errno. */
int fs_unlink_trickle(int dir_fd, const char *path);
/* Read exactly `len` bytes; -EIO if the file ends first. 0 or -errno. */
int fs_read_all(int fd, void *data, size_t len);
/* Parse exactly 16 lowercase hex digits (as our file names carry them). */
bool fs_parse_hex16(const char *s, uint64_t *ret);

#endif
