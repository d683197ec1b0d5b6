/* The runtime driver ABI: the one contract between flotillad's agent (the host) and a runtime
 * driver (exec, docker, rkt, systemd), each a shared object loaded with dlopen. A driver links
 * nothing from the daemon: the loop, logging and the callbacks through which it reports arrive in
 * `struct flt_host`. Versioning follows STYLE.md: the host refuses another major, an ops table
 * smaller than the fields it needs, or a duplicate name; structs only ever grow at their end. */
#ifndef FLOTILLA_DRIVER_H
#define FLOTILLA_DRIVER_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define FLT_DRV_ABI_MAJOR 1 /* incompatible change: the host refuses a mismatch */
#define FLT_DRV_ABI_MINOR 1 /* fields are only ever appended; 1.1 added ready() */

struct ev_loop;
struct flt_drv;  /* a driver instance, opaque to the host */
struct flt_task; /* one run of a unit on this machine (below) */

enum flt_log_level { FLT_LOG_ERROR = 0, FLT_LOG_WARN, FLT_LOG_INFO, FLT_LOG_DEBUG };

/* One `Key=Value` of the unit file, in file order (repeated keys repeat). Specifiers (%n %N %p
 * %i) are already expanded by the host. */
struct flt_option {
	const char *section; /* "Unit", "Service", "X-Fleet", "X-Flotilla", ... */
	const char *name;
	const char *value;
};

/* Where a task is in its life, as systemd names it (ActiveState/SubState). */
enum flt_active {
	FLT_ACTIVATING,   /* sub: "start-pre", "start", "start-post", "auto-restart" */
	FLT_ACTIVE,       /* sub: "running", "exited" (oneshot done, RemainAfterExit) */
	FLT_DEACTIVATING, /* sub: "stop", "stop-sigterm", "stop-sigkill", "stop-post" */
	FLT_INACTIVE,     /* sub: "dead" */
	FLT_FAILED,       /* sub: "failed" */
};

/* A state report. Strings are borrowed for the call. */
struct flt_status {
	enum flt_active active;
	const char *sub;
	int64_t main_pid;   /* 0 if none */
	const char *handle; /* what adopt() needs to find the task again after a daemon restart
	                     * (e.g. "pid:starttime", a container id, a rkt uuid); NULL: unchanged */
	/* With FLT_INACTIVE/FLT_FAILED after the main process ended: how it ended. */
	int exit_code;      /* exit status, or -1 */
	int exit_signal;    /* terminating signal, or 0 */
	const char *result; /* systemd's Result: "success", "exit-code", "signal", "core-dump",
	                     * "timeout", "resources" (could not even start: see message) */
	const char *message; /* why, for users (e.g. "cannot connect to docker: ..."); or NULL */
};

/* One finished command of the unit (ExecStartPre=..., ExecStart=...), for `flotctl status`'s
 * "Process: 1719 ExecStartPre=/usr/bin/docker rm x (code=exited, status=1/FAILURE)" lines. */
struct flt_process {
	const char *kind; /* "ExecStartPre", "ExecStart", "ExecStartPost", "ExecStop", ... */
	const char *argv0_line; /* the command line as written (without its -/@/+ prefixes) */
	int64_t pid;
	int exit_code;   /* or -1 */
	int exit_signal; /* or 0 */
};

/* What the host gives a driver. Valid from open() until close() returns. */
struct flt_host {
	uint32_t abi_major, abi_minor;
	size_t host_size; /* sizeof(struct flt_host) in the host: test before using a new field */
	struct ev_loop *loop; /* the daemon's (default) loop: ev_io, ev_timer, ev_child on it */
	void (*log)(const struct flt_host *h, enum flt_log_level level, const char *fmt, va_list ap);
	/* The task changed state. May be called from inside start()/stop()/adopt(). */
	void (*task_status)(struct flt_task *t, const struct flt_status *st);
	/* Output of the task for its journal: `ident` is what journalctl shows before the colon
	 * ("docker[1776]"), `data` is one or more whole or partial lines (the host splits and
	 * timestamps them). */
	void (*task_output)(struct flt_task *t, const char *ident, const char *data, size_t len);
	void (*task_process)(struct flt_task *t, const struct flt_process *p);
	void *userdata; /* the host's */
};

/* What a driver is opened with: --driver-opt style settings, e.g. "docker-host" =
 * "unix:///var/run/docker.sock", "rkt-path" = "/usr/bin/rkt". NULL-terminated pairs. */
struct flt_drv_config {
	const char *const *keys;
	const char *const *values;
	size_t n;
};

/* One run of a unit. The host owns it and its strings; they stay valid until the driver reported
 * FLT_INACTIVE or FLT_FAILED after stop(), or until close(). */
struct flt_task {
	const char *unit;       /* "python-test@1.service" */
	const char *machine_id; /* this machine's id (32 hex) */
	const struct flt_option *options;
	size_t n_options;
	const char *unit_text; /* the unit file as text (the systemd driver hands it on) */
	const char *state_dir; /* a directory for this unit that survives daemon restarts */
	const char *handle;    /* adopt(): the last handle reported; else NULL */
	void *host_data;       /* the host's, untouched by the driver */
	void *drv_data;        /* the driver's, untouched by the host */
};

struct flt_drv_ops {
	uint32_t abi_major, abi_minor;
	size_t ops_size; /* sizeof(struct flt_drv_ops) when the driver was built */
	const char *name; /* "exec", "docker", "rkt", "systemd" */
	/* Make an instance. Must not block. 0, or a negative errno with *why set to a static or
	 * strdup'd-by-driver message the host prints (e.g. "docker: cannot connect to
	 * /var/run/docker.sock: No such file or directory"); a driver that opens is usable. */
	int (*open)(const struct flt_host *host, const struct flt_drv_config *cfg,
		    struct flt_drv **ret, const char **why);
	/* Start a run: returns at once; progress and the end come through task_status. A start
	 * that cannot even begin returns a negative errno (the host then marks the unit failed). */
	int (*start)(struct flt_drv *d, struct flt_task *t);
	/* Stop a run within timeout_ms (0: no limit) and report FLT_INACTIVE (or FLT_FAILED). */
	int (*stop)(struct flt_drv *d, struct flt_task *t, unsigned timeout_ms);
	/* Re-attach to a run started before the daemon restarted (t->handle). Reports its state;
	 * -ENOENT if it no longer exists (the host may then start it anew). */
	int (*adopt)(struct flt_drv *d, struct flt_task *t);
	/* Forget a task without stopping it (the daemon is going down; the run survives). */
	void (*release)(struct flt_drv *d, struct flt_task *t);
	/* List the handles of runs this driver finds on the machine labelled as flotilla's (e.g.
	 * containers labelled with this machine id), so the host can remove strays. Optional
	 * (NULL). Calls `cb` once per run and then once with (NULL, NULL) to end the list, from
	 * inside the call or later from the loop (a driver that must ask a daemon); the end comes
	 * even after an error, and at close() if the answer is still pending. Returns 0. */
	int (*list)(struct flt_drv *d, void (*cb)(void *ctx, const char *unit, const char *handle),
		    void *ctx);
	/* Remove a stray run found by list(), killing it first. Optional (NULL). Must not block. */
	int (*remove)(struct flt_drv *d, const char *handle);
	void (*close)(struct flt_drv *d);
	/* ---- ABI 1.1 ---- */
	/* Whether the runtime works now (e.g. its daemon answered the last check): 1 or 0. The
	 * machine advertises only working runtimes, so units that need one go elsewhere. Must not
	 * block. Optional (NULL, or a 1.0 driver): always working once open. */
	int (*ready)(struct flt_drv *d);
};
#define FLT_DRV_OPS_HAS(ops, field)                                                               \
	((ops)->ops_size >= offsetof(struct flt_drv_ops, field) + sizeof((ops)->field) &&         \
	 (ops)->field != NULL)

/* The one symbol a driver exports. */
#define FLT_DRIVER_ENTRY "flt_driver_entry"
const struct flt_drv_ops *flt_driver_entry(void);

/* ---- helpers for drivers (inline: a driver links nothing from the daemon) ---- */

/* The last value of `section`.`name` (systemd: a later assignment overrides), or NULL. */
static inline const char *flt_task_option(const struct flt_task *t, const char *section,
					  const char *name)
{
	const char *v = NULL;

	for (size_t i = 0; i < t->n_options; i++)
		if (!strcmp(t->options[i].section, section) && !strcmp(t->options[i].name, name))
			v = t->options[i].value;
	return v;
}

static inline void flt_log(const struct flt_host *h, enum flt_log_level level, const char *fmt,
			   ...) __attribute__((format(printf, 3, 4)));
static inline void flt_log(const struct flt_host *h, enum flt_log_level level, const char *fmt,
			   ...)
{
	va_list ap;

	va_start(ap, fmt);
	h->log(h, level, fmt, ap);
	va_end(ap);
}

#endif
