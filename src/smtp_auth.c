/*
 * smtp_auth.c: AUTH XOAUTH2 and OAUTHBEARER: the SASL client responses, their
 * error flows, and the AUTH states of the session (see smtp.c).
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

/* ---- the SASL client response ---- */

/* An empty strbuf whose buffer is allocated once, so a secret is never reallocated. */
static void
smtp_secret_buf(struct strbuf *b, size_t cap)
{
	strbuf_init(b, cap - 1);
	b->data = xmalloc(cap);
	b->cap = cap;
	b->data[0] = '\0';
}

void
smtp_secret_buf_free(struct strbuf *b)
{
	if (b->data != NULL)
		secret_wipe(b->data, b->cap);
	strbuf_free(b);
}

/* RFC 5801 saslname: ',' and '=' become "=2C" and "=3D". */
static void
append_saslname(struct strbuf *b, const char *user)
{
	for (; *user != '\0'; user++) {
		if (*user == ',')
			(void)strbuf_append_str(b, "=2C");
		else if (*user == '=')
			(void)strbuf_append_str(b, "=3D");
		else
			(void)strbuf_append(b, user, 1);
	}
}

/* The decoded response: XOAUTH2 or RFC 7628 OAUTHBEARER. */
static void
smtp_sasl_raw(struct smtp_session *s, struct strbuf *raw)
{
	const struct smtp_settings *srv = s->p->server;
	char port[16];

	if (srv->auth == SMTP_AUTH_XOAUTH2) {
		(void)strbuf_append_str(raw, "user=");
		(void)strbuf_append_str(raw, srv->user);
	} else {
		(void)str_format(port, sizeof(port), "%u", srv->port);
		(void)strbuf_append_str(raw, "n,a=");
		append_saslname(raw, srv->user);
		(void)strbuf_append_str(raw, ",\001host=");
		(void)strbuf_append_str(raw, s->host);
		(void)strbuf_append_str(raw, "\001port=");
		(void)strbuf_append_str(raw, port);
	}
	(void)strbuf_append_str(raw, "\001auth=Bearer ");
	(void)strbuf_append_str(raw, s->p->access_token);
	(void)strbuf_append_str(raw, "\001\001");
}

/* Build s->blob, base64 of the response, in exactly sized buffers. */
static void
smtp_sasl_blob(struct smtp_session *s)
{
	struct strbuf raw;
	size_t cap = 3 * strlen(s->p->server->user) + strlen(s->host) + SMTP_GS2_EXTRA +
	    strlen(s->p->access_token);

	smtp_secret_buf(&raw, cap);
	smtp_sasl_raw(s, &raw);
	smtp_secret_buf(&s->blob, 4 * ((raw.len + 2) / 3) + 1);
	(void)base64_encode(&s->blob, raw.data, raw.len);
	smtp_secret_buf_free(&raw);
}

/* Keep the decoded error challenge (JSON: status, scope) for the report. */
static void
smtp_keep_challenge(struct smtp_session *s, const char *text)
{
	smtp_sasl_error_decode(text, s->challenge, sizeof(s->challenge));
	log_trace("authentication challenge: %s", s->challenge);
}

/* ---- AUTH ---- */

int
smtp_send_auth(struct smtp_session *s)
{
	char cmd[64];
	int rc;

	smtp_sasl_blob(s);
	(void)str_format(cmd, sizeof(cmd), "AUTH %s ", s->mech);
	/* RFC 4954 4: no initial response when it would pass 512 octets. */
	if (strlen(cmd) + s->blob.len + 2 <= SMTP_LINE_MAX) {
		rc = smtp_send_secret(s, cmd, s->blob.data, s->blob.len);
		s->blob_sent = true;
		smtp_secret_buf_free(&s->blob);
		return rc;
	}
	cmd[strlen(cmd) - 1] = '\0';
	return smtp_write_cmd(s, cmd);
}

int
smtp_send_auth_token(struct smtp_session *s)
{
	int rc = smtp_send_secret(s, "", s->blob.data, s->blob.len);

	s->blob_sent = true;
	smtp_secret_buf_free(&s->blob);
	return rc;
}

/* RFC 7628 3.2.3: OAUTHBEARER answers an error challenge with %x01; the
   XOAUTH2 convention is an empty response. Either way 535 follows. */
int
smtp_send_auth_abort(struct smtp_session *s)
{
	return smtp_write_cmd(s, s->p->server->auth == SMTP_AUTH_OAUTHBEARER ? "AQ==" : "");
}

static int
smtp_auth_failed(struct smtp_session *s)
{
	const struct smtp_reply *rp = &s->reply;
	bool rejected = rp->code == 535 ||
	    (rp->code / 100 == 5 && strncmp(rp->enhanced, "5.7.", 4) == 0);
	bool first = !s->failed;
	char hint[sizeof(s->err->hint)];

	s->r->auth_rejected = rejected;
	smtp_refused(s, TM_ERR_AUTH, rejected ? EX_NOPERM : 0,
	    "%s refused authentication for %s", s->host, s->p->server->user);
	/* The fix names the mailbox: a static hint cannot. */
	if (first && smtp_auth_hint(rp, s->p->server->user, hint, sizeof(hint)) == 0)
		tm_err_hint(s->err, "%s", hint);
	if (s->challenge[0] != '\0')
		tm_err_detail(s->err, "authentication challenge: %s", s->challenge);
	smtp_set_state(s, SMTP_STATE_QUIT);
	return -1;
}

/* The reply to AUTH or to the response sent after an empty 334. */
int
smtp_on_auth(struct smtp_session *s, int code, const char *text)
{
	if (code == 235) {
		smtp_ready(s);
		return 0;
	}
	if (code == 334 && !s->blob_sent) {
		smtp_set_state(s, SMTP_STATE_AUTH_TOKEN);
		return 0;
	}
	if (code == 334) {
		smtp_keep_challenge(s, text);
		smtp_set_state(s, SMTP_STATE_AUTH_ABORT);
		return 0;
	}
	return smtp_auth_failed(s);
}

int
smtp_on_auth_abort(struct smtp_session *s, int code, const char *text)
{
	(void)code;
	(void)text;
	return smtp_auth_failed(s);
}
