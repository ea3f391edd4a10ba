/*
 * base64.c: RFC 4648 base64 (section 4) and base64url (section 5).
 * Encoded and decoded data may be secrets (XOAUTH2 blobs carry the access
 * token), so the output buffer is grown by copy-and-wipe rather than
 * realloc, and a failed decode wipes what it had appended.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"

static const char alphabet_std[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char alphabet_url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int
encode(struct strbuf *b, const void *data, size_t len, const char *abc, bool pad)
{
	const unsigned char *in = data;
	size_t out_len = len / 3 * 4, i;
	char *o;

	if (len % 3)
		out_len += pad ? 4 : len % 3 + 1;
	if (len > SIZE_MAX / 2 || strbuf_reserve_wiped(b, out_len) < 0)
		return -1;
	o = b->data + b->len;
	for (i = 0; i + 2 < len; i += 3) {
		unsigned long v = (unsigned long)in[i] << 16 | (unsigned long)in[i + 1] << 8 |
		    in[i + 2];

		*o++ = abc[v >> 18 & 63];
		*o++ = abc[v >> 12 & 63];
		*o++ = abc[v >> 6 & 63];
		*o++ = abc[v & 63];
	}
	if (len - i == 1) {
		*o++ = abc[in[i] >> 2];
		*o++ = abc[(in[i] & 3) << 4];
	} else if (len - i == 2) {
		*o++ = abc[in[i] >> 2];
		*o++ = abc[(in[i] & 3) << 4 | in[i + 1] >> 4];
		*o++ = abc[(in[i + 1] & 15) << 2];
	}
	while (pad && (size_t)(o - (b->data + b->len)) < out_len)
		*o++ = '=';
	b->len += out_len;
	b->data[b->len] = '\0';
	return 0;
}

int
base64_encode(struct strbuf *b, const void *data, size_t len)
{
	return encode(b, data, len, alphabet_std, true);
}

int
base64url_encode(struct strbuf *b, const void *data, size_t len)
{
	return encode(b, data, len, alphabet_url, false);
}

const signed char base64_values[256] = {
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 62, -1, -1, -1, 63,
	52, 53, 54, 55, 56, 57, 58, 59, 60, 61, -1, -1, -1, -1, -1, -1,
	-1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
	15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, -1, -1, -1, -1, -1,
	-1, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,
	41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
};

/* The 6-bit value of c in the standard or the URL alphabet, or -1. */
static int
sextet(char c, bool url)
{
	if (url && (c == '-' || c == '_'))
		return c == '-' ? 62 : 63;
	if (url && (c == '+' || c == '/'))
		return -1;
	return base64_values[(unsigned char)c];
}

/*
 * Length of text[len] without its padding, or -1 when the padding is
 * malformed: at most two '=', only at the end, and only completing a
 * four-character group.
 */
static long
unpadded_length(const char *text, size_t len)
{
	size_t n = len;

	while (n > 0 && len - n < 2 && text[n - 1] == '=')
		n--;
	if (n < len && len % 4 != 0)
		return -1;
	if (n % 4 == 1)
		return -1;
	return (long)n;
}

/*
 * Decode the unpadded text[n] into out (room for n * 3 / 4 octets).
 * Leftover bits in the last character must be zero, so that every octet
 * string has exactly one accepted encoding (RFC 4648 section 3.5).
 */
static int
decode_into(unsigned char *out, const char *text, size_t n, bool url)
{
	unsigned long acc = 0;
	size_t i, o = 0;
	int bits = 0;

	for (i = 0; i < n; i++) {
		int v = sextet(text[i], url);

		if (v < 0)
			return -1;
		acc = (acc << 6 | (unsigned long)v) & 0xffffff;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)(acc >> bits);
		}
	}
	if (acc & ((1UL << bits) - 1))
		return -1;
	return 0;
}

static int
decode(struct strbuf *b, const char *text, size_t len, bool url)
{
	long n = unpadded_length(text, len);
	size_t out_len;

	if (n < 0)
		return -1;
	out_len = (size_t)n / 4 * 3 + ((size_t)n % 4 ? (size_t)n % 4 - 1 : 0);
	if (strbuf_reserve_wiped(b, out_len) < 0)
		return -1;
	if (decode_into((unsigned char *)b->data + b->len, text, (size_t)n, url) < 0) {
		secret_wipe(b->data + b->len, out_len);
		b->data[b->len] = '\0';
		return -1;
	}
	b->len += out_len;
	b->data[b->len] = '\0';
	return 0;
}

int
base64_decode(struct strbuf *b, const char *text, size_t len)
{
	return decode(b, text, len, false);
}

int
base64url_decode(struct strbuf *b, const char *text, size_t len)
{
	return decode(b, text, len, true);
}
