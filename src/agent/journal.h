/* Unit journals: per-unit log files of a unit's output and of the runner's own lines, written as
 * journalctl prints them ("Jul 04 10:22:01 host ident[pid]: text"), bounded and rotated once,
 * read back from the end (`flotctl journal -n N`) and followed (`flotctl journal -f`).
 * Appends are small, synchronous writes to local files (no fsync): losing the last lines in a
 * crash is acceptable for logs. No logging here: errors are returned. */
#ifndef FLT_AGENT_JOURNAL_H
#define FLT_AGENT_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

/* A line longer than this is cut (the rest becomes further lines), as journald does. */
#define JOURNAL_LINE_MAX          16384
#define JOURNAL_DEFAULT_MAX_BYTES (1024 * 1024)

struct journal;
struct journal_follow;

/* Journals in `dir` (created if missing), lines tagged with `hostname`; each unit's file is
 * rotated to "<unit>.log.1" once it would pass `max_bytes` (0: JOURNAL_DEFAULT_MAX_BYTES).
 * Strings are copied. 0 (*ret owned), -ENOMEM or -errno (cannot create dir). */
int journal_new(const char *dir, const char *hostname, size_t max_bytes, struct journal **ret);
/* Cancels every follower (without calling them). Accepts NULL. */
void journal_free(struct journal *j);

/* Append one line to `unit`'s journal: `text` (len bytes, no newline; embedded newlines split
 * it into several lines) stamped with `realtime_ns` and `ident` ("fake[12]", "systemd[1]").
 * Followers of the unit are called with each formatted line. 0, FLT_EINVAL (bad unit name),
 * -ENOMEM or -errno from the file system. */
int journal_append(struct journal *j, const char *unit, int64_t realtime_ns, const char *ident,
                   const char *text, size_t len);

/* Append the last `lines` lines of `unit`'s journal (rotated file included) to `out`, each
 * ending with '\n'. A unit without a journal gives nothing and 0. 0, -ENOMEM, -errno. */
int journal_tail(struct journal *j, const char *unit, unsigned lines, struct buf *out);

/* Delete `unit`'s journal files. 0 or -errno (-ENOENT is not an error). */
int journal_remove(struct journal *j, const char *unit);

/* Call `cb` with every line appended to `unit` from now on (`line` ends with '\n', borrowed for
 * the call). The handle is owned by the journal; cancel it with journal_unfollow (which may be
 * called from inside `cb`). 0 or -ENOMEM. */
typedef void journal_line_fn(void *ud, const char *unit, const char *line, size_t len);
int journal_follow(struct journal *j, const char *unit, journal_line_fn *cb, void *ud,
                   struct journal_follow **ret);
/* Accepts NULL. */
void journal_unfollow(struct journal_follow *f);

#endif
