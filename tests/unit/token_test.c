/*
 * token_test.c: the token module without a network. token_endpoint_error
 * over a table of Entra-shaped error bodies (exact message, exit code and
 * hint for each AADSTS code it knows), other providers' bodies and
 * non-JSON answers; the cache through the public functions (a token URL
 * nothing listens on, 127.0.0.1:1, so any request fails fast with
 * EX_TEMPFAIL and shows that the cache was not used); the cache's
 * refusals (open directory, symlinked file) and its lock; the secret
 * sources, client_secret_command included.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "err.h"
#include "json.h"
#include "log.h"
#include "secret.h"
#include "tap.h"
#include "tm_limits.h"
#include "token.h"
#include "util.h"

#define NOWHERE "http://127.0.0.1:1/token"
#define SCOPE_APP "https://outlook.office365.com/.default"
#define SCOPE_DEL "https://outlook.office.com/SMTP.Send offline_access"

static char tmp[64];
static struct config_params params;

/* ---- helpers ---- */

static char *
path_in(const char *name)
{
	return xasprintf("%s/%s", tmp, name);
}

static void
write_file(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text) ||
	    fchmod(fd, mode) < 0)
		tap_ok(0, "cannot write %s: %s", path, strerror(errno));
	if (fd >= 0)
		close(fd);
}

/* The whole file, or "" when it cannot be read. Caller frees. */
static char *
read_text(const char *path)
{
	struct strbuf b;
	char chunk[4096];
	ssize_t n;
	int fd = open(path, O_RDONLY);

	strbuf_init(&b, 1 << 20);
	while (fd >= 0 && (n = read(fd, chunk, sizeof(chunk))) > 0)
		(void)strbuf_append(&b, chunk, (size_t)n);
	if (fd >= 0)
		close(fd);
	return strbuf_take(&b);
}

static int
remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void
remove_tree(const char *path)
{
	(void)nftw(path, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* stderr goes to a file between capture_start and capture_end. */
static int saved_stderr = -1;

static void
capture_start(void)
{
	char *p = path_in("stderr.txt");
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	fflush(stderr);
	saved_stderr = dup(2);
	(void)dup2(fd, 2);
	close(fd);
	free(p);
}

static char *
capture_end(void)
{
	char *p = path_in("stderr.txt"), *text;

	fflush(stderr);
	(void)dup2(saved_stderr, 2);
	close(saved_stderr);
	text = read_text(p);
	free(p);
	return text;
}

static double
now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- token_endpoint_error ---- */

/* An error body the way Entra sends it (PROTOCOL 1.7). */
#define ENTRA(error, code, text) \
	"{\"error\":\"" error "\",\"error_description\":\"AADSTS" #code ": " text \
	"\\r\\nTrace ID: 0a1b2c3d-trace\\r\\nCorrelation ID: 9f8e7d6c-corr\\r\\n" \
	"Timestamp: 2025-01-01 00:00:00Z\",\"error_codes\":[" #code "]," \
	"\"timestamp\":\"2025-01-01 00:00:00Z\",\"trace_id\":\"0a1b2c3d-trace\"," \
	"\"correlation_id\":\"9f8e7d6c-corr\"," \
	"\"error_uri\":\"https://login.microsoftonline.com/error?code=" #code "\"}"

struct error_case {
	long status;
	const char *body;
	const char *msg;
	int exit;
	const char *hint;	/* a part of the hint; "" when there must be none */
};

static const struct error_case error_cases[] = {
	{ 401, ENTRA("invalid_client", 7000215, "Invalid client secret provided. Ensure the "
	    "secret being sent in the request is the client secret value, not the client "
	    "secret ID, for a secret added to app '00000000-0000-0000-0000-000000000001'."),
	  "invalid_client AADSTS7000215: Invalid client secret provided.", EX_NOPERM,
	  "not its Secret ID" },
	{ 401, ENTRA("invalid_client", 7000222, "The provided client secret keys for app "
	    "'00000000-0000-0000-0000-000000000001' are expired. Visit the Azure portal to "
	    "create new keys for your app: https://aka.ms/NewClientSecret."),
	  "invalid_client AADSTS7000222: The provided client secret keys for app "
	  "'00000000-0000-0000-0000-000000000001' are expired.", EX_NOPERM, "create a new one" },
	{ 400, ENTRA("unauthorized_client", 700016, "Application with identifier 'abc' was not "
	    "found in the directory 'contoso.onmicrosoft.com'. This can happen if the "
	    "application has not been installed by the administrator of the tenant."),
	  "unauthorized_client AADSTS700016: Application with identifier 'abc' was not found "
	  "in the directory 'contoso.onmicrosoft.com'.", EX_CONFIG, "check client_id and tenant" },
	{ 400, ENTRA("unauthorized_client", 700011, "Application with identifier 'abc' was not "
	    "found in directory 'contoso'. Check the tenant."),
	  "unauthorized_client AADSTS700011: Application with identifier 'abc' was not found "
	  "in directory 'contoso'.", EX_CONFIG, "administrator of the tenant has consented" },
	{ 400, ENTRA("invalid_request", 90002, "Tenant 'contoso.onmicrosoft.cm' not found. "
	    "Check to make sure you have the correct tenant ID and are signing into the "
	    "correct cloud."),
	  "invalid_request AADSTS90002: Tenant 'contoso.onmicrosoft.cm' not found.", EX_CONFIG,
	  "the tenant was not found: check tenant" },
	{ 400, ENTRA("invalid_grant", 65001, "The user or administrator has not consented to "
	    "use the application with ID 'abc' named 'tokenmail'. Send an interactive "
	    "authorization request for this user and resource."),
	  "invalid_grant AADSTS65001: The user or administrator has not consented to use the "
	  "application with ID 'abc' named 'tokenmail'.", EX_NOPERM, "grant admin consent" },
	{ 400, ENTRA("invalid_scope", 70011, "The provided request must include a 'scope' "
	    "input parameter. The provided value for the input parameter 'scope' is not valid."),
	  "invalid_scope AADSTS70011: The provided request must include a 'scope' input "
	  "parameter.", EX_CONFIG, "https://outlook.office365.com/.default (SMTP) or "
	  "https://graph.microsoft.com/.default" },
	{ 401, ENTRA("invalid_client", 700027, "The certificate with identifier used to sign "
	    "the client assertion is not registered on application. [Reason - The key was not "
	    "found., Thumbprint of key used by client: 'ABCDEF']"),
	  "invalid_client AADSTS700027: The certificate with identifier used to sign the "
	  "client assertion is not registered on application.", EX_NOPERM,
	  "client_assertion_alg RS256 (or PS256)" },
	{ 401, ENTRA("invalid_client", 50012, "Client assertion contains an invalid signature. "
	    "[Reason - The key was not found.]"),
	  "invalid_client AADSTS50012: Client assertion contains an invalid signature.",
	  EX_NOPERM, "upload client_certificate" },
	{ 400, ENTRA("invalid_request", 9001023, "The grant type isn't supported over the "
	    "/common or /consumers endpoints. Please use the /organizations or tenant-specific "
	    "endpoint."),
	  "invalid_request AADSTS9001023: The grant type isn't supported over the /common or "
	  "/consumers endpoints.", EX_CONFIG, "set tenant to the tenant's id or domain" },
	{ 400, ENTRA("invalid_grant", 70008, "The provided authorization code or refresh token "
	    "has expired due to inactivity. Send a new interactive authorization request."),
	  "invalid_grant AADSTS70008: The provided authorization code or refresh token has "
	  "expired due to inactivity.", EX_NOPERM, "run tokenmail authorize ACCOUNT" },
	{ 400, ENTRA("invalid_grant", 700082, "The refresh token has expired due to "
	    "inactivity. The token was issued on 2024-01-01T00:00:00Z."),
	  "invalid_grant AADSTS700082: The refresh token has expired due to inactivity.",
	  EX_NOPERM, "run tokenmail authorize ACCOUNT" },
	{ 400, ENTRA("invalid_grant", 50173, "The provided grant has expired due to it being "
	    "revoked, a fresh auth token is needed. The user might have changed or reset "
	    "their password."),
	  "invalid_grant AADSTS50173: The provided grant has expired due to it being revoked, "
	  "a fresh auth token is needed.", EX_NOPERM, "run tokenmail authorize ACCOUNT" },
	{ 400, ENTRA("interaction_required", 50076, "Due to a configuration change made by "
	    "your administrator, you must use multi-factor authentication to access 'abc'."),
	  "interaction_required AADSTS50076: Due to a configuration change made by your "
	  "administrator, you must use multi-factor authentication to access 'abc'.",
	  EX_NOPERM, "run tokenmail authorize ACCOUNT" },
	{ 400, ENTRA("interaction_required", 50079, "Due to a configuration change made by "
	    "your administrator, you must enroll in multi-factor authentication."),
	  "interaction_required AADSTS50079: Due to a configuration change made by your "
	  "administrator, you must enroll in multi-factor authentication.", EX_NOPERM,
	  "run tokenmail authorize ACCOUNT" },
	{ 400, ENTRA("interaction_required", 53003, "Access has been blocked by Conditional "
	    "Access policies. The access policy does not allow token issuance."),
	  "interaction_required AADSTS53003: Access has been blocked by Conditional Access "
	  "policies.", EX_NOPERM, "run tokenmail authorize ACCOUNT" },
	{ 400, ENTRA("invalid_grant", 70043, "The refresh token has expired or is invalid due "
	    "to sign-in frequency checks by conditional access. The token was issued on X."),
	  "invalid_grant AADSTS70043: The refresh token has expired or is invalid due to "
	  "sign-in frequency checks by conditional access.", EX_NOPERM,
	  "run tokenmail authorize ACCOUNT" },
	{ 401, ENTRA("invalid_client", 7000218, "The request body must contain the following "
	    "parameter: 'client_assertion' or 'client_secret'."),
	  "invalid_client AADSTS7000218: The request body must contain the following "
	  "parameter: 'client_assertion' or 'client_secret'.", EX_CONFIG,
	  "no client secret or assertion was sent" },
	/* the table's codes win over the error name; 5xx and 429 over both */
	{ 500, ENTRA("invalid_client", 7000215, "Invalid client secret provided. More."),
	  "invalid_client AADSTS7000215: Invalid client secret provided.", EX_TEMPFAIL,
	  "not its Secret ID" },
	{ 429, ENTRA("invalid_request", 50196, "The server terminated an operation because it "
	    "encountered a client request loop. Please contact your app vendor."),
	  "invalid_request AADSTS50196: The server terminated an operation because it "
	  "encountered a client request loop.", EX_TEMPFAIL, "try again later" },
	{ 503, "{\"error\":\"temporarily_unavailable\"}", "temporarily_unavailable",
	  EX_TEMPFAIL, "try again later" },
	{ 400, "{\"error\":\"temporarily_unavailable\",\"error_description\":\"Busy.\"}",
	  "temporarily_unavailable: Busy.", EX_TEMPFAIL, "try again later" },
	/* by error name, for codes the table does not know and other providers */
	{ 400, "{\"error\":\"invalid_grant\",\"error_description\":\"Token has been expired "
	    "or revoked.\"}", "invalid_grant: Token has been expired or revoked.", EX_NOPERM,
	  "the grant is no longer valid: run tokenmail authorize ACCOUNT" },
	{ 401, "{\"error\":\"invalid_client\",\"error_description\":\"Unauthorized\"}",
	  "invalid_client: Unauthorized", EX_NOPERM, "check client_id and the secret" },
	{ 400, "{\"error\":\"unauthorized_client\"}", "unauthorized_client", EX_NOPERM,
	  "may not use this grant" },
	{ 400, "{\"error\":\"consent_required\"}", "consent_required", EX_NOPERM, "consent" },
	{ 400, "{\"error\":\"interaction_required\"}", "interaction_required", EX_NOPERM,
	  "run tokenmail authorize ACCOUNT" },
	{ 400, "{\"error\":\"invalid_scope\",\"error_description\":\"AADSTS1234567: Odd "
	    "scope.\"}", "invalid_scope AADSTS1234567: Odd scope.", EX_CONFIG,
	  "https://graph.microsoft.com/.default" },
	{ 400, "{\"error\":\"unsupported_grant_type\"}", "unsupported_grant_type", EX_CONFIG,
	  "check grant and token_url" },
	{ 400, "{\"error\":\"invalid_request\",\"error_description\":\"Missing x\"}",
	  "invalid_request: Missing x", EX_CONFIG, "check token_url" },
	{ 400, "{\"error\":\"odd_error\",\"error_description\":\"AADSTS999999: Something odd "
	    "happened. Really.\",\"error_codes\":[999999]}",
	  "odd_error AADSTS999999: Something odd happened.", EX_UNAVAILABLE,
	  "https://login.microsoftonline.com/error?code=999999" },
	{ 403, "{\"error\":\"odd_error\"}", "odd_error", EX_NOPERM, "" },
	/* not an OAuth error document */
	{ 502, "<html><body>Bad Gateway</body></html>", "token endpoint answered HTTP 502",
	  EX_TEMPFAIL, "try again later" },
	{ 429, "", "token endpoint answered HTTP 429", EX_TEMPFAIL, "try again later" },
	{ 400, "Bad Request\r\nmore", "token endpoint answered HTTP 400", EX_PROTOCOL, "" },
	{ 404, "{\"message\":\"not found\"}", "token endpoint answered HTTP 404", EX_PROTOCOL, "" },
	{ 400, "{\"error\":\"\"}", "token endpoint answered HTTP 400", EX_PROTOCOL, "" },
	{ 200, "{\"access_token\":", "token endpoint answered HTTP 200", EX_PROTOCOL, "" },
};

static void
check_error_case(size_t i, const struct error_case *t)
{
	struct tm_err err;
	int rc;

	memset(&err, 0x55, sizeof(err));	/* must be cleared, not appended to */
	rc = token_endpoint_error(t->status, t->body, strlen(t->body), &err);
	tap_is_int(rc, -1, "endpoint error #%zu (HTTP %ld): returns -1", i, t->status);
	tap_is_str(err.msg, t->msg, "endpoint error #%zu: msg", i);
	tap_is_int(err.exit, t->exit, "endpoint error #%zu: exit", i);
	if (t->hint[0])
		tap_ok(strstr(err.hint, t->hint) != NULL, "endpoint error #%zu: hint has '%s' "
		    "(%s)", i, t->hint, err.hint);
	else
		tap_is_str(err.hint, "", "endpoint error #%zu: no hint", i);
	tap_ok(strstr(err.msg, "Trace") == NULL && strstr(err.msg, "trace") == NULL &&
	    strstr(err.hint, "0a1b2c3d") == NULL && strstr(err.server, "0a1b2c3d") == NULL,
	    "endpoint error #%zu: no trace id in msg, hint or server", i);
}

static void
test_endpoint_errors(void)
{
	const char *body;
	struct tm_err err;
	size_t i;

	for (i = 0; i < sizeof(error_cases) / sizeof(error_cases[0]); i++)
		check_error_case(i, &error_cases[i]);

	token_endpoint_error(401, error_cases[0].body, strlen(error_cases[0].body), &err);
	tap_ok(strncmp(err.server, "HTTP 401: AADSTS7000215: Invalid client secret provided. "
	    "Ensure the secret", 70) == 0, "the server line has the description's first line");
	tap_ok(strstr(err.detail, "trace_id: 0a1b2c3d-trace") != NULL &&
	    strstr(err.detail, "correlation_id: 9f8e7d6c-corr") != NULL,
	    "trace and correlation ids go to detail");
	tap_is_int(err.cls, TM_ERR_AUTH, "refused credentials: class auth");

	token_endpoint_error(400, "{\"error\":\"invalid_grant\"}", 25, &err);
	tap_is_str(err.server, "HTTP 400", "no description: server is the status");
	token_endpoint_error(502, NULL, 0, &err);
	tap_is_str(err.msg, "token endpoint answered HTTP 502", "no body at all");
	body = "{\"error\":\"invalid_grant\",\"error_description\":\"AADSTS50173: Revoked.\"}";
	token_endpoint_error(400, body, strlen(body), &err);
	tap_is_str(err.msg, "invalid_grant AADSTS50173: Revoked.",
	    "code taken from the description when error_codes is missing");
	tap_ok(strstr(err.hint, "authorize") != NULL, "and its rule applies");
}

/* ---- the cache ---- */

/* A config with accounts "app" (client_credentials, inline secret) and
   "del" (refresh_token), extra lines appended to both. */
static int
load(struct config *cfg, const char *app_extra, const char *del_extra)
{
	struct tm_err err;
	char *yaml = xasprintf(
	    "cache_dir: %s/cache\n"
	    "accounts:\n"
	    "  app:\n"
	    "    from: app@example.com\n"
	    "    token_url: " NOWHERE "\n"
	    "%s"
	    "  del:\n"
	    "    from: del@example.com\n"
	    "    token_url: " NOWHERE "\n"
	    "    scope: " SCOPE_DEL "\n"
	    "    client_id: abc\n"
	    "    grant: refresh_token\n"
	    "%s", tmp, app_extra ? app_extra : "    scope: " SCOPE_APP "\n    client_id: abc\n    client_secret: s3cret\n",
	    del_extra ? del_extra : "");
	int rc;

	memset(cfg, 0, sizeof(*cfg));
	rc = config_parse_buffer("t.yaml", yaml, strlen(yaml), &params, cfg, &err);

	if (rc < 0)
		tap_ok(0, "config loads: %s", err.msg);
	free(yaml);
	return rc;
}

static struct token_context
context(const struct config *cfg, const char *account)
{
	struct token_context c = {
		.cfg = cfg, .account = config_account(cfg, account), .params = &params,
		.setgid = false, .timeout_seconds = 2,
	};

	return c;
}

/* Store a token answer the way authorize.c does. */
static int
store(const struct token_context *c, const char *json, struct tm_err *err)
{
	struct json_doc *d = NULL;
	int rc;

	if (json_parse(json, strlen(json), &d, err) < 0)
		return -1;
	rc = token_store_response(c, d, err);
	json_free(d);
	return rc;
}

/* token_get, expecting the cache to answer. */
static void
expect_cached(const struct token_context *c, const char *want, const char *what)
{
	struct tm_err err;
	char *tok = NULL;
	int rc = token_get(c, &tok, &err);

	tap_is_int(rc, 0, "%s: token_get succeeds without a request", what);
	if (rc < 0)
		tap_diag(err.msg, "");
	tap_is_str(tok, want, "%s: the cached token", what);
	secret_free(tok);
}

/* token_get, expecting it to go to the (absent) network. */
static void
expect_request(const struct token_context *c, const char *what)
{
	struct tm_err err;
	char *tok = NULL;
	double t0 = now_seconds();
	int rc = token_get(c, &tok, &err);

	tap_is_int(rc, -1, "%s: token_get asks the endpoint", what);
	tap_is_int(err.exit, EX_TEMPFAIL, "%s: unreachable endpoint is EX_TEMPFAIL", what);
	tap_ok(strncmp(err.msg, "cannot get a token for account ", 31) == 0,
	    "%s: message names the account (%s)", what, err.msg);
	tap_ok(now_seconds() - t0 < 4, "%s: fails within the timeout", what);
	tap_ok(tok == NULL, "%s: no token", what);
}

static void
test_cache_round_trip(void)
{
	struct config cfg;
	struct token_context c;
	struct tm_err err;
	struct stat st;
	char *dir = path_in("cache"), *file = path_in("cache/app.json"), *text;

	if (load(&cfg, NULL, NULL) < 0)
		goto out;
	c = context(&cfg, "app");
	tap_is_int(store(&c, "{\"token_type\":\"Bearer\",\"expires_in\":3599,\"ext_expires_in\":"
	    "3599,\"access_token\":\"AT.one\"}", &err), 0, "store a token answer");
	tap_ok(stat(dir, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0700,
	    "cache_dir created with mode 0700");
	tap_ok(stat(file, &st) == 0 && (st.st_mode & 0777) == 0600, "cache file mode 0600");
	text = read_text(file);
	tap_ok(strstr(text, "\"version\":1") && strstr(text, "\"token_url\":\"" NOWHERE "\"") &&
	    strstr(text, "\"client_id\":\"abc\"") &&
	    strstr(text, "\"scope\":\"https://outlook.office365.com/.default\""),
	    "cache file ties the token to URL, client and scope");
	free(text);
	expect_cached(&c, "AT.one", "fresh entry");
	tap_is_int(store(&c, "{\"access_token\":\"AT.two\",\"expires_in\":\"3599\"}", &err), 0,
	    "expires_in may be a string");
	expect_cached(&c, "AT.two", "string expires_in");
	tap_is_int(store(&c, "{\"access_token\":\"AT.three\"}", &err), 0,
	    "expires_in may be missing");
	expect_cached(&c, "AT.three", "default lifetime");
	tap_is_int(store(&c, "{\"access_token\":\"AT.old\",\"expires_in\":60}", &err), 0,
	    "store a token about to expire");
	expect_request(&c, "entry within TOKEN_MIN_REMAINING");
out:
	config_free(&cfg);
	free(dir);
	free(file);
}

static void
test_cache_bad_answers(void)
{
	static const char *const bad[] = {
		"{\"token_type\":\"Bearer\",\"expires_in\":3599}",
		"{\"access_token\":\"\"}",
		"{\"access_token\":\"two words\"}",
		"{\"access_token\":\"AT\\r\\nX-Injected: 1\"}",
		"{\"access_token\":\"AT\",\"expires_in\":-5}",
		"{\"access_token\":\"AT\",\"expires_in\":\"soon\"}",
		"{\"access_token\":\"AT\",\"token_type\":\"pop\"}",
		"{\"access_token\":\"AT\",\"refresh_token\":\"bad token\"}",
	};
	struct config cfg;
	struct token_context c;
	struct tm_err err;
	size_t i;

	if (load(&cfg, NULL, NULL) < 0)
		goto out;
	c = context(&cfg, "app");
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		tap_is_int(store(&c, bad[i], &err), -1, "answer refused: %s", bad[i]);
		tap_is_int(err.exit, EX_PROTOCOL, "answer refused with EX_PROTOCOL: %s", bad[i]);
	}
out:
	config_free(&cfg);
}

static void
test_cache_mismatch(void)
{
	struct config a = { 0 }, b = { 0 }, d = { 0 };
	struct token_context c;
	struct tm_err err;

	if (load(&a, NULL, NULL) < 0 ||
	    load(&b, "    client_id: abc\n    client_secret: s\n    scope: https://graph.microsoft.com/.default\n",
	    NULL) < 0 ||
	    load(&d, "    client_id: other\n    client_secret: s\n    scope: " SCOPE_APP "\n",
	    NULL) < 0)
		goto out;
	c = context(&a, "app");
	tap_is_int(store(&c, "{\"access_token\":\"AT.a\",\"expires_in\":3600}", &err), 0,
	    "store under the first config");
	c = context(&b, "app");
	expect_request(&c, "other scope");
	c = context(&d, "app");
	expect_request(&c, "other client_id");
	c = context(&a, "app");
	expect_cached(&c, "AT.a", "the original config still hits");
out:
	config_free(&a);
	config_free(&b);
	config_free(&d);
}

static void
test_cache_damaged(void)
{
	static const char *const damaged[] = {
		"", "{\"version\":1,\"token_url\":", "garbage\n",
		"{\"version\":2,\"access_token\":\"x\"}", "[1,2,3]",
	};
	struct config cfg;
	struct token_context c;
	char *file = path_in("cache/app.json"), *out;
	size_t i;

	if (load(&cfg, NULL, NULL) < 0)
		goto out;
	c = context(&cfg, "app");
	for (i = 0; i < sizeof(damaged) / sizeof(damaged[0]); i++) {
		write_file(file, damaged[i], 0600);
		capture_start();
		expect_request(&c, "damaged cache file");
		out = capture_end();
		tap_ok(strstr(out, "warning: discarding damaged token cache ") != NULL &&
		    strstr(out, "app.json") != NULL, "damaged file #%zu: a warning", i);
		free(out);
	}
out:
	config_free(&cfg);
	free(file);
}

static void
test_cache_refusals(void)
{
	struct config cfg;
	struct token_context c;
	struct tm_err err;
	char *dir = path_in("cache"), *file = path_in("cache/app.json"), *other = path_in("x");
	char *tok = NULL;

	if (load(&cfg, NULL, NULL) < 0)
		goto out;
	c = context(&cfg, "app");
	chmod(dir, 0750);
	tap_is_int(token_get(&c, &tok, &err), -1, "cache_dir open to the group: refused");
	tap_is_int(err.exit, EX_CONFIG, "open cache_dir: EX_CONFIG");
	tap_ok(strstr(err.msg, dir) && strstr(err.msg, "mode 0750"), "names it: %s", err.msg);
	tap_ok(strstr(err.hint, "chmod 700 ") != NULL, "hint: chmod 700 (%s)", err.hint);
	chmod(dir, 0700);
	tap_ok(stat(dir, &(struct stat){ 0 }) == 0, "directory left as it was");

	write_file(other, "{\"version\":1}", 0600);
	unlink(file);
	if (symlink(other, file) < 0)
		tap_ok(0, "symlink: %s", strerror(errno));
	tap_is_int(token_get(&c, &tok, &err), -1, "symlinked cache file: refused");
	tap_is_int(err.exit, EX_CONFIG, "symlinked cache file: EX_CONFIG");
	tap_ok(strstr(err.msg, "symbolic link") != NULL, "says why: %s", err.msg);
	tap_is_int(store(&c, "{\"access_token\":\"AT\"}", &err), -1, "nor written through");
	unlink(file);

	if (geteuid() == 0) {
		if (chown(dir, 65534, 65534) < 0)
			tap_ok(0, "chown: %s", strerror(errno));
		tap_is_int(token_get(&c, &tok, &err), -1, "cache_dir of another user: refused");
		tap_ok(strstr(err.msg, "owned by uid 65534") != NULL, "says whose: %s", err.msg);
		if (chown(dir, 0, 0) < 0)
			tap_ok(0, "chown: %s", strerror(errno));
	}
out:
	config_free(&cfg);
	free(dir);
	free(file);
	free(other);
}

static void
test_cache_dir_created(void)
{
	struct config cfg;
	struct token_context c;
	struct tm_err err;
	char *deep = path_in("a/b/c"), *top = path_in("a");
	struct stat st;

	if (load(&cfg, NULL, NULL) < 0)
		goto out;
	free(cfg.cache_dir);
	cfg.cache_dir = xstrdup(deep);
	c = context(&cfg, "app");
	tap_is_int(store(&c, "{\"access_token\":\"AT.deep\"}", &err), 0,
	    "missing parents of cache_dir are created");
	tap_ok(stat(top, &st) == 0 && (st.st_mode & 0777) == 0700, "parents mode 0700 too");
	expect_cached(&c, "AT.deep", "deep cache_dir");
	free(cfg.cache_dir);
	cfg.cache_dir = xstrdup("relative/dir");
	tap_is_int(store(&c, "{\"access_token\":\"AT\"}", &err), -1, "relative cache_dir refused");
out:
	config_free(&cfg);
	free(deep);
	free(top);
}

static void
test_invalidate_and_rotation(void)
{
	struct config cfg;
	struct token_context c;
	struct tm_err err;
	char *file = path_in("cache/del.json"), *text;

	if (load(&cfg, NULL, NULL) < 0)
		goto out;
	c = context(&cfg, "del");
	tap_is_int(store(&c, "{\"access_token\":\"AT.d1\",\"expires_in\":3600,"
	    "\"refresh_token\":\"RT.1\"}", &err), 0, "store a delegated answer");
	expect_cached(&c, "AT.d1", "delegated");
	tap_is_int(store(&c, "{\"access_token\":\"AT.d2\",\"refresh_token\":\"RT.2\"}", &err),
	    0, "store a rotated refresh token");
	text = read_text(file);
	tap_ok(strstr(text, "RT.2") && !strstr(text, "RT.1"), "the new refresh token replaced "
	    "the old one");
	free(text);
	tap_is_int(store(&c, "{\"access_token\":\"AT.d3\"}", &err), 0, "store without one");
	text = read_text(file);
	tap_ok(strstr(text, "RT.2") != NULL, "an answer without refresh_token keeps it");
	free(text);
	tap_is_int(token_invalidate(&c, &err), 0, "token_invalidate");
	text = read_text(file);
	tap_ok(strstr(text, "AT.d3") == NULL && strstr(text, "expires_at") == NULL,
	    "the access token is gone");
	tap_ok(strstr(text, "\"refresh_token\":\"RT.2\"") != NULL, "the refresh token stays");
	free(text);
	expect_request(&c, "after token_invalidate");
	tap_is_int(token_invalidate(&c, &err), 0, "token_invalidate with nothing cached");
out:
	config_free(&cfg);
	free(file);
}

static void
test_refresh_token_sources(void)
{
	struct config cfg;
	struct token_context c;
	struct tm_err err;
	char *rt = path_in("rt.txt"), *extra = xasprintf("    refresh_token_file: %s\n", rt);
	char *cached = path_in("cache/del.json");
	char *tok = NULL;

	if (load(&cfg, NULL, NULL) < 0)
		goto out;
	c = context(&cfg, "del");
	unlink(cached);
	tap_is_int(token_get(&c, &tok, &err), -1, "delegated without a refresh token");
	tap_is_str(err.msg, "account del has no refresh token yet", "says so");
	tap_is_str(err.hint, "run: tokenmail authorize del", "hint: authorize");
	tap_is_int(err.exit, EX_CONFIG, "EX_CONFIG");
	config_free(&cfg);

	if (load(&cfg, NULL, extra) < 0)
		goto out;
	c = context(&cfg, "del");
	tap_is_int(token_get(&c, &tok, &err), -1, "refresh_token_file missing: same");
	tap_is_str(err.msg, "account del has no refresh token yet", "not there yet");
	write_file(rt, "RT.file\n", 0600);
	expect_request(&c, "refresh token from refresh_token_file");
	write_file(rt, "RT.file\n", 0644);
	tap_is_int(token_get(&c, &tok, &err), -1, "refresh_token_file open to others");
	tap_ok(strstr(err.msg, "mode 0644") != NULL && err.exit == EX_CONFIG, "refused: %s",
	    err.msg);
out:
	config_free(&cfg);
	free(rt);
	free(extra);
	free(cached);
}

static void
test_federated_missing(void)
{
	struct config cfg;
	struct token_context c;
	struct tm_err err;
	char *tok = NULL, *extra = xasprintf("    client_id: abc\n    scope: " SCOPE_APP "\n"
	    "    client_assertion_file: %s/nope\n", tmp);

	if (load(&cfg, extra, NULL) < 0)
		goto out;
	c = context(&cfg, "app");
	tap_is_int(token_get(&c, &tok, &err), -1, "federated: missing assertion file");
	tap_ok(strstr(err.msg, "cannot open client_assertion_file") && err.exit == EX_CONFIG,
	    "named, EX_CONFIG: %s", err.msg);
out:
	config_free(&cfg);
	free(extra);
}

/* A process holding the lock makes token_get wait, then it finds the entry. */
static void
test_lock_waits(void)
{
	struct config cfg;
	struct token_context c;
	struct tm_err err;
	char *lock = path_in("cache/app.lock");
	double t0;
	int fd, status = -1;
	pid_t pid;

	if (load(&cfg, NULL, NULL) < 0)
		goto out;
	c = context(&cfg, "app");
	store(&c, "{\"access_token\":\"AT.lock\"}", &err);
	fd = open(lock, O_RDWR);
	tap_ok(fd >= 0 && flock(fd, LOCK_EX) == 0, "test holds the lock");
	t0 = now_seconds();
	pid = fork();
	if (pid == 0) {
		char *tok = NULL;

		close(fd);
		_exit(token_get(&c, &tok, &err) == 0 && strcmp(tok, "AT.lock") == 0 &&
		    now_seconds() - t0 >= 0.3 ? 0 : 1);
	}
	usleep(400000);
	close(fd);
	waitpid(pid, &status, 0);
	tap_ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "token_get waited for the lock, then used the entry");
out:
	config_free(&cfg);
	free(lock);
}

/* Writers and readers in parallel never see a torn file. */
static void
test_parallel(void)
{
	struct config cfg;
	struct token_context c;
	int i, bad = 0, status;
	char *out;

	if (load(&cfg, NULL, NULL) < 0)
		return;
	c = context(&cfg, "app");
	capture_start();
	for (i = 0; i < 8; i++) {
		if (fork() == 0) {
			struct tm_err err;
			char *tok, json[64];
			int j, fails = 0;

			for (j = 0; j < 15; j++) {
				(void)str_format(json, sizeof(json), "{\"access_token\":\"AT.%d.%d\"}", i, j);
				fails += store(&c, json, &err) < 0;
				fails += token_get(&c, &tok, &err) < 0 || strncmp(tok, "AT.", 3) != 0;
				secret_free(tok);
			}
			_exit(fails ? 1 : 0);
		}
	}
	while (wait(&status) > 0)
		bad += !WIFEXITED(status) || WEXITSTATUS(status) != 0;
	out = capture_end();
	tap_is_int(bad, 0, "8 processes storing and reading in parallel all succeed");
	tap_is_str(out, "", "and no damaged file was seen");
	free(out);
	config_free(&cfg);
}

/* setgid mode (SPEC 9): a root-owned 2770 directory shared by the group. */
static void
test_cache_setgid(void)
{
	struct config cfg;
	struct token_context c;
	struct tm_err err;
	char *dir = path_in("sg"), *file = path_in("sg/app.json");
	struct stat st;

	memset(&cfg, 0, sizeof(cfg));
	if (geteuid() != 0 || load(&cfg, NULL, NULL) < 0)
		goto out;
	free(cfg.cache_dir);
	cfg.cache_dir = xstrdup(dir);
	c = context(&cfg, "app");
	c.setgid = true;
	tap_is_int(store(&c, "{\"access_token\":\"AT.sg\"}", &err), -1,
	    "setgid: a missing cache_dir is not created");
	tap_ok(strstr(err.hint, "install -d -o root") && stat(dir, &st) < 0, "hint: %s", err.hint);
	mkdir(dir, 0700);
	chmod(dir, 02770);
	if (chown(dir, 0, getegid()) < 0)
		tap_ok(0, "chown: %s", strerror(errno));
	tap_is_int(store(&c, "{\"access_token\":\"AT.sg\"}", &err), 0,
	    "setgid: root:group 2770 accepted");
	tap_ok(stat(file, &st) == 0 && (st.st_mode & 0777) == 0660, "setgid: files are 0660");
	expect_cached(&c, "AT.sg", "setgid");
	chmod(dir, 02777);
	tap_is_int(store(&c, "{\"access_token\":\"AT\"}", &err), -1, "setgid: 2777 refused");
	chmod(dir, 02770);
	if (chown(dir, 65534, getegid()) < 0)
		tap_ok(0, "chown: %s", strerror(errno));
	tap_is_int(store(&c, "{\"access_token\":\"AT\"}", &err), -1,
	    "setgid: a caller's own directory refused");
	tap_ok(strstr(err.msg, "owned by uid 65534, not by uid 0") != NULL, "%s", err.msg);
out:
	config_free(&cfg);
	free(dir);
	free(file);
}

static void
test_sibling_urls(void)
{
	static const char yaml[] = "accounts:\n  ms:\n    from: a@example.com\n"
	    "    tenant: contoso.onmicrosoft.com\n    client_id: abc\n"
	    "    grant: refresh_token\n";
	struct config cfg = { 0 }, ms = { 0 };
	struct tm_err err;
	struct strbuf b;

	strbuf_init(&b, 4096);
	if (load(&cfg, NULL, NULL) < 0 ||
	    config_parse_buffer("ms.yaml", yaml, strlen(yaml), &params, &ms, &err) < 0)
		goto out;
	tap_is_str(token_device_code_url(config_account(&ms, "ms"), &b),
	    "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/devicecode",
	    "device code URL beside Microsoft's token URL");
	tap_is_str(token_authorize_url(config_account(&ms, "ms"), &b),
	    "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/authorize",
	    "authorize URL beside Microsoft's token URL");
	tap_is_str(token_device_code_url(config_account(&cfg, "del"), &b), NULL,
	    "no device code URL for another provider's token URL");
out:
	strbuf_free(&b);
	config_free(&cfg);
	config_free(&ms);
}

/* ---- secrets ---- */

static void
test_secret_files(void)
{
	struct account a = { .name = (char *)"app" };
	struct tm_err err;
	char *f = path_in("secret.txt"), *s = NULL;

	a.client_secret = (char *)"inline-secret";
	tap_is_int(secret_client_secret(&a, &params, &s, &err), 0, "inline secret");
	tap_is_str(s, "inline-secret", "inline secret: value");
	secret_free(s);
	a.client_secret = NULL;
	a.client_secret_file = f;
	write_file(f, "file-secret \n\n", 0600);
	tap_is_int(secret_client_secret(&a, &params, &s, &err), 0, "secret file 0600");
	tap_is_str(s, "file-secret", "secret file: trailing white space dropped");
	secret_free(s);
	write_file(f, "file-secret\n", 0644);
	tap_is_int(secret_client_secret(&a, &params, &s, &err), -1, "secret file 0644 refused");
	tap_ok(strstr(err.msg, "account app: client_secret_file ") && strstr(err.msg, "mode 0644"),
	    "names account, key, file and mode: %s", err.msg);
	tap_is_int(err.exit, EX_CONFIG, "EX_CONFIG");
	tap_ok(strstr(err.hint, "chmod 600") != NULL, "hint: chmod 600");
	tap_ok(s == NULL, "no secret on failure");
	tap_is_int(secret_read_file(f, "client_assertion_file", false, &params, &s, &err), 0,
	    "without check_mode a readable file is fine");
	secret_free(s);
	write_file(f, " \n", 0600);
	tap_is_int(secret_client_secret(&a, &params, &s, &err), -1, "blank secret file refused");
	tap_ok(strstr(err.msg, "is empty") != NULL, "says empty: %s", err.msg);
	unlink(f);
	tap_is_int(secret_client_secret(&a, &params, &s, &err), -1, "missing secret file");
	tap_ok(strstr(err.msg, "cannot open client_secret_file") != NULL, "%s", err.msg);
	tap_is_int(secret_read_file(tmp, "client_secret_file", true, &params, &s, &err), -1,
	    "a directory is refused");
	free(f);
}

static void
expect_command_error(const char *cmd, const char *want, const char *what)
{
	struct tm_err err;
	char *s = NULL;

	tap_is_int(secret_run_command(cmd, NULL, 5, &s, &err), -1, "%s: fails", what);
	tap_is_str(err.msg, want, "%s: message", what);
	tap_is_int(err.exit, EX_CONFIG, "%s: EX_CONFIG", what);
	tap_ok(s == NULL, "%s: no secret", what);
}

static void
test_secret_commands(void)
{
	struct tm_err err;
	char *s = NULL, cmd[128];
	int fd;

	tap_is_int(secret_run_command("printf 'cmd-secret\\n'", "/home/u", 5, &s, &err), 0,
	    "command: runs");
	tap_is_str(s, "cmd-secret", "command: stdout, newline dropped");
	secret_free(s);
	setenv("TM_TEST_LEAK", "leaked", 1);
	secret_run_command("printf '%s|%s|%s' \"$PATH\" \"$HOME\" \"${TM_TEST_LEAK-clean}\"",
	    "/home/u", 5, &s, &err);
	tap_is_str(s, "/usr/bin:/bin|/home/u|clean", "command: clean environment");
	secret_free(s);
	secret_run_command("cat; printf x", NULL, 5, &s, &err);
	tap_is_str(s, "x", "command: stdin is /dev/null");
	secret_free(s);
	fd = open("/dev/null", O_RDONLY);
	(void)str_format(cmd, sizeof(cmd), "[ -e /proc/self/fd/%d ] && echo open || echo closed", fd);
	secret_run_command(cmd, NULL, 5, &s, &err);
	tap_is_str(s, "closed", "command: other descriptors closed");
	secret_free(s);
	close(fd);
	expect_command_error("echo oops-secret; exit 3", "client_secret_command exited with "
	    "status 3", "command exits 3");
	tap_ok(strstr(err.msg, "oops") == NULL, "its output is not shown");
	expect_command_error("true", "client_secret_command output is empty", "no output");
	expect_command_error("kill -9 $$", "client_secret_command was killed by signal 9",
	    "killed");
	expect_command_error("head -c 70000 /dev/zero | tr '\\000' a",
	    "client_secret_command printed more than 65536 octets", "too much output");
	expect_command_error("printf 'a\\000b'", "client_secret_command output holds a NUL byte",
	    "NUL byte");
}

static void
test_secret_command_timeout(void)
{
	struct tm_err err;
	char *s = NULL, *pidfile = path_in("pid"), *cmd, *text;
	double t0 = now_seconds();
	long pgid = 0;
	int i;

	(void)prctl(PR_SET_CHILD_SUBREAPER, 1);
	cmd = xasprintf("echo $$ > %s; sleep 30 & sleep 30", pidfile);
	tap_is_int(secret_run_command(cmd, NULL, 1, &s, &err), -1, "slow command: fails");
	tap_ok(now_seconds() - t0 < 3, "slow command: stopped at the timeout");
	tap_is_str(err.msg, "client_secret_command timed out after 1 s", "slow command: message");
	tap_is_int(err.exit, EX_CONFIG, "slow command: EX_CONFIG");
	text = read_text(pidfile);
	text[strcspn(text, "\n")] = '\0';
	/* The orphaned background sleep came to us (subreaper): reap it, so
	   that only a live process can still answer kill(-pgid, 0). */
	for (i = 0; i < 100 && parse_long(text, 1, 1L << 30, &pgid) == 0 &&
	    kill(-(pid_t)pgid, 0) == 0; i++) {
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
		usleep(20000);
	}
	tap_ok(pgid > 0 && kill(-(pid_t)pgid, 0) < 0 && errno == ESRCH,
	    "its whole process group was killed");
	free(text);
	free(cmd);
	free(pidfile);
}

static void
test_secret_via_account(void)
{
	struct account a = { .name = (char *)"app" };
	struct config_params sg = params;
	struct tm_err err;
	char *s = NULL;

	a.client_secret_command = (char *)"printf acct-cmd";
	tap_is_int(secret_client_secret(&a, &params, &s, &err), 0, "client_secret_command");
	tap_is_str(s, "acct-cmd", "client_secret_command: value");
	secret_free(s);
	sg.group_readable_ok = true;
	tap_is_int(secret_client_secret(&a, &sg, &s, &err), -1, "setgid: relative program refused");
	tap_ok(strstr(err.msg, "absolute path") != NULL, "%s", err.msg);
	a.client_secret_command = (char *)"/bin/echo setgid-ok";
	tap_is_int(secret_client_secret(&a, &sg, &s, &err), 0, "setgid: root's program runs");
	tap_is_str(s, "setgid-ok", "setgid: value");
	secret_free(s);
	a.client_secret_command = NULL;
	tap_is_int(secret_client_secret(&a, &params, &s, &err), -1, "no source at all");
}

int
main(void)
{
	params.uid = geteuid();
	(void)str_copy(tmp, sizeof(tmp), "/tmp/token_test.XXXXXX");
	if (mkdtemp(tmp) == NULL) {
		printf("1..0 # SKIP cannot create a temp directory\n");
		return 77;
	}
	test_endpoint_errors();
	test_cache_round_trip();
	test_cache_bad_answers();
	test_cache_mismatch();
	test_cache_damaged();
	test_cache_refusals();
	test_cache_dir_created();
	test_invalidate_and_rotation();
	test_refresh_token_sources();
	test_federated_missing();
	test_cache_setgid();
	test_sibling_urls();
	test_lock_waits();
	test_parallel();
	test_secret_files();
	test_secret_commands();
	test_secret_command_timeout();
	test_secret_via_account();
	remove_tree(tmp);
	return tap_done();
}
