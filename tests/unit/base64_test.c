/* base64_test.c: RFC 4648 vectors, base64url, padding rules, bad input, limits. */
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "tap.h"
#include "util.h"

/* RFC 4648 section 10, plus octets that differ between the two alphabets. */
static const struct {
	const char *raw;
	size_t len;
	const char *std;	/* base64, padded */
	const char *url;	/* base64url, unpadded */
} vectors[] = {
	{ "", 0, "", "" },
	{ "f", 1, "Zg==", "Zg" },
	{ "fo", 2, "Zm8=", "Zm8" },
	{ "foo", 3, "Zm9v", "Zm9v" },
	{ "foob", 4, "Zm9vYg==", "Zm9vYg" },
	{ "fooba", 5, "Zm9vYmE=", "Zm9vYmE" },
	{ "foobar", 6, "Zm9vYmFy", "Zm9vYmFy" },
	{ "\xfb\xff", 2, "+/8=", "-_8" },
	{ "\xff\xff\xff", 3, "////", "____" },
	{ "\0\0\0\0", 4, "AAAAAA==", "AAAAAA" },
	{ "user=a@b\1auth=Bearer t\1\1", 24, "dXNlcj1hQGIBYXV0aD1CZWFyZXIgdAEB",
	    "dXNlcj1hQGIBYXV0aD1CZWFyZXIgdAEB" },
};

static void
test_encode(void)
{
	size_t i;

	for (i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
		struct strbuf b;

		strbuf_init(&b, 1024);
		tap_ok(base64_encode(&b, vectors[i].raw, vectors[i].len) == 0, "encode %zu: ok", i);
		tap_is_str(b.data, vectors[i].std, "encode %zu: base64", i);
		strbuf_reset(&b);
		tap_ok(base64url_encode(&b, vectors[i].raw, vectors[i].len) == 0, "encode %zu: url ok", i);
		tap_is_str(b.data, vectors[i].url, "encode %zu: base64url", i);
		strbuf_free(&b);
	}
}

static int
decodes_to(int (*fn)(struct strbuf *, const char *, size_t), const char *text,
    const char *raw, size_t len)
{
	struct strbuf b;
	int ok;

	strbuf_init(&b, 1024);
	ok = fn(&b, text, strlen(text)) == 0 && b.len == len && memcmp(b.data, raw, len) == 0 &&
	    b.data[len] == '\0';
	strbuf_free(&b);
	return ok;
}

static void
test_decode(void)
{
	size_t i;

	for (i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
		char unpadded[64];
		const char *eq;

		tap_ok(decodes_to(base64_decode, vectors[i].std, vectors[i].raw, vectors[i].len),
		    "decode %zu: base64 \"%s\"", i, vectors[i].std);
		tap_ok(decodes_to(base64url_decode, vectors[i].url, vectors[i].raw, vectors[i].len),
		    "decode %zu: base64url \"%s\"", i, vectors[i].url);
		(void)str_copy(unpadded, sizeof(unpadded), vectors[i].std);
		if ((eq = strchr(unpadded, '=')) != NULL)
			unpadded[eq - unpadded] = '\0';
		tap_ok(decodes_to(base64_decode, unpadded, vectors[i].raw, vectors[i].len),
		    "decode %zu: base64 without padding \"%s\"", i, unpadded);
	}
	tap_ok(decodes_to(base64url_decode, "Zm9vYg==", "foob", 4), "base64url: padding accepted");
	tap_ok(decodes_to(base64url_decode, "-_8=", "\xfb\xff", 2), "base64url: padded url alphabet");
}

static void
test_bad_input(void)
{
	static const struct {
		const char *text;
		int url;
		const char *why;
	} bad[] = {
		{ "Zm9v YmFy", 0, "space" }, { "Zm9v\nYmFy", 0, "newline" },
		{ "Zm9v*mFy", 0, "star" }, { "-_8=", 0, "url alphabet in base64" },
		{ "+/8", 1, "base64 alphabet in base64url" }, { "Zm9v.mFy", 1, "dot" },
		{ "Z", 0, "one character" }, { "Zm9vY", 0, "5 characters" },
		{ "Zg=", 0, "short padding" }, { "Zg===", 0, "three pad characters" },
		{ "Zm9v=", 0, "padding after a full group" }, { "=", 0, "padding only" },
		{ "====", 0, "four pad characters" }, { "Zg==Zg==", 0, "padding in the middle" },
		{ "Zh==", 0, "non-zero leftover bits (1 octet)" },
		{ "Zm9=", 0, "non-zero leftover bits (2 octets)" },
		{ "Zm8\xc3\xa9", 0, "non-ASCII" },
	};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct strbuf b;
		int rc;

		strbuf_init(&b, 1024);
		(void)strbuf_append_str(&b, "keep");
		rc = (bad[i].url ? base64url_decode : base64_decode)(&b, bad[i].text,
		    strlen(bad[i].text));
		tap_ok(rc == -1 && b.len == 4 && strcmp(b.data, "keep") == 0,
		    "refused, buffer unchanged: %s", bad[i].why);
		strbuf_free(&b);
	}
}

static void
test_embedded_nul(void)
{
	struct strbuf b;

	strbuf_init(&b, 1024);
	tap_is_int(base64_decode(&b, "Zm9v\0YmFy", 9), -1, "embedded NUL refused");
	strbuf_free(&b);
}

static void
test_limits(void)
{
	struct strbuf b;

	strbuf_init(&b, 8);
	tap_is_int(base64_encode(&b, "foobar", 6), 0, "limit: 8 characters fit in 8");
	strbuf_reset(&b);
	tap_is_int(base64_encode(&b, "foobar1", 7), -1, "limit: 12 characters do not");
	tap_is_int((long)b.len, 0, "limit: nothing appended");
	tap_is_int(base64url_encode(&b, "foobar1", 7), -1, "limit: url 10 characters do not");
	strbuf_free(&b);
	strbuf_init(&b, 6);
	(void)strbuf_append_str(&b, "ab");
	tap_is_int(base64_decode(&b, "Zm9vYg==", 8), 0, "limit: 2 + 4 decoded octets fit in 6");
	tap_is_int(base64_decode(&b, "Zg==", 4), -1, "limit: a seventh does not");
	tap_is_str(b.data, "abfoob", "limit: buffer unchanged after refusal");
	strbuf_free(&b);
}

static void
test_round_trip(void)
{
	unsigned char raw[256];
	struct strbuf enc, dec;
	size_t n, i;
	int ok = 1;

	for (i = 0; i < sizeof(raw); i++)
		raw[i] = (unsigned char)(255 - i);
	for (n = 0; n <= sizeof(raw); n += 37) {
		strbuf_init(&enc, 1024);
		strbuf_init(&dec, 1024);
		ok &= base64url_encode(&enc, raw, n) == 0 &&
		    base64url_decode(&dec, enc.data, enc.len) == 0 && dec.len == n &&
		    memcmp(dec.data, raw, n) == 0;
		strbuf_reset(&enc);
		strbuf_reset(&dec);
		ok &= base64_encode(&enc, raw, n) == 0 && base64_decode(&dec, enc.data, enc.len) == 0 &&
		    dec.len == n && memcmp(dec.data, raw, n) == 0;
		strbuf_free(&enc);
		strbuf_free(&dec);
	}
	tap_ok(ok, "round trip of every octet value, both alphabets");
}

static void
test_values(void)
{
	static const char abc[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	int c, ok = 1;

	for (c = 0; c < 256; c++) {
		const char *p = c != 0 ? strchr(abc, c) : NULL;

		ok &= base64_values[c] == (p != NULL ? p - abc : -1);
	}
	tap_ok(ok, "base64_values: the standard alphabet, -1 elsewhere");
}

int
main(void)
{
	test_encode();
	test_decode();
	test_bad_input();
	test_embedded_nul();
	test_limits();
	test_round_trip();
	test_values();
	return tap_done();
}
