/*
 * address_priv.h: what the address parser (address.c) and the address
 * helpers (address_util.c) share: byte classes, UTF-8 and list growth.
 * Private to those two files.
 */
#ifndef TM_ADDRESS_PRIV_H
#define TM_ADDRESS_PRIV_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "address.h"
#include "util.h"

/* Room for the sanitized text quoted in an error message. */
#define SHOWN_MAX	100

static inline bool
is_ctl(unsigned char c)
{
	return c < 0x20 || c == 0x7f;
}

static inline bool
is_alnum(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9');
}

/* atext (RFC 5322 3.2.3). Every byte >= 0x80 counts: the text has been
   checked to be UTF-8, so these bytes form whole characters (RFC 6532 3.2). */
static inline bool
is_atext(unsigned char c)
{
	return is_alnum(c) || c >= 0x80 ||
	    (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* Length of the valid UTF-8 sequence at s (avail bytes left), 0 if invalid:
   overlong forms, surrogates and code points above U+10FFFF are refused. */
static inline size_t
utf8_len(const unsigned char *s, size_t avail)
{
	unsigned char c = s[0], lo = 0x80, hi = 0xbf;
	size_t n, i;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4;
	else
		return 0;
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (n > avail || s[1] < lo || s[1] > hi)
		return 0;
	for (i = 2; i < n; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return n;
}

static inline bool
ascii_eq_n(const char *a, const char *b, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];

		if (x >= 'A' && x <= 'Z')
			x = (unsigned char)(x - 'A' + 'a');
		if (y >= 'A' && y <= 'Z')
			y = (unsigned char)(y - 'A' + 'a');
		if (x != y)
			return false;
	}
	return true;
}

static inline void
list_push(struct address_list *list, struct address *a)
{
	if (list->count == list->cap) {
		list->cap = list->cap ? list->cap * 2 : 8;
		list->items = xreallocarray(list->items, list->cap,
		    sizeof(*list->items));
	}
	list->items[list->count++] = *a;
	memset(a, 0, sizeof(*a));
}

#endif
