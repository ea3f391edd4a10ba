/*
 * address.c: the RFC 5322 address-list parser (section 3.4 with the obsolete
 * forms of section 4.4, UTF-8 as RFC 6532 allows). The small helpers that
 * check, compare and format addresses are in address_util.c.
 *
 * Two layers. The lexer (address_lex.c) turns the text into tokens (atom, quoted string,
 * domain literal, special character) and skips CFWS, noting for each token
 * whether CFWS came before it and the last comment in that CFWS. The grammar
 * layer reads a run of words and dots (a "phrase") and lets the token after it
 * decide what the run was: '<' makes it a display name, ':' a group name, '@'
 * a local part, and ',', ';' or the end an unqualified local name ("root").
 * Nothing backtracks and comment nesting is counted, not recursed, so time is
 * linear and the stack stays bounded whatever the input.
 *
 * Before any of that, the whole text is checked for NUL, CR and LF (which
 * could end a header line or an SMTP command early) and for valid UTF-8.
 *
 * Leniencies, each because real mailers do it and the meaning is still clear:
 *  - an empty text, or one of commas only, is an empty list, not an error
 *    ("To: " is common; the caller decides whether no recipients is fatal);
 *  - a group that runs to the end of the text without its ';' ends there
 *    ("undisclosed-recipients:" is a frequent mistake);
 *  - '.' may appear anywhere in a display name, not only after a word
 *    (obs-phrase); a display name is never routed on;
 *  - white space just inside the brackets of a domain literal is dropped;
 *  - '_' is accepted in domain labels (it exists in real host names).
 * Strictness, because a guess could misroute mail: two words in a local part
 * without a '.', '.' at either end of or doubled in a local part or domain,
 * ';' outside a group ("a@x; b@y" is Outlook's habit, but ';' ends a group),
 * anything after a mailbox but ',' ("a@x <b@y>" may be two addresses that
 * lost their comma), and domain labels with characters other than letters,
 * digits, '-', '_' and UTF-8. A quoted local part may not hold control
 * characters (RFC 5321 qtextSMTP); a quoted display name may (obs-qtext), and
 * they become spaces in the decoded name.
 *
 * Obsolete forms are accepted and normalized: a route ("<@r:a@b>") is
 * dropped, CFWS around dots disappears, and a local part that mixes atoms
 * and quoted strings ("a"."b") becomes one quoted string ("a.b"), which is
 * what RFC 5321 can carry.
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

static int parse_address(struct parser *, struct address_list *,
    enum context, const char *);

/* ---- phrases: display names and local parts ------------------------- */

/* Read words and dots into ps->ph until some other token. */
static int
collect_phrase(struct parser *ps)
{
	struct phrase *ph = &ps->ph;

	ph->n = 0;
	while (addr_is_word(&ps->tok) || addr_is_dot(&ps->tok)) {
		if (ph->n == ph->cap) {
			ph->cap = ph->cap ? ph->cap * 2 : 16;
			ph->toks = xreallocarray(ph->toks, ph->cap, sizeof(*ph->toks));
		}
		ph->toks[ph->n++] = ps->tok;
		if (addr_advance(ps) == -1)
			return -1;
	}
	return 0;
}

/* Bytes from the first token of ph to the end of its last: a bound for
   anything built from them. */
static size_t
phrase_span(const struct phrase *ph)
{
	const struct token *last = &ph->toks[ph->n - 1];

	return (size_t)(last->s + last->len - ph->toks[0].s);
}

/* The display name ph stands for: quoted strings decoded, CFWS between
   tokens made one space, white space runs folded. NULL if that is empty. */
static char *
phrase_text(const struct phrase *ph)
{
	char *out;
	size_t i, n = 0;

	if (ph->n == 0)
		return NULL;
	out = xmalloc(phrase_span(ph) + 1);
	for (i = 0; i < ph->n; i++) {
		const struct token *t = &ph->toks[i];

		if (i > 0 && t->space_before)
			out[n++] = ' ';
		if (t->kind == TOK_QUOTED)
			n += addr_unescape(out + n, t->s + 1, t->len - 2);
		else {
			memcpy(out + n, t->s, t->len);
			n += t->len;
		}
	}
	if (addr_fold_space(out, n) == 0) {
		free(out);
		return NULL;
	}
	return out;
}

/* Check that ph is word *("." word) (obs-local-part: CFWS around the dots
   is fine). bare: the phrase ended without '@', so two words in a row are
   more likely a display name that lost its address. */
static int
local_shape(struct parser *ps, bool bare)
{
	const struct phrase *ph = &ps->ph;
	size_t i;

	for (i = 0; i < ph->n; i++) {
		const struct token *t = &ph->toks[i];
		bool prev_dot = i > 0 && addr_is_dot(&ph->toks[i - 1]);

		if (addr_is_dot(t) && i == 0)
			return addr_fail(ps, t->s, "local part starts with '.'");
		if (addr_is_dot(t) && prev_dot)
			return addr_fail(ps, t->s, "consecutive dots in local part");
		if (!addr_is_dot(t) && i > 0 && !prev_dot) {
			if (bare)
				return addr_fail(ps, ph->toks[0].s,
				    "display name without an address");
			return addr_fail(ps, t->s, "%s in local part",
			    t->space_before ? "unquoted white space" :
			    "missing '.' between words");
		}
	}
	if (addr_is_dot(&ph->toks[ph->n - 1]))
		return addr_fail(ps, ph->toks[ph->n - 1].s, "local part ends with '.'");
	return 0;
}

/* RFC 5321 qtextSMTP and quoted-pairSMTP: no control characters (not even
   TAB) in a quoted local part, which goes into RCPT TO. */
static int
local_quoted_ok(struct parser *ps)
{
	size_t i, j;

	for (i = 0; i < ps->ph.n; i++) {
		const struct token *t = &ps->ph.toks[i];

		if (t->kind != TOK_QUOTED)
			continue;
		for (j = 1; j + 1 < t->len; j++)
			if (is_ctl((unsigned char)t->s[j]))
				return addr_fail(ps, t->s + j,
				    "control character in quoted local part");
	}
	return 0;
}

/* The local part in wire form. One quoted string stays as given; atoms
   joined by dots are a dot-atom; a mix of both (obs-local-part, which RFC
   5321 does not allow) becomes one quoted string with the same meaning:
   atoms hold no '"' or '\\', and quoted-pairs stay valid inside quotes. */
static char *
local_wire(const struct phrase *ph)
{
	size_t i, nquoted = 0, n = 0;
	char *out = xmalloc(phrase_span(ph) + 3);

	for (i = 0; i < ph->n; i++)
		nquoted += ph->toks[i].kind == TOK_QUOTED;
	if (ph->n == 1 || nquoted == 0) {
		for (i = 0; i < ph->n; i++) {
			memcpy(out + n, ph->toks[i].s, ph->toks[i].len);
			n += ph->toks[i].len;
		}
	} else {
		out[n++] = '"';
		for (i = 0; i < ph->n; i++) {
			const struct token *t = &ph->toks[i];
			size_t skip = t->kind == TOK_QUOTED;

			memcpy(out + n, t->s + skip, t->len - 2 * skip);
			n += t->len - 2 * skip;
		}
		out[n++] = '"';
	}
	out[n] = '\0';
	return out;
}

/* Turn ps->ph into a local part. */
static int
phrase_local(struct parser *ps, bool bare, char **out)
{
	if (local_shape(ps, bare) == -1 || local_quoted_ok(ps) == -1)
		return -1;
	*out = local_wire(&ps->ph);
	if (strlen(*out) > TM_LOCAL_PART_MAX)
		return addr_fail(ps, ps->ph.toks[0].s,
		    "local part longer than %d octets", TM_LOCAL_PART_MAX);
	return 0;
}

/* ---- domains -------------------------------------------------------- */

/* "[192.0.2.1]", with white space just inside the brackets dropped. */
static int
domain_literal(struct parser *ps, char **out)
{
	const char *s = ps->tok.s + 1, *e = ps->tok.s + ps->tok.len - 1, *q;

	while (s < e && addr_is_wsp((unsigned char)*s))
		s++;
	while (e > s && addr_is_wsp((unsigned char)e[-1]))
		e--;
	if (s == e)
		return addr_fail(ps, ps->tok.s, "empty domain literal");
	if ((size_t)(e - s) + 2 > TM_DOMAIN_MAX)
		return addr_fail(ps, ps->tok.s, "domain longer than %d octets",
		    TM_DOMAIN_MAX);
	for (q = s; q < e; q++)
		if (addr_is_wsp((unsigned char)*q))
			return addr_fail(ps, q, "white space in domain literal");
	if (addr_advance(ps) == -1)
		return -1;
	*out = xasprintf("[%.*s]", (int)(e - s), s);
	return 0;
}

/* Why the token after '@' (or after a '.') cannot start a label. */
static int
domain_missing(struct parser *ps, bool after_dot)
{
	if (addr_is_dot(&ps->tok))
		return addr_fail(ps, ps->tok.s, after_dot ?
		    "consecutive dots in domain" : "domain starts with '.'");
	if (ps->tok.kind == TOK_QUOTED)
		return addr_fail(ps, ps->tok.s, "quoted string in domain");
	if (ps->tok.kind == TOK_LITERAL)
		return addr_fail_unexpected(ps, " in domain");
	return addr_fail(ps, ps->tok.s, after_dot ? "domain ends with '.'" :
	    "'@' without a domain");
}

static int
domain_label(struct parser *ps, struct strbuf *b, const char *start)
{
	size_t i;

	for (i = 0; i < ps->tok.len; i++) {
		unsigned char c = (unsigned char)ps->tok.s[i];

		if (!addr_is_domain_char(c))
			return addr_fail(ps, ps->tok.s + i,
			    "invalid character '%c' in domain", c);
	}
	if (strbuf_append(b, ps->tok.s, ps->tok.len) == -1)
		return addr_fail(ps, start, "domain longer than %d octets",
		    TM_DOMAIN_MAX);
	return addr_advance(ps);
}

/* domain = dot-atom / domain-literal / obs-domain (CFWS around dots). */
static int
parse_domain(struct parser *ps, char **out)
{
	const char *start = ps->tok.s;
	struct strbuf b;
	int rc = -1;

	if (ps->tok.kind == TOK_LITERAL)
		return domain_literal(ps, out);
	strbuf_init(&b, TM_DOMAIN_MAX);
	for (;;) {
		if (ps->tok.kind != TOK_ATOM) {
			domain_missing(ps, b.len > 0);
			goto out;
		}
		if (domain_label(ps, &b, start) == -1)
			goto out;
		if (!addr_is_dot(&ps->tok))
			break;
		if (strbuf_append(&b, ".", 1) == -1) {
			addr_fail(ps, start, "domain longer than %d octets",
			    TM_DOMAIN_MAX);
			goto out;
		}
		if (addr_advance(ps) == -1)
			goto out;
	}
	*out = strbuf_take(&b);
	rc = 0;
out:
	strbuf_free(&b);
	return rc;
}

/* After a local part: "@" domain, or nothing for an unqualified name. */
static int
parse_at_domain(struct parser *ps, struct address *a)
{
	if (!addr_is_special(ps, '@'))
		return 0;
	if (addr_advance(ps) == -1 || parse_domain(ps, &a->domain) == -1)
		return -1;
	if (addr_is_special(ps, '@'))
		return addr_fail(ps, ps->tok.s, "more than one '@'");
	return 0;
}

/* ---- mailboxes and groups ------------------------------------------- */

/* obs-route: "@r1,@r2:" before the addr-spec. Source routes are obsolete
   and RFC 5321 appendix C says to ignore them, so the route is only checked
   and dropped. */
static int
skip_route(struct parser *ps)
{
	bool any = false;
	char *d;

	for (;;) {
		if (addr_is_special(ps, ',')) {
			if (addr_advance(ps) == -1)
				return -1;
			continue;
		}
		if (!addr_is_special(ps, '@'))
			break;
		if (addr_advance(ps) == -1 || parse_domain(ps, &d) == -1)
			return -1;
		free(d);
		any = true;
	}
	if (!any)
		return addr_fail_unexpected(ps, " in route");
	if (!addr_is_special(ps, ':'))
		return addr_fail(ps, ps->tok.s, "missing ':' after route");
	return addr_advance(ps);
}

/* The inside of "<...>" when it holds no local part. */
static int
angle_empty(struct parser *ps, struct address *a, const char *open)
{
	if (addr_is_special(ps, '>') && ps->allow_null) {
		a->local = xstrdup("");
		return 0;
	}
	if (addr_is_special(ps, '>'))
		return addr_fail(ps, open, "empty address '<>'");
	if (addr_is_special(ps, '@'))
		return addr_fail(ps, ps->tok.s, "'@' without a local part");
	if (ps->tok.kind == TOK_END)
		return addr_fail(ps, open, "missing '>'");
	return addr_fail_unexpected(ps, " in angle address");
}

/* angle-addr and obs-angle-addr; "<root>" is an unqualified name. */
static int
parse_angle(struct parser *ps, struct address *a)
{
	const char *open = ps->tok.s;

	if (addr_advance(ps) == -1)
		return -1;
	if ((addr_is_special(ps, '@') || addr_is_special(ps, ',')) && skip_route(ps) == -1)
		return -1;
	if (collect_phrase(ps) == -1)
		return -1;
	if (ps->ph.n == 0) {
		if (angle_empty(ps, a, open) == -1)
			return -1;
	} else if (phrase_local(ps, false, &a->local) == -1 ||
	    parse_at_domain(ps, a) == -1)
		return -1;
	if (addr_is_special(ps, '>'))
		return addr_advance(ps);
	if (ps->tok.kind == TOK_END)
		return addr_fail(ps, open, "missing '>'");
	return addr_fail_unexpected(ps, " in angle address");
}

/* The token after a mailbox or group must end it. */
static int
expect_separator(struct parser *ps, enum context ctx)
{
	if (addr_is_special(ps, ',') || ps->tok.kind == TOK_END)
		return 0;
	if (addr_is_special(ps, ';'))
		return ctx == CTX_GROUP ? 0 :
		    addr_fail(ps, ps->tok.s, "';' outside a group");
	return addr_fail_unexpected(ps, " after address");
}

/* group = display-name ":" [group-list] ";"; ps->ph holds the name and the
   current token is the ':'. Members get the name in .group. */
static int
parse_group(struct parser *ps, struct address_list *list)
{
	char *name = phrase_text(&ps->ph);
	int rc = -1;

	if (name == NULL)
		name = xstrdup("");
	if (addr_advance(ps) == -1)
		goto out;
	/* Lenient: the end of the text also closes the group. */
	while (!addr_is_special(ps, ';') && ps->tok.kind != TOK_END) {
		if (addr_is_special(ps, ',')) {
			if (addr_advance(ps) == -1)
				goto out;
			continue;
		}
		if (parse_address(ps, list, CTX_GROUP, name) == -1 ||
		    expect_separator(ps, CTX_GROUP) == -1)
			goto out;
	}
	rc = ps->tok.kind == TOK_END ? 0 : addr_advance(ps);
out:
	free(name);
	return rc;
}

/* A group's name ended with ':' where only a mailbox may be. */
static int
group_refused(struct parser *ps, enum context ctx)
{
	if (ps->ph.n == 0)
		return addr_fail(ps, ps->tok.s, "group without a name");
	if (ctx == CTX_GROUP)
		return addr_fail(ps, ps->tok.s, "group inside a group");
	return addr_fail(ps, ps->tok.s, "group where one mailbox is expected");
}

/* The comment kept for the mailbox just read, decoded and folded. */
static char *
comment_text(const struct parser *ps)
{
	char *out;
	size_t n;

	if (ps->comment == NULL)
		return NULL;
	out = xmalloc(ps->comment_len + 1);
	n = addr_unescape(out, ps->comment, ps->comment_len);
	if (addr_fold_space(out, n) == 0) {
		free(out);
		return NULL;
	}
	return out;
}

/* The mailbox proper: name-addr, addr-spec or unqualified name. */
static int
parse_mailbox_body(struct parser *ps, struct address *a)
{
	if (addr_is_special(ps, '<')) {
		a->display = phrase_text(&ps->ph);
		return parse_angle(ps, a);
	}
	if (ps->ph.n == 0) {
		if (addr_is_special(ps, '@'))
			return addr_fail(ps, ps->tok.s, "'@' without a local part");
		if (ps->tok.kind == TOK_END)
			return addr_fail(ps, ps->tok.s, "empty address");
		return addr_fail_unexpected(ps, "");
	}
	if (phrase_local(ps, !addr_is_special(ps, '@'), &a->local) == -1)
		return -1;
	return parse_at_domain(ps, a);
}

/* address = mailbox / group. Appends what it read to list. */
static int
parse_address(struct parser *ps, struct address_list *list,
    enum context ctx, const char *group)
{
	struct address a = { 0 };
	const char *start = ps->tok.s;
	int rc = -1;

	ps->comment = NULL;
	if (collect_phrase(ps) == -1)
		goto out;
	if (addr_is_special(ps, ':')) {
		rc = ctx == CTX_LIST && ps->ph.n > 0 ? parse_group(ps, list) :
		    group_refused(ps, ctx);
		goto out;
	}
	if (parse_mailbox_body(ps, &a) == -1)
		goto out;
	if (a.domain != NULL &&
	    strlen(a.local) + 1 + strlen(a.domain) > TM_ADDRESS_MAX) {
		addr_fail(ps, start, "address longer than %d octets", TM_ADDRESS_MAX);
		goto out;
	}
	addr_note_comment(ps);	/* the CFWS before ',' or the end is ours */
	a.comment = comment_text(ps);
	a.group = group != NULL ? xstrdup(group) : NULL;
	list_push(list, &a);
	rc = 0;
out:
	address_free(&a);
	return rc;
}

/* address-list, with obs-addr-list's empty elements. */
static int
parse_list(struct parser *ps, struct address_list *list)
{
	while (ps->tok.kind != TOK_END) {
		if (addr_is_special(ps, ',')) {
			if (addr_advance(ps) == -1)
				return -1;
			continue;
		}
		if (parse_address(ps, list, CTX_LIST, NULL) == -1 ||
		    expect_separator(ps, CTX_LIST) == -1)
			return -1;
	}
	return 0;
}

static int
parse_one(struct parser *ps, struct address_list *list)
{
	if (parse_address(ps, list, CTX_MAILBOX, NULL) == -1)
		return -1;
	if (ps->tok.kind == TOK_END)
		return 0;
	if (addr_is_special(ps, ','))
		return addr_fail(ps, ps->tok.s, "more than one address");
	return expect_separator(ps, CTX_MAILBOX);
}

/* Parse text[len] into list (one mailbox only if one). */
static int
parse_text(struct parser *ps, const char *text, size_t len, bool one,
    struct address_list *list)
{
	const char *why;
	size_t at = 0;

	memset(ps, 0, sizeof(*ps));
	ps->base = ps->p = text;
	ps->end = text + len;
	ps->allow_null = one;
	if ((why = addr_bad_byte(text, len, &at)) != NULL)
		return addr_fail(ps, text + at, "%s", why);
	if (addr_next_token(ps) == -1)
		return -1;
	return one ? parse_one(ps, list) : parse_list(ps, list);
}

/* ---- API ------------------------------------------------------------ */

int
address_list_parse(struct address_list *list, const char *text, size_t len,
    struct tm_err *err)
{
	struct address_list tmp = { 0 };
	struct parser ps;
	size_t i;
	int rc = -1;

	if (parse_text(&ps, text, len, false, &tmp) == -1) {
		addr_report(err, "invalid address list", text, len, &ps);
		goto out;
	}
	for (i = 0; i < tmp.count; i++)
		list_push(list, &tmp.items[i]);
	tmp.count = 0;
	rc = 0;
out:
	free(ps.ph.toks);
	address_list_free(&tmp);
	return rc;
}

int
address_parse_mailbox(struct address *out, const char *text, struct tm_err *err)
{
	struct address_list tmp = { 0 };
	struct parser ps;
	size_t len = strlen(text);
	int rc = -1;

	memset(out, 0, sizeof(*out));
	if (parse_text(&ps, text, len, true, &tmp) == -1) {
		addr_report(err, "invalid address", text, len, &ps);
		goto out;
	}
	*out = tmp.items[0];
	tmp.count = 0;
	rc = 0;
out:
	free(ps.ph.toks);
	address_list_free(&tmp);
	return rc;
}
