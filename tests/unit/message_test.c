/*
 * message_test.c: message intake. Each input of the table goes through
 * message_read over a regular file and over a pipe, and through
 * message_parse_buffer; the exact bytes written, the spool and the fields
 * are compared. Limits, flags, header editing, -t recipients and the spool
 * itself have their own tests.
 */
#include <errno.h>
#include <fcntl.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "message.h"
#include "tm_limits.h"
#include "util.h"
#include "tap.h"

#define BIG_LIMIT ((size_t)64 * 1024 * 1024)

static char test_dir[] = "/tmp/message_test.XXXXXX";

struct intake_case {
	const char *name;
	const char *in;
	size_t len;		/* 0: strlen(in) */
	bool dot_ends;
	const char *out;	/* message_write output; NULL when error is expected */
	const char *spool;	/* spool bytes; NULL: the same as out */
	const char *error;	/* expected err.msg */
	size_t nfields;
	bool has_header;
};

static const struct intake_case cases[] = {
	{ "LF",
	  "To: a\nSubject: s\n\nbody\n", 0, true,
	  "To: a\r\nSubject: s\r\n\r\nbody\r\n", NULL, NULL, 2, true },
	{ "CRLF",
	  "To: a\r\nSubject: s\r\n\r\nbody\r\n", 0, true,
	  "To: a\r\nSubject: s\r\n\r\nbody\r\n", NULL, NULL, 2, true },
	{ "PHP mixed CRLF/LF with -i",
	  "To: a\r\nSubject: s\r\n\r\nline1\nline2\n.\nend\r\n", 0, false,
	  "To: a\r\nSubject: s\r\n\r\nline1\r\nline2\r\n.\r\nend\r\n",
	  NULL, NULL, 2, true },
	{ "PHP mixed without -i: the dot ends",
	  "To: a\r\nSubject: s\r\n\r\nline1\nline2\n.\nend\r\n", 0, true,
	  "To: a\r\nSubject: s\r\n\r\nline1\r\nline2\r\n", NULL, NULL, 2, true },
	{ "sudo lone dot ends the message",
	  "To: root\nFrom: nobody\n\nline\n.\nafter\n", 0, true,
	  "To: root\r\nFrom: nobody\r\n\r\nline\r\n", NULL, NULL, 2, true },
	{ "lone dot is data with -i",
	  "To: root\nFrom: nobody\n\nline\n.\nafter\n", 0, false,
	  "To: root\r\nFrom: nobody\r\n\r\nline\r\n.\r\nafter\r\n", NULL, NULL, 2, true },
	{ "CRLF dot ends",
	  "To: a\r\n\r\nx\r\n.\r\ny\r\n", 0, true,
	  "To: a\r\n\r\nx\r\n", NULL, NULL, 1, true },
	{ "dot at EOF without newline ends",
	  "To: a\n\nx\n.", 0, true,
	  "To: a\r\n\r\nx\r\n", NULL, NULL, 1, true },
	{ "no dot unstuffing; dot lines that are not alone",
	  "To: a\n\n..\n.x\n x\n. \n", 0, true,
	  "To: a\r\n\r\n..\r\n.x\r\n x\r\n. \r\n", NULL, NULL, 1, true },
	{ "dot then lone CR is data",
	  "To: a\n\n.\rx\n", 0, true,
	  "To: a\r\n\r\n.\rx\r\n", NULL, NULL, 1, true },
	{ "dot in the header ends the message",
	  "To: a\n.\nSubject: s\n", 0, true,
	  "To: a\r\n\r\n", "To: a\r\n", NULL, 1, true },
	{ "dot as the first line",
	  ".\nTo: a\n", 0, true,
	  "\r\n", "", NULL, 0, false },
	{ "NUL after the dot is not read",
	  "To: a\n\n.\n\0", 10, true,
	  "To: a\r\n\r\n", NULL, NULL, 1, true },
	{ "mbox From line dropped",
	  "From me@example.com Sun Nov 22 22:30:43 2026\nTo: a\n\nFrom here\n", 0, true,
	  "To: a\r\n\r\nFrom here\r\n", NULL, NULL, 1, true },
	{ "From: field kept",
	  "From: me\nTo: a\n\nb\n", 0, true,
	  "From: me\r\nTo: a\r\n\r\nb\r\n", NULL, NULL, 2, true },
	{ "From line then no header",
	  "From x\nhello\n", 0, true,
	  "\r\nhello\r\n", "hello\r\n", NULL, 0, false },
	{ "From line only on line 1",
	  "To: a\nFrom x\n", 0, true,
	  "To: a\r\n\r\nFrom x\r\n", "To: a\r\nFrom x\r\n", NULL, 1, true },
	{ "folding kept byte for byte",
	  "Subject: a\n b\n\tc\nTo: x\n\nbody\n", 0, true,
	  "Subject: a\r\n b\r\n\tc\r\nTo: x\r\n\r\nbody\r\n", NULL, NULL, 2, true },
	{ "whitespace-only continuation",
	  "Subject: a\n \nTo: b\n\n", 0, true,
	  "Subject: a\r\n \r\nTo: b\r\n\r\n", NULL, NULL, 2, true },
	{ "header then EOF",
	  "To: a\nSubject: s\n", 0, true,
	  "To: a\r\nSubject: s\r\n\r\n", "To: a\r\nSubject: s\r\n", NULL, 2, true },
	{ "header then a non-header line",
	  "To: a\nhello world\nmore\n", 0, true,
	  "To: a\r\n\r\nhello world\r\nmore\r\n",
	  "To: a\r\nhello world\r\nmore\r\n", NULL, 1, true },
	{ "no header at all",
	  "hello\nworld\n", 0, true,
	  "\r\nhello\r\nworld\r\n", "hello\r\nworld\r\n", NULL, 0, false },
	{ "indented first line is body",
	  " x: y\nTo: a\n", 0, true,
	  "\r\n x: y\r\nTo: a\r\n", " x: y\r\nTo: a\r\n", NULL, 0, false },
	{ "empty line first",
	  "\nTo: a\n", 0, true,
	  "\r\nTo: a\r\n", "\r\nTo: a\r\n", NULL, 0, false },
	{ "empty input",
	  "", 0, true,
	  "\r\n", "", NULL, 0, false },
	{ "no final newline in the body",
	  "To: a\n\nbody", 0, true,
	  "To: a\r\n\r\nbody\r\n", NULL, NULL, 1, true },
	{ "no final newline in the header",
	  "To: a", 0, true,
	  "To: a\r\n\r\n", "To: a\r\n", NULL, 1, true },
	{ "CR not followed by LF kept",
	  "To: a\n\nx\ry\n\r\r\n", 0, true,
	  "To: a\r\n\r\nx\ry\r\n\r\r\n", NULL, NULL, 1, true },
	{ "CR at EOF kept",
	  "To: a\n\nx\r", 0, true,
	  "To: a\r\n\r\nx\r\r\n", NULL, NULL, 1, true },
	{ "CR inside a header line refused",
	  "Subject: a\rb\n\n", 0, true,
	  NULL, NULL, "header line 1 holds a carriage return not followed by a line feed",
	  0, false },
	{ "CR inside a header continuation refused",
	  "To: a@b\n x\rBcc: c@d\n\n", 0, true,
	  NULL, NULL, "header line 2 holds a carriage return not followed by a line feed",
	  0, false },
	{ "CR in the body kept",
	  "Subject: a\n\nb\rc\n", 0, true,
	  "Subject: a\r\n\r\nb\rc\r\n", NULL, NULL, 1, true },
	{ "WSP before the colon (obsolete syntax)",
	  "Subject : x\n\n", 0, true,
	  "Subject : x\r\n\r\n", NULL, NULL, 1, true },
	{ "bad field name: all body",
	  "Bad Name: x\n\n", 0, true,
	  "\r\nBad Name: x\r\n\r\n", "Bad Name: x\r\n\r\n", NULL, 0, false },
	{ "colon first: all body",
	  ": x\n", 0, true,
	  "\r\n: x\r\n", ": x\r\n", NULL, 0, false },
	{ "NUL in the body",
	  "To: a\n\nb\0c\n", 11, true,
	  NULL, NULL, "message contains a NUL byte (line 3)", 0, false },
	{ "NUL in the header",
	  "To: a\0\n\n", 8, true,
	  NULL, NULL, "message contains a NUL byte (line 1)", 0, false },
	{ "NUL in the body with -i after a dot",
	  "To: a\n\n.\n\0\n", 11, false,
	  NULL, NULL, "message contains a NUL byte (line 4)", 0, false },
};

static int
collect(void *ctx, const char *data, size_t len)
{
	return strbuf_append(ctx, data, len);
}

static int
refuse(void *ctx, const char *data, size_t len)
{
	(void)ctx;
	(void)data;
	(void)len;
	return -1;
}

/* message_write into a new string; NULL if it failed. */
static char *
written(const struct message *m, size_t *len)
{
	struct strbuf b;
	struct tm_err err;

	strbuf_init(&b, BIG_LIMIT);
	tm_err_clear(&err);
	if (message_write(m, collect, &b, &err) < 0) {
		strbuf_free(&b);
		return NULL;
	}
	if (len != NULL)
		*len = b.len;
	return strbuf_take(&b);
}

/* The whole spool as a string. */
static char *
spool_text(const struct message *m)
{
	char *s = xmalloc((size_t)m->spool_size + 1);
	ssize_t n = pread(m->spool_fd, s, (size_t)m->spool_size, 0);

	s[n < 0 ? 0 : n] = '\0';
	return s;
}

static struct intake_params
params(bool dot_ends)
{
	struct intake_params p = { .dot_ends = dot_ends, .tmpdir = test_dir,
		.max_size = 0, .idle_seconds = 5 };

	return p;
}

/* A regular file in test_dir holding data[len], open for reading. */
static int
file_with(const char *data, size_t len)
{
	char path[256];
	int fd;

	(void)str_format(path, sizeof(path), "%s/input.XXXXXX", test_dir);
	fd = mkstemp(path);
	unlink(path);
	if (write(fd, data, len) != (ssize_t)len)
		return -1;
	lseek(fd, 0, SEEK_SET);
	return fd;
}

/* A pipe already holding data[len] (small) with its write end closed. */
static int
pipe_with(const char *data, size_t len)
{
	int fds[2];

	if (pipe(fds) < 0 || write(fds[1], data, len) != (ssize_t)len)
		return -1;
	close(fds[1]);
	return fds[0];
}

/* Check one read of case c; returns the body as written from the spool. */
static void
check_read(const struct intake_case *c, size_t len, bool use_pipe, char **body)
{
	struct intake_params p = params(c->dot_ends);
	const char *how = use_pipe ? "pipe" : "file";
	int fd = use_pipe ? pipe_with(c->in, len) : file_with(c->in, len);
	struct message m;
	struct tm_err err;
	int rc;

	message_init(&m);
	tm_err_clear(&err);
	rc = message_read(fd, &p, &m, &err);
	close(fd);
	if (c->out == NULL) {
		tap_is_int(rc, -1, "%s (%s): refused", c->name, how);
		tap_is_int(err.exit, EX_DATAERR, "%s (%s): EX_DATAERR", c->name, how);
		tap_is_str(err.msg, c->error, "%s (%s): error text", c->name, how);
	} else {
		size_t n = 0;
		char *out = written(&m, &n);
		char *spool = spool_text(&m);

		tap_is_int(rc, 0, "%s (%s): read", c->name, how);
		tap_is_str(out, c->out, "%s (%s): written bytes", c->name, how);
		tap_is_str(spool, c->spool ? c->spool : c->out,
		    "%s (%s): spool", c->name, how);
		tap_is_int((long)message_transmit_size(&m), (long)n,
		    "%s (%s): transmit size", c->name, how);
		if (body != NULL)
			*body = xstrdup(spool + m.body_offset);
		free(out);
		free(spool);
	}
	message_free(&m);
}

/* message_parse_buffer agrees: the same fields, and header + spool body == out. */
static void
check_parse(const struct intake_case *c, size_t len, const char *body)
{
	struct intake_params p = params(c->dot_ends);
	struct message m;
	struct tm_err err;
	int rc;

	message_init(&m);
	tm_err_clear(&err);
	rc = message_parse_buffer(c->in, len, &p, &m, &err);
	if (c->out == NULL) {
		tap_ok(rc == -1 && strcmp(err.msg, c->error) == 0,
		    "%s (buffer): same error", c->name);
	} else {
		char *head = written(&m, NULL);
		char *whole = xasprintf("%s%s", head, body ? body : "");

		tap_is_int(rc, 0, "%s (buffer): parsed", c->name);
		tap_is_str(whole, c->out, "%s (buffer): header + spool body", c->name);
		tap_is_int((long)m.nfields, (long)c->nfields, "%s: fields", c->name);
		tap_is_int(m.has_header, c->has_header, "%s: has_header", c->name);
		tap_is_int(m.spool_fd, -1, "%s (buffer): no spool", c->name);
		free(head);
		free(whole);
	}
	message_free(&m);
}

/* The same case fed one byte at a time through message_intake_*. */
static void
check_fed(const struct intake_case *c, size_t len)
{
	struct intake_params p = params(c->dot_ends);
	struct message_intake *in = NULL;
	struct message m;
	struct tm_err err;
	size_t i;
	int rc = 0;

	message_init(&m);
	tm_err_clear(&err);
	if (message_intake_start(&p, &m, &in, &err) < 0) {
		tap_ok(0, "%s (fed): start: %s", c->name, err.msg);
		return;
	}
	for (i = 0; i < len && rc == 0 && !message_intake_ended(in); i++)
		rc = message_intake_feed(in, c->in + i, 1);
	rc = message_intake_finish(in, rc < 0);
	if (rc == 0)
		rc = message_check_header(&m, &err);
	if (c->out == NULL) {
		tap_ok(rc == -1 && strcmp(err.msg, c->error) == 0, "%s (fed): same error [%s]",
		    c->name, err.msg);
	} else {
		char *out = written(&m, NULL);
		char *spool = spool_text(&m);

		tap_is_int(rc, 0, "%s (fed): read", c->name);
		tap_is_str(out, c->out, "%s (fed): written bytes", c->name);
		tap_is_str(spool, c->spool ? c->spool : c->out, "%s (fed): spool", c->name);
		free(out);
		free(spool);
	}
	message_free(&m);
}

static void
test_table(void)
{
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct intake_case *c = &cases[i];
		size_t len = c->len ? c->len : strlen(c->in);
		char *body = NULL;

		check_read(c, len, false, &body);
		check_read(c, len, true, NULL);
		check_fed(c, len);
		check_parse(c, len, body);
		free(body);
	}
}

/* Parse text with message_parse_buffer into m; returns rc. */
static int
parse(const char *text, bool dot_ends, struct message *m, struct tm_err *err)
{
	struct intake_params p = params(dot_ends);

	message_init(m);
	tm_err_clear(err);
	return message_parse_buffer(text, strlen(text), &p, m, err);
}

static void
test_fields(void)
{
	struct message m;
	struct tm_err err;

	parse("Subject: a\n b\n\tc  \nX-Empty:\nTo :  x@y \nFrom:me\n\nbody\n",
	    true, &m, &err);
	tap_is_int((long)m.nfields, 4, "fields: four");
	tap_is_str(m.fields[0].name, "Subject", "fields: name");
	tap_is_str(m.fields[0].value, "a b\tc", "fields: unfolded value");
	tap_is_str(m.fields[0].raw, "Subject: a\r\n b\r\n\tc  \r\n",
	    "fields: raw as received");
	tap_is_str(m.fields[1].value, "", "fields: empty value");
	tap_is_str(m.fields[2].name, "To", "fields: name before WSP and colon");
	tap_is_str(m.fields[2].value, "x@y", "fields: value trimmed");
	tap_is_str(m.fields[3].value, "me", "fields: no space after colon");
	tap_is_int(m.lines, 8, "fields: lines counted");
	tap_is_int(m.body_offset, (long)strlen("Subject: a\r\n b\r\n\tc  \r\nX-Empty:\r\n"
	    "To :  x@y \r\nFrom:me\r\n\r\n"), "fields: body_offset after the empty line");
	tap_ok(!m.fields[0].added && !m.fields[0].dropped,
	    "fields: received, not dropped");
	message_free(&m);

	parse("Subject: lone\rCR\n\n", true, &m, &err);
	tap_is_str(m.fields[0].value, "lone\rCR", "fields: lone CR stays in the value");
	message_free(&m);
}

static void
test_flags(void)
{
	static const struct {
		const char *in;
		bool eight_bit, utf8_header;
	} t[] = {
		{ "To: a\n\nplain\n", false, false },
		{ "To: a\n\ncaf\xc3\xa9\n", true, false },
		{ "Subject: caf\xc3\xa9\n\nplain\n", true, true },
		{ "Subject: a\n \xc3\xa9\n\n", true, true },
		{ "caf\xc3\xa9\n", true, false },
	};
	struct message m;
	struct tm_err err;
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		parse(t[i].in, true, &m, &err);
		tap_is_int(m.eight_bit, t[i].eight_bit, "flags %zu: eight_bit", i);
		tap_is_int(m.utf8_header, t[i].utf8_header, "flags %zu: utf8_header", i);
		message_free(&m);
	}
}

/* "prefix" + fill to n octets + "suffix" */
static char *
make_line(const char *prefix, size_t n, char fill, const char *suffix)
{
	size_t plen = strlen(prefix), slen = strlen(suffix);
	char *s = xmalloc(n + slen + 1);

	memcpy(s, prefix, plen);
	memset(s + plen, fill, n - plen);
	memcpy(s + n, suffix, slen + 1);
	return s;
}

static void
check_header_line(size_t octets, const char *eol, bool ok)
{
	char *line = make_line("Subject: ", octets, 'x', eol);
	char *text = xasprintf("To: a\n%s\nbody\n", line);
	char want[128];
	struct message m;
	struct tm_err err;
	int rc = parse(text, true, &m, &err);

	if (ok) {
		tap_ok(rc == 0 && m.nfields == 2 && strlen(m.fields[1].raw) == octets + 2,
		    "%zu-octet header line (%s) accepted", octets,
		    eol[0] == '\r' ? "CRLF" : "LF");
	} else {
		(void)str_format(want, sizeof(want),
		    "header line 2 is %zu octets long; RFC 5322 allows 998", octets);
		tap_is_int(rc, -1, "%zu-octet header line refused", octets);
		tap_is_int(err.exit, EX_DATAERR, "%zu-octet header line: EX_DATAERR",
		    octets);
		tap_is_str(err.msg, want, "%zu-octet header line: message", octets);
	}
	message_free(&m);
	free(line);
	free(text);
}

static void
test_header_line_limit(void)
{
	struct message m;
	struct tm_err err;
	char *text;

	check_header_line(998, "\n", true);
	check_header_line(998, "\r\n", true);
	check_header_line(999, "\n", false);
	check_header_line(999, "\r\n", false);
	check_header_line(10000, "\n", false);

	/* An over-long continuation line is a header line too. */
	text = make_line("Subject: a\n ", 1012, 'x', "\n\n");
	parse(text, true, &m, &err);
	tap_is_str(err.msg, "header line 2 is 1001 octets long; RFC 5322 allows 998",
	    "over-long continuation refused");
	message_free(&m);
	free(text);
}

/* Long lines that are not header lines are body (long_lines set). */
static void
test_long_body_lines(void)
{
	static const struct {
		const char *prefix;
		size_t octets;
		bool long_lines, has_header;
	} t[] = {
		{ "To: a\n\n", 998, false, true },
		{ "To: a\n\n", 999, true, true },
		{ "To: a\n\n", 10000, true, true },
		{ "", 10000, true, false },		/* first line: no header */
		{ "To: a\n", 5000, true, true },	/* header then a long non-field */
	};
	struct message m;
	struct tm_err err;
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		size_t plen = strlen(t[i].prefix);
		char *text = make_line(t[i].prefix, plen + t[i].octets, 'b', "\nend\n");
		struct intake_params p = params(true);
		int fd = file_with(text, strlen(text));
		char *out, *want;

		message_init(&m);
		tm_err_clear(&err);
		tap_is_int(message_read(fd, &p, &m, &err), 0,
		    "long body line %zu: read", i);
		tap_is_int(m.long_lines, t[i].long_lines,
		    "long body line %zu: long_lines", i);
		tap_is_int(m.has_header, t[i].has_header,
		    "long body line %zu: has_header", i);
		out = written(&m, NULL);
		want = make_line(t[i].has_header ? "To: a\r\n\r\n" : "\r\n",
		    (t[i].has_header ? 9 : 2) + t[i].octets, 'b', "\r\nend\r\n");
		tap_is_str(out, want, "long body line %zu: bytes", i);
		free(out);
		free(want);
		free(text);
		close(fd);
		message_free(&m);
	}
}

/* An over-long mbox From line is dropped like a short one. */
static void
test_long_from_line(void)
{
	char *text = make_line("From ", 2000, 'x', "\nTo: a\n\nb\n");
	struct message m;
	struct tm_err err;

	tap_is_int(parse(text, true, &m, &err), 0, "long From line: parsed");
	tap_ok(m.nfields == 1 && strcmp(m.fields[0].name, "To") == 0,
	    "long From line: dropped");
	message_free(&m);
	free(text);
}

/* n fields "X-N: v" then a body. */
static char *
many_fields(size_t n, size_t value_len)
{
	struct strbuf b;
	size_t i;

	strbuf_init(&b, BIG_LIMIT);
	for (i = 0; i < n; i++) {
		char *line = make_line("X-F: ", value_len, 'v', "\n");

		(void)strbuf_append_str(&b, line);
		free(line);
	}
	(void)strbuf_append_str(&b, "\nbody\n");
	return strbuf_take(&b);
}

static void
test_header_limits(void)
{
	struct message m;
	struct tm_err err;
	char *text = many_fields(TM_HEADER_FIELDS_MAX, 10);

	tap_is_int(parse(text, true, &m, &err), 0, "2000 fields accepted");
	tap_is_int((long)m.nfields, TM_HEADER_FIELDS_MAX, "2000 fields kept");
	message_free(&m);
	free(text);

	text = many_fields(TM_HEADER_FIELDS_MAX + 1, 10);
	tap_is_int(parse(text, true, &m, &err), -1, "2001 fields refused");
	tap_is_str(err.msg, "the header has more than 2000 fields (line 2001)",
	    "too many fields: message");
	tap_is_int(err.exit, EX_DATAERR, "too many fields: EX_DATAERR");
	message_free(&m);
	free(text);

	/* 300 lines of 990 octets: few fields, but over 256 KiB. */
	text = many_fields(300, 990);
	tap_is_int(parse(text, true, &m, &err), -1, "header block over 256 KiB refused");
	tap_is_str(err.msg, "the header is over 262144 octets (line 265)",
	    "header block: message");
	tap_is_int(err.exit, EX_DATAERR, "header block: EX_DATAERR");
	message_free(&m);
	free(text);
}

static void
test_max_size(void)
{
	static const char text[] = "To: a\n\n0123456789\n";	/* 21 octets spooled */
	struct intake_params p = params(true);
	struct message m;
	struct tm_err err;
	int fd;

	p.max_size = 21;
	fd = file_with(text, strlen(text));
	message_init(&m);
	tap_is_int(message_read(fd, &p, &m, &err), 0, "max_size: exactly at the limit");
	close(fd);
	message_free(&m);

	p.max_size = 20;
	fd = file_with(text, strlen(text));
	message_init(&m);
	tap_is_int(message_read(fd, &p, &m, &err), -1, "max_size: one over refused");
	tap_is_int(err.exit, EX_DATAERR, "max_size: EX_DATAERR");
	tap_is_str(err.msg, "message is over the size limit of 20 octets",
	    "max_size: names the limit");
	close(fd);
	message_free(&m);
}

static void
test_find_and_bcc(void)
{
	struct message m;
	struct tm_err err;
	char *out;

	parse("To: a\nBcc: hidden\nsubject: s\nRESENT-BCC: r\nX: 1\nSUBJECT: t\n\nbody\n",
	    true, &m, &err);
	tap_is_int(message_find(&m, "Subject", 0), 2, "find: case-insensitive");
	tap_is_int(message_find(&m, "Subject", 3), 5, "find: from start");
	tap_is_int(message_find(&m, "Subject", 6), -1, "find: none after");
	tap_is_int(message_find(&m, "Bcc", 0), 1, "find: Bcc before drop");
	message_drop_bcc(&m);
	tap_is_int(message_find(&m, "Bcc", 0), -1, "find: Bcc dropped");
	tap_is_int(message_find(&m, "Resent-Bcc", 0), -1, "find: Resent-Bcc dropped");
	tap_ok(m.fields[1].dropped && m.fields[3].dropped && !m.fields[0].dropped,
	    "drop_bcc: only Bcc and Resent-Bcc");
	out = written(&m, NULL);
	tap_is_str(out, "To: a\r\nsubject: s\r\nX: 1\r\nSUBJECT: t\r\n\r\n",
	    "drop_bcc: not written");
	tap_is_int((long)message_transmit_size(&m), (long)strlen(out),
	    "drop_bcc: transmit size");
	tap_ok(message_has_resent(&m), "has_resent: a dropped Resent-Bcc counts");
	free(out);
	message_free(&m);

	parse("To: a\nX-Resent: no\n\n", true, &m, &err);
	tap_ok(!message_has_resent(&m), "has_resent: none");
	message_free(&m);
}

static void
test_add_replace(void)
{
	struct message m;
	struct tm_err err;
	char *out;

	parse("from: root (Cron Daemon)\nTo: a\nSubject: s\n\n", true, &m, &err);
	message_add_field(&m, "X-Added", "one");
	message_replace_field(&m, 0, "Cron Daemon <ops@example.com>");
	message_add_field(&m, "X-Inject", "a\r\nBcc: evil");
	message_replace_field(&m, 99, "ignored");
	out = written(&m, NULL);
	tap_is_str(out, "from: Cron Daemon <ops@example.com>\r\nTo: a\r\nSubject: s\r\n"
	    "X-Added: one\r\nX-Inject: a  Bcc: evil\r\n\r\n", "add/replace: bytes");
	tap_is_str(m.fields[0].value, "Cron Daemon <ops@example.com>", "replace: value");
	tap_ok(m.fields[3].added && !m.fields[0].added, "add: marked added");
	tap_is_int((long)message_transmit_size(&m), (long)strlen(out),
	    "add/replace: transmit size");
	free(out);
	message_free(&m);

	/* Added fields go after every received one, even one replaced later. */
	parse("To: a\n\n", true, &m, &err);
	message_add_field(&m, "From", "me@example.com");
	message_replace_field(&m, 0, "b");
	out = written(&m, NULL);
	tap_is_str(out, "To: b\r\nFrom: me@example.com\r\n\r\n",
	    "add: after received fields");
	free(out);
	message_free(&m);

	/* No header in the input: only the added fields, then the body. */
	{
		struct intake_params p = params(true);
		int fd = file_with("just text\n", 10);

		message_init(&m);
		message_read(fd, &p, &m, &err);
		message_add_field(&m, "From", "me@example.com");
		out = written(&m, NULL);
		tap_is_str(out, "From: me@example.com\r\n\r\njust text\r\n",
		    "add: no header in input");
		tap_is_int((long)message_transmit_size(&m), (long)strlen(out),
		    "add: no header: size");
		free(out);
		close(fd);
		message_free(&m);
	}
}

static bool
matches(const char *s, const char *pattern)
{
	regex_t re;
	bool ok;

	if (regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB) != 0)
		return false;
	ok = regexec(&re, s, 0, NULL, 0) == 0;
	regfree(&re);
	return ok;
}

/* The C-locale RFC 5322 date for t, made with strftime to compare. */
static void
expected_date(time_t t, char *out, size_t size)
{
	struct tm lt;

	localtime_r(&t, &lt);
	strftime(out, size, "%a, %d %b %Y %H:%M:%S %z", &lt);
	if (out[5] == '0')		/* we write the day without a leading zero */
		memmove(out + 5, out + 6, strlen(out + 5));
}

static void
check_date(const char *tz, const char *zone)
{
	struct message m;
	struct tm_err err;
	char before[64], after[64];
	const char *date;
	time_t t0;

	setenv("TZ", tz, 1);
	tzset();
	parse("To: a\n\n", true, &m, &err);
	t0 = time(NULL);
	message_add_missing_ids(&m, "example.com");
	expected_date(t0, before, sizeof(before));
	expected_date(time(NULL), after, sizeof(after));
	date = m.fields[1].value;
	tap_is_str(m.fields[1].name, "Date", "ids (%s): Date added", tz);
	tap_ok(strcmp(date, before) == 0 || strcmp(date, after) == 0,
	    "ids (%s): Date is now: %s", tz, date);
	tap_ok(matches(date, "^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), [1-9][0-9]? "
	    "(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [0-9]{4} "
	    "[0-2][0-9]:[0-5][0-9]:[0-6][0-9] [-+][0-9]{4}$"),
	    "ids (%s): Date format", tz);
	tap_ok(strlen(date) > 5 && strcmp(date + strlen(date) - 5, zone) == 0,
	    "ids (%s): zone %s", tz, zone);
	message_free(&m);
}

static void
test_ids(void)
{
	struct message m;
	struct tm_err err;
	char *out;

	check_date("UTC0", "+0000");
	check_date("EST5", "-0500");
	check_date("IST-5:30", "+0530");
	check_date("NPT-5:45", "+0545");
	unsetenv("TZ");
	tzset();

	parse("To: a\n\n", true, &m, &err);
	message_add_missing_ids(&m, "example.com");
	tap_is_int((long)m.nfields, 3, "ids: two fields added");
	tap_is_str(m.fields[2].name, "Message-ID", "ids: Message-ID added");
	tap_ok(matches(m.fields[2].raw, "^Message-ID: <[0-9a-f]{32}@example\\.com>\r\n$"),
	    "ids: Message-ID format: %s", m.fields[2].value);
	out = written(&m, NULL);
	tap_ok(matches(out, "^To: a\r\nDate: [^\r]+\r\nMessage-ID: <[^\r]+>\r\n\r\n$"),
	    "ids: written after the received fields");
	tap_is_int((long)message_transmit_size(&m), (long)strlen(out),
	    "ids: transmit size");
	free(out);
	message_free(&m);

	parse("DATE: Sun, 1 Nov 2026 00:00:00 +0000\nmessage-id: <x@y>\n\n",
	    true, &m, &err);
	message_add_missing_ids(&m, "example.com");
	tap_is_int((long)m.nfields, 2, "ids: present ones kept, nothing added");
	message_free(&m);

	parse("To: a\n\n", true, &m, &err);
	message_add_missing_ids(&m, NULL);
	tap_ok(matches(m.fields[2].value, "^<[0-9a-f]{32}@localhost>$"),
	    "ids: NULL domain: localhost");
	message_free(&m);
	parse("To: a\n\n", true, &m, &err);
	message_add_missing_ids(&m, "");
	tap_ok(matches(m.fields[2].value, "^<[0-9a-f]{32}@localhost>$"),
	    "ids: empty domain: localhost");
	message_free(&m);
}

/* The specs of list, space-separated. */
static char *
specs(const struct address_list *list)
{
	struct strbuf b;
	size_t i;

	strbuf_init(&b, BIG_LIMIT);
	for (i = 0; i < list->count; i++) {
		char spec[TM_ADDRESS_MAX + 1];

		if (address_spec(&list->items[i], spec, sizeof(spec)) < 0)
			(void)str_copy(spec, sizeof(spec), "?");
		(void)strbuf_appendf(&b, "%s%s", i ? " " : "", spec);
	}
	return strbuf_take(&b);
}

static void
check_recipients(const char *name, const char *text, int want_rc, const char *want)
{
	struct address_list list = { 0 };
	struct message m;
	struct tm_err err;
	int rc;
	char *got;

	parse(text, true, &m, &err);
	message_drop_bcc(&m);
	tm_err_clear(&err);
	rc = message_header_recipients(&m, &list, &err);
	tap_is_int(rc, want_rc, "recipients (%s): result", name);
	if (rc == 0) {
		got = specs(&list);
		tap_is_str(got, want, "recipients (%s)", name);
		free(got);
	} else {
		tap_ok(strncmp(err.msg, want, strlen(want)) == 0 &&
		    err.exit == EX_DATAERR,
		    "recipients (%s): error '%s'", name, err.msg);
		tap_is_int((long)list.count, 0, "recipients (%s): out unchanged", name);
	}
	address_list_free(&list);
	message_free(&m);
}

static void
test_recipients(void)
{
	check_recipients("logwatch: one To per address",
	    "To: root\nTo: admin@example.com\nTo: ops@example.com\nFrom: Logwatch\n\n",
	    0, "root admin@example.com ops@example.com");
	check_recipients("To, Cc, Bcc, folded, any case",
	    "to: A <a@x>,\n  b@y\nCC: c@z\nbcc: hidden@h\nSubject: s\n\n",
	    0, "a@x b@y c@z hidden@h");
	check_recipients("Bcc dropped but still a recipient",
	    "To: a@x\nBcc: hidden@h\n\n", 0, "a@x hidden@h");
	check_recipients("Resent- fields win",
	    "To: a@x\nCc: c@x\nResent-To: r@x\nResent-Cc: rc@x\nResent-Bcc: rb@x\n\n",
	    0, "r@x rc@x rb@x");
	check_recipients("Resent-Bcc alone wins (dropped)",
	    "To: a@x\nResent-Bcc: rb@x\n\n", 0, "rb@x");
	check_recipients("group and empty To",
	    "To:\nCc: undisclosed-recipients:;\nBcc: b@x\n\n",
	    0, "b@x");
	check_recipients("none", "Subject: s\n\nTo: body@x\n", 0, "");
	check_recipients("bad address names the field", "To: a@x\nCc: <broken\n\n",
	    -1, "Cc: header: ");
}

/* message_read over a pipe fed in odd-sized writes by a child. */
static void
test_pipe_large(void)
{
	struct strbuf in, want;
	struct intake_params p = params(false);
	struct message m;
	struct tm_err err;
	int fds[2], status;
	size_t i, n = 0;
	pid_t pid;
	char *out;

	strbuf_init(&in, BIG_LIMIT);
	strbuf_init(&want, BIG_LIMIT);
	(void)strbuf_append_str(&in, "To: a\r\nSubject: big\n\n");
	(void)strbuf_append_str(&want, "To: a\r\nSubject: big\r\n\r\n");
	for (i = 0; in.len < 3 * 1024 * 1024; i++) {
		char *line = make_line(i % 7 == 0 ? "." : "l", 1 + i % 1500,
		    'a' + (char)(i % 26), "");

		(void)strbuf_appendf(&in, "%s%s", line, i % 3 ? "\n" : "\r\n");
		(void)strbuf_appendf(&want, "%s\r\n", line);
		free(line);
	}
	if (pipe(fds) < 0 || (pid = fork()) < 0) {
		tap_ok(0, "pipe/fork");
		return;
	}
	if (pid == 0) {
		close(fds[0]);
		while (n < in.len) {
			size_t k = in.len - n < 4093 ? in.len - n : 4093;
			ssize_t w = write(fds[1], in.data + n, k);

			if (w <= 0)
				_exit(1);
			n += (size_t)w;
		}
		_exit(0);
	}
	close(fds[1]);
	message_init(&m);
	tap_is_int(message_read(fds[0], &p, &m, &err), 0, "3 MB over a pipe: read");
	close(fds[0]);
	waitpid(pid, &status, 0);
	tap_ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "3 MB over a pipe: writer done");
	out = written(&m, &n);
	tap_ok(out != NULL && n == want.len && memcmp(out, want.data, n) == 0,
	    "3 MB over a pipe: exact bytes (%zu)", n);
	tap_is_int((long)message_transmit_size(&m), (long)n,
	    "3 MB over a pipe: transmit size");
	tap_is_int((long)m.spool_size, (long)want.len, "3 MB over a pipe: spool size");
	free(out);
	message_free(&m);
	strbuf_free(&in);
	strbuf_free(&want);
}

/* A CR, a dot or a header line split across two reads of TM_IO_BLOCK. */
static void
check_boundary(const char *name, const char *head, const char *tail, bool dot_ends,
    const char *want_tail)
{
	size_t hlen = strlen(head);
	char *pad = make_line("To: a\n\n", TM_IO_BLOCK - hlen, 'p', "\n");
	char *text, *out, *want;
	struct intake_params p = params(dot_ends);
	struct message m;
	struct tm_err err;
	int fd;

	/* the padding line ends one byte early: its LF is the block's last byte */
	pad[TM_IO_BLOCK - hlen - 1] = '\n';
	pad[TM_IO_BLOCK - hlen] = '\0';
	text = xasprintf("%s%s%s", pad, head, tail);
	fd = file_with(text, strlen(text));
	message_init(&m);
	tap_is_int(message_read(fd, &p, &m, &err), 0, "boundary (%s): read", name);
	out = written(&m, NULL);
	pad[TM_IO_BLOCK - hlen - 1] = '\0';
	want = xasprintf("To: a\r\n\r\n%s\r\n%s", pad + 7, want_tail);
	tap_is_str(out, want, "boundary (%s): bytes", name);
	free(out);
	free(want);
	free(text);
	free(pad);
	close(fd);
	message_free(&m);
}

static void
test_boundaries(void)
{
	check_boundary("CRLF split", "x\r", "\ny\n", true, "x\r\ny\r\n");
	check_boundary("lone CR split", "x\r", "y\n", true, "x\ry\r\n");
	check_boundary("dot split from LF", ".", "\nafter\n", true, "");
	check_boundary("dot split from CRLF", ".\r", "\nafter\n", true, "");
	check_boundary("dot split, -i", ".", "\nafter\n", false, ".\r\nafter\r\n");
	check_boundary("dot then data split", ".", "x\n", true, ".x\r\n");
}

static void
test_timeout(void)
{
	struct intake_params p = params(true);
	struct message m;
	struct tm_err err;
	int fds[2];
	time_t t0;
	char *out;

	if (pipe(fds) < 0 || write(fds[1], "To: a\n\npartial\nline", 19) != 19) {
		tap_ok(0, "pipe");
		return;
	}
	p.idle_seconds = 1;
	message_init(&m);
	t0 = time(NULL);
	tap_is_int(message_read(fds[0], &p, &m, &err), -1, "idle timeout: refused");
	tap_ok(time(NULL) - t0 <= 3, "idle timeout: about a second");
	tap_is_int(err.exit, EX_TEMPFAIL, "idle timeout: EX_TEMPFAIL");
	tap_is_str(err.msg, "no input for 1 seconds: gave up reading the message",
	    "idle timeout: message");
	out = written(&m, NULL);
	tap_is_str(out, "To: a\r\n\r\npartial\r\nline\r\n",
	    "idle timeout: what was read is kept");
	free(out);
	close(fds[0]);
	close(fds[1]);
	message_free(&m);
}

static void
test_errors_keep_partial(void)
{
	static const char text[] = "To: a\nSubject: s\n\nbody\n\0";
	struct intake_params p = params(true);
	struct message m;
	struct tm_err err;
	int fd = file_with(text, sizeof(text) - 1);
	char *out;

	message_init(&m);
	tap_is_int(message_read(fd, &p, &m, &err), -1, "NUL: refused");
	out = written(&m, NULL);
	tap_is_str(out, "To: a\r\nSubject: s\r\n\r\nbody\r\n",
	    "NUL: what came before is kept");
	free(out);
	close(fd);
	message_free(&m);

	fd = file_with("To: a\nSubject: s", 16);
	p.max_size = 10;
	message_init(&m);
	tap_is_int(message_read(fd, &p, &m, &err), -1, "size in header: refused");
	out = written(&m, NULL);
	tap_is_str(out, "To: a\r\nSubject: s\r\n\r\n", "size in header: fields kept");
	tap_is_int((long)message_transmit_size(&m), (long)strlen(out),
	    "size in header: size agrees");
	free(out);
	close(fd);
	message_free(&m);
}

static void
test_read_errors(void)
{
	struct intake_params p = params(true);
	struct message m;
	struct tm_err err;
	int fd = open(test_dir, O_RDONLY | O_DIRECTORY);

	message_init(&m);
	tap_is_int(message_read(fd, &p, &m, &err), -1, "read error: refused");
	tap_is_int(err.exit, EX_IOERR, "read error: EX_IOERR");
	tap_is_str(err.msg, "cannot read the message: Is a directory",
	    "read error: message");
	close(fd);
	message_free(&m);

	p.tmpdir = "/nonexistent/dir";
	fd = pipe_with("To: a\n\n", 7);
	message_init(&m);
	tap_is_int(message_read(fd, &p, &m, &err), -1, "spool dir missing: refused");
	tap_is_int(err.exit, EX_IOERR, "spool dir missing: EX_IOERR");
	tap_is_str(err.msg,
	    "cannot create a spool file in /nonexistent/dir: No such file or directory",
	    "spool dir missing: names the directory");
	close(fd);
	message_free(&m);
}

/* A full disk, simulated with RLIMIT_FSIZE in a child. */
static void
test_spool_full(void)
{
	char *text = make_line("To: a\n\n", 300000, 'x', "\n");
	int fds[2], status = -1;
	char report[600] = "";
	pid_t pid;

	if (pipe(fds) < 0 || (pid = fork()) < 0) {
		tap_ok(0, "pipe/fork");
		free(text);
		return;
	}
	if (pid == 0) {
		struct rlimit rl = { 100000, 100000 };
		struct intake_params p = params(true);
		struct message m;
		struct tm_err err;
		int fd = file_with(text, strlen(text));
		int rc;

		signal(SIGXFSZ, SIG_IGN);
		setrlimit(RLIMIT_FSIZE, &rl);
		message_init(&m);
		rc = message_read(fd, &p, &m, &err);
		dprintf(fds[1], "%d %d %s", rc, err.exit, err.msg);
		message_free(&m);
		_exit(0);
	}
	close(fds[1]);
	if (read(fds[0], report, sizeof(report) - 1) < 0)
		report[0] = '\0';
	close(fds[0]);
	waitpid(pid, &status, 0);
	{
		char *want = xasprintf("-1 74 cannot write the spool file in %s: %s",
		    test_dir, "File too large");

		tap_is_str(report, want,
		    "spool write error: EX_IOERR naming the directory");
		free(want);
	}
	free(text);
}

static void
test_spool_file(void)
{
	struct intake_params p = params(true);
	struct message m;
	struct tm_err err;
	struct stat st;
	char link[64], target[512], *prefix;
	ssize_t n;
	int fd;

	p.tmpdir = NULL;
	setenv("TMPDIR", test_dir, 1);
	fd = pipe_with("To: a\n\nx\n", 9);
	message_init(&m);
	tap_is_int(message_read(fd, &p, &m, &err), 0, "spool: read");
	tap_ok(fstat(m.spool_fd, &st) == 0 && (st.st_mode & 0777) == 0600,
	    "spool: mode 0600");
	tap_is_int((long)st.st_nlink, 0, "spool: unlinked at once");
	tap_ok(fcntl(m.spool_fd, F_GETFD) & FD_CLOEXEC, "spool: close-on-exec");
	(void)str_format(link, sizeof(link), "/proc/self/fd/%d", m.spool_fd);
	n = readlink(link, target, sizeof(target) - 1);
	target[n < 0 ? 0 : n] = '\0';
	prefix = xasprintf("%s/tokenmail.", test_dir);
	tap_ok(strncmp(target, prefix, strlen(prefix)) == 0,
	    "spool: in $TMPDIR (%s)", target);
	free(prefix);
	unsetenv("TMPDIR");
	close(fd);
	message_free(&m);
	tap_is_int(m.spool_fd, -1, "free: spool closed");
	message_free(&m);
	tap_ok(1, "free: twice is harmless");
	message_init(&m);
	message_free(&m);
	tap_ok(1, "free: unused message");
}

static void
test_write_failures(void)
{
	struct intake_params p = params(true);
	struct message m;
	struct tm_err err;
	int fd = pipe_with("To: a\n\nbody\n", 12);

	message_init(&m);
	message_read(fd, &p, &m, &err);
	tm_err_clear(&err);
	tap_is_int(message_write(&m, refuse, NULL, &err), -1,
	    "write: sink failure returned");
	tap_is_int(err.cls, TM_ERR_NONE, "write: err left to the sink");
	close(fd);
	message_free(&m);
}

int
main(void)
{
	if (mkdtemp(test_dir) == NULL) {
		perror("mkdtemp");
		return 99;
	}
	test_table();
	test_fields();
	test_flags();
	test_header_line_limit();
	test_long_body_lines();
	test_long_from_line();
	test_header_limits();
	test_max_size();
	test_find_and_bcc();
	test_add_replace();
	test_ids();
	test_recipients();
	test_pipe_large();
	test_boundaries();
	test_timeout();
	test_errors_keep_partial();
	test_read_errors();
	test_spool_full();
	test_spool_file();
	test_write_failures();
	rmdir(test_dir);
	return tap_done();
}
