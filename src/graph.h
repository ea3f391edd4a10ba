/*
 * graph.h: delivery through Microsoft Graph (SPEC 6, PROTOCOL 4). A message
 * that fits one request goes to sendMail as base64 MIME streamed from the
 * spool; a bigger one becomes a draft whose large attachments are taken
 * out and uploaded on their own (upload sessions), and the draft is then
 * sent. The header must already name exactly the envelope recipients
 * (envelope.h): Graph delivers to To, Cc and Bcc. Within one call a token
 * Graph rejects (401) is replaced once.
 */
#ifndef TM_GRAPH_H
#define TM_GRAPH_H

#include <stdbool.h>

#include "config.h"
#include "err.h"
#include "message.h"
#include "token.h"

#define GRAPH_REQUEST_ID_LEN	36	/* a GUID: 8-4-4-4-12 hex digits */

struct graph_params {
	const struct account *account;
	const struct token_context *tc;	/* where tokens come from */
	const struct message *msg;	/* as transmitted */
	const char *ca_file;		/* tls_ca_file, or NULL */
	const char *proxy;		/* https_proxy, or NULL */
	bool env_proxy;			/* honour *_proxy variables */
	long timeout_seconds;		/* each request */
	const char *request_id;		/* client-request-id of every request */
};

struct graph_result {
	char reply[512];	/* "202 Accepted", or Graph's refusal, for the log */
	long retry_after;	/* seconds from a temporary refusal's Retry-After, else -1 */
};

/*
 * Deliver p->msg. 0 when Graph accepted it (202); else -1 with err:
 * EX_TEMPFAIL (network, 429, 5xx; r->retry_after says when to come back),
 * EX_NOPERM (401 twice, 403), EX_UNAVAILABLE (other 4xx; the message over
 * graph.max_size or too large for Graph), EX_PROTOCOL (an answer Graph does
 * not give), EX_IOERR (the spool), and token_get's errors.
 */
int graph_deliver(const struct graph_params *p, struct graph_result *r, struct tm_err *err);

/* A fresh random (version 4) GUID in out[GRAPH_REQUEST_ID_LEN + 1], lower case. */
void graph_new_request_id(char *out, size_t size);

#endif
