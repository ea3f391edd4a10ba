/*
 * smtpd.h: `sendmail -bs`, the server side of SMTP (RFC 5321) on stdin and
 * stdout, for Symfony Mailer, Laravel and other programs that speak SMTP to
 * sendmail instead of piping a message into it. No AUTH and no STARTTLS:
 * the client is a local process that started this program itself. Each
 * message is delivered by the handler before its reply is sent, so a 250
 * still means the provider has it, and a failure is a 4xx or 5xx reply
 * chosen from the error's exit code (smtpd_failure_reply, pure).
 */
#ifndef TM_SMTPD_H
#define TM_SMTPD_H

#include <stddef.h>

#include "address.h"
#include "err.h"
#include "message.h"

struct smtpd_handlers {
	void *ctx;
	/* MAIL FROM: check the reverse-path (as given inside <>; "" is the
	   null sender). -1 with err refuses it. */
	int (*sender)(void *ctx, const char *path, struct tm_err *err);
	/* RCPT TO: turn one forward-path into envelope recipients appended
	   to rcpts. -1 with err refuses it (rcpts unchanged). */
	int (*recipient)(void *ctx, const char *path, struct address_list *rcpts,
	    struct tm_err *err);
	/* End of DATA: deliver msg from mail_from to rcpts. The handler may
	   take msg and rcpts (leaving them as message_init and a zeroed list
	   leave them); the session frees whatever remains. 0 with a short
	   text for the 250 reply in ok[size], or -1 with err. */
	int (*deliver)(void *ctx, const char *mail_from, struct address_list *rcpts,
	    struct message *msg, char *ok, size_t size, struct tm_err *err);
};

struct smtpd_params {
	int in_fd, out_fd;
	const char *hostname;		/* for the greeting and EHLO */
	long long max_size;		/* SIZE advertised and enforced */
	int idle_seconds;		/* waiting for a command or for data */
	const char *tmpdir;		/* for the message spool; NULL: $TMPDIR, /tmp */
	const struct tm_err *refuse;	/* non-NULL: greet 421 with it and end */
};

/*
 * Serve one session until QUIT or the end of input. Returns 0 after QUIT,
 * or at the end of input between transactions; -1 with err: EX_TEMPFAIL
 * when the client stayed silent idle_seconds, EX_IOERR when reading or
 * writing failed or the input ended inside DATA, p->refuse's code when
 * the session was refused, EX_PROTOCOL after too many bad commands.
 */
int smtpd_serve(const struct smtpd_params *p, const struct smtpd_handlers *h,
    struct tm_err *err);

/*
 * The reply for a refused recipient or a failed delivery, CRLF-terminated,
 * into out[size]: the code and enhanced code follow the exit code (75: 451
 * 4.x.x, 67: 550 5.1.1, 77: 550 5.7.1, 65: 554 5.6.0, local failures: 451
 * 4.3.0), or the server's own reply code when it is of the same class;
 * the text is err's message, and a second line its hint. Pure.
 */
void smtpd_failure_reply(const struct tm_err *err, char *out, size_t size);

#endif
