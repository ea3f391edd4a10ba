/*
 * mime_param.c: what the fields of a part's header say, for the parser
 * (mime.c): Content-Type (type and boundary), Content-Transfer-Encoding,
 * Content-Disposition and Content-ID, with their parameters (RFC 2045 5.1;
 * RFC 2231 sections and charset'language'%XX values), the RFC 2047
 * encoded-words in file names, and the conversion of charsets to UTF-8.
 *
 * Leniencies, as mail readers have them:
 *  - a Content-Type without a valid type/subtype is text/plain, with its
 *    parameters still read;
 *  - an unquoted parameter value runs to the next ';' and may hold spaces
 *    ("name=my file.pdf"); comments are dropped;
 *  - RFC 2047 encoded-words are decoded in name and filename values and
 *    anywhere in them, although RFC 2047 5 forbids them inside quoted
 *    strings, because PHP and others put them there.
 *
 * Limits: a file name keeps 255 bytes, a Content-ID 998.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "mime.h"
#include "mime_priv.h"
#include "util.h"

#define MIME_PARAMS_MAX		64	/* parameters kept per field */
#define MIME_SECTION_MAX	999	/* highest RFC 2231 section number */
#define MIME_CHARSET_MAX	40	/* longest charset name kept */
#define MIME_FILENAME_MAX	255	/* file name bytes (NAME_MAX) */
#define MIME_CID_MAX		998	/* a header line (RFC 5322 2.1.1) */

/* ---- small lexical helpers ------------------------------------------ */

static char
lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* Past a comment starting at p ('('), nested and with quoted-pairs. */
static const char *
skip_comment(const char *p)
{
	int depth = 0;

	for (; *p != '\0'; p++) {
		if (*p == '\\' && p[1] != '\0')
			p++;
		else if (*p == '(')
			depth++;
		else if (*p == ')' && --depth == 0)
			return p + 1;
	}
	return p;
}

/* Past white space and comments (CFWS; folding is already undone). */
static const char *
skip_cfws(const char *p)
{
	for (;;) {
		if (is_wsp(*p) || *p == '\r' || *p == '\n')
			p++;
		else if (*p == '(')
			p = skip_comment(p);
		else
			return p;
	}
}

/* Length of the RFC 2045 token at p. */
static size_t
token_len(const char *p)
{
	size_t n = 0;

	while ((unsigned char)p[n] > ' ' && (unsigned char)p[n] < 127 &&
	    strchr("()<>@,;:\\\"/[]?=", p[n]) == NULL)
		n++;
	return n;
}

/* ---- UTF-8 and charsets --------------------------------------------- */

/* Whether the valid UTF-8 character s[0, len) is a control: C0, DEL or C1
   (U+0080 to U+009F, 0xc2 0x80 to 0xc2 0x9f). */
static bool
utf8_is_control(const unsigned char *s, size_t len)
{
	if (len == 1)
		return s[0] < 0x20 || s[0] == 0x7f;
	return len == 2 && s[0] == 0xc2 && s[1] < 0xa0;
}

/*
 * s[0, n) as a clean UTF-8 string of at most max bytes: each invalid byte
 * becomes '?' (the name stays recognisable), control characters (C0, DEL,
 * C1) go (they could end a header or a log line), and the cut falls on a
 * character boundary. NULL if nothing is left. The caller frees it.
 */
static char *
utf8_clean(const char *s, size_t n, size_t max)
{
	char *out = xmalloc(max + 1);
	size_t i = 0, o = 0;

	while (i < n) {
		const unsigned char *u = (const unsigned char *)s + i;
		size_t len = utf8_len(u, n - i);
		const char *src = s + i;

		i += len ? len : 1;
		if (len == 0) {
			src = "?";
			len = 1;
		} else if (utf8_is_control(u, len))
			continue;
		if (o + len > max)
			break;
		memcpy(out + o, src, len);
		o += len;
	}
	out[o] = '\0';
	if (o == 0) {
		free(out);
		return NULL;
	}
	return out;
}

/* The charsets converted to UTF-8 (RFC 2047 and 2231 labels, any case). */
static bool
charset_is_latin1(const char *cs)
{
	return str_eq_nocase(cs, "iso-8859-1") || str_eq_nocase(cs, "iso8859-1") ||
	    str_eq_nocase(cs, "iso_8859-1") || str_eq_nocase(cs, "latin1");
}

static bool
charset_known(const char *cs)
{
	return str_eq_nocase(cs, "utf-8") || str_eq_nocase(cs, "utf8") ||
	    str_eq_nocase(cs, "us-ascii") || charset_is_latin1(cs);
}

/*
 * Append s[0, n) in charset cs to out as UTF-8. Only ISO-8859-1 needs a
 * conversion; UTF-8, US-ASCII and any other charset go as they are, and
 * utf8_clean later turns what is not UTF-8 into '?'.
 */
static void
charset_append(struct strbuf *out, const char *s, size_t n, const char *cs)
{
	size_t i;

	if (!charset_is_latin1(cs)) {
		(void)strbuf_append(out, s, n);
		return;
	}
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char u[2] = { (char)(0xc0 | c >> 6), (char)(0x80 | (c & 0x3f)) };

		if (c < 0x80)
			(void)strbuf_append(out, s + i, 1);
		else
			(void)strbuf_append(out, u, 2);
	}
}

/* ---- RFC 2047 encoded-words ----------------------------------------- */

struct encoded_word {
	char charset[MIME_CHARSET_MAX + 1];	/* without RFC 2231 "*lang" */
	char enc;			/* 'B' or 'Q' */
	const char *text;		/* the encoded text */
	size_t tlen;
	size_t len;			/* the whole "=?...?=" */
};

/* Fill w if s[0, n) starts with an encoded-word in a charset we convert. */
static bool
ew_parse(const char *s, size_t n, struct encoded_word *w)
{
	size_t i = 2, t, cslen;

	if (n < 8 || s[0] != '=' || s[1] != '?')
		return false;
	while (i < n && s[i] != '?' && !is_wsp(s[i]))
		i++;
	if (i == 2 || i + 2 >= n || s[i] != '?' || s[i + 2] != '?')
		return false;
	cslen = i - 2;
	w->enc = (char)(lower(s[i + 1]) == 'b' ? 'B' : lower(s[i + 1]) == 'q' ? 'Q' : 0);
	t = i + 3;
	for (i = t; i < n && s[i] != '?' && !is_wsp(s[i]); i++)
		;
	if (w->enc == 0 || i + 1 >= n || s[i] != '?' || s[i + 1] != '=')
		return false;
	if (str_copy_n(w->charset, sizeof(w->charset), s + 2, cslen) == -1)
		return false;
	w->charset[strcspn(w->charset, "*")] = '\0';
	w->text = s + t;
	w->tlen = i - t;
	w->len = i + 2;
	return charset_known(w->charset);
}

/* Append the decoded octets of w, converted to UTF-8, to out. */
static void
ew_decode(const struct encoded_word *w, struct strbuf *out)
{
	struct strbuf raw;
	unsigned bits = 0, nbits = 0;
	size_t i;

	strbuf_init(&raw, w->tlen);
	for (i = 0; i < w->tlen; i++) {
		char c = w->text[i];
		int v;

		if (w->enc == 'Q' && c == '=' && i + 2 < w->tlen &&
		    hex_value(w->text[i + 1]) >= 0 && hex_value(w->text[i + 2]) >= 0) {
			c = (char)(hex_value(w->text[i + 1]) * 16 +
			    hex_value(w->text[i + 2]));
			i += 2;
		} else if (w->enc == 'Q')
			c = c == '_' ? ' ' : c;
		else if ((v = base64_values[(unsigned char)c]) < 0)
			continue;	/* padding and junk: what is whole stays */
		else {
			bits = (bits << 6 | (unsigned)v) & 0xffffff;
			if ((nbits += 6) < 8)
				continue;
			nbits -= 8;
			c = (char)(bits >> nbits & 0xff);
		}
		(void)strbuf_append(&raw, &c, 1);
	}
	if (raw.len > 0)
		charset_append(out, raw.data, raw.len, w->charset);
	strbuf_free(&raw);
}

/*
 * Append s[0, n) to out with its encoded-words decoded. White space
 * between two encoded-words goes (RFC 2047 6.2), so a name split over
 * several words comes back whole. An encoded-word in another charset, or
 * a malformed one, stays as it is.
 */
static void
decode_2047(const char *s, size_t n, struct strbuf *out)
{
	struct encoded_word w;
	bool after_word = false;
	size_t i = 0;

	while (i < n) {
		size_t sp = 0;

		while (i + sp < n && is_wsp(s[i + sp]))
			sp++;
		if (sp > 0) {
			if (!after_word || !ew_parse(s + i + sp, n - i - sp, &w)) {
				(void)strbuf_append(out, s + i, sp);
				after_word = false;
			}
			i += sp;
		} else if (ew_parse(s + i, n - i, &w)) {
			ew_decode(&w, out);
			i += w.len;
			after_word = true;
		} else {
			(void)strbuf_append(out, s + i, 1);
			i++;
			after_word = false;
		}
	}
}

/* ---- parameters (RFC 2045 5.1, RFC 2231) ---------------------------- */

/* One parameter kept: only those the parser uses. */
struct param {
	const char *name;	/* "boundary", "filename" or "name" */
	int section;		/* RFC 2231 section number, -1 for none */
	bool ext;		/* "*": charset'language'%-encoded */
	char *value;		/* unquoted */
};

struct params {
	struct param v[MIME_PARAMS_MAX];
	size_t n;
};

static void
params_free(struct params *pl)
{
	size_t i;

	for (i = 0; i < pl->n; i++)
		free(pl->v[i].value);
	pl->n = 0;
}

/* Parse the "*", "*N" or "*N*" after a parameter name (s[0] is '*'). */
static int
parse_section(const char *s, size_t n, int *section, bool *ext)
{
	size_t i = 1;
	int num = 0;

	*section = -1;
	*ext = n == 1;
	if (n == 1)
		return 0;
	while (i < n && s[i] >= '0' && s[i] <= '9' && num <= MIME_SECTION_MAX)
		num = num * 10 + (s[i++] - '0');
	if (i == 1 || num > MIME_SECTION_MAX)
		return -1;
	if (i < n && !(s[i] == '*' && i + 1 == n))
		return -1;
	*section = num;
	*ext = i < n;
	return 0;
}

/* Keep attribute attr[0, alen) = value if the parser has a use for it. */
static void
param_add(struct params *pl, const char *attr, size_t alen, const char *value)
{
	static const char *const names[] = { "boundary", "filename", "name" };
	const char *star = memchr(attr, '*', alen);
	size_t i, blen = star != NULL ? (size_t)(star - attr) : alen;
	struct param *p;

	if (pl->n == MIME_PARAMS_MAX)
		return;
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (token_is(attr, blen, names[i]))
			break;
	if (i == sizeof(names) / sizeof(names[0]))
		return;
	p = &pl->v[pl->n];
	p->name = names[i];
	if (star != NULL && parse_section(star, alen - blen, &p->section, &p->ext) == -1)
		return;
	if (star == NULL) {
		p->section = -1;
		p->ext = false;
	}
	p->value = xstrdup(value);
	pl->n++;
}

/*
 * Read a parameter value at p into val and return the end. A quoted
 * string loses its quotes and quoted-pairs; an unquoted value runs to the
 * next ';' without comments and outer white space, because "name=my
 * file.pdf" is common and the ';' is what every reader splits on.
 */
static const char *
read_value(const char *p, struct strbuf *val)
{
	strbuf_reset(val);
	if (*p == '"') {
		for (p++; *p != '\0' && *p != '"'; p++) {
			if (*p == '\\' && p[1] != '\0')
				p++;
			(void)strbuf_append(val, p, 1);
		}
		return *p == '"' ? p + 1 : p;
	}
	while (*p != '\0' && *p != ';') {
		size_t n = strcspn(p, ";(");

		(void)strbuf_append(val, p, n);
		p += n;
		if (*p == '(')
			p = skip_comment(p);
	}
	while (val->len > 0 && is_wsp(val->data[val->len - 1]))
		val->data[--val->len] = '\0';
	return p;
}

/* Past the next ';' outside quoted strings and comments, or NULL. */
static const char *
next_param(const char *p)
{
	while (*p != '\0' && *p != ';') {
		if (*p == '(') {
			p = skip_comment(p);
		} else if (*p == '"') {
			for (p++; *p != '\0' && *p != '"'; p++)
				if (*p == '\\' && p[1] != '\0')
					p++;
			if (*p == '"')
				p++;
		} else
			p++;
	}
	return *p == ';' ? p + 1 : NULL;
}

/* Parse the parameters after a field's leading value into pl. */
static void
parse_params(const char *p, struct params *pl)
{
	struct strbuf val;

	strbuf_init(&val, MIME_FIELD_MAX);
	while ((p = next_param(p)) != NULL) {
		const char *attr = skip_cfws(p);
		size_t alen = token_len(attr);

		p = skip_cfws(attr + alen);
		if (alen == 0 || *p != '=')
			continue;
		p = read_value(skip_cfws(p + 1), &val);
		param_add(pl, attr, alen, val.data != NULL ? val.data : "");
	}
	strbuf_free(&val);
}

/* The first parameter name with that section and kind (ext -1: any). */
static const struct param *
param_find(const struct params *pl, const char *name, int section, int ext)
{
	size_t i;

	for (i = 0; i < pl->n; i++)
		if (strcmp(pl->v[i].name, name) == 0 && pl->v[i].section == section &&
		    (ext == -1 || (int)pl->v[i].ext == ext))
			return &pl->v[i];
	return NULL;
}

/* Append s with its %XX escapes undone (a stray '%' stays). */
static void
percent_append(struct strbuf *out, const char *s)
{
	for (; *s != '\0'; s++) {
		char c = *s;

		if (c == '%' && hex_value(s[1]) >= 0 && hex_value(s[2]) >= 0) {
			c = (char)(hex_value(s[1]) * 16 + hex_value(s[2]));
			s += 2;
		}
		(void)strbuf_append(out, &c, 1);
	}
}

/* Append one RFC 2231 section; the first extended one names the charset. */
static void
section_append(const struct param *pv, bool first, struct strbuf *out,
    char *charset, size_t cs_size)
{
	const char *v = pv->value, *q1, *q2;

	if (!pv->ext) {
		(void)strbuf_append_str(out, v);
		return;
	}
	if (first && (q1 = strchr(v, '\'')) != NULL &&
	    (q2 = strchr(q1 + 1, '\'')) != NULL) {
		if (str_copy_n(charset, cs_size, v, (size_t)(q1 - v)) == -1)
			charset[0] = '\0';
		v = q2 + 1;
	}
	percent_append(out, v);
}

/*
 * The octets of parameter name into out: RFC 2231 sections joined in
 * order up to the first missing one, an extended value preferred to a
 * plain one. 0 if absent, 1 for a plain value, 2 for an extended one
 * (charset then holds its charset, maybe "").
 */
static int
param_value(const struct params *pl, const char *name, struct strbuf *out,
    char *charset, size_t cs_size)
{
	const struct param *pv;
	int i;

	charset[0] = '\0';
	if ((pv = param_find(pl, name, 0, -1)) != NULL) {
		int kind = pv->ext ? 2 : 1;

		for (i = 0; pv != NULL; pv = param_find(pl, name, ++i, -1))
			section_append(pv, i == 0, out, charset, cs_size);
		return kind;
	}
	if ((pv = param_find(pl, name, -1, 1)) != NULL) {
		section_append(pv, true, out, charset, cs_size);
		return 2;
	}
	if ((pv = param_find(pl, name, -1, 0)) != NULL) {
		(void)strbuf_append_str(out, pv->value);
		return 1;
	}
	return 0;
}

/* Parameter name of pl decoded as a file name (see mime.h), or NULL. */
static char *
param_filename(const struct params *pl, const char *name)
{
	struct strbuf raw, dec;
	char charset[MIME_CHARSET_MAX + 1];
	char *out = NULL;
	int kind;

	strbuf_init(&raw, MIME_FIELD_MAX);
	strbuf_init(&dec, 2 * MIME_FIELD_MAX);	/* ISO-8859-1 doubles */
	kind = param_value(pl, name, &raw, charset, sizeof(charset));
	if (kind == 2)
		charset_append(&dec, raw.data, raw.len, charset);
	else if (kind == 1)
		decode_2047(raw.data, raw.len, &dec);
	if (dec.len > 0)
		out = utf8_clean(dec.data, dec.len, MIME_FILENAME_MAX);
	strbuf_free(&raw);
	strbuf_free(&dec);
	return out;
}

/* ---- the fields of a part's header ---------------------------------- */

/* Content-Type: type, subtype and boundary into p, parameters into pl. */
static void
apply_type(struct mime_part *p, const char *v, struct params *pl)
{
	char charset[MIME_CHARSET_MAX + 1];
	const char *t = skip_cfws(v), *s;
	size_t tlen = token_len(t), slen = 0, i;
	struct strbuf b;

	s = skip_cfws(t + tlen);
	if (tlen > 0 && *s == '/') {
		s = skip_cfws(s + 1);
		slen = token_len(s);
	}
	if (slen > 0 && tlen + 1 + slen <= MIME_TYPE_MAX) {
		for (i = 0; i < tlen; i++)
			p->type[i] = lower(t[i]);
		p->type[tlen] = '/';
		for (i = 0; i < slen; i++)
			p->type[tlen + 1 + i] = lower(s[i]);
		p->type[tlen + 1 + slen] = '\0';
	}
	parse_params(v, pl);
	if (strncmp(p->type, "multipart/", 10) != 0)
		return;
	strbuf_init(&b, MIME_FIELD_MAX);
	if (param_value(pl, "boundary", &b, charset, sizeof(charset)) != 0 &&
	    b.len >= 1 && b.len <= MIME_BOUNDARY_MAX && strlen(b.data) == b.len) {
		memcpy(p->boundary, b.data, b.len + 1);
		p->multipart = true;
	}
	strbuf_free(&b);
}

/* Content-Transfer-Encoding; anything unknown is left as it is. */
static enum mime_encoding
parse_encoding(const char *v)
{
	const char *t = skip_cfws(v);
	size_t n = token_len(t);

	if (token_is(t, n, "base64"))
		return MIME_ENC_BASE64;
	if (token_is(t, n, "quoted-printable"))
		return MIME_ENC_QP;
	return MIME_ENC_IDENTITY;
}

/* Content-Disposition: its kind into p, its parameters into pl. */
static void
apply_disposition(struct mime_part *p, const char *v, struct params *pl)
{
	const char *t = skip_cfws(v);
	size_t n = token_len(t);

	p->disposition_attachment = token_is(t, n, "attachment");
	p->disposition_inline = token_is(t, n, "inline");
	parse_params(t + n, pl);
}

/* Content-ID without its angle brackets, white space and controls. */
static char *
parse_content_id(const char *v)
{
	const char *p = skip_cfws(v), *end;
	struct strbuf b;
	char *out = NULL;

	if (*p == '<') {
		p++;
		end = strchr(p, '>');
		if (end == NULL)
			end = p + strlen(p);
	} else
		end = p + strcspn(p, " \t(");
	strbuf_init(&b, MIME_FIELD_MAX);
	for (; p < end; p++)
		if ((unsigned char)*p > ' ' && *p != 0x7f)
			(void)strbuf_append(&b, p, 1);
	if (b.len > 0)
		out = utf8_clean(b.data, b.len, MIME_CID_MAX);
	strbuf_free(&b);
	return out;
}

void
mime_apply_fields(struct mime_part *p, const char *type, const char *encoding,
    const char *disposition, const char *id)
{
	struct params ct = { .n = 0 }, cd = { .n = 0 };

	if (type != NULL)
		apply_type(p, type, &ct);
	if (encoding != NULL)
		p->encoding = parse_encoding(encoding);
	if (disposition != NULL)
		apply_disposition(p, disposition, &cd);
	if (id != NULL)
		p->content_id = parse_content_id(id);
	p->filename = param_filename(&cd, "filename");
	if (p->filename == NULL)
		p->filename = param_filename(&ct, "name");
	params_free(&ct);
	params_free(&cd);
}
