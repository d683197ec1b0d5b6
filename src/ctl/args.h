/* Command-line flags for flotctl, parsed the way etcdctl (urfave/cli v1 on Go's flag package) does,
 * so that scripts written for etcdctl behave the same: -flag and --flag, -flag=value or -flag
 * value, bool flags never eat the next word, "--" ends flags, and command flags may follow
 * operands. */
#ifndef FLT_CTL_ARGS_H
#define FLT_CTL_ARGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct buf;

enum ctl_ftype {
	CTL_F_BOOL,
	CTL_F_INT, /* Go strconv.ParseInt(s, 0, 64): 0x.., 0o.., 0b.., 017, underscores */
	CTL_F_STRING,
	CTL_F_DURATION, /* Go time.ParseDuration: "2s", "1m30s", "150ms" */
};

/* One flag of a command or of the global set. `names` lists the canonical name then aliases,
 * comma-separated ("recursive, r"); every name is accepted with one or two dashes. */
struct ctl_flag {
	const char *names;
	enum ctl_ftype type;
	const char *placeholder; /* help: "--ttl value"; NULL for bools */
	const char *usage;       /* help text */
	const char *defval;      /* help: shown as (default: ...); NULL for none */
};

/* The value of one flag after parsing. `seen` has bit i set when the i-th name was used. */
struct ctl_fval {
	unsigned seen;
	bool b;
	int64_t i;
	const char *s; /* borrowed from argv */
	int64_t ns;
};

/* Parse flags from argv[0..argc) with Go's flag.FlagSet rules and stop at the first operand or
 * after "--". `help` (names "help, h") is always defined as an extra bool and reported through
 * *ret_help. Returns the index of the first operand, or -EINVAL with Go's message in `err`
 * ("flag provided but not defined: -x", "flag needs an argument: -ttl", ...). */
int ctl_flags_parse(const struct ctl_flag *defs, size_t n, struct ctl_fval *vals, int argc,
                    char **argv, bool *ret_help, struct buf *err);

/* After parsing: reject two spellings of one flag as urfave/cli does ("Cannot use two forms of
 * the same flag: r recursive"). Returns 0 or -EINVAL with the message in `err`. */
int ctl_flags_normalize(const struct ctl_flag *defs, size_t n, const struct ctl_fval *vals,
                        struct buf *err);

/* urfave/cli v1.22's argument reordering for subcommands: known flags (and the word after a
 * flag without "=") move to the front, "--" and what follows it go last. Fills `out` (caller
 * array of argc+1 pointers, borrowed strings) and returns the new count. */
int ctl_flags_reorder(const struct ctl_flag *defs, size_t n, int argc, char **argv, char **out);

/* Value parsers with Go's semantics; 0 or -EINVAL. */
int ctl_parse_bool(const char *s, bool *ret);
int ctl_parse_int(const char *s, int64_t *ret); /* -ERANGE when out of range */
int ctl_parse_duration(const char *s, int64_t *ret_ns);

/* Append s quoted like Go's %q (strconv.Quote). */
void ctl_go_quote(struct buf *b, const char *s);

/* Index of the flag named `name` in defs (matching any alias), or -1. */
int ctl_flag_find(const struct ctl_flag *defs, size_t n, const char *name, size_t len);

/* Help rendering: "   --ttl value  usage (default: 0)" lines, aligned like urfave/cli. */
void ctl_flags_help(struct buf *b, const struct ctl_flag *defs, size_t n, bool with_help,
                    bool with_version);

#endif
