/*
 * deadletter.h: keeping a message that could not be delivered. The message
 * as read is appended to the dead letter file in mbox format (mboxrd: a
 * "From " separator line, body lines matching ^>*From  quoted with one more
 * '>', LF line ends, an empty line after), under an exclusive lock, to a
 * file created 0600 that must be a regular file owned by the user (no
 * symlinks). Nothing is lost: if that fails, the caller exits 73.
 */
#ifndef TM_DEADLETTER_H
#define TM_DEADLETTER_H

#include "err.h"
#include "message.h"

struct strbuf;

/*
 * Append m (its spool: the message as read, before any header change) to
 * path. envelope_from names the sender on the "From " line (NULL or "" ->
 * "MAILER-DAEMON"; white space and control bytes in it become '_'), dated
 * in local time as asctime(3) does, with English names whatever the locale.
 * The spool is streamed in TM_IO_BLOCK blocks. The lock is waited for up to
 * 10 s; the file is fsync'ed; a failed append is truncated away. A message
 * without a spool (spool_fd -1) can be saved only if it is empty.
 * Returns 0, or -1 with err (TM_ERR_IO, EX_CANTCREAT) naming the path and why.
 */
int deadletter_save(const char *path, const struct message *m, const char *envelope_from,
    struct tm_err *err);

/*
 * The inverse, for tests: text[len] is one entry as deadletter_save wrote
 * it (the "From " line, the message, the empty line). Appends the message
 * to out with LF line ends and one '>' taken from each ^>+From  line.
 * Returns 0, or -1 if text is not such an entry or out's limit was reached
 * (out then holds what was appended before).
 */
int deadletter_unquote(struct strbuf *out, const char *text, size_t len);

#endif
