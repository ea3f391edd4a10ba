/*
 * check.h: `tokenmail check [ACCOUNT]`, the troubleshooting command. For
 * one account it gets a fresh token, decodes and prints its claims, checks
 * them against what the account's method needs, and for SMTP connects,
 * STARTTLS, AUTH and QUIT without sending. Each failure is reported with
 * the concrete fix (Entra or Exchange Online step) in err's hint.
 *
 * The claim functions are pure (no I/O) so unit tests drive them with
 * hand-made tokens. The token's signature is not verified: check only
 * explains what the provider issued; the servers decide what they accept.
 */
#ifndef TM_CHECK_H
#define TM_CHECK_H

#include <stdbool.h>
#include <stdio.h>

#include "config.h"
#include "err.h"
#include "token.h"

struct check_params {
	const struct config *cfg;
	const struct config_params *cparams;	/* for the token context */
	const char *config_path;		/* for the report */
	const struct account *account;		/* resolved by main */
	const char *helo_name;			/* this host's name for EHLO */
	bool setgid;				/* installed setgid: the group's cache */
	const struct token_broker *broker;	/* non-NULL: tokens come from it */
};

/*
 * Check p->account, writing the report (one finding per line; never a token
 * or secret) to out. 0 when every check passed, else -1 with err: the exit
 * code of the failure as a send would give it, msg naming what failed and
 * hint the fix.
 */
int check_account(const struct check_params *p, FILE *out, struct tm_err *err);

/* Longest claim value kept (longer ones are cut); a list (roles) is joined
   with spaces into one such value. */
#define CHECK_CLAIM_MAX		512

/* What an access token says about itself: the claims check prints and
   judges. A claim the token lacks is "" (exp: 0). Values are as the token
   has them, not yet sanitized for printing. */
struct check_claims {
	char aud[CHECK_CLAIM_MAX];	/* the resource (API) it is for */
	char roles[CHECK_CLAIM_MAX];	/* app-only permissions, space-separated */
	char scp[CHECK_CLAIM_MAX];	/* delegated permissions, space-separated */
	char tid[CHECK_CLAIM_MAX];	/* tenant id: Entra ID tokens have it */
	char appid[CHECK_CLAIM_MAX];	/* client id (v1 "appid", v2 "azp") */
	char upn[CHECK_CLAIM_MAX];	/* delegated: the user ("upn", else
					   "preferred_username", "unique_name") */
	long long exp;			/* expiry, seconds since the epoch */
	bool has_roles, has_scp;	/* the claim is present (it may be empty) */
};

/*
 * Decode the payload of a JWT access token ("header.payload.signature",
 * base64url) into c (zeroed first). 0, or -1 when the token is not a JWT
 * whose payload is a JSON object, with why[size] saying so ("not a JWT
 * (no '.')", ...); a provider may issue opaque tokens (Google does), so
 * that is not an error. Nothing of the token is copied into why. Pure.
 */
int check_claims_decode(const char *token, struct check_claims *c, char *why, size_t size);

/* What check_claims_judge found besides pass or fail. */
struct check_verdict {
	char summary[256];	/* "SMTP app-only: aud A, role SMTP.SendAsApp" */
	bool no_readwrite;	/* Graph without Mail.ReadWrite: messages over
				   about 3 MB (the draft path) will be refused */
};

/*
 * Judge c against what a's method and grant need (SMTP: aud Exchange
 * Online, role SMTP.SendAsApp app-only or scope SMTP.Send delegated;
 * Graph: aud Microsoft Graph, Mail.Send either way). 0 with v filled
 * when the token fits, else -1 with err: EX_NOPERM, msg naming the
 * audience or the missing permission, hint the fix (the scope to use, or
 * the API permission to add and consent). Pure.
 */
int check_claims_judge(const struct check_claims *c, const struct account *a,
    struct check_verdict *v, struct tm_err *err);

#endif
