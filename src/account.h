/*
 * account.h: who sends and to whom (SPEC section 4). Picks the account for
 * the sender, checks allowed_users, decides the envelope sender and what
 * happens to the From: header, and turns recipients into qualified
 * addresses through the aliases. Pure: everything about the calling user
 * and the host arrives in the parameters, so tests drive it directly.
 */
#ifndef TM_ACCOUNT_H
#define TM_ACCOUNT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "address.h"
#include "config.h"
#include "err.h"
#include "message.h"
#include "tm_limits.h"

/* The user who runs tokenmail (gathered by main from the real uid). */
struct caller {
	uid_t uid;
	const char *login;		/* login name of the real uid */
	const char *full_name;		/* GECOS full name, or NULL */
	const char *const *groups;	/* names of the real uid's groups */
	size_t ngroups;
};

struct sender_input {
	const char *envelope_opt;	/* -f/-r as given, or NULL */
	const char *full_name_opt;	/* -F, or NULL */
	const struct message *message;	/* for its From: */
};

enum from_action {
	FROM_KEEP,	/* the From: header stays as it is */
	FROM_ADD,	/* no From: header: add from_value */
	FROM_REWRITE	/* replace field from_index with from_value */
};

struct sender {
	const struct account *account;	/* points into the config */
	char candidate[TM_ADDRESS_MAX + 1];	/* the sender the account was chosen for */
	char envelope[TM_ADDRESS_MAX + 1];	/* MAIL FROM; "" is the null sender <> */
	enum from_action from_action;
	size_t from_index;		/* field to replace, for FROM_REWRITE */
	char from_value[TM_DISPLAY_MAX + TM_ADDRESS_MAX + 8];
};

/*
 * Resolve the sender: candidate (-f, else the first From: address, else
 * the caller's login), account (exact sender > longest wildcard >
 * default_account), allowed_users against the caller, envelope sender and
 * From: action. Returns 0, or -1 with err: EX_NOPERM (no account for the
 * sender, caller not allowed), EX_DATAERR (unparsable -f or From:).
 */
int account_resolve_sender(const struct config *cfg, const struct caller *c,
    const struct sender_input *in, struct sender *out, struct tm_err *err);

/*
 * Parse a -f/-r argument ("a@b", "<a@b>", "Name <a@b>", "<>") into spec[size]
 * ("" for the null sender). -1 with err (EX_USAGE) if it is not one valid
 * address: main checks it before reading the message.
 */
int account_parse_envelope(const char *opt, char *spec, size_t size, struct tm_err *err);

/* true if addr matches one of a's senders (exact, or a wildcard pattern). */
bool account_may_send_as(const struct account *a, const char *addr);

/* 0 if the caller may use a (allowed_users), else -1 with err (EX_NOPERM). */
int account_check_caller(const struct account *a, const struct caller *c,
    struct tm_err *err);

/*
 * Turn recipients into envelope recipients appended to out: qualified
 * addresses pass as they are; unqualified names, and addresses whose domain
 * is one of local_domains (NULL-terminated, e.g. "localhost" and the host's
 * name), go through the aliases. Duplicates are dropped, order kept.
 * Returns 0, or -1 with err: EX_NOUSER naming a local name with no alias,
 * EX_DATAERR for an address unusable in an envelope, EX_USAGE when more
 * than TM_RECIPIENTS_MAX.
 */
int account_resolve_recipients(const struct config *cfg, const struct address_list *in,
    const char *const *local_domains, struct address_list *out, struct tm_err *err);

#endif
