/* Unit journals as plain text files, one per unit plus one rotated generation: what journald
 * gives `journalctl -u` on a systemd host, reduced to what `flotctl journal` needs. Tails are read
 * backwards in chunks so a request for 10 lines never reads a whole megabyte. */
#include "agent/journal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util/err.h"
#include "util/fs.h"

#define TAIL_CHUNK 65536

struct journal_follow {
	struct journal *j;
	struct journal_follow *prev, *next;
	char *unit;
	journal_line_fn *cb;
	void *ud;
	bool dead;
};

struct journal {
	char *dir;
	char *hostname;
	size_t max_bytes;
	struct journal_follow *followers;
	unsigned dispatching; /* > 0 while followers are called: unfollow then only marks */
};

int journal_new(const char *dir, const char *hostname, size_t max_bytes, struct journal **ret)
{
	struct journal *j;
	int r;

	r = fs_mkdir_p(dir, 0750);
	if (r < 0)
		return r;
	j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	j->dir = strdup(dir);
	j->hostname = strdup(hostname && *hostname ? hostname : "localhost");
	if (!j->dir || !j->hostname) {
		journal_free(j);
		return -ENOMEM;
	}
	j->max_bytes = max_bytes ? max_bytes : JOURNAL_DEFAULT_MAX_BYTES;
	*ret = j;
	return 0;
}

static void follow_unlink(struct journal_follow *f)
{
	if (f->prev)
		f->prev->next = f->next;
	else
		f->j->followers = f->next;
	if (f->next)
		f->next->prev = f->prev;
	free(f->unit);
	free(f);
}

void journal_free(struct journal *j)
{
	if (!j)
		return;
	while (j->followers)
		follow_unlink(j->followers);
	free(j->dir);
	free(j->hostname);
	free(j);
}

/* Unit names become file names: refuse anything that could leave the directory. */
static bool unit_ok(const char *unit)
{
	size_t n = strlen(unit);

	return n > 0 && n <= 256 && unit[0] != '.' && !strchr(unit, '/');
}

static int unit_path(const struct journal *j, const char *unit, bool rotated, struct buf *out)
{
	if (!unit_ok(unit))
		return FLT_EINVAL;
	return buf_printf(out, "%s/%s.log%s", j->dir, unit, rotated ? ".1" : "");
}

static int write_line(struct journal *j, const char *unit, const char *line, size_t len)
{
	struct buf path = BUF_INIT, old = BUF_INIT;
	struct stat st;
	int fd, r;

	r = unit_path(j, unit, false, &path);
	if (r < 0)
		goto out;
	fd = open(path.data, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	if (fd < 0) {
		r = -errno;
		goto out;
	}
	if (fstat(fd, &st) == 0 && st.st_size > 0 && (size_t)st.st_size + len > j->max_bytes) {
		/* Rotate once: the previous generation is dropped, so a unit costs at most twice
		 * max_bytes on disk. */
		close(fd);
		r = unit_path(j, unit, true, &old);
		if (r < 0)
			goto out;
		if (rename(path.data, old.data) < 0) {
			r = -errno;
			goto out;
		}
		fd = open(path.data, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
		if (fd < 0) {
			r = -errno;
			goto out;
		}
	}
	r = fs_write_all(fd, line, len);
	close(fd);
out:
	buf_release(&path);
	buf_release(&old);
	return r;
}

static void dispatch(struct journal *j, const char *unit, const char *line, size_t len)
{
	struct journal_follow *f, *next;

	j->dispatching++;
	for (f = j->followers; f; f = f->next)
		if (!f->dead && !strcmp(f->unit, unit))
			f->cb(f->ud, unit, line, len);
	j->dispatching--;
	if (j->dispatching)
		return;
	for (f = j->followers; f; f = next) {
		next = f->next;
		if (f->dead)
			follow_unlink(f);
	}
}

int journal_append(struct journal *j, const char *unit, int64_t realtime_ns, const char *ident,
                   const char *text, size_t len)
{
	struct buf line = BUF_INIT;
	char stamp[64];
	struct tm tm;
	time_t sec = (time_t)(realtime_ns / 1000000000);
	int r = 0;

	if (!unit_ok(unit))
		return FLT_EINVAL;
	if (!localtime_r(&sec, &tm) || !strftime(stamp, sizeof(stamp), "%b %d %H:%M:%S", &tm))
		stamp[0] = '\0';
	do {
		const char *nl = memchr(text, '\n', len);
		size_t n = nl ? (size_t)(nl - text) : len;
		size_t take = n > JOURNAL_LINE_MAX ? JOURNAL_LINE_MAX : n;

		buf_clear(&line);
		r = buf_printf(&line, "%s %s %s: ", stamp, j->hostname, ident);
		if (r >= 0)
			r = buf_append(&line, text, take);
		if (r >= 0)
			r = buf_putc(&line, '\n');
		if (r < 0)
			break;
		r = write_line(j, unit, line.data, line.len);
		if (r < 0)
			break;
		dispatch(j, unit, line.data, line.len);
		/* A cut line continues as the next line; a newline is consumed. */
		text += take + (take == n && nl ? 1 : 0);
		len -= take + (take == n && nl ? 1 : 0);
	} while (len > 0);
	buf_release(&line);
	return r < 0 ? r : 0;
}

/* The last `need` lines of one file into `out` (replacing it); *ret_got says how many. */
static int read_tail(const char *path, unsigned need, struct buf *out, unsigned *ret_got)
{
	struct buf data = BUF_INIT, tmp = BUF_INIT;
	struct stat st;
	off_t off;
	unsigned nl = 0;
	size_t start = 0;
	int fd, r = 0;

	*ret_got = 0;
	buf_clear(out);
	if (need == 0)
		return 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	if (fstat(fd, &st) < 0) {
		r = -errno;
		goto out;
	}
	off = st.st_size;
	/* Read chunks from the end until `need` + 1 newlines are in hand (the extra one marks where
	 * the first wanted line starts) or the file is all read. */
	while (off > 0) {
		size_t n = off > TAIL_CHUNK ? TAIL_CHUNK : (size_t)off;
		ssize_t got;

		off -= (off_t)n;
		buf_clear(&tmp);
		r = buf_reserve(&tmp, n + data.len);
		if (r < 0)
			goto out;
		got = pread(fd, tmp.data, n, off);
		if (got != (ssize_t)n) {
			r = got < 0 ? -errno : -EIO;
			goto out;
		}
		tmp.len = n;
		r = buf_append(&tmp, data.data ? data.data : "", data.len);
		if (r < 0)
			goto out;
		{
			struct buf swap = data;
			data = tmp;
			tmp = swap;
		}
		nl = 0;
		for (size_t i = 0; i + 1 < data.len; i++)
			if (data.data[i] == '\n')
				nl++;
		if (nl >= need)
			break;
	}
	if (data.len == 0)
		goto out;
	/* Walk back from the end over `need` line starts. */
	{
		unsigned seen = 0;
		size_t i = data.len - 1;

		start = 0;
		while (i > 0) {
			i--;
			if (data.data[i] == '\n') {
				if (++seen == need) {
					start = i + 1;
					break;
				}
			}
		}
		*ret_got = seen == need ? need : seen + 1;
	}
	r = buf_append(out, data.data + start, data.len - start);
	if (r >= 0 && data.data[data.len - 1] != '\n')
		r = buf_putc(out, '\n');
out:
	close(fd);
	buf_release(&data);
	buf_release(&tmp);
	return r < 0 ? r : 0;
}

int journal_tail(struct journal *j, const char *unit, unsigned lines, struct buf *out)
{
	struct buf path = BUF_INIT, cur = BUF_INIT, old = BUF_INIT;
	unsigned got = 0, got_old = 0;
	int r;

	r = unit_path(j, unit, false, &path);
	if (r < 0)
		goto out;
	r = read_tail(path.data, lines, &cur, &got);
	if (r < 0 || got >= lines)
		goto done;
	buf_clear(&path);
	r = unit_path(j, unit, true, &path);
	if (r >= 0)
		r = read_tail(path.data, lines - got, &old, &got_old);
done:
	if (r >= 0 && old.len)
		r = buf_append(out, old.data, old.len);
	if (r >= 0 && cur.len)
		r = buf_append(out, cur.data, cur.len);
out:
	buf_release(&path);
	buf_release(&cur);
	buf_release(&old);
	return r < 0 ? r : 0;
}

int journal_remove(struct journal *j, const char *unit)
{
	struct buf path = BUF_INIT;
	int r = 0;

	for (int rot = 0; rot < 2 && r == 0; rot++) {
		buf_clear(&path);
		r = unit_path(j, unit, rot, &path);
		if (r == 0 && unlink(path.data) < 0 && errno != ENOENT)
			r = -errno;
	}
	buf_release(&path);
	return r;
}

int journal_follow(struct journal *j, const char *unit, journal_line_fn *cb, void *ud,
                   struct journal_follow **ret)
{
	struct journal_follow *f = calloc(1, sizeof(*f));

	if (!f)
		return -ENOMEM;
	f->unit = strdup(unit);
	if (!f->unit) {
		free(f);
		return -ENOMEM;
	}
	f->j = j;
	f->cb = cb;
	f->ud = ud;
	f->next = j->followers;
	if (f->next)
		f->next->prev = f;
	j->followers = f;
	*ret = f;
	return 0;
}

void journal_unfollow(struct journal_follow *f)
{
	if (!f)
		return;
	if (f->j->dispatching)
		f->dead = true;
	else
		follow_unlink(f);
}
