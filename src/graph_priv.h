/*
 * graph_priv.h: what graph.c (sendMail, requests, tokens), graph_draft.c
 * (the draft path) and graph_error.c (answers to exit codes) share.
 */
#ifndef TM_GRAPH_PRIV_H
#define TM_GRAPH_PRIV_H

#include "graph.h"
#include "http.h"
#include "util.h"

/* One message's requests: the token and the URL prefix they share. */
struct graph_session {
	const struct graph_params *p;
	struct graph_result *r;
	char *token;		/* secret_free'd at the end */
	bool token_renewed;	/* a 401 already got a fresh token */
	long status;		/* the last answer's HTTP status, 0 if none */
	struct strbuf prefix;	/* {graph.url}/users/{from} or {graph.url}/me */
};

/* One request and the answer it must get. */
struct graph_call {
	const char *what;		/* for messages: "refused the draft" */
	const char *method;
	const char *url;
	const char *content_type;	/* or NULL */
	const struct http_body_source *source;	/* or body[body_len] */
	const char *body;
	size_t body_len;
	const char *header;		/* one more header line, or NULL */
	bool builds_draft;		/* a step that needs Mail.ReadWrite */
	bool no_auth;			/* a pre-authenticated upload URL */
	size_t max_response;		/* cap on the answer; 0: TM_JSON_MAX */
	long expect, expect_also;	/* the statuses that mean success */
};

/*
 * Perform c. 0 when the status is c->expect or c->expect_also (resp kept
 * for the caller to read and free); else -1 with err: the transport's error,
 * or graph_answer_error's. A 401 gets one fresh token and one repeat.
 */
int graph_request(struct graph_session *g, const struct graph_call *c,
    struct http_response *resp, struct tm_err *err);

/* graph_request for a call whose answer says nothing beyond its status. */
int graph_call_ok(struct graph_session *g, const struct graph_call *c, struct tm_err *err);

/* err (and r->reply, r->retry_after) for an answer c did not expect. */
int graph_answer_error(const struct graph_call *c, const struct http_response *resp,
    struct graph_result *r, struct tm_err *err);

/* The draft path (graph_draft.c) for a message too large for sendMail. */
int graph_send_draft(struct graph_session *g, struct tm_err *err);

/* The message as transmitted: its header (rendered into hdr) and the spool
   body, as pieces for stream.h. */
struct stream_pieces;
void graph_message_pieces(const struct message *m, struct strbuf *hdr,
    struct stream_pieces *out);

#endif
