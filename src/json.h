/*
 * json.h: reading the small JSON documents that token endpoints and Graph
 * return. JSON as they use it is valid YAML, so libyaml parses it; this
 * module turns the result into a tree that is looked up by dotted path
 * ("error.code"). Pure: no I/O, so tests and fuzzers drive it directly.
 * Values may be tokens: json_free() wipes every string it holds.
 *
 * What is accepted: any JSON object (escapes including "\/" and UTF-16
 * surrogate pairs come out as UTF-8), plus YAML flow syntax that JSON
 * never produces (bare words, trailing commas, comments), read as libyaml
 * reads it. What is refused: a top level that is not a {...} object (a
 * YAML block mapping such as "error: bad gateway" included), more than
 * one document, YAML anchors, aliases and tags, a string holding \u0000,
 * an unpaired surrogate, raw DEL or C1 control characters (YAML forbids
 * them unescaped), duplicate keys in one object (two parsers could pick
 * different ones; no token endpoint sends them), nesting deeper than 32,
 * more than 100000 values or 4096 members in one object, and keys over
 * 1024 characters (a libyaml limit on simple keys).
 */
#ifndef TM_JSON_H
#define TM_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"

struct json_doc;	/* opaque */

/*
 * Parse text[len] (at most TM_JSON_MAX octets; a top-level object is
 * required). Returns 0 with *out set (caller frees with json_free), or -1
 * with *out NULL and err (TM_ERR_PROTO, EX_PROTOCOL) saying what is wrong
 * and where: "invalid JSON: PROBLEM at LINE:COL" (1-based; columns count
 * characters, and a surrogate pair earlier on the line shifts them by 2).
 * The message never quotes the input, which may hold secrets.
 */
int json_parse(const char *text, size_t len, struct json_doc **out, struct tm_err *err);

/* The same, naming where the text came from: "invalid JSON from SOURCE:
   PROBLEM at LINE:COL" (SOURCE e.g. "login.microsoftonline.com"). */
int json_parse_from(const char *source, const char *text, size_t len, struct json_doc **out,
    struct tm_err *err);

/*
 * The scalar at path ("access_token", "error.code"; object members only),
 * as its text: strings unescaped, numbers and true/false/null as written.
 * NULL when absent or not a scalar (an object or array). A key holding a
 * '.' cannot be reached. Valid until json_free.
 */
const char *json_get(const struct json_doc *d, const char *path);

/* The number at path, or a string holding one ("3599"); -1 if absent or not a whole number in [min, max]. */
int json_get_long(const struct json_doc *d, const char *path, long min, long max, long *out);

/* The array of numbers at path (Entra's "error_codes"): up to n values into
   out; the count stored is returned, -1 if absent, not an array, or an
   element is not a whole number. */
int json_get_long_array(const struct json_doc *d, const char *path, long *out, size_t n);

/* The scalar at position index of the array at path (Graph's
   "nextExpectedRanges"), as json_get gives it; NULL if absent. */
const char *json_get_array_string(const struct json_doc *d, const char *path, size_t index);
/* Append s to b as a JSON string literal (quotes, escapes); -1 if b's limit
   is hit (b is then unchanged). Control characters, DEL, C1 controls,
   U+2028/2029, U+FEFF and U+FFFE/FFFF go out as \u00XX-style escapes; bytes
   that are not UTF-8 become \ufffd, so the output is always valid JSON. */
struct strbuf;
int json_append_string(struct strbuf *b, const char *s);

/* Wipe every string in d and free it; NULL is fine. */
void json_free(struct json_doc *d);

#endif
