/*
 * config.c: the configuration's public API (config.h). Finding the file,
 * reading it (a regular file, bounded size), running the YAML walk
 * (config_yaml.c) and the pass across keys (config_check.c), loading a
 * named aliases file, the permission rules for files that hold secrets, and
 * the error list every part reports into.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config_priv.h"
#include "tm_limits.h"
#include "util.h"

/* ---- the error list ---- */

/* Room kept at the end of err->detail for "(N more errors not shown)". */
#define DETAIL_RESERVE	48

/* Record one complete error line: the first in msg, then detail lines while
   they fit (TM_CONFIG_ERRORS_MAX in all), the rest only counted. */
static void
cfg_record(struct cfg_loader *l, const char *line)
{
	size_t used = strlen(l->err->detail);

	l->nerrors++;
	if (l->nerrors == 1)
		tm_err_set(l->err, TM_ERR_CONFIG, EX_CONFIG, "%s", line);
	else if (l->nerrors <= TM_CONFIG_ERRORS_MAX &&
	    used + strlen(line) + 2 + DETAIL_RESERVE <= sizeof(l->err->detail))
		tm_err_detail(l->err, "%s", line);
	else
		l->hidden++;
}

void
cfg_error(struct cfg_loader *l, struct cfg_pos at, const char *fmt, ...)
{
	char text[512], line[600];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (at.line)
		(void)str_format(line, sizeof(line), "%s:%u:%u: %s", l->name, at.line, at.col,
		    text);
	else
		(void)str_format(line, sizeof(line), "%s: %s", l->name, text);
	cfg_record(l, line);
}

void
cfg_key_error(struct cfg_loader *l, struct cfg_pos at, const char *key, const char *fmt, ...)
{
	char text[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	cfg_error(l, at, "key '%s': %s", key, text);
}

void
cfg_hint(struct cfg_loader *l, const char *fmt, ...)
{
	va_list ap;

	if (l->nerrors != 1)
		return;
	va_start(ap, fmt);
	vsnprintf(l->err->hint, sizeof(l->err->hint), fmt, ap);
	va_end(ap);
}

/* Pass the errors of another tm_err (an aliases file's, which name their
   own file and line) into the list as they are. */
static void
cfg_errors_from(struct cfg_loader *l, const struct tm_err *e)
{
	const char *p = e->detail;
	bool first = l->nerrors == 0;
	char line[600];

	cfg_record(l, e->msg);
	while (*p) {
		size_t n = strcspn(p, "\n");

		(void)str_copy_n(line, sizeof(line), p, n);
		cfg_record(l, line);
		p += n + (p[n] == '\n');
	}
	if (first && e->hint[0])
		(void)str_copy(l->err->hint, sizeof(l->err->hint), e->hint);
}

char *
cfg_expand_home(const char *home, const char *v)
{
	size_t hl;

	if (home == NULL || v[0] != '~' || (v[1] != '/' && v[1] != '\0'))
		return xstrdup(v);
	hl = strlen(home);
	while (hl > 0 && home[hl - 1] == '/')
		hl--;
	if (v[1] == '\0')
		return hl ? xstrndup(home, hl) : xstrdup("/");
	return xasprintf("%.*s%s", (int)hl, home, v + 1);
}

/* ---- parsing ---- */

static void
loader_free(struct cfg_loader *l)
{
	size_t i;

	if (l->acct)
		for (i = 0; i < l->cfg->naccounts; i++)
			free(l->acct[i].sender_pos);
	free(l->acct);
	l->acct = NULL;
}

static void
parse_text(struct cfg_loader *l, const char *text, size_t len)
{
	if (cfg_yaml_walk(l, text, len) == 0)
		cfg_check(l);
}

static void
loader_init(struct cfg_loader *l, const char *name, const struct config_params *p,
    struct config *cfg, struct tm_err *err)
{
	memset(l, 0, sizeof(*l));
	memset(cfg, 0, sizeof(*cfg));
	tm_err_clear(err);
	l->name = name ? name : "(config)";
	l->p = p;
	l->cfg = cfg;
	l->err = err;
	cfg->path = xstrdup(l->name);
	cfg->aliases.source = xstrdup(l->name);
}

static int
loader_finish(struct cfg_loader *l)
{
	if (l->hidden)
		tm_err_detail(l->err, "(%u more errors not shown)", l->hidden);
	loader_free(l);
	return l->nerrors ? -1 : 0;
}

int
config_parse_buffer(const char *name, const char *text, size_t len,
    const struct config_params *p, struct config *cfg, struct tm_err *err)
{
	struct cfg_loader l;

	loader_init(&l, name, p, cfg, err);
	parse_text(&l, text, len);
	return loader_finish(&l);
}

/* ---- files ---- */

/*
 * NULL if st is acceptable for a file that holds a secret, else what is
 * wrong, written to why[size].
 */
static const char *
secret_stat_problem(const struct stat *st, const struct config_params *p, char *why,
    size_t size)
{
	mode_t perm = st->st_mode & 07777;

	if (!S_ISREG(st->st_mode))
		(void)str_copy(why, size, "is not a regular file");
	else if (st->st_uid != p->uid && st->st_uid != 0)
		(void)str_format(why, size, "is owned by uid %lu, not by uid %lu or root",
		    (unsigned long)st->st_uid, (unsigned long)p->uid);
	else if ((perm & 077) == 0)
		return NULL;
	else if (p->group_readable_ok && st->st_uid == 0 && st->st_gid == p->group &&
	    (perm & 027) == 0)
		return NULL;
	else
		(void)str_format(why, size, "is mode %04o: group or others have access to it",
		    (unsigned)perm);
	return why;
}

/*
 * Read path (following symlinks; a regular file of at most
 * TM_CONFIG_FILE_MAX bytes) into *out, NUL-terminated. One buffer of the
 * file's size, never grown: a realloc would leave copies of an inline
 * secret behind in freed memory.
 */
static int
read_config_file(const char *path, char **out, size_t *len, struct stat *st,
    struct tm_err *err)
{
	char *buf = NULL;
	size_t cap;
	int fd, rc = -1;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG, "cannot open %s: %s", path,
		    strerror(errno));
		if (errno == ENOENT)
			tm_err_hint(err, "create it (see tokenmail.yaml(5)), or name another "
			    "file with -C FILE");
		goto out;
	}
	if (fstat(fd, st) < 0 || !S_ISREG(st->st_mode)) {
		tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG, "%s: not a regular file", path);
		goto out;
	}
	if (st->st_size > TM_CONFIG_FILE_MAX) {
		tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG, "%s: larger than %d bytes", path,
		    TM_CONFIG_FILE_MAX);
		goto out;
	}
	cap = (size_t)st->st_size + 1;	/* one more: notice a file that grew */
	buf = xmalloc(cap + 1);
	if (read_fd_bounded(fd, buf, cap, len) < 0) {
		tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG, "cannot read %s: %s", path,
		    strerror(errno));
		goto out;
	}
	if (*len == cap) {
		tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG, "%s: changed while being read", path);
		goto out;
	}
	buf[*len] = '\0';
	*out = buf;
	buf = NULL;
	rc = 0;
out:
	if (buf) {
		secret_wipe(buf, cap + 1);
		free(buf);
	}
	if (fd >= 0)
		close(fd);
	return rc;
}

/* Where the first inline client_secret is, for the mode error. */
static size_t
first_inline_secret(const struct cfg_loader *l)
{
	size_t i;

	for (i = 0; i < l->cfg->naccounts; i++)
		if (l->cfg->accounts[i].client_secret)
			break;
	return i;
}

static void
check_config_mode(struct cfg_loader *l, const struct stat *st)
{
	char why[160], key[TM_NAME_MAX + 64];
	size_t i;

	if (!l->p || !l->p->check_file_modes || !l->cfg->has_inline_secret ||
	    secret_stat_problem(st, l->p, why, sizeof(why)) == NULL)
		return;
	i = first_inline_secret(l);
	if (i == l->cfg->naccounts)
		return;
	(void)str_format(key, sizeof(key), "accounts.%s.client_secret", l->cfg->accounts[i].name);
	cfg_key_error(l, l->acct[i].keys.pos[AK_CLIENT_SECRET], key,
	    "an inline secret needs a file only you can read, but %s %s", l->name, why);
	cfg_hint(l, "chmod 600 %s, or move the secret to client_secret_file", l->name);
}

static void
load_aliases_file(struct cfg_loader *l)
{
	struct tm_err e;

	if (l->cfg->aliases_file == NULL)
		return;
	tm_err_clear(&e);
	if (aliases_load_file(&l->cfg->aliases, l->cfg->aliases_file, &e) < 0)
		cfg_errors_from(l, &e);
}

int
config_load(const char *path, const struct config_params *p, struct config *cfg,
    struct tm_err *err)
{
	struct cfg_loader l;
	struct stat st;
	char *text = NULL;
	size_t len = 0;

	loader_init(&l, path, p, cfg, err);
	if (read_config_file(path, &text, &len, &st, err) < 0) {
		l.nerrors = 1;
		goto out;
	}
	parse_text(&l, text, len);
	check_config_mode(&l, &st);
	load_aliases_file(&l);
out:
	if (text) {
		secret_wipe(text, len);
		free(text);
	}
	return loader_finish(&l);
}

/* ---- finding the file ---- */

static bool
file_exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

static int
put_path(char *out, size_t size, const char *path, struct tm_err *err)
{
	if (str_copy(out, size, path) < 0)
		return tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG,
		    "config file name too long: %.200s", path);
	return 0;
}

int
config_find(const char *explicit_path, const char *xdg_config_home, const char *home,
    bool use_user_config, const char *system_path, char *out, size_t size,
    struct tm_err *err)
{
	char user[TM_PATH_MAX];
	int n = -1;

	if (explicit_path)
		return put_path(out, size, explicit_path, err);
	if (use_user_config && xdg_config_home && xdg_config_home[0] == '/')
		n = str_format(user, sizeof(user), "%s/tokenmail/config.yaml", xdg_config_home);
	else if (use_user_config && home && home[0] == '/')
		n = str_format(user, sizeof(user), "%s/.config/tokenmail/config.yaml", home);
	if (n == 0 && file_exists(user))
		return put_path(out, size, user, err);
	if (system_path && file_exists(system_path))
		return put_path(out, size, system_path, err);
	tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG, "no configuration file: %s does not exist",
	    system_path ? system_path : "the system configuration");
	if (use_user_config && n == 0)
		tm_err_hint(err, "create %s or %s (see tokenmail.yaml(5)), or use -C FILE",
		    user, system_path ? system_path : "/etc/tokenmail.yaml");
	else
		tm_err_hint(err, "create %s (see tokenmail.yaml(5))",
		    system_path ? system_path : "/etc/tokenmail.yaml");
	return -1;
}

/* ---- accounts ---- */

const struct account *
config_account(const struct config *cfg, const char *name)
{
	size_t i;

	for (i = 0; name && i < cfg->naccounts; i++)
		if (cfg->accounts[i].name && strcmp(cfg->accounts[i].name, name) == 0)
			return &cfg->accounts[i];
	return NULL;
}

static int
check_secret_file(const char *what, const char *path, const struct config_params *p,
    struct tm_err *err)
{
	struct stat st;
	char why[160];

	if (path == NULL)
		return 0;
	if (stat(path, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		return tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG, "cannot check %s %s: %s", what,
		    path, strerror(errno));
	}
	if (secret_stat_problem(&st, p, why, sizeof(why)) == NULL)
		return 0;
	tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG, "%s %s %s; it holds a secret", what, path, why);
	if (st.st_uid != p->uid && st.st_uid != 0)
		tm_err_hint(err, "chown %lu %s && chmod 600 %s", (unsigned long)p->uid, path, path);
	else
		tm_err_hint(err, "chmod 600 %s", path);
	return -1;
}

int
config_check_secret_files(const struct account *a, const struct config_params *p,
    struct tm_err *err)
{
	if (check_secret_file("client_secret_file", a->client_secret_file, p, err) < 0 ||
	    check_secret_file("client_key", a->client_key, p, err) < 0 ||
	    check_secret_file("refresh_token_file", a->refresh_token_file, p, err) < 0)
		return -1;
	return 0;
}

const char *
config_token_url(const struct account *a)
{
	return a->token_url ? a->token_url : a->token_url_computed;
}

const char *
config_device_code_url(const struct account *a)
{
	return a->device_code_url ? a->device_code_url : a->device_code_url_computed;
}

const char *
config_authorize_url(const struct account *a)
{
	return a->authorize_url ? a->authorize_url : a->authorize_url_computed;
}

const char *
config_scope(const struct account *a)
{
	if (a->scope)
		return a->scope;
	if (a->method == METHOD_GRAPH)
		return a->grant == GRANT_REFRESH_TOKEN ?
		    "https://graph.microsoft.com/Mail.Send offline_access" :
		    "https://graph.microsoft.com/.default";
	return a->grant == GRANT_REFRESH_TOKEN ?
	    "https://outlook.office.com/SMTP.Send offline_access" :
	    "https://outlook.office365.com/.default";
}

const char *
config_method_name(enum account_method m)
{
	return m <= METHOD_GRAPH ? cfg_method_names[m] : "?";
}

const char *
config_tls_name(enum smtp_tls t)
{
	return t <= SMTP_TLS_NONE ? cfg_tls_names[t] : "?";
}

const char *
config_auth_name(enum smtp_auth a)
{
	return a <= SMTP_AUTH_NONE ? cfg_auth_names[a] : "?";
}

/* ---- freeing ---- */

static void
free_strings(char **v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static void
account_free(struct account *a)
{
	free(a->name);
	free_strings(a->senders, a->nsenders);
	free(a->from);
	free_strings(a->allowed_users, a->nallowed_users);
	free(a->tenant);
	free(a->client_id);
	secret_free(a->client_secret);
	free(a->client_secret_file);
	secret_free(a->client_secret_command);	/* may embed a secret */
	free(a->client_certificate);
	free(a->client_key);
	free(a->client_assertion_file);
	free(a->refresh_token_file);
	free(a->authority);
	free(a->token_url);
	free(a->token_url_computed);
	free(a->device_code_url);
	free(a->device_code_url_computed);
	free(a->authorize_url);
	free(a->authorize_url_computed);
	free(a->scope);
	free(a->smtp.host);
	free(a->smtp.user);
	free(a->graph.url);
}

void
config_free(struct config *cfg)
{
	size_t i;

	if (cfg == NULL)
		return;
	for (i = 0; i < cfg->naccounts; i++)
		account_free(&cfg->accounts[i]);
	free(cfg->accounts);
	free(cfg->path);
	free(cfg->tls_ca_file);
	free(cfg->cache_dir);
	free(cfg->log_file);
	free(cfg->dead_letter);
	aliases_free(&cfg->aliases);
	free(cfg->aliases_file);
	free(cfg->https_proxy);
	free(cfg->default_account);
	memset(cfg, 0, sizeof(*cfg));
}
