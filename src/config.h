/* flotillad's settings: one table of options read, in rising precedence, from built-in defaults,
 * the config file (/etc/flotilla/flotilla.conf or --config), FLOTILLA_* environment variables
 * and the command line. Flag names are etcd's where etcd has one; `--flag`, `-flag`,
 * `--flag=value` and `--flag value` are all accepted, as etcd accepts them. */
#ifndef FLT_CONFIG_H
#define FLT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct strlist {
	char **v; /* owned strings */
	size_t n;
};

struct config {
	char *name;
	char *data_dir;
	struct strlist listen_client_urls;
	struct strlist advertise_client_urls;
	struct strlist listen_peer_urls;
	struct strlist initial_advertise_peer_urls;
	char *initial_cluster;
	char *initial_cluster_state;
	char *initial_cluster_token;
	uint64_t snapshot_count;
	uint64_t heartbeat_interval; /* ms */
	uint64_t election_timeout;   /* ms */
	uint64_t max_watches;
	uint64_t max_request_bytes;
	char *log_level;
	char *config_file;
	bool enable_v2; /* accepted for etcd compatibility; the v2 API is always on */
};

enum config_result { CONFIG_OK = 0, CONFIG_EXIT_OK = 1 /* --help/--version printed */ };

/* Fill `c` from defaults, the config file, the environment and argv. On a bad setting writes a
 * message naming it into `err` and returns -EINVAL; returns CONFIG_EXIT_OK after printing help or
 * the version, CONFIG_OK otherwise. */
int config_load(struct config *c, int argc, char **argv, char *err, size_t errlen);
void config_release(struct config *c);

/* Split "a,b,c" into a list (empty items dropped). 0 or -ENOMEM. */
int strlist_split(struct strlist *l, const char *s);
void strlist_release(struct strlist *l);

#endif
