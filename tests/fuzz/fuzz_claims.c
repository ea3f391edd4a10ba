/*
 * fuzz_claims.c: the access token claims decoder of `tokenmail check`
 * (check.h: check_claims_decode): a JWT's payload, base64url and JSON, as
 * the token endpoint issued it, then judged against what SMTP and Graph
 * accounts need (check_claims_judge). The input is the token (up to its
 * first NUL). Invariants: a refusal says why; every claim fits its buffer;
 * a token judged unfit gets a message.
 */
#include <string.h>

#include "check.h"
#include "config.h"
#include "fuzz.h"

static void
judge(const struct check_claims *c, enum account_method method, enum token_grant grant)
{
	struct account a;
	struct check_verdict v;
	struct tm_err err;

	memset(&a, 0, sizeof(a));
	a.name = "app";
	a.from = "app@example.com";
	a.client_id = "00000000-0000-0000-0000-000000000000";
	a.scope = "https://outlook.office365.com/.default";
	a.method = method;
	a.grant = grant;
	if (check_claims_judge(c, &a, &v, &err) < 0)
		fuzz_check(err.msg[0] != '\0', "a token judged unfit without a message");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *token = fuzz_cstr(data, size);
	struct check_claims c;
	char why[256];

	why[0] = '\0';
	if (check_claims_decode(token, &c, why, sizeof(why)) == 0) {
		fuzz_check(strlen(c.aud) < CHECK_CLAIM_MAX && strlen(c.roles) < CHECK_CLAIM_MAX &&
		    strlen(c.scp) < CHECK_CLAIM_MAX && strlen(c.tid) < CHECK_CLAIM_MAX &&
		    strlen(c.appid) < CHECK_CLAIM_MAX && strlen(c.upn) < CHECK_CLAIM_MAX,
		    "a claim outgrew its buffer");
		judge(&c, METHOD_SMTP, GRANT_CLIENT_CREDENTIALS);
		judge(&c, METHOD_GRAPH, GRANT_REFRESH_TOKEN);
	} else {
		fuzz_check(why[0] != '\0', "a token refused without a reason");
	}
	free(token);
	return 0;
}
