/*
 * deliver.c: the delivery loop (deliver.h). One attempt is: a token, then
 * the transport. A rejected token is replaced once within the attempt;
 * temporary failures start a new attempt within the retry budget.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "deliver.h"
#include "graph.h"
#include "log.h"
#include "smtp.h"
#include "tm_limits.h"
#include "util.h"

static void
token_context_for(const struct deliver_params *p, struct token_context *c)
{
	*c = (struct token_context){
		.cfg = p->cfg, .account = p->sender->account, .params = p->cparams,
		.setgid = p->setgid, .broker = p->broker,
		.timeout_seconds = p->cfg->timeout_seconds ? p->cfg->timeout_seconds :
		    TM_HTTP_TIMEOUT_SECONDS,
	};
}

/* The recipients still to deliver to, and which of them this attempt did. */
struct todo {
	struct address_list rcpts;
	bool *done;
};

static void
todo_init(struct todo *t, const struct address_list *rcpts)
{
	size_t i;

	memset(t, 0, sizeof(*t));
	for (i = 0; i < rcpts->count; i++)
		address_list_add(&t->rcpts, &rcpts->items[i]);
	t->done = xcalloc(rcpts->count, sizeof(*t->done));
}

/* Drop the recipients delivered to; returns how many there were. */
static size_t
todo_drop_done(struct todo *t)
{
	struct address_list left = { 0 };
	size_t i, dropped = 0;

	for (i = 0; i < t->rcpts.count; i++) {
		if (t->done[i])
			dropped++;
		else
			address_list_add(&left, &t->rcpts.items[i]);
	}
	address_list_free(&t->rcpts);
	t->rcpts = left;
	memset(t->done, 0, sizeof(*t->done) * (t->rcpts.count ? t->rcpts.count : 1));
	return dropped;
}

static void
todo_free(struct todo *t)
{
	address_list_free(&t->rcpts);
	free(t->done);
}

static void
smtp_params_for(const struct deliver_params *p, const struct todo *t, const char *token,
    struct smtp_params *sp)
{
	const struct account *a = p->sender->account;

	memset(sp, 0, sizeof(*sp));
	sp->server = &a->smtp;
	sp->ca_file = p->cfg->tls_ca_file;
	sp->timeout_cap = p->cfg->timeout_seconds ? (int)p->cfg->timeout_seconds :
	    TM_HTTP_TIMEOUT_SECONDS;
	sp->helo_name = p->helo_name;
	sp->access_token = token;
	sp->envelope_from = p->sender->envelope;
	sp->rcpts = &t->rcpts;
	sp->rcpt_done = t->done;
	sp->msg = p->msg;
	sp->dsn_notify = p->dsn_notify;
	sp->dsn_ret = p->dsn_ret;
	sp->dsn_envid = p->dsn_envid;
}

/* The decisive reply's first line, "250 2.0.0 OK ...", for the log line. */
static void
keep_reply(struct deliver_params *p, const struct smtp_result *r)
{
	size_t n = strcspn(r->reply.text, "\n");

	if (r->reply.code == 0)
		return;
	(void)str_format(p->final_reply, sizeof(p->final_reply), "%d %.*s", r->reply.code,
	    (int)(n < 400 ? n : 400), r->reply.text);
}

static int
smtp_with_token(struct deliver_params *p, const struct todo *t, const struct token_context *c,
    bool need_token, struct smtp_result *r, struct tm_err *err)
{
	struct smtp_params sp;
	char *token = NULL;
	int rc = -1;

	memset(r, 0, sizeof(*r));
	if (need_token && token_get(c, &token, err) < 0)
		goto out;
	smtp_params_for(p, t, token, &sp);
	rc = smtp_deliver(&sp, r, err);
	keep_reply(p, r);
out:
	secret_free(token);
	return rc;
}

/*
 * One attempt. A server that rejects the token (535 after AUTH) gets one
 * fresh token: a cached token can be revoked or made stale by a change of
 * the app's permissions before it expires.
 */
static int
attempt(struct deliver_params *p, const struct todo *t, struct tm_err *err)
{
	const struct account *a = p->sender->account;
	bool need_token = a->smtp.auth != SMTP_AUTH_NONE;
	struct token_context c;
	struct smtp_result r;
	struct tm_err ignored;

	token_context_for(p, &c);
	if (smtp_with_token(p, t, &c, need_token, &r, err) == 0)
		return 0;
	if (!r.auth_rejected || !need_token)
		return -1;
	log_trace("deliver: the server rejected the token; trying once with a new one");
	tm_err_clear(&ignored);
	(void)token_invalidate(&c, &ignored);
	tm_err_clear(err);
	return smtp_with_token(p, t, &c, need_token, &r, err);
}

/* One Graph attempt: Graph takes the recipients from the header, so it is
   all or nothing; a rejected token is replaced inside graph_deliver. */
static int
graph_attempt(struct deliver_params *p, long *retry_after, struct tm_err *err)
{
	const struct config *cfg = p->cfg;
	struct token_context c;
	struct graph_result r;
	struct graph_params gp = {
		.account = p->sender->account,
		.tc = &c,
		.msg = p->msg,
		.ca_file = cfg->tls_ca_file,
		.proxy = cfg->https_proxy,
		.request_id = p->request_id,
	};
	int rc;

	token_context_for(p, &c);
	gp.env_proxy = !c.setgid;
	gp.timeout_seconds = c.timeout_seconds;
	rc = graph_deliver(&gp, &r, err);
	(void)str_copy(p->final_reply, sizeof(p->final_reply), r.reply);
	*retry_after = r.retry_after;
	return rc;
}

/*
 * Attempts until one succeeds, a failure is not temporary, or the budget
 * is spent. Recipients an attempt delivered to (before a later transaction
 * of the same session failed) are not sent the message again.
 */
static int
attempts(struct deliver_params *p, struct todo *t, struct tm_err *err)
{
	time_t start = time(NULL);
	unsigned tries, wait = 1, pause;
	size_t delivered = 0;
	long retry_after = -1;
	bool graph = p->sender->account->method == METHOD_GRAPH;

	for (tries = 1;; tries++) {
		tm_err_clear(err);
		if ((graph ? graph_attempt(p, &retry_after, err) : attempt(p, t, err)) == 0)
			return 0;
		delivered += todo_drop_done(t);
		/* The server's Retry-After wins over our backoff when it is longer. */
		pause = retry_after > (long)wait ? (unsigned)retry_after : wait;
		if (err->exit != EX_TEMPFAIL || tries >= p->cfg->retry_attempts)
			break;
		if (time(NULL) - start + (time_t)pause > (time_t)p->cfg->retry_max_seconds) {
			if (retry_after > (long)wait)
				tm_err_detail(err, "Retry-After %ld s is beyond the retry budget "
				    "(retry.max_seconds %u)", retry_after, p->cfg->retry_max_seconds);
			break;
		}
		log_trace("deliver: temporary failure (%s); trying again in %u s", err->msg, pause);
		sleep(pause);
		wait *= 2;
	}
	if (delivered > 0)
		tm_err_detail(err, "%zu of %zu recipients already have the message; a resend "
		    "must go to the others only", delivered, p->rcpts->count);
	return -1;
}

int
deliver_message(struct deliver_params *p, struct tm_err *err)
{
	struct todo t;
	int rc;

	if (p->sender->account->method == METHOD_GRAPH)
		graph_new_request_id(p->request_id, sizeof(p->request_id));
	todo_init(&t, p->rcpts);
	rc = attempts(p, &t, err);
	todo_free(&t);
	return rc;
}
