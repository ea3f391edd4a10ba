/*
 * tls.h: TLS on an open net_conn with GnuTLS: the system trust store plus
 * tls_ca_file, the server's name verified against its certificate, TLS 1.2
 * at least (1.3 preferred). Used right after connect (implicit TLS, port
 * 465) or after STARTTLS. There is no way to turn verification off.
 */
#ifndef TM_TLS_H
#define TM_TLS_H

#include "err.h"
#include "net.h"

struct tls_params {
	const char *server_name;	/* verified against the certificate; SNI */
	const char *ca_file;		/* extra trust anchors (PEM), or NULL */
	int timeout_seconds;		/* for the handshake */
};

/*
 * Handshake on c and switch its I/O to TLS. -1 with err: TM_ERR_CONN
 * EX_UNAVAILABLE for a certificate that does not verify or names another
 * host (saying which, hint: tls_ca_file), EX_UNAVAILABLE for a server that
 * offers nothing at TLS 1.2 or above, EX_TEMPFAIL for a timeout or reset;
 * TM_ERR_CONFIG EX_CONFIG "tls_ca_file FILE: why" for a CA file that
 * cannot be read or holds no certificate; TM_ERR_PROTO EX_PROTOCOL when
 * the server already sent bytes in clear that would be taken for TLS data
 * (STARTTLS command injection) or the handshake breaks otherwise. Flush c
 * before calling.
 */
int tls_start(struct net_conn *c, const struct tls_params *p, struct tm_err *err);

/* The negotiated protocol and cipher, e.g. "TLS1.3 / AES-256-GCM", for -v;
   "plain" while c is in clear. Owned by c. */
const char *tls_description(const struct net_conn *c);

/*
 * Free the system trust store that tls_start() loads once per process and
 * keeps (loading it costs milliseconds). Call at exit, after the last
 * connection is closed; a later tls_start() loads it again.
 */
void tls_cleanup(void);

/*
 * Internal to net.c and tls.c: record I/O on the non-blocking socket.
 * tls_recv/tls_send return the bytes moved, 0 for a clean close (recv),
 * TLS_WANT_READ/TLS_WANT_WRITE when the socket must be polled for that
 * before the same call is repeated (GnuTLS wants the same arguments
 * again), or TLS_IO_ERROR (tls_error() says why). tls_send sends at most
 * TLS_RECORD_MAX bytes: exactly one record.
 */
#define TLS_RECORD_MAX	16384
#define TLS_IO_ERROR	(-1)
#define TLS_WANT_READ	(-2)
#define TLS_WANT_WRITE	(-3)

long tls_recv(struct tls_session *s, void *buf, size_t n);
long tls_send(struct tls_session *s, const void *buf, size_t n);
const char *tls_error(const struct tls_session *s);
/* Send close_notify without waiting for the peer's, and free s (NULL is fine). */
void tls_close(struct tls_session *s);
/* true when GnuTLS holds decrypted bytes not yet returned by tls_recv. */
int tls_pending(const struct tls_session *s);

#endif
