/* The docker runtime driver: runs a unit as a container through the Docker Engine API (/v1.41)
 * on a unix socket (or tcp), with libcurl's multi interface driven by the host's libev loop, so
 * nothing here ever blocks. Containers carry labels naming unit and machine: that is how the agent
 * re-adopts them after a restart (adopt) and finds strays (list/remove).
 *
 * A run (struct dk_run) is separate from the host's task: it is created by start()/adopt(), it
 * walks pull -> create -> start -> inspect -> (wait + logs), and it is freed as soon as the final
 * status is reported, so the host may reuse or free the task from inside task_status. The
 * container is then removed by a request that belongs to nobody. Every libcurl call that adds or
 * removes a transfer is deferred to a zero-delay timer ("kick"), because the host may call back
 * into the driver from inside a curl write callback (task_output), where libcurl forbids it.
 * The container spec sent to POST /containers/create is built from the unit in spec.c. */

#include <flotilla/driver.h>

#include "../common/drvutil.h"
#include "spec.h"
#include "util/buf.h"
#include "util/util.h"

#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <ev.h>
#include <jansson.h>

#define DK_API            "/v1.41"
#define DK_DEFAULT_HOST   "unix:///var/run/docker.sock"
#define DK_DEFAULT_PREFIX "flotilla-"
#define DK_MAX_BODY       (8u << 20) /* answers we keep whole (not logs): JSON is small */
#define DK_CTL_TIMEOUT_MS 60000L     /* create/start/inspect/delete: docker answers at once */
#define DK_PING_S         5.0        /* how often ready() is checked against the daemon */
#define DK_CONNECT_MS     5000L
#define DK_LOG_GRACE      2.0 /* seconds the log stream may lag behind the exit */
#define DK_CONFLICT_TRIES 3   /* a same-named old container being removed at the same time */

enum dk_phase {
	DK_PH_PULL,    /* POST /images/create */
	DK_PH_CREATE,  /* POST /containers/create */
	DK_PH_CLEAR,   /* a same-named container is in the way: inspect, then remove it */
	DK_PH_START,   /* POST /containers/{id}/start */
	DK_PH_INSPECT, /* GET /containers/{id}/json (after start, or for adopt) */
	DK_PH_RUNNING, /* wait and logs in flight */
};

struct flt_drv;
struct dk_run;
struct dk_req;

typedef void dk_done_fn(struct dk_req *r);
typedef void dk_list_cb(void *ctx, const char *unit, const char *handle);

struct dk_req {
	struct flt_drv *d;
	struct dk_req *prev, *next; /* d->reqs */
	CURL *easy;
	struct curl_slist *hdrs;
	struct buf resp;
	long status; /* HTTP status, 0 if none arrived */
	CURLcode cc;
	long os_errno;
	bool added;     /* handed to the multi handle */
	bool cancelled; /* nobody wants the answer: free it at the next chance */
	struct dk_run *run;
	dk_done_fn *done;
	bool streaming; /* logs: the body goes through dk_logs_write, not into resp */
	const char *what;
	/* list() */
	dk_list_cb *list_cb;
	void *list_ctx;
	char errbuf[CURL_ERROR_SIZE]; /* libcurl's contract: a buffer of exactly this size */
};

struct dk_sock {
	ev_io io;
	struct flt_drv *d;
	struct dk_sock *prev, *next;
};

struct dk_run {
	struct flt_drv *d;
	struct dk_run *prev, *next; /* d->runs */
	struct flt_task *t;
	enum dk_phase phase;
	char *name;        /* container name */
	char *id;          /* container id, once known */
	char *image;       /* for a pull */
	char *create_body; /* JSON, kept for the retry after a pull or a conflict */
	char *ident;       /* "docker[pid]" for the journal */
	enum dk_pull pull;
	int conflicts;
	bool adopting;
	bool pulled;
	int64_t pid;
	bool tty;
	/* stop() */
	bool stop_req;
	bool stop_sent;
	unsigned stop_ms;
	/* the end */
	struct dk_req *wait_req, *logs_req, *ctl_req;
	bool waited;
	long exit_status;
	char *wait_error;
	ev_timer grace;
	/* demultiplexing docker's 8-byte stream headers */
	unsigned char hdr[8];
	size_t hlen;
	size_t left;
};

struct flt_drv {
	const struct flt_host *host;
	struct ev_loop *loop;
	CURLM *multi;
	ev_timer timer;   /* libcurl's timeout */
	ev_timer kick;    /* deferred adds and removals */
	char *host_url;   /* as configured, for messages */
	char *sock_path;  /* unix socket, or NULL for tcp */
	char *base;       /* "http://docker/v1.41" */
	char *prefix;     /* container names */
	char *machine_id; /* filter of list(): configured, or learnt from the first task */
	struct dk_req *reqs;
	struct dk_run *runs;
	struct dk_sock *socks;
	int ping; /* 0: no answer yet, 1: docker answered, <0: failed */
	bool ping_in_flight;
	ev_timer ping_w; /* asks again every DK_PING_S: ready() follows the daemon */
};

static void dk_kick(struct flt_drv *d)
{
	if (!ev_is_active(&d->kick)) {
		ev_timer_set(&d->kick, 0., 0.);
		ev_timer_start(d->loop, &d->kick);
	}
}

/* ---- requests ---- */

static void dk_req_free(struct dk_req *r)
{
	struct flt_drv *d = r->d;

	if (r->added)
		curl_multi_remove_handle(d->multi, r->easy);
	if (r->prev)
		r->prev->next = r->next;
	else
		d->reqs = r->next;
	if (r->next)
		r->next->prev = r->prev;
	if (r->list_cb) /* list() promised an end marker, whatever happened */
		r->list_cb(r->list_ctx, NULL, NULL);
	curl_easy_cleanup(r->easy);
	curl_slist_free_all(r->hdrs);
	buf_release(&r->resp);
	free(r);
}

/* Nobody will look at the answer: forget the owner now, free at the next kick (a transfer must
 * not be removed from inside libcurl's callbacks). */
static void dk_req_cancel(struct dk_req *r)
{
	if (!r)
		return;
	r->cancelled = true;
	r->run = NULL;
	r->done = NULL;
	dk_kick(r->d);
}

static size_t dk_logs_write(struct dk_req *r, const char *p, size_t n);

static size_t dk_write_cb(char *p, size_t size, size_t nmemb, void *userdata)
{
	struct dk_req *r = userdata;
	size_t n = size * nmemb;

	if (r->cancelled)
		return 0; /* aborts the transfer; freed when it completes */
	if (r->streaming)
		return dk_logs_write(r, p, n);
	if (r->resp.len + n > DK_MAX_BODY || buf_append(&r->resp, p, n) < 0)
		return 0;
	return n;
}

/* A request on `path` (below /v1.41). `body` is JSON or NULL. `timeout_ms` 0 is no limit (wait,
 * logs, pull, stop). Returns the queued request or NULL (no memory). */
static struct dk_req *dk_req_new(struct flt_drv *d, struct dk_run *run, const char *method,
                                 const char *path, const char *body, long timeout_ms,
                                 dk_done_fn *done, const char *what)
{
	struct dk_req *r = calloc(1, sizeof(*r));
	struct buf url = BUF_INIT;

	if (!r)
		return NULL;
	r->d = d;
	r->run = run;
	r->done = done;
	r->what = what;
	buf_init(&r->resp);
	r->easy = curl_easy_init();
	if (!r->easy || buf_printf(&url, "%s%s", d->base, path) < 0)
		goto fail;
	if (body) {
		r->hdrs = curl_slist_append(NULL, "Content-Type: application/json");
		if (!r->hdrs)
			goto fail;
	}
	{
		/* curl would send "Expect: 100-continue" for larger bodies; docker does not need it
		 */
		struct curl_slist *h = curl_slist_append(r->hdrs, "Expect:");
		if (!h)
			goto fail;
		r->hdrs = h;
	}
	curl_easy_setopt(r->easy, CURLOPT_URL, url.data);
	if (d->sock_path)
		curl_easy_setopt(r->easy, CURLOPT_UNIX_SOCKET_PATH, d->sock_path);
	curl_easy_setopt(r->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(r->easy, CURLOPT_CONNECTTIMEOUT_MS, DK_CONNECT_MS);
	curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->hdrs);
	curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, dk_write_cb);
	curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(r->easy, CURLOPT_PRIVATE, r);
	curl_easy_setopt(r->easy, CURLOPT_ERRORBUFFER, r->errbuf);
	if (!strcmp(method, "POST")) {
		curl_easy_setopt(r->easy, CURLOPT_POST, 1L);
		curl_easy_setopt(r->easy, CURLOPT_POSTFIELDSIZE, body ? (long)strlen(body) : 0L);
		curl_easy_setopt(r->easy, CURLOPT_COPYPOSTFIELDS, body ? body : "");
	} else if (strcmp(method, "GET")) {
		curl_easy_setopt(r->easy, CURLOPT_CUSTOMREQUEST, method);
	}
	buf_release(&url);
	r->next = d->reqs;
	if (d->reqs)
		d->reqs->prev = r;
	d->reqs = r;
	dk_kick(d);
	return r;
fail:
	buf_release(&url);
	if (r->easy)
		curl_easy_cleanup(r->easy);
	curl_slist_free_all(r->hdrs);
	free(r);
	return NULL;
}

static bool dk_req_ok(const struct dk_req *r)
{
	return r->cc == CURLE_OK && r->status >= 200 && r->status < 300;
}

/* Why a request failed, for users (owned by the caller, NULL if out of memory): libcurl's reason
 * when docker did not answer, else the Engine API's own message. */
static char *dk_req_reason(const struct dk_req *r)
{
	struct buf b = BUF_INIT;
	int rc;

	if (r->cc != CURLE_OK) {
		const char *why = r->errbuf[0] ? r->errbuf : curl_easy_strerror(r->cc);

		if (r->cc == CURLE_COULDNT_CONNECT && r->os_errno)
			why = strerror((int)r->os_errno);
		if (r->cc == CURLE_COULDNT_CONNECT || r->cc == CURLE_OPERATION_TIMEDOUT ||
		    r->cc == CURLE_COULDNT_RESOLVE_HOST)
			rc =
			    buf_printf(&b, "docker: cannot connect to %s: %s", r->d->host_url, why);
		else
			rc = buf_printf(&b, "docker: %s: %s", r->what, why);
	} else {
		json_t *j = json_loadb(r->resp.data ? r->resp.data : "", r->resp.len, 0, NULL);
		const char *msg = json_string_value(json_object_get(j, "message"));

		if (msg)
			rc = buf_printf(&b, "docker: %s", msg);
		else
			rc = buf_printf(&b, "docker: %s: HTTP status %ld", r->what, r->status);
		json_decref(j);
	}
	if (rc < 0) {
		buf_release(&b);
		return NULL;
	}
	return buf_steal(&b);
}

static json_t *dk_req_json(const struct dk_req *r)
{
	return json_loadb(r->resp.data ? r->resp.data : "", r->resp.len, 0, NULL);
}

/* ---- libcurl on the loop ---- */

static void dk_check_done(struct flt_drv *d)
{
	CURLMsg *m;
	int left;

	while ((m = curl_multi_info_read(d->multi, &left))) {
		struct dk_req *r = NULL;

		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
		r->cc = m->data.result;
		curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &r->status);
		curl_easy_getinfo(r->easy, CURLINFO_OS_ERRNO, &r->os_errno);
		curl_multi_remove_handle(d->multi, r->easy);
		r->added = false;
		if (r->done && !r->cancelled)
			r->done(r);
		dk_req_free(r);
	}
}

static void dk_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct dk_sock *s = container_of(w, struct dk_sock, io);
	struct flt_drv *d = s->d;
	int action =
	    (revents & EV_READ ? CURL_CSELECT_IN : 0) | (revents & EV_WRITE ? CURL_CSELECT_OUT : 0);
	int running;

	curl_multi_socket_action(d->multi, w->fd, action, &running);
	dk_check_done(d);
}

static void dk_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct flt_drv *d = container_of(w, struct flt_drv, timer);
	int running;

	curl_multi_socket_action(d->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	dk_check_done(d);
}

static void dk_kick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct flt_drv *d = container_of(w, struct flt_drv, kick);
	struct dk_req *r, *next;

	for (r = d->reqs; r; r = next) {
		next = r->next;
		if (r->cancelled) {
			dk_req_free(r);
		} else if (!r->added) {
			if (curl_multi_add_handle(d->multi, r->easy) == CURLM_OK) {
				r->added = true;
			} else {
				/* Only out of memory gets here: answer as "no connection". */
				r->cc = CURLE_OUT_OF_MEMORY;
				if (r->done)
					r->done(r);
				dk_req_free(r);
			}
		}
	}
}

static int dk_socket_cb(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct flt_drv *d = userp;
	struct dk_sock *s = socketp;
	int events = 0;

	if (what == CURL_POLL_REMOVE) {
		if (s) {
			ev_io_stop(d->loop, &s->io);
			if (s->prev)
				s->prev->next = s->next;
			else
				d->socks = s->next;
			if (s->next)
				s->next->prev = s->prev;
			free(s);
			curl_multi_assign(d->multi, fd, NULL);
		}
		return 0;
	}
	if (what & CURL_POLL_IN)
		events |= EV_READ;
	if (what & CURL_POLL_OUT)
		events |= EV_WRITE;
	if (!s) {
		s = calloc(1, sizeof(*s));
		if (!s)
			return -1;
		s->d = d;
		s->next = d->socks;
		if (d->socks)
			d->socks->prev = s;
		d->socks = s;
		ev_io_init(&s->io, dk_io_cb, fd, events);
		curl_multi_assign(d->multi, fd, s);
	} else {
		ev_io_stop(d->loop, &s->io);
		ev_io_set(&s->io, fd, events);
	}
	ev_io_start(d->loop, &s->io);
	return 0;
}

static int dk_timerfn_cb(CURLM *multi, long timeout_ms, void *userp)
{
	struct flt_drv *d = userp;

	ev_timer_stop(d->loop, &d->timer);
	if (timeout_ms >= 0) {
		ev_timer_set(&d->timer, (double)timeout_ms / 1000., 0.);
		ev_timer_start(d->loop, &d->timer);
	}
	return 0;
}

/* ---- small helpers ---- */

/* Container ids and names only: they go into URL paths unescaped. */
static bool dk_valid_ref(const char *s)
{
	if (!s || !*s || strlen(s) > 256)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '_' && *s != '.' && *s != '-')
			return false;
	return true;
}

static void dk_log(struct flt_drv *d, enum flt_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void dk_log(struct flt_drv *d, enum flt_log_level lvl, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	d->host->log(d->host, lvl, fmt, ap);
	va_end(ap);
}

static void dk_status(struct flt_task *t, const struct flt_drv *d, enum flt_active act,
                      const char *sub, int64_t pid, const char *handle)
{
	struct flt_status st = {
	    .active = act,
	    .sub = sub,
	    .main_pid = pid,
	    .handle = handle,
	    .exit_code = -1,
	    .exit_signal = 0,
	};

	d->host->task_status(t, &st);
}

/* ---- runs ---- */

static void dk_grace_cb(struct ev_loop *loop, ev_timer *w, int revents);

static struct dk_run *dk_run_new(struct flt_drv *d, struct flt_task *t)
{
	struct dk_run *run = calloc(1, sizeof(*run));

	if (!run)
		return NULL;
	run->d = d;
	run->t = t;
	ev_timer_init(&run->grace, dk_grace_cb, DK_LOG_GRACE, 0.);
	run->next = d->runs;
	if (d->runs)
		d->runs->prev = run;
	d->runs = run;
	t->drv_data = run;
	return run;
}

/* Detach and free a run; its requests are cancelled. The task is untouched beyond drv_data. */
static void dk_run_free(struct dk_run *run)
{
	struct flt_drv *d = run->d;

	for (struct dk_req *r = d->reqs; r; r = r->next)
		if (r->run == run)
			dk_req_cancel(r);
	ev_timer_stop(d->loop, &run->grace);
	if (run->prev)
		run->prev->next = run->next;
	else
		d->runs = run->next;
	if (run->next)
		run->next->prev = run->prev;
	if (run->t && run->t->drv_data == run)
		run->t->drv_data = NULL;
	free(run->name);
	free(run->id);
	free(run->image);
	free(run->create_body);
	free(run->ident);
	free(run->wait_error);
	free(run);
}

static void dk_remove_container(struct flt_drv *d, const char *ref, const char *what);

/* The end of a run: free it, remove its container (unless `keep`), then report. Reporting last
 * lets the host start the task anew from inside task_status. */
static void dk_finish(struct dk_run *run, enum flt_active act, const char *result, int code,
                      int sig, const char *msg, bool keep)
{
	struct flt_drv *d = run->d;
	struct flt_task *t = run->t;
	struct flt_status st = {
	    .active = act,
	    .sub = act == FLT_FAILED ? "failed" : "dead",
	    .exit_code = code,
	    .exit_signal = sig,
	    .result = result,
	    .message = msg,
	};

	if (!keep && run->id)
		dk_remove_container(d, run->id, "remove");
	dk_run_free(run);
	d->host->task_status(t, &st);
}

/* A run that could not go on because a request failed: report the request's reason. */
static void dk_fail_req(struct dk_run *run, struct dk_req *r, bool keep)
{
	char *why = dk_req_reason(r);

	dk_finish(run, FLT_FAILED, "resources", -1, 0, why ? why : "docker: out of memory", keep);
	free(why);
}

static void dk_fail_oom(struct dk_run *run)
{
	dk_finish(run, FLT_FAILED, "resources", -1, 0, "docker: out of memory", false);
}

static void dk_step_create(struct dk_run *run);
static void dk_step_start(struct dk_run *run);
static void dk_step_inspect(struct dk_run *run);
static void dk_step_follow(struct dk_run *run, bool from_now);
static void dk_send_stop(struct dk_run *run);

static void dk_removed_cb(struct dk_req *r)
{
	if (!dk_req_ok(r) && r->status != 404) {
		char *why = dk_req_reason(r);

		dk_log(r->d, FLT_LOG_WARN, "%s", why ? why : "docker: out of memory");
		free(why);
	}
}

/* Force-remove a container (and its anonymous volumes); the answer only gets logged. */
static void dk_remove_container(struct flt_drv *d, const char *ref, const char *what)
{
	struct buf path = BUF_INIT;

	if (buf_printf(&path, "/containers/%s?force=1&v=1", ref) >= 0 &&
	    !dk_req_new(d, NULL, "DELETE", path.data, NULL, DK_CTL_TIMEOUT_MS, dk_removed_cb, what))
		dk_log(d, FLT_LOG_WARN, "docker: cannot remove container '%s': out of memory", ref);
	buf_release(&path);
}

static void dk_pull_cb(struct dk_req *r)
{
	struct dk_run *run = r->run;
	const char *p, *end;

	run->ctl_req = NULL;
	if (!dk_req_ok(r)) {
		dk_fail_req(run, r, false);
		return;
	}
	/* A pull answers 200 and then streams JSON progress lines; a failure is a line with
	 * "error" in it. */
	p = r->resp.data ? r->resp.data : "";
	end = p + r->resp.len;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		json_t *j = json_loadb(p, n, 0, NULL);
		const char *err = json_string_value(json_object_get(j, "error"));

		if (err) {
			struct buf why = BUF_INIT;

			buf_printf(&why, "docker: %s", err);
			json_decref(j);
			dk_finish(run, FLT_FAILED, "resources", -1, 0,
			          why.data ? why.data : "docker: out of memory", false);
			buf_release(&why);
			return;
		}
		json_decref(j);
		p += n + 1;
	}
	run->pulled = true;
	if (run->stop_req) {
		dk_finish(run, FLT_INACTIVE, "success", -1, 0, NULL, false);
		return;
	}
	dk_step_create(run);
}

static void dk_step_pull(struct dk_run *run)
{
	struct flt_drv *d = run->d;
	struct buf path = BUF_INIT;
	const char *slash = strrchr(run->image, '/');
	const char *at = strchr(run->image, '@');
	const char *colon = strrchr(slash ? slash : run->image, ':');
	char *name = NULL, *ename = NULL, *etag = NULL;

	run->phase = DK_PH_PULL;
	/* fromImage=name&tag=tag: the tag is after the last ':' that follows the last '/'
	 * (a registry's port is not a tag); a digest goes whole in fromImage. */
	if (at || !colon)
		name = strdup(run->image);
	else
		name = strndup(run->image, (size_t)(colon - run->image));
	if (!name)
		goto oom;
	ename = curl_easy_escape(NULL, name, 0);
	etag = curl_easy_escape(NULL, (at || !colon) ? "latest" : colon + 1, 0);
	if (!ename || !etag)
		goto oom;
	if (buf_printf(&path, "/images/create?fromImage=%s", ename) < 0 ||
	    (!at && buf_printf(&path, "&tag=%s", etag) < 0))
		goto oom;
	dk_log(d, FLT_LOG_INFO, "docker: pulling '%s' for %s", run->image, run->t->unit);
	run->ctl_req = dk_req_new(d, run, "POST", path.data, NULL, 0, dk_pull_cb, "pull");
	if (!run->ctl_req)
		goto oom;
	buf_release(&path);
	free(name);
	curl_free(ename);
	curl_free(etag);
	return;
oom:
	buf_release(&path);
	free(name);
	curl_free(ename);
	curl_free(etag);
	dk_fail_oom(run);
}

static void dk_clear_inspect_cb(struct dk_req *r);

static void dk_create_cb(struct dk_req *r)
{
	struct dk_run *run = r->run;
	struct flt_task *t;
	json_t *j;
	const char *id;

	run->ctl_req = NULL;
	if (r->cc == CURLE_OK && r->status == 404 && run->pull == DK_PULL_MISSING && !run->pulled) {
		dk_step_pull(run); /* "No such image" */
		return;
	}
	if (r->cc == CURLE_OK && r->status == 409 && run->conflicts < DK_CONFLICT_TRIES) {
		/* A container of this name exists: ours from an earlier run (being removed, or left
		 * over) goes; anybody else's is an error. */
		struct buf path = BUF_INIT;

		run->conflicts++;
		run->phase = DK_PH_CLEAR;
		if (buf_printf(&path, "/containers/%s/json", run->name) < 0 ||
		    !(run->ctl_req =
		          dk_req_new(run->d, run, "GET", path.data, NULL, DK_CTL_TIMEOUT_MS,
		                     dk_clear_inspect_cb, "inspect"))) {
			buf_release(&path);
			dk_fail_oom(run);
			return;
		}
		buf_release(&path);
		return;
	}
	if (!dk_req_ok(r)) {
		dk_fail_req(run, r, true);
		return;
	}
	j = dk_req_json(r);
	id = json_string_value(json_object_get(j, "Id"));
	if (!id || !dk_valid_ref(id) || !(run->id = strdup(id))) {
		json_decref(j);
		dk_fail_oom(run);
		return;
	}
	json_decref(j);
	/* The handle goes to the host now, so a restart between create and start finds it. */
	t = run->t;
	dk_status(t, run->d, FLT_ACTIVATING, "start", 0, run->id);
	if (t->drv_data != run)
		return; /* the host let go of the task from inside the report */
	if (run->stop_req) {
		dk_finish(run, FLT_INACTIVE, "success", -1, 0, NULL, false);
		return;
	}
	dk_step_start(run);
}

static void dk_clear_wait_cb(struct dk_req *r)
{
	struct dk_run *run = r->run;

	run->ctl_req = NULL;
	dk_step_create(run); /* whatever the wait said, the create tells */
}

static void dk_clear_del_cb(struct dk_req *r)
{
	struct dk_run *run = r->run;

	run->ctl_req = NULL;
	if (r->cc == CURLE_OK && r->status == 409) {
		/* "removal already in progress" (our own clean-up of the previous run): wait for it
		 */
		struct buf path = BUF_INIT;

		if (buf_printf(&path, "/containers/%s/wait?condition=removed", run->name) < 0 ||
		    !(run->ctl_req = dk_req_new(run->d, run, "POST", path.data, NULL,
		                                DK_CTL_TIMEOUT_MS, dk_clear_wait_cb, "wait")))
			dk_fail_oom(run);
		buf_release(&path);
		return;
	}
	if (!dk_req_ok(r) && r->status != 404) {
		dk_fail_req(run, r, true);
		return;
	}
	dk_step_create(run);
}

static void dk_clear_inspect_cb(struct dk_req *r)
{
	struct dk_run *run = r->run;
	struct flt_drv *d = run->d;
	json_t *j, *labels;
	const char *unit, *machine;
	struct buf path = BUF_INIT;

	run->ctl_req = NULL;
	if (r->cc == CURLE_OK && r->status == 404) { /* gone meanwhile */
		dk_step_create(run);
		return;
	}
	if (!dk_req_ok(r)) {
		dk_fail_req(run, r, true);
		return;
	}
	j = dk_req_json(r);
	labels = json_object_get(json_object_get(j, "Config"), "Labels");
	unit = json_string_value(json_object_get(labels, DK_LABEL_UNIT));
	machine = json_string_value(json_object_get(labels, DK_LABEL_MACHINE));
	if (!unit || strcmp(unit, run->t->unit) || !machine || !run->t->machine_id ||
	    strcmp(machine, run->t->machine_id)) {
		struct buf why = BUF_INIT;

		json_decref(j);
		buf_printf(&why, "docker: a container named '%s' exists and is not this unit's",
		           run->name);
		dk_finish(run, FLT_FAILED, "resources", -1, 0,
		          why.data ? why.data : "docker: out of memory", true);
		buf_release(&why);
		return;
	}
	json_decref(j);
	dk_log(d, FLT_LOG_INFO, "docker: removing old container '%s' of %s", run->name,
	       run->t->unit);
	if (buf_printf(&path, "/containers/%s?force=1&v=1", run->name) < 0 ||
	    !(run->ctl_req = dk_req_new(d, run, "DELETE", path.data, NULL, DK_CTL_TIMEOUT_MS,
	                                dk_clear_del_cb, "remove")))
		dk_fail_oom(run);
	buf_release(&path);
}

static void dk_step_create(struct dk_run *run)
{
	struct buf path = BUF_INIT;

	run->phase = DK_PH_CREATE;
	if (buf_printf(&path, "/containers/create?name=%s", run->name) < 0 ||
	    !(run->ctl_req = dk_req_new(run->d, run, "POST", path.data, run->create_body,
	                                DK_CTL_TIMEOUT_MS, dk_create_cb, "create")))
		dk_fail_oom(run);
	buf_release(&path);
}

static void dk_start_cb(struct dk_req *r)
{
	struct dk_run *run = r->run;

	run->ctl_req = NULL;
	if (!dk_req_ok(r) && !(r->cc == CURLE_OK && r->status == 304)) {
		dk_fail_req(run, r, false);
		return;
	}
	dk_step_inspect(run);
}

static void dk_step_start(struct dk_run *run)
{
	struct buf path = BUF_INIT;

	run->phase = DK_PH_START;
	if (buf_printf(&path, "/containers/%s/start", run->id) < 0 ||
	    !(run->ctl_req = dk_req_new(run->d, run, "POST", path.data, NULL, DK_CTL_TIMEOUT_MS,
	                                dk_start_cb, "start")))
		dk_fail_oom(run);
	buf_release(&path);
}

static void dk_inspect_cb(struct dk_req *r)
{
	struct dk_run *run = r->run;
	struct flt_drv *d = run->d;
	json_t *j, *state, *labels;
	const char *status, *unit, *machine;
	struct buf ident = BUF_INIT;
	bool running;

	run->ctl_req = NULL;
	if (run->adopting && r->cc == CURLE_OK && r->status == 404) {
		struct buf why = BUF_INIT;

		buf_printf(&why, "docker: container '%.12s' no longer exists", run->id);
		dk_finish(run, FLT_INACTIVE, NULL, -1, 0, why.data, true);
		buf_release(&why);
		return;
	}
	if (!dk_req_ok(r)) {
		dk_fail_req(run, r, run->adopting);
		return;
	}
	j = dk_req_json(r);
	state = json_object_get(j, "State");
	status = json_string_value(json_object_get(state, "Status"));
	running = json_is_true(json_object_get(state, "Running"));
	run->pid = json_integer_value(json_object_get(state, "Pid"));
	run->tty = json_is_true(json_object_get(json_object_get(j, "Config"), "Tty"));
	labels = json_object_get(json_object_get(j, "Config"), "Labels");
	unit = json_string_value(json_object_get(labels, DK_LABEL_UNIT));
	machine = json_string_value(json_object_get(labels, DK_LABEL_MACHINE));
	if (run->adopting && (!unit || strcmp(unit, run->t->unit) || !machine ||
	                      !run->t->machine_id || strcmp(machine, run->t->machine_id))) {
		struct buf why = BUF_INIT;

		json_decref(j);
		buf_printf(&why, "docker: container '%.12s' is not %s's on this machine", run->id,
		           run->t->unit);
		dk_finish(run, FLT_INACTIVE, NULL, -1, 0, why.data, true);
		buf_release(&why);
		return;
	}
	if (run->adopting && status && !strcmp(status, "created")) {
		/* created but never started: the daemon went down in between */
		json_decref(j);
		run->adopting = false;
		dk_step_start(run);
		return;
	}
	json_decref(j);
	if (run->pid > 0 ? buf_printf(&ident, "docker[%lld]", (long long)run->pid) < 0
	                 : buf_puts(&ident, "docker") < 0) {
		buf_release(&ident);
		dk_fail_oom(run);
		return;
	}
	free(run->ident);
	run->ident = buf_steal(&ident);
	run->phase = DK_PH_RUNNING;
	dk_step_follow(run, run->adopting);
	if (!run->wait_req) {
		dk_fail_oom(run);
		return;
	}
	if (running || !run->adopting) {
		struct flt_task *t = run->t;

		dk_status(t, d, FLT_ACTIVE, "running", run->pid, run->id);
		if (t->drv_data != run)
			return;
	}
	if (run->stop_req)
		dk_send_stop(run);
}

static void dk_step_inspect(struct dk_run *run)
{
	struct buf path = BUF_INIT;

	run->phase = DK_PH_INSPECT;
	if (buf_printf(&path, "/containers/%s/json", run->id) < 0 ||
	    !(run->ctl_req = dk_req_new(run->d, run, "GET", path.data, NULL, DK_CTL_TIMEOUT_MS,
	                                dk_inspect_cb, "inspect")))
		dk_fail_oom(run);
	buf_release(&path);
}

/* How the container ended, the way systemd words it: the Engine API only gives a status, and a
 * status of 128+n is the container's main process killed by signal n. */
static void dk_conclude(struct dk_run *run)
{
	long st = run->exit_status;
	int sig = st > 128 && st < 128 + 65 ? (int)(st - 128) : 0;
	struct buf msg = BUF_INIT;

	if (run->wait_error) {
		buf_printf(&msg, "docker: %s", run->wait_error);
		dk_finish(run, FLT_FAILED, "resources", -1, 0, msg.data, false);
	} else if (st == 0) {
		dk_finish(run, FLT_INACTIVE, "success", 0, 0, NULL, false);
	} else if (sig == SIGTERM || sig == SIGINT || sig == SIGHUP || sig == SIGPIPE) {
		/* systemd's clean signals for a main process */
		dk_finish(run, FLT_INACTIVE, "success", -1, sig, NULL, false);
	} else if (sig == SIGKILL && run->stop_sent) {
		buf_printf(&msg, "docker: container did not stop within %u ms and was killed",
		           run->stop_ms);
		dk_finish(run, FLT_FAILED, "timeout", -1, sig, msg.data, false);
	} else if (sig) {
		buf_printf(&msg, "docker: container killed by signal %d (status %ld)", sig, st);
		dk_finish(run, FLT_FAILED, "signal", -1, sig, msg.data, false);
	} else {
		buf_printf(&msg, "docker: container exited with status %ld", st);
		dk_finish(run, FLT_FAILED, "exit-code", (int)st, 0, msg.data, false);
	}
	buf_release(&msg);
}

static void dk_grace_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct dk_run *run = container_of(w, struct dk_run, grace);

	dk_conclude(run);
}

static void dk_wait_cb(struct dk_req *r)
{
	struct dk_run *run = r->run;
	json_t *j, *err;

	run->wait_req = NULL;
	if (!dk_req_ok(r)) {
		dk_fail_req(run, r, false);
		return;
	}
	j = dk_req_json(r);
	if (!json_is_integer(json_object_get(j, "StatusCode"))) {
		json_decref(j);
		dk_finish(run, FLT_FAILED, "resources", -1, 0,
		          "docker: the wait for the container answered without a status", false);
		return;
	}
	run->exit_status = (long)json_integer_value(json_object_get(j, "StatusCode"));
	err = json_object_get(json_object_get(j, "Error"), "Message");
	if (json_string_value(err) && *json_string_value(err))
		run->wait_error = strdup(json_string_value(err));
	json_decref(j);
	run->waited = true;
	/* docker closes the log stream when the container stops, usually before the wait's answer;
	 * give a lagging stream a moment so the last lines land before the final state. */
	if (run->logs_req)
		ev_timer_start(run->d->loop, &run->grace);
	else
		dk_conclude(run);
}

static void dk_logs_cb(struct dk_req *r)
{
	struct dk_run *run = r->run;

	run->logs_req = NULL;
	if (r->cc != CURLE_OK || r->status != 200) {
		char *why = dk_req_reason(r);

		dk_log(run->d, FLT_LOG_WARN, "%s: cannot follow the logs of %s: %s", run->t->unit,
		       run->id, why ? why : "out of memory");
		free(why);
	}
	if (run->waited) {
		ev_timer_stop(run->d->loop, &run->grace);
		dk_conclude(run);
	}
}

/* Output for the journal. Without a TTY docker frames each chunk: [stream, 0, 0, 0, size (BE32)]
 * then the payload; the frame boundaries have nothing to do with curl's. */
static size_t dk_logs_write(struct dk_req *r, const char *p, size_t n)
{
	size_t i = 0;

	while (i < n && !r->cancelled) {
		struct dk_run *run = r->run;
		struct flt_task *t = run->t;
		size_t k;

		if (run->tty) {
			k = n - i;
		} else if (run->left == 0) {
			while (i < n && run->hlen < sizeof(run->hdr))
				run->hdr[run->hlen++] = (unsigned char)p[i++];
			if (run->hlen == sizeof(run->hdr)) {
				run->left = (size_t)run->hdr[4] << 24 | (size_t)run->hdr[5] << 16 |
				            (size_t)run->hdr[6] << 8 | run->hdr[7];
				run->hlen = 0;
			}
			continue;
		} else {
			k = run->left < n - i ? run->left : n - i;
			run->left -= k;
		}
		/* The host may stop or release the task in here: r->cancelled says so. */
		run->d->host->task_output(t, run->ident, p + i, k);
		i += k;
	}
	return n;
}

static void dk_step_follow(struct dk_run *run, bool from_now)
{
	struct flt_drv *d = run->d;
	struct buf path = BUF_INIT;

	if (buf_printf(&path, "/containers/%s/wait?condition=not-running", run->id) >= 0)
		run->wait_req = dk_req_new(d, run, "POST", path.data, NULL, 0, dk_wait_cb, "wait");
	buf_clear(&path);
	if (buf_printf(&path, "/containers/%s/logs?follow=1&stdout=1&stderr=1", run->id) < 0)
		goto out;
	if (from_now) {
		int64_t ns = flt_realtime_ns();

		if (buf_printf(&path, "&since=%lld.%09lld", (long long)(ns / 1000000000),
		               (long long)(ns % 1000000000)) < 0)
			goto out;
	}
	run->logs_req = dk_req_new(d, run, "GET", path.data, NULL, 0, dk_logs_cb, "logs");
	if (run->logs_req)
		run->logs_req->streaming = true;
out:
	if (!run->logs_req)
		dk_log(d, FLT_LOG_WARN, "%s: cannot follow the logs of %s: out of memory",
		       run->t->unit, run->id);
	buf_release(&path);
}

static void dk_stop_cb(struct dk_req *r)
{
	struct dk_run *run = r->run;

	run->ctl_req = NULL;
	/* 204 stopped, 304 already stopped, 404 gone: the wait reports the end either way. */
	if (r->cc != CURLE_OK)
		dk_fail_req(run, r, true);
	else if (!dk_req_ok(r) && r->status != 304 && r->status != 404)
		dk_log(run->d, FLT_LOG_WARN, "%s: cannot stop container %.12s: HTTP status %ld",
		       run->t->unit, run->id, r->status);
}

static void dk_send_stop(struct dk_run *run)
{
	struct buf path = BUF_INIT;
	/* docker counts whole seconds; 0 means "no limit" to the host, a year is close enough */
	unsigned secs = run->stop_ms ? (run->stop_ms + 999) / 1000 : 365u * 24 * 3600;

	if (run->stop_sent)
		return;
	run->stop_sent = true;
	if (buf_printf(&path, "/containers/%s/stop?t=%u", run->id, secs) < 0 ||
	    !(run->ctl_req =
	          dk_req_new(run->d, run, "POST", path.data, NULL, 0, dk_stop_cb, "stop"))) {
		buf_release(&path);
		dk_fail_oom(run);
		return;
	}
	buf_release(&path);
	dk_status(run->t, run->d, FLT_DEACTIVATING, "stop-sigterm", run->pid, NULL);
}

/* ---- the ops ---- */

static int dk_cfg_get(const struct flt_drv_config *cfg, const char *key, const char **ret)
{
	if (!cfg)
		return 0;
	for (size_t i = 0; i < cfg->n; i++)
		if (cfg->keys[i] && !strcmp(cfg->keys[i], key)) {
			*ret = cfg->values[i];
			return 1;
		}
	return 0;
}

static void dk_ping_cb(struct dk_req *r)
{
	struct flt_drv *d = r->d;
	int was = d->ping;

	d->ping_in_flight = false;
	if (dk_req_ok(r)) {
		d->ping = 1;
		dk_log(d, was == 1 ? FLT_LOG_DEBUG : FLT_LOG_INFO, "docker: %s answers",
		       d->host_url);
	} else {
		char *why = dk_req_reason(r);

		d->ping = r->cc != CURLE_OK ? -EHOSTDOWN : -EPROTO;
		/* said once per outage, not every few seconds */
		if (was >= 0)
			dk_log(d, FLT_LOG_WARN, "%s (containers will fail to start)",
			       why ? why : "docker: out of memory");
		free(why);
	}
}

static void dk_ping_again(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct flt_drv *d = (struct flt_drv *)((char *)w - offsetof(struct flt_drv, ping_w));

	(void)loop;
	(void)revents;
	if (!d->ping_in_flight &&
	    dk_req_new(d, NULL, "GET", "/_ping", NULL, DK_CTL_TIMEOUT_MS, dk_ping_cb, "ping"))
		d->ping_in_flight = true;
}

static int dk_ready(struct flt_drv *d)
{
	return d->ping == 1;
}

static void dk_close(struct flt_drv *drv);

static int dk_open(const struct flt_host *host, const struct flt_drv_config *cfg,
                   struct flt_drv **ret, const char **why)
{
	struct flt_drv *d;
	const char *url = DK_DEFAULT_HOST, *prefix = DK_DEFAULT_PREFIX, *mid = NULL;
	struct buf base = BUF_INIT;

	dk_cfg_get(cfg, "docker-host", &url);
	dk_cfg_get(cfg, "name-prefix", &prefix);
	dk_cfg_get(cfg, "machine-id", &mid);
	if (!url || !prefix) {
		*why = "docker: empty docker-host or name-prefix";
		return -EINVAL;
	}
	if (*prefix && !dk_valid_ref(prefix)) {
		*why = "docker: name-prefix may only hold letters, digits, '_', '.' and '-'";
		return -EINVAL;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		*why = "docker: cannot initialize libcurl";
		return -ENOMEM;
	}
	d = calloc(1, sizeof(*d));
	if (!d) {
		curl_global_cleanup();
		*why = "docker: out of memory";
		return -ENOMEM;
	}
	d->host = host;
	d->loop = host->loop;
	ev_timer_init(&d->timer, dk_timer_cb, 0., 0.);
	ev_timer_init(&d->kick, dk_kick_cb, 0., 0.);
	d->host_url = strdup(url);
	d->prefix = strdup(prefix);
	d->machine_id = mid ? strdup(mid) : NULL;
	if (!d->host_url || !d->prefix || (mid && !d->machine_id))
		goto oom;
	if (!strncmp(url, "unix://", 7) || url[0] == '/') {
		d->sock_path = strdup(url[0] == '/' ? url : url + 7);
		if (!d->sock_path || buf_puts(&base, "http://docker" DK_API) < 0)
			goto oom;
	} else if (!strncmp(url, "tcp://", 6) || !strncmp(url, "http://", 7)) {
		const char *hp = url + (url[0] == 't' ? 6 : 7);
		size_t n = strlen(hp);

		while (n && hp[n - 1] == '/')
			n--;
		if (buf_puts(&base, "http://") < 0 || buf_append(&base, hp, n) < 0 ||
		    buf_puts(&base, DK_API) < 0)
			goto oom;
	} else {
		dk_close(d);
		*why =
		    "docker: docker-host must be unix:///path, tcp://host:port or http://host:port";
		return -EINVAL;
	}
	d->base = buf_steal(&base);
	d->multi = curl_multi_init();
	if (!d->multi)
		goto oom;
	curl_multi_setopt(d->multi, CURLMOPT_SOCKETFUNCTION, dk_socket_cb);
	curl_multi_setopt(d->multi, CURLMOPT_SOCKETDATA, d);
	curl_multi_setopt(d->multi, CURLMOPT_TIMERFUNCTION, dk_timerfn_cb);
	curl_multi_setopt(d->multi, CURLMOPT_TIMERDATA, d);
	/* Ask at once whether docker is there; the answer is only logged (see the report: the
	 * first start() fails with the reason if it is not). */
	if (!dk_req_new(d, NULL, "GET", "/_ping", NULL, DK_CTL_TIMEOUT_MS, dk_ping_cb, "ping"))
		goto oom;
	d->ping_in_flight = true;
	ev_timer_init(&d->ping_w, dk_ping_again, DK_PING_S, DK_PING_S);
	ev_timer_start(d->loop, &d->ping_w);
	*ret = d;
	return 0;
oom:
	buf_release(&base);
	dk_close(d);
	*why = "docker: out of memory";
	return -ENOMEM;
}

static void dk_close(struct flt_drv *drv)
{
	struct flt_drv *d = drv;

	if (!d)
		return;
	while (d->runs)
		dk_run_free(d->runs);
	while (d->reqs) {
		struct dk_req *r = d->reqs;

		r->done = NULL;
		dk_req_free(r);
	}
	if (d->multi)
		curl_multi_cleanup(d->multi);
	while (d->socks) { /* libcurl normally said CURL_POLL_REMOVE for each already */
		struct dk_sock *s = d->socks;

		ev_io_stop(d->loop, &s->io);
		d->socks = s->next;
		free(s);
	}
	ev_timer_stop(d->loop, &d->timer);
	ev_timer_stop(d->loop, &d->kick);
	ev_timer_stop(d->loop, &d->ping_w);
	free(d->host_url);
	free(d->sock_path);
	free(d->base);
	free(d->prefix);
	free(d->machine_id);
	free(d);
	curl_global_cleanup();
}

static void dk_learn_machine(struct flt_drv *d, const struct flt_task *t)
{
	if (!d->machine_id && t->machine_id && *t->machine_id)
		d->machine_id =
		    strdup(t->machine_id); /* best effort: list() filters less without */
}

/* "flotilla-" + the unit with what docker refuses in names turned into '_'. */
static char *dk_container_name(const struct flt_drv *d, const char *unit)
{
	struct buf b = BUF_INIT;

	if (buf_puts(&b, d->prefix) < 0)
		return NULL;
	for (const char *p = unit; *p; p++) {
		char c = isalnum((unsigned char)*p) || *p == '.' || *p == '-' ? *p : '_';

		if (buf_putc(&b, c) < 0) {
			buf_release(&b);
			return NULL;
		}
	}
	return buf_steal(&b);
}

static int dk_start(struct flt_drv *drv, struct flt_task *t)
{
	struct flt_drv *d = drv;
	struct dk_run *run;
	char *why = NULL;
	int rc;

	if (t->drv_data)
		return -EBUSY;
	dk_learn_machine(d, t);
	run = dk_run_new(d, t);
	if (!run)
		return -ENOMEM;
	run->name = dk_container_name(d, t->unit);
	if (!run->name) {
		dk_run_free(run);
		return -ENOMEM;
	}
	rc = dk_build_create(t, &run->pull, &run->create_body, &run->image, &why);
	if (rc < 0) {
		/* Reported, not returned: the reason is worth more to users than an errno. */
		dk_finish(run, FLT_FAILED, "resources", -1, 0, why, true);
		free(why);
		return 0;
	}
	dk_status(t, d, FLT_ACTIVATING, "start", 0, NULL);
	if (t->drv_data != run)
		return 0;
	if (run->pull == DK_PULL_ALWAYS)
		dk_step_pull(run);
	else
		dk_step_create(run);
	return 0;
}

static int dk_stop(struct flt_drv *drv, struct flt_task *t, unsigned timeout_ms)
{
	struct flt_drv *d = drv;
	struct dk_run *run = t->drv_data;

	if (!run) { /* nothing runs: already stopped */
		drv_report_stopped(d->host, t);
		return 0;
	}
	if (run->stop_req)
		return 0;
	run->stop_req = true;
	run->stop_ms = timeout_ms;
	/* Before the container runs, the step in flight looks at stop_req when it answers. */
	if (run->phase == DK_PH_RUNNING && !run->waited)
		dk_send_stop(run);
	return 0;
}

static int dk_adopt(struct flt_drv *drv, struct flt_task *t)
{
	struct flt_drv *d = drv;
	struct dk_run *run;

	if (t->drv_data)
		return -EBUSY;
	/* No way to find a container without its id (the name could be someone else's now). */
	if (!t->handle || !dk_valid_ref(t->handle))
		return -ENOENT;
	dk_learn_machine(d, t);
	run = dk_run_new(d, t);
	if (!run)
		return -ENOMEM;
	run->adopting = true;
	run->id = strdup(t->handle);
	run->name = dk_container_name(d, t->unit);
	if (!run->id || !run->name) {
		dk_run_free(run);
		return -ENOMEM;
	}
	/* The answer reports the state: running, its exit, or INACTIVE if the container is gone. */
	dk_step_inspect(run);
	return 0;
}

static void dk_release(struct flt_drv *drv, struct flt_task *t)
{
	struct dk_run *run = t->drv_data;

	if (run)
		dk_run_free(run);
}

static void dk_list_done(struct dk_req *r)
{
	struct flt_drv *d = r->d;
	json_t *j, *c;
	size_t i;

	if (!dk_req_ok(r)) {
		char *why = dk_req_reason(r);

		dk_log(d, FLT_LOG_WARN, "cannot list containers: %s", why ? why : "out of memory");
		free(why);
		return; /* dk_req_free sends the end marker */
	}
	j = dk_req_json(r);
	json_array_foreach(j, i, c)
	{
		const char *id = json_string_value(json_object_get(c, "Id"));
		const char *unit =
		    json_string_value(json_object_get(json_object_get(c, "Labels"), DK_LABEL_UNIT));

		if (id && unit)
			r->list_cb(r->list_ctx, unit, id);
	}
	json_decref(j);
}

static int dk_list(struct flt_drv *drv, void (*cb)(void *ctx, const char *unit, const char *handle),
                   void *ctx)
{
	struct flt_drv *d = drv;
	struct buf path = BUF_INIT;
	json_t *f;
	char *js, *esc = NULL;
	struct dk_req *r = NULL;

	if (d->machine_id)
		f = json_pack("{s:[s+]}", "label", DK_LABEL_MACHINE "=", d->machine_id);
	else
		f = json_pack("{s:[s]}", "label", DK_LABEL_MACHINE);
	js = f ? json_dumps(f, JSON_COMPACT) : NULL;
	json_decref(f);
	if (js)
		esc = curl_easy_escape(NULL, js, 0);
	free(js);
	if (esc && buf_printf(&path, "/containers/json?all=1&filters=%s", esc) >= 0)
		r = dk_req_new(d, NULL, "GET", path.data, NULL, DK_CTL_TIMEOUT_MS, dk_list_done,
		               "list");
	curl_free(esc);
	buf_release(&path);
	if (!r)
		return -ENOMEM;
	r->list_cb = cb;
	r->list_ctx = ctx;
	return 0;
}

static int dk_remove(struct flt_drv *drv, const char *handle)
{
	struct flt_drv *d = drv;

	if (!dk_valid_ref(handle))
		return -EINVAL;
	dk_log(d, FLT_LOG_INFO, "docker: removing stray container %.12s", handle);
	dk_remove_container(d, handle, "remove");
	return 0;
}

static const struct flt_drv_ops dk_ops = {
    .abi_major = FLT_DRV_ABI_MAJOR,
    .abi_minor = FLT_DRV_ABI_MINOR,
    .ops_size = sizeof(struct flt_drv_ops),
    .name = "docker",
    .open = dk_open,
    .start = dk_start,
    .stop = dk_stop,
    .adopt = dk_adopt,
    .release = dk_release,
    .list = dk_list,
    .remove = dk_remove,
    .close = dk_close,
    .ready = dk_ready,
};

DRV_ENTRY(dk_ops)
