/*
 * json.c: the JSON that token endpoints and Graph send, read through
 * libyaml and kept in a small tree of objects, arrays and scalars.
 *
 * libyaml is driven event by event rather than through yaml_parser_load:
 * a loaded document has already resolved aliases and given every node a
 * default tag, so "&a", "*a" and "!!str" could no longer be told from JSON.
 * The events still carry them, and any one of them is refused.
 *
 * JSON is not quite a subset of what libyaml 0.2.5 accepts, so the text
 * is first copied and adjusted (prepare()): a UTF-16 surrogate pair
 * "\uD83D\uDE00" becomes the YAML escape "\U0001F600" (libyaml refuses
 * each half on its own), and tabs before the first token and after the
 * last become spaces (YAML allows no tab at the start of a line there).
 * Everything else JSON can say, libyaml reads the same way, "\/" included.
 * The top level must be a flow mapping ({...}), so all that follows is in
 * flow context, where YAML and JSON agree.
 *
 * Values may be tokens. Every copy this module makes is wiped before it is
 * freed: the adjusted input, libyaml's input buffers and pending tokens,
 * each event's scalar, and the tree. (libyaml's scratch buffers on its own
 * error paths are beyond reach.)
 */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "json.h"
#include "tm_limits.h"
#include "util.h"

/* Far beyond any token or Graph response; they bound the work a hostile
   document can cause (the member limit keeps the duplicate check cheap). */
#define JSON_DEPTH_MAX		32
#define JSON_NODES_MAX		100000
#define JSON_MEMBERS_MAX	4096

enum json_type {
	JSON_OBJECT,
	JSON_ARRAY,
	JSON_SCALAR
};

struct json_node {
	enum json_type type;
	char *key;			/* member name when the parent is an object */
	size_t key_len;
	char *text;			/* JSON_SCALAR: the unescaped text */
	size_t text_len;
	size_t count;			/* children */
	struct json_node *first, *last;	/* children in document order */
	struct json_node *next;		/* next sibling */
};

struct json_doc {
	struct json_node *root;
};

struct parse {
	yaml_parser_t yaml;
	const char *source;		/* for messages, or NULL */
	const char *text;		/* the adjusted copy libyaml reads */
	size_t text_len;
	struct json_node *root;
	size_t nodes;
	struct tm_err *err;
};

static int parse_value(struct parse *p, yaml_event_t *e, struct json_node *parent, char *key,
    size_t key_len, int depth);

/* ---- errors ---- */

/* "invalid JSON[ from SOURCE]: PROBLEM at LINE:COL" (1-based). */
static int __attribute__((format(printf, 4, 5)))
fail_at(struct parse *p, size_t line, size_t col, const char *fmt, ...)
{
	char problem[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(problem, sizeof(problem), fmt, ap);
	va_end(ap);
	return tm_err_set(p->err, TM_ERR_PROTO, EX_PROTOCOL, "invalid JSON%s%s: %s at %zu:%zu",
	    p->source ? " from " : "", p->source ? p->source : "", problem, line, col);
}

static int
fail_mark(struct parse *p, yaml_mark_t m, const char *problem)
{
	return fail_at(p, m.line + 1, m.column + 1, "%s", problem);
}

/* The reader reports a byte offset, not a mark: turn it into line:col. */
static int
fail_offset(struct parse *p, size_t offset, const char *problem)
{
	size_t line = 1, start = 0, i;

	for (i = 0; i < offset && i < p->text_len; i++) {
		if (p->text[i] == '\n') {
			line++;
			start = i + 1;
		}
	}
	return fail_at(p, line, offset - start + 1, "%s", problem);
}

static int
fail_yaml(struct parse *p)
{
	const char *problem = p->yaml.problem ? p->yaml.problem : "cannot be parsed";

	if (p->yaml.error == YAML_READER_ERROR)
		return fail_offset(p, p->yaml.problem_offset, problem);
	return fail_mark(p, p->yaml.problem_mark, problem);
}

/* ---- input ---- */

static long
hex4(const char *s)
{
	long v = 0;
	int i;

	for (i = 0; i < 4; i++) {
		int d = hex_value(s[i]);

		if (d < 0)
			return -1;
		v = v << 4 | d;
	}
	return v;
}

/*
 * At in[i..len) stands "\uXXXX" with XXXX a surrogate. When a low
 * surrogate escape follows a high one, write the pair as "\UXXXXXXXX" at
 * out and return the octets consumed (12); -1 for a lone half.
 */
static int
join_surrogates(const char *in, size_t i, size_t len, char *out)
{
	long hi = hex4(in + i + 2), lo;
	char esc[16];

	if (hi > 0xdbff || len - i < 12 || in[i + 6] != '\\' || in[i + 7] != 'u')
		return -1;
	lo = hex4(in + i + 8);
	if (lo < 0xdc00 || lo > 0xdfff)
		return -1;
	(void)str_format(esc, sizeof(esc), "\\U%08lX",
	    0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00));
	memcpy(out, esc, 10);
	return 12;
}

static bool
is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/*
 * Copy text for libyaml (see the top of the file); *out_len gets the copy's
 * length, which is never more than len. Escapes are walked pairwise, so
 * "\\uD83D" stays the escaped backslash it is. NULL with p->err set for an
 * unpaired surrogate.
 */
static char *
prepare(struct parse *p, const char *text, size_t len, size_t *out_len)
{
	char *out = xmalloc(len + 1);
	size_t i = 0, o = 0, line = 1, start = 0, first = 0, end = len;

	while (first < len && is_space(text[first]))
		first++;
	while (end > first && is_space(text[end - 1]))
		end--;
	while (i < len) {
		char c = text[i];
		long cu;

		if (c == '\n') {
			line++;
			start = i + 1;
		}
		if (c == '\\' && len - i >= 6 && text[i + 1] == 'u' &&
		    (cu = hex4(text + i + 2)) >= 0xd800 && cu <= 0xdfff) {
			int used = join_surrogates(text, i, len, out + o);

			if (used < 0) {
				fail_at(p, line, i - start + 1, "unpaired UTF-16 surrogate \\u%04lX", cu);
				secret_wipe(out, o);
				free(out);
				return NULL;
			}
			i += (size_t)used;
			o += 10;
			continue;
		}
		out[o++] = (c == '\t' && (i < first || i >= end)) ? ' ' : c;
		if (c == '\\' && i + 1 < len)
			out[o++] = text[++i];
		i++;
	}
	out[o] = '\0';
	*out_len = o;
	return out;
}

/* ---- events ---- */

static void
event_free(yaml_event_t *e)
{
	if (e->type == YAML_SCALAR_EVENT)
		secret_wipe(e->data.scalar.value, e->data.scalar.length);
	yaml_event_delete(e);
}

/* The anchor and tag of e, when it can have them. */
static void
event_props(const yaml_event_t *e, const yaml_char_t **anchor, const yaml_char_t **tag)
{
	*anchor = *tag = NULL;
	if (e->type == YAML_SCALAR_EVENT) {
		*anchor = e->data.scalar.anchor;
		*tag = e->data.scalar.tag;
	} else if (e->type == YAML_SEQUENCE_START_EVENT) {
		*anchor = e->data.sequence_start.anchor;
		*tag = e->data.sequence_start.tag;
	} else if (e->type == YAML_MAPPING_START_EVENT) {
		*anchor = e->data.mapping_start.anchor;
		*tag = e->data.mapping_start.tag;
	}
}

/* The next event into *e, or -1 (err set, nothing to free) for a syntax
   error or YAML that JSON never produces: aliases, anchors, tags. */
static int
next_event(struct parse *p, yaml_event_t *e)
{
	const yaml_char_t *anchor, *tag;
	const char *problem = NULL;

	if (!yaml_parser_parse(&p->yaml, e))
		return fail_yaml(p);
	event_props(e, &anchor, &tag);
	if (e->type == YAML_ALIAS_EVENT)
		problem = "YAML alias (*name) refused";
	else if (anchor != NULL)
		problem = "YAML anchor (&name) refused";
	else if (tag != NULL)
		problem = "YAML tag (!name) refused";
	if (problem == NULL)
		return 0;
	fail_mark(p, e->start_mark, problem);
	event_free(e);
	return -1;
}

/* ---- tree ---- */

/* A node appended to parent (or made the root), owning key. */
static struct json_node *
node_new(struct parse *p, struct json_node *parent, enum json_type type, char *key,
    size_t key_len)
{
	struct json_node *n = xcalloc(1, sizeof(*n));

	n->type = type;
	n->key = key;
	n->key_len = key_len;
	p->nodes++;
	if (parent == NULL) {
		p->root = n;
		return n;
	}
	if (parent->last)
		parent->last->next = n;
	else
		parent->first = n;
	parent->last = n;
	parent->count++;
	return n;
}

static void
node_free(struct json_node *n)
{
	while (n != NULL) {
		struct json_node *next = n->next;

		node_free(n->first);
		if (n->key)
			secret_wipe(n->key, n->key_len);
		if (n->text)
			secret_wipe(n->text, n->text_len);
		free(n->key);
		free(n->text);
		free(n);
		n = next;
	}
}

static const struct json_node *
member(const struct json_node *obj, const char *key, size_t key_len)
{
	const struct json_node *n;

	if (obj == NULL || obj->type != JSON_OBJECT)
		return NULL;
	for (n = obj->first; n != NULL; n = n->next)
		if (n->key_len == key_len && memcmp(n->key, key, key_len) == 0)
			return n;
	return NULL;
}

/* A heap copy of scalar event e, or NULL (err set) when it holds a NUL,
   which a C string could not carry faithfully. */
static char *
scalar_copy(struct parse *p, const yaml_event_t *e)
{
	const char *v = (const char *)e->data.scalar.value;
	size_t len = e->data.scalar.length;

	if (strlen(v) != len) {
		fail_mark(p, e->start_mark, "string holds a NUL character (\\u0000)");
		return NULL;
	}
	return xstrndup(v, len);
}

static int
parse_array(struct parse *p, struct json_node *arr, int depth)
{
	yaml_event_t e;

	for (;;) {
		if (next_event(p, &e) < 0)
			return -1;
		if (e.type == YAML_SEQUENCE_END_EVENT) {
			event_free(&e);
			return 0;
		}
		if (parse_value(p, &e, arr, NULL, 0, depth + 1) < 0)
			return -1;
	}
}

/* One "key": value member of obj, its key event in k (consumed). */
static int
parse_member(struct parse *p, struct json_node *obj, yaml_event_t *k, int depth)
{
	yaml_event_t v;
	size_t key_len;
	char *key;

	if (k->type != YAML_SCALAR_EVENT) {
		fail_mark(p, k->start_mark, "object key is not a string");
		event_free(k);
		return -1;
	}
	key = scalar_copy(p, k);
	key_len = k->data.scalar.length;
	if (key != NULL && member(obj, key, key_len) != NULL)
		fail_mark(p, k->start_mark, "duplicate key");
	else if (key != NULL && obj->count >= JSON_MEMBERS_MAX)
		fail_mark(p, k->start_mark, "object has too many members");
	else if (key != NULL && next_event(p, &v) == 0) {
		event_free(k);
		return parse_value(p, &v, obj, key, key_len, depth + 1);
	}
	event_free(k);
	if (key)
		secret_wipe(key, key_len);
	free(key);
	return -1;
}

static int
parse_object(struct parse *p, struct json_node *obj, int depth)
{
	yaml_event_t e;

	for (;;) {
		if (next_event(p, &e) < 0)
			return -1;
		if (e.type == YAML_MAPPING_END_EVENT) {
			event_free(&e);
			return 0;
		}
		if (parse_member(p, obj, &e, depth) < 0)
			return -1;
	}
}

static enum json_type
event_type(const yaml_event_t *e)
{
	if (e->type == YAML_MAPPING_START_EVENT)
		return JSON_OBJECT;
	if (e->type == YAML_SEQUENCE_START_EVENT)
		return JSON_ARRAY;
	return JSON_SCALAR;
}

/*
 * The value that starts with event e (consumed), as a child of parent
 * named key (owned from here on). The node is linked in before it is
 * filled, so on error everything is freed with the root.
 */
static int
parse_value(struct parse *p, yaml_event_t *e, struct json_node *parent, char *key,
    size_t key_len, int depth)
{
	struct json_node *n = node_new(p, parent, event_type(e), key, key_len);
	yaml_mark_t at = e->start_mark;
	int rc = -1;

	if (depth > JSON_DEPTH_MAX)
		fail_mark(p, at, "nested too deeply");
	else if (p->nodes > JSON_NODES_MAX)
		fail_mark(p, at, "too many values");
	else if (n->type == JSON_SCALAR && e->type != YAML_SCALAR_EVENT)
		fail_mark(p, at, "unexpected YAML event");
	else if (n->type == JSON_SCALAR) {
		n->text = scalar_copy(p, e);
		n->text_len = e->data.scalar.length;
		rc = n->text ? 0 : -1;
	} else
		rc = 0;
	event_free(e);
	if (rc == 0 && n->type == JSON_OBJECT)
		rc = parse_object(p, n, depth);
	else if (rc == 0 && n->type == JSON_ARRAY)
		rc = parse_array(p, n, depth);
	return rc;
}

/* ---- document ---- */

static const char *
kind(const yaml_event_t *e)
{
	if (e->type == YAML_MAPPING_START_EVENT)
		return "a YAML block mapping";
	if (e->type == YAML_SEQUENCE_START_EVENT)
		return "an array";
	if (e->type == YAML_SCALAR_EVENT && e->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return "a string";
	return "a bare value";
}

/* Expect an event of type t (consumed); problem names what was missing. */
static int
expect(struct parse *p, yaml_event_type_t t, const char *problem)
{
	yaml_event_t e;
	int ok;

	if (next_event(p, &e) < 0)
		return -1;
	ok = e.type == t;
	if (!ok)
		fail_mark(p, e.start_mark, problem);
	event_free(&e);
	return ok ? 0 : -1;
}

/*
 * The one top-level object, between the document's start and end. It must
 * be a flow mapping ({...}): a block mapping would turn a plain-text
 * answer such as "error: bad gateway" into an object.
 */
static int
parse_document(struct parse *p)
{
	yaml_event_t e;

	if (expect(p, YAML_STREAM_START_EVENT, "no stream") < 0 || next_event(p, &e) < 0)
		return -1;
	if (e.type != YAML_DOCUMENT_START_EVENT) {
		fail_mark(p, e.start_mark, "empty document");
		event_free(&e);
		return -1;
	}
	event_free(&e);
	if (next_event(p, &e) < 0)
		return -1;
	if (e.type != YAML_MAPPING_START_EVENT ||
	    e.data.mapping_start.style != YAML_FLOW_MAPPING_STYLE) {
		fail_at(p, e.start_mark.line + 1, e.start_mark.column + 1,
		    "top level is %s, not an object", kind(&e));
		event_free(&e);
		return -1;
	}
	if (parse_value(p, &e, NULL, NULL, 0, 0) < 0)
		return -1;
	if (expect(p, YAML_DOCUMENT_END_EVENT, "text after the top-level object") < 0 ||
	    expect(p, YAML_STREAM_END_EVENT, "more than one document") < 0)
		return -1;
	return 0;
}

/* Wipe what libyaml still holds of the input before it frees it. */
static void
yaml_wipe(yaml_parser_t *y)
{
	yaml_token_t *t;

	if (y->raw_buffer.start)
		secret_wipe(y->raw_buffer.start, (size_t)(y->raw_buffer.end - y->raw_buffer.start));
	if (y->buffer.start)
		secret_wipe(y->buffer.start, (size_t)(y->buffer.end - y->buffer.start));
	for (t = y->tokens.head; t != NULL && t != y->tokens.tail; t++)
		if (t->type == YAML_SCALAR_TOKEN)
			secret_wipe(t->data.scalar.value, t->data.scalar.length);
}

int
json_parse_from(const char *source, const char *text, size_t len, struct json_doc **out,
    struct tm_err *err)
{
	struct parse p;
	char *copy = NULL;
	int rc = -1;

	memset(&p, 0, sizeof(p));
	p.source = source;
	p.err = err;
	*out = NULL;
	if (len > TM_JSON_MAX) {
		tm_err_set(err, TM_ERR_PROTO, EX_PROTOCOL, "invalid JSON%s%s: over %d octets",
		    source ? " from " : "", source ? source : "", TM_JSON_MAX);
		return -1;
	}
	if ((copy = prepare(&p, text, len, &p.text_len)) == NULL)
		return -1;
	p.text = copy;
	if (!yaml_parser_initialize(&p.yaml)) {
		tm_err_set(err, TM_ERR_INTERNAL, EX_OSERR, "out of memory");
		goto out;
	}
	yaml_parser_set_input_string(&p.yaml, (const unsigned char *)copy, p.text_len);
	rc = parse_document(&p);
	yaml_wipe(&p.yaml);
	yaml_parser_delete(&p.yaml);
out:
	secret_wipe(copy, p.text_len);
	free(copy);
	if (rc < 0) {
		node_free(p.root);
		return -1;
	}
	*out = xcalloc(1, sizeof(**out));
	(*out)->root = p.root;
	return 0;
}

int
json_parse(const char *text, size_t len, struct json_doc **out, struct tm_err *err)
{
	return json_parse_from(NULL, text, len, out, err);
}

void
json_free(struct json_doc *d)
{
	if (d == NULL)
		return;
	node_free(d->root);
	free(d);
}

/* ---- lookups ---- */

/* The node at a dotted path of member names, or NULL. */
static const struct json_node *
lookup(const struct json_doc *d, const char *path)
{
	const struct json_node *n = d ? d->root : NULL;

	for (;;) {
		const char *dot = strchr(path, '.');
		size_t seg = dot ? (size_t)(dot - path) : strlen(path);

		n = member(n, path, seg);
		if (n == NULL || dot == NULL)
			return n;
		path = dot + 1;
	}
}

const char *
json_get(const struct json_doc *d, const char *path)
{
	const struct json_node *n = lookup(d, path);

	return (n && n->type == JSON_SCALAR) ? n->text : NULL;
}

int
json_get_long(const struct json_doc *d, const char *path, long min, long max, long *out)
{
	return parse_long(json_get(d, path), min, max, out);
}

int
json_get_long_array(const struct json_doc *d, const char *path, long *out, size_t n)
{
	const struct json_node *a = lookup(d, path), *e;
	size_t count = 0;
	long v;

	if (a == NULL || a->type != JSON_ARRAY)
		return -1;
	for (e = a->first; e != NULL; e = e->next) {
		if (e->type != JSON_SCALAR || parse_long(e->text, LONG_MIN, LONG_MAX, &v) < 0)
			return -1;
		if (count < n)
			out[count++] = v;
	}
	return (int)count;
}

const char *
json_get_array_string(const struct json_doc *d, const char *path, size_t index)
{
	const struct json_node *a = lookup(d, path), *e;

	if (a == NULL || a->type != JSON_ARRAY)
		return NULL;
	for (e = a->first; e != NULL && index > 0; e = e->next)
		index--;
	return e != NULL && e->type == JSON_SCALAR ? e->text : NULL;
}

/* ---- output ---- */

/* Length of the well-formed UTF-8 sequence at s (RFC 3629), 0 if there is
   none; *cp gets its code point. */
static size_t
utf8_seq(const unsigned char *s, unsigned long *cp)
{
	unsigned long v;
	size_t n, i;

	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4;
	else
		return 0;
	v = s[0] & (0x7fu >> n);	/* the lead octet's payload bits */
	for (i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		v = v << 6 | (s[i] & 0x3f);
	}
	if ((n == 3 && v < 0x800) || (n == 4 && (v < 0x10000 || v > 0x10ffff)) ||
	    (v >= 0xd800 && v <= 0xdfff))
		return 0;
	*cp = v;
	return n;
}

/* Characters that go out as \uXXXX: JSON's controls, and those a YAML
   reader (this module's own) refuses raw or a JavaScript one mistakes for
   line ends. */
static bool
escape_cp(unsigned long cp)
{
	return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029 ||
	    cp == 0xfeff || cp == 0xfffe || cp == 0xffff;
}

/* Append the character at *s, escaped as needed; advance *s past it. */
static int
append_char(struct strbuf *b, const char **s)
{
	const unsigned char *u = (const unsigned char *)*s;
	unsigned long cp = u[0];
	size_t n = 1;
	char esc[8];

	if (cp >= 0x80 && (n = utf8_seq(u, &cp)) == 0) {
		n = 1;
		cp = 0xfffd;	/* not UTF-8: the replacement character */
	}
	*s += n;
	if (cp == '"' || cp == '\\') {
		esc[0] = '\\';
		esc[1] = (char)cp;
		return strbuf_append(b, esc, 2);
	}
	if (escape_cp(cp) || cp == 0xfffd) {
		(void)str_format(esc, sizeof(esc), "\\u%04lx", cp);
		return strbuf_append(b, esc, 6);
	}
	return strbuf_append(b, u, n);
}

int
json_append_string(struct strbuf *b, const char *s)
{
	size_t start = b->len;
	int rc = strbuf_append(b, "\"", 1);

	while (rc == 0 && *s)
		rc = append_char(b, &s);
	if (rc == 0)
		rc = strbuf_append(b, "\"", 1);
	if (rc < 0 && b->data != NULL) {
		secret_wipe(b->data + start, b->len - start);
		b->len = start;
		b->data[start] = '\0';
	}
	return rc;
}
