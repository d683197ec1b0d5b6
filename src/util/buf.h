/* Growable byte buffer: the one way this code builds strings and wire data of unbounded size.
 * Every append keeps a NUL after the data so the contents can be used as a C string. */
#ifndef FLT_BUF_H
#define FLT_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

struct buf {
	char *data; /* owned; NULL until the first append */
	size_t len;
	size_t cap;
};

#define BUF_INIT {NULL, 0, 0}

/* Caller-owned storage. buf_release frees the data and resets; accepts an empty buf. */
void buf_init(struct buf *b);
void buf_release(struct buf *b);
/* Empty the buffer but keep its memory. */
static inline void buf_clear(struct buf *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = '\0';
}
/* Make room for at least `extra` more bytes (+1 for the NUL). Returns 0 or -ENOMEM. */
int buf_reserve(struct buf *b, size_t extra);
int buf_append(struct buf *b, const void *data, size_t len);
int buf_puts(struct buf *b, const char *s);
int buf_putc(struct buf *b, char c);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vprintf(struct buf *b, const char *fmt, va_list ap);
/* Decimal renderings without printf's cost (hot paths: JSON, headers). */
int buf_put_u64(struct buf *b, uint64_t v);
int buf_put_i64(struct buf *b, int64_t v);
/* Drop the first n bytes (consumed input). */
void buf_consume(struct buf *b, size_t n);
/* Hand the data to the caller (who frees it) and reset the buffer. */
char *buf_steal(struct buf *b);

#endif
