/* log.c: stderr reporting, the -v trace, and the one line per message. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

/* <syslog.h>'s facility LOG_SYSLOG would hide enum log_target's value. */
#undef LOG_SYSLOG

#include "address.h"
#include "log.h"
#include "tm_limits.h"
#include "util.h"

/* Bounds of the values in a message line, sanitized, before quoting. */
#define LOG_ACCOUNT_MAX	TM_NAME_MAX
#define LOG_METHOD_MAX	32
#define LOG_ADDRESS_MAX	300
#define LOG_TO_MAX	1500
#define LOG_MSGID_MAX	256
#define LOG_REPLY_MAX	301	/* 300 octets and the NUL */

/* A line being built in a caller's buffer; full once something did not fit. */
struct line {
	char *buf;
	size_t size;
	size_t len;
	bool full;
};

static bool verbose_on;

void
log_set_verbose(bool on)
{
	verbose_on = on;
}

bool
log_verbose(void)
{
	return verbose_on;
}

/* log_sanitize; backslashes doubled only with escape_backslash. */
static void
sanitize(char *dst, size_t size, const char *src, size_t len, bool escape_backslash)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0, i;

	if (size == 0)
		return;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)src[i];
		char esc[5];
		size_t n;

		if (c < 0x20 || c == 0x7f) {
			esc[0] = '\\';
			esc[1] = 'x';
			esc[2] = hex[c >> 4];
			esc[3] = hex[c & 15];
			n = 4;
		} else if (c == '\\' && escape_backslash) {
			esc[0] = esc[1] = '\\';
			n = 2;
		} else {
			esc[0] = (char)c;
			n = 1;
		}
		if (o + n + 4 > size) {
			if (size >= 4) {
				o = o < size - 4 ? o : size - 4;
				memcpy(dst + o, "...", 3);
				o += 3;
			}
			break;
		}
		memcpy(dst + o, esc, n);
		o += n;
	}
	dst[o < size ? o : size - 1] = '\0';
}

void
log_sanitize(char *dst, size_t size, const char *src, size_t len)
{
	sanitize(dst, size, src, len, true);
}

/*
 * A report line: control bytes escaped, backslashes left alone, since
 * messages may hold text log_sanitize already escaped (addresses in
 * errors) and doubling its backslashes would garble it.
 */
static void
print_sanitized(const char *prefix, const char *text)
{
	char clean[2048];

	sanitize(clean, sizeof(clean), text, strlen(text), false);
	fprintf(stderr, "%s%s\n", prefix, clean);
}

static void __attribute__((format(printf, 2, 0)))
vprint(const char *prefix, const char *fmt, va_list ap)
{
	char text[2048];

	vsnprintf(text, sizeof(text), fmt, ap);
	print_sanitized(prefix, text);
}

void
log_warn(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprint("tokenmail: warning: ", fmt, ap);
	va_end(ap);
}

void
log_trace(const char *fmt, ...)
{
	va_list ap;

	if (!verbose_on)
		return;
	va_start(ap, fmt);
	vprint("tokenmail: ", fmt, ap);
	va_end(ap);
}

static void
print_detail_lines(const char *detail)
{
	const char *p = detail;

	while (*p) {
		const char *nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p) : strlen(p);
		char clean[1200];

		log_sanitize(clean, sizeof(clean), p, n < 1024 ? n : 1024);
		fprintf(stderr, "  %s\n", clean);
		p += n + (nl ? 1 : 0);
	}
}

void
log_report(const struct tm_err *e, const char *context)
{
	print_sanitized("tokenmail: ", e->msg[0] ? e->msg : "unknown error");
	if (e->server[0])
		print_sanitized("  server: ", e->server);
	if (e->detail[0])
		print_detail_lines(e->detail);
	if (e->hint[0])
		print_sanitized("  hint: ", e->hint);
	if (context && context[0])
		fprintf(stderr, "  (%s)\n", context);
	fflush(stderr);
}

static void
line_add(struct line *l, const char *s, size_t n)
{
	if (l->full || n >= l->size - l->len) {
		l->full = true;
		return;
	}
	memcpy(l->buf + l->len, s, n);
	l->len += n;
	l->buf[l->len] = '\0';
}

static bool
needs_quotes(const char *v)
{
	return v[0] == '\0' || strpbrk(v, " \"") != NULL;
}

/* " key=value", the value already sanitized; quoted if needed. */
static void
line_add_value(struct line *l, const char *key, const char *v)
{
	const char *p;

	if (l->len > 0)
		line_add(l, " ", 1);
	line_add(l, key, strlen(key));
	line_add(l, "=", 1);
	if (!needs_quotes(v)) {
		line_add(l, v, strlen(v));
		return;
	}
	line_add(l, "\"", 1);
	for (p = v; *p; p++) {
		if (*p == '"')
			line_add(l, "\\\"", 2);
		else
			line_add(l, p, 1);
	}
	line_add(l, "\"", 1);
}

/* " key=value" with value sanitized and cut to bound - 1 octets; nothing
   when value is NULL. */
static void
line_add_text(struct line *l, const char *key, const char *value, size_t bound)
{
	char clean[LOG_TO_MAX];

	if (value == NULL)
		return;
	if (bound > sizeof(clean))
		bound = sizeof(clean);
	log_sanitize(clean, bound, value, strlen(value));
	line_add_value(l, key, clean);
}

/* "<spec>" sanitized into out[size] (size > 2). */
static void
bracket_spec(char *out, size_t size, const char *spec)
{
	size_t n;

	out[0] = '<';
	log_sanitize(out + 1, size - 2, spec, strlen(spec));
	n = strlen(out);
	out[n] = '>';
	out[n + 1] = '\0';
}

/* "<a@x>,<b@y>", cut short with ",...+N" when it would pass LOG_TO_MAX. */
static void
format_rcpts(char *out, size_t size, const struct address_list *rcpts)
{
	char spec[TM_ADDRESS_MAX * 2], item[LOG_ADDRESS_MAX], more[32];
	size_t i, used = 0;

	out[0] = '\0';
	for (i = 0; i < rcpts->count; i++) {
		if (address_spec(&rcpts->items[i], spec, sizeof(spec)) < 0)
			(void)str_copy(spec, sizeof(spec), "?");
		bracket_spec(item, sizeof(item), spec);
		if (used + strlen(item) + 1 + sizeof(more) >= size) {
			(void)str_format(more, sizeof(more), ",...+%zu",
			    rcpts->count - i);
			(void)str_append(out, size, used > 0 ? more : more + 1);
			return;
		}
		if (used > 0)
			(void)str_append(out, size, ",");
		(void)str_append(out, size, item);
		used = strlen(out);
	}
}

int
log_format_message(char *out, size_t size, const struct log_record *r)
{
	struct line l = { out, size, 0, false };
	char v[LOG_TO_MAX];

	if (size == 0)
		return -1;
	out[0] = '\0';
	line_add_text(&l, "account", r->account, LOG_ACCOUNT_MAX);
	line_add_text(&l, "method", r->method, LOG_METHOD_MAX);
	if (r->envelope_from) {
		bracket_spec(v, LOG_ADDRESS_MAX, r->envelope_from);
		line_add_value(&l, "from", v);
	}
	if (r->rcpts) {
		format_rcpts(v, sizeof(v), r->rcpts);
		line_add_value(&l, "to", v);
	}
	if (r->size >= 0) {
		(void)str_format(v, sizeof(v), "%lld", r->size);
		line_add_value(&l, "size", v);
	}
	line_add_text(&l, "msgid", r->message_id, LOG_MSGID_MAX);
	line_add_text(&l, "result", r->outcome ? r->outcome : "unknown", LOG_METHOD_MAX);
	line_add_text(&l, "reply", r->reply, LOG_REPLY_MAX);
	if (r->request_id)
		line_add_value(&l, "request-id", r->request_id);
	(void)str_format(v, sizeof(v), "%.2fs", r->seconds);
	line_add_value(&l, "duration", v);
	(void)str_format(v, sizeof(v), "%d", r->exit_code);
	line_add_value(&l, "exit", v);
	return l.full ? -1 : 0;
}

static void
log_to_syslog(const char *outcome, const char *line)
{
	int prio = LOG_ERR;

	if (outcome && strcmp(outcome, "sent") == 0)
		prio = LOG_INFO;
	else if (outcome && strcmp(outcome, "deferred") == 0)
		prio = LOG_WARNING;
	openlog("tokenmail", LOG_PID, LOG_MAIL);
	syslog(prio, "%s", line);
	closelog();
}

int
log_append_file(const char *path, const char *line, long pid, struct tm_err *err)
{
	char buf[LOG_LINE_MAX + 128], stamp[64];
	time_t now = time(NULL);
	struct tm lt;
	ssize_t n;
	size_t len;
	int fd, saved = 0;

	if (path == NULL || path[0] == '\0')
		return tm_err_set(err, TM_ERR_INTERNAL, EX_SOFTWARE, "no log file given");
	localtime_r(&now, &lt);
	if (strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S%z", &lt) == 0)
		stamp[0] = '\0';
	(void)str_format(buf, sizeof(buf), "%s tokenmail[%ld]: %s\n", stamp, pid, line);
	len = strlen(buf);
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_NONBLOCK |
	    O_CLOEXEC, 0600);
	if (fd < 0)
		return tm_err_set(err, TM_ERR_IO, EX_IOERR, "log file %s: %s", path,
		    errno == ELOOP ? "is a symbolic link" : strerror(errno));
	n = write(fd, buf, len);
	if (n < 0)
		saved = errno;
	else if ((size_t)n != len)
		saved = EIO;	/* a short write: the disk is full */
	if (close(fd) < 0 && saved == 0)
		saved = errno;
	if (saved != 0)
		return tm_err_set(err, TM_ERR_IO, EX_IOERR, "log file %s: %s", path,
		    strerror(saved));
	return 0;
}

int
log_message(enum log_target target, const char *file, const char *extra_file,
    const struct log_record *r, struct tm_err *err)
{
	char line[LOG_LINE_MAX];
	struct tm_err later;
	int rc = 0;

	(void)log_format_message(line, sizeof(line), r);
	switch (target) {
	case LOG_SYSLOG:
		log_to_syslog(r->outcome, line);
		break;
	case LOG_STDERR:
		fprintf(stderr, "tokenmail: %s\n", line);
		fflush(stderr);
		break;
	case LOG_FILE:
		rc = log_append_file(file, line, (long)getpid(), err);
		break;
	}
	if (extra_file && log_append_file(extra_file, line, (long)getpid(),
	    rc == 0 ? err : &later) < 0)
		rc = -1;
	return rc;
}
