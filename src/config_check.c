/*
 * config_check.c: the pass across keys that runs once the YAML walk has
 * filled struct config (STYLE 13): one credential source, certificate with
 * key, tls: none only to loopback, default_account naming an account, no
 * sender claimed by two accounts, a scope wherever token_url is given;
 * then the defaults that depend on other keys (from/senders, port by tls,
 * user by from, scope by method and grant, the token URL and the sign-in
 * URLs next to it). Errors point at the value that breaks the rule, or at
 * the account when a key is missing.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "address.h"
#include "config_priv.h"
#include "tm_limits.h"
#include "util.h"

#define DEFAULT_AUTHORITY	"https://login.microsoftonline.com"
#define DEFAULT_SMTP_HOST	"smtp.office365.com"
#define DEFAULT_GRAPH_URL	"https://graph.microsoft.com/v1.0"
#define DEFAULT_CACHE_DIR	"~/.cache/tokenmail"
#define DEFAULT_DEAD_LETTER	"~/dead.letter"
#define DEFAULT_RETRY_ATTEMPTS	3
#define DEFAULT_RETRY_MAX_SECONDS 30
#define DEFAULT_TIMEOUT_SECONDS	60

/* Means "the account itself" where a key is expected. */
#define ACCOUNT_ITSELF	(-1)

/* One sender of one account, for finding senders two accounts claim. */
struct sender_ref {
	char *key;		/* lowercased */
	size_t account;
	size_t index;
};

static bool
key_set(const struct cfg_loader *l, size_t i, int k)
{
	return k >= 0 && (l->acct[i].keys.set & (UINT32_C(1) << k)) != 0;
}

/* An error about key k of account i (or the account, ACCOUNT_ITSELF):
   at k's value when it was given, else at the account's name. */
static void __attribute__((format(printf, 4, 5)))
acct_error(struct cfg_loader *l, size_t i, int k, const char *fmt, ...)
{
	const struct cfg_keys *keys = &l->acct[i].keys;
	struct cfg_pos at = key_set(l, i, k) ? keys->pos[k] : keys->at;
	char path[TM_NAME_MAX + 64], text[400];
	va_list ap;

	if (k == ACCOUNT_ITSELF)
		(void)str_format(path, sizeof(path), "accounts.%s", l->cfg->accounts[i].name);
	else
		(void)str_format(path, sizeof(path), "accounts.%s.%s", l->cfg->accounts[i].name,
		    cfg_acct_key_name((enum cfg_acct_key)k));
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	cfg_key_error(l, at, path, "%s", text);
}

bool
cfg_host_is_loopback(const char *host)
{
	char bare[TM_DOMAIN_MAX + 1];
	struct in_addr a4;
	struct in6_addr a6;
	size_t n = strlen(host);

	if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
		if (str_copy_n(bare, sizeof(bare), host + 1, n - 2) < 0)
			return false;
		host = bare;
	}
	if (str_eq_nocase(host, "localhost") || str_eq_nocase(host, "localhost."))
		return true;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, host, &a6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&a6) ||
		    (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
	return false;
}

/* ---- from and senders ---- */

static void
check_from_senders(struct cfg_loader *l, size_t i)
{
	struct account *a = &l->cfg->accounts[i];
	struct cfg_acct *st = &l->acct[i];

	if (!key_set(l, i, AK_FROM) && !key_set(l, i, AK_SENDERS)) {
		acct_error(l, i, ACCOUNT_ITSELF,
		    "needs from: (the mailbox that sends) or senders:");
		return;
	}
	if (!key_set(l, i, AK_FROM) && a->nsenders > 0) {
		if (strchr(a->senders[0], '*'))
			acct_error(l, i, AK_FROM, "required when the first sender is a pattern "
			    "('%.80s')", a->senders[0]);
		else
			a->from = xstrdup(a->senders[0]);
	}
	if (!key_set(l, i, AK_SENDERS) && a->from) {
		a->senders = xcalloc(1, sizeof(char *));
		a->senders[0] = xstrdup(a->from);
		a->nsenders = 1;
		st->sender_pos = xcalloc(1, sizeof(struct cfg_pos));
		st->sender_pos[0] = st->keys.pos[AK_FROM];
	}
}

/* ---- credentials ---- */

/* The credential keys of client_credentials; client_key goes with the certificate. */
static const enum cfg_acct_key credential_keys[] = {
	AK_CLIENT_SECRET, AK_CLIENT_SECRET_FILE, AK_CLIENT_SECRET_COMMAND,
	AK_CLIENT_CERTIFICATE, AK_CLIENT_ASSERTION_FILE
};
#define NCREDENTIAL_KEYS (sizeof(credential_keys) / sizeof(credential_keys[0]))
/* Of those, the client secret sources (the first three). */
#define NSECRET_KEYS 3

static bool
pos_before(struct cfg_pos a, struct cfg_pos b)
{
	return a.line < b.line || (a.line == b.line && a.col < b.col);
}

/* Of the first n credential keys, refuse every one given after the first
   in the file; returns how many were given. */
static unsigned
count_sources(struct cfg_loader *l, size_t i, size_t n, const char *what)
{
	const struct cfg_keys *keys = &l->acct[i].keys;
	int first = ACCOUNT_ITSELF;
	unsigned count = 0;
	size_t j;

	for (j = 0; j < n; j++) {
		if (!key_set(l, i, credential_keys[j]))
			continue;
		count++;
		if (first == ACCOUNT_ITSELF ||
		    pos_before(keys->pos[credential_keys[j]], keys->pos[first]))
			first = credential_keys[j];
	}
	for (j = 0; j < n && count > 1; j++)
		if (key_set(l, i, credential_keys[j]) && (int)credential_keys[j] != first)
			acct_error(l, i, credential_keys[j], "only one %s is allowed, and %s "
			    "is given too", what, cfg_acct_key_name((enum cfg_acct_key)first));
	return count;
}

static void
check_certificate_pair(struct cfg_loader *l, size_t i)
{
	bool cert = key_set(l, i, AK_CLIENT_CERTIFICATE), key = key_set(l, i, AK_CLIENT_KEY);

	if (cert && !key)
		acct_error(l, i, AK_CLIENT_CERTIFICATE, "needs client_key (the certificate's "
		    "private key)");
	if (key && !cert)
		acct_error(l, i, AK_CLIENT_KEY, "needs client_certificate");
	if (key_set(l, i, AK_CLIENT_ASSERTION_ALG) && !cert)
		acct_error(l, i, AK_CLIENT_ASSERTION_ALG, "applies only with client_certificate");
}

static void
check_client_credentials(struct cfg_loader *l, size_t i)
{
	static const enum cfg_acct_key delegated_only[] = {
		AK_REFRESH_TOKEN_FILE, AK_DEVICE_CODE_URL, AK_AUTHORIZE_URL
	};
	const struct account *a = &l->cfg->accounts[i];
	size_t j;

	if (count_sources(l, i, NCREDENTIAL_KEYS, "credential source") == 0)
		acct_error(l, i, ACCOUNT_ITSELF, "client_credentials needs one credential: "
		    "client_secret, client_secret_file, client_secret_command, "
		    "client_certificate with client_key, or client_assertion_file");
	check_certificate_pair(l, i);
	if (a->tenant && a->token_url == NULL && (str_eq_nocase(a->tenant, "common") ||
	    str_eq_nocase(a->tenant, "organizations") || str_eq_nocase(a->tenant, "consumers")))
		acct_error(l, i, AK_TENANT, "client_credentials needs the tenant's id or domain, "
		    "not '%s'", a->tenant);
	for (j = 0; j < sizeof(delegated_only) / sizeof(delegated_only[0]); j++)
		if (key_set(l, i, delegated_only[j]))
			acct_error(l, i, delegated_only[j], "applies only with grant: refresh_token");
}

static void
check_refresh_token(struct cfg_loader *l, size_t i)
{
	static const enum cfg_acct_key refused[] = {
		AK_CLIENT_CERTIFICATE, AK_CLIENT_KEY, AK_CLIENT_ASSERTION_ALG,
		AK_CLIENT_ASSERTION_FILE
	};
	size_t j;

	(void)count_sources(l, i, NSECRET_KEYS, "client secret source");
	for (j = 0; j < sizeof(refused) / sizeof(refused[0]); j++)
		if (key_set(l, i, refused[j]))
			acct_error(l, i, refused[j], "does not apply with grant: refresh_token "
			    "(a delegated account may have a client secret only)");
}

/* Token settings matter unless the account needs no token at all. */
static void
check_token_settings(struct cfg_loader *l, size_t i)
{
	const struct account *a = &l->cfg->accounts[i];

	if (a->method == METHOD_SMTP && a->smtp.auth == SMTP_AUTH_NONE)
		return;
	if (!key_set(l, i, AK_CLIENT_ID))
		acct_error(l, i, AK_CLIENT_ID, "required (the application's id)");
	if (!key_set(l, i, AK_TENANT) && !key_set(l, i, AK_TOKEN_URL))
		acct_error(l, i, ACCOUNT_ITSELF, "needs tenant: (or token_url:)");
	if (a->token_url && !key_set(l, i, AK_SCOPE)) {
		acct_error(l, i, AK_SCOPE, "required with token_url: the default scopes are "
		    "Microsoft's");
		cfg_hint(l, "set scope: to what the provider documents (Gmail: "
		    "https://mail.google.com/)");
	}
	if (a->grant == GRANT_CLIENT_CREDENTIALS)
		check_client_credentials(l, i);
	else
		check_refresh_token(l, i);
}

/* ---- transport ---- */

static void
check_transport(struct cfg_loader *l, size_t i)
{
	const struct account *a = &l->cfg->accounts[i];
	const char *host = a->smtp.host ? a->smtp.host : DEFAULT_SMTP_HOST;

	if (a->method == METHOD_GRAPH && key_set(l, i, AK_SMTP))
		acct_error(l, i, AK_SMTP, "applies only with method: smtp");
	if (a->method == METHOD_SMTP && key_set(l, i, AK_GRAPH))
		acct_error(l, i, AK_GRAPH, "applies only with method: graph");
	/* Failing beats a setting silently ignored: the MIME form of sendMail has
	   no saveToSentItems switch (only the JSON form does). With errors
	   already found, false may only be a value that did not parse. */
	if (a->method == METHOD_GRAPH && key_set(l, i, AK_GRAPH_SAVE_TO_SENT_ITEMS) &&
	    !a->graph.save_to_sent_items && l->nerrors == 0) {
		acct_error(l, i, AK_GRAPH_SAVE_TO_SENT_ITEMS, "false cannot be honoured: "
		    "Microsoft Graph saves every message sent in MIME form to Sent Items");
		cfg_hint(l, "remove the key: a copy in Sent Items is part of sending through Graph");
	}
	if (a->method != METHOD_SMTP || a->smtp.tls != SMTP_TLS_NONE ||
	    cfg_host_is_loopback(host))
		return;
	acct_error(l, i, AK_SMTP_TLS, "none is allowed only to a loopback host (localhost, "
	    "127.0.0.0/8, ::1), not '%s'", host);
	cfg_hint(l, "use tls: starttls (port 587) or tls: tls (port 465): a token must "
	    "never cross a network in clear");
}

/* ---- defaults ---- */

static unsigned
default_port(enum smtp_tls tls)
{
	switch (tls) {
	case SMTP_TLS_IMPLICIT:
		return 465;
	case SMTP_TLS_NONE:
		return 25;
	default:
		return 587;
	}
}

/* token_url with its final "/token" replaced by "/leaf" (Microsoft's
   layout), or NULL when token_url is NULL or ends otherwise. Owned by the
   caller. */
static char *
sibling_url(const char *token_url, const char *leaf)
{
	/* Only Microsoft's layout is known; another provider's ".../token"
	   says nothing about where its other endpoints are. */
	static const char last[] = "/oauth2/v2.0/token";
	size_t n;

	if (token_url == NULL)
		return NULL;
	n = strlen(token_url);
	if (n < sizeof(last) || strcmp(token_url + n - (sizeof(last) - 1), last) != 0)
		return NULL;
	return xasprintf("%.*s/oauth2/v2.0/%s", (int)(n - (sizeof(last) - 1)), token_url, leaf);
}

static void
account_defaults(struct cfg_loader *l, size_t i)
{
	struct account *a = &l->cfg->accounts[i];

	if (a->authority == NULL)
		a->authority = xstrdup(DEFAULT_AUTHORITY);
	if (a->smtp.host == NULL)
		a->smtp.host = xstrdup(DEFAULT_SMTP_HOST);
	if (!key_set(l, i, AK_SMTP_PORT))
		a->smtp.port = default_port(a->smtp.tls);
	if (a->smtp.user == NULL && a->from)
		a->smtp.user = xstrdup(a->from);
	if (a->graph.url == NULL)
		a->graph.url = xstrdup(DEFAULT_GRAPH_URL);
	if (!key_set(l, i, AK_GRAPH_SAVE_TO_SENT_ITEMS))
		a->graph.save_to_sent_items = true;
	if (!key_set(l, i, AK_GRAPH_MAX_SIZE))
		a->graph.max_size = TM_GRAPH_MESSAGE_MAX;
	if (a->scope == NULL)
		a->scope = xstrdup(config_scope(a));
	if (a->token_url == NULL && a->tenant)
		a->token_url_computed = xasprintf("%s/%s/oauth2/v2.0/token", a->authority,
		    a->tenant);
	if (a->device_code_url == NULL)
		a->device_code_url_computed = sibling_url(config_token_url(a), "devicecode");
	if (a->authorize_url == NULL)
		a->authorize_url_computed = sibling_url(config_token_url(a), "authorize");
}

static void
top_defaults(struct cfg_loader *l)
{
	struct config *cfg = l->cfg;
	const char *home = l->p ? l->p->home : NULL;
	uint32_t set = l->top.set;

	if (cfg->cache_dir == NULL && !(set & (UINT32_C(1) << TK_CACHE_DIR)))
		cfg->cache_dir = cfg_expand_home(home, DEFAULT_CACHE_DIR);
	if (cfg->dead_letter == NULL && !(set & (UINT32_C(1) << TK_DEAD_LETTER)))
		cfg->dead_letter = cfg_expand_home(home, DEFAULT_DEAD_LETTER);
	if (!(set & (UINT32_C(1) << TK_RETRY_ATTEMPTS)))
		cfg->retry_attempts = DEFAULT_RETRY_ATTEMPTS;
	if (!(set & (UINT32_C(1) << TK_RETRY_MAX_SECONDS)))
		cfg->retry_max_seconds = DEFAULT_RETRY_MAX_SECONDS;
	if (!(set & (UINT32_C(1) << TK_TIMEOUT)))
		cfg->timeout_seconds = DEFAULT_TIMEOUT_SECONDS;
}

/* ---- across accounts ---- */

static int
sender_ref_cmp(const void *pa, const void *pb)
{
	const struct sender_ref *a = pa, *b = pb;
	int c = strcmp(a->key, b->key);

	if (c != 0)
		return c;
	if (a->account != b->account)
		return a->account < b->account ? -1 : 1;
	return a->index < b->index ? -1 : a->index > b->index;
}

static size_t
collect_senders(const struct config *cfg, struct sender_ref **out)
{
	struct sender_ref *refs;
	size_t n = 0, i, j;
	char *p;

	for (i = 0; i < cfg->naccounts; i++)
		n += cfg->accounts[i].nsenders;
	refs = xcalloc(n, sizeof(*refs));
	n = 0;
	for (i = 0; i < cfg->naccounts; i++) {
		for (j = 0; j < cfg->accounts[i].nsenders; j++, n++) {
			refs[n].key = xstrdup(cfg->accounts[i].senders[j]);
			for (p = refs[n].key; *p; p++)
				if (*p >= 'A' && *p <= 'Z')
					*p = (char)(*p - 'A' + 'a');
			refs[n].account = i;
			refs[n].index = j;
		}
	}
	*out = refs;
	return n;
}

/* A sender (address or pattern, case aside) listed by two accounts would
   make the choice of account depend on the order of the file. */
static void
check_shared_senders(struct cfg_loader *l)
{
	const struct config *cfg = l->cfg;
	struct sender_ref *refs;
	size_t n = collect_senders(cfg, &refs), i, first = 0;

	qsort(refs, n, sizeof(*refs), sender_ref_cmp);
	for (i = 1; i < n; i++) {
		const struct sender_ref *r = &refs[i];
		const char *path_name = cfg->accounts[r->account].name;
		char path[TM_NAME_MAX + 64];

		if (strcmp(refs[first].key, r->key) != 0) {
			first = i;
			continue;
		}
		if (r->account == refs[first].account)
			continue;
		(void)str_format(path, sizeof(path), "accounts.%s.senders", path_name);
		cfg_key_error(l, l->acct[r->account].sender_pos[r->index], path,
		    "'%.80s' is also a sender of account '%s'",
		    cfg->accounts[r->account].senders[r->index],
		    cfg->accounts[refs[first].account].name);
	}
	for (i = 0; i < n; i++)
		free(refs[i].key);
	free(refs);
}

static void
check_top(struct cfg_loader *l)
{
	const struct config *cfg = l->cfg;

	if (!(l->top.set & (UINT32_C(1) << TK_ACCOUNTS))) {
		cfg_error(l, l->top.at, "no accounts");
		cfg_hint(l, "define at least one account under accounts: (see tokenmail.yaml(5))");
	}
	if (cfg->default_account && config_account(cfg, cfg->default_account) == NULL) {
		cfg_key_error(l, l->top.pos[TK_DEFAULT_ACCOUNT], "default_account",
		    "no account is called '%.80s'", cfg->default_account);
		cfg_hint(l, "default_account must be one of the names under accounts:");
	}
}

void
cfg_check(struct cfg_loader *l)
{
	size_t i;

	for (i = 0; i < l->cfg->naccounts; i++) {
		check_from_senders(l, i);
		check_token_settings(l, i);
		check_transport(l, i);
		account_defaults(l, i);
	}
	check_top(l);
	check_shared_senders(l);
	top_defaults(l);
}
