/*
 * tap.h: a tiny Test Anything Protocol emitter for the unit tests. Each
 * check prints "ok N - what" or "not ok N - what" with the values that
 * differed; tap_done() prints the plan and gives the exit status.
 */
#ifndef TM_TAP_H
#define TM_TAP_H

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int tap_count;
static int tap_failures;

static void __attribute__((format(printf, 2, 3)))
tap_ok(int ok, const char *fmt, ...)
{
	va_list ap;

	tap_count++;
	if (!ok)
		tap_failures++;
	printf("%sok %d - ", ok ? "" : "not ", tap_count);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

static void __attribute__((unused))
tap_diag(const char *got, const char *want)
{
	printf("#   got:  [%s]\n#   want: [%s]\n", got ? got : "(null)", want ? want : "(null)");
}

/* Compare two strings (either may be NULL); print both when they differ. */
static int __attribute__((unused, format(printf, 3, 4)))
tap_is_str(const char *got, const char *want, const char *fmt, ...)
{
	int ok = (got == NULL && want == NULL) ||
	    (got != NULL && want != NULL && strcmp(got, want) == 0);
	char what[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	tap_ok(ok, "%s", what);
	if (!ok)
		tap_diag(got, want);
	return ok;
}

static int __attribute__((unused, format(printf, 3, 4)))
tap_is_int(long got, long want, const char *fmt, ...)
{
	char what[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	tap_ok(got == want, "%s", what);
	if (got != want)
		printf("#   got:  %ld\n#   want: %ld\n", got, want);
	return got == want;
}

static int __attribute__((unused))
tap_done(void)
{
	printf("1..%d\n", tap_count);
	return tap_failures ? 1 : 0;
}

#endif
