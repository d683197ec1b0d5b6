/* The [Service] options the exec driver honours, read from a task's unit into a struct
 * exec_conf: the Exec*= command lists with their prefixes, Type=, RemainAfterExit=, timeouts,
 * KillSignal=, Environment=, EnvironmentFile=, WorkingDirectory=, User=, Group=, PIDFile=.
 * No logging; errors are negative errno. */
#ifndef FLT_EXEC_OPTIONS_H
#define FLT_EXEC_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>

struct flt_task;

#define EXEC_DEFAULT_TIMEOUT_MS 90000u

/* One Exec*= command. */
struct exec_cmd {
	char *line;       /* without prefixes */
	bool ignore_fail; /* '-' */
	bool argv0_swap;  /* '@' */
	bool noexpand;    /* ':' */
	bool privileged;  /* '+': ignores User=/Group= */
};

struct exec_cmdlist {
	struct exec_cmd *v;
	size_t n;
};

enum svc_type { TYPE_SIMPLE, TYPE_ONESHOT, TYPE_FORKING };

struct exec_conf {
	enum svc_type type;
	bool remain;
	int kill_signal;
	unsigned start_ms, stop_ms;
	char *user, *group, *dir, *pidfile;
	char **envfiles;
	size_t n_envfiles;
	char **env; /* NULL-terminated, for execve of the shim */
	struct exec_cmdlist pre, start, post, stop, stop_post;
};

/* Reads t's [Service] options into c (zeroed storage of the caller; t is borrowed). Returns 0,
 * -ENOMEM, or -EINVAL with *why (a static string) for what systemd would refuse. On failure c
 * may hold part of the options: exec_conf_release it either way. */
int exec_conf_parse(struct exec_conf *c, const struct flt_task *t, const char **why);

/* Frees what c holds and zeroes it. */
void exec_conf_release(struct exec_conf *c);

#endif
