/* The loader side of the driver ABI: every *.so of the driver directory is dlopen'ed and asked
 * for its ops table, which is checked the way nginx checks its modules (ABI major, table size,
 * name) before anything in it is called. Refusals are logged and remembered for --list-drivers. */
#include "driver/host.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"
#include "util/log.h"
#include "util/util.h"

/* The ABI 1.0 fields the host calls: a table that ends before `close` is too old or broken. */
#define DRV_OPS_MIN_SIZE (offsetof(struct flt_drv_ops, close) + sizeof(void (*)(void)))

struct drv_slot {
	struct drv_entry e;
	void *dl;
	struct flt_host host; /* this driver's copy (log prefix needs to know whose) */
	char *open_error;
};

struct drv_host {
	struct drv_slot *v;
	size_t n;
	char **refused;
	size_t n_refused;
};

static int refuse(struct drv_host *h, void *dl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int refuse(struct drv_host *h, void *dl, const char *fmt, ...)
{
	struct buf b = BUF_INIT;
	char **nv;
	va_list ap;
	int r;

	if (dl)
		dlclose(dl);
	va_start(ap, fmt);
	r = buf_vprintf(&b, fmt, ap);
	va_end(ap);
	if (r < 0)
		return r;
	log_warn("%s", b.data);
	nv = realloc(h->refused, (h->n_refused + 1) * sizeof(*nv));
	if (!nv) {
		buf_release(&b);
		return -ENOMEM;
	}
	h->refused = nv;
	h->refused[h->n_refused++] = buf_steal(&b);
	return 0;
}

/* The file name without directory and ".so": what we call a driver before it tells its name. */
static int stem(const char *file, struct buf *out)
{
	size_t n = strlen(file);

	if (n > 3 && !strcmp(file + n - 3, ".so"))
		n -= 3;
	return buf_append(out, file, n);
}

static int load_one(struct drv_host *h, const char *dir, const char *file)
{
	struct buf path = BUF_INIT, name = BUF_INIT;
	const struct flt_drv_ops *(*entry)(void);
	const struct flt_drv_ops *ops;
	struct drv_slot *nv;
	void *dl;
	int r;

	if (buf_printf(&path, "%s/%s", dir, file) < 0 || stem(file, &name) < 0) {
		r = -ENOMEM;
		goto out;
	}
	dl = dlopen(path.data, RTLD_NOW | RTLD_LOCAL);
	if (!dl) {
		const char *e = dlerror();

		r = refuse(h, NULL, "cannot load driver '%s' (%s): %s", name.data, path.data,
		           e ? e : "unknown error");
		goto out;
	}
	/* POSIX's sanctioned way to turn the object pointer dlsym returns into a function. */
	*(void **)&entry = dlsym(dl, FLT_DRIVER_ENTRY);
	if (!entry) {
		r = refuse(h, dl, "cannot load driver '%s' (%s): no symbol %s", name.data,
		           path.data, FLT_DRIVER_ENTRY);
		goto out;
	}
	ops = entry();
	if (!ops) {
		r = refuse(h, dl, "driver '%s' (%s) returned no ops table", name.data, path.data);
		goto out;
	}
	if (ops->abi_major != FLT_DRV_ABI_MAJOR) {
		r = refuse(
		    h, dl,
		    "driver '%s' (%s) is not binary compatible: ABI %u.%u, flotillad needs %u.x",
		    name.data, path.data, (unsigned)ops->abi_major, (unsigned)ops->abi_minor,
		    (unsigned)FLT_DRV_ABI_MAJOR);
		goto out;
	}
	if (ops->ops_size < DRV_OPS_MIN_SIZE) {
		r = refuse(h, dl,
		           "driver '%s' (%s) is not binary compatible: ops table of %zu bytes, "
		           "flotillad needs at least %zu",
		           name.data, path.data, ops->ops_size, (size_t)DRV_OPS_MIN_SIZE);
		goto out;
	}
	if (!ops->name || !*ops->name || !ops->open || !ops->start || !ops->stop || !ops->adopt ||
	    !ops->release || !ops->close) {
		r = refuse(h, dl,
		           "driver '%s' (%s) is incomplete: no name or a mandatory function "
		           "missing",
		           name.data, path.data);
		goto out;
	}
	for (size_t i = 0; i < h->n; i++)
		if (!strcmp(h->v[i].e.name, ops->name)) {
			r = refuse(h, dl,
			           "driver '%s' (%s) is a duplicate: '%s' was loaded from %s",
			           ops->name, path.data, ops->name, h->v[i].e.path);
			goto out;
		}
	nv = realloc(h->v, (h->n + 1) * sizeof(*nv));
	if (!nv) {
		dlclose(dl);
		r = -ENOMEM;
		goto out;
	}
	h->v = nv;
	memset(&h->v[h->n], 0, sizeof(h->v[h->n]));
	h->v[h->n].dl = dl;
	h->v[h->n].e.ops = ops;
	h->v[h->n].e.name = ops->name;
	h->v[h->n].e.path = buf_steal(&path);
	h->n++;
	r = 0;
out:
	buf_release(&path);
	buf_release(&name);
	return r;
}

static int so_filter(const struct dirent *de)
{
	size_t n = strlen(de->d_name);

	return de->d_name[0] != '.' && n > 3 && !strcmp(de->d_name + n - 3, ".so") &&
	       (de->d_type == DT_REG || de->d_type == DT_LNK || de->d_type == DT_UNKNOWN);
}

int drv_host_load(const char *dir, struct drv_host **ret)
{
	struct dirent **list = NULL;
	struct drv_host *h;
	int n, r = 0;

	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	n = scandir(dir, &list, so_filter, alphasort);
	if (n < 0) {
		r = -errno;
		if (r == -ENOENT) {
			*ret = h;
			return 0;
		}
		free(h);
		return r;
	}
	for (int i = 0; i < n; i++) {
		if (r == 0 && i >= DRV_HOST_MAX)
			r = refuse(h, NULL, "driver '%s' ignored: more than %d drivers in '%s'",
			           list[i]->d_name, DRV_HOST_MAX, dir);
		else if (r == 0)
			r = load_one(h, dir, list[i]->d_name);
		free(list[i]);
	}
	free(list);
	if (r < 0) {
		drv_host_free(h);
		return r;
	}
	*ret = h;
	return 0;
}

static void host_log(const struct flt_host *fh, enum flt_log_level level, const char *fmt,
                     va_list ap)
{
	const struct drv_slot *s = container_of(fh, const struct drv_slot, host);
	struct buf b = BUF_INIT;
	int lvl = level == FLT_LOG_ERROR  ? LOG_LVL_ERROR
	          : level == FLT_LOG_WARN ? LOG_LVL_WARN
	          : level == FLT_LOG_INFO ? LOG_LVL_INFO
	                                  : LOG_LVL_DEBUG;

	if (lvl > log_level_current)
		return;
	if (buf_vprintf(&b, fmt, ap) < 0)
		return;
	log_write(lvl, "driver '%s': %s", s->e.name, b.data);
	buf_release(&b);
}

int drv_host_open(struct drv_host *h, const struct flt_host *tmpl, const struct flt_drv_config *cfg)
{
	static const struct flt_drv_config none = {NULL, NULL, 0};
	int n_open = 0;

	for (size_t i = 0; i < h->n; i++) {
		struct drv_slot *s = &h->v[i];
		const char *why = NULL;
		int r;

		if (s->e.drv) {
			n_open++;
			continue;
		}
		s->host = *tmpl;
		s->host.abi_major = FLT_DRV_ABI_MAJOR;
		s->host.abi_minor = FLT_DRV_ABI_MINOR;
		s->host.host_size = sizeof(struct flt_host);
		s->host.log = host_log;
		r = s->e.ops->open(&s->host, cfg ? cfg : &none, &s->e.drv, &why);
		if (r < 0 || !s->e.drv) {
			struct buf b = BUF_INIT;

			s->e.drv = NULL;
			free(s->open_error);
			s->open_error = NULL;
			if (buf_printf(&b, "%s", why ? why : flt_strerror(r)) == 0)
				s->open_error = buf_steal(&b);
			s->e.open_error = s->open_error;
			log_warn("cannot open driver '%s': %s", s->e.name,
			         s->open_error ? s->open_error : "out of memory");
			continue;
		}
		n_open++;
	}
	return n_open;
}

size_t drv_host_count(const struct drv_host *h)
{
	return h ? h->n : 0;
}

const struct drv_entry *drv_host_get(const struct drv_host *h, size_t i)
{
	return i < h->n ? &h->v[i].e : NULL;
}

const struct drv_entry *drv_host_find(const struct drv_host *h, const char *name)
{
	if (!h || !name)
		return NULL;
	for (size_t i = 0; i < h->n; i++)
		if (!strcmp(h->v[i].e.name, name))
			return h->v[i].e.drv ? &h->v[i].e : NULL;
	return NULL;
}

size_t drv_host_refused_count(const struct drv_host *h)
{
	return h ? h->n_refused : 0;
}

const char *drv_host_refusal(const struct drv_host *h, size_t i)
{
	return i < h->n_refused ? h->refused[i] : NULL;
}

void drv_host_free(struct drv_host *h)
{
	if (!h)
		return;
	for (size_t i = 0; i < h->n; i++) {
		struct drv_slot *s = &h->v[i];

		if (s->e.drv)
			s->e.ops->close(s->e.drv);
		free((char *)s->e.path);
		free(s->open_error);
		/* Under valgrind, unloading loses the symbols of leaks found in a driver;
		 * FLT_NO_DLCLOSE keeps them mapped for such a run. */
		if (!getenv("FLT_NO_DLCLOSE"))
			dlclose(s->dl);
	}
	for (size_t i = 0; i < h->n_refused; i++)
		free(h->refused[i]);
	free(h->refused);
	free(h->v);
	free(h);
}

int drv_host_list(const char *dir, struct buf *out)
{
	struct drv_host *h;
	int r;

	r = drv_host_load(dir, &h);
	if (r < 0)
		return r;
	for (size_t i = 0; r >= 0 && i < h->n; i++)
		r = buf_printf(out, "%s\tABI %u.%u\t%s\n", h->v[i].e.name,
		               (unsigned)h->v[i].e.ops->abi_major,
		               (unsigned)h->v[i].e.ops->abi_minor, h->v[i].e.path);
	for (size_t i = 0; r >= 0 && i < h->n_refused; i++)
		r = buf_printf(out, "refused\t%s\n", h->refused[i]);
	drv_host_free(h);
	return r < 0 ? r : 0;
}
