/* log.c: stderr reporting and the -v trace. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "log.h"

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

void
log_sanitize(char *dst, size_t size, const char *src, size_t len)
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
		} else if (c == '\\') {
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

static void
print_sanitized(const char *prefix, const char *text)
{
	char clean[2048];

	log_sanitize(clean, sizeof(clean), text, strlen(text));
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
