/*
 * graph.c: Graph delivery (graph.h): the requests every path makes (token,
 * client-request-id, one fresh token after a 401) and sendMail, the path
 * of every message that fits one request.
 *
 * sendMail in MIME form: POST {prefix}/sendMail, Content-Type text/plain,
 * the body the base64 of the message exactly as transmitted, produced
 * while libcurl sends it (stream.h), so memory stays flat.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph_priv.h"
#include "log.h"
#include "stream.h"
#include "tm_limits.h"

void
graph_new_request_id(char *out, size_t size)
{
	unsigned char b[16];
	static const char digits[] = "0123456789abcdef";
	size_t i, o = 0;

	random_bytes(b, sizeof(b));
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);	/* version 4 */
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);	/* RFC 4122 variant */
	if (size < GRAPH_REQUEST_ID_LEN + 1) {
		if (size > 0)
			out[0] = '\0';
		return;
	}
	for (i = 0; i < sizeof(b); i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		out[o++] = digits[b[i] >> 4];
		out[o++] = digits[b[i] & 15];
	}
	out[o] = '\0';
}

/* ---- requests ---- */

/* req for c; headers[4] holds the header lines it points to. */
static void
request_for(const struct graph_session *g, const struct graph_call *c,
    char *id_header, size_t id_size, const char **headers, struct http_request *req)
{
	const struct graph_params *p = g->p;
	size_t n = 0;

	(void)str_format(id_header, id_size, "client-request-id: %s", p->request_id);
	headers[n++] = id_header;
	headers[n++] = "return-client-request-id: true";
	if (c->header)
		headers[n++] = c->header;
	headers[n] = NULL;
	memset(req, 0, sizeof(*req));
	req->method = c->method;
	req->url = c->url;
	req->content_type = c->content_type;
	req->source = c->source;
	req->body = c->body;
	req->body_len = c->body_len;
	req->headers = headers;
	req->bearer_token = c->no_auth ? NULL : g->token;
	req->ca_file = p->ca_file;
	req->proxy = p->proxy;
	req->env_proxy = p->env_proxy;
	req->timeout_seconds = p->timeout_seconds;
	req->max_response = c->max_response ? c->max_response : TM_JSON_MAX;
}

static int
perform(struct graph_session *g, const struct graph_call *c, struct http_response *resp,
    struct tm_err *err)
{
	struct http_request req;
	char id_header[GRAPH_REQUEST_ID_LEN + 32];
	const char *headers[4];

	if (c->source && c->source->rewind(c->source->ctx) < 0)
		return tm_err_set(err, TM_ERR_IO, EX_IOERR, "cannot read the message spool");
	request_for(g, c, id_header, sizeof(id_header), headers, &req);
	return http_perform(&req, resp, err);
}

/* A 401 may be a cached token revoked or issued before a permission
   change: one fresh token, once per message. */
static int
renew_token(struct graph_session *g, struct tm_err *err)
{
	struct tm_err ignored;

	log_trace("graph: the access token was rejected; trying once with a new one");
	g->token_renewed = true;
	tm_err_clear(&ignored);
	(void)token_invalidate(g->p->tc, &ignored);
	secret_free(g->token);
	g->token = NULL;
	return token_get(g->p->tc, &g->token, err);
}

int
graph_request(struct graph_session *g, const struct graph_call *c,
    struct http_response *resp, struct tm_err *err)
{
	for (;;) {
		g->status = 0;
		if (perform(g, c, resp, err) < 0) {
			(void)str_copy(g->r->reply, sizeof(g->r->reply), err->msg);
			return -1;
		}
		g->status = resp->status;
		if (resp->status == c->expect || (c->expect_also && resp->status == c->expect_also))
			return 0;
		if (resp->status != 401 || c->no_auth || g->token_renewed)
			break;
		http_response_free(resp);
		if (renew_token(g, err) < 0)
			return -1;
	}
	graph_answer_error(c, resp, g->r, err);
	http_response_free(resp);
	return -1;
}

int
graph_call_ok(struct graph_session *g, const struct graph_call *c, struct tm_err *err)
{
	struct http_response resp;

	if (graph_request(g, c, &resp, err) < 0)
		return -1;
	http_response_free(&resp);
	return 0;
}

/* ---- the message as pieces ---- */

static int
strbuf_sink(void *ctx, const char *data, size_t len)
{
	return strbuf_append(ctx, data, len);
}

void
graph_message_pieces(const struct message *m, struct strbuf *hdr, struct stream_pieces *out)
{
	strbuf_init(hdr, (size_t)8 * TM_HEADER_BLOCK_MAX);
	(void)message_write_header(m, strbuf_sink, hdr);
	stream_pieces_init(out);
	stream_pieces_add_mem(out, hdr->data, hdr->len);
	if (m->spool_fd >= 0)
		stream_pieces_add_file(out, m->spool_fd, m->body_offset,
		    m->spool_size - m->body_offset);
}

/* ---- sendMail ---- */

static int
send_mail(struct graph_session *g, struct tm_err *err)
{
	struct strbuf hdr, url;
	struct stream_pieces msg;
	struct stream_base64 b64;
	struct http_body_source src;
	int rc;

	graph_message_pieces(g->p->msg, &hdr, &msg);
	stream_base64_init(&b64, &msg.s);
	stream_body_source(&b64.s, &src);
	strbuf_init(&url, TM_PATH_MAX);
	(void)strbuf_appendf(&url, "%s/sendMail", g->prefix.data);
	rc = graph_call_ok(g, &(struct graph_call){ .what = "refused the message",
	    .method = "POST", .url = url.data, .content_type = "text/plain", .source = &src,
	    .expect = 202 }, err);
	strbuf_free(&url);
	stream_pieces_free(&msg);
	strbuf_free(&hdr);
	return rc;
}

/* ---- entry ---- */

static int
build_prefix(const struct account *a, struct strbuf *b)
{
	const char *base = a->graph.url;
	size_t n = strlen(base);

	while (n > 0 && base[n - 1] == '/')
		n--;
	strbuf_init(b, TM_PATH_MAX);
	if (strbuf_append(b, base, n) < 0)
		return -1;
	/* A delegated token is the user's own: /me. App-only tokens must name
	   the mailbox. */
	if (a->grant == GRANT_REFRESH_TOKEN)
		return strbuf_append_str(b, "/me");
	if (strbuf_append_str(b, "/users/") < 0)
		return -1;
	return http_url_escape(b, a->from);
}

static int
too_large(const struct graph_params *p, long long size, struct tm_err *err)
{
	tm_err_set(err, TM_ERR_RESP, EX_UNAVAILABLE,
	    "the message is %lld octets; graph.max_size for account %s is %u", size,
	    p->account->name, p->account->graph.max_size);
	tm_err_hint(err, "Exchange Online takes at most 150 MB, and a mailbox's own limit "
	    "is often 35 MB");
	return -1;
}

int
graph_deliver(const struct graph_params *p, struct graph_result *r, struct tm_err *err)
{
	struct graph_session g = { .p = p, .r = r };
	long long size = message_transmit_size(p->msg);
	int rc = -1;

	memset(r, 0, sizeof(*r));
	r->retry_after = -1;
	if (size > (long long)p->account->graph.max_size)
		return too_large(p, size, err);
	if (build_prefix(p->account, &g.prefix) < 0) {
		tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG, "graph.url of account %s is too long",
		    p->account->name);
		goto out;
	}
	if (token_get(p->tc, &g.token, err) < 0)
		goto out;
	if (stream_base64_size(size) <= TM_GRAPH_INLINE_MAX)
		rc = send_mail(&g, err);
	else
		rc = graph_send_draft(&g, err);
	if (rc == 0)
		(void)str_copy(r->reply, sizeof(r->reply), "202 Accepted");
out:
	secret_free(g.token);
	strbuf_free(&g.prefix);
	return rc;
}
