/*
 * envelope.c: the header's recipients made equal to the envelope
 * (envelope.h). Without it Graph would deliver to a "To: alice" that the
 * caller never named as a recipient, and would never deliver to a
 * recipient given only on the command line.
 */
#include <stdlib.h>
#include <string.h>

#include "account.h"
#include "envelope.h"
#include "log.h"
#include "tm_limits.h"
#include "util.h"

#define MAILBOX_TEXT_MAX	(TM_DISPLAY_MAX + TM_ADDRESS_MAX + 8)

/* The formatted mailboxes a rewritten field will hold. */
struct items {
	char **v;
	size_t n, cap;
};

static void
items_add(struct items *it, const char *display, const char *spec)
{
	char text[MAILBOX_TEXT_MAX];

	if (address_format_mailbox(display, spec, text, sizeof(text)) < 0 &&
	    address_format_mailbox(NULL, spec, text, sizeof(text)) < 0)
		return;
	if (it->n == it->cap) {
		it->cap = it->cap ? 2 * it->cap : 8;
		it->v = xreallocarray(it->v, it->cap, sizeof(*it->v));
	}
	it->v[it->n++] = xstrdup(text);
}

static void
items_free(struct items *it)
{
	size_t i;

	for (i = 0; i < it->n; i++)
		free(it->v[i]);
	free(it->v);
	memset(it, 0, sizeof(*it));
}

struct fit {
	const struct config *cfg;
	const char *const *local_domains;
	const struct address_list *rcpts;
	struct address_list shown;	/* envelope recipients named in To/Cc */
};

/* a resolved as a recipient would be; false if it is no envelope recipient. */
static bool
resolve_one(const struct fit *f, const struct address *a, struct address_list *out)
{
	struct address_list in = { 0 };
	struct tm_err ignored;
	bool ok;

	address_list_add(&in, a);
	tm_err_clear(&ignored);
	ok = account_resolve_recipients(f->cfg, &in, f->local_domains, out, &ignored) == 0;
	address_list_free(&in);
	return ok;
}

/* Envelope recipients a stands for, appended to it (each once per message);
   *same set when a is one of them exactly as written. */
static void
rewrite_one(struct fit *f, const struct address *a, struct items *it, bool *same)
{
	struct address_list out = { 0 };
	char spec[TM_ADDRESS_MAX + 1], orig[TM_ADDRESS_MAX + 1];
	size_t i;

	*same = false;
	if (!resolve_one(f, a, &out) || address_spec(a, orig, sizeof(orig)) < 0)
		goto done;
	for (i = 0; i < out.count; i++) {
		if (address_spec(&out.items[i], spec, sizeof(spec)) < 0 ||
		    address_list_find(f->rcpts, spec) < 0)
			continue;
		if (out.count == 1 && strcmp(spec, orig) == 0)
			*same = true;
		if (address_list_find(&f->shown, spec) >= 0)
			continue;
		address_list_add_spec(&f->shown, spec);
		items_add(it, out.count == 1 ? (a->display ? a->display : a->comment) : NULL,
		    spec);
	}
done:
	address_list_free(&out);
}

/* One To: or Cc: field: kept as it is, rewritten, or dropped. */
static void
fit_field(struct fit *f, struct message *m, size_t index)
{
	struct header_field *hf = &m->fields[index];
	struct address_list list = { 0 };
	struct items it = { 0 };
	struct tm_err err;
	bool all_same = true, same;
	size_t i;

	tm_err_clear(&err);
	if (address_list_parse(&list, hf->value, strlen(hf->value), &err) < 0) {
		log_trace("graph: %s: header cannot be parsed; it is removed", hf->name);
		all_same = false;
	}
	for (i = 0; i < list.count; i++) {
		rewrite_one(f, &list.items[i], &it, &same);
		all_same = all_same && same;
	}
	if (all_same && list.count > 0)
		;	/* byte for byte as received */
	else if (it.n == 0)
		message_drop_field(m, index);
	else
		message_set_address_field(m, (long)index, hf->name,
		    (const char *const *)it.v, it.n);
	items_free(&it);
	address_list_free(&list);
}

/* One Bcc: field for the envelope recipients To/Cc do not name. */
static void
add_bcc(struct fit *f, struct message *m)
{
	struct items it = { 0 };
	char spec[TM_ADDRESS_MAX + 1];
	size_t i;

	for (i = 0; i < f->rcpts->count; i++) {
		if (address_spec(&f->rcpts->items[i], spec, sizeof(spec)) == 0 &&
		    address_list_find(&f->shown, spec) < 0)
			items_add(&it, NULL, spec);
	}
	if (it.n > 0)
		message_set_address_field(m, -1, "Bcc", (const char *const *)it.v, it.n);
	items_free(&it);
}

void
envelope_fit_header(const struct config *cfg, const char *const *local_domains,
    const struct address_list *rcpts, struct message *m)
{
	struct fit f = { cfg, local_domains, rcpts, { 0 } };
	size_t i, n = m->nfields;

	for (i = 0; i < n; i++) {
		const struct header_field *hf = &m->fields[i];

		if (!hf->dropped && (str_eq_nocase(hf->name, "To") ||
		    str_eq_nocase(hf->name, "Cc")))
			fit_field(&f, m, i);
	}
	add_bcc(&f, m);
	address_list_free(&f.shown);
}
