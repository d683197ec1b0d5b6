/* Fuzz target for the HTTP server: each input is the byte stream of one client connection, fed in
 * input-chosen slices through a socketpair to a live server (sync, async and streaming handlers),
 * then the client goes away. Finds crashes, leaks and use-after-free in parsing, pipelining and
 * teardown. web.c is included so the harness can hand the server a socket directly.
 *
 *   libFuzzer:  clang -g -O1 -fsanitize=fuzzer,address,undefined -std=gnu11 -D_GNU_SOURCE \
 *                 -DFLT_LIBFUZZER -Isrc tests/fuzz/fuzz_web.c src/http/web_out.c src/http/stream.c src/util/buf.c -lev
 * -lhttp_parser -lm -o fuzz_web
 *               ./fuzz_web -max_len=20000 tests/fuzz/corpus-web
 *   plain:      fuzz_web FILE...   replays files;  fuzz_web   runs built-in seeds and a seeded
 *               random mutation run (make check builds it; handy under valgrind). */
#include "../../src/http/web.c"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fz {
	struct ev_loop *loop;
	struct web_server *s;
	struct web_req *pending[256]; /* requests to complete later, in a shuffled order */
	size_t npending;
};

static struct fz F;
static unsigned long handled;

static void fz_handler(void *ud, struct web_req *r)
{
	const char *p = web_req_path(r);
	size_t len;
	const char *body = web_req_body(r, &len);
	struct web_header h[2] = {{"X-A", web_req_query(r)}, {"X-B", web_req_method(r)}};

	handled++;
	(void)web_req_header(r, "Host");
	(void)web_req_peer(r);
	if (p[0] == '/' && p[1] == 'a' && F.npending < ARRAY_SIZE(F.pending)) {
		F.pending[F.npending++] = r;
		return;
	}
	if (p[0] == '/' && p[1] == 's') {
		if (web_stream_begin(r, 200, h, 2) == 0) {
			(void)web_stream_write(r, body, len);
			(void)web_stream_write(r, "x", 1);
		}
		if (p[2] == 'h' && F.npending < ARRAY_SIZE(F.pending)) {
			F.pending[F.npending++] = r;
			return;
		}
		web_stream_end(r);
		return;
	}
	web_respond(r, p[1] == 'n' ? 404 : 200, h, 2, body, len);
}

static void fz_complete_some(size_t seed)
{
	while (F.npending) {
		size_t i = seed++ % F.npending;
		struct web_req *r = F.pending[i];

		F.pending[i] = F.pending[--F.npending];
		if (web_req_path(r)[1] == 's')
			web_stream_end(r);
		else
			web_respond(r, 201, NULL, 0, "late", 4);
	}
}

static void fz_init(void)
{
	struct web_limits lim;

	if (F.loop)
		return;
	web_limits_default(&lim);
	lim.max_head = 4096;
	lim.max_body = 8192;
	lim.max_pipeline = 3;
	F.loop = ev_loop_new(EVFLAG_AUTO);
	if (!F.loop || web_server_new(F.loop, &lim, fz_handler, NULL, &F.s) < 0)
		abort();
}

static void fz_drain(int fd)
{
	char tmp[65536];

	while (read(fd, tmp, sizeof(tmp)) > 0)
		;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sockaddr_storage ss = {.ss_family = AF_UNIX};
	size_t off = 0, step;
	int sv[2], i;

	fz_init();
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	if (conn_new(F.s, sv[0], &ss, true) < 0)
		abort();
	/* The first byte picks the slice size, so requests get split at every possible point. */
	step = size ? (size_t)data[0] % 64 + 1 : 1;
	while (off < size) {
		size_t n = size - off < step ? size - off : step;
		ssize_t w = write(sv[1], data + off, n);

		if (w > 0)
			off += (size_t)w;
		ev_run(F.loop, EVRUN_NOWAIT);
		fz_drain(sv[1]);
		if (w <= 0 && web_conn_count(F.s) == 0)
			break; /* the server closed on us */
		if (off % 7 == 0)
			fz_complete_some(off);
	}
	for (i = 0; i < 4; i++) {
		ev_run(F.loop, EVRUN_NOWAIT);
		fz_drain(sv[1]);
	}
	if (size && data[size - 1] & 1)
		fz_complete_some(size); /* completed while connected */
	close(sv[1]);
	for (i = 0; i < 100 && web_conn_count(F.s); i++)
		ev_run(F.loop, EVRUN_NOWAIT);
	fz_complete_some(size); /* completed after the client left: only freed */
	/* A connection the server keeps (lingering) is forced out, so no input leaks into the next.
	 */
	while (F.s->conns)
		conn_close(F.s->conns);
	fz_complete_some(0);
	return 0;
}

#ifndef FLT_LIBFUZZER
static const char *const seeds[] = {
    "GET /x?q=1 HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /a HTTP/1.1\r\n\r\nGET /n HTTP/1.1\r\n\r\nGET /a HTTP/1.1\r\n\r\nGET /x HTTP/1.1\r\n\r\n",
    "PUT /x HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello",
    "POST /s HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET / "
    "HTTP/1.0\r\n\r\n",
    "GET /sh HTTP/1.1\r\n\r\nHEAD /a HTTP/1.1\r\n\r\nGET /x HTTP/1.1\r\nConnection: close\r\n\r\n",
    "GET /s HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /x HTTP/1.0\r\n\r\n",
    "GET http://h/p?q#f HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\nGET /a "
    "HTTP/1.1\r\n\r\n",
    "CONNECT h:1 HTTP/1.1\r\n\r\nxx",
    "PUT /x HTTP/1.1\r\nContent-Length: 99999\r\n\r\n",
    "GET / HTTP/9.9\r\n\r\n",
};

/* Deterministic mutation run: flips, inserts, splices of the seeds. */
static void run_builtin(unsigned iters)
{
	uint64_t x = 0x9e3779b97f4a7c15ull;
	struct buf b = BUF_INIT;
	unsigned it;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(seeds); i++)
		LLVMFuzzerTestOneInput((const uint8_t *)seeds[i], strlen(seeds[i]));
	for (it = 0; it < iters; it++) {
		const char *a = seeds[(x >> 7) % ARRAY_SIZE(seeds)];
		const char *c = seeds[(x >> 17) % ARRAY_SIZE(seeds)];
		unsigned k, nmut;

		buf_clear(&b);
		buf_puts(&b, a);
		buf_puts(&b, c);
		nmut = (unsigned)(x >> 33) % 6;
		for (k = 0; k < nmut && b.len; k++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			size_t pos = (size_t)(x % b.len);

			switch ((x >> 40) % 4) {
			case 0:
				b.data[pos] ^= (char)(1 << ((x >> 50) % 8));
				break;
			case 1:
				b.data[pos] = "\r\n :\0%0aA"[(x >> 50) % 9];
				break;
			case 2:
				b.len = pos;
				break;
			default:
				b.data[pos] = (char)(x >> 56);
				break;
			}
		}
		LLVMFuzzerTestOneInput((const uint8_t *)(b.data ? b.data : ""), b.len);
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
	}
	buf_release(&b);
}

int main(int argc, char **argv)
{
	int i;

	if (argc == 1) {
		run_builtin(3000);
	} else {
		for (i = 1; i < argc; i++) {
			FILE *f = fopen(argv[i], "rb");
			struct buf b = BUF_INIT;
			char tmp[4096];
			size_t n;

			if (!f) {
				perror(argv[i]);
				return 1;
			}
			while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
				buf_append(&b, tmp, n);
			fclose(f);
			LLVMFuzzerTestOneInput((const uint8_t *)(b.data ? b.data : ""), b.len);
			buf_release(&b);
		}
	}
	web_server_free(F.s);
	ev_loop_destroy(F.loop);
	fprintf(stderr, "fuzz_web: %lu requests handled\n", handled);
	return 0;
}
#endif
