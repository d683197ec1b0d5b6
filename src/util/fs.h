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
/* Read exactly `len` bytes; -EIO if the file ends first. 0 or -errno. */
int fs_read_all(int fd, void *data, size_t len);
/* Parse exactly 16 lowercase hex digits (as our file names carry them). */
bool fs_parse_hex16(const char *s, uint64_t *ret);

#endif
