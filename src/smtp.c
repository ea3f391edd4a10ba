/*
 * smtp.c: the SMTP submission session (SPEC 6, PROTOCOL 3 and 5): connect,
 * TLS (implicit or STARTTLS), EHLO, AUTH XOAUTH2 or OAUTHBEARER, then one
 * or more mail transactions, then QUIT.
 *
 * One state machine. Each state has one sender (smtp_send_X) and one reply
 * handler (smtp_on_X); smtp_step() is the single dispatch switch. A handler
 * either moves to the next state or records the failure in err and moves
 * to RSET (a transaction is open) or QUIT. After a failure err is never
 * overwritten: later I/O errors go to a scratch error.
 *
 * Pipelining (RFC 2920): MAIL, every RCPT of a transaction and DATA go in
 * one group, flushed once (DATA may end a group, 3.1), and the replies are
 * read in order: one round trip from MAIL to the 354, one more for the
 * message. Without PIPELINING each command waits for its reply.
 *
 * With DATA in the group, the server may answer 354 after refusing a
 * recipient (or MAIL). Sending the message then would deliver it to a
 * subset, so a retry duplicates it; a lone "." would deliver an empty
 * message; RSET or QUIT would be taken as message data. So the connection
 * is closed at once with nothing more sent: a server takes the mail only
 * at the final dot (RFC 5321 4.1.1.4), so the open transaction delivers
 * nothing, and the outcome stays the refusal (EX_NOUSER, EX_TEMPFAIL):
 * nothing sent (SPEC 6). If DATA itself is refused (554 no valid
 * recipients, 503), RSET (QUIT after a refused MAIL) as without
 * pipelining. Recipients answered 452 (too many) do not stop the others:
 * their transaction goes on, and the deferred ones get the next.
 *
 * CHUNKING (RFC 3030): with PIPELINING too and a single recipient, the
 * message goes as "BDAT n LAST" in the same group, so the transaction is one
 * round trip. With one recipient nothing can reach a subset: if MAIL or the
 * RCPT is refused, BDAT is refused too. With several, BDAT would deliver to
 * whichever were accepted before we could look, so they keep DATA and its
 * 354 checkpoint.
 *
 * Secrets: the SASL blob is built in exactly sized buffers (no realloc
 * leaves copies), written by smtp_send_secret() alone, which traces
 * "<redacted>" in its place, and wiped once sent.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "log.h"
#include "net.h"
#include "smtp.h"
#include "smtp_priv.h"
#include "tls.h"
#include "tm_limits.h"
#include "util.h"

static const char *const smtp_state_names[SMTP_STATE_LAST] = {
	"GREETING", "EHLO", "STARTTLS", "AUTH", "AUTH-TOKEN", "AUTH-ABORT", "MAIL",
	"RCPT", "DATA", "BODY", "RSET", "QUIT"
};

static const enum smtp_stage smtp_state_stage[SMTP_STATE_LAST] = {
	SMTP_STAGE_GREETING, SMTP_STAGE_EHLO, SMTP_STAGE_STARTTLS, SMTP_STAGE_AUTH,
	SMTP_STAGE_AUTH, SMTP_STAGE_AUTH, SMTP_STAGE_MAIL, SMTP_STAGE_RCPT,
	SMTP_STAGE_DATA, SMTP_STAGE_DOT, SMTP_STAGE_MAIL, SMTP_STAGE_QUIT
};

static const int smtp_state_timeout[SMTP_STATE_LAST] = {
	SMTP_TIMEOUT_GREETING, SMTP_TIMEOUT_COMMAND, SMTP_TIMEOUT_COMMAND,
	SMTP_TIMEOUT_COMMAND, SMTP_TIMEOUT_COMMAND, SMTP_TIMEOUT_COMMAND,
	SMTP_TIMEOUT_COMMAND, SMTP_TIMEOUT_COMMAND, SMTP_TIMEOUT_DATA,
	SMTP_TIMEOUT_FINAL, SMTP_TIMEOUT_COMMAND, SMTP_TIMEOUT_QUIT
};

static int smtp_step(struct smtp_session *s);

/* ---- helpers ---- */

static int
smtp_timeout(const struct smtp_session *s, int seconds)
{
	int cap = s->p->timeout_cap;

	return cap > 0 && cap < seconds ? cap : seconds;
}

void
smtp_set_state(struct smtp_session *s, enum smtp_state next)
{
	log_trace("%s -> %s", smtp_state_names[s->state], smtp_state_names[next]);
	s->state = next;
	if (!s->failed)
		s->r->stage = smtp_state_stage[next];
}

/* Authenticated (or no AUTH to do): the first transaction, or, probing
   for tokenmail check, QUIT with nothing sent. */
void
smtp_ready(struct smtp_session *s)
{
	smtp_set_state(s, s->p->probe_only ? SMTP_STATE_QUIT : SMTP_STATE_MAIL);
}

/* Where the next error goes: err until the outcome is known. */
static struct tm_err *
smtp_errp(struct smtp_session *s)
{
	return s->failed ? &s->scratch : s->err;
}

/* Record the outcome (once) with the reply being handled as its evidence. */
static void __attribute__((format(printf, 4, 0)))
smtp_vfail(struct smtp_session *s, enum tm_err_class cls, int exit_code, const char *fmt,
    va_list ap)
{
	if (s->failed)
		return;
	tm_err_vset(s->err, cls, exit_code, fmt, ap);
	s->failed = true;
	s->r->stage = smtp_state_stage[s->state];
}

void __attribute__((format(printf, 4, 5)))
smtp_fail(struct smtp_session *s, enum tm_err_class cls, int exit_code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	smtp_vfail(s, cls, exit_code, fmt, ap);
	va_end(ap);
}

/* Exit code for a refusal: 4xx temporary, 5xx permanent, else a protocol error. */
static int
smtp_exit_for(const struct smtp_reply *reply)
{
	/* Send As refused: a permission, not a server failure (SPEC 6: 77). */
	if (strcmp(reply->enhanced, "5.2.252") == 0 || strcmp(reply->enhanced, "5.7.60") == 0)
		return EX_NOPERM;
	if (reply->code / 100 == 4)
		return EX_TEMPFAIL;
	return reply->code / 100 == 5 ? EX_UNAVAILABLE : EX_PROTOCOL;
}

/*
 * The server refused: record the outcome with its reply and hint. exit_code
 * 0 takes it from the reply code.
 */
void __attribute__((format(printf, 4, 5)))
smtp_refused(struct smtp_session *s, enum tm_err_class cls, int exit_code, const char *fmt, ...)
{
	const char *hint = smtp_hint(s->reply.enhanced, s->reply.code);
	va_list ap;

	if (s->failed)
		return;
	va_start(ap, fmt);
	smtp_vfail(s, cls, exit_code ? exit_code : smtp_exit_for(&s->reply), fmt, ap);
	va_end(ap);
	smtp_reply_format(&s->reply, s->err->server, sizeof(s->err->server));
	if (hint != NULL)
		tm_err_hint(s->err, "%s", hint);
	s->r->reply = s->reply;
}

/* A network or protocol error: nothing more can be said on this connection. */
static int
smtp_broken(struct smtp_session *s)
{
	s->broken = true;
	if (!s->failed) {
		s->failed = true;
		s->r->stage = smtp_state_stage[s->state];
	}
	return -1;
}

static int
smtp_write(struct smtp_session *s, const void *data, size_t n)
{
	if (net_write(&s->conn, data, n, smtp_timeout(s, SMTP_TIMEOUT_BLOCK),
	    smtp_errp(s)) == -1)
		return smtp_broken(s);
	s->sent = true;
	return 0;
}

/* Queue one command line, traced. */
int
smtp_write_cmd(struct smtp_session *s, const char *cmd)
{
	log_trace("C: %s", cmd);
	if (smtp_write(s, cmd, strlen(cmd)) == -1 || smtp_write(s, "\r\n", 2) == -1)
		return -1;
	return 0;
}

/*
 * The one place a credential is written: prefix ("AUTH XOAUTH2 " or ""),
 * then the secret, traced as "<redacted>".
 */
int
smtp_send_secret(struct smtp_session *s, const char *prefix, const char *secret, size_t n)
{
	log_trace("C: %s<redacted>", prefix);
	if (smtp_write(s, prefix, strlen(prefix)) == -1 || smtp_write(s, secret, n) == -1 ||
	    smtp_write(s, "\r\n", 2) == -1)
		return -1;
	return 0;
}

static int
smtp_flush(struct smtp_session *s)
{
	if (net_flush(&s->conn, smtp_timeout(s, SMTP_TIMEOUT_BLOCK), smtp_errp(s)) == -1)
		return smtp_broken(s);
	return 0;
}

/*
 * Read one whole reply into s->reply within the state's timeout. The timeout
 * is for the whole reply: a server dripping one line at a time must not
 * stretch it.
 */
static int
smtp_read_reply(struct smtp_session *s)
{
	int t = smtp_timeout(s, smtp_state_timeout[s->state]);
	long long deadline = net_deadline(t);
	struct tm_err *e = smtp_errp(s);
	char line[SMTP_LINE_MAX + 1];
	bool done = false;
	size_t len;

	if (s->sent)
		s->r->round_trips++;
	s->sent = false;
	s->reply.code = 0;
	s->reply.text[0] = s->reply.enhanced[0] = '\0';
	while (!done) {
		if (net_read_line_until(&s->conn, line, sizeof(line), &len, deadline, t, e) == -1)
			return smtp_broken(s);
		log_trace("S: %.*s", (int)len, line);
		if (smtp_reply_add(&s->reply, line, len, &done, e) == -1) {
			tm_err_prefix(e, "bad reply from %s", s->host);
			return smtp_broken(s);
		}
	}
	return 0;
}

bool
smtp_has_control(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return true;
	return false;
}

bool
smtp_has_non_ascii(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s >= 0x80)
			return true;
	return false;
}

/* The addr-spec of recipient i. */
int
smtp_rcpt_spec(struct smtp_session *s, size_t i, char *out, size_t size)
{
	if (address_spec(&s->p->rcpts->items[i], out, size) == -1) {
		smtp_fail(s, TM_ERR_DATA, EX_DATAERR, "recipient %zu is longer than %d octets",
		    i + 1, TM_ADDRESS_MAX);
		return -1;
	}
	return 0;
}

/* Append a formatted parameter to cmd[size]; -1 if it did not fit. */
int __attribute__((format(printf, 3, 4)))
smtp_cmd_add(char *cmd, size_t size, const char *fmt, ...)
{
	size_t used = strlen(cmd);
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(cmd + used, size - used, fmt, ap);
	va_end(ap);
	return n < 0 || (size_t)n >= size - used ? -1 : 0;
}

/* ---- connection, greeting, EHLO, STARTTLS ---- */

static int
smtp_on_greeting(struct smtp_session *s, int code, const char *text)
{
	(void)text;
	if (code == 220) {
		smtp_set_state(s, SMTP_STATE_EHLO);
		return 0;
	}
	smtp_refused(s, TM_ERR_RESP, 0, "%s refused the session", s->host);
	smtp_set_state(s, SMTP_STATE_QUIT);
	return -1;
}

static int
smtp_send_ehlo(struct smtp_session *s)
{
	char cmd[SMTP_CMD_MAX];
	const char *name = s->p->helo_name != NULL ? s->p->helo_name : "localhost";

	if (str_format(cmd, sizeof(cmd), "EHLO %s", name) == -1 || smtp_has_control(name)) {
		smtp_fail(s, TM_ERR_CONFIG, EX_CONFIG, "unusable EHLO name");
		return -1;
	}
	return smtp_write_cmd(s, cmd);
}

/* After a usable EHLO: STARTTLS, AUTH or the first transaction. */
static int
smtp_after_ehlo(struct smtp_session *s)
{
	if (s->p->server->tls == SMTP_TLS_STARTTLS && !s->tls_on) {
		if ((s->caps.flags & SMTP_CAP_STARTTLS) == 0) {
			smtp_fail(s, TM_ERR_RESP, EX_UNAVAILABLE,
			    "%s does not offer STARTTLS: refusing to send %s in clear", s->host,
			    s->p->server->auth == SMTP_AUTH_NONE ? "mail" : "a token");
			tm_err_hint(s->err, "check smtp.host and smtp.port (587 for STARTTLS, "
			    "465 with tls: tls)");
			smtp_set_state(s, SMTP_STATE_QUIT);
			return -1;
		}
		smtp_set_state(s, SMTP_STATE_STARTTLS);
	} else if (s->mech != NULL) {
		if (!smtp_caps_has_auth(&s->caps, s->mech)) {
			smtp_fail(s, TM_ERR_RESP, EX_UNAVAILABLE, "%s does not offer AUTH %s (offers: %s)",
			    s->host, s->mech, s->caps.auth[0] != '\0' ? s->caps.auth : "none");
			smtp_set_state(s, SMTP_STATE_QUIT);
			return -1;
		}
		smtp_set_state(s, SMTP_STATE_AUTH);
	} else {
		smtp_ready(s);
	}
	return 0;
}

static int
smtp_on_ehlo(struct smtp_session *s, int code, const char *text)
{
	if (code != 250) {
		smtp_refused(s, TM_ERR_RESP, 0, "%s refused EHLO", s->host);
		smtp_set_state(s, SMTP_STATE_QUIT);
		return -1;
	}
	smtp_ehlo_caps(text, &s->caps);
	return smtp_after_ehlo(s);
}

static int
smtp_send_starttls(struct smtp_session *s)
{
	return smtp_write_cmd(s, "STARTTLS");
}

static int
smtp_start_tls(struct smtp_session *s)
{
	struct tls_params tp = {
		.server_name = s->host,
		.ca_file = s->p->ca_file,
		.timeout_seconds = smtp_timeout(s, SMTP_TIMEOUT_COMMAND),
	};

	if (tls_start(&s->conn, &tp, smtp_errp(s)) == -1)
		return smtp_broken(s);
	s->tls_on = true;
	(void)str_copy(s->r->tls, sizeof(s->r->tls), tls_description(&s->conn));
	log_trace("TLS: %s", tls_description(&s->conn));
	return 0;
}

static int
smtp_on_starttls(struct smtp_session *s, int code, const char *text)
{
	(void)text;
	if (code != 220) {
		smtp_refused(s, TM_ERR_RESP, 0, "%s refused STARTTLS", s->host);
		smtp_set_state(s, SMTP_STATE_QUIT);
		return -1;
	}
	/* Plain text queued behind the 220 would be read as if it came over
	   TLS (the STARTTLS injection of CVE-2011-0411, client side). */
	if (net_has_pending_input(&s->conn)) {
		tm_err_set(smtp_errp(s), TM_ERR_PROTO, EX_PROTOCOL,
		    "%s sent data after its STARTTLS reply", s->host);
		return smtp_broken(s);
	}
	if (smtp_start_tls(s) == -1)
		return -1;
	memset(&s->caps, 0, sizeof(s->caps));
	smtp_set_state(s, SMTP_STATE_EHLO);
	return 0;
}

/* ---- DATA, the message, RSET, QUIT ---- */

/* Pipelined, DATA went with MAIL (smtp_send_mail): only its reply is due. */
static int
smtp_send_data(struct smtp_session *s)
{
	return s->pipelined ? 0 : smtp_write_cmd(s, "DATA");
}

/*
 * The reply to DATA. Pipelined, it comes after refusals too: err already
 * holds the outcome (MAIL or a recipient refused, none accepted) and the
 * transaction must deliver nothing.
 */
static int
smtp_on_data(struct smtp_session *s, int code, const char *text)
{
	(void)text;
	if (code == 354 && s->failed) {
		/* The server waits for message data. Neither the message (a subset
		   of the recipients), nor "." (an empty message), nor RSET or QUIT
		   (taken as data) may follow: hang up with the transaction open,
		   which delivers nothing (RFC 5321 4.1.1.4: the mail is taken at
		   the final dot). The outcome stays the refusal recorded for MAIL
		   or RCPT (EX_NOUSER for a 5xx, EX_TEMPFAIL for a 4xx). */
		log_trace("354 to a transaction with refusals: closing without data");
		s->broken = true;
		smtp_set_state(s, SMTP_STATE_QUIT);
		return -1;
	}
	if (code == 354) {
		smtp_set_state(s, SMTP_STATE_BODY);
		return 0;
	}
	smtp_refused(s, TM_ERR_RESP, 0, "%s refused DATA", s->host);
	smtp_set_state(s, s->mail_failed ? SMTP_STATE_QUIT : SMTP_STATE_RSET);
	return -1;
}

/*
 * message_write's sink: dot-stuffing (RFC 5321 4.5.2) with line starts
 * tracked across calls; runs between inserted dots go to net_write whole.
 */
static int
smtp_body_sink(void *ctx, const char *data, size_t len)
{
	struct smtp_body *b = ctx;
	size_t start = 0, i = 0;

	while (i < len) {
		const char *nl;

		if (b->bol && data[i] == '.') {
			if (smtp_write(b->s, data + start, i - start) == -1 ||
			    smtp_write(b->s, ".", 1) == -1)
				return -1;
			start = i;
		}
		nl = memchr(data + i, '\n', len - i);
		b->bol = nl != NULL;
		i = nl != NULL ? (size_t)(nl - data) + 1 : len;
	}
	return smtp_write(b->s, data + start, len - start);
}

/* message_write's sink for BDAT: the message as it is, counted. */
static int
smtp_raw_sink(void *ctx, const char *data, size_t len)
{
	struct smtp_body *b = ctx;

	b->written += (long long)len;
	return smtp_write(b->s, data, len);
}

/* BDAT n LAST and the whole message: no dot-stuffing, no final dot. */
int
smtp_write_bdat(struct smtp_session *s)
{
	long long size = message_transmit_size(s->p->msg);
	struct smtp_body b = { .s = s, .bol = true };
	char cmd[64];

	if (str_format(cmd, sizeof(cmd), "BDAT %lld LAST", size) == -1 ||
	    smtp_write_cmd(s, cmd) == -1)
		return -1;
	log_trace("C: (%lld octets of message)", size);
	/* Short of n octets the server never takes the message: on a failure
	   the connection is dropped, as with DATA. */
	if (message_write(s->p->msg, smtp_raw_sink, &b, smtp_errp(s)) == -1)
		return smtp_broken(s);
	if (b.written != size) {
		smtp_fail(s, TM_ERR_INTERNAL, EX_SOFTWARE,
		    "the message was %lld octets, not the %lld announced", b.written, size);
		return smtp_broken(s);
	}
	s->bdat = true;
	return 0;
}

static int
smtp_send_body(struct smtp_session *s)
{
	struct smtp_body b = { .s = s, .bol = true };

	if (s->bdat)
		return 0;	/* it went with MAIL (smtp_write_bdat) */
	log_trace("C: (%lld octets of message)", message_transmit_size(s->p->msg));
	/* A failure here leaves the message unfinished: the connection is
	   dropped, never ended with a dot that would deliver half of it. */
	if (message_write(s->p->msg, smtp_body_sink, &b, smtp_errp(s)) == -1)
		return smtp_broken(s);
	if (!b.bol && smtp_write(s, "\r\n", 2) == -1)
		return -1;
	return smtp_write_cmd(s, ".");
}

/* The batch is delivered: another transaction for the deferred recipients? */
static int
smtp_delivered(struct smtp_session *s)
{
	size_t i, left = 0;

	for (i = 0; i < s->nbatch; i++) {
		size_t k = s->batch[i];

		if (s->rstatus[k] == RCPT_ACCEPTED) {
			s->rstatus[k] = RCPT_DONE;
			s->ndelivered++;
			s->r->delivered++;
			if (s->p->rcpt_done)
				s->p->rcpt_done[k] = true;
		} else {
			left++;
		}
	}
	s->r->reply = s->reply;
	smtp_set_state(s, left > 0 ? SMTP_STATE_MAIL : SMTP_STATE_QUIT);
	return 0;
}

static int
smtp_on_body(struct smtp_session *s, int code, const char *text)
{
	const struct smtp_reply *rp = &s->reply;
	bool too_big = code == 552 || strcmp(rp->enhanced, "5.3.4") == 0;

	(void)text;
	if (s->failed) {
		/* BDAT went with a refused MAIL or recipient: its reply is read and
		   the outcome stays that refusal. */
		smtp_set_state(s, SMTP_STATE_QUIT);
		return -1;
	}
	if (code / 100 == 2)
		return smtp_delivered(s);
	smtp_refused(s, TM_ERR_RESP, code / 100 == 5 && too_big ? EX_DATAERR : 0,
	    "%s refused the message", s->host);
	if (s->ndelivered > 0)
		tm_err_detail(s->err, "an earlier transaction delivered it to %zu recipients",
		    s->ndelivered);
	smtp_set_state(s, SMTP_STATE_QUIT);
	return -1;
}

static int
smtp_send_rset(struct smtp_session *s)
{
	return smtp_write_cmd(s, "RSET");
}

static int
smtp_on_rset(struct smtp_session *s, int code, const char *text)
{
	(void)code;
	(void)text;
	smtp_set_state(s, SMTP_STATE_QUIT);
	return 0;
}

/* QUIT without waiting for its reply: the outcome is already known. */
static void
smtp_quit(struct smtp_session *s)
{
	struct tm_err ignored;

	log_trace("C: QUIT");
	if (net_write(&s->conn, "QUIT\r\n", 6, SMTP_TIMEOUT_QUIT, &ignored) == 0)
		(void)net_flush(&s->conn, SMTP_TIMEOUT_QUIT, &ignored);
}

/* ---- the machine ---- */

typedef int (*smtp_sender)(struct smtp_session *);
typedef int (*smtp_handler)(struct smtp_session *, int, const char *);

/* Send (if anything), flush, read the reply, handle it. */
static int
smtp_exchange(struct smtp_session *s, smtp_sender send, smtp_handler on)
{
	if (send != NULL && send(s) == -1) {
		if (!s->broken)
			smtp_set_state(s, SMTP_STATE_QUIT);
		return -1;
	}
	if (s->sent && smtp_flush(s) == -1)
		return -1;
	if (smtp_read_reply(s) == -1)
		return -1;
	return on(s, s->reply.code, s->reply.text);
}

static int
smtp_step(struct smtp_session *s)
{
	switch (s->state) {
	case SMTP_STATE_GREETING:
		return smtp_exchange(s, NULL, smtp_on_greeting);
	case SMTP_STATE_EHLO:
		return smtp_exchange(s, smtp_send_ehlo, smtp_on_ehlo);
	case SMTP_STATE_STARTTLS:
		return smtp_exchange(s, smtp_send_starttls, smtp_on_starttls);
	case SMTP_STATE_AUTH:
		return smtp_exchange(s, smtp_send_auth, smtp_on_auth);
	case SMTP_STATE_AUTH_TOKEN:
		return smtp_exchange(s, smtp_send_auth_token, smtp_on_auth);
	case SMTP_STATE_AUTH_ABORT:
		return smtp_exchange(s, smtp_send_auth_abort, smtp_on_auth_abort);
	case SMTP_STATE_MAIL:
		return smtp_exchange(s, smtp_send_mail, smtp_on_mail);
	case SMTP_STATE_RCPT:
		return smtp_exchange(s, smtp_send_rcpt, smtp_on_rcpt);
	case SMTP_STATE_DATA:
		return smtp_exchange(s, smtp_send_data, smtp_on_data);
	case SMTP_STATE_BODY:
		return smtp_exchange(s, smtp_send_body, smtp_on_body);
	case SMTP_STATE_RSET:
		return smtp_exchange(s, smtp_send_rset, smtp_on_rset);
	default:
		smtp_fail(s, TM_ERR_INTERNAL, EX_SOFTWARE, "SMTP client in bad state %d",
		    (int)s->state);
		return smtp_broken(s);
	}
}

/* Checks that need no network: fail closed whatever config.c let through. */
static int
smtp_check_params(struct smtp_session *s)
{
	const struct smtp_params *p = s->p;
	const struct smtp_settings *srv = p->server;

	if (srv->tls == SMTP_TLS_NONE && !net_is_loopback(s->host))
		return tm_err_set(s->err, TM_ERR_CONFIG, EX_CONFIG,
		    "tls: none is only allowed to a loopback address, not %s", s->host);
	if (!p->probe_only && (p->rcpts == NULL || p->rcpts->count == 0))
		return tm_err_set(s->err, TM_ERR_USAGE, EX_USAGE, "no recipients");
	if (!p->probe_only && smtp_has_control(p->envelope_from))
		return tm_err_set(s->err, TM_ERR_DATA, EX_DATAERR, "bad envelope sender");
	if (srv->auth == SMTP_AUTH_NONE)
		return 0;
	if (srv->user == NULL || srv->user[0] == '\0' || smtp_has_control(srv->user))
		return tm_err_set(s->err, TM_ERR_CONFIG, EX_CONFIG,
		    "smtp.user is needed for AUTH (and may not hold control characters)");
	if (p->access_token == NULL || p->access_token[0] == '\0' ||
	    smtp_has_control(p->access_token))
		return tm_err_set(s->err, TM_ERR_INTERNAL, EX_SOFTWARE,
		    "no usable access token for %s", srv->user);
	s->mech = srv->auth == SMTP_AUTH_XOAUTH2 ? "XOAUTH2" : "OAUTHBEARER";
	return 0;
}

static int
smtp_connect(struct smtp_session *s)
{
	const struct smtp_settings *srv = s->p->server;

	if (net_connect(&s->conn, s->host, srv->port, smtp_timeout(s, SMTP_TIMEOUT_CONNECT),
	    s->err) == -1)
		return -1;
	log_trace("connected to %s port %u", s->host, srv->port);
	if (srv->tls == SMTP_TLS_IMPLICIT && smtp_start_tls(s) == -1)
		return -1;
	return 0;
}

static struct smtp_session *
smtp_session_new(const struct smtp_params *p, struct smtp_result *r, struct tm_err *err)
{
	struct smtp_session *s = xcalloc(1, sizeof(*s));
	size_t n = p->rcpts != NULL ? p->rcpts->count : 0;

	s->p = p;
	s->r = r;
	s->err = err;
	s->host = p->server->host;
	s->state = SMTP_STATE_GREETING;
	net_init(&s->conn);
	strbuf_init(&s->blob, 0);
	s->rstatus = xcalloc(n + 1, 1);
	s->batch = xcalloc(n + 1, sizeof(*s->batch));
	return s;
}

static void
smtp_session_free(struct smtp_session *s)
{
	net_close(&s->conn);
	smtp_secret_buf_free(&s->blob);
	free(s->rstatus);
	free(s->batch);
	free(s);
}

int
smtp_deliver(const struct smtp_params *p, struct smtp_result *r, struct tm_err *err)
{
	struct smtp_session *s;
	int rc = -1;

	memset(r, 0, sizeof(*r));
	r->stage = SMTP_STAGE_CONNECT;
	s = smtp_session_new(p, r, err);
	if (smtp_check_params(s) == -1 || smtp_connect(s) == -1)
		goto out;
	while (s->state != SMTP_STATE_QUIT && !s->broken)
		(void)smtp_step(s);
	if (!s->broken)
		smtp_quit(s);
	if (!s->failed) {
		r->stage = SMTP_STAGE_DONE;
		rc = 0;
	}
out:
	smtp_session_free(s);
	return rc;
}
