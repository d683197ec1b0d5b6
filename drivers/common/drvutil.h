/* Small pieces every runtime driver needs the same way: NULL-terminated string vectors, the
 * status stop() reports for a task nothing runs for, and the exported entry point. A driver links
 * nothing from the daemon, so this file is compiled into each driver .so that uses it (with
 * -fvisibility=hidden, like src/util/buf.c). */
#ifndef FLOTILLA_DRVUTIL_H
#define FLOTILLA_DRVUTIL_H

#include <stddef.h>

struct flt_host;
struct flt_task;

/* Defines flt_driver_entry, the one symbol a driver exports, returning &ops. */
#define DRV_ENTRY(ops)                                                                             \
	__attribute__((visibility("default"))) const struct flt_drv_ops *flt_driver_entry(void)    \
	{                                                                                          \
		return &(ops);                                                                     \
	}

/* Appends a copy of s to the NULL-terminated vector *v of *n strings (grown as needed; *v may
 * be NULL). Returns 0, or -ENOMEM (the vector stays valid and NULL-terminated). */
int drv_strv_push(char ***v, size_t *n, const char *s);

/* Frees a NULL-terminated vector and its strings. Accepts NULL. */
void drv_strv_free(char **v);

/* Reports t inactive/dead/success: what stop() says for a task that nothing runs for. */
void drv_report_stopped(const struct flt_host *host, struct flt_task *t);

#endif
