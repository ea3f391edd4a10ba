/* util_test.c: bounded strings, strbuf limits, number parsing, hex and UTF-8,
   errors, sanitizing. */
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "log.h"
#include "tap.h"
#include "util.h"

static void
test_str_copy(void)
{
	char buf[8];

	tap_is_int(str_copy(buf, sizeof(buf), "1234567"), 0, "str_copy: 7 chars fit in 8");
	tap_is_str(buf, "1234567", "str_copy: copied");
	tap_is_int(str_copy(buf, sizeof(buf), "12345678"), -1, "str_copy: 8 chars do not fit");
	tap_is_str(buf, "1234567", "str_copy: truncated and terminated");
	tap_is_int(str_copy_n(buf, sizeof(buf), "abcdef", 3), 0, "str_copy_n: prefix");
	tap_is_str(buf, "abc", "str_copy_n: copied");
	tap_is_int(str_append(buf, sizeof(buf), "defg"), 0, "str_append: fits");
	tap_is_str(buf, "abcdefg", "str_append: appended");
	tap_is_int(str_append(buf, sizeof(buf), "h"), -1, "str_append: full");
	tap_is_int(str_format(buf, sizeof(buf), "%d", 1234567), 0, "str_format: fits");
	tap_is_int(str_format(buf, sizeof(buf), "%d", 12345678), -1, "str_format: truncation reported");
}

static void
test_strbuf(void)
{
	struct strbuf b;
	char *s;

	strbuf_init(&b, 10);
	tap_is_int(strbuf_append_str(&b, "hello"), 0, "strbuf: append within limit");
	tap_is_int(strbuf_appendf(&b, "%s", "world"), 0, "strbuf: reaches the limit exactly");
	tap_is_int(strbuf_append_str(&b, "!"), -1, "strbuf: refuses past the limit");
	tap_is_str(b.data, "helloworld", "strbuf: unchanged after refusal");
	strbuf_reset(&b);
	tap_is_int((long)b.len, 0, "strbuf: reset");
	tap_is_int(strbuf_append(&b, "a\0b", 3), 0, "strbuf: binary append");
	tap_is_int((long)b.len, 3, "strbuf: binary length");
	s = strbuf_take(&b);
	tap_ok(memcmp(s, "a\0b", 4) == 0, "strbuf: take keeps bytes and terminator");
	free(s);
	tap_ok(b.data == NULL && b.len == 0, "strbuf: empty after take");
	strbuf_free(&b);

	strbuf_init(&b, 100);
	tap_is_int(strbuf_append_str(&b, "secret"), 0, "strbuf: append before reserve");
	tap_is_int(strbuf_reserve_wiped(&b, 90), 0, "strbuf_reserve_wiped: within the limit");
	tap_ok(b.cap >= 97 && strcmp(b.data, "secret") == 0, "strbuf_reserve_wiped: contents kept");
	tap_is_int(strbuf_reserve_wiped(&b, 95), -1, "strbuf_reserve_wiped: past the limit");
	strbuf_free(&b);
}

static void
test_parse_long(void)
{
	static const struct { const char *in; long min, max; int rc; long out; } cases[] = {
		{ "587", 1, 65535, 0, 587 }, { "0", 1, 65535, -1, 0 }, { "65536", 1, 65535, -1, 0 },
		{ "", 0, 10, -1, 0 }, { " 5", 0, 10, -1, 0 }, { "5 ", 0, 10, -1, 0 },
		{ "5x", 0, 10, -1, 0 }, { "-3", -5, 5, 0, -3 }, { "99999999999999999999", 0, 10, -1, 0 },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		long v = 0;
		int rc = parse_long(cases[i].in, cases[i].min, cases[i].max, &v);

		tap_ok(rc == cases[i].rc && (rc < 0 || v == cases[i].out),
		    "parse_long(\"%s\", %ld, %ld)", cases[i].in, cases[i].min, cases[i].max);
	}
}

static void
test_random_hex(void)
{
	char a[33], b[33];
	size_t i;
	int hex = 1;

	random_hex(a, sizeof(a), 16);
	random_hex(b, sizeof(b), 16);
	for (i = 0; i < 32; i++)
		hex &= (a[i] >= '0' && a[i] <= '9') || (a[i] >= 'a' && a[i] <= 'f');
	tap_ok(strlen(a) == 32 && hex, "random_hex: 32 hex digits");
	tap_ok(strcmp(a, b) != 0, "random_hex: two draws differ");
	random_hex(a, 5, 16);
	tap_is_int((long)strlen(a), 4, "random_hex: bounded by the buffer");
}

static void
test_sanitize(void)
{
	char out[32];

	log_sanitize(out, sizeof(out), "a\r\nb\\c\x7f", 7);
	tap_is_str(out, "a\\x0d\\x0ab\\\\c\\x7f", "log_sanitize: control bytes escaped");
	log_sanitize(out, 12, "0123456789abcdef", 16);
	tap_is_str(out, "01234567...", "log_sanitize: truncated with an ellipsis");
	log_sanitize(out, sizeof(out), "caf\xc3\xa9", 5);
	tap_is_str(out, "caf\xc3\xa9", "log_sanitize: UTF-8 kept");
}

static void
test_hex_utf8(void)
{
	tap_is_int(hex_value('0'), 0, "hex_value: 0");
	tap_is_int(hex_value('f'), 15, "hex_value: f");
	tap_is_int(hex_value('A'), 10, "hex_value: A");
	tap_is_int(hex_value('g'), -1, "hex_value: g is not a digit");
	tap_is_int(hex_value('\0'), -1, "hex_value: NUL is not a digit");
	tap_is_int((long)utf8_len((const unsigned char *)"\x01", 1), 1, "utf8_len: a control is 1");
	tap_is_int((long)utf8_len((const unsigned char *)"\xc3\xa9", 2), 2, "utf8_len: 2 octets");
	tap_is_int((long)utf8_len((const unsigned char *)"\xf0\x9f\x98\x80", 4), 4, "utf8_len: 4 octets");
	tap_is_int((long)utf8_len((const unsigned char *)"\xc3\xa9", 1), 0, "utf8_len: cut short");
	tap_is_int((long)utf8_len((const unsigned char *)"\xc0\xaf", 2), 0, "utf8_len: overlong");
	tap_is_int((long)utf8_len((const unsigned char *)"\xed\xa0\x80", 3), 0, "utf8_len: surrogate");
	tap_is_int((long)utf8_len((const unsigned char *)"\xf4\x90\x80\x80", 4), 0,
	    "utf8_len: past U+10FFFF");
}

static void
test_err(void)
{
	struct tm_err e;

	tm_err_clear(&e);
	tap_is_int(tm_err_set(&e, TM_ERR_CONFIG, EX_CONFIG, "bad %s", "port"), -1, "tm_err_set returns -1");
	tap_is_str(e.msg, "bad port", "tm_err_set formats");
	tap_is_int(e.exit, EX_CONFIG, "tm_err_set keeps the exit code");
	tm_err_prefix(&e, "%s:%d", "f.yaml", 3);
	tap_is_str(e.msg, "f.yaml:3: bad port", "tm_err_prefix");
	tm_err_detail(&e, "one");
	tm_err_detail(&e, "two");
	tap_is_str(e.detail, "one\ntwo\n", "tm_err_detail appends lines");
	tm_err_hint(&e, "use %d", 587);
	tap_is_str(e.hint, "use 587", "tm_err_hint");
}

int
main(void)
{
	test_str_copy();
	test_strbuf();
	test_parse_long();
	test_random_hex();
	test_sanitize();
	test_hex_utf8();
	test_err();
	return tap_done();
}
