/* Unit files as fleet reads them: systemd's syntax (sections, Key=Value, repeated keys in order,
 * continuation lines, comments, quoting), unit names (plain, template, instance), the specifiers
 * %n %N %p %i, fleet's unit hash, and the scheduling options of [X-Fleet] and [X-Flotilla].
 * A library: returns errors (with a message for users in `err`) and never logs. */
#ifndef FLT_UNIT_H
#define FLT_UNIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

#define UNIT_NAME_MAX 256
/* Longest line (without its line break) is UNIT_LINE_MAX - 1 bytes: go-systemd, and so fleet,
 * refuses longer ones ("line too long (max 2048 bytes)") since systemd would truncate them. */
#define UNIT_LINE_MAX 2048

/* ---- files ---- */
struct unit_option {
	char *section; /* owned */
	char *name;    /* owned */
	char *value;   /* owned; continuation lines joined as systemd does */
};
struct unit_file {
	struct unit_option *v; /* owned, in file order */
	size_t n;
};
#define UNIT_FILE_INIT {NULL, 0}

/* Parse unit file text. FLT_EINVAL with "line N: ..." appended to `err`, or -ENOMEM; on error
 * *ret is left empty. */
int unit_parse(const char *text, size_t len, struct unit_file *ret, struct buf *err);
/* Append one option (copied). 0 or -ENOMEM. */
int unit_file_add(struct unit_file *u, const char *section, const char *name, const char *value);
void unit_file_release(struct unit_file *u);
/* The unit as text the way fleet serializes it (sections in first-seen order, "[S]\nK=V\n",
 * a blank line between sections): what `flotctl cat` prints and what the hash is taken of. */
int unit_serialize(const struct unit_file *u, struct buf *out);
/* fleet's unit hash: SHA-1 of the serialization, 40 lowercase hex digits and a NUL. */
int unit_hash(const struct unit_file *u, char hex[41]);
/* The last value of section.name, or NULL. */
const char *unit_get(const struct unit_file *u, const char *section, const char *name);

/* fleet API "options" arrays ([{"section":..,"name":..,"value":..}, ...]) <-> unit files.
 * `json` is a jansson json_t * (void here so this header does not need jansson). */
int unit_to_json(const struct unit_file *u, void **ret_json);
int unit_from_json(const void *json, struct unit_file *ret, struct buf *err);

/* ---- names ---- */
/* 0 if `name` is a valid unit name by fleet's rules (length, characters, a known suffix, at
 * most one '@' placed right), else FLT_EINVAL with the reason (fleet's wording) in *why. */
int unit_name_check(const char *name, const char **why);
/* (*why points to static storage valid until the next call; pass NULL if not wanted.) */
bool unit_name_is_template(const char *name); /* "p@.service" */
bool unit_name_is_instance(const char *name); /* "p@i.service" */
/* The template of an instance: "p@i.service" -> "p@.service". FLT_EINVAL if not an instance. */
int unit_name_template(const char *instance, struct buf *out);
/* fleetctl's mangling of a command-line argument: its base name, with ".service" appended when
 * it has no known unit suffix. */
int unit_name_mangle(const char *arg, struct buf *out);
/* Expand %n (full name) %N (unescaped full name) %p (prefix) %i (instance) and %% in `in`
 * for unit `name`. */
int unit_expand(const char *name, const char *in, struct buf *out);

/* ---- scheduling options ---- */
struct unit_meta {
	char *key;
	char *value;
	bool negate; /* key!=value */
};
/* [X-Fleet] and [X-Flotilla] of one unit (an instance's own name used for the specifiers),
 * values expanded. Arrays are owned. */
struct unit_sched {
	char *machine_id; /* MachineID= (full id or a prefix), or NULL */
	char **machine_of; /* MachineOf= */
	size_t n_machine_of;
	struct unit_meta *metadata; /* MachineMetadata=: same key = OR, different keys = AND */
	size_t n_metadata;
	char **conflicts; /* Conflicts= globs */
	size_t n_conflicts;
	char **replaces; /* Replaces= */
	size_t n_replaces;
	bool global;         /* Global=true */
	uint64_t memory;     /* [X-Flotilla] Memory= in bytes (K/M/G/T suffixes), 0 = none */
	uint32_t cpus_milli; /* [X-Flotilla] CPUs= in thousandths (0.5 -> 500), 0 = none */
	char *runtime;       /* [X-Flotilla] Runtime=, or NULL for the machine's default */
	bool needs_docker;   /* [Unit] Requires= or BindsTo= names docker.service */
};
/* Read and validate the scheduling options of `u` as unit `name`. Unknown [X-Fleet] keys,
 * bad values and the combinations fleet rejects (e.g. Global with MachineOf) give FLT_EINVAL
 * with a message in `err`. */
int unit_sched_parse(const struct unit_file *u, const char *name, struct unit_sched *ret,
		     struct buf *err);
void unit_sched_release(struct unit_sched *s);
/* [X-Flotilla] values, also usable for machine capacities. Memory: bytes with systemd's
 * base-1024 suffixes B K M G T P E, a decimal fraction allowed ("1.5G"), "infinity" = 0 (no
 * limit). CPUs: a decimal number with at most 3 decimals, in thousandths ("0.5" -> 500).
 * 0 or FLT_EINVAL (also on overflow); *ret written only on success. */
int unit_parse_memory(const char *s, uint64_t *ret);
int unit_parse_cpus(const char *s, uint32_t *ret);
/* fleet's glob matching of Conflicts= and Replaces= patterns against unit names (Go path.Match:
 * '*', '?', '[...]' with '^' or '!' negation, '\\' escapes). */
bool unit_glob_match(const char *pattern, const char *name);

#endif
