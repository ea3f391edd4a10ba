/* cli_test.c: argv as real callers pass it -> struct invocation. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "tap.h"

#define MAXARGS 16

struct cli_case {
	const char *what;
	const char *argv[MAXARGS];	/* NULL-terminated */
	int rc;				/* 0 or -1 */
	enum tm_mode mode;
	bool t, i;
	const char *sender, *full_name;
	const char *args;		/* recipients joined by '|' */
	const char *error;		/* expected err.msg when rc == -1 */
};

static const struct cli_case cases[] = {
	{ "PHP mail() default", { "sendmail", "-t", "-i", NULL }, 0, MODE_SEND, true, true, NULL, NULL, "", NULL },
	{ "PHP with -f additional_params", { "/usr/sbin/sendmail", "-t", "-i", "-f", "bounce@example.com", NULL },
	  0, MODE_SEND, true, true, "bounce@example.com", NULL, "", NULL },
	{ "PHP with glued -f", { "sendmail", "-t", "-i", "-fbounce2@example.com", NULL },
	  0, MODE_SEND, true, true, "bounce2@example.com", NULL, "", NULL },
	{ "bsd-mailx -r", { "sendmail", "-i", "-t", "-f", "s@example.com", NULL },
	  0, MODE_SEND, true, true, "s@example.com", NULL, "", NULL },
	{ "s-nail with name", { "sendmail", "-i", "-F", "Sender", "-f", "s@example.com", "--", "c@example.com", NULL },
	  0, MODE_SEND, false, true, "s@example.com", "Sender", "c@example.com", NULL },
	{ "mutt with DSN and a dash recipient", { "sendmail", "-oem", "-oi", "-f", "me@example.com", "-N", "failure,delay", "-R", "hdrs", "--", "-dash@example.com", NULL },
	  0, MODE_SEND, false, true, "me@example.com", NULL, "-dash@example.com", NULL },
	{ "mutt 8bit", { "sendmail", "-oem", "-oi", "-B8BITMIME", "--", "a@example.com", "b@example.org", NULL },
	  0, MODE_SEND, false, true, NULL, NULL, "a@example.com|b@example.org", NULL },
	{ "git send-email, no --", { "sendmail", "-i", "to1@example.com", "cc1@example.com", "bcc1@example.com", NULL },
	  0, MODE_SEND, false, true, NULL, NULL, "to1@example.com|cc1@example.com|bcc1@example.com", NULL },
	{ "git send-email with envelope", { "sendmail", "-oi", "-f", "dev@example.com", "-i", "to2@example.com", NULL },
	  0, MODE_SEND, false, true, "dev@example.com", NULL, "to2@example.com", NULL },
	{ "Debian cron", { "/usr/sbin/sendmail", "-FCronDaemon", "-i", "-B8BITMIME", "-oem", "a@example.com,b@example.com", NULL },
	  0, MODE_SEND, false, true, NULL, "CronDaemon", "a@example.com,b@example.com", NULL },
	{ "cronie", { "/usr/sbin/sendmail", "-FCronDaemon", "-i", "-odi", "-oem", "-oi", "-t", "-f", "alice", NULL },
	  0, MODE_SEND, true, true, "alice", "CronDaemon", "", NULL },
	{ "sudo", { "sendmail", "-t", NULL }, 0, MODE_SEND, true, false, NULL, NULL, "", NULL },
	{ "mdadm glued -f", { "sendmail", "-t", "-fraid@host.example", NULL },
	  0, MODE_SEND, true, false, "raid@host.example", NULL, "", NULL },
	{ "unattended-upgrades", { "/usr/sbin/sendmail", "-oi", "-t", NULL }, 0, MODE_SEND, true, true, NULL, NULL, "", NULL },
	{ "grouped flags -ti", { "sendmail", "-ti", NULL }, 0, MODE_SEND, true, true, NULL, NULL, "", NULL },
	{ "-r is -f", { "sendmail", "-r", "x@example.com", "y@example.com", NULL },
	  0, MODE_SEND, false, false, "x@example.com", NULL, "y@example.com", NULL },
	{ "null sender", { "sendmail", "-f<>", "y@example.com", NULL }, 0, MODE_SEND, false, false, "<>", NULL, "y@example.com", NULL },
	{ "accepted no-ops", { "sendmail", "-oep", "-odb", "-h", "5", "-L", "tag", "-O", "A=B", "-U", "-G", "-m", "-n", "-x", "r@example.com", NULL },
	  0, MODE_SEND, false, false, NULL, NULL, "r@example.com", NULL },
	{ "unknown option warned, ignored", { "sendmail", "-Z", "--frobnicate", "r@example.com", NULL },
	  0, MODE_SEND, false, false, NULL, NULL, "r@example.com", NULL },
	{ "Exim's -oitrue", { "sendmail", "-oitrue", "r@example.com", NULL },
	  0, MODE_SEND, false, true, NULL, NULL, "r@example.com", NULL },
	{ "-oi=false does not ignore dots", { "sendmail", "-oi=false", "r@example.com", NULL },
	  0, MODE_SEND, false, false, NULL, NULL, "r@example.com", NULL },
	{ "-O IgnoreDots=true", { "sendmail", "-O", "IgnoreDots=true", "r@example.com", NULL },
	  0, MODE_SEND, false, true, NULL, NULL, "r@example.com", NULL },
	{ "unknown letter swallows its word", { "sendmail", "-Mfoo", "r@example.com", NULL },
	  0, MODE_SEND, false, false, NULL, NULL, "r@example.com", NULL },
	{ "options stop at first recipient", { "sendmail", "r@example.com", "-t", NULL },
	  0, MODE_SEND, false, false, NULL, NULL, "r@example.com|-t", NULL },
	{ "mailq by name", { "/usr/bin/mailq", NULL }, 0, MODE_MAILQ, false, false, NULL, NULL, "", NULL },
	{ "-bp", { "sendmail", "-bp", NULL }, 0, MODE_MAILQ, false, false, NULL, NULL, "", NULL },
	{ "newaliases by name", { "newaliases", NULL }, 0, MODE_NEWALIASES, false, false, NULL, NULL, "", NULL },
	{ "-bi", { "sendmail", "-bi", NULL }, 0, MODE_NEWALIASES, false, false, NULL, NULL, "", NULL },
	{ "-I", { "sendmail", "-I", NULL }, 0, MODE_NEWALIASES, false, false, NULL, NULL, "", NULL },
	{ "-q", { "sendmail", "-q", NULL }, 0, MODE_QUEUE_RUN, false, false, NULL, NULL, "", NULL },
	{ "-q30m", { "sendmail", "-q30m", NULL }, 0, MODE_QUEUE_RUN, false, false, NULL, NULL, "", NULL },
	{ "-bv root", { "sendmail", "-bv", "root", NULL }, 0, MODE_VERIFY, false, false, NULL, NULL, "root", NULL },
	{ "-bs", { "sendmail", "-bs", NULL }, 0, MODE_SMTP_SERVER, false, false, NULL, NULL, "", NULL },
	{ "--version", { "tokenmail", "--version", NULL }, 0, MODE_VERSION, false, false, NULL, NULL, "", NULL },
	{ "--help", { "sendmail", "--help", NULL }, 0, MODE_HELP, false, false, NULL, NULL, "", NULL },
	{ "tokenmail token", { "tokenmail", "token", "app", NULL }, 0, MODE_TOKEN, false, false, NULL, NULL, "", NULL },
	{ "tokenmail check", { "/usr/sbin/tokenmail", "check", NULL }, 0, MODE_CHECK, false, false, NULL, NULL, "", NULL },
	{ "tokenmail -C FILE token", { "tokenmail", "-C", "/x.yaml", "-v", "token", "app", NULL }, 0, MODE_TOKEN, false, false, NULL, NULL, "", NULL },
	{ "tokenmail -t token is a send", { "tokenmail", "-t", "token", NULL }, 0, MODE_SEND, true, false, NULL, NULL, "token", NULL },
	{ "sendmail token is a recipient", { "sendmail", "token", NULL }, 0, MODE_SEND, false, false, NULL, NULL, "token", NULL },
	{ "no recipients", { "sendmail", "-i", NULL }, -1, MODE_SEND, false, true, NULL, NULL, "", "no recipients given" },
	{ "missing -f argument", { "sendmail", "-t", "-f", NULL }, -1, MODE_SEND, true, false, NULL, NULL, "", "option -f needs an argument" },
	{ "bad -N", { "sendmail", "-N", "sometimes", "a@b.example", NULL }, -1, MODE_SEND, false, false, NULL, NULL, "",
	  "-N sometimes: expected \"never\" or a comma list of success, failure, delay" },
	{ "never with others", { "sendmail", "-N", "never,success", "a@b.example", NULL }, -1, MODE_SEND, false, false, NULL, NULL, "",
	  "-N never,success: expected \"never\" or a comma list of success, failure, delay" },
	{ "bad -R", { "sendmail", "-R", "all", "a@b.example", NULL }, -1, MODE_SEND, false, false, NULL, NULL, "", "-R all: expected \"full\" or \"hdrs\"" },
	{ "-bd refused", { "sendmail", "-bd", NULL }, -1, MODE_SEND, false, false, NULL, NULL, "", "-bd: unsupported mode" },
	{ "-bv without address", { "sendmail", "-bv", NULL }, -1, MODE_VERIFY, false, false, NULL, NULL, "", "-bv needs at least one address" },
	{ "token without account", { "tokenmail", "token", NULL }, -1, MODE_TOKEN, false, false, NULL, NULL, "", "usage: tokenmail token ACCOUNT" },
};

static void
join_args(const struct invocation *inv, char *out, size_t size)
{
	size_t i;

	out[0] = '\0';
	for (i = 0; i < inv->nargs; i++) {
		if (i)
			strncat(out, "|", size - strlen(out) - 1);
		strncat(out, inv->args[i], size - strlen(out) - 1);
	}
}

static void
run_case(const struct cli_case *c)
{
	struct invocation inv;
	struct tm_err err;
	char *argv[MAXARGS];
	char joined[512];
	int argc = 0, rc;

	while (c->argv[argc]) {
		argv[argc] = (char *)c->argv[argc];
		argc++;
	}
	argv[argc] = NULL;
	tm_err_clear(&err);
	rc = cli_parse(argc, argv, &inv, &err);
	tap_is_int(rc, c->rc, "%s: return value", c->what);
	if (rc < 0) {
		tap_is_str(err.msg, c->error, "%s: error", c->what);
		tap_is_int(err.exit, EX_USAGE, "%s: exit code", c->what);
		return;
	}
	join_args(&inv, joined, sizeof(joined));
	tap_ok(inv.mode == c->mode && inv.read_recipients == c->t && inv.ignore_dots == c->i,
	    "%s: mode %d -t %d -i %d", c->what, inv.mode, inv.read_recipients, inv.ignore_dots);
	tap_is_str(inv.sender, c->sender, "%s: sender", c->what);
	tap_is_str(inv.full_name, c->full_name, "%s: full name", c->what);
	tap_is_str(joined, c->args, "%s: arguments", c->what);
}

static void
test_details(void)
{
	char *argv[] = { "sendmail", "-N", "success,failure", "-R", "full", "-V", "env1",
		"-C", "/tmp/c.yaml", "-X", "/tmp/log", "-v", "--dry-run", "a@b.example", NULL };
	char *auth[] = { "tokenmail", "authorize", "app", "--browser", "-C", "/x.yaml", NULL };
	struct invocation inv;
	struct tm_err err;

	tap_is_int(cli_parse(14, argv, &inv, &err), 0, "all value options parse");
	tap_is_str(inv.dsn_notify, "success,failure", "-N kept");
	tap_is_str(inv.dsn_ret, "full", "-R kept");
	tap_is_str(inv.dsn_envid, "env1", "-V kept");
	tap_is_str(inv.config_path, "/tmp/c.yaml", "-C kept");
	tap_is_str(inv.log_file, "/tmp/log", "-X kept");
	tap_ok(inv.verbose && inv.dry_run, "-v and --dry-run set");
	tap_is_int(cli_parse(6, auth, &inv, &err), 0, "authorize parses");
	tap_ok(inv.mode == MODE_AUTHORIZE && inv.browser, "authorize --browser");
	tap_is_str(inv.account, "app", "authorize account");
	tap_is_str(inv.config_path, "/x.yaml", "authorize -C");
	tap_ok(strstr(cli_usage(), "--dry-run") != NULL, "usage mentions --dry-run");
}

int
main(void)
{
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		run_case(&cases[i]);
	test_details();
	return tap_done();
}
