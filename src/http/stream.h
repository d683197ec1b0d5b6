/* A byte stream over one non-blocking file descriptor watched by the loop. Client, peer and proxy
 * connections read and write through it, so TLS (non-blocking OpenSSL) can later slot in as another
 * `struct stream_ops` without touching the protocol code above. */
#ifndef FLT_STREAM_H
#define FLT_STREAM_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <ev.h>

struct stream;

struct stream_ops {
	/* > 0 bytes read, 0 at end of stream, -EAGAIN when nothing is ready, other -errno. */
	ssize_t (*read)(struct stream *st, void *buf, size_t len);
	/* >= 0 bytes written, -EAGAIN when the kernel buffer is full, other -errno (-EPIPE...). */
	ssize_t (*write)(struct stream *st, const void *buf, size_t len);
	/* No more output: a FIN after what was written (TLS would send close_notify first). */
	int (*shutdown)(struct stream *st);
	/* Release the transport (close the fd). */
	void (*close)(struct stream *st);
};

/* Embedded in its owner (get back with container_of). `on_ready` runs with EV_READ or EV_WRITE
 * when the stream wants and can make progress in that direction. */
struct stream {
	const struct stream_ops *ops;
	struct ev_loop *loop; /* borrowed */
	int fd;               /* owned; -1 once closed */
	ev_io rio, wio;
	void (*on_ready)(struct stream *st, int events);
};

/* A plain socket stream (send with MSG_NOSIGNAL: a vanished peer is -EPIPE, never SIGPIPE).
 * Takes ownership of `fd`, which must already be non-blocking. Watches nothing until stream_want.
 */
void stream_init_fd(struct stream *st, struct ev_loop *loop, int fd,
                    void (*on_ready)(struct stream *st, int events));
/* Say which directions the owner waits for; cheap when nothing changes. */
void stream_want(struct stream *st, bool read, bool write);

static inline ssize_t stream_read(struct stream *st, void *buf, size_t len)
{
	return st->ops->read(st, buf, len);
}

static inline ssize_t stream_write(struct stream *st, const void *buf, size_t len)
{
	return st->ops->write(st, buf, len);
}

static inline int stream_shutdown(struct stream *st)
{
	return st->fd < 0 ? -EBADF : st->ops->shutdown(st);
}

/* Stop watching and release the transport. Idempotent. */
void stream_close(struct stream *st);

#endif
