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
	char *discovery;
	char *discovery_fallback;
	char *proxy;
	uint64_t proxy_refresh_interval; /* ms */
	uint64_t proxy_failure_wait;     /* ms */
	/* the machine and its agent */
	char *machine_id;
	char *public_ip;
	char *metadata;
	bool agent;
	uint64_t agent_ttl; /* ms */
	bool fence;
	char *scheduler_policy;
	char *driver_dir;
	char *default_runtime;
	char *docker_host;
	char *rkt_path;
	char *systemd_bus;
	struct strlist driver_opt; /* key=value */
	bool list_drivers;
	uint64_t memory; /* bytes, 0: all */
	uint64_t cpus;   /* milli-CPUs, 0: all */
};

enum config_result { CONFIG_OK = 0, CONFIG_EXIT_OK = 1 /* --help/--version printed */ };

/* Fill `c` from defaults, the config file, the environment and argv. On a bad setting writes a
 * message naming it into `err` and returns -EINVAL; returns CONFIG_EXIT_OK after printing help or
 * the version, CONFIG_OK otherwise. */
int config_load(struct config *c, int argc, char **argv, char *err, size_t errlen);
void config_release(struct config *c);

/* One member of --initial-cluster ("name=url,name=url2,other=url3": a name may repeat to give
 * a member several peer URLs). */
struct config_member {
	char *name;      /* owned */
	char *peer_urls; /* owned, comma-separated, in the order given */
	uint64_t id;     /* config_member_id of its URLs */
};

struct config_cluster {
	struct config_member *v; /* owned, in order of first appearance */
	size_t n;
	uint64_t cluster_id; /* config_cluster_id */
};

/* Parse --initial-cluster. Every node computes the same ids from the same flags. Returns 0, or
 * -EINVAL with `err` naming the problem (empty, an item without '=', an empty name or URL, two
 * members with the same id), or -ENOMEM. */
int config_parse_cluster(const char *initial_cluster, const char *token, struct config_cluster *ret,
                         char *err, size_t errlen);
void config_cluster_release(struct config_cluster *c);
/* A member's id, as etcd derives it: a hash (FNV-1a 64 here) of its sorted peer URLs and the
 * cluster token; never 0. `urls` is comma-separated. */
uint64_t config_member_id(const char *urls, const char *token);
/* The cluster's id: a hash of the sorted member ids and the token; never 0. */
uint64_t config_cluster_id(const uint64_t *ids, size_t n, const char *token);

/* Split "a,b,c" into a list (empty items dropped). 0 or -ENOMEM. */
int strlist_split(struct strlist *l, const char *s);
void strlist_release(struct strlist *l);

#endif
