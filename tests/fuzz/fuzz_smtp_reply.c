/*
 * fuzz_smtp_reply.c: the SMTP reply parser (smtp.h: smtp_reply_line,
 * smtp_reply_add, smtp_ehlo_caps, the hints). The input is what a server
 * sends: lines ending in LF (a CR before it is dropped, as net.c's line
 * reader does), gathered into replies. Each complete reply is formatted,
 * looked up for hints, and, for 250, read as EHLO capabilities. Each line
 * is also encoded as DSN xtext.
 * Invariants: an accepted line has a code in 200-559 and no control
 * character in its text; a reply's text never outgrows SMTP_REPLY_MAX.
 */
#include <string.h>

#include "fuzz.h"
#include "smtp.h"

static void
use_reply(const struct smtp_reply *r)
{
	struct smtp_caps caps;
	char out[1024];

	fuzz_check(strlen(r->text) < sizeof(r->text), "a reply outgrew its buffer");
	fuzz_check(strlen(r->enhanced) < sizeof(r->enhanced), "an enhanced code outgrew its buffer");
	smtp_reply_format(r, out, sizeof(out));
	(void)smtp_hint(r->enhanced, r->code);
	(void)smtp_auth_hint(r, "user@example.com", out, sizeof(out));
	if (r->code == 250) {
		smtp_ehlo_caps(r->text, &caps);
		fuzz_check(strlen(caps.auth) < sizeof(caps.auth), "AUTH mechanisms outgrew caps");
		(void)smtp_caps_has_auth(&caps, "XOAUTH2");
		(void)smtp_caps_has_auth(&caps, "OAUTHBEARER");
	}
}

static void
one_line(const char *line, size_t len)
{
	const char *text;
	char xtext[SMTP_LINE_MAX * 3 + 1], *copy;
	bool last;
	int code;
	struct tm_err err;

	if (smtp_reply_line(line, len, &code, &last, &text, &err) == 0) {
		fuzz_check(code >= 200 && code <= 559, "a reply code out of range");
		fuzz_check(text >= line && text <= line + len, "reply text outside the line");
		fuzz_check(memchr(text, '\n', len - (size_t)(text - line)) == NULL &&
		    memchr(text, '\r', len - (size_t)(text - line)) == NULL,
		    "reply text holds a line end");
	}
	copy = xstrndup(line, len);
	(void)smtp_xtext(copy, xtext, sizeof(xtext));
	free(copy);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *end = p + size;
	struct smtp_reply *r = xcalloc(1, sizeof(*r));
	struct tm_err err;
	bool done;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);

		if (len > 0 && p[len - 1] == '\r')
			len--;
		one_line(p, len);
		if (smtp_reply_add(r, p, len, &done, &err) < 0 || done) {
			if (r->code != 0)
				use_reply(r);
			memset(r, 0, sizeof(*r));
		}
		p = nl != NULL ? nl + 1 : end;
	}
	free(r);
	return 0;
}
