/*
 * fuzz_json.c: the JSON reader (json.h) that reads token endpoint and
 * Graph answers. The input is such a body: parsed, then looked up by the
 * paths tokenmail uses. Its text (up to the first NUL) is also written as
 * a JSON string with json_append_string() and read back.
 * Invariants: a refusal says why and gives no document; a string written
 * as JSON always parses, and valid UTF-8 comes back unchanged.
 */
#include <string.h>

#include "fuzz.h"
#include "json.h"
#include "tm_limits.h"

/* The paths token.c, token_error.c and graph*.c look up. */
static const char *const paths[] = {
	"access_token", "expires_in", "refresh_token", "token_type", "error",
	"error_description", "error_codes", "error.code", "error.message",
	"error.innerError.code", "uploadUrl", "nextExpectedRanges", "id", "interval",
};

static void
lookups(const struct json_doc *d)
{
	long v[8];
	size_t i;

	for (i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		const char *s = json_get(d, paths[i]);

		if (s != NULL)
			(void)strlen(s);
		(void)json_get_long(d, paths[i], 0, 86400, v);
		(void)json_get_long_array(d, paths[i], v, sizeof(v) / sizeof(v[0]));
		(void)json_get_array_string(d, paths[i], 0);
		(void)json_get_array_string(d, paths[i], 1);
	}
}

static bool
valid_utf8(const char *s)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t left = strlen(s), n;

	for (; left > 0; u += n, left -= n)
		if ((n = utf8_len(u, left)) == 0)
			return false;
	return true;
}

/* {"k": <text as a JSON string>} parses, and gives text back. */
static void
round_trip(const char *text)
{
	struct strbuf b;
	struct json_doc *d = NULL;
	struct tm_err err;

	strbuf_init(&b, TM_JSON_MAX);
	if (strbuf_append_str(&b, "{\"k\": ") < 0 || json_append_string(&b, text) < 0 ||
	    strbuf_append_str(&b, "}") < 0)
		goto out;
	fuzz_check(json_parse(b.data, b.len, &d, &err) == 0,
	    "a string written by json_append_string does not parse");
	fuzz_check(json_get(d, "k") != NULL, "a string written as JSON is lost");
	if (valid_utf8(text))
		fuzz_check(strcmp(json_get(d, "k"), text) == 0,
		    "a string written as JSON reads back otherwise");
out:
	json_free(d);
	strbuf_free(&b);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct json_doc *d = NULL;
	struct tm_err err;
	char *text;

	if (json_parse_from("fuzz", (const char *)data, size, &d, &err) == 0) {
		fuzz_check(d != NULL, "a parse without a document");
		lookups(d);
	} else {
		fuzz_check(d == NULL && err.msg[0] != '\0', "a refusal without a message");
	}
	json_free(d);
	text = fuzz_cstr(data, size);
	round_trip(text);
	free(text);
	return 0;
}
