/*
 * smtp_priv.h: what the parts of the SMTP client share (smtp.c: the
 * session, connection, EHLO, STARTTLS, DATA and the state machine;
 * smtp_auth.c: AUTH and the SASL responses; smtp_mail.c: MAIL and RCPT,
 * and with PIPELINING the group MAIL, RCPT..., DATA or BDAT).
 * Private to those files.
 */
#ifndef TM_SMTP_PRIV_H
#define TM_SMTP_PRIV_H

#include <stdbool.h>
#include <stddef.h>

#include "net.h"
#include "smtp.h"
#include "util.h"

/* RFC 5321 4.5.3.2 timeouts, in seconds, each capped by p->timeout_cap. */
#define SMTP_TIMEOUT_CONNECT	300
#define SMTP_TIMEOUT_GREETING	300
#define SMTP_TIMEOUT_COMMAND	300	/* EHLO, STARTTLS, AUTH, MAIL, RCPT, RSET */
#define SMTP_TIMEOUT_DATA	120	/* awaiting 354 */
#define SMTP_TIMEOUT_BLOCK	180	/* each block of data sent */
#define SMTP_TIMEOUT_FINAL	600	/* awaiting the reply to the final dot */
#define SMTP_TIMEOUT_QUIT	1	/* QUIT is sent, its reply not awaited */
/* A command we build: MAIL FROM with every parameter, or RCPT TO with an
   ORCPT of up to 3 * TM_ADDRESS_MAX octets of xtext. */
#define SMTP_CMD_MAX		2048
/* The text after "host=" and "port=" in an OAUTHBEARER response. */
#define SMTP_GS2_EXTRA		64

enum smtp_state {
	SMTP_STATE_GREETING,
	SMTP_STATE_EHLO,
	SMTP_STATE_STARTTLS,
	SMTP_STATE_AUTH,	/* AUTH MECH [initial response] */
	SMTP_STATE_AUTH_TOKEN,	/* the response after an empty 334 */
	SMTP_STATE_AUTH_ABORT,	/* "" (XOAUTH2) or AQ== (OAUTHBEARER) after an error challenge */
	SMTP_STATE_MAIL,
	SMTP_STATE_RCPT,
	SMTP_STATE_DATA,
	SMTP_STATE_BODY,	/* the message and the final dot */
	SMTP_STATE_RSET,
	SMTP_STATE_QUIT,
	SMTP_STATE_LAST
};

/* Where each recipient stands. */
enum rcpt_status {
	RCPT_TODO,		/* not delivered yet */
	RCPT_ACCEPTED,		/* 250 in the current transaction */
	RCPT_DEFERRED,		/* 452 in the current transaction: next one */
	RCPT_DONE		/* the server took the message for it */
};

struct smtp_session {
	const struct smtp_params *p;
	struct smtp_result *r;
	struct tm_err *err;		/* the outcome */
	struct tm_err scratch;		/* errors after the outcome is known */
	const char *host;
	enum smtp_state state;
	struct net_conn conn;
	struct smtp_caps caps;
	struct smtp_reply reply;	/* the reply being handled */
	bool tls_on;
	bool failed;			/* err holds the outcome */
	bool broken;			/* the connection cannot carry another command */
	bool sent;			/* written since the last reply: a round trip */
	/* AUTH */
	const char *mech;		/* "XOAUTH2" or "OAUTHBEARER" */
	struct strbuf blob;		/* the base64 client response: a secret */
	bool blob_sent;
	char challenge[SMTP_CHALLENGE_MAX];
	/* transactions */
	unsigned char *rstatus;		/* enum rcpt_status per p->rcpts item */
	size_t *batch;			/* p->rcpts indexes in this transaction */
	size_t nbatch, rcpt_sent, rcpt_read;
	size_t naccepted;		/* in this transaction */
	size_t ndelivered;		/* in earlier transactions */
	bool pipelined;			/* the RCPTs and DATA went with MAIL */
	bool bdat;			/* BDAT n LAST and the message went too */
	bool mail_failed;		/* read the pipelined RCPT and DATA replies,
					   then QUIT (or hang up after a 354) */
	bool rcpt_perm;			/* a recipient was refused permanently */
};

struct smtp_body {
	struct smtp_session *s;
	bool bol;			/* the next octet starts a line */
	long long written;		/* octets of the message, for BDAT */
};

void smtp_set_state(struct smtp_session *s, enum smtp_state next);
void smtp_ready(struct smtp_session *s);
void __attribute__((format(printf, 4, 5))) smtp_fail(struct smtp_session *s, enum tm_err_class cls, int exit_code, const char *fmt, ...);
void __attribute__((format(printf, 4, 5))) smtp_refused(struct smtp_session *s, enum tm_err_class cls, int exit_code, const char *fmt, ...);
int smtp_write_cmd(struct smtp_session *s, const char *cmd);
int smtp_send_secret(struct smtp_session *s, const char *prefix, const char *secret, size_t n);
bool smtp_has_control(const char *s);
bool smtp_has_non_ascii(const char *s);
int smtp_rcpt_spec(struct smtp_session *s, size_t i, char *out, size_t size);
int __attribute__((format(printf, 3, 4))) smtp_cmd_add(char *cmd, size_t size, const char *fmt, ...);
void smtp_secret_buf_free(struct strbuf *b);
int smtp_send_auth(struct smtp_session *s);
int smtp_send_auth_token(struct smtp_session *s);
int smtp_send_auth_abort(struct smtp_session *s);
int smtp_on_auth(struct smtp_session *s, int code, const char *text);
int smtp_on_auth_abort(struct smtp_session *s, int code, const char *text);
int smtp_write_bdat(struct smtp_session *s);
int smtp_send_mail(struct smtp_session *s);
int smtp_on_mail(struct smtp_session *s, int code, const char *text);
int smtp_send_rcpt(struct smtp_session *s);
int smtp_on_rcpt(struct smtp_session *s, int code, const char *text);

#endif
