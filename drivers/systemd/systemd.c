/* The systemd runtime driver: hands a unit to the machine's systemd over D-Bus (sd-bus), the way
 * fleet ran every unit. The unit text is written as a unit file into the manager's runtime unit
 * directory (/run/systemd/system, or $XDG_RUNTIME_DIR/systemd/user for a --user manager), the
 * manager is asked to Reload and then to StartUnit(name, "replace"); its state is followed through
 * the PropertiesChanged signals of the unit's object (the manager sends them once someone called
 * Subscribe) and JobRemoved; StopUnit stops it, KillUnit(SIGKILL) if the stop outlives its timeout.
 * A linked runtime file rather than StartTransientUnit keeps every directive of the unit working
 * without translating the unit text into D-Bus properties. The handle is the unit name.
 *
 * The bus connection lives on the host's libev loop (ev_io on sd_bus_get_fd, an ev_timer for
 * sd_bus_get_timeout, an ev_prepare to refresh both before the loop sleeps); every call is
 * sd_bus_call_async, never a blocking sd_bus_call. Config: "systemd-bus" = "system" (default) |
 * "user" (sd_bus_open_user, DBUS_SESSION_BUS_ADDRESS), "systemd-unit-dir" to override where unit
 * files go. Unit output stays in systemd's journal: this driver reports states only. */
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-bus.h>

#include <flotilla/driver.h>

#include "../common/drvutil.h"
#include "util/buf.h"
#include "util/util.h"

#define SD_DEST       "org.freedesktop.systemd1"
#define SD_PATH       "/org/freedesktop/systemd1"
#define SD_MANAGER    "org.freedesktop.systemd1.Manager"
#define SD_UNIT_IF    "org.freedesktop.systemd1.Unit"
#define SD_SERVICE_IF "org.freedesktop.systemd1.Service"

struct sd_task;

struct sd_drv {
	const struct flt_host *host;
	sd_bus *bus;
	char *unit_dir;
	bool broken; /* the bus went away: every task has been failed */
	ev_io io;
	ev_timer timer;
	ev_prepare prepare;
	sd_bus_slot *job_match;
	struct sd_task *tasks;
};

/* What the manager last told us about a unit. */
struct props {
	char *load_state, *active_state, *sub_state, *result;
	int64_t main_pid;
	int exec_main_code, exec_main_status;
};

struct sd_task {
	struct sd_drv *d;
	struct flt_task *t;
	struct sd_task *next;
	char *name, *path, *file;
	sd_bus_slot *match;     /* PropertiesChanged of the unit */
	sd_bus_slot *call;      /* the Reload / StartUnit / StopUnit in flight */
	sd_bus_slot *get[2];    /* GetAll of the Unit and Service interfaces */
	sd_bus_slot *kill_call; /* KillUnit */
	ev_timer kill;
	struct props p;
	bool job_pending; /* a start/stop job is queued: its intermediate states are not news */
	bool stopping, adopting, reported;
	enum flt_active last_active;
	char *last_sub;
	int64_t last_pid;
};

static void task_end(struct sd_task *st, const char *message);

/* ---- the bus on the loop ---- */

static void bus_update(struct sd_drv *d)
{
	struct ev_loop *loop = d->host->loop;
	int ev = sd_bus_get_events(d->bus);
	uint64_t until = UINT64_MAX;
	int want = 0;

	if (ev < 0)
		ev = 0;
	if (ev & POLLIN)
		want |= EV_READ;
	if (ev & POLLOUT)
		want |= EV_WRITE;
	want |= EV_READ; /* a disconnect shows as readable */
	ev_io_stop(loop, &d->io);
	ev_io_set(&d->io, sd_bus_get_fd(d->bus), want);
	ev_io_start(loop, &d->io);
	ev_timer_stop(loop, &d->timer);
	if (sd_bus_get_timeout(d->bus, &until) > 0 && until != UINT64_MAX) {
		struct timespec ts;
		uint64_t now;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		now = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
		ev_timer_set(&d->timer, until > now ? (double)(until - now) / 1e6 : 0., 0.);
		ev_timer_start(loop, &d->timer);
	}
}

static void bus_broken(struct sd_drv *d, int err)
{
	struct ev_loop *loop = d->host->loop;

	flt_log(d->host, FLT_LOG_ERROR, "systemd: lost the connection to the bus: %s",
	        strerror(-err));
	d->broken = true;
	ev_io_stop(loop, &d->io);
	ev_timer_stop(loop, &d->timer);
	ev_prepare_stop(loop, &d->prepare);
	while (d->tasks)
		task_end(d->tasks, "lost the connection to systemd");
}

static void bus_process(struct sd_drv *d)
{
	int r;

	do
		r = sd_bus_process(d->bus, NULL);
	while (r > 0 && !d->broken);
	if (r < 0 && !d->broken)
		bus_broken(d, r);
}

static void io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	(void)revents;
	bus_process(container_of(w, struct sd_drv, io));
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	bus_process(container_of(w, struct sd_drv, timer));
}

/* Calls queued during this loop turn need POLLOUT; sd-bus says so through get_events. */
static void prepare_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
	struct sd_drv *d = container_of(w, struct sd_drv, prepare);

	(void)loop;
	(void)revents;
	if (!d->broken)
		bus_update(d);
}

/* ---- unit state ---- */

static void props_free(struct props *p)
{
	free(p->load_state);
	free(p->active_state);
	free(p->sub_state);
	free(p->result);
	memset(p, 0, sizeof(*p));
}

static int set_str(char **dst, const char *v)
{
	char *n = strdup(v);

	if (!n)
		return -ENOMEM;
	free(*dst);
	*dst = n;
	return 0;
}

/* Read an a{sv} of Unit or Service properties into `p`, skipping what we do not follow. */
static int read_props(sd_bus_message *m, struct props *p)
{
	int r = sd_bus_message_enter_container(m, 'a', "{sv}");

	if (r < 0)
		return r;
	while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
		const char *name, *s;
		char **dst = NULL;

		r = sd_bus_message_read(m, "s", &name);
		if (r < 0)
			return r;
		if (!strcmp(name, "LoadState"))
			dst = &p->load_state;
		else if (!strcmp(name, "ActiveState"))
			dst = &p->active_state;
		else if (!strcmp(name, "SubState"))
			dst = &p->sub_state;
		else if (!strcmp(name, "Result"))
			dst = &p->result;
		if (dst) {
			r = sd_bus_message_read(m, "v", "s", &s);
			if (r >= 0)
				r = set_str(dst, s);
		} else if (!strcmp(name, "MainPID")) {
			uint32_t v;

			r = sd_bus_message_read(m, "v", "u", &v);
			if (r >= 0)
				p->main_pid = v;
		} else if (!strcmp(name, "ExecMainCode") || !strcmp(name, "ExecMainStatus")) {
			int32_t v;

			r = sd_bus_message_read(m, "v", "i", &v);
			if (r >= 0 && name[8] == 'C')
				p->exec_main_code = v;
			else if (r >= 0)
				p->exec_main_status = v;
		} else {
			r = sd_bus_message_skip(m, "v");
		}
		if (r < 0)
			return r;
		r = sd_bus_message_exit_container(m);
		if (r < 0)
			return r;
	}
	if (r < 0)
		return r;
	return sd_bus_message_exit_container(m);
}

static bool active_of(const char *s, enum flt_active *ret)
{
	static const struct {
		const char *name;
		enum flt_active a;
	} map[] = {{"active", FLT_ACTIVE},         {"reloading", FLT_ACTIVE},
	           {"activating", FLT_ACTIVATING}, {"deactivating", FLT_DEACTIVATING},
	           {"inactive", FLT_INACTIVE},     {"failed", FLT_FAILED}};

	for (size_t i = 0; s && i < ARRAY_SIZE(map); i++)
		if (!strcmp(s, map[i].name)) {
			*ret = map[i].a;
			return true;
		}
	return false;
}

static void fill_exit(const struct props *p, struct flt_status *s)
{
	s->exit_code = -1;
	s->exit_signal = 0;
	if (p->exec_main_code == 1) /* CLD_EXITED */
		s->exit_code = p->exec_main_status;
	else if (p->exec_main_code == 2 || p->exec_main_code == 3) /* CLD_KILLED, CLD_DUMPED */
		s->exit_signal = p->exec_main_status;
	s->result = p->result;
}

/* Tell the host what changed, and end the task once a stop is through. */
static void maybe_report(struct sd_task *st)
{
	struct props *p = &st->p;
	struct flt_status s = {0};
	enum flt_active a;

	if (!active_of(p->active_state, &a) || !p->sub_state)
		return;
	if (st->adopting && p->load_state && !strcmp(p->load_state, "not-found")) {
		task_end(st, "unit not found");
		return;
	}
	/* Before the start job ran the unit still shows its old inactive/failed self. */
	if (st->job_pending && !st->stopping && (a == FLT_INACTIVE || a == FLT_FAILED))
		return;
	/* after stop() the first inactive/failed report is the last one: wait for the job */
	if (st->stopping && (a == FLT_INACTIVE || a == FLT_FAILED)) {
		if (!st->job_pending)
			task_end(st, NULL);
		return;
	}
	if (st->reported && a == st->last_active && st->last_sub &&
	    !strcmp(st->last_sub, p->sub_state) && st->last_pid == p->main_pid)
		return;
	if (set_str(&st->last_sub, p->sub_state) < 0)
		return;
	st->reported = true;
	st->adopting = false;
	st->last_active = a;
	st->last_pid = p->main_pid;
	s.active = a;
	s.sub = p->sub_state;
	s.main_pid = p->main_pid;
	s.handle = st->name;
	fill_exit(p, &s);
	if (a != FLT_INACTIVE && a != FLT_FAILED)
		s.result = NULL;
	st->d->host->task_status(st->t, &s);
}

static int getall_cb(sd_bus_message *m, void *userdata, sd_bus_error *err);

/* Ask for the whole state (Unit and Service interfaces). */
static void refresh(struct sd_task *st)
{
	static const char *const ifs[2] = {SD_UNIT_IF, SD_SERVICE_IF};

	for (int i = 0; i < 2; i++) {
		if (st->get[i])
			continue; /* the answer in flight is recent enough */
		if (sd_bus_call_method_async(st->d->bus, &st->get[i], SD_DEST, st->path,
		                             "org.freedesktop.DBus.Properties", "GetAll", getall_cb,
		                             st, "s", ifs[i]) < 0)
			flt_log(st->d->host, FLT_LOG_WARN, "systemd: %s: cannot ask its state",
			        st->name);
	}
}

static int getall_cb(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	struct sd_task *st = userdata;
	const sd_bus_error *e = sd_bus_message_get_error(m);
	sd_bus_slot *slot = sd_bus_get_current_slot(st->d->bus);

	(void)err;
	for (int i = 0; i < 2; i++)
		if (st->get[i] == slot)
			st->get[i] = sd_bus_slot_unref(st->get[i]);
	if (e) {
		/* a .service-only interface on a .timer etc. is not an error worth a word */
		if (!sd_bus_error_has_name(e, "org.freedesktop.DBus.Error.UnknownInterface"))
			flt_log(st->d->host, FLT_LOG_WARN, "systemd: %s: cannot read its state: %s",
			        st->name, e->message ? e->message : e->name);
		return 0;
	}
	if (read_props(m, &st->p) < 0)
		return 0;
	if (!st->get[0] && !st->get[1])
		maybe_report(st); /* both halves in */
	return 0;
}

static int props_changed_cb(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	struct sd_task *st = userdata;
	const char *iface;

	(void)err;
	if (sd_bus_message_read(m, "s", &iface) < 0)
		return 0;
	if (strcmp(iface, SD_UNIT_IF) && strcmp(iface, SD_SERVICE_IF))
		return 0;
	if (read_props(m, &st->p) < 0)
		return 0;
	maybe_report(st);
	return 0;
}

static int job_removed_cb(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	struct sd_drv *d = userdata;
	uint32_t id;
	const char *job, *unit, *result;

	(void)err;
	if (sd_bus_message_read(m, "uoss", &id, &job, &unit, &result) < 0)
		return 0;
	for (struct sd_task *st = d->tasks; st; st = st->next)
		if (st->job_pending && !strcmp(st->name, unit)) {
			st->job_pending = false;
			refresh(st);
			break;
		}
	return 0;
}

/* ---- tasks ---- */

static void task_free(struct sd_task *st)
{
	if (!st)
		return;
	ev_timer_stop(st->d->host->loop, &st->kill);
	sd_bus_slot_unref(st->match);
	sd_bus_slot_unref(st->call);
	sd_bus_slot_unref(st->get[0]);
	sd_bus_slot_unref(st->get[1]);
	sd_bus_slot_unref(st->kill_call);
	props_free(&st->p);
	free(st->last_sub);
	free(st->name);
	free(st->path);
	free(st->file);
	free(st);
}

static void task_unlink(struct sd_task *st)
{
	for (struct sd_task **p = &st->d->tasks; *p; p = &(*p)->next)
		if (*p == st) {
			*p = st->next;
			break;
		}
}

/* The last report; the task is detached first (the host may free or restart it from inside).
 * A unit we stopped leaves no file and no failed state behind. */
static void task_end(struct sd_task *st, const char *message)
{
	struct sd_drv *d = st->d;
	struct flt_task *t = st->t;
	struct flt_status s = {.exit_code = -1, .message = message};
	enum flt_active a = FLT_INACTIVE;
	char *sub = NULL, *result = NULL;

	if (!message && active_of(st->p.active_state, &a) && st->p.sub_state) {
		sub = strdup(st->p.sub_state);
		result = st->p.result ? strdup(st->p.result) : NULL;
	}
	if (message || (a != FLT_FAILED && a != FLT_INACTIVE))
		a = message && !st->adopting ? FLT_FAILED : FLT_INACTIVE;
	s.active = a;
	s.sub = sub ? sub : a == FLT_FAILED ? "failed" : "dead";
	fill_exit(&st->p, &s);
	s.result = result ? result : a == FLT_FAILED ? "resources" : "success";
	s.handle = NULL;
	task_unlink(st);
	if (t->drv_data == st)
		t->drv_data = NULL;
	if (st->stopping && st->file && !d->broken) {
		unlink(st->file);
		sd_bus_call_method_async(d->bus, NULL, SD_DEST, SD_PATH, SD_MANAGER,
		                         "ResetFailedUnit", NULL, NULL, "s", st->name);
		sd_bus_call_method_async(d->bus, NULL, SD_DEST, SD_PATH, SD_MANAGER, "Reload", NULL,
		                         NULL, "");
	}
	task_free(st);
	d->host->task_status(t, &s);
	free(sub);
	free(result);
}

static void call_failed(struct sd_task *st, const char *what, const sd_bus_error *e)
{
	struct buf m = BUF_INIT;

	buf_printf(&m, "systemd refused to %s '%s': %s", what, st->name,
	           e->message ? e->message : e->name);
	flt_log(st->d->host, FLT_LOG_ERROR, "systemd: %s", m.data ? m.data : what);
	st->stopping = false;
	task_end(st, m.data ? m.data : "systemd refused");
	buf_release(&m);
}

static int start_cb(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	struct sd_task *st = userdata;
	const sd_bus_error *e = sd_bus_message_get_error(m);

	(void)err;
	st->call = sd_bus_slot_unref(st->call);
	if (e) {
		call_failed(st, "start", e);
		return 0;
	}
	refresh(st);
	return 0;
}

static int reload_cb(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	struct sd_task *st = userdata;
	const sd_bus_error *e = sd_bus_message_get_error(m);
	int r;

	(void)err;
	st->call = sd_bus_slot_unref(st->call);
	if (e) {
		call_failed(st, "reload for", e);
		return 0;
	}
	st->job_pending = true;
	r = sd_bus_call_method_async(st->d->bus, &st->call, SD_DEST, SD_PATH, SD_MANAGER,
	                             "StartUnit", start_cb, st, "ss", st->name, "replace");
	if (r < 0) {
		sd_bus_error e2 = SD_BUS_ERROR_NULL;

		sd_bus_error_set_errno(&e2, r);
		call_failed(st, "start", &e2);
		sd_bus_error_free(&e2);
	}
	return 0;
}

static int stop_cb(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	struct sd_task *st = userdata;
	const sd_bus_error *e = sd_bus_message_get_error(m);

	(void)err;
	st->call = sd_bus_slot_unref(st->call);
	if (e) {
		flt_log(st->d->host, FLT_LOG_WARN, "systemd: cannot stop '%s': %s", st->name,
		        e->message ? e->message : e->name);
		st->job_pending = false;
	}
	refresh(st);
	return 0;
}

static int kill_reply_cb(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	struct sd_task *st = userdata;

	(void)m;
	(void)err;
	st->kill_call = sd_bus_slot_unref(st->kill_call);
	return 0;
}

static void kill_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct sd_task *st = container_of(w, struct sd_task, kill);

	(void)loop;
	(void)revents;
	flt_log(st->d->host, FLT_LOG_WARN, "systemd: stopping '%s' timed out, killing", st->name);
	if (!st->kill_call)
		sd_bus_call_method_async(st->d->bus, &st->kill_call, SD_DEST, SD_PATH, SD_MANAGER,
		                         "KillUnit", kill_reply_cb, st, "ssi", st->name, "all",
		                         (int32_t)SIGKILL);
}

static struct sd_task *task_new(struct sd_drv *d, struct flt_task *t, const char *name, int *ret)
{
	struct sd_task *st = calloc(1, sizeof(*st));
	int r = -ENOMEM;

	if (!st)
		goto fail;
	st->d = d;
	st->t = t;
	ev_init(&st->kill, kill_cb);
	st->name = strdup(name);
	if (!st->name)
		goto fail;
	r = sd_bus_path_encode(SD_PATH "/unit", name, &st->path);
	if (r < 0)
		goto fail;
	r = sd_bus_match_signal_async(d->bus, &st->match, SD_DEST, st->path,
	                              "org.freedesktop.DBus.Properties", "PropertiesChanged",
	                              props_changed_cb, NULL, st);
	if (r < 0)
		goto fail;
	return st;
fail:
	task_free(st);
	*ret = r;
	return NULL;
}

/* What start() and adopt() begin with: a new task following the unit `name` (NULL: the unit
 * cannot be run here). -EALREADY, -ENOTCONN (the bus is gone), -EINVAL, or task_new's error. */
static int task_begin(struct sd_drv *d, struct flt_task *t, const char *name,
                      struct sd_task **ret_st)
{
	struct sd_task *st;
	int r;

	if (t->drv_data)
		return -EALREADY;
	if (d->broken)
		return -ENOTCONN;
	if (!name)
		return -EINVAL;
	st = task_new(d, t, name, &r);
	if (!st)
		return r;
	*ret_st = st;
	return 0;
}

static void task_link(struct sd_task *st)
{
	st->next = st->d->tasks;
	st->d->tasks = st;
	st->t->drv_data = st;
}

/* Write the unit file atomically (a reload must never read half of it). */
static int write_unit(struct sd_task *st, const char *text)
{
	struct buf tmp = BUF_INIT, file = BUF_INIT;
	size_t len = strlen(text), off = 0;
	int fd, r;

	if (buf_printf(&file, "%s/%s", st->d->unit_dir, st->name) < 0 ||
	    buf_printf(&tmp, "%s/.%s.flotilla-tmp", st->d->unit_dir, st->name) < 0) {
		r = -ENOMEM;
		goto out;
	}
	fd = open(tmp.data, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		r = -errno;
		goto out;
	}
	while (off < len) {
		ssize_t n = write(fd, text + off, len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -errno;
			close(fd);
			unlink(tmp.data);
			goto out;
		}
		off += (size_t)n;
	}
	close(fd);
	if (rename(tmp.data, file.data) < 0) {
		r = -errno;
		unlink(tmp.data);
		goto out;
	}
	st->file = buf_steal(&file);
	r = 0;
out:
	buf_release(&tmp);
	buf_release(&file);
	return r;
}

/* ---- the ABI ---- */

static int sd_start(struct flt_drv *drv, struct flt_task *t)
{
	struct sd_drv *d = (struct sd_drv *)drv;
	bool runnable = t->unit_text && !strchr(t->unit, '/') && t->unit[0] != '.';
	struct sd_task *st = NULL;
	int r;

	r = task_begin(d, t, runnable ? t->unit : NULL, &st);
	if (r < 0)
		return r;
	r = write_unit(st, t->unit_text);
	if (r < 0) {
		flt_log(d->host, FLT_LOG_ERROR, "systemd: cannot write unit file '%s/%s': %s",
		        d->unit_dir, t->unit, strerror(-r));
		task_free(st);
		return r;
	}
	/* the manager reads unit files only when told to */
	r = sd_bus_call_method_async(d->bus, &st->call, SD_DEST, SD_PATH, SD_MANAGER, "Reload",
	                             reload_cb, st, "");
	if (r < 0) {
		unlink(st->file);
		task_free(st);
		return r;
	}
	st->job_pending = true;
	task_link(st);
	{
		struct flt_status s = {
		    .active = FLT_ACTIVATING, .sub = "start", .exit_code = -1, .handle = st->name};

		d->host->task_status(t, &s);
	}
	return 0;
}

static int sd_stop(struct flt_drv *drv, struct flt_task *t, unsigned timeout_ms)
{
	struct sd_drv *d = (struct sd_drv *)drv;
	struct sd_task *st = t->drv_data;
	int r;

	if (!st) {
		drv_report_stopped(d->host, t);
		return 0;
	}
	if (st->stopping)
		return 0;
	st->stopping = true;
	st->job_pending = true;
	/* a pending Reload/StartUnit is superseded: StopUnit(replace) cancels a start job */
	st->call = sd_bus_slot_unref(st->call);
	r = sd_bus_call_method_async(d->bus, &st->call, SD_DEST, SD_PATH, SD_MANAGER, "StopUnit",
	                             stop_cb, st, "ss", st->name, "replace");
	if (r < 0) {
		task_end(st, "cannot ask systemd to stop the unit");
		return 0;
	}
	if (timeout_ms) {
		ev_timer_set(&st->kill, timeout_ms / 1000.0, 0.);
		ev_timer_start(d->host->loop, &st->kill);
	}
	if (!st->file) { /* adopted: the file we wrote before the restart */
		struct buf f = BUF_INIT;

		if (buf_printf(&f, "%s/%s", d->unit_dir, st->name) >= 0)
			st->file = buf_steal(&f);
	}
	{
		struct flt_status s = {.active = FLT_DEACTIVATING,
		                       .sub = "stop",
		                       .main_pid = st->p.main_pid,
		                       .exit_code = -1};

		d->host->task_status(t, &s);
	}
	return 0;
}

static int sd_adopt(struct flt_drv *drv, struct flt_task *t)
{
	struct sd_drv *d = (struct sd_drv *)drv;
	struct sd_task *st = NULL;
	int r;

	r = task_begin(d, t, t->handle && *t->handle ? t->handle : t->unit, &st);
	if (r < 0)
		return r;
	st->adopting = true;
	task_link(st);
	refresh(st);
	return 0;
}

static void sd_release(struct flt_drv *drv, struct flt_task *t)
{
	struct sd_task *st = t->drv_data;

	(void)drv;
	if (!st)
		return;
	task_unlink(st);
	t->drv_data = NULL;
	task_free(st);
}

static int sd_open(const struct flt_host *host, const struct flt_drv_config *cfg,
                   struct flt_drv **ret, const char **why)
{
	struct sd_drv *d = calloc(1, sizeof(*d));
	const char *which = "system", *dir = NULL;
	struct buf ud = BUF_INIT;
	int r;

	if (!d)
		return -ENOMEM;
	d->host = host;
	for (size_t i = 0; cfg && i < cfg->n; i++) {
		if (!strcmp(cfg->keys[i], "systemd-bus"))
			which = cfg->values[i];
		else if (!strcmp(cfg->keys[i], "systemd-unit-dir"))
			dir = cfg->values[i];
	}
	if (strcmp(which, "system") && strcmp(which, "user")) {
		*why = "systemd: 'systemd-bus' must be 'system' or 'user'";
		free(d);
		return -EINVAL;
	}
	if (dir) {
		r = buf_puts(&ud, dir);
	} else if (!strcmp(which, "user")) {
		const char *x = getenv("XDG_RUNTIME_DIR");

		if (!x || !*x) {
			*why = "systemd: the user bus needs XDG_RUNTIME_DIR";
			free(d);
			return -EINVAL;
		}
		r = buf_printf(&ud, "%s/systemd/user", x);
	} else {
		r = buf_puts(&ud, "/run/systemd/system");
	}
	if (r < 0) {
		free(d);
		return -ENOMEM;
	}
	d->unit_dir = buf_steal(&ud);
	if (!strcmp(which, "user")) { /* may not exist before the first runtime unit */
		struct buf p = BUF_INIT;

		if (buf_printf(&p, "%s/..", d->unit_dir) >= 0)
			mkdir(p.data, 0755);
		mkdir(d->unit_dir, 0755);
		buf_release(&p);
	}
	r = !strcmp(which, "user") ? sd_bus_open_user(&d->bus) : sd_bus_open_system(&d->bus);
	if (r < 0) {
		*why = !strcmp(which, "user") ? "systemd: cannot connect to the user bus"
		                              : "systemd: cannot connect to the system bus";
		goto fail;
	}
	/* without Subscribe the manager sends no PropertiesChanged/JobRemoved */
	r = sd_bus_match_signal_async(d->bus, &d->job_match, SD_DEST, SD_PATH, SD_MANAGER,
	                              "JobRemoved", job_removed_cb, NULL, d);
	if (r >= 0)
		r = sd_bus_call_method_async(d->bus, NULL, SD_DEST, SD_PATH, SD_MANAGER,
		                             "Subscribe", NULL, NULL, "");
	if (r < 0) {
		*why = "systemd: cannot subscribe to the manager's signals";
		goto fail;
	}
	ev_init(&d->io, io_cb);
	ev_init(&d->timer, timer_cb);
	ev_prepare_init(&d->prepare, prepare_cb);
	ev_prepare_start(host->loop, &d->prepare);
	bus_update(d);
	*ret = (struct flt_drv *)d;
	return 0;
fail:
	sd_bus_slot_unref(d->job_match);
	sd_bus_flush_close_unref(d->bus);
	free(d->unit_dir);
	free(d);
	return r;
}

static void sd_close(struct flt_drv *drv)
{
	struct sd_drv *d = (struct sd_drv *)drv;
	struct ev_loop *loop;

	if (!d)
		return;
	loop = d->host->loop;
	while (d->tasks) {
		struct sd_task *st = d->tasks;

		d->tasks = st->next;
		st->t->drv_data = NULL;
		task_free(st);
	}
	ev_io_stop(loop, &d->io);
	ev_timer_stop(loop, &d->timer);
	ev_prepare_stop(loop, &d->prepare);
	sd_bus_slot_unref(d->job_match);
	/* flush: the ResetFailedUnit/Reload calls of the last stops should reach the manager;
	 * a local socket write, bounded by the few messages queued */
	sd_bus_flush_close_unref(d->bus);
	free(d->unit_dir);
	free(d);
}

static const struct flt_drv_ops sd_ops = {
    .abi_major = FLT_DRV_ABI_MAJOR,
    .abi_minor = FLT_DRV_ABI_MINOR,
    .ops_size = sizeof(struct flt_drv_ops),
    .name = "systemd",
    .open = sd_open,
    .start = sd_start,
    .stop = sd_stop,
    .adopt = sd_adopt,
    .release = sd_release,
    .list = NULL,
    .remove = NULL,
    .close = sd_close,
};

DRV_ENTRY(sd_ops)
