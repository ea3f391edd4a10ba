/*
 * authorize.c: the one-time sign-in of a delegated account (SPEC 5,
 * PROTOCOL 1.4 and 1.6): what both flows share, the pure helpers, and the
 * device code flow. The authorization code + PKCE flow on a 127.0.0.1
 * redirect is in authorize_browser.c. token.c does the HTTP and keeps the
 * result.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include "authorize.h"
#include "authorize_priv.h"
#include "base64.h"
#include "http.h"
#include "json.h"
#include "log.h"
#include "secret.h"
#include "tm_limits.h"
#include "util.h"

/* A request body: the client secret once encoded, plus a code or device code. */
#define AUTHORIZE_FORM_MAX	(3 * TM_SECRET_MAX + 16384)
/* The largest Entra "error_codes" array worth passing on. */
#define AUTHORIZE_ERROR_CODES	8

/* ---- shared ---- */

long long
authorize_now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void
sleep_seconds(long seconds)
{
	struct timespec left = { .tv_sec = seconds, .tv_nsec = 0 };

	/* A signal that does not end us must not shorten the interval. */
	while (nanosleep(&left, &left) < 0 && errno == EINTR)
		continue;
}

/*
 * A request body that will hold a secret or a code. It is allocated at its
 * limit at once: growing it would realloc and leave copies in freed memory.
 */
void
authorize_form_init(struct strbuf *b)
{
	strbuf_init(b, AUTHORIZE_FORM_MAX);
	b->data = xmalloc(AUTHORIZE_FORM_MAX + 1);
	b->cap = AUTHORIZE_FORM_MAX + 1;
	b->data[0] = '\0';
}

void
authorize_form_free(struct strbuf *b)
{
	secret_wipe(b->data, b->len);
	strbuf_free(b);
}

int
authorize_form_too_large(struct tm_err *err)
{
	return tm_err_set(err, TM_ERR_INTERNAL, EX_SOFTWARE,
	    "the token request is larger than %d octets", AUTHORIZE_FORM_MAX);
}

/* client_secret, only for an account that has one: public clients must
   not send any (AADSTS700025). */
int
authorize_form_add_secret(const struct token_context *c, struct strbuf *form, struct tm_err *err)
{
	const struct account *a = c->account;
	char *secret = NULL;
	int rc = 0;

	if (!a->client_secret && !a->client_secret_file && !a->client_secret_command)
		return 0;
	if (secret_client_secret(a, c->params, &secret, err) < 0)
		return -1;
	if (http_form_add(form, "client_secret", secret) < 0)
		rc = authorize_form_too_large(err);
	secret_free(secret);
	return rc;
}

int
authorize_account_check(const struct account *a, struct tm_err *err)
{
	if (a->grant != GRANT_REFRESH_TOKEN) {
		tm_err_set(err, TM_ERR_USAGE, EX_USAGE,
		    "account %s does not use grant refresh_token: it needs no sign-in", a->name);
		tm_err_hint(err, "tokenmail authorize is for delegated accounts (grant: refresh_token)");
		return -1;
	}
	if (config_token_url(a) == NULL || a->client_id == NULL) {
		tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG,
		    "account %s has no token endpoint or client_id", a->name);
		tm_err_hint(err, "set tenant (or token_url) and client_id");
		return -1;
	}
	return 0;
}

int
authorize_write_out(FILE *out, struct tm_err *err)
{
	if (fflush(out) == EOF || ferror(out))
		return tm_err_set(err, TM_ERR_IO, EX_IOERR,
		    "cannot write the sign-in instructions: %s", strerror(errno));
	return 0;
}

/* Keep what the sign-in got; without a refresh token it was for nothing. */
int
authorize_finish(const struct token_context *c, const struct json_doc *resp, FILE *out,
    struct tm_err *err)
{
	if (json_get(resp, "access_token") == NULL)
		return tm_err_set(err, TM_ERR_PROTO, EX_PROTOCOL,
		    "the token endpoint answered with neither a token nor an error");
	if (json_get(resp, "refresh_token") == NULL) {
		tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG,
		    "the token endpoint issued no refresh token for account %s",
		    c->account->name);
		tm_err_hint(err, "add offline_access to scope");
		return -1;
	}
	if (token_store_response(c, resp, err) < 0)
		return -1;
	fprintf(out, "tokenmail: account %s is authorized; "
	    "its refresh token is stored in the token cache\n", c->account->name);
	fflush(out);
	return 0;
}

/* ---- pure helpers ---- */

static int
encode_b64url(const void *data, size_t len, char out[AUTHORIZE_PKCE_SIZE],
    struct tm_err *err)
{
	struct strbuf b;
	int rc = -1;

	strbuf_init(&b, AUTHORIZE_PKCE_SIZE - 1);
	if (base64url_encode(&b, data, len) < 0 || b.len != AUTHORIZE_PKCE_SIZE - 1) {
		tm_err_set(err, TM_ERR_INTERNAL, EX_SOFTWARE, "cannot encode the PKCE values");
		goto out;
	}
	memcpy(out, b.data, AUTHORIZE_PKCE_SIZE);
	rc = 0;
out:
	secret_wipe(b.data, b.len);
	strbuf_free(&b);
	return rc;
}

int
authorize_pkce_verifier(const unsigned char raw[AUTHORIZE_PKCE_RANDOM],
    char out[AUTHORIZE_PKCE_SIZE], struct tm_err *err)
{
	return encode_b64url(raw, AUTHORIZE_PKCE_RANDOM, out, err);
}

int
authorize_pkce_challenge(const char *verifier, char out[AUTHORIZE_PKCE_SIZE],
    struct tm_err *err)
{
	unsigned char digest[32];

	if (gnutls_hash_fast(GNUTLS_DIG_SHA256, verifier, strlen(verifier), digest) < 0)
		return tm_err_set(err, TM_ERR_INTERNAL, EX_SOFTWARE, "SHA-256 is not available");
	return encode_b64url(digest, sizeof(digest), out, err);
}

bool
authorize_state_matches(const char *expected, const char *got)
{
	size_t n = strlen(expected), i;
	unsigned char diff = 0;

	if (got == NULL || n == 0 || strlen(got) != n)
		return false;
	/* Constant time: how much matched must not show in the timing. */
	for (i = 0; i < n; i++)
		diff |= (unsigned char)(expected[i] ^ got[i]);
	return diff == 0;
}

/* One decoded octet from s[*i] on, advancing *i; -1 on a bad escape. */
static int
query_octet(const char *s, size_t n, size_t *i)
{
	int hi, lo;

	if (s[*i] == '+') {
		(*i)++;
		return ' ';
	}
	if (s[*i] != '%')
		return (unsigned char)s[(*i)++];
	if (n - *i < 3 || (hi = hex_value(s[*i + 1])) < 0 || (lo = hex_value(s[*i + 2])) < 0)
		return -1;
	*i += 3;
	return hi << 4 | lo;
}

char *
authorize_query_decode(const char *s, size_t n)
{
	char *out = xmalloc(n + 1);
	size_t i = 0, o = 0;
	int c;

	while (i < n) {
		c = query_octet(s, n, &i);
		/* -1 too: nothing we keep may hold NUL or control bytes. */
		if (c < 0x20 || c == 0x7f) {
			secret_wipe(out, n + 1);
			free(out);
			return NULL;
		}
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return out;
}

static bool
key_is(const char *k, size_t n, const char *name)
{
	return n == strlen(name) && memcmp(k, name, n) == 0;
}

static char **
redirect_slot(struct authorize_redirect *r, const char *k, size_t n)
{
	if (key_is(k, n, "code"))
		return &r->code;
	if (key_is(k, n, "state"))
		return &r->state;
	if (key_is(k, n, "error"))
		return &r->error;
	if (key_is(k, n, "error_description"))
		return &r->error_description;
	return NULL;
}

static int
query_param(const char *p, size_t n, struct authorize_redirect *r)
{
	const char *eq = memchr(p, '=', n);
	size_t klen = eq ? (size_t)(eq - p) : n;
	char **slot = redirect_slot(r, p, klen);

	/* session_state, client_info, iss: not ours to check. */
	if (slot == NULL)
		return 0;
	/* Twice: no telling which one to believe. */
	if (*slot != NULL)
		return -1;
	*slot = eq ? authorize_query_decode(eq + 1, n - klen - 1) : xstrdup("");
	return *slot ? 0 : -1;
}

static enum authorize_request
parse_query(const char *q, size_t n, struct authorize_redirect *r)
{
	size_t i = 0, end;
	const char *amp;

	while (i < n) {
		amp = memchr(q + i, '&', n - i);
		end = amp ? (size_t)(amp - q) : n;
		if (query_param(q + i, end - i, r) < 0)
			return AUTHORIZE_REQ_BAD;
		i = end + 1;
	}
	if (r->error == NULL && (r->code == NULL || r->code[0] == '\0'))
		return AUTHORIZE_REQ_BAD;
	return AUTHORIZE_REQ_REDIRECT;
}

static bool
version_ok(const char *v, size_t n)
{
	return n == 8 && (memcmp(v, "HTTP/1.1", 8) == 0 || memcmp(v, "HTTP/1.0", 8) == 0);
}

enum authorize_request
authorize_parse_request(const char *head, size_t len, struct authorize_redirect *r)
{
	const char *eol, *target, *sp, *query;
	size_t line;

	memset(r, 0, sizeof(*r));
	eol = memchr(head, '\n', len);
	line = eol ? (size_t)(eol - head) : len;
	if (line > 0 && head[line - 1] == '\r')
		line--;
	if (line < 4 || memcmp(head, "GET ", 4) != 0)
		return AUTHORIZE_REQ_BAD;
	target = head + 4;
	sp = memchr(target, ' ', line - 4);
	if (sp == NULL || !version_ok(sp + 1, (size_t)(head + line - (sp + 1))))
		return AUTHORIZE_REQ_BAD;
	query = memchr(target, '?', (size_t)(sp - target));
	if ((query ? query : sp) - target != 1 || target[0] != '/')
		return AUTHORIZE_REQ_NOT_FOUND;
	if (query == NULL)
		return AUTHORIZE_REQ_BAD;
	return parse_query(query + 1, (size_t)(sp - query - 1), r);
}

void
authorize_redirect_free(struct authorize_redirect *r)
{
	secret_free(r->code);
	free(r->state);
	free(r->error);
	free(r->error_description);
	memset(r, 0, sizeof(*r));
}

int
authorize_error_exit(const char *error)
{
	static const struct { const char *error; int exit; } table[] = {
		{ "access_denied", EX_NOPERM },
		{ "consent_required", EX_NOPERM },
		{ "login_required", EX_NOPERM },
		{ "interaction_required", EX_NOPERM },
		{ "invalid_request", EX_CONFIG },
		{ "invalid_client", EX_CONFIG },
		{ "invalid_scope", EX_CONFIG },
		{ "invalid_resource", EX_CONFIG },
		{ "unauthorized_client", EX_CONFIG },
		{ "unsupported_response_type", EX_CONFIG },
		{ "server_error", EX_TEMPFAIL },
		{ "temporarily_unavailable", EX_TEMPFAIL },
	};
	size_t i;

	for (i = 0; i < sizeof(table) / sizeof(table[0]); i++)
		if (strcmp(error, table[i].error) == 0)
			return table[i].exit;
	/* Unknown: a refusal until someone shows otherwise. */
	return EX_NOPERM;
}

enum authorize_poll
authorize_poll_action(const char *error)
{
	static const struct { const char *error; enum authorize_poll action; } table[] = {
		{ "authorization_pending", AUTHORIZE_POLL_PENDING },
		{ "slow_down", AUTHORIZE_POLL_SLOW_DOWN },
		{ "authorization_declined", AUTHORIZE_POLL_DECLINED },
		{ "access_denied", AUTHORIZE_POLL_DECLINED },	/* RFC 8628's name for it */
		{ "expired_token", AUTHORIZE_POLL_EXPIRED },
		{ "bad_verification_code", AUTHORIZE_POLL_BAD_CODE },
	};
	size_t i;

	for (i = 0; i < sizeof(table) / sizeof(table[0]); i++)
		if (strcmp(error, table[i].error) == 0)
			return table[i].action;
	return AUTHORIZE_POLL_OTHER;
}

/* ---- device code flow ---- */

struct device {
	struct json_doc *doc;		/* the device code response */
	const char *device_code;	/* points into doc */
	long expires_in;		/* seconds */
	long interval;			/* seconds between polls */
};

enum poll_step { STEP_AGAIN, STEP_DONE, STEP_FAIL };

static int
device_parse(struct device *d, struct tm_err *err)
{
	d->device_code = json_get(d->doc, "device_code");
	if (d->device_code == NULL || json_get(d->doc, "user_code") == NULL ||
	    json_get(d->doc, "verification_uri") == NULL)
		return tm_err_set(err, TM_ERR_PROTO, EX_PROTOCOL, "the device code response "
		    "lacks device_code, user_code or verification_uri");
	if (json_get_long(d->doc, "expires_in", 1, 86400, &d->expires_in) < 0)
		d->expires_in = AUTHORIZE_DEVICE_EXPIRES;
	if (json_get_long(d->doc, "interval", 1, 3600, &d->interval) < 0)
		d->interval = AUTHORIZE_DEVICE_INTERVAL;
	return 0;
}

static int
device_start(const struct token_context *c, struct device *d, struct tm_err *err)
{
	const struct account *a = c->account;
	struct strbuf ubuf, form;
	const char *url;
	int rc = -1;

	strbuf_init(&ubuf, TM_PATH_MAX);
	strbuf_init(&form, AUTHORIZE_URL_MAX);
	url = token_device_code_url(a, &ubuf);
	if (url == NULL) {
		tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG,
		    "account %s has no device code endpoint", a->name);
		tm_err_hint(err, "set tenant, token_url or device_code_url");
		goto out;
	}
	if (http_form_add(&form, "client_id", a->client_id) < 0 ||
	    http_form_add(&form, "scope", config_scope(a)) < 0) {
		authorize_form_too_large(err);
		goto out;
	}
	log_trace("authorize: requesting a device code from %s", url);
	if (token_post(c, url, &form, false, &d->doc, err) < 0)
		goto out;
	rc = device_parse(d, err);
out:
	strbuf_free(&ubuf);
	strbuf_free(&form);
	return rc;
}

static int
device_show(const struct device *d, FILE *out, struct tm_err *err)
{
	const char *msg = json_get(d->doc, "message");
	char text[2048], uri[1024], code[256];

	/* The provider's text goes to a terminal: no escape sequences from it. */
	if (msg != NULL && msg[0] != '\0') {
		log_sanitize(text, sizeof(text), msg, strlen(msg));
		fprintf(out, "%s\n", text);
	} else {
		msg = json_get(d->doc, "verification_uri");
		log_sanitize(uri, sizeof(uri), msg, strlen(msg));
		msg = json_get(d->doc, "user_code");
		log_sanitize(code, sizeof(code), msg, strlen(msg));
		fprintf(out, "To sign in, open %s and enter the code %s\n", uri, code);
	}
	return authorize_write_out(out, err);
}

static int
device_expired(const struct json_doc *resp, struct tm_err *err)
{
	tm_err_set(err, TM_ERR_RESP, EX_TEMPFAIL,
	    "the code expired before sign-in finished; run tokenmail authorize again");
	if (resp != NULL && json_get(resp, "error_description") != NULL)
		tm_err_server(err, json_get(resp, "error_description"));
	return -1;
}

/* An error we do not handle here, told the way token.c tells all of them:
   it needs the body, so rebuild the part that matters from the document. */
static int
poll_endpoint_error(const struct json_doc *resp, const char *error, const char *name,
    struct tm_err *err)
{
	const char *desc = json_get(resp, "error_description");
	long codes[AUTHORIZE_ERROR_CODES];
	struct strbuf b;
	int n, i, bad;

	strbuf_init(&b, TM_JSON_MAX);
	bad = strbuf_append_str(&b, "{\"error\":") | json_append_string(&b, error);
	if (desc != NULL)
		bad |= strbuf_append_str(&b, ",\"error_description\":") |
		    json_append_string(&b, desc);
	n = json_get_long_array(resp, "error_codes", codes, AUTHORIZE_ERROR_CODES);
	for (i = 0; i < n; i++)
		bad |= strbuf_appendf(&b, "%s%ld", i ? "," : ",\"error_codes\":[", codes[i]);
	bad |= strbuf_append_str(&b, n > 0 ? "]}" : "}");
	if (bad)
		tm_err_set(err, TM_ERR_RESP, EX_NOPERM, "the token endpoint refused: %s", error);
	else
		token_endpoint_error(400, b.data, b.len, err);
	/* As token_post says it for every other refusal. */
	tm_err_prefix(err, "token endpoint refused account %s", name);
	strbuf_free(&b);
	return -1;
}

static enum poll_step
poll_error(const struct token_context *c, const struct json_doc *resp, const char *error,
    long *interval, struct tm_err *err)
{
	const char *url = config_token_url(c->account);

	switch (authorize_poll_action(error)) {
	case AUTHORIZE_POLL_PENDING:
		return STEP_AGAIN;
	case AUTHORIZE_POLL_SLOW_DOWN:
		*interval += AUTHORIZE_SLOW_DOWN_STEP;
		log_trace("authorize: polling %s (interval %ld s)", url, *interval);
		return STEP_AGAIN;
	case AUTHORIZE_POLL_DECLINED:
		tm_err_set(err, TM_ERR_AUTH, EX_NOPERM, "sign-in was declined");
		tm_err_hint(err, "run tokenmail authorize again and accept the sign-in");
		break;
	case AUTHORIZE_POLL_EXPIRED:
		device_expired(resp, err);
		break;
	case AUTHORIZE_POLL_BAD_CODE:
		tm_err_set(err, TM_ERR_PROTO, EX_PROTOCOL,
		    "the token endpoint does not recognise the device code it issued");
		tm_err_hint(err, "device_code_url and token_url must belong to the same "
		    "authority and tenant");
		break;
	case AUTHORIZE_POLL_OTHER:
		poll_endpoint_error(resp, error, c->account->name, err);
		break;
	}
	return STEP_FAIL;
}

/* A poll that got no answer at all: RFC 8628 3.5 says back off and go on. */
static enum poll_step
poll_unanswered(long *interval, struct tm_err *err)
{
	if (err->exit != EX_TEMPFAIL)
		return STEP_FAIL;
	*interval = *interval * 2 > AUTHORIZE_BACKOFF_MAX ? AUTHORIZE_BACKOFF_MAX :
	    *interval * 2;
	/* Said without -v too: the person is waiting and should know why. */
	log_warn("%s; polling again in %ld s", err->msg, *interval);
	tm_err_clear(err);
	return STEP_AGAIN;
}

static enum poll_step
poll_once(const struct token_context *c, const struct strbuf *form, long *interval,
    struct json_doc **tok, struct tm_err *err)
{
	const char *url = config_token_url(c->account);
	struct json_doc *resp = NULL;
	const char *error;
	enum poll_step step;

	if (token_post(c, url, form, true, &resp, err) < 0)
		return poll_unanswered(interval, err);
	error = json_get(resp, "error");
	if (error == NULL) {
		*tok = resp;
		return STEP_DONE;
	}
	step = poll_error(c, resp, error, interval, err);
	json_free(resp);
	return step;
}

static int
device_poll_form(const struct token_context *c, const struct device *d, struct strbuf *form,
    struct tm_err *err)
{
	if (http_form_add(form, "grant_type", "urn:ietf:params:oauth:grant-type:device_code") < 0 ||
	    http_form_add(form, "client_id", c->account->client_id) < 0 ||
	    http_form_add(form, "device_code", d->device_code) < 0)
		return authorize_form_too_large(err);
	return authorize_form_add_secret(c, form, err);
}

/* Poll every interval seconds until a token, a final error or expires_in. */
static int
device_poll(const struct token_context *c, const struct device *d, struct json_doc **tok,
    struct tm_err *err)
{
	long long deadline = authorize_now_ms() + d->expires_in * 1000LL;
	long interval = d->interval;
	enum poll_step step = STEP_AGAIN;
	struct strbuf form;

	authorize_form_init(&form);
	if (device_poll_form(c, d, &form, err) < 0)
		step = STEP_FAIL;
	else
		log_trace("authorize: polling %s (interval %ld s)",
		    config_token_url(c->account), interval);
	while (step == STEP_AGAIN) {
		sleep_seconds(interval);
		if (authorize_now_ms() > deadline) {
			device_expired(NULL, err);
			step = STEP_FAIL;
		} else {
			step = poll_once(c, &form, &interval, tok, err);
		}
	}
	authorize_form_free(&form);
	return step == STEP_DONE ? 0 : -1;
}

int
authorize_device_code(const struct token_context *c, FILE *out, struct tm_err *err)
{
	struct device d = { 0 };
	struct json_doc *tok = NULL;
	int rc = -1;

	if (authorize_account_check(c->account, err) < 0 ||
	    device_start(c, &d, err) < 0 ||
	    device_show(&d, out, err) < 0 ||
	    device_poll(c, &d, &tok, err) < 0 ||
	    authorize_finish(c, tok, out, err) < 0)
		goto out;
	rc = 0;
out:
	if (tok != NULL)
		json_free(tok);
	if (d.doc != NULL)
		json_free(d.doc);
	return rc;
}
