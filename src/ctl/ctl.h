/* flotctl's shared core: the command table, the global options every command sees, etcdctl's
 * exit codes and error printing, and buffer helpers that treat allocation failure as fatal (a
 * CLI has nothing better to do than say so and exit). Command families (keys.c today, fleet
 * units in fleet.c, members) each export a table of `struct ctl_cmd` that flotctl.c lists. */
#ifndef FLT_CTL_CTL_H
#define FLT_CTL_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "ctl/args.h"
#include "util/buf.h"

struct ctl_client;
struct ctl_error;

/* etcdctl's exit codes (etcdctl/ctlv2/command/error.go and urfave/cli). */
enum {
	CTL_EXIT_OK = 0,
	CTL_EXIT_BADARGS = 1,   /* usage errors, bad endpoints, "key required", "is a directory" */
	CTL_EXIT_BADCONN = 2,   /* the cluster could not be reached while syncing */
	CTL_EXIT_NOCMD = 3,     /* no such command / help topic */
	CTL_EXIT_SERVERERR = 4, /* the request failed: etcd error or no endpoint answered */
};

/* Global options, in the order of the global flag table in flotctl.c. */
enum ctl_gopt {
	CTL_G_DEBUG,
	CTL_G_NOSYNC,
	CTL_G_OUTPUT,
	CTL_G_DISCOVERY,
	CTL_G_INSECURE_DISCOVERY,
	CTL_G_PEERS,
	CTL_G_ENDPOINT,
	CTL_G_ENDPOINTS,
	CTL_G_CERT,
	CTL_G_KEY,
	CTL_G_CA,
	CTL_G_USERNAME,
	CTL_G_TIMEOUT,
	CTL_G_TOTAL_TIMEOUT,
	/* fleetctl's global flags (fleet.c); also accepted after a fleet command's name */
	CTL_G_TUNNEL,
	CTL_G_SSH_USERNAME,
	CTL_G_SSH_TIMEOUT,
	CTL_G_STRICT_HOST_KEY,
	CTL_G_KNOWN_HOSTS,
	CTL_G_REQUEST_TIMEOUT,
	CTL_G_VERSION,
	CTL_G_COUNT
};

/* One invocation: global flag values and the client, created on first use. */
struct ctl {
	const struct ctl_flag *gdefs;
	struct ctl_fval g[CTL_G_COUNT];
	const char *output; /* "simple", "extended", "json" or anything the user typed */
	struct ctl_client *client;
	char *password; /* owned: from --username user:pass or the prompt */
};

struct ctl_cmd {
	const char *name;
	const char *summary;     /* one line, for the command list */
	const char *args_usage;  /* "<key> <value>" */
	const char *description; /* extra help paragraph, or NULL */
	const struct ctl_flag *flags;
	size_t n_flags;
	/* Runs with the parsed flag values and the operands; returns the process exit code. */
	int (*run)(struct ctl *ctl, const struct ctl_fval *vals, int argc, char **argv);
};

/* Command tables of each family. */
extern const struct ctl_cmd ctl_keys_cmds[];
extern const size_t ctl_keys_ncmds;
extern const struct ctl_cmd ctl_member_cmds[]; /* members.c */
extern const size_t ctl_member_ncmds;
extern const struct ctl_cmd ctl_fleet_cmds[]; /* fleet.c: fleetctl's unit commands */
extern const size_t ctl_fleet_ncmds;

/* Connect as etcdctl's mustNewClient does: parse the endpoints, sync the member list unless
 * --no-sync (printing the --debug lines), and exit-code the failures. On failure prints the
 * message and returns the exit code (> 0); on success returns 0 and ctl->client is set. */
int ctl_connect(struct ctl *ctl);

/* etcdctl's handleError: "Error:  <msg>" (two spaces) plus a cluster error's per-endpoint
 * detail on stderr. Returns `code` so callers can `return ctl_fail(...)`. */
int ctl_fail(struct ctl *ctl, int code, const struct ctl_error *err);
int ctl_fail_msg(int code, const char *msg);

/* The total-timeout deadline for one command, on the monotonic clock (ns). */
int64_t ctl_deadline(const struct ctl *ctl);

/* Allocation failure in the CLI: print and exit(1). */
void ctl_oom(void) __attribute__((noreturn));

static inline void cb_append(struct buf *b, const void *p, size_t n)
{
	if (buf_append(b, p, n) < 0)
		ctl_oom();
}

static inline void cb_puts(struct buf *b, const char *s)
{
	if (buf_puts(b, s) < 0)
		ctl_oom();
}

static inline void cb_putc(struct buf *b, char c)
{
	if (buf_putc(b, c) < 0)
		ctl_oom();
}

void cb_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Write the whole buffer to a stdio stream and flush (watch output must appear at once). */
void ctl_write(FILE *f, const struct buf *b);

#endif
