/*
 * message_header.c: the message after intake (message.h): finding and
 * editing header fields (Bcc dropped, From added or rewritten, Date and
 * Message-ID added), the -t recipients, and writing the message out as
 * transmitted, the body streamed from the spool.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "message.h"
#include "message_priv.h"
#include "tm_limits.h"
#include "util.h"

/* ---- the field list ---- */

/* Append an empty field to m and return it. */
struct header_field *
message_field_push(struct message *m)
{
	struct header_field *f;

	if (m->nfields == m->cap) {
		m->cap = m->cap ? 2 * m->cap : 16;
		m->fields = xreallocarray(m->fields, m->cap, sizeof(*m->fields));
	}
	f = &m->fields[m->nfields++];
	memset(f, 0, sizeof(*f));
	return f;
}

/* "Name: value\r\n", with any CR or LF in value made a space so that a
   caller's mistake cannot inject a header line. */
void
message_field_set(struct header_field *f, const char *value)
{
	char *v = xstrdup(value), *s;

	for (s = v; *s != '\0'; s++) {
		if (*s == '\r' || *s == '\n')
			*s = ' ';
	}
	free(f->value);
	free(f->raw);
	f->value = v;
	f->raw = xasprintf("%s: %s\r\n", f->name, v);
}

void
message_field_free(struct header_field *f)
{
	free(f->name);
	free(f->value);
	free(f->raw);
}

/* ---- API ---- */

long
message_find(const struct message *m, const char *name, size_t start)
{
	size_t i;

	for (i = start; i < m->nfields; i++) {
		if (!m->fields[i].dropped && str_eq_nocase(m->fields[i].name, name))
			return (long)i;
	}
	return -1;
}

bool
message_has_resent(const struct message *m)
{
	size_t i;

	for (i = 0; i < m->nfields; i++) {
		if (str_starts_nocase(m->fields[i].name, "Resent-"))
			return true;
	}
	return false;
}

static bool
name_in(const char *name, const char *const *names)
{
	for (; *names != NULL; names++) {
		if (str_eq_nocase(name, *names))
			return true;
	}
	return false;
}

int
message_header_recipients(const struct message *m, struct address_list *out,
    struct tm_err *err)
{
	static const char *const plain[] = { "To", "Cc", "Bcc", NULL };
	static const char *const resent[] = {
		"Resent-To", "Resent-Cc", "Resent-Bcc", NULL
	};
	const char *const *names = message_has_resent(m) ? resent : plain;
	struct address_list found = { 0 };
	size_t i;
	int rc = -1;

	for (i = 0; i < m->nfields; i++) {
		const struct header_field *f = &m->fields[i];

		/* An empty "To:" (PHP with only Bcc) names nobody; it is not an error. */
		if (!name_in(f->name, names) || f->value[0] == '\0')
			continue;
		if (address_list_parse(&found, f->value, strlen(f->value), err) < 0) {
			tm_err_prefix(err, "%s: header", f->name);
			goto out;
		}
	}
	/* Appended only when every field parsed, so out is unchanged on error. */
	for (i = 0; i < found.count; i++)
		address_list_add(out, &found.items[i]);
	rc = 0;
out:
	address_list_free(&found);
	return rc;
}

void
message_drop_bcc(struct message *m)
{
	size_t i;

	for (i = 0; i < m->nfields; i++) {
		if (str_eq_nocase(m->fields[i].name, "Bcc") ||
		    str_eq_nocase(m->fields[i].name, "Resent-Bcc"))
			m->fields[i].dropped = true;
	}
}

void
message_add_field(struct message *m, const char *name, const char *value)
{
	struct header_field *f = message_field_push(m);

	f->name = xstrdup(name);
	f->added = true;
	message_field_set(f, value);
}

void
message_replace_field(struct message *m, size_t index, const char *value)
{
	if (index < m->nfields)
		message_field_set(&m->fields[index], value);
}

/* Minutes east of UTC, from the broken-down local and UTC times of one instant
   (portable: no tm_gmtoff, no timegm). */
static long
utc_offset(const struct tm *lt, const struct tm *gt)
{
	long days = lt->tm_yday - gt->tm_yday;

	if (lt->tm_year != gt->tm_year)
		days = lt->tm_year < gt->tm_year ? -1 : 1;
	return days * 1440 + (lt->tm_hour - gt->tm_hour) * 60 + (lt->tm_min - gt->tm_min);
}

/* RFC 5322 3.3 date-time in local time. Names come from tables, not
   strftime, so a caller's locale cannot change them. */
static void
format_date(char *out, size_t size, time_t now)
{
	static const char days[7][4] = {
		"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"
	};
	static const char months[12][4] = {
		"Jan", "Feb", "Mar", "Apr", "May", "Jun",
		"Jul", "Aug", "Sep", "Oct", "Nov", "Dec"
	};
	struct tm lt, gt;
	long off;

	localtime_r(&now, &lt);
	gmtime_r(&now, &gt);
	off = utc_offset(&lt, &gt);
	(void)str_format(out, size, "%s, %d %s %04d %02d:%02d:%02d %c%02ld%02ld",
	    days[lt.tm_wday], lt.tm_mday, months[lt.tm_mon], lt.tm_year + 1900,
	    lt.tm_hour, lt.tm_min, lt.tm_sec, off < 0 ? '-' : '+',
	    labs(off) / 60, labs(off) % 60);
}

void
message_add_missing_ids(struct message *m, const char *msgid_domain)
{
	char buf[64 + TM_DOMAIN_MAX], id[33];

	if (message_find(m, "Date", 0) < 0) {
		format_date(buf, sizeof(buf), time(NULL));
		message_add_field(m, "Date", buf);
	}
	if (message_find(m, "Message-ID", 0) < 0) {
		if (msgid_domain == NULL || *msgid_domain == '\0')
			msgid_domain = "localhost";
		random_hex(id, sizeof(id), 16);
		(void)str_format(buf, sizeof(buf), "<%s@%s>", id, msgid_domain);
		message_add_field(m, "Message-ID", buf);
	}
}

void
message_drop_field(struct message *m, size_t index)
{
	if (index < m->nfields)
		m->fields[index].dropped = true;
}

/* items joined by ", " (the unfolded value) or by ",\r\n " (the raw field). */
static char *
join_items(const char *const *items, size_t n, const char *sep)
{
	struct strbuf b;
	size_t i;

	/* Room for the most recipients, each with the longest display name. */
	strbuf_init(&b, (size_t)TM_RECIPIENTS_MAX * (TM_DISPLAY_MAX + TM_ADDRESS_MAX + 8));
	for (i = 0; i < n; i++) {
		if (i > 0)
			(void)strbuf_append(&b, sep, strlen(sep));
		(void)strbuf_append(&b, items[i], strlen(items[i]));
	}
	return strbuf_take(&b);
}

void
message_set_address_field(struct message *m, long index, const char *name,
    const char *const *items, size_t n)
{
	struct header_field *f;
	char *folded;

	if (index < 0) {
		f = message_field_push(m);
		f->name = xstrdup(name);
		f->added = true;
	} else
		f = &m->fields[index];
	free(f->value);
	free(f->raw);
	f->value = join_items(items, n, ", ");
	folded = join_items(items, n, ",\r\n ");
	f->raw = xasprintf("%s: %s\r\n", f->name, folded);
	free(folded);
}

/* Octets of the transmitted body: none without a spool. */
static long long
body_size(const struct message *m)
{
	return m->spool_fd >= 0 ? m->spool_size - m->body_offset : 0;
}

long long
message_transmit_size(const struct message *m)
{
	long long size = 2;
	size_t i;

	for (i = 0; i < m->nfields; i++) {
		if (!m->fields[i].dropped)
			size += (long long)strlen(m->fields[i].raw);
	}
	return size + body_size(m);
}

/* The received fields, then the added ones, then the empty line. */
static int
write_header(const struct message *m, message_sink sink, void *ctx)
{
	int pass;
	size_t i;

	for (pass = 0; pass < 2; pass++) {
		for (i = 0; i < m->nfields; i++) {
			const struct header_field *f = &m->fields[i];

			if (f->dropped || f->added != (pass == 1))
				continue;
			if (sink(ctx, f->raw, strlen(f->raw)) < 0)
				return -1;
		}
	}
	return sink(ctx, "\r\n", 2);
}

/* The body from the spool, one block at a time. */
static int
write_body(const struct message *m, message_sink sink, void *ctx, struct tm_err *err)
{
	char *buf = xmalloc(TM_IO_BLOCK);
	long long off = m->body_offset;
	int rc = -1;

	while (off < m->spool_size) {
		long long left = m->spool_size - off;
		size_t want = left < TM_IO_BLOCK ? (size_t)left : TM_IO_BLOCK;
		ssize_t n = pread(m->spool_fd, buf, want, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			tm_err_set(err, TM_ERR_IO, EX_IOERR,
			    "cannot read the spool file: %s",
			    n < 0 ? strerror(errno) : "it is shorter than written");
			goto out;
		}
		if (sink(ctx, buf, (size_t)n) < 0)
			goto out;
		off += n;
	}
	rc = 0;
out:
	free(buf);
	return rc;
}

int
message_write_header(const struct message *m, message_sink sink, void *ctx)
{
	return write_header(m, sink, ctx);
}

int
message_write(const struct message *m, message_sink sink, void *ctx,
    struct tm_err *err)
{
	if (write_header(m, sink, ctx) < 0)
		return -1;
	if (m->spool_fd < 0)
		return 0;
	return write_body(m, sink, ctx, err);
}

void
message_free(struct message *m)
{
	size_t i;

	for (i = 0; i < m->nfields; i++)
		message_field_free(&m->fields[i]);
	free(m->fields);
	if (m->spool_fd >= 0)
		close(m->spool_fd);
	message_init(m);
}
