/*
 * fuzz_aliases.c: the aliases(5) file parser the config may name
 * (aliases.h: aliases_parse_buffer) and the expansion of local names.
 * Invariants: a refusal says why; every entry it keeps has a name and at
 * least one target; an expansion that succeeds yields only qualified
 * addresses, each once.
 */
#include <string.h>

#include "aliases.h"
#include "fuzz.h"
#include "tm_limits.h"

static void
check_expansion(const struct address_list *out)
{
	char spec[TM_ADDRESS_MAX * 2];
	size_t i;

	for (i = 0; i < out->count; i++) {
		fuzz_check(out->items[i].domain != NULL, "an alias expanded to a local name");
		if (address_spec(&out->items[i], spec, sizeof(spec)) == 0)
			fuzz_check(address_list_find(out, spec) == (long)i,
			    "an alias expansion holds an address twice");
	}
}

static void
expand(const struct alias_table *t, const char *name)
{
	struct address_list out = { NULL, 0, 0 };
	struct tm_err err;

	if (aliases_resolve(t, name, &out, &err) == 0)
		check_expansion(&out);
	else
		fuzz_check(out.count == 0, "a failed expansion left addresses");
	address_list_free(&out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct alias_table t;
	struct tm_err err;
	size_t i;

	memset(&t, 0, sizeof(t));
	if (aliases_parse_buffer(&t, "fuzz.aliases", (const char *)data, size, &err) < 0)
		fuzz_check(err.msg[0] != '\0', "aliases refused without a message");
	for (i = 0; i < t.count; i++)
		fuzz_check(t.entries[i].name != NULL && t.entries[i].targets.count > 0,
		    "an alias without a name or targets");
	expand(&t, "root");
	for (i = 0; i < t.count && i < 8; i++)
		expand(&t, t.entries[i].name);
	aliases_free(&t);
	return 0;
}
