/* authorize_test.c: PKCE, state, the redirect request parser, error tables,
   and the loopback listener driven by a forked browser stand-in. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>

#include "authorize.h"
#include "err.h"
#include "tap.h"
#include "util.h"

static void
test_pkce(void)
{
	/* RFC 7636 Appendix B. */
	static const unsigned char raw[AUTHORIZE_PKCE_RANDOM] = {
		116, 24, 223, 180, 151, 153, 224, 37, 79, 250, 96, 125, 216, 173,
		187, 186, 22, 212, 37, 77, 105, 214, 191, 240, 91, 88, 5, 88, 83,
		132, 141, 121
	};
	char verifier[AUTHORIZE_PKCE_SIZE], challenge[AUTHORIZE_PKCE_SIZE];
	struct tm_err err = { 0 };

	tap_is_int(authorize_pkce_verifier(raw, verifier, &err), 0, "pkce: verifier made");
	tap_is_str(verifier, "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
	    "pkce: verifier is RFC 7636 appendix B");
	tap_is_int(authorize_pkce_challenge(verifier, challenge, &err), 0, "pkce: challenge made");
	tap_is_str(challenge, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
	    "pkce: S256 challenge is RFC 7636 appendix B");
}

static void
test_state(void)
{
	static const struct { const char *got; bool ok; } cases[] = {
		{ "0123abcd", true }, { "0123abce", false }, { "0123abc", false },
		{ "0123abcd0", false }, { "", false }, { NULL, false }, { "0123ABCD", false },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		tap_ok(authorize_state_matches("0123abcd", cases[i].got) == cases[i].ok,
		    "state: '%s' %s", cases[i].got ? cases[i].got : "(null)",
		    cases[i].ok ? "matches" : "refused");
	tap_ok(!authorize_state_matches("", ""), "state: empty expected never matches");
}

static void
test_decode(void)
{
	static const struct { const char *in; const char *out; } cases[] = {
		{ "abc", "abc" }, { "a+b", "a b" }, { "a%20b", "a b" }, { "%2Fx%2f", "/x/" },
		{ "%C3%A9", "\xc3\xa9" }, { "", "" }, { "%", NULL }, { "%4", NULL },
		{ "%zz", NULL }, { "%00", NULL }, { "a%0Ab", NULL }, { "%7F", NULL },
		{ "%2B", "+" },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *got = authorize_query_decode(cases[i].in, strlen(cases[i].in));

		tap_is_str(got, cases[i].out, "decode: '%s'", cases[i].in);
		secret_free(got);
	}
}

static void
test_parse(void)
{
	static const struct {
		const char *head;
		enum authorize_request kind;
		const char *code, *state, *error, *desc;
	} cases[] = {
		{ "GET /?code=C1&state=S HTTP/1.1\r\nHost: x\r\n\r\n",
		  AUTHORIZE_REQ_REDIRECT, "C1", "S", NULL, NULL },
		{ "GET /?code=0.AX%2F-q&state=S&session_state=z&client_info=e30 HTTP/1.1\r\n\r\n",
		  AUTHORIZE_REQ_REDIRECT, "0.AX/-q", "S", NULL, NULL },
		{ "GET /?error=access_denied&error_description=AADSTS65004%3A+User+declined&state=S HTTP/1.1\n\n",
		  AUTHORIZE_REQ_REDIRECT, NULL, "S", "access_denied", "AADSTS65004: User declined" },
		{ "GET /?code=C1 HTTP/1.0\r\n\r\n", AUTHORIZE_REQ_REDIRECT, "C1", NULL, NULL, NULL },
		{ "GET /favicon.ico HTTP/1.1\r\n\r\n", AUTHORIZE_REQ_NOT_FOUND, NULL, NULL, NULL, NULL },
		{ "GET /x?code=C1&state=S HTTP/1.1\r\n\r\n", AUTHORIZE_REQ_NOT_FOUND, NULL, NULL, NULL, NULL },
		{ "GET / HTTP/1.1\r\n\r\n", AUTHORIZE_REQ_BAD, NULL, NULL, NULL, NULL },
		{ "GET /?state=S HTTP/1.1\r\n\r\n", AUTHORIZE_REQ_BAD, NULL, "S", NULL, NULL },
		{ "GET /?code=&state=S HTTP/1.1\r\n\r\n", AUTHORIZE_REQ_BAD, "", "S", NULL, NULL },
		{ "GET /?code=A&code=B&state=S HTTP/1.1\r\n\r\n", AUTHORIZE_REQ_BAD, "A", NULL, NULL, NULL },
		{ "GET /?code=A%0D%0AX&state=S HTTP/1.1\r\n\r\n", AUTHORIZE_REQ_BAD, NULL, NULL, NULL, NULL },
		{ "POST /?code=C1&state=S HTTP/1.1\r\n\r\n", AUTHORIZE_REQ_BAD, NULL, NULL, NULL, NULL },
		{ "GET /?code=C1&state=S HTTP/2\r\n\r\n", AUTHORIZE_REQ_BAD, NULL, NULL, NULL, NULL },
		{ "GET /?code=C1&state=S\r\n\r\n", AUTHORIZE_REQ_BAD, NULL, NULL, NULL, NULL },
		{ "GET  /?code=C1 HTTP/1.1\r\n\r\n", AUTHORIZE_REQ_BAD, NULL, NULL, NULL, NULL },
		{ "", AUTHORIZE_REQ_BAD, NULL, NULL, NULL, NULL },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct authorize_redirect r;
		enum authorize_request kind;

		kind = authorize_parse_request(cases[i].head, strlen(cases[i].head), &r);
		tap_is_int(kind, cases[i].kind, "parse %zu: kind", i);
		if (kind == AUTHORIZE_REQ_REDIRECT) {
			tap_is_str(r.code, cases[i].code, "parse %zu: code", i);
			tap_is_str(r.state, cases[i].state, "parse %zu: state", i);
			tap_is_str(r.error, cases[i].error, "parse %zu: error", i);
			tap_is_str(r.error_description, cases[i].desc, "parse %zu: description", i);
		}
		authorize_redirect_free(&r);
	}
}

static void
test_tables(void)
{
	static const struct { const char *error; int exit; } redirects[] = {
		{ "access_denied", EX_NOPERM }, { "consent_required", EX_NOPERM },
		{ "invalid_scope", EX_CONFIG }, { "unauthorized_client", EX_CONFIG },
		{ "temporarily_unavailable", EX_TEMPFAIL }, { "server_error", EX_TEMPFAIL },
		{ "something_new", EX_NOPERM },
	};
	static const struct { const char *error; enum authorize_poll action; } polls[] = {
		{ "authorization_pending", AUTHORIZE_POLL_PENDING },
		{ "slow_down", AUTHORIZE_POLL_SLOW_DOWN },
		{ "authorization_declined", AUTHORIZE_POLL_DECLINED },
		{ "access_denied", AUTHORIZE_POLL_DECLINED },
		{ "expired_token", AUTHORIZE_POLL_EXPIRED },
		{ "bad_verification_code", AUTHORIZE_POLL_BAD_CODE },
		{ "invalid_grant", AUTHORIZE_POLL_OTHER },
	};
	size_t i;

	for (i = 0; i < sizeof(redirects) / sizeof(redirects[0]); i++)
		tap_is_int(authorize_error_exit(redirects[i].error), redirects[i].exit,
		    "redirect error %s", redirects[i].error);
	for (i = 0; i < sizeof(polls) / sizeof(polls[0]); i++)
		tap_is_int(authorize_poll_action(polls[i].error), polls[i].action,
		    "poll error %s", polls[i].error);
}

/* ---- the listener, with a forked child playing the browser ---- */

static int
client_connect(unsigned port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	struct timeval tv = { .tv_sec = 5 };
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		_exit(90);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

/* Send req on a new connection; the status of the answer (0: none), and
   whether its body holds want. */
static int
client_request(unsigned port, const char *req, size_t len, const char *want)
{
	char buf[4096];
	size_t got = 0;
	ssize_t n;
	int fd = client_connect(port), status = 0;

	if (send(fd, req, len, MSG_NOSIGNAL) < 0)
		_exit(91);
	while (got < sizeof(buf) - 1 && (n = recv(fd, buf + got, sizeof(buf) - 1 - got, 0)) > 0)
		got += (size_t)n;
	buf[got] = '\0';
	close(fd);
	if (got > 12 && strncmp(buf, "HTTP/1.1 ", 9) == 0)
		status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
	if (want != NULL && strstr(buf, want) == NULL)
		status = -status;
	return status;
}

static int
client_get(unsigned port, const char *target, const char *want)
{
	char req[1024];

	if (str_format(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n\r\n",
	    target, port) < 0)
		_exit(92);
	return client_request(port, req, strlen(req), want);
}

/* An idle connection (a browser's speculative one) must not block the others. */
static void
browser_ok(unsigned port)
{
	int idle = client_connect(port);

	if (client_get(port, "/favicon.ico", NULL) != 404)
		_exit(1);
	if (client_request(port, "POST / HTTP/1.1\r\n\r\n", 19, NULL) != 400)
		_exit(2);
	if (client_get(port, "/?code=C%2Fx&state=0123abcd&session_state=q",
	    "sign-in complete, you can close this window") != 200)
		_exit(3);
	close(idle);
	_exit(0);
}

static void
browser_bad_state(unsigned port)
{
	_exit(client_get(port, "/?code=C&state=0123abce", NULL) == 400 ? 0 : 1);
}

static void
browser_denied(unsigned port)
{
	_exit(client_get(port, "/?error=access_denied&error_description=AADSTS65004%3A+"
	    "User+declined+to+consent.&state=0123abcd", "sign-in failed") == 200 ? 0 : 1);
}

static void
browser_silent(unsigned port)
{
	static char big[AUTHORIZE_HEAD_MAX + 100];
	char c;
	int fd = client_connect(port);

	memset(big, 'a', sizeof(big));
	memcpy(big, "GET /?", 6);
	if (client_request(port, big, sizeof(big), NULL) != 431)
		_exit(1);
	/* The server closes an idle connection after conn_seconds. */
	_exit(recv(fd, &c, 1, 0) == 0 ? 0 : 2);
}

static int
run_listener(void (*browser)(unsigned), long wait_seconds, char **code, struct tm_err *err,
    int *child_status)
{
	struct authorize_options o = { .wait_seconds = wait_seconds, .conn_seconds = 1 };
	struct authorize_listener l;
	pid_t pid;
	int rc;

	if (authorize_listen(&l, err) < 0)
		return -2;
	pid = fork();
	if (pid == 0) {
		close(l.fd);
		browser(l.port);
	}
	rc = authorize_wait_code(&l, "0123abcd", &o, code, err);
	authorize_listener_close(&l);
	waitpid(pid, child_status, 0);
	return rc;
}

static void
test_listener(void)
{
	struct tm_err err = { 0 };
	char *code = NULL;
	int status = -1;

	tap_is_int(run_listener(browser_ok, 10, &code, &err, &status), 0, "listener: code received");
	tap_is_str(code, "C/x", "listener: code decoded");
	tap_ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "listener: 404, 400, then 200 despite an idle connection (child %d)", status);
	secret_free(code);

	tap_is_int(run_listener(browser_bad_state, 10, &code, &err, &status), -1,
	    "listener: state mismatch fails");
	tap_is_int(err.exit, EX_NOPERM, "listener: state mismatch is EX_NOPERM");
	tap_is_str(err.msg, "state mismatch: possible CSRF", "listener: state mismatch message");
	tap_ok(code == NULL && WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "listener: state mismatch answered 400");

	tap_is_int(run_listener(browser_denied, 10, &code, &err, &status), -1,
	    "listener: error redirect fails");
	tap_is_int(err.exit, EX_NOPERM, "listener: access_denied is EX_NOPERM");
	tap_is_str(err.msg, "sign-in failed: access_denied", "listener: error named");
	tap_is_str(err.server, "AADSTS65004: User declined to consent.", "listener: description kept");
	tap_ok(WIFEXITED(status) && WEXITSTATUS(status) == 0, "listener: error answered with a page");

	tap_is_int(run_listener(browser_silent, 2, &code, &err, &status), -1,
	    "listener: times out");
	tap_is_int(err.exit, EX_TEMPFAIL, "listener: timeout is EX_TEMPFAIL");
	tap_ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "listener: oversized head gets 431, idle connection closed (child %d)", status);
}

int
main(void)
{
	signal(SIGPIPE, SIG_IGN);
	test_pkce();
	test_state();
	test_decode();
	test_parse();
	test_tables();
	test_listener();
	return tap_done();
}
