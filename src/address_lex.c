/*
 * address_lex.c: the bottom layer of the address parser (address.c): byte
 * checks (NUL, CR, LF, UTF-8), error reporting with offsets, and the lexer
 * that turns text into tokens and skips CFWS, remembering comments.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "address.h"
#include "address_priv.h"
#include "log.h"
#include "tm_limits.h"
#include "util.h"

/* ---- bytes ---------------------------------------------------------- */

bool
addr_is_wsp(unsigned char c)
{
	return c == ' ' || c == '\t';
}

/* Domain labels: letters, digits, '-', UTF-8 (IDN U-labels), and '_' which
   real host names contain even though RFC 1123 does not allow it. */
bool
addr_is_domain_char(unsigned char c)
{
	return is_alnum(c) || c >= 0x80 || c == '-' || c == '_';
}

/* Why s[len] can never be an address, or NULL. NUL, CR and LF could end a
   header line or an SMTP command early; everything else must be UTF-8. */
const char *
addr_bad_byte(const char *s, size_t len, size_t *at)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, n;

	while (i < len) {
		*at = i;
		if (u[i] == '\0')
			return "NUL byte";
		if (u[i] == '\r')
			return "carriage return";
		if (u[i] == '\n')
			return "line feed";
		if ((n = utf8_len(u + i, len - i)) == 0)
			return "invalid UTF-8";
		i += n;
	}
	return NULL;
}

/* Copy s[len] to out without the backslashes of quoted-pairs; returns the
   number of bytes written. */
size_t
addr_unescape(char *out, const char *s, size_t len)
{
	size_t i, n = 0;

	for (i = 0; i < len; i++) {
		if (s[i] == '\\' && i + 1 < len)
			i++;
		out[n++] = s[i];
	}
	return n;
}

/* Fold runs of white space in s[n] to one space and trim both ends, in
   place; returns the new length and terminates s. Control characters count
   as white space: a quoted display name may hold them (obs-qtext), but the
   decoded name is for people and for new headers, where they mean nothing. */
size_t
addr_fold_space(char *s, size_t n)
{
	size_t i, o = 0;
	bool pending = false;

	for (i = 0; i < n; i++) {
		if (s[i] == ' ' || is_ctl((unsigned char)s[i])) {
			pending = o > 0;
			continue;
		}
		if (pending)
			s[o++] = ' ';
		pending = false;
		s[o++] = s[i];
	}
	s[o] = '\0';
	return o;
}

/* ---- errors --------------------------------------------------------- */

int __attribute__((format(printf, 3, 4)))
addr_fail(struct parser *ps, const char *at, const char *fmt, ...)
{
	va_list ap;

	ps->err_at = (size_t)(at - ps->base);
	va_start(ap, fmt);
	vsnprintf(ps->why, sizeof(ps->why), fmt, ap);
	va_end(ap);
	return -1;
}

/* A token named for an error message: "'<'", "word", ... */
static const char *
tok_name(const struct token *t, char buf[4])
{
	switch (t->kind) {
	case TOK_END:
		return "end of text";
	case TOK_ATOM:
		return "word";
	case TOK_QUOTED:
		return "quoted string";
	case TOK_LITERAL:
		return "domain literal";
	case TOK_SPECIAL:
		break;
	}
	buf[0] = '\'';
	buf[1] = t->ch;
	buf[2] = '\'';
	buf[3] = '\0';
	return buf;
}

int
addr_fail_unexpected(struct parser *ps, const char *where)
{
	char buf[4];

	return addr_fail(ps, ps->tok.s, "unexpected %s%s", tok_name(&ps->tok, buf),
	    where);
}

/* Fill err from a failed parse of text[len]; the text is escaped and cut
   short so the message stays one bounded line. */
int
addr_report(struct tm_err *err, const char *what, const char *text, size_t len,
    const struct parser *ps)
{
	char shown[SHOWN_MAX];

	log_sanitize(shown, sizeof(shown), text, len);
	return tm_err_set(err, TM_ERR_DATA, EX_DATAERR,
	    "%s \"%s\": %s at offset %zu", what, shown, ps->why, ps->err_at);
}

/* ---- lexer ---------------------------------------------------------- */

/* Skip the comment at ps->p, nested ones included; remember its text in t
   unless it is blank. Depth is a counter, so "((((..." cannot exhaust the
   stack. */
static int
skip_comment(struct parser *ps, struct token *t)
{
	const char *open = ps->p, *s;
	size_t depth = 0;
	bool blank = true;

	for (s = ps->p; s < ps->end; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '\\' && s + 1 < ps->end) {
			c = (unsigned char)*++s;
		} else if (c == '(' && depth++ == 0) {
			continue;
		} else if (c == ')' && --depth == 0) {
			break;
		}
		if (is_ctl(c) && c != '\t')
			return addr_fail(ps, s, "control character 0x%02x in comment", c);
		if (!addr_is_wsp(c))
			blank = false;
	}
	if (s == ps->end)
		return addr_fail(ps, open, "unbalanced '('");
	if (!blank) {
		t->comment = open + 1;
		t->comment_len = (size_t)(s - open - 1);
	}
	ps->p = s + 1;
	return 0;
}

static int
skip_cfws(struct parser *ps, struct token *t)
{
	t->space_before = false;
	t->comment = NULL;
	t->comment_len = 0;
	while (ps->p < ps->end) {
		if (addr_is_wsp((unsigned char)*ps->p))
			ps->p++;
		else if (*ps->p == '(') {
			if (skip_comment(ps, t) == -1)
				return -1;
		} else
			break;
		t->space_before = true;
	}
	return 0;
}

/* Control characters are let through here (obs-qtext); a quoted local part
   refuses them later. */
static int
lex_quoted(struct parser *ps, struct token *t)
{
	const char *s = ps->p + 1;

	while (s < ps->end && *s != '"') {
		if (*s == '\\' && s + 1 < ps->end)
			s++;
		s++;
	}
	if (s >= ps->end)
		return addr_fail(ps, ps->p, "unbalanced quote");
	t->kind = TOK_QUOTED;
	t->len = (size_t)(s + 1 - ps->p);
	ps->p = s + 1;
	return 0;
}

/* Only plain dtext: a domain literal names an IP address (RFC 5321
   address-literal), so quoted-pairs and non-ASCII have no use there. */
static int
lex_literal(struct parser *ps, struct token *t)
{
	const char *s;

	for (s = ps->p + 1; s < ps->end && *s != ']'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '[' || c == '\\')
			return addr_fail(ps, s, "'%c' in domain literal", c);
		if (c >= 0x80)
			return addr_fail(ps, s, "non-ASCII character in domain literal");
		if (is_ctl(c) && c != '\t')
			return addr_fail(ps, s, "control character 0x%02x", c);
	}
	if (s == ps->end)
		return addr_fail(ps, ps->p, "missing ']'");
	t->kind = TOK_LITERAL;
	t->len = (size_t)(s + 1 - ps->p);
	ps->p = s + 1;
	return 0;
}

static int
lex_other(struct parser *ps, struct token *t)
{
	unsigned char c = (unsigned char)*ps->p;
	const char *s = ps->p;

	if (is_atext(c)) {
		while (s < ps->end && is_atext((unsigned char)*s))
			s++;
		t->kind = TOK_ATOM;
		t->len = (size_t)(s - ps->p);
		ps->p = s;
		return 0;
	}
	if (c != '\0' && strchr("<>:;@,.", c) != NULL) {
		t->kind = TOK_SPECIAL;
		t->ch = (char)c;
		t->len = 1;
		ps->p++;
		return 0;
	}
	if (c == ')')
		return addr_fail(ps, s, "unbalanced ')'");
	if (c == ']')
		return addr_fail(ps, s, "unbalanced ']'");
	if (c == '\\')
		return addr_fail(ps, s, "'\\' outside a quoted string");
	return addr_fail(ps, s, "control character 0x%02x", c);
}

/* Read the next token into ps->tok. */
int
addr_next_token(struct parser *ps)
{
	struct token *t = &ps->tok;

	if (skip_cfws(ps, t) == -1)
		return -1;
	t->s = ps->p;
	t->len = 0;
	t->ch = '\0';
	if (ps->p == ps->end) {
		t->kind = TOK_END;
		return 0;
	}
	if (*ps->p == '"')
		return lex_quoted(ps, t);
	if (*ps->p == '[')
		return lex_literal(ps, t);
	return lex_other(ps, t);
}

/* The comment before a token belongs to the mailbox that consumes the
   token, or that the token ends. */
void
addr_note_comment(struct parser *ps)
{
	if (ps->tok.comment != NULL) {
		ps->comment = ps->tok.comment;
		ps->comment_len = ps->tok.comment_len;
	}
}

/* Consume the current token. */
int
addr_advance(struct parser *ps)
{
	addr_note_comment(ps);
	return addr_next_token(ps);
}

bool
addr_is_special(const struct parser *ps, char c)
{
	return ps->tok.kind == TOK_SPECIAL && ps->tok.ch == c;
}

bool
addr_is_word(const struct token *t)
{
	return t->kind == TOK_ATOM || t->kind == TOK_QUOTED;
}

bool
addr_is_dot(const struct token *t)
{
	return t->kind == TOK_SPECIAL && t->ch == '.';
}
