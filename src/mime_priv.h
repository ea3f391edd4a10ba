/*
 * mime_priv.h: what the parts of the MIME code share (mime.c: the
 * structure parser and its reads of the message; mime_param.c: what a
 * part's header fields say; mime_decode.c: the body decoders), and the
 * byte classes they all use (hex digits and UTF-8 are util.h's, base64
 * values base64.h's). Private to those files.
 */
#ifndef TM_MIME_PRIV_H
#define TM_MIME_PRIV_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

#include "err.h"
#include "mime.h"

#define MIME_FIELD_MAX		(64 * 1024)	/* one unfolded field kept */

static inline bool
is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

/* s[0, n) is the token word, ASCII case ignored. */
static inline bool
token_is(const char *s, size_t n, const char *word)
{
	return strlen(word) == n && strncasecmp(s, word, n) == 0;
}

/* mime.c */
/* Up to n bytes of the message at off into buf: the count, or -1 with err
   (EX_IOERR) when r fails or stops short of r->size. */
long mime_read_block(const struct mime_reader *r, long long off, char *buf,
    size_t n, struct tm_err *err);

/* mime_param.c */
/* Set p's type, boundary, encoding, disposition, file name and Content-ID
   from the unfolded values of its Content-Type, Content-Transfer-Encoding,
   Content-Disposition and Content-ID fields (each NULL if absent). */
void mime_apply_fields(struct mime_part *p, const char *type, const char *encoding,
    const char *disposition, const char *id);

#endif
