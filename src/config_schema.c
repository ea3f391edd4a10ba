/*
 * config_schema.c: tokenmail's configuration keys (SPEC 3) as tables for
 * the walker in config_yaml.c: each key's type, where it is stored and the
 * check of its value; and the keys that need their own code (log,
 * dead_letter, aliases, accounts, senders).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "address.h"
#include "aliases.h"
#include "config_walk.h"
#include "tm_limits.h"
#include "util.h"

/* An account name: it becomes a cache file name, so keep it to a safe set. */
#define ACCOUNT_NAME_MAX	64

_Static_assert(sizeof(enum account_method) == sizeof(int), "enum size");
_Static_assert(sizeof(enum smtp_tls) == sizeof(int), "enum size");
_Static_assert(sizeof(enum smtp_auth) == sizeof(int), "enum size");
_Static_assert(sizeof(enum rewrite_from) == sizeof(int), "enum size");
_Static_assert(sizeof(enum token_grant) == sizeof(int), "enum size");
_Static_assert(sizeof(enum assertion_alg) == sizeof(int), "enum size");
_Static_assert(AK_COUNT <= CFG_KEYS_MAX && TK_COUNT <= CFG_KEYS_MAX, "key bits");

const char *const cfg_method_names[] = { [METHOD_SMTP] = "smtp", [METHOD_GRAPH] = "graph", NULL };
const char *const cfg_tls_names[] = {
	[SMTP_TLS_STARTTLS] = "starttls", [SMTP_TLS_IMPLICIT] = "tls", [SMTP_TLS_NONE] = "none",
	NULL
};
const char *const cfg_auth_names[] = {
	[SMTP_AUTH_XOAUTH2] = "xoauth2", [SMTP_AUTH_OAUTHBEARER] = "oauthbearer",
	[SMTP_AUTH_NONE] = "none", NULL
};
static const char *const rewrite_names[] = {
	[REWRITE_FROM_AUTO] = "auto", [REWRITE_FROM_ALWAYS] = "always",
	[REWRITE_FROM_NEVER] = "never", NULL
};
static const char *const grant_names[] = {
	[GRANT_CLIENT_CREDENTIALS] = "client_credentials",
	[GRANT_REFRESH_TOKEN] = "refresh_token", NULL
};
static const char *const alg_names[] = {
	[ASSERTION_RS256] = "RS256", [ASSERTION_PS256] = "PS256", NULL
};

static const char *const acct_key_names[AK_COUNT] = {
	[AK_SENDERS] = "senders", [AK_FROM] = "from", [AK_REWRITE_FROM] = "rewrite_from",
	[AK_ALLOWED_USERS] = "allowed_users", [AK_METHOD] = "method", [AK_GRANT] = "grant",
	[AK_TENANT] = "tenant", [AK_CLIENT_ID] = "client_id",
	[AK_CLIENT_SECRET] = "client_secret", [AK_CLIENT_SECRET_FILE] = "client_secret_file",
	[AK_CLIENT_SECRET_COMMAND] = "client_secret_command",
	[AK_CLIENT_CERTIFICATE] = "client_certificate", [AK_CLIENT_KEY] = "client_key",
	[AK_CLIENT_ASSERTION_ALG] = "client_assertion_alg",
	[AK_CLIENT_ASSERTION_FILE] = "client_assertion_file",
	[AK_REFRESH_TOKEN_FILE] = "refresh_token_file", [AK_AUTHORITY] = "authority",
	[AK_TOKEN_URL] = "token_url", [AK_DEVICE_CODE_URL] = "device_code_url",
	[AK_AUTHORIZE_URL] = "authorize_url", [AK_SCOPE] = "scope",
	[AK_SMTP] = "smtp", [AK_SMTP_HOST] = "smtp.host", [AK_SMTP_PORT] = "smtp.port",
	[AK_SMTP_TLS] = "smtp.tls", [AK_SMTP_AUTH] = "smtp.auth", [AK_SMTP_USER] = "smtp.user",
	[AK_GRAPH] = "graph", [AK_GRAPH_URL] = "graph.url",
	[AK_GRAPH_SAVE_TO_SENT_ITEMS] = "graph.save_to_sent_items",
	[AK_GRAPH_MAX_SIZE] = "graph.max_size",
};

static void set_log(struct walk *w, const struct field *f, yaml_node_t *v, void *base,
    const char *path);
static void set_dead_letter(struct walk *w, const struct field *f, yaml_node_t *v,
    void *base, const char *path);
static void set_aliases(struct walk *w, const struct field *f, yaml_node_t *v,
    void *base, const char *path);
static void set_accounts(struct walk *w, const struct field *f, yaml_node_t *v,
    void *base, const char *path);
static void set_senders(struct walk *w, const struct field *f, yaml_node_t *v,
    void *base, const char *path);

const char *
cfg_acct_key_name(enum cfg_acct_key k)
{
	return k < AK_COUNT ? acct_key_names[k] : "?";
}

/* ---- value checks: NULL, or what is wrong ---- */

static bool
has_space(const char *v)
{
	return strpbrk(v, " \t") != NULL;
}

static bool
is_domain_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	    c == '-' || c == '.' || c == '_' || c >= 0x80;
}

static bool
is_host_name(const char *h, size_t n)
{
	size_t i;

	if (n == 0 || n > TM_DOMAIN_MAX)
		return false;
	for (i = 0; i < n; i++)
		if (!is_domain_char((unsigned char)h[i]))
			return false;
	return true;
}

/* A host name, an IPv4 address or an IPv6 address without brackets. */
static const char *
check_host(const char *v)
{
	if (is_host_name(v, strlen(v)))
		return NULL;
	if (strchr(v, ':') && strspn(v, "0123456789abcdefABCDEF:.") == strlen(v))
		return NULL;
	return "must be a host name or an IP address";
}

/* "user@domain" with a domain of host-name characters (or a [literal]). */
static bool
is_qualified(const char *v)
{
	const char *at = strrchr(v, '@');
	struct tm_err e;

	if (at == NULL || at == v || at[1] == '\0' || address_check_spec(v, &e) < 0)
		return false;
	if (at[1] == '[')
		return v[strlen(v) - 1] == ']';
	return is_host_name(at + 1, strlen(at + 1));
}

static const char *
check_address(const char *v)
{
	return is_qualified(v) ? NULL : "must be a qualified address such as user@example.com";
}

/* A sender: an exact address, or a pattern whose only wildcard is '*'. */
static const char *
check_sender(const char *v)
{
	if (strchr(v, '*') == NULL)
		return check_address(v);
	if (strlen(v) > TM_ADDRESS_MAX || strchr(v, '@') == NULL ||
	    strpbrk(v, " \t<>,?[]\\\"") != NULL)
		return "must be an address or a pattern such as *@example.com";
	return NULL;
}

static const char *
check_login(const char *v)
{
	const char *name = v[0] == '%' ? v + 1 : v;

	if (*name == '\0' || strlen(name) > TM_NAME_MAX || strpbrk(name, " \t,:%") != NULL)
		return "must be a login name or %group";
	return NULL;
}

static const char *
check_word(const char *v)
{
	return has_space(v) ? "must not contain white space" : NULL;
}

static const char *
check_tenant(const char *v)
{
	if (!is_host_name(v, strlen(v)))
		return "must be a tenant id or domain (letters, digits, '.', '-')";
	return NULL;
}

/* Take "scheme://host[:port][/path]" apart: 0 with the host in host[], or -1. */
static int
url_split(const char *url, bool *https, char *host, size_t size)
{
	const char *p, *end, *h, *hend, *rest;
	long port;
	char digits[8];

	*https = str_starts_nocase(url, "https://");
	if (!*https && !str_starts_nocase(url, "http://"))
		return -1;
	p = url + (*https ? 8 : 7);
	end = p + strcspn(p, "/?#");
	if (memchr(p, '@', (size_t)(end - p)) != NULL || has_space(url))
		return -1;
	h = p;
	if (*p == '[') {
		h = p + 1;
		hend = memchr(h, ']', (size_t)(end - h));
		rest = hend ? hend + 1 : NULL;
	} else {
		hend = memchr(p, ':', (size_t)(end - p));
		hend = hend ? hend : end;
		rest = hend;
	}
	if (rest == NULL || hend == h || str_copy_n(host, size, h, (size_t)(hend - h)) < 0)
		return -1;
	if (rest < end && (*rest != ':' || str_copy_n(digits, sizeof(digits), rest + 1,
	    (size_t)(end - rest - 1)) < 0 || parse_long(digits, 1, 65535, &port) < 0))
		return -1;
	return check_host(host) == NULL ? 0 : -1;
}

static const char *
check_https_url(const char *v)
{
	char host[TM_DOMAIN_MAX + 1];
	bool https;

	if (url_split(v, &https, host, sizeof(host)) < 0 || (!https && !cfg_host_is_loopback(host)))
		return "must be an https:// URL (http:// only to a loopback host)";
	return NULL;
}

static const char *
check_proxy_url(const char *v)
{
	char host[TM_DOMAIN_MAX + 1];
	bool https;

	if (url_split(v, &https, host, sizeof(host)) < 0)
		return "must be an http:// or https:// URL (no user name or password)";
	return NULL;
}

/* ---- the tables ---- */

#define F(k, bit, t, st, member) \
	.key = k, .id = bit, .type = t, .offset = offsetof(st, member)

static const struct field retry_fields[] = {
	{ F("attempts", TK_RETRY_ATTEMPTS, FT_UINT, struct config, retry_attempts),
	  .min = 1, .max = 10 },
	{ F("max_seconds", TK_RETRY_MAX_SECONDS, FT_UINT, struct config, retry_max_seconds),
	  .min = 0, .max = 3600 },
};
static const struct table retry_table = { retry_fields, 2 };

static const struct field top_fields[] = {
	{ F("tls_ca_file", TK_TLS_CA_FILE, FT_PATH, struct config, tls_ca_file) },
	{ F("cache_dir", TK_CACHE_DIR, FT_PATH, struct config, cache_dir) },
	{ F("log", TK_LOG, FT_CUSTOM, struct config, log), .custom = set_log },
	{ F("dead_letter", TK_DEAD_LETTER, FT_CUSTOM, struct config, dead_letter),
	  .custom = set_dead_letter },
	{ F("aliases", TK_ALIASES, FT_CUSTOM, struct config, aliases), .custom = set_aliases },
	{ .key = "retry", .id = TK_RETRY, .type = FT_MAP, .offset = 0, .sub = &retry_table },
	{ F("https_proxy", TK_HTTPS_PROXY, FT_URL, struct config, https_proxy),
	  .check = check_proxy_url },
	{ F("timeout", TK_TIMEOUT, FT_UINT, struct config, timeout_seconds),
	  .min = 1, .max = 600 },
	{ F("default_account", TK_DEFAULT_ACCOUNT, FT_STRING, struct config, default_account) },
	{ F("accounts", TK_ACCOUNTS, FT_CUSTOM, struct config, accounts),
	  .custom = set_accounts },
};
const struct table cfg_top_table = { top_fields, sizeof(top_fields) / sizeof(top_fields[0]) };

static const struct field smtp_fields[] = {
	{ F("host", AK_SMTP_HOST, FT_STRING, struct smtp_settings, host), .check = check_host },
	{ F("port", AK_SMTP_PORT, FT_UINT, struct smtp_settings, port), .min = 1, .max = 65535 },
	{ F("tls", AK_SMTP_TLS, FT_ENUM, struct smtp_settings, tls), .names = cfg_tls_names },
	{ F("auth", AK_SMTP_AUTH, FT_ENUM, struct smtp_settings, auth), .names = cfg_auth_names },
	{ F("user", AK_SMTP_USER, FT_STRING, struct smtp_settings, user), .check = check_word },
};
static const struct table smtp_table = {
	smtp_fields, sizeof(smtp_fields) / sizeof(smtp_fields[0])
};

static const struct field graph_fields[] = {
	{ F("url", AK_GRAPH_URL, FT_URL, struct graph_settings, url), .check = check_https_url },
	{ F("save_to_sent_items", AK_GRAPH_SAVE_TO_SENT_ITEMS, FT_BOOL, struct graph_settings,
	  save_to_sent_items) },
	{ F("max_size", AK_GRAPH_MAX_SIZE, FT_UINT, struct graph_settings, max_size),
	  .min = 1, .max = TM_GRAPH_MESSAGE_MAX },
};
static const struct table graph_table = { graph_fields, 3 };

static const struct field account_fields[] = {
	{ F("senders", AK_SENDERS, FT_CUSTOM, struct account, senders),
	  .count_offset = offsetof(struct account, nsenders), .check = check_sender,
	  .custom = set_senders },
	{ F("from", AK_FROM, FT_STRING, struct account, from), .check = check_address },
	{ F("rewrite_from", AK_REWRITE_FROM, FT_ENUM, struct account, rewrite_from),
	  .names = rewrite_names },
	{ F("allowed_users", AK_ALLOWED_USERS, FT_LIST, struct account, allowed_users),
	  .count_offset = offsetof(struct account, nallowed_users), .check = check_login },
	{ F("method", AK_METHOD, FT_ENUM, struct account, method), .names = cfg_method_names },
	{ F("grant", AK_GRANT, FT_ENUM, struct account, grant), .names = grant_names },
	{ F("tenant", AK_TENANT, FT_STRING, struct account, tenant), .check = check_tenant },
	{ F("client_id", AK_CLIENT_ID, FT_STRING, struct account, client_id), .check = check_word },
	{ F("client_secret", AK_CLIENT_SECRET, FT_SECRET, struct account, client_secret) },
	{ F("client_secret_file", AK_CLIENT_SECRET_FILE, FT_PATH, struct account,
	  client_secret_file) },
	{ F("client_secret_command", AK_CLIENT_SECRET_COMMAND, FT_STRING, struct account,
	  client_secret_command) },
	{ F("client_certificate", AK_CLIENT_CERTIFICATE, FT_PATH, struct account,
	  client_certificate) },
	{ F("client_key", AK_CLIENT_KEY, FT_PATH, struct account, client_key) },
	{ F("client_assertion_alg", AK_CLIENT_ASSERTION_ALG, FT_ENUM, struct account,
	  client_assertion_alg), .names = alg_names },
	{ F("client_assertion_file", AK_CLIENT_ASSERTION_FILE, FT_PATH, struct account,
	  client_assertion_file) },
	{ F("refresh_token_file", AK_REFRESH_TOKEN_FILE, FT_PATH, struct account,
	  refresh_token_file) },
	{ F("authority", AK_AUTHORITY, FT_URL, struct account, authority),
	  .check = check_https_url },
	{ F("token_url", AK_TOKEN_URL, FT_URL, struct account, token_url),
	  .check = check_https_url },
	{ F("device_code_url", AK_DEVICE_CODE_URL, FT_URL, struct account, device_code_url),
	  .check = check_https_url },
	{ F("authorize_url", AK_AUTHORIZE_URL, FT_URL, struct account, authorize_url),
	  .check = check_https_url },
	{ F("scope", AK_SCOPE, FT_STRING, struct account, scope) },
	{ F("smtp", AK_SMTP, FT_MAP, struct account, smtp), .sub = &smtp_table },
	{ F("graph", AK_GRAPH, FT_MAP, struct account, graph), .sub = &graph_table },
};
static const struct table account_table = {
	account_fields, sizeof(account_fields) / sizeof(account_fields[0])
};

#undef F

/* ---- keys with their own code ---- */

static void
set_senders(struct walk *w, const struct field *f, yaml_node_t *v, void *base,
    const char *path)
{
	cfg_set_list(w, f, v, base, path, &w->l->acct[w->account].sender_pos);
}

static void
set_log(struct walk *w, const struct field *f, yaml_node_t *v, void *base, const char *path)
{
	struct config *cfg = base;
	const char *s = cfg_scalar(w, v, path, "a string"), *problem = NULL;
	char *file;

	(void)f;
	if (s == NULL)
		return;
	if (strcmp(s, "syslog") == 0 || strcmp(s, "stderr") == 0) {
		cfg->log = s[0] == 's' && s[1] == 'y' ? LOG_SYSLOG : LOG_STDERR;
		return;
	}
	file = cfg_expand_path(w, s, &problem);
	if (problem) {
		cfg_key_error(w->l, cfg_node_pos(v), path,
		    "must be syslog, stderr or an absolute path");
		free(file);
		return;
	}
	cfg->log = LOG_FILE;
	cfg->log_file = file;
}

static void
set_dead_letter(struct walk *w, const struct field *f, yaml_node_t *v, void *base,
    const char *path)
{
	const char *s = cfg_scalar(w, v, path, "a string");

	if (s == NULL || strcmp(s, "none") == 0)
		return;
	cfg_set_string(w, &(struct field){ .type = FT_PATH, .offset = f->offset }, v, base, path);
}

/* One "name: targets" of the inline aliases mapping. */
static void
alias_pair(struct walk *w, yaml_node_t *k, yaml_node_t *v, const char *path)
{
	const char *name = cfg_key(w, k, path);
	struct strbuf targets;
	struct tm_err e;
	char kpath[KEY_PATH_MAX];
	yaml_node_item_t *it;

	if (name == NULL)
		return;
	cfg_join_path(kpath, sizeof(kpath), path, name);
	strbuf_init(&targets, TM_ALIASES_FILE_MAX);
	if (v->type == YAML_SEQUENCE_NODE) {
		for (it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
			yaml_node_t *item = cfg_node_at(w, *it);
			const char *s = item ? cfg_scalar(w, item, kpath, "an address") : NULL;

			if (s == NULL)
				goto out;
			if ((targets.len && strbuf_append_str(&targets, ", ") < 0) ||
			    strbuf_append_str(&targets, s) < 0)
				goto out;
		}
	} else {
		const char *s = cfg_scalar(w, v, kpath, "an address list");

		if (s == NULL || strbuf_append_str(&targets, s) < 0)
			goto out;
	}
	if (aliases_add(&w->l->cfg->aliases, name, targets.data ? targets.data : "",
	    cfg_node_pos(k).line, &e) < 0)
		cfg_key_error(w->l, cfg_node_pos(v), kpath, "%s", e.msg);
out:
	strbuf_free(&targets);
}

static void
set_aliases(struct walk *w, const struct field *f, yaml_node_t *v, void *base,
    const char *path)
{
	const char *s;
	yaml_node_pair_t *pair;

	w->l->aliases_pos = cfg_node_pos(v);
	if (v->type == YAML_MAPPING_NODE) {
		for (pair = v->data.mapping.pairs.start; pair < v->data.mapping.pairs.top; pair++) {
			yaml_node_t *k = cfg_node_at(w, pair->key);
			yaml_node_t *val = cfg_node_at(w, pair->value);

			if (k == NULL || val == NULL)
				return;
			alias_pair(w, k, val, path);
		}
		return;
	}
	s = cfg_scalar(w, v, path, "a mapping or a file name");
	if (s == NULL)
		return;
	if (s[0] != '/' && s[0] != '~') {
		cfg_key_error(w->l, cfg_node_pos(v), path, "must be a mapping of local names to "
		    "addresses, or the absolute path of an aliases(5) file");
		return;
	}
	cfg_set_string(w, &(struct field){ .type = FT_PATH,
	    .offset = offsetof(struct config, aliases_file) }, v, base, path);
	(void)f;
}

static bool
account_name_ok(const char *name)
{
	size_t n = strlen(name), i;

	if (n == 0 || n > ACCOUNT_NAME_MAX || name[0] == '.' || name[0] == '-')
		return false;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

/* Index of the account called name among those walked so far, or -1. */
static long
account_index(const struct config *cfg, const char *name)
{
	size_t i;

	for (i = 0; i < cfg->naccounts; i++)
		if (strcmp(cfg->accounts[i].name, name) == 0)
			return (long)i;
	return -1;
}

static void
walk_account(struct walk *w, yaml_node_t *k, yaml_node_t *v, const char *path)
{
	struct config *cfg = w->l->cfg;
	const char *name = cfg_key(w, k, path);
	struct cfg_keys *saved = w->keys;
	char apath[KEY_PATH_MAX];
	struct account *a;
	long dup;

	if (name == NULL)
		return;
	cfg_join_path(apath, sizeof(apath), path, name);
	if ((dup = account_index(cfg, name)) >= 0) {
		cfg_key_error(w->l, cfg_node_pos(k), apath, "given twice (first at line %u)",
		    cfg->accounts[dup].line);
		return;
	}
	if (!account_name_ok(name))
		cfg_key_error(w->l, cfg_node_pos(k), apath, "an account name is 1-%d letters, "
		    "digits, '.', '_' or '-' (not starting with '.' or '-')", ACCOUNT_NAME_MAX);
	w->account = cfg->naccounts++;
	a = &cfg->accounts[w->account];
	a->name = xstrdup(name);
	a->line = cfg_node_pos(k).line;
	a->column = cfg_node_pos(k).col;
	w->l->acct[w->account].keys.at = cfg_node_pos(k);
	if (v->type != YAML_MAPPING_NODE) {
		cfg_key_error(w->l, cfg_node_pos(v), apath,
		    "must be a mapping (key: value), not %s", cfg_node_kind(v));
		return;
	}
	w->keys = &w->l->acct[w->account].keys;
	cfg_walk_map(w, v, &account_table, a, apath);
	w->keys = saved;
}

static void
set_accounts(struct walk *w, const struct field *f, yaml_node_t *v, void *base,
    const char *path)
{
	yaml_node_pair_t *pair;
	size_t n;

	(void)f;
	(void)base;
	if (v->type == YAML_SCALAR_NODE && cfg_node_is_null(v))
		n = 0;
	else if (v->type != YAML_MAPPING_NODE) {
		cfg_key_error(w->l, cfg_node_pos(v), path, "must be a mapping of account names to "
		    "accounts, not %s", cfg_node_kind(v));
		return;
	} else
		n = (size_t)(v->data.mapping.pairs.top - v->data.mapping.pairs.start);
	if (n == 0) {
		cfg_key_error(w->l, cfg_node_pos(v), path, "no accounts");
		cfg_hint(w->l, "define at least one account (see tokenmail.yaml(5))");
		return;
	}
	w->l->cfg->accounts = xcalloc(n, sizeof(struct account));
	w->l->acct = xcalloc(n, sizeof(struct cfg_acct));
	for (pair = v->data.mapping.pairs.start; pair < v->data.mapping.pairs.top; pair++) {
		yaml_node_t *k = cfg_node_at(w, pair->key), *val = cfg_node_at(w, pair->value);

		if (k == NULL || val == NULL)
			return;
		walk_account(w, k, val, path);
	}
}
