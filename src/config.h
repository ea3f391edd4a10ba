/*
 * config.h: the YAML configuration (SPEC section 3) loaded with libyaml into
 * plain structs. Loading is table-driven: every key has a type and a
 * validator; unknown keys are errors (a typo must not silently disable a
 * security setting); every error names file:line:column and the key, and
 * all of them are reported, not just the first. A second pass checks rules
 * across keys (one secret source, tls: none only to loopback, defaults by
 * method and grant). No secret is read here: only where secrets live.
 */
#ifndef TM_CONFIG_H
#define TM_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "aliases.h"
#include "err.h"
#include "log.h"

enum account_method { METHOD_SMTP, METHOD_GRAPH };
enum smtp_tls { SMTP_TLS_STARTTLS, SMTP_TLS_IMPLICIT, SMTP_TLS_NONE };
enum smtp_auth { SMTP_AUTH_XOAUTH2, SMTP_AUTH_OAUTHBEARER, SMTP_AUTH_NONE };
enum rewrite_from { REWRITE_FROM_AUTO, REWRITE_FROM_ALWAYS, REWRITE_FROM_NEVER };
enum token_grant { GRANT_CLIENT_CREDENTIALS, GRANT_REFRESH_TOKEN };
enum assertion_alg { ASSERTION_RS256, ASSERTION_PS256 };

struct smtp_settings {
	char *host;		/* default smtp.office365.com */
	unsigned port;		/* default 587 (starttls), 465 (tls), 25 (none) */
	enum smtp_tls tls;	/* "starttls" (default) | "tls" | "none" (loopback only) */
	enum smtp_auth auth;	/* "xoauth2" (default) | "oauthbearer" | "none" */
	char *user;		/* mailbox that authenticates; default: the account's from */
};

struct graph_settings {
	char *url;		/* default https://graph.microsoft.com/v1.0 */
	bool save_to_sent_items; /* default true; false is refused: Graph saves
				    every message sent in MIME form to Sent Items */
	unsigned max_size;	/* largest message sent (octets as transmitted);
				   default and ceiling TM_GRAPH_MESSAGE_MAX */
};

struct account {
	char *name;
	char **senders;		/* exact addresses and "*@domain"-style patterns */
	size_t nsenders;	/* default: [from] */
	char *from;		/* the mailbox that sends; default senders[0] if exact */
	enum rewrite_from rewrite_from;
	char **allowed_users;	/* login names and "%group"; NULL: anyone */
	size_t nallowed_users;
	enum account_method method;	/* default smtp */
	enum token_grant grant;		/* default client_credentials */
	char *tenant;
	char *client_id;
	char *client_secret;		/* inline secret, or NULL */
	char *client_secret_file;
	char *client_secret_command;
	char *client_certificate;	/* PEM, with client_key */
	char *client_key;
	enum assertion_alg client_assertion_alg; /* "RS256" (default, x5t) | "PS256" (x5t#S256) */
	char *client_assertion_file;	/* federated credential, re-read per request */
	char *refresh_token_file;	/* delegated: the first refresh token */
	char *authority;	/* default https://login.microsoftonline.com */
	char *token_url;	/* as configured, or NULL: then config_token_url()
				   gives {authority}/{tenant}/oauth2/v2.0/token */
	char *device_code_url;	/* as configured, or NULL: then
				   config_device_code_url() gives the token URL
				   with its final "/token" replaced by "/devicecode" */
	char *authorize_url;	/* as configured, or NULL: the same with
				   "/authorize" (config_authorize_url()) */
	char *scope;		/* as configured, else the default by method and
				   grant (SPEC 3, config_scope()) filled in */
	struct smtp_settings smtp;
	struct graph_settings graph;
	unsigned line;		/* where the account is defined, for messages */
	unsigned column;
	char *token_url_computed;	/* private to config.c: what config_token_url()
					   returns when token_url is NULL */
	char *device_code_url_computed;	/* private: config_device_code_url()'s default */
	char *authorize_url_computed;	/* private: config_authorize_url()'s default */
};

struct config {
	char *path;		/* the file it came from */
	char *tls_ca_file;
	char *cache_dir;	/* default ~/.cache/tokenmail (expanded) */
	enum log_target log;	/* default syslog */
	char *log_file;		/* when log is a path */
	char *dead_letter;	/* path (expanded "~/"), or NULL for "none";
				   default ~/dead.letter */
	struct alias_table aliases;	/* inline map, or loaded from aliases_file */
	char *aliases_file;	/* when aliases: names an aliases(5) file */
	unsigned retry_attempts;	/* default 3 */
	unsigned retry_max_seconds;	/* default 30 */
	char *https_proxy;
	unsigned timeout_seconds;	/* 1-600, default 60: the limit of each network
					   request (token endpoint, Graph) and the cap
					   of every SMTP per-command timeout */
	char *default_account;	/* NULL: a sender no account claims is refused */
	struct account *accounts;
	size_t naccounts;
	bool has_inline_secret;	/* some account has client_secret inline */
};
/*
 * After a successful load every account has: from (qualified), senders
 * (at least one), authority, smtp.host/port/user, graph.url and scope set,
 * and config_token_url() is not NULL unless the account needs no token
 * (method smtp with auth: none). An account with token_url has its scope
 * from the file (the default scopes are Microsoft's). cache_dir and
 * dead_letter hold their defaults unless the file says otherwise ("none"
 * leaves dead_letter NULL); timeout_seconds is 60 unless given.
 */

struct config_params {
	const char *home;	/* for "~/" and the defaults; NULL: no expansion */
	bool check_file_modes;	/* refuse an inline secret in a file others can read */
	uid_t uid;		/* who must own secret-holding files (besides root) */
	bool group_readable_ok;	/* setgid mode (SPEC 3, 9): a secret-holding file
				   owned by root and group `group` may also be
				   readable (not writable) by that group: 0640 */
	gid_t group;		/* the setgid group, when group_readable_ok */
};

/*
 * Decide which file to load (SPEC 3): explicit (-C) if not NULL (whether
 * it exists or not: config_load reports that); else, when use_user_config,
 * $XDG_CONFIG_HOME/tokenmail/config.yaml if xdg_config_home is an absolute
 * path, otherwise home/.config/tokenmail/config.yaml, if that file exists;
 * else system_path if it exists. Writes it to out[size]. Returns 0, or -1
 * with err (EX_CONFIG) when nothing usable exists or the name does not fit.
 */
int config_find(const char *explicit_path, const char *xdg_config_home,
    const char *home, bool use_user_config, const char *system_path,
    char *out, size_t size, struct tm_err *err);

/*
 * Load, parse and validate path into cfg (zeroed by this call). path may be
 * a symlink but must end at a regular file of at most TM_CONFIG_FILE_MAX
 * bytes. Loads an aliases file the config names. With p->check_file_modes,
 * an inline client_secret in a file that group or others can access (or
 * that someone other than p->uid or root owns) is refused. Returns 0, or
 * -1 with err (TM_ERR_CONFIG, EX_CONFIG): msg is the first problem
 * ("FILE:LINE:COL: key 'a.b': must be ..."), detail the others (up to
 * TM_CONFIG_ERRORS_MAX in all). cfg must be released with config_free()
 * either way.
 */
int config_load(const char *path, const struct config_params *p,
    struct config *cfg, struct tm_err *err);

/* The same from a buffer (name is used in messages): for tests and fuzzers.
   File-mode checks are skipped; an aliases file is not loaded. */
int config_parse_buffer(const char *name, const char *text, size_t len,
    const struct config_params *p, struct config *cfg, struct tm_err *err);

/* The account called name (exact, case matters), or NULL. Points into cfg. */
const struct account *config_account(const struct config *cfg, const char *name);

/*
 * Check the files that hold the account's secrets (client_secret_file,
 * client_key, refresh_token_file), following symlinks: each that exists
 * must be a regular file owned by p->uid or root and not readable or
 * writable by group or others (p->group_readable_ok relaxes this as its
 * comment says). A file that does not exist yet is skipped. Returns 0, or
 * -1 with err (EX_CONFIG) naming the file, its mode and the fix.
 */
int config_check_secret_files(const struct account *a, const struct config_params *p,
    struct tm_err *err);

/* Token endpoint URL and scope for a, with the defaults applied; they live
   as long as the config. config_token_url() is NULL when neither token_url
   nor tenant is set (an account that needs no token). */
const char *config_token_url(const struct account *a);
const char *config_scope(const struct account *a);

/*
 * The endpoints of the delegated sign-in (`tokenmail authorize`): the
 * configured device_code_url / authorize_url, else the token URL with its
 * final "/token" replaced by "/devicecode" / "/authorize" (Microsoft's
 * layout: .../oauth2/v2.0/token). NULL when neither is configured and the
 * token URL does not end in "/token" (or there is none). They live as long
 * as the config. Other providers put them elsewhere (Google: device code
 * https://oauth2.googleapis.com/device/code, authorize
 * https://accounts.google.com/o/oauth2/v2/auth): configure them.
 */
const char *config_device_code_url(const struct account *a);
const char *config_authorize_url(const struct account *a);

/* Names for messages and --dry-run: "smtp", "starttls", "xoauth2", ... */
const char *config_method_name(enum account_method m);
const char *config_tls_name(enum smtp_tls t);
const char *config_auth_name(enum smtp_auth a);

/* Free everything cfg holds (inline secrets are wiped first) and zero it. */
void config_free(struct config *cfg);

#endif
