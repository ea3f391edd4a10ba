/*
 * smtp_mail.c: MAIL and RCPT: the envelope of each transaction, pipelined
 * with DATA (or BDAT) when the server offers it, and what each recipient's reply
 * means (see smtp.c).
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

/* ---- MAIL, RCPT ---- */

/* Start a transaction with every recipient not yet delivered. */
static void
smtp_begin(struct smtp_session *s)
{
	size_t i;

	s->nbatch = s->rcpt_sent = s->rcpt_read = s->naccepted = 0;
	s->mail_failed = s->pipelined = s->bdat = false;
	for (i = 0; i < s->p->rcpts->count; i++) {
		if (s->rstatus[i] == RCPT_DONE)
			continue;
		s->rstatus[i] = RCPT_TODO;
		s->batch[s->nbatch++] = i;
	}
}

/* true if the envelope needs SMTPUTF8 (RFC 6531). */
static bool
smtp_envelope_utf8(struct smtp_session *s)
{
	char spec[TM_ADDRESS_MAX + 1];
	size_t i;

	if (smtp_has_non_ascii(s->p->envelope_from))
		return true;
	for (i = 0; i < s->nbatch; i++)
		if (address_spec(&s->p->rcpts->items[s->batch[i]], spec, sizeof(spec)) == 0 &&
		    smtp_has_non_ascii(spec))
			return true;
	return false;
}

/* Refuse before MAIL what the server said it cannot take. */
static int
smtp_check_envelope(struct smtp_session *s, long long size, bool utf8_addr)
{
	if (s->caps.size > 0 && size > s->caps.size) {
		smtp_fail(s, TM_ERR_DATA, EX_DATAERR,
		    "the message (%lld octets) is larger than %s accepts (%lld)", size, s->host,
		    s->caps.size);
		tm_err_hint(s->err, "send a smaller message");
		return -1;
	}
	if (utf8_addr && (s->caps.flags & SMTP_CAP_SMTPUTF8) == 0) {
		smtp_fail(s, TM_ERR_DATA, EX_DATAERR,
		    "%s does not offer SMTPUTF8, which the non-ASCII addresses need", s->host);
		return -1;
	}
	return 0;
}

/* MAIL FROM parameters: SIZE, BODY, SMTPUTF8 (RFC 1870, 6152, 6531). */
static int
smtp_mail_params(struct smtp_session *s, char *cmd, size_t size, bool utf8_addr)
{
	const struct message *m = s->p->msg;
	unsigned flags = s->caps.flags;
	int rc = 0;

	if (flags & SMTP_CAP_SIZE)
		rc |= smtp_cmd_add(cmd, size, " SIZE=%lld", message_transmit_size(m));
	/* Without 8BITMIME the message goes as it is: every server tokenmail
	   targets takes 8-bit data, and rewriting it as 7-bit is not ours to do. */
	if (m->eight_bit && (flags & SMTP_CAP_8BITMIME))
		rc |= smtp_cmd_add(cmd, size, " BODY=8BITMIME");
	/* A raw UTF-8 header alone goes without SMTPUTF8 when it is not offered
	   (servers take it as they take 8-bit data); UTF-8 addresses cannot. */
	if ((utf8_addr || m->utf8_header) && (flags & SMTP_CAP_SMTPUTF8))
		rc |= smtp_cmd_add(cmd, size, " SMTPUTF8");
	return rc;
}

/* RFC 3461 RET and ENVID when DSN is offered and asked for. */
static int
smtp_mail_dsn(struct smtp_session *s, char *cmd, size_t size)
{
	const char *ret = s->p->dsn_ret;
	char xt[SMTP_CMD_MAX / 2];
	int rc = 0;

	if ((s->caps.flags & SMTP_CAP_DSN) == 0)
		return 0;
	if (ret != NULL && (str_eq_nocase(ret, "full") || str_eq_nocase(ret, "hdrs")))
		rc |= smtp_cmd_add(cmd, size, " RET=%s", str_eq_nocase(ret, "full") ? "FULL" : "HDRS");
	if (s->p->dsn_envid != NULL) {
		rc |= smtp_xtext(s->p->dsn_envid, xt, sizeof(xt));
		rc |= smtp_cmd_add(cmd, size, " ENVID=%s", xt);
	}
	return rc;
}

static int
smtp_write_rcpt(struct smtp_session *s)
{
	char cmd[SMTP_CMD_MAX], spec[TM_ADDRESS_MAX + 1], xt[3 * TM_ADDRESS_MAX + 1];
	const char *notify = s->p->dsn_notify;
	size_t i = s->batch[s->rcpt_sent++];
	int rc;

	if (smtp_rcpt_spec(s, i, spec, sizeof(spec)) == -1)
		return -1;
	rc = str_format(cmd, sizeof(cmd), "RCPT TO:<%s>", spec);
	if (notify != NULL && (s->caps.flags & SMTP_CAP_DSN)) {
		rc |= smtp_cmd_add(cmd, sizeof(cmd), " NOTIFY=%s", notify);
		rc |= smtp_xtext(spec, xt, sizeof(xt));
		rc |= smtp_cmd_add(cmd, sizeof(cmd), " ORCPT=rfc822;%s", xt);
	}
	if (rc != 0 || smtp_has_control(cmd)) {
		smtp_fail(s, TM_ERR_DATA, EX_DATAERR, "cannot build RCPT TO:<%s>", spec);
		return -1;
	}
	return smtp_write_cmd(s, cmd);
}

int
smtp_send_mail(struct smtp_session *s)
{
	const char *from = s->p->envelope_from;
	char cmd[SMTP_CMD_MAX];
	bool utf8_addr;
	size_t i;
	int rc;

	smtp_begin(s);
	utf8_addr = smtp_envelope_utf8(s);
	if (smtp_check_envelope(s, message_transmit_size(s->p->msg), utf8_addr) == -1)
		return -1;
	rc = str_format(cmd, sizeof(cmd), "MAIL FROM:<%s>", from);
	rc |= smtp_mail_params(s, cmd, sizeof(cmd), utf8_addr);
	rc |= smtp_mail_dsn(s, cmd, sizeof(cmd));
	if (rc != 0 || smtp_has_control(cmd)) {
		smtp_fail(s, TM_ERR_DATA, EX_DATAERR, "cannot build MAIL FROM:<%s>", from);
		return -1;
	}
	if (smtp_write_cmd(s, cmd) == -1)
		return -1;
	s->pipelined = (s->caps.flags & SMTP_CAP_PIPELINING) != 0;
	if (!s->pipelined)
		return 0;
	/* One group (RFC 2920 3.1: DATA may end it): MAIL, every RCPT, DATA,
	   or with CHUNKING and one recipient BDAT and the message (smtp.c).
	   smtp_exchange flushes it once; the replies are read in order. */
	for (i = 0; i < s->nbatch; i++)
		if (smtp_write_rcpt(s) == -1)
			return -1;
	if ((s->caps.flags & SMTP_CAP_CHUNKING) && s->nbatch == 1)
		return smtp_write_bdat(s);
	return smtp_write_cmd(s, "DATA");
}

int
smtp_on_mail(struct smtp_session *s, int code, const char *text)
{
	(void)text;
	if (code / 100 == 2) {
		smtp_set_state(s, SMTP_STATE_RCPT);
		return 0;
	}
	smtp_refused(s, TM_ERR_RESP, 0, "%s refused MAIL FROM:<%s>", s->host,
	    s->p->envelope_from);
	/* The pipelined RCPT and DATA replies are still on their way: read them. */
	s->mail_failed = s->pipelined;
	smtp_set_state(s, s->pipelined ? SMTP_STATE_RCPT : SMTP_STATE_QUIT);
	return -1;
}

int
smtp_send_rcpt(struct smtp_session *s)
{
	return s->pipelined ? 0 : smtp_write_rcpt(s);
}

/* A recipient refused: a permanent refusal outweighs a temporary one. */
static void
smtp_rcpt_refused(struct smtp_session *s, size_t i, bool permanent)
{
	char spec[TM_ADDRESS_MAX + 1], reply[SMTP_LINE_MAX];

	if (address_spec(&s->p->rcpts->items[i], spec, sizeof(spec)) == -1)
		spec[0] = '\0';
	smtp_reply_format(&s->reply, reply, sizeof(reply));
	if (permanent && !s->rcpt_perm) {
		s->rcpt_perm = true;
		s->failed = false;
		smtp_refused(s, TM_ERR_RESP, EX_NOUSER, "%s refused RCPT TO:<%s>", s->host, spec);
	} else {
		smtp_refused(s, TM_ERR_RESP, EX_TEMPFAIL, "%s refused RCPT TO:<%s> for now",
		    s->host, spec);
	}
	tm_err_detail(s->err, "RCPT TO:<%s>: %s", spec, reply);
}

static void
smtp_rcpt_result(struct smtp_session *s, size_t i)
{
	const struct smtp_reply *rp = &s->reply;

	if (rp->code / 100 == 2) {
		s->rstatus[i] = RCPT_ACCEPTED;
		s->naccepted++;
	} else if (rp->code == 452 || strcmp(rp->enhanced, "4.5.3") == 0 ||
	    (rp->code == 552 && strcmp(rp->enhanced, "5.5.3") == 0)) {
		/* Too many recipients (RFC 5321 4.5.3.1.10): the next transaction. */
		s->rstatus[i] = RCPT_DEFERRED;
	} else {
		smtp_rcpt_refused(s, i, rp->code / 100 == 5);
	}
}

/*
 * Every RCPT reply read. Pipelined, DATA (or BDAT, whose reply is the
 * message's) went in the group and its reply comes next whatever happened (smtp_on_data aborts the transaction when
 * it must; a refused MAIL, which only a pipelined group reads on from, is
 * already the outcome). Otherwise DATA, or RSET and nothing sent.
 */
static int
smtp_rcpt_done(struct smtp_session *s)
{
	if (!s->failed && s->naccepted == 0)
		smtp_refused(s, TM_ERR_RESP, EX_TEMPFAIL, "%s accepted none of the recipients",
		    s->host);
	if (s->pipelined)
		smtp_set_state(s, s->bdat ? SMTP_STATE_BODY : SMTP_STATE_DATA);
	else
		smtp_set_state(s, s->failed ? SMTP_STATE_RSET : SMTP_STATE_DATA);
	return s->failed ? -1 : 0;
}

int
smtp_on_rcpt(struct smtp_session *s, int code, const char *text)
{
	size_t i = s->batch[s->rcpt_read++];

	(void)code;
	(void)text;
	if (!s->mail_failed)
		smtp_rcpt_result(s, i);
	if (s->rcpt_read < s->nbatch)
		return 0;
	return smtp_rcpt_done(s);
}
