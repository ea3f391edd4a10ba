/*
 * token_error.c: what a token endpoint's refusal means (PROTOCOL 1.7):
 * Entra's error document taken apart into the OAuth error, the AADSTS
 * code and the first sentence of its description, an exit code and a
 * hint naming the usual fix. Pure: no I/O, so tests drive it with
 * Entra-shaped bodies. Trace and correlation ids go to detail, never msg.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "json.h"
#include "token.h"
#include "token_priv.h"
#include "util.h"

/* Longest error name and AADSTS sentence taken from an answer. */
#define ERROR_NAME_MAX		64
#define SENTENCE_MAX		300

/* ---- what the endpoint's errors mean ---- */

/*
 * Exit codes for a token endpoint's refusal, decided in this order:
 *
 *   HTTP 5xx, 429, error temporarily_unavailable or server_error,
 *   AADSTS50196 (loop detected), AADSTS90055 (throttled)  -> 75 EX_TEMPFAIL
 *   the AADSTS code, when the table below knows it:
 *     credentials refused or expired (7000215, 7000222, 700027, 50012,
 *     700024), consent missing (65001, 650056, 650057), sign-in needed
 *     again (70008, 700082, 50173, 50076, 50079, 53003, 70043, 50089)
 *                                                           -> 77 EX_NOPERM
 *     wrong client id, tenant, cloud, scope or endpoint (700016, 700011,
 *     90002, 90038, 500011, 70011, 700022, 9001023, 50194), nothing or the
 *     wrong thing sent for the app's client type (7000218, 700025)
 *                                                           -> 78 EX_CONFIG
 *   else the OAuth "error":
 *     invalid_client, unauthorized_client, consent_required, invalid_grant,
 *     interaction_required, access_denied                   -> 77 EX_NOPERM
 *     invalid_scope, invalid_resource, unsupported_grant_type,
 *     invalid_request                                       -> 78 EX_CONFIG
 *   else HTTP 401/403 -> 77; any other refusal -> 69 EX_UNAVAILABLE.
 *   An answer that is not an OAuth error document: 5xx/429 -> 75, else
 *   76 EX_PROTOCOL ("token endpoint answered HTTP N").
 */
struct endpoint_rule {
	long code;		/* AADSTS code, or 0 */
	const char *error;	/* OAuth "error", when code is 0 */
	int exit;
	bool authorize;		/* the fix is signing in again: hint + "run tokenmail authorize" */
	const char *hint;
};

#define HINT_SCOPE "for app-only access (client_credentials) use scope " \
	"https://outlook.office365.com/.default (SMTP) or https://graph.microsoft.com/.default " \
	"(Graph), one resource only"
#define HINT_APP "no application with this client_id in this tenant: check client_id and " \
	"tenant, and that an administrator of the tenant has consented to the app"
#define HINT_CERT "the certificate is not registered on the app or the signature does not " \
	"verify: upload client_certificate under Certificates & secrets, check that client_key " \
	"belongs to it, or try client_assertion_alg RS256 (or PS256)"
#define HINT_CONSENT "grant admin consent for the app's API permissions (Entra admin " \
	"center: App registrations, API permissions, Grant admin consent)"
#define HINT_SIGNIN "the refresh token has expired or was revoked, or a new sign-in is " \
	"required (MFA, conditional access, sign-in frequency)"
#define HINT_BUSY "the token endpoint is busy or failing: try again later"

static const struct endpoint_rule endpoint_rules[] = {
	{ 7000215, NULL, EX_NOPERM, false, "the client secret is wrong: use the secret's Value "
	    "from Certificates & secrets in the app registration, not its Secret ID" },
	{ 7000222, NULL, EX_NOPERM, false, "the client secret has expired: create a new one "
	    "under Certificates & secrets in the app registration and put its Value where the "
	    "config reads it (client_secret_file, client_secret or client_secret_command)" },
	{ 700016, NULL, EX_CONFIG, false, HINT_APP },
	{ 700011, NULL, EX_CONFIG, false, HINT_APP },
	{ 90002, NULL, EX_CONFIG, false, "the tenant was not found: check tenant (its id or a "
	    "verified domain) and, for a national cloud, authority" },
	{ 90038, NULL, EX_CONFIG, false, "the tenant belongs to another national cloud: set "
	    "authority to that cloud's sign-in URL (e.g. https://login.microsoftonline.us)" },
	{ 65001, NULL, EX_NOPERM, false, HINT_CONSENT },
	{ 650056, NULL, EX_NOPERM, false, "add the permission under API permissions and " HINT_CONSENT },
	{ 650057, NULL, EX_NOPERM, false, "add the permission under API permissions and " HINT_CONSENT },
	{ 500011, NULL, EX_CONFIG, false, "the resource named in scope does not exist in this "
	    "tenant: check scope" },
	{ 70011, NULL, EX_CONFIG, false, HINT_SCOPE },
	{ 700022, NULL, EX_CONFIG, false, HINT_SCOPE },
	{ 700027, NULL, EX_NOPERM, false, HINT_CERT },
	{ 50012, NULL, EX_NOPERM, false, HINT_CERT },
	{ 700024, NULL, EX_NOPERM, false, "the client assertion is outside its valid time: check "
	    "the clock, and that client_assertion_file is renewed before it expires" },
	{ 9001023, NULL, EX_CONFIG, false, "this grant needs a tenant-specific endpoint: set "
	    "tenant to the tenant's id or domain, not common or consumers" },
	{ 50194, NULL, EX_CONFIG, false, "the app is single-tenant: set tenant to its tenant id, "
	    "not common" },
	{ 70008, NULL, EX_NOPERM, true, HINT_SIGNIN },
	{ 700082, NULL, EX_NOPERM, true, HINT_SIGNIN },
	{ 50173, NULL, EX_NOPERM, true, HINT_SIGNIN },
	{ 50076, NULL, EX_NOPERM, true, HINT_SIGNIN },
	{ 50079, NULL, EX_NOPERM, true, HINT_SIGNIN },
	{ 53003, NULL, EX_NOPERM, true, HINT_SIGNIN },
	{ 70043, NULL, EX_NOPERM, true, HINT_SIGNIN },
	{ 50089, NULL, EX_NOPERM, true, HINT_SIGNIN },
	{ 7000218, NULL, EX_CONFIG, false, "no client secret or assertion was sent: configure "
	    "client_secret_file (or a certificate) for this account, or allow public client "
	    "flows in the app registration" },
	{ 700025, NULL, EX_CONFIG, false, "the app is a public client: remove the client secret "
	    "from this account" },
	{ 50196, NULL, EX_TEMPFAIL, false, HINT_BUSY },
	{ 90055, NULL, EX_TEMPFAIL, false, HINT_BUSY },
	{ 0, "invalid_client", EX_NOPERM, false, "the endpoint refused the client's "
	    "credentials: check client_id and the secret or certificate" },
	{ 0, "unauthorized_client", EX_NOPERM, false, "the app may not use this grant: check "
	    "client_id, tenant and the app registration" },
	{ 0, "consent_required", EX_NOPERM, false, HINT_CONSENT },
	{ 0, "invalid_grant", EX_NOPERM, true, "the grant is no longer valid" },
	{ 0, "interaction_required", EX_NOPERM, true, "a new sign-in is required" },
	{ 0, "access_denied", EX_NOPERM, false, "access was denied: check the app's permissions "
	    "and consent" },
	{ 0, "invalid_scope", EX_CONFIG, false, HINT_SCOPE },
	{ 0, "invalid_resource", EX_CONFIG, false, "the resource named in scope was not found: "
	    "check scope" },
	{ 0, "unsupported_grant_type", EX_CONFIG, false, "the endpoint does not support this "
	    "grant: check grant and token_url" },
	{ 0, "invalid_request", EX_CONFIG, false, "check token_url, client_id and scope" },
	{ 0, "temporarily_unavailable", EX_TEMPFAIL, false, HINT_BUSY },
	{ 0, "server_error", EX_TEMPFAIL, false, HINT_BUSY },
};
#define NENDPOINT_RULES (sizeof(endpoint_rules) / sizeof(endpoint_rules[0]))

/* What an OAuth error document says, taken apart. */
struct endpoint_error {
	char error[ERROR_NAME_MAX + 1];
	long code;			/* AADSTS code, 0 if none */
	char sentence[SENTENCE_MAX + 1];	/* first sentence, without "AADSTSn: " */
	char line[SENTENCE_MAX * 3];	/* first line of the description */
	bool more;			/* line says more than the sentence */
};

static const struct endpoint_rule *
find_rule(long code, const char *error)
{
	size_t i;

	for (i = 0; code && i < NENDPOINT_RULES; i++)
		if (endpoint_rules[i].code == code)
			return &endpoint_rules[i];
	for (i = 0; i < NENDPOINT_RULES; i++)
		if (endpoint_rules[i].code == 0 && strcmp(endpoint_rules[i].error, error) == 0)
			return &endpoint_rules[i];
	return NULL;
}

static bool
is_temporary(long status, const char *error)
{
	return status >= 500 || status == 429 || strcmp(error, "temporarily_unavailable") == 0 ||
	    strcmp(error, "server_error") == 0;
}

static enum tm_err_class
class_of(int exit_code)
{
	switch (exit_code) {
	case EX_NOPERM:
		return TM_ERR_AUTH;
	case EX_CONFIG:
		return TM_ERR_CONFIG;
	default:
		return TM_ERR_RESP;
	}
}

/*
 * From the description "AADSTS7000215: Invalid client secret provided.
 * Ensure ...\r\nTrace ID: ...": its code (when error_codes had none), its
 * first line, and the first sentence of that line without the code. The
 * trace and correlation ids on the next lines stay out of both.
 */
static void
split_description(const char *desc, struct endpoint_error *e)
{
	const char *trace = strstr(desc, " Trace ID:"), *p = e->line, *dot;
	size_t n = strcspn(desc, "\r\n");
	long code = 0;

	/* Some answers put the ids on the first line: it stops there too. */
	if (trace && (size_t)(trace - desc) < n)
		n = (size_t)(trace - desc);
	(void)str_copy_n(e->line, sizeof(e->line), desc, n < sizeof(e->line) ? n : sizeof(e->line) - 1);
	if (strncmp(p, "AADSTS", 6) == 0 && p[6] >= '0' && p[6] <= '9') {
		for (p += 6; *p >= '0' && *p <= '9' && code < 100000000; p++)
			code = code * 10 + (*p - '0');
		p += strspn(p, ": ");
		if (e->code == 0)
			e->code = code;
	}
	n = strlen(p);
	for (dot = p; (dot = memchr(dot, '.', n - (size_t)(dot - p))) != NULL; dot++)
		if ((size_t)(dot - p) + 1 == n || dot[1] == ' ') {
			n = (size_t)(dot - p) + 1;
			break;
		}
	(void)str_copy_n(e->sentence, sizeof(e->sentence), p, n < SENTENCE_MAX ? n : SENTENCE_MAX);
	e->more = p[n] != '\0';
}

/* Read an OAuth error document; false when d is not one. */
static bool
read_endpoint_error(const struct json_doc *d, struct endpoint_error *e)
{
	const char *error = json_get(d, "error"), *desc = json_get(d, "error_description");
	long codes[4];

	memset(e, 0, sizeof(*e));
	if (error == NULL || error[0] == '\0')
		return false;
	(void)str_copy(e->error, sizeof(e->error), error);
	if (json_get_long_array(d, "error_codes", codes, 4) > 0 && codes[0] > 0)
		e->code = codes[0];
	if (desc)
		split_description(desc, e);
	return true;
}

/* The trace, correlation and time stamp ids that Microsoft support asks for. */
static void
add_ids(const struct json_doc *d, struct tm_err *err)
{
	static const char *const keys[] = { "trace_id", "correlation_id", "timestamp" };
	size_t i;

	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (json_get(d, keys[i]))
			tm_err_detail(err, "%s: %.100s", keys[i], json_get(d, keys[i]));
}

static void
set_endpoint_error(long status, const struct endpoint_error *e, const char *account,
    struct tm_err *err)
{
	const struct endpoint_rule *r = find_rule(e->code, e->error);
	int code = r ? r->exit : status == 401 || status == 403 ? EX_NOPERM : EX_UNAVAILABLE;

	if (is_temporary(status, e->error))
		code = EX_TEMPFAIL;
	if (e->code && e->sentence[0])
		tm_err_set(err, class_of(code), code, "%s AADSTS%ld: %s", e->error, e->code,
		    e->sentence);
	else if (e->code)
		tm_err_set(err, class_of(code), code, "%s AADSTS%ld", e->error, e->code);
	else if (e->sentence[0])
		tm_err_set(err, class_of(code), code, "%s: %s", e->error, e->sentence);
	else
		tm_err_set(err, class_of(code), code, "%s", e->error);
	if (r && r->authorize)
		tm_err_hint(err, "%s: run tokenmail authorize %s", r->hint, account);
	else if (r)
		tm_err_hint(err, "%s", r->hint);
	else if (code == EX_TEMPFAIL)
		tm_err_hint(err, "%s", HINT_BUSY);
	else if (e->code)
		tm_err_hint(err, "look the code up at https://login.microsoftonline.com/error?code=%ld",
		    e->code);
	(void)str_format(err->server, sizeof(err->server), "HTTP %ld%s%s", status,
	    e->more ? ": " : "", e->more ? e->line : "");
}

/* An answer that is no OAuth error: say what arrived. */
static void
set_http_error(long status, const char *body, size_t len, struct tm_err *err)
{
	bool temporary = status >= 500 || status == 429;
	size_t n = 0;

	/* body is len octets, not a string. */
	while (n < len && body[n] != '\r' && body[n] != '\n' && body[n] != '\0')
		n++;
	tm_err_set(err, temporary ? TM_ERR_RESP : TM_ERR_PROTO,
	    temporary ? EX_TEMPFAIL : EX_PROTOCOL, "token endpoint answered HTTP %ld", status);
	if (temporary)
		tm_err_hint(err, "%s", HINT_BUSY);
	(void)str_copy_n(err->server, sizeof(err->server), body, n < 200 ? n : 200);
}

int
token_refusal(long status, const char *body, size_t len, const char *account,
    bool *refused, struct tm_err *err)
{
	struct json_doc *d = NULL;
	struct endpoint_error e;
	struct tm_err jerr;

	*refused = false;
	tm_err_clear(err);
	if (body && json_parse(body, len, &d, &jerr) == 0 && read_endpoint_error(d, &e)) {
		*refused = true;
		set_endpoint_error(status, &e, account, err);
		add_ids(d, err);
	} else {
		set_http_error(status, body ? body : "", body ? len : 0, err);
	}
	json_free(d);
	return -1;
}

int
token_endpoint_error(long status, const char *body, size_t len, struct tm_err *err)
{
	bool refused;

	return token_refusal(status, body, len, "ACCOUNT", &refused, err);
}
