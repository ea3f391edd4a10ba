/*
 * fuzz_address.c: the RFC 5322 address parser (address.h). The input is
 * a header value or a command-line argument: parsed as an address list,
 * and (up to its first NUL) as one mailbox and as an envelope spec.
 * Invariants: no parsed string holds CR, LF or NUL; a failed parse leaves
 * the list unchanged; a mailbox whose spec passes address_check_spec()
 * formats to one line that parses back to the same spec and display name,
 * and such mailboxes joined into a header parse back to the same list.
 */
#include <string.h>

#include "address.h"
#include "fuzz.h"
#include "tm_limits.h"

static void
check_field(const char *s)
{
	if (s != NULL)
		fuzz_check(fuzz_one_line(s, strlen(s)), "a parsed field holds CR or LF");
}

/* A display name that formatting keeps as it is: valid UTF-8, no control
   character (those become '?' and spaces). */
static bool
plain_display(const char *d)
{
	const unsigned char *u = (const unsigned char *)d;
	size_t left = strlen(d), n;

	for (; left > 0; u += n, left -= n)
		if ((n = utf8_len(u, left)) == 0 || (n == 1 && (*u < 0x20 || *u == 0x7f)))
			return false;
	return true;
}

/* Format a with its display name into formatted (appended, ", "-separated)
   and parse the mailbox back: the same spec, and the same display name.
   false when it did not fit (nothing appended). */
static bool
check_format(const struct address *a, const char *spec, struct strbuf *formatted)
{
	char line[TM_DISPLAY_MAX * 4 + TM_ADDRESS_MAX + 8], again[TM_ADDRESS_MAX + 1];
	struct address back;
	struct tm_err err;

	if (address_format_mailbox(a->display, spec, line, sizeof(line)) < 0)
		return false;
	fuzz_check(fuzz_one_line(line, strlen(line)), "a formatted mailbox is not one line");
	fuzz_check(address_parse_mailbox(&back, line, &err) == 0,
	    "a formatted mailbox does not parse");
	fuzz_check(address_spec(&back, again, sizeof(again)) == 0 && strcmp(again, spec) == 0,
	    "a formatted mailbox parses to another spec");
	if (a->display != NULL && a->display[0] != '\0' && plain_display(a->display))
		fuzz_check(back.display != NULL && strcmp(back.display, a->display) == 0,
		    "a formatted mailbox parses to another display name");
	address_free(&back);
	if (formatted->len > 0)
		(void)strbuf_append_str(formatted, ", ");
	(void)strbuf_append_str(formatted, line);
	return true;
}

static void
check_mailbox(const struct address_list *list, const struct address *a,
    struct strbuf *formatted, struct address_list *specs)
{
	char spec[TM_ADDRESS_MAX * 2];
	struct tm_err err;

	fuzz_check(a->local != NULL, "a mailbox without a local part");
	check_field(a->local);
	check_field(a->domain);
	check_field(a->display);
	check_field(a->comment);
	check_field(a->group);
	if (address_spec(a, spec, sizeof(spec)) < 0)
		return;
	fuzz_check(address_list_find(list, spec) >= 0, "a parsed mailbox is not found");
	if (address_check_spec(spec, &err) == 0 && check_format(a, spec, formatted))
		address_list_add_spec(specs, spec);
}

/* The formatted mailboxes, as message_set_address_field() joins them into
   a header, parse back to the same specs in the same order. */
static void
check_header(const struct strbuf *formatted, const struct address_list *specs)
{
	struct address_list back = { NULL, 0, 0 };
	struct tm_err err;
	char a[TM_ADDRESS_MAX * 2], b[TM_ADDRESS_MAX * 2];
	size_t i;

	fuzz_check(address_list_parse(&back, formatted->data, formatted->len, &err) == 0,
	    "formatted mailboxes joined do not parse");
	fuzz_check(back.count == specs->count, "formatted mailboxes joined parse to another count");
	for (i = 0; i < back.count && i < specs->count; i++)
		fuzz_check(address_spec(&back.items[i], a, sizeof(a)) == 0 &&
		    address_spec(&specs->items[i], b, sizeof(b)) == 0 && strcmp(a, b) == 0,
		    "formatted mailboxes joined parse to other specs");
	address_list_free(&back);
}

static void
one_mailbox(const char *text)
{
	struct address a;
	struct tm_err err;
	char spec[TM_ADDRESS_MAX * 2];

	if (address_parse_mailbox(&a, text, &err) == 0) {
		check_field(a.local);
		check_field(a.domain);
		check_field(a.display);
		if (address_spec(&a, spec, sizeof(spec)) == 0)
			(void)address_check_spec(spec, &err);
	}
	address_free(&a);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct address_list list = { NULL, 0, 0 }, specs = { NULL, 0, 0 };
	struct strbuf formatted;
	struct tm_err err;
	char *text = fuzz_cstr(data, size);
	size_t i;

	strbuf_init(&formatted, (size_t)-1);
	if (address_list_parse(&list, (const char *)data, size, &err) == 0) {
		for (i = 0; i < list.count; i++)
			check_mailbox(&list, &list.items[i], &formatted, &specs);
		if (specs.count > 0)
			check_header(&formatted, &specs);
	} else {
		fuzz_check(list.count == 0, "a failed parse changed the list");
	}
	one_mailbox(text);
	if (address_check_spec(text, &err) == 0)
		fuzz_check(strlen(text) <= TM_ADDRESS_MAX, "a spec passed over its limit");
	address_list_free(&list);
	address_list_free(&specs);
	strbuf_free(&formatted);
	free(text);
	return 0;
}
