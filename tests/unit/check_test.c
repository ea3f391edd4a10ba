/*
 * check_test.c: the pure half of `tokenmail check`: decoding an access
 * token's claims (check_claims_decode) from hand-made JWTs and things that
 * are not, and judging them against what each method and grant needs
 * (check_claims_judge): exit code, cause, hint, summary and the Graph
 * Mail.ReadWrite note. Also smtp_auth_hint, which turns Exchange Online's
 * 5.7.139 replies into the Set-CASMailbox / Set-TransportConfig fix that
 * check and a send both print.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "check.h"
#include "smtp.h"
#include "util.h"
#include "tap.h"

/* ---- check_claims_decode ---- */

/* "header.payload.signature" with payload = base64url(json), into out. */
static void
make_jwt(const char *json, char *out, size_t size)
{
	struct strbuf b;

	strbuf_init(&b, 16384);
	(void)strbuf_append_str(&b, "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.");
	(void)base64url_encode(&b, json, strlen(json));
	(void)strbuf_append_str(&b, ".c2lnbmF0dXJl");
	(void)str_copy(out, size, b.data);
	strbuf_free(&b);
}

struct decode_case {
	const char *json;	/* payload, or NULL: token is used as it is */
	const char *token;
	int rc;
	const char *aud, *roles, *scp, *tid, *appid, *upn;
	long long exp;
	bool has_roles, has_scp;
	const char *why;	/* when rc is -1 */
};

static const struct decode_case decode_cases[] = {
	/* app-only, as Entra issues for .default (v1 claims) */
	{ "{\"aud\":\"https://outlook.office365.com\",\"iss\":\"https://sts.windows.net/t/\","
	  "\"exp\":1795000000,\"appid\":\"c1\",\"tid\":\"t1\",\"roles\":[\"SMTP.SendAsApp\"]}",
	  NULL, 0, "https://outlook.office365.com", "SMTP.SendAsApp", "", "t1", "c1", "",
	  1795000000, true, false, NULL },
	/* several roles are joined with spaces */
	{ "{\"aud\":\"https://graph.microsoft.com\",\"tid\":\"t\",\"appid\":\"c\","
	  "\"roles\":[\"Mail.Send\",\"Mail.ReadWrite\"]}",
	  NULL, 0, "https://graph.microsoft.com", "Mail.Send Mail.ReadWrite", "", "t", "c", "",
	  0, true, false, NULL },
	/* delegated: scp is a string; v2 tokens have azp, preferred_username */
	{ "{\"aud\":\"https://outlook.office.com\",\"scp\":\"SMTP.Send\",\"tid\":\"t\","
	  "\"azp\":\"p1\",\"preferred_username\":\"dev@example.com\",\"exp\":\"1795000001\"}",
	  NULL, 0, "https://outlook.office.com", "", "SMTP.Send", "t", "p1", "dev@example.com",
	  1795000001, false, true, NULL },
	/* upn wins over preferred_username; appid over azp */
	{ "{\"aud\":\"a\",\"appid\":\"c\",\"azp\":\"z\",\"upn\":\"u@x\","
	  "\"preferred_username\":\"p@x\",\"unique_name\":\"n@x\"}",
	  NULL, 0, "a", "", "", "", "c", "u@x", 0, false, false, NULL },
	/* aud as an array: its values joined */
	{ "{\"aud\":[\"https://graph.microsoft.com\"],\"roles\":[]}",
	  NULL, 0, "https://graph.microsoft.com", "", "", "", "", "", 0, false, false, NULL },
	/* a negative or absurd exp is no expiry */
	{ "{\"exp\":-5}", NULL, 0, "", "", "", "", "", "", 0, false, false, NULL },
	/* not JWTs */
	{ NULL, "ya29.a0AfH6SMBopaque", -1, NULL, NULL, NULL, NULL, NULL, NULL, 0, false, false,
	  "not a JWT (not three parts separated by '.')" },
	{ NULL, "opaque-token-without-dots", -1, NULL, NULL, NULL, NULL, NULL, NULL, 0, false,
	  false, "not a JWT (not three parts separated by '.')" },
	{ NULL, "a.b.c.d", -1, NULL, NULL, NULL, NULL, NULL, NULL, 0, false, false,
	  "not a JWT (not three parts separated by '.')" },
	{ NULL, "a.!!!.c", -1, NULL, NULL, NULL, NULL, NULL, NULL, 0, false, false,
	  "the JWT payload is not base64url" },
	{ NULL, "a..c", -1, NULL, NULL, NULL, NULL, NULL, NULL, 0, false, false,
	  "the JWT payload is not base64url" },
	{ "hello, world", NULL, -1, NULL, NULL, NULL, NULL, NULL, NULL, 0, false, false,
	  "the JWT payload is not a JSON object" },
	{ "[\"aud\"]", NULL, -1, NULL, NULL, NULL, NULL, NULL, NULL, 0, false, false,
	  "the JWT payload is not a JSON object" },
};

static void
test_decode(void)
{
	size_t i;

	for (i = 0; i < sizeof(decode_cases) / sizeof(decode_cases[0]); i++) {
		const struct decode_case *t = &decode_cases[i];
		struct check_claims c;
		char token[16384], why[128] = "";
		int rc;

		if (t->json != NULL)
			make_jwt(t->json, token, sizeof(token));
		else
			(void)str_copy(token, sizeof(token), t->token);
		rc = check_claims_decode(token, &c, why, sizeof(why));
		tap_is_int(rc, t->rc, "decode %zu: rc", i);
		if (rc < 0) {
			tap_is_str(why, t->why, "decode %zu: why", i);
			tap_ok(strstr(why, token) == NULL, "decode %zu: the token is not in why", i);
			continue;
		}
		tap_is_str(c.aud, t->aud, "decode %zu: aud", i);
		tap_is_str(c.roles, t->roles, "decode %zu: roles", i);
		tap_is_str(c.scp, t->scp, "decode %zu: scp", i);
		tap_is_str(c.tid, t->tid, "decode %zu: tid", i);
		tap_is_str(c.appid, t->appid, "decode %zu: appid", i);
		tap_is_str(c.upn, t->upn, "decode %zu: upn", i);
		tap_is_int((long)c.exp, (long)t->exp, "decode %zu: exp", i);
		tap_ok(c.has_roles == t->has_roles && c.has_scp == t->has_scp,
		    "decode %zu: has_roles, has_scp", i);
	}
}

/* A roles claim longer than CHECK_CLAIM_MAX is cut, not overflowed. */
static void
test_decode_long(void)
{
	char json[8192] = "{\"roles\":[", token[16384], why[64];
	struct check_claims c;
	int i;

	for (i = 0; i < 200; i++)
		(void)str_append(json, sizeof(json), i ? ",\"Mail.Send\"" : "\"Mail.Send\"");
	(void)str_append(json, sizeof(json), "]}");
	make_jwt(json, token, sizeof(token));
	tap_is_int(check_claims_decode(token, &c, why, sizeof(why)), 0, "long roles: decoded");
	tap_is_int((long)strlen(c.roles), CHECK_CLAIM_MAX - 1, "long roles: cut to the limit");
}

/* ---- check_claims_judge ---- */

struct judge_case {
	enum account_method method;
	enum token_grant grant;
	const char *scope;	/* the account's, or NULL for the default */
	const char *aud, *roles, *scp;
	int rc;
	const char *text;	/* rc 0: the summary; -1: err's msg */
	const char *hint;	/* -1: err's hint */
	bool no_readwrite;
};

#define APP GRANT_CLIENT_CREDENTIALS
#define DELEGATED GRANT_REFRESH_TOKEN

static const struct judge_case judge_cases[] = {
	/* SMTP app-only */
	{ METHOD_SMTP, APP, NULL, "https://outlook.office365.com", "SMTP.SendAsApp", "", 0,
	  "SMTP app-only: aud https://outlook.office365.com, role SMTP.SendAsApp", NULL, false },
	{ METHOD_SMTP, APP, NULL, "https://outlook.office.com/", "Mail.Read SMTP.SendAsApp", "",
	  0, "SMTP app-only: aud https://outlook.office.com/, role SMTP.SendAsApp", NULL, false },
	{ METHOD_SMTP, APP, NULL, "00000002-0000-0ff1-ce00-000000000000", "smtp.sendasapp", "",
	  0, "SMTP app-only: aud 00000002-0000-0ff1-ce00-000000000000, role SMTP.SendAsApp",
	  NULL, false },
	{ METHOD_SMTP, APP, "https://graph.microsoft.com/.default", "https://graph.microsoft.com",
	  "Mail.Send", "", -1,
	  "the token of account acct is for https://graph.microsoft.com, not for Exchange "
	  "Online (SMTP)",
	  "account acct asks for scope 'https://graph.microsoft.com/.default'; for SMTP "
	  "app-only use scope: https://outlook.office365.com/.default", false },
	{ METHOD_SMTP, APP, NULL, "https://outlook.office365.com.evil.example", "SMTP.SendAsApp",
	  "", -1, "the token of account acct is for https://outlook.office365.com.evil.example, "
	  "not for Exchange Online (SMTP)", NULL, false },
	{ METHOD_SMTP, APP, NULL, "", "SMTP.SendAsApp", "", -1,
	  "the token of account acct has no audience (aud): it is not for Exchange Online (SMTP)",
	  NULL, false },
	{ METHOD_SMTP, APP, NULL, "https://outlook.office365.com", "Mail.Send", "", -1,
	  "the token of account acct lacks the role SMTP.SendAsApp (roles: Mail.Send)",
	  "Entra admin center, App registrations, the app 11111111-2222-3333-4444-555555555555, "
	  "API permissions: add Office 365 Exchange Online > Application permissions > "
	  "SMTP.SendAsApp, then Grant admin consent", false },
	{ METHOD_SMTP, APP, NULL, "https://outlook.office365.com", "", "SMTP.SendAsApp", -1,
	  "the token of account acct lacks the role SMTP.SendAsApp (roles: none)", NULL, false },
	{ METHOD_SMTP, APP, NULL, "https://outlook.office365.com", "SMTP.SendAsAppX", "", -1,
	  "the token of account acct lacks the role SMTP.SendAsApp (roles: SMTP.SendAsAppX)",
	  NULL, false },
	/* SMTP delegated */
	{ METHOD_SMTP, DELEGATED, NULL, "https://outlook.office.com", "", "SMTP.Send", 0,
	  "SMTP delegated: aud https://outlook.office.com, scope SMTP.Send", NULL, false },
	{ METHOD_SMTP, DELEGATED, NULL, "https://outlook.office.com", "", "IMAP.AccessAsUser.All "
	  "SMTP.Send", 0, "SMTP delegated: aud https://outlook.office.com, scope SMTP.Send",
	  NULL, false },
	{ METHOD_SMTP, DELEGATED, NULL, "https://outlook.office.com", "SMTP.Send", "Mail.Read",
	  -1, "the token of account acct lacks the scope SMTP.Send (scp: Mail.Read)",
	  "Entra admin center, App registrations, the app 11111111-2222-3333-4444-555555555555, "
	  "API permissions: add Microsoft Graph > Delegated permissions > SMTP.Send and grant "
	  "consent, then run tokenmail authorize acct", false },
	{ METHOD_SMTP, DELEGATED, "Mail.Send offline_access", "https://graph.microsoft.com", "",
	  "Mail.Send", -1,
	  "the token of account acct is for https://graph.microsoft.com, not for Exchange "
	  "Online (SMTP)",
	  "account acct asks for scope 'Mail.Send offline_access'; for SMTP delegated use scope: "
	  "https://outlook.office.com/SMTP.Send offline_access, then run tokenmail authorize acct",
	  false },
	/* Graph app-only */
	{ METHOD_GRAPH, APP, NULL, "https://graph.microsoft.com", "Mail.Send", "", 0,
	  "Graph app-only: aud https://graph.microsoft.com, role Mail.Send", NULL, true },
	{ METHOD_GRAPH, APP, NULL, "00000003-0000-0000-c000-000000000000",
	  "Mail.ReadWrite Mail.Send", "", 0,
	  "Graph app-only: aud 00000003-0000-0000-c000-000000000000, role Mail.Send", NULL, false },
	{ METHOD_GRAPH, APP, NULL, "https://graph.microsoft.us", "Mail.Send", "", 0,
	  "Graph app-only: aud https://graph.microsoft.us, role Mail.Send", NULL, true },
	{ METHOD_GRAPH, APP, NULL, "https://graph.microsoft.com", "Mail.ReadWrite", "", -1,
	  "the token of account acct lacks the role Mail.Send (roles: Mail.ReadWrite)",
	  "Entra admin center, App registrations, the app 11111111-2222-3333-4444-555555555555, "
	  "API permissions: add Microsoft Graph > Application permissions > Mail.Send, then "
	  "Grant admin consent", false },
	{ METHOD_GRAPH, APP, "https://outlook.office365.com/.default",
	  "https://outlook.office365.com", "SMTP.SendAsApp", "", -1,
	  "the token of account acct is for https://outlook.office365.com, not for Microsoft "
	  "Graph",
	  "account acct asks for scope 'https://outlook.office365.com/.default'; for Graph "
	  "app-only use scope: https://graph.microsoft.com/.default", false },
	/* Graph delegated */
	{ METHOD_GRAPH, DELEGATED, NULL, "https://graph.microsoft.com", "", "Mail.Send User.Read",
	  0, "Graph delegated: aud https://graph.microsoft.com, scope Mail.Send", NULL, true },
	{ METHOD_GRAPH, DELEGATED, NULL, "https://graph.microsoft.com", "",
	  "Mail.ReadWrite Mail.Send", 0,
	  "Graph delegated: aud https://graph.microsoft.com, scope Mail.Send", NULL, false },
	{ METHOD_GRAPH, DELEGATED, NULL, "https://graph.microsoft.com", "", "", -1,
	  "the token of account acct lacks the scope Mail.Send (scp: none)",
	  "Entra admin center, App registrations, the app 11111111-2222-3333-4444-555555555555, "
	  "API permissions: add Microsoft Graph > Delegated permissions > Mail.Send and grant "
	  "consent, then run tokenmail authorize acct", false },
};

static void
test_judge(void)
{
	size_t i;

	for (i = 0; i < sizeof(judge_cases) / sizeof(judge_cases[0]); i++) {
		const struct judge_case *t = &judge_cases[i];
		struct account a = { .name = "acct", .method = t->method, .grant = t->grant,
		    .client_id = "11111111-2222-3333-4444-555555555555",
		    .from = "acct@example.com", .scope = (char *)t->scope };
		struct check_claims c = { .has_roles = t->roles[0] != '\0',
		    .has_scp = t->scp[0] != '\0' };
		struct check_verdict v;
		struct tm_err err;
		int rc;

		(void)str_copy(c.aud, sizeof(c.aud), t->aud);
		(void)str_copy(c.roles, sizeof(c.roles), t->roles);
		(void)str_copy(c.scp, sizeof(c.scp), t->scp);
		tm_err_clear(&err);
		rc = check_claims_judge(&c, &a, &v, &err);
		tap_is_int(rc, t->rc, "judge %zu: rc", i);
		if (rc == 0) {
			tap_is_str(v.summary, t->text, "judge %zu: summary", i);
			tap_ok(v.no_readwrite == t->no_readwrite, "judge %zu: no_readwrite", i);
			continue;
		}
		tap_is_int(err.exit, EX_NOPERM, "judge %zu: exit 77", i);
		tap_is_str(err.msg, t->text, "judge %zu: msg", i);
		if (t->hint != NULL)
			tap_is_str(err.hint, t->hint, "judge %zu: hint", i);
		else
			tap_ok(err.hint[0] != '\0', "judge %zu: a hint", i);
	}
}

/* ---- smtp_auth_hint ---- */

struct auth_hint_case {
	const char *enhanced, *text;
	int rc;
	const char *hint;
};

static const struct auth_hint_case auth_hint_cases[] = {
	{ "5.7.139", "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled "
	  "for the Mailbox. Visit https://aka.ms/smtp_auth_disabled for more information.", 0,
	  "SMTP AUTH is disabled for the mailbox app@example.com: Set-CASMailbox -Identity "
	  "app@example.com -SmtpClientAuthenticationDisabled $false (Exchange Online PowerShell)" },
	{ "5.7.139", "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled "
	  "for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information.", 0,
	  "SMTP AUTH is disabled for the whole tenant: Set-TransportConfig "
	  "-SmtpClientAuthenticationDisabled $false, or for this mailbox only: Set-CASMailbox "
	  "-Identity app@example.com -SmtpClientAuthenticationDisabled $false (Exchange Online "
	  "PowerShell)" },
	{ "5.7.139", "5.7.139 Authentication unsuccessful, user is locked by your organization's "
	  "security defaults policy. Contact your administrator.", 0,
	  "the tenant's security defaults block SMTP AUTH: turn them off (Entra admin center) "
	  "and run Set-CASMailbox -Identity app@example.com -SmtpClientAuthenticationDisabled "
	  "$false, or use method: graph" },
	{ "5.7.139", "5.7.139 Authentication unsuccessful, the request did not meet the criteria "
	  "to be authenticated successfully. Contact your administrator.", 0,
	  "SMTP AUTH is disabled or blocked for app@example.com: Set-CASMailbox -Identity "
	  "app@example.com -SmtpClientAuthenticationDisabled $false (or Set-TransportConfig "
	  "-SmtpClientAuthenticationDisabled $false for the tenant); security defaults and "
	  "conditional access can also block it" },
	{ "5.7.3", "5.7.3 Authentication unsuccessful [AM0PR06CA0126]", -1, NULL },
	{ "", "Authentication unsuccessful", -1, NULL },
};

static void
test_auth_hint(void)
{
	size_t i;

	for (i = 0; i < sizeof(auth_hint_cases) / sizeof(auth_hint_cases[0]); i++) {
		const struct auth_hint_case *t = &auth_hint_cases[i];
		struct smtp_reply r = { .code = 535 };
		char hint[512] = "";
		int rc;

		(void)str_copy(r.enhanced, sizeof(r.enhanced), t->enhanced);
		(void)str_copy(r.text, sizeof(r.text), t->text);
		rc = smtp_auth_hint(&r, "app@example.com", hint, sizeof(hint));
		tap_is_int(rc, t->rc, "smtp_auth_hint %zu: rc", i);
		if (rc == 0)
			tap_is_str(hint, t->hint, "smtp_auth_hint %zu: hint", i);
	}
}

int
main(void)
{
	test_decode();
	test_decode_long();
	test_judge();
	test_auth_hint();
	return tap_done();
}
