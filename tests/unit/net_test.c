/*
 * net_test.c: net.c and tls.c against servers forked by the test on
 * 127.0.0.1. Plain TCP: lines (CRLF, LF, split, too long, EOF), a silent
 * server, a refused connect, write coalescing. TLS: a CA and a server
 * certificate for localhost/127.0.0.1 generated here with GnuTLS, and a
 * GnuTLS server that echoes or counts records; the client must verify it,
 * refuse it without the CA, for another name, or at TLS 1.1, and send
 * 1 MB in full 16 KiB records. Every child is killed and waited for.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "err.h"
#include "net.h"
#include "tap.h"
#include "tls.h"
#include "util.h"

#define PATH_SIZE	512
#define LINE_SIZE	512
#define BIG_WRITE	(1024 * 1024)
#define TLS11_PRIORITY	"NORMAL:-VERS-ALL:+VERS-TLS1.1"

static struct {
	char dir[64];
	char ca_path[PATH_SIZE];
	char empty_path[PATH_SIZE];
	gnutls_x509_privkey_t ca_key, key;
	gnutls_x509_crt_t ca, crt;
} fx;

/* One connection at a time; too big for the stack of a test function. */
static struct net_conn conn;

struct server {
	pid_t pid;
	unsigned port;
};

typedef void (*serve_fn)(int fd, const void *arg);

/* A scripted plain server: each step waits delay_ms, then writes data. */
struct step {
	int delay_ms;
	const char *data;
};

struct script {
	const struct step *steps;
	size_t n;
	bool hold;		/* stay silent after the script instead of closing */
};

enum tls_mode { TLS_ECHO, TLS_COUNT };

struct tls_server {
	const char *priority;
	enum tls_mode mode;
};

static void
cleanup(void)
{
	if (fx.dir[0] == '\0')
		return;
	(void)unlink(fx.ca_path);
	(void)unlink(fx.empty_path);
	(void)rmdir(fx.dir);
	fx.dir[0] = '\0';
}

static void
must(int rc, const char *what)
{
	if (rc >= 0)
		return;
	printf("Bail out! %s: %s\n", what, rc == -1 ? strerror(errno) : gnutls_strerror(rc));
	cleanup();
	exit(1);
}

static bool
has(const char *hay, const char *needle)
{
	return strstr(hay, needle) != NULL;
}

static void
sleep_ms(int ms)
{
	(void)poll(NULL, 0, ms);
}

static double
seconds_since(const struct timespec *t0)
{
	struct timespec t1;

	(void)clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/* A socket listening on 127.0.0.1 at a port the kernel picks. */
static int
listen_local(unsigned *port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	must(fd, "socket");
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	must(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), "bind");
	must(listen(fd, 4), "listen");
	must(getsockname(fd, (struct sockaddr *)&sin, &len), "getsockname");
	*port = ntohs(sin.sin_port);
	return fd;
}

/* Fork a child that accepts one connection and runs fn on it. */
static struct server
spawn(serve_fn fn, const void *arg)
{
	struct server s;
	int lfd = listen_local(&s.port), fd;

	fflush(stdout);
	s.pid = fork();
	must(s.pid, "fork");
	if (s.pid == 0) {
		fd = accept(lfd, NULL, NULL);
		if (fd >= 0)
			fn(fd, arg);
		_exit(0);
	}
	(void)close(lfd);
	return s;
}

static void
reap(struct server *s)
{
	(void)kill(s->pid, SIGKILL);
	(void)waitpid(s->pid, NULL, 0);
}

static void
write_all(int fd, const void *data, size_t n)
{
	const char *p = data;
	ssize_t w;

	while (n > 0) {
		w = write(fd, p, n);
		if (w <= 0)
			_exit(2);
		p += w;
		n -= (size_t)w;
	}
}

static void
serve_script(int fd, const void *arg)
{
	const struct script *sc = arg;
	size_t i;

	for (i = 0; i < sc->n; i++) {
		sleep_ms(sc->steps[i].delay_ms);
		write_all(fd, sc->steps[i].data, strlen(sc->steps[i].data));
	}
	if (sc->hold)
		sleep_ms(30000);
	(void)close(fd);
}

/* Read once (all of one small write), say how much came, then drain. */
static void
serve_count_read(int fd, const void *arg)
{
	size_t want = *(const size_t *)arg, total = 0;
	char buf[65536], reply[64];
	ssize_t r;

	while (total < want && (r = read(fd, buf, sizeof(buf))) > 0) {
		if (total == 0)
			(void)str_format(reply, sizeof(reply), "first %zd\r\n", r);
		total += (size_t)r;
	}
	(void)str_format(reply + strlen(reply), sizeof(reply) - strlen(reply), "total %zu\r\n",
	    total);
	write_all(fd, reply, strlen(reply));
	sleep_ms(30000);
}

static struct server
spawn_script(const struct step *steps, size_t n, bool hold, struct script *sc)
{
	sc->steps = steps;
	sc->n = n;
	sc->hold = hold;
	return spawn(serve_script, sc);
}

static int
read_line(char *line, int timeout, struct tm_err *err)
{
	size_t len;

	tm_err_clear(err);
	return net_read_line(&conn, line, LINE_SIZE, &len, timeout, err);
}

static void
check_line(const char *want, const char *what)
{
	struct tm_err err;
	char line[LINE_SIZE] = "";

	if (read_line(line, 5, &err) < 0)
		tap_is_str(err.msg, want, "%s", what);
	else
		tap_is_str(line, want, "%s", what);
}

static void
check_err(const struct tm_err *err, enum tm_err_class cls, int exit_code, const char *text,
    const char *what)
{
	bool ok = err->cls == cls && err->exit == exit_code && has(err->msg, text);

	tap_ok(ok, "%s", what);
	printf("#   %s%s%s\n", err->msg, err->hint[0] != '\0' ? " / hint: " : "", err->hint);
	if (!ok)
		printf("#   got:  cls %d exit %d [%s]\n#   want: cls %d exit %d [...%s...]\n",
		    err->cls, err->exit, err->msg, cls, exit_code, text);
}

static void
connect_local(unsigned port)
{
	struct tm_err err;

	tm_err_clear(&err);
	if (net_connect(&conn, "127.0.0.1", port, 5, &err) < 0) {
		printf("Bail out! connect: %s\n", err.msg);
		cleanup();
		exit(1);
	}
}

static void
test_lines(void)
{
	static char exact[LINE_SIZE + 2], longer[LINE_SIZE + 100];
	const struct step steps[] = {
		{ 0, "220 hello\r\n250 ok\n25" }, { 100, "0 split\r" }, { 100, "\n" },
		{ 0, "\r\n" }, { 0, exact }, { 0, longer },
	};
	struct server srv;
	struct script sc;
	struct tm_err err;
	char line[LINE_SIZE];

	memset(exact, 'x', LINE_SIZE - 1);
	memcpy(exact + LINE_SIZE - 1, "\r\n", 3);
	memset(longer, 'y', LINE_SIZE + 50);
	memcpy(longer + LINE_SIZE + 50, "\r\n", 3);
	srv = spawn_script(steps, sizeof(steps) / sizeof(steps[0]), true, &sc);
	connect_local(srv.port);
	check_line("220 hello", "lines: CRLF");
	tap_ok(net_has_pending_input(&conn), "lines: the rest of the write is pending");
	check_line("250 ok", "lines: bare LF");
	check_line("250 split", "lines: split across three writes");
	check_line("", "lines: empty line");
	tap_ok(read_line(line, 5, &err) == 0 && strlen(line) == LINE_SIZE - 1,
	    "lines: a line of exactly size - 1 octets");
	tap_ok(read_line(line, 5, &err) < 0, "lines: a longer line is refused");
	check_err(&err, TM_ERR_PROTO, EX_PROTOCOL, "line from 127.0.0.1 longer than 511 octets",
	    "lines: too long is a protocol error naming the limit");
	net_close(&conn);
	reap(&srv);
}

static void
test_eof(void)
{
	const struct step steps[] = { { 0, "220 a\r\n250 partial" } };
	struct server srv;
	struct script sc;
	struct tm_err err;
	char line[LINE_SIZE];

	srv = spawn_script(steps, 1, false, &sc);
	connect_local(srv.port);
	check_line("220 a", "eof: the complete line first");
	tap_ok(read_line(line, 5, &err) < 0, "eof: EOF in mid-line fails");
	check_err(&err, TM_ERR_CONN, EX_TEMPFAIL, "connection to 127.0.0.1 closed",
	    "eof: says the connection closed");
	net_close(&conn);
	reap(&srv);
}

static void
test_timeout(void)
{
	struct server srv;
	struct script sc;
	struct tm_err err;
	struct timespec t0;
	char line[LINE_SIZE];
	double took;

	srv = spawn_script(NULL, 0, true, &sc);
	connect_local(srv.port);
	(void)clock_gettime(CLOCK_MONOTONIC, &t0);
	tap_ok(read_line(line, 1, &err) < 0, "timeout: a silent server fails the read");
	took = seconds_since(&t0);
	check_err(&err, TM_ERR_CONN, EX_TEMPFAIL, "no answer from 127.0.0.1 within 1 s",
	    "timeout: message and class");
	tap_ok(took > 0.9 && took < 3.0, "timeout: after about 1 s (%.2f s)", took);
	net_close(&conn);
	reap(&srv);
}

static void
test_connect_errors(void)
{
	struct tm_err err;
	char want[64];
	unsigned port;
	int lfd = listen_local(&port);

	(void)close(lfd);
	tm_err_clear(&err);
	tap_ok(net_connect(&conn, "127.0.0.1", port, 5, &err) < 0 && conn.fd == -1,
	    "connect: a closed port fails");
	(void)str_format(want, sizeof(want), "cannot connect to 127.0.0.1:%u: connection refused",
	    port);
	check_err(&err, TM_ERR_CONN, EX_TEMPFAIL, want, "connect: refused, naming host:port");
	tm_err_clear(&err);
	tap_ok(net_connect(&conn, "nonexistent.invalid", 25, 5, &err) < 0,
	    "connect: a name that does not resolve fails");
	check_err(&err, TM_ERR_CONN, EX_TEMPFAIL, "no address for nonexistent.invalid",
	    "connect: says there is no address");
	net_close(&conn);
}

static void
test_coalescing(void)
{
	static const char *const parts[] = { "MAIL FROM:<a@b>\r\n", "RCPT TO:<c@d>\r\n", "DATA\r\n" };
	size_t total = 0, i;
	struct server srv;
	struct tm_err err;
	char want[64];

	for (i = 0; i < 3; i++)
		total += strlen(parts[i]);
	srv = spawn(serve_count_read, &total);
	connect_local(srv.port);
	tm_err_clear(&err);
	for (i = 0; i < 3; i++)
		(void)net_write(&conn, parts[i], strlen(parts[i]), 5, &err);
	tap_ok(conn.flushes == 0 && conn.bytes_out == 0, "coalesce: nothing sent before the flush");
	tap_ok(net_flush(&conn, 5, &err) == 0, "coalesce: flush");
	tap_ok(net_flush(&conn, 5, &err) == 0 && conn.flushes == 1, "coalesce: empty flush is no group");
	tap_is_int(conn.bytes_out, (long)total, "coalesce: bytes_out");
	(void)str_format(want, sizeof(want), "first %zu", total);
	check_line(want, "coalesce: the server got it all in one read");
	net_close(&conn);
	reap(&srv);
}

/* 1 MB in clear: automatic flushes when the buffer fills, partial sends. */
static void
test_big_plain(void)
{
	size_t total = BIG_WRITE, i;
	struct server srv;
	struct tm_err err;
	char *data = xmalloc(4096), want[64];
	int rc = 0;

	memset(data, 'm', 4096);
	srv = spawn(serve_count_read, &total);
	connect_local(srv.port);
	tm_err_clear(&err);
	for (i = 0; i < total / 4096 && rc == 0; i++)
		rc = net_write(&conn, data, 4096, 5, &err);
	tap_ok(rc == 0 && net_flush(&conn, 5, &err) == 0, "big plain: 1 MB written %s", err.msg);
	tap_is_int(conn.flushes, BIG_WRITE / NET_WRITE_BUF, "big plain: one flush per full buffer");
	(void)read_line(want, 5, &err);	/* "first N" */
	(void)str_format(want, sizeof(want), "total %d", BIG_WRITE);
	check_line(want, "big plain: the server got every byte");
	net_close(&conn);
	reap(&srv);
	free(data);
}

static void
test_loopback(void)
{
	static const struct {
		const char *host;
		bool want;
	} cases[] = {
		{ "localhost", true }, { "LocalHost", true }, { "127.0.0.1", true },
		{ "127.1.2.3", true }, { "::1", true }, { "0:0:0:0:0:0:0:1", true },
		{ "128.0.0.1", false }, { "10.0.0.1", false }, { "::2", false },
		{ "localhost.example.com", false }, { "smtp.office365.com", false }, { "", false },
		{ "127.0.0.1.example", false },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		tap_ok(net_is_loopback(cases[i].host) == cases[i].want, "loopback: %s -> %s",
		    cases[i].host, cases[i].want ? "yes" : "no");
}

static void
test_close_twice(void)
{
	net_init(&conn);
	net_close(&conn);
	net_close(&conn);
	tap_ok(conn.fd == -1 && conn.tls == NULL, "close: twice on a never-opened conn");
	tap_is_str(tls_description(&conn), "plain", "close: description in clear");
}

/* ---- TLS fixtures ---- */

static gnutls_x509_crt_t
new_cert(gnutls_x509_privkey_t key, unsigned char serial, const char *cn)
{
	gnutls_x509_crt_t crt;
	time_t now = time(NULL);

	must(gnutls_x509_crt_init(&crt), "crt_init");
	must(gnutls_x509_crt_set_version(crt, 3), "set_version");
	must(gnutls_x509_crt_set_serial(crt, &serial, 1), "set_serial");
	must(gnutls_x509_crt_set_activation_time(crt, now - 60), "set_activation_time");
	must(gnutls_x509_crt_set_expiration_time(crt, now + 86400), "set_expiration_time");
	must(gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, cn,
	    (unsigned)strlen(cn)), "set_dn_by_oid");
	must(gnutls_x509_crt_set_key(crt, key), "set_key");
	return crt;
}

static gnutls_x509_privkey_t
new_key(void)
{
	gnutls_x509_privkey_t key;

	must(gnutls_x509_privkey_init(&key), "privkey_init");
	must(gnutls_x509_privkey_generate(key, GNUTLS_PK_ECDSA,
	    GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0), "privkey_generate");
	return key;
}

static void
make_certs(void)
{
	static const unsigned char ip[4] = { 127, 0, 0, 1 };

	fx.ca_key = new_key();
	fx.ca = new_cert(fx.ca_key, 1, "tokenmail test CA");
	must(gnutls_x509_crt_set_basic_constraints(fx.ca, 1, -1), "ca constraints");
	must(gnutls_x509_crt_set_key_usage(fx.ca, GNUTLS_KEY_KEY_CERT_SIGN | GNUTLS_KEY_CRL_SIGN),
	    "ca key usage");
	must(gnutls_x509_crt_sign2(fx.ca, fx.ca, fx.ca_key, GNUTLS_DIG_SHA256, 0), "ca sign");
	fx.key = new_key();
	fx.crt = new_cert(fx.key, 2, "localhost");
	must(gnutls_x509_crt_set_basic_constraints(fx.crt, 0, -1), "constraints");
	must(gnutls_x509_crt_set_key_usage(fx.crt, GNUTLS_KEY_DIGITAL_SIGNATURE), "key usage");
	must(gnutls_x509_crt_set_key_purpose_oid(fx.crt, GNUTLS_KP_TLS_WWW_SERVER, 0), "purpose");
	must(gnutls_x509_crt_set_subject_alt_name(fx.crt, GNUTLS_SAN_DNSNAME, "localhost", 9,
	    GNUTLS_FSAN_APPEND), "san dns");
	must(gnutls_x509_crt_set_subject_alt_name(fx.crt, GNUTLS_SAN_IPADDRESS, ip, sizeof(ip),
	    GNUTLS_FSAN_APPEND), "san ip");
	must(gnutls_x509_crt_sign2(fx.crt, fx.ca, fx.ca_key, GNUTLS_DIG_SHA256, 0), "sign");
}

static void
write_file(const char *path, const void *data, size_t n)
{
	FILE *f = fopen(path, "w");

	if (f == NULL || (n > 0 && fwrite(data, 1, n, f) != n) || fclose(f) != 0)
		must(-1, path);
}

static void
setup_tls(void)
{
	gnutls_datum_t pem = { NULL, 0 };

	(void)str_copy(fx.dir, sizeof(fx.dir), "/tmp/net_test.XXXXXX");
	if (mkdtemp(fx.dir) == NULL) {
		fx.dir[0] = '\0';
		must(-1, "mkdtemp");
	}
	(void)str_format(fx.ca_path, sizeof(fx.ca_path), "%s/ca.pem", fx.dir);
	(void)str_format(fx.empty_path, sizeof(fx.empty_path), "%s/empty.pem", fx.dir);
	make_certs();
	must(gnutls_x509_crt_export2(fx.ca, GNUTLS_X509_FMT_PEM, &pem), "export ca");
	write_file(fx.ca_path, pem.data, pem.size);
	write_file(fx.empty_path, "", 0);
	gnutls_free(pem.data);
}

static void
teardown_tls(void)
{
	gnutls_x509_crt_deinit(fx.crt);
	gnutls_x509_crt_deinit(fx.ca);
	gnutls_x509_privkey_deinit(fx.key);
	gnutls_x509_privkey_deinit(fx.ca_key);
	cleanup();
}

/* Count the records (not the bytes) of BIG_WRITE, then report both. */
static void
count_records(gnutls_session_t s)
{
	gnutls_packet_t packet;
	gnutls_datum_t data;
	size_t total = 0, records = 0;
	char reply[64];
	ssize_t r;

	while (total < BIG_WRITE) {
		r = gnutls_record_recv_packet(s, &packet);
		if (r <= 0)
			break;
		gnutls_packet_get(packet, &data, NULL);
		total += data.size;
		records++;
		gnutls_packet_deinit(packet);
	}
	(void)str_format(reply, sizeof(reply), "records %zu bytes %zu\r\n", records, total);
	(void)gnutls_record_send(s, reply, strlen(reply));
}

static void
echo(gnutls_session_t s)
{
	char buf[4096];
	ssize_t r;

	while ((r = gnutls_record_recv(s, buf, sizeof(buf))) > 0)
		if (gnutls_record_send(s, buf, (size_t)r) < 0)
			break;
}

static void
serve_tls(int fd, const void *arg)
{
	const struct tls_server *ts = arg;
	gnutls_certificate_credentials_t cred;
	gnutls_session_t s;
	int rc;

	if (gnutls_certificate_allocate_credentials(&cred) < 0 ||
	    gnutls_certificate_set_x509_key(cred, &fx.crt, 1, fx.key) < 0 ||
	    gnutls_init(&s, GNUTLS_SERVER) < 0 ||
	    gnutls_priority_set_direct(s, ts->priority, NULL) < 0 ||
	    gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, cred) < 0)
		_exit(3);
	gnutls_transport_set_int(s, fd);
	do
		rc = gnutls_handshake(s);
	while (rc < 0 && !gnutls_error_is_fatal(rc));
	if (rc < 0)
		_exit(4);
	if (ts->mode == TLS_COUNT)
		count_records(s);
	else
		echo(s);
	sleep_ms(30000);
}

static int
start_tls(unsigned port, const char *name, const char *ca_file, int timeout, struct tm_err *err)
{
	struct tls_params p = { .server_name = name, .ca_file = ca_file, .timeout_seconds = timeout };

	connect_local(port);
	tm_err_clear(err);
	return tls_start(&conn, &p, err);
}

static void
test_tls_ok(const char *name)
{
	static const struct tls_server ts = { "NORMAL", TLS_ECHO };
	struct server srv = spawn(serve_tls, &ts);
	struct tm_err err;
	int rc = start_tls(srv.port, name, fx.ca_path, 5, &err);

	tap_ok(rc == 0, "tls %s: handshake verifies with tls_ca_file %s", name, err.msg);
	tap_ok(has(tls_description(&conn), "TLS1.3 / "), "tls %s: description %s", name,
	    tls_description(&conn));
	tm_err_clear(&err);
	tap_ok(net_write(&conn, "EHLO x\r\n", 8, 5, &err) == 0 &&
	    net_write(&conn, "QUIT\r\n", 6, 5, &err) == 0 && net_flush(&conn, 5, &err) == 0,
	    "tls %s: write %s", name, err.msg);
	check_line("EHLO x", "tls: first line round trip");
	check_line("QUIT", "tls: second line round trip");
	net_close(&conn);
	net_close(&conn);
	reap(&srv);
}

static void
test_tls_refused(const char *name, const char *ca_file, const char *text, const char *hint,
    const char *what)
{
	static const struct tls_server ts = { "NORMAL", TLS_ECHO };
	struct server srv = spawn(serve_tls, &ts);
	struct tm_err err;

	tap_ok(start_tls(srv.port, name, ca_file, 5, &err) < 0 && conn.tls == NULL,
	    "%s: handshake fails", what);
	check_err(&err, TM_ERR_CONN, EX_UNAVAILABLE, text, what);
	tap_ok(has(err.hint, hint), "%s: hint [%s]", what, err.hint);
	net_close(&conn);
	reap(&srv);
}

static void
test_tls11(void)
{
	static const struct tls_server ts = { TLS11_PRIORITY, TLS_ECHO };
	gnutls_priority_t prio;
	struct server srv;
	struct tm_err err;

	if (gnutls_priority_init(&prio, TLS11_PRIORITY, NULL) < 0) {
		tap_ok(1, "# skip GnuTLS here cannot run TLS 1.1");
		tap_ok(1, "# skip GnuTLS here cannot run TLS 1.1");
		return;
	}
	gnutls_priority_deinit(prio);
	srv = spawn(serve_tls, &ts);
	tap_ok(start_tls(srv.port, "localhost", fx.ca_path, 5, &err) < 0,
	    "tls 1.1 server: handshake fails");
	check_err(&err, TM_ERR_CONN, EX_UNAVAILABLE, "localhost offers no TLS 1.2 or newer",
	    "tls 1.1 server: says so");
	net_close(&conn);
	reap(&srv);
}

static void
test_tls_big(void)
{
	static const struct tls_server ts = { "NORMAL", TLS_COUNT };
	struct server srv = spawn(serve_tls, &ts);
	struct tm_err err;
	char *data = xmalloc(1000), line[LINE_SIZE];
	size_t left = BIG_WRITE, n;
	unsigned long records = 0, bytes = 0;
	int rc = start_tls(srv.port, "localhost", fx.ca_path, 5, &err);

	memset(data, 'd', 1000);
	for (; rc == 0 && left > 0; left -= n) {
		n = left < 1000 ? left : 1000;	/* message lines, roughly */
		rc = net_write(&conn, data, n, 5, &err);
	}
	tap_ok(rc == 0 && net_flush(&conn, 5, &err) == 0, "tls big: 1 MB sent %s", err.msg);
	tap_is_int(conn.flushes, BIG_WRITE / NET_WRITE_BUF, "tls big: flushes");
	if (read_line(line, 5, &err) < 0 || sscanf(line, "records %lu bytes %lu", &records,
	    &bytes) != 2)
		printf("# server said [%s] [%s]\n", line, err.msg);
	tap_is_int((long)bytes, BIG_WRITE, "tls big: server got every byte");
	tap_ok(records > 0 && records <= 70, "tls big: in %lu records (<= 70)", records);
	net_close(&conn);
	reap(&srv);
	free(data);
}

/* tls_start against plain servers: bad CA files, silence, a reset, injection. */
static void
test_tls_plain_peers(void)
{
	static const struct step inject[] = { { 0, "220 go ahead\r\nEHLO injected\r\n" } };
	struct server srv;
	struct script sc;
	struct tm_err err;
	char line[LINE_SIZE];

	srv = spawn_script(NULL, 0, true, &sc);
	tap_ok(start_tls(srv.port, "localhost", "/nonexistent/ca.pem", 5, &err) < 0,
	    "tls_ca_file missing: fails");
	check_err(&err, TM_ERR_CONFIG, EX_CONFIG, "tls_ca_file /nonexistent/ca.pem: ",
	    "tls_ca_file missing: config error naming the file");
	net_close(&conn);
	tap_ok(start_tls(srv.port, "localhost", fx.empty_path, 5, &err) < 0 &&
	    err.exit == EX_CONFIG && has(err.msg, "empty.pem"), "tls_ca_file empty: %s", err.msg);
	net_close(&conn);
	reap(&srv);

	srv = spawn_script(NULL, 0, true, &sc);
	tap_ok(start_tls(srv.port, "localhost", fx.ca_path, 1, &err) < 0, "tls silent: fails");
	check_err(&err, TM_ERR_CONN, EX_TEMPFAIL, "within 1 s", "tls silent: times out");
	net_close(&conn);
	reap(&srv);

	srv = spawn_script(NULL, 0, false, &sc);
	tap_ok(start_tls(srv.port, "localhost", fx.ca_path, 5, &err) < 0, "tls reset: fails");
	check_err(&err, TM_ERR_CONN, EX_TEMPFAIL, "localhost", "tls reset: temporary");
	net_close(&conn);
	reap(&srv);

	srv = spawn_script(inject, 1, true, &sc);
	connect_local(srv.port);
	(void)read_line(line, 5, &err);
	tap_ok(tls_start(&conn, &(struct tls_params){ "localhost", fx.ca_path, 5 }, &err) < 0 &&
	    err.exit == EX_PROTOCOL, "starttls injection: refused: %s", err.msg);
	net_close(&conn);
	reap(&srv);
}

int
main(void)
{
	signal(SIGPIPE, SIG_IGN);
	net_init(&conn);
	test_close_twice();
	test_loopback();
	test_lines();
	test_eof();
	test_timeout();
	test_connect_errors();
	test_coalescing();
	test_big_plain();
	setup_tls();
	test_tls_ok("localhost");
	test_tls_ok("127.0.0.1");
	test_tls_refused("localhost", NULL, "certificate signed by an unknown authority",
	    "tls_ca_file", "tls without the CA");
	test_tls_refused("wrong.example", fx.ca_path,
	    "certificate names another host: localhost", "host", "tls for wrong.example");
	test_tls11();
	test_tls_big();
	test_tls_plain_peers();
	teardown_tls();
	tls_cleanup();
	return tap_done();
}
