/* JSON exactly as etcd writes it: Go's encoding/json string escaping (HTML-safe, U+2028/2029,
 * invalid UTF-8 replaced), RFC3339Nano times, NodeExtern field order and omitempty rules, the
 * error body and /v2/stats/store. Byte-for-byte equality matters: clients compare
 * Content-Length, and the fixtures are the reference. */
#include "store/store_int.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include "util/err.h"

static const char hexd[] = "0123456789abcdef";

/* Length of the valid UTF-8 sequence at p (Go's utf8.DecodeRune rules: no overlongs, no
 * surrogates, <= U+10FFFF), or 0 if invalid. */
static size_t utf8_valid(const unsigned char *p, size_t n, uint32_t *ret_cp)
{
	unsigned char c = p[0];
	uint32_t cp;
	size_t need, i;

	if (c < 0x80) {
		*ret_cp = c;
		return 1;
	}
	if (c >= 0xc2 && c <= 0xdf) {
		need = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		need = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		need = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (n < need)
		return 0;
	/* the second byte's range depends on the first (overlongs, surrogates, > 10FFFF) */
	if ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] > 0x9f) ||
	    (c == 0xf0 && p[1] < 0x90) || (c == 0xf4 && p[1] > 0x8f))
		return 0;
	for (i = 1; i < need; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	*ret_cp = cp;
	return need;
}

/* Whether any of the 8 bytes in `v` needs more than copying: a control byte, a non-ASCII one (it
 * must be checked as UTF-8), a quote, a backslash, <, > or &. Word-at-a-time tests (a zero byte
 * in x shows in (x - 0x01..) & ~x & 0x80..): borrows make false hits only above a true one, so a
 * word that passes is certainly plain. Values mostly are: byte by byte this was 5-6% of the CPU
 * of a PUT. */
static bool word_needs_escape(uint64_t v)
{
	const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
	uint64_t hit = v & highs;              /* >= 0x80 */
	uint64_t low = (v - 0x20 * ones) & ~v; /* < 0x20 (exact while no byte has its high bit) */
	static const unsigned char special[] = {'"', '\\', '<', '>', '&'};

	for (size_t i = 0; i < sizeof(special); i++) {
		uint64_t x = v ^ (special[i] * ones);

		hit |= (x - ones) & ~x;
	}
	return ((hit | low) & highs) != 0;
}

int store_json_string(struct buf *out, const char *str, size_t len)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0, start = 0;
	int r;

	if ((r = buf_putc(out, '"')) < 0)
		return r;
	while (i < len) {
		unsigned char c;
		char esc[7];
		size_t elen = 0, adv = 1;
		uint32_t cp;

		for (uint64_t v; i + 8 <= len; i += 8) {
			memcpy(&v, s + i, 8);
			if (word_needs_escape(v))
				break;
		}
		if (i == len)
			break;
		c = s[i];
		if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\' && c != '<' && c != '>' &&
		    c != '&') {
			i++;
			continue;
		}
		if (c < 0x80) {
			esc[0] = '\\';
			if (c == '"' || c == '\\') {
				esc[1] = (char)c;
				elen = 2;
			} else if (c == '\n') {
				esc[1] = 'n';
				elen = 2;
			} else if (c == '\r') {
				esc[1] = 'r';
				elen = 2;
			} else if (c == '\t') {
				esc[1] = 't';
				elen = 2;
			} else {
				memcpy(esc + 1, "u00", 3);
				esc[4] = hexd[c >> 4];
				esc[5] = hexd[c & 15];
				elen = 6;
			}
		} else {
			adv = utf8_valid(s + i, len - i, &cp);
			if (adv == 0) {
				memcpy(esc, "\\ufffd", 6);
				elen = 6;
				adv = 1;
			} else if (cp == 0x2028 || cp == 0x2029) {
				memcpy(esc, cp == 0x2028 ? "\\u2028" : "\\u2029", 6);
				elen = 6;
			} else {
				i += adv;
				continue;
			}
		}
		if ((r = buf_append(out, s + start, i - start)) < 0 ||
		    (r = buf_append(out, esc, elen)) < 0)
			return r;
		i += adv;
		start = i;
	}
	if ((r = buf_append(out, s + start, len - start)) < 0)
		return r;
	return buf_putc(out, '"');
}

int store_json_time(struct buf *out, int64_t ns)
{
	int64_t sec = ns / 1000000000, frac = ns % 1000000000;
	time_t t;
	struct tm tm;
	char digits[10];
	int r, n = 9;

	if (frac < 0) {
		frac += 1000000000;
		sec--;
	}
	t = (time_t)sec;
	if (!gmtime_r(&t, &tm))
		return FLT_EINVAL;
	r = buf_printf(out, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1,
	               tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
	if (r < 0)
		return r;
	if (frac) {
		for (int i = 8; i >= 0; i--) {
			digits[i] = (char)('0' + frac % 10);
			frac /= 10;
		}
		while (n > 0 && digits[n - 1] == '0')
			n--;
		if ((r = buf_putc(out, '.')) < 0 || (r = buf_append(out, digits, (size_t)n)) < 0)
			return r;
	}
	return buf_putc(out, 'Z');
}

/* etcd's ttl: ceil((expire - now) / 1s) with Go's truncating division, so an expired key shows
 * 0 (left out) or a negative number. */
static int64_t ttl_of(int64_t expire, int64_t now)
{
	int64_t d = expire - now, t = d / 1000000000;

	if (d % 1000000000 > 0)
		t++;
	return t;
}

int json_node_open(struct buf *out, const char *key, size_t klen, bool dir, const char *value,
                   size_t vlen, bool has_value, int64_t expire, int64_t now)
{
	bool first = true;
	int r;

	if ((r = buf_putc(out, '{')) < 0)
		return r;
	if (klen) {
		if ((r = buf_puts(out, "\"key\":")) < 0 ||
		    (r = store_json_string(out, key, klen)) < 0)
			return r;
		first = false;
	}
	if (has_value) {
		if ((r = buf_puts(out, first ? "\"value\":" : ",\"value\":")) < 0 ||
		    (r = store_json_string(out, value ? value : "", value ? vlen : 0)) < 0)
			return r;
		first = false;
	}
	if (dir) {
		if ((r = buf_puts(out, first ? "\"dir\":true" : ",\"dir\":true")) < 0)
			return r;
		first = false;
	}
	if (expire) {
		int64_t ttl = ttl_of(expire, now);

		if ((r = buf_puts(out, first ? "\"expiration\":\"" : ",\"expiration\":\"")) < 0 ||
		    (r = store_json_time(out, expire)) < 0 || (r = buf_putc(out, '"')) < 0)
			return r;
		if (ttl &&
		    ((r = buf_puts(out, ",\"ttl\":")) < 0 || (r = buf_put_i64(out, ttl)) < 0))
			return r;
	}
	return 0;
}

int json_node_close(struct buf *out, uint64_t modified, uint64_t created)
{
	int r;
	/* the opening '{' is the last byte when nothing was written yet */
	bool empty = out->len && out->data[out->len - 1] == '{';

	if (modified) {
		if ((r = buf_puts(out, empty ? "\"modifiedIndex\":" : ",\"modifiedIndex\":")) < 0 ||
		    (r = buf_put_u64(out, modified)) < 0)
			return r;
		empty = false;
	}
	if (created) {
		if ((r = buf_puts(out, empty ? "\"createdIndex\":" : ",\"createdIndex\":")) < 0 ||
		    (r = buf_put_u64(out, created)) < 0)
			return r;
	}
	return buf_putc(out, '}');
}

static bool hidden(const struct snode *n)
{
	return n->name[0] == '_';
}

/* `kids`: list the children (etcd's loadInternalNode does for the node asked for, Repr only
 * when recursive). Children are rendered with Repr(recursive). */
int json_node(struct buf *out, const struct snode *n, bool kids, bool recursive, int64_t now)
{
	const char *key = n->parent ? n->path : "";
	int r;

	r = json_node_open(out, key, strlen(key), n->dir, n->value, n->value_len, !n->dir,
	                   n->expire_ns, now);
	if (r < 0)
		return r;
	if (n->dir && kids) {
		bool any = false;
		size_t nk;
		struct snode *const *k = kids_sorted(n, &nk);

		for (size_t i = 0; i < nk; i++) {
			if (hidden(k[i]))
				continue;
			if ((r = buf_puts(out, any ? "," : ",\"nodes\":[")) < 0 ||
			    (r = json_node(out, k[i], recursive, recursive, now)) < 0)
				return r;
			any = true;
		}
		if (any && (r = buf_putc(out, ']')) < 0)
			return r;
	}
	return json_node_close(out, n->modified, n->created);
}

static const struct {
	int code;
	int status;
	const char *msg;
} errtab[] = {
    {100, 404, "Key not found"},
    {101, 412, "Compare failed"},
    {102, 403, "Not a file"},
    {103, 400, "Reached the max number of peers in the cluster"},
    {104, 400, "Not a directory"},
    {105, 412, "Key already exists"},
    {106, 400, "The prefix of given key is a keyword in etcd"},
    {107, 400, "Root is read only"},
    {108, 403, "Directory not empty"},
    {109, 400, "Peer address has existed"},
    {110, 401, "The request requires user authentication"},
    {200, 400, "Value is Required in POST form"},
    {201, 400, "PrevValue is Required in POST form"},
    {202, 400, "The given TTL in POST form is not a number"},
    {203, 400, "The given index in POST form is not a number"},
    {204, 400, "Value or TTL is required in POST form"},
    {205, 400, "The given timeout in POST form is not a number"},
    {206, 400, "Name is required in POST form"},
    {207, 400, "Index or value is required"},
    {208, 400, "Index and value cannot both be specified"},
    {209, 400, "Invalid field"},
    {210, 400, "Invalid POST form"},
    {211, 400, "Value provided on refresh"},
    {212, 400, "A TTL must be provided on refresh"},
    {300, 500, "Raft Internal Error"},
    {301, 500, "During Leader Election"},
    {400, 400, "watcher is cleared due to etcd recovery"},
    {401, 400, "The event in requested index is outdated and cleared"},
    {402, 400, "Standby Internal Error"},
    {403, 400, "Invalid active size"},
    {404, 400, "Standby remove delay"},
    {500, 400, "Client Internal Error"},
};

const char *store_error_message(int code)
{
	for (size_t i = 0; i < sizeof(errtab) / sizeof(errtab[0]); i++)
		if (errtab[i].code == code)
			return errtab[i].msg;
	return "";
}

int store_error_status(int code)
{
	for (size_t i = 0; i < sizeof(errtab) / sizeof(errtab[0]); i++)
		if (errtab[i].code == code)
			return errtab[i].status;
	return 400;
}

int store_error_json(int code, const char *cause, uint64_t index, struct buf *out)
{
	const char *msg = store_error_message(code);
	int r;

	if ((r = buf_puts(out, "{\"errorCode\":")) < 0 || (r = buf_put_i64(out, code)) < 0 ||
	    (r = buf_puts(out, ",\"message\":")) < 0 ||
	    (r = store_json_string(out, msg, strlen(msg))) < 0)
		return r;
	if (cause && *cause) {
		if ((r = buf_puts(out, ",\"cause\":")) < 0 ||
		    (r = store_json_string(out, cause, strlen(cause))) < 0)
			return r;
	}
	if ((r = buf_puts(out, ",\"index\":")) < 0 || (r = buf_put_u64(out, index)) < 0)
		return r;
	return buf_puts(out, "}\n");
}

int store_stats_json(const struct store *s, struct buf *out)
{
	const struct store_stats *t = &s->stats;

	return buf_printf(out,
	                  "{\"getsSuccess\":%llu,\"getsFail\":%llu,\"setsSuccess\":%llu,"
	                  "\"setsFail\":%llu,\"deleteSuccess\":%llu,\"deleteFail\":%llu,"
	                  "\"updateSuccess\":%llu,\"updateFail\":%llu,\"createSuccess\":%llu,"
	                  "\"createFail\":%llu,\"compareAndSwapSuccess\":%llu,"
	                  "\"compareAndSwapFail\":%llu,\"compareAndDeleteSuccess\":%llu,"
	                  "\"compareAndDeleteFail\":%llu,\"expireCount\":%llu,\"watchers\":%u}",
	                  (unsigned long long)t->gets_ok, (unsigned long long)t->gets_fail,
	                  (unsigned long long)t->sets_ok, (unsigned long long)t->sets_fail,
	                  (unsigned long long)t->deletes_ok, (unsigned long long)t->deletes_fail,
	                  (unsigned long long)t->updates_ok, (unsigned long long)t->updates_fail,
	                  (unsigned long long)t->creates_ok, (unsigned long long)t->creates_fail,
	                  (unsigned long long)t->cas_ok, (unsigned long long)t->cas_fail,
	                  (unsigned long long)t->cad_ok, (unsigned long long)t->cad_fail,
	                  (unsigned long long)t->expires, s->hub.count);
}
