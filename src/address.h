/*
 * address.h: RFC 5322 address lists (section 3.4, with the obsolete forms of
 * section 4.4) as they appear in To:/Cc:/Bcc:/From: and in sendmail's
 * recipient arguments: display names, quoted local parts, comments, groups,
 * angle and route addresses, and unqualified local names ("root").
 * The parser is pure (no I/O) so tests and fuzzers can drive it. It refuses
 * CR, LF and NUL anywhere, so nothing it returns can inject a header line or
 * an SMTP command.
 */
#ifndef TM_ADDRESS_H
#define TM_ADDRESS_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"

struct address {
	char *local;	/* local part as it goes on the wire: dot-atom text, or a
			   quoted-string with its quotes ("john doe") */
	char *domain;	/* domain without brackets' meaning changed ("[1.2.3.4]" kept),
			   NULL for an unqualified local name such as "root" */
	char *display;	/* display name: quotes and quoted-pairs decoded, comments
			   dropped, white space runs (and any control character
			   a quoted string held) folded to one space; RFC 2047
			   encoded-words left as they are; NULL if none */
	char *comment;	/* text of the last non-blank comment of the mailbox
			   (quoted-pairs decoded, nested parentheses kept, folded),
			   NULL if none: "root (Cron Daemon)" -> "Cron Daemon" */
	char *group;	/* display name of the enclosing group ("" for a group
			   whose name decodes to nothing), NULL outside groups */
};

struct address_list {
	struct address *items;
	size_t count;
	size_t cap;
};

/*
 * Parse an address-list from text[len] (an unfolded header value or one
 * command-line argument such as "a@x,b@y") and append its mailboxes to
 * list (groups contribute their members; an empty group contributes none).
 * Empty list elements (",,") are skipped as RFC 5322 4.4 allows, and a text
 * with no mailbox at all ("", " ", ",") appends nothing and returns 0: the
 * caller decides whether no recipients is an error. The leniencies are listed
 * at the top of address.c. "<>" is refused here (it is not a recipient).
 * Returns 0, or -1 with err set (TM_ERR_DATA, EX_DATAERR) to
 * `invalid address list "TEXT": REASON at offset N` (TEXT escaped and cut
 * short, N a byte offset from 0); list is then unchanged. Strings in list
 * are owned by it.
 */
int address_list_parse(struct address_list *list, const char *text, size_t len,
    struct tm_err *err);

/*
 * Parse exactly one mailbox (name-addr, addr-spec or unqualified name, for
 * -f and config values); CFWS around it is fine, a second address or a group
 * is not. "<>" gives an address with local == "" and domain == NULL (the
 * null sender). Returns 0, or -1 with err (TM_ERR_DATA, EX_DATAERR) set to
 * `invalid address "TEXT": REASON at offset N` and out zeroed. out is owned
 * by the caller: release it with address_free() (safe on a zeroed out).
 */
int address_parse_mailbox(struct address *out, const char *text, struct tm_err *err);

/*
 * Write the addr-spec ("local@domain", or "local" when unqualified, "" for
 * the null sender) into out[size]. Returns 0, or -1 when it did not fit.
 */
int address_spec(const struct address *a, char *out, size_t size);

/*
 * Check that spec is usable as an envelope address: no CR, LF, NUL, space
 * or angle bracket outside a quoted local part, valid UTF-8, local part at
 * most 64 and domain at most 255 octets, the whole at most 256 octets.
 * Precisely: address_parse_mailbox() must read it and address_spec() must
 * give it back byte for byte, so no comment, display name or obsolete form
 * passes. Unqualified names ("root") pass; "" and "<>" do not (the null
 * sender is not an address). Returns 0, or -1 with err (TM_ERR_DATA,
 * EX_DATAERR) set to `invalid address "SPEC": REASON`.
 */
int address_check_spec(const char *spec, struct tm_err *err);

/* true if a and b name the same mailbox (ASCII case-insensitive, RFC 5321
   says the domain is and every provider tokenmail targets treats the local
   part that way too). */
bool address_spec_equal(const char *a, const char *b);

/*
 * Format a mailbox for a header: `Display Name <spec>`, quoting the display
 * name when it holds anything but atoms (non-ASCII UTF-8 counts as atom text,
 * RFC 6532); just `spec` when display is NULL or empty. The display name may
 * come from anywhere (-F): control characters, CR and LF included, become
 * spaces and invalid UTF-8 becomes '?', so the result is always one line.
 * spec should have passed address_check_spec(). -1 if it did not fit, or if
 * spec holds CR or LF.
 */
int address_format_mailbox(const char *display, const char *spec, char *out,
    size_t size);

/* Deep copy a into list. */
void address_list_add(struct address_list *list, const struct address *a);
/* Append an unqualified or qualified spec with no display name, split at
   the last '@' outside quotes. spec is not checked: pass one that passed
   address_check_spec() (or "" for the null sender). */
void address_list_add_spec(struct address_list *list, const char *spec);
/* Index of the first item whose spec equals spec (address_spec_equal), or -1. */
long address_list_find(const struct address_list *list, const char *spec);

void address_free(struct address *a);
void address_list_free(struct address_list *list);

#endif
