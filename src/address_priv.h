/*
 * address_priv.h: what the parts of the address code share: the lexer's
 * tokens and the parser state (address_lex.c: bytes, errors, tokens;
 * address.c: the grammar), byte classes and list growth (also
 * address_util.c; UTF-8 lengths are util.h's). Private to those files.
 */
#ifndef TM_ADDRESS_PRIV_H
#define TM_ADDRESS_PRIV_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "address.h"
#include "err.h"
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

enum tok_kind {
	TOK_END,
	TOK_ATOM,
	TOK_QUOTED,
	TOK_LITERAL,
	TOK_SPECIAL
};

struct token {
	enum tok_kind kind;
	char ch;		/* the character of a TOK_SPECIAL */
	const char *s;		/* raw text, quotes and brackets included */
	size_t len;
	bool space_before;	/* CFWS came before the token */
	const char *comment;	/* last non-blank comment in that CFWS (the text
				   inside its parentheses), or NULL */
	size_t comment_len;
};

/* The words and dots read before the token that says what they are. */
struct phrase {
	struct token *toks;
	size_t n;
	size_t cap;
};

/* Where a mailbox is being read: it decides whether groups are allowed. */
enum context {
	CTX_LIST,
	CTX_GROUP,
	CTX_MAILBOX
};

struct parser {
	const char *base;	/* the text, for error offsets */
	const char *p;		/* next byte for the lexer */
	const char *end;
	struct token tok;	/* the current token, not consumed yet */
	struct phrase ph;
	const char *comment;	/* last comment of the mailbox being read */
	size_t comment_len;
	bool allow_null;	/* "<>" is the null sender (address_parse_mailbox) */
	size_t err_at;		/* on error: offset and reason */
	char why[128];
};

/* address_lex.c */
bool addr_is_wsp(unsigned char c);
bool addr_is_domain_char(unsigned char c);
const char *addr_bad_byte(const char *s, size_t len, size_t *at);
size_t addr_unescape(char *out, const char *s, size_t len);
size_t addr_fold_space(char *s, size_t n);
int __attribute__((format(printf, 3, 4))) addr_fail(struct parser *ps, const char *at, const char *fmt, ...);
int addr_fail_unexpected(struct parser *ps, const char *where);
int addr_report(struct tm_err *err, const char *what, const char *text, size_t len, const struct parser *ps);
int addr_next_token(struct parser *ps);
void addr_note_comment(struct parser *ps);
int addr_advance(struct parser *ps);
bool addr_is_special(const struct parser *ps, char c);
bool addr_is_word(const struct token *t);
bool addr_is_dot(const struct token *t);

#endif
