/*
 * fuzz_token_error.c: the token endpoint error decoder (token.h:
 * token_endpoint_error), which turns an OAuth error body (Entra's
 * "error", "error_description" with AADSTS codes, "error_codes", trace and
 * correlation ids) into the report. The input is the body; it is decoded
 * as the answer to a 400, a 401 and a 503.
 * Invariants: it always returns -1 with a message and an exit code, and
 * the server line is one line (the description's first).
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "token.h"

/* The body is exactly size octets with no terminator after it, so that
   ASan catches a read past the end (regressions/token_error). */
static void
decode(long status, const char *body, size_t size)
{
	struct tm_err err;

	fuzz_check(token_endpoint_error(status, body, size, &err) == -1,
	    "token_endpoint_error did not return -1");
	fuzz_check(err.msg[0] != '\0' && err.exit != 0, "a token error without message or exit");
	/* Control bytes from the body may stay: log.c and smtpd.c escape them
	   where they are printed. The server line stops at the first one. */
	fuzz_check(strchr(err.server, '\n') == NULL && strchr(err.server, '\r') == NULL,
	    "server holds a line end");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *body = malloc(size > 0 ? size : 1);

	if (body == NULL)
		return 0;
	if (size > 0)
		memcpy(body, data, size);

	decode(400, body, size);
	decode(401, body, size);
	decode(503, body, size);
	free(body);
	return 0;
}
