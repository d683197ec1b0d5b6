/* File helpers (see fs.h): one copy of the loops every on-disk module needs. */
#include "util/fs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int fs_mkdir_p(const char *path, mode_t mode)
{
	char *p = strdup(path);
	int r = 0;

	if (!p)
		return -ENOMEM;
	for (char *s = p + 1;; s++) {
		char c;

		if (*s != '/' && *s != '\0')
			continue;
		c = *s;
		*s = '\0';
		if (mkdir(p, mode) < 0 && errno != EEXIST) {
			r = -errno;
			break;
		}
		*s = c;
		if (!c)
			break;
	}
	free(p);
	return r;
}

int fs_write_all(int fd, const void *data, size_t len)
{
	const char *p = data;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Linux's sync_file_range(2) pattern: start writeback of each piece as it is written and wait
 * for the one before it, so at most two pieces are ever dirty or in flight. */
int fs_write_trickle(int fd, const void *data, size_t len)
{
	const char *p = data;
	off_t off = lseek(fd, 0, SEEK_CUR), prev = -1;

	if (off < 0)
		return -errno;
	while (len) {
		size_t piece = len < FS_TRICKLE ? len : FS_TRICKLE;
		int r = fs_write_all(fd, p, piece);

		if (r < 0)
			return r;
		/* Not the caller's errors: its fsync reports what did not reach the disk. */
		(void)sync_file_range(fd, off, (off_t)piece, SYNC_FILE_RANGE_WRITE);
		if (prev >= 0)
			(void)sync_file_range(fd, prev, (off_t)FS_TRICKLE,
			                      SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
			                          SYNC_FILE_RANGE_WAIT_AFTER);
		prev = off;
		off += (off_t)piece;
		p += piece;
		len -= piece;
	}
	return 0;
}

int fs_unlink_trickle(int dir_fd, const char *path)
{
	int fd = openat(dir_fd, path, O_WRONLY | O_CLOEXEC), r = 0;
	struct stat st;

	if (fd < 0)
		return unlinkat(dir_fd, path, 0) < 0 && errno != ENOENT ? -errno : 0;
	if (unlinkat(dir_fd, path, 0) < 0) {
		r = errno == ENOENT ? 0 : -errno;
		close(fd);
		return r;
	}
	/* The name is gone; the blocks go a piece at a time, each piece with its own commit. */
	if (fstat(fd, &st) == 0)
		for (off_t size = st.st_size; size > 0;) {
			size = size > (off_t)FS_TRICKLE ? size - (off_t)FS_TRICKLE : 0;
			if (ftruncate(fd, size) < 0 || fdatasync(fd) < 0)
				break; /* close frees the rest at once */
		}
	close(fd);
	return 0;
}

int fs_pwrite_all(int fd, const void *data, size_t len, uint64_t off)
{
	const char *p = data;

	while (len) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

int fs_read_all(int fd, void *data, size_t len)
{
	char *p = data;

	while (len) {
		ssize_t n = read(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO; /* the file shrank under us */
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

bool fs_parse_hex16(const char *s, uint64_t *ret)
{
	uint64_t v = 0;

	for (int i = 0; i < 16; i++) {
		char c = s[i];
		int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;

		if (d < 0)
			return false;
		v = v << 4 | (uint64_t)d;
	}
	*ret = v;
	return true;
}
