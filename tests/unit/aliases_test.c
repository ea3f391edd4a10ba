/*
 * aliases_test.c: aliases(5) parsing (comments, continuations, quoting,
 * errors with their line numbers) and resolution (chains, catch-all, loops,
 * depth, case, duplicates, EX_NOUSER).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "aliases.h"
#include "tap.h"
#include "tm_limits.h"
#include "util.h"

/* Debian 12's /etc/aliases as exim4 installs it. */
static const char debian_aliases[] =
    "# /etc/aliases\n"
    "mailer-daemon: postmaster\n"
    "postmaster: root\n"
    "nobody: root\n"
    "hostmaster: root\n"
    "usenet: root\n"
    "news: root\n"
    "webmaster: root\n"
    "www: root\n"
    "ftp: root\n"
    "abuse: root\n"
    "noc: root\n"
    "security: root\n";

static int
parse(struct alias_table *t, const char *text, struct tm_err *err)
{
	return aliases_parse_buffer(t, "aliases", text, strlen(text), err);
}

/* Resolve name and join the specs of the result with ", " into out. */
static int
resolve(const struct alias_table *t, const char *name, char *out, size_t size,
    struct tm_err *err)
{
	struct address_list list = { 0 };
	size_t i;
	int rc;

	out[0] = '\0';
	tm_err_clear(err);
	rc = aliases_resolve(t, name, &list, err);
	for (i = 0; i < list.count; i++) {
		char spec[TM_ADDRESS_MAX + 1];

		if (address_spec(&list.items[i], spec, sizeof(spec)) < 0)
			(void)str_copy(spec, sizeof(spec), "?");
		if (i > 0)
			(void)str_append(out, size, ", ");
		(void)str_append(out, size, spec);
	}
	address_list_free(&list);
	return rc;
}

static void
test_file_syntax(void)
{
	static const char text[] =
	    "# comment\n"
	    "\n"
	    "root: ops@example.com,\r\n"
	    "  admin@example.com,\r\n"
	    "   # a comment inside a continuation\n"
	    "\tboss@example.com\n"
	    "   \n"
	    "\"web-master\" : \"Web Team\" <web@example.com>\n"
	    "postmaster :root\n"
	    "*: catchall@example.com\n";
	struct alias_table t = { 0 };
	struct tm_err err;
	char out[512];

	tap_is_int(parse(&t, text, &err), 0, "file syntax: parses");
	tap_is_str(err.msg, "", "file syntax: no error");
	tap_is_int((long)t.count, 4, "file syntax: four entries");
	if (t.count == 4) {
		tap_is_str(t.entries[0].name, "root", "first name");
		tap_is_int(t.entries[0].line, 3, "first entry's line");
		tap_is_int((long)t.entries[0].targets.count, 3, "continuation lines joined");
		tap_is_str(t.entries[1].name, "web-master", "quoted name, quotes removed");
		tap_is_int(t.entries[1].line, 8, "quoted name's line");
		tap_is_str(t.entries[1].targets.items[0].display, "Web Team", "display name kept");
		tap_is_str(t.entries[2].name, "postmaster", "white space before ':'");
		tap_is_str(t.entries[3].name, "*", "catch-all");
	}
	tap_is_str(t.source, "aliases", "source is the file name");
	tap_ok(t.from_file, "from_file set");
	tap_is_int(resolve(&t, "root", out, sizeof(out), &err), 0, "resolve root");
	tap_is_str(out, "ops@example.com, admin@example.com, boss@example.com", "root's targets");
	aliases_free(&t);
	tap_ok(t.count == 0 && t.entries == NULL && t.source == NULL, "aliases_free zeroes");
}

static void
test_debian_default(void)
{
	struct alias_table t = { 0 };
	struct tm_err err;
	char out[256];

	tap_is_int(parse(&t, debian_aliases, &err), 0, "Debian's default /etc/aliases loads");
	tap_is_int((long)t.count, 12, "Debian: twelve entries");
	tap_is_int(resolve(&t, "mailer-daemon", out, sizeof(out), &err), -1,
	    "Debian: root itself has no alias");
	tap_is_str(err.msg, "no alias for local recipient 'root' (reached from 'mailer-daemon')",
	    "Debian: names the missing name and where it came from");
	tap_is_int(err.exit, EX_NOUSER, "Debian: EX_NOUSER");
	tap_is_str(err.hint, "add \"root: user@example.com\" to aliases, or a \"*\" catch-all",
	    "Debian: hint names the file");
	aliases_add(&t, "root", "admin@example.com", 0, &err);
	tap_is_int(resolve(&t, "mailer-daemon", out, sizeof(out), &err), 0,
	    "Debian + root: three levels");
	tap_is_str(out, "admin@example.com", "Debian + root: result");
	aliases_free(&t);
}

struct parse_error_case {
	const char *what;
	const char *text;
	const char *msg;
	const char *detail;
};

static const struct parse_error_case parse_errors[] = {
	{ "no colon", "root ops@example.com\n",
	  "aliases:1: expected \"name: address, ...\"", "" },
	{ "unterminated quoted name", "\"root: ops@example.com\n",
	  "aliases:1: expected \"name: address, ...\"", "" },
	{ "program target", "# x\nbugs: ops@example.com, |/usr/bin/bugtrack\n",
	  "aliases:2: alias 'bugs': tokenmail delivers only to addresses, not to files or programs",
	  "" },
	{ "quoted program target", "bugs: \"|/usr/bin/bugtrack -x\"\n",
	  "aliases:1: alias 'bugs': tokenmail delivers only to addresses, not to files or programs",
	  "" },
	{ "file target", "log: /var/log/mail.copy\n",
	  "aliases:1: alias 'log': tokenmail delivers only to addresses, not to files or programs",
	  "" },
	{ "include target", "staff: :include:/etc/mail/staff\n",
	  "aliases:1: alias 'staff': tokenmail delivers only to addresses, not to files or "
	  "programs", "" },
	{ "program target on a continuation line", "root: a@example.com,\n  \"|cmd\"\n",
	  "aliases:1: alias 'root': tokenmail delivers only to addresses, not to files or "
	  "programs", "" },
	{ "local mailbox target", "root: \\root, a@example.com\n",
	  "aliases:1: alias 'root': tokenmail delivers only to addresses, not to local mailboxes "
	  "(\\name)", "" },
	{ "continuation first", "  a@example.com\nroot: b@example.com\n",
	  "aliases:1: continuation line without an alias before it", "" },
	{ "defined twice, case aside", "root: a@example.com\nROOT: b@example.com\n",
	  "aliases:2: alias 'ROOT': defined twice (first at line 1)", "" },
	{ "no target", "root:\n",
	  "aliases:1: alias 'root': has no address", "" },
	{ "bad name", "root@example.com: a@example.com\n",
	  "aliases:1: alias 'root@example.com': the name must be a local name (no '@', ',', white "
	  "space or control characters; at most 64 octets)", "" },
	{ "NUL byte", "a: b@example.com\nroot: x\0y\n",
	  "aliases:2: NUL byte in the line", "" },
	{ "several errors",
	  "# header\nroot: ops@example.com\nbad line\n\nbugs: |cmd\nroot: other@example.com\n",
	  "aliases:3: expected \"name: address, ...\"",
	  "aliases:5: alias 'bugs': tokenmail delivers only to addresses, not to files or "
	  "programs\n"
	  "aliases:6: alias 'root': defined twice (first at line 2)\n" },
};

static void
test_parse_errors(void)
{
	size_t i;

	for (i = 0; i < sizeof(parse_errors) / sizeof(parse_errors[0]); i++) {
		const struct parse_error_case *c = &parse_errors[i];
		struct alias_table t = { 0 };
		struct tm_err err;
		size_t len = strlen(c->text);

		if (strcmp(c->what, "NUL byte") == 0)
			len = sizeof("a: b@example.com\nroot: x\0y\n") - 1;
		tap_is_int(aliases_parse_buffer(&t, "aliases", c->text, len, &err), -1,
		    "%s: refused", c->what);
		tap_is_str(err.msg, c->msg, "%s: message", c->what);
		tap_is_str(err.detail, c->detail, "%s: detail", c->what);
		tap_ok(err.exit == EX_CONFIG && err.cls == TM_ERR_CONFIG, "%s: EX_CONFIG", c->what);
		aliases_free(&t);
	}
}

static void
test_bad_address(void)
{
	struct alias_table t = { 0 };
	struct tm_err err;

	tap_is_int(parse(&t, "root: <ops@example.com\n", &err), -1, "unparsable target refused");
	tap_ok(strncmp(err.msg, "aliases:1: alias 'root': ", 25) == 0 && strlen(err.msg) > 25,
	    "unparsable target: file:line and the parser's reason (%s)", err.msg);
	aliases_free(&t);
}

static void
test_error_limit(void)
{
	struct alias_table t = { 0 };
	struct strbuf b;
	struct tm_err err;
	int i;

	strbuf_init(&b, 1 << 20);
	for (i = 0; i < TM_CONFIG_ERRORS_MAX + 3; i++)
		(void)strbuf_appendf(&b, "bad line %d\n", i);
	tap_is_int(parse(&t, b.data, &err), -1, "many errors: refused");
	tap_ok(strstr(err.detail, "(3 more errors not shown)") != NULL, "many errors: counted");
	aliases_free(&t);
	strbuf_free(&b);
}

static void
test_add(void)
{
	struct alias_table t = { 0 };
	struct tm_err err;

	tap_is_int(aliases_add(&t, "root", "a@example.com, b@example.com", 3, &err), 0,
	    "add: two targets");
	tap_is_int(aliases_add(&t, "Root", "c@example.com", 4, &err), -1, "add: same name refused");
	tap_is_str(err.msg, "defined twice (first at line 3)", "add: message has no location");
	tap_is_int(aliases_add(&t, "bin", "/dev/null", 5, &err), -1, "add: file refused");
	tap_is_int(aliases_add(&t, "", "a@example.com", 5, &err), -1, "add: empty name refused");
	tap_is_int(aliases_add(&t, "a b", "a@example.com", 5, &err), -1, "add: name with space");
	tap_is_int(aliases_add(&t, "grp", "undisclosed-recipients:;", 5, &err), -1,
	    "add: empty group is no address");
	tap_is_int((long)t.count, 1, "add: failures add nothing");
	aliases_free(&t);
}

static void
build(struct alias_table *t, const char *const *lines)
{
	struct tm_err err;

	for (; lines[0]; lines += 2)
		if (aliases_add(t, lines[0], lines[1], 0, &err) < 0)
			printf("# build %s: %s\n", lines[0], err.msg);
}

static void
test_resolve(void)
{
	static const char *const lines[] = {
		"root", "admin, ops@example.com",
		"admin", "Boss, ops@example.com, OPS@example.com",
		"boss", "\"The Boss\" <boss@example.com>",
		"postmaster", "root",
		"a", "b", "b", "a",
		"self", "self",
		NULL
	};
	struct alias_table t = { .source = xstrdup("/etc/tokenmail.yaml") };
	struct address_list out = { 0 };
	struct tm_err err;
	char got[512];

	build(&t, lines);
	tap_is_int(resolve(&t, "postmaster", got, sizeof(got), &err), 0, "chain resolves");
	tap_is_str(got, "boss@example.com, ops@example.com", "chain: qualified and deduplicated");
	tap_is_int(resolve(&t, "ROOT", got, sizeof(got), &err), 0, "names ignore case");
	tap_is_str(got, "boss@example.com, ops@example.com", "ROOT = root");
	tap_is_int(resolve(&t, "a", got, sizeof(got), &err), -1, "loop refused");
	tap_is_str(err.msg, "alias loop: a -> b -> a", "loop message");
	tap_is_int(err.exit, EX_CONFIG, "loop: EX_CONFIG");
	tap_is_str(err.hint, "fix the aliases in /etc/tokenmail.yaml", "loop hint");
	tap_is_int(resolve(&t, "self", got, sizeof(got), &err), -1, "self loop refused");
	tap_is_str(err.msg, "alias loop: self -> self", "self loop message");
	tap_is_int(resolve(&t, "nobody", got, sizeof(got), &err), -1, "no alias, no catch-all");
	tap_is_str(err.msg, "no alias for local recipient 'nobody'", "EX_NOUSER message");
	tap_is_int(err.exit, EX_NOUSER, "EX_NOUSER");
	tap_is_str(err.hint, "add it under aliases: in /etc/tokenmail.yaml, or an aliases: \"*\" "
	    "catch-all", "EX_NOUSER hint for the config");

	address_list_add_spec(&out, "ops@example.com");
	tap_is_int(aliases_resolve(&t, "root", &out, &err), 0, "resolve appends");
	tap_is_int((long)out.count, 2, "resolve skips what out already holds");
	tap_is_int(aliases_resolve(&t, "a", &out, &err), -1, "failed resolve");
	tap_is_int((long)out.count, 2, "failed resolve leaves out as it was");
	address_list_free(&out);

	build(&t, (const char *const[]){ "*", "catchall@example.com", NULL });
	tap_is_int(resolve(&t, "nobody", got, sizeof(got), &err), 0, "catch-all");
	tap_is_str(got, "catchall@example.com", "catch-all result");
	aliases_free(&t);
}

static void
test_catch_all_loop(void)
{
	struct alias_table t = { 0 };
	struct tm_err err;
	char got[256];

	build(&t, (const char *const[]){ "*", "ops", NULL });
	tap_is_int(resolve(&t, "cron", got, sizeof(got), &err), -1, "catch-all to itself refused");
	tap_is_str(err.msg, "alias loop: cron -> ops (through the \"*\" catch-all)",
	    "catch-all loop message");
	aliases_free(&t);
	build(&t, (const char *const[]){ "*", "ops", "ops", "ops@example.com", NULL });
	tap_is_int(resolve(&t, "cron", got, sizeof(got), &err), 0, "catch-all to a name");
	tap_is_str(got, "ops@example.com", "catch-all to a name: result");
	aliases_free(&t);
}

static void
test_depth(void)
{
	struct alias_table t = { 0 };
	struct tm_err err;
	char name[16], target[32], got[256];
	int i;

	/* n0 -> n1 -> ... -> n9 -> end@example.com: 10 levels. */
	for (i = 0; i < TM_ALIAS_DEPTH_MAX; i++) {
		(void)str_format(name, sizeof(name), "n%d", i);
		if (i == TM_ALIAS_DEPTH_MAX - 1)
			(void)str_copy(target, sizeof(target), "end@example.com");
		else
			(void)str_format(target, sizeof(target), "n%d", i + 1);
		aliases_add(&t, name, target, 0, &err);
	}
	tap_is_int(resolve(&t, "n0", got, sizeof(got), &err), 0, "10 levels resolve");
	tap_is_str(got, "end@example.com", "10 levels: result");
	aliases_add(&t, "top", "n0", 0, &err);
	tap_is_int(resolve(&t, "top", got, sizeof(got), &err), -1, "11 levels refused");
	tap_is_str(err.msg, "alias 'top': more than 10 levels of aliases", "depth message");
	tap_is_int(err.exit, EX_CONFIG, "depth: EX_CONFIG");
	aliases_free(&t);
}

/* A wide tree: 9 levels of 3 names each; 3^9 leaves all the same address. */
static void
test_wide(void)
{
	struct alias_table t = { 0 };
	struct tm_err err;
	char name[16], targets[64], got[256];
	int i;

	for (i = 0; i < 9; i++) {
		(void)str_format(name, sizeof(name), "w%d", i);
		(void)str_format(targets, sizeof(targets), "w%d, w%d, w%d", i + 1, i + 1, i + 1);
		aliases_add(&t, name, targets, 0, &err);
	}
	aliases_add(&t, "w9", "leaf@example.com", 0, &err);
	tap_is_int(resolve(&t, "w0", got, sizeof(got), &err), -1, "wide tree bounded");
	tap_is_str(err.msg, "alias 'w0' expands to more than 10000 aliases", "wide tree message");
	tap_is_int(resolve(&t, "w3", got, sizeof(got), &err), 0, "smaller tree resolves");
	tap_is_str(got, "leaf@example.com", "smaller tree: one address");
	aliases_free(&t);
}

/* Many entries: lookups and the duplicate check go through the hash index. */
static void
test_many(void)
{
	struct alias_table t = { 0 };
	struct tm_err err;
	char name[32], target[64], got[128];
	int i, failed = 0;

	for (i = 0; i < 5000; i++) {
		(void)str_format(name, sizeof(name), "user%d", i);
		(void)str_format(target, sizeof(target), "u%d@example.com", i);
		failed += aliases_add(&t, name, target, (unsigned)i + 1, &err) < 0;
	}
	tap_is_int(failed, 0, "5000 entries added");
	tap_is_int(aliases_add(&t, "USER4321", "x@example.com", 0, &err), -1,
	    "duplicate found among 5000, case aside");
	tap_is_str(err.msg, "defined twice (first at line 4322)", "duplicate's first line");
	tap_is_int(resolve(&t, "User2999", got, sizeof(got), &err), 0, "lookup among 5000");
	tap_is_str(got, "u2999@example.com", "lookup among 5000: result");
	tap_is_int(resolve(&t, "user5000", got, sizeof(got), &err), -1, "missing among 5000");
	aliases_free(&t);
}

static void
test_load_file(void)
{
	char dir[] = "/tmp/aliases_test.XXXXXX", path[64], want[256];
	struct alias_table t = { 0 };
	struct tm_err err;
	FILE *f;

	if (mkdtemp(dir) == NULL) {
		tap_ok(0, "mkdtemp");
		return;
	}
	(void)str_format(path, sizeof(path), "%s/aliases", dir);
	f = fopen(path, "w");
	if (f) {
		fputs(debian_aliases, f);
		fputs("root: ops@example.com\n", f);
		fclose(f);
	}
	tap_is_int(aliases_load_file(&t, path, &err), 0, "load file");
	tap_is_int((long)t.count, 13, "load file: entries");
	tap_is_str(t.source, path, "load file: source");
	aliases_free(&t);
	tap_is_int(aliases_load_file(&t, dir, &err), -1, "directory refused");
	(void)str_format(want, sizeof(want), "aliases file %s: not a regular file", dir);
	tap_is_str(err.msg, want, "directory message");
	aliases_free(&t);
	unlink(path);
	tap_is_int(aliases_load_file(&t, path, &err), -1, "missing file refused");
	(void)str_format(want, sizeof(want), "cannot open aliases file %s: No such file or "
	    "directory", path);
	tap_is_str(err.msg, want, "missing file message");
	tap_is_int(err.exit, EX_CONFIG, "missing file: EX_CONFIG");
	aliases_free(&t);
	rmdir(dir);
}

int
main(void)
{
	test_file_syntax();
	test_debian_default();
	test_parse_errors();
	test_bad_address();
	test_error_limit();
	test_add();
	test_resolve();
	test_catch_all_loop();
	test_depth();
	test_wide();
	test_many();
	test_load_file();
	return tap_done();
}
