/*
 * graph_error.c: a Graph answer that is not the expected one, turned into
 * the exit code, the one-line cause, the server's words and a hint. Code
 * against error.code, not the message (PROTOCOL 4.6). Which status means
 * what: 401 is the token (77 once a fresh one failed too), 403 is a right
 * the app or mailbox lacks (77), other 4xx will not change by retrying
 * (69), 408/429/5xx will (75, honouring Retry-After).
 */
#include <stdio.h>
#include <string.h>

#include "graph_priv.h"
#include "json.h"

struct code_hint {
	const char *code;
	const char *hint;
};

static const struct code_hint code_hints[] = {
	{ "ErrorAccessDenied", "the app lacks Mail.Send (Application) with admin consent, or an "
	  "Application Access Policy or RBAC for Applications scope excludes this mailbox" },
	{ "ErrorSendAsDenied", "the authenticated mailbox has no Send As right on the From: "
	  "address (Add-RecipientPermission)" },
	{ "ErrorInvalidUser", "no such mailbox in the tenant: check the account's from" },
	{ "MailboxNotEnabledForRESTAPI", "the mailbox is inactive, soft-deleted, on-premises or "
	  "has no Exchange Online licence" },
	{ "ErrorMessageSizeExceeded", "the message exceeds the mailbox's size limit "
	  "(Set-Mailbox -MaxSendSize); lower graph.max_size to fail before sending" },
	{ "ErrorInvalidRecipients", "Graph found no valid recipient in To:, Cc: or Bcc:" },
	{ "InvalidAuthenticationToken", "the token must be for Microsoft Graph: scope "
	  "https://graph.microsoft.com/.default (app-only) or "
	  "https://graph.microsoft.com/Mail.Send (delegated)" },
};

static const char *
hint_for(const char *code)
{
	size_t i;

	for (i = 0; i < sizeof(code_hints) / sizeof(code_hints[0]); i++) {
		if (strcmp(code_hints[i].code, code) == 0)
			return code_hints[i].hint;
	}
	return NULL;
}

/* The hint: the code's, else one for the status; the draft path's
   permission when a step that builds the draft is refused for want of
   rights (sending the draft needs Mail.Send only). */
static const char *
hint_for_answer(const struct graph_call *c, long status, const char *code)
{
	if (c->builds_draft && status == 403)
		return "messages over 3 MB are sent as a draft, which needs Mail.ReadWrite as "
		    "well as Mail.Send";
	if (hint_for(code))
		return hint_for(code);
	if (status == 413)
		return hint_for("ErrorMessageSizeExceeded");
	if (status == 401)
		return hint_for("InvalidAuthenticationToken");
	return NULL;
}

static int
exit_for_status(long status)
{
	if (status == 408 || status == 429 || status >= 500)
		return EX_TEMPFAIL;
	if (status == 401 || status == 403)
		return EX_NOPERM;
	if (status >= 400)
		return EX_UNAVAILABLE;
	return EX_PROTOCOL;
}

/* "Microsoft Graph refused the message: HTTP 403 ErrorSendAsDenied". */
static void
set_cause(const struct graph_call *c, long status, const char *code, struct tm_err *err)
{
	int ex = exit_for_status(status);
	enum tm_err_class cls = ex == EX_TEMPFAIL ? TM_ERR_CONN : ex == EX_PROTOCOL ?
	    TM_ERR_PROTO : status == 401 ? TM_ERR_AUTH : TM_ERR_RESP;
	const char *doing = c->what;

	if (status == 429)
		doing = "is throttling";
	else if (ex == EX_TEMPFAIL)
		doing = "is unavailable";
	else if (status == 401)
		doing = "rejected the access token";
	if (ex == EX_PROTOCOL) {
		tm_err_set(err, cls, ex, "Microsoft Graph answered HTTP %ld where %ld was expected",
		    status, c->expect);
		return;
	}
	tm_err_set(err, cls, ex, "Microsoft Graph %s: HTTP %ld%s%s", doing, status,
	    code[0] ? " " : "", code);
}

int
graph_answer_error(const struct graph_call *c, const struct http_response *resp,
    struct graph_result *r, struct tm_err *err)
{
	struct json_doc *d = NULL;
	struct tm_err ignored;
	const char *code = "", *message = "", *hint;

	tm_err_clear(&ignored);
	if (resp->body_len > 0 &&
	    json_parse_from("Microsoft Graph", resp->body, resp->body_len, &d, &ignored) == 0) {
		code = json_get(d, "error.code") ? json_get(d, "error.code") : "";
		message = json_get(d, "error.message") ? json_get(d, "error.message") : "";
	}
	set_cause(c, resp->status, code, err);
	(void)str_format(r->reply, sizeof(r->reply), "%ld%s%s%s%s", resp->status,
	    code[0] ? " " : "", code, message[0] ? ": " : "", message);
	tm_err_server(err, r->reply);
	hint = hint_for_answer(c, resp->status, code);
	if (hint)
		tm_err_hint(err, "%s", hint);
	if (resp->request_id[0])
		tm_err_detail(err, "request-id %s", resp->request_id);
	r->retry_after = err->exit == EX_TEMPFAIL ? resp->retry_after : -1;
	json_free(d);
	return -1;
}
