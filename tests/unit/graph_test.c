/*
 * graph_test.c: the client-request-id GUIDs (graph_new_request_id) and the
 * reading of Graph answers that were not the expected one
 * (graph_answer_error): exit code, cause line, server line, hint, the
 * reply for the log and Retry-After; and that printing the server's words
 * escapes control characters.
 */
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "graph_priv.h"
#include "log.h"
#include "util.h"
#include "tap.h"

/* ---- graph_new_request_id ---- */

static bool
is_lower_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

/* 8-4-4-4-12 lower-case hex digits, version 4, RFC 4122 variant. */
static bool
guid_ok(const char *id)
{
	size_t i;

	if (strlen(id) != GRAPH_REQUEST_ID_LEN)
		return false;
	for (i = 0; i < GRAPH_REQUEST_ID_LEN; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;

		if (dash ? id[i] != '-' : !is_lower_hex(id[i]))
			return false;
	}
	return id[14] == '4' && strchr("89ab", id[19]) != NULL;
}

static void
test_request_id(void)
{
	char a[GRAPH_REQUEST_ID_LEN + 1], b[GRAPH_REQUEST_ID_LEN + 1];
	char small[GRAPH_REQUEST_ID_LEN] = "xxxx";
	char big[64];
	int i, bad = 0, variants[4] = { 0 };

	graph_new_request_id(a, sizeof(a));
	graph_new_request_id(b, sizeof(b));
	tap_ok(guid_ok(a), "request id: 8-4-4-4-12 lower-case hex, v4, variant (%s)", a);
	tap_ok(guid_ok(b), "request id: second one well formed (%s)", b);
	tap_ok(strcmp(a, b) != 0, "request id: two calls differ");
	for (i = 0; i < 200; i++) {
		graph_new_request_id(big, sizeof(big));
		if (!guid_ok(big))
			bad++;
		else
			variants[strchr("89ab", big[19]) - "89ab"]++;
	}
	tap_is_int(bad, 0, "request id: 200 more are well formed");
	tap_ok(variants[0] && variants[1] && variants[2] && variants[3],
	    "request id: all four variant digits occur (%d %d %d %d)", variants[0], variants[1],
	    variants[2], variants[3]);
	graph_new_request_id(small, sizeof(small));
	tap_is_str(small, "", "request id: buffer one short gives \"\"");
	small[0] = 'x';
	graph_new_request_id(small, 1);
	tap_is_str(small, "", "request id: buffer of 1 gives \"\"");
	small[0] = 'x';
	graph_new_request_id(small, 0);
	tap_ok(small[0] == 'x', "request id: buffer of 0 left alone");
}

/* ---- graph_answer_error ---- */

struct answer_case {
	const char *name;
	const char *what;	/* graph_call.what */
	bool builds_draft;	/* graph_call.builds_draft */
	long expect;
	long status;
	const char *body;	/* or NULL */
	long retry_after;	/* in the response */
	const char *request_id;	/* in the response, or NULL */
	int exit;
	const char *msg;	/* err.msg exactly */
	const char *server;	/* err.server exactly (also r.reply) */
	const char *hint;	/* a substring of err.hint; "" for no hint */
	long r_retry;		/* r.retry_after */
};

#define MSG "refused the message"
#define ERR(code, message) "{\"error\":{\"code\":\"" code "\",\"message\":\"" message "\"," \
	"\"innerError\":{\"date\":\"2026-11-22T22:30:43\",\"request-id\":\"r-1\"}}}"

static const struct answer_case answer_cases[] = {
	{ "403 ErrorSendAsDenied", MSG, false, 202, 403,
	  ERR("ErrorSendAsDenied", "The user account which was used to submit this request "
	      "does not have the right to send mail on behalf of the specified sending account."),
	  -1, NULL, 77,
	  "Microsoft Graph refused the message: HTTP 403 ErrorSendAsDenied",
	  "403 ErrorSendAsDenied: The user account which was used to submit this request does "
	  "not have the right to send mail on behalf of the specified sending account.",
	  "Add-RecipientPermission", -1 },
	{ "403 ErrorAccessDenied", MSG, false, 202, 403,
	  ERR("ErrorAccessDenied", "Access is denied. Check credentials and try again."), 5, NULL,
	  77, "Microsoft Graph refused the message: HTTP 403 ErrorAccessDenied",
	  "403 ErrorAccessDenied: Access is denied. Check credentials and try again.",
	  "Mail.Send (Application) with admin consent", -1 },
	{ "403 ErrorAccessDenied on the draft", "refused the draft", true, 201, 403,
	  ERR("ErrorAccessDenied", "Access is denied. Check credentials and try again."), -1, NULL,
	  77, "Microsoft Graph refused the draft: HTTP 403 ErrorAccessDenied",
	  "403 ErrorAccessDenied: Access is denied. Check credentials and try again.",
	  "Mail.ReadWrite", -1 },
	{ "403 on an attachment", "refused the attachment \"a.pdf\"", true, 201, 403,
	  ERR("ErrorAccessDenied", "Access is denied."), -1, NULL,
	  77, "Microsoft Graph refused the attachment \"a.pdf\": HTTP 403 ErrorAccessDenied",
	  "403 ErrorAccessDenied: Access is denied.", "Mail.ReadWrite", -1 },
	{ "403 on an upload session", "refused the upload session for \"big.iso\"", true, 201, 403,
	  ERR("ErrorAccessDenied", "Access is denied."), -1, NULL, 77,
	  "Microsoft Graph refused the upload session for \"big.iso\": HTTP 403 ErrorAccessDenied",
	  "403 ErrorAccessDenied: Access is denied.", "Mail.ReadWrite", -1 },
	{ "403 without a body", MSG, false, 202, 403, NULL, -1, NULL, 77,
	  "Microsoft Graph refused the message: HTTP 403", "403", "", -1 },
	{ "404 ErrorInvalidUser", MSG, false, 202, 404,
	  ERR("ErrorInvalidUser", "The requested user 'x@example.com' is invalid."), -1, NULL,
	  69, "Microsoft Graph refused the message: HTTP 404 ErrorInvalidUser",
	  "404 ErrorInvalidUser: The requested user 'x@example.com' is invalid.",
	  "no such mailbox in the tenant", -1 },
	{ "404 MailboxNotEnabledForRESTAPI", MSG, false, 202, 404,
	  ERR("MailboxNotEnabledForRESTAPI", "The mailbox is either inactive, soft-deleted, or "
	      "is hosted on-premise."), -1, NULL,
	  69, "Microsoft Graph refused the message: HTTP 404 MailboxNotEnabledForRESTAPI",
	  "404 MailboxNotEnabledForRESTAPI: The mailbox is either inactive, soft-deleted, or is "
	  "hosted on-premise.", "no Exchange Online licence", -1 },
	{ "413 without JSON", MSG, false, 202, 413, "<html><body>Request Entity Too Large</body></html>",
	  -1, NULL, 69, "Microsoft Graph refused the message: HTTP 413", "413",
	  "exceeds the mailbox's size limit", -1 },
	{ "400 ErrorMessageSizeExceeded", MSG, false, 202, 400,
	  ERR("ErrorMessageSizeExceeded", "The message exceeds the maximum supported size."), -1,
	  NULL, 69, "Microsoft Graph refused the message: HTTP 400 ErrorMessageSizeExceeded",
	  "400 ErrorMessageSizeExceeded: The message exceeds the maximum supported size.",
	  "graph.max_size", -1 },
	{ "400 ErrorInvalidRecipients", MSG, false, 202, 400,
	  ERR("ErrorInvalidRecipients", "At least one recipient is not valid."), -1, NULL, 69,
	  "Microsoft Graph refused the message: HTTP 400 ErrorInvalidRecipients",
	  "400 ErrorInvalidRecipients: At least one recipient is not valid.",
	  "no valid recipient", -1 },
	{ "400 unknown code, no hint", MSG, false, 202, 400,
	  ERR("ErrorMimeContentInvalidBase64String", "Invalid base64 string for MIME content."),
	  -1, NULL, 69,
	  "Microsoft Graph refused the message: HTTP 400 ErrorMimeContentInvalidBase64String",
	  "400 ErrorMimeContentInvalidBase64String: Invalid base64 string for MIME content.",
	  "", -1 },
	{ "401 InvalidAuthenticationToken", MSG, false, 202, 401,
	  ERR("InvalidAuthenticationToken", "Access token validation failure. Invalid audience."),
	  -1, NULL, 77,
	  "Microsoft Graph rejected the access token: HTTP 401 InvalidAuthenticationToken",
	  "401 InvalidAuthenticationToken: Access token validation failure. Invalid audience.",
	  "https://graph.microsoft.com/.default", -1 },
	{ "401 without a body", MSG, false, 202, 401, "", -1, NULL, 77,
	  "Microsoft Graph rejected the access token: HTTP 401", "401",
	  "https://graph.microsoft.com/.default", -1 },
	{ "429 with Retry-After", MSG, false, 202, 429,
	  ERR("ApplicationThrottled", "Application is over its MailboxConcurrency limit."), 7,
	  NULL, 75, "Microsoft Graph is throttling: HTTP 429 ApplicationThrottled",
	  "429 ApplicationThrottled: Application is over its MailboxConcurrency limit.", "", 7 },
	{ "429 without Retry-After", MSG, false, 202, 429, NULL, -1, NULL, 75,
	  "Microsoft Graph is throttling: HTTP 429", "429", "", -1 },
	{ "503", MSG, false, 202, 503,
	  ERR("ServiceUnavailable", "Service Unavailable"), 30, NULL, 75,
	  "Microsoft Graph is unavailable: HTTP 503 ServiceUnavailable",
	  "503 ServiceUnavailable: Service Unavailable", "", 30 },
	{ "504", MSG, false, 202, 504, ERR("UnknownError", ""), -1, NULL, 75,
	  "Microsoft Graph is unavailable: HTTP 504 UnknownError", "504 UnknownError", "", -1 },
	{ "500", "refused to send the draft", false, 202, 500, NULL, -1, NULL, 75,
	  "Microsoft Graph is unavailable: HTTP 500", "500", "", -1 },
	{ "502 with an HTML body", MSG, false, 202, 502, "<html>Bad Gateway</html>", -1, NULL, 75,
	  "Microsoft Graph is unavailable: HTTP 502", "502", "", -1 },
	{ "408", MSG, false, 202, 408, NULL, 3, NULL, 75,
	  "Microsoft Graph is unavailable: HTTP 408", "408", "", 3 },
	{ "200 where 202 expected", MSG, false, 202, 200, "{\"value\":[]}", -1, NULL, 76,
	  "Microsoft Graph answered HTTP 200 where 202 was expected", "200", "", -1 },
	{ "204 where 201 expected", "refused the draft", false, 201, 204, NULL, -1, NULL, 76,
	  "Microsoft Graph answered HTTP 204 where 201 was expected", "204", "", -1 },
	{ "body not JSON", MSG, false, 202, 400, "Bad Request - Invalid Hostname", -1, NULL, 69,
	  "Microsoft Graph refused the message: HTTP 400", "400", "", -1 },
	{ "JSON without error", MSG, false, 202, 400, "{\"message\":\"x\"}", -1, NULL, 69,
	  "Microsoft Graph refused the message: HTTP 400", "400", "", -1 },
	{ "error.code not a string", MSG, false, 202, 400, "{\"error\":{\"code\":{\"a\":1}}}", -1, NULL,
	  69, "Microsoft Graph refused the message: HTTP 400", "400", "", -1 },
	{ "YAML block mapping is not JSON", MSG, false, 202, 400, "error: bad gateway", -1, NULL, 69,
	  "Microsoft Graph refused the message: HTTP 400", "400", "", -1 },
	{ "control characters kept in server", MSG, false, 202, 403,
	  ERR("ErrorAccessDenied", "line one\\nline two\\u001b[31m red\\u0007"), -1, NULL, 77,
	  "Microsoft Graph refused the message: HTTP 403 ErrorAccessDenied",
	  "403 ErrorAccessDenied: line one\nline two\x1b[31m red\x07",
	  "Mail.Send (Application)", -1 },
	{ "request-id in the detail", MSG, false, 202, 404, ERR("ErrorInvalidUser", "invalid"), -1,
	  "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9", 69,
	  "Microsoft Graph refused the message: HTTP 404 ErrorInvalidUser",
	  "404 ErrorInvalidUser: invalid", "check the account's from", -1 },
};

static void
run_answer_case(const struct answer_case *c)
{
	struct graph_call call = { .what = c->what, .method = "POST", .url = "https://x/v1.0",
		.builds_draft = c->builds_draft, .expect = c->expect, .expect_also = -1 };
	struct http_response resp;
	struct graph_result r;
	struct tm_err err;
	char want_detail[128];
	int rc;

	memset(&resp, 0, sizeof(resp));
	memset(&r, 0, sizeof(r));
	tm_err_clear(&err);
	resp.status = c->status;
	resp.body = xstrdup(c->body ? c->body : "");
	resp.body_len = strlen(resp.body);
	resp.retry_after = c->retry_after;
	(void)str_copy(resp.request_id, sizeof(resp.request_id), c->request_id ? c->request_id : "");
	r.retry_after = 12345;
	rc = graph_answer_error(&call, &resp, &r, &err);
	tap_is_int(rc, -1, "%s: -1", c->name);
	tap_is_int(err.exit, c->exit, "%s: exit code", c->name);
	tap_is_str(err.msg, c->msg, "%s: message", c->name);
	tap_is_str(err.server, c->server, "%s: server line", c->name);
	tap_is_str(r.reply, c->server, "%s: reply for the log", c->name);
	if (c->hint[0])
		tap_ok(strstr(err.hint, c->hint) != NULL, "%s: hint has \"%s\" (%s)", c->name, c->hint,
		    err.hint);
	else
		tap_is_str(err.hint, "", "%s: no hint", c->name);
	tap_is_int(r.retry_after, c->r_retry, "%s: retry_after", c->name);
	(void)str_format(want_detail, sizeof(want_detail), "request-id %s\n", c->request_id);
	tap_is_str(err.detail, c->request_id ? want_detail : "", "%s: detail", c->name);
	free(resp.body);
}

/* A very long error.message is cut, not overflowed. */
static void
test_long_message(void)
{
	struct graph_call call = { .what = MSG, .method = "POST", .url = "https://x/v1.0",
		.expect = 202, .expect_also = -1 };
	struct http_response resp;
	struct graph_result r;
	struct tm_err err;
	struct strbuf b;
	int i;

	strbuf_init(&b, 1 << 20);
	(void)strbuf_append_str(&b, "{\"error\":{\"code\":\"ErrorInvalidUser\",\"message\":\"");
	for (i = 0; i < 400; i++)
		(void)strbuf_append_str(&b, "long words ");
	(void)strbuf_append_str(&b, "\"}}");
	memset(&resp, 0, sizeof(resp));
	memset(&r, 0, sizeof(r));
	tm_err_clear(&err);
	resp.status = 404;
	resp.body = b.data;
	resp.body_len = b.len;
	resp.retry_after = -1;
	tap_is_int(graph_answer_error(&call, &resp, &r, &err), -1, "long message: -1");
	tap_is_int((long)strlen(r.reply), (long)sizeof(r.reply) - 1, "long message: reply cut");
	tap_ok(strncmp(r.reply, "404 ErrorInvalidUser: long words long", 37) == 0,
	    "long message: reply starts right (%.40s)", r.reply);
	tap_is_str(err.server, r.reply, "long message: server line == reply");
	tap_is_int(err.exit, 69, "long message: exit code");
	strbuf_free(&b);
}

/* What log_report prints for a server line with control characters. */
static void
test_printed(void)
{
	static const char body[] =
	    ERR("ErrorAccessDenied", "line one\\nline two\\u001b[31m red\\u0007");
	struct graph_call call = { .what = MSG, .method = "POST", .url = "https://x/v1.0",
		.expect = 202, .expect_also = -1 };
	struct http_response resp;
	struct graph_result r;
	struct tm_err err;
	char path[] = "/tmp/graph_test.XXXXXX";
	char text[4096];
	int fd, saved;
	ssize_t n;

	memset(&resp, 0, sizeof(resp));
	memset(&r, 0, sizeof(r));
	tm_err_clear(&err);
	resp.status = 403;
	resp.body = xstrdup(body);
	resp.body_len = strlen(body);
	resp.retry_after = -1;
	(void)graph_answer_error(&call, &resp, &r, &err);
	free(resp.body);
	fd = mkstemp(path);
	saved = dup(2);
	if (fd < 0 || saved < 0 || dup2(fd, 2) < 0)
		exit(99);
	log_report(&err, NULL);
	dup2(saved, 2);
	close(saved);
	n = pread(fd, text, sizeof(text) - 1, 0);
	text[n < 0 ? 0 : n] = '\0';
	close(fd);
	unlink(path);
	tap_ok(strstr(text, "tokenmail: Microsoft Graph refused the message: HTTP 403 "
	    "ErrorAccessDenied\n") == text, "printed: first line");
	tap_ok(strstr(text, "  server: 403 ErrorAccessDenied: line one\\x0aline two\\x1b[31m "
	    "red\\x07\n") != NULL, "printed: server line escaped");
	tap_ok(strchr(text, '\x1b') == NULL && strchr(text, '\x07') == NULL,
	    "printed: no raw control characters");
	tap_ok(strstr(text, "  hint: the app lacks Mail.Send") != NULL, "printed: hint line");
	if (strstr(text, "\\x0aline two") == NULL)
		printf("# printed:\n%s", text);
}

int
main(void)
{
	size_t i;

	test_request_id();
	for (i = 0; i < sizeof(answer_cases) / sizeof(answer_cases[0]); i++)
		run_answer_case(&answer_cases[i]);
	test_long_message();
	test_printed();
	return tap_done();
}
