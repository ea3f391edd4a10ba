/*
 * err.h: the one error type. A fallible function returns 0 or -1 and fills
 * a struct tm_err: what failed, the sysexits code it maps to, what the server
 * said, and what the person can change. Only main.c turns it into an exit.
 */
#ifndef TM_ERR_H
#define TM_ERR_H

#include <stdarg.h>
#include <sysexits.h>

enum tm_err_class {
	TM_ERR_NONE = 0,
	TM_ERR_INTERNAL,	/* a bug or resource failure: EX_SOFTWARE/EX_OSERR */
	TM_ERR_USAGE,		/* bad command line: EX_USAGE */
	TM_ERR_CONFIG,		/* bad configuration: EX_CONFIG */
	TM_ERR_DATA,		/* bad message or address: EX_DATAERR */
	TM_ERR_IO,		/* local I/O failure: EX_IOERR */
	TM_ERR_PERM,		/* not allowed: EX_NOPERM */
	TM_ERR_CONN,		/* network: EX_TEMPFAIL */
	TM_ERR_PROTO,		/* peer broke the protocol: EX_PROTOCOL */
	TM_ERR_AUTH,		/* authentication refused: EX_NOPERM */
	TM_ERR_RESP,		/* server refused: code decides */
	TM_ERR_IMPL		/* not implemented: EX_UNAVAILABLE */
};

struct tm_err {
	enum tm_err_class cls;
	int exit;		/* sysexits.h code */
	char msg[512];		/* what failed, one line */
	char server[1024];	/* the server's reply, sanitized, or "" */
	char hint[512];		/* what the person can change, or "" */
	char detail[2048];	/* further lines (e.g. more config errors), '\n'-separated */
};

/* Clear e (no error). */
void tm_err_clear(struct tm_err *e);

/* Set class, exit code and message; returns -1 so callers can `return tm_err_set(...)`. */
int tm_err_set(struct tm_err *e, enum tm_err_class cls, int exit_code,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
int tm_err_vset(struct tm_err *e, enum tm_err_class cls, int exit_code,
    const char *fmt, va_list ap) __attribute__((format(printf, 4, 0)));

/* Set the hint line. */
void tm_err_hint(struct tm_err *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Set the server reply (control bytes are escaped when printed). */
void tm_err_server(struct tm_err *e, const char *text);

/* Append one line to detail (dropped silently when detail is full). */
void tm_err_detail(struct tm_err *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prefix msg with "prefix: " (e.g. a file name). */
void tm_err_prefix(struct tm_err *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
