/*
 * deliver.h: one delivery attempt loop. Gets a token, runs the method's
 * transport (SMTP or Graph), drops the token and tries once more
 * when the server rejects it, and tries again after temporary failures
 * within the config's retry budget (attempts, max_seconds) with backoff.
 * The outcome is a sysexits code in err.
 */
#ifndef TM_DELIVER_H
#define TM_DELIVER_H

#include "account.h"
#include "config.h"
#include "err.h"
#include "message.h"
#include "token.h"

struct deliver_params {
	const struct config *cfg;
	const struct config_params *cparams;
	const struct sender *sender;
	const struct address_list *rcpts;
	const struct message *msg;
	const char *helo_name;
	const char *dsn_notify, *dsn_ret, *dsn_envid;
	bool setgid;			/* installed setgid: the group's cache, no *_proxy */
	const struct token_broker *broker; /* setgid for another user: tokens from it */
	char final_reply[512];		/* out: the server's last reply, for the log */
	char request_id[40];		/* out: Graph's client-request-id, or "" */
};

/* 0 when the provider accepted the message; else -1 with err. */
int deliver_message(struct deliver_params *p, struct tm_err *err);

#endif
