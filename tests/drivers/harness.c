/* The test host of the driver ABI (see harness.h): what flotillad's agent does for a driver, cut
 * down to loading it, feeding it tasks and writing down everything it reports. Allocation failures
 * abort: this is test code and a clear crash beats threading ENOMEM through assertions. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <dlfcn.h>
#include <errno.h>
#include <ev.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct hx_task {
	struct flt_task t; /* first: the driver sees this */
	struct hx *hx;
	struct hx_task *next;
	struct flt_option *opts;
	size_t n_opts;
	char *unit, *text, *state_dir, *handle;
	struct hx_status *st;
	size_t n_st, wait_pos;
	struct hx_process *pr;
	size_t n_pr;
	char *out;
	size_t out_len;
	char *last_ident;
	char *last_handle;
	char *trace;
};

struct hx {
	void *dl;
	const struct flt_drv_ops *ops;
	struct flt_drv *drv;
	struct flt_host host;
	struct ev_loop *loop;
	char *base;
	bool own_base;
	struct hx_task *tasks;
};

static void *xmalloc(size_t n)
{
	void *p = calloc(1, n ? n : 1);

	if (!p)
		abort();
	return p;
}

static void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (!p)
		abort();
	return p;
}

static char *xstrdup(const char *s)
{
	char *p;

	if (!s)
		return NULL;
	p = strdup(s);
	if (!p)
		abort();
	return p;
}

static char *xstrndup(const char *s, size_t n)
{
	char *p = strndup(s, n);

	if (!p)
		abort();
	return p;
}

static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		abort();
	va_end(ap);
	return s;
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *hx_active_name(enum flt_active a)
{
	switch (a) {
	case FLT_ACTIVATING:
		return "activating";
	case FLT_ACTIVE:
		return "active";
	case FLT_DEACTIVATING:
		return "deactivating";
	case FLT_INACTIVE:
		return "inactive";
	case FLT_FAILED:
		return "failed";
	}
	return "?";
}

/* ---- the host table ---- */

static void host_log(const struct flt_host *h, enum flt_log_level level, const char *fmt,
                     va_list ap)
{
	static const char *const names[] = {"error", "warn", "info", "debug"};

	if (level == FLT_LOG_DEBUG && !getenv("HX_DEBUG"))
		return;
	fprintf(stderr, "[driver %s] ", names[level]);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

static void host_status(struct flt_task *t, const struct flt_status *st)
{
	struct hx_task *ht = (struct hx_task *)t;
	struct hx_status *s;

	ht->st = xrealloc(ht->st, (ht->n_st + 1) * sizeof(*ht->st));
	s = &ht->st[ht->n_st++];
	s->active = st->active;
	s->sub = xstrdup(st->sub ? st->sub : "");
	s->main_pid = st->main_pid;
	s->handle = xstrdup(st->handle);
	s->exit_code = st->exit_code;
	s->exit_signal = st->exit_signal;
	s->result = xstrdup(st->result);
	s->message = xstrdup(st->message);
	s->at_ms = mono_ms();
	if (st->handle) {
		free(ht->last_handle);
		ht->last_handle = xstrdup(st->handle);
	}
	if (getenv("HX_DEBUG"))
		fprintf(stderr, "[hx] %s: %s/%s pid=%lld code=%d sig=%d result=%s msg=%s\n",
		        t->unit, hx_active_name(s->active), s->sub, (long long)s->main_pid,
		        s->exit_code, s->exit_signal, s->result ? s->result : "-",
		        s->message ? s->message : "-");
}

static void host_output(struct flt_task *t, const char *ident, const char *data, size_t len)
{
	struct hx_task *ht = (struct hx_task *)t;

	ht->out = xrealloc(ht->out, ht->out_len + len + 1);
	memcpy(ht->out + ht->out_len, data, len);
	ht->out_len += len;
	ht->out[ht->out_len] = '\0';
	free(ht->last_ident);
	ht->last_ident = xstrdup(ident);
	if (getenv("HX_DEBUG"))
		fprintf(stderr, "[hx] %s: %s: %.*s", t->unit, ident, (int)len, data);
}

static void host_process(struct flt_task *t, const struct flt_process *p)
{
	struct hx_task *ht = (struct hx_task *)t;
	struct hx_process *r;

	ht->pr = xrealloc(ht->pr, (ht->n_pr + 1) * sizeof(*ht->pr));
	r = &ht->pr[ht->n_pr++];
	r->kind = xstrdup(p->kind);
	r->line = xstrdup(p->argv0_line);
	r->pid = p->pid;
	r->exit_code = p->exit_code;
	r->exit_signal = p->exit_signal;
	if (getenv("HX_DEBUG"))
		fprintf(stderr, "[hx] %s: Process: %lld %s=%s (code=%d sig=%d)\n", t->unit,
		        (long long)r->pid, r->kind, r->line, r->exit_code, r->exit_signal);
}

/* ---- open / close ---- */

struct hx *hx_open_in(const char *so_path, const char *const *kv, const char *state_base)
{
	struct hx *hx = xmalloc(sizeof(*hx));
	const struct flt_drv_ops *(*entry)(void);
	struct flt_drv_config cfg = {0};
	const char **keys = NULL, **vals = NULL;
	const char *why = NULL;
	size_t n = 0;
	int r;

	hx->loop = ev_default_loop(0);
	hx->dl = dlopen(so_path, RTLD_NOW | RTLD_LOCAL);
	if (!hx->dl) {
		fprintf(stderr, "hx: cannot load '%s': %s\n", so_path, dlerror());
		goto fail;
	}
	*(void **)&entry = dlsym(hx->dl, FLT_DRIVER_ENTRY);
	if (!entry) {
		fprintf(stderr, "hx: '%s' has no %s\n", so_path, FLT_DRIVER_ENTRY);
		goto fail;
	}
	hx->ops = entry();
	if (!hx->ops || hx->ops->abi_major != FLT_DRV_ABI_MAJOR ||
	    hx->ops->ops_size < offsetof(struct flt_drv_ops, list)) {
		fprintf(stderr, "hx: '%s' is not binary compatible\n", so_path);
		goto fail;
	}
	hx->host.abi_major = FLT_DRV_ABI_MAJOR;
	hx->host.abi_minor = FLT_DRV_ABI_MINOR;
	hx->host.host_size = sizeof(hx->host);
	hx->host.loop = hx->loop;
	hx->host.log = host_log;
	hx->host.task_status = host_status;
	hx->host.task_output = host_output;
	hx->host.task_process = host_process;
	hx->host.userdata = hx;

	while (kv && kv[2 * n])
		n++;
	keys = xmalloc((n + 1) * sizeof(*keys));
	vals = xmalloc((n + 1) * sizeof(*vals));
	for (size_t i = 0; i < n; i++) {
		keys[i] = kv[2 * i];
		vals[i] = kv[2 * i + 1];
	}
	cfg.keys = keys;
	cfg.values = vals;
	cfg.n = n;
	r = hx->ops->open(&hx->host, &cfg, &hx->drv, &why);
	free(keys);
	free(vals);
	if (r < 0) {
		fprintf(stderr, "hx: cannot open driver '%s': %s (%s)\n", so_path, strerror(-r),
		        why ? why : "no reason given");
		goto fail;
	}

	if (state_base) {
		hx->base = xstrdup(state_base);
		if (mkdir(state_base, 0700) < 0 && errno != EEXIST) {
			fprintf(stderr, "hx: cannot create '%s': %s\n", state_base,
			        strerror(errno));
			goto fail_drv;
		}
	} else {
		const char *tmp = getenv("TMPDIR");

		hx->base = xasprintf("%s/hx-state.XXXXXX", tmp && *tmp ? tmp : "/tmp");
		if (!mkdtemp(hx->base)) {
			fprintf(stderr, "hx: cannot create '%s': %s\n", hx->base, strerror(errno));
			goto fail_drv;
		}
		hx->own_base = true;
	}
	return hx;

fail_drv:
	hx->ops->close(hx->drv);
fail:
	if (hx->dl)
		dlclose(hx->dl);
	free(hx->base);
	free(hx);
	return NULL;
}

const char *hx_state_base(const struct hx *hx)
{
	return hx->base;
}

const struct flt_drv_ops *hx_ops(const struct hx *hx)
{
	return hx->ops;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

static void task_free(struct hx_task *ht)
{
	for (size_t i = 0; i < ht->n_opts; i++) {
		free((char *)ht->opts[i].section);
		free((char *)ht->opts[i].name);
		free((char *)ht->opts[i].value);
	}
	free(ht->opts);
	for (size_t i = 0; i < ht->n_st; i++) {
		free(ht->st[i].sub);
		free(ht->st[i].handle);
		free(ht->st[i].result);
		free(ht->st[i].message);
	}
	free(ht->st);
	for (size_t i = 0; i < ht->n_pr; i++) {
		free(ht->pr[i].kind);
		free(ht->pr[i].line);
	}
	free(ht->pr);
	free(ht->unit);
	free(ht->text);
	free(ht->state_dir);
	free(ht->handle);
	free(ht->out);
	free(ht->last_ident);
	free(ht->last_handle);
	free(ht->trace);
	free(ht);
}

void hx_close(struct hx *hx)
{
	if (!hx)
		return;
	hx->ops->close(hx->drv);
	while (hx->tasks) {
		struct hx_task *next = hx->tasks->next;

		task_free(hx->tasks);
		hx->tasks = next;
	}
	if (hx->own_base)
		nftw(hx->base, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(hx->base);
	/* Valgrind reports dlclose'd code as "???" frames; keep the .so mapped when asked. */
	if (!getenv("HX_NO_DLCLOSE"))
		dlclose(hx->dl);
	free(hx);
}

/* ---- unit text ---- */

static char *trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
		*--e = '\0';
	return s;
}

static void add_opt(struct hx_task *ht, const char *sec, const char *name, const char *value)
{
	ht->opts = xrealloc(ht->opts, (ht->n_opts + 1) * sizeof(*ht->opts));
	ht->opts[ht->n_opts].section = xstrdup(sec);
	ht->opts[ht->n_opts].name = xstrdup(name);
	ht->opts[ht->n_opts].value = xstrdup(value);
	ht->n_opts++;
}

static void parse_unit(struct hx_task *ht, const char *text)
{
	char *sec = xstrdup("");
	char *line = NULL;
	size_t line_len = 0;
	const char *p = text;

	while (*p) {
		const char *nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p) : strlen(p);
		char *seg = xstrndup(p, n), *s;
		bool cont;

		p += n + (nl ? 1 : 0);
		s = trim(seg);
		if (!line && (*s == '#' || *s == ';' || !*s)) {
			free(seg);
			continue;
		}
		cont = *s && s[strlen(s) - 1] == '\\';
		if (cont)
			s[strlen(s) - 1] = ' ';
		line = xrealloc(line, line_len + strlen(s) + 1);
		memcpy(line + line_len, s, strlen(s) + 1);
		line_len += strlen(s);
		free(seg);
		if (cont && *p)
			continue;

		s = trim(line);
		if (*s == '[') {
			char *e = strchr(s, ']');

			if (e)
				*e = '\0';
			free(sec);
			sec = xstrdup(s + 1);
		} else {
			char *eq = strchr(s, '=');

			if (eq) {
				*eq = '\0';
				add_opt(ht, sec, trim(s), trim(eq + 1));
			}
		}
		free(line);
		line = NULL;
		line_len = 0;
	}
	free(line);
	free(sec);
}

struct flt_task *hx_task(struct hx *hx, const char *unit, const char *unit_text)
{
	struct hx_task *ht = xmalloc(sizeof(*ht));

	ht->hx = hx;
	ht->unit = xstrdup(unit);
	ht->text = xstrdup(unit_text);
	ht->state_dir = xasprintf("%s/%s", hx->base, unit);
	if (mkdir(ht->state_dir, 0700) < 0 && errno != EEXIST)
		fprintf(stderr, "hx: cannot create '%s': %s\n", ht->state_dir, strerror(errno));
	parse_unit(ht, unit_text);
	ht->t.unit = ht->unit;
	ht->t.machine_id = "0123456789abcdef0123456789abcdef";
	ht->t.options = ht->opts;
	ht->t.n_options = ht->n_opts;
	ht->t.unit_text = ht->text;
	ht->t.state_dir = ht->state_dir;
	ht->out = xstrdup("");
	ht->next = hx->tasks;
	hx->tasks = ht;
	return &ht->t;
}

/* ---- driver calls ---- */

int hx_start(struct hx *hx, struct flt_task *t)
{
	return hx->ops->start(hx->drv, t);
}

int hx_stop(struct hx *hx, struct flt_task *t, unsigned timeout_ms)
{
	return hx->ops->stop(hx->drv, t, timeout_ms);
}

int hx_adopt(struct hx *hx, struct flt_task *t, const char *handle)
{
	struct hx_task *ht = (struct hx_task *)t;

	free(ht->handle);
	ht->handle = xstrdup(handle);
	t->handle = ht->handle;
	return hx->ops->adopt(hx->drv, t);
}

void hx_release(struct hx *hx, struct flt_task *t)
{
	hx->ops->release(hx->drv, t);
}

/* ---- waiting ---- */

static void deadline_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	*(bool *)w->data = true;
}

bool hx_wait_for(struct hx *hx, bool (*pred)(void *ctx), void *ctx, unsigned timeout_ms)
{
	bool expired = false, ok;
	ev_timer deadline;

	/* pred may consume what it matched (hx_wait): call it once per loop turn, keep its answer
	 */
	if (pred(ctx))
		return true;
	ev_timer_init(&deadline, deadline_cb, timeout_ms / 1000.0, 0.);
	deadline.data = &expired;
	ev_now_update(hx->loop);
	ev_timer_start(hx->loop, &deadline);
	do {
		ev_run(hx->loop, EVRUN_ONCE);
		ok = pred(ctx);
	} while (!ok && !expired);
	ev_timer_stop(hx->loop, &deadline);
	return ok;
}

struct wait_ctx {
	struct hx_task *ht;
	enum flt_active active;
	const char *sub;
	const char *needle;
};

static bool status_pred(void *arg)
{
	struct wait_ctx *c = arg;
	struct hx_task *ht = c->ht;

	for (size_t i = ht->wait_pos; i < ht->n_st; i++)
		if (ht->st[i].active == c->active && (!c->sub || !strcmp(ht->st[i].sub, c->sub))) {
			ht->wait_pos = i + 1;
			return true;
		}
	return false;
}

bool hx_wait(struct hx *hx, struct flt_task *t, enum flt_active active, const char *sub,
             unsigned timeout_ms)
{
	struct wait_ctx c = {(struct hx_task *)t, active, sub, NULL};

	return hx_wait_for(hx, status_pred, &c, timeout_ms);
}

static bool output_pred(void *arg)
{
	struct wait_ctx *c = arg;

	return strstr(c->ht->out, c->needle) != NULL;
}

bool hx_wait_output(struct hx *hx, struct flt_task *t, const char *needle, unsigned timeout_ms)
{
	struct wait_ctx c = {(struct hx_task *)t, 0, NULL, needle};

	return hx_wait_for(hx, output_pred, &c, timeout_ms);
}

static bool never(void *ctx)
{
	(void)ctx;
	return false;
}

void hx_run_for(struct hx *hx, unsigned ms)
{
	hx_wait_for(hx, never, NULL, ms);
}

/* ---- accessors ---- */

const char *hx_output(struct hx *hx, struct flt_task *t)
{
	(void)hx;
	return ((struct hx_task *)t)->out;
}

const char *hx_last_ident(struct hx *hx, struct flt_task *t)
{
	(void)hx;
	return ((struct hx_task *)t)->last_ident;
}

size_t hx_n_status(struct hx *hx, struct flt_task *t)
{
	(void)hx;
	return ((struct hx_task *)t)->n_st;
}

const struct hx_status *hx_status_at(struct hx *hx, struct flt_task *t, size_t i)
{
	struct hx_task *ht = (struct hx_task *)t;

	(void)hx;
	return i < ht->n_st ? &ht->st[i] : NULL;
}

const struct hx_status *hx_last_status(struct hx *hx, struct flt_task *t)
{
	struct hx_task *ht = (struct hx_task *)t;

	(void)hx;
	return ht->n_st ? &ht->st[ht->n_st - 1] : NULL;
}

const char *hx_handle(struct hx *hx, struct flt_task *t)
{
	(void)hx;
	return ((struct hx_task *)t)->last_handle;
}

size_t hx_n_process(struct hx *hx, struct flt_task *t)
{
	(void)hx;
	return ((struct hx_task *)t)->n_pr;
}

const struct hx_process *hx_process_at(struct hx *hx, struct flt_task *t, size_t i)
{
	struct hx_task *ht = (struct hx_task *)t;

	(void)hx;
	return i < ht->n_pr ? &ht->pr[i] : NULL;
}

const char *hx_trace(struct hx *hx, struct flt_task *t)
{
	struct hx_task *ht = (struct hx_task *)t;
	size_t len = 0;

	(void)hx;
	for (size_t i = 0; i < ht->n_st; i++)
		len += strlen(hx_active_name(ht->st[i].active)) + strlen(ht->st[i].sub) + 2;
	free(ht->trace);
	ht->trace = xmalloc(len + 1);
	for (size_t i = 0; i < ht->n_st; i++) {
		strcat(ht->trace, hx_active_name(ht->st[i].active));
		strcat(ht->trace, "/");
		strcat(ht->trace, ht->st[i].sub);
		if (i + 1 < ht->n_st)
			strcat(ht->trace, " ");
	}
	return ht->trace;
}
