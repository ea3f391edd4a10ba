/*
 * fuzz_sasl_error.c: the XOAUTH2/OAUTHBEARER error challenge decoder
 * (smtp.h: smtp_sasl_error_decode). The input is the text of the 334 reply
 * a server sends after a refused token (base64 of a JSON status). When it
 * decodes to JSON, that is read as smtp_auth.c's report would show it.
 * Invariants: the result fits its buffer, whatever the size of the
 * buffer, and holds no control character (it goes to stderr and syslog).
 */
#include <string.h>

#include "fuzz.h"
#include "json.h"
#include "smtp.h"

static void
decode(const char *text, size_t size)
{
	char *out = xmalloc(size);
	size_t i, n;

	memset(out, 'x', size);
	smtp_sasl_error_decode(text, out, size);
	n = strnlen(out, size);
	fuzz_check(n < size, "the decoded challenge is not terminated in its buffer");
	for (i = 0; i < n; i++)
		fuzz_check((unsigned char)out[i] >= 0x20 && out[i] != 0x7f,
		    "the decoded challenge holds a control character");
	free(out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = fuzz_cstr(data, size);
	char out[SMTP_CHALLENGE_MAX];
	struct json_doc *d = NULL;
	struct tm_err err;

	smtp_sasl_error_decode(text, out, sizeof(out));
	if (json_parse(out, strlen(out), &d, &err) == 0) {
		(void)json_get(d, "status");
		(void)json_get(d, "scope");
		(void)json_get(d, "schemes");
	}
	json_free(d);
	decode(text, 1);
	decode(text, 4);
	decode(text, 5 + size % 64);
	free(text);
	return 0;
}
