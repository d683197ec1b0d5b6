/* A minimal driver host for the driver tests (exec, docker, rkt, systemd): loads a driver .so the
 * way flotillad does, builds tasks from unit file text, runs the libev default loop until a task
 * reaches a state or a deadline passes, and records every report so tests can assert on them.
 * Test code only: failures to allocate abort, nothing here is meant for the daemon. */
#ifndef FLT_TESTS_DRIVER_HARNESS_H
#define FLT_TESTS_DRIVER_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <flotilla/driver.h>

struct hx;

/* One recorded task_status report (strings owned by the harness). */
struct hx_status {
	enum flt_active active;
	char *sub;
	int64_t main_pid;
	char *handle; /* NULL when the report left it unchanged */
	int exit_code, exit_signal;
	char *result, *message;
	int64_t at_ms; /* monotonic ms when recorded */
};

/* One recorded task_process report. */
struct hx_process {
	char *kind, *line;
	int64_t pid;
	int exit_code, exit_signal;
};

/* Load the driver at `so_path` and open it with the config pairs `kv` ("k", "v", ..., NULL; NULL
 * for none). State directories of tasks go under `state_base` (created if missing, kept on close)
 * or, if NULL, under a fresh temporary directory removed by hx_close. Returns NULL (after printing
 * why to stderr) if the driver cannot be loaded or opened. */
struct hx *hx_open_in(const char *so_path, const char *const *kv, const char *state_base);
static inline struct hx *hx_open(const char *so_path, const char *const *kv)
{
	return hx_open_in(so_path, kv, NULL);
}
/* The directory under which task state directories live (borrowed). */
const char *hx_state_base(const struct hx *hx);
const struct flt_drv_ops *hx_ops(const struct hx *hx);
/* Close the driver (which forgets its tasks), free every task, unload. Accepts NULL. */
void hx_close(struct hx *hx);

/* A task for `unit` whose options are parsed from `unit_text` ([Section], Key=Value, '#'/';'
 * comments, trailing-backslash continuations). Its state_dir is <state base>/<unit>, created.
 * Owned by the harness. */
struct flt_task *hx_task(struct hx *hx, const char *unit, const char *unit_text);

/* Driver calls; they return what the driver returns. hx_adopt sets t->handle first. */
int hx_start(struct hx *hx, struct flt_task *t);
int hx_stop(struct hx *hx, struct flt_task *t, unsigned timeout_ms);
int hx_adopt(struct hx *hx, struct flt_task *t, const char *handle);
void hx_release(struct hx *hx, struct flt_task *t);

/* Run the loop until a status report with `active` (and sub state `sub`, NULL = any) arrives that
 * was not yet consumed by an earlier hx_wait of this task, or `timeout_ms` passes. Reports are
 * scanned in order from the one after the last match, so transient states are never missed.
 * Returns true on a match. */
bool hx_wait(struct hx *hx, struct flt_task *t, enum flt_active active, const char *sub,
             unsigned timeout_ms);
/* Run the loop until `pred(ctx)` is true or the deadline passes; returns the last pred(). */
bool hx_wait_for(struct hx *hx, bool (*pred)(void *ctx), void *ctx, unsigned timeout_ms);
/* Run the loop until the task's output contains `needle` (NUL-free) or the deadline passes. */
bool hx_wait_output(struct hx *hx, struct flt_task *t, const char *needle, unsigned timeout_ms);
/* Run the loop for about `ms` (for "nothing more happens" checks only). */
void hx_run_for(struct hx *hx, unsigned ms);

/* Every output byte of the task so far, concatenated (borrowed, NUL-terminated, never NULL). */
const char *hx_output(struct hx *hx, struct flt_task *t);
/* The ident of the most recent output report ("sh[1234]"), or NULL. */
const char *hx_last_ident(struct hx *hx, struct flt_task *t);
/* Status reports in order; hx_last_status is NULL before the first. */
size_t hx_n_status(struct hx *hx, struct flt_task *t);
const struct hx_status *hx_status_at(struct hx *hx, struct flt_task *t, size_t i);
const struct hx_status *hx_last_status(struct hx *hx, struct flt_task *t);
/* The last non-NULL handle reported, or NULL. */
const char *hx_handle(struct hx *hx, struct flt_task *t);
/* Process reports in order. */
size_t hx_n_process(struct hx *hx, struct flt_task *t);
const struct hx_process *hx_process_at(struct hx *hx, struct flt_task *t, size_t i);
/* The names of the states reported so far, "activating/start-pre active/running ...", for
 * failure messages (borrowed until the next call). */
const char *hx_trace(struct hx *hx, struct flt_task *t);
/* "activating", "active", ... */
const char *hx_active_name(enum flt_active a);

/* ---- for cmocka tests: the including file has included <cmocka.h> first ---- */

/* hx_open_in that fails the running test instead of returning NULL. */
#define HX_OPEN_IN(so_path, kv, state_base)                                                        \
	({                                                                                         \
		struct hx *hx_opened_ = hx_open_in(so_path, kv, state_base);                       \
		assert_non_null(hx_opened_);                                                       \
		hx_opened_;                                                                        \
	})

/* hx_wait that fails the running test, naming the states seen, if no report matched. */
#define HX_WAIT_STATE(hx, t, a, sub, timeout_ms)                                                   \
	do {                                                                                       \
		if (!hx_wait(hx, t, a, sub, timeout_ms))                                           \
			fail_msg("no %s/%s; states: %s", hx_active_name(a), sub ? sub : "*",       \
			         hx_trace(hx, t));                                                 \
	} while (0)

/* hx_wait_output that fails the running test, showing the output, if `s` never came. */
#define HX_WAIT_OUTPUT(hx, t, s, timeout_ms)                                                       \
	do {                                                                                       \
		if (!hx_wait_output(hx, t, s, timeout_ms))                                         \
			fail_msg("no '%s' in output: '%s'", s, hx_output(hx, t));                  \
	} while (0)

#endif
