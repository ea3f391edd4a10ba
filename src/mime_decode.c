/*
 * mime_decode.c: streaming decoders of one part's body, its
 * Content-Transfer-Encoding (base64, quoted-printable or none) undone, for
 * the attachments Graph's draft path uploads. The part's offsets come from
 * the parser (mime.c).
 *
 * The decoders are incremental state machines over a small raw buffer, so
 * a quoted-printable "=" or "=\r\n" split across reads is handled. White
 * space at the end of a quoted-printable line is kept, not deleted as RFC
 * 2045 6.7 (3) asks: that needs unbounded look-ahead, encoders write
 * none, and keeping it loses nothing that was sent.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "mime.h"
#include "mime_priv.h"
#include "util.h"

void
mime_part_reader_init(struct mime_part_reader *pr, const struct mime_reader *r,
    const struct mime_part *p)
{
	memset(pr, 0, sizeof(*pr));
	pr->r = r;
	pr->pos = p->body_start;
	pr->end = p->body_end > p->body_start ? p->body_end : p->body_start;
	pr->encoding = p->encoding;
}

/* Read the next raw block: 1, 0 at the end of the body, -1. */
static int
part_refill(struct mime_part_reader *pr, struct tm_err *err)
{
	size_t want = sizeof(pr->raw);
	long got;

	if (pr->padded || pr->pos >= pr->end)
		return 0;
	if ((long long)want > pr->end - pr->pos)
		want = (size_t)(pr->end - pr->pos);
	if ((got = mime_read_block(pr->r, pr->pos, pr->raw, want, err)) < 0)
		return -1;
	pr->pos += got;
	pr->rpos = 0;
	pr->rlen = (size_t)got;
	return 1;
}

/*
 * Decode base64 from raw into out[cap]; returns the bytes written. Whole
 * groups of four alphabet characters go at once; anything else (line
 * ends, junk, a group split by them, '=') one character at a time.
 */
static size_t
base64_step(struct mime_part_reader *pr, char *out, size_t cap)
{
	const unsigned char *in = (const unsigned char *)pr->raw;
	size_t i = pr->rpos, end = pr->rlen, n = 0;
	unsigned bits = pr->bits, nbits = pr->nbits;

	while (i < end && n < cap) {
		int v;

		while (nbits == 0 && end - i >= 4 && cap - n >= 3) {
			int a = base64_values[in[i]], b = base64_values[in[i + 1]],
			    c = base64_values[in[i + 2]], d = base64_values[in[i + 3]];

			if ((a | b | c | d) < 0)
				break;
			bits = (unsigned)a << 18 | (unsigned)b << 12 | (unsigned)c << 6 |
			    (unsigned)d;
			out[n] = (char)(bits >> 16);
			out[n + 1] = (char)(bits >> 8 & 0xff);
			out[n + 2] = (char)(bits & 0xff);
			n += 3;
			i += 4;
		}
		if (i == end || n == cap)
			break;
		if (in[i] == '=') {
			/* The data ends here; what follows is not decoded. */
			pr->padded = true;
			i = end;
			break;
		}
		if ((v = base64_values[in[i++]]) < 0)
			continue;
		bits = (bits << 6 | (unsigned)v) & 0xffffff;
		nbits += 6;
		if (nbits >= 8) {
			nbits -= 8;
			out[n++] = (char)(bits >> nbits & 0xff);
		}
	}
	pr->rpos = i;
	pr->bits = bits;
	pr->nbits = nbits;
	return n;
}

/*
 * Feed one quoted-printable byte; out has room for 3. "=" and "=\r" are
 * held until the next byte says what they are: a soft line break ("=\r\n",
 * "=\n") produces nothing, "=XX" one octet, and anything else is kept
 * literally, the bytes after the '=' fed again.
 */
static size_t
qp_feed(struct mime_part_reader *pr, char c, char *out)
{
	char h;

	if (pr->nheld == 0) {
		if (c != '=') {
			out[0] = c;
			return 1;
		}
		pr->held[pr->nheld++] = c;
		return 0;
	}
	if (pr->nheld == 1) {
		if (c == '\n') {
			pr->nheld = 0;
			return 0;
		}
		if (c == '\r' || hex_value(c) >= 0) {
			pr->held[pr->nheld++] = c;
			return 0;
		}
		pr->nheld = 0;
		out[0] = '=';
		return 1 + qp_feed(pr, c, out + 1);
	}
	h = pr->held[1];
	pr->nheld = 0;
	if (h == '\r' && c == '\n')
		return 0;
	if (h != '\r' && hex_value(c) >= 0) {
		out[0] = (char)(hex_value(h) * 16 + hex_value(c));
		return 1;
	}
	out[0] = '=';
	out[1] = h;
	return 2 + qp_feed(pr, c, out + 2);
}

/*
 * At the end of the body: an '=' or "=\r" left is a soft line break whose
 * line end went to the delimiter (RFC 2046 puts the CRLF before a boundary
 * there), so it goes too; "=X" is kept literally.
 */
static size_t
qp_finish(struct mime_part_reader *pr, char *out)
{
	size_t n = 0;

	if (pr->nheld == 2 && pr->held[1] != '\r') {
		out[n++] = '=';
		out[n++] = pr->held[1];
	}
	pr->nheld = 0;
	return n;
}

/* Decode what fits of the raw block into out[cap]. */
static size_t
decode_step(struct mime_part_reader *pr, char *out, size_t cap)
{
	size_t n = 0;

	switch (pr->encoding) {
	case MIME_ENC_BASE64:
		return base64_step(pr, out, cap);
	case MIME_ENC_QP:
		while (pr->rpos < pr->rlen && cap - n >= 3)
			n += qp_feed(pr, pr->raw[pr->rpos++], out + n);
		return n;
	case MIME_ENC_IDENTITY:
	default:
		n = pr->rlen - pr->rpos < cap ? pr->rlen - pr->rpos : cap;
		memcpy(out, pr->raw + pr->rpos, n);
		pr->rpos += n;
		return n;
	}
}

long
mime_part_read(struct mime_part_reader *pr, char *buf, size_t cap, struct tm_err *err)
{
	size_t n = 0, need = pr->encoding == MIME_ENC_QP ? 3 : 1;
	int rc;

	while (cap - n >= need) {
		if (pr->rpos == pr->rlen) {
			if ((rc = part_refill(pr, err)) == -1)
				return -1;
			if (rc == 0) {
				n += qp_finish(pr, buf + n);
				break;
			}
		}
		n += decode_step(pr, buf + n, cap - n);
	}
	return (long)n;
}

int
mime_part_decoded_size(const struct mime_reader *r, const struct mime_part *p,
    long long *size, struct tm_err *err)
{
	struct mime_part_reader *pr = xmalloc(sizeof(*pr));
	char buf[16384];
	long n;

	*size = 0;
	mime_part_reader_init(pr, r, p);
	while ((n = mime_part_read(pr, buf, sizeof(buf), err)) > 0)
		*size += n;
	free(pr);
	return n < 0 ? -1 : 0;
}
