/*
 * config_test.c: the YAML config loader (config.h). Tables of snippets with
 * the defaults they must produce or the exact errors (file:line:col) they
 * must give; file search order and permission rules on real temp files;
 * the shipped example file.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "tap.h"
#include "tm_limits.h"
#include "util.h"

static const struct config_params params = { .home = "/home/u" };

/* Lines 1-5 of most snippets: one account without a credential. */
#define HEAD \
	"accounts:\n" \
	"  app:\n" \
	"    from: app@example.com\n" \
	"    tenant: contoso.onmicrosoft.com\n" \
	"    client_id: abc\n"
/* Line 6: its credential. */
#define SECRET "    client_secret_file: /s\n"

static int
parse(const char *yaml, struct config *cfg, struct tm_err *err)
{
	return config_parse_buffer("t.yaml", yaml, strlen(yaml), &params, cfg, err);
}

/* ---- valid configs and their defaults ---- */

static void
test_smtp_app_only_defaults(void)
{
	struct config cfg;
	struct tm_err err;
	const struct account *a;

	tap_is_int(parse(HEAD SECRET, &cfg, &err), 0, "smtp app-only: loads");
	tap_is_str(err.msg, "", "smtp app-only: no error");
	a = config_account(&cfg, "app");
	tap_ok(a != NULL, "smtp app-only: account found");
	if (a == NULL)
		goto out;
	tap_is_int(a->method, METHOD_SMTP, "default method smtp");
	tap_is_int(a->grant, GRANT_CLIENT_CREDENTIALS, "default grant client_credentials");
	tap_is_int(a->rewrite_from, REWRITE_FROM_AUTO, "default rewrite_from auto");
	tap_is_str(a->smtp.host, "smtp.office365.com", "default smtp.host");
	tap_is_int(a->smtp.port, 587, "default port 587 with starttls");
	tap_is_int(a->smtp.tls, SMTP_TLS_STARTTLS, "default tls starttls");
	tap_is_int(a->smtp.auth, SMTP_AUTH_XOAUTH2, "default auth xoauth2");
	tap_is_str(a->smtp.user, "app@example.com", "default smtp.user = from");
	tap_is_int((long)a->nsenders, 1, "default senders: one");
	tap_is_str(a->senders[0], "app@example.com", "default senders = [from]");
	tap_is_int((long)a->nallowed_users, 0, "default allowed_users: anyone");
	tap_is_str(config_scope(a), "https://outlook.office365.com/.default",
	    "smtp app-only scope");
	tap_is_str(a->scope, "https://outlook.office365.com/.default", "scope filled in");
	tap_is_str(config_token_url(a), "https://login.microsoftonline.com/contoso.onmicrosoft.com"
	    "/oauth2/v2.0/token", "token URL from authority and tenant");
	tap_ok(a->token_url == NULL, "token_url stays NULL when not configured");
	tap_is_str(config_device_code_url(a), "https://login.microsoftonline.com/"
	    "contoso.onmicrosoft.com/oauth2/v2.0/devicecode", "device code URL next to the token URL");
	tap_is_str(config_authorize_url(a), "https://login.microsoftonline.com/"
	    "contoso.onmicrosoft.com/oauth2/v2.0/authorize", "authorize URL next to the token URL");
	tap_ok(a->device_code_url == NULL && a->authorize_url == NULL,
	    "sign-in URLs stay NULL when not configured");
	tap_is_str(a->authority, "https://login.microsoftonline.com", "default authority");
	tap_is_str(a->graph.url, "https://graph.microsoft.com/v1.0", "default graph.url");
	tap_ok(a->graph.save_to_sent_items, "default save_to_sent_items true");
	tap_is_str(a->client_secret_file, "/s", "client_secret_file kept");
	tap_is_int(a->line, 2, "account line");
	tap_is_int(a->column, 3, "account column");
	tap_is_str(cfg.cache_dir, "/home/u/.cache/tokenmail", "default cache_dir expanded");
	tap_is_str(cfg.dead_letter, "/home/u/dead.letter", "default dead_letter expanded");
	tap_is_int(cfg.log, LOG_SYSLOG, "default log syslog");
	tap_is_int(cfg.retry_attempts, 3, "default retry.attempts");
	tap_is_int(cfg.retry_max_seconds, 30, "default retry.max_seconds");
	tap_is_int(cfg.timeout_seconds, 60, "default timeout 60");
	tap_ok(cfg.default_account == NULL, "no default_account unless given");
	tap_ok(!cfg.has_inline_secret, "no inline secret");
	tap_is_str(cfg.path, "t.yaml", "path kept");
out:
	config_free(&cfg);
}

static void
test_graph_app_only(void)
{
	static const char yaml[] =
	    "accounts:\n"
	    "  reports:\n"
	    "    senders: reports@example.com\n"
	    "    method: graph\n"
	    "    tenant: 11111111-2222-3333-4444-555555555555\n"
	    "    client_id: abc\n"
	    "    client_certificate: /etc/tm/r.crt\n"
	    "    client_key: ~/r.key\n"
	    "    client_assertion_alg: ps256\n"
	    "    graph: {url: \"https://graph.microsoft.us/v1.0/\", save_to_sent_items: true}\n";
	struct config cfg;
	struct tm_err err;
	const struct account *a;

	tap_is_int(parse(yaml, &cfg, &err), 0, "graph app-only: loads");
	tap_is_str(err.msg, "", "graph app-only: no error");
	a = config_account(&cfg, "reports");
	if (a == NULL) {
		tap_ok(0, "graph app-only: account found");
		goto out;
	}
	tap_is_int(a->method, METHOD_GRAPH, "method graph");
	tap_is_str(a->from, "reports@example.com", "from defaults to senders[0]");
	tap_is_str(config_scope(a), "https://graph.microsoft.com/.default", "graph app-only scope");
	tap_is_int(a->client_assertion_alg, ASSERTION_PS256, "alg PS256, case ignored");
	tap_is_str(a->client_key, "/home/u/r.key", "~/ expanded in client_key");
	tap_is_str(a->graph.url, "https://graph.microsoft.us/v1.0", "graph.url trailing / dropped");
	tap_ok(a->graph.save_to_sent_items, "save_to_sent_items true");
out:
	config_free(&cfg);
}

static void
test_delegated(void)
{
	static const char smtp[] =
	    "accounts:\n"
	    "  alice:\n"
	    "    from: alice@example.com\n"
	    "    grant: refresh_token\n"
	    "    tenant: organizations\n"
	    "    client_id: abc\n"
	    "    refresh_token_file: ~/.config/tokenmail/alice.rt\n";
	static const char graph[] =
	    "accounts:\n"
	    "  bob:\n"
	    "    from: bob@example.com\n"
	    "    method: graph\n"
	    "    grant: refresh_token\n"
	    "    tenant: common\n"
	    "    client_id: abc\n"
	    "    client_secret: s3cret\n";
	struct config cfg;
	struct tm_err err;

	tap_is_int(parse(smtp, &cfg, &err), 0, "smtp delegated without secret: loads");
	tap_is_str(err.msg, "", "smtp delegated: no error");
	if (cfg.naccounts == 1) {
		tap_is_str(config_scope(&cfg.accounts[0]),
		    "https://outlook.office.com/SMTP.Send offline_access", "smtp delegated scope");
		tap_is_str(cfg.accounts[0].refresh_token_file, "/home/u/.config/tokenmail/alice.rt",
		    "refresh_token_file expanded");
		tap_is_str(config_token_url(&cfg.accounts[0]),
		    "https://login.microsoftonline.com/organizations/oauth2/v2.0/token",
		    "delegated may use organizations");
	}
	config_free(&cfg);
	tap_is_int(parse(graph, &cfg, &err), 0, "graph delegated with inline secret: loads");
	tap_is_str(err.msg, "", "graph delegated: no error");
	if (cfg.naccounts == 1) {
		tap_is_str(config_scope(&cfg.accounts[0]), "https://graph.microsoft.com/Mail.Send offline_access",
		    "graph delegated scope");
		tap_ok(cfg.has_inline_secret, "inline secret noticed");
		tap_is_str(cfg.accounts[0].client_secret, "s3cret", "inline secret kept");
	}
	config_free(&cfg);
}

static void
test_gmail_and_relay(void)
{
	static const char yaml[] =
	    "accounts:\n"
	    "  gmail:\n"
	    "    from: someone@gmail.com\n"
	    "    grant: refresh_token\n"
	    "    client_id: 1234.apps.googleusercontent.com\n"
	    "    client_secret_file: /etc/tm/gmail.secret\n"
	    "    token_url: https://oauth2.googleapis.com/token\n"
	    "    scope: https://mail.google.com/\n"
	    "    smtp: {host: smtp.gmail.com, tls: TLS, auth: oauthbearer}\n"
	    "  relay:\n"
	    "    senders: [\"*@example.com\", noreply@example.com]\n"
	    "    from: noreply@example.com\n"
	    "    smtp: {host: contoso-com.mail.protection.outlook.com, port: 25, auth: none}\n";
	struct config cfg;
	struct tm_err err;
	const struct account *g, *r;

	tap_is_int(parse(yaml, &cfg, &err), 0, "gmail + relay: loads");
	tap_is_str(err.msg, "", "gmail + relay: no error");
	g = config_account(&cfg, "gmail");
	r = config_account(&cfg, "relay");
	if (g == NULL || r == NULL) {
		tap_ok(0, "gmail + relay: accounts found");
		goto out;
	}
	tap_is_str(config_token_url(g), "https://oauth2.googleapis.com/token", "token_url wins");
	tap_is_str(config_scope(g), "https://mail.google.com/", "configured scope wins");
	tap_is_int(g->smtp.tls, SMTP_TLS_IMPLICIT, "tls: TLS (case ignored)");
	tap_is_int(g->smtp.port, 465, "default port 465 with tls");
	tap_is_int(g->smtp.auth, SMTP_AUTH_OAUTHBEARER, "auth oauthbearer");
	tap_is_str(g->smtp.user, "someone@gmail.com", "gmail user = from");
	tap_is_int(r->smtp.auth, SMTP_AUTH_NONE, "relay: auth none");
	tap_ok(r->client_id == NULL, "relay: needs no client_id");
	tap_ok(config_token_url(r) == NULL, "relay: no token URL");
	tap_is_int(r->smtp.port, 25, "relay: port 25");
	tap_is_int((long)r->nsenders, 2, "relay: two senders");
	tap_is_str(r->senders[0], "*@example.com", "relay: pattern kept");
	tap_ok(config_account(&cfg, "GMAIL") == NULL, "account names are case-sensitive");
out:
	config_free(&cfg);
}

static void
test_top_level_keys(void)
{
	static const char yaml[] =
	    "tls_ca_file: /etc/ssl/extra.pem\n"
	    "cache_dir: /var/cache/tokenmail\n"
	    "log: /var/log/tokenmail.log\n"
	    "dead_letter: none\n"
	    "aliases:\n"
	    "  root: ops@example.com\n"
	    "  www-data: [a@example.com, \"B <b@example.com>\"]\n"
	    "  \"*\": ops@example.com\n"
	    "retry: {attempts: 10, max_seconds: 0}\n"
	    "https_proxy: http://proxy.example.com:3128/\n"
	    "timeout: 600\n"
	    "default_account: app\n"
	    HEAD SECRET;
	struct config cfg;
	struct tm_err err;

	tap_is_int(parse(yaml, &cfg, &err), 0, "all top-level keys: loads");
	tap_is_str(err.msg, "", "all top-level keys: no error");
	tap_is_str(cfg.tls_ca_file, "/etc/ssl/extra.pem", "tls_ca_file");
	tap_is_str(cfg.cache_dir, "/var/cache/tokenmail", "cache_dir");
	tap_is_int(cfg.log, LOG_FILE, "log to a file");
	tap_is_str(cfg.log_file, "/var/log/tokenmail.log", "log_file");
	tap_ok(cfg.dead_letter == NULL, "dead_letter none -> NULL");
	tap_is_int((long)cfg.aliases.count, 3, "three aliases");
	if (cfg.aliases.count == 3) {
		tap_is_int((long)cfg.aliases.entries[1].targets.count, 2, "sequence of targets");
		tap_is_str(cfg.aliases.entries[2].name, "*", "catch-all kept");
		tap_is_int(cfg.aliases.entries[0].line, 6, "alias line");
	}
	tap_ok(cfg.aliases_file == NULL, "no aliases file");
	tap_is_int(cfg.retry_attempts, 10, "retry.attempts");
	tap_is_int(cfg.retry_max_seconds, 0, "retry.max_seconds 0");
	tap_is_str(cfg.https_proxy, "http://proxy.example.com:3128", "https_proxy");
	tap_is_int(cfg.timeout_seconds, 600, "timeout 600");
	tap_is_str(cfg.default_account, "app", "default_account");
	config_free(&cfg);
}

static void
test_small_forms(void)
{
	static const char yaml[] =
	    "log: stderr\n"
	    "aliases: ~/aliases\n"
	    "accounts:\n"
	    "  a:\n"
	    "    senders: [\"*@alerts.example.com\", Ops@Example.com]\n"
	    "    from: ops@example.com\n"
	    "    allowed_users: \"%mail\"\n"
	    "    rewrite_from: never\n"
	    "    client_id: abc\n"
	    "    tenant: t.example\n"
	    "    client_secret_command: pass show tokenmail\n"
	    "    smtp:\n"
	    "      host: ::1\n"
	    "      tls: none\n"
	    "      user: shared@example.com\n"
	    "  b:\n"
	    "    from: b@example.com\n"
	    "    client_id: abc\n"
	    "    token_url: http://127.0.0.1:8080/token\n"
	    "    scope: api://test/.default\n"
	    "    client_assertion_file: /run/token\n"
	    "    smtp: {host: LocalHost, tls: none, port: 2525}\n";
	struct config cfg;
	struct tm_err err;

	tap_is_int(parse(yaml, &cfg, &err), 0, "small forms: loads");
	tap_is_str(err.msg, "", "small forms: no error");
	tap_is_int(cfg.log, LOG_STDERR, "log stderr");
	tap_is_str(cfg.aliases_file, "/home/u/aliases", "aliases names a file");
	if (cfg.naccounts == 2) {
		tap_is_str(cfg.accounts[0].allowed_users[0], "%mail", "allowed_users as a string");
		tap_is_int(cfg.accounts[0].rewrite_from, REWRITE_FROM_NEVER, "rewrite_from never");
		tap_is_int(cfg.accounts[0].smtp.port, 25, "tls none: port 25");
		tap_is_str(cfg.accounts[0].smtp.user, "shared@example.com", "smtp.user given");
		tap_is_str(cfg.accounts[1].token_url, "http://127.0.0.1:8080/token",
		    "http:// to loopback is allowed");
		tap_is_int(cfg.accounts[1].smtp.port, 2525, "port given");
		tap_ok(config_device_code_url(&cfg.accounts[1]) == NULL,
		    "no device code URL guessed next to a non-Microsoft token_url");
		tap_is_str(config_scope(&cfg.accounts[1]), "api://test/.default",
		    "scope with token_url");
	}
	config_free(&cfg);
}

static void
test_no_home(void)
{
	static const struct config_params none = { .home = NULL };
	static const struct config_params root = { .home = "/" };
	static const struct config_params slash = { .home = "/home/u/" };
	static const char yaml[] = HEAD SECRET "    client_key_unused: 1\n";
	static const char ok[] = "tls_ca_file: ~/ca.pem\n" HEAD SECRET;
	struct config cfg;
	struct tm_err err;

	tap_is_int(config_parse_buffer("t.yaml", ok, strlen(ok), &none, &cfg, &err), 0,
	    "home NULL: loads");
	tap_is_str(cfg.tls_ca_file, "~/ca.pem", "home NULL: ~/ left as is");
	tap_is_str(cfg.cache_dir, "~/.cache/tokenmail", "home NULL: default cache_dir unexpanded");
	config_free(&cfg);
	tap_is_int(config_parse_buffer("t.yaml", ok, strlen(ok), &root, &cfg, &err), 0,
	    "home /: loads");
	tap_is_str(cfg.tls_ca_file, "/ca.pem", "home /: ~/ca.pem is /ca.pem");
	config_free(&cfg);
	tap_is_int(config_parse_buffer("t.yaml", ok, strlen(ok), &slash, &cfg, &err), 0,
	    "home with a trailing /: loads");
	tap_is_str(cfg.tls_ca_file, "/home/u/ca.pem", "home's trailing / not doubled");
	config_free(&cfg);
	tap_is_int(config_parse_buffer(NULL, yaml, strlen(yaml), NULL, &cfg, &err), -1,
	    "NULL name and params");
	tap_is_str(err.msg, "(config):7:5: unknown key 'accounts.app.client_key_unused'",
	    "NULL name is (config)");
	config_free(&cfg);
}

static void
test_yaml_anchors(void)
{
	static const char yaml[] =
	    "accounts:\n"
	    "  a:\n"
	    "    from: a@example.com\n"
	    "    tenant: t.example\n"
	    "    client_id: abc\n"
	    "    client_secret_file: /s\n"
	    "    smtp: &m365 {host: smtp.office365.com, port: 587}\n"
	    "  b:\n"
	    "    from: b@example.com\n"
	    "    tenant: t.example\n"
	    "    client_id: abc\n"
	    "    client_secret_file: /s\n"
	    "    smtp: *m365\n";
	struct config cfg;
	struct tm_err err;

	tap_is_int(parse(yaml, &cfg, &err), 0, "YAML anchors and aliases are followed");
	tap_is_str(err.msg, "", "anchors: no error");
	if (cfg.naccounts == 2)
		tap_is_str(cfg.accounts[1].smtp.host, "smtp.office365.com", "aliased mapping read");
	config_free(&cfg);
}

/* device_code_url and authorize_url: configured, derived or absent. */
struct url_case {
	const char *what;
	const char *keys;	/* the account's lines after HEAD_DELEGATED */
	const char *device;	/* config_device_code_url(), or NULL */
	const char *authorize;	/* config_authorize_url(), or NULL */
};

/* Lines 1-5: a delegated account without a tenant or token URL yet. */
#define HEAD_DELEGATED \
	"accounts:\n" \
	"  u:\n" \
	"    from: u@example.com\n" \
	"    grant: refresh_token\n" \
	"    client_id: abc\n"

static const struct url_case url_cases[] = {
	{ "Microsoft, derived", "    tenant: organizations\n",
	  "https://login.microsoftonline.com/organizations/oauth2/v2.0/devicecode",
	  "https://login.microsoftonline.com/organizations/oauth2/v2.0/authorize" },
	{ "sovereign authority, derived",
	  "    tenant: contoso.onmicrosoft.us\n    authority: https://login.microsoftonline.us/\n",
	  "https://login.microsoftonline.us/contoso.onmicrosoft.us/oauth2/v2.0/devicecode",
	  "https://login.microsoftonline.us/contoso.onmicrosoft.us/oauth2/v2.0/authorize" },
	{ "Google, configured",
	  "    token_url: https://oauth2.googleapis.com/token\n"
	  "    device_code_url: https://oauth2.googleapis.com/device/code\n"
	  "    authorize_url: https://accounts.google.com/o/oauth2/v2/auth/\n"
	  "    scope: https://mail.google.com/\n",
	  "https://oauth2.googleapis.com/device/code",
	  "https://accounts.google.com/o/oauth2/v2/auth" },
	{ "one configured, the other derived",
	  "    tenant: t.example\n    device_code_url: http://localhost:9/dc\n",
	  "http://localhost:9/dc",
	  "https://login.microsoftonline.com/t.example/oauth2/v2.0/authorize" },
	{ "token URL not ending in /token: none",
	  "    token_url: https://idp.example.com/oauth/access\n    scope: mail\n",
	  NULL, NULL },
	{ "token URL ending in /xtoken: none",
	  "    token_url: https://idp.example.com/xtoken\n    scope: mail\n",
	  NULL, NULL },
	{ "token URL with a query: none",
	  "    token_url: https://idp.example.com/token?x=token\n    scope: mail\n",
	  NULL, NULL },
	{ "Microsoft layout with a trailing slash: derived",
	  "    token_url: https://idp.example.com/t1/oauth2/v2.0/token/\n    scope: mail\n",
	  "https://idp.example.com/t1/oauth2/v2.0/devicecode",
	  "https://idp.example.com/t1/oauth2/v2.0/authorize" },
	{ "another provider's /token: none (its other endpoints are unknown)",
	  "    token_url: https://idp.example.com/token\n    scope: mail\n",
	  NULL, NULL },
};

static void
test_sign_in_urls(void)
{
	size_t i;

	for (i = 0; i < sizeof(url_cases) / sizeof(url_cases[0]); i++) {
		const struct url_case *c = &url_cases[i];
		struct strbuf b;
		struct config cfg;
		struct tm_err err;

		strbuf_init(&b, 4096);
		(void)strbuf_append_str(&b, HEAD_DELEGATED);
		(void)strbuf_append_str(&b, c->keys);
		tap_is_int(parse(b.data, &cfg, &err), 0, "%s: loads", c->what);
		tap_is_str(err.msg, "", "%s: no error", c->what);
		if (cfg.naccounts == 1) {
			tap_is_str(config_device_code_url(&cfg.accounts[0]), c->device,
			    "%s: device code URL", c->what);
			tap_is_str(config_authorize_url(&cfg.accounts[0]), c->authorize,
			    "%s: authorize URL", c->what);
		}
		config_free(&cfg);
		strbuf_free(&b);
	}
}

/* An account that needs no token has no token URL, hence no sign-in URLs. */
static void
test_sign_in_urls_relay(void)
{
	static const char yaml[] =
	    "accounts:\n  r: {from: r@example.com, smtp: {auth: none}}\n";
	struct config cfg;
	struct tm_err err;

	tap_is_int(parse(yaml, &cfg, &err), 0, "relay: loads");
	if (cfg.naccounts == 1) {
		tap_ok(config_device_code_url(&cfg.accounts[0]) == NULL, "relay: no device code URL");
		tap_ok(config_authorize_url(&cfg.accounts[0]) == NULL, "relay: no authorize URL");
	}
	config_free(&cfg);
}

static void
test_timeout(void)
{
	static const char one[] = "timeout: 1\n" HEAD SECRET;
	static const char quoted[] = "timeout: \"45\"\n" HEAD SECRET;
	struct config cfg;
	struct tm_err err;

	tap_is_int(parse(one, &cfg, &err), 0, "timeout 1: loads");
	tap_is_int(cfg.timeout_seconds, 1, "timeout 1");
	config_free(&cfg);
	tap_is_int(parse(quoted, &cfg, &err), 0, "timeout as a quoted string: loads");
	tap_is_int(cfg.timeout_seconds, 45, "timeout \"45\"");
	config_free(&cfg);
}

/* ---- errors ---- */

struct error_case {
	const char *what;
	const char *yaml;
	const char *msg;	/* err.msg exactly */
	const char *detail;	/* err.detail exactly, or NULL: not checked */
	const char *hint;	/* err.hint exactly, or NULL: not checked */
};

static const struct error_case error_cases[] = {
	{ "empty file", "",
	  "t.yaml: no accounts (the file is empty)", "",
	  "define at least one account (see tokenmail.yaml(5))" },
	{ "comments only", "# nothing\n\n",
	  "t.yaml: no accounts (the file is empty)", "", NULL },
	{ "malformed YAML: unclosed flow sequence", "accounts:\n  app: [a, b\n",
	  "t.yaml:3:1: YAML syntax error: did not find expected ',' or ']'", "", NULL },
	{ "malformed YAML: bad indentation", "accounts:\n  app:\n    from: a\n   x: b\n",
	  "t.yaml:4:4: YAML syntax error: did not find expected key", "", NULL },
	{ "malformed YAML: tab indentation", "accounts:\n\tapp: {}\n",
	  "t.yaml:2:1: YAML syntax error: found character that cannot start any token", "",
	  NULL },
	{ "invalid UTF-8", "accounts:\n  app:\n    from: \xff\n",
	  "t.yaml:3:11: YAML syntax error: invalid leading UTF-8 octet", "", NULL },
	{ "two documents", HEAD SECRET "---\nlog: stderr\n",
	  "t.yaml:8:1: only one YAML document is allowed in a config file", "", NULL },
	{ "top level not a mapping", "- a\n- b\n",
	  "t.yaml:1:1: the top level must be a mapping (key: value), not a sequence",
	  "", NULL },
	{ "no accounts key", "log: stderr\n",
	  "t.yaml:1:1: no accounts", "",
	  "define at least one account under accounts: (see tokenmail.yaml(5))" },
	{ "empty accounts", "accounts: {}\n",
	  "t.yaml:1:11: key 'accounts': no accounts", "", NULL },
	{ "null accounts", "accounts:\n",
	  "t.yaml:1:10: key 'accounts': no accounts", "", NULL },
	{ "accounts as a sequence", "accounts: [a]\n",
	  "t.yaml:1:11: key 'accounts': must be a mapping of account names to accounts, "
	  "not a sequence", "", NULL },
	{ "unknown key with suggestion", HEAD SECRET "    smtp: {prot: 25}\n",
	  "t.yaml:7:12: unknown key 'accounts.app.smtp.prot' (did you mean 'port'?)", "", NULL },
	{ "unknown top-level key without suggestion", HEAD SECRET "colour: red\n",
	  "t.yaml:7:1: unknown key 'colour'", "", NULL },
	{ "unknown account key with suggestion", HEAD SECRET "    client_secrett: x\n",
	  "t.yaml:7:5: unknown key 'accounts.app.client_secrett' (did you mean 'client_secret'?)",
	  "", NULL },
	{ "key that is not a string", HEAD SECRET "    [a]: b\n",
	  "t.yaml:7:5: a key under 'accounts.app' must be a non-empty string without control "
	  "characters", "", NULL },
	{ "duplicate key", HEAD SECRET "    tenant: other\n",
	  "t.yaml:7:5: key 'accounts.app.tenant': given twice (first at line 4)", "", NULL },
	{ "duplicate account", HEAD SECRET "  app: {}\n",
	  "t.yaml:7:3: key 'accounts.app': given twice (first at line 2)", "", NULL },
	{ "bad account name", "accounts:\n  ../x:\n    from: a@example.com\n"
	  "    smtp: {auth: none}\n",
	  "t.yaml:2:3: key 'accounts.../x': an account name is 1-64 letters, digits, '.', '_' "
	  "or '-' (not starting with '.' or '-')", "", NULL },
	{ "port 0", HEAD SECRET "    smtp:\n      port: 0\n",
	  "t.yaml:8:13: key 'accounts.app.smtp.port': must be 1-65535", "", NULL },
	{ "port 65536", HEAD SECRET "    smtp:\n      port: 65536\n",
	  "t.yaml:8:13: key 'accounts.app.smtp.port': must be 1-65535", "", NULL },
	{ "port not a number", HEAD SECRET "    smtp:\n      port: smtp\n",
	  "t.yaml:8:13: key 'accounts.app.smtp.port': must be 1-65535", "", NULL },
	{ "port as a sequence", HEAD SECRET "    smtp:\n      port: [587]\n",
	  "t.yaml:8:13: key 'accounts.app.smtp.port': must be a number, not a sequence", "", NULL },
	{ "smtp as a string", HEAD SECRET "    smtp: smtp.office365.com\n",
	  "t.yaml:7:11: key 'accounts.app.smtp': must be a mapping (key: value), not a string",
	  "", NULL },
	{ "from as a mapping", "accounts:\n  app:\n    from: {a: b}\n    smtp: {auth: none}\n",
	  "t.yaml:3:11: key 'accounts.app.from': must be a string, not a mapping",
	  "", NULL },
	{ "null value", HEAD SECRET "    scope:\n",
	  "t.yaml:7:11: key 'accounts.app.scope': needs a value", "", NULL },
	{ "empty quoted value", HEAD SECRET "    scope: \"\"\n",
	  "t.yaml:7:12: key 'accounts.app.scope': needs a value", "", NULL },
	{ "control character", HEAD SECRET "    scope: \"a\\nb\"\n",
	  "t.yaml:7:12: key 'accounts.app.scope': must not contain control characters", "", NULL },
	{ "NUL byte", HEAD SECRET "    scope: \"a\\0b\"\n",
	  "t.yaml:7:12: key 'accounts.app.scope': must not contain NUL bytes", "", NULL },
	{ "secret value not echoed", HEAD "    client_secret: \"hunter2\\x01\"\n",
	  "t.yaml:6:20: key 'accounts.app.client_secret': must not contain control characters",
	  NULL, NULL },
	{ "bad enum tls", HEAD SECRET "    smtp:\n      tls: ssl\n",
	  "t.yaml:8:12: key 'accounts.app.smtp.tls': must be starttls, tls or none", "", NULL },
	{ "bad enum method", HEAD SECRET "    method: imap\n",
	  "t.yaml:7:13: key 'accounts.app.method': must be smtp or graph", "", NULL },
	{ "bad enum rewrite_from", HEAD SECRET "    rewrite_from: sometimes\n",
	  "t.yaml:7:19: key 'accounts.app.rewrite_from': must be auto, always or never", "", NULL },
	{ "bad bool", HEAD SECRET "    method: graph\n    graph: {save_to_sent_items: yes}\n",
	  "t.yaml:8:33: key 'accounts.app.graph.save_to_sent_items': must be true or false",
	  "", NULL },
	{ "retry.attempts 11", HEAD SECRET "retry: {attempts: 11}\n",
	  "t.yaml:7:19: key 'retry.attempts': must be 1-10", "", NULL },
	{ "retry.max_seconds 3601", HEAD SECRET "retry:\n  max_seconds: 3601\n",
	  "t.yaml:8:16: key 'retry.max_seconds': must be 0-3600", "", NULL },
	{ "relative path", HEAD "    client_secret_file: secret.txt\n",
	  "t.yaml:6:25: key 'accounts.app.client_secret_file': must be an absolute path (or start "
	  "with ~/): a relative path would depend on the caller's directory", NULL, NULL },
	{ "~user path", HEAD SECRET "cache_dir: ~bob/cache\n",
	  "t.yaml:7:12: key 'cache_dir': must be an absolute path (or start with ~/): a relative "
	  "path would depend on the caller's directory", "", NULL },
	{ "bad log", HEAD SECRET "log: journal\n",
	  "t.yaml:7:6: key 'log': must be syslog, stderr or an absolute path", "", NULL },
	{ "aliases as a word", HEAD SECRET "aliases: root\n",
	  "t.yaml:7:10: key 'aliases': must be a mapping of local names to addresses, or the "
	  "absolute path of an aliases(5) file", "", NULL },
	{ "alias to a program", HEAD SECRET "aliases:\n  bugs: \"|/usr/bin/bugtrack\"\n",
	  "t.yaml:8:9: key 'aliases.bugs': tokenmail delivers only to addresses, not to files "
	  "or programs", "", NULL },
	{ "alias defined twice, case aside", HEAD SECRET "aliases:\n  root: a@x.example\n"
	  "  Root: b@x.example\n",
	  "t.yaml:9:9: key 'aliases.Root': defined twice (first at line 8)", "", NULL },
	{ "bad from", "accounts:\n  app:\n    from: root\n    smtp: {auth: none}\n",
	  "t.yaml:3:11: key 'accounts.app.from': must be a qualified address such as "
	  "user@example.com", NULL, NULL },
	{ "bad sender", HEAD SECRET "    senders: [app@example.com, \"x?*@example.com\"]\n",
	  "t.yaml:7:32: key 'accounts.app.senders': 'x?*@example.com' must be an address or a "
	  "pattern such as *@example.com", "", NULL },
	{ "empty senders", HEAD SECRET "    senders: []\n",
	  "t.yaml:7:14: key 'accounts.app.senders': needs at least one entry", "", NULL },
	{ "bad allowed user", HEAD SECRET "    allowed_users: [\"www-data, root\"]\n",
	  "t.yaml:7:21: key 'accounts.app.allowed_users': 'www-data, root' must be a login name "
	  "or %group", "", NULL },
	{ "bad tenant", "accounts:\n  app:\n    from: a@example.com\n    client_id: abc\n"
	  "    tenant: contoso/evil\n" SECRET,
	  "t.yaml:5:13: key 'accounts.app.tenant': must be a tenant id or domain (letters, "
	  "digits, '.', '-')", "", NULL },
	{ "bad host", HEAD SECRET "    smtp: {host: \"smtp.example.com:587\"}\n",
	  "t.yaml:7:18: key 'accounts.app.smtp.host': must be a host name or an IP address",
	  "", NULL },
	{ "http URL to a non-loopback host", HEAD SECRET
	  "    token_url: http://login.example.com/token\n",
	  "t.yaml:7:16: key 'accounts.app.token_url': must be an https:// URL (http:// only to a "
	  "loopback host)", "", NULL },
	{ "http authority to a non-loopback host", HEAD SECRET
	  "    authority: http://10.0.0.1\n",
	  "t.yaml:7:16: key 'accounts.app.authority': must be an https:// URL (http:// only to a "
	  "loopback host)", "", NULL },
	{ "URL with a password", HEAD SECRET
	  "https_proxy: http://user:pw@proxy.example.com:3128\n",
	  "t.yaml:7:14: key 'https_proxy': must be an http:// or https:// URL (no user name or "
	  "password)", "", NULL },
	{ "URL with a bad port", HEAD SECRET "    method: graph\n"
	  "    graph: {url: \"https://graph.example.com:99999/v1.0\"}\n",
	  "t.yaml:8:18: key 'accounts.app.graph.url': must be an https:// URL (http:// only to a "
	  "loopback host)", "", NULL },
	{ "two secret sources", HEAD SECRET "    client_secret: x\n",
	  "t.yaml:7:20: key 'accounts.app.client_secret': only one credential source is allowed, "
	  "and client_secret_file is given too", "", NULL },
	{ "secret and certificate", HEAD "    client_certificate: /c.pem\n    client_key: /k.pem\n"
	  "    client_secret_command: cat /s\n",
	  "t.yaml:8:28: key 'accounts.app.client_secret_command': only one credential source is "
	  "allowed, and client_certificate is given too", "", NULL },
	{ "no credential", HEAD,
	  "t.yaml:2:3: key 'accounts.app': client_credentials needs one credential: "
	  "client_secret, client_secret_file, client_secret_command, client_certificate with "
	  "client_key, or client_assertion_file", "", NULL },
	{ "certificate without key", HEAD "    client_certificate: /c.pem\n",
	  "t.yaml:6:25: key 'accounts.app.client_certificate': needs client_key (the "
	  "certificate's private key)", "", NULL },
	{ "key without certificate", HEAD SECRET "    client_key: /k.pem\n",
	  "t.yaml:7:17: key 'accounts.app.client_key': needs client_certificate", "", NULL },
	{ "alg without certificate", HEAD SECRET "    client_assertion_alg: PS256\n",
	  "t.yaml:7:27: key 'accounts.app.client_assertion_alg': applies only with "
	  "client_certificate", "", NULL },
	{ "refresh_token_file with client_credentials", HEAD SECRET
	  "    refresh_token_file: /rt\n",
	  "t.yaml:7:25: key 'accounts.app.refresh_token_file': applies only with grant: "
	  "refresh_token", "", NULL },
	{ "refresh_token with a certificate", HEAD "    grant: refresh_token\n"
	  "    client_certificate: /c.pem\n    client_key: /k.pem\n",
	  "t.yaml:7:25: key 'accounts.app.client_certificate': does not apply with grant: "
	  "refresh_token (a delegated account may have a client secret only)",
	  "t.yaml:8:17: key 'accounts.app.client_key': does not apply with grant: refresh_token "
	  "(a delegated account may have a client secret only)\n", NULL },
	{ "refresh_token with two secrets", HEAD "    grant: refresh_token\n"
	  "    client_secret_command: x\n" SECRET,
	  "t.yaml:8:25: key 'accounts.app.client_secret_file': only one client secret source is "
	  "allowed, and client_secret_command is given too", "", NULL },
	{ "client_credentials with tenant common", "accounts:\n  app:\n"
	  "    from: a@example.com\n    tenant: common\n    client_id: abc\n" SECRET,
	  "t.yaml:4:13: key 'accounts.app.tenant': client_credentials needs the tenant's id or "
	  "domain, not 'common'", "", NULL },
	{ "timeout 0", HEAD SECRET "timeout: 0\n",
	  "t.yaml:7:10: key 'timeout': must be 1-600", "", NULL },
	{ "timeout 601", HEAD SECRET "timeout: 601\n",
	  "t.yaml:7:10: key 'timeout': must be 1-600", "", NULL },
	{ "timeout with a unit", HEAD SECRET "timeout: 60s\n",
	  "t.yaml:7:10: key 'timeout': must be 1-600", "", NULL },
	{ "timeout negative", HEAD SECRET "timeout: -5\n",
	  "t.yaml:7:10: key 'timeout': must be 1-600", "", NULL },
	{ "timeout as a mapping", HEAD SECRET "timeout: {token: 5}\n",
	  "t.yaml:7:10: key 'timeout': must be a number, not a mapping", "", NULL },
	{ "timeout misspelt", HEAD SECRET "timout: 5\n",
	  "t.yaml:7:1: unknown key 'timout' (did you mean 'timeout'?)", "", NULL },
	{ "token_url without scope", HEAD SECRET
	  "    token_url: https://oauth2.googleapis.com/token\n",
	  "t.yaml:2:3: key 'accounts.app.scope': required with token_url: the default scopes "
	  "are Microsoft's", "",
	  "set scope: to what the provider documents (Gmail: https://mail.google.com/)" },
	{ "delegated token_url without scope", HEAD_DELEGATED
	  "    token_url: http://127.0.0.1:8080/token\n",
	  "t.yaml:2:3: key 'accounts.u.scope': required with token_url: the default scopes "
	  "are Microsoft's", "", NULL },
	{ "refused token_url: no scope error on top", HEAD SECRET
	  "    token_url: ftp://example.com/token\n",
	  "t.yaml:7:16: key 'accounts.app.token_url': must be an https:// URL (http:// only to a "
	  "loopback host)", "", NULL },
	{ "device_code_url over http to a non-loopback host", HEAD_DELEGATED
	  "    tenant: t.example\n    device_code_url: http://login.example.com/devicecode\n",
	  "t.yaml:7:22: key 'accounts.u.device_code_url': must be an https:// URL (http:// only "
	  "to a loopback host)", "", NULL },
	{ "authorize_url not a URL", HEAD_DELEGATED
	  "    tenant: t.example\n    authorize_url: accounts.google.com/o/oauth2/v2/auth\n",
	  "t.yaml:7:20: key 'accounts.u.authorize_url': must be an https:// URL (http:// only "
	  "to a loopback host)", "", NULL },
	{ "device_code_url with client_credentials", HEAD SECRET
	  "    device_code_url: https://login.example.com/devicecode\n",
	  "t.yaml:7:22: key 'accounts.app.device_code_url': applies only with grant: "
	  "refresh_token", "", NULL },
	{ "authorize_url with client_credentials", HEAD SECRET
	  "    authorize_url: https://login.example.com/authorize\n",
	  "t.yaml:7:20: key 'accounts.app.authorize_url': applies only with grant: "
	  "refresh_token", "", NULL },
	{ "refresh_token with an assertion file", HEAD_DELEGATED
	  "    tenant: t.example\n    client_assertion_file: /run/token\n",
	  "t.yaml:7:28: key 'accounts.u.client_assertion_file': does not apply with grant: "
	  "refresh_token (a delegated account may have a client secret only)", "", NULL },
	{ "refresh_token with client_assertion_alg", HEAD_DELEGATED
	  "    tenant: t.example\n    client_assertion_alg: RS256\n",
	  "t.yaml:7:27: key 'accounts.u.client_assertion_alg': does not apply with grant: "
	  "refresh_token (a delegated account may have a client secret only)", "", NULL },
	{ "refresh_token without tenant or token_url", HEAD_DELEGATED,
	  "t.yaml:2:3: key 'accounts.u': needs tenant: (or token_url:)", "", NULL },
	{ "no client_id", "accounts:\n  app:\n    from: a@example.com\n    tenant: t.example\n"
	  SECRET,
	  "t.yaml:2:3: key 'accounts.app.client_id': required (the application's id)", "", NULL },
	{ "no tenant", "accounts:\n  app:\n    from: a@example.com\n    client_id: abc\n" SECRET,
	  "t.yaml:2:3: key 'accounts.app': needs tenant: (or token_url:)", "", NULL },
	{ "no from", "accounts:\n  app:\n    tenant: t.example\n    client_id: abc\n" SECRET,
	  "t.yaml:2:3: key 'accounts.app': needs from: (the mailbox that sends) or senders:",
	  "", NULL },
	{ "pattern first without from", "accounts:\n  app:\n    senders: \"*@example.com\"\n"
	  "    tenant: t.example\n    client_id: abc\n" SECRET,
	  "t.yaml:2:3: key 'accounts.app.from': required when the first sender is a pattern "
	  "('*@example.com')", "", NULL },
	{ "tls none to a non-loopback host", HEAD SECRET
	  "    smtp: {host: smtp.example.com, tls: none}\n",
	  "t.yaml:7:41: key 'accounts.app.smtp.tls': none is allowed only to a loopback host "
	  "(localhost, 127.0.0.0/8, ::1), not 'smtp.example.com'", "",
	  "use tls: starttls (port 587) or tls: tls (port 465): a token must never cross a "
	  "network in clear" },
	{ "tls none with the default host", HEAD SECRET "    smtp: {tls: none, auth: none}\n",
	  "t.yaml:7:17: key 'accounts.app.smtp.tls': none is allowed only to a loopback host "
	  "(localhost, 127.0.0.0/8, ::1), not 'smtp.office365.com'", "", NULL },
	{ "tls none to 128.0.0.1", HEAD SECRET "    smtp: {host: 128.0.0.1, tls: none}\n",
	  "t.yaml:7:34: key 'accounts.app.smtp.tls': none is allowed only to a loopback host "
	  "(localhost, 127.0.0.0/8, ::1), not '128.0.0.1'", "", NULL },
	{ "smtp settings with method graph", HEAD SECRET "    method: graph\n"
	  "    smtp: {port: 587}\n",
	  "t.yaml:8:11: key 'accounts.app.smtp': applies only with method: smtp", "", NULL },
	{ "save_to_sent_items false with graph", HEAD SECRET "    method: graph\n"
	  "    graph: {save_to_sent_items: false}\n",
	  "t.yaml:8:33: key 'accounts.app.graph.save_to_sent_items': false cannot be honoured: "
	  "Microsoft Graph saves every message sent in MIME form to Sent Items",
	  "", "remove the key: a copy in Sent Items is part of sending through Graph" },
	{ "graph max_size 0", HEAD SECRET "    method: graph\n    graph: {max_size: 0}\n",
	  "t.yaml:8:23: key 'accounts.app.graph.max_size': must be 1-157286400", "", NULL },
	{ "graph max_size over 150 MB", HEAD SECRET "    method: graph\n"
	  "    graph: {max_size: 157286401}\n",
	  "t.yaml:8:23: key 'accounts.app.graph.max_size': must be 1-157286400", "", NULL },
	{ "graph settings with method smtp", HEAD SECRET "    graph: {save_to_sent_items: false}\n",
	  "t.yaml:7:12: key 'accounts.app.graph': applies only with method: graph", "", NULL },
	{ "missing default account", HEAD SECRET "default_account: nope\n",
	  "t.yaml:7:18: key 'default_account': no account is called 'nope'", "",
	  "default_account must be one of the names under accounts:" },
	{ "same sender in two accounts", HEAD SECRET
	  "  other:\n    senders: [x@example.com, App@Example.COM]\n"
	  "    tenant: t.example\n    client_id: abc\n" SECRET,
	  "t.yaml:8:30: key 'accounts.other.senders': 'App@Example.COM' is also a sender of "
	  "account 'app'", "", NULL },
	{ "same pattern in two accounts", "accounts:\n"
	  "  a: {senders: [\"*@x.example\"], from: a@x.example, smtp: {auth: none}}\n"
	  "  b: {senders: [\"*@X.example\"], from: b@x.example, smtp: {auth: none}}\n",
	  "t.yaml:3:17: key 'accounts.b.senders': '*@X.example' is also a sender of account 'a'",
	  "", NULL },
	{ "from of one account listed by another", "accounts:\n"
	  "  a: {from: a@x.example, smtp: {auth: none}}\n"
	  "  b: {senders: [a@x.example], smtp: {auth: none}}\n",
	  "t.yaml:3:17: key 'accounts.b.senders': 'a@x.example' is also a sender of account 'a'",
	  "", NULL },
	{ "several errors reported",
	  "acounts:\n  app: {}\nlog: journal\nretry: {attempts: 0}\n",
	  "t.yaml:1:1: unknown key 'acounts' (did you mean 'accounts'?)",
	  "t.yaml:3:6: key 'log': must be syslog, stderr or an absolute path\n"
	  "t.yaml:4:19: key 'retry.attempts': must be 1-10\n"
	  "t.yaml:1:1: no accounts\n", "" },
	{ "errors in several accounts", "accounts:\n"
	  "  a: {from: a@x.example, smtp: {port: 0}}\n"
	  "  b: {from: b@x.example, method: mail, tenant: t.example}\n",
	  "t.yaml:2:39: key 'accounts.a.smtp.port': must be 1-65535",
	  "t.yaml:3:34: key 'accounts.b.method': must be smtp or graph\n"
	  "t.yaml:2:3: key 'accounts.a.client_id': required (the application's id)\n"
	  "t.yaml:2:3: key 'accounts.a': needs tenant: (or token_url:)\n"
	  "t.yaml:2:3: key 'accounts.a': client_credentials needs one credential: client_secret, "
	  "client_secret_file, client_secret_command, client_certificate with client_key, or "
	  "client_assertion_file\n"
	  "t.yaml:3:3: key 'accounts.b.client_id': required (the application's id)\n"
	  "t.yaml:3:3: key 'accounts.b': client_credentials needs one credential: client_secret, "
	  "client_secret_file, client_secret_command, client_certificate with client_key, or "
	  "client_assertion_file\n", NULL },
};

static void
test_errors(void)
{
	size_t i;

	for (i = 0; i < sizeof(error_cases) / sizeof(error_cases[0]); i++) {
		const struct error_case *c = &error_cases[i];
		struct config cfg;
		struct tm_err err;
		int rc = parse(c->yaml, &cfg, &err);

		tap_is_int(rc, -1, "%s: refused", c->what);
		tap_is_str(err.msg, c->msg, "%s: message", c->what);
		if (c->detail)
			tap_is_str(err.detail, c->detail, "%s: detail", c->what);
		if (c->hint)
			tap_is_str(err.hint, c->hint, "%s: hint", c->what);
		tap_ok(err.cls == TM_ERR_CONFIG && err.exit == EX_CONFIG, "%s: EX_CONFIG", c->what);
		config_free(&cfg);
	}
}

static void
test_error_limit(void)
{
	struct strbuf b;
	struct config cfg;
	struct tm_err err;
	char want[64];
	int i;

	strbuf_init(&b, 1 << 20);
	(void)strbuf_append_str(&b, HEAD SECRET);
	for (i = 0; i < TM_CONFIG_ERRORS_MAX + 5; i++)
		(void)strbuf_appendf(&b, "bad%d: x\n", i);
	tap_is_int(parse(b.data, &cfg, &err), -1, "many errors: refused");
	tap_is_str(err.msg, "t.yaml:7:1: unknown key 'bad0'", "many errors: first in msg");
	(void)str_format(want, sizeof(want), "(%d more errors not shown)\n", 5);
	tap_ok(strstr(err.detail, want) != NULL, "many errors: the rest counted");
	tap_ok(strstr(err.detail, "unknown key 'bad19'") != NULL, "many errors: 20th kept");
	tap_ok(strstr(err.detail, "unknown key 'bad20'") == NULL, "many errors: 21st not kept");
	config_free(&cfg);
	strbuf_reset(&b);
	(void)strbuf_append_str(&b, HEAD SECRET);
	/* 10 messages of about 300 octets: more than err.detail holds. */
	for (i = 0; i < 10; i++)
		(void)strbuf_appendf(&b, "long_key_%03d_%0250d: x\n", i, 0);
	tap_is_int(parse(b.data, &cfg, &err), -1, "long errors: refused");
	tap_ok(strstr(err.detail, " more errors not shown)\n") != NULL,
	    "long errors: what did not fit is counted");
	tap_ok(strlen(err.detail) < sizeof(err.detail) - 1, "long errors: detail not overrun");
	config_free(&cfg);
	strbuf_free(&b);
}

/* Aliases (*x) repeat nodes: the walk is bounded however the file nests them. */
static void
test_node_limit(void)
{
	struct strbuf b;
	struct config cfg;
	struct tm_err err;
	int i;

	strbuf_init(&b, 1 << 20);
	(void)strbuf_append_str(&b, HEAD SECRET "x: &big [");
	for (i = 0; i < 1000; i++)
		(void)strbuf_append_str(&b, i ? ", a@b.example" : "a@b.example");
	(void)strbuf_append_str(&b, "]\naliases:\n");
	for (i = 0; i < 200; i++)
		(void)strbuf_appendf(&b, "  n%d: *big\n", i);
	tap_is_int(parse(b.data, &cfg, &err), -1, "node limit: refused");
	tap_ok(strstr(err.detail, "t.yaml: more than 100000 YAML nodes") != NULL,
	    "node limit: reported");
	config_free(&cfg);
	strbuf_free(&b);
}

/* ---- files ---- */

static char tmpdir[64];

static void
write_file(const char *path, const char *text, mode_t mode)
{
	FILE *f = fopen(path, "w");

	if (f == NULL) {
		perror(path);
		exit(99);
	}
	fputs(text, f);
	fclose(f);
	chmod(path, mode);
}

static void
make_dir(const char *path)
{
	if (mkdir(path, 0700) < 0 && errno != EEXIST) {
		perror(path);
		exit(99);
	}
}

static void
test_find(void)
{
	char xdg[128], home[128], sys[128], p[256], out[256];
	struct tm_err err;

	(void)str_format(xdg, sizeof(xdg), "%s/xdg", tmpdir);
	(void)str_format(home, sizeof(home), "%s/home", tmpdir);
	(void)str_format(sys, sizeof(sys), "%s/tokenmail.yaml", tmpdir);
	make_dir(xdg);
	make_dir(home);
	tap_is_int(config_find(NULL, xdg, home, true, sys, out, sizeof(out), &err), -1,
	    "find: nothing exists");
	(void)str_format(p, sizeof(p), "no configuration file: %s does not exist", sys);
	tap_is_str(err.msg, p, "find: nothing exists: message");
	tap_ok(err.exit == EX_CONFIG && err.hint[0], "find: EX_CONFIG with a hint");
	tap_is_int(config_find("/nonexistent/x.yaml", xdg, home, true, sys, out, sizeof(out),
	    &err), 0, "find: -C wins even when missing");
	tap_is_str(out, "/nonexistent/x.yaml", "find: -C path");
	write_file(sys, "", 0644);
	tap_is_int(config_find(NULL, xdg, home, true, sys, out, sizeof(out), &err), 0,
	    "find: system file");
	tap_is_str(out, sys, "find: system path when no user file");
	(void)str_format(p, sizeof(p), "%s/.config", home);
	make_dir(p);
	(void)str_format(p, sizeof(p), "%s/.config/tokenmail", home);
	make_dir(p);
	(void)str_format(p, sizeof(p), "%s/.config/tokenmail/config.yaml", home);
	write_file(p, "", 0600);
	tap_is_int(config_find(NULL, NULL, home, true, sys, out, sizeof(out), &err), 0,
	    "find: ~/.config without XDG_CONFIG_HOME");
	tap_is_str(out, p, "find: home's config");
	tap_is_int(config_find(NULL, "relative/dir", home, true, sys, out, sizeof(out), &err), 0,
	    "find: relative XDG_CONFIG_HOME ignored");
	tap_is_str(out, p, "find: relative XDG_CONFIG_HOME -> home's config");
	tap_is_int(config_find(NULL, xdg, home, true, sys, out, sizeof(out), &err), 0,
	    "find: XDG_CONFIG_HOME set, no file there");
	tap_is_str(out, sys, "find: XDG_CONFIG_HOME without a file -> system (not ~/.config)");
	(void)str_format(p, sizeof(p), "%s/tokenmail", xdg);
	make_dir(p);
	(void)str_format(p, sizeof(p), "%s/tokenmail/config.yaml", xdg);
	write_file(p, "", 0600);
	tap_is_int(config_find(NULL, xdg, home, true, sys, out, sizeof(out), &err), 0,
	    "find: XDG file");
	tap_is_str(out, p, "find: XDG_CONFIG_HOME's config");
	tap_is_int(config_find(NULL, xdg, home, false, sys, out, sizeof(out), &err), 0,
	    "find: user config not used (setgid)");
	tap_is_str(out, sys, "find: setgid -> system path");
	tap_is_int(config_find(NULL, xdg, home, true, sys, out, 8, &err), -1,
	    "find: name too long for out");
}

static const char inline_secret_yaml[] =
    "accounts:\n"
    "  app:\n"
    "    from: app@example.com\n"
    "    tenant: t.example\n"
    "    client_id: abc\n"
    "    client_secret: s3cret\n";

static void
test_load_modes(void)
{
	struct config_params p = { .home = "/home/u", .check_file_modes = true, .uid = getuid() };
	char path[128], want[512];
	struct config cfg;
	struct tm_err err;

	(void)str_format(path, sizeof(path), "%s/inline.yaml", tmpdir);
	write_file(path, inline_secret_yaml, 0644);
	tap_is_int(config_load(path, &p, &cfg, &err), -1, "inline secret in a 0644 file refused");
	(void)str_format(want, sizeof(want), "%s:6:20: key 'accounts.app.client_secret': an "
	    "inline secret needs a file only you can read, but %s is mode 0644: group or others "
	    "have access to it", path, path);
	tap_is_str(err.msg, want, "mode error names file and mode");
	(void)str_format(want, sizeof(want), "chmod 600 %s, or move the secret to "
	    "client_secret_file", path);
	tap_is_str(err.hint, want, "mode error hint");
	tap_is_int(err.exit, EX_CONFIG, "mode error is EX_CONFIG");
	config_free(&cfg);
	chmod(path, 0600);
	tap_is_int(config_load(path, &p, &cfg, &err), 0, "inline secret in a 0600 file accepted");
	tap_is_str(err.msg, "", "0600: no error");
	tap_is_str(cfg.path, path, "config path kept");
	config_free(&cfg);
	chmod(path, 0640);
	p.check_file_modes = false;
	tap_is_int(config_load(path, &p, &cfg, &err), 0, "modes not checked when not asked");
	config_free(&cfg);
	p.check_file_modes = true;
	write_file(path, HEAD SECRET, 0644);
	tap_is_int(config_load(path, &p, &cfg, &err), 0,
	    "0644 file without inline secret accepted");
	config_free(&cfg);
	if (getuid() == 0) {
		write_file(path, inline_secret_yaml, 0640);
		if (chown(path, 0, 4242) == 0) {
			p.group_readable_ok = true;
			p.group = 4242;
			tap_is_int(config_load(path, &p, &cfg, &err), 0,
			    "setgid: root:GROUP 0640 accepted");
			config_free(&cfg);
			p.group = 4243;
			tap_is_int(config_load(path, &p, &cfg, &err), -1,
			    "setgid: another group refused");
			config_free(&cfg);
			p.group_readable_ok = false;
		}
	}
}

static void
test_load_files(void)
{
	struct config_params p = { .home = "/home/u", .check_file_modes = true, .uid = getuid() };
	char path[128], link[128], aliases[128], text[512], want[512];
	struct config cfg;
	struct tm_err err;

	(void)str_format(path, sizeof(path), "%s/missing.yaml", tmpdir);
	tap_is_int(config_load(path, &p, &cfg, &err), -1, "missing file refused");
	(void)str_format(want, sizeof(want), "cannot open %s: No such file or directory", path);
	tap_is_str(err.msg, want, "missing file message");
	tap_ok(err.exit == EX_CONFIG && err.hint[0] != '\0', "missing file: EX_CONFIG and a hint");
	config_free(&cfg);
	tap_is_int(config_load(tmpdir, &p, &cfg, &err), -1, "directory refused");
	(void)str_format(want, sizeof(want), "%s: not a regular file", tmpdir);
	tap_is_str(err.msg, want, "directory message");
	config_free(&cfg);

	(void)str_format(path, sizeof(path), "%s/real.yaml", tmpdir);
	(void)str_format(link, sizeof(link), "%s/link.yaml", tmpdir);
	(void)str_format(aliases, sizeof(aliases), "%s/aliases", tmpdir);
	(void)str_format(text, sizeof(text), "aliases: %s\n" HEAD SECRET, aliases);
	write_file(path, text, 0644);
	write_file(aliases, "# test\npostmaster: root\nroot: ops@example.com\n", 0644);
	unlink(link);
	if (symlink(path, link) < 0)
		perror("symlink");
	tap_is_int(config_load(link, &p, &cfg, &err), 0, "config through a symlink, aliases file");
	tap_is_str(err.msg, "", "symlink + aliases: no error");
	tap_is_int((long)cfg.aliases.count, 2, "aliases file loaded");
	tap_is_str(cfg.aliases.source, aliases, "aliases source is the file");
	config_free(&cfg);

	write_file(aliases, "root: ops@example.com\nbugs: |/usr/bin/bugs\n", 0644);
	tap_is_int(config_load(path, &p, &cfg, &err), -1, "bad aliases file refused");
	(void)str_format(want, sizeof(want), "%s:2: alias 'bugs': tokenmail delivers only to "
	    "addresses, not to files or programs", aliases);
	tap_is_str(err.msg, want, "aliases file error keeps its file:line");
	config_free(&cfg);
	unlink(aliases);
	tap_is_int(config_load(path, &p, &cfg, &err), -1, "missing aliases file refused");
	(void)str_format(want, sizeof(want), "cannot open aliases file %s: No such file or "
	    "directory", aliases);
	tap_is_str(err.msg, want, "missing aliases file message");
	config_free(&cfg);

	(void)str_format(text, sizeof(text), "aliases: %s\nlog: journal\n" HEAD SECRET, aliases);
	write_file(path, text, 0644);
	write_file(aliases, "root ops@example.com\n", 0644);
	tap_is_int(config_load(path, &p, &cfg, &err), -1, "config and aliases errors together");
	(void)str_format(want, sizeof(want), "%s:1: expected \"name: address, ...\"\n", aliases);
	tap_is_str(err.detail, want, "aliases file error after the config's");
	config_free(&cfg);
}

static void
test_secret_files(void)
{
	struct config_params p = { .home = "/home/u", .uid = getuid() };
	struct account a = { .name = "app" };
	char secret[128], key[128], link[128], want[512];
	struct tm_err err;

	(void)str_format(secret, sizeof(secret), "%s/app.secret", tmpdir);
	(void)str_format(key, sizeof(key), "%s/app.key", tmpdir);
	(void)str_format(link, sizeof(link), "%s/app.link", tmpdir);
	write_file(secret, "s3cret\n", 0644);
	a.client_secret_file = secret;
	tap_is_int(config_check_secret_files(&a, &p, &err), -1, "secret file 0644 refused");
	(void)str_format(want, sizeof(want), "client_secret_file %s is mode 0644: group or "
	    "others have access to it; it holds a secret", secret);
	tap_is_str(err.msg, want, "secret file message");
	(void)str_format(want, sizeof(want), "chmod 600 %s", secret);
	tap_is_str(err.hint, want, "secret file hint");
	tap_is_int(err.exit, EX_CONFIG, "secret file: EX_CONFIG");
	chmod(secret, 0600);
	tap_is_int(config_check_secret_files(&a, &p, &err), 0, "secret file 0600 accepted");
	a.client_key = key;
	a.refresh_token_file = "/nonexistent/refresh-token";
	tap_is_int(config_check_secret_files(&a, &p, &err), 0, "missing files skipped");
	write_file(key, "KEY", 0604);
	tap_is_int(config_check_secret_files(&a, &p, &err), -1, "key 0604 refused");
	(void)str_format(want, sizeof(want), "client_key %s is mode 0604: group or others have "
	    "access to it; it holds a secret", key);
	tap_is_str(err.msg, want, "key message");
	chmod(key, 0600);
	unlink(link);
	if (symlink(key, link) < 0)
		perror("symlink");
	a.client_key = link;
	tap_is_int(config_check_secret_files(&a, &p, &err), 0, "symlink to a 0600 key accepted");
	a.client_key = tmpdir;
	tap_is_int(config_check_secret_files(&a, &p, &err), -1, "directory as a key refused");
	a.client_key = NULL;
	if (getuid() == 0 && chown(secret, 4242, 4242) == 0) {
		p.uid = 1000;
		tap_is_int(config_check_secret_files(&a, &p, &err), -1,
		    "file of another user refused");
		(void)str_format(want, sizeof(want), "client_secret_file %s is owned by uid 4242, "
		    "not by uid 1000 or root; it holds a secret", secret);
		tap_is_str(err.msg, want, "owner message");
	}
}

static void
test_example_file(void)
{
	const char *srcdir = getenv("TM_SRCDIR");
	char path[TM_PATH_MAX];
	const struct account *g;
	struct config cfg;
	struct tm_err err;
	struct stat st;
	char *text;
	FILE *f;
	size_t n;

	(void)str_format(path, sizeof(path), "%s/etc/tokenmail.yaml.example",
	    srcdir ? srcdir : ".");
	f = fopen(path, "r");
	if (f == NULL || fstat(fileno(f), &st) < 0) {
		tap_ok(0, "example file %s readable", path);
		if (f)
			fclose(f);
		return;
	}
	text = xmalloc((size_t)st.st_size + 1);
	n = fread(text, 1, (size_t)st.st_size, f);
	fclose(f);
	text[n] = '\0';
	tap_is_int(config_parse_buffer(path, text, n, &params, &cfg, &err), 0,
	    "example file loads");
	tap_is_str(err.msg, "", "example file: no error");
	tap_is_str(err.detail, "", "example file: no further errors");
	tap_is_int((long)cfg.naccounts, 4, "example file: four accounts");
	tap_ok(config_account(&cfg, "app") && config_account(&cfg, "reports") &&
	    config_account(&cfg, "alice") && config_account(&cfg, "gmail"),
	    "example file: app, reports, alice, gmail");
	tap_ok(cfg.aliases.count >= 2, "example file: aliases");
	tap_is_int(cfg.timeout_seconds, 60, "example file: timeout");
	g = config_account(&cfg, "gmail");
	if (g) {
		/* Google's device code flow does not grant the mail scope: none. */
		tap_is_str(config_device_code_url(g), NULL,
		    "example file: no device code URL for Google");
		tap_is_str(config_authorize_url(g), "https://accounts.google.com/o/oauth2/v2/auth",
		    "example file: Google's authorize URL");
	}
	g = config_account(&cfg, "alice");
	if (g)
		tap_is_str(config_device_code_url(g), "https://login.microsoftonline.com/"
		    "contoso.onmicrosoft.com/oauth2/v2.0/devicecode",
		    "example file: alice's device code URL derived");
	config_free(&cfg);
	free(text);
}

static void
test_names(void)
{
	tap_is_str(config_method_name(METHOD_SMTP), "smtp", "method name smtp");
	tap_is_str(config_method_name(METHOD_GRAPH), "graph", "method name graph");
	tap_is_str(config_tls_name(SMTP_TLS_STARTTLS), "starttls", "tls name starttls");
	tap_is_str(config_tls_name(SMTP_TLS_IMPLICIT), "tls", "tls name tls");
	tap_is_str(config_tls_name(SMTP_TLS_NONE), "none", "tls name none");
	tap_is_str(config_auth_name(SMTP_AUTH_XOAUTH2), "xoauth2", "auth name xoauth2");
	tap_is_str(config_auth_name(SMTP_AUTH_OAUTHBEARER), "oauthbearer", "auth name oauthbearer");
	tap_is_str(config_auth_name(SMTP_AUTH_NONE), "none", "auth name none");
}

static void
remove_tmpdir(void)
{
	char cmd[128];

	(void)str_format(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", tmpdir);
}

int
main(void)
{
	test_smtp_app_only_defaults();
	test_graph_app_only();
	test_delegated();
	test_gmail_and_relay();
	test_top_level_keys();
	test_small_forms();
	test_no_home();
	test_yaml_anchors();
	test_sign_in_urls();
	test_sign_in_urls_relay();
	test_timeout();
	test_errors();
	test_error_limit();
	test_node_limit();
	test_names();
	test_example_file();
	(void)str_copy(tmpdir, sizeof(tmpdir), "/tmp/config_test.XXXXXX");
	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		return 99;
	}
	test_find();
	test_load_modes();
	test_load_files();
	test_secret_files();
	remove_tmpdir();
	return tap_done();
}
