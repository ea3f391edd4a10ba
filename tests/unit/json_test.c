/* json_test.c: Entra and Graph bodies, escapes, lookups, refusals with their messages, output. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "tap.h"
#include "tm_limits.h"
#include "util.h"

static struct json_doc *
parse_ok(const char *text, const char *what)
{
	struct json_doc *d = NULL;
	struct tm_err err;

	tm_err_clear(&err);
	if (json_parse(text, strlen(text), &d, &err) < 0) {
		tap_ok(0, "%s: parses", what);
		printf("#   error: %s\n", err.msg);
		return NULL;
	}
	tap_ok(d != NULL, "%s: parses", what);
	return d;
}

static void
test_entra_success(void)
{
	static const char body[] = "{\"token_type\":\"Bearer\",\"expires_in\":3599,"
	    "\"ext_expires_in\":3599,\"access_token\":\"eyJ0eXAiOiJKV1QiLCJub25jZSI6Ij.x_y-z\"}";
	struct json_doc *d = parse_ok(body, "entra token");
	long v = 0;

	tap_is_str(json_get(d, "token_type"), "Bearer", "entra token: token_type");
	tap_is_str(json_get(d, "access_token"), "eyJ0eXAiOiJKV1QiLCJub25jZSI6Ij.x_y-z",
	    "entra token: access_token");
	tap_is_int(json_get_long(d, "expires_in", 0, LONG_MAX, &v), 0, "entra token: expires_in read");
	tap_is_int(v, 3599, "entra token: expires_in value");
	tap_is_str(json_get(d, "expires_in"), "3599", "entra token: number as written");
	tap_is_int(json_get_long(d, "expires_in", 0, 3000, &v), -1, "entra token: range checked");
	tap_is_int(json_get_long(d, "refresh_token", 0, LONG_MAX, &v), -1, "entra token: absent");
	tap_is_int(json_get_long(d, "token_type", 0, LONG_MAX, &v), -1, "entra token: not a number");
	tap_ok(json_get(d, "refresh_token") == NULL, "entra token: no refresh_token");
	json_free(d);
}

static void
test_numbers_as_strings(void)
{
	static const struct {
		const char *body;
		int rc;
		long want;
	} cases[] = {
		{ "{\"expires_in\":\"3599\"}", 0, 3599 },
		{ "{\"expires_in\":\" 3599\"}", -1, 0 },
		{ "{\"expires_in\":\"3599s\"}", -1, 0 },
		{ "{\"expires_in\":3599.5}", -1, 0 },
		{ "{\"expires_in\":-5}", -1, 0 },
		{ "{\"expires_in\":null}", -1, 0 },
		{ "{\"expires_in\":[3599]}", -1, 0 },
		{ "{\"expires_in\":{\"v\":3599}}", -1, 0 },
		{ "{\"expires_in\":99999999999999999999999}", -1, 0 },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct json_doc *d = parse_ok(cases[i].body, cases[i].body);
		long v = 0;
		int rc = json_get_long(d, "expires_in", 0, LONG_MAX, &v);

		tap_ok(rc == cases[i].rc && (rc < 0 || v == cases[i].want), "json_get_long %s",
		    cases[i].body);
		json_free(d);
	}
}

static void
test_entra_error(void)
{
	static const char body[] = "{\"error\":\"invalid_client\",\"error_description\":"
	    "\"AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in "
	    "the request is the client secret value, not the client secret ID.\\r\\n"
	    "Trace ID: 0a1b\\r\\nCorrelation ID: 2c3d\\r\\nTimestamp: 2024-05-01 10:00:00Z\","
	    "\"error_codes\":[7000215,50012],\"timestamp\":\"2024-05-01 10:00:00Z\","
	    "\"trace_id\":\"0a1b\",\"correlation_id\":\"2c3d\","
	    "\"error_uri\":\"https:\\/\\/login.microsoftonline.com\\/error?code=7000215\"}";
	struct json_doc *d = parse_ok(body, "entra error");
	long codes[4] = { 0 }, one[1] = { 0 };

	tap_is_str(json_get(d, "error"), "invalid_client", "entra error: error");
	tap_is_str(json_get(d, "error_description"), "AADSTS7000215: Invalid client secret "
	    "provided. Ensure the secret being sent in the request is the client secret value, "
	    "not the client secret ID.\r\nTrace ID: 0a1b\r\nCorrelation ID: 2c3d\r\n"
	    "Timestamp: 2024-05-01 10:00:00Z", "entra error: description with CR LF");
	tap_is_str(json_get(d, "error_uri"), "https://login.microsoftonline.com/error?code=7000215",
	    "entra error: \\/ unescaped");
	tap_is_int(json_get_long_array(d, "error_codes", codes, 4), 2, "entra error: two codes");
	tap_ok(codes[0] == 7000215 && codes[1] == 50012, "entra error: code values");
	tap_is_int(json_get_long_array(d, "error_codes", one, 1), 1, "entra error: capped at n");
	tap_is_int(one[0], 7000215, "entra error: first code kept");
	tap_is_int(json_get_long_array(d, "codes", codes, 4), -1, "entra error: absent array");
	tap_is_int(json_get_long_array(d, "error", codes, 4), -1, "entra error: not an array");
	json_free(d);
	d = parse_ok("{\"error_codes\":[1,\"x\"],\"e\":[]}", "bad codes");
	tap_is_int(json_get_long_array(d, "error_codes", codes, 4), -1, "array with a word: -1");
	tap_is_int(json_get_long_array(d, "e", codes, 4), 0, "empty array: 0");
	json_free(d);
}

static void
test_graph_error(void)
{
	static const char body[] = "{\"error\":{\"code\":\"ErrorAccessDenied\",\"message\":"
	    "\"Access is denied. Check credentials and try again.\",\"innerError\":{"
	    "\"date\":\"2024-05-01T10:00:00\",\"request-id\":\"5e1c0f6d-aaaa-bbbb-cccc-0123456789ab\","
	    "\"client-request-id\":\"5e1c0f6d-aaaa-bbbb-cccc-0123456789ab\"}}}";
	struct json_doc *d = parse_ok(body, "graph error");

	tap_is_str(json_get(d, "error.code"), "ErrorAccessDenied", "graph error: error.code");
	tap_is_str(json_get(d, "error.message"), "Access is denied. Check credentials and try again.",
	    "graph error: error.message");
	tap_is_str(json_get(d, "error.innerError.request-id"), "5e1c0f6d-aaaa-bbbb-cccc-0123456789ab",
	    "graph error: nested request-id");
	tap_ok(json_get(d, "error") == NULL, "graph error: an object is not a scalar");
	tap_ok(json_get(d, "error.innerError") == NULL, "graph error: nested object is not a scalar");
	json_free(d);
}

static void
test_lookups(void)
{
	static const struct {
		const char *path;
		const char *want;
	} cases[] = {
		{ "a.b.c", "deep" }, { "a.b", NULL }, { "a.x", NULL }, { "a.b.c.d", NULL },
		{ "a.list", NULL }, { "a.list.0", NULL }, { "", NULL }, { "a.", NULL },
		{ ".a", NULL }, { "a..b", NULL }, { "t", "true" }, { "f", "false" }, { "n", "null" },
		{ "num", "-1.5e3" }, { "empty", "" }, { "A", NULL }, { "dotted.key", NULL },
		{ "sp ace", "yes" },
	};
	struct json_doc *d = parse_ok("{\"a\":{\"b\":{\"c\":\"deep\"},\"list\":[1,2]},\"t\":true,"
	    "\"f\":false,\"n\":null,\"num\":-1.5e3,\"empty\":\"\",\"dotted.key\":\"x\","
	    "\"sp ace\":\"yes\"}", "nested");
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		tap_is_str(json_get(d, cases[i].path), cases[i].want, "lookup \"%s\"", cases[i].path);
	json_free(d);
	tap_ok(json_get(NULL, "a") == NULL, "lookup in NULL document");
	json_free(NULL);
}

static void
test_escapes(void)
{
	static const struct {
		const char *body;
		const char *want;
	} cases[] = {
		{ "{\"v\":\"caf\\u00e9\"}", "caf\xc3\xa9" },
		{ "{\"v\":\"\\u20AC\"}", "\xe2\x82\xac" },
		{ "{\"v\":\"\\uD83D\\uDE00\"}", "\xf0\x9f\x98\x80" },
		{ "{\"v\":\"\\ud83d\\ude00!\\uD834\\uDD1E\"}", "\xf0\x9f\x98\x80!\xf0\x9d\x84\x9e" },
		{ "{\"v\":\"\\uDBFF\\uDFFF\"}", "\xf4\x8f\xbf\xbf" },
		{ "{\"v\":\"a\\/b\"}", "a/b" },
		{ "{\"v\":\"\\\"\\\\\"}", "\"\\" },
		{ "{\"v\":\"\\n\\t\\r\\b\\f\"}", "\n\t\r\b\f" },
		{ "{\"v\":\"\\u0041\\u007f\\u0001\"}", "A\x7f\x01" },
		{ "{\"v\":\"\\\\uD83D\"}", "\\uD83D" },
		{ "{\"v\":\"\\\\\\uD83D\\uDE00\"}", "\\\xf0\x9f\x98\x80" },
		{ "{\"v\":\"raw \xc3\xa9 \xf0\x9f\x98\x80\"}", "raw \xc3\xa9 \xf0\x9f\x98\x80" },
		{ "{\"\\u006b\":\"v\",\"v\":\"key escaped\"}", "key escaped" },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct json_doc *d = parse_ok(cases[i].body, cases[i].body);

		tap_is_str(json_get(d, "v"), cases[i].want, "escape %s", cases[i].body);
		json_free(d);
	}
}

static void
test_whitespace_and_yaml(void)
{
	static const char *const ok[] = {
		"\t{\"v\":\"x\"}",
		"{\n\t\"v\":\t\"x\"\n}\n",
		"{\r\n  \"v\" : \"x\" ,\r\n  \"w\" : [ 1 , 2 ]\r\n}\r\n",
		"\xef\xbb\xbf{\"v\":\"x\"}",
		" \n {\"v\":\"x\"} \n\t",
		"{v: x, w: [1, 2,],}",
		"{\"v\":\"x\"} # a comment",
		"--- {\"v\":\"x\"}\n...\n",
	};
	size_t i;

	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		struct json_doc *d = parse_ok(ok[i], "accepted form");

		tap_is_str(json_get(d, "v"), "x", "accepted form %zu: value", i);
		json_free(d);
	}
}

static void
test_malformed(void)
{
	static const struct {
		const char *text;
		size_t len;	/* 0: strlen */
		const char *msg;
	} cases[] = {
		{ "", 0, "invalid JSON: empty document at 1:1" },
		{ "  \n ", 0, "invalid JSON: empty document at 3:1" },
		{ "[1,2]", 0, "invalid JSON: top level is an array, not an object at 1:1" },
		{ "\"str\"", 0, "invalid JSON: top level is a string, not an object at 1:1" },
		{ "42", 0, "invalid JSON: top level is a bare value, not an object at 1:1" },
		{ "<html><body>502 Bad Gateway</body></html>", 0,
		    "invalid JSON: top level is a bare value, not an object at 1:1" },
		{ "error: bad gateway\n", 0,
		    "invalid JSON: top level is a YAML block mapping, not an object at 1:1" },
		{ "{\"a\":1", 0, "invalid JSON: did not find expected ',' or '}' at 2:1" },
		{ "{\"a\":\"x", 0, "invalid JSON: found unexpected end of stream at 1:8" },
		{ "{\"a\":\"\\q\"}", 0, "invalid JSON: found unknown escape character at 1:7" },
		{ "{\"a\":1,\n \"a\":2}", 0, "invalid JSON: duplicate key at 2:2" },
		{ "{\"a\":&x 1}", 0, "invalid JSON: YAML anchor (&name) refused at 1:6" },
		{ "{\"a\":&x 1,\"b\":*x}", 0, "invalid JSON: YAML anchor (&name) refused at 1:6" },
		{ "{\"b\":*x}", 0, "invalid JSON: YAML alias (*name) refused at 1:6" },
		{ "{\"a\":!!str 1}", 0, "invalid JSON: YAML tag (!name) refused at 1:6" },
		{ "!!map {\"a\":1}", 0, "invalid JSON: YAML tag (!name) refused at 1:1" },
		{ "&top {\"a\":1}", 0, "invalid JSON: YAML anchor (&name) refused at 1:1" },
		{ "{\"a\":\"x\\u0000y\"}", 0,
		    "invalid JSON: string holds a NUL character (\\u0000) at 1:6" },
		{ "{\"a\\u0000\":1}", 0, "invalid JSON: string holds a NUL character (\\u0000) at 1:2" },
		{ "{\"a\":\"\\uD83D\"}", 0, "invalid JSON: unpaired UTF-16 surrogate \\uD83D at 1:7" },
		{ "{\"a\":\n\"\\uDE00\\uD83D\"}", 0,
		    "invalid JSON: unpaired UTF-16 surrogate \\uDE00 at 2:2" },
		{ "{\"a\":\"\\uD83D\\u0041\"}", 0,
		    "invalid JSON: unpaired UTF-16 surrogate \\uD83D at 1:7" },
		{ "{\"a\":1}\n---\n{\"b\":2}", 0, "invalid JSON: more than one document at 2:1" },
		{ "{\"a\":1} {\"b\":2}", 0,
		    "invalid JSON: did not find expected <document start> at 1:9" },
		{ "{\"a\":\"\x7f\"}", 0, "invalid JSON: control characters are not allowed at 1:7" },
		{ "{\"a\":\n\"\xff\"}", 0, "invalid JSON: invalid leading UTF-8 octet at 2:2" },
		{ "{\"a\":\"x\0\"}", 10, "invalid JSON: control characters are not allowed at 1:8" },
		{ "{[1]:2}", 0, "invalid JSON: object key is not a string at 1:2" },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct json_doc *d = (struct json_doc *)&d;
		size_t len = cases[i].len ? cases[i].len : strlen(cases[i].text);
		struct tm_err err;
		int rc;

		tm_err_clear(&err);
		rc = json_parse(cases[i].text, len, &d, &err);
		tap_ok(rc == -1 && d == NULL && err.cls == TM_ERR_PROTO && err.exit == EX_PROTOCOL,
		    "malformed %zu: refused as EX_PROTOCOL", i);
		tap_is_str(err.msg, cases[i].msg, "malformed %zu: message", i);
	}
}

static void
test_source_named(void)
{
	struct json_doc *d = NULL;
	struct tm_err err;

	tm_err_clear(&err);
	tap_is_int(json_parse_from("login.microsoftonline.com", "{\"a\":", 5, &d, &err), -1,
	    "json_parse_from: refused");
	tap_is_str(err.msg, "invalid JSON from login.microsoftonline.com: "
	    "did not find expected node content at 2:1", "json_parse_from: names the source");
}

/* A string of n octets: '{"a":"xxx...x"}' padded to exactly n. */
static char *
padded_doc(size_t n)
{
	char *s = xmalloc(n + 1);

	memset(s, 'x', n);
	memcpy(s, "{\"a\":\"", 6);
	memcpy(s + n - 2, "\"}", 2);
	s[n] = '\0';
	return s;
}

static void
test_limits(void)
{
	char *big = padded_doc(TM_JSON_MAX);
	struct json_doc *d = NULL;
	struct strbuf b;
	struct tm_err err;
	size_t i;

	tap_is_int(json_parse(big, TM_JSON_MAX, &d, &err), 0, "limit: TM_JSON_MAX octets parse");
	tap_is_int(json_get(d, "a") ? (long)strlen(json_get(d, "a")) : -1, TM_JSON_MAX - 8,
	    "limit: whole value kept");
	json_free(d);
	free(big);
	big = padded_doc(TM_JSON_MAX + 1);
	tap_is_int(json_parse(big, TM_JSON_MAX + 1, &d, &err), -1, "limit: one more is refused");
	tap_is_str(err.msg, "invalid JSON: over 1048576 octets", "limit: message");
	free(big);

	strbuf_init(&b, 1024);
	for (i = 0; i < 40; i++)
		(void)strbuf_append_str(&b, "{\"a\":");
	(void)strbuf_append_str(&b, "1");
	for (i = 0; i < 40; i++)
		(void)strbuf_append_str(&b, "}");
	tap_is_int(json_parse(b.data, b.len, &d, &err), -1, "limit: 40 levels refused");
	tap_is_str(err.msg, "invalid JSON: nested too deeply at 1:166", "limit: depth message");
	strbuf_free(&b);

	strbuf_init(&b, TM_JSON_MAX);
	(void)strbuf_append_str(&b, "{\"a\":[");
	for (i = 0; i < 100001; i++)
		(void)strbuf_append_str(&b, "0,");
	(void)strbuf_append_str(&b, "0]}");
	tap_is_int(json_parse(b.data, b.len, &d, &err), -1, "limit: 100002 values refused");
	tap_is_str(err.msg, "invalid JSON: too many values at 1:200003", "limit: values message");
	strbuf_free(&b);
}

static void
test_append_exact(void)
{
	static const struct {
		const char *in;
		const char *out;
	} cases[] = {
		{ "", "\"\"" },
		{ "plain", "\"plain\"" },
		{ "a\"b\\c/d", "\"a\\\"b\\\\c/d\"" },
		{ "\n\r\t\x01\x1f\x7f", "\"\\u000a\\u000d\\u0009\\u0001\\u001f\\u007f\"" },
		{ "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
		    "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"" },
		{ "\xc2\x85\xe2\x80\xa8\xef\xbb\xbf", "\"\\u0085\\u2028\\ufeff\"" },
		/* stray, truncated, surrogate and overlong sequences: one U+FFFD per octet */
		{ "bad \xff \xc3 \xed\xa0\x80 \xc0\xaf",
		    "\"bad \\ufffd \\ufffd \\ufffd\\ufffd\\ufffd \\ufffd\\ufffd\"" },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct strbuf b;

		strbuf_init(&b, 1024);
		tap_is_int(json_append_string(&b, cases[i].in), 0, "append %zu: ok", i);
		tap_is_str(b.data, cases[i].out, "append %zu: text", i);
		strbuf_free(&b);
	}
}

static void
test_append_round_trip(void)
{
	char all[160];
	const char *const cases[] = {
		"Subject: \"quoted\" \\ back/slash", "tab\there\r\nnext line",
		"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf", "\xc2\x80\xc2\x9f\xc2\xa0",
		"\xef\xbf\xbe\xef\xbf\xbf\xef\xbb\xbf\xe2\x80\xa9", all,
	};
	size_t i;

	for (i = 1; i < 128; i++)
		all[i - 1] = (char)i;
	all[127] = '\0';
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct json_doc *d = NULL;
		struct strbuf b;
		struct tm_err err;

		strbuf_init(&b, 4096);
		(void)strbuf_append_str(&b, "{\"k\":");
		(void)json_append_string(&b, cases[i]);
		(void)strbuf_append_str(&b, "}");
		tap_is_int(json_parse(b.data, b.len, &d, &err), 0, "round trip %zu: parses", i);
		tap_is_str(json_get(d, "k"), cases[i], "round trip %zu: same text", i);
		json_free(d);
		strbuf_free(&b);
	}
}

static void
test_append_limit(void)
{
	struct strbuf b;

	strbuf_init(&b, 10);
	(void)strbuf_append_str(&b, "{\"k\":");
	tap_is_int(json_append_string(&b, "abc"), 0, "append limit: 5 octets fit");
	tap_is_int(json_append_string(&b, "\n"), -1, "append limit: an escape does not");
	tap_is_str(b.data, "{\"k\":\"abc\"", "append limit: buffer unchanged");
	strbuf_free(&b);
}

int
main(void)
{
	test_entra_success();
	test_numbers_as_strings();
	test_entra_error();
	test_graph_error();
	test_lookups();
	test_escapes();
	test_whitespace_and_yaml();
	test_malformed();
	test_source_named();
	test_limits();
	test_append_exact();
	test_append_round_trip();
	test_append_limit();
	return tap_done();
}
