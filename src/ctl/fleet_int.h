/* flotctl's fleetctl commands, private to src/ctl and shared between fleet.c (flags, the fleet v1
 * API client, the command table), fleet_units.c (commands that change units), fleet_show.c (lists,
 * cat, status, journal, ssh), fleet_out.c (fleetctl's tab-aligned tables, machine legends,
 * systemctl-like status) and fleet_ssh.c (--tunnel and ssh through the system's ssh client).
 * Names are prefixed fl_ (ctl's fleet part); errors are printed where they happen. */
#ifndef FLT_CTL_FLEET_INT_H
#define FLT_CTL_FLEET_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "ctl/client.h"
#include "ctl/ctl.h"
#include "util/buf.h"

/* ---- tables (fleet_out.c) ---- */

/* Go's text/tabwriter as fleetctl sets it up (minwidth 0, tabwidth 8, padding 1, padchar '\t'):
 * every cell but the last of a line is followed by the tabs that reach the column's width, the
 * widest cell + 1 rounded up to a multiple of 8. Cells are counted in UTF-8 code points. */
struct ctl_table {
	char **cells; /* owned, row-major, ncols per row */
	size_t ncols, n, cap;
};

void ctl_table_init(struct ctl_table *t, size_t ncols);
void ctl_table_release(struct ctl_table *t);
/* Append one cell (copied); rows fill left to right. NULL or "" is shown as "-". */
void ctl_table_add(struct ctl_table *t, const char *cell);
void ctl_table_render(const struct ctl_table *t, struct buf *out);

/* fleetctl's machine legends: "3d1219c7..." (or the whole id with `full`), then "/<ip>" when the
 * machine has a public IP (machineFullLegend). */
void ctl_machine_legend(struct buf *b, const char *id, const char *ip, bool full, bool with_ip);

/* The status object of MODEL_STATUS_PATH rendered like `systemctl status -l`, followed by the
 * journal text (may be NULL). `now_ns` is the wall clock used for "50s ago". */
void ctl_status_render(struct buf *b, json_t *st, const char *legend, const char *journal,
                       int64_t now_ns);

/* ---- ssh (fleet_ssh.c) ---- */

struct ctl_ssh_opts {
	const char *user;        /* --ssh-username, "core" by default */
	const char *known_hosts; /* --known-hosts-file, NULL for ssh's own default */
	bool strict;             /* --strict-host-key-checking */
	double timeout_s;        /* --ssh-timeout */
	const char *tunnel;      /* --tunnel host[:port], NULL when not tunnelling */
};

/* A running `ssh -N -L` forward: local 127.0.0.1:port reaches remote_host:remote_port as seen
 * from the tunnel host. */
struct ctl_tunnel {
	pid_t pid;
	int port;
};

/* Start the forward to the host:port of `url` (http://h:p) and wait until the local end accepts
 * connections (at most the ssh timeout). On success fills `ret` and writes the local URL to
 * `local_url`; on failure writes a message to `err` and returns a negative errno. */
int ctl_tunnel_open(const struct ctl_ssh_opts *o, const char *url, struct ctl_tunnel *ret,
                    struct buf *local_url, struct buf *err);
/* Stop the forward (SIGTERM, then reap). Accepts a tunnel that never started (pid 0). */
void ctl_tunnel_close(struct ctl_tunnel *t);

/* Run the system's ssh to `host` (a public IP) with the command words `cmd` (may be empty for an
 * interactive shell), through the --tunnel host as a jump host when one is set, and wait for
 * it. Returns ssh's exit code (the remote one), or -1 when ssh could not be run. */
int ctl_ssh_run(const struct ctl_ssh_opts *o, const char *host, int port, bool agent, char **cmd,
                int ncmd);

/* ---- one fleet command (fleet.c; used by fleet_units.c and fleet_show.c) ---- */

#define FLEET_API "/fleet/v1"
/* fleetctl: one block attempt is 2 s of polling every 250 ms */
#define FL_ATTEMPT_NS (2000000000LL)
#define FL_POLL_NS    (250000000LL)

struct fctx {
	struct ctl *ctl;
	const struct ctl_flag *defs; /* the command's flags */
	size_t ndefs;
	const struct ctl_fval *vals;
	struct ctl_tunnel tunnel;
	struct ctl_ssh_opts ssh;
	json_t *machines; /* cache of GET /machines (fleetctl's cachedMachineState); owned */
	bool machines_tried;
	int attempts; /* fleetctl's getBlockAttempts: -1 no block, 0 forever, N */
};

/* The value of the command's flag `name` (all zero when the command has no such flag). */
const struct ctl_fval *fl_flag(const struct fctx *f, const char *name);
/* A message on stderr (stdout flushed first so the two interleave as written), newline added. */
void fl_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void fl_strip_nl(struct buf *b);
/* A string member of a JSON object, "" when absent. */
const char *fl_jstr(json_t *o, const char *k);
void fl_sleep(int64_t ns);

/* One API exchange. Returns 0 with the status and the decoded JSON body (owned, NULL when there
 * is none or it does not parse), or -EIO with the reason in `err`. */
int fl_api(struct fctx *f, const char *method, const char *path, const struct ctl_param *q,
           size_t nq, const char *json, long *ret_status, json_t **ret_body, struct buf *err);
/* The Go client's text for an API error entity: "googleapi: Error 404: unit does not exist". */
void fl_api_error(struct buf *err, long status, json_t *body);
char *fl_unit_path(const char *name); /* returns owned "/fleet/v1/units/<name>" */
/* GET a paged collection ("machines", "units", "states") into one array (owned). 0 or -EIO. */
int fl_get_all(struct fctx *f, const char *what, const struct ctl_param *filter, size_t nf,
               json_t **ret, struct buf *err);
/* GET one unit: 1 and *ret (owned) when it exists, 0 when not, -EIO with `err`. */
int fl_get_unit(struct fctx *f, const char *name, json_t **ret, struct buf *err);
int fl_put_unit(struct fctx *f, const char *name, json_t *obj, struct buf *err);
int fl_set_target(struct fctx *f, const char *name, const char *state, struct buf *err);
/* The registered machine `id` (borrowed from the cache), or NULL. */
json_t *fl_machine(struct fctx *f, const char *id);
/* machineFullLegend of a machine id; only the id part when the machine is not registered. */
void fl_legend(struct fctx *f, struct buf *b, const char *id, bool full);

/* Unit entities: [X-Fleet] Global=true, [Unit] Description, fleet's hash ("" if unreadable). */
bool fl_opts_global(json_t *opts);
bool fl_unit_global(json_t *u);
const char *fl_opts_desc(json_t *opts);
void fl_opts_hash(json_t *opts, char hex[41]);

/* fleetctl's findUnits: the units of the cluster named by the arguments, in argument order. */
struct fl_found {
	json_t **v; /* owned */
	size_t n;
};
int fl_find_units(struct fctx *f, char **args, int n, struct fl_found *ret, struct buf *err);
void fl_found_release(struct fl_found *fd);
/* "No units given" and 1 when argc is 0, else 0. */
int fl_need_units(int argc);

/* The commands: each returns the process exit code. */
int fl_cmd_list_machines(struct fctx *f, int argc, char **argv);
int fl_cmd_list_unit_files(struct fctx *f, int argc, char **argv);
int fl_cmd_list_units(struct fctx *f, int argc, char **argv);
int fl_cmd_cat(struct fctx *f, int argc, char **argv);
int fl_cmd_status(struct fctx *f, int argc, char **argv);
int fl_cmd_journal(struct fctx *f, int argc, char **argv);
int fl_cmd_ssh(struct fctx *f, int argc, char **argv);
int fl_cmd_submit(struct fctx *f, int argc, char **argv);
int fl_cmd_load(struct fctx *f, int argc, char **argv);
int fl_cmd_start(struct fctx *f, int argc, char **argv);
int fl_cmd_stop(struct fctx *f, int argc, char **argv);
int fl_cmd_unload(struct fctx *f, int argc, char **argv);
int fl_cmd_destroy(struct fctx *f, int argc, char **argv);
int fl_cmd_restart(struct fctx *f, int argc, char **argv);

#endif
