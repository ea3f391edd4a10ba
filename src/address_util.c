/*
 * address_util.c: addresses as data once parsed: the addr-spec of an
 * address, checking one for use in an envelope, comparing, formatting a
 * mailbox for a header, and the address_list container (address.h).
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

int
address_spec(const struct address *a, char *out, size_t size)
{
	if (a->domain == NULL)
		return str_copy(out, size, a->local);
	return str_format(out, size, "%s@%s", a->local, a->domain);
}

/* A spec is usable when the parser reads it as one mailbox and writes it
   back byte for byte: then it has no comment, display name, white space or
   brackets, and every rule of the parser (UTF-8, lengths, dots) holds. */
int
address_check_spec(const char *spec, struct tm_err *err)
{
	struct address a;
	char buf[TM_ADDRESS_MAX + 1], shown[SHOWN_MAX];
	const char *why = NULL;

	if (address_parse_mailbox(&a, spec, err) == -1)
		return -1;
	if (a.local[0] == '\0')
		why = "the null sender is not an address";
	else if (address_spec(&a, buf, sizeof(buf)) == -1 ||
	    strcmp(buf, spec) != 0)
		why = "not a bare address (display name, comment, white space "
		    "or angle brackets)";
	address_free(&a);
	if (why == NULL)
		return 0;
	log_sanitize(shown, sizeof(shown), spec, strlen(spec));
	return tm_err_set(err, TM_ERR_DATA, EX_DATAERR,
	    "invalid address \"%s\": %s", shown, why);
}

bool
address_spec_equal(const char *a, const char *b)
{
	size_t n = strlen(a);

	return n == strlen(b) && ascii_eq_n(a, b, n);
}

/* Whether display must be quoted: it holds something other than atext and
   single spaces between words, or broken UTF-8 (which quoting repairs). */
static bool
display_needs_quotes(const char *d, size_t len)
{
	const unsigned char *u = (const unsigned char *)d;
	size_t i = 0, n;

	if (u[0] == ' ' || u[len - 1] == ' ')
		return true;
	while (i < len) {
		if ((n = utf8_len(u + i, len - i)) == 0)
			return true;
		if (n == 1 && !is_atext(u[i]) &&
		    (u[i] != ' ' || u[i + 1] == ' '))
			return true;
		i += n;
	}
	return false;
}

/* Append display as a quoted-string. Control characters (CR and LF from a
   careless -F included) become spaces and broken UTF-8 becomes '?', so the
   result can never split the header line. */
static int
append_quoted(struct strbuf *b, const char *d, size_t len)
{
	const unsigned char *u = (const unsigned char *)d;
	size_t i = 0, n;
	int rc = strbuf_append(b, "\"", 1);

	while (rc == 0 && i < len) {
		n = utf8_len(u + i, len - i);
		if (n == 0)
			rc = strbuf_append(b, "?", 1);
		else if (n == 1 && is_ctl(u[i]))
			rc = strbuf_append(b, " ", 1);
		else if (n == 1 && (u[i] == '"' || u[i] == '\\'))
			rc = strbuf_appendf(b, "\\%c", u[i]);
		else
			rc = strbuf_append(b, d + i, n);
		i += n ? n : 1;
	}
	return rc == 0 ? strbuf_append(b, "\"", 1) : -1;
}

int
address_format_mailbox(const char *display, const char *spec, char *out,
    size_t size)
{
	struct strbuf b;
	size_t len = display != NULL ? strlen(display) : 0;
	int rc = -1;

	if (size == 0 || strpbrk(spec, "\r\n") != NULL)
		return -1;
	if (len == 0)
		return str_copy(out, size, spec);
	strbuf_init(&b, size - 1);
	if (display_needs_quotes(display, len))
		rc = append_quoted(&b, display, len);
	else
		rc = strbuf_append(&b, display, len);
	if (rc == 0)
		rc = strbuf_appendf(&b, " <%s>", spec);
	if (rc == 0)
		rc = str_copy(out, size, b.data);
	strbuf_free(&b);
	return rc;
}

static char *
dup_or_null(const char *s)
{
	return s != NULL ? xstrdup(s) : NULL;
}

void
address_list_add(struct address_list *list, const struct address *a)
{
	struct address copy;

	copy.local = xstrdup(a->local);
	copy.domain = dup_or_null(a->domain);
	copy.display = dup_or_null(a->display);
	copy.comment = dup_or_null(a->comment);
	copy.group = dup_or_null(a->group);
	list_push(list, &copy);
}

/* Offset of the last '@' outside a quoted string in spec, or -1. */
static long
last_at(const char *spec)
{
	bool quoted = false;
	long at = -1, i;

	for (i = 0; spec[i] != '\0'; i++) {
		if (quoted && spec[i] == '\\' && spec[i + 1] != '\0')
			i++;
		else if (spec[i] == '"')
			quoted = !quoted;
		else if (spec[i] == '@' && !quoted)
			at = i;
	}
	return at;
}

void
address_list_add_spec(struct address_list *list, const char *spec)
{
	struct address a = { 0 };
	long at = last_at(spec);

	if (at < 0)
		a.local = xstrdup(spec);
	else {
		a.local = xstrndup(spec, (size_t)at);
		a.domain = xstrdup(spec + at + 1);
	}
	list_push(list, &a);
}

/* Compare without building the spec, so no length limit applies. */
static bool
spec_matches(const struct address *a, const char *spec)
{
	size_t n = strlen(a->local);

	if (strlen(spec) < n || !ascii_eq_n(a->local, spec, n))
		return false;
	spec += n;
	if (a->domain == NULL)
		return *spec == '\0';
	return *spec == '@' && address_spec_equal(a->domain, spec + 1);
}

long
address_list_find(const struct address_list *list, const char *spec)
{
	size_t i;

	for (i = 0; i < list->count; i++)
		if (spec_matches(&list->items[i], spec))
			return (long)i;
	return -1;
}

void
address_free(struct address *a)
{
	free(a->local);
	free(a->domain);
	free(a->display);
	free(a->comment);
	free(a->group);
	memset(a, 0, sizeof(*a));
}

void
address_list_free(struct address_list *list)
{
	size_t i;

	for (i = 0; i < list->count; i++)
		address_free(&list->items[i]);
	free(list->items);
	memset(list, 0, sizeof(*list));
}
