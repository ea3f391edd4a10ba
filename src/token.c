/*
 * token.c: OAuth 2.0 access tokens (SPEC 5, PROTOCOL 1): the grants, the
 * request to the token endpoint and the flow cache -> request -> cache
 * around them (the cache file is token_cache.c, what the endpoint's errors
 * mean token_error.c). Client secrets, assertions and refresh tokens stay in
 * this module and are wiped after use; only an access token leaves it.
 * The -v trace names accounts, URLs and grants, never a credential.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "http.h"
#include "json.h"
#include "jwt.h"
#include "log.h"
#include "secret.h"
#include "tm_limits.h"
#include "token.h"
#include "token_priv.h"
#include "util.h"

/* A request body: a secret or assertion and a refresh token, each up to
   TM_SECRET_MAX, percent-encoded (3 octets per octet at worst). */
#define TOKEN_FORM_MAX		(6 * TM_SECRET_MAX + 4096)
/* The longest we reuse a token, however long the endpoint says it lasts:
   a revoked token then disappears within a day even if no server refuses it. */
#define TOKEN_REUSE_MAX		(24L * 3600)

#define ASSERTION_TYPE "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

/* ---- the request ---- */

static bool
is_error_document(const struct json_doc *d)
{
	const char *error = json_get(d, "error");

	return error != NULL && error[0] != '\0';
}

/* The answer token_post hands back: a 2xx JSON object that is no error,
   or with keep_errors a 4xx OAuth error (not 429: that means wait). */
static bool
wanted_answer(long status, const struct json_doc *d, bool keep_errors)
{
	if (status >= 200 && status < 300)
		return !is_error_document(d);
	return keep_errors && status >= 400 && status < 500 && status != 429 &&
	    is_error_document(d);
}

int
token_post(const struct token_context *c, const char *url, const struct strbuf *form,
    bool keep_errors, struct json_doc **resp, struct tm_err *err)
{
	const char *name = c->account->name;
	struct http_request req = {
		.method = "POST", .url = url,
		.content_type = "application/x-www-form-urlencoded",
		.body = form->data ? form->data : "", .body_len = form->len,
		.ca_file = c->cfg->tls_ca_file, .proxy = c->cfg->https_proxy,
		.env_proxy = !c->setgid, .max_response = TM_JSON_MAX,
		.timeout_seconds = c->timeout_seconds > 0 ? c->timeout_seconds :
		    TM_HTTP_TIMEOUT_SECONDS,
	};
	struct http_response hr;
	struct json_doc *d = NULL;
	struct tm_err jerr;
	bool refused = false;
	int rc = -1;

	tm_err_clear(err);
	*resp = NULL;
	memset(&hr, 0, sizeof(hr));
	if (http_perform(&req, &hr, err) < 0)
		goto out;
	if (json_parse(hr.body ? hr.body : "", hr.body_len, &d, &jerr) == 0 &&
	    wanted_answer(hr.status, d, keep_errors)) {
		*resp = d;
		d = NULL;
		rc = 0;
	} else if (hr.status >= 200 && hr.status < 300 && d == NULL) {
		tm_err_set(err, TM_ERR_PROTO, EX_PROTOCOL, "token endpoint's answer is not JSON: "
		    "%s", jerr.msg);
	} else {
		token_refusal(hr.status, hr.body, hr.body_len, name, &refused, err);
	}
out:
	if (rc < 0)
		tm_err_prefix(err, refused ? "token endpoint refused account %s" :
		    "cannot get a token for account %s", name);
	json_free(d);
	http_response_free(&hr);
	return rc;
}

/* ---- the grants ---- */

static int
form_add(struct strbuf *form, const char *key, const char *value, struct tm_err *err)
{
	if (http_form_add(form, key, value) == 0)
		return 0;
	return tm_err_set(err, TM_ERR_INTERNAL, EX_SOFTWARE, "token request too large (%s)", key);
}

static bool
has_secret(const struct account *a)
{
	return a->client_secret || a->client_secret_file || a->client_secret_command;
}

static int
add_assertion(const struct token_context *c, struct strbuf *form, time_t now,
    struct tm_err *err)
{
	const struct account *a = c->account;
	struct jwt_params jp = {
		.certificate_file = a->client_certificate, .key_file = a->client_key,
		.alg = a->client_assertion_alg, .client_id = a->client_id,
		.audience = config_token_url(a), .now = now,
	};
	char *assertion = NULL;
	int rc = -1;

	if (a->client_certificate)
		rc = jwt_client_assertion(&jp, &assertion, err);
	else
		rc = secret_read_file(a->client_assertion_file, "client_assertion_file", false,
		    c->params, &assertion, err);
	if (rc == 0 && (form_add(form, "client_assertion_type", ASSERTION_TYPE, err) < 0 ||
	    form_add(form, "client_assertion", assertion, err) < 0))
		rc = -1;
	secret_free(assertion);
	return rc;
}

/* The client's own credential, if it has one (a delegated account may be a
   public client). *how names it for the trace. */
static int
add_client_auth(const struct token_context *c, struct strbuf *form, time_t now,
    const char **how, struct tm_err *err)
{
	const struct account *a = c->account;
	char *secret = NULL;
	int rc;

	if (a->client_certificate || a->client_assertion_file) {
		*how = a->client_certificate ? "certificate" : "federated";
		return add_assertion(c, form, now, err);
	}
	*how = has_secret(a) ? "secret" : "public client";
	if (!has_secret(a))
		return 0;
	rc = secret_client_secret(a, c->params, &secret, err);
	if (rc == 0)
		rc = form_add(form, "client_secret", secret, err);
	secret_free(secret);
	return rc;
}

/* The refresh token: the cache's, else refresh_token_file's (the first
   one, e.g. migrated from another tool), else none yet. */
static int
load_refresh_token(const struct token_context *c, struct token_cache *tc, struct tm_err *err)
{
	const struct account *a = c->account;
	struct stat st;

	if (tc->refresh_token)
		return 0;
	if (a->refresh_token_file && stat(a->refresh_token_file, &st) == 0)
		return secret_read_file(a->refresh_token_file, "refresh_token_file", true,
		    c->params, &tc->refresh_token, err);
	tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG, "account %s has no refresh token yet", a->name);
	tm_err_hint(err, "run: tokenmail authorize %s", a->name);
	return -1;
}

static int
build_form(const struct token_context *c, struct token_cache *tc, struct strbuf *form,
    time_t now, const char **how, struct tm_err *err)
{
	const struct account *a = c->account;

	if (form_add(form, "client_id", a->client_id, err) < 0)
		return -1;
	if (a->grant == GRANT_REFRESH_TOKEN) {
		if (load_refresh_token(c, tc, err) < 0 ||
		    form_add(form, "grant_type", "refresh_token", err) < 0 ||
		    form_add(form, "refresh_token", tc->refresh_token, err) < 0 ||
		    form_add(form, "scope", config_scope(a), err) < 0)
			return -1;
		return add_client_auth(c, form, now, how, err);
	}
	if (form_add(form, "scope", config_scope(a), err) < 0 ||
	    add_client_auth(c, form, now, how, err) < 0)
		return -1;
	return form_add(form, "grant_type", "client_credentials", err);
}

static int
request_token(const struct token_context *c, struct token_cache *tc, time_t now,
    struct json_doc **resp, struct tm_err *err)
{
	const struct account *a = c->account;
	const char *how = "", *url = config_token_url(a);
	struct strbuf form;
	int rc = -1;

	secret_buf_init(&form, TOKEN_FORM_MAX);
	if (build_form(c, tc, &form, now, &how, err) < 0)
		goto out;
	log_trace("token: requesting a token for account %s from %s (grant %s, %s)", a->name,
	    url, a->grant == GRANT_REFRESH_TOKEN ? "refresh_token" : "client_credentials", how);
	rc = token_post(c, url, &form, false, resp, err);
out:
	secret_buf_free(&form);
	return rc;
}

/* ---- the answer ---- */

/* The lifetime an answer gives its token, in seconds; -1 if it is garbage. */
static long
lifetime_of(const struct json_doc *d)
{
	long v;

	if (json_get(d, "expires_in") == NULL)
		return TOKEN_DEFAULT_LIFETIME;
	if (json_get_long(d, "expires_in", 0, LONG_MAX, &v) < 0)
		return -1;
	return v < TOKEN_REUSE_MAX ? v : TOKEN_REUSE_MAX;
}

/* Put a token answer into tc: the access token, its expiry, and a rotated
   refresh token replacing the old one. */
static int
apply_response(const struct token_context *c, struct token_cache *tc,
    const struct json_doc *d, time_t now, struct tm_err *err)
{
	const char *at = json_get(d, "access_token"), *rt = json_get(d, "refresh_token");
	const char *type = json_get(d, "token_type"), *name = c->account->name;
	long life = lifetime_of(d);

	if (!token_text_ok(at))
		return tm_err_set(err, TM_ERR_PROTO, EX_PROTOCOL, "token endpoint's answer for "
		    "account %s has no usable access_token", name);
	if (type && !str_eq_nocase(type, "Bearer"))
		return tm_err_set(err, TM_ERR_PROTO, EX_PROTOCOL, "token endpoint gave account %s "
		    "a token of type '%.40s', not Bearer", name, type);
	if (life < 0)
		return tm_err_set(err, TM_ERR_PROTO, EX_PROTOCOL, "token endpoint's answer for "
		    "account %s has an expires_in that is not a number of seconds", name);
	if (rt && !token_text_ok(rt))
		return tm_err_set(err, TM_ERR_PROTO, EX_PROTOCOL, "token endpoint's answer for "
		    "account %s has an unusable refresh_token", name);
	secret_free(tc->access_token);
	tc->access_token = xstrdup(at);
	tc->expires_at = now + (time_t)life;
	if (rt) {
		secret_free(tc->refresh_token);
		tc->refresh_token = xstrdup(rt);
	}
	return 0;
}

/* ---- the flow ---- */

static int
check_context(const struct token_context *c, struct tm_err *err)
{
	const struct account *a = c->account;

	if (config_token_url(a) == NULL || a->client_id == NULL)
		return tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG, "account %s has no token "
		    "settings (tenant or token_url, client_id)", a->name);
	return 0;
}

static bool
cache_fresh(const struct token_context *c, const struct token_cache *tc, time_t now)
{
	long long left = (long long)(tc->expires_at - now);

	if (tc->access_token == NULL) {
		log_trace("token: no cached token for account %s", c->account->name);
		return false;
	}
	if (left > TOKEN_MIN_REMAINING) {
		log_trace("token: cache hit for account %s (expires in %lld s)", c->account->name,
		    left);
		return true;
	}
	log_trace("token: cached token for account %s expires in %lld s: not reused",
	    c->account->name, left);
	return false;
}

/* Ask the endpoint and cache what it gives, before anyone uses it: a
   rotated refresh token must not be lost. Only a client_credentials token,
   which loses nothing, is used when it cannot be cached. */
static int
fetch(const struct token_context *c, struct token_cache *tc, time_t now, struct tm_err *err)
{
	struct json_doc *d = NULL;
	int rc = -1;

	if (request_token(c, tc, now, &d, err) < 0 || apply_response(c, tc, d, now, err) < 0)
		goto out;
	if (token_cache_write(c, tc, err) < 0) {
		if (c->account->grant == GRANT_REFRESH_TOKEN)
			goto out;
		log_warn("%s (the token is used uncached)", err->msg);
		tm_err_clear(err);
	}
	log_trace("token: got a token for account %s (expires in %lld s)", c->account->name,
	    (long long)(tc->expires_at - now));
	rc = 0;
out:
	json_free(d);
	return rc;
}

int
token_get(const struct token_context *c, char **out, struct tm_err *err)
{
	struct token_cache tc;
	time_t now = time(NULL);
	int rc = -1;

	tm_err_clear(err);
	*out = NULL;
	if (c->broker != NULL)
		return c->broker->get(c->broker, c->account->name, out, err);
	if (check_context(c, err) < 0)
		return -1;
	if (token_cache_open(c, &tc, err) < 0)
		goto out;
	if (!cache_fresh(c, &tc, now) && fetch(c, &tc, now, err) < 0)
		goto out;
	*out = xstrdup(tc.access_token);
	rc = 0;
out:
	token_cache_close(&tc);
	return rc;
}

int
token_invalidate(const struct token_context *c, struct tm_err *err)
{
	struct token_cache tc;
	int rc = -1;

	tm_err_clear(err);
	if (c->broker != NULL)
		return c->broker->drop(c->broker, c->account->name, err);
	if (check_context(c, err) < 0)
		return -1;
	if (token_cache_open(c, &tc, err) < 0)
		goto out;
	rc = 0;
	if (tc.access_token == NULL)
		goto out;
	secret_free(tc.access_token);
	tc.access_token = NULL;
	tc.expires_at = 0;
	log_trace("token: dropping the cached token for account %s", c->account->name);
	rc = token_cache_write(c, &tc, err);
out:
	token_cache_close(&tc);
	return rc;
}

int
token_store_response(const struct token_context *c, const struct json_doc *resp,
    struct tm_err *err)
{
	struct token_cache tc;
	int rc = -1;

	tm_err_clear(err);
	if (check_context(c, err) < 0)
		return -1;
	if (token_cache_open(c, &tc, err) < 0 ||
	    apply_response(c, &tc, resp, time(NULL), err) < 0)
		goto out;
	rc = token_cache_write(c, &tc, err);
out:
	token_cache_close(&tc);
	return rc;
}

/* ---- the endpoints beside the token endpoint ---- */

/* config.c decides them (configured, or derived from the token URL);
   these stay for callers written against token.h. */
static const char *
copy_url(const char *url, struct strbuf *b)
{
	strbuf_reset(b);
	if (url == NULL || strbuf_append_str(b, url) < 0)
		return NULL;
	return b->data;
}

const char *
token_device_code_url(const struct account *a, struct strbuf *b)
{
	return copy_url(config_device_code_url(a), b);
}

const char *
token_authorize_url(const struct account *a, struct strbuf *b)
{
	return copy_url(config_authorize_url(a), b);
}
