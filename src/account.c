/*
 * account.c: sender -> account, envelope sender, From: action; recipients
 * -> qualified envelope recipients (SPEC section 4).
 */
#include <fnmatch.h>
#include <stdio.h>
#include <string.h>

#include "account.h"
#include "aliases.h"
#include "log.h"
#include "util.h"

static bool
sender_pattern_matches(const char *pattern, const char *addr)
{
	if (strchr(pattern, '*') == NULL)
		return address_spec_equal(pattern, addr);
	return fnmatch(pattern, addr, FNM_CASEFOLD) == 0;
}

bool
account_may_send_as(const struct account *a, const char *addr)
{
	size_t i;

	for (i = 0; i < a->nsenders; i++)
		if (sender_pattern_matches(a->senders[i], addr))
			return true;
	return false;
}

static const struct account *
account_by_exact_sender(const struct config *cfg, const char *addr)
{
	size_t i, j;

	for (i = 0; i < cfg->naccounts; i++)
		for (j = 0; j < cfg->accounts[i].nsenders; j++)
			if (strchr(cfg->accounts[i].senders[j], '*') == NULL &&
			    address_spec_equal(cfg->accounts[i].senders[j], addr))
				return &cfg->accounts[i];
	return NULL;
}

/* The account whose matching wildcard pattern is longest (the most specific). */
static const struct account *
account_by_wildcard(const struct config *cfg, const char *addr)
{
	const struct account *best = NULL;
	size_t best_len = 0, i, j;

	for (i = 0; i < cfg->naccounts; i++) {
		for (j = 0; j < cfg->accounts[i].nsenders; j++) {
			const char *pattern = cfg->accounts[i].senders[j];

			if (strchr(pattern, '*') && strlen(pattern) > best_len &&
			    fnmatch(pattern, addr, FNM_CASEFOLD) == 0) {
				best = &cfg->accounts[i];
				best_len = strlen(pattern);
			}
		}
	}
	return best;
}

static int
account_for_sender(const struct config *cfg, const char *addr,
    const struct account **out, struct tm_err *err)
{
	*out = account_by_exact_sender(cfg, addr);
	if (*out == NULL)
		*out = account_by_wildcard(cfg, addr);
	if (*out == NULL && cfg->default_account)
		*out = config_account(cfg, cfg->default_account);
	if (*out != NULL)
		return 0;
	tm_err_set(err, TM_ERR_PERM, EX_NOPERM, "no account may send as '%s'", addr);
	tm_err_hint(err, "add it to the senders: of an account in %s, or set default_account",
	    cfg->path ? cfg->path : "the configuration");
	return -1;
}

static bool
caller_in_group(const struct caller *c, const char *group)
{
	size_t i;

	for (i = 0; i < c->ngroups; i++)
		if (strcmp(c->groups[i], group) == 0)
			return true;
	return false;
}

int
account_check_caller(const struct account *a, const struct caller *c,
    struct tm_err *err)
{
	size_t i;

	if (a->nallowed_users == 0)
		return 0;
	for (i = 0; i < a->nallowed_users; i++) {
		const char *entry = a->allowed_users[i];

		if (entry[0] == '%' ? caller_in_group(c, entry + 1) :
		    (c->login && strcmp(entry, c->login) == 0))
			return 0;
	}
	tm_err_set(err, TM_ERR_PERM, EX_NOPERM, "user '%s' may not send through account '%s'",
	    c->login ? c->login : "?", a->name);
	tm_err_hint(err, "add the user (or \"%%group\") to the account's allowed_users");
	return -1;
}

/* The first address of the From: header into out; -1 if there is none usable. */
static int
from_header_address(const struct message *m, long index, struct address *out)
{
	const struct header_field *f;
	struct address_list list = { 0 };
	struct tm_err ignored;
	int rc = -1;

	if (index < 0)
		return -1;
	f = &m->fields[index];
	if (address_list_parse(&list, f->value, strlen(f->value), &ignored) == 0 &&
	    list.count > 0) {
		*out = list.items[0];
		memset(&list.items[0], 0, sizeof(list.items[0]));
		rc = 0;
	}
	address_list_free(&list);
	return rc;
}

int
account_parse_envelope(const char *opt, char *spec, size_t size, struct tm_err *err)
{
	struct address a = { 0 };
	int rc = -1;

	if (address_parse_mailbox(&a, opt, err) < 0)
		goto out;
	if (address_spec(&a, spec, size) < 0)
		tm_err_set(err, TM_ERR_DATA, EX_DATAERR, "invalid address: too long");
	else if (spec[0] == '\0' || address_check_spec(spec, err) == 0)
		rc = 0;
out:
	if (rc < 0) {
		tm_err_prefix(err, "-f");
		err->cls = TM_ERR_USAGE;
		err->exit = EX_USAGE;
	}
	address_free(&a);
	return rc;
}

/* A display name safe for a header: control bytes become spaces. */
static void
clean_display(char *out, size_t size, const char *in)
{
	size_t i;

	if (in == NULL)
		in = "";
	(void)str_copy(out, size, in);
	for (i = 0; out[i]; i++)
		if ((unsigned char)out[i] < 0x20 || out[i] == 0x7f)
			out[i] = ' ';
}

/* The GECOS full name is the part before the first comma. */
static void
gecos_name(char *out, size_t size, const char *gecos)
{
	size_t n = gecos ? strcspn(gecos, ",") : 0;

	(void)str_copy_n(out, size, gecos ? gecos : "", n < size ? n : size - 1);
	clean_display(out, size, out);
}

static void
set_from_value(struct sender *s, const char *display, const char *spec)
{
	if (address_format_mailbox(display, spec, s->from_value, sizeof(s->from_value)) < 0)
		(void)address_format_mailbox(NULL, spec, s->from_value, sizeof(s->from_value));
}

/* The address the message goes out as: the envelope sender when the account
   may send as it, else the account's from. */
static const char *
sending_address(const struct sender *s)
{
	if (s->envelope[0] && account_may_send_as(s->account, s->envelope))
		return s->envelope;
	return s->account->from;
}

static void
decide_from(struct sender *s, const struct sender_input *in, const struct caller *c,
    long index, const struct address *hdr)
{
	const struct account *a = s->account;
	char display[TM_DISPLAY_MAX];
	char spec[TM_ADDRESS_MAX + 1] = "";

	if (index < 0) {
		if (in->full_name_opt)
			clean_display(display, sizeof(display), in->full_name_opt);
		else
			gecos_name(display, sizeof(display), c->full_name);
		s->from_action = FROM_ADD;
		set_from_value(s, display, sending_address(s));
		return;
	}
	if (hdr != NULL)
		(void)address_spec(hdr, spec, sizeof(spec));
	if (a->rewrite_from == REWRITE_FROM_NEVER ||
	    (a->rewrite_from == REWRITE_FROM_AUTO && hdr != NULL && account_may_send_as(a, spec)))
		return;
	if (hdr == NULL)
		log_warn("cannot parse the From: header; it is replaced");
	clean_display(display, sizeof(display),
	    hdr == NULL ? NULL : hdr->display ? hdr->display : hdr->comment);
	s->from_action = FROM_REWRITE;
	s->from_index = (size_t)index;
	/* always: the account's own mailbox, whatever the sender may use. */
	set_from_value(s, display, a->rewrite_from == REWRITE_FROM_ALWAYS ? a->from :
	    sending_address(s));
}

static int
pick_candidate(const struct sender_input *in, const struct caller *c,
    const struct address *hdr, struct sender *s, bool *null_sender, struct tm_err *err)
{
	*null_sender = false;
	if (in->envelope_opt) {
		if (account_parse_envelope(in->envelope_opt, s->candidate, sizeof(s->candidate), err) < 0)
			return -1;
		*null_sender = s->candidate[0] == '\0';
		if (!*null_sender)
			return 0;
	}
	if (hdr != NULL && address_spec(hdr, s->candidate, sizeof(s->candidate)) == 0 &&
	    s->candidate[0])
		return 0;
	if (str_copy(s->candidate, sizeof(s->candidate), c->login ? c->login : "") < 0 ||
	    s->candidate[0] == '\0')
		return tm_err_set(err, TM_ERR_DATA, EX_DATAERR,
		    "cannot tell who sends: no -f, no From: and no login name");
	return 0;
}

int
account_resolve_sender(const struct config *cfg, const struct caller *c,
    const struct sender_input *in, struct sender *out, struct tm_err *err)
{
	struct address hdr = { 0 };
	long index = in->message ? message_find(in->message, "From", 0) : -1;
	bool have_hdr = in->message && from_header_address(in->message, index, &hdr) == 0;
	bool null_sender;
	int rc = -1;

	memset(out, 0, sizeof(*out));
	if (pick_candidate(in, c, have_hdr ? &hdr : NULL, out, &null_sender, err) < 0)
		goto out;
	if (account_for_sender(cfg, out->candidate, &out->account, err) < 0 ||
	    account_check_caller(out->account, c, err) < 0)
		goto out;
	if (null_sender)
		out->envelope[0] = '\0';
	else if (account_may_send_as(out->account, out->candidate))
		(void)str_copy(out->envelope, sizeof(out->envelope), out->candidate);
	else
		(void)str_copy(out->envelope, sizeof(out->envelope), out->account->from);
	decide_from(out, in, c, index, have_hdr ? &hdr : NULL);
	rc = 0;
out:
	address_free(&hdr);
	return rc;
}

static bool
is_local_domain(const char *domain, const char *const *local_domains)
{
	size_t i;

	if (domain == NULL)
		return true;
	for (i = 0; local_domains && local_domains[i]; i++)
		if (str_eq_nocase(domain, local_domains[i]))
			return true;
	return false;
}

static int
add_recipient(struct address_list *out, const char *spec, struct tm_err *err)
{
	if (address_list_find(out, spec) >= 0)
		return 0;
	if (out->count >= TM_RECIPIENTS_MAX)
		return tm_err_set(err, TM_ERR_USAGE, EX_USAGE,
		    "too many recipients (more than %d)", TM_RECIPIENTS_MAX);
	if (address_check_spec(spec, err) < 0)
		return -1;
	address_list_add_spec(out, spec);
	return 0;
}

static int
resolve_local(const struct config *cfg, const char *name, struct address_list *out,
    struct tm_err *err)
{
	struct address_list expanded = { 0 };
	size_t i;
	int rc = -1;

	if (aliases_resolve(&cfg->aliases, name, &expanded, err) < 0)
		goto out;
	for (i = 0; i < expanded.count; i++) {
		char spec[TM_ADDRESS_MAX + 1];

		if (address_spec(&expanded.items[i], spec, sizeof(spec)) < 0 ||
		    add_recipient(out, spec, err) < 0)
			goto out;
	}
	rc = 0;
out:
	address_list_free(&expanded);
	return rc;
}

int
account_resolve_recipients(const struct config *cfg, const struct address_list *in,
    const char *const *local_domains, struct address_list *out, struct tm_err *err)
{
	size_t i;

	for (i = 0; i < in->count; i++) {
		const struct address *a = &in->items[i];
		char spec[TM_ADDRESS_MAX + 1];

		if (is_local_domain(a->domain, local_domains)) {
			if (resolve_local(cfg, a->local, out, err) < 0)
				return -1;
			continue;
		}
		if (address_spec(a, spec, sizeof(spec)) < 0)
			return tm_err_set(err, TM_ERR_DATA, EX_DATAERR, "recipient address too long");
		if (add_recipient(out, spec, err) < 0)
			return -1;
	}
	return 0;
}
