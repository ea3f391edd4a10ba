/*
 * run.h: what the tokenmail program's own files share (main.c, run_send.c,
 * run_modes.c), not part of the library: the state of one run, and the
 * steps the modes have in common.
 */
#ifndef TM_RUN_H
#define TM_RUN_H

#include <stdbool.h>
#include <sys/types.h>
#include <time.h>

#include "account.h"
#include "address.h"
#include "broker.h"
#include "cli.h"
#include "config.h"
#include "log.h"
#include "message.h"
#include "tm_limits.h"
#include "token.h"

#define MAX_GROUPS 256

/* Everything one run of tokenmail knows, released by run_free(). */
struct run {
	struct invocation inv;
	char config_path[TM_PATH_MAX];
	struct config cfg;
	struct config_params params;
	bool config_loaded;
	struct caller caller;
	char *login;
	char *full_name;
	char *home;
	char *group_names[MAX_GROUPS];
	char hostname[TM_NAME_MAX];
	char short_hostname[TM_NAME_MAX];
	const char *local_domains[5];
	struct message msg;
	struct address_list wanted;	/* recipients as given (args, -t) */
	struct address_list rcpts;	/* envelope recipients */
	struct sender sender;
	bool message_taken;		/* stdin was read: a failure keeps the message */
	off_t stdin_start;		/* where reading began, when stdin is a file */
	char final_reply[512];
	char request_id[40];		/* Graph's client-request-id, or "" */
	struct timespec started;
	char context[TM_PATH_MAX + 128];
	bool setgid;			/* installed setgid: the cache is the group's */
	bool confined;			/* setgid and run by a user who is not root:
					   the caller cannot choose files, and tokens
					   come from the broker */
	struct broker broker;		/* confined: the token broker (fd -1: none) */
	bool config_tried;		/* load_config ran: config_rc, config_err */
	int config_rc;
	struct tm_err config_err;
};

/* main.c */
int load_config(struct run *r, struct tm_err *err);
const struct token_broker *token_broker(const struct run *r);

/* run_send.c: the send path, shared by a piped message and -bs */
int resolve_sender(struct run *r, struct tm_err *err);
int send_resolved(struct run *r, struct tm_err *err);
int keep_message(struct run *r, struct tm_err *err);
void log_outcome(const struct run *r, int rc, const struct tm_err *err);
int run_send(struct run *r, struct tm_err *err);
int run_verify(struct run *r, struct tm_err *err);

/* run_modes.c */
int run_newaliases(struct run *r, struct tm_err *err);
int run_token(struct run *r, struct tm_err *err);
int run_authorize(struct run *r, struct tm_err *err);
int run_check(struct run *r, struct tm_err *err);
int run_serve(struct run *r, struct tm_err *err);

#endif
