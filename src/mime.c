/*
 * mime.c: the MIME structure of a message (RFC 2045, 2046): one pass over
 * it that finds every part's byte range, and the bookkeeping of the parts.
 * What a part's header fields say is read by mime_param.c, and its body is
 * decoded by mime_decode.c. Graph's draft path uses them to find large
 * attachments, cut them out of the message and upload them decoded.
 *
 * The parser makes one pass over the message through a 64 KiB window
 * (struct lines), so a 40 MB message costs the same memory as a 4 KB one;
 * a line longer than the window is seen by its first 64 KiB and skipped.
 * It keeps a stack of the open multiparts and checks every body line
 * against their boundaries, innermost first. A part that never closes thus
 * still ends at its parent's next delimiter, and at the end of input when
 * nothing follows: malformed mail that every mail reader accepts.
 *
 * Offsets follow RFC 2046 5.1.1 exactly: the CRLF before a delimiter line
 * belongs to the delimiter, so body_end stops before it, and the bytes
 * [delim_start, next_delim) of a part can be cut out of the message leaving
 * valid MIME without it. A delimiter is "--boundary" with optional "--"
 * (the close delimiter) and transport padding (SP, HTAB) only: a longer
 * boundary that starts with a shorter one is not mistaken for it.
 *
 * Leniencies, as mail readers have them (those in the fields' values are
 * mime_param.c's):
 *  - LF line ends count like CRLF (body_end then excludes the LF);
 *  - a part header ends at its empty line, at a delimiter line (the part
 *    has no body), or at the first line that is neither a field nor a
 *    continuation (the body starts there: Postfix and message.c do that);
 *  - the first of repeated fields counts;
 *  - text after a close delimiter (the epilogue) is ignored, even a
 *    delimiter line of the same boundary.
 * message/rfc822 parts stay leaves: what they hold belongs to the inner
 * message and cannot be uploaded separately from it.
 *
 * Limits: a multipart nested MIME_DEPTH_MAX deep is an opaque leaf; past
 * MIME_PARTS_MAX parts the rest are not recorded, but their delimiters
 * still end the recorded parts, so every offset stays exact; a field keeps
 * its first 64 KiB.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "mime.h"
#include "mime_priv.h"
#include "util.h"

#define MIME_WINDOW		(64 * 1024)	/* message bytes held at once */

/* ---- reading the message ------------------------------------------- */

/*
 * Up to n bytes at off into buf. A reader that stops short of r->size is
 * an error as much as -1 is: the offsets would point at bytes that do not
 * exist, and the draft would be cut wrong.
 */
long
mime_read_block(const struct mime_reader *r, long long off, char *buf,
    size_t n, struct tm_err *err)
{
	long got = r->read_at(r->ctx, off, buf, n);

	if (got < 0)
		return tm_err_set(err, TM_ERR_IO, EX_IOERR,
		    "cannot read the message at offset %lld", off);
	if (got == 0)
		return tm_err_set(err, TM_ERR_IO, EX_IOERR,
		    "the message ends at offset %lld, before its size %lld",
		    off, r->size);
	if ((size_t)got > n)
		return tm_err_set(err, TM_ERR_IO, EX_IOERR,
		    "the message reader gave %ld bytes for %zu at offset %lld",
		    got, n, off);
	return got;
}

/* One line of the message as the window shows it. */
struct line {
	long long start;	/* offset of its first byte */
	const char *p;		/* its content in the window, without line end */
	size_t n;		/* bytes at p */
	int eol;		/* 2 (CRLF), 1 (LF), 0 (end of input, or cut) */
	int prev_eol;		/* the line end of the line before it */
	bool cut;		/* longer than the window: p has its start only */
};

/* The window. buf[pos, len) is read but not returned yet. */
struct lines {
	const struct mime_reader *r;
	struct tm_err *err;
	char *buf;
	size_t len, pos;
	long long base;		/* offset of buf[0] */
	int prev_eol;		/* line end of the last line returned */
	bool skipping;		/* the last line was cut: its rest is unread */
	bool last_cr;		/* the last byte skipped was CR */
};

/* Read more into the window (which is not full): 1, 0 at the end, -1. */
static int
lines_fill(struct lines *lr)
{
	long long at = lr->base + (long long)lr->len;
	size_t want = MIME_WINDOW - lr->len;
	long got;

	if (at >= lr->r->size)
		return 0;
	if ((long long)want > lr->r->size - at)
		want = (size_t)(lr->r->size - at);
	got = mime_read_block(lr->r, at, lr->buf + lr->len, want, lr->err);
	if (got < 0)
		return -1;
	lr->len += (size_t)got;
	return 1;
}

/* Skip the rest of a cut line, noting its line end. */
static int
lines_skip(struct lines *lr)
{
	while (lr->skipping) {
		char *nl = memchr(lr->buf + lr->pos, '\n', lr->len - lr->pos);
		int rc;

		if (nl != NULL) {
			size_t i = (size_t)(nl - lr->buf);
			bool cr = i > lr->pos ? lr->buf[i - 1] == '\r' : lr->last_cr;

			lr->prev_eol = cr ? 2 : 1;
			lr->pos = i + 1;
			lr->skipping = false;
			break;
		}
		if (lr->len > lr->pos)
			lr->last_cr = lr->buf[lr->len - 1] == '\r';
		lr->base += (long long)lr->len;
		lr->len = lr->pos = 0;
		if ((rc = lines_fill(lr)) == -1)
			return -1;
		if (rc == 0) {
			lr->prev_eol = 0;
			lr->skipping = false;
		}
	}
	return 0;
}

/* Return the n bytes at pos as a line; nl: a '\n' follows them. */
static int
lines_take(struct lines *lr, struct line *ln, size_t n, bool nl)
{
	ln->start = lr->base + (long long)lr->pos;
	ln->p = lr->buf + lr->pos;
	ln->cut = false;
	ln->eol = nl ? 1 : 0;
	ln->prev_eol = lr->prev_eol;
	lr->pos += n + (nl ? 1 : 0);
	if (nl && n > 0 && ln->p[n - 1] == '\r') {
		n--;
		ln->eol = 2;
	}
	ln->n = n;
	lr->prev_eol = ln->eol;
	return 1;
}

/* Return the full window as the start of a line too long for it. */
static int
lines_cut(struct lines *lr, struct line *ln)
{
	ln->start = lr->base;
	ln->p = lr->buf;
	ln->n = lr->len;
	ln->eol = 0;
	ln->prev_eol = lr->prev_eol;
	ln->cut = true;
	lr->last_cr = lr->buf[lr->len - 1] == '\r';
	lr->skipping = true;
	lr->pos = lr->len;
	return 1;
}

/*
 * The next line: 1, 0 at the end of the message, -1 on a read error.
 * ln->p stays valid until the next call.
 */
static int
lines_next(struct lines *lr, struct line *ln)
{
	size_t scan;
	int rc;

	if (lines_skip(lr) == -1)
		return -1;
	scan = lr->pos;
	for (;;) {
		char *nl = memchr(lr->buf + scan, '\n', lr->len - scan);

		if (nl != NULL)
			return lines_take(lr, ln, (size_t)(nl - lr->buf) - lr->pos, true);
		scan = lr->len;
		if (lr->pos > 0) {
			/* Keep the partial line only, to make room. */
			memmove(lr->buf, lr->buf + lr->pos, lr->len - lr->pos);
			lr->base += (long long)lr->pos;
			lr->len -= lr->pos;
			scan -= lr->pos;
			lr->pos = 0;
		}
		if (lr->len == MIME_WINDOW)
			return lines_cut(lr, ln);
		if ((rc = lines_fill(lr)) == -1)
			return -1;
		if (rc == 0)
			return lr->pos == lr->len ? 0 :
			    lines_take(lr, ln, lr->len - lr->pos, false);
	}
}

/* ---- the fields of a part's header ---------------------------------- */

enum field { F_TYPE, F_ENCODING, F_DISPOSITION, F_ID, F_COUNT };

static const char *const field_names[F_COUNT] = {
	"content-type", "content-transfer-encoding", "content-disposition",
	"content-id"
};

/* ---- the parser ------------------------------------------------------ */

/* An open multipart. */
struct frame {
	size_t part;		/* its index */
	size_t blen;		/* strlen of its boundary */
	bool epilogue;		/* its close delimiter has been seen */
};

struct parser {
	const struct mime_reader *r;
	struct mime_tree *t;
	size_t cap;			/* parts allocated */
	struct lines lr;
	struct line pending;		/* a line read ahead, given again */
	bool has_pending;
	struct frame stack[MIME_DEPTH_MAX];
	size_t nstack;
	long leaf;			/* the open leaf part, or -1 */
	struct strbuf field[F_COUNT];	/* this header's fields, unfolded */
	bool seen[F_COUNT];
	struct tm_err *err;
};

static int
next_line(struct parser *ps, struct line *ln)
{
	if (ps->has_pending) {
		*ln = ps->pending;
		ps->has_pending = false;
		return 1;
	}
	return lines_next(&ps->lr, ln);
}

/* Append a new part starting at header; returns its index. */
static size_t
new_part(struct parser *ps, int parent, long long delim, long long header)
{
	struct mime_tree *t = ps->t;
	struct mime_part *p;
	bool digest;

	if (t->count == ps->cap) {
		ps->cap = ps->cap ? ps->cap * 2 : 16;
		if (ps->cap > MIME_PARTS_MAX)
			ps->cap = MIME_PARTS_MAX;
		t->parts = xreallocarray(t->parts, ps->cap, sizeof(*t->parts));
	}
	p = &t->parts[t->count];
	memset(p, 0, sizeof(*p));
	p->parent = parent;
	p->depth = parent < 0 ? 0 : t->parts[parent].depth + 1;
	p->delim_start = delim;
	p->header_start = p->body_start = p->body_end = p->next_delim = header;
	/* RFC 2046 5.1.5: a digest's parts are messages unless they say so. */
	digest = parent >= 0 && strcmp(t->parts[parent].type, "multipart/digest") == 0;
	(void)str_copy(p->type, sizeof(p->type),
	    digest ? "message/rfc822" : "text/plain");
	p->encoding = MIME_ENC_IDENTITY;
	return t->count++;
}

/* Whether rest of a line after "--boundary" makes it a delimiter. */
static bool
delim_rest(const char *s, size_t n, bool *close)
{
	size_t i = 0;

	*close = n >= 2 && s[0] == '-' && s[1] == '-';
	if (*close)
		i = 2;
	for (; i < n; i++)
		if (!is_wsp(s[i]) && s[i] != '\r')
			return false;
	return true;
}

/* The stack level whose delimiter ln is, innermost first, or -1. */
static int
match_delim(const struct parser *ps, const struct line *ln, bool *close)
{
	size_t i;

	if (ln->cut || ln->n < 3 || ln->p[0] != '-' || ln->p[1] != '-')
		return -1;
	for (i = ps->nstack; i-- > 0;) {
		const struct frame *f = &ps->stack[i];
		const char *b = ps->t->parts[f->part].boundary;

		if (f->epilogue || ln->n < 2 + f->blen ||
		    memcmp(ln->p + 2, b, f->blen) != 0)
			continue;
		if (delim_rest(ln->p + 2 + f->blen, ln->n - 2 - f->blen, close))
			return (int)i;
	}
	return -1;
}

/* Length of the field name in ln up to its ':' (the colon's index), or 0. */
static size_t
field_colon(const struct line *ln)
{
	const char *colon = memchr(ln->p, ':', ln->n);
	size_t i, n;

	if (colon == NULL)
		return 0;
	n = (size_t)(colon - ln->p);
	while (n > 0 && is_wsp(ln->p[n - 1]))	/* obs-optional */
		n--;
	if (n == 0)
		return 0;
	for (i = 0; i < n; i++)
		if ((unsigned char)ln->p[i] <= ' ' || (unsigned char)ln->p[i] >= 127)
			return 0;
	return (size_t)(colon - ln->p);
}

/* Which field of field_names ln starts (colon at its index), or -1. */
static int
field_index(const struct line *ln, size_t colon)
{
	size_t n = colon;
	int i;

	while (n > 0 && is_wsp(ln->p[n - 1]))
		n--;
	for (i = 0; i < F_COUNT; i++)
		if (token_is(ln->p, n, field_names[i]))
			return i;
	return -1;
}

/* Append to a field what still fits: a huge field keeps its start. */
static void
field_append(struct parser *ps, int f, const char *s, size_t n)
{
	struct strbuf *b = &ps->field[f];

	if (n > b->limit - b->len)
		n = b->limit - b->len;
	(void)strbuf_append(b, s, n);
}

/* Read one header line into the fields: 1 to go on, 0 at its end. */
static int
header_line(struct parser *ps, size_t idx, const struct line *ln, int *cur)
{
	struct mime_part *p = &ps->t->parts[idx];
	bool close;
	size_t colon;

	if (match_delim(ps, ln, &close) >= 0) {
		/* No body; the delimiter is the main loop's. */
		ps->pending = *ln;
		ps->has_pending = true;
		p->body_start = ln->start;
		return 0;
	}
	if (!ln->cut && ln->n == 0) {
		p->body_start = ln->start + ln->eol;
		return 0;
	}
	if (is_wsp(ln->p[0])) {
		if (*cur >= 0)
			field_append(ps, *cur, ln->p, ln->n);
		return 1;
	}
	if ((colon = field_colon(ln)) == 0) {
		/* The body starts here. Given again, the line is seen as a
		   delimiter of this very part if it is one. */
		ps->pending = *ln;
		ps->has_pending = true;
		p->body_start = ln->start;
		return 0;
	}
	*cur = field_index(ln, colon);
	if (*cur >= 0 && ps->seen[*cur])
		*cur = -1;
	if (*cur >= 0) {
		ps->seen[*cur] = true;
		field_append(ps, *cur, ln->p + colon + 1, ln->n - colon - 1);
	}
	return 1;
}

/* The text of field f in this header, or NULL if it had none. */
static const char *
field_text(const struct parser *ps, int f)
{
	if (!ps->seen[f])
		return NULL;
	return ps->field[f].data != NULL ? ps->field[f].data : "";
}

/* Turn the fields of this header into part idx's properties. */
static void
apply_fields(struct parser *ps, size_t idx)
{
	mime_apply_fields(&ps->t->parts[idx], field_text(ps, F_TYPE),
	    field_text(ps, F_ENCODING), field_text(ps, F_DISPOSITION),
	    field_text(ps, F_ID));
}

/* Read the header of part idx, which starts at the next line. */
static int
read_header(struct parser *ps, size_t idx)
{
	struct line ln;
	int cur = -1, rc, i;

	for (i = 0; i < F_COUNT; i++) {
		strbuf_reset(&ps->field[i]);
		ps->seen[i] = false;
	}
	for (;;) {
		if ((rc = next_line(ps, &ln)) == -1)
			return -1;
		if (rc == 0) {
			ps->t->parts[idx].body_start = ps->r->size;
			break;
		}
		if (header_line(ps, idx, &ln, &cur) == 0)
			break;
	}
	apply_fields(ps, idx);
	return 0;
}

/* Make part idx, whose header is read, the innermost open part. */
static void
open_part(struct parser *ps, size_t idx)
{
	struct mime_part *p = &ps->t->parts[idx];

	if (p->multipart && p->depth < MIME_DEPTH_MAX) {
		ps->stack[ps->nstack].part = idx;
		ps->stack[ps->nstack].blen = strlen(p->boundary);
		ps->stack[ps->nstack].epilogue = false;
		ps->nstack++;
		return;
	}
	/* Too deep: an opaque leaf, whose inner delimiters are plain text. */
	p->multipart = false;
	p->boundary[0] = '\0';
	ps->leaf = (long)idx;
}

/* End part p where a delimiter line starts at delim after a line end eol. */
static void
set_end(struct mime_part *p, long long delim, int eol)
{
	p->body_end = delim - eol > p->body_start ? delim - eol : p->body_start;
	p->next_delim = delim;
}

/* End the open leaf and every multipart deeper than stack level. */
static void
close_open(struct parser *ps, long level, long long delim, int eol)
{
	if (ps->leaf >= 0) {
		set_end(&ps->t->parts[ps->leaf], delim, eol);
		ps->leaf = -1;
	}
	while ((long)ps->nstack > level + 1) {
		ps->nstack--;
		set_end(&ps->t->parts[ps->stack[ps->nstack].part], delim, eol);
	}
}

/* A delimiter of stack level opens a part; past MIME_PARTS_MAX it is not
   recorded, but delimiters still close what is open, so offsets hold. */
static int
start_child(struct parser *ps, size_t level, const struct line *ln)
{
	long long header = ln->start + (long long)ln->n + ln->eol;
	size_t idx;

	if (ps->t->count >= MIME_PARTS_MAX)
		return 0;
	idx = new_part(ps, (int)ps->stack[level].part, ln->start, header);
	if (read_header(ps, idx) == -1)
		return -1;
	open_part(ps, idx);
	return 0;
}

/* The whole pass: top header, then every line checked for delimiters. */
static int
parse_lines(struct parser *ps)
{
	struct line ln;
	bool close;
	int level, rc;

	new_part(ps, -1, -1, 0);
	if (read_header(ps, 0) == -1)
		return -1;
	open_part(ps, 0);
	while ((rc = next_line(ps, &ln)) == 1) {
		if ((level = match_delim(ps, &ln, &close)) < 0)
			continue;
		close_open(ps, level, ln.start, ln.prev_eol);
		if (close)
			ps->stack[level].epilogue = true;
		else if (start_child(ps, (size_t)level, &ln) == -1)
			return -1;
	}
	if (rc == -1)
		return -1;
	close_open(ps, -1, ps->r->size, 0);
	return 0;
}

int
mime_parse(const struct mime_reader *r, struct mime_tree *out, struct tm_err *err)
{
	struct parser ps;
	int rc, i;

	out->parts = NULL;
	out->count = 0;
	if (r->size < 0)
		return tm_err_set(err, TM_ERR_INTERNAL, EX_SOFTWARE,
		    "mime: negative message size %lld", r->size);
	memset(&ps, 0, sizeof(ps));
	ps.r = r;
	ps.t = out;
	ps.leaf = -1;
	ps.err = err;
	ps.lr.r = r;
	ps.lr.err = err;
	ps.lr.buf = xmalloc(MIME_WINDOW);
	for (i = 0; i < F_COUNT; i++)
		strbuf_init(&ps.field[i], MIME_FIELD_MAX);
	rc = parse_lines(&ps);
	for (i = 0; i < F_COUNT; i++)
		strbuf_free(&ps.field[i]);
	free(ps.lr.buf);
	return rc;
}

void
mime_tree_free(struct mime_tree *t)
{
	size_t i;

	for (i = 0; i < t->count; i++) {
		free(t->parts[i].filename);
		free(t->parts[i].content_id);
	}
	free(t->parts);
	t->parts = NULL;
	t->count = 0;
}

bool
mime_part_is_attachment(const struct mime_tree *t, size_t index)
{
	const struct mime_part *p;
	int q;

	if (index == 0 || index >= t->count)
		return false;
	p = &t->parts[index];
	if (p->multipart || (!p->disposition_attachment && p->filename == NULL))
		return false;
	/* The parser does not descend into messages; this keeps the rule if
	   it ever does. */
	for (q = p->parent; q >= 0; q = t->parts[q].parent)
		if (strcmp(t->parts[q].type, "message/rfc822") == 0)
			return false;
	return true;
}
