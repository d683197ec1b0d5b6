#!/bin/sh
# The Raft core must stay pure (STYLE.md "The pure core"): list the undefined symbols of the raft
# objects in libraft.a and fail if any is I/O, a clock, a random source, libc allocation or
# printing. Run by `make check`; FLT_BUILDDIR points at the build tree.
set -u
lib="${FLT_BUILDDIR:-.}/libraft.a"
if [ ! -f "$lib" ]; then
	echo "raft_symbols: '$lib' not found" >&2
	exit 1
fi
NM="${NM:-nm}"
forbidden='^(read|write|send|sendto|sendmsg|recv|recvfrom|recvmsg|open|open64|close|fsync|fdatasync|clock_gettime|time|gettimeofday|rand|rand_r|random|srand|srandom|drand48|getrandom|arc4random|malloc|calloc|realloc|reallocarray|free|strdup|strndup|printf|fprintf|sprintf|snprintf|vprintf|vfprintf|vsprintf|vsnprintf|dprintf|asprintf|vasprintf|puts|fputs|putchar|fputc|fwrite|perror|syslog|fopen|fopen64|fdopen|abort|exit)$'
syms=$("$NM" -u "$lib" | awk 'NF >= 2 {print $2} NF == 1 && $1 !~ /:$/ {print $1}' | \
	sed 's/@.*//' | sort -u)
bad=$(printf '%s\n' "$syms" | grep -E "$forbidden" || true)
if [ -n "$bad" ]; then
	echo "raft_symbols: the pure Raft core references forbidden symbols:" >&2
	printf '  %s\n' $bad >&2
	exit 1
fi
echo "raft_symbols: ok ($(printf '%s\n' "$syms" | grep -c .) undefined symbols, none forbidden)"
exit 0
