/*
 * check.c: `tokenmail check [ACCOUNT]` (check.h). The steps run in order
 * and stop at the first failure: the account's secret files, a fresh
 * token, its claims against what the method needs, and for SMTP a session
 * that authenticates and quits without sending. Each step prints its
 * finding on out when it is done, or "STEP: failed"; the reason and its
 * fix go in err, which main prints on stderr. The token itself is never
 * printed, only what its payload says.
 */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base64.h"
#include "check.h"
#include "json.h"
#include "log.h"
#include "smtp.h"
#include "tm_limits.h"
#include "token.h"
#include "util.h"

/* A payload larger than this is no access token check can judge. */
#define CHECK_PAYLOAD_MAX	(64 * 1024)
/* One report line, before and after escaping. */
#define CHECK_LINE_MAX		2048

/*
 * The audiences each API's tokens carry (PROTOCOL 2.1, 2.2, 1.8). Entra
 * gives https://outlook.office.com to delegated SMTP.Send tokens and
 * https://outlook.office365.com to .default ones; some tokens name the
 * resource by its app id instead; the national clouds have hosts of their
 * own. A trailing '/' is ignored.
 */
static const char *const smtp_auds[] = {
	"https://outlook.office.com", "https://outlook.office365.com",
	"00000002-0000-0ff1-ce00-000000000000",
	"https://outlook.office365.us", "https://partner.outlook.cn", NULL
};
static const char *const graph_auds[] = {
	"https://graph.microsoft.com", "00000003-0000-0000-c000-000000000000",
	"https://graph.microsoft.us", "https://dod-graph.microsoft.us",
	"https://microsoftgraph.chinacloudapi.cn", NULL
};

/* What a method and grant need from a token, and where an admin adds it. */
struct check_need {
	enum account_method method;
	enum token_grant grant;
	const char *what;		/* "SMTP app-only" */
	const char *const *auds;	/* accepted aud values */
	const char *api;		/* the resource, for messages */
	const char *permission;		/* the role (app-only) or scope (delegated) */
	const char *scope;		/* the scope that gets such a token (SPEC 3) */
	const char *add;		/* the API permission, as the portal lists it */
};

static const struct check_need check_needs[] = {
	{ METHOD_SMTP, GRANT_CLIENT_CREDENTIALS, "SMTP app-only", smtp_auds,
	  "Exchange Online (SMTP)", "SMTP.SendAsApp", "https://outlook.office365.com/.default",
	  "Office 365 Exchange Online > Application permissions > SMTP.SendAsApp" },
	{ METHOD_SMTP, GRANT_REFRESH_TOKEN, "SMTP delegated", smtp_auds,
	  "Exchange Online (SMTP)", "SMTP.Send",
	  "https://outlook.office.com/SMTP.Send offline_access",
	  "Microsoft Graph > Delegated permissions > SMTP.Send" },
	{ METHOD_GRAPH, GRANT_CLIENT_CREDENTIALS, "Graph app-only", graph_auds,
	  "Microsoft Graph", "Mail.Send", "https://graph.microsoft.com/.default",
	  "Microsoft Graph > Application permissions > Mail.Send" },
	{ METHOD_GRAPH, GRANT_REFRESH_TOKEN, "Graph delegated", graph_auds,
	  "Microsoft Graph", "Mail.Send", "https://graph.microsoft.com/Mail.Send offline_access",
	  "Microsoft Graph > Delegated permissions > Mail.Send" },
};

static const char *const check_stage_names[] = {
	[SMTP_STAGE_CONNECT] = "connect", [SMTP_STAGE_GREETING] = "greeting",
	[SMTP_STAGE_EHLO] = "EHLO", [SMTP_STAGE_STARTTLS] = "STARTTLS",
	[SMTP_STAGE_AUTH] = "AUTH", [SMTP_STAGE_MAIL] = "MAIL", [SMTP_STAGE_RCPT] = "RCPT",
	[SMTP_STAGE_DATA] = "DATA", [SMTP_STAGE_DOT] = "end of data",
	[SMTP_STAGE_QUIT] = "QUIT", [SMTP_STAGE_DONE] = "end"
};

/* ---- the report ---- */

/* One line on out, control bytes escaped: claims and config values come
   from outside. */
static void __attribute__((format(printf, 2, 3)))
check_say(FILE *out, const char *fmt, ...)
{
	char raw[CHECK_LINE_MAX], line[CHECK_LINE_MAX];
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(raw, sizeof(raw), fmt, ap);
	va_end(ap);
	log_sanitize(line, sizeof(line), raw, strlen(raw));
	fprintf(out, "%s\n", line);
}

/* Append to line[size]; truncation only shortens the report. */
static void __attribute__((format(printf, 3, 4)))
line_addf(char *line, size_t size, const char *fmt, ...)
{
	size_t used = strlen(line);
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(line + used, size - used, fmt, ap);
	va_end(ap);
}

static const char *
check_grant_name(enum token_grant g)
{
	return g == GRANT_REFRESH_TOKEN ? "refresh_token" : "client_credentials";
}

/* ---- claims (pure) ---- */

static void
claim_copy(const struct json_doc *d, const char *key, char *out)
{
	const char *v = json_get(d, key);

	if (v != NULL)
		(void)str_copy(out, CHECK_CLAIM_MAX, v);
}

/* A claim that is a string ("scp") or an array of them ("roles", "aud"),
   joined with spaces; false when absent or empty. */
static bool
claim_list(const struct json_doc *d, const char *key, char *out)
{
	const char *v = json_get(d, key);
	size_t i;

	if (v != NULL) {
		(void)str_copy(out, CHECK_CLAIM_MAX, v);
		return true;
	}
	for (i = 0; (v = json_get_array_string(d, key, i)) != NULL; i++) {
		if (i > 0)
			(void)str_append(out, CHECK_CLAIM_MAX, " ");
		(void)str_append(out, CHECK_CLAIM_MAX, v);
	}
	return i > 0;
}

static void
claims_fill(const struct json_doc *d, struct check_claims *c)
{
	long exp;

	(void)claim_list(d, "aud", c->aud);
	c->has_roles = claim_list(d, "roles", c->roles);
	c->has_scp = claim_list(d, "scp", c->scp);
	claim_copy(d, "tid", c->tid);
	claim_copy(d, "appid", c->appid);
	if (c->appid[0] == '\0')
		claim_copy(d, "azp", c->appid);
	claim_copy(d, "upn", c->upn);
	if (c->upn[0] == '\0')
		claim_copy(d, "preferred_username", c->upn);
	if (c->upn[0] == '\0')
		claim_copy(d, "unique_name", c->upn);
	if (json_get_long(d, "exp", 1, LONG_MAX, &exp) == 0)
		c->exp = exp;
}

/* No signature check: check is diagnostics only, and the servers that
   take the token verify it themselves. */
int
check_claims_decode(const char *token, struct check_claims *c, char *why, size_t size)
{
	const char *p1 = strchr(token, '.'), *p2 = p1 ? strchr(p1 + 1, '.') : NULL;
	struct json_doc *d = NULL;
	struct strbuf payload;
	struct tm_err e;
	int rc = -1;

	memset(c, 0, sizeof(*c));
	strbuf_init(&payload, CHECK_PAYLOAD_MAX);
	if (p2 == NULL || strchr(p2 + 1, '.') != NULL) {
		(void)str_copy(why, size, "not a JWT (not three parts separated by '.')");
		goto out;
	}
	if (base64url_decode(&payload, p1 + 1, (size_t)(p2 - p1 - 1)) < 0 || payload.len == 0) {
		(void)str_copy(why, size, "the JWT payload is not base64url");
		goto out;
	}
	if (json_parse(payload.data, payload.len, &d, &e) < 0) {
		(void)str_copy(why, size, "the JWT payload is not a JSON object");
		goto out;
	}
	claims_fill(d, c);
	rc = 0;
out:
	json_free(d);
	/* Not the whole credential, but a part of it. */
	if (payload.data != NULL)
		secret_wipe(payload.data, payload.cap);
	strbuf_free(&payload);
	return rc;
}

static const struct check_need *
check_need_for(const struct account *a)
{
	size_t i;

	for (i = 0; i < sizeof(check_needs) / sizeof(check_needs[0]); i++)
		if (check_needs[i].method == a->method && check_needs[i].grant == a->grant)
			return &check_needs[i];
	return &check_needs[0];
}

static bool
check_aud_ok(const char *aud, const char *const *auds)
{
	size_t n = strlen(aud);

	if (n > 0 && aud[n - 1] == '/')
		n--;
	for (; *auds != NULL; auds++)
		if (strlen(*auds) == n && strncasecmp(aud, *auds, n) == 0)
			return true;
	return false;
}

/* true if the space-separated list holds word (case-insensitive). */
static bool
check_list_has(const char *list, const char *word)
{
	size_t n = strlen(word);

	while (*list != '\0') {
		size_t w = strcspn(list, " ");

		if (w == n && strncasecmp(list, word, n) == 0)
			return true;
		list += w;
		list += strspn(list, " ");
	}
	return false;
}

static int
check_wrong_audience(const struct check_claims *c, const struct account *a,
    const struct check_need *n, struct tm_err *err)
{
	bool app = a->grant == GRANT_CLIENT_CREDENTIALS;

	if (c->aud[0] == '\0')
		tm_err_set(err, TM_ERR_PERM, EX_NOPERM, "the token of account %s has no audience "
		    "(aud): it is not for %s", a->name, n->api);
	else
		tm_err_set(err, TM_ERR_PERM, EX_NOPERM, "the token of account %s is for %s, not "
		    "for %s", a->name, c->aud, n->api);
	tm_err_hint(err, "account %s asks for scope '%s'; for %s use scope: %s%s%s", a->name,
	    config_scope(a), n->what, n->scope, app ? "" : ", then run tokenmail authorize ",
	    app ? "" : a->name);
	return -1;
}

static int
check_missing_permission(const struct check_claims *c, const struct account *a,
    const struct check_need *n, struct tm_err *err)
{
	bool app = a->grant == GRANT_CLIENT_CREDENTIALS;
	const char *has = app ? c->roles : c->scp;

	tm_err_set(err, TM_ERR_PERM, EX_NOPERM, "the token of account %s lacks the %s %s "
	    "(%s: %s)", a->name, app ? "role" : "scope", n->permission, app ? "roles" : "scp",
	    has[0] != '\0' ? has : "none");
	if (app)
		tm_err_hint(err, "Entra admin center, App registrations, the app %s, API "
		    "permissions: add %s, then Grant admin consent", a->client_id, n->add);
	else
		tm_err_hint(err, "Entra admin center, App registrations, the app %s, API "
		    "permissions: add %s and grant consent, then run tokenmail authorize %s",
		    a->client_id, n->add, a->name);
	return -1;
}

int
check_claims_judge(const struct check_claims *c, const struct account *a,
    struct check_verdict *v, struct tm_err *err)
{
	const struct check_need *n = check_need_for(a);
	bool app = a->grant == GRANT_CLIENT_CREDENTIALS;
	const char *has = app ? c->roles : c->scp;

	memset(v, 0, sizeof(*v));
	if (!check_aud_ok(c->aud, n->auds))
		return check_wrong_audience(c, a, n, err);
	if (!check_list_has(has, n->permission))
		return check_missing_permission(c, a, n, err);
	(void)str_format(v->summary, sizeof(v->summary), "%s: aud %s, %s %s", n->what, c->aud,
	    app ? "role" : "scope", n->permission);
	/* The draft path (over about 3 MB, SPEC 6) creates a message first. */
	v->no_readwrite = a->method == METHOD_GRAPH && !check_list_has(has, "Mail.ReadWrite");
	return 0;
}

/* ---- steps ---- */

static int
check_config(const struct check_params *p, FILE *out, struct tm_err *err)
{
	const struct account *a = p->account;

	check_say(out, "config: %s ok", p->config_path);
	check_say(out, "account: %s (%s, %s, from %s)", a->name, config_method_name(a->method),
	    check_grant_name(a->grant), a->from);
	if (p->broker != NULL)
		check_say(out, "secrets: read by the token broker (setgid mode)");
	else if (config_check_secret_files(a, p->cparams, err) < 0) {
		check_say(out, "secrets: failed");
		return -1;
	}
	return 0;
}

/*
 * A fresh token: the cached one is dropped first, so that what the
 * endpoint says today about the credentials (a wrong or expired secret,
 * consent withdrawn) shows.
 */
static int
check_token(const struct check_params *p, FILE *out, char **token, struct tm_err *err)
{
	const struct account *a = p->account;
	struct token_context c = {
		.cfg = p->cfg,
		.account = a,
		.params = p->cparams,
		.setgid = p->setgid,
		.broker = p->broker,
		.timeout_seconds = p->cfg->timeout_seconds ? p->cfg->timeout_seconds :
		    TM_HTTP_TIMEOUT_SECONDS,
	};

	if (token_invalidate(&c, err) < 0 || token_get(&c, token, err) < 0) {
		check_say(out, "token: failed (from %s, scope %s)", config_token_url(a),
		    config_scope(a));
		return -1;
	}
	check_say(out, "token: new token from %s (scope %s)", config_token_url(a),
	    config_scope(a));
	return 0;
}

static void
check_print_expiry(FILE *out, long long exp, time_t now)
{
	time_t t = (time_t)exp;
	long long left = exp - (long long)now;
	char when[64];
	struct tm tm;

	if (exp <= 0 || gmtime_r(&t, &tm) == NULL ||
	    strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
		check_say(out, "  expires: unknown (no exp claim)");
	else if (left >= 0)
		check_say(out, "  expires: %s (in %lld min)", when, left / 60);
	else
		check_say(out, "  expires: %s (%lld min ago: is this host's clock right?)", when,
		    (59 - left) / 60);
}

static void
check_print_claims(FILE *out, const struct check_claims *c)
{
	check_say(out, "  aud: %s", c->aud[0] ? c->aud : "(none)");
	if (c->has_roles)
		check_say(out, "  roles: %s", c->roles);
	if (c->has_scp)
		check_say(out, "  scp: %s", c->scp);
	if (!c->has_roles && !c->has_scp)
		check_say(out, "  roles, scp: (none)");
	check_say(out, "  tid: %s", c->tid[0] ? c->tid : "(none)");
	check_say(out, "  appid: %s", c->appid[0] ? c->appid : "(none)");
	if (c->upn[0] != '\0')
		check_say(out, "  user: %s", c->upn);
	check_print_expiry(out, c->exp, time(NULL));
}

/* Notes: what passes today but limits what the account can do. */
static void
check_graph_notes(const struct account *a, const struct check_verdict *v, FILE *out)
{
	bool app = a->grant == GRANT_CLIENT_CREDENTIALS;

	if (v->no_readwrite)
		check_say(out, "note: no Mail.ReadWrite: messages over about 3 MB (sent as a draft) "
		    "will be refused; add Microsoft Graph > %s permissions > Mail.ReadWrite and "
		    "grant %sconsent", app ? "Application" : "Delegated", app ? "admin " : "");
	if (app)
		check_say(out, "note: Mail.Send (application) may send as any mailbox unless an "
		    "Application Access Policy limits the app; with one, %s must be in its group "
		    "(Test-ApplicationAccessPolicy -Identity %s -AppId %s)", a->from, a->from,
		    a->client_id);
}

static int
check_claims(const struct check_params *p, const char *token, FILE *out, struct tm_err *err)
{
	const struct account *a = p->account;
	struct check_claims c;
	struct check_verdict v;
	char why[128];

	if (check_claims_decode(token, &c, why, sizeof(why)) < 0) {
		check_say(out, "claims: not checked: %s (usual outside Microsoft Entra ID, "
		    "e.g. Google)", why);
		return 0;
	}
	check_print_claims(out, &c);
	if (c.tid[0] == '\0') {
		check_say(out, "claims: not checked: no tid claim (not a Microsoft Entra ID token)");
		return 0;
	}
	if (check_claims_judge(&c, a, &v, err) < 0) {
		check_say(out, "claims: failed");
		return -1;
	}
	check_say(out, "claims: ok (%s)", v.summary);
	if (a->method == METHOD_GRAPH)
		check_graph_notes(a, &v, out);
	return 0;
}

/*
 * Exchange took a token whose claims are right, yet refused it (535
 * 5.7.3): for an app the usual cause is the missing Exchange service
 * principal or mailbox permission (PROTOCOL 2.1), for a user a token of
 * another mailbox. Only check knows the grant and client id to say so.
 */
static void
check_auth_hint(const struct account *a, const struct smtp_result *r, struct tm_err *err)
{
	const char *user = a->smtp.user;

	if (!r->auth_rejected || strcmp(r->reply.enhanced, "5.7.3") != 0)
		return;
	if (a->grant == GRANT_CLIENT_CREDENTIALS)
		tm_err_hint(err, "register the app in Exchange Online: New-ServicePrincipal -AppId "
		    "%s -ObjectId <object ID of its Enterprise application>, then "
		    "Add-MailboxPermission -Identity %s -User <that service principal> "
		    "-AccessRights FullAccess; SMTP AUTH must be on: Set-CASMailbox -Identity %s "
		    "-SmtpClientAuthenticationDisabled $false", a->client_id, user, user);
	else
		tm_err_hint(err, "sign in as %s (or a user with Send As on it) with tokenmail "
		    "authorize %s; SMTP AUTH must be on: Set-CASMailbox -Identity %s "
		    "-SmtpClientAuthenticationDisabled $false", user, a->name, user);
}

/*
 * A certificate refused (tls.c's message): an admin cannot tell a private
 * CA from a host name the certificate does not list, so name both fixes.
 */
static void
check_tls_hint(const struct account *a, struct tm_err *err)
{
	if (strncmp(err->msg, "TLS certificate of ", 19) != 0)
		return;
	tm_err_hint(err, "if %s has a certificate from a private CA, set tls_ca_file to that "
	    "CA's certificate; smtp.host must be a name the certificate lists (for Exchange "
	    "Online smtp.office365.com, not an IP address)", a->smtp.host);
}

/* "HOST:PORT connected, STARTTLS (TLS1.3 / ...), certificate verified, ..." */
static void
check_smtp_say(FILE *out, const struct account *a, const struct smtp_result *r, bool ok)
{
	const struct smtp_settings *srv = &a->smtp;
	bool implicit = srv->tls == SMTP_TLS_IMPLICIT;
	char line[CHECK_LINE_MAX];

	(void)str_format(line, sizeof(line), "%s:%u", srv->host, srv->port);
	if (ok || r->stage > SMTP_STAGE_CONNECT)
		line_addf(line, sizeof(line), " connected,");
	if (r->tls[0] != '\0')
		line_addf(line, sizeof(line), " %s (%s), certificate verified,",
		    implicit ? "TLS" : "STARTTLS", r->tls);
	else if (ok)
		line_addf(line, sizeof(line), " no TLS (tls: none, loopback),");
	if (ok && srv->auth == SMTP_AUTH_NONE)
		line_addf(line, sizeof(line), " no AUTH (auth: none), QUIT");
	else if (ok)
		line_addf(line, sizeof(line), " AUTH %s accepted for %s, QUIT",
		    srv->auth == SMTP_AUTH_XOAUTH2 ? "XOAUTH2" : "OAUTHBEARER", srv->user);
	else
		line_addf(line, sizeof(line), " failed at %s%s", check_stage_names[r->stage],
		    r->stage == SMTP_STAGE_CONNECT && implicit ? " (TLS handshake)" : "");
	check_say(out, "smtp: %s", line);
}

/* The SMTP session as a send has it, ending with QUIT once authenticated. */
static int
check_smtp(const struct check_params *p, const char *token, FILE *out, struct tm_err *err)
{
	const struct account *a = p->account;
	struct smtp_params sp = {
		.server = &a->smtp,
		.ca_file = p->cfg->tls_ca_file,
		.timeout_cap = p->cfg->timeout_seconds ? (int)p->cfg->timeout_seconds :
		    TM_HTTP_TIMEOUT_SECONDS,
		.helo_name = p->helo_name,
		.access_token = token,
		.probe_only = true,
	};
	struct smtp_result r;

	if (smtp_deliver(&sp, &r, err) == 0) {
		check_smtp_say(out, a, &r, true);
		return 0;
	}
	check_smtp_say(out, a, &r, false);
	check_auth_hint(a, &r, err);
	check_tls_hint(a, err);
	return -1;
}

int
check_account(const struct check_params *p, FILE *out, struct tm_err *err)
{
	const struct account *a = p->account;
	bool need_token = !(a->method == METHOD_SMTP && a->smtp.auth == SMTP_AUTH_NONE);
	char *token = NULL;
	int rc = -1;

	tm_err_clear(err);
	if (check_config(p, out, err) < 0)
		goto out;
	if (!need_token)
		check_say(out, "token: none needed (smtp.auth: none)");
	else if (check_token(p, out, &token, err) < 0 || check_claims(p, token, out, err) < 0)
		goto out;
	if (a->method == METHOD_SMTP && check_smtp(p, token, out, err) < 0)
		goto out;
	check_say(out, "check: all passed");
	rc = 0;
out:
	if (rc < 0)
		check_say(out, "check: failed (exit %d)", err->exit);
	secret_free(token);
	/* The report first, then main's error on stderr, also when both go
	   to one file. */
	(void)fflush(out);
	return rc;
}
