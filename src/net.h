/*
 * net.h: one connection to a mail server, plain TCP or TLS, with a
 * deadline on every read and write. getaddrinfo over IPv6 and IPv4, each
 * address tried in turn with a non-blocking connect; TCP_NODELAY always
 * (SMTP is request/response: Nagle would only add delay). Reads are
 * buffered and line-oriented with a length limit; writes are coalesced in
 * a buffer and leave with net_flush(), so a pipelined group of commands or
 * a block of message data goes out in as few TLS records as possible.
 */
#ifndef TM_NET_H
#define TM_NET_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"

#define NET_READ_BUF	16384
#define NET_WRITE_BUF	65536

struct tls_session;	/* tls.c */

struct net_conn {
	int fd;
	struct tls_session *tls;	/* NULL while in clear */
	char host[256];			/* as connected to, for messages and TLS */
	char rbuf[NET_READ_BUF];
	size_t rpos, rlen;
	char wbuf[NET_WRITE_BUF];
	size_t wlen;
	long long bytes_out;		/* for the log and benchmarks */
	unsigned flushes;		/* write groups sent */
};

/*
 * Make c a closed connection (fd -1, no TLS, empty buffers). Callers that
 * may net_close() a conn before net_connect() ran must net_init() it first
 * (or memset it and set fd to -1); net_connect() calls it itself.
 */
void net_init(struct net_conn *c);

/*
 * Connect to host:port within timeout_seconds (each address gets what is
 * left). Returns 0 with c ready (in clear), or -1 with err: TM_ERR_CONN /
 * EX_TEMPFAIL "cannot connect to HOST:PORT: why" (EX_NOHOST... no: a name
 * that does not resolve is EX_TEMPFAIL too, DNS can be briefly wrong).
 */
int net_connect(struct net_conn *c, const char *host, unsigned port, int timeout_seconds,
    struct tm_err *err);

/*
 * Read one line (up to and without CRLF or LF) into line[size] within
 * timeout_seconds; *len gets its length. A line longer than size - 1 is an
 * error (TM_ERR_PROTO, EX_PROTOCOL); EOF or a reset is TM_ERR_CONN
 * EX_TEMPFAIL "connection to HOST closed"; the timeout is TM_ERR_CONN
 * EX_TEMPFAIL "no answer from HOST within N s".
 */
int net_read_line(struct net_conn *c, char *line, size_t size, size_t *len,
    int timeout_seconds, struct tm_err *err);

/*
 * net_read_line against a deadline from net_deadline(timeout_seconds) taken
 * by the caller, so that the lines of one reply share one timeout.
 */
int net_read_line_until(struct net_conn *c, char *line, size_t size, size_t *len,
    long long deadline, int timeout_seconds, struct tm_err *err);

/*
 * true when buffered input is waiting (a server that talks before its turn).
 * Only what was already read counts: the socket itself is not polled, as a
 * TLS 1.3 server may legitimately send session tickets at any time.
 */
bool net_has_pending_input(const struct net_conn *c);

/*
 * Queue n bytes; flushes by itself when the buffer fills (each flush gets
 * timeout_seconds). Errors are net_flush()'s.
 */
int net_write(struct net_conn *c, const void *data, size_t n, int timeout_seconds,
    struct tm_err *err);
/*
 * Send everything queued within timeout_seconds: one write group, counted
 * in flushes and bytes_out. Over TLS it leaves in records of up to 16 KiB.
 * -1 with err TM_ERR_CONN EX_TEMPFAIL "cannot send to HOST: why".
 */
int net_flush(struct net_conn *c, int timeout_seconds, struct tm_err *err);

/* Close (sending TLS close_notify without waiting) and free. Safe twice. */
void net_close(struct net_conn *c);

/* true if host is a loopback name or address (localhost, 127.0.0.0/8, ::1). */
bool net_is_loopback(const char *host);

/*
 * Shared with tls.c: a deadline timeout_seconds from now (monotonic ms),
 * and poll(2) of fd for events until the deadline. net_wait returns 1
 * when ready (or the socket has an error for the next call to find), 0
 * at the deadline, -1 with errno set.
 */
long long net_deadline(int timeout_seconds);
int net_wait(int fd, short events, long long deadline);

#endif
