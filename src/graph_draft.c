/*
 * graph_draft.c: the path of a message too large for one Graph request
 * (PROTOCOL 4.4, 4.5). Attachments are taken out of the MIME, largest
 * first, until the rest fits one request; the rest becomes a draft
 * (POST {prefix}/messages, base64 MIME), each attachment taken out is
 * added to it (posted whole under TM_GRAPH_UPLOAD_MIN, else through an
 * upload session in TM_GRAPH_CHUNK pieces), and the draft is sent. A draft
 * left over by a failure is deleted, so Drafts does not fill up with
 * half-built copies. Everything is streamed from the spool except one
 * upload chunk at a time.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph_priv.h"
#include "json.h"
#include "log.h"
#include "mime.h"
#include "stream.h"
#include "tm_limits.h"

/* A resumed chunk is given up after this many tries (PROTOCOL 4.5). */
#define UPLOAD_RESUMES_MAX	3

/* The message being taken apart. */
struct draft {
	struct graph_session *g;
	struct strbuf hdr;		/* the header as transmitted */
	struct stream_pieces msg;	/* header + spool body */
	struct mime_reader reader;	/* random access to msg */
	struct mime_tree tree;
	bool *moved;			/* per part: taken out of the draft MIME */
	char id[512];			/* the draft's id once created */
};

/* The MIME parser's view of the message. */
static long
message_read_at(void *ctx, long long offset, char *buf, size_t n)
{
	struct tm_err ignored;

	return stream_pieces_read_at(ctx, offset, buf, n, &ignored);
}

/* ---- what to take out ---- */

static long long
part_bytes(const struct mime_part *p)
{
	return p->next_delim - p->delim_start;
}

/* The draft MIME: the message without the parts taken out. */
static void
draft_pieces(const struct draft *d, struct stream_pieces *out)
{
	long long at = 0;
	size_t i;

	stream_pieces_init(out);
	for (i = 0; i < d->tree.count; i++) {
		if (!d->moved[i])
			continue;
		stream_pieces_add_range(out, &d->msg, at, d->tree.parts[i].delim_start);
		at = d->tree.parts[i].next_delim;
	}
	stream_pieces_add_range(out, &d->msg, at, d->msg.s.size);
}

/* The largest attachment still in, or -1. */
static long
largest_left(const struct draft *d)
{
	long best = -1;
	size_t i;

	for (i = 1; i < d->tree.count; i++) {
		if (d->moved[i] || !mime_part_is_attachment(&d->tree, i))
			continue;
		if (best < 0 || part_bytes(&d->tree.parts[i]) > part_bytes(&d->tree.parts[best]))
			best = (long)i;
	}
	return best;
}

static int
choose_moved(struct draft *d, struct tm_err *err)
{
	long long left = d->msg.s.size;
	long i;

	while (stream_base64_size(left) > TM_GRAPH_INLINE_MAX) {
		if ((i = largest_left(d)) < 0) {
			tm_err_set(err, TM_ERR_RESP, EX_UNAVAILABLE, "the message is too large for "
			    "Microsoft Graph even without its attachments (%lld octets left)", left);
			tm_err_hint(err, "its text and inline parts must fit one 4 MB request; "
			    "send it with method: smtp");
			return -1;
		}
		d->moved[i] = true;
		left -= part_bytes(&d->tree.parts[i]);
	}
	return 0;
}

/* ---- requests ---- */

static void
url_for(const struct draft *d, const char *suffix, struct strbuf *url)
{
	strbuf_init(url, TM_PATH_MAX + sizeof(d->id));
	(void)strbuf_append_str(url, d->g->prefix.data);
	(void)strbuf_append_str(url, "/messages");
	if (d->id[0]) {
		(void)strbuf_append_str(url, "/");
		(void)http_url_escape(url, d->id);
	}
	(void)strbuf_append_str(url, suffix);
}

/* A JSON answer's member, copied into out; -1 (EX_PROTOCOL) when absent. */
static int
answer_string(const struct http_response *resp, const char *path, char *out, size_t size,
    struct tm_err *err)
{
	struct json_doc *doc = NULL;
	const char *v;
	int rc = -1;

	if (json_parse_from("Microsoft Graph", resp->body, resp->body_len, &doc, err) < 0)
		return -1;
	v = json_get(doc, path);
	if (v == NULL || v[0] == '\0' || str_copy(out, size, v) < 0)
		tm_err_set(err, TM_ERR_PROTO, EX_PROTOCOL,
		    "Microsoft Graph's answer has no usable \"%s\"", path);
	else
		rc = 0;
	json_free(doc);
	return rc;
}

static int
create_draft(struct draft *d, struct tm_err *err)
{
	struct stream_pieces mime;
	struct stream_base64 b64;
	struct http_body_source src;
	struct http_response resp;
	struct strbuf url;
	int rc;

	draft_pieces(d, &mime);
	stream_base64_init(&b64, &mime.s);
	stream_body_source(&b64.s, &src);
	url_for(d, "", &url);
	rc = graph_request(d->g, &(struct graph_call){ .what = "refused the draft",
	    .method = "POST", .url = url.data, .content_type = "text/plain", .source = &src,
	    .builds_draft = true, .expect = 201 }, &resp, err);
	if (rc == 0) {
		rc = answer_string(&resp, "id", d->id, sizeof(d->id), err);
		http_response_free(&resp);
	}
	strbuf_free(&url);
	stream_pieces_free(&mime);
	return rc;
}

/* Best effort: the failure being reported matters more than this one. */
static void
delete_draft(struct draft *d)
{
	struct strbuf url;
	struct tm_err ignored;
	struct graph_result keep = *d->g->r;

	tm_err_clear(&ignored);
	url_for(d, "", &url);
	if (graph_call_ok(d->g, &(struct graph_call){ .what = "refused to delete the draft",
	    .method = "DELETE", .url = url.data, .expect = 204, .expect_also = 200 },
	    &ignored) < 0)
		log_trace("graph: the draft could not be deleted: %s", ignored.msg);
	*d->g->r = keep;
	strbuf_free(&url);
}

static int
send_draft(struct draft *d, struct tm_err *err)
{
	struct strbuf url;
	int rc;

	url_for(d, "/send", &url);
	rc = graph_call_ok(d->g, &(struct graph_call){ .what = "refused to send the draft",
	    .method = "POST", .url = url.data, .expect = 202 }, err);
	strbuf_free(&url);
	return rc;
}

/* ---- one attachment ---- */

struct attachment {
	const struct mime_part *part;
	char name[300];
	long long size;		/* decoded */
	struct strbuf meta;	/* "name":...,"contentType":...[,"isInline":...] */
};

static int
attachment_init(struct draft *d, size_t index, size_t nth, struct attachment *a,
    struct tm_err *err)
{
	const struct mime_part *p = &d->tree.parts[index];

	memset(a, 0, sizeof(*a));
	a->part = p;
	if (p->filename && p->filename[0])
		(void)str_copy(a->name, sizeof(a->name), p->filename);
	else
		(void)str_format(a->name, sizeof(a->name), "attachment-%zu", nth);
	strbuf_init(&a->meta, 4096);
	(void)strbuf_append_str(&a->meta, "\"name\":");
	(void)json_append_string(&a->meta, a->name);
	(void)strbuf_append_str(&a->meta, ",\"contentType\":");
	(void)json_append_string(&a->meta, p->type[0] ? p->type : "application/octet-stream");
	if (p->disposition_inline && p->content_id) {
		(void)strbuf_append_str(&a->meta, ",\"isInline\":true,\"contentId\":");
		(void)json_append_string(&a->meta, p->content_id);
	}
	return mime_part_decoded_size(&d->reader, p, &a->size, err);
}

/* POST {draft}/attachments with the bytes inline: JSON around base64. */
static int
post_attachment(struct draft *d, struct attachment *a, struct tm_err *err)
{
	struct strbuf head, url, what;
	struct stream_pieces pre, post;
	struct stream_mime_part body;
	struct stream_base64 b64;
	struct stream_chain all;
	struct http_body_source src;
	int rc;

	strbuf_init(&head, 8192);
	(void)strbuf_append_str(&head, "{\"@odata.type\":\"#microsoft.graph.fileAttachment\",");
	(void)strbuf_append(&head, a->meta.data, a->meta.len);
	(void)strbuf_append_str(&head, ",\"contentBytes\":\"");
	stream_pieces_init(&pre);
	stream_pieces_add_mem(&pre, head.data, head.len);
	stream_pieces_init(&post);
	stream_pieces_add_mem(&post, "\"}", 2);
	stream_mime_part_init(&body, &d->reader, a->part, a->size);
	stream_base64_init(&b64, &body.s);
	stream_chain_init(&all);
	stream_chain_add(&all, &pre.s);
	stream_chain_add(&all, &b64.s);
	stream_chain_add(&all, &post.s);
	stream_body_source(&all.s, &src);
	url_for(d, "/attachments", &url);
	strbuf_init(&what, 512);
	(void)strbuf_appendf(&what, "refused the attachment \"%s\"", a->name);
	/* Graph answers with the attachment, its contentBytes included. */
	rc = graph_call_ok(d->g, &(struct graph_call){ .what = what.data, .method = "POST",
	    .url = url.data, .content_type = "application/json", .source = &src,
	    .max_response = 2 * TM_GRAPH_REQUEST_MAX, .builds_draft = true, .expect = 201 },
	    err);
	strbuf_free(&what);
	strbuf_free(&url);
	stream_pieces_free(&pre);
	stream_pieces_free(&post);
	strbuf_free(&head);
	return rc;
}

/* ---- upload sessions ---- */

struct upload {
	struct draft *d;
	struct attachment *a;
	char url[4096];			/* pre-authenticated: never traced */
	struct stream_mime_part src;	/* the decoded bytes, read in order */
	char *chunk;			/* TM_GRAPH_CHUNK octets */
	long long chunk_start;		/* offset of chunk[0] */
	size_t chunk_len;
	char what[400];
};

static int
open_session(struct upload *u, struct tm_err *err)
{
	struct strbuf body, url;
	struct http_response resp;
	int rc;

	strbuf_init(&body, 8192);
	(void)strbuf_append_str(&body, "{\"AttachmentItem\":{\"attachmentType\":\"file\",");
	(void)strbuf_append(&body, u->a->meta.data, u->a->meta.len);
	(void)strbuf_appendf(&body, ",\"size\":%lld}}", u->a->size);
	url_for(u->d, "/attachments/createUploadSession", &url);
	(void)str_format(u->what, sizeof(u->what), "refused the upload session for \"%s\"",
	    u->a->name);
	rc = graph_request(u->d->g, &(struct graph_call){ .what = u->what, .method = "POST",
	    .url = url.data, .content_type = "application/json", .body = body.data,
	    .body_len = body.len, .builds_draft = true, .expect = 201 }, &resp, err);
	if (rc == 0) {
		rc = answer_string(&resp, "uploadUrl", u->url, sizeof(u->url), err);
		http_response_free(&resp);
	}
	strbuf_free(&url);
	strbuf_free(&body);
	return rc;
}

/* The next chunk of decoded bytes into u->chunk. */
static int
fill_chunk(struct upload *u, struct tm_err *err)
{
	u->chunk_start += (long long)u->chunk_len;
	u->chunk_len = 0;
	while (u->chunk_len < TM_GRAPH_CHUNK &&
	    u->chunk_start + (long long)u->chunk_len < u->a->size) {
		long got = stream_read(&u->src.s, u->chunk + u->chunk_len,
		    TM_GRAPH_CHUNK - u->chunk_len);

		if (got < 0) {
			*err = u->src.s.err;
			return -1;
		}
		if (got == 0)
			return tm_err_set(err, TM_ERR_IO, EX_IOERR,
			    "the attachment \"%s\" is shorter than measured", u->a->name);
		u->chunk_len += (size_t)got;
	}
	return 0;
}

/* PUT chunk[from..chunk_len) at its place; no Authorization header: the
   URL carries its own credential and Graph refuses a second one. */
static int
put_range(struct upload *u, size_t from, struct tm_err *err)
{
	char range[128];
	long long first = u->chunk_start + (long long)from;
	long long last = u->chunk_start + (long long)u->chunk_len - 1;

	(void)str_format(range, sizeof(range), "Content-Range: bytes %lld-%lld/%lld", first,
	    last, u->a->size);
	return graph_call_ok(u->d->g, &(struct graph_call){ .what = u->what, .method = "PUT",
	    .url = u->url, .content_type = "application/octet-stream", .body = u->chunk + from,
	    .body_len = u->chunk_len - from, .header = range, .no_auth = true,
	    .builds_draft = true, .expect = last + 1 == u->a->size ? 201 : 200,
	    .expect_also = 200 }, err);
}

/* Where the session wants the next byte, from GET on the upload URL. */
static int
next_expected(struct upload *u, long long *next, struct tm_err *err)
{
	struct http_response resp;
	struct json_doc *doc = NULL;
	const char *range;
	int rc = -1;

	if (graph_request(u->d->g, &(struct graph_call){ .what = u->what, .method = "GET",
	    .url = u->url, .no_auth = true, .builds_draft = true, .expect = 200 }, &resp,
	    err) < 0)
		return -1;
	if (json_parse_from("Microsoft Graph", resp.body, resp.body_len, &doc, err) == 0) {
		range = json_get_array_string(doc, "nextExpectedRanges", 0);
		if (range && sscanf(range, "%lld", next) == 1 && *next >= 0)
			rc = 0;
		else
			tm_err_set(err, TM_ERR_PROTO, EX_PROTOCOL, "the upload session for \"%s\" "
			    "gave no usable nextExpectedRanges", u->a->name);
	}
	json_free(doc);
	http_response_free(&resp);
	return rc;
}

/* Send the chunk; after a failure that may be the network's, ask the
   session what arrived and send the rest of the chunk from there. */
static int
put_chunk(struct upload *u, struct tm_err *err)
{
	long long next;
	size_t from = 0;
	int tries;

	for (tries = 0;; tries++) {
		if (put_range(u, from, err) == 0)
			return 0;
		/* 416: the session holds other octets than assumed, e.g. after
		   libcurl resent a request on a connection that broke. */
		if ((err->exit != EX_TEMPFAIL && u->d->g->status != 416) ||
		    tries == UPLOAD_RESUMES_MAX)
			return -1;
		log_trace("graph: upload of \"%s\" interrupted (%s); resuming", u->a->name,
		    err->msg);
		if (next_expected(u, &next, err) < 0)
			return -1;
		if (next == u->chunk_start + (long long)u->chunk_len)
			return 0;	/* it did all arrive */
		if (next < u->chunk_start || next > u->chunk_start + (long long)u->chunk_len)
			return tm_err_set(err, TM_ERR_PROTO, EX_PROTOCOL, "the upload session "
			    "for \"%s\" expects octet %lld, outside the chunk sent", u->a->name, next);
		from = (size_t)(next - u->chunk_start);
		tm_err_clear(err);
	}
}

static int
upload_attachment(struct draft *d, struct attachment *a, struct tm_err *err)
{
	struct upload u;
	int rc = -1;

	memset(&u, 0, sizeof(u));
	u.d = d;
	u.a = a;
	if (open_session(&u, err) < 0)
		goto out;
	stream_mime_part_init(&u.src, &d->reader, a->part, a->size);
	u.chunk = xmalloc(TM_GRAPH_CHUNK);
	while (u.chunk_start + (long long)u.chunk_len < a->size) {
		if (fill_chunk(&u, err) < 0 || put_chunk(&u, err) < 0)
			goto out;
	}
	rc = 0;
out:
	free(u.chunk);
	secret_wipe(u.url, sizeof(u.url));
	return rc;
}

static int
add_attachments(struct draft *d, struct tm_err *err)
{
	struct attachment a;
	size_t i, nth = 0;
	int rc = 0;

	for (i = 1; i < d->tree.count && rc == 0; i++) {
		if (mime_part_is_attachment(&d->tree, i))
			nth++;
		if (!d->moved[i])
			continue;
		rc = attachment_init(d, i, nth, &a, err);
		if (rc == 0 && a.size < TM_GRAPH_UPLOAD_MIN)
			rc = post_attachment(d, &a, err);
		else if (rc == 0)
			rc = upload_attachment(d, &a, err);
		strbuf_free(&a.meta);
	}
	return rc;
}

/* ---- entry ---- */

int
graph_send_draft(struct graph_session *g, struct tm_err *err)
{
	struct draft d;
	int rc = -1;

	memset(&d, 0, sizeof(d));
	d.g = g;
	graph_message_pieces(g->p->msg, &d.hdr, &d.msg);
	d.reader = (struct mime_reader){ &d.msg, message_read_at, d.msg.s.size };
	if (mime_parse(&d.reader, &d.tree, err) < 0)
		goto out;
	d.moved = xcalloc(d.tree.count ? d.tree.count : 1, sizeof(*d.moved));
	if (choose_moved(&d, err) < 0 || create_draft(&d, err) < 0)
		goto out;
	log_trace("graph: draft created for a message of %lld octets", d.msg.s.size);
	rc = add_attachments(&d, err);
	if (rc == 0)
		rc = send_draft(&d, err);
	if (rc < 0)
		delete_draft(&d);
out:
	free(d.moved);
	mime_tree_free(&d.tree);
	stream_pieces_free(&d.msg);
	strbuf_free(&d.hdr);
	return rc;
}
