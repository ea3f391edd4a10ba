/*
 * stream.h: request bodies produced while they are sent, so that a message
 * of any size goes to Graph without a copy in memory. A stream is read in
 * order and can start over (libcurl may need to resend a body). The kinds:
 * pieces (memory, or byte ranges of a file read with pread: the message's
 * header and the parts of the spool kept), base64 of another stream (one
 * line, padded, as Graph wants MIME), a chain of streams (JSON text around
 * base64), and one MIME part's body with its transfer encoding undone.
 */
#ifndef TM_STREAM_H
#define TM_STREAM_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"
#include "http.h"
#include "mime.h"

struct stream;
struct stream_ops {
	long (*read)(struct stream *s, char *buf, size_t n);	/* count, 0 at end, -1 */
	int (*rewind)(struct stream *s);
};

struct stream {
	const struct stream_ops *ops;
	long long size;		/* octets read gives in total */
	struct tm_err err;	/* why read or rewind failed (EX_IOERR) */
};

long stream_read(struct stream *s, char *buf, size_t n);
int stream_rewind(struct stream *s);
/* s as a body libcurl pulls (http.h); s must outlive the request. */
void stream_body_source(struct stream *s, struct http_body_source *out);

/* Pieces: memory (not copied: it must outlive the stream) or file ranges. */
struct stream_piece {
	const char *mem;	/* NULL: a file range */
	int fd;
	long long offset, len;
};
struct stream_pieces {
	struct stream s;
	struct stream_piece *items;
	size_t count, cap;
	long long pos;		/* where the next read starts */
};
void stream_pieces_init(struct stream_pieces *p);
void stream_pieces_add_mem(struct stream_pieces *p, const char *mem, size_t len);
void stream_pieces_add_file(struct stream_pieces *p, int fd, long long offset, long long len);
/* Octets [start, end) of from's bytes, as pieces appended to out (memory
   still owned by whoever owns from's). */
void stream_pieces_add_range(struct stream_pieces *out, const struct stream_pieces *from,
    long long start, long long end);
/* Random access: up to n octets at offset into buf; the count, 0 at the
   end, -1 with err (EX_IOERR). The read position is not moved. */
long stream_pieces_read_at(const struct stream_pieces *p, long long offset, char *buf,
    size_t n, struct tm_err *err);
void stream_pieces_free(struct stream_pieces *p);

/* Base64 (RFC 4648 section 4, no line breaks) of inner. */
struct stream_base64 {
	struct stream s;
	struct stream *inner;
	unsigned char in[3072];	/* read from inner in blocks, not 3 at a time */
	size_t nin, inpos;
	char out[4];
	size_t nout, outpos;
	bool inner_done;
};
void stream_base64_init(struct stream_base64 *b, struct stream *inner);
/* Octets of the base64 text of n octets. */
long long stream_base64_size(long long n);

/* Up to STREAM_CHAIN_MAX streams one after the other. */
#define STREAM_CHAIN_MAX 4
struct stream_chain {
	struct stream s;
	struct stream *parts[STREAM_CHAIN_MAX];
	size_t count, cur;
};
void stream_chain_init(struct stream_chain *c);
void stream_chain_add(struct stream_chain *c, struct stream *part);

/* The decoded body of one MIME part; size is its decoded size, which the
   caller measured first (mime_part_decoded_size). */
struct stream_mime_part {
	struct stream s;
	const struct mime_reader *reader;
	const struct mime_part *part;
	struct mime_part_reader pr;
	char held[4];		/* decoded octets a short read could not take */
	size_t nheld;
};
void stream_mime_part_init(struct stream_mime_part *m, const struct mime_reader *r,
    const struct mime_part *part, long long decoded_size);

#endif
