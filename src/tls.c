/*
 * tls.c: GnuTLS client sessions for net.c. The certificate is verified
 * inside the handshake (gnutls_session_set_verify_cert), so no byte of
 * SMTP, and no token, crosses a connection whose peer was not verified;
 * when that fails, the verification status is taken apart to tell the
 * person which of the usual causes it was.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "err.h"
#include "log.h"
#include "net.h"
#include "tls.h"
#include "util.h"

/* TLS 1.2 at least (Exchange Online requires it for SMTP AUTH), 1.3 first. */
#define TLS_PRIORITY	"NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"
#define TLS_CA_HINT	"if the server uses a private CA, set tls_ca_file"

struct tls_session {
	gnutls_session_t session;
	bool with_ca_file;	/* ca_cred, not system_cred */
	const char *name;	/* the name the certificate must hold */
	unsigned cert_status;	/* verification status, for the report */
	int last_error;		/* GnuTLS code behind the last TLS_IO_ERROR */
	char desc[96];		/* "TLS1.3 / AES-256-GCM" */
};

/* The system trust store, loaded on first use and kept until tls_cleanup(). */
static gnutls_certificate_credentials_t system_cred;
/* tls_ca_file's anchors (and the system store once a peer needed it), loaded
   on first use and kept, so that a retry or a second connection parses
   nothing again. A process has one configuration, so one ca_file. */
static gnutls_certificate_credentials_t ca_cred;
static char ca_cred_file[4096];
static bool ca_cred_has_system;

/* Status bits of a failed verification and how to say them. */
static const struct {
	unsigned flag;
	const char *text;
} cert_reasons[] = {
	{ GNUTLS_CERT_SIGNER_NOT_FOUND, "certificate signed by an unknown authority" },
	{ GNUTLS_CERT_SIGNER_NOT_CA, "certificate signed by a certificate that is not a CA" },
	{ GNUTLS_CERT_EXPIRED, "certificate expired" },
	{ GNUTLS_CERT_NOT_ACTIVATED, "certificate not valid yet" },
	{ GNUTLS_CERT_REVOKED, "certificate revoked" },
	{ GNUTLS_CERT_INSECURE_ALGORITHM, "certificate signed with an insecure algorithm" },
	{ GNUTLS_CERT_SIGNATURE_FAILURE, "certificate signature does not verify" },
};

static bool
is_ip_literal(const char *name)
{
	unsigned char addr[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, name, addr) == 1 || inet_pton(AF_INET6, name, addr) == 1;
}

static void
tls_free(struct tls_session *s)
{
	if (s == NULL)
		return;
	if (s->session != NULL)
		gnutls_deinit(s->session);
	free(s);
}

void
tls_cleanup(void)
{
	if (system_cred != NULL)
		gnutls_certificate_free_credentials(system_cred);
	if (ca_cred != NULL)
		gnutls_certificate_free_credentials(ca_cred);
	system_cred = ca_cred = NULL;
	ca_cred_file[0] = '\0';
	ca_cred_has_system = false;
}

/* Add ca_file's certificates to cred as trust anchors. */
static int
load_ca_file(gnutls_certificate_credentials_t cred, const char *ca_file, struct tm_err *err)
{
	char why[128];
	int n;

	if (access(ca_file, R_OK) < 0) {
		(void)str_copy(why, sizeof(why), strerror(errno));
		if (why[0] >= 'A' && why[0] <= 'Z')
			why[0] = (char)(why[0] - 'A' + 'a');
		return tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG, "tls_ca_file %s: %s", ca_file, why);
	}
	n = gnutls_certificate_set_x509_trust_file(cred, ca_file, GNUTLS_X509_FMT_PEM);
	if (n == 0)
		return tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG,
		    "tls_ca_file %s: no PEM certificate in it", ca_file);
	if (n < 0)
		return tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG, "tls_ca_file %s: %s", ca_file,
		    gnutls_strerror(n));
	return 0;
}

/*
 * Add the system store to cred: a failure is only traced, as ca_file may be
 * all that is needed, and without either the handshake says "unknown
 * authority" anyway.
 */
static void
add_system_trust(gnutls_certificate_credentials_t cred)
{
	int n = gnutls_certificate_set_x509_system_trust(cred);

	if (n <= 0)
		log_trace("tls: no system trust store: %s", n < 0 ? gnutls_strerror(n) : "empty");
}

/*
 * New credentials: with ca_file only that file, as the system store is
 * added when the peer's chain needs it (verify_with_ca_file); without,
 * the system store.
 */
static int
new_credentials(const char *ca_file, gnutls_certificate_credentials_t *out,
    struct tm_err *err)
{
	gnutls_certificate_credentials_t cred;
	int n;

	n = gnutls_certificate_allocate_credentials(&cred);
	if (n < 0)
		return tm_err_set(err, TM_ERR_INTERNAL, EX_OSERR, "TLS credentials: %s",
		    gnutls_strerror(n));
	if (ca_file == NULL)
		add_system_trust(cred);
	if (ca_file != NULL && load_ca_file(cred, ca_file, err) < 0) {
		gnutls_certificate_free_credentials(cred);
		return -1;
	}
	*out = cred;
	return 0;
}

/* The credentials for s: the shared system store, or those of ca_file. */
static int
session_credentials(struct tls_session *s, const char *ca_file,
    gnutls_certificate_credentials_t *cred, struct tm_err *err)
{
	if (ca_file != NULL) {
		if (ca_cred != NULL && strcmp(ca_cred_file, ca_file) != 0)
			tls_cleanup();
		if (ca_cred == NULL) {
			if (new_credentials(ca_file, &ca_cred, err) < 0)
				return -1;
			(void)str_copy(ca_cred_file, sizeof(ca_cred_file), ca_file);
		}
		s->with_ca_file = true;
		*cred = ca_cred;
		return 0;
	}
	if (system_cred == NULL && new_credentials(NULL, &system_cred, err) < 0)
		return -1;
	*cred = system_cred;
	return 0;
}

/*
 * The verification of a session with tls_ca_file, inside the handshake as
 * gnutls_session_set_verify_cert does it. The system store is parsed
 * (some 140 certificates, most of the CPU a send costs) only when
 * tls_ca_file's anchors do not verify the chain: a private CA then costs
 * nothing more, and public CAs stay trusted.
 */
static int
verify_with_ca_file(gnutls_session_t session)
{
	struct tls_session *s = gnutls_session_get_ptr(session);
	unsigned status = 0;

	if (gnutls_certificate_verify_peers3(session, s->name, &status) < 0)
		status |= GNUTLS_CERT_INVALID;
	if ((status & GNUTLS_CERT_SIGNER_NOT_FOUND) && !ca_cred_has_system) {
		log_trace("tls: tls_ca_file does not verify %s: adding the system store", s->name);
		add_system_trust(ca_cred);
		ca_cred_has_system = true;
		status = 0;
		if (gnutls_certificate_verify_peers3(session, s->name, &status) < 0)
			status |= GNUTLS_CERT_INVALID;
	}
	s->cert_status = status;
	return status != 0 ? GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR : 0;
}

static int
session_setup(struct tls_session *s, int fd, const char *name,
    gnutls_certificate_credentials_t cred, struct tm_err *err)
{
	int n;

	n = gnutls_init(&s->session, GNUTLS_CLIENT | GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL);
	if (n >= 0)
		n = gnutls_priority_set_direct(s->session, TLS_PRIORITY, NULL);
	if (n >= 0)
		n = gnutls_credentials_set(s->session, GNUTLS_CRD_CERTIFICATE, cred);
	/* RFC 6066 3: literal IP addresses are not permitted in SNI. */
	if (n >= 0 && !is_ip_literal(name))
		n = gnutls_server_name_set(s->session, GNUTLS_NAME_DNS, name, strlen(name));
	if (n < 0)
		return tm_err_set(err, TM_ERR_INTERNAL, EX_SOFTWARE, "TLS setup: %s",
		    gnutls_strerror(n));
	s->name = name;
	if (s->with_ca_file) {
		gnutls_session_set_ptr(s->session, s);
		gnutls_session_set_verify_function(s->session, verify_with_ca_file);
	} else {
		gnutls_session_set_verify_cert(s->session, name, 0);
	}
	gnutls_transport_set_int(s->session, fd);
	/* Our own deadline governs; GnuTLS's timer would only fight it. */
	gnutls_handshake_set_timeout(s->session, 0);
	return 0;
}

/* The first DNS name of the peer's certificate (or its CN), sanitized, or "". */
static void
peer_name(gnutls_session_t session, char *out, size_t size)
{
	const gnutls_datum_t *certs;
	gnutls_x509_crt_t crt;
	char name[256];
	size_t len;
	unsigned n = 0, i;
	int type = 0;

	out[0] = '\0';
	certs = gnutls_certificate_get_peers(session, &n);
	if (certs == NULL || n == 0 || gnutls_x509_crt_init(&crt) < 0)
		return;
	if (gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER) < 0)
		goto out;
	for (i = 0; type >= 0; i++) {
		len = sizeof(name);
		type = gnutls_x509_crt_get_subject_alt_name(crt, i, name, &len, NULL);
		if (type == GNUTLS_SAN_DNSNAME)
			goto found;
	}
	len = sizeof(name);
	if (gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0, name, &len) < 0)
		goto out;
found:
	log_sanitize(out, size, name, strnlen(name, len));
out:
	gnutls_x509_crt_deinit(crt);
}

/* Why the certificate was refused, "; "-separated, into out. */
static void
cert_why(gnutls_session_t session, unsigned status, const char *name, char *out, size_t size)
{
	char other[256];
	size_t i;

	out[0] = '\0';
	for (i = 0; i < sizeof(cert_reasons) / sizeof(cert_reasons[0]); i++) {
		if ((status & cert_reasons[i].flag) == 0)
			continue;
		if (out[0] != '\0')
			(void)str_append(out, size, "; ");
		(void)str_append(out, size, cert_reasons[i].text);
	}
	if (status & GNUTLS_CERT_UNEXPECTED_OWNER) {
		peer_name(session, other, sizeof(other));
		(void)str_format(out + strlen(out), size - strlen(out),
		    "%scertificate names another host: %s (wanted %s)", out[0] != '\0' ? "; " : "",
		    other[0] != '\0' ? other : "?", name);
	}
	if (out[0] == '\0')
		(void)str_copy(out, size, "certificate not trusted");
}

static int
cert_failed(gnutls_session_t session, const char *name, unsigned status, struct tm_err *err)
{
	gnutls_datum_t text = { NULL, 0 };
	char why[400];

	cert_why(session, status, name, why, sizeof(why));
	tm_err_set(err, TM_ERR_CONN, EX_UNAVAILABLE, "TLS certificate of %s refused: %s", name, why);
	if (status & (GNUTLS_CERT_SIGNER_NOT_FOUND | GNUTLS_CERT_SIGNER_NOT_CA))
		tm_err_hint(err, "%s", TLS_CA_HINT);
	else if (status & GNUTLS_CERT_UNEXPECTED_OWNER)
		tm_err_hint(err, "set host to a name the certificate lists");
	if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &text, 0) >= 0) {
		tm_err_detail(err, "GnuTLS: %s", (const char *)text.data);
		gnutls_free(text.data);
	}
	return -1;
}

static bool
is_version_error(gnutls_session_t session, int rc)
{
	return rc == GNUTLS_E_UNSUPPORTED_VERSION_PACKET ||
	    (rc == GNUTLS_E_FATAL_ALERT_RECEIVED &&
	    gnutls_alert_get(session) == GNUTLS_A_PROTOCOL_VERSION);
}

static int
handshake_failed(const struct tls_session *s, const char *host, int rc, struct tm_err *err)
{
	gnutls_session_t session = s->session;
	const char *alert = NULL;

	if (rc == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR || rc == GNUTLS_E_CERTIFICATE_ERROR)
		return cert_failed(session, host, s->with_ca_file ? s->cert_status :
		    gnutls_session_get_verify_cert_status(session), err);
	if (is_version_error(session, rc))
		return tm_err_set(err, TM_ERR_CONN, EX_UNAVAILABLE,
		    "%s offers no TLS 1.2 or newer", host);
	/* A record cut short is a connection that broke, as after the handshake. */
	if (rc == GNUTLS_E_PUSH_ERROR || rc == GNUTLS_E_PULL_ERROR ||
	    rc == GNUTLS_E_PREMATURE_TERMINATION || rc == GNUTLS_E_TIMEDOUT ||
	    rc == GNUTLS_E_UNEXPECTED_PACKET_LENGTH)
		return tm_err_set(err, TM_ERR_CONN, EX_TEMPFAIL,
		    "connection to %s closed during the TLS handshake (%s)", host, gnutls_strerror(rc));
	if (rc == GNUTLS_E_FATAL_ALERT_RECEIVED)
		alert = gnutls_alert_get_name(gnutls_alert_get(session));
	return tm_err_set(err, TM_ERR_PROTO, EX_PROTOCOL, "TLS handshake with %s failed: %s%s%s",
	    host, gnutls_strerror(rc), alert != NULL ? ": " : "", alert != NULL ? alert : "");
}

/* Drive the handshake on the non-blocking socket until done or the deadline. */
static int
handshake(struct tls_session *s, int fd, const char *host, int timeout_seconds,
    struct tm_err *err)
{
	long long deadline = net_deadline(timeout_seconds);
	int rc, w;

	for (;;) {
		rc = gnutls_handshake(s->session);
		if (rc == GNUTLS_E_SUCCESS)
			return 0;
		if (rc != GNUTLS_E_AGAIN && rc != GNUTLS_E_INTERRUPTED && gnutls_error_is_fatal(rc))
			return handshake_failed(s, host, rc, err);
		/* A warning alert or EINTR: call again at once, within the deadline. */
		if (rc != GNUTLS_E_AGAIN)
			w = net_deadline(0) < deadline;
		else
			w = net_wait(fd, gnutls_record_get_direction(s->session) ? POLLOUT : POLLIN,
			    deadline);
		if (w == 0)
			return tm_err_set(err, TM_ERR_CONN, EX_TEMPFAIL,
			    "no TLS handshake with %s within %d s", host, timeout_seconds);
		if (w < 0)
			return tm_err_set(err, TM_ERR_CONN, EX_TEMPFAIL,
			    "TLS handshake with %s: %s", host, strerror(errno));
	}
}

static void
describe(struct tls_session *s)
{
	const char *proto = gnutls_protocol_get_name(gnutls_protocol_get_version(s->session));
	const char *cipher = gnutls_cipher_get_name(gnutls_cipher_get(s->session));

	(void)str_format(s->desc, sizeof(s->desc), "%s / %s", proto ? proto : "?",
	    cipher ? cipher : "?");
}

int
tls_start(struct net_conn *c, const struct tls_params *p, struct tm_err *err)
{
	struct tls_session *s = NULL;
	gnutls_certificate_credentials_t cred;
	int rc = -1;

	if (c->fd < 0 || c->tls != NULL || c->wlen != 0) {
		tm_err_set(err, TM_ERR_INTERNAL, EX_SOFTWARE, "tls_start: connection not ready");
		goto out;
	}
	/* Bytes read in clear after the STARTTLS reply would pass for TLS data. */
	if (net_has_pending_input(c)) {
		tm_err_set(err, TM_ERR_PROTO, EX_PROTOCOL, "%s sent data before the TLS handshake",
		    c->host);
		goto out;
	}
	s = xcalloc(1, sizeof(*s));
	if (session_credentials(s, p->ca_file, &cred, err) < 0 ||
	    session_setup(s, c->fd, p->server_name, cred, err) < 0 ||
	    handshake(s, c->fd, p->server_name, p->timeout_seconds, err) < 0)
		goto out;
	describe(s);
	log_trace("tls: handshake with %s done: %s", p->server_name, s->desc);
	c->tls = s;
	s = NULL;
	rc = 0;
out:
	tls_free(s);
	return rc;
}

const char *
tls_description(const struct net_conn *c)
{
	return c->tls != NULL ? c->tls->desc : "plain";
}

/* A GnuTLS record I/O result in the terms of tls.h. */
static long
io_result(struct tls_session *s, ssize_t r)
{
	if (r >= 0)
		return (long)r;
	if (r == GNUTLS_E_AGAIN)
		return gnutls_record_get_direction(s->session) ? TLS_WANT_WRITE : TLS_WANT_READ;
	s->last_error = (int)r;
	return TLS_IO_ERROR;
}

/* Non-fatal codes other than AGAIN (a warning alert, a renegotiation
   request we ignore): just read on. */
static bool
read_on(ssize_t r)
{
	return r == GNUTLS_E_INTERRUPTED ||
	    (r < 0 && r != GNUTLS_E_AGAIN && !gnutls_error_is_fatal((int)r));
}

long
tls_recv(struct tls_session *s, void *buf, size_t n)
{
	ssize_t r;

	do
		r = gnutls_record_recv(s->session, buf, n);
	while (read_on(r));
	return io_result(s, r);
}

long
tls_send(struct tls_session *s, const void *buf, size_t n)
{
	ssize_t r;

	do
		r = gnutls_record_send(s->session, buf, n < TLS_RECORD_MAX ? n : TLS_RECORD_MAX);
	while (r == GNUTLS_E_INTERRUPTED);
	return io_result(s, r);
}

const char *
tls_error(const struct tls_session *s)
{
	return s->last_error != 0 ? gnutls_strerror(s->last_error) : "connection closed";
}

void
tls_close(struct tls_session *s)
{
	if (s == NULL)
		return;
	/* SHUT_WR: the SMTP exchange is over; waiting for the peer's
	   close_notify would only add a round trip. */
	(void)gnutls_bye(s->session, GNUTLS_SHUT_WR);
	tls_free(s);
}

int
tls_pending(const struct tls_session *s)
{
	return gnutls_record_check_pending(s->session) > 0;
}
