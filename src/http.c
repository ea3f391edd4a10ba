/*
 * http.c: one HTTPS request per call through a libcurl easy handle;
 * libcurl is loaded on the first (libcurl.h).
 *
 * What is enforced whatever the caller asks: TLS 1.2 or later with the
 * peer's certificate and name verified, no redirects, plain http:// only
 * to a loopback address (and then never through a proxy, which would carry
 * it across a network), only the URL's own scheme, and a cap on the body.
 *
 * Trust: with the GnuTLS backend, CURLOPT_CAINFO replaces libcurl's
 * default trust instead of adding to it, so when tls_ca_file is set the
 * system directory goes in as CURLOPT_CAPATH beside it; GnuTLS then loads
 * both into one credential and a peer signed by either verifies.
 *
 * Secrets: the body is handed to libcurl in place (CURLOPT_POSTFIELDS, not
 * copied), the Authorization line is built in an exactly sized buffer and
 * wiped with libcurl's copy of it, and the response body grows by
 * copy-and-wipe. libcurl's own send and receive buffers are beyond reach.
 */
#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "http.h"
#include "libcurl.h"
#include "log.h"

/* libcurl's default connect timeout is 300 s; a token endpoint that has
   not answered a SYN in 30 s is not going to. */
#define HTTP_CONNECT_TIMEOUT_MAX	30
/* Added to tls_ca_file so that public CAs stay trusted (Debian layout;
   Fedora links it to /etc/pki/tls/certs). configure may set another. */
#ifndef TM_SYSTEM_CA_DIR
#define TM_SYSTEM_CA_DIR		"/etc/ssl/certs"
#endif
/* A Retry-After beyond a day is not a retry hint any more. */
#define HTTP_RETRY_AFTER_MAX		86400
#define HTTP_METHOD_MAX			16

static bool http_ready;
/* Connections, TLS sessions and DNS answers shared by every easy handle, so
   a sequence of requests to one host pays for one handshake. */
static CURLSH *http_share;

/* What the URL names, parsed once by libcurl's own parser and then handed
   to the easy handle, so the checked URL is the requested one. */
struct target {
	CURLU *url;
	char *scheme;			/* "https" or "http" */
	char *host;			/* for messages ("[::1]" for IPv6) */
	char *shown;			/* scheme://host[:port]/path, for the trace */
	bool loopback;
};

struct transfer {
	const struct http_request *req;
	struct http_response *resp;
	struct strbuf body;
	struct curl_slist *headers;	/* wiped before they are freed */
	bool too_big;
	bool source_failed;		/* the body source's read returned -1 */
	bool have_request_id;		/* request-id wins over client-request-id */
	char errbuf[CURL_ERROR_SIZE];
};

/* libcurl loaded and set up, on the first request (libcurl.h says why). */
static int
http_start(struct tm_err *err)
{
	CURLcode rc;

	if (http_ready)
		return 0;
	if (libcurl_load(err) < 0)
		return -1;
	rc = libcurl.global_init_mem(CURL_GLOBAL_DEFAULT, malloc, libcurl_free, libcurl_realloc,
	    strdup, calloc);
	if (rc != CURLE_OK)
		return tm_err_set(err, TM_ERR_INTERNAL, EX_SOFTWARE, "cannot initialise libcurl: %s",
		    libcurl.easy_strerror(rc));
	http_share = libcurl.share_init();
	if (http_share != NULL &&
	    (libcurl.share_setopt(http_share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT) != CURLSHE_OK ||
	    libcurl.share_setopt(http_share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK ||
	    libcurl.share_setopt(http_share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) != CURLSHE_OK)) {
		/* Only a cost: every request then makes its own connection. */
		libcurl.share_cleanup(http_share);
		http_share = NULL;
	}
	http_ready = true;
	return 0;
}

void
http_cleanup(void)
{
	if (http_share != NULL)
		libcurl.share_cleanup(http_share);
	http_share = NULL;
	if (http_ready)
		libcurl.global_cleanup();
	http_ready = false;
}

/* ---- buffers ---- */

static int
append_wiped(struct strbuf *b, const void *data, size_t n)
{
	if (strbuf_reserve_wiped(b, n) < 0)
		return -1;
	return strbuf_append(b, data, n);
}

static void
truncate_wiped(struct strbuf *b, size_t len)
{
	if (b->data == NULL || len >= b->len)
		return;
	secret_wipe(b->data + len, b->len - len);
	b->len = len;
	b->data[len] = '\0';
}

/* ---- URL ---- */

static bool
is_loopback(const char *host)
{
	char bare[64];
	struct in_addr a4;
	struct in6_addr a6;
	size_t n = strlen(host);

	if (str_eq_nocase(host, "localhost"))
		return true;	/* libcurl resolves it to loopback without DNS */
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (n < 3 || host[0] != '[' || host[n - 1] != ']' ||
	    str_copy_n(bare, sizeof(bare), host + 1, n - 2) < 0)
		return false;
	return inet_pton(AF_INET6, bare, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
}

/* The URL without query, fragment and user info: safe to print. */
static char *
shown_url(CURLU *url)
{
	CURLU *copy = libcurl.url_dup(url);
	char *s = NULL;

	if (copy == NULL)
		return NULL;
	if (libcurl.url_set(copy, CURLUPART_QUERY, NULL, 0) != CURLUE_OK ||
	    libcurl.url_set(copy, CURLUPART_FRAGMENT, NULL, 0) != CURLUE_OK ||
	    libcurl.url_set(copy, CURLUPART_USER, NULL, 0) != CURLUE_OK ||
	    libcurl.url_set(copy, CURLUPART_PASSWORD, NULL, 0) != CURLUE_OK ||
	    libcurl.url_get(copy, CURLUPART_URL, &s, 0) != CURLUE_OK)
		s = NULL;
	libcurl.url_cleanup(copy);
	return s;
}

static void
target_free(struct target *t)
{
	libcurl.free(t->scheme);
	libcurl.free(t->host);
	libcurl.free(t->shown);
	libcurl.url_cleanup(t->url);
	memset(t, 0, sizeof(*t));
}

/* Parse url into t and decide whether it may be requested: https to
   anywhere, http only to loopback. EX_CONFIG otherwise. */
static int
target_parse(const char *url, struct target *t, struct tm_err *err)
{
	if ((t->url = libcurl.url()) == NULL)
		return tm_err_set(err, TM_ERR_INTERNAL, EX_OSERR, "out of memory");
	if (libcurl.url_set(t->url, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    libcurl.url_get(t->url, CURLUPART_SCHEME, &t->scheme, 0) != CURLUE_OK ||
	    libcurl.url_get(t->url, CURLUPART_HOST, &t->host, 0) != CURLUE_OK)
		return tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG,
		    "invalid URL: not an absolute https:// URL with a host name");
	if ((t->shown = shown_url(t->url)) == NULL)
		return tm_err_set(err, TM_ERR_INTERNAL, EX_OSERR, "out of memory");
	t->loopback = is_loopback(t->host);
	if (strcmp(t->scheme, "https") == 0 || (strcmp(t->scheme, "http") == 0 && t->loopback))
		return 0;
	if (strcmp(t->scheme, "http") == 0) {
		tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG, "refusing http:// to %s: plain HTTP "
		    "is allowed only to a loopback address", t->host);
		tm_err_hint(err, "use an https:// URL");
		return -1;
	}
	return tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG, "refusing URL scheme '%s' for %s "
	    "(https only)", t->scheme, t->host);
}

/* ---- request ---- */

static bool
has_control(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return true;
	return false;
}

/* Catch caller bugs before anything is sent (header injection included). */
static int
check_request(const struct http_request *req, struct tm_err *err)
{
	size_t i, n = req->method ? strlen(req->method) : 0;

	for (i = 0; i < n; i++)
		if (req->method[i] < 'A' || req->method[i] > 'Z')
			n = 0;
	if (n == 0 || n > HTTP_METHOD_MAX || req->url == NULL || req->timeout_seconds <= 0 ||
	    req->max_response == 0 || (req->body == NULL && req->body_len > 0) ||
	    (strcmp(req->method, "GET") == 0 && (req->body_len > 0 || req->source)) ||
	    (req->source && (req->body || req->source->size < 0)) ||
	    (req->content_type && has_control(req->content_type)))
		return tm_err_set(err, TM_ERR_INTERNAL, EX_SOFTWARE, "bad HTTP request parameters");
	for (i = 0; req->headers && req->headers[i]; i++)
		if (has_control(req->headers[i]) || strchr(req->headers[i], ':') == NULL)
			return tm_err_set(err, TM_ERR_INTERNAL, EX_SOFTWARE,
			    "bad HTTP request header");
	if (req->bearer_token && has_control(req->bearer_token))
		return tm_err_set(err, TM_ERR_PROTO, EX_PROTOCOL,
		    "refusing to send an access token that holds control characters");
	return 0;
}

static int
add_header(struct transfer *tr, const char *line)
{
	struct curl_slist *l = libcurl.slist_append(tr->headers, line);

	if (l == NULL)
		return -1;
	tr->headers = l;
	return 0;
}

static void
headers_free(struct curl_slist *headers)
{
	struct curl_slist *l;

	for (l = headers; l != NULL; l = l->next)
		secret_wipe(l->data, strlen(l->data));
	libcurl.slist_free_all(headers);
}

/* prefix + value in an exactly sized buffer (no reallocation leaves a
   copy behind), added to the list, then wiped. */
static int
add_header_joined(struct transfer *tr, const char *prefix, const char *value)
{
	size_t size = strlen(prefix) + strlen(value) + 1;
	char *line = xmalloc(size);
	int rc;

	(void)str_format(line, size, "%s%s", prefix, value);
	rc = add_header(tr, line);
	secret_wipe(line, size);
	free(line);
	return rc;
}

static int
build_headers(struct transfer *tr, const struct http_request *req, struct tm_err *err)
{
	size_t i;

	for (i = 0; req->headers && req->headers[i]; i++)
		if (add_header(tr, req->headers[i]) < 0)
			return tm_err_set(err, TM_ERR_INTERNAL, EX_OSERR, "out of memory");
	/* An empty "Expect:" stops libcurl waiting for 100-continue on big bodies. */
	if (add_header(tr, "Expect:") < 0 ||
	    (req->content_type && add_header_joined(tr, "Content-Type: ", req->content_type) < 0) ||
	    (req->bearer_token &&
	    add_header_joined(tr, "Authorization: Bearer ", req->bearer_token) < 0))
		return tm_err_set(err, TM_ERR_INTERNAL, EX_OSERR, "out of memory");
	return 0;
}

/* ---- callbacks ---- */

static size_t
on_body(char *data, size_t size, size_t nmemb, void *arg)
{
	struct transfer *tr = arg;
	size_t n = size * nmemb;

	if (append_wiped(&tr->body, data, n) < 0) {
		tr->too_big = true;
		return 0;	/* aborts the transfer: CURLE_WRITE_ERROR */
	}
	return n;
}

/*
 * The value of header line data[len] into out[size] (trimmed, truncated,
 * anything but printable ASCII as '?') when the line's name is name in any
 * case. Values are printed in messages, hence the cleaning.
 */
static bool
header_value(const char *data, size_t len, const char *name, char *out, size_t size)
{
	size_t n = strlen(name), o = 0;

	if (len <= n || data[n] != ':' || strncasecmp(data, name, n) != 0 || size == 0)
		return false;
	data += n + 1;
	len -= n + 1;
	while (len > 0 && (*data == ' ' || *data == '\t')) {
		data++;
		len--;
	}
	while (len > 0 && (data[len - 1] == '\r' || data[len - 1] == '\n' ||
	    data[len - 1] == ' ' || data[len - 1] == '\t'))
		len--;
	for (; o < len && o + 1 < size; o++)
		out[o] = (data[o] > 0x20 && data[o] < 0x7f) ? data[o] : '?';
	out[o] = '\0';
	return true;
}

static size_t
on_header(char *data, size_t size, size_t nmemb, void *arg)
{
	struct transfer *tr = arg;
	struct http_response *resp = tr->resp;
	size_t n = size * nmemb;
	char v[128];
	long secs;

	if (n >= 5 && memcmp(data, "HTTP/", 5) == 0) {
		/* A new response (after a 1xx): forget the previous one's fields. */
		resp->retry_after = -1;
		resp->request_id[0] = '\0';
		tr->have_request_id = false;
	} else if (header_value(data, n, "retry-after", v, sizeof(v))) {
		/* The HTTP-date form counts as absent. */
		if (parse_long(v, 0, LONG_MAX, &secs) == 0)
			resp->retry_after = secs < HTTP_RETRY_AFTER_MAX ? secs : HTTP_RETRY_AFTER_MAX;
	} else if (header_value(data, n, "request-id", v, sizeof(v))) {
		(void)str_copy(resp->request_id, sizeof(resp->request_id), v);
		tr->have_request_id = true;
	} else if (!tr->have_request_id &&
	    header_value(data, n, "client-request-id", v, sizeof(v))) {
		(void)str_copy(resp->request_id, sizeof(resp->request_id), v);
	}
	return n;
}

static size_t
on_read(char *buf, size_t size, size_t nmemb, void *arg)
{
	struct transfer *tr = arg;
	long n = tr->req->source->read(tr->req->source->ctx, buf, size * nmemb);

	if (n < 0) {
		tr->source_failed = true;
		return CURL_READFUNC_ABORT;
	}
	return (size_t)n;
}

static int
on_seek(void *arg, curl_off_t offset, int origin)
{
	struct transfer *tr = arg;

	if (offset != 0 || origin != SEEK_SET || tr->req->source->rewind(tr->req->source->ctx) < 0)
		return CURL_SEEKFUNC_CANTSEEK;
	return CURL_SEEKFUNC_OK;
}

/* ---- easy handle ---- */

static CURLcode
set_protocols(CURL *h, const char *scheme)
{
#if LIBCURL_VERSION_NUM >= 0x075500
	return libcurl.easy_setopt(h, CURLOPT_PROTOCOLS_STR, scheme);
#else
	/* CURLOPT_PROTOCOLS_STR arrived in 7.85.0; the bitmask is deprecated since. */
	return libcurl.easy_setopt(h, CURLOPT_PROTOCOLS,
	    strcmp(scheme, "http") == 0 ? (long)CURLPROTO_HTTP : (long)CURLPROTO_HTTPS);
#endif
}

static CURLcode
set_transport(CURL *h, const struct http_request *req, const struct target *t)
{
	long connect = req->timeout_seconds < HTTP_CONNECT_TIMEOUT_MAX ?
	    req->timeout_seconds : HTTP_CONNECT_TIMEOUT_MAX;
	CURLcode rc = libcurl.easy_setopt(h, CURLOPT_CURLU, t->url);

	if (rc == CURLE_OK)
		rc = set_protocols(h, t->scheme);
	if (rc == CURLE_OK)
		rc = libcurl.easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	if (rc == CURLE_OK)
		rc = libcurl.easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	if (rc == CURLE_OK)
		rc = libcurl.easy_setopt(h, CURLOPT_TIMEOUT, req->timeout_seconds);
	if (rc == CURLE_OK)
		rc = libcurl.easy_setopt(h, CURLOPT_CONNECTTIMEOUT, connect);
	if (rc == CURLE_OK)
		rc = libcurl.easy_setopt(h, CURLOPT_USERAGENT, "tokenmail");
	return rc;
}

static bool
is_dir(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Verification on, TLS 1.2 at least; tls_ca_file beside the system store
   (see the top of the file), for the server and an HTTPS proxy alike. */
static CURLcode
set_tls(CURL *h, const struct http_request *req)
{
	CURLcode rc = libcurl.easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);

	if (rc == CURLE_OK)
		rc = libcurl.easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	if (rc == CURLE_OK)
		rc = libcurl.easy_setopt(h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	if (rc != CURLE_OK || req->ca_file == NULL)
		return rc;
	rc = libcurl.easy_setopt(h, CURLOPT_CAINFO, req->ca_file);
	if (rc == CURLE_OK)
		rc = libcurl.easy_setopt(h, CURLOPT_PROXY_CAINFO, req->ca_file);
	/* A CAPATH that does not exist fails every handshake: only when present. */
	if (rc != CURLE_OK || !is_dir(TM_SYSTEM_CA_DIR))
		return rc;
	rc = libcurl.easy_setopt(h, CURLOPT_CAPATH, TM_SYSTEM_CA_DIR);
	if (rc == CURLE_OK)
		rc = libcurl.easy_setopt(h, CURLOPT_PROXY_CAPATH, TM_SYSTEM_CA_DIR);
	return rc;
}

/*
 * "" as CURLOPT_PROXY means no proxy, environment included; "" as
 * CURLOPT_NOPROXY means no_proxy from the environment cannot exempt a
 * host from the configured proxy either (when the environment is not
 * to be trusted, as under setgid).
 */
static CURLcode
set_proxy(CURL *h, const struct http_request *req, const struct target *t)
{
	CURLcode rc;

	if (t->loopback)
		return libcurl.easy_setopt(h, CURLOPT_PROXY, "");
	if (req->proxy == NULL)
		return req->env_proxy ? CURLE_OK : libcurl.easy_setopt(h, CURLOPT_PROXY, "");
	rc = libcurl.easy_setopt(h, CURLOPT_PROXY, req->proxy);
	if (rc == CURLE_OK && !req->env_proxy)
		rc = libcurl.easy_setopt(h, CURLOPT_NOPROXY, "");
	return rc;
}

/* A streamed body: POST's framing (Content-Length) with our callbacks. */
static CURLcode
set_source(CURL *h, struct transfer *tr)
{
	CURLcode rc = libcurl.easy_setopt(h, CURLOPT_POST, 1L);

	if (rc == CURLE_OK)
		rc = libcurl.easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
		    (curl_off_t)tr->req->source->size);
	if (rc == CURLE_OK)
		rc = libcurl.easy_setopt(h, CURLOPT_READFUNCTION, on_read);
	if (rc == CURLE_OK)
		rc = libcurl.easy_setopt(h, CURLOPT_READDATA, tr);
	if (rc == CURLE_OK)
		rc = libcurl.easy_setopt(h, CURLOPT_SEEKFUNCTION, on_seek);
	if (rc == CURLE_OK)
		rc = libcurl.easy_setopt(h, CURLOPT_SEEKDATA, tr);
	if (rc == CURLE_OK && strcmp(tr->req->method, "POST") != 0)
		rc = libcurl.easy_setopt(h, CURLOPT_CUSTOMREQUEST, tr->req->method);
	return rc;
}

/* GET, POST, or another method with the body sent as by POST. */
static CURLcode
set_method(CURL *h, struct transfer *tr)
{
	const struct http_request *req = tr->req;
	CURLcode rc;

	if (strcmp(req->method, "GET") == 0)
		return libcurl.easy_setopt(h, CURLOPT_HTTPGET, 1L);
	if (req->source != NULL)
		return set_source(h, tr);
	rc = libcurl.easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
	if (rc == CURLE_OK)
		rc = libcurl.easy_setopt(h, CURLOPT_POSTFIELDS, req->body ? req->body : "");
	if (rc == CURLE_OK && strcmp(req->method, "POST") != 0)
		rc = libcurl.easy_setopt(h, CURLOPT_CUSTOMREQUEST, req->method);
	return rc;
}

static CURLcode
set_io(CURL *h, struct transfer *tr)
{
	CURLcode rc = libcurl.easy_setopt(h, CURLOPT_HTTPHEADER, tr->headers);

	if (rc == CURLE_OK)
		rc = libcurl.easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	if (rc == CURLE_OK)
		rc = libcurl.easy_setopt(h, CURLOPT_WRITEDATA, tr);
	if (rc == CURLE_OK)
		rc = libcurl.easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	if (rc == CURLE_OK)
		rc = libcurl.easy_setopt(h, CURLOPT_HEADERDATA, tr);
	if (rc == CURLE_OK)	/* a proxy's CONNECT answer is not the response */
		rc = libcurl.easy_setopt(h, CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
	if (rc == CURLE_OK)	/* refuse early when Content-Length is over the cap */
		rc = libcurl.easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE,
		    (curl_off_t)tr->req->max_response);
	if (rc == CURLE_OK)
		rc = libcurl.easy_setopt(h, CURLOPT_ERRORBUFFER, tr->errbuf);
	return rc;
}

static int
setup(CURL *h, struct transfer *tr, const struct target *t, struct tm_err *err)
{
	CURLcode rc = set_transport(h, tr->req, t);

	if (rc == CURLE_OK)
		rc = set_tls(h, tr->req);
	if (rc == CURLE_OK)
		rc = set_proxy(h, tr->req, t);
	if (rc == CURLE_OK)
		rc = set_method(h, tr);
	if (rc == CURLE_OK && http_share != NULL)
		rc = libcurl.easy_setopt(h, CURLOPT_SHARE, http_share);
	if (rc == CURLE_OK)
		rc = set_io(h, tr);
	if (rc == CURLE_OK)
		return 0;
	return tm_err_set(err, TM_ERR_INTERNAL, EX_SOFTWARE,
	    "cannot set up the request to %s: %s", t->host, libcurl.easy_strerror(rc));
}

/* ---- outcome ---- */

static bool
is_tls_failure(CURLcode rc)
{
	switch (rc) {
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_SSL_INVALIDCERTSTATUS:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_CRL_BADFILE:
	case CURLE_USE_SSL_FAILED:
		return true;
	default:
		return false;
	}
}

/* err for a failed transfer; names the host, never the URL's query. */
static int
transfer_error(const struct transfer *tr, const struct target *t, CURLcode rc,
    struct tm_err *err)
{
	const char *why = libcurl.easy_strerror(rc);

	if (tr->source_failed)
		tm_err_set(err, TM_ERR_IO, EX_IOERR, "cannot read the message for %s", t->host);
	else if (tr->too_big || rc == CURLE_FILESIZE_EXCEEDED)
		tm_err_set(err, TM_ERR_PROTO, EX_PROTOCOL, "response from %s is over %zu octets",
		    t->host, tr->req->max_response);
	else if (rc == CURLE_SSL_CACERT_BADFILE) {
		tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG, "cannot load trust anchors for %s: %s",
		    t->host, why);
		tm_err_hint(err, "tls_ca_file must be a readable file of PEM certificates");
	} else if (is_tls_failure(rc)) {
		tm_err_set(err, TM_ERR_CONN, EX_UNAVAILABLE, "cannot verify %s: %s", t->host, why);
		tm_err_hint(err, "check tls_ca_file: it must hold the CA that signed the "
		    "server's certificate (public CAs are trusted anyway)");
	} else if (rc == CURLE_OUT_OF_MEMORY)
		tm_err_set(err, TM_ERR_INTERNAL, EX_OSERR, "out of memory");
	else if (rc == CURLE_WEIRD_SERVER_REPLY || rc == CURLE_BAD_CONTENT_ENCODING ||
	    rc == CURLE_UNSUPPORTED_PROTOCOL)
		/* config admits only http(s) URLs, so an unsupported protocol here
		 * is an answer that is not HTTP at all (HTTP/0.9 to libcurl). */
		tm_err_set(err, TM_ERR_PROTO, EX_PROTOCOL, "bad HTTP response from %s: %s",
		    t->host, why);
	else if (rc == CURLE_URL_MALFORMAT)
		tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG, "cannot request %s: %s", t->host, why);
	else
		tm_err_set(err, TM_ERR_CONN, EX_TEMPFAIL, "cannot reach %s: %s", t->host, why);
	if (tr->errbuf[0] && !tr->too_big)
		tm_err_detail(err, "curl: %s", tr->errbuf);
	return -1;
}

static void
trace_request(const struct http_request *req, const struct target *t)
{
	if (!log_verbose())
		return;
	if (req->source != NULL)
		log_trace("> %s %s (%lld octets, body not shown)", req->method, t->shown,
		    req->source->size);
	else if (req->body_len > 0 || strcmp(req->method, "GET") != 0)
		log_trace("> %s %s (%zu octets, body not shown)", req->method, t->shown,
		    req->body_len);
	else
		log_trace("> %s %s", req->method, t->shown);
}

static void
response_init(struct http_response *resp)
{
	memset(resp, 0, sizeof(*resp));
	resp->retry_after = -1;
}

int
http_perform(const struct http_request *req, struct http_response *resp, struct tm_err *err)
{
	struct transfer tr;
	struct target t;
	CURL *h = NULL;
	CURLcode rc;
	int ret = -1;

	response_init(resp);
	memset(&tr, 0, sizeof(tr));
	memset(&t, 0, sizeof(t));
	tr.req = req;
	tr.resp = resp;
	strbuf_init(&tr.body, req->max_response);
	if (http_start(err) < 0 || check_request(req, err) < 0 || target_parse(req->url, &t, err) < 0 ||
	    build_headers(&tr, req, err) < 0)
		goto out;
	if ((h = libcurl.easy_init()) == NULL) {
		tm_err_set(err, TM_ERR_INTERNAL, EX_OSERR, "cannot create a libcurl handle");
		goto out;
	}
	if (setup(h, &tr, &t, err) < 0)
		goto out;
	trace_request(req, &t);
	rc = libcurl.easy_perform(h);
	(void)libcurl.easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp->status);
	if (rc != CURLE_OK) {
		transfer_error(&tr, &t, rc, err);
		goto out;
	}
	log_trace("< %ld (%zu octets)", resp->status, tr.body.len);
	resp->body_len = tr.body.len;
	resp->body = strbuf_take(&tr.body);
	ret = 0;
out:
	if (h != NULL)
		libcurl.easy_cleanup(h);
	headers_free(tr.headers);
	truncate_wiped(&tr.body, 0);
	strbuf_free(&tr.body);
	target_free(&t);
	return ret;
}

void
http_response_free(struct http_response *resp)
{
	if (resp->body != NULL)
		secret_wipe(resp->body, resp->body_len);
	free(resp->body);
	response_init(resp);
}

/* ---- forms ---- */

/* RFC 3986 section 2.3, spelled out: isalnum() would follow the locale. */
static bool
unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	    c == '-' || c == '.' || c == '_' || c == '~';
}

int
http_url_escape(struct strbuf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *p;
	size_t n = 0;
	char *o;

	for (p = (const unsigned char *)s; *p; p++)
		n += unreserved(*p) ? 1 : 3;
	if (strbuf_reserve_wiped(b, n) < 0)
		return -1;
	o = b->data + b->len;
	for (p = (const unsigned char *)s; *p; p++) {
		if (unreserved(*p)) {
			*o++ = (char)*p;
		} else {
			*o++ = '%';
			*o++ = hex[*p >> 4];
			*o++ = hex[*p & 15];
		}
	}
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

int
http_form_add(struct strbuf *b, const char *key, const char *value)
{
	size_t start = b->len;
	int rc = 0;

	if (b->len > 0)
		rc = append_wiped(b, "&", 1);
	if (rc == 0)
		rc = http_url_escape(b, key);
	if (rc == 0)
		rc = append_wiped(b, "=", 1);
	if (rc == 0)
		rc = http_url_escape(b, value);
	if (rc < 0)
		truncate_wiped(b, start);
	return rc;
}
