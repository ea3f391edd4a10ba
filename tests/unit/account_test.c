/* account_test.c: sender -> account, envelope, From: action; recipients. */
#include <stdlib.h>
#include <string.h>

#include "account.h"
#include "tap.h"

static const char config_text[] =
    "aliases:\n"
    "  root: ops@example.com\n"
    "  postmaster: root\n"
    "  team: a@example.com, b@example.com\n"
    "default_account: app\n"
    "accounts:\n"
    "  app:\n"
    "    senders: [app@example.com, \"*@example.com\"]\n"
    "    from: app@example.com\n"
    "    tenant: t.example\n"
    "    client_id: c1\n"
    "    client_secret: s1\n"
    "  alerts:\n"
    "    senders: [\"*@alerts.example.com\"]\n"
    "    from: noreply@alerts.example.com\n"
    "    allowed_users: [alice, \"%mail\"]\n"
    "    tenant: t.example\n"
    "    client_id: c2\n"
    "    client_secret: s2\n"
    "  strict:\n"
    "    senders: [strict@example.org]\n"
    "    rewrite_from: always\n"
    "    tenant: t.example\n"
    "    client_id: c3\n"
    "    client_secret: s3\n"
    "  loose:\n"
    "    senders: [loose@example.org]\n"
    "    rewrite_from: never\n"
    "    tenant: t.example\n"
    "    client_id: c4\n"
    "    client_secret: s4\n";

static struct config cfg;
static const char *const no_groups[] = { NULL };
static const char *const mail_group[] = { "mail", NULL };

static const struct caller bob = { 1001, "bob", "Bob Builder,,,", no_groups, 0 };
static const struct caller alice = { 1002, "alice", "Alice Example", no_groups, 0 };
static const struct caller carol = { 1003, "carol", NULL, mail_group, 1 };

struct sender_case {
	const char *what;
	const struct caller *caller;
	const char *f_opt, *F_opt;
	const char *message;
	int rc;
	const char *account, *envelope;
	enum from_action action;
	const char *from_value;
	const char *error;
};

static const struct sender_case sender_cases[] = {
	{ "exact sender keeps From", &bob, "app@example.com", NULL, "From: App <app@example.com>\n\nx\n",
	  0, "app", "app@example.com", FROM_KEEP, "", NULL },
	{ "wildcard: longest pattern wins", &alice, "x@alerts.example.com", NULL, "From: x@alerts.example.com\n\nx\n",
	  0, "alerts", "x@alerts.example.com", FROM_KEEP, "", NULL },
	{ "short wildcard", &bob, NULL, NULL, "From: Someone <someone@example.com>\n\nx\n",
	  0, "app", "someone@example.com", FROM_KEEP, "", NULL },
	{ "unknown sender -> default account, its from", &bob, "x@elsewhere.example", NULL, "To: a@b.example\n\nx\n",
	  0, "app", "app@example.com", FROM_ADD, "Bob Builder <app@example.com>", NULL },
	{ "cron From rewritten, comment kept as name", &bob, NULL, NULL, "From: root (Cron Daemon)\n\nx\n",
	  0, "app", "app@example.com", FROM_REWRITE, "Cron Daemon <app@example.com>", NULL },
	{ "bare login name From rewritten", &bob, NULL, NULL, "From: nobody\n\nx\n",
	  0, "app", "app@example.com", FROM_REWRITE, "app@example.com", NULL },
	{ "display name kept on rewrite", &bob, NULL, NULL, "From: \"Web, Server\" <www-data@host.example>\n\nx\n",
	  0, "app", "app@example.com", FROM_REWRITE, "\"Web, Server\" <app@example.com>", NULL },
	{ "-F names the added From", &bob, NULL, "Backup Job", "Subject: x\n\nx\n",
	  0, "app", "app@example.com", FROM_ADD, "Backup Job <app@example.com>", NULL },
	{ "added From uses an allowed -f address", &alice, "job@alerts.example.com", NULL, "Subject: x\n\nx\n",
	  0, "alerts", "job@alerts.example.com", FROM_ADD, "Alice Example <job@alerts.example.com>", NULL },
	{ "login is the last candidate", &alice, NULL, NULL, "Subject: x\n\nx\n",
	  0, "app", "app@example.com", FROM_ADD, "Alice Example <app@example.com>", NULL },
	{ "null sender keeps <>, account from From", &bob, "<>", NULL, "From: strict@example.org\n\nx\n",
	  0, "strict", "", FROM_REWRITE, "strict@example.org", NULL },
	{ "rewrite_from: always", &bob, NULL, NULL, "From: Strict <strict@example.org>\n\nx\n",
	  0, "strict", "strict@example.org", FROM_REWRITE, "Strict <strict@example.org>", NULL },
	{ "rewrite_from: never", &bob, "loose@example.org", NULL, "From: root\n\nx\n",
	  0, "loose", "loose@example.org", FROM_KEEP, "", NULL },
	{ "allowed_users: listed login", &alice, "a@alerts.example.com", NULL, "\nx\n",
	  0, "alerts", "a@alerts.example.com", FROM_ADD, "Alice Example <a@alerts.example.com>", NULL },
	{ "allowed_users: %group", &carol, "a@alerts.example.com", NULL, "\nx\n",
	  0, "alerts", "a@alerts.example.com", FROM_ADD, "a@alerts.example.com", NULL },
	{ "allowed_users: refused", &bob, "a@alerts.example.com", NULL, "\nx\n",
	  -1, NULL, NULL, FROM_KEEP, NULL, "user 'bob' may not send through account 'alerts'" },
	{ "-f with CR/LF refused", &bob, "a@example.com\r\nRCPT TO:<x@y>", NULL, "\nx\n",
	  -1, NULL, NULL, FROM_KEEP, NULL, NULL },
};

static void
run_sender_case(const struct sender_case *c)
{
	struct message m;
	struct intake_params p = { .dot_ends = true, .max_size = 1 << 20, .idle_seconds = 5 };
	struct sender_input in = { c->f_opt, c->F_opt, &m };
	struct sender s;
	struct tm_err err;
	int rc;

	tm_err_clear(&err);
	message_init(&m);
	if (message_parse_buffer(c->message, strlen(c->message), &p, &m, &err) < 0) {
		tap_ok(0, "%s: message parses (%s)", c->what, err.msg);
		return;
	}
	rc = account_resolve_sender(&cfg, c->caller, &in, &s, &err);
	tap_is_int(rc, c->rc, "%s: result", c->what);
	if (rc == 0) {
		tap_is_str(s.account->name, c->account, "%s: account", c->what);
		tap_is_str(s.envelope, c->envelope, "%s: envelope", c->what);
		tap_is_int(s.from_action, c->action, "%s: From action", c->what);
		if (c->action != FROM_KEEP)
			tap_is_str(s.from_value, c->from_value, "%s: From value", c->what);
	} else if (c->error) {
		tap_is_str(err.msg, c->error, "%s: error", c->what);
		tap_is_int(err.exit, EX_NOPERM, "%s: exit code", c->what);
	} else {
		tap_ok(err.exit == EX_USAGE || err.exit == EX_DATAERR, "%s: exit %d", c->what, err.exit);
	}
	message_free(&m);
}

static void
test_no_account(void)
{
	static const char text[] =
	    "accounts:\n  only:\n    senders: [only@example.com]\n"
	    "    tenant: t\n    client_id: c\n    client_secret: s\n";
	struct config_params params = { .home = NULL };
	struct config c2;
	struct sender_input in = { "x@example.net", NULL, NULL };
	struct sender s;
	struct tm_err err;

	tm_err_clear(&err);
	if (config_parse_buffer("t.yaml", text, sizeof(text) - 1, &params, &c2, &err) < 0) {
		tap_ok(0, "no-account config parses: %s", err.msg);
		config_free(&c2);
		return;
	}
	tap_is_int(account_resolve_sender(&c2, &bob, &in, &s, &err), -1, "no account: refused");
	tap_is_str(err.msg, "no account may send as 'x@example.net'", "no account: message");
	tap_is_int(err.exit, EX_NOPERM, "no account: EX_NOPERM");
	config_free(&c2);
}

struct rcpt_case {
	const char *what;
	const char *list;
	int rc;
	const char *want;	/* specs joined by ' ' */
	int exit;
};

static const struct rcpt_case rcpt_cases[] = {
	{ "qualified pass through", "a@example.com, B <b@example.org>", 0, "a@example.com b@example.org", 0 },
	{ "alias", "root", 0, "ops@example.com", 0 },
	{ "alias chain", "postmaster", 0, "ops@example.com", 0 },
	{ "alias to a list", "team", 0, "a@example.com b@example.com", 0 },
	{ "localhost is local", "root@localhost", 0, "ops@example.com", 0 },
	{ "this host is local", "root@vm.example.net", 0, "ops@example.com", 0 },
	{ "short host name is local", "root@vm", 0, "ops@example.com", 0 },
	{ "duplicates dropped, case folded", "a@example.com, A@EXAMPLE.COM, team", 0, "a@example.com b@example.com", 0 },
	{ "unknown local name", "nobody", -1, NULL, EX_NOUSER },
};

static void
run_rcpt_case(const struct rcpt_case *c)
{
	static const char *const local[] = { "localhost", "vm.example.net", "vm", NULL };
	struct address_list in = { 0 }, out = { 0 };
	struct tm_err err;
	char joined[512] = "";
	size_t i;
	int rc;

	tm_err_clear(&err);
	if (address_list_parse(&in, c->list, strlen(c->list), &err) < 0) {
		tap_ok(0, "%s: list parses (%s)", c->what, err.msg);
		return;
	}
	rc = account_resolve_recipients(&cfg, &in, local, &out, &err);
	tap_is_int(rc, c->rc, "%s: result", c->what);
	for (i = 0; i < out.count; i++) {
		char spec[TM_ADDRESS_MAX + 1];

		address_spec(&out.items[i], spec, sizeof(spec));
		if (i)
			strncat(joined, " ", sizeof(joined) - strlen(joined) - 1);
		strncat(joined, spec, sizeof(joined) - strlen(joined) - 1);
	}
	if (rc == 0)
		tap_is_str(joined, c->want, "%s: recipients", c->what);
	else
		tap_is_int(err.exit, c->exit, "%s: exit code", c->what);
	address_list_free(&in);
	address_list_free(&out);
}

static void
test_too_many(void)
{
	struct address_list in = { 0 }, out = { 0 };
	struct tm_err err;
	char spec[64];
	int i;

	for (i = 0; i <= TM_RECIPIENTS_MAX; i++) {
		snprintf(spec, sizeof(spec), "r%d@example.com", i);
		address_list_add_spec(&in, spec);
	}
	tap_is_int(account_resolve_recipients(&cfg, &in, NULL, &out, &err), -1, "too many recipients refused");
	tap_is_int(err.exit, EX_USAGE, "too many recipients: EX_USAGE");
	address_list_free(&in);
	address_list_free(&out);
}

int
main(void)
{
	struct config_params params = { .home = NULL };
	struct tm_err err;
	size_t i;

	tm_err_clear(&err);
	if (config_parse_buffer("test.yaml", config_text, sizeof(config_text) - 1, &params, &cfg, &err) < 0) {
		tap_ok(0, "test config parses: %s", err.msg);
		return tap_done();
	}
	for (i = 0; i < sizeof(sender_cases) / sizeof(sender_cases[0]); i++)
		run_sender_case(&sender_cases[i]);
	test_no_account();
	for (i = 0; i < sizeof(rcpt_cases) / sizeof(rcpt_cases[0]); i++)
		run_rcpt_case(&rcpt_cases[i]);
	test_too_many();
	config_free(&cfg);
	return tap_done();
}
