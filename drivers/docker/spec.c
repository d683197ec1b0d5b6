/* The docker driver's translation of a unit into a container: the body of POST /containers/create
 * built from [X-Flotilla] Image=, Command=, Env=, Ports=, Volumes=, Network=, Pull= and the
 * [Service] options that carry over (ExecStart=, Environment=, KillSignal=, User=,
 * WorkingDirectory=). No I/O and no logging. */
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include <flotilla/driver.h>

#include "spec.h"
#include "util/buf.h"
#include "util/util.h"

/* Split a command line or a list the way systemd does for ExecStart=/Environment=: whitespace
 * separates words, "..." and '...' quote, a backslash escapes the next character. Appends the
 * words to `arr`. Returns 0 or -ENOMEM / -EINVAL (an unterminated quote). */
static int dk_split(const char *s, json_t *arr)
{
	struct buf w = BUF_INIT;
	int rc = 0;

	while (*s) {
		char q = 0;
		bool any = false;

		while (isspace((unsigned char)*s))
			s++;
		if (!*s)
			break;
		buf_clear(&w);
		while (*s && (q || !isspace((unsigned char)*s))) {
			char c = *s++;

			any = true;
			if (q && c == q) {
				q = 0;
				continue;
			}
			if (!q && (c == '"' || c == '\'')) {
				q = c;
				continue;
			}
			if (c == '\\' && *s && q != '\'')
				c = *s++;
			if (buf_putc(&w, c) < 0) {
				rc = -ENOMEM;
				goto out;
			}
		}
		if (q) {
			rc = -EINVAL;
			goto out;
		}
		if (any && json_array_append_new(arr, json_string(w.data ? w.data : "")) < 0) {
			rc = -ENOMEM;
			goto out;
		}
	}
out:
	buf_release(&w);
	return rc;
}

/* All values of section.name in file order, split into words. */
static int dk_split_all(const struct flt_task *t, const char *section, const char *name,
                        json_t *arr)
{
	for (size_t i = 0; i < t->n_options; i++) {
		int rc;

		if (strcmp(t->options[i].section, section) || strcmp(t->options[i].name, name))
			continue;
		rc = dk_split(t->options[i].value, arr);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* "[ip:]hostport:containerport[/proto]" or "containerport[/proto]" into ExposedPorts and
 * PortBindings. Returns 0 or -EINVAL. */
static int dk_add_port(const char *spec, json_t *exposed, json_t *bindings)
{
	_cleanup_free_ char *s = strdup(spec);
	char *parts[3];
	int n = 0;
	char *p, *proto;
	struct buf key = BUF_INIT;
	int rc = -EINVAL;

	if (!s)
		return -ENOMEM;
	for (p = s; n < 3;) {
		parts[n++] = p;
		p = strchr(p, ':');
		if (!p)
			break;
		*p++ = '\0';
	}
	if (p) /* more than three parts */
		return -EINVAL;
	proto = strchr(parts[n - 1], '/');
	if (proto)
		*proto++ = '\0';
	else
		proto = "tcp";
	if (!*parts[n - 1] || strspn(parts[n - 1], "0123456789") != strlen(parts[n - 1]))
		return -EINVAL;
	if (strcmp(proto, "tcp") && strcmp(proto, "udp") && strcmp(proto, "sctp"))
		return -EINVAL;
	if (buf_printf(&key, "%s/%s", parts[n - 1], proto) < 0)
		return -ENOMEM;
	if (json_object_set_new(exposed, key.data, json_object()) < 0)
		goto out;
	if (n > 1) {
		json_t *list = json_object_get(bindings, key.data);
		json_t *b = json_pack("{s:s, s:s}", "HostIp", n == 3 ? parts[0] : "", "HostPort",
		                      parts[n - 2]);

		if (!b)
			goto out;
		if (!list) {
			list = json_array();
			if (!list || json_object_set_new(bindings, key.data, list) < 0) {
				json_decref(b);
				goto out;
			}
		}
		if (json_array_append_new(list, b) < 0)
			goto out;
	}
	rc = 0;
out:
	buf_release(&key);
	return rc;
}

int dk_build_create(const struct flt_task *t, enum dk_pull *ret_pull, char **ret_body,
                    char **ret_image, char **ret_why)
{
	const char *image = flt_task_option(t, "X-Flotilla", "Image");
	const char *cmd = flt_task_option(t, "X-Flotilla", "Command");
	const char *network = flt_task_option(t, "X-Flotilla", "Network");
	const char *pull = flt_task_option(t, "X-Flotilla", "Pull");
	const char *v;
	json_t *root = NULL, *hc, *arr, *exposed, *bindings, *vols, *binds, *labels;
	enum dk_pull pol = DK_PULL_MISSING;
	struct buf why = BUF_INIT;
	int rc = -ENOMEM;
	char *body;

	if (!image || !*image) {
		buf_puts(&why, "docker: the unit has no Image= in [X-Flotilla]");
		rc = -EINVAL;
		goto fail;
	}
	if (pull && !strcmp(pull, "always")) {
		pol = DK_PULL_ALWAYS;
	} else if (pull && !strcmp(pull, "never")) {
		pol = DK_PULL_NEVER;
	} else if (pull && strcmp(pull, "missing")) {
		buf_printf(&why, "docker: invalid Pull= '%s' (missing, always or never)", pull);
		rc = -EINVAL;
		goto fail;
	}
	root = json_object();
	hc = json_object();
	labels = json_pack("{s:s, s:s}", DK_LABEL_UNIT, t->unit, DK_LABEL_MACHINE,
	                   t->machine_id ? t->machine_id : "");
	if (!root || !hc || !labels || json_object_set_new(root, "HostConfig", hc) < 0 ||
	    json_object_set_new(root, "Labels", labels) < 0 ||
	    json_object_set_new(root, "Image", json_string(image)) < 0 ||
	    json_object_set_new(root, "Tty", json_false()) < 0)
		goto fail;

	/* The command: Command= (container semantics) wins over ExecStart= (the unit's). */
	rc = 0;
	arr = json_array();
	if (!arr || json_object_set_new(root, "Cmd", arr) < 0)
		goto fail;
	if (cmd) {
		rc = dk_split(cmd, arr);
	} else if ((v = flt_task_option(t, "Service", "ExecStart"))) {
		while (*v == '-' || *v == '@' || *v == '+' || *v == '!' || *v == ':')
			v++;
		rc = dk_split(v, arr);
	}
	if (rc == -EINVAL)
		buf_puts(&why, "docker: unterminated quote in the command");
	if (rc < 0)
		goto fail;
	if (!json_array_size(arr))
		json_object_del(root, "Cmd"); /* the image's own */

	arr = json_array();
	if (!arr || json_object_set_new(root, "Env", arr) < 0)
		goto fail;
	rc = dk_split_all(t, "Service", "Environment", arr);
	if (rc >= 0)
		rc = dk_split_all(t, "X-Flotilla", "Env", arr);
	if (rc < 0) {
		if (rc == -EINVAL)
			buf_puts(&why, "docker: unterminated quote in Env=");
		goto fail;
	}
	rc = -ENOMEM;

	/* Ports= */
	exposed = json_object();
	bindings = json_object();
	arr = json_array();
	if (!exposed || !bindings || !arr ||
	    json_object_set_new(root, "ExposedPorts", exposed) < 0 ||
	    json_object_set_new(hc, "PortBindings", bindings) < 0) {
		json_decref(arr);
		goto fail;
	}
	if (dk_split_all(t, "X-Flotilla", "Ports", arr) < 0) {
		json_decref(arr);
		goto fail;
	}
	for (size_t i = 0; i < json_array_size(arr); i++) {
		const char *p = json_string_value(json_array_get(arr, i));

		rc = dk_add_port(p, exposed, bindings);
		if (rc < 0) {
			if (rc == -EINVAL)
				buf_printf(&why, "docker: invalid Ports= entry '%s'", p);
			json_decref(arr);
			goto fail;
		}
	}
	json_decref(arr);
	rc = -ENOMEM;

	/* Volumes=: "/host:/ctr[:ro]" binds, "/ctr" an anonymous volume */
	vols = json_object();
	binds = json_array();
	arr = json_array();
	if (!vols || !binds || !arr || json_object_set_new(root, "Volumes", vols) < 0 ||
	    json_object_set_new(hc, "Binds", binds) < 0) {
		json_decref(arr);
		goto fail;
	}
	if (dk_split_all(t, "X-Flotilla", "Volumes", arr) < 0) {
		json_decref(arr);
		goto fail;
	}
	for (size_t i = 0; i < json_array_size(arr); i++) {
		json_t *s = json_array_get(arr, i);
		const char *p = json_string_value(s);

		if (*p != '/' && !strchr(p, ':')) {
			buf_printf(&why, "docker: invalid Volumes= entry '%s'", p);
			json_decref(arr);
			rc = -EINVAL;
			goto fail;
		}
		if (strchr(p, ':') ? json_array_append(binds, s) < 0
		                   : json_object_set_new(vols, p, json_object()) < 0) {
			json_decref(arr);
			goto fail;
		}
	}
	json_decref(arr);

	if (network && *network && json_object_set_new(hc, "NetworkMode", json_string(network)) < 0)
		goto fail;
	if ((v = flt_task_option(t, "Service", "KillSignal")) &&
	    json_object_set_new(root, "StopSignal", json_string(v)) < 0)
		goto fail;
	if ((v = flt_task_option(t, "Service", "User")) &&
	    json_object_set_new(root, "User", json_string(v)) < 0)
		goto fail;
	if ((v = flt_task_option(t, "Service", "WorkingDirectory")) && *v == '/' &&
	    json_object_set_new(root, "WorkingDir", json_string(v)) < 0)
		goto fail;

	body = json_dumps(root, JSON_COMPACT);
	if (!body)
		goto fail;
	*ret_image = strdup(image);
	if (!*ret_image) {
		free(body);
		goto fail;
	}
	*ret_body = body;
	*ret_pull = pol;
	json_decref(root);
	return 0;
fail:
	json_decref(root);
	if (!why.data)
		buf_puts(&why, "docker: out of memory");
	*ret_why = buf_steal(&why);
	return rc < 0 ? rc : -ENOMEM;
}
