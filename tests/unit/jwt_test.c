/*
 * jwt_test.c: client assertions made with a key pair generated at test
 * time. Each JWT is taken apart again: the header must be exact (with a
 * thumbprint computed here by another route), the claims exact but for the
 * random jti, and the signature must verify with the certificate's public
 * key, and fail once the claims are touched. Then the files that should be
 * refused: missing, not PEM, encrypted, EC, too big, or not a pair.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/abstract.h>
#include <gnutls/x509.h>

#include "base64.h"
#include "err.h"
#include "jwt.h"
#include "tap.h"
#include "tm_limits.h"
#include "util.h"

#define CLIENT_ID	"00000000-1111-2222-3333-444444444444"
#define AUDIENCE	"https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
#define PATH_SIZE	512

/* Every file the tests write, so cleanup can remove exactly those. */
static const char *const fixture_files[] = {
	"cert.pem", "key1.pem", "key8.pem", "other_key.pem", "other_first.pem",
	"chain.pem", "combined.pem", "enc.pem", "ec.pem", "garbage.pem", "big.pem",
	"empty.pem",
};

static struct {
	char dir[64];
	char key_snippet[24];	/* from the private part of the key's PEM: must never show */
	gnutls_x509_privkey_t key, other_key, ec_key;
	gnutls_x509_crt_t crt, other_crt;
} fx;

static void
cleanup(void)
{
	char path[PATH_SIZE];
	size_t i;

	if (fx.dir[0] == '\0')
		return;
	for (i = 0; i < sizeof(fixture_files) / sizeof(fixture_files[0]); i++) {
		(void)str_format(path, sizeof(path), "%s/%s", fx.dir, fixture_files[i]);
		(void)unlink(path);
	}
	(void)rmdir(fx.dir);
	fx.dir[0] = '\0';
}

/* Setup cannot go on without rc >= 0: stop the whole run. */
static void
must(int rc, const char *what)
{
	if (rc >= 0)
		return;
	printf("Bail out! %s: %s\n", what, gnutls_strerror(rc));
	cleanup();
	exit(1);
}

static void
path_of(char *out, const char *name)
{
	if (str_format(out, PATH_SIZE, "%s/%s", fx.dir, name) < 0)
		must(GNUTLS_E_SHORT_MEMORY_BUFFER, "path_of");
}

static void
write_file(const char *name, const void *a, size_t alen, const void *b, size_t blen)
{
	char path[PATH_SIZE];
	FILE *f;

	path_of(path, name);
	f = fopen(path, "w");
	if (f == NULL || (alen > 0 && fwrite(a, 1, alen, f) != alen) ||
	    (blen > 0 && fwrite(b, 1, blen, f) != blen) || fclose(f) != 0)
		must(GNUTLS_E_FILE_ERROR, path);
}

static gnutls_x509_privkey_t
make_key(gnutls_pk_algorithm_t pk, unsigned bits)
{
	gnutls_x509_privkey_t key;

	must(gnutls_x509_privkey_init(&key), "gnutls_x509_privkey_init");
	must(gnutls_x509_privkey_generate(key, pk, bits, 0), "gnutls_x509_privkey_generate");
	return key;
}

/* A self-signed certificate for key, valid from a minute ago for a day. */
static gnutls_x509_crt_t
make_cert(gnutls_x509_privkey_t key, unsigned char serial, const char *cn)
{
	gnutls_x509_crt_t crt;
	time_t now = time(NULL);

	must(gnutls_x509_crt_init(&crt), "gnutls_x509_crt_init");
	must(gnutls_x509_crt_set_version(crt, 3), "set_version");
	must(gnutls_x509_crt_set_serial(crt, &serial, 1), "set_serial");
	must(gnutls_x509_crt_set_activation_time(crt, now - 60), "set_activation_time");
	must(gnutls_x509_crt_set_expiration_time(crt, now + 86400), "set_expiration_time");
	must(gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, cn,
	    (unsigned)strlen(cn)), "set_dn_by_oid");
	must(gnutls_x509_crt_set_key(crt, key), "set_key");
	must(gnutls_x509_crt_sign2(crt, crt, key, GNUTLS_DIG_SHA256, 0), "crt_sign2");
	return crt;
}

enum key_form { KEY_PKCS1, KEY_PKCS8, KEY_PKCS8_ENCRYPTED };

static gnutls_datum_t
key_pem(gnutls_x509_privkey_t key, enum key_form form)
{
	gnutls_datum_t d = { NULL, 0 };

	if (form == KEY_PKCS1)
		must(gnutls_x509_privkey_export2(key, GNUTLS_X509_FMT_PEM, &d), "privkey_export2");
	else if (form == KEY_PKCS8)
		must(gnutls_x509_privkey_export2_pkcs8(key, GNUTLS_X509_FMT_PEM, NULL,
		    GNUTLS_PKCS_PLAIN, &d), "export2_pkcs8");
	else
		must(gnutls_x509_privkey_export2_pkcs8(key, GNUTLS_X509_FMT_PEM, "passphrase",
		    GNUTLS_PKCS_PBES2_AES_256, &d), "export2_pkcs8 encrypted");
	return d;
}

static gnutls_datum_t
cert_pem(gnutls_x509_crt_t crt)
{
	gnutls_datum_t d = { NULL, 0 };

	must(gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &d), "crt_export2");
	return d;
}

static void
write_datums(const char *name, gnutls_datum_t a, gnutls_datum_t b)
{
	write_file(name, a.data, a.size, b.data, b.size);
}

/* Write the key files and check each is the form it claims to be. */
static void
write_keys(gnutls_datum_t cert)
{
	gnutls_datum_t k1 = key_pem(fx.key, KEY_PKCS1), k8 = key_pem(fx.key, KEY_PKCS8);
	gnutls_datum_t enc = key_pem(fx.key, KEY_PKCS8_ENCRYPTED);
	gnutls_datum_t other = key_pem(fx.other_key, KEY_PKCS8), ec = key_pem(fx.ec_key, KEY_PKCS8);
	gnutls_datum_t none = { NULL, 0 };

	tap_ok(strstr((char *)k1.data, "-----BEGIN RSA PRIVATE KEY-----") != NULL,
	    "fixture: PKCS#1 key file");
	tap_ok(strstr((char *)k8.data, "-----BEGIN PRIVATE KEY-----") != NULL,
	    "fixture: PKCS#8 key file");
	tap_ok(strstr((char *)enc.data, "-----BEGIN ENCRYPTED PRIVATE KEY-----") != NULL,
	    "fixture: encrypted PKCS#8 key file");
	(void)str_copy_n(fx.key_snippet, sizeof(fx.key_snippet), (char *)k8.data + 900, 20);
	write_datums("key1.pem", k1, none);
	write_datums("key8.pem", k8, none);
	write_datums("enc.pem", enc, none);
	write_datums("other_key.pem", other, none);
	write_datums("ec.pem", ec, none);
	write_datums("combined.pem", cert, k8);
	gnutls_free(k1.data);
	gnutls_free(k8.data);
	gnutls_free(enc.data);
	gnutls_free(other.data);
	gnutls_free(ec.data);
}

static void
setup(void)
{
	static const char garbage[] = "-----BEGIN PRIVATE KEY-----\nTOPSECRETMATERIAL\n"
	    "-----END PRIVATE KEY-----\n";
	gnutls_datum_t cert, other;
	char *big;

	(void)str_copy(fx.dir, sizeof(fx.dir), "/tmp/jwt_test.XXXXXX");
	if (mkdtemp(fx.dir) == NULL) {
		fx.dir[0] = '\0';
		must(GNUTLS_E_FILE_ERROR, "mkdtemp");
	}
	fx.key = make_key(GNUTLS_PK_RSA, 2048);
	fx.other_key = make_key(GNUTLS_PK_RSA, 2048);
	fx.ec_key = make_key(GNUTLS_PK_ECDSA, GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1));
	fx.crt = make_cert(fx.key, 1, "tokenmail test");
	fx.other_crt = make_cert(fx.other_key, 2, "someone else");
	cert = cert_pem(fx.crt);
	other = cert_pem(fx.other_crt);
	write_datums("cert.pem", cert, (gnutls_datum_t){ NULL, 0 });
	write_datums("chain.pem", cert, other);
	write_datums("other_first.pem", other, cert);
	write_keys(cert);
	write_file("garbage.pem", garbage, sizeof(garbage) - 1, "", 0);
	write_file("empty.pem", "", 0, "", 0);
	big = xmalloc(TM_SECRET_MAX + 1);
	memset(big, 'A', TM_SECRET_MAX + 1);
	write_file("big.pem", big, TM_SECRET_MAX + 1, "", 0);
	free(big);
	gnutls_free(cert.data);
	gnutls_free(other.data);
}

/* Part n (0: header, 1: claims, 2: signature) of jwt, base64url-decoded
   into b; -1 if jwt does not have exactly three parts or a part is bad. */
static int
jwt_part(const char *jwt, int n, struct strbuf *b)
{
	const char *start = jwt, *dot;
	int i;

	for (i = 0; i < n; i++) {
		start = strchr(start, '.');
		if (start == NULL)
			return -1;
		start++;
	}
	dot = strchr(start, '.');
	if ((n < 2) != (dot != NULL))
		return -1;
	return base64url_decode(b, start, dot ? (size_t)(dot - start) : strlen(start));
}

static bool
is_uuid_v4(const char *s)
{
	size_t i;

	if (strlen(s) != 36 || s[14] != '4' || strchr("89ab", s[19]) == NULL)
		return false;
	for (i = 0; i < 36; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;

		if (dash ? s[i] != '-' : strchr("0123456789abcdef", s[i]) == NULL)
			return false;
	}
	return true;
}

/* base64url of the certificate's fingerprint, by gnutls_x509_crt_get_fingerprint
   (jwt.c hashes the exported DER itself). */
static void
thumbprint(gnutls_digest_algorithm_t dig, struct strbuf *out)
{
	unsigned char fp[64];
	size_t size = sizeof(fp);

	must(gnutls_x509_crt_get_fingerprint(fx.crt, dig, fp, &size), "get_fingerprint");
	must(base64url_encode(out, fp, size) == 0 ? 0 : GNUTLS_E_INTERNAL_ERROR, "encode");
}

static void
check_header(const char *jwt, enum assertion_alg alg, const char *label)
{
	bool pss = alg == ASSERTION_PS256;
	struct strbuf got, thumb, want;

	strbuf_init(&got, 4096);
	strbuf_init(&thumb, 4096);
	strbuf_init(&want, 4096);
	thumbprint(pss ? GNUTLS_DIG_SHA256 : GNUTLS_DIG_SHA1, &thumb);
	tap_is_int((long)thumb.len, pss ? 43 : 27, "%s: thumbprint length", label);
	(void)strbuf_appendf(&want, "{\"alg\":\"%s\",\"typ\":\"JWT\",\"%s\":\"%s\"}",
	    pss ? "PS256" : "RS256", pss ? "x5t#S256" : "x5t", thumb.data);
	tap_is_int(jwt_part(jwt, 0, &got), 0, "%s: header decodes", label);
	tap_is_str(got.data, want.data, "%s: header exact", label);
	strbuf_free(&got);
	strbuf_free(&thumb);
	strbuf_free(&want);
}

/* Check the claims of jwt made at now; the jti found is copied to jti[37]. */
static void
check_claims(const char *jwt, time_t now, char *jti, const char *label)
{
	struct strbuf got, want;
	const char *j;

	strbuf_init(&got, 4096);
	strbuf_init(&want, 4096);
	tap_is_int(jwt_part(jwt, 1, &got), 0, "%s: claims decode", label);
	j = got.data ? strstr(got.data, "\"jti\":\"") : NULL;
	(void)str_copy_n(jti, 37, j ? j + 7 : "", j ? strcspn(j + 7, "\"") : 0);
	tap_ok(is_uuid_v4(jti), "%s: jti is a random UUID [%s]", label, jti);
	(void)strbuf_appendf(&want, "{\"aud\":\"%s\",\"iss\":\"%s\",\"sub\":\"%s\",\"jti\":\"%s\","
	    "\"nbf\":%lld,\"iat\":%lld,\"exp\":%lld}", AUDIENCE, CLIENT_ID, CLIENT_ID, jti,
	    (long long)now, (long long)now, (long long)now + 600);
	tap_is_str(got.data, want.data, "%s: claims exact", label);
	strbuf_free(&got);
	strbuf_free(&want);
}

/* gnutls_pubkey_verify_data2 over the first two parts of jwt with the
   certificate's public key; tamper_at > 0 changes that character first. */
static int
verify(const char *jwt, gnutls_sign_algorithm_t algo, size_t tamper_at)
{
	char *copy = xstrdup(jwt);
	char *dot = strrchr(copy, '.');
	gnutls_pubkey_t pub;
	struct strbuf sig;
	gnutls_datum_t data, sd;
	int rc;

	strbuf_init(&sig, 4096);
	if (tamper_at > 0)
		copy[tamper_at] = copy[tamper_at] == 'A' ? 'B' : 'A';
	data = (gnutls_datum_t){ (unsigned char *)copy, (unsigned)(dot - copy) };
	must(base64url_decode(&sig, dot + 1, strlen(dot + 1)) == 0 ? 0 : GNUTLS_E_BASE64_DECODING_ERROR,
	    "decode signature");
	sd = (gnutls_datum_t){ (unsigned char *)sig.data, (unsigned)sig.len };
	must(gnutls_pubkey_init(&pub), "pubkey_init");
	must(gnutls_pubkey_import_x509(pub, fx.crt, 0), "pubkey_import_x509");
	rc = gnutls_pubkey_verify_data2(pub, algo, 0, &data, &sd);
	gnutls_pubkey_deinit(pub);
	strbuf_free(&sig);
	free(copy);
	return rc;
}

static void
check_signature(const char *jwt, enum assertion_alg alg, const char *label)
{
	gnutls_sign_algorithm_t right = alg == ASSERTION_PS256 ?
	    GNUTLS_SIGN_RSA_PSS_RSAE_SHA256 : GNUTLS_SIGN_RSA_SHA256;
	gnutls_sign_algorithm_t wrong = alg == ASSERTION_PS256 ?
	    GNUTLS_SIGN_RSA_SHA256 : GNUTLS_SIGN_RSA_PSS_RSAE_SHA256;
	struct strbuf sig;

	strbuf_init(&sig, 4096);
	tap_is_int(jwt_part(jwt, 2, &sig), 0, "%s: signature decodes", label);
	tap_is_int((long)sig.len, 256, "%s: signature is 2048 bits", label);
	tap_is_int(verify(jwt, right, 0), 0, "%s: signature verifies", label);
	tap_is_int(verify(jwt, wrong, 0), GNUTLS_E_PK_SIG_VERIFY_FAILED,
	    "%s: and not as the other algorithm", label);
	tap_is_int(verify(jwt, right, (size_t)(strchr(jwt, '.') - jwt) + 10),
	    GNUTLS_E_PK_SIG_VERIFY_FAILED, "%s: tampered claims fail", label);
	strbuf_free(&sig);
}

static char *
assertion(const char *cert, const char *key, enum assertion_alg alg, time_t now,
    struct tm_err *err)
{
	char cert_path[PATH_SIZE], key_path[PATH_SIZE];
	struct jwt_params p = { cert_path, key_path, alg, CLIENT_ID, AUDIENCE, now };
	static char unset[] = "unset";
	char *out = unset;

	path_of(cert_path, cert);
	path_of(key_path, key);
	tm_err_clear(err);
	if (jwt_client_assertion(&p, &out, err) < 0 && out != NULL) {
		tap_ok(0, "out is NULL after an error");
		out = NULL;
	}
	return out;
}

static void
test_assertion(const char *cert, const char *key, enum assertion_alg alg)
{
	char label[128], jti[37], jti2[37];
	time_t now = time(NULL);
	struct tm_err err;
	char *jwt, *jwt2;

	(void)str_format(label, sizeof(label), "%s %s+%s", alg == ASSERTION_PS256 ? "PS256" :
	    "RS256", cert, key);
	jwt = assertion(cert, key, alg, now, &err);
	tap_ok(jwt != NULL, "%s: made [%s]", label, err.msg);
	if (jwt == NULL)
		return;
	tap_ok(strspn(jwt, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.") ==
	    strlen(jwt), "%s: base64url only, no padding", label);
	check_header(jwt, alg, label);
	check_claims(jwt, now, jti, label);
	check_signature(jwt, alg, label);
	jwt2 = assertion(cert, key, alg, now, &err);
	check_claims(jwt2 ? jwt2 : "", now, jti2, label);
	tap_ok(strcmp(jti, jti2) != 0, "%s: a new jti each time", label);
	secret_free(jwt);
	secret_free(jwt2);
}

/*
 * The verifier above must pin PSS's salt to 32 octets, or "verifies" would
 * not prove jwt.c used 32: sign with a 48-octet salt and expect a failure.
 */
static void
test_pss_salt_is_checked(void)
{
	gnutls_datum_t data = { (unsigned char *)"a.b", 3 }, sig = { NULL, 0 };
	gnutls_privkey_t key;
	gnutls_x509_spki_t spki;
	gnutls_pubkey_t pub;

	must(gnutls_privkey_init(&key), "privkey_init");
	must(gnutls_privkey_import_x509(key, fx.key, 0), "privkey_import_x509");
	must(gnutls_x509_spki_init(&spki), "spki_init");
	gnutls_x509_spki_set_rsa_pss_params(spki, GNUTLS_DIG_SHA256, 48);
	must(gnutls_privkey_set_spki(key, spki, 0), "privkey_set_spki");
	must(gnutls_privkey_sign_data2(key, GNUTLS_SIGN_RSA_PSS_RSAE_SHA256, 0, &data, &sig),
	    "sign_data2");
	must(gnutls_pubkey_init(&pub), "pubkey_init");
	must(gnutls_pubkey_import_x509(pub, fx.crt, 0), "pubkey_import_x509");
	tap_is_int(gnutls_pubkey_verify_data2(pub, GNUTLS_SIGN_RSA_PSS_RSAE_SHA256, 0, &data, &sig),
	    GNUTLS_E_PK_SIG_VERIFY_FAILED, "PSS verification rejects a 48-octet salt");
	gnutls_pubkey_deinit(pub);
	gnutls_free(sig.data);
	gnutls_x509_spki_deinit(spki);
	gnutls_privkey_deinit(key);
}

static void
test_escaping(void)
{
	struct jwt_params p = { NULL, NULL, ASSERTION_RS256, "id\"\\", "https://x/\n\x01\xc3\xa9", 5 };
	char cert_path[PATH_SIZE], key_path[PATH_SIZE];
	static const char want[] = "{\"aud\":\"https://x/\\u000a\\u0001\xc3\xa9\","
	    "\"iss\":\"id\\\"\\\\\",\"sub\":\"id\\\"\\\\\",\"jti\":\"";
	struct strbuf claims;
	struct tm_err err;
	char *jwt = NULL;

	path_of(cert_path, "cert.pem");
	path_of(key_path, "key8.pem");
	p.certificate_file = cert_path;
	p.key_file = key_path;
	strbuf_init(&claims, 4096);
	tap_is_int(jwt_client_assertion(&p, &jwt, &err), 0, "escaping: made");
	if (jwt != NULL)
		(void)jwt_part(jwt, 1, &claims);
	tap_ok(claims.data != NULL && strncmp(claims.data, want, sizeof(want) - 1) == 0,
	    "escaping: quote, backslash and control bytes escaped, UTF-8 kept");
	tap_ok(claims.data != NULL && strstr(claims.data, "\"nbf\":5,\"iat\":5,\"exp\":605}") != NULL,
	    "escaping: times from params");
	strbuf_free(&claims);
	secret_free(jwt);
}

struct bad_case {
	const char *cert, *key;
	const char *what, *file;	/* the message starts "what DIR/file" */
	const char *rest;		/* and goes on with this */
	const char *hint;		/* in the hint, or NULL for any */
};

static const struct bad_case bad_cases[] = {
	{ "missing.pem", "key8.pem", "client_certificate", "missing.pem",
	  ": No such file or directory", NULL },
	{ "cert.pem", "missing.pem", "client_key", "missing.pem", ": No such file or directory", NULL },
	{ ".", "key8.pem", "client_certificate", ".", ": Is a directory", NULL },
	{ "garbage.pem", "key8.pem", "client_certificate", "garbage.pem",
	  ": no PEM certificate (gnutls_x509_crt_import: ", "openssl x509 -inform der" },
	{ "key8.pem", "key8.pem", "client_certificate", "key8.pem", ": no PEM certificate", NULL },
	{ "empty.pem", "key8.pem", "client_certificate", "empty.pem", ": no PEM certificate", NULL },
	{ "big.pem", "key8.pem", "client_certificate", "big.pem", ": larger than 65536 octets", NULL },
	{ "cert.pem", "garbage.pem", "client_key", "garbage.pem",
	  ": no PEM private key (gnutls_privkey_import_x509_raw: ", "BEGIN RSA PRIVATE KEY" },
	{ "cert.pem", "cert.pem", "client_key", "cert.pem", ": no PEM private key", NULL },
	{ "cert.pem", "empty.pem", "client_key", "empty.pem", ": no PEM private key", NULL },
	{ "cert.pem", "big.pem", "client_key", "big.pem", ": larger than 65536 octets", NULL },
	{ "cert.pem", "enc.pem", "client_key", "enc.pem", ": the key is encrypted",
	  "openssl pkcs8 -topk8 -nocrypt -in /" },
	{ "cert.pem", "ec.pem", "client_key", "ec.pem", ": the key is EC/ECDSA, not RSA",
	  "openssl req -x509 -newkey rsa:2048" },
	{ "cert.pem", "other_key.pem", "client_key", "other_key.pem", " does not match", NULL },
	{ "other_first.pem", "key8.pem", "client_key", "key8.pem", " does not match", NULL },
};

static bool
leaks_secret(const struct tm_err *e)
{
	const char *fields[] = { e->msg, e->hint, e->detail, e->server };
	size_t i;

	for (i = 0; i < 4; i++)
		if (strstr(fields[i], "TOPSECRET") != NULL ||
		    strstr(fields[i], fx.key_snippet) != NULL)
			return true;
	return false;
}

static void
test_bad_files(void)
{
	char want[1024], path[PATH_SIZE];
	struct tm_err err;
	size_t i;

	for (i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		const struct bad_case *c = &bad_cases[i];
		char *jwt = assertion(c->cert, c->key, ASSERTION_PS256, time(NULL), &err);

		path_of(path, c->file);
		(void)str_format(want, sizeof(want), "%s %s%s", c->what, path, c->rest);
		tap_ok(jwt == NULL && err.cls == TM_ERR_CONFIG && err.exit == EX_CONFIG,
		    "%s+%s: refused with EX_CONFIG", c->cert, c->key);
		tap_ok(strncmp(err.msg, want, strlen(want)) == 0, "%s+%s: message", c->cert, c->key);
		if (strncmp(err.msg, want, strlen(want)) != 0)
			tap_diag(err.msg, want);
		if (c->hint != NULL)
			tap_ok(strstr(err.hint, c->hint) != NULL, "%s+%s: hint [%s]", c->cert,
			    c->key, err.hint);
		tap_ok(!leaks_secret(&err), "%s+%s: no key material in the error", c->cert, c->key);
		secret_free(jwt);
	}
}

static void
test_mismatch_message(void)
{
	char want[1024], cert[PATH_SIZE], key[PATH_SIZE];
	struct tm_err err;

	path_of(cert, "cert.pem");
	path_of(key, "other_key.pem");
	(void)str_format(want, sizeof(want), "client_key %s does not match client_certificate %s",
	    key, cert);
	tap_ok(assertion("cert.pem", "other_key.pem", ASSERTION_RS256, 0, &err) == NULL,
	    "mismatch: refused");
	tap_is_str(err.msg, want, "mismatch: message names both files");
}

static void
test_bad_params(void)
{
	struct jwt_params p = { "x", "y", (enum assertion_alg)7, CLIENT_ID, AUDIENCE, 0 };
	struct tm_err err;
	char *jwt = NULL;

	tm_err_clear(&err);
	tap_is_int(jwt_client_assertion(&p, &jwt, &err), -1, "unknown alg: refused");
	tap_ok(jwt == NULL && err.exit == EX_SOFTWARE, "unknown alg: internal error");
}

int
main(void)
{
	setup();
	test_assertion("cert.pem", "key1.pem", ASSERTION_RS256);
	test_assertion("cert.pem", "key1.pem", ASSERTION_PS256);
	test_assertion("cert.pem", "key8.pem", ASSERTION_RS256);
	test_assertion("cert.pem", "key8.pem", ASSERTION_PS256);
	/* The first certificate counts; one file may hold both halves. */
	test_assertion("chain.pem", "key8.pem", ASSERTION_PS256);
	test_assertion("combined.pem", "combined.pem", ASSERTION_RS256);
	test_pss_salt_is_checked();
	test_escaping();
	test_bad_files();
	test_mismatch_message();
	test_bad_params();
	cleanup();
	gnutls_x509_crt_deinit(fx.crt);
	gnutls_x509_crt_deinit(fx.other_crt);
	gnutls_x509_privkey_deinit(fx.key);
	gnutls_x509_privkey_deinit(fx.other_key);
	gnutls_x509_privkey_deinit(fx.ec_key);
	return tap_done();
}
