/*
 * token.h: OAuth 2.0 access tokens (SPEC section 5). The only module that
 * holds client secrets, keys and refresh tokens; what leaves it is a
 * short-lived access token. Grants: client_credentials with a secret
 * (inline, file or command), a certificate (JWT assertion, jwt.c) or a
 * federated assertion file; refresh_token for delegated accounts.
 *
 * Cache: one file per account in cache_dir (directory 0700, files 0600),
 * holding the access token, its expiry and the refresh token, tied to the
 * token URL, client id and scope it was issued for. Every read-check-
 * request-write runs under flock(2) on a lock file beside it, so a burst of
 * parallel sendmail calls makes exactly one request; writes go to a temp
 * file, fsync, rename. An access token is reused until TOKEN_MIN_REMAINING
 * seconds before it expires. An unreadable or damaged cache file is
 * discarded with a warning.
 */
#ifndef TM_TOKEN_H
#define TM_TOKEN_H

#include <stdbool.h>
#include <time.h>

#include "config.h"
#include "err.h"
#include "util.h"

/* Microsoft's high-volume SMTP endpoint rejects tokens close to expiry. */
#define TOKEN_MIN_REMAINING	600
/* expires_in when the response has none. */
#define TOKEN_DEFAULT_LIFETIME	3600

struct json_doc;

/*
 * Where tokens come from in setgid mode (SPEC 9): a process that kept the
 * group answers for the account (broker.c). token_get and token_invalidate
 * hand the request over when a context has one, so the code that delivers
 * never touches secrets or the cache itself.
 */
struct token_broker {
	int (*get)(const struct token_broker *b, const char *account, char **out,
	    struct tm_err *err);
	int (*drop)(const struct token_broker *b, const char *account, struct tm_err *err);
	void *ctx;
};

struct token_context {
	const struct config *cfg;
	const struct account *account;
	const struct config_params *params;	/* uid and modes for secret-file checks */
	bool setgid;			/* do not honour *_proxy variables; the cache
					   directory is root:group 2770, files 0660 */
	long timeout_seconds;		/* per HTTP request; <= 0: TM_HTTP_TIMEOUT_SECONDS */
	const struct token_broker *broker; /* non-NULL: ask it instead (setgid mode) */
};

/*
 * A valid access token for c->account into *out (heap; free with
 * secret_free). From the cache when it has more than TOKEN_MIN_REMAINING
 * seconds left, else from the token endpoint (a refresh token grant for
 * delegated accounts; a rotated refresh token is saved before the access
 * token is returned). A token is reused for at most a day, whatever
 * expires_in says. Errors (err; the exit codes are tabled in
 * token_error.c): EX_TEMPFAIL (endpoint unreachable, timeout, 5xx, 429,
 * temporarily_unavailable, the cache lock busy too long), EX_NOPERM (the
 * endpoint refused the credentials, consent or grant: msg "token endpoint
 * refused account A: <error> AADSTSn: <first sentence>", hint), EX_CONFIG
 * (wrong tenant/client/scope per the endpoint; a secret that cannot be
 * read or is not private; a cache directory that is not private; no
 * refresh token yet: run `tokenmail authorize A`), EX_PROTOCOL (an answer
 * that is not a token), EX_IOERR (the cache cannot be written; for a
 * client_credentials token that is only a warning). Transport failures
 * come from http_perform prefixed "cannot get a token for account A: ".
 */
int token_get(const struct token_context *c, char **out, struct tm_err *err);

/* Drop the cached access token (a server rejected it); the refresh token
   stays. 0 also when nothing was cached. Errors as the cache's in token_get. */
int token_invalidate(const struct token_context *c, struct tm_err *err);

/*
 * POST form to url and parse the JSON answer into *resp (caller frees with
 * json_free): 0 for a 2xx JSON object without "error" (access_token is not
 * checked here: the device code endpoint has none). An error answer (HTTP
 * 4xx/5xx with "error") becomes -1 with err as token_get describes; *resp
 * is then NULL. Shared with authorize.c, which needs the raw "error" of a
 * pending device-code poll: for that, pass keep_errors = true and get 0
 * with the error document for a 4xx other than 429 (5xx and 429 stay
 * errors: EX_TEMPFAIL). form may hold secrets: it is never traced.
 */
int token_post(const struct token_context *c, const char *url, const struct strbuf *form,
    bool keep_errors, struct json_doc **resp, struct tm_err *err);

/* Save a token response (access token, expires_in, refresh_token) to the
   cache, under the lock: authorize.c stores what the user's sign-in got.
   An answer without refresh_token keeps the cached one. Errors: EX_PROTOCOL
   (no usable access_token, a token type other than Bearer, a bad
   expires_in), the cache's as in token_get. */
int token_store_response(const struct token_context *c, const struct json_doc *resp,
    struct tm_err *err);

/*
 * Turn a token endpoint error (HTTP status and body) into err: msg
 * "<error> AADSTSn: <first sentence of error_description>" (or
 * "<error>: <sentence>" without a code, "token endpoint answered HTTP N"
 * for a body that is no OAuth error), the exit code (75 for temporary, 77
 * for refused credentials or consent, 78 for a wrong tenant/client/scope;
 * the table is in token_error.c), a hint naming the usual fix ("ACCOUNT"
 * stands for the account in "run tokenmail authorize ACCOUNT"), server
 * "HTTP N: <first line of the description>", and trace_id, correlation_id
 * and timestamp in detail, never in msg. err is cleared first. Pure: tests
 * drive it with Entra-shaped bodies. Always returns -1.
 */
int token_endpoint_error(long status, const char *body, size_t len, struct tm_err *err);

/* The endpoints next to the token URL ("/devicecode", "/authorize" for
   Microsoft; config's device_code_url / authorize_url override): what
   config_device_code_url() / config_authorize_url() give, copied into b
   (initialized by the caller, reset here). NULL when there is none or it
   does not fit b's limit. */
const char *token_device_code_url(const struct account *a, struct strbuf *b);
const char *token_authorize_url(const struct account *a, struct strbuf *b);

#endif
