/*
 * mime_test.c: tests of the MIME structure parser and the body decoders.
 * Each message of the tables is parsed twice, once with a reader that
 * gives everything asked and once with one that gives 1 to 3 bytes at a
 * time, and both trees must be equal. Every part's offsets are checked
 * against the bytes they point at, and every part is cut out of the
 * message ([delim_start, next_delim)) and the rest parsed again: it must
 * be the same structure without that part, which is what Graph's draft
 * path relies on.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sysexits.h>

#include "mime.h"
#include "tap.h"
#include "util.h"

/* ---- readers ---------------------------------------------------------- */

/* A message in memory. chunk > 0: each read gives at most 1..chunk bytes
   (cycling), to cross every boundary of the window and the decoders. */
struct memsrc {
	const char *data;
	size_t len;
	int chunk;
	unsigned calls;
	long long fail_at;	/* reading a byte at or past it fails; -1 never */
};

static long
mem_read(void *ctx, long long off, char *buf, size_t n)
{
	struct memsrc *m = ctx;
	size_t k;

	m->calls++;
	if (off < 0 || (size_t)off >= m->len)
		return 0;
	k = m->len - (size_t)off;
	if (k > n)
		k = n;
	if (m->chunk > 0 && k > 1 + m->calls % (unsigned)m->chunk)
		k = 1 + m->calls % (unsigned)m->chunk;
	if (m->fail_at >= 0 && off + (long long)k > m->fail_at)
		return -1;
	memcpy(buf, m->data + off, k);
	return (long)k;
}

static void
mem_init(struct memsrc *m, struct mime_reader *r, const char *data, size_t len, int chunk)
{
	memset(m, 0, sizeof(*m));
	m->data = data;
	m->len = len;
	m->chunk = chunk;
	m->fail_at = -1;
	r->ctx = m;
	r->read_at = mem_read;
	r->size = (long long)len;
}

/* s with every LF made CRLF; *len gets the length. */
static char *
crlf(const char *s, size_t *len)
{
	struct strbuf b;

	strbuf_init(&b, (size_t)-1);
	for (; *s != '\0'; s++) {
		if (*s == '\n')
			strbuf_append(&b, "\r", 1);
		strbuf_append(&b, s, 1);
	}
	*len = b.len;
	return strbuf_take(&b);
}

static int
parse_mem(const char *data, size_t len, int chunk, struct mime_tree *t, struct tm_err *err)
{
	struct memsrc m;
	struct mime_reader r;

	mem_init(&m, &r, data, len, chunk);
	tm_err_clear(err);
	return mime_parse(&r, t, err);
}

/* s with CR, LF and TAB shown as \r, \n, \t, to keep a TAP line one line. */
static const char *
shown(const char *s)
{
	static char buf[2][512];
	static int which;
	char *out = buf[which ^= 1];
	size_t n = 0;

	for (; *s != '\0' && n + 3 < sizeof(buf[0]); s++) {
		const char *esc = *s == '\r' ? "\\r" : *s == '\n' ? "\\n" : *s == '\t' ? "\\t" : NULL;

		if (esc != NULL) {
			memcpy(out + n, esc, 2);
			n += 2;
		} else
			out[n++] = *s;
	}
	out[n] = '\0';
	return out;
}

/* ---- rendering and checking trees -------------------------------------- */

/* One line per part: depth dots, type, {boundary}, encoding, disposition,
   f=[filename], id=[content-id], A for an attachment. */
static char *
render(const struct mime_tree *t)
{
	static const char dots[] = "........................................";
	struct strbuf b;
	size_t i;

	strbuf_init(&b, (size_t)-1);
	for (i = 0; i < t->count; i++) {
		const struct mime_part *p = &t->parts[i];

		strbuf_appendf(&b, "%s%.*s%s", i ? "\n" : "", p->depth, dots, p->type);
		if (p->multipart)
			strbuf_appendf(&b, " {%s}", p->boundary);
		if (p->encoding != MIME_ENC_IDENTITY)
			strbuf_appendf(&b, " %s", p->encoding == MIME_ENC_BASE64 ? "b64" : "qp");
		if (p->disposition_attachment)
			strbuf_append_str(&b, " att");
		if (p->disposition_inline)
			strbuf_append_str(&b, " inl");
		if (p->filename != NULL)
			strbuf_appendf(&b, " f=[%s]", p->filename);
		if (p->content_id != NULL)
			strbuf_appendf(&b, " id=[%s]", p->content_id);
		if (mime_part_is_attachment(t, i))
			strbuf_append_str(&b, " A");
	}
	return strbuf_take(&b);
}

static bool
str_same(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* Whether two trees are equal in every field. */
static bool
tree_same(const struct mime_tree *a, const struct mime_tree *b)
{
	size_t i;

	if (a->count != b->count)
		return false;
	for (i = 0; i < a->count; i++) {
		const struct mime_part *p = &a->parts[i], *q = &b->parts[i];

		if (p->parent != q->parent || p->depth != q->depth ||
		    p->delim_start != q->delim_start || p->header_start != q->header_start ||
		    p->body_start != q->body_start || p->body_end != q->body_end ||
		    p->next_delim != q->next_delim || strcmp(p->type, q->type) != 0 ||
		    p->multipart != q->multipart || strcmp(p->boundary, q->boundary) != 0 ||
		    p->encoding != q->encoding ||
		    p->disposition_attachment != q->disposition_attachment ||
		    p->disposition_inline != q->disposition_inline ||
		    !str_same(p->filename, q->filename) || !str_same(p->content_id, q->content_id))
			return false;
	}
	return true;
}

/* Where p's body must end: before the line end in front of next_delim,
   but not before its start (a part without a body). */
static long long
body_end_before(const char *data, const struct mime_part *p)
{
	long long e = p->next_delim;

	if (e > 0 && data[e - 1] == '\n')
		e -= e > 1 && data[e - 2] == '\r' ? 2 : 1;
	return e > p->body_start ? e : p->body_start;
}

/* Why part i's offsets do not fit the bytes they point at, or NULL. */
static const char *
part_offsets_wrong(const struct mime_tree *t, size_t i, const char *data, long long size)
{
	const struct mime_part *p = &t->parts[i], *up;
	size_t blen;

	if (!(p->header_start <= p->body_start && p->body_start <= p->body_end &&
	    p->body_end <= p->next_delim && p->next_delim <= size))
		return "offsets out of order";
	if (p->next_delim < size && (data[p->next_delim] != '-' || data[p->next_delim + 1] != '-'))
		return "next_delim is not at a delimiter";
	if (p->next_delim < size && body_end_before(data, p) != p->body_end)
		return "body_end is not just before the line end of next_delim";
	if (p->next_delim == size && p->body_end != size)
		return "body_end short of the end of input";
	if (i == 0)
		return p->parent == -1 && p->depth == 0 && p->delim_start == -1 &&
		    p->header_start == 0 ? NULL : "parts[0] wrong";
	if (p->parent < 0 || (size_t)p->parent >= i || t->parts[i - 1].delim_start >= p->delim_start)
		return "parent or order wrong";
	up = &t->parts[p->parent];
	blen = strlen(up->boundary);
	if (!up->multipart || p->depth != up->depth + 1 || p->delim_start < up->body_start ||
	    p->next_delim > up->next_delim)
		return "not inside its parent";
	if (memcmp(data + p->delim_start, "--", 2) != 0 ||
	    memcmp(data + p->delim_start + 2, up->boundary, blen) != 0)
		return "delim_start is not at its parent's delimiter";
	if (p->header_start != size && data[p->header_start - 1] != '\n')
		return "header_start is not after the delimiter line";
	return NULL;
}

static const char *
offsets_wrong(const struct mime_tree *t, const char *data, long long size)
{
	const char *why = NULL;
	size_t i;

	for (i = 0; i < t->count && why == NULL; i++)
		why = part_offsets_wrong(t, i, data, size);
	return why;
}

/* render without the lines of part i and its descendants. */
static char *
render_without(const struct mime_tree *t, size_t i)
{
	char *full = render(t), *line = full;
	struct strbuf b;
	size_t j, last = i;

	while (last + 1 < t->count && t->parts[last + 1].depth > t->parts[i].depth)
		last++;
	strbuf_init(&b, (size_t)-1);
	for (j = 0; j < t->count; j++) {
		size_t n = strcspn(line, "\n");

		if (j < i || j > last) {
			if (b.len > 0)
				strbuf_append(&b, "\n", 1);
			strbuf_append(&b, line, n);
		}
		line += n + (line[n] == '\n');
	}
	free(full);
	return strbuf_take(&b);
}

/* Cut every part out in turn; the rest must parse as the tree without it. */
static bool
removals_ok(const struct mime_tree *t, const char *data, size_t len, const char *name)
{
	bool ok = true;
	size_t i;

	for (i = 1; i < t->count; i++) {
		const struct mime_part *p = &t->parts[i];
		size_t a = (size_t)p->delim_start, z = (size_t)p->next_delim;
		char *cut = xmalloc(len - (z - a) + 1), *want = render_without(t, i), *got;
		struct mime_tree u;
		struct tm_err err;

		memcpy(cut, data, a);
		memcpy(cut + a, data + z, len - z);
		if (parse_mem(cut, len - (z - a), 0, &u, &err) == -1) {
			printf("# %s: removing part %zu: %s\n", name, i, err.msg);
			ok = false;
		} else {
			got = render(&u);
			if (strcmp(got, want) != 0) {
				printf("# %s: removing part %zu\n", name, i);
				tap_diag(got, want);
				ok = false;
			}
			free(got);
		}
		mime_tree_free(&u);
		free(cut);
		free(want);
	}
	return ok;
}

/* ---- whole messages ---------------------------------------------------- */

struct tree_case {
	const char *name;
	const char *msg;	/* LF line ends, made CRLF unless lf */
	bool lf;
	const char *want;	/* render() */
};

#define MIXED \
	"From: a@example.com\n" \
	"To: b@example.com\n" \
	"Subject: t\n" \
	"MIME-Version: 1.0\n" \
	"Content-Type: multipart/mixed; boundary=\"XYZ\"\n" \
	"\n" \
	"--XYZ\n" \
	"Content-Type: text/plain; charset=utf-8\n" \
	"\n" \
	"Hello\n" \
	"--XYZ\n" \
	"Content-Type: application/pdf; name=\"r.pdf\"\n" \
	"Content-Disposition: attachment; filename=\"report.pdf\"\n" \
	"Content-Transfer-Encoding: base64\n" \
	"\n" \
	"JVBERi0xLjQK\n" \
	"--XYZ--\n"
#define MIXED_WANT \
	"multipart/mixed {XYZ}\n" \
	".text/plain\n" \
	".application/pdf b64 att f=[report.pdf] A"

static const struct tree_case tree_cases[] = {
	{ "single part", "Subject: x\nContent-Type: text/plain\n\nhello\n", false,
	  "text/plain" },
	{ "no header at all", "hello\n", false, "text/plain" },
	{ "empty message", "", false, "text/plain" },
	{ "single part quoted-printable", "Content-Transfer-Encoding: quoted-printable\n\na=3D\n",
	  false, "text/plain qp" },
	{ "multipart/mixed text + attachment", MIXED, false, MIXED_WANT },
	{ "bare LF", MIXED, true, MIXED_WANT },
	{ "mixed > alternative + 2 attachments",
	  "Content-Type: multipart/mixed; boundary=outer\n"
	  "\n"
	  "--outer\n"
	  "Content-Type: multipart/alternative; boundary=inner\n"
	  "\n"
	  "--inner\n"
	  "Content-Type: text/plain\n"
	  "\n"
	  "plain\n"
	  "--inner\n"
	  "Content-Type: text/html\n"
	  "\n"
	  "<p>html</p>\n"
	  "--inner--\n"
	  "\n"
	  "--outer\n"
	  "Content-Type: image/png\n"
	  "Content-Disposition: attachment; filename=a.png\n"
	  "Content-Transfer-Encoding: base64\n"
	  "\n"
	  "iVBORw0KGgo=\n"
	  "--outer\n"
	  "Content-Type: text/csv; name=\"data.csv\"\n"
	  "Content-Disposition: attachment\n"
	  "\n"
	  "a,b\n"
	  "--outer--\n", false,
	  "multipart/mixed {outer}\n"
	  ".multipart/alternative {inner}\n"
	  "..text/plain\n"
	  "..text/html\n"
	  ".image/png b64 att f=[a.png] A\n"
	  ".text/csv att f=[data.csv] A" },
	{ "related with inline images",
	  "Content-Type: multipart/related; type=\"text/html\"; boundary=\"rel\"\n"
	  "\n"
	  "--rel\n"
	  "Content-Type: text/html\n"
	  "\n"
	  "<img src=\"cid:logo@x\"><img src=\"cid:dot@x\">\n"
	  "--rel\n"
	  "Content-Type: image/png\n"
	  "Content-ID: <logo@x>\n"
	  "Content-Disposition: inline; filename=\"logo.png\"\n"
	  "Content-Transfer-Encoding: base64\n"
	  "\n"
	  "iVBORw0KGgo=\n"
	  "--rel\n"
	  "Content-Type: image/gif\n"
	  "Content-ID: (comment) < dot@x >\n"
	  "Content-Disposition: inline\n"
	  "\n"
	  "GIF89a\n"
	  "--rel--\n", false,
	  "multipart/related {rel}\n"
	  ".text/html\n"
	  ".image/png b64 inl f=[logo.png] id=[logo@x] A\n"
	  ".image/gif inl id=[dot@x]" },
	{ "Content-Type name only",
	  "Content-Type: multipart/mixed; boundary=b\n\n--b\n"
	  "Content-Type: application/octet-stream; name=\"data.bin\"\n\nxx\n--b--\n", false,
	  "multipart/mixed {b}\n.application/octet-stream f=[data.bin] A" },
	{ "transport padding",
	  "Content-Type: multipart/mixed; boundary=b\n\n--b \t \n"
	  "Content-Type: text/plain\n\na\n--b\t\nContent-Type: text/html\n\nb\n--b--  \n", false,
	  "multipart/mixed {b}\n.text/plain\n.text/html" },
	{ "missing close delimiter",
	  "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\na\n"
	  "--b\nContent-Type: application/octet-stream; name=x.bin\n\nxyz\n", false,
	  "multipart/mixed {b}\n.text/plain\n.application/octet-stream f=[x.bin] A" },
	{ "preamble and epilogue",
	  "Content-Type: multipart/mixed; boundary=\"b\"\n\n"
	  "This is a preamble.\n--b is not a delimiter\n--bb\n"
	  "--b\nContent-Type: text/plain\n\na\n--b--\n"
	  "epilogue\n--b\nContent-Type: application/x-not-a-part\n\n--b--\n", false,
	  "multipart/mixed {b}\n.text/plain" },
	{ "message/rfc822 with an attachment inside",
	  "Content-Type: multipart/mixed; boundary=m\n\n"
	  "--m\nContent-Type: text/plain\n\nsee attached\n"
	  "--m\nContent-Type: message/rfc822\n\n"
	  "Subject: inner\nContent-Type: multipart/mixed; boundary=i\n\n"
	  "--i\nContent-Type: text/plain\n\ninner\n"
	  "--i\nContent-Type: application/zip; name=\"in.zip\"\n"
	  "Content-Disposition: attachment; filename=\"in.zip\"\n\nPK\n--i--\n"
	  "--m--\n", false,
	  "multipart/mixed {m}\n.text/plain\n.message/rfc822" },
	{ "message/rfc822 attached",
	  "Content-Type: multipart/mixed; boundary=m\n\n"
	  "--m\nContent-Type: message/rfc822\nContent-Disposition: attachment; filename=fwd.eml\n\n"
	  "Subject: inner\nContent-Type: multipart/mixed; boundary=m2\n\n"
	  "--m2\nContent-Disposition: attachment; filename=\"in.zip\"\n\nPK\n--m2--\n"
	  "--m--\n", false,
	  "multipart/mixed {m}\n.message/rfc822 att f=[fwd.eml] A" },
	{ "unclosed inner multipart ended by the outer boundary",
	  "Content-Type: multipart/mixed; boundary=o\n\n"
	  "--o\nContent-Type: multipart/alternative; boundary=i\n\n"
	  "--i\nContent-Type: text/plain\n\na\n"
	  "--o\nContent-Type: application/octet-stream; name=x.bin\n\nx\n--o--\n", false,
	  "multipart/mixed {o}\n.multipart/alternative {i}\n..text/plain\n"
	  ".application/octet-stream f=[x.bin] A" },
	{ "inner boundary a prefix of the outer one",
	  "Content-Type: multipart/mixed; boundary=abc\n\n"
	  "--abc\nContent-Type: multipart/alternative; boundary=ab\n\n"
	  "--ab\nContent-Type: text/plain\n\nx\n--abc\nContent-Type: text/html\n\ny\n--abc--\n", false,
	  "multipart/mixed {abc}\n.multipart/alternative {ab}\n..text/plain\n.text/html" },
	{ "multipart without a boundary is a leaf",
	  "Content-Type: multipart/mixed\n\n--b\nContent-Type: text/plain\n\nx\n--b--\n", false,
	  "multipart/mixed" },
	{ "boundary over 70 characters is a leaf",
	  "Content-Type: multipart/mixed; boundary="
	  "\"12345678901234567890123456789012345678901234567890123456789012345678901\"\n\n"
	  "--12345678901234567890123456789012345678901234567890123456789012345678901\n\nx\n",
	  false, "multipart/mixed" },
	{ "boundary of 70 characters",
	  "Content-Type: multipart/mixed; boundary="
	  "\"1234567890123456789012345678901234567890123456789012345678901234567890\"\n\n"
	  "--1234567890123456789012345678901234567890123456789012345678901234567890\n\nx\n",
	  false, "multipart/mixed "
	  "{1234567890123456789012345678901234567890123456789012345678901234567890}\n"
	  ".text/plain" },
	{ "digest parts default to message/rfc822",
	  "Content-Type: multipart/digest; boundary=d\n\n"
	  "--d\n\nSubject: one\n\n1\n--d\nContent-Type: text/plain\n\nt\n--d--\n", false,
	  "multipart/digest {d}\n.message/rfc822\n.text/plain" },
	{ "header ended by a delimiter, no header, no blank line",
	  "Content-Type: multipart/mixed; boundary=b\n\n"
	  "--b\nContent-Type: text/html\n--b\n\nno header\n--b\nnot a header line\n--b\n--b--\n",
	  false, "multipart/mixed {b}\n.text/html\n.text/plain\n.text/plain\n.text/plain" },
	{ "multipart header without its empty line",
	  "Content-Type: multipart/mixed; boundary=o\n\n"
	  "--o\nContent-Type: multipart/alternative; boundary=i\n"
	  "--i\nContent-Type: text/plain\n\nx\n--i--\n--o--\n", false,
	  "multipart/mixed {o}\n.multipart/alternative {i}\n..text/plain" },
	{ "case, comments and folding",
	  "CONTENT-TYPE: Multipart/Mixed (a comment);\n BOUNDARY=\"b\" (another)\n"
	  "content-transfer-encoding: 7bit\n\n"
	  "--b\nContent-Type: TEXT/HTML;\n\tcharset=\"utf-8\"\n"
	  "Content-Transfer-Encoding: Quoted-Printable (qp)\n"
	  "Content-Disposition: INLINE\n\nx\n--b\n"
	  "Content-Type : application/pdf\nContent-Transfer-Encoding:BASE64\n"
	  "Content-Disposition: Attachment\n\nx\n--b--\n", false,
	  "multipart/mixed {b}\n.text/html qp inl\n.application/pdf b64 att A" },
	{ "first of repeated fields counts",
	  "Content-Type: text/plain\nContent-Type: multipart/mixed; boundary=b\n\n--b\n\nx\n--b--\n",
	  false, "text/plain" },
	{ "invalid Content-Type is text/plain, parameters kept",
	  "Content-Type: multipart/mixed; boundary=b\n\n--b\n"
	  "Content-Type: garbage; name=\"g.txt\"\n\nx\n--b\nContent-Type: text/\n\ny\n--b--\n",
	  false, "multipart/mixed {b}\n.text/plain f=[g.txt] A\n.text/plain" },
	{ "inline with a file name, unknown disposition",
	  "Content-Type: multipart/mixed; boundary=b\n\n--b\n"
	  "Content-Disposition: inline; filename=a.txt\n\nx\n--b\n"
	  "Content-Disposition: form-data; name=field\n\ny\n--b\n"
	  "Content-Disposition: inline\n\nz\n--b--\n", false,
	  "multipart/mixed {b}\n.text/plain inl f=[a.txt] A\n.text/plain\n.text/plain inl" },
	{ "empty multipart",
	  "Content-Type: multipart/mixed; boundary=b\n\n--b--\n", false, "multipart/mixed {b}" },
	{ "delimiter at the end without line end",
	  "Content-Type: multipart/mixed; boundary=b\n\n--b\n\nx\n--b", false,
	  "multipart/mixed {b}\n.text/plain\n.text/plain" },
};

static void
test_tree_case(const struct tree_case *c)
{
	struct mime_tree whole, chunked;
	struct tm_err err;
	size_t len;
	char *msg = c->lf ? xstrdup(c->msg) : crlf(c->msg, &len);
	char *got;
	const char *why;

	len = strlen(msg);
	tap_is_int(parse_mem(msg, len, 0, &whole, &err), 0, "%s: parses", c->name);
	got = render(&whole);
	tap_is_str(got, c->want, "%s: structure", c->name);
	why = offsets_wrong(&whole, msg, (long long)len);
	tap_is_str(why, NULL, "%s: offsets fit the bytes", c->name);
	tap_is_int(parse_mem(msg, len, 3, &chunked, &err), 0, "%s: parses in 1-3 byte reads", c->name);
	tap_ok(tree_same(&whole, &chunked), "%s: small reads give the same tree", c->name);
	tap_ok(removals_ok(&whole, msg, len, c->name), "%s: each part can be cut out", c->name);
	free(got);
	mime_tree_free(&whole);
	mime_tree_free(&chunked);
	free(msg);
}

/* The offsets of MIXED, one by one, from where the text sits. */
static void
test_exact_offsets(void)
{
	size_t len;
	char *msg = crlf(MIXED, &len);
	long long d1 = strstr(msg, "--XYZ\r\nContent-Type: text/plain") - msg;
	long long d2 = strstr(msg, "--XYZ\r\nContent-Type: application") - msg;
	long long close = strstr(msg, "--XYZ--") - msg;
	long long hello = strstr(msg, "Hello") - msg, pdf = strstr(msg, "JVBER") - msg;
	struct mime_tree t;
	struct tm_err err;
	const struct mime_part *p;

	parse_mem(msg, len, 0, &t, &err);
	tap_is_int((long)t.count, 3, "offsets: three parts");
	p = &t.parts[0];
	tap_ok(p->delim_start == -1 && p->header_start == 0 && p->body_start == d1 &&
	    p->body_end == (long long)len && p->next_delim == (long long)len, "offsets: parts[0]");
	p = &t.parts[1];
	tap_ok(p->parent == 0 && p->delim_start == d1 && p->header_start == d1 + 7 &&
	    p->body_start == hello && p->body_end == hello + 5 && p->next_delim == d2,
	    "offsets: text part");
	p = &t.parts[2];
	tap_ok(p->parent == 0 && p->delim_start == d2 && p->header_start == d2 + 7 &&
	    p->body_start == pdf && p->body_end == pdf + 12 && p->next_delim == close,
	    "offsets: attachment");
	mime_tree_free(&t);
	free(msg);
}

/* Cutting the attachment out of MIXED leaves exactly this. */
static void
test_cut_exact(void)
{
	size_t len;
	char *msg = crlf(MIXED, &len), *want, *got;
	struct mime_tree t;
	struct tm_err err;
	const struct mime_part *p;
	struct strbuf b;

	parse_mem(msg, len, 0, &t, &err);
	p = &t.parts[2];
	strbuf_init(&b, (size_t)-1);
	strbuf_append(&b, msg, (size_t)p->delim_start);
	strbuf_append(&b, msg + p->next_delim, len - (size_t)p->next_delim);
	got = strbuf_take(&b);
	want = crlf("From: a@example.com\nTo: b@example.com\nSubject: t\nMIME-Version: 1.0\n"
	    "Content-Type: multipart/mixed; boundary=\"XYZ\"\n\n"
	    "--XYZ\nContent-Type: text/plain; charset=utf-8\n\nHello\n--XYZ--\n", &len);
	tap_is_str(got, want, "cut: the attachment's bytes are gone, the rest intact");
	free(got);
	free(want);
	mime_tree_free(&t);
	free(msg);
}

/* ---- generated messages ------------------------------------------------ */

/*
 * Damaged copies of the table's messages (bytes changed, deleted, or MIME
 * syntax inserted, from a fixed seed): the parse must not fail, offsets
 * must still fit the bytes and small reads must give the same tree.
 */
static void
test_mutations(void)
{
	static const char *const bits[] = {
		"--", "\r\n", "\n", "=", "=?utf-8?B?", "?=", "*0*=", "'", "%", "\"", "(",
		")", ";", "boundary=", "multipart/mixed", "\\", "\r", " ", "--XYZ", "--b",
	};
	unsigned long seed = 12345;
	size_t i, bad = 0, tries = 0;
	int k, j;

	for (i = 0; i < sizeof(tree_cases) / sizeof(tree_cases[0]); i++)
		for (k = 0; k < 40; k++, tries++) {
			struct strbuf m;
			struct mime_tree t, c;
			struct tm_err err;
			size_t len;
			char *msg = crlf(tree_cases[i].msg, &len);

			strbuf_init(&m, (size_t)-1);
			strbuf_append(&m, msg, len);
			for (j = 0; j < 1 + k % 6; j++) {
				size_t pos, n;

				seed = seed * 6364136223846793005UL + 1442695040888963407UL;
				pos = m.len ? (seed >> 33) % m.len : 0;
				n = m.len - pos;
				if ((seed >> 20) % 3 == 0) {
					const char *ins = bits[(seed >> 8) % (sizeof(bits) / sizeof(bits[0]))];
					char *rest = xmalloc(n + 1);

					memcpy(rest, m.data + pos, n);
					m.len = pos;
					strbuf_append_str(&m, ins);
					strbuf_append(&m, rest, n);
					free(rest);
				} else if ((seed >> 20) % 3 == 1 && n > 0) {
					size_t del = 1 + (seed >> 12) % 20;

					del = del > n ? n : del;
					memmove(m.data + pos, m.data + pos + del, n - del + 1);
					m.len -= del;
				} else if (n > 0)
					m.data[pos] = (char)(seed >> 40);
			}
			if (parse_mem(m.data, m.len, 0, &t, &err) != 0 ||
			    offsets_wrong(&t, m.data, (long long)m.len) != NULL ||
			    parse_mem(m.data, m.len, 3, &c, &err) != 0 || !tree_same(&t, &c) ||
			    !removals_ok(&t, m.data, m.len, "mutation")) {
				printf("# %s, mutation %d\n", tree_cases[i].name, k);
				bad++;
			}
			mime_tree_free(&t);
			mime_tree_free(&c);
			strbuf_free(&m);
			free(msg);
		}
	tap_ok(bad == 0, "%zu damaged messages: offsets fit, small reads agree", tries);
}

/* Nested deeper than MIME_DEPTH_MAX: the deepest part is an opaque leaf. */
static void
test_depth(void)
{
	struct strbuf m, w;
	struct mime_tree t;
	struct tm_err err;
	char *want, *got;
	int d, levels = MIME_DEPTH_MAX + 8;

	strbuf_init(&m, (size_t)-1);
	strbuf_init(&w, (size_t)-1);
	for (d = 0; d < levels; d++) {
		strbuf_appendf(&m, "Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n", d, d);
		if (d <= MIME_DEPTH_MAX)
			strbuf_appendf(&w, "%s%.*smultipart/mixed", d ? "\n" : "", d,
			    "........................................");
		if (d < MIME_DEPTH_MAX)
			strbuf_appendf(&w, " {b%d}", d);
	}
	strbuf_append_str(&m, "Content-Type: text/plain\r\n\r\ndeep\r\n");
	for (d = levels; d-- > 0;)
		strbuf_appendf(&m, "--b%d--\r\n", d);
	want = strbuf_take(&w);
	tap_is_int(parse_mem(m.data, m.len, 0, &t, &err), 0, "depth: parses");
	got = render(&t);
	tap_is_str(got, want, "depth: beyond MIME_DEPTH_MAX an opaque leaf");
	tap_is_str(offsets_wrong(&t, m.data, (long long)m.len), NULL, "depth: offsets fit");
	tap_ok(t.count == MIME_DEPTH_MAX + 1 &&
	    strstr(m.data + t.parts[MIME_DEPTH_MAX].next_delim, "--b31--") ==
	    m.data + t.parts[MIME_DEPTH_MAX].next_delim, "depth: the leaf ends at its parent's close");
	tap_ok(removals_ok(&t, m.data, m.len, "depth"), "depth: each part can be cut out");
	free(got);
	free(want);
	mime_tree_free(&t);
	strbuf_free(&m);
}

/* More than MIME_PARTS_MAX parts: the rest is not recorded, offsets hold. */
static void
test_parts_max(void)
{
	struct strbuf m;
	struct mime_tree t, c;
	struct tm_err err;
	const struct mime_part *last;
	int i;

	strbuf_init(&m, (size_t)-1);
	strbuf_append_str(&m, "Content-Type: multipart/mixed; boundary=b\r\n\r\n");
	for (i = 0; i < MIME_PARTS_MAX + 100; i++)
		strbuf_appendf(&m, "--b\r\nContent-Type: text/plain; name=p%d.txt\r\n\r\npart %d\r\n", i, i);
	strbuf_append_str(&m, "--b--\r\n");
	tap_is_int(parse_mem(m.data, m.len, 0, &t, &err), 0, "parts max: parses");
	tap_is_int((long)t.count, MIME_PARTS_MAX, "parts max: MIME_PARTS_MAX parts kept");
	tap_is_str(offsets_wrong(&t, m.data, (long long)m.len), NULL, "parts max: offsets fit");
	last = &t.parts[t.count - 1];
	tap_ok(strncmp(m.data + last->body_start, "part 998\r\n--b\r\n", 15) == 0 &&
	    last->body_end == last->body_start + 8 && last->next_delim == last->body_end + 2,
	    "parts max: the last part kept ends at the next delimiter");
	tap_ok(t.parts[0].body_end == (long long)m.len, "parts max: the top ends at the end");
	tap_is_int(parse_mem(m.data, m.len, 3, &c, &err), 0, "parts max: parses in small reads");
	tap_ok(tree_same(&t, &c), "parts max: same tree in small reads");
	mime_tree_free(&t);
	mime_tree_free(&c);
	strbuf_free(&m);
}

/* Lines longer than the 64 KiB window, in bodies and headers, with the CR
   of the line end at every position around the window's edge. */
static void
test_long_lines(void)
{
	size_t n;
	bool ok = true, same = true;

	for (n = 65530; n <= 65542 && ok; n++) {
		struct strbuf m;
		struct mime_tree t, c;
		struct tm_err err;
		const struct mime_part *p;
		size_t i;

		strbuf_init(&m, (size_t)-1);
		strbuf_append_str(&m, "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
		    "Content-Type: application/octet-stream; x=\"");
		for (i = 0; i < n; i++)
			strbuf_append(&m, "x", 1);
		strbuf_append_str(&m, "\"\r\n\r\n");
		for (i = 0; i < n; i++)
			strbuf_append(&m, "y", 1);
		strbuf_append_str(&m, "\r\n--b\r\nContent-Type: text/html\r\n\r\nz\r\n--b--\r\n");
		ok = parse_mem(m.data, m.len, 0, &t, &err) == 0 && t.count == 3;
		p = &t.parts[1];
		ok = ok && offsets_wrong(&t, m.data, (long long)m.len) == NULL &&
		    strcmp(p->type, "application/octet-stream") == 0 &&
		    p->body_end - p->body_start == (long long)n &&
		    strcmp(t.parts[2].type, "text/html") == 0;
		same = same && parse_mem(m.data, m.len, 3, &c, &err) == 0 && tree_same(&t, &c);
		if (!ok)
			printf("# failed with lines of %zu\n", n);
		mime_tree_free(&t);
		mime_tree_free(&c);
		strbuf_free(&m);
	}
	tap_ok(ok, "long lines: header and body lines over 64 KiB");
	tap_ok(same, "long lines: same tree in small reads");
}

/* A 40 MB message made on the fly, never held in memory: parsing and
   decoding it must not grow the process by anything like its size. */
#define GEN_LINE "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB\r\n"

struct gen {
	const char *head, *tail;
	long long hlen, tlen, nlines, size;
};

static long
gen_read(void *ctx, long long off, char *buf, size_t n)
{
	const struct gen *g = ctx;
	long long body = g->nlines * 78;
	size_t i;

	for (i = 0; i < n && off < g->size; i++, off++) {
		if (off < g->hlen)
			buf[i] = g->head[off];
		else if (off < g->hlen + body)
			buf[i] = GEN_LINE[(off - g->hlen) % 78];
		else
			buf[i] = g->tail[off - g->hlen - body];
	}
	return (long)i;
}

static long
max_rss_kb(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

static void
test_big(void)
{
	struct gen g = {
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n"
		"hi\r\n--b\r\nContent-Type: application/octet-stream; name=big.bin\r\n"
		"Content-Transfer-Encoding: base64\r\n\r\n",
		"--b--\r\n", 0, 0, 40 * 1000 * 1000 / 78, 0
	};
	struct mime_reader r = { &g, gen_read, 0 };
	struct mime_tree t;
	struct tm_err err;
	long long size = 0;
	long before = max_rss_kb();

	g.hlen = (long long)strlen(g.head);
	g.tlen = (long long)strlen(g.tail);
	g.size = r.size = g.hlen + g.nlines * 78 + g.tlen;
	tap_is_int(mime_parse(&r, &t, &err), 0, "big: a 40 MB message parses");
	tap_ok(t.count == 3 && t.parts[2].body_end == g.hlen + g.nlines * 78 - 2 &&
	    t.parts[2].next_delim == g.hlen + g.nlines * 78, "big: the attachment's range");
	tap_is_int(mime_part_decoded_size(&r, &t.parts[2], &size, &err), 0, "big: decodes");
	tap_ok(size == g.nlines * 57, "big: decoded size %lld", size);
	tap_ok(max_rss_kb() - before < 16 * 1024, "big: memory stays flat (%ld KiB more)",
	    max_rss_kb() - before);
	mime_tree_free(&t);
}

/* ---- file names and Content-ID ----------------------------------------- */

struct name_case {
	const char *header;	/* the part's header fields, LF line ends */
	const char *want;	/* its filename, or NULL */
};

static const struct name_case name_cases[] = {
	{ "Content-Type: application/pdf; name=\"report.pdf\"", "report.pdf" },
	{ "Content-Disposition: attachment; filename=\"a.pdf\"\n"
	  "Content-Type: application/pdf; name=\"b.pdf\"", "a.pdf" },
	{ "Content-Disposition: attachment\nContent-Type: application/pdf; name=b.pdf", "b.pdf" },
	{ "Content-Disposition: attachment; filename*=UTF-8''%E2%82%AC.txt", "\xe2\x82\xac.txt" },
	{ "Content-Disposition: attachment; filename*=utf-8'en'%e2%82%ac%20rate.txt",
	  "\xe2\x82\xac rate.txt" },
	{ "Content-Disposition: attachment;\n filename*0*=UTF-8''%E2%82%AC;\n"
	  " filename*1=\" and more\";\n filename*2*=%2Etxt", "\xe2\x82\xac and more.txt" },
	{ "Content-Disposition: attachment; filename*1=\"b.txt\"; filename*0=\"a\"", "ab.txt" },
	{ "Content-Disposition: attachment; filename*0=\"a\"; filename*2=\"c\"", "a" },
	{ "Content-Disposition: attachment; filename*=iso-8859-1''caf%E9.txt", "caf\xc3\xa9.txt" },
	{ "Content-Disposition: attachment; filename*0*=ISO-8859-1'fr'%E9t%E9;\n"
	  "\tfilename*1*=%2Etxt", "\xc3\xa9t\xc3\xa9.txt" },
	{ "Content-Disposition: attachment; filename=\"plain.txt\"; filename*=UTF-8''ext.txt",
	  "ext.txt" },
	{ "Content-Disposition: attachment; filename*=koi8-r''%E2%82%AC", "\xe2\x82\xac" },
	{ "Content-Disposition: attachment; filename*=koi8-r''%C1%C2.txt", "??.txt" },
	{ "Content-Disposition: attachment; filename*=utf-8''a%FFb%", "a?b%" },
	{ "Content-Disposition: attachment; filename*=''a%20b", "a b" },
	{ "Content-Disposition: attachment; filename*=a%20b", "a b" },
	{ "Content-Type: text/plain; name=\"=?UTF-8?B?4oKsLnR4dA==?=\"", "\xe2\x82\xac.txt" },
	{ "Content-Disposition: attachment;\n filename=\"=?iso-8859-1?Q?caf=E9_au_lait.txt?=\"",
	  "caf\xc3\xa9 au lait.txt" },
	{ "Content-Disposition: attachment; filename=\"=?utf-8?Q?a?= =?utf-8?Q?b?=.txt\"",
	  "ab.txt" },
	{ "Content-Disposition: attachment; filename=\"=?UTF-8?B?4oI=?=\n =?UTF-8?B?rA==?=\"",
	  "\xe2\x82\xac" },
	{ "Content-Disposition: attachment; filename=\"=?utf-8?q?a?= b.txt\"", "a b.txt" },
	{ "Content-Disposition: attachment; filename=\"x =?utf-8?q?a?=\"", "x a" },
	{ "Content-Disposition: attachment; filename=\"=?koi8-r?B?4oKs?=\"", "=?koi8-r?B?4oKs?=" },
	{ "Content-Disposition: attachment; filename=\"=?utf-8*en?q?x=2Ey?=\"", "x.y" },
	{ "Content-Disposition: attachment; filename=\"=?us-ascii?q?x?=\"", "x" },
	{ "Content-Disposition: attachment; filename=\"=?utf-8?x?x?=\"", "=?utf-8?x?x?=" },
	{ "Content-Type: text/plain; name==?utf-8?q?r=C3=A9sum=C3=A9.txt?=", "r\xc3\xa9sum\xc3\xa9.txt" },
	{ "Content-Disposition: attachment; filename=\"a\tb.txt\"", "ab.txt" },
	{ "Content-Disposition: attachment; filename*=UTF-8''a%0D%0Ab%C2%85c%7F", "abc" },
	{ "Content-Disposition: attachment; filename=\"\"", NULL },
	{ "Content-Disposition: attachment; name=\"x\"", NULL },
	{ "Content-Disposition: attachment; filename=my file.pdf", "my file.pdf" },
	{ "Content-Disposition: attachment (x); filename=\"a.pdf\" (comment)", "a.pdf" },
	{ "Content-Disposition: attachment; filename=a.pdf (comment) ; size=3", "a.pdf" },
	{ "Content-Disposition: attachment; filename=\"a\\\"b;c.txt\"", "a\"b;c.txt" },
	{ "Content-Disposition: attachment; FILENAME=\"X.PDF\"", "X.PDF" },
	{ "Content-Disposition: attachment; junk; filename=\"ok.txt\"", "ok.txt" },
	{ "Content-Disposition: attachment; filename=caf\xc3\xa9.txt", "caf\xc3\xa9.txt" },
	{ "Content-Disposition: attachment; filename=caf\xe9.txt", "caf?.txt" },
	{ "Content-Disposition: attachment; filename*0=\"a\"; filename*0=\"b\"", "a" },
	{ "Content-Disposition: attachment; filename*00x=\"a\"; filename=\"b\"", "b" },
};

/* The filename of the one part of a multipart/mixed with that header. */
static char *
filename_of(const char *header, const char **cid, struct mime_tree *t)
{
	struct strbuf m;
	struct tm_err err;
	char *msg;
	size_t len;

	strbuf_init(&m, (size_t)-1);
	strbuf_appendf(&m, "Content-Type: multipart/mixed; boundary=b\n\n--b\n%s\n\nx\n--b--\n",
	    header);
	msg = crlf(m.data, &len);
	strbuf_free(&m);
	if (parse_mem(msg, len, 0, t, &err) == -1 || t->count != 2) {
		free(msg);
		return xstrdup("(parse failed)");
	}
	free(msg);
	*cid = t->parts[1].content_id;
	return t->parts[1].filename != NULL ? xstrdup(t->parts[1].filename) : NULL;
}

static void
test_names(void)
{
	struct mime_tree t;
	struct strbuf h;
	const char *cid;
	char *got, *want;
	size_t i;

	for (i = 0; i < sizeof(name_cases) / sizeof(name_cases[0]); i++) {
		got = filename_of(name_cases[i].header, &cid, &t);
		tap_is_str(got, name_cases[i].want, "filename: %s", shown(name_cases[i].header));
		free(got);
		mime_tree_free(&t);
	}
	/* 300 two-byte characters: cut at 254 bytes, not inside a character. */
	strbuf_init(&h, (size_t)-1);
	strbuf_append_str(&h, "Content-Disposition: attachment; filename*=utf-8''");
	for (i = 0; i < 300; i++)
		strbuf_append_str(&h, "%C3%A9");
	got = filename_of(h.data, &cid, &t);
	want = xmalloc(255);
	for (i = 0; i < 254; i += 2)
		memcpy(want + i, "\xc3\xa9", 2);
	want[254] = '\0';
	tap_is_str(got, want, "filename: capped at 255 bytes on a character boundary");
	free(got);
	free(want);
	mime_tree_free(&t);
	strbuf_free(&h);
	got = filename_of("Content-ID: <a@b>", &cid, &t);
	tap_is_str(cid, "a@b", "content-id: brackets removed");
	free(got);
	mime_tree_free(&t);
	got = filename_of("Content-ID: bare@id (comment)", &cid, &t);
	tap_is_str(cid, "bare@id", "content-id: without brackets");
	free(got);
	mime_tree_free(&t);
	got = filename_of("Content-ID: <>", &cid, &t);
	tap_is_str(cid, NULL, "content-id: empty is NULL");
	free(got);
	mime_tree_free(&t);
}

static void
test_is_attachment(void)
{
	size_t len;
	char *msg = crlf(MIXED, &len);
	struct mime_tree t;
	struct tm_err err;

	parse_mem(msg, len, 0, &t, &err);
	tap_ok(!mime_part_is_attachment(&t, 0), "is_attachment: never parts[0]");
	tap_ok(!mime_part_is_attachment(&t, 99), "is_attachment: index out of range");
	tap_ok(mime_part_is_attachment(&t, 2), "is_attachment: the pdf");
	mime_tree_free(&t);
	free(msg);
	msg = crlf("Content-Type: application/pdf; name=x.pdf\n"
	    "Content-Disposition: attachment\n\nx\n", &len);
	parse_mem(msg, len, 0, &t, &err);
	tap_ok(!mime_part_is_attachment(&t, 0), "is_attachment: a single-part attachment is not");
	mime_tree_free(&t);
	free(msg);
}

/* ---- decoders ----------------------------------------------------------- */

struct decode_case {
	const char *encoding;	/* Content-Transfer-Encoding */
	const char *body;	/* raw, exactly */
	const char *want;
	size_t want_len;	/* 0: strlen(want) */
};

static const struct decode_case decode_cases[] = {
	{ "base64", "SGVsbG8sIHdvcmxkIQ==", "Hello, world!", 0 },
	{ "base64", "SGVs\r\nbG8s*IHdv\r\n cmxk!IQ==\r\nignored", "Hello, world!", 0 },
	{ "base64", "SGk", "Hi", 0 },
	{ "base64", "SGk=\r\nSGk=", "Hi", 0 },
	{ "BASE64", "AAEC/w==\r\n", "\0\1\2\xff", 4 },
	{ "base64", "", "", 0 },
	{ "base64", "S", "", 0 },
	{ "quoted-printable", "caf=E9 =\r\nau lait=3d=3D\r\nline2=\nx\r\n",
	  "caf\xe9 au lait==\r\nline2x\r\n", 0 },
	{ "quoted-printable", "a=ZZb=\rx=4", "a=ZZb=\rx=4", 0 },
	{ "quoted-printable", "=e9=E9=e", "\xe9\xe9=e", 0 },
	{ "quoted-printable", "=G1=1G==41", "=G1=1G=A", 0 },
	{ "quoted-printable", "soft at end=", "soft at end", 0 },
	{ "quoted-printable", "soft at end=\r", "soft at end", 0 },
	{ "quoted-printable", "=00=0D=0A", "\0\r\n", 3 },
	{ "7bit", "abc\r\n=41\r\n", "abc\r\n=41\r\n", 0 },
	{ "x-unknown", "SGk=", "SGk=", 0 },
};

/* Decode parts[0]'s body of msg through reads of chunk bytes, cap at a time. */
static char *
decode_all(const char *msg, size_t len, int chunk, size_t cap, size_t *out_len)
{
	struct memsrc m;
	struct mime_reader r;
	struct mime_tree t;
	struct mime_part_reader *pr = xmalloc(sizeof(*pr));
	struct tm_err err;
	struct strbuf b;
	char *buf = xmalloc(cap);
	long n;

	mem_init(&m, &r, msg, len, chunk);
	strbuf_init(&b, (size_t)-1);
	mime_parse(&r, &t, &err);
	mime_part_reader_init(pr, &r, &t.parts[0]);
	while ((n = mime_part_read(pr, buf, cap, &err)) > 0)
		strbuf_append(&b, buf, (size_t)n);
	if (n < 0)
		strbuf_append_str(&b, "(read error)");
	*out_len = b.len;
	mime_tree_free(&t);
	free(pr);
	free(buf);
	return strbuf_take(&b);
}

static void
test_decode_case(const struct decode_case *c)
{
	static const size_t caps[] = { 4, 5, 7, 4096 };
	size_t want_len = c->want_len ? c->want_len : strlen(c->want), len, got_len, i;
	bool ok = true;
	struct strbuf m;
	struct mime_tree t;
	struct tm_err err;
	struct memsrc src;
	struct mime_reader r;
	long long size = -1;

	strbuf_init(&m, (size_t)-1);
	strbuf_appendf(&m, "Content-Transfer-Encoding: %s\r\n\r\n%s", c->encoding, c->body);
	len = m.len;
	for (i = 0; i < sizeof(caps) / sizeof(caps[0]) * 2; i++) {
		char *got = decode_all(m.data, len, i % 2 ? 3 : 0, caps[i / 2], &got_len);

		if (got_len != want_len || memcmp(got, c->want, want_len) != 0) {
			printf("# chunk %d cap %zu: got %zu bytes [%s]\n", i % 2 ? 3 : 0,
			    caps[i / 2], got_len, got);
			ok = false;
		}
		free(got);
	}
	tap_ok(ok, "decode %s: [%s]", c->encoding, shown(c->body));
	mem_init(&src, &r, m.data, len, 1);
	mime_parse(&r, &t, &err);
	mime_part_decoded_size(&r, &t.parts[0], &size, &err);
	tap_ok(size == (long long)want_len, "decoded size %s: [%s]", c->encoding,
	    shown(c->body));
	mime_tree_free(&t);
	strbuf_free(&m);
}

/* Every QP soft break and escape split at every read boundary. */
static void
test_qp_splits(void)
{
	static const char body[] = "ab=\r\ncd=3D=\nef=C3=A9=\r\n";
	static const char want[] = "abcd=ef\xc3\xa9";
	size_t len, got_len, cap;
	int chunk;
	bool ok = true;
	char *msg, *got;
	struct strbuf m;

	strbuf_init(&m, (size_t)-1);
	strbuf_appendf(&m, "Content-Transfer-Encoding: quoted-printable\r\n\r\n%s", body);
	msg = strbuf_take(&m);
	len = strlen(msg);
	for (chunk = 1; chunk <= 4; chunk++)
		for (cap = 4; cap <= 9; cap++) {
			got = decode_all(msg, len, chunk, cap, &got_len);
			ok = ok && got_len == strlen(want) && memcmp(got, want, got_len) == 0;
			free(got);
		}
	tap_ok(ok, "qp: soft breaks and escapes split across reads of 1-4 bytes");
	free(msg);
}

/* A QP attachment ending in a soft break just before the delimiter, and a
   base64 one: decoded from the tree of a multipart. */
static void
test_decode_in_multipart(void)
{
	size_t len;
	char *msg = crlf("Content-Type: multipart/mixed; boundary=b\n\n"
	    "--b\nContent-Transfer-Encoding: quoted-printable\nContent-Disposition: attachment\n\n"
	    "line one\nline=\n two=\n--b\nContent-Transfer-Encoding: base64\n"
	    "Content-Disposition: attachment\n\nSGVs\nbG8=\n--b--\n", &len);
	struct memsrc m;
	struct mime_reader r;
	struct mime_tree t;
	struct tm_err err;
	struct mime_part_reader pr;
	char buf[64];
	long n;
	long long size;

	mem_init(&m, &r, msg, len, 2);
	mime_parse(&r, &t, &err);
	mime_part_reader_init(&pr, &r, &t.parts[1]);
	n = mime_part_read(&pr, buf, sizeof(buf), &err);
	tap_ok(n == 18 && memcmp(buf, "line one\r\nline two", 18) == 0,
	    "multipart qp: CRLF kept, soft breaks joined, the delimiter's CRLF not decoded");
	tap_is_int(mime_part_read(&pr, buf, sizeof(buf), &err), 0, "multipart qp: then the end");
	tap_is_int(mime_part_read(&pr, buf, sizeof(buf), &err), 0, "multipart qp: and stays there");
	tap_ok(mime_part_decoded_size(&r, &t.parts[2], &size, &err) == 0 && size == 5,
	    "multipart base64: decoded size 5");
	tap_ok(mime_part_decoded_size(&r, &t.parts[0], &size, &err) == 0 &&
	    size == t.parts[0].body_end - t.parts[0].body_start,
	    "multipart: the top's body is copied as it is");
	mime_tree_free(&t);
	free(msg);
}

/* ---- errors --------------------------------------------------------------- */

static void
test_read_errors(void)
{
	size_t len;
	char *msg = crlf(MIXED, &len);
	struct memsrc m;
	struct mime_reader r;
	struct mime_tree t;
	struct tm_err err;
	struct mime_part_reader pr;
	char buf[16];
	long long size;

	mem_init(&m, &r, msg, len, 0);
	m.fail_at = 10;
	tm_err_clear(&err);
	tap_ok(mime_parse(&r, &t, &err) == -1 && err.exit == EX_IOERR && err.cls == TM_ERR_IO,
	    "read error at the start: -1 with EX_IOERR (%s)", err.msg);
	mime_tree_free(&t);
	mem_init(&m, &r, msg, len, 3);
	m.fail_at = (long long)len - 4;
	tap_ok(mime_parse(&r, &t, &err) == -1 && err.exit == EX_IOERR,
	    "read error near the end in small reads: -1 with EX_IOERR");
	mime_tree_free(&t);
	mem_init(&m, &r, msg, len, 0);
	r.size = (long long)len + 10;
	tap_ok(mime_parse(&r, &t, &err) == -1 && err.exit == EX_IOERR,
	    "a reader that ends before size: EX_IOERR (%s)", err.msg);
	mime_tree_free(&t);
	mem_init(&m, &r, msg, len, 0);
	mime_parse(&r, &t, &err);
	m.fail_at = t.parts[2].body_start + 2;
	tm_err_clear(&err);
	mime_part_reader_init(&pr, &r, &t.parts[2]);
	tap_ok(mime_part_read(&pr, buf, sizeof(buf), &err) == -1 && err.exit == EX_IOERR,
	    "mime_part_read: -1 with EX_IOERR");
	tap_ok(mime_part_decoded_size(&r, &t.parts[2], &size, &err) == -1 && err.exit == EX_IOERR,
	    "mime_part_decoded_size: -1 with EX_IOERR");
	mime_tree_free(&t);
	free(msg);
}

int
main(void)
{
	size_t i;

	for (i = 0; i < sizeof(tree_cases) / sizeof(tree_cases[0]); i++)
		test_tree_case(&tree_cases[i]);
	test_exact_offsets();
	test_cut_exact();
	test_mutations();
	test_depth();
	test_parts_max();
	test_long_lines();
	test_names();
	test_is_attachment();
	for (i = 0; i < sizeof(decode_cases) / sizeof(decode_cases[0]); i++)
		test_decode_case(&decode_cases[i]);
	test_qp_splits();
	test_decode_in_multipart();
	test_read_errors();
	test_big();
	return tap_done();
}
