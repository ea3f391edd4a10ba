/*
 * config_priv.h: what the three parts of the config loader share, and
 * nothing any other module needs. config.c holds the public API and the
 * file handling, config_yaml.c walks the libyaml tree through tables of
 * keys, config_check.c is the pass across keys that runs after it (SPEC 3,
 * STYLE 13). The loader state lives here, not in struct config, so the
 * public structs carry no parsing leftovers.
 */
#ifndef TM_CONFIG_PRIV_H
#define TM_CONFIG_PRIV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* YAML nodes one load may visit: aliases (*x) are followed, so a small file
   could otherwise name the same big node many times. */
#define CFG_NODES_MAX	100000

/* Where a node starts in the file: 1-based; line 0 means "no position". */
struct cfg_pos {
	unsigned line;
	unsigned col;
};

/* Top-level keys, retry's included; the walker's tables use these as bits. */
enum cfg_top_key {
	TK_TLS_CA_FILE, TK_CACHE_DIR, TK_LOG, TK_DEAD_LETTER, TK_ALIASES,
	TK_RETRY, TK_RETRY_ATTEMPTS, TK_RETRY_MAX_SECONDS, TK_HTTPS_PROXY, TK_TIMEOUT,
	TK_DEFAULT_ACCOUNT, TK_ACCOUNTS,
	TK_COUNT
};

/* Account keys, those of its smtp: and graph: mappings included. */
enum cfg_acct_key {
	AK_SENDERS, AK_FROM, AK_REWRITE_FROM, AK_ALLOWED_USERS, AK_METHOD,
	AK_GRANT, AK_TENANT, AK_CLIENT_ID, AK_CLIENT_SECRET, AK_CLIENT_SECRET_FILE,
	AK_CLIENT_SECRET_COMMAND, AK_CLIENT_CERTIFICATE, AK_CLIENT_KEY,
	AK_CLIENT_ASSERTION_ALG, AK_CLIENT_ASSERTION_FILE, AK_REFRESH_TOKEN_FILE,
	AK_AUTHORITY, AK_TOKEN_URL, AK_DEVICE_CODE_URL, AK_AUTHORIZE_URL, AK_SCOPE,
	AK_SMTP, AK_SMTP_HOST, AK_SMTP_PORT, AK_SMTP_TLS, AK_SMTP_AUTH, AK_SMTP_USER,
	AK_GRAPH, AK_GRAPH_URL, AK_GRAPH_SAVE_TO_SENT_ITEMS, AK_GRAPH_MAX_SIZE,
	AK_COUNT
};

#define CFG_KEYS_MAX	32

/*
 * Which keys of one mapping level were given, and where their values are.
 * A key whose value was refused still counts as given, so the pass across
 * keys does not add "missing" errors on top of the type error.
 */
struct cfg_keys {
	uint32_t set;
	struct cfg_pos at;			/* the mapping itself (or its name) */
	struct cfg_pos pos[CFG_KEYS_MAX];	/* key k's value */
};

/* Loader state kept per account, parallel to cfg->accounts. */
struct cfg_acct {
	struct cfg_keys keys;
	struct cfg_pos *sender_pos;	/* where senders[i] is */
};

struct cfg_loader {
	const char *name;		/* file name for messages */
	const struct config_params *p;
	struct config *cfg;
	struct tm_err *err;
	unsigned nerrors;		/* all of them, also those not kept */
	unsigned hidden;		/* those that did not fit in err */
	unsigned long nodes;		/* visited, against CFG_NODES_MAX */
	struct cfg_keys top;
	struct cfg_acct *acct;		/* [cfg->naccounts] */
	struct cfg_pos aliases_pos;	/* the aliases: value */
};

/* Record an error "NAME:LINE:COL: text" (or "NAME: text" when at.line is
   0): the first goes to err->msg, the next ones to err->detail. */
void cfg_error(struct cfg_loader *l, struct cfg_pos at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The same with "key 'KEY': " before the text. */
void cfg_key_error(struct cfg_loader *l, struct cfg_pos at, const char *key,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Set the hint, but only while the first error is the only one: a hint
   must belong to the message printed above it. */
void cfg_hint(struct cfg_loader *l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * Parse text with libyaml and fill l->cfg through the key tables. Returns
 * 0 when a tree was walked (errors may have been recorded), -1 when there
 * was nothing to walk (YAML syntax error, empty file: also recorded).
 */
int cfg_yaml_walk(struct cfg_loader *l, const char *text, size_t len);

/* Names of the enum values, indexed by value, NULL-terminated. */
extern const char *const cfg_method_names[];
extern const char *const cfg_tls_names[];
extern const char *const cfg_auth_names[];

/* The key's path inside an account, e.g. "smtp.port" for AK_SMTP_PORT. */
const char *cfg_acct_key_name(enum cfg_acct_key k);

/* The pass across keys: rules between keys, then the defaults. */
void cfg_check(struct cfg_loader *l);

/* v with a leading "~/" (or a lone "~") replaced by home; a copy of v when
   home is NULL or v does not start so. Owned by the caller. */
char *cfg_expand_home(const char *home, const char *v);

/* true for localhost, 127.0.0.0/8 and ::1 (with or without brackets). */
bool cfg_host_is_loopback(const char *host);

#endif
