/* Writing a snapshot of the store without holding the loop (redis's BGSAVE idea): a forked child
 * serialises the copy-on-write image of the store and makes the file durable (snap_save_conf)
 * while the parent goes on serving; the parent hears the outcome through a pipe watched by the
 * loop and only then compacts its log. */
#ifndef FLT_SNAPWRITER_H
#define FLT_SNAPWRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct buf;
struct ev_loop;
struct snapw;

/* Runs in the child: append the state machine's bytes to `out`. 0 or -errno. */
typedef int (*snapw_serialize_fn)(void *ctx, struct buf *out);
/* Runs in the child once the snapshot at `index` is durable: housekeeping it made possible that
 * need not hold the parent's loop (unlinking the log files it covers). Best effort. */
typedef void (*snapw_durable_fn)(void *ctx, uint64_t index);
/* Runs in the parent from the loop: the snapshot at (index, term) is durable (result 0) or was
 * not written (result < 0: -errno or a project error from the child, -ECHILD if the child died
 * without saying). Not called after snapw_cancel. */
typedef void (*snapw_done_fn)(void *ctx, uint64_t index, uint64_t term, int result);

/* `dir` is copied. Returns 0 or -ENOMEM. */
int snapw_new(struct ev_loop *loop, const char *dir, snapw_done_fn done, void *ctx,
              struct snapw **ret);
/* A running child gets up to 10 s to finish (done is called), then it is killed. Accepts NULL. */
void snapw_free(struct snapw *w);
bool snapw_busy(const struct snapw *w);
/* Fork a child that writes the snapshot at (index, term) with configuration `conf` (copied into
 * the child by the fork itself), then calls `durable` (may be NULL) before it reports. Both
 * functions get `fn_ctx`. Returns 0 (done will be called), -EBUSY (one is running) or -errno from
 * pipe/fork. */
int snapw_start(struct snapw *w, uint64_t index, uint64_t term, const void *conf, size_t conf_len,
                snapw_serialize_fn fn, snapw_durable_fn durable, void *fn_ctx);
/* Kill a running child and reap it; its temporary file is cleaned by the next save. For a caller
 * about to write the snapshot directory itself (one received from the leader). */
void snapw_cancel(struct snapw *w);

#endif
