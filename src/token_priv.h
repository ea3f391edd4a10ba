/*
 * token_priv.h: between token.c (grants, requests, the flow),
 * token_cache.c (the per-account cache file and its lock) and
 * token_error.c (what the endpoint's refusals mean). Not for other
 * modules: what they may have is in token.h.
 */
#ifndef TM_TOKEN_PRIV_H
#define TM_TOKEN_PRIV_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "err.h"
#include "tm_limits.h"
#include "token.h"

/*
 * One account's cache entry while its lock is held. What was read is kept
 * only if it belongs to the configured endpoint and client: the access
 * token also needs the same scope; the refresh token does not (a refresh
 * token may be redeemed for any scope the user consented to).
 */
struct token_cache {
	int dir_fd;		/* the checked cache directory, or -1 */
	int lock_fd;		/* <account>.lock, flock'ed, or -1 */
	char name[TM_NAME_MAX + 8];	/* "<account>.json", inside dir_fd */
	char path[TM_PATH_MAX];	/* cache_dir/name, for messages */
	char *access_token;	/* secret (secret_free), or NULL */
	time_t expires_at;	/* of access_token */
	char *refresh_token;	/* secret (secret_free), or NULL */
};

/*
 * Check cache_dir (created 0700 with its missing parents when it does not
 * exist, except in setgid mode), take the account's lock (waiting for a
 * process that holds it, up to a deadline) and read its entry into tc. A
 * damaged entry is discarded with a warning. Errors: EX_CONFIG (directory
 * not ours or open to others, a symlink or non-file in place of the cache
 * file), EX_TEMPFAIL (the lock stayed busy), EX_IOERR. token_cache_close
 * must follow either way.
 */
int token_cache_open(const struct token_context *c, struct token_cache *tc,
    struct tm_err *err);

/* Replace the entry with tc's tokens, tied to the account's token URL,
   client id and scope: a temp file, fsync, rename, fsync of the directory.
   The lock must be held. Errors: EX_IOERR. */
int token_cache_write(const struct token_context *c, const struct token_cache *tc,
    struct tm_err *err);

/* Release the lock and wipe the tokens; safe after a failed open. */
void token_cache_close(struct token_cache *tc);

/*
 * token_endpoint_error with the account named in a "run tokenmail
 * authorize" hint; *refused is true when body was an OAuth error document
 * (the caller says "token endpoint refused account A"), false for a broken
 * answer ("cannot get a token for account A"). Always returns -1.
 */
int token_refusal(long status, const char *body, size_t len, const char *account,
    bool *refused, struct tm_err *err);

/* s is usable as a token: 1 to TM_SECRET_MAX visible ASCII characters, so it
   can go into an HTTP header or an SMTP line without injecting anything. */
bool token_text_ok(const char *s);

#endif
