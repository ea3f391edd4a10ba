/*
 * http.h: HTTPS requests through libcurl (built on GnuTLS): the token
 * endpoint now, Graph later. TLS is always verified (system trust plus
 * tls_ca_file), TLS 1.2 at least, redirects are never followed; plain
 * http:// is refused except to a loopback address (127.0.0.0/8, ::1,
 * localhost), which is also never reached through a proxy. Secrets travel
 * only in the request body and the Authorization header, and the -v trace
 * ("> POST https://host/path (N octets, body not shown)", "< 200 (N
 * octets)") prints neither, nor the URL's query. Needs libcurl 7.63 or
 * later (CURLOPT_CURLU). Connections and TLS sessions are kept between the
 * requests of one process (Graph's draft path makes many to one host).
 */
#ifndef TM_HTTP_H
#define TM_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"
#include "util.h"

/*
 * A request body produced while it is sent (the message streamed from the
 * spool): read fills buf with up to n octets and returns the count (0 only
 * at the end), or -1 to abort (the request then fails with EX_IOERR);
 * rewind starts over (libcurl resends a body on a reused connection the
 * server closed), 0 or -1.
 */
struct http_body_source {
	long (*read)(void *ctx, char *buf, size_t n);
	int (*rewind)(void *ctx);
	void *ctx;
	long long size;			/* exactly what read will give in total */
};

struct http_request {
	const char *method;		/* "GET", "POST", "PUT" (A-Z only); others send
					   body as POST does */
	const char *url;
	const char *content_type;	/* for body, or NULL */
	const char *body;		/* may hold secrets: never traced nor copied by
					   us; NULL for none; none with GET */
	size_t body_len;
	const struct http_body_source *source;	/* a streamed body instead of body */
	const char *const *headers;	/* more "Name: value" lines, NULL-terminated,
					   or NULL; never traced */
	const char *bearer_token;	/* Authorization: Bearer, or NULL; never traced */
	const char *ca_file;		/* extra trust anchors (PEM), or NULL */
	const char *proxy;		/* explicit proxy URL, or NULL */
	bool env_proxy;			/* honour *_proxy and no_proxy variables (not
					   when setgid) */
	long timeout_seconds;		/* whole request, > 0 */
	size_t max_response;		/* cap on the response body, > 0 */
};

struct http_response {
	long status;			/* HTTP status, 0 if none arrived */
	char *body;			/* NUL-terminated, may hold tokens: http_response_free wipes it */
	size_t body_len;
	long retry_after;		/* seconds from Retry-After (at most 86400), -1 if
					   absent or an HTTP-date */
	char request_id[64];		/* request-id, else client-request-id header, or
					   ""; truncated, non-printable octets as '?' */
};

/* At exit: what the first request set up (libcurl is loaded and started
   then; see libcurl.h), if it did. */
void http_cleanup(void);

/*
 * Perform the request. Returns 0 when an HTTP response arrived (any
 * status; resp filled, body never NULL), or -1 with err:
 *   TM_ERR_CONN EX_TEMPFAIL     "cannot reach HOST: ..." (resolve, connect,
 *                               timeout, send/receive), libcurl's detail
 *                               line in err->detail
 *   TM_ERR_CONN EX_UNAVAILABLE  "cannot verify HOST: ..." (certificate, name,
 *                               handshake), hint naming tls_ca_file
 *   TM_ERR_CONFIG EX_CONFIG     a refused URL (http:// to a non-loopback host,
 *                               another scheme, unparsable), or a ca_file that
 *                               cannot be loaded
 *   TM_ERR_PROTO EX_PROTOCOL    a body over max_response, a malformed HTTP
 *                               response, a bearer token with control characters
 *   TM_ERR_INTERNAL             bad parameters (EX_SOFTWARE), no memory (EX_OSERR)
 * resp is overwritten at the start (free it before reusing it) and must be
 * freed with http_response_free either way; status may be set on failure.
 */
int http_perform(const struct http_request *req, struct http_response *resp,
    struct tm_err *err);

/* Wipe and free the body; resp is left empty (retry_after -1). */
void http_response_free(struct http_response *resp);

/* Append "key=value" (both percent-encoded as application/x-www-form-urlencoded,
   '&' before it unless b is empty). -1 if b's limit is hit, b then
   unchanged. b grows by copy-and-wipe, so a client secret added here
   leaves no stray copy in freed memory; the caller wipes b itself
   (secret_wipe(b->data, b->len)) before strbuf_free. */
int http_form_add(struct strbuf *b, const char *key, const char *value);

/* Percent-encode s into b: RFC 3986 unreserved characters kept, every
   other octet (space too) as %XX. -1 if b's limit is hit, b then unchanged. */
int http_url_escape(struct strbuf *b, const char *s);

#endif
