/* The driver host: loads the runtime drivers (every *.so of a directory, include/flotilla/driver.h
 * is the ABI), refuses the ones that do not fit with a logged reason, opens the rest and keeps
 * them by name for the runner (src/agent/runner.h). Daemon code: it logs refusals. */
#ifndef FLT_DRIVER_HOST_H
#define FLT_DRIVER_HOST_H

#include <stdbool.h>
#include <stddef.h>

#include "flotilla/driver.h"
#include "util/buf.h"

/* Hard cap on drivers in one directory: more is surely a mistake (and each is a dlopen). */
#define DRV_HOST_MAX 64

struct drv_host;

/* One driver that loaded (ABI accepted). */
struct drv_entry {
	const char *name;              /* the ops table's name (borrowed from the driver) */
	const char *path;              /* owned by the host */
	const struct flt_drv_ops *ops; /* borrowed from the driver */
	struct flt_drv *drv;           /* the open instance, or NULL (not opened / open failed) */
	const char *open_error;        /* why open failed (owned by the host), or NULL */
};

/* Load every regular "*.so" of `dir` in name order with dlopen(RTLD_NOW | RTLD_LOCAL) and call
 * its flt_driver_entry. A driver is refused, with a reason logged (log_warn) and kept for
 * drv_host_refusal(), when it does not dlopen, lacks the symbol, has another ABI major ("driver
 * 'x' (/p/x.so) is not binary compatible: ABI 2.0, flotillad needs 1.x"), an ops table smaller
 * than ABI 1.0's or without a mandatory function, or the name of a driver already loaded. What
 * loads is kept. A missing directory gives an empty host (not an error).
 * Returns 0 (*ret owned; free with drv_host_free), -ENOMEM, or -errno when `dir` cannot be read. */
int drv_host_load(const char *dir, struct drv_host **ret);

/* Open every loaded driver. `tmpl` is copied into one struct flt_host per driver (its
 * abi/host_size/log fields are set by the host: log lines are prefixed with the driver's name);
 * `cfg` is handed to each open(). A driver whose open fails stays listed with open_error set
 * (logged) and is not usable. Returns the number of drivers open. */
int drv_host_open(struct drv_host *h, const struct flt_host *tmpl,
                  const struct flt_drv_config *cfg);

/* Loaded drivers (i < drv_host_count). Borrowed, valid until drv_host_free. */
size_t drv_host_count(const struct drv_host *h);
const struct drv_entry *drv_host_get(const struct drv_host *h, size_t i);
/* The open driver called `name`, or NULL (not loaded, or not open). */
const struct drv_entry *drv_host_find(const struct drv_host *h, const char *name);

/* Refused drivers: the reason (as logged), i < drv_host_refused_count. Borrowed. */
size_t drv_host_refused_count(const struct drv_host *h);
const char *drv_host_refusal(const struct drv_host *h, size_t i);

/* Close open drivers (the caller has released or stopped their tasks) and unload them.
 * Accepts NULL. */
void drv_host_free(struct drv_host *h);

/* For `flotillad --list-drivers`: load (without opening) the drivers of `dir` and append one line
 * per driver to `out`: "name<TAB>ABI 1.0<TAB>/path\n" for each loaded, "refused<TAB>reason\n"
 * for each refused. 0, -ENOMEM or -errno. */
int drv_host_list(const char *dir, struct buf *out);

#endif
