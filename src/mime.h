/*
 * mime.h: the MIME structure of a message (RFC 2045, 2046), for Graph's
 * draft path, which must take large attachments out of the message and
 * upload them on their own. The parser only locates things: every part's
 * byte range, type, boundary, transfer encoding, file name and Content-ID.
 * It reads the message through a callback (the spool in tokenmail, a buffer
 * in tests and fuzzers), keeps no copy of any body, and is pure otherwise.
 * Malformed MIME never fails the parse: a part whose structure cannot be
 * followed is treated as one opaque leaf, as mail readers do.
 */
#ifndef TM_MIME_H
#define TM_MIME_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"

/* Random access to the message bytes (CRLF line ends, as transmitted). */
struct mime_reader {
	void *ctx;
	/* Up to n bytes at offset into buf: the count read, 0 at the end, -1 on
	   an I/O error (the parse then fails with EX_IOERR). */
	long (*read_at)(void *ctx, long long offset, char *buf, size_t n);
	long long size;		/* total bytes */
};

enum mime_encoding {
	MIME_ENC_IDENTITY,	/* 7bit, 8bit, binary, absent or unknown */
	MIME_ENC_BASE64,
	MIME_ENC_QP		/* quoted-printable */
};

#define MIME_TYPE_MAX		128	/* "type/subtype", lower case */
#define MIME_BOUNDARY_MAX	70	/* RFC 2046 5.1.1 */
#define MIME_PARTS_MAX		1000	/* more parts: the rest stays opaque */
#define MIME_DEPTH_MAX		32	/* deeper nesting: opaque leaf */

struct mime_part {
	int parent;		/* index of the enclosing multipart, -1 for the top */
	int depth;		/* 0 for the top */
	long long delim_start;	/* offset of the "--boundary" line opening the
				   part; -1 for the top */
	long long header_start;	/* first byte of the part's header (top: 0) */
	long long body_start;	/* first byte after the header's empty line */
	long long body_end;	/* end of the body: before the CRLF that precedes
				   the next delimiter line, or the end of input */
	long long next_delim;	/* offset of the delimiter line (next part or close)
				   following the part; the end of input for the top
				   or when none follows */
	char type[MIME_TYPE_MAX + 1];	/* lower case "text/plain" (the default;
					   message/rfc822 inside multipart/digest) */
	bool multipart;		/* type multipart/... with a usable boundary: its
				   children follow it in the array */
	char boundary[MIME_BOUNDARY_MAX + 1];	/* multipart only */
	enum mime_encoding encoding;
	bool disposition_attachment;	/* Content-Disposition: attachment */
	bool disposition_inline;	/* Content-Disposition: inline */
	char *filename;		/* UTF-8: Content-Disposition filename (RFC 2231
				   filename*, continuations and charset decoded),
				   else Content-Type name; RFC 2047 encoded-words
				   in UTF-8, US-ASCII or ISO-8859-1 decoded; control
				   characters removed; NULL if none */
	char *content_id;	/* Content-ID without < >, or NULL */
};

struct mime_tree {
	struct mime_part *parts;	/* parts[0] is the whole message; parts
					   appear in the order they start */
	size_t count;
};

/*
 * Parse the message r gives into out. Returns 0, or -1 with err
 * (EX_IOERR when r->read_at fails; EX_OSERR out of memory). A part header
 * over 64 KiB or a line of any length is handled; nothing is refused for
 * its syntax. Free out with mime_tree_free either way.
 */
int mime_parse(const struct mime_reader *r, struct mime_tree *out, struct tm_err *err);
void mime_tree_free(struct mime_tree *t);

/*
 * true if p is an attachment Graph can take separately: a leaf (not
 * multipart, not parts[0]) with Content-Disposition attachment, or with a
 * file name (disposition inline or none), and not itself inside a
 * message/rfc822 part.
 */
bool mime_part_is_attachment(const struct mime_tree *t, size_t index);

/* Streaming decoder of one part's body (its Content-Transfer-Encoding undone):
   base64 skips white space and junk; quoted-printable handles soft breaks
   across reads; identity copies. */
struct mime_part_reader {
	/* Private: set by mime_part_reader_init, read by mime_part_read. */
	const struct mime_reader *r;
	long long pos, end;		/* next raw byte to read, body_end */
	enum mime_encoding encoding;
	unsigned bits, nbits;		/* base64 accumulator */
	bool padded;			/* base64 '=' seen: the rest is ignored */
	char held[3];			/* quoted-printable bytes held over a read */
	size_t nheld;
	size_t rpos, rlen;		/* raw[rpos, rlen) is read, not decoded */
	char raw[8192];
};

void mime_part_reader_init(struct mime_part_reader *pr, const struct mime_reader *r,
    const struct mime_part *p);
/* Up to cap decoded bytes into buf (cap >= 4): the count, 0 at the end of the
   body, -1 with err (EX_IOERR) when the reader fails. */
long mime_part_read(struct mime_part_reader *pr, char *buf, size_t cap, struct tm_err *err);
/* The decoded size of p's body (reads it through): 0 with *size, or -1 with err. */
int mime_part_decoded_size(const struct mime_reader *r, const struct mime_part *p,
    long long *size, struct tm_err *err);

#endif
