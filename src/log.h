/*
 * log.h: everything tokenmail says to a person. Errors on stderr in three
 * parts (what failed, what the server said, what to change), warnings, and
 * the -v protocol trace. Text that came from outside (servers, messages,
 * config) is escaped before it is printed, so it cannot forge lines or
 * drive the terminal.
 */
#ifndef TM_LOG_H
#define TM_LOG_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"

/* Turn the -v trace on or off. */
void log_set_verbose(bool on);
bool log_verbose(void);

/* "tokenmail: warning: ..." on stderr. */
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* "tokenmail: ..." trace line on stderr, only with -v. */
void log_trace(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Print e on stderr: "tokenmail: <msg>", then "  server: ...", "  hint: ...",
 * the detail lines, and "  (account A, config FILE)" when context is not NULL.
 */
void log_report(const struct tm_err *e, const char *context);

/*
 * Copy src[len] into dst[size] with control bytes and DEL escaped as \xNN
 * (and '\\' as "\\\\"); always terminates, truncating with "..." when full.
 */
void log_sanitize(char *dst, size_t size, const char *src, size_t len);

#endif
