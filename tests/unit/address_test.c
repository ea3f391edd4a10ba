/*
 * address_test.c: table-driven tests of the RFC 5322 address parser, with
 * the RFC's own Appendix A examples, what real callers send (cron, mdadm,
 * logwatch, s-nail) and the failures that must be refused.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "address.h"
#include "log.h"
#include "tap.h"
#include "tm_limits.h"
#include "util.h"

/*
 * One case: the text (len 0 means strlen) and what must come of it. Each
 * mailbox is rendered as `spec` then ` d=[display]`, ` c=[comment]` and
 * ` g=[group]` for the fields that are set; mailboxes are separated by
 * '\n'. A failure is "ERR:" and the reason with its offset.
 */
struct list_case {
	const char *in;
	size_t len;
	const char *want;
};

#define L64 "0123456789012345678901234567890123456789012345678901234567890123"
#define D50 "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghi."

static const struct list_case list_cases[] = {
	/* RFC 5322 A.1.1 */
	{ "John Doe <jdoe@machine.example>", 0,
	  "jdoe@machine.example d=[John Doe]" },
	{ "Mary Smith <mary@example.net>", 0, "mary@example.net d=[Mary Smith]" },
	/* A.1.2 */
	{ "\"Joe Q. Public\" <john.q.public@example.com>", 0,
	  "john.q.public@example.com d=[Joe Q. Public]" },
	{ "Mary Smith <mary@x.test>, jdoe@example.org, Who? <one@y.test>", 0,
	  "mary@x.test d=[Mary Smith]\njdoe@example.org\none@y.test d=[Who?]" },
	{ "<boss@nil.test>, \"Giant; \\\"Big\\\" Box\" <sysservices@example.net>", 0,
	  "boss@nil.test\nsysservices@example.net d=[Giant; \"Big\" Box]" },
	/* A.1.3: a group and an empty group */
	{ "A Group:Ed Jones <c@a.test>,joe@where.test,John <jdoe@one.test>;", 0,
	  "c@a.test d=[Ed Jones] g=[A Group]\njoe@where.test g=[A Group]\n"
	  "jdoe@one.test d=[John] g=[A Group]" },
	{ "Undisclosed recipients:;", 0, "" },
	/* A.5: white space and comments */
	{ "Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>", 0,
	  "pete@silly.test d=[Pete] c=[his host]" },
	{ "A Group(Some people):Chris Jones <c@(Chris's host.)public.example>, "
	  "joe@example.org, John <jdoe@one.test> (my dear friend); "
	  "(the end of the group)", 0,
	  "c@public.example d=[Chris Jones] c=[Chris's host.] g=[A Group]\n"
	  "joe@example.org g=[A Group]\n"
	  "jdoe@one.test d=[John] c=[my dear friend] g=[A Group]" },
	/* A.6.1: obsolete phrase, route and list syntax */
	{ "Joe Q. Public <john.q.public@example.com>", 0,
	  "john.q.public@example.com d=[Joe Q. Public]" },
	{ "Mary Smith <@node.test:mary@example.net>, , jdoe@test  . example", 0,
	  "mary@example.net d=[Mary Smith]\njdoe@test.example" },
	/* A.6.3: obsolete white space and comments (already unfolded) */
	{ "John Doe <jdoe@machine(comment).  example>", 0,
	  "jdoe@machine.example d=[John Doe] c=[comment]" },
	{ "Mary Smith    \t<mary@example.net>", 0, "mary@example.net d=[Mary Smith]" },

	/* What real callers send */
	{ "a@example.com,b@example.org", 0, "a@example.com\nb@example.org" },
	{ "root (Cron Daemon)", 0, "root c=[Cron Daemon]" },
	{ "mdadm monitoring <root@host>", 0, "root@host d=[mdadm monitoring]" },
	{ "root", 0, "root" },
	{ "<root>", 0, "root" },
	{ "Root User <root>", 0, "root d=[Root User]" },
	{ "Logwatch", 0, "Logwatch" },
	{ "undisclosed-recipients:;", 0, "" },
	{ "s-nail user <user@example.org>", 0, "user@example.org d=[s-nail user]" },

	/* Groups */
	{ "Team: a@x, B <b@y>;", 0, "a@x g=[Team]\nb@y d=[B] g=[Team]" },
	{ "Team: a@x, b@y", 0, "a@x g=[Team]\nb@y g=[Team]" },
	{ "undisclosed-recipients:", 0, "" },
	{ "Empty:;, c@d", 0, "c@d" },
	{ "a@b, Empty: (nobody) ;", 0, "a@b" },
	{ "G: , ,a@b,, ;", 0, "a@b g=[G]" },
	{ "\"My \\\"Team\\\"\": <t@x>;", 0, "t@x g=[My \"Team\"]" },

	/* Comments */
	{ "a@b (one (two) three)", 0, "a@b c=[one (two) three]" },
	{ "(lead) a@b", 0, "a@b c=[lead]" },
	{ "a@b (first) (second)", 0, "a@b c=[second]" },
	{ "a@b ()", 0, "a@b" },
	{ "(x)<a@b>", 0, "a@b c=[x]" },
	{ "a@b (c1), (c2) d@e (c3)", 0, "a@b c=[c1]\nd@e c=[c3]" },
	{ "Joe (the man) Smith <j@x>", 0, "j@x d=[Joe Smith] c=[the man]" },
	{ "a@b (esc \\( paren)", 0, "a@b c=[esc ( paren]" },
	{ "a@b (  spread \t  out  )", 0, "a@b c=[spread out]" },

	/* Quoted strings */
	{ "\"a\\\"b@c\"@example.com", 0, "\"a\\\"b@c\"@example.com" },
	{ "\"john doe\"@x", 0, "\"john doe\"@x" },
	{ "\"john\"@x", 0, "\"john\"@x" },
	{ "\"a\".b@x", 0, "\"a.b\"@x" },
	{ "john . doe @ example . com", 0, "john.doe@example.com" },
	{ "\"Doe, John\" <jd@x>", 0, "jd@x d=[Doe, John]" },
	{ "\"  spaced   out  \" <s@x>", 0, "s@x d=[spaced out]" },
	{ "\"\" <e@x>", 0, "e@x" },
	{ "\"Joe \\\"JJ\\\" Smith\" <j@x>", 0, "j@x d=[Joe \"JJ\" Smith]" },
	{ "\"tab\there\" <t@x>", 0, "t@x d=[tab here]" },
	{ "\"john doe\"", 0, "\"john doe\"" },

	/* UTF-8 and encoded-words */
	{ "J\xc3\xb6rg <j@x.de>", 0, "j@x.de d=[J\xc3\xb6rg]" },
	{ "\"\xc5\x9c" "ofia\" <s@x>", 0, "s@x d=[\xc5\x9c" "ofia]" },
	{ "=?UTF-8?Q?J=C3=B6rg?= <j@x.de>", 0,
	  "j@x.de d=[=?UTF-8?Q?J=C3=B6rg?=]" },
	{ "=?iso-8859-1?q?Andr=E9?= Pirard <PIRARD@vm1.ulg.ac.be>", 0,
	  "PIRARD@vm1.ulg.ac.be d=[=?iso-8859-1?q?Andr=E9?= Pirard]" },
	{ "\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a", 0,
	  "\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a" },

	/* Obsolete and sloppy forms */
	{ ",a@b,,c@d,", 0, "a@b\nc@d" },
	{ ",", 0, "" },
	{ "", 0, "" },
	{ "   ", 0, "" },
	{ "<@r1,@r2:user@d>", 0, "user@d" },
	{ "<,@r1,,@r2 :user@d>", 0, "user@d" },
	{ "jdoe@[192.0.2.1]", 0, "jdoe@[192.0.2.1]" },
	{ "jdoe@[ 192.0.2.1 ]", 0, "jdoe@[192.0.2.1]" },
	{ "Dr.Who <who@tardis>", 0, "who@tardis d=[Dr.Who]" },
	{ "J.R.R. Tolkien <jrr@x>", 0, "jrr@x d=[J.R.R. Tolkien]" },
	{ "<a@b>,<c@d>", 0, "a@b\nc@d" },
	{ "a@b\t,\tc@d", 0, "a@b\nc@d" },
	{ "Joe<j@x>", 0, "j@x d=[Joe]" },
	{ "user+tag@sub.example.com", 0, "user+tag@sub.example.com" },
	{ "o'reilly@example.com", 0, "o'reilly@example.com" },
	{ "a@x_y.example", 0, "a@x_y.example" },
	{ "< a @ b >", 0, "a@b" },
	{ "\"a\" . b (c) . \"d e\"@x", 0, "\"a.b.d e\"@x c=[c]" },
	{ "(just a comment)", 0, "" },
	{ "a@b (c1) ,", 0, "a@b c=[c1]" },
	{ "\"a\x01" "b\" <c@d>", 0, "c@d d=[a b]" },
	{ "<\"root\">", 0, "\"root\"" },
	{ L64 "@example.com", 0, L64 "@example.com" },

	/* Header injection and bytes that are never allowed */
	{ "a@b\r\nBcc: x@y", 0, "ERR:carriage return at offset 3" },
	{ "a@b\nBcc: x@y", 0, "ERR:line feed at offset 3" },
	{ "a\0b@c", 5, "ERR:NUL byte at offset 1" },
	{ "\"a\0\"@c", 6, "ERR:NUL byte at offset 2" },
	{ "\xff@x", 0, "ERR:invalid UTF-8 at offset 0" },
	{ "J\xc3\x28rg <j@x>", 0, "ERR:invalid UTF-8 at offset 1" },
	{ "\xc0\xaf@x", 0, "ERR:invalid UTF-8 at offset 0" },
	{ "a@\xed\xa0\x80", 0, "ERR:invalid UTF-8 at offset 2" },
	{ "Joe <j@x> \xe2\x82", 0, "ERR:invalid UTF-8 at offset 10" },
	{ "a\x1b" "b@x", 0, "ERR:control character 0x1b at offset 1" },
	{ "a@b\x7f", 0, "ERR:control character 0x7f at offset 3" },
	{ "(a\x01" "b) x@y", 0, "ERR:control character 0x01 in comment at offset 2" },

	/* Unbalanced quotes, brackets and parentheses */
	{ "\"abc@x", 0, "ERR:unbalanced quote at offset 0" },
	{ "a@b, \"x <y@z>", 0, "ERR:unbalanced quote at offset 5" },
	{ "\"abc\\\"@x", 0, "ERR:unbalanced quote at offset 0" },
	{ "Joe <a@b", 0, "ERR:missing '>' at offset 4" },
	{ "Joe <", 0, "ERR:missing '>' at offset 4" },
	{ "a@b>", 0, "ERR:unexpected '>' after address at offset 3" },
	{ "a@b (comment", 0, "ERR:unbalanced '(' at offset 4" },
	{ "a@b (x (y)", 0, "ERR:unbalanced '(' at offset 4" },
	{ "a@b)", 0, "ERR:unbalanced ')' at offset 3" },
	{ "a@[1.2.3.4", 0, "ERR:missing ']' at offset 2" },
	{ "a]@b", 0, "ERR:unbalanced ']' at offset 1" },

	/* Broken addresses */
	{ "a@", 0, "ERR:'@' without a domain at offset 2" },
	{ "a@, b@c", 0, "ERR:'@' without a domain at offset 2" },
	{ "@b", 0, "ERR:'@' without a local part at offset 0" },
	{ "Joe <@b>", 0, "ERR:missing ':' after route at offset 7" },
	{ "a@b@c", 0, "ERR:more than one '@' at offset 3" },
	{ L64 "x@example.com", 0, "ERR:local part longer than 64 octets at offset 0" },
	{ "a@" D50 D50 D50 D50 D50 "abcdef", 0,
	  "ERR:domain longer than 255 octets at offset 2" },
	{ L64 "@" D50 D50 D50 D50 "abc", 0,
	  "ERR:address longer than 256 octets at offset 0" },
	{ "John Doe", 0, "ERR:display name without an address at offset 0" },
	{ "a@b, John Q. Public", 0, "ERR:display name without an address at offset 5" },
	{ "John Doe@x", 0, "ERR:unquoted white space in local part at offset 5" },
	{ "\"a\"b@c", 0, "ERR:missing '.' between words in local part at offset 3" },
	{ "a..b@x", 0, "ERR:consecutive dots in local part at offset 2" },
	{ ".a@x", 0, "ERR:local part starts with '.' at offset 0" },
	{ "a.@x", 0, "ERR:local part ends with '.' at offset 1" },
	{ "a@b..c", 0, "ERR:consecutive dots in domain at offset 4" },
	{ "a@b.", 0, "ERR:domain ends with '.' at offset 4" },
	{ "a@.b", 0, "ERR:domain starts with '.' at offset 2" },
	{ "a@\"b\"", 0, "ERR:quoted string in domain at offset 2" },
	{ "a@ex!ample.com", 0, "ERR:invalid character '!' in domain at offset 4" },
	{ "a@[1.2 .3.4]", 0, "ERR:white space in domain literal at offset 6" },
	{ "a@[]", 0, "ERR:empty domain literal at offset 2" },
	{ "a@[1\\.2]", 0, "ERR:'\\' in domain literal at offset 4" },
	{ "a@[1.2.3.4].com", 0, "ERR:unexpected '.' after address at offset 11" },
	{ "\"a\tb\"@x", 0, "ERR:control character in quoted local part at offset 2" },
	{ "a\\b@c", 0, "ERR:'\\' outside a quoted string at offset 1" },
	{ "\"x\\\x01\"@y", 0, "ERR:control character in quoted local part at offset 3" },
	{ "a@b.c\x1b[2J", 0, "ERR:control character 0x1b at offset 5" },
	{ "<,a@b>", 0, "ERR:unexpected word in route at offset 2" },
	{ "<>", 0, "ERR:empty address '<>' at offset 0" },
	{ "a@b;c@d", 0, "ERR:';' outside a group at offset 3" },
	{ "a@b c@d", 0, "ERR:unexpected word after address at offset 4" },
	{ "a@b <c@d>", 0, "ERR:unexpected '<' after address at offset 4" },
	{ "<a@b> Joe", 0, "ERR:unexpected word after address at offset 6" },
	{ "<a@b c>", 0, "ERR:unexpected word in angle address at offset 5" },
	{ "<a b@c>", 0, "ERR:unquoted white space in local part at offset 3" },
	{ "G1: G2: a@b;;", 0, "ERR:group inside a group at offset 6" },
	{ ": a@b;", 0, "ERR:group without a name at offset 0" },
	{ "G: a@b; c@d", 0, "ERR:unexpected word after address at offset 8" },
	{ "Joe [x] <a@b>", 0, "ERR:unexpected domain literal after address at offset 4" },
};

static void
render(const struct address_list *l, char *out, size_t size)
{
	struct strbuf b;
	char spec[1024];
	size_t i;

	strbuf_init(&b, size - 1);
	for (i = 0; i < l->count; i++) {
		const struct address *a = &l->items[i];

		if (address_spec(a, spec, sizeof(spec)) == -1)
			(void)str_copy(spec, sizeof(spec), "(too long)");
		(void)strbuf_appendf(&b, "%s%s", i ? "\n" : "", spec);
		if (a->display)
			(void)strbuf_appendf(&b, " d=[%s]", a->display);
		if (a->comment)
			(void)strbuf_appendf(&b, " c=[%s]", a->comment);
		if (a->group)
			(void)strbuf_appendf(&b, " g=[%s]", a->group);
	}
	(void)str_copy(out, size, b.data ? b.data : "");
	strbuf_free(&b);
}

/* The whole message a failure must produce. */
static void
want_message(const char *what, const char *in, size_t len, const char *reason,
    char *out, size_t size)
{
	char shown[100];

	log_sanitize(shown, sizeof(shown), in, len);
	(void)str_format(out, size, "%s \"%s\": %s", what, shown, reason);
}

/* Every mailbox the parser returns must pass address_check_spec, and
   formatting it must parse back to the same spec and display name. */
static int
round_trips(const struct address_list *l)
{
	struct address_list again = { 0 };
	struct tm_err err;
	char spec[1024], line[2048];
	size_t i;
	int ok = 1;

	for (i = 0; i < l->count && ok; i++) {
		const struct address *a = &l->items[i];

		ok = address_spec(a, spec, sizeof(spec)) == 0 &&
		    address_check_spec(spec, &err) == 0 &&
		    address_format_mailbox(a->display, spec, line, sizeof(line)) == 0 &&
		    address_list_parse(&again, line, strlen(line), &err) == 0 &&
		    again.count == i + 1;
		if (ok && a->display != NULL)
			ok = again.items[i].display != NULL &&
			    strcmp(again.items[i].display, a->display) == 0;
		if (!ok)
			printf("# round trip failed for [%s]\n", spec);
	}
	address_list_free(&again);
	return ok;
}

static void
check_list_case(const struct list_case *c)
{
	struct address_list l = { 0 }, view = { 0 };
	struct tm_err err;
	size_t len = c->len ? c->len : strlen(c->in);
	char shown[100], got[4096], want[1024];
	int rc;

	log_sanitize(shown, sizeof(shown), c->in, len);
	tm_err_clear(&err);
	address_list_add_spec(&l, "sentinel@example.com");
	rc = address_list_parse(&l, c->in, len, &err);
	if (strncmp(c->want, "ERR:", 4) == 0) {
		want_message("invalid address list", c->in, len, c->want + 4,
		    want, sizeof(want));
		tap_ok(rc == -1 && err.cls == TM_ERR_DATA &&
		    err.exit == EX_DATAERR && l.count == 1,
		    "[%s] fails, list unchanged", shown);
		tap_is_str(err.msg, want, "[%s] error message", shown);
	} else {
		tap_ok(rc == 0, "[%s] parses", shown);
		if (rc != 0)
			printf("# %s\n", err.msg);
		/* What the parse added, after the sentinel. */
		view.items = l.items + 1;
		view.count = l.count - 1;
		render(&view, got, sizeof(got));
		tap_is_str(got, c->want, "[%s] mailboxes", shown);
		if (rc == 0)
			tap_ok(round_trips(&view), "[%s] specs check, format round trips",
			    shown);
	}
	address_list_free(&l);
}

static void
test_list_table(void)
{
	size_t i;

	for (i = 0; i < sizeof(list_cases) / sizeof(list_cases[0]); i++)
		check_list_case(&list_cases[i]);
	printf("# %zu address-list cases\n", sizeof(list_cases) / sizeof(list_cases[0]));
}

struct mailbox_case {
	const char *in;
	const char *want;	/* rendered as above, or "ERR:..." */
};

static const struct mailbox_case mailbox_cases[] = {
	{ "<>", "" },
	{ " <> ", "" },
	{ "a@b", "a@b" },
	{ "Name <a@b>", "a@b d=[Name]" },
	{ "\"Joe Q. Public\" <jqp@example.com> (work)",
	  "jqp@example.com d=[Joe Q. Public] c=[work]" },
	{ "root", "root" },
	{ "root (Cron Daemon)", "root c=[Cron Daemon]" },
	{ "<@r1:a@b>", "a@b" },
	{ "", "ERR:empty address at offset 0" },
	{ "   ", "ERR:empty address at offset 3" },
	{ "a@b, c@d", "ERR:more than one address at offset 3" },
	{ "a@b,", "ERR:more than one address at offset 3" },
	{ ",a@b", "ERR:unexpected ',' at offset 0" },
	{ "G: a@b;", "ERR:group where one mailbox is expected at offset 1" },
	{ "a@b;", "ERR:';' outside a group at offset 3" },
	{ "a@b\r\n", "ERR:carriage return at offset 3" },
	{ "a@", "ERR:'@' without a domain at offset 2" },
	{ "Joe", "Joe" },
	{ "Joe Smith", "ERR:display name without an address at offset 0" },
};

static void
test_parse_mailbox(void)
{
	size_t i;

	for (i = 0; i < sizeof(mailbox_cases) / sizeof(mailbox_cases[0]); i++) {
		const struct mailbox_case *c = &mailbox_cases[i];
		struct address_list l = { 0 };
		struct address a;
		struct tm_err err;
		char got[1024], want[1024], shown[100];
		int rc;

		tm_err_clear(&err);
		log_sanitize(shown, sizeof(shown), c->in, strlen(c->in));
		rc = address_parse_mailbox(&a, c->in, &err);
		if (strncmp(c->want, "ERR:", 4) == 0) {
			want_message("invalid address", c->in, strlen(c->in),
			    c->want + 4, want, sizeof(want));
			tap_ok(rc == -1 && err.exit == EX_DATAERR &&
			    a.local == NULL, "mailbox [%s] fails", shown);
			tap_is_str(err.msg, want, "mailbox [%s] error", shown);
			continue;
		}
		tap_ok(rc == 0, "mailbox [%s] parses", shown);
		l.items = &a;
		l.count = 1;
		render(&l, got, sizeof(got));
		tap_is_str(got, c->want, "mailbox [%s]", shown);
		address_free(&a);
	}
}

static void
test_null_sender(void)
{
	struct address a;
	struct tm_err err;
	char spec[16] = "x";

	tap_ok(address_parse_mailbox(&a, "<>", &err) == 0 && a.local != NULL &&
	    a.local[0] == '\0' && a.domain == NULL && a.display == NULL,
	    "<> is the null sender: local \"\", domain NULL");
	tap_ok(address_spec(&a, spec, sizeof(spec)) == 0 && spec[0] == '\0',
	    "the null sender's spec is \"\"");
	address_free(&a);
}

struct format_case {
	const char *display;
	const char *spec;
	const char *want;	/* NULL: must fail */
	size_t size;		/* output buffer, 0 means 256 */
};

static const struct format_case format_cases[] = {
	{ NULL, "a@b", "a@b", 0 },
	{ "", "a@b", "a@b", 0 },
	{ "John Doe", "j@x", "John Doe <j@x>", 0 },
	{ "Doe, John", "j@x", "\"Doe, John\" <j@x>", 0 },
	{ "Joe \"JJ\" Smith", "j@x", "\"Joe \\\"JJ\\\" Smith\" <j@x>", 0 },
	{ "back\\slash", "j@x", "\"back\\\\slash\" <j@x>", 0 },
	{ "J\xc3\xb6rg", "j@x.de", "J\xc3\xb6rg <j@x.de>", 0 },
	{ "J. Public", "j@x", "\"J. Public\" <j@x>", 0 },
	{ "Cron Daemon", "root", "Cron Daemon <root>", 0 },
	{ "=?UTF-8?Q?J=C3=B6rg?=", "j@x", "=?UTF-8?Q?J=C3=B6rg?= <j@x>", 0 },
	{ "evil\r\nBcc: x@y", "a@b", "\"evil  Bcc: x@y\" <a@b>", 0 },
	{ "bad\xffutf8", "a@b", "\"bad?utf8\" <a@b>", 0 },
	{ " lead", "a@b", "\" lead\" <a@b>", 0 },
	{ "a  b", "a@b", "\"a  b\" <a@b>", 0 },
	{ "John Doe", "j@x", "John Doe <j@x>", 15 },
	{ "John Doe", "j@x", NULL, 14 },
	{ NULL, "a@b", NULL, 3 },
	{ "x", "a@b\r\nBcc: c@d", NULL, 0 },
};

static void
test_format(void)
{
	size_t i;

	for (i = 0; i < sizeof(format_cases) / sizeof(format_cases[0]); i++) {
		const struct format_case *c = &format_cases[i];
		char out[256], what[128];
		size_t size = c->size ? c->size : sizeof(out);
		int rc = address_format_mailbox(c->display, c->spec, out, size);

		log_sanitize(what, sizeof(what), c->display ? c->display : "(null)",
		    strlen(c->display ? c->display : "(null)"));
		if (c->want == NULL) {
			tap_ok(rc == -1, "format [%s] size %zu fails", what, size);
			continue;
		}
		tap_ok(rc == 0, "format [%s] fits", what);
		tap_is_str(out, c->want, "format [%s]", what);
	}
}

/* format then parse gives the display name and spec back. */
static void
test_format_round_trip(void)
{
	static const char *displays[] = {
		"John Doe", "Doe, John", "Joe \"JJ\" Smith", "back\\slash",
		"J\xc3\xb6rg", "\xc5\x9cofia", "J. Public", "a (b) c",
		"<angle>", "semi;colon", "at@sign", "=?UTF-8?Q?J=C3=B6rg?=",
	};
	size_t i;

	for (i = 0; i < sizeof(displays) / sizeof(displays[0]); i++) {
		struct address a;
		struct tm_err err;
		char line[256];
		int ok;

		ok = address_format_mailbox(displays[i], "\"q d\"@example.com",
		    line, sizeof(line)) == 0 &&
		    address_parse_mailbox(&a, line, &err) == 0;
		tap_ok(ok && a.display && strcmp(a.display, displays[i]) == 0 &&
		    strcmp(a.local, "\"q d\"") == 0 &&
		    strcmp(a.domain, "example.com") == 0,
		    "round trip [%s] via [%s]", displays[i], ok ? line : "?");
		if (ok)
			address_free(&a);
	}
}

struct spec_case {
	const char *spec;
	const char *want;	/* NULL: accepted; else the whole error message */
};

static const struct spec_case spec_cases[] = {
	{ "a@b", NULL },
	{ "root", NULL },
	{ "\"john doe\"@x", NULL },
	{ "\"a\\\"b@c\"@example.com", NULL },
	{ "a@[192.0.2.1]", NULL },
	{ "J\xc3\xb6rg@b\xc3\xbc" "cher.de", NULL },
	{ L64 "@example.com", NULL },
	{ "", "invalid address \"\": empty address at offset 0" },
	{ "<a@b>", "invalid address \"<a@b>\": not a bare address (display name, "
	  "comment, white space or angle brackets)" },
	{ " a@b", "invalid address \" a@b\": not a bare address (display name, "
	  "comment, white space or angle brackets)" },
	{ "a@b (c)", "invalid address \"a@b (c)\": not a bare address (display "
	  "name, comment, white space or angle brackets)" },
	{ "Joe <a@b>", "invalid address \"Joe <a@b>\": not a bare address "
	  "(display name, comment, white space or angle brackets)" },
	{ "\"a\".b@c", "invalid address \"\"a\".b@c\": not a bare address "
	  "(display name, comment, white space or angle brackets)" },
	{ "<>", "invalid address \"<>\": the null sender is not an address" },
	{ " <> ", "invalid address \" <> \": the null sender is not an address" },
	{ "a b@c", "invalid address \"a b@c\": unquoted white space in local "
	  "part at offset 2" },
	{ "a@b\r\nRCPT TO:<x@y>", "invalid address \"a@b\\x0d\\x0aRCPT "
	  "TO:<x@y>\": carriage return at offset 3" },
	{ "a@b,c@d", "invalid address \"a@b,c@d\": more than one address at "
	  "offset 3" },
	{ L64 "x@b", "invalid address \"" L64 "x@b\": local part longer than "
	  "64 octets at offset 0" },
	{ "a@b\xc3", "invalid address \"a@b\xc3\": invalid UTF-8 at offset 3" },
};

static void
test_check_spec(void)
{
	size_t i;

	for (i = 0; i < sizeof(spec_cases) / sizeof(spec_cases[0]); i++) {
		const struct spec_case *c = &spec_cases[i];
		struct tm_err err;
		char what[128];
		int rc;

		tm_err_clear(&err);
		rc = address_check_spec(c->spec, &err);
		log_sanitize(what, sizeof(what), c->spec, strlen(c->spec));
		if (c->want == NULL) {
			tap_ok(rc == 0, "check_spec [%s] accepted", what);
			if (rc != 0)
				printf("# %s\n", err.msg);
			continue;
		}
		tap_ok(rc == -1 && err.exit == EX_DATAERR,
		    "check_spec [%s] refused", what);
		tap_is_str(err.msg, c->want, "check_spec [%s] message", what);
	}
}

static void
test_spec_equal(void)
{
	tap_ok(address_spec_equal("a@B.com", "A@b.COM"), "equal ignores ASCII case");
	tap_ok(!address_spec_equal("a@b", "a@b "), "equal: trailing space differs");
	tap_ok(!address_spec_equal("a@b", "a@bc"), "equal: prefix differs");
	tap_ok(!address_spec_equal("j\xc3\xb6rg@x", "J\xc3\x96rg@x"),
	    "equal: non-ASCII is not case-folded");
	tap_ok(address_spec_equal("", ""), "equal: null senders");
	tap_ok(address_spec_equal("ROOT", "root"), "equal: unqualified");
}

static void
test_find_and_add(void)
{
	struct address_list l = { 0 }, copy = { 0 };
	struct tm_err err;
	const char *text = "A <a@x>, root (Cron), b@y";

	tap_ok(address_list_parse(&l, text, strlen(text), &err) == 0 &&
	    l.count == 3, "parse three for find");
	tap_is_int(address_list_find(&l, "A@X"), 0, "find A@X");
	tap_is_int(address_list_find(&l, "ROOT"), 1, "find ROOT");
	tap_is_int(address_list_find(&l, "b@Y"), 2, "find b@Y");
	tap_is_int(address_list_find(&l, "c@z"), -1, "find c@z: none");
	tap_is_int(address_list_find(&l, "a"), -1, "find a: not a@x");
	tap_is_int(address_list_find(&l, "root@x"), -1, "find root@x: not root");
	tap_is_int(address_list_find(&l, "a@x@"), -1, "find a@x@: none");

	address_list_add(&copy, &l.items[0]);
	address_list_add(&copy, &l.items[1]);
	address_list_free(&l);
	tap_ok(copy.count == 2 && strcmp(copy.items[0].display, "A") == 0 &&
	    strcmp(copy.items[1].comment, "Cron") == 0 &&
	    copy.items[1].domain == NULL, "address_list_add copies deeply");

	address_list_add_spec(&copy, "\"a@b\"@c");
	address_list_add_spec(&copy, "root");
	address_list_add_spec(&copy, "x@y@z");
	tap_ok(strcmp(copy.items[2].local, "\"a@b\"") == 0 &&
	    strcmp(copy.items[2].domain, "c") == 0,
	    "add_spec splits after the quoted '@'");
	tap_ok(strcmp(copy.items[3].local, "root") == 0 &&
	    copy.items[3].domain == NULL && copy.items[3].display == NULL,
	    "add_spec: unqualified");
	tap_ok(strcmp(copy.items[4].local, "x@y") == 0 &&
	    strcmp(copy.items[4].domain, "z") == 0, "add_spec splits at the last '@'");
	tap_is_int(address_list_find(&copy, "\"A@B\"@C"), 2, "find quoted spec");

	/* Parsing appends to what the list holds. */
	tap_ok(address_list_parse(&copy, "n@m", 3, &err) == 0 && copy.count == 6 &&
	    strcmp(copy.items[5].local, "n") == 0, "parse appends");
	address_list_free(&copy);
	tap_ok(copy.items == NULL && copy.count == 0, "list_free resets");
}

/* Inputs that would hurt a recursive or quadratic parser. */
static void
test_large(void)
{
	struct address_list l = { 0 };
	struct tm_err err;
	size_t n = 100000, i;
	char *s = xmalloc(2 * n + 8);
	struct strbuf b;

	memcpy(s, "a@b ", 4);
	memset(s + 4, '(', n);
	memset(s + 4 + n, ')', n);
	tap_ok(address_list_parse(&l, s, 2 * n + 4, &err) == 0 && l.count == 1 &&
	    l.items[0].comment != NULL, "100000 nested comments");
	address_list_free(&l);
	tap_ok(address_list_parse(&l, s, n + 4, &err) == -1 &&
	    strstr(err.msg, "unbalanced '(' at offset 4") != NULL,
	    "100000 unclosed comments");
	free(s);

	strbuf_init(&b, 1 << 20);
	for (i = 0; i < 5000; i++)
		(void)strbuf_appendf(&b, "User %zu <u%zu@example.com>, ", i, i);
	tap_ok(address_list_parse(&l, b.data, b.len, &err) == 0 &&
	    l.count == 5000 && strcmp(l.items[4999].local, "u4999") == 0,
	    "5000 mailboxes");
	address_list_free(&l);
	strbuf_free(&b);
}

/* Mutate the table's inputs at random (fixed seed): the parser must never
   crash, and whatever it accepts must pass the round trip. */
static void
test_mutations(void)
{
	static const char alphabet[] = "@<>()[]\":;,.\\ \tab\x01\xc3\xa9\xff";
	unsigned long seed = 12345;
	size_t i, ncases = sizeof(list_cases) / sizeof(list_cases[0]);
	int accepted = 0, bad = 0;

	for (i = 0; i < 20000; i++) {
		const struct list_case *c = &list_cases[i % ncases];
		size_t len = c->len ? c->len : strlen(c->in), pos, k;
		char buf[512];
		struct address_list l = { 0 };
		struct tm_err err;

		if (len + 4 > sizeof(buf))
			continue;
		memcpy(buf, c->in, len);
		for (k = 0; k < 3; k++) {
			seed = seed * 6364136223846793005UL + 1442695040888963407UL;
			pos = len ? (seed >> 33) % len : 0;
			buf[pos] = alphabet[(seed >> 17) % (sizeof(alphabet) - 1)];
		}
		if (address_list_parse(&l, buf, len, &err) == 0) {
			accepted++;
			bad += !round_trips(&l);
		}
		address_list_free(&l);
	}
	printf("# %d of 20000 mutations accepted\n", accepted);
	tap_is_int(bad, 0, "mutations: accepted lists round trip");
}

int
main(void)
{
	test_list_table();
	test_parse_mailbox();
	test_null_sender();
	test_format();
	test_format_round_trip();
	test_check_spec();
	test_spec_equal();
	test_find_and_add();
	test_large();
	test_mutations();
	return tap_done();
}
