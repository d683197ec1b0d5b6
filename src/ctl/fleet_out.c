/* What flotctl's fleetctl commands print: tables laid out exactly as Go's text/tabwriter lays out
 * fleetctl's (tabs, not spaces, so scripts that cut on tabs keep working), machine legends, and
 * `status` in the shape of `systemctl status` that fleetctl users know from their terminals. */
#include "ctl/fleet_int.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void ctl_table_init(struct ctl_table *t, size_t ncols)
{
	t->cells = NULL;
	t->ncols = ncols;
	t->n = 0;
	t->cap = 0;
}

void ctl_table_release(struct ctl_table *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->cells[i]);
	free(t->cells);
	t->cells = NULL;
	t->n = t->cap = 0;
}

void ctl_table_add(struct ctl_table *t, const char *cell)
{
	if (t->n == t->cap) {
		size_t ncap = t->cap ? t->cap * 2 : t->ncols * 8;
		char **nc = realloc(t->cells, ncap * sizeof(*nc));

		if (!nc)
			ctl_oom();
		t->cells = nc;
		t->cap = ncap;
	}
	t->cells[t->n] = strdup(cell && *cell ? cell : "-");
	if (!t->cells[t->n])
		ctl_oom();
	t->n++;
}

/* Width in code points, as tabwriter counts (utf8.RuneCount). */
static size_t text_width(const char *s)
{
	size_t n = 0;

	for (; *s; s++)
		n += ((unsigned char)*s & 0xc0) != 0x80;
	return n;
}

void ctl_table_render(const struct ctl_table *t, struct buf *out)
{
	size_t *width = calloc(t->ncols ? t->ncols : 1, sizeof(*width));

	if (!width)
		ctl_oom();
	/* every line has the same number of cells, so each column is one tabwriter block */
	size_t nrows = t->n / t->ncols;

	for (size_t c = 0; c + 1 < t->ncols; c++) {
		size_t w = 0;

		for (size_t r = 0; r < nrows; r++) {
			size_t cw = text_width(t->cells[r * t->ncols + c]) + 1; /* padding 1 */

			if (cw > w)
				w = cw;
		}
		width[c] = (w + 7) / 8 * 8;
	}
	for (size_t r = 0; r < nrows; r++) {
		for (size_t c = 0; c < t->ncols; c++) {
			const char *cell = t->cells[r * t->ncols + c];

			cb_puts(out, cell);
			if (c + 1 < t->ncols) {
				size_t pad = width[c] - text_width(cell);

				for (size_t k = 0; k < (pad + 7) / 8; k++)
					cb_putc(out, '\t');
			}
		}
		cb_putc(out, '\n');
	}
	free(width);
}

void ctl_machine_legend(struct buf *b, const char *id, const char *ip, bool full, bool with_ip)
{
	if (full || strlen(id) <= 8)
		cb_puts(b, id);
	else
		cb_append(b, id, 8);
	if (!full)
		cb_puts(b, "...");
	if (with_ip && ip && *ip) {
		cb_putc(b, '/');
		cb_puts(b, ip);
	}
}

/* ---- status ---- */

static const char *jstr(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);

	return json_is_string(v) ? json_string_value(v) : NULL;
}

static int64_t jint(json_t *o, const char *k, int64_t dflt)
{
	json_t *v = json_object_get(o, k);

	if (json_is_integer(v))
		return (int64_t)json_integer_value(v);
	if (json_is_real(v))
		return (int64_t)json_real_value(v);
	return dflt;
}

/* systemd's names for the exit statuses it shows most ("status=1/FAILURE"). */
static const char *exit_status_name(int64_t code)
{
	static const char *const base[] = {"SUCCESS",        "FAILURE",      "INVALIDARGUMENT",
	                                   "NOTIMPLEMENTED", "NOPERMISSION", "NOTINSTALLED",
	                                   "NOTCONFIGURED",  "NOTRUNNING"};

	if (code >= 0 && code < 8)
		return base[code];
	switch (code) {
	case 200:
		return "CHDIR";
	case 203:
		return "EXEC";
	case 217:
		return "USER";
	case 226:
		return "NAMESPACE";
	default:
		return NULL;
	}
}

static const char *signal_name(int64_t sig)
{
	static const char *const names[] = {NULL,   "HUP",  "INT",  "QUIT", "ILL",  "TRAP", "ABRT",
	                                    "BUS",  "FPE",  "KILL", "USR1", "SEGV", "USR2", "PIPE",
	                                    "ALRM", "TERM", NULL,   "CHLD", "CONT", "STOP", "TSTP"};

	if (sig > 0 && (size_t)sig < sizeof(names) / sizeof(names[0]) && names[sig])
		return names[sig];
	return NULL;
}

/* "(code=exited, status=1/FAILURE)" or "(code=killed, signal=TERM)" */
static void put_exit(struct buf *b, int64_t code, int64_t sig)
{
	if (sig > 0) {
		const char *n = signal_name(sig);

		if (n)
			cb_printf(b, "(code=killed, signal=%s)", n);
		else
			cb_printf(b, "(code=killed, signal=%" PRId64 ")", sig);
		return;
	}
	if (exit_status_name(code))
		cb_printf(b, "(code=exited, status=%" PRId64 "/%s)", code, exit_status_name(code));
	else
		cb_printf(b, "(code=exited, status=%" PRId64 ")", code);
}

/* systemd's format_timestamp_relative: "50s ago", "3min 2s ago", "2h 5min ago", "1 day 2h ago". */
static void put_ago(struct buf *b, int64_t d_ns)
{
	const int64_t S = 1000000000LL, MIN = 60 * S, H = 60 * MIN, D = 24 * H, W = 7 * D;
	const int64_t MON = 2629800LL * S, Y = 31557600LL * S;

	if (d_ns < 0) {
		cb_puts(b, "in the future");
		return;
	}
	if (d_ns >= Y)
		cb_printf(b, "%" PRId64 " years %" PRId64 " months", d_ns / Y, (d_ns % Y) / MON);
	else if (d_ns >= MON)
		cb_printf(b, "%" PRId64 " months %" PRId64 " days", d_ns / MON, (d_ns % MON) / D);
	else if (d_ns >= W)
		cb_printf(b, "%" PRId64 " weeks %" PRId64 " days", d_ns / W, (d_ns % W) / D);
	else if (d_ns >= 2 * D)
		cb_printf(b, "%" PRId64 " days", d_ns / D);
	else if (d_ns >= 25 * H)
		cb_printf(b, "1 day %" PRId64 "h", (d_ns - D) / H);
	else if (d_ns >= 6 * H)
		cb_printf(b, "%" PRId64 "h", d_ns / H);
	else if (d_ns >= H)
		cb_printf(b, "%" PRId64 "h %" PRId64 "min", d_ns / H, (d_ns % H) / MIN);
	else if (d_ns >= 5 * MIN)
		cb_printf(b, "%" PRId64 "min", d_ns / MIN);
	else if (d_ns >= MIN)
		cb_printf(b, "%" PRId64 "min %" PRId64 "s", d_ns / MIN, (d_ns % MIN) / S);
	else if (d_ns >= S)
		cb_printf(b, "%" PRId64 "s", d_ns / S);
	else
		cb_printf(b, "%" PRId64 "ms", d_ns / 1000000);
	cb_puts(b, " ago");
}

/* The command's program name, as systemd shows it after the main PID: "(docker)". */
static void put_comm(struct buf *b, const char *cmd)
{
	const char *end = cmd + strcspn(cmd, " \t"), *start = cmd;

	for (const char *p = cmd; p < end; p++)
		if (*p == '/')
			start = p + 1;
	cb_append(b, start, (size_t)(end - start));
}

void ctl_status_render(struct buf *b, json_t *st, const char *legend, const char *journal,
                       int64_t now_ns)
{
	const char *unit = jstr(st, "unit"), *desc = jstr(st, "description");
	const char *load = jstr(st, "loadState"), *active = jstr(st, "activeState");
	const char *sub = jstr(st, "subState"), *host = jstr(st, "hostname");
	const char *main_cmd = jstr(st, "mainCommand"), *msg = jstr(st, "message");
	const char *result = jstr(st, "result");
	int64_t since = jint(st, "since", 0), pid = jint(st, "mainPID", 0);
	int64_t restarts = jint(st, "restarts", 0);
	json_t *procs = json_object_get(st, "processes"), *p;
	size_t i;

	cb_printf(b, "%s %s", active && !strcmp(active, "active") ? "\xe2\x97\x8f" : "\xe2\x97\x8b",
	          unit ? unit : "-");
	if (desc && *desc)
		cb_printf(b, " - %s", desc);
	cb_putc(b, '\n');
	cb_printf(b, "   Loaded: %s\n", load && *load ? load : "-");
	cb_printf(b, "   Active: %s", active && *active ? active : "unknown");
	if (sub && *sub)
		cb_printf(b, " (%s)", sub);
	if (active && !strcmp(active, "failed") && result && *result && strcmp(result, "success"))
		cb_printf(b, " (Result: %s)", result);
	if (since > 0) {
		time_t t = (time_t)(since / 1000000000LL);
		struct tm tm;
		char when[64];

		if (localtime_r(&t, &tm) &&
		    strftime(when, sizeof(when), "%a %Y-%m-%d %H:%M:%S %Z", &tm))
			cb_printf(b, " since %s; ", when);
		else
			cb_puts(b, " since ");
		put_ago(b, now_ns - since);
	}
	cb_putc(b, '\n');
	if (legend && *legend) {
		cb_printf(b, "  Machine: %s", legend);
		if (host && *host)
			cb_printf(b, " (%s)", host);
		cb_putc(b, '\n');
	}
	/* systemd lists the processes newest first */
	if (json_is_array(procs)) {
		for (i = json_array_size(procs); i-- > 0;) {
			const char *kind, *cmd;

			p = json_array_get(procs, i);
			kind = jstr(p, "kind");
			cmd = jstr(p, "command");
			cb_printf(b, "  Process: %" PRId64 " %s=%s ", jint(p, "pid", 0),
			          kind ? kind : "Exec", cmd ? cmd : "");
			put_exit(b, jint(p, "exitCode", 0), jint(p, "exitSignal", 0));
			cb_putc(b, '\n');
		}
	}
	if (pid > 0) {
		cb_printf(b, " Main PID: %" PRId64 " ", pid);
		if (active && (!strcmp(active, "active") || !strcmp(active, "deactivating") ||
		               !strcmp(active, "reloading"))) {
			cb_putc(b, '(');
			put_comm(b, main_cmd ? main_cmd : "");
			cb_putc(b, ')');
		} else {
			put_exit(b, jint(st, "exitCode", 0), jint(st, "exitSignal", 0));
		}
		cb_putc(b, '\n');
	}
	if (restarts > 0)
		cb_printf(b, " Restarts: %" PRId64 "\n", restarts);
	if (msg && *msg)
		cb_printf(b, "   Reason: %s\n", msg);
	if (journal && *journal) {
		cb_putc(b, '\n');
		cb_puts(b, journal);
		if (journal[strlen(journal) - 1] != '\n')
			cb_putc(b, '\n');
	}
}
