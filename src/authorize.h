/*
 * authorize.h: `tokenmail authorize ACCOUNT`, the one-time sign-in that
 * gives a delegated (grant: refresh_token) account its first refresh
 * token. Device code flow by default (RFC 8628: prints the provider's
 * message with URL and code, polls honouring interval, slow_down adding 5
 * seconds, authorization_pending, expired_token, authorization_declined);
 * --browser: authorization code with PKCE S256 (RFC 7636) and a one-shot
 * HTTP listener on 127.0.0.1 at a random port, state checked. The result is
 * stored with token_store_response().
 *
 * What goes to out (the integration tests parse it):
 *   device code: the provider's "message" (control bytes escaped), or
 *     "To sign in, open VERIFICATION_URI and enter the code USER_CODE";
 *   browser: "Open this URL in a browser to sign in:" and "  URL";
 *   both, on success: "tokenmail: account A is authorized; its refresh
 *     token is stored in the token cache".
 * Nothing else is launched: the person opens the URL themselves.
 * The -v trace names URLs, ports and intervals, never codes, verifiers or
 * tokens.
 */
#ifndef TM_AUTHORIZE_H
#define TM_AUTHORIZE_H

#include <stddef.h>
#include <stdbool.h>
#include <stdio.h>

#include "err.h"
#include "token.h"

/* RFC 8628 3.2 defaults when the device code response lacks them. */
#define AUTHORIZE_DEVICE_EXPIRES	900
#define AUTHORIZE_DEVICE_INTERVAL	5
/* RFC 8628 3.5: what slow_down adds, for this and every later poll. */
#define AUTHORIZE_SLOW_DOWN_STEP	5
/* Cap of the poll interval after network failures (doubling back-off). */
#define AUTHORIZE_BACKOFF_MAX		60

/* Browser flow: how long the redirect may take, how long one connection
   may take to send its request head, and that head's size limit. */
#define AUTHORIZE_WAIT_SECONDS		300
#define AUTHORIZE_CONN_SECONDS		10
#define AUTHORIZE_HEAD_MAX		8192
/* Connections served at once: browsers open idle speculative ones. */
#define AUTHORIZE_CONNS_MAX		8

/*
 * Device code flow; instructions and the success line go to out.
 * Errors (err): EX_USAGE (the account does not use grant refresh_token),
 * EX_CONFIG (no device code or token URL; no refresh token issued: add
 * offline_access to scope; an unreadable client secret), EX_NOPERM
 * (authorization_declined), EX_TEMPFAIL (expired_token, or expires_in
 * passed without a sign-in: run it again; the endpoint unreachable),
 * EX_PROTOCOL (bad_verification_code: the endpoint does not know the code
 * it issued; a response that is neither a token nor an error),
 * EX_IOERR (out cannot be written); anything else as token_endpoint_error.
 */
int authorize_device_code(const struct token_context *c, FILE *out, struct tm_err *err);

/*
 * Authorization code + PKCE; the URL to open and the success line go to
 * out. Waits AUTHORIZE_WAIT_SECONDS for the redirect. Errors (err):
 * EX_USAGE and EX_CONFIG as above, EX_OSERR (cannot listen on 127.0.0.1),
 * EX_TEMPFAIL (no redirect in time; server_error/temporarily_unavailable),
 * EX_NOPERM (state mismatch: possible CSRF; access_denied and other
 * refusals), EX_CONFIG (invalid_request, invalid_scope, unauthorized_client
 * and the like from the authorize endpoint); the code redemption fails as
 * token_post describes.
 */
int authorize_browser(const struct token_context *c, FILE *out, struct tm_err *err);

/* ---- for tests: the pure helpers and the listener, driven directly ---- */

struct authorize_options {
	long wait_seconds;	/* browser: overall wait for the redirect, > 0 */
	long conn_seconds;	/* browser: one connection's request head, > 0 */
};

/* authorize_browser with o (NULL: the defaults above). */
int authorize_browser_with(const struct token_context *c, FILE *out,
    const struct authorize_options *o, struct tm_err *err);

/* RFC 7636 4.1: 32 random octets give a 43-character verifier. */
#define AUTHORIZE_PKCE_RANDOM	32
#define AUTHORIZE_PKCE_SIZE	44	/* 43 characters and NUL */
/* RFC 6749 10.12 state: 16 random octets as 32 hex digits. */
#define AUTHORIZE_STATE_SIZE	33

/* base64url(raw) into out (RFC 7636 4.1). -1 with err (internal) on failure. */
int authorize_pkce_verifier(const unsigned char raw[AUTHORIZE_PKCE_RANDOM],
    char out[AUTHORIZE_PKCE_SIZE], struct tm_err *err);
/* base64url(SHA-256(verifier)) into out (RFC 7636 4.2, S256). */
int authorize_pkce_challenge(const char *verifier, char out[AUTHORIZE_PKCE_SIZE],
    struct tm_err *err);

/* True when got is exactly expected; compared in constant time; NULL got is false. */
bool authorize_state_matches(const char *expected, const char *got);

/* Decode s[n] from a query string ("%41" and '+' as space) into a new
   string (free with secret_free); NULL on a bad escape, NUL or control byte. */
char *authorize_query_decode(const char *s, size_t n);

/* What the redirect carried; every field heap or NULL. */
struct authorize_redirect {
	char *code;		/* a secret: wiped by authorize_redirect_free */
	char *state;
	char *error;
	char *error_description;
};

enum authorize_request {
	AUTHORIZE_REQ_REDIRECT,	/* GET /?... with code or error: r filled */
	AUTHORIZE_REQ_NOT_FOUND,	/* another path (favicon.ico): 404, keep waiting */
	AUTHORIZE_REQ_BAD	/* not GET, malformed, duplicate or undecodable
				   parameters, neither code nor error: 400, keep waiting */
};

/* Parse the request line of head[len] (the request head as read). r is
   zeroed first and may hold fields whatever the result: free it. */
enum authorize_request authorize_parse_request(const char *head, size_t len,
    struct authorize_redirect *r);
void authorize_redirect_free(struct authorize_redirect *r);

/* The sysexits code for an "error" of the authorize endpoint (RFC 6749 4.1.2.1). */
int authorize_error_exit(const char *error);

enum authorize_poll {
	AUTHORIZE_POLL_PENDING,		/* authorization_pending: poll again */
	AUTHORIZE_POLL_SLOW_DOWN,	/* slow_down: interval += 5, poll again */
	AUTHORIZE_POLL_DECLINED,	/* authorization_declined */
	AUTHORIZE_POLL_EXPIRED,		/* expired_token */
	AUTHORIZE_POLL_BAD_CODE,	/* bad_verification_code */
	AUTHORIZE_POLL_OTHER		/* anything else: token_endpoint_error */
};

/* What a device code poll's "error" means (RFC 8628 3.5). */
enum authorize_poll authorize_poll_action(const char *error);

/* A listening socket on 127.0.0.1 at a kernel-chosen port (close-on-exec). */
struct authorize_listener {
	int fd;
	unsigned port;
};

/* -1 with err (EX_OSERR) when the socket cannot be made. */
int authorize_listen(struct authorize_listener *l, struct tm_err *err);
void authorize_listener_close(struct authorize_listener *l);

/*
 * Serve l until a redirect arrives or o->wait_seconds pass. Returns 0 with
 * *code (free with secret_free) after answering 200; -1 with err on a state
 * mismatch, an error redirect (each answered with a short page first) or
 * the timeout. Other requests get 404/400 and the wait goes on.
 */
int authorize_wait_code(const struct authorize_listener *l, const char *state,
    const struct authorize_options *o, char **code, struct tm_err *err);

#endif
