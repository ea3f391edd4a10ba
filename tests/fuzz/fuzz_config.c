/*
 * fuzz_config.c: the YAML config loader (config.h: config_parse_buffer, the
 * schema and the checks across keys). The input is a config file. When it
 * loads, every account's derived values are computed and its aliases
 * expanded. Invariants: a failed load says why, naming the file; every
 * loaded account has what config.h promises (from, senders, smtp host and
 * user, scope).
 */
#include <string.h>

#include "aliases.h"
#include "config.h"
#include "fuzz.h"

static void
check_account(const struct config *cfg, const struct account *a)
{
	fuzz_check(a->name != NULL && config_account(cfg, a->name) != NULL,
	    "an account cannot be found by its name");
	fuzz_check(a->from != NULL && a->nsenders > 0, "an account without from or senders");
	fuzz_check(a->smtp.host != NULL && a->smtp.user != NULL, "an account without smtp.host");
	fuzz_check(config_scope(a) != NULL, "an account without a scope");
	(void)config_token_url(a);
	(void)config_device_code_url(a);
	(void)config_authorize_url(a);
	(void)config_method_name(a->method);
	(void)config_tls_name(a->smtp.tls);
	(void)config_auth_name(a->smtp.auth);
}

/* Expand a few names through the aliases, as recipients "root" are. */
static void
expand(const struct alias_table *t)
{
	struct address_list out = { NULL, 0, 0 };
	struct tm_err err;
	size_t i;

	(void)aliases_resolve(t, "root", &out, &err);
	for (i = 0; i < t->count && i < 8; i++)
		(void)aliases_resolve(t, t->entries[i].name, &out, &err);
	address_list_free(&out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct config_params params = { .home = "/home/u" };
	struct config cfg;
	struct tm_err err;
	size_t i;

	if (config_parse_buffer("fuzz.yaml", (const char *)data, size, &params, &cfg,
	    &err) == 0) {
		for (i = 0; i < cfg.naccounts; i++)
			check_account(&cfg, &cfg.accounts[i]);
		expand(&cfg.aliases);
	} else {
		/* config.h: "FILE:LINE:COL: key 'a.b': must be ...". */
		fuzz_check(strncmp(err.msg, "fuzz.yaml:", 10) == 0,
		    "a config refused without saying where");
	}
	config_free(&cfg);
	return 0;
}
