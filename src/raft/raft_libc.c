/* libc's allocator behind struct raft_alloc. Kept out of libraft.a on purpose: the pure core must
 * not reference malloc itself (tests/raft_symbols.sh checks), so whoever links the core links this
 * file beside it, or passes an allocator of its own. */
#include <stdlib.h>

#include "raft/raft.h"

static void *libc_malloc(void *ud, size_t size)
{
	(void)ud;
	return malloc(size);
}

static void *libc_realloc(void *ud, void *p, size_t size)
{
	(void)ud;
	return realloc(p, size);
}

static void libc_free(void *ud, void *p)
{
	(void)ud;
	free(p);
}

static const struct raft_alloc libc_alloc = {
    .malloc = libc_malloc,
    .realloc = libc_realloc,
    .free = libc_free,
};

const struct raft_alloc *raft_libc_alloc(void)
{
	return &libc_alloc;
}
