/* err.c: filling struct tm_err. */
#include <stdio.h>
#include <string.h>

#include "err.h"
#include "util.h"

void
tm_err_clear(struct tm_err *e)
{
	memset(e, 0, sizeof(*e));
}

int
tm_err_vset(struct tm_err *e, enum tm_err_class cls, int exit_code,
    const char *fmt, va_list ap)
{
	e->cls = cls;
	e->exit = exit_code;
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	return -1;
}

int
tm_err_set(struct tm_err *e, enum tm_err_class cls, int exit_code,
    const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	tm_err_vset(e, cls, exit_code, fmt, ap);
	va_end(ap);
	return -1;
}

void
tm_err_hint(struct tm_err *e, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(e->hint, sizeof(e->hint), fmt, ap);
	va_end(ap);
}

void
tm_err_server(struct tm_err *e, const char *text)
{
	(void)str_copy(e->server, sizeof(e->server), text);
}

void
tm_err_detail(struct tm_err *e, const char *fmt, ...)
{
	size_t used = strlen(e->detail);
	char line[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (used + strlen(line) + 2 > sizeof(e->detail))
		return;
	(void)str_format(e->detail + used, sizeof(e->detail) - used, "%s\n", line);
}

void
tm_err_prefix(struct tm_err *e, const char *fmt, ...)
{
	char prefix[256], old[sizeof(e->msg)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	memcpy(old, e->msg, sizeof(old));
	/* Truncation keeps the start of the message, which is what matters. */
	(void)str_format(e->msg, sizeof(e->msg), "%s: %s", prefix, old);
}
