/*
 * net.c: TCP to the mail server with a deadline on every operation. The
 * socket stays non-blocking from connect to close and every read or write
 * polls until its own deadline, so no server can hold tokenmail longer
 * than the timeouts RFC 5321 4.5.3.2 describes (and config shortens).
 * Once tls_start() has run, the same paths go through tls_recv/tls_send.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "net.h"
#include "tls.h"
#include "util.h"

/* What conn_recv/conn_send report besides a byte count. */
#define IO_CLOSED	0
#define IO_ERROR	(-1)
#define IO_AGAIN	(-2)

static long long
now_ms(void)
{
	struct timespec ts;

	(void)clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

long long
net_deadline(int timeout_seconds)
{
	return now_ms() + (long long)(timeout_seconds > 0 ? timeout_seconds : 0) * 1000;
}

int
net_wait(int fd, short events, long long deadline)
{
	struct pollfd pfd = { .fd = fd, .events = events };
	long long left;
	int n;

	for (;;) {
		left = deadline - now_ms();
		if (left <= 0)
			return 0;
		n = poll(&pfd, 1, left > 60000 ? 60000 : (int)left);
		if (n > 0)
			return 1;	/* POLLERR/POLLHUP too: the next call says what */
		if (n < 0 && errno != EINTR)
			return -1;
	}
}

/* strerror(e) starting in lower case, to follow "cannot connect to X: ". */
static void
errno_text(int e, char *out, size_t size)
{
	(void)str_copy(out, size, strerror(e));
	if (out[0] >= 'A' && out[0] <= 'Z')
		out[0] = (char)(out[0] - 'A' + 'a');
}

void
net_init(struct net_conn *c)
{
	c->fd = -1;
	c->tls = NULL;
	c->host[0] = '\0';
	c->rpos = c->rlen = 0;
	c->wlen = 0;
	c->bytes_out = 0;
	c->flushes = 0;
}

/* Wait for a non-blocking connect to finish; *why gets the errno on failure. */
static int
connect_wait(int fd, long long deadline, int *why)
{
	socklen_t len = sizeof(*why);
	int w = net_wait(fd, POLLOUT, deadline);

	if (w <= 0) {
		*why = w == 0 ? ETIMEDOUT : errno;
		return -1;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, why, &len) < 0)
		*why = errno;
	return *why == 0 ? 0 : -1;
}

/* A connected non-blocking socket to ai, or -1 with *why set. */
static int
connect_one(const struct addrinfo *ai, long long deadline, int *why)
{
	int fd, one = 1;

	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
	if (fd < 0) {
		*why = errno;
		return -1;
	}
	*why = 0;
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		/* EINTR: a non-blocking connect goes on in the background. */
		if (errno != EINPROGRESS && errno != EINTR)
			*why = errno;
		else
			(void)connect_wait(fd, deadline, why);
	}
	if (*why != 0) {
		(void)close(fd);
		return -1;
	}
	/* SMTP is request/response: Nagle would only delay each command. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

static int
connect_failed(const char *host, unsigned port, int why, int timeout_seconds, struct tm_err *err)
{
	char text[128];

	if (why == ETIMEDOUT)
		return tm_err_set(err, TM_ERR_CONN, EX_TEMPFAIL,
		    "cannot connect to %s:%u: timed out after %d s", host, port, timeout_seconds);
	errno_text(why, text, sizeof(text));
	return tm_err_set(err, TM_ERR_CONN, EX_TEMPFAIL, "cannot connect to %s:%u: %s",
	    host, port, text);
}

int
net_connect(struct net_conn *c, const char *host, unsigned port, int timeout_seconds,
    struct tm_err *err)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	struct addrinfo *res = NULL, *ai;
	long long deadline = net_deadline(timeout_seconds);
	char service[16];
	int gai, why = 0, rc = -1;

	net_init(c);
	if (str_copy(c->host, sizeof(c->host), host) < 0) {
		tm_err_set(err, TM_ERR_CONN, EX_TEMPFAIL, "cannot connect to %.64s...: name too long",
		    host);
		goto out;
	}
	(void)str_format(service, sizeof(service), "%u", port);
	gai = getaddrinfo(host, service, &hints, &res);
	if (gai != 0) {
		tm_err_set(err, TM_ERR_CONN, EX_TEMPFAIL, "cannot connect to %s:%u: no address for %s (%s)",
		    host, port, host, gai == EAI_SYSTEM ? strerror(errno) : gai_strerror(gai));
		goto out;
	}
	for (ai = res; ai != NULL && c->fd < 0; ai = ai->ai_next) {
		c->fd = connect_one(ai, deadline, &why);
		if (why == ETIMEDOUT && now_ms() >= deadline)
			break;
	}
	if (c->fd < 0) {
		connect_failed(host, port, why, timeout_seconds, err);
		goto out;
	}
	rc = 0;
out:
	if (res != NULL)
		freeaddrinfo(res);
	return rc;
}

/* Read what is there into buf; IO_AGAIN with *events to poll for. */
static long
conn_recv(struct net_conn *c, void *buf, size_t n, short *events, int *why)
{
	ssize_t r;

	*events = POLLIN;
	if (c->tls != NULL) {
		r = tls_recv(c->tls, buf, n);
		if (r == TLS_WANT_READ || r == TLS_WANT_WRITE)
			*events = r == TLS_WANT_WRITE ? POLLOUT : POLLIN;
		return r == TLS_WANT_READ || r == TLS_WANT_WRITE ? IO_AGAIN : r;
	}
	do
		r = recv(c->fd, buf, n, 0);
	while (r < 0 && errno == EINTR);
	if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return IO_AGAIN;
	*why = r < 0 ? errno : 0;
	return r < 0 ? IO_ERROR : r;
}

/* The reason a read or write failed, for "connection to HOST closed (why)". */
static void
io_error_text(const struct net_conn *c, int why, char *out, size_t size)
{
	char text[128];

	if (c->tls != NULL)
		(void)str_format(out, size, " (TLS: %s)", tls_error(c->tls));
	else if (why != 0) {
		errno_text(why, text, sizeof(text));
		(void)str_format(out, size, " (%s)", text);
	} else
		out[0] = '\0';
}

/* Read at least one more byte into rbuf before deadline. */
static int
fill_rbuf(struct net_conn *c, long long deadline, int timeout_seconds, struct tm_err *err)
{
	char why_text[160];
	short events;
	long r;
	int why = 0, w;

	if (c->rpos > 0) {
		memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
		c->rlen -= c->rpos;
		c->rpos = 0;
	}
	for (;;) {
		r = conn_recv(c, c->rbuf + c->rlen, sizeof(c->rbuf) - c->rlen, &events, &why);
		if (r > 0) {
			c->rlen += (size_t)r;
			return 0;
		}
		if (r != IO_AGAIN)
			break;
		w = net_wait(c->fd, events, deadline);
		if (w == 0)
			return tm_err_set(err, TM_ERR_CONN, EX_TEMPFAIL,
			    "no answer from %s within %d s", c->host, timeout_seconds);
		if (w < 0) {
			why = errno;
			break;
		}
	}
	why_text[0] = '\0';
	if (r != IO_CLOSED)
		io_error_text(c, why, why_text, sizeof(why_text));
	return tm_err_set(err, TM_ERR_CONN, EX_TEMPFAIL, "connection to %s closed%s", c->host,
	    why_text);
}

static int
line_too_long(const struct net_conn *c, size_t max, struct tm_err *err)
{
	return tm_err_set(err, TM_ERR_PROTO, EX_PROTOCOL, "line from %s longer than %zu octets",
	    c->host, max);
}

/* Move the line ending at nl out of rbuf into line[size], without CR LF. */
static int
take_line(struct net_conn *c, const char *nl, char *line, size_t size, size_t *len,
    struct tm_err *err)
{
	const char *start = c->rbuf + c->rpos;
	size_t n = (size_t)(nl - start);

	if (n > 0 && start[n - 1] == '\r')
		n--;
	if (n > size - 1)
		return line_too_long(c, size - 1, err);
	memcpy(line, start, n);
	line[n] = '\0';
	*len = n;
	c->rpos += (size_t)(nl - start) + 1;
	if (c->rpos == c->rlen)
		c->rpos = c->rlen = 0;
	return 0;
}

int
net_read_line(struct net_conn *c, char *line, size_t size, size_t *len,
    int timeout_seconds, struct tm_err *err)
{
	return net_read_line_until(c, line, size, len, net_deadline(timeout_seconds),
	    timeout_seconds, err);
}

int
net_read_line_until(struct net_conn *c, char *line, size_t size, size_t *len,
    long long deadline, int timeout_seconds, struct tm_err *err)
{
	size_t max = size > 0 ? size - 1 : 0;
	const char *nl;

	if (size == 0 || c->fd < 0)
		return tm_err_set(err, TM_ERR_INTERNAL, EX_SOFTWARE,
		    "net_read_line_until: no buffer or no connection");
	for (;;) {
		nl = memchr(c->rbuf + c->rpos, '\n', c->rlen - c->rpos);
		if (nl != NULL)
			return take_line(c, nl, line, size, len, err);
		/* max octets and a CR may wait for their LF; more cannot be a line. */
		if (c->rlen - c->rpos > max + 1)
			return line_too_long(c, max, err);
		if (c->rpos == 0 && c->rlen == sizeof(c->rbuf))
			return line_too_long(c, sizeof(c->rbuf) - 2, err);
		if (fill_rbuf(c, deadline, timeout_seconds, err) < 0)
			return -1;
	}
}

bool
net_has_pending_input(const struct net_conn *c)
{
	return c->rpos < c->rlen || (c->tls != NULL && tls_pending(c->tls));
}

/* Send some of buf; over TLS one record at most, so records come out full. */
static long
conn_send(struct net_conn *c, const char *buf, size_t n, short *events, int *why)
{
	ssize_t r;

	*events = POLLOUT;
	if (c->tls != NULL) {
		r = tls_send(c->tls, buf, n < TLS_RECORD_MAX ? n : TLS_RECORD_MAX);
		if (r == TLS_WANT_READ || r == TLS_WANT_WRITE)
			*events = r == TLS_WANT_READ ? POLLIN : POLLOUT;
		return r == TLS_WANT_READ || r == TLS_WANT_WRITE ? IO_AGAIN : r < 0 ? IO_ERROR : r;
	}
	do
		r = send(c->fd, buf, n, MSG_NOSIGNAL);
	while (r < 0 && errno == EINTR);
	if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return IO_AGAIN;
	*why = r < 0 ? errno : 0;
	return r < 0 ? IO_ERROR : r;
}

static int
send_failed(const struct net_conn *c, int why, struct tm_err *err)
{
	char text[160];

	io_error_text(c, why, text, sizeof(text));
	return tm_err_set(err, TM_ERR_CONN, EX_TEMPFAIL, "cannot send to %s%s", c->host,
	    text[0] != '\0' ? text : " (connection closed)");
}

int
net_flush(struct net_conn *c, int timeout_seconds, struct tm_err *err)
{
	long long deadline = net_deadline(timeout_seconds);
	size_t off = 0;
	short events;
	long r;
	int why = 0, w;

	if (c->wlen == 0)
		return 0;
	if (c->fd < 0)
		return tm_err_set(err, TM_ERR_INTERNAL, EX_SOFTWARE, "net_flush: no connection");
	while (off < c->wlen) {
		r = conn_send(c, c->wbuf + off, c->wlen - off, &events, &why);
		if (r > 0) {
			off += (size_t)r;
			continue;
		}
		if (r != IO_AGAIN)
			return send_failed(c, why, err);
		w = net_wait(c->fd, events, deadline);
		if (w == 0)
			return tm_err_set(err, TM_ERR_CONN, EX_TEMPFAIL,
			    "cannot send to %s: timed out after %d s", c->host, timeout_seconds);
		if (w < 0)
			return send_failed(c, errno, err);
	}
	c->bytes_out += (long long)c->wlen;
	c->flushes++;
	c->wlen = 0;
	return 0;
}

int
net_write(struct net_conn *c, const void *data, size_t n, int timeout_seconds,
    struct tm_err *err)
{
	const char *p = data;
	size_t chunk;

	while (n > 0) {
		/* Flush only when more is coming, so a full buffer leaves whole. */
		if (c->wlen == sizeof(c->wbuf) && net_flush(c, timeout_seconds, err) < 0)
			return -1;
		chunk = sizeof(c->wbuf) - c->wlen;
		if (chunk > n)
			chunk = n;
		memcpy(c->wbuf + c->wlen, p, chunk);
		c->wlen += chunk;
		p += chunk;
		n -= chunk;
	}
	return 0;
}

void
net_close(struct net_conn *c)
{
	tls_close(c->tls);
	c->tls = NULL;
	if (c->fd >= 0)
		(void)close(c->fd);
	c->fd = -1;
	c->rpos = c->rlen = 0;
	c->wlen = 0;
}

bool
net_is_loopback(const char *host)
{
	struct in_addr a4;
	struct in6_addr a6;

	if (str_eq_nocase(host, "localhost"))
		return true;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, host, &a6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&a6);
	return false;
}
