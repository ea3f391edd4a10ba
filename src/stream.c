/*
 * stream.c: streamed request bodies (stream.h). Every kind reads into the
 * caller's buffer and keeps only a few octets of state, so the memory a
 * request takes does not depend on the size of the message.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stream.h"
#include "util.h"

long
stream_read(struct stream *s, char *buf, size_t n)
{
	return s->ops->read(s, buf, n);
}

int
stream_rewind(struct stream *s)
{
	return s->ops->rewind(s);
}

static long
source_read(void *ctx, char *buf, size_t n)
{
	return stream_read(ctx, buf, n);
}

static int
source_rewind(void *ctx)
{
	return stream_rewind(ctx);
}

void
stream_body_source(struct stream *s, struct http_body_source *out)
{
	out->read = source_read;
	out->rewind = source_rewind;
	out->ctx = s;
	out->size = s->size;
}

/* ---- pieces ---- */

/* Up to n octets of one piece from offset in (0 <= in < it->len). */
static long
piece_read_at(const struct stream_piece *it, long long in, char *buf, size_t n,
    struct tm_err *err)
{
	long long left = it->len - in;
	size_t want = left < (long long)n ? (size_t)left : n;
	ssize_t got;

	if (it->mem != NULL) {
		memcpy(buf, it->mem + in, want);
		return (long)want;
	}
	do
		got = pread(it->fd, buf, want, (off_t)(it->offset + in));
	while (got < 0 && errno == EINTR);
	if (got <= 0) {
		tm_err_set(err, TM_ERR_IO, EX_IOERR, "cannot read the spool file: %s",
		    got < 0 ? strerror(errno) : "it is shorter than written");
		return -1;
	}
	return (long)got;
}

long
stream_pieces_read_at(const struct stream_pieces *p, long long offset, char *buf, size_t n,
    struct tm_err *err)
{
	long long base = 0;
	size_t i;

	for (i = 0; i < p->count; base += p->items[i].len, i++) {
		if (offset < base + p->items[i].len)
			return piece_read_at(&p->items[i], offset - base, buf, n, err);
	}
	return 0;
}

static long
pieces_read(struct stream *s, char *buf, size_t n)
{
	struct stream_pieces *p = (struct stream_pieces *)s;
	long got = stream_pieces_read_at(p, p->pos, buf, n, &p->s.err);

	if (got > 0)
		p->pos += got;
	return got;
}

static int
pieces_rewind(struct stream *s)
{
	struct stream_pieces *p = (struct stream_pieces *)s;

	p->pos = 0;
	return 0;
}

static const struct stream_ops pieces_ops = { pieces_read, pieces_rewind };

void
stream_pieces_init(struct stream_pieces *p)
{
	memset(p, 0, sizeof(*p));
	p->s.ops = &pieces_ops;
}

static struct stream_piece *
pieces_push(struct stream_pieces *p)
{
	if (p->count == p->cap) {
		p->cap = p->cap ? 2 * p->cap : 8;
		p->items = xreallocarray(p->items, p->cap, sizeof(*p->items));
	}
	return &p->items[p->count++];
}

void
stream_pieces_add_mem(struct stream_pieces *p, const char *mem, size_t len)
{
	struct stream_piece *it;

	if (len == 0)
		return;
	it = pieces_push(p);
	it->mem = mem;
	it->fd = -1;
	it->offset = 0;
	it->len = (long long)len;
	p->s.size += (long long)len;
}

void
stream_pieces_add_file(struct stream_pieces *p, int fd, long long offset, long long len)
{
	struct stream_piece *it;

	if (len <= 0)
		return;
	it = pieces_push(p);
	it->mem = NULL;
	it->fd = fd;
	it->offset = offset;
	it->len = len;
	p->s.size += len;
}

void
stream_pieces_add_range(struct stream_pieces *out, const struct stream_pieces *from,
    long long start, long long end)
{
	long long base = 0;
	size_t i;

	for (i = 0; i < from->count && start < end; base += from->items[i].len, i++) {
		const struct stream_piece *it = &from->items[i];
		long long lo = start > base ? start : base;
		long long hi = end < base + it->len ? end : base + it->len;

		if (lo >= hi)
			continue;
		if (it->mem != NULL)
			stream_pieces_add_mem(out, it->mem + (lo - base), (size_t)(hi - lo));
		else
			stream_pieces_add_file(out, it->fd, it->offset + (lo - base), hi - lo);
	}
}

void
stream_pieces_free(struct stream_pieces *p)
{
	free(p->items);
	stream_pieces_init(p);
}

/* ---- base64 ---- */

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

long long
stream_base64_size(long long n)
{
	return (n + 2) / 3 * 4;
}

/* The next 1 to 3 input octets as one padded quantum in out. */
static void
encode_quantum(struct stream_base64 *b)
{
	const unsigned char *in = b->in + b->inpos;
	size_t k = b->nin - b->inpos < 3 ? b->nin - b->inpos : 3;
	unsigned v = (unsigned)in[0] << 16;

	if (k > 1)
		v |= (unsigned)in[1] << 8;
	if (k > 2)
		v |= in[2];
	b->out[0] = b64_alphabet[(v >> 18) & 63];
	b->out[1] = b64_alphabet[(v >> 12) & 63];
	b->out[2] = k > 1 ? b64_alphabet[(v >> 6) & 63] : '=';
	b->out[3] = k > 2 ? b64_alphabet[v & 63] : '=';
	b->nout = 4;
	b->outpos = 0;
	b->inpos += k;
}

/* At least 3 octets in in[], or what is left at the end; -1 on an inner
   failure. A short tail is moved to the front first. */
static int
fill_quantum(struct stream_base64 *b)
{
	size_t left = b->nin - b->inpos;

	if (left >= 3 || b->inner_done)
		return 0;
	memmove(b->in, b->in + b->inpos, left);
	b->nin = left;
	b->inpos = 0;
	while (b->nin < 3 && !b->inner_done) {
		long got = stream_read(b->inner, (char *)b->in + b->nin, sizeof(b->in) - b->nin);

		if (got < 0) {
			b->s.err = b->inner->err;
			return -1;
		}
		if (got == 0)
			b->inner_done = true;
		b->nin += (size_t)got;
	}
	return 0;
}

/* Encodes whole quanta straight into buf while there is room for them. */
static long
base64_read(struct stream *s, char *buf, size_t n)
{
	struct stream_base64 *b = (struct stream_base64 *)s;
	size_t o = 0;

	while (o < n) {
		if (b->outpos < b->nout) {
			buf[o++] = b->out[b->outpos++];
			continue;
		}
		if (fill_quantum(b) < 0)
			return -1;
		if (b->inpos == b->nin)
			break;
		encode_quantum(b);
	}
	return (long)o;
}

static int
base64_rewind(struct stream *s)
{
	struct stream_base64 *b = (struct stream_base64 *)s;

	b->nin = b->inpos = b->nout = b->outpos = 0;
	b->inner_done = false;
	if (stream_rewind(b->inner) < 0) {
		b->s.err = b->inner->err;
		return -1;
	}
	return 0;
}

static const struct stream_ops base64_ops = { base64_read, base64_rewind };

void
stream_base64_init(struct stream_base64 *b, struct stream *inner)
{
	memset(b, 0, sizeof(*b));
	b->s.ops = &base64_ops;
	b->s.size = stream_base64_size(inner->size);
	b->inner = inner;
}

/* ---- chain ---- */

static long
chain_read(struct stream *s, char *buf, size_t n)
{
	struct stream_chain *c = (struct stream_chain *)s;

	while (c->cur < c->count) {
		long got = stream_read(c->parts[c->cur], buf, n);

		if (got < 0) {
			c->s.err = c->parts[c->cur]->err;
			return -1;
		}
		if (got > 0)
			return got;
		c->cur++;
	}
	return 0;
}

static int
chain_rewind(struct stream *s)
{
	struct stream_chain *c = (struct stream_chain *)s;
	size_t i;

	for (i = 0; i < c->count; i++) {
		if (stream_rewind(c->parts[i]) < 0) {
			c->s.err = c->parts[i]->err;
			return -1;
		}
	}
	c->cur = 0;
	return 0;
}

static const struct stream_ops chain_ops = { chain_read, chain_rewind };

void
stream_chain_init(struct stream_chain *c)
{
	memset(c, 0, sizeof(*c));
	c->s.ops = &chain_ops;
}

void
stream_chain_add(struct stream_chain *c, struct stream *part)
{
	if (c->count == STREAM_CHAIN_MAX)
		abort();	/* a caller bug, caught by the unit tests */
	c->parts[c->count++] = part;
	c->s.size += part->size;
}

/* ---- a MIME part's decoded body ---- */

static long
mime_part_stream_read(struct stream *s, char *buf, size_t n)
{
	struct stream_mime_part *m = (struct stream_mime_part *)s;
	long got;
	size_t k;

	/* mime_part_read wants room for a whole decoded quantum: a short read
	   goes through held[]. */
	if (m->nheld == 0 && n >= sizeof(m->held))
		return mime_part_read(&m->pr, buf, n, &m->s.err);
	if (m->nheld == 0) {
		got = mime_part_read(&m->pr, m->held, sizeof(m->held), &m->s.err);
		if (got <= 0)
			return got;
		m->nheld = (size_t)got;
	}
	k = m->nheld < n ? m->nheld : n;
	memcpy(buf, m->held, k);
	memmove(m->held, m->held + k, m->nheld - k);
	m->nheld -= k;
	return (long)k;
}

static int
mime_part_stream_rewind(struct stream *s)
{
	struct stream_mime_part *m = (struct stream_mime_part *)s;

	m->nheld = 0;
	mime_part_reader_init(&m->pr, m->reader, m->part);
	return 0;
}

static const struct stream_ops mime_part_ops = { mime_part_stream_read, mime_part_stream_rewind };

void
stream_mime_part_init(struct stream_mime_part *m, const struct mime_reader *r,
    const struct mime_part *part, long long decoded_size)
{
	memset(m, 0, sizeof(*m));
	m->s.ops = &mime_part_ops;
	m->s.size = decoded_size;
	m->reader = r;
	m->part = part;
	mime_part_reader_init(&m->pr, r, part);
}
