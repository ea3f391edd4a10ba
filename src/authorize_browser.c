/*
 * authorize_browser.c: `tokenmail authorize --browser`: authorization code
 * with PKCE (RFC 7636) and a one-shot HTTP listener on 127.0.0.1 for the
 * redirect (authorize.h).
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include "authorize.h"
#include "authorize_priv.h"
#include "base64.h"
#include "http.h"
#include "json.h"
#include "log.h"
#include "secret.h"
#include "tm_limits.h"
#include "util.h"


#define PAGE(text) "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">" \
	"<title>tokenmail</title></head><body><p>" text "</p></body></html>\n"
#define PAGE_DONE	PAGE("tokenmail: sign-in complete, you can close this window")
#define PAGE_FAILED	PAGE("tokenmail: sign-in failed; the terminal says why. " \
	"You can close this window")
#define PAGE_STATE	PAGE("tokenmail: this answer does not belong to the sign-in " \
	"in progress (state mismatch); nothing was stored")
#define PAGE_NOT_FOUND	PAGE("tokenmail: not found")
#define PAGE_BAD	PAGE("tokenmail: bad request")

static const struct authorize_options default_options = {
	.wait_seconds = AUTHORIZE_WAIT_SECONDS,
	.conn_seconds = AUTHORIZE_CONN_SECONDS,
};

/* ---- browser flow: the loopback listener ---- */

struct conn {
	int fd;			/* -1: a free slot */
	long long deadline;	/* ms, CLOCK_MONOTONIC */
	char *head;		/* AUTHORIZE_HEAD_MAX: holds the code, wiped on drop */
	size_t len;
};

struct waiter {
	const struct authorize_listener *l;
	const char *state;
	const struct authorize_options *o;
	struct conn conns[AUTHORIZE_CONNS_MAX];
	char *code;		/* the result */
};

enum wait_result { WAIT_MORE, WAIT_DONE, WAIT_FAIL };

int
authorize_listen(struct authorize_listener *l, struct tm_err *err)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);

	/* 127.0.0.1, not localhost: Entra's advice, and no IPv6 surprise. */
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	l->port = 0;
	l->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (l->fd < 0 || bind(l->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(l->fd, AUTHORIZE_CONNS_MAX) < 0 ||
	    getsockname(l->fd, (struct sockaddr *)&sa, &len) < 0) {
		tm_err_set(err, TM_ERR_INTERNAL, EX_OSERR, "cannot listen on 127.0.0.1: %s",
		    strerror(errno));
		authorize_listener_close(l);
		return -1;
	}
	l->port = ntohs(sa.sin_port);
	log_trace("authorize: listening on 127.0.0.1:%u", l->port);
	return 0;
}

void
authorize_listener_close(struct authorize_listener *l)
{
	if (l->fd >= 0)
		close(l->fd);
	l->fd = -1;
}

static void
respond(int fd, const char *status, const char *body)
{
	char buf[1024];

	if (str_format(buf, sizeof(buf), "HTTP/1.1 %s\r\n"
	    "Content-Type: text/html; charset=utf-8\r\n"
	    "Content-Length: %zu\r\n"
	    "Cache-Control: no-store\r\n"
	    "Referrer-Policy: no-referrer\r\n"
	    "Connection: close\r\n\r\n%s", status, strlen(body), body) < 0)
		return;
	/* Best effort: the answer is a courtesy, the terminal has the result. */
	if (send(fd, buf, strlen(buf), MSG_NOSIGNAL) < 0)
		log_trace("authorize: cannot answer the browser: %s", strerror(errno));
	shutdown(fd, SHUT_WR);
}

static void
conn_drop(struct conn *cn)
{
	if (cn->fd < 0)
		return;
	close(cn->fd);
	cn->fd = -1;
	secret_wipe(cn->head, cn->len);
	free(cn->head);
	cn->head = NULL;
	cn->len = 0;
}

static void
conn_accept(struct waiter *w)
{
	struct conn *slot = NULL;
	size_t i;
	int fd;

	for (i = 0; i < AUTHORIZE_CONNS_MAX && slot == NULL; i++)
		if (w->conns[i].fd < 0)
			slot = &w->conns[i];
	if (slot == NULL)
		return;
	fd = accept4(w->l->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	/* EAGAIN or a connection gone already: the next poll tells. */
	if (fd < 0)
		return;
	slot->fd = fd;
	slot->deadline = authorize_now_ms() + w->o->conn_seconds * 1000LL;
	slot->head = xmalloc(AUTHORIZE_HEAD_MAX);
	slot->len = 0;
}

static void
trace_request(const char *head, size_t len)
{
	size_t n = 0;

	/* The method and path only: the query holds the code. */
	while (n < len && n < 200 && head[n] != '?' && head[n] != '\r' && head[n] != '\n')
		n++;
	log_trace("authorize: request %.*s", (int)n, head);
}

static void
redirect_error(const struct authorize_redirect *r, struct tm_err *err)
{
	int code = authorize_error_exit(r->error);

	tm_err_set(err, TM_ERR_RESP, code, "sign-in failed: %s", r->error);
	if (r->error_description != NULL)
		tm_err_server(err, r->error_description);
	if (code == EX_TEMPFAIL)
		tm_err_hint(err, "the provider had a temporary problem; "
		    "run tokenmail authorize --browser again");
	else if (code == EX_CONFIG)
		tm_err_hint(err, "check client_id, tenant and scope, and that the app "
		    "registration has the redirect URI http://127.0.0.1 and allows public "
		    "client flows");
	else
		tm_err_hint(err, "the sign-in or the consent was refused; an administrator "
		    "may have to grant consent for the app");
}

static enum wait_result
serve_redirect(struct waiter *w, int fd, struct authorize_redirect *r, struct tm_err *err)
{
	if (!authorize_state_matches(w->state, r->state)) {
		respond(fd, "400 Bad Request", PAGE_STATE);
		tm_err_set(err, TM_ERR_PERM, EX_NOPERM, "state mismatch: possible CSRF");
		tm_err_hint(err, "the redirect did not come from this sign-in; "
		    "run tokenmail authorize --browser again");
		return WAIT_FAIL;
	}
	if (r->error != NULL) {
		respond(fd, "200 OK", PAGE_FAILED);
		redirect_error(r, err);
		return WAIT_FAIL;
	}
	respond(fd, "200 OK", PAGE_DONE);
	w->code = r->code;
	r->code = NULL;
	return WAIT_DONE;
}

static enum wait_result
conn_serve(struct waiter *w, struct conn *cn, struct tm_err *err)
{
	struct authorize_redirect r;
	enum wait_result res = WAIT_MORE;

	trace_request(cn->head, cn->len);
	switch (authorize_parse_request(cn->head, cn->len, &r)) {
	case AUTHORIZE_REQ_REDIRECT:
		res = serve_redirect(w, cn->fd, &r, err);
		break;
	case AUTHORIZE_REQ_NOT_FOUND:
		respond(cn->fd, "404 Not Found", PAGE_NOT_FOUND);
		break;
	case AUTHORIZE_REQ_BAD:
		respond(cn->fd, "400 Bad Request", PAGE_BAD);
		break;
	}
	authorize_redirect_free(&r);
	return res;
}

static bool
head_complete(const struct conn *cn)
{
	return memmem(cn->head, cn->len, "\r\n\r\n", 4) != NULL ||
	    memmem(cn->head, cn->len, "\n\n", 2) != NULL;
}

static enum wait_result
conn_read(struct waiter *w, struct conn *cn, struct tm_err *err)
{
	enum wait_result res = WAIT_MORE;
	ssize_t n;

	n = recv(cn->fd, cn->head + cn->len, AUTHORIZE_HEAD_MAX - cn->len, 0);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return WAIT_MORE;
	if (n <= 0) {
		conn_drop(cn);
		return WAIT_MORE;
	}
	cn->len += (size_t)n;
	if (head_complete(cn)) {
		res = conn_serve(w, cn, err);
		conn_drop(cn);
	} else if (cn->len == AUTHORIZE_HEAD_MAX) {
		respond(cn->fd, "431 Request Header Fields Too Large", PAGE_BAD);
		conn_drop(cn);
	}
	return res;
}

static void
conns_expire(struct waiter *w, long long now)
{
	size_t i;

	for (i = 0; i < AUTHORIZE_CONNS_MAX; i++) {
		if (w->conns[i].fd >= 0 && w->conns[i].deadline <= now) {
			log_trace("authorize: closing a connection that sent no request");
			conn_drop(&w->conns[i]);
		}
	}
}

/* Fill pfd (listener first) and return how long poll may sleep. */
static int
waiter_pollfds(const struct waiter *w, struct pollfd *pfd, long long now, long long end)
{
	long long wake = end;
	bool room = false;
	size_t i;

	for (i = 0; i < AUTHORIZE_CONNS_MAX; i++) {
		const struct conn *cn = &w->conns[i];

		pfd[i + 1] = (struct pollfd){ .fd = cn->fd, .events = POLLIN };
		if (cn->fd < 0)
			room = true;
		else if (cn->deadline < wake)
			wake = cn->deadline;
	}
	/* No free slot: leave new connections in the backlog for now. */
	pfd[0] = (struct pollfd){ .fd = w->l->fd, .events = room ? POLLIN : 0 };
	return wake <= now ? 0 : (int)(wake - now);
}

static enum wait_result
wait_timeout(const struct waiter *w, struct tm_err *err)
{
	tm_err_set(err, TM_ERR_CONN, EX_TEMPFAIL,
	    "no sign-in arrived at http://127.0.0.1:%u/ within %ld seconds",
	    w->l->port, w->o->wait_seconds);
	tm_err_hint(err, "open the URL in a browser on this machine (or forward the port "
	    "with ssh -L), or use the device code flow: tokenmail authorize without --browser");
	return WAIT_FAIL;
}

static enum wait_result
wait_step(struct waiter *w, long long end, struct tm_err *err)
{
	struct pollfd pfd[1 + AUTHORIZE_CONNS_MAX];
	long long now = authorize_now_ms();
	enum wait_result res = WAIT_MORE;
	size_t i;
	int n;

	if (now >= end)
		return wait_timeout(w, err);
	conns_expire(w, now);
	n = poll(pfd, 1 + AUTHORIZE_CONNS_MAX, waiter_pollfds(w, pfd, now, end));
	if (n < 0 && errno != EINTR) {
		tm_err_set(err, TM_ERR_INTERNAL, EX_OSERR, "poll: %s", strerror(errno));
		return WAIT_FAIL;
	}
	for (i = 0; n > 0 && i < AUTHORIZE_CONNS_MAX && res == WAIT_MORE; i++)
		if (pfd[i + 1].revents != 0)
			res = conn_read(w, &w->conns[i], err);
	if (n > 0 && res == WAIT_MORE && (pfd[0].revents & POLLIN))
		conn_accept(w);
	return res;
}

int
authorize_wait_code(const struct authorize_listener *l, const char *state,
    const struct authorize_options *o, char **code, struct tm_err *err)
{
	struct waiter w = { .l = l, .state = state, .o = o ? o : &default_options };
	enum wait_result res = WAIT_MORE;
	long long end;
	size_t i;

	*code = NULL;
	for (i = 0; i < AUTHORIZE_CONNS_MAX; i++)
		w.conns[i].fd = -1;
	end = authorize_now_ms() + w.o->wait_seconds * 1000LL;
	while (res == WAIT_MORE)
		res = wait_step(&w, end, err);
	for (i = 0; i < AUTHORIZE_CONNS_MAX; i++)
		conn_drop(&w.conns[i]);
	*code = w.code;
	return res == WAIT_DONE ? 0 : -1;
}

/* ---- browser flow ---- */

struct pkce {
	char verifier[AUTHORIZE_PKCE_SIZE];	/* secret until the code is redeemed */
	char challenge[AUTHORIZE_PKCE_SIZE];
	char state[AUTHORIZE_STATE_SIZE];
	char redirect_uri[64];			/* http://127.0.0.1:PORT/ */
};

static int
pkce_make(struct pkce *p, unsigned port, struct tm_err *err)
{
	unsigned char raw[AUTHORIZE_PKCE_RANDOM];
	int rc;

	random_bytes(raw, sizeof(raw));
	rc = authorize_pkce_verifier(raw, p->verifier, err) < 0 ||
	    authorize_pkce_challenge(p->verifier, p->challenge, err) < 0 ? -1 : 0;
	secret_wipe(raw, sizeof(raw));
	random_hex(p->state, sizeof(p->state), (AUTHORIZE_STATE_SIZE - 1) / 2);
	/* Entra gives a redirect URI without a path back with "/": use that form. */
	if (rc == 0 && str_format(p->redirect_uri, sizeof(p->redirect_uri),
	    "http://127.0.0.1:%u/", port) < 0)
		rc = tm_err_set(err, TM_ERR_INTERNAL, EX_SOFTWARE, "redirect URI too long");
	return rc;
}

static int
url_param(struct strbuf *b, const char *key, const char *value)
{
	const char *sep = b->data != NULL && strchr(b->data, '?') ? "&" : "?";

	if (strbuf_append_str(b, sep) < 0 || strbuf_append_str(b, key) < 0 ||
	    strbuf_append_str(b, "=") < 0 || http_url_escape(b, value) < 0)
		return -1;
	return 0;
}

static int
authorize_url_build(const struct token_context *c, const struct pkce *p, struct strbuf *url,
    struct tm_err *err)
{
	const struct account *a = c->account;
	struct strbuf base;
	const char *b;
	int rc = -1;

	strbuf_init(&base, TM_PATH_MAX);
	b = token_authorize_url(a, &base);
	if (b == NULL) {
		tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG,
		    "account %s has no authorize endpoint", a->name);
		tm_err_hint(err, "set tenant, token_url or authorize_url");
		goto out;
	}
	if (strbuf_append_str(url, b) < 0 ||
	    url_param(url, "client_id", a->client_id) < 0 ||
	    url_param(url, "response_type", "code") < 0 ||
	    url_param(url, "redirect_uri", p->redirect_uri) < 0 ||
	    url_param(url, "response_mode", "query") < 0 ||
	    url_param(url, "scope", config_scope(a)) < 0 ||
	    url_param(url, "state", p->state) < 0 ||
	    url_param(url, "code_challenge", p->challenge) < 0 ||
	    url_param(url, "code_challenge_method", "S256") < 0) {
		tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG,
		    "the authorize URL is longer than %d octets", AUTHORIZE_URL_MAX);
		goto out;
	}
	rc = 0;
out:
	strbuf_free(&base);
	return rc;
}

static int
browser_prompt(const struct token_context *c, const struct pkce *p, FILE *out,
    struct tm_err *err)
{
	struct strbuf url;
	int rc = -1;

	strbuf_init(&url, AUTHORIZE_URL_MAX);
	if (authorize_url_build(c, p, &url, err) == 0) {
		fprintf(out, "Open this URL in a browser to sign in:\n  %s\n", url.data);
		rc = authorize_write_out(out, err);
	}
	strbuf_free(&url);
	return rc;
}

static int
browser_redeem(const struct token_context *c, const struct pkce *p, const char *code,
    struct json_doc **tok, struct tm_err *err)
{
	const struct account *a = c->account;
	struct strbuf form;
	int rc = -1;

	authorize_form_init(&form);
	if (http_form_add(&form, "grant_type", "authorization_code") < 0 ||
	    http_form_add(&form, "client_id", a->client_id) < 0 ||
	    http_form_add(&form, "code", code) < 0 ||
	    http_form_add(&form, "redirect_uri", p->redirect_uri) < 0 ||
	    http_form_add(&form, "code_verifier", p->verifier) < 0 ||
	    http_form_add(&form, "scope", config_scope(a)) < 0) {
		authorize_form_too_large(err);
		goto out;
	}
	if (authorize_form_add_secret(c, &form, err) < 0)
		goto out;
	log_trace("authorize: redeeming the code at %s", config_token_url(a));
	rc = token_post(c, config_token_url(a), &form, false, tok, err);
out:
	authorize_form_free(&form);
	return rc;
}

int
authorize_browser_with(const struct token_context *c, FILE *out,
    const struct authorize_options *o, struct tm_err *err)
{
	struct authorize_listener l = { .fd = -1 };
	struct json_doc *tok = NULL;
	struct pkce p = { 0 };
	char *code = NULL;
	int rc = -1;

	if (authorize_account_check(c->account, err) < 0 || authorize_listen(&l, err) < 0 ||
	    pkce_make(&p, l.port, err) < 0 || browser_prompt(c, &p, out, err) < 0 ||
	    authorize_wait_code(&l, p.state, o, &code, err) < 0)
		goto out;
	/* One redirect is all we take: nobody else gets to talk to the port. */
	authorize_listener_close(&l);
	if (browser_redeem(c, &p, code, &tok, err) < 0 ||
	    authorize_finish(c, tok, out, err) < 0)
		goto out;
	rc = 0;
out:
	authorize_listener_close(&l);
	secret_free(code);
	secret_wipe(&p, sizeof(p));
	if (tok != NULL)
		json_free(tok);
	return rc;
}

int
authorize_browser(const struct token_context *c, FILE *out, struct tm_err *err)
{
	return authorize_browser_with(c, out, &default_options, err);
}
