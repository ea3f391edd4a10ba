/*
 * smtp_test.c: the SMTP client. Tables for the pure parts (reply lines,
 * whole replies, EHLO capabilities, xtext, hints), then whole sessions
 * against a scripted fake server: the test listens on 127.0.0.1:0 and a
 * child plays a script of exact client lines it expects ("C:") and replies
 * it sends ("S:"), so every transcript is checked line for line. The
 * sessions run with tls: none to loopback (no TLS here).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base64.h"
#include "log.h"
#include "message.h"
#include "smtp.h"
#include "util.h"
#include "tap.h"

#define PEER_TIMEOUT_MS	4000
#define TEST_FROM	"from@example.com"
#define TEST_USER	"me@example.com"
#define TEST_TOKEN	"tok123"

/* ---- pure parts ---- */

static const struct {
	const char *line;
	int ok, code, last;
	const char *text;
} line_cases[] = {
	{ "250 OK", 1, 250, 1, "OK" },
	{ "250-PIPELINING", 1, 250, 0, "PIPELINING" },
	{ "250", 1, 250, 1, "" },
	{ "334 ", 1, 334, 1, "" },
	{ "535 5.7.3 Authentication unsuccessful [AM0PR06CA0126]", 1, 535, 1,
	  "5.7.3 Authentication unsuccessful [AM0PR06CA0126]" },
	{ "220 caf\xc3\xa9 ready\tnow", 1, 220, 1, "caf\xc3\xa9 ready\tnow" },
	{ "", 0, 0, 0, NULL },
	{ "25", 0, 0, 0, NULL },
	{ "2x0 hello", 0, 0, 0, NULL },
	{ "abc def", 0, 0, 0, NULL },
	{ "150 too low", 0, 0, 0, NULL },
	{ "650 too high", 0, 0, 0, NULL },
	{ "260 second digit", 0, 0, 0, NULL },
	{ "250_x", 0, 0, 0, NULL },
	{ "2500 four digits", 0, 0, 0, NULL },
	{ "250 bell\a", 0, 0, 0, NULL },
	{ "250 esc\x1b[2J", 0, 0, 0, NULL },
	{ "250 del\x7f", 0, 0, 0, NULL },
	{ "250 cr\rinside", 0, 0, 0, NULL },
};

static void
test_reply_line(void)
{
	char big[SMTP_LINE_MAX + 2];
	struct tm_err err;
	const char *text;
	size_t i;
	bool last;
	int code;

	for (i = 0; i < sizeof(line_cases) / sizeof(line_cases[0]); i++) {
		const char *l = line_cases[i].line;
		int rc;

		tm_err_clear(&err);
		rc = smtp_reply_line(l, strlen(l), &code, &last, &text, &err);
		tap_is_int(rc, line_cases[i].ok ? 0 : -1, "reply line [%zu] %s", i,
		    line_cases[i].ok ? "accepted" : "refused");
		if (!line_cases[i].ok) {
			tap_is_int(err.exit, EX_PROTOCOL, "reply line [%zu] is EX_PROTOCOL", i);
			continue;
		}
		tap_ok(code == line_cases[i].code && last == (line_cases[i].last != 0),
		    "reply line [%zu] code and last", i);
		tap_is_str(text, line_cases[i].text, "reply line [%zu] text", i);
	}
	memset(big, 'x', sizeof(big));
	memcpy(big, "250 ", 4);
	tap_is_int(smtp_reply_line(big, SMTP_LINE_MAX, &code, &last, &text, &err), 0,
	    "a line of %d octets is accepted", SMTP_LINE_MAX);
	tap_is_int(smtp_reply_line(big, SMTP_LINE_MAX + 1, &code, &last, &text, &err), -1,
	    "a line over %d octets is refused", SMTP_LINE_MAX);
}

/* Feed lines to smtp_reply_add; 0 when the reply completed at the last one. */
static int
add_lines(struct smtp_reply *r, const char *const *lines, struct tm_err *err)
{
	bool done = false;

	memset(r, 0, sizeof(*r));
	for (; *lines != NULL; lines++) {
		if (done)
			return -2;
		if (smtp_reply_add(r, *lines, strlen(*lines), &done, err) == -1)
			return -1;
	}
	return done ? 0 : -3;
}

static void
test_reply_add(void)
{
	static const char *const gmail[] = {
		"535-5.7.8 Username and Password not accepted. For more information, go to",
		"535 5.7.8  https://support.google.com/mail/?p=BadCredentials x - gsmtp", NULL };
	static const char *const mixed[] = { "250-a", "251 b", NULL };
	static const char *const noenh[] = { "550 5.7.30x no", NULL };
	static const char *const wrongclass[] = { "550 4.7.0 odd", NULL };
	static const char *const ms[] = { "550 5.7.30 Basic authentication is not supported", NULL };
	char shown[256];
	struct smtp_reply *r = xcalloc(1, sizeof(*r));
	struct tm_err err;

	tap_is_int(add_lines(r, gmail, &err), 0, "multi-line reply completes");
	tap_is_int(r->code, 535, "multi-line code");
	tap_is_str(r->enhanced, "5.7.8", "enhanced code of the first line");
	tap_ok(strchr(r->text, '\n') != NULL, "lines are newline-separated");
	tap_is_int(add_lines(r, mixed, &err), -1, "lines with different codes are refused");
	tap_is_int(err.exit, EX_PROTOCOL, "... as EX_PROTOCOL");
	tap_is_int(add_lines(r, noenh, &err), 0, "5.7.30x is a reply");
	tap_is_str(r->enhanced, "", "... without an enhanced code");
	tap_is_int(add_lines(r, wrongclass, &err), 0, "550 4.7.0 is a reply");
	tap_is_str(r->enhanced, "", "... whose enhanced class does not match is ignored");
	tap_is_int(add_lines(r, ms, &err), 0, "Microsoft 5.7.30");
	tap_is_str(r->enhanced, "5.7.30", "... enhanced 5.7.30");
	smtp_reply_format(r, shown, sizeof(shown));
	tap_is_str(shown, "550 5.7.30 Basic authentication is not supported", "formatted");
	free(r);
}

static void
test_reply_cap(void)
{
	struct smtp_reply *r = xcalloc(1, sizeof(*r));
	char line[400];
	struct tm_err err;
	bool done = false;
	int i, rc = 0;

	memset(line, 'y', sizeof(line) - 1);
	line[sizeof(line) - 1] = '\0';
	memcpy(line, "250-", 4);
	for (i = 0; i < 100 && rc == 0; i++)
		rc = smtp_reply_add(r, line, strlen(line), &done, &err);
	tap_ok(rc == -1 && err.exit == EX_PROTOCOL && i * 396 > SMTP_REPLY_MAX - 400,
	    "a reply over SMTP_REPLY_MAX is refused (after %d lines)", i);
	free(r);
}

static void
test_caps(void)
{
	struct smtp_caps c;

	smtp_ehlo_caps("SY5P282CA0097.outlook.office365.com Hello [172.105.184.101]\n"
	    "SIZE 157286400\nPIPELINING\nDSN\nENHANCEDSTATUSCODES\nAUTH LOGIN XOAUTH2\n"
	    "8BITMIME\nBINARYMIME\nCHUNKING\nSMTPUTF8", &c);
	tap_is_int((long)c.flags, (long)(SMTP_CAP_SIZE | SMTP_CAP_PIPELINING | SMTP_CAP_DSN |
	    SMTP_CAP_ENHANCED | SMTP_CAP_AUTH | SMTP_CAP_8BITMIME | SMTP_CAP_CHUNKING |
	    SMTP_CAP_SMTPUTF8), "Exchange Online capabilities");
	tap_is_int((long)c.size, 157286400L, "SIZE 157286400");
	tap_is_str(c.auth, "LOGIN XOAUTH2", "AUTH mechanisms");
	tap_ok(smtp_caps_has_auth(&c, "XOAUTH2") && smtp_caps_has_auth(&c, "xoauth2") &&
	    !smtp_caps_has_auth(&c, "OAUTHBEARER") && !smtp_caps_has_auth(&c, "XOAUTH"),
	    "mechanism lookup is by whole word, case-insensitive");
	smtp_ehlo_caps("smtp.gmail.com at your service\nsize 35882577\nstarttls\n"
	    "AUTH=LOGIN PLAIN\nAUTH LOGIN PLAIN XOAUTH2 PLAIN-CLIENTTOKEN OAUTHBEARER XOAUTH\n"
	    "SIZEX 3", &c);
	tap_is_int((long)c.flags, (long)(SMTP_CAP_SIZE | SMTP_CAP_STARTTLS | SMTP_CAP_AUTH),
	    "lower case keywords, AUTH= old form, SIZEX not SIZE");
	tap_is_int((long)c.size, 35882577L, "lower-case size");
	tap_ok(smtp_caps_has_auth(&c, "OAUTHBEARER") && smtp_caps_has_auth(&c, "PLAIN"),
	    "AUTH and AUTH= lists merge (%s)", c.auth);
	smtp_ehlo_caps("name only", &c);
	tap_ok(c.flags == 0 && c.size == 0 && c.auth[0] == '\0', "the greeting line is no keyword");
	smtp_ehlo_caps("x\nSIZE\nSIZE abc", &c);
	tap_ok(c.flags == SMTP_CAP_SIZE && c.size == 0, "SIZE without a usable number: no limit");
}

static void
test_xtext(void)
{
	char out[64];

	tap_ok(smtp_xtext("a+b=c d@\xc3\xa9", out, sizeof(out)) == 0 &&
	    strcmp(out, "a+2Bb+3Dc+20d@+C3+A9") == 0, "xtext: %s", out);
	tap_is_int(smtp_xtext("0123456789", out, 8), -1, "xtext that does not fit");
}

static const struct {
	const char *enhanced;
	int code;
	const char *want;	/* substring, or NULL for no hint */
} hint_cases[] = {
	{ "5.7.30", 550, "xoauth2" },
	{ "5.7.3", 535, "Set-CASMailbox" },
	{ "5.7.139", 535, "SmtpClientAuthenticationDisabled" },
	{ "5.2.252", 554, "Send As" },
	{ "5.7.60", 550, "Send As" },
	{ "5.2.2", 554, "full" },
	{ "4.7.66", 451, "later" },
	{ "4.3.2", 432, "concurrent" },
	{ "4.5.3", 452, "recipients" },
	{ "5.3.4", 552, "smaller" },
	{ "", 535, "SMTP.SendAsApp" },
	{ NULL, 552, "smaller" },
	{ "5.1.1", 550, NULL },
	{ "", 250, NULL },
};

static void
test_hints(void)
{
	size_t i;

	for (i = 0; i < sizeof(hint_cases) / sizeof(hint_cases[0]); i++) {
		const char *h = smtp_hint(hint_cases[i].enhanced, hint_cases[i].code);

		if (hint_cases[i].want == NULL)
			tap_ok(h == NULL, "no hint for %s %d", hint_cases[i].enhanced,
			    hint_cases[i].code);
		else
			tap_ok(h != NULL && strstr(h, hint_cases[i].want) != NULL,
			    "hint for %s %d names \"%s\"", hint_cases[i].enhanced
			    ? hint_cases[i].enhanced : "(none)", hint_cases[i].code,
			    hint_cases[i].want);
	}
}

/* ---- the fake server ---- */

static char g_blob[4096];	/* what "C@prefix" lines expect after prefix */

static int
peer_getline(int fd, char *line, size_t size)
{
	size_t n = 0;

	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		char c;
		ssize_t r;

		if (poll(&pfd, 1, PEER_TIMEOUT_MS) <= 0)
			return -2;
		r = read(fd, &c, 1);
		/* A client that closes with our reply unread resets the connection. */
		if (r <= 0)
			return r == 0 || errno == ECONNRESET ? -1 : -2;
		if (c == '\n')
			break;
		if (n + 1 < size)
			line[n++] = c;
	}
	if (n > 0 && line[n - 1] == '\r')
		n--;
	line[n] = '\0';
	return 0;
}

/* After the script: the client closes without sending anything more. */
static int
peer_expect_eof(int fd)
{
	char line[1024];
	int rc = peer_getline(fd, line, sizeof(line));

	if (rc == -1)
		return 0;
	printf("# peer: wanted EOF, got %s [%s]\n", rc == 0 ? "a line" : "a timeout",
	    rc == 0 ? line : "");
	return 1;
}

static int
peer_step(int fd, const char *st)
{
	char line[8192], want[8192];

	if (st[0] == 'S') {
		(void)str_format(line, sizeof(line), "%s\r\n", st + 2);
		return write(fd, line, strlen(line)) == (ssize_t)strlen(line) ? 0 : 1;
	}
	(void)str_format(want, sizeof(want), "%s%s", st + 2, st[1] == '@' ? g_blob : "");
	if (peer_getline(fd, line, sizeof(line)) != 0) {
		printf("# peer: wanted [%s], got EOF or timeout\n", want);
		return 1;
	}
	if (strcmp(line, want) != 0) {
		printf("# peer: wanted [%s]\n# peer: got    [%s]\n", want, line);
		return 1;
	}
	return 0;
}

/* Play script on fd: 0 if every client line was as expected. */
static int
peer_play(int fd, const char *const *script)
{
	for (; *script != NULL; script++) {
		if (strcmp(*script, "X:close") == 0)
			return 0;
		if (strcmp(*script, "X:silent") == 0)
			return peer_expect_eof(fd);
		if (peer_step(fd, *script) != 0)
			return 1;
	}
	return peer_expect_eof(fd);
}

static int
peer_listen(unsigned *port)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd == -1 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1 ||
	    listen(fd, 1) == -1 || getsockname(fd, (struct sockaddr *)&sa, &len) == -1) {
		perror("peer_listen");
		exit(99);
	}
	*port = ntohs(sa.sin_port);
	return fd;
}

static pid_t
peer_start(int lfd, const char *const *script)
{
	pid_t pid;

	fflush(stdout);
	if ((pid = fork()) == -1) {
		perror("fork");
		exit(99);
	}
	if (pid == 0) {
		int fd = accept(lfd, NULL, NULL);
		int rc = fd == -1 ? 1 : peer_play(fd, script);

		fflush(stdout);
		_exit(rc);
	}
	close(lfd);
	return pid;
}

/* ---- sessions ---- */

struct session_case {
	const char *name;
	const char *const *script;
	enum smtp_tls tls;
	enum smtp_auth auth;
	const char *token;	/* NULL: TEST_TOKEN */
	const char *message;	/* NULL: the default message */
	const char *rcpt2;	/* second recipient, or NULL */
	const char *notify, *ret, *envid;
	int cap;		/* 0: 5 */
	int exit;		/* 0: success */
	const char *msg;	/* substring of err.msg, or NULL */
	const char *extra;	/* substring of server, hint or detail, or NULL */
	bool auth_rejected;
	long round_trips;	/* -1: not checked */
};

/* The default message: dot-stuffing needed on three lines, CRLF is 48 octets. */
static const char default_message[] =
	"Subject: hi\n\nline1\n.dot line\n..two\n.\nend\n";
#define DEFAULT_DATA "C:Subject: hi", "C:", "C:line1", "C:..dot line", "C:...two", \
	"C:..", "C:end", "C:."

static void
make_message(const char *text, struct message *m)
{
	struct intake_params ip = { .dot_ends = false };
	char path[] = "/tmp/smtp_test.XXXXXX";
	struct tm_err err;
	int fd = mkstemp(path);

	if (fd == -1 || write(fd, text, strlen(text)) != (ssize_t)strlen(text) ||
	    lseek(fd, 0, SEEK_SET) != 0) {
		perror("make_message");
		exit(99);
	}
	unlink(path);
	message_init(m);
	if (message_read(fd, &ip, m, &err) == -1) {
		printf("# message_read: %s\n", err.msg);
		exit(99);
	}
	close(fd);
}

/* The expected SASL blob, built here independently of smtp.c. */
static void
make_blob(const struct session_case *c, unsigned port)
{
	const char *token = c->token != NULL ? c->token : TEST_TOKEN;
	struct strbuf raw, b;

	strbuf_init(&raw, 1 << 16);
	strbuf_init(&b, sizeof(g_blob) - 1);
	if (c->auth == SMTP_AUTH_XOAUTH2)
		(void)strbuf_appendf(&raw, "user=%s\001auth=Bearer %s\001\001", TEST_USER, token);
	else
		(void)strbuf_appendf(&raw, "n,a=%s,\001host=127.0.0.1\001port=%u\001"
		    "auth=Bearer %s\001\001", TEST_USER, port, token);
	(void)base64_encode(&b, raw.data, raw.len);
	(void)str_copy(g_blob, sizeof(g_blob), b.data != NULL ? b.data : "");
	strbuf_free(&raw);
	strbuf_free(&b);
}

static bool
err_mentions(const struct tm_err *e, const char *s)
{
	return strstr(e->server, s) != NULL || strstr(e->hint, s) != NULL ||
	    strstr(e->detail, s) != NULL || strstr(e->msg, s) != NULL;
}

static void
check_outcome(const struct session_case *c, int rc, const struct smtp_result *r,
    const struct tm_err *err)
{
	tap_is_int(rc, c->exit ? -1 : 0, "%s: smtp_deliver returns %d", c->name, c->exit ? -1 : 0);
	if (c->exit)
		tap_is_int(err->exit, c->exit, "%s: exit code (%s)", c->name, err->msg);
	if (c->msg != NULL)
		tap_ok(strstr(err->msg, c->msg) != NULL, "%s: message [%s]", c->name, err->msg);
	if (c->extra != NULL)
		tap_ok(err_mentions(err, c->extra), "%s: mentions \"%s\" (server [%s] hint [%s])",
		    c->name, c->extra, err->server, err->hint);
	tap_is_int(r->auth_rejected, c->auth_rejected, "%s: auth_rejected", c->name);
	if (c->round_trips >= 0)
		tap_is_int((long)r->round_trips, c->round_trips, "%s: round trips", c->name);
}

static void
run_case(const struct session_case *c)
{
	struct smtp_settings srv = { .host = "127.0.0.1", .tls = c->tls, .auth = c->auth,
	    .user = TEST_USER };
	struct smtp_params p = { .server = &srv, .helo_name = "test.example",
	    .envelope_from = TEST_FROM, .dsn_notify = c->notify, .dsn_ret = c->ret,
	    .dsn_envid = c->envid };
	struct address_list rcpts = { 0 };
	struct smtp_result r;
	struct message m;
	struct tm_err err;
	int lfd, status, rc;
	pid_t pid;

	p.timeout_cap = c->cap ? c->cap : 5;
	p.access_token = c->auth == SMTP_AUTH_NONE ? NULL : c->token ? c->token : TEST_TOKEN;
	address_list_add_spec(&rcpts, "a@example.com");
	if (c->rcpt2 != NULL)
		address_list_add_spec(&rcpts, c->rcpt2);
	p.rcpts = &rcpts;
	make_message(c->message != NULL ? c->message : default_message, &m);
	p.msg = &m;
	lfd = peer_listen(&srv.port);
	make_blob(c, srv.port);
	pid = peer_start(lfd, c->script);
	tm_err_clear(&err);
	rc = smtp_deliver(&p, &r, &err);
	waitpid(pid, &status, 0);
	tap_ok(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s: the transcript is as expected",
	    c->name);
	check_outcome(c, rc, &r, &err);
	message_free(&m);
	address_list_free(&rcpts);
}

#define GREET	"S:220 fake.example ESMTP ready"
#define EHLO	"C:EHLO test.example"

static const char *const s_plain[] = {
	GREET, EHLO, "S:250-fake.example", "S:250 8BITMIME",
	"C:MAIL FROM:<" TEST_FROM ">", "S:250 2.1.0 Sender OK",
	"C:RCPT TO:<a@example.com>", "S:250 2.1.5 Recipient OK",
	"C:RCPT TO:<b@example.com>", "S:250 2.1.5 Recipient OK",
	"C:DATA", "S:354 Start mail input; end with <CRLF>.<CRLF>",
	DEFAULT_DATA, "S:250 2.0.0 OK queued",
	"C:QUIT", "S:221 bye", NULL
};

static const char *const s_pipelined[] = {
	GREET, EHLO, "S:250-fake.example", "S:250-PIPELINING", "S:250-SIZE 1000000",
	"S:250-AUTH LOGIN XOAUTH2", "S:250-DSN", "S:250 ENHANCEDSTATUSCODES",
	"C@AUTH XOAUTH2 ", "S:235 2.7.0 Authentication successful",
	"C:MAIL FROM:<" TEST_FROM "> SIZE=48 RET=HDRS ENVID=id+2Bx",
	"C:RCPT TO:<a@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a@example.com",
	"C:RCPT TO:<b@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@example.com",
	"C:DATA",
	"S:250 2.1.0 Sender OK", "S:250 2.1.5 Recipient OK", "S:250 2.1.5 Recipient OK",
	"S:354 go", DEFAULT_DATA, "S:250 2.0.0 OK <id@example>",
	"C:QUIT", "S:221 bye", NULL
};

/* The same, with the XOAUTH2 blob of PROTOCOL 3.1's format spelled out. */
static const char *const s_literal_blob[] = {
	GREET, EHLO, "S:250-fake.example", "S:250 AUTH XOAUTH2",
	"C:AUTH XOAUTH2 dXNlcj1tZUBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB0b2sxMjMBAQ==",
	"S:235 2.7.0 Authentication successful",
	"C:MAIL FROM:<" TEST_FROM ">", "S:250 ok", "C:RCPT TO:<a@example.com>", "S:250 ok",
	"C:DATA", "S:354 go", DEFAULT_DATA, "S:250 ok", "C:QUIT", NULL
};

static const char *const s_two_step[] = {
	GREET, EHLO, "S:250-fake.example", "S:250 AUTH LOGIN XOAUTH2",
	"C:AUTH XOAUTH2", "S:334 ", "C@", "S:235 2.7.0 Authentication successful",
	"C:MAIL FROM:<" TEST_FROM ">", "S:250 ok", "C:RCPT TO:<a@example.com>", "S:250 ok",
	"C:DATA", "S:354 go", DEFAULT_DATA, "S:250 ok", "C:QUIT", NULL
};

static const char *const s_xoauth2_error[] = {
	GREET, EHLO, "S:250-smtp.gmail.com", "S:250 AUTH LOGIN PLAIN XOAUTH2 OAUTHBEARER",
	"C@AUTH XOAUTH2 ",
	"S:334 eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIiwic2NvcGUiOiJodHRwczovL21haWwuZ29vZ2xlLmNvbS8ifQ==",
	"C:", "S:535-5.7.8 Username and Password not accepted. For more information, go to",
	"S:535 5.7.8  https://support.google.com/mail/?p=BadCredentials x - gsmtp",
	"C:QUIT", NULL
};

static const char *const s_oauthbearer_error[] = {
	GREET, EHLO, "S:250-smtp.gmail.com", "S:250 AUTH LOGIN PLAIN XOAUTH2 OAUTHBEARER",
	"C@AUTH OAUTHBEARER ",
	"S:334 eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIiwic2NvcGUiOiJleGFtcGxlX3Njb3BlIn0=",
	"C:AQ==", "S:535 5.7.8 Authentication failed", "C:QUIT", NULL
};

/* MAIL, RCPT... and DATA in one group. One recipient refused, yet DATA got
   354: the client hangs up, no data, no ".", no RSET or QUIT (taken as data). */
static const char *const s_rcpt_550[] = {
	GREET, EHLO, "S:250-fake.example", "S:250 PIPELINING",
	"C:MAIL FROM:<" TEST_FROM ">", "C:RCPT TO:<a@example.com>", "C:RCPT TO:<b@example.com>",
	"C:DATA", "S:250 2.1.0 ok", "S:250 2.1.5 ok", "S:550 5.1.1 User unknown",
	"S:354 Start mail input; end with <CRLF>.<CRLF>", NULL
};

static const char *const s_rcpt_451[] = {
	GREET, EHLO, "S:250-fake.example", "S:250 PIPELINING",
	"C:MAIL FROM:<" TEST_FROM ">", "C:RCPT TO:<a@example.com>", "C:RCPT TO:<b@example.com>",
	"C:DATA", "S:250 2.1.0 ok", "S:250 2.1.5 ok", "S:451 4.4.0 Temporary lookup failure",
	"S:354 go", NULL
};

/* Every recipient refused: DATA gets 554, so RSET, QUIT, nothing sent. */
static const char *const s_rcpt_all_550[] = {
	GREET, EHLO, "S:250-fake.example", "S:250 PIPELINING",
	"C:MAIL FROM:<" TEST_FROM ">", "C:RCPT TO:<a@example.com>", "C:RCPT TO:<b@example.com>",
	"C:DATA", "S:250 2.1.0 ok", "S:550 5.1.1 User unknown", "S:550 5.1.1 User unknown",
	"S:554 5.5.1 No valid recipients", "C:RSET", "S:250 2.0.0 reset", "C:QUIT", NULL
};

/* Without PIPELINING a refused recipient is known before DATA: RSET. */
static const char *const s_rcpt_550_unpipelined[] = {
	GREET, EHLO, "S:250 fake.example",
	"C:MAIL FROM:<" TEST_FROM ">", "S:250 ok", "C:RCPT TO:<a@example.com>", "S:250 ok",
	"C:RCPT TO:<b@example.com>", "S:550 5.1.1 User unknown",
	"C:RSET", "S:250 2.0.0 reset", "C:QUIT", NULL
};

static const char *const s_452[] = {
	GREET, EHLO, "S:250-fake.example", "S:250 SIZE",
	"C:MAIL FROM:<" TEST_FROM "> SIZE=48", "S:250 ok",
	"C:RCPT TO:<a@example.com>", "S:250 ok",
	"C:RCPT TO:<b@example.com>", "S:452 4.5.3 Too many recipients",
	"C:DATA", "S:354 go", DEFAULT_DATA, "S:250 first",
	"C:MAIL FROM:<" TEST_FROM "> SIZE=48", "S:250 ok",
	"C:RCPT TO:<b@example.com>", "S:250 ok",
	"C:DATA", "S:354 go", DEFAULT_DATA, "S:250 second",
	"C:QUIT", NULL
};

/* The same with PIPELINING: one group per transaction, one round trip each. */
static const char *const s_452_pipelined[] = {
	GREET, EHLO, "S:250-fake.example", "S:250 PIPELINING",
	"C:MAIL FROM:<" TEST_FROM ">", "C:RCPT TO:<a@example.com>", "C:RCPT TO:<b@example.com>",
	"C:DATA", "S:250 ok", "S:250 ok", "S:452 4.5.3 Too many recipients", "S:354 go",
	DEFAULT_DATA, "S:250 first",
	"C:MAIL FROM:<" TEST_FROM ">", "C:RCPT TO:<b@example.com>", "C:DATA",
	"S:250 ok", "S:250 ok", "S:354 go", DEFAULT_DATA, "S:250 second",
	"C:QUIT", NULL
};

static const char *const s_mail_4xx[] = {
	GREET, EHLO, "S:250-fake.example", "S:250 PIPELINING",
	"C:MAIL FROM:<" TEST_FROM ">", "C:RCPT TO:<a@example.com>", "C:DATA",
	"S:432 4.3.2 Concurrent connections limit exceeded", "S:503 5.5.1 need MAIL",
	"S:503 5.5.1 need MAIL", "C:QUIT", NULL
};

static const char *const s_final_554[] = {
	GREET, EHLO, "S:250-fake.example", "S:250 ENHANCEDSTATUSCODES",
	"C:MAIL FROM:<" TEST_FROM ">", "S:250 ok", "C:RCPT TO:<a@example.com>", "S:250 ok",
	"C:DATA", "S:354 go", DEFAULT_DATA,
	"S:554 5.2.252 SendAsDenied; me@example.com not allowed to send as from@example.com",
	"C:QUIT", NULL
};

static const char *const s_size[] = {
	GREET, EHLO, "S:250-fake.example", "S:250 SIZE 10", "C:QUIT", NULL
};

static const char *const s_no_starttls[] = {
	GREET, EHLO, "S:250-fake.example", "S:250-AUTH XOAUTH2", "S:250 PIPELINING",
	"C:QUIT", NULL
};

static const char *const s_drop[] = {
	GREET, EHLO, "S:250 fake.example",
	"C:MAIL FROM:<" TEST_FROM ">", "S:250 ok", "C:RCPT TO:<a@example.com>", "S:250 ok",
	"C:DATA", "S:354 go", "C:Subject: hi", "X:close", NULL
};

static const char *const s_silent[] = { "X:silent", NULL };

static const char *const s_malformed[] = { GREET, EHLO, "S:2x0 hello", NULL };

static const char *const s_no_mech[] = {
	GREET, EHLO, "S:250-fake.example", "S:250 AUTH LOGIN PLAIN", "C:QUIT", NULL
};

static const char *const s_utf8[] = {
	GREET, EHLO, "S:250-fake.example", "S:250-8BITMIME", "S:250 SMTPUTF8",
	"C:MAIL FROM:<" TEST_FROM "> BODY=8BITMIME SMTPUTF8", "S:250 ok",
	"C:RCPT TO:<a@example.com>", "S:250 ok", "C:DATA", "S:354 go",
	"C:Subject: caf\xc3\xa9", "C:", "C:.", "S:250 ok", "C:QUIT", NULL
};

static const char *const s_utf8_rcpt[] = {
	GREET, EHLO, "S:250-fake.example", "S:250 8BITMIME", "C:QUIT", NULL
};

static const char *const s_greeting_554[] = { "S:554 5.7.1 go away", "C:QUIT", NULL };

static const char *const s_auth_454[] = {
	GREET, EHLO, "S:250-fake.example", "S:250 AUTH XOAUTH2", "C@AUTH XOAUTH2 ",
	"S:454 4.7.0 Temporary authentication failure", "C:QUIT", NULL
};

/* A server that offers STARTTLS, then hangs up instead of the handshake. */
static const char *const s_tls_hangup[] = {
	GREET, EHLO, "S:250-fake.example", "S:250-STARTTLS", "S:250 AUTH XOAUTH2",
	"C:STARTTLS", "S:220 2.0.0 SMTP server ready", "X:close", NULL
};

/* Plain text queued behind the 220 to STARTTLS (CVE-2011-0411 style). */
static const char *const s_tls_inject[] = {
	GREET, EHLO, "S:250-fake.example", "S:250 STARTTLS",
	"C:STARTTLS", "S:220 go ahead\r\n250-injected", NULL
};

static void
test_sessions(void)
{
	static char long_token[1501];
	const struct session_case cases[] = {
		{ "plain", s_plain, SMTP_TLS_NONE, SMTP_AUTH_NONE, NULL, NULL, "b@example.com",
		  NULL, NULL, NULL, 0, 0, NULL, NULL, false, 6 },
		{ "pipelined", s_pipelined, SMTP_TLS_NONE, SMTP_AUTH_XOAUTH2, NULL, NULL,
		  "b@example.com", "SUCCESS,FAILURE", "hdrs", "id+x", 0, 0, NULL, NULL, false, 4 },
		{ "literal blob", s_literal_blob, SMTP_TLS_NONE, SMTP_AUTH_XOAUTH2, NULL, NULL,
		  NULL, NULL, NULL, NULL, 0, 0, NULL, NULL, false, 6 },
		{ "two-step", s_two_step, SMTP_TLS_NONE, SMTP_AUTH_XOAUTH2, long_token, NULL,
		  NULL, NULL, NULL, NULL, 0, 0, NULL, NULL, false, 7 },
		{ "xoauth2 error", s_xoauth2_error, SMTP_TLS_NONE, SMTP_AUTH_XOAUTH2, NULL, NULL,
		  NULL, NULL, NULL, NULL, 0, EX_NOPERM, "refused authentication for " TEST_USER,
		  "\"status\":\"401\"", true, -1 },
		{ "oauthbearer error", s_oauthbearer_error, SMTP_TLS_NONE, SMTP_AUTH_OAUTHBEARER,
		  NULL, NULL, NULL, NULL, NULL, NULL, 0, EX_NOPERM, "refused authentication",
		  "invalid_token", true, -1 },
		{ "rcpt 550, DATA 354", s_rcpt_550, SMTP_TLS_NONE, SMTP_AUTH_NONE, NULL, NULL,
		  "b@example.com", NULL, NULL, NULL, 0, EX_NOUSER,
		  "127.0.0.1 refused RCPT TO:<b@example.com>", "550 5.1.1 User unknown", false, 2 },
		{ "rcpt 451, DATA 354", s_rcpt_451, SMTP_TLS_NONE, SMTP_AUTH_NONE, NULL, NULL,
		  "b@example.com", NULL, NULL, NULL, 0, EX_TEMPFAIL,
		  "127.0.0.1 refused RCPT TO:<b@example.com> for now",
		  "451 4.4.0 Temporary lookup failure", false, 2 },
		{ "all rcpt 550, DATA 554", s_rcpt_all_550, SMTP_TLS_NONE, SMTP_AUTH_NONE, NULL,
		  NULL, "b@example.com", NULL, NULL, NULL, 0, EX_NOUSER,
		  "127.0.0.1 refused RCPT TO:<a@example.com>", "550 5.1.1 User unknown", false, 3 },
		{ "rcpt 550 unpipelined", s_rcpt_550_unpipelined, SMTP_TLS_NONE, SMTP_AUTH_NONE,
		  NULL, NULL, "b@example.com", NULL, NULL, NULL, 0, EX_NOUSER,
		  "127.0.0.1 refused RCPT TO:<b@example.com>", "550 5.1.1 User unknown", false, 5 },
		{ "452", s_452, SMTP_TLS_NONE, SMTP_AUTH_NONE, NULL, NULL, "b@example.com",
		  NULL, NULL, NULL, 0, 0, NULL, NULL, false, -1 },
		{ "452 pipelined", s_452_pipelined, SMTP_TLS_NONE, SMTP_AUTH_NONE, NULL, NULL,
		  "b@example.com", NULL, NULL, NULL, 0, 0, NULL, NULL, false, 5 },
		{ "mail 4xx", s_mail_4xx, SMTP_TLS_NONE, SMTP_AUTH_NONE, NULL, NULL, NULL,
		  NULL, NULL, NULL, 0, EX_TEMPFAIL, "refused MAIL FROM:<" TEST_FROM ">",
		  "concurrent", false, -1 },
		{ "final 554 SendAsDenied", s_final_554, SMTP_TLS_NONE, SMTP_AUTH_NONE, NULL, NULL, NULL,
		  NULL, NULL, NULL, 0, EX_NOPERM, "127.0.0.1 refused the message",
		  "Send As", false, -1 },
		{ "size", s_size, SMTP_TLS_NONE, SMTP_AUTH_NONE, NULL, NULL, NULL,
		  NULL, NULL, NULL, 0, EX_DATAERR, "larger than", NULL, false, -1 },
		{ "no starttls", s_no_starttls, SMTP_TLS_STARTTLS, SMTP_AUTH_XOAUTH2, NULL, NULL,
		  NULL, NULL, NULL, NULL, 0, EX_UNAVAILABLE,
		  "does not offer STARTTLS: refusing to send a token in clear", NULL, false, -1 },
		{ "drop in DATA", s_drop, SMTP_TLS_NONE, SMTP_AUTH_NONE, NULL, NULL, NULL,
		  NULL, NULL, NULL, 0, EX_TEMPFAIL, NULL, NULL, false, -1 },
		{ "silent", s_silent, SMTP_TLS_NONE, SMTP_AUTH_NONE, NULL, NULL, NULL,
		  NULL, NULL, NULL, 1, EX_TEMPFAIL, NULL, NULL, false, -1 },
		{ "malformed", s_malformed, SMTP_TLS_NONE, SMTP_AUTH_NONE, NULL, NULL, NULL,
		  NULL, NULL, NULL, 0, EX_PROTOCOL, "bad reply from 127.0.0.1", NULL, false, -1 },
		{ "no mechanism", s_no_mech, SMTP_TLS_NONE, SMTP_AUTH_XOAUTH2, NULL, NULL, NULL,
		  NULL, NULL, NULL, 0, EX_UNAVAILABLE,
		  "does not offer AUTH XOAUTH2 (offers: LOGIN PLAIN)", NULL, false, -1 },
		{ "utf8", s_utf8, SMTP_TLS_NONE, SMTP_AUTH_NONE, NULL, "Subject: caf\xc3\xa9\n",
		  NULL, NULL, NULL, NULL, 0, 0, NULL, NULL, false, -1 },
		{ "utf8 rcpt", s_utf8_rcpt, SMTP_TLS_NONE, SMTP_AUTH_NONE, NULL, NULL,
		  "j\xc3\xb6rg@example.com", NULL, NULL, NULL, 0, EX_DATAERR, "SMTPUTF8", NULL,
		  false, -1 },
		{ "greeting 554", s_greeting_554, SMTP_TLS_NONE, SMTP_AUTH_NONE, NULL, NULL, NULL,
		  NULL, NULL, NULL, 0, EX_UNAVAILABLE, "refused the session", "go away", false, -1 },
		{ "auth 454", s_auth_454, SMTP_TLS_NONE, SMTP_AUTH_XOAUTH2, NULL, NULL, NULL,
		  NULL, NULL, NULL, 0, EX_TEMPFAIL, "refused authentication", NULL, false, -1 },
		{ "tls hangup", s_tls_hangup, SMTP_TLS_STARTTLS, SMTP_AUTH_XOAUTH2, NULL, NULL,
		  NULL, NULL, NULL, NULL, 0, EX_TEMPFAIL, NULL, NULL, false, -1 },
		{ "tls injection", s_tls_inject, SMTP_TLS_STARTTLS, SMTP_AUTH_NONE, NULL, NULL,
		  NULL, NULL, NULL, NULL, 0, EX_PROTOCOL, "sent data after its STARTTLS reply",
		  NULL, false, -1 },
	};
	size_t i;

	memset(long_token, 'T', sizeof(long_token) - 1);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct timespec t0, t1;

		clock_gettime(CLOCK_MONOTONIC, &t0);
		run_case(&cases[i]);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		if (cases[i].cap == 1)
			tap_ok(t1.tv_sec - t0.tv_sec < 3, "%s: gave up within the 1 s cap",
			    cases[i].name);
	}
}

static void
test_size(void)
{
	struct message m;

	make_message(default_message, &m);
	tap_is_int((long)message_transmit_size(&m), 48, "the default message is 48 octets");
	message_free(&m);
}

static void
test_tls_none_remote(void)
{
	struct smtp_settings srv = { .host = "192.0.2.1", .port = 25, .tls = SMTP_TLS_NONE,
	    .auth = SMTP_AUTH_NONE };
	struct address_list rcpts = { 0 };
	struct smtp_params p = { .server = &srv, .envelope_from = TEST_FROM, .rcpts = &rcpts,
	    .timeout_cap = 1 };
	struct smtp_result r;
	struct message m;
	struct tm_err err;

	address_list_add_spec(&rcpts, "a@example.com");
	make_message(default_message, &m);
	p.msg = &m;
	tm_err_clear(&err);
	tap_ok(smtp_deliver(&p, &r, &err) == -1 && err.exit == EX_CONFIG &&
	    r.stage == SMTP_STAGE_CONNECT, "tls: none to a remote host: EX_CONFIG (%s)", err.msg);
	message_free(&m);
	address_list_free(&rcpts);
}

/* The SASL error challenge as the report shows it. */
static void
test_sasl_error_decode(void)
{
	char out[SMTP_CHALLENGE_MAX];
	char small[16];

	/* {"status":"401","schemes":"bearer"} */
	smtp_sasl_error_decode("eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIn0=", out, sizeof(out));
	tap_is_str(out, "{\"status\":\"401\",\"schemes\":\"bearer\"}", "sasl error: base64 JSON decoded");
	smtp_sasl_error_decode("not base64!", out, sizeof(out));
	tap_is_str(out, "not base64!", "sasl error: text that is not base64 kept as sent");
	smtp_sasl_error_decode("", out, sizeof(out));
	tap_is_str(out, "", "sasl error: empty challenge");
	/* "a\nb\x01" */
	smtp_sasl_error_decode("YQpiAQ==", out, sizeof(out));
	tap_is_str(out, "a\\x0ab\\x01", "sasl error: control bytes escaped");
	smtp_sasl_error_decode("eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIn0=", small, sizeof(small));
	tap_ok(strlen(small) < sizeof(small) && strstr(small, "...") != NULL,
	    "sasl error: cut with ... when it does not fit (%s)", small);
}

int
main(void)
{
	signal(SIGPIPE, SIG_IGN);
	log_set_verbose(getenv("SMTP_TEST_VERBOSE") != NULL);
	test_reply_line();
	test_reply_add();
	test_reply_cap();
	test_caps();
	test_xtext();
	test_sasl_error_decode();
	test_hints();
	test_size();
	test_tls_none_remote();
	test_sessions();
	return tap_done();
}
