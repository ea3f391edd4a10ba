/*
 * jwt.h: the signed JWT client assertion that proves an app's identity to
 * the token endpoint with a certificate instead of a secret (RFC 7523;
 * Microsoft "certificate credentials"). Signed with GnuTLS: RS256 with the
 * certificate's SHA-1 thumbprint in "x5t" (the long-proven form), or PS256
 * with the SHA-256 thumbprint in "x5t#S256". Claims: aud = token URL,
 * iss = sub = client_id, a fresh random jti, nbf = iat = now, exp = now +
 * JWT_LIFETIME_SECONDS.
 */
#ifndef TM_JWT_H
#define TM_JWT_H

#include <time.h>

#include "config.h"
#include "err.h"

#define JWT_LIFETIME_SECONDS 600

struct jwt_params {
	const char *certificate_file;	/* PEM certificate (the first one is used) */
	const char *key_file;		/* PEM private key (RSA; PKCS#1 or PKCS#8) */
	enum assertion_alg alg;		/* ASSERTION_RS256 (x5t, SHA-1) | ASSERTION_PS256
					   (x5t#S256; PSS, MGF1-SHA256, 32-octet salt) */
	const char *client_id;		/* iss and sub */
	const char *audience;		/* aud: the token endpoint URL */
	time_t now;			/* nbf and iat (exp = now + JWT_LIFETIME_SECONDS) */
};

/*
 * Build and sign the assertion. Returns 0 with *out a heap string
 * ("header.claims.signature", base64url without padding; a bearer
 * credential until exp: free with secret_free), or -1 with *out NULL and
 * err:
 *   TM_ERR_CONFIG/EX_CONFIG, the message naming the config key and file
 *   ("client_key /etc/tm/key.pem: ..."), with a hint where one helps:
 *   a file that cannot be read or exceeds TM_SECRET_MAX; no PEM
 *   certificate; no PEM key; an encrypted key (hint: openssl pkcs8
 *   -nocrypt); a key that is not RSA; "client_key F does not match
 *   client_certificate G" when the public keys differ.
 *   TM_ERR_INTERNAL/EX_SOFTWARE "gnutls_fn: gnutls_strerror" when GnuTLS
 *   fails otherwise, or for incomplete params.
 * The key file may be PKCS#1 or PKCS#8 and may also hold the certificate;
 * the certificate file may hold a chain (the first certificate is the one
 * registered). Both files are read on every call; the key file's bytes
 * are wiped and no key material appears in err. File modes are not
 * checked here (config_check_secret_files does that).
 */
int jwt_client_assertion(const struct jwt_params *p, char **out, struct tm_err *err);

#endif
