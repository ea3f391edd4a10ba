/*
 * smtp.h: tokenmail's SMTP submission client (RFC 5321 with PIPELINING,
 * SIZE, 8BITMIME, SMTPUTF8, DSN, ENHANCEDSTATUSCODES, AUTH XOAUTH2 and
 * OAUTHBEARER). One state machine: each state has one sender and one reply
 * handler; EHLO capabilities are bit flags, cleared and read again after
 * STARTTLS. A token is only ever written to a connection that is TLS
 * (or to loopback with tls: none), and is redacted from the -v trace where
 * it is sent. The reply parser is pure so tests and fuzzers drive it.
 */
#ifndef TM_SMTP_H
#define TM_SMTP_H

#include <stdbool.h>
#include <stddef.h>

#include "address.h"
#include "config.h"
#include "err.h"
#include "message.h"

/* RFC 5321 4.5.3.1.5: a reply line is at most 512 octets. */
#define SMTP_LINE_MAX		512
/* A whole multi-line reply (EHLO with many extensions). */
#define SMTP_REPLY_MAX		8192

enum smtp_stage {
	SMTP_STAGE_CONNECT, SMTP_STAGE_GREETING, SMTP_STAGE_EHLO, SMTP_STAGE_STARTTLS,
	SMTP_STAGE_AUTH, SMTP_STAGE_MAIL, SMTP_STAGE_RCPT, SMTP_STAGE_DATA,
	SMTP_STAGE_DOT, SMTP_STAGE_QUIT, SMTP_STAGE_DONE
};

struct smtp_reply {
	int code;			/* 3 digits */
	char enhanced[16];		/* "5.7.30" when the server sent one, else "" */
	char text[SMTP_REPLY_MAX];	/* all lines' text, '\n'-separated, codes removed */
};

/*
 * Parse one reply line ("250-PIPELINING", "535 5.7.3 Authentication
 * unsuccessful"): 3 digits, then ' ' (last line) or '-' (more follow),
 * then printable text; at most SMTP_LINE_MAX octets. Returns 0 with *code,
 * *last and *text (pointing into line), or -1 with err (TM_ERR_PROTO,
 * EX_PROTOCOL) saying what is wrong. Pure.
 */
int smtp_reply_line(const char *line, size_t len, int *code, bool *last, const char **text,
    struct tm_err *err);

/*
 * Add one received line (without CRLF) to r, which the caller zeroes
 * before the first line: the line is checked with smtp_reply_line, its
 * code must be the first line's, its text is appended ('\n'-separated)
 * within SMTP_REPLY_MAX, and the first line gives r->enhanced. *done is
 * true after the last line. -1 with err (TM_ERR_PROTO, EX_PROTOCOL). Pure.
 */
int smtp_reply_add(struct smtp_reply *r, const char *line, size_t len, bool *done,
    struct tm_err *err);

/* "550 5.7.30 text more text" (lines joined by spaces) into out[size],
   truncated when it does not fit. */
void smtp_reply_format(const struct smtp_reply *r, char *out, size_t size);

/*
 * What to change for a refusal: looked up by the enhanced status code
 * ("5.2.252"), else by the reply code (535, 552, 421). A static string,
 * or NULL when the table knows nothing better than the reply. Pure.
 */
const char *smtp_hint(const char *enhanced, int code);

/* A decoded SASL error challenge kept for the error report. */
#define SMTP_CHALLENGE_MAX	1024

/*
 * The error challenge of a 334 that answers an XOAUTH2 or OAUTHBEARER
 * response (text: base64 of a JSON status, RFC 7628 3.2.2), decoded for
 * the error report into out[size] (SMTP_CHALLENGE_MAX): control bytes as
 * \xNN and backslashes doubled (log_sanitize), cut with "..." when it does
 * not fit. Text that is not base64, decodes to nothing or to more than
 * SMTP_CHALLENGE_MAX octets is kept as sent, escaped the same way. Pure.
 */
void smtp_sasl_error_decode(const char *text, char *out, size_t size);

/* EHLO extensions (RFC 5321 4.1.1.1 and the RFCs named in the file comment). */
#define SMTP_CAP_PIPELINING	0x001u
#define SMTP_CAP_SIZE		0x002u
#define SMTP_CAP_8BITMIME	0x004u
#define SMTP_CAP_SMTPUTF8	0x008u
#define SMTP_CAP_DSN		0x010u
#define SMTP_CAP_ENHANCED	0x020u
#define SMTP_CAP_STARTTLS	0x040u
#define SMTP_CAP_AUTH		0x080u
#define SMTP_CAP_CHUNKING	0x100u	/* recorded only: BDAT is not used yet */

struct smtp_caps {
	unsigned flags;		/* SMTP_CAP_* */
	long long size;		/* SIZE limit in octets; 0: none given */
	char auth[256];		/* AUTH mechanisms, space-separated, as offered
				   ("AUTH" and the old "AUTH=" lines together) */
};

/* Parse the text of a 250 EHLO reply (smtp_reply.text; the first line is
   the server's name) into caps, replacing what it held. Pure. */
void smtp_ehlo_caps(const char *text, struct smtp_caps *caps);

/* true if caps offers the SASL mechanism mech (case-insensitive). */
bool smtp_caps_has_auth(const struct smtp_caps *caps, const char *mech);

/*
 * Encode in as RFC 3461 xtext ("+" and "=" and octets outside '!'..'~' as
 * "+HH") into out[size]. -1 when it did not fit. Pure.
 */
int smtp_xtext(const char *in, char *out, size_t size);

struct smtp_params {
	const struct smtp_settings *server;	/* host, port, tls, auth, user */
	const char *ca_file;		/* extra trust anchors, or NULL */
	int timeout_cap;		/* config timeout: caps each RFC 5321 timeout */
	const char *helo_name;		/* this host's name for EHLO */
	const char *access_token;	/* NULL with auth: none */
	const char *envelope_from;	/* "" for the null sender */
	const struct address_list *rcpts;
	const struct message *msg;	/* streamed from its spool, dot-stuffed */
	const char *dsn_notify, *dsn_ret, *dsn_envid;	/* -N -R -V, or NULL */
	bool *rcpt_done;		/* NULL, or rcpts->count flags set true for each
					   recipient delivered, so that a retry after a
					   later transaction failed goes to the others only */
	bool probe_only;		/* tokenmail check: QUIT once AUTH succeeded (or,
					   with auth: none, after EHLO over TLS): no MAIL,
					   RCPT or DATA; envelope_from, rcpts and msg
					   may be NULL */
};

struct smtp_result {
	enum smtp_stage stage;		/* where the session ended or failed */
	struct smtp_reply reply;	/* the last reply that decided the outcome */
	bool auth_rejected;		/* 535 (or 5.7.x) after AUTH: try one fresh token */
	size_t round_trips;		/* request/response turns, for -v and benchmarks */
	size_t delivered;		/* recipients the server took the message for */
	char tls[96];			/* "TLS1.3 / AES-256-GCM" once TLS is up (the
					   certificate verified), else "" */
};

/*
 * What to change when Exchange Online answers AUTH with 5.7.139 (SMTP AUTH
 * disabled): the reply text tells the tenant-wide switch, the mailbox's
 * and security defaults apart; the commands name the mailbox user. Into
 * out[size] (truncated if need be); -1 for any other reply (smtp_hint's
 * static text then stands). Pure.
 */
int smtp_auth_hint(const struct smtp_reply *r, const char *user, char *out, size_t size);

/*
 * Deliver p->msg to p->rcpts in one session (several transactions when
 * the server answers 452 to some recipients). Returns 0 when the server
 * accepted the message for every recipient, else -1 with err:
 * EX_TEMPFAIL (4xx, connection lost, timeout), EX_UNAVAILABLE (5xx; TLS
 * refused or unverifiable; STARTTLS not offered), EX_NOUSER (a recipient
 * refused permanently: nothing sent; RSET, or, when the pipelined DATA
 * got 354 anyway, the connection closed before any data), EX_NOPERM (AUTH
 * refused; also r->auth_rejected), EX_PROTOCOL (a reply that breaks the
 * protocol), EX_DATAERR (larger than the server's SIZE). err->server holds the
 * server's reply and err->hint what to change (Microsoft's usual replies
 * each have one). With p->probe_only the session ends with QUIT after
 * AUTH: 0 means the server took the credentials; nothing is sent.
 */
int smtp_deliver(const struct smtp_params *p, struct smtp_result *r, struct tm_err *err);

#endif
