/*
 * message.c: message intake. A push parser (struct parser) takes the input
 * in chunks of any size, splits it into lines (LF or CRLF), applies
 * sendmail's rules and collects the header fields. Every byte it keeps goes,
 * with CRLF line ends, to a sink: message_read() feeds it from a file
 * descriptor with a sink that writes the spool, message_parse_buffer() from
 * memory with a sink that discards. The parser holds at most one header
 * line, the field being collected and one output block, so memory does not
 * grow with the size of the body.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "message.h"
#include "message_priv.h"
#include "tm_limits.h"
#include "util.h"

/* Where the parser is in the message. */
enum parse_state {
	PS_START,	/* no header field yet */
	PS_HEADER,	/* in the header: a field is being collected */
	PS_BODY,	/* after the header */
	PS_DONE		/* a lone dot ended the message: the rest is read and dropped */
};

/* What happens to the bytes of the current line. */
enum line_mode {
	LM_BUFFER,	/* header phase: keep the line until it ends */
	LM_BODY,	/* body: stream the bytes straight to the output */
	LM_TOO_LONG,	/* over-long header line: only count it, for the error */
	LM_SKIP		/* over-long mbox "From " line: drop it */
};

/* What a header-phase line is. */
enum line_kind {
	LK_FIELD,	/* starts a field: name, optional WSP, ':' */
	LK_CONT,	/* starts with SP or HTAB */
	LK_EMPTY,
	LK_OTHER	/* none of these: the body starts here */
};

struct parser {
	const struct intake_params *p;
	struct message *m;
	struct tm_err *err;
	message_sink sink;		/* gets the spool bytes, one block at a time */
	void *ctx;
	long long max_size;
	enum parse_state state;
	enum line_mode mode;
	char line[TM_HEADER_LINE_MAX];	/* the current header-phase line */
	size_t len;			/* bytes in line */
	long long line_len;		/* octets of the current line so far */
	bool pending_cr;		/* a CR whose successor has not arrived */
	bool held_dot;			/* the body line so far is "." (no -i) */
	struct strbuf field;		/* raw lines of the field being collected */
	size_t name_len;		/* length of its name */
	long long header_bytes;		/* octets of header lines so far */
	long long offset;		/* octets given to the output so far */
	char *out;			/* output block: flushed to sink when full */
	size_t outlen;
};

/* The spool file behind message_read's sink. */
struct spool {
	int fd;
	long long written;
	struct tm_err *err;
	char dir[TM_PATH_MAX];
};

static int line_end(struct parser *ps);
static int body_byte(struct parser *ps, unsigned char c);

/* ---- fields ---------------------------------------------------------- */

static bool
is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

/*
 * The unfolded value of s[n] (the raw field after the colon): RFC 5322 3.2.2
 * unfolding removes the CRLFs only; a lone CR is data and stays.
 */
static char *
unfold(const char *s, size_t n)
{
	char *v = xmalloc(n + 1);
	size_t i, o = 0, start = 0;

	for (i = 0; i < n; i++) {
		if (s[i] == '\r' && i + 1 < n && s[i + 1] == '\n')
			i++;
		else
			v[o++] = s[i];
	}
	while (o > 0 && is_wsp(v[o - 1]))
		o--;
	while (start < o && is_wsp(v[start]))
		start++;
	memmove(v, v + start, o - start);
	v[o - start] = '\0';
	return v;
}

/* Turn the field collected in ps->field into a header_field of m. */
static void
field_finish(struct parser *ps)
{
	const char *raw = ps->field.data;
	const char *colon;
	struct header_field *f;

	/* Empty only when an error stopped the field before its first line. */
	if (ps->field.len == 0)
		return;
	colon = memchr(raw + ps->name_len, ':', ps->field.len - ps->name_len);
	f = message_field_push(ps->m);
	f->name = xstrndup(raw, ps->name_len);
	f->raw = xstrndup(raw, ps->field.len);
	f->value = unfold(colon + 1, ps->field.len - (size_t)(colon + 1 - raw));
	strbuf_reset(&ps->field);
}

/* ---- output ---------------------------------------------------------- */

static int
flush(struct parser *ps)
{
	size_t n = ps->outlen;

	ps->outlen = 0;
	if (n == 0)
		return 0;
	return ps->sink(ps->ctx, ps->out, n);
}

/* Queue n bytes for the sink, refusing to pass max_size. */
static int
emit(struct parser *ps, const char *data, size_t n)
{
	if (ps->offset > ps->max_size - (long long)n)
		return tm_err_set(ps->err, TM_ERR_DATA, EX_DATAERR,
		    "message is over the size limit of %lld octets", ps->max_size);
	ps->offset += (long long)n;
	while (n > 0) {
		size_t k = TM_IO_BLOCK - ps->outlen;

		if (k > n)
			k = n;
		memcpy(ps->out + ps->outlen, data, k);
		ps->outlen += k;
		data += k;
		n -= k;
		if (ps->outlen == TM_IO_BLOCK && flush(ps) < 0)
			return -1;
	}
	return 0;
}

static bool
has_high_bit(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if ((unsigned char)s[i] >= 0x80)
			return true;
	}
	return false;
}

/* Body bytes that were buffered as a header-phase line. */
static int
emit_body(struct parser *ps, const char *s, size_t n)
{
	if (has_high_bit(s, n))
		ps->m->eight_bit = true;
	return emit(ps, s, n);
}

/* ---- header phase ---------------------------------------------------- */

static enum line_kind
line_kind(const char *s, size_t n, size_t *name_len)
{
	size_t i = 0, j;

	if (n == 0)
		return LK_EMPTY;
	if (is_wsp(s[0]))
		return LK_CONT;
	/* RFC 5322 ftext: printable US-ASCII except ':' */
	while (i < n && s[i] > ' ' && s[i] < 127 && s[i] != ':')
		i++;
	/* obsolete syntax (4.5.8) allows WSP before the colon */
	for (j = i; j < n && is_wsp(s[j]); j++)
		continue;
	if (i == 0 || j == n || s[j] != ':')
		return LK_OTHER;
	*name_len = i;
	return LK_FIELD;
}

/* An mbox separator as the first line: sendmail and Postfix drop it. */
static bool
is_from_line(const struct parser *ps)
{
	return ps->m->lines == 0 && ps->len >= 5 && memcmp(ps->line, "From ", 5) == 0;
}

/* The header is over: the body starts at the current offset. */
static void
end_header(struct parser *ps)
{
	if (ps->state == PS_HEADER)
		field_finish(ps);
	ps->m->body_offset = ps->offset;
	ps->state = PS_BODY;
}

static void
end_message(struct parser *ps)
{
	if (ps->state != PS_BODY)
		end_header(ps);
	ps->state = PS_DONE;
}

static int
header_too_big(struct parser *ps)
{
	tm_err_set(ps->err, TM_ERR_DATA, EX_DATAERR,
	    "the header is over %d octets (line %zu)", TM_HEADER_BLOCK_MAX,
	    ps->m->lines + 1);
	tm_err_hint(ps->err, "is an empty line missing between the header and the body?");
	return -1;
}

static int
field_start(struct parser *ps, size_t name_len)
{
	if (ps->state == PS_HEADER)
		field_finish(ps);
	if (ps->m->nfields >= TM_HEADER_FIELDS_MAX)
		return tm_err_set(ps->err, TM_ERR_DATA, EX_DATAERR,
		    "the header has more than %d fields (line %zu)",
		    TM_HEADER_FIELDS_MAX, ps->m->lines + 1);
	ps->name_len = name_len;
	ps->state = PS_HEADER;
	ps->m->has_header = true;
	return 0;
}

/* Add the buffered line to the header: a new field or a continuation. */
static int
header_add(struct parser *ps, enum line_kind kind, size_t name_len)
{
	if (kind == LK_FIELD && field_start(ps, name_len) < 0)
		return -1;
	ps->header_bytes += (long long)ps->len + 2;
	if (ps->header_bytes > TM_HEADER_BLOCK_MAX ||
	    strbuf_append(&ps->field, ps->line, ps->len) < 0 ||
	    strbuf_append(&ps->field, "\r\n", 2) < 0)
		return header_too_big(ps);
	if (has_high_bit(ps->line, ps->len))
		ps->m->eight_bit = ps->m->utf8_header = true;
	if (emit(ps, ps->line, ps->len) < 0)
		return -1;
	return emit(ps, "\r\n", 2);
}

/* A complete line seen in the header phase. */
static int
header_line(struct parser *ps)
{
	size_t name_len = 0;
	enum line_kind kind = line_kind(ps->line, ps->len, &name_len);

	if (ps->p->dot_ends && ps->len == 1 && ps->line[0] == '.') {
		end_message(ps);
		return 0;
	}
	/* Noted, not refused here: the whole message must reach the spool,
	   so that the refusal (message_check_header) keeps all of it. */
	if ((kind == LK_FIELD || (kind == LK_CONT && ps->state == PS_HEADER)) &&
	    ps->m->lone_cr_line == 0 && memchr(ps->line, '\r', ps->len) != NULL)
		ps->m->lone_cr_line = ps->m->lines + 1;
	if (kind == LK_FIELD || (kind == LK_CONT && ps->state == PS_HEADER))
		return header_add(ps, kind, name_len);
	if (is_from_line(ps))
		return 0;
	if (kind == LK_EMPTY) {
		if (emit(ps, "\r\n", 2) < 0)
			return -1;
		end_header(ps);
		return 0;
	}
	/* Neither field nor continuation: it is the first body line. */
	end_header(ps);
	if (emit_body(ps, ps->line, ps->len) < 0)
		return -1;
	return emit(ps, "\r\n", 2);
}

/*
 * A header-phase line outgrew the buffer. A field or continuation is an
 * error once its length is known; anything else is body, where long lines
 * are allowed, so what was buffered is flushed and the line streams on.
 */
static int
line_overflow(struct parser *ps, unsigned char c)
{
	size_t name_len = 0;
	enum line_kind kind = line_kind(ps->line, ps->len, &name_len);

	if (kind == LK_FIELD || (kind == LK_CONT && ps->state == PS_HEADER)) {
		ps->mode = LM_TOO_LONG;
		return 0;
	}
	if (is_from_line(ps)) {
		ps->mode = LM_SKIP;
		return 0;
	}
	end_header(ps);
	ps->mode = LM_BODY;
	if (emit_body(ps, ps->line, ps->len) < 0)
		return -1;
	ps->len = 0;
	return body_byte(ps, c);
}

/* ---- lines ----------------------------------------------------------- */

static int
body_byte(struct parser *ps, unsigned char c)
{
	char b = (char)c;

	if (c >= 0x80)
		ps->m->eight_bit = true;
	if (ps->held_dot) {
		ps->held_dot = false;
		if (emit(ps, ".", 1) < 0)
			return -1;
	} else if (c == '.' && ps->line_len == 1 && ps->p->dot_ends) {
		/* Held back until the line end says whether it ends the message. */
		ps->held_dot = true;
		return 0;
	}
	return emit(ps, &b, 1);
}

static int
body_line_end(struct parser *ps)
{
	if (ps->held_dot) {
		ps->held_dot = false;
		end_message(ps);
		return 0;
	}
	if (ps->line_len > TM_HEADER_LINE_MAX)
		ps->m->long_lines = true;
	return emit(ps, "\r\n", 2);
}

/* One data byte of the current line (not CR-LF, not NUL). */
static int
line_byte(struct parser *ps, unsigned char c)
{
	ps->line_len++;
	switch (ps->mode) {
	case LM_BUFFER:
		if (ps->len < sizeof(ps->line)) {
			ps->line[ps->len++] = (char)c;
			return 0;
		}
		return line_overflow(ps, c);
	case LM_BODY:
		return body_byte(ps, c);
	case LM_TOO_LONG:
	case LM_SKIP:
		break;
	}
	return 0;
}

static int
line_end(struct parser *ps)
{
	int rc = 0;

	switch (ps->mode) {
	case LM_BUFFER:
		rc = header_line(ps);
		break;
	case LM_BODY:
		rc = body_line_end(ps);
		break;
	case LM_TOO_LONG:
		rc = tm_err_set(ps->err, TM_ERR_DATA, EX_DATAERR,
		    "header line %zu is %lld octets long; RFC 5322 allows %d",
		    ps->m->lines + 1, ps->line_len, TM_HEADER_LINE_MAX);
		tm_err_hint(ps->err,
		    "fold the field over several lines, each starting with a space");
		break;
	case LM_SKIP:
		break;
	}
	ps->m->lines++;
	ps->len = 0;
	ps->line_len = 0;
	ps->mode = ps->state == PS_BODY ? LM_BODY : LM_BUFFER;
	return rc;
}

/* One input byte: the line splitting. A CR is data unless an LF follows. */
static int
parser_byte(struct parser *ps, unsigned char c)
{
	if (ps->pending_cr) {
		ps->pending_cr = false;
		if (c == '\n')
			return line_end(ps);
		if (line_byte(ps, '\r') < 0)
			return -1;
	}
	if (c == '\r') {
		ps->pending_cr = true;
		return 0;
	}
	if (c == '\n')
		return line_end(ps);
	if (c == '\0')
		return tm_err_set(ps->err, TM_ERR_DATA, EX_DATAERR,
		    "message contains a NUL byte (line %zu)", ps->m->lines + 1);
	return line_byte(ps, c);
}

/* ---- parser ---------------------------------------------------------- */

static void
parser_init(struct parser *ps, const struct intake_params *p, struct message *m,
    struct tm_err *err, message_sink sink, void *ctx)
{
	memset(ps, 0, sizeof(*ps));
	ps->p = p;
	ps->m = m;
	ps->err = err;
	ps->sink = sink;
	ps->ctx = ctx;
	ps->max_size = p->max_size > 0 ? p->max_size : TM_MESSAGE_MAX;
	ps->state = PS_START;
	ps->mode = LM_BUFFER;
	strbuf_init(&ps->field, TM_HEADER_BLOCK_MAX);
	ps->out = xmalloc(TM_IO_BLOCK);
}

static void
parser_free(struct parser *ps)
{
	strbuf_free(&ps->field);
	free(ps->out);
	ps->out = NULL;
}

/*
 * Length of the run of plain body bytes at data: inside a body line (its
 * first byte, a possible lone dot, went through parser_byte), nothing
 * pending, up to the next CR, LF or NUL. 0 when the byte needs parser_byte.
 */
static size_t
plain_run(const struct parser *ps, const char *data, size_t n)
{
	size_t i = 0;

	if (ps->mode != LM_BODY || ps->line_len == 0 || ps->pending_cr || ps->held_dot)
		return 0;
	while (i < n && data[i] != '\r' && data[i] != '\n' && data[i] != '\0')
		i++;
	return i;
}

/* Feed n bytes; after a lone dot (ps->state == PS_DONE) the rest is ignored. */
static int
parser_feed(struct parser *ps, const char *data, size_t n)
{
	size_t i = 0;

	while (i < n && ps->state != PS_DONE) {
		/* Most of a large body is plain runs: one emit each, not one per byte. */
		size_t run = plain_run(ps, data + i, n - i);

		if (run > 0) {
			ps->line_len += (long long)run;
			if (emit_body(ps, data + i, run) < 0)
				return -1;
			i += run;
		} else if (parser_byte(ps, (unsigned char)data[i++]) < 0) {
			return -1;
		}
	}
	return 0;
}

/* End of input: complete the last line and the header, flush the output. */
static int
parser_finish(struct parser *ps)
{
	if (ps->state != PS_DONE && ps->pending_cr) {
		ps->pending_cr = false;
		if (line_byte(ps, '\r') < 0)
			return -1;
	}
	if (ps->state != PS_DONE && ps->line_len > 0 && line_end(ps) < 0)
		return -1;
	if (ps->state == PS_START || ps->state == PS_HEADER)
		end_header(ps);
	ps->m->spool_size = ps->offset;
	return flush(ps);
}

/* ---- spool ----------------------------------------------------------- */

static int
spool_open(struct spool *sp, const char *tmpdir, struct tm_err *err)
{
	const char *dir = tmpdir != NULL && *tmpdir != '\0' ? tmpdir : getenv("TMPDIR");
	char path[TM_PATH_MAX];

	if (dir == NULL || *dir == '\0')
		dir = "/tmp";
	if (str_copy(sp->dir, sizeof(sp->dir), dir) < 0 ||
	    str_format(path, sizeof(path), "%s/tokenmail.XXXXXX", dir) < 0)
		return tm_err_set(err, TM_ERR_IO, EX_IOERR,
		    "spool directory name is too long: %.64s...", dir);
	/* mkostemp creates the file 0600; close-on-exec keeps it from helpers. */
	sp->fd = mkostemp(path, O_CLOEXEC);
	if (sp->fd < 0) {
		tm_err_set(err, TM_ERR_IO, EX_IOERR,
		    "cannot create a spool file in %s: %s", dir, strerror(errno));
		tm_err_hint(err, "set TMPDIR to a writable directory");
		return -1;
	}
	/* Unlinked at once: the descriptor keeps it, no exit path leaves it behind. */
	if (unlink(path) < 0) {
		tm_err_set(err, TM_ERR_IO, EX_IOERR,
		    "cannot unlink the spool file %s: %s", path, strerror(errno));
		close(sp->fd);
		sp->fd = -1;
		return -1;
	}
	return 0;
}

/* message_sink writing to the spool. */
static int
spool_write(void *ctx, const char *data, size_t len)
{
	struct spool *sp = ctx;

	while (len > 0) {
		ssize_t n = write(sp->fd, data, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			tm_err_set(sp->err, TM_ERR_IO, EX_IOERR,
			    "cannot write the spool file in %s: %s", sp->dir,
			    n < 0 ? strerror(errno) : "short write");
			tm_err_hint(sp->err, "free space in %s, or set TMPDIR to "
			    "another directory", sp->dir);
			return -1;
		}
		data += n;
		len -= (size_t)n;
		sp->written += n;
	}
	return 0;
}

/* message_sink for message_parse_buffer: the body is not kept. */
static int
discard(void *ctx, const char *data, size_t len)
{
	(void)ctx;
	(void)data;
	(void)len;
	return 0;
}

/*
 * After a failed read, keep what was read so that a dead letter can hold
 * it: finish as if the input ended there, then trust only what reached the
 * spool. Errors here are ignored: the first error is the one to report.
 */
static void
salvage(struct parser *ps, struct spool *sp)
{
	struct tm_err ignored;

	ps->err = &ignored;
	sp->err = &ignored;
	(void)parser_finish(ps);
	if (ps->state == PS_START || ps->state == PS_HEADER)
		end_header(ps);
	(void)flush(ps);
	ps->m->spool_size = sp->written;
	if (ps->m->body_offset > sp->written)
		ps->m->body_offset = sp->written;
}

/* ---- reading ----------------------------------------------------------- */

/* Up to TM_IO_BLOCK bytes from fd: the count, 0 at EOF, -1 with err. */
static ssize_t
read_some(int fd, char *buf, int idle_seconds, struct tm_err *err)
{
	ssize_t n = read_idle(fd, buf, TM_IO_BLOCK, idle_seconds);

	if (n >= 0)
		return n;
	if (errno == ETIMEDOUT) {
		tm_err_set(err, TM_ERR_IO, EX_TEMPFAIL,
		    "no input for %d seconds: gave up reading the message", idle_seconds);
		tm_err_hint(err, "the program that runs sendmail must write the "
		    "message and close its input");
		return -1;
	}
	return tm_err_set(err, TM_ERR_IO, EX_IOERR, "cannot read the message: %s",
	    strerror(errno));
}

/*
 * After a lone dot the message is complete, but the caller may still be
 * writing (sudo writes its whole report, dot or not). Reading the rest and
 * dropping it spares that writer a SIGPIPE; it is bounded by the message
 * size limit and the idle timeout, and its failures do not matter.
 */
static void
drain_after_dot(int fd, char *buf, int idle, long long limit)
{
	struct tm_err ignored;
	long long total = 0;
	ssize_t n;

	while (total < limit && (n = read_some(fd, buf, idle, &ignored)) > 0)
		total += n;
}

/* Feed fd to the intake until EOF or a lone dot; the caller finishes it. */
static int
read_loop(int fd, const struct intake_params *p, struct message_intake *in,
    struct tm_err *err)
{
	int idle = p->idle_seconds > 0 ? p->idle_seconds : TM_STDIN_IDLE_SECONDS;
	char *buf = xmalloc(TM_IO_BLOCK);
	int rc = -1;

	while (!message_intake_ended(in)) {
		ssize_t n = read_some(fd, buf, idle, err);

		if (n < 0)
			goto out;
		if (n == 0)
			break;
		if (message_intake_feed(in, buf, (size_t)n) < 0)
			goto out;
	}
	if (message_intake_ended(in))
		drain_after_dot(fd, buf, idle, p->max_size > 0 ? p->max_size : TM_MESSAGE_MAX);
	rc = 0;
out:
	free(buf);
	return rc;
}

/* ---- API ------------------------------------------------------------- */

void
message_init(struct message *m)
{
	memset(m, 0, sizeof(*m));
	m->spool_fd = -1;
}

/* A message fed in pieces: the parser and the spool behind it. */
struct message_intake {
	struct parser ps;
	struct spool sp;
};

int
message_intake_start(const struct intake_params *p, struct message *m,
    struct message_intake **out, struct tm_err *err)
{
	struct message_intake *in = xcalloc(1, sizeof(*in));

	in->sp.fd = -1;
	in->sp.err = err;
	parser_init(&in->ps, p, m, err, spool_write, &in->sp);
	if (spool_open(&in->sp, p->tmpdir, err) < 0) {
		parser_free(&in->ps);
		free(in);
		return -1;
	}
	m->spool_fd = in->sp.fd;
	*out = in;
	return 0;
}

int
message_intake_feed(struct message_intake *in, const char *data, size_t n)
{
	return parser_feed(&in->ps, data, n);
}

bool
message_intake_ended(const struct message_intake *in)
{
	return in->ps.state == PS_DONE;
}

int
message_intake_finish(struct message_intake *in, bool failed)
{
	int rc = failed ? -1 : parser_finish(&in->ps);

	if (rc < 0)
		salvage(&in->ps, &in->sp);
	parser_free(&in->ps);
	free(in);
	return rc;
}

int
message_read(int fd, const struct intake_params *p, struct message *m,
    struct tm_err *err)
{
	struct message_intake *in;
	int rc;

	if (message_intake_start(p, m, &in, err) < 0)
		return -1;
	rc = read_loop(fd, p, in, err);
	if (message_intake_finish(in, rc < 0) < 0)
		return -1;
	return message_check_header(m, err);
}

int
message_check_header(const struct message *m, struct tm_err *err)
{
	if (m->lone_cr_line == 0)
		return 0;
	/* A receiver that ends lines at a lone CR would see a field there that
	   tokenmail never saw, such as a Bcc: that is not removed. */
	return tm_err_set(err, TM_ERR_DATA, EX_DATAERR, "header line %zu holds a carriage "
	    "return not followed by a line feed", m->lone_cr_line);
}

int
message_parse_buffer(const char *text, size_t len, const struct intake_params *p,
    struct message *m, struct tm_err *err)
{
	struct parser ps;
	int rc = -1;

	parser_init(&ps, p, m, err, discard, NULL);
	if (parser_feed(&ps, text, len) < 0)
		goto out;
	rc = parser_finish(&ps);
	if (rc == 0)
		rc = message_check_header(m, err);
out:
	parser_free(&ps);
	return rc;
}
