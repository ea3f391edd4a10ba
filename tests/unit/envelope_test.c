/*
 * envelope_test.c: the header's To/Cc/Bcc made equal to the envelope
 * recipients (envelope.h). Each case parses a message, computes the
 * envelope as main does (-t: the header's recipients; then the command-line
 * ones; all through account_resolve_recipients), drops Bcc, fits the header
 * and compares the header exactly as message_write_header writes it.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "account.h"
#include "envelope.h"
#include "tm_limits.h"
#include "util.h"
#include "tap.h"

static const char config_text[] =
    "aliases:\n"
    "  root: ops@example.com\n"
    "  team: [a@example.com, b@example.com]\n"
    "default_account: app\n"
    "accounts:\n"
    "  app:\n"
    "    senders: [\"*@example.com\"]\n"
    "    from: app@example.com\n"
    "    tenant: t.example\n"
    "    client_id: c1\n"
    "    client_secret: s1\n";

static struct config cfg;
static const char *const local_domains[] = { "localhost", "host.example", NULL };

struct fit_case {
	const char *what;
	const char *in;		/* the message (LF line ends are fine) */
	bool t;			/* -t: the header's recipients are envelope ones */
	const char *args;	/* command-line recipients, or NULL */
	const char *want;	/* the header as written, empty line included */
};

static const struct fit_case cases[] = {
	{ "-t: To and Cc kept byte for byte, Bcc recipients in one added Bcc",
	  "From: me@example.com\nTo: Alice <a@example.com>,\n  b@example.com\n"
	  "Cc: \"Carol, C.\" <c@example.com>\nBcc: d@example.com, Eve <e@example.com>\n"
	  "Subject: s\n\nbody\n", true, NULL,
	  "From: me@example.com\r\nTo: Alice <a@example.com>,\r\n  b@example.com\r\n"
	  "Cc: \"Carol, C.\" <c@example.com>\r\nSubject: s\r\n"
	  "Bcc: d@example.com,\r\n e@example.com\r\n\r\n" },
	{ "-t: two Bcc fields give one added Bcc",
	  "To: a@example.com\nBcc: d@example.com\nBcc: e@example.com\n\nx\n", true, NULL,
	  "To: a@example.com\r\nBcc: d@example.com,\r\n e@example.com\r\n\r\n" },
	{ "-t: nothing to add",
	  "To: a@example.com\nCc: b@example.com\n\nx\n", true, NULL,
	  "To: a@example.com\r\nCc: b@example.com\r\n\r\n" },
	{ "command-line recipient not in the header goes to Bcc",
	  "To: a@example.com\nSubject: s\n\nx\n", false, "a@example.com, z@example.org",
	  "To: a@example.com\r\nSubject: s\r\nBcc: z@example.org\r\n\r\n" },
	{ "no To at all: everything in Bcc",
	  "Subject: s\n\nx\n", false, "a@example.com, root",
	  "Subject: s\r\nBcc: a@example.com,\r\n ops@example.com\r\n\r\n" },
	{ "no header at all",
	  "hello\n", false, "a@example.com",
	  "Bcc: a@example.com\r\n\r\n" },
	{ "header address that is no recipient removed, display names kept",
	  "To: Alice <a@example.com>, Bob <b@example.com>, \"C, See\" <c@example.com>\n\nx\n",
	  false, "a@example.com, c@example.com",
	  "To: Alice <a@example.com>,\r\n \"C, See\" <c@example.com>\r\n\r\n" },
	{ "removal in Cc, To untouched",
	  "To: a@example.com\nCc: b@example.com, x@example.net\nSubject: s\n\nx\n",
	  false, "a@example.com, b@example.com",
	  "To: a@example.com\r\nCc: b@example.com\r\nSubject: s\r\n\r\n" },
	{ "field with only non-recipients removed",
	  "To: a@example.com\nCc: x@example.net, Y <y@example.net>\nSubject: s\n\nx\n",
	  false, "a@example.com",
	  "To: a@example.com\r\nSubject: s\r\n\r\n" },
	{ "every field removed: recipients in Bcc",
	  "To: x@example.net\nCc: y@example.net\n\nx\n", false, "a@example.com",
	  "Bcc: a@example.com\r\n\r\n" },
	{ "To: root becomes the alias target",
	  "To: root\nSubject: cron\n\nx\n", false, "root",
	  "To: ops@example.com\r\nSubject: cron\r\n\r\n" },
	{ "To: root with -t",
	  "To: root\nSubject: cron\n\nx\n", true, NULL,
	  "To: ops@example.com\r\nSubject: cron\r\n\r\n" },
	{ "local domain address: display name kept",
	  "To: Root <root@localhost>\n\nx\n", false, "root",
	  "To: Root <ops@example.com>\r\n\r\n" },
	{ "host name is a local domain, comment becomes the display name",
	  "To: root@host.example (Cron Daemon)\n\nx\n", false, "root",
	  "To: Cron Daemon <ops@example.com>\r\n\r\n" },
	{ "local name among others",
	  "To: Alice <a@example.com>, root\n\nx\n", false, "a@example.com, root",
	  "To: Alice <a@example.com>,\r\n ops@example.com\r\n\r\n" },
	{ "To: team gives both addresses",
	  "To: team\n\nx\n", false, "team",
	  "To: a@example.com,\r\n b@example.com\r\n\r\n" },
	{ "To: Team <team@localhost>: a list loses the display name",
	  "To: Team <team@localhost>\n\nx\n", true, NULL,
	  "To: a@example.com,\r\n b@example.com\r\n\r\n" },
	{ "alias target only partly a recipient",
	  "To: team\n\nx\n", false, "b@example.com",
	  "To: b@example.com\r\n\r\n" },
	{ "UTF-8 display name kept on rewrite",
	  "To: J\xc3\xb6s\xc3\xa9 <a@example.com>, x@example.net\n\nx\n", false, "a@example.com",
	  "To: J\xc3\xb6s\xc3\xa9 <a@example.com>\r\n\r\n" },
	{ "encoded-word display name kept unquoted on rewrite",
	  "To: =?UTF-8?Q?J=C3=B6s=C3=A9?= <a@example.com>, x@example.net\n\nx\n", false,
	  "a@example.com",
	  "To: =?UTF-8?Q?J=C3=B6s=C3=A9?= <a@example.com>\r\n\r\n" },
	{ "-t: Bcc recipient also in To: no Bcc added",
	  "To: a@example.com\nBcc: a@example.com\n\nx\n", true, NULL,
	  "To: a@example.com\r\n\r\n" },
	{ "local-domain alias in Cc already in To: Cc dropped",
	  "To: root\nCc: Root <root@localhost>\n\nx\n", true, NULL,
	  "To: ops@example.com\r\n\r\n" },
	{ "unknown local name removed",
	  "To: nobody, a@example.com\n\nx\n", false, "a@example.com",
	  "To: a@example.com\r\n\r\n" },
	{ "same address in To and Cc: Cc kept as it is",
	  "To: a@example.com\nCc: a@example.com, b@example.com\n\nx\n", false,
	  "a@example.com, b@example.com",
	  "To: a@example.com\r\nCc: a@example.com, b@example.com\r\n\r\n" },
	{ "two To fields (logwatch) kept",
	  "To: a@example.com\nTo: b@example.com\n\nx\n", true, NULL,
	  "To: a@example.com\r\nTo: b@example.com\r\n\r\n" },
	{ "duplicate in a rewritten field not repeated",
	  "To: root\nCc: ops@example.com, x@example.net\n\nx\n", false, "root",
	  "To: ops@example.com\r\n\r\n" },
	{ "duplicate in one rewritten field not repeated",
	  "To: root, Ops <ops@example.com>, x@example.net\n\nx\n", false, "root",
	  "To: ops@example.com\r\n\r\n" },
	{ "case differs from the envelope: kept byte for byte",
	  "To: Alice <A@Example.COM>\n\nx\n", false, "a@example.com",
	  "To: Alice <A@Example.COM>\r\n\r\n" },
	{ "empty To: dropped",
	  "To:\nCc: a@example.com\n\nx\n", false, "a@example.com",
	  "Cc: a@example.com\r\n\r\n" },
	{ "blank To: dropped, recipient in Bcc",
	  "To:   \nSubject: s\n\nx\n", false, "a@example.com",
	  "Subject: s\r\nBcc: a@example.com\r\n\r\n" },
	{ "undisclosed-recipients:; dropped",
	  "To: undisclosed-recipients:;\nSubject: s\n\nx\n", false, "a@example.com",
	  "Subject: s\r\nBcc: a@example.com\r\n\r\n" },
	{ "group with a recipient: rewritten without the group",
	  "To: Friends: a@example.com, x@example.net;\n\nx\n", false, "a@example.com",
	  "To: a@example.com\r\n\r\n" },
	{ "group of recipients only: kept",
	  "To: Friends: a@example.com, b@example.com;\n\nx\n", false,
	  "a@example.com, b@example.com",
	  "To: Friends: a@example.com, b@example.com;\r\n\r\n" },
	{ "unparsable To dropped",
	  "To: <a@example.com\nSubject: s\n\nx\n", false, "a@example.com",
	  "Subject: s\r\nBcc: a@example.com\r\n\r\n" },
	{ "unparsable Cc dropped, To kept",
	  "To: a@example.com\nCc: b@@example.com\n\nx\n", false, "a@example.com",
	  "To: a@example.com\r\n\r\n" },
	{ "lower-case field names kept as received",
	  "to: root\ncc: x@example.net, b@example.com\n\nx\n", false, "root, b@example.com",
	  "to: ops@example.com\r\ncc: b@example.com\r\n\r\n" },
	{ "Resent-To and Resent-Cc left alone",
	  "Resent-To: x@example.net\nResent-Cc: root\nTo: a@example.com\n\nx\n", false,
	  "a@example.com",
	  "Resent-To: x@example.net\r\nResent-Cc: root\r\nTo: a@example.com\r\n\r\n" },
	{ "-t with Resent-To: the envelope is Resent-To, To fitted to it",
	  "Resent-To: x@example.net\nTo: a@example.com\n\nx\n", true, NULL,
	  "Resent-To: x@example.net\r\nBcc: x@example.net\r\n\r\n" },
	{ "Resent-Bcc dropped, not fitted",
	  "Resent-Bcc: y@example.net\nTo: a@example.com\n\nx\n", false, "a@example.com",
	  "To: a@example.com\r\n\r\n" },
	{ "other fields untouched",
	  "Reply-To: x@example.net\nFrom: root\nTo: a@example.com\n\nx\n", false,
	  "a@example.com",
	  "Reply-To: x@example.net\r\nFrom: root\r\nTo: a@example.com\r\n\r\n" },
};

static int
collect(void *ctx, const char *data, size_t len)
{
	return strbuf_append(ctx, data, len);
}

/* Parse and resolve a comma-separated list into out; -1 on error. */
static int
resolve_args(const char *args, struct address_list *out, struct tm_err *err)
{
	struct address_list in = { 0 };
	int rc;

	rc = address_list_parse(&in, args, strlen(args), err);
	if (rc == 0)
		rc = account_resolve_recipients(&cfg, &in, local_domains, out, err);
	address_list_free(&in);
	return rc;
}

/* The envelope as main builds it: -t recipients, then the arguments. */
static int
envelope_of(const struct message *m, bool t, const char *args, struct address_list *rcpts,
    struct tm_err *err)
{
	struct address_list hdr = { 0 };
	int rc = 0;

	if (t) {
		rc = message_header_recipients(m, &hdr, err);
		if (rc == 0)
			rc = account_resolve_recipients(&cfg, &hdr, local_domains, rcpts, err);
		address_list_free(&hdr);
	}
	if (rc == 0 && args != NULL)
		rc = resolve_args(args, rcpts, err);
	return rc;
}

/* The header after fitting, or NULL (a check failed). */
static char *
fitted(const char *what, const char *in, bool t, const char *args, size_t *nfields)
{
	struct intake_params p = { .dot_ends = true, .max_size = 0, .idle_seconds = 5 };
	struct address_list rcpts = { 0 };
	struct message m;
	struct tm_err err;
	struct strbuf b;
	char *out = NULL;

	message_init(&m);
	tm_err_clear(&err);
	strbuf_init(&b, 1024 * 1024);
	if (message_parse_buffer(in, strlen(in), &p, &m, &err) < 0 ||
	    envelope_of(&m, t, args, &rcpts, &err) < 0) {
		tap_ok(0, "%s: input accepted (%s)", what, err.msg);
		goto done;
	}
	message_drop_bcc(&m);
	envelope_fit_header(&cfg, local_domains, &rcpts, &m);
	if (message_write_header(&m, collect, &b) < 0) {
		tap_ok(0, "%s: header written", what);
		goto done;
	}
	if (nfields != NULL)
		*nfields = m.nfields;
	out = strbuf_take(&b);
done:
	strbuf_free(&b);
	address_list_free(&rcpts);
	message_free(&m);
	return out;
}

static void
run_case(const struct fit_case *c)
{
	char *got = fitted(c->what, c->in, c->t, c->args, NULL);

	if (got != NULL)
		tap_is_str(got, c->want, "%s", c->what);
	free(got);
}

/* true when every line of text (CRLF-separated) is at most 998 octets. */
static bool
lines_short(const char *text, size_t *longest)
{
	const char *p = text, *e;

	*longest = 0;
	while ((e = strstr(p, "\r\n")) != NULL) {
		if ((size_t)(e - p) > *longest)
			*longest = (size_t)(e - p);
		p = e + 2;
	}
	return *longest <= TM_HEADER_LINE_MAX && *p == '\0';
}

#define MANY 120

/* Many command-line recipients: one Bcc folded one address per line. */
static void
test_many_bcc(void)
{
	struct strbuf args, want;
	size_t longest = 0;
	bool short_ok;
	char *got;
	int i;

	strbuf_init(&args, 1 << 20);
	strbuf_init(&want, 1 << 20);
	(void)strbuf_append_str(&want, "To: a@example.com\r\nBcc: ");
	(void)strbuf_append_str(&args, "a@example.com");
	for (i = 0; i < MANY; i++) {
		(void)strbuf_appendf(&args, ", user%03d.with.a.long.local.part@sub%03d.example.com",
		    i, i);
		(void)strbuf_appendf(&want, "%suser%03d.with.a.long.local.part@sub%03d.example.com",
		    i ? ",\r\n " : "", i, i);
	}
	(void)strbuf_append_str(&want, "\r\n\r\n");
	got = fitted("many in Bcc", "To: a@example.com, x@example.net\n\nx\n", false, args.data,
	    NULL);
	if (got != NULL) {
		tap_is_str(got, want.data, "many in Bcc: folded one per line");
		short_ok = lines_short(got, &longest);
		tap_ok(short_ok, "many in Bcc: lines <= 998 (longest %zu)", longest);
	}
	free(got);
	strbuf_free(&args);
	strbuf_free(&want);
}

/* A long To: (folded in the input) that must be rewritten. */
static void
test_many_to(void)
{
	struct strbuf in, args, want;
	size_t longest = 0;
	bool short_ok;
	char *got;
	int i;

	strbuf_init(&in, 1 << 20);
	strbuf_init(&args, 1 << 20);
	strbuf_init(&want, 1 << 20);
	(void)strbuf_append_str(&in, "To: Not Me <x@example.net>");
	(void)strbuf_append_str(&want, "To: ");
	for (i = 0; i < MANY; i++) {
		(void)strbuf_appendf(&in, ",\n \"Person %03d, Some Department\" <p%03d@example.com>",
		    i, i);
		(void)strbuf_appendf(&args, "%sp%03d@example.com", i ? ", " : "", i);
		(void)strbuf_appendf(&want, "%s\"Person %03d, Some Department\" <p%03d@example.com>",
		    i ? ",\r\n " : "", i, i);
	}
	(void)strbuf_append_str(&in, "\nSubject: s\n\nx\n");
	(void)strbuf_append_str(&want, "\r\nSubject: s\r\n\r\n");
	got = fitted("many in To", in.data, false, args.data, NULL);
	if (got != NULL) {
		tap_is_str(got, want.data, "many in To: rewritten one per line");
		short_ok = lines_short(got, &longest);
		tap_ok(short_ok, "many in To: lines <= 998 (longest %zu)", longest);
	}
	free(got);
	strbuf_free(&in);
	strbuf_free(&args);
	strbuf_free(&want);
}

/* A display name longer than a line, folded in the input: when the field is
   rewritten no line may exceed 998 octets. */
static void
test_long_display(void)
{
	struct strbuf in;
	size_t longest = 0;
	bool short_ok;
	char *got;
	int i;

	strbuf_init(&in, 1 << 20);
	(void)strbuf_append_str(&in, "To: x@example.net,\n \"");
	for (i = 0; i < 30; i++)
		(void)strbuf_append_str(&in, "Very Long Display Name Part\n ");
	(void)strbuf_append_str(&in, "End\" <a@example.com>\n\nx\n");
	got = fitted("long display name", in.data, false, "a@example.com", NULL);
	if (got != NULL) {
		short_ok = lines_short(got, &longest);
		tap_ok(short_ok, "long display name: lines <= 998 (longest %zu)", longest);
		tap_ok(strstr(got, "<a@example.com>\r\n") != NULL ||
		    strncmp(got, "To: a@example.com\r\n", 19) == 0,
		    "long display name: address kept");
		tap_ok(strstr(got, "x@example.net") == NULL, "long display name: x removed");
	}
	free(got);
	strbuf_free(&in);
}

/* The fitted header names every envelope recipient once across To/Cc/Bcc
   and nothing else, checked by reading it back with -t rules. */
static void
test_read_back(void)
{
	static const char in[] =
	    "To: root, Alice <a@example.com>, x@example.net\nCc: team, y@example.net\n"
	    "Bcc: z@example.org\n\nx\n";
	struct intake_params p = { .dot_ends = true, .max_size = 0, .idle_seconds = 5 };
	struct address_list rcpts = { 0 }, back = { 0 };
	struct message m2;
	struct tm_err err;
	char *hdr;
	char spec[TM_ADDRESS_MAX + 1];
	bool ok = true;
	size_t i;

	hdr = fitted("read back", in, false, "root, a@example.com, b@example.com, c@example.org",
	    NULL);
	if (hdr == NULL)
		return;
	message_init(&m2);
	tm_err_clear(&err);
	(void)resolve_args("root, a@example.com, b@example.com, c@example.org", &rcpts, &err);
	if (message_parse_buffer(hdr, strlen(hdr), &p, &m2, &err) < 0 ||
	    message_header_recipients(&m2, &back, &err) < 0) {
		tap_ok(0, "read back: fitted header parses (%s)", err.msg);
		goto done;
	}
	tap_is_int((long)back.count, (long)rcpts.count, "read back: as many addresses as recipients");
	for (i = 0; i < back.count; i++) {
		if (address_spec(&back.items[i], spec, sizeof(spec)) < 0 ||
		    address_list_find(&rcpts, spec) < 0)
			ok = false;
	}
	tap_ok(ok, "read back: every address is an envelope recipient");
done:
	free(hdr);
	address_list_free(&rcpts);
	address_list_free(&back);
	message_free(&m2);
}

int
main(void)
{
	struct config_params params = { .home = NULL };
	struct tm_err err;
	size_t i;

	tm_err_clear(&err);
	if (config_parse_buffer("test.yaml", config_text, sizeof(config_text) - 1, &params, &cfg,
	    &err) < 0) {
		tap_ok(0, "test config parses: %s", err.msg);
		config_free(&cfg);
		return tap_done();
	}
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		run_case(&cases[i]);
	test_many_bcc();
	test_many_to();
	test_long_display();
	test_read_back();
	config_free(&cfg);
	return tap_done();
}
