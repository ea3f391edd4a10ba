/*
 * base64.h: base64 (RFC 4648 section 4) and base64url without padding
 * (section 5): XOAUTH2/OAUTHBEARER blobs, JWT parts, PKCE challenges.
 */
#ifndef TM_BASE64_H
#define TM_BASE64_H

#include <stddef.h>

#include "util.h"

/* Append the encoding of data[len] to b; -1 if b's limit is hit. */
int base64_encode(struct strbuf *b, const void *data, size_t len);
int base64url_encode(struct strbuf *b, const void *data, size_t len);

/* Decode text[len] (padding optional, no white space) and append to b;
   -1 on a character outside the alphabet or b's limit. */
int base64_decode(struct strbuf *b, const char *text, size_t len);
int base64url_decode(struct strbuf *b, const char *text, size_t len);

/* The 6-bit value of each octet in the standard alphabet, -1 for every
   other octet ('=' included): for decoders of their own (MIME bodies). */
extern const signed char base64_values[256];

#endif
