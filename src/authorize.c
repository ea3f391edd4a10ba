/*
 * authorize.c: the one-time sign-in of a delegated account (SPEC 5,
 * PROTOCOL 1.4 and 1.6): device code flow, or authorization code + PKCE
 * on a 127.0.0.1 redirect. token.c does the HTTP and keeps the result.
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
#include "base64.h"
#include "http.h"
#include "json.h"
#include "log.h"
#include "secret.h"
#include "tm_limits.h"
#include "util.h"

/* A request body: the client secret once encoded, plus a code or device code. */
#define AUTHORIZE_FORM_MAX	(3 * TM_SECRET_MAX + 16384)
/* The authorize URL printed for the person. */
#define AUTHORIZE_URL_MAX	16384
/* The largest Entra "error_codes" array worth passing on. */
#define AUTHORIZE_ERROR_CODES	8

#define PAGE(text) "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">" \
	"<title>tokenmail</title></head><body><p>" text "</p></body></html>\n"
#define PAGE_DONE	PAGE("tokenmail: sign-in complete, you can close this window")
#define PAGE_FAILED	PAGE("tokenmail: sign-in failed; the terminal says why. " \
	"You can close this window")
#define PAGE_STATE	PAGE("tokenmail: this answer does not belong to the sign-in " \
	"in progress (state mismatch); nothing was stored")
#define PAGE_NOT_FOUND	PAGE("tokenmail: not found")
#define PAGE_BAD	PAGE("tokenmail: bad request")

static const struct authorize_options default_options = {
	.wait_seconds = AUTHORIZE_WAIT_SECONDS,
	.conn_seconds = AUTHORIZE_CONN_SECONDS,
};

/* ---- shared ---- */

static long long
now_ms(void)
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
static void
form_init(struct strbuf *b)
{
	strbuf_init(b, AUTHORIZE_FORM_MAX);
	b->data = xmalloc(AUTHORIZE_FORM_MAX + 1);
	b->cap = AUTHORIZE_FORM_MAX + 1;
	b->data[0] = '\0';
}

static void
form_free(struct strbuf *b)
{
	secret_wipe(b->data, b->len);
	strbuf_free(b);
}

static int
form_too_large(struct tm_err *err)
{
	return tm_err_set(err, TM_ERR_INTERNAL, EX_SOFTWARE,
	    "the token request is larger than %d octets", AUTHORIZE_FORM_MAX);
}

/* client_secret, only for an account that has one: public clients must
   not send any (AADSTS700025). */
static int
form_add_secret(const struct token_context *c, struct strbuf *form, struct tm_err *err)
{
	const struct account *a = c->account;
	char *secret = NULL;
	int rc = 0;

	if (!a->client_secret && !a->client_secret_file && !a->client_secret_command)
		return 0;
	if (secret_client_secret(a, c->params, &secret, err) < 0)
		return -1;
	if (http_form_add(form, "client_secret", secret) < 0)
		rc = form_too_large(err);
	secret_free(secret);
	return rc;
}

static int
account_check(const struct account *a, struct tm_err *err)
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

static int
write_out(FILE *out, struct tm_err *err)
{
	if (fflush(out) == EOF || ferror(out))
		return tm_err_set(err, TM_ERR_IO, EX_IOERR,
		    "cannot write the sign-in instructions: %s", strerror(errno));
	return 0;
}

/* Keep what the sign-in got; without a refresh token it was for nothing. */
static int
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

static int
hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
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
		form_too_large(err);
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
	return write_out(out, err);
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
		return form_too_large(err);
	return form_add_secret(c, form, err);
}

/* Poll every interval seconds until a token, a final error or expires_in. */
static int
device_poll(const struct token_context *c, const struct device *d, struct json_doc **tok,
    struct tm_err *err)
{
	long long deadline = now_ms() + d->expires_in * 1000LL;
	long interval = d->interval;
	enum poll_step step = STEP_AGAIN;
	struct strbuf form;

	form_init(&form);
	if (device_poll_form(c, d, &form, err) < 0)
		step = STEP_FAIL;
	else
		log_trace("authorize: polling %s (interval %ld s)",
		    config_token_url(c->account), interval);
	while (step == STEP_AGAIN) {
		sleep_seconds(interval);
		if (now_ms() > deadline) {
			device_expired(NULL, err);
			step = STEP_FAIL;
		} else {
			step = poll_once(c, &form, &interval, tok, err);
		}
	}
	form_free(&form);
	return step == STEP_DONE ? 0 : -1;
}

int
authorize_device_code(const struct token_context *c, FILE *out, struct tm_err *err)
{
	struct device d = { 0 };
	struct json_doc *tok = NULL;
	int rc = -1;

	if (account_check(c->account, err) < 0 ||
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

/* ---- browser flow: the loopback listener ---- */

struct conn {
	int fd;			/* -1: a free slot */
	long long deadline;	/* ms, CLOCK_MONOTONIC */
	char *head;		/* AUTHORIZE_HEAD_MAX: holds the code, wiped on drop */
	size_t len;
};

struct waiter {
	const struct authorize_listener *l;
	const char *state;
	const struct authorize_options *o;
	struct conn conns[AUTHORIZE_CONNS_MAX];
	char *code;		/* the result */
};

enum wait_result { WAIT_MORE, WAIT_DONE, WAIT_FAIL };

int
authorize_listen(struct authorize_listener *l, struct tm_err *err)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);

	/* 127.0.0.1, not localhost: Entra's advice, and no IPv6 surprise. */
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	l->port = 0;
	l->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (l->fd < 0 || bind(l->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(l->fd, AUTHORIZE_CONNS_MAX) < 0 ||
	    getsockname(l->fd, (struct sockaddr *)&sa, &len) < 0) {
		tm_err_set(err, TM_ERR_INTERNAL, EX_OSERR, "cannot listen on 127.0.0.1: %s",
		    strerror(errno));
		authorize_listener_close(l);
		return -1;
	}
	l->port = ntohs(sa.sin_port);
	log_trace("authorize: listening on 127.0.0.1:%u", l->port);
	return 0;
}

void
authorize_listener_close(struct authorize_listener *l)
{
	if (l->fd >= 0)
		close(l->fd);
	l->fd = -1;
}

static void
respond(int fd, const char *status, const char *body)
{
	char buf[1024];

	if (str_format(buf, sizeof(buf), "HTTP/1.1 %s\r\n"
	    "Content-Type: text/html; charset=utf-8\r\n"
	    "Content-Length: %zu\r\n"
	    "Cache-Control: no-store\r\n"
	    "Referrer-Policy: no-referrer\r\n"
	    "Connection: close\r\n\r\n%s", status, strlen(body), body) < 0)
		return;
	/* Best effort: the answer is a courtesy, the terminal has the result. */
	if (send(fd, buf, strlen(buf), MSG_NOSIGNAL) < 0)
		log_trace("authorize: cannot answer the browser: %s", strerror(errno));
	shutdown(fd, SHUT_WR);
}

static void
conn_drop(struct conn *cn)
{
	if (cn->fd < 0)
		return;
	close(cn->fd);
	cn->fd = -1;
	secret_wipe(cn->head, cn->len);
	free(cn->head);
	cn->head = NULL;
	cn->len = 0;
}

static void
conn_accept(struct waiter *w)
{
	struct conn *slot = NULL;
	size_t i;
	int fd;

	for (i = 0; i < AUTHORIZE_CONNS_MAX && slot == NULL; i++)
		if (w->conns[i].fd < 0)
			slot = &w->conns[i];
	if (slot == NULL)
		return;
	fd = accept4(w->l->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	/* EAGAIN or a connection gone already: the next poll tells. */
	if (fd < 0)
		return;
	slot->fd = fd;
	slot->deadline = now_ms() + w->o->conn_seconds * 1000LL;
	slot->head = xmalloc(AUTHORIZE_HEAD_MAX);
	slot->len = 0;
}

static void
trace_request(const char *head, size_t len)
{
	size_t n = 0;

	/* The method and path only: the query holds the code. */
	while (n < len && n < 200 && head[n] != '?' && head[n] != '\r' && head[n] != '\n')
		n++;
	log_trace("authorize: request %.*s", (int)n, head);
}

static void
redirect_error(const struct authorize_redirect *r, struct tm_err *err)
{
	int code = authorize_error_exit(r->error);

	tm_err_set(err, TM_ERR_RESP, code, "sign-in failed: %s", r->error);
	if (r->error_description != NULL)
		tm_err_server(err, r->error_description);
	if (code == EX_TEMPFAIL)
		tm_err_hint(err, "the provider had a temporary problem; "
		    "run tokenmail authorize --browser again");
	else if (code == EX_CONFIG)
		tm_err_hint(err, "check client_id, tenant and scope, and that the app "
		    "registration has the redirect URI http://127.0.0.1 and allows public "
		    "client flows");
	else
		tm_err_hint(err, "the sign-in or the consent was refused; an administrator "
		    "may have to grant consent for the app");
}

static enum wait_result
serve_redirect(struct waiter *w, int fd, struct authorize_redirect *r, struct tm_err *err)
{
	if (!authorize_state_matches(w->state, r->state)) {
		respond(fd, "400 Bad Request", PAGE_STATE);
		tm_err_set(err, TM_ERR_PERM, EX_NOPERM, "state mismatch: possible CSRF");
		tm_err_hint(err, "the redirect did not come from this sign-in; "
		    "run tokenmail authorize --browser again");
		return WAIT_FAIL;
	}
	if (r->error != NULL) {
		respond(fd, "200 OK", PAGE_FAILED);
		redirect_error(r, err);
		return WAIT_FAIL;
	}
	respond(fd, "200 OK", PAGE_DONE);
	w->code = r->code;
	r->code = NULL;
	return WAIT_DONE;
}

static enum wait_result
conn_serve(struct waiter *w, struct conn *cn, struct tm_err *err)
{
	struct authorize_redirect r;
	enum wait_result res = WAIT_MORE;

	trace_request(cn->head, cn->len);
	switch (authorize_parse_request(cn->head, cn->len, &r)) {
	case AUTHORIZE_REQ_REDIRECT:
		res = serve_redirect(w, cn->fd, &r, err);
		break;
	case AUTHORIZE_REQ_NOT_FOUND:
		respond(cn->fd, "404 Not Found", PAGE_NOT_FOUND);
		break;
	case AUTHORIZE_REQ_BAD:
		respond(cn->fd, "400 Bad Request", PAGE_BAD);
		break;
	}
	authorize_redirect_free(&r);
	return res;
}

static bool
head_complete(const struct conn *cn)
{
	return memmem(cn->head, cn->len, "\r\n\r\n", 4) != NULL ||
	    memmem(cn->head, cn->len, "\n\n", 2) != NULL;
}

static enum wait_result
conn_read(struct waiter *w, struct conn *cn, struct tm_err *err)
{
	enum wait_result res = WAIT_MORE;
	ssize_t n;

	n = recv(cn->fd, cn->head + cn->len, AUTHORIZE_HEAD_MAX - cn->len, 0);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return WAIT_MORE;
	if (n <= 0) {
		conn_drop(cn);
		return WAIT_MORE;
	}
	cn->len += (size_t)n;
	if (head_complete(cn)) {
		res = conn_serve(w, cn, err);
		conn_drop(cn);
	} else if (cn->len == AUTHORIZE_HEAD_MAX) {
		respond(cn->fd, "431 Request Header Fields Too Large", PAGE_BAD);
		conn_drop(cn);
	}
	return res;
}

static void
conns_expire(struct waiter *w, long long now)
{
	size_t i;

	for (i = 0; i < AUTHORIZE_CONNS_MAX; i++) {
		if (w->conns[i].fd >= 0 && w->conns[i].deadline <= now) {
			log_trace("authorize: closing a connection that sent no request");
			conn_drop(&w->conns[i]);
		}
	}
}

/* Fill pfd (listener first) and return how long poll may sleep. */
static int
waiter_pollfds(const struct waiter *w, struct pollfd *pfd, long long now, long long end)
{
	long long wake = end;
	bool room = false;
	size_t i;

	for (i = 0; i < AUTHORIZE_CONNS_MAX; i++) {
		const struct conn *cn = &w->conns[i];

		pfd[i + 1] = (struct pollfd){ .fd = cn->fd, .events = POLLIN };
		if (cn->fd < 0)
			room = true;
		else if (cn->deadline < wake)
			wake = cn->deadline;
	}
	/* No free slot: leave new connections in the backlog for now. */
	pfd[0] = (struct pollfd){ .fd = w->l->fd, .events = room ? POLLIN : 0 };
	return wake <= now ? 0 : (int)(wake - now);
}

static enum wait_result
wait_timeout(const struct waiter *w, struct tm_err *err)
{
	tm_err_set(err, TM_ERR_CONN, EX_TEMPFAIL,
	    "no sign-in arrived at http://127.0.0.1:%u/ within %ld seconds",
	    w->l->port, w->o->wait_seconds);
	tm_err_hint(err, "open the URL in a browser on this machine (or forward the port "
	    "with ssh -L), or use the device code flow: tokenmail authorize without --browser");
	return WAIT_FAIL;
}

static enum wait_result
wait_step(struct waiter *w, long long end, struct tm_err *err)
{
	struct pollfd pfd[1 + AUTHORIZE_CONNS_MAX];
	long long now = now_ms();
	enum wait_result res = WAIT_MORE;
	size_t i;
	int n;

	if (now >= end)
		return wait_timeout(w, err);
	conns_expire(w, now);
	n = poll(pfd, 1 + AUTHORIZE_CONNS_MAX, waiter_pollfds(w, pfd, now, end));
	if (n < 0 && errno != EINTR) {
		tm_err_set(err, TM_ERR_INTERNAL, EX_OSERR, "poll: %s", strerror(errno));
		return WAIT_FAIL;
	}
	for (i = 0; n > 0 && i < AUTHORIZE_CONNS_MAX && res == WAIT_MORE; i++)
		if (pfd[i + 1].revents != 0)
			res = conn_read(w, &w->conns[i], err);
	if (n > 0 && res == WAIT_MORE && (pfd[0].revents & POLLIN))
		conn_accept(w);
	return res;
}

int
authorize_wait_code(const struct authorize_listener *l, const char *state,
    const struct authorize_options *o, char **code, struct tm_err *err)
{
	struct waiter w = { .l = l, .state = state, .o = o ? o : &default_options };
	enum wait_result res = WAIT_MORE;
	long long end;
	size_t i;

	*code = NULL;
	for (i = 0; i < AUTHORIZE_CONNS_MAX; i++)
		w.conns[i].fd = -1;
	end = now_ms() + w.o->wait_seconds * 1000LL;
	while (res == WAIT_MORE)
		res = wait_step(&w, end, err);
	for (i = 0; i < AUTHORIZE_CONNS_MAX; i++)
		conn_drop(&w.conns[i]);
	*code = w.code;
	return res == WAIT_DONE ? 0 : -1;
}

/* ---- browser flow ---- */

struct pkce {
	char verifier[AUTHORIZE_PKCE_SIZE];	/* secret until the code is redeemed */
	char challenge[AUTHORIZE_PKCE_SIZE];
	char state[AUTHORIZE_STATE_SIZE];
	char redirect_uri[64];			/* http://127.0.0.1:PORT/ */
};

static int
pkce_make(struct pkce *p, unsigned port, struct tm_err *err)
{
	unsigned char raw[AUTHORIZE_PKCE_RANDOM];
	int rc;

	random_bytes(raw, sizeof(raw));
	rc = authorize_pkce_verifier(raw, p->verifier, err) < 0 ||
	    authorize_pkce_challenge(p->verifier, p->challenge, err) < 0 ? -1 : 0;
	secret_wipe(raw, sizeof(raw));
	random_hex(p->state, sizeof(p->state), (AUTHORIZE_STATE_SIZE - 1) / 2);
	/* Entra gives a redirect URI without a path back with "/": use that form. */
	if (rc == 0 && str_format(p->redirect_uri, sizeof(p->redirect_uri),
	    "http://127.0.0.1:%u/", port) < 0)
		rc = tm_err_set(err, TM_ERR_INTERNAL, EX_SOFTWARE, "redirect URI too long");
	return rc;
}

static int
url_param(struct strbuf *b, const char *key, const char *value)
{
	const char *sep = b->data != NULL && strchr(b->data, '?') ? "&" : "?";

	if (strbuf_append_str(b, sep) < 0 || strbuf_append_str(b, key) < 0 ||
	    strbuf_append_str(b, "=") < 0 || http_url_escape(b, value) < 0)
		return -1;
	return 0;
}

static int
authorize_url_build(const struct token_context *c, const struct pkce *p, struct strbuf *url,
    struct tm_err *err)
{
	const struct account *a = c->account;
	struct strbuf base;
	const char *b;
	int rc = -1;

	strbuf_init(&base, TM_PATH_MAX);
	b = token_authorize_url(a, &base);
	if (b == NULL) {
		tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG,
		    "account %s has no authorize endpoint", a->name);
		tm_err_hint(err, "set tenant, token_url or authorize_url");
		goto out;
	}
	if (strbuf_append_str(url, b) < 0 ||
	    url_param(url, "client_id", a->client_id) < 0 ||
	    url_param(url, "response_type", "code") < 0 ||
	    url_param(url, "redirect_uri", p->redirect_uri) < 0 ||
	    url_param(url, "response_mode", "query") < 0 ||
	    url_param(url, "scope", config_scope(a)) < 0 ||
	    url_param(url, "state", p->state) < 0 ||
	    url_param(url, "code_challenge", p->challenge) < 0 ||
	    url_param(url, "code_challenge_method", "S256") < 0) {
		tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG,
		    "the authorize URL is longer than %d octets", AUTHORIZE_URL_MAX);
		goto out;
	}
	rc = 0;
out:
	strbuf_free(&base);
	return rc;
}

static int
browser_prompt(const struct token_context *c, const struct pkce *p, FILE *out,
    struct tm_err *err)
{
	struct strbuf url;
	int rc = -1;

	strbuf_init(&url, AUTHORIZE_URL_MAX);
	if (authorize_url_build(c, p, &url, err) == 0) {
		fprintf(out, "Open this URL in a browser to sign in:\n  %s\n", url.data);
		rc = write_out(out, err);
	}
	strbuf_free(&url);
	return rc;
}

static int
browser_redeem(const struct token_context *c, const struct pkce *p, const char *code,
    struct json_doc **tok, struct tm_err *err)
{
	const struct account *a = c->account;
	struct strbuf form;
	int rc = -1;

	form_init(&form);
	if (http_form_add(&form, "grant_type", "authorization_code") < 0 ||
	    http_form_add(&form, "client_id", a->client_id) < 0 ||
	    http_form_add(&form, "code", code) < 0 ||
	    http_form_add(&form, "redirect_uri", p->redirect_uri) < 0 ||
	    http_form_add(&form, "code_verifier", p->verifier) < 0 ||
	    http_form_add(&form, "scope", config_scope(a)) < 0) {
		form_too_large(err);
		goto out;
	}
	if (form_add_secret(c, &form, err) < 0)
		goto out;
	log_trace("authorize: redeeming the code at %s", config_token_url(a));
	rc = token_post(c, config_token_url(a), &form, false, tok, err);
out:
	form_free(&form);
	return rc;
}

int
authorize_browser_with(const struct token_context *c, FILE *out,
    const struct authorize_options *o, struct tm_err *err)
{
	struct authorize_listener l = { .fd = -1 };
	struct json_doc *tok = NULL;
	struct pkce p = { 0 };
	char *code = NULL;
	int rc = -1;

	if (account_check(c->account, err) < 0 || authorize_listen(&l, err) < 0 ||
	    pkce_make(&p, l.port, err) < 0 || browser_prompt(c, &p, out, err) < 0 ||
	    authorize_wait_code(&l, p.state, o, &code, err) < 0)
		goto out;
	/* One redirect is all we take: nobody else gets to talk to the port. */
	authorize_listener_close(&l);
	if (browser_redeem(c, &p, code, &tok, err) < 0 ||
	    authorize_finish(c, tok, out, err) < 0)
		goto out;
	rc = 0;
out:
	authorize_listener_close(&l);
	secret_free(code);
	secret_wipe(&p, sizeof(p));
	if (tok != NULL)
		json_free(tok);
	return rc;
}

int
authorize_browser(const struct token_context *c, FILE *out, struct tm_err *err)
{
	return authorize_browser_with(c, out, &default_options, err);
}
