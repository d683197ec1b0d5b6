/* etcd's v2 discovery protocol. The directory at the discovery URL holds `_config/size` (set by
 * whoever made the URL) and one key per member, named by its hex id, whose value is
 * "name=peerURL[,name=peerURL]". The first `size` keys by creation index are the cluster; a node
 * that comes later is a proxy of them. Blocking libcurl is fine here: this runs before the loop. */
#include "discovery.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/fs.h"
#include "util/log.h"

#define SAVED_FILE "discovery"
#define WAIT_S     30L  /* one long poll for newcomers; repeated until the cluster is complete */
#define RETRY_MAX  10.0 /* seconds between retries when the service cannot be reached */

struct resp {
	long status;
	uint64_t etcd_index;
	struct buf body;
};

static size_t on_body(char *d, size_t size, size_t n, void *ud)
{
	return buf_append(ud, d, size * n) < 0 ? 0 : size * n;
}

static size_t on_header(char *d, size_t size, size_t n, void *ud)
{
	struct resp *r = ud;

	if (size * n > 14 && !strncasecmp(d, "X-Etcd-Index:", 13))
		r->etcd_index = strtoull(d + 13, NULL, 10);
	return size * n;
}

/* One request. Returns 0 with the answer in *r, or -EIO with curl's reason in `err`. */
static int call(const char *method, const char *url, const char *form, long timeout_s,
                struct resp *r, char *err, size_t errlen)
{
	CURL *c = curl_easy_init();
	char ebuf[CURL_ERROR_SIZE] = "";
	CURLcode rc;

	if (!c)
		return -ENOMEM;
	buf_clear(&r->body);
	r->status = 0;
	r->etcd_index = 0;
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &r->body);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, ebuf);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 5L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, timeout_s);
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
	if (form)
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, form);
	rc = curl_easy_perform(c);
	if (rc == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
	else
		snprintf(err, errlen, "cannot reach discovery service '%s': %s", url,
		         ebuf[0] ? ebuf : curl_easy_strerror(rc));
	curl_easy_cleanup(c);
	return rc == CURLE_OK ? 0 : -EIO;
}

struct reg {
	uint64_t created;
	char *key_id; /* last path component */
	const char *value;
};

static int reg_cmp(const void *a, const void *b)
{
	const struct reg *x = a, *y = b;

	return x->created < y->created ? -1 : x->created > y->created;
}

/* The registrations in the directory, by creation. Returns their count, or -EPROTO. */
static int read_regs(json_t *root, struct reg **ret)
{
	json_t *nodes = json_object_get(json_object_get(root, "node"), "nodes"), *n;
	struct reg *v;
	size_t i, k = 0;

	*ret = NULL;
	if (!nodes)
		return 0;
	if (!json_is_array(nodes))
		return -EPROTO;
	v = calloc(json_array_size(nodes) + 1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	json_array_foreach(nodes, i, n)
	{
		const char *key = json_string_value(json_object_get(n, "key"));
		const char *val = json_string_value(json_object_get(n, "value"));
		const char *slash = key ? strrchr(key, '/') : NULL;

		if (!slash || !val || slash[1] == '_' || json_is_true(json_object_get(n, "dir")))
			continue;
		v[k].created = (uint64_t)json_integer_value(json_object_get(n, "createdIndex"));
		v[k].key_id = (char *)slash + 1;
		v[k].value = val;
		k++;
	}
	qsort(v, k, sizeof(*v), reg_cmp);
	*ret = v;
	return (int)k;
}

static int load_saved(const char *data_dir, struct discovery_result *ret)
{
	struct buf path = BUF_INIT, data = BUF_INIT;
	char chunk[4096];
	ssize_t n;
	int fd, r = -ENOENT;

	buf_printf(&path, "%s/" SAVED_FILE, data_dir);
	fd = path.data ? open(path.data, O_RDONLY | O_CLOEXEC) : -1;
	if (fd >= 0) {
		while ((n = read(fd, chunk, sizeof(chunk))) > 0)
			buf_append(&data, chunk, (size_t)n);
		close(fd);
		/* "member|proxy\n<initial cluster>\n<discovery URL>\n" */
		if (data.data) {
			char *nl = strchr(data.data, '\n'), *nl2 = nl ? strchr(nl + 1, '\n') : NULL;

			if (nl2) {
				*nl = *nl2 = '\0';
				ret->proxy = !strcmp(data.data, "proxy");
				ret->initial_cluster = strdup(nl + 1);
				ret->token = strndup(nl2 + 1, strcspn(nl2 + 1, "\n"));
				r = ret->initial_cluster && ret->token ? 0 : -ENOMEM;
			}
		}
	}
	buf_release(&path);
	buf_release(&data);
	return r;
}

static int save(const char *data_dir, const struct discovery_result *res)
{
	struct buf path = BUF_INIT, tmp = BUF_INIT, data = BUF_INIT;
	int fd, r;

	r = fs_mkdir_p(data_dir, 0700);
	if (r >= 0)
		r = buf_printf(&path, "%s/" SAVED_FILE, data_dir);
	if (r >= 0)
		r = buf_printf(&tmp, "%s/" SAVED_FILE ".tmp", data_dir);
	if (r >= 0)
		r = buf_printf(&data, "%s\n%s\n%s\n", res->proxy ? "proxy" : "member",
		               res->initial_cluster, res->token);
	if (r >= 0) {
		fd = open(tmp.data, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		r = fd < 0 ? -errno : fs_write_all(fd, data.data, data.len);
		if (fd >= 0) {
			if (r >= 0 && fsync(fd) < 0)
				r = -errno;
			close(fd);
		}
		if (r >= 0 && rename(tmp.data, path.data) < 0)
			r = -errno;
	}
	buf_release(&path);
	buf_release(&tmp);
	buf_release(&data);
	return r;
}

static void backoff(double *delay)
{
	struct timespec ts = {(time_t)*delay, (long)((*delay - (double)(time_t)*delay) * 1e9)};

	nanosleep(&ts, NULL);
	*delay = *delay * 2 > RETRY_MAX ? RETRY_MAX : *delay * 2;
}

int discovery_run(const char *url, const char *name, const char *peer_urls, uint64_t member_id,
                  bool fallback_proxy, const char *data_dir, struct discovery_result *ret,
                  char *err, size_t errlen)
{
	struct resp rs = {.body = BUF_INIT};
	struct buf u = BUF_INIT, form = BUF_INIT, self = BUF_INIT, cluster = BUF_INIT;
	char idhex[17], *enc = NULL;
	json_t *root = NULL;
	struct reg *regs = NULL;
	long size = 0;
	double delay = 0.5;
	bool registered = false;
	int r;

	memset(ret, 0, sizeof(*ret));
	if (load_saved(data_dir, ret) == 0) {
		log_info("using the cluster found through discovery earlier (%s): %s",
		         ret->proxy ? "as a proxy" : "as a member", ret->initial_cluster);
		return 0;
	}
	snprintf(idhex, sizeof(idhex), "%llx", (unsigned long long)member_id);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	/* The value etcd registers: every peer URL with the member's name. */
	{
		const char *p = peer_urls;

		while (*p) {
			size_t l = strcspn(p, ",");

			if (l)
				buf_printf(&self, "%s%s=%.*s", self.len ? "," : "", name, (int)l,
				           p);
			p += l + (p[l] == ',');
		}
	}

	/* 1. the size */
	for (;;) {
		buf_clear(&u);
		buf_printf(&u, "%s/_config/size", url);
		r = call("GET", u.data, NULL, 10, &rs, err, errlen);
		if (r == 0 && rs.status == 200)
			break;
		if (r == 0 && rs.status == 404) {
			snprintf(err, errlen,
			         "discovery: '%s' has no _config/size key (not a discovery URL?)",
			         url);
			r = -ENOENT;
			goto out;
		}
		if (r == 0)
			snprintf(err, errlen, "discovery service '%s' answered %ld", url,
			         rs.status);
		log_warn("%s: retrying", err);
		backoff(&delay);
	}
	root = json_loadb(rs.body.data, rs.body.len, 0, NULL);
	{
		const char *v =
		    json_string_value(json_object_get(json_object_get(root, "node"), "value"));
		char *end;

		size = v ? strtol(v, &end, 10) : 0;
		if (!v || *end || size < 1 || size > 1000) {
			snprintf(err, errlen,
			         "discovery: bad cluster size '%s' at '%s/_config/size'",
			         v ? v : "", url);
			r = -EINVAL;
			goto out;
		}
	}
	json_decref(root);
	root = NULL;
	log_info("discovery: cluster of %ld members at '%s'", size, url);

	/* 2. register (unless already full), 3. wait until `size` members registered */
	for (;;) {
		int n, pos = -1;
		uint64_t index;

		r = call("GET", url, NULL, 10, &rs, err, errlen);
		if (r < 0 || rs.status != 200) {
			if (r == 0)
				snprintf(err, errlen, "discovery service '%s' answered %ld", url,
				         rs.status);
			log_warn("%s: retrying", err);
			backoff(&delay);
			continue;
		}
		index = rs.etcd_index;
		json_decref(root);
		free(regs);
		root = json_loadb(rs.body.data, rs.body.len, 0, NULL);
		n = read_regs(root, &regs);
		if (n < 0) {
			snprintf(err, errlen, "discovery: '%s' is not an etcd v2 directory", url);
			r = -EPROTO;
			goto out;
		}
		for (int i = 0; i < n && i < size; i++)
			if (!strcmp(regs[i].key_id, idhex))
				pos = i;
		if (pos < 0 && n >= size) {
			if (!fallback_proxy) {
				snprintf(err, errlen, "discovery: the cluster at '%s' is full",
				         url);
				r = -EEXIST;
				goto out;
			}
			ret->proxy = true;
			log_notice("discovery: the cluster is full: running as a proxy");
		} else if (pos < 0 && !registered) {
			enc = curl_easy_escape(NULL, self.data, (int)self.len);
			buf_clear(&form);
			buf_printf(&form, "value=%s", enc ? enc : "");
			curl_free(enc);
			enc = NULL;
			buf_clear(&u);
			buf_printf(&u, "%s/%s?prevExist=false", url, idhex);
			r = call("PUT", u.data, form.data, 10, &rs, err, errlen);
			if (r == 0 && (rs.status == 201 || rs.status == 200 || rs.status == 412)) {
				registered = true;
				log_info("discovery: registered as '%s' (%s)", idhex, self.data);
			} else {
				if (r == 0)
					snprintf(err, errlen,
					         "discovery: registering at '%s' answered %ld",
					         u.data, rs.status);
				log_warn("%s: retrying", err);
				backoff(&delay);
			}
			continue;
		}
		if (ret->proxy || n >= size) {
			for (long i = 0; i < size; i++)
				buf_printf(&cluster, "%s%s", i ? "," : "", regs[i].value);
			break;
		}
		/* wait for the next registration */
		log_info("discovery: %d of %ld members registered: waiting", n, size);
		buf_clear(&u);
		buf_printf(&u, "%s?wait=true&recursive=true&waitIndex=%llu", url,
		           (unsigned long long)index + 1);
		if (call("GET", u.data, NULL, WAIT_S, &rs, err, errlen) < 0 &&
		    strstr(err, "timed out") == NULL) {
			log_warn("%s: retrying", err);
			backoff(&delay);
		}
	}
	ret->initial_cluster = buf_steal(&cluster);
	ret->token = strdup(url);
	r = ret->initial_cluster && ret->token ? save(data_dir, ret) : -ENOMEM;
	if (r < 0)
		snprintf(err, errlen, "cannot save the discovery result in '%s': %s", data_dir,
		         strerror(-r));
	else
		log_info("discovery: the cluster is %s", ret->initial_cluster);
out:
	json_decref(root);
	free(regs);
	buf_release(&rs.body);
	buf_release(&u);
	buf_release(&form);
	buf_release(&self);
	buf_release(&cluster);
	if (r < 0)
		discovery_result_release(ret);
	return r;
}

void discovery_result_release(struct discovery_result *r)
{
	free(r->initial_cluster);
	free(r->token);
	r->initial_cluster = NULL;
	r->token = NULL;
}
