/*
 * message.h: message intake. Reads the message from a file descriptor
 * (stdin) with sendmail's rules, spools it to a private unlinked temp file
 * so memory stays flat whatever its size, and keeps only the header block
 * in memory, parsed into fields. Later stages edit the header through this
 * API (drop Bcc, add Date/Message-ID/From, rewrite From) and write the
 * message as transmitted with message_write().
 *
 * Rules (SPEC section 2): LF, CRLF or a mix in, CRLF in the spool; a leading
 * mbox "From " line is dropped; without -i a line holding a single dot ends
 * the message (what follows is read and dropped, so that a caller still
 * writing gets no SIGPIPE); the header ends at the first empty line, or at the first line
 * that is neither a field nor a continuation (a blank line is then supplied,
 * as Postfix does); input that does not start with a header field is all
 * body. Input ending without a newline gets one. Empty input is a message
 * with no header and an empty body. A CR not followed by LF is data in the
 * body; in a header field it is refused (EX_DATAERR) once the whole message
 * is in the spool (message_check_header). There
 * is no dot unstuffing on input (classic sendmail): ".." stays "..".
 * Refused with EX_DATAERR: a NUL byte, a header line over 998 octets, a
 * header block over TM_HEADER_BLOCK_MAX or TM_HEADER_FIELDS_MAX fields, a
 * message over max_size. Body lines over 998 octets are kept (long_lines).
 */
#ifndef TM_MESSAGE_H
#define TM_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "address.h"
#include "err.h"

struct header_field {
	char *name;	/* field name as received, e.g. "Subject" */
	char *value;	/* unfolded value: CRLFs of folding removed, leading and
			   trailing white space trimmed */
	char *raw;	/* the field as it will be transmitted: all its lines,
			   CRLF-terminated; as received unless replaced */
	bool dropped;	/* not transmitted (Bcc, Resent-Bcc); still read for -t */
	bool added;	/* added by tokenmail, not in the input */
};

struct message {
	int spool_fd;		/* unlinked 0600 temp file: the message as read
				   (header lines, the empty line if any, body),
				   CRLF; -1 without a spool */
	long long spool_size;	/* bytes in the spool (message_parse_buffer:
				   the bytes it would hold) */
	long long body_offset;	/* where the body starts in the spool: after the
				   empty line, or at the first non-header line */
	struct header_field *fields;
	size_t nfields;
	size_t cap;
	bool has_header;	/* input started with a header field */
	bool eight_bit;		/* some byte is >= 0x80 (needs 8BITMIME) */
	bool utf8_header;	/* the header holds non-ASCII bytes (needs SMTPUTF8) */
	bool long_lines;	/* some body line exceeds 998 octets */
	size_t lines;		/* input lines read, the "From " line included */
	size_t lone_cr_line;	/* first header line holding a CR not followed
				   by LF, or 0 (message_check_header) */
};

struct intake_params {
	bool dot_ends;		/* no -i: a line with a single dot ends the message */
	const char *tmpdir;	/* directory for the spool; NULL: $TMPDIR, else /tmp */
	long long max_size;	/* refuse larger messages (EX_DATAERR), counted in
				   spool octets; <= 0: TM_MESSAGE_MAX */
	int idle_seconds;	/* give up when fd stays silent this long
				   (EX_TEMPFAIL); <= 0: TM_STDIN_IDLE_SECONDS */
};

/* Set m to an empty message (no spool yet, spool_fd -1). */
void message_init(struct message *m);

/*
 * Read the whole message from fd into m (initialised with message_init).
 * The spool goes in p->tmpdir, else $TMPDIR, else /tmp. After a lone dot
 * (without -i) nothing more is read from fd.
 * Returns 0, or -1 with err: EX_DATAERR for bad input (naming the line),
 * EX_IOERR for read/spool failures (naming the spool directory),
 * EX_TEMPFAIL for the idle timeout. On -1, m keeps what was read before the
 * error (fields so far, the rest as body) for a dead letter; message_free
 * it either way. Memory use does not depend on the size of the body.
 */
int message_read(int fd, const struct intake_params *p, struct message *m,
    struct tm_err *err);

/*
 * The same intake fed in pieces, for input that is not a plain descriptor
 * (the DATA of an SMTP session): start creates the spool and *out; feed
 * gives it bytes (after a lone dot, without -i, the rest is ignored:
 * message_intake_ended then says so); finish completes the message and
 * frees the intake. finish with failed = true (or a failure inside it)
 * keeps what was read for a dead letter, as message_read does. feed and
 * finish fail with the err given to start; finish returns -1 when failed.
 */
struct message_intake;
int message_intake_start(const struct intake_params *p, struct message *m,
    struct message_intake **out, struct tm_err *err);
int message_intake_feed(struct message_intake *in, const char *data, size_t n);
bool message_intake_ended(const struct message_intake *in);
int message_intake_finish(struct message_intake *in, bool failed);

/* -1 with err (EX_DATAERR, naming the line) when a header field holds a CR
   not followed by LF; message_read and message_parse_buffer check it, the
   user of message_intake_* calls it after finish. */
int message_check_header(const struct message *m, struct tm_err *err);

/*
 * Parse text[len] (a complete message, any line endings) exactly as
 * message_read would, without a spool: for unit tests and fuzzers.
 * m->spool_fd stays -1; the body is not kept, so message_write writes only
 * the header and the empty line. Errors as message_read (EX_DATAERR only).
 */
int message_parse_buffer(const char *text, size_t len, const struct intake_params *p,
    struct message *m, struct tm_err *err);

/* Index of the first field named name (case-insensitive) at or after start
   that is not dropped, or -1. */
long message_find(const struct message *m, const char *name, size_t start);

/* true if any Resent-* field is present. */
bool message_has_resent(const struct message *m);

/*
 * Append the -t recipients to out: every To:, Cc: and Bcc: field (all of
 * them: logwatch writes one To: per address; dropped Bcc: fields too), or
 * Resent-To/Cc/Bcc when the message has Resent- fields. A field with an
 * empty value names nobody. -1 with err (EX_DATAERR, "To: header: ...")
 * naming the field if one cannot be parsed; out is then unchanged.
 */
int message_header_recipients(const struct message *m, struct address_list *out,
    struct tm_err *err);

/* Mark Bcc: and Resent-Bcc: fields dropped. */
void message_drop_bcc(struct message *m);

/* Append a new field "name: value\r\n" (added = true), written after the
   received fields. value must not hold CR/LF (any is made a space). */
void message_add_field(struct message *m, const char *name, const char *value);

/* Replace field index with "Name: value\r\n" in place (same position, name
   as received, flags kept); CR/LF in value as for message_add_field. */
void message_replace_field(struct message *m, size_t index, const char *value);

/*
 * Add Date: (RFC 5322 date-time in local time, English names whatever the
 * locale: "Sun, 22 Nov 2026 22:30:43 +0100") and Message-ID:
 * ("<32 hex digits@domain>", domain "localhost" when NULL or empty) when
 * missing.
 */
void message_add_missing_ids(struct message *m, const char *msgid_domain);

/* Mark field index dropped: it is not transmitted. */
void message_drop_field(struct message *m, size_t index);

/*
 * Set an address field to items (formatted mailboxes, no CR/LF), folded one
 * per line: "To: a,\r\n b\r\n". index >= 0 replaces that field in place;
 * index < 0 appends a new field called name (added = true). n must be > 0.
 */
void message_set_address_field(struct message *m, long index, const char *name,
    const char *const *items, size_t n);

/* Size in bytes of the message as message_write() writes it (exactly). */
long long message_transmit_size(const struct message *m);

/*
 * Write the message as transmitted to sink: the non-dropped fields in order
 * (added ones after the received ones), an empty line, then the body from
 * the spool, read in TM_IO_BLOCK blocks. CRLF line ends; no dot-stuffing
 * (that is SMTP's business). sink returns 0 or -1; a -1 stops the write
 * and is returned with err untouched (a sink reports its own failure, for
 * instance through an err pointer in ctx). A spool read error is EX_IOERR.
 */
typedef int (*message_sink)(void *ctx, const char *data, size_t len);
int message_write(const struct message *m, message_sink sink, void *ctx,
    struct tm_err *err);
/* Only the header part of message_write: the fields and the empty line.
   The body is then the spool from m->body_offset to m->spool_size. */
int message_write_header(const struct message *m, message_sink sink, void *ctx);

/* Release fields and close the spool; m is left as message_init leaves
   it, so a second call is harmless. */
void message_free(struct message *m);

#endif
