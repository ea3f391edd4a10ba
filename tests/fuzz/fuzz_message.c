/*
 * fuzz_message.c: message intake and the header parser (message.h). The
 * input is what a caller writes on sendmail's stdin. It is parsed with
 * message_parse_buffer() with and without -i, and fed to the spooling
 * intake (message_intake_*, a real unlinked spool file) in pieces of
 * varying size, as reads from a pipe arrive. Then the -t recipients are
 * read, Bcc dropped and the message written out.
 * Invariants: the intake in pieces (with message_check_header(), as its
 * users call it) finds what the buffer parse finds; in a message that
 * parses, every field's raw form ends in CRLF and its name and value are
 * one line; message_transmit_size() is what message_write() writes; a
 * message with a header, written out, parses back to the same fields.
 */
#include <string.h>

#include "fuzz.h"
#include "message.h"

struct sink {
	struct strbuf b;
};

static int
sink_add(void *ctx, const char *data, size_t len)
{
	struct sink *s = ctx;

	return strbuf_append(&s->b, data, len);
}

static void
check_fields(const struct message *m)
{
	size_t i;

	for (i = 0; i < m->nfields; i++) {
		const struct header_field *f = &m->fields[i];
		size_t n = strlen(f->raw);

		fuzz_check(fuzz_one_line(f->name, strlen(f->name)), "a field name is not one line");
		/* A lone CR in a field is refused (message_check_header). */
		fuzz_check(fuzz_one_line(f->value, strlen(f->value)), "a field value is not one line");
		fuzz_check(n >= 2 && strcmp(f->raw + n - 2, "\r\n") == 0,
		    "a raw field does not end in CRLF");
	}
}

/* The fields of a that are not dropped are those of b, in order. */
static void
same_fields(const struct message *a, const struct message *b, const char *what)
{
	size_t i, j = 0;

	fuzz_check(a->has_header == b->has_header, what);
	for (i = 0; i < a->nfields; i++) {
		if (a->fields[i].dropped)
			continue;
		fuzz_check(j < b->nfields, what);
		fuzz_check(strcmp(a->fields[i].name, b->fields[j].name) == 0, what);
		fuzz_check(strcmp(a->fields[i].value, b->fields[j].value) == 0, what);
		fuzz_check(strcmp(a->fields[i].raw, b->fields[j].raw) == 0, what);
		j++;
	}
	fuzz_check(j == b->nfields, what);
}

/* The intake fed in pieces of 1 to 4096 octets, the sizes drawn from size. */
static int
intake(const uint8_t *data, size_t size, const struct intake_params *p, struct message *m)
{
	struct message_intake *in;
	struct tm_err err;
	unsigned long seed = size * 2654435761u + 1;
	size_t off = 0;
	int failed = 0;

	if (message_intake_start(p, m, &in, &err) < 0)
		return -2;
	while (off < size && !failed && !message_intake_ended(in)) {
		size_t n;

		seed = seed * 1103515245u + 12345u;
		n = 1 + (seed >> 8) % (seed & 0x100 ? 4096 : 16);
		if (n > size - off)
			n = size - off;
		failed = message_intake_feed(in, (const char *)data + off, n) < 0;
		off += n;
	}
	if (message_intake_finish(in, failed) < 0)
		return -1;
	return message_check_header(m, &err);
}

/* Fields that message_write() writes. */
static size_t
transmitted(const struct message *m)
{
	size_t i, n = 0;

	for (i = 0; i < m->nfields; i++)
		n += !m->fields[i].dropped;
	return n;
}

/* Write m out, check its size, and parse a message with a header back. */
static void
write_back(const struct message *m)
{
	struct intake_params plain = { .dot_ends = false };
	struct sink s;
	struct message again;
	struct tm_err err;

	strbuf_init(&s.b, 64 * 1024 * 1024);
	fuzz_check(message_write(m, sink_add, &s, &err) == 0, "message_write failed");
	fuzz_check((long long)s.b.len == message_transmit_size(m),
	    "message_transmit_size is not what message_write writes");
	message_init(&again);
	if (m->has_header && transmitted(m) > 0) {
		fuzz_check(message_parse_buffer(s.b.data, s.b.len, &plain, &again, &err) == 0,
		    "a message written out does not parse");
		same_fields(m, &again, "a message written out parses to other fields");
	}
	message_free(&again);
	strbuf_free(&s.b);
}

static void
use_header(struct message *m)
{
	struct address_list rcpts = { NULL, 0, 0 };
	struct tm_err err;

	(void)message_header_recipients(m, &rcpts, &err);
	address_list_free(&rcpts);
	(void)message_has_resent(m);
	(void)message_find(m, "from", 0);
	message_drop_bcc(m);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct intake_params p = { .dot_ends = size % 2 == 1 };
	struct intake_params other = { .dot_ends = !p.dot_ends };
	struct message m, spooled;
	struct tm_err err;
	int rc, src;

	message_init(&m);
	if (message_parse_buffer((const char *)data, size, &other, &m, &err) == 0)
		check_fields(&m);
	message_free(&m);

	rc = message_parse_buffer((const char *)data, size, &p, &m, &err);
	message_init(&spooled);
	src = intake(data, size, &p, &spooled);
	fuzz_check(src != -2, "no spool file (is TMPDIR writable?)");
	fuzz_check(rc == src, "the intake in pieces and the buffer parse disagree on failing");
	if (rc == 0) {
		check_fields(&m);
		same_fields(&m, &spooled, "the intake in pieces found other fields");
		fuzz_check(m.spool_size == spooled.spool_size &&
		    m.body_offset == spooled.body_offset, "the intake in pieces spooled otherwise");
		fuzz_check(m.eight_bit == spooled.eight_bit && m.utf8_header == spooled.utf8_header &&
		    m.long_lines == spooled.long_lines && m.lines == spooled.lines,
		    "the intake in pieces flagged otherwise");
		use_header(&spooled);
		write_back(&spooled);
	}
	message_free(&spooled);
	message_free(&m);
	return 0;
}
