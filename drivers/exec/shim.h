/* The wire between the exec driver and flotilla-exec-shim, the small process that runs one
 * command of a unit: frame types, the abstract socket name a restarted daemon reconnects to, and
 * the exit codes (systemd's) the shim uses when it cannot even exec the command. */
#ifndef FLT_EXEC_SHIM_H
#define FLT_EXEC_SHIM_H

#include <stdint.h>

/* Frames from the shim, on a SOCK_STREAM unix socket: 1 byte type, 4 bytes length (host order),
 * payload. The driver never writes to the shim: it kills by process group itself. */
enum {
	SHIM_PID = 'P',   /* "<pid> <argv0 basename>": the command process exists */
	SHIM_MAIN = 'M',  /* "<pid>": the main process of a Type=forking service (0: none) */
	SHIM_START = 'S', /* "<code> <signal>": a forking service's start process ended */
	SHIM_OUT = 'O',   /* stdout/stderr bytes of the command */
	SHIM_FAIL = 'F',  /* "<errno> <what> <detail>": could not run the command */
	SHIM_EXIT = 'X',  /* "<code> <signal>": the watched process ended; no frame follows */
	SHIM_HDR_LEN = 5,
	SHIM_MAX_FRAME = 65536,
};

/* What the shim could not do (SHIM_FAIL's <what>), with systemd's exit codes for them. */
#define SHIM_EXIT_CHDIR 200
#define SHIM_EXIT_GROUP 216
#define SHIM_EXIT_USER  217
#define SHIM_EXIT_EXEC  203
#define SHIM_EXIT_ENV   205 /* systemd: EXIT_ENVIRONMENT... here: env file / command line */

/* A restarted daemon finds a main shim by its pid at this abstract unix socket name (leading NUL
 * not included): abstract names need no file, so no path-length limit and nothing to clean up. */
#define SHIM_SOCK_FMT "flotilla-exec-shim/%ld"

/* The status file a main shim writes into the unit's state_dir when its process ends, for a
 * daemon that was not connected at that moment: "<code> <signal> <pid>\n". */
#define SHIM_STATUS_FILE "exec.status"

#endif
