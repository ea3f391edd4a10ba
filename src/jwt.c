/*
 * jwt.c: the signed client assertion for certificate credentials (RFC 7523,
 * Microsoft "certificate credentials"; PROTOCOL 1.3). The certificate and
 * the key are read from PEM files with GnuTLS, the key is checked against
 * the certificate, and header.claims is signed with RS256 (PKCS#1 v1.5) or
 * PS256 (PSS). Nothing here prints or keeps key material: the key file's
 * bytes are wiped as soon as GnuTLS has parsed them.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/x509.h>

#include "base64.h"
#include "jwt.h"
#include "tm_limits.h"
#include "util.h"

/* A real assertion is well under 2 KB (a 4096-bit signature is 683
   characters); the cap only stops an absurd audience or client_id. */
#define JWT_MAX			TM_SECRET_MAX
#define UUID_TEXT_LEN		36
#define THUMBPRINT_MAX		32	/* SHA-256 */

/* What each configured algorithm puts in the header and how it signs. */
struct jwt_alg {
	const char *name;			/* "alg" */
	const char *thumb_member;		/* header member holding the thumbprint */
	gnutls_digest_algorithm_t thumb_digest;	/* over the certificate's DER */
	gnutls_sign_algorithm_t sign;
};

/*
 * PS256 is GNUTLS_SIGN_RSA_PSS_RSAE_SHA256: PSS made with an ordinary
 * rsaEncryption key. For such a key GnuTLS (3.6 on) uses MGF1 with the
 * signing hash and a salt as long as the digest, 32 octets: what RFC 7518
 * 3.5 asks. GNUTLS_PRIVKEY_FLAG_RSA_PSS_FIXED_SALT_LENGTH would say so
 * explicitly but is newer than the 3.6 that configure accepts; the unit
 * test checks the salt length instead.
 */
static const struct jwt_alg jwt_algs[] = {
	[ASSERTION_RS256] = { "RS256", "x5t", GNUTLS_DIG_SHA1, GNUTLS_SIGN_RSA_SHA256 },
	[ASSERTION_PS256] = { "PS256", "x5t#S256", GNUTLS_DIG_SHA256,
	    GNUTLS_SIGN_RSA_PSS_RSAE_SHA256 },
};

/* Fill err for a failed GnuTLS call (rc < 0) naming the function; -1 then, else 0. */
static int
gtls(int rc, const char *fn, struct tm_err *err)
{
	if (rc >= 0)
		return 0;
	return tm_err_set(err, TM_ERR_INTERNAL, EX_SOFTWARE, "%s: %s", fn,
	    gnutls_strerror(rc));
}

static int
too_long(struct tm_err *err)
{
	return tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG,
	    "client assertion longer than %d octets: check client_id and the token URL",
	    JWT_MAX);
}

static void
datum_wipe_free(gnutls_datum_t *d)
{
	secret_wipe(d->data, d->size);
	free(d->data);
	d->data = NULL;
	d->size = 0;
}

/*
 * Read path (at most TM_SECRET_MAX octets, NUL-terminated) into *out, a
 * buffer the caller releases with datum_wipe_free. what is the config key
 * ("client_key") for messages. One fixed buffer: growing one would leave
 * copies of a key behind in freed memory.
 */
static int
read_pem(const char *path, const char *what, gnutls_datum_t *out, struct tm_err *err)
{
	unsigned char *buf = xmalloc(TM_SECRET_MAX + 1);
	size_t len = 0;
	ssize_t n;
	int fd, rc = -1;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG, "%s %s: %s", what, path, strerror(errno));
		goto out;
	}
	while (len <= TM_SECRET_MAX) {
		n = read(fd, buf + len, TM_SECRET_MAX + 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG, "%s %s: %s", what, path,
			    strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (len > TM_SECRET_MAX) {
		tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG, "%s %s: larger than %d octets",
		    what, path, TM_SECRET_MAX);
		tm_err_hint(err, "the file must hold one PEM certificate or key");
		goto out;
	}
	buf[len] = '\0';
	out->data = buf;
	out->size = (unsigned)len;
	buf = NULL;
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	if (buf != NULL) {
		secret_wipe(buf, TM_SECRET_MAX + 1);
		free(buf);
	}
	return rc;
}

/* The first certificate of the PEM file path into *out. */
static int
load_certificate(const char *path, gnutls_x509_crt_t *out, struct tm_err *err)
{
	gnutls_datum_t pem = { NULL, 0 };
	gnutls_x509_crt_t crt = NULL;
	int rc = -1, g;

	if (read_pem(path, "client_certificate", &pem, err) < 0 ||
	    gtls(gnutls_x509_crt_init(&crt), "gnutls_x509_crt_init", err) < 0)
		goto out;
	g = gnutls_x509_crt_import(crt, &pem, GNUTLS_X509_FMT_PEM);
	if (g < 0) {
		tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG,
		    "client_certificate %s: no PEM certificate (gnutls_x509_crt_import: %s)",
		    path, gnutls_strerror(g));
		tm_err_hint(err, "it must hold \"-----BEGIN CERTIFICATE-----\"; from DER: "
		    "openssl x509 -inform der -in %s -out cert.pem; from .pfx: "
		    "openssl pkcs12 -in %s -clcerts -nokeys -out cert.pem", path, path);
		goto out;
	}
	*out = crt;
	crt = NULL;
	rc = 0;
out:
	if (crt != NULL)
		gnutls_x509_crt_deinit(crt);
	datum_wipe_free(&pem);
	return rc;
}

/* PKCS#8 "ENCRYPTED PRIVATE KEY" or OpenSSL's legacy encrypted PKCS#1:
   told apart before import, as GnuTLS reports both as a generic failure. */
static bool
pem_is_encrypted(const gnutls_datum_t *pem)
{
	const char *text = (const char *)pem->data;

	return strstr(text, "-----BEGIN ENCRYPTED PRIVATE KEY-----") != NULL ||
	    strstr(text, "Proc-Type: 4,ENCRYPTED") != NULL;
}

static int
key_encrypted(const char *path, struct tm_err *err)
{
	tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG,
	    "client_key %s: the key is encrypted; tokenmail has no passphrase for it", path);
	tm_err_hint(err, "write an unencrypted copy that only you can read: "
	    "umask 077 && openssl pkcs8 -topk8 -nocrypt -in %s -out key.pem", path);
	return -1;
}

static int
key_unreadable(const char *path, int g, struct tm_err *err)
{
	tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG,
	    "client_key %s: no PEM private key (gnutls_privkey_import_x509_raw: %s)",
	    path, gnutls_strerror(g));
	tm_err_hint(err, "it must hold \"-----BEGIN PRIVATE KEY-----\" or "
	    "\"-----BEGIN RSA PRIVATE KEY-----\"; from .pfx: "
	    "openssl pkcs12 -in %s -nocerts -nodes -out key.pem", path);
	return -1;
}

/* Entra signs client assertions with RSA only (RS256 or PS256). */
static int
check_rsa(gnutls_privkey_t key, const char *path, struct tm_err *err)
{
	int pk = gnutls_privkey_get_pk_algorithm(key, NULL);
	const char *name;

	if (pk == GNUTLS_PK_RSA)
		return 0;
	name = pk < 0 ? NULL : gnutls_pk_get_name((gnutls_pk_algorithm_t)pk);
	tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG,
	    "client_key %s: the key is %s, not RSA; certificate credentials need RSA",
	    path, name != NULL ? name : "unknown");
	tm_err_hint(err, "create an RSA pair: openssl req -x509 -newkey rsa:2048 -nodes "
	    "-keyout key.pem -out cert.pem -days 730 -subj /CN=tokenmail");
	return -1;
}

/* The unencrypted RSA key (PKCS#1 or PKCS#8 PEM) of path into *out. */
static int
load_key(const char *path, gnutls_privkey_t *out, struct tm_err *err)
{
	gnutls_datum_t pem = { NULL, 0 };
	gnutls_privkey_t key = NULL;
	int rc = -1, g;

	if (read_pem(path, "client_key", &pem, err) < 0)
		goto out;
	if (pem_is_encrypted(&pem)) {
		key_encrypted(path, err);
		goto out;
	}
	if (gtls(gnutls_privkey_init(&key), "gnutls_privkey_init", err) < 0)
		goto out;
	g = gnutls_privkey_import_x509_raw(key, &pem, GNUTLS_X509_FMT_PEM, NULL, 0);
	if (g < 0) {
		key_unreadable(path, g, err);
		goto out;
	}
	if (check_rsa(key, path, err) < 0)
		goto out;
	*out = key;
	key = NULL;
	rc = 0;
out:
	if (key != NULL)
		gnutls_privkey_deinit(key);
	datum_wipe_free(&pem);
	return rc;
}

/* The DER SubjectPublicKeyInfo of key's public half or, with key NULL, of
   crt into *der (caller frees with gnutls_free). */
static int
public_key_der(gnutls_privkey_t key, gnutls_x509_crt_t crt, gnutls_datum_t *der,
    struct tm_err *err)
{
	gnutls_pubkey_t pub = NULL;
	int rc = -1;

	if (gtls(gnutls_pubkey_init(&pub), "gnutls_pubkey_init", err) < 0)
		goto out;
	if (key != NULL && gtls(gnutls_pubkey_import_privkey(pub, key, 0, 0),
	    "gnutls_pubkey_import_privkey", err) < 0)
		goto out;
	if (crt != NULL && gtls(gnutls_pubkey_import_x509(pub, crt, 0),
	    "gnutls_pubkey_import_x509", err) < 0)
		goto out;
	if (gtls(gnutls_pubkey_export2(pub, GNUTLS_X509_FMT_DER, der),
	    "gnutls_pubkey_export2", err) < 0)
		goto out;
	rc = 0;
out:
	if (pub != NULL)
		gnutls_pubkey_deinit(pub);
	return rc;
}

/*
 * The key must be the certificate's: otherwise Entra answers only
 * AADSTS700027 "signature validation failed", which does not say which of
 * the two files is wrong. Comparing public keys catches it here.
 */
static int
check_pair(const struct jwt_params *p, gnutls_privkey_t key, gnutls_x509_crt_t crt,
    struct tm_err *err)
{
	gnutls_datum_t a = { NULL, 0 }, b = { NULL, 0 };
	int rc = -1;

	if (public_key_der(key, NULL, &a, err) < 0 || public_key_der(NULL, crt, &b, err) < 0)
		goto out;
	if (a.size != b.size || memcmp(a.data, b.data, a.size) != 0) {
		tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG,
		    "client_key %s does not match client_certificate %s",
		    p->key_file, p->certificate_file);
		tm_err_hint(err, "the key must be the private half of the certificate "
		    "uploaded to the app registration");
		goto out;
	}
	rc = 0;
out:
	gnutls_free(a.data);
	gnutls_free(b.data);
	return rc;
}

/* Append s as a JSON string literal. Only '"', '\\' and control bytes need
   escaping (RFC 8259 7); UTF-8 passes through. */
static int
json_string(struct strbuf *b, const char *s)
{
	char piece[8];

	if (strbuf_append(b, "\"", 1) < 0)
		return -1;
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			(void)str_format(piece, sizeof(piece), "\\%c", c);
		else if (c < 0x20)
			(void)str_format(piece, sizeof(piece), "\\u%04x", c);
		else
			(void)str_format(piece, sizeof(piece), "%c", c);
		if (strbuf_append_str(b, piece) < 0)
			return -1;
	}
	return strbuf_append(b, "\"", 1);
}

/* A random (version 4) UUID in lowercase hex into out[UUID_TEXT_LEN + 1]:
   Entra asks for a GUID as jti. */
static void
uuid_v4(char *out)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char r[16];
	size_t i, o = 0;

	random_bytes(r, sizeof(r));
	r[6] = (unsigned char)((r[6] & 0x0f) | 0x40);	/* version 4 */
	r[8] = (unsigned char)((r[8] & 0x3f) | 0x80);	/* variant 10 (RFC 9562) */
	for (i = 0; i < sizeof(r); i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		out[o++] = hex[r[i] >> 4];
		out[o++] = hex[r[i] & 15];
	}
	out[o] = '\0';
}

/* The header JSON: alg, typ and the certificate thumbprint over its DER. */
static int
header_json(struct strbuf *json, gnutls_x509_crt_t crt, const struct jwt_alg *a,
    struct tm_err *err)
{
	gnutls_datum_t der = { NULL, 0 };
	unsigned char digest[THUMBPRINT_MAX];
	struct strbuf thumb;
	int rc = -1;

	strbuf_init(&thumb, 2 * THUMBPRINT_MAX);
	if (gtls(gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_DER, &der),
	    "gnutls_x509_crt_export2", err) < 0 ||
	    gtls(gnutls_hash_fast(a->thumb_digest, der.data, der.size, digest),
	    "gnutls_hash_fast", err) < 0)
		goto out;
	if (base64url_encode(&thumb, digest, gnutls_hash_get_len(a->thumb_digest)) < 0 ||
	    strbuf_appendf(json, "{\"alg\":\"%s\",\"typ\":\"JWT\",\"%s\":\"%s\"}",
	    a->name, a->thumb_member, thumb.data) < 0) {
		too_long(err);
		goto out;
	}
	rc = 0;
out:
	gnutls_free(der.data);
	strbuf_free(&thumb);
	return rc;
}

/* The claims JSON; -1 only when the cap is hit. */
static int
claims_json(struct strbuf *json, const struct jwt_params *p)
{
	char jti[UUID_TEXT_LEN + 1];
	long long now = (long long)p->now;

	uuid_v4(jti);
	if (strbuf_append_str(json, "{\"aud\":") < 0 || json_string(json, p->audience) < 0 ||
	    strbuf_append_str(json, ",\"iss\":") < 0 || json_string(json, p->client_id) < 0 ||
	    strbuf_append_str(json, ",\"sub\":") < 0 || json_string(json, p->client_id) < 0)
		return -1;
	return strbuf_appendf(json, ",\"jti\":\"%s\",\"nbf\":%lld,\"iat\":%lld,\"exp\":%lld}",
	    jti, now, now, now + JWT_LIFETIME_SECONDS);
}

/* Append base64url(header) "." base64url(claims) to jwt: what is signed. */
static int
append_signing_input(struct strbuf *jwt, const struct jwt_params *p, gnutls_x509_crt_t crt,
    struct tm_err *err)
{
	struct strbuf header, claims;
	int rc = -1;

	strbuf_init(&header, JWT_MAX);
	strbuf_init(&claims, JWT_MAX);
	if (header_json(&header, crt, &jwt_algs[p->alg], err) < 0)
		goto out;
	if (claims_json(&claims, p) < 0 ||
	    base64url_encode(jwt, header.data, header.len) < 0 ||
	    strbuf_append(jwt, ".", 1) < 0 ||
	    base64url_encode(jwt, claims.data, claims.len) < 0) {
		too_long(err);
		goto out;
	}
	rc = 0;
out:
	strbuf_free(&header);
	strbuf_free(&claims);
	return rc;
}

/* Sign what jwt holds and append "." base64url(signature). */
static int
append_signature(struct strbuf *jwt, gnutls_privkey_t key, const struct jwt_alg *a,
    struct tm_err *err)
{
	gnutls_datum_t input = { (unsigned char *)jwt->data, (unsigned)jwt->len };
	gnutls_datum_t sig = { NULL, 0 };
	int rc = -1;

	if (gtls(gnutls_privkey_sign_data2(key, a->sign, 0, &input, &sig),
	    "gnutls_privkey_sign_data2", err) < 0)
		goto out;
	if (strbuf_append(jwt, ".", 1) < 0 || base64url_encode(jwt, sig.data, sig.size) < 0) {
		too_long(err);
		goto out;
	}
	rc = 0;
out:
	gnutls_free(sig.data);
	return rc;
}

static int
check_params(const struct jwt_params *p, struct tm_err *err)
{
	if (p->certificate_file == NULL || p->key_file == NULL || p->client_id == NULL ||
	    p->audience == NULL || (p->alg != ASSERTION_RS256 && p->alg != ASSERTION_PS256))
		return tm_err_set(err, TM_ERR_INTERNAL, EX_SOFTWARE,
		    "jwt_client_assertion: incomplete parameters");
	return 0;
}

int
jwt_client_assertion(const struct jwt_params *p, char **out, struct tm_err *err)
{
	gnutls_x509_crt_t crt = NULL;
	gnutls_privkey_t key = NULL;
	struct strbuf jwt;
	int rc = -1;

	*out = NULL;
	strbuf_init(&jwt, JWT_MAX);
	if (check_params(p, err) < 0 ||
	    load_certificate(p->certificate_file, &crt, err) < 0 ||
	    load_key(p->key_file, &key, err) < 0 ||
	    check_pair(p, key, crt, err) < 0 ||
	    append_signing_input(&jwt, p, crt, err) < 0 ||
	    append_signature(&jwt, key, &jwt_algs[p->alg], err) < 0)
		goto out;
	*out = strbuf_take(&jwt);
	rc = 0;
out:
	/* A finished assertion is a bearer credential for its lifetime. */
	secret_wipe(jwt.data, jwt.len);
	strbuf_free(&jwt);
	if (key != NULL)
		gnutls_privkey_deinit(key);
	if (crt != NULL)
		gnutls_x509_crt_deinit(crt);
	return rc;
}
