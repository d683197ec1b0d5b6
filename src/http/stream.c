/* Plain-socket implementation of the stream layer (see stream.h): two io watchers, one per
 * direction, so that waiting for output never costs a read wake-up and the reverse. */
#include "http/stream.h"

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util/util.h"

static ssize_t fd_read(struct stream *st, void *buf, size_t len)
{
	ssize_t n;

	do
		n = read(st->fd, buf, len);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return n;
}

static ssize_t fd_write(struct stream *st, const void *buf, size_t len)
{
	ssize_t n;

	do
		n = send(st->fd, buf, len, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return n;
}

static int fd_shutdown(struct stream *st)
{
	return shutdown(st->fd, SHUT_WR) < 0 ? -errno : 0;
}

static void fd_close(struct stream *st)
{
	close(st->fd);
}

static const struct stream_ops fd_ops = {
    .read = fd_read,
    .write = fd_write,
    .shutdown = fd_shutdown,
    .close = fd_close,
};

static void on_read(struct ev_loop *loop, ev_io *w, int revents)
{
	struct stream *st = container_of(w, struct stream, rio);

	st->on_ready(st, EV_READ);
}

static void on_write(struct ev_loop *loop, ev_io *w, int revents)
{
	struct stream *st = container_of(w, struct stream, wio);

	st->on_ready(st, EV_WRITE);
}

void stream_init_fd(struct stream *st, struct ev_loop *loop, int fd,
                    void (*on_ready)(struct stream *st, int events))
{
	st->ops = &fd_ops;
	st->loop = loop;
	st->fd = fd;
	st->on_ready = on_ready;
	ev_io_init(&st->rio, on_read, fd, EV_READ);
	ev_io_init(&st->wio, on_write, fd, EV_WRITE);
}

void stream_want(struct stream *st, bool read, bool write)
{
	if (st->fd < 0)
		return;
	if (read && !ev_is_active(&st->rio))
		ev_io_start(st->loop, &st->rio);
	else if (!read && ev_is_active(&st->rio))
		ev_io_stop(st->loop, &st->rio);
	if (write && !ev_is_active(&st->wio))
		ev_io_start(st->loop, &st->wio);
	else if (!write && ev_is_active(&st->wio))
		ev_io_stop(st->loop, &st->wio);
}

void stream_close(struct stream *st)
{
	if (st->fd < 0)
		return;
	ev_io_stop(st->loop, &st->rio);
	ev_io_stop(st->loop, &st->wio);
	st->ops->close(st);
	st->fd = -1;
}
