/*
 * broker.h: setgid mode's privilege separation (SPEC 9). Installed setgid
 * and run by a user who is not root, tokenmail forks a token broker that
 * keeps the group; the main process then drops the group for good and
 * does everything the caller can influence (the message, -X, the dead
 * letter, the network) with the caller's own rights. The broker reads the
 * secrets, runs the grants and owns the cache; over a socket pair it
 * answers one kind of request, "an access token for account A" (or "drop
 * A's cached token"), and only for accounts whose allowed_users admit the
 * caller. It never sends a secret or a refresh token, and exits when the
 * main process closes its end.
 */
#ifndef TM_BROKER_H
#define TM_BROKER_H

#include <sys/types.h>

#include "account.h"
#include "config.h"
#include "err.h"
#include "token.h"

struct broker {
	struct token_broker source;	/* what token contexts point at */
	int fd;				/* the main process's end, or -1 */
	pid_t pid;
	int timeout_seconds;		/* waiting for one answer */
};

/*
 * Fork the broker with cfg, params and the caller as they are now (the
 * child keeps its own copy). In the parent, b is ready for token
 * contexts (&b->source). -1 with err (EX_OSERR) when the fork or the
 * socket pair fails.
 */
int broker_start(struct broker *b, const struct config *cfg,
    const struct config_params *params, const struct caller *caller, struct tm_err *err);

/* Append the log line (log_format_message's) to the configured log file,
   which is the group's: -1 with err as log_message gives. */
int broker_log(const struct broker *b, const char *line, struct tm_err *err);

/* Close the main process's end and reap the broker (it exits on EOF). */
void broker_stop(struct broker *b);

#endif
