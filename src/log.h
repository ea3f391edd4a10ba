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

struct address_list;

/*
 * Where the one line per message goes (SPEC 7). <syslog.h> also defines a
 * LOG_SYSLOG (a facility): a file that includes both must #undef it
 * between them, as log.c does.
 */
enum log_target { LOG_SYSLOG, LOG_STDERR, LOG_FILE };

/* Room for a formatted log line: the per-field bounds in log.c keep every
   line shorter than this. */
#define LOG_LINE_MAX	8192

/* What is logged about one message. No field may hold a token, a secret
   or body text. NULL (or a negative size) leaves a field out. */
struct log_record {
	const char *account;		/* account name */
	const char *method;		/* "smtp" or "graph" */
	const char *envelope_from;	/* the envelope sender, "" for <> */
	const struct address_list *rcpts; /* envelope recipients */
	long long size;			/* octets sent, or of the message */
	const char *message_id;		/* Message-ID, with its brackets */
	const char *outcome;		/* "sent", "deferred" or "failed" */
	const char *reply;		/* the server's final reply or the error */
	double seconds;			/* how long delivery took */
	int exit_code;			/* what tokenmail exits with */
	const char *request_id;		/* Graph's client-request-id, or NULL */
};

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

/*
 * Format r as one key=value line into out[size]: "account=app method=smtp
 * from=<a@x> to=<b@y>,<c@z> size=1234 msgid=<id@x> result=sent
 * reply="250 2.0.0 OK" duration=0.42s exit=0". Values are sanitized
 * (log_sanitize) and bounded (reply at most 300 octets, recipients cut
 * short with ",...+N"); a value holding a space or '"', or empty, is put in
 * double quotes with '"' escaped as \". Returns 0, or -1 when out was too
 * small (it then holds a truncated line, always terminated).
 */
int log_format_message(char *out, size_t size, const struct log_record *r);

/*
 * Log r: to syslog ("tokenmail", mail facility, LOG_INFO sent, LOG_WARNING
 * deferred, LOG_ERR otherwise), to stderr ("tokenmail: LINE"), or appended
 * to file ("2026-11-22T23:30:43+0100 tokenmail[PID]: LINE", one write(2),
 * created 0600, no symlinks). extra_file (-X), if not NULL, gets the file
 * line as well. Returns 0, or -1 with err (TM_ERR_IO, EX_IOERR, the first
 * failure) naming the file and why: the caller only warns.
 */
int log_message(enum log_target target, const char *file, const char *extra_file,
    const struct log_record *r, struct tm_err *err);

/* Append "DATE tokenmail[pid]: line" to path in one write(2), as
   log_message does for a file (setgid mode's broker writes it for the
   main process, which no longer may). Errors as log_message's. */
int log_append_file(const char *path, const char *line, long pid, struct tm_err *err);

#endif
