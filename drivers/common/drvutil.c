/* Small pieces every runtime driver needs the same way (see drvutil.h). Compiled into each
 * driver .so that uses it; nothing here is exported. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <flotilla/driver.h>

#include "drvutil.h"

int drv_strv_push(char ***v, size_t *n, const char *s)
{
	char **p = realloc(*v, (*n + 2) * sizeof(*p));

	if (!p)
		return -ENOMEM;
	*v = p;
	p[*n] = strdup(s);
	if (!p[*n])
		return -ENOMEM;
	p[++*n] = NULL;
	return 0;
}

void drv_strv_free(char **v)
{
	if (!v)
		return;
	for (char **p = v; *p; p++)
		free(*p);
	free(v);
}

void drv_report_stopped(const struct flt_host *host, struct flt_task *t)
{
	struct flt_status st = {
	    .active = FLT_INACTIVE, .sub = "dead", .exit_code = -1, .result = "success"};

	host->task_status(t, &st);
}
