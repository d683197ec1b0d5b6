/* systemd's command-line and environment-file syntax, for the exec shim: splitting ExecStart=
 * values into argv (quotes, C escapes, $VAR and ${VAR} from the environment) and loading
 * EnvironmentFile= into the environment. No logging; errors are negative errno. */
#ifndef FLT_EXEC_CMDLINE_H
#define FLT_EXEC_CMDLINE_H

#include <stdbool.h>

/* Split `line` into a NULL-terminated argv (returned owned; free with cmdline_free). With
 * `expand`, a word that is exactly $NAME becomes the variable's value split at whitespace (zero or
 * more words), ${NAME} inside any word is replaced by the value as is, and $$ is a literal $,
 * all from the current environment. -EINVAL: unbalanced quotes or a bad escape; -ENOMEM. */
int cmdline_split(const char *line, bool expand, char ***ret_argv);
void cmdline_free(char **argv);

/* Read KEY=VALUE lines ('#'/';' comments, optional "..." or '...' around the value) from `path`
 * into the environment, overriding. -errno of open/read; -EINVAL for a line without '='
 * is not an error (systemd ignores it, so do we). */
int cmdline_load_envfile(const char *path);

#endif
